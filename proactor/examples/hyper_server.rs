//! A hyper 1.x hello-world server on proactor: HTTP/1.1 and HTTP/2 over cleartext (h2c, prior
//! knowledge) on one port, a local task per connection.
//!
//! ```text
//! cargo run --release -p proactor --example hyper_server -- --listen 127.0.0.1:3000
//! curl http://127.0.0.1:3000/            # HTTP/1.1
//! curl --http2-prior-knowledge http://127.0.0.1:3000/
//! ```
//!
//! `PROACTOR_DRIVER=epoll` runs it on the epoll driver. It serves until stopped.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::server::conn::auto;
use proactor::compat::hyper::{HyperExecutor, HyperTimer};
use proactor::compat::Compat;
use proactor::net::TcpListener;
use std::convert::Infallible;

/// The one answer: `Hello, world!`.
async fn hello(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"Hello, world!"))))
}

/// Accepts connections on `listener` and serves each as a local task, until the listener fails.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        // Dropping the join handle detaches the task.
        drop(proactor::spawn(async move {
            let mut builder = auto::Builder::new(HyperExecutor);
            builder.http1().timer(HyperTimer);
            builder.http2().timer(HyperTimer);
            let service = hyper::service::service_fn(hello);
            if let Err(e) = builder.serve_connection(Compat::new(stream), service).await {
                eprintln!("connection: {e}");
            }
        }));
    }
}

#[allow(dead_code)]
fn main() -> std::io::Result<()> {
    let mut listen = String::from("127.0.0.1:3000");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            _ => {
                eprintln!("usage: hyper_server [--listen ADDR]");
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
