//! `proactor bench`: the proactor's echo server (io_uring and epoll) against thread-per-connection
//! and tokio, each in its own process, under a built-in load generator; a table, JSON and a chart.
//! The hidden `proactor bench serve` starts one baseline server (the bench runs it as a child).

use crate::bench::{self, servers::Baseline, spawn::ServerKind, Config};
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
    /// About 30 s instead of about 2 minutes: shorter windows (explicit options still win).
    #[arg(long)]
    quick: bool,
    /// Measured seconds per run (default 3, or 0.5 with --quick).
    #[arg(long)]
    secs: Option<f64>,
    /// Warm-up seconds before each measured window (default 0.5, or 0.25 with --quick).
    #[arg(long)]
    warmup: Option<f64>,
    /// Connection counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    conns: Vec<usize>,
    /// Message sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,4096")]
    sizes: Vec<usize>,
    /// Servers to compare: proactor-uring, proactor-epoll (the echo's completion handlers),
    /// proactor-uring-async, proactor-epoll-async (its async front end), each optionally @THREADS
    /// for `--threads N`; threads, tokio-ct, tokio-mt (tokio-ct is the reference for ratios).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "proactor-uring,proactor-epoll,threads,tokio-ct"
    )]
    servers: Vec<ServerKind>,
    /// Idle connections to hold for the memory test (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
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

pub fn run(args: Args) -> ExitCode {
    if let Some(Sub::Serve(s)) = args.sub {
        return match bench::servers::serve(s.kind, s.listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: bench server {:?} on {}: {e}", s.kind, s.listen);
                ExitCode::FAILURE
            }
        };
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
    let secs = args.secs.unwrap_or(if args.quick { 0.5 } else { 3.0 });
    let warmup = args.warmup.unwrap_or(if args.quick { 0.25 } else { 0.5 });
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
    if args.idle > 15_000 {
        return Err("--idle takes at most 15000 connections (the open-file limit)".into());
    }
    if args.servers.is_empty() {
        return Err("--servers needs at least one server".into());
    }
    let mut servers: Vec<ServerKind> = Vec::new();
    for s in &args.servers {
        if !servers.contains(s) {
            servers.push(*s);
        }
    }
    Ok(Config {
        servers,
        conns: args.conns.clone(),
        sizes: args.sizes.clone(),
        warmup: dur(warmup, "warmup")?,
        window,
        idle: args.idle,
        same_core: !args.no_same_core,
    })
}
