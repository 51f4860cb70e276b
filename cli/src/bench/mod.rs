//! The benchmark behind `proactor bench`: echo servers started as their own processes, a
//! built-in load generator on another core, and a report (table, JSON, chart) that compares every
//! server with tokio's current-thread runtime.
//!
//! `proactor bench hyper` lives in `hyper` (hyper and axum on proactor against tokio, under wrk).
//!
//! Files: `spawn` (the servers under test and how they start), `servers` (the baseline servers),
//! `loadgen` (the load), `blocking` (a second, separately written load generator), `idle` (the idle-connection test), `proc` (/proc figures, pinning),
//! `settle` (spreads over rounds, re-runs, verdicts), `report` (figures, JSON), `table` (the
//! table), `targets` (the targets), `plot` (the SVG chart), `soak` (every app under
//! injected faults, driven by the load generator).

pub mod agree;
pub mod blocking;
pub mod hyper;
pub mod idle;
pub mod loadgen;
pub mod monoio_peer;
pub mod plot;
pub mod proc;
pub mod report;
pub mod servers;
pub mod settle;
pub mod soak;
pub mod spawn;
mod table;
pub mod targets;

use report::{IdleResult, Report, RunResult};
use spawn::{ServerKind, ServerProc};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A load generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadGen {
    /// One thread on raw edge-triggered epoll (`loadgen.rs`).
    Epoll,
    /// A thread per connection, blocking std I/O (`blocking.rs`), written apart to check the
    /// first one's ratios.
    Threads,
}

impl std::fmt::Display for LoadGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoadGen::Epoll => "epoll",
            LoadGen::Threads => "threads",
        })
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Servers, in report order.
    pub servers: Vec<ServerKind>,
    /// Connection counts of the matrix.
    pub conns: Vec<usize>,
    /// Message sizes of the matrix, bytes.
    pub sizes: Vec<usize>,
    /// Unmeasured time before each window.
    pub warmup: Duration,
    /// Each measured window.
    pub window: Duration,
    /// Rounds per point: servers take turns this many times (the order reversed every other
    /// round) and the median round is reported, so a burst of other work on the machine hits one
    /// round, not one server.
    pub rounds: usize,
    /// A point whose spread is above this gets extra rounds (`settle::MAX_SPREAD`).
    pub max_spread: f64,
    /// At most this many extra rounds per point (`settle::EXTRA_ROUNDS`).
    pub extra_rounds: usize,
    /// The load generators to run every point with, each settled on its own.
    pub loadgens: Vec<LoadGen>,
    /// Idle connections to hold (0: skip the idle test).
    pub idle: usize,
    /// Also run 1 connection with server and load generator on the same core.
    pub same_core: bool,
    /// Offer this many messages per second (epoll load generator only) instead of as many as
    /// the servers answer: every server then works at the same load, and its CPU per message
    /// is compared at equal work. At full speed both the server and the one-thread load
    /// generator run near 90–95 % of their cores, so how fast the load generator happens to
    /// go sets the server's batches and its CPU per message (see `docs/bench.md`).
    pub rate: Option<f64>,
}

/// Where the server and the load generator run.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    /// The server's CPU, if pinned.
    pub server: Option<usize>,
    /// The load generator's CPU, if pinned.
    pub client: Option<usize>,
}

impl Placement {
    /// Different cores when there are at least two, else unpinned.
    pub fn split() -> Placement {
        let cpus = proc::allowed_cpus();
        if cpus.len() >= 2 {
            Placement { server: Some(cpus[0]), client: Some(cpus[1]) }
        } else {
            Placement { server: None, client: None }
        }
    }

    /// Both on the server's core (when there is a split to undo).
    pub fn same(self) -> Option<Placement> {
        let cpu = self.server?;
        Some(Placement { server: Some(cpu), client: Some(cpu) })
    }

    /// In words, for the report.
    pub fn describe(&self) -> String {
        let place = match (self.server, self.client) {
            (Some(s), Some(c)) if s == c => format!("server and load generator both on CPU {s}"),
            (Some(s), Some(c)) => format!("server pinned to CPU {s}, load generator to CPU {c}"),
            _ => "not pinned (fewer than 2 CPUs available)".into(),
        };
        // Probe on a short-lived thread whether the bench may raise priorities.
        let raised = std::thread::spawn(|| proc::raise_priority(0)).join().unwrap_or(false);
        if raised {
            format!("{place}, both at {}", proc::priority_words())
        } else {
            format!("{place}, normal priority")
        }
    }
}

/// One matrix point.
#[derive(Clone, Copy, Debug)]
struct Point {
    conns: usize,
    size: usize,
    same_core: bool,
}

/// Runs everything in `cfg` and gathers the report. Failures of single runs are recorded in it
/// (and make `Report::ok` false); only a setup failure is an `Err`.
pub fn run(cfg: &Config) -> anyhow::Result<Report> {
    let want_fds = (cfg.idle.max(*cfg.conns.iter().max().unwrap_or(&0)) as u64 + 256).max(1024);
    let nofile = proc::raise_nofile(want_fds)?;
    if nofile < want_fds {
        anyhow::bail!(
            "the open-file limit is {nofile}, the bench needs {want_fds}: raise `ulimit -n` or \
             lower --idle / --conns"
        );
    }
    let split = Placement::split();
    let mut points: Vec<Point> = Vec::new();
    for &size in &cfg.sizes {
        for &conns in &cfg.conns {
            points.push(Point { conns, size, same_core: false });
        }
    }
    if cfg.same_core && split.same().is_some() {
        let size = *cfg.sizes.iter().min().unwrap_or(&64);
        points.push(Point { conns: 1, size, same_core: true });
    }
    let rounds = cfg.rounds.max(1);
    let planned = points.len() * cfg.loadgens.len() * cfg.servers.len() * rounds;
    let total = planned + if cfg.idle > 0 { cfg.servers.len() } else { 0 };
    let progress = Progress::new(total as u64);
    // Extra rounds may add at most half the planned time to the run (at least 10 s).
    let mut rerun_budget =
        (cfg.warmup + cfg.window).mul_f64(planned as f64 * 0.5).max(Duration::from_secs(10));
    let mut report = Report::new(cfg, &split);
    for p in &points {
        for &lg in &cfg.loadgens {
            let runs = settle_point(cfg, *p, lg, split, &progress, &mut rerun_budget);
            report.runs.extend(runs);
        }
    }
    if cfg.idle > 0 {
        for &server in &cfg.servers {
            progress.step(format!("{server}: {} idle connections", cfg.idle));
            report.idle.push(run_idle(server, split, cfg.idle));
        }
    }
    progress.finish();
    report.finish();
    Ok(report)
}

/// Runs one point with one load generator: `cfg.rounds` rounds, the servers taking turns in an
/// order reversed every other round (A B C, C B A, …), then extra rounds while `settle::decide`
/// asks for them and `budget` lasts; returns each server's settled result.
fn settle_point(
    cfg: &Config,
    p: Point,
    lg: LoadGen,
    split: Placement,
    progress: &Progress,
    budget: &mut Duration,
) -> Vec<RunResult> {
    let place = if p.same_core { split.same().unwrap_or(split) } else { split };
    let want = cfg.rounds.max(1);
    let n = cfg.servers.len();
    let mut per_server: Vec<Vec<RunResult>> = vec![Vec::new(); n];
    let mut extra = 0;
    let mut round = 0;
    loop {
        round += 1;
        let started = Instant::now();
        let order: Vec<usize> =
            if round % 2 == 1 { (0..n).collect() } else { (0..n).rev().collect() };
        for j in order {
            let server = cfg.servers[j];
            let where_ = if p.same_core { ", same core" } else { "" };
            let by = if cfg.loadgens.len() > 1 { format!(", {lg} load") } else { String::new() };
            let of = if round > want {
                format!(", extra round {}/{}", round - want, cfg.extra_rounds)
            } else if want > 1 {
                format!(", round {round}/{want}")
            } else {
                String::new()
            };
            progress.step(format!("{server}: {} conn × {} B{where_}{by}{of}", p.conns, p.size));
            per_server[j].push(run_point(server, lg, p, place, cfg));
        }
        if round > want {
            *budget = budget.saturating_sub(started.elapsed());
        }
        if round < want {
            continue;
        }
        // A failing server fails the bench anyway: no re-run for it.
        let failed = per_server.iter().flatten().any(|r| r.error_count > 0);
        let statuses: Vec<settle::Status> = per_server
            .iter()
            .map(|runs| {
                let samples: Vec<settle::Sample> = runs.iter().map(RunResult::sample).collect();
                let disturbed: Vec<bool> = runs.iter().map(RunResult::disturbed).collect();
                let pick = settle::tightest_among(&samples, &disturbed, want);
                settle::status_of(&pick, cfg.max_spread)
            })
            .collect();
        let max_extra = if failed { 0 } else { cfg.extra_rounds };
        // Another round fits if the budget still holds one as long as the last.
        let time_left = *budget >= started.elapsed();
        match settle::decide(&statuses, extra, max_extra, time_left) {
            settle::Next::Rerun => {
                extra += 1;
                progress.grow(n as u64);
            }
            settle::Next::Done(_) => break,
        }
    }
    per_server.into_iter().map(|runs| RunResult::settled(runs, want, cfg.max_spread)).collect()
}

fn run_point(
    server: ServerKind,
    lg: LoadGen,
    p: Point,
    place: Placement,
    cfg: &Config,
) -> RunResult {
    let mut result = RunResult::empty(server, lg, p.conns, p.size, p.same_core);
    let outcome = (|| -> anyhow::Result<()> {
        // A server asked to use several threads may use every core (the load generator's too).
        let cpu = if server.threads() > 1 { None } else { place.server };
        let mut proc_ = ServerProc::start(server, cpu)?;
        let load = loadgen::Load {
            addr: proc_.addr,
            server_pid: proc_.pid,
            conns: p.conns,
            size: p.size,
            warmup: cfg.warmup,
            window: cfg.window,
            rate: cfg.rate,
        };
        let measured = on_cpu(place.client, move || match lg {
            LoadGen::Epoll => loadgen::run(&load),
            LoadGen::Threads => blocking::run(&load),
        })?;
        let mem = proc::memory(proc_.pid).unwrap_or_default();
        let threads = proc::threads(proc_.pid).unwrap_or(0);
        proc_.check_alive()?;
        result.fill(&measured, mem.peak_kib, threads);
        Ok(())
    })();
    if let Err(e) = outcome {
        result.fail(format!("{e:#}"));
    }
    result
}

fn run_idle(server: ServerKind, place: Placement, conns: usize) -> IdleResult {
    let outcome = (|| -> anyhow::Result<idle::IdleMemory> {
        let mut proc_ = ServerProc::start(server, place.server)?;
        let (addr, pid) = (proc_.addr, proc_.pid);
        let mem = on_cpu(place.client, move || idle::run(addr, pid, conns))?;
        proc_.check_alive()?;
        Ok(mem)
    })();
    IdleResult::new(server, conns, outcome)
}

/// Runs `f` on a new thread pinned to `cpu` (when given) and returns its result.
fn on_cpu<T: Send + 'static>(
    cpu: Option<usize>,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    std::thread::Builder::new()
        .name("bench-load".into())
        .spawn(move || {
            proc::place(0, cpu);
            f()
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the load generator panicked"))?
}

/// The progress line on stderr: a bar on a terminal, a line per step otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: std::cell::Cell<u64>,
    done: std::cell::Cell<u64>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{elapsed:>4} [{bar:30}] {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Progress { bar, total: std::cell::Cell::new(total), done: std::cell::Cell::new(0) }
    }

    /// Adds `n` steps to the total (extra rounds).
    fn grow(&self, n: u64) {
        self.total.set(self.total.get() + n);
        if let Some(bar) = &self.bar {
            bar.set_length(self.total.get());
        }
    }

    fn step(&self, msg: String) {
        let n = self.done.get() + 1;
        self.done.set(n);
        match &self.bar {
            Some(bar) => {
                bar.set_position(n - 1);
                bar.set_message(msg);
            }
            None => eprintln!("[{n}/{}] {msg}", self.total.get()),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
