//! Batched waits (`RingConfig::min_wait`): an idle loop never waits for a batch, timers keep
//! their deadlines and a wake from another thread still wakes a loop that waits for one. Each
//! test sets a cap far longer than the bounds it checks, so that a cap applied where it must
//! not be fails the test; on the epoll driver (which ignores the cap) the same bounds hold.
mod common;

use proactor::io::{read_exact, write_all};
use proactor::net::UnixStream;
use proactor::{op, submit, DriverChoice, DriverKind, Proactor};
use std::time::{Duration, Instant};

/// Far longer than any bound below.
const CAP: Duration = Duration::from_millis(400);

fn with_cap(driver: DriverChoice, cap: Duration) -> Proactor {
    Proactor::builder().driver(driver).min_wait(Some(cap)).build().unwrap()
}

/// True if this proactor batches its waits (io_uring on a kernel with `MIN_TIMEOUT`).
fn batches(p: &Proactor) -> bool {
    p.ring_config().is_some_and(|r| r.min_wait_cap().is_some())
}

/// Bursts of NOPs in flight together (all complete at once): the loop finds more completions
/// per wait than it asks for, so it starts asking for batches.
async fn busy() {
    for _ in 0..8 {
        let nops: Vec<_> = (0..32).map(|_| proactor::spawn(submit(op::Nop))).collect();
        for n in nops {
            n.await.unwrap().unwrap();
        }
    }
}

#[proactor::test]
fn an_idle_loop_never_waits_for_a_batch(driver: DriverChoice) {
    let p = with_cap(driver, CAP);
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    // A blocking echo on another thread: every receive of the loop completes alone.
    let echo = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut b = b;
        let mut buf = [0u8; 8];
        while b.read_exact(&mut buf).is_ok() {
            b.write_all(&buf).unwrap();
        }
    });
    let started = Instant::now();
    p.block_on(async {
        let a = UnixStream::from_std(a).unwrap();
        for i in 0..20u8 {
            let (res, _) = write_all(&mut &a, vec![i; 8]).await;
            res.unwrap();
            let (res, back) = read_exact(&mut &a, Vec::with_capacity(8)).await;
            res.unwrap();
            assert_eq!(back, vec![i; 8]);
        }
    });
    let took = started.elapsed();
    // With the cap applied, each round trip would wait for it: 20 × 400 ms.
    assert!(took < CAP * 5, "20 round trips took {took:?}");
    if let Some(ring) = p.stats().ring {
        assert!(ring.waits > 0, "{ring:?}");
        assert_eq!(ring.waits_batched, 0, "an idle loop asked for a batch: {ring:?}");
    }
    assert_eq!(p.stats().ring.is_some(), p.driver_kind() == DriverKind::Uring);
    drop(p);
    echo.join().unwrap();
}

#[proactor::test]
fn a_busy_loop_asks_for_batches(driver: DriverChoice) {
    let p = with_cap(driver, CAP);
    let started = Instant::now();
    p.block_on(busy());
    // Every batch fills at once (the NOPs are done when submitted): no wait reaches the cap.
    assert!(started.elapsed() < CAP, "{:?}", started.elapsed());
    match p.stats().ring {
        Some(ring) if batches(&p) => assert!(ring.waits_batched > 0, "{ring:?}"),
        Some(ring) => assert_eq!(ring.waits_batched, 0, "no MIN_TIMEOUT, no batch: {ring:?}"),
        None => {}
    }
}

#[proactor::test]
fn a_timer_sooner_than_the_cap_fires_on_time_while_batching(driver: DriverChoice) {
    let p = with_cap(driver, CAP);
    let took = p.block_on(async {
        busy().await;
        let started = Instant::now();
        proactor::time::sleep(Duration::from_millis(20)).await.unwrap();
        started.elapsed()
    });
    assert!(took >= Duration::from_millis(20), "{took:?}");
    assert!(took < CAP / 2, "a 20 ms sleep took {took:?} under a {CAP:?} cap");
}

#[proactor::test]
fn a_timer_later_than_the_cap_fires_by_its_deadline_while_batching(driver: DriverChoice) {
    let cap = Duration::from_millis(100);
    let p = with_cap(driver, cap);
    let took = p.block_on(async {
        busy().await;
        let started = Instant::now();
        proactor::time::sleep(Duration::from_millis(300)).await.unwrap();
        started.elapsed()
    });
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(300) + cap, "a 300 ms sleep took {took:?}");
}

#[proactor::test]
fn a_wake_from_another_thread_wakes_a_batching_loop(driver: DriverChoice) {
    let cap = Duration::from_millis(50);
    let p = with_cap(driver, cap);
    let took = p.block_on(async {
        busy().await;
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        let started = Instant::now();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            tx.send(7).unwrap();
        });
        // The loop waits (for a batch, on io_uring) with no timer and no operation in flight:
        // only the wake can end the wait, no later than the cap after it.
        assert_eq!(rx.await.unwrap(), 7);
        sender.join().unwrap();
        started.elapsed()
    });
    assert!(took < Duration::from_millis(10) + cap + Duration::from_millis(200), "{took:?}");
}

#[proactor::test]
fn a_wake_from_another_thread_is_not_delayed_on_an_idle_loop(driver: DriverChoice) {
    let p = with_cap(driver, CAP);
    let took = p.block_on(async {
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        let started = Instant::now();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            tx.send(7).unwrap();
        });
        assert_eq!(rx.await.unwrap(), 7);
        sender.join().unwrap();
        started.elapsed()
    });
    assert!(took < CAP / 2, "the wake took {took:?} under a {CAP:?} cap");
}
