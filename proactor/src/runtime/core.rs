//! The run loop's engine: owns the driver and the operations, submits, reaps and dispatches.
//!
//! One `Core` per proactor thread, shared through `Rc` by the handles, futures and handlers of that
//! thread. Borrows of its cells are never held across user code: a handler or a task may start new
//! operations from inside a dispatch.

use super::executor::Executor;
use super::memory::OpMemory;
use super::panic::PanicPolicy;
use super::slot::{
    Cancel, Completed, Detach, ErasedOp, Lifecycle, More, MultiPlain, OpKind, Receiver, Slot,
    Stored, Wait, Waiter,
};
use super::stats::InFlight;
use super::table::Table;
use crate::driver::{AnyDriver, Completion, Driver, DriverKind, Notifier, OpPtr, Token, MORE};
use crate::op::Multishot;
use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::VecDeque;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What [`Core::poll_stream`] found.
pub(crate) enum StreamStep<O: Multishot> {
    /// The next item.
    Item(std::io::Result<O::Item>),
    /// Nothing yet; the waker will be woken.
    Pending,
    /// The operation ended with this result: it is out of the table, handed back.
    Ended(i32, MultiPlain<O>),
    /// No such operation (the stream's token is stale).
    Gone,
}

/// The top bit of an operation's generation, so of its token: set when the operation was
/// submitted awaited by a task of this loop, whose completion [`Core::settle_reaped`] may then
/// take as it is reaped (a future polled later with another waker keeps the bit, and is
/// settled in the batch). Generations count in the other 31 bits.
const AWAITED_BY_TASK: u32 = (Token::OFFERED >> 32) as u32;

/// The waiter a slot at `key` recorded as `wait`, with its foreign waker (if any) taken out from
/// beside the table.
#[inline]
fn waiter_of(ops: &mut Table, key: usize, wait: Wait) -> Option<Waiter> {
    let foreign = if wait == Wait::FOREIGN { take_foreign(ops, key) } else { None };
    Waiter::join(wait, foreign)
}

/// [`Table::take_waker`], out of line: foreign wakers are the rare case.
#[cold]
#[inline(never)]
fn take_foreign(ops: &mut Table, key: usize) -> Option<std::task::Waker> {
    ops.take_waker(key)
}

/// What [`Core::io`] holds.
pub(crate) struct Io {
    pub(crate) driver: AnyDriver,
    pub(crate) ops: Table,
}

pub(crate) struct Core {
    /// The driver and the table of the operations it holds, behind one borrow: every
    /// submission touches both (two cells were two borrow flags set and reset per operation).
    pub(crate) io: RefCell<Io>,
    /// Where the operations live while the kernel may touch them.
    pub(crate) memory: OpMemory,
    /// Operations handed to the driver and not yet completed.
    pub(crate) in_flight: Cell<usize>,
    /// The order of admission: queued operations, oldest first, with their deadlines. Only an
    /// order: an entry whose slot is no longer queued (cancelled, dropped) is passed over when
    /// it comes up.
    pub(crate) admission: RefCell<VecDeque<(Token, Option<Duration>)>>,
    pub(crate) max_in_flight: Option<usize>,
    /// Neither an in-flight cap nor latency stats (`max_in_flight` and `latency` are `None`):
    /// the one flag the common paths of submission and dispatch test.
    pub(crate) plain: bool,
    pub(crate) generation: Cell<u32>,
    /// The loop's clock in milliseconds since `epoch`, read once per turn: cheap timestamps
    /// for in-flight tracking (it wraps after 49 days; ages are taken modulo that).
    pub(crate) now_ms: Cell<u32>,
    /// Turns that delivered completions (see `Handle::completion_batches`).
    pub(crate) batches: Cell<u64>,
    pub(crate) epoch: Instant,
    /// Completions to dispatch in the next turn: the driver's batch vector between turns, which
    /// also takes the loop's own (`ECANCELED` for an operation cancelled before admission), so
    /// one path dispatches both.
    pub(crate) completions: RefCell<Vec<Completion>>,
    /// The waker woken last in this turn (see `wake`).
    pub(crate) last_woken: RefCell<Option<std::task::Waker>>,
    pub(crate) executor: Executor,
    pub(crate) panics: PanicPolicy,
    pub(crate) stopped: Cell<bool>,
    pub(crate) shutting_down: Cell<bool>,
    pub(crate) notifier: Arc<dyn Notifier>,
    /// Work posted from other threads (see `remote.rs`).
    pub(crate) remote: super::remote::RemoteSlot,
    pub(crate) fallback_reason: Option<String>,
    /// Submit-to-complete times per kind, when asked for (`Builder::latency_stats`).
    pub(crate) latency: Option<Box<super::latency::Latency>>,
    /// Log a `stats:` line when the proactor is dropped (`PROACTOR_STATS=1`).
    pub(crate) log_stats: bool,
    /// Every sleep of this loop (see `timers.rs`): the earliest bounds each wait.
    pub(crate) timers: RefCell<super::timers::Timers>,
    pub(crate) kind: DriverKind,
}

impl Core {
    /// The table of operations, borrowed mutably.
    #[inline(always)]
    pub(crate) fn ops(&self) -> RefMut<'_, Table> {
        RefMut::map(self.io.borrow_mut(), |io| &mut io.ops)
    }

    /// The table of operations, borrowed.
    pub(crate) fn ops_ref(&self) -> Ref<'_, Table> {
        Ref::map(self.io.borrow(), |io| &io.ops)
    }

    /// The driver, borrowed mutably.
    #[inline(always)]
    pub(crate) fn driver(&self) -> RefMut<'_, AnyDriver> {
        RefMut::map(self.io.borrow_mut(), |io| &mut io.driver)
    }

    /// The driver, borrowed.
    pub(crate) fn driver_ref(&self) -> Ref<'_, AnyDriver> {
        Ref::map(self.io.borrow(), |io| &io.driver)
    }

    /// Stores `op` and hands it to the driver (or to the admission queue past the cap).
    #[inline(always)]
    pub(crate) fn submit<T: Stored>(
        &self,
        op: T,
        deadline: Option<Duration>,
        receiver: Receiver,
    ) -> Token {
        let (op, kind) = (self.memory.store(op), T::KIND);
        let mut generation = self.next_generation();
        if matches!(receiver, Receiver::Future(Waiter::Task(_))) {
            generation |= AWAITED_BY_TASK;
        }
        if !self.plain {
            return self.submit_gated(op, kind, generation, deadline, receiver);
        }
        // The state is known here, at compile time for a handler: the slot is written straight
        // into its table entry (a state picked at run time made it go through the stack).
        let started = self.now_ms.get();
        let (state, foreign) = Lifecycle::in_flight(receiver);
        let mut io = self.io.borrow_mut();
        let key = io.ops.insert_with(|| Slot { op: op.cast(), generation, kind, started, state });
        if foreign.is_some() {
            // The key's place beside the table is empty (its last slot's waker was taken out
            // when that slot stopped recording it): nothing is dropped under the borrow.
            let old = io.ops.replace_waker(key, foreign);
            debug_assert!(old.is_none());
        }
        let token = Token::new(key, generation);
        self.in_flight.set(self.in_flight.get() + 1);
        // SAFETY: as in `push_to_driver`.
        unsafe { io.driver.push(token, OpPtr(op), deadline) };
        token
    }

    /// [`Core::submit`] with an in-flight cap or latency stats: past the cap, or behind others
    /// already waiting, the operation is queued (operations are admitted in order); otherwise
    /// it is stored and handed to the driver with its start recorded.
    #[cold]
    #[inline(never)]
    fn submit_gated(
        &self,
        op: NonNull<dyn ErasedOp>,
        kind: &'static OpKind,
        generation: u32,
        deadline: Option<Duration>,
        receiver: Receiver,
    ) -> Token {
        let admitted = self
            .max_in_flight
            .is_none_or(|cap| self.in_flight.get() < cap && self.admission.borrow().is_empty());
        if !admitted {
            return self.queue(op, kind, generation, deadline, receiver);
        }
        let (state, foreign) = Lifecycle::in_flight(receiver);
        let slot = Slot { op: op.cast(), generation, kind, started: self.now_ms.get(), state };
        let token = self.insert(slot, foreign);
        self.push_to_driver(token, op, deadline);
        token
    }

    /// Stores `slot`, and `foreign` (its waiter's waker, if not a task of this loop) beside it.
    fn insert(&self, slot: Slot, foreign: Option<std::task::Waker>) -> Token {
        let generation = slot.generation;
        let mut ops = self.ops();
        let key = ops.insert(slot);
        let old = ops.replace_waker(key, foreign);
        drop(ops);
        // A key's place beside the table is emptied whenever its slot stops recording a
        // foreign waker: nothing was there.
        debug_assert!(old.is_none());
        drop(old);
        Token::new(key, generation)
    }

    /// The generation of the next stored operation (tokens of reused keys never match), with
    /// the [`AWAITED_BY_TASK`] bit clear.
    #[inline(always)]
    fn next_generation(&self) -> u32 {
        let generation = self.generation.get().wrapping_add(1) & !AWAITED_BY_TASK;
        self.generation.set(generation);
        generation
    }

    /// Stores a multishot operation and hands it to the driver. It is admitted at once, past
    /// any in-flight cap: it is one request however many items it yields, and a stream held
    /// back behind one-shot operations would hold back everything it feeds.
    pub(crate) fn submit_multi<T: Stored>(&self, op: T, receiver: Receiver) -> Token {
        let (op, kind) = (self.memory.store(op), T::KIND);
        let generation = self.next_generation();
        let started = self.now_ms.get();
        let (state, foreign) = Lifecycle::streaming(receiver);
        let token = self.insert(Slot { op: op.cast(), generation, kind, started, state }, foreign);
        self.push_to_driver(token, op, None);
        token
    }

    /// Stores an operation this proactor will not run (a multishot operation handed to
    /// `submit`/`start`) as cancelled before admission: the loop's next turn completes it
    /// with `-errno`, through the path every completion takes.
    #[cold]
    pub(crate) fn refuse<T: Stored>(&self, op: T, receiver: Receiver, errno: i32) -> Token {
        let (op, kind) = (self.memory.store(op), T::KIND);
        let generation = self.next_generation();
        let (state, foreign) = match receiver {
            Receiver::Future(w) => {
                let (wait, foreign) = w.split();
                (Lifecycle::Cancelled(wait), foreign)
            }
            Receiver::Handler | Receiver::TimedHandler => (Lifecycle::CancelledHandler, None),
        };
        let slot = Slot { op: op.cast(), generation, kind, started: self.now_ms.get(), state };
        let token = self.insert(slot, foreign);
        self.completions.borrow_mut().push(Completion { token, result: -errno, flags: 0 });
        token
    }

    /// The next step of a multishot operation's stream: an item queued in its block, nothing
    /// yet (the waker is registered), or its end — then the slot leaves the table and the
    /// operation comes back with its last result.
    pub(crate) fn poll_stream<O: Multishot>(
        &self,
        token: Token,
        waker: &std::task::Waker,
    ) -> StreamStep<O> {
        let key = token.key();
        {
            let mut ops = self.ops();
            let Some(slot) = ops.get_mut(key).filter(|s| s.generation == token.generation()) else {
                return StreamStep::Gone;
            };
            let carrier = slot.op.cast::<MultiPlain<O>>().as_ptr();
            // SAFETY: the block holds the `MultiPlain<O>` this stream submitted under `token`
            // (a reused key carries another generation). The driver touches only the
            // operation inside it, never the queue, and not during this call.
            if let Some(item) = unsafe { (*carrier).queue.pop_front() } {
                return StreamStep::Item(item);
            }
            match slot.state.poll() {
                Ok(res) => {
                    let Some(slot) = ops.remove(key) else { return StreamStep::Gone };
                    drop(ops);
                    // SAFETY: completed and out of the table: no driver holds it; the block
                    // holds a live `MultiPlain<O>` (above).
                    let carrier = unsafe { self.memory.take::<MultiPlain<O>>(slot.op.cast()) };
                    return StreamStep::Ended(res, carrier);
                }
                Err(Some(w)) if !self.is_waiter(&ops, key, w, waker) => {}
                Err(_) => return StreamStep::Pending,
            }
        }
        self.rewait(token, waker);
        StreamStep::Pending
    }

    /// How many items of a multishot operation's stream wait in its block.
    pub(crate) fn stream_queued<O: Multishot>(&self, token: Token) -> usize {
        let ops = self.ops_ref();
        match ops.get(token.key()) {
            Some(slot) if slot.generation == token.generation() => {
                let carrier = slot.op.cast::<MultiPlain<O>>().as_ptr();
                // SAFETY: as in `poll_stream`: the block holds this stream's `MultiPlain<O>`,
                // and the driver never touches its queue.
                unsafe { (*carrier).queue.len() }
            }
            _ => 0,
        }
    }

    /// [`Core::submit`] past the in-flight cap: the operation waits for admission.
    #[cold]
    #[inline(never)]
    fn queue(
        &self,
        op: NonNull<dyn ErasedOp>,
        kind: &'static OpKind,
        generation: u32,
        deadline: Option<Duration>,
        receiver: Receiver,
    ) -> Token {
        let (state, foreign) = Lifecycle::queued(receiver);
        let slot = Slot { op: op.cast(), generation, kind, started: self.now_ms.get(), state };
        let token = self.insert(slot, foreign);
        self.admission.borrow_mut().push_back((token, deadline));
        token
    }

    /// Hands a stored operation to the driver; its slot is already in flight.
    #[inline(always)]
    fn push_to_driver(&self, token: Token, op: NonNull<dyn ErasedOp>, deadline: Option<Duration>) {
        self.in_flight.set(self.in_flight.get() + 1);
        if let Some(latency) = &self.latency {
            latency.start(token.key());
        }
        // SAFETY: the operation stays in its `OpMemory` block at `op` (never moved) until its
        // completion is processed in `settle`: a slot the driver holds (`in_driver`) is only
        // released there, or leaked at shutdown.
        unsafe { self.driver().push(token, OpPtr(op), deadline) };
    }

    /// Admits queued operations, in order, while there is room under the cap.
    fn admit(&self) {
        while self.max_in_flight.is_none_or(|cap| self.in_flight.get() < cap) {
            let Some((token, deadline)) = self.admission.borrow_mut().pop_front() else { break };
            let op = {
                let mut ops = self.ops();
                let Some(slot) = ops.get_mut(token.key()) else { continue };
                // A slot cancelled, dropped or reused while the entry waited is passed over.
                if slot.generation != token.generation() || !slot.state.admit() {
                    continue;
                }
                slot.started = self.now_ms.get();
                slot.erased()
            };
            self.push_to_driver(token, op, deadline);
        }
    }

    /// Asks for early completion of the operation. An operation still waiting for admission
    /// leaves the queue without ever reaching the kernel and completes with `ECANCELED` in the
    /// next turn — not inside this call, so a handler never runs re-entrantly from `cancel`.
    pub(crate) fn cancel(&self, token: Token) {
        let action = match self.ops().get_mut(token.key()) {
            Some(slot) if slot.generation == token.generation() => slot.state.cancel(),
            _ => return,
        };
        match action {
            Cancel::AskDriver => self.driver().cancel(token),
            Cancel::DeliverNextTurn => self.completions.borrow_mut().push(Completion {
                token,
                result: -libc::ECANCELED,
                flags: 0,
            }),
            Cancel::Nothing => {}
        }
    }

    /// A future gave up on its operation. If the driver may still touch the memory, the block
    /// is parked and a cancel is sent; otherwise it is freed now (closing any fd in the output).
    pub(crate) fn detach(&self, token: Token) {
        let key = token.key();
        let (action, foreign) = {
            let mut ops = self.ops();
            let action = match ops.get_mut(key) {
                Some(slot) if slot.generation == token.generation() => slot.state.detach(),
                _ => return,
            };
            // The slot no longer records a waiter (parked), or leaves (freed): its foreign
            // waker, if it had one, goes too — dropped below, outside the borrow.
            let foreign = match action {
                Detach::Park | Detach::Free(_) => ops.take_waker(key),
                Detach::Nothing => None,
            };
            (action, foreign)
        };
        drop(foreign);
        match action {
            Detach::Park => self.driver().cancel(token),
            Detach::Free(res) => {
                let Some(slot) = self.ops().remove(key) else { return };
                // SAFETY: removed from the table, and not held by the driver (`detach` frees
                // only a completed or never-submitted operation).
                unsafe { self.consume(slot.op, slot.kind, res, false) };
            }
            Detach::Nothing => {}
        }
    }

    /// Takes the output of a completed operation for its future, or registers the waker: the
    /// result and the operation's block (a thin pointer, which the caller reads as the type it
    /// submitted), out of the table.
    #[inline]
    pub(crate) fn poll_result(
        &self,
        token: Token,
        waker: &std::task::Waker,
    ) -> Option<(i32, NonNull<u8>)> {
        let key = token.key();
        {
            let mut ops = self.ops();
            let mut entry = ops.occupied(key, token.generation())?;
            match entry.slot().state.poll() {
                Ok(res) => return Some((res, entry.remove().op)),
                Err(Some(w)) if !self.is_waiter(&ops, key, w, waker) => {}
                Err(_) => return None,
            }
        }
        self.rewait(token, waker);
        None
    }

    /// False if the operation under `token` has completed, is still in the table, and is not
    /// a `T` (a debug check of what a future is about to take back).
    pub(crate) fn holds<T: 'static>(&self, token: Token) -> bool {
        match self.ops_ref().get(token.key()) {
            Some(slot)
                if slot.generation == token.generation()
                    && matches!(slot.state, Lifecycle::Done(_)) =>
            {
                // SAFETY: a slot in the table holds a live value (moved out only on removal);
                // completed, it is touched by neither the driver nor the kernel any more, and
                // by nothing else while the table is borrowed.
                unsafe { slot.erased().as_ref() }.as_any().is::<T>()
            }
            _ => true,
        }
    }

    /// Records a new waiter for a future polled with another waker than before. Cloning the new
    /// waker and dropping the old one may run a foreign waker's code, so neither happens while
    /// the table is borrowed.
    #[cold]
    fn rewait(&self, token: Token, waker: &std::task::Waker) {
        let (wait, mut foreign) = self.executor.waiter(waker).split();
        {
            let mut ops = self.ops();
            let key = token.key();
            let recorded = match ops.get_mut(key) {
                Some(slot) if slot.generation == token.generation() => {
                    slot.state.waiter_mut().map(|w| *w = wait).is_some()
                }
                _ => false,
            };
            if recorded {
                // The old foreign waker (if any) comes out, to be dropped below.
                foreign = ops.replace_waker(key, foreign);
            }
        }
        drop(foreign);
    }

    /// True if the waiter a slot records as `wait` already stands for `waker` (a future polled
    /// again by the same task).
    #[inline]
    fn is_waiter(&self, ops: &Table, key: usize, wait: Wait, waker: &std::task::Waker) -> bool {
        if wait == Wait::FOREIGN {
            ops.waker(key).is_some_and(|w| w.will_wake(waker))
        } else {
            wait != Wait::NOBODY && self.executor.is_waiter(&Waiter::Task(wait.key()), waker)
        }
    }

    /// Wakes the task awaiting a completion, once per turn: no task runs while the turn
    /// delivers completions, so waking the same task again (a task awaiting many operations)
    /// would only repeat the first wake.
    #[inline(always)]
    pub(super) fn wake(&self, waiter: Waiter) {
        match waiter {
            Waiter::Task(key) => self.executor.wake_task(key),
            Waiter::Waker(w) => self.wake_foreign(w),
        }
    }

    /// [`Core::wake`] for a waker not made by this loop's executor.
    #[inline(never)]
    fn wake_foreign(&self, waker: std::task::Waker) {
        if self.last_woken.borrow().as_ref().is_some_and(|l| l.will_wake(&waker)) {
            return;
        }
        waker.wake_by_ref();
        // The previous waker is dropped outside the borrow: a foreign waker's drop is user code.
        drop(self.last_woken.replace(Some(waker)));
    }

    /// Hands the output of a removed slot to its handler, or drops it (detached, shutdown).
    #[inline]
    fn deliver(&self, op: NonNull<u8>, kind: &'static OpKind, res: i32) {
        let run_handler = !self.shutting_down.get();
        // SAFETY: the slot is out of the table and its completion has arrived (or it was never
        // submitted): no driver holds the pointer any more.
        unsafe { self.consume(op, kind, res, run_handler) };
    }

    /// Runs the handler of the operation at `op` (or, without `run_handler`, drops its output)
    /// and recycles its memory.
    ///
    /// # Safety
    /// `op` must be out of the table, no driver may hold it, and its value must be live.
    /// `kind` must be the [`OpKind`] of the value's type.
    unsafe fn consume(&self, op: NonNull<u8>, kind: &OpKind, res: i32, run_handler: bool) {
        let finish = kind.finish;
        self.guard_user_code(kind.name, || {
            // SAFETY: the only reference to a live value stored by `memory.store`; the finisher
            // moves it out and releases the block, even if a handler unwinds.
            unsafe { finish(op, res, &self.memory, run_handler) }
        });
    }

    /// One completion — from the driver, or the loop's own for an operation cancelled before
    /// admission — checked against its slot (a stale token is ignored) and dispatched as the
    /// slot's [`Lifecycle::complete`] decides: recorded for the awaiting future, whose task is
    /// woken, or delivered to its handler (dropped, if its future is gone).
    #[inline(always)]
    fn settle(&self, c: Completion) {
        if self.latency.is_some() {
            self.time_completion(c);
        }
        drop(self.settle_in(self.ops(), c));
    }

    /// [`Core::settle`] with the table already borrowed (`ops`). The borrow is handed back
    /// when no user code ran and none is to run (a stale completion, a future's result whose
    /// task is woken by key); otherwise it is released before any user code (a handler, a
    /// foreign waker, an operation's flags hook) and `None` is returned.
    #[inline(always)]
    fn settle_in<'a>(
        &'a self,
        mut ops: RefMut<'a, Table>,
        c: Completion,
    ) -> Option<RefMut<'a, Table>> {
        if c.flags & MORE != 0 {
            drop(ops);
            self.settle_more(c);
            return None;
        }
        let Some(mut entry) = ops.occupied(c.token.key(), c.token.generation()) else {
            return Some(ops);
        };
        let slot = entry.slot();
        // The common completion, tried first: only its task's key is read out of the slot.
        if let Some(task) = slot.state.complete_for_task(c.result, c.flags) {
            // Given back by the driver, with no flags to hand to the operation.
            self.in_flight.set(self.in_flight.get() - 1);
            self.executor.wake_task(task);
            return Some(ops);
        }
        match slot.state.complete(c.result) {
            Completed::Deliver => {
                let (op, kind) = (slot.op, slot.kind);
                entry.vacate();
                drop(ops);
                self.count_out(op, kind, c.result, c.flags);
                self.deliver(op, kind, c.result);
                None
            }
            Completed::Wake(wait) => {
                let (op, kind) = (slot.op, slot.kind);
                let waiter = waiter_of(&mut ops, c.token.key(), wait);
                drop(ops);
                self.count_out(op, kind, c.result, c.flags);
                if let Some(w) = waiter {
                    self.wake(w);
                }
                None
            }
            Completed::DeliverCancelled => {
                let (op, kind) = (slot.op, slot.kind);
                entry.vacate();
                drop(ops);
                self.deliver(op, kind, c.result);
                None
            }
            Completed::DeliverAs(res) => {
                let (op, kind) = (slot.op, slot.kind);
                entry.vacate();
                drop(ops);
                self.count_out(op, kind, c.result, c.flags);
                self.deliver(op, kind, res);
                None
            }
            Completed::WakeCancelled(wait) => {
                let waiter = waiter_of(&mut ops, c.token.key(), wait);
                drop(ops);
                if let Some(w) = waiter {
                    self.wake(w);
                }
                None
            }
            Completed::Stale => Some(ops),
        }
    }

    /// Dispatches a turn's completions when there are no latency stats and no in-flight cap
    /// (nothing to record or admit per completion), with the table borrowed once for each run
    /// of completions that run no user code — above all a future's result recorded and its
    /// task (of this loop) woken. Borrowing per completion, with the two checks per completion,
    /// was 59 user-side instructions per NOP future's completion in the turn; this is 38
    /// (callgrind, `benches/nop_ir.sh`).
    #[inline(never)]
    fn settle_batch(&self, batch: &mut Vec<Completion>) {
        let mut completions = batch.iter();
        'runs: loop {
            let mut ops = self.ops();
            for &c in completions.by_ref() {
                match self.settle_in(ops, c) {
                    Some(still) => ops = still,
                    // Released to run user code: borrowed again for the next run.
                    None => continue 'runs,
                }
            }
            break;
        }
        batch.clear();
    }

    /// The commonest completion, taken as the driver reaps it when there are no latency stats
    /// and no in-flight cap: a future's result, without flags, for a task of this loop —
    /// recorded and the task woken. That runs no user code (the table stays borrowed across
    /// the reap) and touches no other operation, so taking it ahead of the batch's others
    /// changes nothing any of them sees (the task runs after the turn, as before). False,
    /// unchanged, for any other completion, which then goes through `settle_batch` in the
    /// batch's order; one without [`AWAITED_BY_TASK`] in its token (a handler's) is not even
    /// offered. Written into the batch and read back, a NOP future's round trip cost 254.8
    /// user instructions; taken here, 245.7, a handler's one compare more in the reap
    /// (callgrind, `benches/nop_ir.sh`) — and the batch, 16 bytes per completion, is one array
    /// less to keep in cache.
    #[inline(always)]
    fn settle_reaped(&self, ops: &mut Table, c: Completion) -> bool {
        if c.flags != 0 || c.token.generation() & AWAITED_BY_TASK == 0 {
            return false;
        }
        let Some(mut entry) = ops.occupied(c.token.key(), c.token.generation()) else {
            return false;
        };
        let Some(task) = entry.slot().state.complete_for_task(c.result, 0) else { return false };
        // Given back by the driver.
        self.in_flight.set(self.in_flight.get() - 1);
        self.executor.wake_task(task);
        true
    }

    /// One completion flagged `MORE`: an item of a multishot operation, which stays in flight.
    /// The item is made from the completion at once (a buffer id, a descriptor), then queued
    /// for its stream, handed to its handler, or dropped if nobody takes it.
    #[cold]
    #[inline(never)]
    fn settle_more(&self, c: Completion) {
        let (op, kind, more, waiter) = {
            let mut ops = self.ops();
            let Some(slot) = ops.get_mut(c.token.key()) else { return };
            if slot.generation != c.token.generation() {
                return;
            }
            if slot.kind.item.is_none() {
                // A one-shot operation that completes twice (a zero-copy send): the first is
                // kept in the operation, which stays in flight until the second.
                if slot.state.in_driver() {
                    let op = slot.erased();
                    drop(ops);
                    // SAFETY: in flight, so the block is live; no reference to it is live (the
                    // table's borrow just ended) and the driver does not touch it now.
                    unsafe { (*op.as_ptr()).first_of_two(c.result, c.flags) };
                }
                return;
            }
            let (op, kind, more) = (slot.op, slot.kind, slot.state.more());
            // A foreign waker to wake comes out from beside the table (see `Lifecycle::more`).
            let waiter = match more {
                More::Queue(Some(wait)) => Waiter::join(wait, ops.take_waker(c.token.key())),
                _ => None,
            };
            (op, kind, more, waiter)
        };
        let Some(item) = kind.item else { return };
        let block = op;
        match more {
            More::Queue(_) => {
                // SAFETY: the block holds the carrier `kind` belongs to, and no reference to it
                // is live (the table is not borrowed).
                if unsafe { item(block, c.result, c.flags, true) } {
                    // The stream's queue is full: pause the operation until it is taken.
                    self.driver().cancel(c.token);
                }
                if let Some(w) = waiter {
                    self.wake(w);
                }
            }
            More::Handler => {
                let run = !self.shutting_down.get();
                self.guard_user_code(kind.name, || {
                    // SAFETY: as above; the handler may start, cancel or drop other
                    // operations, but this one stays in the table until its last completion.
                    unsafe { item(block, c.result, c.flags, run) };
                });
            }
            More::Drop => {
                self.guard_user_code(kind.name, || {
                    // SAFETY: as above.
                    unsafe { item(block, c.result, c.flags, false) };
                });
            }
            More::Stale => {}
        }
    }

    /// Counts an operation the driver has given back out of the operations in flight, and
    /// hands it the completion's flags (with the kernel's result).
    #[inline(always)]
    fn count_out(&self, op: NonNull<u8>, kind: &OpKind, res: i32, flags: u32) {
        self.in_flight.set(self.in_flight.get() - 1);
        if flags != 0 {
            let op = (kind.erased)(op);
            // SAFETY: the driver has returned this operation's completion, so neither it nor
            // the kernel touches the block any more, and no other reference to it is live (the
            // table is not borrowed); its output is made only after this.
            unsafe { (*op.as_ptr()).set_cqe_flags(res, flags) };
        }
    }

    /// Runs user code (a handler, a buffer's destructor) so that a panic does not unwind
    /// through the run loop.
    pub(crate) fn guard_user_code(&self, what: &str, f: impl FnOnce()) {
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            self.panics.report("completion handler", what, payload);
        }
    }

    /// Records how long the operation of `c` took (latency stats are on).
    #[cold]
    fn time_completion(&self, c: Completion) {
        let Some(latency) = &self.latency else { return };
        let name = match self.ops_ref().get(c.token.key()) {
            Some(slot) if slot.generation == c.token.generation() => slot.kind.name,
            _ => return,
        };
        latency.complete(c.token.key(), name, c.flags & MORE != 0);
    }

    /// One turn: submit what is queued, wait if asked, dispatch every completion.
    pub(crate) fn turn(&self, block: bool, timeout: Option<Duration>) -> io::Result<()> {
        let mut batch = std::mem::take(&mut *self.completions.borrow_mut());
        let timeout = self.wait_timeout(timeout);
        // Completions already at hand (the loop's own), or a timer due, are dispatched without
        // blocking.
        let block =
            block && batch.is_empty() && timeout != Some(Duration::ZERO) && self.executor.park();
        let plain = self.plain;
        // Each completion `settle_reaped` takes counts one operation out.
        let in_flight = self.in_flight.get();
        let res = if plain {
            // A future's result for a task of this loop is recorded straight from the
            // completion queue (see `settle_reaped`); the rest come back in `batch`.
            let mut io = self.io.borrow_mut();
            let Io { driver, ops } = &mut *io;
            driver.wait_settling(block, timeout, &mut batch, |c| self.settle_reaped(ops, c))
        } else {
            self.driver().wait(block, timeout, &mut batch)
        };
        self.executor.unpark();
        let now = Instant::now();
        self.now_ms.set(self.millis(now));
        if let Some(latency) = &self.latency {
            latency.tick(now);
        }
        if self.in_flight.get() != in_flight || !batch.is_empty() {
            self.batches.set(self.batches.get() + 1);
        }
        if plain {
            self.settle_batch(&mut batch);
        } else {
            for c in batch.drain(..) {
                self.settle(c);
                if self.max_in_flight.is_some() {
                    self.admit();
                }
            }
        }
        self.fire_timers(now);
        drop(self.last_woken.take());
        self.executor.end_wakes();
        // Give the vector back for the next batch, keeping what was queued during this turn
        // (a cancel from a handler or a task).
        let mut next = self.completions.borrow_mut();
        let queued = std::mem::replace(&mut *next, batch);
        next.extend(queued);
        drop(next);
        self.drain_remote();
        res
    }

    /// `t` on the loop's millisecond clock.
    fn millis(&self, t: Instant) -> u32 {
        // Truncation intended: the clock wraps, and ages are differences modulo 2^32 ms.
        t.saturating_duration_since(self.epoch).as_millis() as u32
    }

    /// What is in flight now.
    pub(crate) fn in_flight(&self) -> InFlight {
        InFlight::collect(&self.ops_ref(), self.millis(Instant::now()))
    }

    /// True when no operation is queued, in flight, or completed and unclaimed.
    pub(crate) fn idle(&self) -> bool {
        self.ops_ref().is_empty()
    }

    /// Cancels everything and waits (up to `grace`) for the kernel to give every buffer back.
    /// Operations still in flight after that are leaked, never freed.
    pub(crate) fn shutdown(&self, grace: Duration) {
        self.shutting_down.set(true);
        self.executor.clear(self);
        let tokens: Vec<Token> = {
            let ops = self.ops_ref();
            ops.iter().filter(|(_, s)| s.state.in_driver()).map(|(k, s)| s.token(k)).collect()
        };
        for t in tokens {
            self.driver().cancel(t);
        }
        // Never-submitted operations can go now.
        let queued: Vec<Token> = self.admission.borrow_mut().drain(..).map(|(t, _)| t).collect();
        for token in queued {
            let (slot, foreign) = {
                let mut ops = self.ops();
                match ops.get(token.key()) {
                    Some(s) if s.generation == token.generation() && s.state.is_queued() => {}
                    _ => continue,
                }
                (ops.remove(token.key()), ops.take_waker(token.key()))
            };
            drop(foreign);
            let Some(slot) = slot else { continue };
            // SAFETY: removed from the table and never submitted: no driver holds the pointer.
            unsafe { self.consume(slot.op, slot.kind, -libc::ECANCELED, false) };
        }
        let deadline = Instant::now() + grace;
        while self.in_flight.get() > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Err(e) = self.turn(true, Some(deadline - now)) {
                tracing::error!("proactor shutdown: driver failed: {e}");
                break;
            }
        }
        // Take the slots out first: dropping an output runs user code (a buffer's or a
        // handler's destructor), which must not find the slab borrowed.
        let (slots, wakers) = self.ops().drain();
        drop(wakers);
        let mut leaked = 0;
        for slot in slots {
            match slot.state.result_at_shutdown() {
                // SAFETY: out of the table, and completed or never submitted: no driver holds
                // the pointer.
                Some(res) => unsafe { self.consume(slot.op, slot.kind, res, false) },
                // Still owned by the kernel: leak rather than free memory it may write.
                None => leaked += 1,
            }
        }
        if leaked > 0 {
            tracing::error!("proactor shutdown: {leaked} operation(s) did not complete within {grace:?}; their buffers are leaked, not freed");
        }
    }
}
