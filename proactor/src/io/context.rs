//! Errors with context: which path or address an operation failed on.
//!
//! The wrapper keeps the error's kind (so `ErrorKind::NotFound` still matches) and its chain (so
//! [`crate::op::raw_os_error`] still finds the OS error), and adds the words a user needs:
//! `open /srv/www/index.html: No such file or directory`.

use std::fmt;
use std::io;

/// Wraps `err` so that its message starts with `what` (for example `open /etc/missing`).
pub(crate) fn context(err: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(err.kind(), ContextError { what: what.to_string(), source: err })
}

/// An error and what was being done when it happened.
#[derive(Debug)]
pub struct ContextError {
    what: String,
    source: io::Error,
}

impl ContextError {
    /// What was being done (`open /etc/missing`, `connect 127.0.0.1:80`).
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for ContextError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
