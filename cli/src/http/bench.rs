//! The HTTP benchmark behind `proactor bench http`: `wrk -t1 -c100` against `proactor http` and
//! against nginx in both of its settings for static files — `sendfile on` (with `tcp_nopush`) and
//! `sendfile off` (read into user space and write, faster for small files) — one process each,
//! access log off, serving the same 1 KiB and 1 MiB files, side by side in one run, with each
//! server's CPU time per request (utime + stime from `/proc/<pid>/stat` over the measured window)
//! next to its requests per second. Each server runs `runs` times per file, the servers taking
//! turns in an order reversed every other run; a file whose spread ((max − min) / median, as
//! `proactor bench` settles points) is above 15 % for any server gets up to 2 extra rounds; the
//! median of the `runs` runs that agree best is reported with its spread, and the proactor is
//! compared with the better nginx setting: a comparison is `met` only when both spreads are
//! within 15 %.
//!
//! Skips with a clear message (and how to install them) when `wrk` or `nginx` is missing.

use anyhow::{bail, Context as _};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to run the HTTP benchmark.
#[derive(Debug, Clone)]
pub struct HttpBenchOptions {
    /// Length of each measured `wrk` run.
    pub duration: Duration,
    /// Concurrent connections (`wrk -c`).
    pub connections: u32,
    /// The proactor's driver (`uring`, `epoll`, `auto`); `None` leaves the default.
    pub driver: Option<String>,
    /// The `proactor` executable to benchmark; `None` means this executable.
    pub proactor_exe: Option<PathBuf>,
    /// Pin each server to CPU 1 and wrk to CPU 0 (when the machine has two or more CPUs).
    pub pin: bool,
    /// Measured runs per server and file (the servers alternate; the median is reported).
    pub runs: usize,
}

impl Default for HttpBenchOptions {
    fn default() -> Self {
        HttpBenchOptions {
            duration: Duration::from_secs(10),
            connections: 100,
            driver: None,
            proactor_exe: None,
            pin: true,
            runs: 3,
        }
    }
}

/// One measured run: one server, one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HttpBenchRow {
    /// `proactor`, `nginx-sendfile` or `nginx-nosendfile`.
    pub server: String,
    /// The file served (`1KiB`, `1MiB`).
    pub file: String,
    /// Requests completed in the window.
    pub requests: u64,
    /// Requests per second, as wrk reports it.
    pub requests_per_sec: f64,
    /// Body and header bytes per second, MiB.
    pub mib_per_sec: f64,
    /// Server CPU seconds (user + system) over the window.
    pub cpu_secs: f64,
    /// Server CPU microseconds per request.
    pub cpu_us_per_request: f64,
    /// Socket errors and non-2xx answers wrk counted (all runs).
    pub errors: u64,
    /// Requests per second of every run, in order (the figures above are the median run's).
    pub runs: Vec<f64>,
    /// The runs the median and spreads come from (the ones that agree best).
    pub used: Vec<usize>,
    /// CPU microseconds per request of every run.
    pub runs_cpu_us: Vec<f64>,
    /// (max − min) / median of requests/s over the runs (`None`: one run).
    pub spread: Option<f64>,
    /// The same of CPU per request.
    pub cpu_spread: Option<f64>,
}

impl HttpBenchRow {
    /// Settled: both spreads known and within the bench's bound.
    pub fn settled(&self) -> bool {
        let ok = |s: Option<f64>| s.is_some_and(|s| s <= MAX_SPREAD);
        ok(self.spread) && ok(self.cpu_spread)
    }
}

/// The settling bound of `proactor bench`.
const MAX_SPREAD: f64 = crate::bench::settle::MAX_SPREAD;
/// The nginx settings compared, by report name: `sendfile on` and `sendfile off`.
const NGINX: [(&str, bool); 2] = [("nginx-sendfile", true), ("nginx-nosendfile", false)];
/// The bounds against the better nginx: 1 KiB requests/s at least 1.2x, 1 MiB at least
/// 1.0x (and no more CPU per request).
const TARGETS: [(&str, f64); 2] = [("1KiB", 1.2), ("1MiB", 1.0)];

/// The result of the HTTP benchmark.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HttpBenchReport {
    /// Measured runs, proactor and nginx for each file.
    pub rows: Vec<HttpBenchRow>,
    /// Why the benchmark (or a part of it) did not run, if it did not.
    pub skipped: Option<String>,
}

impl HttpBenchReport {
    /// The row for `server` and `file`, if measured.
    pub fn row(&self, server: &str, file: &str) -> Option<&HttpBenchRow> {
        self.rows.iter().find(|r| r.server == server && r.file == file)
    }

    /// The nginx setting with more requests/s for `file`.
    pub fn better_nginx(&self, file: &str) -> Option<&HttpBenchRow> {
        NGINX
            .iter()
            .filter_map(|(name, _)| self.row(name, file))
            .max_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec))
    }
}

fn pct(s: Option<f64>) -> String {
    s.map(|s| format!("{:.0}%", s * 100.0)).unwrap_or_else(|| "-".into())
}

impl fmt::Display for HttpBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(why) = &self.skipped {
            writeln!(f, "http benchmark skipped: {why}")?;
        }
        if self.rows.is_empty() {
            return Ok(());
        }
        let used = self.rows.first().map_or(0, |r| r.used.len());
        let most = self.rows.iter().map(|r| r.runs.len()).max().unwrap_or(0);
        writeln!(
            f,
            "median of the {used} run(s) per server and file that agree best (of up to {most}: \
             a spread above 15% earns up to 2 extra), servers alternating; spread = (max - min) / \
             median of requests/s and of CPU per request"
        )?;
        writeln!(
            f,
            "{:<16} {:<5} {:>12} {:>10} {:>10} {:>12} {:>7} {:>11}",
            "server", "file", "requests/s", "MiB/s", "CPU s", "CPU us/req", "errors", "spread"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<16} {:<5} {:>12.0} {:>10.1} {:>10.2} {:>12.2} {:>7} {:>11}",
                r.server,
                r.file,
                r.requests_per_sec,
                r.mib_per_sec,
                r.cpu_secs,
                r.cpu_us_per_request,
                r.errors,
                format!("{}/{}", pct(r.spread), pct(r.cpu_spread))
            )?;
        }
        for (file, bound) in TARGETS {
            let Some(p) = self.row("proactor", file) else { continue };
            for (name, _) in NGINX {
                if let Some(n) = self.row(name, file) {
                    writeln!(
                        f,
                        "{file}: proactor/{name} requests/s = {:.2}x, CPU per request = {:.2}x",
                        p.requests_per_sec / n.requests_per_sec.max(1e-9),
                        p.cpu_us_per_request / n.cpu_us_per_request.max(1e-9)
                    )?;
                }
            }
            if let Some(n) = self.better_nginx(file) {
                let ratio = p.requests_per_sec / n.requests_per_sec.max(1e-9);
                let cpu = p.cpu_us_per_request / n.cpu_us_per_request.max(1e-9);
                // 1 MiB: at no more CPU per request as well.
                let within = ratio >= bound && (bound > 1.0 || cpu <= 1.0);
                let word = match (p.settled() && n.settled(), within) {
                    (false, _) => "unsettled",
                    (true, true) => "met",
                    (true, false) => "MISS",
                };
                let cpu_too = if bound > 1.0 { "" } else { " at no more CPU per request" };
                writeln!(
                    f,
                    "  {word}: {file} requests/s >= {bound:.1}x the better nginx ({}){cpu_too}: \
                     {ratio:.2}x, CPU {cpu:.2}x (spreads {} and {})",
                    n.server,
                    pct(p.spread.zip(n.spread).map(|(a, b)| a + b)),
                    pct(p.cpu_spread.zip(n.cpu_spread).map(|(a, b)| a + b)),
                )?;
            }
        }
        Ok(())
    }
}

/// The files served: name in the report, size.
const FILES: [(&str, usize); 2] = [("1KiB", 1024), ("1MiB", 1 << 20)];

/// What to install when a tool is missing.
const INSTALL_HINT: &str = "install them with: apt-get update && apt-get install -y wrk nginx";

/// Runs the benchmark: for each file, proactor then nginx, each with a short warm-up and then a
/// measured `wrk` run. Returns a report with `skipped` set (and no rows) when wrk or nginx is
/// missing.
pub fn run_http_bench(opts: &HttpBenchOptions) -> anyhow::Result<HttpBenchReport> {
    let (Some(wrk), Some(nginx)) = (find_tool("wrk"), find_tool("nginx")) else {
        let missing: Vec<&str> =
            ["wrk", "nginx"].into_iter().filter(|t| find_tool(t).is_none()).collect();
        return Ok(HttpBenchReport {
            rows: Vec::new(),
            skipped: Some(format!("{} not found; {INSTALL_HINT}", missing.join(" and "))),
        });
    };
    let dir = ScratchDir::new()?;
    let root = dir.path().join("root");
    std::fs::create_dir(&root)?;
    for (name, size) in FILES {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join(format!("{name}.bin")), body)?;
    }
    let exe = match &opts.proactor_exe {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating the proactor executable")?,
    };
    let pin = opts.pin && cpu_count() >= 2;
    let mut report = HttpBenchReport::default();
    let proactor = Proactor::start(&exe, &root, opts.driver.as_deref())?;
    let mut servers: Vec<(&str, u32, SocketAddr)> =
        vec![("proactor", proactor.child.0.id(), proactor.addr)];
    let mut nginxes = Vec::new();
    for (name, sendfile) in NGINX {
        let conf_dir = dir.path().join(name);
        std::fs::create_dir(&conf_dir)?;
        let n = Nginx::start(&nginx, &conf_dir, &root, sendfile)?;
        servers.push((name, n.child.0.id(), n.addr));
        nginxes.push(n);
    }
    if pin {
        for &(_, pid, _) in &servers {
            pin_to(pid as i32, 1);
        }
    }
    use crate::bench::settle::{self, EXTRA_ROUNDS};
    let want = opts.runs.max(1);
    for (file, _) in FILES {
        let path = format!("/{file}.bin");
        let mut outs: Vec<Vec<(WrkOut, f64)>> = servers.iter().map(|_| Vec::new()).collect();
        let (mut run, mut extra) = (0, 0);
        loop {
            if run >= want {
                let samples: Vec<Vec<settle::Sample>> =
                    outs.iter().map(|o| o.iter().map(sample).collect()).collect();
                match settle::next_round(&samples, want, extra, EXTRA_ROUNDS, true, MAX_SPREAD) {
                    settle::Next::Rerun => extra += 1,
                    settle::Next::Done(_) => break,
                }
            }
            let mut order: Vec<usize> = (0..servers.len()).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for j in order {
                let (_, pid, addr) = servers[j];
                let url = format!("http://{addr}{path}");
                if run == 0 {
                    // Warm-up: page cache, connection setup, the server's buffers.
                    wrk_run(&wrk, &url, opts.connections, Duration::from_secs(1), pin)?;
                }
                let cpu_before = cpu_secs(pid)?;
                let out = wrk_run(&wrk, &url, opts.connections, opts.duration, pin)?;
                let cpu = cpu_secs(pid)? - cpu_before;
                outs[j].push((out, cpu));
            }
            run += 1;
        }
        for (j, runs) in outs.into_iter().enumerate() {
            report.rows.push(row(servers[j].0, file, runs, want));
        }
    }
    drop(proactor);
    drop(nginxes);
    Ok(report)
}

/// CPU microseconds per request of one run.
fn cpu_us((o, cpu): &(WrkOut, f64)) -> f64 {
    cpu * 1e6 / o.requests.max(1) as f64
}

/// One run as a sample to settle on.
fn sample(run: &(WrkOut, f64)) -> crate::bench::settle::Sample {
    crate::bench::settle::Sample { msgs_per_sec: run.0.requests_per_sec, cpu_per_msg: cpu_us(run) }
}

/// One server's runs for one file: of the `want` runs that agree best, the median (by
/// requests/s) with their spreads, and every run's figures.
fn row(server: &str, file: &str, runs: Vec<(WrkOut, f64)>, want: usize) -> HttpBenchRow {
    use crate::bench::settle::tightest;
    let rps: Vec<f64> = runs.iter().map(|(o, _)| o.requests_per_sec).collect();
    let cpus: Vec<f64> = runs.iter().map(cpu_us).collect();
    let errors = runs.iter().map(|(o, _)| o.errors).sum();
    let samples: Vec<_> = runs.iter().map(sample).collect();
    let pick = tightest(&samples, want);
    let m = &runs[pick.median()];
    let mut used = pick.used.clone();
    used.sort_unstable();
    HttpBenchRow {
        server: server.to_string(),
        file: file.to_string(),
        requests: m.0.requests,
        requests_per_sec: m.0.requests_per_sec,
        mib_per_sec: m.0.bytes_per_sec / (1024.0 * 1024.0),
        cpu_secs: m.1,
        cpu_us_per_request: cpu_us(m),
        errors,
        spread: pick.msgs_spread,
        cpu_spread: pick.cpu_spread,
        runs: rps,
        runs_cpu_us: cpus,
        used,
    }
}

/// A directory under the system's temporary directory, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> anyhow::Result<ScratchDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir()
            .join(format!("proactor-bench-http-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tool on `PATH` (or in `/usr/sbin`, where nginx lives).
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins a running process to one CPU and raises its priority, as every measured process of the
/// bench (best effort: the benchmark still runs if this fails; see `bench::proc::place`).
pub(crate) fn pin_to(pid: i32, cpu: usize) {
    crate::bench::proc::place(pid, Some(cpu));
}

/// User plus system CPU seconds of a process and its threads, from `/proc/<pid>/stat`.
pub(crate) fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; here indices 11 and 12.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short /proc stat line")?.parse::<u64>()? as f64)
    };
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

/// What one wrk run reported.
pub(crate) struct WrkOut {
    pub(crate) requests: u64,
    pub(crate) requests_per_sec: f64,
    pub(crate) bytes_per_sec: f64,
    pub(crate) errors: u64,
}

pub(crate) fn wrk_run(
    wrk: &Path,
    url: &str,
    conns: u32,
    d: Duration,
    pin: bool,
) -> anyhow::Result<WrkOut> {
    let secs = d.as_secs().max(1);
    let mut cmd = Command::new(wrk);
    cmd.args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), url]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut cmd = crate::bench::proc::placed(cmd, pin.then_some(0));
    let child = cmd.spawn().context("starting wrk")?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

/// Reads `N requests in`, `Requests/sec:`, `Transfer/sec:` and error counts from wrk's output.
fn parse_wrk(text: &str) -> Option<WrkOut> {
    let mut out = WrkOut { requests: 0, requests_per_sec: 0.0, bytes_per_sec: 0.0, errors: 0 };
    for line in text.lines().map(str::trim) {
        if let Some(n) = line.split_once(" requests in ").map(|(n, _)| n) {
            out.requests = n.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            out.requests_per_sec = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("Transfer/sec:") {
            out.bytes_per_sec = parse_size(v.trim())?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            out.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            out.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    (out.requests > 0).then_some(out)
}

/// `123.45MB` → bytes (wrk uses binary units).
fn parse_size(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let scale = match unit {
        "" | "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(num.parse::<f64>().ok()? * scale)
}

/// A child process, killed and reaped when dropped (also on an early return while starting).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `proactor http` child process.
struct Proactor {
    child: Reaped,
    addr: SocketAddr,
}

impl Proactor {
    fn start(exe: &Path, root: &Path, driver: Option<&str>) -> anyhow::Result<Proactor> {
        let mut cmd = Command::new(exe);
        cmd.arg("http").arg("--root").arg(root).args(["--listen", "127.0.0.1:0", "--quiet"]);
        if let Some(d) = driver {
            cmd.args(["--driver", d]);
        }
        let mut child = Reaped(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", exe.display()))?,
        );
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().context("stdout")?).read_line(&mut line)?;
        let addr = match line.trim().strip_prefix("listening on ").map(str::parse) {
            Some(Ok(addr)) => addr,
            _ => bail!("proactor http did not start: {line:?}"),
        };
        Ok(Proactor { child, addr })
    }
}

/// An nginx child process in the foreground, one process, configured like the proactor, with
/// sendfile on (and `tcp_nopush`, which only acts with it) or off.
struct Nginx {
    child: Reaped,
    addr: SocketAddr,
}

impl Nginx {
    fn start(exe: &Path, dir: &Path, root: &Path, sendfile: bool) -> anyhow::Result<Nginx> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\n\
             daemon off;\n\
             master_process off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/nginx-error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log off;\n\
               sendfile {onoff};\n\
               tcp_nopush {onoff};\n\
               keepalive_requests 100000000;\n\
               default_type application/octet-stream;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               server {{ listen {addr}; root {}; }}\n\
             }}\n",
            root.display(),
            onoff = if sendfile { "on" } else { "off" },
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(exe)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut nginx = Nginx { child: Reaped(child), addr };
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = nginx.child.0.try_wait() {
                let log = std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default();
                bail!("nginx exited ({status}): {log}");
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("nginx did not start listening on {addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(server: &str, file: &str, rps: f64, cpu_us: f64, spread: f64) -> HttpBenchRow {
        HttpBenchRow {
            server: server.into(),
            file: file.into(),
            requests: 1000,
            requests_per_sec: rps,
            mib_per_sec: 1.0,
            cpu_secs: 1.0,
            cpu_us_per_request: cpu_us,
            errors: 0,
            runs: vec![rps; 3],
            used: vec![0, 1, 2],
            runs_cpu_us: vec![cpu_us; 3],
            spread: Some(spread),
            cpu_spread: Some(spread),
        }
    }

    #[test]
    fn the_target_is_against_the_better_nginx_and_needs_settled_runs() {
        let report = HttpBenchReport {
            rows: vec![
                row("proactor", "1KiB", 130.0, 8.0, 0.05),
                row("nginx-sendfile", "1KiB", 80.0, 20.0, 0.05),
                row("nginx-nosendfile", "1KiB", 100.0, 18.0, 0.05),
                row("proactor", "1MiB", 100.0, 100.0, 0.05),
                row("nginx-sendfile", "1MiB", 90.0, 110.0, 0.30),
                row("nginx-nosendfile", "1MiB", 60.0, 300.0, 0.05),
            ],
            skipped: None,
        };
        assert_eq!(report.better_nginx("1KiB").unwrap().server, "nginx-nosendfile");
        assert_eq!(report.better_nginx("1MiB").unwrap().server, "nginx-sendfile");
        let text = report.to_string();
        assert!(text.contains("met: 1KiB requests/s >= 1.2x the better nginx (nginx-nosendfile)"));
        // The better nginx for 1 MiB spread 30 %: neither met nor missed.
        assert!(text.contains("unsettled: 1MiB"), "{text}");
    }

    #[test]
    fn parses_wrk_output() {
        let text = "Running 10s test @ http://127.0.0.1:8080/1KiB.bin\n  1 threads and 100 connections\n  \
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.00ms  200.00us   5.00ms   90.00%\n  \
            1234567 requests in 10.00s, 1.50GB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
            Requests/sec: 123456.70\nTransfer/sec:    153.45MB\n";
        let out = parse_wrk(text).unwrap();
        assert_eq!(out.requests, 1_234_567);
        assert_eq!(out.requests_per_sec, 123_456.7);
        assert_eq!(out.errors, 3);
        assert!((out.bytes_per_sec - 153.45 * 1024.0 * 1024.0).abs() < 1.0);
    }
}

/// A manual run of the benchmark from the test harness, until `proactor bench http` calls it:
/// `cargo test --release --bin proactor http::bench::measure -- --ignored --nocapture`
/// (`HTTP_BENCH_SECS` and `HTTP_BENCH_DRIVER` adjust it).
#[cfg(test)]
#[test]
#[ignore = "a benchmark, not a test: needs wrk and nginx and takes about a minute"]
fn measure() {
    let secs = std::env::var("HTTP_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let opts = HttpBenchOptions {
        duration: Duration::from_secs(secs),
        driver: std::env::var("HTTP_BENCH_DRIVER").ok(),
        // The test binary lives in target/<profile>/deps; the proactor binary one level up.
        proactor_exe: std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("proactor"))),
        ..HttpBenchOptions::default()
    };
    let report = run_http_bench(&opts).expect("benchmark");
    println!("{report}");
}
