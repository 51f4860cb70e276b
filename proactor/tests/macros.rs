//! `#[proactor::test]` and `#[proactor::main]`: each form of test body (async, given the
//! proactor, given the driver's choice or name) runs on both drivers (or the one asked for), a
//! failure names the driver it happened on, a one-driver test skips the other, `Result` bodies
//! and options work.

use proactor::{DriverChoice, DriverKind, Proactor};
use std::sync::Mutex;

/// Drivers the `record`ing tests ran on, by test.
static RAN: Mutex<Vec<(&str, DriverKind)>> = Mutex::new(Vec::new());

fn record(test: &'static str) {
    record_kind(test, proactor::Handle::current().driver_kind());
}

fn record_kind(test: &'static str, kind: DriverKind) {
    RAN.lock().unwrap().push((test, kind));
}

fn ran(test: &str) -> Vec<DriverKind> {
    RAN.lock().unwrap().iter().filter(|(t, _)| *t == test).map(|(_, k)| *k).collect()
}

#[proactor::test]
async fn runs_on_both_drivers() {
    record("both");
    proactor::time::sleep(std::time::Duration::from_millis(1)).await.unwrap();
    // Both runs are in this one test function, in order.
    if ran("both").len() == 2 {
        assert_eq!(ran("both"), [DriverKind::Uring, DriverKind::Epoll]);
    }
}

#[proactor::test(driver = "epoll", entries = 16)]
async fn one_driver_when_asked() {
    record("epoll-only");
    assert_eq!(ran("epoll-only"), [DriverKind::Epoll]);
}

#[proactor::test]
async fn result_bodies_and_question_mark() -> std::io::Result<()> {
    let (a, b) = proactor::net::UnixStream::pair()?;
    a.write_all(b"ok".as_slice()).await.0?;
    let (res, buf) = b.read_exact(Vec::with_capacity(2)).await;
    res?;
    assert_eq!(buf, b"ok");
    Ok(())
}

// A body that fails on epoll only: the test fails, and the message names epoll, not io_uring.
#[proactor::test]
#[should_panic(expected = "failed on epoll\nepoll: panicked: broken on epoll")]
async fn a_failure_names_its_driver() {
    if proactor::Handle::current().driver_kind() == DriverKind::Epoll {
        panic!("broken on epoll");
    }
}

#[proactor::test]
#[should_panic(expected = "failed on io_uring and epoll\nio_uring: returned Err(")]
async fn an_err_on_both_names_both() -> Result<(), String> {
    Err("no".into())
}

// A body given the proactor runs once per driver, each time on a fresh proactor of that driver,
// which it may drive several times.
#[proactor::test]
fn a_sync_body_gets_each_drivers_proactor(p: &Proactor) {
    record_kind("sync", p.driver_kind());
    assert_eq!(p.block_on(async { proactor::Handle::current().driver_kind() }), p.driver_kind());
    let task = p.spawn(async { proactor::time::sleep(std::time::Duration::from_millis(1)).await });
    p.block_on(task).unwrap().unwrap();
    if ran("sync").len() == 2 {
        assert_eq!(ran("sync"), [DriverKind::Uring, DriverKind::Epoll]);
    }
}

// The rustdoc example of the form, as written there.
#[proactor::test(entries = 64)]
fn sleeps_in_two_runs(p: &Proactor) {
    use proactor::time;
    use std::time::Duration;
    p.block_on(time::sleep(Duration::from_millis(1))).unwrap();
    let task = p.spawn(async { time::sleep(Duration::from_millis(1)).await });
    p.block_on(task).unwrap().unwrap();
}

#[proactor::test(entries = 8)]
fn entries_size_the_proactor_given(p: &Proactor) {
    let ring = p.stats().ring;
    match p.driver_kind() {
        DriverKind::Uring => assert_eq!(ring.unwrap().sq_entries, 8),
        _ => assert!(ring.is_none()),
    }
}

#[proactor::test]
fn a_sync_body_may_return_a_result(p: &Proactor) -> std::io::Result<()> {
    let (a, b) = proactor::net::UnixStream::pair()?;
    p.block_on(a.write_all(b"ok".as_slice())).0?;
    let (res, buf) = p.block_on(b.read_exact(Vec::with_capacity(2)));
    res?;
    assert_eq!(buf, b"ok");
    Ok(())
}

#[proactor::test(uring_only = "the test is of io_uring")]
fn uring_only_runs_on_io_uring_alone(p: &Proactor) {
    record_kind("uring-only", p.driver_kind());
    assert_eq!(ran("uring-only"), [DriverKind::Uring]);
}

#[proactor::test(epoll_only = "the test is of epoll")]
async fn epoll_only_runs_on_epoll_alone() {
    record("epoll-only-async");
    assert_eq!(ran("epoll-only-async"), [DriverKind::Epoll]);
}

// A body given the driver's choice builds what it needs, here on another thread.
#[proactor::test]
fn a_body_given_the_choice_builds_its_own(driver: DriverChoice) {
    let t = std::thread::spawn(move || {
        let p = Proactor::builder().driver(driver).build().unwrap();
        p.block_on(async { proactor::Handle::current().driver_kind() })
    });
    record_kind("choice", t.join().unwrap());
    if ran("choice").len() == 2 {
        assert_eq!(ran("choice"), [DriverKind::Uring, DriverKind::Epoll]);
    }
}

// A body given the driver's name gets what `--driver` and `PROACTOR_DRIVER` take.
#[proactor::test]
fn a_body_given_the_name_gets_the_driver_flag(driver: &str) {
    static NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let choice: DriverChoice = driver.parse().unwrap();
    assert!(matches!(choice, DriverChoice::Uring | DriverChoice::Epoll), "{driver}");
    let mut names = NAMES.lock().unwrap();
    names.push(driver.to_owned());
    if names.len() == 2 {
        assert_eq!(*names, ["uring", "epoll"]);
    }
}

// Each form's failure names the driver it happened on.
#[proactor::test]
#[should_panic(expected = "failed on epoll\nepoll: panicked: the sync body broke on epoll")]
fn a_sync_failure_names_its_driver(p: &Proactor) {
    assert!(p.driver_kind() != DriverKind::Epoll, "the sync body broke on epoll");
}

#[proactor::test]
#[should_panic(expected = "failed on io_uring\nio_uring: panicked: given Uring")]
fn a_choice_failure_names_its_driver(driver: DriverChoice) {
    assert!(driver != DriverChoice::Uring, "given {driver:?}");
}

#[proactor::test]
#[should_panic(expected = "failed on epoll\nepoll: returned Err(\"no epoll\")")]
fn a_name_failure_names_its_driver(driver: &str) -> Result<(), String> {
    match driver {
        "epoll" => Err("no epoll".into()),
        _ => Ok(()),
    }
}

// The runner itself, without `should_panic`: the report for a body failing on io_uring only.
#[test]
fn the_report_names_the_failing_driver() {
    use proactor::__macro_support::{run_test, Run};
    use proactor::DriverChoice::{Epoll, Uring};
    let res = std::panic::catch_unwind(|| {
        run_test("t", &[Run::On(Uring), Run::On(Epoll)], |driver| {
            let p = proactor::__macro_support::build(driver, None);
            assert_ne!(p.driver_kind(), DriverKind::Uring, "uring!");
        })
    });
    let payload = res.unwrap_err();
    let msg = payload.downcast_ref::<String>().unwrap();
    assert!(msg.starts_with("t failed on io_uring\n"), "{msg}");
    assert!(msg.contains("uring!"), "{msg}");
    assert!(!msg.contains("epoll"), "{msg}");
}

// A skipped run does not call the body, and a failure elsewhere still fails the test.
#[test]
fn a_skipped_driver_is_not_run() {
    use proactor::__macro_support::{run_test, Run};
    use proactor::DriverChoice::{Epoll, Uring};
    let mut called = Vec::new();
    run_test("t", &[Run::On(Uring), Run::Skip(Epoll, "why")], |d| called.push(d));
    assert_eq!(called, [Uring]);
    let res = std::panic::catch_unwind(|| {
        run_test::<()>("t", &[Run::Skip(Uring, "why"), Run::On(Epoll)], |_| panic!("epoll broke"))
    });
    let payload = res.unwrap_err();
    let msg = payload.downcast_ref::<String>().unwrap();
    assert_eq!(msg, "t failed on epoll\nepoll: panicked: epoll broke");
}

mod main_attr {
    #[proactor::main(driver = "epoll", entries = 8)]
    async fn main() -> std::io::Result<u32> {
        assert_eq!(proactor::Handle::current().driver_kind(), proactor::DriverKind::Epoll);
        proactor::time::sleep(std::time::Duration::from_millis(1)).await?;
        Ok(7)
    }

    #[test]
    fn main_runs_its_body_on_the_driver_asked_for() {
        assert_eq!(main().unwrap(), 7);
    }
}
