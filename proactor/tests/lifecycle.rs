//! The lifetimes the Proactor pattern gets wrong, made impossible: dropped futures, cancels,
//! tiny rings, overflowing completion queues, the admission cap, panics, and shutdown with
//! operations still in flight. Every test runs on both drivers.
mod common;
mod core_util;

use common::{CountingBuf, DropLedger};
use core_util::errno;
use proactor::{op, submit, DriverChoice, JoinError, Proactor, RingConfig};
use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The same kind of proactor as `p` (same driver), with other settings.
fn like(p: &Proactor, b: proactor::Builder) -> Proactor {
    b.driver(DriverChoice::from(p.driver_kind())).build().expect("proactor")
}

/// `n` idle socket pairs (nothing is ever written), reads spread over them.
fn idle_pairs(n: usize) -> Vec<(Rc<UnixStream>, Rc<UnixStream>)> {
    (0..n)
        .map(|_| {
            let (a, b) = UnixStream::pair().unwrap();
            (Rc::new(a), Rc::new(b))
        })
        .collect()
}

const READS: usize = 10_000;

/// The tests of this file run one at a time: they count the process's descriptors, which
/// tests running in parallel threads would change under them.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[proactor::test]
fn dropped_futures_free_each_buffer_once_after_completion(p: &Proactor) {
    let _serial = serial();
    let fds_before = core_util::open_sockets();
    let ledger = DropLedger::new(READS);
    {
        let pairs = idle_pairs(100);
        p.block_on(async {
            let mut futs: Vec<_> = (0..READS)
                .map(|i| {
                    let (_, b) = &pairs[i % pairs.len()];
                    submit(op::Recv::new(b.clone(), CountingBuf::new(&ledger, i, 64)))
                })
                .collect();
            for f in &mut futs {
                assert!(!core_util::poll_once(f).await, "idle sockets have nothing to read");
            }
            // Let the loop hand them all to the driver.
            core_util::yield_now().await;
            assert_eq!(p.in_flight().in_flight, READS);
            drop(futs);
            // The kernel (or the emulation) still owns every buffer: none may be freed yet.
            assert_eq!(ledger.total(), 0, "a buffer was freed while its operation was in flight");
            // Wait for the cancellations to complete, boundedly.
            let deadline = Instant::now() + Duration::from_secs(20);
            while p.in_flight().in_flight > 0 && Instant::now() < deadline {
                proactor::time::sleep(Duration::from_millis(1)).await.unwrap();
            }
        });
        assert_eq!(p.in_flight().in_flight, 0, "every cancelled read completed");
        assert_eq!(ledger.total(), READS);
        ledger.assert_each_dropped_once();
    }
    assert_eq!(core_util::open_sockets(), fds_before, "no descriptor leaked");
}

#[proactor::test]
fn dropped_futures_racing_data_lose_nothing(p: &Proactor) {
    let _serial = serial();
    // Data arrives while the dropped reads are being cancelled: each read either got data (then
    // its buffer is dropped with the data) or was cancelled (the data stays in the socket).
    let ledger = DropLedger::new(1000);
    let pairs = idle_pairs(1000);
    p.block_on(async {
        let mut futs: Vec<_> = pairs
            .iter()
            .enumerate()
            .map(|(i, (_, b))| submit(op::Recv::new(b.clone(), CountingBuf::new(&ledger, i, 8))))
            .collect();
        for f in &mut futs {
            core_util::poll_once(f).await;
        }
        core_util::yield_now().await;
        for (a, _) in &pairs {
            (&**a).write_all(b"z").unwrap();
        }
        drop(futs);
        while p.in_flight().in_flight > 0 {
            proactor::time::sleep(Duration::from_millis(1)).await.unwrap();
        }
    });
    assert_eq!(ledger.total(), 1000);
    ledger.assert_each_dropped_once();
    // A byte consumed by a dropped read is gone with it (that is what dropping means); a byte not
    // consumed is still there. Count them: never more than one per socket, never an error.
    for (_, b) in &pairs {
        b.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 8];
        match (&**b).read(&mut buf) {
            Ok(n) => assert_eq!(n, 1),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
        }
    }
}
use std::io::Read as _;

#[proactor::test]
fn future_dropped_after_its_result_arrived(p: &Proactor) {
    let _serial = serial();
    let ledger = DropLedger::new(1);
    let (a, b) = UnixStream::pair().unwrap();
    (&a).write_all(b"ready").unwrap();
    p.block_on(async {
        let mut recv = submit(op::Recv::new(b, CountingBuf::new(&ledger, 0, 16)));
        assert!(!core_util::poll_once(&mut recv).await);
        // Let the completion arrive without polling the future again.
        proactor::time::sleep(Duration::from_millis(20)).await.unwrap();
        assert_eq!(p.in_flight().in_flight, 0, "the receive has completed");
        assert_eq!(ledger.total(), 0, "the output waits for its future");
        drop(recv);
        assert_eq!(ledger.total(), 1, "dropping the future frees the finished output at once");
    });
    ledger.assert_each_dropped_once();
}

#[proactor::test]
fn cancelled_accepts_leak_no_fd(p: &Proactor) {
    let _serial = serial();
    let fds_before = core_util::open_sockets();
    {
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = listener.local_addr().unwrap();
        // Explicit cancel of handler accepts with nobody connecting: ECANCELED, no fd.
        let cancelled = Rc::new(Cell::new(0));
        for _ in 0..50 {
            let c = cancelled.clone();
            let id = p.start(op::Accept::new(listener.clone()), move |res| {
                if let Err(e) = res {
                    assert_eq!(errno(&e), Some(libc::ECANCELED));
                    c.set(c.get() + 1);
                }
            });
            p.cancel(id);
        }
        p.run().unwrap();
        assert_eq!(cancelled.get(), 50);
        // Futures dropped while connections are arriving: some accepts complete with a socket
        // that nobody takes; it must be closed, not leaked.
        let mut clients = Vec::new();
        p.block_on(async {
            for round in 0..20 {
                let mut futs: Vec<_> =
                    (0..5).map(|_| submit(op::Accept::new(listener.clone()))).collect();
                for f in &mut futs {
                    core_util::poll_once(f).await;
                }
                core_util::yield_now().await;
                for _ in 0..(round % 6) {
                    clients.push(std::net::TcpStream::connect(addr).unwrap());
                }
                if round % 2 == 0 {
                    proactor::time::sleep(Duration::from_millis(2)).await.unwrap();
                }
                drop(futs);
                eprintln!("round {round}: {:?}", p.in_flight());
            }
            let mut spins = 0;
            while p.in_flight().in_flight > 0 {
                proactor::time::sleep(Duration::from_millis(1)).await.unwrap();
                spins += 1;
                if spins % 500 == 0 {
                    eprintln!("waiting: {:?}", p.in_flight());
                }
            }
        });
        // Explicit cancel racing a connection, on handlers: the handler owns whatever comes.
        for _ in 0..20 {
            let id = p.start(op::Accept::new(listener.clone()), drop);
            clients.push(std::net::TcpStream::connect(addr).unwrap());
            p.cancel(id);
        }
        p.run().unwrap();
        drop(clients);
    }
    assert_eq!(core_util::open_sockets(), fds_before, "a cancelled accept leaked a descriptor");
}

#[proactor::test]
fn tiny_ring_completes_ten_thousand_queued_ops(p: &Proactor) {
    let _serial = serial();
    let q = like(p, Proactor::builder().entries(8));
    if let Some(cfg) = q.ring_config() {
        assert_eq!(cfg.sq_size(), 8);
    }
    // Handlers: all queued before the loop runs.
    let done = Rc::new(Cell::new(0usize));
    for _ in 0..10_000 {
        let d = done.clone();
        q.start(op::Nop, move |res| {
            res.unwrap();
            d.set(d.get() + 1);
        });
    }
    q.run().unwrap();
    assert_eq!(done.get(), 10_000);
    // Futures: ten thousand tasks at once.
    let n = q.block_on(async {
        let futs: Vec<_> = (0..10_000)
            .map(|_| proactor::spawn(async { submit(op::Nop).await.unwrap() }))
            .collect();
        common::join_count(futs).await
    });
    assert_eq!(n, 10_000);
}

// An 8-entry ring, 10,000 tasks, every 100th awaiting a receive with a deadline (a linked pair
// of entries). This once hung on io_uring: arming the wake-up poll flushed the full ring and
// reaped the last completions into the backlog just before a blocking wait.
#[proactor::test]
fn tiny_ring_with_deadlines(p: &Proactor) {
    let _serial = serial();
    let q = like(p, Proactor::builder().entries(8));
    let (_a, b) = UnixStream::pair().unwrap();
    let b = Rc::new(b);
    let n = q.block_on(async {
        let futs: Vec<_> = (0..10_000)
            .map(|i| {
                let b = b.clone();
                proactor::spawn(async move {
                    if i % 100 == 0 {
                        let (res, _) = submit(op::Recv::new(b, Vec::with_capacity(1)))
                            .deadline(Duration::from_millis(5))
                            .await;
                        assert_eq!(errno(&res.unwrap_err()), Some(libc::ETIMEDOUT));
                    } else {
                        submit(op::Nop).await.unwrap();
                    }
                })
            })
            .collect();
        common::join_count(futs).await
    });
    assert_eq!(n, 10_000);
}

#[proactor::test]
fn completion_queue_overflow_loses_nothing(p: &Proactor) {
    let _serial = serial();
    // An 8-entry submission ring and an 8-entry completion ring; 512 timers that all expire
    // together, and 4096 no-ops: far more completions at once than the completion ring holds.
    let cfg = RingConfig::default().entries(8).cq_entries(8);
    let q = like(p, Proactor::builder().ring(cfg));
    let fired = Rc::new(Cell::new(0usize));
    for _ in 0..512 {
        let f = fired.clone();
        q.start(op::Timeout::new(Duration::from_millis(30)), move |res| {
            res.unwrap();
            f.set(f.get() + 1);
        });
    }
    for _ in 0..4096 {
        let f = fired.clone();
        q.start(op::Nop, move |res| {
            res.unwrap();
            f.set(f.get() + 1);
        });
    }
    q.run().unwrap();
    assert_eq!(fired.get(), 512 + 4096);
    // Futures: the same burst awaited by one task.
    let n = q.block_on(async {
        let mut futs: Vec<_> =
            (0..512).map(|_| submit(op::Timeout::new(Duration::from_millis(30)))).collect();
        for f in &mut futs {
            core_util::poll_once(f).await;
        }
        common::join_count(futs).await
    });
    assert_eq!(n, 512);
}

#[proactor::test]
fn admission_cap_is_never_exceeded_and_nothing_is_lost(p: &Proactor) {
    let _serial = serial();
    const CAP: usize = 16;
    let q = like(p, Proactor::builder().max_in_flight(CAP));
    let max_seen = Rc::new(Cell::new(0usize));
    let queued_seen = Rc::new(Cell::new(0usize));
    let done = Rc::new(Cell::new(0usize));
    // Handlers: 1,000 timers and no-ops started at once; each handler checks the count.
    let h = q.handle();
    for i in 0..1000 {
        let (m, qs, d, h) = (max_seen.clone(), queued_seen.clone(), done.clone(), h.clone());
        let check = move || {
            let now = h.in_flight();
            m.set(m.get().max(now.in_flight));
            qs.set(qs.get().max(now.queued));
            d.set(d.get() + 1);
        };
        if i % 2 == 0 {
            q.start(op::Timeout::new(Duration::from_millis(1)), move |r| {
                r.unwrap();
                check()
            });
        } else {
            q.start(op::Nop, move |r| {
                r.unwrap();
                check()
            });
        }
        assert!(q.in_flight().in_flight <= CAP);
    }
    assert_eq!(q.in_flight().queued, 1000 - CAP, "past the cap, operations wait in a queue");
    q.run().unwrap();
    assert_eq!(done.get(), 1000, "nothing lost");
    assert!(max_seen.get() <= CAP, "cap exceeded: {}", max_seen.get());
    assert!(queued_seen.get() > 0);
    // Futures: 1,000 tasks; each checks the count before and after its operation.
    let max_seen = Rc::new(Cell::new(0usize));
    let n = q.block_on(async {
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let m = max_seen.clone();
                proactor::spawn(async move {
                    let h = proactor::Handle::current();
                    if i % 3 == 0 {
                        proactor::time::sleep(Duration::from_millis(1)).await.unwrap();
                    } else {
                        submit(op::Nop).await.unwrap();
                    }
                    m.set(m.get().max(h.in_flight().in_flight));
                })
            })
            .collect();
        let mut n = 0;
        for t in tasks {
            t.await.unwrap();
            n += 1;
            assert!(proactor::Handle::current().in_flight().in_flight <= CAP);
        }
        n
    });
    assert_eq!(n, 1000);
    assert!(max_seen.get() <= CAP);
}

#[proactor::test]
fn admission_queue_and_cancel(p: &Proactor) {
    let _serial = serial();
    let q = like(p, Proactor::builder().max_in_flight(1));
    let (_a, b) = UnixStream::pair().unwrap();
    let b = Rc::new(b);
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let first = q.start(op::Recv::new(b.clone(), Vec::with_capacity(4)), move |(res, _)| {
        l.borrow_mut().push(("first", res.map_err(|e| errno(&e))));
    });
    let l = log.clone();
    let second = q.start(op::Recv::new(b.clone(), Vec::with_capacity(4)), move |(res, _)| {
        l.borrow_mut().push(("second", res.map_err(|e| errno(&e))));
    });
    let l = log.clone();
    q.start(op::Nop, move |res| {
        l.borrow_mut().push(("nop", res.map(|_| 0).map_err(|e| errno(&e))))
    });
    assert_eq!(q.in_flight().in_flight, 1);
    assert_eq!(q.in_flight().queued, 2);
    // Cancelling a queued operation: its handler runs later, from the loop, not inside cancel.
    q.cancel(second);
    assert!(log.borrow().is_empty(), "a handler ran inside cancel()");
    q.cancel(first);
    q.run().unwrap();
    let log = log.borrow();
    assert_eq!(log.len(), 3);
    assert!(log.contains(&("second", Err(Some(libc::ECANCELED)))));
    assert!(log.contains(&("first", Err(Some(libc::ECANCELED)))));
    assert!(log.contains(&("nop", Ok(0))));
    // Futures: dropping a queued future removes it; cancelling one completes it.
    q.block_on(async {
        let mut blocker = submit(op::Recv::new(b.clone(), Vec::with_capacity(4)));
        core_util::poll_once(&mut blocker).await;
        let mut queued = submit(op::Recv::new(b.clone(), Vec::with_capacity(4)));
        core_util::poll_once(&mut queued).await;
        let mut cancelled = submit(op::Nop);
        let token = cancelled.cancel_token();
        core_util::poll_once(&mut cancelled).await;
        assert_eq!(proactor::Handle::current().in_flight().queued, 2);
        drop(queued);
        token.cancel();
        assert_eq!(errno(&cancelled.await.unwrap_err()), Some(libc::ECANCELED));
        assert_eq!(proactor::Handle::current().in_flight().queued, 0);
        drop(blocker);
    });
    q.run().unwrap();
    assert_eq!(q.in_flight(), proactor::InFlight::default());
}

#[proactor::test]
fn panicking_handler_does_not_stop_the_others(p: &Proactor) {
    let _serial = serial();
    let reports = Rc::new(RefCell::new(Vec::new()));
    let r = reports.clone();
    let q = like(p, Proactor::builder().on_panic(move |rep| r.borrow_mut().push(rep.clone())));
    let pairs = idle_pairs(1000);
    let done = Rc::new(Cell::new(0usize));
    for (i, (_, b)) in pairs.iter().enumerate() {
        let d = done.clone();
        q.start(op::Recv::new(b.clone(), Vec::with_capacity(8)), move |(res, buf)| {
            assert_eq!(res.unwrap(), 1);
            if i == 500 {
                panic!("handler 500 fails on purpose");
            }
            assert_eq!(buf, b"!");
            d.set(d.get() + 1);
        });
    }
    // All 1,000 are in flight when the data arrives.
    q.block_on(core_util::yield_now());
    assert_eq!(q.in_flight().in_flight, 1000);
    for (a, _) in &pairs {
        (&**a).write_all(b"!").unwrap();
    }
    q.run().unwrap();
    assert_eq!(done.get(), 999, "the other 999 completed");
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].origin, "completion handler");
    assert!(reports[0].message.contains("handler 500 fails on purpose"));
}

#[proactor::test]
fn panicking_task_gives_join_error(p: &Proactor) {
    let _serial = serial();
    let hits = Rc::new(RefCell::new(Vec::new()));
    let h = hits.clone();
    let q = like(p, Proactor::builder().on_panic(move |rep| h.borrow_mut().push(rep.clone())));
    let out = q.block_on(async {
        let bad = proactor::spawn(async {
            submit(op::Nop).await.unwrap();
            panic!("task fails on purpose");
        });
        let good = proactor::spawn(async {
            proactor::time::sleep(Duration::from_millis(5)).await.unwrap();
            7
        });
        (bad.await, good.await)
    });
    assert_eq!(out, (Err(JoinError::Panicked), Ok(7)));
    let hits = hits.borrow();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].origin, "task");
    assert!(hits[0].message.contains("task fails on purpose"));
}

#[test]
fn abort_on_panic_aborts_the_process() {
    let _serial = serial();
    // The child process is this same test binary, running only this test with the flag set.
    if std::env::var_os("PROACTOR_ABORT_CHILD").is_some() {
        let p = Proactor::builder().abort_on_panic(true).build().unwrap();
        p.start(op::Nop, |_| panic!("abort me"));
        p.run().unwrap();
        unreachable!("the process should have aborted");
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "abort_on_panic_aborts_the_process", "--nocapture", "--test-threads=1"])
        .env("PROACTOR_ABORT_CHILD", "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("aborting as configured"));
}

#[proactor::test]
fn dropping_the_proactor_with_ops_in_flight(p: &Proactor) {
    let _serial = serial();
    let fds_before = core_util::open_sockets();
    let ledger = DropLedger::new(2000);
    let handlers_ran = Rc::new(Cell::new(0));
    let task_ended = Rc::new(Cell::new(false));
    {
        let q = like(p, Proactor::builder());
        let pairs = idle_pairs(200);
        for i in 0..1000 {
            let (_, b) = &pairs[i % 200];
            let r = handlers_ran.clone();
            q.start(op::Recv::new(b.clone(), CountingBuf::new(&ledger, i, 32)), move |_| {
                r.set(r.get() + 1)
            });
        }
        for i in 1000..2000 {
            let b = pairs[i % 200].1.clone();
            let buf = CountingBuf::new(&ledger, i, 32);
            let ended = task_ended.clone();
            drop(q.spawn(async move {
                let _ = submit(op::Recv::new(b, buf)).await;
                ended.set(true);
            }));
        }
        // A pass of the loop hands everything to the driver.
        q.block_on(core_util::yield_now());
        assert_eq!(q.in_flight().in_flight, 2000);
        assert_eq!(ledger.total(), 0);
        drop(q);
        assert_eq!(ledger.total(), 2000, "every buffer freed once the kernel gave it back");
        ledger.assert_each_dropped_once();
        assert_eq!(handlers_ran.get(), 0, "shutdown does not run handlers");
        assert!(!task_ended.get(), "shutdown drops tasks, it does not resume them");
    }
    assert_eq!(core_util::open_sockets(), fds_before);
}

#[proactor::test]
fn run_waits_for_tasks_and_stop_returns_early(p: &Proactor) {
    let _serial = serial();
    let finished = Rc::new(Cell::new(false));
    let f = finished.clone();
    let job = p.spawn(async move {
        proactor::time::sleep(Duration::from_millis(20)).await.unwrap();
        submit(op::Nop).await.unwrap();
        f.set(true);
        5
    });
    p.run().unwrap();
    assert!(finished.get(), "run() returned while a task still waited on operations");
    assert!(job.is_finished());
    // stop() from a handler makes run() return with work left.
    let (_a, b) = UnixStream::pair().unwrap();
    let h = p.handle();
    p.start(op::Nop, move |_| h.stop());
    let id = p.start(op::Recv::new(b, Vec::with_capacity(1)), |_| {});
    p.run().unwrap();
    assert_eq!(p.in_flight().in_flight, 1);
    p.cancel(id);
    p.run().unwrap();
    assert_eq!(p.in_flight().in_flight, 0);
}

#[proactor::test]
fn handlers_start_operations_from_inside_dispatch(p: &Proactor) {
    let _serial = serial();
    // A chain of 10,000 no-ops, each started by the previous one's handler, and a fan-out.
    fn chain(h: proactor::Handle, left: usize, count: Rc<Cell<usize>>) {
        let h2 = h.clone();
        h.start(op::Nop, move |res| {
            res.unwrap();
            count.set(count.get() + 1);
            if left > 1 {
                chain(h2, left - 1, count);
            }
        });
    }
    let count = Rc::new(Cell::new(0));
    chain(p.handle(), 10_000, count.clone());
    let fan = Rc::new(Cell::new(0));
    let (h, f) = (p.handle(), fan.clone());
    p.start(op::Nop, move |_| {
        for _ in 0..100 {
            let f = f.clone();
            h.start(op::Nop, move |_| f.set(f.get() + 1));
        }
    });
    p.run().unwrap();
    assert_eq!(count.get(), 10_000);
    assert_eq!(fan.get(), 100);
}

#[proactor::test]
fn in_flight_reports_kinds_and_age(p: &Proactor) {
    let _serial = serial();
    let (_a, b) = UnixStream::pair().unwrap();
    let b = Rc::new(b);
    let ids: Vec<_> =
        (0..3).map(|_| p.start(op::Recv::new(b.clone(), Vec::with_capacity(1)), |_| {})).collect();
    let t = p.start(op::Timeout::new(Duration::from_secs(60)), |_| {});
    p.block_on(proactor::time::sleep(Duration::from_millis(20))).unwrap();
    let snap = p.in_flight();
    assert_eq!(snap.in_flight, 4);
    assert_eq!(snap.by_kind, vec![("recv", 3), ("timeout", 1)]);
    assert!(snap.oldest.unwrap() >= Duration::from_millis(20));
    for id in ids {
        p.cancel(id);
    }
    p.cancel(t);
    p.run().unwrap();
    assert_eq!(p.in_flight(), proactor::InFlight::default());
}

#[proactor::test]
fn completions_reaped_together_share_a_batch_number(p: &Proactor) {
    let h = p.handle();
    let seen = Rc::new(RefCell::new(Vec::new()));
    for _ in 0..3 {
        let (h2, seen) = (h.clone(), seen.clone());
        p.start(op::Nop, move |res| {
            res.unwrap();
            seen.borrow_mut().push(h2.completion_batches());
            // An operation started from a handler completes in a later batch.
            let (h3, seen) = (h2.clone(), seen.clone());
            h2.start(op::Nop, move |res| {
                res.unwrap();
                seen.borrow_mut().push(h3.completion_batches());
            });
        });
    }
    p.run().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 6);
    assert!(seen[..3].iter().all(|&b| b == seen[0]), "one batch: {seen:?}");
    assert!(seen[3..].iter().all(|&b| b > seen[0]), "a later batch: {seen:?}");
}
