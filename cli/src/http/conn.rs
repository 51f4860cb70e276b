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
//! With `--recv multishot` the connection receives from one multishot receive instead (see
//! [`POOL_BUFFERS`]).

use super::log;
use super::request::{Limits, ParseError, RequestReader};
use super::response::Simple;
use super::serve::{FileBody, Site};
use super::timer::{self, Watchdog};
use crate::proxy::relay::Pipe;
use crate::server::{race, Conn, Either};
use proactor::buf::{BufPool, RecvStream};
use proactor::op::{self, raw_os_error};
use proactor::{submit, IoBuf};
use std::future::{poll_fn, Future};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
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
    /// File parts of at least this many bytes go zero-copy (by `body`); smaller ones are
    /// copied through the buffer behind their head.
    pub sendfile_from: u64,
    /// How those large file parts go out.
    pub body: BodyPath,
    /// No access log.
    pub quiet: bool,
}

/// How a large file part goes out (`proactor http --body`).
///
/// `sendfile` by default. Smoke run (`/tmp`-style script: server on CPU 0, `wrk -t1 -c10
/// -d3s` on CPU 1, io_uring, 2 alternating rounds, load average ≈ 10), req/s and server CPU
/// per request: 1 MiB sendfile 337 / 230 at 0.36 / 0.30 ms, splice 294 / 265 at 0.31 / 0.28
/// ms, zc 120 / 99 at 0.94 / 0.84 ms; 16 MiB sendfile 8.0 / 7.1 at 3.8 / 4.2 ms, splice 8.9 /
/// 6.4 at 5.7 / 4.1 ms, zc 6.2 / 5.9 at 17.9 / 19.2 ms. Splice is level with sendfile within
/// the noise (it is what sendfile does inside the kernel, in two operations through a pipe);
/// zero-copy send costs 3–4.5× the CPU over loopback, where the kernel copies anyway and adds
/// the page pinning and the notification, besides the read into user memory.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyPath {
    /// `sendfile(2)` on the non-blocking socket, a poll operation when its buffer is full.
    Sendfile,
    /// Splice operations: file → the connection's pipe → socket, never through user memory.
    Splice,
    /// Read into a buffer, then zero-copy send operations (`SEND_ZC`: the kernel sends from
    /// the buffer's pages and hands it back after its notification).
    Zc,
}

/// Bytes asked of a connection's splice pipe (the system may grant less).
const PIPE_SIZE: usize = 1 << 20;

/// Queued response bytes beyond this are sent before the next pipelined request is answered.
const FLUSH_AT: usize = 64 * 1024;
/// Least free room worth reading a file chunk into behind queued bytes.
const MIN_READ: usize = 16 * 1024;
/// Most bytes one `sendfile` call is asked for.
const SENDFILE_MAX: u64 = 1 << 30;
/// Lingering close: how long and how much to read and discard before closing.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Buffers of each thread's receive pool, and their size (4 MiB per thread): the request
/// reader copies each chunk out as it arrives, so a connection holds a pooled buffer only
/// between a chunk's arrival and the next turn of its task, or — at most [`STREAM_QUEUED`] —
/// while it sends a response and its client pipelines more.
///
/// Used with `--recv multishot` where the driver can run it (one receive request per
/// connection, a completion per chunk, instead of a receive operation per request); not the
/// default — see `run` in cmd/http.rs for the figures.
pub const POOL_BUFFERS: u16 = 1024;
/// See [`POOL_BUFFERS`].
pub const POOL_BUFFER_SIZE: usize = 4096;
/// Chunks a connection's receive stream may queue before it pauses (the data waits in the
/// socket until the connection reads again).
const STREAM_QUEUED: usize = 4;

/// The receive pool of an HTTP thread (see [`POOL_BUFFERS`]); `None` receives one operation at
/// a time into each connection's own buffer.
pub fn recv_pool(mode: crate::server::RecvMode) -> Option<BufPool> {
    let handle = proactor::Handle::current();
    crate::server::multishot_pool("http", &handle, mode, POOL_BUFFERS, POOL_BUFFER_SIZE)
}

/// Serves one connection until it closes; receives from one multishot receive into `pool`'s
/// buffers when there is one.
pub async fn serve(
    site: Rc<Site>,
    settings: Rc<Settings>,
    stream: TcpStream,
    conn: Conn,
    pool: Option<BufPool>,
) {
    let shortest = settings.header_timeout.min(settings.idle_timeout);
    let sock = Rc::new(stream);
    let chunks = pool.map(|p| p.recv_stream(sock.clone()).max_queued(STREAM_QUEUED));
    let mut c = Connection {
        watchdog: Watchdog::new(timer::tick_for(shortest), conn.shutdown()),
        reader: RequestReader::new(settings.limits),
        // Allocated by the first response: a client that never finishes a request head (a
        // slowloris) holds no output buffer.
        out: Vec::new(),
        sock,
        chunks,
        pipe: None,
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
    /// The connection's multishot receive, when it receives that way.
    chunks: Option<RecvStream<Rc<TcpStream>>>,
    /// The pipe large bodies are spliced through (`--body splice`), made with the first.
    pipe: Option<Pipe>,
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
            // Lingering reads and discards with receives of its own.
            self.chunks = None;
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
        if self.chunks.is_some() {
            return self.receive_chunk(wait, idle).await;
        }
        let sent = send_now(&self.sock, &self.out, 0)?;
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
            let sending = send_rest(self.sock.clone(), out, sent, 0, self.settings.send_timeout);
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

    /// [`Connection::receive`] from the multishot receive: the next chunk is copied into the
    /// request reader. The timeout races the stream's next item (the sweep completes
    /// `expired`), so a chunk that arrives meanwhile stays queued in the stream, not lost.
    async fn receive_chunk(&mut self, wait: Duration, idle: bool) -> io::Result<Received> {
        let sent = send_now(&self.sock, &self.out, 0)?;
        let Some(chunks) = self.chunks.as_mut() else {
            return Err(io::Error::other("no receive stream"));
        };
        self.watchdog.arm_wait(Instant::now() + wait, idle);
        let next = race(chunks.next(), self.watchdog.expired());
        let got = if sent == self.out.len() {
            self.out.clear();
            next.await
        } else {
            // The direct send just found the socket full: the rest waits in an operation.
            let out = std::mem::take(&mut self.out);
            let sending = send_rest(self.sock.clone(), out, sent, 0, self.settings.send_timeout);
            let ((sent, out), got) = join(sending, next).await;
            self.out = out;
            if let Err(e) = sent {
                self.watchdog.disarm();
                return Err(e);
            }
            got
        };
        self.watchdog.disarm();
        match got {
            Either::Left(Some(Ok(chunk))) => {
                self.reader.buffer(chunk.len()).extend_from_slice(&chunk);
                // What was just received is answered from files as they are now.
                self.site.cache.refresh();
                Ok(Received::Bytes)
            }
            Either::Left(None) => Ok(Received::Eof),
            Either::Left(Some(Err(e))) if is_disconnect(&e) => Ok(Received::Eof),
            Either::Left(Some(Err(e))) => Err(e),
            // The deadline passed, or the server stops.
            Either::Right(()) => Ok(Received::TimedOut),
        }
    }

    /// Sends a file part after the queued head. Small parts are copied behind the head so head
    /// and body leave in one send; large ones go zero-copy with `sendfile`.
    async fn send_file(&mut self, file: FileBody) -> io::Result<()> {
        if file.len >= self.settings.sendfile_from {
            if self.settings.body == BodyPath::Zc {
                // Nothing held back: a zero-copy send completes only once the kernel lets go of
                // its pages, so none of it may wait for a later send (a corked last partial
                // segment stalled the 1 GiB test).
                self.flush().await?;
                return self.send_zc_file(file).await;
            }
            // The head goes with `MSG_MORE`: it waits in the socket for the body's first
            // bytes and leaves in the same segment, and the body's last chunk (sent without
            // it) pushes the tail. Not `TCP_CORK` around the response, as nginx's tcp_nopush
            // does: besides its two setsockopt calls per response, under the BBR congestion
            // control this VM's kernel defaults to, a corked 1 MiB response armed the pacing
            // timer 2.1–2.9 times (`timer:hrtimer_start` per request in the server's context;
            // nginx 1.6–2.3), `MSG_MORE` 0.25–0.8 times, each arm a timer reprogramming (a VM
            // exit here). Side by side (server on CPU 1, `wrk -t1 -c100 -d3s` on CPU 0, both
            // SCHED_RR, load average 8–10), server CPU per 1 MiB request: `MSG_MORE` 150 / 149
            // / 163 µs by /proc, 150 / 160 µs by `perf stat` task-clock; corked 220 / 173 /
            // 193 and 200 / 220 µs; nginx (sendfile, tcp_nopush) 191 / 210 / 182 and 200 / 230
            // µs. It costs about one more segment per response (16.4–17.6 `net:net_dev_xmit`
            // against 15.8–16.9 corked).
            self.flush_with(libc::MSG_MORE).await?;
            return match self.settings.body {
                BodyPath::Splice => self.splice_file(file).await,
                _ => self.sendfile(file).await,
            };
        }
        self.copy_file(file).await
    }

    /// Streams a file part through the connection's pipe with splice operations: file → pipe
    /// (at the part's offset: the shared descriptor's position is not used) → socket, waiting
    /// for room in the socket with a poll operation. Never more than the pipe in flight.
    async fn splice_file(&mut self, file: FileBody) -> io::Result<()> {
        let pipe = match &self.pipe {
            Some(p) => p,
            None => self.pipe.insert(Pipe::new(PIPE_SIZE)?),
        };
        let (rd, wr, size) = (pipe.rd.clone(), pipe.wr.clone(), pipe.size as u64);
        let (mut offset, mut left) = (file.offset, file.len);
        while left > 0 {
            let want = left.min(size) as u32;
            let n = submit(op::Splice::from_offset(file.fd.clone(), offset, wr.clone(), want))
                .await? as u64;
            if n == 0 {
                return Err(shrank());
            }
            (offset, left) = (offset + n, left - n);
            let mut in_pipe = n;
            while in_pipe > 0 {
                let out = submit(op::Splice::new(rd.clone(), self.sock.clone(), in_pipe as u32));
                match out.await {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(m) => in_pipe -= m as u64,
                    // io_uring: the non-blocking socket is full.
                    Err(e) if raw_os_error(&e) == Some(libc::EAGAIN) => self.writable().await?,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Streams a file part through one buffer: each chunk read (from the page cache at once
    /// when it is there), then sent with zero-copy sends, the buffer back after each send's
    /// notification.
    async fn send_zc_file(&mut self, file: FileBody) -> io::Result<()> {
        let chunk = self.settings.chunk.max(MIN_READ);
        let mut buf = Vec::with_capacity(chunk);
        let (mut offset, mut left) = (file.offset, file.len);
        while left > 0 {
            buf.clear();
            let want = chunk.min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match read_cached(&file.fd, &mut buf, want, offset) {
                Some(n) => n,
                None => {
                    let read = op::Read::at(file.fd.clone(), buf.slice(0..want), offset);
                    let (res, b) = submit(read).await;
                    buf = b.into_inner();
                    res?
                }
            };
            if n == 0 {
                return Err(shrank());
            }
            (offset, left) = (offset + n as u64, left - n as u64);
            let mut sent = 0;
            while sent < n {
                let send = op::SendZc::new(self.sock.clone(), buf.slice(sent..n));
                let (res, b) = submit(send).deadline(self.settings.send_timeout).await;
                buf = b.into_inner();
                match res {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(m) => sent += m,
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(stopped_reading()),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Waits until the socket takes more bytes, at most the send timeout.
    async fn writable(&self) -> io::Result<()> {
        let ready = submit(op::PollReady::writable(self.sock.clone()));
        match ready.deadline(self.settings.send_timeout).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(stopped_reading()),
            Err(e) => Err(e),
        }
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
                Some(libc::EAGAIN) => self.writable().await?,
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
        self.flush_with(0).await
    }

    /// [`Connection::flush`] with extra `MSG_*` flags on every send.
    async fn flush_with(&mut self, flags: libc::c_int) -> io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let (res, out) = send_all(self.sock.clone(), out, flags, self.settings.send_timeout).await;
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

/// Sends all of `out` (then empties it) with `flags` added to each send, each waiting at most
/// `timeout` for progress.
async fn send_all(
    sock: Rc<TcpStream>,
    out: Vec<u8>,
    flags: libc::c_int,
    timeout: Duration,
) -> (io::Result<()>, Vec<u8>) {
    match send_now(&sock, &out, flags) {
        Ok(sent) => send_rest(sock, out, sent, flags, timeout).await,
        Err(e) => (Err(e), out),
    }
}

/// Sends `out[sent..]` with send operations (then empties `out`), `flags` added to each, each
/// waiting at most `timeout` for progress.
async fn send_rest(
    sock: Rc<TcpStream>,
    mut out: Vec<u8>,
    mut sent: usize,
    flags: libc::c_int,
    timeout: Duration,
) -> (io::Result<()>, Vec<u8>) {
    while sent < out.len() {
        let len = out.len();
        let send = op::Send::new(sock.clone(), out.slice(sent..len)).flags(flags);
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
/// left to a send operation. `more` is added to the send's flags (`MSG_MORE` or 0).
fn send_now(sock: &TcpStream, buf: &[u8], more: libc::c_int) -> io::Result<usize> {
    let mut sent = 0;
    while sent < buf.len() {
        let rest = &buf[sent..];
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | more;
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

/// The error of a file that shrank after its size went out in `Content-Length`: the response
/// cannot be completed, so the connection must end.
fn shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent")
}

/// The error of a send that made no progress within the send timeout.
fn stopped_reading() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")
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
