//! `proactor`: the apps built on the proactor crate — servers, tools and benchmarks.
#![deny(clippy::undocumented_unsafe_blocks)]

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod bench;
mod cmd;
mod copy;
mod http;
mod proxy;
mod server;

/// Completion-based async I/O on io_uring (with an epoll fallback), and what you can build on it.
#[derive(Parser)]
#[command(name = "proactor", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Kernel version, the driver in use, and the io_uring opcodes and features on offer.
    Info(cmd::info::Args),
    /// Echo server: every byte back until the client closes.
    Echo(cmd::echo::Args),
    /// Line-based chat room server.
    Chat(cmd::chat::Args),
    /// HTTP/1.1 static file server.
    Http(cmd::http::Args),
    /// Port-forwarding proxy.
    Proxy(cmd::proxy::Args),
    /// Overlapped, crash-safe file copier.
    Copy(cmd::copy::Args),
    /// Benchmarks: the proactor against simpler alternatives and peers.
    Bench(cmd::bench::Args),
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Info(args) => cmd::info::run(args),
        Command::Echo(args) => cmd::echo::run(args),
        Command::Chat(args) => cmd::chat::run(args),
        Command::Http(args) => cmd::http::run(args),
        Command::Proxy(args) => cmd::proxy::run(args),
        Command::Copy(args) => cmd::copy::run(args),
        Command::Bench(args) => cmd::bench::run(args),
    }
}

/// Logs to stderr; `RUST_LOG` sets the filter (default: warnings, and info for the apps).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,proactor=info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
