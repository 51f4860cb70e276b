//! Benchmark of `proactor proxy` (called by `proactor bench proxy`) against real proxies in the
//! same three-process shape — the load tool, a TCP proxy, the upstream — and against a direct
//! connection: `redis-benchmark` to `redis-server`, and `wrk` to `nginx` serving a 1 KiB file.
//! The proxies: `proactor proxy`, HAProxy in TCP mode with one thread, and nginx's stream module
//! with one worker. With two or more CPUs the upstream and the proxy share CPU 0 and the load tool
//! runs on CPU 1. Each configuration runs `runs` times, taking turns in an order reversed every
//! other run; a case whose spread ((max − min) / median, as `proactor bench` settles points) is
//! above 15 % for any configuration gets up to 2 extra rounds, and the median of the `runs` runs
//! that agree best is reported with its spread and the proxy process's CPU per request. The targets — at least
//! 1.25x each peer proxy's requests/s at no more than 0.8x its CPU per request — count as met only
//! when both spreads are within 15 %. A case or proxy whose programs are missing is skipped with
//! the package to install.

use crate::bench::proc;
use crate::bench::report::median;
use crate::bench::settle::{self, spread, Sample, EXTRA_ROUNDS, MAX_SPREAD};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Requests/s of proactor proxy against each peer proxy, at least.
const PEER_RATE: f64 = 1.25;
/// CPU per request of proactor proxy against each peer proxy, at most.
const PEER_CPU: f64 = 0.8;
/// The stream module of Debian's nginx (libnginx-mod-stream).
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// What to measure.
#[derive(Debug, Clone)]
pub struct ProxyBenchConfig {
    /// The `proactor` executable (normally `std::env::current_exe()`).
    pub proactor_bin: PathBuf,
    /// Extra arguments for the proxy (for example `--driver epoll` or `--splice`).
    pub proxy_args: Vec<String>,
    /// Requests per redis-benchmark test (`-n`).
    pub redis_requests: u64,
    /// Duration of each wrk run.
    pub wrk_duration: Duration,
    /// wrk connections.
    pub wrk_conns: u32,
    /// Alternating runs per case.
    pub runs: usize,
    /// Pin upstream and proxy to the first CPU, the load tool to the second (with 2+ CPUs).
    pub pin: bool,
}

impl ProxyBenchConfig {
    /// The settings: `redis-benchmark -q -n 100000`, wrk 10 s with 50 connections,
    /// 3 runs each.
    pub fn standard() -> ProxyBenchConfig {
        ProxyBenchConfig {
            proactor_bin: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("proactor")),
            proxy_args: Vec::new(),
            redis_requests: 100_000,
            wrk_duration: Duration::from_secs(10),
            wrk_conns: 50,
            runs: 3,
            pin: true,
        }
    }
}

/// One configuration of one case: direct or through one proxy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProxyBenchRow {
    /// The case (`redis-benchmark …`, `wrk -> nginx …`).
    pub case: String,
    /// `direct`, `proactor`, `haproxy` or `nginx-stream`.
    pub via: String,
    /// Median requests per second.
    pub rps: f64,
    /// Every run's requests per second, in order.
    pub runs: Vec<f64>,
    /// The runs the median and spreads come from (the ones that agree best).
    pub used: Vec<usize>,
    /// (max − min) / median of `runs` (`None`: one run).
    pub spread: Option<f64>,
    /// The proxy process's CPU microseconds per request, median (`NaN` for `direct`).
    pub cpu_us: f64,
    /// Spread of the CPU per request.
    pub cpu_spread: Option<f64>,
    /// Why this configuration did not run, if it did not.
    pub skipped: Option<String>,
}

impl ProxyBenchRow {
    fn skipped(case: &str, via: &str, why: String) -> ProxyBenchRow {
        eprintln!("proxy bench: {case}, {via}: SKIPPED: {why}");
        ProxyBenchRow {
            case: case.into(),
            via: via.into(),
            rps: f64::NAN,
            runs: Vec::new(),
            used: Vec::new(),
            spread: None,
            cpu_us: f64::NAN,
            cpu_spread: None,
            skipped: Some(why),
        }
    }

    /// Both spreads within the bound (the direct row has no CPU figure: its rate alone).
    fn settled(&self) -> bool {
        let ok = |s: Option<f64>| s.is_some_and(|s| s <= MAX_SPREAD);
        self.skipped.is_none() && ok(self.spread) && (self.via == "direct" || ok(self.cpu_spread))
    }
}

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A program on `PATH` or in the sbin directories (where nginx and haproxy live).
fn find(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(port: u16, within: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("nothing listening on port {port} after {within:?}")
}

/// The CPUs of the shape: (upstream and proxy, load tool), when pinning applies.
fn placement(cfg: &ProxyBenchConfig) -> Option<(usize, usize)> {
    let cpus = proc::allowed_cpus();
    (cfg.pin && cpus.len() >= 2).then(|| (cpus[0], cpus[1]))
}

/// `cmd`, pinned to `cpu` and at the measured processes' priority from its first instruction
/// (its threads inherit both).
fn pinned(cmd: Command, cpu: Option<usize>) -> Command {
    proc::placed(cmd, cpu)
}

/// A proxy in front of the upstream: its process and its port.
struct Proxy {
    guard: Guard,
    port: u16,
}

/// Starts `proactor proxy` in front of `to`.
fn start_proactor(
    cfg: &ProxyBenchConfig,
    to: SocketAddr,
    cpu: Option<usize>,
) -> anyhow::Result<Proxy> {
    let mut cmd = Command::new(&cfg.proactor_bin);
    cmd.args(["proxy", "--listen", "127.0.0.1:0", "--to"])
        .arg(to.to_string())
        .args(&cfg.proxy_args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = pinned(cmd, cpu).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let guard = Guard(child);
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow::anyhow!("proxy printed {line:?} instead of `listening on`"))?
        .parse()?;
    Ok(Proxy { guard, port: addr.port() })
}

/// Starts HAProxy in TCP mode, one thread, in the foreground.
fn start_haproxy(
    exe: &Path,
    dir: &Path,
    to: SocketAddr,
    cpu: Option<usize>,
) -> anyhow::Result<Proxy> {
    let port = free_port()?;
    let conf = format!(
        "global\n  nbthread 1\n  maxconn 4096\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n\
         frontend bench\n  bind 127.0.0.1:{port}\n  default_backend upstream\n\
         backend upstream\n  server up {to}\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf)?;
    let mut cmd = Command::new(exe);
    cmd.arg("-db").arg("-f").arg(&path).stdout(Stdio::null()).stderr(Stdio::inherit());
    let guard = Guard(pinned(cmd, cpu).spawn()?);
    wait_listening(port, Duration::from_secs(10))?;
    Ok(Proxy { guard, port })
}

/// Starts nginx with only its stream module proxying to `to`, one process, in the foreground.
fn start_nginx_stream(
    exe: &Path,
    dir: &Path,
    to: SocketAddr,
    cpu: Option<usize>,
) -> anyhow::Result<Proxy> {
    let port = free_port()?;
    let conf = format!(
        "load_module {STREAM_MODULE};\ndaemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {pid};\nerror_log stderr error;\n\
         events {{ worker_connections 20000; }}\n\
         stream {{ server {{ listen 127.0.0.1:{port}; proxy_pass {to}; }} }}\n",
        pid = dir.join("nginx-stream.pid").display(),
    );
    let path = dir.join("nginx-stream.conf");
    std::fs::write(&path, conf)?;
    let mut cmd = Command::new(exe);
    cmd.arg("-c").arg(&path).arg("-p").arg(dir).stdout(Stdio::null());
    let guard = Guard(pinned(cmd, cpu).spawn()?);
    wait_listening(port, Duration::from_secs(10))?;
    Ok(Proxy { guard, port })
}

/// One measurement: requests per second and the requests it made.
struct Measured {
    rps: f64,
    requests: f64,
}

/// Every proxy that can run here, started in front of `to` (each name with its proxy or why it
/// is skipped).
fn start_proxies(
    cfg: &ProxyBenchConfig,
    dir: &Path,
    to: SocketAddr,
    cpu: Option<usize>,
) -> Vec<(&'static str, Result<Proxy, String>)> {
    let haproxy = match find("haproxy") {
        None => Err("haproxy is not installed (apt-get install -y haproxy)".to_string()),
        Some(exe) => start_haproxy(&exe, dir, to, cpu).map_err(|e| format!("{e:#}")),
    };
    let stream = match find("nginx") {
        None => Err("nginx is not installed (apt-get install -y nginx libnginx-mod-stream)".into()),
        Some(_) if !Path::new(STREAM_MODULE).is_file() => Err(format!(
            "nginx's stream module ({STREAM_MODULE}) is not installed (apt-get install -y \
             libnginx-mod-stream)"
        )),
        Some(exe) => start_nginx_stream(&exe, dir, to, cpu).map_err(|e| format!("{e:#}")),
    };
    vec![
        ("proactor", start_proactor(cfg, to, cpu).map_err(|e| format!("{e:#}"))),
        ("haproxy", haproxy),
        ("nginx-stream", stream),
    ]
}

/// Runs `measure(port)` direct and through every proxy, the order reversed every other run, and
/// builds one row per configuration.
fn compare(
    case: &str,
    cfg: &ProxyBenchConfig,
    direct_port: u16,
    proxies: &[(&'static str, Result<Proxy, String>)],
    measure: &dyn Fn(u16) -> anyhow::Result<Measured>,
) -> anyhow::Result<Vec<ProxyBenchRow>> {
    // (name, port, pid of the process whose CPU counts)
    let mut configs: Vec<(&str, u16, Option<u32>)> = vec![("direct", direct_port, None)];
    for (name, p) in proxies {
        if let Ok(p) = p {
            configs.push((name, p.port, Some(p.guard.0.id())));
        }
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let want = cfg.runs.max(1);
    let (mut run, mut extra) = (0, 0);
    loop {
        if run >= want {
            let samples: Vec<Vec<Sample>> =
                (0..configs.len()).map(|j| samples(&rates[j], &cpus[j])).collect();
            match settle::next_round(&samples, want, extra, EXTRA_ROUNDS, true, MAX_SPREAD) {
                settle::Next::Rerun => extra += 1,
                settle::Next::Done(_) => break,
            }
        }
        let mut order: Vec<usize> = (0..configs.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for j in order {
            let (_, port, pid) = configs[j];
            let before = pid.map(proc::process_cpu).transpose()?;
            let m = measure(port)?;
            if let (Some(pid), Some(before)) = (pid, before) {
                let used = proc::process_cpu(pid)?.saturating_sub(before);
                cpus[j].push(used.as_secs_f64() * 1e6 / m.requests.max(1.0));
            }
            rates[j].push(m.rps);
        }
        run += 1;
    }
    let mut rows = Vec::new();
    for (j, (name, _, _)) in configs.iter().enumerate() {
        let (r, c) = (std::mem::take(&mut rates[j]), std::mem::take(&mut cpus[j]));
        let mut used = settle::tightest(&samples(&r, &c), want).used;
        used.sort_unstable();
        let ur: Vec<f64> = used.iter().map(|&i| r[i]).collect();
        let uc: Vec<f64> = used.iter().filter_map(|&i| c.get(i).copied()).collect();
        rows.push(ProxyBenchRow {
            case: case.into(),
            via: name.to_string(),
            rps: median(ur.clone()),
            spread: spread(&ur),
            runs: r,
            used,
            cpu_us: median(uc.clone()),
            cpu_spread: spread(&uc),
            skipped: None,
        });
    }
    for (name, p) in proxies {
        if let Err(why) = p {
            rows.push(ProxyBenchRow::skipped(case, name, why.clone()));
        }
    }
    Ok(rows)
}

/// One configuration's runs as samples to settle on (no CPU figure for the direct connection:
/// its rate alone).
fn samples(rates: &[f64], cpus: &[f64]) -> Vec<Sample> {
    rates
        .iter()
        .enumerate()
        .map(|(i, &r)| Sample { msgs_per_sec: r, cpu_per_msg: cpus.get(i).copied().unwrap_or(1.0) })
        .collect()
}

/// Requests per second over the tests `redis-benchmark -q` printed (their mean), and the
/// requests made.
fn redis_run(port: u16, requests: u64, cpu: Option<usize>) -> anyhow::Result<Measured> {
    const TESTS: &str = "ping,set,get,incr,lpush,lpop,mset";
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-n", &requests.to_string()])
        .args(["-t", TESTS])
        .stderr(Stdio::piped());
    let out = pinned(cmd, cpu).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "redis-benchmark failed: {}", text.trim());
    anyhow::ensure!(!text.to_lowercase().contains("error"), "redis-benchmark reported: {text}");
    // Lines look like "SET: 98039.22 requests per second, p50=0.263 msec" (after \r updates).
    let mut rates = Vec::new();
    for line in text.split(['\r', '\n']) {
        if let Some((_, rest)) = line.split_once(": ") {
            if let Some(num) = rest
                .strip_suffix(" requests per second")
                .or_else(|| rest.split_once(" requests per second,").map(|(n, _)| n))
            {
                if let Ok(v) = num.trim().parse::<f64>() {
                    rates.push(v);
                }
            }
        }
    }
    anyhow::ensure!(!rates.is_empty(), "no figures in redis-benchmark output: {text}");
    // PING runs twice (inline and bulk); every test makes `requests` requests.
    let tests = TESTS.split(',').count() + 1;
    Ok(Measured {
        rps: rates.iter().sum::<f64>() / rates.len() as f64,
        requests: (requests as usize * tests) as f64,
    })
}

fn redis_case(cfg: &ProxyBenchConfig) -> Vec<ProxyBenchRow> {
    let case = "redis-benchmark (mean req/s over its tests)";
    for cmd in ["redis-server", "redis-benchmark"] {
        if find(cmd).is_none() {
            let why =
                format!("{cmd} is not installed (apt-get install -y redis-server redis-tools)");
            return vec![ProxyBenchRow::skipped(case, "all", why)];
        }
    }
    let place = placement(cfg);
    let run = || -> anyhow::Result<Vec<ProxyBenchRow>> {
        let dir = scratch("redis")?;
        let port = free_port()?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null());
        let _server = Guard(pinned(cmd, place.map(|p| p.0)).spawn()?);
        wait_listening(port, Duration::from_secs(10))?;
        let proxies = start_proxies(cfg, &dir, ([127, 0, 0, 1], port).into(), place.map(|p| p.0));
        let n = cfg.redis_requests;
        let rows = compare(case, cfg, port, &proxies, &|p| redis_run(p, n, place.map(|p| p.1)));
        drop(proxies);
        let _ = std::fs::remove_dir_all(&dir);
        rows
    };
    run().unwrap_or_else(|e| vec![ProxyBenchRow::skipped(case, "all", format!("{e:#}"))])
}

/// A scratch directory for one case's configuration files.
fn scratch(what: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("proactor-bench-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A minimal nginx configuration serving one small file on `port`.
fn nginx_conf(dir: &Path, port: u16) -> anyhow::Result<PathBuf> {
    let root = dir.join("www");
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("index.html"), "x".repeat(1024))?;
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {pid};\nerror_log stderr error;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n\
         fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n\
         server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
        pid = dir.join("nginx.pid").display(),
        tmp = dir.display(),
        root = root.display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

fn wrk_run(port: u16, secs: u64, conns: u32, cpu: Option<usize>) -> anyhow::Result<Measured> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t", "2", "-c", &conns.to_string(), "-d", &format!("{secs}s")])
        .arg(format!("http://127.0.0.1:{port}/index.html"));
    let out = pinned(cmd, cpu).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {}", text.trim());
    anyhow::ensure!(
        !text.contains("Socket errors") && !text.contains("Non-2xx"),
        "wrk saw errors: {text}"
    );
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk output: {text}"))?;
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").map(|(n, _)| n.trim().to_string()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no request count in wrk output: {text}"))?;
    Ok(Measured { rps, requests })
}

fn nginx_case(cfg: &ProxyBenchConfig) -> Vec<ProxyBenchRow> {
    let case = "wrk -> nginx, 1 KiB file (req/s)";
    let Some(nginx) = find("nginx") else {
        let why = "nginx is not installed (apt-get install -y nginx)".to_string();
        return vec![ProxyBenchRow::skipped(case, "all", why)];
    };
    if find("wrk").is_none() {
        let why = "wrk is not installed (apt-get install -y wrk)".to_string();
        return vec![ProxyBenchRow::skipped(case, "all", why)];
    }
    let place = placement(cfg);
    let run = || -> anyhow::Result<Vec<ProxyBenchRow>> {
        let dir = scratch("nginx")?;
        let port = free_port()?;
        let conf = nginx_conf(&dir, port)?;
        let mut cmd = Command::new(&nginx);
        cmd.arg("-c").arg(&conf).arg("-p").arg(&dir).stdout(Stdio::null());
        let server = Guard(pinned(cmd, place.map(|p| p.0)).spawn()?);
        wait_listening(port, Duration::from_secs(10))?;
        let proxies = start_proxies(cfg, &dir, ([127, 0, 0, 1], port).into(), place.map(|p| p.0));
        let secs = cfg.wrk_duration.as_secs().max(1);
        let rows = compare(case, cfg, port, &proxies, &|p| {
            wrk_run(p, secs, cfg.wrk_conns, place.map(|p| p.1))
        });
        drop(proxies);
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        rows
    };
    run().unwrap_or_else(|e| vec![ProxyBenchRow::skipped(case, "all", format!("{e:#}"))])
}

/// Runs both cases; a configuration whose programs are missing comes back with `skipped` set.
pub fn run_proxy_bench(cfg: &ProxyBenchConfig) -> Vec<ProxyBenchRow> {
    let mut rows = redis_case(cfg);
    rows.extend(nginx_case(cfg));
    rows
}

fn pct(s: Option<f64>) -> String {
    s.map(|s| format!("{:.0}%", s * 100.0)).unwrap_or_else(|| "-".into())
}

/// The comparison lines for one case: proactor against direct and against each peer proxy.
fn verdicts(rows: &[&ProxyBenchRow]) -> Vec<String> {
    let by = |via: &str| rows.iter().find(|r| r.via == via && r.skipped.is_none());
    let Some(p) = by("proactor") else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(d) = by("direct") {
        out.push(format!(
            "  proactor/direct requests/s = {:.2}x (spreads {} and {})",
            p.rps / d.rps,
            pct(p.spread),
            pct(d.spread)
        ));
    }
    for peer in ["haproxy", "nginx-stream"] {
        let Some(q) = by(peer) else { continue };
        let (rate, cpu) = (p.rps / q.rps, p.cpu_us / q.cpu_us);
        let word = match (p.settled() && q.settled(), rate >= PEER_RATE && cpu <= PEER_CPU) {
            (false, _) => "unsettled",
            (true, true) => "met",
            (true, false) => "MISS",
        };
        out.push(format!(
            "  {word}: proactor/{peer} requests/s = {rate:.2}x (>= {PEER_RATE}), CPU per request \
             = {cpu:.2}x (<= {PEER_CPU}); spreads {} / {} and {} / {}",
            pct(p.spread),
            pct(p.cpu_spread),
            pct(q.spread),
            pct(q.cpu_spread)
        ));
    }
    out
}

/// Prints the rows as a table, then each case's comparisons.
pub fn print_proxy_report(rows: &[ProxyBenchRow]) {
    println!(
        "proxy bench: upstream and proxy on one CPU, the load tool on another (when there are \
         two); median of the runs that agree best (a spread above 15% earns up to 2 extra), \
         configurations alternating; spread = (max - min) / median"
    );
    println!(
        "{:<44} {:<13} {:>12} {:>7} {:>13} {:>7}",
        "case", "via", "req/s", "spread", "proxy CPU µs", "spread"
    );
    let mut cases: Vec<&str> = Vec::new();
    for r in rows {
        if !cases.contains(&r.case.as_str()) {
            cases.push(&r.case);
        }
        match &r.skipped {
            Some(why) => println!("{:<44} {:<13} skipped: {why}", r.case, r.via),
            None => println!(
                "{:<44} {:<13} {:>12.0} {:>7} {:>13} {:>7}",
                r.case,
                r.via,
                r.rps,
                pct(r.spread),
                if r.cpu_us.is_finite() { format!("{:.2}", r.cpu_us) } else { "-".into() },
                pct(r.cpu_spread)
            ),
        }
    }
    for case in cases {
        let of: Vec<&ProxyBenchRow> = rows.iter().filter(|r| r.case == case).collect();
        let lines = verdicts(&of);
        if !lines.is_empty() {
            println!("{case}:");
            for l in lines {
                println!("{l}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(via: &str, rps: f64, spread: f64, cpu: f64) -> ProxyBenchRow {
        ProxyBenchRow {
            case: "c".into(),
            via: via.into(),
            rps,
            runs: vec![rps; 3],
            used: vec![0, 1, 2],
            spread: Some(spread),
            cpu_us: cpu,
            cpu_spread: Some(spread),
            skipped: None,
        }
    }

    #[test]
    fn peer_targets_need_settled_figures() {
        let (p, h) = (row("proactor", 130.0, 0.05, 7.0), row("haproxy", 100.0, 0.05, 10.0));
        let lines = verdicts(&[&p, &h]);
        assert!(lines[0].starts_with("  met: proactor/haproxy"), "{lines:?}");
        let slow = row("proactor", 110.0, 0.05, 7.0);
        assert!(verdicts(&[&slow, &h])[0].starts_with("  MISS"));
        let wide = row("haproxy", 100.0, 0.4, 10.0);
        assert!(verdicts(&[&p, &wide])[0].starts_with("  unsettled"));
        let d = row("direct", 200.0, 0.05, f64::NAN);
        let lines = verdicts(&[&p, &d, &h]);
        assert!(lines[0].contains("proactor/direct requests/s = 0.65x"), "{lines:?}");
        assert!(d.settled(), "the direct row is settled on its rate alone");
    }
}
