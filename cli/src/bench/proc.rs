//! What the bench reads about processes from /proc (CPU time, memory), and the knobs it turns on
//! them (CPU affinity, the open-file limit): the figures that make a comparison fair.

use std::io;
use std::time::Duration;

/// CPU time (user + system, all threads, exited ones included) of process `pid`.
pub fn process_cpu(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu(&stat, clock_ticks()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("unreadable /proc/{pid}/stat"))
    })
}

/// utime + stime from the text of a /proc/<pid>/stat file, with `ticks` clock ticks per second.
fn parse_stat_cpu(stat: &str, ticks: u64) -> Option<Duration> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After ')' come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let t = utime + stime;
    Some(Duration::from_secs(t / ticks) + Duration::from_nanos((t % ticks) * 1_000_000_000 / ticks))
}

/// Clock ticks per second (`USER_HZ`), the unit of /proc CPU times.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Time the threads of process `pid` (exited ones not included) have spent runnable but
/// waiting for a CPU so far (`run_delay`, the second figure of `/proc/<pid>/task/<tid>/schedstat`):
/// how much other work on their CPUs held the measured processes up.
pub fn sched_wait(pid: u32) -> io::Result<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may exit between the listing and the read: it no longer waits.
        if let Ok(text) = std::fs::read_to_string(path) {
            ns += parse_run_delay(&text).unwrap_or(0);
        }
    }
    Ok(Duration::from_nanos(ns))
}

/// The run-queue wait (ns) from the text of a schedstat file: `exec_ns run_delay_ns slices`.
fn parse_run_delay(schedstat: &str) -> Option<u64> {
    schedstat.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// CPU time used so far by the calling thread (precise, in nanoseconds).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Memory figures of a process, in KiB, from /proc/<pid>/status.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Resident set size now (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM).
    pub peak_kib: u64,
}

/// The resident and peak memory of process `pid`.
pub fn memory(pid: u32) -> io::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(parse_status_memory(&status))
}

fn parse_status_memory(status: &str) -> Memory {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Memory { rss_kib: field("VmRSS:"), peak_kib: field("VmHWM:") }
}

/// Number of threads of process `pid`.
pub fn threads(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set = unsafe { std::mem::zeroed::<libc::cpu_set_t>() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return vec![0];
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE and `set` is initialised.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins thread or process `tid` (0: the calling thread) to `cpu`.
pub fn pin(tid: libc::pid_t, cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set = unsafe { std::mem::zeroed::<libc::cpu_set_t>() };
    // SAFETY: CPU_SET writes one bit of `set`; callers pass a cpu from `allowed_cpus`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The nice value the bench asks for, for the server and the load generator, so that other work
/// on a shared machine disturbs the measurement less.
pub const NICE: i32 = -20;

/// The `SCHED_RR` priority of measured processes under `proactor bench --realtime`.
pub const RT_PRIORITY: i32 = 50;

/// Whether measured processes run under `SCHED_RR` ([`set_realtime`]).
static REALTIME: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes [`raise_priority`] give `SCHED_RR` (priority [`RT_PRIORITY`]) instead of nice
/// [`NICE`]: on a machine shared with other work (builds), a nice value still lets that work
/// preempt the measured processes, and an io_uring server, whose completions run in its own
/// context, suffers most. Measured at load 7–12 (builds running): the proxy's req/s through
/// wrk -> nginx ranged 6–31 k between runs with nice -20 (HAProxy 11–22 k); with `SCHED_RR`
/// `proactor bench proxy --realtime` settled every point with spreads of 1–7 %, and `proactor
/// bench http --realtime` at 1–10 %. The kernel's real-time throttling (95 % of each second by
/// default) still leaves the rest of the machine some time. Every peer gets the same class.
/// Round-robin, not FIFO: under `SCHED_FIFO` a thread that never blocks (wrk's worker at 1 MiB
/// responses) kept wrk's own timer thread off the CPU, and a 3 s run lasted 37 s; round-robin
/// hands the CPU on every 100 ms.
pub fn set_realtime(on: bool) {
    REALTIME.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`set_realtime`] is on.
pub fn realtime() -> bool {
    REALTIME.load(std::sync::atomic::Ordering::Relaxed)
}

/// Raises thread or process `tid` (0: the calling thread) to the measured processes' priority:
/// nice [`NICE`], or `SCHED_RR` under [`set_realtime`]; false if not permitted (then it runs
/// at normal priority). Async-signal-safe (no allocation): callable between fork and exec.
pub fn raise_priority(tid: libc::pid_t) -> bool {
    if realtime() {
        let param = libc::sched_param { sched_priority: RT_PRIORITY };
        // SAFETY: `param` is a valid sched_param for the duration of the call.
        unsafe { libc::sched_setscheduler(tid, libc::SCHED_RR, &param) == 0 }
    } else {
        // SAFETY: setpriority takes no pointers; PRIO_PROCESS with a thread id affects that
        // thread.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE) == 0 }
    }
}

/// Pins thread or process `tid` to `cpu` (when given) and raises its priority
/// ([`raise_priority`]): where every measured process of the bench is put. Best effort: a
/// failure is logged and the run goes on, unpinned or at normal priority.
pub fn place(tid: libc::pid_t, cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        if let Err(e) = pin(tid, cpu) {
            tracing::warn!("could not pin {tid} to CPU {cpu}: {e}");
        }
    }
    if !raise_priority(tid) {
        tracing::debug!("could not raise the priority of {tid}");
    }
}

/// `cmd`, placed ([`place`]: pinned to `cpu`, priority raised) from its first instruction, so
/// that every thread it starts inherits both.
pub fn placed(mut cmd: std::process::Command, cpu: Option<usize>) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // sched_setaffinity and setpriority/sched_setscheduler system calls (async-signal-safe, no
    // allocation; errors are ignored there, not logged).
    unsafe {
        cmd.pre_exec(move || {
            if let Some(cpu) = cpu {
                let _ = pin(0, cpu);
            }
            raise_priority(0);
            Ok(())
        });
    }
    cmd
}

/// How measured processes are scheduled, in words for the reports.
pub fn priority_words() -> String {
    if realtime() {
        format!("SCHED_RR {RT_PRIORITY}")
    } else {
        format!("nice {NICE}")
    }
}

/// Raises the soft open-file limit to at least `want` (up to the hard limit); returns the new
/// soft limit. Child processes inherit it.
pub fn raise_nofile(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    lim.rlim_cur = want.min(lim.rlim_max);
    // SAFETY: `lim` is a valid rlimit with cur <= max.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}

/// The kernel release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The CPU model name, for the report.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_delay_is_the_second_figure() {
        assert_eq!(parse_run_delay("123456 7890 12\n"), Some(7890));
        assert_eq!(parse_run_delay("123456"), None);
        assert!(sched_wait(std::process::id()).is_ok());
    }

    #[test]
    fn stat_cpu_skips_odd_command_names() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat_cpu(stat, 100), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat_cpu("garbage", 100), None);
    }

    #[test]
    fn status_memory_fields() {
        let m = parse_status_memory("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n");
        assert_eq!((m.rss_kib, m.peak_kib), (1024, 2048));
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(memory(pid).unwrap().rss_kib > 0);
        process_cpu(pid).unwrap();
        assert!(threads(pid).unwrap() >= 1);
        assert!(!allowed_cpus().is_empty());
    }
}
