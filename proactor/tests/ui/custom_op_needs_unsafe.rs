//! Writing an operation outside the crate means implementing `CustomOp`, an `unsafe trait`:
//! its author promises that every pointer given to the kernel stays valid until completion.
use proactor::op::{uring, CustomOp, Emulation};
use std::io;

struct MyNop;

impl CustomOp for MyNop {
    type Output = ();
    const NAME: &'static str = "my_nop";
    fn uring_entry(&mut self) -> uring::squeue::Entry {
        uring::opcode::Nop::new().build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Now
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        Ok(0)
    }
    fn complete(self, _res: io::Result<u32>) {}
}

fn main() {}
