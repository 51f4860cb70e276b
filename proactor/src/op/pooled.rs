//! A receive into a buffer from a [`BufPool`], chosen only when data has arrived.
//!
//! Three ways to run, one struct:
//! - io_uring with a provided-buffer ring: a `Recv` with `IOSQE_BUFFER_SELECT` and no buffer; the
//!   kernel picks one and names it in the completion flags ([`OpCode::set_cqe_flags`]).
//! - io_uring with a user-space pool: a one-shot `POLL_ADD` for readability; the receive itself is
//!   a non-blocking `recv` into a free buffer when the completion is processed.
//! - epoll: [`OpCode::perform`] takes a free buffer only for the non-blocking `recv` and puts it
//!   straight back when there is nothing to read.
//!
//! Either way an idle connection holds no buffer. A dry pool is `ENOBUFS` with the data left in
//! the socket; [`BufPool::recv`] waits for a buffer and retries.

use super::sealed::Hooks;
use super::{BlockingCall, Emulation, OpCode};
use crate::buf::pool::{buffer_flags, PoolInner};
use crate::buf::{BufPool, PooledBuf, Received};
use crate::fd::IoFd;
use io_uring::{opcode, squeue, types};
use std::io;
use std::rc::Rc;

/// `IORING_RECVSEND_POLL_FIRST` (linux/io_uring.h, since 5.19), a receive's `ioprio` flag; the
/// io-uring crate keeps its copy private.
const RECVSEND_POLL_FIRST: u16 = 1;

/// How the operation was run, so `complete` knows where the buffer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Never handed to a driver (cancelled first).
    NotSubmitted,
    /// io_uring picked a buffer from the ring.
    Ring,
    /// io_uring polled for readability; receive at completion.
    Poll,
    /// The epoll emulation performed the receive.
    Perform,
}

/// Receives into a pooled buffer; output `Ok(Some(buf))` with the bytes, `Ok(None)` at end of
/// stream, or an error — `ENOBUFS` when the pool is dry (the data stays in the socket), and
/// rarely `WouldBlock` after a spurious wake-up. [`BufPool::recv`] retries both for you.
pub struct RecvPooled<F> {
    fd: F,
    pool: Rc<PoolInner>,
    via: Via,
    /// The completion's flags, naming the buffer the kernel or `perform` received into.
    flags: u32,
    /// The kernel's completion, accounted with the pool when the loop took it (see
    /// `set_cqe_flags`).
    settled: Option<io::Result<Option<Received>>>,
    /// Wait for readability before the first receive attempt (io_uring buffer ring only).
    poll_first: bool,
    /// Tests only: the kernel paths whose buffer accounting differs (see `kernel_paths`).
    #[cfg(test)]
    shape: Option<TestShape>,
}

/// How a test submits the receive: a shorter length, `MSG_WAITALL`, or on a worker thread
/// (`IOSQE_ASYNC`), to reach the kernel's other buffer-commit paths.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct TestShape {
    pub(crate) len: u32,
    pub(crate) wait_all: bool,
    pub(crate) worker: bool,
}

impl<F: IoFd> RecvPooled<F> {
    /// A receive on `fd` into a buffer of `pool`.
    pub fn new(fd: F, pool: &BufPool) -> Self {
        RecvPooled {
            fd,
            pool: pool.inner().clone(),
            via: Via::NotSubmitted,
            flags: 0,
            settled: None,
            poll_first: false,
            #[cfg(test)]
            shape: None,
        }
    }

    /// Submits the receive in `shape` (tests of the kernel's commit paths).
    #[cfg(test)]
    pub(crate) fn shape(mut self, shape: TestShape) -> Self {
        self.shape = Some(shape);
        self
    }

    /// Hints that the socket is most likely empty now (say, the peer is answering what was
    /// just sent): on io_uring with a buffer ring the kernel then waits for data before trying
    /// the receive (`IORING_RECVSEND_POLL_FIRST`), skipping an attempt bound to fail. Elsewhere
    /// it changes nothing. Either way the result is the same.
    pub fn poll_first(mut self, on: bool) -> Self {
        self.poll_first = on;
        self
    }

    /// A non-blocking receive into a free buffer (user-space pool). On success the buffer is
    /// named in `flags`; otherwise it is back on the free list.
    fn recv_now(&mut self) -> io::Result<u32> {
        let (id, n) = self.pool.recv_into_free(self.fd.raw_fd())?;
        self.flags = buffer_flags(id);
        Ok(n)
    }
}

impl<F: IoFd> OpCode for RecvPooled<F> {
    type Output = io::Result<Option<PooledBuf>>;
    const NAME: &'static str = "recv_pooled";
}

impl<F: IoFd> Hooks for RecvPooled<F> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let fd = types::Fd(self.fd.raw_fd());
        match self.pool.ring_group() {
            Some(group) if self.pool.ring_is_current() => {
                self.via = Via::Ring;
                let len = self.pool.buffer_size().min(u32::MAX as usize) as u32;
                let ioprio = if self.poll_first { RECVSEND_POLL_FIRST } else { 0 };
                #[cfg(test)]
                if let Some(shape) = self.shape {
                    let flags = if shape.wait_all { libc::MSG_WAITALL } else { 0 };
                    let sqe =
                        if shape.worker { squeue::Flags::ASYNC } else { squeue::Flags::empty() };
                    return opcode::Recv::new(fd, std::ptr::null_mut(), shape.len.min(len))
                        .buf_group(group)
                        .flags(flags)
                        .build()
                        .flags(squeue::Flags::BUFFER_SELECT | sqe);
                }
                opcode::Recv::new(fd, std::ptr::null_mut(), len)
                    .buf_group(group)
                    .ioprio(ioprio)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
            }
            _ => {
                self.via = Via::Poll;
                opcode::PollAdd::new(fd, libc::POLLIN as u32).build()
            }
        }
    }

    fn emulation(&self) -> Emulation {
        Emulation::Readable(self.fd.raw_fd())
    }

    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.via = Via::Perform;
        if self.pool.ring_group().is_some() {
            // A kernel ring belongs to an io_uring proactor; this is not one.
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if !nowait {
            // A blocking call runs on the epoll driver's pool threads — which the driver does
            // only after a first try failed with EOPNOTSUPP. The pool's free list is not
            // thread-safe, so never touch it there: report what the first try found.
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        // A non-blocking try runs on the run loop's thread: the free list is ours.
        self.recv_now()
    }

    fn set_cqe_flags(&mut self, res: i32, flags: u32) {
        self.flags = flags;
        if self.via == Via::Ring {
            // Accounted now, in the order the kernel posted its completions, not when the
            // awaiting task runs: the pool learns where a piece of an incremental buffer
            // starts from that order, and a multishot receive's completions of the same turn
            // are accounted as they come (see `PoolInner::take_completion`).
            self.settled = Some(self.pool.take_completion(res, flags, false));
        }
    }

    fn blocking(&mut self) -> Option<BlockingCall> {
        // The pool's free list belongs to the loop's thread: a pooled receive never runs on a
        // pool thread (the types say so: `PoolInner` is behind an `Rc`, which is not `Send`).
        None
    }
    fn complete(mut self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        let res = if self.via == Via::Poll {
            // Readable (or hung up): receive now, into a buffer taken only now.
            res.and_then(|_| self.recv_now())
        } else {
            res
        };
        let n = match &res {
            Ok(n) => (*n).min(i32::MAX as u32) as i32,
            Err(_) => -1,
        };
        // A one-shot receive is never a bundle: one buffer, or a piece of one.
        let got = match self.settled.take() {
            Some(got) => got?,
            None => self.pool.take_completion(n, self.flags, false)?,
        };
        res?;
        Ok(got.map(|r| r.into_parts().0))
    }
}
