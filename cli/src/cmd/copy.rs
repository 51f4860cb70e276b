//! `proactor copy SRC DST`: the command line of the overlapped, crash-safe copier (the work is
//! in `crate::copy`).

use crate::copy::{self, file::Settings, Options};
use proactor::DriverChoice;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `proactor copy`.
#[derive(clap::Args)]
pub struct Args {
    /// Source file (a directory with -r).
    src: PathBuf,
    /// Destination file, or an existing directory to copy into.
    dst: PathBuf,
    /// Operations in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    depth: u16,
    /// Bytes per read and write (suffixes K, M, G accepted).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    block: usize,
    /// Copy a directory tree.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Files copied at once with -r.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    jobs: u16,
    /// Bypass the page cache (O_DIRECT, aligned buffers).
    #[arg(long)]
    direct: bool,
    /// Re-read the copy and compare SHA-256 hashes with the source before publishing it.
    #[arg(long)]
    verify: bool,
    /// Copy through user-space buffers (overlapped reads and writes) even where the kernel
    /// could copy the file itself (`copy_file_range`, used for files of 64 MiB and more).
    #[arg(long)]
    buffered: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    /// Driver: auto, uring or epoll (default: $PROACTOR_DRIVER, else auto).
    #[arg(long)]
    driver: Option<DriverChoice>,
}

/// Parses `4096`, `64K`, `1M`, `1G` (powers of 1024).
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix in {s:?} (use K, M or G)")),
            };
            (&s[..i], mult)
        }
        _ => (s, 1),
    };
    let n: usize = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let v = n.checked_mul(mult).ok_or_else(|| format!("size too large: {s:?}"))?;
    if v == 0 || v > 1 << 30 {
        return Err(format!("block size must be between 1 byte and 1 GiB, got {s:?}"));
    }
    Ok(v)
}

/// Runs `proactor copy`.
pub fn run(args: Args) -> ExitCode {
    let opts = Options {
        src: args.src,
        dst: args.dst,
        settings: Settings {
            block: args.block,
            depth: args.depth as usize,
            direct: args.direct,
            verify: args.verify,
            buffered: args.buffered,
            publish: true,
        },
        recursive: args.recursive,
        jobs: args.jobs as usize,
        quiet: args.quiet,
        driver: args.driver,
    };
    let started = std::time::Instant::now();
    match copy::copy(&opts) {
        Ok(done) => {
            if !opts.quiet && std::io::stderr().is_terminal() {
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "copied {} file(s), {:.1} MiB in {secs:.2}s ({:.1} MiB/s)",
                    done.files,
                    done.bytes as f64 / 1048576.0,
                    done.bytes as f64 / 1048576.0 / secs.max(1e-9)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("proactor copy: {e}");
            ExitCode::FAILURE
        }
    }
}
