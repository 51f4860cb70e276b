//! CPU-heavy or blocking work off the I/O threads: a bounded pool of worker threads whose results
//! come back through the proactor's completion path.
//!
//! A completion handler or task must never block its loop — every other connection on the thread
//! would wait. [`offload`] (alias [`spawn_blocking`]) runs a closure on a pool thread instead and
//! returns a future. When the closure is done, its result is *posted back* to the proactor that
//! asked (through its [`RemoteHandle`]): the loop picks it up in the same turn as its I/O
//! completions and wakes the waiting task on its own thread, so the result is dispatched like an
//! operation's.
//!
//! The pool is bounded twice: a fixed number of threads (default: one per core) and a fixed queue
//! (default: 16 jobs per thread). When the queue is full, the offloading future waits — without
//! blocking its thread — until a pool thread takes a job; nothing queues without limit.
//!
//! ```
//! let p = proactor::Proactor::new()?;
//! let sum = p.block_on(proactor::offload::offload(|| (1..=1_000_000u64).sum::<u64>()));
//! assert_eq!(sum.unwrap(), 500_000_500_000);
//! # Ok::<(), std::io::Error>(())
//! ```

use crate::runtime::{Handle, JoinError, RemoteHandle};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

/// Queue slots per pool thread, by default.
const QUEUE_PER_THREAD: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    /// Offloading futures waiting for a free queue slot.
    waiters: VecDeque<Waker>,
    shutdown: bool,
}

struct PoolInner {
    queue: Mutex<Queue>,
    work: Condvar,
    capacity: usize,
    threads: usize,
    busy: AtomicUsize,
}

impl PoolInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One pool thread: take a job, free its slot (waking a waiter), run it.
    fn work(&self) {
        loop {
            let (job, waiter) = {
                let mut q = self.lock();
                loop {
                    if let Some(job) = q.jobs.pop_front() {
                        break (job, q.waiters.pop_front());
                    }
                    if q.shutdown {
                        return;
                    }
                    q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            if let Some(w) = waiter {
                w.wake();
            }
            self.busy.fetch_add(1, Ordering::Relaxed);
            // The job catches its closure's panics itself (it reports them to its future).
            job();
            self.busy.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A bounded pool of threads for CPU-heavy or blocking closures. Cheap to clone.
///
/// Dropping the last clone lets the threads finish the jobs already queued, then exit.
#[derive(Clone)]
pub struct BlockingPool {
    inner: Arc<PoolInner>,
    /// Held by the handles only (not by the threads): the last handle's drop stops the threads.
    _guard: Arc<ShutdownOnDrop>,
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool")
            .field("threads", &self.inner.threads)
            .field("capacity", &self.inner.capacity)
            .field("queued", &self.queued())
            .field("busy", &self.busy())
            .finish()
    }
}

/// Stops the threads when the last pool handle goes.
struct ShutdownOnDrop(Arc<PoolInner>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.lock().shutdown = true;
        self.0.work.notify_all();
    }
}

impl BlockingPool {
    /// A pool of `threads` threads (at least 1) and a queue of `capacity` jobs (at least 1).
    pub fn new(threads: usize, capacity: usize) -> io::Result<BlockingPool> {
        let threads = threads.max(1);
        let inner = Arc::new(PoolInner {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                waiters: VecDeque::new(),
                shutdown: false,
            }),
            work: Condvar::new(),
            capacity: capacity.max(1),
            threads,
            busy: AtomicUsize::new(0),
        });
        // The threads hold the inner state; a separate guard, owned by the pool handles only,
        // tells them to exit once no handle is left.
        let guard = Arc::new(ShutdownOnDrop(inner.clone()));
        for i in 0..threads {
            let inner = inner.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("proactor-offload-{i}"))
                .spawn(move || inner.work());
            if let Err(e) = spawned {
                drop(guard);
                return Err(e);
            }
        }
        Ok(BlockingPool { inner, _guard: guard })
    }

    /// The process-wide pool [`offload`] uses: one thread per core, 16 queued jobs per thread.
    pub fn global() -> &'static BlockingPool {
        static GLOBAL: OnceLock<BlockingPool> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let n = crate::threads::available_cores();
            BlockingPool::new(n, n * QUEUE_PER_THREAD).expect("cannot start the offload pool")
        })
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Jobs the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Jobs queued and not yet started.
    pub fn queued(&self) -> usize {
        self.inner.lock().jobs.len()
    }

    /// Jobs running now.
    pub fn busy(&self) -> usize {
        self.inner.busy.load(Ordering::Relaxed)
    }

    /// Runs `f` on this pool; the returned future (awaited on a proactor's thread) yields its
    /// result there. Must be called on a proactor's thread.
    ///
    /// # Panics
    /// Outside a running proactor.
    pub fn offload<F, T>(&self, f: F) -> Offload<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.offload_with(Handle::try_current().map(|h| h.remote()), f)
    }

    /// Like [`BlockingPool::offload`], delivering the result to the proactor behind `target`
    /// (whose thread must await the future).
    pub fn offload_to<F, T>(&self, target: RemoteHandle, f: F) -> Offload<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.offload_with(Some(target), f)
    }

    /// The target may be unknown when the future is made outside a running proactor (for
    /// example as the argument of `block_on`); it is then taken from the proactor that polls it.
    fn offload_with<F, T>(&self, target: Option<RemoteHandle>, f: F) -> Offload<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = Arc::new(Shared {
            result: Mutex::new(None),
            waker: Mutex::new(None),
            cancelled: AtomicBool::new(false),
            target: Mutex::new(target),
        });
        let completer = Completer { shared: shared.clone(), done: false };
        let job: Job = Box::new(move || {
            let mut completer = completer;
            if completer.shared.cancelled.load(Ordering::Acquire) {
                return; // the future is gone; its Drop does the rest
            }
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            if out.is_err() {
                tracing::error!("an offloaded closure panicked");
            }
            completer.complete(out.map_err(|_| JoinError::Panicked));
        });
        Offload { pool: self.clone(), job: Some(job), shared }
    }

    /// Completion-handler form: runs `f` on the pool, then `handler(result)` on this proactor's
    /// thread.
    ///
    /// # Panics
    /// Outside a running proactor.
    pub fn start<F, T, H>(&self, f: F, handler: H)
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
        H: FnOnce(Result<T, JoinError>) + 'static,
    {
        let fut = self.offload(f);
        drop(Handle::current().spawn(async move { handler(fut.await) }));
    }

    /// Queues `job` if there is room; otherwise registers `waker` and gives the job back.
    fn try_push(&self, job: Job, waker: &Waker) -> Result<(), Job> {
        let mut q = self.inner.lock();
        if q.jobs.len() < self.inner.capacity {
            q.jobs.push_back(job);
            drop(q);
            self.inner.work.notify_one();
            Ok(())
        } else {
            if !q.waiters.iter().any(|w| w.will_wake(waker)) {
                q.waiters.push_back(waker.clone());
            }
            Err(job)
        }
    }
}

/// Runs `f` on the global [`BlockingPool`]; the future yields `f`'s result (or
/// [`JoinError::Panicked`]) on this proactor's thread.
///
/// # Panics
/// Outside a running proactor.
pub fn offload<F, T>(f: F) -> Offload<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    BlockingPool::global().offload(f)
}

/// Alias of [`offload`], under the name other runtimes use.
pub fn spawn_blocking<F, T>(f: F) -> Offload<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    offload(f)
}

/// Where a result meets its future.
struct Shared<T> {
    result: Mutex<Option<Result<T, JoinError>>>,
    waker: Mutex<Option<Waker>>,
    /// The future was dropped: skip the job if it has not started.
    cancelled: AtomicBool,
    /// The proactor the result is posted to; taken by the one completion.
    target: Mutex<Option<RemoteHandle>>,
}

/// Posts the result to the target proactor exactly once; if the job is dropped unrun (pool
/// shut down), posts `Cancelled` instead so the future never hangs.
struct Completer<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    done: bool,
}

impl<T: Send + 'static> Completer<T> {
    fn complete(&mut self, out: Result<T, JoinError>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let target = self.shared.target.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(target) = target else { return };
        let shared = self.shared.clone();
        // Runs on the proactor's thread, in the turn's drain of posted work: the result is
        // dispatched there, like an operation's completion. If the proactor is gone, so is the
        // future; the result is dropped here.
        let _ = target.post(move || {
            *shared.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
            let waker = shared.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(w) = waker {
                w.wake();
            }
        });
    }
}

impl<T: Send + 'static> Drop for Completer<T> {
    fn drop(&mut self) {
        if !self.done {
            self.complete(Err(JoinError::Cancelled));
        }
    }
}

/// The future of an offloaded closure. Dropping it before the closure starts skips it; after,
/// the result is discarded.
#[must_use = "an offloaded closure's result is delivered only to its future"]
pub struct Offload<T> {
    pool: BlockingPool,
    /// The job, until the pool's queue accepts it.
    job: Option<Job>,
    shared: Arc<Shared<T>>,
}

impl<T> Unpin for Offload<T> {}

impl<T> Future for Offload<T> {
    type Output = Result<T, JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.job.is_some() {
            let mut target = self.shared.target.lock().unwrap_or_else(|p| p.into_inner());
            if target.is_none() {
                match Handle::try_current() {
                    Some(h) => *target = Some(h.remote()),
                    None => {
                        tracing::error!("offload polled outside a running proactor");
                        return Poll::Ready(Err(JoinError::Cancelled));
                    }
                }
            }
        }
        if let Some(job) = self.job.take() {
            // Register before queueing: the result may be posted back before we return.
            *self.shared.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            if let Err(job) = self.pool.try_push(job, cx.waker()) {
                self.job = Some(job);
                return Poll::Pending;
            }
        }
        if let Some(out) = self.shared.result.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Poll::Ready(out);
        }
        let mut w = self.shared.waker.lock().unwrap_or_else(|p| p.into_inner());
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<T> Drop for Offload<T> {
    fn drop(&mut self) {
        self.shared.cancelled.store(true, Ordering::Release);
        // An unqueued job is dropped with the future; its Completer posts a `Cancelled` nobody
        // reads, which is harmless.
    }
}
