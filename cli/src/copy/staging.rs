//! The copy's temporary file in DST's directory, and the rename that publishes it.
//!
//! DST only ever appears by `rename` of a complete, synced file, so an interrupted or failed copy
//! cannot leave a truncated DST that looks complete. Where the filesystem allows it the temporary
//! file is anonymous (`O_TMPFILE`): if the process dies, nothing is left behind at all; it gets a
//! name (`linkat`) only just before the rename. Elsewhere it is a hidden, uniquely named file that
//! is removed on failure (or when the copy is interrupted by SIGINT / SIGTERM).

use proactor::op::{self, OpenAt};
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file name contains a NUL byte"))
}

fn cvt(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A temporary file being filled, in the directory `dir`, to be renamed to `final_name`.
pub struct Staged {
    dir: Rc<OwnedFd>,
    final_name: OsString,
    /// The temporary name, once the file has one (always for a named temporary).
    tmp_name: Option<OsString>,
    /// The open file; `None` after [`Staged::close`].
    fd: Option<Rc<OwnedFd>>,
    /// Published (renamed over the destination): nothing to clean up.
    done: bool,
}

impl Staged {
    /// Creates the temporary file for `final_name` in `dir`: anonymous when `anonymous` and the
    /// filesystem supports it, else named. `extra_flags` adds e.g. `O_DIRECT`.
    pub async fn create(
        dir: Rc<OwnedFd>,
        final_name: &OsStr,
        anonymous: bool,
        extra_flags: i32,
    ) -> io::Result<Staged> {
        if anonymous {
            let flags = libc::O_TMPFILE | libc::O_RDWR | extra_flags;
            let open = OpenAt::new(dir.as_raw_fd(), Path::new("."), flags, 0o600)?;
            match proactor::submit(open).await {
                Ok(fd) => {
                    return Ok(Staged {
                        dir,
                        final_name: final_name.to_owned(),
                        tmp_name: None,
                        fd: Some(Rc::new(fd)),
                        done: false,
                    })
                }
                // The filesystem has no O_TMPFILE: use a named temporary instead.
                Err(e)
                    if matches!(
                        op::raw_os_error(&e),
                        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::ENOENT)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            let name = temp_name(final_name);
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | extra_flags;
            let open = OpenAt::new(dir.as_raw_fd(), Path::new(&name), flags, 0o600)?;
            match proactor::submit(open).await {
                Ok(fd) => {
                    return Ok(Staged {
                        dir,
                        final_name: final_name.to_owned(),
                        tmp_name: Some(name),
                        fd: Some(Rc::new(fd)),
                        done: false,
                    })
                }
                Err(e) if op::raw_os_error(&e) == Some(libc::EEXIST) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The open temporary file.
    pub fn fd(&self) -> Rc<OwnedFd> {
        self.fd.clone().expect("the temporary file is open until closed")
    }

    /// Closes the file but keeps it staged (a tree copy publishes thousands of files after one
    /// `syncfs`, and must not hold all their descriptors). Gives the file a name first if it has
    /// none, since an anonymous file vanishes when closed.
    pub fn close(&mut self) -> io::Result<()> {
        self.name_it()?;
        self.fd = None;
        Ok(())
    }

    fn name_it(&mut self) -> io::Result<()> {
        if self.tmp_name.is_some() {
            return Ok(());
        }
        let fd = self.fd.as_ref().expect("an anonymous temporary is open").as_raw_fd();
        let proc_path = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
        loop {
            let name = temp_name(&self.final_name);
            let c = cstr(&name)?;
            // SAFETY: both paths are NUL-terminated strings that outlive the call.
            let r = cvt(unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    proc_path.as_ptr(),
                    self.dir.as_raw_fd(),
                    c.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            });
            match r {
                Ok(()) => {
                    self.tmp_name = Some(name);
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Renames the (complete, synced) file over the destination name.
    pub fn publish(mut self) -> io::Result<()> {
        self.name_it()?;
        let from = cstr(self.tmp_name.as_ref().expect("named just above"))?;
        let to = cstr(&self.final_name)?;
        let dir = self.dir.as_raw_fd();
        // SAFETY: both names are NUL-terminated strings that outlive the call.
        cvt(unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(name) = &self.tmp_name {
            if let Ok(c) = cstr(name) {
                // SAFETY: a NUL-terminated name relative to a directory fd we own.
                unsafe { libc::unlinkat(self.dir.as_raw_fd(), c.as_ptr(), 0) };
            }
        }
    }
}

/// A hidden name next to the destination, unique per process and per call.
fn temp_name(final_name: &OsStr) -> OsString {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = OsString::from(".");
    // Keep the name within NAME_MAX even for a long destination name.
    let bytes = final_name.as_bytes();
    name.push(OsStr::from_bytes(&bytes[..bytes.len().min(200)]));
    name.push(format!(".proactor-copy-{}-{n}.tmp", std::process::id()));
    name
}
