//! The cost of accepting a connection through `threads::serve` (a benchmark, not a test): run
//! the server under a counter (`perf stat`, callgrind) and the client beside it, at two
//! connection counts, and divide the difference — `proactor/benches/accept_cost.sh` does that.
//!
//! - `serve --port P --conns N [--threads T] [--dist acceptor|reuseport]`: listens on
//!   127.0.0.1:P, serves N connections (each is sent one byte, then closed) and exits.
//! - `connect --port P --conns N [--parallel K]`: K blocking client threads open N connections
//!   between them, each read to its end (one byte, then EOF) before the next.

use proactor::threads::{Distribution, Threads};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let num = |name: &str, default: &str| -> usize {
        let v = opt(name, default);
        v.parse().unwrap_or_else(|_| panic!("{name} takes a number, got {v:?}"))
    };
    let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], num("--port", "0") as u16));
    match args.first().map(String::as_str) {
        Some("serve") => {
            let dist: Distribution = opt("--dist", "acceptor").parse().expect("--dist");
            serve(addr, num("--conns", "1000"), num("--threads", "2"), dist);
        }
        Some("connect") => connect(addr, num("--conns", "1000"), num("--parallel", "8")),
        _ => {
            eprintln!("usage: accept_cost serve|connect [options] (see the file's docs)");
            std::process::exit(2);
        }
    }
}

fn serve(addr: SocketAddr, conns: usize, threads: usize, dist: Distribution) {
    let pool = Threads::new().threads(threads).start().expect("start the server threads");
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let server = pool
        .serve(addr, dist, move |stream, conn| {
            let s = s.clone();
            async move {
                let (res, _) =
                    proactor::submit(proactor::op::Send::new(stream, b"x".as_slice())).await;
                if res.is_ok() {
                    s.fetch_add(1, Ordering::Relaxed);
                }
                drop(conn);
            }
        })
        .expect("listen");
    eprintln!("listening on {}", server.local_addr());
    let t0 = Instant::now();
    while served.load(Ordering::Relaxed) < conns {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "served only {}",
            served.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let per_thread: Vec<u64> = pool.workers().iter().map(|w| w.load().assigned()).collect();
    eprintln!("served {conns} in {:.2?}, per thread {per_thread:?}", t0.elapsed());
    drop(server);
    pool.shutdown().expect("stop the server threads");
}

fn connect(addr: SocketAddr, conns: usize, parallel: usize) {
    let left = Arc::new(AtomicUsize::new(conns));
    let t0 = Instant::now();
    let clients: Vec<_> = (0..parallel.max(1))
        .map(|_| {
            let left = left.clone();
            std::thread::spawn(move || {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let mut c = loop {
                        match std::net::TcpStream::connect(addr) {
                            Ok(c) => break c,
                            // The server may not be listening yet.
                            Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                                std::thread::sleep(Duration::from_millis(5))
                            }
                            Err(e) => panic!("connect {addr}: {e}"),
                        }
                    };
                    let mut got = Vec::new();
                    c.read_to_end(&mut got).expect("read");
                    assert_eq!(got, b"x");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    eprintln!("{conns} connections in {:.2?}", t0.elapsed());
}
