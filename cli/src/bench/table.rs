//! The table `proactor bench` prints on stdout: per point, each server's figures with its ratio
//! to the reference, its spread over the rounds and whether it settled; the idle test; the
//! targets, each met, missed or unsettled; with two load generators, how far their ratios agree.

use super::report::{first_error, point_label, thousands, Figure, Report, RunResult};
use super::settle::{Status, Verdict};
use std::fmt::Write as _;

impl Report {
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
            "each run: {:.1} s warm-up, {:.1} s measured; median of the {} round(s) that agree \
             best, servers alternating; one message in flight per connection, every byte checked",
            self.config.warmup_s, self.config.window_s, self.config.rounds
        );
        let _ = writeln!(
            out,
            "spread = (max - min) / median over those rounds, msg/s and CPU per message; above \
             {:.0}% a point gets up to {} extra round(s), then it is UNRELIABLE; load generator: {}",
            self.config.max_spread * 100.0,
            self.config.extra_rounds,
            self.config.loadgens.join(" and ")
        );
        if let Some(rate) = self.config.rate {
            let _ = writeln!(
                out,
                "offered load: {rate:.0} msg/s over all connections (--rate): every server does the \
                 same work, so compare CPU per message; msg/s only shows whether it kept up"
            );
        }
        let _ = writeln!(
            out,
            "(x) = ratio to {}: msg/s higher is better; latency and CPU per message lower is better",
            self.reference
        );
        let mut points: Vec<(usize, usize, bool, &str)> = Vec::new();
        for r in &self.runs {
            if !points.contains(&r.point()) {
                points.push(r.point());
            }
        }
        let width = self.servers.iter().map(|s| s.len()).max().unwrap_or(8).max(8);
        for p in points {
            let (conns, size, same, loadgen) = p;
            let by = if self.config.loadgens.len() > 1 {
                format!(" (load generator: {loadgen})")
            } else {
                String::new()
            };
            let _ = writeln!(out, "\n{}{by}", point_label(conns, size, same));
            let _ = writeln!(
                out,
                "  {:<width$}  {:>17}  {:>8}  {:>8}  {:>16}  {:>9}  {:>16}  {:>8}  {:>7}  {:>9}",
                "server",
                "msg/s",
                "MB/s",
                "p50 µs",
                "p99 µs",
                "p99.9 µs",
                "CPU s/M msg",
                "peak RSS",
                "loadgen",
                "spread"
            );
            for r in self.runs.iter().filter(|r| r.point() == p) {
                if r.error_count > 0 && r.messages == 0 {
                    let _ = writeln!(out, "  {:<width$}  FAILED: {}", r.server, first_error(r));
                    continue;
                }
                let ratio = |f: Figure| -> String {
                    self.ratio(r, f).map(|x| format!("({:.2}x)", x.ratio)).unwrap_or_default()
                };
                let mut flags = String::new();
                if r.status == Status::Unreliable {
                    flags.push_str("  UNRELIABLE");
                }
                if r.error_count > 0 {
                    let _ = write!(flags, "  ERRORS: {}", r.error_count);
                }
                let _ = writeln!(
                    out,
                    "  {:<width$}  {:>9} {:>7}  {:>8.1}  {:>8.1}  {:>8.1} {:>7}  {:>9.1}  {:>8.2} {:>7}  {:>8}  {:>6.0}%  {:>9}{}",
                    r.server,
                    thousands(r.msgs_per_sec),
                    ratio(Figure::Msgs),
                    r.mb_per_sec,
                    r.p50_us,
                    r.p99_us,
                    ratio(Figure::P99),
                    r.p999_us,
                    r.server_cpu_s_per_million,
                    ratio(Figure::Cpu),
                    format!("{:.1} MiB", r.server_peak_rss_kib as f64 / 1024.0),
                    r.client_cpu_share * 100.0,
                    spreads(r),
                    flags
                );
            }
            for r in self.runs.iter().filter(|r| r.point() == p) {
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
        self.idle_table(&mut out, width);
        if !self.targets.is_empty() {
            let _ = writeln!(out, "\ntargets (met only on settled figures):");
            for t in &self.targets {
                let word = match t.verdict {
                    Verdict::Met => "met",
                    Verdict::Missed => "MISS",
                    Verdict::Unsettled => "unsettled",
                };
                let spread =
                    t.spread.map(|s| format!(" (spread {:.0}%)", s * 100.0)).unwrap_or_default();
                let close = if t.close { " — the bound is within its spread" } else { "" };
                let _ = writeln!(
                    out,
                    "  {word:<9} {} = {:.2}{spread} (bound {:.2}){close}",
                    t.what, t.measured, t.bound
                );
            }
        }
        if !self.agreement.is_empty() {
            let _ = writeln!(
                out,
                "\nload generators: each server's ratio to {} under each, and how far they differ",
                self.reference
            );
            for a in &self.agreement {
                let _ = writeln!(out, "  {}", a.line());
            }
            if let Some(line) = super::agree::summary(&self.agreement) {
                let _ = writeln!(out, "  {line}");
            }
        }
        out
    }

    fn idle_table(&self, out: &mut String, width: usize) {
        if self.idle.is_empty() {
            return;
        }
        let conns = self.idle[0].conns;
        let _ = writeln!(
            out,
            "\nidle connections: {} held, each after one echo (one run: memory, not timed)",
            thousands(conns as f64)
        );
        let _ = writeln!(
            out,
            "  {:<width$}  {:>12}  {:>14}  {:>16}  {:>8}",
            "server", "baseline RSS", "with them", "per connection", "threads"
        );
        let reference = self.idle.iter().find(|i| i.server == self.reference && i.error.is_none());
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
}

/// "3%/5%": the spreads of msg/s and CPU per message, or "1 round".
fn spreads(r: &RunResult) -> String {
    match (r.msgs_spread, r.cpu_spread) {
        (Some(m), Some(c)) => format!("{:.0}%/{:.0}%", m * 100.0, c * 100.0),
        _ if r.rounds.len() < 2 => "1 round".into(),
        _ => "n/a".into(),
    }
}
