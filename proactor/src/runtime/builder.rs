//! Settings of a new proactor.

use super::core::{Core, Io};
use super::executor::Executor;
use super::panic::{PanicHook, PanicPolicy, PanicReport};
use super::table::Table;
use super::{Handle, Proactor};
use crate::driver::{AnyDriver, Driver, DriverChoice};
use crate::faults::FaultPlan;
use crate::RingConfig;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::Instant;

/// Builds a [`Proactor`].
///
/// ```
/// let p = proactor::Proactor::builder()
///     .entries(64)
///     .max_in_flight(1024)
///     .build()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Builder {
    driver: Option<DriverChoice>,
    ring: RingConfig,
    max_in_flight: Option<usize>,
    abort_on_panic: bool,
    panic_hook: Option<PanicHook>,
    faults: Option<Option<FaultPlan>>,
    latency: Option<bool>,
}

impl Builder {
    /// Default settings.
    pub fn new() -> Self {
        Builder::default()
    }

    /// The driver policy. Wins over `PROACTOR_DRIVER`.
    pub fn driver(mut self, choice: DriverChoice) -> Self {
        self.driver = Some(choice);
        self
    }

    /// Submission queue size of the io_uring ring (default 256).
    pub fn entries(mut self, entries: u32) -> Self {
        self.ring = self.ring.entries(entries);
        self
    }

    /// The cap on the time a blocking wait of the io_uring driver may add to gather a batch of
    /// completions (see [`RingConfig::min_wait`]; default 200 µs, `None`: one completion per
    /// wait). The epoll driver ignores it.
    pub fn min_wait(mut self, cap: Option<std::time::Duration>) -> Self {
        self.ring = self.ring.min_wait(cap);
        self
    }

    /// Every io_uring setup setting at once (see [`RingConfig`]); replaces an earlier
    /// [`Builder::entries`].
    pub fn ring(mut self, ring: RingConfig) -> Self {
        self.ring = ring;
        self
    }

    /// Caps the operations in flight. Past the cap, new operations wait their turn in order;
    /// none fails and none is dropped.
    pub fn max_in_flight(mut self, cap: usize) -> Self {
        self.max_in_flight = Some(cap.max(1));
        self
    }

    /// Abort the process when a handler or task panics, instead of reporting and carrying on.
    pub fn abort_on_panic(mut self, abort: bool) -> Self {
        self.abort_on_panic = abort;
        self
    }

    /// Called with every caught panic of a handler or task.
    pub fn on_panic(mut self, hook: impl Fn(&PanicReport) + 'static) -> Self {
        self.panic_hook = Some(Rc::new(hook));
        self
    }

    /// Injects the faults of `plan` (see [`crate::faults`]). Wins over `PROACTOR_FAULTS`.
    pub fn faults(mut self, plan: FaultPlan) -> Self {
        self.faults = Some(Some(plan));
        self
    }

    /// Injects no faults, whatever `PROACTOR_FAULTS` says.
    pub fn no_faults(mut self) -> Self {
        self.faults = Some(None);
        self
    }

    /// Keeps submit-to-complete times per kind of operation ([`Handle::stats`]); off by
    /// default (it costs a table write per submission and a lookup per completion). Wins over
    /// `PROACTOR_STATS`, which turns it on (`PROACTOR_STATS=1`) and also logs a `stats:` line
    /// (`tracing`, target `proactor::stats`) when the proactor is dropped.
    pub fn latency_stats(mut self, on: bool) -> Self {
        self.latency = Some(on);
        self
    }

    /// Chooses the driver and sets it up.
    pub fn build(self) -> io::Result<Proactor> {
        let choice = match self.driver {
            Some(c) => c,
            None => DriverChoice::from_env()?.unwrap_or_default(),
        };
        let faults = match self.faults {
            Some(plan) => plan,
            None => FaultPlan::from_env_for_next()?,
        };
        let (mut driver, fallback_reason) = AnyDriver::open(choice, &self.ring)?;
        if let Some(plan) = faults {
            driver = driver.with_faults(plan);
        }
        let log_stats = std::env::var("PROACTOR_STATS").is_ok_and(|v| v.trim() == "1");
        let latency = self.latency.unwrap_or(log_stats);
        let notifier = driver.notifier();
        let kind = driver.kind();
        let core = Core {
            io: RefCell::new(Io {
                driver,
                ops: Table::with_capacity(self.ring.sq_size() as usize),
            }),
            memory: super::memory::OpMemory::new(),
            in_flight: Cell::new(0),
            admission: RefCell::new(VecDeque::new()),
            max_in_flight: self.max_in_flight,
            plain: self.max_in_flight.is_none() && !latency,
            generation: Cell::new(0),
            now_ms: Cell::new(0),
            epoch: Instant::now(),
            completions: RefCell::new(Vec::with_capacity(self.ring.sq_size() as usize * 2)),
            last_woken: RefCell::new(None),
            batches: Cell::new(0),
            executor: Executor::new(notifier.clone()),
            panics: PanicPolicy { abort: self.abort_on_panic, hook: self.panic_hook },
            stopped: Cell::new(false),
            shutting_down: Cell::new(false),
            notifier,
            remote: Default::default(),
            fallback_reason,
            latency: latency.then(|| Box::new(super::latency::Latency::new())),
            log_stats,
            timers: RefCell::new(super::timers::Timers::new()),
            kind,
        };
        Ok(Proactor { handle: Handle { core: Rc::new(core) } })
    }
}
