//! An axum 0.8 `Router` on proactor, served through hyper's connection builder (HTTP/1.1 and
//! h2c on one port): `GET /json` answers JSON, `GET /hello/{name}` greets by path parameter.
//!
//! ```text
//! cargo run --release -p proactor --example axum_hello -- --listen 127.0.0.1:3000
//! curl http://127.0.0.1:3000/json
//! curl http://127.0.0.1:3000/hello/ferris
//! ```
//!
//! axum's own `serve` wants tokio's listener; here each accepted proactor socket goes to
//! `hyper_util`'s `auto::Builder`, with the router turned into a hyper service. It serves until
//! stopped.

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use proactor::compat::hyper::{HyperExecutor, HyperTimer};
use proactor::compat::Compat;
use proactor::net::TcpListener;
use serde::Serialize;

/// The body of `GET /json`.
#[derive(Serialize)]
pub struct Info {
    /// Always `"proactor"`.
    pub runtime: &'static str,
    /// Always `"axum"`.
    pub framework: &'static str,
    /// The routes served.
    pub routes: Vec<&'static str>,
}

/// The application: its routes and handlers.
pub fn app() -> Router {
    Router::new()
        .route(
            "/json",
            get(|| async {
                Json(Info {
                    runtime: "proactor",
                    framework: "axum",
                    routes: vec!["/json", "/hello/{name}"],
                })
            }),
        )
        .route(
            "/hello/{name}",
            get(|Path(name): Path<String>| async move { format!("Hello, {name}!") }),
        )
}

/// Accepts connections on `listener` and serves `app` on each as a local task, until the
/// listener fails.
pub async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    loop {
        let (stream, _peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        drop(proactor::spawn(async move {
            let mut builder = auto::Builder::new(HyperExecutor);
            builder.http1().timer(HyperTimer);
            builder.http2().timer(HyperTimer);
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
                eprintln!("usage: axum_hello [--listen ADDR]");
                std::process::exit(2);
            }
        }
    }
    let p = proactor::Proactor::new()?;
    p.block_on(async {
        let listener = TcpListener::bind(listen.as_str())?;
        println!("listening on {}", listener.local_addr()?);
        serve(listener, app()).await
    })
}
