//! `proactor http`: a static file server on the proactor — the options, then the shared server
//! plumbing (`crate::server`) with the HTTP connection loop (`crate::http::conn`).

use crate::http::cache::FileCache;
use crate::http::conn::{self, BodyPath, Settings};
use crate::http::path::Root;
use crate::http::request::Limits;
use crate::http::serve::Site;
use crate::server::{parse_duration, ServerOpts};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

/// Arguments of `proactor http`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerOpts,

    /// Directory to serve; no request reaches outside it.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,

    /// Serve an HTML listing for a directory without index.html (instead of 404).
    #[arg(long)]
    list_dirs: bool,

    /// Follow symlinks that lead outside the root (refused by default).
    #[arg(long)]
    follow_symlinks: bool,

    /// No access log.
    #[arg(long)]
    quiet: bool,

    /// Longest time a client may take to send a request's head (then 408).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,

    /// Longest wait for the next request on a kept-alive connection (then it is closed).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    keepalive_timeout: Duration,

    /// Longest a send may wait for a client that does not read (then the connection is closed).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    send_timeout: Duration,

    /// Size in bytes of the buffer each connection copies file bodies through (read, then send).
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024)]
    buffer_size: usize,

    /// Send file bodies of at least this many bytes zero-copy with sendfile (smaller ones are
    /// copied behind their head, so both leave in one send); 0 sends every body with sendfile.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    sendfile_from: u64,

    /// Never use sendfile: every body goes through the buffer.
    #[arg(long)]
    no_sendfile: bool,

    /// How bodies of at least --sendfile-from bytes go out: sendfile (with a poll when the
    /// socket is full), splice (file → pipe → socket operations) or zc (read, then zero-copy
    /// send operations).
    #[arg(long, value_enum, value_name = "HOW", default_value_t = BodyPath::Sendfile)]
    body: BodyPath,

    /// Open every file per request instead of keeping hot files open (and small ones in memory)
    /// in a cache that inotify keeps fresh.
    #[arg(long)]
    no_file_cache: bool,
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(args: Args) -> ExitCode {
    let root = match Root::open(&args.root, args.follow_symlinks) {
        Ok(root) => root,
        Err(e) => {
            eprintln!("http: error: cannot serve {}: {e}", args.root.display());
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("http: serving {}", root.path().display());
    let no_cache = args.no_file_cache;
    let new_cache = move || if no_cache { FileCache::disabled() } else { FileCache::new() };
    let settings = Rc::new(Settings {
        limits: Limits::default(),
        header_timeout: args.header_timeout,
        idle_timeout: args.keepalive_timeout,
        send_timeout: args.send_timeout,
        chunk: args.buffer_size,
        sendfile_from: if args.no_sendfile { u64::MAX } else { args.sendfile_from.max(1) },
        body: args.body,
        quiet: args.quiet,
    });
    let default: SocketAddr = ([127, 0, 0, 1], 8080).into();
    // One receive operation per request by default: the multishot reader (`--recv multishot`,
    // `conn::POOL_BUFFERS`) did not measure faster. Smoke run, 1 KiB file, wrk -t1 -c100 -d3s
    // on CPU 1, server on CPU 0, io_uring, 3 alternating rounds, load average ≈ 10: multishot
    // 4,511 / 5,839 / 4,148 req/s at 14.8 / 12.6 / 14.5 µs server CPU per request, one-shot
    // 5,168 / 5,045 / 5,371 req/s at 15.5 / 13.9 / 13.0 µs (medians 0.87× the req/s, 1.04× the
    // CPU): a request is one chunk either way, and the multishot reader copies it out of the
    // pooled buffer.
    let recv = args.server.recv.unwrap_or(crate::server::RecvMode::Oneshot);
    if crate::server::thread_count(&args.server) > 1 {
        // `--threads N`: each thread opens the root for itself and keeps its own settings.
        let (dir, follow, list_dirs) = (args.root.clone(), args.follow_symlinks, args.list_dirs);
        let settings = Settings::clone(&settings);
        return crate::server::serve_threads("http", &args.server, default, move || {
            let site = match Root::open(&dir, follow) {
                Ok(root) => Some(Rc::new(Site { root, list_dirs, cache: new_cache() })),
                Err(e) => {
                    tracing::error!("http: cannot open {} on this thread: {e}", dir.display());
                    None
                }
            };
            let settings = Rc::new(settings.clone());
            let pool = conn::recv_pool(recv);
            move |stream: std::net::TcpStream, c| {
                // Without a root this thread can serve nothing: the connection is closed.
                if let Some(site) = &site {
                    let serving =
                        conn::serve(site.clone(), settings.clone(), stream, c, pool.clone());
                    drop(proactor::spawn(serving));
                }
            }
        });
    }
    // One thread: the root opened above serves, with this thread's cache (made only now, so
    // `--threads N` leaves no unused cache and inotify descriptor on the main thread).
    let site = Rc::new(Site { root, list_dirs: args.list_dirs, cache: new_cache() });
    // The pool is built on the loop's thread, with the first connection.
    let pool = std::cell::OnceCell::new();
    crate::server::serve("http", &args.server, default, move |stream: std::net::TcpStream, c| {
        let pool = pool.get_or_init(|| conn::recv_pool(recv)).clone();
        conn::serve(site.clone(), settings.clone(), stream, c, pool)
    })
}
