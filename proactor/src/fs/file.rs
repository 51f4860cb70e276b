//! `File`: positioned reads and writes (and their exact / all forms), sync, metadata.
//!
//! On io_uring every call is a kernel operation; the epoll emulation runs them on its blocking
//! pool, since regular files are always "ready" to epoll and a read may still block on the disk.

use super::{Metadata, OpenOptions};
use crate::buf::{IoBuf, IoBufMut, IoVecBuf};
use crate::io::{copy, read_exact, read_to_end, write_all, AsyncReadOwned, AsyncWriteOwned};
use crate::op::{Close, Emulation, Fsync, OpCode, Read, Readv, Statx, Write, Writev};
use crate::{submit, BufResult, Op};
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;

/// An open file.
///
/// ```
/// use proactor::fs::File;
/// let p = proactor::Proactor::new()?;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("a.txt");
/// p.block_on(async {
///     let f = File::options().read(true).write(true).create(true).open(&path).await?;
///     let (res, _) = f.write_all_at(b"hello world".as_slice(), 0).await;
///     res?;
///     let (res, buf) = f.read_exact_at(Vec::with_capacity(5), 6).await;
///     res?;
///     assert_eq!(buf, b"world");
///     assert_eq!(f.metadata().await?.len(), 11);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct File {
    fd: Rc<OwnedFd>,
}

impl File {
    pub(crate) fn from_owned(fd: OwnedFd) -> File {
        File { fd: Rc::new(fd) }
    }

    /// Opens `path` for reading.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens `path` for writing only, creating it or truncating it.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().write(true).create(true).truncate(true).open(path).await
    }

    /// Options for opening a file.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Wraps an open `std` file.
    pub fn from_std(file: std::fs::File) -> File {
        File { fd: Rc::new(file.into()) }
    }

    /// Reads into `buf` (up to its capacity) at `offset`. `Ok(0)` at or past the end of file.
    pub fn read_at<B: IoBufMut>(&self, buf: B, offset: u64) -> Op<Read<Rc<OwnedFd>, B>> {
        submit(Read::at(self.fd.clone(), buf, offset))
    }

    /// Writes the initialised bytes of `buf` at `offset`; the count may be short.
    pub fn write_at<B: IoBuf>(&self, buf: B, offset: u64) -> Op<Write<Rc<OwnedFd>, B>> {
        submit(Write::at(self.fd.clone(), buf, offset))
    }

    /// Reads into several buffers in order, starting at `offset`.
    pub fn readv_at<V>(&self, bufs: V, offset: u64) -> Op<Readv<Rc<OwnedFd>, V>>
    where
        V: IoVecBuf,
        V::Item: IoBufMut,
    {
        submit(Readv::new(self.fd.clone(), bufs, Some(offset)))
    }

    /// Writes several buffers in order, starting at `offset`.
    pub fn writev_at<V: IoVecBuf>(&self, bufs: V, offset: u64) -> Op<Writev<Rc<OwnedFd>, V>> {
        submit(Writev::new(self.fd.clone(), bufs, Some(offset)))
    }

    /// Fills `buf` (all of `bytes_total()`) from `offset`, however many reads it takes. The end
    /// of file first is an `UnexpectedEof` error.
    pub async fn read_exact_at<B: IoBufMut>(&self, buf: B, offset: u64) -> BufResult<(), B> {
        read_exact(&mut At { file: self, offset }, buf).await
    }

    /// Writes every initialised byte of `buf` at `offset`, however many writes it takes.
    pub async fn write_all_at<B: IoBuf>(&self, buf: B, offset: u64) -> BufResult<(), B> {
        write_all(&mut At { file: self, offset }, buf).await
    }

    /// Reads at the file position (and advances it).
    pub fn read<B: IoBufMut>(&self, buf: B) -> Op<Read<Rc<OwnedFd>, B>> {
        submit(Read::new(self.fd.clone(), buf))
    }

    /// Writes at the file position (and advances it; at the end with `append`).
    pub fn write<B: IoBuf>(&self, buf: B) -> Op<Write<Rc<OwnedFd>, B>> {
        submit(Write::new(self.fd.clone(), buf))
    }

    /// Fills `buf` (all of `bytes_total()`) from the file position, however many reads it takes
    /// (and advances the position). The end of file first is an `UnexpectedEof` error; the buffer
    /// comes back holding what did arrive.
    pub async fn read_exact<B: IoBufMut>(&self, buf: B) -> BufResult<(), B> {
        read_exact(&mut &*self, buf).await
    }

    /// Reads from the file position to the end of file, appending to `buf`; returns the count
    /// appended (see [`crate::io::read_to_end`]).
    pub async fn read_to_end(&self, buf: Vec<u8>) -> BufResult<usize, Vec<u8>> {
        read_to_end(&mut &*self, buf).await
    }

    /// Writes every initialised byte of `buf` at the file position, however many writes it takes.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        write_all(&mut &*self, buf).await
    }

    /// Copies from the file position to the end of file into `writer` (a socket, another file);
    /// returns the count (see [`crate::io::copy`]).
    pub async fn copy_to<W: AsyncWriteOwned + ?Sized>(&self, writer: &mut W) -> io::Result<u64> {
        copy(&mut &*self, writer).await
    }

    /// Flushes data and metadata to the device (`fsync`).
    pub fn sync_all(&self) -> Op<Fsync<Rc<OwnedFd>>> {
        submit(Fsync::new(self.fd.clone()))
    }

    /// Flushes the data, and only the metadata needed to read it back (`fdatasync`).
    pub fn sync_data(&self) -> Op<Fsync<Rc<OwnedFd>>> {
        submit(Fsync::data(self.fd.clone()))
    }

    /// Size, type, permissions and times of the open file (`statx`).
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let stx =
            submit(StatxFd { fd: self.fd.clone(), op: Statx::fd(self.fd.as_raw_fd()) }).await?;
        Ok(Metadata::from_statx(stx))
    }

    /// Closes the file and reports the error `close` may return (a deferred write error on
    /// some filesystems). Dropping the file also closes it, silently. If an operation still
    /// uses the descriptor, it closes when that finishes.
    pub async fn close(self) -> io::Result<()> {
        match Rc::try_unwrap(self.fd) {
            Ok(fd) => submit(Close::new(fd)).await,
            Err(_) => Ok(()),
        }
    }

    /// The descriptor number (still owned by the file).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File").field("fd", &self.as_raw_fd()).finish()
    }
}

/// Reads and writes at the file position, so the composed helpers of [`crate::io`] work on
/// files (`io::copy(&mut file, &mut socket)`).
impl AsyncReadOwned for File {
    fn read<B: IoBufMut>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        File::read(self, buf)
    }
}

impl AsyncWriteOwned for File {
    fn write<B: IoBuf>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        File::write(self, buf)
    }
}

impl AsyncReadOwned for &File {
    fn read<B: IoBufMut>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        File::read(self, buf)
    }
}

impl AsyncWriteOwned for &File {
    fn write<B: IoBuf>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        File::write(self, buf)
    }
}

/// `statx` on an open descriptor. `Statx` holds only the descriptor's number, so the operation
/// also holds the descriptor: it stays open until the kernel (or the blocking pool) is done with
/// it, even if the future is dropped and the `File` closed meanwhile — the number cannot be
/// reused for another file while the call still looks at it.
struct StatxFd {
    fd: Rc<OwnedFd>,
    op: Statx,
}

impl OpCode for StatxFd {
    type Output = io::Result<libc::statx>;
    const NAME: &'static str = Statx::NAME;
}

impl crate::op::sealed::Hooks for StatxFd {
    fn uring_entry(&mut self) -> io_uring::squeue::Entry {
        self.op.uring_entry()
    }
    fn emulation(&self) -> Emulation {
        self.op.emulation()
    }
    fn perform(&mut self, nowait: bool) -> io::Result<u32> {
        self.op.perform(nowait)
    }
    fn blocking(&mut self) -> Option<crate::op::BlockingCall> {
        // The call holds the descriptor's number only; `fd` stays open in this operation until
        // its completion is processed.
        self.op.blocking()
    }
    fn complete(self, res: io::Result<u32>) -> io::Result<libc::statx> {
        let StatxFd { fd, op } = self;
        let out = op.complete(res);
        drop(fd);
        out
    }
}

/// A cursor over a file at an explicit offset, advancing by each transfer's count.
struct At<'a> {
    file: &'a File,
    offset: u64,
}

impl AsyncReadOwned for At<'_> {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        let (res, buf) = self.file.read_at(buf, self.offset).await;
        if let Ok(n) = res {
            self.offset += n as u64;
        }
        (res, buf)
    }
}

impl AsyncWriteOwned for At<'_> {
    async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        let (res, buf) = self.file.write_at(buf, self.offset).await;
        if let Ok(n) = res {
            self.offset += n as u64;
        }
        (res, buf)
    }
}
