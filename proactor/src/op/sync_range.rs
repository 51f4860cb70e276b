//! Starting (or waiting for) write-back of a byte range of a file: `sync_file_range(2)`.
//!
//! A copier that writes gigabytes into the page cache and fsyncs at the end leaves the device
//! idle while it writes and then waits for all of it at once; asking for write-back of each range
//! as soon as it is written (`SYNC_FILE_RANGE_WRITE`) overlaps the device's work with the rest of
//! the copy. It guarantees nothing about durability (no metadata, no cache flush): `fsync` still
//! does that, only faster.

use super::sealed::Hooks;
use super::{cvt, BlockingCall, Emulation, OpCode};
use crate::fd::IoFd;
use io_uring::{opcode, squeue, types};
use std::io;

/// `sync_file_range(fd, offset, len, flags)`; `flags` are `libc::SYNC_FILE_RANGE_*`.
pub struct SyncFileRange<F> {
    fd: F,
    offset: u64,
    len: u32,
    flags: u32,
}

impl<F: IoFd> SyncFileRange<F> {
    /// Starts write-back of the dirty pages in `offset..offset + len` that are not already
    /// being written (`SYNC_FILE_RANGE_WRITE`); does not wait for it to finish.
    pub fn write(fd: F, offset: u64, len: u32) -> Self {
        SyncFileRange { fd, offset, len, flags: libc::SYNC_FILE_RANGE_WRITE }
    }
    /// The same range with explicit `SYNC_FILE_RANGE_*` flags (for example adding
    /// `SYNC_FILE_RANGE_WAIT_BEFORE` to wait for earlier write-back first).
    pub fn with_flags(fd: F, offset: u64, len: u32, flags: u32) -> Self {
        SyncFileRange { fd, offset, len, flags }
    }
}

impl<F: IoFd> OpCode for SyncFileRange<F> {
    type Output = io::Result<()>;
    const NAME: &'static str = "sync_file_range";
}

impl<F: IoFd> Hooks for SyncFileRange<F> {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::SyncFileRange::new(types::Fd(self.fd.raw_fd()), self.len)
            .offset(self.offset)
            .flags(self.flags)
            .build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Blocking
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        sync_file_range(self.fd.raw_fd(), self.offset, self.len, self.flags)
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        let (fd, offset, len, flags) = (self.fd.raw_fd(), self.offset, self.len, self.flags);
        Some(BlockingCall::new(move || sync_file_range(fd, offset, len, flags)))
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res.map(drop)
    }
}

fn sync_file_range(fd: std::os::fd::RawFd, offset: u64, len: u32, flags: u32) -> io::Result<u32> {
    // SAFETY: sync_file_range takes no pointers.
    cvt(unsafe { libc::sync_file_range(fd, offset as libc::off64_t, len as libc::off64_t, flags) })
}
