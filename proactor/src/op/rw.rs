//! `read` / `write` (at an offset or at the file position) and their vectored forms.

use super::raw::{OwnedPtr, Syscall};
use super::sealed::Hooks;
use super::{cvt_size, BlockingCall, BufResult, Emulation, OpCode};
use crate::buf::{IoBuf, IoBufMut, IoVecBuf};
use crate::fd::IoFd;
use io_uring::{opcode, squeue, types};
use std::io;
use std::os::fd::RawFd;

/// Offset value that tells the kernel to use (and advance) the file position.
const CURRENT_POSITION: u64 = u64::MAX;

fn offset_arg(offset: Option<u64>) -> u64 {
    offset.unwrap_or(CURRENT_POSITION)
}

/// The memory of a read or write: one buffer, or an iovec array the operation owns.
#[derive(Clone, Copy)]
enum Iov {
    One(OwnedPtr<u8>, usize),
    Many(OwnedPtr<libc::iovec>, usize),
}

/// `preadv2`/`pwritev2` on memory the operation owns, as raw values.
#[derive(Clone, Copy)]
struct RwCall {
    fd: RawFd,
    iov: Iov,
    offset: Option<u64>,
    write: bool,
}

impl Syscall for RwCall {
    fn run(self, nowait: bool) -> io::Result<u32> {
        let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
        let off = self.offset.map_or(-1, |o| o as libc::off_t);
        // A single buffer's iovec lives on this stack: the call copies it before returning.
        let one;
        let (iov, count) = match self.iov {
            Iov::One(base, len) => {
                one = libc::iovec { iov_base: base.get().cast(), iov_len: len };
                (&one as *const libc::iovec, 1)
            }
            Iov::Many(iov, count) => (iov.get().cast_const(), count as i32),
        };
        // SAFETY: `iov` points to `count` valid iovecs (on this stack, or owned by the
        // operation), each pointing into a buffer the operation owns, valid for its length until
        // completion (`OwnedPtr`'s contract).
        cvt_size(unsafe {
            if self.write {
                libc::pwritev2(self.fd, iov, count, off, flags)
            } else {
                libc::preadv2(self.fd, iov, count, off, flags)
            }
        })
    }
}

/// Reads into `buf` (up to its capacity) from the file position or from `offset`.
/// Output: the count read (`Ok(0)` at end of file) and the buffer, whose initialised length is set
/// to that count.
pub struct Read<F, B> {
    fd: F,
    buf: B,
    offset: Option<u64>,
    /// At most this many bytes (fault injection's short transfer; `usize::MAX` otherwise).
    limit: usize,
}

impl<F: IoFd, B: IoBufMut> Read<F, B> {
    /// A read at the file's current position (sockets, pipes, or a sequential file read).
    pub fn new(fd: F, buf: B) -> Self {
        Read { fd, buf, offset: None, limit: usize::MAX }
    }
    /// A positioned read (`pread`) that leaves the file position alone.
    pub fn at(fd: F, buf: B, offset: u64) -> Self {
        Read { fd, buf, offset: Some(offset), limit: usize::MAX }
    }
}

impl<F: IoFd, B: IoBufMut> OpCode for Read<F, B> {
    type Output = BufResult<usize, B>;
    const NAME: &'static str = "read";
}

impl<F: IoFd, B: IoBufMut> Read<F, B> {
    fn call(&mut self) -> RwCall {
        // SAFETY: the buffer is owned by this operation and, per `IoBufMut`, valid for
        // `bytes_total()` writable bytes at a fixed address while it lives.
        let base = unsafe { OwnedPtr::new(self.buf.stable_mut_ptr()) };
        let iov = Iov::One(base, self.buf.bytes_total().min(self.limit));
        RwCall { fd: self.fd.raw_fd(), iov, offset: self.offset, write: false }
    }
}

impl<F: IoFd, B: IoBufMut> Hooks for Read<F, B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_total().min(self.limit).min(u32::MAX as usize) as u32;
        opcode::Read::new(types::Fd(self.fd.raw_fd()), self.buf.stable_mut_ptr(), len)
            .offset(offset_arg(self.offset))
            .build()
    }

    fn emulation(&self) -> Emulation {
        Emulation::Readable(self.fd.raw_fd())
    }

    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.call().run(nowait)
    }

    fn blocking(&mut self) -> Option<BlockingCall> {
        Some(self.call().on_pool())
    }

    fn transfer_len(&self) -> Option<usize> {
        Some(self.buf.bytes_total().min(self.limit))
    }

    fn limit_transfer(&mut self, max: usize) {
        self.limit = max;
    }

    fn complete(mut self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        let res = res.map(|n| n as usize);
        if let Ok(n) = res {
            // SAFETY: the kernel wrote exactly `n` bytes from the start of the buffer.
            unsafe { self.buf.set_init(n) };
        }
        (res, self.buf)
    }
}

/// Writes the initialised bytes of `buf` at the file position or at `offset`.
/// Output: the count written (possibly short) and the buffer.
pub struct Write<F, B> {
    fd: F,
    buf: B,
    offset: Option<u64>,
    /// At most this many bytes (fault injection's short transfer; `usize::MAX` otherwise).
    limit: usize,
}

impl<F: IoFd, B: IoBuf> Write<F, B> {
    /// A write at the file's current position (sockets, pipes, append).
    pub fn new(fd: F, buf: B) -> Self {
        Write { fd, buf, offset: None, limit: usize::MAX }
    }
    /// A positioned write (`pwrite`).
    pub fn at(fd: F, buf: B, offset: u64) -> Self {
        Write { fd, buf, offset: Some(offset), limit: usize::MAX }
    }
}

impl<F: IoFd, B: IoBuf> OpCode for Write<F, B> {
    type Output = BufResult<usize, B>;
    const NAME: &'static str = "write";
}

impl<F: IoFd, B: IoBuf> Write<F, B> {
    fn call(&self) -> RwCall {
        // SAFETY: the buffer is owned by this operation and, per `IoBuf`, valid for
        // `bytes_init()` bytes at a fixed address while it lives; the call only reads them.
        let base = unsafe { OwnedPtr::new_const(self.buf.stable_ptr()) };
        let iov = Iov::One(base, self.buf.bytes_init().min(self.limit));
        RwCall { fd: self.fd.raw_fd(), iov, offset: self.offset, write: true }
    }
}

impl<F: IoFd, B: IoBuf> Hooks for Write<F, B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_init().min(self.limit).min(u32::MAX as usize) as u32;
        opcode::Write::new(types::Fd(self.fd.raw_fd()), self.buf.stable_ptr(), len)
            .offset(offset_arg(self.offset))
            .build()
    }

    fn emulation(&self) -> Emulation {
        Emulation::Writable(self.fd.raw_fd())
    }

    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.call().run(nowait)
    }

    fn blocking(&mut self) -> Option<BlockingCall> {
        Some(self.call().on_pool())
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

/// Reads into several buffers in order (`readv`), filling each to its capacity before the next.
pub struct Readv<F, V> {
    fd: F,
    bufs: V,
    iovecs: Vec<libc::iovec>,
    offset: Option<u64>,
}

impl<F: IoFd, V: IoVecBuf> Readv<F, V>
where
    V::Item: IoBufMut,
{
    /// A vectored read at `offset`, or at the file position when `None`.
    pub fn new(fd: F, mut bufs: V, offset: Option<u64>) -> Self {
        let iovecs = bufs
            .bufs_mut()
            .iter_mut()
            .map(|b| libc::iovec { iov_base: b.stable_mut_ptr().cast(), iov_len: b.bytes_total() })
            .collect();
        Readv { fd, bufs, iovecs, offset }
    }
}

impl<F: IoFd, V: IoVecBuf> OpCode for Readv<F, V>
where
    V::Item: IoBufMut,
{
    type Output = BufResult<usize, V>;
    const NAME: &'static str = "readv";
}

impl<F: IoFd, V: IoVecBuf> Readv<F, V>
where
    V::Item: IoBufMut,
{
    fn call(&mut self) -> RwCall {
        // SAFETY: the iovecs are owned by this operation (built from its buffers, which it owns
        // and which stay in place while they live) and are not changed until completion.
        let iov = unsafe { OwnedPtr::new(self.iovecs.as_mut_ptr()) };
        let iov = Iov::Many(iov, self.iovecs.len());
        RwCall { fd: self.fd.raw_fd(), iov, offset: self.offset, write: false }
    }
}

impl<F: IoFd, V: IoVecBuf> Hooks for Readv<F, V>
where
    V::Item: IoBufMut,
{
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Readv::new(
            types::Fd(self.fd.raw_fd()),
            self.iovecs.as_ptr(),
            self.iovecs.len() as u32,
        )
        .offset(offset_arg(self.offset))
        .build()
    }

    fn emulation(&self) -> Emulation {
        Emulation::Readable(self.fd.raw_fd())
    }

    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.call().run(nowait)
    }

    fn blocking(&mut self) -> Option<BlockingCall> {
        Some(self.call().on_pool())
    }

    fn complete(mut self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        if let Ok(n) = res {
            let mut left = n as usize;
            for b in self.bufs.bufs_mut() {
                let filled = left.min(b.bytes_total());
                // SAFETY: the kernel fills the iovecs in order, so this buffer's first `filled`
                // bytes were written.
                unsafe { b.set_init(filled) };
                left -= filled;
            }
        }
        (res.map(|n| n as usize), self.bufs)
    }
}

/// Writes several buffers in order (`writev`); a short count means a partial write.
pub struct Writev<F, V> {
    fd: F,
    bufs: V,
    iovecs: Vec<libc::iovec>,
    offset: Option<u64>,
}

impl<F: IoFd, V: IoVecBuf> Writev<F, V> {
    /// A vectored write at `offset`, or at the file position when `None`.
    pub fn new(fd: F, bufs: V, offset: Option<u64>) -> Self {
        let iovecs = bufs
            .bufs()
            .iter()
            .map(|b| libc::iovec { iov_base: b.stable_ptr() as *mut _, iov_len: b.bytes_init() })
            .collect();
        Writev { fd, bufs, iovecs, offset }
    }
}

impl<F: IoFd, V: IoVecBuf> OpCode for Writev<F, V> {
    type Output = BufResult<usize, V>;
    const NAME: &'static str = "writev";
}

impl<F: IoFd, V: IoVecBuf> Writev<F, V> {
    fn call(&mut self) -> RwCall {
        // SAFETY: the iovecs are owned by this operation (built from its buffers, which it owns
        // and which stay in place while they live) and are not changed until completion.
        let iov = unsafe { OwnedPtr::new(self.iovecs.as_mut_ptr()) };
        let iov = Iov::Many(iov, self.iovecs.len());
        RwCall { fd: self.fd.raw_fd(), iov, offset: self.offset, write: true }
    }
}

impl<F: IoFd, V: IoVecBuf> Hooks for Writev<F, V> {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Writev::new(
            types::Fd(self.fd.raw_fd()),
            self.iovecs.as_ptr(),
            self.iovecs.len() as u32,
        )
        .offset(offset_arg(self.offset))
        .build()
    }

    fn emulation(&self) -> Emulation {
        Emulation::Writable(self.fd.raw_fd())
    }

    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.call().run(nowait)
    }

    fn blocking(&mut self) -> Option<BlockingCall> {
        Some(self.call().on_pool())
    }

    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        (res.map(|n| n as usize), self.bufs)
    }
}
