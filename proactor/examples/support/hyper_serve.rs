//! What the hyper and axum examples share (copy it with them): `--listen ADDR` and the
//! `listening on` line, and the accept loop that serves each connection as a local task through
//! hyper-util's `auto::Builder` (HTTP/1.1 and h2c on one port, proactor's timer on both). The
//! tests and `proactor bench hyper` run these very examples.

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::server::conn::auto::{self, HttpServerConnExec};
use proactor::compat::hyper::{HyperExecutor, HyperTimer};
use proactor::compat::Compat;
use proactor::net::TcpListener;
use std::error::Error;
use std::future::Future;

/// Accepts connections on `listener` and serves each with a service from `make_service`, as a
/// local task, until the listener fails.
pub async fn serve<S, B>(
    listener: TcpListener,
    mut make_service: impl FnMut() -> S,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + 'static,
    S::Future: 'static,
    S::Error: Into<Box<dyn Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
    HyperExecutor: HttpServerConnExec<S::Future, B>,
{
    loop {
        let (stream, _peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = make_service();
        // `Compat::new`: a receive into the adapter's buffer per read (with the poll first once
        // a read has drained the socket). `Compat::with_pool` (one multishot receive per
        // connection into a shared 256 x 16 KiB pool) measured no better here: per response 1
        // submission instead of 2 and no poll arm instead of 1, the kernel's io_uring share
        // 7.9 % -> 5.5 % of the server's CPU (perf record), but 8,745 -> 9,435 user
        // instructions (benches/hyper_ir.sh): a multishot completion goes through the loop's
        // batch (`settle_more`, ~500 a response) and the buffer ring's accounting (~200), where
        // a one-shot receive's is taken as the driver reaps it.
        // Dropping the join handle detaches the task.
        drop(proactor::spawn(async move {
            let mut builder = auto::Builder::new(HyperExecutor);
            builder.http1().timer(HyperTimer);
            builder.http2().timer(HyperTimer);
            if let Err(e) = builder.serve_connection(Compat::new(stream), service).await {
                if !peer_left(&*e) {
                    eprintln!("connection: {e}");
                }
            }
        }));
    }
}

/// True if `e` only says the client went away — closed or reset the connection in the middle
/// of a request, as a load generator does when it stops — which is not worth a line.
fn peer_left(e: &(dyn Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_incomplete_message()) {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{BrokenPipe, ConnectionReset, NotConnected, UnexpectedEof};
            return matches!(
                io.kind(),
                ConnectionReset | BrokenPipe | NotConnected | UnexpectedEof
            );
        }
        cause = e.source();
    }
    false
}

/// The examples' `main`: binds `--listen ADDR` (default `127.0.0.1:3000`) on a proactor (the
/// driver from `PROACTOR_DRIVER`, else the best the kernel offers), prints `listening on ADDR`
/// and runs `serve` on the listener until it fails. `example` names the program in the usage.
pub fn main<F, Fut>(example: &str, serve: F) -> std::io::Result<()>
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = std::io::Result<()>>,
{
    let mut listen = String::from("127.0.0.1:3000");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            _ => {
                eprintln!("usage: {example} [--listen ADDR]");
                std::process::exit(2);
            }
        }
    }
    let p = proactor::Proactor::new()?;
    p.block_on(async {
        let listener = TcpListener::bind(listen.as_str())?;
        println!("listening on {}", listener.local_addr()?);
        serve(listener).await
    })
}
