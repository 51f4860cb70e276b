//! Tasks: [`spawn`], [`JoinHandle`] (await, [`JoinHandle::abort`], [`JoinHandle::detach`]) and
//! [`yield_now`] — the names a `tokio::task` user looks for.
//!
//! Tasks are local to the proactor's thread (their futures need not be `Send`); their wakers may
//! be used from any thread.
//!
//! # Select, join and channels: the ecosystem's
//! Proactor has no `select!`, `join!` or channels of its own, because the runtime-independent
//! ones work on its tasks as they are (`tests/interop.rs` checks each on both drivers):
//! - `futures::select!` / `futures::join!` (and `futures::future::{select, join_all}`). A
//!   branch that loses a `select!` is dropped, and a dropped operation is cancelled with its
//!   buffer parked until the kernel is done, so losing is safe. Mind what `pin_mut!` does: a
//!   future pinned in the enclosing scope is *not* dropped when the `select!` ends, and an
//!   operation left that way stays in flight (a read would take the next bytes); scope it in a
//!   block, or create it inside the `select!`.
//! - `tokio::sync` — `mpsc`, `oneshot`, `Mutex`, `Notify`, `watch`, `broadcast`, `Semaphore` —
//!   needs no tokio runtime, only `tokio = { version = "1", features = ["sync"] }`. Senders may
//!   live on other OS threads (`blocking_send` from a plain thread, or `send` from another
//!   runtime): their wakes reach the proactor's task through its thread-safe waker, and wake the
//!   loop if it is blocked in the kernel.
//! - `async-channel` (MPMC, bounded or not) and `futures::channel` likewise.
//!
//! ```
//! let p = proactor::Proactor::new()?;
//! let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(16);
//! let producer = std::thread::spawn(move || (0..10).for_each(|i| tx.blocking_send(i).unwrap()));
//! let sum = p.block_on(async move {
//!     let mut sum = 0;
//!     while let Some(i) = rx.recv().await {
//!         sum += i;
//!     }
//!     sum
//! });
//! producer.join().unwrap();
//! assert_eq!(sum, 45);
//! # Ok::<(), std::io::Error>(())
//! ```

pub use crate::runtime::{spawn, JoinError, JoinHandle};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Lets the other ready tasks run, and the loop reap completions, before this task goes on.
///
/// The task is woken at once and put at the back of the ready list; the loop then finishes its
/// round and polls the driver (without blocking) before polling the task again, so a task that
/// computes for a long time between operations can share the thread.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let ran = Rc::new(Cell::new(false));
///     let r = ran.clone();
///     let other = proactor::spawn(async move { r.set(true) });
///     proactor::task::yield_now().await;
///     assert!(ran.get(), "the other task ran while this one yielded");
///     other.await.unwrap();
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
