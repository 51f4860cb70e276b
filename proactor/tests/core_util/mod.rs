//! Helpers shared by the core's tests (`ops.rs`, `lifecycle.rs`, `front_ends.rs`): running one
//! operation through either front end. (The buffer that counts its own destruction is
//! `common::CountingBuf`.)
#![allow(dead_code)]

use proactor::op::OpCode;
use proactor::Proactor;
use std::cell::RefCell;
use std::rc::Rc;

/// The two front ends of the proactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// `submit(op).await` inside `block_on`.
    Future,
    /// `start(op, handler)` then `run()`.
    Handler,
}

/// Both front ends, for `for front in FRONTS`.
pub const FRONTS: [Front; 2] = [Front::Future, Front::Handler];

/// Runs `op` to completion through `front` and returns its output.
pub fn run_op<O: OpCode>(p: &Proactor, front: Front, op: O) -> O::Output {
    match front {
        Front::Future => p.block_on(proactor::submit(op)),
        Front::Handler => {
            let out = Rc::new(RefCell::new(None));
            let o = out.clone();
            p.start(op, move |r| *o.borrow_mut() = Some(r));
            p.run().expect("run");
            let r = out.borrow_mut().take();
            r.expect("the handler ran before run() returned")
        }
    }
}

/// The errno of an operation's error.
pub fn errno(err: &std::io::Error) -> Option<i32> {
    proactor::op::raw_os_error(err)
}

/// Polls `fut` once with the current context; true if it finished.
pub async fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> bool {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx).is_ready())
    })
    .await
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors owned by nothing else.
    unsafe {
        (std::os::fd::OwnedFd::from_raw_fd(fds[0]), std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    }
}

/// Yields once to the run loop, so that it turns (submits and reaps) before the task goes on.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Number of sockets and pipes this process has open. Unlike a count of every descriptor, it
/// is not disturbed by proactors being built in parallel test threads (rings, eventfds and epoll
/// instances are anonymous inodes), so a leaked accepted socket or pipe shows up exactly.
pub fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| {
                    let t = t.to_string_lossy();
                    t.starts_with("socket:") || t.starts_with("pipe:")
                })
                .count()
        })
        .unwrap_or(0)
}
