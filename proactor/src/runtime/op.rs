//! The futures front end for one operation: `Op<O>` submits on first poll and resolves to the
//! operation's output. Dropping it with the operation in flight parks the buffer until the
//! kernel's completion arrives, then frees it (see `slot.rs`).

use super::core::Core;
use super::slot::{convert, expired_or_cancelled, Plain, Receiver, Waiter};
use super::Handle;
use crate::driver::Token;
use crate::op::OpCode;
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

enum State<O> {
    Unsubmitted(O),
    Submitted(Rc<Core>, Token),
    Finished,
}

/// An operation as a future. Created by the async methods of the I/O types or by [`submit`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct Op<O: OpCode> {
    state: State<O>,
    /// The rarely used settings, behind one pointer: every future of a batch stays small.
    extras: Option<Box<Extras>>,
}

/// What only some operations carry: a deadline, a cancel token.
#[derive(Default)]
struct Extras {
    deadline: Option<Duration>,
    cancel: Option<Rc<CancelCell>>,
}

/// Submits `op` on the current proactor when awaited.
pub fn submit<O: OpCode>(op: O) -> Op<O> {
    Op { state: State::Unsubmitted(op), extras: None }
}

impl<O: OpCode> Op<O> {
    /// Gives up on the operation if it has not finished within `d`: it then completes with an
    /// error of kind `ErrorKind::TimedOut` (raw error `ETIMEDOUT`), and the buffer comes back
    /// as with any result. An explicit cancel ([`Op::cancel_token`]) is still `ECANCELED`, so
    /// the two are told apart; an operation that finished in time keeps its real result.
    ///
    /// ```
    /// use std::{io::ErrorKind, time::Duration};
    /// let p = proactor::Proactor::new()?;
    /// p.block_on(async {
    ///     let (_a, b) = proactor::net::UnixStream::pair()?;
    ///     let (res, buf) = b.read(Vec::with_capacity(64)).deadline(Duration::from_millis(10)).await;
    ///     assert_eq!(res.unwrap_err().kind(), ErrorKind::TimedOut);
    ///     assert_eq!(buf.capacity(), 64, "the buffer is back");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn deadline(mut self, d: Duration) -> Self {
        self.extras.get_or_insert_default().deadline = Some(d);
        self
    }

    /// A token that cancels this operation from elsewhere (another task, a handler).
    pub fn cancel_token(&mut self) -> CancelToken {
        let extras = self.extras.get_or_insert_default();
        let cell = extras.cancel.get_or_insert_with(|| Rc::new(CancelCell::default())).clone();
        if let State::Submitted(core, token) = &self.state {
            cell.target.set(Some(*token));
            cell.core.replace(Some(core.clone()));
        }
        CancelToken(cell)
    }
}

impl<O: OpCode> Unpin for Op<O> {}

impl<O: OpCode> Future for Op<O> {
    type Output = O::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O::Output> {
        let this = self.get_mut();
        match &this.state {
            State::Submitted(..) => this.poll_submitted(cx),
            State::Unsubmitted(_) => this.submit(cx),
            State::Finished => panic!("Op polled after completion"),
        }
    }
}

impl<O: OpCode> Op<O> {
    /// The first poll: hands the operation to the current proactor. An operation with a
    /// deadline or a cancel token takes a path of its own, so that the common one checks for
    /// neither. Inlined into the poll: out of line, its call, frame and the state's round trip
    /// through the stack were 19 of the ~315 user-side instructions of a NOP future's round
    /// trip (callgrind on `nop_ratio`'s `f` loop).
    #[inline]
    fn submit(&mut self, cx: &mut Context<'_>) -> Poll<O::Output> {
        if self.extras.is_some() {
            return self.submit_with_extras(cx);
        }
        self.submit_with(cx, None)
    }

    #[cold]
    #[inline(never)]
    fn submit_with_extras(&mut self, cx: &mut Context<'_>) -> Poll<O::Output> {
        let (deadline, cancel) =
            self.extras.as_deref().map_or((None, None), |e| (e.deadline, e.cancel.clone()));
        if cancel.as_ref().is_some_and(|c| c.cancelled.get()) {
            let State::Unsubmitted(op) = std::mem::replace(&mut self.state, State::Finished) else {
                unreachable!("only called on an unsubmitted operation")
            };
            return Poll::Ready(op.complete(convert(O::NAME, -libc::ECANCELED)));
        }
        let poll = self.submit_with(cx, deadline);
        if let (Some(c), State::Submitted(core, token)) = (cancel, &self.state) {
            c.target.set(Some(*token));
            c.core.replace(Some(core.clone()));
        }
        poll
    }

    #[inline(always)]
    fn submit_with(&mut self, cx: &mut Context<'_>, deadline: Option<Duration>) -> Poll<O::Output> {
        let State::Unsubmitted(op) = &mut self.state else {
            unreachable!("only called on an unsubmitted operation")
        };
        // The operation is moved out in place, where swapping the whole state out copied it
        // through the stack and tested its tag again.
        // SAFETY: `op` is valid for reads; the value read is the only copy that survives,
        // because the state is overwritten just below without dropping what it held (nothing
        // in between can unwind).
        let op = unsafe { std::ptr::read(op) };
        // SAFETY: `self.state` is valid for writes; its old value is not dropped, which is what
        // the move above needs (the operation is all it owned).
        unsafe { std::ptr::write(&mut self.state, State::Finished) };
        let Some(handle) = Handle::try_current() else {
            let err =
                io::Error::other("no proactor is running on this thread (use block_on or run)");
            return Poll::Ready(op.complete(Err(err)));
        };
        let core = handle.core;
        let waiter = core.executor.waiter(cx.waker());
        let token = if O::MULTISHOT {
            // A multishot operation runs with `submit_multi`; here it completes with EINVAL.
            core.refuse(Plain(op), Receiver::Future(waiter), libc::EINVAL)
        } else if let Waiter::Task(key) = waiter {
            // A task of this loop, the common case: `submit` inlined with the waiter known to be
            // a key (with a waiter picked at run time, its two forms were told apart once more
            // at run time, and the state went through the stack).
            core.submit(Plain(op), deadline, Receiver::Future(Waiter::Task(key)))
        } else {
            submit_foreign(&core, Plain(op), deadline, waiter)
        };
        // SAFETY: `self.state` is valid for writes and holds `Finished` (written above), which
        // owns nothing: not dropping it loses nothing, and spares re-reading the state to drop
        // it (the calls since may have written memory the compiler cannot rule out).
        unsafe { std::ptr::write(&mut self.state, State::Submitted(core, token)) };
        // Completions are only delivered by the loop's next turn: nothing to look up yet.
        Poll::Pending
    }

    /// A later poll: takes the output if the operation has completed.
    #[inline]
    fn poll_submitted(&mut self, cx: &mut Context<'_>) -> Poll<O::Output> {
        let State::Submitted(core, token) = &self.state else {
            unreachable!("only called on a submitted operation")
        };
        // The token's generation guarantees the slot is the one this future filled.
        debug_assert!(core.holds::<Plain<O>>(*token));
        let (res, op) = match core.poll_result(*token, cx.waker()) {
            None => return Poll::Pending,
            Some(done) => done,
        };
        // SAFETY: from `poll_result` (completed, out of the table), and holding the `Plain<O>`
        // this future submitted under `token` (a reused key carries another generation).
        let Plain(op) = unsafe { core.memory.take::<Plain<O>>(op) };
        // Finished only now: the assignment drops this future's share of the core.
        self.state = State::Finished;
        let res = if res == -libc::ECANCELED && self.extras.is_some() {
            self.why_cancelled()
        } else {
            res
        };
        Poll::Ready(op.complete(convert(O::NAME, res)))
    }

    /// An `ECANCELED` completion of an operation with extras: its deadline passed (`ETIMEDOUT`)
    /// unless its cancel token was used.
    #[cold]
    fn why_cancelled(&self) -> i32 {
        let Some(extras) = self.extras.as_deref() else { return -libc::ECANCELED };
        let cancelled = extras.cancel.as_ref().is_some_and(|c| c.cancelled.get());
        expired_or_cancelled(-libc::ECANCELED, extras.deadline.is_some(), cancelled)
    }
}

/// [`Core::submit`] of an operation awaited by a waker not made by this loop's executor.
#[cold]
#[inline(never)]
fn submit_foreign<O: OpCode>(
    core: &Core,
    op: Plain<O>,
    deadline: Option<Duration>,
    waiter: Waiter,
) -> Token {
    core.submit(op, deadline, Receiver::Future(waiter))
}

impl<O: OpCode> Drop for Op<O> {
    fn drop(&mut self) {
        if let State::Submitted(core, token) = &self.state {
            core.detach(*token);
        }
    }
}

#[derive(Default)]
struct CancelCell {
    cancelled: Cell<bool>,
    target: Cell<Option<Token>>,
    core: std::cell::RefCell<Option<Rc<Core>>>,
}

/// Cancels one operation. The operation then completes with `ECANCELED` — or with its real
/// result, if it finished first — and hands its buffer back as usual.
#[derive(Clone)]
pub struct CancelToken(Rc<CancelCell>);

impl CancelToken {
    /// Requests cancellation. Harmless if the operation already finished.
    pub fn cancel(&self) {
        self.0.cancelled.set(true);
        if let (Some(token), Some(core)) = (self.0.target.get(), self.0.core.borrow().as_ref()) {
            core.cancel(token);
        }
    }
}

/// Identifies an operation started with a completion handler, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(pub(crate) Token);
