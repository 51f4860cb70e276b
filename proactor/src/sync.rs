//! The synchronisation primitives of the cross-thread wake paths, from one place, so that they
//! can be model-checked: under `--cfg proactor_loom` they are `loom`'s, which explores every
//! interleaving of the threads that use them; otherwise they are `std`'s.
//!
//! Only the atomics and the mutex are switched. `Arc` stays `std`'s: a `Waker` is built from a
//! `std::sync::Arc`, and the model checks orderings, not reference counts.

#[cfg(proactor_loom)]
pub(crate) use loom::sync::{atomic, Mutex};
#[cfg(not(proactor_loom))]
pub(crate) use std::sync::{atomic, Mutex};
