//! `proactor proxy` in front of a real peer: `redis-server` behind the proxy, and
//! `redis-benchmark -q -n 100000` through it must finish with no error, on both drivers.
//!
//! Skipped, loudly, only when redis-server / redis-benchmark are not installed (`.ci/run`
//! installs them).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY (test): signalling our own child by its pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn installed(cmd: &str) -> bool {
    Command::new(cmd).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// The two drivers' runs, each a heavy load on its own, take turns (they are one test).
#[proactor::test]
fn redis_through_proxy(driver: &str) {
    if !installed("redis-server") || !installed("redis-benchmark") {
        eprintln!(
            "\n\n*** SKIPPED proxy_redis::{driver}: redis-server / redis-benchmark are not \
             installed (apt-get install redis-server redis-tools) ***\n\n"
        );
        return;
    }
    let port = free_port();
    let redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no", "--protected-mode", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let _redis = Guard(redis);
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "redis-server did not start listening");
        thread::sleep(Duration::from_millis(20));
    }

    let mut proxy = Command::new(env!("CARGO_BIN_EXE_proactor"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--driver", driver, "--to"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start proactor proxy");
    let mut line = String::new();
    BufReader::new(proxy.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _proxy = Guard(proxy);
    let addr: SocketAddr = line.trim().strip_prefix("listening on ").unwrap().parse().unwrap();

    // Bounded: killed if it has not finished in 15 minutes (the full default suite, LRANGE_600
    // included, takes a few minutes on a busy two-core machine).
    let bench = Command::new("redis-benchmark")
        .args(["-q", "-n", "100000", "-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = bench.id() as i32;
    let watchdog = thread::spawn(move || {
        thread::sleep(Duration::from_secs(900));
        // SAFETY (test): at worst signals an already-reaped pid of ours.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = bench.wait_with_output().unwrap();
    drop(watchdog);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}", stdout.replace('\r', "\n"));
    assert!(out.status.success(), "redis-benchmark failed: {stdout}\n{stderr}");
    let text = format!("{stdout}{stderr}").to_lowercase();
    assert!(!text.contains("error"), "redis-benchmark reported an error:\n{stdout}\n{stderr}");
    let finished = stdout.matches("requests per second").count();
    assert!(finished >= 10, "every redis-benchmark test finished ({finished} did):\n{stdout}");
}
