//! `proactor proxy`: a port-forwarding proxy. For each client it connects to the upstream and
//! relays both directions concurrently ([`relay`]), passing on half-closes, with bounded buffers
//! per direction, an idle timeout and a log line per connection. The accept loop, connection cap,
//! `listening on` line and SIGTERM grace come from `crate::server`.

#[allow(dead_code)] // Called by `proactor bench` (cli/src/cmd/bench.rs).
pub mod bench;
pub mod relay;

use crate::server::{race, Conn, Either, RecvMode};
use proactor::buf::BufPool;
use proactor::op::{self, Connect};
use relay::{Pipe, Traffic};
use socket2::{Domain, SockAddr, Socket, Type};
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How the proxy treats each connection.
#[derive(Debug, Clone)]
pub struct Config {
    /// Upstream addresses (resolved once at start), tried in order.
    pub upstream: Vec<SocketAddr>,
    /// The upstream as the user wrote it, for logs.
    pub upstream_name: String,
    /// Limit on connecting upstream.
    pub connect_timeout: Duration,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// Bytes per relay buffer (two per direction).
    pub buffer: usize,
    /// Relay through a pipe with splice.
    pub splice: bool,
}

/// Why a connection ended, for its log line.
enum End {
    Done,
    Idle,
    Error(io::Error),
}

/// Connects to the upstream within the timeout, trying each address in turn.
async fn connect_upstream(cfg: &Config) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no upstream address");
    for &addr in &cfg.upstream {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
        socket.set_nonblocking(true)?;
        let socket = Rc::new(socket);
        let res = proactor::submit(Connect::new(socket.clone(), SockAddr::from(addr)))
            .deadline(cfg.connect_timeout)
            .await;
        match res {
            Ok(()) => {
                let socket =
                    Rc::try_unwrap(socket).map_err(|_| io::Error::other("socket shared"))?;
                let stream = TcpStream::from(socket);
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                last = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out after {:?}", cfg.connect_timeout),
                );
            }
            Err(e) => {
                last = io::Error::new(e.kind(), format!("connect to {addr}: {}", describe(&e)));
            }
        }
    }
    Err(last)
}

/// The OS error without the operation wrapper.
fn describe(e: &io::Error) -> String {
    match op::raw_os_error(e) {
        Some(n) => {
            let s = io::Error::from_raw_os_error(n).to_string();
            s.split(" (os error").next().unwrap_or(&s).to_lowercase()
        }
        None => e.to_string(),
    }
}

/// The receive pool of a proxy thread on the proactor of `handle`, when its directions relay
/// from a multishot receive (see [`relay::streamed`]); `None` relays through two buffers per
/// direction ([`relay::buffered`]).
///
/// Multishot by default where the driver can run it: a direction costs one receive request
/// instead of one per chunk, the same receive path as the echo's default (`recv_multishot` in
/// cmd/echo.rs, with its figures). Not settled here: compare with `proactor bench proxy` and
/// `proactor bench proxy --proxy-arg=--recv --proxy-arg=oneshot` on a quiet machine.
pub fn recv_pool(handle: &proactor::Handle, mode: RecvMode) -> Option<BufPool> {
    let (buffers, size) = (relay::POOL_BUFFERS, relay::POOL_BUFFER_SIZE);
    crate::server::multishot_pool("proxy", handle, mode, buffers, size)
}

/// How the proxy's directions receive: `--recv`, multishot by default (see [`recv_pool`]).
pub fn recv_mode(opts: &crate::server::ServerOpts) -> RecvMode {
    opts.recv.unwrap_or(RecvMode::Multishot)
}

/// Serves one client: connect upstream, relay both ways, log the outcome. With a `pool`, each
/// direction relays from a multishot receive into it (unless `--splice`).
pub async fn handle(client: TcpStream, conn: Conn, cfg: Rc<Config>, pool: Option<BufPool>) {
    let started = Instant::now();
    let id = conn.id();
    let peer = conn.peer();
    let upstream = match connect_upstream(&cfg).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "proxy: conn {id} from {peer}: upstream {} unavailable: {e}; closing the client",
                cfg.upstream_name
            );
            return;
        }
    };
    let client = Rc::new(client);
    let upstream = Rc::new(upstream);
    let activity = Rc::new(Cell::new(0));
    let up = Traffic::new(activity.clone());
    let down = Rc::new(Traffic::new(activity.clone()));
    let end = if cfg.splice {
        let relaying = relay_both(&cfg, &client, &upstream, &up, &down, id);
        watched(relaying, cfg.idle_timeout, activity).await
    } else if let Some(pool) = &pool {
        let a = relay::streamed(client.clone(), upstream.clone(), pool, &up);
        let b = relay::streamed_apart(upstream.clone(), client.clone(), pool.clone(), down.clone());
        watched(relay::try_join(a, b), cfg.idle_timeout, activity).await
    } else {
        // The common case, with no layer between the task and the two directions.
        let a = relay::buffered(client.clone(), upstream.clone(), cfg.buffer, &up);
        let b = relay::buffered(upstream.clone(), client.clone(), cfg.buffer, &down);
        watched(relay::try_join(a, b), cfg.idle_timeout, activity).await
    };
    if let End::Error(_) = &end {
        // A direction that failed (a reset, a send error) ends the connection abortively on
        // both sides: closing normally would send the other peer a FIN, and a FIN says the
        // stream is complete when it was cut short.
        let _ = socket2::SockRef::from(&*client).set_linger(Some(Duration::ZERO));
        let _ = socket2::SockRef::from(&*upstream).set_linger(Some(Duration::ZERO));
    }
    let how = match &end {
        End::Done => "closed".to_string(),
        End::Idle => format!("idle for {:?}, closed", cfg.idle_timeout.unwrap_or_default()),
        End::Error(e) => format!("ended by error: {}", describe(e)),
    };
    tracing::info!(
        "proxy: conn {id} {peer} <-> {}: {} bytes up, {} bytes down, {:.3}s, {how}",
        cfg.upstream_name,
        up.bytes.get(),
        down.bytes.get(),
        started.elapsed().as_secs_f64()
    );
    drop(conn);
}

/// Runs the relay, racing it against the idle timer when there is one.
async fn watched<T>(
    relaying: impl Future<Output = io::Result<T>>,
    idle: Option<Duration>,
    activity: Rc<Cell<u64>>,
) -> End {
    match idle {
        None => match relaying.await {
            Ok(_) => End::Done,
            Err(e) => End::Error(e),
        },
        Some(idle) => match race(relaying, idle_watch(activity, idle)).await {
            Either::Left(Ok(_)) => End::Done,
            Either::Left(Err(e)) => End::Error(e),
            Either::Right(()) => End::Idle,
        },
    }
}

/// Completes once no byte moved either way for `idle` (checked every eighth of it, so it ends
/// between `idle` and `idle` × 1.125 after the last transfer). The relay only bumps a counter
/// per transfer; the clock is read here, a few times per `idle`, not once per message.
async fn idle_watch(activity: Rc<Cell<u64>>, idle: Duration) {
    let tick = (idle / 8).max(Duration::from_millis(1));
    let (mut seen, mut since) = (activity.get(), Instant::now());
    loop {
        let _ = proactor::time::sleep(tick).await;
        let now = activity.get();
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() >= idle {
            return;
        }
    }
}

/// Both directions at once; ends when both have ended (each passes its half-close on), or at
/// the first error.
async fn relay_both(
    cfg: &Config,
    client: &Rc<TcpStream>,
    upstream: &Rc<TcpStream>,
    up: &Traffic,
    down: &Traffic,
    id: u64,
) -> io::Result<()> {
    let a = direction(cfg, client.clone(), upstream.clone(), up, id);
    let b = direction(cfg, upstream.clone(), client.clone(), down, id);
    relay::try_join(a, b).await.map(drop)
}

/// One direction of a `--splice` relay: spliced where possible, else buffered.
async fn direction(
    cfg: &Config,
    from: Rc<TcpStream>,
    to: Rc<TcpStream>,
    traffic: &Traffic,
    id: u64,
) -> io::Result<()> {
    if cfg.splice {
        match Pipe::new(cfg.buffer.max(65536)) {
            Ok(pipe) => match relay::spliced(from.clone(), to.clone(), pipe, traffic).await {
                Ok(()) => return Ok(()),
                Err(Err(e)) => return Err(e),
                Err(Ok(relay::Unsupported(e))) => tracing::warn!(
                    "proxy: conn {id}: splice refused ({}); relaying through buffers",
                    describe(&e)
                ),
            },
            Err(e) => tracing::warn!(
                "proxy: conn {id}: cannot create a pipe ({e}); relaying through buffers"
            ),
        }
    }
    relay::buffered(from, to, cfg.buffer, traffic).await
}

/// Whether the driver in use can splice: io_uring needs the SPLICE opcode; the epoll emulation
/// calls splice(2), which Linux always has.
pub fn splice_supported(kind: proactor::DriverKind) -> Result<(), String> {
    match kind {
        proactor::DriverKind::Epoll => Ok(()),
        proactor::DriverKind::Uring => match proactor::driver::probe_kernel() {
            Ok(p) if p.opcodes.iter().any(|(n, _, ok)| *n == "SPLICE" && *ok) => Ok(()),
            Ok(_) => Err("this kernel's io_uring has no SPLICE operation".into()),
            Err(e) => Err(format!("cannot probe io_uring: {e}")),
        },
        other => Err(format!("splice is not known to work on the {other} driver")),
    }
}
