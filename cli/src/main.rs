//! `manage`: tenant CLI for natsd.
use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match manage::cli::Cli::try_parse_from(&args) {
        Ok(cli) => manage::run(cli).into(),
        Err(error) => manage::usage_error(&error, &args).into(),
    }
}
