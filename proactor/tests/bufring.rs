//! Provided-buffer ring options on both drivers, over real sockets: receive bundles and
//! incremental consumption on or off yield the same bytes in the same order, and every buffer
//! goes back to its pool exactly once — after a drop or a cancel with completions queued too.

mod common;

use proactor::buf::{BufPool, BufPoolSet, PooledBuf};
use proactor::net::{TcpListener, UnixStream};
use proactor::op::RecvMulti;
use proactor::{submit_multi, DriverChoice};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

/// `(incremental, bundles)`: every combination.
const CONFIGS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

fn pool(buffers: u16, size: usize, (incremental, bundles): (bool, bool)) -> BufPool {
    BufPool::builder()
        .buffers(buffers)
        .buffer_size(size)
        .incremental(incremental)
        .bundles(bundles)
        .build()
        .unwrap()
}

/// Turns the loop until no operation is in flight (a dropped stream's receive ends with the
/// kernel's last completion).
async fn settle() {
    let h = proactor::Handle::current();
    for _ in 0..500 {
        if h.in_flight().in_flight == 0 {
            return;
        }
        proactor::time::sleep(Duration::from_millis(2)).await.unwrap();
    }
    panic!("operations still in flight: {:?}", h.in_flight().by_kind);
}

/// Proves the pool whole and unaliased: holds every buffer at once, each filled with its own
/// bytes. A buffer given back twice would sit in the ring twice, and two held buffers would
/// share memory — the later receive overwriting the earlier one's bytes.
async fn every_buffer_once(pool: &BufPool) {
    assert_eq!(pool.available(), pool.capacity(), "every buffer back");
    let (a, b) = UnixStream::pair().unwrap();
    // All but one buffer's worth: with incremental consumption one buffer (the ring's head)
    // may be partly used already, and the receive must not run dry while every piece is held.
    let total = (pool.capacity() - 1).max(1) * pool.buffer_size();
    let sent: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let mut chunks = b.recv_stream(pool).max_queued(pool.capacity());
    let mut held: Vec<PooledBuf> = Vec::new();
    let mut offset = 0;
    while offset < total {
        // One buffer's worth at a time, so that each lands in a buffer of its own.
        let piece = sent[offset..offset + pool.buffer_size()].to_vec();
        let (res, _) = a.write_all(piece).await;
        res.unwrap();
        while held.iter().map(|b| b.len()).sum::<usize>() < offset + pool.buffer_size() {
            held.push(chunks.next().await.unwrap().unwrap());
        }
        offset += pool.buffer_size();
    }
    let got: Vec<u8> = held.iter().flat_map(|b| b.iter().copied()).collect();
    assert!(got == sent, "a buffer lent twice: held bytes were overwritten");
    drop(held);
    drop(chunks);
    settle().await;
    assert_eq!(pool.available(), pool.capacity(), "every buffer back after the check");
}

/// Sends `messages` (sizes) over a TCP connection from a plain thread, pausing now and then so
/// that the receiver sees both single messages and bursts; returns what the receiving stream
/// yielded, holding up to `hold` buffers at a time (so the pool runs dry now and then).
fn stream_through(
    p: &proactor::Proactor,
    messages: &[usize],
    buffers: u16,
    size: usize,
    config: (bool, bool),
    hold: usize,
) -> Vec<u8> {
    let messages = messages.to_vec();
    p.block_on(async move {
        let pool = pool(buffers, size, config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_nodelay(true).unwrap();
            let mut n = 0usize;
            for (i, len) in messages.iter().enumerate() {
                let msg: Vec<u8> = (0..*len).map(|j| ((n + j) % 253) as u8).collect();
                n += len;
                s.write_all(&msg).unwrap();
                if i % 4 == 3 {
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
        });
        let (conn, _) = listener.accept().await.unwrap();
        let mut chunks = conn.recv_stream(&pool);
        let mut held = VecDeque::new();
        let mut got = Vec::new();
        while let Some(buf) = chunks.next().await {
            let buf = buf.unwrap();
            assert!(!buf.is_empty() && buf.len() <= size, "a chunk of {} bytes", buf.len());
            got.extend_from_slice(&buf);
            held.push_back(buf);
            while held.len() > hold {
                held.pop_front();
            }
            if got.len() % 7 == 0 {
                // Let the receive run ahead while we keep buffers.
                proactor::time::sleep(Duration::from_micros(200)).await.unwrap();
            }
        }
        client.join().unwrap();
        drop(held);
        drop(chunks);
        settle().await;
        every_buffer_once(&pool).await;
        got
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn bundles_and_incremental_on_or_off_give_byte_identical_streams(
        messages in prop::collection::vec(1usize..5000, 1..30),
        size in prop::sample::select(vec![64usize, 300, 1024, 4096]),
        buffers in 2u16..10,
    ) {
        let expected: Vec<u8> = {
            let total: usize = messages.iter().sum();
            (0..total).map(|i| (i % 253) as u8).collect()
        };
        for driver in [DriverChoice::Uring, DriverChoice::Epoll] {
            let p = common::proactor(driver);
            for config in CONFIGS {
                let hold = (buffers as usize - 1).min(3);
                let got = stream_through(&p, &messages, buffers, size, config, hold);
                prop_assert!(
                    got == expected,
                    "{driver:?} {config:?}: {} of {} bytes, or out of order",
                    got.len(),
                    expected.len()
                );
            }
        }
    }
}

/// The options take effect on io_uring: a burst fills several buffers per completion with
/// bundles, small messages share a buffer with incremental consumption.
#[test]
fn bundles_and_incremental_consumption_happen_where_the_kernel_has_them() {
    let probe = proactor::driver::probe_kernel().unwrap();
    let cap = |name: &str| probe.capabilities.iter().any(|(n, ok)| *n == name && *ok);
    let p = common::proactor(DriverChoice::Uring);
    p.block_on(async {
        for (config, burst) in [((false, true), 8 * 256), ((true, false), 16)] {
            let pool = pool(16, 256, config);
            let (a, b) = UnixStream::pair().unwrap();
            let mut chunks = b.recv_stream(&pool);
            let mut got = Vec::new();
            for round in 0..20u8 {
                let (res, _) = a.write_all(vec![round; burst]).await;
                res.unwrap();
                while got.len() < (round as usize + 1) * burst {
                    got.extend_from_slice(&chunks.next().await.unwrap().unwrap());
                }
            }
            if config.1 && cap("recv bundles") {
                assert!(pool.bundle_count() > 0, "no completion filled several buffers");
            }
            if config.0 && cap("buffer ring INC") {
                assert!(pool.is_incremental() && !pool.has_bundles());
                assert!(pool.partial_count() > 0, "no two receives shared a buffer");
            }
        }
    });
}

#[proactor::test]
async fn a_dropped_stream_with_completions_queued_gives_each_buffer_back_once() {
    for config in CONFIGS {
        let pool = pool(8, 128, config);
        let (a, b) = UnixStream::pair().unwrap();
        let mut chunks = b.recv_stream(&pool).max_queued(64);
        for i in 0..6u8 {
            // Bursts of one and a half buffers: bundles span two, INC leaves a rest.
            let (res, _) = a.write(vec![i; 192]).await;
            res.unwrap();
            proactor::time::sleep(Duration::from_millis(2)).await.unwrap();
        }
        let first = chunks.next().await.unwrap().unwrap();
        assert_eq!(first[0], 0);
        // Completions are queued in the operation's block (and the bundle's rest in the
        // stream): drop them all, one of them still held.
        drop(chunks);
        settle().await;
        assert!(pool.available() < pool.capacity(), "{config:?}: the held buffer is lent");
        drop(first);
        every_buffer_once(&pool).await;
    }
}

#[proactor::test]
async fn a_cancelled_receive_with_completions_queued_loses_nothing() {
    for config in CONFIGS {
        let pool = pool(8, 100, config);
        let (a, b) = UnixStream::pair().unwrap();
        let sent: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let sent = sent.clone();
            proactor::spawn(async move {
                for piece in sent.chunks(250) {
                    let (res, _) = a.write(piece.to_vec()).await;
                    res.unwrap();
                    proactor::time::sleep(Duration::from_millis(1)).await.unwrap();
                }
                a
            })
        };
        let mut ops = submit_multi(RecvMulti::new(b.as_raw_fd(), &pool));
        let mut got = Vec::new();
        let mut cancelled = false;
        while let Some(item) = ops.next().await {
            let bufs = item.unwrap();
            assert!(bufs.buffers() >= 1 && bufs.bytes() == bufs.to_vec().len());
            got.extend_from_slice(&bufs.to_vec());
            if got.len() >= 900 && !cancelled {
                // Let completions pile up behind the cancel.
                proactor::time::sleep(Duration::from_millis(3)).await.unwrap();
                ops.cancel();
                cancelled = true;
            }
        }
        assert!(cancelled, "{config:?}: the stream must not end before the cancel");
        drop(ops);
        let a = writer.await.unwrap();
        drop(a);
        // The rest is still in the socket: read it, and the whole stream is intact.
        loop {
            let (res, buf) = b.read(vec![0u8; 4096]).await;
            let n = res.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got == sent,
            "{config:?}: got {} of {} bytes, or out of order",
            got.len(),
            sent.len()
        );
        settle().await;
        every_buffer_once(&pool).await;
    }
}

/// The next `len` bytes of a counting pattern, appended to `sent`.
fn send(sent: &mut Vec<u8>, len: usize) -> Vec<u8> {
    let piece: Vec<u8> = (sent.len()..sent.len() + len).map(|i| (i % 249) as u8).collect();
    sent.extend_from_slice(&piece);
    piece
}

/// A set of 64-byte and 4 KiB buffers, four of each.
fn small_and_large(config: (bool, bool)) -> BufPoolSet {
    BufPoolSet::new([pool(4, 4096, config), pool(4, 64, config)]).unwrap()
}

#[proactor::test]
async fn a_pool_set_picks_by_expected_size() {
    let set = small_and_large((false, false));
    assert_eq!(set.pools().iter().map(|p| p.buffer_size()).collect::<Vec<_>>(), [64, 4096]);
    assert_eq!(set.pick(1).buffer_size(), 64);
    assert_eq!(set.pick(64).buffer_size(), 64);
    assert_eq!(set.pick(65).buffer_size(), 4096);
    assert_eq!(set.pick(1 << 20).buffer_size(), 4096, "the largest when none holds it");
    assert!(BufPoolSet::new([]).is_err());
}

#[proactor::test]
async fn a_set_stream_borrows_large_buffers_while_the_small_pool_is_dry_then_comes_back() {
    for config in CONFIGS {
        let set = small_and_large(config);
        let (small, large) = (set.pools()[0].clone(), set.pools()[1].clone());
        let (a, b) = UnixStream::pair().unwrap();
        let mut chunks = set.recv_stream(b.as_raw_fd(), 32);
        assert_eq!(chunks.pool().buffer_size(), 64);
        let mut sent = Vec::new();
        let mut got = Vec::new();
        // Fill every small buffer and keep them.
        let mut held = Vec::new();
        while small.available() > 0 {
            a.write_all(send(&mut sent, 64)).await.0.unwrap();
            let buf = chunks.next().await.unwrap().unwrap();
            got.extend_from_slice(&buf);
            held.push(buf);
        }
        // The small pool is dry: the next chunks come in large buffers.
        a.write_all(send(&mut sent, 1000)).await.0.unwrap();
        let mut borrowed = 0;
        while got.len() < sent.len() {
            let buf = chunks.next().await.unwrap().unwrap();
            borrowed += usize::from(buf.len() > 64);
            got.extend_from_slice(&buf);
        }
        assert!(borrowed > 0 && large.available() <= large.capacity(), "{config:?}");
        assert_eq!(chunks.pool().buffer_size(), 4096, "{config:?}: on the large pool");
        // Small buffers back: the stream returns to its own pool (after what the large
        // pool's receive had completed).
        drop(held);
        for _ in 0..20 {
            a.write_all(send(&mut sent, 40)).await.0.unwrap();
            while got.len() < sent.len() {
                got.extend_from_slice(&chunks.next().await.unwrap().unwrap());
            }
            if chunks.pool().buffer_size() == 64 {
                break;
            }
        }
        assert_eq!(chunks.pool().buffer_size(), 64, "{config:?}: back on the small pool");
        drop(a);
        while let Some(buf) = chunks.next().await {
            got.extend_from_slice(&buf.unwrap());
        }
        assert!(got == sent, "{config:?}: every byte, in order");
        drop(chunks);
        settle().await;
        every_buffer_once(&small).await;
        every_buffer_once(&large).await;
    }
}

#[proactor::test]
async fn a_set_receive_takes_a_larger_buffer_when_the_chosen_pool_is_dry() {
    let set = small_and_large((false, false));
    let small = set.pools()[0].clone();
    let (a, b) = UnixStream::pair().unwrap();
    let mut held = Vec::new();
    for i in 0..4u8 {
        a.write_all(vec![i; 64]).await.0.unwrap();
        let buf = set.recv(b.as_raw_fd(), 10).await.unwrap().unwrap();
        assert_eq!(&buf[..], &[i; 64][..]);
        held.push(buf);
    }
    assert_eq!(small.available(), 0);
    a.write_all(vec![9u8; 300]).await.0.unwrap();
    let buf = set.recv(b.as_raw_fd(), 10).await.unwrap().unwrap();
    assert_eq!(&buf[..], &[9u8; 300][..], "in one large buffer");
    drop(a);
    assert!(set.recv(b.as_raw_fd(), 10).await.unwrap().is_none(), "then the end");
}

/// 200 connections echo through a set of 8 small and 4 large buffers: the small pool runs dry
/// all the time, streams move between the pools, and every byte comes back in order.
#[proactor::test]
async fn echo_through_a_tiny_pool_set_loses_nothing() {
    const CONNS: usize = 200;
    const PER_CONN: usize = 3000;
    let set = BufPoolSet::new([pool(8, 256, (true, true)), pool(4, 4096, (false, true))]).unwrap();
    let listener = TcpListener::builder().backlog(CONNS as u32).bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let pattern = |c: usize| -> Vec<u8> { (0..PER_CONN).map(|i| (i * 7 + c) as u8).collect() };
    let clients: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                let mine: Vec<usize> = (0..CONNS).filter(|c| c % 2 == t).collect();
                let mut socks: Vec<_> = mine
                    .iter()
                    .map(|_| {
                        let s = std::net::TcpStream::connect(addr).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                        s
                    })
                    .collect();
                for (s, c) in socks.iter_mut().zip(&mine) {
                    for piece in pattern(*c).chunks(500) {
                        s.write_all(piece).unwrap();
                    }
                }
                for (s, c) in socks.iter_mut().zip(&mine) {
                    let mut back = vec![0u8; PER_CONN];
                    std::io::Read::read_exact(s, &mut back).unwrap();
                    assert!(back == pattern(*c), "connection {c}: bytes differ");
                }
            })
        })
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let (conn, _) = listener.accept().await.unwrap();
        let set = set.clone();
        tasks.push(proactor::spawn(async move {
            let mut chunks = set.recv_stream(conn.as_raw_fd(), 100);
            let mut echoed = 0;
            while echoed < PER_CONN {
                let buf = chunks.next().await.expect("data before the end").unwrap();
                echoed += buf.len();
                let (res, _) = proactor::io::write_all(&mut &conn, buf).await;
                res.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for c in clients {
        c.join().unwrap();
    }
    settle().await;
    for pool in set.pools() {
        assert_eq!(pool.available(), pool.capacity());
    }
    assert!(set.pools()[0].exhausted_count() > 0, "the small pool ran dry");
}

/// A one-shot receive (a future) and a multishot receive of another connection, on one
/// incremental pool, completing in the same turn of the loop: with small messages both take
/// pieces of the same buffer, and each piece must hold its own connection's bytes. (The pool
/// learns where a piece starts from the order in which the completions naming a buffer are
/// accounted; a future's completion accounted only when its task ran, after the multishot
/// completions of the same turn, swapped the pieces.)
#[proactor::test]
async fn a_future_and_a_multishot_receive_sharing_a_buffer_each_get_their_own_bytes() {
    use std::os::fd::AsRawFd;
    let pool = pool(4, 4096, (true, false));
    let (a1, b1) = std::os::unix::net::UnixStream::pair().unwrap();
    let (a2, b2) = std::os::unix::net::UnixStream::pair().unwrap();
    let (fd1, fd2) = (b1.as_raw_fd(), b2.as_raw_fd());
    let mut stream = submit_multi(RecvMulti::new(fd2, &pool));
    for round in 0..20u8 {
        let one = {
            let pool = pool.clone();
            proactor::spawn(async move { pool.recv(fd1).await })
        };
        // Both receives are armed; the data for both arrives while the loop is busy, so
        // both complete in its next turn, the one-shot first.
        proactor::time::sleep(Duration::from_millis(2)).await.unwrap();
        (&a1).write_all(&[round; 100]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        (&a2).write_all(&[round | 0x80; 100]).unwrap();
        let mut second = Vec::new();
        while second.len() < 100 {
            second.extend_from_slice(&stream.next().await.unwrap().unwrap().to_vec());
        }
        let first = one.await.unwrap().unwrap().expect("bytes");
        assert!(first.iter().all(|&x| x == round), "round {round}: the one-shot got {first:?}");
        assert!(
            second.iter().all(|&x| x == round | 0x80),
            "round {round}: the stream got other bytes"
        );
        assert_eq!(first.len(), 100);
    }
    stream.cancel();
    while stream.next().await.is_some() {}
    drop(stream);
    settle().await;
    every_buffer_once(&pool).await;
}
