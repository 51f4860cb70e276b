//! The open-file cache of `proactor http` never serves a stale file: every way of changing a
//! served file (rewrite, append, truncate, atomic rename over it, delete, a replaced directory on
//! its path, a write through a hard link outside the root, a retargeted symlink) is seen by the
//! very next request, with no pause in between, on a kept-alive connection and on a new one; on
//! both drivers.

mod http_support;

use http_support::{pattern, Client, Fixture, Response, Server};
use std::fs;
use std::path::{Path, PathBuf};

/// A fresh fixture served with the `extra` options, and a kept-alive client on it.
fn serve(driver: &str, extra: &[&str]) -> (Fixture, PathBuf, Server, Client) {
    let fx = Fixture::new();
    let root = fx.root();
    let srv = Server::start(&root, driver, extra);
    let c = srv.connect();
    (fx, root, srv, c)
}

fn get(c: &mut Client, path: &str) -> Response {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    c.response(false)
}

/// Fetches `path` on the kept-alive client and on a fresh connection: both must be `want`.
fn expect_body(srv: &Server, c: &mut Client, path: &str, want: &[u8]) {
    for (which, resp) in [("kept-alive", get(c, path)), ("fresh", get(&mut srv.connect(), path))] {
        assert_eq!(resp.status, 200, "{which} GET {path}");
        assert_eq!(resp.header("content-length"), Some(want.len().to_string().as_str()));
        assert!(resp.body == want, "{which} GET {path}: stale body ({} bytes)", resp.body.len());
    }
}

fn expect_status(srv: &Server, c: &mut Client, path: &str, status: u16) {
    assert_eq!(get(c, path).status, status, "kept-alive GET {path}");
    assert_eq!(get(&mut srv.connect(), path).status, status, "fresh GET {path}");
}

/// Replaces `path` atomically (a new inode): writes `tmp`, then renames it over `path`.
fn replace(tmp: &Path, path: &Path, bytes: &[u8]) {
    fs::write(tmp, bytes).unwrap();
    fs::rename(tmp, path).unwrap();
}

/// Writes `bytes` into an existing file in place (same inode).
fn rewrite(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
}

#[proactor::test]
fn rewritten_files_are_served_fresh(driver: &str) {
    let (_fx, root, srv, mut c) = serve(driver, &[]);
    // Small (cached with its bytes) and large (cached descriptor only) files; many rounds with
    // no pause between the change and the next request.
    for (name, size) in [("small.txt", 100), ("large.bin", 200_000)] {
        let path = root.join(name);
        for round in 0..30usize {
            let mut body = pattern(size + round);
            body[0] = round as u8;
            rewrite(&path, &body);
            expect_body(&srv, &mut c, &format!("/{name}"), &body);
            expect_body(&srv, &mut c, &format!("/{name}"), &body);
        }
        // Same length, different bytes: only the content (and the ETag) changes.
        let before = get(&mut c, &format!("/{name}"));
        let mut same_len = before.body.clone();
        same_len[1] ^= 0xff;
        rewrite(&path, &same_len);
        let after = get(&mut c, &format!("/{name}"));
        assert_eq!(after.body, same_len, "{name}: same-size rewrite not seen");
        assert_ne!(before.header("etag"), after.header("etag"), "{name}: ETag did not change");
        // Append and truncate in place.
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, b"appended").unwrap();
        drop(f);
        let mut grown = same_len.clone();
        grown.extend_from_slice(b"appended");
        expect_body(&srv, &mut c, &format!("/{name}"), &grown);
        fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(10).unwrap();
        expect_body(&srv, &mut c, &format!("/{name}"), &grown[..10]);
    }
}

#[proactor::test]
fn replaced_and_deleted_files_are_served_fresh(driver: &str) {
    let (_fx, root, srv, mut c) = serve(driver, &[]);
    expect_body(&srv, &mut c, "/hello.txt", b"hello world\n");
    // Atomic replace (write a temporary file, rename it over), repeatedly.
    for round in 0..20 {
        let body = format!("version {round}\n");
        replace(&root.join(".tmp"), &root.join("hello.txt"), body.as_bytes());
        expect_body(&srv, &mut c, "/hello.txt", body.as_bytes());
    }
    // Deleted: 404; created again: served.
    fs::remove_file(root.join("hello.txt")).unwrap();
    expect_status(&srv, &mut c, "/hello.txt", 404);
    fs::write(root.join("hello.txt"), "back\n").unwrap();
    expect_body(&srv, &mut c, "/hello.txt", b"back\n");
    // A directory's index: replaced, then deleted (404 without --list-dirs).
    expect_body(&srv, &mut c, "/dir/", b"<p>dir index</p>\n");
    replace(&root.join("dir/.new"), &root.join("dir/index.html"), b"<p>new index</p>\n");
    expect_body(&srv, &mut c, "/dir/", b"<p>new index</p>\n");
    fs::remove_file(root.join("dir/index.html")).unwrap();
    expect_status(&srv, &mut c, "/dir/", 404);
}

#[proactor::test]
fn changed_directories_links_and_hard_links(driver: &str) {
    let (fx, root, srv, mut c) = serve(driver, &[]);
    // A directory on the path replaced by another one holding a different file of that name.
    expect_body(&srv, &mut c, "/plain/a.txt", b"a\n");
    fs::rename(root.join("plain"), root.join("plain_old")).unwrap();
    expect_status(&srv, &mut c, "/plain/a.txt", 404);
    fs::create_dir(root.join("plain")).unwrap();
    fs::write(root.join("plain/a.txt"), "other a\n").unwrap();
    expect_body(&srv, &mut c, "/plain/a.txt", b"other a\n");
    // Renamed back over the new one (rename(2) replaces an empty directory only, so move the
    // new one away first): the old file again.
    fs::rename(root.join("plain"), root.join("plain_new")).unwrap();
    fs::rename(root.join("plain_old"), root.join("plain")).unwrap();
    expect_body(&srv, &mut c, "/plain/a.txt", b"a\n");
    // A hard link to a file outside the root, changed through the outside name.
    let outside = fx.dir.path().join("outside.txt");
    fs::write(&outside, "outside v1\n").unwrap();
    fs::hard_link(&outside, root.join("linked.txt")).unwrap();
    expect_body(&srv, &mut c, "/linked.txt", b"outside v1\n");
    rewrite(&outside, b"outside v2, longer\n");
    expect_body(&srv, &mut c, "/linked.txt", b"outside v2, longer\n");
    // A symlink inside the root, retargeted.
    expect_body(&srv, &mut c, "/link_in.txt", b"hello world\n");
    fs::remove_file(root.join("link_in.txt")).unwrap();
    std::os::unix::fs::symlink("plain/a.txt", root.join("link_in.txt")).unwrap();
    expect_body(&srv, &mut c, "/link_in.txt", b"a\n");
    // The symlink's target changed in place.
    rewrite(&root.join("plain/a.txt"), b"a, changed\n");
    expect_body(&srv, &mut c, "/link_in.txt", b"a, changed\n");
}

#[proactor::test]
fn many_files_and_ranges_from_the_cache(driver: &str) {
    let fx = Fixture::new();
    let root = fx.root();
    // More files than the cache holds, two rounds: every body right.
    fs::create_dir(root.join("many")).unwrap();
    for i in 0..1200 {
        fs::write(root.join(format!("many/{i}.txt")), format!("many {i}\n")).unwrap();
    }
    let srv = Server::start(&root, driver, &[]);
    let mut c = srv.connect();
    for _ in 0..2 {
        for i in 0..1200 {
            let resp = get(&mut c, &format!("/many/{i}.txt"));
            assert_eq!(resp.text(), format!("many {i}\n"));
        }
    }
    // Ranges, HEAD and 304 answered from a cached small file.
    fs::write(root.join("r.txt"), "0123456789").unwrap();
    expect_body(&srv, &mut c, "/r.txt", b"0123456789");
    c.send(b"GET /r.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n\r\n");
    let r = c.response(false);
    assert_eq!((r.status, r.body.as_slice()), (206, b"234".as_slice()));
    assert_eq!(r.header("content-range"), Some("bytes 2-4/10"));
    c.send(b"HEAD /r.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let h = c.response(true);
    assert_eq!((h.status, h.header("content-length")), (200, Some("10")));
    let etag = h.header("etag").unwrap().to_string();
    c.send(format!("GET /r.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes());
    assert_eq!(c.response(false).status, 304);
    // After a change the old ETag no longer matches.
    rewrite(&root.join("r.txt"), b"abcdefghijk");
    c.send(format!("GET /r.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes());
    let r = c.response(false);
    assert_eq!((r.status, r.body.as_slice()), (200, b"abcdefghijk".as_slice()));
}

#[proactor::test]
fn changes_racing_with_requests(driver: &str) {
    let fx = Fixture::new();
    let root = fx.root();
    let srv = Server::start(&root, driver, &[]);
    // A writer rewrites files (small and large) while clients fetch them; once the writer has
    // finished, the next request must see its last version: no entry filled mid-change stays.
    for (name, base) in [("race.txt", 10usize), ("race.bin", 100_000)] {
        let path = root.join(name);
        fs::write(&path, b"start").unwrap();
        for round in 0..5u8 {
            let writer_path = path.clone();
            let writer = std::thread::spawn(move || {
                let mut last = Vec::new();
                for i in 0..100usize {
                    last = vec![round.wrapping_mul(31).wrapping_add(i as u8); base + i * 37 % 500];
                    fs::write(&writer_path, &last).unwrap();
                }
                last
            });
            while !writer.is_finished() {
                // A file that shrinks under a response ends the connection early, possibly
                // before the head went out (the promised length cannot be sent), so these
                // responses are only read to the end; any that came is a 200.
                let mut c = srv.connect();
                c.send(
                    format!("GET /{name} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
                let mut raw = Vec::new();
                let _ = std::io::Read::read_to_end(&mut c.reader, &mut raw);
                let head = String::from_utf8_lossy(&raw[..raw.len().min(13)]).into_owned();
                assert!(raw.is_empty() || head == "HTTP/1.1 200 ", "{head:?}");
            }
            let mut c = srv.connect();
            let last = writer.join().unwrap();
            expect_body(&srv, &mut c, &format!("/{name}"), &last);
        }
    }
}

#[proactor::test]
fn without_the_cache(driver: &str) {
    let (_fx, root, srv, mut c) = serve(driver, &["--no-file-cache"]);
    for round in 0..5 {
        let body = format!("round {round}\n");
        rewrite(&root.join("hello.txt"), body.as_bytes());
        expect_body(&srv, &mut c, "/hello.txt", body.as_bytes());
    }
}
