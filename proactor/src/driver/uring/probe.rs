//! What the running kernel's io_uring offers: which opcodes, which features.

use io_uring::{opcode, IoUring, Probe};
use std::io;

/// Every opcode the proactor submits, by name. The driver is only chosen when all are present.
pub const REQUIRED_OPCODES: &[(&str, u8)] = &[
    ("NOP", opcode::Nop::CODE),
    ("READ", opcode::Read::CODE),
    ("WRITE", opcode::Write::CODE),
    ("READV", opcode::Readv::CODE),
    ("WRITEV", opcode::Writev::CODE),
    ("RECV", opcode::Recv::CODE),
    ("SEND", opcode::Send::CODE),
    ("ACCEPT", opcode::Accept::CODE),
    ("CONNECT", opcode::Connect::CODE),
    ("SHUTDOWN", opcode::Shutdown::CODE),
    ("CLOSE", opcode::Close::CODE),
    ("OPENAT", opcode::OpenAt::CODE),
    ("FSYNC", opcode::Fsync::CODE),
    ("STATX", opcode::Statx::CODE),
    ("TIMEOUT", opcode::Timeout::CODE),
    ("LINK_TIMEOUT", opcode::LinkTimeout::CODE),
    ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
    ("POLL_ADD", opcode::PollAdd::CODE),
];

/// Opcodes the proactor can use when present but does not require.
pub const OPTIONAL_OPCODES: &[(&str, u8)] = &[
    ("SPLICE", opcode::Splice::CODE),
    ("SEND_ZC", opcode::SendZc::CODE),
    ("MSG_RING", opcode::MsgRingData::CODE),
    ("PROVIDE_BUFFERS", opcode::ProvideBuffers::CODE),
    ("SOCKET", opcode::Socket::CODE),
    ("FUTEX_WAIT", opcode::FutexWait::CODE),
];

/// The result of probing the kernel's io_uring.
#[derive(Debug, Clone)]
pub struct KernelProbe {
    /// `(name, supported)` for every required and optional opcode.
    pub opcodes: Vec<(&'static str, bool, bool)>,
    /// `(name, present)` for the ring features the kernel reports.
    pub features: Vec<(&'static str, bool)>,
    /// `(name, works)` for what the proactor uses when the kernel has it, each found out by
    /// trying it on a scratch ring (not by kernel version): multishot accept and receive,
    /// provided-buffer rings, incremental buffer consumption (`IOU_PBUF_RING_INC`), receive
    /// and send bundles, zero-copy send.
    pub capabilities: Vec<(&'static str, bool)>,
}

impl KernelProbe {
    /// Names of required opcodes the kernel lacks.
    pub fn missing_required(&self) -> Vec<&'static str> {
        self.opcodes
            .iter()
            .filter(|(_, required, supported)| *required && !*supported)
            .map(|(name, _, _)| *name)
            .collect()
    }
}

/// Sets up a small ring and asks the kernel what it supports.
pub fn probe_kernel() -> io::Result<KernelProbe> {
    let ring = IoUring::new(2)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    let mut opcodes = Vec::new();
    for (name, code) in REQUIRED_OPCODES {
        opcodes.push((*name, true, probe.is_supported(*code)));
    }
    for (name, code) in OPTIONAL_OPCODES {
        opcodes.push((*name, false, probe.is_supported(*code)));
    }
    let p = ring.params();
    let features = vec![
        ("SINGLE_MMAP", p.is_feature_single_mmap()),
        ("NODROP", p.is_feature_nodrop()),
        ("SUBMIT_STABLE", p.is_feature_submit_stable()),
        ("RW_CUR_POS", p.is_feature_rw_cur_pos()),
        ("FAST_POLL", p.is_feature_fast_poll()),
        ("POLL_32BITS", p.is_feature_poll_32bits()),
        ("EXT_ARG", p.is_feature_ext_arg()),
        ("NATIVE_WORKERS", p.is_feature_native_workers()),
        ("RSRC_TAGS", p.is_feature_resource_tagging()),
        ("CQE_SKIP", p.is_feature_skip_cqe_on_success()),
        ("LINKED_FILE", p.is_feature_linked_file()),
        ("RECVSEND_BUNDLE", p.is_feature_recvsend_bundle()),
        ("MIN_TIMEOUT", p.is_feature_min_timeout()),
    ];
    let bundles = p.is_feature_recvsend_bundle();
    let send_zc = probe.is_supported(opcode::SendZc::CODE);
    let capabilities = vec![
        ("multishot accept", try_multishot_accept().unwrap_or(false)),
        ("multishot recv", try_multishot_recv(false).unwrap_or(false)),
        ("buffer ring", try_buf_ring(0).unwrap_or(false)),
        ("buffer ring INC", try_buf_ring(IOU_PBUF_RING_INC).unwrap_or(false)),
        ("recv bundles", bundles && try_multishot_recv(true).unwrap_or(false)),
        ("send bundles", bundles && try_send_bundle().unwrap_or(false)),
        ("send zero-copy", send_zc),
    ];
    Ok(KernelProbe { opcodes, features, capabilities })
}

/// `IOU_PBUF_RING_INC` (linux/io_uring.h, 6.12): buffers of the ring are consumed in part.
const IOU_PBUF_RING_INC: u16 = 2;

/// Group id used by the probes on their scratch rings.
const PROBE_GROUP: u16 = 1;

/// Registers (and unregisters) a one-entry provided-buffer ring with `flags`.
fn try_buf_ring(flags: u16) -> io::Result<bool> {
    let ring = IoUring::new(2)?;
    let mem = BufRingMem::new()?;
    // SAFETY: `mem` is a page-aligned, zeroed block for one entry that outlives the
    // registration (unregistered below, before `mem` is dropped).
    let res =
        unsafe { ring.submitter().register_buf_ring_with_flags(mem.addr(), 1, PROBE_GROUP, flags) };
    if res.is_ok() {
        let _ = ring.submitter().unregister_buf_ring(PROBE_GROUP);
    }
    Ok(res.is_ok())
}

/// A page for a one-entry buffer ring and its one 64-byte buffer.
struct BufRingMem(std::ptr::NonNull<u8>);

impl BufRingMem {
    const LAYOUT: std::alloc::Layout = match std::alloc::Layout::from_size_align(4096, 4096) {
        Ok(l) => l,
        Err(_) => panic!("a valid layout"),
    };
    fn new() -> io::Result<Self> {
        // SAFETY: the layout has a non-zero size.
        std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(Self::LAYOUT) })
            .map(BufRingMem)
            .ok_or_else(|| io::ErrorKind::OutOfMemory.into())
    }
    fn addr(&self) -> u64 {
        self.0.as_ptr() as u64
    }
}

impl Drop for BufRingMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; no ring refers to it any more.
        unsafe { std::alloc::dealloc(self.0.as_ptr(), Self::LAYOUT) }
    }
}

/// Submits `entry` and waits (briefly) for its first completion: `(result, flags)`.
fn first_completion(ring: &mut IoUring, entry: io_uring::squeue::Entry) -> io::Result<(i32, u32)> {
    // SAFETY: the entry's pointers (none, or the caller's memory) outlive the ring's use: the
    // caller keeps them until the ring is dropped, which cancels what is in flight.
    unsafe { ring.submission().push(&entry.user_data(1)) }
        .map_err(|_| io::Error::other("probe ring full"))?;
    let spec = io_uring::types::Timespec::new().sec(1);
    let args = io_uring::types::SubmitArgs::new().timespec(&spec);
    match ring.submitter().submit_with_args(1, &args) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
        Err(e) => return Err(e),
    }
    let cqe = ring.completion().next().ok_or_else(|| io::Error::other("no completion"))?;
    Ok((cqe.result(), cqe.flags()))
}

/// A multishot accept of one connection: its completion carries a descriptor and `MORE`.
fn try_multishot_accept() -> io::Result<bool> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let _client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let mut ring = IoUring::new(4)?;
    let fd = io_uring::types::Fd(std::os::fd::AsRawFd::as_raw_fd(&listener));
    let (res, flags) = first_completion(&mut ring, opcode::AcceptMulti::new(fd).build())?;
    if res >= 0 {
        // SAFETY: the accepted descriptor is new and owned by nobody else.
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(res) });
    }
    Ok(res >= 0 && io_uring::cqueue::more(flags))
}

/// A multishot receive of 100 bytes into a ring of two 64-byte buffers: its first completion
/// carries `MORE` and fills one buffer, or both when submitted as a bundle (`bundle`).
fn try_multishot_recv(bundle: bool) -> io::Result<bool> {
    use std::io::Write;
    let (mut a, b) = std::os::unix::net::UnixStream::pair()?;
    let mut ring = IoUring::new(4)?;
    let mem = BufRingMem::new()?;
    // SAFETY: as in `try_buf_ring`; the ring (and its requests) are gone before `mem`.
    unsafe { ring.submitter().register_buf_ring_with_flags(mem.addr(), 2, PROBE_GROUP, 0)? };
    // Two buffers in the second half of the page, published by a tail of 2.
    // SAFETY: entries 0 and 1 and the tail lie in the page, which only this thread touches.
    unsafe {
        let entries = mem.0.as_ptr().cast::<io_uring::types::BufRingEntry>();
        for i in 0..2u16 {
            let entry = &mut *entries.add(i as usize);
            entry.set_addr(mem.addr() + 2048 + 64 * u64::from(i));
            entry.set_len(64);
            entry.set_bid(i);
        }
        let tail = io_uring::types::BufRingEntry::tail(entries) as *mut u16;
        std::ptr::write_volatile(tail, 2);
    }
    a.write_all(&[b'x'; 100])?;
    let fd = io_uring::types::Fd(std::os::fd::AsRawFd::as_raw_fd(&b));
    let entry = if bundle {
        opcode::RecvMultiBundle::new(fd, PROBE_GROUP).build()
    } else {
        opcode::RecvMulti::new(fd, PROBE_GROUP).build()
    };
    let outcome = first_completion(&mut ring, entry);
    drop(ring);
    let (res, flags) = outcome?;
    let expected = if bundle { 100 } else { 64 };
    Ok(res == expected && io_uring::cqueue::more(flags))
}

/// A send bundle of two 32-byte buffers from a ring: one completion sends both, in order.
fn try_send_bundle() -> io::Result<bool> {
    use std::io::Read;
    let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    let mut ring = IoUring::new(4)?;
    let mem = BufRingMem::new()?;
    // SAFETY: as in `try_buf_ring`; the ring (and its requests) are gone before `mem`.
    unsafe { ring.submitter().register_buf_ring_with_flags(mem.addr(), 2, PROBE_GROUP, 0)? };
    // SAFETY: entries 0 and 1, the tail and the two buffers lie in the page, which only this
    // thread touches.
    unsafe {
        let entries = mem.0.as_ptr().cast::<io_uring::types::BufRingEntry>();
        for i in 0..2u16 {
            let at = 2048 + 32 * usize::from(i);
            std::ptr::write_bytes(mem.0.as_ptr().add(at), b'a' + i as u8, 32);
            let entry = &mut *entries.add(i as usize);
            entry.set_addr(mem.addr() + at as u64);
            entry.set_len(32);
            entry.set_bid(i);
        }
        let tail = io_uring::types::BufRingEntry::tail(entries) as *mut u16;
        std::ptr::write_volatile(tail, 2);
    }
    let fd = io_uring::types::Fd(std::os::fd::AsRawFd::as_raw_fd(&a));
    let entry = opcode::SendBundle::new(fd, PROBE_GROUP).flags(libc::MSG_NOSIGNAL).build();
    let outcome = first_completion(&mut ring, entry);
    drop(ring);
    let (res, _) = outcome?;
    if res != 64 {
        return Ok(false);
    }
    let mut got = [0u8; 64];
    b.read_exact(&mut got)?;
    Ok(got[..32].iter().all(|&x| x == b'a') && got[32..].iter().all(|&x| x == b'b'))
}
