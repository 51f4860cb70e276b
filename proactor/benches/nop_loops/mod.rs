//! The loops the NOP bench times, shared by `benches/nop.rs` (criterion) and
//! `examples/nop_ratio.rs` (alternating slices): one batch of NOPs through a raw io-uring ring,
//! through completion handlers, and through futures.
#![allow(dead_code)]

use io_uring::{opcode, IoUring};
use proactor::{op, submit, Op, Proactor, RingConfig};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// A raw ring with the setup flags `cfg` names (pass the proactor's effective setup).
pub fn raw_ring(cfg: &RingConfig) -> IoUring {
    let mut b = IoUring::builder();
    b.setup_cqsize(cfg.cq_size());
    if cfg.is_single_issuer() {
        b.setup_single_issuer();
    }
    if cfg.is_defer_taskrun() {
        b.setup_defer_taskrun().setup_taskrun_flag();
    } else if cfg.is_coop_taskrun() {
        b.setup_coop_taskrun().setup_taskrun_flag();
    }
    b.build(cfg.sq_size()).expect("raw io_uring ring")
}

/// `batch` NOPs pushed, submitted in one `io_uring_enter`, and all reaped.
pub fn raw_batch(ring: &mut IoUring, batch: usize) {
    {
        let mut sq = ring.submission();
        for i in 0..batch {
            let e = opcode::Nop::new().build().user_data(i as u64);
            // SAFETY: a NOP carries no pointers.
            unsafe { sq.push(&e).expect("room for the batch") };
        }
    }
    ring.submit_and_wait(batch).unwrap();
    let mut seen = 0;
    for cqe in ring.completion() {
        assert!(cqe.result() >= 0);
        seen += 1;
    }
    assert_eq!(seen, batch);
}

/// `batch` NOPs started with completion handlers (each counts into `done`), then `run()`.
pub fn handler_batch(p: &Proactor, batch: usize, done: &Rc<Cell<usize>>) {
    for _ in 0..batch {
        let d = done.clone();
        p.start(op::Nop, move |res| {
            if res.is_ok() {
                d.set(d.get() + 1);
            }
        });
    }
    p.run().unwrap();
}

/// Awaits every future of a batch (all are polled, so all are submitted, before any wait).
pub struct JoinAll<F: Future> {
    futs: Vec<Option<F>>,
    left: usize,
}

impl<F: Future + Unpin> Future for JoinAll<F> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        for slot in this.futs.iter_mut() {
            if let Some(f) = slot {
                if Pin::new(f).poll(cx).is_ready() {
                    *slot = None;
                    this.left -= 1;
                }
            }
        }
        if this.left == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// `batch` NOP futures, awaited together.
pub fn nop_batch(batch: usize) -> JoinAll<Op<op::Nop>> {
    JoinAll { futs: (0..batch).map(|_| Some(submit(op::Nop))).collect(), left: batch }
}
