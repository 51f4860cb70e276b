//! The accept-error policy: what an accept loop does when `accept` fails.
//!
//! Every accept loop of the crate ([`crate::net::TcpListener::accept`],
//! [`crate::net::UnixListener::accept`], the loops of [`crate::threads::MultiProactor::serve`])
//! and of the `proactor` servers follows this one policy, so they agree on which errors are
//! transient, which mean the listener is gone, and how long to wait when the process is out of
//! descriptors. [`AcceptErrorClass::of`] sorts an error; [`AcceptPolicy`] adds the state a loop
//! needs (the shared back-off, counters, one log line per burst).
//!
//! `accept` fails with `EMFILE`/`ENFILE` (or `ENOBUFS`/`ENOMEM`) while the process or system is
//! out of resources. The pending connection stays in the kernel's queue, so retrying at once
//! would fail again at once: a naive accept loop spins at 100% CPU, and one that gives up stops
//! serving for good. The policy instead waits with an exponential back-off (1 ms doubling to
//! 100 ms, back to 1 ms after the next success) and retries, logging once when such a burst
//! starts and once when it ends. Per-connection errors (the peer reset before we accepted, a
//! firewall `EPERM`, a network error pending on the new socket, …) are retried at once: each
//! one used up the connection it was about, so they cannot repeat for ever, and they say
//! nothing about the next connection.

use crate::op::{raw_os_error, Accept};
use crate::submit;
use socket2::SockAddr;
use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Counters of a listener's accept failures (see [`crate::net::TcpListener::accept_stats`] and
/// [`AcceptPolicy::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcceptStats {
    /// Accept attempts that failed for lack of descriptors or memory, each followed by a wait.
    pub resource_failures: u64,
    /// Bursts of such failures (a burst ends with the next successful accept).
    pub bursts: u64,
    /// Per-connection errors skipped (`ECONNABORTED`, `EPROTO`, `EPERM`, …).
    pub connection_errors: u64,
}

/// What an accept error means for the accept loop that got it.
///
/// The classes follow accept(2) on Linux. New classes may be added (hence `non_exhaustive`); an
/// accept loop acts on [`AcceptPolicy::on_error`]'s [`AcceptAction`] rather than on the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcceptErrorClass {
    /// Only this one connection failed, or the call was interrupted: accept again at once.
    ///
    /// `ECONNABORTED` (the peer reset first), `EPERM` (a firewall rule), `EINTR`, `EAGAIN`, and
    /// the network errors Linux passes on from the new socket, which accept(2) says to treat
    /// like `EAGAIN`: `EPROTO`, `ENETDOWN`, `ENOPROTOOPT`, `EHOSTDOWN`, `ENONET`,
    /// `EHOSTUNREACH`, `EOPNOTSUPP`, `ENETUNREACH`, and the others the man page lists
    /// (`ENOSR`, `ESOCKTNOSUPPORT`, `EPROTONOSUPPORT`, `ETIMEDOUT`, `ECONNRESET`).
    ///
    /// `EOPNOTSUPP` also means "the listener is not a stream socket", which would repeat at
    /// once for ever; it is classed here because every listener this crate accepts on is a
    /// stream socket (the `from_std` constructors check), so from them it can only be a network
    /// error of one connection. Each error of this class uses up the connection it was about,
    /// so retrying at once cannot spin.
    Connection,
    /// The process or the system is out of descriptors or memory: `EMFILE`, `ENFILE`,
    /// `ENOBUFS`, `ENOMEM`. The connection stays queued; wait (the back-off), then retry.
    Resources,
    /// The listener is unusable, or the accept was cancelled by its owner: stop and report the
    /// error. `EBADF`, `EINVAL` (not listening, or shut down), `ENOTSOCK`, `EFAULT`,
    /// `ECANCELED` when the loop is not stopping, and every error not named in the other
    /// classes (retried blind, an unknown persistent error would spin or hide a broken
    /// listener).
    Fatal,
    /// The loop's owner is stopping it (it shut the listener down or cancelled the accept):
    /// every error then ends the loop quietly.
    Stop,
}

impl AcceptErrorClass {
    /// Classifies `err`, the error of one accept. `stopping` says whether the loop's owner has
    /// asked it to stop (so an error caused by that, such as `ECANCELED` or `EINVAL` from a
    /// shut-down listener, is the expected end); a plain listener passes `false`.
    ///
    /// ```
    /// use proactor::net::AcceptErrorClass;
    /// use std::io::Error;
    /// let class = |errno| AcceptErrorClass::of(&Error::from_raw_os_error(errno), false);
    /// assert_eq!(class(libc::EMFILE), AcceptErrorClass::Resources);
    /// assert_eq!(class(libc::ECONNABORTED), AcceptErrorClass::Connection);
    /// assert_eq!(class(libc::EBADF), AcceptErrorClass::Fatal);
    /// let cancelled = Error::from_raw_os_error(libc::ECANCELED);
    /// assert_eq!(AcceptErrorClass::of(&cancelled, true), AcceptErrorClass::Stop);
    /// ```
    pub fn of(err: &io::Error, stopping: bool) -> AcceptErrorClass {
        if stopping {
            return AcceptErrorClass::Stop;
        }
        match raw_os_error(err) {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                AcceptErrorClass::Resources
            }
            Some(
                libc::ECONNABORTED
                | libc::EPERM
                | libc::EINTR
                | libc::EAGAIN
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ENOSR
                | libc::ESOCKTNOSUPPORT
                | libc::EPROTONOSUPPORT
                | libc::ETIMEDOUT
                | libc::ECONNRESET,
            ) => AcceptErrorClass::Connection,
            _ => AcceptErrorClass::Fatal,
        }
    }
}

/// What an accept loop does next, as [`AcceptPolicy::on_error`] decides.
///
/// The four are the whole set of things an accept loop can do, so the enum is exhaustive: a
/// loop matches it without a catch-all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptAction {
    /// Accept again at once.
    Retry,
    /// Wait this long (the shared back-off), then accept again.
    Wait(Duration),
    /// End the loop and report the error: the listener is unusable.
    Fail,
    /// End the loop quietly: its owner is stopping it.
    Stop,
}

/// The accept-error policy of one accept loop: classifies each error ([`AcceptErrorClass`]),
/// keeps the back-off for resource exhaustion, counts failures ([`AcceptStats`]) and logs once
/// per burst of them.
///
/// The back-off starts at [`AcceptPolicy::FIRST_DELAY`] on the first resource failure, doubles
/// with each one after it up to [`AcceptPolicy::MAX_DELAY`], and starts over after a successful
/// accept. One policy serves one listener (several loops on one listener may share it).
///
/// ```no_run
/// use proactor::net::{AcceptAction, AcceptPolicy};
/// # async fn serve(listener: std::rc::Rc<std::net::TcpListener>) -> std::io::Result<()> {
/// let mut policy = AcceptPolicy::new();
/// loop {
///     match proactor::submit(proactor::op::Accept::new(listener.clone())).await {
///         Ok((fd, _peer)) => {
///             policy.on_success();
///             drop(fd); // serve the connection
///         }
///         Err(e) => match policy.on_error(&e, false) {
///             AcceptAction::Retry => {}
///             AcceptAction::Wait(delay) => proactor::time::sleep(delay).await?,
///             AcceptAction::Fail => return Err(e),
///             AcceptAction::Stop => return Ok(()),
///         },
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct AcceptPolicy {
    stats: AcceptStats,
    /// When the current burst of resource failures started and how many it had; `None`
    /// outside a burst.
    burst: Option<(Instant, u64)>,
    /// The wait after the next resource failure of the current burst (zero outside a burst).
    delay: Duration,
}

impl AcceptPolicy {
    /// The wait after the first resource failure of a burst.
    pub const FIRST_DELAY: Duration = Duration::from_millis(1);
    /// The back-off never waits longer than this between attempts.
    pub const MAX_DELAY: Duration = Duration::from_millis(100);

    /// A policy with no failures recorded.
    pub fn new() -> AcceptPolicy {
        AcceptPolicy::default()
    }

    /// Records a failed accept and says what to do next; `stopping` is as for
    /// [`AcceptErrorClass::of`]. A resource failure returns [`AcceptAction::Wait`] with the
    /// back-off's next delay (and logs a warning at the start of a burst); a per-connection
    /// error is counted, logged at debug level and retried.
    pub fn on_error(&mut self, err: &io::Error, stopping: bool) -> AcceptAction {
        match AcceptErrorClass::of(err, stopping) {
            AcceptErrorClass::Resources => AcceptAction::Wait(self.resource_failure(err)),
            AcceptErrorClass::Connection => {
                self.stats.connection_errors += 1;
                tracing::debug!("accept: {err} (this connection only; accepting the next)");
                AcceptAction::Retry
            }
            AcceptErrorClass::Fatal => AcceptAction::Fail,
            AcceptErrorClass::Stop => AcceptAction::Stop,
        }
    }

    /// Records a successful accept: a burst of resource failures ends (logged) and the back-off
    /// starts over.
    pub fn on_success(&mut self) {
        if let Some((start, count)) = self.burst.take() {
            tracing::info!(
                "accepting again after {count} failed attempt(s) over {:?}",
                start.elapsed()
            );
        }
        self.delay = Duration::ZERO;
    }

    /// The failures recorded so far.
    pub fn stats(&self) -> AcceptStats {
        self.stats
    }

    /// True between a resource failure and the next successful accept.
    pub fn in_burst(&self) -> bool {
        self.burst.is_some()
    }

    /// Records a resource failure and returns how long to wait before the next attempt.
    fn resource_failure(&mut self, err: &io::Error) -> Duration {
        self.stats.resource_failures += 1;
        self.burst = Some(match self.burst {
            Some((start, count)) => (start, count + 1),
            None => {
                self.stats.bursts += 1;
                tracing::warn!(
                    "{err}; backing off (up to {:?}) and retrying until descriptors free up",
                    Self::MAX_DELAY
                );
                (Instant::now(), 1)
            }
        });
        let delay = self.delay.max(Self::FIRST_DELAY);
        self.delay = (delay * 2).min(Self::MAX_DELAY);
        delay
    }
}

/// Accepts one connection on `fd` under `policy`, retrying through resource exhaustion (with
/// the back-off) and per-connection errors; returns only a connection or an error of the
/// listener itself. The policy is borrowed only between awaits, so several tasks may accept on
/// one listener at once.
pub(crate) async fn accept(
    fd: &Rc<OwnedFd>,
    policy: &RefCell<AcceptPolicy>,
) -> io::Result<(OwnedFd, SockAddr)> {
    loop {
        let err = match submit(Accept::new(fd.clone())).await {
            Ok(conn) => {
                policy.borrow_mut().on_success();
                return Ok(conn);
            }
            Err(e) => e,
        };
        let action = policy.borrow_mut().on_error(&err, false);
        match action {
            AcceptAction::Retry => {}
            AcceptAction::Wait(delay) => crate::time::sleep(delay).await?,
            AcceptAction::Fail | AcceptAction::Stop => return Err(err),
        }
    }
}

/// Checks that `fd` is a stream socket, as the [`AcceptErrorClass::Connection`] reading of
/// `EOPNOTSUPP` assumes; `what` names the constructor in the error.
pub(crate) fn check_stream(fd: &OwnedFd, what: &str) -> io::Result<()> {
    let ty = socket2::SockRef::from(fd).r#type()?;
    if ty != socket2::Type::STREAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}: the socket is not a stream socket ({ty:?})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    fn class(errno: i32) -> AcceptErrorClass {
        AcceptErrorClass::of(&os(errno), false)
    }

    #[test]
    fn resource_exhaustion_backs_off() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(class(errno), AcceptErrorClass::Resources, "errno {errno}");
        }
    }

    #[test]
    fn per_connection_errors_retry_at_once() {
        // accept(2), "Error handling": pending network errors are treated like EAGAIN.
        for errno in [
            libc::ECONNABORTED,
            libc::EPERM,
            libc::EINTR,
            libc::EAGAIN,
            libc::EPROTO,
            libc::ENETDOWN,
            libc::ENOPROTOOPT,
            libc::EHOSTDOWN,
            libc::ENONET,
            libc::EHOSTUNREACH,
            libc::EOPNOTSUPP,
            libc::ENETUNREACH,
            libc::ETIMEDOUT,
            libc::ECONNRESET,
        ] {
            assert_eq!(class(errno), AcceptErrorClass::Connection, "errno {errno}");
        }
    }

    #[test]
    fn unusable_listener_is_fatal() {
        for errno in
            [libc::EBADF, libc::EINVAL, libc::ENOTSOCK, libc::EFAULT, libc::ECANCELED, libc::EIO]
        {
            assert_eq!(class(errno), AcceptErrorClass::Fatal, "errno {errno}");
        }
        // An error with no OS code cannot be placed either: reported, not retried.
        let other = io::Error::other("no errno");
        assert_eq!(AcceptErrorClass::of(&other, false), AcceptErrorClass::Fatal);
        // An OS error wrapped in context is found through the chain.
        let wrapped = io::Error::other(os(libc::EMFILE));
        assert_eq!(AcceptErrorClass::of(&wrapped, false), AcceptErrorClass::Resources);
    }

    #[test]
    fn stopping_ends_the_loop_whatever_the_error() {
        for errno in [libc::ECANCELED, libc::EINVAL, libc::EMFILE, libc::ECONNABORTED] {
            assert_eq!(AcceptErrorClass::of(&os(errno), true), AcceptErrorClass::Stop);
        }
        let mut policy = AcceptPolicy::new();
        assert_eq!(policy.on_error(&os(libc::ECANCELED), true), AcceptAction::Stop);
        assert_eq!(policy.on_error(&os(libc::EBADF), false), AcceptAction::Fail);
        assert_eq!(policy.stats(), AcceptStats::default());
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_on_success() {
        let mut policy = AcceptPolicy::new();
        let mut waits = Vec::new();
        for _ in 0..10 {
            match policy.on_error(&os(libc::EMFILE), false) {
                AcceptAction::Wait(d) => waits.push(d.as_millis()),
                other => panic!("EMFILE gave {other:?}"),
            }
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 100, 100, 100]);
        assert!(policy.in_burst());
        // A per-connection error in the middle of a burst neither ends nor resets it.
        assert_eq!(policy.on_error(&os(libc::ECONNABORTED), false), AcceptAction::Retry);
        assert_eq!(
            policy.on_error(&os(libc::ENFILE), false),
            AcceptAction::Wait(AcceptPolicy::MAX_DELAY)
        );
        policy.on_success();
        assert!(!policy.in_burst());
        assert_eq!(
            policy.on_error(&os(libc::ENOBUFS), false),
            AcceptAction::Wait(AcceptPolicy::FIRST_DELAY)
        );
        let stats = policy.stats();
        assert_eq!(stats.resource_failures, 12);
        assert_eq!(stats.bursts, 2);
        assert_eq!(stats.connection_errors, 1);
    }
}
