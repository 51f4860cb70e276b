//! The fault layer: a driver that wraps another and injects the faults of a [`FaultPlan`].
//!
//! It sits where the run loop meets the driver (`push`, `cancel`, `wait`), so both drivers get
//! the same faults. It keeps the driver contract: every operation pushed yields exactly one
//! completion (its own, for an error injected instead of submitting), and an operation's
//! memory is touched only before it is handed on (to shorten a transfer).

use super::rng::{mix, Rng};
use super::{FaultCounts, FaultKind, FaultPlan, FaultReport};
use crate::driver::{
    AnyDriver, Completion, Driver, DriverKind, Notifier, OpPtr, RawOp, Token, MORE,
};
use crate::op::Emulation;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

/// What to do with one pushed operation.
enum Inject {
    /// Complete it with this error instead of submitting it.
    Fail(FaultKind, i32),
    /// Submit it at the next `wait` (its first submission "failed" with EINTR/EAGAIN).
    Resubmit(FaultKind),
    /// Submit it asking for at most this many bytes.
    Short(usize),
}

/// A driver with faults injected into what passes through it.
pub(crate) struct FaultDriver {
    inner: AnyDriver,
    plan: FaultPlan,
    rng: Rng,
    counts: FaultCounts,
    /// Completions of operations that got an injected error instead of being submitted.
    ready: Vec<Completion>,
    /// Operations to hand to the inner driver at the next `wait`.
    resubmit: Vec<(Token, OpPtr, Option<Duration>)>,
    /// Cancels held back until the next reap (a real completion may win meanwhile).
    late_cancels: Vec<Token>,
    /// Completions held back from a batch, delivered first at the next reap.
    overflow: Vec<Completion>,
    /// Multishot operations handed to the inner driver and not yet ended, with the fault the
    /// kernel may end each with while it runs (a receive's buffer ring running dry, an accept
    /// finding the descriptor table full).
    streams: Vec<(Token, FaultKind)>,
    /// Multishot operations this layer cancelled so that they end with an error, as the
    /// kernel ends them: their final `ECANCELED` is delivered as this errno.
    ending: Vec<(Token, FaultKind, i32)>,
}

impl FaultDriver {
    pub(crate) fn new(inner: AnyDriver, plan: FaultPlan) -> FaultDriver {
        tracing::warn!(
            target: "proactor::faults",
            "fault injection on ({} driver): PROACTOR_FAULTS={plan}",
            inner.kind()
        );
        FaultDriver {
            inner,
            plan,
            rng: Rng::new(mix(plan.seed())),
            counts: FaultCounts::default(),
            ready: Vec::new(),
            resubmit: Vec::new(),
            late_cancels: Vec::new(),
            overflow: Vec::new(),
            streams: Vec::new(),
            ending: Vec::new(),
        }
    }

    pub(crate) fn inner(&self) -> &AnyDriver {
        &self.inner
    }

    pub(crate) fn inner_mut(&mut self) -> &mut AnyDriver {
        &mut self.inner
    }

    pub(crate) fn report(&self) -> FaultReport {
        FaultReport { plan: self.plan, counts: self.counts }
    }

    fn roll(&mut self, kind: FaultKind) -> bool {
        self.plan.injects(kind) && self.rng.chance(self.plan.probability())
    }

    /// Picks a fault for `op` among the kinds the plan allows and the operation can get.
    fn pick(&mut self, op: &mut dyn RawOp) -> Option<Inject> {
        let name = op.name();
        let fd = match op.emulation() {
            Emulation::Readable(fd)
            | Emulation::ReadableFirstWait(fd)
            | Emulation::Writable(fd) => Some(fd),
            _ => None,
        };
        let mut choices: [Option<Inject>; 6] = Default::default();
        let mut n = 0;
        let mut offer = |c: Inject| {
            choices[n] = Some(c);
            n += 1;
        };
        let plan = self.plan;
        if plan.injects(FaultKind::Short) {
            if let Some(len) = op.transfer_len().filter(|&l| l >= 2) {
                offer(Inject::Short(1 + self.rng.below(len as u64 - 1) as usize));
            }
        }
        if plan.injects(FaultKind::Eintr) {
            offer(Inject::Resubmit(FaultKind::Eintr));
        }
        if plan.injects(FaultKind::Eagain) {
            offer(Inject::Resubmit(FaultKind::Eagain));
        }
        let receive = matches!(name, "recv" | "read" | "readv" | "recv_pooled");
        let send = matches!(name, "send" | "write" | "writev");
        if plan.injects(FaultKind::Enobufs) && matches!(name, "recv_pooled" | RECV_MULTI) {
            offer(Inject::Fail(FaultKind::Enobufs, libc::ENOBUFS));
        }
        if plan.injects(FaultKind::Reset) && (receive || send) && fd.is_some_and(is_stream_socket) {
            let errno =
                if receive || self.rng.below(2) == 0 { libc::ECONNRESET } else { libc::EPIPE };
            offer(Inject::Fail(FaultKind::Reset, errno));
        }
        if plan.injects(FaultKind::Emfile) && matches!(name, "accept" | ACCEPT_MULTI | "openat") {
            let errno = if self.rng.below(2) == 0 { libc::EMFILE } else { libc::ENFILE };
            offer(Inject::Fail(FaultKind::Emfile, errno));
        }
        if plan.injects(FaultKind::Enospc) && send && fd.is_some_and(is_regular_file) {
            offer(Inject::Fail(FaultKind::Enospc, libc::ENOSPC));
        }
        if n == 0 {
            return None;
        }
        let i = self.rng.below(n as u64) as usize;
        let picked = choices[i].take();
        if let (Some(Inject::Fail(FaultKind::Reset, _)), Some(fd)) = (&picked, fd) {
            reset(fd);
        }
        picked
    }

    /// Delivers the completions of a batch in another order, keeping the order of each
    /// operation's own (a multishot stream's) — and that of the operations whose completions
    /// name a provided buffer: the kernel posts those in the order it consumed its rings, and
    /// an incremental ring's pieces are placed by that order (`buf/pool.rs`), which no kernel
    /// reshuffles.
    fn reorder(&mut self, batch: &mut [Completion]) {
        let salt = self.rng.next_u64();
        // `IORING_CQE_F_BUFFER` (bit 0): the completion names a provided buffer.
        let mut buffered: Vec<u64> =
            batch.iter().filter(|c| c.flags & 1 != 0).map(|c| c.token.0).collect();
        buffered.sort_unstable();
        let key = |c: &Completion| match buffered.binary_search(&c.token.0) {
            Ok(_) => salt,
            Err(_) => mix(c.token.0 ^ salt),
        };
        let mut keyed: Vec<(u64, usize, Completion)> =
            batch.iter().enumerate().map(|(i, c)| (key(c), i, *c)).collect();
        keyed.sort_unstable_by_key(|&(k, i, _)| (k, i));
        for (slot, (_, _, c)) in batch.iter_mut().zip(keyed) {
            *slot = c;
        }
    }

    /// Hands `op` to the inner driver, noting a multishot receive or accept (the kernel may
    /// end it with an error later).
    ///
    /// # Safety
    /// The [`Driver::push`] contract for `op`.
    unsafe fn forward(&mut self, token: Token, op: OpPtr, deadline: Option<Duration>) {
        // SAFETY: the caller hands us the operation until its completion; it is not submitted
        // yet, so reading its name races with nothing.
        let kind = match unsafe { op.0.as_ref() }.name() {
            RECV_MULTI => Some(FaultKind::Enobufs),
            ACCEPT_MULTI => Some(FaultKind::Emfile),
            _ => None,
        };
        if let Some(kind) = kind.filter(|&k| self.plan.injects(k)) {
            self.streams.push((token, kind));
        }
        // SAFETY: forwarded with the caller's guarantee.
        unsafe { self.inner.push(token, op, deadline) }
    }

    /// Ends multishot operations of a freshly reaped batch as the kernel may while they run: a
    /// receive whose buffer ring ran dry (`ENOBUFS`; the data stays in the socket), an accept
    /// that found the descriptor table full (`EMFILE`/`ENFILE`; the connection stays in the
    /// backlog). After an item the request is cancelled, and its last completion
    /// (`ECANCELED`, without `MORE`) is delivered as that error, with no item, for the runtime
    /// to submit the operation again. One that ends otherwise meanwhile (end of stream, an
    /// error) keeps its own end.
    fn end_streams(&mut self, batch: &mut [Completion]) {
        if self.streams.is_empty() {
            return;
        }
        for c in batch.iter_mut() {
            let Some(i) = self.streams.iter().position(|s| s.0 == c.token) else { continue };
            let kind = self.streams[i].1;
            let ending = self.ending.iter().position(|e| e.0 == c.token);
            if c.flags & MORE == 0 {
                self.streams.swap_remove(i);
                if let Some(j) = ending {
                    let (_, kind, errno) = self.ending.swap_remove(j);
                    if c.result == -libc::ECANCELED {
                        self.counts.bump(kind);
                        c.result = -errno;
                        c.flags = 0;
                    }
                }
            } else if ending.is_none() && self.roll(kind) {
                let errno = match kind {
                    FaultKind::Emfile if self.rng.below(2) == 0 => libc::ENFILE,
                    FaultKind::Emfile => libc::EMFILE,
                    _ => libc::ENOBUFS,
                };
                self.ending.push((c.token, kind, errno));
                self.inner.cancel(c.token);
            }
        }
    }
}

/// The name of the multishot receive into a buffer pool (`op::RecvMulti`).
const RECV_MULTI: &str = "recv_multi";
/// The name of the multishot accept (`op::AcceptMulti`).
const ACCEPT_MULTI: &str = "accept_multi";

impl Driver for FaultDriver {
    unsafe fn push(&mut self, token: Token, op: OpPtr, deadline: Option<Duration>) {
        if self.rng.chance(self.plan.probability()) {
            // SAFETY: the caller hands us the operation until its completion; it is not yet
            // submitted, so nothing else touches it while we look at it and shorten it.
            let raw = unsafe { &mut *op.0.as_ptr() };
            match self.pick(raw) {
                Some(Inject::Fail(kind, errno)) => {
                    self.counts.bump(kind);
                    self.ready.push(Completion { token, result: -errno, flags: 0 });
                    return;
                }
                Some(Inject::Resubmit(kind)) => {
                    self.counts.bump(kind);
                    self.resubmit.push((token, op, deadline));
                    return;
                }
                Some(Inject::Short(max)) => {
                    self.counts.bump(FaultKind::Short);
                    raw.limit_transfer(max);
                }
                None => {}
            }
        }
        // SAFETY: forwarded with the caller's guarantee.
        unsafe { self.forward(token, op, deadline) }
    }

    fn cancel(&mut self, token: Token) {
        if let Some(i) = self.resubmit.iter().position(|r| r.0 == token) {
            // Never reached the kernel: cancelled before its resubmission.
            self.resubmit.remove(i);
            self.ready.push(Completion { token, result: -libc::ECANCELED, flags: 0 });
            return;
        }
        if self.ready.iter().any(|c| c.token == token) {
            return; // Already complete: the injected error is its real result.
        }
        if let Some(i) = self.ending.iter().position(|e| e.0 == token) {
            // Its owner cancels it too: the cancel is the truth of its end.
            self.ending.swap_remove(i);
            return;
        }
        if self.roll(FaultKind::CancelRace) {
            self.counts.bump(FaultKind::CancelRace);
            self.late_cancels.push(token);
            return;
        }
        self.inner.cancel(token)
    }

    fn wait(
        &mut self,
        block: bool,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        let start = out.len();
        for (token, op, deadline) in std::mem::take(&mut self.resubmit) {
            // SAFETY: pushed to us under the `push` contract and not handed on until now.
            unsafe { self.forward(token, op, deadline) };
        }
        if !self.late_cancels.is_empty() {
            // Reap first: what completed meanwhile wins the race against its cancel.
            self.inner.wait(false, None, out)?;
            for token in std::mem::take(&mut self.late_cancels) {
                let done = out[start..].iter().any(|c| c.token == token && c.flags & MORE == 0);
                if !done {
                    self.inner.cancel(token);
                }
            }
        }
        let at_hand = !self.ready.is_empty() || !self.overflow.is_empty() || out.len() > start;
        self.inner.wait(block && !at_hand, timeout, out)?;
        self.end_streams(&mut out[start..]);
        if !self.overflow.is_empty() {
            // Held back from an earlier batch: older than anything reaped since.
            let held = std::mem::take(&mut self.overflow);
            out.splice(start..start, held);
        }
        out.append(&mut self.ready);
        let n = out.len() - start;
        if n >= 2 && self.roll(FaultKind::Reorder) {
            self.counts.bump(FaultKind::Reorder);
            self.reorder(&mut out[start..]);
        }
        if n >= 2 && self.roll(FaultKind::Overflow) {
            self.counts.bump(FaultKind::Overflow);
            let keep = 1 + self.rng.below(n as u64 - 1) as usize;
            self.overflow.extend(out.drain(start + keep..));
        }
        Ok(())
    }

    fn notifier(&self) -> Arc<dyn Notifier> {
        self.inner.notifier()
    }

    fn kind(&self) -> DriverKind {
        self.inner.kind()
    }
}

impl Drop for FaultDriver {
    fn drop(&mut self) {
        tracing::info!(target: "proactor::faults", "{}", self.report());
    }
}

/// Makes the connection on `fd` really gone, for both sides, as after a reset: a TCP socket is
/// disconnected (`connect` to `AF_UNSPEC`, which sends the peer an RST), so its peer sees
/// `ECONNRESET` and what follows here fails; another stream socket is shut down both ways.
fn reset(fd: RawFd) {
    // SAFETY: an all-zero sockaddr_storage is a valid value to pass and to overwrite.
    let mut addr = unsafe { std::mem::zeroed::<libc::sockaddr_storage>() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into the local `addr`; the descriptor is
    // open, held by the operation being pushed (these calls touch no other memory of ours).
    let named = unsafe {
        libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_storage).cast(), &mut len)
    } == 0;
    let family = i32::from(addr.ss_family);
    if named && (family == libc::AF_INET || family == libc::AF_INET6) {
        // SAFETY: as above; an all-zero sockaddr is the AF_UNSPEC address.
        let unspec = unsafe { std::mem::zeroed::<libc::sockaddr>() };
        let size = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
        // SAFETY: `unspec` is a valid sockaddr of `size` bytes, read by the call only.
        if unsafe { libc::connect(fd, &unspec, size) } == 0 {
            return;
        }
    }
    // SAFETY: shutdown takes a descriptor number and touches no memory.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

fn file_type(fd: RawFd) -> Option<libc::mode_t> {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st = unsafe { std::mem::zeroed::<libc::stat>() };
    // SAFETY: `st` is a valid out-parameter.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_mode & libc::S_IFMT)
}

fn is_regular_file(fd: RawFd) -> bool {
    file_type(fd) == Some(libc::S_IFREG)
}

fn is_stream_socket(fd: RawFd) -> bool {
    file_type(fd) == Some(libc::S_IFSOCK)
        && crate::fd::socket_option(fd, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
}
