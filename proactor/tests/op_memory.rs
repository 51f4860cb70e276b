//! Operations of every size and alignment through the loop's recycled operation memory: each
//! handler and each future gets back exactly what it put in, whether its memory came from a
//! size class (reused block after block) or straight from the allocator (large, over-aligned).

mod common;

use proactor::Proactor;
use proactor::{op, submit};
use std::cell::RefCell;
use std::rc::Rc;

/// Over-aligned: bypasses the size classes.
#[repr(align(64))]
#[derive(Clone, Copy)]
struct Aligned([u64; 3]);

fn pattern<const N: usize>(seed: u8) -> [u8; N] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
}

#[proactor::test]
fn handlers_of_every_size_get_their_captures_back(p: &Proactor) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    for round in 0..4u8 {
        for i in 0..200u8 {
            let seed = round.wrapping_mul(17).wrapping_add(i);
            let s = seen.clone();
            match i % 4 {
                0 => {
                    let small = seed;
                    p.start(op::Nop, move |r| s.borrow_mut().push((r.is_ok(), small == seed)));
                }
                1 => {
                    let mid: [u8; 300] = pattern(seed);
                    p.start(op::Nop, move |r| {
                        s.borrow_mut().push((r.is_ok(), mid == pattern::<300>(seed)))
                    });
                }
                2 => {
                    let big: [u8; 4096] = pattern(seed);
                    p.start(op::Nop, move |r| {
                        s.borrow_mut().push((r.is_ok(), big == pattern::<4096>(seed)))
                    });
                }
                _ => {
                    let a = Aligned([seed as u64; 3]);
                    p.start(op::Nop, move |r| {
                        let addr = &a as *const Aligned as usize;
                        s.borrow_mut()
                            .push((r.is_ok(), addr.is_multiple_of(64) && a.0 == [seed as u64; 3]))
                    });
                }
            }
        }
        p.run().unwrap();
    }
    let seen = seen.borrow();
    assert_eq!(seen.len(), 800);
    assert!(seen.iter().all(|&(ok, intact)| ok && intact), "a handler lost its captures");
}

#[proactor::test]
fn futures_and_dropped_futures_reuse_memory_safely(p: &Proactor) {
    p.block_on(async {
        for round in 0..50u32 {
            // A pipe read that is dropped in flight (parked, then freed at its completion)
            // next to reads that complete: the recycled blocks must never mix them up.
            let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
            let (r, w) = (Rc::new(r), Rc::new(w));
            let mut parked = Box::pin(submit(op::Read::new(r.clone(), vec![0u8; 64])));
            let waker = std::task::Waker::noop();
            let _ = parked.as_mut().poll(&mut std::task::Context::from_waker(waker));
            drop(parked);
            let msg = format!("round {round}");
            let (res, _) = submit(op::Write::new(w.clone(), msg.clone().into_bytes())).await;
            assert_eq!(res.unwrap(), msg.len());
            w.shutdown(std::net::Shutdown::Write).unwrap();
            // The dropped read may or may not have consumed the message first.
            let mut got = Vec::new();
            loop {
                let (res, buf) = submit(op::Read::new(r.clone(), vec![0u8; 64])).await;
                if res.unwrap() == 0 {
                    break;
                }
                got.extend_from_slice(&buf);
            }
            assert!(got.is_empty() || got == msg.as_bytes(), "round {round}: got {got:?}");
        }
    });
}

use std::future::Future;
