//! Ring setup: the flags a user can ask for, and the fall-back ladder when the kernel refuses.

use io_uring::IoUring;
use std::io;

/// How the io_uring ring is set up. The defaults were measured on Linux 6.18: a single-issuer
/// ring with deferred task running gave the highest echo throughput, cooperative task running was
/// in between, a plain ring the lowest (see `docs/architecture.md`).
#[derive(Debug, Clone)]
pub struct RingConfig {
    /// Submission queue entries (a power of two; the kernel rounds up).
    pub entries: u32,
    /// Completion queue entries; 0 means twice `entries`.
    pub cq_entries: u32,
    /// `IORING_SETUP_SINGLE_ISSUER`: only the proactor's thread submits.
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN`: completion work runs only when the loop asks for events.
    pub defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN`: no interrupting IPIs for completion work.
    pub coop_taskrun: bool,
    /// `IORING_SETUP_SQPOLL` with this idle time in milliseconds (off by default: it burns a core).
    pub sqpoll_idle_ms: Option<u32>,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            entries: 256,
            cq_entries: 0,
            single_issuer: true,
            defer_taskrun: true,
            coop_taskrun: true,
            sqpoll_idle_ms: None,
        }
    }
}

/// Builds the ring with the flags asked for, dropping the newer ones in turn if the kernel
/// rejects them with `EINVAL` (older kernels), so a ring is made wherever io_uring works at all.
pub(super) fn build_ring(config: &RingConfig) -> io::Result<(IoUring, RingConfig)> {
    let mut attempt = config.clone();
    loop {
        match try_build(&attempt) {
            Ok(ring) => return Ok((ring, attempt)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                if attempt.defer_taskrun {
                    attempt.defer_taskrun = false;
                } else if attempt.single_issuer {
                    attempt.single_issuer = false;
                } else if attempt.coop_taskrun {
                    attempt.coop_taskrun = false;
                } else if attempt.sqpoll_idle_ms.is_some() {
                    attempt.sqpoll_idle_ms = None;
                } else {
                    return Err(e);
                }
                tracing::debug!("io_uring setup refused a flag, retrying with {attempt:?}");
            }
            Err(e) => return Err(e),
        }
    }
}

fn try_build(config: &RingConfig) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    let cq =
        if config.cq_entries == 0 { config.entries.saturating_mul(2) } else { config.cq_entries };
    builder.setup_cqsize(cq.max(config.entries).max(2)).setup_clamp();
    if config.single_issuer {
        builder.setup_single_issuer();
    }
    if config.defer_taskrun {
        builder.setup_defer_taskrun().setup_taskrun_flag();
    } else if config.coop_taskrun {
        builder.setup_coop_taskrun().setup_taskrun_flag();
    }
    if let Some(idle) = config.sqpoll_idle_ms {
        builder.setup_sqpoll(idle);
    }
    // Two entries at least: an operation with a deadline is pushed as a linked pair.
    builder.build(config.entries.max(2))
}
