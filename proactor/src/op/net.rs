//! Socket operations: receive, send, accept, connect, shutdown.

use super::sealed::Hooks;
use super::{cvt, cvt_size, BlockingCall, BufResult, Emulation, OpCode};
use crate::buf::{IoBuf, IoBufMut};
use crate::fd::IoFd;
use io_uring::{opcode, squeue, types};
use socket2::SockAddr;
use std::io;
use std::net::Shutdown as How;
use std::os::fd::{FromRawFd, OwnedFd};

/// `IORING_RECVSEND_POLL_FIRST` (linux/io_uring.h, since 5.19), a receive's `ioprio` flag; the
/// io-uring crate keeps its copy private.
const RECVSEND_POLL_FIRST: u16 = 1;

/// Receives into `buf` (up to its capacity). `Ok(0)` means the peer closed its side.
pub struct Recv<F, B> {
    fd: F,
    buf: B,
    flags: i32,
    /// Bytes already received by earlier non-blocking tries of a `MSG_WAITALL` receive (epoll).
    got: usize,
    /// Wait for data before the first attempt (io_uring `IORING_RECVSEND_POLL_FIRST`).
    poll_first: bool,
    /// At most this many bytes (fault injection's short transfer; `usize::MAX` otherwise).
    limit: usize,
}

impl<F: IoFd, B: IoBufMut> Recv<F, B> {
    /// A receive with no flags.
    pub fn new(fd: F, buf: B) -> Self {
        Recv { fd, buf, flags: 0, got: 0, poll_first: false, limit: usize::MAX }
    }
    /// Hints that the socket is most likely empty now (the peer is answering what was just
    /// sent): on io_uring the kernel then waits for data before trying the receive
    /// (`IORING_RECVSEND_POLL_FIRST`, Linux 5.19 and later), skipping an
    /// attempt bound to fail; the epoll emulation likewise waits for readiness before its first
    /// try ([`Emulation::ReadableFirstWait`]). Either way the result is the same.
    pub fn poll_first(mut self, on: bool) -> Self {
        self.poll_first = on;
        self
    }
    /// Sets `MSG_*` flags (for example `MSG_PEEK`).
    pub fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }
}

impl<F: IoFd, B: IoBufMut> OpCode for Recv<F, B> {
    type Output = BufResult<usize, B>;
    const NAME: &'static str = "recv";
}

impl<F: IoFd, B: IoBufMut> Hooks for Recv<F, B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_total().min(self.limit).min(u32::MAX as usize) as u32;
        opcode::Recv::new(types::Fd(self.fd.raw_fd()), self.buf.stable_mut_ptr(), len)
            .flags(self.flags)
            .ioprio(if self.poll_first { RECVSEND_POLL_FIRST } else { 0 })
            .build()
    }
    fn emulation(&self) -> Emulation {
        // Waiting first saves the EAGAIN try: hyper's hello world on the epoll driver made
        // 4.04 system calls per response with it (2 recvfrom, 1 epoll_ctl, 1 sendto), 3 without
        // (benches/hyper_counts.sh).
        if self.poll_first {
            Emulation::ReadableFirstWait(self.fd.raw_fd())
        } else {
            Emulation::Readable(self.fd.raw_fd())
        }
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        let flags = self.flags | if nowait { libc::MSG_DONTWAIT } else { 0 };
        let total = self.buf.bytes_total().min(self.limit);
        loop {
            // SAFETY: `got <= total`, so `ptr` is valid for `total - got` writable bytes of the
            // owned buffer (after the bytes earlier tries received).
            let ptr = unsafe { self.buf.stable_mut_ptr().add(self.got) };
            let len = total - self.got;
            // SAFETY: `ptr` is valid for `len` writable bytes (above).
            let res = cvt_size(unsafe { libc::recv(self.fd.raw_fd(), ptr.cast(), len, flags) });
            // (A peek would see the same bytes again: it is left to return what is there.)
            if self.flags & (libc::MSG_WAITALL | libc::MSG_PEEK) != libc::MSG_WAITALL {
                return res;
            }
            // MSG_WAITALL with MSG_DONTWAIT returns what is there: keep it and wait for the
            // rest, as io_uring does. End of stream or an error ends it with what was received.
            match res {
                Ok(0) => return Ok(self.got as u32),
                Ok(n) => {
                    self.got += n as usize;
                    // Only a byte stream waits for more (as io_uring decides): a datagram is
                    // whole as it is, and the next one must not be appended to it.
                    if self.got >= total || !is_stream(self.fd.raw_fd()) {
                        return Ok(self.got as u32);
                    }
                }
                Err(e)
                    if self.got == 0
                        || matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                {
                    return Err(e)
                }
                Err(_) => return Ok(self.got as u32),
            }
        }
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // A socket: epoll always watches it, so it never goes to the pool.
        None
    }
    fn transfer_len(&self) -> Option<usize> {
        Some(self.buf.bytes_total().min(self.limit))
    }
    fn limit_transfer(&mut self, max: usize) {
        self.limit = max;
    }
    fn complete(mut self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        // A MSG_WAITALL receive cut short (cancelled, timed out) still reports what arrived.
        let res = match res {
            Err(_) if self.got > 0 => Ok(self.got),
            res => res.map(|n| n as usize),
        };
        if let Ok(n) = res {
            // SAFETY: the kernel wrote exactly `n` bytes from the start of the buffer.
            unsafe { self.buf.set_init(n) };
        }
        (res, self.buf)
    }
}

/// True for a stream or sequenced-packet socket, the kinds whose `MSG_WAITALL` io_uring retries.
fn is_stream(fd: std::os::fd::RawFd) -> bool {
    let ty = crate::fd::socket_option(fd, libc::SO_TYPE);
    ty == Some(libc::SOCK_STREAM) || ty == Some(libc::SOCK_SEQPACKET)
}

/// Sends the initialised bytes of `buf`; a short count is a partial send. Never raises SIGPIPE.
pub struct Send<F, B> {
    fd: F,
    buf: B,
    flags: i32,
    /// At most this many bytes (fault injection's short transfer; `usize::MAX` otherwise).
    limit: usize,
}

impl<F: IoFd, B: IoBuf> Send<F, B> {
    /// A send with `MSG_NOSIGNAL`.
    pub fn new(fd: F, buf: B) -> Self {
        Send { fd, buf, flags: libc::MSG_NOSIGNAL, limit: usize::MAX }
    }
    /// Adds `MSG_*` flags (for example `MSG_MORE`).
    pub fn flags(mut self, flags: i32) -> Self {
        self.flags |= flags;
        self
    }
}

impl<F: IoFd, B: IoBuf> OpCode for Send<F, B> {
    type Output = BufResult<usize, B>;
    const NAME: &'static str = "send";
}

impl<F: IoFd, B: IoBuf> Hooks for Send<F, B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_init().min(self.limit).min(u32::MAX as usize) as u32;
        opcode::Send::new(types::Fd(self.fd.raw_fd()), self.buf.stable_ptr(), len)
            .flags(self.flags)
            .build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Writable(self.fd.raw_fd())
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        let flags = self.flags | if nowait { libc::MSG_DONTWAIT } else { 0 };
        let (ptr, len) = (self.buf.stable_ptr(), self.buf.bytes_init().min(self.limit));
        // SAFETY: `ptr` is valid for `len` initialised bytes of the owned buffer.
        cvt_size(unsafe { libc::send(self.fd.raw_fd(), ptr.cast(), len, flags) })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // A socket: epoll always watches it, so it never goes to the pool.
        None
    }
    fn transfer_len(&self) -> Option<usize> {
        Some(self.buf.bytes_init().min(self.limit))
    }
    fn limit_transfer(&mut self, max: usize) {
        self.limit = max;
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        (res.map(|n| n as usize), self.buf)
    }
}

/// Accepts a connection. The new socket is non-blocking and close-on-exec. If nobody takes the
/// result (the future was dropped), the accepted socket is closed: it never leaks.
pub struct Accept<F> {
    fd: F,
    addr: Box<(libc::sockaddr_storage, libc::socklen_t)>,
}

impl<F: IoFd> Accept<F> {
    /// Accept on the listening socket `fd`.
    pub fn new(fd: F) -> Self {
        // SAFETY: an all-zero sockaddr_storage is a valid (unspecified) address.
        let storage = unsafe { std::mem::zeroed::<libc::sockaddr_storage>() };
        let len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        Accept { fd, addr: Box::new((storage, len)) }
    }
}

pub(super) const ACCEPT_FLAGS: i32 = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;

impl<F: IoFd> OpCode for Accept<F> {
    type Output = io::Result<(OwnedFd, SockAddr)>;
    const NAME: &'static str = "accept";
}

impl<F: IoFd> Hooks for Accept<F> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let (storage, len) = &mut *self.addr;
        opcode::Accept::new(
            types::Fd(self.fd.raw_fd()),
            (storage as *mut libc::sockaddr_storage).cast(),
            len,
        )
        .flags(ACCEPT_FLAGS)
        .build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Readable(self.fd.raw_fd())
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        if nowait {
            // accept4 has no per-call "don't wait" flag: the listener itself must not block.
            ensure_nonblocking(self.fd.raw_fd())?;
        }
        let (storage, len) = &mut *self.addr;
        // SAFETY: storage/len describe a sockaddr_storage owned by the operation.
        cvt(unsafe {
            libc::accept4(
                self.fd.raw_fd(),
                (storage as *mut libc::sockaddr_storage).cast(),
                len,
                ACCEPT_FLAGS,
            )
        })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // A socket: epoll always watches it, so it never goes to the pool.
        None
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        let fd = res?;
        // SAFETY: a successful accept returns a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let (storage, len) = *self.addr;
        // SAFETY: the kernel filled `storage` with an address of `len` bytes.
        let addr = unsafe { SockAddr::new(storage, len) };
        Ok((fd, addr))
    }
}

/// Connects a socket to `addr`.
pub struct Connect<F> {
    fd: F,
    addr: Box<SockAddr>,
    in_progress: bool,
}

impl<F: IoFd> Connect<F> {
    /// Connect `fd` to `addr`.
    pub fn new(fd: F, addr: SockAddr) -> Self {
        Connect { fd, addr: Box::new(addr), in_progress: false }
    }
}

impl<F: IoFd> OpCode for Connect<F> {
    type Output = io::Result<()>;
    const NAME: &'static str = "connect";
}

impl<F: IoFd> Hooks for Connect<F> {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Connect::new(types::Fd(self.fd.raw_fd()), self.addr.as_ptr(), self.addr.len())
            .build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Writable(self.fd.raw_fd())
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        let fd = self.fd.raw_fd();
        if self.in_progress {
            return pending_connect_result(fd);
        }
        if nowait {
            // connect has no per-call "don't wait" flag: the socket itself must not block.
            ensure_nonblocking(fd)?;
        }
        // SAFETY: the address is owned by the operation and `len` bytes long.
        match cvt(unsafe { libc::connect(fd, self.addr.as_ptr(), self.addr.len()) }) {
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                self.in_progress = true;
                Err(io::ErrorKind::WouldBlock.into())
            }
            other => other,
        }
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // A socket: epoll always watches it, so it never goes to the pool.
        None
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res.map(drop)
    }
}

/// Puts `fd` in non-blocking mode if it is not (for calls that have no per-call flag for it).
/// The mode stays: it is a property of the open file, shared with every copy of the fd.
pub(super) fn ensure_nonblocking(fd: i32) -> io::Result<()> {
    // SAFETY: F_GETFL takes no pointers.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })? as i32;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL takes an integer argument.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// The outcome of a non-blocking connect once the socket became writable.
fn pending_connect_result(fd: i32) -> io::Result<u32> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid out-parameters of the right size.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut i32).cast(),
            &mut len,
        )
    })?;
    match err {
        0 => Ok(0),
        libc::EINPROGRESS | libc::EALREADY => Err(io::ErrorKind::WouldBlock.into()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Shuts down the read side, write side, or both of a connected socket.
pub struct Shutdown<F> {
    fd: F,
    how: How,
}

impl<F: IoFd> Shutdown<F> {
    /// Shut down `how` on `fd`.
    pub fn new(fd: F, how: How) -> Self {
        Shutdown { fd, how }
    }
    fn how_arg(&self) -> i32 {
        match self.how {
            How::Read => libc::SHUT_RD,
            How::Write => libc::SHUT_WR,
            How::Both => libc::SHUT_RDWR,
        }
    }
}

impl<F: IoFd> OpCode for Shutdown<F> {
    type Output = io::Result<()>;
    const NAME: &'static str = "shutdown";
}

impl<F: IoFd> Hooks for Shutdown<F> {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Shutdown::new(types::Fd(self.fd.raw_fd()), self.how_arg()).build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Now
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        // SAFETY: shutdown takes no pointers.
        cvt(unsafe { libc::shutdown(self.fd.raw_fd(), self.how_arg()) })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // Performed at once on the loop's thread (`Emulation::Now`/`Timer`); never pooled.
        None
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res.map(drop)
    }
}
