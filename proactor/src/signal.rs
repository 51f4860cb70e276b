//! Unix signals as completions: `ctrl_c().await` and a stream of any catchable signal.
//!
//! A signal handler may do almost nothing (only async-signal-safe calls), so the work moves to
//! the loop through a self-pipe: the handler counts the signal and writes one byte to a
//! socket pair, and [`Signal::recv`] is an ordinary read of the other end, submitted to the
//! driver like any receive. No thread is woken and nothing polls.
//!
//! The count, not the byte, is what [`Signal::recv`] reports. A `recv` future dropped while its
//! read is in flight may take a byte with it, but the count still says a signal came, so the
//! next `recv` returns at once: dropping the future (in a `select!`, say) loses no signal.
//! Several deliveries between two `recv`s come out as one, as the kernel already merges
//! pending deliveries of one signal.
//!
//! As with tokio, once a signal has a listener its default action (ending the process for
//! SIGINT and SIGTERM) does not come back when the listener is dropped; the signal is then
//! ignored.

use crate::net::UnixStream;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A signal number, with the usual ones named (`SignalKind::interrupt()` is SIGINT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalKind(libc::c_int);

impl SignalKind {
    /// Any signal by number (`libc::SIGUSR1`, say). [`signal`] refuses the ones that cannot
    /// be caught or must not be (SIGKILL, SIGSTOP, SIGILL, SIGFPE, SIGSEGV) and unknown numbers.
    pub const fn from_raw(signum: libc::c_int) -> SignalKind {
        SignalKind(signum)
    }
    /// The signal's number.
    pub const fn as_raw_value(self) -> libc::c_int {
        self.0
    }
    /// SIGINT: Ctrl-C at a terminal.
    pub const fn interrupt() -> SignalKind {
        SignalKind(libc::SIGINT)
    }
    /// SIGTERM: the polite request to stop (what `kill` and service managers send).
    pub const fn terminate() -> SignalKind {
        SignalKind(libc::SIGTERM)
    }
    /// SIGHUP: the terminal went away; by convention, reload configuration.
    pub const fn hangup() -> SignalKind {
        SignalKind(libc::SIGHUP)
    }
    /// SIGQUIT: Ctrl-\ at a terminal.
    pub const fn quit() -> SignalKind {
        SignalKind(libc::SIGQUIT)
    }
    /// SIGUSR1.
    pub const fn user_defined1() -> SignalKind {
        SignalKind(libc::SIGUSR1)
    }
    /// SIGUSR2.
    pub const fn user_defined2() -> SignalKind {
        SignalKind(libc::SIGUSR2)
    }
    /// SIGCHLD: a child process stopped or ended.
    pub const fn child() -> SignalKind {
        SignalKind(libc::SIGCHLD)
    }
    /// SIGWINCH: the terminal changed size.
    pub const fn window_change() -> SignalKind {
        SignalKind(libc::SIGWINCH)
    }
}

/// What the handler and the listener share.
struct Delivered {
    /// Signals delivered since the listener was made.
    count: AtomicU64,
    /// The end the handler writes a byte to (non-blocking: a full buffer drops the byte, and
    /// the unread bytes already make the other end readable).
    wake: OwnedFd,
}

/// A stream of one signal's deliveries, made by [`signal`]; await [`Signal::recv`].
///
/// ```no_run
/// use proactor::signal::{signal, SignalKind};
/// proactor::Proactor::new()?.block_on(async {
///     let mut hangups = signal(SignalKind::hangup())?;
///     while hangups.recv().await.is_some() {
///         println!("reloading the configuration");
///     }
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Signal {
    kind: SignalKind,
    id: signal_hook_registry::SigId,
    delivered: Arc<Delivered>,
    /// Deliveries already reported by `recv`.
    seen: u64,
    reader: UnixStream,
    /// The read buffer, between reads (`None` while a read holds it or after one was dropped).
    buf: Option<Vec<u8>>,
}

/// Starts listening for `kind`: from now on each delivery of it is counted for this listener
/// instead of taking the signal's default action (see the module docs).
///
/// Fails with `InvalidInput` for a signal that cannot or must not be caught (SIGKILL, SIGSTOP,
/// SIGILL, SIGFPE, SIGSEGV) or that the system does not know.
pub fn signal(kind: SignalKind) -> io::Result<Signal> {
    // The registry's own list (SIGKILL and SIGSTOP cannot be caught; a handler returning from
    // SIGILL, SIGFPE or SIGSEGV reruns the faulting instruction), which it asserts on.
    let forbidden = signal_hook_registry::FORBIDDEN.contains(&kind.0);
    if forbidden || kind.0 <= 0 || kind.0 > libc::SIGRTMAX() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {} cannot be listened for", kind.0),
        ));
    }
    let (read_end, write_end) = std::os::unix::net::UnixStream::pair()?;
    write_end.set_nonblocking(true)?;
    let delivered = Arc::new(Delivered { count: AtomicU64::new(0), wake: write_end.into() });
    let in_handler = delivered.clone();
    let action = move || {
        in_handler.count.fetch_add(1, Ordering::SeqCst);
        let byte = 1u8;
        // SAFETY: `send` on a descriptor `in_handler` keeps open, from a one-byte buffer on the
        // stack; send(2) is async-signal-safe. The result is ignored on purpose: a full buffer
        // (EAGAIN) means the reader has a byte to wake it already.
        let _ = unsafe {
            libc::send(
                in_handler.wake.as_raw_fd(),
                (&byte as *const u8).cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
    };
    // SAFETY: the action runs inside a signal handler, so it must be async-signal-safe: it only
    // increments an atomic and calls send(2), allocates nothing, takes no lock and cannot
    // panic. `kind` is not one of the forbidden signals (checked above), which the registry
    // would otherwise assert on.
    let id = unsafe { signal_hook_registry::register(kind.0, action) }?;
    let reader = match UnixStream::from_std(read_end) {
        Ok(reader) => reader,
        Err(e) => {
            signal_hook_registry::unregister(id);
            return Err(e);
        }
    };
    Ok(Signal { kind, id, delivered, seen: 0, reader, buf: Some(Vec::with_capacity(64)) })
}

impl Signal {
    /// The signal this listener counts.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }

    /// Waits for the next delivery of the signal: `Some(())` for one or more deliveries since
    /// the last call (or since [`signal`] for the first). Dropping the future loses nothing
    /// (see the module docs). `None` only if the wake-up channel failed, which it does not in
    /// practice.
    pub async fn recv(&mut self) -> Option<()> {
        loop {
            let now = self.delivered.count.load(Ordering::SeqCst);
            if now != self.seen {
                self.seen = now;
                return Some(());
            }
            // The handler counts before it writes, so a delivery after the load above leaves
            // a byte for this read.
            let buf = self.buf.take().unwrap_or_else(|| Vec::with_capacity(64));
            let (res, mut buf) = self.reader.read(buf).await;
            buf.clear();
            self.buf = Some(buf);
            match res {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("signal {}: reading the wake-up channel: {e}", self.kind.0);
                    return None;
                }
            }
        }
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        // The registry waits for a handler running on another thread to finish before the
        // action (and with it the write end) is dropped.
        signal_hook_registry::unregister(self.id);
    }
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal").field("kind", &self.kind).field("seen", &self.seen).finish()
    }
}

/// Completes at the next SIGINT (Ctrl-C), which from the first call on no longer ends the
/// process (see the module docs): the usual start of a graceful stop.
///
/// ```no_run
/// proactor::Proactor::new()?.block_on(async {
///     proactor::signal::ctrl_c().await?;
///     println!("stopping");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn ctrl_c() -> io::Result<()> {
    let mut interrupts = signal(SignalKind::interrupt())?;
    match interrupts.recv().await {
        Some(()) => Ok(()),
        None => Err(io::Error::other("the SIGINT wake-up channel failed")),
    }
}
