//! `proactor echo` (being built).

use std::process::ExitCode;

/// Arguments of `proactor echo`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("proactor echo: not built yet");
    ExitCode::from(2)
}
