//! Small single-thread synchronisation for connection code: a one-shot [`Event`] many tasks can
//! await, and [`race`] to wait for whichever of two futures finishes first.
//!
//! Everything here lives on the proactor's thread (`Rc`, `Cell`), so no locks are taken.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A one-shot event: once [`Event::set`], every current and future [`Event::wait`] completes.
///
/// Cheap to clone (an `Rc`); the clones share the state. Used for the server's shutdown signal
/// and, in `chat`, to tell a connection's reader that the connection was cut off.
///
/// ```ignore
/// let ev = Event::new();
/// let waiter = ev.clone();
/// proactor::spawn(async move { waiter.wait().await; /* ... */ });
/// ev.set();
/// ```
#[derive(Clone, Default)]
pub struct Event(Rc<EventState>);

#[derive(Default)]
struct EventState {
    set: Cell<bool>,
    /// Wakers of pending waits, by waiter key; a waiter removes its entry when dropped.
    waiters: RefCell<HashMap<u64, Waker>>,
    next_key: Cell<u64>,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Event {
        Event::default()
    }

    /// True once [`Event::set`] was called.
    pub fn is_set(&self) -> bool {
        self.0.set.get()
    }

    /// Sets the event and wakes every waiter. Idempotent.
    pub fn set(&self) {
        if self.0.set.replace(true) {
            return;
        }
        let wakers: Vec<Waker> = self.0.waiters.borrow_mut().drain().map(|(_, w)| w).collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Completes when the event is set (at once if it already is).
    pub fn wait(&self) -> Wait {
        Wait { event: self.0.clone(), key: None }
    }
}

/// The future returned by [`Event::wait`].
#[must_use = "futures do nothing unless awaited"]
pub struct Wait {
    event: Rc<EventState>,
    key: Option<u64>,
}

impl Future for Wait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.event.set.get() {
            return Poll::Ready(());
        }
        let key = *this.key.get_or_insert_with(|| {
            let key = this.event.next_key.get();
            this.event.next_key.set(key + 1);
            key
        });
        let mut waiters = this.event.waiters.borrow_mut();
        match waiters.get_mut(&key) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => *w = cx.waker().clone(),
            None => {
                waiters.insert(key, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.event.waiters.borrow_mut().remove(&key);
        }
    }
}

/// Which of two raced futures finished first, with its output.
#[derive(Debug)]
pub enum Either<A, B> {
    /// The first future finished first.
    Left(A),
    /// The second future finished first.
    Right(B),
}

/// Runs `a` and `b` until one of them finishes; the other is dropped, which cancels any operation
/// it had in flight (its buffer is parked until the kernel hands it back). `a` is polled first,
/// so it wins a tie.
pub async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    })
    .await
}

/// Counts the open connections and lets the server wait until none is left; gives memory
/// back once a burst of connections is over (`memory.rs`).
#[derive(Default)]
pub(crate) struct ConnCount {
    open: Cell<usize>,
    drained: RefCell<Option<Waker>>,
    trimmer: super::memory::Trimmer,
}

impl ConnCount {
    pub(crate) fn open(&self) -> usize {
        self.open.get()
    }

    pub(crate) fn add(&self) {
        self.open.set(self.open.get() + 1);
        self.trimmer.note(self.open.get());
    }

    pub(crate) fn remove(&self) {
        let n = self.open.get().saturating_sub(1);
        self.open.set(n);
        self.trimmer.note(n);
        if n == 0 {
            if let Some(w) = self.drained.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Completes when no connection is open.
    pub(crate) async fn drained(&self) {
        std::future::poll_fn(|cx| {
            if self.open.get() == 0 {
                Poll::Ready(())
            } else {
                *self.drained.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
