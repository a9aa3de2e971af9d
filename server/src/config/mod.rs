//! Configuration: the nats.conf format, typed options, command-line flags.
//!
//! CONTRACT (implemented by the config work):
//! - `load_file(path) -> Result<Loaded, ConfigErrors>` parses a nats.conf (with includes and
//!   variables) into [`Options`] plus warnings, and the file's `sha256:<hex>` digest.
//! - `flags::parse_args(args) -> Result<flags::Command, flags::FlagError>` reads nats-server style
//!   command lines; flags override the file (and are re-applied on every reload).

pub mod options;
pub use options::*;

pub mod flags;

use std::path::Path;

/// A parsed and validated configuration file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub options: Options,
    /// Warnings the real server prints at start (and treats as errors under `-t`).
    pub warnings: Vec<String>,
    /// `sha256:<hex>` of the main file, as `/varz` `config_digest` shows it.
    pub digest: String,
}

/// Every error found in one pass, each rendered as `file:line:col: message`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .errors.join("\n"))]
pub struct ConfigErrors {
    pub errors: Vec<String>,
}

/// Parse and validate a nats.conf file (includes resolved relative to the including file).
pub fn load_file(_path: &Path) -> Result<Loaded, ConfigErrors> {
    todo!("config parser")
}
