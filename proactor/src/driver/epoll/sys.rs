//! The epoll instance itself, called directly: one `epoll_wait` per sweep and one `epoll_ctl`
//! per (re-)arm, nothing else.
//!
//! A generic poller (`polling` 3.x) also re-arms its own timer and wake-up descriptors around
//! every wait — a `timerfd_settime`, two `epoll_ctl` and an eventfd `read` per turn, more than
//! the echo itself costs. Here the timeout is epoll's own millisecond argument (rounded up, so a
//! timer never fires early), and the wake-up eventfd is registered once and read only when it
//! fired.

use super::super::eventfd::EventFd;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The event key of the wake-up eventfd (descriptor keys are non-negative `i32`s).
const WAKE_KEY: u64 = u64::MAX;

/// Most events one sweep takes.
pub(super) const MAX_EVENTS: usize = 1024;

/// What a fired event says about its descriptor.
#[derive(Clone, Copy)]
pub(super) struct Ready {
    pub(super) fd: RawFd,
    pub(super) readable: bool,
    pub(super) writable: bool,
}

/// An epoll instance with its wake-up eventfd.
pub(super) struct Epoll {
    epfd: OwnedFd,
    wake: std::sync::Arc<EventFd>,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub(super) fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let wake = std::sync::Arc::new(EventFd::new()?);
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: WAKE_KEY };
        // SAFETY: both descriptors are open (owned here); `ev` is a valid local the kernel only
        // reads during the call.
        let rc = unsafe {
            libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, wake.raw_fd(), &mut ev)
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll { epfd, wake, events: Vec::with_capacity(MAX_EVENTS) })
    }

    /// The wake-up handle other threads use.
    pub(super) fn waker(&self) -> std::sync::Arc<EventFd> {
        self.wake.clone()
    }

    /// Adds (`add`) or modifies the one-shot registration of `fd` for reading and/or writing.
    /// Errors are the kernel's (`EPERM` for a regular file, `ENOENT`/`EEXIST`).
    pub(super) fn arm(&self, fd: RawFd, add: bool, read: bool, write: bool) -> io::Result<()> {
        let mut flags = libc::EPOLLONESHOT as u32;
        if read {
            flags |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if write {
            flags |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event { events: flags, u64: fd as u32 as u64 };
        let op = if add { libc::EPOLL_CTL_ADD } else { libc::EPOLL_CTL_MOD };
        // SAFETY: `ev` is a valid local the kernel only reads during the call. `fd` is a number
        // the caller's operation keeps open; if it was closed and reused the kernel reports
        // ENOENT/EEXIST or registers the new file, which the driver tolerates (a spurious event
        // makes it retry an operation, which then gets EAGAIN).
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` (`None`: no limit), rounded up to whole milliseconds, for at most
    /// `max` events, and appends what fired to `out`. The wake-up eventfd is reset when it
    /// fired and not reported. `EINTR` returns with nothing.
    pub(super) fn wait(
        &mut self,
        timeout: Option<Duration>,
        max: usize,
        out: &mut Vec<Ready>,
    ) -> io::Result<()> {
        let ms = match timeout {
            None => -1,
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        };
        let max = max.clamp(1, MAX_EVENTS);
        self.events.clear();
        // SAFETY: the buffer has room for `max` (<= its capacity) events; the kernel writes at
        // most that many and returns how many it wrote.
        let n = unsafe {
            libc::epoll_wait(self.epfd.as_raw_fd(), self.events.as_mut_ptr(), max as i32, ms)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        // SAFETY: the kernel initialised the first `n` (<= max <= capacity) entries.
        unsafe { self.events.set_len(n as usize) };
        for ev in &self.events {
            let (bits, key) = (ev.events, ev.u64);
            if key == WAKE_KEY {
                self.wake.drain();
                continue;
            }
            let any = |mask: i32| bits & mask as u32 != 0;
            out.push(Ready {
                fd: key as u32 as i32,
                readable: any(libc::EPOLLIN
                    | libc::EPOLLPRI
                    | libc::EPOLLRDHUP
                    | libc::EPOLLHUP
                    | libc::EPOLLERR),
                writable: any(libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR),
            });
        }
        Ok(())
    }
}
