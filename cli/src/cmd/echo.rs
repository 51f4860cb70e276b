//! `proactor echo`: the seed's echo server — every byte a client sends comes back, until the client
//! closes its side.
//!
//! Receives go into buffers of a pool shared by the thread's connections ([`BufPool`]: on io_uring
//! a provided-buffer ring, so the kernel picks a buffer only when data has arrived), so a
//! connection waiting for its client holds no buffer at all — an idle connection costs its
//! socket and a few hundred bytes of state. Each message is sent back straight from the pooled
//! buffer (looping on partial sends), which then returns to the pool, and the next receive
//! starts. The server never receives while a send is pending, so a client that never reads
//! costs at most one buffer: its socket buffers fill, the send waits, and nothing more is read.
//! When the pool is dry, a receive waits for a buffer to come back (the data waits in the
//! socket). A client that half-closes (shuts down its write side) still gets every byte echoed
//! before the server closes.
//!
//! Both of the proactor's front ends are here — completion handlers chained like the seed's
//! `EchoSession`, and async/await — selectable with the hidden `--style` option; the default
//! is the one that measured faster (see [`Style`]).

use crate::server::{Conn, Server, ServerOpts};
use proactor::buf::{BufPool, PooledBuf, Slice};
use proactor::op::{self, raw_os_error};
use proactor::{Handle, IoBuf};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::rc::Rc;
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

    /// Size of each pooled receive buffer, in bytes (the most one receive takes in).
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u32).range(1..=(1 << 24)))]
    buf_size: u32,

    /// Receive buffers in each server thread's pool. Only connections with data in hand hold
    /// one (and clients that do not read their echo); when all are in use, receives wait.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_POOL,
          value_parser = clap::value_parser!(u16).range(1..=(1 << 15)))]
    pool_buffers: u16,

    /// Front end: handlers (completion-handler chain) or async (a task per connection).
    #[arg(long, value_enum, default_value_t = Style::Handlers, hide = true)]
    style: Style,
}

/// Which front end serves the connections.
///
/// Measured with `proactor bench --rounds 3 --servers proactor-uring,proactor-uring-async,...`
/// (2 shared cores, io_uring, pooled receive buffers, msg/s, median of 3): 100 conns × 64 B
/// handlers 153,115 vs async 145,488; 1,000 × 64 B 127,418 vs 121,679; 100 × 4 KiB 127,210 vs
/// 127,015; 1,000 × 4 KiB 92,736 vs 91,668. Memory per idle connection (10,000 held): 670 B vs
/// 1,667 B (a task's state is larger than a session). The handler chain is level or ahead
/// everywhere, so it is the default.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Completion handlers: read → on completion write → on completion read.
    Handlers,
    /// async/await: one task per connection.
    Async,
}

/// Default number of buffers per thread's pool. See `docs/bench.md` for the measurements.
const DEFAULT_POOL: u16 = 1024;

/// Settings shared by every connection.
#[derive(Clone, Copy)]
struct Settings {
    idle: Option<Duration>,
    buf_size: usize,
    pool_buffers: u16,
}

impl Settings {
    /// The receive-buffer pool for the proactor of `handle` (one per server thread).
    fn pool(&self, handle: &Handle) -> std::io::Result<BufPool> {
        BufPool::builder().buffers(self.pool_buffers).buffer_size(self.buf_size).build_on(handle)
    }
}

pub fn run(args: Args) -> ExitCode {
    let settings = Settings {
        idle: args.idle_timeout.filter(|d| !d.is_zero()),
        buf_size: args.buf_size.max(1) as usize,
        pool_buffers: args.pool_buffers.max(1),
    };
    if crate::server::thread_count(&args.server) > 1 {
        // `--threads N`: each thread builds its own connection function and buffer pool, on its
        // own proactor. A pool that cannot be built there leaves that thread without one: its
        // connections are closed at once, and the error is logged for each.
        let style = args.style;
        return crate::server::serve_threads("echo", &args.server, DEFAULT_LISTEN, move || {
            let handle = Handle::current();
            let pool = settings.pool(&handle).map_err(|e| e.to_string());
            move |stream, conn| {
                let pool = match &pool {
                    Ok(p) => p.clone(),
                    Err(e) => return tracing::error!("echo: buffer pool: {e}"),
                };
                match style {
                    Style::Handlers => Session::start(handle.clone(), pool, stream, conn, settings),
                    Style::Async => drop(proactor::spawn(echo_task(pool, stream, conn, settings))),
                }
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
    let handle = server.handle();
    let pool = match settings.pool(&handle) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("echo: error: receive buffer pool: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.style {
        Style::Handlers => server.run_handlers(move |stream, conn| {
            Session::start(handle.clone(), pool.clone(), stream, conn, settings);
        }),
        Style::Async => {
            server.run_tasks(move |stream, conn| echo_task(pool.clone(), stream, conn, settings))
        }
    }
}

/// Logs why a connection ended early (anything but an orderly close).
fn log_end(conn: &Conn, what: &str, err: &std::io::Error) {
    // An operation's deadline and `time::timeout` end in `TimedOut`; a handler started with a
    // deadline still sees the driver's `ECANCELED`.
    if err.kind() == std::io::ErrorKind::TimedOut || raw_os_error(err) == Some(libc::ECANCELED) {
        tracing::debug!(conn = conn.id(), "idle timeout during {what}");
    } else {
        tracing::debug!(conn = conn.id(), "{what}: {err}");
    }
}

// ---- completion handlers -------------------------------------------------------------------

/// One connection, moved from each completion handler into the next: whoever holds the session
/// holds the socket and the connection's place, so nothing can be freed while an operation is in
/// flight (the Rust counterpart of the seed's `shared_from_this`). The pooled buffer of a
/// message travels with the send that echoes it.
///
/// Exactly one operation is in flight per session, and the session lives inside that
/// operation's handler, which the proactor keeps until the completion arrived (or leaks, never
/// frees, if it never does). So the operations can name the socket by its bare descriptor
/// number: the `TcpStream` owning it cannot be dropped before the operation is over.
struct Session {
    handle: Handle,
    pool: BufPool,
    stream: TcpStream,
    conn: Conn,
    settings: Settings,
}

impl Session {
    fn start(handle: Handle, pool: BufPool, stream: TcpStream, conn: Conn, settings: Settings) {
        Session { handle, pool, stream, conn, settings }.do_read(false);
    }

    /// The socket's descriptor number, for the one operation in flight (see the type's docs).
    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Receives the next message; `after_send` when the previous one was just echoed, so the
    /// socket is almost surely empty and the kernel should wait for data before trying.
    fn do_read(self, after_send: bool) {
        let op = op::RecvPooled::new(self.fd(), &self.pool).poll_first(after_send);
        let (handle, idle) = (self.handle.clone(), self.settings.idle);
        match idle {
            Some(d) => handle.start_with_deadline(op, d, move |out| self.on_read(out)),
            None => handle.start(op, move |out| self.on_read(out)),
        };
    }

    fn on_read(self, res: std::io::Result<Option<PooledBuf>>) {
        match res {
            Ok(None) => {} // the client closed its side; everything was echoed; drop = close
            Ok(Some(buf)) => {
                let n = buf.len();
                self.do_write(buf.slice(0..n));
            }
            // The pool is dry (or a wake-up was spurious): the pool's own receive waits for a
            // buffer to come back and retries; the data waits in the socket meanwhile.
            Err(e) if retry_pooled(&e) => self.read_when_pool_refills(),
            Err(e) => log_end(&self.conn, "recv", &e),
        }
    }

    /// The rare slow path of a receive: [`BufPool::recv`] as a task, then back to the chain.
    fn read_when_pool_refills(self) {
        let handle = self.handle.clone();
        drop(handle.spawn(async move {
            let recv = self.pool.recv(self.fd());
            let res = match self.settings.idle {
                Some(d) => proactor::time::timeout(d, recv).await.unwrap_or_else(|e| Err(e.into())),
                None => recv.await,
            };
            self.on_read(res);
        }));
    }

    /// Sends the bytes of `buf`.
    fn do_write(self, buf: Slice<PooledBuf>) {
        let op = op::Send::new(self.fd(), buf);
        let (handle, idle) = (self.handle.clone(), self.settings.idle);
        let on_done = move |(res, slice)| self.on_write(res, slice);
        match idle {
            Some(d) => handle.start_with_deadline(op, d, on_done),
            None => handle.start(op, on_done),
        };
    }

    fn on_write(self, res: std::io::Result<usize>, slice: Slice<PooledBuf>) {
        match res {
            Ok(0) => tracing::debug!(conn = self.conn.id(), "send wrote nothing"),
            Ok(n) if n < slice.end() - slice.begin() => {
                // Partial send: the rest, from the same buffer.
                let (begin, end) = (slice.begin() + n, slice.end());
                self.do_write(slice.into_inner().slice(begin..end));
            }
            Ok(_) => {
                drop(slice); // the buffer goes back to the pool before the next receive
                self.do_read(true);
            }
            Err(e) => log_end(&self.conn, "send", &e),
        }
    }
}

/// True for the errors of a single pooled receive that [`BufPool::recv`] retries: a dry pool
/// (`ENOBUFS`) and a spurious wake-up.
fn retry_pooled(err: &std::io::Error) -> bool {
    raw_os_error(err) == Some(libc::ENOBUFS) || err.kind() == std::io::ErrorKind::WouldBlock
}

// ---- async/await ---------------------------------------------------------------------------

/// One connection as a task: the same loop, written straight. The operations share the socket
/// through an `Rc` (as `proactor::net::TcpStream` does), so one dropped mid-flight at shutdown
/// still keeps it open until it is over.
///
/// The receives are one multishot receive on the pool's buffer ring ([`BufPool::recv_stream`]):
/// one submission for the whole connection, a completion per message. While an echo is being
/// sent the kernel goes on receiving, up to the stream's bound of queued chunks (then the
/// receive pauses until they are taken, and the data waits in the socket).
async fn echo_task(pool: BufPool, stream: TcpStream, conn: Conn, settings: Settings) {
    if let Err(e) = stream.set_nonblocking(true) {
        return log_end(&conn, "setup", &e);
    }
    let fd = Rc::new(OwnedFd::from(stream));
    let mut chunks = pool.recv_stream(fd.clone());
    loop {
        let res = match settings.idle {
            Some(d) => proactor::time::timeout(d, chunks.next())
                .await
                .unwrap_or_else(|e| Some(Err(e.into()))),
            None => chunks.next().await,
        };
        let mut buf = match res {
            None => return,
            Some(Ok(buf)) => buf.slice(..),
            Some(Err(e)) => return log_end(&conn, "recv", &e),
        };
        while buf.begin() < buf.end() {
            let send = proactor::submit(op::Send::new(fd.clone(), buf));
            let (res, slice) = with_idle(send, settings).await;
            match res {
                Ok(0) => return tracing::debug!(conn = conn.id(), "send wrote nothing"),
                Ok(k) => {
                    let (begin, end) = (slice.begin() + k, slice.end());
                    buf = slice.into_inner().slice(begin..end);
                }
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
