//! What to answer to one request: the method check, path resolution, directories (redirect,
//! index, listing), validators and conditionals, ranges — ending in a response head written into
//! the output buffer and, for a file, the part of it to send after the head (or, for a small
//! cached file, the body itself behind the head). Files come from the open-file cache when it
//! has them (`cache.rs`).

use super::cache::{FileCache, FileInfo};
use super::conditional::{if_range_matches, not_modified};
use super::listing;
use super::path::{parse_target, OpenError, Opened, Root};
use super::range::{parse_range, RangeOutcome};
use super::request::{Method, Request};
use super::response::{Head, Simple};
use std::os::fd::OwnedFd;
use std::rc::Rc;

/// The site being served: the root and the options that change answers.
pub struct Site {
    /// The root directory.
    pub root: Root,
    /// Serve an HTML listing for a directory without `index.html` (else 404).
    pub list_dirs: bool,
    /// Open files kept between requests.
    pub cache: FileCache,
}

/// The part of a file to send after the head.
pub struct FileBody {
    /// The open file.
    pub fd: Rc<OwnedFd>,
    /// First byte to send.
    pub offset: u64,
    /// How many bytes.
    pub len: u64,
}

/// The answer to one request, its head (and any small body) already in the output buffer.
pub struct Reply {
    /// Status code sent.
    pub status: u16,
    /// Whether the connection stays open afterwards.
    pub keep_alive: bool,
    /// Body bytes the response carries (for the access log; 0 for HEAD).
    pub body_len: u64,
    /// A file part still to send, if any.
    pub file: Option<FileBody>,
}

impl Site {
    /// Answers `req`: appends the head (and a small body) to `out`.
    pub fn respond(&self, req: &Request, keep_alive: bool, out: &mut Vec<u8>) -> Reply {
        let head_only = req.method == Method::Head;
        let simple = |out: &mut Vec<u8>, s: Simple<'_>| {
            let len = s.write(out, keep_alive, req.minor, head_only);
            Reply {
                status: s.status,
                keep_alive,
                body_len: if head_only { 0 } else { len },
                file: None,
            }
        };
        if let Method::Other(_) = req.method {
            let s = Simple { extra: &[("Allow", "GET, HEAD")], ..Simple::error(405) };
            return simple(out, s);
        }
        let target = match parse_target(&req.target) {
            Ok(t) => t,
            Err(refused) => {
                tracing::debug!(target = %req.target, "refused: {}", refused.why);
                // A malformed target closes the connection, like any other 400.
                let keep_alive = keep_alive && refused.status != 400;
                let s = Simple::error(refused.status);
                let len = s.write(out, keep_alive, req.minor, head_only);
                let body_len = if head_only { 0 } else { len };
                return Reply { status: s.status, keep_alive, body_len, file: None };
            }
        };
        let cached = if target.trailing_slash {
            self.cache.get(&index_rel(&target.rel))
        } else {
            self.cache.get(&target.rel)
        };
        if let Some(file) = cached {
            return self.file(req, keep_alive, &file, out);
        }
        let opened = match self.root.open_rel(&target.rel) {
            Ok(o) => o,
            Err(e) => return simple(out, Simple::error(open_status(e))),
        };
        match opened {
            Opened::File(_, _) if target.trailing_slash => simple(out, Simple::error(404)),
            Opened::File(fd, st) => {
                let file = FileInfo::new(&target.rel, fd, &st);
                let file = self.cache.offer(&self.root, &target.rel, file, &st);
                self.file(req, keep_alive, &file, out)
            }
            Opened::Dir(_) if !target.trailing_slash => {
                let mut location = format!("{}/", target.raw_path);
                if let Some(q) = target.query {
                    location.push('?');
                    location.push_str(q);
                }
                let body = format!("Moved to {location}\n");
                let extra = [("Location", location.as_str())];
                simple(
                    out,
                    Simple { status: 301, body: &body, extra: &extra, ..Simple::error(301) },
                )
            }
            Opened::Dir(dir) => {
                let index = index_rel(&target.rel);
                match self.root.open_rel(&index) {
                    Ok(Opened::File(fd, st)) => {
                        let file = FileInfo::new(&index, fd, &st);
                        let file = self.cache.offer(&self.root, &index, file, &st);
                        self.file(req, keep_alive, &file, out)
                    }
                    Ok(Opened::Dir(_)) | Err(OpenError::NotFound) if self.list_dirs => {
                        let url_path =
                            format!("/{}", if target.rel == "." { "" } else { &target.rel });
                        let url_path =
                            if url_path.ends_with('/') { url_path } else { format!("{url_path}/") };
                        match listing::render(&dir, &url_path) {
                            Ok(html) => simple(
                                out,
                                Simple {
                                    status: 200,
                                    body: &html,
                                    content_type: "text/html; charset=utf-8",
                                    extra: &[],
                                },
                            ),
                            Err(_) => simple(out, Simple::error(500)),
                        }
                    }
                    Ok(Opened::Dir(_)) | Err(OpenError::NotFound) => {
                        simple(out, Simple::error(404))
                    }
                    Err(e) => simple(out, Simple::error(open_status(e))),
                }
            }
        }
    }

    /// A regular file: conditionals, range, then the head; a small cached body goes behind the
    /// head, a larger one is left to the caller.
    fn file(
        &self,
        req: &Request,
        keep_alive: bool,
        file: &Rc<FileInfo>,
        out: &mut Vec<u8>,
    ) -> Reply {
        let head_only = req.method == Method::Head;
        let size = file.size;
        let v = &file.validators;
        if not_modified(req.if_none_match.as_deref(), req.if_modified_since.as_deref(), v) {
            let mut head = Head::start(out, 304);
            head.header("ETag", &v.etag).header("Last-Modified", &file.last_modified);
            head.connection(keep_alive, req.minor).finish();
            return Reply { status: 304, keep_alive, body_len: 0, file: None };
        }
        let range = match (&req.range, &req.if_range) {
            (Some(r), None) => parse_range(r, size),
            (Some(r), Some(ir)) if if_range_matches(ir, v) => parse_range(r, size),
            _ => RangeOutcome::Full,
        };
        let (status, offset, len) = match range {
            RangeOutcome::Full => (200, 0, size),
            RangeOutcome::Partial { start, end } => (206, start, end - start + 1),
            RangeOutcome::Unsatisfiable => {
                let range = format!("bytes */{size}");
                let s = Simple { extra: &[("Content-Range", &range)], ..Simple::error(416) };
                let len = s.write(out, keep_alive, req.minor, head_only);
                return Reply {
                    status: 416,
                    keep_alive,
                    body_len: if head_only { 0 } else { len },
                    file: None,
                };
            }
        };
        let mut head = Head::start(out, status);
        if status == 200 {
            head.raw(&file.headers);
        } else {
            head.header("Content-Type", file.mime)
                .header("Content-Length", len)
                .header("Last-Modified", &file.last_modified)
                .header("ETag", &v.etag)
                .header("Accept-Ranges", "bytes")
                .header(
                    "Content-Range",
                    format_args!("bytes {}-{}/{size}", offset, offset + len - 1),
                );
        }
        head.connection(keep_alive, req.minor).finish();
        if head_only || len == 0 {
            return Reply { status, keep_alive, body_len: 0, file: None };
        }
        if let Some(body) = &file.body {
            // In the cache: behind the head, so both leave in one send.
            out.extend_from_slice(&body[offset as usize..(offset + len) as usize]);
            return Reply { status, keep_alive, body_len: len, file: None };
        }
        let fd = file.fd.clone();
        Reply { status, keep_alive, body_len: len, file: Some(FileBody { fd, offset, len }) }
    }
}

/// The path of a directory's `index.html`, for the directory `rel` (`.` for the root).
fn index_rel(rel: &str) -> String {
    if rel == "." {
        "index.html".to_string()
    } else {
        format!("{rel}/index.html")
    }
}

/// The status for a failed open.
fn open_status(e: OpenError) -> u16 {
    match e {
        OpenError::NotFound => 404,
        OpenError::Forbidden => 403,
        OpenError::Internal => 500,
    }
}
