//! Signals through the loop: deliveries counted, none lost to a dropped `recv`, bad numbers
//! refused with a clear error. Each test listens for a signal of its own (the suite's tests run
//! in one process, in parallel) and raises it at the whole process.

use proactor::signal::{signal, SignalKind};
use proactor::time::timeout;
use std::time::Duration;

fn raise(kind: SignalKind) {
    // SAFETY: kill(2) with our own pid and a signal this test has a listener for.
    assert_eq!(unsafe { libc::kill(libc::getpid(), kind.as_raw_value()) }, 0);
}

const PATIENCE: Duration = Duration::from_secs(10);

#[proactor::test]
async fn a_raised_signal_is_received_and_merged_deliveries_come_out_once() {
    let mut usr1 = signal(SignalKind::user_defined1()).unwrap();
    // Nothing delivered yet: recv waits.
    assert!(timeout(Duration::from_millis(50), usr1.recv()).await.is_err());
    raise(SignalKind::user_defined1());
    assert_eq!(timeout(PATIENCE, usr1.recv()).await.expect("SIGUSR1 not received"), Some(()));
    // Three more before the next recv: at least one report, and then quiet again.
    for _ in 0..3 {
        raise(SignalKind::user_defined1());
    }
    assert_eq!(timeout(PATIENCE, usr1.recv()).await.expect("SIGUSR1 not received"), Some(()));
    while timeout(Duration::from_millis(50), usr1.recv()).await.is_ok() {}
    // A delivery from another thread wakes the loop too.
    let from_thread = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(20));
        raise(SignalKind::user_defined1());
    });
    assert_eq!(timeout(PATIENCE, usr1.recv()).await.expect("SIGUSR1 not received"), Some(()));
    from_thread.join().unwrap();
}

#[proactor::test]
async fn a_dropped_recv_loses_no_signal_and_reports_none_twice() {
    let mut usr2 = signal(SignalKind::user_defined2()).unwrap();
    for round in 0..20 {
        // A recv whose read reaches the driver and is dropped in flight; it must report
        // nothing (the last delivery was reported in the round before, its byte maybe unread).
        assert!(
            timeout(Duration::from_millis(2), usr2.recv()).await.is_err(),
            "round {round}: a delivery reported twice"
        );
        raise(SignalKind::user_defined2());
        // A recv dropped right away, which may take the wake-up byte with it...
        let early = timeout(Duration::ZERO, usr2.recv()).await;
        // ...and the delivery is still reported, by it or by the next one.
        if early.is_err() {
            let got = timeout(PATIENCE, usr2.recv()).await;
            assert_eq!(got.expect("a signal lost with a dropped recv"), Some(()), "round {round}");
        }
    }
}

#[proactor::test]
async fn two_listeners_of_one_signal_each_hear_it() {
    let mut a = signal(SignalKind::window_change()).unwrap();
    let mut b = signal(SignalKind::window_change()).unwrap();
    raise(SignalKind::window_change());
    assert_eq!(timeout(PATIENCE, a.recv()).await.expect("first listener"), Some(()));
    assert_eq!(timeout(PATIENCE, b.recv()).await.expect("second listener"), Some(()));
    // Dropping one leaves the other listening.
    drop(a);
    raise(SignalKind::window_change());
    assert_eq!(timeout(PATIENCE, b.recv()).await.expect("second listener"), Some(()));
}

#[proactor::test]
async fn uncatchable_and_unknown_signals_are_refused() {
    for raw in
        [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, libc::SIGFPE, libc::SIGILL, 0, -3, 4096]
    {
        let err = signal(SignalKind::from_raw(raw)).expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{raw}: {err}");
        assert!(err.to_string().contains(&raw.to_string()), "{err}");
    }
}
