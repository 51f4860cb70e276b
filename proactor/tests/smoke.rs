//! A first pass through both front ends: the shortest path through each participant.
mod common;

use proactor::{op, submit, Proactor};
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[proactor::test]
fn nop_send_recv_sleep(p: &Proactor) {
    p.block_on(async {
        submit(op::Nop).await.unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (res, _) = submit(op::Send::new(a, b"ping".as_slice())).await;
        assert_eq!(res.unwrap(), 4);
        let (res, buf) = submit(op::Recv::new(b, Vec::with_capacity(16))).await;
        assert_eq!(res.unwrap(), 4);
        assert_eq!(buf, b"ping");
        proactor::time::sleep(Duration::from_millis(10)).await.unwrap();
    });
}

#[proactor::test]
fn handler_chain(p: &Proactor) {
    let (a, b) = UnixStream::pair().unwrap();
    let h = p.handle();
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let g = got.clone();
    p.start(op::Send::new(a, b"hi".as_slice()), move |(res, _)| {
        assert_eq!(res.unwrap(), 2);
        h.start(op::Recv::new(b, Vec::with_capacity(8)), move |(res, buf)| {
            assert_eq!(res.unwrap(), 2);
            g.borrow_mut().extend_from_slice(&buf);
        });
    });
    p.run().unwrap();
    assert_eq!(&*got.borrow(), b"hi");
}

#[proactor::test]
fn deadline_and_timeout(p: &Proactor) {
    let (_a, b) = UnixStream::pair().unwrap();
    let b = std::rc::Rc::new(b);
    p.block_on(async {
        let r = proactor::time::timeout(
            Duration::from_millis(20),
            submit(op::Recv::new(b.clone(), vec![0u8; 16])),
        )
        .await;
        assert!(r.is_err());
        let (res, buf) = submit(op::Recv::new(b.clone(), vec![0u8; 16]))
            .deadline(Duration::from_millis(10))
            .await;
        assert_eq!(proactor::op::raw_os_error(&res.unwrap_err()), Some(libc::ETIMEDOUT));
        assert_eq!(buf.capacity(), 16);
    });
    assert_eq!(p.in_flight().in_flight, 0);
}

#[test]
fn default_builder_works() {
    let p = Proactor::new().unwrap();
    p.block_on(async { submit(op::Nop).await.unwrap() });
}

// More operations with deadlines than the ring has entries, all started in one turn: every
// linked timeout must still fire at its deadline (not at once, not never). The ring is flushed in
// the middle of pushing op + linked-timeout pairs here; the driver once freed the pair's timespec
// in that flush (the allocator's reuse of the same block usually hid it, so this guards the path
// rather than proving the fix).
#[proactor::test(entries = 8)]
fn many_deadlines_on_a_small_ring(p: &Proactor) {
    let (_a, b) = UnixStream::pair().unwrap();
    let b = std::rc::Rc::new(b);
    let started = std::time::Instant::now();
    let results = p.block_on(async {
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let b = b.clone();
                proactor::spawn(async move {
                    let op = submit(op::Recv::new(b, vec![0u8; 8]));
                    let (res, _) = op.deadline(Duration::from_millis(300)).await;
                    res
                })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    });
    let elapsed = started.elapsed();
    assert_eq!(results.len(), 64);
    for r in results {
        assert_eq!(proactor::op::raw_os_error(&r.unwrap_err()), Some(libc::ETIMEDOUT));
    }
    assert!(elapsed >= Duration::from_millis(250), "deadlines fired early: {elapsed:?}");
}

// A deadline that passes is a timeout (`TimedOut`, `ETIMEDOUT`); a cancel of the same kind of
// operation is `ECANCELED`; both hand the buffer back; a result that came in time is kept.
#[proactor::test]
fn deadline_is_told_apart_from_cancel(p: &Proactor) {
    let (a, b) = UnixStream::pair().unwrap();
    let b = std::rc::Rc::new(b);
    p.block_on(async {
        let recv = || submit(op::Recv::new(b.clone(), Vec::with_capacity(16)));
        let (res, buf) = recv().deadline(Duration::from_millis(10)).await;
        let err = res.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert_eq!(proactor::op::raw_os_error(&err), Some(libc::ETIMEDOUT));
        assert_eq!(buf.capacity(), 16);
        // A deadline and a cancel token on one operation: the cancel comes first.
        let mut op = recv().deadline(Duration::from_secs(30));
        let token = op.cancel_token();
        let canceller = proactor::spawn(async move {
            proactor::time::sleep(Duration::from_millis(5)).await.unwrap();
            token.cancel();
        });
        let (res, buf) = op.await;
        let err = res.unwrap_err();
        assert_eq!(proactor::op::raw_os_error(&err), Some(libc::ECANCELED), "{err}");
        assert_ne!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(buf.capacity(), 16);
        canceller.await.unwrap();
        // Data in time: the real result.
        std::io::Write::write_all(&mut &a, b"ok").unwrap();
        let (res, buf) = recv().deadline(Duration::from_secs(5)).await;
        assert_eq!((res.unwrap(), &buf[..]), (2, &b"ok"[..]));
        // `time::timeout` around any future: `Elapsed`, which converts to `TimedOut`.
        let err: std::io::Error =
            proactor::time::timeout(Duration::from_millis(5), recv()).await.unwrap_err().into();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    });
}
