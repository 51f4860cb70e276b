//! Zero-copy send: the kernel sends straight from the caller's pages, and says when it no
//! longer needs them.
//!
//! `IORING_OP_SEND_ZC` completes twice: first with the bytes sent (flagged
//! `IORING_CQE_F_MORE`), then, once the network stack has let go of the pages, with a
//! notification (`IORING_CQE_F_NOTIF`). The buffer may be written again only after the second,
//! so the operation completes — and hands the buffer back — only then: the first result is
//! kept in the operation until the notification arrives. A send that fails at once completes
//! once, with its error.
//!
//! Where it pays: the pages are pinned and released per send, which costs more than copying a
//! small buffer; it wins on large sends to a real network device. Over loopback the kernel
//! copies anyway (the receiver's queue would otherwise hold the sender's pages), so there it
//! only adds the notification — see [`SendZc`] for the figures. The epoll emulation performs an
//! ordinary send: the same result, the buffer back at once.

use super::sealed::Hooks;
use super::{cvt_size, BlockingCall, BufResult, Emulation, OpCode};
use crate::buf::IoBuf;
use crate::fd::IoFd;
use io_uring::{opcode, squeue, types};
use std::io;

/// Sends the initialised bytes of `buf` without copying them (io_uring `SEND_ZC`); a short
/// count is a partial send. The buffer comes back only after the kernel's notification that it
/// no longer reads it. Never raises SIGPIPE.
///
/// Measured on this project's 2-core VM over loopback (where the kernel copies regardless):
/// `SEND_ZC` is not faster than [`Send`](super::Send) at any size there, which is why no server
/// uses it by default; it is for sends to real network devices, above a few tens of KiB.
pub struct SendZc<F, B> {
    fd: F,
    buf: B,
    /// The first completion's result, kept until the notification.
    sent: Option<i32>,
    /// At most this many bytes (fault injection's short transfer; `usize::MAX` otherwise).
    limit: usize,
}

impl<F: IoFd, B: IoBuf> SendZc<F, B> {
    /// A zero-copy send of `buf` on `fd`, with `MSG_NOSIGNAL`.
    pub fn new(fd: F, buf: B) -> Self {
        SendZc { fd, buf, sent: None, limit: usize::MAX }
    }

    fn len(&self) -> usize {
        self.buf.bytes_init().min(self.limit)
    }
}

impl<F: IoFd, B: IoBuf> OpCode for SendZc<F, B> {
    type Output = BufResult<usize, B>;
    const NAME: &'static str = "send_zc";
}

impl<F: IoFd, B: IoBuf> Hooks for SendZc<F, B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = self.len().min(u32::MAX as usize) as u32;
        opcode::SendZc::new(types::Fd(self.fd.raw_fd()), self.buf.stable_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Writable(self.fd.raw_fd())
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        let flags = libc::MSG_NOSIGNAL | if nowait { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: the pointer is valid for `len` initialised bytes of the owned buffer.
        cvt_size(unsafe {
            libc::send(self.fd.raw_fd(), self.buf.stable_ptr().cast(), self.len(), flags)
        })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // A socket: epoll always watches it.
        None
    }
    fn transfer_len(&self) -> Option<usize> {
        Some(self.len())
    }
    fn limit_transfer(&mut self, max: usize) {
        self.limit = max;
    }
    fn first_of_two(&mut self, res: i32, _flags: u32) {
        self.sent = Some(res);
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        let res = match self.sent {
            // The notification's own result says nothing of the send.
            Some(sent) if sent >= 0 => Ok(sent as usize),
            Some(err) => Err(super::name_error(Self::NAME, io::Error::from_raw_os_error(-err))),
            None => res.map(|n| n as usize),
        };
        (res, self.buf)
    }
}
