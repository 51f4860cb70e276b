//! `proactor echo`: the seed's echo server — every byte a client sends comes back, until the client
//! closes its side.
//!
//! Each connection owns one buffer, reused for its whole life: receive into it, send back exactly
//! the bytes received (looping on partial sends), receive again. The server never receives while
//! a send is pending, so a client that never reads costs at most one buffer: its socket buffers
//! fill, the send waits, and nothing more is read. A client that half-closes (shuts down its
//! write side) still gets every byte echoed before the server closes.
//!
//! Both of the proactor's front ends are here — completion handlers chained like the seed's
//! `EchoSession`, and async/await — selectable with the hidden `--style` option; the default
//! is the one that measured faster (see [`Style`]).

use crate::server::{Conn, Server, ServerOpts};
use proactor::op::{self, raw_os_error};
use proactor::{Handle, IoBuf};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::Duration;

/// The seed's port.
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 1234));

/// Arguments of `proactor echo`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerOpts,

    /// Close a connection after this long without progress (no byte received, or a send not
    /// advancing), e.g. 30s. Off by default.
    #[arg(long, value_name = "DURATION", value_parser = crate::server::parse_duration)]
    idle_timeout: Option<Duration>,

    /// Size of each connection's buffer, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(usize))]
    buf_size: usize,

    /// Front end: handlers (completion-handler chain) or async (a task per connection).
    #[arg(long, value_enum, default_value_t = Style::Handlers, hide = true)]
    style: Style,
}

/// Which front end serves the connections.
///
/// Measured with `proactor bench --quick --rounds 3 --servers proactor-uring,proactor-uring-async,...`
/// (2 shared cores, io_uring, msg/s, median of 3): 100 conns × 64 B handlers 15,742 vs async
/// 14,761; 1,000 × 64 B 18,096 vs 17,379; 100 × 4 KiB 12,134 vs 11,369; 1,000 × 4 KiB 16,218
/// vs 15,773. The handler chain was ahead at every multi-connection point (by 3–7 %, close to the
/// noise of a busy machine), so it is the default.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Completion handlers: read → on completion write → on completion read.
    Handlers,
    /// async/await: one task per connection.
    Async,
}

/// Settings shared by every connection.
#[derive(Clone, Copy)]
struct Settings {
    idle: Option<Duration>,
    buf_size: usize,
}

pub fn run(args: Args) -> ExitCode {
    let settings = Settings {
        idle: args.idle_timeout.filter(|d| !d.is_zero()),
        buf_size: args.buf_size.max(1),
    };
    if crate::server::thread_count(&args.server) > 1 {
        // `--threads N`: each thread builds its own connection function, on its own proactor.
        let style = args.style;
        return crate::server::serve_threads("echo", &args.server, DEFAULT_LISTEN, move || {
            let handle = Handle::current();
            move |stream, conn| match style {
                Style::Handlers => Session::start(handle.clone(), stream, conn, settings),
                Style::Async => drop(proactor::spawn(echo_task(stream, conn, settings))),
            }
        });
    }
    let server = match Server::bind("echo", &args.server, DEFAULT_LISTEN) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match args.style {
        Style::Handlers => {
            let handle = server.handle();
            server.run_handlers(move |stream, conn| {
                Session::start(handle.clone(), stream, conn, settings);
            })
        }
        Style::Async => server.run_tasks(move |stream, conn| echo_task(stream, conn, settings)),
    }
}

/// Logs why a connection ended early (anything but an orderly close).
fn log_end(conn: &Conn, what: &str, err: &std::io::Error) {
    match raw_os_error(err) {
        Some(libc::ECANCELED) => tracing::debug!(conn = conn.id(), "idle timeout during {what}"),
        _ => tracing::debug!(conn = conn.id(), "{what}: {err}"),
    }
}

// ---- completion handlers -------------------------------------------------------------------

/// One connection, moved from each completion handler into the next: whoever holds the session
/// holds the socket, the buffer and the connection's place, so nothing can be freed while an
/// operation is in flight (the Rust counterpart of the seed's `shared_from_this`).
///
/// Exactly one operation is in flight per session, and the session lives inside that
/// operation's handler, which the proactor keeps until the completion arrived (or leaks, never
/// frees, if it never does). So the operations can name the socket by its bare descriptor
/// number: the `TcpStream` owning it cannot be dropped before the operation is over.
struct Session {
    handle: Handle,
    stream: TcpStream,
    conn: Conn,
    settings: Settings,
}

impl Session {
    fn start(handle: Handle, stream: TcpStream, conn: Conn, settings: Settings) {
        let session = Session { handle, stream, conn, settings };
        let buf = Vec::with_capacity(settings.buf_size);
        session.do_read(buf);
    }

    /// The socket's descriptor number, for the one operation in flight (see the type's docs).
    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    fn do_read(self, mut buf: Vec<u8>) {
        buf.clear();
        let op = op::Recv::new(self.fd(), buf);
        let (handle, idle) = (self.handle.clone(), self.settings.idle);
        match idle {
            Some(d) => handle.start_with_deadline(op, d, move |out| self.on_read(out)),
            None => handle.start(op, move |out| self.on_read(out)),
        };
    }

    fn on_read(self, (res, buf): (std::io::Result<usize>, Vec<u8>)) {
        match res {
            Ok(0) => {} // the client closed its side; everything was echoed; drop = close
            Ok(n) => self.do_write(buf, 0, n),
            Err(e) => log_end(&self.conn, "recv", &e),
        }
    }

    /// Sends `buf[from..to]`.
    fn do_write(self, buf: Vec<u8>, from: usize, to: usize) {
        let op = op::Send::new(self.fd(), buf.slice(from..to));
        let (handle, idle) = (self.handle.clone(), self.settings.idle);
        let on_done =
            move |(res, slice): (std::io::Result<usize>, proactor::buf::Slice<Vec<u8>>)| {
                self.on_write(res, slice.into_inner(), from, to)
            };
        match idle {
            Some(d) => handle.start_with_deadline(op, d, on_done),
            None => handle.start(op, on_done),
        };
    }

    fn on_write(self, res: std::io::Result<usize>, buf: Vec<u8>, from: usize, to: usize) {
        match res {
            Ok(0) => tracing::debug!(conn = self.conn.id(), "send wrote nothing"),
            Ok(n) if from + n < to => self.do_write(buf, from + n, to), // partial send
            Ok(_) => self.do_read(buf),
            Err(e) => log_end(&self.conn, "send", &e),
        }
    }
}

// ---- async/await ---------------------------------------------------------------------------

/// One connection as a task: the same loop, written straight.
async fn echo_task(stream: TcpStream, conn: Conn, settings: Settings) {
    let stream = match proactor::net::TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => return log_end(&conn, "setup", &e),
    };
    let mut buf = Vec::with_capacity(settings.buf_size);
    loop {
        buf.clear();
        let (res, b) = with_idle(stream.read(buf), settings).await;
        buf = b;
        let n = match res {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => return log_end(&conn, "recv", &e),
        };
        let mut sent = 0;
        while sent < n {
            let (res, slice) = with_idle(stream.write(buf.slice(sent..n)), settings).await;
            buf = slice.into_inner();
            match res {
                Ok(0) => return tracing::debug!(conn = conn.id(), "send wrote nothing"),
                Ok(k) => sent += k,
                Err(e) => return log_end(&conn, "send", &e),
            }
        }
    }
}

fn with_idle<O: proactor::op::OpCode>(op: proactor::Op<O>, settings: Settings) -> proactor::Op<O> {
    match settings.idle {
        Some(d) => op.deadline(d),
        None => op,
    }
}
