//! Operations on descriptors and paths: open, close, fsync, statx.

use super::raw::OwnedPtr;
use super::sealed::Hooks;
use super::{cvt, BlockingCall, Emulation, OpCode};
use crate::fd::IoFd;
use io_uring::{opcode, squeue, types};
use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

fn path_to_cstring(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "path contains an interior NUL byte")
    })
}

/// Closes a descriptor. It takes ownership, so the number cannot be used after this starts.
pub struct Close {
    fd: RawFd,
}

impl Close {
    /// Close `fd`.
    pub fn new(fd: OwnedFd) -> Self {
        Close { fd: fd.into_raw_fd() }
    }
}

impl OpCode for Close {
    type Output = io::Result<()>;
    const NAME: &'static str = "close";
}

impl Hooks for Close {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Close::new(types::Fd(self.fd)).build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Now
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        // SAFETY: this operation owns `fd` (taken from an OwnedFd) and closes it once.
        cvt(unsafe { libc::close(self.fd) })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // Performed at once on the loop's thread (`Emulation::Now`/`Timer`); never pooled.
        None
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res.map(drop)
    }
}

/// Opens a file relative to a directory fd (`libc::AT_FDCWD` for the working directory).
/// Always close-on-exec. If nobody takes the result, the new descriptor is closed.
pub struct OpenAt {
    dirfd: RawFd,
    path: CString,
    flags: i32,
    mode: u32,
}

impl OpenAt {
    /// Open `path` with `O_*` `flags` and `mode` for a created file.
    pub fn new(dirfd: RawFd, path: &Path, flags: i32, mode: u32) -> io::Result<Self> {
        Ok(OpenAt { dirfd, path: path_to_cstring(path)?, flags: flags | libc::O_CLOEXEC, mode })
    }
}

impl OpCode for OpenAt {
    type Output = io::Result<OwnedFd>;
    const NAME: &'static str = "openat";
}

impl Hooks for OpenAt {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::OpenAt::new(types::Fd(self.dirfd), self.path.as_ptr())
            .flags(self.flags)
            .mode(self.mode)
            .build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Blocking
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        // SAFETY: `path` is a NUL-terminated string owned by the operation.
        cvt(unsafe { libc::openat(self.dirfd, self.path.as_ptr(), self.flags, self.mode) })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        let (dirfd, flags, mode) = (self.dirfd, self.flags, self.mode);
        // SAFETY: `path` is a NUL-terminated string owned by the operation, which keeps it (its
        // heap block never moves) until completion.
        let path = unsafe { OwnedPtr::new_const(self.path.as_ptr()) };
        Some(BlockingCall::new(move || {
            // SAFETY: `path` is valid and NUL-terminated until completion (above).
            cvt(unsafe { libc::openat(dirfd, path.get(), flags, mode) })
        }))
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        // SAFETY: a successful open returns a new descriptor that nothing else owns.
        res.map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// Flushes a file to its device: all of it (`fsync`) or data only (`fdatasync`).
pub struct Fsync<F> {
    fd: F,
    data_only: bool,
}

impl<F: IoFd> Fsync<F> {
    /// `fsync(fd)`.
    pub fn new(fd: F) -> Self {
        Fsync { fd, data_only: false }
    }
    /// `fdatasync(fd)`.
    pub fn data(fd: F) -> Self {
        Fsync { fd, data_only: true }
    }
}

impl<F: IoFd> OpCode for Fsync<F> {
    type Output = io::Result<()>;
    const NAME: &'static str = "fsync";
}

impl<F: IoFd> Hooks for Fsync<F> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let flags =
            if self.data_only { types::FsyncFlags::DATASYNC } else { types::FsyncFlags::empty() };
        opcode::Fsync::new(types::Fd(self.fd.raw_fd())).flags(flags).build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Blocking
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        fsync(self.fd.raw_fd(), self.data_only)
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        let (fd, data_only) = (self.fd.raw_fd(), self.data_only);
        Some(BlockingCall::new(move || fsync(fd, data_only)))
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res.map(drop)
    }
}

fn fsync(fd: RawFd, data_only: bool) -> io::Result<u32> {
    // SAFETY: fsync/fdatasync take no pointers.
    cvt(unsafe {
        if data_only {
            libc::fdatasync(fd)
        } else {
            libc::fsync(fd)
        }
    })
}

/// Reads file metadata (`statx`), of a path or, with [`Statx::fd`], of an open descriptor.
pub struct Statx {
    dirfd: RawFd,
    path: CString,
    flags: i32,
    buf: Box<libc::statx>,
}

impl Statx {
    /// Metadata of `path` (relative to `dirfd`), following symlinks.
    pub fn path(dirfd: RawFd, path: &Path) -> io::Result<Self> {
        Ok(Self::with(dirfd, path_to_cstring(path)?, 0))
    }
    /// Metadata of `path` itself when it is a symlink.
    pub fn symlink(dirfd: RawFd, path: &Path) -> io::Result<Self> {
        Ok(Self::with(dirfd, path_to_cstring(path)?, libc::AT_SYMLINK_NOFOLLOW))
    }
    /// Metadata of an open descriptor. The caller keeps `fd` open until this completes.
    pub fn fd(fd: RawFd) -> Self {
        Self::with(fd, CString::default(), libc::AT_EMPTY_PATH)
    }
    fn with(dirfd: RawFd, path: CString, flags: i32) -> Self {
        // SAFETY: statx is plain data; all-zero is a valid value.
        let buf = Box::new(unsafe { std::mem::zeroed::<libc::statx>() });
        Statx { dirfd, path, flags, buf }
    }
}

impl OpCode for Statx {
    type Output = io::Result<libc::statx>;
    const NAME: &'static str = "statx";
}

impl Hooks for Statx {
    fn uring_entry(&mut self) -> squeue::Entry {
        let out: *mut libc::statx = &mut *self.buf;
        opcode::Statx::new(types::Fd(self.dirfd), self.path.as_ptr(), out.cast())
            .flags(self.flags)
            .mask(libc::STATX_ALL)
            .build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Blocking
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        // SAFETY: path is NUL-terminated and `buf` is a statx record, both owned by the operation.
        cvt(unsafe {
            libc::statx(self.dirfd, self.path.as_ptr(), self.flags, libc::STATX_ALL, &mut *self.buf)
        })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        let (dirfd, flags) = (self.dirfd, self.flags);
        // SAFETY: the path and the statx record are owned by the operation (the record is
        // boxed, the string's heap block never moves) and stay in place until completion.
        let (path, out) = unsafe {
            (OwnedPtr::new_const(self.path.as_ptr()), OwnedPtr::new(&mut *self.buf as *mut _))
        };
        Some(BlockingCall::new(move || {
            // SAFETY: both pointers are valid until completion (above).
            cvt(unsafe { libc::statx(dirfd, path.get(), flags, libc::STATX_ALL, out.get()) })
        }))
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res.map(|_| *self.buf)
    }
}
