//! Pooled receive buffers on both drivers: idle connections hold none, a tiny pool serving many
//! connections loses no data, end of stream and buffer return.
mod common;

use proactor::buf::BufPool;
use proactor::net::{TcpListener, TcpStream, UnixStream};
use proactor::{DriverKind, Proactor};
use std::cell::RefCell;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

fn pattern(conn: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + conn * 13) % 251) as u8).collect()
}

/// `conns` clients each send `len` bytes to a server whose connections all receive through one
/// pool of `buffers` buffers of `size` bytes; every server task holds each buffer a little while
/// (so the pool runs dry) and checks its bytes arrive complete and in order.
fn many_connections_through_a_tiny_pool(p: &Proactor, user_space: bool) {
    const CONNS: usize = 64;
    const LEN: usize = 64 * 1024;
    p.block_on(async {
        let pool =
            BufPool::builder().buffers(2).buffer_size(512).user_space(user_space).build().unwrap();
        let expect_ring = p.driver_kind() == DriverKind::Uring && !user_space;
        assert_eq!(pool.is_kernel_ring(), expect_ring);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut servers = Vec::new();
        let mut clients = Vec::new();
        for c in 0..CONNS {
            clients.push(proactor::spawn(async move {
                let s = TcpStream::connect(addr).await.unwrap();
                let (res, _) = s.write_all(pattern(c, LEN)).await;
                res.unwrap();
                s.shutdown(Shutdown::Write).await.unwrap();
                // Keep the socket until the server has read everything.
                let (res, _) = s.read(Vec::with_capacity(1)).await;
                assert_eq!(res.unwrap(), 0);
            }));
            let (stream, _) = listener.accept().await.unwrap();
            let pool = pool.clone();
            servers.push(proactor::spawn(async move {
                // The client's first bytes name nothing; identify it by its pattern instead.
                let mut got = Vec::with_capacity(LEN);
                let mut reads = 0u32;
                while let Some(buf) = stream.read_pooled(&pool).await.unwrap() {
                    assert!(buf.len() <= 512);
                    got.extend_from_slice(&buf);
                    reads += 1;
                    if reads.is_multiple_of(8) {
                        // Hold the buffer across a sleep so other connections find the pool dry.
                        proactor::time::sleep(Duration::from_millis(1)).await.unwrap();
                    }
                    drop(buf);
                }
                stream.shutdown(Shutdown::Write).await.unwrap();
                got
            }));
        }
        let mut outputs = Vec::new();
        for s in servers {
            outputs.push(s.await.unwrap());
        }
        for c in clients {
            c.await.unwrap();
        }
        // Accept order is connect order here (one client connects at a time).
        for (c, got) in outputs.iter().enumerate() {
            assert_eq!(got.len(), LEN, "connection {c} lost data");
            assert!(*got == pattern(c, LEN), "connection {c} got corrupted data");
        }
        assert!(pool.exhausted_count() > 0, "the pool never ran dry; the test proves nothing");
        assert_eq!(pool.available(), 2, "every buffer came back");
    });
}

#[proactor::test]
fn tiny_pool_many_connections_loses_no_data(p: &Proactor) {
    many_connections_through_a_tiny_pool(p, false);
}

#[proactor::test]
fn tiny_user_space_pool_many_connections_loses_no_data(p: &Proactor) {
    many_connections_through_a_tiny_pool(p, true);
}

#[proactor::test]
fn idle_connections_hold_no_buffer(p: &Proactor) {
    p.block_on(async {
        let pool = BufPool::new(4, 1024).unwrap();
        let mut pairs = Vec::new();
        let received = Rc::new(RefCell::new(0usize));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (a, b) = UnixStream::pair().unwrap();
            let (pool, received) = (pool.clone(), received.clone());
            tasks.push(proactor::spawn(async move {
                let buf = b.read_pooled(&pool).await.unwrap().unwrap();
                assert_eq!(&buf[..], b"wake");
                *received.borrow_mut() += 1;
            }));
            pairs.push(a);
        }
        // Let every task reach its pending receive.
        proactor::time::sleep(Duration::from_millis(20)).await.unwrap();
        assert_eq!(p.in_flight().in_flight, 100, "100 receives are pending");
        assert_eq!(pool.available(), 4, "no pending receive holds a buffer");
        // Had the pending receives taken buffers up front, 96 of them would have found the pool
        // dry (ENOBUFS) by now.
        assert_eq!(pool.exhausted_count(), 0, "a pending receive took a buffer");
        assert_eq!(*received.borrow(), 0);
        for a in &pairs {
            let (res, _) = a.write(b"wake".as_slice()).await;
            res.unwrap();
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*received.borrow(), 100);
        assert_eq!(pool.available(), 4);
    });
}

#[proactor::test]
fn end_of_stream_and_echo_from_the_pool(p: &Proactor) {
    p.block_on(async {
        let pool = BufPool::builder().buffers(3).buffer_size(8).build().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (res, _) = a.write(b"0123456789abcdef-".as_slice()).await;
        res.unwrap();
        a.shutdown(Shutdown::Write).await.unwrap();
        // Echo straight out of pooled buffers: the buffer is the write's source.
        let mut chunks = 0;
        while let Some(buf) = b.read_pooled(&pool).await.unwrap() {
            assert!(buf.len() <= 8);
            chunks += 1;
            let (res, buf) = b.write_all(buf).await;
            res.unwrap();
            drop(buf);
        }
        assert!(chunks >= 3);
        // End of stream hands no buffer out and keeps none.
        assert!(b.read_pooled(&pool).await.unwrap().is_none());
        assert_eq!(pool.available(), 3);
        let (res, buf) = a.read(Vec::with_capacity(64)).await;
        res.unwrap();
        assert_eq!(buf, b"0123456789abcdef-");
    });
}

/// A buffer given back is the next one a receive gets, or one of the next few: a ring cycling
/// through every buffer of a large pool would hand out a cold one each time (the pool's module
/// docs give the cost). 200 receives, one at a time, from a pool of 1,024: the ring's window
/// (32 buffers) bounds the distinct buffers used; the user-space free list reuses one.
#[proactor::test]
fn a_buffer_given_back_is_used_again_soon(p: &Proactor) {
    p.block_on(async {
        let pool = BufPool::builder().buffers(1024).buffer_size(64).build().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..200u32 {
            let (res, _) = a.write(i.to_le_bytes().to_vec()).await;
            res.unwrap();
            let buf = b.read_pooled(&pool).await.unwrap().expect("data");
            assert_eq!(&buf[..], i.to_le_bytes());
            seen.insert(buf.as_ptr() as usize);
        }
        let most = if pool.is_kernel_ring() { 33 } else { 1 };
        assert!(seen.len() <= most, "{} distinct buffers for 200 receives", seen.len());
        assert_eq!(pool.available(), 1024);
    });
}

/// More receives at once than the ring offers (200 connections whose data is already there,
/// each receive started in the same turn and each holding its buffer until all have one,
/// against a window of 32 in a pool of 1,024): the ring runs dry with buffers held back, offers
/// more, and every receive gets its bytes — none lost, none doubled.
#[proactor::test]
fn a_burst_wider_than_the_ring_gets_every_buffer(p: &Proactor) {
    const CONNS: usize = 200;
    p.block_on(async {
        let pool = BufPool::builder().buffers(1024).buffer_size(256).build().unwrap();
        let holding = Rc::new(RefCell::new(0usize));
        let mut writers = Vec::new();
        let mut tasks = Vec::new();
        for c in 0..CONNS {
            // The data is there before any receive starts: the kernel takes a buffer for each
            // receive as it is submitted, 200 in one submission.
            let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            std::io::Write::write_all(&mut a, &pattern(c, 100)).unwrap();
            let b = UnixStream::from_std(b).unwrap();
            let (pool, holding) = (pool.clone(), holding.clone());
            tasks.push(proactor::spawn(async move {
                let mut got = Vec::new();
                let mut held = Vec::new();
                while got.len() < 100 {
                    let buf = b.read_pooled(&pool).await.unwrap().expect("data");
                    got.extend_from_slice(&buf);
                    held.push(buf);
                }
                *holding.borrow_mut() += 1;
                // Keep the buffers until every connection holds its own (at most 10 s).
                for _ in 0..10_000 {
                    if *holding.borrow() == CONNS {
                        break;
                    }
                    proactor::time::sleep(Duration::from_millis(1)).await.unwrap();
                }
                assert_eq!(*holding.borrow(), CONNS, "a receive never got its buffer");
                assert!(got == pattern(c, 100), "connection {c} got other bytes");
                held.len()
            }));
            writers.push(a);
        }
        let mut held = 0;
        for t in tasks {
            held += t.await.unwrap();
        }
        assert!(held >= CONNS, "every connection held a buffer at once");
        if pool.is_kernel_ring() {
            assert!(pool.exhausted_count() > 0, "the ring never ran dry: the test proves nothing");
        }
        assert_eq!(pool.available(), 1024, "every buffer came back");
    });
}

#[test]
fn pool_needs_a_proactor() {
    let err = BufPool::new(4, 16).unwrap_err();
    assert!(err.to_string().contains("proactor"), "{err}");
}

#[proactor::test]
fn cancelled_pooled_receive_keeps_no_buffer(p: &Proactor) {
    let (pool, buf, _keep) = p.block_on(async {
        let pool = BufPool::new(2, 64).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        // A receive that times out: cancelled, it takes no buffer and keeps none.
        let r = proactor::time::timeout(Duration::from_millis(20), b.read_pooled(&pool)).await;
        assert!(r.is_err());
        assert_eq!(pool.available(), 2);
        let (res, _) = a.write(b"kept".as_slice()).await;
        res.unwrap();
        let buf = b.read_pooled(&pool).await.unwrap().unwrap();
        (pool, buf, (a, b))
    });
    // A buffer handed out outlives the `block_on` that filled it.
    assert_eq!(&buf[..], b"kept");
    assert_eq!(pool.available(), 1);
    drop(buf);
    assert_eq!(pool.available(), 2);
    drop(pool);
}

/// The pool (a kernel ring) and a buffer handed out may outlive the proactor itself.
#[test]
fn pool_dropped_after_its_proactor() {
    let p = common::proactor(proactor::DriverChoice::Uring);
    let (pool, buf) = p.block_on(async {
        let pool = BufPool::new(2, 64).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (res, _) = a.write(b"late".as_slice()).await;
        res.unwrap();
        let buf = b.read_pooled(&pool).await.unwrap().unwrap();
        (pool, buf)
    });
    drop(p);
    assert_eq!(&buf[..], b"late");
    drop(buf);
    drop(pool);
}

/// A kernel ring belongs to one proactor; using it from another is a clear error, not a hang.
#[test]
fn ring_pool_used_on_another_proactor_is_an_error() {
    let first = common::proactor(proactor::DriverChoice::Uring);
    let pool = first.block_on(async { BufPool::new(2, 64).unwrap() });
    assert!(pool.is_kernel_ring());
    for choice in [proactor::DriverChoice::Uring, proactor::DriverChoice::Epoll] {
        let other = common::proactor(choice);
        other.block_on(async {
            let (_a, b) = UnixStream::pair().unwrap();
            let err = b.read_pooled(&pool).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        });
    }
}
