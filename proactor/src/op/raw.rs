//! Raw pointers into an operation's own memory, captured on the run loop's thread for a
//! [`BlockingCall`](super::BlockingCall) that runs on a blocking-pool thread.
//!
//! A pool thread stands in for the kernel: it reads and writes the bytes an operation owns, at
//! the addresses the operation gave at submission, and nothing else. These wrappers carry such
//! an address across the thread boundary; creating one is `unsafe` because its `Send` rests on
//! that promise.

/// An address inside memory an in-flight operation owns.
#[derive(Clone, Copy)]
pub(crate) struct OwnedPtr<T>(*mut T);

// SAFETY: an `OwnedPtr` is only made (`OwnedPtr::new`'s contract) for memory that an in-flight
// operation owns and that the run loop keeps at a fixed address, untouched, until the
// operation's completion is processed — the `Driver::push` contract. The pool thread's accesses
// end before it posts the completion, and posting it (under a mutex) orders them before the run
// loop touches the memory again. No value of `T` is shared: only its bytes are read or written,
// as the kernel would.
unsafe impl<T> Send for OwnedPtr<T> {}

impl<T> OwnedPtr<T> {
    /// # Safety
    /// `ptr` must point into memory owned by an operation that is being submitted, valid (for
    /// the accesses the call makes) until that operation's completion has been processed.
    pub(crate) unsafe fn new(ptr: *mut T) -> Self {
        OwnedPtr(ptr)
    }

    /// # Safety
    /// As for `new`, with `ptr` only read through.
    pub(crate) unsafe fn new_const(ptr: *const T) -> Self {
        OwnedPtr(ptr as *mut T)
    }

    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// A system call captured from an operation's raw values (fd numbers, [`OwnedPtr`]s): the
/// same code serves the epoll emulation's try on the loop's thread (`run(true)`) and the
/// blocking pool (`on_pool`).
pub(crate) trait Syscall: Copy + Send + 'static {
    /// Makes the call; with `nowait` it must not block.
    fn run(self, nowait: bool) -> std::io::Result<u32>;

    /// The call as the blocking pool runs it.
    fn on_pool(self) -> super::BlockingCall {
        super::BlockingCall::new(move || self.run(false))
    }
}
