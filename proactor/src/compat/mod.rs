//! Bridges to the poll-based I/O traits of the ecosystem: `tokio::io`, `futures::io` and
//! `hyper::rt`, each behind a cargo feature (`tokio-io`, `futures-io`, `hyper`; all off by
//! default). With `hyper`, the [`hyper`] module also has the executor and the timer hyper's
//! connection builders take.
//!
//! The ecosystem's traits lend the callee a buffer for one call (`poll_read(cx, &mut buf)`); the
//! Proactor needs a buffer that stays put until the kernel is done with it, across any number of
//! polls, and beyond the caller's future if that is dropped. [`Compat`] resolves the two by
//! owning its buffers: the kernel receives into the adapter's read buffer, and `poll_read`
//! copies out of it; `poll_write` copies into the adapter's write buffer and reports the bytes
//! written, and the adapter sends them — at once when no send is in flight, else as soon as the
//! one in flight completes (two write buffers take turns, so a writer keeps filling one while
//! the kernel sends the other).
//!
//! **Flush.** `poll_flush` returns once every accepted byte is in a send handed to the kernel —
//! what flushing a socket means (tokio's `TcpStream` flushes nothing: its `write` already gave
//! the bytes to the kernel). It does not wait for that send to complete: a server that answers
//! a request goes on to read the next one in the same poll, instead of being polled once more
//! when the send completes, and that completion wakes nobody. Such a send is finished by the loop
//! even if the adapter is dropped first (as the kernel sends what a closed socket was given);
//! its error, if any, is returned by the adapter's next write, flush or shutdown.
//! `poll_shutdown` waits for every send to complete, then shuts the write side down;
//! [`Compat::poll_flush_sends`] waits for the completions without shutting down.
//!
//! **Cancellation.** The operation in flight belongs to the adapter, not to the caller's future:
//! when a `read` future is dropped (a timeout, a `select!` that took another branch) its receive
//! keeps going, and the next `poll_read` resumes it, so no byte of the stream is lost. Dropping
//! the adapter cancels its receive (the buffer is parked until the kernel returns it, as for any
//! [`crate::Op`]); a send in flight is finished by a task of its own, which then drops the
//! stream. Bytes written and not flushed are dropped with the adapter.
//!
//! **Allocation.** The read buffer and the two write buffers are allocated once, on first use,
//! at the capacities given to [`Compat::with_capacity`] (64 KiB each by default); a call
//! allocates nothing. [`Compat::with_pool`] reads from a pool many connections share instead:
//! a connection then holds a receive buffer only while received bytes wait to be read.
//!
//! ```
//! # #[cfg(feature = "tokio-io")] {
//! use proactor::compat::Compat;
//! use proactor::net::UnixStream;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let p = proactor::Proactor::new()?;
//! p.block_on(async {
//!     let (a, b) = UnixStream::pair()?;
//!     let (mut a, mut b) = (Compat::new(a), Compat::new(b));
//!     a.write_all(b"hello").await?;
//!     a.flush().await?;
//!     let mut buf = [0u8; 5];
//!     b.read_exact(&mut buf).await?;
//!     assert_eq!(&buf, b"hello");
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # }
//! # Ok::<(), std::io::Error>(())
//! ```

#[cfg(feature = "futures-io")]
mod futures_io;
#[cfg(feature = "hyper")]
pub mod hyper;
mod stream;
#[cfg(feature = "tokio-io")]
mod tokio_io;

pub use stream::CompatStream;

use crate::buf::{BufPool, IoBuf, PooledBuf, RecvStream, Slice};
use crate::fd::IoFd;
use crate::op::{Recv, Send, Shutdown};
use crate::Op;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, RawWaker, RawWakerVTable, Waker};

/// Default capacity of the read buffer and of each of the two write buffers.
pub const DEFAULT_CAPACITY: usize = 64 * 1024;

/// A proactor stream with the poll-based I/O traits of `tokio`, `futures` and `hyper`.
///
/// See the [module documentation](self) for how buffers, cancellation and flushing work. The
/// adapter implements, each under its feature:
/// - `tokio-io`: `tokio::io::{AsyncRead, AsyncBufRead, AsyncWrite}`;
/// - `futures-io`: `futures::io::{AsyncRead, AsyncBufRead, AsyncWrite}`;
/// - `hyper`: `hyper::rt::{Read, Write}`.
///
/// Writes are vectored (`is_write_vectored` is true): every slice is copied into the write
/// buffer, as far as it has room.
pub struct Compat<S: CompatStream> {
    /// `None` only once `drop` has handed it to the task finishing a send.
    stream: Option<S>,
    read: ReadSide<S::Fd>,
    /// Set by [`Compat::with_pool`]: the bytes come from a multishot receive into the pool's
    /// buffers instead (and `read` stays unused).
    pooled: Option<Box<PooledRead<S::Fd>>>,
    write: WriteSide<S::Fd>,
}

/// The receiving half when the adapter reads from a pool ([`Compat::with_pool`]).
struct PooledRead<F: IoFd + Clone> {
    chunks: RecvStream<F>,
    /// The chunk being handed out, from `pos`; dropped (its buffer back in the pool) as soon
    /// as it is all read.
    chunk: Option<PooledBuf>,
    pos: usize,
    /// The stream ended (end of stream, or after its error).
    ended: bool,
}

/// The receiving half of the state.
struct ReadSide<F: IoFd> {
    /// Received bytes; `pos..buf.len()` not yet handed out. Empty (no allocation) while `op`
    /// holds the buffer.
    buf: Vec<u8>,
    pos: usize,
    /// The receive in flight, which owns the buffer until it completes.
    op: Option<Op<Recv<F, Vec<u8>>>>,
    /// The last receive did not fill the buffer: the socket had no more, so the next receive
    /// waits for data before its first attempt (`CompatStream::recv_polling_first`).
    drained: bool,
    cap: usize,
}

/// The sending half of the state.
struct WriteSide<F: IoFd> {
    /// Bytes accepted from the caller and not yet handed to the kernel.
    fill: Vec<u8>,
    /// The other buffer, idle and empty, while `op` is `None`; empty and unallocated while `op`
    /// has it.
    spare: Vec<u8>,
    /// The send in flight: the rest of a buffer, after any partial sends.
    op: Option<Op<Send<F, Slice<Vec<u8>>>>>,
    /// How many bytes the send in flight has still to send (0 with none in flight).
    sending: usize,
    /// A caller waits for the send in flight (it returned `Pending` on it): every poll of that
    /// send then registers the caller's waker, never the quiet one, so its wake is not lost.
    awaited: bool,
    /// A failed send whose bytes had already been reported written: told on the next call.
    error: Option<io::Error>,
    /// The shutdown in flight, then `Done`.
    shutdown: ShutdownState<F>,
    cap: usize,
}

enum ShutdownState<F: IoFd> {
    Open,
    InFlight(Op<Shutdown<F>>),
    Done,
}

// Nothing in `Compat` is ever pinned in place: the operations move their buffers into the
// run loop's memory, and `stream` is only used through `&S`.
impl<S: CompatStream> Unpin for Compat<S> {}

impl<S: CompatStream> Compat<S> {
    /// Wraps `stream` with the default buffer capacities ([`DEFAULT_CAPACITY`]).
    pub fn new(stream: S) -> Self {
        Self::with_capacity(stream, DEFAULT_CAPACITY, DEFAULT_CAPACITY)
    }

    /// Wraps `stream` with a read buffer of `read` bytes and two write buffers of `write`
    /// bytes each (each at least 1). A receive asks the kernel for at most `read` bytes; a send
    /// gives it at most `write`.
    pub fn with_capacity(stream: S, read: usize, write: usize) -> Self {
        Compat {
            stream: Some(stream),
            read: ReadSide { buf: Vec::new(), pos: 0, op: None, drained: false, cap: read.max(1) },
            pooled: None,
            write: WriteSide {
                fill: Vec::new(),
                spare: Vec::new(),
                op: None,
                sending: 0,
                awaited: false,
                error: None,
                shutdown: ShutdownState::Open,
                cap: write.max(1),
            },
        }
    }

    /// Wraps `stream`, receiving into buffers of `pool` — one multishot receive for the whole
    /// connection where the driver has it ([`RecvStream`]), instead of a receive into the
    /// adapter's own buffer for each read — and writing as [`Compat::new`] does. Many
    /// connections share one pool; a connection holds a buffer only from the moment its data
    /// arrives until it is read. A stream that cannot receive from a pool
    /// ([`CompatStream::recv_stream`] is `None`) reads as [`Compat::new`] does.
    ///
    /// Once the stream has ended (end of stream, or after a receive error, which is returned
    /// once) every read returns end of stream.
    ///
    /// Fewer system-level steps per read, not fewer instructions: under hyper's hello world at
    /// 100 connections a response took 1 submission instead of 2 and no poll arm, the kernel's
    /// io_uring share fell from 7.9 % to 5.5 % of the server's CPU, and user space rose from
    /// 8,745 to 9,435 instructions (a multishot completion costs the loop more than a one-shot
    /// one) — level overall, so the examples keep [`Compat::new`].
    pub fn with_pool(stream: S, pool: &BufPool) -> Self {
        let chunks = stream.recv_stream(pool);
        let mut compat = Self::new(stream);
        compat.pooled =
            chunks.map(|chunks| Box::new(PooledRead { chunks, chunk: None, pos: 0, ended: false }));
        compat
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        self.stream()
    }

    #[inline]
    fn stream(&self) -> &S {
        self.stream.as_ref().expect("the stream is taken only by drop")
    }

    /// Bytes received and not yet read (of the chunk being read, with [`Compat::with_pool`]).
    pub fn buffered_read(&self) -> &[u8] {
        match &self.pooled {
            Some(p) => p.chunk.as_deref().map_or(&[], |c| &c[p.pos..]),
            None => &self.read.buf[self.read.pos..],
        }
    }

    /// True while a receive is in flight (the kernel owns the read buffer). It stays in flight
    /// when the read future that started it is dropped; the next read resumes it. With
    /// [`Compat::with_pool`], true until the stream ends: its one receive goes on throughout.
    pub fn read_in_flight(&self) -> bool {
        match &self.pooled {
            Some(p) => !p.ended,
            None => self.read.op.is_some(),
        }
    }

    /// Bytes accepted by `poll_write` that the kernel has not finished sending (flush to send
    /// them).
    pub fn pending_write(&self) -> usize {
        self.write.fill.len() + self.write.sending
    }

    /// Gives the stream back. Bytes received and not yet read, and bytes written and not yet
    /// flushed, are dropped with the adapter's buffers; an operation in flight is cancelled —
    /// a flushed send too, so wait for [`Compat::poll_flush_sends`] first to keep its bytes.
    pub fn into_inner(mut self) -> S {
        // Cancelled here, not finished by `drop`: the caller has the stream back at once.
        self.write.op = None;
        self.stream.take().expect("the stream is taken only by drop")
    }

    /// Waits until received bytes are available and returns them (empty at end of stream).
    /// [`Compat::consume`] marks bytes as read.
    pub fn poll_fill_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        if let Some(p) = self.pooled.as_deref_mut() {
            return p.poll_fill_buf(cx);
        }
        let read = &mut self.read;
        while read.pos == read.buf.len() {
            if let Some(op) = read.op.as_mut() {
                let (res, buf) = ready!(Pin::new(op).poll(cx));
                read.op = None;
                read.drained = buf.len() < buf.capacity();
                read.buf = buf;
                read.pos = 0;
                match res {
                    Ok(0) => {
                        read.buf.clear();
                        return Poll::Ready(Ok(&[]));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        read.buf.clear();
                        return Poll::Ready(Err(e));
                    }
                }
            } else {
                let mut buf = std::mem::take(&mut read.buf);
                buf.clear();
                if buf.capacity() < read.cap {
                    buf.reserve_exact(read.cap);
                }
                read.pos = 0;
                let stream = self.stream.as_ref().expect("taken only by drop");
                read.op = Some(if read.drained {
                    stream.recv_polling_first(buf)
                } else {
                    stream.recv(buf)
                });
            }
        }
        Poll::Ready(Ok(&read.buf[read.pos..]))
    }

    /// Marks `n` bytes of those [`Compat::poll_fill_buf`] returned as read.
    pub fn consume(&mut self, n: usize) {
        if let Some(p) = self.pooled.as_deref_mut() {
            return p.consume(n);
        }
        self.read.pos = (self.read.pos + n).min(self.read.buf.len());
    }

    /// Copies received bytes into `dst` (waiting for some if none are buffered); `Ok(0)` at end
    /// of stream or when `dst` is empty.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_with(cx, dst.len(), |src| dst[..src.len()].copy_from_slice(src))
    }

    /// The one read every trait's `poll_read` is: waits for received bytes (unless `room` is 0),
    /// hands at most `room` of them to `put`, which copies them out, and marks those read.
    /// `Ok(0)` at end of stream or when `room` is 0 (then `put` is not called).
    pub(crate) fn poll_read_with(
        &mut self,
        cx: &mut Context<'_>,
        room: usize,
        put: impl FnOnce(&[u8]),
    ) -> Poll<io::Result<usize>> {
        if room == 0 {
            return Poll::Ready(Ok(0));
        }
        let src = ready!(self.poll_fill_buf(cx))?;
        let n = src.len().min(room);
        put(&src[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }

    /// [`Compat::poll_write_from`] with one slice: every trait's `poll_write`.
    pub(crate) fn poll_write_one(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_from(cx, &[io::IoSlice::new(buf)])
    }

    /// Accepts bytes from `bufs` into the write buffer, in order, as far as it has room, and
    /// returns how many; waits only when the buffer is full and a send is in flight. The bytes
    /// go out without a flush when no send is in flight; [`Compat::poll_hand_off`] makes sure
    /// they do.
    pub fn poll_write_from(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if let Some(e) = self.write.error.take() {
            return Poll::Ready(Err(e));
        }
        loop {
            // Progress on the send in flight, without waiting for it; its error is this call's.
            if let Poll::Ready(Err(e)) = self.drive_send(cx, Wait::No) {
                return Poll::Ready(Err(e));
            }
            let w = &mut self.write;
            if w.fill.capacity() < w.cap {
                w.fill.reserve_exact(w.cap - w.fill.len());
            }
            let mut room = w.cap.saturating_sub(w.fill.len());
            if room > 0 {
                let mut n = 0;
                for b in bufs {
                    let take = b.len().min(room);
                    w.fill.extend_from_slice(&b[..take]);
                    n += take;
                    room -= take;
                    if room == 0 {
                        break;
                    }
                }
                if w.op.is_none() {
                    self.start_send();
                    // Submits the send; a failure is told on the next call, since these bytes
                    // were accepted.
                    if let Poll::Ready(Err(e)) = self.drive_send(cx, Wait::No) {
                        self.write.error = Some(e);
                    }
                }
                return Poll::Ready(Ok(n));
            }
            if self.write.op.is_some() {
                // Full: wait for the send in flight (or, if it has just completed, go on).
                ready!(self.drive_send(cx, Wait::Yes))?;
                continue;
            }
            self.start_send();
        }
    }

    /// Hands every byte accepted so far to a send, waiting only for a send in flight that other
    /// bytes queue behind (sends go out one at a time, in order). `Ready` does not wait for the
    /// last send to complete, nor registers `cx` with it: see the [module
    /// documentation](self). This is the traits' `poll_flush`.
    pub fn poll_hand_off(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if let Some(e) = self.write.error.take() {
                return Poll::Ready(Err(e));
            }
            if self.write.fill.is_empty() {
                // All sent, or in the send in flight, which was polled (submitted) when it
                // started: the next write or flush takes its result.
                return Poll::Ready(Ok(()));
            }
            ready!(self.drive_send(cx, Wait::Yes))?;
            self.start_send();
            // Submits it (an operation reaches the loop at its first poll); the loop then
            // returns `Ready`, the filling buffer being empty.
            if let Poll::Ready(Err(e)) = self.drive_send(cx, Wait::No) {
                return Poll::Ready(Err(e));
            }
        }
    }

    /// Waits until every byte accepted so far has been sent (the sends have completed); a
    /// failed send is returned here.
    pub fn poll_flush_sends(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if let Some(e) = self.write.error.take() {
                return Poll::Ready(Err(e));
            }
            ready!(self.drive_send(cx, Wait::Yes))?;
            if self.write.fill.is_empty() {
                return Poll::Ready(Ok(()));
            }
            self.start_send();
        }
    }

    /// Waits for every send to complete, then shuts the write side down (the peer reads end of
    /// stream). Calling it again after it succeeded returns `Ok` at once.
    pub fn poll_shutdown_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush_sends(cx))?;
        loop {
            match &mut self.write.shutdown {
                ShutdownState::Done => return Poll::Ready(Ok(())),
                ShutdownState::Open => {
                    let op = self.stream.as_ref().expect("taken only by drop").shutdown_write();
                    self.write.shutdown = ShutdownState::InFlight(op);
                }
                ShutdownState::InFlight(op) => {
                    let res = ready!(Pin::new(op).poll(cx));
                    self.write.shutdown = ShutdownState::Done;
                    return Poll::Ready(res);
                }
            }
        }
    }

    /// Hands the filling buffer to a new send and makes the spare buffer the filling one.
    /// Only called with no send in flight and bytes to send; the caller then polls the send
    /// (`drive_send`), which submits it.
    fn start_send(&mut self) {
        let w = &mut self.write;
        debug_assert!(w.op.is_none() && !w.fill.is_empty());
        let next = std::mem::take(&mut w.spare);
        let buf = std::mem::replace(&mut w.fill, next);
        let len = buf.len();
        w.sending = len;
        w.awaited = false;
        w.op = Some(self.stream.as_ref().expect("taken only by drop").send(buf.slice(..len)));
    }

    /// Polls the send in flight until it has sent its whole buffer (resubmitting the rest after
    /// a partial send). `Ready(Ok)` when nothing is in flight. With [`Wait::No`] the send is
    /// polled with a waker that does nothing, so its completion wakes no task — unless a caller
    /// already waits for it: then with `cx`, as with [`Wait::Yes`].
    fn drive_send(&mut self, cx: &mut Context<'_>, wait: Wait) -> Poll<io::Result<()>> {
        if matches!(wait, Wait::Yes) {
            self.write.awaited = true;
        }
        if self.write.awaited {
            self.drive_send_in(cx)
        } else {
            self.drive_send_in(&mut Context::from_waker(&noop_waker()))
        }
    }

    fn drive_send_in(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(op) = self.write.op.as_mut() {
            let (res, slice) = ready!(Pin::new(op).poll(cx));
            self.write.op = None;
            self.write.sending = 0;
            let (begin, end) = (slice.begin(), slice.end());
            let buf = slice.into_inner();
            match res {
                Ok(n) if n > 0 && begin + n < end => {
                    self.write.sending = end - begin - n;
                    let rest = buf.slice(begin + n..end);
                    self.write.op = Some(self.stream.as_ref().expect("taken by drop").send(rest));
                }
                Ok(n) => {
                    self.recycle(buf);
                    if n == 0 {
                        return Poll::Ready(Err(write_zero(end - begin)));
                    }
                }
                Err(e) => {
                    self.recycle(buf);
                    return Poll::Ready(Err(e));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Keeps a sent buffer as the spare (empty, its allocation kept).
    fn recycle(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        self.write.spare = buf;
    }
}

impl<F: IoFd + Clone> PooledRead<F> {
    fn poll_fill_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        while !matches!(&self.chunk, Some(c) if self.pos < c.len()) {
            self.chunk = None;
            if self.ended {
                return Poll::Ready(Ok(&[]));
            }
            match ready!(futures_core::Stream::poll_next(Pin::new(&mut self.chunks), cx)) {
                Some(Ok(chunk)) => {
                    self.chunk = Some(chunk);
                    self.pos = 0;
                }
                Some(Err(e)) => {
                    // The stream ends after its error.
                    self.ended = true;
                    return Poll::Ready(Err(e));
                }
                None => self.ended = true,
            }
        }
        let chunk = self.chunk.as_deref().unwrap_or_default();
        Poll::Ready(Ok(&chunk[self.pos..]))
    }

    fn consume(&mut self, n: usize) {
        let len = self.chunk.as_ref().map_or(0, |c| c.len());
        self.pos = (self.pos + n).min(len);
        if self.pos == len {
            // All read: its buffer goes back to the pool now, not at the next read.
            self.chunk = None;
        }
    }
}

/// Whether a poll of the send in flight registers the caller's waker.
#[derive(Clone, Copy)]
enum Wait {
    /// The caller returns `Pending` if the send is not done: its completion must wake it.
    Yes,
    /// The caller goes on either way: the completion wakes nobody.
    No,
}

/// The error of a send the kernel took none of.
fn write_zero(len: usize) -> io::Error {
    let msg = format!("the socket accepted none of {len} bytes");
    io::Error::new(io::ErrorKind::WriteZero, msg)
}

/// A waker that does nothing, for the sends nobody waits for (`Waker::noop` needs Rust 1.85;
/// the crate builds on 1.80).
fn noop_waker() -> Waker {
    fn clone(_: *const ()) -> RawWaker {
        RawWaker::new(std::ptr::null(), &NOOP)
    }
    fn ignore(_: *const ()) {}
    static NOOP: RawWakerVTable = RawWakerVTable::new(clone, ignore, ignore, ignore);
    // SAFETY: no function of the vtable reads the data pointer (null), `clone` returns the same
    // raw waker, and waking or dropping does nothing: the `RawWaker` contract holds, on any
    // thread.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &NOOP)) }
}

/// A dropped adapter's send in flight: bytes `poll_flush` said were handed to the kernel, so
/// they are sent to the end (a partial send's rest resubmitted); `stream` is dropped after.
async fn finish_send<S: CompatStream>(stream: S, mut op: Op<Send<S::Fd, Slice<Vec<u8>>>>) {
    loop {
        let (res, slice) = (&mut op).await;
        let (begin, end) = (slice.begin(), slice.end());
        match res {
            Ok(n) if n > 0 && begin + n < end => {
                op = stream.send(slice.into_inner().slice(begin + n..end));
            }
            // Sent, or failed: no one is left to tell (as for a socket closed after a write).
            _ => return,
        }
    }
}

impl<S: CompatStream> Drop for Compat<S> {
    /// Hands a send in flight, with the stream, to a task that finishes it; everything else
    /// (a receive in flight, buffered bytes) is dropped with the adapter. Without a proactor
    /// on this thread the send is cancelled like any dropped operation.
    fn drop(&mut self) {
        let Some(op) = self.write.op.take() else { return };
        let Some(handle) = crate::runtime::Handle::try_current() else { return };
        if let Some(stream) = self.stream.take() {
            drop(handle.spawn(finish_send(stream, op)));
        }
    }
}

impl<S: CompatStream + std::fmt::Debug> std::fmt::Debug for Compat<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compat")
            .field("stream", &self.stream)
            .field("pooled", &self.pooled.is_some())
            .field("buffered_read", &self.buffered_read().len())
            .field("read_in_flight", &self.read_in_flight())
            .field("buffered_write", &self.write.fill.len())
            .field("write_in_flight", &self.write.op.is_some())
            .finish()
    }
}
