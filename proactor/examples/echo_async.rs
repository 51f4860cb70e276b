//! The seed's echo server with async/await: one task per connection, the loop written straight.
//!
//! ```text
//! cargo run --release -p proactor --example echo_async [ADDR]    # default 127.0.0.1:1234
//! ```
//!
//! The same operations as `echo_handlers.rs` run underneath; `.await` replaces the handler chain.
//! Each connection owns one buffer: it goes to the kernel with each receive and comes back with
//! the result, is sent back with `write_all` (which continues after partial sends), and is
//! reused for the next receive.

use proactor::net::{TcpListener, TcpStream};
use proactor::Proactor;
use std::io;

async fn echo(stream: TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        let (res, b) = stream.read(buf).await;
        buf = b;
        if res? == 0 {
            return Ok(()); // the client closed its side: everything was echoed
        }
        let (res, b) = stream.write_all(buf).await;
        buf = b;
        res?;
    }
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:1234".into());
    let proactor = Proactor::new()?;
    proactor.block_on(async {
        let listener = TcpListener::bind(&addr)?;
        println!("listening on {} ({})", listener.local_addr()?, proactor.driver_kind());
        loop {
            // `accept` backs off and retries when out of descriptors; an error here is fatal.
            let (stream, peer) = listener.accept().await?;
            drop(proactor::spawn(async move {
                if let Err(e) = echo(stream).await {
                    eprintln!("{peer}: {e}");
                }
            }));
        }
    })
}
