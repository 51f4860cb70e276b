//! End-to-end tests of `proactor copy`: the real binary on real files, once per driver.
//!
//! Every test runs twice, with `--driver uring` and `--driver epoll`.

mod server_support;

use rand::{RngCore, SeedableRng};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: u64 = 1 << 20;

fn copy_cmd(driver: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_proactor"));
    c.arg("copy").arg("--driver").arg(driver).arg("--quiet");
    c
}

fn run(mut c: Command) -> Output {
    let out = c.output().expect("run proactor copy");
    if !out.status.success() {
        eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

fn copy_ok(driver: &str, args: &[&str], src: &Path, dst: &Path) {
    let mut c = copy_cmd(driver);
    c.args(args).arg(src).arg(dst);
    let out = run(c);
    assert!(out.status.success(), "copy {} -> {} failed", src.display(), dst.display());
    assert!(out.stdout.is_empty(), "a copy prints nothing on stdout");
    // Nothing on stderr either, except any warning the I/O driver itself logs.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<_> = stderr.lines().filter(|l| !l.contains("proactor::driver")).collect();
    assert!(ours.is_empty(), "a quiet copy prints nothing: {ours:?}");
}

fn copy_err(driver: &str, args: &[&str], src: &Path, dst: &Path) -> String {
    let mut c = copy_cmd(driver);
    c.args(args).arg(src).arg(dst);
    let out = c.output().expect("run proactor copy");
    assert!(!out.status.success(), "copy {} -> {} should fail", src.display(), dst.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Copies `src` to `dst` on the small filesystem at `fs_root`, which runs out of space: the copy
/// fails with ENOSPC, leaves no DST, and `fs_root` holds `entries` entries afterwards.
fn copy_runs_out_of_space(
    driver: &str,
    src: &Path,
    dst: &Path,
    fs_root: &Path,
    entries: usize,
    why: &str,
) {
    let err = copy_err(driver, &[], src, dst);
    assert!(err.contains("no space left on device"), "{err}");
    assert!(!dst.exists(), "no DST after a failed copy");
    assert_eq!(fs::read_dir(fs_root).unwrap().count(), entries, "{why}");
}

/// A file of `len` random bytes (seeded), written in 1 MiB pieces.
fn random_file(path: &Path, len: u64, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut f = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// Asserts two files have identical bytes (compared in 1 MiB pieces, like `cmp`).
fn assert_same(a: &Path, b: &Path) {
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    assert_eq!(fa.metadata().unwrap().len(), fb.metadata().unwrap().len(), "sizes differ");
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    let mut off = 0u64;
    loop {
        let n = read_full(&mut fa, &mut ba);
        let m = read_full(&mut fb, &mut bb);
        assert_eq!(n, m);
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            panic!("{} and {} differ at byte {}", a.display(), b.display(), off + i as u64);
        }
        if n == 0 {
            return;
        }
        off += n as u64;
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]).unwrap() {
            0 => break,
            n => got += n,
        }
    }
    got
}

/// Names left in `dir` that look like the copier's temporary files.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".proactor-copy-"))
        .collect()
}

fn set_mtime(path: &Path, secs: i64, nsec: i64) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let t = [libc::timespec { tv_sec: secs, tv_nsec: nsec }; 2];
    // SAFETY: a NUL-terminated path and two timespecs.
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), t.as_ptr(), 0) }, 0);
}

#[proactor::test]
fn small_and_block_edge_sizes(driver: &str) {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [0, 1, MIB - 1, MIB, MIB + 1, 5 * MIB + 123];
    for (i, &len) in sizes.iter().enumerate() {
        let src = dir.path().join(format!("src{i}"));
        let dst = dir.path().join(format!("dst{i}"));
        random_file(&src, len, i as u64);
        fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
        set_mtime(&src, 1_000_000_000, 123_456_789);
        copy_ok(driver, &[], &src, &dst);
        assert_same(&src, &dst);
        let m = fs::metadata(&dst).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640, "permissions preserved");
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_000_000_000, 123_456_789), "mtime preserved");
    }
    // Odd block and depth settings, into an existing directory, over an existing file.
    let src = dir.path().join("src5");
    let into = dir.path().join("into");
    fs::create_dir(&into).unwrap();
    fs::write(into.join("src5"), b"old contents").unwrap();
    copy_ok(driver, &["--block", "4097", "--depth", "3"], &src, &into);
    assert_same(&src, &into.join("src5"));
    assert!(temp_files(dir.path()).is_empty() && temp_files(&into).is_empty());
}

#[proactor::test]
fn one_gib_random(driver: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("big"), dir.path().join("big.copy"));
    random_file(&src, 1024 * MIB, 42);
    copy_ok(driver, &[], &src, &dst);
    assert_same(&src, &dst);
    fs::remove_file(&dst).unwrap();
    // The same through O_DIRECT, with an unaligned tail.
    let odd = dir.path().join("odd");
    random_file(&odd, 64 * MIB + 12345, 7);
    copy_ok(driver, &["--direct", "--verify"], &odd, &dst);
    assert_same(&odd, &dst);
}

#[proactor::test]
fn kernel_and_buffered_paths_agree(driver: &str) {
    // 96 MiB and change: large enough for several read streams and the in-kernel copy.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big");
    random_file(&src, 96 * MIB + 777, 5);
    fs::set_permissions(&src, fs::Permissions::from_mode(0o604)).unwrap();
    set_mtime(&src, 1_200_000_000, 5);
    let variants: [&[&str]; 4] = [
        &[],
        &["--buffered"],
        &["--block", "3M", "--depth", "3"],
        &["--buffered", "--block", "1000000", "--depth", "5", "--verify"],
    ];
    for (i, args) in variants.iter().enumerate() {
        let dst = dir.path().join(format!("copy{i}"));
        copy_ok(driver, args, &src, &dst);
        assert_same(&src, &dst);
        let m = fs::metadata(&dst).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o604, "permissions preserved ({args:?})");
        assert_eq!(m.mtime(), 1_200_000_000, "mtime preserved ({args:?})");
        fs::remove_file(&dst).unwrap();
    }
    assert!(temp_files(dir.path()).is_empty());
}

#[proactor::test]
fn no_space_in_kernel_copy(driver: &str) {
    // Source and copy on one small tmpfs, so copy_file_range works between them until the
    // space runs out.
    let Some(small) = SmallFs::mount_size("100m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let src = small.dir.path().join("src");
    random_file(&src, 70 * MIB, 8);
    let dst = small.dir.path().join("dst");
    copy_runs_out_of_space(driver, &src, &dst, small.dir.path(), 1, "only the source is left");
}

#[proactor::test]
fn sparse_stays_sparse(driver: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("sparse"), dir.path().join("sparse.copy"));
    {
        let mut f = fs::File::create(&src).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut data = vec![0u8; MIB as usize];
        rng.fill_bytes(&mut data);
        for off in [0, 1024 * MIB + 4096, 3 * 1024 * MIB + 7] {
            f.seek(SeekFrom::Start(off)).unwrap();
            f.write_all(&data).unwrap();
        }
        f.set_len(4 * 1024 * MIB).unwrap();
    }
    copy_ok(driver, &[], &src, &dst);
    let (ms, md) = (fs::metadata(&src).unwrap(), fs::metadata(&dst).unwrap());
    assert_eq!(md.len(), 4 * 1024 * MIB);
    // Three MiB of data (plus block rounding), nowhere near 4 GiB.
    assert!(
        md.blocks() <= ms.blocks() + 2 * 1024,
        "copy uses {} blocks, source {}",
        md.blocks(),
        ms.blocks()
    );
    assert_same(&src, &dst);
}

/// Builds 100 directories of 100 files (random sizes up to 8 KiB), with varied permissions,
/// a symlink and an empty directory.
fn build_tree(root: &Path) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut buf = vec![0u8; 8192];
    for d in 0..100 {
        let dir = root.join(format!("d{d:03}")).join("sub");
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let len = (rng.next_u32() % 8193) as usize;
            rng.fill_bytes(&mut buf[..len]);
            let p = dir.join(format!("f{f:03}"));
            fs::write(&p, &buf[..len]).unwrap();
            let mode = [0o644, 0o600, 0o755, 0o444][f % 4];
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    fs::create_dir(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("d000/sub/f000", root.join("link")).unwrap();
}

fn assert_same_tree(a: &Path, b: &Path) -> usize {
    let mut files = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let ma = fs::symlink_metadata(&pa).unwrap();
        let mb = fs::symlink_metadata(&pb).unwrap_or_else(|_| panic!("{} missing", pb.display()));
        assert_eq!(ma.file_type(), mb.file_type(), "{}", rel.display());
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
            continue;
        }
        assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "mode of {}", rel.display());
        if ma.is_dir() {
            let mut na: Vec<_> =
                fs::read_dir(&pa).unwrap().map(|e| e.unwrap().file_name()).collect();
            let mut nb: Vec<_> =
                fs::read_dir(&pb).unwrap().map(|e| e.unwrap().file_name()).collect();
            na.sort();
            nb.sort();
            assert_eq!(na, nb, "entries of {}", rel.display());
            stack.extend(na.into_iter().map(|n| rel.join(n)));
        } else {
            assert_eq!(fs::read(&pa).unwrap(), fs::read(&pb).unwrap(), "{}", rel.display());
            assert_eq!(ma.mtime(), mb.mtime());
            files += 1;
        }
    }
    files
}

#[proactor::test]
fn tree_of_ten_thousand_files(driver: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    build_tree(&src);
    let dst = dir.path().join("copy");
    copy_ok(driver, &["-r"], &src, &dst);
    assert_eq!(assert_same_tree(&src, &dst), 10_000);
    // Again into an existing directory: lands in dst/tree.
    copy_ok(driver, &["-r"], &src, &dst);
    assert_eq!(assert_same_tree(&src, &dst.join("tree")), 10_000);
    // A directory cannot be copied into itself.
    let err = copy_err(driver, &["-r"], &src, &src.join("d000"));
    assert!(err.contains("into itself"), "{err}");
}

/// A 1 MiB tmpfs mounted on a fresh directory, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount() -> Option<SmallFs> {
        Self::mount_size("1m")
    }
    fn mount_size(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallFs { dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[proactor::test]
fn no_space_leaves_nothing(driver: &str) {
    let Some(small) = SmallFs::mount() else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("four_mib");
    random_file(&src, 4 * MIB, 3);
    let dst = small.dir.path().join("dst");
    copy_runs_out_of_space(driver, &src, &dst, small.dir.path(), 0, "no temporary file left");
    // A tree copy (named temporary files) cleans up as well.
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    for i in 0..8 {
        random_file(&tree.join(format!("f{i}")), 512 * 1024, i);
    }
    let err = copy_err(driver, &["-r"], &tree, &small.dir.path().join("t"));
    assert!(err.contains("no space left on device"), "{err}");
    let left: Vec<_> = fs::read_dir(small.dir.path().join("t"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

// Needs the binary's test hook: `cargo test --release -p proactor-cli --features test-hooks
// --test copy verify_catches_corruption` (run by .ci/run).
#[cfg(feature = "test-hooks")]
#[proactor::test]
fn verify_catches_corruption(driver: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    random_file(&src, 3 * MIB + 5, 11);
    fs::write(&dst, b"previous contents").unwrap();
    // The test hook flips one byte of the synced copy before verification (see copy/file.rs).
    let mut c = copy_cmd(driver);
    c.env("PROACTOR_COPY_FAULT", "flip-byte").arg("--verify").arg(&src).arg(&dst);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("verification failed"), "{err}");
    assert_eq!(fs::read(&dst).unwrap(), b"previous contents", "DST left unchanged");
    assert!(temp_files(dir.path()).is_empty());
    // Without --verify the same fault goes unnoticed: the check is what caught it.
    let mut c = copy_cmd(driver);
    c.env("PROACTOR_COPY_FAULT", "flip-byte").arg(&src).arg(&dst);
    assert!(c.status().unwrap().success());
    assert_ne!(fs::read(&src).unwrap(), fs::read(&dst).unwrap());
    // And with --verify and no fault, the copy succeeds.
    copy_ok(driver, &["--verify"], &src, &dst);
    assert_same(&src, &dst);
}

#[proactor::test]
fn clear_errors(driver: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::write(&src, b"data").unwrap();
    let err = copy_err(driver, &[], &dir.path().join("missing"), &dir.path().join("x"));
    assert!(err.contains("cannot open source") && err.contains("no such file"), "{err}");
    let err = copy_err(driver, &[], &src, &dir.path().join("nodir/x"));
    assert!(err.contains("does not exist"), "{err}");
    let err = copy_err(driver, &[], &src, &src);
    assert!(err.contains("same file"), "{err}");
    fs::hard_link(&src, dir.path().join("hard")).unwrap();
    let err = copy_err(driver, &[], &src, &dir.path().join("hard"));
    assert!(err.contains("same file"), "{err}");
    let err = copy_err(driver, &[], dir.path(), &dir.path().join("y"));
    assert!(err.contains("use -r"), "{err}");
    assert_eq!(fs::read(&src).unwrap(), b"data");
}

// Runs the copy as an unprivileged user (root bypasses permission checks).
#[proactor::test]
fn permission_denied(driver: &str) {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let secret = dir.path().join("secret");
    fs::write(&secret, b"root only").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let public = dir.path().join("public");
    fs::write(&public, b"anyone").unwrap();
    fs::set_permissions(&public, fs::Permissions::from_mode(0o644)).unwrap();
    let locked = dir.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |src: &Path, dst: &Path| {
        let mut c = copy_cmd(driver);
        // SAFETY (test): setuid in the child before exec only.
        if unsafe { libc::geteuid() } == 0 {
            use std::os::unix::process::CommandExt;
            unsafe {
                c.pre_exec(|| {
                    if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        } else {
            fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
            fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
        }
        c.arg(src).arg(dst);
        let out = c.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = as_nobody(&secret, &dir.path().join("x"));
    assert!(err.contains("permission denied"), "{err}");
    let err = as_nobody(&public, &locked.join("x"));
    assert!(err.contains("permission denied"), "{err}");
    assert_eq!(fs::read_dir(&locked).unwrap().count(), 0);
}
