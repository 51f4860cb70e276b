//! Helpers shared by the core's tests (`ops.rs`, `lifecycle.rs`, `front_ends.rs`): running one
//! operation through either front end, and a buffer that counts its own destruction.
#![allow(dead_code)]

use proactor::op::OpCode;
use proactor::{IoBuf, IoBufMut, Proactor};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

/// The two front ends of the proactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// `submit(op).await` inside `block_on`.
    Future,
    /// `start(op, handler)` then `run()`.
    Handler,
}

/// Both front ends, for `for front in FRONTS`.
pub const FRONTS: [Front; 2] = [Front::Future, Front::Handler];

/// Runs `op` to completion through `front` and returns its output.
pub fn run_op<O: OpCode>(p: &Proactor, front: Front, op: O) -> O::Output {
    match front {
        Front::Future => p.block_on(proactor::submit(op)),
        Front::Handler => {
            let out = Rc::new(RefCell::new(None));
            let o = out.clone();
            p.start(op, move |r| *o.borrow_mut() = Some(r));
            p.run().expect("run");
            let r = out.borrow_mut().take();
            r.expect("the handler ran before run() returned")
        }
    }
}

/// The errno of an operation's error.
pub fn errno(err: &std::io::Error) -> Option<i32> {
    proactor::op::raw_os_error(err)
}

/// Shared record of which [`CountingBuf`]s were dropped, and how often.
pub struct DropLedger {
    drops: Vec<AtomicU8>,
    total: AtomicUsize,
}

impl DropLedger {
    /// A ledger for `n` buffers, numbered `0..n`.
    pub fn new(n: usize) -> Arc<DropLedger> {
        Arc::new(DropLedger {
            drops: (0..n).map(|_| AtomicU8::new(0)).collect(),
            total: AtomicUsize::new(0),
        })
    }
    /// Buffers dropped so far.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
    /// Panics unless every buffer was dropped exactly once.
    pub fn assert_each_dropped_once(&self) {
        for (i, d) in self.drops.iter().enumerate() {
            assert_eq!(
                d.load(Ordering::SeqCst),
                1,
                "buffer {i} dropped {} times",
                d.load(Ordering::SeqCst)
            );
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
    /// Buffer number `id` with `cap` bytes of capacity, empty.
    pub fn new(ledger: &Arc<DropLedger>, id: usize, cap: usize) -> CountingBuf {
        CountingBuf { data: Vec::with_capacity(cap), id, ledger: ledger.clone() }
    }
    /// The bytes read into it.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for CountingBuf {
    fn drop(&mut self) {
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

/// Polls `fut` once with the current context; true if it finished.
pub async fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> bool {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx).is_ready())
    })
    .await
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors owned by nothing else.
    unsafe {
        (std::os::fd::OwnedFd::from_raw_fd(fds[0]), std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    }
}

/// Yields once to the run loop, so that it turns (submits and reaps) before the task goes on.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Number of sockets and pipes this process has open. Unlike a count of every descriptor, it
/// is not disturbed by proactors being built in parallel test threads (rings, eventfds and epoll
/// instances are anonymous inodes), so a leaked accepted socket or pipe shows up exactly.
pub fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| {
                    let t = t.to_string_lossy();
                    t.starts_with("socket:") || t.starts_with("pipe:")
                })
                .count()
        })
        .unwrap_or(0)
}
