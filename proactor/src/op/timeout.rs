//! A timer as an operation: the kernel completes it when the time has passed.

use super::sealed::Hooks;
use super::{BlockingCall, Emulation, OpCode};
use io_uring::{opcode, squeue, types};
use std::io;
use std::time::Duration;

/// Completes with `Ok(())` after `duration` (or `ECANCELED` if cancelled first).
pub struct Timeout {
    duration: Duration,
    spec: types::Timespec,
}

impl Timeout {
    /// A relative timer.
    pub fn new(duration: Duration) -> Self {
        let spec = types::Timespec::new().sec(duration.as_secs()).nsec(duration.subsec_nanos());
        Timeout { duration, spec }
    }
}

impl OpCode for Timeout {
    type Output = io::Result<()>;
    const NAME: &'static str = "timeout";
}

impl Hooks for Timeout {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Timeout::new(&self.spec).build()
    }
    fn emulation(&self) -> Emulation {
        Emulation::Timer(self.duration)
    }
    fn perform(&mut self, _nowait: bool) -> io::Result<u32> {
        Ok(0)
    }
    fn blocking(&mut self) -> Option<BlockingCall> {
        // Performed at once on the loop's thread (`Emulation::Now`/`Timer`); never pooled.
        None
    }
    fn complete(self, res: io::Result<u32>) -> <Self as OpCode>::Output {
        match res {
            Err(e) if super::raw_os_error(&e) == Some(libc::ETIME) => Ok(()),
            other => other.map(drop),
        }
    }
}
