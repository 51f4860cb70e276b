//! `SendQueue` on both drivers, with send bundles on and off: several queued buffers leave in
//! order, byte-exact, and short sends (a full socket buffer) are resumed where they stopped.

mod common;

use proactor::buf::SendQueue;
use proactor::net::UnixStream;
use proactor::{DriverChoice, Proactor};
use proptest::prelude::*;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// The bytes of message `m` of a test stream: its index and position, so an out-of-order or
/// repeated piece shows.
fn message(m: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (m * 31 + i) as u8).collect()
}

/// A connected TCP pair with a small send buffer on the proactor side, so sends come back short.
fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    socket2::SockRef::from(&server).set_send_buffer_size(4096).unwrap();
    (server, client)
}

/// Reads everything until end of stream on a thread, pausing every `pause_every` bytes.
fn reader(mut rx: std::net::TcpStream, pause_every: usize) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 7000];
        let mut since = 0;
        loop {
            match rx.read(&mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    since += n;
                    if since >= pause_every {
                        since = 0;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
    })
}

/// Sends `sizes` through a queue, `per_flush` messages pushed before each flush (and one more
/// pushed while every send is in flight), to a slow reader; returns the queue's
/// (requests, multi-buffer requests, bundled) and what the reader got.
fn send_through(
    p: &Proactor,
    sizes: &[usize],
    per_flush: usize,
    bundles: bool,
) -> ((u64, u64, bool), Vec<u8>) {
    let (tx, rx) = tcp_pair();
    let reading = reader(rx, 50_000);
    let stats = p.block_on(async {
        let mut queue = SendQueue::new(tx.as_raw_fd()).bundles(bundles);
        let mut next = sizes.iter().enumerate().peekable();
        while next.peek().is_some() {
            for (m, &len) in next.by_ref().take(per_flush) {
                queue.push(message(m, len));
            }
            // One more pushed while the send is in flight: it must go after the others.
            let mut late = next.next().map(|(m, &len)| message(m, len));
            std::future::poll_fn(|cx| {
                let res = queue.poll_flush(cx);
                if let Some(buf) = late.take() {
                    queue.push(buf);
                    if res.is_ready() {
                        return queue.poll_flush(cx);
                    }
                }
                res
            })
            .await
            .unwrap();
            assert!(queue.is_empty());
        }
        (queue.requests(), queue.multi_requests(), queue.is_bundled())
    });
    drop(tx);
    (stats, reading.join().unwrap())
}

fn expected(sizes: &[usize]) -> Vec<u8> {
    sizes.iter().enumerate().flat_map(|(m, &len)| message(m, len)).collect()
}

/// Whether the kernel has send bundles (and the proactor would use them).
fn kernel_has_send_bundles() -> bool {
    let probe = proactor::driver::probe_kernel().unwrap();
    probe.capabilities.iter().any(|(n, ok)| *n == "send bundles" && *ok)
}

#[proactor::test]
fn several_queued_buffers_go_in_order_with_bundles_on_and_off(p: &Proactor) {
    let sizes: Vec<usize> = (0..200).map(|i| 1 + (i * 977) % 20_000).collect();
    for bundles in [true, false] {
        let ((requests, many, bundled), got) = send_through(p, &sizes, 5, bundles);
        assert!(got == expected(&sizes), "bundles {bundles}: {} bytes, or out of order", got.len());
        // Several buffers waited at each flush: most requests carried more than one.
        assert!(many > 0 && requests < sizes.len() as u64, "{requests} requests, {many} multi");
        let uring = p.driver_kind() == proactor::DriverKind::Uring;
        assert_eq!(bundled, bundles && uring && kernel_has_send_bundles());
    }
}

#[proactor::test]
fn a_short_send_is_resumed_before_what_was_queued_after_it(p: &Proactor) {
    // 4 KiB of send buffer against 64 KiB messages: nearly every send comes back short.
    let sizes = vec![65_536; 40];
    for bundles in [true, false] {
        let ((requests, _, _), got) = send_through(p, &sizes, 3, bundles);
        assert!(got == expected(&sizes), "bundles {bundles}: {} bytes, or out of order", got.len());
        assert!(requests > sizes.len() as u64 / 3, "short sends were resumed: {requests}");
    }
}

#[proactor::test]
fn an_empty_queue_flushes_at_once_and_empty_buffers_are_skipped(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let mut queue = SendQueue::new(a.as_raw_fd());
        queue.flush().await.unwrap();
        queue.push(Vec::new());
        assert!(queue.is_empty());
        queue.push(b"ab".to_vec());
        queue.push(Vec::new());
        queue.push(b"cd".to_vec());
        assert_eq!(queue.len(), 2);
        queue.flush().await.unwrap();
        assert_eq!((queue.requests(), queue.multi_requests()), (1, 1));
        let (res, got) = b.read(Vec::with_capacity(16)).await;
        res.unwrap();
        assert_eq!(got, b"abcd");
    });
}

#[proactor::test]
fn a_send_to_a_closed_peer_is_an_error_and_the_queue_can_be_dropped(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let mut queue = SendQueue::new(a.as_raw_fd());
        for _ in 0..4 {
            queue.push(vec![1u8; 1000]);
        }
        assert!(queue.flush().await.is_err());
        drop(queue);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn bundles_on_or_off_give_byte_identical_streams(
        sizes in prop::collection::vec(1usize..40_000, 1..60),
        per_flush in 1usize..20,
    ) {
        let want = expected(&sizes);
        for driver in [DriverChoice::Uring, DriverChoice::Epoll] {
            let p = common::proactor(driver);
            for bundles in [true, false] {
                let (_, got) = send_through(&p, &sizes, per_flush, bundles);
                prop_assert!(got == want, "{driver:?} bundles {bundles}: {} of {} bytes", got.len(), want.len());
            }
        }
    }
}

#[test]
fn short_sends_injected_into_bundles_are_resumed_byte_exact() {
    use proactor::faults::{FaultKind, FaultPlan};
    let sizes: Vec<usize> = (0..120).map(|i| 1 + (i * 7919) % 9000).collect();
    for driver in [DriverChoice::Uring, DriverChoice::Epoll] {
        for seed in 1..6 {
            let plan = FaultPlan::new(seed).rate(0.5).kinds(&[FaultKind::Short]);
            let p = Proactor::builder().driver(driver).faults(plan).build().unwrap();
            for bundles in [true, false] {
                let (_, got) = send_through(&p, &sizes, 6, bundles);
                assert!(
                    got == expected(&sizes),
                    "{driver:?} seed {seed} bundles {bundles}: {} bytes, or out of order",
                    got.len()
                );
            }
            assert!(p.faults().unwrap().counts.get(FaultKind::Short) > 0, "short sends injected");
        }
    }
}
