//! Fuzz-style property tests of the HTTP request reader (`cli/src/http/request.rs`, included
//! directly): arbitrary bytes in arbitrary splits never panic, never buffer beyond the limits, and
//! give the same requests and the same verdict however the bytes are split; generated valid
//! requests, pipelined and split at random, all come out in order. Bounded case counts, so it
//! runs with the normal test suite.

#[path = "../src/http/request.rs"]
#[allow(dead_code)]
mod request;

use proptest::prelude::*;
use request::{Limits, ParseError, Request, RequestReader};

/// Feeds `data` in pieces of the given sizes, collecting every request and the final verdict.
fn run(data: &[u8], splits: &[usize]) -> (Vec<Request>, Option<ParseError>) {
    let limits = Limits::default();
    let bound = limits.request_line + limits.header_bytes + 64;
    let mut r = RequestReader::new(limits);
    let mut out = Vec::new();
    let mut rest = data;
    let mut sizes = splits.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&rest.len())).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        r.buffer(piece.len()).extend_from_slice(piece);
        loop {
            match r.next_request() {
                Ok(Some(req)) => out.push(req),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        assert!(r.buffered() <= bound + n, "reader holds {} bytes", r.buffered());
    }
    (out, None)
}

/// Bytes that look a lot like HTTP, so the fuzzer gets deep into the parser.
fn http_ish() -> impl Strategy<Value = Vec<u8>> {
    let atoms = prop_oneof![
        Just(b"GET ".to_vec()),
        Just(b"HEAD ".to_vec()),
        Just(b"POST ".to_vec()),
        Just(b"/a/b?c ".to_vec()),
        Just(b"/%2e%2e/ ".to_vec()),
        Just(b"HTTP/1.1".to_vec()),
        Just(b"HTTP/1.0".to_vec()),
        Just(b"HTTP/2.0".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"Host: x".to_vec()),
        Just(b"Connection: close".to_vec()),
        Just(b"Content-Length: 3".to_vec()),
        Just(b"Content-Length: 99999".to_vec()),
        Just(b"Transfer-Encoding: chunked".to_vec()),
        Just(b"Transfer-Encoding: gzip".to_vec()),
        Just(b"3\r\nabc\r\n0\r\n\r\n".to_vec()),
        Just(b"Range: bytes=0-1".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                   splits in proptest::collection::vec(1usize..64, 1..8)) {
        let whole = run(&data, &[data.len().max(1)]);
        let split = run(&data, &splits);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn http_like_bytes_split_anywhere(data in http_ish(),
                                      splits in proptest::collection::vec(1usize..16, 1..8)) {
        let whole = run(&data, &[data.len().max(1)]);
        let bytewise = run(&data, &[1]);
        let split = run(&data, &splits);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn valid_pipelines_come_out_in_order(
        paths in proptest::collection::vec("/[a-z0-9._~-]{0,20}", 1..20),
        extra in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}"), 0..10),
        splits in proptest::collection::vec(1usize..300, 1..8),
    ) {
        let mut data = Vec::new();
        for p in &paths {
            data.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: t\r\n").as_bytes());
            for (n, v) in &extra {
                if ["host", "content-length", "transfer-encoding"].contains(&n.to_ascii_lowercase().as_str()) {
                    continue;
                }
                data.extend_from_slice(format!("{n}: {}\r\n", v.trim()).as_bytes());
            }
            data.extend_from_slice(b"\r\n");
        }
        let (reqs, err) = run(&data, &splits);
        prop_assert_eq!(err, None);
        let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
        let want: Vec<&str> = paths.iter().map(String::as_str).collect();
        prop_assert_eq!(targets, want);
    }
}

#[test]
fn oversized_inputs_are_refused_not_buffered() {
    let flood = vec![b'a'; 1 << 20];
    let (reqs, err) = run(&flood, &[4096]);
    assert!(reqs.is_empty());
    assert_eq!(err.map(|e| e.status), Some(414));
    let mut head = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    head.extend(std::iter::repeat_n(b"X-A: b\r\n".as_slice(), 10_000).flatten());
    let (_, err) = run(&head, &[1000]);
    assert_eq!(err.map(|e| e.status), Some(431));
}
