//! The run loop's table of operations: slots addressed by a small integer key, freed keys reused
//! last-in first-out.
//!
//! A slab, written here rather than taken from the `slab` crate because the insert is on the
//! path of every operation: inlined, the slot is written straight into its entry, where the
//! crate's out-of-line insert copied it from the caller's stack and stalled on the copy. Reusing
//! the most recently freed key keeps a busy loop on the same few cache lines.

use super::slot::Slot;

/// Slots by key.
pub(crate) struct Table {
    entries: Vec<Option<Slot>>,
    /// Keys of vacant entries, the most recently freed last.
    free: Vec<usize>,
    len: usize,
}

impl Table {
    pub(crate) fn with_capacity(capacity: usize) -> Table {
        Table { entries: Vec::with_capacity(capacity), free: Vec::with_capacity(capacity), len: 0 }
    }

    /// Stores `slot` and returns its key.
    #[inline]
    pub(crate) fn insert(&mut self, slot: Slot) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(key) => {
                let entry = &mut self.entries[key];
                debug_assert!(entry.is_none(), "a free key's entry is vacant");
                // SAFETY: a free key's entry is vacant (`None` owns nothing), so overwriting it
                // without reading or dropping the old value loses nothing; this skips reading
                // the old entry back just to drop it.
                unsafe { std::ptr::write(entry, Some(slot)) };
                key
            }
            None => {
                self.entries.push(Some(slot));
                self.entries.len() - 1
            }
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<&Slot> {
        self.entries.get(key)?.as_ref()
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut Slot> {
        self.entries.get_mut(key)?.as_mut()
    }

    /// Takes the slot at `key` out, freeing the key.
    #[inline]
    pub(crate) fn remove(&mut self, key: usize) -> Option<Slot> {
        let slot = self.entries.get_mut(key)?.take()?;
        self.free.push(key);
        self.len -= 1;
        Some(slot)
    }

    /// Frees the key of an occupied slot whose state owns nothing (a handler's or a detached
    /// operation's), after its caller has copied out what it needs: only the entry's tag is
    /// written, where moving the whole slot out copied the cache line twice.
    #[inline]
    pub(crate) fn vacate(&mut self, key: usize) {
        let Some(entry) = self.entries.get_mut(key) else { return };
        if let Some(slot) = entry {
            debug_assert!(matches!(
                slot.state,
                super::slot::Lifecycle::Handler | super::slot::Lifecycle::Detached
            ));
            *entry = None;
            self.free.push(key);
            self.len -= 1;
        }
    }

    /// Every occupied slot with its key.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.entries.iter().enumerate().filter_map(|(k, e)| Some((k, e.as_ref()?)))
    }

    /// Takes every slot out.
    pub(crate) fn drain(&mut self) -> Vec<Slot> {
        self.free.clear();
        self.len = 0;
        self.entries.drain(..).flatten().collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::memory::OpMemory;
    use crate::runtime::slot::{Lifecycle, Plain};

    fn slot(memory: &OpMemory, generation: u32) -> Slot {
        Slot {
            op: memory.store(Plain(crate::op::Nop)),
            generation,
            kind: <Plain<crate::op::Nop> as crate::runtime::slot::Stored>::KIND,
            started: 0,
            submitted: false,
            state: Lifecycle::Handler,
        }
    }

    #[test]
    fn an_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Option<Slot>>(), 64);
        assert_eq!(std::mem::align_of::<Option<Slot>>(), 64);
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
        t.vacate(b);
        t.vacate(b);
        assert!(t.get(b).is_none());
        assert_eq!(t.insert(slot(&m, 6)), b, "a vacated key is free again, once");
        assert_eq!(t.insert(slot(&m, 7)), 3);
        assert_eq!(t.drain().len(), 4);
        assert!(t.is_empty());
    }
}
