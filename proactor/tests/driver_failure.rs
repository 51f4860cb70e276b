//! A driver that fails for good ends `block_on` with its error instead of a silent loop.

use proactor::{op, submit, DriverChoice, Proactor};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The descriptors that `make` opens, found by comparing `/proc/self/fd` before and after.
fn new_fds_of_kind(kind: &str, make: impl FnOnce() -> Proactor) -> (Proactor, Vec<i32>) {
    let list = || -> Vec<(i32, String)> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let fd: i32 = e.file_name().to_str()?.parse().ok()?;
                Some((fd, std::fs::read_link(e.path()).ok()?.to_string_lossy().into_owned()))
            })
            .collect()
    };
    let before = list();
    let p = make();
    let fds = list()
        .into_iter()
        .filter(|(fd, link)| {
            link.contains(kind) && !before.iter().any(|(b, l)| b == fd && l == link)
        })
        .map(|(fd, _)| fd)
        .collect();
    (p, fds)
}

/// One test, both drivers in turn: the descriptors a new proactor opens are found by comparing
/// `/proc/self/fd` before and after, which another test of this binary running alongside could
/// confuse.
#[test]
fn a_persistent_driver_error_ends_block_on_with_that_error() {
    for (kind, choice) in [("io_uring", DriverChoice::Uring), ("eventpoll", DriverChoice::Epoll)] {
        break_driver_and_block_on(kind, choice);
    }
}

fn break_driver_and_block_on(kind: &str, choice: DriverChoice) {
    let (q, fds) = new_fds_of_kind(kind, || {
        Proactor::builder().driver(choice).build().expect("proactor on the requested driver")
    });
    assert_eq!(fds.len(), 1, "one {kind} descriptor per proactor: {fds:?}");
    // Break the driver for good: its descriptor now names /dev/null, which neither
    // io_uring_enter nor epoll_wait accepts. (Replaced, not closed, so that the driver's own
    // close at drop closes /dev/null's copy and nothing else.)
    let null = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: both are open descriptors of this process; dup2 replaces `fds[0]` atomically.
    assert!(unsafe { libc::dup2(null.as_raw_fd(), fds[0]) } >= 0);
    let started = Instant::now();
    let res = q.try_block_on(async {
        // A long timer: the loop must wait in the driver (io_uring_enter, epoll_wait).
        submit(op::Timeout::new(Duration::from_secs(60))).await
    });
    let err = res.expect_err("block_on must give up on a driver that cannot wait");
    assert!(started.elapsed() < Duration::from_secs(30), "it gave up, not the timer firing");
    assert!(err.raw_os_error().is_some(), "the driver's own error: {err}");
    // Dropping the broken proactor must not hang or panic either.
    drop(q);
}
