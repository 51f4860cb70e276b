//! `Handle::stats`: latency per kind, the io_uring queues (a completion queue driven into the
//! kernel's overflow list on purpose), in-flight ages and fault counts, on both drivers.
mod common;

use proactor::faults::{FaultKind, FaultPlan};
use proactor::io::{read_exact, write_all};
use proactor::net::UnixStream;
use proactor::{DriverChoice, DriverKind, Proactor};
use std::time::Duration;

#[proactor::test]
fn latency_per_kind(driver: DriverChoice) {
    let p = Proactor::builder().driver(driver).latency_stats(true).build().unwrap();
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        for i in 0..100u8 {
            let (res, _) = write_all(&mut &a, vec![i; 10]).await;
            res.unwrap();
            let (res, _) = read_exact(&mut &b, Vec::with_capacity(10)).await;
            res.unwrap();
        }
        // A timer as an operation (a sleep is not one: it lives in the loop's timer set).
        proactor::submit(proactor::op::Timeout::new(Duration::from_millis(20))).await.unwrap();
    });
    let stats = p.stats();
    let kind = |k: &str| stats.latency.iter().find(|l| l.kind == k).cloned().unwrap();
    assert_eq!(kind("send").count, 100, "{stats}");
    assert!(kind("recv").count >= 100, "{stats}");
    let sleep = kind("timeout");
    assert_eq!(sleep.count, 1);
    assert!(sleep.max >= Duration::from_millis(19), "{stats}");
    assert!(sleep.p99 >= Duration::from_millis(16), "{stats}");
    let line = stats.to_string();
    assert!(line.starts_with("stats: driver=") && line.contains("recv n="), "{line}");
    assert_eq!(stats.ring.is_some(), p.driver_kind() == DriverKind::Uring);
    assert!(stats.faults.is_none());
}

#[proactor::test]
fn off_by_default(p: &Proactor) {
    p.block_on(proactor::submit(proactor::op::Nop)).unwrap();
    assert!(p.stats().latency.is_empty());
}

#[proactor::test]
fn in_flight_ages_and_faults(driver: DriverChoice) {
    let plan = FaultPlan::new(5).rate(0.5).kinds(&[FaultKind::Eintr]);
    let p = Proactor::builder().driver(driver).faults(plan).build().unwrap();
    p.block_on(async {
        let (_a, b) = UnixStream::pair().unwrap();
        let h = proactor::Handle::current();
        let idle = proactor::spawn(async move { b.read(Vec::with_capacity(8)).await.0 });
        proactor::time::sleep(Duration::from_millis(30)).await.unwrap();
        let stats = h.stats();
        let age = stats.in_flight.oldest_by_kind.iter().find(|(k, _)| *k == "recv").unwrap().1;
        assert!(age >= Duration::from_millis(25), "{stats}");
        assert!(stats.faults.unwrap().counts.get(FaultKind::Eintr) > 0, "{stats}");
        drop(idle);
    });
}

// A ring of 4 entries (8 completions) and 400 timers that all expire together: their
// completions outrun the queue and wait in the kernel's overflow list.
#[proactor::test(uring_only = "epoll has no completion queue to overflow", entries = 4)]
fn completion_queue_overflow_is_counted_and_loses_nothing(p: &Proactor) {
    let done = p.block_on(async {
        let tasks: Vec<_> = (0..400)
            .map(|_| {
                let timer = proactor::op::Timeout::new(Duration::from_millis(20));
                proactor::spawn(proactor::submit(timer))
            })
            .collect();
        let mut n = 0;
        for t in tasks {
            t.await.unwrap().unwrap();
            n += 1;
        }
        n
    });
    assert_eq!(done, 400);
    let ring = p.stats().ring.unwrap();
    eprintln!("{ring:?}");
    assert_eq!(ring.cq_dropped, 0);
    assert_eq!(ring.cq_deepest, 8, "{ring:?}");
    assert!(ring.cq_overflowed > 0, "{ring:?}");
}
