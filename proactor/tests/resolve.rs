//! `TcpStream::connect` with a name resolves on the offload pool: the loop goes on with its
//! other tasks while the look-up waits (both drivers).
mod common;

use proactor::net::{TcpListener, TcpStream};
use proactor::offload::BlockingPool;
use proactor::task::{JoinError, JoinHandle};
use proactor::Proactor;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const HOLD: Duration = Duration::from_millis(300);

/// Both tests fill the one global offload pool: run together, one test's busy tasks end while
/// the other's look-up waits, and that look-up is served early. One at a time.
static POOL: Mutex<()> = Mutex::new(());

fn pool_to_ourselves() -> MutexGuard<'static, ()> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Busies every thread of `pool` for [`HOLD`] (a look-up then queues behind them, so it is
/// slow) and waits, at most 5 s, until they all are; the tasks to await at the end.
async fn fill_pool(pool: &BlockingPool) -> Vec<JoinHandle<Result<(), JoinError>>> {
    let busy: Vec<_> = (0..pool.threads())
        .map(|_| proactor::spawn(proactor::offload::offload(|| std::thread::sleep(HOLD))))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.busy() < pool.threads() && Instant::now() < deadline {
        proactor::time::sleep(Duration::from_millis(1)).await.unwrap();
    }
    busy
}

/// A task that counts 5 ms ticks of the loop: the count says whether the loop kept running.
fn ticker() -> (Rc<Cell<u32>>, JoinHandle<()>) {
    let ticks = Rc::new(Cell::new(0u32));
    let t = ticks.clone();
    let ticker = proactor::spawn(async move {
        loop {
            proactor::time::sleep(Duration::from_millis(5)).await.unwrap();
            t.set(t.get() + 1);
        }
    });
    (ticks, ticker)
}

#[proactor::test]
fn connect_by_name_does_not_block_the_loop(p: &Proactor) {
    let _pool = pool_to_ourselves();
    p.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Every pool thread busy for HOLD: a look-up must queue behind them, so it is slow.
        let pool = BlockingPool::global();
        let busy = fill_pool(pool).await;
        assert_eq!(pool.busy(), pool.threads(), "the pool's threads are all busy");
        let (ticks, ticker) = ticker();
        let accept = proactor::spawn(async move { listener.accept().await.map(|_| ()) });
        let started = Instant::now();
        let stream = TcpStream::connect(format!("localhost:{port}")).await.unwrap();
        let took = started.elapsed();
        assert!(stream.peer_addr().unwrap().ip().is_loopback());
        accept.await.unwrap().unwrap();
        // The look-up went through the pool (it waited for a free thread) ...
        assert!(took >= HOLD / 2, "the name was resolved on the loop's thread ({took:?})");
        // ... and the loop kept running the ticker meanwhile.
        assert!(ticks.get() >= 10, "the loop stalled during the look-up: {} ticks", ticks.get());
        ticker.abort();
        for b in busy {
            b.await.unwrap().unwrap();
        }
        // A literal address and the other forms connect without the pool.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = proactor::spawn(async move {
            for _ in 0..4 {
                listener.accept().await.unwrap();
            }
        });
        TcpStream::connect(addr).await.unwrap();
        TcpStream::connect(&addr).await.unwrap();
        TcpStream::connect(addr.to_string()).await.unwrap();
        TcpStream::connect(("127.0.0.1", addr.port())).await.unwrap();
        accepting.await.unwrap();
        // A name that does not resolve is an error, not a hang or a panic.
        let err = TcpStream::connect("no-such-host.invalid:80").await.unwrap_err();
        assert!(!err.to_string().is_empty());
    });
}

#[proactor::test]
fn lookup_host_then_bind_keeps_the_loop_running(p: &Proactor) {
    let _pool = pool_to_ourselves();
    p.block_on(async {
        // As above: with the pool's threads busy, the look-up waits and the loop goes on.
        let pool = BlockingPool::global();
        let busy = fill_pool(pool).await;
        let (ticks, ticker) = ticker();
        let started = Instant::now();
        let addrs = proactor::net::lookup_host("localhost:0").await.unwrap();
        let took = started.elapsed();
        assert!(took >= HOLD / 2, "the name was resolved on the loop's thread ({took:?})");
        assert!(ticks.get() >= 10, "the loop stalled during the look-up: {} ticks", ticks.get());
        ticker.abort();
        let listener = TcpListener::bind(&addrs[..]).unwrap();
        assert!(listener.local_addr().unwrap().ip().is_loopback());
        for b in busy {
            b.await.unwrap().unwrap();
        }
        // Literal forms need no look-up; nothing is an error.
        let at_once = Instant::now();
        let lit = proactor::net::lookup_host(("127.0.0.1", 80)).await.unwrap();
        assert_eq!(lit, vec!["127.0.0.1:80".parse().unwrap()]);
        assert!(at_once.elapsed() < HOLD / 2);
        assert!(proactor::net::lookup_host("no-such-host.invalid:80").await.is_err());
    });
}
