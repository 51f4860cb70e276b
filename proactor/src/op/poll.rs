//! Waiting for readiness as an operation (`IORING_OP_POLL_ADD`, one-shot): for operations the
//! kernel will not wait on by itself, such as an io_uring `splice` from a non-blocking socket
//! that fails with `EAGAIN`.

use super::sealed::Hooks;
use super::{cvt, BlockingCall, Emulation, OpCode};
use crate::fd::IoFd;
use io_uring::{opcode, squeue, types};
use std::io;

/// Completes when `fd` is readable (or writable): output is the `poll` event mask that fired.
pub struct PollReady<F> {
    fd: F,
    events: i16,
}

impl<F: IoFd> PollReady<F> {
    /// Waits until `fd` is readable (or has hung up / failed).
    pub fn readable(fd: F) -> Self {
        PollReady { fd, events: libc::POLLIN }
    }
    /// Waits until `fd` is writable (or has hung up / failed).
    pub fn writable(fd: F) -> Self {
        PollReady { fd, events: libc::POLLOUT }
    }
}

impl<F: IoFd> OpCode for PollReady<F> {
    type Output = io::Result<u32>;
    const NAME: &'static str = "poll";
}

impl<F: IoFd> Hooks for PollReady<F> {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::PollAdd::new(types::Fd(self.fd.raw_fd()), self.events as u16 as u32).build()
    }
    fn emulation(&self) -> Emulation {
        if self.events == libc::POLLIN {
            Emulation::Readable(self.fd.raw_fd())
        } else {
            Emulation::Writable(self.fd.raw_fd())
        }
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        poll_now(self.fd.raw_fd(), self.events)
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // A descriptor epoll cannot watch (a regular file) is always ready, as poll(2) says.
        let (fd, events) = (self.fd.raw_fd(), self.events);
        Some(BlockingCall::new(move || poll_now(fd, events)))
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res
    }
}

/// The events of `fd` that are ready now, without waiting (`WouldBlock` if none).
fn poll_now(fd: std::os::fd::RawFd, events: i16) -> io::Result<u32> {
    let mut p = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: `p` is one valid pollfd; a zero timeout never blocks.
    match cvt(unsafe { libc::poll(&mut p, 1, 0) })? {
        0 => Err(io::ErrorKind::WouldBlock.into()),
        _ => Ok(p.revents as u16 as u32),
    }
}
