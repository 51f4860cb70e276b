//! Copying one regular file: `--depth` reads and writes in flight at once, each on its own
//! block-sized chunk at its own offset, completing in any order. Each chunk is written at the
//! offset it was read from, so the copy is assembled correctly whatever the completion order.
//!
//! A large file is read as a few sequential streams (one open file description each, so each
//! keeps its own readahead window) and, unless `--buffered`, `--direct` or `--verify`, copied
//! chunk by chunk inside the kernel ([`KernelCopy`]); as each chunk lands, its write-back to the
//! device starts (`sync_file_range`), so the final `fsync` has little left to wait for.
//!
//! The data goes to a [`Staged`] temporary file; metadata (permissions, modification time) is
//! applied to it, it is synced, optionally verified against per-chunk SHA-256 hashes of the
//! source, and only then published over DST.

use super::alignbuf::{AlignedBuf, ALIGN};
use super::extents::{self, Chunk};
use super::kernel::{Chunked, KernelCopy};
use super::progress::Progress;
use super::staging::Staged;
use super::{interrupted, CopyError};
use proactor::buf::IoBuf;
use proactor::op::{self, Fsync, OpenAt, Read, Statx, SyncFileRange, Write};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// How one file is copied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bytes per read / write.
    pub block: usize,
    /// Operations (chunks) in flight at once.
    pub depth: usize,
    /// `O_DIRECT` on both files.
    pub direct: bool,
    /// Re-read the copy and compare hashes before publishing it.
    pub verify: bool,
    /// Always copy through user-space buffers, never inside the kernel (`copy_file_range`).
    pub buffered: bool,
    /// Sync and publish the file at once (a single copy); `false` leaves both to the caller
    /// (a tree copy syncs the whole filesystem once, then publishes every file).
    pub publish: bool,
}

/// What the source looked like when it was opened.
pub struct SourceInfo {
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Device and inode: identifies the file.
    pub id: (u64, u64),
    atime: libc::timespec,
    mtime: libc::timespec,
}

/// The metadata of an open descriptor.
pub async fn stat_fd(fd: RawFd) -> io::Result<libc::statx> {
    proactor::submit(Statx::fd(fd)).await
}

/// Device and inode of a `statx` record.
pub fn file_id(st: &libc::statx) -> (u64, u64) {
    (libc::makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino)
}

fn ts(t: &libc::statx_timestamp) -> libc::timespec {
    libc::timespec { tv_sec: t.tv_sec, tv_nsec: t.tv_nsec as _ }
}

/// Opens the source for reading and checks it is a regular file.
pub async fn open_source(src: &Path, direct: bool) -> Result<(Rc<OwnedFd>, SourceInfo), CopyError> {
    let flags = libc::O_RDONLY | if direct { libc::O_DIRECT } else { 0 };
    let open = OpenAt::new(libc::AT_FDCWD, src, flags, 0)
        .map_err(|e| CopyError::io(format!("cannot open source '{}'", src.display()), e))?;
    let fd = proactor::submit(open).await.map_err(|e| {
        if direct && op::raw_os_error(&e) == Some(libc::EINVAL) {
            CopyError::DirectRefused(src.to_path_buf())
        } else {
            CopyError::io(format!("cannot open source '{}'", src.display()), e)
        }
    })?;
    let st = stat_fd(fd.as_raw_fd())
        .await
        .map_err(|e| CopyError::io(format!("cannot stat source '{}'", src.display()), e))?;
    let kind = st.stx_mode as u32 & libc::S_IFMT;
    if kind == libc::S_IFDIR {
        return Err(CopyError::msg(format!(
            "source '{}' is a directory (use -r to copy a tree)",
            src.display()
        )));
    }
    if kind != libc::S_IFREG {
        return Err(CopyError::msg(format!("source '{}' is not a regular file", src.display())));
    }
    let info = SourceInfo {
        size: st.stx_size,
        mode: st.stx_mode as u32 & 0o7777,
        id: file_id(&st),
        atime: ts(&st.stx_atime),
        mtime: ts(&st.stx_mtime),
    };
    Ok((Rc::new(fd), info))
}

/// Everything the workers of one file share.
struct Job {
    dst: Rc<OwnedFd>,
    size: u64,
    chunks: Vec<Chunk>,
    /// The chunks cut into consecutive runs, one per read stream (see [`streams_for`]).
    streams: Vec<Stream>,
    direct: bool,
    /// Start write-back of each chunk as soon as it is written (see [`write_behind`]).
    write_behind: bool,
    /// Copies chunks inside the kernel, when used (see [`kernel_copy`]).
    kernel: Option<KernelCopy>,
    /// False once the kernel refused a chunk: buffers from then on.
    kernel_ok: Cell<bool>,
    /// SHA-256 of each chunk of the source, when verifying.
    hashes: Option<RefCell<Vec<[u8; 32]>>>,
    error: RefCell<Option<CopyError>>,
    src_path: PathBuf,
    dst_path: PathBuf,
    progress: Progress,
}

/// One run of consecutive chunks, read in order through its own open file description of the
/// source, so the kernel sees a plain sequential reader and keeps its readahead window wide.
struct Stream {
    src: Rc<OwnedFd>,
    next: Cell<usize>,
    end: usize,
}

impl Job {
    fn fail(&self, e: CopyError) {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
    }
    /// The next chunk to work on for a worker of stream `home` (another stream's when its own
    /// is done) and the source descriptor to read it through, or `None` when all are taken or
    /// the copy failed.
    fn take(&self, home: usize) -> Option<(usize, Chunk, usize)> {
        if self.error.borrow().is_some() {
            return None;
        }
        if interrupted() {
            self.fail(CopyError::Interrupted);
            return None;
        }
        let n = self.streams.len();
        (0..n).map(|k| (home + k) % n).find_map(|k| {
            let st = &self.streams[k];
            let i = st.next.get();
            if i >= st.end {
                return None;
            }
            st.next.set(i + 1);
            Some((i, self.chunks[i], k))
        })
    }
    /// Starts over (for the verifying pass).
    fn rewind(&self) {
        let n = self.streams.len();
        for (k, st) in self.streams.iter().enumerate() {
            st.next.set(self.chunks.len() * k / n);
        }
    }
    /// Bytes of `c` that lie inside the file (a direct-I/O chunk may reach past the end).
    fn data_len(&self, c: Chunk) -> usize {
        (c.len as u64).min(self.size.saturating_sub(c.offset)) as usize
    }
    fn shrank(&self) -> CopyError {
        CopyError::msg(format!(
            "source '{}' shrank while it was being copied",
            self.src_path.display()
        ))
    }
    fn read_error(&self, e: io::Error) -> CopyError {
        if self.direct && op::raw_os_error(&e) == Some(libc::EINVAL) {
            return CopyError::DirectRefused(self.src_path.clone());
        }
        CopyError::io(format!("error reading '{}'", self.src_path.display()), e)
    }
    fn write_error(&self, e: io::Error) -> CopyError {
        if self.direct && op::raw_os_error(&e) == Some(libc::EINVAL) {
            return CopyError::DirectRefused(self.dst_path.clone());
        }
        CopyError::io(format!("error writing '{}'", self.dst_path.display()), e)
    }
}

/// Reads `want` bytes at `offset` into the start of `buf`, continuing after short reads.
/// Returns the buffer and the count read (less than `want` only at end of file).
async fn read_full(
    fd: &Rc<OwnedFd>,
    mut buf: AlignedBuf,
    offset: u64,
    want: usize,
    request: usize,
) -> (io::Result<usize>, AlignedBuf) {
    let mut got = 0;
    while got < want {
        let (res, slice) =
            proactor::submit(Read::at(fd.clone(), buf.slice(got..request), offset + got as u64))
                .await;
        buf = slice.into_inner();
        match res {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if op::raw_os_error(&e) == Some(libc::EINTR) => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(got), buf)
}

/// Writes `buf[..len]` at `offset`, continuing after short writes.
async fn write_full(
    fd: &Rc<OwnedFd>,
    mut buf: AlignedBuf,
    offset: u64,
    len: usize,
) -> (io::Result<()>, AlignedBuf) {
    let mut done = 0;
    while done < len {
        let (res, slice) =
            proactor::submit(Write::at(fd.clone(), buf.slice(done..len), offset + done as u64))
                .await;
        buf = slice.into_inner();
        match res {
            Ok(0) => return (Err(io::Error::from(io::ErrorKind::WriteZero)), buf),
            Ok(n) => done += n,
            Err(e) if op::raw_os_error(&e) == Some(libc::EINTR) => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// One worker: takes chunks until none are left; reads each from the source and writes it to
/// the copy at the same offset.
async fn copy_worker(job: Rc<Job>, home: usize, mut buf: AlignedBuf) {
    while let Some((i, c, k)) = job.take(home) {
        let want = job.data_len(c);
        if let Some(kernel) = job.kernel.as_ref().filter(|_| job.kernel_ok.get()) {
            match kernel.chunk(k, c.offset, want).await {
                Ok(Chunked::Copied(n)) if n == want => {
                    job.progress.inc(n as u64);
                    continue;
                }
                Ok(Chunked::Copied(_)) => return job.fail(job.shrank()),
                Ok(Chunked::Unsupported(e)) => {
                    // Nothing was written: this chunk and the rest go through buffers.
                    tracing::debug!("copy_file_range refused ({e}); copying through buffers");
                    job.kernel_ok.set(false);
                }
                Err(e) => {
                    let what = format!(
                        "error copying '{}' to '{}'",
                        job.src_path.display(),
                        job.dst_path.display()
                    );
                    return job.fail(CopyError::io(what, e));
                }
            }
        }
        let (res, b) = read_full(&job.streams[k].src, buf, c.offset, want, c.len).await;
        buf = b;
        let got = match res {
            Ok(n) => n,
            Err(e) => return job.fail(job.read_error(e)),
        };
        if got < want {
            return job.fail(job.shrank());
        }
        if let Some(h) = &job.hashes {
            h.borrow_mut()[i] = Sha256::digest(&buf.as_slice()[..got]).into();
        }
        // Direct I/O writes whole blocks: zero the tail past the end of the file (it is
        // truncated away afterwards).
        let len = if job.direct {
            buf.as_mut_slice()[got..c.len].fill(0);
            c.len
        } else {
            got
        };
        let (res, b) = write_full(&job.dst, buf, c.offset, len).await;
        buf = b;
        if let Err(e) = res {
            return job.fail(job.write_error(e));
        }
        if job.write_behind {
            // Start writing this chunk to the device now, so the final fsync has little left
            // to wait for. Only a hint: the fsync reports any write error.
            // A range longer than the operation takes (a block of 4 GiB or more) is clamped:
            // a shorter hint, never a wrapped one.
            let hint = len.min(u32::MAX as usize) as u32;
            let _ = proactor::submit(SyncFileRange::write(job.dst.clone(), c.offset, hint)).await;
        }
        job.progress.inc(got as u64);
    }
}

/// One verifying worker: re-reads chunks of the copy and compares their hashes.
async fn verify_worker(job: Rc<Job>, home: usize, mut buf: AlignedBuf) {
    while let Some((i, c, _)) = job.take(home) {
        let want = job.data_len(c);
        let (res, b) = read_full(&job.dst, buf, c.offset, want, c.len).await;
        buf = b;
        let got = match res {
            Ok(n) => n,
            Err(e) => {
                let e = CopyError::io(format!("error re-reading '{}'", job.dst_path.display()), e);
                return job.fail(e);
            }
        };
        let hash: [u8; 32] = Sha256::digest(&buf.as_slice()[..got]).into();
        let expected = job.hashes.as_ref().expect("verify has hashes").borrow()[i];
        if got < want || hash != expected {
            return job
                .fail(CopyError::VerifyFailed { dst: job.dst_path.clone(), offset: c.offset });
        }
        job.progress.inc(got as u64);
    }
}

/// Runs `workers` copies of a worker over the job's chunks and waits for all of them.
async fn run_workers(job: &Rc<Job>, workers: usize, block: usize, verify: bool) {
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let buf = AlignedBuf::new(block);
        let job = job.clone();
        let home = w % job.streams.len();
        handles.push(if verify {
            proactor::spawn(verify_worker(job, home, buf))
        } else {
            proactor::spawn(copy_worker(job, home, buf))
        });
    }
    for h in handles {
        if h.await.is_err() {
            job.fail(CopyError::msg("a copy worker panicked".to_string()));
        }
    }
}

fn sys(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Files at least this large are read as several sequential streams.
const STREAMS_MIN: u64 = 64 << 20;

/// How many sequential read streams to cut a file into. One reader at a time through one open
/// file keeps the kernel's readahead working on one window; a virtual or striped disk serves
/// two to four such windows at once faster than one (measured: a 2 GiB file evicted from the
/// page cache read by one `dd` in 3.3 s, by two on halves in 2.2 s, by four in 2.0 s).
fn streams_for(settings: &Settings, size: u64, workers: usize) -> usize {
    if settings.direct || size < STREAMS_MIN {
        return 1;
    }
    workers.min(4)
}

/// The source's read streams: the first reuses `src`, the others reopen the same file (through
/// `/proc/self/fd`, so a rename of SRC meanwhile cannot substitute another file; any failure
/// just means fewer streams). Each asks for sequential readahead.
fn open_streams(
    src: &Rc<OwnedFd>,
    info: &SourceInfo,
    settings: &Settings,
    chunks: usize,
    workers: usize,
) -> Vec<Stream> {
    let want = streams_for(settings, info.size, workers).min(chunks.max(1));
    let mut fds = vec![src.clone()];
    while fds.len() < want {
        match reopen(src.as_raw_fd(), info.id) {
            Some(fd) => fds.push(Rc::new(fd)),
            None => break,
        }
    }
    let n = fds.len();
    fds.into_iter()
        .enumerate()
        .map(|(k, src)| {
            if !settings.direct {
                // SAFETY: posix_fadvise takes no pointers.
                unsafe { libc::posix_fadvise(src.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
            }
            Stream { src, next: Cell::new(chunks * k / n), end: chunks * (k + 1) / n }
        })
        .collect()
}

/// A second open file description of the open file `fd` (read-only), checked to be the same
/// file (`id`: device and inode).
fn reopen(fd: RawFd, id: (u64, u64)) -> Option<OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    // std opens read-only and close-on-exec.
    let file = std::fs::File::open(format!("/proc/self/fd/{fd}")).ok()?;
    let meta = file.metadata().ok()?;
    ((meta.dev(), meta.ino()) == id).then(|| file.into())
}

/// Whether to copy inside the kernel ([`KernelCopy`]): a large file (as for several streams),
/// not with `--direct` (its own aligned path) nor `--verify` (which hashes the source's bytes as
/// they pass through user memory), nor with `--buffered`. A pool that cannot be started means buffers.
fn kernel_copy(
    settings: &Settings,
    size: u64,
    streams: &[Stream],
    dst: &Rc<OwnedFd>,
    depth: usize,
    write_behind: bool,
) -> Option<KernelCopy> {
    if settings.buffered || settings.direct || settings.verify || size < STREAMS_MIN {
        return None;
    }
    let srcs: Vec<&OwnedFd> = streams.iter().map(|s| &*s.src).collect();
    KernelCopy::new(&srcs, dst, depth, write_behind)
        .map_err(|e| tracing::debug!("no copy threads ({e}); copying through buffers"))
        .ok()
}

/// Files at least this large start write-back chunk by chunk while they are copied.
const WRITE_BEHIND_MIN: u64 = 8 << 20;

/// Whether to start write-back of each chunk as soon as it is written (`sync_file_range`
/// `SYNC_FILE_RANGE_WRITE`): for a large file synced at the end of its own copy. Under the
/// kernel's dirty-page thresholds nothing would reach the device until the final `fsync`, which
/// would then wait for the whole file while the source's device sat idle; started early, the
/// writes overlap the reads. Not for `--direct` (its writes reach the device already), nor for
/// a tree's small files (synced together with one `syncfs`).
fn write_behind(settings: &Settings, size: u64) -> bool {
    settings.publish && !settings.direct && size >= WRITE_BEHIND_MIN
}

/// Test hook, only with the `test-hooks` feature: `PROACTOR_COPY_FAULT=flip-byte` corrupts one
/// byte of the written copy after it was synced and before it is verified, so a test can prove
/// `--verify` catches corruption. (Faults a kernel may produce come from `PROACTOR_FAULTS`;
/// silent corruption on the device is not one of them.)
#[cfg(feature = "test-hooks")]
fn inject_fault(fd: RawFd, size: u64) {
    if size == 0 || std::env::var("PROACTOR_COPY_FAULT").as_deref() != Ok("flip-byte") {
        return;
    }
    let at = (size / 2) as libc::off_t;
    let mut b = [0u8; 1];
    // SAFETY: `b` is a valid one-byte buffer for both calls.
    unsafe {
        if libc::pread(fd, b.as_mut_ptr().cast(), 1, at) == 1 {
            b[0] ^= 0xff;
            libc::pwrite(fd, b.as_ptr().cast(), 1, at);
        }
    }
}

/// Copies the open source to `dst_name` in the directory `dir`. With `settings.publish` the
/// copy is synced and renamed over DST and `None` returned; otherwise the staged file is handed
/// back, its data written but neither synced nor published.
#[allow(clippy::too_many_arguments)]
pub async fn copy_open(
    src: Rc<OwnedFd>,
    info: &SourceInfo,
    src_path: &Path,
    dir: Rc<OwnedFd>,
    dst_name: &OsStr,
    dst_path: &Path,
    settings: &Settings,
    progress: &Progress,
) -> Result<Option<Staged>, CopyError> {
    let dst_err =
        |what: &str, e: io::Error| CopyError::io(format!("{what} '{}'", dst_path.display()), e);
    let extra = if settings.direct { libc::O_DIRECT } else { 0 };
    let mut staged =
        Staged::create(dir.clone(), dst_name, settings.publish, extra).await.map_err(|e| {
            if settings.direct && op::raw_os_error(&e) == Some(libc::EINVAL) {
                CopyError::DirectRefused(dst_path.to_path_buf())
            } else {
                dst_err("cannot create a temporary file for", e)
            }
        })?;
    let dst = staged.fd();

    let extents = extents::data_extents(src.as_raw_fd(), info.size)
        .map_err(|e| CopyError::io(format!("cannot map '{}'", src_path.display()), e))?;
    let align = settings.direct.then_some(ALIGN as u64);
    let chunks = extents::chunks(&extents, settings.block, align);
    let workers = settings.depth.min(chunks.len()).max(1);
    let block = settings.block.min(info.size.div_ceil(ALIGN as u64) as usize * ALIGN).max(ALIGN);
    let hashes = settings.verify.then(|| RefCell::new(vec![[0u8; 32]; chunks.len()]));
    let streams = open_streams(&src, info, settings, chunks.len(), workers);
    let write_behind = write_behind(settings, info.size);
    let kernel = kernel_copy(settings, info.size, &streams, &dst, workers, write_behind);
    let job = Rc::new(Job {
        dst: dst.clone(),
        size: info.size,
        chunks,
        streams,
        direct: settings.direct,
        write_behind,
        kernel,
        kernel_ok: Cell::new(true),
        hashes,
        error: RefCell::new(None),
        src_path: src_path.to_path_buf(),
        dst_path: dst_path.to_path_buf(),
        progress: progress.clone(),
    });
    if !job.chunks.is_empty() {
        run_workers(&job, workers, block, false).await;
    }
    if let Some(e) = job.error.borrow_mut().take() {
        return Err(e);
    }

    let fd = dst.as_raw_fd();
    // The size (holes at the end, the direct-I/O tail), permissions and times of the source.
    let last_end = job.chunks.last().map_or(0, |c| c.offset + c.len as u64);
    if last_end != info.size {
        // SAFETY: ftruncate takes no pointers.
        sys(unsafe { libc::ftruncate(fd, info.size as libc::off_t) })
            .map_err(|e| dst_err("cannot set the size of", e))?;
    }
    // SAFETY: fchmod takes no pointers.
    sys(unsafe { libc::fchmod(fd, info.mode) })
        .map_err(|e| dst_err("cannot set permissions of", e))?;
    let times = [info.atime, info.mtime];
    // SAFETY: `times` is an array of two timespecs, as futimens requires.
    sys(unsafe { libc::futimens(fd, times.as_ptr()) })
        .map_err(|e| dst_err("cannot set times of", e))?;

    if !settings.publish {
        staged.close().map_err(|e| dst_err("cannot stage", e))?;
        return Ok(Some(staged));
    }
    progress.phase("syncing");
    proactor::submit(Fsync::new(dst.clone())).await.map_err(|e| dst_err("cannot sync", e))?;
    #[cfg(feature = "test-hooks")]
    inject_fault(fd, info.size);

    if settings.verify {
        progress.phase("verifying");
        // Drop the cached pages so the check reads what reached the device.
        // SAFETY: posix_fadvise takes no pointers.
        unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
        job.rewind();
        if !job.chunks.is_empty() {
            run_workers(&job, workers, block, true).await;
        }
        if let Some(e) = job.error.borrow_mut().take() {
            return Err(e);
        }
    }
    drop(job);
    drop(dst);
    staged.publish().map_err(|e| dst_err("cannot rename the copy to", e))?;
    // Make the rename itself durable.
    proactor::submit(Fsync::new(dir))
        .await
        .map_err(|e| dst_err("cannot sync the directory of", e))?;
    Ok(None)
}

/// Describes an open failure of the destination directory.
pub fn dir_error(dir: &Path, e: io::Error) -> CopyError {
    match op::raw_os_error(&e) {
        Some(libc::ENOENT) => {
            CopyError::msg(format!("destination directory '{}' does not exist", dir.display()))
        }
        _ => CopyError::io(format!("cannot open destination directory '{}'", dir.display()), e),
    }
}

/// Opens a directory as a handle for `*at` calls.
pub async fn open_dir(dir: &Path) -> io::Result<Rc<OwnedFd>> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY;
    let fd = proactor::submit(OpenAt::new(libc::AT_FDCWD, dir, flags, 0)?).await?;
    Ok(Rc::new(fd))
}
