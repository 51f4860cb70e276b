//! Files on both drivers: large random-offset writes read back, end of file, clear errors, and
//! the path operations.
mod common;

use proactor::fs::{self, File, OpenOptions};
use proactor::Proactor;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::io::ErrorKind;

const SIZE: usize = 64 << 20;

#[proactor::test]
fn write_then_read_back_64mib_at_random_offsets(p: &Proactor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut data = vec![0u8; SIZE];
    rng.fill(&mut data[..]);
    let data = std::rc::Rc::new(data);
    // Cut the file into chunks of random sizes and write them in a shuffled order, eight
    // writers at a time.
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < SIZE {
        let len = rng.gen_range(1..=2 << 20).min(SIZE - at);
        chunks.push((at, len));
        at += len;
    }
    for i in (1..chunks.len()).rev() {
        chunks.swap(i, rng.gen_range(0..=i));
    }
    p.block_on(async {
        let file = std::rc::Rc::new(
            OpenOptions::new().read(true).write(true).create(true).open(&path).await.unwrap(),
        );
        let queue = std::rc::Rc::new(std::cell::RefCell::new(chunks));
        let mut writers = Vec::new();
        for _ in 0..8 {
            let (file, queue, data) = (file.clone(), queue.clone(), data.clone());
            writers.push(proactor::spawn(async move {
                loop {
                    let Some((off, len)) = queue.borrow_mut().pop() else { break };
                    let (res, _) =
                        file.write_all_at(data[off..off + len].to_vec(), off as u64).await;
                    res.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        file.sync_all().await.unwrap();
        let meta = file.metadata().await.unwrap();
        assert_eq!(meta.len(), SIZE as u64);
        assert!(meta.is_file());

        // Random reads of random lengths, each checked byte for byte.
        for _ in 0..300 {
            let off = rng.gen_range(0..SIZE);
            let len = rng.gen_range(1..=(1 << 20)).min(SIZE - off);
            let (res, buf) = file.read_exact_at(Vec::with_capacity(len), off as u64).await;
            res.unwrap();
            assert!(buf[..] == data[off..off + len], "mismatch at {off}+{len}");
        }
        // And the whole file, sequentially through the file position.
        let mut whole = Vec::with_capacity(SIZE);
        let reader = File::open(&path).await.unwrap();
        loop {
            let (res, chunk) = reader.read(Vec::with_capacity(1 << 20)).await;
            if res.unwrap() == 0 {
                break;
            }
            whole.extend_from_slice(&chunk);
        }
        assert!(whole == *data);
    });
}

#[proactor::test]
fn read_past_eof(p: &Proactor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small");
    std::fs::write(&path, b"0123456789").unwrap();
    p.block_on(async {
        let f = File::open(&path).await.unwrap();
        let (res, buf) = f.read_at(Vec::with_capacity(100), 1000).await;
        assert_eq!(res.unwrap(), 0);
        assert!(buf.is_empty());
        let (res, buf) = f.read_at(Vec::with_capacity(100), 10).await;
        assert_eq!(res.unwrap(), 0);
        assert!(buf.is_empty());
        let (res, buf) = f.read_at(Vec::with_capacity(100), 7).await;
        assert_eq!(res.unwrap(), 3);
        assert_eq!(buf, b"789");
        let (res, buf) = f.read_exact_at(Vec::with_capacity(8), 5).await;
        let err = res.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        assert_eq!(buf, b"56789", "what did arrive is handed back");
    });
}

#[proactor::test]
fn missing_file_is_a_clear_error(p: &Proactor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-file.txt");
    p.block_on(async {
        let err = File::open(&path).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(proactor::op::raw_os_error(&err), Some(libc::ENOENT));
        let msg = err.to_string();
        assert!(msg.contains("no-such-file.txt") && msg.starts_with("open "), "{msg}");
        let err = fs::metadata(&path).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains("no-such-file.txt"));
        let err = fs::remove_file(&path).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        // A path with a NUL byte is refused before reaching the kernel.
        let err = File::open("bad\0path").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    });
}

#[proactor::test]
fn open_options_and_path_operations(p: &Proactor) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    p.block_on(async {
        // Inconsistent options are refused with InvalidInput.
        let err = OpenOptions::new().open(d.join("x")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = OpenOptions::new().read(true).create(true).open(d.join("x")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);

        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(d.join("a"))
            .await
            .unwrap();
        let (res, _) = f.write_all_at(b"abc".as_slice(), 0).await;
        res.unwrap();
        f.sync_data().await.unwrap();
        let meta = f.metadata().await.unwrap();
        assert_eq!((meta.len(), meta.mode()), (3, 0o600));
        assert!(meta.modified() > std::time::SystemTime::UNIX_EPOCH);
        f.close().await.unwrap();
        let err =
            OpenOptions::new().write(true).create_new(true).open(d.join("a")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);

        // Append goes to the end whatever the position.
        let f = OpenOptions::new().append(true).open(d.join("a")).await.unwrap();
        let (res, _) = f.write(b"def".as_slice()).await;
        assert_eq!(res.unwrap(), 3);
        assert_eq!(fs::read(d.join("a")).await.unwrap(), b"abcdef");

        fs::create_dir(d.join("sub")).await.unwrap();
        assert!(fs::metadata(d.join("sub")).await.unwrap().is_dir());
        let err = fs::create_dir(d.join("sub")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        fs::rename(d.join("a"), d.join("sub/b")).await.unwrap();
        assert!(!d.join("a").exists());
        assert_eq!(std::fs::read(d.join("sub/b")).unwrap(), b"abcdef");
        let err = fs::remove_dir(d.join("sub")).await.unwrap_err();
        assert_eq!(proactor::op::raw_os_error(&err), Some(libc::ENOTEMPTY));
        fs::remove_file(d.join("sub/b")).await.unwrap();
        fs::remove_dir(d.join("sub")).await.unwrap();
        assert!(!d.join("sub").exists());

        fs::write(d.join("w"), b"written".to_vec()).await.unwrap();
        assert_eq!(std::fs::read(d.join("w")).unwrap(), b"written");
        std::os::unix::fs::symlink(d.join("w"), d.join("link")).unwrap();
        assert!(fs::symlink_metadata(d.join("link")).await.unwrap().is_symlink());
        assert!(fs::metadata(d.join("link")).await.unwrap().is_file());
    });
}

// Times before 1970 with a fraction of a second: the nanoseconds count forward from the
// (negative) second, as std reads them — they were once subtracted. Far-off times do not panic.
#[proactor::test]
fn times_before_the_epoch(p: &Proactor) {
    use std::os::unix::ffi::OsStrExt;
    use std::time::{Duration, SystemTime};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old");
    std::fs::write(&path, b"x").unwrap();
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let set = |sec: i64, nsec: i64| {
        let t = libc::timespec { tv_sec: sec, tv_nsec: nsec };
        // SAFETY: a NUL-terminated path and two timespecs that outlive the call.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, cpath.as_ptr(), [t, t].as_ptr(), 0) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    };
    set(-1, 500_000_000);
    p.block_on(async {
        let meta = fs::metadata(&path).await.unwrap();
        let half_before = SystemTime::UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(meta.modified(), half_before);
        assert_eq!(meta.modified(), std::fs::metadata(&path).unwrap().modified().unwrap());
        assert_eq!(meta.accessed(), half_before);
    });
    // The filesystem's own limits decide what is stored; whatever it reports must not panic.
    set(i64::MAX / 4, 999_999_999);
    p.block_on(async {
        let meta = fs::metadata(&path).await.unwrap();
        let _ = (meta.modified(), meta.accessed(), format!("{meta:?}"));
    });
}

/// The (device, inode) that descriptor `fd` refers to now, or `None` if it is closed.
fn fd_identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: fstat writes into the local struct; an invalid fd is just EBADF.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `st` is a valid, writable stat buffer.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

// A metadata call whose future is dropped mid-flight keeps the descriptor open until the
// operation completes, even when the File is dropped too: the number cannot be closed (and
// reused for another file) under the running statx. It once kept it only as long as the future.
#[proactor::test]
fn dropped_metadata_call_keeps_its_fd_until_done(p: &Proactor) {
    use std::future::Future;
    use std::task::{Context, Waker};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m"), b"x").unwrap();
    p.block_on(async {
        let file = File::open(dir.path().join("m")).await.unwrap();
        let fd = file.as_raw_fd();
        let me = fd_identity(fd).unwrap();
        let mut call = Box::pin(file.metadata());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(call.as_mut().poll(&mut cx).is_pending(), "submitted, not finished");
        drop(call);
        drop(file);
        // No turn of the loop has run: the operation is still in flight and owns the fd.
        assert_eq!(fd_identity(fd), Some(me), "fd closed under an operation in flight");
        // Once it completes, the descriptor goes.
        let start = std::time::Instant::now();
        while fd_identity(fd) == Some(me) {
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "fd never closed");
            proactor::time::sleep(std::time::Duration::from_millis(1)).await.unwrap();
        }
    });
}
