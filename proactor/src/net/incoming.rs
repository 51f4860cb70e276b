//! Every connection of a listener, from one multishot accept.
//!
//! A server's accept loop asks the kernel once (`IORING_ACCEPT_MULTISHOT`; the epoll
//! emulation's re-armed readiness) and gets a completion per connection, instead of submitting
//! an accept per connection. Errors come out as they happen, for the loop's
//! [`AcceptPolicy`](super::AcceptPolicy) to judge; the next call submits again where needed.
//! A kernel without multishot accept refuses it with `EINVAL` before any connection: the stream
//! then falls back to one accept at a time, the same connections in the same order.

use crate::fd::IoFd;
use crate::op::{raw_os_error, Accept, AcceptMulti};
use crate::runtime::{CancelToken, MultiOp};
use crate::{submit, submit_multi, Op};
use std::io;
use std::os::fd::{OwnedFd, RawFd};

/// The connections of a listening socket, one accept request for all of them (see the module
/// docs). Made by [`TcpListener::incoming`](super::TcpListener::incoming) or
/// [`Incoming::new`].
///
/// ```
/// use proactor::net::{TcpListener, TcpStream};
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let _client = std::net::TcpStream::connect(listener.local_addr()?)?;
///     let mut incoming = listener.incoming();
///     let fd = incoming.next().await.expect("not cancelled")?;
///     let conn = TcpStream::from_std(fd.into())?;
///     assert!(conn.peer_addr().is_ok());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Incoming<F: IoFd + Clone> {
    fd: F,
    how: How<F>,
    accepted_any: bool,
    cancelled: bool,
    /// Accept requests made: the multishot ones, or one per connection in the fallback.
    requests: u64,
}

enum How<F: IoFd + Clone> {
    Multi(MultiOp<AcceptMulti<F>>),
    /// One accept at a time (no multishot accept here), with its cancel token.
    OneShot(Option<(Op<Accept<F>>, CancelToken)>),
}

impl<F: IoFd + Clone> Incoming<F> {
    /// The connections of the listening socket `fd`.
    pub fn new(fd: F) -> Self {
        let how = How::Multi(submit_multi(AcceptMulti::new(fd.clone())));
        Incoming { fd, how, accepted_any: false, cancelled: false, requests: 1 }
    }

    /// The connections of `fd`, one accept request per connection: what [`Incoming::new`]
    /// falls back to where the kernel has no multishot accept. A connection then waits in the
    /// kernel's backlog until [`Incoming::next`] asks for it, where a multishot accept takes
    /// each as it arrives.
    pub fn one_at_a_time(fd: F) -> Self {
        Incoming { fd, how: How::OneShot(None), accepted_any: false, cancelled: false, requests: 0 }
    }

    /// True while one multishot accept serves every connection (not the fallback).
    pub fn is_multishot(&self) -> bool {
        matches!(self.how, How::Multi(_))
    }

    /// Accept requests made so far: one while a multishot accept serves every connection, one
    /// more each time it is submitted again (after an error, or the kernel ended it), and one
    /// per connection once it fell back to one accept at a time. (A multishot request the run
    /// loop pauses and resumes by itself, see [`MultiOp::max_queued`], is not counted.)
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The next connection (a new non-blocking, close-on-exec socket) or accept error; `None`
    /// once cancelled and every connection the kernel had already accepted is handed over.
    pub async fn next(&mut self) -> Option<io::Result<OwnedFd>> {
        loop {
            let item = match &mut self.how {
                How::Multi(op) => match op.next().await {
                    Some(item) => item,
                    None if self.cancelled => return None,
                    // Ended after an error, or by the kernel: ask again.
                    None => {
                        *op = submit_multi(AcceptMulti::new(self.fd.clone()));
                        self.requests += 1;
                        continue;
                    }
                },
                How::OneShot(slot) => {
                    let (op, _) = match slot {
                        Some(pending) => pending,
                        None if self.cancelled => return None,
                        None => {
                            let mut op = submit(Accept::new(self.fd.clone()));
                            self.requests += 1;
                            let cancel = op.cancel_token();
                            slot.insert((op, cancel))
                        }
                    };
                    let res = op.await;
                    *slot = None;
                    match res {
                        Ok((fd, _peer)) => Ok(fd),
                        Err(_) if self.cancelled => return None,
                        Err(e) => Err(e),
                    }
                }
            };
            match item {
                Ok(fd) => {
                    self.accepted_any = true;
                    return Some(Ok(fd));
                }
                Err(e)
                    if !self.accepted_any
                        && self.is_multishot()
                        && refused(&e)
                        && listening(self.fd.raw_fd()) =>
                {
                    tracing::info!("multishot accept unavailable ({e}); accepting one at a time");
                    self.how = How::OneShot(None);
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Stops accepting. [`Incoming::next`] then hands over what the kernel had already
    /// accepted, and `None`.
    pub fn cancel(&mut self) {
        self.cancelled = true;
        match &mut self.how {
            How::Multi(op) => op.cancel(),
            How::OneShot(Some((_, cancel))) => cancel.cancel(),
            How::OneShot(None) => {}
        }
    }
}

/// The kernel's answer to an opcode flag it does not know.
fn refused(err: &io::Error) -> bool {
    raw_os_error(err) == Some(libc::EINVAL)
}

/// True if `fd` is a listening socket: an `EINVAL` from it was the kernel refusing multishot,
/// not a listener shut down or never listening (which a one-shot accept would only repeat).
fn listening(fd: RawFd) -> bool {
    crate::fd::socket_option(fd, libc::SO_ACCEPTCONN).is_some_and(|on| on != 0)
}
