//! A `loom` model of the cross-thread wake hand-shake: no wake from another thread is lost,
//! in any interleaving of the waker's thread with the loop's park, wait, unpark and drain.
//!
//! The code under test is the executor's own (`TaskWaker::wake_by_ref`, `park`, `unpark`,
//! `has_ready`, `take_ready`, `start_poll`, the main future's flag). Only the driver's wait is
//! a stand-in: a notification flag behind a condition variable, which blocks the loop until a
//! waker notifies it, as the ring or epoll blocks until the eventfd is written. A lost wake-up
//! leaves the loop blocked with the other thread finished, which `loom` reports as a deadlock;
//! a wake whose data the next poll does not see fails the loop's exit condition the same way.
//!
//! Run with `RUSTFLAGS="--cfg proactor_loom" cargo test -p proactor --release --lib loom`
//! (`LOOM_MAX_PREEMPTIONS` bounds the search; 3 unless set, which takes well under a second;
//! the unbounded search passes too, in about a minute).

use super::{Executor, JoinMark};
use crate::driver::Notifier;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Condvar, Mutex};
use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

/// The driver's wait: blocks until notified; any wait consumes the notification (the harsher
/// choice: a notification left over would hide a lost one).
struct WaitStandIn {
    notified: Mutex<bool>,
    wakeup: Condvar,
}

impl WaitStandIn {
    fn new() -> Arc<Self> {
        Arc::new(WaitStandIn { notified: Mutex::new(false), wakeup: Condvar::new() })
    }

    fn wait(&self, block: bool) {
        let mut notified = self.notified.lock().unwrap();
        while block && !*notified {
            notified = self.wakeup.wait(notified).unwrap();
        }
        *notified = false;
    }
}

impl Notifier for WaitStandIn {
    fn notify(&self) {
        *self.notified.lock().unwrap() = true;
        self.wakeup.notify_one();
    }
}

struct NoJoin;

impl JoinMark for NoJoin {
    fn mark_panicked(&self) {}
    fn is_aborted(&self) -> bool {
        false
    }
}

/// The driver half of `Core::turn`: park before the wait, unpark after it.
fn turn(exec: &Executor, wait: &WaitStandIn, block: bool) {
    let block = block && exec.park();
    wait.wait(block);
    exec.unpark();
}

/// `Executor::run_round` without the panic reporting that needs a whole `Core`: polls every
/// woken task once, through the executor's own `take_ready` and `start_poll`.
fn run_round(exec: &Executor) {
    let mut round = Vec::new();
    exec.take_ready(&mut round);
    for key in round.into_iter().filter(|&key| key != super::MAIN) {
        let Some((mut future, waker, _aborted)) = exec.start_poll(key) else { continue };
        if exec.poll_as(key, &waker, |cx| future.as_mut().poll(cx)).is_pending() {
            let mut tasks = exec.tasks.borrow_mut();
            tasks[key].future = Some(future);
            tasks[key].poll_waker = Some(waker);
        }
    }
}

/// Spawns a task that records, each time it is polled, how many messages it has seen; the
/// first round polls it once. Returns its key and its waker.
fn spawn_counter(
    exec: &Executor,
    sent: &Arc<AtomicUsize>,
    seen: &Rc<Cell<usize>>,
) -> (usize, Waker) {
    let (sent, seen) = (sent.clone(), seen.clone());
    let _ = exec.spawn(
        poll_fn(move |_| {
            seen.set(sent.load(Ordering::Acquire));
            Poll::<()>::Pending
        }),
        Rc::new(NoJoin),
    );
    let key = exec.tasks.borrow().len() - 1;
    (key, Waker::from(exec.tasks.borrow()[key].waker.clone()))
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(3));
    builder.check(f);
}

/// Another thread sends two messages to a task, waking it after each; the loop polls, parks,
/// waits and drains until the task has seen both. A wake between the loop's last check and its
/// wait, or one swallowed because the task was still marked scheduled, would block it forever.
#[test]
fn loom_remote_wakes_reach_a_parked_loop() {
    model(|| {
        let wait = WaitStandIn::new();
        let exec = Executor::new(wait.clone());
        let sent = Arc::new(AtomicUsize::new(0));
        let seen = Rc::new(Cell::new(0));
        let (_, waker) = spawn_counter(&exec, &sent, &seen);
        run_round(&exec);

        let sender = sent.clone();
        let remote = loom::thread::spawn(move || {
            for _ in 0..2 {
                sender.fetch_add(1, Ordering::Release);
                waker.wake_by_ref();
            }
        });
        while seen.get() < 2 {
            let block = !exec.has_ready();
            turn(&exec, &wait, block);
            run_round(&exec);
        }
        remote.join().unwrap();
    });
}

/// The `block_on` future's waker, woken from another thread: its flag and the queue bring the
/// loop out of its wait (the shape of `Handle::block_on`'s loop).
#[test]
fn loom_remote_wake_of_the_main_future() {
    model(|| {
        let wait = WaitStandIn::new();
        let exec = Executor::new(wait.clone());
        let sent = Arc::new(AtomicUsize::new(0));
        let main = exec.main_waker();
        exec.set_main_scheduled();

        let sender = sent.clone();
        let remote = loom::thread::spawn(move || {
            sender.fetch_add(1, Ordering::Release);
            main.wake();
        });
        loop {
            if exec.take_main_wake() && sent.load(Ordering::Acquire) == 1 {
                break;
            }
            run_round(&exec);
            let block = !exec.has_ready() && !exec.main_scheduled();
            turn(&exec, &wait, block);
        }
        remote.join().unwrap();
    });
}

/// Both ready lists at once: the loop wakes one task itself (a completion delivered after its
/// wait goes to the local list) while another thread wakes a second task through the queue.
#[test]
fn loom_local_and_remote_wakes_together() {
    model(|| {
        let wait = WaitStandIn::new();
        let exec = Executor::new(wait.clone());
        let (local_sent, remote_sent) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (local_seen, remote_seen) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let (local_key, _) = spawn_counter(&exec, &local_sent, &local_seen);
        let (_, remote_waker) = spawn_counter(&exec, &remote_sent, &remote_seen);
        run_round(&exec);

        let sender = remote_sent.clone();
        let remote = loom::thread::spawn(move || {
            sender.fetch_add(1, Ordering::Release);
            remote_waker.wake();
        });
        let mut delivered = false;
        while local_seen.get() < 1 || remote_seen.get() < 1 {
            let block = !exec.has_ready() && delivered;
            turn(&exec, &wait, block);
            if !delivered {
                // The turn's completion for the local task, as `Core::complete` delivers it.
                local_sent.fetch_add(1, Ordering::Release);
                exec.wake_task(local_key);
                exec.end_wakes();
                delivered = true;
            }
            run_round(&exec);
        }
        remote.join().unwrap();
    });
}
