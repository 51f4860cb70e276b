//! The NOP bench's ratios, measured so that a busy machine cannot skew them: short alternating
//! slices (raw io-uring, proactor handlers, proactor futures, raw again), each proactor figure
//! divided by the raw figures around it, and the median of those ratios printed.
//!
//! `cargo run --release -p proactor --example nop_ratio -- [BATCH=256] [ROUNDS=15]`
//! With a third argument `raw|h|f` it runs only that loop for 3 s and prints the operation count
//! (for `perf stat`: cycles and instructions per operation).
#[path = "../benches/nop_loops/mod.rs"]
mod nop_loops;

use io_uring::IoUring;
use nop_loops::{handler_batch, nop_batch, raw_batch, raw_ring};
use proactor::{DriverChoice, Proactor, RingConfig};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn main() {
    let batch: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let rounds: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(15);
    let cfg = RingConfig::default().entries(256);
    let p = Proactor::builder().driver(DriverChoice::Uring).ring(cfg).build().unwrap();
    let mut ring = raw_ring(&p.ring_config().unwrap());
    let slice = Duration::from_millis(150);
    let raw = |ring: &mut IoUring| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < slice {
            for _ in 0..64 {
                raw_batch(ring, batch);
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
                handler_batch(p, batch, &done);
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
                    nop_batch(batch).await;
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
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "batch {batch}: raw {:.2} M/s  handlers {:.3}x  futures {:.3}x",
        med(&mut raws) / 1e6,
        med(&mut rh),
        med(&mut rf)
    );
}
