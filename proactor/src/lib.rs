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
pub use driver::uring::RingConfig;
pub use driver::{DriverChoice, DriverKind};
pub use op::BufResult;
pub use runtime::{
    spawn, submit, submit_multi, Builder, CancelToken, Handle, InFlight, JoinError, JoinHandle, Op,
    OpId, Proactor,
};
