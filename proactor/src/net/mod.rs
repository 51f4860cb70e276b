//! Sockets: TCP, UDP and Unix-domain, each a thin owner of its descriptor whose async methods
//! return the operations of [`crate::op`].
//!
//! Every socket holds its descriptor as an `Rc<OwnedFd>` and every operation takes a clone, so an
//! operation in flight keeps the descriptor open even when the socket object is dropped first: the
//! number can never be closed and reused while the kernel still works on it. Sockets are created
//! non-blocking and close-on-exec (the epoll emulation needs the former; io_uring does not mind).
//!
//! The methods hand buffers back with the result, as every operation does:
//!
//! ```
//! use proactor::net::{TcpListener, TcpStream};
//! let p = proactor::Proactor::new()?;
//! p.block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let addr = listener.local_addr()?;
//!     let client = TcpStream::connect(addr).await?;
//!     let (server, _peer) = listener.accept().await?;
//!     let (res, _) = client.write(b"ping".as_slice()).await;
//!     res?;
//!     let (res, buf) = server.read(Vec::with_capacity(16)).await;
//!     assert_eq!(&buf[..res?], b"ping");
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod accept;
mod incoming;
mod resolve;
mod split;
mod stream;
mod tcp;
mod udp;
mod unix;

pub use crate::buf::{BufPool, PooledBuf};
pub use accept::{AcceptAction, AcceptErrorClass, AcceptPolicy, AcceptStats};
pub use incoming::Incoming;
pub use resolve::{lookup_host, ToSocketAddrs};
pub use split::{ReadHalf, WriteHalf};
pub use tcp::{TcpListener, TcpListenerBuilder, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixListener, UnixStream};

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

/// A new non-blocking, close-on-exec socket.
pub(crate) fn new_socket(domain: Domain, ty: Type, proto: Option<Protocol>) -> io::Result<Socket> {
    Socket::new(domain, ty.nonblocking().cloexec(), proto)
}

/// Resolves `addr` to a list of socket addresses; an empty list is an error naming the input.
///
/// Name lookup (anything but a literal address) blocks the thread, as `std` does: for `bind`,
/// which is synchronous (as `std`'s, and as every caller uses it — an async `bind` would change
/// them all for a look-up nearly no one makes: a listener's address is nearly always literal,
/// and a name there is resolved once, at start). `connect` resolves off the loop, and
/// [`lookup_host`] does for a `bind` that must not block a running loop (`resolve.rs`).
pub(crate) fn resolve(addr: impl std::net::ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(no_address());
    }
    Ok(addrs)
}

/// Calls `f` on each of `addr`'s addresses until one succeeds; the last failure otherwise.
pub(crate) fn first_ok<T>(
    addr: impl std::net::ToSocketAddrs,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = no_address();
    for addr in resolve(addr)? {
        match f(addr) {
            Ok(t) => return Ok(t),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The error for an address that resolved to nothing.
fn no_address() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "address resolved to no socket address")
}

/// Makes an fd taken from elsewhere (a `std` socket) non-blocking, as the sockets here expect.
pub(crate) fn prepare_fd(fd: OwnedFd) -> io::Result<OwnedFd> {
    let sock = Socket::from(fd);
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    Ok(sock.into())
}

/// A socket address as `std` knows it, or an error saying the family was unexpected.
pub(crate) fn inet_addr(addr: &socket2::SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "socket address is not an IPv4/IPv6 address")
    })
}
