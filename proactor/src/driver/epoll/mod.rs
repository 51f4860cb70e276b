//! The epoll driver: an emulated Proactor. (Placeholder until the epoll driver lands: it reports
//! itself as unavailable, so `auto` keeps io_uring.)

use super::{Completion, Driver, DriverKind, Notifier, OpPtr, Token};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// The epoll emulation.
pub(crate) struct EpollDriver {
    _private: (),
}

impl EpollDriver {
    pub(crate) fn new() -> io::Result<Self> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "the epoll driver is not built yet"))
    }
}

impl Driver for EpollDriver {
    unsafe fn push(&mut self, _token: Token, _op: OpPtr, _deadline: Option<Duration>) {
        unreachable!("EpollDriver cannot be constructed")
    }
    fn cancel(&mut self, _token: Token) {}
    fn wait(
        &mut self,
        _block: bool,
        _timeout: Option<Duration>,
        _out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        Ok(())
    }
    fn notifier(&self) -> Arc<dyn Notifier> {
        unreachable!("EpollDriver cannot be constructed")
    }
    fn kind(&self) -> DriverKind {
        DriverKind::Epoll
    }
}
