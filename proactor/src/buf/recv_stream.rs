//! Every chunk a connection receives, as a stream of pooled buffers.
//!
//! Where it can, one multishot receive serves the whole connection: on io_uring a
//! `IORING_RECV_MULTISHOT` request on the pool's provided-buffer ring (the kernel fills a
//! buffer per chunk, with no submission per receive); on epoll the emulation's re-armed
//! readiness. A pool managed in user space on io_uring has no ring for the kernel to pick from,
//! so there the stream falls back to one pooled receive at a time — same items, same order.
//!
//! A multishot receive goes on while the caller is busy elsewhere (sending the last chunk, say),
//! so a peer that sends and never reads could hold every buffer of the pool. The stream bounds
//! that: once [`RecvStream::max_queued`] chunks wait to be taken, the run loop cancels the
//! request as the last of them arrives, and the stream submits it again once the caller has
//! taken them — the data waits in the socket meanwhile, and TCP's own flow control pushes back
//! on the peer.
//!
//! A dry pool ends a multishot request with `ENOBUFS` and leaves the data in the socket. The
//! stream then waits until a buffer comes back and submits again: nothing is lost. Waiting
//! streams are woken one per returned buffer, oldest first, so a thousand connections
//! sharing sixteen buffers do not all rush at each one that comes back.
//!
//! On a pool that takes receive bundles ([`BufPool::has_bundles`]) one completion may fill
//! several buffers; the stream yields them one by one, in order (the cheapest form: no copy,
//! and each buffer goes back to the ring as soon as its own item is dropped). The items then
//! differ from a pool without bundles only in where the chunks are cut, as they do between
//! runs anyway: the bytes and their order are the same.

use super::pool::PoolInner;
use super::{BufPool, PooledBuf};
use crate::driver::DriverKind;
use crate::fd::IoFd;
use crate::op::{raw_os_error, RecvMulti, RecvPooled};
use crate::runtime::{Handle, MultiOp};
use crate::Op;
use futures_core::Stream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// The chunks received on one connection, each in a buffer of a [`BufPool`]; ends at end of
/// stream (after an error, that error is the last item). Made by [`BufPool::recv_stream`].
pub struct RecvStream<F: IoFd + Clone> {
    pool: Rc<PoolInner>,
    how: How<F>,
    /// The buffers of a bundle after the one yielded, in order.
    rest: std::collections::VecDeque<PooledBuf>,
}

/// Chunks that may wait in a multishot receive's stream before it is paused (see the module
/// docs): enough that a steady stream is not cancelled and resubmitted every few chunks, few
/// enough that a thousand connections cannot drain a pool of a few thousand buffers.
const DEFAULT_MAX_QUEUED: usize = 8;

enum How<F: IoFd + Clone> {
    /// One multishot receive; `waiting`: it ended with `ENOBUFS` and waits for a buffer.
    Multi {
        op: MultiOp<RecvMulti<F>>,
        waiting: bool,
    },
    /// One pooled receive at a time; `dry`: the last found the pool dry when the pool's count
    /// of returned buffers was this.
    OneShot {
        fd: F,
        op: Option<(Op<RecvPooled<F>>, u64)>,
        dry: Option<u64>,
    },
    Ended,
}

impl BufPool {
    /// Receives every chunk that arrives on `fd`, each into a buffer of this pool taken only
    /// once its data is there (see [`RecvStream`]).
    ///
    /// ```
    /// use futures_core::Stream;
    /// use proactor::{buf::BufPool, net::UnixStream};
    /// # fn next<S: Stream + Unpin>(s: &mut S) -> impl std::future::Future<Output = Option<S::Item>> + '_ {
    /// #     std::future::poll_fn(move |cx| std::pin::Pin::new(&mut *s).poll_next(cx))
    /// # }
    /// let p = proactor::Proactor::new()?;
    /// p.block_on(async {
    ///     let pool = BufPool::new(4, 4096)?;
    ///     let (a, b) = UnixStream::pair()?;
    ///     let (res, _) = a.write(b"hello".as_slice()).await;
    ///     res?;
    ///     drop(a);
    ///     let mut chunks = b.recv_stream(&pool);
    ///     let mut got = Vec::new();
    ///     while let Some(buf) = next(&mut chunks).await {
    ///         got.extend_from_slice(&buf?);
    ///     }
    ///     assert_eq!(got, b"hello");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_stream<F: IoFd + Clone>(&self, fd: F) -> RecvStream<F> {
        let inner = self.inner().clone();
        let kind = Handle::try_current().map(|h| h.core.kind);
        let multishot = match kind {
            Some(DriverKind::Uring) => inner.ring_group().is_some() && inner.ring_is_current(),
            Some(_) => inner.ring_group().is_none(),
            None => false,
        };
        let how = if multishot {
            How::Multi {
                op: crate::submit_multi(RecvMulti::new(fd, self)).max_queued(DEFAULT_MAX_QUEUED),
                waiting: false,
            }
        } else {
            How::OneShot { fd, op: None, dry: None }
        };
        RecvStream { pool: inner, how, rest: Default::default() }
    }
}

impl<F: IoFd + Clone> RecvStream<F> {
    /// The next chunk: `None` at end of stream. (The same as `StreamExt::next`, without
    /// needing the trait.)
    pub async fn next(&mut self) -> Option<io::Result<PooledBuf>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// True when the stream runs as one multishot receive (rather than a receive per chunk).
    pub fn is_multishot(&self) -> bool {
        matches!(self.how, How::Multi { .. })
    }

    /// At most `n` received chunks wait in a multishot stream before its receive is paused
    /// (at least 1; default 8). No effect on a stream that receives one chunk at a time.
    pub fn max_queued(mut self, n: usize) -> Self {
        if let How::Multi { op, .. } = &mut self.how {
            op.set_max_queued(n);
        }
        self
    }

    fn poll_multi(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<PooledBuf>>> {
        let How::Multi { op, waiting } = &mut self.how else {
            unreachable!("called on a multishot stream")
        };
        loop {
            if *waiting {
                if !self.pool.has_free() {
                    self.pool.wait_for_buffer(cx.waker());
                    return Poll::Pending;
                }
                *waiting = false;
                op.restart();
            }
            match Pin::new(&mut *op).poll_next(cx) {
                Poll::Ready(None) if op.last_result() == Some(-libc::ENOBUFS) => *waiting = true,
                Poll::Ready(Some(Ok(bufs))) => {
                    let (first, rest) = bufs.into_parts();
                    self.rest.extend(rest);
                    return Poll::Ready(Some(Ok(first)));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_one_shot(
        pool: &Rc<PoolInner>,
        fd: &F,
        slot: &mut Option<(Op<RecvPooled<F>>, u64)>,
        dry: &mut Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<PooledBuf>>> {
        loop {
            if let Some(seen) = *dry {
                if pool.dry_since(seen) {
                    pool.wait_for_buffer(cx.waker());
                    return Poll::Pending;
                }
                *dry = None;
            }
            let (op, seen) = slot.get_or_insert_with(|| {
                let op = crate::submit(RecvPooled::new(fd.clone(), &BufPool::from_inner(pool)));
                (op, pool.returned_count())
            });
            let res = std::task::ready!(Pin::new(op).poll(cx));
            let seen = *seen;
            *slot = None;
            match res {
                Ok(Some(buf)) => return Poll::Ready(Some(Ok(buf))),
                Ok(None) => return Poll::Ready(None),
                Err(e) if raw_os_error(&e) == Some(libc::ENOBUFS) => {
                    pool.note_exhausted();
                    *dry = Some(seen);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

impl<F: IoFd + Clone> Unpin for RecvStream<F> {}

impl<F: IoFd + Clone> Stream for RecvStream<F> {
    type Item = io::Result<PooledBuf>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(buf) = this.rest.pop_front() {
            return Poll::Ready(Some(Ok(buf)));
        }
        let poll = match &mut this.how {
            How::Multi { .. } => this.poll_multi(cx),
            How::OneShot { fd, op, dry } => Self::poll_one_shot(&this.pool, fd, op, dry, cx),
            How::Ended => return Poll::Ready(None),
        };
        if let Poll::Ready(None | Some(Err(_))) = poll {
            this.how = How::Ended;
        }
        poll
    }
}

impl<F: IoFd + Clone> Drop for RecvStream<F> {
    fn drop(&mut self) {
        // A stream that waited for a buffer may have been handed the wake-up meant for the
        // next waiter: pass it on.
        if matches!(self.how, How::Multi { waiting: true, .. } | How::OneShot { dry: Some(_), .. })
        {
            self.pool.wake_next_waiter();
        }
    }
}
