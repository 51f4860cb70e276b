//! hyper, axum and rustls on proactor (features `hyper`, `tokio-io`), on both drivers: the
//! examples' servers answer real clients (hyper on a tokio runtime in another thread) over
//! HTTP/1.1 keep-alive and h2c, a hyper client on proactor fetches from a tokio server, the axum
//! example's routes, the TLS echo example, and the timer.
#![cfg(all(feature = "hyper", feature = "tokio-io"))]
// The hyper and axum examples each load the support file they share (examples/support/).
#![allow(clippy::duplicate_mod)]
mod common;

#[allow(dead_code)]
#[path = "../examples/axum_hello.rs"]
mod axum_hello;
#[allow(dead_code)]
#[path = "../examples/hyper_server.rs"]
mod hyper_server;
#[allow(dead_code)]
#[path = "../examples/tls_echo.rs"]
mod tls_echo;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, StatusCode, Version};
use proactor::compat::hyper::{HyperExecutor, HyperTimer};
use proactor::compat::Compat;
use proactor::net::{TcpListener, TcpStream};
use proactor::time;
use proactor::Proactor;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Generous bound for any one test's exchange; they take well under a second.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs `f` on a tokio current-thread runtime in another thread; the proactor loop keeps
/// serving while it waits for the result.
async fn on_tokio_thread<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let out = rt.block_on(async { tokio::time::timeout(LIMIT, f()).await });
        let _ = tx.send(out.expect("the tokio side timed out"));
    });
    let out = time::timeout(LIMIT + Duration::from_secs(1), rx).await;
    let out = out.expect("the tokio thread did not finish").expect("the tokio thread panicked");
    thread.join().unwrap();
    out
}

/// The hyper example's server on an ephemeral port, as a local task.
fn start_hyper_example() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(proactor::spawn(hyper_server::serve(listener)));
    addr
}

// 1,000 requests over one HTTP/1.1 keep-alive connection from hyper's client on tokio.
#[proactor::test]
fn hyper_server_http1_keep_alive_1000_requests(p: &Proactor) {
    p.block_on(async {
        let addr = start_hyper_example();
        let answered = on_tokio_thread(move || async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            let mut n = 0;
            for i in 0..1000 {
                let req = Request::get(format!("http://{addr}/?i={i}"))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                // One connection throughout: a closed one fails `ready` or `send_request`.
                send.ready().await.expect("the connection stays open");
                let resp = send.send_request(req).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                assert_eq!(resp.version(), Version::HTTP_11);
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"Hello, world!");
                n += 1;
            }
            n
        })
        .await;
        assert_eq!(answered, 1000);
    });
}

// 1,000 requests over one h2c connection (prior knowledge), 50 streams at a time.
#[proactor::test]
fn hyper_server_h2c_1000_requests(p: &Proactor) {
    p.block_on(async {
        let addr = start_hyper_example();
        let answered = on_tokio_thread(move || async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let io = hyper_util::rt::TokioIo::new(stream);
            let exec = hyper_util::rt::TokioExecutor::new();
            let (send, conn) = hyper::client::conn::http2::handshake(exec, io).await.unwrap();
            tokio::spawn(conn);
            let mut n = 0;
            for batch in 0..20 {
                let reqs = (0..50).map(|i| {
                    let mut send = send.clone();
                    async move {
                        let req = Request::get(format!("http://{addr}/?b={batch}&i={i}"))
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        let resp = send.send_request(req).await.unwrap();
                        assert_eq!(resp.status(), StatusCode::OK);
                        assert_eq!(resp.version(), Version::HTTP_2);
                        resp.into_body().collect().await.unwrap().to_bytes()
                    }
                });
                for body in futures_util::future::join_all(reqs).await {
                    assert_eq!(&body[..], b"Hello, world!");
                    n += 1;
                }
            }
            n
        })
        .await;
        assert_eq!(answered, 1000);
    });
}

/// Deterministic bytes for bodies.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// A hyper client on proactor, HTTP/1.1 and h2c, fetches a 1 MiB body from a hyper server on
// tokio in another thread and checks its hash.
#[proactor::test]
fn hyper_client_fetches_from_a_tokio_server(p: &Proactor) {
    const LEN: usize = 1 << 20;
    let body = Bytes::from(pattern(LEN, 7));
    let want = Sha256::digest(&body);
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    p.block_on(async {
        let server = on_tokio_thread(move || async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let mut conns = Vec::new();
            for _ in 0..2 {
                let (stream, _) = listener.accept().await.unwrap();
                let body = body.clone();
                conns.push(tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let body = body.clone();
                        async move { Ok::<_, std::convert::Infallible>(Response::new(Full::new(body))) }
                    });
                    let exec = hyper_util::rt::TokioExecutor::new();
                    hyper_util::server::conn::auto::Builder::new(exec)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await
                        .unwrap();
                }));
            }
            for c in conns {
                c.await.unwrap();
            }
        });
        let client = async {
            // HTTP/1.1
            let io = Compat::new(TcpStream::connect(addr).await.unwrap());
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            let conn = proactor::spawn(conn);
            for _ in 0..3 {
                let req = Request::get("/file").body(Empty::<Bytes>::new()).unwrap();
                let resp = send.send_request(req).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                let got = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(got.len(), LEN);
                assert_eq!(Sha256::digest(&got), want, "HTTP/1.1 body differs");
            }
            drop(send);
            conn.await.unwrap().unwrap();
            // h2c
            let io = Compat::new(TcpStream::connect(addr).await.unwrap());
            let (mut send, conn) = hyper::client::conn::http2::Builder::new(HyperExecutor)
                .timer(HyperTimer)
                .handshake(io)
                .await
                .unwrap();
            let conn = proactor::spawn(conn);
            for _ in 0..3 {
                let req = Request::get(format!("http://{addr}/file"))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let resp = send.send_request(req).await.unwrap();
                assert_eq!(resp.version(), Version::HTTP_2);
                let got = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(Sha256::digest(&got), want, "HTTP/2 body differs");
            }
            drop(send);
            conn.await.unwrap().unwrap();
        };
        let (_, ()) = futures_util::future::join(server, client).await;
    });
}

/// A hyper HTTP/1.1 or h2c client on this proactor.
async fn get(addr: SocketAddr, path: &str, h2: bool) -> (Response<()>, Bytes) {
    let io = Compat::new(TcpStream::connect(addr).await.unwrap());
    let req = Request::get(format!("http://{addr}{path}")).body(Empty::<Bytes>::new()).unwrap();
    let resp = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(HyperExecutor, io).await.unwrap();
        drop(proactor::spawn(conn));
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        drop(proactor::spawn(conn));
        send.send_request(req).await.unwrap()
    };
    let (parts, body) = resp.into_parts();
    (Response::from_parts(parts, ()), body.collect().await.unwrap().to_bytes())
}

// The axum example: status, content type and body of each route, over HTTP/1.1 and h2c.
#[proactor::test]
fn axum_example_routes(p: &Proactor) {
    p.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(proactor::spawn(axum_hello::serve(listener, axum_hello::app())));
        for h2 in [false, true] {
            let (resp, body) = get(addr, "/json", h2).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()["content-type"], "application/json");
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                json,
                serde_json::json!({
                    "runtime": "proactor",
                    "framework": "axum",
                    "routes": ["/json", "/hello/{name}"],
                })
            );
            assert_eq!(resp.headers()["content-length"], body.len().to_string());

            let (resp, body) = get(addr, "/hello/ferris", h2).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
            assert_eq!(&body[..], b"Hello, ferris!");

            let (resp, body) = get(addr, "/hello/caf%C3%A9", h2).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(&body[..], "Hello, café!".as_bytes());

            let (resp, _) = get(addr, "/nowhere", h2).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
            let (resp, _) = get(addr, "/hello", h2).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        }
    });
}

// The TLS echo example: 1 MiB through a TLS client on this proactor (tokio-rustls over the
// adapter on both ends), back byte-exact.
#[proactor::test]
fn tls_echo_round_trips_1_mib(p: &Proactor) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
    p.block_on(async {
        let (config, cert, _pem) = tls_echo::self_signed().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(proactor::spawn(tls_echo::serve(listener, config)));

        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, Compat::new(tcp)).await.unwrap();
        let (mut r, mut w) = tokio::io::split(tls);

        const LEN: usize = 1 << 20;
        let data = pattern(LEN, 99);
        let sent = data.clone();
        let writer = proactor::spawn(async move {
            for chunk in sent.chunks(10_000) {
                w.write_all(chunk).await.unwrap();
            }
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::with_capacity(LEN);
        time::timeout(LIMIT, r.read_to_end(&mut back)).await.unwrap().unwrap();
        writer.await.unwrap();
        assert_eq!(back.len(), LEN);
        assert!(back == data, "the echo differs");
    });
}

// The timer: a sleep lasts at least its duration; dropped sleeps cancel their timers.
#[proactor::test]
fn hyper_timer_sleeps_and_cancels(p: &Proactor) {
    use hyper::rt::Timer;
    p.block_on(async {
        let t = Instant::now();
        HyperTimer.sleep(Duration::from_millis(20)).await;
        assert!(t.elapsed() >= Duration::from_millis(20));
        let t = Instant::now();
        HyperTimer.sleep_until(Instant::now() + Duration::from_millis(10)).await;
        assert!(t.elapsed() >= Duration::from_millis(10));
        // Polled once (armed), then dropped: gone from the loop's timers at once, and never
        // an operation.
        let mut sleeps: Vec<_> =
            (0..100).map(|_| HyperTimer.sleep(Duration::from_secs(60))).collect();
        std::future::poll_fn(|cx| {
            for s in &mut sleeps {
                assert!(s.as_mut().poll(cx).is_pending());
            }
            std::task::Poll::Ready(())
        })
        .await;
        let h = proactor::Handle::current();
        assert_eq!(h.stats().timers.armed, 100);
        assert_eq!(h.in_flight().in_flight, 0);
        drop(sleeps);
        assert_eq!(h.stats().timers.armed, 0, "the timers were not cancelled");
    });
}
