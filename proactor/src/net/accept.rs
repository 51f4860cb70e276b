//! Accepting connections when the process runs out of descriptors.
//!
//! `accept` fails with `EMFILE`/`ENFILE` (or `ENOBUFS`/`ENOMEM`) while the process or system is
//! out of resources. The pending connection stays in the kernel's queue, so retrying at once
//! would fail again at once: a naive accept loop spins at 100% CPU, and one that gives up stops
//! serving for good. Here the listener instead sleeps with an exponential back-off (1 ms doubling
//! to 100 ms) and retries, logging once when such a burst starts and once when it ends.
//! Per-connection errors (the peer reset before we accepted, a firewall `EPERM`, …) are retried
//! at once: they say nothing about the next connection.

use crate::op::{raw_os_error, Accept};
use crate::submit;
use socket2::SockAddr;
use std::cell::Cell;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// First back-off delay after a resource failure.
const FIRST_DELAY: Duration = Duration::from_millis(1);
/// The back-off never waits longer than this between attempts.
const MAX_DELAY: Duration = Duration::from_millis(100);

/// Counters of a listener's accept failures (see [`crate::net::TcpListener::accept_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptStats {
    /// Accept attempts that failed for lack of descriptors or memory, each followed by a sleep.
    pub resource_failures: u64,
    /// Bursts of such failures (a burst ends with the next successful accept).
    pub bursts: u64,
    /// Per-connection errors skipped (`ECONNABORTED`, `EPROTO`, `EPERM`, …).
    pub connection_errors: u64,
}

/// The back-off state of one listener.
#[derive(Default)]
pub(crate) struct Backoff {
    stats: Cell<AcceptStats>,
    /// When the current burst started and how many failures it had; `None` outside a burst.
    burst: Cell<Option<(Instant, u64)>>,
    delay: Cell<Duration>,
}

/// What an accept error means for the next attempt.
enum Class {
    /// Out of descriptors or memory: back off, then retry.
    Resources,
    /// This one connection failed: retry at once.
    Connection,
    /// The listener itself is unusable (closed, not listening, cancelled): report it.
    Fatal,
}

fn classify(err: &io::Error) -> Class {
    match raw_os_error(err) {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => Class::Resources,
        Some(
            libc::ECONNABORTED
            | libc::EPROTO
            | libc::EPERM
            | libc::EINTR
            | libc::ENETDOWN
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH,
        ) => Class::Connection,
        _ => Class::Fatal,
    }
}

impl Backoff {
    pub(crate) fn stats(&self) -> AcceptStats {
        self.stats.get()
    }

    /// Records a resource failure and returns how long to sleep before the next attempt.
    fn failed(&self, err: &io::Error) -> Duration {
        let mut stats = self.stats.get();
        stats.resource_failures += 1;
        let (start, count) = match self.burst.get() {
            Some((start, count)) => (start, count + 1),
            None => {
                stats.bursts += 1;
                tracing::warn!(
                    "accept failed ({err}); backing off and retrying until descriptors free up"
                );
                self.delay.set(FIRST_DELAY);
                (Instant::now(), 1)
            }
        };
        self.stats.set(stats);
        self.burst.set(Some((start, count)));
        let delay = self.delay.get();
        self.delay.set((delay * 2).min(MAX_DELAY));
        delay
    }

    /// Records a success, ending any burst.
    fn succeeded(&self) {
        if let Some((start, count)) = self.burst.take() {
            tracing::info!(
                "accepting again after {count} failed attempt(s) over {:?}",
                start.elapsed()
            );
        }
    }

    fn connection_error(&self) {
        let mut stats = self.stats.get();
        stats.connection_errors += 1;
        self.stats.set(stats);
    }
}

/// Accepts one connection on `fd`, retrying through resource exhaustion (with back-off) and
/// per-connection errors; returns only a connection or an error of the listener itself.
pub(crate) async fn accept(fd: &Rc<OwnedFd>, backoff: &Backoff) -> io::Result<(OwnedFd, SockAddr)> {
    loop {
        let err = match submit(Accept::new(fd.clone())).await {
            Ok(conn) => {
                backoff.succeeded();
                return Ok(conn);
            }
            Err(e) => e,
        };
        match classify(&err) {
            Class::Resources => {
                let delay = backoff.failed(&err);
                crate::time::sleep(delay).await?;
            }
            Class::Connection => backoff.connection_error(),
            Class::Fatal => return Err(err),
        }
    }
}
