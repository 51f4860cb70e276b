//! The proactor: the run loop that submits operations in batches, reaps their completions, and
//! dispatches each one — to a completion handler, or to the future awaiting it.
//!
//! Two front ends share one engine (`core.rs`). Completion handlers (`Handle::start`) are the
//! seed's Asio / NIO.2 style; futures (`block_on`, `spawn`, [`Op`]) are Rust's. A handler can
//! start the next operation; a task can await one; both end up as slots in the same slab.

mod builder;
mod core;
mod executor;
mod latency;
mod memory;
pub(crate) mod multi;
mod op;
mod panic;
mod remote;
mod slot;
mod stats;
mod table;
mod timers;

pub use builder::Builder;
pub use executor::{JoinError, JoinHandle};
pub use latency::OpLatency;
pub use multi::{submit_multi, Multi, MultiOp};
pub use op::{submit, CancelToken, Op, OpId};
pub use panic::{PanicHook, PanicReport};
pub use remote::{Closed, RemoteHandle};
pub use stats::{InFlight, RingStats, Stats};
pub use timers::TimerStats;

pub(crate) use self::core::Core;
use self::executor::{CancelOnDrop, JoinState};
use self::slot::{Receiver, WithHandler};
pub(crate) use self::timers::TimerKey;
use crate::driver::{DriverKind, Notifier};
use crate::op::OpCode;
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::ops::Deref;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

thread_local! {
    /// The core of the proactor running on this thread, as a plain pointer: a thread-local
    /// without a destructor is read without a registration check, and every operation a future
    /// submits reads it. The `EnterGuard` that set it owns a strong count of that core.
    static CURRENT: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
    /// True while this thread is inside `block_on` or `run` of some proactor: a nested call
    /// would stall the outer loop (its tasks and completions wait until the inner one returns),
    /// so it is refused.
    static DRIVING: Cell<bool> = const { Cell::new(false) };
}

/// Driver errors in a row after which `block_on` gives up and returns the last one: one is
/// retried (after a pause), as a transient failure the driver did not absorb; several in a row
/// mean the driver cannot go on, and looping would hide it.
const PERSISTENT_DRIVER_ERRORS: u32 = 3;

/// Marks this thread as driving a loop for a scope (see `DRIVING`).
struct DrivingGuard;

impl DrivingGuard {
    fn enter(what: &str) -> io::Result<DrivingGuard> {
        if DRIVING.replace(true) {
            return Err(io::Error::other(format!(
                "{what} called while this thread already drives a proactor (inside block_on or \
                 run): the outer loop would stall; spawn the future or start the operation \
                 instead"
            )));
        }
        Ok(DrivingGuard)
    }
}

impl Drop for DrivingGuard {
    fn drop(&mut self) {
        DRIVING.set(false);
    }
}

/// How long dropping a proactor waits for cancelled operations to hand their buffers back.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A proactor: one run loop on this thread, with its driver.
///
/// Dropping it cancels every operation still in flight and waits (boundedly) until the kernel
/// has given each buffer back before freeing it.
///
/// ```
/// let proactor = proactor::Proactor::new()?;
/// let out = proactor.block_on(async {
///     proactor::submit(proactor::op::Nop).await
/// });
/// assert!(out.is_ok());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Proactor {
    handle: Handle,
}

/// A cheap, clonable reference to a proactor, for use on its own thread: completion handlers
/// capture one to start the next operation.
#[derive(Clone)]
pub struct Handle {
    pub(crate) core: Rc<Core>,
}

impl Proactor {
    /// A proactor with the default settings (driver chosen by `PROACTOR_DRIVER` or `auto`).
    pub fn new() -> io::Result<Proactor> {
        Builder::new().build()
    }

    /// Settings for a new proactor.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A handle to this proactor.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Deref for Proactor {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Proactor {
    fn drop(&mut self) {
        let _enter = self.handle.enter();
        if self.handle.core.log_stats {
            tracing::info!(target: "proactor::stats", "{}", self.handle.stats());
        }
        self.handle.core.shutdown(SHUTDOWN_GRACE);
    }
}

/// Sets the thread's current proactor for a scope (guards are scoped, so they end in reverse
/// order of creation and each restores the one before).
struct EnterGuard {
    /// A strong count of the current core, from `Rc::into_raw`, given back on drop.
    core: *const Core,
    prev: *const Core,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        CURRENT.set(self.prev);
        // SAFETY: `core` came from `Rc::into_raw` in `enter` and is given back once, here.
        drop(unsafe { Rc::from_raw(self.core) });
    }
}

impl Handle {
    /// The proactor running on this thread, if any.
    #[inline]
    pub fn try_current() -> Option<Handle> {
        let core = CURRENT.get();
        if core.is_null() {
            return None;
        }
        // SAFETY: a non-null `CURRENT` was set by `enter` from `Rc::into_raw`, and the
        // `EnterGuard` that set it still owns that strong count (it resets `CURRENT` before
        // giving the count back), so the core is alive; the new count is ours to own.
        unsafe {
            Rc::increment_strong_count(core);
            Some(Handle { core: Rc::from_raw(core) })
        }
    }

    /// The proactor running on this thread.
    ///
    /// # Panics
    /// When called outside `block_on` / `run` of a proactor.
    pub fn current() -> Handle {
        Self::try_current().expect("no proactor is running on this thread (use block_on or run)")
    }

    fn enter(&self) -> EnterGuard {
        let core = Rc::into_raw(self.core.clone());
        EnterGuard { core, prev: CURRENT.replace(core) }
    }

    /// Runs `future` to completion on this thread, driving I/O, tasks and handlers meanwhile.
    ///
    /// # Panics
    /// With the error [`Handle::try_block_on`] returns: when called from inside `block_on` or
    /// `run` on this thread (a nested loop would stall the outer one), or when the driver
    /// fails persistently. Use `try_block_on` to get these as an `io::Error` instead.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self.try_block_on(future) {
            Ok(out) => out,
            Err(e) => panic!("proactor block_on: {e}"),
        }
    }

    /// Runs `future` to completion on this thread, as [`Handle::block_on`], or says why it
    /// cannot: a nested call (from inside `block_on` or `run` on this thread) is refused at
    /// once, and a driver error that persists over several turns in a row ends the loop with
    /// that error (the future is dropped; its operations are cancelled as usual).
    ///
    /// ```
    /// let p = proactor::Proactor::new()?;
    /// let nested = p.block_on(async {
    ///     let q = proactor::Proactor::new().unwrap();
    ///     q.try_block_on(async { 1 }).unwrap_err()
    /// });
    /// assert!(nested.to_string().contains("already drives a proactor"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_block_on<F: Future>(&self, future: F) -> io::Result<F::Output> {
        let _driving = DrivingGuard::enter("block_on")?;
        let _enter = self.enter();
        let core = &self.core;
        let exec = &core.executor;
        let mut future = pin!(future);
        let waker = exec.main_waker();
        exec.set_main_scheduled();
        let mut failures = 0;
        loop {
            if exec.take_main_wake() {
                if let Poll::Ready(out) =
                    exec.poll_as(executor::MAIN, &waker, |cx| future.as_mut().poll(cx))
                {
                    return Ok(out);
                }
            }
            exec.run_round(core);
            // The main future may have woken itself while it was polled (a yield): its wake is
            // pending in its flag, so the loop must not block.
            let block = !exec.has_ready() && !exec.main_scheduled();
            match core.turn(block, None) {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    if failures >= PERSISTENT_DRIVER_ERRORS {
                        tracing::error!("proactor driver failed {failures} times in a row: {e}");
                        return Err(e);
                    }
                    tracing::warn!("proactor driver failed (retrying): {e}");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// Drives the loop until no operation, handler or task is left (and no [`RemoteHandle`] is
    /// alive), or [`Handle::stop`] is called.
    ///
    /// Refused with an error when called from inside `block_on` or `run` on this thread (the
    /// outer loop would stall); a driver error ends it with that error.
    pub fn run(&self) -> io::Result<()> {
        let _driving = DrivingGuard::enter("run")?;
        let _enter = self.enter();
        let core = &self.core;
        core.stopped.set(false);
        loop {
            core.executor.run_round(core);
            if core.stopped.get() {
                return Ok(());
            }
            let ready = core.executor.has_ready();
            if !ready && core.idle() && !core.executor.has_tasks() && !core.has_remote_posters() {
                return Ok(());
            }
            core.turn(!ready, None)?;
        }
    }

    /// Makes `run` return after the current turn. Callable from a handler or a task.
    pub fn stop(&self) {
        self.core.stopped.set(true);
        self.core.notifier.notify();
    }

    /// A thread-safe handle that wakes this proactor's loop (for example from a signal thread).
    pub fn notifier(&self) -> Arc<dyn Notifier> {
        self.core.notifier.clone()
    }

    /// Starts `op`; `handler` runs on this thread with the output when it completes.
    ///
    /// ```
    /// use proactor::{op, Proactor};
    /// let p = Proactor::new()?;
    /// let (tx, rx) = std::os::unix::net::UnixStream::pair()?;
    /// let h = p.handle();
    /// p.start(op::Send::new(tx, b"hi".as_slice()), move |(res, _buf)| {
    ///     assert_eq!(res.unwrap(), 2);
    ///     h.start(op::Recv::new(rx, Vec::with_capacity(8)), |(res, buf)| {
    ///         assert_eq!(res.unwrap(), 2);
    ///         assert_eq!(buf, b"hi");
    ///     });
    /// });
    /// p.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start<O, H>(&self, op: O, handler: H) -> OpId
    where
        O: OpCode,
        H: FnOnce(O::Output) + 'static,
    {
        self.start_with(op, None, handler)
    }

    /// Like [`Handle::start`], giving up on the operation if it has not finished within
    /// `deadline`: the handler then gets an error of kind `ErrorKind::TimedOut` (raw error
    /// `ETIMEDOUT`) with its buffer. An explicit [`Handle::cancel`] is still `ECANCELED`, so the
    /// two are told apart; an operation that finished in time keeps its real result.
    ///
    /// ```
    /// use std::{io::ErrorKind, time::Duration};
    /// let p = proactor::Proactor::new()?;
    /// let (_a, b) = std::os::unix::net::UnixStream::pair()?;
    /// let recv = proactor::op::Recv::new(b, Vec::with_capacity(8));
    /// p.start_with_deadline(recv, Duration::from_millis(5), |(res, buf)| {
    ///     assert_eq!(res.unwrap_err().kind(), ErrorKind::TimedOut);
    ///     assert_eq!(buf.capacity(), 8);
    /// });
    /// p.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start_with_deadline<O, H>(&self, op: O, deadline: Duration, handler: H) -> OpId
    where
        O: OpCode,
        H: FnOnce(O::Output) + 'static,
    {
        self.start_with(op, Some(deadline), handler)
    }

    /// Inlined into `start` (and so into the caller's loop): a NOP handler's round trip then
    /// takes 226 user-side instructions instead of 254 (`proactor/benches/nop_ir.sh`).
    #[inline]
    fn start_with<O, H>(&self, op: O, deadline: Option<Duration>, handler: H) -> OpId
    where
        O: OpCode,
        H: FnOnce(O::Output) + 'static,
    {
        if O::MULTISHOT {
            // A multishot operation runs with `start_multi`; here it completes with EINVAL.
            return OpId(self.core.refuse(
                WithHandler { op, handler },
                Receiver::Handler,
                libc::EINVAL,
            ));
        }
        let receiver = if deadline.is_some() { Receiver::TimedHandler } else { Receiver::Handler };
        OpId(self.core.submit(WithHandler { op, handler }, deadline, receiver))
    }

    /// Cancels an operation started with a handler. Its handler then runs with `ECANCELED` (or
    /// the real result, if it finished first) and gets its buffer back.
    pub fn cancel(&self, id: OpId) {
        self.core.cancel(id.0);
    }

    /// Spawns a task on this proactor's thread.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let state = JoinState::new();
        let guard = CancelOnDrop(state.clone());
        let task = self.core.executor.spawn(
            async move {
                let out = future.await;
                guard.0.set(Ok(out));
                drop(guard);
            },
            state.clone(),
        );
        JoinHandle { state, task }
    }

    /// What is in flight now: counts per kind and the oldest operation's age.
    pub fn in_flight(&self) -> InFlight {
        self.core.in_flight()
    }

    /// How many batches of completions the run loop has delivered so far.
    ///
    /// Every operation result a handler or task sees was reaped in the batch this count
    /// names (or an earlier one). Work that must happen after a receive but need not happen per
    /// receive — checking a change-notification queue before answering what was received, say —
    /// can be done once per value of this count: whatever happened before the bytes of any
    /// receive in this batch arrived has happened before the batch was reaped.
    ///
    /// ```
    /// let p = proactor::Proactor::new().unwrap();
    /// let h = p.handle();
    /// let before = h.completion_batches();
    /// p.block_on(proactor::submit(proactor::op::Nop)).unwrap();
    /// assert!(h.completion_batches() > before);
    /// ```
    pub fn completion_batches(&self) -> u64 {
        self.core.batches.get()
    }

    /// Frees the memory this loop keeps cached for operations it no longer has in flight,
    /// down to a small floor.
    ///
    /// The loop recycles the blocks that hold operations in flight, so a steady load allocates
    /// none; after a burst (thousands of connections, each with a receive in flight, all
    /// closing) it keeps a block per operation the burst had, and those blocks, scattered
    /// between the burst's other allocations, keep the allocator from returning the pages
    /// around them. Call this when such a burst has ended, before asking the allocator to give
    /// free pages back (`malloc_trim` on glibc). Operations in flight are not touched.
    ///
    /// ```
    /// let proactor = proactor::Proactor::new()?;
    /// proactor.block_on(async {
    ///     // ... thousands of connections served and closed ...
    ///     proactor::Handle::current().release_idle_memory();
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn release_idle_memory(&self) {
        self.core.memory.release_idle();
    }

    /// What this proactor has done and holds: in flight, batches, latency per kind (when
    /// enabled), the io_uring queues, faults injected. Its `Display` is one `stats:` line.
    pub fn stats(&self) -> Stats {
        let (ring, faults) = {
            let mut driver = self.core.driver();
            (driver.ring_stats(), driver.fault_report())
        };
        Stats {
            driver: self.core.kind,
            in_flight: self.in_flight(),
            completion_batches: self.completion_batches(),
            latency: self.core.latency.as_ref().map(|l| l.snapshot()).unwrap_or_default(),
            ring,
            faults,
            timers: self.core.timer_stats(),
        }
    }

    /// The fault plan this proactor injects and what it injected so far, or `None` when it
    /// injects none (see [`crate::faults`]).
    pub fn faults(&self) -> Option<crate::faults::FaultReport> {
        self.core.driver_ref().fault_report()
    }

    /// The driver in use.
    pub fn driver_kind(&self) -> DriverKind {
        self.core.kind
    }

    /// Why `auto` fell back from io_uring, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.core.fallback_reason.as_deref()
    }

    /// The io_uring ring's effective setup (after any fall-back), or `None` on another driver.
    pub fn ring_config(&self) -> Option<crate::RingConfig> {
        self.core.driver_ref().uring_config().cloned()
    }
}

/// Spawns a task on the current proactor.
///
/// # Panics
/// Outside a running proactor.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    Handle::current().spawn(future)
}
