//! Methods over the owned-buffer traits: `read_exact`, `read_to_end`, `copy_to`, `write_all`,
//! for any [`AsyncReadOwned`] / [`AsyncWriteOwned`] (the `tokio::io::AsyncReadExt` of this crate).
//!
//! The sockets, their halves and [`crate::fs::File`] also have these as inherent methods taking
//! `&self`, so `stream.write_all(buf).await` needs no import and no `mut`; the traits serve generic
//! code and readers of your own (a [`super::BufReader`], a cursor, a mock).

use super::{copy, read_exact, read_to_end, write_all, AsyncReadOwned, AsyncWriteOwned};
use crate::buf::{IoBuf, IoBufMut};
use crate::BufResult;
use std::future::Future;
use std::io;

/// Composed reads on any [`AsyncReadOwned`]; implemented for every one.
///
/// ```
/// use proactor::io::{AsyncReadOwnedExt, AsyncWriteOwnedExt, BufReader};
/// use proactor::net::UnixStream;
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let (a, b) = UnixStream::pair()?;
///     let (res, _) = a.write_all(b"hello, world".as_slice()).await;
///     res?;
///     a.shutdown(std::net::Shutdown::Write).await?;
///     let mut reader = BufReader::new(b);
///     let (res, head) = reader.read_exact(Vec::with_capacity(5)).await;
///     res?;
///     let (res, rest) = reader.read_to_end(Vec::new()).await;
///     assert_eq!((res?, &head[..], &rest[..]), (7, &b"hello"[..], &b", world"[..]));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait AsyncReadOwnedExt: AsyncReadOwned {
    /// Fills `buf` (all of `bytes_total()`), however many reads it takes; see [`read_exact`].
    fn read_exact<B: IoBufMut>(&mut self, buf: B) -> impl Future<Output = BufResult<(), B>> {
        read_exact(self, buf)
    }

    /// Appends everything up to end of stream to `buf`; see [`read_to_end`].
    fn read_to_end(&mut self, buf: Vec<u8>) -> impl Future<Output = BufResult<usize, Vec<u8>>> {
        read_to_end(self, buf)
    }

    /// Copies everything up to end of stream into `writer`; see [`copy`].
    fn copy_to<W>(&mut self, writer: &mut W) -> impl Future<Output = io::Result<u64>>
    where
        W: AsyncWriteOwned + ?Sized,
    {
        copy(self, writer)
    }
}

impl<R: AsyncReadOwned + ?Sized> AsyncReadOwnedExt for R {}

/// Composed writes on any [`AsyncWriteOwned`]; implemented for every one. (`shutdown` is a
/// method of [`AsyncWriteOwned`] itself, since each writer does it its own way.)
pub trait AsyncWriteOwnedExt: AsyncWriteOwned {
    /// Writes every initialised byte of `buf`, however many writes it takes; see [`write_all`].
    fn write_all<B: IoBuf>(&mut self, buf: B) -> impl Future<Output = BufResult<(), B>> {
        write_all(self, buf)
    }
}

impl<W: AsyncWriteOwned + ?Sized> AsyncWriteOwnedExt for W {}
