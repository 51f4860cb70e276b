//! `proactor info` where io_uring is forbidden: a seccomp filter on `io_uring_setup` (what
//! Docker's default profile does) in the child process. `auto` must report epoll and why;
//! `--driver uring` must fail with the reason and a non-zero exit status.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// Installs a seccomp filter that makes `io_uring_setup` fail with `EPERM` and allows every
/// other system call. Runs in the forked child just before `exec`: no allocation, only syscalls.
fn block_io_uring_setup() -> std::io::Result<()> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let program = [
        f(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        f(JEQ_K, 0, 3, AUDIT_ARCH),
        f(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
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

fn info(blocked: bool, args: &[&str]) -> (Output, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_proactor"));
    cmd.arg("info").args(args).env_remove("PROACTOR_DRIVER").env_remove("RUST_LOG");
    if blocked {
        // SAFETY: the hook only makes two prctl calls, which are async-signal-safe.
        unsafe { cmd.pre_exec(block_io_uring_setup) };
    }
    let out = cmd.output().expect("run proactor info");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn auto_falls_back_to_epoll_and_says_why() {
    let (out, stdout, stderr) = info(true, &[]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("driver policy: auto (default)"), "{stdout}");
    assert!(stdout.contains("driver: epoll"), "{stdout}");
    let reason = stdout
        .lines()
        .find_map(|l| l.strip_prefix("fallback reason: "))
        .unwrap_or_else(|| panic!("no fallback reason in:\n{stdout}"));
    assert!(reason.contains("seccomp"), "{reason}");
    // Logged once, at warn level, with the same reason.
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("seccomp"), "{stderr}");
}

#[test]
fn strict_uring_fails_with_the_reason_and_a_nonzero_exit() {
    let (out, stdout, stderr) = info(true, &["--driver", "uring"]);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("io_uring") && stderr.contains("seccomp"), "{stderr}");
    assert!(stdout.contains("driver: unavailable"), "{stdout}");
}

#[test]
fn epoll_policy_never_needs_io_uring() {
    let (out, stdout, stderr) = info(true, &["--driver", "epoll"]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("driver: epoll"), "{stdout}");
    assert!(!stdout.contains("fallback reason"), "{stdout}");
}

#[test]
fn unrestricted_auto_uses_io_uring() {
    let (out, stdout, stderr) = info(false, &[]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("driver: io_uring"), "{stdout}");
    assert!(!stdout.contains("fallback reason"), "{stdout}");
}
