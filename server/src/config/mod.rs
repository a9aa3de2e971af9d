//! Configuration: the nats.conf format, typed options, command-line flags.
//!
//! CONTRACT (implemented by the config work):
//! - `load_file(path) -> Result<Loaded, ConfigErrors>` parses a nats.conf (with includes and
//!   variables) into [`Options`] plus warnings, and the file's `sha256:<hex>` digest.
//! - `flags::parse_args(args) -> Result<flags::Command, flags::FlagError>` reads nats-server style
//!   command lines; flags override the file (and are re-applied on every reload).
//!
//! # natsd extensions and limits
//! - `metrics_port: 7777` (top level, natsd only): a separate HTTP port serving only `/metrics`
//!   (Prometheus). nats-server itself rejects this key.
//! - Options nats-server knows but natsd does not implement (`cluster`, `gateway`, `leafnodes`,
//!   `mqtt`, `websocket`, nkeys, ...) are accepted and reported in [`Loaded::notices`], so a file
//!   valid for nats-server stays valid here.
//!
//! # Layout
//! - `parser`: lexer + parser (text → spanned tree; includes and variables resolved).
//! - `load`: tree → [`Options`], with every error and warning collected in one pass.
//! - `duration`: Go duration strings.

pub mod options;
pub use options::*;

pub mod flags;

pub(crate) mod duration;
mod load;
mod parser;

#[cfg(test)]
mod tests;

use std::path::Path;

use sha2::{Digest, Sha256};

/// A parsed and validated configuration file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub options: Options,
    /// Warnings the real server prints at start (and treats as errors under `-t`), such as a
    /// bare-integer `ping_interval`. Each is `file:line:col: message`.
    pub warnings: Vec<String>,
    /// Log-only notices that never fail `-t` (nats-server passes `-t` with them too):
    /// plaintext passwords, `max_payload` over 8 MB, options natsd accepts but ignores.
    pub notices: Vec<String>,
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
///
/// Parse errors (syntax, variables, includes) stop at the first one, as in nats-server; option
/// errors are all collected. `options.config_file` is set to `path`.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|e| ConfigErrors {
        errors: vec![format!("open {}: {}", path.display(), io_reason(&e))],
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let dir = path.parent().map(Path::to_path_buf);
    let tree = parser::parse_text(&text, &path.display().to_string(), dir, 0)
        .map_err(|e| ConfigErrors { errors: vec![e] })?;
    let outcome = load::build(&tree);
    if !outcome.errors.is_empty() {
        return Err(ConfigErrors {
            errors: outcome.errors,
        });
    }
    let mut options = outcome.options;
    options.config_file = Some(path.to_path_buf());
    Ok(Loaded {
        options,
        warnings: outcome.warnings,
        notices: outcome.notices,
        digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
    })
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}
