//! Connection distribution: getting each new TCP connection onto one of the proactor threads.
//!
//! Two ways, chosen by [`Distribution`]:
//! - [`Distribution::Acceptor`] (the default): one acceptor thread with its own small proactor
//!   accepts every connection and posts it to [`Workers::least_loaded`] (by share of the live
//!   connections and of the measured CPU use), so a thread kept busy by heavy connections gets
//!   fewer new ones.
//! - [`Distribution::ReusePort`]: every thread has its own listening socket on the same port
//!   (`SO_REUSEPORT`) and the kernel spreads connections by a hash of their addresses — no
//!   hand-off, but blind to load.
//!
//! `docs/architecture.md` has the measurement behind the default.

use super::load::LiveGuard;
use super::{MultiProactor, Workers};
use crate::net::{AcceptAction, AcceptPolicy, Incoming};
use crate::runtime::{Builder, Handle};
use crate::time::sleep;
use socket2::{Domain, Protocol, Socket, Type};
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Listen backlog of every listening socket.
const BACKLOG: i32 = 1024;
/// How long [`Server::stop`] waits for the accept loops to notice.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// How new connections reach the proactor threads.
///
/// `non_exhaustive`: other ways (a multishot accept per thread, eBPF steering) may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Distribution {
    /// One acceptor hands each connection to the least-loaded thread (default).
    #[default]
    Acceptor,
    /// One listening socket per thread with `SO_REUSEPORT`; the kernel picks by address hash.
    ReusePort,
}

impl std::str::FromStr for Distribution {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "acceptor" => Ok(Distribution::Acceptor),
            "reuseport" | "reuse-port" | "so_reuseport" => Ok(Distribution::ReusePort),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown distribution {other:?}: expected acceptor or reuseport"),
            )),
        }
    }
}

/// One accepted connection's place on its thread. Keep it for as long as the connection is
/// served: dropping it tells the distributor the thread has one connection less.
#[derive(Debug)]
pub struct Conn {
    worker: usize,
    peer: SocketAddr,
    _live: LiveGuard,
}

impl Conn {
    /// Index of the thread serving this connection.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// What the accept loops share with their [`Server`]: what stops them (a flag they check, and
/// the listening sockets, which are shut down to wake an accept in flight: it then fails with
/// `EINVAL`), and what they count.
struct LoopState {
    stopping: AtomicBool,
    listeners: Vec<Arc<TcpListener>>,
    running: Mutex<usize>,
    done: Condvar,
    /// Connections accepted.
    accepted: AtomicUsize,
    /// Accept requests made ([`Incoming::requests`], summed over the loops).
    requests: AtomicU64,
}

impl LoopState {
    fn new(listeners: Vec<Arc<TcpListener>>, running: usize) -> Arc<LoopState> {
        Arc::new(LoopState {
            stopping: AtomicBool::new(false),
            listeners,
            running: Mutex::new(running),
            done: Condvar::new(),
            accepted: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        })
    }

    fn loop_ended(&self) {
        let mut n = self.running.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        self.done.notify_all();
    }
}

/// A listening server spread over the threads of a [`MultiProactor`]. Dropping it stops
/// accepting; connections already accepted keep running until they end or the threads stop.
pub struct Server {
    local_addr: SocketAddr,
    distribution: Distribution,
    state: Arc<LoopState>,
    acceptor: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("distribution", &self.distribution)
            .finish()
    }
}

impl Server {
    /// The address the server listens on (with the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How connections are distributed.
    pub fn distribution(&self) -> Distribution {
        self.distribution
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::Relaxed)
    }

    /// Accept requests made to the driver so far, over all the accept loops: one per listener
    /// while a multishot accept serves every connection (more after an error ended it), one
    /// per connection where the kernel refuses multishot accept and the loops fall back to one
    /// accept at a time.
    pub fn accept_requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Stops accepting (new connections are refused) and waits for the accept loops to end.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        self.state.stopping.store(true, Ordering::SeqCst);
        for l in &self.state.listeners {
            // SAFETY: shuts down a socket this server owns (the Arc keeps it open); a pending
            // accept on it then fails, which ends the loop.
            unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) };
        }
        let mut res = Ok(());
        if let Some(j) = self.acceptor.take() {
            res =
                j.join().unwrap_or_else(|_| Err(io::Error::other("the acceptor thread panicked")));
        }
        let n = self.state.running.lock().unwrap_or_else(|p| p.into_inner());
        let (n, timeout) = self
            .state
            .done
            .wait_timeout_while(n, STOP_WAIT, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() {
            tracing::warn!("{} accept loop(s) did not stop within {STOP_WAIT:?}", *n);
        }
        res
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            tracing::error!("stopping the server: {e}");
        }
    }
}

/// A listening TCP socket; with `reuse_port`, one of a group sharing the port.
///
/// `TCP_NODELAY` is set on the listener: Linux copies it into every socket accepted from it
/// (request/response traffic must not wait on Nagle), which saves a system call per
/// connection. Non-blocking, so the epoll driver's accepts never wait inside the call.
fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.set_nodelay(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(sock.into())
}

/// Accepts on `listener` until the server stops, handing each connection to `deliver`, from
/// one multishot accept ([`Incoming`]: a completion per connection and no submission, where
/// the kernel offers it; one accept at a time where it does not). Errors follow the crate's
/// accept policy ([`crate::net::AcceptPolicy`]); once [`Server::stop`] has set the flag, the
/// error it causes (the listener shut down) ends the loop quietly, after the connections the
/// kernel had already accepted are delivered.
///
/// The acceptor stays the one place that decides where a connection goes (each is placed as it
/// is taken from the stream, on the loads of that moment): a multishot accept armed on every
/// thread's ring instead would let the kernel pick, which ignores the load.
///
/// Accepted sockets are normal descriptors, not direct ones (`IORING_FILE_INDEX_ALLOC` into a
/// registered table): a registered file saves its look-up, ~27 ns per operation on 6.18
/// (`examples/fixed_files.rs`: a NOP that looks a file up costs 107-113 ns through the
/// descriptor table, 81-86 ns through the registered one), under 1% of a loopback send or
/// receive (~3.2 µs CPU each, the difference inside the noise), and a multishot receive looks
/// its file up once anyway. A direct descriptor would also live in the acceptor's ring only
/// (each hand-off would cost an `IORING_OP_MSG_RING`), and could not be the `std` socket
/// `per_conn` takes, be asked its peer's address, or serve sendfile or the epoll driver.
async fn accept_loop(
    listener: Arc<TcpListener>,
    state: Arc<LoopState>,
    mut deliver: impl FnMut(TcpStream),
) -> io::Result<()> {
    let mut policy = AcceptPolicy::new();
    let mut incoming = Incoming::new(listener);
    let mut requests = 0;
    loop {
        let next = incoming.next().await;
        let made = incoming.requests();
        state.requests.fetch_add(made - requests, Ordering::Relaxed);
        requests = made;
        let err = match next {
            Some(Ok(fd)) => {
                policy.on_success();
                state.accepted.fetch_add(1, Ordering::Relaxed);
                deliver(TcpStream::from(fd));
                continue;
            }
            Some(Err(e)) => e,
            // Only after a cancel, which this loop never asks for.
            None => return Ok(()),
        };
        match policy.on_error(&err, state.stopping.load(Ordering::SeqCst)) {
            AcceptAction::Retry => {}
            // A failed sleep (the driver's own error) only shortens the wait.
            AcceptAction::Wait(delay) => {
                let _ = sleep(delay).await;
            }
            AcceptAction::Fail => return Err(err),
            AcceptAction::Stop => return Ok(()),
        }
    }
}

/// A connection's place, made on the thread that serves it: the peer's address is asked of the
/// socket there (a multishot accept records none), off the acceptor's path.
fn place(worker: usize, stream: &TcpStream, live: LiveGuard) -> Conn {
    let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    Conn { worker, peer, _live: live }
}

/// The per-connection function, shared by every thread.
type PerConn<C> = Arc<C>;

impl MultiProactor {
    /// Listens on `addr` and serves every connection on one of the threads: `per_conn(stream,
    /// conn)` is called on the chosen thread and the future it returns is spawned there (so it
    /// need not be `Send`). The stream is a connected, non-blocking `std` socket with
    /// `TCP_NODELAY`; keep `conn` alive while serving.
    ///
    /// ```no_run
    /// use proactor::threads::{Distribution, MultiProactor};
    /// let threads = MultiProactor::new(2)?;
    /// let server = threads.serve("127.0.0.1:0".parse().unwrap(), Distribution::Acceptor,
    ///     |stream, conn| async move {
    ///         let (res, _buf) = proactor::submit(proactor::op::Send::new(stream, b"hi".as_slice())).await;
    ///         let _ = res;
    ///         drop(conn);
    ///     })?;
    /// println!("listening on {}", server.local_addr());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn serve<C, F>(
        &self,
        addr: SocketAddr,
        distribution: Distribution,
        per_conn: C,
    ) -> io::Result<Server>
    where
        C: Fn(TcpStream, Conn) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + 'static,
    {
        let per_conn = Arc::new(per_conn);
        match distribution {
            Distribution::Acceptor => self.serve_acceptor(addr, per_conn),
            Distribution::ReusePort => self.serve_reuse_port(addr, per_conn),
        }
    }

    fn serve_acceptor<C, F>(&self, addr: SocketAddr, per_conn: PerConn<C>) -> io::Result<Server>
    where
        C: Fn(TcpStream, Conn) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + 'static,
    {
        let listener = Arc::new(listen(addr, false)?);
        let local_addr = listener.local_addr()?;
        let state = LoopState::new(vec![listener.clone()], 0);
        let workers = self.workers();
        let builder = self.acceptor_builder();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let acceptor = std::thread::Builder::new().name("proactor-acceptor".into()).spawn(
            move || -> io::Result<()> {
                let p = match builder().build() {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                };
                let _ = ready_tx.send(Ok(()));
                p.block_on(accept_loop(listener, st, move |stream| {
                    hand_off(&workers, &per_conn, stream)
                }))
            },
        )?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = acceptor.join();
                return Err(e);
            }
            Err(_) => return Err(io::Error::other("the acceptor thread died")),
        }
        Ok(Server {
            local_addr,
            distribution: Distribution::Acceptor,
            state,
            acceptor: Some(acceptor),
        })
    }

    fn serve_reuse_port<C, F>(&self, addr: SocketAddr, per_conn: PerConn<C>) -> io::Result<Server>
    where
        C: Fn(TcpStream, Conn) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + 'static,
    {
        // The first socket fixes the port (when `addr` asks for port 0); the others join it.
        let first = listen(addr, true)?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![Arc::new(first)];
        for _ in 1..self.len() {
            listeners.push(Arc::new(listen(local_addr, true)?));
        }
        let state = LoopState::new(listeners.clone(), listeners.len());
        for (w, listener) in self.workers().iter().zip(listeners) {
            let (st, pc) = (state.clone(), per_conn.clone());
            let worker = w.clone();
            let posted = w.spawn(move || async move {
                let res = accept_loop(listener, st.clone(), move |stream| {
                    let conn = place(worker.index, &stream, worker.load.enter());
                    drop(Handle::current().spawn(pc(stream, conn)));
                })
                .await;
                if let Err(e) = res {
                    tracing::error!("accept loop on thread {}: {e}", worker.index);
                }
                st.loop_ended();
            });
            if posted.is_err() {
                state.loop_ended();
            }
        }
        Ok(Server { local_addr, distribution: Distribution::ReusePort, state, acceptor: None })
    }
}

/// Sends one accepted connection to the least-loaded thread. It counts there at once, so the
/// next connection's choice sees it.
fn hand_off<C, F>(workers: &Workers, per_conn: &PerConn<C>, stream: TcpStream)
where
    C: Fn(TcpStream, Conn) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + 'static,
{
    let w = workers.least_loaded();
    let (index, live) = (w.index, w.load.enter());
    let pc = per_conn.clone();
    // If the thread is gone the closure (and the connection with it) is dropped: the client
    // sees the connection close.
    let _ = w.post(move || {
        let conn = place(index, &stream, live);
        drop(Handle::current().spawn(pc(stream, conn)));
    });
}

impl MultiProactor {
    /// The builder of the acceptor thread's proactor: the threads' own settings.
    fn acceptor_builder(&self) -> impl FnOnce() -> Builder + Send + 'static {
        let configure = self.configure.clone();
        let driver = self.driver;
        let index = self.len();
        move || match (configure, driver) {
            (Some(f), _) => f(index),
            (None, Some(d)) => Builder::new().driver(d),
            (None, None) => Builder::new(),
        }
    }
}
