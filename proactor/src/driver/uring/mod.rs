//! The io_uring driver: the kernel is the asynchronous operation processor and the completion
//! queue is the completion event queue, so this driver only translates.
//!
//! Everything queued during a turn reaches the kernel in one `io_uring_enter` that also waits;
//! completions are reaped in batches. A full submission ring is flushed and retried, and
//! `EBUSY`/`EINTR` from the kernel are absorbed here, so an operation is never dropped.

mod batch;
mod probe;
mod setup;

pub use probe::{probe_kernel, KernelProbe, OPTIONAL_OPCODES, REQUIRED_OPCODES};
pub use setup::RingConfig;

use self::batch::{Ask, WaitBatch};
use super::eventfd::EventFd;
use super::{Completion, Driver, DriverKind, Notifier, OpPtr, Token};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// User data of the eventfd poll that wakes the ring from other threads: just below
/// `Token::INTERNAL`, so that `reap` tells both from operations' tokens with one compare.
const WAKE: u64 = u64::MAX - 1;
const _: () = assert!(WAKE + 1 == Token::INTERNAL.0);

/// The io_uring driver.
pub(crate) struct UringDriver {
    ring: IoUring,
    /// The setup the ring really got, after any fall-back.
    effective: RingConfig,
    /// Timespecs of linked timeouts pushed since the last submit: the kernel reads them while it
    /// prepares the SQE, during the next `io_uring_enter`, so they live until then.
    #[allow(
        clippy::vec_box,
        reason = "the boxes keep each timespec's address fixed for the kernel"
    )]
    pending_specs: Vec<Box<types::Timespec>>,
    /// Completions reaped while flushing a full ring, reported by the next `wait`.
    backlog: Vec<Completion>,
    waker: Arc<EventFd>,
    wake_armed: bool,
    /// The kernel's count of dropped completions, last seen.
    dropped: u32,
    /// The most completions found in the queue at one reap.
    cq_deepest: u32,
    /// Waits that found the kernel's overflow list in use (`IORING_SQ_CQ_OVERFLOW`).
    cq_overflowed: u64,
    /// How many completions a blocking wait asks for (see `batch.rs`).
    batch: WaitBatch,
}

/// The overall timeout of a batched wait when the loop has no timer: past the cap the kernel
/// then waits for the first completion, as an unbatched wait does, but it needs a timeout to
/// do so (without one, the cap ends the wait).
const BATCH_BACKSTOP: Duration = Duration::from_secs(3600);

impl UringDriver {
    /// Sets up a ring as `config` asks, falling back to fewer setup flags where the kernel refuses.
    pub(crate) fn new(config: &RingConfig) -> io::Result<Self> {
        let (ring, mut effective) = setup::build_ring(config)?;
        // A kernel without `IORING_FEAT_MIN_TIMEOUT` would take the batch without the cap.
        if !ring.params().is_feature_min_timeout() {
            effective = effective.min_wait(None);
        }
        let batch = WaitBatch::new(effective.min_wait_cap());
        let waker = Arc::new(EventFd::new()?);
        Ok(UringDriver {
            ring,
            effective,
            pending_specs: Vec::new(),
            backlog: Vec::new(),
            waker,
            wake_armed: false,
            dropped: 0,
            cq_deepest: 0,
            cq_overflowed: 0,
            batch,
        })
    }

    /// True if `io_uring_enter` takes a timeout with its wait (`IORING_FEAT_EXT_ARG`): `wait`
    /// with a timeout relies on it, and the loop's timers bound every wait that way, with no
    /// entry in the ring.
    pub(crate) fn waits_with_timeout(&self) -> bool {
        self.ring.params().is_feature_ext_arg()
    }

    /// The setup the ring really got.
    pub(crate) fn config(&self) -> &RingConfig {
        &self.effective
    }

    /// Queue sizes and what the completion queue went through so far.
    pub(crate) fn ring_stats(&mut self) -> crate::runtime::RingStats {
        let sq = self.ring.submission().capacity() as u32;
        let cq = self.ring.completion().capacity() as u32;
        let (waits, waits_batched) = self.batch.counts();
        crate::runtime::RingStats {
            waits,
            waits_batched,
            sq_entries: sq,
            cq_entries: cq,
            sq_pending: self.ring.submission().len() as u32,
            cq_deepest: self.cq_deepest,
            cq_overflowed: self.cq_overflowed,
            cq_dropped: self.dropped,
        }
    }

    /// True if the kernel takes several provided buffers in one receive completion
    /// (`IORING_FEAT_RECVSEND_BUNDLE`, since 6.10).
    pub(crate) fn recv_bundles(&self) -> bool {
        self.ring.params().is_feature_recvsend_bundle()
    }

    /// The ring's register interface (provided-buffer rings are registered through it).
    pub(crate) fn submitter(&self) -> io_uring::Submitter<'_> {
        self.ring.submitter()
    }

    fn push_entries(&mut self, entries: &[squeue::Entry]) {
        loop {
            // SAFETY: every pointer inside the entries refers to memory the run loop keeps alive
            // and unmoved until the completion is reaped (the `Driver::push` contract), or to
            // `pending_specs`, which lives until the kernel has consumed every queued entry.
            let pushed = unsafe { self.ring.submission().push_multiple(entries) };
            if pushed.is_ok() {
                return;
            }
            // The ring is full: hand what is queued to the kernel and try again.
            self.flush();
        }
    }

    /// `Driver::push` with a deadline or a full ring.
    ///
    /// # Safety
    /// As for [`Driver::push`].
    #[cold]
    #[inline(never)]
    unsafe fn push_slow(&mut self, token: Token, op: OpPtr, deadline: Option<Duration>) {
        // A deadline is a second, linked entry: both must land in the same submission, or the
        // kernel would start the operation without its timeout.
        let flags = if deadline.is_some() {
            self.make_room(2);
            squeue::Flags::IO_LINK
        } else {
            squeue::Flags::empty()
        };
        loop {
            let mut sq = self.ring.submission();
            // SAFETY: the caller guarantees `op` is valid, not aliased during this call, and
            // that its memory stays put until the completion is reaped, as the entry needs.
            if unsafe { (*op.0.as_ptr()).push_uring(token.0, flags, &mut sq) }.is_ok() {
                break;
            }
            // The ring is full: hand what is queued to the kernel and try again.
            drop(sq);
            self.flush();
        }
        if let Some(d) = deadline {
            let spec = Box::new(types::Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos()));
            let timeout = opcode::LinkTimeout::new(&*spec).build().user_data(Token::INTERNAL.0);
            self.push_entries(&[timeout]);
            // Kept only after the push: a flush releases `pending_specs`, and must not free this
            // spec before its entry is queued (room for both was made above, so none happens in
            // between). The box does not move when the vector grows.
            self.pending_specs.push(spec);
        }
    }

    /// Flushes until the submission ring has `needed` free entries.
    fn make_room(&mut self, needed: usize) {
        loop {
            let sq = self.ring.submission();
            if sq.capacity() - sq.len() >= needed {
                return;
            }
            drop(sq);
            self.flush();
        }
    }

    /// Submits everything queued without waiting, absorbing transient errors, then moves the
    /// completions already posted to the backlog so that a long burst of submissions (far more
    /// than the ring holds) does not overflow the completion queue.
    fn flush(&mut self) {
        loop {
            match self.ring.submit() {
                Ok(_) => break,
                Err(e) => {
                    if !self.absorb(&e) {
                        tracing::error!("io_uring submit failed: {e}");
                        // Give the kernel a moment before the caller retries.
                        std::thread::yield_now();
                        break;
                    }
                }
            }
        }
        self.release_specs();
        let mut reaped = std::mem::take(&mut self.backlog);
        self.reap(&mut reaped);
        self.backlog = reaped;
    }

    /// Frees the linked timeouts' timespecs once the kernel has consumed every queued entry
    /// (it copies a timespec when it prepares the entry). A submission the kernel cut short
    /// leaves entries queued; their timespecs then stay until a later submit takes them.
    fn release_specs(&mut self) {
        if !self.pending_specs.is_empty() && self.ring.submission().is_empty() {
            self.pending_specs.clear();
        }
    }

    /// Handles an `io_uring_enter` error the driver can recover from; false if it cannot.
    fn absorb(&mut self, err: &io::Error) -> bool {
        match err.raw_os_error() {
            Some(libc::EINTR) => true,
            // The completion queue is full (or its overflow list is): make room by reaping.
            Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                let mut reaped = std::mem::take(&mut self.backlog);
                self.reap(&mut reaped);
                self.backlog = reaped;
                true
            }
            _ => false,
        }
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        self.reap_settling(out, |_| false);
    }

    /// [`UringDriver::reap`], offering each completion whose token is at least
    /// [`Token::OFFERED`] to `settle` first, straight from the completion queue: one it takes
    /// (returns true for) is not written to `out`. Returns how many completions the queue held.
    #[inline(always)]
    fn reap_settling(
        &mut self,
        out: &mut Vec<Completion>,
        mut settle: impl FnMut(Completion) -> bool,
    ) -> u32 {
        let mut rearm = false;
        let found;
        if self.ring.submission().cq_overflow() {
            // Completions wait in the kernel's overflow list: the next enter flushes them.
            self.cq_overflowed += 1;
        }
        {
            let cq = self.ring.completion();
            let dropped = cq.overflow();
            if dropped != self.dropped {
                // Only possible without IORING_FEAT_NODROP (kernels before 5.5) or when the
                // kernel could not allocate an overflow entry: say so loudly.
                tracing::error!(
                    "io_uring dropped {} completion(s): the completion queue overflowed",
                    dropped.wrapping_sub(self.dropped)
                );
                self.dropped = dropped;
            }
            // Written into room reserved beforehand rather than pushed: a push per completion
            // reloads the vector's length and capacity around the (out-of-line) CQE copy. The
            // room never runs short: `cq` yields exactly the `cq.len()` entries it saw when made.
            let start = out.len();
            found = cq.len() as u32;
            self.cq_deepest = self.cq_deepest.max(found);
            out.reserve(cq.len());
            let mut room = out.spare_capacity_mut().iter_mut();
            let room_len = room.len();
            for cqe in cq {
                let u = cqe.user_data();
                // A token below `OFFERED` (a handler's operation, say) is returned as it is,
                // after one compare.
                if u < Token::OFFERED {
                    let c =
                        Completion { token: Token(u), result: cqe.result(), flags: cqe.flags() };
                    if let Some(slot) = room.next() {
                        slot.write(c);
                    }
                // The driver's own completions, `WAKE` and `INTERNAL` (the two largest values,
                // which no operation's token reaches), told apart from the rest by one compare.
                } else if u >= WAKE {
                    if u == WAKE {
                        self.waker.drain();
                        if !cqueue::more(cqe.flags()) {
                            rearm = true;
                        }
                    }
                } else {
                    let c =
                        Completion { token: Token(u), result: cqe.result(), flags: cqe.flags() };
                    if settle(c) {
                        continue;
                    }
                    if let Some(slot) = room.next() {
                        slot.write(c);
                    }
                }
            }
            let written = room_len - room.len();
            // SAFETY: the first `written` elements of the spare capacity were initialized just
            // above (`room` hands them out in order, each once, and each one it handed out was
            // written), within the reserved capacity.
            unsafe { out.set_len(start + written) };
        }
        if rearm {
            self.wake_armed = false;
        }
        found
    }

    fn arm_waker(&mut self) {
        if self.wake_armed {
            return;
        }
        let poll = opcode::PollAdd::new(types::Fd(self.waker.raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(WAKE);
        self.push_entries(&[poll]);
        self.wake_armed = true;
    }

    /// [`Driver::wait`], with the completions reaped from the queue offered to `settle` first
    /// (see [`UringDriver::reap_settling`]); the completions of earlier reaps (the backlog) go
    /// to `out` as they are.
    pub(crate) fn wait_settling(
        &mut self,
        block: bool,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
        settle: impl FnMut(Completion) -> bool,
    ) -> io::Result<()> {
        out.append(&mut self.backlog);
        if block && out.is_empty() {
            // Arming may flush a full submission ring, which reaps completions into the
            // backlog: take them before deciding to block, or the wait would never end.
            self.arm_waker();
            out.append(&mut self.backlog);
        }
        let block = block && out.is_empty() && self.ring.completion().is_empty();
        let ask = if block { self.batch.ask(timeout) } else { Ask { want: 0, cap_us: 0 } };
        loop {
            let res = match (block, timeout) {
                (false, _) => {
                    let sq = self.ring.submission();
                    if sq.is_empty() && !sq.taskrun() && !sq.cq_overflow() {
                        // Nothing to submit and no deferred completion work: the completions
                        // already posted are read without a system call.
                        break;
                    }
                    drop(sq);
                    self.ring.submit()
                }
                (true, _) if ask.want > 1 => {
                    // A batch: `ask.want` completions, or fewer once the cap has passed; the
                    // timer's timeout (longer than the cap, see `WaitBatch::ask`) still ends it.
                    let t = timeout.unwrap_or(BATCH_BACKSTOP);
                    let spec = types::Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                    let args = types::SubmitArgs::new().timespec(&spec).min_wait_usec(ask.cap_us);
                    self.ring.submitter().submit_with_args(ask.want as usize, &args)
                }
                (true, None) => self.ring.submit_and_wait(1),
                (true, Some(t)) => {
                    let spec = types::Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                    let args = types::SubmitArgs::new().timespec(&spec);
                    self.ring.submitter().submit_with_args(1, &args)
                }
            };
            match res {
                Ok(_) => break,
                // The timeout passed, or a signal interrupted the wait: return what there is.
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => break,
                Err(e) => {
                    if !self.absorb(&e) {
                        self.release_specs();
                        return Err(e);
                    }
                    if !self.backlog.is_empty() {
                        // Completions are waiting; submit the rest without blocking.
                        self.flush();
                        break;
                    }
                }
            }
        }
        self.release_specs();
        out.append(&mut self.backlog);
        let found = self.reap_settling(out, settle);
        if block {
            self.batch.observe(ask, found, std::time::Instant::now());
        }
        Ok(())
    }
}

impl Driver for UringDriver {
    #[inline]
    unsafe fn push(&mut self, token: Token, op: OpPtr, deadline: Option<Duration>) {
        // The common case inline: no deadline, and room in the ring.
        if deadline.is_none() {
            let mut sq = self.ring.submission();
            // SAFETY: the caller guarantees `op` is valid, not aliased during this call, and
            // that its memory stays put until the completion is reaped, as the entry needs.
            if unsafe { (*op.0.as_ptr()).push_uring(token.0, squeue::Flags::empty(), &mut sq) }
                .is_ok()
            {
                return;
            }
        }
        // SAFETY: forwarded with the caller's guarantee.
        unsafe { self.push_slow(token, op, deadline) }
    }

    fn cancel(&mut self, token: Token) {
        let entry = opcode::AsyncCancel::new(token.0).build().user_data(Token::INTERNAL.0);
        self.push_entries(&[entry]);
    }

    fn wait(
        &mut self,
        block: bool,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        self.wait_settling(block, timeout, out, |_| false)
    }

    fn notifier(&self) -> Arc<dyn Notifier> {
        self.waker.clone()
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Uring
    }
}
