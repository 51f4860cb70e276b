//! `proactor chat`: a line-based chat room, on one proactor thread or on `--threads N`.
//!
//! With several threads there is still one room: clients on every thread see each other. The
//! room (who is connected, the nick table) sits behind mutexes, and each client's outbound queue
//! is a mutex-guarded list of shared lines (`Arc<[u8]>`), so a line broadcast from any thread is
//! one allocation however many threads it reaches. Each client's reader and writer tasks run on
//! the thread its connection was placed on; a broadcast from another thread only appends to the
//! queue and wakes the writer (task wakers are thread-safe). One thread is the same code with
//! uncontended locks.
//!
//! # Protocol
//!
//! Lines end with `\n` (a `\r` before it is dropped). Client to server:
//!
//! | line          | meaning                                                         |
//! |---------------|-----------------------------------------------------------------|
//! | first line    | the client's nick (unless it is `/who` or `/quit`)              |
//! | `/nick NAME`  | choose or change the nick                                       |
//! | `/who`        | list who is in the room                                         |
//! | `/quit`       | leave                                                           |
//! | other `/...`  | refused: unknown command                                        |
//! | anything else | a message to everyone else in the room (empty lines are ignored) |
//!
//! A nick is 1–32 characters, each a letter, a digit, `_`, `-` or `.`. A client without a nick
//! is not in the room yet: it gets no messages or notices and cannot send.
//!
//! Server to client, one line each:
//!
//! | line                                   | when                                           |
//! |----------------------------------------|------------------------------------------------|
//! | `* welcome to proactor chat; send your nick` | on connect                               |
//! | `* you are NICK`                       | the nick was taken (first time)                 |
//! | `* you are now NICK`                   | the nick was changed                            |
//! | `* NICK joined`                        | to the others: someone got a nick               |
//! | `* OLD is now NEW`                     | to the others: someone changed nick             |
//! | `<NICK> text`                          | to the others: a message                        |
//! | `* online: A, B, C`                    | answer to `/who` (sorted)                       |
//! | `* NICK left`                          | to the others: someone quit or disconnected     |
//! | `* NICK left (too slow)`               | to the others: someone was cut off              |
//! | `* bye`                                | answer to `/quit`, then the server closes       |
//! | `* server shutting down`               | on SIGINT/SIGTERM, then the server closes       |
//! | `! nick NICK is taken`                 | duplicate nick refused                          |
//! | `! invalid nick "X": ...`              | nick refused                                    |
//! | `! line longer than 4096 bytes; not sent` | the line was dropped                         |
//! | `! line is not valid UTF-8; not sent`  | the line was dropped                            |
//! | `! unknown command /X; ...`            | the line was dropped                            |
//! | `! send your nick first`               | a command needing a nick, before one was set    |
//! | `! too slow: ...; disconnecting`       | the client fell behind and is cut off           |
//!
//! # Slow clients
//!
//! Every client has its own outbound queue and a writer task draining it into the socket. A
//! broadcast only appends to queues, so one client that reads slowly (or never) cannot stall the
//! room. When a client's queue holds more than `--max-queue` bytes, the queue is dropped, the
//! client is sent the `! too slow` line (given a few seconds to take it) and disconnected; the
//! others see `* NICK left (too slow)`. A cut-off decided on another thread (a broadcast found
//! the queue full) is handed to the client's own reader through its `kicked` signal. Memory per client is thus bounded by about twice
//! `--max-queue` (the queue, plus the batch being written).

use crate::server::{race, serve_threads, Conn, Either, Event, RecvMode, ServerOpts};
use proactor::buf::BufPool;
use proactor::net::{ReadHalf, TcpStream, WriteHalf};
use proactor::op::raw_os_error;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

/// Longest line a client may send, newline excluded.
pub const MAX_LINE: usize = 4096;

/// Longest nick, in characters.
const MAX_NICK: usize = 32;

/// How long a departing client's writer may take to flush its last lines.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Receive buffer per connection (one receive at a time), or per pooled buffer (multishot).
const RECV_BUF: usize = 8 * 1024;

/// Buffers in each thread's receive pool when clients receive multishot (2 MiB of 8 KiB
/// buffers). A line is handled as soon as it arrives, so a buffer is back in the pool within
/// the turn that filled it: only connections with unhandled data in hand hold one.
const POOL_BUFFERS: u16 = 256;

const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 1235));

/// Arguments of `proactor chat`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerOpts,

    /// Most bytes waiting to be sent to one client; a client further behind is disconnected.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024)]
    max_queue: usize,
}

pub fn run(args: Args) -> ExitCode {
    let room = Arc::new(Room {
        clients: Mutex::default(),
        nicks: Mutex::default(),
        max_queue: args.max_queue.max(MAX_LINE + 64),
    });
    // One room for every thread; each thread spawns its own connections' tasks.
    // One receive at a time by default: with the multishot receive, the chatters of
    // `slow_client_is_cut_off_others_keep_chatting` (cli/tests/chat.rs: 4 clients sending
    // 1 KB lines every 2 ms, a 64 KiB queue limit) were cut off as too slow along with the slow
    // client in 4 of 6 one-thread runs, both drivers (loaded 2-core machine; 0 of 4 one-shot): each
    // turn a reader hands on everything the kernel queued for it, so broadcasts arrive in
    // larger bursts than one 8 KiB receive per turn makes, and a writer's queue passes the
    // limit. `--recv multishot` turns it on (an idle client then holds no buffer).
    let recv = args.server.recv.unwrap_or(RecvMode::Oneshot);
    serve_threads("chat", &args.server, DEFAULT_LISTEN, move || {
        let room = room.clone();
        // With `--recv multishot`: one receive request per connection instead of one per
        // chunk, from this thread's pool.
        let handle = proactor::Handle::current();
        let pool = crate::server::multishot_pool("chat", &handle, recv, POOL_BUFFERS, RECV_BUF);
        move |stream: TcpStream, conn: Conn| {
            let task = client_task(room.clone(), stream, conn, pool.clone());
            drop(proactor::spawn(task));
        }
    })
}

/// Locks `m`, carrying on past a poisoned lock (the data stays consistent: every critical
/// section here is a few plain field updates).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everyone connected (on any thread), and who holds which nick.
struct Room {
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    /// Nick to client id; sorted, for `/who`.
    nicks: Mutex<BTreeMap<String, u64>>,
    max_queue: usize,
}

/// One connected client, shared by its reader (the connection task), its writer task and the
/// room; broadcasts from other threads reach it through the room.
struct Client {
    id: u64,
    nick: Mutex<Option<String>>,
    out: Mutex<Outbox>,
    /// Set when the client must stop reading: it was cut off, or its socket broke.
    kicked: Signal,
    /// The writer failed (the socket broke): a plain leave, not a kick.
    broken: AtomicBool,
    max_queue: usize,
    /// The thread the client's tasks run on, and a way to run a wake-up there.
    home: (std::thread::ThreadId, proactor::runtime::RemoteHandle),
}

impl Client {
    /// Wakes one of this client's tasks: directly on its own thread, else by posting the wake to
    /// that thread's loop, as `proactor::threads::Room` does (the wake then runs in that loop's
    /// drain of posted work, which also wakes the loop if it is blocked in the driver).
    fn wake_home(&self, w: Waker) {
        if std::thread::current().id() == self.home.0 {
            w.wake();
        } else if let Err(w) = self.home.1.post(move || w.wake()) {
            tracing::debug!(client = self.id, "wake-up not delivered: {w}");
        }
    }
}

/// A one-shot flag that any thread may set and one task awaits (the reader, on the client's own
/// thread).
#[derive(Default)]
struct Signal(Mutex<(bool, Option<Waker>)>);

impl Signal {
    /// Sets the flag; returns the waiting task's waker, for the caller to wake.
    #[must_use]
    fn set(&self) -> Option<Waker> {
        let mut s = lock(&self.0);
        s.0 = true;
        s.1.take()
    }

    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            let mut s = lock(&self.0);
            if s.0 {
                Poll::Ready(())
            } else {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Lines waiting for a client's writer.
#[derive(Default)]
struct Outbox {
    lines: VecDeque<Arc<[u8]>>,
    bytes: usize,
    /// No more lines will be queued: the writer exits once the queue is empty.
    closing: bool,
    writer: Option<Waker>,
}

impl Client {
    /// Queues `line` (which ends in `\n`); cuts the client off if its queue would grow too long.
    fn send(&self, line: Arc<[u8]>) {
        let mut out = lock(&self.out);
        if out.closing {
            return;
        }
        if out.bytes + line.len() > self.max_queue {
            let waiting = out.bytes;
            drop(out);
            return self.kick(waiting);
        }
        out.bytes += line.len();
        out.lines.push_back(line);
        let writer = out.writer.take();
        drop(out);
        if let Some(w) = writer {
            self.wake_home(w);
        }
    }

    fn notice(&self, text: &str) {
        self.send(line(text));
    }

    /// Drops the queue, queues the reason as the last line, and stops the reader.
    fn kick(&self, waiting: usize) {
        tracing::debug!(client = self.id, "too slow: {waiting} bytes queued");
        let reason = format!(
            "! too slow: {waiting} bytes of messages waiting, more than the limit of {}; disconnecting",
            self.max_queue
        );
        let mut out = lock(&self.out);
        if out.closing {
            return; // already leaving (or kicked by another thread's broadcast just now)
        }
        out.lines.clear();
        out.bytes = 0;
        out.lines.push_back(line(&reason));
        drop(out);
        self.close();
        if let Some(w) = self.kicked.set() {
            self.wake_home(w);
        }
    }

    /// No more lines: the writer flushes what is queued, then ends.
    fn close(&self) {
        let writer = {
            let mut out = lock(&self.out);
            out.closing = true;
            out.writer.take()
        };
        if let Some(w) = writer {
            self.wake_home(w);
        }
    }
}

/// A protocol line from text: the bytes plus `\n`, shareable between recipients.
fn line(text: &str) -> Arc<[u8]> {
    let mut v = Vec::with_capacity(text.len() + 1);
    v.extend_from_slice(text.as_bytes());
    v.push(b'\n');
    v.into()
}

impl Room {
    /// Sends `line` to every client with a nick except `except`.
    fn broadcast(&self, except: u64, line: Arc<[u8]>) {
        let targets: Vec<Arc<Client>> = lock(&self.clients)
            .values()
            .filter(|c| c.id != except && lock(&c.nick).is_some())
            .cloned()
            .collect();
        for c in targets {
            c.send(line.clone());
        }
    }

    /// Gives `client` the nick `name`, announcing it. Returns an error line on refusal.
    fn set_nick(&self, client: &Client, name: &str) -> Result<(), String> {
        validate_nick(name)?;
        let old = lock(&client.nick).clone();
        if old.as_deref() == Some(name) {
            client.notice(&format!("* you are now {name}"));
            return Ok(());
        }
        {
            let mut nicks = lock(&self.nicks);
            if nicks.contains_key(name) {
                return Err(format!("! nick {name} is taken"));
            }
            if let Some(old) = &old {
                nicks.remove(old);
            }
            nicks.insert(name.to_string(), client.id);
            if old.is_none() {
                // Queued before the nick makes the client visible to broadcasts (from other
                // threads too): nothing of the room's traffic can reach it ahead of this line.
                client.notice(&format!("* you are {name}"));
            }
            // Still under the nick table's lock: a concurrent `/who` sees table and client agree.
            *lock(&client.nick) = Some(name.to_string());
        }
        match old {
            None => self.broadcast(client.id, line(&format!("* {name} joined"))),
            Some(old) => {
                client.notice(&format!("* you are now {name}"));
                self.broadcast(client.id, line(&format!("* {old} is now {name}")));
            }
        }
        Ok(())
    }

    /// Removes `client` from the room; the others hear about it if it had a nick.
    fn leave(&self, client: &Client, why: &str) {
        lock(&self.clients).remove(&client.id);
        let nick = lock(&client.nick).take();
        if let Some(nick) = nick {
            lock(&self.nicks).remove(&nick);
            self.broadcast(client.id, line(&format!("* {nick} left{why}")));
        }
    }

    fn who(&self) -> String {
        let nicks = lock(&self.nicks);
        let names: Vec<&str> = nicks.keys().map(String::as_str).collect();
        format!("* online: {}", names.join(", "))
    }
}

fn validate_nick(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
    let count = name.chars().count();
    if (1..=MAX_NICK).contains(&count) && name.chars().all(ok_char) {
        Ok(())
    } else {
        Err(format!("! invalid nick {name:?}: use 1-{MAX_NICK} letters, digits, '_', '-' or '.'"))
    }
}

/// What the reader does after a line.
enum Flow {
    Continue,
    Quit,
}

/// Acts on one complete line (without its `\n`).
fn handle_line(room: &Room, client: &Client, raw: &[u8]) -> Flow {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if raw.len() > MAX_LINE {
        client.notice(&format!("! line longer than {MAX_LINE} bytes; not sent"));
        return Flow::Continue;
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        client.notice("! line is not valid UTF-8; not sent");
        return Flow::Continue;
    };
    let has_nick = lock(&client.nick).is_some();
    let (cmd, rest) = match text.strip_prefix('/') {
        Some(c) => c.split_once(' ').map_or((c, ""), |(c, r)| (c, r.trim())),
        None => ("", text),
    };
    match (text.starts_with('/'), cmd) {
        (true, "quit") => {
            client.notice("* bye");
            return Flow::Quit;
        }
        (true, "who") if has_nick => client.notice(&room.who()),
        (true, "nick") => {
            if let Err(e) = room.set_nick(client, rest) {
                client.notice(&e);
            }
        }
        (true, "who") => client.notice("! send your nick first"),
        (true, other) => client.notice(&format!(
            "! unknown command /{other}; commands are /nick NAME, /who and /quit"
        )),
        (false, _) if !has_nick => {
            if let Err(e) = room.set_nick(client, text.trim()) {
                client.notice(&e);
            }
        }
        (false, _) if text.is_empty() => {}
        (false, _) => {
            let nick = lock(&client.nick).clone().unwrap_or_default();
            room.broadcast(client.id, line(&format!("<{nick}> {text}")));
        }
    }
    Flow::Continue
}

/// Splits received bytes into lines, enforcing [`MAX_LINE`] without buffering more than that.
#[derive(Default)]
struct LineSplitter {
    partial: Vec<u8>,
    /// The current line grew past the limit: drop bytes up to its end.
    overlong: bool,
}

impl LineSplitter {
    /// Feeds `data`; calls `on_line` with each complete line (or `None` for an overlong one).
    /// Stops early, returning `Flow::Quit`, when `on_line` does.
    fn feed(&mut self, mut data: &[u8], mut on_line: impl FnMut(Option<&[u8]>) -> Flow) -> Flow {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            let (head, tail) = (&data[..pos], &data[pos + 1..]);
            data = tail;
            let flow = if self.overlong {
                self.overlong = false;
                on_line(None)
            } else if self.partial.is_empty() {
                on_line(Some(head))
            } else if self.partial.len() + head.len() > MAX_LINE + 1 {
                self.partial.clear();
                on_line(None)
            } else {
                self.partial.extend_from_slice(head);
                let flow = on_line(Some(&self.partial));
                self.partial.clear();
                flow
            };
            if let Flow::Quit = flow {
                return Flow::Quit;
            }
        }
        if !self.overlong {
            // One byte of slack for a `\r` before the `\n`.
            if self.partial.len() + data.len() > MAX_LINE + 1 {
                self.partial.clear();
                self.overlong = true;
            } else {
                self.partial.extend_from_slice(data);
            }
        }
        Flow::Continue
    }

    /// At end of input: the unterminated last line, if any.
    fn finish(&mut self, on_line: impl FnOnce(Option<&[u8]>) -> Flow) -> Flow {
        if self.overlong {
            on_line(None)
        } else if self.partial.is_empty() {
            Flow::Continue
        } else {
            let last = std::mem::take(&mut self.partial);
            on_line(Some(&last))
        }
    }
}

/// How a client's reading ended.
enum End {
    /// EOF, `/quit` or a socket error.
    Left,
    /// Cut off for being too slow.
    Kicked,
    /// The server is stopping.
    Shutdown,
}

/// One connection: the reader loop here, the writer as a task of its own.
async fn client_task(room: Arc<Room>, stream: TcpStream, conn: Conn, pool: Option<BufPool>) {
    let (rd, wr) = stream.into_split();
    let client = Arc::new(Client {
        id: conn.id(),
        nick: Mutex::new(None),
        out: Mutex::default(),
        kicked: Signal::default(),
        broken: AtomicBool::new(false),
        max_queue: room.max_queue,
        home: (std::thread::current().id(), proactor::Handle::current().remote()),
    });
    // Set when the writer must give up on a send that does not progress (this thread only).
    let abort = Event::new();
    lock(&room.clients).insert(client.id, client.clone());
    let writer = proactor::spawn(writer_task(wr, client.clone(), abort.clone()));
    client.notice("* welcome to proactor chat; send your nick");

    let reading = read_lines(&room, &client, &rd, pool.as_ref());
    let end = match race(reading, race(client.kicked.wait(), conn.shutdown().wait())).await {
        Either::Left(()) => End::Left,
        Either::Right(Either::Left(())) if client.broken.load(Ordering::SeqCst) => End::Left,
        Either::Right(Either::Left(())) => End::Kicked,
        Either::Right(Either::Right(())) => End::Shutdown,
    };
    match end {
        End::Left => room.leave(&client, ""),
        End::Kicked => room.leave(&client, " (too slow)"),
        End::Shutdown => {
            // Everyone is leaving: no point telling the others.
            client.notice("* server shutting down");
            lock(&room.clients).remove(&client.id);
        }
    }
    client.close();
    if let Either::Right(_) = race(writer, proactor::time::sleep(FLUSH_TIMEOUT)).await {
        tracing::debug!(conn = conn.id(), "writer did not flush within {FLUSH_TIMEOUT:?}; closing");
        abort.set();
    }
}

/// Reads and handles lines until EOF, an error or `/quit`.
async fn read_lines(room: &Room, client: &Client, stream: &ReadHalf, pool: Option<&BufPool>) {
    let mut splitter = LineSplitter::default();
    let on_line = |l: Option<&[u8]>| match l {
        Some(l) => handle_line(room, client, l),
        None => {
            client.notice(&format!("! line longer than {MAX_LINE} bytes; not sent"));
            Flow::Continue
        }
    };
    if let Some(pool) = pool {
        // One multishot receive; each chunk's buffer goes back to the pool once its lines are
        // handled.
        let mut chunks = stream.recv_stream(pool);
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(buf) => {
                    if let Flow::Quit = splitter.feed(&buf, on_line) {
                        return;
                    }
                }
                Err(e) => return recv_failed(client, &e),
            }
        }
        splitter.finish(on_line);
        return;
    }
    let mut buf = Vec::with_capacity(RECV_BUF);
    loop {
        buf.clear();
        let (res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(0) => {
                splitter.finish(on_line);
                return;
            }
            Ok(_) => {
                if let Flow::Quit = splitter.feed(&buf, on_line) {
                    return;
                }
            }
            Err(e) => return recv_failed(client, &e),
        }
    }
}

/// Logs why a client's receive failed (a reset is the client's own doing: not logged).
fn recv_failed(client: &Client, e: &std::io::Error) {
    if raw_os_error(e) != Some(libc::ECONNRESET) {
        tracing::debug!(client = client.id, "recv: {e}");
    }
}

/// Drains the client's queue into the socket, one batch per send, until closed and empty.
async fn writer_task(stream: WriteHalf, client: Arc<Client>, abort: Event) {
    let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
    loop {
        let last = std::future::poll_fn(|cx| {
            let mut out = lock(&client.out);
            if out.lines.is_empty() && !out.closing {
                out.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            buf.clear();
            for l in out.lines.drain(..) {
                buf.extend_from_slice(&l);
            }
            out.bytes = 0;
            Poll::Ready(out.closing)
        })
        .await;
        let sending = stream.write_all(std::mem::take(&mut buf));
        match race(sending, abort.wait()).await {
            Either::Left((Ok(()), b)) => buf = b,
            Either::Left((Err(e), _)) => {
                tracing::debug!(client = client.id, "send: {e}");
                // Nobody can hear this client any more: stop its reader too.
                client.close();
                client.broken.store(true, Ordering::SeqCst);
                if let Some(w) = client.kicked.set() {
                    w.wake(); // the writer runs on the client's own thread
                }
                return;
            }
            Either::Right(()) => return,
        }
        if last && lock(&client.out).lines.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        for c in chunks {
            s.feed(c, |l| {
                lines.push(l.map(<[u8]>::to_vec));
                Flow::Continue
            });
        }
        s.finish(|l| {
            lines.push(l.map(<[u8]>::to_vec));
            Flow::Continue
        });
        lines
    }

    #[test]
    fn lines_split_across_chunks() {
        let got = split(&[b"he", b"llo\nwor", b"ld\n\nlast"]);
        let want: Vec<Option<Vec<u8>>> = vec![
            Some(b"hello".to_vec()),
            Some(b"world".to_vec()),
            Some(vec![]),
            Some(b"last".to_vec()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn overlong_lines_are_dropped_whole() {
        let long = vec![b'x'; MAX_LINE + 10];
        let got = split(&[&long[..100], &long[100..], b"\nok\n"]);
        assert_eq!(got, vec![None, Some(b"ok".to_vec())]);
        let exact = vec![b'y'; MAX_LINE];
        let mut input = exact.clone();
        input.extend_from_slice(b"\r\n");
        assert_eq!(split(&[&input]), vec![Some([&exact[..], b"\r"].concat())]);
    }

    #[test]
    fn nicks() {
        assert!(validate_nick("alice").is_ok());
        assert!(validate_nick("bob_2-x.y").is_ok());
        assert!(validate_nick("").is_err());
        assert!(validate_nick("two words").is_err());
        assert!(validate_nick(&"n".repeat(33)).is_err());
    }
}
