//! Seeded fault injection: the faults a kernel may really produce, on demand, on any driver.
//!
//! A [`FaultPlan`] (a seed, a rate and a set of [`FaultKind`]s) turns on a layer between the run
//! loop and the driver (`layer.rs`). It decides, for each operation pushed, each cancel and each
//! batch of completions, whether to inject a fault, drawing from its own small PRNG seeded by
//! the plan: the same seed and the same sequence of operations give the same faults. Every
//! fault is one the kernel may produce, and every one keeps the driver contract (one completion
//! per operation, the buffer the driver's until then):
//!
//! | kind | what happens |
//! |---|---|
//! | `short` | a read, receive, write or send asks for fewer bytes than it has (at least 1), before submission |
//! | `eintr`, `eagain` | the first submission "failed" with `EINTR`/`EAGAIN` and the layer resubmits it a turn later (absorbed, as the contract says) |
//! | `cancel` | a cancel is held back one reap, so a real completion that arrives meanwhile wins the race |
//! | `reorder` | the completions of a batch are delivered in another order (those of one operation keep theirs, and those naming a provided buffer keep the kernel's) |
//! | `overflow` | the tail of a batch is held back and delivered at the next reap, ahead of newer completions, as the kernel's completion-queue overflow list does |
//! | `enobufs` | a dry buffer ring: a pooled receive completes with `ENOBUFS`; a multishot receive ends with `ENOBUFS` (a last completion without `MORE`, no item), when submitted or after a chunk, and the runtime must submit it again |
//! | `reset` | a receive on a stream socket completes with `ECONNRESET`, a send with `EPIPE` or `ECONNRESET`; the connection is really reset (a TCP socket is disconnected, which sends the peer an RST; another is shut down), so the peer and what follows see it gone too |
//! | `emfile` | an accept or open completes with `EMFILE` or `ENFILE`; a multishot accept ends with one (when submitted or after a connection; the next connection stays in the backlog) |
//! | `enospc` | a write to a regular file completes with `ENOSPC` |
//!
//! The errors are injected instead of submitting the operation, so no byte is lost by the
//! layer itself: a receive that reports `ECONNRESET` took nothing from the socket.
//!
//! Turn it on with [`Builder::faults`](crate::Builder::faults), or for any program built on this
//! crate with the environment variable `PROACTOR_FAULTS` (read when a proactor is built):
//!
//! ```text
//! PROACTOR_FAULTS=seed=42                          every kind, rate 0.05
//! PROACTOR_FAULTS=seed=42,rate=0.2,kinds=short,eintr,reorder
//! PROACTOR_FAULTS=seed=42,kinds=lossless           the kinds that never end a transfer
//! ```
//!
//! What was injected is counted per kind ([`Handle::faults`](crate::Handle::faults)) and logged
//! (`tracing`, target `proactor::faults`) when the proactor is dropped, with its seed, so a
//! failing run can be repeated with the same seed.

mod layer;
mod rng;

pub(crate) use layer::FaultDriver;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// One kind of injected fault (see the [module docs](self) for what each does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FaultKind {
    /// A transfer asks for fewer bytes than it has.
    Short,
    /// A submission interrupted (`EINTR`), resubmitted by the driver.
    Eintr,
    /// A submission refused for now (`EAGAIN`), resubmitted by the driver.
    Eagain,
    /// A cancel that loses the race to the real completion.
    CancelRace,
    /// Completions of one batch delivered in another order.
    Reorder,
    /// Completions held back in an overflow list and delivered at the next reap.
    Overflow,
    /// `ENOBUFS` from a buffer pool.
    Enobufs,
    /// `ECONNRESET` / `EPIPE` on a stream socket.
    Reset,
    /// `EMFILE` / `ENFILE` on an accept or open.
    Emfile,
    /// `ENOSPC` on a file write.
    Enospc,
}

impl FaultKind {
    /// Every kind, in the order counts are reported.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Short,
        FaultKind::Eintr,
        FaultKind::Eagain,
        FaultKind::CancelRace,
        FaultKind::Reorder,
        FaultKind::Overflow,
        FaultKind::Enobufs,
        FaultKind::Reset,
        FaultKind::Emfile,
        FaultKind::Enospc,
    ];

    /// The kinds that never end a transfer with an error: a correct program moves every byte
    /// under them.
    pub const LOSSLESS: [FaultKind; 6] = [
        FaultKind::Short,
        FaultKind::Eintr,
        FaultKind::Eagain,
        FaultKind::CancelRace,
        FaultKind::Reorder,
        FaultKind::Overflow,
    ];

    /// The name used in `PROACTOR_FAULTS` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Short => "short",
            FaultKind::Eintr => "eintr",
            FaultKind::Eagain => "eagain",
            FaultKind::CancelRace => "cancel",
            FaultKind::Reorder => "reorder",
            FaultKind::Overflow => "overflow",
            FaultKind::Enobufs => "enobufs",
            FaultKind::Reset => "reset",
            FaultKind::Emfile => "emfile",
            FaultKind::Enospc => "enospc",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn bit(self) -> u32 {
        1 << self.index()
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FaultKind {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<FaultKind> {
        let s = s.trim().to_ascii_lowercase();
        FaultKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            invalid(format!(
                "unknown fault kind {s:?}: expected one of {}, all or lossless",
                FaultKind::ALL.map(FaultKind::name).join(", ")
            ))
        })
    }
}

/// Which faults to inject, how often, from which seed.
///
/// ```
/// use proactor::faults::{FaultKind, FaultPlan};
/// let plan = FaultPlan::new(7).rate(0.2).kinds(&[FaultKind::Short, FaultKind::Reorder]);
/// let p = proactor::Proactor::builder().faults(plan).build()?;
/// p.block_on(proactor::submit(proactor::op::Nop))?;
/// assert_eq!(p.faults().unwrap().plan.seed(), 7);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    seed: u64,
    rate: f64,
    kinds: u32,
}

impl FaultPlan {
    /// Every kind of fault at rate 0.05, from `seed`.
    pub fn new(seed: u64) -> FaultPlan {
        FaultPlan { seed, rate: 0.05, kinds: FaultKind::ALL.iter().fold(0, |b, k| b | k.bit()) }
    }

    /// The probability (0 to 1) of a fault per operation pushed, per cancel and per batch.
    pub fn rate(mut self, rate: f64) -> FaultPlan {
        self.rate = if rate.is_finite() { rate.clamp(0.0, 1.0) } else { 0.0 };
        self
    }

    /// Injects only these kinds.
    pub fn kinds(mut self, kinds: &[FaultKind]) -> FaultPlan {
        self.kinds = kinds.iter().fold(0, |b, k| b | k.bit());
        self
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The rate.
    pub fn probability(&self) -> f64 {
        self.rate
    }

    /// Whether `kind` is injected.
    pub fn injects(&self, kind: FaultKind) -> bool {
        self.kinds & kind.bit() != 0
    }

    /// The same plan from another seed.
    pub fn with_seed(mut self, seed: u64) -> FaultPlan {
        self.seed = seed;
        self
    }

    /// Parses `seed=N[,rate=R][,kinds=K[,K...]]` (kinds may also be joined by `+`; `all` and
    /// `lossless` name sets). A missing seed is an error: a run must be repeatable.
    ///
    /// ```
    /// let plan: proactor::faults::FaultPlan = "seed=3,rate=0.5,kinds=short,eintr".parse()?;
    /// assert_eq!(plan.seed(), 3);
    /// assert!(plan.injects(proactor::faults::FaultKind::Eintr));
    /// assert!(!plan.injects(proactor::faults::FaultKind::Reset));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn parse(spec: &str) -> io::Result<FaultPlan> {
        let mut plan = FaultPlan::new(0);
        let (mut seed, mut kinds, mut in_kinds) = (None, None::<u32>, false);
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None if in_kinds => ("kinds", part),
                None => return Err(invalid(format!("fault plan: {part:?} is not key=value"))),
            };
            in_kinds = key == "kinds";
            match key {
                "seed" => {
                    seed = Some(value.parse::<u64>().map_err(|e| {
                        invalid(format!("fault plan: seed {value:?} is not a number: {e}"))
                    })?)
                }
                "rate" => {
                    let r = value.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r));
                    let r = r.ok_or_else(|| {
                        invalid(format!("fault plan: rate {value:?} is not between 0 and 1"))
                    })?;
                    plan = plan.rate(r);
                }
                "kinds" => {
                    let mut bits = kinds.unwrap_or(0);
                    for name in value.split('+').map(str::trim).filter(|n| !n.is_empty()) {
                        bits |= match name {
                            "all" => FaultKind::ALL.iter().fold(0, |b, k| b | k.bit()),
                            "lossless" => FaultKind::LOSSLESS.iter().fold(0, |b, k| b | k.bit()),
                            other => other.parse::<FaultKind>()?.bit(),
                        };
                    }
                    kinds = Some(bits);
                }
                other => {
                    return Err(invalid(format!(
                        "fault plan: unknown key {other:?} (expected seed, rate, kinds)"
                    )))
                }
            }
        }
        plan.seed = seed.ok_or_else(|| invalid("fault plan: seed=N is required".into()))?;
        if let Some(bits) = kinds {
            plan.kinds = bits;
        }
        Ok(plan)
    }

    /// The plan in `PROACTOR_FAULTS`, if set (empty or `off`: none). An invalid value is an
    /// error.
    pub fn from_env() -> io::Result<Option<FaultPlan>> {
        match std::env::var("PROACTOR_FAULTS") {
            Ok(v) if !v.trim().is_empty() && v.trim() != "off" => FaultPlan::parse(&v)
                .map(Some)
                .map_err(|e| io::Error::new(e.kind(), format!("PROACTOR_FAULTS={v:?}: {e}"))),
            _ => Ok(None),
        }
    }

    /// The plan from `PROACTOR_FAULTS` for the next proactor this process builds: the first
    /// one gets the seed as written, each later one (another thread's, say) a seed derived from
    /// it and its number, so threads do not inject in lock step.
    pub(crate) fn from_env_for_next() -> io::Result<Option<FaultPlan>> {
        static BUILT: AtomicU64 = AtomicU64::new(0);
        let Some(plan) = FaultPlan::from_env()? else { return Ok(None) };
        let n = BUILT.fetch_add(1, Ordering::Relaxed);
        Ok(Some(if n == 0 { plan } else { plan.with_seed(rng::mix(plan.seed ^ n)) }))
    }
}

impl fmt::Display for FaultPlan {
    /// The form [`FaultPlan::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed={},rate={},kinds=", self.seed, self.rate)?;
        let names: Vec<&str> =
            FaultKind::ALL.into_iter().filter(|k| self.injects(*k)).map(FaultKind::name).collect();
        f.write_str(&names.join("+"))
    }
}

impl std::str::FromStr for FaultPlan {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<FaultPlan> {
        FaultPlan::parse(s)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    counts: [u64; FaultKind::ALL.len()],
}

impl FaultCounts {
    /// Faults of `kind` injected so far.
    pub fn get(&self, kind: FaultKind) -> u64 {
        self.counts[kind.index()]
    }

    /// Faults of every kind injected so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Each kind with its count, in [`FaultKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (FaultKind, u64)> + '_ {
        FaultKind::ALL.into_iter().map(|k| (k, self.get(k)))
    }

    /// Adds `other`'s counts to these (to sum several proactors').
    pub fn add(&mut self, other: &FaultCounts) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }

    pub(crate) fn bump(&mut self, kind: FaultKind) {
        self.counts[kind.index()] += 1;
    }
}

impl fmt::Display for FaultCounts {
    /// `short=3 eintr=1 ...`, every kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={n}")?;
        }
        Ok(())
    }
}

/// A proactor's fault injection: its plan and what it injected so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultReport {
    /// The plan in force (with the seed this proactor used).
    pub plan: FaultPlan,
    /// Faults injected so far, per kind.
    pub counts: FaultCounts,
}

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PROACTOR_FAULTS={} injected {} ({})",
            self.plan,
            self.counts.total(),
            self.counts
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        let p = FaultPlan::parse("seed=9,rate=0.25,kinds=short,reset+emfile").unwrap();
        assert_eq!(p.seed(), 9);
        assert_eq!(p.probability(), 0.25);
        assert!(p.injects(FaultKind::Short) && p.injects(FaultKind::Reset));
        assert!(p.injects(FaultKind::Emfile) && !p.injects(FaultKind::Eintr));
        assert_eq!(FaultPlan::parse(&p.to_string()).unwrap(), p);
        let l = FaultPlan::parse("seed=1,kinds=lossless").unwrap();
        assert!(l.injects(FaultKind::Overflow) && !l.injects(FaultKind::Reset));
        assert_eq!(FaultPlan::parse("seed=1").unwrap().kinds, FaultPlan::new(1).kinds);
    }

    #[test]
    fn refuses_what_it_cannot_repeat() {
        assert!(FaultPlan::parse("rate=0.1").is_err());
        assert!(FaultPlan::parse("seed=x").is_err());
        assert!(FaultPlan::parse("seed=1,rate=2").is_err());
        assert!(FaultPlan::parse("seed=1,kinds=bogus").is_err());
        assert!(FaultPlan::parse("seed=1,colour=red").is_err());
    }
}
