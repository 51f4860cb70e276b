//! File descriptors as operations hold them.
//!
//! An operation keeps its fd value alive until the kernel has finished with it: a type that owns
//! the descriptor (an `OwnedFd`, or an `Rc<OwnedFd>` shared with a socket object) guarantees that
//! the number cannot be closed and reused for another file while the operation is queued. A bare
//! `RawFd` is accepted for callers that manage the lifetime themselves.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

/// Something an operation can take its file descriptor from, kept alive by the operation.
///
/// A safe trait: [`IoFd::raw_fd`] is only ever called on the run loop's thread, while the
/// operation is built or submitted. What runs elsewhere (the epoll driver's blocking pool) gets
/// the number captured then, never the `IoFd`, so an implementation need not be thread-safe (an
/// `Rc<Cell<RawFd>>` is fine).
pub trait IoFd: 'static {
    /// The descriptor number.
    fn raw_fd(&self) -> RawFd;
}

impl IoFd for RawFd {
    fn raw_fd(&self) -> RawFd {
        *self
    }
}

impl IoFd for OwnedFd {
    fn raw_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

impl<T: IoFd> IoFd for Arc<T> {
    fn raw_fd(&self) -> RawFd {
        (**self).raw_fd()
    }
}

impl IoFd for std::fs::File {
    fn raw_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

impl IoFd for std::os::unix::net::UnixStream {
    fn raw_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

impl IoFd for std::net::TcpStream {
    fn raw_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

impl IoFd for std::net::TcpListener {
    fn raw_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

impl IoFd for socket2::Socket {
    fn raw_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

impl<T: IoFd> IoFd for Rc<T> {
    fn raw_fd(&self) -> RawFd {
        (**self).raw_fd()
    }
}

/// An integer `SOL_SOCKET` option of `fd` (`SO_TYPE`, `SO_ACCEPTCONN`, ...); `None` when `fd`
/// is not a socket or the call fails.
pub(crate) fn socket_option(fd: RawFd, name: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid out-parameters of the size the option takes;
    // getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(value)
}
