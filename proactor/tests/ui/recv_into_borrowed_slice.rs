//! A receive needs an owned buffer: a `&mut` borrow into a `Vec` cannot be handed to the
//! kernel, which may still write into it after the borrow has ended.
use proactor::op;

fn main() {
    let mut v = vec![0u8; 64];
    let _recv = op::Recv::new(0, &mut v[..]);
}
