//! `proactor copy`: an overlapped, crash-safe file copier built on the proactor's file
//! operations. A single file is copied by [`file`] with several reads and writes in flight; a
//! tree (`-r`) by [`tree`], many files at once. Either way DST appears only by `rename` of a
//! complete, synced copy ([`staging`]).

pub mod alignbuf;
#[allow(dead_code)] // Called by `proactor bench` (cli/src/cmd/bench.rs).
pub mod bench;
pub mod extents;
pub mod file;
pub mod kernel;
pub mod progress;
pub mod staging;
pub mod tree;

use proactor::{DriverChoice, Proactor};
use progress::Progress;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Everything `proactor copy` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Source file (or directory with `recursive`).
    pub src: PathBuf,
    /// Destination: a file name, or an existing directory to copy into.
    pub dst: PathBuf,
    /// Per-file settings (block, depth, direct, verify).
    pub settings: file::Settings,
    /// Copy a directory tree.
    pub recursive: bool,
    /// Files copied at once in a tree copy.
    pub jobs: usize,
    /// No progress bar.
    pub quiet: bool,
    /// Driver policy (`None`: `PROACTOR_DRIVER`, else auto).
    pub driver: Option<DriverChoice>,
}

/// Why a copy failed, in words a user can act on.
#[derive(Debug)]
pub enum CopyError {
    /// An OS error, with what was being done to which file.
    Io {
        /// What failed, naming the file.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// A plain explanation.
    Msg(String),
    /// `--direct` was asked for, and the filesystem holding this file refuses `O_DIRECT`.
    DirectRefused(PathBuf),
    /// `--verify` found the copy differs from the source.
    VerifyFailed {
        /// The destination.
        dst: PathBuf,
        /// Offset of the first chunk that differs.
        offset: u64,
    },
    /// SIGINT or SIGTERM arrived.
    Interrupted,
}

impl CopyError {
    /// An OS error with context.
    pub fn io(context: String, source: io::Error) -> Self {
        CopyError::Io { context, source }
    }
    /// A plain message.
    pub fn msg(m: String) -> Self {
        CopyError::Msg(m)
    }
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Io { context, source } => write!(f, "{context}: {}", describe(source)),
            CopyError::Msg(m) => f.write_str(m),
            CopyError::DirectRefused(p) => write!(
                f,
                "the filesystem holding '{}' refuses direct I/O (O_DIRECT); copy without --direct",
                p.display()
            ),
            CopyError::VerifyFailed { dst, offset } => write!(
                f,
                "verification failed: the copy for '{}' differs from the source in the block at \
                 offset {offset}; the destination was left unchanged",
                dst.display()
            ),
            CopyError::Interrupted => {
                f.write_str("interrupted; the destination was left unchanged")
            }
        }
    }
}

impl std::error::Error for CopyError {}

/// The OS error in plain words (without the wrapping operation name or errno number).
pub fn describe(e: &io::Error) -> String {
    match proactor::op::raw_os_error(e) {
        Some(libc::ENOSPC) => "no space left on device".into(),
        Some(libc::EDQUOT) => "disk quota exceeded".into(),
        Some(libc::EACCES) | Some(libc::EPERM) => "permission denied".into(),
        Some(libc::ENOENT) => "no such file or directory".into(),
        Some(libc::EROFS) => "read-only file system".into(),
        Some(libc::EFBIG) => "file too large".into(),
        Some(libc::EISDIR) => "is a directory".into(),
        Some(libc::ENOTDIR) => "not a directory".into(),
        Some(n) => {
            let s = io::Error::from_raw_os_error(n).to_string();
            s.split(" (os error").next().unwrap_or(&s).to_string()
        }
        None => e.to_string(),
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static INTERRUPT_FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// True once SIGINT or SIGTERM arrived: the copy stops and cleans up.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
        || INTERRUPT_FLAG.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// Catches SIGINT / SIGTERM so an interrupted copy removes its temporary files.
fn catch_interrupts() {
    let flag = INTERRUPT_FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
            tracing::warn!("cannot catch signal {sig}: {e}");
        }
    }
}

/// What a finished copy did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Files copied.
    pub files: u64,
    /// Bytes of data copied (holes not counted).
    pub bytes: u64,
}

/// Runs a whole copy on a new proactor.
pub fn copy(opts: &Options) -> Result<Summary, CopyError> {
    catch_interrupts();
    let mut builder = Proactor::builder();
    if let Some(d) = opts.driver {
        builder = builder.driver(d);
    }
    let p = builder.build().map_err(|e| CopyError::io("cannot start the proactor".into(), e))?;
    if opts.settings.direct && !opts.settings.block.is_multiple_of(alignbuf::ALIGN) {
        return Err(CopyError::msg(format!(
            "--direct needs a block size that is a multiple of {} bytes",
            alignbuf::ALIGN
        )));
    }
    if opts.recursive {
        p.block_on(tree::copy_tree(opts))
    } else {
        p.block_on(copy_one(opts))
    }
}

/// Where a copy of `src` to `dst` lands: `dst` itself, or `dst/<name of src>` when `dst` is an
/// existing directory.
pub fn target_path(src: &Path, dst: &Path) -> Result<PathBuf, CopyError> {
    if dst.is_dir() {
        let name = src.file_name().ok_or_else(|| {
            CopyError::msg(format!("source '{}' has no file name", src.display()))
        })?;
        Ok(dst.join(name))
    } else {
        Ok(dst.to_path_buf())
    }
}

/// The directory holding `path` and the name in it.
pub fn split_target(path: &Path) -> Result<(PathBuf, std::ffi::OsString), CopyError> {
    let name = path.file_name().ok_or_else(|| {
        CopyError::msg(format!("destination '{}' has no file name", path.display()))
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_owned()))
}

async fn copy_one(opts: &Options) -> Result<Summary, CopyError> {
    let (src_fd, info) = file::open_source(&opts.src, opts.settings.direct).await?;
    let target = target_path(&opts.src, &opts.dst)?;
    let (dir, name) = split_target(&target)?;
    let dir_fd = file::open_dir(&dir).await.map_err(|e| file::dir_error(&dir, e))?;
    if let Ok(st) = std::fs::metadata(&target) {
        use std::os::unix::fs::MetadataExt;
        if (st.dev(), st.ino()) == info.id {
            return Err(CopyError::msg(format!(
                "'{}' and '{}' are the same file",
                opts.src.display(),
                target.display()
            )));
        }
        if st.is_dir() {
            return Err(CopyError::msg(format!(
                "destination '{}' is a directory",
                target.display()
            )));
        }
    }
    let progress = Progress::new(info.size, opts.quiet);
    let res = file::copy_open(
        src_fd,
        &info,
        &opts.src,
        dir_fd,
        &name,
        &target,
        &opts.settings,
        &progress,
    )
    .await;
    progress.finish();
    res.map(|_| Summary { files: 1, bytes: info.size })
}
