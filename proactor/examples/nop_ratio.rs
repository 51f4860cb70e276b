//! The NOP bench's ratios, measured so that a busy machine cannot skew them: short alternating
//! slices (raw io-uring, proactor handlers, proactor futures, raw again), each proactor figure
//! divided by the raw figures around it, and the median of those ratios printed.
//!
//! `cargo run --release -p proactor --example nop_ratio -- [BATCH=256] [ROUNDS=15]`
//! With a third argument `raw|h|f` it runs only that loop for 3 s and prints the operation count
//! (for `perf stat`: cycles and instructions per operation).
use io_uring::{opcode, IoUring};
use proactor::{op, submit, DriverChoice, Proactor, RingConfig};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn main() {
    let batch: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let rounds: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(15);
    let cfg = RingConfig { entries: 256, ..RingConfig::default() };
    let p = Proactor::builder().driver(DriverChoice::Uring).ring(cfg).build().unwrap();
    let eff = p.ring_config().unwrap();
    let mut b = IoUring::builder();
    b.setup_cqsize(eff.entries * 2);
    if eff.single_issuer {
        b.setup_single_issuer();
    }
    if eff.defer_taskrun {
        b.setup_defer_taskrun().setup_taskrun_flag();
    }
    let mut ring = b.build(eff.entries).unwrap();
    let slice = Duration::from_millis(150);
    let raw = |ring: &mut IoUring| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < slice {
            for _ in 0..64 {
                {
                    let mut sq = ring.submission();
                    for i in 0..batch {
                        let e = opcode::Nop::new().build().user_data(i as u64);
                        // SAFETY: a NOP carries no pointers.
                        unsafe { sq.push(&e).unwrap() };
                    }
                }
                ring.submit_and_wait(batch).unwrap();
                for cqe in ring.completion() {
                    assert!(cqe.result() >= 0);
                }
                n += batch as u64;
            }
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let handlers = |p: &Proactor| {
        let done = Rc::new(Cell::new(0usize));
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < slice {
            for _ in 0..64 {
                for _ in 0..batch {
                    let d = done.clone();
                    p.start(op::Nop, move |res| {
                        if res.is_ok() {
                            d.set(d.get() + 1);
                        }
                    });
                }
                p.run().unwrap();
                n += batch as u64;
            }
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let futures = |p: &Proactor| {
        p.block_on(async {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < slice {
                for _ in 0..64 {
                    let futs: Vec<_> = (0..batch).map(|_| submit(op::Nop)).collect();
                    join_all(futs).await;
                    n += batch as u64;
                }
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
    };
    if let Some(mode) = std::env::args().nth(3) {
        let t = Instant::now();
        let mut total = 0.0;
        while t.elapsed() < Duration::from_secs(3) {
            total += match mode.as_str() {
                "raw" => raw(&mut ring),
                "h" => handlers(&p),
                _ => futures(&p),
            } * slice.as_secs_f64();
        }
        println!("{mode}: ops {total:.0}");
        return;
    }
    let (mut rh, mut rf) = (vec![], vec![]);
    let mut raws = vec![];
    for _ in 0..rounds {
        let r1 = raw(&mut ring);
        let h = handlers(&p);
        let f = futures(&p);
        let r2 = raw(&mut ring);
        let r = (r1 + r2) / 2.0;
        raws.push(r);
        rh.push(h / r);
        rf.push(f / r);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!(
        "batch {batch}: raw {:.2} M/s  handlers {:.3}x  futures {:.3}x",
        med(&mut raws) / 1e6,
        med(&mut rh),
        med(&mut rf)
    );
}

async fn join_all(futs: Vec<proactor::Op<op::Nop>>) {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;
    let mut futs: Vec<Option<proactor::Op<op::Nop>>> = futs.into_iter().map(Some).collect();
    let mut left = futs.len();
    std::future::poll_fn(|cx| {
        for slot in futs.iter_mut() {
            if let Some(f) = slot {
                if Pin::new(f).poll(cx).is_ready() {
                    *slot = None;
                    left -= 1;
                }
            }
        }
        if left == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
