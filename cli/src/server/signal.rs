//! SIGINT / SIGTERM for a server: a small thread receives the signals (through `signal-hook`) and
//! wakes the task waiting on them, which wakes the proactor's loop through its notifier.
//!
//! No work happens in the signal handler itself; the thread only counts signals and calls a
//! `Waker`, which is `Send + Sync` by contract.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Counts SIGINT/SIGTERM received since [`StopSignals::install`]; await [`StopSignals::nth`].
pub(crate) struct StopSignals {
    state: Arc<State>,
    handle: signal_hook::iterator::Handle,
}

#[derive(Default)]
struct State {
    count: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

impl StopSignals {
    /// Replaces the default action of SIGINT and SIGTERM (terminate) with counting, and starts
    /// the thread that receives them.
    pub(crate) fn install() -> io::Result<StopSignals> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let state = Arc::new(State::default());
        let thread_state = state.clone();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for sig in signals.forever() {
                tracing::debug!("received signal {sig}");
                thread_state.count.fetch_add(1, Ordering::SeqCst);
                let waker = thread_state.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(w) = waker {
                    w.wake();
                }
            }
        })?;
        Ok(StopSignals { state, handle })
    }

    /// Completes once `n` signals have arrived in total.
    pub(crate) fn nth(&self, n: usize) -> Nth<'_> {
        Nth { state: &self.state, n }
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        // Ends the thread's `forever` loop. The handlers stay registered (signal-hook never
        // unregisters), so a late signal is still counted, not fatal.
        self.handle.close();
    }
}

/// The future returned by [`StopSignals::nth`].
pub(crate) struct Nth<'a> {
    state: &'a State,
    n: usize,
}

impl Future for Nth<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.count.load(Ordering::SeqCst) >= self.n {
            return Poll::Ready(());
        }
        *self.state.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        // A signal that arrived between the check and storing the waker would have found no
        // waker to call: check again now that it is stored.
        if self.state.count.load(Ordering::SeqCst) >= self.n {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
