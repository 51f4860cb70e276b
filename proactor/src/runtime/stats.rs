//! Outstanding operations, as a user can inspect them: how many, of which kind, how old.

use super::latency::OpLatency;
use super::table::Table;
use crate::driver::DriverKind;
use crate::faults::FaultReport;
use std::fmt;
use std::time::Duration;

/// What a proactor has done and holds, for a service's metrics or a log line
/// ([`Handle::stats`](crate::Handle::stats); its `Display` is one line).
///
/// ```
/// let p = proactor::Proactor::builder().latency_stats(true).build()?;
/// p.block_on(proactor::submit(proactor::op::Nop))?;
/// let stats = p.stats();
/// assert_eq!(stats.latency[0].kind, "nop");
/// println!("{stats}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Stats {
    /// The driver in use.
    pub driver: DriverKind,
    /// What is in flight now.
    pub in_flight: InFlight,
    /// Turns that delivered completions.
    pub completion_batches: u64,
    /// Submit-to-complete times per kind of operation, sorted by kind; empty unless
    /// [`Builder::latency_stats`](crate::Builder::latency_stats) (or `PROACTOR_STATS=1`) asked
    /// for them.
    pub latency: Vec<OpLatency>,
    /// The io_uring queues (`None` on the epoll driver).
    pub ring: Option<RingStats>,
    /// What fault injection did, when it is on.
    pub faults: Option<FaultReport>,
    /// The loop's timers (sleeps, intervals, timeouts): none of them is an operation.
    pub timers: super::TimerStats,
}

/// The io_uring queues: their sizes and what the completion queue went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingStats {
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries.
    pub cq_entries: u32,
    /// Submissions queued and not yet handed to the kernel now.
    pub sq_pending: u32,
    /// The most completions found waiting in the queue at one reap: how close it came to full.
    pub cq_deepest: u32,
    /// Reaps that found the kernel keeping completions in its overflow list (the queue was
    /// full; nothing is lost, but the completions waited).
    pub cq_overflowed: u64,
    /// Completions the kernel dropped (only on kernels without `IORING_FEAT_NODROP`, or when it
    /// could not allocate an overflow entry).
    pub cq_dropped: u32,
    /// Waits that blocked (or would have: nothing was ready when the loop asked).
    pub waits: u64,
    /// Of those, waits that asked for a batch of completions (see
    /// [`RingConfig::min_wait`](crate::RingConfig::min_wait)).
    pub waits_batched: u64,
}

impl fmt::Display for Stats {
    /// `stats: driver=io_uring batches=.. in_flight=.. queued=.. oldest=.. | ring ... |
    /// recv n=.. p50<=.. p99<=.. max=.. ; ... | faults ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.in_flight;
        write!(
            f,
            "stats: driver={} batches={} in_flight={} queued={} oldest={:?}",
            self.driver,
            self.completion_batches,
            i.in_flight,
            i.queued,
            i.oldest.unwrap_or_default()
        )?;
        if let Some(r) = &self.ring {
            write!(
                f,
                " | ring sq={} cq={} sq_pending={} cq_deepest={} cq_overflowed={} cq_dropped={} waits={} batched={}",
                r.sq_entries,
                r.cq_entries,
                r.sq_pending,
                r.cq_deepest,
                r.cq_overflowed,
                r.cq_dropped,
                r.waits,
                r.waits_batched
            )?;
        }
        if !self.latency.is_empty() {
            f.write_str(" | latency")?;
            for (n, l) in self.latency.iter().enumerate() {
                let sep = if n == 0 { " " } else { "; " };
                write!(
                    f,
                    "{sep}{} n={} mean={:?} p50<={:?} p99<={:?} max={:?}",
                    l.kind, l.count, l.mean, l.p50, l.p99, l.max
                )?;
            }
        }
        let t = &self.timers;
        if t.started > 0 {
            write!(
                f,
                " | timers armed={} started={} fired={} cancelled={}",
                t.armed, t.started, t.fired, t.cancelled
            )?;
        }
        if let Some(faults) = &self.faults {
            write!(f, " | faults {}", faults.counts)?;
        }
        Ok(())
    }
}

/// A snapshot of the operations the proactor holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Operations handed to the driver and not yet completed.
    pub in_flight: usize,
    /// Operations waiting for admission under the in-flight cap.
    pub queued: usize,
    /// In-flight operations per kind (`"recv"`, `"accept"`, …), sorted by name.
    pub by_kind: Vec<(&'static str, usize)>,
    /// Age of the oldest in-flight operation.
    pub oldest: Option<Duration>,
    /// Age of the oldest in-flight operation of each kind, sorted by name.
    pub oldest_by_kind: Vec<(&'static str, Duration)>,
}

impl InFlight {
    /// `now_ms` and the slots' start times are on the loop's wrapping millisecond clock.
    pub(crate) fn collect(ops: &Table, now_ms: u32) -> InFlight {
        let mut snap = InFlight::default();
        let mut oldest: Option<u32> = None;
        for (_, slot) in ops.iter() {
            if slot.state.is_queued() {
                snap.queued += 1;
                continue;
            }
            if !slot.state.in_driver() {
                continue;
            }
            snap.in_flight += 1;
            let name = slot.kind.name;
            match snap.by_kind.iter_mut().find(|(k, _)| *k == name) {
                Some((_, n)) => *n += 1,
                None => snap.by_kind.push((name, 1)),
            }
            let age = now_ms.wrapping_sub(slot.started);
            oldest = Some(oldest.map_or(age, |o| o.max(age)));
            let age = Duration::from_millis(age.into());
            match snap.oldest_by_kind.iter_mut().find(|(k, _)| *k == name) {
                Some((_, a)) => *a = (*a).max(age),
                None => snap.oldest_by_kind.push((name, age)),
            }
        }
        snap.by_kind.sort();
        snap.oldest_by_kind.sort();
        snap.oldest = oldest.map(|ms| Duration::from_millis(ms.into()));
        snap
    }
}
