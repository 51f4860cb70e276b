//! End-to-end tests of the servers on several proactor threads (`--threads N`): the built binary,
//! real TCP clients, each test once on io_uring and once on epoll.

#[macro_use]
mod server_support;

use server_support::{raise_nofile, read_pattern, start, Pattern};
use std::time::Duration;

#[proactor::test]
fn echo_on_2_threads_1000_clients_byte_exact(driver: &str) {
    use tokio::io::AsyncWriteExt;
    const CLIENTS: usize = 1000;
    raise_nofile(20_000);
    // The server logs which thread takes each connection (debug level of its threads module).
    std::env::set_var("RUST_LOG", "warn,proactor::server::threads=debug");
    let server = start("echo", driver, &["--threads", "2"]);
    let addr = server.addr;
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let run = async move {
        let mut tasks = Vec::new();
        for i in 0..CLIENTS {
            let case = seed.wrapping_add(i as u64);
            let len = 1 + (Pattern::new(case).next_u64() % 20_000) as usize;
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let (mut rd, mut wr) = stream.into_split();
                let writer = tokio::spawn(async move {
                    let mut data = vec![0u8; len];
                    Pattern::new(case).fill(&mut data);
                    wr.write_all(&data).await.expect("write");
                    wr.shutdown().await.expect("shutdown");
                });
                let got = read_pattern(&mut rd, case, i).await;
                writer.await.unwrap();
                assert_eq!(got, len, "client {i}: echo length");
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
    };
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(180), run).await })
        .expect("1,000 clients finished within 180 s");
    drop(rt);
    let mut server = server;
    assert!(server.alive(), "server died: {}", server.stderr());
    server.signal(libc::SIGTERM);
    let status = server.wait_timeout(Duration::from_secs(10)).expect("server exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}; stderr:\n{}", server.stderr());
    let log = strip_ansi(&server.stderr());
    let on = |t: usize| log.matches(&format!("thread=Some({t})")).count();
    eprintln!("connections per thread: {} and {}", on(0), on(1));
    assert_eq!(on(0) + on(1), CLIENTS, "every connection was placed on a thread");
    assert!(on(0) > 0 && on(1) > 0, "both threads served connections");
}

/// The log without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
