//! `proactor http` under load: 500 clients at once, each on its own connection fetching a mix of
//! files with keep-alive, every body checked byte for byte; and a 3 GiB sparse file streamed whole
//! with its SHA-256 checked (release builds only: it moves 3 GiB through loopback).

mod http_support;

use http_support::{pattern, Client, Fixture, Server};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[proactor::test]
fn five_hundred_clients(driver: &str) {
    let fx = Fixture::new();
    let root = fx.root();
    let sizes = [0usize, 1, 100, 4096, 65_537, 300_000];
    for (i, n) in sizes.iter().enumerate() {
        std::fs::write(root.join(format!("mix{i}.bin")), pattern(*n + i)).unwrap();
    }
    let srv = Server::start(&root, driver, &[]);
    let clients = 500;
    let barrier = Arc::new(Barrier::new(clients));
    let deadline = Instant::now() + Duration::from_secs(120);
    let threads: Vec<_> = (0..clients)
        .map(|k| {
            let barrier = barrier.clone();
            let addr = srv.addr;
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mut c = Client::connect(addr);
                    barrier.wait();
                    for j in 0..4 {
                        assert!(Instant::now() < deadline, "load test ran out of time");
                        let i = (k + j) % sizes.len();
                        c.send(format!("GET /mix{i}.bin HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                        let r = c.response(false);
                        assert_eq!(r.status, 200);
                        assert!(
                            r.body == pattern(sizes[i] + i),
                            "client {k}: body of mix{i}.bin differs"
                        );
                    }
                    c.send(b"GET /seq/3.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                    assert_eq!(c.response(false).body, b"file number 3\n");
                    assert!(c.closed());
                })
                .expect("spawn client")
        })
        .collect();
    let mut failed = 0;
    for t in threads {
        if t.join().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "{failed} clients failed");
}

/// A sparse file: a hole of `len` bytes with a few marked spots, and its SHA-256.
fn sparse_file(path: &std::path::Path, len: u64) -> [u8; 32] {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap(); // ftruncate: no blocks written
    let marks: Vec<(u64, Vec<u8>)> = vec![
        (0, b"start".to_vec()),
        ((1 << 30) - 3, b"across-1GiB".to_vec()),
        (len / 2 + 12345, b"middle".to_vec()),
        (len - 3, b"end".to_vec()),
    ];
    for (at, bytes) in &marks {
        f.write_all_at(bytes, *at).unwrap();
    }
    // The expected hash, computed from the file through a bounded buffer.
    let mut h = Sha256::new();
    let mut r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).unwrap());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().into()
}

/// True (and says so) in a debug build: these tests move gigabytes through loopback, which
/// only a release build does in seconds.
fn skipped_in_debug() -> bool {
    if cfg!(debug_assertions) {
        eprintln!("SKIPPED in debug builds: run with --release (moves 3 GiB through loopback)");
    }
    cfg!(debug_assertions)
}

#[proactor::test]
fn three_gib_sparse_file(driver: &str) {
    if skipped_in_debug() {
        return;
    }
    let fx = Fixture::new();
    let len: u64 = 3 << 30;
    let want = sparse_file(&fx.root().join("big.bin"), len);
    let srv = Server::start(&fx.root(), driver, &[]);
    let mut c = Client::connect(srv.addr);
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    // Read the head, then hash the body as it streams.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.reader.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
        assert!(head.len() < 4096);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains(&format!("Content-Length: {len}\r\n")), "{head}");
    let started = Instant::now();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = c.reader.read(&mut buf[..(left.min(1 << 20)) as usize]).unwrap();
        assert!(n > 0, "connection closed with {left} bytes to go");
        h.update(&buf[..n]);
        left -= n as u64;
        assert!(started.elapsed() < Duration::from_secs(300), "3 GiB transfer too slow");
    }
    let got: [u8; 32] = h.finalize().into();
    assert_eq!(got, want, "SHA-256 of the streamed body differs");
    // The connection is still usable afterwards, and a range deep inside works.
    c.send(
        format!(
            "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={}-{}\r\n\r\n",
            (1u64 << 30) - 3,
            (1u64 << 30) + 7
        )
        .as_bytes(),
    );
    let r = c.response(false);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"across-1GiB");
    eprintln!("3 GiB streamed in {:?} on {driver}", started.elapsed());
}

/// Reads a response head on `c` (to its blank line) and checks its status and length.
fn read_head(c: &mut Client, status: &str, len: u64) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.reader.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
        assert!(head.len() < 4096, "head too long");
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{head}");
    assert!(head.contains(&format!("Content-Length: {len}\r\n")), "{head}");
}

/// Reads `len` body bytes on `c`, hashing them as they arrive.
fn hash_body(c: &mut Client, len: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = c.reader.read(&mut buf[..(left.min(1 << 20)) as usize]).unwrap();
        assert!(n > 0, "connection closed with {left} bytes to go");
        h.update(&buf[..n]);
        left -= n as u64;
    }
    h.finalize().into()
}

#[proactor::test]
fn one_gib_body_by_every_body_path(driver: &str) {
    if skipped_in_debug() {
        return;
    }
    use std::os::unix::fs::FileExt;
    let fx = Fixture::new();
    // A page past 1 GiB, so the mark across the 1 GiB boundary fits.
    let len: u64 = (1 << 30) + 4096;
    let path = fx.root().join("big.bin");
    let want = sparse_file(&path, len);
    let file = std::fs::File::open(&path).unwrap();
    let exact = |from: u64, to: u64| {
        let mut v = vec![0u8; (to - from + 1) as usize];
        file.read_exact_at(&mut v, from).unwrap();
        v
    };
    for body in ["sendfile", "splice", "zc"] {
        let srv = Server::start(&fx.root(), driver, &["--body", body]);
        let mut c = Client::connect(srv.addr);
        c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        read_head(&mut c, "200 OK", len);
        let started = Instant::now();
        assert_eq!(hash_body(&mut c, len), want, "{body}: SHA-256 of the 1 GiB body differs");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(120), "{body}: 1 GiB took {took:?}");
        // Ranges on the same connection, exact: the marks, across the splice pipe's 1 MiB and
        // the copy buffer's 256 KiB, and a large one deep inside, hashed.
        for (from, to) in [
            (0, 4),
            ((1 << 30) - 3, (1 << 30) + 7),
            ((1 << 20) - 5, (1 << 20) + 5),
            ((256 << 10) - 1, (512 << 10) + 1),
            (len / 2 + 12_000, len / 2 + 12_400),
            (len - 3, len - 1),
        ] {
            let req =
                format!("GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={from}-{to}\r\n\r\n");
            c.send(req.as_bytes());
            let r = c.response(false);
            assert_eq!(r.status, 206, "{body}: range {from}-{to}");
            assert!(r.body == exact(from, to), "{body}: range {from}-{to} differs");
        }
        let (from, to) = (123_457u64, 123_457 + (40 << 20));
        let req = format!("GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={from}-{to}\r\n\r\n");
        c.send(req.as_bytes());
        read_head(&mut c, "206 Partial Content", to - from + 1);
        let mut h = Sha256::new();
        h.update(exact(from, to));
        let expect: [u8; 32] = h.finalize().into();
        assert_eq!(hash_body(&mut c, to - from + 1), expect, "{body}: 40 MiB range differs");
        eprintln!("{body} on {driver}: 1 GiB in {took:?}");
    }
}
