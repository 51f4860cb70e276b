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
use std::time::Instant;

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
    /// The operation, in a block of the loop's `OpMemory`: the pointer the driver holds stays
    /// valid while the table moves slots around. Its value is moved out (or dropped) exactly
    /// once, when the slot is removed after completion (or before submission).
    pub(crate) op: NonNull<dyn ErasedOp>,
    pub(crate) generation: u32,
    pub(crate) name: &'static str,
    pub(crate) started: Instant,
    /// Handed to the driver (false while waiting for admission).
    pub(crate) submitted: bool,
    pub(crate) state: Lifecycle,
}

impl Slot {
    pub(crate) fn token(&self, key: usize) -> Token {
        Token::new(key, self.generation)
    }
}

/// An operation with its type erased, as the run loop stores it.
pub(crate) trait ErasedOp: RawOp {
    /// Completes the operation and delivers the output to whoever is entitled to it: the
    /// handler, or no one (the output is dropped, closing any descriptor it carries).
    ///
    /// # Safety
    /// Moves the value out of `self`: the caller must treat the memory as uninitialized
    /// afterwards (release it, never use or drop it again) — even if this call unwinds.
    unsafe fn dispatch(&mut self, res: i32);
    /// Completes the operation without running user code (shutdown): the output is dropped.
    ///
    /// # Safety
    /// As for [`ErasedOp::dispatch`].
    unsafe fn discard(&mut self, res: i32);
    /// For the futures front end, which checks the concrete type it takes back.
    fn as_any(&self) -> &dyn Any;
}

/// Converts a raw completion result into an `io::Result`, naming the operation on error.
#[inline]
pub(crate) fn convert(name: &'static str, res: i32) -> io::Result<u32> {
    if res >= 0 {
        Ok(res as u32)
    } else {
        Err(os_error(name, res))
    }
}

#[cold]
#[inline(never)]
fn os_error(name: &'static str, res: i32) -> io::Error {
    name_error(name, io::Error::from_raw_os_error(-res))
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
    unsafe fn dispatch(&mut self, res: i32) {
        // SAFETY: the caller treats `self` as moved out from here on.
        unsafe { self.discard(res) }
    }
    unsafe fn discard(&mut self, res: i32) {
        // SAFETY: the caller treats `self` as moved out from here on.
        let Plain(op) = unsafe { std::ptr::read(self) };
        drop(op.complete(convert(O::NAME, res)));
    }
    fn as_any(&self) -> &dyn Any {
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
    unsafe fn dispatch(&mut self, res: i32) {
        // SAFETY: the caller treats `self` as moved out from here on.
        let WithHandler { op, handler } = unsafe { std::ptr::read(self) };
        handler(op.complete(convert(O::NAME, res)));
    }
    unsafe fn discard(&mut self, res: i32) {
        // SAFETY: the caller treats `self` as moved out from here on.
        let WithHandler { op, handler } = unsafe { std::ptr::read(self) };
        drop(handler);
        drop(op.complete(convert(O::NAME, res)));
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
