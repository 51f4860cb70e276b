//! Validators and conditional requests: a strong `ETag` and `Last-Modified` for each file, and
//! the `If-None-Match` / `If-Modified-Since` / `If-Range` checks that turn them into 304s and
//! decide whether a range still applies.

use super::date;

/// A file's validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// Strong entity tag, quoted: inode, size and modification time to the nanosecond, so any
    /// change through the file system gives a new tag.
    pub etag: String,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

impl Validators {
    /// The validators of a file from its metadata.
    pub fn new(ino: u64, size: u64, mtime: i64, mtime_nsec: i64) -> Self {
        Validators { etag: format!("\"{ino:x}-{size:x}-{mtime:x}.{mtime_nsec:x}\""), mtime }
    }

    /// The `Last-Modified` header value.
    pub fn last_modified(&self) -> String {
        date::http_date(self.mtime)
    }
}

/// Whether a GET/HEAD may be answered with 304 Not Modified. `If-None-Match`, when present,
/// decides alone (weak comparison); otherwise `If-Modified-Since` does.
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    v: &Validators,
) -> bool {
    if let Some(inm) = if_none_match {
        let inm = inm.trim();
        if inm == "*" {
            return true;
        }
        return inm.split(',').any(|tag| opaque(tag.trim()) == Some(opaque_of(&v.etag)));
    }
    if let Some(ims) = if_modified_since.and_then(date::parse_http_date) {
        return v.mtime <= ims;
    }
    false
}

/// Whether an `If-Range` value still matches the file (strong comparison), so the range applies.
pub fn if_range_matches(value: &str, v: &Validators) -> bool {
    let value = value.trim();
    if value.starts_with('"') {
        return value == v.etag;
    }
    if value.starts_with("W/") {
        return false;
    }
    date::parse_http_date(value) == Some(v.mtime)
}

/// The quoted part of an entity tag, weak or strong; `None` if it is not a tag.
fn opaque(tag: &str) -> Option<&str> {
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    (tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"')).then_some(tag)
}

fn opaque_of(etag: &str) -> &str {
    opaque(etag).unwrap_or(etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() {
        let v = Validators::new(1, 2, 784_111_777, 5);
        let lm = v.last_modified();
        assert!(not_modified(Some(&v.etag), None, &v));
        assert!(not_modified(Some(&format!("\"x\", W/{}", v.etag)), None, &v));
        assert!(not_modified(Some("*"), None, &v));
        assert!(!not_modified(Some("\"other\""), Some(&lm), &v));
        assert!(not_modified(None, Some(&lm), &v));
        assert!(!not_modified(None, Some("Sun, 06 Nov 1994 08:49:36 GMT"), &v));
        assert!(!not_modified(None, Some("garbage"), &v));
        assert!(if_range_matches(&v.etag, &v));
        assert!(!if_range_matches(&format!("W/{}", v.etag), &v));
        assert!(if_range_matches(&lm, &v));
        assert!(!if_range_matches("\"nope\"", &v));
    }
}
