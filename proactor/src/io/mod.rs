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

mod buf_reader;
mod context;
mod copy;

pub use buf_reader::{BufReader, LineTooLong};
pub(crate) use context::context;
pub use context::ContextError;
pub use copy::copy;

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
