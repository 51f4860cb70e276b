//! `OpenOptions`: how to open a file (read, write, append, create, truncate, mode), with the
//! same rules as `std::fs::OpenOptions`, opened by an `openat` operation.

use super::File;
use crate::io::context;
use crate::op::OpenAt;
use crate::submit;
use std::io;
use std::path::Path;

/// Options for opening a file; finish with [`OpenOptions::open`].
///
/// ```
/// let p = proactor::Proactor::new()?;
/// let dir = tempfile::tempdir()?;
/// p.block_on(async {
///     let f = proactor::fs::OpenOptions::new()
///         .write(true)
///         .create_new(true)
///         .mode(0o600)
///         .open(dir.path().join("new.txt"))
///         .await?;
///     let (res, _) = f.write_all_at(b"hello".as_slice(), 0).await;
///     res
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }
}

impl OpenOptions {
    /// All options off; permission bits 0o666 (before the umask) for created files.
    pub fn new() -> Self {
        Self::default()
    }
    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut Self {
        self.read = on;
        self
    }
    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut Self {
        self.write = on;
        self
    }
    /// Every write at the file position goes to the end (implies writing).
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.append = on;
        self
    }
    /// Truncate an existing file to length 0 (needs writing).
    pub fn truncate(&mut self, on: bool) -> &mut Self {
        self.truncate = on;
        self
    }
    /// Create the file if missing (needs writing or appending).
    pub fn create(&mut self, on: bool) -> &mut Self {
        self.create = on;
        self
    }
    /// Create the file, failing with `AlreadyExists` if it exists (needs writing or appending).
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.create_new = on;
        self
    }
    /// Permission bits of a created file (before the umask).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }
    /// Extra `O_*` flags (for example `O_DIRECT`, `O_NOFOLLOW`); the access mode bits are ignored.
    pub fn custom_flags(&mut self, flags: i32) -> &mut Self {
        self.custom_flags = flags;
        self
    }

    fn flags(&self) -> io::Result<i32> {
        let invalid = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg.to_string()));
        let access = match (self.read, self.write, self.append) {
            (true, false, false) => libc::O_RDONLY,
            (false, true, false) => libc::O_WRONLY,
            (true, true, false) => libc::O_RDWR,
            (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
            (true, _, true) => libc::O_RDWR | libc::O_APPEND,
            (false, false, false) => {
                return invalid("open options: neither read, write nor append")
            }
        };
        let writing = self.write || self.append;
        if (self.truncate || self.create || self.create_new) && !writing {
            return invalid("open options: create or truncate without write or append");
        }
        if self.truncate && self.append {
            return invalid("open options: truncate together with append");
        }
        let creation = if self.create_new {
            libc::O_CREAT | libc::O_EXCL
        } else {
            (if self.create { libc::O_CREAT } else { 0 })
                | (if self.truncate { libc::O_TRUNC } else { 0 })
        };
        Ok(access | creation | (self.custom_flags & !libc::O_ACCMODE))
    }

    /// Opens `path`. A failure names the path: `open /no/such/file: No such file or directory`,
    /// with kind `NotFound`.
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let path = path.as_ref();
        let flags = self.flags()?;
        let op = OpenAt::new(libc::AT_FDCWD, path, flags, self.mode)
            .map_err(|e| context(e, format_args!("open {}", path.display())))?;
        let fd =
            submit(op).await.map_err(|e| context(e, format_args!("open {}", path.display())))?;
        Ok(File::from_owned(fd))
    }
}
