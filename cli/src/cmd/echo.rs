//! `proactor echo`: the seed's echo server — every byte a client sends comes back, until the client
//! closes its side.
//!
//! Receives go into buffers of a pool shared by the thread's connections ([`BufPool`]: on io_uring
//! a provided-buffer ring, so the kernel picks a buffer only when data has arrived), so a
//! connection waiting for its client holds no buffer at all — an idle connection costs its
//! socket and a few hundred bytes of state. Each message is sent back straight from the pooled
//! buffer (looping on partial sends), which then returns to the pool, and the next receive
//! starts. A client that never reads costs a bounded number of buffers: at most
//! [`MAX_QUEUED`] received chunks wait behind a pending send (then the receive pauses), its
//! socket buffers fill, and nothing more is read.
//! When the pool is dry, a receive waits for a buffer to come back (the data waits in the
//! socket). A client that half-closes (shuts down its write side) still gets every byte echoed
//! before the server closes.
//!
//! Both of the proactor's front ends are here — completion handlers chained like the seed's
//! `EchoSession`, and async/await — selectable with the hidden `--style` option; the default
//! is the one that measured faster (see [`Style`]). Each receives with one multishot receive
//! per connection by default (see [`recv_multishot`]); the hidden `--recv oneshot` gives the
//! handlers one receive request per message, for comparison.

use crate::server::{Conn, RecvMode, Server, ServerOpts};
use proactor::buf::{BufPool, PooledBuf, Slice};
use proactor::op::{self, raw_os_error, RecvMulti};
use proactor::runtime::{Multi, OpId};
use proactor::{Handle, IoBuf};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
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
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_BUF_SIZE,
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

/// Default size of each pooled buffer: 16 KiB, plus one cache line. Buffers lie side by side
/// in one block, so at a multiple of 4 KiB apart the first lines of all of them fall into the
/// same few cache sets, and a small message's copy misses every time: at 1,000 conns × 64 B
/// the kernel's copy into the buffer took 3.3 % of the server's time with 16 KiB buffers and
/// 1.3 % with 16 KiB + 64 B (`perf record`, 256 buffers).
const DEFAULT_BUF_SIZE: u32 = 16 * 1024 + 64;

/// Settings shared by every connection.
#[derive(Clone, Copy)]
struct Settings {
    idle: Option<Duration>,
    buf_size: usize,
    pool_buffers: u16,
    recv: RecvMode,
}

impl Settings {
    /// The receive buffers for the proactor of `handle` (one pool per server thread).
    fn pool(&self, handle: &Handle) -> std::io::Result<Buffers> {
        let pool = BufPool::builder()
            .buffers(self.pool_buffers)
            .buffer_size(self.buf_size)
            .build_on(handle)?;
        Ok(Buffers { pool, dry: Rc::default() })
    }
}

/// A server thread's receive buffers: its pool, and the multishot sessions whose receive ended
/// because the pool was dry (`ENOBUFS`), oldest first. Each buffer a session gives back starts
/// one of them receiving again — one, not all: waking every waiter per buffer (each retrying
/// a one-shot pooled receive, as `BufPool::recv` does) cost 62 submissions per message at
/// 1,000 conns × 64 KiB with 128 buffers, against 4 (one send per 16 KiB) with 1,024, and 2.4×
/// the server's CPU; waiting in line it takes 8 (4 sends, 4 receives started again).
#[derive(Clone)]
struct Buffers {
    pool: BufPool,
    dry: Rc<RefCell<VecDeque<Rc<MultiSession>>>>,
}

impl Buffers {
    /// A session gave a buffer back (or passes its turn on): the longest-waiting session
    /// receives again.
    fn returned(&self) {
        loop {
            let next = self.dry.borrow_mut().pop_front();
            match next {
                Some(session) if !session.buffer_back() => {} // it failed meanwhile: the next
                _ => break,
            }
        }
        // With every buffer back in the pool no buffer is coming back to wake the others (a
        // woken session may find no data after an injected `ENOBUFS`): all of them go.
        if self.pool.available() == self.pool.capacity() {
            let waiting = std::mem::take(&mut *self.dry.borrow_mut());
            for session in waiting {
                session.buffer_back();
            }
        }
    }
}

pub fn run(args: Args) -> ExitCode {
    let settings = Settings {
        idle: args.idle_timeout.filter(|d| !d.is_zero()),
        buf_size: args.buf_size.max(1) as usize,
        pool_buffers: args.pool_buffers.max(1),
        recv: args.server.recv.unwrap_or(RecvMode::Multishot),
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
                let buffers = match &pool {
                    Ok(p) => p.clone(),
                    Err(e) => return tracing::error!("echo: buffer pool: {e}"),
                };
                match style {
                    Style::Handlers => start_session(&handle, buffers, stream, conn, settings),
                    Style::Async => {
                        drop(proactor::spawn(echo_task(buffers.pool, stream, conn, settings)))
                    }
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
            start_session(&handle, pool.clone(), stream, conn, settings);
        }),
        Style::Async => server
            .run_tasks(move |stream, conn| echo_task(pool.pool.clone(), stream, conn, settings)),
    }
}

/// Logs why a connection ended early (anything but an orderly close).
fn log_end(conn: &Conn, what: &str, err: &std::io::Error) {
    // An operation's deadline (a future's or a handler's) and `time::timeout` end in
    // `TimedOut`; `ECANCELED` is a cancel, logged the same way.
    if err.kind() == std::io::ErrorKind::TimedOut || raw_os_error(err) == Some(libc::ECANCELED) {
        tracing::debug!(conn = conn.id(), "idle timeout during {what}");
    } else {
        tracing::debug!(conn = conn.id(), "{what}: {err}");
    }
}

// ---- completion handlers -------------------------------------------------------------------

/// Whether the handlers front end receives with one multishot receive per connection
/// ([`MultiSession`]) rather than one receive per message ([`Session`]).
///
/// Multishot by default. Smoke figures, `proactor bench --secs 2 --rounds 5 --extra-rounds 0
/// --conns 100,1000 --sizes 64,4096 --servers proactor-uring,proactor-uring-oneshot,tokio-ct
/// --idle 0 --no-same-core` on 2 cores shared with other builds (load average 11–15, every
/// point's spread 16–58%, so all UNRELIABLE), io_uring, multishot vs one-shot, msg/s and server
/// CPU s per M messages: 100 × 64 B 14,953 vs 15,319 and 9.00 vs 9.80; 1,000 × 64 B 21,244 vs
/// 19,992 and 10.13 vs 10.01; 100 × 4 KiB 13,197 vs 11,847 and 11.77 vs 10.60; 1,000 × 4 KiB
/// 14,884 vs 14,351 and 10.49 vs 12.30 — level or ahead in msg/s at 3 of 4 points, within the
/// noise. What decides it until a quiet rerun: a connection costs one submission instead of
/// one per message, and the async front end on the same receive measured 5.61 s/M messages
/// against the one-shot handlers' 11.69 at 64 B (noisy, the session before). With
/// `--idle-timeout` the one-shot chain serves (a deadline per receive); `--recv oneshot` picks
/// it for comparison.
fn recv_multishot(handle: &Handle, pool: &BufPool, settings: &Settings) -> bool {
    settings.recv == RecvMode::Multishot
        && settings.idle.is_none()
        && crate::server::multishot_runnable(handle, pool)
}

/// Starts serving one connection with the handlers front end.
fn start_session(handle: &Handle, buffers: Buffers, stream: TcpStream, conn: Conn, s: Settings) {
    if recv_multishot(handle, &buffers.pool, &s) {
        MultiSession::start(handle.clone(), buffers, stream, conn);
    } else {
        Session::start(handle.clone(), buffers.pool, stream, conn, s);
    }
}

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

// ---- completion handlers on a multishot receive ----------------------------------------------

/// Received chunks a connection holds — waiting behind the send in flight, that one included —
/// before its multishot receive is paused (cancelled, and started again once they are echoed;
/// the data waits in the socket meanwhile). The bound of `BufPool::recv_stream` too.
pub const MAX_QUEUED: usize = 8;

/// One connection on one multishot receive: its handler is called per received chunk, which
/// is queued and echoed in order, one send at a time, while the kernel goes on receiving.
///
/// The session is shared (`Rc`) by the receive's handler and the send in flight; the socket
/// closes when the last of them is done with it. The operations name the socket by its bare
/// descriptor number, which is sound for the same reason as in [`Session`]: whoever holds an
/// operation's handler holds the session, and so the `TcpStream`.
struct MultiSession {
    handle: Handle,
    buffers: Buffers,
    stream: TcpStream,
    conn: Conn,
    /// Received chunks waiting for the send in flight, oldest first.
    queue: RefCell<VecDeque<PooledBuf>>,
    /// A send is in flight.
    sending: Cell<bool>,
    recv: RefCell<Receiving>,
}

/// Where a [`MultiSession`]'s receive stands.
enum Receiving {
    /// The multishot receive runs.
    Running(OpId),
    /// Cancelled because [`MAX_QUEUED`] chunks are held; its end has not come yet.
    Pausing,
    /// Paused; started again once the queue drains.
    Paused(RecvMulti<RawFd>),
    /// The pool ran dry (`ENOBUFS`, the data left in the socket): queued in [`Buffers`] until
    /// a buffer comes back, then the multishot receive starts again.
    Dry(RecvMulti<RawFd>),
    /// The client closed its side, or the connection failed: nothing more is received.
    Over,
}

impl MultiSession {
    fn start(handle: Handle, buffers: Buffers, stream: TcpStream, conn: Conn) {
        let op = RecvMulti::new(stream.as_raw_fd(), &buffers.pool);
        let session = Rc::new(MultiSession {
            handle,
            buffers,
            stream,
            conn,
            queue: RefCell::new(VecDeque::new()),
            sending: Cell::new(false),
            recv: RefCell::new(Receiving::Over),
        });
        session.arm(op);
    }

    /// The socket's descriptor number (see the type's docs).
    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Chunks held: queued, and the one being sent.
    fn held(&self) -> usize {
        self.queue.borrow().len() + usize::from(self.sending.get())
    }

    /// Starts (or starts again) the multishot receive.
    fn arm(self: &Rc<Self>, op: RecvMulti<RawFd>) {
        let me = self.clone();
        let id = self.handle.start_multi(op, move |event| me.on_event(event));
        *self.recv.borrow_mut() = Receiving::Running(id);
    }

    /// Starts the receive again, unless the chunks held already reach the bound.
    fn resume(self: &Rc<Self>, op: RecvMulti<RawFd>) {
        if self.held() >= MAX_QUEUED {
            *self.recv.borrow_mut() = Receiving::Paused(op);
        } else {
            self.arm(op);
        }
    }

    fn on_event(self: &Rc<Self>, event: Multi<RecvMulti<RawFd>>) {
        match event {
            // One buffer, or several when the receive was a bundle: each is a chunk.
            Multi::Item(Ok(received)) => received.into_iter().for_each(|buf| self.on_chunk(buf)),
            Multi::Item(Err(e)) => self.fail("recv", &e),
            Multi::End { op, restartable, result } => self.on_end(op, restartable, result),
            _ => {}
        }
    }

    /// Queues a received chunk and sends it if nothing is being sent; pauses the receive at
    /// the bound.
    fn on_chunk(self: &Rc<Self>, buf: PooledBuf) {
        if matches!(*self.recv.borrow(), Receiving::Over) {
            // The connection failed: nothing more is echoed, the buffer goes back.
            drop(buf);
            return self.buffers.returned();
        }
        if self.sending.get() {
            self.queue.borrow_mut().push_back(buf);
        } else {
            // Nothing in flight, so nothing queued (a send's end sends the next): straight out.
            debug_assert!(self.queue.borrow().is_empty());
            let n = buf.len();
            self.send(buf.slice(0..n));
        }
        if self.held() >= MAX_QUEUED {
            let running = match *self.recv.borrow() {
                Receiving::Running(id) => Some(id),
                _ => None,
            };
            if let Some(id) = running {
                *self.recv.borrow_mut() = Receiving::Pausing;
                self.handle.cancel(id);
            }
        }
    }

    fn on_end(self: &Rc<Self>, op: RecvMulti<RawFd>, restartable: bool, result: io::Result<u32>) {
        let state = std::mem::replace(&mut *self.recv.borrow_mut(), Receiving::Over);
        let errno = result.as_ref().err().and_then(raw_os_error);
        match (state, errno) {
            // Our own pause.
            (Receiving::Pausing, Some(libc::ECANCELED)) => self.resume(op),
            // The kernel ended it for its own reasons: the sequence goes on.
            (Receiving::Running(_) | Receiving::Pausing, _) if restartable => self.resume(op),
            // The pool is dry (or an `ENOBUFS` was injected): wait for a buffer, then go on.
            (Receiving::Running(_) | Receiving::Pausing, Some(libc::ENOBUFS)) => {
                self.wait_for_buffer(op)
            }
            // Over for good: failed, end of stream (`Ok(0)`: what is queued is still echoed,
            // then the last holder of the session closes the socket), or an error (the last
            // item, already handled). A receive started by a buffer coming back may end so,
            // without taking the buffer: the next session in line gets the turn, or with the
            // last buffers back in the pool it could wait for ever (seen in
            // dry_pool_delays_but_loses_nothing, 2 buffers for 16 clients).
            _ => self.buffers.returned(),
        }
    }

    /// The slow path after `ENOBUFS`: in line in [`Buffers`] for the next buffer given back,
    /// then the multishot receive again. With no buffer lent out (an injected `ENOBUFS`, or the
    /// kernel's ring between picking buffers and their completions being handed out) it starts
    /// again at once, since no buffer might come back to wake it. Not whenever some buffer is
    /// available: the sessions woken in the same turn take those, and the rest would go round
    /// again every turn (81 submissions per message at 1,000 conns × 64 KiB, 128 buffers).
    fn wait_for_buffer(self: &Rc<Self>, op: RecvMulti<RawFd>) {
        let pool = &self.buffers.pool;
        if pool.available() == pool.capacity() {
            return self.resume(op);
        }
        *self.recv.borrow_mut() = Receiving::Dry(op);
        self.buffers.dry.borrow_mut().push_back(self.clone());
    }

    /// A buffer came back while this session waited for one: receives again. False if it no
    /// longer waits (the connection failed), so the buffer should wake another.
    fn buffer_back(self: &Rc<Self>) -> bool {
        let state = std::mem::replace(&mut *self.recv.borrow_mut(), Receiving::Over);
        match state {
            Receiving::Dry(op) => {
                self.resume(op);
                true
            }
            other => {
                *self.recv.borrow_mut() = other;
                false
            }
        }
    }

    /// Ends the connection after an error: nothing more is received or echoed.
    fn fail(&self, what: &str, err: &io::Error) {
        log_end(&self.conn, what, err);
        let state = std::mem::replace(&mut *self.recv.borrow_mut(), Receiving::Over);
        match state {
            Receiving::Running(id) => self.handle.cancel(id),
            Receiving::Dry(_) => {
                // Out of the line, so that the socket closes now rather than at the next wake.
                self.buffers.dry.borrow_mut().retain(|s| !std::ptr::eq(&**s, self));
            }
            _ => {}
        }
        let dropped = std::mem::take(&mut *self.queue.borrow_mut());
        let n = dropped.len();
        drop(dropped);
        (0..n).for_each(|_| self.buffers.returned());
    }

    /// Sends the oldest queued chunk.
    fn send_next(self: &Rc<Self>) {
        let Some(buf) = self.queue.borrow_mut().pop_front() else { return };
        let n = buf.len();
        self.send(buf.slice(0..n));
    }

    fn send(self: &Rc<Self>, buf: Slice<PooledBuf>) {
        self.sending.set(true);
        let me = self.clone();
        self.handle
            .start(op::Send::new(self.fd(), buf), move |(res, slice)| me.on_sent(res, slice));
    }

    fn on_sent(self: &Rc<Self>, res: io::Result<usize>, slice: Slice<PooledBuf>) {
        self.sending.set(false);
        let failed = match res {
            Ok(n) if n > 0 && n < slice.end() - slice.begin() => {
                // Partial send: the rest, from the same buffer, before anything else.
                let (begin, end) = (slice.begin() + n, slice.end());
                return self.send(slice.into_inner().slice(begin..end));
            }
            Ok(0) => Some(io::Error::new(io::ErrorKind::WriteZero, "send wrote nothing")),
            Ok(_) => None,
            Err(e) => Some(e),
        };
        drop(slice); // the buffer goes back to the pool
        self.buffers.returned();
        if let Some(e) = failed {
            return self.fail("send", &e);
        }
        self.send_next();
        // Half the bound drained: start the paused receive again.
        if self.held() <= MAX_QUEUED / 2 {
            let state = std::mem::replace(&mut *self.recv.borrow_mut(), Receiving::Over);
            match state {
                Receiving::Paused(op) => self.arm(op),
                other => *self.recv.borrow_mut() = other,
            }
        }
    }
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
    // `--recv oneshot`: one pooled receive per message instead, for comparison.
    let oneshot = settings.recv == RecvMode::Oneshot;
    loop {
        let next = async {
            match oneshot {
                true => pool.recv(fd.clone()).await.transpose(),
                false => chunks.next().await,
            }
        };
        let res = match settings.idle {
            Some(d) => {
                proactor::time::timeout(d, next).await.unwrap_or_else(|e| Some(Err(e.into())))
            }
            None => next.await,
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
