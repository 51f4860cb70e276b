//! The monoio echo baseline, in monoio's strongest setting: its io_uring driver on a ring set
//! up with `IORING_SETUP_DEFER_TASKRUN` and `IORING_SETUP_SINGLE_ISSUER` (completions are
//! processed only when the one thread asks for them, no inter-processor interrupts), the same
//! 4 KiB buffer per connection and the same accept policy as the other baselines.
//!
//! Built only with the cli feature `monoio-peer` (monoio brings its own io-uring 0.6 and is
//! not needed by anything else); without it, `--kind monoio` says how to get it.

// Without the feature only `serve`'s refusal and the constants below are built.
#![cfg_attr(not(feature = "monoio-peer"), allow(dead_code, unused_imports))]

#[cfg(feature = "monoio-peer")]
use super::servers::admit;
#[cfg(feature = "monoio-peer")]
use proactor::net::AcceptPolicy;
use std::io;
use std::net::TcpListener;

/// Size of each connection's receive buffer (the baselines' `BUF`).
#[cfg(feature = "monoio-peer")]
const BUF: usize = 4096;
/// Ring entries: monoio's default is 1024; the bench's 1,000-connection points keep one
/// receive in flight per connection, so a larger ring keeps submissions from waiting.
#[cfg(feature = "monoio-peer")]
const ENTRIES: u32 = 4096;

/// Serves echo on `listener` until killed, or fails to start with a reason.
#[cfg(feature = "monoio-peer")]
pub fn serve(listener: TcpListener) -> io::Result<()> {
    let mut urb = io_uring_monoio::IoUring::builder();
    urb.setup_defer_taskrun().setup_single_issuer();
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(ENTRIES)
        .uring_builder(urb)
        .build()
        .map_err(|e| io::Error::new(e.kind(), format!("monoio with DEFER_TASKRUN: {e}")))?;
    rt.block_on(accept_loop(listener))
}

/// Without the feature there is no monoio to run: a clear error, not a silent substitute.
#[cfg(not(feature = "monoio-peer"))]
pub fn serve(_listener: TcpListener) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, NOT_BUILT))
}

/// What a bench says when asked for monoio in a build without it.
pub const NOT_BUILT: &str = "the monoio peer is not built into this binary: rebuild with \
     `cargo build --release -p proactor-cli --features monoio-peer`";

/// Whether this binary can run the monoio peer.
pub const BUILT: bool = cfg!(feature = "monoio-peer");

#[cfg(feature = "monoio-peer")]
async fn accept_loop(listener: TcpListener) -> io::Result<()> {
    let listener = monoio::net::TcpListener::from_std(listener)?;
    let mut policy = AcceptPolicy::new();
    loop {
        let Some(stream) = admit(&mut policy, listener.accept().await)? else { continue };
        monoio::spawn(async move {
            if let Err(e) = echo(stream).await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

#[cfg(feature = "monoio-peer")]
async fn echo(mut stream: monoio::net::TcpStream) -> io::Result<()> {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    stream.set_nodelay(true)?;
    // monoio reads into a Vec's capacity from its start and sets its length to what arrived.
    let mut buf = Vec::with_capacity(BUF);
    loop {
        let (n, b) = stream.read(buf).await;
        if n? == 0 {
            return Ok(());
        }
        let (written, mut b) = stream.write_all(b).await;
        written?;
        b.clear();
        buf = b;
    }
}
