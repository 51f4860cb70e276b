//! Zero-copy send on both drivers: the buffer comes back only after the kernel's notification,
//! and what arrives is exactly what was sent.

mod common;

use common::{CountingBuf, DropLedger};
use proactor::net::{TcpListener, TcpStream};
use proactor::{IoBuf, Proactor};
use std::io::Read;

/// How many zero-copy sends are still in the run loop's table (at a buffer's drop: a buffer
/// handed back at the first of its send's two completions would count its own).
fn sends_in_flight() -> usize {
    proactor::Handle::try_current().map_or(usize::MAX, |h| {
        h.in_flight().by_kind.iter().find(|(k, _)| *k == "send_zc").map_or(0, |(_, n)| *n)
    })
}

fn connected_pair() -> (TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (TcpStream::from_std(server).unwrap(), client)
}

#[proactor::test]
fn a_dropped_zero_copy_send_frees_its_buffer_only_after_the_notification(p: &Proactor) {
    p.block_on(async {
        let (tx, mut rx) = connected_pair();
        let drops = DropLedger::observing(20, sends_in_flight);
        for id in 0..20 {
            let buf = CountingBuf::from_vec(&drops, id, vec![9u8; 256 * 1024]);
            let mut send = tx.send_zc(buf);
            // Submitted, then dropped with the send in flight: the buffer is parked.
            let waker = std::task::Waker::noop();
            let _ = std::pin::Pin::new(&mut send).poll(&mut std::task::Context::from_waker(waker));
            drop(send);
        }
        let reader = std::thread::spawn(move || {
            let mut sink = vec![0u8; 1 << 20];
            let mut total = 0;
            loop {
                match rx.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            total
        });
        for _ in 0..200 {
            if drops.total() == 20 {
                break;
            }
            proactor::time::sleep(std::time::Duration::from_millis(5)).await.unwrap();
        }
        // Dropped sends are cancelled: some bytes may never leave. The socket closes now.
        drop(tx);
        assert!(reader.join().unwrap() <= 20 * 256 * 1024);
        let log = drops.observed();
        assert_eq!(log.len(), 20, "every buffer dropped: {log:?}");
        drops.assert_each_dropped_once();
        // Each drop follows its own send's removal: 19 left at the first, none at the last.
        let expected: Vec<usize> = (0..20).rev().collect();
        assert_eq!(*log, expected, "sends still in flight at each buffer's drop");
    });
}

use std::future::Future;

/// Word-at-a-time FNV-style hash: order-sensitive and fast enough for a GiB.
fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(0x100_0000_01b3);
    }
    for b in words.remainder() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[proactor::test]
fn one_gib_through_zero_copy_sends_arrives_intact(p: &Proactor) {
    const CHUNK: usize = 4 << 20;
    const ROUNDS: usize = 256; // 1 GiB
    p.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let (mut h, mut total, mut carry) = (0xcbf2_9ce4_8422_2325u64, 0usize, Vec::new());
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += n;
                // Hash in whole chunks of the sender's size, so word boundaries match.
                carry.extend_from_slice(&buf[..n]);
                while carry.len() >= CHUNK {
                    h = mix(h, &carry[..CHUNK]);
                    carry.drain(..CHUNK);
                }
            }
            (mix(h, &carry), total)
        });
        let (conn, _) = listener.accept().await.unwrap();
        let mut buf: Vec<u8> = (0..CHUNK).map(|i| (i % 241) as u8).collect();
        let mut expect = 0xcbf2_9ce4_8422_2325u64;
        for round in 0..ROUNDS {
            // The buffer is written between sends: only safe once the kernel gave it back.
            buf[..8].copy_from_slice(&(round as u64).to_le_bytes());
            expect = mix(expect, &buf);
            let mut sent = 0;
            while sent < CHUNK {
                let (res, slice) = conn.send_zc(buf.slice(sent..)).await;
                sent += res.unwrap();
                buf = slice.into_inner();
            }
        }
        drop(conn);
        let (got, total) = reader.join().unwrap();
        assert_eq!(total, CHUNK * ROUNDS);
        assert_eq!(got, expect, "the bytes that arrived differ from those sent");
    });
}
