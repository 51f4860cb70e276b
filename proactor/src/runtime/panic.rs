//! What happens when a completion handler or a task panics: by default the panic is caught,
//! reported (through `tracing` and to a hook the user may set), and the loop carries on.

use std::any::Any;
use std::rc::Rc;

/// A caught panic, as given to the hook.
#[derive(Debug, Clone)]
pub struct PanicReport {
    /// `"completion handler"` or `"task"`.
    pub origin: &'static str,
    /// Which operation or task, when known.
    pub context: String,
    /// The panic message, when it was a string.
    pub message: String,
}

/// A user hook called for every caught panic.
pub type PanicHook = Rc<dyn Fn(&PanicReport)>;

pub(crate) struct PanicPolicy {
    pub(crate) abort: bool,
    pub(crate) hook: Option<PanicHook>,
}

impl PanicPolicy {
    pub(crate) fn report(&self, origin: &'static str, context: &str, payload: Box<dyn Any + Send>) {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".to_string());
        tracing::error!(origin, context, "caught a panic: {message}");
        if self.abort {
            eprintln!("proactor: a {origin} panicked ({message}); aborting as configured");
            std::process::abort();
        }
        if let Some(hook) = &self.hook {
            let report = PanicReport { origin, context: context.to_string(), message };
            // A panicking hook must not take the loop down either.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&report)));
        }
    }
}
