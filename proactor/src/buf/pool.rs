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
//! When every buffer is in use the kernel (or the free list) reports `ENOBUFS`; the data stays in
//! the socket, and [`BufPool::recv`] waits until a buffer comes back and receives again — nothing
//! is lost. (An `ENOBUFS` while a buffer is free is retried at once.) A [`PooledBuf`] returns its buffer to the pool when dropped.

use crate::fd::IoFd;
use crate::op::{raw_os_error, RecvPooled};
use crate::runtime::Handle;
use crate::IoBuf;
use io_uring::types::BufRingEntry;
use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll, Waker};

/// Buffer group ids handed out to rings, process-wide (each ring has its own namespace, so this
/// only needs to be unique per ring).
static NEXT_GROUP: AtomicU16 = AtomicU16::new(0x7000);

/// The most buffers one ring may hold.
const MAX_BUFFERS: u16 = 1 << 15;
const PAGE: usize = 4096;

/// Settings of a [`BufPool`]: how many buffers, how large, and where they are managed.
#[derive(Debug, Clone)]
pub struct BufPoolBuilder {
    buffers: u16,
    buffer_size: usize,
    user_space: bool,
}

impl Default for BufPoolBuilder {
    fn default() -> Self {
        BufPoolBuilder { buffers: 256, buffer_size: 16 * 1024, user_space: false }
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

    /// Builds the pool for the proactor running on this thread.
    pub fn build(self) -> io::Result<BufPool> {
        let handle = Handle::try_current().ok_or_else(|| {
            io::Error::other("BufPool::build needs a running proactor (use build_on)")
        })?;
        self.build_on(&handle)
    }

    /// Builds the pool for the proactor of `handle`.
    pub fn build_on(self, handle: &Handle) -> io::Result<BufPool> {
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
            free: RefCell::new((0..count).rev().collect()),
            outstanding: Cell::new(0),
            returned: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            stream_waiters: RefCell::new(std::collections::VecDeque::new()),
            exhausted: Cell::new(0),
        };
        if !self.user_space {
            match RingState::register(handle, count) {
                Ok(Some(ring)) => {
                    inner.ring = Some(ring);
                    inner.free.borrow_mut().clear();
                    for id in 0..count {
                        inner.ring_push(id);
                    }
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

    /// Buffers not held by a [`PooledBuf`] (on io_uring this includes buffers the kernel has just
    /// filled whose completions are not processed yet).
    pub fn available(&self) -> usize {
        self.inner.count as usize - self.inner.outstanding.get()
    }

    /// How many receives found the pool dry and had to wait for a buffer.
    pub fn exhausted_count(&self) -> u64 {
        self.inner.exhausted.get()
    }

    /// True when the kernel picks the buffers (an io_uring provided-buffer ring).
    pub fn is_kernel_ring(&self) -> bool {
        self.inner.ring.is_some()
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
        let mut waiters = self.pool.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A provided-buffer ring registered with one io_uring.
struct RingState {
    entries: NonNull<BufRingEntry>,
    layout: Layout,
    mask: u16,
    /// Our copy of the tail; published to the kernel with a release store after each entry.
    tail: Cell<u16>,
    group: u16,
    /// Keeps the proactor (and so its ring) alive until the buffer ring is unregistered.
    handle: Handle,
}

impl RingState {
    /// Registers a ring for `count` buffers; `Ok(None)` on a driver other than io_uring.
    fn register(handle: &Handle, count: u16) -> io::Result<Option<RingState>> {
        let driver = handle.core.driver.borrow();
        let Some(uring) = driver.uring() else { return Ok(None) };
        let slots = count.next_power_of_two();
        let size = slots as usize * std::mem::size_of::<BufRingEntry>();
        let layout = Layout::from_size_align(size.max(PAGE), PAGE)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ring too large"))?;
        // SAFETY: the layout has a non-zero size; zeroed memory is an empty ring (tail 0).
        let entries = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?
            .cast::<BufRingEntry>();
        let mut last = None;
        for _ in 0..16 {
            let group = NEXT_GROUP.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the ring memory is page-aligned, `slots` entries long, and stays allocated
            // (and unmoved) until it is unregistered in `Drop` or leaked.
            let res = unsafe {
                uring.submitter().register_buf_ring_with_flags(
                    entries.as_ptr() as u64,
                    slots,
                    group,
                    0,
                )
            };
            match res {
                Ok(()) => {
                    let handle = handle.clone();
                    let mask = slots - 1;
                    return Ok(Some(RingState {
                        entries,
                        layout,
                        mask,
                        tail: Cell::new(0),
                        group,
                        handle,
                    }));
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => last = Some(e),
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        // SAFETY: registration failed, so the kernel never saw this memory.
        unsafe { std::alloc::dealloc(entries.as_ptr().cast(), layout) };
        Err(last.unwrap_or_else(|| io::Error::other("no free buffer group id")))
    }
}

/// The pool's memory and bookkeeping, shared by the pool handles, the buffers handed out and
/// the receive operations in flight (so it outlives every one of them).
pub(crate) struct PoolInner {
    /// `count` buffers of `size` bytes, one block. The kernel (or a receive) writes into a buffer
    /// only while it is neither in a `PooledBuf` nor on the free list being read.
    mem: NonNull<u8>,
    layout: Layout,
    size: usize,
    count: u16,
    ring: Option<RingState>,
    /// Free buffer ids (user-space mode only).
    free: RefCell<Vec<u16>>,
    /// Buffers held by `PooledBuf`s.
    outstanding: Cell<usize>,
    /// Counts buffers given back, so a waiter can tell whether one came back since it looked.
    returned: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    /// Receive streams waiting for a buffer, oldest first: each returned buffer wakes one.
    stream_waiters: RefCell<std::collections::VecDeque<Waker>>,
    exhausted: Cell<u64>,
}

impl PoolInner {
    pub(crate) fn buffer_size(&self) -> usize {
        self.size
    }

    /// The buffer group of the provided-buffer ring, if the kernel picks buffers.
    pub(crate) fn ring_group(&self) -> Option<u16> {
        self.ring.as_ref().map(|r| r.group)
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

    /// Takes a free buffer (user-space mode).
    pub(crate) fn take_free(&self) -> Option<u16> {
        self.free.borrow_mut().pop()
    }

    /// A non-blocking receive on `fd` into a free buffer (user-space mode, on the loop's
    /// thread): the buffer's id and the bytes received, or the error with the buffer back on
    /// the free list (`ENOBUFS` when none is free).
    pub(crate) fn recv_into_free(&self, fd: std::os::fd::RawFd) -> io::Result<(u16, u32)> {
        let Some(id) = self.take_free() else {
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
                self.put_free(id);
                Err(e)
            }
        }
    }

    /// Puts back a buffer that was taken but not handed out (nothing was received into it).
    pub(crate) fn put_free(&self, id: u16) {
        self.free.borrow_mut().push(id);
    }

    /// Makes a buffer available again — one the user gave back, or one a receive picked but
    /// did not hand out (end of stream, an error) — and wakes the receives that found the pool
    /// dry meanwhile: a buffer picked and then recycled may be exactly what they missed.
    pub(crate) fn recycle(&self, id: u16) {
        if self.ring.is_some() {
            self.ring_push(id);
        } else {
            self.put_free(id);
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

    /// Queues a receive stream's waker until a buffer comes back (once per waker).
    pub(crate) fn wait_for_buffer(&self, waker: &Waker) {
        let mut waiters = self.stream_waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push_back(waker.clone());
        }
    }

    /// True if some buffer is neither lent out nor known to be in use (it may be in the ring,
    /// or on the free list).
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

    /// Wraps a buffer holding `len` received bytes for the user.
    pub(crate) fn hand_out(self: &Rc<Self>, id: u16, len: usize) -> PooledBuf {
        self.outstanding.set(self.outstanding.get() + 1);
        PooledBuf { pool: self.clone(), id, len: len.min(self.size) }
    }

    /// A buffer came back from the user.
    fn give_back(&self, id: u16) {
        self.outstanding.set(self.outstanding.get() - 1);
        self.recycle(id);
    }

    /// Appends buffer `id` to the provided-buffer ring and publishes it to the kernel.
    fn ring_push(&self, id: u16) {
        let Some(ring) = &self.ring else { return };
        let tail = ring.tail.get();
        let slot = (tail & ring.mask) as usize;
        // SAFETY: `slot <= mask`, inside the ring; the kernel reads only entries before the
        // published tail, so this one is ours until the release store below. The entry's
        // address/length/id fields do not overlap the tail field (which sits in entry 0's
        // reserved bytes).
        unsafe {
            let entry = &mut *ring.entries.as_ptr().add(slot);
            entry.set_addr(self.buf_ptr(id) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(id);
        }
        let tail = tail.wrapping_add(1);
        ring.tail.set(tail);
        // SAFETY: the tail is a naturally aligned u16 inside the ring memory that the kernel
        // reads with acquire semantics; the release store makes the entry visible first.
        unsafe {
            let tail_ptr = BufRingEntry::tail(ring.entries.as_ptr()) as *const AtomicU16;
            (*tail_ptr).store(tail, Ordering::Release);
        }
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        if let Some(ring) = &self.ring {
            // No receive is in flight (each holds an Rc to this), so the kernel will not pick
            // another buffer; unregistering makes it forget the ring's memory.
            let unregistered = match ring.handle.core.driver.try_borrow() {
                Ok(driver) => match driver.uring() {
                    Some(u) => u.submitter().unregister_buf_ring(ring.group).is_ok(),
                    None => false,
                },
                Err(_) => false,
            };
            if !unregistered {
                tracing::error!("could not unregister a provided-buffer ring; leaking its memory");
                return;
            }
            // SAFETY: allocated in `register` with this layout; the kernel no longer uses it.
            unsafe { std::alloc::dealloc(ring.entries.as_ptr().cast(), ring.layout) };
        }
        // SAFETY: allocated in `build_on` with this layout; no buffer is lent out (each
        // `PooledBuf` and receive holds an Rc) and the kernel can no longer pick one.
        unsafe { std::alloc::dealloc(self.mem.as_ptr(), self.layout) };
    }
}

/// Received bytes in a buffer borrowed from a [`BufPool`]; dropping it gives the buffer back.
///
/// It dereferences to the bytes received, and can be written out directly (it is an
/// [`IoBuf`]): `stream.write(pooled_buf)`.
pub struct PooledBuf {
    pool: Rc<PoolInner>,
    id: u16,
    len: usize,
}

impl PooledBuf {
    /// Shortens the content to `len` bytes (no effect if it is shorter already).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl std::ops::Deref for PooledBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of this buffer were written by the receive; while this
        // value lives, the buffer is neither in the ring nor on the free list, so nothing else
        // writes to it.
        unsafe { std::slice::from_raw_parts(self.pool.buf_ptr(self.id), self.len) }
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        self.pool.give_back(self.id);
    }
}

impl std::fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBuf").field("id", &self.id).field("len", &self.len).finish()
    }
}

// SAFETY: the pointer is into the pool's block, which the `Rc` keeps allocated and which never
// moves; the first `len` bytes are initialised, and nothing writes them while this value lives.
unsafe impl IoBuf for PooledBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.pool.buf_ptr(self.id)
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.len
    }
}
