//! `#[proactor::test]` takes one of its forms, and says which when given another: an argument
//! that is neither the proactor nor the driver, `entries` for a test that builds its own
//! proactor, and two options that both pick the driver.
#[allow(unused_imports)] // the attribute refuses each test, so nothing uses them
use proactor::{DriverChoice, Proactor};

#[proactor::test]
fn takes_a_number(n: u32) {
    let _ = n;
}

#[proactor::test]
async fn async_with_an_argument(p: &Proactor) {
    let _ = p;
}

#[proactor::test(entries = 8)]
fn builds_its_own(driver: DriverChoice) {
    let _ = driver;
}

#[proactor::test(driver = "epoll", uring_only = "why")]
fn picks_twice(p: &Proactor) {
    let _ = p;
}

fn main() {}
