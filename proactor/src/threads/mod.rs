//! Many cores: one proactor per thread, each with its own ring (or epoll driver), its own
//! operations and its own tasks, reached from any thread through [`Worker`] handles.
//!
//! Nothing is shared between the loops: each thread submits, reaps and dispatches on its own, so
//! the hot path takes no lock. Work crosses threads only through a [`RemoteHandle`] (a closure
//! queue plus an eventfd wake-up), and connections are handed to the least-loaded thread by
//! [`MultiProactor::serve`] (see `docs/architecture.md` for why one acceptor beats `SO_REUSEPORT` here).
//!
//! ```
//! use proactor::threads::Threads;
//! let pool = Threads::new().threads(2).start()?;
//! let (tx, rx) = std::sync::mpsc::channel();
//! for w in pool.workers().iter() {
//!     let tx = tx.clone();
//!     w.post(move || tx.send(proactor::threads::current_worker()).unwrap()).unwrap();
//! }
//! let mut seen: Vec<_> = rx.iter().take(2).collect();
//! seen.sort();
//! assert_eq!(seen, vec![Some(0), Some(1)]);
//! pool.shutdown()?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod load;
mod room;
mod serve;

pub use load::Load;
pub use room::{Lagged, Membership, Room};
pub use serve::{Conn, Distribution, Server};

use crate::runtime::{Builder, Closed, RemoteHandle};
use crate::DriverChoice;
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::ops::Deref;
use std::sync::Arc;
use std::thread::JoinHandle;

thread_local! {
    static CURRENT_WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker thread this code runs on, if it runs on one.
pub fn current_worker() -> Option<usize> {
    CURRENT_WORKER.with(|c| c.get())
}

/// Builds each thread's proactor; called on that thread with the thread's index.
type Configure = Arc<dyn Fn(usize) -> Builder + Send + Sync>;

/// Settings for a set of proactor threads.
///
/// ```
/// let pool = proactor::threads::Threads::new()
///     .threads(2)
///     .driver(proactor::DriverChoice::Auto)
///     .start()?;
/// assert_eq!(pool.len(), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Threads {
    threads: usize,
    driver: Option<DriverChoice>,
    configure: Option<Configure>,
    name: String,
}

impl Default for Threads {
    fn default() -> Self {
        Threads::new()
    }
}

/// The number of cores this process may run on (at least 1).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl Threads {
    /// One thread per core, the default driver.
    pub fn new() -> Self {
        Threads {
            threads: available_cores(),
            driver: None,
            configure: None,
            name: "proactor".into(),
        }
    }

    /// How many threads (at least 1). Default: the number of cores.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// The driver every thread uses (default: `PROACTOR_DRIVER`, else auto).
    pub fn driver(mut self, choice: DriverChoice) -> Self {
        self.driver = Some(choice);
        self
    }

    /// Full control of each thread's proactor: `f(index)` returns its builder. Wins over
    /// [`Threads::driver`].
    pub fn configure(mut self, f: impl Fn(usize) -> Builder + Send + Sync + 'static) -> Self {
        self.configure = Some(Arc::new(f));
        self
    }

    /// Thread name prefix (default `proactor`; threads are named `proactor-0`, `proactor-1`, …).
    pub fn name(mut self, prefix: impl Into<String>) -> Self {
        self.name = prefix.into();
        self
    }

    /// Starts the threads. Returns once every proactor is built and running, or with the first
    /// thread's error (the others are stopped and joined).
    pub fn start(self) -> io::Result<MultiProactor> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut joins = Vec::with_capacity(self.threads);
        for index in 0..self.threads {
            let thread_tx = tx.clone();
            let configure = self.configure.clone();
            let driver = self.driver;
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{index}", self.name))
                .spawn(move || worker_main(index, configure, driver, thread_tx));
            match spawned {
                Ok(j) => joins.push(j),
                Err(e) => {
                    drop(tx);
                    stop_all(&rx, joins);
                    return Err(e);
                }
            }
        }
        drop(tx);
        let mut slots: Vec<Option<Worker>> = (0..self.threads).map(|_| None).collect();
        let mut first_err = None;
        for _ in 0..self.threads {
            match rx.recv() {
                Ok((i, Ok(w))) => slots[i] = Some(w),
                Ok((_, Err(e))) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert_with(|| io::Error::other("a proactor thread died"));
                    break;
                }
            }
        }
        if first_err.is_some() || slots.iter().any(Option::is_none) {
            for w in slots.iter().flatten() {
                let _ = w.remote.stop();
            }
            for j in joins {
                let _ = j.join();
            }
            return Err(first_err.unwrap_or_else(|| io::Error::other("a proactor thread died")));
        }
        let workers = slots.into_iter().flatten().collect();
        Ok(MultiProactor {
            workers: Workers(Arc::new(workers)),
            joins,
            configure: self.configure,
            driver: self.driver,
        })
    }
}

/// Stops threads already started when starting another failed.
fn stop_all(
    rx: &std::sync::mpsc::Receiver<(usize, io::Result<Worker>)>,
    joins: Vec<JoinHandle<io::Result<()>>>,
) {
    for _ in 0..joins.len() {
        if let Ok((_, Ok(w))) = rx.recv() {
            let _ = w.remote.stop();
        }
    }
    for j in joins {
        let _ = j.join();
    }
}

/// The body of one proactor thread: build, report, run until stopped.
fn worker_main(
    index: usize,
    configure: Option<Configure>,
    driver: Option<DriverChoice>,
    tx: std::sync::mpsc::Sender<(usize, io::Result<Worker>)>,
) -> io::Result<()> {
    CURRENT_WORKER.with(|c| c.set(Some(index)));
    let builder = match (&configure, driver) {
        (Some(f), _) => f(index),
        (None, Some(d)) => Builder::new().driver(d),
        (None, None) => Builder::new(),
    };
    let proactor = match builder.build() {
        Ok(p) => p,
        Err(e) => {
            let err = io::Error::new(e.kind(), format!("proactor thread {index}: {e}"));
            let _ = tx.send((index, Err(e)));
            return Err(err);
        }
    };
    let load = Arc::new(Load::for_current_thread());
    let worker = Worker { index, remote: proactor.remote(), load };
    if tx.send((index, Ok(worker))).is_err() {
        return Ok(());
    }
    drop(tx);
    let res = proactor.run();
    if let Err(e) = &res {
        tracing::error!("proactor thread {index} stopped with an error: {e}");
    }
    res
}

/// One proactor thread, as seen from any thread: post work to it, read its load.
#[derive(Clone, Debug)]
pub struct Worker {
    index: usize,
    remote: RemoteHandle,
    load: Arc<Load>,
}

impl Worker {
    /// This thread's index (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The handle that posts to this thread's proactor.
    pub fn remote(&self) -> &RemoteHandle {
        &self.remote
    }

    /// This thread's load: live connections and CPU use.
    pub fn load(&self) -> &Load {
        &self.load
    }

    /// Runs `f` on this thread (see [`RemoteHandle::post`]).
    pub fn post<F: FnOnce() + Send + 'static>(&self, f: F) -> Result<(), Closed> {
        self.remote.post(f)
    }

    /// Spawns the future `make()` builds, on this thread (see [`RemoteHandle::spawn`]).
    pub fn spawn<M, F>(&self, make: M) -> Result<(), Closed>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + 'static,
    {
        self.remote.spawn(make)
    }
}

/// Every thread of a [`MultiProactor`]: `Send + Sync`, cheap to clone, to hand into connection
/// code that must reach other threads (a chat room, a strand, the acceptor).
#[derive(Clone, Debug)]
pub struct Workers(Arc<Vec<Worker>>);

impl Deref for Workers {
    type Target = [Worker];
    fn deref(&self) -> &[Worker] {
        &self.0
    }
}

impl Workers {
    /// The worker this code runs on, if it runs on one of these threads.
    pub fn current(&self) -> Option<&Worker> {
        let i = current_worker()?;
        self.0.get(i).filter(|w| w.index == i)
    }

    /// The thread that should take the next connection: the one with the lowest share of the
    /// connections plus twice its share of the CPU time recently used by all threads (CPU counts
    /// once the threads together use a quarter of a core; below that, count alone decides).
    /// Ties go to the lower index.
    pub fn least_loaded(&self) -> &Worker {
        let loads: Vec<(usize, f64)> =
            self.0.iter().map(|w| (w.load.live(), w.load.utilization())).collect();
        &self.0[load::pick(&loads)]
    }
}

/// A running set of proactor threads. Dropping it stops and joins them.
pub struct MultiProactor {
    workers: Workers,
    joins: Vec<JoinHandle<io::Result<()>>>,
    /// The threads' settings, reused for helper threads such as the acceptor.
    configure: Option<Configure>,
    driver: Option<DriverChoice>,
}

impl std::fmt::Debug for MultiProactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiProactor").field("workers", &self.workers).finish()
    }
}

impl MultiProactor {
    /// Starts `n` threads with default settings (see [`Threads`]).
    pub fn new(n: usize) -> io::Result<MultiProactor> {
        Threads::new().threads(n).start()
    }

    /// Number of threads.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Always false: there is at least one thread.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The threads, as a clonable `Send` set.
    pub fn workers(&self) -> Workers {
        self.workers.clone()
    }

    /// Thread `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn worker(&self, i: usize) -> &Worker {
        &self.workers[i]
    }

    /// Stops every thread (after the work already posted to it) and joins them. Returns the
    /// first error a loop stopped with, or an error if a thread panicked.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        for w in self.workers.iter() {
            let _ = w.remote.stop();
        }
        let mut first = Ok(());
        for (i, j) in self.joins.drain(..).enumerate() {
            let res = match j.join() {
                Ok(r) => r,
                Err(_) => Err(io::Error::other(format!("proactor thread {i} panicked"))),
            };
            if first.is_ok() {
                first = res;
            }
        }
        first
    }
}

impl Drop for MultiProactor {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            tracing::error!("stopping the proactor threads: {e}");
        }
    }
}
