//! A buffer handed to an operation belongs to it until the result hands it back: using it
//! meanwhile, while the kernel may write into it, does not compile.
use proactor::op;

fn main() {
    let buf = vec![0u8; 64];
    let recv = proactor::submit(op::Recv::new(0, buf));
    println!("{}", buf.len());
    drop(recv);
}
