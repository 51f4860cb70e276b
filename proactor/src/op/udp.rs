//! Datagram operations with an address: `sendmsg` to a given peer and `recvmsg` that reports
//! the sender (`send_to` / `recv_from`).
//!
//! The `msghdr`, its `iovec` and the address storage live inside the operation, which the run
//! loop boxes before asking for the SQE or performing the call; their pointers are filled in at
//! that moment, so they always point into the box.

use super::sealed::Hooks;
use super::{cvt_size, BlockingCall, BufResult, Emulation, OpCode};
use crate::buf::{IoBuf, IoBufMut};
use crate::fd::IoFd;
use io_uring::{opcode, squeue, types};
use socket2::SockAddr;
use std::io;

fn empty_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero (null pointers, zero lengths) is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Sends the initialised bytes of `buf` as one datagram to `addr` (`sendmsg`).
pub struct SendTo<F, B> {
    fd: F,
    buf: B,
    addr: SockAddr,
    iov: libc::iovec,
    msg: libc::msghdr,
}

impl<F: IoFd, B: IoBuf> SendTo<F, B> {
    /// Send `buf` to `addr` on `fd`.
    pub fn new(fd: F, buf: B, addr: SockAddr) -> Self {
        let iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        SendTo { fd, buf, addr, iov, msg: empty_msghdr() }
    }

    /// Points the header at the buffer and address owned by `self` (which no longer moves).
    fn prepare(&mut self) {
        self.iov = libc::iovec {
            iov_base: self.buf.stable_ptr() as *mut _,
            iov_len: self.buf.bytes_init(),
        };
        self.msg.msg_name = self.addr.as_ptr() as *mut _;
        self.msg.msg_namelen = self.addr.len();
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
    }
}

impl<F: IoFd, B: IoBuf> OpCode for SendTo<F, B> {
    type Output = BufResult<usize, B>;
    const NAME: &'static str = "sendto";
}

impl<F: IoFd, B: IoBuf> Hooks for SendTo<F, B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        self.prepare();
        opcode::SendMsg::new(types::Fd(self.fd.raw_fd()), &self.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Writable(self.fd.raw_fd())
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.prepare();
        let flags = libc::MSG_NOSIGNAL | if nowait { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: the header points at the iovec, buffer and address owned by `self`.
        cvt_size(unsafe { libc::sendmsg(self.fd.raw_fd(), &self.msg, flags) })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // A socket: epoll always watches it, so it never goes to the pool.
        None
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        (res.map(|n| n as usize), self.buf)
    }
}

/// Receives one datagram into `buf` (up to its capacity) and reports who sent it (`recvmsg`).
/// A datagram longer than the buffer is truncated, as with `recvfrom`.
pub struct RecvFrom<F, B> {
    fd: F,
    buf: B,
    storage: libc::sockaddr_storage,
    iov: libc::iovec,
    msg: libc::msghdr,
}

impl<F: IoFd, B: IoBufMut> RecvFrom<F, B> {
    /// Receive on `fd` into `buf`.
    pub fn new(fd: F, buf: B) -> Self {
        // SAFETY: an all-zero sockaddr_storage is a valid (unspecified) address.
        let storage = unsafe { std::mem::zeroed::<libc::sockaddr_storage>() };
        let iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        RecvFrom { fd, buf, storage, iov, msg: empty_msghdr() }
    }

    fn prepare(&mut self) {
        self.iov = libc::iovec {
            iov_base: self.buf.stable_mut_ptr().cast(),
            iov_len: self.buf.bytes_total(),
        };
        self.msg.msg_name = (&mut self.storage as *mut libc::sockaddr_storage).cast();
        self.msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
    }
}

impl<F: IoFd, B: IoBufMut> OpCode for RecvFrom<F, B> {
    type Output = BufResult<(usize, SockAddr), B>;
    const NAME: &'static str = "recvfrom";
}

impl<F: IoFd, B: IoBufMut> Hooks for RecvFrom<F, B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        self.prepare();
        opcode::RecvMsg::new(types::Fd(self.fd.raw_fd()), &mut self.msg).build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Readable(self.fd.raw_fd())
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.prepare();
        let flags = if nowait { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: the header points at the iovec, buffer and address storage owned by `self`.
        cvt_size(unsafe { libc::recvmsg(self.fd.raw_fd(), &mut self.msg, flags) })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // A socket: epoll always watches it, so it never goes to the pool.
        None
    }
    fn complete(mut self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        let n = match res {
            Ok(n) => n as usize,
            Err(e) => return (Err(e), self.buf),
        };
        // A datagram longer than the buffer reports its full length only with MSG_TRUNC in the
        // flags; without it the count never exceeds the buffer.
        let n = n.min(self.buf.bytes_total());
        // SAFETY: the kernel wrote `n` bytes from the start of the buffer.
        unsafe { self.buf.set_init(n) };
        // The kernel reports the address's full length even where it had to cut it short;
        // never claim more than the storage holds.
        let size = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let len = self.msg.msg_namelen.min(size);
        // SAFETY: the kernel filled `storage` with an address of `len` bytes (at most its size).
        let addr = unsafe { SockAddr::new(self.storage, len) };
        (Ok((n, addr)), self.buf)
    }
}
