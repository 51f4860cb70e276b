//! The incremental request reader: bytes arrive in any split (one at a time, or many pipelined
//! requests in one packet) and come out as whole requests, with every size limit enforced so a
//! peer can neither make the server buffer without bound nor make it panic.
//!
//! Self-contained (it depends only on `httparse`), so the fuzz-style property test in
//! `cli/tests/http_reader_fuzz.rs` can include this file directly.

use std::fmt;

/// Size limits on what a client may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request line (method, target, version) in bytes: beyond it, 414.
    pub request_line: usize,
    /// Largest header section (after the request line) in bytes: beyond it, 431.
    pub header_bytes: usize,
    /// Most header fields: beyond it, 431.
    pub header_count: usize,
    /// Largest request body the server reads and discards (GET and HEAD need none): beyond it, 413.
    pub body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 8 * 1024,
            header_bytes: 16 * 1024,
            header_count: 100,
            body: 8 * 1024,
        }
    }
}

/// The request method, as far as a static file server cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// Anything else (answered with 405).
    Other(String),
}

impl Method {
    /// The method's name as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Other(s) => s,
        }
    }
}

/// One parsed request: the request line and the header fields the server acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The request-target exactly as sent (not yet decoded).
    pub target: String,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Whether the connection stays open after the response (version default and `Connection`).
    pub keep_alive: bool,
    /// `If-None-Match`, if sent (several fields joined with `,`).
    pub if_none_match: Option<String>,
    /// `If-Modified-Since`, if sent.
    pub if_modified_since: Option<String>,
    /// `Range`, if sent exactly once.
    pub range: Option<String>,
    /// `If-Range`, if sent.
    pub if_range: Option<String>,
}

/// A request the server must refuse: the status to answer with. The connection closes after it,
/// because the framing of what follows can no longer be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// The HTTP status code.
    pub status: u16,
    /// A short reason for the error body and the log.
    pub why: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.why, self.status)
    }
}

impl std::error::Error for ParseError {}

fn err(status: u16, why: &'static str) -> ParseError {
    ParseError { status, why }
}

/// What the reader is doing with the bytes after a request's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Nothing to skip: the next byte starts a request.
    None,
    /// Discarding this many more body bytes.
    Length(u64),
    /// Discarding a chunked body; `total` bytes of chunk data seen so far.
    Chunked { state: ChunkState, total: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left, then CRLF.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
}

/// Turns received bytes into requests.
///
/// Receive into [`RequestReader::buffer`] (append only), then call [`RequestReader::next_request`]
/// until it returns `Ok(None)`: it consumes each complete request (and discards its body).
#[derive(Debug)]
pub struct RequestReader {
    limits: Limits,
    buf: Vec<u8>,
    pos: usize,
    body: Body,
    /// Whether a request head has begun arriving, to tell a fresh start from a partial one.
    started: bool,
    /// How far (from `pos`) the search for the end of the head got without finding it.
    scanned: usize,
    /// A parsed request whose body is still being discarded; it is handed out afterwards.
    pending: Option<Request>,
}

/// Header fields parsed at most (the `header_count` limit is capped to this).
pub const MAX_HEADERS: usize = 100;

/// The end of the request head (just past the empty line), searching from `from`.
fn find_head_end(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(n) = data.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + n;
        match data.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

impl RequestReader {
    /// A reader with the given limits.
    pub fn new(limits: Limits) -> Self {
        RequestReader {
            limits,
            buf: Vec::with_capacity(4096),
            pos: 0,
            body: Body::None,
            started: false,
            scanned: 0,
            pending: None,
        }
    }

    /// The receive buffer, with any consumed bytes dropped from its front and room for at least
    /// `min_spare` more bytes. Receive by appending to it (within its capacity).
    pub fn buffer(&mut self, min_spare: usize) -> &mut Vec<u8> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < min_spare {
            self.buf.reserve(min_spare);
        }
        &mut self.buf
    }

    /// Takes the receive buffer out (for an operation that owns it); give it back with
    /// [`RequestReader::restore`]. Consumed bytes are dropped first.
    pub fn take_buffer(&mut self, min_spare: usize) -> Vec<u8> {
        self.buffer(min_spare);
        std::mem::take(&mut self.buf)
    }

    /// Gives back a buffer taken with [`RequestReader::take_buffer`], possibly with bytes appended.
    pub fn restore(&mut self, buf: Vec<u8>) {
        self.buf = buf;
    }

    /// Whether part of a request (or of a body to discard) has been received: a timeout now is a
    /// request timeout, not an idle connection.
    pub fn in_request(&self) -> bool {
        self.started
            || self.body != Body::None
            || self.pending.is_some()
            || self.pos < self.buf.len()
    }

    /// Unconsumed bytes in the buffer.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete request, `Ok(None)` if more bytes are needed, or the status to refuse
    /// with. After an error the reader must not be used again.
    pub fn next_request(&mut self) -> Result<Option<Request>, ParseError> {
        if !self.skip_body()? {
            return Ok(None);
        }
        if let Some(request) = self.pending.take() {
            return Ok(Some(request));
        }
        // Tolerate empty lines before a request (RFC 9112 section 2.2).
        while self.pos < self.buf.len() && matches!(self.buf[self.pos], b'\r' | b'\n') {
            self.pos += 1;
        }
        let data = &self.buf[self.pos..];
        if data.is_empty() {
            self.started = false;
            return Ok(None);
        }
        self.started = true;
        let line_end = data.iter().position(|&b| b == b'\n');
        let line_len = match line_end {
            Some(n) if n <= self.limits.request_line + 1 => n + 1,
            None if data.len() <= self.limits.request_line + 1 => return Ok(None),
            _ => return Err(err(414, "request line too long")),
        };
        // Parse only once the whole head is here, so a trickled request costs linear time.
        let from = self.scanned.max(line_len - 1);
        let Some(end) = find_head_end(data, from) else {
            self.scanned = data.len().saturating_sub(2).max(line_len - 1);
            if data.len() - line_len > self.limits.header_bytes + 2 {
                return Err(err(431, "header section too large"));
            }
            return Ok(None);
        };
        self.scanned = 0;
        if end - line_len > self.limits.header_bytes + 2 {
            return Err(err(431, "header section too large"));
        }
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let count = self.limits.header_count.min(MAX_HEADERS);
        let mut req = httparse::Request::new(&mut storage[..count]);
        let head_len = match req.parse(&data[..end]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Err(err(400, "malformed request")),
            Err(httparse::Error::TooManyHeaders) => return Err(err(431, "too many header fields")),
            Err(httparse::Error::Version) => return Err(err(505, "HTTP version not supported")),
            Err(_) => return Err(err(400, "malformed request")),
        };
        let (request, body) = interpret(&req, &self.limits)?;
        self.pos += head_len;
        self.body = body;
        self.started = false;
        if !self.skip_body()? {
            // The body is still arriving; the request is answered once it has been discarded,
            // so that a pipelined request after it is read from the right place.
            self.pending = Some(request);
            return Ok(None);
        }
        Ok(Some(request))
    }
}

impl RequestReader {
    /// Discards body bytes; `Ok(true)` once the body (if any) is all gone.
    fn skip_body(&mut self) -> Result<bool, ParseError> {
        loop {
            let avail = &self.buf[self.pos..];
            match self.body {
                Body::None => return Ok(true),
                Body::Length(n) => {
                    let take = (avail.len() as u64).min(n);
                    self.pos += take as usize;
                    self.body = if take == n { Body::None } else { Body::Length(n - take) };
                    return Ok(self.body == Body::None);
                }
                Body::Chunked { state, total } => {
                    let Some((consumed, next)) = self.chunk_step(state, total)? else {
                        return Ok(false);
                    };
                    self.pos += consumed;
                    self.body = next;
                }
            }
        }
    }

    /// One step of discarding a chunked body: bytes consumed and the next state, or `None` if
    /// more bytes are needed.
    fn chunk_step(
        &self,
        state: ChunkState,
        total: u64,
    ) -> Result<Option<(usize, Body)>, ParseError> {
        let avail = &self.buf[self.pos..];
        let chunked = |state| Body::Chunked { state, total };
        match state {
            ChunkState::Size => match httparse::parse_chunk_size(avail) {
                Ok(httparse::Status::Complete((used, size))) => {
                    let total = total.saturating_add(size);
                    if total > self.limits.body {
                        return Err(err(413, "request body too large"));
                    }
                    let next = if size == 0 { ChunkState::Trailer } else { ChunkState::Data(size) };
                    Ok(Some((used, Body::Chunked { state: next, total })))
                }
                Ok(httparse::Status::Partial) if avail.len() > 1024 => {
                    Err(err(400, "chunk size line too long"))
                }
                Ok(httparse::Status::Partial) => Ok(None),
                Err(_) => Err(err(400, "malformed chunk size")),
            },
            ChunkState::Data(n) => {
                if avail.is_empty() {
                    return Ok(None);
                }
                let take = (avail.len() as u64).min(n);
                let next = if take == n { ChunkState::DataEnd } else { ChunkState::Data(n - take) };
                Ok(Some((take as usize, chunked(next))))
            }
            ChunkState::DataEnd => match avail {
                [b'\r', b'\n', ..] => Ok(Some((2, chunked(ChunkState::Size)))),
                [] | [b'\r'] => Ok(None),
                _ => Err(err(400, "malformed chunk end")),
            },
            ChunkState::Trailer => match avail.iter().position(|&b| b == b'\n') {
                Some(n) => {
                    let line = &avail[..n];
                    let done = line.is_empty() || line == b"\r";
                    Ok(Some((n + 1, if done { Body::None } else { chunked(ChunkState::Trailer) })))
                }
                None if avail.len() > self.limits.header_bytes => {
                    Err(err(431, "trailer field too large"))
                }
                None => Ok(None),
            },
        }
    }
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The request's meaning: its fields, and how its body is framed.
fn interpret(
    req: &httparse::Request<'_, '_>,
    limits: &Limits,
) -> Result<(Request, Body), ParseError> {
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some(other) => Method::Other(other.to_string()),
        None => return Err(err(400, "malformed request")),
    };
    let target = req.path.ok_or(err(400, "malformed request"))?.to_string();
    let minor = req.version.ok_or(err(400, "malformed request"))?;
    let mut request = Request {
        method,
        target,
        minor,
        keep_alive: minor >= 1,
        if_none_match: None,
        if_modified_since: None,
        range: None,
        if_range: None,
    };
    let mut hosts = 0;
    let mut ranges = 0;
    let mut length: Option<u64> = None;
    let mut codings: Vec<&[u8]> = Vec::new();
    for h in req.headers.iter() {
        let name = h.name;
        let value = h.value;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(value, "close") {
                request.keep_alive = false;
            } else if minor == 0 && has_token(value, "keep-alive") {
                request.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(|&b| b == b',') {
                let n =
                    parse_length(part.trim_ascii()).ok_or(err(400, "invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(err(400, "conflicting Content-Length"));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.extend(
                value.split(|&b| b == b',').map(|t| t.trim_ascii()).filter(|t| !t.is_empty()),
            );
        } else if name.eq_ignore_ascii_case("if-none-match") {
            append(&mut request.if_none_match, value);
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            request.if_modified_since = Some(String::from_utf8_lossy(value).into_owned());
        } else if name.eq_ignore_ascii_case("range") {
            ranges += 1;
            request.range = Some(String::from_utf8_lossy(value).into_owned());
        } else if name.eq_ignore_ascii_case("if-range") {
            request.if_range = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    if ranges > 1 {
        request.range = None;
    }
    if minor >= 1 && hosts != 1 {
        return Err(err(400, "HTTP/1.1 request needs exactly one Host"));
    }
    let body = if !codings.is_empty() {
        if codings.iter().any(|c| !c.eq_ignore_ascii_case(b"chunked")) {
            return Err(err(501, "unknown transfer-coding"));
        }
        if length.is_some() || minor == 0 || codings.len() > 1 {
            return Err(err(400, "ambiguous message framing"));
        }
        Body::Chunked { state: ChunkState::Size, total: 0 }
    } else {
        match length {
            Some(n) if n > limits.body => return Err(err(413, "request body too large")),
            Some(0) | None => Body::None,
            Some(n) => Body::Length(n),
        }
    };
    Ok((request, body))
}

/// Appends a header value to a field that may be repeated (joined with `, `).
fn append(field: &mut Option<String>, value: &[u8]) {
    let value = String::from_utf8_lossy(value);
    match field {
        Some(s) => {
            s.push_str(", ");
            s.push_str(&value);
        }
        None => *field = Some(value.into_owned()),
    }
}

/// A decimal `Content-Length`: digits only, no sign, no overflow.
fn parse_length(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> RequestReader {
        RequestReader::new(Limits::default())
    }

    fn feed(r: &mut RequestReader, bytes: &[u8]) {
        r.buffer(bytes.len()).extend_from_slice(bytes);
    }

    fn one(bytes: &[u8]) -> Result<Option<Request>, ParseError> {
        let mut r = reader();
        feed(&mut r, bytes);
        r.next_request()
    }

    fn status(bytes: &[u8]) -> u16 {
        one(bytes).expect_err("should be refused").status
    }

    #[test]
    fn simple_get() {
        let req = one(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.target, "/a?b");
        assert!(req.keep_alive);
    }

    #[test]
    fn keep_alive_rules() {
        let close = one(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n").unwrap();
        assert!(!close.unwrap().keep_alive);
        assert!(!one(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        let ka = one(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().unwrap();
        assert!(ka.keep_alive);
    }

    #[test]
    fn byte_at_a_time_and_pipelined() {
        let one_req = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut r = reader();
        let mut got = 0;
        for &b in one_req.iter().chain(one_req.iter()) {
            feed(&mut r, &[b]);
            while let Some(req) = r.next_request().unwrap() {
                assert_eq!(req.target, "/x");
                got += 1;
            }
        }
        assert_eq!(got, 2);
        let mut r = reader();
        let many: Vec<u8> = (0..100)
            .flat_map(|i| format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes())
            .collect();
        feed(&mut r, &many);
        for i in 0..100 {
            assert_eq!(r.next_request().unwrap().unwrap().target, format!("/{i}"));
        }
        assert_eq!(r.next_request().unwrap(), None);
        assert!(!r.in_request());
    }

    #[test]
    fn limits_and_errors() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
        assert_eq!(status(long.as_bytes()), 414);
        let partial_long = format!("GET /{}", "a".repeat(9000));
        assert_eq!(status(partial_long.as_bytes()), 414);
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n", "a".repeat(17000));
        assert_eq!(status(big.as_bytes()), 431);
        let partial_big = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}", "a".repeat(17000));
        assert_eq!(status(partial_big.as_bytes()), 431);
        let many: String = (0..101).map(|i| format!("X{i}: y\r\n")).collect();
        assert_eq!(status(format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes()), 431);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"), 413);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET\x01 / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"), 400);
    }

    #[test]
    fn small_bodies_are_discarded() {
        let mut r = reader();
        feed(&mut r, b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel");
        assert_eq!(r.next_request().unwrap(), None);
        assert!(r.in_request());
        feed(&mut r, b"loGET /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n");
        let targets: Vec<String> =
            std::iter::from_fn(|| r.next_request().unwrap()).map(|r| r.target).collect();
        assert_eq!(targets, ["/a", "/b", "/c"]);
    }
}
