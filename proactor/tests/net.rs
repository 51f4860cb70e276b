//! Sockets on both drivers: TCP, UDP and Unix round trips, split halves, connect timeouts,
//! and accepting through descriptor exhaustion.
mod common;

use proactor::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use proactor::Proactor;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

#[proactor::test]
fn tcp_round_trip(p: &Proactor) {
    p.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(server.peer_addr().unwrap(), client.local_addr().unwrap());
        assert_eq!(client.peer_addr().unwrap(), addr);

        let (res, _) = client.write_all(b"hello proactor".to_vec()).await;
        res.unwrap();
        let (res, buf) = server.read_exact(Vec::with_capacity(14)).await;
        res.unwrap();
        assert_eq!(buf, b"hello proactor");

        // Half-close: the server reads end-of-stream but can still answer.
        client.shutdown(Shutdown::Write).await.unwrap();
        let (res, _) = server.read(Vec::with_capacity(8)).await;
        assert_eq!(res.unwrap(), 0);
        let (res, _) = server.write(b"bye".as_slice()).await;
        assert_eq!(res.unwrap(), 3);
        let (res, buf) = client.read(Vec::with_capacity(8)).await;
        assert_eq!(res.unwrap(), 3);
        assert_eq!(buf, b"bye");
    });
}

#[proactor::test]
fn tcp_options(p: &Proactor) {
    p.block_on(async {
        let listener =
            TcpListener::builder().backlog(16).reuse_port(true).bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A second listener on the same port is allowed with SO_REUSEPORT.
        let second = TcpListener::builder().reuse_port(true).bind(addr).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        let client = TcpStream::connect(addr).await.unwrap();
        client.set_nodelay(true).unwrap();
        assert!(client.nodelay().unwrap());
        client.set_nodelay(false).unwrap();
        assert!(!client.nodelay().unwrap());
        client.set_keepalive(Some(Duration::from_secs(30))).unwrap();
        assert!(client.keepalive().unwrap());
        client.set_keepalive(None).unwrap();
        assert!(!client.keepalive().unwrap());
        // Without SO_REUSEPORT a second bind to a used port fails with a clear error.
        let err = TcpListener::builder().reuse_port(false).bind(addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    });
}

#[proactor::test]
fn connect_refused_is_clear(p: &Proactor) {
    p.block_on(async {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    });
}

#[proactor::test]
fn split_halves_work_concurrently(p: &Proactor) {
    p.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Echo server: one task reads, another writes, through the split halves.
        let (rd, mut wr) = server.into_split();
        let echo = proactor::spawn(async move { rd.copy_to(&mut wr).await.unwrap() });
        // The client writes 1 MiB while reading the echo concurrently.
        let payload: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let (crd, cwr) = client.into_split();
        let expect = payload.clone();
        let reader = proactor::spawn(async move {
            let (res, buf) = crd.read_exact(Vec::with_capacity(expect.len())).await;
            res.unwrap();
            assert!(buf == expect);
        });
        let (res, _) = cwr.write_all(payload).await;
        res.unwrap();
        reader.await.unwrap();
        cwr.shutdown(Shutdown::Write).await.unwrap();
        assert_eq!(echo.await.unwrap(), 1 << 20);
    });
}

#[proactor::test]
fn udp_round_trip(p: &Proactor) {
    p.block_on(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        for i in 0..20u8 {
            let msg = vec![i; 1 + i as usize * 50];
            let (res, _) = a.send_to(msg.clone(), b_addr).await;
            assert_eq!(res.unwrap(), msg.len());
            let (res, buf) = b.recv_from(Vec::with_capacity(2048)).await;
            let (n, from) = res.unwrap();
            assert_eq!(from, a_addr);
            assert_eq!(n, msg.len());
            assert_eq!(buf, msg);
        }
        // A datagram longer than the buffer is truncated, never overflows it.
        let (res, _) = a.send_to(vec![9u8; 100], b_addr).await;
        res.unwrap();
        let (res, buf) = b.recv_from(Vec::with_capacity(10)).await;
        assert_eq!(res.unwrap().0, buf.len());
        assert!(buf.len() <= 10 && buf.iter().all(|&x| x == 9));
        // Connected: send/recv without addresses.
        a.connect(b_addr).await.unwrap();
        b.connect(a_addr).await.unwrap();
        assert_eq!(a.peer_addr().unwrap(), b_addr);
        let (res, _) = a.send(b"connected".as_slice()).await;
        res.unwrap();
        let (res, buf) = b.recv(Vec::with_capacity(64)).await;
        assert_eq!(res.unwrap(), 9);
        assert_eq!(buf, b"connected");
    });
}

#[proactor::test]
fn unix_round_trip(p: &Proactor) {
    p.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        let client = UnixStream::connect(&path).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let expect = data.clone();
        let sender = proactor::spawn(async move {
            let (res, _) = client.write_all(data).await;
            res.unwrap();
            client.shutdown(Shutdown::Write).await.unwrap();
            client
        });
        let mut got = Vec::new();
        loop {
            let (res, buf) = server.read(Vec::with_capacity(8192)).await;
            if res.unwrap() == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        assert!(got == expect);
        drop(sender.await.unwrap());
        // A missing socket path is a clear error naming the path.
        let err = UnixStream::connect(dir.path().join("missing")).await.err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing"), "{err}");
        // Pairs work too.
        let (x, y) = UnixStream::pair().unwrap();
        let (res, _) = x.write(b"pair".as_slice()).await;
        res.unwrap();
        let (res, buf) = y.read(Vec::with_capacity(4)).await;
        assert_eq!(res.unwrap(), 4);
        assert_eq!(buf, b"pair");
    });
}

#[proactor::test]
fn unix_incoming_yields_each_connection_in_order(p: &Proactor) {
    p.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut incoming = listener.incoming();
        for i in 0..50u8 {
            let client = UnixStream::connect(&path).await.unwrap();
            let (res, _) = client.write_all(vec![i; 3]).await;
            res.unwrap();
            let fd = incoming.next().await.expect("not cancelled").unwrap();
            let server = UnixStream::from_std(fd.into()).unwrap();
            let (res, buf) = server.read_exact(vec![0; 3]).await;
            res.unwrap();
            assert_eq!(buf, [i; 3], "connection {i} came out of order");
        }
        assert!(incoming.requests() <= 2, "{} accept requests for 50", incoming.requests());
    });
}

#[proactor::test]
fn connect_timeout_when_the_backlog_is_full(p: &Proactor) {
    p.block_on(async {
        // A listener with backlog 0 that never accepts: once its queue holds one connection the
        // kernel drops further SYNs, so a connect can only time out.
        let listener = TcpListener::builder().backlog(0).bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&addr.into());
            fillers.push(s);
        }
        proactor::time::sleep(Duration::from_millis(100)).await.unwrap();
        let started = std::time::Instant::now();
        let err = TcpStream::connect_timeout(addr, Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(p.in_flight().in_flight, 0, "the timed-out connect was cleaned up");
        drop(listener);
    });
}

/// Set in the environment of the re-executed test binary: run the EMFILE scenario on this driver.
const EMFILE_CHILD: &str = "PROACTOR_TEST_EMFILE_CHILD";

fn run_emfile_child(driver: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["emfile_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(EMFILE_CHILD, driver)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child test did not run:\n{stdout}");
    for line in stdout.lines().filter_map(|l| l.split_once("emfile:").map(|x| x.1)) {
        println!("{driver} emfile:{line}");
    }
}

#[proactor::test]
fn accept_recovers_from_emfile(driver: &str) {
    run_emfile_child(driver);
}

/// The EMFILE scenario; does nothing unless run as the child of the test above (it lowers
/// RLIMIT_NOFILE, which must not affect the other tests of this binary).
#[test]
fn emfile_child() {
    let Ok(driver) = std::env::var(EMFILE_CHILD) else { return };
    let choice = if driver == "uring" {
        proactor::DriverChoice::Uring
    } else {
        proactor::DriverChoice::Epoll
    };
    let p = common::proactor(choice);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Three clients connect (the kernel completes the handshakes; they wait in the queue).
    let clients: Vec<std::net::TcpStream> =
        (0..3).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    // Lower the limit just above what is open now, then use up the rest.
    let open = common::open_fds() as u64;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = open + 8;
    // SAFETY: setrlimit reads one rlimit struct.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    let mut fillers = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => fillers.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
                break;
            }
        }
    }
    p.block_on(async {
        let listener = Rc::new(listener);
        let l = listener.clone();
        let acceptor = proactor::spawn(async move {
            let mut accepted = Vec::new();
            for _ in 0..3 {
                accepted.push(l.accept().await.unwrap().0);
            }
            accepted
        });
        proactor::time::sleep(Duration::from_millis(400)).await.unwrap();
        let stats = listener.accept_stats();
        assert!(stats.resource_failures > 0, "accept never hit EMFILE: {stats:?}");
        // Back-off, not a spin: 1 ms doubling to 100 ms makes about a dozen tries in 400 ms.
        assert!(stats.resource_failures <= 30, "accept spun: {stats:?}");
        assert_eq!(stats.bursts, 1);
        drop(fillers);
        let accepted = proactor::time::timeout(Duration::from_secs(5), acceptor)
            .await
            .expect("accept recovered once descriptors were free")
            .unwrap();
        assert_eq!(accepted.len(), 3);
        for (i, (server, mut client)) in accepted.iter().zip(clients).enumerate() {
            use std::io::Read;
            let (res, _) = server.write(vec![i as u8; 3]).await;
            res.unwrap();
            let mut got = [0u8; 3];
            client.read_exact(&mut got).unwrap();
            assert_eq!(got, [i as u8; 3]);
        }
        println!("emfile: {:?}", listener.accept_stats());
    });
}

#[proactor::test]
fn vectored_io_and_peek(p: &Proactor) {
    p.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let parts = vec![b"abc".to_vec(), b"".to_vec(), b"defgh".to_vec()];
        let (res, parts) = client.writev(parts).await;
        assert_eq!(res.unwrap(), 8);
        assert_eq!(parts[2], b"defgh", "the buffers come back");
        // Peek leaves the bytes queued.
        let mut peeked = 0;
        while peeked < 8 {
            let (res, buf) = server.peek(Vec::with_capacity(8)).await;
            peeked = res.unwrap();
            assert_eq!(&buf[..], &b"abcdefgh"[..peeked]);
        }
        let (res, bufs) = server.readv(vec![Vec::with_capacity(2), Vec::with_capacity(10)]).await;
        assert_eq!(res.unwrap(), 8);
        assert_eq!(bufs[0], b"ab");
        assert_eq!(bufs[1], b"cdefgh");
        // send/recv with flags.
        let (res, _) = client.send(b"12".as_slice(), libc::MSG_DONTWAIT).await;
        assert_eq!(res.unwrap(), 2);
        let (res, buf) = server.recv(Vec::with_capacity(4), 0).await;
        assert_eq!(res.unwrap(), 2);
        assert_eq!(buf, b"12");
    });
}

// MSG_WAITALL waits for the whole buffer on both drivers (the epoll emulation once returned the
// first chunk), and at end of stream returns what did arrive.
#[proactor::test]
fn recv_waitall_waits_for_all(p: &Proactor) {
    p.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let writer = proactor::spawn(async move {
            for chunk in [&b"abcd"[..], b"efgh", b"ijkl", b"mn"] {
                let (res, _) = client.write(chunk).await;
                assert_eq!(res.unwrap(), chunk.len());
                proactor::time::sleep(Duration::from_millis(20)).await.unwrap();
            }
            client.shutdown(Shutdown::Write).await.unwrap();
        });
        let (res, buf) = server.recv(Vec::with_capacity(12), libc::MSG_WAITALL).await;
        assert_eq!(res.unwrap(), 12);
        assert_eq!(buf, b"abcdefghijkl");
        // Only 2 bytes come before end of stream: they are returned, not lost.
        let (res, buf) = server.recv(Vec::with_capacity(12), libc::MSG_WAITALL).await;
        assert_eq!(res.unwrap(), 2);
        assert_eq!(buf, b"mn");
        writer.await.unwrap();
    });
}

// On a datagram socket MSG_WAITALL does not merge datagrams: each receive is one datagram, on
// both drivers (the epoll emulation's wait-for-the-rest applies to byte streams only).
#[proactor::test]
fn recv_waitall_on_udp_is_one_datagram(p: &Proactor) {
    p.block_on(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        for d in [&b"ab"[..], b"cd"] {
            let (res, _) = a.send_to(d, to).await;
            assert_eq!(res.unwrap(), 2);
        }
        // Both datagrams are queued; WAITALL still takes one at a time.
        for want in [&b"ab"[..], b"cd"] {
            let op = proactor::op::Recv::new(b.as_raw_fd(), Vec::with_capacity(16));
            let recv = proactor::submit(op.flags(libc::MSG_WAITALL));
            let (res, buf) = proactor::time::timeout(Duration::from_secs(10), recv)
                .await
                .expect("one datagram is a whole receive; no waiting for more");
            assert_eq!(res.unwrap(), 2);
            assert_eq!(buf, want);
        }
    });
}

// A receive that waits for data before its first try (`Recv::poll_first`; on epoll
// `Emulation::ReadableFirstWait`, no EAGAIN try): data there before it is submitted is taken at
// once, data that comes later wakes it, and end of stream ends it — both drivers.
#[proactor::test]
fn a_receive_polling_first_takes_data_there_before_and_after(p: &Proactor) {
    use proactor::op::Recv;
    use std::io::Write;
    use std::os::fd::OwnedFd;
    p.block_on(async {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let fd = Rc::new(OwnedFd::from(b));
        a.write_all(b"early").unwrap();
        let (res, buf) = proactor::submit(Recv::new(fd.clone(), Vec::with_capacity(64)).poll_first(true)).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(buf, b"early");
        let recv = proactor::spawn({
            let fd = fd.clone();
            async move { proactor::submit(Recv::new(fd, Vec::with_capacity(64)).poll_first(true)).await }
        });
        proactor::time::sleep(Duration::from_millis(20)).await.unwrap();
        a.write_all(b"late").unwrap();
        let (res, buf) = recv.await.unwrap();
        assert_eq!(res.unwrap(), 4);
        assert_eq!(buf, b"late");
        drop(a);
        let (res, _) = proactor::submit(Recv::new(fd, Vec::with_capacity(64)).poll_first(true)).await;
        assert_eq!(res.unwrap(), 0, "end of stream");
    });
}
