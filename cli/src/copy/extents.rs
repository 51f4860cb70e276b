//! Where a file holds data: its data extents from `SEEK_DATA` / `SEEK_HOLE`, cut into the
//! block-sized chunks the copier reads and writes. Holes are never read nor written, so a sparse
//! source stays sparse in the copy.

use std::io;
use std::os::fd::RawFd;

/// One piece of work: `len` bytes at `offset` (the same offset in the source and the copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Byte offset in both files.
    pub offset: u64,
    /// Length in bytes (at most the block size; shorter at the end of an extent).
    pub len: usize,
}

fn seek(fd: RawFd, offset: u64, whence: i32) -> io::Result<Option<u64>> {
    // SAFETY: lseek takes no pointers.
    let r = unsafe { libc::lseek(fd, offset as libc::off_t, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // No data at or after `offset`.
        Some(libc::ENXIO) => Ok(None),
        _ => Err(err),
    }
}

/// The data extents `(start, end)` of the first `size` bytes of `fd`, in order. A filesystem
/// without hole support reports the whole file as one extent.
pub fn data_extents(fd: RawFd, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < size {
        let start = match seek(fd, pos, libc::SEEK_DATA) {
            Ok(Some(s)) if s < size => s,
            Ok(_) => break,
            // The filesystem cannot tell: treat everything as data.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return Ok(vec![(0, size)]);
            }
            Err(e) => return Err(e),
        };
        let end = seek(fd, start, libc::SEEK_HOLE)?.unwrap_or(size).min(size);
        if end <= start {
            break;
        }
        out.push((start, end));
        pos = end;
    }
    Ok(out)
}

/// Cuts extents into chunks of at most `block` bytes. With `align`, every chunk starts and ends
/// on an `align` boundary (extent edges rounded outwards, never past the end of the last block
/// that holds data), as `O_DIRECT` requires; the last chunk may then reach past `size`, and the
/// copy is truncated back to `size` afterwards.
pub fn chunks(extents: &[(u64, u64)], block: usize, align: Option<u64>) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut covered = 0u64;
    for &(start, end) in extents {
        let (mut s, e) = match align {
            Some(a) => ((start / a * a).max(covered), end.div_ceil(a) * a),
            None => (start, end),
        };
        while s < e {
            let len = (e - s).min(block as u64) as usize;
            out.push(Chunk { offset: s, len });
            s += len as u64;
        }
        covered = covered.max(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_extents_exactly() {
        let c = chunks(&[(0, 10), (20, 45)], 10, None);
        let want = [(0, 10), (20, 10), (30, 10), (40, 5)];
        let got: Vec<_> = c.iter().map(|c| (c.offset, c.len)).collect();
        assert_eq!(got, want.map(|(o, l)| (o as u64, l as usize)));
    }

    #[test]
    fn aligned_chunks_round_outwards_without_overlap() {
        let c = chunks(&[(100, 5000), (5000, 9000)], 8192, Some(4096));
        let got: Vec<_> = c.iter().map(|c| (c.offset, c.len)).collect();
        assert_eq!(got, vec![(0, 8192), (8192, 4096)]);
    }

    #[test]
    fn extents_of_a_sparse_file() {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::fd::AsRawFd;
        let mut f = tempfile::tempfile().unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&[1; 4096]).unwrap();
        f.set_len(4 << 20).unwrap();
        let ext = data_extents(f.as_raw_fd(), 4 << 20).unwrap();
        let data: u64 = ext.iter().map(|(s, e)| e - s).sum();
        assert!(data < 4 << 20, "a sparse file reports holes: {ext:?}");
        assert!(ext.iter().any(|&(s, e)| s <= 1 << 20 && e >= (1 << 20) + 4096));
    }
}
