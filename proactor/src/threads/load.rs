//! How busy one proactor thread is: its live connections and the CPU it burns, read from the
//! thread's own CPU clock — the signal the acceptor uses to send new connections elsewhere.
//!
//! Counting connections alone balances badly when connections differ: two heavy streams on one
//! thread and two idle ones on the other are "balanced" by count. The thread's CPU clock
//! (`pthread_getcpuclockid`) measures what the connections actually cost, without any
//! cooperation from the loop, and can be read from another thread.
//!
//! A thread's CPU clock is read through its clock id, which names the thread's kernel id; read
//! after the thread exited, it may name a newer thread. Loads are only read while their
//! [`super::MultiProactor`] runs.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Utilisation is re-measured at most this often; between samples the last value is used.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Weight of the newest sample in the moving average.
const NEW_WEIGHT: f64 = 0.5;

/// Below this total CPU use (in cores) of all threads, CPU differences are noise and new
/// connections are spread by count alone; above it, CPU shares weigh fully.
const CPU_SIGNIFICANT: f64 = 0.25;

/// How much more a thread's share of the CPU counts than its share of the connections.
const CPU_WEIGHT: f64 = 2.0;

/// Picks the index with the lowest load score among `(live connections, utilisation)` pairs:
/// `live share + CPU_WEIGHT × w × CPU share`, where the shares are of the totals over all
/// threads and `w` ramps from 0 to 1 as the total CPU use reaches [`CPU_SIGNIFICANT`]. Shares,
/// not absolute values, so the choice holds when the machine is saturated and every thread gets
/// less CPU than it wants. Ties go to the lower index.
pub(crate) fn pick(loads: &[(usize, f64)]) -> usize {
    let total_live: usize = loads.iter().map(|l| l.0).sum();
    let total_util: f64 = loads.iter().map(|l| l.1).sum();
    let w = (total_util / CPU_SIGNIFICANT).min(1.0);
    let mut best = (0, f64::INFINITY);
    for (i, &(live, util)) in loads.iter().enumerate() {
        let live_share = live as f64 / total_live.max(1) as f64;
        let cpu_share = if total_util > 0.0 { util / total_util } else { 0.0 };
        let score = live_share + CPU_WEIGHT * w * cpu_share;
        if score < best.1 {
            best = (i, score);
        }
    }
    best.0
}

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

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn idle_threads_are_picked_by_count() {
        assert_eq!(pick(&[(0, 0.0), (0, 0.0)]), 0);
        assert_eq!(pick(&[(3, 0.01), (2, 0.03)]), 1);
        assert_eq!(pick(&[(2, 0.0), (2, 0.0), (1, 0.0)]), 2);
    }

    #[test]
    fn a_cpu_bound_thread_gets_no_new_connection_while_others_are_light() {
        // Thread 0 holds two heavy connections, thread 1 six light ones.
        assert_eq!(pick(&[(2, 0.9), (6, 0.1)]), 1);
        // Once the CPU is even, the count decides again.
        assert_eq!(pick(&[(2, 0.5), (6, 0.5)]), 0);
    }
}
