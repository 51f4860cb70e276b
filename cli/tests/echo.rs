//! End-to-end tests of `proactor echo` (and the shared server plumbing it uses): the built binary
//! on a free port, real TCP clients, each test once on io_uring and once on epoll.

#[macro_use]
mod server_support;

use server_support::{raise_nofile, read_pattern, start, Pattern};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Sends `len` bytes of pattern `seed` on one thread while checking the echo on another; returns
/// when the whole echo arrived and the server closed. Panics on any difference.
fn echo_roundtrip(stream: TcpStream, seed: u64, len: usize) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut pat = Pattern::new(seed);
        let mut chunk = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            pat.fill(&mut chunk[..n]);
            writer.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let got = read_and_check(&stream, seed, len);
    sender.join().unwrap();
    assert_eq!(got, len, "echo length");
}

/// Reads until EOF, checking the bytes against pattern `seed`; returns how many arrived.
fn read_and_check(mut stream: &TcpStream, seed: u64, max: usize) -> usize {
    let mut pat = Pattern::new(seed);
    let (mut buf, mut scratch) = (vec![0u8; 64 * 1024], Vec::new());
    let mut got = 0;
    loop {
        let n = stream.read(&mut buf).expect("read echo");
        if n == 0 {
            return got;
        }
        assert!(got + n <= max, "more bytes echoed than sent");
        assert!(pat.check(&buf[..n], &mut scratch), "echo differs at byte {got}..{}", got + n);
        got += n;
    }
}

#[proactor::test]
fn thousand_concurrent_clients(driver: &str) {
    use tokio::io::AsyncWriteExt;
    const CLIENTS: usize = 1000;
    const SIZES: [usize; 4] = [0, 1, 4096, 1 << 20];
    raise_nofile(20_000);
    let server = start("echo", driver, &[]);
    let addr = server.addr;
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let run = async move {
        let connected = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..CLIENTS {
            let connected = connected.clone();
            let case = seed.wrapping_add(i as u64);
            let len = SIZES[(Pattern::new(case).next_u64() % 4) as usize];
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                // Every client is connected before any sends: 1,000 at once on the server.
                connected.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                while connected.load(std::sync::atomic::Ordering::SeqCst) < CLIENTS {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let (mut rd, mut wr) = stream.into_split();
                let writer = tokio::spawn(async move {
                    let mut pat = Pattern::new(case);
                    let mut chunk = vec![0u8; 64 * 1024];
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        pat.fill(&mut chunk[..n]);
                        wr.write_all(&chunk[..n]).await.expect("write");
                        left -= n;
                    }
                    wr.shutdown().await.expect("shutdown");
                });
                let got = read_pattern(&mut rd, case, i).await;
                writer.await.unwrap();
                assert_eq!(got, len, "client {i}: echo length");
                len
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("client task");
        }
        total
    };
    let total = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(180), run).await })
        .expect("1,000 clients finished within 180 s");
    eprintln!("echoed {total} bytes");
    drop(rt);
    let mut server = server;
    assert!(server.alive(), "server died: {}", server.stderr());
}

#[proactor::test]
fn half_close_gets_all_echo(driver: &str) {
    let server = start("echo", driver, &[]);
    // Everything sent before the shutdown comes back, then EOF.
    let stream = TcpStream::connect(server.addr).unwrap();
    let mut data = vec![0u8; 3 << 20];
    Pattern::new(7).fill(&mut data);
    let mut w = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(read_and_check(&stream, 7, 3 << 20), 3 << 20);
    sender.join().unwrap();
    // Shut down before any byte was echoed: a short payload, then the write side closes at once.
    let mut s = TcpStream::connect(server.addr).unwrap();
    let mut small = [0u8; 100];
    Pattern::new(8).fill(&mut small);
    s.write_all(&small).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_and_check(&s, 8, 100), 100);
}

#[proactor::test]
fn reset_mid_transfer_does_not_hurt_others(driver: &str) {
    let mut server = start("echo", driver, &[]);
    for round in 0..20u64 {
        // A client that resets while the server is echoing to it.
        let bad = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        bad.connect(&server.addr.into()).unwrap();
        let mut bad: TcpStream = bad.into();
        let chunk = vec![0x55u8; 256 * 1024];
        bad.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        for _ in 0..4 {
            if bad.write_all(&chunk).is_err() {
                break;
            }
        }
        socket2::SockRef::from(&bad).set_linger(Some(Duration::ZERO)).unwrap();
        drop(bad); // RST, with echo data in flight both ways
                   // Meanwhile others are served.
        let good = TcpStream::connect(server.addr).unwrap();
        echo_roundtrip(good, 100 + round, 64 * 1024);
    }
    assert!(server.alive(), "server died: {}", server.stderr());
}

#[proactor::test]
fn client_that_never_reads_costs_bounded_memory(driver: &str) {
    const STALLED: usize = 16;
    const PUSH_EACH: usize = 200 << 20; // tries to push 200 MiB through each
    let server = start("echo", driver, &[]);
    // Warm up so the baseline includes the server's steady-state allocations.
    echo_roundtrip(TcpStream::connect(server.addr).unwrap(), 1, 1 << 20);
    let before = server.rss_kib();
    let mut stalled = Vec::new();
    let mut pushed_total = 0usize;
    for i in 0..STALLED {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut pat = Pattern::new(1000 + i as u64);
        let mut chunk = vec![0u8; 256 * 1024];
        let mut pushed = 0usize;
        let mut pending = 0usize; // bytes of `chunk` generated but not yet written
        let mut last_progress = Instant::now();
        // Push until the server stops taking bytes for 1 s (or all 200 MiB went in).
        while pushed < PUSH_EACH && last_progress.elapsed() < Duration::from_secs(1) {
            if pending == 0 {
                pat.fill(&mut chunk);
                pending = chunk.len();
            }
            let from = chunk.len() - pending;
            match s.write(&chunk[from..]) {
                Ok(n) => {
                    pushed += n;
                    pending -= n;
                    last_progress = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("push: {e}"),
            }
        }
        assert!(pushed < PUSH_EACH, "the server kept reading from a client that never reads");
        pushed_total += pushed;
        stalled.push((s, 1000 + i as u64, pushed));
    }
    let after = server.rss_kib();
    eprintln!(
        "pushed {} MiB into {STALLED} stalled connections; server RSS {before} KiB -> {after} KiB",
        pushed_total >> 20
    );
    // Each stalled connection may cost its one buffer plus allocator slack; 16 MiB in all is
    // generous. Buffering what the clients pushed would cost far more.
    assert!(after < before + 16 * 1024, "server RSS grew from {before} KiB to {after} KiB");
    // The server still serves others...
    echo_roundtrip(TcpStream::connect(server.addr).unwrap(), 2, 1 << 20);
    // ...and the stalled clients get every byte back once they read.
    for (s, seed, pushed) in stalled {
        s.set_nonblocking(false).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        assert_eq!(read_and_check(&s, seed, pushed), pushed);
    }
}

#[proactor::test]
fn sigterm_lets_in_flight_echoes_finish(driver: &str) {
    const CLIENTS: usize = 20;
    const LEN: usize = 8 << 20;
    let mut server = start("echo", driver, &["--grace", "30s"]);
    let addr = server.addr;
    let started = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let started = started.clone();
            std::thread::spawn(move || {
                let stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let mut w = stream.try_clone().unwrap();
                let seed = 500 + i as u64;
                let sender = std::thread::spawn(move || {
                    let mut pat = Pattern::new(seed);
                    let mut chunk = vec![0u8; 64 * 1024];
                    for k in 0..LEN / chunk.len() {
                        pat.fill(&mut chunk);
                        w.write_all(&chunk).unwrap();
                        if k == 1 {
                            started.wait(); // this transfer is under way
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    w.shutdown(Shutdown::Write).unwrap();
                });
                let got = read_and_check(&stream, seed, LEN);
                sender.join().unwrap();
                got
            })
        })
        .collect();
    started.wait();
    server.signal(libc::SIGTERM);
    // New connections are refused once the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            _ if Instant::now() > deadline => panic!("still accepting 5 s after SIGTERM"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    for c in clients {
        assert_eq!(c.join().unwrap(), LEN, "an in-flight echo was cut short");
    }
    let status =
        server.wait_timeout(Duration::from_secs(10)).expect("server exits after the drain");
    assert_eq!(status.code(), Some(0), "exit status; stderr: {}", server.stderr());
}

#[proactor::test]
fn max_conns_closes_excess_at_once(driver: &str) {
    let server = start("echo", driver, &["--max-conns", "3"]);
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"ping");
            s
        })
        .collect();
    // The fourth is closed at once: EOF (or a reset), never a hang.
    let mut extra = TcpStream::connect(server.addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 16];
    match extra.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("excess connection not closed: {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(4), "excess connection left hanging");
    // A freed place is usable again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"pong");
        let mut buf = [0u8; 4];
        if s.read_exact(&mut buf).is_ok() {
            assert_eq!(&buf, b"pong");
            break;
        }
        assert!(Instant::now() < deadline, "the freed place was never reused");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[proactor::test]
fn idle_timeout_closes_silent_clients(driver: &str) {
    let server = start("echo", driver, &["--idle-timeout", "300ms"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"hello").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    let t = Instant::now();
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected EOF after the idle timeout");
    assert!(t.elapsed() >= Duration::from_millis(250), "closed before the idle timeout");
}

/// Both front ends of the echo (the hidden `--style`).
const STYLES: [&str; 2] = ["handlers", "async"];

#[proactor::test]
fn idle_connections_hold_no_buffer(driver: &str) {
    // Each idle connection used to own a 16 KiB buffer with its first page touched (~4.4 KB of
    // RSS); with pooled receive buffers it holds none. A small pool keeps the pool's own pages
    // (all touched during the warm-up, before the baseline) out of the figure.
    const CONNS: usize = 2000;
    // Bytes per connection, with room for allocator and task slack. Measured 2026-12-03:
    // handlers 480-990 B; async 1.55-1.75 KB before receive bundles, 1.7-2.1 KB after (a
    // stream's queued items became `Received`, a buffer list). Both far below an owned buffer.
    let bound = |style: &str| -> u64 {
        if style == "handlers" {
            1536
        } else {
            3072
        }
    };
    raise_nofile(20_000);
    for style in STYLES {
        let bound = bound(style);
        let mut server = start("echo", driver, &["--style", style, "--pool-buffers", "64"]);
        echo_roundtrip(TcpStream::connect(server.addr).unwrap(), 3, 4 << 20);
        std::thread::sleep(Duration::from_millis(200));
        let before = server.rss_kib();
        let mut socks = Vec::with_capacity(CONNS);
        for _ in 0..CONNS {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"ping").unwrap();
            socks.push(s);
        }
        for (i, s) in socks.iter_mut().enumerate() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut got = [0u8; 4];
            s.read_exact(&mut got).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            assert_eq!(&got, b"ping", "connection {i}");
        }
        std::thread::sleep(Duration::from_millis(300));
        let after = server.rss_kib();
        let per_conn = after.saturating_sub(before) * 1024 / CONNS as u64;
        eprintln!("{style}: RSS {before} KiB -> {after} KiB with {CONNS} idle: {per_conn} B each");
        assert!(per_conn < bound, "{style}: {per_conn} B per idle connection (bound {bound})");
        assert!(server.alive(), "server died: {}", server.stderr());
    }
}

#[proactor::test]
fn dry_pool_delays_but_loses_nothing(driver: &str) {
    // Two 4 KiB buffers for 16 clients pushing 1 MiB each: receives keep finding the pool dry
    // and must wait for a buffer, with the data left in the socket.
    const CLIENTS: u64 = 16;
    for style in STYLES {
        let mut server =
            start("echo", driver, &["--style", style, "--pool-buffers", "2", "--buf-size", "4096"]);
        let addr = server.addr;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let s = TcpStream::connect(addr).unwrap();
                std::thread::spawn(move || echo_roundtrip(s, 500 + i, 1 << 20))
            })
            .collect();
        for c in clients {
            c.join().expect("client");
        }
        assert!(server.alive(), "{style}: server died: {}", server.stderr());
    }
}

#[proactor::test]
fn recovers_from_emfile(driver: &str) {
    // Out of descriptors the server keeps running and backs off; afterwards it echoes again.
    let report = server_support::emfile_recovery("echo", driver, &[], |addr| {
        echo_roundtrip(TcpStream::connect(addr).expect("connect"), 14, 100_000);
    });
    // One descriptor per connection: the accepts themselves run out.
    assert!(report.accept_backed_off, "accept never hit EMFILE: {report:?}");
}

#[proactor::test]
fn recovers_from_emfile_threads2(driver: &str) {
    // The same through `--threads 2`, whose acceptor thread runs the library's accept loop.
    let report = server_support::emfile_recovery("echo", driver, &["--threads", "2"], |addr| {
        echo_roundtrip(TcpStream::connect(addr).expect("connect"), 15, 100_000);
    });
    assert!(report.accept_backed_off, "accept never hit EMFILE: {report:?}");
}
