//! Choosing the driver, once, at start: probe io_uring, fall back to epoll, say why.

use super::epoll::EpollDriver;
use super::uring::{RingConfig, UringDriver};
use super::{Completion, Driver, Notifier, OpPtr, Token};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The driver in use.
///
/// `non_exhaustive`: more drivers may come (IOCP, kqueue; see `docs/architecture.md`), so a
/// `match` outside this crate needs a catch-all arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DriverKind {
    /// io_uring: the kernel runs the operations (a true Proactor).
    Uring,
    /// epoll: operations are tried, waited for by readiness, then performed (an emulated Proactor).
    Epoll,
}

impl std::fmt::Display for DriverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DriverKind::Uring => "io_uring",
            DriverKind::Epoll => "epoll",
        })
    }
}

/// The driver policy a user asks for.
///
/// `non_exhaustive`: a choice per new driver may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DriverChoice {
    /// io_uring if the kernel offers everything the proactor uses, else epoll (logged once).
    #[default]
    Auto,
    /// io_uring or an error saying why not.
    Uring,
    /// Always the epoll emulation.
    Epoll,
}

impl From<DriverKind> for DriverChoice {
    /// The choice that forces this driver: a second proactor like one already running.
    ///
    /// ```
    /// use proactor::{DriverChoice, Proactor};
    /// let p = Proactor::new()?;
    /// let q = Proactor::builder().driver(DriverChoice::from(p.driver_kind())).build()?;
    /// assert_eq!(q.driver_kind(), p.driver_kind());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn from(kind: DriverKind) -> DriverChoice {
        match kind {
            DriverKind::Uring => DriverChoice::Uring,
            DriverKind::Epoll => DriverChoice::Epoll,
        }
    }
}

impl std::str::FromStr for DriverChoice {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DriverChoice::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(DriverChoice::Uring),
            "epoll" => Ok(DriverChoice::Epoll),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown driver {other:?}: expected auto, uring or epoll"),
            )),
        }
    }
}

impl DriverChoice {
    /// The choice from `PROACTOR_DRIVER`, if set. An invalid value is an error.
    pub fn from_env() -> io::Result<Option<DriverChoice>> {
        match std::env::var("PROACTOR_DRIVER") {
            Ok(v) if !v.trim().is_empty() => v.parse().map(Some),
            _ => Ok(None),
        }
    }
}

/// The chosen driver, kept in an enum so the run loop's calls are static. A tag of its own
/// (rather than a niche in a driver's field) makes telling the drivers apart one byte compare
/// on every submission.
#[repr(u8)]
pub(crate) enum AnyDriver {
    Uring(UringDriver),
    Epoll(EpollDriver),
    /// Either of the above under a fault plan (`crate::faults`).
    Faulty(Box<crate::faults::FaultDriver>),
}

/// Which required opcodes the kernel lacks, probed once per process (the kernel's opcode table
/// does not change while it runs); `Err` says why the probe itself failed.
fn missing_opcodes() -> Result<&'static [&'static str], String> {
    static PROBE: OnceLock<Result<Vec<&'static str>, String>> = OnceLock::new();
    match PROBE.get_or_init(|| {
        super::uring::probe_kernel()
            .map(|p| p.missing_required())
            .map_err(|e| format!("the io_uring opcode probe failed: {}", explain_setup_error(&e)))
    }) {
        Ok(missing) => Ok(missing),
        Err(why) => Err(why.clone()),
    }
}

/// Sets up io_uring and checks every opcode the proactor uses; `Err` is why not, in plain words.
pub(crate) fn open_uring(config: &RingConfig) -> Result<UringDriver, String> {
    let driver = UringDriver::new(config).map_err(|e| explain_setup_error(&e))?;
    if !driver.waits_with_timeout() {
        // Every required opcode dates from 5.11 or earlier, SHUTDOWN from 5.11 itself, so this
        // only refuses a kernel that would fail the opcode check anyway.
        return Err(
            "the kernel's io_uring cannot bound a wait by a timeout (IORING_FEAT_EXT_ARG, \
                    Linux 5.11), which the loop's timers use"
                .into(),
        );
    }
    let missing = missing_opcodes()?;
    if !missing.is_empty() {
        return Err(format!("the kernel lacks io_uring opcode(s) {}", missing.join(", ")));
    }
    Ok(driver)
}

/// The `Seccomp:` mode of this process (0 none, 1 strict, 2 filter), if the kernel says.
fn seccomp_mode() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Seccomp:"))?;
    line["Seccomp:".len()..].trim().parse().ok()
}

/// The soft `RLIMIT_MEMLOCK` in bytes (`None`: unlimited or unknown).
fn memlock_limit() -> Option<u64> {
    // SAFETY: an all-zero rlimit is a valid value for getrlimit to overwrite.
    let mut lim = unsafe { std::mem::zeroed::<libc::rlimit>() };
    // SAFETY: `lim` is a valid out-parameter.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Turns an `io_uring_setup` failure into the reason a user can act on.
pub(crate) fn explain_setup_error(e: &io::Error) -> String {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let filtered = seccomp_mode() == Some(2);
    match e.raw_os_error() {
        Some(libc::EPERM) if disabled == 2 => {
            "io_uring is disabled by the sysctl kernel.io_uring_disabled=2".to_string()
        }
        Some(libc::EPERM) if disabled == 1 => "io_uring is restricted by the sysctl \
             kernel.io_uring_disabled=1 and this process is not in kernel.io_uring_group"
            .to_string(),
        Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENOSYS) if filtered => format!(
            "io_uring_setup is blocked by a seccomp filter (a container's default profile \
             does this) ({e})"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("io_uring_setup is refused by a security policy (seccomp or an LSM) ({e})")
        }
        Some(libc::ENOSYS) => format!("this kernel has no io_uring ({e})"),
        Some(libc::ENOMEM) => match memlock_limit() {
            Some(lim) => format!(
                "io_uring ring setup failed for lack of locked memory: memlock limit too low \
                 (RLIMIT_MEMLOCK = {} KiB; raise it with `ulimit -l`) ({e})",
                lim / 1024
            ),
            None => format!("io_uring ring setup failed: out of memory ({e})"),
        },
        _ => format!("io_uring setup failed ({e})"),
    }
}

impl AnyDriver {
    /// Builds the driver `choice` asks for; the second value is why `auto` fell back, if it did.
    pub(crate) fn open(
        choice: DriverChoice,
        config: &RingConfig,
    ) -> io::Result<(AnyDriver, Option<String>)> {
        match choice {
            DriverChoice::Epoll => Ok((AnyDriver::Epoll(EpollDriver::new()?), None)),
            DriverChoice::Uring => match open_uring(config) {
                Ok(d) => Ok((AnyDriver::Uring(d), None)),
                Err(why) => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the io_uring driver is unavailable: {why}"),
                )),
            },
            DriverChoice::Auto => match open_uring(config) {
                Ok(d) => Ok((AnyDriver::Uring(d), None)),
                Err(why) => {
                    // Once per process: a program that builds many proactors warns once.
                    static WARNED: AtomicBool = AtomicBool::new(false);
                    if !WARNED.swap(true, Ordering::Relaxed) {
                        tracing::warn!("io_uring unavailable, using the epoll driver: {why}");
                    } else {
                        tracing::debug!("io_uring unavailable, using the epoll driver: {why}");
                    }
                    Ok((AnyDriver::Epoll(EpollDriver::new()?), Some(why)))
                }
            },
        }
    }

    /// The ring's effective setup, when this is the io_uring driver.
    pub(crate) fn uring_config(&self) -> Option<&RingConfig> {
        match self {
            AnyDriver::Uring(d) => Some(d.config()),
            AnyDriver::Epoll(_) => None,
            AnyDriver::Faulty(d) => d.inner().uring_config(),
        }
    }

    /// The io_uring driver, when this is one (under a fault layer too).
    pub(crate) fn uring(&self) -> Option<&UringDriver> {
        match self {
            AnyDriver::Uring(d) => Some(d),
            AnyDriver::Epoll(_) => None,
            AnyDriver::Faulty(d) => d.inner().uring(),
        }
    }

    /// The io_uring queues' figures, when this is the io_uring driver.
    pub(crate) fn ring_stats(&mut self) -> Option<crate::runtime::RingStats> {
        match self {
            AnyDriver::Uring(d) => Some(d.ring_stats()),
            AnyDriver::Epoll(_) => None,
            AnyDriver::Faulty(d) => d.inner_mut().ring_stats(),
        }
    }

    /// Puts the driver under a fault plan.
    pub(crate) fn with_faults(self, plan: crate::faults::FaultPlan) -> AnyDriver {
        AnyDriver::Faulty(Box::new(crate::faults::FaultDriver::new(self, plan)))
    }

    /// What the fault layer injected, when there is one.
    pub(crate) fn fault_report(&self) -> Option<crate::faults::FaultReport> {
        match self {
            AnyDriver::Faulty(d) => Some(d.report()),
            _ => None,
        }
    }
}

impl AnyDriver {
    /// [`Driver::push`] to a driver other than io_uring, out of line: io_uring's push is then
    /// told apart with one compare of the tag (a `match` over the three compared twice).
    ///
    /// # Safety
    /// As for [`Driver::push`].
    #[cold]
    #[inline(never)]
    unsafe fn push_other(&mut self, token: Token, op: OpPtr, deadline: Option<Duration>) {
        // SAFETY: forwarded with the caller's guarantee.
        unsafe {
            match self {
                AnyDriver::Uring(d) => d.push(token, op, deadline),
                AnyDriver::Epoll(d) => d.push(token, op, deadline),
                AnyDriver::Faulty(d) => d.push(token, op, deadline),
            }
        }
    }

    /// [`Driver::wait`], offering each completion the io_uring driver reaps to `settle` first,
    /// straight from the completion queue (one it takes is not written to `out`); the other
    /// drivers return every completion in `out`.
    #[inline]
    pub(crate) fn wait_settling(
        &mut self,
        block: bool,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
        settle: impl FnMut(Completion) -> bool,
    ) -> io::Result<()> {
        match self {
            AnyDriver::Uring(d) => d.wait_settling(block, timeout, out, settle),
            _ => self.wait(block, timeout, out),
        }
    }
}

impl Driver for AnyDriver {
    #[inline]
    unsafe fn push(&mut self, token: Token, op: OpPtr, deadline: Option<Duration>) {
        match self {
            // SAFETY: forwarded with the caller's guarantee.
            AnyDriver::Uring(d) => unsafe { d.push(token, op, deadline) },
            // SAFETY: forwarded with the caller's guarantee.
            _ => unsafe { self.push_other(token, op, deadline) },
        }
    }
    #[inline]
    fn cancel(&mut self, token: Token) {
        match self {
            AnyDriver::Uring(d) => d.cancel(token),
            AnyDriver::Epoll(d) => d.cancel(token),
            AnyDriver::Faulty(d) => d.cancel(token),
        }
    }
    #[inline]
    fn wait(
        &mut self,
        block: bool,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        match self {
            AnyDriver::Uring(d) => d.wait(block, timeout, out),
            AnyDriver::Epoll(d) => d.wait(block, timeout, out),
            AnyDriver::Faulty(d) => d.wait(block, timeout, out),
        }
    }
    fn notifier(&self) -> Arc<dyn Notifier> {
        match self {
            AnyDriver::Uring(d) => d.notifier(),
            AnyDriver::Epoll(d) => d.notifier(),
            AnyDriver::Faulty(d) => d.notifier(),
        }
    }
    fn kind(&self) -> super::DriverKind {
        match self {
            AnyDriver::Uring(d) => d.kind(),
            AnyDriver::Epoll(d) => d.kind(),
            AnyDriver::Faulty(d) => d.kind(),
        }
    }
}
