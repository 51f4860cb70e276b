//! What a direct descriptor (a registered file, `IOSQE_FIXED_FILE`) saves per operation, on a
//! raw io-uring ring (a measurement, not a test).
//!
//! Two loops, each timed in alternating slices by the thread's CPU clock (kernel time spent in
//! `io_uring_enter` included; preemption by other processes is not):
//! - `nop`: batches of 256 NOPs that look a file up (`IORING_NOP_FILE`) through the process's
//!   descriptor table or through the ring's registered table (`IORING_NOP_FIXED_FILE`), and
//!   plain NOPs: the look-up's own cost.
//! - `echo`: on 64 loopback TCP pairs, a 64-byte send linked to the receive of it, all 64 in
//!   one `io_uring_enter` — the echo server's operations — with normal then fixed descriptors.
//!
//! `cargo run --release -p proactor --example fixed_files [-- SLICES]` (pin it: `taskset -c 1`).
//!
//! On 6.18 (this VM, 2026-12-03, loaded, 25 slices, two runs): NOP 74-77 ns, NOP with a file
//! looked up in the descriptor table 107-113 ns, through the registered table 81-86 ns — ~27 ns
//! saved per operation; the echo loop's send or receive 3,152-3,423 ns CPU either way (quartiles
//! ±10%, so the ~1% the look-up is cannot be seen). Hence `threads::serve` and the servers
//! keep normal descriptors (the reasons beyond the figure are next to its accept loop).

use io_uring::{opcode, squeue, types, IoUring};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

const NOP_BATCH: usize = 256;
const PAIRS: usize = 64;
const MSG: usize = 64;

/// `IORING_NOP_FILE` and `IORING_NOP_FIXED_FILE` (sqe->nop_flags; Linux 6.12+).
const NOP_FILE: u32 = 1 << 1;
const NOP_FIXED_FILE: u32 = 1 << 2;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    NopPlain,
    NopFd,
    NopFixed,
    EchoFd,
    EchoFixed,
}

/// A NOP whose `fd` and `nop_flags` are set in the raw entry (the crate's builder has no
/// setter for them).
fn nop_with_file(fd: i32, flags: u32) -> squeue::Entry {
    let entry = opcode::Nop::new().build();
    // SAFETY: `squeue::Entry` is `repr(C)` around the kernel's 64-byte `io_uring_sqe`; the bytes
    // written are its `fd` (offset 4) and its op-flags word (offset 28), plain integers.
    unsafe {
        let mut raw: [u8; 64] = std::mem::transmute(entry);
        raw[4..8].copy_from_slice(&fd.to_ne_bytes());
        raw[28..32].copy_from_slice(&flags.to_ne_bytes());
        std::mem::transmute::<[u8; 64], squeue::Entry>(raw)
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a local the call writes into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Pushes `entries`, submits them in one call and reaps every completion, checking each.
fn round(ring: &mut IoUring, entries: &[squeue::Entry], mut check: impl FnMut(u64, i32)) {
    // SAFETY: every entry's buffers (none, or the loop's `bufs`) outlive the round: it reaps
    // every completion before returning.
    unsafe { ring.submission().push_multiple(entries).expect("queue room") };
    ring.submit_and_wait(entries.len()).expect("io_uring_enter");
    let mut seen = 0;
    while seen < entries.len() {
        for cqe in ring.completion() {
            check(cqe.user_data(), cqe.result());
            seen += 1;
        }
        if seen < entries.len() {
            ring.submit_and_wait(1).expect("io_uring_enter");
        }
    }
}

fn main() {
    let slices: usize = std::env::args().nth(1).map(|s| s.parse().expect("SLICES")).unwrap_or(15);
    let mut ring = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .build(1024)
        .expect("io_uring");
    // The loopback pairs, registered as files 0..2*PAIRS (a side, then b side).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut pairs = Vec::new();
    for _ in 0..PAIRS {
        let a = TcpStream::connect(addr).unwrap();
        let (b, _) = listener.accept().unwrap();
        a.set_nodelay(true).unwrap();
        b.set_nodelay(true).unwrap();
        pairs.push((a, b));
    }
    let fds: Vec<i32> = pairs
        .iter()
        .map(|p| p.0.as_raw_fd())
        .chain(pairs.iter().map(|p| p.1.as_raw_fd()))
        .collect();
    ring.submitter().register_files(&fds).expect("register the files");
    let out = [0x5au8; MSG];
    let mut bufs = vec![[0u8; MSG]; PAIRS];

    let mut run = |mode: Mode, ring: &mut IoUring| -> usize {
        match mode {
            Mode::NopPlain | Mode::NopFd | Mode::NopFixed => {
                let e = match mode {
                    Mode::NopPlain => opcode::Nop::new().build(),
                    Mode::NopFd => nop_with_file(fds[0], NOP_FILE),
                    _ => nop_with_file(0, NOP_FILE | NOP_FIXED_FILE),
                };
                let batch = vec![e; NOP_BATCH];
                round(ring, &batch, |_, res| assert_eq!(res, 0, "{mode:?}: NOP failed"));
                NOP_BATCH
            }
            Mode::EchoFd | Mode::EchoFixed => {
                let mut entries = Vec::with_capacity(2 * PAIRS);
                for (i, buf) in bufs.iter_mut().enumerate() {
                    let (send, recv) = if mode == Mode::EchoFd {
                        (
                            opcode::Send::new(types::Fd(fds[i]), out.as_ptr(), MSG as u32).build(),
                            opcode::Recv::new(
                                types::Fd(fds[PAIRS + i]),
                                buf.as_mut_ptr(),
                                MSG as u32,
                            )
                            .build(),
                        )
                    } else {
                        (
                            opcode::Send::new(types::Fixed(i as u32), out.as_ptr(), MSG as u32)
                                .build(),
                            opcode::Recv::new(
                                types::Fixed((PAIRS + i) as u32),
                                buf.as_mut_ptr(),
                                MSG as u32,
                            )
                            .build(),
                        )
                    };
                    entries.push(send.flags(squeue::Flags::IO_LINK).user_data(1));
                    entries.push(recv.user_data(2));
                }
                round(ring, &entries, |_, res| assert_eq!(res, MSG as i32, "{mode:?}: short"));
                2 * PAIRS
            }
        }
    };

    // Does the kernel look a NOP's file up? (Older kernels ignore the flags and succeed too.)
    let probe = nop_with_file(-1, NOP_FILE);
    let mut nop_file_works = false;
    round(&mut ring, &[probe], |_, res| nop_file_works = res == -libc::EBADF);
    let groups: Vec<Vec<Mode>> = if nop_file_works {
        vec![vec![Mode::NopPlain, Mode::NopFd, Mode::NopFixed], vec![Mode::EchoFd, Mode::EchoFixed]]
    } else {
        eprintln!("this kernel ignores IORING_NOP_FILE: measuring the echo loop only");
        vec![vec![Mode::EchoFd, Mode::EchoFixed]]
    };
    for modes in groups {
        let mut per_op: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        for _ in 0..slices {
            for (m, &mode) in modes.iter().enumerate() {
                let t0 = thread_cpu();
                let mut ops = 0;
                while thread_cpu() - t0 < Duration::from_millis(100) {
                    ops += run(mode, &mut ring);
                }
                per_op[m].push((thread_cpu() - t0).as_nanos() as f64 / ops as f64);
            }
        }
        for (m, mode) in modes.iter().enumerate() {
            let v = &mut per_op[m];
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{mode:?}: median {:.1} ns CPU per operation (quartiles {:.1}..{:.1}, {slices} slices)",
                v[v.len() / 2],
                v[v.len() / 4],
                v[3 * v.len() / 4]
            );
        }
    }
}
