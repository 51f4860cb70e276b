//! What `#[proactor::main]` and `#[proactor::test]` expand to call. Not a public API: the names
//! may change with the macros.

use crate::{DriverChoice, Proactor};
use std::fmt::Debug;
use std::future::Future;

/// A proactor on `driver` with `entries` ring entries; panics, saying why, if it cannot start
/// (`main` has nothing better to do, and a test must fail).
pub fn build(driver: DriverChoice, entries: Option<u32>) -> Proactor {
    let mut b = Proactor::builder().driver(driver);
    if let Some(n) = entries {
        b = b.entries(n);
    }
    match b.build() {
        Ok(p) => p,
        Err(e) => panic!("proactor: cannot start on the {} driver: {e}", driver_name(driver)),
    }
}

/// The name a report uses for a driver.
pub fn driver_name(driver: DriverChoice) -> &'static str {
    match driver {
        DriverChoice::Uring => "io_uring",
        DriverChoice::Epoll => "epoll",
        _ => "auto",
    }
}

/// What a test body may return: `()`, or a `Result` whose `Err` fails the test.
pub trait TestOutput {
    /// `Err(message)` if the value means failure.
    fn check(self) -> Result<(), String>;
}

impl TestOutput for () {
    fn check(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Debug> TestOutput for Result<(), E> {
    fn check(self) -> Result<(), String> {
        self.map_err(|e| format!("returned Err({e:?})"))
    }
}

/// Runs `body` once per driver in `drivers`, each on a fresh proactor, and fails (panics) after
/// all have run if any failed, naming each driver that failed and what it said.
pub fn run_test<F, Fut>(name: &str, drivers: &[DriverChoice], entries: Option<u32>, body: F)
where
    F: Fn() -> Fut,
    Fut: Future,
    Fut::Output: TestOutput,
{
    let mut failed = Vec::new();
    for &driver in drivers {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            build(driver, entries).block_on(body()).check()
        }));
        let why = match run {
            Ok(Ok(())) => continue,
            Ok(Err(why)) => why,
            Err(payload) => panic_message(payload.as_ref()),
        };
        eprintln!("{name}: FAILED on {}: {why}", driver_name(driver));
        failed.push(format!("{}: {why}", driver_name(driver)));
    }
    if !failed.is_empty() {
        let on: Vec<&str> = failed.iter().map(|f| f.split(':').next().unwrap_or("")).collect();
        panic!("{name} failed on {}\n{}", on.join(" and "), failed.join("\n"));
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}
