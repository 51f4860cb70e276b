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
//!
//! A batched wait arms a kernel timer for the cap (a clock reprogram, a VM exit on this VM), so
//! it pays only where the batch fills: the count is also held to half the completions the
//! recent rate brings within one cap. With the echo server at 100 conns × 64 B and 30 k msg/s,
//! a 50 µs cap without that bound cost more CPU per message than no cap (18.8 against 16.2 µs:
//! few batches filled); with arrivals in bursts (a starved load generator) a 200 µs cap cost
//! 28–58 % more than none at 1,000 conns × 64 B (11–15 k msg/s, load 6). With the bound, at
//! 30 k msg/s: 11.8 µs against 12.9 without it (100 conns), 12.6 against 13.8 (1,000).

use std::time::{Duration, Instant};

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
    /// Completions per microsecond, a moving average over the spans between blocking waits.
    rate: f64,
    /// When the last blocking wait ended.
    since: Option<Instant>,
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
        WaitBatch { cap_us, want: 1, waits: 0, batched: 0, rate: 0.0, since: None }
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
        // Half of what the recent rate brings within one cap: a batch that surely fills.
        let fills = (self.rate * f64::from(self.cap_us) * 0.5) as u32;
        let want = self.want.min(fills);
        if want > 1 && roomy {
            self.batched += 1;
            Ask { want, cap_us: self.cap_us }
        } else {
            Ask { want: 1, cap_us: 0 }
        }
    }

    /// Learns from a blocking wait that asked `ask` and found `got` completions, ending `now`
    /// (the completions reaped without blocking since the last one are left out of the rate:
    /// mostly those of operations done at submission, which need no wait).
    #[inline]
    pub(super) fn observe(&mut self, ask: Ask, got: u32, now: Instant) {
        if self.cap_us == 0 {
            return;
        }
        if let Some(since) = self.since {
            let us = now.saturating_duration_since(since).as_secs_f64() * 1e6;
            let rate = f64::from(got) / us.max(1.0);
            self.rate += (rate - self.rate) * 0.25;
        }
        self.since = Some(now);
        if got > ask.want {
            // More arrived than were asked for: asking for one more costs nothing.
            self.want = self.want.max(ask.want + 1).min(MAX_BATCH);
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
    use std::time::{Duration, Instant};

    const CAP: Option<Duration> = Some(Duration::from_micros(50));

    /// A loop that sees blocking waits end `every` apart.
    struct Clock(Instant, Duration);

    impl Clock {
        fn new(every_us: u64) -> Clock {
            Clock(Instant::now(), Duration::from_micros(every_us))
        }
        /// One blocking wait that finds `got`; returns what it asked for.
        fn wait(&mut self, b: &mut WaitBatch, timeout: Option<Duration>, got: u32) -> Ask {
            let ask = b.ask(timeout);
            self.0 += self.1;
            b.observe(ask, got, self.0);
            ask
        }
    }

    #[test]
    fn one_completion_per_wait_never_asks_for_more() {
        let mut b = WaitBatch::new(CAP);
        // However often the waits end: one completion each is never a surplus.
        for every in [1, 10, 1000] {
            let mut clock = Clock::new(every);
            for _ in 0..1000 {
                assert_eq!(clock.wait(&mut b, None, 1), Ask { want: 1, cap_us: 0 });
            }
        }
        assert_eq!(b.counts(), (3000, 0));
    }

    #[test]
    fn grows_on_surplus_and_falls_back_on_a_short_wait() {
        let mut b = WaitBatch::new(CAP);
        // 20 completions per 10 µs: the rate would fill batches of 50.
        let mut clock = Clock::new(10);
        // The first wait starts the clock, the second gives the rate.
        clock.wait(&mut b, None, 20);
        clock.wait(&mut b, None, 20);
        for expected in 2..=5 {
            let ask = clock.wait(&mut b, None, 20);
            assert_eq!(ask, Ask { want: expected, cap_us: 50 });
        }
        // Exactly what was asked for: kept.
        assert_eq!(clock.wait(&mut b, None, 6).want, 6);
        assert_eq!(clock.wait(&mut b, None, 20).want, 6);
        // Cut short by the cap: back to what came, then to one.
        assert_eq!(clock.wait(&mut b, None, 2).want, 7);
        assert_eq!(clock.wait(&mut b, None, 1).want, 2);
        assert_eq!(clock.wait(&mut b, None, 1), Ask { want: 1, cap_us: 0 });
    }

    #[test]
    fn the_rate_bounds_the_batch() {
        let mut b = WaitBatch::new(CAP);
        // A surplus every wait, but only 3 completions per 100 µs: 0.75 within half the cap.
        let mut clock = Clock::new(100);
        for _ in 0..100 {
            assert_eq!(clock.wait(&mut b, None, 3).want, 1);
        }
        // The rate rises: 3 per 10 µs, 7.5 per cap; the surplus count is already high.
        let mut clock = Clock(clock.0, Duration::from_micros(10));
        for _ in 0..20 {
            clock.wait(&mut b, None, 3);
        }
        assert_eq!(b.ask(None).want, 3);
        // Growth stops at the bound however fast completions come.
        let mut clock = Clock(clock.0, Duration::from_micros(1));
        for _ in 0..200 {
            clock.wait(&mut b, None, 1000);
        }
        assert_eq!(b.ask(None).want, super::MAX_BATCH);
    }

    #[test]
    fn a_timer_sooner_than_the_cap_gets_a_plain_wait() {
        let mut b = WaitBatch::new(CAP);
        let mut clock = Clock::new(1);
        for _ in 0..10 {
            clock.wait(&mut b, None, 10);
        }
        assert_eq!(b.ask(Some(Duration::from_micros(50))), Ask { want: 1, cap_us: 0 });
        assert_eq!(b.ask(Some(Duration::from_micros(51))).cap_us, 50);
    }

    #[test]
    fn off_never_batches() {
        for cap in [None, Some(Duration::ZERO)] {
            let mut b = WaitBatch::new(cap);
            let mut clock = Clock::new(1);
            for _ in 0..10 {
                assert_eq!(clock.wait(&mut b, None, 100).want, 1);
            }
            assert_eq!(b.cap(), None);
        }
    }
}
