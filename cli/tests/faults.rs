//! The servers under injected faults (`PROACTOR_FAULTS`), 20 seeds per driver: every byte comes
//! back exactly and in order, or the connection ends and what came back is a prefix of what was
//! sent; the server goes on serving, and logs what it injected when it stops. A failing seed is
//! printed with the variable that repeats it (`FAULT_SEED=N` runs that seed only;
//! `FAULT_SEEDS=N` runs seeds 1 to N).

#[macro_use]
mod server_support;

use server_support::{start_env, Pattern, ServerProc};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

const SEEDS: u64 = 20;

/// Bytes checked by this test's clients (both ways), reported with each summary.
static MOVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn moved(n: usize) {
    MOVED.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

/// The bytes moved since the last call.
fn take_moved() -> u64 {
    MOVED.swap(0, std::sync::atomic::Ordering::Relaxed)
}

/// The seeds to run: `FAULT_SEED` alone, or 1..=20 (1..=N with `FAULT_SEEDS=N`, a longer
/// sweep).
fn seeds() -> Vec<u64> {
    match std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => {
            let n = std::env::var("FAULT_SEEDS").ok().and_then(|s| s.parse().ok());
            (1..=n.unwrap_or(SEEDS)).collect()
        }
    }
}

/// True when the whole seed set runs (no `FAULT_SEED`): only then must every kind a test
/// aims at have been injected at least once.
fn all_seeds() -> bool {
    std::env::var_os("FAULT_SEED").is_none()
}

/// Starts `cmd` under `faults` (with `seed=` prepended) and runs `body` against it; on a panic
/// prints the plan that repeats it. Stops the server with SIGTERM and returns its fault summary.
fn under_faults(
    cmd: &str,
    driver: &str,
    extra: &[&str],
    faults: &str,
    seed: u64,
    body: impl FnOnce(&mut ServerProc),
) -> String {
    let plan = format!("seed={seed},{faults}");
    let mut server = start_env(cmd, driver, extra, &[("PROACTOR_FAULTS", &plan)]);
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut server)));
    if let Err(panic) = run {
        eprintln!(
            "FAILED: proactor {cmd} --driver {driver} under PROACTOR_FAULTS={plan}; repeat with \
             FAULT_SEED={seed} cargo test --release -p proactor-cli --test faults"
        );
        std::panic::resume_unwind(panic);
    }
    assert!(server.alive(), "server died under PROACTOR_FAULTS={plan}: {}", server.stderr());
    server.signal(libc::SIGTERM);
    let status = server.wait_timeout(Duration::from_secs(10)).expect("server exits on SIGTERM");
    assert!(status.success(), "exit {status:?} under PROACTOR_FAULTS={plan}: {}", server.stderr());
    // The stderr reader thread may still be taking the last lines.
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !server.stderr().contains(" injected ") && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stderr = server.stderr();
    let summary: Vec<&str> = stderr.lines().filter(|l| l.contains(" injected ")).collect();
    assert!(!summary.is_empty(), "no fault summary at exit: {stderr}");
    summary.join("\n")
}

/// Sends `len` bytes of pattern `seed` and reads the echo; returns how many bytes came back
/// (all checked) and whether the exchange ended cleanly (EOF after everything).
fn echo_exchange(addr: SocketAddr, seed: u64, len: usize) -> (usize, bool) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut pat = Pattern::new(seed);
        let mut chunk = vec![0u8; 16 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            pat.fill(&mut chunk[..n]);
            if writer.write_all(&chunk[..n]).is_err() {
                return false;
            }
            left -= n;
        }
        writer.shutdown(Shutdown::Write).is_ok()
    });
    let mut pat = Pattern::new(seed);
    let (mut buf, mut scratch) = (vec![0u8; 64 * 1024], Vec::new());
    let mut got = 0;
    let clean = loop {
        match (&stream).read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                assert!(got + n <= len, "more bytes echoed than sent");
                assert!(pat.check(&buf[..n], &mut scratch), "echo differs at byte {got}");
                got += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("no echo for 20 s after {got} of {len} bytes")
            }
            Err(_) => break false,
        }
    };
    let sent = sender.join().unwrap();
    moved(2 * got);
    (got, clean && sent)
}

/// Sums `name=N` counts of fault summary lines.
fn sum_counts(lines: &[String]) -> String {
    let mut sums: Vec<(String, u64)> = Vec::new();
    for line in lines.iter().flat_map(|l| l.lines()) {
        let Some(start) = line.rfind('(') else { continue };
        for pair in line[start + 1..].trim_end_matches(')').split_whitespace() {
            let Some((k, v)) = pair.split_once('=') else { continue };
            let v: u64 = v.trim_end_matches(')').parse().unwrap_or(0);
            match sums.iter_mut().find(|(n, _)| n == k) {
                Some((_, s)) => *s += v,
                None => sums.push((k.to_string(), v)),
            }
        }
    }
    sums.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// What one test's seeds injected: the servers' fault summaries and the exchanges that were
/// cut, summed and printed once when the test is done.
struct Tally {
    what: &'static str,
    driver: String,
    summaries: Vec<String>,
    cut: usize,
}

impl Tally {
    fn new(what: &'static str, driver: &str) -> Self {
        Tally { what, driver: driver.to_string(), summaries: Vec::new(), cut: 0 }
    }

    /// Prints the totals; when the whole seed set ran, `must_fire` (a kind such as `reset`)
    /// must have been injected at least once.
    fn finish(self, must_fire: Option<&str>) {
        let totals = sum_counts(&self.summaries);
        eprintln!(
            "{} on {}: {} runs, {} exchanges cut, injected {totals}, moved {} bytes",
            self.what,
            self.driver,
            self.summaries.len(),
            self.cut,
            take_moved()
        );
        if let (Some(kind), true) = (must_fire, all_seeds()) {
            let count = totals
                .split_whitespace()
                .find_map(|p| p.strip_prefix(kind)?.strip_prefix('=')?.parse::<u64>().ok());
            assert!(count.unwrap_or(0) > 0, "no {kind} injected: {totals}");
        }
    }
}

/// `n` echo exchanges of `len` bytes at once, one client thread each; each must come back
/// whole and end cleanly.
fn exchanges_all_whole(addr: SocketAddr, seed: u64, n: u64, len: usize, what: &str) {
    let clients: Vec<_> = (0..n)
        .map(|i| std::thread::spawn(move || echo_exchange(addr, seed * 10 + i, len)))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), (len, true), "{what}: an exchange failed");
    }
}

/// Four exchanges one after the other, each exact if it ended cleanly; returns how many
/// were cut.
fn exchanges_exact_or_cut(addr: SocketAddr, seed: u64, len: usize) -> usize {
    let mut cut = 0;
    for i in 0..4u64 {
        let (got, clean) = echo_exchange(addr, seed * 10 + i, len);
        if clean {
            assert_eq!(got, len, "a clean exchange lost bytes");
        } else {
            cut += 1;
        }
    }
    cut
}

/// The server goes on serving after faults: a small exchange gets through within a few tries.
fn still_serves(addr: SocketAddr, seed: u64) -> bool {
    (0..20).any(|i| echo_exchange(addr, seed + i, 100) == (100, true))
}

#[proactor::test]
fn echo_lossless_faults(driver: &str) {
    let mut tally = Tally::new("echo", driver);
    for seed in seeds() {
        let faults = "rate=0.2,kinds=lossless+enobufs";
        tally.summaries.push(under_faults("echo", driver, &[], faults, seed, |s| {
            exchanges_all_whole(s.addr, seed, 4, 200_000, "lossless faults")
        }));
    }
    tally.finish(Some("short"));
}

#[proactor::test]
fn echo_resets_and_emfile(driver: &str) {
    let mut tally = Tally::new("echo", driver);
    for seed in seeds() {
        let faults = "rate=0.03,kinds=reset+emfile+short";
        tally.summaries.push(under_faults("echo", driver, &[], faults, seed, |s| {
            tally.cut += exchanges_exact_or_cut(s.addr, seed, 100_000);
            assert!(still_serves(s.addr, 7000), "the server stopped serving");
        }));
    }
    tally.finish(Some("reset"));
}

// A dry buffer ring (`ENOBUFS`, injected on the pooled receives: the one-shot one of the handler
// chain, and the multishot stream of the async front end, which the kernel ends with ENOBUFS)
// loses nothing: each receive is submitted again, on both front ends of echo.
#[proactor::test]
fn echo_through_enobufs(driver: &str) {
    let mut tally = Tally::new("echo", driver);
    for seed in seeds() {
        for style in ["handlers", "async"] {
            let extra = ["--style", style, "--buf-size", "4096"];
            let faults = "rate=0.2,kinds=enobufs";
            tally.summaries.push(under_faults("echo", driver, &extra, faults, seed, |s| {
                exchanges_all_whole(s.addr, seed, 4, 200_000, style)
            }));
        }
    }
    tally.finish(Some("enobufs"));
}

/// An echo upstream on std threads for the proxy; counts the connections it has open.
fn echo_upstream() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering::SeqCst;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = open.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let count = count.clone();
            count.fetch_add(1, SeqCst);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 32 * 1024];
                let mut w = conn.try_clone().unwrap();
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if w.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                // Half-close in turn: the client's EOF comes back through the proxy.
                let _ = w.shutdown(Shutdown::Write);
                count.fetch_sub(1, SeqCst);
            });
        }
    });
    (addr, open)
}

/// Waits (up to 10 s) until the upstream has no connection open: the proxy closed its side of
/// every proxied connection.
fn upstream_drained(open: &std::sync::atomic::AtomicUsize) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end {
        if open.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[proactor::test]
fn proxy_lossless_faults(driver: &str) {
    let (up, open) = echo_upstream();
    let to = up.to_string();
    let mut tally = Tally::new("proxy", driver);
    for seed in seeds() {
        let faults = "rate=0.2,kinds=lossless+enobufs";
        tally.summaries.push(under_faults("proxy", driver, &["--to", &to], faults, seed, |s| {
            // Both directions through the proxy, then the half-close back and forth.
            exchanges_all_whole(s.addr, seed, 4, 150_000, "proxied");
            assert!(upstream_drained(&open), "the proxy left upstream connections open");
        }));
    }
    // The relay receives from a buffer pool: a dry ring is exercised, and loses nothing.
    tally.finish(Some("enobufs"));
}

#[proactor::test]
fn proxy_resets_close_both_sides(driver: &str) {
    let (up, open) = echo_upstream();
    let to = up.to_string();
    let mut tally = Tally::new("proxy", driver);
    for seed in seeds() {
        let faults = "rate=0.03,kinds=reset+short+emfile";
        tally.summaries.push(under_faults("proxy", driver, &["--to", &to], faults, seed, |s| {
            tally.cut += exchanges_exact_or_cut(s.addr, seed, 100_000);
            // A connection cut on either side is closed on the other too.
            assert!(upstream_drained(&open), "a reset left the upstream side open");
            assert!(still_serves(s.addr, 9000), "the proxy stopped serving");
        }));
    }
    tally.finish(Some("reset"));
}

/// A small HTTP client: sends `requests` pipelined on one connection and reads the responses
/// in order; returns each response's status and body as far as they arrived complete.
fn http_pipeline(addr: SocketAddr, requests: &str) -> Vec<(u16, Vec<u8>)> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    if (&stream).write_all(requests.as_bytes()).is_err() {
        return Vec::new(); // reset before the requests went out
    }
    let mut reader = std::io::BufReader::new(&stream);
    let mut out = Vec::new();
    loop {
        use std::io::BufRead;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return out;
        }
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return out; // cut inside the head
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                if n.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return out; // cut inside the body: not a response
        }
        moved(body.len());
        out.push((status, body));
    }
}

/// A root for `proactor http`: `seq/N.txt` and a 300,000-byte `data.bin`.
fn http_root() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("seq")).unwrap();
    for i in 0..20 {
        std::fs::write(dir.path().join(format!("seq/{i}.txt")), format!("file number {i}\n"))
            .unwrap();
    }
    let mut data = vec![0u8; 300_000];
    Pattern::new(3).fill(&mut data);
    std::fs::write(dir.path().join("data.bin"), &data).unwrap();
    (dir, data)
}

/// 20 small GETs, a big one, two ranges, a 404, pipelined; the last closes.
fn http_requests() -> String {
    let mut r: String =
        (0..20).map(|i| format!("GET /seq/{i}.txt HTTP/1.1\r\nHost: t\r\n\r\n")).collect();
    r.push_str("GET /data.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    r.push_str("GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-1999\r\n\r\n");
    r.push_str("GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=-10\r\n\r\n");
    r.push_str("GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    r
}

/// Checks that `got` are the first responses to [`http_requests`], each exactly right.
fn check_http(got: &[(u16, Vec<u8>)], data: &[u8]) {
    for (i, (status, body)) in got.iter().enumerate() {
        let (want_status, want): (u16, &[u8]) = match i {
            0..=19 => (200, &[]),
            20 => (200, data),
            21 => (206, &data[1000..2000]),
            22 => (206, &data[data.len() - 10..]),
            _ => (404, &[]),
        };
        assert_eq!(*status, want_status, "response {i}");
        if i < 20 {
            assert_eq!(body, format!("file number {i}\n").as_bytes(), "response {i}");
        } else if i < 23 {
            assert!(body == want, "response {i}: body differs");
        }
    }
}

#[proactor::test]
fn http_lossless_faults(driver: &str) {
    let (root, data) = http_root();
    let root_arg = root.path().to_str().unwrap().to_string();
    let mut tally = Tally::new("http", driver);
    for seed in seeds() {
        let extra = ["--root", &root_arg, "--quiet"];
        let faults = "rate=0.2,kinds=lossless+enobufs";
        tally.summaries.push(under_faults("http", driver, &extra, faults, seed, |s| {
            for _ in 0..2 {
                let got = http_pipeline(s.addr, &http_requests());
                assert_eq!(got.len(), 24, "keep-alive pipeline cut short under lossless faults");
                check_http(&got, &data);
            }
        }));
    }
    tally.finish(None);
}

#[proactor::test]
fn http_resets_and_emfile(driver: &str) {
    let (root, data) = http_root();
    let root_arg = root.path().to_str().unwrap().to_string();
    let mut tally = Tally::new("http", driver);
    for seed in seeds() {
        let extra = ["--root", &root_arg, "--quiet"];
        let faults = "rate=0.03,kinds=reset+emfile+short+enospc";
        tally.summaries.push(under_faults("http", driver, &extra, faults, seed, |s| {
            for _ in 0..3 {
                let got = http_pipeline(s.addr, &http_requests());
                check_http(&got, &data);
                tally.cut += usize::from(got.len() < 24);
            }
            let ok = (0..20).any(|_| {
                http_pipeline(s.addr, "GET /seq/1.txt HTTP/1.1\r\nConnection: close\r\n\r\n").len()
                    == 1
            });
            assert!(ok, "the server stopped serving");
        }));
    }
    tally.finish(None);
}

/// `proactor copy` under `faults` (with `seed=`): its output and whether it succeeded.
fn copy_under(driver: &str, faults: &str, seed: u64, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_proactor"))
        .args(["copy", "--driver", driver])
        .args(args)
        .env("PROACTOR_FAULTS", format!("seed={seed},{faults}"))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Entries of `dir` other than `keep`.
fn others(dir: &std::path::Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[proactor::test]
fn copy_verify_under_faults(driver: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut data = vec![0u8; 700_001];
    Pattern::new(5).fill(&mut data);
    std::fs::write(&src, &data).unwrap();
    let (mut ok, mut failed) = (0, 0);
    let mut tally = Tally::new("copy", driver);
    for seed in seeds() {
        let dst = dir.path().join(format!("dst{seed}"));
        let args = [std::ffi::OsStr::new("--verify"), src.as_os_str(), dst.as_os_str()];
        // Lossless faults: the copy succeeds and is exact.
        let (success, err) = copy_under(driver, "rate=0.2,kinds=lossless", seed, &args);
        assert!(success, "seed {seed}: copy failed under lossless faults: {err}");
        assert!(std::fs::read(&dst).unwrap() == data, "seed {seed}: the copy differs");
        std::fs::remove_file(&dst).unwrap();
        moved(data.len());
        // ENOSPC and EMFILE too: exact, or a clear error with no DST and no temporary file.
        // Through buffers, in small blocks: the kernel's own copy (copy_file_range, on pool
        // threads) passes no write through the proactor to fail.
        let faults = "rate=0.1,kinds=short+eintr+enospc+emfile";
        let buffered = [std::ffi::OsStr::new("--buffered"), std::ffi::OsStr::new("--block")];
        let args = [&buffered[..], &[std::ffi::OsStr::new("64K")], &args[..]].concat();
        let (success, err) = copy_under(driver, faults, seed, &args);
        let summary = err.lines().filter(|l| l.contains(" injected ")).collect::<Vec<_>>();
        tally.summaries.push(summary.join("\n"));
        if success {
            assert!(std::fs::read(&dst).unwrap() == data, "seed {seed}: the copy differs");
            std::fs::remove_file(&dst).unwrap();
            moved(data.len());
            ok += 1;
        } else {
            assert!(
                err.contains("No space left")
                    || err.contains("no space left")
                    || err.contains("Too many open files")
                    || err.contains("too many open files"),
                "seed {seed}: unclear error: {err}"
            );
            assert!(!dst.exists(), "seed {seed}: a failed copy left DST");
            failed += 1;
        }
        assert!(
            others(dir.path(), &["src"]).is_empty(),
            "seed {seed}: left behind {:?}",
            others(dir.path(), &["src"])
        );
    }
    eprintln!("copy on {driver}: {ok} exact and {failed} clean failures under ENOSPC/EMFILE");
    tally.finish(Some("enospc"));
}
