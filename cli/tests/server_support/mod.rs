//! Helpers for end-to-end tests of the `proactor` servers: start the built binary on a free port,
//! read its `listening on` line, signal it, watch its memory. (A test runs once per driver through
//! `#[proactor::test] fn name(driver: &str)`, given the `--driver` name.)
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A server process started by a test; killed on drop if still running.
pub struct ServerProc {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// Starts `proactor <cmd> --listen 127.0.0.1:0 --driver <driver> <extra...>` and waits (up to 10 s)
/// for its `listening on` line.
pub fn start(cmd: &str, driver: &str, extra: &[&str]) -> ServerProc {
    start_env(cmd, driver, extra, &[])
}

/// [`start`] with extra environment variables for the server (e.g. `RUST_LOG`).
pub fn start_env(cmd: &str, driver: &str, extra: &[&str], env: &[(&str, &str)]) -> ServerProc {
    start_limited(cmd, driver, extra, env, None)
}

/// [`start_env`], with the server's `RLIMIT_NOFILE` set to `nofile` (soft and hard: the servers
/// raise their soft limit to the hard one at start) when given.
pub fn start_limited(
    cmd: &str,
    driver: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    nofile: Option<u64>,
) -> ServerProc {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_proactor"));
    command
        .arg(cmd)
        .args(["--listen", "127.0.0.1:0", "--driver", driver])
        .args(extra)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(n) = nofile {
        let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
        // SAFETY: the closure runs in the forked child before exec and calls only setrlimit,
        // which is async-signal-safe, on a struct it owns; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let mut child = command.spawn().expect("spawn the proactor binary");
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {} // keep draining so the server never blocks on stdout
    });
    let stderr_text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = child.stderr.take().expect("stderr piped");
    let sink = stderr_text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "proactor {cmd} --driver {driver} printed no `listening on` line (status {status:?}); stderr:\n{}",
                stderr_text.lock().unwrap()
            );
        }
    };
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    ServerProc { child, addr, stderr: stderr_text }
}

impl ServerProc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Resident memory of the server now, in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line")
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- server stderr ---\n{}---", self.stderr());
        }
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How many descriptors the process has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// The descriptor limit the EMFILE scenario gives a server: room for what it opens at start
/// (driver, listener, signal and wake descriptors, the std streams), then a few dozen
/// connections.
pub const EMFILE_NOFILE: u64 = 64;

/// What [`emfile_recovery`] saw.
#[derive(Debug)]
pub struct EmfileReport {
    /// Connections open when the server first logged `EMFILE`.
    pub connections: usize,
    /// Whether an accept itself failed with `EMFILE` (the accept policy logged its back-off).
    /// A server that needs a second descriptor per connection (the proxy's upstream socket)
    /// may run out there first and close the client, so its accepts keep succeeding.
    pub accept_backed_off: bool,
}

/// The EMFILE recovery scenario, the same for every server: starts `proactor <cmd> <extra>`
/// with `RLIMIT_NOFILE` at [`EMFILE_NOFILE`], opens idle connections until its log shows a
/// call failing with `EMFILE` (then a few more, so some wait in the listen queue), holds them
/// for a moment (the server must stay up, log no panic and back off rather than spin), closes
/// them, waits for the server to free their descriptors, and then `probe(addr)` must be served
/// correctly on a new connection (it panics if not). Bounded: about fifteen seconds at worst.
pub fn emfile_recovery(
    cmd: &str,
    driver: &str,
    extra: &[&str],
    probe: impl FnOnce(SocketAddr),
) -> EmfileReport {
    const NEEDLE: &str = "Too many open files";
    // What the accept policy logs when a burst of resource failures starts.
    const BACKOFF: &str = "retrying until descriptors free up";
    let mut server = start_limited(cmd, driver, extra, &[], Some(EMFILE_NOFILE));
    let addr = server.addr;
    let at_start = open_fds(server.pid());
    let mut clients = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while !server.stderr().contains(NEEDLE) {
        assert!(
            Instant::now() < end && clients.len() < 4 * EMFILE_NOFILE as usize,
            "{cmd}: {} connections and no accept failed with EMFILE",
            clients.len()
        );
        // The kernel completes the handshake whether or not the server can accept: connects
        // succeed, the surplus waits in the listen queue.
        for _ in 0..4 {
            clients.push(std::net::TcpStream::connect(addr).expect("connect"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let connections = clients.len();
    for _ in 0..8 {
        clients.push(std::net::TcpStream::connect(addr).expect("connect"));
    }
    std::thread::sleep(Duration::from_millis(50));
    // Out of descriptors, with connections waiting: the accept loop must back off, not spin.
    let before = cpu_time(server.pid());
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_time(server.pid()) - before;
    assert!(server.alive(), "{cmd} exited while out of descriptors");
    assert!(used < Duration::from_millis(300), "{cmd} used {used:?} of CPU in 500 ms: it spins");
    let log = server.stderr();
    assert!(!log.contains("panicked"), "{cmd} panicked:\n{log}");
    let accept_backed_off = log.contains(BACKOFF);
    eprintln!(
        "{cmd}: EMFILE after {connections} connections (accept backed off: {accept_backed_off}), \
         {used:?} CPU over 500 ms"
    );
    drop(clients);
    // The server frees the descriptors as it sees the clients close (and accepts and closes
    // those still queued); until then it is still out of them.
    let end = Instant::now() + Duration::from_secs(5);
    while open_fds(server.pid()) > at_start + 4 {
        assert!(Instant::now() < end, "{cmd} kept {} descriptors open", open_fds(server.pid()));
        std::thread::sleep(Duration::from_millis(20));
    }
    probe(addr);
    assert!(server.alive(), "{cmd} exited after recovering");
    let end = Instant::now() + Duration::from_secs(5);
    while accept_backed_off && !server.stderr().contains("accepting again") {
        assert!(Instant::now() < end, "{cmd} never logged that it accepts again");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.stderr();
    assert!(!log.contains("panicked"), "{cmd} panicked:\n{log}");
    EmfileReport { connections, accept_backed_off }
}

/// Raises this process's soft descriptor limit to `want` (capped at the hard limit).
pub fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid out-parameter.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur < want {
        lim.rlim_cur = want.min(lim.rlim_max);
        // SAFETY: valid rlimit; raising the soft limit up to the hard one is allowed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
}

/// A fast deterministic byte stream (xorshift64*), so a test can check megabytes of echo
/// without keeping a copy of what it sent.
pub struct Pattern {
    state: u64,
    word: [u8; 8],
    /// Bytes of `word` already handed out.
    used: usize,
}

impl Pattern {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Pattern {
        Pattern { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, word: [0; 8], used: 8 }
    }

    /// The next 64 random bits (not part of the byte stream).
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn next_word(&mut self) -> [u8; 8] {
        self.next_u64().to_le_bytes()
    }

    /// Fills `buf` with the next bytes of the stream (the same bytes however the calls split it).
    pub fn fill(&mut self, mut buf: &mut [u8]) {
        while !buf.is_empty() {
            if self.used == 8 {
                if buf.len() >= 8 {
                    let (head, tail) = std::mem::take(&mut buf).split_at_mut(8);
                    head.copy_from_slice(&self.next_word());
                    buf = tail;
                    continue;
                }
                self.word = self.next_word();
                self.used = 0;
            }
            let n = (8 - self.used).min(buf.len());
            let (head, tail) = std::mem::take(&mut buf).split_at_mut(n);
            head.copy_from_slice(&self.word[self.used..self.used + n]);
            self.used += n;
            buf = tail;
        }
    }

    /// Checks that `got` is the next bytes of the stream.
    pub fn check(&mut self, got: &[u8], scratch: &mut Vec<u8>) -> bool {
        scratch.resize(got.len(), 0);
        self.fill(scratch);
        scratch[..] == got[..]
    }
}

/// Reads `rd` to EOF, checking every byte against the stream of `Pattern::new(seed)`; returns
/// the byte count. `client` names the connection in a failure.
pub async fn read_pattern<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    seed: u64,
    client: usize,
) -> usize {
    use tokio::io::AsyncReadExt;
    let mut pat = Pattern::new(seed);
    let (mut buf, mut scratch) = (vec![0u8; 64 * 1024], Vec::new());
    let mut got = 0;
    loop {
        let n = rd.read(&mut buf).await.expect("read");
        if n == 0 {
            return got;
        }
        assert!(pat.check(&buf[..n], &mut scratch), "client {client}: echo differs at {got}");
        got += n;
    }
}
