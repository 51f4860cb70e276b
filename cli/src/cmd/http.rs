//! `proactor http` (being built).

use std::process::ExitCode;

/// Arguments of `proactor http`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("proactor http: not built yet");
    ExitCode::from(2)
}
