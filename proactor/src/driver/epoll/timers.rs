//! The epoll driver's timers: `Timeout` operations and the deadlines of other operations, in one
//! heap ordered by expiry.
//!
//! Entries are never removed from the middle of the heap: a cancelled timer stays until it
//! expires or the heap is compacted, and the driver checks every popped entry against the
//! operation it names (by sequence number) before acting on it.

use super::super::Token;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Heap entries below this count are never compacted.
const COMPACT_MIN: usize = 64;

/// One timer: when, a unique sequence number, and the operation it belongs to.
#[derive(Debug, Clone, Copy)]
struct Entry {
    when: Instant,
    seq: u64,
    token: Token,
}

// Ordered by expiry, then by sequence (unique), so equal expiries fire in the order they were set.
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.when, self.seq).cmp(&(other.when, other.seq))
    }
}

/// A min-heap of timers with lazy deletion.
#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
    /// Timers still wanted (pushed and neither fired nor dropped).
    live: usize,
}

impl Timers {
    /// Adds a timer at `when` for `token`; returns its sequence number.
    pub(super) fn add(&mut self, when: Instant, token: Token) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Entry { when, seq, token }));
        self.live += 1;
        seq
    }

    /// A timer is no longer wanted (its operation completed another way).
    pub(super) fn dropped(&mut self) {
        self.live = self.live.saturating_sub(1);
    }

    /// The earliest expiry in the heap (possibly of a dropped timer: an early wake-up is harmless).
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.when)
    }

    /// Pops one entry that expired by `now`: its sequence number and token.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<(u64, Token)> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.when <= now => {
                let Reverse(e) = self.heap.pop()?;
                Some((e.seq, e.token))
            }
            _ => None,
        }
    }

    /// A popped entry turned out to be live and fired.
    pub(super) fn fired(&mut self) {
        self.live = self.live.saturating_sub(1);
    }

    /// Rebuilds the heap without dropped entries once they outnumber the live ones, so a long
    /// stream of cancelled timeouts cannot grow it without bound.
    pub(super) fn compact(&mut self, is_live: impl Fn(u64, Token) -> bool) {
        if self.heap.len() < COMPACT_MIN || self.heap.len() <= 2 * self.live {
            return;
        }
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries.into_iter().filter(|Reverse(e)| is_live(e.seq, e.token)).collect();
        self.live = self.heap.len();
    }
}
