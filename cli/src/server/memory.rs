//! Giving memory back after a burst of connections.
//!
//! Each connection's buffers and task come from the C allocator's heap. When thousands of them
//! close (5,000 slowloris clients freed by the header timeout, say) glibc keeps the freed pages:
//! it returns memory to the system only from the top of a heap, and a page keeps its memory
//! while anything on it is still allocated — a table that grew during the burst, or the blocks
//! the loop caches for operations (one per receive the burst had in flight, one or two per
//! page), which `Handle::release_idle_memory` gives back first. So once the open connections
//! have passed [`BURST`], each time they fall to half of what they were at the last trim (or at
//! their peak) the server asks the loop and then the allocator to release every free page
//! (`malloc_trim`, which walks all arenas): a handful of trims per burst, none for a server
//! that never holds many connections.

/// Connections a server must have held at once for its falls to be worth a trim.
const BURST: usize = 1024;

/// Follows the open connections and trims the heap as a burst of them ends.
#[derive(Default)]
pub(crate) struct Trimmer {
    /// The most open at once since the last burst ended.
    high: std::cell::Cell<usize>,
    /// Open connections at the last trim, or the peak since.
    level: std::cell::Cell<usize>,
}

impl Trimmer {
    /// `open` connections are open now (called as each opens and closes).
    pub(crate) fn note(&self, open: usize) {
        self.high.set(self.high.get().max(open));
        if open > self.level.get() {
            self.level.set(open);
        } else if self.high.get() >= BURST && open <= self.level.get() / 2 {
            self.level.set(open);
            release_free_memory();
            if open < BURST / 16 {
                self.high.set(open); // the burst is over
            }
        }
    }
}

/// Returns the loop's cached operation memory and then the allocator's free pages to the
/// system.
fn release_free_memory() {
    if let Some(handle) = proactor::Handle::try_current() {
        handle.release_idle_memory();
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a byte count and only rearranges the allocator's own free
        // memory; it is thread-safe (each arena is locked while trimmed).
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(released = released != 0, "heap trimmed after a burst of connections");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many trims `opens` (the open count after each change) cause.
    fn trims(t: &Trimmer, opens: impl Iterator<Item = usize>) -> usize {
        opens
            .filter(|&open| {
                let before = t.level.get();
                t.note(open);
                t.level.get() < before
            })
            .count()
    }

    #[test]
    fn trims_at_each_halving_of_a_burst() {
        let t = Trimmer::default();
        assert_eq!(trims(&t, 1..=5000), 0);
        // 5000 -> 0: at 2500, 1250, 625, 312, 156, 78 and 39, where the burst is over.
        assert_eq!(trims(&t, (0..5000).rev()), 7);
        assert_eq!(t.high.get(), 39);
        // A server that never holds a burst never trims.
        assert_eq!(trims(&t, (1..=1000).chain((0..1000).rev())), 0);
    }
}
