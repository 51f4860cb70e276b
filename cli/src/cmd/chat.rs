//! `proactor chat` (being built).

use std::process::ExitCode;

/// Arguments of `proactor chat`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("proactor chat: not built yet");
    ExitCode::from(2)
}
