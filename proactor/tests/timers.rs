//! The loop's timer set and operation deadlines, on both drivers: sleeps armed and dropped by
//! the thousand without an operation each, expiries in deadline order, a sleep moved earlier
//! and later, intervals, sleeps started from handlers, a timeout racing a completion, hyper's
//! timer, and a handler's deadline told apart from its cancel.

use proactor::compat::hyper::HyperTimer;
use proactor::net::UnixStream;
use proactor::time::{self, Sleep};
use proactor::{op, DriverChoice, Handle, Proactor};
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io::{ErrorKind, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Polls `f` once (arming a sleep) and says whether it was ready.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> bool {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx).is_ready())).await
}

/// A proactor of `driver` that counts every operation it completes, by kind.
fn counting(driver: DriverChoice) -> Proactor {
    Proactor::builder().driver(driver).latency_stats(true).build().unwrap()
}

#[proactor::test]
fn thousands_of_sleeps_armed_and_dropped_cost_no_operation(driver: DriverChoice) {
    let p = counting(driver);
    let h = p.handle();
    p.block_on(async {
        let mut sleeps: Vec<Sleep> =
            (0..5_000).map(|i| time::sleep(Duration::from_secs(30 + i))).collect();
        for s in &mut sleeps {
            assert!(!poll_once(s).await);
        }
        let stats = h.stats();
        assert_eq!(stats.timers.armed, 5_000, "{stats}");
        assert_eq!(stats.in_flight.in_flight, 0, "no operation for a sleep: {stats}");
        // Reset every one (hyper's header timer does, per request), then drop them.
        let soon = Instant::now() + Duration::from_secs(60);
        for s in &mut sleeps {
            s.reset(soon);
        }
        assert_eq!(h.stats().timers.armed, 5_000);
        drop(sleeps);
        // The same through `timeout` around futures that finish at once.
        for i in 0..5_000u32 {
            assert_eq!(time::timeout(Duration::from_secs(30), async { i }).await, Ok(i));
        }
        // And sleeps that do fire, in the same loop.
        time::sleep(Duration::from_millis(5)).await.unwrap();
        let stats = h.stats();
        assert_eq!(stats.timers.armed, 0, "{stats}");
        assert_eq!(stats.timers.fired, 1, "{stats}");
        assert_eq!(stats.timers.cancelled, 10_000, "5,000 reset, 5,000 dropped: {stats}");
    });
    let stats = p.stats();
    // Latency stats count every operation the loop completed, by kind: no timer among them.
    assert!(stats.latency.iter().all(|l| l.kind != "timeout"), "{stats}");
    assert!(stats.latency.iter().map(|l| l.count).sum::<u64>() < 10, "{stats}");
}

#[proactor::test]
async fn expiries_come_in_deadline_order() {
    let fired = Rc::new(RefCell::new(Vec::new()));
    let start = Instant::now();
    // Deadlines 2 ms apart, armed out of order; two share a deadline and keep their order.
    let order = [7u64, 3, 9, 0, 5, 5, 1, 8, 2, 6, 4];
    let tasks: Vec<_> = order
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let fired = fired.clone();
            proactor::spawn(async move {
                time::sleep_until(start + Duration::from_millis(10 + 2 * n)).await.unwrap();
                fired.borrow_mut().push((n, i));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let got = fired.borrow().clone();
    let mut want = got.clone();
    want.sort();
    assert_eq!(got, want, "fired in deadline order, ties in arming order");
    assert!(start.elapsed() >= Duration::from_millis(28));
}

#[proactor::test]
async fn a_sleep_moved_earlier_and_later() {
    let h = Handle::current();
    // Earlier: armed for 10 s, moved to 20 ms.
    let start = Instant::now();
    let mut s = time::sleep(Duration::from_secs(10));
    assert!(!poll_once(&mut s).await);
    s.reset(start + Duration::from_millis(20));
    s.await.unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(20) && took < Duration::from_secs(5), "{took:?}");
    // Later: armed for 10 ms, moved to 60 ms before it fires.
    let start = Instant::now();
    let mut s = time::sleep(Duration::from_millis(10));
    assert!(!poll_once(&mut s).await);
    s.reset(start + Duration::from_millis(60));
    (&mut s).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(60), "{:?}", start.elapsed());
    // After it completed: it completes again at the new deadline.
    let again = Instant::now();
    s.reset(again + Duration::from_millis(15));
    assert!(!s.is_elapsed());
    s.await.unwrap();
    assert!(again.elapsed() >= Duration::from_millis(15));
    assert_eq!(h.stats().timers.armed, 0);
    assert_eq!(h.stats().in_flight.in_flight, 0);
}

#[proactor::test]
async fn an_interval_keeps_its_schedule() {
    let start = Instant::now();
    let mut every = time::interval(Duration::from_millis(10));
    let mut ticks = Vec::new();
    for _ in 0..5 {
        ticks.push(every.tick().await);
    }
    for (n, t) in ticks.iter().enumerate() {
        assert_eq!(*t - ticks[0], Duration::from_millis(10 * n as u64), "scheduled instants");
    }
    assert!(start.elapsed() >= Duration::from_millis(40));
    // A tick future dropped half-way loses nothing: the next call waits for the same tick.
    let due = Instant::now() + Duration::from_millis(100);
    let mut every = time::interval_at(due, Duration::from_millis(100));
    {
        let mut tick = Box::pin(every.tick());
        assert!(!poll_once(&mut tick).await);
    }
    assert_eq!(every.tick().await, due);
    assert!(Instant::now() >= due);
    assert_eq!(Handle::current().stats().in_flight.in_flight, 0);
}

#[proactor::test]
fn sleeps_started_from_handlers_keep_run_going(p: &Proactor) {
    let woke = Rc::new(Cell::new(0));
    let start = Instant::now();
    for i in 0..50u64 {
        let woke = woke.clone();
        // A handler that spawns a sleeping task; `run` must wait for every sleep.
        p.start(op::Nop, move |res| {
            res.unwrap();
            let at = Instant::now() + Duration::from_millis(5 + i % 10);
            drop(proactor::spawn(async move {
                time::sleep_until(at).await.unwrap();
                assert!(Instant::now() >= at);
                woke.set(woke.get() + 1);
            }));
        });
    }
    p.run().unwrap();
    assert_eq!(woke.get(), 50);
    assert!(start.elapsed() >= Duration::from_millis(14));
    assert_eq!(p.stats().timers.armed, 0);
}

#[proactor::test]
async fn a_timeout_racing_a_completion() {
    // Both due when the loop next turns: the data is there and the deadline has passed. The
    // future is polled before its timer, so the completion wins and nothing is lost.
    let (a, b) = UnixStream::pair().unwrap();
    let mut read = Box::pin(time::timeout(Duration::from_millis(5), b.read(Vec::with_capacity(8))));
    assert!(!poll_once(&mut read).await);
    let (res, _) = a.write_all(b"raced".as_slice()).await;
    res.unwrap();
    std::thread::sleep(Duration::from_millis(10));
    let (res, buf) = read.await.expect("the completion was there first");
    assert_eq!(res.unwrap(), 5);
    assert_eq!(buf, b"raced");
    // The timer first: the read is dropped (cancelled), and a later byte is read in full.
    let got = time::timeout(Duration::from_millis(10), b.read(Vec::with_capacity(8))).await;
    assert!(got.is_err());
    let (res, _) = a.write_all(b"late".as_slice()).await;
    res.unwrap();
    let (res, buf) = b.read_exact(Vec::with_capacity(4)).await;
    res.unwrap();
    assert_eq!(buf, b"late");
    // An operation's own deadline racing its completion: the real result wins.
    let (sa, sb) = std::os::unix::net::UnixStream::pair().unwrap();
    (&sa).write_all(b"x").unwrap();
    let (res, buf) = proactor::submit(op::Recv::new(sb, Vec::with_capacity(4)))
        .deadline(Duration::from_millis(1))
        .await;
    assert_eq!(res.unwrap(), 1);
    assert_eq!(buf, b"x");
}

#[proactor::test]
fn hyper_timer_sleeps_are_timers_not_operations(driver: DriverChoice) {
    use hyper::rt::Timer;
    {
        let p = counting(driver);
        let h = p.handle();
        p.block_on(async {
            // As hyper's HTTP/1 header-read timeout: armed, polled, reset, dropped per request.
            for _ in 0..2_000 {
                let mut s = HyperTimer.sleep(Duration::from_secs(30));
                assert!(!poll_once(&mut s).await);
                HyperTimer.reset(&mut s, Instant::now() + Duration::from_secs(31));
                assert!(!poll_once(&mut s).await);
            }
            let start = Instant::now();
            let mut s = HyperTimer.sleep(Duration::from_secs(30));
            assert!(!poll_once(&mut s).await);
            HyperTimer.reset(&mut s, start + Duration::from_millis(10));
            s.await;
            assert!(start.elapsed() >= Duration::from_millis(10));
            let stats = h.stats();
            assert_eq!(stats.timers.started, 4_002, "{stats}");
            assert_eq!(stats.timers.fired, 1, "{stats}");
            assert_eq!(stats.timers.armed, 0, "{stats}");
        });
        let stats = p.stats();
        assert!(stats.latency.iter().all(|l| l.kind != "timeout"), "{stats}");
    }
}

/// What a handler got, by test step: bytes, or whether the error was `TimedOut` and its errno.
type Got = Rc<RefCell<Vec<(&'static str, Result<usize, (bool, Option<i32>)>)>>>;

fn record(got: &Got, step: &'static str) -> impl FnOnce((std::io::Result<usize>, Vec<u8>)) {
    let got = got.clone();
    move |(res, _buf)| {
        let res = res.map_err(|e| (e.kind() == ErrorKind::TimedOut, op::raw_os_error(&e)));
        got.borrow_mut().push((step, res));
    }
}

#[proactor::test]
fn a_handler_deadline_is_timed_out_and_a_cancel_is_cancelled(driver: DriverChoice) {
    // A cap of 2 in flight: the later operations wait for admission, the third one with
    // its deadline (which starts when it is admitted).
    let p = Proactor::builder().driver(driver).max_in_flight(2).build().unwrap();
    let got: Got = Rc::default();
    let idle = || std::os::unix::net::UnixStream::pair().unwrap();
    let recv = |b| op::Recv::new(b, Vec::with_capacity(8));
    let (short, long) = (Duration::from_millis(10), Duration::from_secs(30));
    let ((_a1, b1), (_a2, b2), (_a3, b3), (a4, b4)) = (idle(), idle(), idle(), idle());
    p.start_with_deadline(recv(b1), short, record(&got, "expired"));
    let cancelled = p.start_with_deadline(recv(b2), long, record(&got, "cancelled"));
    p.start_with_deadline(recv(b3), short, record(&got, "queued, then expired"));
    (&a4).write_all(b"ok").unwrap();
    p.start_with_deadline(recv(b4), long, record(&got, "in time"));
    let h = p.handle();
    p.start(op::Timeout::new(Duration::from_millis(2)), move |_| h.cancel(cancelled));
    p.run().unwrap();
    let mut got = got.borrow().clone();
    got.sort_by_key(|(step, _)| *step);
    let timed_out = Err((true, Some(libc::ETIMEDOUT)));
    let want = vec![
        ("cancelled", Err((false, Some(libc::ECANCELED)))),
        ("expired", timed_out),
        ("in time", Ok(2)),
        ("queued, then expired", timed_out),
    ];
    assert_eq!(got, want, "{driver:?}");
}
