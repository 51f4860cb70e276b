//! `proactor bench`: the proactor's echo server (io_uring and epoll) against thread-per-connection
//! and tokio, each in its own process, under a built-in load generator; a table, JSON and a chart.
//! The hidden `proactor bench serve` starts one baseline server (the bench runs it as a child),
//! `proactor bench serve-hyper` one server of `proactor bench hyper`.

use crate::bench::{self, hyper::HyperServer, servers::Baseline, settle, spawn::ServerKind};
use crate::bench::{Config, LoadGen};
use clap::builder::RangedU64ValueParser;
use proactor::DriverChoice;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `proactor bench`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    sub: Option<Sub>,
    /// Run the measured processes (servers, peers, load generators) under SCHED_RR instead of
    /// at nice -20, every one alike: for a machine shared with other work, whose processes
    /// would otherwise preempt them (needs root; see bench/proc.rs for the figures).
    #[arg(long, global = true)]
    realtime: bool,
    /// About 30 s instead of about 2 minutes: shorter windows (explicit options still win).
    #[arg(long)]
    quick: bool,
    /// Measured seconds per run (default 0.8, or 0.4 with --quick).
    #[arg(long)]
    secs: Option<f64>,
    /// Warm-up seconds before each measured window (default 0.3, or 0.2 with --quick).
    #[arg(long)]
    warmup: Option<f64>,
    /// Rounds per point: the servers take turns this many times and the median round is
    /// reported (default 3, or 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Spread, in percent ((max - min) / median of msg/s and of CPU per message over a server's
    /// rounds), above which a point is re-run and, if it stays above, marked unreliable.
    #[arg(long, default_value_t = settle::MAX_SPREAD * 100.0)]
    max_spread: f64,
    /// Extra rounds a point whose spread is too wide may get (0: none).
    #[arg(long, default_value_t = settle::EXTRA_ROUNDS)]
    extra_rounds: usize,
    /// The load generator: epoll (one thread, edge-triggered epoll), threads (blocking I/O on up
    /// to 32 threads, each writing its connections' messages and then reading the echoes), or both (`epoll,threads`: every point under each, and how far
    /// their ratios agree).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "epoll")]
    loadgen: Vec<LoadGen>,
    /// Offer this many messages per second over all connections (epoll load generator only)
    /// instead of as many as each server answers, so that CPU per message is compared at equal
    /// work (at full speed the load generator's own pace sets the server's batches).
    #[arg(long, value_name = "MSGS_PER_SEC")]
    rate: Option<f64>,
    /// Connection counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    conns: Vec<usize>,
    /// Message sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,4096")]
    sizes: Vec<usize>,
    /// Servers to compare: proactor-uring, proactor-epoll (the echo's completion handlers),
    /// proactor-uring-async, proactor-epoll-async (its async front end), each optionally
    /// `-oneshot` (`--recv oneshot`: a receive request per message instead of one multishot
    /// receive) and @THREADS for `--threads N`; threads, tokio-ct, tokio-mt (tokio-ct is the
    /// reference for ratios), monoio (io_uring with DEFER_TASKRUN; skipped with a message
    /// unless the binary was built with the feature `monoio-peer`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "proactor-uring,proactor-uring-async,proactor-epoll,threads,tokio-ct,monoio"
    )]
    servers: Vec<ServerKind>,
    /// Idle connections to hold for the memory test (default 10000, or 4000 with --quick; 0
    /// skips it).
    #[arg(long)]
    idle: Option<usize>,
    /// Skip the 1-connection run with server and load generator on the same core.
    #[arg(long)]
    no_same_core: bool,
    /// Write every raw figure to this JSON file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw throughput, CPU per message and p99 per point and server to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Start one baseline echo server (used by the bench itself).
    #[command(hide = true)]
    Serve(ServeArgs),
    /// `proactor proxy` against HAProxy, nginx stream and a direct connection (redis-benchmark,
    /// wrk + nginx; skips what is not installed).
    Proxy(ProxyArgs),
    /// `proactor copy` against GNU cp (a large file, cached and not, and a tree of small files).
    Copy(CopyArgs),
    /// `proactor http` against nginx under wrk (skips with a hint when they are not installed).
    Http(HttpArgs),
    /// hyper's hello world and the axum example on proactor against the same on tokio's
    /// current-thread runtime, under `wrk -t1` (skips with a hint when wrk is not installed).
    Hyper(HyperArgs),
    /// Start one server of `bench hyper` (used by the bench itself).
    #[command(hide = true)]
    ServeHyper(ServeHyperArgs),
    /// Every app under injected faults (PROACTOR_FAULTS) and the load generator, round after
    /// round under a rotating seed, on both drivers: faults per kind, bytes moved, mismatches.
    Soak(bench::soak::SoakArgs),
}

/// Seconds of one measured run: 1 s to an hour.
fn seconds() -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::new().range(1..=3600)
}

/// Concurrent connections of a load generator: at least one.
fn connections() -> RangedU64ValueParser<u32> {
    RangedU64ValueParser::new().range(1..=u64::from(u32::MAX))
}

/// Runs or rounds of a comparison: 1 to 100.
fn repeats() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..=100)
}

#[derive(clap::Args)]
struct HyperArgs {
    /// Seconds of each measured wrk run (1 to 3600).
    #[arg(long, default_value_t = 5, value_parser = seconds())]
    secs: u64,
    /// Concurrent connections (wrk -c).
    #[arg(long, default_value_t = 100, value_parser = connections())]
    conns: u32,
    /// Rounds: the servers take turns, each one's median round is reported (1 to 100).
    #[arg(long, default_value_t = 3, value_parser = repeats())]
    rounds: usize,
    /// The proactor servers' driver: uring, epoll or auto.
    #[arg(long, default_value = "uring")]
    driver: DriverChoice,
    /// Servers, comma-separated: hyper-proactor, hyper-tokio, axum-proactor, axum-tokio.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "hyper-proactor,hyper-tokio,axum-proactor,axum-tokio"
    )]
    servers: Vec<HyperServer>,
}

#[derive(clap::Args)]
struct ServeHyperArgs {
    /// Which server.
    #[arg(long, value_enum)]
    kind: HyperServer,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The proactor servers' driver.
    #[arg(long)]
    driver: Option<DriverChoice>,
}

#[derive(clap::Args)]
struct HttpArgs {
    /// Seconds of each measured wrk run (1 to 3600).
    #[arg(long, default_value_t = 10, value_parser = seconds())]
    secs: u64,
    /// Concurrent connections (wrk -c).
    #[arg(long, default_value_t = 100, value_parser = connections())]
    conns: u32,
    /// The proactor's driver: auto, uring or epoll.
    #[arg(long)]
    driver: Option<String>,
    /// Measured runs per server and file (the servers alternate; the median is reported; 1 to
    /// 100).
    #[arg(long, default_value_t = 3, value_parser = repeats())]
    runs: usize,
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Alternating direct/proxied runs per case (the median is reported; 1 to 100).
    #[arg(long, default_value_t = 3, value_parser = repeats())]
    runs: usize,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Extra arguments for the proxy, e.g. --proxy-arg=--driver --proxy-arg=epoll.
    #[arg(long = "proxy-arg", allow_hyphen_values = true)]
    proxy_args: Vec<String>,
    /// Requests per redis-benchmark test (-n).
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
}

#[derive(clap::Args)]
struct CopyArgs {
    /// Scratch directory on the disk to measure (files are removed afterwards).
    #[arg(long, default_value = "proactor-bench-copy")]
    dir: PathBuf,
    /// Size of the large file, bytes.
    #[arg(long, default_value_t = 2 << 30)]
    size: u64,
    /// Number of 4 KiB files in the tree.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Alternating runs per case (the median is reported; 1 to 100).
    #[arg(long, default_value_t = 5, value_parser = repeats())]
    runs: usize,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Which baseline.
    #[arg(long, value_enum)]
    kind: Baseline,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// Runs the echo comparison (or a `bench` subcommand); non-zero when anything failed.
pub fn run(args: Args) -> ExitCode {
    bench::proc::set_realtime(args.realtime);
    match args.sub {
        Some(Sub::Serve(s)) => {
            return match bench::servers::serve(s.kind, s.listen) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: bench server {:?} on {}: {e}", s.kind, s.listen);
                    ExitCode::FAILURE
                }
            }
        }
        Some(Sub::Proxy(p)) => return run_proxy(p),
        Some(Sub::Copy(c)) => return run_copy(c),
        Some(Sub::Http(h)) => return run_http(h),
        Some(Sub::Hyper(h)) => return run_hyper(h),
        Some(Sub::Soak(s)) => return bench::soak::main(s),
        Some(Sub::ServeHyper(s)) => {
            return match bench::hyper::serve(s.kind, s.listen, s.driver) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: bench server {} on {}: {e}", s.kind, s.listen);
                    ExitCode::FAILURE
                }
            }
        }
        None => {}
    }
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match bench::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.table());
    let mut code = ExitCode::SUCCESS;
    if let Some(path) = &args.json {
        let written = std::fs::File::create(path)
            .map_err(anyhow::Error::from)
            .and_then(|f| Ok(serde_json::to_writer_pretty(std::io::BufWriter::new(f), &report)?));
        match written {
            Ok(()) => eprintln!("figures written to {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                code = ExitCode::FAILURE;
            }
        }
    }
    if let Some(path) = &args.plot {
        match bench::plot::write(&report, path) {
            Ok(()) => eprintln!("chart written to {}", path.display()),
            Err(e) => {
                eprintln!("error: {e:#}");
                code = ExitCode::FAILURE;
            }
        }
    }
    if !report.ok {
        let lines = report.error_lines();
        eprintln!(
            "\nFAILED: {} error(s) — a server lost, mangled or refused traffic:",
            report.errors
        );
        for line in &lines {
            eprintln!("  {line}");
        }
        code = ExitCode::FAILURE;
    }
    code
}

/// The run's configuration from the arguments, checked.
fn config(args: &Args) -> Result<Config, String> {
    let secs = args.secs.unwrap_or(if args.quick { 0.4 } else { 0.8 });
    let warmup = args.warmup.unwrap_or(if args.quick { 0.2 } else { 0.3 });
    let dur = |v: f64, what: &str| {
        if v.is_finite() && (0.0..=3600.0).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!("--{what} must be between 0 and 3600 seconds, not {v}"))
        }
    };
    let window = dur(secs, "secs")?;
    if window.is_zero() {
        return Err("--secs must be above 0".into());
    }
    if args.conns.is_empty() || args.conns.iter().any(|&c| c == 0 || c > 15_000) {
        return Err("--conns takes counts from 1 to 15000".into());
    }
    if args.sizes.is_empty() || args.sizes.iter().any(|&s| s == 0 || s > 1 << 20) {
        return Err("--sizes takes sizes from 1 to 1048576 bytes".into());
    }
    let idle = args.idle.unwrap_or(if args.quick { 4_000 } else { 10_000 });
    if idle > 15_000 {
        return Err("--idle takes at most 15000 connections (the open-file limit)".into());
    }
    if args.servers.is_empty() {
        return Err("--servers needs at least one server".into());
    }
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    if !(1..=100).contains(&rounds) {
        return Err("--rounds takes 1 to 100".into());
    }
    if !(args.max_spread.is_finite() && args.max_spread > 0.0 && args.max_spread <= 1000.0) {
        return Err("--max-spread takes a percentage above 0".into());
    }
    if args.extra_rounds > 20 {
        return Err("--extra-rounds takes 0 to 20".into());
    }
    let mut loadgens: Vec<LoadGen> = Vec::new();
    for l in &args.loadgen {
        if !loadgens.contains(l) {
            loadgens.push(*l);
        }
    }
    if loadgens.is_empty() {
        return Err("--loadgen needs at least one load generator".into());
    }
    if loadgens.contains(&LoadGen::Threads)
        && args.sizes.iter().any(|&s| s > bench::blocking::MAX_SIZE)
    {
        return Err(format!(
            "--loadgen threads takes messages of at most {} bytes",
            bench::blocking::MAX_SIZE
        ));
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate >= 1.0) {
            return Err("--rate takes messages per second, at least 1".into());
        }
        if loadgens.contains(&LoadGen::Threads) {
            return Err("--rate paces the epoll load generator only (--loadgen epoll)".into());
        }
    }
    let mut servers: Vec<ServerKind> = Vec::new();
    for s in &args.servers {
        let monoio = *s == ServerKind::Baseline(Baseline::Monoio);
        if monoio && !bench::monoio_peer::BUILT {
            // A peer that is not there is skipped, loudly, not replaced.
            eprintln!("skipping monoio: {}", bench::monoio_peer::NOT_BUILT);
        } else if !servers.contains(s) {
            servers.push(*s);
        }
    }
    if servers.is_empty() {
        return Err("--servers: none of the servers asked for can run in this build".into());
    }
    Ok(Config {
        servers,
        conns: args.conns.clone(),
        sizes: args.sizes.clone(),
        warmup: dur(warmup, "warmup")?,
        window,
        rounds,
        max_spread: args.max_spread / 100.0,
        extra_rounds: args.extra_rounds,
        loadgens,
        idle,
        same_core: !args.no_same_core,
        rate: args.rate,
    })
}

fn run_proxy(p: ProxyArgs) -> ExitCode {
    if !(p.secs.is_finite() && p.secs > 0.0 && p.secs <= 3600.0) {
        eprintln!("error: --secs takes a number above 0, up to 3600");
        return ExitCode::from(2);
    }
    let mut cfg = crate::proxy::bench::ProxyBenchConfig::standard();
    cfg.runs = p.runs;
    cfg.wrk_duration = Duration::from_secs_f64(p.secs);
    cfg.proxy_args = p.proxy_args;
    cfg.redis_requests = p.requests.max(1);
    let rows = crate::proxy::bench::run_proxy_bench(&cfg);
    crate::proxy::bench::print_proxy_report(&rows);
    ExitCode::SUCCESS
}

fn run_copy(c: CopyArgs) -> ExitCode {
    let mut cfg = crate::copy::bench::CopyBenchConfig::standard(c.dir);
    cfg.big_size = c.size;
    cfg.small_files = c.files;
    cfg.runs = c.runs;
    match crate::copy::bench::run_copy_bench(&cfg) {
        Ok(rows) => {
            crate::copy::bench::print_copy_report(&rows);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: copy benchmark: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_http(h: HttpArgs) -> ExitCode {
    let opts = crate::http::bench::HttpBenchOptions {
        duration: Duration::from_secs(h.secs),
        connections: h.conns,
        driver: h.driver,
        runs: h.runs,
        ..Default::default()
    };
    match crate::http::bench::run_http_bench(&opts) {
        Ok(report) => {
            print!("{report}");
            let errors: u64 = report.rows.iter().map(|r| r.errors).sum();
            if errors > 0 {
                eprintln!("FAILED: wrk counted {errors} error(s)");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: http benchmark: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_hyper(h: HyperArgs) -> ExitCode {
    if h.servers.is_empty() {
        eprintln!("error: --servers needs at least one server");
        return ExitCode::from(2);
    }
    let opts = bench::hyper::HyperBenchOptions {
        servers: h.servers,
        duration: Duration::from_secs(h.secs),
        warmup: Duration::from_secs(1),
        connections: h.conns,
        rounds: h.rounds,
        driver: h.driver,
    };
    match bench::hyper::run(&opts) {
        Ok(report) => {
            print!("{report}");
            let errors: u64 = report.rows.iter().map(|r| r.errors).sum();
            if errors > 0 {
                eprintln!("FAILED: wrk counted {errors} error(s)");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: hyper benchmark: {e:#}");
            ExitCode::FAILURE
        }
    }
}
