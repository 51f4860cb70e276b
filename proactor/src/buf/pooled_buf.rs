//! What a pooled receive hands out: bytes in a buffer borrowed from a [`BufPool`], and the
//! buffers of one completion together.

use super::pool::PoolInner;
use crate::IoBuf;
use std::rc::Rc;

#[cfg(doc)]
use super::BufPool;

/// Received bytes in a buffer borrowed from a [`BufPool`]; dropping it gives the buffer back.
///
/// It dereferences to the bytes received, and can be written out directly (it is an
/// [`IoBuf`]): `stream.write(pooled_buf)`. With incremental consumption
/// ([`BufPoolBuilder::incremental`](super::BufPoolBuilder::incremental)) it may be one piece of
/// a larger buffer whose other pieces went to other receives; the buffer goes back once the
/// kernel is done with it and every piece is dropped.
pub struct PooledBuf {
    pool: Rc<PoolInner>,
    id: u16,
    /// Where the piece starts in the buffer.
    start: u32,
    len: usize,
}

impl PooledBuf {
    /// A piece of buffer `id`: `len` received bytes from `start`. The caller has counted the
    /// piece in the buffer's state (`PoolInner::take_completion`).
    pub(crate) fn new(pool: Rc<PoolInner>, id: u16, start: usize, len: usize) -> Self {
        debug_assert!(start + len <= pool.buffer_size());
        PooledBuf { pool, id, start: start as u32, len }
    }

    /// Shortens the content to `len` bytes (no effect if it is shorter already).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn ptr(&self) -> *mut u8 {
        // SAFETY: `start + len <= buffer_size` (checked when the piece was made), so the
        // offset stays within buffer `id`.
        unsafe { self.pool.buf_ptr(self.id).add(self.start as usize) }
    }
}

impl std::ops::Deref for PooledBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: these `len` bytes were written by the receive that made this piece; while it
        // lives, the buffer is not given back, and the kernel writes only past the bytes it
        // consumed (an incremental ring), so nothing writes them.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        self.pool.give_back(self.id);
    }
}

impl std::fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBuf")
            .field("id", &self.id)
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

// SAFETY: the pointer is into the pool's block, which the `Rc` keeps allocated and which never
// moves; the `len` bytes are initialised, and nothing writes them while this value lives.
unsafe impl IoBuf for PooledBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.len
    }
}

/// The buffers one receive completion filled, in order: one, or several when the receive was
/// a bundle ([`BufPoolBuilder::bundles`](super::BufPoolBuilder::bundles)). The item of
/// [`RecvMulti`](crate::op::RecvMulti); [`RecvStream`](super::RecvStream) yields the buffers one
/// by one. Each buffer goes back to its pool on its own when dropped.
#[derive(Debug)]
pub struct Received {
    first: PooledBuf,
    /// The others (boxed: a single buffer, the common case, keeps the item small).
    #[allow(clippy::box_collection)] // one pointer, not three words, in every queued item
    rest: Option<Box<Vec<PooledBuf>>>,
}

impl Received {
    pub(crate) fn one(first: PooledBuf) -> Self {
        Received { first, rest: None }
    }

    pub(crate) fn push(&mut self, buf: PooledBuf) {
        self.rest.get_or_insert_with(Default::default).push(buf);
    }

    /// Number of buffers (at least 1).
    pub fn buffers(&self) -> usize {
        1 + self.rest.as_ref().map_or(0, |r| r.len())
    }

    /// Bytes received, over every buffer.
    pub fn bytes(&self) -> usize {
        self.iter().map(|b| b.len).sum()
    }

    /// The buffers, in order.
    pub fn iter(&self) -> impl Iterator<Item = &PooledBuf> {
        std::iter::once(&self.first).chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    /// The first buffer and the others (in order).
    pub fn into_parts(self) -> (PooledBuf, Vec<PooledBuf>) {
        (self.first, self.rest.map(|r| *r).unwrap_or_default())
    }

    /// The bytes, copied into one vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.bytes());
        for b in self.iter() {
            v.extend_from_slice(b);
        }
        v
    }
}

impl IntoIterator for Received {
    type Item = PooledBuf;
    type IntoIter = std::iter::Chain<std::iter::Once<PooledBuf>, std::vec::IntoIter<PooledBuf>>;
    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.first).chain(self.rest.map(|r| *r).unwrap_or_default())
    }
}
