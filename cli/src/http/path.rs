//! From request-target to an open file, with no way out of `--root`.
//!
//! Two layers, each enough on its own: the URL path is decoded strictly (bad escapes, NUL and
//! other control bytes, invalid or overlong UTF-8 are refused; `..` segments and backslashes are
//! refused; empty and `.` segments vanish; a decoded `/` is just a separator), and the file is
//! opened relative to the root's descriptor with `openat2(RESOLVE_BENEATH)`, so the kernel itself
//! refuses any symlink that leads outside the root (unless `--follow-symlinks`). Where `openat2`
//! is missing the opened file's real path is checked against the root's canonical path instead.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a request-target was refused: the status and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// 400 for malformed targets, 403 for attempts to climb out.
    pub status: u16,
    /// What was wrong.
    pub why: &'static str,
}

fn refuse(status: u16, why: &'static str) -> Refused {
    Refused { status, why }
}

/// A request-target, decoded and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The path exactly as sent (still percent-encoded, without the query), for redirects.
    pub raw_path: &'a str,
    /// The query string (after `?`), if any.
    pub query: Option<&'a str>,
    /// The path relative to the root: segments joined by `/`, or `.` for the root itself.
    pub rel: String,
    /// Whether the decoded path ends with `/` (a directory URL).
    pub trailing_slash: bool,
}

/// Decodes and normalises a request-target; refuses anything that could name a path outside
/// the root or that is not a valid path at all.
pub fn parse_target(target: &str) -> Result<Target<'_>, Refused> {
    let mut path = target;
    // Absolute form (`http://host/path`), which servers must accept.
    for scheme in ["http://", "https://"] {
        if path.len() >= scheme.len() && path[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &path[scheme.len()..];
            path = rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    let path = path.split('#').next().unwrap_or("");
    let (raw_path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    if !raw_path.starts_with('/') {
        return Err(refuse(400, "request-target is not an absolute path"));
    }
    let decoded = percent_decode(raw_path.as_bytes())?;
    let decoded =
        std::str::from_utf8(&decoded).map_err(|_| refuse(400, "path is not valid UTF-8"))?;
    if decoded.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(refuse(400, "control character in path"));
    }
    if decoded.contains('\\') {
        return Err(refuse(403, "backslash in path"));
    }
    let mut segments = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(refuse(403, "path climbs out with ..")),
            s => segments.push(s),
        }
    }
    let rel = if segments.is_empty() { ".".to_string() } else { segments.join("/") };
    Ok(Target { raw_path, query, rel, trailing_slash: decoded.ends_with('/') })
}

/// Percent-decodes a path; `%` must be followed by two hex digits, and `%00` is refused.
fn percent_decode(s: &[u8]) -> Result<Vec<u8>, Refused> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(refuse(400, "truncated percent escape"))?;
            let v = match (hex_val(hex[0]), hex_val(hex[1])) {
                (Some(h), Some(l)) => h * 16 + l,
                _ => return Err(refuse(400, "invalid percent escape")),
            };
            if v == 0 {
                return Err(refuse(400, "NUL byte in path"));
            }
            out.push(v);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes a file name for use in a URL path (listing links).
pub fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What an open path turned out to be.
pub enum Opened {
    /// A regular file, with its metadata.
    File(OwnedFd, libc::stat),
    /// A directory.
    Dir(OwnedFd),
}

/// The served directory: its descriptor, and how paths are opened beneath it.
pub struct Root {
    fd: OwnedFd,
    canonical: PathBuf,
    follow_symlinks: bool,
    /// Cleared when the kernel lacks `openat2` (then the real-path check is used).
    openat2: AtomicBool,
}

/// Why opening a path failed, as a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// No such file (404).
    NotFound,
    /// Outside the root, not a regular file or directory, or not readable (403).
    Forbidden,
    /// Something else went wrong (500).
    Internal,
}

impl Root {
    /// Opens the root directory.
    pub fn open(dir: &Path, follow_symlinks: bool) -> io::Result<Root> {
        let canonical = std::fs::canonicalize(dir)?;
        let file = std::fs::File::open(&canonical)?;
        if !file.metadata()?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "--root is not a directory"));
        }
        Ok(Root { fd: file.into(), canonical, follow_symlinks, openat2: AtomicBool::new(true) })
    }

    /// The root's canonical path.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Opens `rel` (from [`parse_target`]) beneath the root, read-only, and says what it is.
    pub fn open_rel(&self, rel: &str) -> Result<Opened, OpenError> {
        let fd = self.open_fd(rel).map_err(|e| classify(&e))?;
        let st = fstat(&fd).map_err(|_| OpenError::Internal)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => Ok(Opened::File(fd, st)),
            libc::S_IFDIR => Ok(Opened::Dir(fd)),
            _ => Err(OpenError::Forbidden),
        }
    }

    fn open_fd(&self, rel: &str) -> io::Result<OwnedFd> {
        let c = CString::new(rel).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // O_NONBLOCK: opening a FIFO someone left in the root must not block the server.
        let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
        if self.openat2.load(Ordering::Relaxed) {
            let mut resolve = libc::RESOLVE_NO_MAGICLINKS;
            if !self.follow_symlinks {
                resolve |= libc::RESOLVE_BENEATH;
            }
            // SAFETY: open_how is plain data; zero is valid for every field.
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = flags as u64;
            how.resolve = resolve;
            // SAFETY: the path is NUL-terminated and `how` is a valid open_how of the given size.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if ret >= 0 {
                // SAFETY: openat2 returned a new descriptor that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) });
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOSYS) | Some(libc::EPERM) => {
                    self.openat2.store(false, Ordering::Relaxed)
                }
                _ => return Err(e),
            }
        }
        // SAFETY: the path is NUL-terminated; openat takes no other pointers.
        let ret = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(ret) };
        if !self.follow_symlinks {
            let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
            if !real.starts_with(&self.canonical) {
                return Err(io::Error::from_raw_os_error(libc::EXDEV));
            }
        }
        Ok(fd)
    }
}

/// The metadata of an open file (`fstat`).
pub fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor and `st` a valid out-parameter.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn classify(e: &io::Error) -> OpenError {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG) => OpenError::NotFound,
        Some(libc::EXDEV) | Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ELOOP)
        | Some(libc::ENXIO) | Some(libc::EINVAL) => OpenError::Forbidden,
        _ => OpenError::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_safe_paths() {
        let t = parse_target("/a/./b//c.txt?x=1").unwrap();
        assert_eq!(t.rel, "a/b/c.txt");
        assert_eq!(t.query, Some("x=1"));
        assert!(!t.trailing_slash);
        assert_eq!(parse_target("/").unwrap().rel, ".");
        assert!(parse_target("/dir/").unwrap().trailing_slash);
        assert_eq!(parse_target("/a%2fb").unwrap().rel, "a/b");
        assert_eq!(parse_target("http://host/x/y").unwrap().rel, "x/y");
        assert_eq!(parse_target("/caf%C3%A9").unwrap().rel, "café");
    }

    #[test]
    fn refuses_escapes() {
        for t in [
            "/../etc/passwd",
            "/%2e%2e/x",
            "/%2e%2e%2fx",
            "/a/%2E%2E/%2E%2E/x",
            "/a\\..\\x",
            "/%5c..%5cx",
            "/x%00.txt",
            "/%c0%ae%c0%ae/x",
            "/%e0%80%ae/x",
            "/%",
            "/%zz",
            "*",
            "etc/passwd",
        ] {
            assert!(parse_target(t).is_err(), "{t} was accepted");
        }
    }

    #[test]
    fn encodes_names() {
        assert_eq!(percent_encode("a b?#%.txt"), "a%20b%3F%23%25.txt");
    }
}
