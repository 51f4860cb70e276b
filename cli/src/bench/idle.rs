//! The idle-connection test: hold many connections open (each has echoed one message, so the
//! server has really taken it on) and report the server's memory per connection.

use super::proc;
use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Bytes each connection sends once before going idle.
const PING: &[u8; 16] = b"idle-ping-0123\r\n";
/// How long the whole test may take before it gives up.
const LIMIT: Duration = Duration::from_secs(60);

/// Memory of the server with and without the idle connections.
#[derive(Clone, Copy, Debug)]
pub struct IdleMemory {
    /// Connections held.
    pub conns: usize,
    /// Server RSS before they were opened, KiB.
    pub baseline_kib: u64,
    /// Server RSS with all of them open and idle, KiB.
    pub loaded_kib: u64,
    /// Server threads with all of them open.
    pub threads: u64,
}

impl IdleMemory {
    /// The RSS growth per connection, bytes.
    pub fn bytes_per_conn(&self) -> f64 {
        (self.loaded_kib as f64 - self.baseline_kib as f64) * 1024.0 / self.conns.max(1) as f64
    }
}

/// Opens `conns` connections to the server at `addr` (process `pid`), pings each once, lets them
/// sit idle, and measures the server's resident memory before and after.
pub fn run(addr: SocketAddr, pid: u32, conns: usize) -> anyhow::Result<IdleMemory> {
    let deadline = Instant::now() + LIMIT;
    // Let the server finish starting, then take the baseline.
    std::thread::sleep(Duration::from_millis(150));
    let baseline_kib = proc::memory(pid).context("server memory")?.rss_kib;
    let mut socks = Vec::with_capacity(conns);
    for id in 0..conns {
        if Instant::now() > deadline {
            bail!("opened only {id} of {conns} idle connections in {}s", LIMIT.as_secs());
        }
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("idle connection {id} of {conns}"))?;
        s.set_nodelay(true)?;
        (&s).write_all(PING).with_context(|| format!("idle connection {id}: send"))?;
        socks.push(s);
    }
    let mut buf = [0u8; PING.len()];
    for (id, s) in socks.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        s.set_read_timeout(Some(left))?;
        let mut r: &TcpStream = s;
        r.read_exact(&mut buf).with_context(|| format!("idle connection {id}: echo"))?;
        if &buf != PING {
            bail!("idle connection {id}: echoed {:?}, sent {:?}", buf, PING);
        }
    }
    // Everything echoed: let the server settle (free per-message state) before measuring.
    std::thread::sleep(Duration::from_millis(300));
    let loaded_kib = proc::memory(pid).context("server memory")?.rss_kib;
    let threads = proc::threads(pid).unwrap_or(0);
    drop(socks);
    Ok(IdleMemory { conns, baseline_kib, loaded_kib, threads })
}
