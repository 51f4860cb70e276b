//! `proactor copy -r`: a directory tree, many files in flight at once.
//!
//! The tree is walked first (directories, files, symlinks), the directories are created, then
//! `--jobs` workers copy files concurrently, each file into a named temporary file beside its
//! destination. Syncing ten thousand files one by one would cost ten thousand device flushes, so
//! the tree is flushed once (`syncfs`) when every file is written, and only then is each file
//! renamed into place: no destination file ever appears before its data is on the device.

use super::file::{self, Settings};
use super::progress::Progress;
use super::staging::Staged;
use super::{interrupted, CopyError, Options, Summary};
use std::cell::{Cell, RefCell};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A file to copy: its path relative to the roots, and the index of its directory.
struct FileEntry {
    rel: PathBuf,
    dir: usize,
}

/// The walked tree.
#[derive(Default)]
struct Walk {
    /// Directories relative to the root, parents before children ("" is the root).
    dirs: Vec<PathBuf>,
    files: Vec<FileEntry>,
    symlinks: Vec<(PathBuf, usize)>,
    /// Total size of the files, when a progress bar needs it.
    bytes: u64,
}

fn walk(src: &Path, want_sizes: bool) -> Result<Walk, CopyError> {
    let mut w = Walk { dirs: vec![PathBuf::new()], ..Walk::default() };
    let mut i = 0;
    while i < w.dirs.len() {
        let rel = w.dirs[i].clone();
        let path = src.join(&rel);
        let rd = std::fs::read_dir(&path)
            .map_err(|e| CopyError::io(format!("cannot read directory '{}'", path.display()), e))?;
        let mut names: Vec<(OsString, std::fs::FileType)> = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| {
                CopyError::io(format!("cannot read directory '{}'", path.display()), e)
            })?;
            let ty = ent
                .file_type()
                .map_err(|e| CopyError::io(format!("cannot stat '{}'", ent.path().display()), e))?;
            if want_sizes && ty.is_file() {
                w.bytes += ent.metadata().map(|m| m.len()).unwrap_or(0);
            }
            names.push((ent.file_name(), ty));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, ty) in names {
            let r = rel.join(&name);
            if ty.is_dir() {
                w.dirs.push(r);
            } else if ty.is_file() {
                w.files.push(FileEntry { rel: r, dir: i });
            } else if ty.is_symlink() {
                w.symlinks.push((r, i));
            } else {
                tracing::warn!("skipping '{}': not a file, directory or symlink", r.display());
            }
        }
        i += 1;
    }
    Ok(w)
}

/// Raises the soft limit on open descriptors to the hard limit: a tree copy holds one per
/// directory plus a few per file in flight.
fn raise_fd_limit() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `r` is a valid rlimit out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 && r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: `r` is a valid rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    }
}

/// Shared by the file workers.
struct TreeJob {
    src: PathBuf,
    root: PathBuf,
    files: Vec<FileEntry>,
    dir_fds: Vec<Rc<OwnedFd>>,
    next: Cell<usize>,
    staged: RefCell<Vec<Staged>>,
    error: RefCell<Option<CopyError>>,
    settings: Settings,
    progress: Progress,
    bytes: Cell<u64>,
}

async fn file_worker(job: Rc<TreeJob>) {
    loop {
        if job.error.borrow().is_some() {
            return;
        }
        if interrupted() {
            *job.error.borrow_mut() = Some(CopyError::Interrupted);
            return;
        }
        let i = job.next.get();
        let Some(entry) = job.files.get(i) else { return };
        job.next.set(i + 1);
        let src = job.src.join(&entry.rel);
        let dst = job.root.join(&entry.rel);
        let res = async {
            let (fd, info) = file::open_source(&src, job.settings.direct).await?;
            let name = entry.rel.file_name().expect("a walked file has a name");
            let dir = job.dir_fds[entry.dir].clone();
            let staged =
                file::copy_open(fd, &info, &src, dir, name, &dst, &job.settings, &job.progress)
                    .await?;
            Ok::<_, CopyError>((staged, info.size))
        }
        .await;
        match res {
            Ok((Some(s), size)) => {
                job.staged.borrow_mut().push(s);
                job.bytes.set(job.bytes.get() + size);
            }
            Ok((None, size)) => job.bytes.set(job.bytes.get() + size),
            Err(e) => {
                let mut slot = job.error.borrow_mut();
                if slot.is_none() {
                    *slot = Some(e);
                }
                return;
            }
        }
    }
}

fn syncfs(fd: &OwnedFd, root: &Path) -> Result<(), CopyError> {
    // SAFETY: syncfs takes no pointers.
    if unsafe { libc::syncfs(fd.as_raw_fd()) } < 0 {
        let e = io::Error::last_os_error();
        return Err(CopyError::io(format!("cannot sync '{}'", root.display()), e));
    }
    Ok(())
}

/// Copies the tree `opts.src` to `opts.dst` (or into it, when it is an existing directory).
pub async fn copy_tree(opts: &Options) -> Result<Summary, CopyError> {
    let meta = std::fs::metadata(&opts.src)
        .map_err(|e| CopyError::io(format!("cannot read source '{}'", opts.src.display()), e))?;
    if !meta.is_dir() {
        return super::copy_one(opts).await;
    }
    let root = super::target_path(&opts.src, &opts.dst)?;
    let (parent, _) = super::split_target(&root)?;
    if !parent.is_dir() {
        return Err(CopyError::msg(format!(
            "destination directory '{}' does not exist",
            parent.display()
        )));
    }
    if let (Ok(s), Ok(p)) = (opts.src.canonicalize(), parent.canonicalize()) {
        if p.starts_with(&s) {
            return Err(CopyError::msg(format!(
                "cannot copy directory '{}' into itself ('{}')",
                opts.src.display(),
                root.display()
            )));
        }
    }
    if let Ok(m) = std::fs::symlink_metadata(&root) {
        if !m.is_dir() {
            return Err(CopyError::msg(format!(
                "destination '{}' exists and is not a directory",
                root.display()
            )));
        }
    }
    raise_fd_limit();
    let want_sizes = !opts.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let w = walk(&opts.src, want_sizes)?;

    // Directories, parents first; writable by us until the files are in.
    let mut dir_fds = Vec::with_capacity(w.dirs.len());
    for rel in &w.dirs {
        let d = root.join(rel);
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => {
                return Err(CopyError::io(format!("cannot create directory '{}'", d.display()), e))
            }
        }
        let fd = file::open_dir(&d).await.map_err(|e| file::dir_error(&d, e))?;
        dir_fds.push(fd);
    }

    let mut settings = opts.settings.clone();
    settings.publish = false;
    // Many files at once: fewer chunks in flight per file keeps memory bounded.
    settings.depth = (settings.depth / 4).max(1);
    let files = w.files.len();
    let job = Rc::new(TreeJob {
        src: opts.src.clone(),
        root: root.clone(),
        files: w.files,
        dir_fds,
        next: Cell::new(0),
        staged: RefCell::new(Vec::with_capacity(files)),
        error: RefCell::new(None),
        settings,
        progress: Progress::new(w.bytes, !want_sizes),
        bytes: Cell::new(0),
    });
    let workers: Vec<_> = (0..opts.jobs.max(1).min(files.max(1)))
        .map(|_| proactor::spawn(file_worker(job.clone())))
        .collect();
    for h in workers {
        if h.await.is_err() {
            *job.error.borrow_mut() = Some(CopyError::msg("a copy worker panicked".into()));
        }
    }
    job.progress.finish();
    if let Some(e) = job.error.borrow_mut().take() {
        // Dropping the staged files removes them.
        job.staged.borrow_mut().clear();
        return Err(e);
    }

    // One flush for the whole tree, then every file appears under its name.
    let root_fd = &job.dir_fds[0];
    syncfs(root_fd, &root)?;
    let staged = std::mem::take(&mut *job.staged.borrow_mut());
    for s in staged {
        if let Err(e) = s.publish() {
            return Err(CopyError::io(format!("cannot rename files into '{}'", root.display()), e));
        }
    }
    for (rel, _) in &w.symlinks {
        copy_symlink(&opts.src.join(rel), &root.join(rel))?;
    }
    // Directory permissions and times last, children before parents.
    for rel in w.dirs.iter().rev() {
        let (s, d) = (opts.src.join(rel), root.join(rel));
        let m = std::fs::metadata(&s)
            .map_err(|e| CopyError::io(format!("cannot stat '{}'", s.display()), e))?;
        set_dir_meta(&d, &m)?;
    }
    syncfs(root_fd, &root)?;
    Ok(Summary { files: files as u64, bytes: job.bytes.get() })
}

fn copy_symlink(src: &Path, dst: &Path) -> Result<(), CopyError> {
    let target = std::fs::read_link(src)
        .map_err(|e| CopyError::io(format!("cannot read symlink '{}'", src.display()), e))?;
    match std::fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => {
            return Err(CopyError::msg(format!(
                "cannot replace directory '{}' with a symlink",
                dst.display()
            )))
        }
        Ok(_) => {
            let _ = std::fs::remove_file(dst);
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&target, dst)
        .map_err(|e| CopyError::io(format!("cannot create symlink '{}'", dst.display()), e))
}

fn set_dir_meta(dst: &Path, m: &std::fs::Metadata) -> Result<(), CopyError> {
    use std::os::unix::fs::PermissionsExt;
    let perms = std::fs::Permissions::from_mode(m.mode() & 0o7777);
    std::fs::set_permissions(dst, perms)
        .map_err(|e| CopyError::io(format!("cannot set permissions of '{}'", dst.display()), e))?;
    let times = [
        libc::timespec { tv_sec: m.atime(), tv_nsec: m.atime_nsec() as _ },
        libc::timespec { tv_sec: m.mtime(), tv_nsec: m.mtime_nsec() as _ },
    ];
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dst.as_os_str()))
        .map_err(|_| CopyError::msg(format!("path '{}' contains a NUL byte", dst.display())))?;
    // SAFETY: a NUL-terminated path and an array of two timespecs.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) } < 0 {
        let e = io::Error::last_os_error();
        return Err(CopyError::io(format!("cannot set times of '{}'", dst.display()), e));
    }
    Ok(())
}
