//! `OpCode` is sealed: its driver half (where the kernel is told which memory to use) is
//! private to the crate, so safe code outside it cannot implement an operation. (It writes a
//! `CustomOp` instead, which takes `unsafe`: see `custom_op_needs_unsafe.rs`.)
struct MyOp;

impl proactor::op::OpCode for MyOp {
    type Output = ();
    const NAME: &'static str = "my_op";
}

fn main() {}
