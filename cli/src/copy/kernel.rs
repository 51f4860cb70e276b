//! Copying chunks inside the kernel: `copy_file_range(2)` on pool threads.
//!
//! The buffered path reads each chunk into user memory and writes it back out: two copies and
//! two operations per chunk, all of it CPU time on a machine whose cores may be busy. The kernel
//! can move the bytes from the source's page cache to the copy's in one step (what GNU cp does,
//! in one call for the whole file). io_uring has no `copy_file_range` operation, so each chunk
//! is one job on a small [`BlockingPool`] — one thread per read stream, `--depth` chunks in
//! flight — whose result comes back through the proactor like an operation's. Chunks still
//! complete in any order, each landing at its own offset.
//!
//! Some filesystem pairs refuse (`EXDEV` across filesystems on some kernels, `EINVAL` /
//! `EOPNOTSUPP` where a filesystem lacks support): the first chunk says so before any byte
//! moved, and the caller copies through buffers instead.

use proactor::offload::BlockingPool;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// Copies chunks with `copy_file_range` on its own pool threads.
pub struct KernelCopy {
    pool: BlockingPool,
    /// One descriptor per read stream (each its own open file description, so each keeps its
    /// own readahead window), shared with the jobs: a job never outlives the descriptor it uses,
    /// even if the copy is abandoned while the job runs.
    srcs: Vec<Arc<OwnedFd>>,
    dst: Arc<OwnedFd>,
    write_behind: bool,
}

/// How a chunk went.
pub enum Chunked {
    /// This many bytes were copied (fewer than asked only at the source's end).
    Copied(usize),
    /// The kernel cannot copy between these files; nothing was written.
    Unsupported(io::Error),
}

impl KernelCopy {
    /// A copier from the source streams `srcs` (descriptors duplicated here) to `dst`, with
    /// `depth` chunks queued at most. `write_behind` starts write-back of each chunk once copied.
    pub fn new(
        srcs: &[&OwnedFd],
        dst: &OwnedFd,
        depth: usize,
        write_behind: bool,
    ) -> io::Result<KernelCopy> {
        let srcs: Vec<Arc<OwnedFd>> =
            srcs.iter().map(|fd| fd.try_clone().map(Arc::new)).collect::<io::Result<_>>()?;
        let dst = Arc::new(dst.try_clone()?);
        let pool = BlockingPool::new(srcs.len().max(1), depth.max(1))?;
        Ok(KernelCopy { pool, srcs, dst, write_behind })
    }

    /// Copies `len` bytes at `offset` of source stream `stream` to the same offset of the copy.
    pub async fn chunk(&self, stream: usize, offset: u64, len: usize) -> io::Result<Chunked> {
        let src = self.srcs[stream % self.srcs.len()].clone();
        let dst = self.dst.clone();
        let write_behind = self.write_behind;
        self.pool
            .offload(move || copy_range(&src, &dst, offset, len, write_behind))
            .await
            .map_err(|_| io::Error::other("a copy thread panicked"))?
    }
}

/// The blocking part of [`KernelCopy::chunk`], on a pool thread.
fn copy_range(
    src: &OwnedFd,
    dst: &OwnedFd,
    offset: u64,
    len: usize,
    write_behind: bool,
) -> io::Result<Chunked> {
    let mut done = 0usize;
    while done < len {
        let mut off_in = (offset + done as u64) as libc::loff_t;
        let mut off_out = off_in;
        // SAFETY: both offsets are valid, writable locals; the descriptors are open (owned by
        // the Arcs this job holds).
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                len - done,
                0,
            )
        };
        match n {
            0 => break, // end of the source
            n if n > 0 => done += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS)
                        if done == 0 =>
                    {
                        return Ok(Chunked::Unsupported(e))
                    }
                    _ => return Err(e),
                }
            }
        }
    }
    if write_behind && done > 0 {
        // Only a hint (see `file::write_behind`): the final fsync reports write errors. This is
        // a pool thread, so the call is made here directly.
        let len = done.min(u32::MAX as usize) as libc::off64_t;
        // SAFETY: sync_file_range takes no pointers.
        let _ = unsafe {
            libc::sync_file_range(
                dst.as_raw_fd(),
                offset as libc::off64_t,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
    }
    Ok(Chunked::Copied(done))
}
