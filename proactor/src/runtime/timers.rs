//! The loop's timers: every sleep of this thread, ordered by deadline in a sorted queue and a
//! min-heap.
//!
//! The driver learns only the earliest deadline, as the timeout of its wait (io_uring: the
//! `io_uring_enter` timeout argument; epoll: `epoll_wait`'s), so arming, resetting and dropping a
//! sleep are heap operations on this thread and cost no kernel operation. After each wait the
//! loop fires every timer whose deadline has passed, in deadline order (equal deadlines in the
//! order they were armed), and wakes the futures awaiting them.
//!
//! Entries live in a vector addressed by [`TimerKey`] (index and generation, so a stale key
//! never reaches a reused entry); `(deadline, sequence, index)` nodes order them. A node whose
//! deadline is no earlier than the last one queued goes to the back of a sorted queue; any
//! other to a min-heap; the earliest timer is the earlier of the queue's front and the heap's
//! top. A server arms most of its timers as "now + the same timeout" (hyper's header-read
//! timeout, once per request; every `timeout(d, ..)` of one `d`), each no earlier than the one
//! before, so they take the queue: arming one is a push at its back, and taking the earliest a
//! pop at its front, where the heap would sift through its depth for each.
//!
//! Dropping or resetting a timer searches neither: its entry forgets the node's sequence, and
//! the node, dead, is skipped when it reaches the front (or the top), or swept with every other
//! dead node once they outnumber the live ones (so the two stay within about twice the armed
//! timers). A server's timers are mostly dropped long before their deadline, and in about the
//! order they were armed, so their nodes die near the queue's front and leave it at a pop.

use super::core::Core;
use super::slot::Waiter;
use std::collections::VecDeque;
use std::task::Waker;
use std::time::{Duration, Instant};

/// Names one timer of a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    index: u32,
    generation: u32,
}

/// Where one entry stands.
enum State {
    /// Armed, until its deadline: the heap's node of sequence `seq` is its own (any other
    /// node naming this entry is dead); `waiter` is whoever polled it last.
    Armed { seq: u64, waiter: Waiter },
    /// Its deadline passed; its future has not seen that yet.
    Fired,
    /// Not in use: the next vacant entry (`NONE` ends the list).
    Vacant { next: u32 },
}

struct Entry {
    generation: u32,
    state: State,
}

/// One node of the queue or the heap: the deadline, the arming sequence (which orders equal
/// deadlines) and the entry. The deadline is kept as the `Instant` it was given: converting it
/// to a number (nanoseconds after some epoch) cost more per arm than comparing two `Instant`s
/// costs per step of the heap.
#[derive(Clone, Copy)]
struct Node {
    deadline: Instant,
    seq: u64,
    index: u32,
}

impl Node {
    /// True if `self` fires before `other`: an earlier deadline, or the same one armed first.
    #[inline]
    fn before(&self, other: &Node) -> bool {
        (self.deadline, self.seq) < (other.deadline, other.seq)
    }
}

/// No vacant entry.
const NONE: u32 = u32::MAX;

/// Dead nodes are swept only past this many (a small heap is cheap to skip through).
const SWEEP_MIN: usize = 64;

/// What the loop's timers have done, for [`crate::runtime::Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimerStats {
    /// Timers armed now (sleeps polled and not yet fired or dropped).
    pub armed: usize,
    /// Timers armed so far.
    pub started: u64,
    /// Timers that reached their deadline so far.
    pub fired: u64,
    /// Timers dropped or reset before their deadline so far (none of them cost a kernel
    /// operation).
    pub cancelled: u64,
}

/// Every timer of one loop.
pub(crate) struct Timers {
    entries: Vec<Entry>,
    /// Nodes in firing order (`Node::before`), live and dead: a node is pushed here when it
    /// fires after the back (see the module documentation).
    queue: VecDeque<Node>,
    /// A min-heap (by `Node::before`) of the other nodes, live and dead.
    heap: Vec<Node>,
    /// How many nodes of `queue` and `heap` are dead.
    dead: usize,
    free: u32,
    seq: u64,
    stats: TimerStats,
    /// Waiters of fired timers, between taking them out of the heap and waking them (kept to
    /// reuse its allocation).
    due: Vec<Waiter>,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            entries: Vec::new(),
            queue: VecDeque::new(),
            heap: Vec::new(),
            dead: 0,
            free: NONE,
            seq: 0,
            stats: TimerStats::default(),
            due: Vec::new(),
        }
    }

    /// True if `node` is its entry's own (not left behind by a drop or a reset).
    #[inline]
    fn is_live(&self, node: &Node) -> bool {
        matches!(self.entries[node.index as usize].state, State::Armed { seq, .. } if seq == node.seq)
    }

    /// The earliest node, live or dead, and whether it is the queue's (else the heap's).
    #[inline]
    fn first(&self) -> Option<(Node, bool)> {
        match (self.queue.front(), self.heap.first()) {
            (Some(q), Some(h)) if h.before(q) => Some((*h, false)),
            (Some(q), _) => Some((*q, true)),
            (None, h) => h.map(|h| (*h, false)),
        }
    }

    /// Takes the earliest node out (`queued`: as `first` said).
    #[inline]
    fn pop_first(&mut self, queued: bool) {
        if queued {
            self.queue.pop_front();
        } else {
            self.pop();
        }
    }

    /// The earliest deadline of an armed timer (dead nodes in front are dropped on the way).
    #[inline]
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        loop {
            let (first, queued) = self.first()?;
            if self.is_live(&first) {
                return Some(first.deadline);
            }
            self.pop_first(queued);
            self.dead -= 1;
        }
    }

    /// Nodes held, live and dead.
    fn nodes(&self) -> usize {
        self.queue.len() + self.heap.len()
    }

    pub(crate) fn stats(&self) -> TimerStats {
        TimerStats { armed: self.nodes() - self.dead, ..self.stats }
    }

    /// Arms a new timer for `deadline`, to wake `waiter`.
    fn arm(&mut self, deadline: Instant, waiter: Waiter) -> TimerKey {
        let index = if self.free != NONE {
            let index = self.free;
            let entry = &mut self.entries[index as usize];
            let State::Vacant { next } = entry.state else {
                unreachable!("the free list holds vacant entries only")
            };
            self.free = next;
            entry.generation = entry.generation.wrapping_add(1);
            index
        } else {
            let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 timers");
            self.entries.push(Entry { generation: 0, state: State::Fired });
            index
        };
        let seq = self.push_node(deadline, index);
        let entry = &mut self.entries[index as usize];
        entry.state = State::Armed { seq, waiter };
        self.stats.started += 1;
        TimerKey { index, generation: entry.generation }
    }

    /// Adds a node for entry `index`: at the queue's back if it sorts there, else in the heap.
    /// Returns its sequence.
    #[inline]
    fn push_node(&mut self, deadline: Instant, index: u32) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        let node = Node { deadline, seq, index };
        let sorts_last = match self.queue.back() {
            Some(last) => last.before(&node),
            None => true,
        };
        if sorts_last {
            self.queue.push_back(node);
        } else {
            self.heap.push(node);
            self.sift_up(self.heap.len() - 1);
        }
        seq
    }

    fn entry_mut(&mut self, key: TimerKey) -> Option<&mut Entry> {
        self.entries
            .get_mut(key.index as usize)
            .filter(|e| e.generation == key.generation && !matches!(e.state, State::Vacant { .. }))
    }

    /// Takes the top node out of the heap.
    fn pop(&mut self) -> Option<Node> {
        let last = self.heap.pop()?;
        let Some(first) = self.heap.first_mut() else { return Some(last) };
        let top = std::mem::replace(first, last);
        self.sift_down(0);
        Some(top)
    }

    /// One more node is dead; sweeps them all once they outnumber the live ones.
    #[inline]
    fn one_dead(&mut self) {
        self.dead += 1;
        if self.dead > SWEEP_MIN && self.dead * 2 > self.nodes() {
            self.sweep();
        }
    }

    /// Drops every dead node and restores the heap order (O(n), once per n/2 dead nodes); the
    /// queue stays sorted.
    #[cold]
    fn sweep(&mut self) {
        let mut queue = std::mem::take(&mut self.queue);
        queue.retain(|n| self.is_live(n));
        self.queue = queue;
        let mut heap = std::mem::take(&mut self.heap);
        heap.retain(|n| self.is_live(n));
        self.heap = heap;
        self.dead = 0;
        for pos in (0..self.heap.len() / 2).rev() {
            self.sift_down(pos);
        }
    }

    /// Frees the entry of `key` (dropped sleep); its waiter is handed back to be dropped
    /// outside the loop's borrow (a foreign waker's drop is user code).
    fn remove(&mut self, key: TimerKey) -> Option<Waiter> {
        let free = self.free;
        let entry = self.entry_mut(key)?;
        let old = std::mem::replace(&mut entry.state, State::Vacant { next: free });
        self.free = key.index;
        match old {
            State::Armed { waiter, .. } => {
                self.one_dead();
                self.stats.cancelled += 1;
                Some(waiter)
            }
            _ => None,
        }
    }

    /// Moves the armed timer of `key` to `deadline`. False if it is not armed (it fired, or the
    /// key is stale).
    fn reset(&mut self, key: TimerKey, deadline: Instant) -> bool {
        let Some(entry) = self.entry_mut(key) else { return false };
        if !matches!(entry.state, State::Armed { .. }) {
            return false;
        }
        // A new node; the old one is dead from the moment the entry records the new sequence.
        let new_seq = self.push_node(deadline, key.index);
        if let State::Armed { seq, .. } = &mut self.entries[key.index as usize].state {
            *seq = new_seq;
        }
        self.one_dead();
        self.stats.cancelled += 1;
        self.stats.started += 1;
        true
    }

    fn sift_up(&mut self, mut pos: usize) {
        let node = self.heap[pos];
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if !node.before(&self.heap[parent]) {
                break;
            }
            self.heap[pos] = self.heap[parent];
            pos = parent;
        }
        self.heap[pos] = node;
    }

    fn sift_down(&mut self, mut pos: usize) {
        let len = self.heap.len();
        let node = self.heap[pos];
        loop {
            let l = 2 * pos + 1;
            if l >= len {
                break;
            }
            let r = l + 1;
            let child = if r < len && self.heap[r].before(&self.heap[l]) { r } else { l };
            if !self.heap[child].before(&node) {
                break;
            }
            self.heap[pos] = self.heap[child];
            pos = child;
        }
        self.heap[pos] = node;
    }

    /// Moves every timer due by `now` to `Fired`, earliest first, and their waiters to `due`.
    fn expire(&mut self, now: Instant) {
        while let Some((first, queued)) = self.first() {
            if first.deadline > now {
                break;
            }
            self.pop_first(queued);
            if !self.is_live(&first) {
                self.dead -= 1;
                continue;
            }
            let entry = &mut self.entries[first.index as usize];
            if let State::Armed { waiter, .. } = std::mem::replace(&mut entry.state, State::Fired) {
                self.due.push(waiter);
            }
            self.stats.fired += 1;
        }
    }
}

/// The timer operations of the loop, used by [`crate::time::Sleep`]. None of them reaches the
/// driver: the loop folds the earliest deadline into its wait ([`Core::wait_timeout`]) and fires
/// what is due after it ([`Core::fire_timers`]).
impl Core {
    /// Arms a timer for `deadline`, waking the task polling with `waker`.
    pub(crate) fn arm_timer(&self, deadline: Instant, waker: &Waker) -> TimerKey {
        let waiter = self.executor.waiter(waker);
        self.timers.borrow_mut().arm(deadline, waiter)
    }

    /// True once the timer of `key` has fired (a stale key counts as fired); otherwise the
    /// waker polling now becomes its waiter.
    pub(crate) fn poll_timer(&self, key: TimerKey, waker: &Waker) -> bool {
        {
            let mut timers = self.timers.borrow_mut();
            let Some(entry) = timers.entry_mut(key) else { return true };
            match &mut entry.state {
                State::Armed { waiter, .. } => {
                    if self.executor.is_waiter(waiter, waker) {
                        return false;
                    }
                }
                _ => return true,
            }
        }
        // A new waiter: cloned, and the old one dropped, outside the borrow (user code).
        let mut waiter = self.executor.waiter(waker);
        if let Some(entry) = self.timers.borrow_mut().entry_mut(key) {
            if let State::Armed { waiter: w, .. } = &mut entry.state {
                std::mem::swap(w, &mut waiter);
            }
        }
        // The old waiter (or the unused new one), dropped after the borrow.
        drop(waiter);
        false
    }

    /// Moves the armed timer of `key` to `deadline`, keeping its waiter. False if it is not
    /// armed (it fired, or the key is stale).
    pub(crate) fn move_timer(&self, key: TimerKey, deadline: Instant) -> bool {
        self.timers.borrow_mut().reset(key, deadline)
    }

    /// Drops the timer of `key`, fired or not.
    pub(crate) fn cancel_timer(&self, key: TimerKey) {
        let waiter = self.timers.borrow_mut().remove(key);
        drop(waiter);
    }

    /// The wait's timeout: `timeout`, or less if a timer is due sooner (zero if one is due).
    #[inline]
    pub(crate) fn wait_timeout(&self, timeout: Option<Duration>) -> Option<Duration> {
        let Some(next) = self.timers.borrow_mut().next_deadline() else { return timeout };
        let until = next.saturating_duration_since(Instant::now());
        Some(timeout.map_or(until, |t| t.min(until)))
    }

    /// Fires every timer due by `now` and wakes its waiter.
    #[inline]
    pub(crate) fn fire_timers(&self, now: Instant) {
        let mut due = {
            let mut timers = self.timers.borrow_mut();
            match timers.next_deadline() {
                Some(next) if next <= now => {}
                _ => return,
            }
            timers.expire(now);
            std::mem::take(&mut timers.due)
        };
        for waiter in due.drain(..) {
            self.wake(waiter);
        }
        let mut timers = self.timers.borrow_mut();
        if timers.due.capacity() < due.capacity() {
            timers.due = due;
        }
    }

    /// What the loop's timers have done.
    pub(crate) fn timer_stats(&self) -> TimerStats {
        self.timers.borrow().stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Waiter {
        Waiter::Task(1)
    }

    #[test]
    fn fires_in_deadline_order_then_arming_order() {
        let mut t = Timers::new();
        let base = Instant::now();
        let ms = |n| base + Duration::from_millis(n);
        let order = [5, 1, 9, 1, 3, 7, 2, 8];
        let keys: Vec<_> = order.iter().map(|&n| t.arm(ms(n), Waiter::Task(n as usize))).collect();
        assert_eq!(t.next_deadline(), Some(ms(1)));
        // Drop one, move one later and one earlier.
        assert!(t.remove(keys[2]).is_some());
        assert!(t.reset(keys[0], ms(10)));
        assert!(t.reset(keys[7], ms(0)));
        t.expire(ms(100));
        let fired: Vec<usize> = t
            .due
            .drain(..)
            .map(|w| match w {
                Waiter::Task(k) => k,
                Waiter::Waker(_) => unreachable!(),
            })
            .collect();
        assert_eq!(fired, vec![8, 1, 1, 2, 3, 7, 5]);
        assert_eq!(t.stats().armed, 0);
        assert_eq!(t.stats().fired, 7);
        assert_eq!(t.stats().cancelled, 3, "one dropped, two reset");
    }

    #[test]
    fn stale_keys_miss_reused_entries_and_the_heap_stays_small() {
        let mut t = Timers::new();
        let far = Instant::now() + Duration::from_secs(30);
        let old = t.arm(far, w());
        assert!(t.remove(old).is_some());
        let new = t.arm(far, w());
        assert_eq!(new.index, old.index, "the entry is reused");
        assert!(t.remove(old).is_none(), "a stale key reaches nothing");
        assert!(!t.reset(old, far));
        assert_eq!(t.stats().armed, 1);
        for _ in 0..10_000 {
            let k = t.arm(far, w());
            t.remove(k);
        }
        assert_eq!(t.stats().armed, 1);
        assert!(t.nodes() <= 2 * SWEEP_MIN + 2, "dead nodes are swept: {}", t.nodes());
        assert!(t.entries.len() <= 2);
    }

    #[test]
    fn a_fired_timer_is_not_moved() {
        let mut t = Timers::new();
        let now = Instant::now();
        let k = t.arm(now, w());
        t.expire(now);
        assert_eq!(t.due.len(), 1);
        assert!(matches!(t.entry_mut(k).unwrap().state, State::Fired));
        assert!(!t.reset(k, now + Duration::from_secs(1)), "its sleep arms a new one");
        assert_eq!(t.next_deadline(), None);
        assert!(t.remove(k).is_none());
        assert_eq!(t.stats().cancelled, 0, "a fired timer freed is not a cancel");
    }

    #[test]
    fn the_heap_keeps_its_order_under_random_removals() {
        let mut t = Timers::new();
        let base = Instant::now();
        let mut x: u64 = 12345;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut live = Vec::new();
        for _ in 0..2000 {
            let d = base + Duration::from_micros(next() % 10_000);
            live.push(t.arm(d, w()));
            if next() % 3 == 0 {
                let i = (next() as usize) % live.len();
                t.remove(live.swap_remove(i));
            }
            if next() % 5 == 0 && !live.is_empty() {
                let i = (next() as usize) % live.len();
                t.reset(live[i], base + Duration::from_micros(next() % 10_000));
            }
        }
        assert_eq!(t.stats().armed, live.len());
        assert!(t.nodes() <= 2 * live.len() + SWEEP_MIN + 1, "swept: {}", t.nodes());
        let mut last = base;
        while let Some(first) = t.next_deadline() {
            assert!(first >= last);
            last = first;
            t.expire(first);
        }
        assert_eq!(t.stats().fired as usize, live.len());
        assert_eq!((t.nodes(), t.dead), (0, 0));
    }

    /// Fires everything due by `until`, returning the waiters' task numbers in firing order.
    fn fire_all(t: &mut Timers, until: Instant) -> Vec<usize> {
        t.expire(until);
        t.due
            .drain(..)
            .map(|w| match w {
                Waiter::Task(k) => k,
                Waiter::Waker(_) => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn timers_armed_in_deadline_order_take_the_queue_and_leave_at_its_front() {
        let mut t = Timers::new();
        let base = Instant::now() + Duration::from_secs(30);
        // A server's pattern: each request arms "now + 30 s" and drops it at the next request,
        // 100 connections taking turns.
        let mut armed = std::collections::VecDeque::new();
        for i in 0..100u64 {
            armed.push_back(t.arm(base + Duration::from_micros(i), w()));
        }
        for i in 100..10_000u64 {
            let k = armed.pop_front().unwrap();
            assert!(t.remove(k).is_some());
            // The loop asks for the next deadline every turn: the dead front leaves there.
            assert_eq!(t.next_deadline(), Some(base + Duration::from_micros(i - 99)));
            armed.push_back(t.arm(base + Duration::from_micros(i), w()));
        }
        assert!(t.heap.is_empty(), "every node sorted at the queue's back");
        assert_eq!(t.dead, 0, "each dead node left at the front");
        assert_eq!(t.queue.len(), 100);
    }

    #[test]
    fn the_queue_and_the_heap_fire_as_one_order() {
        let mut t = Timers::new();
        let base = Instant::now();
        let ms = |n: u64| base + Duration::from_millis(n);
        // Into the queue: 10, 20, 20, 20, 30; into the heap (earlier than the queue's back): 5,
        // 25, 1, 20. Equal deadlines fire in arming order, whichever side holds them.
        let plan = [(10, 0), (20, 1), (5, 2), (20, 3), (20, 4), (30, 5), (25, 6), (1, 7), (20, 8)];
        let keys: Vec<_> = plan.iter().map(|&(d, n)| t.arm(ms(d), Waiter::Task(n))).collect();
        assert_eq!((t.queue.len(), t.heap.len()), (5, 4));
        assert_eq!(t.next_deadline(), Some(ms(1)));
        // A reset moves a heap timer to the queue's back and a queue timer into the heap.
        assert!(t.reset(keys[2], ms(40)));
        assert!(t.reset(keys[5], ms(15)));
        assert_eq!(fire_all(&mut t, ms(20)), vec![7, 0, 5, 1, 3, 4, 8]);
        assert_eq!(t.next_deadline(), Some(ms(25)));
        assert_eq!(fire_all(&mut t, ms(100)), vec![6, 2]);
        assert_eq!(t.next_deadline(), None);
        assert_eq!((t.nodes(), t.dead), (0, 0));
    }
}
