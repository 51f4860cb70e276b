//! Choosing the driver, once, at start: probe io_uring, fall back to epoll, say why.

use super::epoll::EpollDriver;
use super::uring::{RingConfig, UringDriver};
use super::{Completion, Driver, Notifier, OpPtr, Token};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// The driver in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverChoice {
    /// io_uring if the kernel offers everything the proactor uses, else epoll (logged once).
    #[default]
    Auto,
    /// io_uring or an error saying why not.
    Uring,
    /// Always the epoll emulation.
    Epoll,
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

/// The chosen driver, kept in an enum so the run loop's calls are static.
pub(crate) enum AnyDriver {
    Uring(UringDriver),
    Epoll(EpollDriver),
}

/// Why io_uring is not usable here, in plain words; `None` if it is.
pub(crate) fn uring_unusable(config: &RingConfig) -> Option<String> {
    if let Err(e) = UringDriver::new(config) {
        return Some(explain_setup_error(&e));
    }
    match super::uring::probe_kernel() {
        Err(e) => Some(format!("io_uring probe failed: {e}")),
        Ok(p) => {
            let missing = p.missing_required();
            (!missing.is_empty())
                .then(|| format!("the kernel lacks io_uring opcode(s) {}", missing.join(", ")))
        }
    }
}

/// Turns an `io_uring_setup` failure into the reason a user can act on.
pub(crate) fn explain_setup_error(e: &io::Error) -> String {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    match e.raw_os_error() {
        Some(libc::EPERM) if disabled == 2 => {
            "io_uring is disabled by kernel.io_uring_disabled=2".to_string()
        }
        Some(libc::EPERM) if disabled == 1 => {
            "io_uring is restricted by kernel.io_uring_disabled=1 (process not in io_uring_group)"
                .to_string()
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("io_uring_setup is blocked (seccomp or an LSM policy): {e}")
        }
        Some(libc::ENOSYS) => {
            format!("io_uring_setup is not available (kernel without io_uring, or blocked by seccomp): {e}")
        }
        Some(libc::ENOMEM) => format!("io_uring ring setup failed: memlock limit too low ({e})"),
        _ => format!("io_uring setup failed: {e}"),
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
            DriverChoice::Uring => match uring_unusable(config) {
                None => Ok((AnyDriver::Uring(UringDriver::new(config)?), None)),
                Some(why) => Err(io::Error::new(io::ErrorKind::Unsupported, why)),
            },
            DriverChoice::Auto => match uring_unusable(config) {
                None => Ok((AnyDriver::Uring(UringDriver::new(config)?), None)),
                Some(why) => {
                    tracing::warn!("falling back to the epoll driver: {why}");
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
        }
    }
}

impl Driver for AnyDriver {
    #[inline]
    unsafe fn push(&mut self, token: Token, op: OpPtr, deadline: Option<Duration>) {
        // SAFETY: forwarded with the caller's guarantee.
        unsafe {
            match self {
                AnyDriver::Uring(d) => d.push(token, op, deadline),
                AnyDriver::Epoll(d) => d.push(token, op, deadline),
            }
        }
    }
    #[inline]
    fn cancel(&mut self, token: Token) {
        match self {
            AnyDriver::Uring(d) => d.cancel(token),
            AnyDriver::Epoll(d) => d.cancel(token),
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
        }
    }
    fn notifier(&self) -> Arc<dyn Notifier> {
        match self {
            AnyDriver::Uring(d) => d.notifier(),
            AnyDriver::Epoll(d) => d.notifier(),
        }
    }
    fn kind(&self) -> super::DriverKind {
        match self {
            AnyDriver::Uring(d) => d.kind(),
            AnyDriver::Epoll(d) => d.kind(),
        }
    }
}
