//! A buffer that counts its own destruction, for tests that every buffer handed to an operation
//! is dropped exactly once, and only when the kernel is done with it.

use proactor::{IoBuf, IoBufMut};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Shared record of which [`CountingBuf`]s were dropped, how often, and (with
/// [`DropLedger::observing`]) what a probe said at each drop.
pub struct DropLedger {
    drops: Vec<AtomicU8>,
    total: AtomicUsize,
    /// Called at every drop; what it returns is kept in `observed`, in the order of the drops.
    probe: Option<fn() -> usize>,
    observed: Mutex<Vec<usize>>,
}

impl DropLedger {
    /// A ledger for `n` buffers, numbered `0..n`.
    pub fn new(n: usize) -> Arc<DropLedger> {
        Self::build(n, None)
    }

    /// A ledger for `n` buffers that also calls `probe` at every drop (for what the runtime
    /// still holds at that moment) and keeps what it returned, in order: see [`Self::observed`].
    pub fn observing(n: usize, probe: fn() -> usize) -> Arc<DropLedger> {
        Self::build(n, Some(probe))
    }

    fn build(n: usize, probe: Option<fn() -> usize>) -> Arc<DropLedger> {
        Arc::new(DropLedger {
            drops: (0..n).map(|_| AtomicU8::new(0)).collect(),
            total: AtomicUsize::new(0),
            probe,
            observed: Mutex::new(Vec::new()),
        })
    }

    /// Buffers dropped so far.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// What the probe returned at each drop so far, in order.
    pub fn observed(&self) -> Vec<usize> {
        self.observed.lock().unwrap().clone()
    }

    /// Panics unless every buffer was dropped exactly once.
    pub fn assert_each_dropped_once(&self) {
        for (i, d) in self.drops.iter().enumerate() {
            let n = d.load(Ordering::SeqCst);
            assert_eq!(n, 1, "buffer {i} dropped {n} times");
        }
    }
}

/// A heap buffer that records its destruction in a [`DropLedger`].
pub struct CountingBuf {
    data: Vec<u8>,
    id: usize,
    ledger: Arc<DropLedger>,
}

impl CountingBuf {
    /// Buffer number `id` with `cap` bytes of capacity, empty (to receive into).
    pub fn new(ledger: &Arc<DropLedger>, id: usize, cap: usize) -> CountingBuf {
        Self::from_vec(ledger, id, Vec::with_capacity(cap))
    }

    /// Buffer number `id` holding `data` (to send).
    pub fn from_vec(ledger: &Arc<DropLedger>, id: usize, data: Vec<u8>) -> CountingBuf {
        CountingBuf { data, id, ledger: ledger.clone() }
    }

    /// The bytes it holds.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for CountingBuf {
    fn drop(&mut self) {
        if let Some(probe) = self.ledger.probe {
            self.ledger.observed.lock().unwrap().push(probe());
        }
        self.ledger.drops[self.id].fetch_add(1, Ordering::SeqCst);
        self.ledger.total.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: delegates to the inner Vec, whose heap block does not move with the value.
unsafe impl IoBuf for CountingBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.data.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.data.bytes_init()
    }
    fn bytes_total(&self) -> usize {
        self.data.bytes_total()
    }
}

// SAFETY: delegates to the inner Vec.
unsafe impl IoBufMut for CountingBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.data.stable_mut_ptr()
    }
    unsafe fn set_init(&mut self, n: usize) {
        // SAFETY: forwarded with the caller's guarantee.
        unsafe { self.data.set_init(n) }
    }
}
