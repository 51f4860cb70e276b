//! A TLS echo server: tokio-rustls over proactor's tokio-io adapter, with a self-signed
//! certificate for `localhost` made by `rcgen` at start (its PEM is printed to stderr).
//!
//! ```text
//! cargo run --release -p proactor --example tls_echo -- --listen 127.0.0.1:4443
//! openssl s_client -connect 127.0.0.1:4443 -quiet     # type; lines come back
//! ```
//!
//! It serves until stopped.

use proactor::compat::Compat;
use proactor::net::TcpListener;
use std::io;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A fresh self-signed certificate for `localhost` and `127.0.0.1`: a server configuration
/// (ring provider) that presents it, the certificate (for a client's root store) and its PEM.
pub fn self_signed() -> io::Result<(Arc<ServerConfig>, CertificateDer<'static>, String)> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .map_err(io::Error::other)?;
    Ok((Arc::new(config), cert, certified.cert.pem()))
}

/// Accepts connections and echoes every byte each sends, over TLS, until the listener fails.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (stream, _peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        drop(proactor::spawn(async move {
            if let Err(e) = echo(acceptor, stream).await {
                eprintln!("connection: {e}");
            }
        }));
    }
}

/// The TLS handshake, then bytes back until the client closes, then a TLS close.
async fn echo(acceptor: TlsAcceptor, stream: proactor::net::TcpStream) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let tls = acceptor.accept(Compat::new(stream)).await?;
    let (mut r, mut w) = tokio::io::split(tls);
    tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await
}

#[allow(dead_code)]
fn main() -> io::Result<()> {
    let mut listen = String::from("127.0.0.1:4443");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            _ => {
                eprintln!("usage: tls_echo [--listen ADDR]");
                std::process::exit(2);
            }
        }
    }
    let (config, _cert, pem) = self_signed()?;
    eprintln!("a certificate for localhost, made now:\n{pem}");
    let p = proactor::Proactor::new()?;
    p.block_on(async {
        let listener = TcpListener::bind(listen.as_str())?;
        println!("listening on {}", listener.local_addr()?);
        serve(listener, config).await
    })
}
