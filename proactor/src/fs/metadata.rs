//! File metadata from `statx`: size, type, permissions, times.

use std::time::{Duration, SystemTime};

/// Metadata of a file, as `statx` reported it.
#[derive(Clone, Copy)]
pub struct Metadata {
    stx: libc::statx,
}

/// A `statx` timestamp as a `SystemTime`. The nanoseconds always count forward, also before
/// 1970 (`-1 s + 0.5 s` is half a second before the epoch). A time `SystemTime` cannot hold (a
/// filesystem may report anything) saturates rather than panicking.
fn to_time(ts: libc::statx_timestamp) -> SystemTime {
    let secs = Duration::from_secs(ts.tv_sec.unsigned_abs());
    let whole = if ts.tv_sec >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(secs)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(secs)
    };
    let nanos = Duration::from_nanos(u64::from(ts.tv_nsec.min(999_999_999)));
    whole.and_then(|t| t.checked_add(nanos)).unwrap_or(if ts.tv_sec >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(i64::MAX as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(i64::MAX as u64)
    })
}

impl Metadata {
    pub(crate) fn from_statx(stx: libc::statx) -> Metadata {
        Metadata { stx }
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.stx.stx_size
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn kind(&self) -> u32 {
        u32::from(self.stx.stx_mode) & libc::S_IFMT
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.kind() == libc::S_IFREG
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }

    /// A symbolic link (only from [`crate::fs::symlink_metadata`]).
    pub fn is_symlink(&self) -> bool {
        self.kind() == libc::S_IFLNK
    }

    /// The permission bits and set-id/sticky bits (`mode & 0o7777`).
    pub fn mode(&self) -> u32 {
        u32::from(self.stx.stx_mode) & 0o7777
    }

    /// The permissions as `std` represents them.
    pub fn permissions(&self) -> std::fs::Permissions {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(self.mode())
    }

    /// Last modification time.
    pub fn modified(&self) -> SystemTime {
        to_time(self.stx.stx_mtime)
    }

    /// Last access time.
    pub fn accessed(&self) -> SystemTime {
        to_time(self.stx.stx_atime)
    }

    /// Creation time, where the filesystem records it.
    pub fn created(&self) -> Option<SystemTime> {
        (self.stx.stx_mask & libc::STATX_BTIME != 0).then(|| to_time(self.stx.stx_btime))
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.stx.stx_ino
    }

    /// Number of hard links.
    pub fn nlink(&self) -> u32 {
        self.stx.stx_nlink
    }

    /// Owner's user id.
    pub fn uid(&self) -> u32 {
        self.stx.stx_uid
    }

    /// Owner's group id.
    pub fn gid(&self) -> u32 {
        self.stx.stx_gid
    }

    /// Preferred I/O block size.
    pub fn blksize(&self) -> u32 {
        self.stx.stx_blksize
    }

    /// The raw `statx` record, for fields not wrapped here.
    pub fn as_statx(&self) -> &libc::statx {
        &self.stx
    }
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("len", &self.len())
            .field("is_file", &self.is_file())
            .field("is_dir", &self.is_dir())
            .field("mode", &format_args!("{:o}", self.mode()))
            .field("modified", &self.modified())
            .finish()
    }
}
