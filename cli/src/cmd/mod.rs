//! One module per subcommand.

pub mod bench;
pub mod chat;
pub mod copy;
pub mod echo;
pub mod http;
pub mod info;
pub mod proxy;
