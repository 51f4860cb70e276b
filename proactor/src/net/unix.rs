//! Unix-domain stream sockets: a listener on a filesystem path and connected streams.

use super::accept::{self, AcceptPolicy, AcceptStats};
use super::split::{ReadHalf, WriteHalf};
use super::stream::{
    impl_async_read, impl_async_write, read_methods, socket_common, write_methods,
};
use super::{new_socket, prepare_fd};
use crate::op::Connect;
use crate::submit;
use socket2::{Domain, SockAddr, Type};
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;

/// A listening Unix-domain stream socket.
pub struct UnixListener {
    fd: Rc<OwnedFd>,
    /// The accept-error policy of [`UnixListener::accept`] (its back-off and counters).
    policy: RefCell<AcceptPolicy>,
}

impl UnixListener {
    /// Binds to `path` (which must not exist yet) and listens.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let path = path.as_ref();
        let sock = new_socket(Domain::UNIX, Type::STREAM, None)?;
        let addr = SockAddr::unix(path)?;
        sock.bind(&addr).map_err(|e| super::tcp::with_addr(e, "bind", path.display()))?;
        sock.listen(1024)?;
        Ok(UnixListener { fd: Rc::new(sock.into()), policy: RefCell::default() })
    }

    /// Wraps a listening `std` socket (made non-blocking here). Fails with `InvalidInput` if
    /// the descriptor is not a stream socket (see [`crate::net::AcceptErrorClass`]).
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        let fd: OwnedFd = listener.into();
        accept::check_stream(&fd, "UnixListener::from_std")?;
        Ok(UnixListener { fd: Rc::new(prepare_fd(fd)?), policy: RefCell::default() })
    }

    /// Accepts the next connection, riding out descriptor exhaustion like
    /// [`crate::net::TcpListener::accept`]. The address of a client is usually unnamed.
    pub async fn accept(&self) -> io::Result<(UnixStream, SockAddr)> {
        let (fd, addr) = accept::accept(&self.fd, &self.policy).await?;
        Ok((UnixStream { fd: Rc::new(fd) }, addr))
    }

    /// Every connection, from one multishot accept, as
    /// [`TcpListener::incoming`](super::TcpListener::incoming) gives them (wrap each with
    /// [`UnixStream::from_std`]).
    pub fn incoming(&self) -> super::Incoming<Rc<OwnedFd>> {
        super::Incoming::new(self.fd.clone())
    }

    /// How often accepting hit resource exhaustion or skipped a failed connection.
    pub fn accept_stats(&self) -> AcceptStats {
        self.policy.borrow().stats()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SockAddr> {
        socket2::SockRef::from(&*self.fd).local_addr()
    }

    /// The descriptor number (still owned by the listener).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A connected Unix-domain stream socket, with the same I/O methods as
/// [`crate::net::TcpStream`].
pub struct UnixStream {
    fd: Rc<OwnedFd>,
}

impl UnixStream {
    /// Connects to the socket bound at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let path = path.as_ref();
        let sock = new_socket(Domain::UNIX, Type::STREAM, None)?;
        let fd = Rc::new(OwnedFd::from(sock));
        submit(Connect::new(fd.clone(), SockAddr::unix(path)?))
            .await
            .map_err(|e| super::tcp::with_addr(e, "connect", path.display()))?;
        Ok(UnixStream { fd })
    }

    /// A connected pair of sockets.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let ty = Type::STREAM.nonblocking().cloexec();
        let (a, b) = socket2::Socket::pair(Domain::UNIX, ty, None)?;
        Ok((UnixStream { fd: Rc::new(a.into()) }, UnixStream { fd: Rc::new(b.into()) }))
    }

    /// Wraps a connected `std` stream (made non-blocking here).
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream { fd: Rc::new(prepare_fd(stream.into())?) })
    }

    read_methods!();
    write_methods!();
    socket_common!();

    /// Splits into a read half and a write half usable from two tasks at once.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        super::split::split(self.fd)
    }

    /// The peer's address (usually unnamed for a connecting client).
    pub fn peer_addr(&self) -> io::Result<SockAddr> {
        self.as_socket().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SockAddr> {
        self.as_socket().local_addr()
    }
}

impl_async_read!(UnixStream);
impl_async_write!(UnixStream);

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
