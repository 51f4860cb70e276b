//! A provided-buffer ring registered with one io_uring (`IORING_REGISTER_PBUF_RING`): the
//! kernel takes buffers from its head, we append returned ones at its tail.
//!
//! Besides the ring itself this keeps a copy of which buffer sits at which position
//! (`shadow`, `position`). A receive bundle's completion names only its first buffer; the others
//! are the ring entries that followed it, and the copy tells which ones they were without reading
//! entries the kernel may rewrite (an incremental ring moves an entry's address and length as it
//! consumes the buffer).

use crate::runtime::Handle;
use io_uring::types::BufRingEntry;
use std::alloc::Layout;
use std::cell::Cell;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

/// Buffer group ids handed out to rings, process-wide (each ring has its own namespace, so this
/// only needs to be unique per ring).
static NEXT_GROUP: AtomicU16 = AtomicU16::new(0x7000);

/// `IOU_PBUF_RING_INC` (linux/io_uring.h, since 6.12), a flag of the ring's registration: the
/// kernel consumes a buffer in part, and names the same buffer again for the next receive. The
/// io-uring crate keeps its copy in a private module.
pub(crate) const IOU_PBUF_RING_INC: u16 = 2;

const PAGE: usize = 4096;

/// Where `len` (u32) and `bid` (u16) sit in a ring entry (`struct io_uring_buf` in
/// linux/io_uring.h: `addr` u64, `len` u32, `bid` u16, `resv` u16).
const ENTRY_LEN: usize = 8;
const ENTRY_BID: usize = 12;
const _: () = assert!(std::mem::size_of::<BufRingEntry>() == 16);

/// A provided-buffer ring registered with one io_uring.
pub(crate) struct RingState {
    entries: NonNull<BufRingEntry>,
    layout: Layout,
    mask: u16,
    /// Our copy of the tail; published to the kernel with a release store after each entry.
    tail: Cell<u16>,
    pub(crate) group: u16,
    /// Registered with `IOU_PBUF_RING_INC`.
    pub(crate) incremental: bool,
    /// The buffer id at each ring position (indexed by position & mask), as last appended.
    shadow: Box<[Cell<u16>]>,
    /// The ring position each buffer id was last appended at.
    position: Box<[Cell<u16>]>,
    /// Keeps the proactor (and so its ring) alive until the buffer ring is unregistered.
    pub(crate) handle: Handle,
}

impl RingState {
    /// Registers a ring for `count` buffers, incremental if asked and the kernel can;
    /// `Ok(None)` on a driver other than io_uring.
    pub(crate) fn register(
        handle: &Handle,
        count: u16,
        incremental: bool,
    ) -> io::Result<Option<RingState>> {
        let driver = handle.core.driver_ref();
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
        let mut flags = if incremental { IOU_PBUF_RING_INC } else { 0 };
        for _ in 0..16 {
            let group = NEXT_GROUP.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the ring memory is page-aligned, `slots` entries long, and stays allocated
            // (and unmoved) until it is unregistered in `free` or leaked.
            let res = unsafe {
                uring.submitter().register_buf_ring_with_flags(
                    entries.as_ptr() as u64,
                    slots,
                    group,
                    flags,
                )
            };
            match res {
                Ok(()) => {
                    return Ok(Some(RingState {
                        entries,
                        layout,
                        mask: slots - 1,
                        tail: Cell::new(0),
                        group,
                        incremental: flags & IOU_PBUF_RING_INC != 0,
                        shadow: (0..slots).map(|_| Cell::new(0)).collect(),
                        position: (0..count).map(|_| Cell::new(0)).collect(),
                        handle: handle.clone(),
                    }))
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => last = Some(e),
                // A kernel before 6.12 refuses the flag: a plain ring, consumed whole.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && flags != 0 => {
                    tracing::info!("incremental buffer rings unavailable ({e}); whole buffers");
                    flags = 0;
                }
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

    /// Appends buffer `id` (`len` bytes at `addr`) and publishes it to the kernel.
    ///
    /// The caller appends a buffer only when the kernel no longer holds it, so the ring never
    /// holds more entries than there are buffers — at most `mask + 1`.
    pub(crate) fn push(&self, id: u16, addr: *mut u8, len: u32) {
        let tail = self.tail.get();
        let slot = (tail & self.mask) as usize;
        // SAFETY: `slot <= mask`, inside the ring; the kernel reads only entries before the
        // published tail, so this one is ours until the release store below. The entry's
        // address/length/id fields do not overlap the tail field (which sits in entry 0's
        // reserved bytes).
        unsafe {
            let entry = &mut *self.entries.as_ptr().add(slot);
            entry.set_addr(addr as u64);
            entry.set_len(len);
            entry.set_bid(id);
        }
        self.shadow[slot].set(id);
        self.position[id as usize].set(tail);
        let tail = tail.wrapping_add(1);
        self.tail.set(tail);
        // SAFETY: the tail is a naturally aligned u16 inside the ring memory that the kernel
        // reads with acquire semantics; the release store makes the entry visible first.
        unsafe {
            let tail_ptr = BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16;
            (*tail_ptr).store(tail, Ordering::Release);
        }
    }

    /// The position the next [`push`](Self::push) writes: the kernel takes entries before it.
    pub(crate) fn tail(&self) -> u16 {
        self.tail.get()
    }

    /// Takes back the entries from position `to` on, which the kernel has not taken: the ring
    /// then ends at `to`. Only sound while no request can pick from the ring (the kernel reads
    /// the tail afresh each time a request selects buffers, and none is in flight), and with
    /// `to` at or after the kernel's head (so what it consumed stays consumed).
    pub(crate) fn retract(&self, to: u16) {
        self.tail.set(to);
        // SAFETY: as in `push`: the tail is a naturally aligned u16 inside the ring memory.
        unsafe {
            let tail_ptr = BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16;
            (*tail_ptr).store(to, Ordering::Release);
        }
    }

    /// The buffer appended right after buffer `id` — the next one of a receive bundle.
    ///
    /// Sound to ask while `id`'s completion is being processed: the kernel consumes the ring in
    /// order and completions arrive in that order, so the positions from `id`'s on hold buffers
    /// that are either still in the ring or consumed and not yet given back; none can have been
    /// appended again, so their copies in `shadow` are not overwritten yet.
    pub(crate) fn after(&self, id: u16) -> u16 {
        let next = self.position[id as usize].get().wrapping_add(1);
        self.shadow[(next & self.mask) as usize].get()
    }

    /// With an incremental ring: true while the kernel still holds buffer `id` — the ring
    /// entry it was appended at still names it, with bytes left.
    ///
    /// The kernel keeps its progress in that entry: each commit (`io_kbuf_inc_commit`,
    /// io_uring/kbuf.c) moves the entry's address on and shortens its length, and when the
    /// length reaches 0 it writes 0 and moves the ring's head past the entry — the only way a
    /// buffer leaves an incremental ring. An entry is written again only by [`push`](Self::push),
    /// which reaches a position only after the kernel has moved past the entry that last held
    /// it (the ring never holds more entries than buffers); so if the entry names another
    /// buffer now, the kernel has moved past `id` as well.
    pub(crate) fn kernel_holds(&self, id: u16) -> bool {
        let slot = (self.position[id as usize].get() & self.mask) as usize;
        // SAFETY: `slot <= mask`, inside the ring memory, which stays allocated while `self`
        // lives; `len` and `bid` are naturally aligned fields of the 16-byte entry (offsets
        // asserted above). The kernel writes `len` with WRITE_ONCE while we read it, so both
        // are read with atomic loads; acquire so the bytes the kernel wrote before shortening
        // the entry are visible (the completion's own ordering gives that already).
        let (len, bid) = unsafe {
            let entry = self.entries.as_ptr().add(slot).cast::<u8>();
            let len = (*entry.add(ENTRY_LEN).cast::<AtomicU32>()).load(Ordering::Acquire);
            let bid = (*entry.add(ENTRY_BID).cast::<AtomicU16>()).load(Ordering::Relaxed);
            (len, bid)
        };
        bid == id && len > 0
    }

    /// Unregisters the ring and frees its memory; false (and the memory leaked) if the
    /// proactor's driver cannot be reached to unregister it.
    pub(crate) fn free(&self) -> bool {
        let unregistered = match self.handle.core.io.try_borrow() {
            Ok(io) => match io.driver.uring() {
                Some(u) => u.submitter().unregister_buf_ring(self.group).is_ok(),
                None => false,
            },
            Err(_) => false,
        };
        if unregistered {
            // SAFETY: allocated in `register` with this layout; the kernel no longer uses it.
            unsafe { std::alloc::dealloc(self.entries.as_ptr().cast(), self.layout) };
        }
        unregistered
    }
}
