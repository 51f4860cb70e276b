//! `proactor bench soak`: every app under injected faults (`PROACTOR_FAULTS`), driven by the
//! load generator (`loadgen.rs`), round after round under a rotating seed, on both drivers.
//!
//! Each round takes the next seed and, on each driver, runs echo (the handler chain and the
//! async front end in turn), proxy (to a fault-free echo upstream) and http (keep-alive GETs,
//! whole files and a range) under the load generator, and `proactor copy --verify`, each twice:
//! - under the lossless kinds and `enobufs` (a correct program moves every byte under them): no
//!   mismatch and no connection error, the copy succeeds and is exact;
//! - under every kind: no mismatch; connections may be cut (resets), the copy may fail, but only
//!   with a clear error and leaving neither its destination nor a temporary file.
//!
//! Every process stops on SIGTERM and logs what it injected (`proactor::faults`); the soak sums
//! those lines per kind, counts the bytes moved (sent and checked back), and prints the command
//! that repeats any failing round.

use super::loadgen::{self, Exchange, Load, Measured};
use super::spawn::ServerProc;
use anyhow::{anyhow, bail, Context};
use proactor::faults::FaultKind;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Arguments of `proactor bench soak`.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Run rounds until this many minutes have passed.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Stop after this many rounds (seeds) even if time is left.
    #[arg(long)]
    rounds: Option<u64>,
    /// The first round's seed; each round takes the next.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Fault rate under every kind.
    #[arg(long, default_value_t = 0.05)]
    rate: f64,
    /// Fault rate under the lossless kinds (and enobufs).
    #[arg(long, default_value_t = 0.2)]
    lossless_rate: f64,
    /// Drivers, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "uring,epoll")]
    drivers: Vec<String>,
    /// Seconds of load per app and fault set.
    #[arg(long, default_value_t = 1.5)]
    secs: f64,
    /// Load generator connections.
    #[arg(long, default_value_t = 32)]
    conns: usize,
}

/// Runs the soak and prints its totals; non-zero when a byte was wrong, a lossless run lost a
/// connection, or a process misbehaved.
pub fn main(args: SoakArgs) -> ExitCode {
    let valid = args.minutes.is_finite()
        && args.minutes >= 0.0
        && args.secs.is_finite()
        && (0.1..=600.0).contains(&args.secs)
        && (0.0..=1.0).contains(&args.rate)
        && (0.0..=1.0).contains(&args.lossless_rate)
        && args.conns >= 1
        && !args.drivers.is_empty()
        && args.drivers.iter().all(|d| d == "uring" || d == "epoll");
    if !valid {
        eprintln!(
            "error: --minutes >= 0, --secs 0.1 to 600, rates 0 to 1, --conns >= 1, --drivers \
             uring and/or epoll"
        );
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(totals) => {
            totals.print(&args);
            if totals.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: soak: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the soak counted.
#[derive(Default)]
struct Totals {
    rounds: u64,
    started: Option<Instant>,
    /// Faults injected, in `FaultKind::ALL` order.
    faults: [u64; FaultKind::ALL.len()],
    /// Bytes sent and checked back, per app.
    bytes: [(&'static str, u64); 4],
    mismatches: u64,
    /// Connection errors under the lossless kinds (must be 0).
    lossless_errors: u64,
    /// Connections cut (errors) under every kind, as resets do.
    cut: u64,
    /// Copies that failed cleanly under every kind.
    copies_failed: u64,
    /// Each failure, with the seed and driver that repeat it.
    failures: Vec<String>,
}

impl Totals {
    fn add_bytes(&mut self, app: &'static str, n: u64) {
        match self.bytes.iter_mut().find(|(a, _)| *a == app) {
            Some((_, b)) => *b += n,
            None => {
                if let Some(slot) = self.bytes.iter_mut().find(|(a, _)| a.is_empty()) {
                    *slot = (app, n);
                }
            }
        }
    }

    fn print(&self, args: &SoakArgs) {
        let mins = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64() / 60.0);
        let last = args.first_seed + self.rounds.saturating_sub(1);
        println!(
            "soak: {} round(s), seeds {}..={last}, in {mins:.1} min on {}: echo, proxy, http, copy",
            self.rounds,
            args.first_seed,
            args.drivers.join(", ")
        );
        let faults: Vec<String> =
            FaultKind::ALL.iter().zip(self.faults).map(|(k, n)| format!("{k}={n}")).collect();
        println!("faults injected: {} ({})", self.faults.iter().sum::<u64>(), faults.join(" "));
        let per_app: Vec<String> = self
            .bytes
            .iter()
            .filter(|(a, _)| !a.is_empty())
            .map(|(a, n)| format!("{a} {n}"))
            .collect();
        let total: u64 = self.bytes.iter().map(|(_, n)| n).sum();
        println!("bytes moved: {total} ({})", per_app.join(", "));
        println!("mismatches: {}", self.mismatches);
        println!("connection errors under lossless faults: {}", self.lossless_errors);
        println!(
            "under every kind: {} connection(s) cut, {} cop(ies) failed cleanly",
            self.cut, self.copies_failed
        );
        if self.failures.is_empty() {
            println!("failures: 0");
        } else {
            println!("failures: {}", self.failures.len());
            for f in &self.failures {
                println!("  {f}");
            }
        }
    }
}

/// The two fault sets of a round.
#[derive(Clone, Copy, PartialEq)]
enum Set {
    Lossless,
    Every,
}

impl Set {
    fn plan(self, seed: u64, args: &SoakArgs) -> String {
        match self {
            Set::Lossless => {
                format!("seed={seed},rate={},kinds=lossless+enobufs", args.lossless_rate)
            }
            Set::Every => format!("seed={seed},rate={}", args.rate),
        }
    }
}

fn run(args: &SoakArgs) -> anyhow::Result<Totals> {
    let dir = Scratch::new()?;
    let files = Files::write(&dir.0)?;
    let mut totals = Totals { started: Some(Instant::now()), ..Totals::default() };
    let end = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    // Fault-free references: an echo upstream for the proxy, the exact http responses.
    let mut upstreams = Vec::new();
    let mut exchanges = Vec::new();
    for driver in &args.drivers {
        upstreams.push(start_server("echo", driver, &[], None, &dir.0)?);
        exchanges.push(files.exchanges(driver, &dir.0)?);
    }
    let mut seed = args.first_seed;
    loop {
        let done = totals.rounds > 0 && Instant::now() >= end;
        if done || args.rounds.is_some_and(|r| totals.rounds >= r) {
            break;
        }
        for (i, driver) in args.drivers.iter().enumerate() {
            for set in [Set::Lossless, Set::Every] {
                let round = Round { args, seed, driver, set, dir: &dir.0 };
                round.echo(&mut totals);
                round.proxy(upstreams[i].addr, &mut totals);
                round.http(&exchanges[i], &mut totals);
                round.copy(&files, &mut totals);
            }
        }
        eprintln!(
            "soak: seed {seed} done ({:.0} s): {} mismatches, {} failures",
            totals.started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            totals.mismatches,
            totals.failures.len()
        );
        totals.rounds += 1;
        seed += 1;
    }
    for up in upstreams {
        up.stop().context("the fault-free echo upstream")?;
    }
    Ok(totals)
}

/// One app under one fault set, seed and driver.
struct Round<'a> {
    args: &'a SoakArgs,
    seed: u64,
    driver: &'a str,
    set: Set,
    dir: &'a Path,
}

impl Round<'_> {
    fn fail(&self, totals: &mut Totals, app: &str, what: String) {
        totals.failures.push(format!(
            "{app} on {} under PROACTOR_FAULTS={}: {what} — repeat with: proactor bench soak \
             --first-seed {} --rounds 1 --drivers {}",
            self.driver,
            self.set.plan(self.seed, self.args),
            self.seed,
            self.driver
        ));
    }

    fn load(&self, server: &ServerProc, size: usize) -> Load {
        Load {
            addr: server.addr,
            server_pid: server.pid,
            conns: self.args.conns,
            size,
            warmup: Duration::ZERO,
            window: Duration::from_secs_f64(self.args.secs),
            rate: None,
        }
    }

    /// Runs the load generator against `server`. Under every kind a connection may be reset
    /// while the load generator is still connecting (which ends its run): that counts as a
    /// connection cut, and the run starts again, up to three times.
    fn drive(
        &self,
        totals: &mut Totals,
        server: &ServerProc,
        size: usize,
        exchanges: &[Exchange],
    ) -> anyhow::Result<Measured> {
        let load = self.load(server, size);
        let mut tries = 0;
        loop {
            let res = loadgen::run_exchanges(&load, exchanges);
            tries += 1;
            match &res {
                Err(e) if self.set == Set::Every && tries < 3 && cut_while_connecting(e) => {
                    totals.cut += 1;
                }
                _ => return res,
            }
        }
    }

    /// Counts what a load run measured, and stops the server.
    fn settle(
        &self,
        totals: &mut Totals,
        app: &'static str,
        server: ServerProc,
        measured: anyhow::Result<Measured>,
    ) {
        match measured {
            Ok(m) => {
                totals.add_bytes(app, m.bytes);
                totals.mismatches += m.mismatches;
                if m.mismatches > 0 {
                    self.fail(
                        totals,
                        app,
                        format!("{} mismatch(es): {:?}", m.mismatches, m.errors),
                    );
                }
                let errors = m.error_count - m.mismatches;
                match self.set {
                    Set::Lossless if errors > 0 => {
                        totals.lossless_errors += errors;
                        let what = format!("{errors} connection error(s): {:?}", m.errors);
                        self.fail(totals, app, what);
                    }
                    Set::Lossless => {}
                    Set::Every => totals.cut += errors,
                }
                if m.bytes == 0 {
                    self.fail(totals, app, "no message came back at all".into());
                }
            }
            Err(e) => self.fail(totals, app, format!("load generator: {e:#}")),
        }
        match stop_server(server) {
            Ok(counts) => add_faults(totals, &counts),
            Err(e) => self.fail(totals, app, format!("{e:#}")),
        }
    }

    fn echo(&self, totals: &mut Totals) {
        let style = if self.seed.is_multiple_of(2) { "async" } else { "handlers" };
        let size = [64, 4096, 65536][(self.seed % 3) as usize];
        let plan = self.set.plan(self.seed, self.args);
        let server =
            match start_server("echo", self.driver, &["--style", style], Some(&plan), self.dir) {
                Ok(s) => s,
                Err(e) => return self.fail(totals, "echo", format!("{e:#}")),
            };
        let measured = self.drive(totals, &server, size, &[]);
        self.settle(totals, "echo", server, measured);
    }

    fn proxy(&self, upstream: SocketAddr, totals: &mut Totals) {
        let size = [4096, 65536, 64][(self.seed % 3) as usize];
        let plan = self.set.plan(self.seed, self.args);
        let to = upstream.to_string();
        let server = match start_server("proxy", self.driver, &["--to", &to], Some(&plan), self.dir)
        {
            Ok(s) => s,
            Err(e) => return self.fail(totals, "proxy", format!("{e:#}")),
        };
        let measured = self.drive(totals, &server, size, &[]);
        self.settle(totals, "proxy", server, measured);
    }

    fn http(&self, exchanges: &[Exchange], totals: &mut Totals) {
        let plan = self.set.plan(self.seed, self.args);
        let root = self.dir.join("root");
        let extra = ["--root", root.to_str().unwrap_or("."), "--quiet"];
        let server = match start_server("http", self.driver, &extra, Some(&plan), self.dir) {
            Ok(s) => s,
            Err(e) => return self.fail(totals, "http", format!("{e:#}")),
        };
        let measured = self.drive(totals, &server, 0, exchanges);
        self.settle(totals, "http", server, measured);
    }

    fn copy(&self, files: &Files, totals: &mut Totals) {
        let dst = self.dir.join("copy-dst");
        let plan = self.set.plan(self.seed, self.args);
        // Through buffers (the kernel's own copy passes no write through the proactor to
        // fault), in blocks of a rotating size.
        let block = ["16K", "64K", "256K"][(self.seed % 3) as usize];
        let out = Command::new(exe())
            .args(["copy", "--driver", self.driver, "--verify", "--buffered", "--block", block])
            .arg(&files.src)
            .arg(&dst)
            .env("PROACTOR_FAULTS", &plan)
            .env("RUST_LOG", LOG)
            .stdin(Stdio::null())
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => return self.fail(totals, "copy", format!("cannot run proactor copy: {e}")),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        add_faults(totals, &fault_counts(&stderr));
        if out.status.success() {
            match std::fs::read(&dst) {
                Ok(got) if got == files.data => totals.add_bytes("copy", got.len() as u64),
                Ok(_) => {
                    totals.mismatches += 1;
                    self.fail(totals, "copy", "the copy succeeded but differs".into());
                }
                Err(e) => self.fail(totals, "copy", format!("succeeded but no DST: {e}")),
            }
            let _ = std::fs::remove_file(&dst);
        } else {
            let low = stderr.to_lowercase();
            let clear = low.contains("no space left") || low.contains("too many open files");
            if self.set == Set::Lossless || !clear {
                let last = stderr.lines().last().unwrap_or("").to_string();
                self.fail(totals, "copy", format!("failed ({}): {last}", out.status));
            } else {
                totals.copies_failed += 1;
            }
            if dst.exists() {
                self.fail(totals, "copy", "a failed copy left DST".into());
                let _ = std::fs::remove_file(&dst);
            }
        }
        // Nothing but the source and the servers' logs may remain: no temporary file.
        let left: Vec<String> = std::fs::read_dir(self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "src" && n != "root" && !n.ends_with(".log"))
                    .collect()
            })
            .unwrap_or_default();
        if !left.is_empty() {
            self.fail(totals, "copy", format!("left behind {left:?}"));
            for name in left {
                let _ = std::fs::remove_file(self.dir.join(name));
            }
        }
    }
}

/// True for a load generator run ended by a connection reset (or refused while the server
/// was out of descriptors) as it connected.
fn cut_while_connecting(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            )
        })
    })
}

fn add_faults(totals: &mut Totals, counts: &[u64; FaultKind::ALL.len()]) {
    for (t, c) in totals.faults.iter_mut().zip(counts) {
        *t += c;
    }
}

/// Sums the `kind=N` counts of every fault summary line (one per proactor: per thread).
fn fault_counts(log: &str) -> [u64; FaultKind::ALL.len()] {
    let mut counts = [0; FaultKind::ALL.len()];
    for line in log.lines().filter(|l| l.contains(" injected ")) {
        let Some(start) = line.rfind('(') else { continue };
        for pair in line[start + 1..].trim_end_matches(')').split_whitespace() {
            let Some((name, n)) = pair.split_once('=') else { continue };
            let Some(i) = FaultKind::ALL.iter().position(|k| k.name() == name) else { continue };
            counts[i] += n.trim_end_matches(')').parse::<u64>().unwrap_or(0);
        }
    }
    counts
}

/// The soak's logs filter: the fault summaries, and warnings.
const LOG: &str = "warn,proactor::faults=info";

fn exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("proactor"))
}

/// A scratch directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("proactor-soak-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("root"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The files the soak moves: the copy's source, the http root.
struct Files {
    src: PathBuf,
    data: Vec<u8>,
}

impl Files {
    fn write(dir: &Path) -> anyhow::Result<Files> {
        let data = loadgen::pattern(7, 3 << 20);
        let src = dir.join("src");
        std::fs::write(&src, &data)?;
        std::fs::write(dir.join("root/small.txt"), "a small file\n")?;
        std::fs::write(dir.join("root/data.bin"), loadgen::pattern(11, 200_000))?;
        Ok(Files { src, data })
    }

    /// The http exchanges — a small file, a large one, a range — with the responses a
    /// fault-free server gives on `driver` (only the date may differ).
    fn exchanges(&self, driver: &str, dir: &Path) -> anyhow::Result<Vec<Exchange>> {
        let root = dir.join("root");
        let extra = ["--root", root.to_str().unwrap_or("."), "--quiet"];
        let server = start_server("http", driver, &extra, None, dir)?;
        let requests = [
            "GET /small.txt HTTP/1.1\r\nHost: soak\r\n\r\n".to_string(),
            "GET /data.bin HTTP/1.1\r\nHost: soak\r\n\r\n".to_string(),
            "GET /data.bin HTTP/1.1\r\nHost: soak\r\nRange: bytes=1000-60999\r\n\r\n".to_string(),
        ];
        let mut out = Vec::new();
        for request in requests {
            let response = fetch(server.addr, &request)?;
            let skip = date_value(&response)?;
            out.push(Exchange { request: request.into_bytes(), response, skip });
        }
        server.stop()?;
        Ok(out)
    }
}

/// One keep-alive request's whole response (head and `Content-Length` body).
fn fetch(addr: SocketAddr, request: &str) -> anyhow::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(s);
    let mut response = Vec::new();
    let mut len = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("the server closed before the end of the head");
        }
        response.extend_from_slice(line.as_bytes());
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                len = Some(value.trim().parse::<usize>()?);
            }
        }
        if line == "\r\n" {
            break;
        }
    }
    let len = len.ok_or_else(|| anyhow!("no Content-Length in {request:?}"))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    response.extend_from_slice(&body);
    Ok(response)
}

/// Where the `Date` header's value lies in a response (it changes every second).
fn date_value(response: &[u8]) -> anyhow::Result<std::ops::Range<usize>> {
    let key = b"\r\nDate: ";
    let at = response
        .windows(key.len())
        .position(|w| w == key)
        .ok_or_else(|| anyhow!("no Date header"))?;
    let start = at + key.len();
    let len = response[start..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(|| anyhow!("an unterminated Date header"))?;
    Ok(start..start + len)
}

/// Starts `proactor CMD --listen 127.0.0.1:0 --driver DRIVER EXTRA...` under `faults`, its
/// stderr in a log file in `dir`, and waits for its `listening on` line.
fn start_server(
    cmd: &str,
    driver: &str,
    extra: &[&str],
    faults: Option<&str>,
    dir: &Path,
) -> anyhow::Result<ServerProc> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut command = Command::new(exe());
    command
        .args([cmd, "--listen", "127.0.0.1:0", "--driver", driver])
        .args(extra)
        .env("RUST_LOG", LOG)
        .env_remove("PROACTOR_FAULTS");
    if let Some(plan) = faults {
        command.env("PROACTOR_FAULTS", plan);
    }
    let what = format!("proactor {cmd} --driver {driver}");
    ServerProc::spawn(command, &what, dir.join(format!("{cmd}-{n}.log")))
}

/// Stops `server` (see [`ServerProc::stop`]) and counts what it injected.
fn stop_server(server: ServerProc) -> anyhow::Result<[u64; FaultKind::ALL.len()]> {
    Ok(fault_counts(&server.stop()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_summary_lines() {
        let log = "x\nPROACTOR_FAULTS=seed=1,rate=0.2,kinds=short injected 3 (short=2 eintr=0 \
                   emfile=1)\nPROACTOR_FAULTS=seed=9 injected 5 (short=1 enospc=4)\n";
        let c = fault_counts(log);
        let at = |k: FaultKind| c[FaultKind::ALL.iter().position(|x| *x == k).unwrap()];
        assert_eq!(at(FaultKind::Short), 3);
        assert_eq!(at(FaultKind::Emfile), 1);
        assert_eq!(at(FaultKind::Enospc), 4);
        assert_eq!(c.iter().sum::<u64>(), 8);
    }

    #[test]
    fn finds_the_date() {
        let r = b"HTTP/1.1 200 OK\r\nServer: p\r\nDate: Thu, 03 Dec 2026 10:03:04 GMT\r\n\r\n";
        let skip = date_value(r).unwrap();
        assert_eq!(&r[skip], b"Thu, 03 Dec 2026 10:03:04 GMT");
        assert!(date_value(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
