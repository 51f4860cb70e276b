//! A sub-range of an owned buffer, so composed operations can read or write the rest of a buffer
//! after a partial transfer without copying it.

use super::{IoBuf, IoBufMut};
use core::ops::{Bound, RangeBounds};

/// An owned buffer restricted to `begin..end` (made by [`IoBuf::slice`]).
/// [`Slice::into_inner`] gives the buffer back.
///
/// A read into a slice extends the buffer's initialised length to where the read ended, when
/// that is past it; bytes already initialised before it stay so.
#[derive(Debug)]
pub struct Slice<B> {
    buf: B,
    /// `begin <= buf.bytes_init()`: checked when made, and the buffer's initialised length only
    /// grows while the slice owns it, so bytes before `begin` are always initialised.
    begin: usize,
    /// `begin <= end <= buf.bytes_total()`.
    end: usize,
}

impl<B: IoBuf> Slice<B> {
    /// The slice of `range`, or the buffer back with why it was refused (see [`IoBuf::slice`]).
    pub(crate) fn checked(buf: B, range: impl RangeBounds<usize>) -> Result<Self, (B, String)> {
        let total = buf.bytes_total();
        let init = buf.bytes_init();
        let begin = match range.start_bound() {
            Bound::Included(&n) => Some(n),
            Bound::Excluded(&n) => n.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.checked_add(1),
            Bound::Excluded(&n) => Some(n),
            Bound::Unbounded => Some(total),
        };
        let (Some(begin), Some(end)) = (begin, end) else {
            return Err((buf, "slice range overflows usize".to_string()));
        };
        if begin > end || end > total {
            return Err((
                buf,
                format!("slice {begin}..{end} out of bounds of a buffer of {total} bytes"),
            ));
        }
        if begin > init {
            return Err((
                buf,
                format!(
                    "slice {begin}..{end} starts past the buffer's {init} initialised bytes \
                     (bytes {init}..{begin} would stay uninitialised)"
                ),
            ));
        }
        Ok(Slice { buf, begin, end })
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

// SAFETY: the range lies within the buffer's stable allocation (checked in `checked`).
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
// when the newly written bytes reach past it, so earlier bytes stay initialised. Since `begin`
// lies within the initialised prefix (the field's invariant), `..begin + n` is then all
// initialised: the read is never lost from the buffer's length.
unsafe impl<B: IoBufMut> IoBufMut for Slice<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: `begin <= bytes_total()`, so the offset stays within (or one past) the block.
        unsafe { self.buf.stable_mut_ptr().add(self.begin) }
    }
    unsafe fn set_init(&mut self, n: usize) {
        let reached = self.begin + n;
        let init = self.buf.bytes_init();
        debug_assert!(self.begin <= init, "a slice starts within the initialised bytes");
        if self.begin <= init && reached > init {
            // SAFETY: bytes before `begin` are within the initialised prefix (checked above) and
            // the caller vouches for `begin..reached`, so `..reached` is initialised.
            unsafe { self.buf.set_init(reached) }
        }
    }
}
