//! `proactor http` never serves anything outside `--root`: a table of traversal attempts
//! (dot-dot in every encoding, backslashes, NUL bytes, overlong UTF-8, absolute paths and
//! absolute-form targets, symlinks out of the root), each refused, and every response checked for
//! the content of a secret file that sits right next to the root.

mod http_support;

use http_support::{Fixture, Server, SECRET};

/// Request-targets that must all be refused (4xx, never the secret).
const ATTACKS: &[&str] = &[
    "/../secret.txt",
    "/../../secret.txt",
    "/..%2fsecret.txt",
    "/%2e%2e/secret.txt",
    "/%2e%2e%2fsecret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/.%2e/secret.txt",
    "/%2e./secret.txt",
    "/dir/../../secret.txt",
    "/dir/%2e%2e/%2e%2e/secret.txt",
    "/dir/..%2f..%2fsecret.txt",
    "/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/..\\secret.txt",
    "/%5c..%5csecret.txt",
    "/..%5csecret.txt",
    "/%2e%2e%5csecret.txt",
    "/secret.txt%00.html",
    "/%00../secret.txt",
    "/..%00/secret.txt",
    "/%c0%ae%c0%ae/secret.txt",
    "/%c0%ae%c0%ae%c0%afsecret.txt",
    "/%e0%80%ae%e0%80%ae/secret.txt",
    "/%c1%9c..%c1%9csecret.txt",
    "/dir/..%c0%af..%c0%afsecret.txt",
    "/%25%32%65%25%32%65/secret.txt",
    "/..%252fsecret.txt",
    "//../secret.txt",
    "/./../secret.txt",
    "http://t/../secret.txt",
    "http://t/%2e%2e/secret.txt",
    "../secret.txt",
    "secret.txt",
    "/link_out.txt",
    "/abs_link.txt",
    "/up/secret.txt",
    "/up/root/../secret.txt",
    "/up/",
    "/%u002e%u002e/secret.txt",
    "/..;/secret.txt",
    "/%2fsecret.txt",
    "//secret.txt",
    "/etc/passwd",
    "/%2fetc%2fpasswd",
    "/....//secret.txt",
];

fn check_all(srv: &Server, follow: bool) -> usize {
    let mut refused = 0;
    for target in ATTACKS {
        for method in ["GET", "HEAD"] {
            let symlink_out = ["/link_out.txt", "/abs_link.txt", "/up/secret.txt", "/up/"]
                .contains(target)
                || target.starts_with("/up/root");
            if follow && symlink_out {
                // Followed on purpose with --follow-symlinks.
                continue;
            }
            let resp = srv.raw(&format!("{method} {target} HTTP/1.1\r\nHost: t\r\n\r\n"));
            let text = format!("{:?} {}", resp.headers, resp.text());
            assert!(!text.contains(SECRET), "{method} {target} leaked the secret: {text}");
            assert!(
                (400..=404).contains(&resp.status),
                "{method} {target}: status {} (expected refusal)",
                resp.status
            );
            refused += 1;
        }
    }
    refused
}

#[proactor::test]
fn traversal_refused(driver: &str) {
    assert!(ATTACKS.len() >= 30);
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &["--list-dirs"]);
    assert_eq!(check_all(&srv, false), ATTACKS.len() * 2);
    // Pipelined on one connection too (the reader must not carry state into the path).
    let mut c = srv.connect();
    let all: String =
        ATTACKS.iter().map(|t| format!("GET {t} HTTP/1.1\r\nHost: t\r\n\r\n")).collect();
    c.send(all.as_bytes());
    let mut seen = 0;
    while let Some(resp) = c.try_response(false) {
        assert!(!resp.text().contains(SECRET));
        assert!((400..=404).contains(&resp.status));
        seen += 1;
        if resp.header("connection") == Some("close") {
            break;
        }
    }
    assert!(seen >= 1);
    // Sanity: the server does serve files inside the root, and a symlink that stays inside.
    assert_eq!(srv.raw("GET /link_in.txt HTTP/1.1\r\nHost: t\r\n\r\n").body, b"hello world\n");
}

#[proactor::test]
fn follow_symlinks_opt_in(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &["--follow-symlinks"]);
    // Traversal by path is still refused; only symlinks are followed, as asked.
    check_all(&srv, true);
    let resp = srv.raw("GET /link_out.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), SECRET);
}

#[proactor::test]
fn listing_never_leaves_root(driver: &str) {
    let fx = Fixture::new();
    let srv = Server::start(&fx.root(), driver, &["--list-dirs"]);
    let resp = srv.raw("GET /up/ HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 403);
    let root = srv.raw("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(root.text(), "<h1>home</h1>\n");
    std::fs::remove_file(fx.root().join("index.html")).unwrap();
    let listing = srv.raw("GET / HTTP/1.1\r\nHost: t\r\n\r\n").text();
    assert!(listing.contains("hello.txt") && !listing.contains("secret.txt\""), "{listing}");
    assert!(!listing.contains("href=\"../\""), "the root's listing offers no way up: {listing}");
}
