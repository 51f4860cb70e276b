//! The two front ends on one engine: an echo server written as chained completion handlers
//! (the seed's `EchoSession`: read → write → read, with a re-armed accept) and as futures, over a
//! socketpair and over loopback TCP, on both drivers.
mod common;
mod core_util;

use proactor::Proactor;
use proactor::{op, submit, Handle};
use std::cell::{Cell, RefCell};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

/// One echo connection in the completion-handler style: each completion starts the next
/// operation, and the session lives as long as an operation holds it.
struct EchoSession {
    handle: Handle,
    socket: Rc<OwnedFd>,
    /// Bytes echoed, for the test to check.
    echoed: Rc<Cell<usize>>,
}

impl EchoSession {
    fn start(self: Rc<Self>) {
        self.do_read(Vec::with_capacity(1024));
    }

    fn do_read(self: Rc<Self>, mut buf: Vec<u8>) {
        buf.clear();
        let me = self.clone();
        self.handle.start(op::Recv::new(self.socket.clone(), buf), move |(res, buf)| match res {
            Ok(0) | Err(_) => {} // closed or failed: the session ends, the socket closes
            Ok(_) => me.do_write(buf, 0),
        });
    }

    /// Writes `buf[from..]`, continuing after a short write.
    fn do_write(self: Rc<Self>, buf: Vec<u8>, from: usize) {
        let me = self.clone();
        let slice = proactor::IoBuf::slice(buf, from..);
        // The slice's range is `from..capacity`; send only the received bytes.
        self.handle.start(op::Send::new(self.socket.clone(), slice), move |(res, slice)| {
            let buf = slice.into_inner();
            // On an error the session ends and the socket closes.
            if let Ok(n) = res {
                me.echoed.set(me.echoed.get() + n);
                if from + n < buf.len() {
                    me.do_write(buf, from + n);
                } else {
                    me.do_read(buf); // chain: keep the connection alive
                }
            }
        });
    }
}

/// Client side, on a plain thread: sends `rounds` messages and checks each echo.
fn client<S: std::io::Read + std::io::Write + Send + 'static>(
    mut s: S,
    rounds: usize,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut total = 0;
        for i in 0..rounds {
            let msg = format!("message {i} {}", "x".repeat(i % 300));
            s.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, msg.as_bytes());
            total += msg.len();
        }
        total
    })
}

fn set_timeouts(s: &UnixStream) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
}

#[proactor::test]
fn echo_socketpair_handlers(p: &Proactor) {
    let (server, peer) = UnixStream::pair().unwrap();
    set_timeouts(&peer);
    let echoed = Rc::new(Cell::new(0));
    let session = Rc::new(EchoSession {
        handle: p.handle(),
        socket: Rc::new(OwnedFd::from(server)),
        echoed: echoed.clone(),
    });
    session.start();
    let c = client(peer, 500);
    p.run().unwrap(); // returns when the client hangs up and the session ends
    let sent = c.join().unwrap();
    assert_eq!(echoed.get(), sent);
    assert_eq!(p.in_flight().in_flight, 0);
}

/// The echo loop as a future.
async fn echo_task(socket: Rc<OwnedFd>) -> usize {
    let mut buf = Vec::with_capacity(1024);
    let mut total = 0;
    loop {
        buf.clear();
        let (res, b) = submit(op::Recv::new(socket.clone(), buf)).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return total,
            Ok(_) => {}
        }
        let mut from = 0;
        while from < buf.len() {
            let (res, slice) =
                submit(op::Send::new(socket.clone(), proactor::IoBuf::slice(buf, from..))).await;
            buf = slice.into_inner();
            let n = res.unwrap();
            from += n;
            total += n;
        }
    }
}

#[proactor::test]
fn echo_socketpair_futures(p: &Proactor) {
    let (server, peer) = UnixStream::pair().unwrap();
    set_timeouts(&peer);
    let c = client(peer, 500);
    let echoed = p.block_on(echo_task(Rc::new(OwnedFd::from(server))));
    assert_eq!(echoed, c.join().unwrap());
}

#[proactor::test]
fn echo_loopback_handlers_with_rearmed_accept(p: &Proactor) {
    let listener = Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    const CLIENTS: usize = 8;
    let echoed = Rc::new(Cell::new(0));
    let accepted = Rc::new(Cell::new(0));
    // The acceptor re-arms itself after every connection, like the seed's do_accept.
    fn do_accept(
        h: Handle,
        l: Rc<TcpListener>,
        echoed: Rc<Cell<usize>>,
        accepted: Rc<Cell<usize>>,
    ) {
        let h2 = h.clone();
        h.start(op::Accept::new(l.clone()), move |res| {
            let (fd, _peer) = res.unwrap();
            Rc::new(EchoSession {
                handle: h2.clone(),
                socket: Rc::new(fd),
                echoed: echoed.clone(),
            })
            .start();
            accepted.set(accepted.get() + 1);
            if accepted.get() < CLIENTS {
                do_accept(h2, l, echoed, accepted);
            }
        });
    }
    do_accept(p.handle(), listener, echoed.clone(), accepted.clone());
    let clients = connect_clients(addr, CLIENTS);
    p.run().unwrap();
    let sent: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(accepted.get(), CLIENTS);
    assert_eq!(echoed.get(), sent);
}

#[proactor::test]
fn echo_loopback_futures(p: &Proactor) {
    let listener = Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    const CLIENTS: usize = 8;
    let clients = connect_clients(addr, CLIENTS);
    let echoed = p.block_on(async {
        let mut sessions = Vec::new();
        for _ in 0..CLIENTS {
            let (fd, _) = submit(op::Accept::new(listener.clone())).await.unwrap();
            sessions.push(proactor::spawn(echo_task(Rc::new(fd))));
        }
        let mut total = 0;
        for s in sessions {
            total += s.await.unwrap();
        }
        total
    });
    let sent: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(echoed, sent);
}

#[proactor::test]
fn both_front_ends_at_once(p: &Proactor) {
    // A task and a handler chain share the loop; each sees its own completions only.
    let (a, b) = UnixStream::pair().unwrap();
    let (a, b) = (Rc::new(a), Rc::new(b));
    let handler_got = Rc::new(RefCell::new(Vec::new()));
    let hg = handler_got.clone();
    let h = p.handle();
    let b2 = b.clone();
    p.start(op::Timeout::new(Duration::from_millis(5)), move |res| {
        res.unwrap();
        h.start(op::Recv::new(b2, Vec::with_capacity(8)), move |(res, buf)| {
            assert_eq!(res.unwrap(), 5);
            hg.borrow_mut().extend_from_slice(&buf);
        });
    });
    let task = p.spawn(async move {
        proactor::time::sleep(Duration::from_millis(20)).await.unwrap();
        let (res, _) = submit(op::Send::new(a, b"hello".as_slice())).await;
        res.unwrap()
    });
    p.run().unwrap();
    assert_eq!(&*handler_got.borrow(), b"hello");
    assert_eq!(p.block_on(task).unwrap(), 5);
    drop(b);
}

/// `n` echo clients connected to `addr`, each sending 200 messages (see `client`).
fn connect_clients(addr: std::net::SocketAddr, n: usize) -> Vec<std::thread::JoinHandle<usize>> {
    (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            client(s, 200)
        })
        .collect()
}
