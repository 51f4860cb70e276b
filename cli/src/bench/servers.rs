//! The baseline echo servers the proactor is compared with, each run as its own process by the
//! hidden `proactor bench serve --kind K`: thread-per-connection blocking std I/O (the seed's
//! "simpler alternative"), tokio, current-thread and multi-thread, and monoio (`monoio_peer`).

use proactor::net::{AcceptAction, AcceptPolicy};
use socket2::{Domain, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Size of each connection's receive buffer in every baseline (the same for all, for fairness).
const BUF: usize = 4096;
/// Listen backlog: large enough for the bench's 10,000-connection idle test.
const BACKLOG: i32 = 4096;

/// A baseline echo server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    /// One OS thread per connection, blocking std I/O.
    Threads,
    /// tokio's current-thread runtime: one thread, epoll inside.
    TokioCt,
    /// tokio's multi-thread runtime with one worker thread.
    TokioMt,
    /// monoio on io_uring with DEFER_TASKRUN + SINGLE_ISSUER (cli feature `monoio-peer`).
    Monoio,
    /// A broken echo that flips a bit in every 50th chunk it echoes: proves the byte check.
    #[value(hide = true)]
    Corrupt,
}

/// Binds `addr` with a large backlog, prints `listening on <addr>`, and serves until killed.
pub fn serve(kind: Baseline, addr: SocketAddr) -> io::Result<()> {
    let listener = bind(addr)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    match kind {
        Baseline::Threads => serve_threads(listener, false),
        Baseline::Corrupt => serve_threads(listener, true),
        Baseline::TokioCt => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
            rt.block_on(serve_tokio(listener))
        }
        Baseline::TokioMt => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_io()
                .build()?;
            rt.block_on(serve_tokio(listener))
        }
        Baseline::Monoio => super::monoio_peer::serve(listener),
    }
}

/// A listening socket with `SO_REUSEADDR` and the bench's backlog.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

fn serve_threads(listener: TcpListener, corrupt: bool) -> io::Result<()> {
    let mut policy = AcceptPolicy::new();
    loop {
        let Some(stream) = admit(&mut policy, listener.accept())? else { continue };
        let spawned = std::thread::Builder::new().spawn(move || {
            if let Err(e) = echo_blocking(stream, corrupt) {
                tracing::debug!("connection ended: {e}");
            }
        });
        if let Err(e) = spawned {
            // The connection is dropped (closed) with the failed closure: the client sees it.
            tracing::warn!("cannot start a thread for a connection: {e}");
        }
    }
}

fn echo_blocking(mut stream: TcpStream, corrupt: bool) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = [0u8; BUF];
    let mut until_flip = 50u32;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        until_flip -= 1;
        if until_flip == 0 {
            until_flip = 50;
            if corrupt {
                buf[n / 2] ^= 0x10;
            }
        }
        stream.write_all(&buf[..n])?;
    }
}

async fn serve_tokio(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut policy = AcceptPolicy::new();
    loop {
        let Some(stream) = admit(&mut policy, listener.accept().await)? else { continue };
        tokio::spawn(async move {
            if let Err(e) = echo_tokio(stream).await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

async fn echo_tokio(mut stream: tokio::net::TcpStream) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; BUF];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// One accept's outcome by the library's policy (the same the proactor servers follow): the
/// stream, `None` when the loop should accept again (after the policy's wait), or the error
/// if the listener is unusable.
pub(super) fn admit<S, A>(
    policy: &mut AcceptPolicy,
    accepted: io::Result<(S, A)>,
) -> io::Result<Option<S>> {
    match accepted {
        Ok((s, _)) => {
            policy.on_success();
            Ok(Some(s))
        }
        Err(e) => accept_failed(policy, e).map(|()| None),
    }
}

/// Handles an accept error by the library's policy (the same the proactor servers follow):
/// returns after retrying is due, or the error if the listener is unusable. The wait blocks the
/// thread (the tokio baselines run no timer), which only stalls the acceptor while it is out of
/// descriptors anyway.
fn accept_failed(policy: &mut AcceptPolicy, e: io::Error) -> io::Result<()> {
    match policy.on_error(&e, false) {
        AcceptAction::Retry => Ok(()),
        AcceptAction::Wait(delay) => {
            std::thread::sleep(delay);
            Ok(())
        }
        AcceptAction::Fail | AcceptAction::Stop => Err(e),
    }
}
