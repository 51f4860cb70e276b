//! The composed I/O methods (`read_exact`, `read_to_end`, `write_all`, `copy_to`, `shutdown`) on
//! every stream type — TCP, Unix, split halves, files — both as inherent methods and through the
//! extension traits, on both drivers, with transfers that arrive and leave in pieces.
mod common;

use proactor::io::{AsyncReadOwned, AsyncReadOwnedExt, AsyncWriteOwned, AsyncWriteOwnedExt};
use proactor::net::{TcpListener, TcpStream, UnixStream};
use proactor::op::raw_os_error;
use proactor::Proactor;
use std::io::ErrorKind;
use std::net::Shutdown;
use std::time::Duration;

/// `len` bytes of a pattern that does not repeat every 256 bytes.
fn payload(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

/// A connected TCP pair on the loopback.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// Small socket buffers, so a large write takes many partial sends (64 KiB: TCP with less
/// stalls on the loopback's delayed acknowledgements).
fn shrink(fd: &impl std::os::fd::AsFd) {
    let s = socket2::SockRef::from(fd);
    s.set_send_buffer_size(64 << 10).unwrap();
    s.set_recv_buffer_size(64 << 10).unwrap();
}

const LEN: usize = 2 << 20;

/// The inherent methods on a connected pair `(a, b)`: `a` sends a 4-byte head, pauses, then 2 MiB
/// through small socket buffers, then shuts its write side; `b` reads 10 bytes exactly (which
/// takes more than one read: the head arrives alone), the rest to end of stream, then sees 0.
macro_rules! inherent_round_trip {
    ($a:expr, $b:expr) => {{
        let (a, b) = ($a, $b);
        shrink(&a);
        shrink(&b);
        let data = payload(LEN);
        let sent = data.clone();
        let writer = proactor::spawn(async move {
            let (res, head) = a.write_all(b"head".as_slice()).await;
            res.unwrap();
            assert_eq!(head, b"head");
            proactor::time::sleep(Duration::from_millis(20)).await.unwrap();
            let (res, back) = a.write_all(sent).await;
            res.unwrap();
            assert_eq!(back.len(), LEN, "the buffer comes back whole");
            a.shutdown(Shutdown::Write).await.unwrap();
            a
        });
        let (res, first) = b.read_exact(Vec::with_capacity(10)).await;
        res.unwrap();
        assert_eq!(&first[..4], b"head");
        assert_eq!(&first[4..], &data[..6]);
        // Starts with something in it: `read_to_end` appends after it, growing from 16 bytes.
        let mut rest = Vec::with_capacity(16);
        rest.extend_from_slice(b"prefix");
        let (res, rest) = b.read_to_end(rest).await;
        assert_eq!(res.unwrap(), LEN - 6);
        assert_eq!(&rest[..6], b"prefix");
        assert!(rest[6..] == data[6..], "every byte, in order");
        let (res, _) = b.read(Vec::with_capacity(8)).await;
        assert_eq!(res.unwrap(), 0, "end of stream stays end of stream");
        let (res, _) = b.read_exact(Vec::with_capacity(1)).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        writer.await.unwrap()
    }};
}

#[proactor::test]
fn tcp_inherent_methods(p: &Proactor) {
    p.block_on(async {
        let (a, b) = tcp_pair().await;
        inherent_round_trip!(a, b);
    });
}

#[proactor::test]
fn unix_inherent_methods(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        inherent_round_trip!(a, b);
    });
}

#[proactor::test]
fn split_halves_inherent_methods(p: &Proactor) {
    p.block_on(async {
        let (a, b) = tcp_pair().await;
        let ((_ar, aw), (br, _bw)) = (a.into_split(), b.into_split());
        inherent_round_trip!(aw, br);
        let (a, b) = UnixStream::pair().unwrap();
        let ((_ar, aw), (br, _bw)) = (a.into_split(), b.into_split());
        inherent_round_trip!(aw, br);
    });
}

/// The same through the traits only, as generic code sees a stream: `write_all`, then
/// `shutdown`, on `w`; `read_exact`, then `read_to_end`, on `r`.
async fn via_traits<W, R>(mut w: W, mut r: R)
where
    W: AsyncWriteOwned + 'static,
    R: AsyncReadOwned,
{
    let data = payload(LEN);
    let sent = data.clone();
    let writer = proactor::spawn(async move {
        let (res, _) = AsyncWriteOwnedExt::write_all(&mut w, b"hd".as_slice()).await;
        res.unwrap();
        proactor::time::sleep(Duration::from_millis(20)).await.unwrap();
        let (res, back) = AsyncWriteOwnedExt::write_all(&mut w, sent).await;
        res.unwrap();
        assert_eq!(back.len(), LEN);
        AsyncWriteOwned::shutdown(&mut w).await.unwrap();
        w
    });
    let (res, first) = AsyncReadOwnedExt::read_exact(&mut r, Vec::with_capacity(3)).await;
    res.unwrap();
    assert_eq!(first, [b'h', b'd', data[0]]);
    let (res, rest) = AsyncReadOwnedExt::read_to_end(&mut r, Vec::new()).await;
    assert_eq!(res.unwrap(), LEN - 1);
    assert!(rest == data[1..]);
    drop(writer.await.unwrap());
}

#[proactor::test]
fn trait_methods_on_every_stream(p: &Proactor) {
    p.block_on(async {
        let (a, b) = tcp_pair().await;
        shrink(&a);
        via_traits(a, b).await;
        let (a, b) = UnixStream::pair().unwrap();
        shrink(&a);
        via_traits(a, b).await;
        let (a, b) = tcp_pair().await;
        let ((_ar, aw), (br, _bw)) = (a.into_split(), b.into_split());
        via_traits(aw, br).await;
        // Through shared references, as a stream shared by two tasks is used (leaked: the
        // writer task needs `'static`).
        let (a, b) = UnixStream::pair().unwrap();
        let a: &'static UnixStream = Box::leak(Box::new(a));
        via_traits(a, &b).await;
    });
}

#[proactor::test]
fn copy_to_between_sockets_and_files(p: &Proactor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copied");
    p.block_on(async {
        // Socket → file: a relay task copies what `a` sends, through `b`, into a file.
        let (a, b) = UnixStream::pair().unwrap();
        shrink(&a);
        let data = payload(LEN + 123);
        let sent = data.clone();
        let writer = proactor::spawn(async move {
            let (res, _) = a.write_all(sent).await;
            res.unwrap();
            a.shutdown(Shutdown::Write).await.unwrap();
        });
        let out = proactor::fs::File::create(&path).await.unwrap();
        let n = b.copy_to(&mut &out).await.unwrap();
        assert_eq!(n, data.len() as u64);
        writer.await.unwrap();
        out.close().await.unwrap();
        // File → TCP socket, through split halves on the far side: the file comes back whole.
        let file = proactor::fs::File::open(&path).await.unwrap();
        let (c, d) = tcp_pair().await;
        let (dr, _dw) = d.into_split();
        let reader = proactor::spawn(async move {
            let (res, got) = dr.read_to_end(Vec::new()).await;
            (res.unwrap(), got)
        });
        let mut c = c;
        let n = file.copy_to(&mut c).await.unwrap();
        assert_eq!(n, data.len() as u64);
        AsyncWriteOwned::shutdown(&mut c).await.unwrap();
        let (m, got) = reader.await.unwrap();
        assert_eq!(m, data.len());
        assert!(got == data);
        // The extension trait's `copy_to`, from a file position other than the start.
        let file = proactor::fs::File::open(&path).await.unwrap();
        let (res, skip) = file.read_exact(Vec::with_capacity(1000)).await;
        res.unwrap();
        assert_eq!(skip, data[..1000]);
        let (e, f) = UnixStream::pair().unwrap();
        let reader = proactor::spawn(async move { f.read_to_end(Vec::new()).await });
        let mut reading = &file;
        let n = AsyncReadOwnedExt::copy_to(&mut reading, &mut &e).await.unwrap();
        assert_eq!(n, (data.len() - 1000) as u64);
        drop(e);
        let (res, got) = reader.await.unwrap();
        assert_eq!(res.unwrap(), data.len() - 1000);
        assert!(got == data[1000..]);
    });
}

#[proactor::test]
fn file_methods_at_the_position(p: &Proactor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    p.block_on(async {
        let f = proactor::fs::File::create(&path).await.unwrap();
        let data = payload(300_000);
        let (res, back) = f.write_all(data.clone()).await;
        res.unwrap();
        assert_eq!(back, data);
        let (res, _) = f.write_all(b"tail".as_slice()).await;
        res.unwrap();
        // A file has nothing to shut down: the trait's default says so.
        let mut w = &f;
        AsyncWriteOwned::shutdown(&mut w).await.unwrap();
        f.close().await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 300_004);

        let f = proactor::fs::File::open(&path).await.unwrap();
        let (res, head) = f.read_exact(Vec::with_capacity(7)).await;
        res.unwrap();
        assert_eq!(head, data[..7]);
        // From 16 bytes of room, the buffer grows over many reads.
        let (res, rest) = f.read_to_end(Vec::with_capacity(16)).await;
        assert_eq!(res.unwrap(), 300_004 - 7);
        assert!(rest[..300_000 - 7] == data[7..]);
        assert_eq!(&rest[300_000 - 7..], b"tail");
        let (res, _) = f.read_to_end(Vec::new()).await;
        assert_eq!(res.unwrap(), 0, "at end of file");
        // Past the end: UnexpectedEof, and the buffer holds nothing new.
        let (res, buf) = f.read_exact(Vec::with_capacity(5)).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert!(buf.is_empty());
        // A short file: read_exact keeps what it got.
        std::fs::write(&path, b"abc").unwrap();
        let f = proactor::fs::File::open(&path).await.unwrap();
        let (res, buf) = f.read_exact(Vec::with_capacity(10)).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert_eq!(buf, b"abc");
    });
}

#[proactor::test]
fn write_all_to_a_closed_peer_returns_the_buffer(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let (res, buf) = a.write_all(payload(100_000)).await;
        let err = res.unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::EPIPE), "{err}");
        assert_eq!(buf.len(), 100_000, "the buffer comes back on error");
        // After our own shutdown, the write side is closed too.
        let (c, d) = tcp_pair().await;
        c.shutdown(Shutdown::Write).await.unwrap();
        let (res, _) = d.read_to_end(Vec::new()).await;
        assert_eq!(res.unwrap(), 0);
        let (res, _) = c.write_all(b"late".as_slice()).await;
        assert_eq!(raw_os_error(&res.unwrap_err()), Some(libc::EPIPE));
    });
}
