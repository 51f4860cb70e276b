//! The seed's Boost.Asio `EchoSession`, with completion handlers: read → on completion write →
//! on completion read, and the acceptor re-armed inside its own handler.
//!
//! ```text
//! cargo run --release -p proactor --example echo_handlers [ADDR]    # default 127.0.0.1:1234
//! ```
//!
//! Where Asio keeps the session alive with `shared_from_this`, here the session is *moved* into
//! each handler: the handler owns the socket and the buffer while the operation runs, so neither
//! can be freed too early (RULE #1), and the buffer comes back with the completion.

use proactor::op::{Accept, Recv, Send, Timeout};
use proactor::{Handle, IoBuf, Proactor};
use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

/// One connection. Exactly one operation is in flight at a time, and the session travels inside
/// that operation's handler.
struct EchoSession {
    handle: Handle,
    socket: Rc<OwnedFd>,
    buffer: Vec<u8>,
}

impl EchoSession {
    fn start(handle: Handle, socket: OwnedFd) {
        let session =
            EchoSession { handle, socket: Rc::new(socket), buffer: Vec::with_capacity(1024) };
        session.do_read();
    }

    /// INITIATE: ask for a receive into the buffer; returns at once.
    fn do_read(mut self) {
        self.buffer.clear();
        let op = Recv::new(self.socket.clone(), std::mem::take(&mut self.buffer));
        let handle = self.handle.clone();
        // COMPLETION HANDLER: runs when the receive is done, with the bytes already in the buffer.
        handle.start(op, move |(res, buf)| self.on_read_complete(res, buf));
    }

    fn on_read_complete(mut self, res: io::Result<usize>, buf: Vec<u8>) {
        self.buffer = buf;
        match res {
            Ok(0) => {} // the client closed: the session is dropped, the socket closes
            Ok(n) => self.do_write(0, n),
            Err(e) => eprintln!("read failed: {e}"),
        }
    }

    /// Sends `buffer[from..to]`; a partial send continues where it stopped.
    fn do_write(mut self, from: usize, to: usize) {
        let buf = std::mem::take(&mut self.buffer);
        let op = Send::new(self.socket.clone(), buf.slice(from..to));
        let handle = self.handle.clone();
        handle.start(op, move |(res, slice)| {
            self.on_write_complete(res, slice.into_inner(), from, to)
        });
    }

    fn on_write_complete(mut self, res: io::Result<usize>, buf: Vec<u8>, from: usize, to: usize) {
        self.buffer = buf;
        match res {
            Ok(n) if n > 0 && from + n < to => self.do_write(from + n, to),
            Ok(n) if n > 0 => self.do_read(), // chain: keep the connection alive
            Ok(_) => eprintln!("write made no progress"),
            Err(e) => eprintln!("write failed: {e}"),
        }
    }
}

/// Accepts one connection; its handler starts the session and re-arms the accept.
fn do_accept(handle: Handle, listener: Rc<TcpListener>) {
    let h = handle.clone();
    handle.start(Accept::new(listener.clone()), move |res| match res {
        Ok((socket, _peer)) => {
            EchoSession::start(h.clone(), socket);
            do_accept(h, listener); // re-arm, or we accept exactly one connection
        }
        Err(e) => {
            // Out of descriptors, say: re-arm after a pause (a timer, never a blocking sleep
            // inside a handler), instead of spinning.
            eprintln!("accept failed: {e}");
            let h2 = h.clone();
            h.start(Timeout::new(Duration::from_millis(10)), move |_| do_accept(h2, listener));
        }
    });
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:1234".into());
    let proactor = Proactor::new()?; // THE PROACTOR engine
    let listener = TcpListener::bind(&addr)?;
    listener.set_nonblocking(true)?; // the epoll emulation must never block in accept
    println!("listening on {} ({})", listener.local_addr()?, proactor.driver_kind());
    do_accept(proactor.handle(), Rc::new(listener));
    proactor.run() // run the Proactor loop (returns only if nothing is left to do)
}
