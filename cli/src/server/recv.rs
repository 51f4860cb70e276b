//! How a server's connections receive: one multishot receive per connection on the thread's
//! buffer pool, or one receive request per chunk (`--recv`, hidden: for comparing the two).

use proactor::buf::BufPool;
use proactor::{DriverKind, Handle};

/// How a server's connections receive (`--recv`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvMode {
    /// One multishot receive per connection on the thread's buffer pool (a completion per
    /// chunk, no submission per receive); one receive at a time where the driver or the pool
    /// cannot run it.
    Multishot,
    /// One receive request per chunk.
    Oneshot,
}

/// Whether `handle`'s driver can run a multishot receive on `pool` (what
/// `BufPool::recv_stream` checks too): io_uring with the pool's provided-buffer ring, epoll
/// (which re-arms readiness itself) with a pool managed in user space. `pool` must have been
/// built on `handle`'s proactor.
pub fn multishot_runnable(handle: &Handle, pool: &BufPool) -> bool {
    match handle.driver_kind() {
        DriverKind::Uring => pool.is_kernel_ring(),
        _ => !pool.is_kernel_ring(),
    }
}

/// A receive pool of `buffers` × `size` bytes on `handle`'s proactor, for a server thread whose
/// connections receive multishot, when `mode` asks for it and the driver can run it there;
/// `None` (the caller receives one request at a time) otherwise, with a warning when the pool
/// cannot be built.
pub fn multishot_pool(
    name: &str,
    handle: &Handle,
    mode: RecvMode,
    buffers: u16,
    size: usize,
) -> Option<BufPool> {
    if mode != RecvMode::Multishot {
        return None;
    }
    match BufPool::builder().buffers(buffers).buffer_size(size).build_on(handle) {
        Ok(pool) if multishot_runnable(handle, &pool) => Some(pool),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("{name}: no receive buffer pool ({e}); receiving one chunk at a time");
            None
        }
    }
}
