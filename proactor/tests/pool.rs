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
