//! Tasks and timers on both drivers: `JoinHandle::abort` (a task with 1,000 reads in flight:
//! every buffer dropped once, after its operation completed, no descriptor leaked),
//! `JoinHandle::detach`, `yield_now`, `sleep_until`, `interval` and its missed-tick behaviours.
mod common;

use common::{CountingBuf, DropLedger};
use proactor::net::UnixStream;
use proactor::time::{self, MissedTickBehavior};
use proactor::JoinError;
use proactor::Proactor;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

const READS: usize = 1000;

/// What descriptor `fd` of this process names (`socket:[inode]` for a socket).
fn fd_target(fd: i32) -> String {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    link.to_string_lossy().into_owned()
}

/// The targets of every open descriptor of this process. Tests run in parallel in one process,
/// so a leak is looked for by the identity of our own sockets, not by a count of descriptors.
fn open_targets() -> std::collections::HashSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect()
}

#[proactor::test]
fn abort_a_task_with_1000_reads_in_flight(p: &Proactor) {
    let drops = DropLedger::new(READS);
    let mut ours = Vec::new();
    p.block_on(async {
        let pairs: Vec<(UnixStream, UnixStream)> =
            (0..READS).map(|_| UnixStream::pair().unwrap()).collect();
        ours = pairs.iter().map(|(r, _)| fd_target(r.as_raw_fd())).collect();
        assert!(ours.iter().all(|t| t.starts_with("socket:")));
        let (readers, writers): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
        let started = Rc::new(Cell::new(false));
        let (d, s) = (drops.clone(), started.clone());
        // One task, 1,000 reads in flight on 1,000 sockets; the sockets move into it, so only
        // the operations keep them open once the task is gone.
        let task = proactor::spawn(async move {
            let reads = readers.iter().enumerate().map(|(id, r)| {
                let buf = CountingBuf::new(&d, id, 64);
                r.read(buf)
            });
            let all = futures::future::join_all(reads);
            s.set(true);
            all.await
        });
        while proactor::Handle::current().in_flight().in_flight < READS {
            time::sleep(Duration::from_millis(1)).await.unwrap();
        }
        assert!(started.get());
        assert_eq!(drops.total(), 0, "no buffer dropped while its read is in flight");
        task.abort();
        assert!(matches!(task.await, Err(JoinError::Cancelled)));
        // The cancellations complete in the loop's next turns; then every buffer is freed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while proactor::Handle::current().in_flight().in_flight > 0 {
            assert!(Instant::now() < deadline, "cancelled reads did not complete");
            time::sleep(Duration::from_millis(1)).await.unwrap();
        }
        // Give a stray late completion a chance to show up as a second drop.
        time::sleep(Duration::from_millis(20)).await.unwrap();
        // Every buffer was dropped, none twice.
        drops.assert_each_dropped_once();
        // The peers still work: nothing written reaches a cancelled read.
        let (res, _) = writers[0].write(b"late".as_slice()).await;
        assert!(res.is_err(), "the reader socket was closed with the task");
        drop(writers);
    });
    let open = open_targets();
    let leaked = ours.iter().filter(|t| open.contains(*t)).count();
    assert_eq!(leaked, 0, "no descriptor leaked: {leaked} of the reader sockets are still open");
}

#[proactor::test]
fn abort_before_first_poll_and_after_finish(p: &Proactor) {
    p.block_on(async {
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        let task = proactor::spawn(async move { r.set(true) });
        task.abort();
        assert_eq!(task.await.unwrap_err(), JoinError::Cancelled);
        assert!(!ran.get(), "an aborted task never starts");

        let done = proactor::spawn(async { 7 });
        proactor::task::yield_now().await;
        assert!(done.is_finished());
        done.abort();
        assert_eq!(done.await.unwrap(), 7, "abort after the finish changes nothing");

        // A task aborting itself stops at its next await point.
        let slot: Rc<RefCell<Option<proactor::JoinHandle<()>>>> = Rc::default();
        let (s, steps) = (slot.clone(), Rc::new(Cell::new(0)));
        let st = steps.clone();
        let me = proactor::spawn(async move {
            proactor::task::yield_now().await;
            st.set(1);
            if let Some(h) = s.borrow().as_ref() {
                h.abort();
            }
            proactor::task::yield_now().await;
            st.set(2);
        });
        *slot.borrow_mut() = Some(me);
        for _ in 0..5 {
            proactor::task::yield_now().await;
        }
        assert_eq!(steps.get(), 1);
        let me = slot.borrow_mut().take().unwrap();
        assert_eq!(me.await.unwrap_err(), JoinError::Cancelled);
    });
}

#[proactor::test]
fn detached_task_runs_to_completion(p: &Proactor) {
    p.block_on(async {
        let done = Rc::new(Cell::new(false));
        let d = done.clone();
        proactor::spawn(async move {
            time::sleep(Duration::from_millis(5)).await.unwrap();
            d.set(true);
        })
        .detach();
        time::sleep(Duration::from_millis(50)).await.unwrap();
        assert!(done.get());
    });
}

#[proactor::test]
fn yield_now_interleaves_tasks(p: &Proactor) {
    p.block_on(async {
        let log = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = (0..2)
            .map(|t| {
                let log = log.clone();
                proactor::spawn(async move {
                    for i in 0..3 {
                        log.borrow_mut().push((t, i));
                        proactor::task::yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let expect = vec![(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)];
        assert_eq!(*log.borrow(), expect);
    });
}

#[proactor::test]
fn sleep_until_a_deadline(p: &Proactor) {
    p.block_on(async {
        let start = Instant::now();
        time::sleep_until(start + Duration::from_millis(30)).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30));
        // A deadline in the past completes at once.
        let t = Instant::now();
        time::sleep_until(start).await.unwrap();
        assert!(t.elapsed() < Duration::from_millis(100));
    });
}

/// Takes `n` ticks, returning each scheduled instant and when it completed.
async fn ticks(iv: &mut time::Interval, n: usize) -> Vec<(Instant, Instant)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let due = iv.tick().await;
        out.push((due, Instant::now()));
    }
    out
}

/// Long enough that a loaded machine (2 cores, several builds) keeps the timing assertions.
const PERIOD: Duration = Duration::from_millis(50);

#[proactor::test]
fn interval_ticks_on_schedule_and_bursts_after_a_stall(p: &Proactor) {
    p.block_on(async {
        let start = Instant::now();
        let mut iv = time::interval(PERIOD);
        assert_eq!(iv.missed_tick_behavior(), MissedTickBehavior::Burst);
        let first = ticks(&mut iv, 3).await;
        assert!(first[0].1 - start < PERIOD, "the first tick is at once");
        for (k, (due, at)) in first.iter().enumerate() {
            assert_eq!(*due, first[0].0 + PERIOD * k as u32, "scheduled instants");
            assert!(at >= due, "a tick never completes early");
        }
        // Stall for 3.5 periods: the three missed ticks complete at once, then the schedule.
        std::thread::sleep(PERIOD * 7 / 2);
        let t = Instant::now();
        let late = ticks(&mut iv, 4).await;
        assert!(late[2].1 - t < PERIOD, "missed ticks come in a burst");
        for (k, (due, _)) in late.iter().enumerate() {
            assert_eq!(*due, first[0].0 + PERIOD * (3 + k as u32), "the schedule is kept");
        }
    });
}

#[proactor::test]
fn interval_delay_and_skip_after_a_stall(p: &Proactor) {
    p.block_on(async {
        let mut iv = time::interval(PERIOD);
        iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (t0, _) = ticks(&mut iv, 1).await[0];
        std::thread::sleep(PERIOD * 5 / 2);
        let late = ticks(&mut iv, 2).await;
        assert_eq!(late[0].0, t0 + PERIOD, "the late tick is the one that was due");
        assert!(late[1].0 >= t0 + PERIOD * 7 / 2, "then a full period from when it was taken");

        let mut iv = time::interval(PERIOD);
        iv.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let (t0, _) = ticks(&mut iv, 1).await[0];
        std::thread::sleep(PERIOD * 5 / 2);
        let late = ticks(&mut iv, 2).await;
        assert_eq!(late[0].0, t0 + PERIOD);
        assert_eq!(late[1].0, t0 + PERIOD * 3, "ticks 2 was skipped; the grid is kept");
        assert!(late[1].1 >= late[1].0);
    });
}

#[proactor::test]
fn interval_tick_dropped_loses_nothing(p: &Proactor) {
    p.block_on(async {
        let mut iv = time::interval_at(Instant::now() + PERIOD, PERIOD);
        let due = iv.tick();
        // Dropped before it completed (a select! lost): the next call waits for the same tick.
        let lost = time::timeout(Duration::from_millis(2), due).await;
        assert!(lost.is_err());
        let a = iv.tick().await;
        let b = iv.tick().await;
        assert_eq!(b - a, PERIOD);
    });
}
