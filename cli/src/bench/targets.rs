//! The targets for the proactor, checked against a report: they are measured and
//! reported, never asserted (speed is not a test). A timed target is met only on settled figures
//! (`settle`): a ratio whose points did not settle is reported `unsettled`, neither met nor missed.

use super::report::{Figure, Report, Target};
use super::settle::{self, Verdict};

/// Server CPU per message of proactor (io_uring) relative to the reference, at most.
const URING_CPU_RATIO: f64 = 0.8;
/// Server CPU per message of proactor (io_uring) relative to monoio (DEFER_TASKRUN), at most.
const MONOIO_CPU_RATIO: f64 = 0.85;
/// The monoio peer's server name in a report.
const MONOIO: &str = "monoio";
/// Messages/s of proactor (epoll) relative to the reference, at least.
const EPOLL_RATE_RATIO: f64 = 0.8;
/// Memory per idle connection of proactor (io_uring), bytes, at most.
const IDLE_BYTES: f64 = 1024.0;

/// Every target that the report's figures allow to check, per load generator.
pub fn check(report: &Report) -> Vec<Target> {
    let mut out = Vec::new();
    let reference = report.reference.as_str();
    let several = report.config.loadgens.len() > 1;
    for r in report.runs.iter().filter(|r| !r.same_core && r.error_count == 0) {
        let at = super::report::point_label(r.conns, r.size, false);
        let at = if several { format!("{at}, {} load", r.loadgen) } else { at };
        let mut ratio_target = |name: &str, peer: &str, f: Figure, bound: f64, at_most: bool| {
            if let Some(x) = report.ratio_to(r, peer, f) {
                let within = if at_most { x.ratio <= bound } else { x.ratio >= bound };
                out.push(target(
                    format!("{name} vs {peer}, {at}"),
                    x.ratio,
                    bound,
                    x.spread,
                    settle::verdict(&x, within),
                ));
            }
        };
        // Both io_uring front ends (handlers and async) are held to the same targets.
        if (r.server == "proactor-uring" || r.server == "proactor-uring-async") && r.conns >= 100 {
            let s = r.server.as_str();
            ratio_target(&format!("{s} CPU/msg"), reference, Figure::Cpu, URING_CPU_RATIO, true);
            ratio_target(&format!("{s} msg/s"), reference, Figure::Msgs, 1.0, false);
            ratio_target(&format!("{s} p99"), reference, Figure::P99, 1.0, true);
            ratio_target(&format!("{s} CPU/msg"), MONOIO, Figure::Cpu, MONOIO_CPU_RATIO, true);
            ratio_target(&format!("{s} msg/s"), MONOIO, Figure::Msgs, 1.0, false);
        }
        if r.server == "proactor-epoll" {
            ratio_target("proactor-epoll msg/s", reference, Figure::Msgs, EPOLL_RATE_RATIO, false);
        }
    }
    // Memory is one run per server: resident memory is not timing noise, so these are judged on
    // the single figure (the table says so).
    let idle_of = |name: &str| report.idle.iter().find(|i| i.server == name && i.error.is_none());
    let judged = |ok: bool| if ok { Verdict::Met } else { Verdict::Missed };
    if let Some(p) = idle_of("proactor-uring") {
        out.push(target(
            "proactor-uring bytes per idle connection".into(),
            p.bytes_per_conn,
            IDLE_BYTES,
            None,
            judged(p.bytes_per_conn <= IDLE_BYTES),
        ));
        if let Some(t) = idle_of(reference) {
            out.push(target(
                format!("proactor-uring bytes per idle connection vs {reference}'s"),
                p.bytes_per_conn,
                t.bytes_per_conn,
                None,
                judged(p.bytes_per_conn < t.bytes_per_conn),
            ));
        }
    }
    out
}

fn target(
    what: String,
    measured: f64,
    bound: f64,
    spread: Option<f64>,
    verdict: Verdict,
) -> Target {
    let close = spread.is_some_and(|s| bound > 0.0 && (measured / bound - 1.0).abs() <= s);
    Target { what, measured, bound, spread, verdict, met: verdict == Verdict::Met, close }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::RunResult;
    use crate::bench::spawn::ServerKind;
    use crate::bench::{Config, LoadGen, Placement};
    use std::time::Duration;

    fn run(server: &str, rounds: &[(f64, f64)]) -> RunResult {
        let kind: ServerKind = server.parse().unwrap();
        let runs = rounds
            .iter()
            .map(|&(msgs, cpu)| {
                let mut r = RunResult::empty(kind, LoadGen::Epoll, 100, 64, false);
                r.msgs_per_sec = msgs;
                r.server_cpu_s_per_million = cpu;
                r.p99_us = 100.0;
                r.messages = 1000;
                r
            })
            .collect();
        RunResult::settled(runs, 3, settle::MAX_SPREAD)
    }

    fn report(runs: Vec<RunResult>) -> Report {
        let cfg = Config {
            servers: vec!["proactor-uring".parse().unwrap(), ServerKind::REFERENCE],
            conns: vec![100],
            sizes: vec![64],
            warmup: Duration::ZERO,
            window: Duration::from_secs(1),
            rounds: 3,
            max_spread: settle::MAX_SPREAD,
            extra_rounds: settle::EXTRA_ROUNDS,
            loadgens: vec![LoadGen::Epoll],
            idle: 0,
            same_core: false,
            rate: None,
        };
        let mut r = Report::new(&cfg, &Placement { server: None, client: None });
        r.runs = runs;
        r.finish();
        r
    }

    fn verdict_of<'a>(r: &'a Report, what: &str) -> &'a Target {
        r.targets.iter().find(|t| t.what.starts_with(what)).unwrap()
    }

    #[test]
    fn settled_points_meet_or_miss() {
        let r = report(vec![
            run("proactor-uring", &[(110.0, 7.0), (111.0, 7.1), (109.0, 6.9)]),
            run("tokio-ct", &[(100.0, 10.0), (101.0, 10.1), (99.0, 9.9)]),
        ]);
        let cpu = verdict_of(&r, "proactor-uring CPU/msg");
        assert!((cpu.measured - 0.7).abs() < 1e-9);
        assert_eq!(cpu.verdict, Verdict::Met);
        assert!(cpu.met);
        assert!(cpu.spread.unwrap() < 0.1);
        assert!(!cpu.close, "0.70 against 0.80 is clear of a 6 % spread");
        let msgs = verdict_of(&r, "proactor-uring msg/s");
        assert_eq!(msgs.verdict, Verdict::Met);
        assert!(!msgs.close, "1.10 against 1.00 is clear of a 4 % spread");
        // p99 identical in every round: spread 0, settled; 1.0 is within "no worse", but right
        // on the bound.
        let p99 = verdict_of(&r, "proactor-uring p99");
        assert_eq!(p99.verdict, Verdict::Met);
        assert!(p99.close);
    }

    #[test]
    fn an_unsettled_reference_leaves_every_ratio_unsettled() {
        let r = report(vec![
            run("proactor-uring", &[(110.0, 7.0), (111.0, 7.1), (109.0, 6.9)]),
            run("tokio-ct", &[(100.0, 10.0), (60.0, 16.0), (140.0, 7.0)]),
        ]);
        for t in &r.targets {
            assert_eq!(t.verdict, Verdict::Unsettled, "{}", t.what);
            assert!(!t.met);
        }
    }

    #[test]
    fn a_settled_miss_is_a_miss() {
        let r = report(vec![
            run("proactor-uring", &[(90.0, 9.5), (91.0, 9.6), (89.0, 9.4)]),
            run("tokio-ct", &[(100.0, 10.0), (101.0, 10.1), (99.0, 9.9)]),
        ]);
        assert_eq!(verdict_of(&r, "proactor-uring CPU/msg").verdict, Verdict::Missed);
        assert_eq!(verdict_of(&r, "proactor-uring msg/s").verdict, Verdict::Missed);
    }

    #[test]
    fn monoio_is_a_second_peer_with_its_own_bound() {
        let r = report(vec![
            run("proactor-uring", &[(110.0, 7.0), (111.0, 7.1), (109.0, 6.9)]),
            run("tokio-ct", &[(100.0, 10.0), (101.0, 10.1), (99.0, 9.9)]),
            run("monoio", &[(120.0, 7.8), (121.0, 7.9), (119.0, 7.7)]),
        ]);
        let cpu = verdict_of(&r, "proactor-uring CPU/msg vs monoio");
        assert!((cpu.measured - 7.0 / 7.8).abs() < 1e-9);
        assert_eq!(cpu.bound, MONOIO_CPU_RATIO);
        assert_eq!(cpu.verdict, Verdict::Missed, "0.90 is above 0.85");
        assert_eq!(verdict_of(&r, "proactor-uring msg/s vs monoio").verdict, Verdict::Missed);
        assert_eq!(verdict_of(&r, "proactor-uring CPU/msg vs tokio-ct").verdict, Verdict::Met);
    }
}
