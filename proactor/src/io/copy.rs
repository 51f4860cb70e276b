//! `copy`: moves everything from a reader to a writer through one owned buffer.

use super::{write_all, AsyncReadOwned, AsyncWriteOwned};
use std::io;

/// Size of the buffer `copy` moves data through.
const COPY_BUF: usize = 64 * 1024;

/// Copies from `reader` until its end of stream, writing every byte to `writer` (partial writes
/// are resumed). Returns the number of bytes copied. One 64 KiB buffer is reused throughout.
pub async fn copy<R, W>(reader: &mut R, writer: &mut W) -> io::Result<u64>
where
    R: AsyncReadOwned + ?Sized,
    W: AsyncWriteOwned + ?Sized,
{
    let mut buf = Vec::with_capacity(COPY_BUF);
    let mut total = 0u64;
    loop {
        buf.clear();
        let (res, b) = reader.read(buf).await;
        buf = b;
        match res {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let (res, b) = write_all(writer, buf).await;
        buf = b;
        res?;
    }
}
