//! Files and paths: [`File`] with [`OpenOptions`], [`Metadata`] from `statx`, and the path
//! operations `remove_file`, `remove_dir`, `rename`, `create_dir`.
//!
//! Every call is an operation (on io_uring a kernel operation; on epoll a job on the blocking
//! pool) and every error names the path it failed on.

mod file;
mod metadata;
mod options;

pub use file::File;
pub use metadata::Metadata;
pub use options::OpenOptions;

use crate::io::context;
use crate::op::{MkdirAt, RenameAt, Statx, UnlinkAt};
use crate::submit;
use std::io;
use std::path::Path;

/// Metadata of `path`, following symlinks.
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref();
    let ctx = |e| context(e, format_args!("stat {}", path.display()));
    let stx = submit(Statx::path(libc::AT_FDCWD, path).map_err(ctx)?).await.map_err(ctx)?;
    Ok(Metadata::from_statx(stx))
}

/// Metadata of `path` itself, not following a final symlink.
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref();
    let ctx = |e| context(e, format_args!("lstat {}", path.display()));
    let stx = submit(Statx::symlink(libc::AT_FDCWD, path).map_err(ctx)?).await.map_err(ctx)?;
    Ok(Metadata::from_statx(stx))
}

/// Removes a file (or symlink).
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    let ctx = |e| context(e, format_args!("remove {}", path.display()));
    submit(UnlinkAt::file(libc::AT_FDCWD, path).map_err(ctx)?).await.map_err(ctx)
}

/// Removes an empty directory.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    let ctx = |e| context(e, format_args!("remove directory {}", path.display()));
    submit(UnlinkAt::dir(libc::AT_FDCWD, path).map_err(ctx)?).await.map_err(ctx)
}

/// Renames `from` to `to`, replacing `to` if it exists (atomically, within one filesystem).
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref(), to.as_ref());
    let ctx = |e| context(e, format_args!("rename {} to {}", from.display(), to.display()));
    submit(RenameAt::new(from, to).map_err(ctx)?).await.map_err(ctx)
}

/// Creates a directory (its parent must exist) with permission bits 0o777 before the umask.
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    let ctx = |e| context(e, format_args!("create directory {}", path.display()));
    submit(MkdirAt::new(libc::AT_FDCWD, path, 0o777).map_err(ctx)?).await.map_err(ctx)
}

/// Reads a whole file into a `Vec`.
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = path.as_ref();
    let file = File::open(path).await?;
    let mut out = Vec::new();
    let mut offset = 0u64;
    // One chunk buffer, reused for every read.
    let mut chunk = Vec::with_capacity(64 * 1024);
    loop {
        chunk.clear();
        let (res, c) = file.read_at(chunk, offset).await;
        chunk = c;
        let n = res.map_err(|e| context(e, format_args!("read {}", path.display())))?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&chunk);
        offset += n as u64;
    }
}

/// Writes `data` as the whole content of `path`, creating or truncating it.
pub async fn write(path: impl AsRef<Path>, data: impl crate::IoBuf) -> io::Result<()> {
    let path = path.as_ref();
    let file = File::create(path).await?;
    let (res, _) = file.write_all_at(data, 0).await;
    res.map_err(|e| context(e, format_args!("write {}", path.display())))
}
