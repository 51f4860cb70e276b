//! The open-file cache: a served file's descriptor, metadata, ready-made header lines and (for a
//! small file) its bytes, kept per thread so a hot file costs no `openat2`/`fstat`/`close` (and no
//! read) per request — and never served stale after a change.
//!
//! # Staleness
//!
//! nginx's `open_file_cache` trusts an entry for `open_file_cache_valid` (60 s by default) and
//! serves whatever it cached until then. Here a change is noticed before the next request that
//! arrives after it: every cached file and every directory on its path (up to the root) is
//! watched with inotify, and the connection drains the inotify queue (one non-blocking `read`,
//! usually `EAGAIN`) after each receive, before it answers what it received.
//! - A write, truncate, `chmod`/`utime` or close-after-write of the file, or its deletion or
//!   rename, drops its entry (the inode is watched, so a change through a hard link outside the
//!   root counts too).
//! - A create, delete or rename in a directory on the path, or a change to the directory itself,
//!   drops every entry (that is how a file is replaced by a new one, e.g. an atomic deploy).
//! - An inotify queue overflow drops every entry.
//! - The metadata read at the open is compared with a fresh `fstat` once the watches exist, so a
//!   change between the open and the watch cannot leave a stale entry behind.
//!
//! A file is cached only if its real path is exactly the root's path plus the requested path
//! (no symlink on the way), so the watched directories are exactly the ones its name resolves
//! through. What inotify cannot see — a mount over a served directory, or a write through a
//! shared `mmap` (which updates no event) — is bounded by [`MAX_AGE`]: an older entry is opened
//! afresh. Without inotify (or past the watch limit) files are simply opened per request.

use super::conditional::Validators;
use super::conn::read_cached;
use super::path::{fstat, Root};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Longest an entry is trusted without being opened again (for what inotify cannot report).
pub const MAX_AGE: Duration = Duration::from_secs(5);
/// Most files cached per thread; files beyond it are opened per request.
const MAX_ENTRIES: usize = 1024;
/// Files up to this size keep their bytes in the cache (sent with the head, no read).
const MAX_BODY: u64 = 16 * 1024;
/// Most bytes of file content cached per thread.
const MAX_BODY_TOTAL: usize = 8 << 20;
/// Distinct watches before the inotify instance is recreated (dropping the watches left on files
/// no longer cached).
const MAX_WATCHES: usize = 4 * MAX_ENTRIES;

/// Events on a cached file's inode.
const FILE_EVENTS: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;
/// Events on a directory on a cached file's path.
const DIR_EVENTS: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

/// A regular file ready to be served: its descriptor and everything its responses repeat.
pub struct FileInfo {
    /// The open file (shared with bodies still being sent).
    pub fd: Rc<OwnedFd>,
    /// Size in bytes when it was opened.
    pub size: u64,
    /// `ETag` and modification time.
    pub validators: Validators,
    /// `Last-Modified` value.
    pub last_modified: String,
    /// `Content-Type` value.
    pub mime: &'static str,
    /// The header lines of a full (200) response after `Date`: `Content-Type`, `Content-Length`,
    /// `Last-Modified`, `ETag`, `Accept-Ranges`, each ending in CRLF.
    pub headers: Box<[u8]>,
    /// The whole content, for a small cached file.
    pub body: Option<Box<[u8]>>,
}

impl FileInfo {
    /// The metadata of an open regular file named `rel` (for its `Content-Type`).
    pub fn new(rel: &str, fd: OwnedFd, st: &libc::stat) -> FileInfo {
        let size = st.st_size as u64;
        let validators = Validators::new(st.st_ino, size, st.st_mtime, st.st_mtime_nsec);
        let last_modified = validators.last_modified();
        let mime = mime_guess::from_path(rel).first_raw().unwrap_or("application/octet-stream");
        let mut headers = Vec::with_capacity(160);
        let _ = write!(
            headers,
            "Content-Type: {mime}\r\nContent-Length: {size}\r\nLast-Modified: {last_modified}\r\n\
             ETag: {}\r\nAccept-Ranges: bytes\r\n",
            validators.etag
        );
        FileInfo {
            fd: Rc::new(fd),
            size,
            validators,
            last_modified,
            mime,
            headers: headers.into_boxed_slice(),
            body: None,
        }
    }
}

/// One thread's cache of open files, kept fresh by inotify (see the module docs).
pub struct FileCache {
    inner: RefCell<Inner>,
    /// The run loop's completion batch whose receives the last `refresh` covered.
    refreshed: Cell<Option<u64>>,
}

struct Inner {
    /// The inotify instance; `None` when inotify is unavailable (nothing is cached).
    inotify: Option<OwnedFd>,
    entries: HashMap<String, Entry>,
    /// Watch descriptors of directories (an event on one drops every entry).
    dirs: HashSet<i32>,
    /// Distinct watches added to this inotify instance.
    watches: HashSet<i32>,
    /// Bytes of content held.
    body_bytes: usize,
}

struct Entry {
    file: Rc<FileInfo>,
    /// The watch on the file's inode.
    wd: i32,
    filled: Instant,
}

impl Entry {
    /// Bytes of content it holds.
    fn body_len(&self) -> usize {
        self.file.body.as_ref().map_or(0, |b| b.len())
    }
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache::new()
    }
}

impl FileCache {
    /// An empty cache (disabled, opening every file per request, if inotify is unavailable).
    pub fn new() -> FileCache {
        let inotify = new_inotify();
        if inotify.is_none() {
            tracing::debug!("http: no inotify; files are opened per request");
        }
        FileCache::with(inotify)
    }

    /// A cache that never caches (`--no-file-cache`): every file is opened per request.
    pub fn disabled() -> FileCache {
        FileCache::with(None)
    }

    fn with(inotify: Option<OwnedFd>) -> FileCache {
        FileCache {
            refreshed: Cell::new(None),
            inner: RefCell::new(Inner {
                inotify,
                entries: HashMap::new(),
                dirs: HashSet::new(),
                watches: HashSet::new(),
                body_bytes: 0,
            }),
        }
    }

    /// Applies the changes reported since the last call: call it after receiving, before
    /// answering what was received. One non-blocking read when nothing changed, and none at all
    /// for the other receives of the same completion batch: a change made before any of their
    /// bytes arrived was queued before the batch was reaped, so the first check saw it.
    pub fn refresh(&self) {
        let batch = proactor::Handle::try_current().map(|h| h.completion_batches());
        if batch.is_some() && self.refreshed.get() == batch {
            return;
        }
        self.refreshed.set(batch);
        let mut inner = self.inner.borrow_mut();
        let Some(fd) = inner.inotify.as_ref().map(|fd| fd.as_raw_fd()) else {
            return;
        };
        if inner.entries.is_empty() {
            // Nothing to invalidate. Events left queued can only drop entries cached later,
            // which costs a refill, never a stale answer.
            return;
        }
        // FIONREAD is the cheapest way to learn that the queue is empty (~120 ns less than a
        // read that fails with EAGAIN, on the machine measured).
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer, which is valid.
        if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } == 0 && queued == 0 {
            return;
        }
        // Aligned for the event records the kernel writes.
        let mut buf = [0u64; 512];
        loop {
            // SAFETY: `buf` is valid for writes of its size in bytes for the call.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), std::mem::size_of_val(&buf)) };
            if n <= 0 {
                let errno = std::io::Error::last_os_error().raw_os_error();
                if n < 0 && errno == Some(libc::EINTR) {
                    continue;
                }
                if n < 0 && errno != Some(libc::EAGAIN) {
                    // The queue cannot be read: nothing can be trusted any more.
                    tracing::warn!("http: inotify read failed ({errno:?}); file cache disabled");
                    inner.clear();
                    inner.inotify = None;
                }
                return;
            }
            // SAFETY: the kernel wrote `n` bytes into `buf`; viewing them as bytes is sound.
            let bytes =
                unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
            inner.apply(bytes);
        }
    }

    /// The cached file for `rel`, if any (and young enough).
    pub fn get(&self, rel: &str) -> Option<Rc<FileInfo>> {
        let mut inner = self.inner.borrow_mut();
        let entry = inner.entries.get(rel)?;
        if entry.filled.elapsed() < MAX_AGE {
            return Some(entry.file.clone());
        }
        inner.remove(rel);
        None
    }

    /// Offers a freshly opened file for caching: watches it and its directories, checks that its
    /// real path is the requested one, and (small files) loads its bytes if they are in the page
    /// cache. Returns the file, cached or not.
    pub fn offer(&self, root: &Root, rel: &str, file: FileInfo, st: &libc::stat) -> Rc<FileInfo> {
        let mut inner = self.inner.borrow_mut();
        if inner.inotify.is_none() || inner.entries.len() >= MAX_ENTRIES {
            return Rc::new(file);
        }
        if inner.watches.len() >= MAX_WATCHES {
            inner.reset();
        }
        let Some(wd) = inner.watch_path(root, rel, &file) else {
            return Rc::new(file);
        };
        // A change between the open and the watch would go unreported: the metadata must still
        // be what the response was built from.
        if !unchanged(&file.fd, st) {
            return Rc::new(file);
        }
        let mut file = file;
        if file.size <= MAX_BODY && inner.body_bytes + file.size as usize <= MAX_BODY_TOTAL {
            if let Some(body) = read_whole(&file.fd, file.size) {
                inner.body_bytes += body.len();
                file.body = Some(body);
            }
        }
        let file = Rc::new(file);
        let entry = Entry { file: file.clone(), wd, filled: Instant::now() };
        if let Some(old) = inner.entries.insert(rel.to_string(), entry) {
            inner.forget_body(&old);
        }
        file
    }
}

impl Inner {
    /// Applies a batch of inotify event records.
    fn apply(&mut self, mut bytes: &[u8]) {
        const HEAD: usize = std::mem::size_of::<libc::inotify_event>();
        while bytes.len() >= HEAD {
            // SAFETY: at least HEAD bytes remain; read_unaligned has no alignment requirement.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
            let named = ev.len > 0;
            let next = (HEAD + ev.len as usize).min(bytes.len());
            bytes = &bytes[next..];
            if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                self.clear();
                continue;
            }
            if self.dirs.contains(&ev.wd) {
                // A change to a child's attributes is reported by the child's own watch.
                let child_attr = named && ev.mask & !(libc::IN_ATTRIB | libc::IN_ISDIR) == 0;
                if !child_attr {
                    self.clear();
                }
                if ev.mask & libc::IN_IGNORED != 0 {
                    self.dirs.remove(&ev.wd);
                    self.watches.remove(&ev.wd);
                }
                continue;
            }
            let mut freed = 0;
            self.entries.retain(|_, e| {
                let stale = e.wd == ev.wd;
                if stale {
                    freed += e.body_len();
                }
                !stale
            });
            self.body_bytes -= freed;
            if ev.mask & libc::IN_IGNORED != 0 {
                self.watches.remove(&ev.wd);
            }
        }
    }

    fn remove(&mut self, rel: &str) {
        if let Some(old) = self.entries.remove(rel) {
            self.forget_body(&old);
        }
    }

    fn forget_body(&mut self, old: &Entry) {
        self.body_bytes -= old.body_len();
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.body_bytes = 0;
    }

    /// Drops every entry and every watch (a new inotify instance).
    fn reset(&mut self) {
        self.clear();
        self.dirs.clear();
        self.watches.clear();
        self.inotify = new_inotify();
    }

    /// Watches the root, each directory on `rel`'s path and the open file itself, then checks
    /// the file is really at root/rel. Returns the file's watch, or `None` if it cannot be
    /// cached. Watches are added top-down and the path checked last, so any change after a
    /// directory's watch exists is reported, and any before the check makes it fail.
    fn watch_path(&mut self, root: &Root, rel: &str, file: &FileInfo) -> Option<i32> {
        let ifd = self.inotify.as_ref()?.as_raw_fd();
        let base = root.path();
        let mut dir = base.to_path_buf();
        let wd = add_watch(ifd, dir.as_os_str().as_bytes(), DIR_EVENTS | libc::IN_ONLYDIR)?;
        self.note_watch(wd, true);
        let mut parts: Vec<&str> = rel.split('/').collect();
        parts.pop();
        for part in parts {
            dir.push(part);
            let mask = DIR_EVENTS | libc::IN_ONLYDIR | libc::IN_DONT_FOLLOW;
            let wd = add_watch(ifd, dir.as_os_str().as_bytes(), mask)?;
            self.note_watch(wd, true);
        }
        let proc_path = format!("/proc/self/fd/{}", file.fd.as_raw_fd());
        let wd = add_watch(ifd, proc_path.as_bytes(), FILE_EVENTS)?;
        if self.dirs.contains(&wd) {
            return None;
        }
        self.note_watch(wd, false);
        let real = std::fs::read_link(&proc_path).ok()?;
        (real == base.join(rel)).then_some(wd)
    }

    fn note_watch(&mut self, wd: i32, dir: bool) {
        self.watches.insert(wd);
        if dir {
            self.dirs.insert(wd);
        }
    }
}

fn new_inotify() -> Option<OwnedFd> {
    // SAFETY: inotify_init1 takes no pointers.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    // SAFETY: a new descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds (or updates) a watch; `None` if it fails (e.g. out of watches: then nothing is cached).
fn add_watch(ifd: i32, path: &[u8], mask: u32) -> Option<i32> {
    let c = CString::new(path).ok()?;
    // SAFETY: `c` is a NUL-terminated path; inotify_add_watch reads nothing else of ours.
    let wd = unsafe { libc::inotify_add_watch(ifd, c.as_ptr(), mask) };
    if wd < 0 {
        tracing::debug!("http: inotify watch failed: {}", std::io::Error::last_os_error());
        return None;
    }
    Some(wd)
}

/// Whether the open file still has the metadata `st` (size, inode, modification and change
/// times: any write, truncate or attribute change moves the change time).
fn unchanged(fd: &OwnedFd, st: &libc::stat) -> bool {
    let Ok(now) = fstat(fd) else {
        return false;
    };
    (now.st_ino, now.st_size, now.st_mtime, now.st_mtime_nsec, now.st_ctime, now.st_ctime_nsec)
        == (st.st_ino, st.st_size, st.st_mtime, st.st_mtime_nsec, st.st_ctime, st.st_ctime_nsec)
}

/// The whole of a small file, if it is in the page cache and still `size` bytes long (one byte
/// more is asked for, so a file that grew is not taken as whole).
fn read_whole(fd: &OwnedFd, size: u64) -> Option<Box<[u8]>> {
    let mut buf = Vec::new();
    let n = read_cached(fd, &mut buf, size as usize + 1, 0)?;
    (n as u64 == size).then(|| buf.into_boxed_slice())
}
