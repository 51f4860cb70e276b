//! Settling a matrix point: each server's spread over its rounds, whether a wide spread earns the
//! point another round, and the verdict a target is judged on. Pure functions over round figures,
//! so the rules are unit-tested without running a server.
//!
//! The rules, stated once:
//! - **spread** of a figure over rounds = (max − min) / median (the full range, not a deviation:
//!   with 3 to 5 rounds a quartile range says little);
//! - a server's rounds at a point are judged on two figures, messages/s and server CPU per message;
//!   of all the rounds it ran, the `want` rounds (the configured `--rounds`) that agree best are
//!   used: windows of `want` consecutive rounds in messages/s order, the one whose larger spread of
//!   the two figures is least. A round hit by a burst of other work on the machine is thus
//!   replaced by a re-run, not averaged in; every round stays in the JSON, marked used or not;
//! - a point is **settled** when every server's used rounds spread by at most the bound (15 %) on
//!   both figures; otherwise the whole point (every server, the turns alternating) runs another
//!   round, up to a bound on extra rounds and on the time they take, and a point still above it is
//!   **unreliable**; one round cannot show a spread (**single**), so it is not settled either;
//! - a round in which the server or the load generator waited for its CPU (runnable, not
//!   running: other work on it) more than [`MAX_WAIT`] of the window is **disturbed**: it is not
//!   used while `want` undisturbed rounds exist, and a point left with fewer is not settled
//!   ([`tightest_among`]; the echo bench measures the waits, the others pass every round);
//! - a target counts as met only when both figures it compares come from settled points and the
//!   compared figure's own spread is within the bound (p99 is not settled by re-runs, so a p99
//!   target is met only when its rounds happened to agree).

use serde::Serialize;

/// The largest spread of a settled point (15 %).
pub const MAX_SPREAD: f64 = 0.15;
/// Extra rounds a point may get when it is not settled.
pub const EXTRA_ROUNDS: usize = 2;
/// The largest share of a round's window the server or the load generator may have waited for
/// its CPU (10 %) for the round to be used. Measured under `--realtime` with builds running:
/// 0.2–5.7 % in ordinary rounds (the kernel lends starved normal tasks up to 5 % of a CPU),
/// 22–30 % in two rounds of monoio at 1,000 connections, whose CPU per message was then 28 %
/// below its third round's (what held it up was not pinned down).
pub const MAX_WAIT: f64 = 0.10;

/// (max − min) / median of `values`; `None` for fewer than two values or a median that is not
/// above zero.
pub fn spread(values: &[f64]) -> Option<f64> {
    if values.len() < 2 || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    (median > 0.0).then(|| (v[n - 1] - v[0]) / median)
}

/// The two figures a round is settled on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Round trips per second.
    pub msgs_per_sec: f64,
    /// Server CPU seconds per million messages.
    pub cpu_per_msg: f64,
}

/// The rounds chosen to report and how far they spread.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    /// Indices of the used rounds, in messages/s order.
    pub used: Vec<usize>,
    /// Spread of messages/s over them (`None`: one round).
    pub msgs_spread: Option<f64>,
    /// Spread of CPU per message over them.
    pub cpu_spread: Option<f64>,
    /// Some used round was disturbed (see [`tightest_among`]): the pick is not settled.
    pub disturbed: bool,
}

impl Pick {
    /// The larger of the two spreads (`None`: one round, or a figure that cannot spread).
    pub fn worst(&self) -> Option<f64> {
        Some(self.msgs_spread?.max(self.cpu_spread?))
    }

    /// The index of the median used round (by messages/s): the round whose figures are reported.
    pub fn median(&self) -> usize {
        self.used[self.used.len() / 2]
    }
}

/// The `want` rounds of `samples` that agree best (all of them when there are no more than
/// `want`). Panics on an empty `samples` (a point always has at least one round).
pub fn tightest(samples: &[Sample], want: usize) -> Pick {
    assert!(!samples.is_empty(), "a point has at least one round");
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by(|&a, &b| samples[a].msgs_per_sec.total_cmp(&samples[b].msgs_per_sec));
    let k = want.clamp(1, samples.len());
    let pick = |w: &[usize]| {
        let msgs: Vec<f64> = w.iter().map(|&i| samples[i].msgs_per_sec).collect();
        let cpu: Vec<f64> = w.iter().map(|&i| samples[i].cpu_per_msg).collect();
        Pick {
            used: w.to_vec(),
            msgs_spread: spread(&msgs),
            cpu_spread: spread(&cpu),
            disturbed: false,
        }
    };
    let mut best = pick(&order[..k]);
    for w in order.windows(k).skip(1) {
        let p = pick(w);
        // A window whose spread cannot be computed (a zero figure) never wins over one that can.
        let better = match (p.worst(), best.worst()) {
            (Some(a), Some(b)) => a < b,
            (Some(_), None) => true,
            _ => false,
        };
        if better {
            best = p;
        }
    }
    best
}

/// [`tightest`] over the rounds not disturbed (`disturbed[i]`: round `i`'s server or load
/// generator waited for its CPU more than [`MAX_WAIT`]), indices into `samples`; with fewer
/// than `want` of them, over all rounds, marked disturbed (so not settled).
pub fn tightest_among(samples: &[Sample], disturbed: &[bool], want: usize) -> Pick {
    let calm: Vec<usize> =
        (0..samples.len()).filter(|&i| !disturbed.get(i).copied().unwrap_or(false)).collect();
    if calm.len() < want.clamp(1, samples.len()) {
        let mut pick = tightest(samples, want);
        pick.disturbed = calm.len() < samples.len();
        return pick;
    }
    let sub: Vec<Sample> = calm.iter().map(|&i| samples[i]).collect();
    let mut pick = tightest(&sub, want);
    pick.used = pick.used.iter().map(|&j| calm[j]).collect();
    pick
}

/// How a point (or one server's rounds at it) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every spread within the bound.
    Settled,
    /// A spread above the bound after the extra rounds it was allowed.
    Unreliable,
    /// One round: no spread to judge.
    Single,
}

/// The verdict of one server's rounds: single (one round), unreliable (a spread above `max`, or
/// a disturbed round used), or settled.
pub fn status_of(pick: &Pick, max: f64) -> Status {
    match pick.worst() {
        None if pick.used.len() < 2 => Status::Single,
        _ if pick.disturbed => Status::Unreliable,
        Some(s) if s <= max => Status::Settled,
        _ => Status::Unreliable,
    }
}

/// What to do with a point after its rounds so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Report it with this status.
    Done(Status),
    /// Run one more round of every server at it.
    Rerun,
}

/// Decides a point from each server's status: settled when all are; another round when one is
/// unreliable and `extra_done < max_extra` and `time_left`; else the worst status (unreliable
/// before single).
pub fn decide(statuses: &[Status], extra_done: usize, max_extra: usize, time_left: bool) -> Next {
    if statuses.iter().all(|&s| s == Status::Settled) {
        return Next::Done(Status::Settled);
    }
    if statuses.contains(&Status::Unreliable) {
        if extra_done < max_extra && time_left {
            return Next::Rerun;
        }
        return Next::Done(Status::Unreliable);
    }
    Next::Done(Status::Single)
}

/// `decide` over contestants' rounds so far: each one's status from its `want` tightest rounds.
/// Before `want` rounds there is nothing to decide: another round.
pub fn next_round(
    rounds: &[Vec<Sample>],
    want: usize,
    extra_done: usize,
    max_extra: usize,
    time_left: bool,
    max: f64,
) -> Next {
    if rounds.iter().any(|r| r.len() < want.max(1)) {
        return Next::Rerun;
    }
    let statuses: Vec<Status> = rounds.iter().map(|r| status_of(&tightest(r, want), max)).collect();
    decide(&statuses, extra_done, max_extra, time_left)
}

/// The ratio of two figures with the range it may span: the sum of both spreads (a bound on
/// the ratio's own relative range), and whether it is settled (both points settled, both spreads
/// within `max`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Ratio {
    /// `value / reference`.
    pub ratio: f64,
    /// The sum of both figures' spreads (`None`: a single round on either side).
    pub spread: Option<f64>,
    /// Both points settled and both figures within the bound.
    pub settled: bool,
}

/// `a / b` where each figure comes with its point's status and its own spread.
pub fn ratio(a: (f64, Status, Option<f64>), b: (f64, Status, Option<f64>), max: f64) -> Ratio {
    let spread = match (a.2, b.2) {
        (Some(x), Some(y)) => Some(x + y),
        _ => None,
    };
    let within = |s: Option<f64>| s.is_some_and(|s| s <= max);
    Ratio {
        ratio: a.0 / b.0,
        spread,
        settled: a.1 == Status::Settled && b.1 == Status::Settled && within(a.2) && within(b.2),
    }
}

/// How a target stands: met only on settled figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within its bound, on settled figures.
    Met,
    /// Outside its bound, on settled figures.
    Missed,
    /// The figures are not settled: neither met nor missed.
    Unsettled,
}

/// A target on `r`: `within` says whether the ratio is on the right side of its bound.
pub fn verdict(r: &Ratio, within: bool) -> Verdict {
    match (r.settled, within) {
        (false, _) => Verdict::Unsettled,
        (true, true) => Verdict::Met,
        (true, false) => Verdict::Missed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(msgs: f64, cpu: f64) -> Sample {
        Sample { msgs_per_sec: msgs, cpu_per_msg: cpu }
    }

    #[test]
    fn spread_is_range_over_median() {
        assert_eq!(spread(&[100.0]), None);
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[100.0, 100.0, 100.0]), Some(0.0));
        let v = spread(&[90.0, 100.0, 120.0]).unwrap();
        assert!((v - 0.30).abs() < 1e-12, "{v}");
        // Even count: the median is the mean of the middle two.
        let v = spread(&[90.0, 100.0, 110.0, 120.0]).unwrap();
        assert!((v - 30.0 / 105.0).abs() < 1e-12, "{v}");
        assert_eq!(spread(&[0.0, 0.0, 5.0]), None, "a zero median cannot spread");
        assert_eq!(spread(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn three_close_rounds_settle() {
        let rounds = [s(100.0, 8.0), s(104.0, 8.2), s(98.0, 7.9)];
        let p = tightest(&rounds, 3);
        assert_eq!(p.used, vec![2, 0, 1]);
        assert_eq!(p.median(), 0);
        assert!(p.worst().unwrap() < 0.07);
        assert_eq!(status_of(&p, MAX_SPREAD), Status::Settled);
    }

    #[test]
    fn an_outlier_round_is_unreliable_until_a_rerun_replaces_it() {
        let mut rounds = vec![s(100.0, 8.0), s(60.0, 13.0), s(102.0, 8.1)];
        let p = tightest(&rounds, 3);
        assert_eq!(status_of(&p, MAX_SPREAD), Status::Unreliable);
        assert_eq!(decide(&[status_of(&p, MAX_SPREAD)], 0, EXTRA_ROUNDS, true), Next::Rerun);
        // The extra round agrees with the good two: they are used, the outlier is not.
        rounds.push(s(99.0, 8.05));
        let p = tightest(&rounds, 3);
        assert!(!p.used.contains(&1), "{p:?}");
        assert_eq!(status_of(&p, MAX_SPREAD), Status::Settled);
        assert_eq!(rounds[p.median()].msgs_per_sec, 100.0);
    }

    #[test]
    fn cpu_spread_counts_as_well_as_throughput() {
        // Throughput agrees, CPU per message does not: not settled.
        let p = tightest(&[s(100.0, 8.0), s(101.0, 11.0), s(100.5, 8.1)], 3);
        assert!(p.msgs_spread.unwrap() < 0.02);
        assert!(p.cpu_spread.unwrap() > 0.3);
        assert_eq!(status_of(&p, MAX_SPREAD), Status::Unreliable);
    }

    #[test]
    fn the_window_is_chosen_on_both_figures() {
        // In msg/s order: 90, 95, 100, 101. Window [90, 95, 100] spreads 10.5 % in msg/s but its
        // CPU is wild; [95, 100, 101] spreads 6 % and its CPU agrees.
        let rounds = [s(90.0, 20.0), s(95.0, 8.0), s(100.0, 8.1), s(101.0, 8.2)];
        let p = tightest(&rounds, 3);
        assert_eq!(p.used, vec![1, 2, 3]);
    }

    #[test]
    fn a_disturbed_round_is_not_used_and_too_few_calm_ones_do_not_settle() {
        // Round 1's server waited for its CPU: left out, the three calm rounds are used.
        let rounds = [s(100.0, 8.0), s(101.0, 8.0), s(99.0, 8.1), s(100.5, 8.05)];
        let p = tightest_among(&rounds, &[false, true, false, false], 3);
        assert_eq!(p.used, vec![2, 0, 3]);
        assert!(!p.disturbed);
        assert_eq!(status_of(&p, MAX_SPREAD), Status::Settled);
        // Two calm rounds of the three wanted: not settled, however well they agree.
        let p = tightest_among(&rounds[..3], &[false, true, false], 3);
        assert!(p.disturbed);
        assert_eq!(status_of(&p, MAX_SPREAD), Status::Unreliable);
        assert_eq!(decide(&[status_of(&p, MAX_SPREAD)], 0, EXTRA_ROUNDS, true), Next::Rerun);
        // One round stays single, disturbed or not.
        let p = tightest_among(&rounds[..1], &[true], 3);
        assert_eq!(status_of(&p, MAX_SPREAD), Status::Single);
        // No round disturbed: as `tightest`.
        assert_eq!(tightest_among(&rounds, &[false; 4], 3), tightest(&rounds, 3));
    }

    #[test]
    fn one_round_is_single_and_never_settled() {
        let p = tightest(&[s(100.0, 8.0)], 3);
        assert_eq!(p.used, vec![0]);
        assert_eq!(p.worst(), None);
        assert_eq!(status_of(&p, MAX_SPREAD), Status::Single);
        assert_eq!(decide(&[Status::Single], 0, EXTRA_ROUNDS, true), Next::Done(Status::Single));
    }

    #[test]
    fn a_failed_round_makes_the_point_unreliable() {
        // A round with no messages (a failure) spreads a window holding it by 100 %: a window
        // without it wins and, with none, the server is unreliable at the point.
        let p = tightest(&[s(0.0, 0.0), s(100.0, 8.0), s(100.0, 8.0)], 3);
        assert_eq!(status_of(&p, MAX_SPREAD), Status::Unreliable);
        let p = tightest(&[s(0.0, 0.0), s(100.0, 8.0), s(100.0, 8.0), s(101.0, 8.0)], 3);
        assert_eq!(p.used, vec![1, 2, 3]);
        assert_eq!(status_of(&p, MAX_SPREAD), Status::Settled);
    }

    #[test]
    fn reruns_are_bounded_by_count_and_time() {
        let st = [Status::Settled, Status::Unreliable];
        assert_eq!(decide(&st, 0, 2, true), Next::Rerun);
        assert_eq!(decide(&st, 1, 2, true), Next::Rerun);
        assert_eq!(decide(&st, 2, 2, true), Next::Done(Status::Unreliable));
        assert_eq!(decide(&st, 0, 2, false), Next::Done(Status::Unreliable));
        assert_eq!(decide(&st, 0, 0, true), Next::Done(Status::Unreliable));
        assert_eq!(decide(&[Status::Settled; 3], 0, 2, true), Next::Done(Status::Settled));
        // Unreliable outranks single: the point needs the rerun more than it lacks rounds.
        assert_eq!(
            decide(&[Status::Single, Status::Unreliable], 2, 2, true),
            Next::Done(Status::Unreliable)
        );
    }

    #[test]
    fn next_round_waits_for_the_rounds_then_settles() {
        let good = vec![s(100.0, 8.0), s(101.0, 8.0), s(99.0, 8.1)];
        let wide = vec![s(100.0, 8.0), s(60.0, 8.0), s(99.0, 8.1)];
        assert_eq!(next_round(&[good[..2].to_vec()], 3, 0, 2, true, MAX_SPREAD), Next::Rerun);
        assert_eq!(
            next_round(std::slice::from_ref(&good), 3, 0, 2, true, MAX_SPREAD),
            Next::Done(Status::Settled)
        );
        assert_eq!(
            next_round(&[good.clone(), wide.clone()], 3, 0, 2, true, MAX_SPREAD),
            Next::Rerun
        );
        assert_eq!(
            next_round(&[good, wide], 3, 2, 2, true, MAX_SPREAD),
            Next::Done(Status::Unreliable)
        );
    }

    #[test]
    fn a_ratio_is_settled_only_when_both_sides_are() {
        let ok = (8.0, Status::Settled, Some(0.05));
        let base = (10.0, Status::Settled, Some(0.04));
        let r = ratio(ok, base, MAX_SPREAD);
        assert!((r.ratio - 0.8).abs() < 1e-12);
        assert!((r.spread.unwrap() - 0.09).abs() < 1e-12);
        assert!(r.settled);
        assert_eq!(verdict(&r, r.ratio <= 0.8), Verdict::Met);
        assert_eq!(verdict(&r, r.ratio <= 0.7), Verdict::Missed);

        let wide = ratio((8.0, Status::Unreliable, Some(0.3)), base, MAX_SPREAD);
        assert!(!wide.settled);
        assert_eq!(verdict(&wide, true), Verdict::Unsettled);
        assert_eq!(verdict(&wide, false), Verdict::Unsettled);

        let single = ratio((8.0, Status::Single, None), base, MAX_SPREAD);
        assert_eq!(single.spread, None);
        assert_eq!(verdict(&single, true), Verdict::Unsettled);

        // Settled points, but the compared figure itself (say p99) spread too far.
        let p99 = ratio((8.0, Status::Settled, Some(0.4)), base, MAX_SPREAD);
        assert_eq!(verdict(&p99, true), Verdict::Unsettled);
    }
}
