//! The front ends of a multishot operation: a `Stream` of its items, or a handler called once
//! per completion.
//!
//! One submission yields many completions; the run loop keeps the operation in its table until
//! the last one (see `slot.rs`: `Streaming`). A stream takes its items in order from the
//! operation's block; dropping it cancels the operation, and the items that still arrive are
//! dropped as they come (descriptors closed, buffers back in their pool), never lost inside
//! the kernel. When the kernel ends the request for its own reasons (a full completion queue),
//! the stream submits it again and goes on: the caller sees one unbroken sequence.

use super::core::{Core, StreamStep};
use super::slot::{MultiPlain, MultiWithHandler, Receiver};
use super::{Handle, OpId};
use crate::driver::{DriverKind, Token};
use crate::op::Multishot;
use futures_core::Stream;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// What a multishot operation's handler is called with (see [`Handle::start_multi`]).
#[non_exhaustive]
pub enum Multi<O: Multishot> {
    /// One completion's item, or the error that ended the operation.
    Item(io::Result<O::Item>),
    /// The operation ended (its last item, if any, came just before). `restartable`: the
    /// kernel ended it for its own reasons, and starting `op` again continues the sequence.
    End {
        /// The operation, handed back.
        op: O,
        /// True if starting it again continues where it stopped.
        restartable: bool,
        /// The last completion's raw outcome: `Ok(0)` at end of stream, `ECANCELED` after a
        /// cancel, `ENOBUFS` when the buffer pool ran dry (start it again once buffers are
        /// back), or the error already handed over as the last item.
        result: io::Result<u32>,
    },
}

enum State<O: Multishot> {
    Unsubmitted(O),
    Streaming(Rc<Core>, Token),
    /// The operation ended with result `last`; `item` is its last completion's, not yet taken.
    Ended {
        op: O,
        last: i32,
        item: Option<io::Result<O::Item>>,
    },
    /// Refused before submission, or its token went stale.
    Finished,
}

/// A multishot operation as a [`Stream`] of its items; made by [`submit_multi`].
///
/// The stream ends after a cancel ([`MultiOp::cancel`]), after an error (the last item is that
/// error), or when the operation is over (end of the byte stream). When it ended for a reason a
/// new submission mends, the stream resubmits by itself.
#[must_use = "a multishot operation does nothing until its stream is polled"]
pub struct MultiOp<O: Multishot> {
    state: State<O>,
    cancelled: bool,
    max_queued: usize,
}

/// Starts `op` on the current proactor when first polled, and streams its items.
///
/// ```
/// use futures_core::Stream;
/// use proactor::net::TcpListener;
/// use proactor::op::AcceptMulti;
/// use std::os::fd::AsRawFd;
/// # fn next<S: Stream + Unpin>(s: &mut S) -> impl std::future::Future<Output = Option<S::Item>> + '_ {
/// #     std::future::poll_fn(move |cx| std::pin::Pin::new(&mut *s).poll_next(cx))
/// # }
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let addr = listener.local_addr()?;
///     let clients: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(addr)).collect();
///     let mut conns = proactor::submit_multi(AcceptMulti::new(listener.as_raw_fd()));
///     for _ in 0..3 {
///         let fd = next(&mut conns).await.expect("a connection")?;
///         assert!(fd.as_raw_fd() >= 0);
///     }
///     drop(clients);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn submit_multi<O: Multishot>(op: O) -> MultiOp<O> {
    MultiOp { state: State::Unsubmitted(op), cancelled: false, max_queued: usize::MAX }
}

impl<O: Multishot> MultiOp<O> {
    /// Pauses the operation while `n` items wait to be taken: the run loop cancels it as the
    /// `n`th arrives, and the stream resubmits it once they are taken (the kernel then holds
    /// what comes meanwhile — a socket's data stays in the socket). Unbounded by default.
    pub fn max_queued(mut self, n: usize) -> Self {
        self.set_max_queued(n);
        self
    }

    pub(crate) fn set_max_queued(&mut self, n: usize) {
        self.max_queued = n.max(1);
    }

    /// The next item: `None` once the stream has ended. (The same as `StreamExt::next`,
    /// without needing the trait.)
    pub async fn next(&mut self) -> Option<io::Result<O::Item>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Ends the operation early. Items already completed are still yielded, then the stream
    /// ends; it is not resubmitted.
    pub fn cancel(&mut self) {
        self.cancelled = true;
        if let State::Streaming(core, token) = &self.state {
            core.cancel(*token);
        }
    }

    /// True once the operation has ended and the stream yields nothing more unless
    /// [`MultiOp::restart`]ed.
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended { .. } | State::Finished)
    }

    /// Submits the operation again after it ended (for example after the buffer pool ran
    /// dry and buffers came back). Returns false if there is nothing to restart.
    pub fn restart(&mut self) -> bool {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Ended { op, item: None, .. } => {
                self.state = State::Unsubmitted(op);
                self.cancelled = false;
                true
            }
            other => {
                self.state = other;
                false
            }
        }
    }

    /// Items completed and not yet taken from the stream.
    pub fn queued(&self) -> usize {
        match &self.state {
            State::Streaming(core, token) => core.stream_queued::<O>(*token),
            State::Ended { item: Some(_), .. } => 1,
            _ => 0,
        }
    }

    /// The raw result of the last completion once the stream has ended (`-ENOBUFS`: the
    /// buffer pool ran dry).
    pub(crate) fn last_result(&self) -> Option<i32> {
        match self.state {
            State::Ended { last, .. } => Some(last),
            _ => None,
        }
    }

    fn start(&mut self, op: O, cx: &mut Context<'_>) -> Poll<Option<io::Result<O::Item>>> {
        let Some(handle) = Handle::try_current() else {
            self.state = State::Finished;
            let err =
                io::Error::other("no proactor is running on this thread (use block_on or run)");
            return Poll::Ready(Some(Err(err)));
        };
        if let Some(err) = op.refuse(handle.core.kind == DriverKind::Uring) {
            self.state = State::Finished;
            return Poll::Ready(Some(Err(err)));
        }
        let core = handle.core;
        let waiter = Receiver::Future(core.executor.waiter(cx.waker()));
        let carrier =
            MultiPlain { op, queue: VecDeque::new(), limit: self.max_queued, paused: false };
        let token = core.submit_multi(carrier, waiter);
        self.state = State::Streaming(core, token);
        Poll::Pending
    }
}

impl<O: Multishot> Unpin for MultiOp<O> {}

impl<O: Multishot> Stream for MultiOp<O> {
    type Item = io::Result<O::Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.state, State::Finished) {
                State::Unsubmitted(op) => return this.start(op, cx),
                State::Streaming(core, token) => match core.poll_stream::<O>(token, cx.waker()) {
                    StreamStep::Item(item) => {
                        this.state = State::Streaming(core, token);
                        return Poll::Ready(Some(item));
                    }
                    StreamStep::Pending => {
                        this.state = State::Streaming(core, token);
                        return Poll::Pending;
                    }
                    StreamStep::Ended(last, mut carrier) => {
                        let item = carrier.last_item(last);
                        this.state = State::Ended { op: carrier.op, last, item };
                    }
                    StreamStep::Gone => return Poll::Ready(None),
                },
                State::Ended { op, last, item: Some(item) } => {
                    this.state = State::Ended { op, last, item: None };
                    return Poll::Ready(Some(item));
                }
                State::Ended { op, last, item: None } => {
                    // Not cancelled by its owner: an ECANCELED end is the loop's pause.
                    let paused = last == -libc::ECANCELED;
                    if !this.cancelled && (paused || op.restart(last)) {
                        this.state = State::Unsubmitted(op);
                        continue;
                    }
                    this.state = State::Ended { op, last, item: None };
                    return Poll::Ready(None);
                }
                State::Finished => return Poll::Ready(None),
            }
        }
    }
}

impl<O: Multishot> Drop for MultiOp<O> {
    fn drop(&mut self) {
        if let State::Streaming(core, token) = &self.state {
            core.detach(*token);
        }
    }
}

impl Handle {
    /// Starts a multishot operation whose `handler` is called once per completion — with each
    /// item ([`Multi::Item`]), then once with [`Multi::End`], which hands the operation back
    /// (to be started again when `restartable`). Cancel it with [`Handle::cancel`].
    ///
    /// ```
    /// use proactor::net::TcpListener;
    /// use proactor::op::AcceptMulti;
    /// use proactor::runtime::Multi;
    /// use std::os::fd::AsRawFd;
    /// use std::{cell::Cell, rc::Rc};
    /// let p = proactor::Proactor::new()?;
    /// let h = p.handle();
    /// let listener = p.block_on(async { TcpListener::bind("127.0.0.1:0") })?;
    /// let addr = listener.local_addr()?;
    /// let clients: Vec<_> = (0..2).map(|_| std::net::TcpStream::connect(addr)).collect();
    /// let accepted = Rc::new(Cell::new(0));
    /// let (count, h2) = (accepted.clone(), h.clone());
    /// let id = std::rc::Rc::new(Cell::new(None));
    /// let id2 = id.clone();
    /// let started = h.start_multi(AcceptMulti::new(listener.as_raw_fd()), move |event| {
    ///     if let Multi::Item(Ok(_conn)) = event {
    ///         count.set(count.get() + 1);
    ///         if count.get() == 2 {
    ///             h2.cancel(id2.get().unwrap());
    ///         }
    ///     }
    /// });
    /// id.set(Some(started));
    /// p.run()?;
    /// assert_eq!(accepted.get(), 2);
    /// drop(clients);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start_multi<O, H>(&self, op: O, handler: H) -> OpId
    where
        O: Multishot,
        H: FnMut(Multi<O>) + 'static,
    {
        let uring = self.core.kind == DriverKind::Uring;
        if let Some(err) = op.refuse(uring) {
            // Delivered like a completion, in the next turn: an error, then the end.
            let mut handler = handler;
            let mut slot = Some((op, err));
            return self.start_refused(move || {
                if let Some((op, err)) = slot.take() {
                    handler(Multi::Item(Err(err)));
                    let result = Err(io::Error::from_raw_os_error(libc::EINVAL));
                    handler(Multi::End { op, restartable: false, result });
                }
            });
        }
        OpId(self.core.submit_multi(MultiWithHandler { op, handler }, Receiver::Handler))
    }

    /// Runs `f` in the loop's next turn, as the handler of an operation that never reached a
    /// driver.
    fn start_refused(&self, f: impl FnOnce() + 'static) -> OpId {
        let op = crate::op::Nop;
        OpId(self.core.refuse(
            super::slot::WithHandler { op, handler: move |_| f() },
            Receiver::Handler,
            libc::ECANCELED,
        ))
    }
}
