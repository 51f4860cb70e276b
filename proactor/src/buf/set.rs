//! Several buffer pools of different sizes on one proactor, and the rule that picks one for a
//! receive.
//!
//! One buffer size cannot suit every connection: 16 KiB buffers for a chat line waste memory
//! and cache, 512-byte buffers for a file upload cost a completion (and a send) per 512 bytes.
//! A [`BufPoolSet`] holds, say, many small buffers and a few large ones — each its own
//! provided-buffer ring (buffer group) on io_uring — and a receive names the size it expects:
//! - [`BufPoolSet::pick`]: the smallest pool whose buffers hold `expected` bytes (the largest
//!   if none does). A protocol that knows what comes next (a header, then a body of a known
//!   length) asks for that; one that does not asks for its typical message.
//! - When that pool is dry (`ENOBUFS`), the receive moves to the next larger pool that has a
//!   buffer instead of waiting, and a stream comes back to its own pool once a buffer is back
//!   there ([`BufPoolSet::recv_stream`]). A burst of traffic then borrows large buffers for a
//!   while; small buffers stay the common case.
//!
//! The kernel cannot fall back between groups by itself (a receive names one group), so the
//! fallback is ours: the receive that found its ring dry has left the data in the socket, and
//! the next one — into the other group — takes it, in order.

use super::{BufPool, PooledBuf};
use crate::fd::IoFd;
use crate::op::{raw_os_error, RecvPooled};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// Pools of different buffer sizes for one proactor, smallest first (see the module docs).
///
/// ```
/// use proactor::buf::{BufPool, BufPoolSet};
/// use proactor::net::UnixStream;
/// use std::os::fd::AsRawFd;
/// let p = proactor::Proactor::new()?;
/// p.block_on(async {
///     let set = BufPoolSet::new([
///         BufPool::builder().buffers(256).buffer_size(512).build()?,
///         BufPool::builder().buffers(16).buffer_size(64 * 1024).build()?,
///     ])?;
///     assert_eq!(set.pick(100).buffer_size(), 512);
///     assert_eq!(set.pick(10_000).buffer_size(), 64 * 1024);
///     let (a, b) = UnixStream::pair()?;
///     a.write(b"hello".as_slice()).await.0?;
///     let buf = set.recv(b.as_raw_fd(), 100).await?.expect("data, not end of stream");
///     assert_eq!(&buf[..], b"hello");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BufPoolSet {
    pools: Rc<[BufPool]>,
}

impl BufPoolSet {
    /// A set of `pools` (in any order; kept smallest buffers first). Each pool keeps its own
    /// settings (count, incremental consumption, bundles). At least one pool, at most 255.
    pub fn new(pools: impl IntoIterator<Item = BufPool>) -> io::Result<BufPoolSet> {
        let mut pools: Vec<BufPool> = pools.into_iter().collect();
        if pools.is_empty() || pools.len() > u8::MAX as usize {
            let why = "a pool set holds 1 to 255 pools";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        pools.sort_by_key(|p| p.buffer_size());
        Ok(BufPoolSet { pools: pools.into() })
    }

    /// The pools, smallest buffers first.
    pub fn pools(&self) -> &[BufPool] {
        &self.pools
    }

    /// The pool for a receive of about `expected` bytes: the smallest whose buffers hold them,
    /// or the largest when none does.
    pub fn pick(&self, expected: usize) -> &BufPool {
        &self.pools[self.pick_index(expected) as usize]
    }

    pub(crate) fn pick_index(&self, expected: usize) -> u8 {
        let last = self.pools.len() - 1;
        // Fewer than 256 pools (checked in `new`).
        self.pools.iter().position(|p| p.buffer_size() >= expected).unwrap_or(last) as u8
    }

    pub(crate) fn shared(&self) -> Rc<[BufPool]> {
        self.pools.clone()
    }

    /// Receives one chunk on `fd` into a buffer of the pool [`BufPoolSet::pick`] chooses for
    /// `expected` bytes, or of the next larger pool with a free buffer while that one is dry;
    /// waits only when every pool from the chosen one up is dry. `Ok(None)` at end of stream.
    pub async fn recv<F: IoFd + Clone>(
        &self,
        fd: F,
        expected: usize,
    ) -> io::Result<Option<PooledBuf>> {
        let first = self.pick_index(expected) as usize;
        'again: loop {
            let seen: Vec<u64> =
                self.pools[first..].iter().map(|p| p.inner().returned_count()).collect();
            for pool in &self.pools[first..] {
                match crate::submit(RecvPooled::new(fd.clone(), pool)).await {
                    Ok(got) => return Ok(got),
                    Err(e) if raw_os_error(&e) == Some(libc::ENOBUFS) => {
                        pool.inner().note_exhausted();
                    }
                    // A spurious wake-up: nothing to read yet, from the chosen pool again.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue 'again,
                    Err(e) => return Err(e),
                }
            }
            // Dry for real (not an `ENOBUFS` injected while a buffer was free): wait.
            let pools = &self.pools[first..];
            if pools.iter().zip(&seen).all(|(p, s)| p.inner().dry_since(*s)) {
                AnyReturned { pools, seen }.await;
            }
        }
    }
}

/// Resolves once a buffer has come back to any of `pools` since their counts were `seen`.
struct AnyReturned<'a> {
    pools: &'a [BufPool],
    seen: Vec<u64>,
}

impl Future for AnyReturned<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let back = self.pools.iter().zip(&self.seen).any(|(p, s)| p.inner().returned_count() != *s);
        if back {
            return Poll::Ready(());
        }
        for pool in self.pools {
            pool.inner().wait_for_return(cx.waker());
        }
        Poll::Pending
    }
}
