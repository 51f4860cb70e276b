//! The asynchronous operation processor: what every driver must provide.
//!
//! A driver takes operations, gets them done, and reports each one exactly once as a
//! `Completion` carrying the operation's token and the raw result (a non-negative value, or a
//! negated `errno`) — the shape of an io_uring CQE, which is also the shape of an IOCP completion
//! packet. The run loop above it never knows which driver it talks to.
//!
//! The contract, for every driver:
//! - `Driver::push` never drops an operation: when a queue is full it flushes and retries.
//! - Every pushed operation yields exactly one completion, whether it succeeded, failed or was
//!   cancelled; transient conditions (`EINTR`, `EAGAIN` on an operation that should wait, a full
//!   queue, `EBUSY`) are retried inside the driver and never reported.
//! - The operation's memory belongs to the driver (and the kernel) from `push` until its
//!   completion is returned; the run loop neither moves nor frees it in between.
//! - `Driver::cancel` asks for early completion with `-ECANCELED`; an operation that finished
//!   first reports its real result instead.
//! - `Driver::wait` submits everything queued, blocks until at least one completion or a
//!   notification arrives (or the timeout passes), and returns the completions in batches.
//! - [`Notifier::notify`] wakes a blocked `wait` from any thread.

use crate::op::{BlockingCall, Emulation};
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod epoll;
mod eventfd;
mod select;
pub(crate) mod uring;

pub(crate) use select::AnyDriver;
pub use select::{DriverChoice, DriverKind};
pub use uring::{probe_kernel, KernelProbe, OPTIONAL_OPCODES, REQUIRED_OPCODES};

/// Identifies one operation between the run loop and the driver: the slab key and its
/// generation, so a stale cancel can never hit a reused slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Token(pub(crate) u64);

impl Token {
    /// Completions with this token belong to the driver itself (linked timeouts, cancels,
    /// wake-ups) and are never reported.
    pub(crate) const INTERNAL: Token = Token(u64::MAX);

    /// Tokens from this value up (below the driver's own) are offered to the run loop as their
    /// completions are reaped, where a driver can (see `AnyDriver::wait_settling`): the loop
    /// sets this bit, the top of the generation, on the operations it may settle there.
    pub(crate) const OFFERED: u64 = 1 << 63;

    pub(crate) fn new(key: usize, generation: u32) -> Token {
        Token(((generation as u64) << 32) | key as u64)
    }
    pub(crate) fn key(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// One finished operation: its token and the raw result (`>= 0`, or `-errno`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion {
    pub(crate) token: Token,
    pub(crate) result: i32,
    /// The CQE's flags (the buffer id of a buffer-select receive, `IORING_CQE_F_MORE`, ...);
    /// 0 from drivers that have none.
    pub(crate) flags: u32,
}

/// `IORING_CQE_F_MORE`: the operation goes on after this completion (a multishot operation's
/// item); the epoll emulation sets it the same way.
pub(crate) const MORE: u32 = 1 << 1;

/// An operation as a driver sees it: how to express it for each backend.
pub(crate) trait RawOp {
    /// The io_uring submission entry.
    fn uring_entry(&mut self) -> io_uring::squeue::Entry;
    /// Writes the submission entry into the ring, tagged with `user_data` and `flags`.
    ///
    /// Each operation type gets its own copy of this method, so the entry is built right where
    /// it is copied into the ring: returning the 64-byte entry through the type-erased
    /// `uring_entry` call and copying it afterwards stalls on store forwarding, which cost about
    /// a tenth of a NOP round trip.
    ///
    /// # Safety
    /// Every pointer in the entry must stay valid until its completion is reaped (the
    /// [`Driver::push`] contract).
    unsafe fn push_uring(
        &mut self,
        user_data: u64,
        flags: io_uring::squeue::Flags,
        sq: &mut io_uring::SubmissionQueue<'_>,
    ) -> Result<(), io_uring::squeue::PushError> {
        let entry = self.uring_entry().user_data(user_data).flags(flags);
        // SAFETY: per this method's contract, the entry's pointers outlive its completion.
        unsafe { sq.push(&entry) }
    }
    /// How the epoll emulation waits before it calls `perform`.
    fn emulation(&self) -> Emulation;
    /// The system call, on the run loop's thread. With `nowait` it must not block
    /// (`WouldBlock` instead).
    fn perform(&mut self, nowait: bool) -> io::Result<u32>;
    /// The call a blocking-pool thread runs in the kernel's place: raw values captured now, on
    /// the loop's thread, and `Send` by construction. `None`: it cannot run there.
    fn blocking(&mut self) -> Option<BlockingCall>;
    /// Receives the completion's flags and result when the loop takes the completion, before
    /// the result is delivered (a buffer-select receive learns its buffer id here). Most
    /// operations ignore them.
    fn set_cqe_flags(&mut self, _res: i32, _flags: u32) {}
    /// The first of a one-shot operation's two completions (see `Hooks::first_of_two`).
    fn first_of_two(&mut self, _res: i32, _flags: u32) {}
    /// The epoll emulation's completion flags for a result `perform` just returned: `None` for
    /// a one-shot operation; for a multishot one what the kernel would have posted (a buffer
    /// id), with [`MORE`] if the operation goes on after it.
    fn multishot_flags(&mut self, _res: i32) -> Option<u32> {
        None
    }
    /// The operation's name (`"recv"`, `"accept"`, …): fault injection picks faults by it.
    fn name(&self) -> &'static str {
        "op"
    }
    /// The bytes a read, receive, write or send asks to move now (`None`: not a transfer).
    fn transfer_len(&self) -> Option<usize> {
        None
    }
    /// Asks for at most `max >= 1` bytes, before submission (an injected short transfer).
    fn limit_transfer(&mut self, _max: usize) {}
}

/// A pointer to an operation owned by the run loop, valid from `push` until its completion has
/// been returned by `wait`.
#[derive(Clone, Copy)]
pub(crate) struct OpPtr(pub(crate) NonNull<dyn RawOp>);

/// Wakes a driver blocked in `Driver::wait`; cheap to clone, usable from any thread.
pub trait Notifier: Send + Sync {
    /// Interrupts the wait (or makes the next one return at once).
    fn notify(&self);
}

/// What every driver provides (see the module docs for the contract).
pub(crate) trait Driver {
    /// Queues an operation. `deadline` completes it with `-ECANCELED` if it has not finished by
    /// then (a linked timeout on io_uring).
    ///
    /// # Safety
    /// `op` must stay valid, unmoved and otherwise untouched until `wait` returns its completion.
    unsafe fn push(&mut self, token: Token, op: OpPtr, deadline: Option<Duration>);

    /// Requests cancellation of the operation with `token`, if it is still in flight.
    fn cancel(&mut self, token: Token);

    /// Submits what is queued; with `block`, waits until at least one completion or a
    /// notification arrives or `timeout` passes. Appends completions to `out`.
    fn wait(
        &mut self,
        block: bool,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
    ) -> io::Result<()>;

    /// A handle that wakes this driver from another thread.
    fn notifier(&self) -> Arc<dyn Notifier>;

    /// Which driver this is.
    fn kind(&self) -> DriverKind;
}
