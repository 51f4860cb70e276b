//! The servers under injected faults (`PROACTOR_FAULTS`), 20 seeds per driver: every byte comes
//! back exactly and in order, or the connection ends and what came back is a prefix of what was
//! sent; the server goes on serving, and logs what it injected when it stops. A failing seed is
//! printed with the variable that repeats it (`FAULT_SEED=N` runs that seed only).

#[macro_use]
mod server_support;

use server_support::{start_env, Pattern, ServerProc};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

const SEEDS: u64 = 20;

/// The seeds to run: `FAULT_SEED` alone, or 1..=20.
fn seeds() -> Vec<u64> {
    match std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => (1..=SEEDS).collect(),
    }
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

both_drivers!(echo_lossless_faults, |driver| {
    let mut summaries = Vec::new();
    for seed in seeds() {
        summaries.push(under_faults("echo", driver, &[], "rate=0.2,kinds=lossless", seed, |s| {
            let addr = s.addr;
            let clients: Vec<_> = (0..4u64)
                .map(|i| std::thread::spawn(move || echo_exchange(addr, seed * 10 + i, 200_000)))
                .collect();
            for c in clients {
                let (got, clean) = c.join().unwrap();
                assert!(clean, "an exchange failed under lossless faults");
                assert_eq!(got, 200_000);
            }
        }));
    }
    let totals = sum_counts(&summaries);
    eprintln!("echo on {driver}: {} seeds, injected {totals}", summaries.len());
    assert!(!totals.contains("short=0 "), "{totals}");
});

both_drivers!(echo_resets_and_emfile, |driver| {
    let mut summaries = Vec::new();
    let mut cut = 0;
    for seed in seeds() {
        summaries.push(under_faults(
            "echo",
            driver,
            &[],
            "rate=0.03,kinds=reset+emfile+short",
            seed,
            |s| {
                for i in 0..4u64 {
                    let (got, clean) = echo_exchange(s.addr, seed * 10 + i, 100_000);
                    if clean {
                        assert_eq!(got, 100_000, "a clean exchange lost bytes");
                    } else {
                        cut += 1;
                    }
                }
                // It goes on serving: a small exchange gets through within a few tries.
                let ok = (0..20).any(|i| echo_exchange(s.addr, 7000 + i, 100) == (100, true));
                assert!(ok, "the server stopped serving");
            },
        ));
    }
    let totals = sum_counts(&summaries);
    eprintln!(
        "echo on {driver}: {} seeds, {cut} exchanges cut, injected {totals}",
        summaries.len()
    );
    assert!(!totals.contains("reset=0"), "{totals}");
});
