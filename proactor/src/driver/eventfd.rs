//! The eventfd both drivers use to be woken from other threads: io_uring polls it with a
//! multishot poll, epoll watches it like any fd. One notification or many, the loop wakes once.

use super::Notifier;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd other threads write to wake a driver blocked in its wait.
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// The descriptor to watch for readability.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Resets the counter, so the fd is not readable until the next notification.
    pub(crate) fn drain(&self) {
        let mut value = 0u64;
        // SAFETY: reads at most 8 bytes into a local u64; the fd is open and non-blocking.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

impl Notifier for EventFd {
    fn notify(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a local u64 to an open, non-blocking eventfd. It can only
        // fail with EAGAIN when the counter is about to overflow, which means the loop has a
        // wake-up pending anyway.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}
