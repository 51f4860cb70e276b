//! Asynchronous operations: what the application asks the kernel to do.
//!
//! Each operation is a plain struct that owns everything the kernel may touch while it runs — the
//! buffer, the `iovec` array, the socket address, the `statx` record, the timespec — and is boxed
//! by the run loop for as long as it is in flight, so those addresses never move. When the kernel
//! is done, [`OpCode::complete`] turns the raw result into the typed output and hands the owned
//! resources back. Each driver gets what it needs from the same struct: the io_uring driver an SQE
//! ([`OpCode::uring_entry`]), the epoll emulation a way to wait ([`OpCode::emulation`]) and the
//! syscall itself ([`OpCode::perform`]). One file per family of operations.

use io_uring::squeue;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

mod fd;
mod net;
mod nop;
mod path;
mod poll;
mod pooled;
mod rw;
mod splice;
mod sync_range;
mod timeout;
mod udp;

pub use fd::{Close, Fsync, OpenAt, Statx};
pub use net::{Accept, Connect, Recv, Send, Shutdown};
pub use nop::Nop;
pub use path::{MkdirAt, RenameAt, UnlinkAt};
pub use poll::PollReady;
pub use pooled::RecvPooled;
pub use rw::{Read, Readv, Write, Writev};
pub use splice::Splice;
pub use sync_range::SyncFileRange;
pub use timeout::Timeout;
pub use udp::{RecvFrom, SendTo};

/// The result of an operation that owned a buffer: the outcome, and the buffer handed back.
///
/// A tuple so that `let (res, buf) = op.await;` reads naturally; the `io::Result` inside makes an
/// ignored result a `unused_must_use` warning.
pub type BufResult<T, B> = (io::Result<T>, B);

/// How the epoll emulation should wait before it performs an operation itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulation {
    /// Perform at once; it never blocks (a no-op, close, shutdown).
    Now,
    /// Try at once without blocking; if the fd is not ready, wait until it is readable and retry.
    Readable(RawFd),
    /// Try at once without blocking; if the fd is not ready, wait until it is writable and retry.
    Writable(RawFd),
    /// A call that may block and cannot be waited on with epoll (regular files, `openat`,
    /// `fsync`, `statx`): run it on the blocking pool.
    Blocking,
    /// Complete with `Ok(0)` once this much time has passed.
    Timer(Duration),
}

/// An operation the proactor can run on any driver.
///
/// Implementors keep every piece of memory the kernel reads or writes inside `self`; the run loop
/// boxes the value before submission and neither moves nor frees it until the completion arrived.
pub trait OpCode: 'static {
    /// What the caller receives: usually a [`BufResult`].
    type Output;

    /// Short name of the operation, used by in-flight tracking and error messages.
    const NAME: &'static str;

    /// The io_uring submission entry. Pointers in it refer to memory owned by `self`.
    fn uring_entry(&mut self) -> squeue::Entry;

    /// How the epoll driver waits before it calls [`OpCode::perform`].
    fn emulation(&self) -> Emulation;

    /// Performs the operation with an ordinary system call (the epoll emulation and the blocking
    /// pool). With `nowait`, the call must not block: it returns `WouldBlock` instead. Returns the
    /// value an io_uring CQE would carry.
    fn perform(&mut self, nowait: bool) -> io::Result<u32>;

    /// Receives the io_uring completion's flags (`cqe.flags()`) when they are not zero, just
    /// before [`OpCode::complete`]: a buffer-select receive learns which provided buffer the
    /// kernel filled. The default ignores them.
    fn set_cqe_flags(&mut self, _flags: u32) {}

    /// Turns the driver's raw result (`cqe.result()`, already split into `Ok`/`Err`) into the
    /// output, handing back every owned resource.
    fn complete(self, res: io::Result<u32>) -> Self::Output;
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
