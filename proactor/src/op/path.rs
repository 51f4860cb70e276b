//! Operations on paths: remove (`unlinkat`), rename (`renameat`), create a directory
//! (`mkdirat`). The epoll emulation runs them on the blocking pool, as they may block on disk.

use super::raw::OwnedPtr;
use super::sealed::Hooks;
use super::{cvt, BlockingCall, Emulation, OpCode};
use io_uring::{opcode, squeue, types};
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

fn cstring(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "path contains an interior NUL byte")
    })
}

/// Removes a file, or with [`UnlinkAt::dir`] an empty directory, relative to `dirfd`
/// (`libc::AT_FDCWD` for the working directory).
pub struct UnlinkAt {
    dirfd: RawFd,
    path: CString,
    flags: i32,
}

impl UnlinkAt {
    /// Remove the file at `path`.
    pub fn file(dirfd: RawFd, path: &Path) -> io::Result<Self> {
        Ok(UnlinkAt { dirfd, path: cstring(path)?, flags: 0 })
    }
    /// Remove the empty directory at `path`.
    pub fn dir(dirfd: RawFd, path: &Path) -> io::Result<Self> {
        Ok(UnlinkAt { dirfd, path: cstring(path)?, flags: libc::AT_REMOVEDIR })
    }
}

impl OpCode for UnlinkAt {
    type Output = io::Result<()>;
    const NAME: &'static str = "unlinkat";
}

impl Hooks for UnlinkAt {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::UnlinkAt::new(types::Fd(self.dirfd), self.path.as_ptr()).flags(self.flags).build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Blocking
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        // SAFETY: `path` is a NUL-terminated string owned by the operation.
        cvt(unsafe { libc::unlinkat(self.dirfd, self.path.as_ptr(), self.flags) })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        let (dirfd, flags) = (self.dirfd, self.flags);
        // SAFETY: `path` is owned by the operation (its heap block never moves) until completion.
        let path = unsafe { OwnedPtr::new_const(self.path.as_ptr()) };
        Some(BlockingCall::new(move || {
            // SAFETY: `path` is valid and NUL-terminated until completion (above).
            cvt(unsafe { libc::unlinkat(dirfd, path.get(), flags) })
        }))
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res.map(drop)
    }
}

/// Renames `from` to `to` (both relative to the working directory), replacing `to` if it
/// exists.
pub struct RenameAt {
    from: CString,
    to: CString,
}

impl RenameAt {
    /// Rename `from` to `to`.
    pub fn new(from: &Path, to: &Path) -> io::Result<Self> {
        Ok(RenameAt { from: cstring(from)?, to: cstring(to)? })
    }
}

impl OpCode for RenameAt {
    type Output = io::Result<()>;
    const NAME: &'static str = "renameat";
}

impl Hooks for RenameAt {
    fn uring_entry(&mut self) -> squeue::Entry {
        let cwd = types::Fd(libc::AT_FDCWD);
        opcode::RenameAt::new(cwd, self.from.as_ptr(), cwd, self.to.as_ptr()).build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Blocking
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        let cwd = libc::AT_FDCWD;
        // SAFETY: both paths are NUL-terminated strings owned by the operation.
        cvt(unsafe { libc::renameat(cwd, self.from.as_ptr(), cwd, self.to.as_ptr()) })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // SAFETY: both paths are owned by the operation (their heap blocks never move) until
        // completion.
        let (from, to) = unsafe {
            (OwnedPtr::new_const(self.from.as_ptr()), OwnedPtr::new_const(self.to.as_ptr()))
        };
        Some(BlockingCall::new(move || {
            let cwd = libc::AT_FDCWD;
            // SAFETY: both paths are valid and NUL-terminated until completion (above).
            cvt(unsafe { libc::renameat(cwd, from.get(), cwd, to.get()) })
        }))
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res.map(drop)
    }
}

/// Creates a directory with permission bits `mode` (before the umask).
pub struct MkdirAt {
    dirfd: RawFd,
    path: CString,
    mode: u32,
}

impl MkdirAt {
    /// Create the directory `path` relative to `dirfd` (`libc::AT_FDCWD`: working directory).
    pub fn new(dirfd: RawFd, path: &Path, mode: u32) -> io::Result<Self> {
        Ok(MkdirAt { dirfd, path: cstring(path)?, mode })
    }
}

impl OpCode for MkdirAt {
    type Output = io::Result<()>;
    const NAME: &'static str = "mkdirat";
}

impl Hooks for MkdirAt {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::MkDirAt::new(types::Fd(self.dirfd), self.path.as_ptr()).mode(self.mode).build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Blocking
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        // SAFETY: `path` is a NUL-terminated string owned by the operation.
        cvt(unsafe { libc::mkdirat(self.dirfd, self.path.as_ptr(), self.mode as libc::mode_t) })
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        let (dirfd, mode) = (self.dirfd, self.mode as libc::mode_t);
        // SAFETY: `path` is owned by the operation (its heap block never moves) until completion.
        let path = unsafe { OwnedPtr::new_const(self.path.as_ptr()) };
        Some(BlockingCall::new(move || {
            // SAFETY: `path` is valid and NUL-terminated until completion (above).
            cvt(unsafe { libc::mkdirat(dirfd, path.get(), mode) })
        }))
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res.map(drop)
    }
}
