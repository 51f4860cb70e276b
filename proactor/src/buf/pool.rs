//! A pool of receive buffers, so that a connection waiting for its peer holds no buffer at all.
//!
//! With a buffer per pending receive, 10,000 idle connections pin 10,000 buffers. With the pool a
//! buffer is taken only when data has arrived:
//! - On io_uring the pool is a **provided-buffer ring** (`IORING_REGISTER_PBUF_RING`): receives are
//!   submitted with `IOSQE_BUFFER_SELECT` and no buffer; the kernel picks one from the ring when
//!   data arrives and reports its id in the completion's flags.
//! - On epoll (and on io_uring when asked for [`BufPoolBuilder::user_space`], or when the kernel
//!   lacks buffer rings) a user-space free list with the same API: the receive waits for
//!   readiness, and only then takes a buffer and receives into it.
//!
//! A ring offers the kernel only as many buffers as recent bursts of receives took (its
//! *window*, at least [`MIN_WINDOW`]); the rest wait on a stack in user space, and the buffer
//! given back last is the next one offered. The kernel takes a ring's buffers in the order
//! they were appended, so a ring offering all of them cycles through the whole pool: with
//! 1,024 buffers of 16 KiB and 100 connections each receive landed in a buffer last used
//! 1,023 receives earlier, long out of the cache, and the kernel's copy into it took 3.8–4.9 %
//! of the echo server's time at 100 conns × 64 B (tokio's, into a buffer per connection: 1.3 %;
//! with 128 buffers: 1.4–1.5 %; `perf record -e cpu-clock`, `_copy_to_iter`). A receive that
//! finds the ring empty while buffers wait on the stack doubles the window (and that receive
//! starts again as after any `ENOBUFS`); the window shrinks by a sixteenth after every
//! 16 windows' worth of receives that never found it empty, so it follows the load down
//! slowly and an `ENOBUFS` stays rare.
//!
//! When every buffer is in use the kernel (or the free list) reports `ENOBUFS`; the data stays in
//! the socket, and [`BufPool::recv`] waits until a buffer comes back and receives again — nothing
//! is lost. (An `ENOBUFS` while a buffer is free is retried at once.) A [`PooledBuf`] returns its
//! buffer to the pool when dropped.
//!
//! Two kernel options change how a ring's buffers are used, not what a receive yields:
//! - **Incremental consumption** ([`BufPoolBuilder::incremental`], `IOU_PBUF_RING_INC`, 6.12):
//!   a receive takes only the bytes it needs from a buffer and the next receive — of any
//!   connection of the pool — continues in the same buffer. Many small messages then share one
//!   large buffer. Each [`PooledBuf`] is one such piece, starting where the previous completion
//!   naming that buffer ended; the buffer goes back to the ring once the kernel has moved past
//!   it *and* every piece of it was dropped. "Moved past" is the kernel's own rule
//!   (`io_kbuf_inc_commit`, io_uring/kbuf.c): a buffer leaves the ring exactly when its
//!   remaining length reaches 0, and the kernel writes that length into the ring entry. The
//!   completion's `IORING_CQE_F_BUF_MORE` says the same thing on the usual paths, but not on all
//!   of them: a receive that committed part of a buffer on a retry path reports no `BUF_MORE`
//!   although the buffer stays (6.18: a `MSG_WAITALL` receive finished in two parts), and one
//!   punted to a worker thread commits the whole rest when it picks the buffer, so a buffer can
//!   leave the ring with bytes unused. The pool therefore takes a buffer back only when the
//!   completion says `BUF_MORE` is clear *and* the ring entry shows the kernel let go of it.
//!   Since a piece starts where the previous completion naming its buffer ended, completions
//!   are accounted in the order the kernel posted them: when the loop takes them, not when an
//!   awaiting task runs (accounted then, a one-shot receive's completion came after the
//!   multishot completions of the same turn, and two connections' pieces were swapped).
//! - **Receive bundles** ([`BufPoolBuilder::bundles`], `IORING_RECVSEND_BUNDLE`, 6.10): one
//!   multishot receive completion fills several buffers in a row (a burst larger than a buffer
//!   costs one completion, not one per buffer). [`RecvStream`](super::RecvStream) yields them as
//!   consecutive [`PooledBuf`]s, each given back on its own; a handler of
//!   [`RecvMulti`](crate::op::RecvMulti) gets them together as one [`Received`].
//!
//! Either is used only where the kernel has it (probed when the pool is built;
//! [`BufPool::is_incremental`], [`BufPool::has_bundles`]); elsewhere, and on epoll, the pool
//! takes a whole buffer per receive. Asked for both, a pool consumes incrementally and takes no
//! bundles: a bundle that the kernel retries in one request (more data came while it filled
//! the buffers) reports the `BUF_MORE` of its first round, and its last buffer may be left
//! either way, which no completion would then tell. The bytes, and their order, are the same
//! whichever options are in use.
//! `PROACTOR_BUFRING=plain|inc|bundles|inc+bundles` overrides the builder's choice for every pool
//! of the process (for measuring one against the other without rebuilding a server).

use super::pooled_buf::{PooledBuf, Received};
use super::ring::RingState;
use crate::fd::IoFd;
use crate::op::{raw_os_error, RecvPooled};
use crate::runtime::Handle;
use io_uring::cqueue;
use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// The most buffers one ring may hold.
const MAX_BUFFERS: u16 = 1 << 15;
/// The fewest buffers a ring offers the kernel at a time (all of them in a smaller pool; see
/// the module docs).
pub(crate) const MIN_WINDOW: u16 = 32;
const PAGE: usize = 4096;

/// Settings of a [`BufPool`]: how many buffers, how large, and where they are managed.
#[derive(Debug, Clone)]
pub struct BufPoolBuilder {
    buffers: u16,
    buffer_size: usize,
    user_space: bool,
    incremental: bool,
    bundles: bool,
}

impl Default for BufPoolBuilder {
    fn default() -> Self {
        BufPoolBuilder {
            buffers: 256,
            buffer_size: 16 * 1024,
            user_space: false,
            incremental: false,
            bundles: false,
        }
    }
}

impl BufPoolBuilder {
    /// Number of buffers (default 256; between 1 and 32,768).
    pub fn buffers(mut self, n: u16) -> Self {
        self.buffers = n.clamp(1, MAX_BUFFERS);
        self
    }

    /// Size of each buffer in bytes (default 16 KiB): the most one receive returns.
    pub fn buffer_size(mut self, size: usize) -> Self {
        self.buffer_size = size.clamp(1, u32::MAX as usize);
        self
    }

    /// Manage the buffers in user space even on io_uring (the kernel then does not pick them).
    pub fn user_space(mut self, on: bool) -> Self {
        self.user_space = on;
        self
    }

    /// Let the kernel consume a buffer in part (`IOU_PBUF_RING_INC`), so small receives share
    /// a large buffer (see the module docs). Off by default; ignored where the kernel lacks it,
    /// on epoll and in user space. Turns [`bundles`](Self::bundles) off.
    pub fn incremental(mut self, on: bool) -> Self {
        self.incremental = on;
        self
    }

    /// Let one multishot receive completion fill several buffers (`IORING_RECVSEND_BUNDLE`; see
    /// the module docs). Off by default; ignored where the kernel lacks it, on epoll and in user
    /// space, by one-shot receives, and on a pool that consumes incrementally (the module docs
    /// say why).
    pub fn bundles(mut self, on: bool) -> Self {
        self.bundles = on;
        self
    }

    /// Builds the pool for the proactor running on this thread.
    pub fn build(self) -> io::Result<BufPool> {
        let handle = Handle::try_current().ok_or_else(|| {
            io::Error::other("BufPool::build needs a running proactor (use build_on)")
        })?;
        self.build_on(&handle)
    }

    /// Builds the pool for the proactor of `handle`.
    pub fn build_on(self, handle: &Handle) -> io::Result<BufPool> {
        let (incremental, bundles) = forced_options().unwrap_or((self.incremental, self.bundles));
        let count = self.buffers.clamp(1, MAX_BUFFERS);
        let size = self.buffer_size;
        let total = size.checked_mul(count as usize).filter(|&t| t <= isize::MAX as usize / 2);
        let layout = total
            .and_then(|t| Layout::from_size_align(t, PAGE).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "buffer pool too large"))?;
        // SAFETY: the layout has a non-zero size (count >= 1, size >= 1).
        let mem = NonNull::new(unsafe { std::alloc::alloc(layout) })
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mut inner = PoolInner {
            mem,
            layout,
            size,
            count,
            ring: None,
            bundles: false,
            state: (0..count).map(|_| Cell::new(BufState::default())).collect(),
            free: RefCell::new((0..count).rev().collect()),
            in_ring: Cell::new(0),
            window: Cell::new(count.min(MIN_WINDOW)),
            since_resize: Cell::new(0),
            outstanding: Cell::new(0),
            returned: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            stream_waiters: RefCell::new(std::collections::VecDeque::new()),
            exhausted: Cell::new(0),
            bundled: Cell::new(0),
            partial: Cell::new(0),
            kernel_kept: Cell::new(0),
        };
        if !self.user_space {
            match RingState::register(handle, count, incremental) {
                Ok(Some(ring)) => {
                    inner.bundles = bundles
                        && !ring.incremental
                        && handle.core.driver_ref().uring().is_some_and(|u| u.recv_bundles());
                    inner.ring = Some(ring);
                    inner.free.borrow_mut().clear();
                    // The first window's worth into the ring, the rest onto the stack.
                    for id in 0..count {
                        inner.make_available(id);
                    }
                    inner.returned.set(0);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(
                        "provided-buffer ring unavailable ({e}); using a user-space pool"
                    )
                }
            }
        }
        Ok(BufPool { inner: Rc::new(inner) })
    }
}

/// `PROACTOR_BUFRING`: `(incremental, bundles)` for every pool, if set (see the module docs).
fn forced_options() -> Option<(bool, bool)> {
    let value = std::env::var("PROACTOR_BUFRING").ok()?;
    let mut forced = (false, false);
    for word in value.split(['+', ',']).map(str::trim) {
        match word {
            "inc" | "incremental" => forced.0 = true,
            "bundles" | "bundle" => forced.1 = true,
            "plain" | "" => {}
            other => {
                tracing::warn!("PROACTOR_BUFRING: unknown option {other:?} (plain, inc, bundles)");
                return None;
            }
        }
    }
    Some(forced)
}

/// A pool of receive buffers shared by many connections of one proactor (see the module docs).
///
/// ```
/// use proactor::{buf::BufPool, net::UnixStream};
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let pool = BufPool::builder().buffers(8).buffer_size(4096).build()?;
///     let (a, b) = UnixStream::pair()?;
///     let (res, _) = a.write(b"hello".as_slice()).await;
///     res?;
///     let buf = b.read_pooled(&pool).await?.expect("data, not end of stream");
///     assert_eq!(&buf[..], b"hello");
///     assert_eq!(pool.available(), 7);
///     drop(buf); // back to the pool
///     assert_eq!(pool.available(), 8);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct BufPool {
    inner: Rc<PoolInner>,
}

impl BufPool {
    /// Settings for a pool.
    pub fn builder() -> BufPoolBuilder {
        BufPoolBuilder::default()
    }

    /// A pool of `buffers` buffers of `size` bytes for the proactor running on this thread.
    pub fn new(buffers: u16, size: usize) -> io::Result<BufPool> {
        Self::builder().buffers(buffers).buffer_size(size).build()
    }

    /// Receives on `fd` into a buffer from this pool, taken only once data is there.
    /// `Ok(None)` means the peer closed its side. When the pool is dry, waits for a buffer to
    /// come back and receives again; the data waits in the socket meanwhile.
    pub async fn recv<F: IoFd + Clone>(&self, fd: F) -> io::Result<Option<PooledBuf>> {
        if self.inner.ring.is_some() && !self.inner.ring_is_current() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this buffer pool is registered with another proactor's ring",
            ));
        }
        loop {
            let seen = self.inner.returned.get();
            match crate::submit(RecvPooled::new(fd.clone(), self)).await {
                Ok(got) => return Ok(got),
                Err(e) if raw_os_error(&e) == Some(libc::ENOBUFS) => {
                    self.inner.note_exhausted();
                    if self.inner.dry_since(seen) {
                        BufferReturned { pool: &self.inner, seen }.await;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Size of each buffer.
    pub fn buffer_size(&self) -> usize {
        self.inner.size
    }

    /// Number of buffers in the pool.
    pub fn capacity(&self) -> usize {
        self.inner.count as usize
    }

    /// Buffers a receive can still fill: not held by [`PooledBuf`]s (on io_uring this includes
    /// buffers the kernel has just filled whose completions are not processed yet, and, with
    /// incremental consumption, a buffer whose rest the kernel still fills while pieces of it
    /// are lent out).
    pub fn available(&self) -> usize {
        self.inner.count as usize - self.inner.outstanding.get()
    }

    /// How many receives found the pool dry and had to wait for a buffer.
    pub fn exhausted_count(&self) -> u64 {
        self.inner.exhausted.get()
    }

    /// How many receive completions filled several buffers (receive bundles).
    pub fn bundle_count(&self) -> u64 {
        self.inner.bundled.get()
    }

    /// How many pieces were taken from a buffer the kernel went on filling (incremental
    /// consumption: the buffer served the next receive too).
    pub fn partial_count(&self) -> u64 {
        self.inner.partial.get()
    }

    /// True when the kernel picks the buffers (an io_uring provided-buffer ring).
    pub fn is_kernel_ring(&self) -> bool {
        self.inner.ring.is_some()
    }

    /// True when the kernel consumes this pool's buffers in part (asked for with
    /// [`BufPoolBuilder::incremental`], and the kernel has `IOU_PBUF_RING_INC`).
    pub fn is_incremental(&self) -> bool {
        self.inner.ring.as_ref().is_some_and(|r| r.incremental)
    }

    /// True when a multishot receive on this pool takes several buffers per completion (asked
    /// for with [`BufPoolBuilder::bundles`], and the kernel has `IORING_RECVSEND_BUNDLE`).
    pub fn has_bundles(&self) -> bool {
        self.inner.bundles
    }

    pub(crate) fn inner(&self) -> &Rc<PoolInner> {
        &self.inner
    }

    pub(crate) fn from_inner(inner: &Rc<PoolInner>) -> BufPool {
        BufPool { inner: inner.clone() }
    }
}

impl std::fmt::Debug for BufPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufPool")
            .field("buffers", &self.capacity())
            .field("buffer_size", &self.buffer_size())
            .field("available", &self.available())
            .field("kernel_ring", &self.is_kernel_ring())
            .field("incremental", &self.is_incremental())
            .field("bundles", &self.has_bundles())
            .finish()
    }
}

/// Resolves once a buffer has come back to the pool since `seen`.
struct BufferReturned<'a> {
    pool: &'a PoolInner,
    seen: u64,
}

impl Future for BufferReturned<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.pool.returned.get() != self.seen {
            return Poll::Ready(());
        }
        self.pool.wait_for_return(cx.waker());
        Poll::Pending
    }
}

/// Where one buffer of the pool is.
#[derive(Debug, Clone, Copy, Default)]
struct BufState {
    /// Out of the ring and off the free list: the kernel is done with it (or a user-space
    /// receive took it), and pieces of it are lent out. Only a lent buffer can be given back.
    lent: bool,
    /// `PooledBuf`s of this buffer alive.
    pieces: u32,
    /// Bytes of it the kernel has consumed so far (incremental rings; 0 otherwise).
    consumed: u32,
}

/// The pool's memory and bookkeeping, shared by the pool handles, the buffers handed out and
/// the receive operations in flight (so it outlives every one of them).
pub(crate) struct PoolInner {
    /// `count` buffers of `size` bytes, one block. The kernel (or a receive) writes into a
    /// buffer only while it is not lent (see `BufState`), and only past what it consumed.
    mem: NonNull<u8>,
    layout: Layout,
    size: usize,
    count: u16,
    ring: Option<RingState>,
    /// Multishot receives on the ring ask for bundles.
    bundles: bool,
    state: Box<[Cell<BufState>]>,
    /// Free buffer ids offered to no receive yet: a user-space pool's free list, or on a ring
    /// the buffers held back beyond its window. Given back last, taken first (the warmest in
    /// the cache).
    free: RefCell<Vec<u16>>,
    /// Ring only: buffers appended to the ring that no completion has named yet (the kernel
    /// may have taken some already).
    in_ring: Cell<u16>,
    /// Ring only: how many buffers the ring is kept at while some are free (see the module
    /// docs), from `MIN_WINDOW` (or every buffer of a smaller pool) to all of them.
    window: Cell<u16>,
    /// Ring only: buffers taken from the ring since the window last changed.
    since_resize: Cell<u32>,
    /// Buffers lent out (`BufState::lent`).
    outstanding: Cell<usize>,
    /// Counts buffers given back, so a waiter can tell whether one came back since it looked.
    returned: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    /// Receive streams waiting for a buffer, oldest first: each returned buffer wakes one.
    stream_waiters: RefCell<std::collections::VecDeque<Waker>>,
    exhausted: Cell<u64>,
    /// Completions that filled several buffers.
    bundled: Cell<u64>,
    /// Pieces of a buffer the kernel went on filling.
    partial: Cell<u64>,
    /// Completions without `BUF_MORE` for a buffer the kernel kept in the ring (see the module
    /// docs): a kernel path whose flag is wrong, survived by not giving the buffer back.
    kernel_kept: Cell<u64>,
}

/// `IORING_CQE_F_BUFFER` and the shift of the buffer id in a completion's flags: how the epoll
/// emulation and a user-space pool name the buffer they received into, as the kernel does.
pub(crate) fn buffer_flags(id: u16) -> u32 {
    1 | (u32::from(id) << 16)
}

impl PoolInner {
    pub(crate) fn buffer_size(&self) -> usize {
        self.size
    }

    /// The buffer group of the provided-buffer ring, if the kernel picks buffers.
    pub(crate) fn ring_group(&self) -> Option<u16> {
        self.ring.as_ref().map(|r| r.group)
    }

    /// True if multishot receives on this pool's ring ask for bundles.
    pub(crate) fn bundles(&self) -> bool {
        self.bundles
    }

    /// True if this pool's ring belongs to the proactor running on this thread.
    pub(crate) fn ring_is_current(&self) -> bool {
        match (&self.ring, Handle::try_current()) {
            (Some(r), Some(h)) => Rc::ptr_eq(&r.handle.core, &h.core),
            _ => false,
        }
    }

    pub(crate) fn buf_ptr(&self, id: u16) -> *mut u8 {
        debug_assert!(id < self.count);
        // SAFETY: `id < count`, so the offset lies within the block.
        unsafe { self.mem.as_ptr().add(id as usize * self.size) }
    }

    /// Counts a receive that found every buffer out.
    pub(crate) fn note_exhausted(&self) {
        self.exhausted.set(self.exhausted.get() + 1);
    }

    /// A non-blocking receive on `fd` into a free buffer (user-space mode, on the loop's
    /// thread): the buffer's id and the bytes received, or the error with the buffer back on
    /// the free list (`ENOBUFS` when none is free). Hand the buffer out with
    /// [`PoolInner::take_completion`] and [`buffer_flags`].
    pub(crate) fn recv_into_free(&self, fd: std::os::fd::RawFd) -> io::Result<(u16, u32)> {
        let Some(id) = self.free.borrow_mut().pop() else {
            return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
        };
        let (ptr, len) = (self.buf_ptr(id), self.size);
        // SAFETY: buffer `id` was just taken off the free list, so nothing else uses its `len`
        // bytes; the pool owns the memory for as long as `self` lives.
        let res =
            crate::op::cvt_size(unsafe { libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT) });
        match res {
            Ok(n) => Ok((id, n)),
            Err(e) => {
                self.free.borrow_mut().push(id);
                Err(e)
            }
        }
    }

    /// Turns one receive completion (`res`, and the `flags` that name its buffer) into the
    /// buffers it filled, lent out as pieces: one buffer, or, for a completion of a receive
    /// submitted as a bundle (`bundle`), the ring's buffers that followed the one named. With
    /// an incremental ring each piece starts where the previous completion naming that buffer
    /// ended, so this is called once per completion in the order the loop takes them (an
    /// operation's `set_cqe_flags`, a multishot item), and a buffer stays in the ring while
    /// the kernel may still fill it (see [`kernel_keeps`](Self::kernel_keeps)).
    ///
    /// `Ok(None)` when no bytes came (end of stream, an error): a whole buffer named then was
    /// consumed for nothing and goes straight back. An error when the completion names a buffer
    /// the pool does not consider in the ring — never handed out twice.
    pub(crate) fn take_completion(
        self: &Rc<Self>,
        res: i32,
        flags: u32,
        bundle: bool,
    ) -> io::Result<Option<Received>> {
        let Some(first) = cqueue::buffer_select(flags) else {
            if res > 0 {
                return Err(io::Error::other("a receive completion without its buffer"));
            }
            if res == -libc::ENOBUFS {
                self.ring_ran_dry();
            }
            return Ok(None);
        };
        let incremental = self.ring.as_ref().is_some_and(|r| r.incremental);
        let out_of_step = || io::Error::other("a completion names a buffer not in the ring");
        if first >= self.count || self.state[first as usize].get().lent {
            return Err(out_of_step());
        }
        let more = incremental && cqueue::buffer_more(flags);
        if res <= 0 {
            // The kernel names no buffer for these on the usual path (6.18 leaves it in the
            // ring). Named, a whole buffer was consumed for nothing and goes back; on an
            // incremental ring only if the kernel let go of it (a receive on a worker thread
            // commits the buffer's rest when it picks it) — never while it still holds it.
            if !incremental {
                self.left_ring();
                self.make_available(first);
            } else if !self.kernel_keeps(first, more) {
                self.lend(first);
                if self.state[first as usize].get().pieces == 0 {
                    self.outstanding.set(self.outstanding.get() - 1);
                    self.make_available(first);
                }
            }
            self.top_up();
            return Ok(None);
        }
        let mut left = res as usize;
        let mut id = first;
        let mut bufs: Option<Received> = None;
        loop {
            let mut st = self.state[id as usize].get();
            if st.lent {
                // Already lent: the ring and the pool disagree. Keep what was taken.
                tracing::error!("buffer pool: a bundle runs into lent buffer {id}");
                break;
            }
            let start = st.consumed as usize;
            let take = left.min(self.size - start);
            left -= take;
            let last = left == 0 || !bundle;
            if incremental && last && self.kernel_keeps(id, more) {
                // The kernel goes on filling this buffer after these bytes.
                st.consumed += take as u32;
                self.partial.set(self.partial.get() + 1);
                self.state[id as usize].set(st);
            } else {
                self.lend(id);
            }
            let mut st = self.state[id as usize].get();
            st.pieces += 1;
            self.state[id as usize].set(st);
            let piece = PooledBuf::new(self.clone(), id, start, take);
            match &mut bufs {
                None => bufs = Some(Received::one(piece)),
                Some(r) => r.push(piece),
            }
            if last {
                break;
            }
            match &self.ring {
                Some(ring) => id = ring.after(id),
                None => break,
            }
            if id >= self.count {
                break;
            }
        }
        if left > 0 && !bundle {
            tracing::error!("buffer pool: a receive reported more bytes than its buffer holds");
        }
        if bufs.as_ref().is_some_and(|b| b.buffers() > 1) {
            self.bundled.set(self.bundled.get() + 1);
        }
        self.top_up();
        Ok(bufs)
    }

    /// On an incremental ring, after a completion whose bytes end in buffer `id`: true if the
    /// buffer must stay where it is, because the kernel still holds it or may still write
    /// into it. `more` is the completion's `IORING_CQE_F_BUF_MORE`.
    ///
    /// - The ring entry still names the buffer with bytes left: the kernel holds it, whatever
    ///   the flag says (a clear flag is then one of the kernel paths where it is wrong; counted).
    /// - The kernel let go of it but the flag is set: a later commit by another receive
    ///   finished the buffer, and that receive's completion, still to come, names it — it may
    ///   still be writing (a worker thread commits when it picks the buffer). Wait for it.
    /// - The kernel let go of it and the flag is clear: the buffer is the pool's again.
    fn kernel_keeps(&self, id: u16, more: bool) -> bool {
        let holds = self.ring.as_ref().is_some_and(|r| r.kernel_holds(id));
        if holds && !more {
            self.kernel_kept.set(self.kernel_kept.get() + 1);
            tracing::debug!("buffer pool: buffer {id} stays in the ring without BUF_MORE");
        }
        holds || more
    }

    /// How many completions lacked `BUF_MORE` for a buffer the kernel kept (see
    /// [`kernel_keeps`](Self::kernel_keeps)).
    #[cfg(test)]
    pub(crate) fn kernel_kept_count(&self) -> u64 {
        self.kernel_kept.get()
    }

    /// Marks buffer `id` lent: the kernel is done with it, and it goes back once its pieces
    /// are dropped.
    fn lend(&self, id: u16) {
        let mut st = self.state[id as usize].get();
        st.lent = true;
        st.consumed = 0;
        self.state[id as usize].set(st);
        self.outstanding.set(self.outstanding.get() + 1);
        self.left_ring();
    }

    /// Ring only: a completion named a buffer the kernel took out of the ring.
    fn left_ring(&self) {
        if self.ring.is_none() {
            return;
        }
        self.in_ring.set(self.in_ring.get().saturating_sub(1));
        let taken = self.since_resize.get().saturating_add(1);
        self.since_resize.set(taken);
        let window = self.window.get();
        if taken >= 16 * u32::from(window) && window > MIN_WINDOW {
            // A long run of receives never found the ring empty: offer a little less.
            self.window.set((window - window / 16).max(MIN_WINDOW));
            self.since_resize.set(0);
        }
    }

    /// Ring only: a receive found the ring empty. If buffers wait on the stack, the window
    /// was too small for the bursts of receives: doubled, and the ring filled up to it.
    fn ring_ran_dry(&self) {
        if self.ring.is_none() || self.free.borrow().is_empty() {
            return;
        }
        let window = self.window.get();
        self.window.set(window.saturating_mul(2).min(self.count));
        self.since_resize.set(0);
        self.top_up();
    }

    /// Ring only: appends buffers from the stack until the ring holds its window.
    fn top_up(&self) {
        let Some(ring) = &self.ring else { return };
        while self.in_ring.get() < self.window.get() {
            let Some(id) = self.free.borrow_mut().pop() else { break };
            ring.push(id, self.buf_ptr(id), self.size as u32);
            self.in_ring.set(self.in_ring.get() + 1);
        }
    }

    /// A piece of buffer `id` was dropped: once the last piece of a lent buffer is gone, the
    /// buffer goes back to the ring (or the free list).
    pub(crate) fn give_back(&self, id: u16) {
        let mut st = self.state[id as usize].get();
        st.pieces -= 1;
        self.state[id as usize].set(st);
        if st.pieces == 0 && st.lent {
            self.outstanding.set(self.outstanding.get() - 1);
            self.make_available(id);
        }
    }

    /// Makes buffer `id` available to receives again — one given back, or one a receive
    /// consumed for no bytes — and wakes the receives that found the pool dry meanwhile: a
    /// buffer made available may be exactly what they missed.
    fn make_available(&self, id: u16) {
        self.state[id as usize].set(BufState::default());
        match &self.ring {
            Some(ring) if self.in_ring.get() < self.window.get() => {
                ring.push(id, self.buf_ptr(id), self.size as u32);
                self.in_ring.set(self.in_ring.get() + 1);
            }
            // Held back: the next buffer the ring needs (see `top_up`), the warmest one.
            _ => self.free.borrow_mut().push(id),
        }
        self.returned.set(self.returned.get() + 1);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
        self.wake_next_waiter();
    }

    /// Wakes the oldest receive stream waiting for a buffer.
    pub(crate) fn wake_next_waiter(&self) {
        let next = self.stream_waiters.borrow_mut().pop_front();
        if let Some(w) = next {
            w.wake();
        }
    }

    /// Wakes `waker` when the next buffer comes back (with every other waiter of a one-shot
    /// receive: each then tries again).
    pub(crate) fn wait_for_return(&self, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
    }

    /// Queues a receive stream's waker until a buffer comes back (once per waker).
    pub(crate) fn wait_for_buffer(&self, waker: &Waker) {
        let mut waiters = self.stream_waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push_back(waker.clone());
        }
    }

    /// True if some buffer is not lent out (it may be in the ring, or on the free list).
    pub(crate) fn has_free(&self) -> bool {
        self.outstanding.get() < self.count as usize
    }

    /// After a receive submitted when [`returned_count`](Self::returned_count) was `seen`
    /// reported `ENOBUFS`: true if it must wait for a buffer to come back, that is none came
    /// back since and every buffer is lent out. With a buffer free the pool was not dry for
    /// long (an `ENOBUFS` injected by `proactor::faults`, or the kernel's ring between picking
    /// a buffer and its completion being handed out): the receive is submitted again, since no
    /// buffer might ever come back to wake it.
    pub(crate) fn dry_since(&self, seen: u64) -> bool {
        self.returned.get() == seen && !self.has_free()
    }

    /// How many buffers have come back so far.
    pub(crate) fn returned_count(&self) -> u64 {
        self.returned.get()
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // No receive is in flight (each holds an Rc to this), so the kernel will not pick
        // another buffer; unregistering makes it forget the ring's memory.
        if let Some(ring) = &self.ring {
            if !ring.free() {
                tracing::error!("could not unregister a provided-buffer ring; leaking its memory");
                return;
            }
        }
        // SAFETY: allocated in `build_on` with this layout; no buffer is lent out (each
        // `PooledBuf` and receive holds an Rc) and the kernel can no longer pick one.
        unsafe { std::alloc::dealloc(self.mem.as_ptr(), self.layout) };
    }
}
