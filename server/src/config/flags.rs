//! nats-server style command-line flags (`-p 4222`, `--port=4222`, `-DV`, `-sd=DIR`).
//! CONTRACT: `parse_args(args: &[String]) -> Result<Command, FlagError>`; `Command::Run(FlagOptions)`
//! where `FlagOptions::apply(&self, &mut Options)` overrides file settings.
//! (Placeholder until the config work lands.)

use std::path::PathBuf;

use super::Options;

#[derive(Debug, Clone, Default)]
pub struct FlagOptions {
    pub config_file: Option<PathBuf>,
    pub port: Option<i32>,
    pub host: Option<String>,
    pub http_port: Option<i32>,
}

impl FlagOptions {
    pub fn apply(&self, opts: &mut Options) {
        if let Some(p) = self.port {
            opts.port = p;
        }
        if let Some(h) = &self.host {
            opts.host = h.clone();
        }
        if let Some(p) = self.http_port {
            opts.http_port = Some(p);
        }
    }
}

#[derive(Debug)]
pub enum Command {
    Run(FlagOptions),
    Test(FlagOptions),
    Signal { command: String, target: Option<String> },
    Version,
    Help,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(pub String);

pub fn parse_args(args: &[String]) -> Result<Command, FlagError> {
    let mut f = FlagOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "-p" => f.port = v.parse().ok(),
            "-a" => f.host = Some(v),
            "-m" => f.http_port = v.parse().ok(),
            _ => return Err(FlagError(a.clone())),
        }
    }
    Ok(Command::Run(f))
}

pub fn usage() -> &'static str {
    "Usage: natsd [options]"
}
