//! Tests: an incremental ring's buffers come back exactly when the kernel lets go of them, on
//! the kernel's commit paths where `IORING_CQE_F_BUF_MORE` and the bytes received do not tell.

use super::BufPool;
use crate::driver::DriverChoice;
use crate::net::UnixStream;
use crate::op::pooled::TestShape;
use crate::op::RecvPooled;
use std::time::Duration;

/// A proactor on io_uring with an incremental pool of two 4 KiB buffers, if the kernel has them.
fn incremental_pool(body: impl AsyncFnOnce(BufPool)) {
    let Ok(p) = crate::Proactor::builder().driver(DriverChoice::Uring).build() else { return };
    p.block_on(async {
        let pool = BufPool::builder().buffers(2).buffer_size(4096).incremental(true).build();
        let pool = pool.unwrap();
        if !pool.is_incremental() {
            eprintln!("skipped: the kernel has no incremental buffer rings");
            return;
        }
        body(pool).await
    });
}

const PLAIN: TestShape = TestShape { len: 4096, wait_all: false, worker: false };

async fn recv(b: &UnixStream, pool: &BufPool, shape: TestShape) -> Option<super::PooledBuf> {
    crate::submit(RecvPooled::new(b.as_raw_fd(), pool).shape(shape)).await.unwrap()
}

#[test]
fn a_buffer_the_kernel_keeps_without_buf_more_is_not_handed_back() {
    // A MSG_WAITALL receive that gets its bytes in two parts commits the first part on its
    // retry path, and its completion then carries no BUF_MORE (6.18) though the kernel keeps
    // the buffer in the ring. Trusting the flag gave the buffer back while the ring held it:
    // the kernel would fill it while it was lent again.
    incremental_pool(async |pool| {
        let (a, b) = UnixStream::pair().unwrap();
        let (res, _) = a.write_all(vec![1u8; 100]).await;
        res.unwrap();
        let writer = crate::spawn(async move {
            crate::time::sleep(Duration::from_millis(20)).await.unwrap();
            let (res, _) = a.write_all(vec![2u8; 250]).await;
            res.unwrap();
            a
        });
        let shape = TestShape { len: 300, wait_all: true, worker: false };
        let got = recv(&b, &pool, shape).await.expect("bytes");
        assert_eq!(got.len(), 300);
        assert!(got[..100].iter().all(|&x| x == 1) && got[100..].iter().all(|&x| x == 2));
        let returned = pool.inner().returned_count();
        drop(got);
        assert_eq!(pool.inner().returned_count(), returned, "handed back while the ring holds it");
        assert!(pool.inner().kernel_kept_count() <= 1);
        drop(writer.await);
    });
}

#[test]
fn a_receive_on_a_worker_thread_ends_its_buffer_with_bytes_unused() {
    // A receive punted to a worker thread (here IOSQE_ASYNC) commits the buffer's whole rest
    // when it picks it: the buffer leaves the ring after 100 of its 4,096 bytes. Counting the
    // bytes ("back when full") would never give it back; the kernel's entry says it is done.
    incremental_pool(async |pool| {
        let (a, b) = UnixStream::pair().unwrap();
        let (res, _) = a.write_all(vec![1u8; 100]).await;
        res.unwrap();
        let first = recv(&b, &pool, PLAIN).await.expect("bytes");
        assert_eq!(&first[..], &[1u8; 100][..]);
        let (res, _) = a.write_all(vec![2u8; 50]).await;
        res.unwrap();
        let worker = TestShape { worker: true, ..PLAIN };
        let second = recv(&b, &pool, worker).await.expect("bytes");
        // The same buffer, right after the first piece.
        assert_eq!(&second[..], &[2u8; 50][..]);
        let returned = pool.inner().returned_count();
        drop(first);
        assert_eq!(pool.inner().returned_count(), returned, "back before its last piece");
        drop(second);
        assert_eq!(pool.inner().returned_count(), returned + 1, "the finished buffer came back");
        // And the pool goes on: both buffers cycle through more receives.
        for round in 3..9u8 {
            let (res, _) = a.write_all(vec![round; 3000]).await;
            res.unwrap();
            let mut got = 0;
            while got < 3000 {
                let buf = recv(&b, &pool, PLAIN).await.expect("bytes");
                assert!(buf.iter().all(|&x| x == round), "round {round}: stale bytes");
                got += buf.len();
            }
        }
        assert_eq!(pool.available(), pool.capacity());
    });
}

#[test]
fn a_worker_receive_that_gets_no_bytes_gives_its_buffer_back() {
    // On a worker thread the buffer is committed before the receive: at end of stream the
    // completion names a buffer the kernel finished for nothing. It must come back.
    incremental_pool(async |pool| {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        let worker = TestShape { worker: true, ..PLAIN };
        assert!(recv(&b, &pool, worker).await.is_none(), "end of stream");
        assert_eq!(pool.available(), pool.capacity());
        // Both buffers are in the ring again: two pieces held at once, one per buffer (a
        // buffer left out would make the second receive find the ring dry).
        let (c, d) = UnixStream::pair().unwrap();
        let (res, _) = c.write_all(vec![7u8; 4096]).await;
        res.unwrap();
        let mut held = Vec::new();
        let mut got = 0;
        while got < 4096 {
            let buf = recv(&d, &pool, PLAIN).await.expect("bytes");
            got += buf.len();
            held.push(buf);
        }
        let (res, _) = c.write_all(vec![8u8; 100]).await;
        res.unwrap();
        let last = recv(&d, &pool, PLAIN).await.expect("bytes");
        assert_eq!(&last[..], &[8u8; 100][..]);
        assert!(held.iter().all(|b| b.iter().all(|&x| x == 7)));
    });
}
