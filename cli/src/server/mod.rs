//! The plumbing every `proactor` server shares (echo, chat, http, proxy): the common command-line
//! options, binding and the `listening on` line, the accept loop with its connection cap, and a
//! clean stop on SIGINT/SIGTERM with a grace period. A server only writes what it does with one
//! connection.
//!
//! # Using it
//!
//! Flatten [`ServerOpts`] into the command's arguments and hand each connection to a closure:
//!
//! ```ignore
//! #[derive(clap::Args)]
//! pub struct Args {
//!     #[command(flatten)]
//!     server: crate::server::ServerOpts,
//!     // ... the command's own options
//! }
//!
//! pub fn run(args: Args) -> ExitCode {
//!     let default: SocketAddr = "127.0.0.1:1234".parse().unwrap();
//!     crate::server::serve("echo", &args.server, default, |stream, conn| async move {
//!         // serve one connection; `conn` is dropped at the end, which frees its place
//!         // under --max-conns. `conn.shutdown()` completes when the server is stopping.
//!     })
//! }
//! ```
//!
//! [`serve`] spawns one task per connection. For the completion-handler front end use
//! [`Server::bind`] then [`Server::run_handlers`]: the closure starts the first operation and
//! moves the [`Conn`] into the handler chain, which drops it when the connection is done.
//!
//! # What the user sees
//!
//! - Options: `--listen ADDR` (default: the command's own), `--driver auto|uring|epoll` (default:
//!   `$PROACTOR_DRIVER`, else auto), `--max-conns N` (default 10000), `--grace DURATION` (default
//!   5s). Durations are written `250ms`, `5s`, `2m` or plain seconds (`1.5`).
//! - Once the socket listens, stdout gets exactly one line `listening on <addr>` (the real port
//!   when `--listen` asked for port 0), flushed at once so a script or test can read it.
//! - A connection beyond `--max-conns` is accepted and closed at once (the client reads EOF), so it
//!   is never left hanging in the backlog.
//! - Accepted sockets get `TCP_NODELAY` (request/response traffic must not wait on Nagle).
//! - Accept errors follow the library's one policy (`proactor::net::AcceptPolicy`): out of
//!   descriptors (EMFILE/ENFILE) or memory, the accept loop logs once per burst and retries
//!   with a back-off (1 ms doubling to 100 ms): it never spins and never stops accepting for
//!   good; a connection that failed before it was accepted is skipped; an unusable listener
//!   ends the server with an error.
//! - SIGINT or SIGTERM: accepting stops; connections the kernel had already completed (waiting
//!   in the backlog, their clients possibly sending) are still taken and served; then the
//!   listener closes (new connections are refused), every [`Conn`]'s [`Conn::shutdown`] event
//!   fires, open connections get up to `--grace` to finish on their own, and the process exits
//!   0. A second signal ends the grace period at once.
//! - Errors go to stderr; failing to bind or to start the driver exits 1.
//!
//! Everything runs on one thread: one proactor, one accept loop, all connections (see
//! `threads.rs` for `--threads N`). The stream handed to the connection code is a
//! non-blocking socket with `TCP_NODELAY` set, as the type the closure asks for (see
//! [`Accepted`]): a `proactor::net::TcpStream` for the socket API, or a `std::net::TcpStream`
//! to use with the operations directly.

mod event;
mod memory;
mod recv;
mod signal;
mod threads;

pub use event::{race, Either, Event};
pub use recv::{multishot_pool, multishot_runnable, RecvMode};
pub use threads::{serve_threads, thread_count};

use event::ConnCount;
use proactor::net::{AcceptAction, AcceptPolicy};
use proactor::{DriverChoice, Handle, Proactor};
use signal::StopSignals;
use socket2::{Domain, Socket, Type};
use std::future::Future;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

/// Listen backlog: deep enough for a burst of a few thousand connects.
const BACKLOG: i32 = 4096;

/// A stream type the server can hand to connection code, converted from the accepted socket:
/// `std::net::TcpStream` (to use with the operations directly, e.g. `op::Recv::new(Rc<_>, buf)`)
/// or `proactor::net::TcpStream` (the socket API: `read`, `write`, `into_split`, ...). The
/// connection closure's parameter type picks it.
pub trait Accepted: Sized + 'static {
    /// Wraps a freshly accepted, non-blocking socket.
    fn from_accepted(stream: TcpStream) -> io::Result<Self>;
}

impl Accepted for TcpStream {
    fn from_accepted(stream: TcpStream) -> io::Result<Self> {
        Ok(stream)
    }
}

impl Accepted for proactor::net::TcpStream {
    fn from_accepted(stream: TcpStream) -> io::Result<Self> {
        proactor::net::TcpStream::from_std(stream)
    }
}

/// The options every server takes. Flatten into a command's `Args` with `#[command(flatten)]`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerOpts {
    /// Address to listen on, e.g. 127.0.0.1:8080 or 0.0.0.0:0 (port 0 picks a free port) [default: the command's own]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// I/O driver: auto, uring or epoll [default: $PROACTOR_DRIVER, else auto]
    #[arg(long, value_name = "DRIVER")]
    pub driver: Option<DriverChoice>,

    /// Most connections served at once; more are accepted and closed at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_conns: usize,

    /// On SIGINT/SIGTERM, how long open connections may take to finish before the server exits.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,

    /// Proactor threads serving connections, each with its own ring or epoll driver (0: one per
    /// core). Used by servers started through `serve_threads`.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,

    /// How connections receive: multishot (one request for the whole connection, a completion
    /// per chunk) or oneshot (a request per receive), for comparing the two. Each server states
    /// its default, and the figure behind it, where it picks the receive.
    #[arg(long, value_enum, value_name = "HOW", hide = true)]
    pub recv: Option<RecvMode>,
}

/// Parses a duration: `250ms`, `5s`, `2m`, `1h`, or a plain number of seconds (`1.5`).
///
/// For clap: `#[arg(value_parser = crate::server::parse_duration)]`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 250ms, 5s, 2m or 1.5"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!("invalid duration unit {other:?} in {s:?}: use ms, s, m or h"))
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// One accepted connection's bookkeeping, handed to the connection code with the socket.
///
/// Holding it keeps the connection's place under `--max-conns`; dropping it frees the place and,
/// during shutdown, lets the server exit as soon as the last one is gone.
pub struct Conn {
    id: u64,
    peer: SocketAddr,
    shutdown: Event,
    count: Rc<ConnCount>,
    /// Kept alive with the connection (with `--threads`: its place in the cross-thread counts).
    _extra: Option<Box<dyn std::any::Any>>,
}

impl Conn {
    /// A number unique within this server run (1, 2, ...), for logs.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The server's stop event: set when SIGINT/SIGTERM arrives. Connections that would stay
    /// open forever (chat) should await it and say goodbye; others may ignore it and just
    /// finish within the grace period.
    pub fn shutdown(&self) -> &Event {
        &self.shutdown
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.count.remove();
        tracing::debug!(conn = self.id, peer = %self.peer, "connection closed");
    }
}

/// A bound server, ready to run: the proactor, the listening socket, the signal watcher.
pub struct Server {
    name: &'static str,
    proactor: Proactor,
    listener: Rc<TcpListener>,
    addr: SocketAddr,
    max_conns: usize,
    grace: Duration,
    signals: StopSignals,
    shutdown: Event,
    count: Rc<ConnCount>,
}

/// Hands out [`Conn`]s: the id counter and the shared state every connection points to.
struct Admission {
    name: &'static str,
    next_id: u64,
    max_conns: usize,
    shutdown: Event,
    count: Rc<ConnCount>,
}

impl Admission {
    /// Books a place for a new connection, or `None` (after closing it) past `--max-conns`.
    fn admit<S: Accepted>(&mut self, stream: TcpStream, peer: SocketAddr) -> Option<(S, Conn)> {
        if self.count.open() >= self.max_conns {
            tracing::debug!(
                "{}: --max-conns {} reached; closing {peer}",
                self.name,
                self.max_conns
            );
            return None; // dropping the stream closes it: the client reads EOF at once
        }
        let stream = match S::from_accepted(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("{}: accepted connection from {peer} unusable: {e}", self.name);
                return None;
            }
        };
        self.next_id += 1;
        self.count.add();
        tracing::debug!(conn = self.next_id, %peer, "connection accepted");
        let conn = Conn {
            id: self.next_id,
            peer,
            shutdown: self.shutdown.clone(),
            count: self.count.clone(),
            _extra: None,
        };
        Some((stream, conn))
    }
}

impl Server {
    /// Starts the driver, binds (`opts.listen`, else `default_listen`) and installs the signal
    /// watcher. `name` prefixes log lines. Prints nothing yet.
    pub fn bind(
        name: &'static str,
        opts: &ServerOpts,
        default_listen: SocketAddr,
    ) -> anyhow::Result<Server> {
        use anyhow::Context as _;
        if threads::thread_count(opts) > 1 {
            tracing::warn!(
                "{name}: --threads is not supported by this server yet; one thread serves"
            );
        }
        raise_fd_limit();
        let mut builder = Proactor::builder().entries(1024);
        if let Some(d) = opts.driver {
            builder = builder.driver(d);
        }
        let proactor = builder.build().context("cannot start the I/O driver")?;
        let want = opts.listen.unwrap_or(default_listen);
        let listener = listen(want).with_context(|| format!("cannot listen on {want}"))?;
        let addr = listener.local_addr()?;
        let signals = StopSignals::install().context("cannot install the signal handlers")?;
        tracing::info!("{name}: driver {}", proactor.driver_kind());
        Ok(Server {
            name,
            proactor,
            listener: Rc::new(listener),
            addr,
            max_conns: opts.max_conns.max(1),
            grace: opts.grace,
            signals,
            shutdown: Event::new(),
            count: Rc::default(),
        })
    }

    /// The address the server listens on (with the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proactor's handle, to start operations from completion handlers.
    pub fn handle(&self) -> Handle {
        self.proactor.handle()
    }

    /// Runs until stopped, spawning `on_conn(stream, conn)` as a task for each connection.
    /// Returns the process exit code (0 after a signal-initiated stop).
    pub fn run_tasks<S, F, Fut>(self, mut on_conn: F) -> ExitCode
    where
        S: Accepted,
        F: FnMut(S, Conn) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let handle = self.proactor.handle();
        self.run_handlers(move |stream: S, conn| {
            drop(handle.spawn(on_conn(stream, conn)));
        })
    }

    /// Runs until stopped, calling `on_conn(stream, conn)` on the loop's thread for each
    /// connection. The closure must not block: it starts the connection's first operation (a
    /// completion handler, or a spawned task) and keeps `conn` alive until the connection is done.
    /// Returns the process exit code (0 after a signal-initiated stop).
    pub fn run_handlers<S, F>(self, on_conn: F) -> ExitCode
    where
        S: Accepted,
        F: FnMut(S, Conn) + 'static,
    {
        announce(self.local_addr());
        let Server {
            name,
            proactor,
            listener,
            addr: _,
            max_conns,
            grace,
            signals,
            shutdown,
            count,
        } = self;
        let admission = Admission { name, next_id: 0, max_conns, shutdown, count };
        let stopping = Stopping { name, grace, signals };
        let result = proactor.block_on(stopping.main_loop(listener, admission, on_conn));
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name}: error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// What the main loop needs besides the listener and the admission desk.
struct Stopping {
    name: &'static str,
    grace: Duration,
    signals: StopSignals,
}

impl Stopping {
    /// Accepts until a signal, then stops accepting and drains.
    async fn main_loop<S, F>(
        &self,
        listener: Rc<TcpListener>,
        mut admission: Admission,
        mut on_conn: F,
    ) -> io::Result<()>
    where
        S: Accepted,
        F: FnMut(S, Conn),
    {
        // Accept until the first signal, from one multishot accept (`Incoming`: a completion
        // per connection, no submission per accept; one accept at a time where the kernel
        // lacks it). On the signal it is cancelled and drained, not dropped: connections the
        // kernel completed first are served like any other instead of closed under their
        // clients.
        let mut policy = AcceptPolicy::new();
        let mut incoming = proactor::net::Incoming::new(listener.clone());
        loop {
            let next = match race(incoming.next(), self.signals.nth(1)).await {
                Either::Left(next) => next,
                Either::Right(()) => {
                    incoming.cancel();
                    while let Some(res) = incoming.next().await {
                        if let Ok(fd) = res {
                            admit_accepted(&mut admission, fd, &mut on_conn);
                        }
                    }
                    break;
                }
            };
            match next {
                Some(Ok(fd)) => {
                    policy.on_success();
                    admit_accepted(&mut admission, fd, &mut on_conn);
                }
                Some(Err(e)) => match policy.on_error(&e, false) {
                    AcceptAction::Retry | AcceptAction::Stop => {}
                    AcceptAction::Wait(delay) => {
                        let pause = proactor::time::sleep(delay);
                        if let Either::Right(()) = race(pause, self.signals.nth(1)).await {
                            break;
                        }
                    }
                    AcceptAction::Fail => {
                        return Err(io::Error::new(e.kind(), format!("accept: {e}")));
                    }
                },
                None => break,
            }
        }
        // Connections the kernel already completed are waiting in the backlog: their clients may
        // be sending already, so serve them too rather than reset them, then close the listener
        // (new connects are refused from then on).
        let late = drain_backlog(&listener, &mut admission, &mut on_conn);
        drop(listener);
        admission.shutdown.set();
        let count = admission.count.clone();
        tracing::info!(
            "{}: stopping; waiting up to {:?} for {} open connection(s) ({late} from the backlog)",
            self.name,
            self.grace,
            count.open()
        );
        let waiting = race(count.drained(), self.signals.nth(2));
        match race(waiting, proactor::time::sleep(self.grace)).await {
            Either::Left(Either::Left(())) => tracing::info!("{}: all connections done", self.name),
            Either::Left(Either::Right(())) => tracing::warn!(
                "{}: second signal: closing {} connection(s) now",
                self.name,
                count.open()
            ),
            Either::Right(_) => tracing::warn!(
                "{}: grace period over: closing {} connection(s)",
                self.name,
                count.open()
            ),
        }
        Ok(())
    }
}

/// Admits a connection the accept loop got (its peer's address asked of the socket).
fn admit_accepted<S, F>(admission: &mut Admission, fd: std::os::fd::OwnedFd, on_conn: &mut F)
where
    S: Accepted,
    F: FnMut(S, Conn),
{
    let stream = TcpStream::from(fd);
    let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    if let Some((stream, conn)) = admission.admit(stream, peer) {
        on_conn(stream, conn);
    }
}

/// Accepts, without waiting, every connection already in the listener's backlog.
fn drain_backlog<S, F>(listener: &TcpListener, admission: &mut Admission, on_conn: &mut F) -> usize
where
    S: Accepted,
    F: FnMut(S, Conn),
{
    let mut n = 0;
    loop {
        // The listener is non-blocking: this never waits.
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nonblocking(true) {
                    tracing::debug!("{}: backlog connection: {e}", admission.name);
                    continue;
                }
                if let Some((stream, conn)) = admission.admit(stream, peer) {
                    n += 1;
                    on_conn(stream, conn);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return n,
            Err(e) => {
                tracing::debug!("{}: draining the backlog: {e}", admission.name);
                return n;
            }
        }
    }
}

/// Binds a `Server` (printing why on failure) and runs `on_conn` as a task per connection.
/// The usual entry point of a server command; returns its exit code.
pub fn serve<S, F, Fut>(
    name: &'static str,
    opts: &ServerOpts,
    default_listen: SocketAddr,
    on_conn: F,
) -> ExitCode
where
    S: Accepted,
    F: FnMut(S, Conn) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    match Server::bind(name, opts, default_listen) {
        Ok(server) => server.run_tasks(on_conn),
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the `listening on` line and flushes it.
fn announce(addr: SocketAddr) {
    let mut out = io::stdout().lock();
    // A closed stdout must not stop the server; the address is in the log as well.
    let _ = writeln!(out, "listening on {addr}").and_then(|()| out.flush());
    tracing::info!("listening on {addr}");
}

/// A non-blocking listening socket with SO_REUSEADDR (a restart need not wait for TIME_WAIT)
/// and TCP_NODELAY, which every connection accepted from it inherits (Linux copies the
/// listener's TCP options into each accepted socket): a reply goes out as soon as it is
/// written, without one `setsockopt` per connection.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
    socket.set_reuse_address(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Raises the soft limit on open descriptors to the hard limit: a server with thousands of
/// connections needs more than the usual 1024.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid out-parameter for getrlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur >= lim.rlim_max
    {
        return;
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit; raising the soft limit up to the hard one is always allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        tracing::debug!("raising RLIMIT_NOFILE: {}", io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::{listen, parse_duration};
    use std::time::Duration;

    #[test]
    fn accepted_connections_inherit_nodelay_from_the_listener() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        listener.set_nonblocking(false).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap(), "the server no longer sets TCP_NODELAY per socket");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
