//! `proactor bench hyper`: the hyper hello-world server on proactor against the same server on
//! tokio's current-thread runtime, and the axum example's router on both, each server in its own
//! process pinned to one core, under `wrk -t1 -c100` pinned to another; req/s and server CPU per
//! request (from `/proc/PID/stat`).
//!
//! The servers are `proactor/examples/hyper_server.rs` and `axum_hello.rs`, compiled in here
//! (HTTP/1.1 and h2c through hyper-util's `auto::Builder`, a timer on each, the examples' accept
//! loop); tokio's serve the same handlers and router through the same builder settings on
//! tokio's socket, executor and timer. Each is started by the hidden
//! `proactor bench serve-hyper --kind K`.

use crate::http::bench::{cpu_secs, find_tool, pin_to, wrk_run};
use anyhow::{bail, Context};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use proactor::DriverChoice;
use std::error::Error;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HyperServer {
    /// hyper's hello world on proactor (the `hyper_server` example).
    HyperProactor,
    /// The same hyper server on tokio's current-thread runtime.
    HyperTokio,
    /// The axum example's router on proactor (`axum_hello`), `GET /json`.
    AxumProactor,
    /// The same router on tokio's current-thread runtime.
    AxumTokio,
}

impl HyperServer {
    fn name(self) -> &'static str {
        match self {
            HyperServer::HyperProactor => "hyper-proactor",
            HyperServer::HyperTokio => "hyper-tokio",
            HyperServer::AxumProactor => "axum-proactor",
            HyperServer::AxumTokio => "axum-tokio",
        }
    }

    /// The path wrk asks for.
    fn path(self) -> &'static str {
        match self {
            HyperServer::HyperProactor | HyperServer::HyperTokio => "/",
            HyperServer::AxumProactor | HyperServer::AxumTokio => "/json",
        }
    }

    /// The tokio server this one is compared with (itself for the tokio servers).
    fn reference(self) -> HyperServer {
        match self {
            HyperServer::HyperProactor | HyperServer::HyperTokio => HyperServer::HyperTokio,
            HyperServer::AxumProactor | HyperServer::AxumTokio => HyperServer::AxumTokio,
        }
    }
}

impl fmt::Display for HyperServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---- the servers (run in the child process) ----

// The examples themselves: their handlers, router and (for proactor) accept loop.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../../proactor/examples/axum_hello.rs"]
mod axum_example;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../../proactor/examples/hyper_server.rs"]
mod hyper_example;

/// Binds `addr`, prints `listening on ADDR` and serves `kind` until killed.
pub fn serve(kind: HyperServer, addr: SocketAddr, driver: Option<DriverChoice>) -> io::Result<()> {
    let listener = bind(addr)?;
    let local = listener.local_addr()?;
    let announce = move || -> io::Result<()> {
        println!("listening on {local}");
        io::stdout().flush()
    };
    match kind {
        HyperServer::HyperProactor | HyperServer::AxumProactor => {
            let mut builder = proactor::Proactor::builder();
            if let Some(d) = driver {
                builder = builder.driver(d);
            }
            let p = builder.build()?;
            p.block_on(async move {
                let listener = proactor::net::TcpListener::from_std(listener)?;
                announce()?;
                if kind == HyperServer::HyperProactor {
                    hyper_example::serve(listener).await
                } else {
                    axum_example::serve(listener, axum_example::app()).await
                }
            })
        }
        HyperServer::HyperTokio | HyperServer::AxumTokio => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                announce()?;
                if kind == HyperServer::HyperTokio {
                    serve_tokio(listener, || ::hyper::service::service_fn(hyper_example::hello))
                        .await
                } else {
                    let app = axum_example::app_on("tokio");
                    serve_tokio(listener, move || TowerToHyperService::new(app.clone())).await
                }
            })
        }
    }
}

/// The examples' accept loop (`proactor/examples/support/hyper_serve.rs`) on tokio: the same
/// builder and settings, tokio's socket, executor and timer.
async fn serve_tokio<S, B>(
    listener: tokio::net::TcpListener,
    mut make_service: impl FnMut() -> S,
) -> io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = make_service();
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder.http1().timer(hyper_util::rt::TokioTimer::new());
            builder.http2().timer(hyper_util::rt::TokioTimer::new());
            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
        });
    }
}

/// A listening socket with `SO_REUSEADDR` and a backlog of 1024, the same for every server.
fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

// ---- the benchmark (run in the parent) ----

/// What to run.
#[derive(Clone, Debug)]
pub struct HyperBenchOptions {
    /// Servers, in report order.
    pub servers: Vec<HyperServer>,
    /// Each measured wrk run.
    pub duration: Duration,
    /// Unmeasured wrk run before each measured one (each round starts a fresh server).
    pub warmup: Duration,
    /// wrk `-c`.
    pub connections: u32,
    /// Rounds: the servers take turns, and each one's median round is reported.
    pub rounds: usize,
    /// The proactor servers' driver (default: io_uring).
    pub driver: DriverChoice,
}

/// One measured wrk run against one server.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HyperRound {
    /// Requests per second (wrk).
    pub requests_per_sec: f64,
    /// Server CPU (user + system) per request, microseconds.
    pub cpu_us_per_request: f64,
    /// Socket errors and non-2xx answers wrk counted.
    pub errors: u64,
    /// wrk's CPU over the run's wall time: near 1, wrk's one thread was the limit.
    pub wrk_busy: f64,
    /// Share of the run the server waited for its CPU (other work on it; `proc::sched_wait`).
    pub server_wait: f64,
    /// The CPU's speed at the round's start against the run's first round (a fixed
    /// computation's CPU time, first over now): below 1, the same code ran slower.
    pub speed: f64,
}

/// One server's figures (its median round by req/s).
#[derive(Clone, Debug)]
pub struct HyperRow {
    /// The server.
    pub server: HyperServer,
    /// Requests per second (wrk).
    pub requests_per_sec: f64,
    /// Server CPU (user + system) per request, microseconds.
    pub cpu_us_per_request: f64,
    /// Socket errors and non-2xx answers wrk counted, over all rounds.
    pub errors: u64,
    /// Every round, in order: round `r` of each server ran back to back with round `r` of the
    /// others, which is what the ratios pair.
    pub rounds: Vec<HyperRound>,
}

impl HyperRow {
    fn rates(&self) -> Vec<f64> {
        self.rounds.iter().map(|r| r.requests_per_sec).collect()
    }
}

/// The report: a row per server, or why the bench was skipped.
#[derive(Clone, Debug, Default)]
pub struct HyperReport {
    /// Per server.
    pub rows: Vec<HyperRow>,
    /// Set when a tool is missing.
    pub skipped: Option<String>,
    /// Where the processes ran.
    pub placement: String,
}

/// A server child process, killed and reaped when dropped.
struct ServerChild {
    child: Child,
    addr: SocketAddr,
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerChild {
    fn start(kind: HyperServer, driver: DriverChoice, cpu: Option<usize>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the proactor executable")?;
        let driver_name = format!("{driver:?}").to_lowercase();
        let mut child = Command::new(exe)
            .args(["bench", "serve-hyper", "--kind", kind.name(), "--listen", "127.0.0.1:0"])
            .args(["--driver", &driver_name])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the {kind} server"))?;
        if let Some(cpu) = cpu {
            pin_to(child.id() as i32, cpu);
        }
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut server = ServerChild { child, addr: ([127, 0, 0, 1], 0).into() };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        match line.trim().strip_prefix("listening on ").map(str::parse) {
            Some(Ok(addr)) => server.addr = addr,
            _ => bail!("the {kind} server did not start (it printed {line:?})"),
        }
        Ok(server)
    }
}

/// CPU seconds (user + system) of the children this process has waited for: read around a wrk
/// run (servers are reaped outside it), its difference is wrk's CPU.
fn waited_children_cpu() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru = unsafe { std::mem::zeroed::<libc::rusage>() };
    // SAFETY: `ru` is a valid, writable rusage for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// CPU seconds a fixed computation takes on `cpu` (a thread pinned there; its own CPU time, so
/// waiting for the CPU does not count): how fast the core runs now. A chain of dependent
/// multiply-adds, ~4 cycles each, ~0.05 s.
fn core_speed_probe(cpu: Option<usize>) -> f64 {
    std::thread::spawn(move || {
        if let Some(cpu) = cpu {
            let _ = super::proc::pin(0, cpu);
        }
        let t0 = super::proc::thread_cpu();
        let mut x = std::hint::black_box(1u64);
        for _ in 0..12_000_000u32 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
        std::hint::black_box(x);
        super::proc::thread_cpu().saturating_sub(t0).as_secs_f64()
    })
    .join()
    .unwrap_or(0.0)
}

/// Runs the bench; a report with `skipped` set when wrk is missing.
///
/// Every round starts each server afresh, warms it with an unmeasured wrk run, measures one
/// run, and stops it; the servers take turns in an order reversed every other round (A B, B A,
/// A B …), so a drift over the run weighs on both sides of a comparison alike, and the ratios
/// are taken between the servers' runs of the same round.
///
/// Why: with one long-lived process per server (as before), a quiet run read both hyper
/// servers' req/s falling round by round (hyper-proactor 123 k -> 95 k, hyper-tokio 118 k -> 79 k
/// over 5 rounds of 10 s), and the medians of each server's own rounds compared a fast round of
/// one with a slow round of the other. Nothing in the servers carries over between rounds: each
/// wrk run opens new connections, none outlives its run (`ss`), TIME_WAIT stays below a
/// thousand, RSS settles within two rounds (hyper-proactor 10 -> 14 MiB, hyper-tokio 9 -> 10).
/// The cores' own speed does move: the same fixed computation, by its CPU time, took 0.90 to
/// 1.04 ns a step over 30 minutes (15 %), in slow swings of minutes that followed neither this
/// machine's load (0.05 to 8.8) nor each other's CPUs closely — the host's, not ours. And wrk
/// is at 95-98 % of its core for both servers, so req/s is wrk's rate as much as the server's.
/// Each round now records wrk's busy share, the server's wait for its CPU and the core's speed
/// against the first round, and the ratios pair runs of the same round.
pub fn run(opts: &HyperBenchOptions) -> anyhow::Result<HyperReport> {
    let Some(wrk) = find_tool("wrk") else {
        return Ok(HyperReport {
            skipped: Some(
                "wrk not found; install it with: apt-get update && apt-get install -y wrk".into(),
            ),
            ..HyperReport::default()
        });
    };
    // As `proactor bench http` does: the server on CPU 1, wrk on CPU 0.
    let cpus = super::proc::allowed_cpus();
    let pin = cpus.contains(&0) && cpus.contains(&1);
    let server_cpu = pin.then_some(1);
    let placement = if pin {
        "each server pinned to CPU 1, wrk to CPU 0".to_string()
    } else {
        "not pinned (CPUs 0 and 1 are not both available)".to_string()
    };
    let n = opts.servers.len();
    let mut rounds: Vec<Vec<HyperRound>> = vec![Vec::new(); n];
    let mut first_probe = None;
    for round in 0..opts.rounds.max(1) {
        let probe = core_speed_probe(server_cpu);
        let base = *first_probe.get_or_insert(probe);
        let speed = if probe > 0.0 { base / probe } else { 0.0 };
        let order: Vec<usize> =
            if round % 2 == 0 { (0..n).collect() } else { (0..n).rev().collect() };
        for i in order {
            let kind = opts.servers[i];
            let mut server = ServerChild::start(kind, opts.driver, server_cpu)?;
            let url = format!("http://{}{}", server.addr, kind.path());
            if !opts.warmup.is_zero() {
                wrk_run(&wrk, &url, opts.connections, opts.warmup, pin)?;
            }
            let pid = server.child.id();
            let (cpu0, wait0, wrk0) = (cpu_secs(pid)?, sched_wait(pid), waited_children_cpu());
            let t0 = std::time::Instant::now();
            let out = wrk_run(&wrk, &url, opts.connections, opts.duration, pin)?;
            let wall = t0.elapsed().as_secs_f64();
            let cpu = cpu_secs(pid)? - cpu0;
            let wrk_cpu = waited_children_cpu() - wrk0;
            let wait = sched_wait(pid) - wait0;
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("the {kind} server exited during the run ({status})");
            }
            drop(server);
            let r = HyperRound {
                requests_per_sec: out.requests_per_sec,
                cpu_us_per_request: cpu * 1e6 / out.requests.max(1) as f64,
                errors: out.errors,
                wrk_busy: wrk_cpu / wall,
                server_wait: wait / wall,
                speed,
            };
            eprintln!(
                "[round {}] {kind}: {:.0} req/s, {:.2} µs CPU/request, wrk busy {:.0} %, server \
                 waited {:.1} %, core speed {:.3}",
                round + 1,
                r.requests_per_sec,
                r.cpu_us_per_request,
                r.wrk_busy * 100.0,
                r.server_wait * 100.0,
                r.speed
            );
            rounds[i].push(r);
        }
    }
    let rows = opts.servers.iter().zip(rounds).map(|(&kind, r)| row_of(kind, r)).collect();
    Ok(HyperReport { rows, skipped: None, placement })
}

/// Seconds process `pid` has waited for a CPU so far (0 when unreadable).
fn sched_wait(pid: u32) -> f64 {
    super::proc::sched_wait(pid).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A server's row: its median round by req/s, and every round.
fn row_of(server: HyperServer, rounds: Vec<HyperRound>) -> HyperRow {
    let mut sorted = rounds.clone();
    sorted.sort_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec));
    let mid = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    HyperRow {
        server,
        requests_per_sec: mid.requests_per_sec,
        cpu_us_per_request: mid.cpu_us_per_request,
        errors: rounds.iter().map(|r| r.errors).sum(),
        rounds,
    }
}

/// The median of `v` (the mean of the middle two for an even count); `None` when empty.
fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// `row` against `base`, round by round: the ratios of req/s and of CPU per request between the
/// two servers' runs of the same round (back to back, so a drift over the run cancels out).
/// Rounds in which either server waited for its CPU more than `settle::MAX_WAIT` of the run
/// (other work on its core) are left out while at least two calm ones remain, as in the echo
/// bench.
struct Paired {
    rate: Vec<f64>,
    cpu: Vec<f64>,
    /// Rounds left out as disturbed, and rounds there were.
    disturbed: usize,
    rounds: usize,
}

impl Paired {
    fn new(row: &HyperRow, base: &HyperRow) -> Paired {
        use crate::bench::settle::MAX_WAIT;
        let all: Vec<_> = row.rounds.iter().zip(&base.rounds).collect();
        let calm: Vec<_> = all
            .iter()
            .copied()
            .filter(|(a, b)| a.server_wait <= MAX_WAIT && b.server_wait <= MAX_WAIT)
            .collect();
        let used = if calm.len() >= 2 { calm } else { all.clone() };
        let ok = |x: f64, y: f64| (y > 0.0).then(|| x / y);
        Paired {
            rate: used
                .iter()
                .filter_map(|(a, b)| ok(a.requests_per_sec, b.requests_per_sec))
                .collect(),
            cpu: used
                .iter()
                .filter_map(|(a, b)| ok(a.cpu_us_per_request, b.cpu_us_per_request))
                .collect(),
            disturbed: all.len() - used.len(),
            rounds: all.len(),
        }
    }
}

/// wrk's busy share above which req/s is wrk's limit rather than the server's.
const WRK_BOUND: f64 = 0.9;

/// req/s of proactor relative to tokio, at least.
const RATE_TARGET: f64 = 1.1;
/// Server CPU per request of proactor relative to tokio, at most.
const CPU_TARGET: f64 = 0.9;

impl fmt::Display for HyperReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::bench::settle::{spread, MAX_SPREAD, MAX_WAIT};
        if let Some(why) = &self.skipped {
            return writeln!(f, "skipped: {why}");
        }
        writeln!(
            f,
            "wrk -t1, {}; HTTP/1.1 keep-alive; a fresh server per round, order reversed every \
             other round",
            self.placement
        )?;
        writeln!(
            f,
            "{:<16} {:>12} {:>8} {:>14} {:>8} {:>9} {:>10} {:>10}",
            "server", "req/s", "spread", "CPU µs/req", "errors", "wrk busy", "req/s ×", "CPU ×"
        )?;
        let row_of = |k: HyperServer| self.rows.iter().find(|r| r.server == k);
        let base_of = |r: &HyperRow| row_of(r.server.reference()).filter(|b| b.server != r.server);
        for r in &self.rows {
            let (rate, cpu) = match base_of(r).map(|b| Paired::new(r, b)) {
                Some(p) => (
                    median(&p.rate).map_or("-".into(), |x| format!("{x:.2}")),
                    median(&p.cpu).map_or("-".into(), |x| format!("{x:.2}")),
                ),
                None => ("-".into(), "-".into()),
            };
            let spread = spread(&r.rates()).map_or("-".into(), |s| format!("{:.0}%", s * 100.0));
            let busy: Vec<f64> = r.rounds.iter().map(|x| x.wrk_busy).collect();
            let busy = median(&busy).map_or("-".into(), |b| format!("{:.0}%", b * 100.0));
            writeln!(
                f,
                "{:<16} {:>12.0} {:>8} {:>14.2} {:>8} {:>9} {:>10} {:>10}",
                r.server.name(),
                r.requests_per_sec,
                spread,
                r.cpu_us_per_request,
                r.errors,
                busy,
                rate,
                cpu
            )?;
        }
        writeln!(f, "(req/s × and CPU ×: the median over rounds of the ratio within each round)")?;
        for r in &self.rows {
            let Some(b) = base_of(r) else { continue };
            let p = Paired::new(r, b);
            let (Some(rate), Some(cpu)) = (median(&p.rate), median(&p.cpu)) else { continue };
            // As in every bench, a target is met only on settled figures — here the paired
            // ratios, round by round, within MAX_SPREAD of each other: a drift that moves both
            // servers alike leaves them settled, while noise in either does not.
            let settled =
                [&p.rate, &p.cpu].iter().all(|v| spread(v).is_some_and(|s| s <= MAX_SPREAD));
            let met = |ok: bool| match (settled, ok) {
                (false, _) => "unsettled",
                (true, true) => "met",
                (true, false) => "NOT met",
            };
            let spreads =
                |v: &[f64]| spread(v).map_or("-".into(), |s| format!("{:.0}%", s * 100.0));
            writeln!(
                f,
                "target {} vs {}: req/s ×{rate:.2} (≥ {RATE_TARGET}: {}), CPU/req ×{cpu:.2} (≤ \
                 {CPU_TARGET}: {}); ratio spreads {} / {}",
                r.server.name(),
                b.server.name(),
                met(rate >= RATE_TARGET),
                met(cpu <= CPU_TARGET),
                spreads(&p.rate),
                spreads(&p.cpu)
            )?;
            if p.disturbed > 0 {
                writeln!(
                    f,
                    "  ({} of {} rounds left out: a server waited for its CPU more than {:.0} % \
                     of the run)",
                    p.disturbed,
                    p.rounds,
                    MAX_WAIT * 100.0
                )?;
            }
            let busy = |x: &HyperRow| {
                median(&x.rounds.iter().map(|r| r.wrk_busy).collect::<Vec<_>>()).unwrap_or(0.0)
            };
            if busy(r) >= WRK_BOUND && busy(b) >= WRK_BOUND {
                writeln!(
                    f,
                    "  (wrk was busy {:.0} % / {:.0} % of its core: req/s is wrk's limit as much \
                     as the servers', so CPU per request is the comparison)",
                    busy(r) * 100.0,
                    busy(b) * 100.0
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(server: HyperServer, rounds: &[f64], cpu: f64) -> HyperRow {
        let rounds = rounds
            .iter()
            .map(|&r| HyperRound {
                requests_per_sec: r,
                cpu_us_per_request: cpu * 100.0 / r,
                ..HyperRound::default()
            })
            .collect();
        row_of(server, rounds)
    }

    fn report(proactor: &[f64], tokio: &[f64]) -> String {
        let rows = vec![
            row(HyperServer::HyperProactor, proactor, 7.0),
            row(HyperServer::HyperTokio, tokio, 9.0),
        ];
        HyperReport { rows, skipped: None, placement: "test".into() }.to_string()
    }

    #[test]
    fn a_target_is_met_only_on_settled_ratios() {
        let tight = report(&[120.0, 125.0, 122.0], &[100.0, 102.0, 101.0]);
        assert!(tight.contains("req/s ×1.21 (≥ 1.1: met), CPU/req ×0.64 (≤ 0.9: met)"), "{tight}");
        let wide = report(&[120.0, 160.0, 122.0], &[100.0, 102.0, 101.0]);
        assert!(wide.contains("(≥ 1.1: unsettled)"), "{wide}");
        assert!(!wide.contains(": met"), "{wide}");
        let slow = report(&[100.0, 101.0, 102.0], &[100.0, 101.0, 102.0]);
        assert!(slow.contains("(≥ 1.1: NOT met)"), "{slow}");
    }

    #[test]
    fn a_drift_that_moves_both_servers_alike_still_settles() {
        // Both fall ~25 % over the run (the drift seen in quiet runs); within each round
        // proactor leads by 1.2x.
        let drift = report(&[123.0, 115.0, 106.0, 99.0, 95.0], &[102.5, 95.8, 88.3, 82.5, 79.2]);
        assert!(drift.contains("req/s ×1.20 (≥ 1.1: met)"), "{drift}");
        assert!(drift.contains("hyper-proactor"), "{drift}");
    }

    #[test]
    fn disturbed_rounds_are_left_out_and_a_busy_wrk_is_told() {
        let mut p = row(HyperServer::HyperProactor, &[120.0, 121.0, 60.0, 122.0], 7.0);
        let mut t = row(HyperServer::HyperTokio, &[100.0, 100.0, 100.0, 100.0], 9.0);
        p.rounds[2].server_wait = 0.4;
        for r in p.rounds.iter_mut().chain(t.rounds.iter_mut()) {
            r.wrk_busy = 0.97;
        }
        let text =
            HyperReport { rows: vec![p, t], skipped: None, placement: "test".into() }.to_string();
        assert!(text.contains("req/s ×1.21 (≥ 1.1: met)"), "{text}");
        assert!(text.contains("1 of 4 rounds left out"), "{text}");
        assert!(text.contains("wrk was busy 97 % / 97 %"), "{text}");
    }

    #[test]
    fn the_core_speed_probe_measures_something() {
        let t = core_speed_probe(None);
        assert!(t > 0.0 && t < 5.0, "{t}");
    }
}
