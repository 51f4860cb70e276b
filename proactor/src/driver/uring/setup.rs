//! Ring setup: the flags a user can ask for, and the fall-back ladder when the kernel refuses.

use io_uring::IoUring;
use std::io;
use std::time::Duration;

/// How the io_uring ring is set up, built with chained setters and handed to
/// [`crate::Builder::ring`]:
///
/// ```
/// use proactor::{Proactor, RingConfig};
/// let ring = RingConfig::default().entries(64).cq_entries(512).defer_taskrun(false);
/// assert_eq!((ring.sq_size(), ring.cq_size()), (64, 512));
/// let p = Proactor::builder().ring(ring).build()?;
/// // What the kernel accepted (a flag it refused is dropped; see below), on io_uring.
/// if let Some(effective) = p.ring_config() {
///     assert!(!effective.is_defer_taskrun());
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// The defaults were measured on Linux 6.18: a single-issuer ring with deferred task running
/// gave the highest echo throughput, cooperative task running was in between, a plain ring the
/// lowest (see `docs/architecture.md`). A kernel that refuses a flag (`EINVAL`, older kernels)
/// gets a ring without it: `DEFER_TASKRUN` goes first, then `SINGLE_ISSUER`, `COOP_TASKRUN` and
/// `SQPOLL`; [`crate::Handle::ring_config`] says what was kept.
///
/// The fields are private so that settings can be added without breaking users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingConfig {
    /// Submission queue entries (a power of two; the kernel rounds up).
    entries: u32,
    /// Completion queue entries; 0 means twice `entries`.
    cq_entries: u32,
    /// `IORING_SETUP_SINGLE_ISSUER`: only the proactor's thread submits.
    single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN`: completion work runs only when the loop asks for events.
    defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN`: no interrupting IPIs for completion work.
    coop_taskrun: bool,
    /// `IORING_SETUP_SQPOLL` with this idle time in milliseconds (off by default: it burns a core).
    sqpoll_idle_ms: Option<u32>,
    /// The cap on the time a blocking wait may add to gather a batch of completions, in
    /// microseconds (`min_wait_usec`); 0 is off.
    min_wait_us: u32,
}

/// The default cap of a batched wait, in microseconds (see [`RingConfig::min_wait`]).
/// Measured with the echo server paced at 30 k msg/s (`proactor bench --rate 30000`, 3
/// alternating rounds, machine otherwise quiet): at 100 conns × 64 B server CPU per message
/// 16.2 µs with no cap (1.22–1.29 `io_uring_enter` and 0.42–0.44 context switches per
/// message), 11.8 µs at 200 µs (0.31–0.36 enters, 0.16–0.19 switches); at 1,000 conns 16.1 →
/// 12.6 µs. p50 round trip 69 → ~92 µs, p99 unchanged (330–440 µs). A 50 µs cap cost more CPU
/// than none (19–20 µs: the timer armed for batches that seldom filled).
const DEFAULT_MIN_WAIT_US: u32 = 200;

/// `PROACTOR_MIN_WAIT_US`: replaces [`DEFAULT_MIN_WAIT_US`] (0 turns batching off).
fn default_min_wait_us() -> u32 {
    match std::env::var("PROACTOR_MIN_WAIT_US") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            tracing::warn!("PROACTOR_MIN_WAIT_US={v:?} is not a number of microseconds; ignored");
            DEFAULT_MIN_WAIT_US
        }),
        Err(_) => DEFAULT_MIN_WAIT_US,
    }
}

impl Default for RingConfig {
    /// 256 entries, a completion queue twice that, `SINGLE_ISSUER | DEFER_TASKRUN` (with
    /// `COOP_TASKRUN` as the fall-back), no `SQPOLL`, batched waits capped at 200 µs (or
    /// `PROACTOR_MIN_WAIT_US`; see [`RingConfig::min_wait`]).
    fn default() -> Self {
        RingConfig {
            entries: 256,
            cq_entries: 0,
            single_issuer: true,
            defer_taskrun: true,
            coop_taskrun: true,
            sqpoll_idle_ms: None,
            min_wait_us: default_min_wait_us(),
        }
    }
}

impl RingConfig {
    /// The default setup (as [`RingConfig::default`]).
    pub fn new() -> RingConfig {
        RingConfig::default()
    }

    /// Submission queue entries (default 256; the kernel rounds up to a power of two, and at
    /// least 2 are used: an operation with a deadline is pushed as a linked pair).
    pub const fn entries(mut self, entries: u32) -> Self {
        self.entries = entries;
        self
    }

    /// Completion queue entries (default 0: twice [`RingConfig::entries`]; never fewer than
    /// the submission entries). More lets more completions wait between two turns of the loop
    /// without the kernel holding them back.
    pub const fn cq_entries(mut self, entries: u32) -> Self {
        self.cq_entries = entries;
        self
    }

    /// `IORING_SETUP_SINGLE_ISSUER` (default on): only the proactor's thread submits, which a
    /// proactor (`!Send`) guarantees.
    pub const fn single_issuer(mut self, on: bool) -> Self {
        self.single_issuer = on;
        self
    }

    /// `IORING_SETUP_DEFER_TASKRUN` (default on; needs `SINGLE_ISSUER`): the kernel runs
    /// completion work only when the loop asks for completions.
    pub const fn defer_taskrun(mut self, on: bool) -> Self {
        self.defer_taskrun = on;
        self
    }

    /// `IORING_SETUP_COOP_TASKRUN` (default on; used when `DEFER_TASKRUN` is off or refused):
    /// completion work does not interrupt the thread.
    pub const fn coop_taskrun(mut self, on: bool) -> Self {
        self.coop_taskrun = on;
        self
    }

    /// `IORING_SETUP_SQPOLL` with a kernel thread polling the submission queue, which sleeps
    /// after `idle` without work (whole milliseconds); `None` (the default) turns it off. It
    /// saves the submitting system call at the cost of a core kept busy.
    pub const fn sqpoll(mut self, idle: Option<Duration>) -> Self {
        self.sqpoll_idle_ms = match idle {
            Some(d) => {
                let ms = d.as_millis();
                Some(if ms > u32::MAX as u128 { u32::MAX } else { ms as u32 })
            }
            None => None,
        };
        self
    }

    /// Batched waits (`IORING_FEAT_MIN_TIMEOUT`, Linux 6.12+): a loop that has been finding
    /// more completions per wait than it asked for asks the kernel for several, waiting at most
    /// `cap` longer for them (whole microseconds) than for the first; `None` asks for one
    /// completion per wait. A loop that finds one completion per wait (an idle or lightly loaded
    /// one) keeps asking for one and pays nothing; a busier one may see a completion, or a wake
    /// from another thread, up to `cap` late. A timer sooner than `cap` gets an unbatched wait,
    /// so timers keep their deadlines. Default 200 µs, or `PROACTOR_MIN_WAIT_US` when set
    /// (0: off). A kernel without the feature waits for one completion, and
    /// [`crate::Handle::ring_config`] reports `None`. The epoll driver ignores it:
    /// `epoll_wait` returns whatever is ready, with nothing to wait for in addition.
    pub const fn min_wait(mut self, cap: Option<Duration>) -> Self {
        self.min_wait_us = match cap {
            Some(d) => {
                let us = d.as_micros();
                if us > u32::MAX as u128 {
                    u32::MAX
                } else {
                    us as u32
                }
            }
            None => 0,
        };
        self
    }

    /// The cap of a batched wait ([`RingConfig::min_wait`]), if batching is on.
    pub const fn min_wait_cap(&self) -> Option<Duration> {
        if self.min_wait_us == 0 {
            None
        } else {
            Some(Duration::from_micros(self.min_wait_us as u64))
        }
    }

    /// The submission queue entries asked for.
    pub const fn sq_size(&self) -> u32 {
        self.entries
    }

    /// The completion queue entries the ring is built with: [`RingConfig::cq_entries`], or
    /// twice the submission entries when that is 0, and never fewer than those.
    pub const fn cq_size(&self) -> u32 {
        let cq =
            if self.cq_entries == 0 { self.entries.saturating_mul(2) } else { self.cq_entries };
        let cq = if cq < self.entries { self.entries } else { cq };
        if cq < 2 {
            2
        } else {
            cq
        }
    }

    /// Whether `SINGLE_ISSUER` is asked for (or, from [`crate::Handle::ring_config`], in use).
    pub const fn is_single_issuer(&self) -> bool {
        self.single_issuer
    }

    /// Whether `DEFER_TASKRUN` is asked for (or in use).
    pub const fn is_defer_taskrun(&self) -> bool {
        self.defer_taskrun
    }

    /// Whether `COOP_TASKRUN` is asked for (it applies only when `DEFER_TASKRUN` is off).
    pub const fn is_coop_taskrun(&self) -> bool {
        self.coop_taskrun
    }

    /// The `SQPOLL` idle time, if `SQPOLL` is asked for (or in use).
    pub const fn sqpoll_idle(&self) -> Option<Duration> {
        match self.sqpoll_idle_ms {
            Some(ms) => Some(Duration::from_millis(ms as u64)),
            None => None,
        }
    }
}

/// Builds the ring with the flags asked for, dropping the newer ones in turn if the kernel
/// rejects them with `EINVAL` (older kernels), so a ring is made wherever io_uring works at all.
pub(super) fn build_ring(config: &RingConfig) -> io::Result<(IoUring, RingConfig)> {
    let mut attempt = config.clone();
    loop {
        match try_build(&attempt) {
            Ok(ring) => return Ok((ring, attempt)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                if attempt.defer_taskrun {
                    attempt.defer_taskrun = false;
                } else if attempt.single_issuer {
                    attempt.single_issuer = false;
                } else if attempt.coop_taskrun {
                    attempt.coop_taskrun = false;
                } else if attempt.sqpoll_idle_ms.is_some() {
                    attempt.sqpoll_idle_ms = None;
                } else {
                    return Err(e);
                }
                tracing::debug!("io_uring setup refused a flag, retrying with {attempt:?}");
            }
            Err(e) => return Err(e),
        }
    }
}

fn try_build(config: &RingConfig) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    builder.setup_cqsize(config.cq_size()).setup_clamp();
    if config.single_issuer {
        builder.setup_single_issuer();
    }
    if config.defer_taskrun {
        builder.setup_defer_taskrun().setup_taskrun_flag();
    } else if config.coop_taskrun {
        builder.setup_coop_taskrun().setup_taskrun_flag();
    }
    if let Some(idle) = config.sqpoll_idle_ms {
        builder.setup_sqpoll(idle);
    }
    // Two entries at least: an operation with a deadline is pushed as a linked pair.
    builder.build(config.entries.max(2))
}

#[cfg(test)]
mod tests {
    use super::RingConfig;
    use std::time::Duration;

    #[test]
    fn setters_and_getters() {
        let d = RingConfig::default();
        assert_eq!((d.sq_size(), d.cq_size()), (256, 512));
        assert!(d.is_single_issuer() && d.is_defer_taskrun() && d.is_coop_taskrun());
        assert_eq!(d.sqpoll_idle(), None);
        let c = RingConfig::new()
            .entries(64)
            .cq_entries(16)
            .single_issuer(false)
            .defer_taskrun(false)
            .coop_taskrun(false)
            .sqpoll(Some(Duration::from_micros(2_500)));
        // A completion queue smaller than the submission queue is raised to it.
        assert_eq!((c.sq_size(), c.cq_size()), (64, 64));
        assert!(!c.is_single_issuer() && !c.is_defer_taskrun() && !c.is_coop_taskrun());
        assert_eq!(c.sqpoll_idle(), Some(Duration::from_millis(2)));
        assert_eq!(RingConfig::new().entries(0).cq_size(), 2);
        assert_eq!(c.clone().sqpoll(None).sqpoll_idle(), None);
        let w = RingConfig::new().min_wait(Some(Duration::from_nanos(250_900)));
        assert_eq!(w.min_wait_cap(), Some(Duration::from_micros(250)));
        assert_eq!(w.min_wait(None).min_wait_cap(), None);
        assert_eq!(RingConfig::new().min_wait(Some(Duration::ZERO)).min_wait_cap(), None);
    }
}
