//! Per-kind operation latency: submit-to-complete times in log2 buckets, kept only when asked
//! for (`Builder::latency_stats`, or `PROACTOR_STATS=1`), so the path every operation takes
//! pays one untaken branch otherwise.
//!
//! Times are taken on the loop's clock, read once per turn after the driver's wait: an
//! operation submitted during a turn is stamped with that turn's time, and completes at the
//! time of the turn that reaps it. That is the latency the application sees (the time a
//! completion waited for its turn included), at the price of no clock read per operation.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// Buckets: `[0, 2)` µs, then `[2^i, 2^(i+1))` µs for `i` in 1..32.
const BUCKETS: usize = 32;

/// Submit-to-complete times of one kind of operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpLatency {
    /// The operation's name (`"recv"`, `"accept"`, …).
    pub kind: &'static str,
    /// Completions measured.
    pub count: u64,
    /// Mean time.
    pub mean: Duration,
    /// Upper bound of the bucket holding the median.
    pub p50: Duration,
    /// Upper bound of the bucket holding the 99th percentile.
    pub p99: Duration,
    /// Longest time.
    pub max: Duration,
    /// `(upper bound, count)` of every non-empty bucket, in order.
    pub buckets: Vec<(Duration, u64)>,
}

#[derive(Clone)]
struct Histogram {
    buckets: [u64; BUCKETS],
    count: u64,
    sum_us: u64,
    max_us: u32,
}

impl Histogram {
    fn record(&mut self, us: u32) {
        let i = (32 - us.leading_zeros()).saturating_sub(1) as usize;
        self.buckets[i.min(BUCKETS - 1)] += 1;
        self.count += 1;
        self.sum_us += u64::from(us);
        self.max_us = self.max_us.max(us);
    }

    fn upper(i: usize) -> Duration {
        Duration::from_micros(2u64 << i)
    }

    fn quantile(&self, q: f64) -> Duration {
        let want = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Histogram::upper(i);
            }
        }
        Histogram::upper(BUCKETS - 1)
    }
}

/// The loop's latency records (one per proactor, when enabled).
pub(crate) struct Latency {
    epoch: Instant,
    now_us: Cell<u32>,
    /// Submission time of the operation in each table slot (by key).
    started: RefCell<Vec<u32>>,
    kinds: RefCell<Vec<(&'static str, Histogram)>>,
}

impl Latency {
    pub(crate) fn new() -> Latency {
        Latency {
            epoch: Instant::now(),
            now_us: Cell::new(0),
            started: RefCell::new(Vec::new()),
            kinds: RefCell::new(Vec::new()),
        }
    }

    /// The turn's time (after the driver's wait).
    pub(crate) fn tick(&self, now: Instant) {
        // Truncation intended: differences are taken modulo 2^32 µs (71 minutes).
        self.now_us.set(now.saturating_duration_since(self.epoch).as_micros() as u32);
    }

    /// The operation in slot `key` was handed to the driver now.
    pub(crate) fn start(&self, key: usize) {
        let mut started = self.started.borrow_mut();
        if key >= started.len() {
            started.resize(key + 1, 0);
        }
        started[key] = self.now_us.get();
    }

    /// The operation in slot `key`, of kind `name`, completed now; `more`: a multishot
    /// operation goes on, and its next item is timed from now.
    pub(crate) fn complete(&self, key: usize, name: &'static str, more: bool) {
        let now = self.now_us.get();
        let us = {
            let mut started = self.started.borrow_mut();
            let Some(at) = started.get_mut(key) else { return };
            let us = now.wrapping_sub(*at);
            if more {
                *at = now;
            }
            us
        };
        let mut kinds = self.kinds.borrow_mut();
        let i = match kinds.iter().position(|(k, _)| std::ptr::eq(*k, name) || *k == name) {
            Some(i) => i,
            None => {
                let empty = Histogram { buckets: [0; BUCKETS], count: 0, sum_us: 0, max_us: 0 };
                kinds.push((name, empty));
                kinds.len() - 1
            }
        };
        kinds[i].1.record(us);
    }

    /// Every kind measured so far, by name.
    pub(crate) fn snapshot(&self) -> Vec<OpLatency> {
        let mut out: Vec<OpLatency> = self
            .kinds
            .borrow()
            .iter()
            .map(|(kind, h)| OpLatency {
                kind,
                count: h.count,
                mean: Duration::from_micros(h.sum_us / h.count.max(1)),
                p50: h.quantile(0.5),
                p99: h.quantile(0.99),
                max: Duration::from_micros(h.max_us.into()),
                buckets: h
                    .buckets
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| (Histogram::upper(i), *n))
                    .collect(),
            })
            .collect();
        out.sort_by_key(|l| l.kind);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let mut h = Histogram { buckets: [0; BUCKETS], count: 0, sum_us: 0, max_us: 0 };
        for us in [0, 1, 2, 3, 100, 100, 100, 100, 100, 5000] {
            h.record(us);
        }
        assert_eq!(h.buckets[0], 2); // 0 and 1
        assert_eq!(h.buckets[1], 2); // 2 and 3
        assert_eq!(h.buckets[6], 5); // 64..128
        assert_eq!(h.quantile(0.5), Duration::from_micros(128));
        assert_eq!(h.quantile(0.99), Duration::from_micros(8192));
        assert_eq!(h.max_us, 5000);
        h.record(u32::MAX);
        assert_eq!(h.buckets[BUCKETS - 1], 1);
    }
}
