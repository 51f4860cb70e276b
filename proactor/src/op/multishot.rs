//! Operations that complete many times from one submission: accept every connection, receive
//! every chunk.
//!
//! On io_uring each is one multishot request (`IORING_ACCEPT_MULTISHOT`, `IORING_RECV_MULTISHOT`
//! with a provided-buffer ring): the kernel posts a completion per item, flagged
//! `IORING_CQE_F_MORE` while the request goes on, so a busy listener or connection costs no
//! submission per item. The epoll emulation performs the call again while it succeeds (a burst
//! at a time) and re-arms readiness when it would block, flagging its completions the same way:
//! both drivers yield the same item sequence.
//!
//! A multishot request ends with a completion without `MORE`: a cancel (`ECANCELED`), an error,
//! the end of a stream, a dry buffer ring (`ENOBUFS`), or the kernel's own reasons (a full
//! completion queue) — [`MultiHooks::restart`] tells the front ends which of these a new
//! submission simply continues.

use super::net::{ensure_nonblocking, ACCEPT_FLAGS};
use super::sealed::{Hooks, MultiHooks};
use super::{cvt, name_error, BlockingCall, Emulation, Multishot, OpCode};
use crate::buf::pool::{buffer_flags, PoolInner};
use crate::buf::{BufPool, Received};
use crate::fd::IoFd;
use io_uring::{opcode, squeue, types};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;

/// The error of a multishot completion, or `None` for the ones that only end the request.
fn item_error(name: &'static str, res: i32, silent: &[i32]) -> Option<io::Error> {
    let errno = -res;
    if errno == libc::ECANCELED || silent.contains(&errno) {
        return None;
    }
    Some(name_error(name, io::Error::from_raw_os_error(errno)))
}

/// Accepts every connection of a listening socket: one completion per connection, each a new
/// non-blocking, close-on-exec socket. Peer addresses are not recorded (each connection can
/// tell its own). An accepted connection nobody takes (the stream was dropped) is closed.
///
/// The epoll emulation puts a blocking listener in non-blocking mode (as [`super::Accept`]
/// does), once per operation: accept4 has no per-call "don't wait" flag, and a blocking accept
/// would stall the loop.
pub struct AcceptMulti<F> {
    fd: F,
    /// The emulation has made sure the listener does not block.
    nonblocking: bool,
}

impl<F: IoFd> AcceptMulti<F> {
    /// Accepts on the listening socket `fd`.
    pub fn new(fd: F) -> Self {
        AcceptMulti { fd, nonblocking: false }
    }
}

impl<F: IoFd> OpCode for AcceptMulti<F> {
    type Output = io::Result<()>;
    const NAME: &'static str = "accept_multi";
}

impl<F: IoFd> Multishot for AcceptMulti<F> {
    type Item = OwnedFd;
}

impl<F: IoFd> Hooks for AcceptMulti<F> {
    const MULTISHOT: bool = true;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::AcceptMulti::new(types::Fd(self.fd.raw_fd())).flags(ACCEPT_FLAGS).build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Readable(self.fd.raw_fd())
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        if nowait && !self.nonblocking {
            ensure_nonblocking(self.fd.raw_fd())?;
            self.nonblocking = true;
        }
        // SAFETY: no address is asked for (null pointers are allowed by accept4).
        cvt(unsafe {
            libc::accept4(
                self.fd.raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                ACCEPT_FLAGS,
            )
        })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // A socket: epoll always watches it.
        None
    }
    fn goes_on_after(&self, res: i32) -> bool {
        res >= 0
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        // Never reached: a multishot operation is finished through `MultiHooks`.
        res.map(drop)
    }
}

impl<F: IoFd> MultiHooks for AcceptMulti<F> {
    fn item(&mut self, res: i32, _flags: u32) -> Option<io::Result<<Self as Multishot>::Item>> {
        if res >= 0 {
            // SAFETY: a successful accept returns a new descriptor that nothing else owns.
            return Some(Ok(unsafe { OwnedFd::from_raw_fd(res) }));
        }
        item_error(Self::NAME, res, &[]).map(Err)
    }
    fn restart(&self, last: i32) -> bool {
        last >= 0
    }
}

/// Receives every chunk of a stream into buffers of a [`BufPool`], each taken only when its
/// data has arrived: one completion per chunk. On io_uring the pool must be a provided-buffer
/// ring of this proactor (see [`BufPool::is_kernel_ring`]); on epoll any pool serves.
///
/// Each item is the buffers one completion filled ([`Received`]): one, or several in ring
/// order when the pool takes bundles ([`BufPool::has_bundles`]: the request is submitted with
/// `IORING_RECVSEND_BUNDLE`). The epoll emulation fills one buffer per item.
///
/// The request ends at end of stream (no item), on an error, or with `ENOBUFS` when every
/// buffer is out (no item; the data waits in the socket — [`BufPool::recv_stream`] waits for a
/// buffer and submits again).
pub struct RecvMulti<F> {
    fd: F,
    pool: Rc<PoolInner>,
    /// The completion flags not yet turned into an item: the kernel's, or the emulation's.
    flags: u32,
    /// Submitted as a bundle: a completion may cover several buffers.
    bundle: bool,
    /// The last completion, accounted with the pool when the loop took it (in the order the
    /// kernel posted completions; see `PoolInner::take_completion`), for the item taken later.
    settled: Option<io::Result<Option<Received>>>,
}

impl<F: IoFd> RecvMulti<F> {
    /// Receives on `fd` into buffers of `pool`.
    pub fn new(fd: F, pool: &BufPool) -> Self {
        RecvMulti { fd, pool: pool.inner().clone(), flags: 0, bundle: false, settled: None }
    }
}

impl<F: IoFd> OpCode for RecvMulti<F> {
    type Output = io::Result<()>;
    const NAME: &'static str = "recv_multi";
}

impl<F: IoFd> Multishot for RecvMulti<F> {
    type Item = Received;
}

impl<F: IoFd> Hooks for RecvMulti<F> {
    const MULTISHOT: bool = true;

    fn uring_entry(&mut self) -> squeue::Entry {
        // Only submitted with a ring of this proactor (`refuse` says so before submission).
        let group = self.pool.ring_group().unwrap_or(u16::MAX);
        let fd = types::Fd(self.fd.raw_fd());
        self.bundle = self.pool.bundles();
        if self.bundle {
            // `IORING_RECV_MULTISHOT | IORING_RECVSEND_BUNDLE` in the entry's ioprio.
            opcode::RecvMultiBundle::new(fd, group).build()
        } else {
            opcode::RecvMulti::new(fd, group).build()
        }
    }
    fn emulation(&self) -> Emulation {
        Emulation::Readable(self.fd.raw_fd())
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        if self.pool.ring_group().is_some() || !nowait {
            // A kernel ring belongs to an io_uring proactor; and the free list is the loop
            // thread's, never a pool thread's.
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let (id, n) = self.pool.recv_into_free(self.fd.raw_fd())?;
        // The buffer is named in the flags, as the kernel names the one it picked.
        self.flags = buffer_flags(id);
        Ok(n)
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // The free list belongs to the loop's thread.
        None
    }
    fn set_cqe_flags(&mut self, res: i32, flags: u32) {
        self.flags = 0;
        self.settled = Some(self.pool.take_completion(res, flags, self.bundle));
    }
    fn take_cqe_flags(&mut self) -> u32 {
        std::mem::take(&mut self.flags)
    }
    fn goes_on_after(&self, res: i32) -> bool {
        res > 0
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        // Never reached: a multishot operation is finished through `MultiHooks`.
        res.map(drop)
    }
}

impl<F: IoFd> MultiHooks for RecvMulti<F> {
    fn item(&mut self, res: i32, flags: u32) -> Option<io::Result<<Self as Multishot>::Item>> {
        self.flags = 0;
        // End of stream or an error: a buffer named for it goes straight back.
        let taken = match self.settled.take() {
            Some(taken) => taken,
            None => self.pool.take_completion(res, flags, self.bundle),
        };
        match taken {
            Ok(Some(bufs)) => return Some(Ok(bufs)),
            Ok(None) => {}
            Err(e) => return Some(Err(name_error(Self::NAME, e))),
        }
        if res == 0 {
            return None;
        }
        if res == -libc::ENOBUFS {
            self.pool.note_exhausted();
        }
        item_error(Self::NAME, res, &[libc::ENOBUFS]).map(Err)
    }
    fn restart(&self, last: i32) -> bool {
        last > 0
    }
    fn refuse(&self, uring: bool) -> Option<io::Error> {
        let runnable = if uring {
            self.pool.ring_group().is_some() && self.pool.ring_is_current()
        } else {
            self.pool.ring_group().is_none()
        };
        (!runnable).then(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a multishot receive needs a buffer pool of this proactor that its driver can \
                 fill (on io_uring, a provided-buffer ring: see BufPool::is_kernel_ring)",
            )
        })
    }
}
