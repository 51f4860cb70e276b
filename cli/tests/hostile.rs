//! Hostile peers against the real binaries, each bounded in time, each on both drivers:
//! 5,000 slowloris connections on `http`, header floods and endless lines on `http` and `chat`,
//! 15,000 concurrent connections on `echo`, 1,000 clients that reset mid-transfer on `proxy`.
//! Each reports the server's RSS before, at its peak and after (`/proc/PID/status`).

#[macro_use]
mod server_support;

use server_support::{raise_nofile, start, start_env, Pattern, ServerProc};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One heavy test at a time: together they would pass the descriptor limit (20,000).
fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// RSS before, peak (sampled by `sample`) and after, in KiB.
struct Rss {
    before: u64,
    peak: u64,
}

impl Rss {
    fn start(s: &ServerProc) -> Rss {
        let before = s.rss_kib();
        Rss { before, peak: before }
    }
    fn sample(&mut self, s: &ServerProc) {
        self.peak = self.peak.max(s.rss_kib());
    }
    fn report(&mut self, what: &str, s: &ServerProc) -> (u64, u64, u64) {
        let after = s.rss_kib();
        self.peak = self.peak.max(after);
        eprintln!(
            "{what}: RSS before {} KiB, peak {} KiB, after {after} KiB",
            self.before, self.peak
        );
        (self.before, self.peak, after)
    }
}

/// One GET on a fresh connection; the status, or `None` if it failed.
fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1)?.parse().ok()
}

fn http_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello world\n").unwrap();
    dir
}

#[proactor::test]
fn http_slowloris_5000(driver: &str) {
    const LORIS: usize = 5000;
    let _heavy = heavy();
    raise_nofile(20_000);
    let root = http_root();
    let server = start(
        "http",
        driver,
        &["--root", root.path().to_str().unwrap(), "--quiet", "--header-timeout", "1s"],
    );
    let mut rss = Rss::start(&server);
    let started = Instant::now();
    let mut loris = Vec::with_capacity(LORIS);
    for i in 0..LORIS {
        let mut s = TcpStream::connect(server.addr).expect("connect a slowloris client");
        // Half a request head, never finished.
        let _ = s.write_all(format!("GET /hello.txt HTTP/1.1\r\nX-Slow-{i}: ").as_bytes());
        loris.push(s);
        if i % 1000 == 999 {
            rss.sample(&server);
        }
    }
    // Others are served meanwhile.
    for _ in 0..20 {
        assert_eq!(get_status(server.addr, "/hello.txt"), Some(200), "a client went unserved");
    }
    rss.sample(&server);
    // The header timeout frees every one of them: each reads a 408 or EOF, within bounds.
    let mut freed = 0;
    for mut s in loris {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => freed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => freed += 1,
            Err(e) => panic!("a slowloris connection was not freed: {e}"),
        }
    }
    assert_eq!(freed, LORIS);
    eprintln!("{LORIS} slowloris connections freed in {:?}", started.elapsed());
    assert_eq!(get_status(server.addr, "/hello.txt"), Some(200));
    // The memory comes back (the server trims its heap as the burst ends): at least three
    // quarters of what the 5,000 took, once the server has seen the last of them close.
    let (start, top) = (rss.before, rss.peak);
    let returned = |after: u64| after <= start + (top - start) / 4;
    let until = Instant::now() + Duration::from_secs(5);
    while !returned(server.rss_kib()) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (before, peak, after) = rss.report("http slowloris", &server);
    assert!(peak < before + 120 * 1024, "5,000 idle connections cost over 120 MiB");
    assert!(returned(after), "RSS not returned after the slowloris connections closed");
}

#[proactor::test]
fn http_header_flood_and_long_line(driver: &str) {
    let root = http_root();
    let server = start("http", driver, &["--root", root.path().to_str().unwrap(), "--quiet"]);
    let mut rss = Rss::start(&server);
    // Endless small header lines, and one endless line: each is refused after a bounded amount,
    // never buffered without limit.
    let floods: [fn(usize) -> Vec<u8>; 2] =
        [|i| format!("X-Flood-{i}: {}\r\n", "v".repeat(50)).into_bytes(), |_| vec![b'a'; 4096]];
    for (n, flood) in floods.iter().enumerate() {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n").unwrap();
        let mut sent = 0usize;
        let mut i = 0;
        while sent < 64 << 20 {
            let chunk = flood(i);
            i += 1;
            if s.write_all(&chunk).is_err() {
                break; // the server closed on us
            }
            sent += chunk.len();
        }
        assert!(sent < 64 << 20, "flood {n}: the server took 64 MiB of one request head");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let head = String::from_utf8_lossy(&out);
        assert!(
            out.is_empty() || head.starts_with("HTTP/1.1 431") || head.starts_with("HTTP/1.1 400"),
            "flood {n}: {head:?}"
        );
        rss.sample(&server);
        assert_eq!(get_status(server.addr, "/hello.txt"), Some(200));
    }
    let (before, peak, _) = rss.report("http header flood", &server);
    assert!(peak < before + 64 * 1024);
}

#[proactor::test]
fn chat_endless_line_and_flood(driver: &str) {
    let mut server = start("chat", driver, &[]);
    let mut rss = Rss::start(&server);
    let join = |nick: &str| {
        let s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        use std::io::BufRead;
        r.read_line(&mut line).unwrap(); // welcome
        (&s).write_all(format!("{nick}\n").as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap(); // you are
        (s, r)
    };
    let (alice, mut alice_r) = join("alice");
    // A client sending one line without end, 32 MiB of it, while alice still chats.
    let mut flood = TcpStream::connect(server.addr).unwrap();
    flood.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 32 << 20 {
        if flood.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
        if sent.is_multiple_of(4 << 20) {
            rss.sample(&server);
        }
    }
    drop(flood);
    let (bob, _bob_r) = join("bob");
    use std::io::BufRead;
    let mut line = String::new();
    alice_r.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), "* bob joined");
    (&bob).write_all(b"hello alice\n").unwrap();
    line.clear();
    alice_r.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), "<bob> hello alice");
    drop(alice);
    let (before, peak, _) = rss.report(&format!("chat: {} MiB line", sent >> 20), &server);
    assert!(peak < before + 64 * 1024, "an endless line grew the server by over 64 MiB");
    assert!(server.alive());
}

#[proactor::test]
fn echo_15000_concurrent(driver: &str) {
    const CONNS: usize = 15_000;
    let _heavy = heavy();
    raise_nofile(20_000);
    let server = start("echo", driver, &["--max-conns", "20000"]);
    let mut rss = Rss::start(&server);
    let addr = server.addr;
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let started = Instant::now();
    let echoed = rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conns = Vec::with_capacity(CONNS);
        for _ in 0..CONNS {
            conns.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        // All 15,000 open at once; then each echoes 64 bytes.
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                tokio::spawn(async move {
                    let mut msg = [0u8; 64];
                    Pattern::new(i as u64).fill(&mut msg);
                    c.write_all(&msg).await.expect("write");
                    let mut back = [0u8; 64];
                    c.read_exact(&mut back).await.expect("read echo");
                    assert_eq!(back, msg, "connection {i}: echo differs");
                    c
                })
            })
            .collect();
        let mut open = Vec::with_capacity(CONNS);
        for t in tasks {
            open.push(t.await.expect("client task"));
        }
        let n = open.len();
        (n, open)
    });
    rss.sample(&server);
    let (n, open) = echoed;
    assert_eq!(n, CONNS);
    eprintln!("{CONNS} concurrent connections echoed in {:?}", started.elapsed());
    drop(open);
    drop(rt);
    std::thread::sleep(Duration::from_millis(500));
    let (before, peak, _) = rss.report("echo 15,000 connections", &server);
    assert!(peak < before + 512 * 1024);
}

#[proactor::test]
fn proxy_1000_resets_mid_transfer(driver: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    let _heavy = heavy();
    raise_nofile(20_000);
    // An upstream that streams 1 MiB to every connection, counting those it has open.
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let count = open.clone();
    std::thread::spawn(move || {
        for conn in up.incoming() {
            let Ok(mut conn) = conn else { continue };
            let count = count.clone();
            count.fetch_add(1, SeqCst);
            std::thread::spawn(move || {
                let chunk = vec![7u8; 64 * 1024];
                for _ in 0..16 {
                    if conn.write_all(&chunk).is_err() {
                        break;
                    }
                }
                let mut sink = [0u8; 4096];
                while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
                count.fetch_sub(1, SeqCst);
            });
        }
    });
    let server =
        start_env("proxy", driver, &["--to", &up_addr.to_string()], &[("RUST_LOG", "warn")]);
    let mut rss = Rss::start(&server);
    for round in 0..10 {
        let clients: Vec<_> = (0..100)
            .map(|_| {
                let addr = server.addr;
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    let _ = s.write_all(&[1u8; 8192]);
                    let mut buf = [0u8; 16 * 1024];
                    let _ = s.read(&mut buf); // some of the download, then a reset
                    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        rss.sample(&server);
        let _ = round;
    }
    // Every reset reached the upstream side too, and the proxy still relays.
    let end = Instant::now() + Duration::from_secs(20);
    while open.load(SeqCst) > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(open.load(SeqCst), 0, "upstream connections left open after client resets");
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = vec![0u8; 1 << 20];
    s.read_exact(&mut got).unwrap();
    assert!(got.iter().all(|&b| b == 7));
    let (before, peak, _) = rss.report("proxy 1,000 resets", &server);
    assert!(peak < before + 256 * 1024);
}
