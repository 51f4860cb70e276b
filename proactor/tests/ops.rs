//! Every operation on real descriptors (pipes, socketpairs, temp files, loopback TCP), through
//! both front ends (futures and completion handlers), on both drivers.
mod common;
mod core_util;

use core_util::{errno, pipe, run_op, Front, FRONTS};
use proactor::{op, submit, Proactor};
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[proactor::test]
fn nop(p: &Proactor) {
    for front in FRONTS {
        run_op(p, front, op::Nop).unwrap();
    }
}

#[proactor::test]
fn pipe_read_write_short_read_and_eof(p: &Proactor) {
    for front in FRONTS {
        let (r, w) = pipe();
        let (r, w) = (Rc::new(r), Rc::new(w));
        let (res, buf) = run_op(p, front, op::Write::new(w.clone(), b"hello".to_vec()));
        assert_eq!(res.unwrap(), 5, "{front:?}");
        assert_eq!(buf, b"hello", "the buffer comes back unchanged");
        // A read larger than the data: a short read with the exact count.
        let (res, buf) = run_op(p, front, op::Read::new(r.clone(), Vec::with_capacity(64)));
        assert_eq!(res.unwrap(), 5, "{front:?}");
        assert_eq!(buf, b"hello");
        assert_eq!(buf.capacity(), 64, "the buffer keeps its capacity");
        // A read smaller than the data: exactly the capacity, the rest stays in the pipe.
        let (res, _) = run_op(p, front, op::Write::new(w.clone(), b"0123456789".as_slice()));
        assert_eq!(res.unwrap(), 10);
        let (res, buf) = run_op(p, front, op::Read::new(r.clone(), Vec::with_capacity(4)));
        assert_eq!(res.unwrap(), 4);
        assert_eq!(buf, b"0123");
        let (res, buf) =
            run_op(p, front, op::Read::new(r.clone(), vec![0u8; 0].into_boxed_slice()));
        assert_eq!(res.unwrap(), 0, "a zero-length read returns 0 at once, as read(2) does");
        assert!(buf.is_empty());
        let (res, buf) = run_op(p, front, op::Read::new(r.clone(), Vec::with_capacity(16)));
        assert_eq!(res.unwrap(), 6);
        assert_eq!(buf, b"456789");
        // End of file: the writer closed.
        drop(w);
        let (res, buf) = run_op(p, front, op::Read::new(r.clone(), Vec::with_capacity(16)));
        assert_eq!(res.unwrap(), 0, "EOF is Ok(0)");
        assert!(buf.is_empty());
    }
}

#[proactor::test]
fn empty_write_and_zero_length_buffers_match_the_kernel(p: &Proactor) {
    for front in FRONTS {
        let (r, w) = pipe();
        // The oracle: what the plain system calls return.
        // SAFETY: zero-length calls with valid (dangling-but-unused) pointers.
        let kernel_write = unsafe { libc::write(w.as_raw_fd(), [0u8; 1].as_ptr().cast(), 0) };
        assert_eq!(kernel_write, 0);
        let (res, buf) = run_op(p, front, op::Write::new(w, Vec::new()));
        assert_eq!(res.unwrap(), kernel_write as usize, "empty write on {front:?}");
        assert!(buf.is_empty());
        let (a, b) = UnixStream::pair().unwrap();
        let a = Rc::new(a);
        let (res, _) = run_op(p, front, op::Send::new(a.clone(), b"".as_slice()));
        assert_eq!(res.unwrap(), 0, "an empty send sends nothing and succeeds");
        b.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 4];
        assert_eq!((&b).read(&mut probe).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
        // recv(2) into zero bytes waits for data like any receive on a stream socket (the
        // kernel's low-water mark is at least 1), then returns 0 and consumes nothing.
        (&*a).write_all(b"abc").unwrap();
        let b = Rc::new(b);
        let (res, buf) = run_op(p, front, op::Recv::new(b.clone(), Vec::new()));
        assert_eq!(res.unwrap(), 0);
        assert!(buf.is_empty());
        let (res, buf) = run_op(p, front, op::Recv::new(b.clone(), Vec::with_capacity(8)));
        assert_eq!((res.unwrap(), &buf[..]), (3, &b"abc"[..]), "the data is still there");
        drop((r, a));
    }
}

#[proactor::test]
fn file_read_write_at_offsets_and_at_position(p: &Proactor) {
    for front in FRONTS {
        let file = Rc::new(tempfile::tempfile().unwrap());
        let (res, _) = run_op(p, front, op::Write::at(file.clone(), b"abcdefgh".as_slice(), 0));
        assert_eq!(res.unwrap(), 8);
        let (res, _) = run_op(p, front, op::Write::at(file.clone(), b"XY".as_slice(), 3));
        assert_eq!(res.unwrap(), 2);
        let (res, buf) = run_op(p, front, op::Read::at(file.clone(), Vec::with_capacity(3), 2));
        assert_eq!(res.unwrap(), 3);
        assert_eq!(buf, b"cXY", "{front:?}");
        // Past the end: EOF.
        let (res, _) = run_op(p, front, op::Read::at(file.clone(), Vec::with_capacity(3), 100));
        assert_eq!(res.unwrap(), 0);
        // Short read at the end of the file.
        let (res, buf) = run_op(p, front, op::Read::at(file.clone(), Vec::with_capacity(10), 6));
        assert_eq!(res.unwrap(), 2);
        assert_eq!(buf, b"gh");
        // Positioned operations leave the file position at 0; sequential reads advance it.
        let (res, buf) = run_op(p, front, op::Read::new(file.clone(), Vec::with_capacity(5)));
        assert_eq!(res.unwrap(), 5);
        assert_eq!(buf, b"abcXY");
        let (res, buf) = run_op(p, front, op::Read::new(file.clone(), Vec::with_capacity(5)));
        assert_eq!(res.unwrap(), 3);
        assert_eq!(buf, b"fgh");
        let (res, _) = run_op(p, front, op::Read::new(file.clone(), Vec::with_capacity(5)));
        assert_eq!(res.unwrap(), 0, "EOF at the position");
        // A write at the position appends here.
        let (res, _) = run_op(p, front, op::Write::new(file.clone(), b"ij".as_slice()));
        assert_eq!(res.unwrap(), 2);
        let mut all = String::new();
        (&*file).read_to_string(&mut String::new()).unwrap();
        std::fs::File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .unwrap()
            .read_to_string(&mut all)
            .unwrap();
        assert_eq!(all, "abcXYfghij");
    }
}

#[proactor::test]
fn readv_writev(p: &Proactor) {
    for front in FRONTS {
        let file = Rc::new(tempfile::tempfile().unwrap());
        let bufs = vec![b"ab".to_vec(), Vec::new(), b"cde".to_vec()];
        let (res, bufs) = run_op(p, front, op::Writev::new(file.clone(), bufs, Some(0)));
        assert_eq!(res.unwrap(), 5);
        assert_eq!(bufs[2], b"cde", "the buffers come back");
        let bufs = vec![Vec::with_capacity(2), Vec::with_capacity(10)];
        let (res, bufs) = run_op(p, front, op::Readv::new(file.clone(), bufs, Some(0)));
        assert_eq!(res.unwrap(), 5);
        assert_eq!(bufs[0], b"ab");
        assert_eq!(bufs[1], b"cde");
        // Short vectored read: the later buffers stay empty.
        let bufs = vec![Vec::with_capacity(4), Vec::with_capacity(4)];
        let (res, bufs) = run_op(p, front, op::Readv::new(file.clone(), bufs, Some(2)));
        assert_eq!(res.unwrap(), 3);
        assert_eq!(bufs[0], b"cde");
        assert!(bufs[1].is_empty());
        // At the position, on a pipe.
        let (r, w) = pipe();
        let (res, _) =
            run_op(p, front, op::Writev::new(w, vec![b"12".as_slice(), b"345".as_slice()], None));
        assert_eq!(res.unwrap(), 5);
        let bufs = vec![Vec::with_capacity(3), Vec::with_capacity(3)];
        let (res, bufs) = run_op(p, front, op::Readv::new(r, bufs, None));
        assert_eq!(res.unwrap(), 5);
        assert_eq!((&bufs[0][..], &bufs[1][..]), (&b"123"[..], &b"45"[..]));
    }
}

#[proactor::test]
fn send_recv_short_and_eof(p: &Proactor) {
    for front in FRONTS {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (Rc::new(a), Rc::new(b));
        let (res, _) = run_op(p, front, op::Send::new(a.clone(), b"ping pong".as_slice()));
        assert_eq!(res.unwrap(), 9);
        let (res, buf) = run_op(p, front, op::Recv::new(b.clone(), Vec::with_capacity(4)));
        assert_eq!(res.unwrap(), 4);
        assert_eq!(buf, b"ping");
        let (res, buf) = run_op(p, front, op::Recv::new(b.clone(), Vec::with_capacity(100)));
        assert_eq!(res.unwrap(), 5);
        assert_eq!(buf, b" pong");
        // MSG_PEEK leaves the data in place.
        (&*a).write_all(b"xyz").unwrap();
        let (res, buf) =
            run_op(p, front, op::Recv::new(b.clone(), Vec::with_capacity(8)).flags(libc::MSG_PEEK));
        assert_eq!((res.unwrap(), &buf[..]), (3, &b"xyz"[..]));
        let (res, buf) = run_op(p, front, op::Recv::new(b.clone(), Vec::with_capacity(8)));
        assert_eq!((res.unwrap(), &buf[..]), (3, &b"xyz"[..]));
        // The peer shuts down its write side: EOF.
        let (res, ()) = (run_op(p, front, op::Shutdown::new(a.clone(), Shutdown::Write)), ());
        res.unwrap();
        let (res, buf) = run_op(p, front, op::Recv::new(b.clone(), Vec::with_capacity(8)));
        assert_eq!(res.unwrap(), 0, "EOF is Ok(0) on {front:?}");
        assert!(buf.is_empty());
        // Sending to a peer that is gone is EPIPE (and no SIGPIPE kills the test).
        drop(b);
        let (c, d) = UnixStream::pair().unwrap();
        drop(d);
        let (res, _) = run_op(p, front, op::Send::new(c, b"x".as_slice()));
        assert_eq!(errno(&res.unwrap_err()), Some(libc::EPIPE));
    }
}

#[proactor::test]
fn recv_waits_for_data(p: &Proactor) {
    // The receive is issued before the data exists: it must wait, not fail with EAGAIN.
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        (&a).write_all(b"late").unwrap();
        a
    });
    let (res, buf) = run_op(p, Front::Future, op::Recv::new(b, Vec::with_capacity(8)));
    assert_eq!(res.unwrap(), 4);
    assert_eq!(buf, b"late");
    let a = writer.join().unwrap();
    let (res, buf) = {
        let (c, d) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            (&d).write_all(b"later").unwrap();
            d
        });
        let out = run_op(p, Front::Handler, op::Recv::new(c, Vec::with_capacity(8)));
        drop(t.join().unwrap());
        out
    };
    assert_eq!((res.unwrap(), &buf[..]), (5, &b"later"[..]));
    drop(a);
}

/// A listener on 127.0.0.1 and an unconnected TCP socket for the client side.
fn tcp_pair_parts() -> (Rc<TcpListener>, socket2::Socket, socket2::SockAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket2::SockAddr::from(listener.local_addr().unwrap());
    let client =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM.cloexec(), None).unwrap();
    (Rc::new(listener), client, addr)
}

#[proactor::test]
fn accept_connect_loopback_futures(p: &Proactor) {
    let (listener, client, addr) = tcp_pair_parts();
    let client = Rc::new(client);
    p.block_on(async {
        let accepting = proactor::spawn(submit(op::Accept::new(listener.clone())));
        submit(op::Connect::new(client.clone(), addr.clone())).await.unwrap();
        let (server_fd, peer) = accepting.await.unwrap().unwrap();
        assert_eq!(
            peer.as_socket().unwrap(),
            client.local_addr().unwrap().as_socket().unwrap(),
            "accept reports the client's address"
        );
        // The accepted socket works.
        let server_fd = Rc::new(server_fd);
        let (res, _) = submit(op::Send::new(server_fd.clone(), b"welcome".as_slice())).await;
        assert_eq!(res.unwrap(), 7);
        let (res, buf) = submit(op::Recv::new(client.clone(), Vec::with_capacity(16))).await;
        assert_eq!((res.unwrap(), &buf[..]), (7, &b"welcome"[..]));
        // It is close-on-exec and non-blocking, as documented.
        // SAFETY: F_GETFD/F_GETFL take no pointers.
        let (fdflags, flflags) = unsafe {
            (
                libc::fcntl(server_fd.as_raw_fd(), libc::F_GETFD),
                libc::fcntl(server_fd.as_raw_fd(), libc::F_GETFL),
            )
        };
        assert!(fdflags & libc::FD_CLOEXEC != 0);
        assert!(flflags & libc::O_NONBLOCK != 0);
    });
}

#[proactor::test]
fn accept_connect_loopback_handlers(p: &Proactor) {
    let (listener, client, addr) = tcp_pair_parts();
    let client = Rc::new(client);
    let accepted: Rc<std::cell::RefCell<Option<OwnedFd>>> = Rc::default();
    let connected = Rc::new(std::cell::Cell::new(false));
    let (acc, con) = (accepted.clone(), connected.clone());
    p.start(op::Accept::new(listener.clone()), move |res| {
        *acc.borrow_mut() = Some(res.unwrap().0);
    });
    p.start(op::Connect::new(client.clone(), addr), move |res| {
        res.unwrap();
        con.set(true);
    });
    p.run().unwrap();
    assert!(connected.get());
    let server = accepted.borrow_mut().take().expect("accepted");
    let (res, _) = run_op(p, Front::Handler, op::Send::new(client.clone(), b"hi".as_slice()));
    assert_eq!(res.unwrap(), 2);
    let (res, buf) = run_op(p, Front::Handler, op::Recv::new(server, Vec::with_capacity(4)));
    assert_eq!((res.unwrap(), &buf[..]), (2, &b"hi"[..]));
}

#[proactor::test]
fn connect_refused_names_the_operation(p: &Proactor) {
    for front in FRONTS {
        // A port nothing listens on: bind a listener, note the port, close it.
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            socket2::SockAddr::from(l.local_addr().unwrap())
        };
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM.cloexec(), None)
            .unwrap();
        let err = run_op(p, front, op::Connect::new(s, addr)).unwrap_err();
        assert_eq!(errno(&err), Some(libc::ECONNREFUSED), "{front:?}: {err}");
        assert!(err.to_string().contains("connect"), "the error names the operation: {err}");
    }
}

#[proactor::test]
fn shutdown_ops(p: &Proactor) {
    for front in FRONTS {
        let (a, b) = UnixStream::pair().unwrap();
        run_op(p, front, op::Shutdown::new(Rc::new(a.try_clone().unwrap()), Shutdown::Write))
            .unwrap();
        let mut buf = [0u8; 4];
        assert_eq!((&b).read(&mut buf).unwrap(), 0, "the peer sees EOF");
        // Reading still works on a write-shut socket.
        (&b).write_all(b"ok").unwrap();
        let (res, buf) = run_op(p, front, op::Recv::new(a, Vec::with_capacity(4)));
        assert_eq!((res.unwrap(), &buf[..]), (2, &b"ok"[..]));
        // Shutting down a socket that is not connected is ENOTCONN.
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let err = run_op(p, front, op::Shutdown::new(s, Shutdown::Both)).unwrap_err();
        assert_eq!(errno(&err), Some(libc::ENOTCONN));
    }
}

#[proactor::test]
fn close_op_closes_the_descriptor(p: &Proactor) {
    for front in FRONTS {
        let (r, w) = pipe();
        run_op(p, front, op::Close::new(w)).unwrap();
        // The only write end is closed, so the read end is at EOF.
        let (res, _) = run_op(p, front, op::Read::new(r, Vec::with_capacity(4)));
        assert_eq!(res.unwrap(), 0, "{front:?}");
    }
}

#[proactor::test]
fn openat_fsync_statx(p: &Proactor) {
    for front in FRONTS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        let fd = run_op(
            p,
            front,
            op::OpenAt::new(
                libc::AT_FDCWD,
                &path,
                libc::O_CREAT | libc::O_RDWR | libc::O_EXCL,
                0o600,
            )
            .unwrap(),
        )
        .unwrap();
        let fd = Rc::new(fd);
        // SAFETY: F_GETFD takes no pointers.
        assert!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) } & libc::FD_CLOEXEC != 0);
        let (res, _) = run_op(p, front, op::Write::at(fd.clone(), b"12345".as_slice(), 0));
        assert_eq!(res.unwrap(), 5);
        run_op(p, front, op::Fsync::new(fd.clone())).unwrap();
        run_op(p, front, op::Fsync::data(fd.clone())).unwrap();
        let st = run_op(p, front, op::Statx::path(libc::AT_FDCWD, &path).unwrap()).unwrap();
        assert_eq!(st.stx_size, 5);
        assert_eq!(st.stx_mode as u32 & libc::S_IFMT, libc::S_IFREG);
        assert_eq!(st.stx_mode as u32 & 0o777, 0o600);
        let st = run_op(p, front, op::Statx::fd(fd.as_raw_fd())).unwrap();
        assert_eq!(st.stx_size, 5, "statx of an open descriptor");
        // O_EXCL on an existing file, and a missing file: clear errors naming the operation.
        let err = run_op(
            p,
            front,
            op::OpenAt::new(
                libc::AT_FDCWD,
                &path,
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                0o600,
            )
            .unwrap(),
        )
        .unwrap_err();
        assert_eq!(errno(&err), Some(libc::EEXIST));
        let missing = dir.path().join("missing");
        let err =
            run_op(p, front, op::OpenAt::new(libc::AT_FDCWD, &missing, libc::O_RDONLY, 0).unwrap())
                .unwrap_err();
        assert_eq!(errno(&err), Some(libc::ENOENT));
        assert!(err.to_string().contains("openat"), "{err}");
        let err = run_op(p, front, op::Statx::path(libc::AT_FDCWD, &missing).unwrap()).unwrap_err();
        assert_eq!(errno(&err), Some(libc::ENOENT));
        // fsync of a pipe is EINVAL, as fsync(2) says.
        let (r, _w) = pipe();
        let err = run_op(p, front, op::Fsync::new(r)).unwrap_err();
        assert_eq!(errno(&err), Some(libc::EINVAL));
        // A path with an interior NUL is refused before anything is submitted.
        let bad = std::path::Path::new("a\0b");
        assert_eq!(
            op::OpenAt::new(libc::AT_FDCWD, bad, libc::O_RDONLY, 0).err().unwrap().kind(),
            std::io::ErrorKind::InvalidInput
        );
    }
}

#[proactor::test]
fn timeout_op(p: &Proactor) {
    for front in FRONTS {
        let start = Instant::now();
        run_op(p, front, op::Timeout::new(Duration::from_millis(20))).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(20), "a timer never fires early");
        // A zero timeout completes.
        run_op(p, front, op::Timeout::new(Duration::ZERO)).unwrap();
    }
}

#[proactor::test]
fn cancel_returns_the_buffer(p: &Proactor) {
    // Futures: a cancel token.
    let (_a, b) = UnixStream::pair().unwrap();
    let b = Rc::new(b);
    p.block_on(async {
        let mut recv = submit(op::Recv::new(b.clone(), Vec::with_capacity(32)));
        let token = recv.cancel_token();
        assert!(!core_util::poll_once(&mut recv).await, "nothing to receive yet");
        token.cancel();
        let (res, buf) = recv.await;
        assert_eq!(errno(&res.unwrap_err()), Some(libc::ECANCELED));
        assert_eq!(buf.capacity(), 32, "the buffer comes back");
        // Cancelling before the first poll: the operation never starts.
        let mut recv = submit(op::Recv::new(b.clone(), Vec::with_capacity(8)));
        recv.cancel_token().cancel();
        let (res, buf) = recv.await;
        assert_eq!(errno(&res.unwrap_err()), Some(libc::ECANCELED));
        assert_eq!(buf.capacity(), 8);
    });
    // Handlers: cancel by id.
    let got = Rc::new(std::cell::RefCell::new(None));
    let g = got.clone();
    let id = p.start(op::Recv::new(b.clone(), Vec::with_capacity(16)), move |(res, buf)| {
        *g.borrow_mut() = Some((res.map_err(|e| errno(&e)), buf.capacity()));
    });
    p.cancel(id);
    p.run().unwrap();
    assert_eq!(got.borrow_mut().take(), Some((Err(Some(libc::ECANCELED)), 16)));
    // Cancelling an id that already completed does nothing.
    p.cancel(id);
    p.run().unwrap();
    assert_eq!(p.in_flight().in_flight, 0);
}

#[proactor::test]
fn cancel_after_completion_keeps_the_result(p: &Proactor) {
    // The data is there before the cancel: the receive either finished first (its real result)
    // or was cancelled (the data stays in the socket). No byte is lost either way.
    for front in FRONTS {
        let (a, b) = UnixStream::pair().unwrap();
        let b = Rc::new(b);
        (&a).write_all(b"data").unwrap();
        let got = Rc::new(std::cell::RefCell::new(None));
        match front {
            Front::Handler => {
                let g = got.clone();
                let id = p.start(op::Recv::new(b.clone(), Vec::with_capacity(8)), move |out| {
                    *g.borrow_mut() = Some(out)
                });
                p.cancel(id);
                p.run().unwrap();
            }
            Front::Future => {
                let out = p.block_on(async {
                    let mut recv = submit(op::Recv::new(b.clone(), Vec::with_capacity(8)));
                    let token = recv.cancel_token();
                    if core_util::poll_once(&mut recv).await {
                        unreachable!("an Op never completes on its first poll");
                    }
                    token.cancel();
                    recv.await
                });
                *got.borrow_mut() = Some(out);
            }
        }
        let (res, buf) = got.borrow_mut().take().unwrap();
        match res {
            Ok(n) => assert_eq!((n, &buf[..]), (4, &b"data"[..])),
            Err(e) => {
                assert_eq!(errno(&e), Some(libc::ECANCELED));
                let (res, buf) = run_op(p, front, op::Recv::new(b.clone(), Vec::with_capacity(8)));
                assert_eq!((res.unwrap(), &buf[..]), (4, &b"data"[..]));
            }
        }
    }
}

#[proactor::test]
fn deadline_on_handlers(p: &Proactor) {
    let (_a, b) = UnixStream::pair().unwrap();
    let got = Rc::new(std::cell::RefCell::new(None));
    let g = got.clone();
    p.start_with_deadline(
        op::Recv::new(b, vec![0u8; 8]),
        Duration::from_millis(10),
        move |(res, buf)| {
            *g.borrow_mut() = Some((errno(&res.unwrap_err()), buf.len()));
        },
    );
    p.run().unwrap();
    // The deadline's, not a cancel's: ETIMEDOUT (tests/timers.rs tells the two apart).
    assert_eq!(got.borrow_mut().take(), Some((Some(libc::ETIMEDOUT), 8)));
    // A deadline that does not expire leaves the result alone.
    let (c, d) = UnixStream::pair().unwrap();
    (&c).write_all(b"x").unwrap();
    let (res, buf) = p
        .block_on(submit(op::Recv::new(d, Vec::with_capacity(4))).deadline(Duration::from_secs(5)));
    assert_eq!((res.unwrap(), &buf[..]), (1, &b"x"[..]));
}

#[test]
fn ops_outside_a_proactor_fail_cleanly() {
    // Awaited with no proactor running: a clear error, the buffer back, no panic.
    let (a, _b) = UnixStream::pair().unwrap();
    let mut fut = submit(op::Send::new(a, b"x".to_vec()));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(&mut fut).poll(&mut cx) {
        std::task::Poll::Ready((res, buf)) => {
            assert!(res.unwrap_err().to_string().contains("no proactor"));
            assert_eq!(buf, b"x");
        }
        std::task::Poll::Pending => panic!("must complete at once"),
    }
    let _ = Proactor::new;
}
use std::future::Future as _;

#[proactor::test]
fn read_on_a_nonblocking_pipe_waits(p: &Proactor) {
    // EAGAIN from a descriptor in O_NONBLOCK mode is a transient condition: the read must wait
    // for data, not fail.
    for front in FRONTS {
        let (r, w) = pipe();
        // SAFETY: F_SETFL takes an integer argument.
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            std::fs::File::from(w).write_all(b"slow").unwrap();
        });
        let (res, buf) = run_op(p, front, op::Read::new(r, Vec::with_capacity(8)));
        writer.join().unwrap();
        assert_eq!((res.unwrap(), &buf[..]), (4, &b"slow"[..]), "{front:?}");
    }
}
