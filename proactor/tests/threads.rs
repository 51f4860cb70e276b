//! Many cores: posting to a proactor from other threads, strands, offloading CPU work, and
//! servers spread over several proactor threads. Every test runs on io_uring and on epoll.

mod common;

use proactor::offload::offload;
use proactor::strand::Strand;
use proactor::threads::{Conn, Distribution, Room, Threads};
use proactor::{DriverChoice, Proactor};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

// ---------------------------------------------------------------------------------------------
// Remote handles
// ---------------------------------------------------------------------------------------------

#[proactor::test]
fn remote_posts_from_8_threads_run_once_in_order(p: &Proactor) {
    const POSTERS: usize = 8;
    const PER: usize = 5_000;
    let runs: Arc<Vec<AtomicU32>> =
        Arc::new((0..POSTERS * PER).map(|_| AtomicU32::new(0)).collect());
    let next: Arc<Vec<AtomicUsize>> = Arc::new((0..POSTERS).map(|_| AtomicUsize::new(0)).collect());
    let out_of_order = Arc::new(AtomicUsize::new(0));
    let on_loop_thread = Arc::new(AtomicUsize::new(0));
    let loop_thread = std::thread::current().id();
    let remote = p.remote();
    let barrier = Arc::new(Barrier::new(POSTERS));
    let posters: Vec<_> = (0..POSTERS)
        .map(|t| {
            let (r, runs, next, ooo, on_loop, barrier) = (
                remote.clone(),
                runs.clone(),
                next.clone(),
                out_of_order.clone(),
                on_loop_thread.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..PER {
                    let (runs, next, ooo, on_loop) =
                        (runs.clone(), next.clone(), ooo.clone(), on_loop.clone());
                    r.post(move || {
                        runs[t * PER + i].fetch_add(1, Ordering::Relaxed);
                        if next[t].swap(i + 1, Ordering::Relaxed) != i {
                            ooo.fetch_add(1, Ordering::Relaxed);
                        }
                        if std::thread::current().id() == loop_thread {
                            on_loop.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                    .expect("the proactor is running");
                }
            })
        })
        .collect();
    // The controller: waits for the posters, then measures how fast a post wakes the parked loop.
    let ctl_remote = remote.clone();
    drop(remote);
    let controller = std::thread::spawn(move || {
        for t in posters {
            t.join().expect("poster thread");
        }
        let mut lat = Vec::new();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(2)); // let the loop park in the driver
            let (tx, rx) = mpsc::channel();
            let t0 = Instant::now();
            ctl_remote.post(move || tx.send(t0.elapsed()).unwrap()).unwrap();
            lat.push(rx.recv_timeout(Duration::from_secs(5)).expect("a post woke the loop"));
        }
        ctl_remote.stop().unwrap();
        lat
    });
    p.run().unwrap();
    let mut lat = controller.join().unwrap();
    assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1), "every item ran exactly once");
    assert_eq!(out_of_order.load(Ordering::Relaxed), 0, "each poster's items ran in order");
    assert_eq!(on_loop_thread.load(Ordering::Relaxed), POSTERS * PER, "all ran on the loop thread");
    lat.sort();
    eprintln!(
        "{:?}: post-to-run latency on a parked loop: p50 {:?}, p99 {:?}, max {:?}",
        p.driver_kind(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    assert!(lat[lat.len() - 1] < Duration::from_secs(1), "wake-ups are prompt: {lat:?}");
}

#[proactor::test]
fn remote_post_after_drop_fails_and_run_waits_for_handles(p: &Proactor) {
    // run() with a live remote handle keeps running until stopped from another thread.
    let remote = p.remote();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        remote.post(move || d.store(true, Ordering::SeqCst)).unwrap();
        remote.stop().unwrap();
        remote
    });
    p.run().unwrap();
    assert!(done.load(Ordering::SeqCst), "run stayed up for the late post");
    let remote = t.join().unwrap();
    assert!(!remote.is_closed());
    // A panicking posted closure is reported and the loop carries on.
    remote.post(|| panic!("boom in a posted closure")).unwrap();
    let ok = Arc::new(AtomicBool::new(false));
    let o = ok.clone();
    remote.post(move || o.store(true, Ordering::SeqCst)).unwrap();
    remote.stop().unwrap();
    p.run().unwrap();
    assert!(ok.load(Ordering::SeqCst));
}

#[test]
fn remote_post_to_a_dropped_proactor_is_an_error() {
    let p = Proactor::new().unwrap();
    let remote = p.remote();
    drop(p);
    assert!(remote.is_closed());
    assert_eq!(remote.post(|| {}), Err(proactor::runtime::Closed));
}

// ---------------------------------------------------------------------------------------------
// Strands
// ---------------------------------------------------------------------------------------------

#[proactor::test]
fn strand_serialises_100k_increments_from_several_threads(d: DriverChoice) {
    const POSTERS: usize = 4;
    const PER: usize = 25_000;
    let pool = Threads::new().threads(2).driver(d).start().unwrap();
    let strand = Strand::on_workers(pool.workers());
    let busy = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let next: Arc<Vec<AtomicUsize>> = Arc::new((0..POSTERS).map(|_| AtomicUsize::new(0)).collect());
    let out_of_order = Arc::new(AtomicUsize::new(0));
    let threads_used = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let post_all = {
        let (strand, busy, overlaps, count, next, ooo, used) = (
            strand.clone(),
            busy.clone(),
            overlaps.clone(),
            count.clone(),
            next.clone(),
            out_of_order.clone(),
            threads_used.clone(),
        );
        move |t: usize| {
            for i in 0..PER {
                let (busy, overlaps, count, next, ooo, used) = (
                    busy.clone(),
                    overlaps.clone(),
                    count.clone(),
                    next.clone(),
                    ooo.clone(),
                    used.clone(),
                );
                strand
                    .post(move || {
                        if busy.swap(true, Ordering::SeqCst) {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        // A read-modify-write that loses updates if two closures overlap.
                        let c = count.load(Ordering::Relaxed);
                        for _ in 0..8 {
                            std::hint::spin_loop();
                        }
                        count.store(c + 1, Ordering::Relaxed);
                        if next[t].swap(i + 1, Ordering::Relaxed) != i {
                            ooo.fetch_add(1, Ordering::Relaxed);
                        }
                        if i % 1000 == 0 {
                            used.lock().unwrap().insert(proactor::threads::current_worker());
                        }
                        busy.store(false, Ordering::SeqCst);
                    })
                    .expect("the strand's threads are running");
            }
        }
    };
    let post_all = Arc::new(post_all);
    // Two posters are plain threads; two post from inside the proactor threads themselves.
    let (tx, rx) = mpsc::channel();
    for t in 0..POSTERS {
        let (post_all, tx) = (post_all.clone(), tx.clone());
        if t < 2 {
            std::thread::spawn(move || {
                post_all(t);
                tx.send(()).unwrap();
            });
        } else {
            pool.worker(t % 2)
                .post(move || {
                    post_all(t);
                    tx.send(()).unwrap();
                })
                .unwrap();
        }
    }
    for _ in 0..POSTERS {
        rx.recv_timeout(Duration::from_secs(60)).expect("poster finished");
    }
    strand.flush().unwrap();
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two strand closures ran at once");
    assert_eq!(out_of_order.load(Ordering::SeqCst), 0, "a poster's closures ran out of order");
    assert_eq!(count.load(Ordering::SeqCst), (POSTERS * PER) as u64, "final count");
    eprintln!("{d:?}: strand drains ran on threads {:?}", threads_used.lock().unwrap());
    pool.shutdown().unwrap();
}

#[proactor::test]
fn strand_task_awaits_offload_and_stays_serialised(d: DriverChoice) {
    let pool = Threads::new().threads(2).driver(d).start().unwrap();
    let strand = Strand::on_workers(pool.workers());
    let busy = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for i in 0..50u64 {
        let (b, o, tx) = (busy.clone(), overlaps.clone(), tx.clone());
        strand
            .spawn(async move {
                let (busy, overlaps) = (b, o);
                if busy.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                busy.store(false, Ordering::SeqCst);
                let v = offload(move || i * i).await.unwrap();
                if busy.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                busy.store(false, Ordering::SeqCst);
                tx.send(v).unwrap();
            })
            .unwrap();
        // Plain closures interleave with the tasks' polls.
        let (busy, overlaps) = (busy.clone(), overlaps.clone());
        strand
            .post(move || {
                if busy.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                busy.store(false, Ordering::SeqCst);
            })
            .unwrap();
    }
    let mut got: Vec<u64> =
        (0..50).map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("task done")).collect();
    got.sort();
    assert_eq!(got, (0..50u64).map(|i| i * i).collect::<Vec<_>>());
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    pool.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Offload
// ---------------------------------------------------------------------------------------------

#[proactor::test]
fn offload_result_and_panic_come_back_on_the_loop_thread(p: &Proactor) {
    let me = std::thread::current().id();
    p.block_on(async {
        let (v, ran_on) = offload(|| (21 * 2, std::thread::current().id())).await.unwrap();
        assert_eq!(v, 42);
        assert_ne!(ran_on, me, "the closure ran on a pool thread");
        assert_eq!(std::thread::current().id(), me, "the result is delivered on the loop thread");
        let err = offload(|| -> u32 { panic!("offloaded boom") }).await;
        assert_eq!(err, Err(proactor::JoinError::Panicked));
    });
}

#[proactor::test]
fn offload_queue_full_makes_the_caller_wait(p: &Proactor) {
    // One thread, a queue of two: ten jobs at once must all finish, and never more than two
    // wait in the queue.
    let pool = proactor::offload::BlockingPool::new(1, 2).unwrap();
    let max_queued = Arc::new(AtomicUsize::new(0));
    p.block_on(async {
        let mut handles = Vec::new();
        for i in 0..10u32 {
            let (pool2, mq) = (pool.clone(), max_queued.clone());
            handles.push(proactor::spawn(async move {
                let fut = pool2.offload(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    i
                });
                mq.fetch_max(pool2.queued(), Ordering::SeqCst);
                fut.await.unwrap()
            }));
        }
        let mut seen = Vec::new();
        for h in handles {
            seen.push(h.await.unwrap());
            max_queued.fetch_max(pool.queued(), Ordering::SeqCst);
        }
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    });
    assert!(max_queued.load(Ordering::SeqCst) <= 2, "the queue stayed bounded");
}

/// The bytes the hashing request hashes: `size` bytes of a fixed pattern, in 1 MiB chunks.
fn hash_pattern(size: u64) -> [u8; 32] {
    use sha2::Digest;
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(31) ^ (i >> 7)) as u8).collect();
    let mut h = sha2::Sha256::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        h.update(&chunk[..n]);
        left -= n as u64;
    }
    h.finalize().into()
}

/// A connection that either echoes, or — when its first byte is `H` followed by a little-endian
/// u64 size — hashes that many bytes through `offload` and replies with the digest.
async fn hash_or_echo(stream: std::net::TcpStream, conn: Conn) {
    let s = proactor::net::TcpStream::from_std(stream).unwrap();
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (res, b) = s.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if buf[0] == b'H' && buf.len() == 9 {
            let size = u64::from_le_bytes(buf[1..9].try_into().unwrap());
            let digest = offload(move || hash_pattern(size)).await.unwrap();
            let (res, _) = s.write_all(digest.to_vec()).await;
            if res.is_err() {
                break;
            }
        } else {
            let (res, b) = s.write_all(buf).await;
            buf = b;
            if res.is_err() {
                break;
            }
        }
        buf.clear();
    }
    drop(conn);
}

/// Round trips of 64 bytes on `n` connections, one after another; returns every latency.
fn echo_latencies(conns: &mut [std::net::TcpStream], rounds: usize) -> Vec<Duration> {
    let mut lat = Vec::new();
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    for _ in 0..rounds {
        for c in conns.iter_mut() {
            let t0 = Instant::now();
            c.write_all(&msg).unwrap();
            c.read_exact(&mut back).unwrap();
            lat.push(t0.elapsed());
            assert_eq!(back, msg);
        }
    }
    lat.sort();
    lat
}

#[proactor::test]
fn offloaded_hash_does_not_delay_other_connections(d: DriverChoice) {
    // 1 GiB as the issue asks in optimised builds; debug builds hash far slower, so 16 MiB.
    let size: u64 = if cfg!(debug_assertions) { 16 << 20 } else { 1 << 30 };
    let pool = Threads::new().threads(1).driver(d).start().unwrap();
    let server = pool.serve(local(), Distribution::Acceptor, hash_or_echo).unwrap();
    let addr = server.local_addr();
    let mut echoers: Vec<_> = (0..3)
        .map(|_| {
            let c = std::net::TcpStream::connect(addr).unwrap();
            c.set_nodelay(true).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c
        })
        .collect();
    let idle = echo_latencies(&mut echoers, 100);
    let mut hasher = std::net::TcpStream::connect(addr).unwrap();
    hasher.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let started = Instant::now();
    let mut req = vec![b'H'];
    req.extend_from_slice(&size.to_le_bytes());
    hasher.write_all(&req).unwrap();
    let hash_thread = std::thread::spawn(move || {
        let mut digest = [0u8; 32];
        hasher.read_exact(&mut digest).unwrap();
        (digest, started.elapsed())
    });
    // Wait until the pool is busy hashing, then measure while it is.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proactor::offload::BlockingPool::global().busy() == 0 {
        assert!(Instant::now() < deadline, "the hash never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    let measure_start = started.elapsed();
    let busy = echo_latencies(&mut echoers, 300);
    let measured_by = started.elapsed();
    let (digest, hash_time) = hash_thread.join().unwrap();
    assert_eq!(digest, hash_pattern(size), "the offloaded hash is right");
    let (i50, i99) = (percentile(&idle, 0.5), percentile(&idle, 0.99));
    let (b50, b99) = (percentile(&busy, 0.5), percentile(&busy, 0.99));
    eprintln!(
        "{d:?}: echo latency idle p50 {i50:?} p99 {i99:?}; while hashing {} MiB (took {hash_time:?}, \
         measured {measure_start:?}..{measured_by:?}): p50 {b50:?} p99 {b99:?}",
        size >> 20
    );
    assert!(measured_by < hash_time, "the echo measurement overlapped the hash");
    // Generous: hashing inline would stall every echo for the whole hash (hundreds of ms).
    assert!(
        b50 < i50 * 20 + Duration::from_millis(5),
        "median echo latency while hashing: {b50:?}"
    );
    assert!(b99 < Duration::from_millis(100), "p99 echo latency while hashing: {b99:?}");
    server.stop().unwrap();
    pool.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Servers on several threads
// ---------------------------------------------------------------------------------------------

async fn echo(stream: std::net::TcpStream, conn: Conn) {
    let s = proactor::net::TcpStream::from_std(stream).unwrap();
    let mut buf = Vec::with_capacity(16 << 10);
    loop {
        let (res, b) = s.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let (res, b) = s.write_all(buf).await;
        buf = b;
        if res.is_err() {
            break;
        }
        buf.clear();
    }
    drop(conn);
}

/// True if this driver accepts through a multishot accept: the epoll driver always does (it
/// emulates it); io_uring where the kernel has it.
fn multishot_accept(d: DriverChoice) -> bool {
    if common::proactor(d).driver_kind() == proactor::DriverKind::Epoll {
        return true;
    }
    let probe = proactor::driver::probe_kernel().expect("probe the kernel");
    probe.capabilities.iter().any(|&(name, works)| name == "multishot accept" && works)
}

/// 1,000 clients at once, each sending its own payload and checking every byte comes back,
/// all accepted through one multishot accept per listener.
fn thousand_clients(d: DriverChoice, dist: Distribution) {
    const CLIENTS: usize = 1000;
    let pool = Threads::new().threads(2).driver(d).start().unwrap();
    // Every accepted socket has TCP_NODELAY (from the listener) and its peer's address.
    let odd = Arc::new(AtomicUsize::new(0));
    let o = odd.clone();
    let server = pool
        .serve(local(), dist, move |stream, conn| {
            let loopback = conn.peer().ip().is_loopback() && conn.peer().port() != 0;
            if !stream.nodelay().unwrap_or(false) || !loopback {
                o.fetch_add(1, Ordering::Relaxed);
            }
            echo(stream, conn)
        })
        .unwrap();
    let addr = server.local_addr();
    let client = common::proactor(d);
    let failures = client.block_on(async move {
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            tasks.push(proactor::spawn(async move {
                let len = 1000 + (c * 7919) % 7000;
                let payload: Vec<u8> = (0..len).map(|i| (i * 131 + c * 17) as u8).collect();
                let s = proactor::net::TcpStream::connect(addr).await?;
                let (res, _) = s.write_all(payload.clone()).await;
                res?;
                let (res, back) = s.read_exact(Vec::with_capacity(payload.len())).await;
                res?;
                if back != payload {
                    return Err(std::io::Error::other(format!("client {c}: bytes differ")));
                }
                Ok::<(), std::io::Error>(())
            }));
        }
        let mut failures = Vec::new();
        for t in tasks {
            match proactor::time::timeout(Duration::from_secs(60), t).await {
                Ok(Ok(Ok(()))) => {}
                other => failures.push(format!("{other:?}")),
            }
        }
        failures
    });
    assert!(
        failures.is_empty(),
        "{} clients failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    let per_thread: Vec<u64> = pool.workers().iter().map(|w| w.load().assigned()).collect();
    let requests = server.accept_requests();
    eprintln!("{d:?} {dist:?}: connections per thread {per_thread:?}, {requests} accept requests");
    assert_eq!(per_thread.iter().sum::<u64>(), CLIENTS as u64);
    assert!(per_thread.iter().all(|&n| n > 0), "both threads served: {per_thread:?}");
    assert_eq!(server.accepted(), CLIENTS);
    assert_eq!(odd.load(Ordering::Relaxed), 0, "sockets without TCP_NODELAY or a peer address");
    // One multishot accept per listener took every connection (a few more only if the kernel
    // ended one); where the kernel has no multishot accept, one accept per connection.
    let listeners = if dist == Distribution::ReusePort { pool.len() } else { 1 } as u64;
    if multishot_accept(d) {
        assert!(requests <= listeners * 4, "{requests} accept requests for {CLIENTS} connections");
    } else {
        assert!(requests >= CLIENTS as u64, "{requests} accept requests, one at a time");
    }
    server.stop().unwrap();
    pool.shutdown().unwrap();
}

#[proactor::test]
fn echo_on_2_threads_1000_clients_acceptor(d: DriverChoice) {
    thousand_clients(d, Distribution::Acceptor);
}

#[proactor::test]
fn echo_on_2_threads_1000_clients_reuseport(d: DriverChoice) {
    thousand_clients(d, Distribution::ReusePort);
}

/// A chat connection: joins the room, says which thread serves it, then relays lines.
async fn chat(stream: std::net::TcpStream, conn: Conn, room: Room<Arc<[u8]>>) {
    let s = proactor::net::TcpStream::from_std(stream).unwrap();
    let (rd, wr) = s.into_split();
    let member = std::rc::Rc::new(room.join());
    let hello = format!("welcome {}\n", conn.worker()).into_bytes();
    if wr.write_all(hello).await.0.is_err() {
        return;
    }
    let m = member.clone();
    let writer = proactor::spawn(async move {
        while let Ok(msgs) = m.recv().await {
            if msgs.is_empty() {
                break;
            }
            for msg in msgs {
                if wr.write_all(msg.to_vec()).await.0.is_err() {
                    return;
                }
            }
        }
    });
    let mut reader = proactor::io::BufReader::new(rd);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line, 4096).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                member.broadcast(&Arc::from(line));
            }
        }
    }
    member.leave();
    let _ = writer.await;
    drop(conn);
}

fn read_line(c: &mut std::net::TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while out.last() != Some(&b'\n') {
        let n = c.read(&mut b).expect("a line within the timeout");
        assert_eq!(n, 1, "connection closed mid-line");
        out.push(b[0]);
    }
    String::from_utf8(out).unwrap()
}

#[proactor::test]
fn chat_room_spans_threads(d: DriverChoice) {
    let pool = Threads::new().threads(2).driver(d).start().unwrap();
    let room: Room<Arc<[u8]>> = Room::new(1024);
    let r = room.clone();
    let server =
        pool.serve(local(), Distribution::Acceptor, move |s, c| chat(s, c, r.clone())).unwrap();
    let mut clients = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let mut c = std::net::TcpStream::connect(server.local_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let hello = read_line(&mut c);
        workers.push(hello.trim().strip_prefix("welcome ").unwrap().parse::<usize>().unwrap());
        clients.push(c);
    }
    assert!(workers.contains(&0) && workers.contains(&1), "clients on both threads: {workers:?}");
    assert_eq!(room.len(), 4);
    for from in 0..clients.len() {
        let line = format!("hello from {from} on thread {}\n", workers[from]);
        clients[from].write_all(line.as_bytes()).unwrap();
        for (to, c) in clients.iter_mut().enumerate() {
            if to != from {
                assert_eq!(read_line(c), line, "client {to} got client {from}'s line");
            }
        }
    }
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !room.is_empty() {
        assert!(Instant::now() < deadline, "members left the room when their clients closed");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.stop().unwrap();
    pool.shutdown().unwrap();
}

#[proactor::test]
fn a_busy_thread_gets_fewer_new_connections(d: DriverChoice) {
    let pool = Threads::new().threads(2).driver(d).start().unwrap();
    let server = pool.serve(local(), Distribution::Acceptor, echo).unwrap();
    // Thread 0 burns CPU (a handler that blocks its loop: exactly what connection code must not
    // do, used here to make one thread measurably busier than the other).
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    pool.worker(0)
        .post(move || {
            let end = Instant::now() + Duration::from_secs(20);
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                std::hint::spin_loop();
            }
        })
        .unwrap();
    let workers = pool.workers();
    // Let the CPU clocks show it: samples 15 ms apart until thread 0 is measurably the busier.
    // On a machine saturated by other work the spinning thread may get too little CPU for that
    // (what the test is about then cannot be seen): it says so and stops.
    let shown = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = workers.least_loaded();
        let util: Vec<f64> = workers.iter().map(|w| w.load().utilization()).collect();
        if util[0] > 0.1 && util[0] > 3.0 * util[1] {
            break;
        }
        if Instant::now() > shown {
            stop.store(true, Ordering::Relaxed);
            eprintln!("skipped: the spinning thread never got measurably busy (CPU {util:.2?})");
            return;
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(std::net::TcpStream::connect(server.local_addr()).unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let placed: Vec<u64> = workers.iter().map(|w| w.load().assigned()).collect();
    let util: Vec<f64> = workers.iter().map(|w| w.load().utilization()).collect();
    stop.store(true, Ordering::Relaxed);
    eprintln!("{d:?}: with thread 0 busy, connections per thread {placed:?}, CPU use {util:.2?}");
    assert_eq!(placed.iter().sum::<u64>(), 6);
    assert!(placed[1] >= 4, "the idle thread took most new connections: {placed:?}");
    drop(clients);
    server.stop().unwrap();
    pool.shutdown().unwrap();
}
