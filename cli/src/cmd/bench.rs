//! `proactor bench` (being built).

use std::process::ExitCode;

/// Arguments of `proactor bench`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("proactor bench: not built yet");
    ExitCode::from(2)
}
