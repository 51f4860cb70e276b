//! Timers: `sleep`, `sleep_until`, `interval`, `timeout` around any future, and (on
//! operations) `Op::deadline`.
//!
//! Every sleep of a thread — [`sleep`], [`sleep_until`], [`Interval::tick`], [`timeout`] and
//! hyper's timer (`compat::hyper::HyperTimer`) — is an entry in its loop's timer set, not a
//! kernel operation: the loop bounds each wait by the earliest deadline and wakes the sleeps
//! that are due after it, so arming, resetting or dropping a sleep costs no system call. They
//! are counted in [`Stats::timers`](crate::runtime::Stats::timers), not in the operations in
//! flight. A timer as a kernel operation is still there for completion handlers
//! ([`crate::op::Timeout`] with `Handle::start`), and an operation's own deadline
//! ([`crate::Op::deadline`], `Handle::start_with_deadline`) is the driver's (a linked timeout on
//! io_uring).

use crate::runtime::Handle;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Completes `duration` after the call (see [`Sleep`]).
///
/// ```
/// use std::time::{Duration, Instant};
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let start = Instant::now();
///     proactor::time::sleep(Duration::from_millis(10)).await?;
///     assert!(start.elapsed() >= Duration::from_millis(10));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    let now = Instant::now();
    // A duration past the clock's range sleeps for as long as one can (about 30 years).
    let deadline = now.checked_add(duration).unwrap_or_else(|| far_future(now));
    sleep_until(deadline)
}

/// Completes at `deadline` (at its first poll, if that has passed), on the monotonic clock
/// `Instant` reads.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, timer: None }
}

fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365 * 30)
}

/// A sleep until an instant: the future [`sleep`] and [`sleep_until`] return.
///
/// The deadline is fixed when the sleep is made; the timer is armed in the current proactor's
/// timer set at the first poll (a sleep never polled costs nothing) and leaves it when the
/// sleep completes, is dropped or is [reset](Sleep::reset) — none of which is a system call.
/// It completes with `Ok(())` at the deadline, or with an error if no proactor runs on the
/// thread that polls it.
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// The loop it is armed in, and its entry there.
    timer: Option<(Rc<crate::runtime::Core>, crate::runtime::TimerKey)>,
}

impl Sleep {
    /// The instant it completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline (earlier or later, and again after it completed: it then completes
    /// once more at the new deadline). An armed timer moves in its loop's timer set; nothing
    /// reaches the kernel.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if let Some((core, key)) = &self.timer {
            if core.move_timer(*key, deadline) {
                return;
            }
        }
        // Fired (or never armed): the next poll arms a new timer if the deadline is ahead.
        if let Some((core, key)) = self.timer.take() {
            core.cancel_timer(key);
        }
    }
}

impl Future for Sleep {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some((core, key)) = &this.timer {
            if !core.poll_timer(*key, cx.waker()) {
                return Poll::Pending;
            }
            if let Some((core, key)) = this.timer.take() {
                core.cancel_timer(key);
            }
            return Poll::Ready(Ok(()));
        }
        if Instant::now() >= this.deadline {
            return Poll::Ready(Ok(()));
        }
        let Some(handle) = Handle::try_current() else {
            return Poll::Ready(Err(io::Error::other(
                "no proactor is running on this thread (use block_on or run)",
            )));
        };
        let core = handle.core;
        let key = core.arm_timer(this.deadline, cx.waker());
        this.timer = Some((core, key));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((core, key)) = self.timer.take() {
            core.cancel_timer(key);
        }
    }
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("armed", &self.timer.is_some())
            .finish()
    }
}

/// What an [`Interval`] does when ticks were missed: a tick was taken (its [`Interval::tick`]
/// completed) a full period or more after it was due, because the task was busy or did not
/// call `tick`. A tick taken less late than that misses nothing, and the schedule stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MissedTickBehavior {
    /// Catch up: the missed ticks complete at once, one per call, until the schedule is met
    /// again; the schedule stays `start + n * period` (tokio's default, and this one's).
    #[default]
    Burst,
    /// Start over: the next tick comes one period after the late one was taken; the schedule
    /// shifts by the delay.
    Delay,
    /// Drop the missed ticks: the next tick is the next one on the original schedule that is
    /// still in the future.
    Skip,
}

/// A ticking timer: [`Interval::tick`] completes once per period. Made by [`interval`] or
/// [`interval_at`].
///
/// Each tick returns the instant it was scheduled for (not when it completed), so a task can
/// tell how late it is. A tick future that is dropped (say, the losing branch of a `select!`)
/// loses nothing: the next call waits for the same tick.
///
/// ```
/// use std::time::{Duration, Instant};
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let start = Instant::now();
///     let mut every = proactor::time::interval(Duration::from_millis(10));
///     let first = every.tick().await; // at once
///     every.tick().await;
///     let third = every.tick().await;
///     assert_eq!(third - first, Duration::from_millis(20));
///     assert!(start.elapsed() >= Duration::from_millis(20));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Interval {
    /// When the next tick is due.
    next: Instant,
    period: Duration,
    missed: MissedTickBehavior,
}

/// An interval whose first tick completes at once, then every `period`.
///
/// # Panics
/// If `period` is zero.
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// An interval whose first tick completes at `start`, then every `period`.
///
/// # Panics
/// If `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval period must be non-zero");
    Interval { next: start, period, missed: MissedTickBehavior::default() }
}

impl Interval {
    /// Waits for the next tick and returns the instant it was scheduled for.
    ///
    /// If the timer cannot be armed (no proactor runs on this thread), the tick completes at
    /// its instant's turn anyway, after the thread sleeps until then: an interval never spins.
    pub async fn tick(&mut self) -> Instant {
        let due = self.next;
        let now = Instant::now();
        if due > now && sleep_until(due).await.is_err() {
            // Only when no loop can arm a timer; tick at the right time anyway.
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let now = Instant::now();
        let next = due + self.period;
        // Taken less than a period late, no tick was missed: the schedule stays.
        self.next = if next > now {
            next
        } else {
            match self.missed {
                MissedTickBehavior::Burst => next,
                MissedTickBehavior::Delay => now + self.period,
                MissedTickBehavior::Skip => {
                    let behind = (now - next).as_nanos() / self.period.as_nanos();
                    next + self.period.saturating_mul(u32::try_from(behind + 1).unwrap_or(u32::MAX))
                }
            }
        };
        due
    }

    /// Makes the next tick due one period from now.
    pub fn reset(&mut self) {
        self.next = Instant::now() + self.period;
    }

    /// What to do about missed ticks (default [`MissedTickBehavior::Burst`]).
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed = behavior;
    }

    /// The current missed-tick behaviour.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// The future did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(_: Elapsed) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, Elapsed)
    }
}

/// Runs `future` for at most `duration`. On expiry the future is dropped, which cancels its
/// operations (their buffers are parked until the kernel returns them).
pub fn timeout<F: Future>(duration: Duration, future: F) -> WithTimeout<F> {
    WithTimeout { future: Box::pin(future), timer: sleep(duration) }
}

/// Runs `future` until `deadline` at most (see [`timeout`]).
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> WithTimeout<F> {
    WithTimeout { future: Box::pin(future), timer: sleep_until(deadline) }
}

/// The future returned by [`timeout`].
#[must_use = "futures do nothing unless awaited"]
pub struct WithTimeout<F> {
    future: Pin<Box<F>>,
    timer: Sleep,
}

impl<F: Future> Future for WithTimeout<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match Pin::new(&mut self.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}
