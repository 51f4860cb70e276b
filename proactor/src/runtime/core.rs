//! The run loop's engine: owns the driver and the operations, submits, reaps and dispatches.
//!
//! One `Core` per proactor thread, shared through `Rc` by the handles, futures and handlers of that
//! thread. Borrows of its cells are never held across user code: a handler or a task may start new
//! operations from inside a dispatch.

use super::executor::Executor;
use super::panic::PanicPolicy;
use super::slot::{ErasedOp, Lifecycle, Slot};
use super::stats::InFlight;
use crate::driver::{AnyDriver, Completion, Driver, DriverKind, Notifier, OpPtr, Token};
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct Core {
    pub(crate) driver: RefCell<AnyDriver>,
    pub(crate) ops: RefCell<Slab<Slot>>,
    /// Operations handed to the driver and not yet completed.
    pub(crate) in_flight: Cell<usize>,
    /// Keys of operations waiting for admission, in arrival order.
    pub(crate) admission: RefCell<VecDeque<usize>>,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) generation: Cell<u32>,
    /// The loop's clock, read once per turn: cheap timestamps for in-flight tracking.
    pub(crate) now: Cell<Instant>,
    pub(crate) completions: RefCell<Vec<Completion>>,
    /// Results decided by the loop itself (an operation cancelled before admission), delivered
    /// in the next turn like any completion.
    pub(crate) local: RefCell<Vec<Completion>>,
    pub(crate) executor: Executor,
    pub(crate) panics: PanicPolicy,
    pub(crate) stopped: Cell<bool>,
    pub(crate) shutting_down: Cell<bool>,
    pub(crate) notifier: Arc<dyn Notifier>,
    /// Work posted from other threads (see `remote.rs`).
    pub(crate) remote: super::remote::RemoteSlot,
    pub(crate) fallback_reason: Option<String>,
    pub(crate) kind: DriverKind,
}

impl Core {
    /// Stores `op` and hands it to the driver (or to the admission queue past the cap).
    pub(crate) fn submit(
        &self,
        op: Box<dyn ErasedOp>,
        name: &'static str,
        deadline: Option<Duration>,
        state: Lifecycle,
    ) -> Token {
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        let op = NonNull::from(Box::leak(op));
        let slot = Slot {
            op,
            generation,
            name,
            started: self.now.get(),
            deadline,
            submitted: false,
            state,
        };
        let key = self.ops.borrow_mut().insert(slot);
        let token = Token::new(key, generation);
        // Past the cap, or behind others already waiting: operations are admitted in order.
        let full = self.max_in_flight.is_some_and(|cap| self.in_flight.get() >= cap);
        if full || !self.admission.borrow().is_empty() {
            self.admission.borrow_mut().push_back(key);
        } else {
            self.push_to_driver(key);
        }
        token
    }

    fn push_to_driver(&self, key: usize) {
        let (token, op, deadline) = {
            let mut ops = self.ops.borrow_mut();
            let slot = &mut ops[key];
            slot.submitted = true;
            slot.started = self.now.get();
            (slot.token(key), slot.op, slot.deadline)
        };
        self.in_flight.set(self.in_flight.get() + 1);
        // SAFETY: the operation stays boxed at `op` (leaked, never moved) until its completion is
        // processed in `complete`, which is the only place that frees a submitted operation.
        unsafe { self.driver.borrow_mut().push(token, OpPtr(op), deadline) };
    }

    /// Admits queued operations while there is room under the cap.
    fn admit(&self) {
        while self.max_in_flight.is_none_or(|cap| self.in_flight.get() < cap) {
            let Some(key) = self.admission.borrow_mut().pop_front() else { break };
            self.push_to_driver(key);
        }
    }

    /// Looks up a live slot for `token` (not a stale one whose key was reused).
    fn live_key(&self, token: Token) -> Option<usize> {
        let ops = self.ops.borrow();
        let slot = ops.get(token.key())?;
        (slot.generation == token.generation()).then_some(token.key())
    }

    /// Asks for early completion of the operation. An operation still waiting for admission
    /// leaves the queue without ever reaching the kernel and completes with `ECANCELED` in the
    /// next turn — not inside this call, so a handler never runs re-entrantly from `cancel`.
    pub(crate) fn cancel(&self, token: Token) {
        let Some(key) = self.live_key(token) else { return };
        let (submitted, done) = {
            let ops = self.ops.borrow();
            (ops[key].submitted, matches!(ops[key].state, Lifecycle::Done(_)))
        };
        if done {
            return;
        }
        if submitted {
            self.driver.borrow_mut().cancel(token);
            return;
        }
        let mut admission = self.admission.borrow_mut();
        if let Some(pos) = admission.iter().position(|&k| k == key) {
            admission.remove(pos);
            drop(admission);
            self.local.borrow_mut().push(Completion { token, result: -libc::ECANCELED, flags: 0 });
        }
    }

    /// A future gave up on its operation. If the kernel may still touch the memory, the box is
    /// parked and a cancel is sent; otherwise it is freed now (closing any fd in the output).
    pub(crate) fn detach(&self, token: Token) {
        let Some(key) = self.live_key(token) else { return };
        let (submitted, done) = {
            let ops = self.ops.borrow();
            let slot = &ops[key];
            (
                slot.submitted,
                match slot.state {
                    Lifecycle::Done(r) => Some(r),
                    _ => None,
                },
            )
        };
        if let Some(res) = done {
            let slot = self.ops.borrow_mut().remove(key);
            // SAFETY: the completion has been processed; the driver no longer holds the pointer.
            let op = unsafe { slot.take_op() };
            self.guard_user_code("a dropped operation's output", || op.discard(res));
        } else if submitted {
            self.ops.borrow_mut()[key].state = Lifecycle::Detached;
            self.driver.borrow_mut().cancel(token);
        } else {
            self.admission.borrow_mut().retain(|&k| k != key);
            let slot = self.ops.borrow_mut().remove(key);
            // SAFETY: never submitted, so no driver holds the pointer.
            let op = unsafe { slot.take_op() };
            self.guard_user_code("a dropped operation's output", || op.discard(-libc::ECANCELED));
        }
    }

    /// Takes the output of a completed operation for its future, or registers the waker.
    pub(crate) fn poll_result(
        &self,
        token: Token,
        waker: &std::task::Waker,
    ) -> Option<(i32, Box<dyn ErasedOp>)> {
        let key = token.key();
        let mut ops = self.ops.borrow_mut();
        let slot = ops.get_mut(key).filter(|s| s.generation == token.generation())?;
        match &mut slot.state {
            Lifecycle::Done(res) => {
                let res = *res;
                let slot = ops.remove(key);
                // SAFETY: the completion has been processed; the driver no longer holds the pointer.
                Some((res, unsafe { slot.take_op() }))
            }
            Lifecycle::Waiting(w) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *w = Some(waker.clone());
                }
                None
            }
            Lifecycle::Detached | Lifecycle::Handler => None,
        }
    }

    /// One completion from the driver.
    fn complete(&self, c: Completion) {
        let Some(key) = self.live_key(c.token) else { return };
        if !self.ops.borrow()[key].submitted {
            return;
        }
        self.in_flight.set(self.in_flight.get() - 1);
        if c.flags != 0 {
            let op = self.ops.borrow()[key].op;
            // SAFETY: the driver has returned this operation's completion, so neither it nor the
            // kernel touches the box any more, and no other reference to it is live here.
            unsafe { (*op.as_ptr()).set_cqe_flags(c.flags) };
        }
        self.finish(key, c.result);
        self.admit();
    }

    /// Records the result of the operation at `key` and delivers it.
    fn finish(&self, key: usize, res: i32) {
        let waker = {
            let mut ops = self.ops.borrow_mut();
            let slot = &mut ops[key];
            match std::mem::replace(&mut slot.state, Lifecycle::Done(res)) {
                Lifecycle::Waiting(w) => w,
                Lifecycle::Done(_) => None,
                Lifecycle::Detached | Lifecycle::Handler => {
                    let slot = ops.remove(key);
                    drop(ops);
                    // SAFETY: the completion for this operation has arrived (or it was never
                    // submitted); no driver holds the pointer any more.
                    let op = unsafe { slot.take_op() };
                    if self.shutting_down.get() {
                        self.guard_user_code("a discarded operation", || op.discard(res));
                    } else {
                        self.guard_user_code(slot.name, || op.dispatch(res));
                    }
                    return;
                }
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Runs user code (a handler, a buffer's destructor) so that a panic does not unwind
    /// through the run loop.
    pub(crate) fn guard_user_code(&self, what: &str, f: impl FnOnce()) {
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            self.panics.report("completion handler", what, payload);
        }
    }

    /// One turn: submit what is queued, wait if asked, dispatch every completion.
    pub(crate) fn turn(&self, block: bool, timeout: Option<Duration>) -> io::Result<()> {
        let mut batch = std::mem::take(&mut *self.completions.borrow_mut());
        let local = std::mem::take(&mut *self.local.borrow_mut());
        let block = block && local.is_empty() && self.executor.park();
        let res = self.driver.borrow_mut().wait(block, timeout, &mut batch);
        self.executor.unpark();
        self.now.set(Instant::now());
        for c in local {
            // Results decided by the loop (cancelled before admission): never in the driver.
            if let Some(key) = self.live_key(c.token) {
                self.finish(key, c.result);
            }
        }
        for c in batch.drain(..) {
            self.complete(c);
        }
        *self.completions.borrow_mut() = batch;
        self.drain_remote();
        res
    }

    /// What is in flight now.
    pub(crate) fn in_flight(&self) -> InFlight {
        InFlight::collect(&self.ops.borrow(), Instant::now())
    }

    /// True when no operation is queued, in flight, or completed and unclaimed.
    pub(crate) fn idle(&self) -> bool {
        self.ops.borrow().is_empty()
    }

    /// Cancels everything and waits (up to `grace`) for the kernel to give every buffer back.
    /// Operations still in flight after that are leaked, never freed.
    pub(crate) fn shutdown(&self, grace: Duration) {
        self.shutting_down.set(true);
        self.executor.clear(self);
        let tokens: Vec<Token> = {
            let ops = self.ops.borrow();
            ops.iter()
                .filter(|(_, s)| s.submitted && !matches!(s.state, Lifecycle::Done(_)))
                .map(|(k, s)| s.token(k))
                .collect()
        };
        for t in tokens {
            self.driver.borrow_mut().cancel(t);
        }
        // Never-submitted operations can go now.
        let queued: Vec<usize> = self.admission.borrow_mut().drain(..).collect();
        for key in queued {
            let slot = self.ops.borrow_mut().remove(key);
            // SAFETY: never submitted, so no driver holds the pointer.
            let op = unsafe { slot.take_op() };
            self.guard_user_code("shutdown", || op.discard(-libc::ECANCELED));
        }
        let deadline = Instant::now() + grace;
        while self.in_flight.get() > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Err(e) = self.turn(true, Some(deadline - now)) {
                tracing::error!("proactor shutdown: driver failed: {e}");
                break;
            }
        }
        // Take the slots out first: dropping an output runs user code (a buffer's or a
        // handler's destructor), which must not find the slab borrowed.
        let slots: Vec<_> = self.ops.borrow_mut().drain().collect();
        let mut leaked = 0;
        for slot in slots {
            let res = match slot.state {
                Lifecycle::Done(res) => Some(res),
                _ if !slot.submitted => Some(-libc::ECANCELED),
                _ => None,
            };
            match res {
                Some(res) => {
                    // SAFETY: completed or never submitted, so no driver holds the pointer.
                    let op = unsafe { slot.take_op() };
                    self.guard_user_code("shutdown", || op.discard(res));
                }
                // Still owned by the kernel: leak rather than free memory it may write.
                None => leaked += 1,
            }
        }
        if leaked > 0 {
            tracing::error!("proactor shutdown: {leaked} operation(s) did not complete within {grace:?}; their buffers are leaked, not freed");
        }
    }
}
