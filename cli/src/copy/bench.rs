//! Benchmark of `proactor copy` against GNU `cp` (called by `proactor bench`).
//!
//! Both tools run as child processes on the same files, in alternating order, several times; the
//! report gives the median wall time of each and the speed-up (cp time / proactor time). Cases:
//! a large file with its source evicted from the page cache first (`posix_fadvise(DONTNEED)`) and
//! the copy flushed (`cp` is followed by `sync FILE`, which fsyncs it; `proactor copy` always
//! syncs), the same with the source cached, the same with `--direct`, and a tree of many small
//! files against `cp -r` (with and without a `syncfs` after `cp -r`, since `proactor copy -r`
//! always flushes the tree before publishing it).

use crate::bench::report::median;
use rand::{RngCore, SeedableRng};
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct CopyBenchConfig {
    /// Scratch directory (on the disk to measure); the benchmark files are removed afterwards.
    pub dir: PathBuf,
    /// Size of the large file (the issue asks for 2 GiB).
    pub big_size: u64,
    /// Number of small files in the tree (10,000).
    pub small_files: usize,
    /// Size of each small file (4 KiB).
    pub small_size: usize,
    /// Alternating runs per case; the median is reported.
    pub runs: usize,
    /// The `proactor` executable to run (normally `std::env::current_exe()`).
    pub proactor_bin: PathBuf,
    /// Extra arguments for every `proactor copy` (for example `--driver epoll`).
    pub extra_args: Vec<String>,
}

impl CopyBenchConfig {
    /// The issue's figures: 2 GiB, 10,000 × 4 KiB, 5 runs, in `dir`.
    pub fn standard(dir: PathBuf) -> CopyBenchConfig {
        CopyBenchConfig {
            dir,
            big_size: 2 << 30,
            small_files: 10_000,
            small_size: 4096,
            runs: 5,
            proactor_bin: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("proactor")),
            extra_args: Vec::new(),
        }
    }
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CopyBenchRow {
    /// What was copied and how.
    pub case: String,
    /// Median seconds of `proactor copy`.
    pub proactor_s: f64,
    /// Median seconds of the `cp` command line.
    pub cp_s: f64,
    /// `cp_s / proactor_s`: above 1 means the proactor is faster.
    pub speedup: f64,
    /// The issue's target for `speedup` (`None`: reported only, as for `--direct`).
    pub target: Option<f64>,
    /// Every run, `(proactor_s, cp_s)`, in order.
    pub runs: Vec<(f64, f64)>,
}

impl CopyBenchRow {
    /// True when the target is met (or there is none).
    pub fn met(&self) -> bool {
        self.target.is_none_or(|t| self.speedup >= t)
    }
}

/// Drops the file's pages from the page cache (after flushing it).
fn evict(path: &Path) -> anyhow::Result<()> {
    let f = fs::File::open(path)?;
    f.sync_all()?;
    // SAFETY: posix_fadvise takes no pointers.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    anyhow::ensure!(
        r == 0,
        "posix_fadvise(DONTNEED) failed: {}",
        std::io::Error::from_raw_os_error(r)
    );
    Ok(())
}

/// Reads the whole file so it is in the page cache.
fn warm(path: &Path) -> anyhow::Result<()> {
    let mut f = fs::File::open(path)?;
    std::io::copy(&mut f, &mut std::io::sink())?;
    Ok(())
}

fn timed(mut cmds: Vec<Command>) -> anyhow::Result<f64> {
    let start = Instant::now();
    for c in cmds.iter_mut() {
        let out = c.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
        anyhow::ensure!(
            out.status.success(),
            "{:?} failed: {}",
            c,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(start.elapsed().as_secs_f64())
}

fn remove(path: &Path) {
    if path.is_dir() {
        let _ = fs::remove_dir_all(path);
    } else {
        let _ = fs::remove_file(path);
    }
}

/// Writes `len` bytes of random data (incompressible, no holes).
fn make_file(path: &Path, len: u64, seed: u64) -> anyhow::Result<()> {
    if fs::metadata(path).map(|m| m.len() == len).unwrap_or(false) {
        return Ok(());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut f = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

fn make_tree(root: &Path, files: usize, size: usize) -> anyhow::Result<()> {
    if root.is_dir() {
        return Ok(());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    let mut buf = vec![0u8; size];
    for i in 0..files {
        let dir = root.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&dir)?;
        }
        rng.fill_bytes(&mut buf);
        fs::write(dir.join(format!("f{i:05}")), &buf)?;
    }
    Ok(())
}

/// Runs one case: `prepare` before every run of either tool, then the two command lines timed
/// in alternating order; `cleanup` after each run.
fn case(
    name: String,
    target: Option<f64>,
    runs: usize,
    prepare: &dyn Fn() -> anyhow::Result<()>,
    proactor: &dyn Fn() -> Vec<Command>,
    cp: &dyn Fn() -> Vec<Command>,
    cleanup: &dyn Fn(),
) -> anyhow::Result<CopyBenchRow> {
    let mut all = Vec::with_capacity(runs);
    for i in 0..runs.max(1) {
        let one = |cmds: Vec<Command>| -> anyhow::Result<f64> {
            cleanup();
            prepare()?;
            let t = timed(cmds)?;
            cleanup();
            Ok(t)
        };
        let (p, c) = if i % 2 == 0 {
            let p = one(proactor())?;
            (p, one(cp())?)
        } else {
            let c = one(cp())?;
            (one(proactor())?, c)
        };
        all.push((p, c));
    }
    let proactor_s = median(all.iter().map(|r| r.0).collect());
    let cp_s = median(all.iter().map(|r| r.1).collect());
    Ok(CopyBenchRow { case: name, proactor_s, cp_s, speedup: cp_s / proactor_s, target, runs: all })
}

/// Runs every case and returns the rows (the scratch files are removed at the end).
pub fn run_copy_bench(cfg: &CopyBenchConfig) -> anyhow::Result<Vec<CopyBenchRow>> {
    anyhow::ensure!(
        Command::new("cp").arg("--version").stdout(Stdio::null()).status().is_ok(),
        "`cp` is not available"
    );
    fs::create_dir_all(&cfg.dir)?;
    let src = cfg.dir.join("bench-src.bin");
    let dst = cfg.dir.join("bench-dst.bin");
    let tree = cfg.dir.join("bench-tree");
    let tree_dst = cfg.dir.join("bench-tree-copy");
    make_file(&src, cfg.big_size, 1)?;
    let gib = cfg.big_size as f64 / (1u64 << 30) as f64;
    let mut rows = Vec::new();

    let proactor = |extra: &[&str], s: &Path, d: &Path| {
        let mut c = Command::new(&cfg.proactor_bin);
        c.arg("copy").arg("--quiet").args(&cfg.extra_args).args(extra).arg(s).arg(d);
        c
    };
    let cp_sync = || {
        let mut cp = Command::new("cp");
        cp.arg(&src).arg(&dst);
        let mut sync = Command::new("sync");
        sync.arg(&dst);
        vec![cp, sync]
    };
    let rm_dst = || remove(&dst);
    let evicted = || evict(&src);
    let cached = || warm(&src);

    rows.push(case(
        format!("{gib:.1} GiB file, source evicted, fsynced"),
        Some(1.2),
        cfg.runs,
        &evicted,
        &|| vec![proactor(&[], &src, &dst)],
        &cp_sync,
        &rm_dst,
    )?);
    rows.push(case(
        format!("{gib:.1} GiB file, source cached, fsynced"),
        Some(0.8),
        cfg.runs,
        &cached,
        &|| vec![proactor(&[], &src, &dst)],
        &cp_sync,
        &rm_dst,
    )?);
    match case(
        format!("{gib:.1} GiB file --direct, source evicted"),
        None,
        cfg.runs,
        &evicted,
        &|| vec![proactor(&["--direct"], &src, &dst)],
        &cp_sync,
        &rm_dst,
    ) {
        Ok(r) => rows.push(r),
        Err(e) => eprintln!("copy bench: --direct skipped: {e:#}"),
    }
    remove(&src);

    make_tree(&tree, cfg.small_files, cfg.small_size)?;
    let kib = cfg.small_size / 1024;
    let warm_tree = || Ok(());
    let rm_tree = || remove(&tree_dst);
    let cp_r = || {
        let mut c = Command::new("cp");
        c.arg("-r").arg(&tree).arg(&tree_dst);
        vec![c]
    };
    let cp_r_sync = || {
        let mut sync = Command::new("sync");
        sync.arg("-f").arg(&cfg.dir);
        let mut v = cp_r();
        v.push(sync);
        v
    };
    // One unmeasured run warms the tree's metadata and data in the page cache.
    timed(cp_r())?;
    remove(&tree_dst);
    let against: [(&str, &dyn Fn() -> Vec<Command>); 2] =
        [("cp -r", &cp_r), ("cp -r + syncfs", &cp_r_sync)];
    for (what, cp) in against {
        rows.push(case(
            format!("{} x {kib} KiB files vs {what}", cfg.small_files),
            Some(2.0),
            cfg.runs,
            &warm_tree,
            &|| vec![proactor(&["-r"], &tree, &tree_dst)],
            cp,
            &rm_tree,
        )?);
    }
    remove(&tree);
    Ok(rows)
}

/// Prints the rows as a table.
pub fn print_copy_report(rows: &[CopyBenchRow]) {
    println!(
        "{:<48} {:>11} {:>9} {:>9} {:>7}  ",
        "copy case", "proactor s", "cp s", "speed-up", "target"
    );
    for r in rows {
        let (target, verdict) = match r.target {
            Some(t) => (format!("{t:.1}x"), if r.met() { "met" } else { "MISSED" }),
            None => ("-".to_string(), "reported"),
        };
        println!(
            "{:<48} {:>11.3} {:>9.3} {:>8.2}x {:>7}  {}",
            r.case, r.proactor_s, r.cp_s, r.speedup, target, verdict
        );
    }
}
