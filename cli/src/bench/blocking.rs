//! The second load generator (`--loadgen threads`), written apart from `loadgen.rs` to check its
//! ratios: blocking std I/O on up to 32 OS threads, the connections dealt out to them; each
//! thread writes every one of its connections' messages, then reads every echo back in order,
//! compares, and repeats. No readiness loop at all, so whatever the epoll loop's own behaviour
//! adds to (or takes from) a server's figures is not here. Same message contents (the sequence
//! stamp and per-connection pattern) and one message in flight per connection; same figures: the
//! server's CPU sampled at the window's edges, the workers' own CPU summed, latencies of the round
//! trips completed inside the window (a lockstep round trip includes the wait for the echoes read
//! before it, so its latencies are not comparable with the epoll generator's; its ratios are).
//!
//! One thread per connection was tried first: on this VM every message then costs a cross-core
//! wake-up of a sleeping thread (about 30 µs), and at 100 connections it drove a quarter of the
//! epoll generator's messages/s with its core 40 % idle — it measured wake-up latency, not the
//! servers.

use super::loadgen::{self, Load, Measured, DRAIN};
use super::proc;
use anyhow::Context;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Connections this generator takes at most.
pub const MAX_CONNS: usize = 15_000;
/// Worker threads at most (fewer when there are fewer connections).
pub const MAX_THREADS: usize = 32;
/// The largest message: a thread writes all its connections' messages before it reads, so each
/// echo must fit in its socket's receive buffer or the server's echo (and then our write)
/// would block for good (loopback receive buffers start at 128 KiB; 16 KiB leaves room).
pub const MAX_SIZE: usize = 16 * 1024;
/// Each worker's stack: its buffers are on the heap, it calls nothing deep.
const STACK: usize = 64 * 1024;

/// What one worker measured.
struct Worker {
    /// Round-trip nanoseconds of the messages completed inside the window.
    latencies: Vec<u64>,
    /// Round trips inside the window, per connection.
    done: Vec<u64>,
    /// Its own CPU time from its first step inside the window to its last.
    cpu: Duration,
    first_echo: Duration,
    mismatches: u64,
    errors: Vec<String>,
}

/// The window every worker measures in.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure_at: Instant,
    end: Instant,
}

/// Runs `load` with a thread per connection (they inherit the calling thread's CPU and
/// priority: pin it first) and measures it.
pub fn run(load: &Load) -> anyhow::Result<Measured> {
    anyhow::ensure!(
        load.conns <= MAX_CONNS && load.size <= MAX_SIZE,
        "the threads load generator takes at most {MAX_CONNS} connections and {MAX_SIZE}-byte \
         messages"
    );
    let threads = load.conns.clamp(1, MAX_THREADS);
    let mut groups: Vec<Vec<(usize, TcpStream)>> = (0..threads).map(|_| Vec::new()).collect();
    for id in 0..load.conns {
        let sock = TcpStream::connect_timeout(&load.addr, Duration::from_secs(5))
            .with_context(|| format!("connection {id} of {} to {}", load.conns, load.addr))?;
        sock.set_nodelay(true)?;
        // A read that waits this long is a stalled echo.
        sock.set_read_timeout(Some(DRAIN))?;
        groups[id % threads].push((id, sock));
    }
    // The workers start together once every one exists (or stop at once if one cannot start).
    let gate = Arc::new(Gate::default());
    let mut workers = Vec::with_capacity(threads);
    for (id, socks) in groups.into_iter().enumerate() {
        let (g, size) = (gate.clone(), load.size);
        let spawned = std::thread::Builder::new()
            .name(format!("load-{id}"))
            .stack_size(STACK)
            .spawn(move || g.wait().map(|w| work(socks, size, w)));
        match spawned {
            Ok(h) => workers.push(h),
            Err(e) => {
                gate.open(None);
                for h in workers {
                    let _ = h.join();
                }
                anyhow::bail!("cannot start load thread {id} of {threads}: {e}");
            }
        }
    }
    let start = Instant::now();
    let w =
        Window { start, measure_at: start + load.warmup, end: start + load.warmup + load.window };
    gate.open(Some(w));
    sleep_until(w.measure_at);
    let cpu0 = proc::process_cpu(load.server_pid).context("server CPU time")?;
    let waits0 = loadgen::Waits::now(load.server_pid);
    let t0 = Instant::now();
    sleep_until(w.end);
    let cpu1 = proc::process_cpu(load.server_pid).context("server CPU time")?;
    let waits1 = loadgen::Waits::now(load.server_pid);
    let elapsed = t0.elapsed();
    let mut m = Measured::new();
    m.elapsed = elapsed;
    m.server_cpu = cpu1.saturating_sub(cpu0);
    waits1.since(&waits0, &mut m);
    let (mut conn_min, mut conn_max) = (u64::MAX, 0);
    for h in workers {
        let Some(wk) = h.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))? else {
            continue;
        };
        for &done in &wk.done {
            conn_min = conn_min.min(done);
            conn_max = conn_max.max(done);
        }
        for &ns in &wk.latencies {
            m.latency.saturating_record(ns.max(1));
        }
        m.messages += wk.latencies.len() as u64;
        m.client_cpu += wk.cpu;
        m.first_echo_max = m.first_echo_max.max(wk.first_echo);
        m.mismatches += wk.mismatches;
        for e in wk.errors {
            m.error(e);
        }
    }
    m.conn_min = if conn_min == u64::MAX { 0 } else { conn_min };
    m.conn_max = conn_max;
    Ok(m)
}

/// Where the workers wait for the window: `None` until it is set, then the window, or `None`
/// inside for "stop".
#[derive(Default)]
struct Gate {
    state: Mutex<Option<Option<Window>>>,
    opened: Condvar,
}

impl Gate {
    fn open(&self, w: Option<Window>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
        self.opened.notify_all();
    }

    fn wait(&self) -> Option<Window> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(w) = *state {
                return w;
            }
            state = self.opened.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// One connection of a worker.
struct Conn {
    id: usize,
    sock: TcpStream,
    tx: Vec<u8>,
    rx: Vec<u8>,
    sent: Instant,
    /// Round trips completed inside the window.
    done: u64,
}

/// A worker's loop over its connections, in lockstep: write every connection's message, then
/// read every echo back in the same order (the first read blocks, the later ones mostly find
/// their echo there already); until a round that completed after the window's end.
fn work(socks: Vec<(usize, TcpStream)>, size: usize, w: Window) -> Worker {
    let mut wk = Worker {
        latencies: Vec::new(),
        done: Vec::new(),
        cpu: Duration::ZERO,
        first_echo: Duration::ZERO,
        mismatches: 0,
        errors: Vec::new(),
    };
    let mut conns: Vec<Conn> = socks
        .into_iter()
        .map(|(id, sock)| Conn {
            id,
            sock,
            tx: loadgen::pattern(id, size),
            rx: vec![0; size],
            sent: w.start,
            done: 0,
        })
        .collect();
    let mut cpu0: Option<Duration> = None;
    let mut seq = 0u64;
    'run: loop {
        seq += 1;
        for c in conns.iter_mut() {
            loadgen::stamp(&mut c.tx, seq);
            c.sent = Instant::now();
            if let Err(e) = c.sock.write_all(&c.tx) {
                wk.errors.push(format!("connection {}: send: {e}", c.id));
                break 'run;
            }
        }
        let mut over = false;
        for c in conns.iter_mut() {
            if let Err(msg) = read_echo(c) {
                wk.errors.push(msg);
                break 'run;
            }
            let now = Instant::now();
            if c.rx != c.tx {
                wk.mismatches += 1;
                let at = c.rx.iter().zip(&c.tx).position(|(a, b)| a != b).unwrap_or(0);
                wk.errors.push(format!(
                    "connection {}, message {seq}: echoed byte {at} is {:#04x}, sent {:#04x}",
                    c.id, c.rx[at], c.tx[at]
                ));
                break 'run;
            }
            if seq == 1 {
                wk.first_echo = wk.first_echo.max(now.saturating_duration_since(w.start));
            }
            if now >= w.end {
                // The other echoes of this round are in flight: read them, then stop.
                over = true;
            } else if now >= w.measure_at {
                cpu0.get_or_insert_with(proc::thread_cpu);
                // Every round trip that completes inside the window, as the epoll generator
                // counts.
                wk.latencies.push((now - c.sent).as_nanos().min(u64::MAX as u128) as u64);
                c.done += 1;
            }
        }
        if over {
            break;
        }
    }
    if let Some(c0) = cpu0 {
        wk.cpu = proc::thread_cpu().saturating_sub(c0);
    }
    for c in &conns {
        let _ = c.sock.shutdown(std::net::Shutdown::Both);
    }
    wk.done = conns.iter().map(|c| c.done).collect();
    wk
}

/// Reads `c`'s whole echo into `c.rx`, or says why it could not.
fn read_echo(c: &mut Conn) -> Result<(), String> {
    let size = c.rx.len();
    let mut got = 0;
    while got < size {
        match c.sock.read(&mut c.rx[got..]) {
            Ok(0) => {
                return Err(format!(
                    "connection {}: the server closed it ({got} of {size} bytes echoed)",
                    c.id
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(format!(
                    "connection {}: no complete echo within {}s ({got} of {size} bytes back)",
                    c.id,
                    DRAIN.as_secs()
                ))
            }
            Err(e) => return Err(format!("connection {}: receive: {e}", c.id)),
        }
    }
    Ok(())
}
