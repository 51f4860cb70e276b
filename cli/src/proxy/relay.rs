//! Moving one direction of a proxied connection: bytes received on one socket are sent on the
//! other, until end of stream, which is passed on as a half-close (`shutdown(SHUT_WR)`).
//!
//! Backpressure is structural: a direction owns exactly two buffers. While one is being sent,
//! the next receive fills the other; the direction receives again only when the previous send
//! has finished. A slow receiver therefore slows its sender through TCP flow control, and the
//! proxy never holds more than two buffers per direction, whatever the traffic.
//!
//! With `--splice`, the bytes go through a pipe inside the kernel instead (socket → pipe →
//! socket), never through user memory; the pipe's size bounds what is in flight.

use proactor::op::{self, PollReady, Recv, Send, Shutdown, Splice};
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::{Shutdown as How, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

/// Counters a direction updates as it goes, read by the connection's log line and idle timer.
pub struct Traffic {
    /// Bytes moved in this direction so far.
    pub bytes: Cell<u64>,
    /// When this direction last moved a byte.
    pub last: Rc<Cell<Instant>>,
}

impl Traffic {
    /// New counters sharing the connection's activity clock.
    pub fn new(last: Rc<Cell<Instant>>) -> Traffic {
        Traffic { bytes: Cell::new(0), last }
    }
    fn moved(&self, n: usize) {
        self.bytes.set(self.bytes.get() + n as u64);
        self.last.set(Instant::now());
    }
}

/// Runs both futures concurrently; completes when both succeed, or at the first error (the
/// other is then dropped, which cancels its operations).
pub async fn try_join<A, B, T, U>(a: A, b: B) -> io::Result<(T, U)>
where
    A: Future<Output = io::Result<T>>,
    B: Future<Output = io::Result<U>>,
{
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(r) = a.as_mut().poll(cx) {
                ra = Some(r?);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(r) = b.as_mut().poll(cx) {
                rb = Some(r?);
            }
        }
        if ra.is_some() && rb.is_some() {
            return Poll::Ready(Ok((ra.take().expect("set"), rb.take().expect("set"))));
        }
        Poll::Pending
    })
    .await
}

/// Sends all of `buf`, continuing after partial sends. Gives the buffer back, emptied.
async fn send_all(to: &Rc<TcpStream>, mut buf: Vec<u8>, traffic: &Traffic) -> io::Result<Vec<u8>> {
    let len = buf.len();
    let mut sent = 0;
    while sent < len {
        let (res, slice) =
            proactor::submit(Send::new(to.clone(), proactor::IoBuf::slice(buf, sent..len))).await;
        buf = slice.into_inner();
        let n = res?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n;
        traffic.moved(n);
    }
    buf.clear();
    Ok(buf)
}

/// Receives into the (empty) buffer: the count and the buffer.
async fn recv(from: &Rc<TcpStream>, buf: Vec<u8>) -> io::Result<(usize, Vec<u8>)> {
    let (res, buf) = proactor::submit(Recv::new(from.clone(), buf)).await;
    Ok((res?, buf))
}

/// Passes on end of stream: no more bytes will be sent toward `to`.
pub async fn half_close(to: &Rc<TcpStream>) -> io::Result<()> {
    match proactor::submit(Shutdown::new(to.clone(), How::Write)).await {
        // The peer is already gone: nothing left to tell it.
        Err(e) if op::raw_os_error(&e) == Some(libc::ENOTCONN) => Ok(()),
        other => other,
    }
}

/// Relays `from` → `to` with two buffers of `size` bytes until `from` ends, then half-closes
/// `to`.
pub async fn buffered(
    from: Rc<TcpStream>,
    to: Rc<TcpStream>,
    size: usize,
    traffic: &Traffic,
) -> io::Result<()> {
    let (mut filling, mut draining) = (Vec::with_capacity(size), Vec::with_capacity(size));
    loop {
        // Receive into one buffer while the other is sent.
        let ((n, filled), drained) =
            try_join(recv(&from, filling), send_all(&to, draining, traffic)).await?;
        if n == 0 {
            break;
        }
        filling = drained;
        draining = filled;
    }
    half_close(&to).await
}

/// A pipe for splicing, both ends non-blocking and close-on-exec.
pub struct Pipe {
    /// Read end.
    pub rd: Rc<OwnedFd>,
    /// Write end.
    pub wr: Rc<OwnedFd>,
    /// Capacity in bytes.
    pub size: usize,
}

impl Pipe {
    /// A new pipe, enlarged to `want` bytes where the system allows it.
    pub fn new(want: usize) -> io::Result<Pipe> {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` is an array of two ints, as pipe2 requires.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 returned two new descriptors that nothing else owns.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ / F_GETPIPE_SZ take an int argument, no pointers.
        let size = unsafe {
            libc::fcntl(fds[1], libc::F_SETPIPE_SZ, want as libc::c_int);
            libc::fcntl(fds[1], libc::F_GETPIPE_SZ)
        };
        let size = if size > 0 { size as usize } else { 65536 };
        Ok(Pipe { rd: Rc::new(rd), wr: Rc::new(wr), size })
    }
}

/// Retries a splice that failed with `EAGAIN` (io_uring, non-blocking socket) once `wait`
/// reports the socket ready.
async fn splice_once<I, O, W>(
    make: impl Fn() -> Splice<I, O>,
    wait: impl Fn() -> PollReady<W>,
) -> io::Result<usize>
where
    I: proactor::fd::IoFd,
    O: proactor::fd::IoFd,
    W: proactor::fd::IoFd,
{
    loop {
        match proactor::submit(make()).await {
            Err(e) if op::raw_os_error(&e) == Some(libc::EAGAIN) => {
                proactor::submit(wait()).await?;
            }
            other => return other,
        }
    }
}

/// Why a splice relay stopped before moving anything: the caller falls back to buffers.
pub struct Unsupported(pub io::Error);

/// Relays `from` → `to` through `pipe` until `from` ends, then half-closes `to`. If the very
/// first splice is refused (`EINVAL`: the kernel cannot splice these descriptors), returns
/// `Err(Ok(Unsupported))` having moved nothing, so the caller can relay with buffers instead.
pub async fn spliced(
    from: Rc<TcpStream>,
    to: Rc<TcpStream>,
    pipe: Pipe,
    traffic: &Traffic,
) -> Result<(), Result<Unsupported, io::Error>> {
    let mut first = true;
    loop {
        let n = splice_once(
            || Splice::new(from.clone(), pipe.wr.clone(), pipe.size as u32),
            || PollReady::readable(from.clone()),
        )
        .await;
        let n = match n {
            Err(e) if first && op::raw_os_error(&e) == Some(libc::EINVAL) => {
                return Err(Ok(Unsupported(e)))
            }
            other => other.map_err(Err)?,
        };
        first = false;
        if n == 0 {
            break;
        }
        let mut left = n;
        while left > 0 {
            let m = splice_once(
                || Splice::new(pipe.rd.clone(), to.clone(), left as u32),
                || PollReady::writable(to.clone()),
            )
            .await
            .map_err(Err)?;
            if m == 0 {
                return Err(Err(io::ErrorKind::WriteZero.into()));
            }
            left -= m;
            traffic.moved(m);
        }
    }
    half_close(&to).await.map_err(Err)
}
