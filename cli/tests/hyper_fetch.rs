//! A hyper client on proactor (the `hyper` bridge) fetches files from `proactor http` over one
//! keep-alive connection, on both drivers (client and server on the same driver), and checks
//! each body's SHA-256, length and headers.

mod http_support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use http_support::Server;
use hyper::{Request, StatusCode};
use proactor::compat::Compat;
use proactor::net::TcpStream;
use proactor::{DriverChoice, Proactor};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Deterministic, non-repeating bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 29) as u8
        })
        .collect()
}

#[proactor::test]
fn hyper_client_fetches_files_from_proactor_http(driver: &str) {
    let dir = tempfile::tempdir().unwrap();
    let files = [("big.bin", noise(3 << 20, 1)), ("small.txt", b"small file\n".to_vec())];
    for (name, body) in &files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let srv = Server::start(dir.path(), driver, &[]);
    let addr = srv.addr;
    let p = Proactor::builder().driver(driver.parse::<DriverChoice>().unwrap()).build().unwrap();
    p.block_on(async {
        let io = Compat::new(TcpStream::connect(addr).await.unwrap());
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        let conn = proactor::spawn(conn);
        // Twice each, on the same connection: keep-alive after a large body too.
        for _ in 0..2 {
            for (name, body) in &files {
                let req = Request::get(format!("/{name}"))
                    .header("host", addr.to_string())
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                send.ready().await.expect("the connection stays open");
                let fetch = send.send_request(req);
                let resp = proactor::time::timeout(Duration::from_secs(20), fetch)
                    .await
                    .expect("an answer in time")
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                assert_eq!(resp.headers()["content-length"], body.len().to_string());
                let got = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(got.len(), body.len(), "{name}: length");
                assert_eq!(Sha256::digest(&got), Sha256::digest(body), "{name}: bytes differ");
            }
        }
        let req = Request::get("/missing").header("host", "t").body(Empty::<Bytes>::new()).unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        drop(send);
        conn.await.unwrap().unwrap();
    });
}
