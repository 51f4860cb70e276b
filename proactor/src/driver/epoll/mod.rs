//! The epoll driver: an emulated Proactor, the way Boost.Asio and Java NIO.2 run on Linux.
//!
//! Every operation is tried at once without blocking; one that would block waits for readiness
//! (epoll, called directly, one-shot) and is performed again when its fd is ready; the calls
//! epoll cannot wait on run on a small blocking pool; timers and deadlines live in a heap. Each
//! path ends the same way: a [`Completion`] with the raw result, queued for the next `wait` —
//! the same completions, with the same values, that the io_uring driver reports:
//! - bytes transferred or `-errno`; exactly one completion per pushed operation;
//! - cancel: `-ECANCELED`, or the real result if the operation finished first (a call already
//!   running on the pool cannot be interrupted and reports its real result);
//! - a deadline that passes: `-ECANCELED` (what io_uring's linked timeout gives the operation);
//! - a timer that expires: `-ETIME` (what io_uring reports for an expired `Timeout`).

mod fds;
mod pool;
mod sys;
mod timers;

use self::fds::{Dir, FdTable};
use self::pool::Pool;
use self::sys::{Epoll, Ready, MAX_EVENTS};
use self::timers::Timers;
use super::{Completion, Driver, DriverKind, Notifier, OpPtr, RawOp, Token, MORE};
use crate::op::Emulation;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where an operation that did not finish at once is waiting.
#[derive(Clone, Copy)]
enum Place {
    /// Queued on a descriptor until it is ready in this direction.
    Fd(i32, Dir),
    /// A `Timeout` operation; the sequence number of its heap entry (`None`: never expires).
    Timer(Option<u64>),
    /// On the blocking pool (queued or running).
    Pool,
}

/// An operation the driver holds until it completes.
struct Pending {
    token: Token,
    op: OpPtr,
    place: Place,
    /// Sequence number of its deadline in the timer heap.
    deadline: Option<u64>,
}

/// What one non-blocking attempt gave.
enum Attempt {
    /// Finished with this result and completion flags.
    Done(i32, u32),
    WouldBlock,
    /// The fd cannot do non-blocking calls (`EOPNOTSUPP` for `RWF_NOWAIT`): use the pool.
    Unsupported,
}

/// Most items a multishot operation yields per readiness event before the driver moves on to
/// other descriptors (and re-arms this one, still ready): a busy connection cannot starve the
/// rest, and the run loop gets the items in batches of a useful size.
const MULTISHOT_BURST: usize = 32;

/// Most events taken by one sweep made while completions are already at hand; see
/// [`EpollDriver::wait`].
const SHORT_SWEEP: usize = 64;

/// The epoll emulation.
pub(crate) struct EpollDriver {
    epoll: Epoll,
    /// Scratch list of what one sweep reported.
    fired: Vec<Ready>,
    /// Operations not yet completed, indexed by the token's slab key (dense, reused only after
    /// the completion was returned).
    ops: Vec<Option<Pending>>,
    fds: FdTable,
    /// Operations queued on descriptors: when zero, a non-blocking `wait` skips `epoll_wait`.
    fd_waiters: usize,
    timers: Timers,
    pool: Pool,
    /// Completions produced since the last `wait` returned.
    ready: Vec<Completion>,
    notifier: Arc<dyn Notifier>,
}

impl EpollDriver {
    pub(crate) fn new() -> io::Result<Self> {
        let epoll = Epoll::new()?;
        let notifier: Arc<dyn Notifier> = epoll.waker();
        Ok(EpollDriver {
            fired: Vec::with_capacity(MAX_EVENTS),
            ops: Vec::new(),
            fds: FdTable::default(),
            fd_waiters: 0,
            timers: Timers::default(),
            pool: Pool::new(notifier.clone()),
            ready: Vec::new(),
            notifier,
            epoll,
        })
    }

    fn insert(&mut self, p: Pending) {
        let key = p.token.key();
        if key >= self.ops.len() {
            self.ops.resize_with(key + 1, || None);
        }
        self.ops[key] = Some(p);
    }

    fn get(&self, token: Token) -> Option<&Pending> {
        self.ops.get(token.key())?.as_ref().filter(|p| p.token == token)
    }

    /// Removes the operation with `token` and queues its completion.
    fn complete(&mut self, token: Token, result: i32) {
        self.complete_with(token, result, 0);
    }

    /// [`EpollDriver::complete`] with the completion's flags (a multishot operation's last).
    fn complete_with(&mut self, token: Token, result: i32, flags: u32) {
        let Some(slot) = self.ops.get_mut(token.key()) else { return };
        let Some(p) = slot.take_if(|p| p.token == token) else { return };
        if p.deadline.is_some() {
            self.timers.dropped();
        }
        match p.place {
            Place::Fd(..) => self.fd_waiters -= 1,
            Place::Timer(Some(_)) => self.timers.dropped(),
            Place::Timer(None) | Place::Pool => {}
        }
        self.ready.push(Completion { token, result, flags });
    }

    /// One non-blocking try of an operation; a multishot one is performed again while it
    /// yields items, each queued as a completion flagged [`MORE`], up to a burst (then it
    /// reports `WouldBlock`, to wait its turn on the still-ready descriptor).
    fn attempt(&mut self, token: Token, op: &mut dyn RawOp) -> Attempt {
        let mut items = 0;
        loop {
            let result = match attempt(op) {
                Attempt::Done(result, _) => result,
                other => return other,
            };
            match op.multishot_flags(result) {
                Some(flags) if flags & MORE != 0 => {
                    self.ready.push(Completion { token, result, flags });
                    items += 1;
                    if items == MULTISHOT_BURST {
                        return Attempt::WouldBlock;
                    }
                }
                flags => return Attempt::Done(result, flags.unwrap_or(0)),
            }
        }
    }

    /// Makes an operation wait for readiness of `fd`, or sends it to the pool if epoll cannot
    /// watch that fd.
    fn wait_fd(&mut self, token: Token, op: OpPtr, fd: i32, dir: Dir, deadline: Option<u64>) {
        match self.fds.wait(&self.epoll, fd, dir, token) {
            Ok(()) => {
                self.fd_waiters += 1;
                self.insert(Pending { token, op, place: Place::Fd(fd, dir), deadline });
            }
            // A regular file or a directory: it is always "ready" and may still block.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                self.send_to_pool(token, op, deadline)
            }
            Err(e) => {
                self.insert(Pending { token, op, place: Place::Pool, deadline });
                self.complete(token, -e.raw_os_error().unwrap_or(libc::EIO));
            }
        }
    }

    /// Hands the operation's blocking call to the pool. The call is made here, on the loop's
    /// thread, from the operation's raw values: the pool thread never sees the operation.
    fn send_to_pool(&mut self, token: Token, op: OpPtr, deadline: Option<u64>) {
        self.insert(Pending { token, op, place: Place::Pool, deadline });
        // SAFETY: the operation is pending here: the run loop neither moves nor touches it (the
        // `push` contract), and no pool thread has it (none ever does).
        let Some(call) = (unsafe { &mut *op.0.as_ptr() }).blocking() else {
            // An operation that cannot run on the pool (a pooled receive on a descriptor epoll
            // cannot watch): say so rather than block the loop.
            self.complete(token, -libc::EOPNOTSUPP);
            return;
        };
        if let Err(mut call) = self.pool.submit(token, call) {
            // No thread could be started: make the call here rather than lose the operation.
            let result = pool::run(&mut call);
            self.complete(token, result);
        }
    }

    /// Ends an operation early with `-ECANCELED` if it can still be stopped (cancel, deadline).
    fn stop(&mut self, token: Token) {
        let Some(p) = self.get(token) else { return };
        match p.place {
            Place::Fd(fd, dir) => {
                self.fds.remove(fd, dir, token);
                self.complete(token, -libc::ECANCELED);
            }
            Place::Timer(_) => self.complete(token, -libc::ECANCELED),
            Place::Pool => {
                if self.pool.cancel(token) {
                    self.complete(token, -libc::ECANCELED);
                }
                // Running: it reports its real result when the call returns.
            }
        }
    }

    /// Fires every timer and deadline that expired by now.
    fn fire_timers(&mut self) {
        if self.timers.next_expiry().is_none() {
            return;
        }
        let now = Instant::now();
        while let Some((seq, token)) = self.timers.pop_expired(now) {
            let Some(p) = self.get(token) else { continue };
            if p.deadline == Some(seq) {
                self.timers.fired();
                if let Some(p) = self.ops[token.key()].as_mut() {
                    p.deadline = None;
                }
                self.stop(token);
            } else if matches!(p.place, Place::Timer(Some(s)) if s == seq) {
                self.timers.fired();
                if let Some(p) = self.ops[token.key()].as_mut() {
                    p.place = Place::Timer(None);
                }
                self.complete(token, -libc::ETIME);
            }
        }
        let ops = &self.ops;
        self.timers.compact(|seq, token| {
            ops.get(token.key()).and_then(Option::as_ref).is_some_and(|p| {
                p.token == token
                    && (p.deadline == Some(seq)
                        || matches!(p.place, Place::Timer(Some(s)) if s == seq))
            })
        });
    }

    /// Retries the waiters of a descriptor that became ready, oldest first, then re-arms it for
    /// those still waiting.
    fn on_ready(&mut self, fd: i32, readable: bool, writable: bool) {
        self.fds.fired(fd);
        for (dir, ready) in [(Dir::Read, readable), (Dir::Write, writable)] {
            if !ready {
                continue;
            }
            while let Some(token) = self.fds.front(fd, dir) {
                let Some(p) = self.get(token) else {
                    self.fds.pop_front(fd, dir);
                    continue;
                };
                let op = p.op;
                // SAFETY: the operation is pending here, so the run loop neither moves nor
                // touches it (the `push` contract) and no pool thread has it.
                match self.attempt(token, unsafe { &mut *op.0.as_ptr() }) {
                    Attempt::WouldBlock => break,
                    Attempt::Done(result, flags) => {
                        self.fds.pop_front(fd, dir);
                        self.complete_with(token, result, flags);
                    }
                    Attempt::Unsupported => {
                        self.fds.pop_front(fd, dir);
                        self.fd_waiters -= 1;
                        let deadline = self.get(token).and_then(|p| p.deadline);
                        self.ops[token.key()] = None;
                        self.send_to_pool(token, op, deadline);
                    }
                }
            }
        }
        if let Err((e, tokens)) = self.fds.rearm(&self.epoll, fd) {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            for token in tokens {
                self.complete(token, -errno);
            }
        }
    }

    /// Polls epoll (blocking up to `timeout`) and handles what became ready.
    /// `short`: take at most [`SHORT_SWEEP`] events.
    fn poll(&mut self, timeout: Option<Duration>, short: bool) -> io::Result<()> {
        let max = if short { SHORT_SWEEP } else { MAX_EVENTS };
        let mut fired = std::mem::take(&mut self.fired);
        let res = self.epoll.wait(timeout, max, &mut fired);
        for r in fired.drain(..) {
            self.on_ready(r.fd, r.readable, r.writable);
        }
        self.fired = fired;
        res
    }

    /// Hands the pool's finished calls to the run loop.
    fn drain_pool(&mut self) {
        let mut done = Vec::new();
        self.pool.drain(&mut done);
        for c in done {
            self.complete(c.token, c.result);
        }
    }
}

/// One non-blocking try of an operation, absorbing `EINTR`.
fn attempt(op: &mut dyn RawOp) -> Attempt {
    loop {
        match op.perform(true) {
            Ok(n) => return Attempt::Done(n.min(i32::MAX as u32) as i32, 0),
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EOPNOTSUPP) => return Attempt::Unsupported,
                _ if e.kind() == io::ErrorKind::WouldBlock => return Attempt::WouldBlock,
                Some(errno) => return Attempt::Done(-errno, 0),
                None => return Attempt::Done(-libc::EIO, 0),
            },
        }
    }
}

/// A blocking call on the loop's own thread (only when the pool cannot start a thread).
fn blocking_call(op: &mut dyn RawOp) -> i32 {
    loop {
        match op.perform(false) {
            Ok(n) => return n.min(i32::MAX as u32) as i32,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return -e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

impl Driver for EpollDriver {
    unsafe fn push(&mut self, token: Token, op: OpPtr, deadline: Option<Duration>) {
        // SAFETY: the caller guarantees `op` is valid and not touched by anyone else until its
        // completion is returned; this driver has not handed it to a pool thread yet.
        let raw = unsafe { &mut *op.0.as_ptr() };
        let emulation = raw.emulation();
        let (fd, dir, first) = match emulation {
            Emulation::Now => {
                self.ready.push(Completion { token, result: blocking_call(raw), flags: 0 });
                return;
            }
            Emulation::Readable(fd) => (fd, Dir::Read, self.attempt(token, raw)),
            // Straight to waiting: epoll reports at once a descriptor that is readable already
            // (its registration is level-triggered), so nothing is missed.
            Emulation::ReadableFirstWait(fd) => (fd, Dir::Read, Attempt::WouldBlock),
            Emulation::Writable(fd) => (fd, Dir::Write, self.attempt(token, raw)),
            Emulation::Blocking | Emulation::Timer(_) => (-1, Dir::Read, Attempt::WouldBlock),
        };
        if let Attempt::Done(result, flags) = first {
            self.ready.push(Completion { token, result, flags });
            return;
        }
        let now = Instant::now();
        // A deadline too far away to represent never passes.
        let deadline =
            deadline.and_then(|d| now.checked_add(d)).map(|when| self.timers.add(when, token));
        match emulation {
            Emulation::Timer(d) => {
                let seq = now.checked_add(d).map(|when| self.timers.add(when, token));
                self.insert(Pending { token, op, place: Place::Timer(seq), deadline });
            }
            Emulation::Blocking => self.send_to_pool(token, op, deadline),
            _ => match first {
                Attempt::Unsupported => self.send_to_pool(token, op, deadline),
                _ => self.wait_fd(token, op, fd, dir, deadline),
            },
        }
    }

    fn cancel(&mut self, token: Token) {
        self.stop(token);
    }

    fn wait(
        &mut self,
        block: bool,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        self.drain_pool();
        self.fire_timers();
        let have_ready = !self.ready.is_empty() || !out.is_empty();
        let block = block && !have_ready;
        if block || self.fd_waiters > 0 {
            let mut wait = if block { timeout } else { Some(Duration::ZERO) };
            if let Some(next) = self.timers.next_expiry() {
                let until = next.saturating_duration_since(Instant::now());
                wait = Some(wait.map_or(until, |w| w.min(until)));
            }
            // Completions already at hand (operations that finished when pushed, such as an
            // accept with connections in the backlog) go back after a short sweep only: with a
            // full one, each would wait for every ready descriptor to be served, and an accept
            // loop would take one connection per thousand echoes. epoll keeps the events not
            // taken at the head of its ready list, so the next sweep starts with them.
            self.poll(wait, have_ready)?;
            self.fire_timers();
            self.drain_pool();
        }
        out.append(&mut self.ready);
        Ok(())
    }

    fn notifier(&self) -> Arc<dyn Notifier> {
        self.notifier.clone()
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Epoll
    }
}
