//! `splice`: moves bytes between a descriptor and a pipe inside the kernel, without copying them
//! through user memory (the zero-copy relay of `proactor proxy --splice`).
//!
//! On io_uring this is `IORING_OP_SPLICE`. The kernel runs it on a worker thread, and a
//! non-blocking socket that has nothing to give makes it fail with `EAGAIN` instead of waiting:
//! callers wait with [`PollReady`](super::PollReady) and try again. The epoll emulation calls
//! `splice(2)` with `SPLICE_F_NONBLOCK` once the socket side is ready, so it never reports
//! `EAGAIN`.

use super::sealed::Hooks;
use super::{cvt_size, BlockingCall, Emulation, OpCode};
use crate::fd::IoFd;
use io_uring::{opcode, squeue, types};
use std::io;

/// Moves up to `len` bytes from `fd_in` to `fd_out`; one of them must be a pipe. Output: the
/// count moved, `Ok(0)` at end of input.
pub struct Splice<I, O> {
    fd_in: I,
    fd_out: O,
    len: u32,
    /// Where in `fd_in` to read from (`-1`: its file position, which the splice advances).
    off_in: i64,
    /// Which side the emulation waits on: the non-pipe side.
    wait: Emulation,
}

fn is_pipe(fd: i32) -> bool {
    // SAFETY: an all-zero stat is a valid out-parameter for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid stat record.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    ok && st.st_mode & libc::S_IFMT == libc::S_IFIFO
}

impl<I: IoFd, O: IoFd> Splice<I, O> {
    /// Splice up to `len` bytes from `fd_in` to `fd_out` (at their current positions).
    pub fn new(fd_in: I, fd_out: O, len: u32) -> Self {
        let wait = if is_pipe(fd_in.raw_fd()) {
            Emulation::Writable(fd_out.raw_fd())
        } else {
            Emulation::Readable(fd_in.raw_fd())
        };
        Splice { fd_in, fd_out, len, off_in: -1, wait }
    }

    /// Splice up to `len` bytes of the file `fd_in` from `offset` (its file position is neither
    /// used nor moved, so many splices may read one shared descriptor at once) to the pipe
    /// `fd_out`.
    pub fn from_offset(fd_in: I, offset: u64, fd_out: O, len: u32) -> Self {
        let mut op = Self::new(fd_in, fd_out, len);
        op.off_in = i64::try_from(offset).unwrap_or(i64::MAX);
        op
    }
}

impl<I: IoFd, O: IoFd> OpCode for Splice<I, O> {
    type Output = io::Result<usize>;
    const NAME: &'static str = "splice";
}

impl<I: IoFd, O: IoFd> Hooks for Splice<I, O> {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Splice::new(
            types::Fd(self.fd_in.raw_fd()),
            self.off_in,
            types::Fd(self.fd_out.raw_fd()),
            -1,
            self.len,
        )
        .flags(libc::SPLICE_F_MOVE)
        .build()
    }
    fn emulation(&self) -> Emulation {
        self.wait
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        splice(self.fd_in.raw_fd(), self.off_in, self.fd_out.raw_fd(), self.len, nowait)
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        let (fd_in, off_in, fd_out) = (self.fd_in.raw_fd(), self.off_in, self.fd_out.raw_fd());
        let len = self.len;
        Some(BlockingCall::new(move || splice(fd_in, off_in, fd_out, len, false)))
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res.map(|n| n as usize)
    }
}

fn splice(fd_in: i32, off_in: i64, fd_out: i32, len: u32, nowait: bool) -> io::Result<u32> {
    let flags = libc::SPLICE_F_MOVE | if nowait { libc::SPLICE_F_NONBLOCK } else { 0 };
    let null = std::ptr::null_mut();
    let mut offset: libc::loff_t = off_in;
    let off_in = if off_in < 0 { null } else { &mut offset as *mut libc::loff_t };
    // SAFETY: a null offset means "use the file position"; a non-null one points at `offset`,
    // a local that outlives the call; no other user memory is involved.
    cvt_size(unsafe { libc::splice(fd_in, off_in, fd_out, null, len as usize, flags) })
}
