//! The completion path's cost: NOP round trips through the proactor — completion handlers and
//! futures — against a raw loop on the `io-uring` crate, in the same run, at batch sizes 1, 32
//! and 256. Each iteration submits `batch` NOPs in one `io_uring_enter` and reaps them all.
//!
//! `cargo bench -p proactor --bench nop -- --warm-up-time 1 --measurement-time 3`
//!
//! Set `NOP_BENCH_SETUP=plain|coop|defer` to run the proactor and the raw loop on that ring
//! setup (default: the proactor's default, `defer` = SINGLE_ISSUER | DEFER_TASKRUN).

mod nop_loops;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nop_loops::{handler_batch, nop_batch, raw_batch, raw_ring};
use proactor::{DriverChoice, Proactor, RingConfig};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const BATCHES: [usize; 3] = [1, 32, 256];
const ENTRIES: u32 = 256;

/// The ring setup under test, from `NOP_BENCH_SETUP`.
fn ring_config() -> RingConfig {
    let cfg = RingConfig::default().entries(ENTRIES);
    match std::env::var("NOP_BENCH_SETUP").as_deref() {
        Ok("plain") => cfg.single_issuer(false).defer_taskrun(false).coop_taskrun(false),
        Ok("coop") => cfg.defer_taskrun(false).coop_taskrun(true),
        Ok("single") => cfg.defer_taskrun(false).coop_taskrun(false),
        _ => cfg,
    }
}

fn bench(c: &mut Criterion) {
    let cfg = ring_config();
    let p = Proactor::builder().driver(DriverChoice::Uring).ring(cfg.clone()).build().unwrap();
    let effective = p.ring_config().unwrap();
    eprintln!("proactor ring setup: {effective:?}");
    let mut ring = raw_ring(&effective);
    // The epoll emulation on the same work, side by side (it completes a NOP without a syscall,
    // so this measures its run-loop cost, not a kernel round trip).
    let pe = Proactor::builder().driver(DriverChoice::Epoll).build().unwrap();

    let mut group = c.benchmark_group("nop");
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch as u64));

        group.bench_with_input(BenchmarkId::new("raw_io_uring", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    raw_batch(&mut ring, batch);
                }
                start.elapsed()
            })
        });

        for (name, proactor) in [("proactor", &p), ("epoll", &pe)] {
            bench_handlers(&mut group, &format!("{name}_handlers"), proactor, batch);
            bench_futures(&mut group, &format!("{name}_futures"), proactor, batch);
        }
    }
    group.finish();
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// `batch` NOPs started with completion handlers, then `run()` until all completed.
fn bench_handlers(group: &mut Group<'_>, name: &str, p: &Proactor, batch: usize) {
    group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, &batch| {
        let done = Rc::new(Cell::new(0usize));
        b.iter_custom(|iters| {
            done.set(0);
            let start = Instant::now();
            for _ in 0..iters {
                handler_batch(p, batch, &done);
            }
            let elapsed = start.elapsed();
            assert_eq!(done.get(), iters as usize * batch);
            elapsed
        })
    });
}

/// `batch` NOP futures awaited together in one task.
fn bench_futures(group: &mut Group<'_>, name: &str, p: &Proactor, batch: usize) {
    group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, &batch| {
        b.iter_custom(|iters| {
            p.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    nop_batch(batch).await;
                }
                start.elapsed()
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
