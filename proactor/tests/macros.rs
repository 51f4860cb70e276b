//! `#[proactor::test]` and `#[proactor::main]`: the body runs on both drivers (or the one
//! asked for), a failure names the driver it happened on, `Result` bodies and options work.

use proactor::DriverKind;
use std::sync::Mutex;

/// Drivers the `records_*` tests ran on, by test.
static RAN: Mutex<Vec<(&str, DriverKind)>> = Mutex::new(Vec::new());

fn record(test: &'static str) {
    let kind = proactor::Handle::current().driver_kind();
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

// The runner itself, without `should_panic`: the report for a body failing on io_uring only.
#[test]
fn the_report_names_the_failing_driver() {
    use proactor::DriverChoice::{Epoll, Uring};
    let res = std::panic::catch_unwind(|| {
        proactor::__macro_support::run_test("t", &[Uring, Epoll], None, || async {
            assert_ne!(proactor::Handle::current().driver_kind(), DriverKind::Uring, "uring!");
        })
    });
    let payload = res.unwrap_err();
    let msg = payload.downcast_ref::<String>().unwrap();
    assert!(msg.starts_with("t failed on io_uring\n"), "{msg}");
    assert!(msg.contains("uring!"), "{msg}");
    assert!(!msg.contains("epoll"), "{msg}");
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
