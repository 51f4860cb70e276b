//! `proactor info`: what this machine offers the proactor, and which driver it picks.

use proactor::driver::probe_kernel;
use proactor::{DriverChoice, Proactor};
use std::process::ExitCode;

/// Arguments of `proactor info`.
#[derive(clap::Args)]
pub struct Args {
    /// Driver policy to try: auto, uring or epoll (default: $PROACTOR_DRIVER, else auto).
    #[arg(long)]
    driver: Option<DriverChoice>,
}

pub fn run(args: Args) -> ExitCode {
    restore_default_sigpipe();
    println!("kernel: {}", kernel_release());
    let mut builder = Proactor::builder();
    let name = |d: DriverChoice| format!("{d:?}").to_lowercase();
    let policy = match (args.driver, DriverChoice::from_env()) {
        (Some(d), _) => {
            builder = builder.driver(d);
            format!("{} (from --driver)", name(d))
        }
        (None, Ok(Some(d))) => format!("{} (from PROACTOR_DRIVER)", name(d)),
        (None, Ok(None)) => "auto (default)".to_string(),
        (None, Err(e)) => format!("invalid PROACTOR_DRIVER: {e}"),
    };
    println!("driver policy: {policy}");
    let code = match builder.build() {
        Ok(p) => {
            println!("driver: {}", p.driver_kind());
            if let Some(why) = p.fallback_reason() {
                println!("fallback reason: {why}");
            }
            if let Some(ring) = p.ring_config() {
                println!(
                    "ring: entries={} single_issuer={} defer_taskrun={} coop_taskrun={} sqpoll={:?} min_wait={:?}",
                    ring.sq_size(),
                    ring.is_single_issuer(),
                    ring.is_defer_taskrun(),
                    ring.is_coop_taskrun(),
                    ring.sqpoll_idle(),
                    ring.min_wait_cap()
                );
            }
            let f = p.in_flight();
            println!("in flight: {} (queued {})", f.in_flight, f.queued);
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("driver: unavailable: {e}");
            eprintln!("error: cannot start the requested driver: {e}");
            ExitCode::FAILURE
        }
    };
    print_uring_probe();
    code
}

fn print_uring_probe() {
    match probe_kernel() {
        Err(e) => println!("io_uring: unavailable ({e})"),
        Ok(probe) => {
            println!("io_uring opcodes:");
            for (name, required, supported) in &probe.opcodes {
                let need = if *required { "required" } else { "optional" };
                let have = if *supported { "yes" } else { "NO" };
                println!("  {name:<16} {need:<9} {have}");
            }
            println!("io_uring features:");
            for (name, present) in &probe.features {
                println!("  {name:<16} {}", if *present { "yes" } else { "no" });
            }
            println!("io_uring capabilities (tried on a scratch ring):");
            for (name, works) in &probe.capabilities {
                println!("  {name:<16} {}", if *works { "yes" } else { "no (fallback used)" });
            }
        }
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// `info` only prints, so let a closed pipe end it quietly (`proactor info | head`), as coreutils
/// do, instead of a panic from `println!`. The servers keep SIGPIPE ignored: their sockets must
/// report EPIPE, not kill the process.
fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler code; nothing else in
    // this command relies on SIGPIPE being ignored.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}
