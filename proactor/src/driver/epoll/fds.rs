//! Who waits on each descriptor, and what is armed for it in epoll.
//!
//! epoll keeps one registration per descriptor, so every operation waiting on the same fd (a
//! receive and a send on one socket, two reads on one pipe) shares it: this table merges their
//! interests, arms the registration in one-shot mode, and after an event tells the driver which
//! waiters to retry, oldest first. The driver does not own the descriptors, so the table never
//! trusts its memory of the kernel's interest list: a number that was closed and reused is caught
//! by `ENOENT` on modify and added afresh.

use super::super::Token;
use super::sys::Epoll;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::RawFd;

/// The direction an operation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    Read,
    Write,
}

/// One descriptor's waiters and the interest armed for it.
#[derive(Default)]
struct FdState {
    readers: VecDeque<Token>,
    writers: VecDeque<Token>,
    /// Added to the epoll set by this driver (the kernel drops it silently on close).
    added: bool,
    /// Interest armed now. One-shot: an event disarms the whole registration.
    armed_read: bool,
    armed_write: bool,
}

impl FdState {
    fn queue(&mut self, dir: Dir) -> &mut VecDeque<Token> {
        match dir {
            Dir::Read => &mut self.readers,
            Dir::Write => &mut self.writers,
        }
    }
    fn is_idle(&self) -> bool {
        self.readers.is_empty() && self.writers.is_empty()
    }
}

/// Descriptor numbers are small distinct integers: hashing them with a multiply is enough.
#[derive(Default)]
pub(super) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_i32(&mut self, n: i32) {
        self.0 = u64::from(n as u32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The waiters of every descriptor this driver has armed.
#[derive(Default)]
pub(super) struct FdTable {
    map: HashMap<RawFd, FdState, BuildHasherDefault<IntHasher>>,
}

impl FdTable {
    /// Queues `token` behind the other waiters of `fd` in `dir` and makes sure epoll watches the
    /// fd for it. On error (for example `EPERM`: a regular file, which epoll cannot watch) the
    /// token is not queued.
    pub(super) fn wait(
        &mut self,
        epoll: &Epoll,
        fd: RawFd,
        dir: Dir,
        token: Token,
    ) -> io::Result<()> {
        let st = self.map.entry(fd).or_default();
        // Other waiters mean an operation holds the fd open, so what we armed is still there.
        let trusted = !st.is_idle();
        st.queue(dir).push_back(token);
        let covered = match dir {
            Dir::Read => st.armed_read,
            Dir::Write => st.armed_write,
        };
        if trusted && covered {
            return Ok(());
        }
        if let Err(e) = arm(epoll, fd, st) {
            st.queue(dir).pop_back();
            return Err(e);
        }
        Ok(())
    }

    /// Removes a waiter that is leaving early (cancel, deadline). The registration stays armed;
    /// a later event with nobody waiting is ignored.
    pub(super) fn remove(&mut self, fd: RawFd, dir: Dir, token: Token) {
        if let Some(st) = self.map.get_mut(&fd) {
            st.queue(dir).retain(|t| *t != token);
        }
    }

    /// An event fired for `fd`: one-shot mode disarmed the registration.
    pub(super) fn fired(&mut self, fd: RawFd) {
        if let Some(st) = self.map.get_mut(&fd) {
            st.armed_read = false;
            st.armed_write = false;
        }
    }

    /// The oldest waiter of `fd` in `dir`.
    pub(super) fn front(&self, fd: RawFd, dir: Dir) -> Option<Token> {
        let st = self.map.get(&fd)?;
        match dir {
            Dir::Read => st.readers.front().copied(),
            Dir::Write => st.writers.front().copied(),
        }
    }

    /// Drops the oldest waiter of `fd` in `dir` (it completed).
    pub(super) fn pop_front(&mut self, fd: RawFd, dir: Dir) {
        if let Some(st) = self.map.get_mut(&fd) {
            st.queue(dir).pop_front();
        }
    }

    /// Arms `fd` again for the waiters still queued after an event. On error every waiter is
    /// taken off and returned, to be completed with that error.
    pub(super) fn rearm(
        &mut self,
        epoll: &Epoll,
        fd: RawFd,
    ) -> Result<(), (io::Error, Vec<Token>)> {
        let Some(st) = self.map.get_mut(&fd) else { return Ok(()) };
        if st.is_idle()
            || (st.armed_read || st.readers.is_empty()) && (st.armed_write || st.writers.is_empty())
        {
            return Ok(());
        }
        arm(epoll, fd, st).map_err(|e| {
            let mut tokens: Vec<Token> = st.readers.drain(..).collect();
            tokens.extend(st.writers.drain(..));
            (e, tokens)
        })
    }
}

/// Sets the registration of `fd` to the interest of its waiters (one-shot), adding it to the
/// epoll set if it is not there.
fn arm(epoll: &Epoll, fd: RawFd, st: &mut FdState) -> io::Result<()> {
    let (read, write) = (!st.readers.is_empty(), !st.writers.is_empty());
    let mut added = st.added;
    loop {
        // The kernel removes a closed file from the interest list by itself, so an fd the user
        // closes without telling us leaves nothing dangling: at worst a spurious event for a
        // reused number, which the driver tolerates (it retries the operation, gets EAGAIN).
        match epoll.arm(fd, !added, read, write) {
            Ok(()) => break,
            // Closed and reused since we added it: the kernel forgot it, add it again.
            Err(e) if added && e.raw_os_error() == Some(libc::ENOENT) => added = false,
            // Added by us under a number our table had forgotten: modify instead.
            Err(e) if !added && e.raw_os_error() == Some(libc::EEXIST) => added = true,
            Err(e) => return Err(e),
        }
    }
    st.added = true;
    st.armed_read = read;
    st.armed_write = write;
    Ok(())
}
