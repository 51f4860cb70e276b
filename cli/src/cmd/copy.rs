//! `proactor copy` (being built).

use std::process::ExitCode;

/// Arguments of `proactor copy`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("proactor copy: not built yet");
    ExitCode::from(2)
}
