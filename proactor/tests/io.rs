//! Composed operations on both drivers: correct on short transfers, early ends, slow peers and
//! over-long lines.
mod common;

use proactor::io::{
    self, read_exact, write_all, AsyncReadOwned, AsyncWriteOwned, BufReader, LineTooLong,
};
use proactor::net::UnixStream;
use proactor::Proactor;
use proactor::{BufResult, IoBuf, IoBufMut};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::io::ErrorKind;
use std::net::Shutdown;
use std::time::Duration;

/// A reader over memory that returns a random short count on every read.
struct Chunky {
    data: Vec<u8>,
    pos: usize,
    rng: StdRng,
}

impl AsyncReadOwned for Chunky {
    async fn read<B: IoBufMut>(&mut self, mut buf: B) -> BufResult<usize, B> {
        let left = self.data.len() - self.pos;
        let max = left.min(buf.bytes_total());
        let n = if max == 0 { 0 } else { self.rng.gen_range(1..=max) };
        // SAFETY (test): `n` fits the destination, which the source does not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data[self.pos..].as_ptr(), buf.stable_mut_ptr(), n);
            buf.set_init(n);
        }
        self.pos += n;
        (Ok(n), buf)
    }
}

/// A writer that records every count it returns, accepting a random prefix each time.
struct ChunkySink {
    out: Vec<u8>,
    counts: Vec<(usize, usize)>,
    rng: StdRng,
}

impl AsyncWriteOwned for ChunkySink {
    async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        let offered = buf.bytes_init();
        let n = if offered == 0 { 0 } else { self.rng.gen_range(1..=offered) };
        // SAFETY (test): the first `bytes_init` bytes of `buf` are initialised.
        let bytes = unsafe { std::slice::from_raw_parts(buf.stable_ptr(), n) };
        self.out.extend_from_slice(bytes);
        self.counts.push((offered, n));
        (Ok(n), buf)
    }
}

#[proactor::test]
fn composed_ops_survive_random_short_transfers(p: &Proactor) {
    p.block_on(async {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..200 {
            let len = rng.gen_range(0..5000);
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let mut r = Chunky { data: data.clone(), pos: 0, rng: StdRng::seed_from_u64(round) };
            let (res, buf) = read_exact(&mut r, Vec::with_capacity(len)).await;
            res.unwrap();
            assert_eq!(buf, data);
            let mut w = ChunkySink {
                out: Vec::new(),
                counts: Vec::new(),
                rng: StdRng::seed_from_u64(round),
            };
            let (res, back) = write_all(&mut w, data.clone()).await;
            res.unwrap();
            assert_eq!(back, data, "the buffer comes back unchanged");
            assert_eq!(w.out, data);
            // Lines split at random read boundaries come out whole.
            let text: Vec<u8> = (0..len)
                .map(|_| if rng.gen_ratio(1, 20) { b'\n' } else { b'a' + rng.gen_range(0..26) })
                .collect();
            let chunky = Chunky { data: text.clone(), pos: 0, rng: StdRng::seed_from_u64(round) };
            let mut reader = BufReader::with_capacity(rng.gen_range(1..64), chunky);
            let mut joined = Vec::new();
            loop {
                let mut line = Vec::new();
                let n = reader.read_until(b'\n', &mut line, usize::MAX).await.unwrap();
                if n == 0 {
                    break;
                }
                assert_eq!(n, line.len());
                let body = &line[..line.len() - 1];
                assert!(!body.contains(&b'\n'));
                joined.extend_from_slice(&line);
            }
            assert_eq!(joined, text);
        }
    });
}

#[proactor::test]
fn read_exact_on_early_close_is_unexpected_eof(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let (res, _) = a.write(b"only ten!!".as_slice()).await;
        assert_eq!(res.unwrap(), 10);
        drop(a);
        let (res, buf) = b.read_exact(Vec::with_capacity(100)).await;
        let err = res.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("10 of 100"), "{err}");
        assert_eq!(buf, b"only ten!!", "the bytes that did arrive are kept");
    });
}

#[proactor::test]
fn write_all_to_a_slow_reader(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        // Small socket buffers force many partial writes.
        a.as_socket().set_send_buffer_size(4096).unwrap();
        b.as_socket().set_recv_buffer_size(4096).unwrap();
        let payload: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
        let expect = payload.clone();
        let reader = proactor::spawn(async move {
            let mut got = Vec::with_capacity(expect.len());
            let mut reads = 0u32;
            loop {
                let (res, buf) = b.read(Vec::with_capacity(64 << 10)).await;
                let n = res.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf);
                reads += 1;
                if reads.is_multiple_of(16) {
                    proactor::time::sleep(Duration::from_millis(1)).await.unwrap();
                }
            }
            assert!(got == expect, "the slow reader got every byte in order");
        });
        /// Counts the writes and how many of them were short.
        struct Counting<'a> {
            inner: &'a UnixStream,
            writes: usize,
            short: usize,
        }
        impl AsyncWriteOwned for Counting<'_> {
            async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
                let offered = buf.bytes_init();
                let (res, buf) = self.inner.write(buf).await;
                self.writes += 1;
                if res.as_ref().is_ok_and(|&n| n < offered) {
                    self.short += 1;
                }
                (res, buf)
            }
        }
        let mut w = Counting { inner: &a, writes: 0, short: 0 };
        let (res, back) = write_all(&mut w, payload).await;
        res.unwrap();
        assert_eq!(back.len(), 4 << 20);
        assert!(w.short > 0, "the test exercised partial writes ({} writes)", w.writes);
        a.shutdown(Shutdown::Write).await.unwrap();
        reader.await.unwrap();
    });
}

#[proactor::test]
fn read_until_bounds_an_over_long_line(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let writer = proactor::spawn(async move {
            let (res, _) = a.write_all(b"short line\n".to_vec()).await;
            res.unwrap();
            // 8 MiB without a newline, then a normal line.
            let (res, _) = a.write_all(vec![b'x'; 8 << 20]).await;
            res.unwrap();
            let (res, _) = a.write_all(b"\nafter\n".to_vec()).await;
            res.unwrap();
        });
        let mut reader = BufReader::new(b);
        let mut line = Vec::new();
        assert_eq!(reader.read_until(b'\n', &mut line, 4096).await.unwrap(), 11);
        assert_eq!(line, b"short line\n");
        line.clear();
        let err = reader.read_until(b'\n', &mut line, 4096).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(LineTooLong::is(&err), "{err}");
        assert_eq!(line.len(), 4096, "no more than the limit was buffered");
        assert!(line.capacity() < 64 << 10, "memory stayed bounded: {}", line.capacity());
        // The rest of the long line is skipped in constant memory; the next line is intact.
        let skipped = reader.skip_until(b'\n').await.unwrap();
        assert_eq!(skipped, (8 << 20) - 4096 + 1);
        line.clear();
        reader.read_until(b'\n', &mut line, 4096).await.unwrap();
        assert_eq!(line, b"after\n");
        writer.await.unwrap();
        line.clear();
        assert_eq!(reader.read_until(b'\n', &mut line, 4096).await.unwrap(), 0, "end of stream");
    });
}

#[proactor::test]
fn copy_file_to_socket(p: &Proactor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 256) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let receiver = proactor::spawn(async move {
            let mut out = Vec::new();
            let mut sink = ChunkySinkAll(&mut out);
            let n = b.copy_to(&mut sink).await.unwrap();
            (n, out)
        });
        let mut file = proactor::fs::File::open(&path).await.unwrap();
        let n = io::copy(&mut file, &mut &a).await.unwrap();
        assert_eq!(n, data.len() as u64);
        a.shutdown(Shutdown::Write).await.unwrap();
        let (m, out) = receiver.await.unwrap();
        assert_eq!(m, n);
        assert!(out == data);
    });
}

/// A writer into a `Vec` that takes everything.
struct ChunkySinkAll<'a>(&'a mut Vec<u8>);

impl AsyncWriteOwned for ChunkySinkAll<'_> {
    async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        let n = buf.bytes_init();
        // SAFETY (test): the first `bytes_init` bytes of `buf` are initialised.
        self.0.extend_from_slice(unsafe { std::slice::from_raw_parts(buf.stable_ptr(), n) });
        (Ok(n), buf)
    }
}

// A read into a buffer with no room returns 0 at once, as a socket's does: it neither waits for
// the peer nor swallows what arrives next (it once blocked until data came, then buffered it).
#[proactor::test]
fn buf_reader_zero_capacity_read_returns_at_once(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let mut reader = BufReader::new(b);
        let res = proactor::time::timeout(Duration::from_secs(5), reader.read(Vec::new())).await;
        let (res, buf) = res.expect("a zero-capacity read does not wait for data");
        assert_eq!((res.unwrap(), buf.len()), (0, 0));
        assert!(reader.buffer().is_empty());
        let (res, _) = a.write_all(b"next\n".to_vec()).await;
        res.unwrap();
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line, 64).await.unwrap();
        assert_eq!(line, b"next\n");
    });
}
