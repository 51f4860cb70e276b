//! The operation contract as a user meets it: custom operations through the unsafe extension
//! trait, and user types that are not thread-safe (an `Rc<Cell<RawFd>>` descriptor, a buffer
//! that notes where it is called) on the paths where the epoll driver uses its blocking pool —
//! their trait code runs on the run loop's thread only.
mod common;
mod core_util;

use core_util::{run_op, FRONTS};
use proactor::buf::{IoBuf, IoBufMut};
use proactor::fd::IoFd;
use proactor::op::{self, uring, BlockingCall, Custom, CustomOp, Emulation};
use proactor::Proactor;
use std::cell::{Cell, RefCell};
use std::io::{self, Seek, Write as _};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::thread::{self, ThreadId};

/// A descriptor held the way a careless user might: shared, mutable, not `Send`. Every call of
/// `raw_fd` records the calling thread.
#[derive(Clone)]
struct CellFd {
    fd: Rc<Cell<RawFd>>,
    calls: Rc<RefCell<Vec<ThreadId>>>,
}

impl IoFd for CellFd {
    fn raw_fd(&self) -> RawFd {
        self.calls.borrow_mut().push(thread::current().id());
        self.fd.get()
    }
}

/// A `Vec` that records the thread of every call the operation makes on it.
struct NotingBuf {
    vec: Vec<u8>,
    calls: Rc<RefCell<Vec<ThreadId>>>,
}

impl NotingBuf {
    fn note(&self) {
        self.calls.borrow_mut().push(thread::current().id());
    }
}

// SAFETY: forwards to the `Vec`, whose heap block does not move.
unsafe impl IoBuf for NotingBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.note();
        self.vec.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.note();
        self.vec.len()
    }
    fn bytes_total(&self) -> usize {
        self.note();
        self.vec.capacity()
    }
}

// SAFETY: forwards to the `Vec`.
unsafe impl IoBufMut for NotingBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.note();
        self.vec.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, n: usize) {
        self.note();
        // SAFETY: forwarded from the caller.
        unsafe { self.vec.set_len(n) }
    }
}

#[proactor::test]
fn user_fd_and_buffer_code_runs_on_the_loop_thread_only(p: &Proactor) {
    // A regular file: epoll cannot watch it, so the epoll driver runs the read and the write on
    // its blocking pool. Neither the descriptor's nor the buffer's code may run there.
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(b"regular file bytes").unwrap();
    file.rewind().unwrap();
    let calls = Rc::new(RefCell::new(Vec::new()));
    let fd = CellFd { fd: Rc::new(Cell::new(file.as_raw_fd())), calls: calls.clone() };
    for front in FRONTS {
        std::os::unix::fs::FileExt::write_all_at(&file, b"regular file bytes", 0).unwrap();
        let buf = NotingBuf { vec: Vec::with_capacity(64), calls: calls.clone() };
        let (res, buf) = run_op(p, front, op::Read::at(fd.clone(), buf, 0));
        assert_eq!(res.unwrap(), 18, "{front:?}");
        assert_eq!(buf.vec, b"regular file bytes");
        let out = NotingBuf { vec: b"XY".to_vec(), calls: calls.clone() };
        let (res, _) = run_op(p, front, op::Write::at(fd.clone(), out, 8));
        assert_eq!(res.unwrap(), 2);
        let bufs = vec![Vec::with_capacity(3), Vec::with_capacity(64)];
        let (res, bufs) = run_op(p, front, op::Readv::new(fd.clone(), bufs, Some(0)));
        assert_eq!(res.unwrap(), 18);
        assert_eq!(bufs[0], b"reg");
        assert_eq!(bufs[1], b"ular XYle bytes");
        run_op(p, front, op::Fsync::new(fd.clone())).unwrap();
    }
    let me = thread::current().id();
    let calls = calls.borrow();
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|&t| t == me), "user trait code ran on another thread");
}

/// `fstat` of a raw descriptor through the extension trait: the user's own operation, on both
/// drivers, through both front ends. Its `statx` record is owned by the operation (boxed).
struct MyStatx {
    fd: RawFd,
    out: Box<libc::statx>,
    empty: &'static std::ffi::CStr,
}

impl MyStatx {
    fn new(fd: RawFd) -> MyStatx {
        // SAFETY: all-zero is a valid statx record.
        MyStatx { fd, out: Box::new(unsafe { std::mem::zeroed() }), empty: c"" }
    }
    fn raw(&mut self) -> (RawFd, usize, usize) {
        (self.fd, self.empty.as_ptr() as usize, &mut *self.out as *mut libc::statx as usize)
    }
}

fn statx_now(fd: RawFd, path: usize, out: usize) -> io::Result<u32> {
    let (path, out) = (path as *const libc::c_char, out as *mut libc::statx);
    // SAFETY: `path` is a static empty C string and `out` a statx record the operation owns.
    let rc = unsafe { libc::statx(fd, path, libc::AT_EMPTY_PATH, libc::STATX_SIZE, out) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(0)
    }
}

// SAFETY: the entry points at the boxed record (owned, fixed address) and a static string; the
// blocking call uses the same addresses, valid until completion; no flags, no indices.
unsafe impl CustomOp for MyStatx {
    type Output = io::Result<u64>;
    const NAME: &'static str = "my_statx";
    fn uring_entry(&mut self) -> uring::squeue::Entry {
        let (fd, path, out) = self.raw();
        uring::opcode::Statx::new(uring::types::Fd(fd), path as *const _, out as *mut _)
            .flags(libc::AT_EMPTY_PATH)
            .mask(libc::STATX_SIZE)
            .build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Blocking
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        let (fd, path, out) = self.raw();
        statx_now(fd, path, out)
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        let (fd, path, out) = self.raw();
        Some(BlockingCall::new(move || statx_now(fd, path, out)))
    }
    fn complete(self, res: io::Result<u32>) -> io::Result<u64> {
        res.map(|_| self.out.stx_size)
    }
}

#[proactor::test]
fn a_custom_operation_runs_on_both_front_ends(p: &Proactor) {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&[7u8; 4321]).unwrap();
    for front in FRONTS {
        let size = run_op(p, front, Custom(MyStatx::new(file.as_raw_fd()))).unwrap();
        assert_eq!(size, 4321, "{front:?}");
    }
    // Its errors are named after it, like the crate's own operations.
    let err = run_op(p, FRONTS[0], Custom(MyStatx::new(-1))).unwrap_err();
    assert_eq!(op::raw_os_error(&err), Some(libc::EBADF));
    assert!(err.to_string().contains("my_statx"), "{err}");
}

/// A custom operation with no blocking form sent where epoll needs one: a clear error, not a
/// call on the wrong thread and not a hang.
struct NoPool(RawFd);

// SAFETY: the entry carries no pointers.
unsafe impl CustomOp for NoPool {
    type Output = io::Result<u32>;
    const NAME: &'static str = "no_pool";
    fn uring_entry(&mut self) -> uring::squeue::Entry {
        uring::opcode::Fsync::new(uring::types::Fd(self.0)).build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Blocking
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        unreachable!("a blocking operation is never performed on the loop's thread")
    }
    fn complete(self, res: io::Result<u32>) -> io::Result<u32> {
        res
    }
}

#[proactor::test]
fn a_custom_operation_without_a_blocking_form(p: &Proactor) {
    let file = tempfile::tempfile().unwrap();
    for front in FRONTS {
        let res = run_op(p, front, Custom(NoPool(file.as_raw_fd())));
        match p.driver_kind() {
            proactor::DriverKind::Uring => assert_eq!(res.unwrap(), 0),
            _ => assert_eq!(op::raw_os_error(&res.unwrap_err()), Some(libc::EOPNOTSUPP)),
        }
    }
}
