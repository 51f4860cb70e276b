//! The life of one operation inside the run loop, and the type-erased box that carries it.
//!
//! ```text
//!   queued (admission) ──▶ in flight ──▶ completed ──▶ output taken by its future
//!          │                  │  ╲
//!          │                  │   ╲ future dropped: detached — the box stays parked here,
//!          ▼                  ▼     untouched, until the kernel's completion arrives, then the
//!     dropped at once      handler  output is dropped (closing any fd it carries)
//!  (the kernel never saw it) runs
//! ```

use crate::driver::{RawOp, Token};
use crate::op::{name_error, Emulation, OpCode};
use std::any::Any;
use std::io;
use std::ptr::NonNull;
use std::task::Waker;
use std::time::{Duration, Instant};

/// Who receives an operation's completion.
pub(crate) enum Lifecycle {
    /// A future awaits it; the waker is the last one it was polled with.
    Waiting(Option<Waker>),
    /// The completion arrived; the future has not picked it up yet.
    Done(i32),
    /// The future was dropped while the kernel still owned the memory: parked until completion.
    Detached,
    /// A completion handler, carried inside the operation's box, receives it.
    Handler,
}

/// One operation owned by the run loop.
pub(crate) struct Slot {
    /// The boxed operation. Leaked from its `Box` at creation so that the pointer the driver
    /// holds stays valid and unique while the slab moves slots around; turned back into a `Box`
    /// exactly once, when the slot is removed after completion (or before submission).
    pub(crate) op: NonNull<dyn ErasedOp>,
    pub(crate) generation: u32,
    pub(crate) name: &'static str,
    pub(crate) started: Instant,
    pub(crate) deadline: Option<Duration>,
    /// Handed to the driver (false while waiting for admission).
    pub(crate) submitted: bool,
    pub(crate) state: Lifecycle,
}

impl Slot {
    pub(crate) fn token(&self, key: usize) -> Token {
        Token::new(key, self.generation)
    }

    /// Takes the operation back as a `Box`.
    ///
    /// # Safety
    /// Only once, and only when no driver still holds the pointer (it was never submitted, or
    /// its completion has been returned).
    pub(crate) unsafe fn take_op(&self) -> Box<dyn ErasedOp> {
        // SAFETY: the pointer came from `Box::into_raw` and, per the caller, is reclaimed once.
        unsafe { Box::from_raw(self.op.as_ptr()) }
    }
}

/// An operation with its type erased, as the run loop stores it.
pub(crate) trait ErasedOp: RawOp {
    /// Completes the operation and delivers the output to whoever is entitled to it: the
    /// handler, or no one (the output is dropped, closing any descriptor it carries).
    fn dispatch(self: Box<Self>, res: i32);
    /// Completes the operation without running user code (shutdown): the output is dropped.
    fn discard(self: Box<Self>, res: i32);
    /// For the futures front end, which knows the concrete type.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// Converts a raw completion result into an `io::Result`, naming the operation on error.
pub(crate) fn convert(name: &'static str, res: i32) -> io::Result<u32> {
    if res >= 0 {
        Ok(res as u32)
    } else {
        Err(name_error(name, io::Error::from_raw_os_error(-res)))
    }
}

/// An operation awaited by a future (or orphaned by one).
pub(crate) struct Plain<O>(pub(crate) O);

impl<O: OpCode> RawOp for Plain<O> {
    fn uring_entry(&mut self) -> io_uring::squeue::Entry {
        self.0.uring_entry()
    }
    fn emulation(&self) -> Emulation {
        self.0.emulation()
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.0.perform(nowait)
    }
    fn set_cqe_flags(&mut self, flags: u32) {
        self.0.set_cqe_flags(flags)
    }
}

impl<O: OpCode> ErasedOp for Plain<O> {
    fn dispatch(self: Box<Self>, res: i32) {
        drop(self.0.complete(convert(O::NAME, res)));
    }
    fn discard(self: Box<Self>, res: i32) {
        drop(self.0.complete(convert(O::NAME, res)));
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// An operation together with its completion handler, in one allocation.
pub(crate) struct WithHandler<O, H> {
    pub(crate) op: O,
    pub(crate) handler: H,
}

impl<O: OpCode, H: FnOnce(O::Output) + 'static> RawOp for WithHandler<O, H> {
    fn uring_entry(&mut self) -> io_uring::squeue::Entry {
        self.op.uring_entry()
    }
    fn emulation(&self) -> Emulation {
        self.op.emulation()
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.op.perform(nowait)
    }
    fn set_cqe_flags(&mut self, flags: u32) {
        self.op.set_cqe_flags(flags)
    }
}

impl<O: OpCode, H: FnOnce(O::Output) + 'static> ErasedOp for WithHandler<O, H> {
    fn dispatch(self: Box<Self>, res: i32) {
        let WithHandler { op, handler } = *self;
        handler(op.complete(convert(O::NAME, res)));
    }
    fn discard(self: Box<Self>, res: i32) {
        drop(self.op.complete(convert(O::NAME, res)));
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}
