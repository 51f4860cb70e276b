//! What [`Compat`](super::Compat) needs of a stream: a receive, a send and a write-side
//! shutdown, as operations whose types it can name and keep.

use crate::buf::{BufPool, RecvStream, Slice};
use crate::fd::IoFd;
use crate::net::{TcpStream, UnixStream};
use crate::op::{Recv, Send, Shutdown};
use crate::{submit, Op};
use std::os::fd::OwnedFd;
use std::rc::Rc;

/// A connected stream [`Compat`](super::Compat) can drive: it starts the adapter's receives,
/// sends and shutdown as operations on its descriptor.
///
/// Implemented for [`TcpStream`], [`UnixStream`] and a shared descriptor (`Rc<OwnedFd>`, for a
/// socket made elsewhere; it must be non-blocking for the epoll driver), and for `Rc<S>` of any
/// of them. `'static`: a dropped adapter's send in flight is finished by a task that owns the
/// stream.
pub trait CompatStream: 'static {
    /// How the operations hold the descriptor (keeping it open while they run).
    type Fd: IoFd + Clone;

    /// A receive into `buf`, up to its capacity.
    fn recv(&self, buf: Vec<u8>) -> Op<Recv<Self::Fd, Vec<u8>>>;

    /// A receive that waits for data before its first attempt ([`Recv::poll_first`]): the
    /// adapter asks for it when its last receive left the socket empty (it did not fill the
    /// buffer), as after a request its answer is awaited. By default [`CompatStream::recv`].
    fn recv_polling_first(&self, buf: Vec<u8>) -> Op<Recv<Self::Fd, Vec<u8>>> {
        self.recv(buf)
    }

    /// A send of the bytes of `buf`.
    fn send(&self, buf: Slice<Vec<u8>>) -> Op<Send<Self::Fd, Slice<Vec<u8>>>>;

    /// Shuts the write side down (the peer reads end of stream).
    fn shutdown_write(&self) -> Op<Shutdown<Self::Fd>>;

    /// Every chunk received, into buffers of `pool` ([`RecvStream`]), for
    /// [`Compat::with_pool`](super::Compat::with_pool); `None` (the default) if this stream
    /// cannot, and the adapter then receives into its own buffer.
    fn recv_stream(&self, pool: &BufPool) -> Option<RecvStream<Self::Fd>> {
        let _ = pool;
        None
    }
}

macro_rules! socket_stream {
    ($ty:ty) => {
        impl CompatStream for $ty {
            type Fd = Rc<OwnedFd>;
            fn recv(&self, buf: Vec<u8>) -> Op<Recv<Rc<OwnedFd>, Vec<u8>>> {
                self.read(buf)
            }
            fn recv_polling_first(&self, buf: Vec<u8>) -> Op<Recv<Rc<OwnedFd>, Vec<u8>>> {
                self.read_polling_first(buf)
            }
            fn send(&self, buf: Slice<Vec<u8>>) -> Op<Send<Rc<OwnedFd>, Slice<Vec<u8>>>> {
                self.write(buf)
            }
            fn shutdown_write(&self) -> Op<Shutdown<Rc<OwnedFd>>> {
                self.shutdown(std::net::Shutdown::Write)
            }
            fn recv_stream(&self, pool: &BufPool) -> Option<RecvStream<Rc<OwnedFd>>> {
                Some(<$ty>::recv_stream(self, pool))
            }
        }
    };
}

socket_stream!(TcpStream);
socket_stream!(UnixStream);

impl CompatStream for Rc<OwnedFd> {
    type Fd = Rc<OwnedFd>;
    fn recv(&self, buf: Vec<u8>) -> Op<Recv<Rc<OwnedFd>, Vec<u8>>> {
        submit(Recv::new(self.clone(), buf))
    }
    fn recv_polling_first(&self, buf: Vec<u8>) -> Op<Recv<Rc<OwnedFd>, Vec<u8>>> {
        submit(Recv::new(self.clone(), buf).poll_first(true))
    }
    fn send(&self, buf: Slice<Vec<u8>>) -> Op<Send<Rc<OwnedFd>, Slice<Vec<u8>>>> {
        submit(Send::new(self.clone(), buf))
    }
    fn shutdown_write(&self) -> Op<Shutdown<Rc<OwnedFd>>> {
        submit(Shutdown::new(self.clone(), std::net::Shutdown::Write))
    }
    fn recv_stream(&self, pool: &BufPool) -> Option<RecvStream<Rc<OwnedFd>>> {
        Some(pool.recv_stream(self.clone()))
    }
}

impl<S: CompatStream> CompatStream for Rc<S> {
    type Fd = S::Fd;
    fn recv(&self, buf: Vec<u8>) -> Op<Recv<S::Fd, Vec<u8>>> {
        (**self).recv(buf)
    }
    fn recv_polling_first(&self, buf: Vec<u8>) -> Op<Recv<S::Fd, Vec<u8>>> {
        (**self).recv_polling_first(buf)
    }
    fn send(&self, buf: Slice<Vec<u8>>) -> Op<Send<S::Fd, Slice<Vec<u8>>>> {
        (**self).send(buf)
    }
    fn shutdown_write(&self) -> Op<Shutdown<S::Fd>> {
        (**self).shutdown_write()
    }
    fn recv_stream(&self, pool: &BufPool) -> Option<RecvStream<S::Fd>> {
        (**self).recv_stream(pool)
    }
}
