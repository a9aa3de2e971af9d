//! Configuration: the nats.conf format, typed options, command-line flags.
//!
//! CONTRACT (implemented by the config work):
//! - `load_file(path) -> Result<Loaded, ConfigErrors>` parses a nats.conf (with includes and
//!   variables) into [`Options`] plus warnings, and the configuration's digest as nats-server
//!   computes it (`sha256:<hex>`).
//! - `flags::parse_args(args) -> Result<flags::Command, flags::FlagError>` reads nats-server style
//!   command lines; flags override the file (and are re-applied on every reload).
//!
//! # natsd extensions and limits
//! - `metrics_port: 7777` (top level, natsd only): a separate HTTP port serving only `/metrics`
//!   (Prometheus). nats-server itself rejects this key.
//! - Options nats-server knows but natsd does not implement fall in two sets (tables in
//!   `load.rs`, listed in docs/differences.md): those that bear on security or on what is
//!   stored (auth of any kind, TLS options, limits, JetStream options)
//!   **refuse** the configuration, so a start fails with `[FTL]` and a reload is refused; the
//!   ones that are harmless on a single node (clustering, logging niceties) are ignored with a
//!   warning in [`Loaded::notices`].
//!
//! # Layout
//! - `load`: tree → [`Options`], with every error and warning collected in one pass.
//! - `options`, `flags`: the typed options and the command line.
//! - `operator`: operator (JWT) mode: `operator`, `resolver: MEMORY`, `resolver_preload`.
//! - The value rules `manage` needs too live in the `natsd-conf` crate: the lexer and parser
//!   (text → spanned tree; includes and variables resolved), nats-server's `config_digest` of
//!   the tree, sizes (`1G`, `64MB`), Go durations.

pub mod options;
pub use options::*;

pub mod flags;

mod imports;
pub(crate) use imports::authorizing_export;
pub(crate) mod load;
mod operator;
mod operator_imports;
pub(crate) use operator_imports::problems as account_claim_problems;

pub use natsd_conf::bcrypt::is_bcrypt;
pub use natsd_conf::size::{parse_size, SizeError};
pub(crate) use natsd_conf::{parser, size};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod unsupported_tests;

use std::path::Path;

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
    /// `sha256:<hex>` of the parsed configuration, computed as nats-server computes the
    /// `config_digest` of `/varz` (see `digest.rs`).
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
    load_file_with_env(path, &|name| std::env::var(name).ok())
}

/// [`load_file`] with `$NAME` references that the file does not define looked up in `env`
/// instead of the process environment (`manage` passes the deployment's settings, which are
/// what the server it starts sees).
pub fn load_file_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let tree = natsd_conf::read_file(path, env).map_err(|e| ConfigErrors { errors: vec![e] })?;
    let digest = natsd_conf::digest(&tree);
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
        digest,
    })
}

/// An option nats-server accepts that natsd does not implement, and what natsd does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedOption {
    /// Where it appears: `top level`, `authorization`, `user`, `account`, `account jetstream`,
    /// `account limits`, `jetstream` or `tls`.
    pub context: &'static str,
    /// The option's name (one line per alias).
    pub key: &'static str,
    /// What it is for, as the messages say.
    pub what: &'static str,
    /// Refused (the configuration does not load) rather than ignored with a warning.
    pub refused: bool,
}

/// Every option natsd refuses or ignores (docs/differences.md lists the same).
pub fn unsupported_options() -> impl Iterator<Item = UnsupportedOption> {
    load::UNSUPPORTED.iter().flat_map(|(context, table)| {
        table.iter().flat_map(move |u| {
            u.keys.iter().map(move |key| UnsupportedOption {
                context,
                key,
                what: u.what,
                refused: u.treatment == load::Treatment::Refused,
            })
        })
    })
}
