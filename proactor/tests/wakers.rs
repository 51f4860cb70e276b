//! Who gets woken when an awaited operation completes: the task that polled it last, whether
//! that is the task that submitted it, another task it was handed to, or a combinator with a
//! waker of its own.

mod common;
mod core_util;

use core_util::pipe;
use proactor::Proactor;
use proactor::{op, spawn, submit, Op};
use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::Write;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

type PipeRead = Op<op::Read<Rc<std::os::fd::OwnedFd>, Vec<u8>>>;

/// Writes `data` into `w` from another thread after `delay`, so that a read on the pipe is
/// surely waiting in the kernel (or the epoll driver) when the bytes arrive.
fn write_later(w: std::os::fd::OwnedFd, delay: Duration, data: &'static [u8]) {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        std::fs::File::from(w).write_all(data).expect("write to the pipe");
    });
}

#[proactor::test]
fn an_operation_handed_to_another_task_wakes_that_task(p: &Proactor) {
    let (r, w) = pipe();
    let r = Rc::new(r);
    let out = p.block_on(async move {
        let shared: Rc<RefCell<Option<PipeRead>>> = Rc::new(RefCell::new(None));
        // Task A submits the read (one poll), hands the pending operation over and finishes.
        let handover = shared.clone();
        let a = spawn(async move {
            let mut read = submit(op::Read::new(r, Vec::with_capacity(16)));
            poll_fn(|cx| {
                assert!(Pin::new(&mut read).poll(cx).is_pending(), "the pipe is empty");
                Poll::Ready(())
            })
            .await;
            *handover.borrow_mut() = Some(read);
        });
        a.await.expect("task A");
        // New tasks take A's place in the task table before the read completes.
        let others: Vec<_> = (0..4).map(|i| spawn(async move { i })).collect();
        // Task B awaits the operation A started.
        let b = spawn(async move {
            let read = shared.borrow_mut().take().expect("handed over");
            read.await
        });
        write_later(w, Duration::from_millis(100), b"handed over");
        for t in others {
            t.await.expect("filler task");
        }
        proactor::time::timeout(Duration::from_secs(10), b).await
    });
    let (res, buf) = out.expect("task B was woken by the completion").expect("task B");
    assert_eq!(res.expect("read"), 11);
    assert_eq!(buf, b"handed over");
}

/// A waker that counts its wakes and passes them on.
struct Counting {
    wakes: AtomicUsize,
    inner: Waker,
}

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.inner.wake_by_ref();
    }
}

/// Polls `fut` to its end under a waker of its own, as a combinator that gives its children one
/// does, wrapping the task's; returns how often that waker was woken, with the output.
async fn under_a_counting_waker<F: Future + Unpin>(fut: &mut F) -> (usize, F::Output) {
    let mut counting: Option<Arc<Counting>> = None;
    let out = poll_fn(|cx| {
        let c = counting
            .get_or_insert_with(|| {
                Arc::new(Counting { wakes: AtomicUsize::new(0), inner: cx.waker().clone() })
            })
            .clone();
        let waker = Waker::from(c);
        Pin::new(&mut *fut).poll(&mut Context::from_waker(&waker))
    })
    .await;
    (counting.expect("polled").wakes.load(Ordering::SeqCst), out)
}

#[proactor::test]
fn an_operation_polled_with_a_combinators_waker_wakes_that_waker(p: &Proactor) {
    let (r, w) = pipe();
    let (wakes, res, buf) = p.block_on(async move {
        let mut read = submit(op::Read::new(r, Vec::with_capacity(16)));
        write_later(w, Duration::from_millis(100), b"combinator");
        let (wakes, (res, buf)) = under_a_counting_waker(&mut read).await;
        (wakes, res, buf)
    });
    assert_eq!(res.expect("read"), 10);
    assert_eq!(buf, b"combinator");
    assert_eq!(wakes, 1, "the completion woke the combinator's waker, once");
}

#[proactor::test]
fn an_operation_submitted_by_a_task_then_polled_with_a_combinators_waker_wakes_that_waker(
    p: &Proactor,
) {
    let (r, w) = pipe();
    let (wakes, res, buf) = p.block_on(async move {
        let mut read = submit(op::Read::new(r, Vec::with_capacity(16)));
        // Submitted from the task's own poll: awaited by the task, whose completion the loop
        // may take as it reaps it.
        poll_fn(|cx| {
            assert!(Pin::new(&mut read).poll(cx).is_pending(), "the pipe is empty");
            Poll::Ready(())
        })
        .await;
        // Then polled under a combinator's waker, which the completion must wake instead.
        write_later(w, Duration::from_millis(100), b"rewaited");
        let (wakes, (res, buf)) = under_a_counting_waker(&mut read).await;
        (wakes, res, buf)
    });
    assert_eq!(res.expect("read"), 8);
    assert_eq!(buf, b"rewaited");
    assert_eq!(wakes, 1, "the completion woke the combinator's waker, once");
}

#[proactor::test]
fn many_operations_of_one_task_complete_with_one_wake_each_turn(p: &Proactor) {
    // 300 reads on 300 pipes, all awaited by one task; the data arrives in one burst.
    let pipes: Vec<_> = (0..300).map(|_| pipe()).collect();
    let (readers, writers): (Vec<_>, Vec<_>) = pipes.into_iter().unzip();
    let got = p.block_on(async move {
        let reads: Vec<_> =
            readers.into_iter().map(|r| submit(op::Read::new(r, Vec::with_capacity(8)))).collect();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            for w in writers {
                std::fs::File::from(w).write_all(b"12345").expect("write");
            }
        });
        let mut total = 0;
        for read in reads {
            let (res, buf) = read.await;
            assert_eq!(buf, b"12345");
            total += res.expect("read");
        }
        total
    });
    assert_eq!(got, 300 * 5);
}

/// Ready once another thread has set its flag; until then it leaves its waker where that thread
/// can take it.
struct WokenFromAfar(Arc<(std::sync::Mutex<Option<Waker>>, std::sync::atomic::AtomicBool)>);

impl Future for WokenFromAfar {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let (waker, done) = &*self.0;
        *waker.lock().unwrap() = Some(cx.waker().clone());
        if done.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A future that another thread completes after `delay`: it sets the flag, then wakes the
/// waker the future left (waiting for one if the future has not been polled yet).
fn woken_from_afar(delay: Duration) -> WokenFromAfar {
    let shared =
        Arc::new((std::sync::Mutex::new(None::<Waker>), std::sync::atomic::AtomicBool::new(false)));
    let remote = shared.clone();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        remote.1.store(true, Ordering::SeqCst);
        loop {
            if let Some(w) = remote.0.lock().unwrap().take() {
                w.wake();
                return;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    });
    WokenFromAfar(shared)
}

/// Awaits `fut`, unless the timer fires first. The timer is polled first, so a future that is
/// only ever polled because the timer woke the loop (its own wake was lost) counts as late.
async fn before_timer<F: Future + Unpin>(mut fut: F, limit: Duration) -> Result<F::Output, ()> {
    let mut timer = proactor::time::sleep(limit);
    poll_fn(move |cx| {
        if Pin::new(&mut timer).poll(cx).is_ready() {
            return Poll::Ready(Err(()));
        }
        Pin::new(&mut fut).poll(cx).map(Ok)
    })
    .await
}

#[proactor::test]
fn a_task_woken_from_another_thread_runs_while_the_loop_waits(p: &Proactor) {
    // The loop has nothing else to do, so it is blocked in the driver (or about to be) when the
    // wake arrives; a lost wake would leave it there until the timer. The delays vary so that
    // wakes land before, during and after the loop parks.
    for i in 0..200u64 {
        let task = p.spawn(woken_from_afar(Duration::from_micros(i % 7 * 150)));
        let res = p.block_on(before_timer(task, Duration::from_secs(5)));
        assert!(matches!(res, Ok(Ok(()))), "round {i}: the task's wake was lost");
    }
}

#[proactor::test]
fn the_block_on_future_woken_from_another_thread_completes(p: &Proactor) {
    for i in 0..200u64 {
        let fut = woken_from_afar(Duration::from_micros(i % 7 * 150));
        let res = p.block_on(before_timer(fut, Duration::from_secs(5)));
        assert!(res.is_ok(), "round {i}: the main future's wake was lost");
    }
}

/// One side of a ping-pong between two tasks on the loop's thread: whose turn it is, and the
/// waker of the side that waits.
#[derive(Default)]
struct Court {
    turn: std::cell::Cell<u32>,
    waiting: RefCell<Option<Waker>>,
}

/// Plays `rounds` strokes as player `me` (0 or 1): waits for its turn, passes it, wakes the other.
async fn play(court: Rc<Court>, me: u32, rounds: u32) -> u32 {
    let mut strokes = 0;
    while strokes < rounds {
        poll_fn(|cx| {
            if court.turn.get() % 2 == me {
                Poll::Ready(())
            } else {
                *court.waiting.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        court.turn.set(court.turn.get() + 1);
        strokes += 1;
        if let Some(w) = court.waiting.borrow_mut().take() {
            w.wake();
        }
    }
    strokes
}

#[proactor::test]
fn tasks_waking_each_other_on_the_loop_thread_take_turns(p: &Proactor) {
    // Each wake comes from a task the loop is polling: the waker's own-thread path.
    let court = Rc::new(Court::default());
    let a = p.spawn(play(court.clone(), 0, 1000));
    let b = p.spawn(play(court.clone(), 1, 1000));
    let res = p.block_on(before_timer(
        Box::pin(async move { (a.await.unwrap(), b.await.unwrap()) }),
        Duration::from_secs(5),
    ));
    assert_eq!(res, Ok((1000, 1000)), "a wake between tasks was lost");
    assert_eq!(court.turn.get(), 2000);
}

/// Polls `fut` once under `waker`.
fn poll_once<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

#[proactor::test]
fn a_combinators_waker_is_let_go_when_its_operation_completes_or_is_dropped(p: &Proactor) {
    let counting = Arc::new(Counting { wakes: AtomicUsize::new(0), inner: Waker::noop().clone() });
    let waker = Waker::from(counting.clone());
    let held = || Arc::strong_count(&counting) - 2;
    p.block_on(async {
        // Dropped in flight: the operation is parked until its completion, its waker let go.
        let (r, _w) = pipe();
        let mut read = submit(op::Read::new(r, Vec::with_capacity(16)));
        assert!(poll_once(&mut read, &waker).is_pending(), "the pipe is empty");
        assert_eq!(held(), 1, "the operation keeps a clone of the waker");
        drop(read);
        assert_eq!(held(), 0, "let go with the dropped operation");
        // The next operation (which may take the freed key) is the task's, and completes.
        submit(op::Nop).await.expect("nop");
        // Completed: woken once, let go once its output is taken.
        let mut nop = submit(op::Nop);
        assert!(poll_once(&mut nop, &waker).is_pending());
        while counting.wakes.load(Ordering::SeqCst) == 0 {
            proactor::time::sleep(Duration::from_millis(1)).await.expect("sleep");
        }
        assert_eq!(held(), 0, "woken, and let go with the wake");
        assert!(poll_once(&mut nop, &waker).is_ready());
    });
    assert_eq!(counting.wakes.load(Ordering::SeqCst), 1);

    // Queued behind an in-flight cap, then dropped: freed at once, its waker with it.
    let q = Proactor::builder()
        .driver(proactor::DriverChoice::from(p.driver_kind()))
        .max_in_flight(1)
        .build()
        .expect("proactor");
    q.block_on(async {
        let (r, _w) = pipe();
        let mut first = submit(op::Read::new(r, Vec::with_capacity(16)));
        assert!(poll_once(&mut first, &waker).is_pending());
        let mut queued = submit(op::Nop);
        assert!(poll_once(&mut queued, &waker).is_pending(), "queued behind the read");
        assert_eq!(held(), 2);
        drop(queued);
        assert_eq!(held(), 1, "the queued operation's waker is let go");
        drop(first);
        assert_eq!(held(), 0);
        submit(op::Nop).await.expect("nop");
    });
    drop(q);
    assert_eq!(held(), 0);
}
