//! Buffers queued for one socket, sent in order with as few requests as the kernel allows.
//!
//! A [`SendQueue`] takes buffers as they come ([`SendQueue::push`]) and keeps one send in
//! flight. A buffer queued alone goes out with a plain send. When several wait, one request
//! sends them all (up to [`SendQueue::MAX_BUNDLE`]):
//!
//! - on io_uring with `IORING_RECVSEND_BUNDLE` (Linux 6.10; `proactor info` reports it as
//!   "send bundles"), an `IORING_OP_SEND` that takes every buffer from a provided-buffer ring
//!   of the queue's own, registered the first time the queue sends several at once;
//! - elsewhere — an older kernel, a ring that cannot be registered, the epoll driver, or
//!   bundles turned off ([`SendQueue::bundles`], `PROACTOR_SEND_BUNDLE=0`) — a `sendmsg` with
//!   an iovec per buffer (`IORING_OP_SENDMSG` on io_uring, sendmsg(2) on epoll).
//!
//! Either way the bytes leave in the order they were pushed, exactly once: a short send is
//! resumed where it stopped before anything queued after it.

use super::ring::RingState;
use super::{IoBuf, Slice};
use crate::driver::DriverKind;
use crate::fd::IoFd;
use crate::op::send_bundle::SendBundle;
use crate::op::Send;
use crate::runtime::Handle;
use crate::Op;
use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// See [`SendQueue::MAX_BUNDLE`].
const MAX_BUNDLE: u16 = 16;

/// A provided-buffer ring that one [`SendQueue`] sends from: empty between its sends.
pub(crate) struct SendRing {
    state: RingState,
    /// Our copy of the kernel's head: where the next send's buffers start.
    head: Cell<u16>,
    /// The head is no longer known: the ring is not used again.
    poisoned: Cell<bool>,
}

impl SendRing {
    /// Registers a ring of [`SendQueue::MAX_BUNDLE`] entries on `handle`'s io_uring.
    fn register(handle: &Handle) -> io::Result<Option<SendRing>> {
        let state = RingState::register(handle, MAX_BUNDLE, false)?;
        Ok(state.map(|state| {
            let head = Cell::new(state.tail());
            SendRing { state, head, poisoned: Cell::new(false) }
        }))
    }

    /// The ring's buffer group id.
    pub(crate) fn group(&self) -> u16 {
        self.state.group
    }

    /// Appends an entry (the ring holds at most `MAX_BUNDLE`: one send's buffers).
    pub(crate) fn push(&self, addr: *mut u8, len: u32) {
        let id = self.state.tail().wrapping_sub(self.head.get());
        self.state.push(id, addr, len);
    }

    /// After a send that had published `published` entries, of which the kernel consumed
    /// `consumed`: moves our head past those and takes the rest back, leaving the ring empty.
    pub(crate) fn settle_published(&self, published: u16, consumed: u16) {
        if published == 0 {
            return;
        }
        let head = self.head.get().wrapping_add(consumed.min(published));
        self.head.set(head);
        self.state.retract(head);
    }

    /// Stops the ring being used again (see `poisoned`).
    pub(crate) fn poison(&self) {
        self.poisoned.set(true);
    }
}

impl Drop for SendRing {
    fn drop(&mut self) {
        // No send is in flight (each holds an Rc to this).
        if !self.state.free() {
            tracing::error!("could not unregister a send buffer ring; leaking its memory");
        }
    }
}

/// Whether this queue's sends of several buffers go as bundles.
enum Bundles {
    /// Not decided yet (decided at the first send of several buffers).
    Unknown,
    Off,
    On(Rc<SendRing>),
}

/// The send in flight.
enum Flight<F: IoFd, B: IoBuf> {
    Idle,
    One(Op<Send<F, Slice<B>>>),
    /// `count` buffers, the first from byte `skip` on.
    Many {
        op: Op<SendBundle<F, B>>,
        skip: usize,
        count: usize,
    },
}

/// Buffers to send on one socket, in order (see the module docs).
///
/// ```
/// use proactor::{buf::SendQueue, net::UnixStream};
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let (a, b) = UnixStream::pair()?;
///     let mut queue = SendQueue::new(a.as_raw_fd());
///     queue.push(b"hello, ".to_vec());
///     queue.push(b"world".to_vec());
///     queue.flush().await?;
///     let (res, got) = b.read(Vec::with_capacity(64)).await;
///     res?;
///     assert_eq!(got, b"hello, world");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SendQueue<F: IoFd + Clone, B: IoBuf> {
    fd: F,
    /// Buffers not handed to the kernel yet, in order.
    queued: VecDeque<B>,
    /// Bytes of `queued`'s first buffer already sent (a short send stopped there).
    sent: usize,
    flight: Flight<F, B>,
    bundles: Bundles,
    /// Send requests made, and how many of them carried several buffers.
    requests: u64,
    many: u64,
}

impl<F: IoFd + Clone, B: IoBuf> SendQueue<F, B> {
    /// Buffers one request sends at most (the size of a queue's ring).
    pub const MAX_BUNDLE: u16 = MAX_BUNDLE;

    /// An empty queue sending on `fd`, with bundles where the kernel has them.
    pub fn new(fd: F) -> Self {
        SendQueue {
            fd,
            queued: VecDeque::new(),
            sent: 0,
            flight: Flight::Idle,
            bundles: Bundles::Unknown,
            requests: 0,
            many: 0,
        }
    }

    /// With `false`, several buffers go as one `sendmsg` even where the kernel has send
    /// bundles (the default, `true`, uses them there). Set before the first send.
    pub fn bundles(mut self, on: bool) -> Self {
        if !on {
            self.bundles = Bundles::Off;
        }
        self
    }

    /// Queues `buf` to be sent after everything queued before it (an empty buffer is dropped).
    pub fn push(&mut self, buf: B) {
        if buf.bytes_init() > 0 {
            self.queued.push_back(buf);
        }
    }

    /// Buffers not yet sent in full: queued, or in the send in flight.
    pub fn len(&self) -> usize {
        self.queued.len()
            + match &self.flight {
                Flight::Idle => 0,
                Flight::One(_) => 1,
                Flight::Many { count, .. } => *count,
            }
    }

    /// True when every buffer pushed has been sent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Send requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Send requests that carried several buffers (a bundle or a `sendmsg`).
    pub fn multi_requests(&self) -> u64 {
        self.many
    }

    /// True once the queue sends several buffers as a bundle (decided at its first such send).
    pub fn is_bundled(&self) -> bool {
        matches!(self.bundles, Bundles::On(_))
    }

    /// Sends until every buffer pushed has gone: `Ready(Ok(()))` then, or at the first error
    /// (the buffers not sent are dropped with the queue). Buffers pushed while it is pending are
    /// sent too. A zero-byte send is an error (`WriteZero`).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.flight {
                Flight::Idle => {
                    if self.queued.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    self.start();
                }
                Flight::One(op) => {
                    let Poll::Ready((res, slice)) = Pin::new(op).poll(cx) else {
                        return Poll::Pending;
                    };
                    self.flight = Flight::Idle;
                    let n = sent(res)?;
                    let begin = slice.begin() + n;
                    let buf = slice.into_inner();
                    if begin < buf.bytes_init() {
                        // A short send: the rest of this buffer before anything else.
                        self.queued.push_front(buf);
                        self.sent = begin;
                    }
                }
                Flight::Many { op, skip, .. } => {
                    let skip = *skip;
                    let Poll::Ready((res, mut bufs)) = Pin::new(op).poll(cx) else {
                        return Poll::Pending;
                    };
                    self.flight = Flight::Idle;
                    let mut left = sent(res)? + skip;
                    while let Some(front) = bufs.front() {
                        if left < front.bytes_init() {
                            break;
                        }
                        left -= front.bytes_init();
                        bufs.pop_front();
                    }
                    // What was not sent goes back in front of what was queued meanwhile.
                    self.sent = if bufs.is_empty() { 0 } else { left };
                    if self.queued.is_empty() {
                        self.queued = bufs; // (and its allocation, for the next send)
                    } else {
                        while let Some(buf) = bufs.pop_back() {
                            self.queued.push_front(buf);
                        }
                    }
                }
            }
        }
    }

    /// Sends everything queued (see [`SendQueue::poll_flush`]).
    pub async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Starts a send of what is queued (not empty), the first buffer from `sent`.
    fn start(&mut self) {
        self.requests += 1;
        let skip = std::mem::take(&mut self.sent);
        if self.queued.len() == 1 {
            let buf = self.queued.pop_front().expect("one queued");
            let op = crate::submit(Send::new(self.fd.clone(), buf.slice(skip..)));
            self.flight = Flight::One(op);
            return;
        }
        self.many += 1;
        let ring = self.ring();
        let take = self.queued.len().min(Self::MAX_BUNDLE as usize);
        let bufs = if take == self.queued.len() {
            std::mem::take(&mut self.queued)
        } else {
            let rest = self.queued.split_off(take);
            std::mem::replace(&mut self.queued, rest)
        };
        let count = bufs.len();
        let op = crate::submit(SendBundle::new(self.fd.clone(), bufs, skip, ring));
        self.flight = Flight::Many { op, skip, count };
    }

    /// The ring for a send of several buffers, registering it the first time; `None`: sendmsg.
    fn ring(&mut self) -> Option<Rc<SendRing>> {
        if let Bundles::On(ring) = &self.bundles {
            if !ring.poisoned.get() {
                return Some(ring.clone());
            }
            self.bundles = Bundles::Off;
        }
        if let Bundles::Unknown = self.bundles {
            self.bundles = match Handle::try_current().filter(send_bundles_on) {
                Some(handle) => match SendRing::register(&handle) {
                    Ok(Some(ring)) => Bundles::On(Rc::new(ring)),
                    Ok(None) => Bundles::Off,
                    Err(e) => {
                        tracing::info!("send bundles: no ring ({e}); sendmsg with iovecs");
                        Bundles::Off
                    }
                },
                None => Bundles::Off,
            };
            return self.ring();
        }
        None
    }
}

/// The byte count of a send's result; a zero-byte send is `WriteZero`.
fn sent(res: io::Result<usize>) -> io::Result<usize> {
    match res? {
        0 => Err(io::ErrorKind::WriteZero.into()),
        n => Ok(n),
    }
}

/// True where sends of several buffers go as bundles on `handle`'s proactor: io_uring with
/// `IORING_FEAT_RECVSEND_BUNDLE` (which covers sends as well as receives), unless
/// `PROACTOR_SEND_BUNDLE=0` (or `off`) turns them off for every queue.
fn send_bundles_on(handle: &Handle) -> bool {
    static FORCED_OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let off = *FORCED_OFF.get_or_init(|| {
        std::env::var("PROACTOR_SEND_BUNDLE").is_ok_and(|v| v == "0" || v == "off")
    });
    !off && handle.core.kind == DriverKind::Uring
        && handle.core.driver_ref().uring().is_some_and(|u| u.recv_bundles())
}
