//! A buffering reader for line protocols: `read_until` a delimiter, with a limit on the line
//! length so a peer that never sends the delimiter cannot make us grow memory without bound.

use super::AsyncReadOwned;
use crate::buf::IoBufMut;
use crate::BufResult;
use std::io;

/// Default size of the internal buffer.
const DEFAULT_CAPACITY: usize = 8 * 1024;

/// The line (or record) exceeded the limit given to [`BufReader::read_until`]. Carried inside an
/// `io::Error` of kind `InvalidData`; find it with `err.get_ref()` and `downcast_ref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    /// The limit that was exceeded, in bytes (delimiter included).
    pub max: usize,
}

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line longer than {} bytes", self.max)
    }
}

impl std::error::Error for LineTooLong {}

impl LineTooLong {
    /// True if `err` is (or wraps) a `LineTooLong`.
    pub fn is(err: &io::Error) -> bool {
        err.get_ref().is_some_and(|e| e.is::<LineTooLong>())
    }
}

/// Reads ahead from `R` into an internal buffer of fixed capacity.
///
/// The internal buffer is only refilled once it has been drained, so if a read is cancelled
/// (its future dropped) no buffered byte is lost.
///
/// ```
/// use proactor::{io::BufReader, net::UnixStream};
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let (a, b) = UnixStream::pair()?;
///     let (res, _) = a.write(b"hello\nworld\n".as_slice()).await;
///     res?;
///     let mut reader = BufReader::new(b);
///     let mut line = Vec::new();
///     reader.read_until(b'\n', &mut line, 4096).await?;
///     assert_eq!(line, b"hello\n");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct BufReader<R> {
    inner: R,
    /// Bytes read ahead; `buf[pos..]` is not consumed yet. Empty with no capacity after a
    /// cancelled refill (its buffer went down with the operation); reallocated on next use.
    buf: Vec<u8>,
    pos: usize,
    capacity: usize,
}

impl<R: AsyncReadOwned> BufReader<R> {
    /// A reader with an 8 KiB buffer.
    pub fn new(inner: R) -> Self {
        Self::with_capacity(DEFAULT_CAPACITY, inner)
    }

    /// A reader with a buffer of `capacity` bytes (at least 1).
    pub fn with_capacity(capacity: usize, inner: R) -> Self {
        let capacity = capacity.max(1);
        BufReader { inner, buf: Vec::with_capacity(capacity), pos: 0, capacity }
    }

    /// The bytes read ahead and not consumed yet.
    pub fn buffer(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Marks `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The wrapped reader, mutably. Reading from it directly skips the buffered bytes.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The wrapped reader; buffered bytes are lost.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Returns the buffered bytes, reading more first if none are buffered. Empty at end of
    /// stream.
    pub async fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.buf.len() {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            if buf.capacity() < self.capacity {
                buf.reserve_exact(self.capacity);
            }
            self.pos = 0;
            loop {
                let (res, b) = self.inner.read(buf).await;
                buf = b;
                match res {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        buf.clear();
                        self.buf = buf;
                        return Err(e);
                    }
                }
            }
            self.buf = buf;
        }
        Ok(&self.buf[self.pos..])
    }

    /// Appends bytes to `out` up to and including `delim`, reading as needed. Returns the count
    /// appended: 0 at end of stream; without a trailing `delim` if the stream ended mid-line.
    ///
    /// At most `max` bytes (delimiter included) are appended. A longer line is an `InvalidData`
    /// error carrying [`LineTooLong`]; `out` then holds its first `max` bytes, and the rest of the
    /// line is still unread — [`BufReader::skip_until`] discards it, so the reader can carry on
    /// with the next line.
    pub async fn read_until(
        &mut self,
        delim: u8,
        out: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<usize> {
        let mut appended = 0;
        loop {
            let avail = self.fill_buf().await?;
            if avail.is_empty() {
                return Ok(appended);
            }
            let window = &avail[..avail.len().min(max - appended)];
            if let Some(i) = window.iter().position(|&b| b == delim) {
                out.extend_from_slice(&window[..=i]);
                self.consume(i + 1);
                return Ok(appended + i + 1);
            }
            let n = window.len();
            out.extend_from_slice(window);
            self.consume(n);
            appended += n;
            if appended >= max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, LineTooLong { max }));
            }
        }
    }

    /// Discards bytes up to and including the next `delim` (or to end of stream), in constant
    /// memory. Returns how many were discarded.
    pub async fn skip_until(&mut self, delim: u8) -> io::Result<usize> {
        let mut skipped = 0;
        loop {
            let avail = self.fill_buf().await?;
            if avail.is_empty() {
                return Ok(skipped);
            }
            if let Some(i) = avail.iter().position(|&b| b == delim) {
                self.consume(i + 1);
                return Ok(skipped + i + 1);
            }
            let n = avail.len();
            self.consume(n);
            skipped += n;
        }
    }
}

impl<R: AsyncReadOwned> AsyncReadOwned for BufReader<R> {
    /// Hands out buffered bytes first; a read into a buffer at least as large as the internal
    /// one bypasses it when nothing is buffered.
    async fn read<B: IoBufMut>(&mut self, mut buf: B) -> BufResult<usize, B> {
        if buf.bytes_total() == 0 {
            // Nothing fits: do not wait for (or buffer) data the caller cannot take.
            return (Ok(0), buf);
        }
        if self.pos >= self.buf.len() && buf.bytes_total() >= self.capacity {
            return self.inner.read(buf).await;
        }
        let avail = match self.fill_buf().await {
            Ok(a) => a,
            Err(e) => return (Err(e), buf),
        };
        let n = avail.len().min(buf.bytes_total());
        // SAFETY: `n` fits in the destination's capacity, and the regions do not overlap (the
        // destination is owned by the caller, the source by this reader).
        unsafe {
            std::ptr::copy_nonoverlapping(avail.as_ptr(), buf.stable_mut_ptr(), n);
            buf.set_init(n);
        }
        self.consume(n);
        (Ok(n), buf)
    }
}
