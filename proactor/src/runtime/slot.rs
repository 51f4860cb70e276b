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

use super::memory::OpMemory;
use crate::driver::{RawOp, Token};
use crate::op::sealed::Hooks;
use crate::op::{name_error, BlockingCall, Emulation, OpCode};
use std::any::Any;
use std::io;
use std::ptr::NonNull;
use std::task::Waker;

/// Who receives an operation's completion.
pub(crate) enum Lifecycle {
    /// A future awaits it; the waiter is whoever polled it last.
    Waiting(Waiter),
    /// The completion arrived; the future has not picked it up yet.
    Done(i32),
    /// The future was dropped while the kernel still owned the memory: parked until completion.
    Detached,
    /// A completion handler, carried inside the operation's box, receives it.
    Handler,
}

/// Whom to wake when an operation completes.
pub(crate) enum Waiter {
    /// A task of this loop's executor (or its `block_on` future), by key: recorded when the
    /// future is polled with the waker the executor made for that poll, so no reference count
    /// is taken and dropped per operation.
    Task(usize),
    /// Any other waker (a combinator's, another runtime's), kept as given.
    Waker(Waker),
}

/// One operation owned by the run loop: one cache line, so that an operation's bookkeeping
/// never straddles two.
#[repr(align(64))]
pub(crate) struct Slot {
    /// The operation, in a block of the loop's `OpMemory`: the pointer the driver holds stays
    /// valid while the table moves slots around. Its value is moved out (or dropped) exactly
    /// once, when the slot is removed after completion (or before submission).
    pub(crate) op: NonNull<dyn ErasedOp>,
    pub(crate) generation: u32,
    /// The operation's type as the loop sees it: its name and how to finish it.
    pub(crate) kind: &'static OpKind,
    /// When it was handed to the driver: the loop's millisecond clock (see `Core::now_ms`).
    pub(crate) started: u32,
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
    /// For the futures front end, which checks the concrete type it takes back.
    fn as_any(&self) -> &dyn Any;
}

/// A type the run loop stores, with its [`OpKind`].
pub(crate) trait Stored: ErasedOp + Sized + 'static {
    const KIND: &'static OpKind;
}

/// What the loop knows of a stored operation's type without looking into its block, behind
/// one thin pointer in its slot: its name (for in-flight reports and errors) and its finisher
/// — a direct call on completion, where asking the block for it first cost a virtual call.
pub(crate) struct OpKind {
    pub(crate) name: &'static str,
    pub(crate) finish: Finisher,
}

/// Finishes a type-erased operation from its raw block: moves the value out, gives the block
/// back to the loop's memory *before* any user code runs (a handler that starts the next
/// operation then reuses a block still in cache), and delivers the output — to the handler with
/// `run_handler`, else it is dropped (closing any descriptor it carries).
///
/// # Safety
/// `block` must hold a live value of the operation type that returned this function, stored by
/// [`OpMemory::store`], referenced by no one else; it is uninitialized and released afterwards,
/// even if the handler unwinds. The function must be the one of that type's [`OpKind`].
pub(crate) type Finisher = unsafe fn(NonNull<u8>, i32, &OpMemory, bool);

/// The [`Finisher`] of [`Plain`]: its future is gone, so the output is dropped.
unsafe fn finish_plain<O: OpCode>(block: NonNull<u8>, res: i32, memory: &OpMemory, _run: bool) {
    // SAFETY: forwarded from the `Finisher` contract.
    let Plain(op) = unsafe { memory.take::<Plain<O>>(block) };
    drop(op.complete(convert(O::NAME, res)));
}

/// The [`Finisher`] of [`WithHandler`].
unsafe fn finish_with_handler<O: OpCode, H: FnOnce(O::Output) + 'static>(
    block: NonNull<u8>,
    res: i32,
    memory: &OpMemory,
    run_handler: bool,
) {
    // SAFETY: forwarded from the `Finisher` contract.
    let WithHandler { op, handler } = unsafe { memory.take::<WithHandler<O, H>>(block) };
    let output = op.complete(convert(O::NAME, res));
    if run_handler {
        handler(output);
    } else {
        drop(handler);
        drop(output);
    }
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

/// What the loop stores — an operation and whoever receives its output — seen by the driver
/// as just the operation.
pub(crate) trait Carrier {
    type Op: OpCode;
    fn op(&self) -> &Self::Op;
    fn op_mut(&mut self) -> &mut Self::Op;
}

impl<C: Carrier> RawOp for C {
    fn uring_entry(&mut self) -> io_uring::squeue::Entry {
        self.op_mut().uring_entry()
    }
    fn emulation(&self) -> Emulation {
        self.op().emulation()
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.op_mut().perform(nowait)
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        self.op_mut().blocking()
    }
    fn set_cqe_flags(&mut self, flags: u32) {
        self.op_mut().set_cqe_flags(flags)
    }
}

/// An operation awaited by a future (or orphaned by one).
pub(crate) struct Plain<O>(pub(crate) O);

impl<O: OpCode> Carrier for Plain<O> {
    type Op = O;
    fn op(&self) -> &O {
        &self.0
    }
    fn op_mut(&mut self) -> &mut O {
        &mut self.0
    }
}

impl<O: OpCode> Stored for Plain<O> {
    const KIND: &'static OpKind = &OpKind { name: O::NAME, finish: finish_plain::<O> };
}

impl<O: OpCode> ErasedOp for Plain<O> {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// An operation together with its completion handler, in one allocation.
pub(crate) struct WithHandler<O, H> {
    pub(crate) op: O,
    pub(crate) handler: H,
}

impl<O: OpCode, H: FnOnce(O::Output) + 'static> Carrier for WithHandler<O, H> {
    type Op = O;
    fn op(&self) -> &O {
        &self.op
    }
    fn op_mut(&mut self) -> &mut O {
        &mut self.op
    }
}

impl<O: OpCode, H: FnOnce(O::Output) + 'static> Stored for WithHandler<O, H> {
    const KIND: &'static OpKind = &OpKind { name: O::NAME, finish: finish_with_handler::<O, H> };
}

impl<O: OpCode, H: FnOnce(O::Output) + 'static> ErasedOp for WithHandler<O, H> {
    fn as_any(&self) -> &dyn Any {
        self
    }
}
