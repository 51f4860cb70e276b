//! The servers under test and how each is started as its own process (this executable, with the
//! right subcommand), pinned to a CPU, and found by the `listening on <addr>` line it prints.

use super::proc;
use super::servers::Baseline;
use anyhow::{anyhow, bail, Context};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// `proactor echo` on a driver, optionally with `--threads N` (the hook for issue 8).
    Proactor {
        /// `uring` or `epoll`.
        epoll: bool,
        /// The async front end (`--style async`) instead of the default completion handlers.
        async_style: bool,
        /// One receive request per message (`--recv oneshot`) instead of the default
        /// multishot receive.
        oneshot: bool,
        /// `--threads N`, or the echo's default when `None`.
        threads: Option<u32>,
    },
    /// A baseline from `servers.rs`.
    Baseline(Baseline),
}

impl ServerKind {
    /// The reference every ratio is taken against.
    pub const REFERENCE: ServerKind = ServerKind::Baseline(Baseline::TokioCt);

    /// Server threads asked for (1 unless `@N` said more).
    pub fn threads(&self) -> u32 {
        match *self {
            ServerKind::Proactor { threads: Some(n), .. } => n,
            _ => 1,
        }
    }

    /// The command line that starts this server on `listen`.
    fn command(&self, listen: SocketAddr) -> Command {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("proactor"));
        let mut cmd = Command::new(exe);
        match *self {
            ServerKind::Proactor { epoll, async_style, oneshot, threads } => {
                let driver = if epoll { "epoll" } else { "uring" };
                cmd.args(["echo", "--listen", &listen.to_string(), "--driver", driver]);
                // Above the idle test's connection count.
                cmd.args(["--max-conns", "20000"]);
                if async_style {
                    cmd.args(["--style", "async"]);
                }
                if oneshot {
                    cmd.args(["--recv", "oneshot"]);
                }
                cmd.env("PROACTOR_DRIVER", driver);
                if let Some(n) = threads {
                    cmd.args(["--threads", &n.to_string()]);
                }
            }
            ServerKind::Baseline(b) => {
                let kind = match b {
                    Baseline::Threads => "threads",
                    Baseline::TokioCt => "tokio-ct",
                    Baseline::TokioMt => "tokio-mt",
                    Baseline::Monoio => "monoio",
                    Baseline::Corrupt => "corrupt",
                };
                cmd.args(["bench", "serve", "--kind", kind, "--listen", &listen.to_string()]);
            }
        }
        cmd
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ServerKind::Proactor { epoll, async_style, oneshot, threads } => {
                f.write_str(if epoll { "proactor-epoll" } else { "proactor-uring" })?;
                if async_style {
                    f.write_str("-async")?;
                }
                if oneshot {
                    f.write_str("-oneshot")?;
                }
                match threads {
                    Some(n) => write!(f, "@{n}"),
                    None => Ok(()),
                }
            }
            ServerKind::Baseline(Baseline::Threads) => f.write_str("threads"),
            ServerKind::Baseline(Baseline::TokioCt) => f.write_str("tokio-ct"),
            ServerKind::Baseline(Baseline::TokioMt) => f.write_str("tokio-mt"),
            ServerKind::Baseline(Baseline::Monoio) => f.write_str("monoio"),
            ServerKind::Baseline(Baseline::Corrupt) => f.write_str("corrupt"),
        }
    }
}

impl FromStr for ServerKind {
    type Err = String;
    /// `proactor-uring`, `proactor-epoll`, `proactor-uring-async`, `proactor-epoll-async` (each
    /// optionally `-oneshot` for `--recv oneshot` and `@N` for `--threads N`), `threads`,
    /// `tokio-ct`, `tokio-mt`, `monoio`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, threads) = match s.split_once('@') {
            Some((n, t)) => {
                let t: u32 = t.parse().map_err(|_| format!("bad thread count in {s:?}"))?;
                if t == 0 {
                    return Err(format!("thread count must be at least 1 in {s:?}"));
                }
                (n, Some(t))
            }
            None => (s, None),
        };
        let proactor = |rest: &str, epoll: bool| {
            let (async_style, rest) = match rest.strip_prefix("-async") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let oneshot = match rest {
                "" => false,
                "-oneshot" => true,
                _ => return None,
            };
            Some(ServerKind::Proactor { epoll, async_style, oneshot, threads })
        };
        let parsed = match name {
            "uring" => proactor("", false),
            "epoll" => proactor("", true),
            _ => match (name.strip_prefix("proactor-uring"), name.strip_prefix("proactor-epoll")) {
                (Some(rest), _) => proactor(rest, false),
                (_, Some(rest)) => proactor(rest, true),
                _ => None,
            },
        };
        if let Some(kind) = parsed {
            return Ok(kind);
        }
        let kind = match name {
            "threads" => ServerKind::Baseline(Baseline::Threads),
            "tokio-ct" => ServerKind::Baseline(Baseline::TokioCt),
            "tokio-mt" => ServerKind::Baseline(Baseline::TokioMt),
            "monoio" => ServerKind::Baseline(Baseline::Monoio),
            // Not in the help: a broken echo for testing the bench's byte check.
            "corrupt" => ServerKind::Baseline(Baseline::Corrupt),
            _ => {
                return Err(format!(
                    "unknown server {s:?} (proactor-uring[-async][-oneshot][@N], \
                     proactor-epoll[-async][-oneshot][@N], threads, tokio-ct, tokio-mt, monoio)"
                ))
            }
        };
        if threads.is_some() && matches!(kind, ServerKind::Baseline(_)) {
            return Err(format!("only the proactor servers take @threads: {s:?}"));
        }
        Ok(kind)
    }
}

/// A running server process; killed when dropped.
pub struct ServerProc {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    log: PathBuf,
}

impl ServerProc {
    /// Starts `kind` on 127.0.0.1 (a free port), pinned to `cpu` when given.
    pub fn start(kind: ServerKind, cpu: Option<usize>) -> anyhow::Result<ServerProc> {
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        let mut cmd = kind.command(listen);
        let log = std::env::temp_dir().join(format!(
            "proactor-bench-{}-{}.log",
            std::process::id(),
            kind
        ));
        cmd.env("RUST_LOG", "warn");
        Self::spawn(proc::placed(cmd, cpu), &format!("the {kind} server"), log)
    }

    /// Spawns `cmd` (named `what` in errors) with its stderr in the file `log`, and waits for
    /// the `listening on <addr>` line it prints on stdout.
    pub fn spawn(mut cmd: Command, what: &str, log: PathBuf) -> anyhow::Result<ServerProc> {
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create the server log {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log_file);
        let mut child = cmd.spawn().with_context(|| format!("cannot start {what}"))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            // Read to the end, so the server never blocks on a full pipe.
            while lines.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if let Some(addr) = line.trim().strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>());
                }
                line.clear();
            }
        });
        let unset: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        let mut server = ServerProc { child, addr: unset, pid, log };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(addr)) => server.addr = addr,
            Ok(Err(e)) => bail!("{what} printed an unreadable address: {e}"),
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                return Err(anyhow!(
                    "{what} did not print `listening on <addr>` within {}s{}{}",
                    START_TIMEOUT.as_secs(),
                    status.map(|s| format!(" (it exited: {s})")).unwrap_or_default(),
                    server.log_tail()
                ));
            }
        }
        Ok(server)
    }

    /// Stops the server with SIGTERM and returns what it wrote to stderr; an error if it had
    /// died, did not exit within 10 s, or exited with a failure.
    pub fn stop(mut self) -> anyhow::Result<String> {
        self.check_alive()?;
        // SAFETY: kill takes a process id and a signal number; it touches no memory.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            match self.child.try_wait()? {
                Some(status) => break status,
                None if std::time::Instant::now() >= until => {
                    bail!("the server did not exit within 10 s of SIGTERM{}", self.log_tail())
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        if !status.success() {
            bail!("the server exited with {status}{}", self.log_tail());
        }
        Ok(std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// An error if the server has exited (crashed) since it started.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                bail!("the server exited during the run ({status}){}", self.log_tail())
            }
            Err(e) => bail!("cannot check the server process: {e}"),
        }
    }

    /// The last lines the server wrote to stderr, formatted for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(8)..];
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with:\n    {}", tail.join("\n    "))
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            "proactor-uring",
            "proactor-epoll@2",
            "proactor-uring-async",
            "proactor-uring-oneshot",
            "proactor-epoll-async-oneshot@2",
            "threads",
            "tokio-ct",
            "tokio-mt",
        ] {
            assert_eq!(s.parse::<ServerKind>().unwrap().to_string(), s);
        }
        assert!("tokio-ct@2".parse::<ServerKind>().is_err());
        assert!("proactor-uring@0".parse::<ServerKind>().is_err());
        assert!("nginx".parse::<ServerKind>().is_err());
    }
}
