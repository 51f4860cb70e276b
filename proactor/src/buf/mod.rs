//! Buffers that an asynchronous operation can own while the kernel works on them.
//!
//! RULE #1 of the Proactor pattern is that a buffer outlives the operation that uses it. Here an
//! operation takes its buffer *by value* and hands it back with the result, so the borrow checker
//! enforces the rule: while the kernel may write into the memory, no one else can reach it.
//!
//! The traits promise a *stable* address: moving the owner (a `Vec`, a `Box`) must not move the
//! bytes, because the kernel holds a raw pointer to them.

#[cfg(test)]
mod kernel_paths;
pub(crate) mod pool;
mod pooled_buf;
mod recv_stream;
mod ring;
pub(crate) mod send_queue;
mod set;
mod slice;

pub use pool::{BufPool, BufPoolBuilder};
pub use pooled_buf::{PooledBuf, Received};
pub use recv_stream::RecvStream;
pub use send_queue::SendQueue;
pub use set::BufPoolSet;
pub use slice::Slice;

/// A buffer the kernel may read from (the source of a write or send).
///
/// # Safety
/// `stable_ptr` must point to `bytes_init` initialised bytes that stay valid, and at the same
/// address, for as long as the value lives, even when the value itself is moved. While an
/// operation owns the buffer, those bytes are read by the kernel — or by a blocking-pool thread
/// standing in for it, through the pointer taken on the run loop's thread at submission (no
/// method of the buffer is called there) — and by no one else.
pub unsafe trait IoBuf: 'static {
    /// Pointer to the first byte.
    fn stable_ptr(&self) -> *const u8;
    /// Number of initialised bytes: what a write sends.
    fn bytes_init(&self) -> usize;
    /// Total capacity: how many bytes a read may fill.
    fn bytes_total(&self) -> usize;

    /// A view of `range` of this buffer, owning it; operations then use only that range.
    ///
    /// The range may reach past the initialised bytes up to `bytes_total()` (a read into
    /// `vec.slice(vec.len()..)` appends), but it must **start** within them or at their end:
    /// bytes between the initialised length and the start would stay uninitialised, so a read
    /// into such a slice could not make its bytes part of the buffer's length.
    ///
    /// ```
    /// use proactor::buf::IoBuf;
    /// let mut v = Vec::with_capacity(100);
    /// v.extend_from_slice(b"head");
    /// let tail = v.slice(4..); // a read into it appends after "head"
    /// assert_eq!((tail.begin(), tail.end()), (4, 100));
    /// ```
    ///
    /// # Panics
    /// Like `Vec` indexing, when the range is out of bounds of `bytes_total()`, ends before it
    /// starts, or starts past `bytes_init()` (`Vec::with_capacity(100).slice(50..)`). Use
    /// [`IoBuf::try_slice`] to get the buffer back instead.
    fn slice(self, range: impl core::ops::RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        match Slice::checked(self, range) {
            Ok(slice) => slice,
            Err((_, why)) => panic!("{why}"),
        }
    }

    /// [`IoBuf::slice`], or the buffer back (`Err`) when the range is refused: out of bounds of
    /// `bytes_total()`, ending before it starts, or starting past `bytes_init()`.
    ///
    /// ```
    /// use proactor::buf::IoBuf;
    /// let empty: Vec<u8> = Vec::with_capacity(100);
    /// let empty = empty.try_slice(50..).unwrap_err(); // nothing initialised before byte 50
    /// assert!(empty.try_slice(0..).is_ok());
    /// ```
    fn try_slice(self, range: impl core::ops::RangeBounds<usize>) -> Result<Slice<Self>, Self>
    where
        Self: Sized,
    {
        Slice::checked(self, range).map_err(|(buf, _)| buf)
    }
}

/// A buffer the kernel may write into (the destination of a read or receive).
///
/// # Safety
/// `stable_mut_ptr` must point to `bytes_total()` writable bytes that stay valid, at the same
/// address, while the value lives; `set_init(n)` must only record that `n` bytes from the start are
/// initialised. While an operation owns the buffer, the kernel (or a blocking-pool thread in its
/// place, as for [`IoBuf`]) may write those bytes.
pub unsafe trait IoBufMut: IoBuf {
    /// Pointer to the first byte, writable.
    fn stable_mut_ptr(&mut self) -> *mut u8;

    /// Records that the first `n` bytes are initialised (after the kernel wrote them).
    ///
    /// # Safety
    /// The first `n` bytes must really be initialised, and `n <= bytes_total()`.
    unsafe fn set_init(&mut self, n: usize);
}

// SAFETY: a Vec's heap block does not move when the Vec is moved; len/capacity bound it.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: the pointer covers `capacity()` bytes of the heap block; `set_init` sets the length to
// exactly what was read, so after a read `buf.len()` is the byte count.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, n: usize) {
        // SAFETY: the caller guarantees `n <= capacity` and that the bytes are initialised.
        unsafe { self.set_len(n) }
    }
}

// SAFETY: a boxed slice's heap block does not move when the box is moved.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: every byte of a boxed slice is initialised already; the length never changes.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, _n: usize) {}
}

// SAFETY: static memory never moves and is never freed.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: static memory never moves and is never freed.
unsafe impl IoBuf for &'static str {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: a String is a Vec<u8>; its heap block does not move with the String.
unsafe impl IoBuf for String {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

#[cfg(feature = "bytes")]
mod bytes_impl {
    use super::{IoBuf, IoBufMut};

    // SAFETY: BytesMut's storage is on the heap and does not move when the handle moves.
    unsafe impl IoBuf for bytes::BytesMut {
        fn stable_ptr(&self) -> *const u8 {
            self.as_ptr()
        }
        fn bytes_init(&self) -> usize {
            self.len()
        }
        fn bytes_total(&self) -> usize {
            self.capacity()
        }
    }

    // SAFETY: the pointer covers `capacity()` bytes; `set_init` sets the length to the count read.
    unsafe impl IoBufMut for bytes::BytesMut {
        fn stable_mut_ptr(&mut self) -> *mut u8 {
            self.as_mut_ptr()
        }
        unsafe fn set_init(&mut self, n: usize) {
            // SAFETY: the caller guarantees `n <= capacity` and that the bytes are initialised.
            unsafe { self.set_len(n) }
        }
    }

    // SAFETY: Bytes is immutable shared heap storage that does not move.
    unsafe impl IoBuf for bytes::Bytes {
        fn stable_ptr(&self) -> *const u8 {
            self.as_ptr()
        }
        fn bytes_init(&self) -> usize {
            self.len()
        }
        fn bytes_total(&self) -> usize {
            self.len()
        }
    }
}

/// A list of buffers for vectored I/O (`readv` / `writev`).
///
/// Implemented for `Vec<B>` of any [`IoBuf`]; the operation builds its `iovec` array itself.
pub trait IoVecBuf: 'static {
    /// The buffers, in order.
    type Item: IoBuf;
    /// The buffers as a slice.
    fn bufs(&self) -> &[Self::Item];
    /// The buffers as a mutable slice.
    fn bufs_mut(&mut self) -> &mut [Self::Item];
}

impl<B: IoBuf> IoVecBuf for Vec<B> {
    type Item = B;
    fn bufs(&self) -> &[B] {
        self
    }
    fn bufs_mut(&mut self) -> &mut [B] {
        self
    }
}
