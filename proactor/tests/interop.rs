//! The ecosystem's combinators and channels on proactor tasks (both drivers): `futures`'
//! `select!`/`join!`, `tokio::sync` (mpsc, oneshot, Mutex, Notify, watch) and `async-channel`,
//! including wake-ups from other OS threads. Proactor has no channels of its own: these serve.
mod common;

use futures::FutureExt;
use proactor::net::UnixStream;
use proactor::Proactor;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

#[proactor::test]
fn futures_select_and_join(p: &Proactor) {
    p.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        // select!: the timer wins against a read with nothing to read; the read is dropped
        // (cancelled, its buffer parked until the kernel lets go).
        // (In a block: the losing read must be dropped, not merely left unpolled in scope, or
        // it stays in flight and takes the next bytes.)
        let winner = {
            let read = b.read(Vec::with_capacity(8)).fuse();
            let timer = proactor::time::sleep(Duration::from_millis(10)).fuse();
            futures::pin_mut!(read, timer);
            futures::select! {
                _ = read => "read",
                _ = timer => "timer",
            }
        };
        assert_eq!(winner, "timer");
        // join!: a write and a read complete together.
        let (w, (r, buf)) =
            futures::join!(a.write_all(b"both".as_slice()), b.read(Vec::with_capacity(8)));
        w.0.unwrap();
        assert_eq!((r.unwrap(), &buf[..]), (4, &b"both"[..]));
        // select! on a read that has data: the read wins.
        let (res, _) = a.write(b"x".as_slice()).await;
        res.unwrap();
        let got = futures::select! {
            r = b.read(Vec::with_capacity(8)).fuse() => r.0.unwrap(),
            _ = proactor::time::sleep(Duration::from_secs(5)).fuse() => 0,
        };
        assert_eq!(got, 1);
    });
}

#[proactor::test]
fn tokio_sync_on_proactor_tasks(p: &Proactor) {
    p.block_on(async {
        // oneshot and mpsc between local tasks.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = proactor::spawn(async move {
            proactor::time::sleep(Duration::from_millis(5)).await.unwrap();
            tx.send(42).unwrap();
        });
        assert_eq!(rx.await.unwrap(), 42);
        sender.await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let producer = proactor::spawn(async move {
            for i in 0..100 {
                tx.send(i).await.unwrap();
            }
        });
        let mut got = Vec::new();
        while let Some(i) = rx.recv().await {
            got.push(i);
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        producer.await.unwrap();
        // Mutex: held across an await by one task while another waits for it.
        let m = Rc::new(tokio::sync::Mutex::new(0));
        let m2 = m.clone();
        let guard = m.lock().await;
        let waiter = proactor::spawn(async move {
            *m2.lock().await += 1;
        });
        proactor::time::sleep(Duration::from_millis(5)).await.unwrap();
        assert!(!waiter.is_finished(), "the lock is still held");
        drop(guard);
        waiter.await.unwrap();
        assert_eq!(*m.lock().await, 1);
        // Notify and watch.
        let n = Rc::new(tokio::sync::Notify::new());
        let n2 = n.clone();
        let notified = proactor::spawn(async move { n2.notified().await });
        proactor::task::yield_now().await;
        n.notify_one();
        notified.await.unwrap();
        let (wtx, mut wrx) = tokio::sync::watch::channel(0);
        let watcher = proactor::spawn(async move {
            while *wrx.borrow_and_update() < 3 {
                wrx.changed().await.unwrap();
            }
        });
        for v in 1..=3 {
            proactor::time::sleep(Duration::from_millis(1)).await.unwrap();
            wtx.send(v).unwrap();
        }
        watcher.await.unwrap();
    });
}

const THREADS: u64 = 8;
const PER_THREAD: u64 = 10_000;

#[proactor::test]
fn tokio_mpsc_from_8_threads_exactly_once(p: &Proactor) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(64);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    tx.blocking_send(t * PER_THREAD + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let seen = p.block_on(async move {
        // Received in a spawned task, so the wakes from the threads reach a task, not only the
        // block_on future.
        let receiver = proactor::spawn(async move {
            let mut seen = HashSet::new();
            let mut last = [None::<u64>; THREADS as usize];
            while let Some(v) = rx.recv().await {
                assert!(seen.insert(v), "{v} received twice");
                let t = (v / PER_THREAD) as usize;
                assert!(last[t].is_none_or(|l| l < v), "a thread's messages came out of order");
                last[t] = Some(v);
            }
            seen
        });
        receiver.await.unwrap()
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(seen.len() as u64, THREADS * PER_THREAD, "every message exactly once");
}

#[proactor::test]
fn async_channel_across_threads_and_tasks(p: &Proactor) {
    let (tx, rx) = async_channel::bounded::<u64>(16);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    tx.send_blocking(t * 1000 + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let total = p.block_on(async move {
        // Two consumer tasks share the receiver (MPMC).
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                proactor::spawn(async move {
                    let mut got = Vec::new();
                    while let Ok(v) = rx.recv().await {
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        for c in consumers {
            all.extend(c.await.unwrap());
        }
        all.sort_unstable();
        all
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(total, (0..4000).collect::<Vec<_>>());
}
