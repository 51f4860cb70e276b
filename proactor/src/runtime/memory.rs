//! Memory for operations in flight: blocks recycled per size class by the loop that owns them.
//!
//! Every operation lives in a heap block from `start` (or the first poll of its future) until
//! its completion is delivered, because the kernel holds pointers into it. A loop with hundreds
//! of operations in flight allocates and frees hundreds of blocks per turn — more than the
//! allocator's per-thread cache holds, so each one took its slow path (a third of the user-side
//! cost of a NOP round trip). Blocks are kept here instead, per 16-byte size class, up to a
//! bounded amount per class, and handed out again last-in first-out while still in cache.

use super::slot::ErasedOp;
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::Cell;
use std::ptr::NonNull;

/// Size classes are multiples of this (which is also the largest alignment served).
const GRAIN: usize = 16;
/// Operations larger than this are allocated and freed directly.
const MAX_POOLED: usize = 1024;
/// Size classes (class 0 is never used: zero-sized values take no block).
const CLASSES: usize = MAX_POOLED / GRAIN + 1;
/// Bytes of idle blocks kept at most per size class (beyond that, released blocks are freed).
/// A loop keeps as many blocks as it once had operations in flight, up to this.
const MAX_CACHED: usize = 1 << 20;
/// Bytes of idle blocks per size class that [`OpMemory::release_idle`] leaves in place: enough
/// for a batch of a few hundred small operations to find their blocks cached again.
const KEPT_WHEN_IDLE: usize = 1 << 14;

/// The operation memory of one run loop.
pub(crate) struct OpMemory {
    /// Idle blocks per class (`class * GRAIN` bytes each), at most `MAX_CACHED` bytes' worth
    /// per class. An array, so that the class of a type known at compile time needs no bounds
    /// check.
    classes: [IdleList; CLASSES],
}

/// The idle blocks of one size class, linked through their own first bytes: taking or giving
/// back a block touches only the block (about to be written anyway) and two cells, where a
/// vector behind a `RefCell` added a borrow flag and a length and capacity check to both —
/// together a fifth of a small handler's round trip.
#[derive(Default)]
struct IdleList {
    /// The most recently released block; each idle block starts with the next one's address.
    head: Cell<Option<NonNull<u8>>>,
    len: Cell<usize>,
}

impl IdleList {
    #[inline]
    fn pop(&self) -> Option<NonNull<u8>> {
        let block = self.head.get()?;
        // SAFETY: every block on this list is idle, at least GRAIN bytes and GRAIN-aligned, and
        // `push` wrote the next block's address at its start.
        self.head.set(unsafe { block.cast::<Option<NonNull<u8>>>().read() });
        self.len.set(self.len.get() - 1);
        Some(block)
    }

    /// # Safety
    /// `block` must be an idle block of at least GRAIN bytes, GRAIN-aligned, that no one uses
    /// until `pop` hands it out again.
    #[inline]
    unsafe fn push(&self, block: NonNull<u8>) {
        // SAFETY: per the caller, the block is idle, large and aligned enough for a pointer.
        unsafe { block.cast::<Option<NonNull<u8>>>().write(self.head.get()) };
        self.head.set(Some(block));
        self.len.set(self.len.get() + 1);
    }
}

/// The size class serving `layout`, if any.
fn class_of(layout: Layout) -> Option<usize> {
    (layout.size() <= MAX_POOLED && layout.align() <= GRAIN).then(|| layout.size().div_ceil(GRAIN))
}

fn class_layout(class: usize) -> Layout {
    debug_assert!(class * GRAIN <= MAX_POOLED);
    // SAFETY: GRAIN is a non-zero power of two and `class * GRAIN` (at most MAX_POOLED) cannot
    // overflow `isize` when rounded up to it.
    unsafe { Layout::from_size_align_unchecked(class * GRAIN, GRAIN) }
}

impl OpMemory {
    pub(crate) fn new() -> OpMemory {
        OpMemory { classes: std::array::from_fn(|_| IdleList::default()) }
    }

    /// Moves `value` into a block; the pointer stays valid until [`OpMemory::release`].
    #[inline]
    pub(crate) fn store<T: ErasedOp + 'static>(&self, value: T) -> NonNull<dyn ErasedOp> {
        let layout = Layout::new::<T>();
        let block = if layout.size() == 0 {
            NonNull::<T>::dangling()
        } else {
            self.take_block(layout).cast::<T>()
        };
        // SAFETY: `block` is either dangling for a zero-sized `T` (valid for such writes) or a
        // fresh block of at least `size_of::<T>()` bytes aligned to at least `align_of::<T>()`
        // (`take_block` serves `layout` exactly or from a class that is larger and 16-aligned).
        unsafe { block.as_ptr().write(value) };
        block
    }

    #[inline]
    fn take_block(&self, layout: Layout) -> NonNull<u8> {
        let (class, alloc_layout) = match class_of(layout) {
            Some(c) => (Some(c), class_layout(c)),
            None => (None, layout),
        };
        if let Some(c) = class {
            if let Some(block) = self.classes[c].pop() {
                return block;
            }
        }
        // SAFETY: `alloc_layout` has a non-zero size (zero-sized values never get here).
        let raw = unsafe { alloc(alloc_layout) };
        NonNull::new(raw).unwrap_or_else(|| handle_alloc_error(alloc_layout))
    }

    /// Moves the `T` stored at `block` out and takes the block back: the inverse of `store`.
    ///
    /// # Safety
    /// `block` must hold a live `T` stored by [`OpMemory::store`] that no one else references
    /// (for an operation: out of the table, its completion processed); it is released here.
    #[inline]
    pub(crate) unsafe fn take<T>(&self, block: NonNull<u8>) -> T {
        // SAFETY: per the caller, `block` holds a live `T` that no one else references.
        let value = unsafe { block.cast::<T>().as_ptr().read() };
        // SAFETY: the value was moved out; the block came from `store::<T>`.
        unsafe { self.release(block, Layout::new::<T>()) };
        value
    }

    /// Takes back the block of an operation whose value has been moved out or dropped.
    ///
    /// # Safety
    /// `block` must come from [`OpMemory::store`] of a value whose layout is `layout`, be
    /// released once, and hold no live value (no one may use it again).
    #[inline]
    pub(crate) unsafe fn release(&self, block: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        let Some(c) = class_of(layout) else {
            // SAFETY: allocated by `take_block` with exactly `layout`.
            unsafe { dealloc(block.as_ptr(), layout) };
            return;
        };
        let idle = &self.classes[c];
        if idle.len.get() * c * GRAIN < MAX_CACHED {
            // SAFETY: a block of class `c` (`c * GRAIN` bytes, GRAIN-aligned: `take_block`
            // allocated it with `class_layout(c)`), released once and no longer used.
            unsafe { idle.push(block) };
        } else {
            // SAFETY: allocated by `take_block` with exactly this class layout.
            unsafe { dealloc(block.as_ptr(), class_layout(c)) };
        }
    }
}

impl OpMemory {
    /// Frees the idle blocks beyond [`KEPT_WHEN_IDLE`] bytes per class.
    ///
    /// The blocks cached during a burst (one per operation that was in flight: 5,000 receives
    /// for 5,000 idle connections) sit between the burst's other allocations, one or two per
    /// page, so while they are cached no trim of the heap can give those pages back: after a
    /// burst of 5,000 slowloris clients the HTTP server kept 12–15 MiB of heap resident with
    /// under 1 MiB of it in use, and 3 MiB once these were freed.
    pub(crate) fn release_idle(&self) {
        for (class, idle) in self.classes.iter().enumerate().skip(1) {
            while idle.len.get() * class * GRAIN > KEPT_WHEN_IDLE {
                let Some(block) = idle.pop() else { break };
                // SAFETY: every cached block was allocated with its class layout and is idle.
                unsafe { dealloc(block.as_ptr(), class_layout(class)) };
            }
        }
    }
}

impl Drop for OpMemory {
    fn drop(&mut self) {
        for (class, idle) in self.classes.iter().enumerate() {
            while let Some(block) = idle.pop() {
                // SAFETY: every cached block was allocated with its class layout and is idle.
                unsafe { dealloc(block.as_ptr(), class_layout(class)) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_and_large_or_overaligned_values_bypass_the_cache() {
        assert_eq!(class_of(Layout::new::<[u8; 1]>()), Some(1));
        assert_eq!(class_of(Layout::new::<[u8; 16]>()), Some(1));
        assert_eq!(class_of(Layout::new::<[u8; 17]>()), Some(2));
        assert_eq!(class_of(Layout::new::<[u8; 2048]>()), None);
        assert_eq!(class_of(Layout::from_size_align(64, 64).unwrap()), None);
    }

    fn blocks(m: &OpMemory, layout: Layout, n: usize) -> Vec<NonNull<u8>> {
        (0..n).map(|_| m.take_block(layout)).collect()
    }

    #[test]
    fn released_blocks_come_back_last_in_first_out_and_the_cache_is_bounded() {
        let m = OpMemory::new();
        let small = Layout::from_size_align(24, 8).unwrap(); // class 2: 32-byte blocks
        let first = blocks(&m, small, 100);
        for &b in &first {
            // SAFETY: fresh blocks of this layout, holding no value, released once.
            unsafe { m.release(b, small) };
        }
        assert_eq!(m.classes[2].len.get(), 100);
        let again = blocks(&m, small, 100);
        let mut reversed = first.clone();
        reversed.reverse();
        assert_eq!(again, reversed, "the block released last is handed out first");
        assert_eq!(m.classes[2].len.get(), 0);
        // Blocks keep their contents' alignment and size apart from the list's link.
        for (i, b) in again.iter().enumerate() {
            // SAFETY: each block is 32 bytes, 16-aligned, and owned by this test.
            unsafe { b.as_ptr().cast::<[u64; 4]>().write([i as u64; 4]) };
        }
        for (i, b) in again.iter().enumerate() {
            // SAFETY: written just above.
            assert_eq!(unsafe { b.as_ptr().cast::<[u64; 4]>().read() }, [i as u64; 4]);
            // SAFETY: released once, holding no value that needs dropping.
            unsafe { m.release(*b, small) };
        }
        // The largest class keeps at most MAX_CACHED bytes of idle blocks; the rest are freed.
        let big = Layout::from_size_align(MAX_POOLED, 16).unwrap();
        let many = blocks(&m, big, MAX_CACHED / MAX_POOLED + 50);
        for b in many {
            // SAFETY: fresh blocks of this layout, released once.
            unsafe { m.release(b, big) };
        }
        assert_eq!(m.classes[MAX_POOLED / GRAIN].len.get(), MAX_CACHED / MAX_POOLED);
        // Releasing idle memory keeps KEPT_WHEN_IDLE bytes per class, the last released first.
        m.release_idle();
        assert_eq!(m.classes[MAX_POOLED / GRAIN].len.get(), KEPT_WHEN_IDLE / MAX_POOLED);
        assert_eq!(m.classes[2].len.get(), 100, "a class under the floor keeps every block");
        let kept = blocks(&m, small, 100);
        assert_eq!(kept, reversed_of(&again), "the kept blocks are handed out as before");
    }

    fn reversed_of(v: &[NonNull<u8>]) -> Vec<NonNull<u8>> {
        v.iter().rev().copied().collect()
    }
}
