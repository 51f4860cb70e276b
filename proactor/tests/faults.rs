//! Under injected faults (`proactor::faults`), on both drivers, 20 seeds each: every byte of a
//! stream arrives exactly and in order, or the transfer ends with an error and what did arrive
//! is a prefix of what was sent; every buffer is dropped exactly once; descriptors open before
//! equal those open after. A failing seed is printed with the command that repeats it
//! (`FAULT_SEED=N` runs that seed only; `FAULT_SEEDS=N` runs seeds 1 to N).
mod common;

use proactor::buf::{IoBuf, IoBufMut};
use proactor::faults::{FaultCounts, FaultKind, FaultPlan};
use proactor::io::{read_exact, write_all};
use proactor::net::{TcpListener, TcpStream, UnixStream};
use proactor::{DriverChoice, Proactor};
use std::cell::Cell;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

const SEEDS: u64 = 20;

/// Seeds per test and driver: 20, or `FAULT_SEEDS=N` for a longer sweep.
fn seed_count() -> u64 {
    std::env::var("FAULT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(SEEDS)
}

/// One test at a time: the descriptor count is the whole process's.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `body` on a fresh proactor under `plan`, once per seed; returns the faults injected.
fn each_seed(
    test: &str,
    driver: DriverChoice,
    plan: FaultPlan,
    body: impl Fn(&Proactor, u64),
) -> FaultCounts {
    let seeds: Vec<u64> = match std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => (1..=seed_count()).collect(),
    };
    let _serial = serial();
    let fds = common::open_fds();
    let mut total = FaultCounts::default();
    for &seed in &seeds {
        let plan = plan.with_seed(seed);
        let p = Proactor::builder().driver(driver).faults(plan).build().unwrap();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&p, seed)));
        let report = p.faults().unwrap();
        drop(p);
        if let Err(panic) = run {
            eprintln!(
                "FAILED on {driver:?} under PROACTOR_FAULTS={plan} ({}); repeat with: \
                 FAULT_SEED={seed} cargo test --release -p proactor --test faults {test}",
                report.counts
            );
            std::panic::resume_unwind(panic);
        }
        total.add(&report.counts);
    }
    assert_eq!(common::open_fds(), fds, "descriptors leaked under faults");
    eprintln!("{test} on {driver:?}: {} seed(s), injected {total}", seeds.len());
    total
}

/// `fault_test!(name, plan, |p, seed| body)`: the test `name`, on both drivers, running `body`
/// under `plan` for every seed; the block after `=>` checks the summed counts.
macro_rules! fault_test {
    ($name:ident, $plan:expr, |$p:ident, $seed:ident| $body:block => |$counts:ident| $check:block) => {
        #[proactor::test]
        fn $name(driver: DriverChoice) {
            fn body($p: &Proactor, $seed: u64) $body
            fn check($counts: FaultCounts) $check
            check(each_seed(stringify!($name), driver, $plan, body));
        }
    };
}

/// `len` bytes of a pattern that depends on `seed`, so a misplaced byte shows.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An echo server for one connection: reads and writes back until end of stream (then
/// half-closes) or an error (then drops the connection).
async fn echo_one(stream: TcpStream) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        let (res, b) = stream.read(buf).await;
        match res {
            Ok(0) => {
                let _ = stream.shutdown(Shutdown::Write).await;
                return;
            }
            Ok(_) => {
                let (res, b) = write_all(&mut &stream, b).await;
                buf = b;
                if res.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Sends `data` through an echo server in chunks and reads the echo; returns what came back
/// and whether the exchange ended cleanly.
async fn echo_round(data: Rc<Vec<u8>>, chunk: usize) -> (Vec<u8>, bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = proactor::spawn(async move {
        if let Ok((s, _)) = listener.accept().await {
            echo_one(s).await;
        }
    });
    let client = match TcpStream::connect(addr).await {
        Ok(c) => c,
        Err(_) => return (Vec::new(), false),
    };
    let (rx, tx) = client.into_split();
    let sent = data.clone();
    let writer = proactor::spawn(async move {
        for piece in sent.chunks(chunk) {
            let (res, _) = write_all(&mut &tx, piece.to_vec()).await;
            if res.is_err() {
                return false;
            }
        }
        tx.shutdown(Shutdown::Write).await.is_ok()
    });
    let mut got = Vec::new();
    let mut clean = true;
    loop {
        let (res, buf) = rx.read(Vec::with_capacity(8192)).await;
        match res {
            Ok(0) => break,
            Ok(_) => got.extend_from_slice(&buf),
            Err(_) => {
                clean = false;
                break;
            }
        }
    }
    drop(rx);
    let wrote = writer.await.unwrap_or(false);
    let _ = server.await;
    (got, clean && wrote)
}

fault_test!(echo_lossless, FaultPlan::new(0).rate(0.3).kinds(&FaultKind::LOSSLESS), |p, seed| {
    let data = Rc::new(pattern(seed, 192 * 1024 + seed as usize));
    let (got, clean) = p.block_on(echo_round(data.clone(), 1000 + 997 * seed as usize));
    assert!(clean, "the exchange failed under lossless faults");
    assert_eq!(got.len(), data.len());
    assert!(got == *data, "the echo differs from what was sent");
} => |counts| {
    assert!(counts.get(FaultKind::Short) > 0, "{counts}");
    assert!(counts.get(FaultKind::Eintr) + counts.get(FaultKind::Eagain) > 0, "{counts}");
    assert!(counts.get(FaultKind::Reorder) + counts.get(FaultKind::Overflow) > 0, "{counts}");
});

fault_test!(echo_under_resets, FaultPlan::new(0).rate(0.02).kinds(&[FaultKind::Reset, FaultKind::Short, FaultKind::Emfile]), |p, seed| {
    let data = Rc::new(pattern(seed, 128 * 1024));
    let (got, clean) = p.block_on(echo_round(data.clone(), 4096));
    // Exactly the bytes sent, in order, as far as they came; all of them if nothing failed.
    assert!(data.starts_with(&got), "the echo is not a prefix of what was sent");
    if clean {
        assert_eq!(got.len(), data.len(), "a clean exchange lost bytes");
    }
} => |counts| {
    assert!(counts.get(FaultKind::Reset) > 0, "{counts}");
});

/// A buffer that counts its drops.
struct Counted {
    vec: Vec<u8>,
    drops: Rc<Cell<usize>>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

// SAFETY: forwards to the Vec, whose heap block does not move with the value.
unsafe impl IoBuf for Counted {
    fn stable_ptr(&self) -> *const u8 {
        self.vec.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.vec.len()
    }
    fn bytes_total(&self) -> usize {
        self.vec.capacity()
    }
}

// SAFETY: forwards to the Vec (see `IoBufMut for Vec<u8>`).
unsafe impl IoBufMut for Counted {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.vec.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, n: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.vec.set_len(n) }
    }
}

fault_test!(buffers_dropped_once, FaultPlan::new(0).rate(0.3).kinds(&FaultKind::LOSSLESS), |p, seed| {
    let drops = Rc::new(Cell::new(0));
    let made = Rc::new(Cell::new(0));
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (Rc::new(a), Rc::new(b));
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let (a, b, drops, made) = (a.clone(), b.clone(), drops.clone(), made.clone());
            tasks.push(proactor::spawn(async move {
                made.set(made.get() + 2);
                let rbuf = Counted { vec: Vec::with_capacity(64), drops: drops.clone() };
                let wbuf = Counted { vec: vec![i as u8; 1 + (i % 7) as usize], drops };
                // Receives that time out are cancelled (their buffers parked until the kernel
                // gives them back); sends race them. Twice as many receives as sends, so some
                // always wait, and their cancels race the sends' data. (No resets here: one
                // would end the pair before any receive waited long enough to be cancelled.)
                let wait = Duration::from_millis(1 + (seed + i) % 5);
                if i % 3 != 0 {
                    let _ = proactor::time::timeout(wait, b.read(rbuf)).await;
                    drop(wbuf);
                } else {
                    let _ = a.write(wbuf).await;
                    drop(rbuf);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    // A timed-out receive's cancel may be held back a reap (`cancel` faults): its buffer comes
    // back after the tasks end. Drive the loop until nothing is left before counting.
    p.run().unwrap();
    assert_eq!(drops.get(), made.get(), "a buffer was dropped more or less than once");
} => |counts| {
    assert!(counts.get(FaultKind::CancelRace) > 0, "{counts}");
});

fault_test!(accept_through_emfile, FaultPlan::new(0).rate(0.4).kinds(&[FaultKind::Emfile]), |p, _seed| {
    p.block_on(async {
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = listener.local_addr().unwrap();
        let l = listener.clone();
        let acceptor = proactor::spawn(async move {
            let mut n = 0;
            while n < 16 {
                let (s, _) = l.accept().await.expect("accept retries EMFILE/ENFILE");
                drop(s);
                n += 1;
            }
        });
        let mut clients = Vec::new();
        for _ in 0..16 {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
        }
        acceptor.await.unwrap();
    });
} => |counts| {
    assert!(counts.get(FaultKind::Emfile) > 0, "{counts}");
});

fault_test!(file_write_enospc, FaultPlan::new(0).rate(1.0).kinds(&[FaultKind::Enospc]), |p, _seed| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    p.block_on(async {
        let f = proactor::fs::File::create(&path).await.unwrap();
        let (res, _) = f.write_at(b"data".to_vec(), 0).await;
        let err = res.unwrap_err();
        assert_eq!(proactor::op::raw_os_error(&err), Some(libc::ENOSPC), "{err}");
        f.close().await.unwrap();
    });
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
} => |counts| {
    assert!(counts.get(FaultKind::Enospc) > 0, "{counts}");
});

/// The same seed and the same operations give the same faults.
fn nops_and_pairs(driver: DriverChoice, seed: u64) -> FaultCounts {
    let plan = FaultPlan::new(seed).rate(0.3).kinds(&[
        FaultKind::Short,
        FaultKind::Eintr,
        FaultKind::Eagain,
        FaultKind::Reorder,
    ]);
    let p = Proactor::builder().driver(driver).faults(plan).build().unwrap();
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        for i in 0..50u8 {
            let (res, _) = write_all(&mut &a, vec![i; 100]).await;
            res.unwrap();
            let (res, buf) = read_exact(&mut &b, Vec::with_capacity(100)).await;
            res.unwrap();
            assert_eq!(buf, vec![i; 100]);
        }
    });
    p.faults().unwrap().counts
}

mod same_seed_same_faults {
    use super::*;

    fn check(driver: DriverChoice) {
        let _serial = serial();
        let first = nops_and_pairs(driver, 11);
        assert!(first.total() > 0, "{first}");
        assert_eq!(first, nops_and_pairs(driver, 11));
    }

    #[test]
    fn uring() {
        check(DriverChoice::Uring);
    }

    #[test]
    fn epoll() {
        check(DriverChoice::Epoll);
    }
}

/// Sends `data` on one end of a socket pair in pieces of `chunk` bytes, then closes that end.
fn send_then_close(
    a: UnixStream,
    data: Rc<Vec<u8>>,
    chunk: usize,
) -> proactor::task::JoinHandle<()> {
    proactor::spawn(async move {
        for piece in data.chunks(chunk) {
            let (res, _) = write_all(&mut &a, piece.to_vec()).await;
            res.expect("send to the receiving end");
        }
        drop(a);
    })
}

/// The pools a receive is tried with: the default (a provided-buffer ring on io_uring) and one
/// managed in user space.
fn pools() -> [proactor::buf::BufPool; 2] {
    let b = || proactor::buf::BufPool::builder().buffers(4).buffer_size(4096);
    [b().build().unwrap(), b().user_space(true).build().unwrap()]
}

// An injected ENOBUFS while no buffer is out: nothing will come back to wake the receive, so it
// must submit again (the pool is not dry) rather than wait for a buffer.
fault_test!(pooled_recv_through_enobufs, FaultPlan::new(0).rate(0.3).kinds(&[FaultKind::Enobufs]), |p, seed| {
    p.block_on(async {
        for pool in pools() {
            let data = Rc::new(pattern(seed, 64 * 1024 + seed as usize));
            let (a, b) = UnixStream::pair().unwrap();
            let sender = send_then_close(a, data.clone(), 3000);
            let receive = async {
                let mut got = Vec::new();
                while let Some(buf) = b.read_pooled(&pool).await.expect("a pooled receive") {
                    got.extend_from_slice(&buf);
                    // Dropped here: every buffer is back in the pool before the next receive.
                }
                got
            };
            let got = proactor::time::timeout(Duration::from_secs(20), receive)
                .await
                .expect("a pooled receive waited for a buffer while every buffer was free");
            assert_eq!(got.len(), data.len());
            assert!(got == *data, "the bytes received differ from those sent");
            assert_eq!(pool.available(), pool.capacity());
            sender.await.unwrap();
        }
    });
} => |counts| {
    assert!(counts.get(FaultKind::Enobufs) > 0, "{counts}");
});

// A multishot receive ended by an injected ENOBUFS (when submitted, or after a chunk, as the
// kernel ends one whose ring ran dry) is submitted again by the stream: every byte arrives, in
// order. With a user-space pool on io_uring the stream receives one chunk at a time; it must
// not wait on an injected ENOBUFS either.
fault_test!(recv_stream_through_enobufs, FaultPlan::new(0).rate(0.2).kinds(&[FaultKind::Enobufs]), |p, seed| {
    p.block_on(async {
        for pool in pools() {
            let data = Rc::new(pattern(seed, 256 * 1024 + seed as usize));
            let (a, b) = UnixStream::pair().unwrap();
            let sender = send_then_close(a, data.clone(), 5000);
            let mut chunks = b.recv_stream(&pool);
            let multishot = chunks.is_multishot();
            let receive = async {
                let mut got = Vec::new();
                while let Some(buf) = chunks.next().await {
                    got.extend_from_slice(&buf.expect("a chunk, not an error"));
                }
                got
            };
            let got = proactor::time::timeout(Duration::from_secs(20), receive)
                .await
                .unwrap_or_else(|_| panic!("the stream (multishot: {multishot}) stalled"));
            assert_eq!(got.len(), data.len(), "multishot: {multishot}");
            assert!(got == *data, "the bytes received differ from those sent");
            sender.await.unwrap();
        }
    });
} => |counts| {
    assert!(counts.get(FaultKind::Enobufs) > 0, "{counts}");
});

// A multishot accept ended by an injected EMFILE/ENFILE (when submitted, or after a connection,
// as the kernel ends one that finds the descriptor table full) hands the error out and is
// submitted again at the next call: every connection is accepted, none twice.
fault_test!(incoming_through_emfile, FaultPlan::new(0).rate(0.4).kinds(&[FaultKind::Emfile]), |p, _seed| {
    p.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..16 {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
        }
        let mut incoming = listener.incoming();
        let (mut accepted, mut refused) = (Vec::new(), 0);
        let accept_all = async {
            while accepted.len() < 16 {
                match incoming.next().await.expect("not cancelled") {
                    Ok(fd) => accepted.push(TcpStream::from_std(fd.into()).unwrap()),
                    Err(e) => {
                        let errno = proactor::op::raw_os_error(&e);
                        assert!(matches!(errno, Some(libc::EMFILE | libc::ENFILE)), "{e}");
                        refused += 1;
                    }
                }
            }
        };
        proactor::time::timeout(Duration::from_secs(20), accept_all)
            .await
            .expect("every connection accepted through EMFILE");
        // Each is a distinct connection: its peer is one of the clients, each client once.
        let mut peers: Vec<_> = accepted.iter().map(|s| s.peer_addr().unwrap()).collect();
        peers.sort();
        peers.dedup();
        let mut locals: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        locals.sort();
        assert_eq!(peers, locals);
        assert!(refused < 1000, "{refused} refusals for 16 connections");
    });
} => |counts| {
    assert!(counts.get(FaultKind::Emfile) > 0, "{counts}");
});
