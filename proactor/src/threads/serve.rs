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
use crate::net::{AcceptAction, AcceptPolicy};
use crate::op::Accept;
use crate::runtime::{submit, Builder, Handle};
use crate::time::sleep;
use socket2::{Domain, Protocol, Socket, Type};
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// What stops the accept loops: a flag they check, and the listening sockets, which are shut
/// down to wake an accept in flight (it then fails with `EINVAL`).
struct StopState {
    stopping: AtomicBool,
    listeners: Vec<Arc<TcpListener>>,
    running: Mutex<usize>,
    done: Condvar,
}

impl StopState {
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
    state: Arc<StopState>,
    acceptor: Option<std::thread::JoinHandle<io::Result<()>>>,
    accepted: Arc<AtomicUsize>,
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
        self.accepted.load(Ordering::Relaxed)
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
fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(sock.into())
}

/// Accepts on `listener` until the server stops, handing each connection to `deliver`. Errors
/// follow the crate's accept policy ([`crate::net::AcceptPolicy`]); once [`Server::stop`] has
/// set the flag, the error it causes (the listener shut down) ends the loop quietly.
async fn accept_loop(
    listener: Arc<TcpListener>,
    state: Arc<StopState>,
    accepted: Arc<AtomicUsize>,
    mut deliver: impl FnMut(TcpStream, SocketAddr),
) -> io::Result<()> {
    let mut policy = AcceptPolicy::new();
    loop {
        match submit(Accept::new(listener.clone())).await {
            Ok((fd, addr)) => {
                policy.on_success();
                let stream = TcpStream::from(fd);
                // Request/response traffic must not wait on Nagle; failure here is harmless.
                let _ = stream.set_nodelay(true);
                let peer = addr.as_socket().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                accepted.fetch_add(1, Ordering::Relaxed);
                deliver(stream, peer);
            }
            Err(e) => match policy.on_error(&e, state.stopping.load(Ordering::SeqCst)) {
                AcceptAction::Retry => {}
                // A failed sleep (the driver's own error) only shortens the wait.
                AcceptAction::Wait(delay) => {
                    let _ = sleep(delay).await;
                }
                AcceptAction::Fail => return Err(e),
                AcceptAction::Stop => return Ok(()),
            },
        }
    }
}

/// The per-connection function, shared by every thread.
type PerConn<C> = Arc<C>;

impl MultiProactor {
    /// Listens on `addr` and serves every connection on one of the threads: `per_conn(stream,
    /// conn)` is called on the chosen thread and the future it returns is spawned there (so it
    /// need not be `Send`). The stream is a connected, blocking-mode `std` socket with
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
        let state = Arc::new(StopState {
            stopping: AtomicBool::new(false),
            listeners: vec![listener.clone()],
            running: Mutex::new(0),
            done: Condvar::new(),
        });
        let accepted = Arc::new(AtomicUsize::new(0));
        let workers = self.workers();
        let builder = self.acceptor_builder();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (st, acc) = (state.clone(), accepted.clone());
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
                p.block_on(accept_loop(listener, st, acc, move |stream, peer| {
                    hand_off(&workers, &per_conn, stream, peer)
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
            accepted,
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
        let state = Arc::new(StopState {
            stopping: AtomicBool::new(false),
            listeners: listeners.clone(),
            running: Mutex::new(listeners.len()),
            done: Condvar::new(),
        });
        let accepted = Arc::new(AtomicUsize::new(0));
        for (w, listener) in self.workers().iter().zip(listeners) {
            let (st, acc, pc) = (state.clone(), accepted.clone(), per_conn.clone());
            let worker = w.clone();
            let posted = w.spawn(move || async move {
                let res = accept_loop(listener, st.clone(), acc, move |stream, peer| {
                    let conn = Conn { worker: worker.index, peer, _live: worker.load.enter() };
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
        Ok(Server {
            local_addr,
            distribution: Distribution::ReusePort,
            state,
            acceptor: None,
            accepted,
        })
    }
}

/// Sends one accepted connection to the least-loaded thread.
fn hand_off<C, F>(workers: &Workers, per_conn: &PerConn<C>, stream: TcpStream, peer: SocketAddr)
where
    C: Fn(TcpStream, Conn) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + 'static,
{
    let w = workers.least_loaded();
    let conn = Conn { worker: w.index, peer, _live: w.load.enter() };
    let pc = per_conn.clone();
    // If the thread is gone the closure (and the connection with it) is dropped: the client
    // sees the connection close.
    let _ = w.post(move || {
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
