//! Moving one direction of a proxied connection: bytes received on one socket are sent on the
//! other, until end of stream, which is passed on as a half-close (`shutdown(SHUT_WR)`).
//!
//! Backpressure is structural: a direction owns exactly two buffers. While one is being sent,
//! the next receive fills the other; a filled buffer waits for the previous send to finish, and
//! no receive starts until a buffer is free. A slow receiver therefore slows its sender through
//! TCP flow control, and the proxy never holds more than two buffers per direction, whatever
//! the traffic.
//!
//! By default a direction receives with one multishot receive on the thread's buffer pool
//! instead ([`streamed`]): the kernel goes on filling pooled buffers while the last chunk is
//! sent, with no submission per receive, and at most [`STREAM_QUEUED`] chunks wait (then the
//! receive pauses and TCP's flow control pushes back on the sender, as above).
//!
//! With `--splice`, the bytes go through a pipe inside the kernel instead (socket → pipe →
//! socket), never through user memory; the pipe's size bounds what is in flight.

use proactor::buf::{BufPool, PooledBuf, SendQueue, Slice};
use proactor::op::{self, PollReady, Recv, Send, Shutdown, Splice};
use proactor::IoBuf;
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::{Shutdown as How, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};

/// Counters a direction updates as it goes, read by the connection's log line and idle timer.
pub struct Traffic {
    /// Bytes moved in this direction so far.
    pub bytes: Cell<u64>,
    /// Completed transfers on the whole connection (shared by both directions): the idle timer
    /// only needs to see it change, which costs no clock read per transfer.
    pub activity: Rc<Cell<u64>>,
}

impl Traffic {
    /// New counters sharing the connection's activity count.
    pub fn new(activity: Rc<Cell<u64>>) -> Traffic {
        Traffic { bytes: Cell::new(0), activity }
    }
    fn moved(&self, n: usize) {
        self.bytes.set(self.bytes.get() + n as u64);
        self.activity.set(self.activity.get().wrapping_add(1));
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

/// Passes on end of stream: no more bytes will be sent toward `to`.
pub async fn half_close(to: &Rc<TcpStream>) -> io::Result<()> {
    match proactor::submit(Shutdown::new(to.clone(), How::Write)).await {
        // The peer is already gone: nothing left to tell it.
        Err(e) if op::raw_os_error(&e) == Some(libc::ENOTCONN) => Ok(()),
        other => other,
    }
}

type RecvOp = proactor::Op<Recv<Rc<TcpStream>, Vec<u8>>>;
type SendOp = proactor::Op<Send<Rc<TcpStream>, Slice<Vec<u8>>>>;
type ShutdownOp = proactor::Op<Shutdown<Rc<TcpStream>>>;

/// One direction relayed through two buffers: `from` → `to` until `from` ends, then `to` is
/// half-closed. Written as a plain state machine rather than an `async` loop because it runs
/// for every relayed message: each wake-up looks at the (at most two) operations in flight,
/// and as soon as a receive completes, the send of its bytes and the next receive (into the
/// other buffer, if it is free) are both started in the same turn of the run loop.
///
/// Buffers are never more than two: one being sent (or waiting to be), the other receiving.
/// A buffer that was filled while the previous send still runs waits for it; no receive is
/// started until a buffer is free again, so a slow receiver slows its sender.
pub struct Flow<'a> {
    from: Rc<TcpStream>,
    to: Rc<TcpStream>,
    traffic: &'a Traffic,
    recv: Option<RecvOp>,
    send: Option<SendOp>,
    shutdown: Option<ShutdownOp>,
    /// Free buffers (empty).
    spare: Vec<Vec<u8>>,
    /// A filled buffer waiting for the send in flight to finish.
    queued: Option<Vec<u8>>,
    /// The last receive came back short: the socket is most likely empty now.
    drained: bool,
    /// `from` has ended.
    eof: bool,
    done: bool,
}

/// Relays `from` → `to` with two buffers of `size` bytes until `from` ends, then half-closes
/// `to` (see [`Flow`]).
pub fn buffered(
    from: Rc<TcpStream>,
    to: Rc<TcpStream>,
    size: usize,
    traffic: &Traffic,
) -> Flow<'_> {
    Flow {
        from,
        to,
        traffic,
        recv: None,
        send: None,
        shutdown: None,
        spare: vec![Vec::with_capacity(size), Vec::with_capacity(size)],
        queued: None,
        drained: false,
        eof: false,
        done: false,
    }
}

/// Polls a freshly made operation once, which submits it: inside a running proactor its result
/// only comes in a later turn. `None` if it finished at once anyway (no proactor running).
fn started<O: proactor::op::OpCode>(
    mut op: proactor::Op<O>,
    cx: &mut Context<'_>,
) -> Option<proactor::Op<O>> {
    match Pin::new(&mut op).poll(cx) {
        Poll::Pending => Some(op),
        Poll::Ready(_) => None,
    }
}

/// The error of an operation that could not be started (see [`started`]).
fn not_started() -> io::Error {
    io::Error::other("no proactor is running on this thread")
}

impl Flow<'_> {
    /// Sends the initialised bytes of `buf` from `begin`.
    fn start_send(&mut self, buf: Vec<u8>, begin: usize, cx: &mut Context<'_>) -> io::Result<()> {
        let end = buf.len();
        let op = proactor::submit(Send::new(self.to.clone(), buf.slice(begin..end)));
        self.send = Some(started(op, cx).ok_or_else(not_started)?);
        Ok(())
    }

    /// Takes the completions that arrived and starts what they allow. One pass is enough:
    /// operations started here cannot have completed yet.
    fn step(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(op) = self.send.as_mut() {
            if let Poll::Ready((res, slice)) = Pin::new(op).poll(cx) {
                self.send = None;
                let n = res?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.traffic.moved(n);
                let (begin, end) = (slice.begin() + n, slice.end());
                let mut buf = slice.into_inner();
                if begin < end {
                    // A partial send: the rest of the same buffer, before anything else.
                    self.start_send(buf, begin, cx)?;
                } else {
                    buf.clear();
                    self.spare.push(buf);
                }
            }
        }
        if let Some(op) = self.recv.as_mut() {
            if let Poll::Ready((res, buf)) = Pin::new(op).poll(cx) {
                self.recv = None;
                let n = res?;
                if n == 0 {
                    self.eof = true;
                    self.spare.push(buf);
                } else {
                    self.drained = n < buf.capacity();
                    self.queued = Some(buf);
                }
            }
        }
        // Send what was received, then receive again into the other buffer: both operations
        // go to the kernel in this same turn.
        if self.send.is_none() {
            if let Some(buf) = self.queued.take() {
                self.start_send(buf, 0, cx)?;
            }
        }
        if self.recv.is_none() && !self.eof && self.queued.is_none() {
            if let Some(buf) = self.spare.pop() {
                let op = Recv::new(self.from.clone(), buf).poll_first(self.drained);
                self.recv = Some(started(proactor::submit(op), cx).ok_or_else(not_started)?);
            }
        }
        if self.eof && self.send.is_none() && self.queued.is_none() {
            match self.shutdown.as_mut() {
                None => {
                    let op = proactor::submit(Shutdown::new(self.to.clone(), How::Write));
                    self.shutdown = Some(started(op, cx).ok_or_else(not_started)?);
                }
                Some(op) => {
                    if let Poll::Ready(res) = Pin::new(op).poll(cx) {
                        self.shutdown = None;
                        self.done = true;
                        return Poll::Ready(match res {
                            // The peer is already gone: nothing left to tell it.
                            Err(e) if op::raw_os_error(&e) == Some(libc::ENOTCONN) => Ok(()),
                            other => other,
                        });
                    }
                }
            }
        }
        Poll::Pending
    }
}

impl Future for Flow<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Ok(()));
        }
        this.step(cx)
    }
}

/// Chunks a multishot direction's receive may hold that the direction has not taken yet
/// before the receive pauses (the data then waits in the socket). The direction takes chunks
/// into its send queue as they come, up to [`SEND_QUEUED`], so they wait here only while that
/// is full. Not 1: a receive paused at every chunk is cancelled and submitted again per chunk
/// (callgrind, `redis-benchmark -t get`: 8,864 user instructions per request at 1 against
/// 4,489 at 2).
pub const STREAM_QUEUED: usize = 2;

/// Chunks a multishot direction holds in its send queue ([`SendQueue`]): the send in flight
/// and those waiting behind it, which the next request sends together. With
/// [`STREAM_QUEUED`], at most five 16 KiB chunks per direction, under one of [`buffered`]'s
/// two 64 KiB buffers.
pub const SEND_QUEUED: usize = 3;

/// Buffers in each proxy thread's receive pool, and their size: 8 MiB per thread, whatever
/// the number of connections, taken only by directions with data in hand (an idle connection
/// holds none). The kernel takes a ring's buffers in turn, so a busy thread touches all of
/// them: the pool is the thread's whole receive memory (`slow_reader_keeps_memory_flat` in
/// `cli/tests/proxy.rs` bounds it at 16 MiB). While 102 directions each hold their five
/// chunks — receivers that stopped reading — the others wait for a buffer (losing nothing);
/// `--idle-timeout` ends the stalled ones.
pub const POOL_BUFFERS: u16 = 512;
/// See [`POOL_BUFFERS`].
pub const POOL_BUFFER_SIZE: usize = 16 * 1024;

/// Relays `from` → `to` from one multishot receive into buffers of `pool` (see the module
/// docs) until `from` ends, then half-closes `to`. Chunks go into a [`SendQueue`] as they
/// arrive: one send in flight at a time, and the chunks that came meanwhile leave together in
/// the next (a send bundle where the kernel has them).
pub async fn streamed(
    from: Rc<TcpStream>,
    to: Rc<TcpStream>,
    pool: &BufPool,
    traffic: &Traffic,
) -> io::Result<()> {
    let mut chunks = pool.recv_stream(from).max_queued(STREAM_QUEUED);
    let mut queue = SendQueue::new(to.clone());
    let mut eof = false;
    let res = async {
        while !eof {
            let Some(chunk) = chunks.next().await else { break };
            let chunk = chunk?;
            // A full buffer says more is coming (bulk): while its send is in flight, take the
            // chunks that arrive, for the next send to carry together. A short one most likely
            // drained the socket (request and response): it is sent alone, and the receive is
            // not asked again until that send is done (each pending poll of the receive costs
            // ~350 instructions).
            let mut more = chunk.len() >= POOL_BUFFER_SIZE;
            if !more {
                // The plain path: one send, no queue (the queue's extra polls cost ~1,000 user
                // instructions per redis GET).
                send_chunk(&to, chunk, traffic).await?;
                continue;
            }
            traffic.moved(chunk.len());
            queue.push(chunk);
            std::future::poll_fn(|cx| loop {
                match queue.poll_flush(cx) {
                    Poll::Ready(res) => return Poll::Ready(res),
                    Poll::Pending if !more || eof || queue.len() >= SEND_QUEUED => {
                        return Poll::Pending
                    }
                    Poll::Pending => {}
                }
                match chunks.poll_chunk(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        more = chunk.len() >= POOL_BUFFER_SIZE;
                        traffic.moved(chunk.len());
                        queue.push(chunk);
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => eof = true,
                    Poll::Pending => return Poll::Pending,
                }
            })
            .await?;
        }
        Ok::<(), io::Error>(())
    }
    .await;
    res?;
    half_close(&to).await
}

/// [`streamed`] in a task of its own, awaited by the returned future, which stops the task
/// (cancelling its operations) if it is dropped first — at the other direction's error or the
/// idle timeout. Run so, each direction's task is woken and polled only for its own
/// completions: joined in one task, every completion either way polled both directions' receive
/// streams. Callgrind, `redis-benchmark -t get -n 20000` (50 connections) through the proxy
/// after a warm-up: 5,226 → 4,521 user instructions per request (−13 %).
pub fn streamed_apart(
    from: Rc<TcpStream>,
    to: Rc<TcpStream>,
    pool: BufPool,
    traffic: Rc<Traffic>,
) -> impl Future<Output = io::Result<()>> {
    let task = proactor::spawn(async move { streamed(from, to, &pool, &traffic).await });
    let mut task = AbortOnDrop(task);
    async move {
        match (&mut task.0).await {
            Ok(res) => res,
            Err(e) => Err(io::Error::other(format!("relay task: {e}"))),
        }
    }
}

/// A task stopped when its handle is dropped before it finished.
struct AbortOnDrop<T>(proactor::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends all of a received chunk.
async fn send_chunk(to: &Rc<TcpStream>, chunk: PooledBuf, traffic: &Traffic) -> io::Result<()> {
    let mut buf = chunk.slice(..);
    while buf.begin() < buf.end() {
        let (res, slice) = proactor::submit(Send::new(to.clone(), buf)).await;
        let n = res?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        traffic.moved(n);
        let (begin, end) = (slice.begin() + n, slice.end());
        buf = slice.into_inner().slice(begin..end);
    }
    Ok(())
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
