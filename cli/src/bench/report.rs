//! The bench's results: every raw figure (serialised as the `--json` file), the table on stdout
//! with each server's ratio to tokio current-thread, and the targets checked in words.

use super::idle::IdleMemory;
use super::loadgen::Measured;
use super::settle::{self, Sample, Status};
use super::spawn::ServerKind;
use super::{proc, Config, LoadGen, Placement};
use serde::Serialize;

/// The whole report.
#[derive(Serialize)]
pub struct Report {
    /// The proactor version that ran it.
    pub version: String,
    /// `uname -r`.
    pub kernel: String,
    /// The CPU model.
    pub cpu_model: String,
    /// CPUs this process may use.
    pub cpus: usize,
    /// Where server and load generator ran.
    pub pinning: String,
    /// The matrix and windows.
    pub config: ConfigOut,
    /// Server names, in report order.
    pub servers: Vec<String>,
    /// The server ratios are taken against.
    pub reference: String,
    /// One entry per server and matrix point.
    pub runs: Vec<RunResult>,
    /// One entry per server, when the idle test ran.
    pub idle: Vec<IdleResult>,
    /// The targets, each checked.
    pub targets: Vec<Target>,
    /// With two load generators: each server's ratios under both, side by side.
    pub agreement: Vec<super::agree::Agreement>,
    /// Total errors (connection errors, mismatches, stalls, servers that failed).
    pub errors: u64,
    /// No error and no mismatched byte anywhere.
    pub ok: bool,
}

/// The configuration, as run.
#[derive(Serialize)]
pub struct ConfigOut {
    /// Connection counts.
    pub conns: Vec<usize>,
    /// Message sizes, bytes.
    pub sizes: Vec<usize>,
    /// Warm-up per run, seconds.
    pub warmup_s: f64,
    /// Measured window per run, seconds.
    pub window_s: f64,
    /// Rounds per point (the median of the rounds that agree best is reported).
    pub rounds: usize,
    /// The largest spread ((max − min) / median over the used rounds) of a settled point.
    pub max_spread: f64,
    /// Extra rounds an unsettled point may get.
    pub extra_rounds: usize,
    /// The load generators, in report order (the first is the one the targets use first).
    pub loadgens: Vec<String>,
    /// Idle connections held.
    pub idle_conns: usize,
    /// The offered load, messages per second (`None`: as fast as each server answers).
    pub rate: Option<f64>,
}

/// One server at one matrix point.
#[derive(Serialize, Clone)]
pub struct RunResult {
    /// Server name.
    pub server: String,
    /// The load generator that drove it (`epoll` or `threads`).
    pub loadgen: String,
    /// Connections.
    pub conns: usize,
    /// Message size, bytes.
    pub size: usize,
    /// Server and load generator on the same core.
    pub same_core: bool,
    /// Whether this server's used rounds agree within the bound (see `settle`).
    pub status: Status,
    /// Spread of messages/s over the used rounds, (max − min) / median (`null`: one round).
    pub msgs_spread: Option<f64>,
    /// Spread of server CPU per message over the used rounds.
    pub cpu_spread: Option<f64>,
    /// Spread of p99 over the used rounds (reported; re-runs do not aim at it).
    pub p99_spread: Option<f64>,
    /// Measured window, seconds.
    pub secs: f64,
    /// Round trips completed and checked in the window.
    pub messages: u64,
    /// Round trips per second.
    pub msgs_per_sec: f64,
    /// Echoed megabytes (10^6) per second, one direction.
    pub mb_per_sec: f64,
    /// Round-trip latency percentiles and mean, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Server CPU (user + system) over the window, seconds.
    pub server_cpu_s: f64,
    /// Server CPU seconds per million messages.
    pub server_cpu_s_per_million: f64,
    /// Server CPU use over the window, in cores.
    pub server_cpu_share: f64,
    /// Server peak resident memory (VmHWM), KiB.
    pub server_peak_rss_kib: u64,
    /// Server threads at the end of the run.
    pub server_threads: u64,
    /// Load generator CPU over the window, seconds.
    pub client_cpu_s: f64,
    /// Load generator CPU use, in cores (near 1.0: it may be the bottleneck).
    pub client_cpu_share: f64,
    /// Share of the window the server's threads spent runnable but waiting for a CPU (other
    /// work on its CPU; `proc::sched_wait`).
    pub server_wait_share: f64,
    /// The same for the load generator.
    pub client_wait_share: f64,
    /// Fewest round trips one connection completed in the window (0: a connection starved).
    pub conn_min_msgs: u64,
    /// Most round trips one connection completed in the window.
    pub conn_max_msgs: u64,
    /// Longest wait of one connection for its first echo, ms (a server slow to accept).
    pub first_echo_max_ms: f64,
    /// Echoes that differed from what was sent.
    pub mismatches: u64,
    /// Every round's headline figures, in the order run, each marked used or not (the figures
    /// above are the median used round's, by messages/s).
    pub rounds: Vec<RoundFigures>,
    /// Errors of any kind.
    pub error_count: u64,
    /// The first few errors, in words.
    pub errors: Vec<String>,
}

impl RunResult {
    /// A result with no figures yet.
    pub fn empty(
        server: ServerKind,
        loadgen: LoadGen,
        conns: usize,
        size: usize,
        same_core: bool,
    ) -> RunResult {
        RunResult {
            server: server.to_string(),
            loadgen: loadgen.to_string(),
            conns,
            size,
            same_core,
            status: Status::Single,
            msgs_spread: None,
            cpu_spread: None,
            p99_spread: None,
            secs: 0.0,
            messages: 0,
            msgs_per_sec: 0.0,
            mb_per_sec: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            max_us: 0.0,
            mean_us: 0.0,
            server_cpu_s: 0.0,
            server_cpu_s_per_million: 0.0,
            server_cpu_share: 0.0,
            server_peak_rss_kib: 0,
            server_threads: 0,
            client_cpu_s: 0.0,
            client_cpu_share: 0.0,
            server_wait_share: 0.0,
            client_wait_share: 0.0,
            conn_min_msgs: 0,
            conn_max_msgs: 0,
            first_echo_max_ms: 0.0,
            mismatches: 0,
            rounds: Vec::new(),
            error_count: 0,
            errors: Vec::new(),
        }
    }

    /// Fills in the figures of a finished run.
    pub fn fill(&mut self, m: &Measured, peak_kib: u64, threads: u64) {
        let secs = m.elapsed.as_secs_f64().max(1e-9);
        let us = |q: f64| m.latency.value_at_quantile(q) as f64 / 1000.0;
        self.secs = secs;
        self.messages = m.messages;
        self.msgs_per_sec = m.messages as f64 / secs;
        self.mb_per_sec = (m.messages * self.size as u64) as f64 / secs / 1e6;
        if m.messages > 0 {
            self.p50_us = us(0.5);
            self.p99_us = us(0.99);
            self.p999_us = us(0.999);
            self.max_us = m.latency.max() as f64 / 1000.0;
            self.mean_us = m.latency.mean() / 1000.0;
        }
        self.server_cpu_s = m.server_cpu.as_secs_f64();
        if m.messages > 0 {
            self.server_cpu_s_per_million = self.server_cpu_s / m.messages as f64 * 1e6;
        }
        self.server_cpu_share = self.server_cpu_s / secs;
        self.server_peak_rss_kib = peak_kib;
        self.server_threads = threads;
        self.client_cpu_s = m.client_cpu.as_secs_f64();
        self.client_cpu_share = self.client_cpu_s / secs;
        self.server_wait_share = m.server_wait.as_secs_f64() / secs;
        self.client_wait_share = m.client_wait.as_secs_f64() / secs;
        self.conn_min_msgs = m.conn_min;
        self.conn_max_msgs = m.conn_max;
        self.first_echo_max_ms = m.first_echo_max.as_secs_f64() * 1000.0;
        self.mismatches = m.mismatches;
        self.error_count += m.error_count;
        self.errors.extend(m.errors.iter().cloned());
        if m.messages == 0 && m.error_count == 0 {
            self.fail("no message completed in the window".into());
        }
    }

    /// The two figures its rounds are settled on.
    pub fn sample(&self) -> Sample {
        Sample { msgs_per_sec: self.msgs_per_sec, cpu_per_msg: self.server_cpu_s_per_million }
    }

    /// The server or the load generator waited for its CPU more than `settle::MAX_WAIT` of
    /// the window: other work on the machine held this round up.
    pub fn disturbed(&self) -> bool {
        self.server_wait_share > settle::MAX_WAIT || self.client_wait_share > settle::MAX_WAIT
    }

    /// One server's rounds at one point, settled: the `want` rounds that agree best are used
    /// (`settle::tightest`), the median of them (by messages/s) is reported with the spreads and
    /// the status, and every round's headline figures are kept. Errors of all rounds are kept,
    /// so one bad round fails the bench.
    pub fn settled(mut runs: Vec<RunResult>, want: usize, max_spread: f64) -> RunResult {
        let samples: Vec<Sample> = runs.iter().map(RunResult::sample).collect();
        let disturbed: Vec<bool> = runs.iter().map(RunResult::disturbed).collect();
        let pick = settle::tightest_among(&samples, &disturbed, want);
        let rounds: Vec<RoundFigures> = runs
            .iter()
            .enumerate()
            .map(|(i, r)| RoundFigures {
                msgs_per_sec: r.msgs_per_sec,
                server_cpu_s_per_million: r.server_cpu_s_per_million,
                p99_us: r.p99_us,
                server_wait_share: r.server_wait_share,
                client_wait_share: r.client_wait_share,
                used: pick.used.contains(&i),
            })
            .collect();
        let p99: Vec<f64> = pick.used.iter().map(|&i| runs[i].p99_us).collect();
        let error_count: u64 = runs.iter().map(|r| r.error_count).sum();
        let mismatches: u64 = runs.iter().map(|r| r.mismatches).sum();
        let errors: Vec<String> = runs.iter().flat_map(|r| r.errors.iter().cloned()).collect();
        let mut median = runs.swap_remove(pick.median());
        median.status = settle::status_of(&pick, max_spread);
        median.msgs_spread = pick.msgs_spread;
        median.cpu_spread = pick.cpu_spread;
        median.p99_spread = settle::spread(&p99);
        median.rounds = rounds;
        median.error_count = error_count;
        median.mismatches = mismatches;
        median.errors = errors;
        median
    }

    /// Its status and spread of one figure, for a ratio (see `settle::ratio`).
    pub fn figure(&self, f: Figure) -> (f64, Status, Option<f64>) {
        match f {
            Figure::Msgs => (self.msgs_per_sec, self.status, self.msgs_spread),
            Figure::Cpu => (self.server_cpu_s_per_million, self.status, self.cpu_spread),
            Figure::P99 => (self.p99_us, self.status, self.p99_spread),
        }
    }

    /// Records an error that ended the run.
    pub fn fail(&mut self, msg: String) {
        self.error_count += 1;
        self.errors.push(msg);
    }

    pub(super) fn label(&self) -> String {
        point_label(self.conns, self.size, self.same_core)
    }

    /// The point it ran at (connections, size, same core, load generator).
    pub fn point(&self) -> (usize, usize, bool, &str) {
        (self.conns, self.size, self.same_core, &self.loadgen)
    }
}

/// A figure a ratio is taken of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// Messages/s.
    Msgs,
    /// Server CPU per message.
    Cpu,
    /// p99 round trip.
    P99,
}

/// One round's headline figures.
#[derive(Serialize, Clone)]
pub struct RoundFigures {
    /// Round trips per second.
    pub msgs_per_sec: f64,
    /// Server CPU seconds per million messages.
    pub server_cpu_s_per_million: f64,
    /// p99 latency, microseconds.
    pub p99_us: f64,
    /// Share of the window the server waited for a CPU.
    pub server_wait_share: f64,
    /// Share of the window the load generator waited for a CPU.
    pub client_wait_share: f64,
    /// Among the rounds the reported figures and spreads come from.
    pub used: bool,
}

/// "100 × 64 B", the name of a matrix point.
pub fn point_label(conns: usize, size: usize, same_core: bool) -> String {
    let size = if size >= 1024 && size & 1023 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    };
    let core = if same_core { ", same core" } else { "" };
    format!("{conns} conn × {size}{core}")
}

/// The idle-connection test for one server.
#[derive(Serialize, Clone)]
pub struct IdleResult {
    /// Server name.
    pub server: String,
    /// Connections held.
    pub conns: usize,
    /// Server RSS before, KiB.
    pub baseline_rss_kib: u64,
    /// Server RSS with the connections idle, KiB.
    pub loaded_rss_kib: u64,
    /// RSS growth per connection, bytes.
    pub bytes_per_conn: f64,
    /// Server threads with the connections open.
    pub server_threads: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl IdleResult {
    /// From the outcome of `idle::run`.
    pub fn new(server: ServerKind, conns: usize, out: anyhow::Result<IdleMemory>) -> IdleResult {
        let mut r = IdleResult {
            server: server.to_string(),
            conns,
            baseline_rss_kib: 0,
            loaded_rss_kib: 0,
            bytes_per_conn: 0.0,
            server_threads: 0,
            error: None,
        };
        match out {
            Ok(m) => {
                r.baseline_rss_kib = m.baseline_kib;
                r.loaded_rss_kib = m.loaded_kib;
                r.bytes_per_conn = m.bytes_per_conn();
                r.server_threads = m.threads;
            }
            Err(e) => r.error = Some(format!("{e:#}")),
        }
        r
    }
}

/// One of the targets, checked.
#[derive(Serialize, Clone)]
pub struct Target {
    /// What is compared.
    pub what: String,
    /// The figure measured (a ratio or bytes).
    pub measured: f64,
    /// The bound it must meet.
    pub bound: f64,
    /// The ratio's possible range: the sum of both figures' spreads (`null`: single rounds, or
    /// not a ratio of timed figures).
    pub spread: Option<f64>,
    /// Met, missed, or unsettled (figures from points that did not settle count as neither).
    pub verdict: settle::Verdict,
    /// `verdict == met`.
    pub met: bool,
    /// The bound lies within the ratio's spread of it: met or missed, the claim is weak.
    pub close: bool,
}

impl Report {
    /// An empty report for `cfg`.
    pub fn new(cfg: &Config, place: &Placement) -> Report {
        Report {
            version: env!("CARGO_PKG_VERSION").into(),
            kernel: proc::kernel_release(),
            cpu_model: proc::cpu_model(),
            cpus: proc::allowed_cpus().len(),
            pinning: place.describe(),
            config: ConfigOut {
                conns: cfg.conns.clone(),
                sizes: cfg.sizes.clone(),
                warmup_s: cfg.warmup.as_secs_f64(),
                window_s: cfg.window.as_secs_f64(),
                rounds: cfg.rounds.max(1),
                max_spread: cfg.max_spread,
                extra_rounds: cfg.extra_rounds,
                loadgens: cfg.loadgens.iter().map(|l| l.to_string()).collect(),
                idle_conns: cfg.idle,
                rate: cfg.rate,
            },
            servers: cfg.servers.iter().map(|s| s.to_string()).collect(),
            reference: ServerKind::REFERENCE.to_string(),
            runs: Vec::new(),
            idle: Vec::new(),
            targets: Vec::new(),
            agreement: Vec::new(),
            errors: 0,
            ok: true,
        }
    }

    /// Totals the errors and checks the targets.
    pub fn finish(&mut self) {
        self.errors = self.runs.iter().map(|r| r.error_count).sum::<u64>()
            + self.idle.iter().filter(|i| i.error.is_some()).count() as u64;
        self.ok = self.errors == 0;
        self.targets = super::targets::check(self);
        self.agreement = super::agree::check(self);
    }

    /// The clean run of server `peer` at the same point (and load generator) as `r`.
    pub fn peer_for(&self, r: &RunResult, peer: &str) -> Option<&RunResult> {
        self.runs.iter().find(|x| x.server == peer && x.point() == r.point() && x.error_count == 0)
    }

    /// The ratio of `r`'s figure to the reference's at the same point, with its spread and
    /// whether it is settled; `None` without a reference run or a figure to divide by.
    pub fn ratio(&self, r: &RunResult, f: Figure) -> Option<settle::Ratio> {
        self.ratio_to(r, &self.reference, f)
    }

    /// The ratio of `r`'s figure to server `peer`'s at the same point, as [`Report::ratio`].
    pub fn ratio_to(&self, r: &RunResult, peer: &str, f: Figure) -> Option<settle::Ratio> {
        let b = self.peer_for(r, peer)?;
        let (bv, _, _) = b.figure(f);
        (bv > 0.0).then(|| settle::ratio(r.figure(f), b.figure(f), self.config.max_spread))
    }

    /// Every error, for the loud summary on stderr.
    pub fn error_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for r in &self.runs {
            for e in &r.errors {
                lines.push(format!("{} at {}: {e}", r.server, r.label()));
            }
            if r.error_count > r.errors.len() as u64 {
                lines.push(format!(
                    "{} at {}: ... and {} more",
                    r.server,
                    r.label(),
                    r.error_count - r.errors.len() as u64
                ));
            }
        }
        for i in &self.idle {
            if let Some(e) = &i.error {
                lines.push(format!("{} idle test: {e}", i.server));
            }
        }
        lines
    }
}

pub(super) fn first_error(r: &RunResult) -> String {
    r.errors.first().map(|e| e.lines().next().unwrap_or("").to_string()).unwrap_or_default()
}

/// 1234567.8 -> "1,234,568".
pub fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The median of `v` (the mean of the middle two for an even count; NaN when empty), as the
/// proxy and copy benches report their runs.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.4), "1,234,567");
    }

    #[test]
    fn point_labels() {
        assert_eq!(point_label(100, 4096, false), "100 conn × 4 KiB");
        assert_eq!(point_label(1, 64, true), "1 conn × 64 B, same core");
    }
}
