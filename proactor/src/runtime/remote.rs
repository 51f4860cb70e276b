//! Posting work to a proactor from any thread: the remote queue and its `Send` handle.
//!
//! A [`Handle`] is `!Send` (it shares the loop's state through `Rc`); another thread reaches a
//! proactor through a [`RemoteHandle`] instead. Posting pushes a boxed closure onto a
//! mutex-protected queue and, when the queue goes from empty to non-empty, wakes the loop
//! through the driver's notifier (an eventfd the ring or epoll watches). The loop drains the
//! queue once per turn, after the driver's completions, and runs each closure on its own thread —
//! like a completion handler, so a closure may start operations or spawn local tasks through
//! [`Handle::current`].
//!
//! While any `RemoteHandle` is alive, [`Handle::run`] does not return on idleness (more work may
//! still be posted); stop it with [`Handle::stop`] or [`RemoteHandle::stop`].

use super::core::Core;
use super::Handle;
use crate::driver::Notifier;
use std::cell::OnceCell;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A closure posted from another thread.
type Job = Box<dyn FnOnce() + Send>;

/// The queue shared by a proactor and its remote handles.
pub(crate) struct RemoteQueue {
    jobs: Mutex<VecDeque<Job>>,
    /// Set when the proactor is dropped: later posts fail instead of queueing forever.
    closed: AtomicBool,
    /// Closures run so far (for tests and load reporting).
    ran: AtomicU64,
    notifier: Arc<dyn Notifier>,
}

impl RemoteQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The proactor's side: created on first use of [`Handle::remote`], closed when the proactor's
/// engine is dropped.
#[derive(Default)]
pub(crate) struct RemoteSlot {
    queue: OnceCell<Arc<RemoteQueue>>,
    /// The batch being run, kept between turns to reuse its allocation.
    batch: std::cell::RefCell<VecDeque<Job>>,
}

impl Drop for RemoteSlot {
    fn drop(&mut self) {
        if let Some(q) = self.queue.get() {
            q.closed.store(true, Ordering::SeqCst);
            // Closures never run are dropped here; they are `Send`, so any thread may drop them.
            let pending = std::mem::take(&mut *q.lock());
            drop(pending);
        }
    }
}

impl Core {
    /// The loop's hook: runs every closure posted before this call, once each, in order.
    pub(crate) fn drain_remote(&self) {
        let Some(q) = self.remote.queue.get() else { return };
        let mut batch = std::mem::take(&mut *self.remote.batch.borrow_mut());
        {
            let mut jobs = q.lock();
            if jobs.is_empty() {
                return;
            }
            std::mem::swap(&mut *jobs, &mut batch);
        }
        let shutting_down = self.shutting_down.get();
        let n = batch.len() as u64;
        while let Some(job) = batch.pop_front() {
            if shutting_down {
                self.guard_user_code("a posted closure dropped at shutdown", move || drop(job));
            } else {
                self.guard_user_code("a posted closure", job);
            }
        }
        q.ran.fetch_add(n, Ordering::Relaxed);
        *self.remote.batch.borrow_mut() = batch;
    }

    /// True while posted work waits, or some [`RemoteHandle`] to this proactor exists (it may
    /// still post work).
    pub(crate) fn has_remote_posters(&self) -> bool {
        self.remote.queue.get().is_some_and(|q| Arc::strong_count(q) > 1 || !q.lock().is_empty())
    }
}

impl Handle {
    /// A `Send + Sync + Clone` handle through which any thread can post work to this proactor.
    ///
    /// While one exists, [`Handle::run`] keeps running when idle; end it with [`Handle::stop`]
    /// or [`RemoteHandle::stop`].
    ///
    /// ```
    /// let p = proactor::Proactor::new()?;
    /// let remote = p.remote();
    /// let t = std::thread::spawn(move || {
    ///     remote.post(|| println!("runs on the proactor's thread")).unwrap();
    ///     remote.stop().unwrap();
    /// });
    /// p.run()?;
    /// t.join().unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn remote(&self) -> RemoteHandle {
        let core = &self.core;
        let queue = core.remote.queue.get_or_init(|| {
            Arc::new(RemoteQueue {
                jobs: Mutex::new(VecDeque::new()),
                closed: AtomicBool::new(false),
                ran: AtomicU64::new(0),
                notifier: core.notifier.clone(),
            })
        });
        RemoteHandle { queue: queue.clone() }
    }
}

/// The proactor behind a [`RemoteHandle`] is gone; the work was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the target proactor has shut down")
    }
}

impl std::error::Error for Closed {}

impl From<Closed> for std::io::Error {
    fn from(c: Closed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, c)
    }
}

/// Posts closures and tasks to one proactor from any thread. Cheap to clone.
#[derive(Clone)]
pub struct RemoteHandle {
    queue: Arc<RemoteQueue>,
}

impl std::fmt::Debug for RemoteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteHandle")
            .field("closed", &self.is_closed())
            .field("ran", &self.ran())
            .finish()
    }
}

impl RemoteHandle {
    /// Runs `f` on the proactor's thread, after the closures posted before it (by any thread).
    /// Wakes the loop if it is waiting. `f` runs like a completion handler: it may start
    /// operations and spawn tasks through [`Handle::current`]; a panic in it is caught and
    /// reported like a handler's.
    pub fn post<F: FnOnce() + Send + 'static>(&self, f: F) -> Result<(), Closed> {
        self.post_boxed(Box::new(f))
    }

    fn post_boxed(&self, job: Job) -> Result<(), Closed> {
        let was_empty = {
            let mut jobs = self.queue.lock();
            // Checked under the lock: the proactor's drop sets it, then empties the queue under
            // the same lock, so no job can slip in after the final drain.
            if self.queue.closed.load(Ordering::SeqCst) {
                return Err(Closed);
            }
            let was_empty = jobs.is_empty();
            jobs.push_back(job);
            was_empty
        };
        // Only the first job after a drain needs a wake-up: the loop drains after the driver has
        // consumed the notification, so later jobs are picked up by the same drain.
        if was_empty {
            self.queue.notifier.notify();
        }
        Ok(())
    }

    /// Spawns a task on the proactor's thread. `make` runs there and builds the future, which
    /// therefore need not be `Send` (it may hold the thread's buffers and operations).
    pub fn spawn<M, F>(&self, make: M) -> Result<(), Closed>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + 'static,
    {
        self.post(move || {
            let task = Handle::current().spawn(make());
            drop(task);
        })
    }

    /// Asks the proactor's `run` to return (after the closures posted before this).
    pub fn stop(&self) -> Result<(), Closed> {
        self.post(|| Handle::current().stop())
    }

    /// True once the proactor has shut down; posts then fail with [`Closed`].
    pub fn is_closed(&self) -> bool {
        self.queue.closed.load(Ordering::SeqCst)
    }

    /// How many posted closures the proactor has run so far.
    pub fn ran(&self) -> u64 {
        self.queue.ran.load(Ordering::Relaxed)
    }

    /// Closures posted and not yet run.
    pub fn pending(&self) -> usize {
        self.queue.lock().len()
    }

    /// True if both handles post to the same proactor.
    pub fn same_proactor(&self, other: &RemoteHandle) -> bool {
        Arc::ptr_eq(&self.queue, &other.queue)
    }
}
