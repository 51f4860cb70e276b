//! Strands: serialised execution across threads. Closures and tasks posted to a strand run one at
//! a time, in the order they were posted, whichever thread posted them and whichever proactor
//! thread runs them — so state touched only from a strand needs no further locking discipline.
//!
//! A strand is a queue plus a `running` flag. Posting to an idle strand schedules one *drain* on
//! a proactor thread (through its [`RemoteHandle`]); the drain runs queued closures until the
//! queue is empty, then marks the strand idle. Only one drain exists at a time, which is the
//! whole guarantee. After [`BATCH`] closures a drain re-schedules itself instead of running on,
//! so a busy strand cannot starve the rest of its thread.
//!
//! ```
//! use proactor::threads::Threads;
//! use proactor::strand::Strand;
//! let pool = Threads::new().threads(2).start()?;
//! let strand = Strand::on_workers(pool.workers());
//! let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! for i in 0..10 {
//!     let log = log.clone();
//!     strand.post(move || log.lock().unwrap().push(i)).unwrap();
//! }
//! strand.flush().unwrap();
//! assert_eq!(*log.lock().unwrap(), (0..10).collect::<Vec<_>>());
//! pool.shutdown()?;
//! # Ok::<(), std::io::Error>(())
//! ```

use crate::runtime::{Closed, RemoteHandle};
use crate::threads::Workers;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Closures one drain runs before it yields its thread and re-schedules itself.
pub const BATCH: usize = 256;

type Job = Box<dyn FnOnce() + Send>;

/// Where a strand's drains run.
enum Target {
    /// Always on this proactor.
    One(RemoteHandle),
    /// On the posting thread when it is one of these workers, else on the least-loaded one.
    Workers(Workers),
}

struct State {
    queue: VecDeque<Job>,
    /// A drain is scheduled or running.
    running: bool,
}

struct Inner {
    state: Mutex<State>,
    target: Target,
}

/// Serialises the closures and tasks posted to it (see the module docs). `Send + Sync`, cheap to
/// clone; clones are the same strand.
#[derive(Clone)]
pub struct Strand {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Strand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.lock();
        f.debug_struct("Strand")
            .field("queued", &s.queue.len())
            .field("running", &s.running)
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a drain to a proactor thread.
    fn schedule(self: &Arc<Self>) -> Result<(), Closed> {
        let me = self.clone();
        let drain = move || me.drain();
        match &self.target {
            Target::One(r) => r.post(drain),
            Target::Workers(ws) => {
                let w = ws.current().unwrap_or_else(|| ws.least_loaded());
                w.post(drain)
            }
        }
    }

    /// Runs queued closures one by one until the queue is empty (or a batch is done).
    fn drain(self: Arc<Self>) {
        for _ in 0..BATCH {
            let job = {
                let mut s = self.lock();
                match s.queue.pop_front() {
                    Some(job) => job,
                    None => {
                        s.running = false;
                        return;
                    }
                }
            };
            // A panicking closure must not wedge the strand with `running` stuck at true.
            if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!("a closure posted to a strand panicked: {msg}");
            }
        }
        {
            let mut s = self.lock();
            if s.queue.is_empty() {
                s.running = false;
                return;
            }
        }
        if self.schedule().is_err() {
            // The thread is gone: nothing will ever run these; drop them.
            let dropped = {
                let mut s = self.lock();
                s.running = false;
                std::mem::take(&mut s.queue)
            };
            drop(dropped);
        }
    }
}

impl Strand {
    /// A strand whose closures all run on the proactor behind `remote`.
    pub fn new(remote: RemoteHandle) -> Strand {
        Strand::with_target(Target::One(remote))
    }

    /// A strand over a set of proactor threads: each drain runs on the thread that made the
    /// strand busy (when it is one of `workers`), else on the least-loaded one.
    pub fn on_workers(workers: Workers) -> Strand {
        Strand::with_target(Target::Workers(workers))
    }

    fn with_target(target: Target) -> Strand {
        Strand {
            inner: Arc::new(Inner {
                state: Mutex::new(State { queue: VecDeque::new(), running: false }),
                target,
            }),
        }
    }

    /// Runs `f` after every closure posted to this strand before it, and never at the same time
    /// as another closure of this strand. Fails only if the proactor thread that would run it is
    /// gone.
    pub fn post<F: FnOnce() + Send + 'static>(&self, f: F) -> Result<(), Closed> {
        let start = {
            let mut s = self.inner.lock();
            s.queue.push_back(Box::new(f));
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            if let Err(e) = self.inner.schedule() {
                // Take back what cannot run, ours included; dropped outside the lock.
                let dropped = {
                    let mut s = self.inner.lock();
                    s.running = false;
                    std::mem::take(&mut s.queue)
                };
                drop(dropped);
                return Err(e);
            }
        }
        Ok(())
    }

    /// A completion handler that hands its argument to `f` through this strand: use it where
    /// handlers on several threads update the same state.
    pub fn wrap<T, F>(&self, f: F) -> impl FnOnce(T) + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(T) + Send + 'static,
    {
        let strand = self.clone();
        move |value| {
            if strand.post(move || f(value)).is_err() {
                tracing::warn!("a strand's thread is gone; a wrapped handler was dropped");
            }
        }
    }

    /// Spawns a task whose every poll runs through this strand, so it is serialised with the
    /// strand's closures and other tasks. It may move between threads, hence `Send`.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F) -> Result<(), Closed> {
        let task = Arc::new(StrandTask {
            future: Mutex::new(Some(Box::pin(future))),
            scheduled: AtomicBool::new(true),
            strand: self.clone(),
        });
        self.post(move || task.poll())
    }

    /// Blocks the calling thread until everything posted before this call has run. For tests
    /// and shutdown paths; never call it on a thread the strand runs on (it would wait for
    /// itself).
    pub fn flush(&self) -> Result<(), Closed> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.post(move || {
            let _ = tx.send(());
        })?;
        rx.recv().map_err(|_| Closed)
    }

    /// Closures waiting to run.
    pub fn queued(&self) -> usize {
        self.inner.lock().queue.len()
    }
}

/// A task driven through a strand.
struct StrandTask {
    future: Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>,
    /// A poll is already queued on the strand.
    scheduled: AtomicBool,
    strand: Strand,
}

impl StrandTask {
    fn poll(self: Arc<Self>) {
        self.scheduled.store(false, Ordering::SeqCst);
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut slot = self.future.lock().unwrap_or_else(|p| p.into_inner());
        let Some(fut) = slot.as_mut() else { return };
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
        match polled {
            Ok(Poll::Pending) => {}
            Ok(Poll::Ready(())) => *slot = None,
            Err(_) => {
                tracing::error!("a task on a strand panicked; it is dropped");
                *slot = None;
            }
        }
    }
}

impl Wake for StrandTask {
    fn wake(self: Arc<Self>) {
        if self.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let strand = self.strand.clone();
        if strand.post(move || self.poll()).is_err() {
            tracing::warn!("a strand's thread is gone; a task on it was dropped");
        }
    }
}
