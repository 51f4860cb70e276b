//! What `#[proactor::main]` and `#[proactor::test]` expand to call. Not a public API: the names
//! may change with the macros.

use crate::{DriverChoice, Proactor};
use std::fmt::Debug;

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

/// One run of a test: on a driver, or skipped there, with the reason printed.
#[derive(Debug, Clone, Copy)]
pub enum Run {
    /// Run the body on this driver.
    On(DriverChoice),
    /// Do not run it here; say `SKIPPED on <driver>: <why>`.
    Skip(DriverChoice, &'static str),
}

/// The name `--driver` and `PROACTOR_DRIVER` take for a driver (`uring`, `epoll`), what a
/// `fn(driver: &str)` test is given.
pub fn driver_arg(driver: DriverChoice) -> &'static str {
    match driver {
        DriverChoice::Uring => "uring",
        DriverChoice::Epoll => "epoll",
        _ => "auto",
    }
}

/// Calls `body` once per [`Run::On`] in `runs`, in order, and fails (panics) after all have run
/// if any failed (a panic, or an output that [`TestOutput::check`]s as failure), naming each
/// driver that failed and what it said. A [`Run::Skip`] prints its reason and passes.
pub fn run_test<R: TestOutput>(name: &str, runs: &[Run], mut body: impl FnMut(DriverChoice) -> R) {
    let mut failed = Vec::new();
    for &run in runs {
        let driver = match run {
            Run::On(driver) => driver,
            Run::Skip(driver, why) => {
                eprintln!("{name}: SKIPPED on {}: {why}", driver_name(driver));
                continue;
            }
        };
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(driver).check()));
        let why = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(why)) => why,
            Err(payload) => panic_message(payload.as_ref()),
        };
        eprintln!("{name}: FAILED on {}: {why}", driver_name(driver));
        failed.push((driver_name(driver), why));
    }
    if !failed.is_empty() {
        let on: Vec<&str> = failed.iter().map(|(d, _)| *d).collect();
        let what: Vec<String> = failed.iter().map(|(d, why)| format!("{d}: {why}")).collect();
        panic!("{name} failed on {}\n{}", on.join(" and "), what.join("\n"));
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
