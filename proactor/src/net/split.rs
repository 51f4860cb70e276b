//! A connected stream split into a read half and a write half, so one task can receive while
//! another sends. Both halves share the descriptor through an `Rc<OwnedFd>`; it closes when the
//! last half (or the last operation using it) is dropped.

use super::stream::{
    impl_async_read, impl_async_write, read_methods, socket_common, write_methods,
};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

/// The receiving half of a [`crate::net::TcpStream`] or [`crate::net::UnixStream`].
pub struct ReadHalf {
    fd: Rc<OwnedFd>,
}

/// The sending half of a [`crate::net::TcpStream`] or [`crate::net::UnixStream`].
///
/// Dropping it does not shut the connection down; call [`WriteHalf::shutdown`] with
/// `Shutdown::Write` to send end-of-stream while still reading.
pub struct WriteHalf {
    fd: Rc<OwnedFd>,
}

pub(crate) fn split(fd: Rc<OwnedFd>) -> (ReadHalf, WriteHalf) {
    (ReadHalf { fd: fd.clone() }, WriteHalf { fd })
}

impl ReadHalf {
    read_methods!();
    socket_common!();

    /// True if `other` is the write half of the same socket.
    pub fn is_pair_of(&self, other: &WriteHalf) -> bool {
        Rc::ptr_eq(&self.fd, &other.fd)
    }
}

impl WriteHalf {
    write_methods!();
    socket_common!();
}

impl_async_read!(ReadHalf);
impl_async_write!(WriteHalf);

impl AsFd for ReadHalf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsFd for WriteHalf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
