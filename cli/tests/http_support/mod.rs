//! Shared helpers for the `proactor http` tests: a fixture tree with a secret next to the root,
//! the server binary started on a free port with a chosen driver, and a small raw HTTP client
//! that reads responses exactly (status, headers, body by `Content-Length`).
#![allow(dead_code)]

// Tests run on both drivers through `#[proactor::test]` (a body given the driver's name).
#[path = "../server_support/mod.rs"]
pub mod server_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The content of the file next to the root that must never be served.
pub const SECRET: &str = "TOP-SECRET-5f3a9c1e-never-serve-me";

/// A fixture: `dir/root` is served, `dir/secret.txt` sits next to it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
        std::fs::write(root.join("hello.txt"), "hello world\n").unwrap();
        std::fs::write(root.join("index.html"), "<h1>home</h1>\n").unwrap();
        std::fs::write(root.join("empty.txt"), "").unwrap();
        std::fs::write(root.join("data.bin"), pattern(300_000)).unwrap();
        std::fs::create_dir(root.join("dir")).unwrap();
        std::fs::write(root.join("dir/index.html"), "<p>dir index</p>\n").unwrap();
        std::fs::create_dir(root.join("plain")).unwrap();
        std::fs::write(root.join("plain/a.txt"), "a\n").unwrap();
        std::fs::write(root.join("plain/<b>&\"q\".txt"), "b\n").unwrap();
        std::fs::create_dir(root.join("seq")).unwrap();
        for i in 0..100 {
            std::fs::write(root.join(format!("seq/{i}.txt")), format!("file number {i}\n"))
                .unwrap();
        }
        std::os::unix::fs::symlink("hello.txt", root.join("link_in.txt")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", root.join("link_out.txt")).unwrap();
        std::os::unix::fs::symlink("..", root.join("up")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("abs_link.txt"))
            .unwrap();
        Fixture { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

/// Deterministic bytes: `n` bytes of a simple pattern (not all equal, not periodic in 256).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + i / 251) % 256) as u8).collect()
}

/// A running `proactor http`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts the server on `root` with `driver` and extra arguments; waits for `listening on`.
    pub fn start(root: &Path, driver: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_proactor"))
            .arg("http")
            .arg("--root")
            .arg(root)
            .args(["--listen", "127.0.0.1:0", "--driver", driver, "--quiet"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start proactor http");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("address");
        Server { child, addr }
    }

    /// A URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A new raw connection.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends one raw request on a fresh connection and reads one response.
    pub fn raw(&self, request: &str) -> Response {
        let mut c = self.connect();
        c.send(request.as_bytes());
        c.response(request.starts_with("HEAD "))
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit; its exit status.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill takes no pointers; the pid is our own child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the server process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP client connection.
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

/// One response as received.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of a header (case-insensitive name), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Client { reader: BufReader::new(s) }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("send request");
    }

    /// Reads one response; `head` says it answers a HEAD (no body whatever the length says).
    pub fn response(&mut self, head: bool) -> Response {
        self.try_response(head).expect("a response")
    }

    /// Reads one response, or `None` if the connection closed first.
    pub fn try_response(&mut self, head: bool) -> Option<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {line:?}");
        let status: u16 = parts.next().unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).expect("header line");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').expect("header field");
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut r = Response { status, headers, body: Vec::new() };
        let len: usize = r.header("content-length").map_or(0, |v| v.parse().unwrap());
        if !head && status != 304 {
            r.body = vec![0; len];
            self.reader.read_exact(&mut r.body).expect("body");
        }
        Some(r)
    }

    /// Whether the server closed the connection (EOF within the read timeout).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}
