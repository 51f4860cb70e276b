//! The epoll driver's blocking pool: calls epoll cannot wait on (`openat`, `statx`, regular
//! files) run on at most four threads and complete through the same queue. A call blocked inside
//! the kernel cannot be interrupted, so cancelling it reports its real result; a call still
//! queued is cancelled at once; the threads end with the proactor.
//!
//! Epoll only: this is the emulation's own machinery (io_uring runs these calls in the kernel's
//! workers and may interrupt a blocked one on cancel). One test function, so that counting the
//! pool's threads is not disturbed by another test in the same process.
mod common;
mod core_util;

use core_util::errno;
use proactor::{op, submit, DriverChoice};
use std::cell::RefCell;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Threads of this process named like the pool's (`proactor-blocking`, cut to 15 bytes).
fn pool_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "proactor-blocki")
        .count()
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Opens the write end of `fifo` from another thread, which unblocks a reader's open.
fn open_writer(fifo: PathBuf) -> std::thread::JoinHandle<std::fs::File> {
    std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(fifo).unwrap())
}

type Log = Rc<RefCell<Vec<(usize, Result<(), Option<i32>>)>>>;

#[test]
fn blocking_pool_bounds_cancels_and_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::proactor(DriverChoice::Epoll);
    assert_eq!(pool_threads(), 0, "threads start lazily");

    // Four opens of FIFOs with no writer block inside the kernel, one pool thread each.
    let fifos: Vec<PathBuf> = (0..4).map(|i| dir.path().join(format!("fifo{i}"))).collect();
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let mut ids = Vec::new();
    for (i, fifo) in fifos.iter().enumerate() {
        mkfifo(fifo);
        let l = log.clone();
        let open = op::OpenAt::new(libc::AT_FDCWD, fifo, libc::O_RDONLY, 0).unwrap();
        ids.push(p.start(open, move |res| {
            l.borrow_mut().push((i, res.map(drop).map_err(|e| errno(&e))))
        }));
    }
    let file = dir.path().join("plain");
    std::fs::write(&file, b"data").unwrap();
    p.block_on(async {
        proactor::time::sleep(Duration::from_millis(30)).await.unwrap();
        assert_eq!(pool_threads(), 4, "bounded at four threads");
        // A fifth call queues behind them: it does not run until a thread is free...
        let mut queued = submit(op::Statx::path(libc::AT_FDCWD, &file).unwrap());
        let token = queued.cancel_token();
        let timed = submit(op::Statx::path(libc::AT_FDCWD, &file).unwrap())
            .deadline(Duration::from_millis(10));
        let waited = proactor::time::timeout(Duration::from_millis(20), &mut queued).await;
        assert!(waited.is_err(), "a queued call ran although every thread was busy");
        // ...and, not started, it is cancelled at once, like a deadline passing.
        let started = Instant::now();
        token.cancel();
        assert_eq!(errno(&queued.await.unwrap_err()), Some(libc::ECANCELED));
        assert_eq!(errno(&timed.await.unwrap_err()), Some(libc::ETIMEDOUT));
        assert!(started.elapsed() < Duration::from_secs(2));
    });
    // Cancelling a call blocked in the kernel cannot interrupt it: it reports its real result.
    for id in &ids {
        p.cancel(*id);
    }
    p.block_on(proactor::time::sleep(Duration::from_millis(10))).unwrap();
    assert!(log.borrow().is_empty(), "a running call completed on cancel: {:?}", log.borrow());
    let writers: Vec<_> = fifos.iter().cloned().map(open_writer).collect();
    p.run().unwrap();
    let mut got = log.borrow().clone();
    got.sort();
    assert_eq!(got, (0..4).map(|i| (i, Ok(()))).collect::<Vec<_>>());
    for w in writers {
        w.join().unwrap();
    }
    // The pool works again, in order, and file reads go through it.
    let (res, buf) = p.block_on(async {
        let f = submit(op::OpenAt::new(libc::AT_FDCWD, &file, libc::O_RDONLY, 0).unwrap())
            .await
            .unwrap();
        submit(op::Read::at(f, Vec::with_capacity(16), 0)).await
    });
    assert_eq!(res.unwrap(), 4);
    assert_eq!(buf, b"data");

    // Dropping the proactor ends its threads. A joined thread can still be listed in
    // /proc/self/task for a moment while the kernel finishes its exit: allow it that moment.
    drop(p);
    let dropped = Instant::now();
    while pool_threads() > 0 && dropped.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pool_threads(), 0, "the pool's threads outlived the proactor");
}
