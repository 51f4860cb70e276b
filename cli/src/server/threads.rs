//! `--threads N`: the same servers on N proactor threads, one ring (or epoll driver) each.
//!
//! One acceptor thread takes every connection and posts it to the least-loaded thread (fewest
//! connections, least CPU: see `proactor::threads`). Each thread builds its own connection
//! closure with the factory a server passes in, on that thread, so connection code stays
//! single-threaded (`Rc`, `Cell`, completion handlers) exactly as with one thread. What crosses
//! threads: the accepted socket, the `--max-conns` count (atomic) and the stop event.
//!
//! ```ignore
//! crate::server::serve_threads("echo", &args.server, DEFAULT_LISTEN, move || {
//!     let handle = proactor::Handle::current(); // this thread's proactor
//!     move |stream, conn| Session::start(handle.clone(), stream, conn, settings)
//! })
//! ```

use super::event::ConnCount;
use super::signal::StopSignals;
use super::{announce, raise_fd_limit, Accepted, Conn, Event, Server, ServerOpts};
use proactor::threads::{Distribution, Threads};
use proactor::Proactor;
use std::cell::RefCell;
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One worker thread's share of the server: its connection closure, its open-connection count
/// and its copy of the stop event.
struct Local {
    on_conn: Box<dyn FnMut(TcpStream, Conn)>,
    count: Rc<ConnCount>,
    shutdown: Event,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// Keeps a connection counted in the process-wide `--max-conns` count; stored in the [`Conn`].
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The number of threads `--threads` asks for (0 means one per core).
pub fn thread_count(opts: &ServerOpts) -> usize {
    match opts.threads {
        0 => proactor::threads::available_cores(),
        n => n,
    }
}

/// Runs a server on `--threads` threads (with one thread, exactly the single-thread path).
/// `make` runs once on each thread and returns that thread's connection function, which must
/// not block: it starts the connection's first operation or spawns its task, and keeps `conn`
/// alive until the connection is done.
pub fn serve_threads<S, M, F>(
    name: &'static str,
    opts: &ServerOpts,
    default_listen: SocketAddr,
    make: M,
) -> ExitCode
where
    S: Accepted,
    M: Fn() -> F + Send + Sync + 'static,
    F: FnMut(S, Conn) + 'static,
{
    let n = thread_count(opts);
    if n <= 1 {
        return match Server::bind(name, opts, default_listen) {
            Ok(server) => {
                // `make` expects to run on the serving thread's proactor, as it does below.
                let on_conn = server.handle().block_on(async { make() });
                server.run_handlers(on_conn)
            }
            Err(e) => {
                eprintln!("{name}: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(name, opts, default_listen, n, Arc::new(make)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run<S, M, F>(
    name: &'static str,
    opts: &ServerOpts,
    default_listen: SocketAddr,
    n: usize,
    make: Arc<M>,
) -> anyhow::Result<()>
where
    S: Accepted,
    M: Fn() -> F + Send + Sync + 'static,
    F: FnMut(S, Conn) + 'static,
{
    use anyhow::Context as _;
    raise_fd_limit();
    let driver = opts.driver;
    let threads = Threads::new()
        .threads(n)
        .name(name)
        .configure(move |_| {
            let b = Proactor::builder().entries(1024);
            match driver {
                Some(d) => b.driver(d),
                None => b,
            }
        })
        .start()
        .context("cannot start the I/O threads")?;
    for w in threads.workers().iter() {
        let make = make.clone();
        w.post(move || {
            let mut on_conn = make();
            let on_conn = move |stream, conn: Conn| match S::from_accepted(stream) {
                Ok(s) => on_conn(s, conn),
                Err(e) => tracing::debug!("accepted connection {} unusable: {e}", conn.id),
            };
            let local =
                Local { on_conn: Box::new(on_conn), count: Rc::default(), shutdown: Event::new() };
            LOCAL.with(|l| *l.borrow_mut() = Some(local));
        })
        .context("an I/O thread stopped")?;
    }
    let open = Arc::new(AtomicUsize::new(0));
    let next_id = Arc::new(AtomicU64::new(0));
    let max_conns = opts.max_conns.max(1);
    let want = opts.listen.unwrap_or(default_listen);
    let (open2, ids) = (open.clone(), next_id.clone());
    let server = threads
        .serve(want, Distribution::Acceptor, move |stream, placed| {
            accept_one(stream, placed, &open2, &ids, max_conns);
            std::future::ready(())
        })
        .with_context(|| format!("cannot listen on {want}"))?;
    let signals = StopSignals::install().context("cannot install the signal handlers")?;
    tracing::info!("{name}: {n} threads");
    announce(server.local_addr());
    let main = Proactor::builder();
    let main = match opts.driver {
        Some(d) => main.driver(d),
        None => main,
    };
    let main = main.build().context("cannot start the I/O driver")?;
    main.block_on(signals.nth(1));
    drop(server); // stop accepting: the port closes
    for w in threads.workers().iter() {
        let _ = w.post(|| {
            LOCAL.with(|l| {
                if let Some(local) = l.borrow().as_ref() {
                    local.shutdown.set();
                }
            })
        });
    }
    let left = open.load(Ordering::SeqCst);
    tracing::info!(
        "{name}: stopping; waiting up to {:?} for {left} open connection(s)",
        opts.grace
    );
    let deadline = Instant::now() + opts.grace;
    main.block_on(async {
        loop {
            if open.load(Ordering::SeqCst) == 0 {
                tracing::info!("{name}: all connections done");
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "{name}: grace period over: closing {} connection(s)",
                    open.load(Ordering::SeqCst)
                );
                break;
            }
            let step = proactor::time::sleep(Duration::from_millis(10));
            if let super::Either::Left(()) = super::race(signals.nth(2), step).await {
                tracing::warn!(
                    "{name}: second signal: closing {} connection(s) now",
                    open.load(Ordering::SeqCst)
                );
                break;
            }
        }
    });
    threads.shutdown().context("stopping the I/O threads")?;
    Ok(())
}

/// On the chosen thread: counts the connection and hands it to the thread's connection function,
/// or closes it at once past `--max-conns`.
fn accept_one(
    stream: TcpStream,
    placed: proactor::threads::Conn,
    open: &Arc<AtomicUsize>,
    ids: &AtomicU64,
    max_conns: usize,
) {
    let peer = placed.peer();
    if open.fetch_add(1, Ordering::SeqCst) >= max_conns {
        open.fetch_sub(1, Ordering::SeqCst);
        tracing::debug!("--max-conns {max_conns} reached; closing {peer}");
        return;
    }
    let counted = Counted(open.clone());
    let taken = LOCAL.with(|l| {
        l.borrow_mut().as_mut().map(|local| {
            local.count.add();
            let conn = Conn {
                id: ids.fetch_add(1, Ordering::Relaxed) + 1,
                peer,
                shutdown: local.shutdown.clone(),
                count: local.count.clone(),
                _extra: Some(Box::new((counted, placed))),
            };
            let on_conn = std::mem::replace(&mut local.on_conn, Box::new(|_, _| {}));
            (on_conn, conn)
        })
    });
    let Some((mut on_conn, conn)) = taken else { return };
    tracing::debug!(conn = conn.id, %peer, thread = ?proactor::threads::current_worker(), "connection accepted");
    on_conn(stream, conn);
    LOCAL.with(|l| {
        if let Some(local) = l.borrow_mut().as_mut() {
            local.on_conn = on_conn;
        }
    });
}
