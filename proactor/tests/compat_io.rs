//! The `tokio-io` / `futures-io` bridge (`proactor::compat::Compat`) on both drivers: bulk copies
//! through `tokio::io::copy`, reads whose futures are dropped mid-operation, buffered reads,
//! flush, shutdown and write errors.
#![cfg(all(feature = "tokio-io", feature = "futures-io"))]
mod common;

use proactor::compat::Compat;
use proactor::net::{TcpListener, TcpStream, UnixStream};
use proactor::time;
use proactor::Proactor;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deterministic bytes (xorshift), so the sender and the test can both hash them.
struct Bytes(u64);

impl Bytes {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// A connected TCP pair on loopback.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connect = proactor::spawn(async move { TcpStream::connect(addr).await.unwrap() });
    let (server, _) = listener.accept().await.unwrap();
    (connect.await.unwrap(), server)
}

/// Polls `a` first, then `b`; returns which finished (the other is dropped).
async fn first<A: Future, B: Future>(a: A, b: B) -> Result<A::Output, B::Output> {
    let (mut a, mut b) = (pin!(a), pin!(b));
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(x) = a.as_mut().poll(cx) {
            return std::task::Poll::Ready(Ok(x));
        }
        b.as_mut().poll(cx).map(Err)
    })
    .await
}

const COPY_LEN: usize = 64 << 20;

// 64 MiB: writer → socket pair 1 → `tokio::io::copy` → socket pair 2 → reader, hashed at both
// ends, all over the adapter.
#[proactor::test]
fn tokio_copy_64_mib_between_sockets(p: &Proactor) {
    p.block_on(async {
        let (src_w, src_r) = tcp_pair().await;
        let (dst_w, dst_r) = tcp_pair().await;
        let writer = proactor::spawn(async move {
            let mut w = Compat::new(src_w);
            let mut gen = Bytes(0x9e37_79b9_7f4a_7c15);
            let mut hash = Sha256::new();
            let mut chunk = vec![0u8; 48 * 1024 + 7];
            let mut sent = 0;
            while sent < COPY_LEN {
                let n = chunk.len().min(COPY_LEN - sent);
                gen.fill(&mut chunk[..n]);
                hash.update(&chunk[..n]);
                w.write_all(&chunk[..n]).await.unwrap();
                sent += n;
            }
            w.shutdown().await.unwrap();
            assert_eq!(w.pending_write(), 0);
            hash.finalize()
        });
        let copier = proactor::spawn(async move {
            let (mut from, mut to) = (Compat::new(src_r), Compat::new(dst_w));
            let n = tokio::io::copy(&mut from, &mut to).await.unwrap();
            to.shutdown().await.unwrap();
            n
        });
        let mut r = Compat::new(dst_r);
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 100_000];
        let mut got = 0;
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            got += n;
        }
        assert_eq!(got, COPY_LEN);
        assert_eq!(copier.await.unwrap(), COPY_LEN as u64);
        assert_eq!(writer.await.unwrap(), hash.finalize(), "the bytes differ");
    });
}

// Reads raced against a short timer that wins often, both while the receive waits for data and
// when the data has just arrived: the dropped read future leaves the receive in the adapter,
// and the bytes of the stream arrive complete and in order.
#[proactor::test]
fn dropped_read_future_loses_no_byte(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        const LEN: usize = 300_000;
        let writer = proactor::spawn(async move {
            let mut w = Compat::with_capacity(a, 4096, 4096);
            let mut gen = Bytes(42);
            let mut all = vec![0u8; LEN];
            gen.fill(&mut all);
            let (mut sent, mut i) = (0, 0u64);
            while sent < LEN {
                i += 1;
                let n = ((i * 997 % 9000) as usize + 1).min(LEN - sent);
                w.write_all(&all[sent..sent + n]).await.unwrap();
                w.flush().await.unwrap();
                sent += n;
                // Pauses longer than the reader's timer (reads dropped while waiting), and
                // about as long (reads dropped just as their data arrives).
                let pause = match i % 4 {
                    0 => 1000,
                    1 => 200,
                    _ => 0,
                };
                if pause > 0 {
                    time::sleep(Duration::from_micros(pause)).await.unwrap();
                }
            }
            w.shutdown().await.unwrap();
            all
        });
        let mut r = Compat::with_capacity(b, 3000, 64);
        let mut got = Vec::with_capacity(LEN);
        let mut buf = [0u8; 1024];
        let (mut dropped_in_flight, mut reads, mut timer_wins) = (0, 0, 0);
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < Duration::from_secs(20), "the reader stalled");
            let timer = time::sleep(Duration::from_micros(200));
            let res = first(timer, r.read(&mut buf)).await;
            match res {
                Ok(_) => {
                    timer_wins += 1;
                    if r.read_in_flight() {
                        dropped_in_flight += 1;
                    }
                }
                Err(res) => {
                    let n = res.unwrap();
                    if n == 0 {
                        break;
                    }
                    reads += 1;
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
        let sent = writer.await.unwrap();
        assert!(
            dropped_in_flight > 10,
            "only {dropped_in_flight} of {timer_wins} dropped reads were in flight"
        );
        assert!(reads > 10);
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "the stream was reordered or corrupted");
    });
}

// A dropped read future, then the adapter itself dropped with its receive in flight: the
// receive is cancelled and the socket stays usable by a new adapter.
#[proactor::test]
fn adapter_dropped_with_read_in_flight(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let b = std::rc::Rc::new(b);
        let mut r = Compat::new(b.clone());
        let mut buf = [0u8; 16];
        let res = first(time::sleep(Duration::from_millis(5)), r.read(&mut buf)).await;
        assert!(res.is_ok(), "nothing was sent, the timer wins");
        assert!(r.read_in_flight());
        drop(r);
        // Let the cancel reach the driver before the bytes do.
        time::sleep(Duration::from_millis(5)).await.unwrap();
        let mut w = Compat::new(a);
        w.write_all(b"after").await.unwrap();
        w.flush().await.unwrap();
        let mut r = Compat::new(b);
        r.read_exact(&mut buf[..5]).await.unwrap();
        assert_eq!(&buf[..5], b"after");
    });
}

// `futures::io`: buffered line reads (`AsyncBufRead`), vectored writes, close.
#[proactor::test]
fn futures_io_lines_and_close(p: &Proactor) {
    // Called by path: the tokio traits imported above have methods of the same names.
    use futures_util::io::{AsyncBufReadExt, AsyncReadExt as FRead, AsyncWriteExt as FWrite};
    p.block_on(async {
        let (a, b) = tcp_pair().await;
        let writer = proactor::spawn(async move {
            let mut w = Compat::with_capacity(a, 64, 16);
            for i in 0..200 {
                let line = format!("line {i}\n");
                let parts = [std::io::IoSlice::new(b"> "), std::io::IoSlice::new(line.as_bytes())];
                let mut n = FWrite::write_vectored(&mut w, &parts).await.unwrap();
                // A short vectored write: the rest, plainly.
                let whole = [b"> ".as_slice(), line.as_bytes()].concat();
                while n < whole.len() {
                    n += FWrite::write(&mut w, &whole[n..]).await.unwrap();
                }
            }
            FWrite::close(&mut w).await.unwrap();
        });
        let mut r = Compat::with_capacity(b, 37, 64);
        let mut line = String::new();
        for i in 0..200 {
            line.clear();
            AsyncBufReadExt::read_line(&mut r, &mut line).await.unwrap();
            assert_eq!(line, format!("> line {i}\n"));
        }
        let mut rest = Vec::new();
        assert_eq!(FRead::read_to_end(&mut r, &mut rest).await.unwrap(), 0, "end of stream");
        writer.await.unwrap();
    });
}

// Write errors reach the caller: once the peer is gone, a write or the flush after it fails
// (EPIPE or ECONNRESET), within a bounded number of tries.
#[proactor::test]
fn write_error_after_peer_closed(p: &Proactor) {
    p.block_on(async {
        let (a, b) = tcp_pair().await;
        drop(b);
        let mut w = Compat::with_capacity(a, 1024, 1024);
        let chunk = [7u8; 1000];
        let mut failed = None;
        for _ in 0..1000 {
            let res = match w.write(&chunk).await {
                Ok(_) => w.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("writes to a closed peer kept succeeding");
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "unexpected error {e:?}"
        );
    });
}

// Flush hands every byte to a send (at most the last one still in flight), `poll_flush_sends`
// waits for it; shutdown sends end of stream after the bytes; a second shutdown is Ok.
#[proactor::test]
fn flush_and_shutdown_order(p: &Proactor) {
    p.block_on(async {
        let (a, b) = tcp_pair().await;
        let mut w = Compat::with_capacity(a, 1024, 100);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        // Accepted in pieces of at most the buffer's room; a send in flight takes the other.
        let mut off = 0;
        while off < data.len() {
            let n = w.write(&data[off..]).await.unwrap();
            assert!(n > 0 && n <= 100, "accepted {n}");
            off += n;
        }
        w.flush().await.unwrap();
        assert!(w.pending_write() <= 100, "only the last send may be in flight");
        std::future::poll_fn(|cx| w.poll_flush_sends(cx)).await.unwrap();
        assert_eq!(w.pending_write(), 0);
        w.shutdown().await.unwrap();
        w.shutdown().await.unwrap();
        let mut r = Compat::new(b);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert!(got == data);
    });
}

// What a flush handed to the kernel arrives even if the adapter is dropped at once: its send in
// flight is finished by a task of its own (a small send buffer forces partial sends, whose rests
// that task resubmits), which then closes the socket — the reader sees every byte, then end of
// stream. Bytes written after the flush and never flushed are dropped.
#[proactor::test]
fn adapter_dropped_after_flush_delivers_the_flushed_bytes(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        a.as_socket().set_send_buffer_size(4096).unwrap();
        b.as_socket().set_recv_buffer_size(4096).unwrap();
        const LEN: usize = 1 << 20;
        let mut data = vec![0u8; LEN];
        Bytes(7).fill(&mut data);
        let mut w = Compat::with_capacity(a, 64, LEN);
        w.write_all(&data).await.unwrap();
        w.flush().await.unwrap();
        assert!(w.pending_write() > 0, "the send is still in flight (the reader has not read)");
        drop(w);
        let mut r = Compat::with_capacity(b, 64 << 10, 64);
        let mut got = Vec::with_capacity(LEN);
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), LEN);
        assert!(got == data, "the flushed bytes arrived changed");
    });
}

// `Compat::with_pool`: 8 MiB over TCP read through a pool of four 4 KiB buffers (so its
// receive keeps finding the pool dry while the reader holds a chunk), hashed at both ends.
#[proactor::test]
fn pooled_reader_copies_8_mib_through_a_small_pool(p: &Proactor) {
    p.block_on(async {
        const LEN: usize = 8 << 20;
        let pool = proactor::buf::BufPool::new(4, 4096).unwrap();
        let (w, r) = tcp_pair().await;
        let writer = proactor::spawn(async move {
            let mut w = Compat::new(w);
            let mut gen = Bytes(7);
            let mut hash = Sha256::new();
            let mut chunk = vec![0u8; 20_000 + 3];
            let mut sent = 0;
            while sent < LEN {
                let n = chunk.len().min(LEN - sent);
                gen.fill(&mut chunk[..n]);
                hash.update(&chunk[..n]);
                w.write_all(&chunk[..n]).await.unwrap();
                sent += n;
            }
            w.shutdown().await.unwrap();
            hash.finalize()
        });
        let mut r = Compat::with_pool(r, &pool);
        assert!(r.read_in_flight());
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 3000];
        let mut got = 0;
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            got += n;
        }
        assert_eq!(got, LEN);
        assert!(!r.read_in_flight(), "the stream ended");
        assert_eq!(r.read(&mut buf).await.unwrap(), 0, "end of stream stays");
        assert_eq!(writer.await.unwrap(), hash.finalize(), "the bytes differ");
        drop(r);
        assert_eq!(pool.available(), pool.capacity(), "every buffer back in the pool");
    });
}

// `Compat::with_pool` under reads raced against a timer (as `dropped_read_future_loses_no_byte`),
// and through `AsyncBufRead`: a dropped read future leaves the chunk and the receive in the
// adapter, and the stream arrives complete and in order.
#[proactor::test]
fn pooled_reader_loses_no_byte_to_dropped_futures(p: &Proactor) {
    p.block_on(async {
        use tokio::io::AsyncBufReadExt;
        const LEN: usize = 200_000;
        let pool = proactor::buf::BufPool::new(8, 1024).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let writer = proactor::spawn(async move {
            let mut w = Compat::with_capacity(a, 4096, 4096);
            let mut all = vec![0u8; LEN];
            Bytes(99).fill(&mut all);
            let (mut sent, mut i) = (0, 0u64);
            while sent < LEN {
                i += 1;
                let n = ((i * 997 % 5000) as usize + 1).min(LEN - sent);
                w.write_all(&all[sent..sent + n]).await.unwrap();
                w.flush().await.unwrap();
                sent += n;
                if i % 3 == 0 {
                    time::sleep(Duration::from_micros(500)).await.unwrap();
                }
            }
            w.shutdown().await.unwrap();
            all
        });
        let mut r = Compat::with_pool(b, &pool);
        let mut got = Vec::with_capacity(LEN);
        let mut buf = [0u8; 700];
        let (mut timer_wins, mut reads) = (0, 0);
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < Duration::from_secs(20), "the reader stalled");
            if reads % 5 == 4 {
                // Through the buffered-read interface: take part of the chunk.
                let chunk = r.fill_buf().await.unwrap();
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len().min(333);
                got.extend_from_slice(&chunk[..n]);
                r.consume(n);
                reads += 1;
                continue;
            }
            match first(time::sleep(Duration::from_micros(200)), r.read(&mut buf)).await {
                Ok(_) => timer_wins += 1,
                Err(res) => {
                    let n = res.unwrap();
                    if n == 0 {
                        break;
                    }
                    reads += 1;
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
        let sent = writer.await.unwrap();
        assert!(timer_wins > 10, "only {timer_wins} reads were dropped");
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "the stream was reordered or corrupted");
    });
}
