//! One HTTP connection on the proactor: receive into the request reader, answer every complete
//! request in order (pipelined answers are batched into one send), send large file bodies
//! zero-copy with `sendfile` and others through one reused buffer as a bounded chain of
//! `read_at` → `send`, and close on errors, on `Connection: close`, on the header timeout (408)
//! and on the keep-alive idle timeout.
//!
//! Per request the common case costs one receive operation and one `send(2)`: the answer goes
//! out with a direct non-blocking send (an operation only waits for what the socket did not
//! take), a small file's bytes come from the open-file cache behind the head (`cache.rs`), and
//! the receive's timeout is kept by the per-thread sweep (`timer.rs`), not by a kernel timer.

use super::log;
use super::request::{Limits, ParseError, RequestReader};
use super::response::Simple;
use super::serve::{FileBody, Site};
use super::timer::{self, Watchdog};
use crate::server::Conn;
use proactor::op::{self, raw_os_error};
use proactor::{submit, IoBuf};
use std::future::{poll_fn, Future};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Connection settings: limits and timeouts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Request size limits.
    pub limits: Limits,
    /// Longest time from a request's first byte (or the connection's start) to its last header.
    pub header_timeout: Duration,
    /// Longest wait for the next request on a kept-alive connection.
    pub idle_timeout: Duration,
    /// Longest wait for one send to make progress (a client that stopped reading).
    pub send_timeout: Duration,
    /// Size of the buffer a file body is streamed through.
    pub chunk: usize,
    /// File parts of at least this many bytes go zero-copy with `sendfile`; smaller ones are
    /// copied through the buffer behind their head.
    pub sendfile_from: u64,
    /// No access log.
    pub quiet: bool,
}

/// Queued response bytes beyond this are sent before the next pipelined request is answered.
const FLUSH_AT: usize = 64 * 1024;
/// Least free room worth reading a file chunk into behind queued bytes.
const MIN_READ: usize = 16 * 1024;
/// Most bytes one `sendfile` call is asked for.
const SENDFILE_MAX: u64 = 1 << 30;
/// Lingering close: how long and how much to read and discard before closing.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Serves one connection until it closes.
pub async fn serve(site: Rc<Site>, settings: Rc<Settings>, stream: TcpStream, conn: Conn) {
    let shortest = settings.header_timeout.min(settings.idle_timeout);
    let mut c = Connection {
        watchdog: Watchdog::new(timer::tick_for(shortest), conn.shutdown()),
        reader: RequestReader::new(settings.limits),
        // Allocated by the first response: a client that never finishes a request head (a
        // slowloris) holds no output buffer.
        out: Vec::new(),
        sock: Rc::new(stream),
        site,
        settings,
        conn,
    };
    if let Err(e) = c.run().await {
        tracing::debug!(peer = %c.conn.peer(), "connection ended: {e}");
    }
}

struct Connection {
    sock: Rc<TcpStream>,
    /// The receive timeout (header or keep-alive idle), swept per thread.
    watchdog: Watchdog,
    reader: RequestReader,
    /// Response bytes waiting to be sent, and the buffer file chunks are read into.
    out: Vec<u8>,
    site: Rc<Site>,
    settings: Rc<Settings>,
    conn: Conn,
}

/// How a connection's request loop ended.
enum End {
    /// Close now (the peer is gone, or nothing is left to say).
    Close,
    /// Close gracefully: stop sending, read and discard what the client still sends, then close,
    /// so the last response is not destroyed by a reset.
    Linger,
}

impl Connection {
    async fn run(&mut self) -> io::Result<()> {
        let end = self.requests().await?;
        self.flush().await?;
        if let End::Linger = end {
            self.linger().await;
        }
        Ok(())
    }

    async fn requests(&mut self) -> io::Result<End> {
        // The header timer runs from the connection's start for the first request.
        let mut started = Some(Instant::now());
        loop {
            loop {
                let req = match self.reader.next_request() {
                    Ok(Some(req)) => req,
                    Ok(None) => break,
                    Err(e) => return Ok(self.refuse(e)),
                };
                let keep_alive = req.keep_alive && !self.conn.shutdown().is_set();
                let reply = self.site.respond(&req, keep_alive, &mut self.out);
                if let Some(file) = reply.file {
                    self.send_file(file).await?;
                }
                if !self.settings.quiet {
                    let line = (req.method.as_str(), req.target.as_str(), req.minor);
                    log::access(self.conn.peer().ip(), Some(line), reply.status, reply.body_len);
                }
                if !reply.keep_alive {
                    let unread = self.reader.buffered() > 0;
                    return Ok(if unread { End::Linger } else { End::Close });
                }
                if self.out.len() >= FLUSH_AT {
                    self.flush().await?;
                }
            }
            let in_request = self.reader.in_request();
            if !in_request {
                started = None;
                if self.conn.shutdown().is_set() {
                    return Ok(End::Close);
                }
            } else if started.is_none() {
                started = Some(Instant::now());
            }
            let wait = match started {
                Some(t) => self.settings.header_timeout.saturating_sub(t.elapsed()),
                None => self.settings.idle_timeout,
            };
            match self.receive(wait, !in_request).await? {
                Received::Bytes => {}
                Received::Eof => return Ok(End::Close),
                Received::TimedOut if started.is_some() => {
                    return Ok(self.refuse(ParseError { status: 408, why: "request timeout" }));
                }
                Received::TimedOut => return Ok(End::Close),
            }
        }
    }

    /// Queues the error response for a request that cannot be answered normally.
    fn refuse(&mut self, e: ParseError) -> End {
        tracing::debug!(peer = %self.conn.peer(), "refused request: {e}");
        let len = Simple::error(e.status).write(&mut self.out, false, 1, false);
        if !self.settings.quiet {
            log::access(self.conn.peer().ip(), None, e.status, len);
        }
        End::Linger
    }

    /// Sends what is queued and receives more request bytes, waiting at most `wait` for them;
    /// when `idle`, the server's stop ends the wait too. What is queued goes out at once with a
    /// direct send; only what the socket did not take waits in a send operation, submitted
    /// together with the receive.
    async fn receive(&mut self, wait: Duration, idle: bool) -> io::Result<Received> {
        let sent = send_now(&self.sock, &self.out)?;
        let buf = self.reader.take_buffer(4096);
        let (len, cap) = (buf.len(), buf.capacity());
        let mut recv = submit(op::Recv::new(self.sock.clone(), buf.slice(len..cap)));
        // The sweep cancels the receive at its deadline, or (when idle) as the server stops.
        self.watchdog.arm(Instant::now() + wait, idle, recv.cancel_token());
        let (res, buf) = if sent == self.out.len() {
            self.out.clear();
            recv.await
        } else {
            // The direct send just found the socket full: the rest waits in an operation.
            let out = std::mem::take(&mut self.out);
            let sending = send_rest(self.sock.clone(), out, sent, self.settings.send_timeout);
            let ((sent, out), received) = join(sending, recv).await;
            self.out = out;
            if let Err(e) = sent {
                self.watchdog.disarm();
                return Err(e);
            }
            received
        };
        self.watchdog.disarm();
        self.reader.restore(buf.into_inner());
        match res {
            Ok(0) => Ok(Received::Eof),
            Ok(_) => {
                // What was just received is answered from files as they are now.
                self.site.cache.refresh();
                Ok(Received::Bytes)
            }
            // Cancelled by the sweep: the deadline passed, or the server stops.
            Err(e) if raw_os_error(&e) == Some(libc::ECANCELED) => Ok(Received::TimedOut),
            Err(e) if is_disconnect(&e) => Ok(Received::Eof),
            Err(e) => Err(e),
        }
    }

    /// Sends a file part after the queued head. Small parts are copied behind the head so head
    /// and body leave in one send; large ones go zero-copy with `sendfile`.
    async fn send_file(&mut self, file: FileBody) -> io::Result<()> {
        if file.len >= self.settings.sendfile_from {
            // Corked, the head and the file leave in full-sized segments and only the last
            // partial one is pushed when the cork comes off (as nginx's tcp_nopush does):
            // measured, about one segment less per 1 MiB response than `MSG_MORE` on the head.
            let _cork = Cork::on(self.sock.as_raw_fd());
            self.flush().await?;
            return self.sendfile(file).await;
        }
        self.copy_file(file).await
    }

    /// Streams a file part through the page cache to the socket without copying it into user
    /// memory: `sendfile` on the non-blocking socket, and a poll operation on the proactor
    /// whenever the socket's send buffer is full. Never more than the socket buffer in flight.
    async fn sendfile(&mut self, file: FileBody) -> io::Result<()> {
        let (mut offset, mut left) = (file.offset as libc::off_t, file.len);
        while left > 0 {
            let count = left.min(SENDFILE_MAX) as usize;
            // SAFETY: both descriptors are open (owned by `file` and `self.sock`) and `offset` is
            // a valid out-parameter; sendfile reads no other memory of ours.
            let n = unsafe {
                libc::sendfile(self.sock.as_raw_fd(), file.fd.as_raw_fd(), &mut offset, count)
            };
            if n > 0 {
                left -= n as u64;
                continue;
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => {
                    let ready = submit(op::PollReady::writable(self.sock.clone()));
                    match ready.deadline(self.settings.send_timeout).await {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "client stopped reading",
                            ));
                        }
                        Err(e) => return Err(e),
                    }
                }
                Some(libc::EINTR) => {}
                _ => return Err(err),
            }
        }
        Ok(())
    }

    /// Copies a file part behind the queued head: each chunk is read into the free room of the
    /// output buffer and sent, so at most one buffer's worth of the file is in memory.
    async fn copy_file(&mut self, file: FileBody) -> io::Result<()> {
        let fd = file.fd;
        let (mut offset, mut left) = (file.offset, file.len);
        let chunk = self.settings.chunk.max(MIN_READ);
        while left > 0 {
            if chunk.saturating_sub(self.out.len()) < MIN_READ {
                self.flush().await?;
            }
            let want = (chunk - self.out.len()).min(usize::try_from(left).unwrap_or(usize::MAX));
            self.out.reserve(want);
            let n = match read_cached(&fd, &mut self.out, want, offset) {
                Some(n) => n,
                None => {
                    // Not (all) in the page cache: let the proactor do the read.
                    let start = self.out.len();
                    let buf = std::mem::take(&mut self.out);
                    let read = op::Read::at(fd.clone(), buf.slice(start..start + want), offset);
                    let (res, buf) = submit(read).await;
                    self.out = buf.into_inner();
                    res?
                }
            };
            if n == 0 {
                // The file shrank after its size went out in Content-Length: the response
                // cannot be completed, so the connection must end.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ));
            }
            offset += n as u64;
            left -= n as u64;
            if left > 0 {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Sends everything queued in the output buffer.
    async fn flush(&mut self) -> io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let (res, out) = send_all(self.sock.clone(), out, self.settings.send_timeout).await;
        self.out = out;
        res
    }

    /// Half-closes, then reads and discards for a bounded time so the client can read the last
    /// response before the socket closes.
    async fn linger(&mut self) {
        if submit(op::Shutdown::new(self.sock.clone(), Shutdown::Write)).await.is_err() {
            return;
        }
        let until = Instant::now() + LINGER_TIME;
        let mut drained = 0;
        let mut scratch = Vec::with_capacity(16 * 1024);
        while drained < LINGER_BYTES {
            let wait = until.saturating_duration_since(Instant::now());
            scratch.clear();
            let (res, buf) = submit(op::Recv::new(self.sock.clone(), scratch)).deadline(wait).await;
            scratch = buf;
            match res {
                Ok(n) if n > 0 => drained += n,
                _ => return,
            }
        }
    }
}

/// Sends all of `out` (then empties it), each send waiting at most `timeout` for progress.
async fn send_all(
    sock: Rc<TcpStream>,
    out: Vec<u8>,
    timeout: Duration,
) -> (io::Result<()>, Vec<u8>) {
    match send_now(&sock, &out) {
        Ok(sent) => send_rest(sock, out, sent, timeout).await,
        Err(e) => (Err(e), out),
    }
}

/// Sends `out[sent..]` with send operations (then empties `out`), each waiting at most `timeout`
/// for progress.
async fn send_rest(
    sock: Rc<TcpStream>,
    mut out: Vec<u8>,
    mut sent: usize,
    timeout: Duration,
) -> (io::Result<()>, Vec<u8>) {
    while sent < out.len() {
        let len = out.len();
        let send = op::Send::new(sock.clone(), out.slice(sent..len));
        let (res, buf) = submit(send).deadline(timeout).await;
        out = buf.into_inner();
        match res {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), out),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                let err = io::Error::new(io::ErrorKind::TimedOut, "client stopped reading");
                return (Err(err), out);
            }
            Err(e) => return (Err(e), out),
        }
    }
    out.clear();
    (Ok(()), out)
}

/// Sends as much of `buf` as the socket takes right now, without waiting: usually all of it, so
/// a response costs one system call and no operation. The rest (if the send buffer is full) is
/// left to a send operation.
fn send_now(sock: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < buf.len() {
        let rest = &buf[sent..];
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        // SAFETY: `rest` is valid for reads of its length for the duration of the call.
        let n = unsafe { libc::send(sock.as_raw_fd(), rest.as_ptr().cast(), rest.len(), flags) };
        if n >= 0 {
            sent += n as usize;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => break,
            Some(libc::EINTR) => {}
            _ => return Err(err),
        }
    }
    Ok(sent)
}

/// Runs two futures at once until both are done; their outputs.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

/// Reads up to `want` bytes at `offset` into the spare room of `out` at once, but only if the
/// data is in the page cache (`RWF_NOWAIT`): a cached read costs a copy, nothing to wait for, so
/// it needs no trip through the run loop. `None` when it would block (or failed): the caller then
/// submits the read as an operation, which also reports any real error.
pub(super) fn read_cached(
    fd: &OwnedFd,
    out: &mut Vec<u8>,
    want: usize,
    offset: u64,
) -> Option<usize> {
    out.reserve(want);
    let spare = out.spare_capacity_mut();
    let iov = libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: want.min(spare.len()) };
    // SAFETY: the iovec covers spare capacity of `out`, valid for writes of `iov_len` bytes; the
    // call completes before this function returns, so nothing writes into `out` later.
    let n =
        unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, offset as libc::off_t, libc::RWF_NOWAIT) };
    if n <= 0 {
        return None;
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { out.set_len(out.len() + n) };
    Some(n)
}

/// `TCP_CORK` on a socket while it lives: partial segments wait until it is dropped.
struct Cork(RawFd);

impl Cork {
    fn on(fd: RawFd) -> Cork {
        set_cork(fd, 1);
        Cork(fd)
    }
}

impl Drop for Cork {
    fn drop(&mut self) {
        set_cork(self.0, 0);
    }
}

/// Sets or clears `TCP_CORK` (best effort: without it segments are only smaller).
fn set_cork(fd: RawFd, on: libc::c_int) {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `on` is a valid int for the duration of the call, and `len` is its size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&on as *const libc::c_int).cast(),
            len,
        )
    };
}

/// What a receive brought.
enum Received {
    Bytes,
    Eof,
    /// The deadline passed (or, while idle, the server is stopping).
    TimedOut,
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(raw_os_error(e), Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ENOTCONN))
}
