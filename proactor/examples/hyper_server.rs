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

#[path = "support/hyper_serve.rs"]
mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use proactor::net::TcpListener;
use std::convert::Infallible;

/// The one answer: `Hello, world!`.
pub async fn hello(
    _req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"Hello, world!"))))
}

/// Accepts connections on `listener` and serves each as a local task, until the listener fails.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    support::serve(listener, || hyper::service::service_fn(hello)).await
}

#[allow(dead_code)]
fn main() -> std::io::Result<()> {
    support::main("hyper_server", serve)
}
