//! The cases a readiness-based emulation gets wrong, run on both drivers so the epoll driver is
//! held to io_uring's results: several operations waiting on one descriptor (epoll allows one
//! registration per fd), descriptors in blocking mode, a descriptor number closed and reused,
//! and timers firing in order.
mod common;
mod core_util;

use core_util::{errno, pipe};
use proactor::Proactor;
use proactor::{op, submit};
use std::cell::RefCell;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Fills the send buffer of a non-blocking socket until it would block; returns the byte count.
fn fill(s: &UnixStream) -> usize {
    s.set_nonblocking(true).unwrap();
    let chunk = [7u8; 65536];
    let mut total = 0;
    loop {
        match (&*s).write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the socket: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    total
}

/// True if `fd` is in non-blocking mode.
fn is_nonblocking(fd: i32) -> bool {
    // SAFETY: F_GETFL takes no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0);
    flags & libc::O_NONBLOCK != 0
}

#[proactor::test]
fn a_receive_and_a_send_wait_on_one_socket_at_once(p: &Proactor) {
    let (a, b) = UnixStream::pair().unwrap();
    let queued = fill(&a);
    let a = Rc::new(a);
    let (sent, received) = p.block_on(async {
        // Both wait on `a`: the send for room, the receive for data.
        let send = proactor::spawn(submit(op::Send::new(a.clone(), vec![1u8; 1000])));
        let recv = proactor::spawn(submit(op::Recv::new(a.clone(), Vec::with_capacity(64))));
        proactor::time::sleep(Duration::from_millis(20)).await.unwrap();
        assert_eq!(proactor::Handle::current().in_flight().in_flight, 2, "both wait");
        // The peer drains everything (room for the send) and answers (data for the receive).
        let peer = std::thread::spawn(move || {
            let mut b = b;
            b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = vec![0u8; queued + 1000];
            b.read_exact(&mut got).unwrap();
            b.write_all(b"pong").unwrap();
            got
        });
        let (sent, _) = send.await.unwrap();
        let (res, buf) = recv.await.unwrap();
        assert_eq!(res.unwrap(), 4);
        let drained = peer.join().unwrap();
        assert!(drained[queued..].iter().all(|&x| x == 1));
        (sent.unwrap(), buf)
    });
    assert_eq!(sent, 1000);
    assert_eq!(received, b"pong");
}

#[proactor::test]
fn several_readers_on_one_pipe_each_get_their_own_bytes(p: &Proactor) {
    let (r, w) = pipe();
    let r = Rc::new(r);
    let got = Rc::new(RefCell::new(Vec::new()));
    for _ in 0..4 {
        let g = got.clone();
        p.start(op::Read::new(r.clone(), Vec::with_capacity(1)), move |(res, buf)| {
            assert_eq!(res.unwrap(), 1);
            g.borrow_mut().push(buf[0]);
        });
    }
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::File::from(w);
        for b in b"abcd" {
            std::thread::sleep(Duration::from_millis(2));
            w.write_all(&[*b]).unwrap();
        }
    });
    p.run().unwrap();
    writer.join().unwrap();
    let mut got = got.borrow().clone();
    got.sort_unstable();
    assert_eq!(got, b"abcd", "every byte read exactly once");
}

#[proactor::test]
fn blocking_mode_descriptors_never_block_the_loop(p: &Proactor) {
    // A pipe and a socket pair in blocking mode, a blocking listener, a blocking socket to
    // connect: each waits while a timer keeps firing, so the loop itself never blocks.
    let (r, w) = pipe();
    assert!(!is_nonblocking(r.as_raw_fd()));
    let (a, b) = UnixStream::pair().unwrap();
    let listener = Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    let ticks = Rc::new(RefCell::new(0u32));
    let t = ticks.clone();
    p.block_on(async move {
        let read = proactor::spawn(submit(op::Read::new(r, Vec::with_capacity(8))));
        let recv = proactor::spawn(submit(op::Recv::new(a, Vec::with_capacity(8))));
        let accept = proactor::spawn(submit(op::Accept::new(listener.clone())));
        for _ in 0..3 {
            proactor::time::sleep(Duration::from_millis(5)).await.unwrap();
            *t.borrow_mut() += 1;
        }
        let helper = std::thread::spawn(move || {
            std::fs::File::from(w).write_all(b"pipe").unwrap();
            (&b).write_all(b"sock").unwrap();
            let c = std::net::TcpStream::connect(addr).unwrap();
            (b, c)
        });
        let (res, buf) = read.await.unwrap();
        assert_eq!((res.unwrap(), &buf[..]), (4, &b"pipe"[..]));
        let (res, buf) = recv.await.unwrap();
        assert_eq!((res.unwrap(), &buf[..]), (4, &b"sock"[..]));
        let (conn, _) = accept.await.unwrap().unwrap();
        let (_b, client) = helper.join().unwrap();
        assert_eq!(
            client.local_addr().unwrap(),
            socket2::SockRef::from(&conn).peer_addr().unwrap().as_socket().unwrap()
        );
        // Connect from a socket created in blocking mode.
        let sock = Rc::new(
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap(),
        );
        submit(op::Connect::new(sock.clone(), addr.into())).await.unwrap();
        let (accepted, _) = submit(op::Accept::new(listener)).await.unwrap();
        let (res, _) = submit(op::Send::new(sock, b"hi".as_slice())).await;
        assert_eq!(res.unwrap(), 2);
        let (res, buf) = submit(op::Recv::new(accepted, Vec::with_capacity(4))).await;
        assert_eq!((res.unwrap(), &buf[..]), (2, &b"hi"[..]));
    });
    assert_eq!(*ticks.borrow(), 3, "timers fired while the operations waited");
}

#[proactor::test]
fn a_descriptor_number_closed_and_reused_is_watched_afresh(p: &Proactor) {
    for round in 0..20 {
        let (a, b) = UnixStream::pair().unwrap();
        let a = Rc::new(a);
        let number = a.as_raw_fd();
        p.block_on(async {
            // Wait on it, give up (cancel), close it: the number is free again.
            let (res, _) = submit(op::Recv::new(a.clone(), Vec::with_capacity(4)))
                .deadline(Duration::from_millis(1))
                .await;
            assert_eq!(errno(&res.unwrap_err()), Some(libc::ETIMEDOUT));
        });
        drop((a, b));
        // A new socket very likely gets the same number; it must still be watched.
        let (c, d) = UnixStream::pair().unwrap();
        let reused = c.as_raw_fd() == number;
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(3));
            (&d).write_all(b"new").unwrap();
            d
        });
        let (res, buf) = p.block_on(submit(op::Recv::new(c, Vec::with_capacity(4))));
        assert_eq!(res.unwrap(), 3, "round {round} (number reused: {reused})");
        assert_eq!(buf, b"new");
        writer.join().unwrap();
    }
}

#[proactor::test]
fn timers_fire_in_deadline_order(p: &Proactor) {
    let order = Rc::new(RefCell::new(Vec::new()));
    let started = Instant::now();
    let delays = [30u64, 5, 20, 0, 15, 25, 10, 5];
    for (i, ms) in delays.iter().enumerate() {
        let o = order.clone();
        p.start(op::Timeout::new(Duration::from_millis(*ms)), move |res| {
            res.unwrap();
            o.borrow_mut().push((i, started.elapsed()));
        });
    }
    // A cancelled timer completes at once with ECANCELED, the others are unaffected.
    let cancelled = Rc::new(RefCell::new(None));
    let c = cancelled.clone();
    let id = p.start(op::Timeout::new(Duration::from_secs(60)), move |res| {
        *c.borrow_mut() = Some(errno(&res.unwrap_err()));
    });
    p.cancel(id);
    p.run().unwrap();
    assert_eq!(*cancelled.borrow(), Some(Some(libc::ECANCELED)));
    let order = order.borrow();
    assert_eq!(order.len(), delays.len());
    for w in order.windows(2) {
        assert!(delays[w[0].0] <= delays[w[1].0], "out of order: {order:?}");
    }
    for (i, at) in order.iter() {
        assert!(*at >= Duration::from_millis(delays[*i]), "timer {i} fired early at {at:?}");
    }
}

#[proactor::test]
fn operations_on_a_bad_descriptor_fail_like_the_kernel_says(p: &Proactor) {
    // A number no file can have (beyond the descriptor limit). A closed pipe's number was
    // used before, but other tests of this process could reopen it meanwhile.
    let bad: std::os::fd::RawFd = 1 << 24;
    let (res, buf) = p.block_on(submit(op::Read::new(bad, Vec::with_capacity(4))));
    assert_eq!(errno(&res.unwrap_err()), Some(libc::EBADF));
    assert_eq!(buf.capacity(), 4);
    let (res, _) = p.block_on(submit(op::Recv::new(bad, Vec::with_capacity(4))));
    assert_eq!(errno(&res.unwrap_err()), Some(libc::EBADF));
    // A receive on something that is not a socket.
    let f: OwnedFd = tempfile::tempfile().unwrap().into();
    let (res, _) = p.block_on(submit(op::Recv::new(f, Vec::with_capacity(4))));
    assert_eq!(errno(&res.unwrap_err()), Some(libc::ENOTSOCK));
}

/// The mode of descriptors the user passes in: the epoll driver may only switch accept and
/// connect sockets to non-blocking mode (they have no per-call flag); reads, writes, receives
/// and sends leave the mode alone.
#[test]
fn epoll_leaves_the_mode_of_read_and_write_descriptors_alone() {
    let p = common::proactor(proactor::DriverChoice::Epoll);
    let (r, w) = pipe();
    let (a, b) = UnixStream::pair().unwrap();
    let (r, a) = (Rc::new(r), Rc::new(a));
    p.block_on(async {
        let read = proactor::spawn(submit(op::Read::new(r.clone(), Vec::with_capacity(4))));
        let recv = proactor::spawn(submit(op::Recv::new(a.clone(), Vec::with_capacity(4))));
        proactor::time::sleep(Duration::from_millis(5)).await.unwrap();
        std::fs::File::from(w).write_all(b"x").unwrap();
        (&b).write_all(b"y").unwrap();
        read.await.unwrap().0.unwrap();
        recv.await.unwrap().0.unwrap();
    });
    assert!(!is_nonblocking(r.as_raw_fd()));
    assert!(!is_nonblocking(a.as_raw_fd()));
}
