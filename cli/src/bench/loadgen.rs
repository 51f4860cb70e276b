//! The load generator: N connections on one thread (raw edge-triggered epoll, so it depends on
//! nothing under test), each keeping one message of S bytes in flight — send, read the echo back,
//! check every byte, record the round trip in an HDR histogram — for a warm-up and then a
//! measured window, with the server's and its own CPU time sampled at the window's edges.
//! [`run_exchanges`] does the same with a fixed request and the response it must get (an HTTP
//! keep-alive GET, say) instead of an echo.

use super::proc;
use anyhow::Context;
use hdrhistogram::Histogram;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// How long the in-flight messages may take to come back once the window closes.
pub(super) const DRAIN: Duration = Duration::from_secs(3);
/// How many error messages are kept word for word (all are counted).
const KEEP_ERRORS: usize = 5;

/// What to run.
#[derive(Clone, Debug)]
pub struct Load {
    /// The echo server.
    pub addr: SocketAddr,
    /// Its process, for CPU sampling.
    pub server_pid: u32,
    /// Connections.
    pub conns: usize,
    /// Bytes per message.
    pub size: usize,
    /// Unmeasured time before the window.
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
    /// Messages per second to offer, over all connections (`None`: as fast as the server
    /// answers). A connection whose echo is back waits for its turn (`Pace`).
    pub rate: Option<f64>,
}

/// The pace of a load with a fixed rate: message `n` (counted over all connections from the
/// start) may go out once `n / rate` seconds have passed. A connection whose echo came back
/// early waits in line (oldest first). A stall does not turn into a burst: at most 2 ms worth
/// of messages are owed at any time.
struct Pace {
    rate: f64,
    start: Instant,
    sent: u64,
}

impl Pace {
    /// How far behind the pace may fall before the messages owed are forgiven.
    const SLACK: Duration = Duration::from_millis(2);

    /// Whether one more message may go out at `now` (and counts it if so).
    fn take(&mut self, now: Instant) -> bool {
        let due = ((now - self.start).as_secs_f64() * self.rate) as u64;
        let slack = (Self::SLACK.as_secs_f64() * self.rate).ceil() as u64;
        self.sent = self.sent.max(due.saturating_sub(slack));
        if self.sent < due {
            self.sent += 1;
            true
        } else {
            false
        }
    }
}

/// What was measured over the window.
pub struct Measured {
    /// Round trips completed (and checked) in the window.
    pub messages: u64,
    /// The window's actual length.
    pub elapsed: Duration,
    /// Round-trip latency, nanoseconds.
    pub latency: Histogram<u64>,
    /// Server CPU time (user + system) over the window.
    pub server_cpu: Duration,
    /// The load generator's own CPU time over the window.
    pub client_cpu: Duration,
    /// Time the server's threads spent runnable but waiting for a CPU over the window
    /// (`proc::sched_wait`): other work on its CPU.
    pub server_wait: Duration,
    /// The same for the load generator's threads (the bench's whole process).
    pub client_wait: Duration,
    /// Fewest round trips any one connection completed in the window (fairness).
    pub conn_min: u64,
    /// Most round trips any one connection completed in the window.
    pub conn_max: u64,
    /// Longest wait of any connection for its first echo, from the moment all were connected
    /// (a server slow to accept shows here).
    pub first_echo_max: Duration,
    /// Echoes that differed from what was sent.
    pub mismatches: u64,
    /// Bytes sent and checked back over the whole run (warm-up and drain included).
    pub bytes: u64,
    /// Connection errors, mismatches and stalls, counted.
    pub error_count: u64,
    /// The first few of them, in words.
    pub errors: Vec<String>,
}

impl Measured {
    /// Nothing measured yet.
    pub(super) fn new() -> Measured {
        Measured {
            messages: 0,
            elapsed: Duration::ZERO,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"),
            server_cpu: Duration::ZERO,
            client_cpu: Duration::ZERO,
            server_wait: Duration::ZERO,
            client_wait: Duration::ZERO,
            conn_min: 0,
            conn_max: 0,
            first_echo_max: Duration::ZERO,
            mismatches: 0,
            bytes: 0,
            error_count: 0,
            errors: Vec::new(),
        }
    }

    /// Counts an error and keeps the first few in words.
    pub(super) fn error(&mut self, msg: String) {
        self.error_count += 1;
        if self.errors.len() < KEEP_ERRORS {
            self.errors.push(msg);
        }
    }
}

/// A request and the response a server must give to it, for servers other than an echo: every
/// byte of the response is checked except those in `skip` (a date header's value, say).
#[derive(Clone, Debug)]
pub struct Exchange {
    /// Sent as one message.
    pub request: Vec<u8>,
    /// What must come back, byte for byte outside `skip`.
    pub response: Vec<u8>,
    /// Bytes of `response` not compared.
    pub skip: std::ops::Range<usize>,
}

/// One connection and its message in flight.
struct Conn {
    sock: TcpStream,
    /// The message being sent; `rx` must come back equal to it (or to `expect`'s response).
    tx: Vec<u8>,
    rx: Vec<u8>,
    /// The response to check `rx` against, when the server is not an echo.
    expect: Option<Exchange>,
    sent: usize,
    got: usize,
    seq: u64,
    /// Round trips completed in the measured window.
    done: u64,
    started: Instant,
    readable: bool,
    writable: bool,
    /// A message is in flight.
    busy: bool,
    alive: bool,
}

impl Conn {
    fn new(sock: TcpStream, id: usize, size: usize, expect: Option<Exchange>) -> Conn {
        let (tx, rx) = match &expect {
            Some(x) => (x.request.clone(), vec![0; x.response.len()]),
            None => (pattern(id, size), vec![0; size]),
        };
        Conn {
            sock,
            tx,
            rx,
            expect,
            sent: 0,
            got: 0,
            seq: 0,
            done: 0,
            started: Instant::now(),
            readable: false,
            writable: true,
            busy: false,
            alive: true,
        }
    }

    /// Stamps the next message (its sequence number at both ends) and starts it.
    fn next(&mut self, now: Instant) {
        self.seq += 1;
        if self.expect.is_none() {
            stamp(&mut self.tx, self.seq);
        }
        self.sent = 0;
        self.got = 0;
        self.started = now;
        self.busy = true;
    }

    /// The first byte of a complete message that differs from what should have come back, and
    /// the byte that should have.
    fn mismatch(&self) -> Option<(usize, u8)> {
        let (want, skip) = match &self.expect {
            Some(x) => (&x.response[..], x.skip.clone()),
            None => (&self.tx[..], 0..0),
        };
        let at = self
            .rx
            .iter()
            .zip(want)
            .enumerate()
            .position(|(i, (a, b))| a != b && !skip.contains(&i))?;
        Some((at, want[at]))
    }
}

/// Connection `id`'s message of `size` bytes: a per-connection pattern, so crossed connections
/// or stale bytes show as mismatches (shared by both load generators).
pub(super) fn pattern(id: usize, size: usize) -> Vec<u8> {
    let mut x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Stamps message `seq` into `tx`: its sequence number at both ends (as far as they fit).
pub(super) fn stamp(tx: &mut [u8], seq: u64) {
    let stamp = seq.to_le_bytes();
    let n = stamp.len().min(tx.len());
    tx[..n].copy_from_slice(&stamp[..n]);
    let len = tx.len();
    if len >= 2 * stamp.len() {
        tx[len - stamp.len()..].copy_from_slice(&stamp);
    }
}

/// Runs `load` on the calling thread (pin it first) and measures it.
pub fn run(load: &Load) -> anyhow::Result<Measured> {
    run_with(load, &[])
}

/// Runs `load` with connection `i` sending `exchanges[i % len]`'s request and checking its
/// response, over and over (`load.size` is not used); with no exchanges, as [`run`].
pub fn run_exchanges(load: &Load, exchanges: &[Exchange]) -> anyhow::Result<Measured> {
    run_with(load, exchanges)
}

fn run_with(load: &Load, exchanges: &[Exchange]) -> anyhow::Result<Measured> {
    let ep = Epoll::new().context("epoll_create1")?;
    let mut conns = Vec::with_capacity(load.conns);
    for id in 0..load.conns {
        let sock = TcpStream::connect_timeout(&load.addr, Duration::from_secs(5))
            .with_context(|| format!("connection {id} of {} to {}", load.conns, load.addr))?;
        sock.set_nodelay(true)?;
        sock.set_nonblocking(true)?;
        ep.add(sock.as_raw_fd(), id as u64)?;
        let expect = (!exchanges.is_empty()).then(|| exchanges[id % exchanges.len()].clone());
        conns.push(Conn::new(sock, id, load.size, expect));
    }
    let mut m = Measured::new();
    let start = Instant::now();
    let measure_at = start + load.warmup;
    let end = measure_at + load.window;
    let pace =
        load.rate.filter(|r| r.is_finite() && *r > 0.0).map(|rate| Pace { rate, start, sent: 0 });
    let mut gen = Gen { measuring: false, end, busy: 0, pace, waiting: Default::default() };
    if gen.pace.is_some() {
        gen.waiting.extend(0..conns.len());
    } else {
        for (id, c) in conns.iter_mut().enumerate() {
            c.next(start);
            gen.busy += 1;
            gen.drive(id, c, &mut m);
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let (mut cpu0, mut own0, mut t0) = (Duration::ZERO, Duration::ZERO, start);
    let mut waits0 = Waits::default();
    loop {
        let now = Instant::now();
        if !gen.measuring && now >= measure_at {
            gen.measuring = true;
            m.latency.reset();
            m.messages = 0;
            conns.iter_mut().for_each(|c| c.done = 0);
            cpu0 = proc::process_cpu(load.server_pid).context("server CPU time")?;
            own0 = proc::thread_cpu();
            waits0 = Waits::now(load.server_pid);
            t0 = now;
        }
        let boundary = if now < measure_at {
            measure_at
        } else if now < end {
            end
        } else {
            if m.elapsed.is_zero() {
                m.elapsed = now - t0;
                m.server_cpu = proc::process_cpu(load.server_pid)
                    .context("server CPU time")?
                    .saturating_sub(cpu0);
                m.client_cpu = proc::thread_cpu().saturating_sub(own0);
                Waits::now(load.server_pid).since(&waits0, &mut m);
                m.conn_min = conns.iter().map(|c| c.done).min().unwrap_or(0);
                m.conn_max = conns.iter().map(|c| c.done).max().unwrap_or(0);
            }
            if gen.busy == 0 {
                break;
            }
            if now >= end + DRAIN {
                let stalled: Vec<usize> = (0..conns.len()).filter(|&i| conns[i].busy).collect();
                m.error(format!(
                    "{} connection(s) got no complete echo within {}s (first: connection {}, \
                     {} of {} bytes back)",
                    stalled.len(),
                    DRAIN.as_secs(),
                    stalled[0],
                    conns[stalled[0]].got,
                    conns[stalled[0]].rx.len()
                ));
                m.error_count += stalled.len() as u64 - 1;
                break;
            }
            end + DRAIN
        };
        gen.release(now, &mut conns, &mut m);
        let mut timeout_ms =
            boundary.saturating_duration_since(now).as_millis().clamp(1, 1000) as i32;
        if !gen.waiting.is_empty() && now < end {
            // The next message of the pace is due within a millisecond or so.
            timeout_ms = 1;
        }
        let n = ep.wait(&mut events, timeout_ms)?;
        for ev in &events[..n] {
            let (bits, id) = (ev.events, ev.u64 as usize);
            let c = &mut conns[id];
            if bits & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32
                != 0
            {
                c.readable = true;
            }
            if bits & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                c.writable = true;
            }
            gen.drive(id, c, &mut m);
        }
    }
    Ok(m)
}

/// The measured processes' run-queue waits so far (`proc::sched_wait`), sampled at a window's
/// edges (zero where /proc cannot tell).
#[derive(Default)]
pub(super) struct Waits {
    server: Duration,
    client: Duration,
}

impl Waits {
    /// The waits of the server `pid` and of this process now.
    pub(super) fn now(pid: u32) -> Waits {
        Waits {
            server: proc::sched_wait(pid).unwrap_or_default(),
            client: proc::sched_wait(std::process::id()).unwrap_or_default(),
        }
    }

    /// Records the waits from `start` to these in `m`.
    pub(super) fn since(&self, start: &Waits, m: &mut Measured) {
        m.server_wait = self.server.saturating_sub(start.server);
        m.client_wait = self.client.saturating_sub(start.client);
    }
}

/// The loop's state shared by all connections.
struct Gen {
    measuring: bool,
    end: Instant,
    /// Connections with a message in flight.
    busy: usize,
    /// The pace of a fixed-rate load.
    pace: Option<Pace>,
    /// Connections waiting for their turn under `pace`, oldest first.
    waiting: std::collections::VecDeque<usize>,
}

impl Gen {
    /// Under a pace: starts the next message of each waiting connection whose turn has come.
    fn release(&mut self, now: Instant, conns: &mut [Conn], m: &mut Measured) {
        while now < self.end {
            let Some(&id) = self.waiting.front() else { break };
            if !self.pace.as_mut().is_some_and(|p| p.take(now)) {
                break;
            }
            self.waiting.pop_front();
            let c = &mut conns[id];
            if !c.alive {
                continue;
            }
            c.next(now);
            self.busy += 1;
            self.drive(id, c, m);
        }
    }

    /// Moves connection `id` as far as it can go without blocking.
    fn drive(&mut self, id: usize, c: &mut Conn, m: &mut Measured) {
        while c.alive && c.busy {
            let mut progressed = false;
            if c.sent < c.tx.len() && c.writable {
                match (&c.sock).write(&c.tx[c.sent..]) {
                    Ok(n) => {
                        c.sent += n;
                        c.writable = c.sent == c.tx.len();
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return self.fail(c, m, format!("connection {id}: send: {e}")),
                }
            }
            if c.got < c.rx.len() && c.readable {
                match (&c.sock).read(&mut c.rx[c.got..]) {
                    Ok(0) => {
                        let msg = format!(
                            "connection {id}: the server closed it ({} of {} bytes echoed)",
                            c.got,
                            c.rx.len()
                        );
                        return self.fail(c, m, msg);
                    }
                    Ok(n) => {
                        // A short read drained the socket, a full one ended the message: the
                        // next bytes come with a new edge either way.
                        c.got += n;
                        c.readable = false;
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return self.fail(c, m, format!("connection {id}: receive: {e}")),
                }
            }
            if c.got == c.rx.len() {
                let now = Instant::now();
                if let Some((at, want)) = c.mismatch() {
                    m.mismatches += 1;
                    let msg = format!(
                        "connection {id}, message {}: echoed byte {at} is {:#04x}, sent {:#04x}",
                        c.seq, c.rx[at], want
                    );
                    return self.fail(c, m, msg);
                }
                m.bytes += (c.tx.len() + c.rx.len()) as u64;
                if c.seq == 1 {
                    m.first_echo_max = m.first_echo_max.max(now - c.started);
                }
                if self.measuring && now < self.end {
                    let ns = (now - c.started).as_nanos().min(u64::MAX as u128) as u64;
                    m.latency.saturating_record(ns.max(1));
                    m.messages += 1;
                    c.done += 1;
                }
                // Under a pace, those already in line go first.
                let turn = match self.pace.as_mut() {
                    None => true,
                    Some(p) => self.waiting.is_empty() && p.take(now),
                };
                if now < self.end && turn {
                    c.next(now);
                    progressed = true;
                } else if now < self.end {
                    // Ahead of the pace: in line for a later turn, nothing in flight.
                    c.busy = false;
                    self.busy -= 1;
                    self.waiting.push_back(id);
                } else {
                    c.busy = false;
                    self.busy -= 1;
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn fail(&mut self, c: &mut Conn, m: &mut Measured, msg: String) {
        m.error(msg);
        c.alive = false;
        if c.busy {
            c.busy = false;
            self.busy -= 1;
        }
        let _ = c.sock.shutdown(std::net::Shutdown::Both);
    }
}

/// A minimal epoll instance (edge-triggered registrations).
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event; both descriptors are open.
        let rc = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms`; returns how many of `events` were filled (0 on EINTR).
    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is valid for `max` writable entries.
        let n =
            unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_lets_out_what_is_due_and_forgives_a_stall() {
        let start = Instant::now();
        let mut p = Pace { rate: 1000.0, start, sent: 0 };
        // Nothing is due at the start.
        assert!(!p.take(start));
        // 1 ms in: one message.
        let t = start + Duration::from_millis(1);
        assert!(p.take(t));
        assert!(!p.take(t));
        // 50 ms later only the slack (2 ms, 2 messages) is owed, not 49 messages.
        let t = start + Duration::from_millis(51);
        let n = std::iter::from_fn(|| p.take(t).then_some(())).count();
        assert_eq!(n, 2);
        // Asked every millisecond, it goes on at its rate: 10 in the next 10 ms.
        let mut n = 0;
        for ms in 52..=61 {
            let t = start + Duration::from_millis(ms);
            n += std::iter::from_fn(|| p.take(t).then_some(())).count();
        }
        assert_eq!(n, 10);
    }
}
