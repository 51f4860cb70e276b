//! TCP: a listener that accepts (riding out descriptor exhaustion) and a stream with the usual
//! socket options, connect with a timeout, and a split into halves usable concurrently.

use super::accept::{self, AcceptPolicy, AcceptStats};
use super::split::{ReadHalf, WriteHalf};
use super::stream::{
    impl_async_read, impl_async_write, read_methods, socket_common, write_methods,
};
use super::{first_ok, inet_addr, new_socket, prepare_fd};
use crate::op::Connect;
use crate::submit;
use socket2::{Domain, Protocol, SockAddr, TcpKeepalive, Type};
use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

/// Default length of the accept queue.
const DEFAULT_BACKLOG: i32 = 1024;

/// A listening TCP socket.
///
/// [`TcpListener::accept`] never spins and never gives up while the process is out of
/// descriptors: it backs off and retries (see [`AcceptStats`]).
pub struct TcpListener {
    fd: Rc<OwnedFd>,
    /// The accept-error policy of [`TcpListener::accept`] (its back-off and counters).
    policy: RefCell<AcceptPolicy>,
}

/// Options for a new [`TcpListener`]: backlog, `SO_REUSEADDR`, `SO_REUSEPORT`.
#[derive(Debug, Clone)]
pub struct TcpListenerBuilder {
    backlog: i32,
    reuse_address: bool,
    reuse_port: bool,
}

impl Default for TcpListenerBuilder {
    fn default() -> Self {
        TcpListenerBuilder { backlog: DEFAULT_BACKLOG, reuse_address: true, reuse_port: false }
    }
}

impl TcpListenerBuilder {
    /// Length of the accept queue (default 1024; the kernel caps it at `somaxconn`).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog.min(i32::MAX as u32) as i32;
        self
    }

    /// `SO_REUSEADDR` (default on): rebind at once after a restart.
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.reuse_address = on;
        self
    }

    /// `SO_REUSEPORT` (default off): several listeners on one port, the kernel spreading
    /// connections among them (one listener per proactor thread).
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// Binds to the first of `addr`'s addresses that works, and listens. A literal address is
    /// parsed on the spot; a host name is looked up on this thread, as `std` does (see
    /// [`crate::net::lookup_host`] to resolve it off the loop first).
    pub fn bind(self, addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        first_ok(addr, |addr| self.bind_one(addr))
    }

    fn bind_one(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        let sock = new_socket(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_reuse_address(self.reuse_address)?;
        if self.reuse_port {
            sock.set_reuse_port(true)?;
        }
        sock.bind(&addr.into()).map_err(|e| with_addr(e, "bind", addr))?;
        sock.listen(self.backlog)?;
        Ok(TcpListener { fd: Rc::new(sock.into()), policy: RefCell::default() })
    }
}

impl TcpListener {
    /// Binds and listens on `addr` with the default options (backlog 1024, `SO_REUSEADDR`).
    /// A host name is looked up on this thread (see [`TcpListenerBuilder::bind`]).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        TcpListenerBuilder::default().bind(addr)
    }

    /// Options for a listener; finish with [`TcpListenerBuilder::bind`].
    pub fn builder() -> TcpListenerBuilder {
        TcpListenerBuilder::default()
    }

    /// Wraps a listening `std` socket (made non-blocking here). Fails with `InvalidInput` if
    /// the descriptor is not a stream socket (see [`crate::net::AcceptErrorClass`]).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        let fd: OwnedFd = listener.into();
        accept::check_stream(&fd, "TcpListener::from_std")?;
        Ok(TcpListener { fd: Rc::new(prepare_fd(fd)?), policy: RefCell::default() })
    }

    /// Accepts the next connection.
    ///
    /// Errors follow the crate's accept policy ([`crate::net::AcceptPolicy`]): out of
    /// descriptors (`EMFILE`/`ENFILE`) or memory, it sleeps with a growing back-off and
    /// retries, logging once per burst; a connection that failed before it was accepted is
    /// skipped. It returns an error only when the listener itself is unusable (or the operation
    /// was cancelled). Dropping the future cancels the accept; a connection accepted meanwhile
    /// is closed, never leaked.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = accept::accept(&self.fd, &self.policy).await?;
        Ok((TcpStream::from_owned(fd), inet_addr(&addr)?))
    }

    /// Accepts one connection with no retries: every error, `EMFILE` included, is returned.
    pub async fn accept_once(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = submit(crate::op::Accept::new(self.fd.clone())).await?;
        Ok((TcpStream::from_owned(fd), inet_addr(&addr)?))
    }

    /// Every connection, from one multishot accept (see [`Incoming`](super::Incoming)): for a
    /// busy accept loop, no submission per connection. Errors come out as they happen, for the
    /// loop's [`AcceptPolicy`](super::AcceptPolicy); peers' addresses are not recorded (each
    /// connection's `peer_addr` tells).
    pub fn incoming(&self) -> super::Incoming<Rc<OwnedFd>> {
        super::Incoming::new(self.fd.clone())
    }

    /// How often accepting hit resource exhaustion or skipped a failed connection.
    pub fn accept_stats(&self) -> AcceptStats {
        self.policy.borrow().stats()
    }

    /// The address the listener is bound to (with the real port after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(&socket2::SockRef::from(&*self.fd).local_addr()?)
    }

    /// The listener's descriptor number (still owned by the listener).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A connected TCP socket.
///
/// Its methods take `&self` and return operation futures that hand the buffer back:
/// `let (res, buf) = stream.read(buf).await;`. To read and write from two tasks at once, use
/// [`TcpStream::into_split`] (or share the stream through an `Rc`).
pub struct TcpStream {
    fd: Rc<OwnedFd>,
}

impl TcpStream {
    pub(crate) fn from_owned(fd: OwnedFd) -> TcpStream {
        TcpStream { fd: Rc::new(fd) }
    }

    /// Connects to the first of `addr`'s addresses that accepts.
    ///
    /// A literal address (`"127.0.0.1:80"`, a `SocketAddr`) is used as it is; a name
    /// (`"localhost:8080"`, `("example.org", 443)`) is looked up on the offload pool
    /// ([`crate::offload`]), so a slow resolver delays only this task, never the loop's other
    /// connections.
    pub async fn connect(addr: impl super::ToSocketAddrs) -> io::Result<TcpStream> {
        Self::connect_inner(addr, None).await
    }

    /// Connects like [`TcpStream::connect`], giving up on each address after `timeout` with an
    /// `ErrorKind::TimedOut` error (for example when the peer's accept queue is full and its
    /// kernel drops our SYNs).
    pub async fn connect_timeout(
        addr: impl super::ToSocketAddrs,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        Self::connect_inner(addr, Some(timeout)).await
    }

    async fn connect_inner(
        addr: impl super::ToSocketAddrs,
        timeout: Option<Duration>,
    ) -> io::Result<TcpStream> {
        let addrs = super::resolve::resolve(addr).await?;
        let mut last = None;
        for addr in addrs {
            match Self::connect_one(addr, timeout).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        // `resolve` never returns an empty list; should it, say so rather than panic.
        Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::InvalidInput)))
    }

    async fn connect_one(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
        let sock = new_socket(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        let fd = Rc::new(OwnedFd::from(sock));
        let mut op = submit(Connect::new(fd.clone(), SockAddr::from(addr)));
        if let Some(t) = timeout {
            op = op.deadline(t);
        }
        match op.await {
            Ok(()) => Ok(TcpStream { fd }),
            Err(e) if timeout.is_some() && e.kind() == io::ErrorKind::TimedOut => {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out after {:?}", timeout.unwrap_or_default()),
                ))
            }
            Err(e) => Err(with_addr(e, "connect", addr)),
        }
    }

    /// Wraps a connected `std` stream (made non-blocking here).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream { fd: Rc::new(prepare_fd(stream.into())?) })
    }

    read_methods!();
    write_methods!();
    socket_common!();

    /// Splits into a read half and a write half that can be used from two tasks at once. The
    /// socket closes when both halves (and any operation still using it) are gone.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        super::split::split(self.fd)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(&self.as_socket().peer_addr()?)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(&self.as_socket().local_addr()?)
    }

    /// `TCP_NODELAY`: send small segments at once instead of coalescing them (Nagle).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.as_socket().set_nodelay(on)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.as_socket().nodelay()
    }

    /// TCP keep-alive: with `Some(idle)`, probes start after `idle` without traffic; `None`
    /// turns keep-alive off.
    pub fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        let sock = self.as_socket();
        match idle {
            None => sock.set_keepalive(false),
            Some(t) => sock.set_tcp_keepalive(&TcpKeepalive::new().with_time(t)),
        }
    }

    /// Whether keep-alive is on.
    pub fn keepalive(&self) -> io::Result<bool> {
        self.as_socket().keepalive()
    }

    /// `SO_LINGER`: `Some(Duration::ZERO)` makes close send a reset instead of a FIN.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.as_socket().set_linger(linger)
    }
}

impl_async_read!(TcpStream);
impl_async_write!(TcpStream);

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream").field("fd", &self.as_raw_fd()).finish()
    }
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener").field("fd", &self.as_raw_fd()).finish()
    }
}

/// Adds the operation and address to an error, keeping its kind and OS error reachable.
pub(crate) fn with_addr(err: io::Error, what: &str, addr: impl std::fmt::Display) -> io::Error {
    crate::io::context(err, format_args!("{what} {addr}"))
}
