//! Writing response heads and small bodies: the status line, the headers every response carries
//! (`Date`, `Server`, `Content-Length`, `Connection`), and the short error pages.

use super::date;
use std::io::Write;

/// The `Server` header value.
pub const SERVER: &str = concat!("proactor/", env!("CARGO_PKG_VERSION"));

/// The reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A response head being written into an output buffer.
pub struct Head<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Head<'a> {
    /// Starts a response: status line, `Date` and `Server`.
    pub fn start(out: &'a mut Vec<u8>, status: u16) -> Self {
        out.extend_from_slice(b"HTTP/1.1 ");
        let digits = [b'0' + (status / 100 % 10) as u8, b'0' + (status / 10 % 10) as u8];
        out.extend_from_slice(&digits);
        out.push(b'0' + (status % 10) as u8);
        out.push(b' ');
        out.extend_from_slice(reason(status).as_bytes());
        out.extend_from_slice(b"\r\nServer: ");
        out.extend_from_slice(SERVER.as_bytes());
        out.extend_from_slice(b"\r\nDate: ");
        date::with_now(|d| out.extend_from_slice(d.as_bytes()));
        out.extend_from_slice(b"\r\n");
        Head { out }
    }

    /// Adds ready-made header lines (each ending in CRLF).
    pub fn raw(&mut self, lines: &[u8]) -> &mut Self {
        self.out.extend_from_slice(lines);
        self
    }

    /// Adds one header field.
    pub fn header(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.out, "{name}: {value}\r\n");
        self
    }

    /// Adds `Connection: close` or, for an HTTP/1.0 client that asked for it, `keep-alive`.
    pub fn connection(&mut self, keep_alive: bool, minor: u8) -> &mut Self {
        if !keep_alive {
            self.out.extend_from_slice(b"Connection: close\r\n");
        } else if minor == 0 {
            self.out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        self
    }

    /// Ends the head (the empty line).
    pub fn finish(&mut self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Writes a complete short response with a plain-text (or given) body. `head_only` leaves the
/// body out but keeps its `Content-Length`, as a HEAD response must.
pub struct Simple<'h> {
    /// Status code.
    pub status: u16,
    /// Body text.
    pub body: &'h str,
    /// `Content-Type` of the body.
    pub content_type: &'h str,
    /// Extra header fields.
    pub extra: &'h [(&'h str, &'h str)],
}

impl Simple<'_> {
    /// An error page: `404 Not Found` and the reason.
    pub fn error(status: u16) -> Simple<'static> {
        Simple { status, body: "", content_type: "text/plain; charset=utf-8", extra: &[] }
    }

    /// Appends the response to `out`; returns the body length.
    pub fn write(&self, out: &mut Vec<u8>, keep_alive: bool, minor: u8, head_only: bool) -> u64 {
        let generated;
        let body = if self.body.is_empty() {
            generated = format!("{} {}\n", self.status, reason(self.status));
            generated.as_str()
        } else {
            self.body
        };
        let mut head = Head::start(out, self.status);
        head.header("Content-Type", self.content_type).header("Content-Length", body.len());
        for (name, value) in self.extra {
            head.header(name, value);
        }
        head.connection(keep_alive, minor).finish();
        if !head_only {
            out.extend_from_slice(body.as_bytes());
        }
        body.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_page() {
        let mut out = Vec::new();
        let n = Simple::error(404).write(&mut out, false, 1, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains("\r\nContent-Length: 14\r\n"));
        assert!(text.ends_with("\r\n\r\n404 Not Found\n"));
        assert_eq!(n, 14);
    }
}
