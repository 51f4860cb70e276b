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
    /// Unmeasured wrk run before the first round of each server.
    pub warmup: Duration,
    /// wrk `-c`.
    pub connections: u32,
    /// Rounds: the servers take turns, and each one's median round is reported.
    pub rounds: usize,
    /// The proactor servers' driver (default: io_uring).
    pub driver: DriverChoice,
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
    /// Requests per second of every round, for the spread.
    pub rounds: Vec<f64>,
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

/// Runs the bench; a report with `skipped` set when wrk is missing.
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
    let mut servers = Vec::new();
    for &kind in &opts.servers {
        servers.push((kind, ServerChild::start(kind, opts.driver, server_cpu)?));
    }
    let mut rounds: Vec<Vec<(f64, f64, u64)>> = vec![Vec::new(); servers.len()];
    for round in 0..opts.rounds.max(1) {
        for (i, (kind, server)) in servers.iter_mut().enumerate() {
            let url = format!("http://{}{}", server.addr, kind.path());
            if round == 0 && !opts.warmup.is_zero() {
                wrk_run(&wrk, &url, opts.connections, opts.warmup, pin)?;
            }
            let pid = server.child.id();
            let before = cpu_secs(pid)?;
            let out = wrk_run(&wrk, &url, opts.connections, opts.duration, pin)?;
            let cpu = cpu_secs(pid)? - before;
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("the {kind} server exited during the run ({status})");
            }
            let per_req = cpu * 1e6 / out.requests.max(1) as f64;
            eprintln!(
                "[round {}] {kind}: {:.0} req/s, {per_req:.2} µs CPU/request",
                round + 1,
                out.requests_per_sec
            );
            rounds[i].push((out.requests_per_sec, per_req, out.errors));
        }
    }
    let rows = servers
        .iter()
        .zip(rounds)
        .map(|((kind, _), mut r)| {
            let errors = r.iter().map(|x| x.2).sum();
            let all = r.iter().map(|x| x.0).collect();
            r.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (rps, cpu, _) = r[r.len() / 2];
            HyperRow {
                server: *kind,
                requests_per_sec: rps,
                cpu_us_per_request: cpu,
                errors,
                rounds: all,
            }
        })
        .collect();
    Ok(HyperReport { rows, skipped: None, placement })
}

/// req/s of proactor relative to tokio, at least.
const RATE_TARGET: f64 = 1.1;
/// Server CPU per request of proactor relative to tokio, at most.
const CPU_TARGET: f64 = 0.9;

impl fmt::Display for HyperReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(why) = &self.skipped {
            return writeln!(f, "skipped: {why}");
        }
        writeln!(f, "wrk -t1, {}; HTTP/1.1 keep-alive", self.placement)?;
        writeln!(
            f,
            "{:<16} {:>12} {:>8} {:>14} {:>8} {:>10} {:>10}",
            "server", "req/s", "spread", "CPU µs/req", "errors", "req/s ×", "CPU ×"
        )?;
        let row_of = |k: HyperServer| self.rows.iter().find(|r| r.server == k);
        for r in &self.rows {
            let base = row_of(r.server.reference()).filter(|b| b.server != r.server);
            let (rate, cpu) = match base {
                Some(b) if b.requests_per_sec > 0.0 && b.cpu_us_per_request > 0.0 => (
                    format!("{:.2}", r.requests_per_sec / b.requests_per_sec),
                    format!("{:.2}", r.cpu_us_per_request / b.cpu_us_per_request),
                ),
                _ => ("-".into(), "-".into()),
            };
            // (max - min) / median of the rounds' req/s.
            let (lo, hi) =
                r.rounds.iter().fold((f64::MAX, 0.0f64), |(l, h), &x| (l.min(x), h.max(x)));
            let spread = if r.requests_per_sec > 0.0 && !r.rounds.is_empty() {
                format!("{:.0}%", (hi - lo) / r.requests_per_sec * 100.0)
            } else {
                "-".into()
            };
            writeln!(
                f,
                "{:<16} {:>12.0} {:>8} {:>14.2} {:>8} {:>10} {:>10}",
                r.server.name(),
                r.requests_per_sec,
                spread,
                r.cpu_us_per_request,
                r.errors,
                rate,
                cpu
            )?;
        }
        for r in &self.rows {
            let Some(b) = row_of(r.server.reference()).filter(|b| b.server != r.server) else {
                continue;
            };
            if b.requests_per_sec <= 0.0 || b.cpu_us_per_request <= 0.0 {
                continue;
            }
            let rate = r.requests_per_sec / b.requests_per_sec;
            let cpu = r.cpu_us_per_request / b.cpu_us_per_request;
            // As in every bench: a target is met only on settled figures (both servers' rounds
            // within MAX_SPREAD of each other).
            use crate::bench::settle::{spread, MAX_SPREAD};
            let settled = [r, b].iter().all(|x| spread(&x.rounds).is_some_and(|s| s <= MAX_SPREAD));
            let met = |ok: bool| match (settled, ok) {
                (false, _) => "unsettled",
                (true, true) => "met",
                (true, false) => "NOT met",
            };
            writeln!(
                f,
                "target {} vs {}: req/s ×{rate:.2} (≥ {RATE_TARGET}: {}), CPU/req ×{cpu:.2} (≤ {CPU_TARGET}: {})",
                r.server.name(),
                b.server.name(),
                met(rate >= RATE_TARGET),
                met(cpu <= CPU_TARGET)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(server: HyperServer, rounds: &[f64], cpu: f64) -> HyperRow {
        let mut sorted = rounds.to_vec();
        sorted.sort_by(f64::total_cmp);
        HyperRow {
            server,
            requests_per_sec: sorted[sorted.len() / 2],
            cpu_us_per_request: cpu,
            errors: 0,
            rounds: rounds.to_vec(),
        }
    }

    fn report(proactor: &[f64], tokio: &[f64]) -> String {
        let rows = vec![
            row(HyperServer::HyperProactor, proactor, 7.0),
            row(HyperServer::HyperTokio, tokio, 9.0),
        ];
        HyperReport { rows, skipped: None, placement: "test".into() }.to_string()
    }

    #[test]
    fn a_target_is_met_only_on_settled_rounds() {
        let tight = report(&[120.0, 125.0, 122.0], &[100.0, 102.0, 101.0]);
        assert!(tight.contains("req/s ×1.21 (≥ 1.1: met), CPU/req ×0.78 (≤ 0.9: met)"), "{tight}");
        let wide = report(&[120.0, 160.0, 122.0], &[100.0, 102.0, 101.0]);
        assert!(wide.contains("(≥ 1.1: unsettled)"), "{wide}");
        assert!(!wide.contains(": met"), "{wide}");
        let slow = report(&[100.0, 101.0, 102.0], &[100.0, 101.0, 102.0]);
        assert!(slow.contains("(≥ 1.1: NOT met)"), "{slow}");
    }
}
