//! # proactor
//!
//! Completion-based asynchronous I/O — the Proactor pattern — on io_uring, with an epoll
//! emulation where io_uring is missing or forbidden.
//!
//! The pattern's participants map onto the crate:
//! - **Asynchronous operations** ([`op`]) own their buffers ([`buf`]) while the kernel works and
//!   hand them back with the result, so a buffer cannot be freed or reused too early.
//! - **Asynchronous operation processor** ([`driver`]): io_uring, or the epoll emulation.
//! - **Completion event queue, demultiplexer and proactor** ([`runtime`]): the run loop that
//!   submits in batches, reaps completions and dispatches them to completion handlers
//!   ([`Handle::start`]) or to futures ([`Handle::block_on`], [`spawn`], [`Op`]).
//!
//! ```
//! use proactor::{op, Proactor};
//! let p = Proactor::new()?;
//! p.block_on(async {
//!     let (a, b) = std::os::unix::net::UnixStream::pair()?;
//!     let (res, _) = proactor::submit(op::Send::new(a, b"ping".as_slice())).await;
//!     res?;
//!     let (res, buf) = proactor::submit(op::Recv::new(b, Vec::with_capacity(16))).await;
//!     assert_eq!(res?, 4);
//!     assert_eq!(buf, b"ping");
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod buf;
#[cfg(any(feature = "tokio-io", feature = "futures-io", feature = "hyper"))]
pub mod compat;
pub mod driver;
pub mod faults;
pub mod fd;
pub mod fs;
pub mod io;
#[doc(hidden)]
pub mod __macro_support {
    //! Called by the code `#[proactor::main]` and `#[proactor::test]` expand to.
    pub use crate::macro_support::*;
}
mod macro_support;
pub mod net;
pub mod offload;
pub mod op;
pub mod runtime;
pub mod signal;
pub mod strand;
mod sync;
pub mod task;
pub mod threads;
pub mod time;

pub use buf::{IoBuf, IoBufMut};

/// Runs `async fn main` on a proactor: builds one (options: `driver = "uring" | "epoll" |
/// "auto"`, default auto; `entries = N`, the io_uring ring size) and `block_on`s the body. The
/// function may return what `main` may (a `Result` included). A proactor runs on one thread, so
/// there is no `threads` option: serve on several with [`threads`] from inside `main`.
///
/// ```
/// #[proactor::main(entries = 64)]
/// async fn main() -> std::io::Result<()> {
///     let (a, b) = proactor::net::UnixStream::pair()?;
///     let (res, _) = a.write_all(b"hi".as_slice()).await;
///     res?;
///     let (res, buf) = b.read_exact(Vec::with_capacity(2)).await;
///     res?;
///     assert_eq!(buf, b"hi");
///     Ok(())
/// }
/// ```
#[cfg(feature = "macros")]
pub use proactor_macros::main;

pub use driver::uring::RingConfig;
pub use driver::{DriverChoice, DriverKind};
pub use op::BufResult;
/// Makes a function a test that runs once on io_uring and once on epoll, each on a fresh
/// proactor, one after the other in the one test. If either fails, the test fails after both
/// have run, with a message naming the driver (`name failed on epoll`, then each failing
/// driver's panic message or `Err`). The body may return `()` or a `Result` (an `Err` fails).
/// Other attributes (`#[should_panic]`, `#[ignore]`) apply to the generated test.
///
/// The form of the function says what the body is given:
///
/// - `async fn name()`: the body is awaited by the proactor's `block_on`
///   ([`Handle::current`] reaches it).
/// - `fn name(p: &Proactor)`: the body gets the proactor and drives it itself (several
///   `block_on` or `run` calls, handlers, `p.handle()`).
/// - `fn name(driver: DriverChoice)`: no proactor is built; the body gets the driver and builds
///   what it needs (proactors on threads of its own, a builder with options).
/// - `fn name(driver: &str)`: the same with the name `--driver` and `PROACTOR_DRIVER` take
///   (`"uring"`, `"epoll"`), for tests that start a program on each driver.
///
/// Options:
/// - `uring_only = "why"` (or `epoll_only = "why"`): for a test of what only one driver can
///   do; the body runs on that driver, and the other run prints `SKIPPED on epoll: why` and
///   passes.
/// - `driver = "uring" | "epoll" | "auto" | "both"` (default both): run on that driver only,
///   silently.
/// - `entries = N`: the io_uring ring size of the proactor the test builds (not for the forms
///   that take the driver).
///
/// An async body, with `?`:
///
/// ```
/// #[proactor::test]
/// async fn echo() -> std::io::Result<()> {
///     let (a, b) = proactor::net::UnixStream::pair()?;
///     a.write_all(b"ping".as_slice()).await.0?;
///     let (res, buf) = b.read_exact(Vec::with_capacity(4)).await;
///     res?;
///     assert_eq!(buf, b"ping");
///     Ok(())
/// }
/// ```
///
/// A body given the proactor, which it drives more than once:
///
/// ```
/// use proactor::{time, Proactor};
/// use std::time::Duration;
///
/// #[proactor::test(entries = 64)]
/// fn sleeps_in_two_runs(p: &Proactor) {
///     p.block_on(time::sleep(Duration::from_millis(1))).unwrap();
///     let task = p.spawn(async { time::sleep(Duration::from_millis(1)).await });
///     p.block_on(task).unwrap().unwrap();
/// }
/// ```
///
/// A test of what only io_uring does:
///
/// ```
/// use proactor::{DriverKind, Proactor};
///
/// #[proactor::test(uring_only = "epoll has no submission ring")]
/// fn the_ring_is_io_uring(p: &Proactor) {
///     assert_eq!(p.driver_kind(), DriverKind::Uring);
/// }
/// ```
///
/// Tests that take the driver and build the rest themselves:
///
/// ```
/// use proactor::{DriverChoice, Proactor};
///
/// #[proactor::test]
/// fn a_proactor_per_thread(driver: DriverChoice) {
///     let t = std::thread::spawn(move || {
///         let p = Proactor::builder().driver(driver).build().unwrap();
///         p.block_on(async { 1 + 1 })
///     });
///     assert_eq!(t.join().unwrap(), 2);
/// }
///
/// #[proactor::test]
/// fn the_driver_by_name(driver: &str) {
///     // e.g. `Command::new("my-server").args(["--driver", driver])`
///     let choice: DriverChoice = driver.parse().unwrap();
///     assert!(matches!(choice, DriverChoice::Uring | DriverChoice::Epoll));
/// }
/// ```
///
/// (Outside `cargo test` a `#[test]` function is left out, so rustdoc cannot run these; each
/// form is also a test in `tests/macros.rs`.)
#[cfg(feature = "macros")]
pub use proactor_macros::test;
pub use runtime::{
    spawn, submit, submit_multi, Builder, CancelToken, Handle, InFlight, JoinError, JoinHandle, Op,
    OpId, Proactor,
};
