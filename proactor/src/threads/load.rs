//! How busy one proactor thread is: its live connections and the CPU it burns, read from the
//! thread's own CPU clock — the signal the acceptor uses to send new connections elsewhere.
//!
//! Counting connections alone balances badly when connections differ: two heavy streams on one
//! thread and two idle ones on the other are "balanced" by count. The thread's CPU clock
//! (`pthread_getcpuclockid`) measures what the connections actually cost, without any
//! cooperation from the loop, and can be read from another thread.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Utilisation is re-measured at most this often; between samples the last value is used.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Weight of the newest sample in the moving average.
const NEW_WEIGHT: f64 = 0.5;

/// The load of one proactor thread.
#[derive(Debug)]
pub struct Load {
    live: AtomicUsize,
    assigned: AtomicU64,
    /// The thread's CPU-time clock, when the platform gives one.
    clock: Option<libc::clockid_t>,
    sample: Mutex<Sample>,
}

#[derive(Debug)]
struct Sample {
    at: Instant,
    cpu: Duration,
    /// Moving average of the thread's CPU use, 0.0 (idle) to 1.0 (one full core).
    util: f64,
}

impl Load {
    /// The load record of the calling thread.
    pub(crate) fn for_current_thread() -> Load {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: `pthread_self` is always valid for the calling thread; `clock` is a local the
        // call writes into.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
        let clock = (rc == 0).then_some(clock);
        let cpu = clock.and_then(read_clock).unwrap_or_default();
        Load {
            live: AtomicUsize::new(0),
            assigned: AtomicU64::new(0),
            clock,
            sample: Mutex::new(Sample { at: Instant::now(), cpu, util: 0.0 }),
        }
    }

    /// Connections this thread serves now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Connections handed to this thread since it started.
    pub fn assigned(&self) -> u64 {
        self.assigned.load(Ordering::Relaxed)
    }

    /// CPU time the thread has used so far (zero if the platform cannot tell).
    pub fn cpu_time(&self) -> Duration {
        self.clock.and_then(read_clock).unwrap_or_default()
    }

    /// Recent CPU use of the thread: 0.0 idle, 1.0 a full core (a moving average refreshed at
    /// most every 10 ms).
    pub fn utilization(&self) -> f64 {
        let Some(clock) = self.clock else { return 0.0 };
        let mut s = self.sample.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let dt = now.duration_since(s.at);
        if dt >= SAMPLE_EVERY {
            if let Some(cpu) = read_clock(clock) {
                let fresh = (cpu.saturating_sub(s.cpu).as_secs_f64() / dt.as_secs_f64()).min(1.0);
                s.util = NEW_WEIGHT * fresh + (1.0 - NEW_WEIGHT) * s.util;
                s.cpu = cpu;
                s.at = now;
            }
        }
        s.util
    }

    /// The score the acceptor minimises: live connections plus the thread's CPU use weighted by
    /// the mean number of connections per thread. With equal CPU use this is a plain
    /// least-connections choice; a thread saturated by a few heavy connections looks as loaded
    /// as one holding a whole extra share of connections.
    pub fn score(&self, mean_live: f64) -> f64 {
        self.live() as f64 + self.utilization() * mean_live.max(1.0)
    }

    /// Counts a new connection on this thread; the guard uncounts it when dropped.
    pub(crate) fn enter(self: &std::sync::Arc<Self>) -> LiveGuard {
        self.live.fetch_add(1, Ordering::Relaxed);
        self.assigned.fetch_add(1, Ordering::Relaxed);
        LiveGuard(self.clone())
    }
}

/// Keeps one connection counted in its thread's [`Load`] while alive.
#[derive(Debug)]
pub(crate) struct LiveGuard(std::sync::Arc<Load>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads a CPU-time clock; `None` once its thread has exited.
fn read_clock(clock: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a local the call writes into; an invalid clock id only yields EINVAL.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}
