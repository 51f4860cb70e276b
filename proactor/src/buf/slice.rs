//! A sub-range of an owned buffer, so composed operations can read or write the rest of a buffer
//! after a partial transfer without copying it.

use super::{IoBuf, IoBufMut};
use core::ops::{Bound, RangeBounds};

/// An owned buffer restricted to `begin..end`. [`Slice::into_inner`] gives the buffer back.
#[derive(Debug)]
pub struct Slice<B> {
    buf: B,
    begin: usize,
    end: usize,
}

impl<B: IoBuf> Slice<B> {
    pub(crate) fn new(buf: B, range: impl RangeBounds<usize>) -> Self {
        let total = buf.bytes_total();
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n + 1,
            Bound::Excluded(&n) => n,
            Bound::Unbounded => total,
        };
        assert!(
            begin <= end && end <= total,
            "slice {begin}..{end} out of bounds of a buffer of {total} bytes"
        );
        Slice { buf, begin, end }
    }

    /// Start of the range within the buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// End of the range within the buffer.
    pub fn end(&self) -> usize {
        self.end
    }

    /// The whole underlying buffer.
    pub fn get_ref(&self) -> &B {
        &self.buf
    }

    /// Gives back the buffer.
    pub fn into_inner(self) -> B {
        self.buf
    }
}

// SAFETY: the range lies within the buffer's stable allocation (checked in `new`).
unsafe impl<B: IoBuf> IoBuf for Slice<B> {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: `begin <= bytes_total()`, so the offset stays within (or one past) the block.
        unsafe { self.buf.stable_ptr().add(self.begin) }
    }
    fn bytes_init(&self) -> usize {
        self.buf.bytes_init().clamp(self.begin, self.end) - self.begin
    }
    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
}

// SAFETY: writes stay within `begin..end`; `set_init` extends the buffer's initialised prefix only
// when the newly written bytes reach past it, so earlier bytes stay initialised.
unsafe impl<B: IoBufMut> IoBufMut for Slice<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: `begin <= bytes_total()`, so the offset stays within (or one past) the block.
        unsafe { self.buf.stable_mut_ptr().add(self.begin) }
    }
    unsafe fn set_init(&mut self, n: usize) {
        let reached = self.begin + n;
        let init = self.buf.bytes_init();
        if self.begin <= init && reached > init {
            // SAFETY: bytes before `begin` are within the initialised prefix (checked above) and
            // the caller vouches for `begin..reached`, so `..reached` is initialised.
            unsafe { self.buf.set_init(reached) }
        }
    }
}
