//! Timers: `sleep`, `timeout` around any future, and (on operations) `Op::deadline`.
//!
//! A timer is an operation like any other — the kernel completes it — so it costs no thread and
//! shows up in the in-flight count.

use crate::op::Timeout;
use crate::runtime::{submit, Op};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Op<Timeout> {
    submit(Timeout::new(duration))
}

/// The future did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(_: Elapsed) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, Elapsed)
    }
}

/// Runs `future` for at most `duration`. On expiry the future is dropped, which cancels its
/// operations (their buffers are parked until the kernel returns them).
pub fn timeout<F: Future>(duration: Duration, future: F) -> WithTimeout<F> {
    WithTimeout { future: Box::pin(future), timer: sleep(duration) }
}

/// The future returned by [`timeout`].
#[must_use = "futures do nothing unless awaited"]
pub struct WithTimeout<F> {
    future: Pin<Box<F>>,
    timer: Op<Timeout>,
}

impl<F: Future> Future for WithTimeout<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match Pin::new(&mut self.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}
