//! The unsafe extension point: operations written outside this crate.
//!
//! [`OpCode`] is sealed, so safe code cannot hand the kernel an entry with arbitrary pointers.
//! An operation this crate does not provide is written by implementing [`CustomOp`] — an
//! `unsafe trait`, whose contract is the Proactor's first rule — and submitted as [`Custom`].

use super::sealed::Hooks;
use super::{Emulation, OpCode};
use std::io;

/// A system call to run on a blocking-pool thread of the epoll driver, as the kernel would run an
/// io_uring operation: made on the run loop's thread at submission, from raw values (the fd
/// number, pointers into the operation's own memory), and `Send` by construction.
///
/// The closure is called again after `EINTR`. It is dropped on whichever thread is done with it.
pub struct BlockingCall(Box<dyn FnMut() -> io::Result<u32> + Send>);

impl BlockingCall {
    /// A call to run on the pool; returns what an io_uring CQE would carry (`Ok(n)` or the OS
    /// error).
    pub fn new(call: impl FnMut() -> io::Result<u32> + Send + 'static) -> BlockingCall {
        BlockingCall(Box::new(call))
    }

    /// Runs the call once.
    pub(crate) fn call(&mut self) -> io::Result<u32> {
        (self.0)()
    }
}

impl std::fmt::Debug for BlockingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlockingCall")
    }
}

/// An operation written outside this crate. Submit it as [`Custom`]`(op)`.
///
/// # Safety
/// Implementing this trait hands the kernel memory addresses, so its author promises:
/// - every pointer in the entry returned by [`CustomOp::uring_entry`] (and every pointer a
///   [`BlockingCall`] from [`CustomOp::blocking`] uses) points into memory that `self` owns —
///   directly, or through a heap allocation it owns — and that stays valid and at the same
///   address while `self` lives, even when `self` is moved (the run loop keeps `self` in place
///   anyway, from the first hook call until completion);
/// - that memory is not used through any other path until [`CustomOp::complete`] runs;
/// - the entry sets no `IOSQE_IO_LINK`/`IO_HARDLINK`/`IO_DRAIN`/`BUFFER_SELECT` flag and names
///   no fixed file, registered buffer or buffer group: the run loop sets `user_data` and links
///   entries itself, and the buffers it registered belong to other operations;
/// - the entry describes one operation that yields exactly one completion (no multishot flags);
/// - `perform` touches only memory `self` owns.
///
/// # Examples
/// ```
/// use proactor::op::{uring, BlockingCall, Custom, CustomOp, Emulation};
/// use std::io;
///
/// /// `fsync(2)` of a raw descriptor, written outside the crate.
/// struct MyFsync(std::os::fd::RawFd);
///
/// // SAFETY: the entry carries no pointers; the blocking call uses only the fd number.
/// unsafe impl CustomOp for MyFsync {
///     type Output = io::Result<()>;
///     const NAME: &'static str = "my_fsync";
///     fn uring_entry(&mut self) -> uring::squeue::Entry {
///         uring::opcode::Fsync::new(uring::types::Fd(self.0)).build()
///     }
///     fn emulation(&self) -> Emulation {
///         Emulation::Blocking
///     }
///     fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
///         // SAFETY: fsync takes no pointers.
///         if unsafe { libc::fsync(self.0) } < 0 { Err(io::Error::last_os_error()) } else { Ok(0) }
///     }
///     fn blocking(&mut self) -> Option<BlockingCall> {
///         let fd = self.0;
///         // SAFETY: fsync takes no pointers.
///         Some(BlockingCall::new(move || match unsafe { libc::fsync(fd) } {
///             r if r < 0 => Err(io::Error::last_os_error()),
///             _ => Ok(0),
///         }))
///     }
///     fn complete(self, res: io::Result<u32>) -> io::Result<()> {
///         res.map(drop)
///     }
/// }
///
/// let p = proactor::Proactor::new()?;
/// let file = tempfile::tempfile()?;
/// let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
/// p.block_on(proactor::submit(Custom(MyFsync(fd))))?;
/// # Ok::<(), io::Error>(())
/// ```
pub unsafe trait CustomOp: 'static {
    /// What the caller receives.
    type Output;
    /// Short name, for in-flight tracking and error messages.
    const NAME: &'static str;
    /// The io_uring submission entry (see the trait's safety contract).
    fn uring_entry(&mut self) -> io_uring::squeue::Entry;
    /// How the epoll emulation waits before it calls [`CustomOp::perform`].
    fn emulation(&self) -> Emulation;
    /// The system call, on the run loop's thread. With `nowait` it must not block (return
    /// `WouldBlock` instead). Returns what a CQE would carry.
    fn perform(&mut self, nowait: bool) -> io::Result<u32>;
    /// The call to run on the blocking pool (for [`Emulation::Blocking`], or a descriptor epoll
    /// cannot watch). `None` (the default): the operation completes with `EOPNOTSUPP` there.
    fn blocking(&mut self) -> Option<BlockingCall> {
        None
    }
    /// The completion's flags when they are not zero, just before `complete`.
    fn set_cqe_flags(&mut self, _flags: u32) {}
    /// Turns the raw result into the output, handing back every owned resource.
    fn complete(self, res: io::Result<u32>) -> Self::Output;
}

/// A [`CustomOp`] as an operation the proactor runs: `submit(Custom(op))`.
#[derive(Debug)]
pub struct Custom<T>(pub T);

impl<T: CustomOp> OpCode for Custom<T> {
    type Output = T::Output;
    const NAME: &'static str = T::NAME;
}

impl<T: CustomOp> Hooks for Custom<T> {
    fn uring_entry(&mut self) -> io_uring::squeue::Entry {
        self.0.uring_entry()
    }
    fn emulation(&self) -> Emulation {
        self.0.emulation()
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.0.perform(nowait)
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        self.0.blocking()
    }
    fn set_cqe_flags(&mut self, _res: i32, flags: u32) {
        self.0.set_cqe_flags(flags)
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        self.0.complete(res)
    }
}
