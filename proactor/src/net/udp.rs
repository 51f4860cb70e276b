//! UDP: datagrams to and from any peer (`send_to` / `recv_from`), or to one connected peer.

use super::{first_ok, inet_addr, new_socket, prepare_fd};
use crate::buf::{IoBuf, IoBufMut};
use crate::op::{Connect, Recv, RecvFrom, Send, SendTo};
use crate::{submit, BufResult, Op};
use socket2::{Domain, Protocol, SockAddr, Type};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;

/// A UDP socket.
///
/// ```
/// use proactor::net::UdpSocket;
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let a = UdpSocket::bind("127.0.0.1:0")?;
///     let b = UdpSocket::bind("127.0.0.1:0")?;
///     let (res, _) = a.send_to(b"hi".as_slice(), b.local_addr()?).await;
///     res?;
///     let (res, buf) = b.recv_from(Vec::with_capacity(64)).await;
///     let (n, from) = res?;
///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr()?));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UdpSocket {
    fd: Rc<OwnedFd>,
}

impl UdpSocket {
    /// Binds to the first of `addr`'s addresses that works (port 0: any free port). A host name
    /// is looked up on this thread, as `std` does (see [`crate::net::lookup_host`] to resolve
    /// it off the loop first).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        first_ok(addr, |addr| {
            let sock = new_socket(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
            sock.bind(&addr.into()).map_err(|e| super::tcp::with_addr(e, "bind", addr))?;
            Ok(UdpSocket { fd: Rc::new(sock.into()) })
        })
    }

    /// Wraps a `std` socket (made non-blocking here).
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        Ok(UdpSocket { fd: Rc::new(prepare_fd(socket.into())?) })
    }

    /// Sends the initialised bytes of `buf` as one datagram to `addr`.
    pub fn send_to<B: IoBuf>(&self, buf: B, addr: SocketAddr) -> Op<SendTo<Rc<OwnedFd>, B>> {
        submit(SendTo::new(self.fd.clone(), buf, SockAddr::from(addr)))
    }

    /// Receives one datagram (truncated to the buffer's capacity) and its sender's address.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (res, buf) = submit(RecvFrom::new(self.fd.clone(), buf)).await;
        (res.and_then(|(n, addr)| Ok((n, inet_addr(&addr)?))), buf)
    }

    /// Sets the default peer: [`UdpSocket::send`] goes there, and only its datagrams are
    /// received.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        submit(Connect::new(self.fd.clone(), SockAddr::from(addr)))
            .await
            .map_err(|e| super::tcp::with_addr(e, "connect", addr))
    }

    /// Sends one datagram to the connected peer.
    pub fn send<B: IoBuf>(&self, buf: B) -> Op<Send<Rc<OwnedFd>, B>> {
        submit(Send::new(self.fd.clone(), buf))
    }

    /// Receives one datagram from the connected peer.
    pub fn recv<B: IoBufMut>(&self, buf: B) -> Op<Recv<Rc<OwnedFd>, B>> {
        submit(Recv::new(self.fd.clone(), buf))
    }

    /// The bound address (with the real port after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(&self.as_socket().local_addr()?)
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(&self.as_socket().peer_addr()?)
    }

    /// `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.as_socket().set_broadcast(on)
    }

    /// A `socket2` view of the socket, for options this type does not wrap.
    pub fn as_socket(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(&*self.fd)
    }

    /// The descriptor number (still owned by the socket).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
