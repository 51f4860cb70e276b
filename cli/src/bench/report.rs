//! The bench's results: every raw figure (serialised as the `--json` file), the table on stdout
//! with each server's ratio to tokio current-thread, and the targets checked in words.

use super::idle::IdleMemory;
use super::loadgen::Measured;
use super::spawn::ServerKind;
use super::{proc, Config, Placement};
use serde::Serialize;
use std::fmt::Write as _;

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
    /// Rounds per point (the median is reported).
    pub rounds: usize,
    /// Idle connections held.
    pub idle_conns: usize,
}

/// One server at one matrix point.
#[derive(Serialize, Clone)]
pub struct RunResult {
    /// Server name.
    pub server: String,
    /// Connections.
    pub conns: usize,
    /// Message size, bytes.
    pub size: usize,
    /// Server and load generator on the same core.
    pub same_core: bool,
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
    /// Fewest round trips one connection completed in the window (0: a connection starved).
    pub conn_min_msgs: u64,
    /// Most round trips one connection completed in the window.
    pub conn_max_msgs: u64,
    /// Longest wait of one connection for its first echo, ms (a server slow to accept).
    pub first_echo_max_ms: f64,
    /// Echoes that differed from what was sent.
    pub mismatches: u64,
    /// Every round's headline figures, in order (the figures above are the median round's, by
    /// messages/s).
    pub rounds: Vec<RoundFigures>,
    /// Errors of any kind.
    pub error_count: u64,
    /// The first few errors, in words.
    pub errors: Vec<String>,
}

impl RunResult {
    /// A result with no figures yet.
    pub fn empty(server: ServerKind, conns: usize, size: usize, same_core: bool) -> RunResult {
        RunResult {
            server: server.to_string(),
            conns,
            size,
            same_core,
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

    /// The median round of several runs of one server at one point (by messages/s), with every
    /// round's headline figures; errors of all rounds are kept, so one bad round fails the bench.
    pub fn median_of(mut runs: Vec<RunResult>) -> RunResult {
        let rounds: Vec<RoundFigures> = runs
            .iter()
            .map(|r| RoundFigures {
                msgs_per_sec: r.msgs_per_sec,
                server_cpu_s_per_million: r.server_cpu_s_per_million,
                p99_us: r.p99_us,
            })
            .collect();
        let error_count: u64 = runs.iter().map(|r| r.error_count).sum();
        let mismatches: u64 = runs.iter().map(|r| r.mismatches).sum();
        let errors: Vec<String> = runs.iter().flat_map(|r| r.errors.iter().cloned()).collect();
        runs.sort_by(|a, b| a.msgs_per_sec.total_cmp(&b.msgs_per_sec));
        let mid = runs.len() / 2;
        let mut median = runs.swap_remove(mid);
        median.rounds = rounds;
        median.error_count = error_count;
        median.mismatches = mismatches;
        median.errors = errors;
        median
    }

    /// Records an error that ended the run.
    pub fn fail(&mut self, msg: String) {
        self.error_count += 1;
        self.errors.push(msg);
    }

    fn label(&self) -> String {
        point_label(self.conns, self.size, self.same_core)
    }
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
    /// Whether it met it.
    pub met: bool,
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
                idle_conns: cfg.idle,
            },
            servers: cfg.servers.iter().map(|s| s.to_string()).collect(),
            reference: ServerKind::REFERENCE.to_string(),
            runs: Vec::new(),
            idle: Vec::new(),
            targets: Vec::new(),
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
    }

    /// The reference server's run at the same point as `r`.
    pub fn reference_for(&self, r: &RunResult) -> Option<&RunResult> {
        self.runs.iter().find(|x| {
            x.server == self.reference
                && (x.conns, x.size, x.same_core) == (r.conns, r.size, r.same_core)
                && x.error_count == 0
        })
    }

    /// The run of `server` at a point.
    pub fn run_of(&self, server: &str, conns: usize, size: usize) -> Option<&RunResult> {
        self.runs
            .iter()
            .find(|x| x.server == server && x.conns == conns && x.size == size && !x.same_core)
    }

    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "proactor bench: echo over 127.0.0.1; kernel {}; {} CPU(s), {}; {}",
            self.kernel, self.cpus, self.cpu_model, self.pinning
        );
        let _ = writeln!(
            out,
            "each run: {:.1} s warm-up, {:.1} s measured, median of {} round(s); one message in \
             flight per connection, every byte checked",
            self.config.warmup_s, self.config.window_s, self.config.rounds
        );
        let _ = writeln!(
            out,
            "(x) = ratio to {}: msg/s higher is better; latency and CPU per message lower is better",
            self.reference
        );
        let mut labels: Vec<(usize, usize, bool)> = Vec::new();
        for r in &self.runs {
            if !labels.contains(&(r.conns, r.size, r.same_core)) {
                labels.push((r.conns, r.size, r.same_core));
            }
        }
        let width = self.servers.iter().map(|s| s.len()).max().unwrap_or(8).max(8);
        for (conns, size, same) in labels {
            let _ = writeln!(out, "\n{}", point_label(conns, size, same));
            let _ = writeln!(
                out,
                "  {:<width$}  {:>17}  {:>8}  {:>8}  {:>16}  {:>9}  {:>16}  {:>8}  {:>7}",
                "server",
                "msg/s",
                "MB/s",
                "p50 µs",
                "p99 µs",
                "p99.9 µs",
                "CPU s/M msg",
                "peak RSS",
                "loadgen"
            );
            for r in
                self.runs.iter().filter(|r| (r.conns, r.size, r.same_core) == (conns, size, same))
            {
                if r.error_count > 0 && r.messages == 0 {
                    let _ = writeln!(out, "  {:<width$}  FAILED: {}", r.server, first_error(r));
                    continue;
                }
                let reference = self.reference_for(r);
                let ratio = |f: fn(&RunResult) -> f64| -> String {
                    match reference {
                        Some(b) if f(b) > 0.0 => format!("({:.2}x)", f(r) / f(b)),
                        _ => String::new(),
                    }
                };
                let _ = writeln!(
                    out,
                    "  {:<width$}  {:>9} {:>7}  {:>8.1}  {:>8.1}  {:>8.1} {:>7}  {:>9.1}  {:>8.2} {:>7}  {:>8}  {:>6.0}%{}",
                    r.server,
                    thousands(r.msgs_per_sec),
                    ratio(|x| x.msgs_per_sec),
                    r.mb_per_sec,
                    r.p50_us,
                    r.p99_us,
                    ratio(|x| x.p99_us),
                    r.p999_us,
                    r.server_cpu_s_per_million,
                    ratio(|x| x.server_cpu_s_per_million),
                    format!("{:.1} MiB", r.server_peak_rss_kib as f64 / 1024.0),
                    r.client_cpu_share * 100.0,
                    if r.error_count > 0 { format!("  ERRORS: {}", r.error_count) } else { String::new() }
                );
            }
            for r in
                self.runs.iter().filter(|r| (r.conns, r.size, r.same_core) == (conns, size, same))
            {
                if r.conns > 1 && r.messages > 0 && r.conn_min_msgs * 10 < r.conn_max_msgs {
                    let _ = writeln!(
                        out,
                        "  unfair: {} served its slowest connection {} round trips, its fastest {} \
                         (slowest first echo after {:.0} ms)",
                        r.server, r.conn_min_msgs, r.conn_max_msgs, r.first_echo_max_ms
                    );
                }
            }
        }
        if !self.idle.is_empty() {
            let conns = self.idle[0].conns;
            let _ = writeln!(
                out,
                "\nidle connections: {} held, each after one echo",
                thousands(conns as f64)
            );
            let _ = writeln!(
                out,
                "  {:<width$}  {:>12}  {:>14}  {:>16}  {:>8}",
                "server", "baseline RSS", "with them", "per connection", "threads"
            );
            let reference =
                self.idle.iter().find(|i| i.server == self.reference && i.error.is_none());
            for i in &self.idle {
                if let Some(e) = &i.error {
                    let _ = writeln!(out, "  {:<width$}  FAILED: {e}", i.server);
                    continue;
                }
                let ratio = match reference {
                    Some(b) if b.bytes_per_conn > 0.0 => {
                        format!(" ({:.2}x)", i.bytes_per_conn / b.bytes_per_conn)
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "  {:<width$}  {:>8.1} MiB  {:>10.1} MiB  {:>8.0} B{:<8}  {:>7}",
                    i.server,
                    i.baseline_rss_kib as f64 / 1024.0,
                    i.loaded_rss_kib as f64 / 1024.0,
                    i.bytes_per_conn,
                    ratio,
                    i.server_threads
                );
            }
        }
        if !self.targets.is_empty() {
            let _ = writeln!(out, "\ntargets:");
            for t in &self.targets {
                let _ = writeln!(
                    out,
                    "  {:<4} {} = {:.2} (bound {:.2})",
                    if t.met { "met" } else { "MISS" },
                    t.what,
                    t.measured,
                    t.bound
                );
            }
        }
        out
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

fn first_error(r: &RunResult) -> String {
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
