//! A send of several buffers, in order, with one request: on io_uring `IORING_OP_SEND` with
//! `IORING_RECVSEND_BUNDLE` from a provided-buffer ring of the sender's own (Linux 6.10), else
//! `IORING_OP_SENDMSG` with an iovec per buffer; on epoll sendmsg(2) with the same iovecs.
//! Either way the result is the count of bytes sent from the front of the list.
//!
//! Used through [`SendQueue`](crate::buf::SendQueue), which owns the ring and never has two of
//! these in flight on it: the operation publishes its buffers to the ring when it is submitted
//! and takes back what the kernel left there once it is done, so between operations the ring
//! is empty.

use super::sealed::Hooks;
use super::{cvt_size, BlockingCall, BufResult, Emulation, OpCode};
use crate::buf::send_queue::SendRing;
use crate::buf::IoBuf;
use crate::fd::IoFd;
use io_uring::{opcode, squeue, types};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

/// Sends `bufs` in order (the first from byte `skip` on) with one request; a short count is a
/// partial send. Never raises SIGPIPE. The caller hands back the buffers sent in full.
pub(crate) struct SendBundle<F, B> {
    fd: F,
    bufs: VecDeque<B>,
    /// The sender's ring (a bundle), or `None` (sendmsg with iovecs).
    ring: Option<Rc<SendRing>>,
    /// One per buffer, pointing into it (the sendmsg form; the epoll emulation's too).
    iovecs: Vec<libc::iovec>,
    /// Points at `iovecs`; read by the kernel (sendmsg form). The run loop keeps the operation
    /// at a fixed address from its first hook call on, so the kernel's pointer to it holds.
    msg: libc::msghdr,
    /// Ring entries this operation published, and how many of them the kernel consumed.
    published: u16,
    consumed: u16,
    /// At most this many bytes (fault injection's short transfer; `usize::MAX` otherwise).
    limit: usize,
}

impl<F: IoFd, B: IoBuf> SendBundle<F, B> {
    /// Sends `bufs` (none empty, the first from `skip`, at most the ring's size when `ring`).
    pub(crate) fn new(fd: F, bufs: VecDeque<B>, skip: usize, ring: Option<Rc<SendRing>>) -> Self {
        let iovecs = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let from = if i == 0 { skip } else { 0 };
                // SAFETY: `from <= bytes_init()` (the caller's `skip` is inside the first
                // buffer), so the pointer stays within the buffer's initialised bytes.
                let base = unsafe { b.stable_ptr().add(from) };
                libc::iovec { iov_base: base as *mut _, iov_len: b.bytes_init() - from }
            })
            .collect();
        // SAFETY: an all-zero msghdr is valid: no name, no control data, no iovecs yet.
        let msg = unsafe { std::mem::zeroed::<libc::msghdr>() };
        SendBundle { fd, bufs, ring, iovecs, msg, published: 0, consumed: 0, limit: usize::MAX }
    }

    /// The iovecs cut to `limit` bytes: how many, and the last one's length.
    fn limited(&self) -> (usize, usize) {
        let mut left = self.limit;
        for (i, iov) in self.iovecs.iter().enumerate() {
            if iov.iov_len >= left {
                return (i + 1, left);
            }
            left -= iov.iov_len;
        }
        (self.iovecs.len(), self.iovecs.last().map_or(0, |v| v.iov_len))
    }

    /// Points `msg` at the (limited) iovecs; returns the count. With a limit, the last iovec is
    /// shortened in place: the operation is sent once, so nothing else reads its full length.
    fn prepare_msg(&mut self) -> usize {
        let (count, last) = self.limited();
        if count > 0 {
            self.iovecs[count - 1].iov_len = last;
        }
        self.msg.msg_iov = self.iovecs.as_mut_ptr();
        self.msg.msg_iovlen = count as _;
        count
    }

    /// Publishes the buffers to the ring: an entry per (limited) iovec.
    fn publish(&mut self, ring: &SendRing) {
        ring.settle_published(self.published, 0);
        let count = self.prepare_msg();
        for iov in &self.iovecs[..count] {
            ring.push(iov.iov_base.cast(), iov.iov_len as u32);
        }
        self.published = count as u16;
    }
}

impl<F: IoFd, B: IoBuf> OpCode for SendBundle<F, B> {
    type Output = BufResult<usize, VecDeque<B>>;
    const NAME: &'static str = "send_bundle";
}

impl<F: IoFd, B: IoBuf> Hooks for SendBundle<F, B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let fd = types::Fd(self.fd.raw_fd());
        match self.ring.clone() {
            Some(ring) => {
                self.publish(&ring);
                opcode::SendBundle::new(fd, ring.group()).flags(libc::MSG_NOSIGNAL).build()
            }
            None => {
                self.prepare_msg();
                opcode::SendMsg::new(fd, &self.msg).flags(libc::MSG_NOSIGNAL as u32).build()
            }
        }
    }
    fn emulation(&self) -> Emulation {
        Emulation::Writable(self.fd.raw_fd())
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        let flags = libc::MSG_NOSIGNAL | if nowait { libc::MSG_DONTWAIT } else { 0 };
        self.prepare_msg();
        // SAFETY: `msg` points at the operation's iovecs, each valid for its length in a buffer
        // the operation owns; no name or control data.
        cvt_size(unsafe { libc::sendmsg(self.fd.raw_fd(), &self.msg, flags) })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // A socket: epoll always watches it, so it never goes to the pool.
        None
    }
    fn set_cqe_flags(&mut self, res: i32, _flags: u32) {
        // The kernel consumed every ring entry it sent from, the one it sent in part included
        // (`io_bundle_nbufs`, io_uring/net.c); a failed send, none.
        if self.ring.is_some() && res > 0 {
            let (count, _) = self.limited();
            let mut left = res as usize;
            let mut consumed = 0;
            for iov in &self.iovecs[..count] {
                if left == 0 {
                    break;
                }
                consumed += 1;
                left -= left.min(iov.iov_len);
            }
            self.consumed = consumed;
        }
    }
    fn transfer_len(&self) -> Option<usize> {
        Some(self.iovecs.iter().map(|v| v.iov_len).sum::<usize>().min(self.limit))
    }
    fn limit_transfer(&mut self, max: usize) {
        self.limit = max;
    }
    fn complete(mut self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        if let (Some(ring), Ok(n)) = (&self.ring, &res) {
            if *n > 0 && self.consumed == 0 {
                // The kernel always names the buffers a bundle sent from; without that the
                // ring's head is unknown, so it is not used again.
                tracing::error!("send bundle: {n} bytes sent with no buffer named");
                ring.poison();
            }
        }
        (res.map(|n| n as usize), std::mem::take(&mut self.bufs))
    }
}

impl<F, B> Drop for SendBundle<F, B> {
    fn drop(&mut self) {
        // The kernel is done with the request (the run loop drops an operation only after its
        // completion, or with the ring itself): take back what it left in the ring.
        if let Some(ring) = &self.ring {
            ring.settle_published(self.published, self.consumed);
        }
    }
}
