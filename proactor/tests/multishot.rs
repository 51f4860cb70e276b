//! Multishot operations on both drivers: one submission, a completion per item, a stream or
//! a handler per completion; cancel and drop lose no completion and no buffer.

mod common;

use futures_core::Stream;
use proactor::buf::BufPool;
use proactor::net::{TcpListener, TcpStream, UnixStream};
use proactor::op::{AcceptMulti, RecvMulti};
use proactor::runtime::Multi;
use proactor::{submit, submit_multi, Proactor};
use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// The tests run one at a time: some count this process's descriptors (and every proactor
/// holds a few).
static FDS: Mutex<()> = Mutex::new(());

fn counting_fds() -> std::sync::MutexGuard<'static, ()> {
    FDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open sockets of this process (the proactors of tests starting meanwhile hold none).
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}
use std::rc::Rc;
use std::time::Duration;

fn next<S: Stream + Unpin>(s: &mut S) -> impl std::future::Future<Output = Option<S::Item>> + '_ {
    std::future::poll_fn(move |cx| std::pin::Pin::new(&mut *s).poll_next(cx))
}

/// Turns the loop until every operation is over: a dropped stream's receive keeps its socket
/// open until the kernel hands the operation back.
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

fn pattern(conn: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ conn.wrapping_mul(7)) as u8).collect()
}

#[proactor::test]
fn multishot_accept_of_1000_connections(p: &Proactor) {
    const N: usize = 1000;
    let _serial = counting_fds();
    let fds_before = open_sockets();
    p.block_on(async {
        let listener = TcpListener::builder().backlog(N as u32).bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = std::thread::spawn(move || {
            let mut conns = Vec::new();
            for i in 0..N {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(&(i as u32).to_le_bytes()).unwrap();
                conns.push(c);
            }
            conns
        });
        let mut accepted = submit_multi(AcceptMulti::new(listener.as_raw_fd()));
        let mut seen = vec![false; N];
        for _ in 0..N {
            let fd: OwnedFd = next(&mut accepted).await.expect("the stream goes on").unwrap();
            let conn = TcpStream::from_std(std::net::TcpStream::from(fd)).unwrap();
            let (res, buf) = proactor::io::read_exact(&mut &conn, vec![0u8; 4]).await;
            res.unwrap();
            let i = u32::from_le_bytes(buf.try_into().unwrap()) as usize;
            assert!(!seen[i], "connection {i} accepted twice");
            seen[i] = true;
        }
        assert!(seen.iter().all(|s| *s));
        accepted.cancel();
        assert!(next(&mut accepted).await.is_none(), "a cancelled stream ends");
        assert!(accepted.is_ended());
        drop(clients.join().unwrap());
        settle().await;
    });
    assert_eq!(open_sockets(), fds_before, "every accepted descriptor closed");
}

#[proactor::test]
fn a_handler_is_called_per_accepted_connection_then_once_at_the_end(p: &Proactor) {
    let _serial = counting_fds();
    let h = p.handle();
    let listener = p.block_on(async { TcpListener::bind("127.0.0.1:0") }).unwrap();
    let addr = listener.local_addr().unwrap();
    let clients: Vec<_> = (0..5).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    let (items, ends) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let id = Rc::new(Cell::new(None));
    let (i2, e2, id2, h2) = (items.clone(), ends.clone(), id.clone(), h.clone());
    let started = h.start_multi(AcceptMulti::new(listener.as_raw_fd()), move |event| match event {
        Multi::Item(conn) => {
            conn.unwrap();
            i2.set(i2.get() + 1);
            if i2.get() == 5 {
                h2.cancel(id2.get().unwrap());
            }
        }
        Multi::End { restartable, .. } => {
            assert!(!restartable, "a cancelled accept does not go on");
            e2.set(e2.get() + 1);
        }
        _ => unreachable!(),
    });
    id.set(Some(started));
    p.run().unwrap();
    assert_eq!((items.get(), ends.get()), (5, 1));
    drop(clients);
}

#[proactor::test]
fn submit_and_start_refuse_a_multishot_operation(p: &Proactor) {
    let _serial = counting_fds();
    let listener = p.block_on(async { TcpListener::bind("127.0.0.1:0") }).unwrap();
    let err = p.block_on(submit(AcceptMulti::new(listener.as_raw_fd()))).unwrap_err();
    assert_eq!(proactor::op::raw_os_error(&err), Some(libc::EINVAL), "{err}");
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    p.handle().start(AcceptMulti::new(listener.as_raw_fd()), move |res| {
        *g.borrow_mut() = Some(proactor::op::raw_os_error(&res.unwrap_err()));
    });
    p.run().unwrap();
    assert_eq!(*got.borrow(), Some(Some(libc::EINVAL)));
}

/// Every connection sends its own pattern in pieces; the server echoes each chunk it receives
/// from a shared pool of `buffers` buffers (consumed in part with `incremental`, several per
/// completion with `bundles`, where the kernel offers them); the client checks every byte, in
/// order.
fn echo_through_a_small_pool(
    p: &Proactor,
    conns: usize,
    buffers: u16,
    per_conn: usize,
    (incremental, bundles): (bool, bool),
) {
    let _serial = counting_fds();
    let fds_before = open_sockets();
    let exhausted = p.block_on(async move {
        let pool = BufPool::builder()
            .buffers(buffers)
            .buffer_size(1024)
            .incremental(incremental)
            .bundles(bundles)
            .build()
            .unwrap();
        if pool.is_kernel_ring() {
            // Where the kernel has them, the options must not be lost on the way.
            let probe = proactor::driver::probe_kernel().unwrap();
            let cap = |name: &str| probe.capabilities.iter().any(|(n, ok)| *n == name && *ok);
            // Asked for both, a pool consumes incrementally and takes no bundles.
            let inc = incremental && cap("buffer ring INC");
            let expected = (inc, bundles && !inc && cap("recv bundles"));
            assert_eq!((pool.is_incremental(), pool.has_bundles()), expected);
        }
        let listener = TcpListener::builder().backlog(conns as u32).bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    let mine: Vec<usize> = (0..conns).filter(|c| c % 4 == t).collect();
                    let mut socks: Vec<_> = mine
                        .iter()
                        .map(|_| {
                            let s = std::net::TcpStream::connect(addr).unwrap();
                            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                            s
                        })
                        .collect();
                    for (s, c) in socks.iter_mut().zip(&mine) {
                        for piece in pattern(*c, per_conn).chunks(700) {
                            s.write_all(piece).unwrap();
                        }
                    }
                    for (s, c) in socks.iter_mut().zip(&mine) {
                        let mut back = vec![0u8; per_conn];
                        s.read_exact(&mut back).unwrap();
                        assert!(back == pattern(*c, per_conn), "connection {c}: bytes differ");
                    }
                })
            })
            .collect();
        let mut tasks = Vec::new();
        let mut accepted = submit_multi(AcceptMulti::new(listener.as_raw_fd()));
        for _ in 0..conns {
            let fd = next(&mut accepted).await.unwrap().unwrap();
            let conn = TcpStream::from_std(std::net::TcpStream::from(fd)).unwrap();
            let pool = pool.clone();
            tasks.push(proactor::spawn(async move {
                let mut chunks = conn.recv_stream(&pool);
                let mut echoed = 0;
                while echoed < per_conn {
                    let buf = next(&mut chunks).await.expect("data before the end").unwrap();
                    echoed += buf.len();
                    let (res, _) = proactor::io::write_all(&mut &conn, buf).await;
                    res.unwrap();
                }
                assert_eq!(echoed, per_conn);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for c in clients {
            c.join().unwrap();
        }
        drop(accepted);
        settle().await;
        assert_eq!(pool.available(), pool.capacity(), "every buffer back in the pool");
        pool.exhausted_count()
    });
    assert!(exhausted > 0, "the pool ran dry at least once (ENOBUFS exercised)");
    assert_eq!(open_sockets(), fds_before);
}

#[proactor::test]
fn multishot_receive_on_1000_connections_with_a_ring_of_16(p: &Proactor) {
    echo_through_a_small_pool(p, 1000, 16, 4096, (false, false));
}

#[proactor::test]
fn multishot_receive_on_1000_connections_with_a_ring_of_16_incremental(p: &Proactor) {
    echo_through_a_small_pool(p, 1000, 16, 4096, (true, false));
}

#[proactor::test]
fn multishot_receive_on_1000_connections_with_a_ring_of_16_with_bundles(p: &Proactor) {
    echo_through_a_small_pool(p, 1000, 16, 4096, (false, true));
}

#[proactor::test]
fn multishot_receive_on_1000_connections_with_a_ring_of_16_inc_and_bundles(p: &Proactor) {
    echo_through_a_small_pool(p, 1000, 16, 4096, (true, true));
}

#[proactor::test]
fn a_dropped_receive_stream_gives_every_queued_buffer_back(p: &Proactor) {
    let _serial = counting_fds();
    p.block_on(async {
        let pool = BufPool::new(8, 64).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let mut chunks = b.recv_stream(&pool);
        // Several chunks, each its own completion.
        for i in 0..6u8 {
            let (res, _) = a.write(vec![i; 64]).await;
            res.unwrap();
            proactor::time::sleep(Duration::from_millis(2)).await.unwrap();
        }
        let first = next(&mut chunks).await.unwrap().unwrap();
        assert_eq!(first[0], 0);
        drop(first);
        // More items are queued in the operation's block, or in flight: drop them all.
        drop(chunks);
        for _ in 0..5 {
            proactor::time::sleep(Duration::from_millis(2)).await.unwrap();
        }
        assert_eq!(pool.available(), pool.capacity(), "each buffer back exactly once");
    });
}

#[proactor::test]
fn a_cancelled_receive_stream_yields_what_completed_and_loses_nothing(p: &Proactor) {
    let _serial = counting_fds();
    p.block_on(async {
        let pool = BufPool::new(8, 100).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let sent: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let sent = sent.clone();
            proactor::spawn(async move {
                for piece in sent.chunks(300) {
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
        while let Some(item) = next(&mut ops).await {
            match item {
                Ok(bufs) => got.extend_from_slice(&bufs.to_vec()),
                Err(e) => panic!("{e}"),
            }
            if got.len() >= 900 && !cancelled {
                ops.cancel();
                cancelled = true;
            }
            if ops.is_ended() {
                break;
            }
        }
        assert!(cancelled, "the stream must not end before the cancel");
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
        assert!(got == sent, "got {} of {} bytes, or out of order", got.len(), sent.len());
        assert_eq!(pool.available(), pool.capacity());
    });
}

#[test]
fn a_user_space_pool_on_io_uring_falls_back_to_one_receive_at_a_time() {
    let _serial = counting_fds();
    let p = common::proactor(proactor::DriverChoice::Uring);
    p.block_on(async {
        let pool = BufPool::builder().buffers(4).buffer_size(16).user_space(true).build().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let mut chunks = b.recv_stream(&pool);
        assert!(!chunks.is_multishot());
        let (res, _) = a.write(vec![7u8; 100]).await;
        res.unwrap();
        drop(a);
        let mut total = 0;
        while let Some(buf) = next(&mut chunks).await {
            let buf = buf.unwrap();
            assert!(buf.iter().all(|b| *b == 7));
            total += buf.len();
        }
        assert_eq!(total, 100);
        let err = next(&mut submit_multi(RecvMulti::new(b.as_raw_fd(), &pool))).await;
        assert_eq!(err.unwrap().unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    });
}

#[proactor::test]
fn a_stream_nobody_reads_holds_few_buffers_and_loses_no_byte(p: &Proactor) {
    let _serial = counting_fds();
    p.block_on(async {
        let pool = BufPool::new(64, 256).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let sent: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 253) as u8).collect();
        let writer = {
            let sent = sent.clone();
            proactor::spawn(async move {
                for piece in sent.chunks(256) {
                    let (res, _) = a.write(piece.to_vec()).await;
                    res.unwrap();
                }
            })
        };
        let mut chunks = b.recv_stream(&pool).max_queued(4);
        let mut got = next(&mut chunks).await.unwrap().unwrap().to_vec();
        // Not taking anything for a while: the receive pauses instead of draining the pool.
        for _ in 0..10 {
            proactor::time::sleep(Duration::from_millis(3)).await.unwrap();
        }
        let held = pool.capacity() - pool.available();
        assert!(held <= 4 + 8, "{held} buffers held by a stream nobody reads");
        while got.len() < sent.len() {
            got.extend_from_slice(&next(&mut chunks).await.expect("more data").unwrap());
        }
        writer.await.unwrap();
        assert!(got == sent, "every byte, in order");
        assert!(next(&mut chunks).await.is_none(), "then the end of the stream");
        drop(chunks);
        assert_eq!(pool.available(), pool.capacity());
    });
}

#[test]
fn the_kernel_probe_agrees_with_what_the_driver_can_do() {
    let _serial = counting_fds();
    let probe = proactor::driver::probe_kernel().unwrap();
    let cap = |name: &str| probe.capabilities.iter().find(|(n, _)| *n == name).unwrap().1;
    let p = common::proactor(proactor::DriverChoice::Uring);
    let (accepted, received, ring) = p.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut accept = submit_multi(AcceptMulti::new(listener.as_raw_fd()));
        let accepted = matches!(accept.next().await, Some(Ok(_))) && !accept.is_ended();
        let pool = BufPool::new(2, 64).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (res, _) = a.write(b"x".as_slice()).await;
        res.unwrap();
        let mut recv = submit_multi(RecvMulti::new(b.as_raw_fd(), &pool));
        let received = matches!(recv.next().await, Some(Ok(buf)) if buf.to_vec() == b"x")
            && !recv.is_ended()
            && pool.is_kernel_ring();
        (accepted, received, pool.is_kernel_ring())
    });
    assert_eq!(cap("multishot accept"), accepted, "probe vs a real multishot accept");
    assert_eq!(cap("multishot recv"), received, "probe vs a real multishot receive");
    assert_eq!(cap("buffer ring"), ring, "probe vs the pool's own registration");
}

#[proactor::test]
fn a_listener_s_incoming_connections_then_a_cancel_hands_over_the_rest(p: &Proactor) {
    let _serial = counting_fds();
    p.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> =
            (0..50).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        let mut incoming = listener.incoming();
        assert!(incoming.is_multishot());
        let mut got = 0;
        while got < 20 {
            let conn = TcpStream::from_std(incoming.next().await.unwrap().unwrap().into()).unwrap();
            assert!(conn.peer_addr().is_ok());
            got += 1;
        }
        incoming.cancel();
        // What the kernel accepted before the cancel still comes out; then the end.
        while let Some(res) = incoming.next().await {
            res.unwrap();
            got += 1;
        }
        assert!((20..=50).contains(&got), "{got}");
        // The rest waits in the backlog, untouched by the cancelled accept.
        let mut rest = 0;
        while got + rest < 50 {
            listener.accept().await.unwrap();
            rest += 1;
        }
        drop(clients);
        settle().await;
    });
}

#[proactor::test]
fn incoming_one_at_a_time_takes_the_same_connections_in_the_same_order(p: &Proactor) {
    // The fallback where the kernel has no multishot accept: one request per connection, the
    // same sequence as the multishot stream's, and what is not asked for stays in the backlog.
    const CLIENTS: u32 = 100;
    let _serial = counting_fds();
    p.block_on(async {
        let mut orders = Vec::new();
        for multishot in [true, false] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let clients: Vec<_> = (0..CLIENTS)
                .map(|i| {
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    c.write_all(&i.to_le_bytes()).unwrap();
                    c
                })
                .collect();
            let fd = std::sync::Arc::new(listener);
            let mut incoming = if multishot {
                proactor::net::Incoming::new(fd.clone())
            } else {
                proactor::net::Incoming::one_at_a_time(fd.clone())
            };
            assert_eq!(incoming.is_multishot(), multishot);
            let mut order = Vec::new();
            for _ in 0..CLIENTS - 10 {
                let conn = TcpStream::from_std(incoming.next().await.unwrap().unwrap().into());
                let (res, buf) = conn.unwrap().read_exact(Vec::with_capacity(4)).await;
                res.unwrap();
                order.push(u32::from_le_bytes(buf[..4].try_into().unwrap()));
            }
            if multishot {
                assert!(incoming.requests() <= 2, "{} requests", incoming.requests());
            } else {
                assert_eq!(incoming.requests(), u64::from(CLIENTS - 10));
                // Nothing asked for the last ten: they are still in the backlog.
                incoming.cancel();
                assert!(incoming.next().await.is_none());
                drop(incoming);
                let fd = std::sync::Arc::try_unwrap(fd).expect("the stream let go of the listener");
                let rest = TcpListener::from_std(fd).unwrap();
                for _ in 0..10 {
                    rest.accept().await.unwrap();
                }
            }
            drop(clients);
            orders.push(order);
        }
        assert_eq!(orders[0], (0..CLIENTS - 10).collect::<Vec<_>>(), "in connection order");
        assert_eq!(orders[0], orders[1]);
        settle().await;
    });
}
