//! Coarse receive timeouts for connections: one sweep task per thread instead of a kernel timer
//! per receive.
//!
//! A deadline on an operation (`Op::deadline`) costs a linked timeout on io_uring (an extra
//! submission entry, an hrtimer armed and cancelled, a completion) and a heap entry on epoll —
//! for every request, though almost none ever times out. Here a connection only writes its
//! deadline and the receive's cancel token into its [`Watchdog`]; a sweep task wakes every
//! `tick` and cancels the receives whose deadline has passed, which then complete with
//! `ECANCELED` exactly as a linked timeout would make them. A timeout fires between its deadline
//! and one tick later; the tick is a fraction of the shortest timeout (see [`tick_for`]).
//!
//! A wait that is not one operation (the next chunk of a multishot receive stream) is armed
//! with [`Watchdog::arm_wait`] instead: the sweep then completes [`Watchdog::expired`], which
//! the connection races against its wait.
//!
//! The sweep also ends idle waits when the server stops: it alone waits on the stop event and
//! then cancels every receive armed as idle, so a connection does not register a waiter on the
//! event for each request.

use crate::server::{race, Event};
use proactor::CancelToken;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// The sweep period for timeouts of at least `shortest`: an eighth of it, between 5 ms and
/// 250 ms (so a 10 s header timeout fires within 10.25 s).
pub fn tick_for(shortest: Duration) -> Duration {
    (shortest / 8).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

/// One connection's receive deadline, swept by its thread's sweep task while it exists.
pub struct Watchdog {
    clock: Rc<Clock>,
    key: usize,
}

#[derive(Default)]
struct Clock {
    deadline: Cell<Option<Instant>>,
    /// Waiting for the next request (not inside one): the server's stop ends the wait too.
    idle: Cell<bool>,
    token: RefCell<Option<CancelToken>>,
    /// Set by the sweep when a wait armed with `arm_wait` is due; its waiter is woken.
    fired: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

/// The connections of one thread and whether their sweep task runs.
#[derive(Default)]
struct Sweep {
    clocks: RefCell<Vec<Option<Rc<Clock>>>>,
    /// The empty places in `clocks`.
    free: RefCell<Vec<usize>>,
    running: Cell<bool>,
    tick: Cell<Option<Duration>>,
    /// The server's stop event.
    stop: RefCell<Option<Event>>,
}

impl Sweep {
    /// Connections registered.
    fn live(&self) -> usize {
        self.clocks.borrow().len() - self.free.borrow().len()
    }
}

thread_local! {
    static SWEEP: Rc<Sweep> = Rc::default();
}

impl Watchdog {
    /// Registers a connection on this thread's sweep (started if it is not running), which then
    /// wakes at least every `tick` and when `stop` is set. Must be called on a running proactor.
    pub fn new(tick: Duration, stop: &Event) -> Watchdog {
        let clock = Rc::new(Clock::default());
        let key = SWEEP.with(|s| {
            let key = match s.free.borrow_mut().pop() {
                Some(k) => {
                    s.clocks.borrow_mut()[k] = Some(clock.clone());
                    k
                }
                None => {
                    let mut clocks = s.clocks.borrow_mut();
                    clocks.push(Some(clock.clone()));
                    clocks.len() - 1
                }
            };
            s.tick.set(Some(s.tick.get().map_or(tick, |t| t.min(tick))));
            s.stop.borrow_mut().get_or_insert_with(|| stop.clone());
            if !s.running.replace(true) {
                drop(proactor::spawn(sweep(s.clone())));
            }
            key
        });
        Watchdog { clock, key }
    }

    /// Cancels the receive behind `token` if it is still running at `deadline` — or, if `idle`,
    /// when the server stops.
    pub fn arm(&self, deadline: Instant, idle: bool, token: CancelToken) {
        self.clock.deadline.set(Some(deadline));
        self.clock.idle.set(idle);
        self.clock.fired.set(false);
        *self.clock.token.borrow_mut() = Some(token);
    }

    /// Like [`Watchdog::arm`] for a wait that is not one operation: [`Watchdog::expired`]
    /// completes at `deadline` — or, if `idle`, when the server stops.
    pub fn arm_wait(&self, deadline: Instant, idle: bool) {
        self.clock.deadline.set(Some(deadline));
        self.clock.idle.set(idle);
        self.clock.fired.set(false);
    }

    /// Completes once the wait armed with [`Watchdog::arm_wait`] is due (within a tick).
    pub fn expired(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            if self.clock.fired.get() {
                return Poll::Ready(());
            }
            *self.clock.waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    /// The receive finished: nothing to cancel.
    pub fn disarm(&self) {
        self.clock.deadline.set(None);
        self.clock.token.borrow_mut().take();
        self.clock.fired.set(false);
        self.clock.waiter.borrow_mut().take();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        SWEEP.with(|s| {
            s.clocks.borrow_mut()[self.key] = None;
            s.free.borrow_mut().push(self.key);
        });
    }
}

/// Every tick, cancels the receives that are past their deadline; ends when no connection is
/// left (the next one starts it again).
async fn sweep(s: Rc<Sweep>) {
    let stop = s.stop.borrow().clone().unwrap_or_default();
    loop {
        let tick = s.tick.get().unwrap_or(Duration::from_millis(250));
        if stop.is_set() {
            let _ = proactor::time::sleep(tick).await;
        } else {
            let _ = race(proactor::time::sleep(tick), stop.wait()).await;
        }
        if s.live() == 0 {
            s.running.set(false);
            s.tick.set(None);
            return;
        }
        let now = Instant::now();
        let stopping = stop.is_set();
        let mut wakers = Vec::new();
        let due: Vec<CancelToken> = s
            .clocks
            .borrow()
            .iter()
            .flatten()
            .filter(|c| c.deadline.get().is_some_and(|d| d <= now || (stopping && c.idle.get())))
            .filter_map(|c| {
                c.deadline.set(None);
                c.fired.set(true);
                wakers.extend(c.waiter.borrow_mut().take());
                c.token.borrow_mut().take()
            })
            .collect();
        // Cancelled and woken outside the borrow: a cancellation may complete the receive at
        // once.
        for token in due {
            token.cancel();
        }
        wakers.into_iter().for_each(Waker::wake);
    }
}
