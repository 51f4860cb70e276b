//! `proactor proxy --listen ADDR --to HOST:PORT`: the command line of the port-forwarding proxy
//! (the work is in `crate::proxy`).

use crate::proxy::{self, Config};
use crate::server::{parse_duration, Server, ServerOpts};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

/// Arguments of `proactor proxy`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerOpts,
    /// Upstream to forward every connection to (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    to: String,
    /// Limit on connecting to the upstream; past it the client is closed.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Close a connection with no traffic either way for this long (0: never).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Bytes per relay buffer (two per direction).
    #[arg(long, value_name = "BYTES", default_value_t = 65536,
          value_parser = clap::value_parser!(u32).range(512..=16 << 20))]
    buffer: u32,
    /// Relay through a pipe with splice (zero copy) where the driver supports it.
    #[arg(long)]
    splice: bool,
}

/// Runs `proactor proxy`.
pub fn run(args: Args) -> ExitCode {
    let upstream: Vec<SocketAddr> = match args.to.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            eprintln!("proxy: error: cannot resolve upstream {:?}: {e}", args.to);
            return ExitCode::FAILURE;
        }
    };
    if upstream.is_empty() {
        eprintln!("proxy: error: upstream {:?} resolves to no address", args.to);
        return ExitCode::FAILURE;
    }
    let default: SocketAddr = ([127, 0, 0, 1], 8081).into();
    if crate::server::thread_count(&args.server) > 1 {
        // `--threads N`: each thread checks splice on its own driver and keeps its own config.
        let (want_splice, recv) = (args.splice, proxy::recv_mode(&args.server));
        let base = Config {
            upstream,
            upstream_name: args.to,
            connect_timeout: args.connect_timeout,
            idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
            buffer: args.buffer as usize,
            splice: false,
        };
        return crate::server::serve_threads("proxy", &args.server, default, move || {
            let mut cfg = base.clone();
            if want_splice {
                match proxy::splice_supported(proactor::Handle::current().driver_kind()) {
                    Ok(()) => cfg.splice = true,
                    Err(why) => tracing::warn!("proxy: --splice unavailable: {why}"),
                }
            }
            let cfg = Rc::new(cfg);
            let pool = proxy::recv_pool(&proactor::Handle::current(), recv);
            move |stream, conn| {
                drop(proactor::spawn(proxy::handle(stream, conn, cfg.clone(), pool.clone())))
            }
        });
    }
    let server = match Server::bind("proxy", &args.server, default) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("proxy: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut splice = args.splice;
    if splice {
        if let Err(why) = proxy::splice_supported(server.handle().driver_kind()) {
            tracing::warn!("proxy: --splice unavailable: {why}; relaying through buffers");
            splice = false;
        } else {
            tracing::info!("proxy: relaying with splice through pipes");
        }
    }
    let cfg = Rc::new(Config {
        upstream,
        upstream_name: args.to,
        connect_timeout: args.connect_timeout,
        idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
        buffer: args.buffer as usize,
        splice,
    });
    let pool = proxy::recv_pool(&server.handle(), proxy::recv_mode(&args.server));
    server.run_tasks(move |stream, conn| proxy::handle(stream, conn, cfg.clone(), pool.clone()))
}
