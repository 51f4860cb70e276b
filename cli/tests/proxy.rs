//! End-to-end tests of `proactor proxy`: the real binary between real sockets on 127.0.0.1, once
//! per driver. The upstreams are small std-thread servers inside the test.

mod server_support;

use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// A running `proactor proxy`; stopped with SIGTERM when dropped. Its stderr is collected.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Proxy {
    fn start(driver: &str, to: SocketAddr, extra: &[&str]) -> Proxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_proactor"))
            .args(["proxy", "--listen", "127.0.0.1:0", "--driver", driver, "--to"])
            .arg(to.to_string())
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start proactor proxy");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Proxy { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until the log contains `needle`.
    fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SAFETY (test): signalling our own child process by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Generates `len` bytes seeded with `seed`, piece by piece, handing each piece to `each`;
/// returns their SHA-256.
fn seeded_stream(seed: u64, len: u64, mut each: impl FnMut(&[u8])) -> [u8; 32] {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        h.update(&buf[..n]);
        each(&buf[..n]);
        left -= n as u64;
    }
    h.finalize().into()
}

/// Writes `len` seeded random bytes; returns their SHA-256.
fn send_stream(s: &mut TcpStream, seed: u64, len: u64) -> [u8; 32] {
    seeded_stream(seed, len, |piece| s.write_all(piece).unwrap())
}

/// Reads to end of stream: the count and SHA-256.
fn recv_stream(s: &mut TcpStream) -> (u64, [u8; 32]) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (total, h.finalize().into()),
            Ok(n) => {
                h.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) => panic!("read after {total} bytes: {e}"),
        }
    }
}

/// The hash a sender with `seed` produces for `len` bytes.
fn expected_hash(seed: u64, len: u64) -> [u8; 32] {
    seeded_stream(seed, len, |_| {})
}

/// An upstream that, per connection, reads a 16-byte header (id, bytes to send back), then sends
/// that many seeded random bytes while reading the client's stream to its end; it records what
/// it received per id.
struct Exchange {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

/// Per connection id: the count and SHA-256 of what the upstream received.
type Received = HashMap<u64, (u64, [u8; 32])>;

fn exchange_upstream() -> Exchange {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let received = Arc::new(Mutex::new(HashMap::new()));
    let rec = received.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let rec = rec.clone();
            thread::spawn(move || {
                let mut hdr = [0u8; 16];
                if s.read_exact(&mut hdr).is_err() {
                    return;
                }
                let id = u64::from_le_bytes(hdr[..8].try_into().unwrap());
                let down = u64::from_le_bytes(hdr[8..].try_into().unwrap());
                let mut w = s.try_clone().unwrap();
                let writer = thread::spawn(move || {
                    send_stream(&mut w, id * 2 + 1, down);
                    let _ = w.shutdown(Shutdown::Write);
                });
                let got = recv_stream(&mut s);
                rec.lock().unwrap().insert(id, got);
                let _ = writer.join();
            });
        }
    });
    Exchange { addr, received }
}

/// `n` concurrent connections through `proxy`, each sending `up` bytes and receiving `down`
/// bytes (sizes from `sizes(i)`); checks both directions' hashes.
fn exchange_through(proxy: &Proxy, ex: &Exchange, sizes: &[(u64, u64)]) {
    let threads: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &(up, down))| {
            let addr = proxy.addr;
            thread::spawn(move || {
                let id = i as u64 + 1_000_000 * (std::process::id() as u64 % 1000);
                let mut s = connect(addr);
                let mut w = s.try_clone().unwrap();
                let writer = thread::spawn(move || {
                    let mut hdr = [0u8; 16];
                    hdr[..8].copy_from_slice(&id.to_le_bytes());
                    hdr[8..].copy_from_slice(&down.to_le_bytes());
                    w.write_all(&hdr).unwrap();
                    let h = send_stream(&mut w, id * 2, up);
                    w.shutdown(Shutdown::Write).unwrap();
                    h
                });
                let (n, h) = recv_stream(&mut s);
                assert_eq!(n, down, "conn {i}: bytes received from upstream");
                assert_eq!(
                    h,
                    expected_hash(id * 2 + 1, down),
                    "conn {i}: hash of upstream's bytes"
                );
                (id, up, writer.join().unwrap())
            })
        })
        .collect();
    let sent: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let end = Instant::now() + Duration::from_secs(30);
    for (id, up, h) in sent {
        let got = loop {
            if let Some(g) = ex.received.lock().unwrap().get(&id).copied() {
                break g;
            }
            assert!(Instant::now() < end, "upstream never finished conn {id}");
            thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(got, (up, h), "conn {id}: what the upstream received");
    }
}

/// Sizes for `n` connections: a few large (up to 64 MiB), some medium, many small (0 B up),
/// seeded; the total stays a few hundred MiB.
fn mixed_sizes(n: usize, seed: u64) -> Vec<(u64, u64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pick = |i: usize| -> u64 {
        match i % 50 {
            0 => 64 * MIB,
            1 => 32 * MIB + rng.next_u64() % (32 * MIB),
            2..=9 => rng.next_u64() % (4 * MIB),
            10..=12 => 0,
            _ => rng.next_u64() % (128 * 1024),
        }
    };
    (0..n).map(|i| (pick(i), pick(i + 7))).collect()
}

#[proactor::test]
fn two_hundred_concurrent_exchanges(driver: &str) {
    let ex = exchange_upstream();
    let proxy = Proxy::start(driver, ex.addr, &[]);
    exchange_through(&proxy, &ex, &mixed_sizes(200, 1));
    // One log line per connection, with bytes each way.
    assert!(proxy.wait_log("bytes up", Duration::from_secs(5)), "{}", proxy.log());
}

#[proactor::test]
fn splice_is_byte_exact(driver: &str) {
    let ex = exchange_upstream();
    let proxy = Proxy::start(driver, ex.addr, &["--splice"]);
    exchange_through(&proxy, &ex, &mixed_sizes(60, 2));
    assert!(!proxy.log().contains("relaying through buffers"), "{}", proxy.log());
}

/// An upstream running `serve` on each connection in its own thread.
fn upstream(serve: fn(TcpStream)) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || serve(s));
        }
    });
    addr
}

#[proactor::test]
fn half_close_from_client(driver: &str) {
    // The upstream answers only after the client has finished sending.
    let up = upstream(|mut s| {
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        thread::sleep(Duration::from_millis(100));
        s.write_all(format!("you sent {} bytes", got.len()).as_bytes()).unwrap();
    });
    let proxy = Proxy::start(driver, up, &[]);
    let mut c = connect(proxy.addr);
    c.write_all(&[7u8; 100_000]).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "you sent 100000 bytes");
}

#[proactor::test]
fn half_close_from_upstream(driver: &str) {
    // The upstream sends a banner and closes its sending side at once, then still reads.
    let up = upstream(|mut s| {
        s.write_all(b"banner").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        // What arrived after the half-close; the proxy's log line must agree (checked below).
        assert_eq!(got.len(), 300_000);
    });
    let proxy = Proxy::start(driver, up, &[]);
    let mut c = connect(proxy.addr);
    let mut banner = Vec::new();
    c.read_to_end(&mut banner).unwrap();
    assert_eq!(banner, b"banner", "the client sees the banner, then end of stream");
    // The other direction still works after the upstream's half-close.
    thread::sleep(Duration::from_millis(100));
    c.write_all(&[1u8; 300_000]).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert!(proxy.wait_log("300000 bytes up", Duration::from_secs(10)), "{}", proxy.log());
}

#[proactor::test]
fn upstream_refused(driver: &str) {
    // A port with nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let proxy = Proxy::start(driver, closed, &[]);
    let started = Instant::now();
    let mut c = connect(proxy.addr);
    let mut buf = [0u8; 16];
    let n = c.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the client is closed");
    assert!(started.elapsed() < Duration::from_secs(3), "closed promptly");
    assert!(proxy.wait_log("unavailable", Duration::from_secs(5)), "{}", proxy.log());
    assert!(proxy.log().contains("refused"), "{}", proxy.log());
}

#[proactor::test]
fn upstream_times_out(driver: &str) {
    // A listener whose accept queue is full and never drained: further SYNs are dropped, so a
    // connect to it hangs.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    sock.listen(0).unwrap();
    let full = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&full.into());
        fillers.push(s);
    }
    thread::sleep(Duration::from_millis(200));
    let proxy = Proxy::start(driver, full, &["--connect-timeout", "500ms"]);
    let started = Instant::now();
    let mut c = connect(proxy.addr);
    let mut buf = [0u8; 16];
    let n = c.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the client is closed");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "closed after the connect timeout, took {took:?}");
    assert!(proxy.wait_log("timed out", Duration::from_secs(5)), "{}", proxy.log());
    drop(sock);
}

#[proactor::test]
fn idle_connections_are_closed(driver: &str) {
    let up = upstream(|mut s| {
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    let proxy = Proxy::start(driver, up, &["--idle-timeout", "300ms"]);
    let mut c = connect(proxy.addr);
    c.write_all(b"hello").unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(c.read(&mut buf).unwrap_or(0), 0);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(proxy.wait_log("idle for", Duration::from_secs(5)), "{}", proxy.log());
}

#[proactor::test]
fn slow_reader_keeps_memory_flat(driver: &str) {
    // The upstream reads slowly; the client pushes 128 MiB as fast as it can.
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    let rec = received.clone();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    rec.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(4));
                }
            }
        }
    });
    let proxy = Proxy::start(driver, up, &[]);
    let baseline = proxy.rss_kib();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut c = connect(proxy.addr);
    let total = 128 * MIB;
    let counter = sent.clone();
    let writer = thread::spawn(move || {
        let buf = vec![5u8; 1 << 20];
        let mut left = total;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            c.write_all(&buf[..n]).unwrap();
            counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            left -= n as u64;
        }
        c
    });
    let end = Instant::now() + Duration::from_secs(60);
    let (mut peak, mut max_gap) = (baseline, 0);
    while received.load(std::sync::atomic::Ordering::Relaxed) < total && Instant::now() < end {
        thread::sleep(Duration::from_millis(50));
        peak = peak.max(proxy.rss_kib());
        let gap = sent.load(std::sync::atomic::Ordering::Relaxed)
            - received.load(std::sync::atomic::Ordering::Relaxed).min(total);
        max_gap = max_gap.max(gap);
    }
    assert_eq!(received.load(std::sync::atomic::Ordering::Relaxed), total, "all bytes arrived");
    drop(writer.join().unwrap());
    eprintln!(
        "proxy RSS: baseline {baseline} KiB, peak {peak} KiB; max sent-received gap {max_gap}"
    );
    assert!(peak < baseline + 16 * 1024, "proxy RSS grew from {baseline} KiB to {peak} KiB");
    // The sender is held back: what it has sent never runs far ahead of what was read (only the
    // sockets' kernel buffers sit in between).
    assert!(max_gap < 48 * MIB, "the sender ran {max_gap} bytes ahead of the reader");
}

#[proactor::test]
fn max_conns_is_enforced(driver: &str) {
    let up = upstream(|mut s| {
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let proxy = Proxy::start(driver, up, &["--max-conns", "2"]);
    let mut a = connect(proxy.addr);
    let mut b = connect(proxy.addr);
    for s in [&mut a, &mut b] {
        s.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
    }
    let mut third = connect(proxy.addr);
    let mut buf = [0u8; 4];
    assert_eq!(third.read(&mut buf).unwrap_or(0), 0, "a third connection is closed");
}

#[proactor::test]
fn recovers_from_emfile(driver: &str) {
    // Out of descriptors the proxy keeps running and backs off; afterwards a new client is
    // relayed to the upstream and back.
    let up = upstream(|mut s| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let to = up.to_string();
    server_support::emfile_recovery("proxy", driver, &["--to", &to], |addr| {
        let mut c = connect(addr);
        let mut rd = c.try_clone().unwrap();
        let reader = thread::spawn(move || recv_stream(&mut rd));
        let sent = send_stream(&mut c, 9, 200_000);
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.join().unwrap(), (200_000, sent));
    });
}
