//! The life of one operation inside the run loop, and the type-erased box that carries it.
//!
//! Every state an operation can be in is a variant of [`Lifecycle`], and every change of state
//! is one of its methods; the run loop (`core.rs`) only acts on what a transition returns.
//!
//! ```text
//!        submit, past the in-flight cap               submit, room under the cap
//!                   │                                             │
//!                   ▼                    admit                    ▼
//!               Queued ─────────────────────────────▶ Awaited (future) / Handler ────┐
//!            │       │                                         │      │               │ future
//!     cancel │       │ future dropped: freed at once           │      │ completion    │ dropped
//!            ▼       ▼ (the kernel never saw it)               │      │ (handler)     ▼
//!        Cancelled ──────────┐ next turn: ECANCELED            │      │           Detached
//!                            ▼                                 │      ▼     (memory parked until
//!         a future's: Done(res) ◀──── completion (future) ─────┘   the handler  the completion;
//!                            │                                      runs        output dropped)
//!                            ▼ taken by its future                    │               │
//!               the slot leaves the table: output and buffer go to ◀──┴───────────────┘
//!               the caller, the block is reused
//! ```
//!
//! Each state before completion comes in a future's form (carrying its [`Wait`]) and a
//! handler's form (the handler rides in the operation's own block); a handler's operation
//! with a deadline has forms of its own (`QueuedTimedHandler`, `TimedHandler`), which record
//! whether a cancel was asked, so that a deadline's `ECANCELED` reaches the handler as
//! `ETIMEDOUT`. The driver holds the operation's memory exactly in `Awaited`, `Handler`,
//! `TimedHandler` and `Detached` (and the streaming states): those are the states a completion
//! from the driver finds, the ones counted in flight, and the ones shutdown must wait for (or
//! leak).

use super::executor::{MAIN, MAX_TASKS, NO_TASK};
use super::memory::OpMemory;
use crate::driver::{RawOp, Token};
use crate::op::sealed::Hooks;
use crate::op::{name_error, BlockingCall, Emulation, Multishot, OpCode};
use crate::runtime::multi::Multi;
use std::any::Any;
use std::collections::VecDeque;
use std::io;
use std::ptr::NonNull;
use std::task::Waker;

/// Every state of an operation the run loop holds (see the module docs for the diagram).
///
/// A flat enum of one tag and at most one four-byte word (8 bytes: a foreign waker is kept
/// beside the table, see [`Wait`]): a completion is dispatched on one load of the tag, and a
/// slot is half a cache line. The three states a completion finds
/// most often come first, the two that are delivered alike next to each other (one range
/// check).
pub(crate) enum Lifecycle {
    /// In flight — the driver (with the kernel) owns its memory until the completion — and
    /// awaited by a future; the waiter is whoever polled it last.
    Awaited(Wait),
    /// In flight, carrying a completion handler inside the operation's block.
    Handler,
    /// Its future was dropped while the driver owned the memory: parked, untouched, until the
    /// completion arrives; then the output is dropped (closing any fd it carries).
    Detached,
    /// In flight with a handler and a deadline (`Handle::start_with_deadline`). The driver
    /// reports a passed deadline as `ECANCELED`, like a cancel; `cancel_asked` records whether
    /// a cancel was asked for, so the handler gets `ETIMEDOUT` for an expiry (see
    /// [`expired_or_cancelled`]).
    TimedHandler { cancel_asked: bool },
    /// Waiting for admission under the in-flight cap, awaited by a future: the driver has never
    /// seen it.
    Queued(Wait),
    /// Waiting for admission, carrying a handler.
    QueuedHandler,
    /// Waiting for admission, carrying a handler and a deadline (which starts at admission).
    QueuedTimedHandler,
    /// Cancelled before admission, awaited by a future: the driver never saw it; `ECANCELED`
    /// is delivered by the loop's next turn, like a completion (never from inside `cancel`).
    Cancelled(Wait),
    /// Cancelled before admission, carrying a handler.
    CancelledHandler,
    /// Completed; the output waits in the block for its future to take it.
    Done(i32),
    /// A multishot operation in flight, streamed to a future: each completion flagged `MORE`
    /// queues an item in its block and wakes the waiter; the last one makes it `Done`.
    Streaming(Wait),
    /// A multishot operation in flight whose handler is called per completion.
    StreamingHandler,
}

/// Who receives an operation's completion: what `submit` is told.
pub(crate) enum Receiver {
    /// A future awaits it; the waiter is whoever polled it last.
    Future(Waiter),
    /// A completion handler, carried inside the operation's block.
    Handler,
    /// A completion handler, for an operation with a deadline.
    TimedHandler,
}

/// What a completion does, decided by [`Lifecycle::complete`]. The first two come from the
/// driver, which held the operation until now (the loop counts it out); the `Cancelled` ones
/// are the loop's own completions of operations it never submitted.
pub(crate) enum Completed {
    /// A future's result is recorded (`Done`): wake its waiter.
    Wake(Wait),
    /// The slot is finished: vacate it and deliver the output (to its handler, or dropped for
    /// a detached operation).
    Deliver,
    /// As `Wake`, for an operation cancelled before admission.
    WakeCancelled(Wait),
    /// As `Deliver`, for an operation cancelled before admission.
    DeliverCancelled,
    /// As `Deliver`, with this result in place of the driver's (a handler's deadline passed:
    /// `-ETIMEDOUT` instead of `-ECANCELED`).
    DeliverAs(i32),
    /// Not a completion this operation can take (still queued, or already done): ignored.
    Stale,
}

/// What a completion flagged `MORE` (a multishot operation's item) does, decided by
/// [`Lifecycle::more`]. The operation stays in flight.
pub(crate) enum More {
    /// Queue the item in the block for its stream, and wake the stream's waiter (if any: a
    /// foreign waker is taken out, to be woken outside the table's borrow, and put back by
    /// the stream's next poll).
    Queue(Option<Wait>),
    /// Call the handler with the item.
    Handler,
    /// Nobody takes it (the stream was dropped): make the item and drop it, so a descriptor
    /// is closed and a buffer goes back to its pool.
    Drop,
    /// Not an operation that streams: ignored.
    Stale,
}

/// What dropping an operation's future does, decided by [`Lifecycle::detach`].
pub(crate) enum Detach {
    /// The driver owns the memory: it stays parked; ask the driver to cancel. A foreign waker
    /// kept for the old waiter is to be taken out and dropped outside the table's borrow (its
    /// drop is user code).
    Park,
    /// Nothing holds the memory: remove the slot now and drop the output made from `res`.
    Free(i32),
    /// Nothing to do (already detached, or a handler's operation: no future to drop).
    Nothing,
}

/// What a cancel request does, decided by [`Lifecycle::cancel`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cancel {
    /// In the driver: ask it for early completion.
    AskDriver,
    /// Was queued, now cancelled: deliver `ECANCELED` in the next turn.
    DeliverNextTurn,
    /// Already finished or cancelled: nothing to do.
    Nothing,
}

impl Lifecycle {
    /// The state of an operation about to be handed to the driver, with the foreign waker (if
    /// any) to keep beside the table for it (`Table::replace_waker`).
    #[inline(always)]
    pub(crate) fn in_flight(receiver: Receiver) -> (Lifecycle, Option<Waker>) {
        match receiver {
            Receiver::Future(w) => {
                let (wait, foreign) = w.split();
                (Lifecycle::Awaited(wait), foreign)
            }
            Receiver::Handler => (Lifecycle::Handler, None),
            Receiver::TimedHandler => (Lifecycle::TimedHandler { cancel_asked: false }, None),
        }
    }

    /// The state of a multishot operation about to be handed to the driver (as `in_flight`).
    pub(crate) fn streaming(receiver: Receiver) -> (Lifecycle, Option<Waker>) {
        match receiver {
            Receiver::Future(w) => {
                let (wait, foreign) = w.split();
                (Lifecycle::Streaming(wait), foreign)
            }
            // A multishot operation has no deadline.
            Receiver::Handler | Receiver::TimedHandler => (Lifecycle::StreamingHandler, None),
        }
    }

    /// The state of an operation stored past the in-flight cap: queued for admission (as
    /// `in_flight`).
    pub(crate) fn queued(receiver: Receiver) -> (Lifecycle, Option<Waker>) {
        match receiver {
            Receiver::Future(w) => {
                let (wait, foreign) = w.split();
                (Lifecycle::Queued(wait), foreign)
            }
            Receiver::Handler => (Lifecycle::QueuedHandler, None),
            Receiver::TimedHandler => (Lifecycle::QueuedTimedHandler, None),
        }
    }

    /// True while the driver (and the kernel) own the operation's memory.
    #[inline(always)]
    pub(crate) fn in_driver(&self) -> bool {
        matches!(
            self,
            Lifecycle::Awaited(_)
                | Lifecycle::Handler
                | Lifecycle::TimedHandler { .. }
                | Lifecycle::Detached
                | Lifecycle::Streaming(_)
                | Lifecycle::StreamingHandler
        )
    }

    /// True while queued for admission.
    pub(crate) fn is_queued(&self) -> bool {
        matches!(
            self,
            Lifecycle::Queued(_) | Lifecycle::QueuedHandler | Lifecycle::QueuedTimedHandler
        )
    }

    /// Admission: queued → in flight. False (and unchanged) in any other state: the queue's
    /// entry is stale (the operation was cancelled or dropped meanwhile).
    pub(crate) fn admit(&mut self) -> bool {
        if !self.is_queued() {
            return false;
        }
        *self = match std::mem::replace(self, Lifecycle::Detached) {
            Lifecycle::Queued(w) => Lifecycle::Awaited(w),
            Lifecycle::QueuedHandler => Lifecycle::Handler,
            Lifecycle::QueuedTimedHandler => Lifecycle::TimedHandler { cancel_asked: false },
            _ => unreachable!("checked queued just above"),
        };
        true
    }

    /// A completion (`res`: the raw result) arrives, from the driver or (for a cancelled one)
    /// from the loop itself.
    ///
    /// The hot states are tested first — a handler's or a detached operation's with one range
    /// check, then a future's (a `match` over all of them compiled to a jump table, a tenth of
    /// a NOP round trip); the rest are handled out of line. The run loop tries the commonest
    /// future's completion before this one, with [`Lifecycle::complete_for_task`].
    #[inline(always)]
    pub(crate) fn complete(&mut self, res: i32) -> Completed {
        // Checked in place, not replaced: writing `Done` first and reading the slot straight back
        // out to vacate it stalls the copy on store forwarding.
        if matches!(self, Lifecycle::Handler | Lifecycle::Detached) {
            return Completed::Deliver;
        }
        if let Lifecycle::Awaited(wait) = *self {
            *self = Lifecycle::Done(res);
            return Completed::Wake(wait);
        }
        self.complete_rare(res)
    }

    /// [`Lifecycle::complete`] of a future awaited by a task of this loop's executor, for a
    /// completion without flags (none to hand to the operation) — the one the run loop tries
    /// first: records `res` and returns the task to wake; `None`, unchanged, otherwise.
    #[inline(always)]
    pub(crate) fn complete_for_task(&mut self, res: i32, flags: u32) -> Option<usize> {
        if let Lifecycle::Awaited(wait) = *self {
            if flags == 0 && wait != Wait::FOREIGN {
                *self = Lifecycle::Done(res);
                return Some(wait.key());
            }
        }
        None
    }

    /// [`Lifecycle::complete`] in the other states: an operation cancelled before admission,
    /// or a completion it cannot take.
    #[cold]
    #[inline(never)]
    fn complete_rare(&mut self, res: i32) -> Completed {
        match self {
            Lifecycle::Cancelled(_) => match std::mem::replace(self, Lifecycle::Done(res)) {
                Lifecycle::Cancelled(w) => Completed::WakeCancelled(w),
                _ => unreachable!("matched a cancelled operation just above"),
            },
            Lifecycle::CancelledHandler => {
                // To a state that owns nothing, for the slot to be vacated.
                *self = Lifecycle::Detached;
                Completed::DeliverCancelled
            }
            Lifecycle::TimedHandler { cancel_asked } => {
                let res = expired_or_cancelled(res, true, *cancel_asked);
                *self = Lifecycle::Detached;
                Completed::DeliverAs(res)
            }
            // A multishot operation's last completion: as a one-shot operation's only one.
            Lifecycle::Streaming(_) => match std::mem::replace(self, Lifecycle::Done(res)) {
                Lifecycle::Streaming(w) => Completed::Wake(w),
                _ => unreachable!("matched a streaming operation just above"),
            },
            Lifecycle::StreamingHandler => Completed::Deliver,
            Lifecycle::Awaited(_) | Lifecycle::Handler | Lifecycle::Detached => {
                unreachable!("handled by `complete`")
            }
            Lifecycle::Queued(_)
            | Lifecycle::QueuedHandler
            | Lifecycle::QueuedTimedHandler
            | Lifecycle::Done(_) => Completed::Stale,
        }
    }

    /// A completion flagged `MORE` arrives: a multishot operation's item.
    pub(crate) fn more(&mut self) -> More {
        match self {
            Lifecycle::Streaming(w) if *w == Wait::NOBODY => More::Queue(None),
            // A foreign waker is taken out from beside the table, to be woken outside its
            // borrow, and put back by the stream's next poll.
            Lifecycle::Streaming(w) if *w == Wait::FOREIGN => {
                *w = Wait::NOBODY;
                More::Queue(Some(Wait::FOREIGN))
            }
            Lifecycle::Streaming(w) => More::Queue(Some(*w)),
            Lifecycle::StreamingHandler => More::Handler,
            Lifecycle::Detached => More::Drop,
            _ => More::Stale,
        }
    }

    /// The future of this operation was dropped.
    pub(crate) fn detach(&mut self) -> Detach {
        match self {
            Lifecycle::Awaited(_) | Lifecycle::Streaming(_) => {
                *self = Lifecycle::Detached;
                Detach::Park
            }
            Lifecycle::Done(res) => Detach::Free(*res),
            Lifecycle::Queued(_) | Lifecycle::Cancelled(_) => Detach::Free(-libc::ECANCELED),
            Lifecycle::Handler
            | Lifecycle::TimedHandler { .. }
            | Lifecycle::QueuedHandler
            | Lifecycle::QueuedTimedHandler
            | Lifecycle::CancelledHandler
            | Lifecycle::StreamingHandler
            | Lifecycle::Detached => Detach::Nothing,
        }
    }

    /// Someone asked for early completion.
    pub(crate) fn cancel(&mut self) -> Cancel {
        match self {
            Lifecycle::TimedHandler { cancel_asked } => {
                *cancel_asked = true;
                Cancel::AskDriver
            }
            Lifecycle::Awaited(_)
            | Lifecycle::Handler
            | Lifecycle::Detached
            | Lifecycle::Streaming(_)
            | Lifecycle::StreamingHandler => Cancel::AskDriver,
            Lifecycle::Queued(_) | Lifecycle::QueuedHandler | Lifecycle::QueuedTimedHandler => {
                *self = match std::mem::replace(self, Lifecycle::Detached) {
                    Lifecycle::Queued(w) => Lifecycle::Cancelled(w),
                    _ => Lifecycle::CancelledHandler,
                };
                Cancel::DeliverNextTurn
            }
            Lifecycle::Cancelled(_) | Lifecycle::CancelledHandler | Lifecycle::Done(_) => {
                Cancel::Nothing
            }
        }
    }

    /// A future polls its operation: the result if it completed, else the waiter to compare with
    /// the polling waker (`None`: no waiter to keep). The hot case — done — is one compare.
    #[inline(always)]
    pub(crate) fn poll(&mut self) -> Result<i32, Option<Wait>> {
        if let Lifecycle::Done(res) = *self {
            return Ok(res);
        }
        Err(self.pending_waiter())
    }

    /// [`Lifecycle::poll`] of an operation not yet done, out of line: inlined, the two checks
    /// compiled to a jump table over every state.
    #[cold]
    #[inline(never)]
    fn pending_waiter(&mut self) -> Option<Wait> {
        self.waiter_mut().copied()
    }

    /// The waiter of a future's operation not yet completed, to compare or replace.
    #[inline]
    pub(crate) fn waiter_mut(&mut self) -> Option<&mut Wait> {
        match self {
            Lifecycle::Awaited(w)
            | Lifecycle::Queued(w)
            | Lifecycle::Cancelled(w)
            | Lifecycle::Streaming(w) => Some(w),
            _ => None,
        }
    }

    /// The result the output is made from when the loop disposes of the operation at
    /// shutdown: its completion's, `ECANCELED` if the driver never had it, `None` if the driver
    /// may still write into it (it must be leaked, not freed).
    pub(crate) fn result_at_shutdown(&self) -> Option<i32> {
        match self {
            Lifecycle::Done(res) => Some(*res),
            Lifecycle::Queued(_)
            | Lifecycle::QueuedHandler
            | Lifecycle::QueuedTimedHandler
            | Lifecycle::Cancelled(_)
            | Lifecycle::CancelledHandler => Some(-libc::ECANCELED),
            Lifecycle::Awaited(_)
            | Lifecycle::Handler
            | Lifecycle::TimedHandler { .. }
            | Lifecycle::Detached
            | Lifecycle::Streaming(_)
            | Lifecycle::StreamingHandler => None,
        }
    }
}

/// The result an operation with a deadline reports: the driver completes it with `ECANCELED`
/// both when its deadline passes and when it is cancelled, so an `ECANCELED` of a `timed`
/// operation nobody asked to cancel is its deadline's: `ETIMEDOUT`. Any other result is kept.
/// One rule for both front ends (a handler's slot, a future's `Op`).
#[inline]
pub(crate) fn expired_or_cancelled(res: i32, timed: bool, cancel_asked: bool) -> i32 {
    if res == -libc::ECANCELED && timed && !cancel_asked {
        -libc::ETIMEDOUT
    } else {
        res
    }
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

impl Waiter {
    /// What a slot records of this waiter, and the foreign waker to keep beside the table.
    #[inline(always)]
    pub(crate) fn split(self) -> (Wait, Option<Waker>) {
        match self {
            Waiter::Task(key) => (Wait::task(key), None),
            Waiter::Waker(w) => (Wait::FOREIGN, Some(w)),
        }
    }

    /// The waiter a slot recorded as `wait`, with the foreign waker kept beside the table for
    /// it (taken out). `None` for nobody, or a foreign waker already taken (a stream's, woken
    /// and not yet put back).
    #[inline(always)]
    pub(crate) fn join(wait: Wait, foreign: Option<Waker>) -> Option<Waiter> {
        if wait == Wait::FOREIGN {
            foreign.map(Waiter::Waker)
        } else if wait == Wait::NOBODY {
            None
        } else {
            Some(Waiter::Task(wait.key()))
        }
    }
}

/// Whom a future's operation wakes, as its slot records it: four bytes, so that the state is
/// eight and a slot half a cache line (a 64-byte slot held a whole `Waker`; with 256 NOPs in
/// flight the table, the rings and the futures missed L1 3-4 times per operation). A task of
/// this loop's executor by key (see [`Waiter::Task`]), nobody ([`Wait::NOBODY`]: a stream
/// whose foreign waker was taken to be woken), or [`Wait::FOREIGN`]: any other waker, kept
/// beside the table under the slot's key while the slot records this (`Table::replace_waker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wait(u32);

impl Wait {
    /// The waker is kept beside the table.
    pub(crate) const FOREIGN: Wait = Wait(MAX_TASKS as u32);
    /// Nobody to wake for now.
    pub(crate) const NOBODY: Wait = Wait(NO_TASK as u32);

    /// Task `key` (a key below [`MAX_TASKS`], or the `block_on` future's, or `NO_TASK`).
    #[inline(always)]
    pub(crate) fn task(key: usize) -> Wait {
        debug_assert!(key < MAX_TASKS || key == NO_TASK || key == MAIN, "task key {key}");
        // Truncation cannot happen: every key is at most `MAIN`, which fits 32 bits.
        Wait(key as u32)
    }

    /// The task's key (not for [`Wait::FOREIGN`]).
    #[inline(always)]
    pub(crate) fn key(self) -> usize {
        self.0 as usize
    }
}

/// One operation owned by the run loop: half a cache line, so that an operation's bookkeeping
/// never straddles two and 256 operations in flight take 8 KiB.
#[repr(align(32))]
pub(crate) struct Slot {
    /// The operation, in a block of the loop's `OpMemory` (thin: [`Slot::erased`] gives the
    /// pointer the driver takes): it stays valid while the table moves slots around. Its value
    /// is moved out (or dropped) exactly once, when the slot is removed after completion (or
    /// before submission).
    pub(crate) op: NonNull<u8>,
    pub(crate) generation: u32,
    /// The operation's type as the loop sees it: its name and how to finish it.
    pub(crate) kind: &'static OpKind,
    /// When it was handed to the driver: the loop's millisecond clock (see `Core::now_ms`).
    pub(crate) started: u32,
    pub(crate) state: Lifecycle,
}

impl Slot {
    pub(crate) fn token(&self, key: usize) -> Token {
        Token::new(key, self.generation)
    }

    /// The operation as the driver and the flags hooks see it.
    #[inline]
    pub(crate) fn erased(&self) -> NonNull<dyn ErasedOp> {
        (self.kind.erased)(self.op)
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
    /// The block's pointer made wide again (the slot keeps it thin).
    pub(crate) erased: fn(NonNull<u8>) -> NonNull<dyn ErasedOp>,
    /// A multishot operation's item maker, called per completion flagged `MORE`.
    pub(crate) item: Option<ItemFn>,
}

/// Makes the item of one completion flagged `MORE` (raw result and flags) in a multishot
/// operation's block, and delivers it (queued for its stream, or given to its handler) — or,
/// without `deliver`, drops it. True when the stream's queue has just filled up: the loop then
/// cancels the operation (a pause; the stream resubmits once its items are taken).
///
/// # Safety
/// `block` must hold a live value of the carrier type whose [`OpKind`] holds this function, and
/// no reference to the block may be live; the driver may still hold it (it touches only the
/// operation, never its queue or handler, and not during this call).
pub(crate) type ItemFn = unsafe fn(NonNull<u8>, i32, u32, bool) -> bool;

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

/// [`OpKind::erased`] of `T`: the block's pointer with `T`'s vtable (only a pointer is made).
fn erased<T: ErasedOp + 'static>(block: NonNull<u8>) -> NonNull<dyn ErasedOp> {
    block.cast::<T>()
}

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
    fn set_cqe_flags(&mut self, res: i32, flags: u32) {
        self.op_mut().set_cqe_flags(res, flags)
    }
    fn first_of_two(&mut self, res: i32, flags: u32) {
        self.op_mut().first_of_two(res, flags)
    }
    #[inline]
    fn multishot_flags(&mut self, res: i32) -> Option<u32> {
        if !C::Op::MULTISHOT {
            return None;
        }
        let op = self.op_mut();
        let flags = op.take_cqe_flags();
        Some(if op.goes_on_after(res) { flags | crate::driver::MORE } else { flags })
    }
    fn name(&self) -> &'static str {
        <C::Op as OpCode>::NAME
    }
    fn transfer_len(&self) -> Option<usize> {
        self.op().transfer_len()
    }
    fn limit_transfer(&mut self, max: usize) {
        self.op_mut().limit_transfer(max)
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
    const KIND: &'static OpKind =
        &OpKind { name: O::NAME, finish: finish_plain::<O>, erased: erased::<Self>, item: None };
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
    const KIND: &'static OpKind = &OpKind {
        name: O::NAME,
        finish: finish_with_handler::<O, H>,
        erased: erased::<Self>,
        item: None,
    };
}

impl<O: OpCode, H: FnOnce(O::Output) + 'static> ErasedOp for WithHandler<O, H> {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A multishot operation streamed to a future: its items wait in the block until the stream
/// takes them.
pub(crate) struct MultiPlain<O: Multishot> {
    pub(crate) op: O,
    pub(crate) queue: VecDeque<io::Result<O::Item>>,
    /// At this many queued items the operation is paused (cancelled), once.
    pub(crate) limit: usize,
    pub(crate) paused: bool,
}

impl<O: Multishot> MultiPlain<O> {
    /// The item of the last completion (result `res`), from the flags stored with it.
    pub(crate) fn last_item(&mut self, res: i32) -> Option<io::Result<O::Item>> {
        let flags = self.op.take_cqe_flags();
        self.op.item(res, flags)
    }
}

impl<O: Multishot> Carrier for MultiPlain<O> {
    type Op = O;
    fn op(&self) -> &O {
        &self.op
    }
    fn op_mut(&mut self) -> &mut O {
        &mut self.op
    }
}

impl<O: Multishot> Stored for MultiPlain<O> {
    const KIND: &'static OpKind = &OpKind {
        name: O::NAME,
        finish: finish_multi_plain::<O>,
        erased: erased::<Self>,
        item: Some(item_multi_plain::<O>),
    };
}

impl<O: Multishot> ErasedOp for MultiPlain<O> {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The [`ItemFn`] of [`MultiPlain`].
unsafe fn item_multi_plain<O: Multishot>(
    block: NonNull<u8>,
    res: i32,
    flags: u32,
    deliver: bool,
) -> bool {
    // SAFETY: per the `ItemFn` contract the block holds a live `MultiPlain<O>` nobody else
    // references now.
    let carrier = unsafe { &mut *block.cast::<MultiPlain<O>>().as_ptr() };
    let item = carrier.op.item(res, flags);
    if let (Some(item), true) = (item, deliver) {
        carrier.queue.push_back(item);
        if carrier.queue.len() >= carrier.limit && !carrier.paused {
            carrier.paused = true;
            return true;
        }
    }
    false
}

/// The [`Finisher`] of [`MultiPlain`] when its stream is gone: every item left is dropped.
unsafe fn finish_multi_plain<O: Multishot>(
    block: NonNull<u8>,
    res: i32,
    memory: &OpMemory,
    _run: bool,
) {
    // SAFETY: forwarded from the `Finisher` contract.
    let mut carrier = unsafe { memory.take::<MultiPlain<O>>(block) };
    drop(carrier.last_item(res));
    drop(carrier);
}

/// A multishot operation with the handler called per completion, in one allocation.
pub(crate) struct MultiWithHandler<O, H> {
    pub(crate) op: O,
    pub(crate) handler: H,
}

impl<O: Multishot, H: FnMut(Multi<O>) + 'static> Carrier for MultiWithHandler<O, H> {
    type Op = O;
    fn op(&self) -> &O {
        &self.op
    }
    fn op_mut(&mut self) -> &mut O {
        &mut self.op
    }
}

impl<O: Multishot, H: FnMut(Multi<O>) + 'static> Stored for MultiWithHandler<O, H> {
    const KIND: &'static OpKind = &OpKind {
        name: O::NAME,
        finish: finish_multi_with_handler::<O, H>,
        erased: erased::<Self>,
        item: Some(item_multi_with_handler::<O, H>),
    };
}

impl<O: Multishot, H: FnMut(Multi<O>) + 'static> ErasedOp for MultiWithHandler<O, H> {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The [`ItemFn`] of [`MultiWithHandler`]: the handler runs with the item.
unsafe fn item_multi_with_handler<O: Multishot, H: FnMut(Multi<O>) + 'static>(
    block: NonNull<u8>,
    res: i32,
    flags: u32,
    deliver: bool,
) -> bool {
    let carrier = block.cast::<MultiWithHandler<O, H>>().as_ptr();
    // SAFETY: per the `ItemFn` contract the block holds a live carrier nobody else references
    // now; the handler cannot reach it (it is not in the handler's captures), and the driver
    // does not touch the operation during this call.
    let item = unsafe { (*carrier).op.item(res, flags) };
    if let (Some(item), true) = (item, deliver) {
        // SAFETY: as above; the operation's borrow ended with the item's making.
        unsafe { ((*carrier).handler)(Multi::Item(item)) };
    }
    false
}

/// The [`Finisher`] of [`MultiWithHandler`]: the last item, then the end, go to the handler.
unsafe fn finish_multi_with_handler<O: Multishot, H: FnMut(Multi<O>) + 'static>(
    block: NonNull<u8>,
    res: i32,
    memory: &OpMemory,
    run_handler: bool,
) {
    // SAFETY: forwarded from the `Finisher` contract.
    let MultiWithHandler { mut op, mut handler } =
        unsafe { memory.take::<MultiWithHandler<O, H>>(block) };
    let flags = op.take_cqe_flags();
    let last = op.item(res, flags);
    if !run_handler {
        return;
    }
    if let Some(item) = last {
        handler(Multi::Item(item));
    }
    let restartable = op.restart(res);
    let result = convert(O::NAME, res);
    handler(Multi::End { op, restartable, result });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future() -> Receiver {
        Receiver::Future(Waiter::Task(7))
    }

    fn name(s: &Lifecycle) -> &'static str {
        match s {
            Lifecycle::Queued(_) => "queued future",
            Lifecycle::QueuedHandler => "queued handler",
            Lifecycle::QueuedTimedHandler => "queued handler with a deadline",
            Lifecycle::TimedHandler { .. } => "in flight handler with a deadline",
            Lifecycle::Awaited(_) => "in flight future",
            Lifecycle::Handler => "in flight handler",
            Lifecycle::Cancelled(_) => "cancelled future",
            Lifecycle::CancelledHandler => "cancelled handler",
            Lifecycle::Done(_) => "done",
            Lifecycle::Detached => "detached",
            Lifecycle::Streaming(_) => "streaming future",
            Lifecycle::StreamingHandler => "streaming handler",
        }
    }

    #[test]
    fn a_future_operation_goes_queued_in_flight_done() {
        let mut s = Lifecycle::queued(future()).0;
        assert!(s.is_queued() && !s.in_driver());
        assert!(matches!(s.complete(0), Completed::Stale), "the driver never had it");
        assert!(s.admit());
        assert!(!s.admit(), "admitted once");
        assert_eq!(name(&s), "in flight future");
        assert!(s.in_driver());
        assert!(matches!(s.poll(), Err(Some(Wait(7)))));
        assert!(matches!(s.complete(42), Completed::Wake(Wait(7))));
        assert!(matches!(s, Lifecycle::Done(42)));
        assert!(matches!(s.poll(), Ok(42)));
        assert!(matches!(s.complete(1), Completed::Stale), "one completion per operation");
        assert_eq!(s.cancel(), Cancel::Nothing);
        assert!(matches!(s.detach(), Detach::Free(42)), "a dropped future frees the result");
    }

    #[test]
    fn a_task_is_woken_by_key_only_for_a_completion_without_flags() {
        let mut s = Lifecycle::in_flight(future()).0;
        assert_eq!(s.complete_for_task(3, 1), None, "flags go to the operation first");
        assert_eq!(name(&s), "in flight future", "unchanged");
        assert_eq!(s.complete_for_task(3, 0), Some(7));
        assert!(matches!(s, Lifecycle::Done(3)));
        assert_eq!(s.complete_for_task(4, 0), None, "one completion per operation");
        for mut s in [
            Lifecycle::in_flight(Receiver::Handler).0,
            Lifecycle::Detached,
            Lifecycle::queued(future()).0,
            Lifecycle::streaming(future()).0,
        ] {
            assert_eq!(s.complete_for_task(0, 0), None, "{}", name(&s));
        }
    }

    #[test]
    fn a_dropped_future_parks_the_memory_until_completion() {
        let mut s = Lifecycle::in_flight(future()).0;
        assert!(matches!(s.detach(), Detach::Park));
        assert_eq!(name(&s), "detached");
        assert!(s.in_driver(), "still the kernel's");
        assert_eq!(s.result_at_shutdown(), None, "leaked at shutdown, never freed");
        assert!(matches!(s.detach(), Detach::Nothing));
        assert_eq!(s.cancel(), Cancel::AskDriver);
        assert!(matches!(s.poll(), Err(None)));
        assert!(matches!(s.complete(-libc::ECANCELED), Completed::Deliver));
    }

    #[test]
    fn a_streaming_operation_takes_many_items_then_one_end() {
        let mut s = Lifecycle::streaming(future()).0;
        assert!(s.in_driver());
        assert_eq!(s.result_at_shutdown(), None, "the kernel's until its last completion");
        for _ in 0..3 {
            assert!(matches!(s.more(), More::Queue(Some(Wait(7)))));
        }
        assert_eq!(name(&s), "streaming future", "an item leaves it streaming");
        assert_eq!(s.cancel(), Cancel::AskDriver);
        assert!(matches!(s.complete(0), Completed::Wake(Wait(7))));
        assert!(matches!(s, Lifecycle::Done(0)));
        assert!(matches!(s.more(), More::Stale), "nothing after the last completion");

        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let waker = Waker::from(std::sync::Arc::new(Noop));
        let (mut s, foreign) = Lifecycle::streaming(Receiver::Future(Waiter::Waker(waker)));
        assert!(foreign.is_some(), "a foreign waker is kept beside the table");
        assert!(matches!(s.more(), More::Queue(Some(Wait::FOREIGN))), "woken outside");
        assert!(matches!(s.more(), More::Queue(None)), "until the stream polls again");
        assert_eq!(s.waiter_mut().copied(), Some(Wait::NOBODY));

        let mut s = Lifecycle::streaming(future()).0;
        assert!(matches!(s.detach(), Detach::Park));
        assert!(matches!(s.more(), More::Drop), "a dropped stream's items are dropped");
        assert!(matches!(s.complete(-libc::ECANCELED), Completed::Deliver));

        let mut s = Lifecycle::streaming(Receiver::Handler).0;
        assert!(matches!(s.more(), More::Handler));
        assert!(matches!(s.detach(), Detach::Nothing));
        assert!(s.waiter_mut().is_none());
        assert!(matches!(s.complete(0), Completed::Deliver));
    }

    #[test]
    fn a_handler_with_a_deadline_tells_expiry_from_cancel() {
        let delivered = |s: &mut Lifecycle, res| match s.complete(res) {
            Completed::DeliverAs(r) => r,
            _ => panic!("a timed handler's completion is delivered with its own result"),
        };
        // Expired: the driver's ECANCELED, nobody asked.
        let mut s = Lifecycle::in_flight(Receiver::TimedHandler).0;
        assert!(s.in_driver());
        assert_eq!(s.result_at_shutdown(), None);
        assert_eq!(delivered(&mut s, -libc::ECANCELED), -libc::ETIMEDOUT);
        assert_eq!(name(&s), "detached", "owns nothing, to be vacated");
        // Cancelled explicitly: ECANCELED stays.
        let mut s = Lifecycle::in_flight(Receiver::TimedHandler).0;
        assert_eq!(s.cancel(), Cancel::AskDriver);
        assert_eq!(s.cancel(), Cancel::AskDriver, "asking twice is harmless");
        assert_eq!(delivered(&mut s, -libc::ECANCELED), -libc::ECANCELED);
        // Finished in time, or failed otherwise: the real result.
        let mut s = Lifecycle::in_flight(Receiver::TimedHandler).0;
        assert_eq!(delivered(&mut s, 7), 7);
        let mut s = Lifecycle::in_flight(Receiver::TimedHandler).0;
        assert_eq!(delivered(&mut s, -libc::ECONNRESET), -libc::ECONNRESET);
        // Queued, it keeps its deadline through admission; cancelled there, it never had one.
        let mut s = Lifecycle::queued(Receiver::TimedHandler).0;
        assert!(s.is_queued());
        assert!(matches!(s.detach(), Detach::Nothing));
        assert!(s.admit());
        assert_eq!(name(&s), "in flight handler with a deadline");
        assert_eq!(delivered(&mut s, -libc::ECANCELED), -libc::ETIMEDOUT);
        let mut s = Lifecycle::queued(Receiver::TimedHandler).0;
        assert_eq!(s.cancel(), Cancel::DeliverNextTurn);
        assert!(matches!(s.complete(-libc::ECANCELED), Completed::DeliverCancelled));
    }

    #[test]
    fn the_states_fit_the_slot() {
        assert_eq!(std::mem::size_of::<Lifecycle>(), 8);
        assert_eq!(std::mem::size_of::<Slot>(), 32);
    }

    #[test]
    fn cancel_before_admission_is_delivered_by_the_loop() {
        for (receiver, delivered) in [(future(), "wake"), (Receiver::Handler, "deliver")] {
            let mut s = Lifecycle::queued(receiver).0;
            assert_eq!(s.cancel(), Cancel::DeliverNextTurn);
            assert!(name(&s).starts_with("cancelled"));
            assert!(!s.admit(), "a cancelled operation is never admitted");
            assert!(!s.in_driver());
            assert_eq!(s.result_at_shutdown(), Some(-libc::ECANCELED));
            assert_eq!(s.cancel(), Cancel::Nothing);
            let got = match s.complete(-libc::ECANCELED) {
                Completed::WakeCancelled(_) => "wake",
                Completed::DeliverCancelled => "deliver",
                _ => "from the driver, or stale",
            };
            assert_eq!(got, delivered);
        }
    }

    #[test]
    fn a_queued_future_dropped_is_freed_at_once_and_handlers_are_never_detached() {
        let mut s = Lifecycle::queued(future()).0;
        assert!(matches!(s.detach(), Detach::Free(r) if r == -libc::ECANCELED));
        for mut s in
            [Lifecycle::queued(Receiver::Handler).0, Lifecycle::in_flight(Receiver::Handler).0]
        {
            assert!(matches!(s.detach(), Detach::Nothing));
            assert!(s.waiter_mut().is_none());
        }
        let mut s = Lifecycle::in_flight(Receiver::Handler).0;
        assert_eq!(s.cancel(), Cancel::AskDriver);
        assert!(matches!(s.complete(5), Completed::Deliver));
    }

    #[test]
    fn the_waiter_is_reachable_until_completion() {
        for mut s in [
            Lifecycle::queued(future()).0,
            Lifecycle::in_flight(future()).0,
            Lifecycle::Cancelled(Wait(1)),
        ] {
            assert!(s.waiter_mut().is_some(), "{}", name(&s));
        }
        assert!(Lifecycle::Done(0).waiter_mut().is_none());
        assert!(Lifecycle::Detached.waiter_mut().is_none());
    }
}
