//! Asynchronous operations: what the application asks the kernel to do.
//!
//! Each operation is a plain struct that owns everything the kernel may touch while it runs — the
//! buffer, the `iovec` array, the socket address, the `statx` record, the timespec — and is kept
//! by the run loop at a fixed address for as long as it is in flight. When the kernel is done,
//! the operation turns the raw result into the typed output and hands the owned resources back.
//!
//! # The contract, in the types
//! - [`OpCode`] is what [`submit`](crate::submit) and [`Handle::start`](crate::Handle::start)
//!   take. It is sealed: only this crate's operations implement it, so safe code can only ask
//!   the kernel for what those operations describe. Its driver half (the io_uring entry, the
//!   epoll emulation, the system call) is crate-private, so no io-uring type is part of the safe
//!   API.
//! - A new operation is written by implementing the `unsafe` trait [`CustomOp`] and submitting
//!   it wrapped in [`Custom`]: the `unsafe impl` is where its author promises that every pointer
//!   the kernel gets points into memory the operation owns and keeps in place until completion.
//! - What runs on the epoll driver's blocking pool (regular files, `openat`, `fsync`, ...) is a
//!   [`BlockingCall`]: a `Send` closure made on the run loop's thread at submission, holding the
//!   raw fd number and pointers, never the operation or its `IoFd`/buffer types. The pool thread
//!   therefore never runs the operation's (or the user's) trait code.
//!
//! Each driver's part of an operation sits beside it, in its `op/*.rs` file, in the crate-private
//! crate-private `Hooks` impl. One file per family of operations.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

mod custom;
mod fd;
mod multishot;
mod net;
mod nop;
mod path;
mod poll;
pub(crate) mod pooled;
mod raw;
mod rw;
pub(crate) mod send_bundle;
mod send_zc;
mod splice;
mod sync_range;
mod timeout;
mod udp;

pub use custom::{BlockingCall, Custom, CustomOp};
pub use fd::{Close, Fsync, OpenAt, Statx};
pub use multishot::{AcceptMulti, RecvMulti};
pub use net::{Accept, Connect, Recv, Send, Shutdown};
pub use nop::Nop;
pub use path::{MkdirAt, RenameAt, UnlinkAt};
pub use poll::PollReady;
pub use pooled::RecvPooled;
pub use rw::{Read, Readv, Write, Writev};
pub use send_zc::SendZc;
pub use splice::Splice;
pub use sync_range::SyncFileRange;
pub use timeout::Timeout;
pub use udp::{RecvFrom, SendTo};

/// The io-uring crate whose entries a [`CustomOp`] returns: the version this crate submits
/// with. Part of the unsafe extension trait only; the safe API names none of its types.
pub use io_uring as uring;

/// The result of an operation that owned a buffer: the outcome, and the buffer handed back.
///
/// A tuple so that `let (res, buf) = op.await;` reads naturally; the `io::Result` inside makes an
/// ignored result a `unused_must_use` warning.
pub type BufResult<T, B> = (io::Result<T>, B);

/// How the epoll emulation should wait before it performs an operation itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Emulation {
    /// Perform at once; it never blocks (a no-op, close, shutdown).
    Now,
    /// Try at once without blocking; if the fd is not ready, wait until it is readable and retry.
    Readable(RawFd),
    /// Wait until the fd is readable, then try (and wait again if it was not): for a read that
    /// would most likely find nothing now, such as a receive of the answer to what was just sent
    /// ([`Recv::poll_first`](crate::op::Recv::poll_first)), whose first try would cost a
    /// system call for `EAGAIN`.
    ReadableFirstWait(RawFd),
    /// Try at once without blocking; if the fd is not ready, wait until it is writable and retry.
    Writable(RawFd),
    /// A call that may block and cannot be waited on with epoll (regular files, `openat`,
    /// `fsync`, `statx`): run its [`BlockingCall`] on the blocking pool.
    Blocking,
    /// Complete with `Ok(0)` once this much time has passed.
    Timer(Duration),
}

/// An operation the proactor can run on any driver: one of this crate's operations, or a
/// [`CustomOp`] wrapped in [`Custom`].
///
/// Sealed: the driver half of an operation is where the kernel is told which memory to use, so
/// it is not implementable (or callable) from safe code outside this crate.
pub trait OpCode: sealed::Hooks + 'static {
    /// What the caller receives: usually a [`BufResult`].
    type Output;

    /// Short name of the operation, used by in-flight tracking and error messages.
    const NAME: &'static str;
}

/// An operation that completes many times: one submission, a completion per item (each flagged
/// `IORING_CQE_F_MORE` on io_uring), until a last one ends it — an accept that yields every
/// connection, a receive that yields every chunk into buffers of a [`BufPool`](crate::buf::BufPool).
///
/// Run with [`submit_multi`](crate::submit_multi) (a `Stream`) or
/// [`Handle::start_multi`](crate::Handle::start_multi) (a handler called per completion), never
/// with `submit`/`start`. Sealed, like [`OpCode`]: the epoll driver emulates each of them with
/// re-armed readiness and yields the same items.
pub trait Multishot: OpCode + sealed::MultiHooks {
    /// What each completion yields.
    type Item;
}

pub(crate) mod sealed {
    //! The driver half of [`OpCode`](super::OpCode), reachable only inside the crate.
    use super::{BlockingCall, Emulation, OpCode};
    use std::io;

    /// What each driver needs of an operation. The run loop keeps the value at a fixed address
    /// from the first of these calls until its completion has been processed.
    pub trait Hooks {
        /// True for a [`Multishot`](super::Multishot) operation: `submit` and `start` refuse it
        /// (a constant, so the check costs nothing).
        const MULTISHOT: bool = false;

        /// The io_uring submission entry. Pointers in it refer to memory owned by `self`.
        fn uring_entry(&mut self) -> io_uring::squeue::Entry;

        /// How the epoll driver waits before it calls [`Hooks::perform`].
        fn emulation(&self) -> Emulation;

        /// The system call, on the run loop's thread (the epoll emulation). With `nowait` it must
        /// not block (`WouldBlock` instead). Returns the value an io_uring CQE would carry.
        fn perform(&mut self, nowait: bool) -> io::Result<u32>;

        /// The blocking form of the call, to run on a blocking-pool thread: made now, on the
        /// loop's thread, from raw values only. `None`: the operation cannot go there (the
        /// driver completes it with `EOPNOTSUPP`).
        fn blocking(&mut self) -> Option<BlockingCall>;

        /// Receives the io_uring completion's flags (`cqe.flags()`) when they are not zero,
        /// with its result, when the loop takes the completion — in the order the kernel
        /// posted them, before [`Hooks::complete`] (which a future's task may run later).
        fn set_cqe_flags(&mut self, _res: i32, _flags: u32) {}

        /// A one-shot operation that completes twice (a zero-copy send: its result, then the
        /// kernel's notification) receives the first completion here; it completes with the
        /// second.
        fn first_of_two(&mut self, _res: i32, _flags: u32) {}

        /// Multishot only: whether a completion with result `res` keeps the operation going
        /// (the epoll emulation flags it `MORE` and performs again; io_uring decides itself).
        fn goes_on_after(&self, _res: i32) -> bool {
            false
        }

        /// The epoll emulation's side of the completion flags: what the kernel would have
        /// posted with the last [`Hooks::perform`]'s result (a buffer id), taken once.
        fn take_cqe_flags(&mut self) -> u32 {
            0
        }
        /// The bytes a read, receive, write or send asks to move now; `None` for any other
        /// operation. Fault injection shortens transfers (see [`Hooks::limit_transfer`]).
        fn transfer_len(&self) -> Option<usize> {
            None
        }

        /// Asks for at most `max` bytes (`max >= 1`), before the operation is submitted: a short
        /// transfer, as the kernel may make one. Only operations with a `transfer_len` heed it.
        fn limit_transfer(&mut self, _max: usize) {}

        /// Turns the driver's raw result into the output, handing back every owned resource.
        fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output
        where
            Self: OpCode + Sized;
    }

    /// The driver half of [`Multishot`](super::Multishot).
    pub trait MultiHooks: Hooks {
        /// The value of one completion (`res`: the raw result, `flags`: the CQE's), or `None`
        /// for a completion that carries none (end of stream, a dry buffer ring, a cancel).
        /// Called for every completion, the last included, on the loop's thread.
        fn item(
            &mut self,
            res: i32,
            flags: u32,
        ) -> Option<io::Result<<Self as super::Multishot>::Item>>
        where
            Self: super::Multishot + Sized;

        /// After the last completion (result `last`): whether submitting the operation again
        /// continues the same stream (the kernel ended it for its own reasons, such as a full
        /// completion queue), rather than the stream being over.
        fn restart(&self, last: i32) -> bool;

        /// Why this proactor cannot run the operation (`uring`: the driver is io_uring), if it
        /// cannot: the front ends then end the stream with this error, never submitting it.
        fn refuse(&self, _uring: bool) -> Option<io::Error> {
            None
        }
    }
}

/// Adds the operation's name to an error, so a failure says which operation failed.
pub(crate) fn name_error(name: &'static str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), OpError { op: name, source: err })
}

/// An error from an asynchronous operation: the OS error and the operation it came from.
#[derive(Debug)]
pub struct OpError {
    op: &'static str,
    source: io::Error,
}

impl OpError {
    /// Name of the operation that failed (`"recv"`, `"openat"`, …).
    pub fn op(&self) -> &'static str {
        self.op
    }
    /// The OS error.
    pub fn os_error(&self) -> &io::Error {
        &self.source
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.op, self.source)
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The raw OS error number of an error produced by an operation, if any.
///
/// Operation errors wrap the OS error to name the operation, which hides it from
/// `io::Error::raw_os_error`; this looks through the wrapper.
pub fn raw_os_error(err: &io::Error) -> Option<i32> {
    if let Some(code) = err.raw_os_error() {
        return Some(code);
    }
    // Walk the chain of wrapped errors (an `OpError`, or context such as a path or address
    // added by the I/O types): the first OS error found is the one.
    let mut next: Option<&(dyn std::error::Error + 'static)> = err.get_ref().map(|e| e as _);
    while let Some(e) = next {
        next = match e.downcast_ref::<io::Error>() {
            Some(io) => match io.raw_os_error() {
                Some(code) => return Some(code),
                None => io.get_ref().map(|e| e as _),
            },
            None => e.source(),
        };
    }
    None
}

/// Converts a libc return value (`-1` and `errno` on failure) into an `io::Result`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<u32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u32)
    }
}

/// Converts a libc `ssize_t` return value into an `io::Result`.
pub(crate) fn cvt_size(ret: libc::ssize_t) -> io::Result<u32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u32)
    }
}
