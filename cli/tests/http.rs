//! End-to-end tests of `proactor http` on both drivers: every status the server can answer,
//! HEAD against GET, keep-alive, pipelining, a trickled request, ranges, conditionals,
//! directories, timeouts — with ureq as a real client and raw sockets where ureq would hide
//! what is sent.

mod http_support;

use http_support::{pattern, Fixture, Server};
use std::io::Write;
use std::time::{Duration, Instant};

fn get(srv: &Server, path: &str) -> http_support::Response {
    srv.raw(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
}

#[proactor::test]
fn get_with_ureq(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &[]);
    let resp = ureq::get(&srv.url("/hello.txt")).call().expect("GET");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(resp.header("content-length"), Some("12"));
    assert!(resp.header("etag").unwrap().starts_with('"'));
    assert!(resp.header("last-modified").unwrap().ends_with(" GMT"));
    assert!(resp.header("date").unwrap().ends_with(" GMT"));
    assert!(resp.header("server").unwrap().starts_with("proactor/"));
    assert_eq!(resp.into_string().unwrap(), "hello world\n");

    let resp = ureq::get(&srv.url("/data.bin")).call().expect("GET data");
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
    assert_eq!(body, pattern(300_000));

    let index = ureq::get(&srv.url("/")).call().unwrap();
    assert_eq!(index.header("content-type"), Some("text/html"));
    assert_eq!(index.into_string().unwrap(), "<h1>home</h1>\n");
    let inner = ureq::get(&srv.url("/dir/")).call().unwrap().into_string().unwrap();
    assert_eq!(inner, "<p>dir index</p>\n");
    let linked = ureq::get(&srv.url("/link_in.txt")).call().unwrap().into_string().unwrap();
    assert_eq!(linked, "hello world\n");
    match ureq::get(&srv.url("/missing.txt")).call() {
        Err(ureq::Error::Status(404, _)) => {}
        other => panic!("expected 404, got {:?}", other.map(|r| r.status())),
    }
}

#[proactor::test]
fn head_matches_get(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &[]);
    for path in ["/hello.txt", "/data.bin", "/", "/missing", "/dir", "/empty.txt"] {
        let g = srv.raw(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        let h = srv.raw(&format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        let strip = |r: &http_support::Response| {
            r.headers.iter().filter(|(n, _)| n != "Date").cloned().collect::<Vec<_>>()
        };
        assert_eq!(g.status, h.status, "{path}");
        assert_eq!(strip(&g), strip(&h), "{path}");
        // A HEAD response has no body: the next bytes on the connection are the next response.
        let mut c = srv.connect();
        c.send(
            format!(
                "HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .as_bytes(),
        );
        c.response(true);
        assert_eq!(c.response(false).body, b"hello world\n");
    }
}

#[proactor::test]
fn error_statuses(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &[]);
    let cases: Vec<(String, u16)> = vec![
        ("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n".into(), 404),
        ("GET /link_out.txt HTTP/1.1\r\nHost: t\r\n\r\n".into(), 403),
        ("GET /plain/ HTTP/1.1\r\nHost: t\r\n\r\n".into(), 404),
        ("POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc".into(), 405),
        ("DELETE /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n".into(), 405),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n".into(), 400),
        ("G@T / HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n".into(), 413),
        (format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000)), 414),
        (format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(17_000)), 431),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
                (0..120).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
            ),
            431,
        ),
        ("GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(), 501),
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505),
        ("GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=12-\r\n\r\n".into(), 416),
    ];
    for (req, want) in cases {
        let resp = srv.raw(&req);
        assert_eq!(resp.status, want, "request {:?}", &req[..req.len().min(60)]);
        assert!(!resp.body.is_empty(), "error responses carry a small body");
        if want == 405 {
            assert_eq!(resp.header("allow"), Some("GET, HEAD"));
        }
        if want == 416 {
            assert_eq!(resp.header("content-range"), Some("bytes */12"));
        }
        if [400, 413, 414, 431, 501, 505].contains(&want) {
            assert_eq!(resp.header("connection"), Some("close"), "{want} closes");
        }
    }
    // 301 for a directory without its slash, keeping the query.
    let resp = get(&srv, "/dir?x=1");
    assert_eq!(resp.status, 301);
    assert_eq!(resp.header("location"), Some("/dir/?x=1"));
    // ureq follows it.
    let followed = ureq::get(&srv.url("/dir")).call().unwrap().into_string().unwrap();
    assert_eq!(followed, "<p>dir index</p>\n");
    // After 400 the connection closes even though more requests were sent.
    let mut c = srv.connect();
    c.send(b"GET / HTTP/1.1\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response(false).status, 400);
    assert!(c.closed());
}

#[proactor::test]
fn request_timeout_408(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(
        &fx.root(),
        driver,
        &["--header-timeout", "300ms", "--keepalive-timeout", "600ms"],
    );
    // A partial request that never completes gets 408 and the connection closes.
    let mut c = srv.connect();
    c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n");
    let started = Instant::now();
    let resp = c.response(false);
    assert_eq!(resp.status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(c.closed());
    // A slowloris client trickling a byte every 100 ms is cut off by the total header time.
    let mut c = srv.connect();
    let mut got_408 = false;
    for b in b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nX: aaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
        if c.reader.get_mut().write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
        let mut peek = [0u8; 1];
        c.stream().set_nonblocking(true).unwrap();
        let ready = c.stream().peek(&mut peek).map(|n| n > 0).unwrap_or(false);
        c.stream().set_nonblocking(false).unwrap();
        if ready {
            got_408 = c.response(false).status == 408;
            break;
        }
    }
    assert!(got_408, "trickling client not cut off");
    // An idle kept-alive connection is closed (silently) after the idle timeout.
    let mut c = srv.connect();
    c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
    let idle = Instant::now();
    assert!(c.closed());
    assert!(idle.elapsed() >= Duration::from_millis(400), "closed too early: {:?}", idle.elapsed());
}

#[proactor::test]
fn keep_alive_rules(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &[]);
    // HTTP/1.1: one connection, several requests.
    let mut c = srv.connect();
    for _ in 0..5 {
        c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response(false);
        assert_eq!(r.body, b"hello world\n");
        assert_eq!(r.header("connection"), None);
    }
    // Connection: close is honoured.
    c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response(false).header("connection"), Some("close"));
    assert!(c.closed());
    // HTTP/1.0 closes by default, stays with keep-alive.
    let mut c = srv.connect();
    c.send(b"GET /hello.txt HTTP/1.0\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
    assert!(c.closed());
    let mut c = srv.connect();
    c.send(b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.response(false).header("connection"), Some("keep-alive"));
    c.send(b"GET /hello.txt HTTP/1.0\r\n\r\n");
    assert_eq!(c.response(false).body, b"hello world\n");
    assert!(c.closed());
    // ureq's connection pool reuses one connection for sequential requests.
    let agent = ureq::AgentBuilder::new().max_idle_connections(1).build();
    for _ in 0..10 {
        assert_eq!(
            agent.get(&srv.url("/hello.txt")).call().unwrap().into_string().unwrap(),
            "hello world\n"
        );
    }
}

#[proactor::test]
fn pipelined_hundred(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &[]);
    let mut c = srv.connect();
    let all: String =
        (0..100).map(|i| format!("GET /seq/{i}.txt HTTP/1.1\r\nHost: t\r\n\r\n")).collect();
    c.send(all.as_bytes());
    for i in 0..100 {
        let r = c.response(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("file number {i}\n"));
    }
    // Mixed: HEAD, ranges, errors and a big file, still in order.
    let mixed = "GET /data.bin HTTP/1.1\r\nHost: t\r\n\r\n\
                 HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n\
                 GET /nope HTTP/1.1\r\nHost: t\r\n\r\n\
                 GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-4\r\n\r\n\
                 GET /seq/7.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    c.send(mixed.as_bytes());
    assert_eq!(c.response(false).body, pattern(300_000));
    assert_eq!(c.response(true).status, 200);
    assert_eq!(c.response(false).status, 404);
    assert_eq!(c.response(false).body, b"hello");
    assert_eq!(c.response(false).body, b"file number 7\n");
}

#[proactor::test]
fn trickled_byte_by_byte(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &[]);
    let mut c = srv.connect();
    let req = b"GET /seq/42.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: trickle\r\n\r\n";
    for b in req {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(c.response(false).text(), "file number 42\n");
    // Again on the same connection, to check the reader reset between requests.
    for b in req {
        c.send(&[*b]);
    }
    assert_eq!(c.response(false).text(), "file number 42\n");
}

#[proactor::test]
fn ranges(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &[]);
    let data = pattern(300_000);
    let range = |spec: &str| {
        srv.raw(&format!("GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: {spec}\r\n\r\n"))
    };
    let r = range("bytes=0-0");
    assert_eq!((r.status, r.body.as_slice()), (206, &data[..1]));
    assert_eq!(r.header("content-range"), Some("bytes 0-0/300000"));
    let r = range("bytes=299999-299999");
    assert_eq!((r.status, r.body.as_slice()), (206, &data[299_999..]));
    assert_eq!(r.header("content-range"), Some("bytes 299999-299999/300000"));
    let r = range("bytes=-100");
    assert_eq!((r.status, r.body.as_slice()), (206, &data[299_900..]));
    let r = range("bytes=1000-");
    assert_eq!((r.status, r.body.as_slice()), (206, &data[1000..]));
    let r = range("bytes=100-199999999");
    assert_eq!((r.status, r.body.len()), (206, 299_900));
    assert_eq!(range("bytes=300000-").status, 416);
    assert_eq!(range("bytes=300000-400000").header("content-range"), Some("bytes */300000"));
    assert_eq!(range("bytes=-0").status, 416);
    // Several ranges, or nonsense: the whole file.
    assert_eq!(range("bytes=0-1,5-6").body, data);
    assert_eq!(range("bytes=oops").status, 200);
    // If-Range with the current ETag keeps the range; with an old one the whole file comes.
    let etag = get(&srv, "/data.bin").header("etag").unwrap().to_string();
    let r = srv.raw(&format!(
        "GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\nIf-Range: {etag}\r\n\r\n"
    ));
    assert_eq!((r.status, r.body.len()), (206, 10));
    let r = srv
        .raw("GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\nIf-Range: \"old\"\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, 300_000));
    // Ranges through ureq.
    let r = ureq::get(&srv.url("/hello.txt")).set("Range", "bytes=-6").call().unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.into_string().unwrap(), "world\n");
}

#[proactor::test]
fn conditionals(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &[]);
    let first = get(&srv, "/hello.txt");
    let etag = first.header("etag").unwrap().to_string();
    let lm = first.header("last-modified").unwrap().to_string();
    let cond = |h: &str| srv.raw(&format!("GET /hello.txt HTTP/1.1\r\nHost: t\r\n{h}\r\n\r\n"));
    let r = cond(&format!("If-None-Match: {etag}"));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(cond(&format!("If-None-Match: \"zzz\", W/{etag}")).status, 304);
    assert_eq!(cond("If-None-Match: \"zzz\"").status, 200);
    assert_eq!(cond(&format!("If-Modified-Since: {lm}")).status, 304);
    assert_eq!(cond("If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT").status, 200);
    // If-None-Match wins over If-Modified-Since.
    assert_eq!(cond(&format!("If-None-Match: \"zzz\"\r\nIf-Modified-Since: {lm}")).status, 200);
    // The tag changes with the file.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(fx.root().join("hello.txt"), "hello again\n").unwrap();
    let r = cond(&format!("If-None-Match: {etag}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello again\n");
    assert_ne!(r.header("etag"), Some(etag.as_str()));
    let r = ureq::get(&srv.url("/hello.txt"))
        .set("If-None-Match", r.header("etag").unwrap())
        .call()
        .unwrap();
    assert_eq!(r.status(), 304);
}

#[proactor::test]
fn directories(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &[]);
    assert_eq!(get(&srv, "/plain/").status, 404);
    assert_eq!(get(&srv, "/hello.txt/").status, 404);
    drop(srv);
    let srv = Server::start(&fx.root(), driver, &["--list-dirs"]);
    let r = get(&srv, "/plain/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    assert!(html.contains("a.txt"), "{html}");
    assert!(html.contains("&lt;b&gt;&amp;&quot;q&quot;.txt"), "{html}");
    assert!(!html.contains("<b>"), "unescaped name in {html}");
    assert!(html.contains("href=\"./%3Cb%3E&amp;%22q%22.txt\""), "{html}");
    let r = get(&srv, "/plain/%3Cb%3E&%22q%22.txt");
    assert_eq!(r.body, b"b\n");
    // A directory with index.html still serves the index.
    assert_eq!(get(&srv, "/dir/").body, b"<p>dir index</p>\n");
}

#[proactor::test]
fn small_bodies_discarded(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &[]);
    let mut c = srv.connect();
    c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nxxxxx\
             GET /seq/1.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n\
             GET /seq/2.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response(false).body, b"hello world\n");
    assert_eq!(c.response(false).body, b"file number 1\n");
    assert_eq!(c.response(false).body, b"file number 2\n");
}

#[proactor::test]
fn bodies_without_sendfile(driver: &str) {
    // The copy path (read into the buffer, then send) for every size, and sendfile for all.
    let fx = Fixture::new();
    for extra in [&["--no-sendfile", "--buffer-size", "65536"][..], &["--sendfile-from", "0"][..]] {
        let srv = Server::start(&fx.root(), driver, extra);
        assert_eq!(get(&srv, "/data.bin").body, pattern(300_000), "{extra:?}");
        assert_eq!(get(&srv, "/hello.txt").body, b"hello world\n", "{extra:?}");
        let r = srv.raw("GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=70000-210000\r\n\r\n");
        assert_eq!(r.body, &pattern(300_000)[70_000..=210_000], "{extra:?}");
        let mut c = srv.connect();
        let all: String = (0..20).map(|_| "GET /data.bin HTTP/1.1\r\nHost: t\r\n\r\n").collect();
        c.send(all.as_bytes());
        for _ in 0..20 {
            assert_eq!(c.response(false).body.len(), 300_000);
        }
    }
}

#[proactor::test]
fn large_body_tails_are_not_held_back(driver: &str) {
    // A large body's head goes with MSG_MORE (held for the body's first bytes): on a kept-alive
    // connection with nothing sent after it, every path must still push the body's last partial
    // segment, or the client waits for it (here until its read timeout, a failure). Ranges of
    // odd lengths end mid-segment.
    let fx = Fixture::new();
    let data = pattern(300_000);
    for body in ["sendfile", "splice", "zc"] {
        let srv = Server::start(&fx.root(), driver, &["--body", body]);
        let mut c = srv.connect();
        c.send(b"GET /data.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response(false).body, data, "--body {body}");
        for (start, end) in [(1, 65_537), (3, 299_998), (70_001, 140_003)] {
            let req =
                format!("GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={start}-{end}\r\n\r\n");
            c.send(req.as_bytes());
            let r = c.response(false);
            assert_eq!(r.status, 206, "--body {body}");
            assert_eq!(r.body, &data[start..=end], "--body {body} {start}-{end}");
        }
    }
}

#[proactor::test]
fn stops_on_sigterm(driver: &str) {
    let fx = Fixture::new();
    let mut srv = Server::start(&fx.root(), driver, &["--grace", "5s", "--max-conns", "3"]);
    // Past --max-conns a connection is closed at once.
    let mut held: Vec<_> = (0..3).map(|_| srv.connect()).collect();
    for c in held.iter_mut() {
        c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response(false).status, 200);
    }
    let mut extra = srv.connect();
    extra.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(extra.try_response(false).is_none(), "fourth connection served past --max-conns");
    // SIGTERM: idle kept-alive connections are closed and the server exits 0 well before grace.
    let started = Instant::now();
    let status = srv.terminate(Duration::from_secs(10)).expect("server exited");
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    for c in held.iter_mut() {
        assert!(c.closed());
    }
}

#[proactor::test]
fn recovers_from_emfile(driver: &str) {
    // Out of descriptors the server keeps running and backs off; afterwards it serves a file
    // (which takes a descriptor of its own) on a new connection.
    let fx = Fixture::new();
    let root = fx.root();
    let root = root.to_str().expect("a UTF-8 temp path");
    let extra = ["--root", root, "--quiet"];
    let report = http_support::server_support::emfile_recovery("http", driver, &extra, |addr| {
        let mut c = http_support::Client::connect(addr);
        c.send(b"GET /data.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        let resp = c.response(false);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, pattern(300_000));
    });
    // One descriptor per connection: the accepts themselves run out.
    assert!(report.accept_backed_off, "accept never hit EMFILE: {report:?}");
}
