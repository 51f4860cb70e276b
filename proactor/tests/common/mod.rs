//! Shared test helpers. Every test runs once per driver: `#[proactor::test] fn name(p: &Proactor)`
//! (or another form of the attribute, see its docs).
#![allow(dead_code)]

mod drops;

#[allow(unused_imports)] // not every test file uses them
pub use drops::{CountingBuf, DropLedger};
use proactor::{DriverChoice, Proactor};

/// A proactor on the given driver, built strictly (no fallback).
pub fn proactor(driver: DriverChoice) -> Proactor {
    Proactor::builder().driver(driver).build().expect("proactor on the requested driver")
}

/// Number of open descriptors of this process (entries of `/proc/self/fd`).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Awaits every future in order and counts them; an `Err` from any fails the test.
pub async fn join_count<F, T, E>(futs: Vec<F>) -> usize
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let mut n = 0;
    for f in futs {
        f.await.unwrap();
        n += 1;
    }
    n
}
