//! Tasks: [`spawn`], [`JoinHandle`] (await, [`JoinHandle::abort`], [`JoinHandle::detach`]) and
//! [`yield_now`] — the names a `tokio::task` user looks for.
//!
//! Tasks are local to the proactor's thread (their futures need not be `Send`); their wakers may
//! be used from any thread.

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
