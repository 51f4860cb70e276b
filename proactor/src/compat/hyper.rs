//! hyper 1.x on proactor (feature `hyper`): `hyper::rt::{Read, Write}` for [`Compat`], an
//! executor for the tasks hyper spawns ([`HyperExecutor`], local tasks, `!Send` futures
//! welcome) and a timer on proactor timers ([`HyperTimer`]).
//!
//! With these, hyper's connection builders serve and fetch over proactor sockets; HTTP/2 needs
//! the executor (hyper spawns a task per stream) and, for keep-alive pings and the HTTP/1 header
//! timeout, the timer:
//!
//! ```
//! # #[cfg(all(feature = "hyper", feature = "tokio-io"))] {
//! use proactor::compat::hyper::{HyperExecutor, HyperTimer};
//! use proactor::compat::Compat;
//! use proactor::net::{TcpListener, TcpStream};
//!
//! let p = proactor::Proactor::new()?;
//! p.block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let addr = listener.local_addr()?;
//!     proactor::spawn(async move {
//!         let (stream, _) = listener.accept().await.unwrap();
//!         let service = hyper::service::service_fn(|_req| async {
//!             let body = http_body_util::Full::new(bytes::Bytes::from_static(b"hello"));
//!             Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
//!         });
//!         hyper::server::conn::http2::Builder::new(HyperExecutor)
//!             .timer(HyperTimer)
//!             .serve_connection(Compat::new(stream), service)
//!             .await
//!             .unwrap();
//!     });
//!     // An HTTP/2 client on the same loop (h2c with prior knowledge).
//!     let io = Compat::new(TcpStream::connect(addr).await?);
//!     let (mut send, conn) = hyper::client::conn::http2::Builder::new(HyperExecutor)
//!         .timer(HyperTimer)
//!         .handshake::<_, http_body_util::Empty<bytes::Bytes>>(io)
//!         .await
//!         .unwrap();
//!     proactor::spawn(conn);
//!     let req = hyper::Request::get(format!("http://{addr}/")).body(Default::default()).unwrap();
//!     let resp = send.send_request(req).await.unwrap();
//!     assert_eq!(resp.status(), 200);
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # }
//! # Ok::<(), std::io::Error>(())
//! ```

use super::{Compat, CompatStream};
use crate::time::Sleep;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

impl<S: CompatStream> ::hyper::rt::Read for Compat<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ::hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let room = buf.remaining();
        self.get_mut().poll_read_with(cx, room, |src| buf.put_slice(src)).map_ok(|_| ())
    }
}

impl<S: CompatStream> ::hyper::rt::Write for Compat<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_one(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_from(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_hand_off(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_shutdown_write(cx)
    }
}

/// Runs the futures hyper spawns (an HTTP/2 stream, a client connection's background work) as
/// local tasks on the current proactor ([`crate::spawn`]); they need not be `Send`.
///
/// hyper calls it from inside a connection's poll, which runs on the proactor's thread.
///
/// # Panics
/// `execute` panics when no proactor runs on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct HyperExecutor;

impl<F> ::hyper::rt::Executor<F> for HyperExecutor
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, fut: F) {
        // Detached: the task runs to its end; hyper keeps its own handles to it.
        drop(crate::spawn(fut));
    }
}

/// `hyper::rt::Timer` on proactor timers: each sleep is a [`crate::time::Sleep`] in the current
/// proactor's timer set — armed, reset (in place: hyper's `reset` moves the same timer) and
/// dropped without a system call, however many requests arm and drop a header-read timeout.
///
/// hyper asks for `Send + Sync` sleeps although a connection served on one thread creates,
/// polls and drops them there. [`HyperSleep`] records the thread it was made on and touches its
/// timer only there (see its documentation for the other cases).
#[derive(Debug, Clone, Copy, Default)]
pub struct HyperTimer;

impl ::hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(HyperSleep::new(crate::time::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(HyperSleep::new(crate::time::sleep_until(deadline)))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn ::hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(ours) => ours.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A sleep made by [`HyperTimer`]: a proactor [`Sleep`], and the thread that owns it.
///
/// It completes when the sleep does (a sleep that cannot be armed — no proactor on the thread —
/// counts as expired, so a timeout fires rather than never). Polled or reset on another thread,
/// it panics: the timer belongs to the loop it was armed in. Dropped on another thread, its
/// timer is left in its own loop (leaked rather than touched; it fires there, waking nobody).
pub struct HyperSleep {
    timer: Option<Sleep>,
    owner: ThreadId,
}

/// This thread's id, read once: `thread::current()` clones the thread's handle (two atomic
/// operations), and a sleep checks the thread at each use.
fn this_thread() -> ThreadId {
    thread_local! {
        static ID: ThreadId = thread::current().id();
    }
    // `try_with`: during the thread's exit, after its locals are gone, asked the long way.
    ID.try_with(|id| *id).unwrap_or_else(|_| thread::current().id())
}

impl HyperSleep {
    fn new(sleep: Sleep) -> Self {
        HyperSleep { timer: Some(sleep), owner: this_thread() }
    }

    fn check_thread(&self) {
        assert!(
            this_thread() == self.owner,
            "a proactor HyperSleep was used on a thread other than its proactor's"
        );
    }

    /// Moves the deadline (hyper's `Timer::reset`): the same timer moves in its loop's set.
    fn reset(&mut self, deadline: Instant) {
        self.check_thread();
        match &mut self.timer {
            Some(sleep) => sleep.reset(deadline),
            None => self.timer = Some(crate::time::sleep_until(deadline)),
        }
    }
}

// SAFETY: the only non-thread-safe field is the sleep (it holds an `Rc` to its proactor once
// armed). It is used — polled, reset or dropped — only on the thread that made it, which
// `poll`, `reset` and `drop` check against `owner`; on any other thread `poll` and `reset` panic
// before touching it and `drop` forgets it. `&HyperSleep` exposes nothing, so sharing
// references is harmless too.
unsafe impl Send for HyperSleep {}
// SAFETY: see the `Send` impl: no method takes `&self`.
unsafe impl Sync for HyperSleep {}

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.check_thread();
        let Some(timer) = this.timer.as_mut() else { return Poll::Ready(()) };
        // Expired or refused: the sleep is over in either case.
        let _ = ready!(Pin::new(timer).poll(cx));
        this.timer = None;
        Poll::Ready(())
    }
}

impl ::hyper::rt::Sleep for HyperSleep {}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        if this_thread() != self.owner {
            if let Some(timer) = self.timer.take() {
                tracing::warn!("a HyperSleep dropped off its proactor's thread: timer leaked");
                std::mem::forget(timer);
            }
        }
    }
}

impl std::fmt::Debug for HyperSleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperSleep").field("pending", &self.timer.is_some()).finish()
    }
}
