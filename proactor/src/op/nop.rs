//! The no-op: a round trip through the whole completion path, used to measure it.

use super::sealed::Hooks;
use super::{BlockingCall, Emulation, OpCode};
use io_uring::{opcode, squeue};
use std::io;

/// Does nothing; completes with `Ok(())`.
#[derive(Debug, Default)]
pub struct Nop;

impl OpCode for Nop {
    type Output = io::Result<()>;
    const NAME: &'static str = "nop";
}

impl Hooks for Nop {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Nop::new().build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Now
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        Ok(0)
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // Performed at once on the loop's thread (`Emulation::Now`/`Timer`); never pooled.
        None
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        res.map(drop)
    }
}
