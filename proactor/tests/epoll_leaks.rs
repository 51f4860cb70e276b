//! Dropping futures, and whole proactors, with operations in flight on every path of the epoll
//! driver — waiting for readiness, queued on the blocking pool, timers, deadlines, accepts with
//! connections arriving — leaks no descriptor, no buffer and no thread, exactly as on io_uring.
//!
//! One test function (run once per driver, one after the other), because it counts the
//! process's descriptors and threads, which another test running in parallel would disturb.
mod common;
mod core_util;

use common::{CountingBuf, DropLedger};
use proactor::{op, submit, DriverChoice};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

const PAIRS: usize = 16;

/// User threads of this process (not io_uring's kernel workers, `iou-wrk-*`/`iou-sqp-*`, which
/// the kernel keeps around for a while after their ring is gone).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| !name.starts_with("iou-"))
        .count()
}

/// Starts one of everything on `p` and returns the tasks' join handles (never awaited).
fn start_everything(
    p: &proactor::Proactor,
    ledger: &std::sync::Arc<DropLedger>,
    first_id: usize,
    pairs: &[(Rc<UnixStream>, Rc<UnixStream>)],
    listener: &Rc<TcpListener>,
    file: &std::path::Path,
) {
    for (i, (a, _)) in pairs.iter().enumerate() {
        let buf = CountingBuf::new(ledger, first_id + i, 64);
        drop(p.spawn(submit(op::Recv::new(a.clone(), buf))));
    }
    for _ in 0..4 {
        drop(p.spawn(submit(op::Accept::new(listener.clone()))));
    }
    drop(p.spawn(proactor::time::sleep(Duration::from_secs(3600))));
    let stat = op::Statx::path(libc::AT_FDCWD, file).unwrap();
    drop(p.spawn(submit(stat).deadline(Duration::from_secs(3600))));
    let open = op::OpenAt::new(libc::AT_FDCWD, file, libc::O_RDONLY, 0).unwrap();
    drop(p.spawn(submit(open)));
}

#[proactor::test]
fn dropping_futures_and_proactors_with_ops_in_flight_leaks_nothing(driver: DriverChoice) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"0123456789").unwrap();
    let fds_before = common::open_fds();
    let threads_before = threads();
    let ledger = DropLedger::new(3 * PAIRS);
    {
        let pairs: Vec<_> = (0..PAIRS)
            .map(|_| {
                let (a, b) = UnixStream::pair().unwrap();
                (Rc::new(a), Rc::new(b))
            })
            .collect();
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = listener.local_addr().unwrap();

        // 1. Futures dropped by a timeout while their operations wait, some racing data.
        let p = common::proactor(driver);
        p.block_on(async {
            for (i, (a, b)) in pairs.iter().enumerate() {
                let buf = CountingBuf::new(&ledger, i, 64);
                if i % 3 == 0 {
                    std::io::Write::write_all(&mut &**b, b"late").unwrap();
                }
                let recv = submit(op::Recv::new(a.clone(), buf));
                let _ = proactor::time::timeout(Duration::from_millis(1), recv).await;
            }
            let mut clients = Vec::new();
            for round in 0..8 {
                let accept = submit(op::Accept::new(listener.clone()));
                if round % 2 == 0 {
                    clients.push(std::net::TcpStream::connect(addr).unwrap());
                }
                let _ = proactor::time::timeout(Duration::from_millis(1), accept).await;
            }
            while proactor::Handle::current().in_flight().in_flight > 0 {
                proactor::time::sleep(Duration::from_millis(1)).await.unwrap();
            }
            drop(clients);
        });
        assert_eq!(ledger.total(), PAIRS, "{driver:?}: a dropped future's buffer was kept");

        // 2. A proactor dropped with one of everything in flight.
        start_everything(&p, &ledger, PAIRS, &pairs, &listener, &file);
        p.block_on(proactor::time::sleep(Duration::from_millis(5))).unwrap();
        assert!(p.in_flight().in_flight >= PAIRS, "{driver:?}: {:?}", p.in_flight());
        drop(p);
        assert_eq!(ledger.total(), 2 * PAIRS, "{driver:?}: shutdown kept a buffer");

        // 3. A proactor dropped before its loop ever ran.
        let q = common::proactor(driver);
        start_everything(&q, &ledger, 2 * PAIRS, &pairs, &listener, &file);
        drop(q);
    }
    ledger.assert_each_dropped_once();
    assert_eq!(common::open_fds(), fds_before, "{driver:?}: a descriptor leaked");
    // A joined thread can stay listed in /proc/self/task for a moment while the kernel
    // finishes its exit: allow it that moment.
    let settle = std::time::Instant::now();
    while threads() > threads_before && settle.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(threads(), threads_before, "{driver:?}: a thread outlived its proactor");
}
