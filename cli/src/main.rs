//! `manage`: tenant CLI for natsd.
use clap::Parser as _;

fn main() -> std::process::ExitCode {
    manage::run(manage::cli::Cli::parse()).into()
}
