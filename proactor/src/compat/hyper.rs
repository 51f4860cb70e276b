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
use crate::op::Timeout;
use crate::Op;
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
        self.get_mut().poll_flush_sends(cx)
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

/// `hyper::rt::Timer` on proactor timers: each sleep is a timer operation on the current
/// proactor ([`crate::time::sleep`]), cancelled when hyper drops or resets it.
///
/// hyper asks for `Send + Sync` sleeps although a connection served on one thread creates,
/// polls and drops them there. [`HyperSleep`] records the thread it was made on and touches its
/// timer only there (see its documentation for the other cases).
#[derive(Debug, Clone, Copy, Default)]
pub struct HyperTimer;

impl ::hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(HyperSleep::new(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(HyperSleep::new(deadline.saturating_duration_since(Instant::now())))
    }
}

/// A sleep made by [`HyperTimer`]: a proactor timer operation, and the thread that owns it.
///
/// It completes when the timer does (a timer that failed to start — no proactor on the thread —
/// counts as expired, so a timeout fires rather than never). Polled on another thread, it
/// panics: the timer belongs to the loop it was started on. Dropped on another thread, its
/// timer is left to expire on its own loop (the operation is leaked rather than touched).
pub struct HyperSleep {
    timer: Option<Op<Timeout>>,
    owner: ThreadId,
}

impl HyperSleep {
    fn new(duration: Duration) -> Self {
        HyperSleep { timer: Some(crate::time::sleep(duration)), owner: thread::current().id() }
    }
}

// SAFETY: the only non-thread-safe field is the timer operation (it holds an `Rc` to its
// proactor). It is used — polled or dropped — only on the thread that made it, which `poll`
// and `drop` check against `owner`; on any other thread `poll` panics before touching it and
// `drop` forgets it. `&HyperSleep` exposes nothing, so sharing references is harmless too.
unsafe impl Send for HyperSleep {}
// SAFETY: see the `Send` impl: no method takes `&self`.
unsafe impl Sync for HyperSleep {}

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        assert!(
            thread::current().id() == this.owner,
            "a proactor HyperSleep was polled on a thread other than its proactor's"
        );
        let Some(timer) = this.timer.as_mut() else { return Poll::Ready(()) };
        // Expired, cancelled or refused: the sleep is over in every case.
        let _ = ready!(Pin::new(timer).poll(cx));
        this.timer = None;
        Poll::Ready(())
    }
}

impl ::hyper::rt::Sleep for HyperSleep {}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        if thread::current().id() != self.owner {
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
