//! Driver selection, for real: child processes in which a seccomp filter makes `io_uring_setup`
//! fail with `EPERM` (as Docker's default profile does). There `auto` must pick epoll and say
//! why, `uring` must fail with that reason, and `PROACTOR_DRIVER` and the builder must be obeyed
//! (the builder winning).
//!
//! Each case re-runs this test binary, filtered to `child_report`, which builds proactors under
//! every policy and prints one `KEY=value` line per result for the parent to check.
mod common;

use proactor::{op, submit, DriverChoice, DriverKind, Proactor};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Set in the child so that `child_report` does its work (it is a no-op in a normal run).
const CHILD: &str = "PROACTOR_DRIVER_SELECT_CHILD";

/// Installs a seccomp filter that makes `io_uring_setup` fail with `EPERM` and allows every
/// other system call. Runs in the forked child just before `exec`: no allocation, only syscalls.
fn block_io_uring_setup() -> std::io::Result<()> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const ARCH_OFFSET: u32 = 4; // offsetof(struct seccomp_data, arch)
    const NR_OFFSET: u32 = 0; // offsetof(struct seccomp_data, nr)
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let program = [
        f(LD_W_ABS, 0, 0, ARCH_OFFSET),
        f(JEQ_K, 0, 3, AUDIT_ARCH),
        f(LD_W_ABS, 0, 0, NR_OFFSET),
        f(JEQ_K, 0, 1, libc::SYS_io_uring_setup as u32),
        f(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        f(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut _ };
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _, 0, 0)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `child_report` in a child process, with `io_uring_setup` blocked or not and
/// `PROACTOR_DRIVER` set or not; returns its stdout.
fn child(blocked: bool, env: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_report", "--exact", "--nocapture", "--test-threads=1"]).env(CHILD, "1");
    match env {
        Some(v) => cmd.env("PROACTOR_DRIVER", v),
        None => cmd.env_remove("PROACTOR_DRIVER"),
    };
    if blocked {
        // SAFETY: the hook only makes two prctl calls, which are async-signal-safe.
        unsafe { cmd.pre_exec(block_io_uring_setup) };
    }
    let out = cmd.output().expect("run the child test process");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The value of `KEY=` in the child's report.
fn value<'a>(report: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    report
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key} in the child's report:\n{report}"))
}

/// Builds a proactor under one policy and reports what it got; a built one must also work.
fn report(key: &str, built: std::io::Result<Proactor>) {
    match built {
        Ok(p) => {
            let (tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
            let echoed = p.block_on(async {
                submit(op::Nop).await.unwrap();
                submit(op::Send::new(tx, b"ok".as_slice())).await.0.unwrap();
                let (res, buf) = submit(op::Recv::new(rx, Vec::with_capacity(4))).await;
                res.unwrap();
                buf
            });
            assert_eq!(echoed, b"ok");
            println!("{key}={}", p.driver_kind());
            println!("{key}-REASON={}", p.fallback_reason().unwrap_or("-"));
        }
        Err(e) => println!("{key}=error: {e}"),
    }
}

/// The child's side: does nothing unless started by one of the tests below.
#[test]
fn child_report() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    // The harness prints "test child_report ... " without a newline first.
    println!();
    report("NEW", Proactor::new());
    report("AUTO", Proactor::builder().driver(DriverChoice::Auto).build());
    report("URING", Proactor::builder().driver(DriverChoice::Uring).build());
    report("EPOLL", Proactor::builder().driver(DriverChoice::Epoll).build());
}

#[test]
fn seccomp_blocked_uring_falls_back_to_epoll_and_says_why() {
    let r = child(true, None);
    assert_eq!(value(&r, "AUTO"), "epoll");
    assert!(value(&r, "AUTO-REASON").contains("seccomp"), "{r}");
    assert_eq!(value(&r, "NEW"), "epoll");
    assert!(value(&r, "NEW-REASON").contains("seccomp"), "{r}");
    assert_eq!(value(&r, "EPOLL"), "epoll");
    assert_eq!(value(&r, "EPOLL-REASON"), "-");
}

#[test]
fn seccomp_blocked_uring_strict_policy_fails_with_the_reason() {
    let r = child(true, None);
    let err = value(&r, "URING");
    assert!(err.starts_with("error: "), "{r}");
    assert!(err.contains("io_uring") && err.contains("seccomp"), "{r}");
}

#[test]
fn env_var_picks_the_driver_and_the_builder_wins() {
    let r = child(false, Some("epoll"));
    assert_eq!(value(&r, "NEW"), "epoll");
    assert_eq!(value(&r, "NEW-REASON"), "-");
    assert_eq!(value(&r, "AUTO"), "io_uring", "the builder's choice wins over the env var");
    assert_eq!(value(&r, "URING"), "io_uring");

    let r = child(true, Some("uring"));
    assert!(value(&r, "NEW").contains("seccomp"), "{r}");
    assert_eq!(value(&r, "EPOLL"), "epoll");

    let r = child(false, Some("auto"));
    assert_eq!(value(&r, "NEW"), "io_uring");
}

#[test]
fn env_var_with_a_bad_value_is_a_clear_error() {
    let r = child(false, Some("kqueue"));
    let err = value(&r, "NEW");
    assert!(err.contains("unknown driver") && err.contains("kqueue"), "{r}");
    assert_eq!(value(&r, "EPOLL"), "epoll");
}

#[test]
fn unblocked_auto_keeps_io_uring() {
    let p = Proactor::builder().driver(DriverChoice::Auto).build().unwrap();
    assert_eq!(p.driver_kind(), DriverKind::Uring);
    assert_eq!(p.fallback_reason(), None);
    assert!(p.ring_config().is_some());
    let e = common::proactor(DriverChoice::Epoll);
    assert_eq!(e.driver_kind(), DriverKind::Epoll);
    assert!(e.ring_config().is_none());
}
