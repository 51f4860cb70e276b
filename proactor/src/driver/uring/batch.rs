//! Batched waits: how many completions a blocking `io_uring_enter` asks for, under a cap on
//! the time added (`IORING_FEAT_MIN_TIMEOUT`, Linux 6.12+).
//!
//! Asked for `n > 1` completions with `min_wait_usec` set, the kernel sleeps until `n` are
//! posted, or until the cap has passed and at least one is; past the cap, the first completion
//! ends the wait; the overall timeout still ends it in any case (`io_uring/wait.c`,
//! `io_cqring_min_timer_wakeup`). A completion that arrives alone within the cap thus waits for
//! the cap, and so does a wake from another thread (the eventfd poll's completion). So a batch
//! is asked for only where completions have been arriving faster than they are asked for: the
//! count grows by one each time a wait found more than it asked for, and falls back to what a
//! wait got whenever the cap cut one short. An idle loop (one completion per wait) never asks
//! for more than one, and pays nothing.

use std::time::Duration;

/// The most completions one wait asks for.
const MAX_BATCH: u32 = 64;

/// The cap on the time a wait may add to gather a batch, and the batch size it asks for next.
#[derive(Debug)]
pub(super) struct WaitBatch {
    /// The cap, in microseconds; 0 turns batching off (every wait asks for one completion).
    cap_us: u32,
    /// Completions the next blocking wait asks for (1 up to [`MAX_BATCH`]).
    want: u32,
    /// Blocking waits.
    waits: u64,
    /// Blocking waits that asked for more than one completion.
    batched: u64,
}

/// What one blocking wait asks the kernel for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ask {
    /// Completions to wait for.
    pub(super) want: u32,
    /// `min_wait_usec`: 0 unless `want > 1`.
    pub(super) cap_us: u32,
}

impl WaitBatch {
    /// Batching with `cap` (`None` or zero: off).
    pub(super) fn new(cap: Option<Duration>) -> Self {
        let cap_us = cap.map_or(0, |c| c.as_micros().min(u32::MAX as u128) as u32);
        WaitBatch { cap_us, want: 1, waits: 0, batched: 0 }
    }

    /// The cap, if batching is on.
    #[cfg(test)]
    pub(super) fn cap(&self) -> Option<Duration> {
        (self.cap_us > 0).then(|| Duration::from_micros(self.cap_us.into()))
    }

    /// What the next blocking wait asks for, bounded by `timeout` (the loop's next timer): a
    /// batch only when the timeout leaves room for the whole cap, so that no timer waits for it.
    #[inline]
    pub(super) fn ask(&mut self, timeout: Option<Duration>) -> Ask {
        self.waits += 1;
        let roomy = match timeout {
            None => true,
            Some(t) => t > Duration::from_micros(self.cap_us.into()),
        };
        if self.want > 1 && roomy {
            self.batched += 1;
            Ask { want: self.want, cap_us: self.cap_us }
        } else {
            Ask { want: 1, cap_us: 0 }
        }
    }

    /// Learns from a blocking wait that asked `ask` and found `got` completions.
    #[inline]
    pub(super) fn observe(&mut self, ask: Ask, got: u32) {
        if self.cap_us == 0 {
            return;
        }
        if got > ask.want {
            // More arrived than were asked for: asking for one more costs nothing.
            self.want = (ask.want + 1).min(MAX_BATCH);
        } else if got < ask.want {
            // The cap (or the timeout) cut the wait short: completions come slower than asked.
            self.want = got.max(1);
        }
    }

    /// Blocking waits, and those of them that asked for more than one completion.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.waits, self.batched)
    }
}

#[cfg(test)]
mod tests {
    use super::{Ask, WaitBatch};
    use std::time::Duration;

    const CAP: Option<Duration> = Some(Duration::from_micros(50));

    #[test]
    fn one_completion_per_wait_never_asks_for_more() {
        let mut b = WaitBatch::new(CAP);
        for _ in 0..1000 {
            let ask = b.ask(None);
            assert_eq!(ask, Ask { want: 1, cap_us: 0 });
            b.observe(ask, 1);
        }
        assert_eq!(b.counts(), (1000, 0));
    }

    #[test]
    fn grows_on_surplus_and_falls_back_on_a_short_wait() {
        let mut b = WaitBatch::new(CAP);
        for expected in 1..=5 {
            let ask = b.ask(None);
            assert_eq!(ask.want, expected);
            assert_eq!(ask.cap_us, if expected > 1 { 50 } else { 0 });
            b.observe(ask, expected + 3);
        }
        // Exactly what was asked for: kept.
        let ask = b.ask(None);
        b.observe(ask, 6);
        assert_eq!(b.ask(None).want, 6);
        // Cut short by the cap: back to what came, then to one.
        b.observe(Ask { want: 6, cap_us: 50 }, 2);
        assert_eq!(b.ask(None).want, 2);
        b.observe(Ask { want: 2, cap_us: 50 }, 1);
        assert_eq!(b.ask(None).want, 1);
        // Growth stops at the bound.
        for _ in 0..200 {
            let ask = b.ask(None);
            b.observe(ask, 1000);
        }
        assert_eq!(b.ask(None).want, super::MAX_BATCH);
    }

    #[test]
    fn a_timer_sooner_than_the_cap_gets_a_plain_wait() {
        let mut b = WaitBatch::new(CAP);
        let ask = b.ask(None);
        b.observe(ask, 10);
        assert_eq!(b.ask(Some(Duration::from_micros(50))), Ask { want: 1, cap_us: 0 });
        assert_eq!(b.ask(Some(Duration::from_micros(51))), Ask { want: 2, cap_us: 50 });
    }

    #[test]
    fn off_never_batches() {
        for cap in [None, Some(Duration::ZERO)] {
            let mut b = WaitBatch::new(cap);
            for _ in 0..10 {
                let ask = b.ask(None);
                assert_eq!(ask.want, 1);
                b.observe(ask, 100);
            }
            assert_eq!(b.cap(), None);
        }
    }
}
