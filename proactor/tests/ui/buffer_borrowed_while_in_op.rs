//! A borrow into a buffer cannot outlive the hand-over: the operation takes the buffer itself,
//! so a slice kept from before would point into memory the kernel now writes.
use proactor::op;

fn main() {
    let buf = vec![0u8; 64];
    let head = &buf[..8];
    let recv = proactor::submit(op::Recv::new(0, buf));
    println!("{head:?}");
    drop(recv);
}
