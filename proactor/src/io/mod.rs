//! Composed operations, correct on partial transfers.
//!
//! A read may return fewer bytes than asked and a write may send fewer than offered — on a
//! socket this is routine. Ignoring the count and assuming the buffer is full is the classic
//! Proactor mistake; the helpers here loop until the job is done, resuming each time exactly where
//! the last transfer stopped, on any reader or writer that implements [`AsyncReadOwned`] /
//! [`AsyncWriteOwned`] (sockets, stream halves, files).
//!
//! Like every operation, they take the buffer by value and hand it back with the result, also on
//! error, so nothing is lost.
//!
//! Each helper is also a method: on the sockets, their halves and files as inherent methods
//! (`stream.write_all(buf).await`), and on any reader or writer through [`AsyncReadOwnedExt`] /
//! [`AsyncWriteOwnedExt`].

mod buf_reader;
mod context;
mod copy;
mod ext;

pub use buf_reader::{BufReader, LineTooLong};
pub(crate) use context::context;
pub use context::ContextError;
pub use copy::copy;
pub use ext::{AsyncReadOwnedExt, AsyncWriteOwnedExt};

use crate::buf::{IoBuf, IoBufMut};
use crate::BufResult;
use std::future::Future;
use std::io;

/// Something that reads into owned buffers: `read(buf)` fills up to `buf.bytes_total()` bytes
/// from the start and hands the buffer back with the count (`Ok(0)` at end of stream).
pub trait AsyncReadOwned {
    /// Reads once into `buf`; a short count is normal.
    fn read<B: IoBufMut>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>>;
}

/// Something that writes from owned buffers: `write(buf)` sends a prefix of the initialised
/// bytes of `buf` and hands the buffer back with the count.
pub trait AsyncWriteOwned {
    /// Writes once from `buf`; a short count is normal.
    fn write<B: IoBuf>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>>;

    /// Says that nothing more will be written: a stream socket shuts down its write side (the
    /// peer reads end of stream); a writer with nothing to signal (a file) does nothing, which is
    /// the default.
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> {
        std::future::ready(Ok(()))
    }
}

impl<R: AsyncReadOwned + ?Sized> AsyncReadOwned for &mut R {
    fn read<B: IoBufMut>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        (**self).read(buf)
    }
}

impl<W: AsyncWriteOwned + ?Sized> AsyncWriteOwned for &mut W {
    fn write<B: IoBuf>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        (**self).write(buf)
    }
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> {
        (**self).shutdown()
    }
}

/// Reads until `buf` is full (`buf.bytes_total()` bytes; use `buf.slice(..n)` for fewer).
///
/// End of stream before that is an `UnexpectedEof` error; the buffer comes back holding what did
/// arrive (for a `Vec`, its length says how much).
///
/// ```
/// use proactor::{io, net::UnixStream};
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let (a, b) = UnixStream::pair()?;
///     let (res, _) = io::write_all(&mut &a, b"0123456789".to_vec()).await;
///     res?;
///     let (res, buf) = io::read_exact(&mut &b, Vec::with_capacity(10)).await;
///     // The same, as methods: `a.write_all(buf)`, `b.read_exact(buf)`.
///     res?;
///     assert_eq!(buf, b"0123456789");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn read_exact<R, B>(reader: &mut R, mut buf: B) -> BufResult<(), B>
where
    R: AsyncReadOwned + ?Sized,
    B: IoBufMut,
{
    let total = buf.bytes_total();
    let mut filled = 0;
    while filled < total {
        let (res, slice) = reader.read(buf.slice(filled..)).await;
        buf = slice.into_inner();
        match res {
            Ok(0) => {
                let msg = format!("end of stream after {filled} of {total} bytes");
                return (Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg)), buf);
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// Writes all initialised bytes of `buf`, however many writes that takes.
///
/// A writer that accepts nothing (`Ok(0)`) is a `WriteZero` error whose message says how many
/// bytes were written before; any other error is the writer's own, unchanged (`EPIPE`, …). The
/// buffer comes back either way.
pub async fn write_all<W, B>(writer: &mut W, mut buf: B) -> BufResult<(), B>
where
    W: AsyncWriteOwned + ?Sized,
    B: IoBuf,
{
    let total = buf.bytes_init();
    let mut written = 0;
    while written < total {
        let (res, slice) = writer.write(buf.slice(written..total)).await;
        buf = slice.into_inner();
        match res {
            Ok(0) => {
                let msg = format!("writer accepted nothing after {written} of {total} bytes");
                return (Err(io::Error::new(io::ErrorKind::WriteZero, msg)), buf);
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// Smallest room `read_to_end` makes in a full buffer.
const READ_TO_END_MIN: usize = 8 * 1024;

/// Reads until end of stream, appending to `buf` after its current length (growing it as needed,
/// without bound: for a peer you do not trust, read with a limit instead). Returns the number of
/// bytes appended; on error the buffer comes back holding what did arrive.
///
/// ```
/// use proactor::{io, net::UnixStream};
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let (a, b) = UnixStream::pair()?;
///     let (res, _) = a.write_all(b"all of it".as_slice()).await;
///     res?;
///     drop(a);
///     let (res, buf) = io::read_to_end(&mut &b, b"> ".to_vec()).await;
///     assert_eq!((res?, &buf[..]), (9, &b"> all of it"[..]));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn read_to_end<R>(reader: &mut R, mut buf: Vec<u8>) -> BufResult<usize, Vec<u8>>
where
    R: AsyncReadOwned + ?Sized,
{
    let start = buf.len();
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().max(READ_TO_END_MIN));
        }
        let from = buf.len();
        let (res, slice) = reader.read(buf.slice(from..)).await;
        buf = slice.into_inner();
        match res {
            Ok(0) => return (Ok(buf.len() - start), buf),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
}
