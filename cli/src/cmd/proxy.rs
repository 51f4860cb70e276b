//! `proactor proxy` (being built).

use std::process::ExitCode;

/// Arguments of `proactor proxy`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("proactor proxy: not built yet");
    ExitCode::from(2)
}
