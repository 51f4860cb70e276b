//! The run loop's table of operations: slots addressed by a small integer key, freed keys reused
//! last-in first-out.
//!
//! A slab, written here rather than taken from the `slab` crate because the insert is on the
//! path of every operation: inlined, the slot is written straight into its entry, where the
//! crate's out-of-line insert copied it from the caller's stack and stalled on the copy. Reusing
//! the most recently freed key keeps a busy loop on the same few cache lines; the vacant keys
//! are linked through their own entries, so no second vector is touched per operation.

use super::slot::{Lifecycle, Slot};
use std::task::Waker;

/// Slots by key.
pub(crate) struct Table {
    entries: Vec<Entry>,
    /// The most recently freed key (`NONE` if no entry is vacant); each vacant entry holds the
    /// next one, so freeing and reusing a key touches only that entry.
    free: usize,
    len: usize,
    /// The foreign wakers of the slots whose state records `Wait::FOREIGN`, by key (`None`
    /// everywhere else): kept apart, so that a slot holds four bytes of its waiter instead of a
    /// whole `Waker`. Grown on the first foreign waker of a key; untouched by operations whose
    /// waiter is a task of the loop.
    wakers: Vec<Option<Waker>>,
}

/// One entry of the table: a slot, or a link in the list of vacant keys.
enum Entry {
    Occupied(Slot),
    Vacant { next: usize },
}

impl Entry {
    fn slot(&self) -> Option<&Slot> {
        match self {
            Entry::Occupied(slot) => Some(slot),
            Entry::Vacant { .. } => None,
        }
    }

    fn slot_mut(&mut self) -> Option<&mut Slot> {
        match self {
            Entry::Occupied(slot) => Some(slot),
            Entry::Vacant { .. } => None,
        }
    }
}

/// No vacant entry.
const NONE: usize = usize::MAX;

/// A slot owns nothing that needs dropping (its operation lives in a block of the loop's
/// memory, released by whoever takes it; its waiter is a key, a foreign waker being kept
/// beside the table): overwriting an entry never loses a destructor.
const _: () = assert!(!std::mem::needs_drop::<Slot>());

/// An occupied entry of the table, found by [`Table::occupied`].
pub(crate) struct Occupied<'a> {
    entry: &'a mut Entry,
    key: usize,
    free: &'a mut usize,
    len: &'a mut usize,
}

impl Occupied<'_> {
    /// The entry's slot.
    #[inline(always)]
    pub(crate) fn slot(&mut self) -> &mut Slot {
        match self.entry {
            Entry::Occupied(slot) => slot,
            Entry::Vacant { .. } => {
                unreachable!("an occupied handle is made for an occupied entry")
            }
        }
    }

    /// Takes the slot out, freeing its key (as [`Table::remove`]).
    #[inline(always)]
    pub(crate) fn remove(self) -> Slot {
        let Entry::Occupied(slot) =
            std::mem::replace(self.entry, Entry::Vacant { next: *self.free })
        else {
            unreachable!("an occupied handle is made for an occupied entry")
        };
        *self.free = self.key;
        *self.len -= 1;
        slot
    }

    /// Frees the key of a slot whose state owns nothing (a handler's or a detached
    /// operation's), after its caller has copied out what it needs. The entry is overwritten in
    /// place: a slot has no drop glue (asserted at compile time above), so the compiler writes only
    /// the entry's tag and link, where moving the whole slot out copied it twice.
    #[inline(always)]
    pub(crate) fn vacate(self) {
        debug_assert!(
            matches!(self.entry, Entry::Occupied(s) if matches!(s.state, Lifecycle::Handler | Lifecycle::Detached))
        );
        *self.entry = Entry::Vacant { next: *self.free };
        *self.free = self.key;
        *self.len -= 1;
    }
}

impl Table {
    pub(crate) fn with_capacity(capacity: usize) -> Table {
        Table { entries: Vec::with_capacity(capacity), free: NONE, len: 0, wakers: Vec::new() }
    }

    /// Stores `slot` and returns its key.
    #[inline(always)]
    pub(crate) fn insert(&mut self, slot: Slot) -> usize {
        self.insert_with(|| slot)
    }

    /// Stores the slot `make` builds, building it right where it is stored: a slot built first
    /// and moved in went through the stack, and the entry's 16-byte loads of it stalled on the
    /// narrower stores that had just built it (store forwarding fails).
    #[inline(always)]
    pub(crate) fn insert_with(&mut self, make: impl FnOnce() -> Slot) -> usize {
        self.len += 1;
        let key = self.free;
        match self.entries.get_mut(key) {
            Some(entry) => {
                let Entry::Vacant { next } = *entry else {
                    unreachable!("the free list links vacant entries only")
                };
                self.free = next;
                // SAFETY: the entry is vacant (it owns nothing), so overwriting it without
                // dropping the old value loses nothing; this skips reading it back to drop it.
                unsafe { std::ptr::write(entry, Entry::Occupied(make())) };
                key
            }
            None => {
                self.entries.push(Entry::Occupied(make()));
                self.entries.len() - 1
            }
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<&Slot> {
        self.entries.get(key)?.slot()
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut Slot> {
        self.entries.get_mut(key)?.slot_mut()
    }

    /// The occupied entry at `key` whose slot has `generation`: looked up once, then read,
    /// changed or freed through the handle without a second lookup.
    #[inline(always)]
    pub(crate) fn occupied(&mut self, key: usize, generation: u32) -> Option<Occupied<'_>> {
        let entry = self.entries.get_mut(key)?;
        match entry {
            Entry::Occupied(slot) if slot.generation == generation => {}
            _ => return None,
        }
        Some(Occupied { entry, key, free: &mut self.free, len: &mut self.len })
    }

    /// Keeps `waker` as the foreign waker of the slot at `key` (whose state then records
    /// `Wait::FOREIGN`; `None` when it no longer does), handing back the one kept before — to
    /// be dropped outside the table's borrow (a foreign waker's drop is user code).
    #[inline]
    pub(crate) fn replace_waker(&mut self, key: usize, waker: Option<Waker>) -> Option<Waker> {
        if key >= self.wakers.len() {
            waker.as_ref()?;
            self.wakers.resize_with(key + 1, || None);
        }
        std::mem::replace(&mut self.wakers[key], waker)
    }

    /// Takes out the foreign waker kept for the slot at `key`.
    #[inline]
    pub(crate) fn take_waker(&mut self, key: usize) -> Option<Waker> {
        self.wakers.get_mut(key)?.take()
    }

    /// The foreign waker kept for the slot at `key`.
    #[inline]
    pub(crate) fn waker(&self, key: usize) -> Option<&Waker> {
        self.wakers.get(key)?.as_ref()
    }

    /// Takes the slot at `key` out, freeing the key.
    #[inline]
    pub(crate) fn remove(&mut self, key: usize) -> Option<Slot> {
        let entry = self.entries.get_mut(key)?;
        if matches!(entry, Entry::Vacant { .. }) {
            return None;
        }
        let Entry::Occupied(slot) = std::mem::replace(entry, Entry::Vacant { next: self.free })
        else {
            unreachable!("checked occupied just above")
        };
        self.free = key;
        self.len -= 1;
        Some(slot)
    }

    /// Every occupied slot with its key.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.entries.iter().enumerate().filter_map(|(k, e)| Some((k, e.slot()?)))
    }

    /// Takes every slot out, with the foreign wakers kept for them (both to be dropped outside
    /// the table's borrow).
    pub(crate) fn drain(&mut self) -> (Vec<Slot>, Vec<Waker>) {
        self.free = NONE;
        self.len = 0;
        let wakers = self.wakers.drain(..).flatten().collect();
        let slots = self
            .entries
            .drain(..)
            .filter_map(|e| match e {
                Entry::Occupied(slot) => Some(slot),
                Entry::Vacant { .. } => None,
            })
            .collect();
        (slots, wakers)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::memory::OpMemory;
    use crate::runtime::slot::Plain;

    fn slot(memory: &OpMemory, generation: u32) -> Slot {
        Slot {
            op: memory.store(Plain(crate::op::Nop)).cast(),
            generation,
            kind: <Plain<crate::op::Nop> as crate::runtime::slot::Stored>::KIND,
            started: 0,
            state: Lifecycle::Handler,
        }
    }

    #[test]
    fn an_entry_is_half_a_cache_line() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        assert_eq!(std::mem::align_of::<Entry>(), 32);
    }

    #[test]
    fn keys_are_reused_last_freed_first_and_vacant_keys_read_as_none() {
        // `Nop` is zero-sized: its slots need no release.
        let m = OpMemory::new();
        let mut t = Table::with_capacity(2);
        let a = t.insert(slot(&m, 1));
        let b = t.insert(slot(&m, 2));
        let c = t.insert(slot(&m, 3));
        assert_eq!((a, b, c), (0, 1, 2));
        assert!(t.remove(a).is_some() && t.remove(c).is_some());
        assert!(t.get(a).is_none() && t.remove(a).is_none() && t.get(99).is_none());
        assert_eq!(t.insert(slot(&m, 4)), c);
        assert_eq!(t.insert(slot(&m, 5)), a);
        assert_eq!(t.get(a).map(|s| s.generation), Some(5));
        let keys: Vec<usize> = t.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [0, 1, 2]);
        assert!(t.occupied(b, 1).is_none(), "another generation");
        t.occupied(b, 2).expect("occupied").vacate();
        assert!(t.occupied(b, 2).is_none(), "vacated");
        assert!(t.get(b).is_none());
        assert_eq!(t.insert(slot(&m, 6)), b, "a vacated key is free again, once");
        assert_eq!(t.insert(slot(&m, 7)), 3);
        assert_eq!(t.drain().0.len(), 4);
        assert!(t.is_empty());
    }
}
