//! Benchmark of `proactor proxy` against a direct connection (called by `proactor bench`):
//! `redis-benchmark` to `redis-server` (target: at least 0.9x the direct throughput) and `wrk`
//! to `nginx` (target: at least 0.8x). Each peer runs as a child process on a free port on
//! 127.0.0.1; a case whose programs are not installed is skipped with a message. Direct and
//! proxied runs alternate; the median of each is reported.

use crate::bench::report::median;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Clone)]
pub struct ProxyBenchConfig {
    /// The `proactor` executable (normally `std::env::current_exe()`).
    pub proactor_bin: PathBuf,
    /// Extra arguments for the proxy (for example `--driver epoll` or `--splice`).
    pub proxy_args: Vec<String>,
    /// Requests per redis-benchmark run (`-n`).
    pub redis_requests: u64,
    /// Duration of each wrk run.
    pub wrk_duration: Duration,
    /// wrk connections.
    pub wrk_conns: u32,
    /// Alternating runs per case.
    pub runs: usize,
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
        }
    }
}

/// One case's result, or why it was skipped.
#[derive(Debug, Clone)]
pub struct ProxyBenchRow {
    /// The case.
    pub case: String,
    /// Median throughput direct (requests per second).
    pub direct: f64,
    /// Median throughput through the proxy.
    pub proxied: f64,
    /// `proxied / direct`.
    pub ratio: f64,
    /// The target for `ratio`.
    pub target: f64,
    /// Why the case did not run, if it did not.
    pub skipped: Option<String>,
}

impl ProxyBenchRow {
    fn skipped(case: &str, target: f64, why: String) -> ProxyBenchRow {
        eprintln!("proxy bench: {case}: SKIPPED: {why}");
        ProxyBenchRow {
            case: case.into(),
            direct: f64::NAN,
            proxied: f64::NAN,
            ratio: f64::NAN,
            target,
            skipped: Some(why),
        }
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

fn have(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
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

/// Starts `proactor proxy` in front of `to`; returns it and its address.
fn start_proxy(cfg: &ProxyBenchConfig, to: SocketAddr) -> anyhow::Result<(Guard, SocketAddr)> {
    let mut child = Command::new(&cfg.proactor_bin)
        .args(["proxy", "--listen", "127.0.0.1:0", "--to"])
        .arg(to.to_string())
        .args(&cfg.proxy_args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let guard = Guard(child);
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow::anyhow!("proxy printed {line:?} instead of `listening on`"))?
        .parse()?;
    Ok((guard, addr))
}

/// Runs `measure(port)` direct and through the proxy, alternating, and builds the row.
fn compare(
    case: &str,
    target: f64,
    runs: usize,
    direct_port: u16,
    proxy_port: u16,
    measure: &dyn Fn(u16) -> anyhow::Result<f64>,
) -> anyhow::Result<ProxyBenchRow> {
    let (mut d, mut p) = (Vec::new(), Vec::new());
    for i in 0..runs.max(1) {
        if i % 2 == 0 {
            d.push(measure(direct_port)?);
            p.push(measure(proxy_port)?);
        } else {
            p.push(measure(proxy_port)?);
            d.push(measure(direct_port)?);
        }
    }
    let (direct, proxied) = (median(d), median(p));
    Ok(ProxyBenchRow {
        case: case.into(),
        direct,
        proxied,
        ratio: proxied / direct,
        target,
        skipped: None,
    })
}

/// Total requests per second over the tests `redis-benchmark -q` printed.
fn redis_rps(port: u16, requests: u64) -> anyhow::Result<f64> {
    let out = Command::new("redis-benchmark")
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-n", &requests.to_string()])
        .args(["-t", "ping,set,get,incr,lpush,lpop,mset"])
        .stderr(Stdio::piped())
        .output()?;
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
    Ok(rates.iter().sum::<f64>() / rates.len() as f64)
}

fn redis_case(cfg: &ProxyBenchConfig) -> ProxyBenchRow {
    let case = "redis-benchmark (mean req/s over 7 tests)";
    for cmd in ["redis-server", "redis-benchmark"] {
        if !have(cmd) {
            return ProxyBenchRow::skipped(case, 0.9, format!("{cmd} is not installed"));
        }
    }
    let run = || -> anyhow::Result<ProxyBenchRow> {
        let port = free_port()?;
        let server = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()?;
        let _server = Guard(server);
        wait_listening(port, Duration::from_secs(10))?;
        let (_proxy, paddr) = start_proxy(cfg, ([127, 0, 0, 1], port).into())?;
        let n = cfg.redis_requests;
        compare(case, 0.9, cfg.runs, port, paddr.port(), &|p| redis_rps(p, n))
    };
    run().unwrap_or_else(|e| ProxyBenchRow::skipped(case, 0.9, format!("{e:#}")))
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

fn wrk_rps(port: u16, secs: u64, conns: u32) -> anyhow::Result<f64> {
    let out = Command::new("wrk")
        .args(["-t", "2", "-c", &conns.to_string(), "-d", &format!("{secs}s")])
        .arg(format!("http://127.0.0.1:{port}/index.html"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {}", text.trim());
    anyhow::ensure!(
        !text.contains("Socket errors") && !text.contains("Non-2xx"),
        "wrk saw errors: {text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk output: {text}"))
}

fn nginx_case(cfg: &ProxyBenchConfig) -> ProxyBenchRow {
    let case = "wrk -> nginx, 1 KiB file (req/s)";
    let nginx =
        ["nginx", "/usr/sbin/nginx"].into_iter().find(|c| have(c) || Path::new(c).is_file());
    let Some(nginx) = nginx else {
        return ProxyBenchRow::skipped(case, 0.8, "nginx is not installed".into());
    };
    if !have("wrk") {
        return ProxyBenchRow::skipped(case, 0.8, "wrk is not installed".into());
    }
    let run = || -> anyhow::Result<ProxyBenchRow> {
        let dir = std::env::temp_dir().join(format!("proactor-bench-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let conf = nginx_conf(&dir, port)?;
        let server = Command::new(nginx)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()?;
        let server = Guard(server);
        wait_listening(port, Duration::from_secs(10))?;
        let (proxy, paddr) = start_proxy(cfg, ([127, 0, 0, 1], port).into())?;
        let secs = cfg.wrk_duration.as_secs().max(1);
        let row =
            compare(case, 0.8, cfg.runs, port, paddr.port(), &|p| wrk_rps(p, secs, cfg.wrk_conns));
        drop(proxy);
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        row
    };
    run().unwrap_or_else(|e| ProxyBenchRow::skipped(case, 0.8, format!("{e:#}")))
}

/// Runs both cases; a case whose peer is missing comes back with `skipped` set.
pub fn run_proxy_bench(cfg: &ProxyBenchConfig) -> Vec<ProxyBenchRow> {
    vec![redis_case(cfg), nginx_case(cfg)]
}

/// Prints the rows as a table.
pub fn print_proxy_report(rows: &[ProxyBenchRow]) {
    println!(
        "{:<44} {:>12} {:>12} {:>7} {:>7}",
        "proxy case", "direct", "proxied", "ratio", "target"
    );
    for r in rows {
        match &r.skipped {
            Some(why) => println!("{:<44} skipped: {why}", r.case),
            None => println!(
                "{:<44} {:>12.0} {:>12.0} {:>6.2}x {:>6.1}x  {}",
                r.case,
                r.direct,
                r.proxied,
                r.ratio,
                r.target,
                if r.ratio >= r.target { "met" } else { "MISSED" }
            ),
        }
    }
}
