//! The no-op: a round trip through the whole completion path, used to measure it.

use super::{Emulation, OpCode};
use io_uring::{opcode, squeue};
use std::io;

/// Does nothing; completes with `Ok(())`.
#[derive(Debug, Default)]
pub struct Nop;

impl OpCode for Nop {
    type Output = io::Result<()>;
    const NAME: &'static str = "nop";

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Nop::new().build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Now
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        Ok(0)
    }
    fn complete(self, res: io::Result<u32>) -> Self::Output {
        res.map(drop)
    }
}
