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

#[path = "support/hyper_serve.rs"]
mod support;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::service::TowerToHyperService;
use proactor::net::TcpListener;
use serde::Serialize;

/// The body of `GET /json`.
#[derive(Serialize)]
pub struct Info {
    /// The runtime serving it: `"proactor"` (another in `proactor bench hyper`'s tokio peer).
    pub runtime: &'static str,
    /// Always `"axum"`.
    pub framework: &'static str,
    /// The routes served.
    pub routes: Vec<&'static str>,
}

/// The application: its routes and handlers.
pub fn app() -> Router {
    app_on("proactor")
}

/// The application, saying in `GET /json` that `runtime` serves it.
pub fn app_on(runtime: &'static str) -> Router {
    Router::new()
        .route(
            "/json",
            get(move || async move {
                Json(Info { runtime, framework: "axum", routes: vec!["/json", "/hello/{name}"] })
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
    support::serve(listener, move || TowerToHyperService::new(app.clone())).await
}

#[allow(dead_code)]
fn main() -> std::io::Result<()> {
    support::main("axum_hello", |listener| serve(listener, app()))
}
