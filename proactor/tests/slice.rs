//! Reads into slices of a buffer (`buf.slice(range)`) on real files and sockets, through both
//! front ends, on both drivers: the buffer's initialised length covers exactly what was read, and
//! a slice that would start past the initialised bytes is refused when it is made.
mod common;
mod core_util;

use core_util::{run_op, FRONTS};
use proactor::Proactor;
use proactor::{op, IoBuf};
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

/// A temporary file holding `0, 1, 2, ...` (mod 251) for `len` bytes.
fn pattern_file(len: usize) -> (Rc<std::fs::File>, Vec<u8>) {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&bytes).unwrap();
    (Rc::new(file), bytes)
}

#[test]
fn a_slice_starting_past_the_initialised_bytes_is_refused() {
    let empty: Vec<u8> = Vec::with_capacity(100);
    let back = empty.try_slice(50..).expect_err("50.. of an empty Vec");
    assert_eq!((back.len(), back.capacity()), (0, 100), "the buffer comes back as it was");
    let err = std::panic::catch_unwind(|| Vec::<u8>::with_capacity(100).slice(50..)).unwrap_err();
    let msg = err.downcast_ref::<String>().expect("a formatted panic message");
    assert!(msg.contains("starts past the buffer's 0 initialised bytes"), "{msg}");
    // Out of bounds, and ending before it starts, are refused too.
    assert!(vec![0u8; 10].try_slice(..11).is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = vec![0u8; 10].try_slice(6..5);
    assert!(reversed.is_err());
    // Starting right at the initialised length (an append) or inside it is fine.
    let mut v = Vec::with_capacity(100);
    v.extend_from_slice(&[1, 2, 3]);
    let s = v.try_slice(3..).unwrap();
    assert_eq!((s.begin(), s.end(), s.bytes_init(), s.bytes_total()), (3, 100, 0, 97));
    let s = s.into_inner().try_slice(1..).unwrap();
    assert_eq!((s.bytes_init(), s.bytes_total()), (2, 99));
}

#[proactor::test]
fn file_reads_into_slices_set_the_length_exactly(p: &Proactor) {
    for front in FRONTS {
        let (file, bytes) = pattern_file(300);
        // Into an empty Vec from its start: the length becomes the count read.
        let (res, slice) =
            run_op(p, front, op::Read::at(file.clone(), Vec::with_capacity(100).slice(0..), 0));
        let n = res.unwrap();
        let buf = slice.into_inner();
        assert_eq!((n, buf.len()), (100, 100), "{front:?}");
        assert_eq!(buf[..], bytes[..100]);

        // Appending after 50 initialised bytes: the length becomes 50 + n, the head untouched.
        let mut head = Vec::with_capacity(120);
        head.extend_from_slice(&[0xAA; 50]);
        let (res, slice) = run_op(p, front, op::Read::at(file.clone(), head.slice(50..), 10));
        let n = res.unwrap();
        let buf = slice.into_inner();
        assert_eq!((n, buf.len()), (70, 120), "{front:?}");
        assert_eq!(buf[..50], [0xAA; 50]);
        assert_eq!(buf[50..], bytes[10..80]);

        // Inside the initialised bytes: they are overwritten, the length stays.
        let (res, slice) =
            run_op(p, front, op::Read::at(file.clone(), vec![7u8; 100].slice(20..60), 0));
        let n = res.unwrap();
        let buf = slice.into_inner();
        assert_eq!((n, buf.len()), (40, 100), "{front:?}");
        assert_eq!(buf[..20], [7; 20]);
        assert_eq!(buf[20..60], bytes[..40]);
        assert_eq!(buf[60..], [7; 40]);

        // A short read (end of file) that stops inside the initialised bytes keeps them all.
        let (res, slice) =
            run_op(p, front, op::Read::at(file.clone(), vec![9u8; 40].slice(10..), 290));
        let n = res.unwrap();
        let buf = slice.into_inner();
        assert_eq!((n, buf.len()), (10, 40), "{front:?}");
        assert_eq!(buf[10..20], bytes[290..]);
        assert_eq!(buf[20..], [9; 20]);
    }
}

#[proactor::test]
fn socket_receives_into_slices_set_the_length_exactly(p: &Proactor) {
    for front in FRONTS {
        let (a, mut b) = UnixStream::pair().unwrap();
        let a = Rc::new(a);
        b.write_all(b"0123456789abcdefghij").unwrap();
        // Appending a receive after a 5-byte head.
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"head:");
        let (res, slice) = run_op(p, front, op::Recv::new(a.clone(), buf.slice(5..)));
        let n = res.unwrap();
        let buf = slice.into_inner();
        assert_eq!((n, buf.len()), (20, 25), "{front:?}");
        assert_eq!(&buf[..], b"head:0123456789abcdefghij");
        // A receive capped by the slice's end leaves the rest for the next one.
        b.write_all(b"XYZW").unwrap();
        let (res, slice) = run_op(p, front, op::Recv::new(a.clone(), buf.slice(5..7)));
        assert_eq!(res.unwrap(), 2, "{front:?}");
        let buf = slice.into_inner();
        assert_eq!(&buf[..], b"head:XY23456789abcdefghij");
        let (res, buf) = run_op(p, front, op::Recv::new(a.clone(), Vec::with_capacity(8)));
        assert_eq!(res.unwrap(), 2);
        assert_eq!(&buf[..], b"ZW");
    }
}
