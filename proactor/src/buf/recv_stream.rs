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
//!
//! A stream made by [`BufPoolSet::recv_stream`] starts in the pool its expected size picks.
//! When that pool runs dry it goes on in the next larger pool that has a buffer (the multishot
//! receive ended with `ENOBUFS`, so the data is still in the socket: nothing is lost or
//! reordered), and it comes back to its own pool once a buffer is back there — by cancelling
//! the fallback receive and taking what it had completed first. It waits only when every
//! pool from its own up is dry.

use super::pool::PoolInner;
use super::{BufPool, BufPoolSet, PooledBuf};
use crate::driver::DriverKind;
use crate::fd::IoFd;
use crate::op::{raw_os_error, RecvMulti, RecvPooled};
use crate::runtime::{Handle, MultiOp};
use crate::Op;
use futures_core::Stream;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// The chunks received on one connection, each in a buffer of a [`BufPool`]; ends at end of
/// stream (after an error, that error is the last item). Made by [`BufPool::recv_stream`] or
/// [`BufPoolSet::recv_stream`].
pub struct RecvStream<F: IoFd + Clone> {
    fd: F,
    /// The pools it may receive into, smallest first (one for a plain pool).
    pools: Rc<[BufPool]>,
    /// Its own pool, and the one `how` receives into now (`current >= preferred`).
    preferred: u8,
    current: u8,
    how: How<F>,
    /// The buffers of a bundle after the one yielded, in order.
    /// (Boxed: a connection's stream stays small when no bundle is in use.)
    #[allow(clippy::box_collection)] // one pointer, not four words, in every connection
    rest: Option<Box<VecDeque<PooledBuf>>>,
    /// The limit asked for with [`RecvStream::max_queued`].
    max_queued: u32,
    /// The fallback receive was cancelled to go back to `preferred`.
    returning: bool,
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
        op: Option<(Op<RecvPooled<F>>, u64)>,
        dry: Option<u64>,
    },
    Ended,
}

/// What one poll of the receive in `How` came to.
enum Step {
    Ready(Option<io::Result<PooledBuf>>),
    /// The pool is dry: the receive waits for a buffer (or the stream moves to another pool).
    Dry,
    Pending,
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
        RecvStream::new(fd, Rc::from([self.clone()]), 0)
    }
}

impl BufPoolSet {
    /// Receives every chunk that arrives on `fd`, starting in the pool that
    /// [`BufPoolSet::pick`] chooses for `expected` bytes and falling back to larger pools while
    /// that one is dry (see [`RecvStream`]).
    pub fn recv_stream<F: IoFd + Clone>(&self, fd: F, expected: usize) -> RecvStream<F> {
        RecvStream::new(fd, self.shared(), self.pick_index(expected))
    }
}

/// How a receive into `pool` runs on this thread's proactor.
fn how_for<F: IoFd + Clone>(fd: &F, pool: &BufPool, max_queued: usize) -> How<F> {
    let inner = pool.inner();
    let kind = Handle::try_current().map(|h| h.core.kind);
    let multishot = match kind {
        Some(DriverKind::Uring) => inner.ring_group().is_some() && inner.ring_is_current(),
        Some(_) => inner.ring_group().is_none(),
        None => false,
    };
    if multishot {
        let op = crate::submit_multi(RecvMulti::new(fd.clone(), pool)).max_queued(max_queued);
        How::Multi { op, waiting: false }
    } else {
        How::OneShot { op: None, dry: None }
    }
}

impl<F: IoFd + Clone> RecvStream<F> {
    fn new(fd: F, pools: Rc<[BufPool]>, preferred: u8) -> Self {
        let how = how_for(&fd, &pools[preferred as usize], DEFAULT_MAX_QUEUED);
        RecvStream {
            fd,
            pools,
            preferred,
            current: preferred,
            how,
            rest: None,
            max_queued: DEFAULT_MAX_QUEUED as u32,
            returning: false,
        }
    }

    /// The next chunk: `None` at end of stream. (The same as `StreamExt::next`, without
    /// needing the trait.)
    pub async fn next(&mut self) -> Option<io::Result<PooledBuf>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Polls for the next chunk: [`Stream::poll_next`] without needing the trait in scope.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<PooledBuf>>> {
        Pin::new(self).poll_next(cx)
    }

    /// True when the stream runs as one multishot receive (rather than a receive per chunk).
    pub fn is_multishot(&self) -> bool {
        matches!(self.how, How::Multi { .. })
    }

    /// The pool the stream receives into now (its own, or a larger one of its
    /// [`BufPoolSet`] while its own is dry).
    pub fn pool(&self) -> &BufPool {
        &self.pools[self.current as usize]
    }

    /// At most `n` received chunks wait in a multishot stream before its receive is paused
    /// (at least 1; default 8). No effect on a stream that receives one chunk at a time.
    pub fn max_queued(mut self, n: usize) -> Self {
        self.max_queued = n.clamp(1, u32::MAX as usize) as u32;
        if let How::Multi { op, .. } = &mut self.how {
            op.set_max_queued(n);
        }
        self
    }

    fn inner(&self) -> &Rc<PoolInner> {
        self.pools[self.current as usize].inner()
    }

    /// Receives from now on into pool `index`.
    fn switch_to(&mut self, index: u8) {
        self.current = index;
        self.how = how_for(&self.fd, &self.pools[index as usize], self.max_queued as usize);
    }

    /// Waits for a buffer in any pool from the stream's own up. When one of them has a free
    /// buffer, moves the stream there (its own pool first) and returns true.
    fn wait_or_move(&mut self, cx: &mut Context<'_>) -> bool {
        let from = self.preferred as usize;
        let free = (from..self.pools.len()).find(|&i| self.pools[i].inner().has_free());
        let Some(index) = free else {
            for pool in &self.pools[from..] {
                pool.inner().wait_for_buffer(cx.waker());
            }
            return false;
        };
        // A wake-up from one of the other pools may have been meant for another stream.
        for (i, pool) in self.pools.iter().enumerate().skip(from) {
            if i != index && pool.inner().has_free() {
                pool.inner().wake_next_waiter();
            }
        }
        // Fewer than 256 pools (`BufPoolSet::new`).
        let index = index as u8;
        if index != self.current {
            self.switch_to(index);
        }
        true
    }

    fn poll_multi(&mut self, cx: &mut Context<'_>) -> Step {
        let How::Multi { op, waiting } = &mut self.how else {
            unreachable!("called on a multishot stream")
        };
        if *waiting {
            if !self.pools[self.current as usize].inner().has_free() {
                return Step::Dry;
            }
            *waiting = false;
            op.restart();
        }
        match Pin::new(&mut *op).poll_next(cx) {
            Poll::Ready(None) if op.last_result() == Some(-libc::ENOBUFS) => {
                *waiting = true;
                Step::Dry
            }
            Poll::Ready(Some(Ok(bufs))) => {
                let (first, rest) = bufs.into_parts();
                if !rest.is_empty() {
                    self.rest.get_or_insert_with(Default::default).extend(rest);
                }
                Step::Ready(Some(Ok(first)))
            }
            Poll::Ready(Some(Err(e))) => Step::Ready(Some(Err(e))),
            Poll::Ready(None) => Step::Ready(None),
            Poll::Pending => Step::Pending,
        }
    }

    fn poll_one_shot(&mut self, cx: &mut Context<'_>) -> Step {
        let pool = self.inner().clone();
        let How::OneShot { op: slot, dry } = &mut self.how else {
            unreachable!("called on a one-shot stream")
        };
        loop {
            if let Some(seen) = *dry {
                if pool.dry_since(seen) {
                    return Step::Dry;
                }
                *dry = None;
            }
            let (op, seen) = slot.get_or_insert_with(|| {
                let pooled = BufPool::from_inner(&pool);
                (crate::submit(RecvPooled::new(self.fd.clone(), &pooled)), pool.returned_count())
            });
            let Poll::Ready(res) = Pin::new(op).poll(cx) else { return Step::Pending };
            let seen = *seen;
            *slot = None;
            match res {
                Ok(Some(buf)) => return Step::Ready(Some(Ok(buf))),
                Ok(None) => return Step::Ready(None),
                Err(e) if raw_os_error(&e) == Some(libc::ENOBUFS) => {
                    pool.note_exhausted();
                    *dry = Some(seen);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Step::Ready(Some(Err(e))),
            }
        }
    }

    /// After an item from a fallback pool: once the stream's own pool has a buffer again,
    /// cancel the fallback receive; what it completed still comes first, then its end moves the
    /// stream back.
    fn maybe_return(&mut self) {
        let own = self.pools[self.preferred as usize].inner();
        if self.current == self.preferred || !own.has_free() {
            return;
        }
        match &mut self.how {
            How::Multi { op, .. } if !self.returning => {
                op.cancel();
                self.returning = true;
            }
            How::OneShot { op: None, .. } => {
                let preferred = self.preferred;
                self.switch_to(preferred);
            }
            _ => {}
        }
    }
}

impl<F: IoFd + Clone> Unpin for RecvStream<F> {}

impl<F: IoFd + Clone> Stream for RecvStream<F> {
    type Item = io::Result<PooledBuf>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(buf) = this.rest.as_mut().and_then(|r| r.pop_front()) {
            return Poll::Ready(Some(Ok(buf)));
        }
        loop {
            let step = match &this.how {
                How::Multi { .. } => this.poll_multi(cx),
                How::OneShot { .. } => this.poll_one_shot(cx),
                How::Ended => return Poll::Ready(None),
            };
            match step {
                Step::Pending => return Poll::Pending,
                Step::Ready(None) if this.returning => {
                    // The fallback receive's cancel took effect: back to the stream's own pool.
                    this.returning = false;
                    let preferred = this.preferred;
                    this.switch_to(preferred);
                }
                Step::Ready(item) => {
                    if let Some(Ok(_)) = item {
                        this.maybe_return();
                    } else {
                        this.how = How::Ended;
                    }
                    return Poll::Ready(item);
                }
                Step::Dry => {
                    // Its own pool if it has a buffer, else the next larger one that has.
                    this.returning = false;
                    if !this.wait_or_move(cx) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl<F: IoFd + Clone> Drop for RecvStream<F> {
    fn drop(&mut self) {
        // A stream that waited for a buffer may have been handed the wake-up meant for the
        // next waiter: pass it on.
        if matches!(self.how, How::Multi { waiting: true, .. } | How::OneShot { dry: Some(_), .. })
        {
            for pool in &self.pools[self.preferred as usize..] {
                pool.inner().wake_next_waiter();
            }
        }
    }
}
