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
/// Makes an `async fn` a test that runs once on io_uring and once on epoll, each on a fresh
/// proactor; if either fails, the test fails with a message naming the driver (`… failed on
/// epoll`), after both have run. The body may return `()` or a `Result` (an `Err` fails).
/// Options: `driver = "uring" | "epoll" | "auto" | "both"` (default both), `entries = N`. Other
/// attributes (`#[should_panic]`, `#[ignore]`) apply to the generated test.
///
/// ```no_run
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
#[cfg(feature = "macros")]
pub use proactor_macros::test;
pub use runtime::{
    spawn, submit, submit_multi, Builder, CancelToken, Handle, InFlight, JoinError, JoinHandle, Op,
    OpId, Proactor,
};
