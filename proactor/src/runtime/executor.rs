//! The futures front end's scheduler: local tasks, their wakers, and `JoinHandle`.
//!
//! Tasks live on the proactor's thread and need not be `Send`. Their wakers are `Send + Sync`
//! (the `Waker` contract): waking from another thread queues the task and, if the loop is
//! blocked in the driver, wakes the driver through its notifier.
//!
//! Wakes on the loop's own thread while it runs — a completion for an operation a task awaits,
//! by far the most common, or one task waking another — go to a plain local list instead: a
//! turn then takes no lock at all unless another thread woke something (`ReadyQueue::pending`
//! says so with one load).

use super::core::Core;
use super::slot::Waiter;
use crate::driver::Notifier;
use crate::sync::atomic::{fence, AtomicBool, Ordering};
use crate::sync::Mutex;
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, RawWakerVTable, Wake, Waker};

/// Key of the future passed to `block_on`, which is not stored in the task slab. Every key,
/// this one and `NO_TASK` included, fits 32 bits: an operation's slot records its task in four
/// bytes (`slot::Wait`).
pub(crate) const MAIN: usize = u32::MAX as usize;

/// Tasks' keys stay below this (`spawn` checks); the values from here up are `slot::Wait`'s
/// foreign waker, `NO_TASK` and `MAIN`.
pub(crate) const MAX_TASKS: usize = MAIN - 2;

/// Keys of tasks woken through their wakers, shared with those wakers (any thread).
pub(crate) struct ReadyQueue {
    queue: Mutex<Vec<usize>>,
    /// `queue` may hold keys: set (under the lock) by every push, cleared (under the lock) when
    /// the loop empties it, read without the lock.
    pending: AtomicBool,
    /// The loop is (about to be) blocked in the driver: a wake must notify it.
    parked: AtomicBool,
    notifier: Arc<dyn Notifier>,
}

/// The waker of one task.
pub(crate) struct TaskWaker {
    key: usize,
    scheduled: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        // On the loop's own thread, while it runs (a task waking another, a join): the local
        // list, as for the loop's own wakes.
        if let Some(handle) = super::Handle::try_current() {
            let exec = &handle.core.executor;
            if Arc::ptr_eq(&exec.ready, &self.ready) {
                exec.local.borrow_mut().push(self.key);
                return;
            }
        }
        {
            let mut queue = self.ready.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push(self.key);
            self.ready.pending.store(true, Ordering::Release);
        }
        // Paired with the fence in `park` (store, fence, load on both sides): either the loop
        // sees `pending` before it blocks, or this waker sees `parked` and notifies it. Fences
        // rather than SeqCst accesses, which promise the same but which loom checks only as
        // AcqRel.
        fence(Ordering::SeqCst);
        if self.ready.parked.load(Ordering::Relaxed) {
            self.ready.notifier.notify();
        }
    }
}

#[cfg(all(test, proactor_loom))]
mod loom_model;

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;

struct Task {
    /// `None` while the task is being polled.
    future: Option<LocalFuture>,
    waker: Arc<TaskWaker>,
    /// `waker` as the `Waker` its polls are given, made once; taken out with `future` for a
    /// poll (no reference count is touched per poll).
    poll_waker: Option<Waker>,
    join: Rc<dyn JoinMark>,
}

/// The task list and the ready queue.
pub(crate) struct Executor {
    tasks: RefCell<Slab<Task>>,
    ready: Arc<ReadyQueue>,
    /// Keys of tasks the loop itself woke (see `wake_task`), on this thread only.
    local: RefCell<Vec<usize>>,
    /// Keys taken from the ready lists for this round.
    round: RefCell<Vec<usize>>,
    main: Arc<TaskWaker>,
    /// The task being polled now, by key, and the identity of the waker it was given (its
    /// data and vtable pointers, what `Waker::will_wake` compares): operations polled with
    /// that very waker record the task by key (see `waiter`).
    polling: Cell<Polling>,
    /// The task woken last in this turn: waking it again would only repeat the first wake.
    last_woken: Cell<usize>,
}

/// No task (for `polling` and `last_woken`).
pub(crate) const NO_TASK: usize = MAIN - 1;

type Polling = (usize, *const (), *const RawWakerVTable);

impl Executor {
    pub(crate) fn new(notifier: Arc<dyn Notifier>) -> Self {
        let ready = Arc::new(ReadyQueue {
            queue: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            notifier,
        });
        let main = Arc::new(TaskWaker {
            key: MAIN,
            scheduled: AtomicBool::new(true),
            ready: ready.clone(),
        });
        Executor {
            tasks: RefCell::new(Slab::new()),
            ready,
            local: RefCell::new(Vec::new()),
            round: RefCell::new(Vec::new()),
            main,
            polling: Cell::new((NO_TASK, std::ptr::null(), std::ptr::null())),
            last_woken: Cell::new(NO_TASK),
        }
    }

    /// Polls a future as task `key` with `waker`, the waker this executor made for that task,
    /// so that the operations it submits can record the task by key (see [`Waiter::Task`]).
    #[inline]
    pub(crate) fn poll_as<T>(
        &self,
        key: usize,
        waker: &Waker,
        poll: impl FnOnce(&mut Context<'_>) -> T,
    ) -> T {
        struct Restore<'a>(&'a Cell<Polling>, Polling);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.set(self.1);
            }
        }
        let _restore =
            Restore(&self.polling, self.polling.replace((key, waker.data(), waker.vtable())));
        poll(&mut Context::from_waker(waker))
    }

    /// The key of the task being polled, if `waker` is the waker this executor gave it (the
    /// same data and vtable pointers: what `Waker::will_wake` compares).
    #[inline]
    fn polled_by(&self, waker: &Waker) -> Option<usize> {
        let (key, data, vtable) = self.polling.get();
        (std::ptr::eq(waker.data(), data) && std::ptr::eq(waker.vtable(), vtable)).then_some(key)
    }

    /// Whom an operation polled with `waker` should wake: the task being polled, by key, when
    /// `waker` is the one this executor gave it; otherwise a clone of `waker`.
    #[inline]
    pub(crate) fn waiter(&self, waker: &Waker) -> Waiter {
        match self.polled_by(waker) {
            Some(key) => Waiter::Task(key),
            None => Waiter::Waker(waker.clone()),
        }
    }

    /// True if `waiter` already stands for `waker` (a future polled again by the same task).
    #[inline]
    pub(crate) fn is_waiter(&self, waiter: &Waiter, waker: &Waker) -> bool {
        match waiter {
            Waiter::Task(key) => self.polled_by(waker) == Some(*key),
            Waiter::Waker(w) => w.will_wake(waker),
        }
    }

    /// Wakes task `key` (or the `block_on` future), once per turn. A key whose task has
    /// finished is ignored, as a finished task's waker ignores its wakes.
    #[inline(always)]
    pub(crate) fn wake_task(&self, key: usize) {
        if self.last_woken.replace(key) != key {
            self.wake_task_now(key);
        }
    }

    /// The loop's own wake, on its thread: the task's flag is set as any waker sets it, but
    /// its key goes to the local list (the `block_on` future needs only its flag, which the
    /// loop checks before it blocks) — no lock, no notification.
    #[inline(never)]
    fn wake_task_now(&self, key: usize) {
        if key == MAIN {
            self.main.scheduled.store(true, Ordering::Release);
        } else if let Some(task) = self.tasks.borrow().get(key) {
            if !task.waker.scheduled.swap(true, Ordering::AcqRel) {
                self.local.borrow_mut().push(key);
            }
        }
    }

    /// The turn's completions are delivered: the next wake of any task is a new one.
    pub(crate) fn end_wakes(&self) {
        self.last_woken.set(NO_TASK);
    }

    /// Adds a task; it is polled in the next round. Returns its waker (which `abort` uses).
    pub(crate) fn spawn<F: Future<Output = ()> + 'static>(
        &self,
        future: F,
        join: Rc<dyn JoinMark>,
    ) -> Waker {
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        assert!(entry.key() < MAX_TASKS, "more than {MAX_TASKS} tasks on one proactor");
        let waker = Arc::new(TaskWaker {
            key: entry.key(),
            scheduled: AtomicBool::new(false),
            ready: self.ready.clone(),
        });
        waker.wake_by_ref();
        let handle = Waker::from(waker.clone());
        let poll_waker = Some(handle.clone());
        entry.insert(Task { future: Some(Box::pin(future)), waker, poll_waker, join });
        handle
    }

    pub(crate) fn has_tasks(&self) -> bool {
        !self.tasks.borrow().is_empty()
    }

    /// Marks the loop as about to block; returns false (do not block) if work is ready.
    pub(crate) fn park(&self) -> bool {
        self.ready.parked.store(true, Ordering::Relaxed);
        // Paired with the wakers' fence (see `TaskWaker::wake_by_ref`).
        fence(Ordering::SeqCst);
        let empty = self.local.borrow().is_empty() && !self.ready.pending.load(Ordering::Relaxed);
        if !empty {
            self.ready.parked.store(false, Ordering::Release);
        }
        empty
    }

    /// The loop is running again. A waker that still sees `parked` only sends a notification
    /// the loop does not need, so no stronger ordering is required.
    pub(crate) fn unpark(&self) {
        self.ready.parked.store(false, Ordering::Release);
    }

    /// True if some task (or the main future) was woken and waits to be polled.
    pub(crate) fn has_ready(&self) -> bool {
        !self.local.borrow().is_empty() || self.ready.pending.load(Ordering::Acquire)
    }

    /// Polls every task woken so far, once. The `block_on` future's key may be among them; it
    /// is skipped here: `block_on` polls that future when its flag says so.
    pub(crate) fn run_round(&self, core: &Core) {
        let mut round = std::mem::take(&mut *self.round.borrow_mut());
        self.take_ready(&mut round);
        for &key in round.iter().filter(|&&key| key != MAIN) {
            self.poll_task(key, core);
        }
        round.clear();
        *self.round.borrow_mut() = round;
    }

    /// Moves the keys of every task woken so far, on any thread, to `round`.
    fn take_ready(&self, round: &mut Vec<usize>) {
        round.append(&mut self.local.borrow_mut());
        if self.ready.pending.load(Ordering::Acquire) {
            let mut queue = self.ready.queue.lock().unwrap_or_else(|p| p.into_inner());
            round.append(&mut queue);
            self.ready.pending.store(false, Ordering::Relaxed);
        }
    }

    /// Takes task `key`'s future out to poll it, with its waker, and says whether the task was
    /// aborted; a wake from now on schedules the task again. `None` if the task is gone or
    /// being polled.
    fn start_poll(&self, key: usize) -> Option<(LocalFuture, Waker, bool)> {
        let mut tasks = self.tasks.borrow_mut();
        let task = tasks.get_mut(key)?;
        let future = task.future.take()?;
        // A swap, not a store: its acquire half pairs with the swap of a wake that found the
        // task already scheduled, so this poll sees what was done before that wake.
        task.waker.scheduled.swap(false, Ordering::AcqRel);
        let waker = task.poll_waker.take().unwrap_or_else(|| Waker::from(task.waker.clone()));
        Some((future, waker, task.join.is_aborted()))
    }

    fn poll_task(&self, key: usize, core: &Core) {
        let Some((mut future, waker, aborted)) = self.start_poll(key) else { return };
        if aborted {
            // Aborted (`JoinHandle::abort` woke it to get here): dropped instead of polled. Its
            // pending operations are detached as any dropped `Op` is (cancelled, their buffers
            // parked until the kernel is done), and its join guard records the cancellation.
            let task = self.tasks.borrow_mut().try_remove(key);
            core.guard_user_code("an aborted task's state", move || {
                drop(future);
                drop(task);
            });
            return;
        }
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.poll_as(key, &waker, |cx| future.as_mut().poll(cx))
        }));
        match polled {
            Ok(Poll::Pending) => {
                if let Some(task) = self.tasks.borrow_mut().get_mut(key) {
                    task.future = Some(future);
                    task.poll_waker = Some(waker);
                }
            }
            Ok(Poll::Ready(())) => {
                self.tasks.borrow_mut().try_remove(key);
                drop(future);
            }
            Err(payload) => {
                let task = self.tasks.borrow_mut().try_remove(key);
                core.panics.report("task", "spawned task", payload);
                if let Some(task) = task {
                    task.join.mark_panicked();
                }
                core.guard_user_code("a panicked task's state", move || drop(future));
            }
        }
    }

    /// The waker of the `block_on` future.
    pub(crate) fn main_waker(&self) -> Waker {
        Waker::from(self.main.clone())
    }

    /// Readies the main future for its first poll; true if it was woken since the last poll.
    pub(crate) fn take_main_wake(&self) -> bool {
        self.main.scheduled.swap(false, Ordering::AcqRel)
    }

    /// True if the main future was woken and waits to be polled.
    pub(crate) fn main_scheduled(&self) -> bool {
        self.main.scheduled.load(Ordering::Acquire)
    }

    pub(crate) fn set_main_scheduled(&self) {
        self.main.scheduled.store(true, Ordering::Release);
    }

    /// Drops every task (at shutdown); their operations are detached.
    pub(crate) fn clear(&self, core: &Core) {
        loop {
            let drained: Vec<Task> = self.tasks.borrow_mut().drain().collect();
            if drained.is_empty() {
                break;
            }
            for task in drained {
                core.guard_user_code("a task dropped at shutdown", move || drop(task));
            }
        }
    }
}

/// Lets the executor tell a `JoinHandle` its task panicked, and learn that it was aborted.
pub(crate) trait JoinMark {
    fn mark_panicked(&self);
    fn is_aborted(&self) -> bool;
}

/// Why a task produced no value.
///
/// `non_exhaustive`: new reasons may come; match the ones you handle and keep a catch-all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The task panicked; the panic was reported and the proactor carried on.
    Panicked,
    /// The task was dropped before it finished: aborted ([`JoinHandle::abort`]), or the
    /// proactor shut down.
    Cancelled,
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Panicked => f.write_str("task panicked"),
            JoinError::Cancelled => f.write_str("task was cancelled before it finished"),
        }
    }
}

impl std::error::Error for JoinError {}

pub(crate) struct JoinState<T> {
    result: RefCell<Option<Result<T, JoinError>>>,
    waker: RefCell<Option<Waker>>,
    /// `JoinHandle::abort` was called: the executor drops the task instead of polling it.
    aborted: Cell<bool>,
}

impl<T> JoinState<T> {
    pub(crate) fn new() -> Rc<Self> {
        Rc::new(JoinState {
            result: RefCell::new(None),
            waker: RefCell::new(None),
            aborted: Cell::new(false),
        })
    }
    pub(crate) fn set(&self, value: Result<T, JoinError>) {
        let mut slot = self.result.borrow_mut();
        if slot.is_none() {
            *slot = Some(value);
            drop(slot);
            if let Some(w) = self.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

impl<T> JoinMark for JoinState<T> {
    fn mark_panicked(&self) {
        self.set(Err(JoinError::Panicked));
    }
    fn is_aborted(&self) -> bool {
        self.aborted.get()
    }
}

/// Marks the join state cancelled if the task's future is dropped before it produced a value.
pub(crate) struct CancelOnDrop<T>(pub(crate) Rc<JoinState<T>>);

impl<T> Drop for CancelOnDrop<T> {
    fn drop(&mut self) {
        // A task that panics drops its live state while unwinding, this guard included: that
        // is a panic, not a cancellation.
        let why = if std::thread::panicking() { JoinError::Panicked } else { JoinError::Cancelled };
        self.0.set(Err(why));
    }
}

/// Awaits the output of a spawned task. Dropping it (or [`JoinHandle::detach`]) detaches the
/// task, which keeps running; [`JoinHandle::abort`] stops it.
#[must_use = "dropping a JoinHandle detaches the task; await it to get the output"]
pub struct JoinHandle<T> {
    pub(crate) state: Rc<JoinState<T>>,
    /// The task's waker: `abort` wakes the task so the executor drops it.
    pub(crate) task: Waker,
}

impl<T> JoinHandle<T> {
    /// True once the task has finished (or panicked, or was cancelled).
    pub fn is_finished(&self) -> bool {
        self.state.result.borrow().is_some()
    }

    /// Stops the task: before it is polled again, the loop drops its future, which drops
    /// every operation it awaits — each is cancelled and its buffer parked until the kernel's
    /// completion arrives, then freed, exactly as when any `Op` is dropped (an fd a cancelled
    /// accept or open produced meanwhile is closed). Awaiting the handle then gives
    /// [`JoinError::Cancelled`].
    ///
    /// The task stops at the await point where it is suspended: it never runs again. Called on
    /// a task that has finished, it does nothing; called by the task on itself, the task stops at
    /// its next await point. Like tokio's, the abort takes effect when the loop next runs (the
    /// caller need not yield for it to be requested).
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = proactor::Proactor::new()?;
    /// p.block_on(async {
    ///     let (a, _b) = proactor::net::UnixStream::pair()?;
    ///     let task = proactor::spawn(async move { a.read(Vec::with_capacity(64)).await });
    ///     proactor::time::sleep(Duration::from_millis(10)).await?;
    ///     task.abort();
    ///     assert_eq!(task.await.unwrap_err(), proactor::JoinError::Cancelled);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn abort(&self) {
        if !self.is_finished() {
            self.state.aborted.set(true);
            self.task.wake_by_ref();
        }
    }

    /// Lets the task run on without anyone waiting for its output (what dropping the handle
    /// does; this says so in the code).
    pub fn detach(self) {
        drop(self);
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.state.result.borrow_mut().take() {
            return Poll::Ready(r);
        }
        *self.state.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}
