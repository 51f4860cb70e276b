//! The blocking pool: a few threads that run the calls epoll cannot wait on (regular files,
//! `openat`, `fsync`, `statx`) and post their completions to the same queue as everything else.
//!
//! A pool thread plays the kernel's part. It never sees the operation: it gets the operation's
//! [`BlockingCall`], a `Send` closure made on the run loop's thread at submission from raw values
//! (the fd number, pointers into memory the operation owns), so no trait code of the operation,
//! its descriptor or its buffer ever runs here. The run loop keeps that memory in place and
//! untouched until the completion this thread posts. Threads start lazily (a proactor that never opens a
//! file never starts one) and are bounded; past the bound, jobs queue in order. A job still
//! queued can be cancelled; a running one cannot be interrupted and reports its real result.

use super::super::{Completion, Notifier, Token};
use crate::op::BlockingCall;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Upper bound on pool threads per driver.
pub(super) const MAX_THREADS: usize = 4;

/// An operation's call handed to a pool thread.
struct Job {
    token: Token,
    call: BlockingCall,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
    running: usize,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    done: Mutex<Vec<Completion>>,
    waker: Arc<dyn Notifier>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a thread panicked while holding it; the state stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pool of one epoll driver.
pub(super) struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool that wakes the driver through `waker` whenever it posts a completion.
    pub(super) fn new(waker: Arc<dyn Notifier>) -> Pool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Mutex::new(Vec::new()),
            waker,
        });
        Pool { shared, handles: Vec::new() }
    }

    /// Queues `call`, starting a thread if none is idle and the bound allows. Gives the call
    /// back if no thread exists and none could be started (the caller then makes it itself).
    pub(super) fn submit(&mut self, token: Token, call: BlockingCall) -> Result<(), BlockingCall> {
        let mut st = self.shared.lock();
        if st.idle == 0 && st.threads < MAX_THREADS {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("proactor-blocking".into())
                .spawn(move || worker(&shared));
            match spawned {
                Ok(handle) => {
                    st.threads += 1;
                    self.handles.push(handle);
                }
                Err(e) if st.threads == 0 => {
                    tracing::warn!("cannot start a blocking-pool thread: {e}");
                    return Err(call);
                }
                Err(_) => {}
            }
        }
        st.jobs.push_back(Job { token, call });
        drop(st);
        self.shared.work.notify_one();
        Ok(())
    }

    /// Removes a job that has not started. False if it is running (or already finished).
    pub(super) fn cancel(&mut self, token: Token) -> bool {
        let mut st = self.shared.lock();
        match st.jobs.iter().position(|j| j.token == token) {
            Some(i) => {
                st.jobs.remove(i);
                true
            }
            None => false,
        }
    }

    /// Moves the completions posted by pool threads to `out`.
    pub(super) fn drain(&self, out: &mut Vec<Completion>) {
        let mut done = self.shared.done.lock().unwrap_or_else(|p| p.into_inner());
        out.append(&mut done);
    }
}

impl Drop for Pool {
    /// Stops the threads. Idle threads are joined; a thread still inside a call that never
    /// returned (the run loop gave up on it and leaked its operation) is left to finish alone.
    fn drop(&mut self) {
        let running = {
            let mut st = self.shared.lock();
            st.shutdown = true;
            st.jobs.clear();
            st.running
        };
        self.shared.work.notify_all();
        if running > 0 {
            tracing::warn!("{running} blocking call(s) still running at shutdown; not waiting");
            return;
        }
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

fn worker(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        if st.shutdown {
            st.threads -= 1;
            return;
        }
        let Some(job) = st.jobs.pop_front() else {
            st.idle += 1;
            st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            st.idle -= 1;
            continue;
        };
        st.running += 1;
        drop(st);
        let Job { token, mut call } = job;
        let result = run(&mut call);
        drop(call);
        // The call is over before its completion can be seen: `running` drops under the state
        // lock, before the completion is posted. Posting first let the run loop take the
        // completion, finish, and drop the pool (which reads `running`) before this thread got
        // the lock back: a false "still running at shutdown".
        st = shared.lock();
        st.running -= 1;
        shared.done.lock().unwrap_or_else(|p| p.into_inner()).push(Completion {
            token,
            result,
            flags: 0,
        });
        shared.waker.notify();
    }
}

/// Makes the call, blocking, absorbing `EINTR`: the raw result a CQE would carry.
pub(super) fn run(call: &mut BlockingCall) -> i32 {
    loop {
        match call.call() {
            Ok(n) => return n.min(i32::MAX as u32) as i32,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return -e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}
