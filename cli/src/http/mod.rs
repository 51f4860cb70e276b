//! The HTTP/1.1 static file server behind `proactor http`: request parsing, path safety, response
//! building and the per-connection loop on the proactor, one concern per file.

// Called by `proactor bench http` (cli/src/cmd/bench.rs), wired in by the bench's owner.
#[allow(dead_code)]
pub mod bench;
pub mod cache;
pub mod conditional;
pub mod conn;
pub mod date;
pub mod listing;
pub mod log;
pub mod path;
pub mod range;
pub mod request;
pub mod response;
pub mod serve;
pub mod timer;
