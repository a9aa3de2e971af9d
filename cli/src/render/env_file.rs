//! `.credentials/<tenant>[_<user>].env`: NATS_URL, NATS_USER, NATS_PASSWORD (mode 0600).

use std::fs;
use std::io;
use std::path::Path;

use anyhow::Context as _;

use crate::render::{fill, CREDENTIALS_TEMPLATE};
use crate::settings::parse_env;

/// What a credentials file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `nats://user:password@host:port`
    pub url: String,
    /// The user name.
    pub user: String,
    /// The plaintext password.
    pub password: String,
}

/// Render one credentials file; `url` is the user's client URL (a comma-separated list of
/// `nats://user:password@host:port`, one per node, for a cluster).
pub fn render(
    tenant: &str,
    account: &str,
    user: &str,
    password: &str,
    url: &str,
    shown_path: &str,
) -> String {
    fill(
        CREDENTIALS_TEMPLATE,
        &[
            ("tenant", tenant),
            ("account", account),
            ("user", user),
            ("password", password),
            ("url", url),
            ("path", shown_path),
        ],
    )
}

/// The client URL of `user` for servers at `bases` (`nats://host:port` each), credentials
/// in every entry so any of them can be used alone.
pub fn user_url(bases: &[String], user: &str, password: &str) -> String {
    bases
        .iter()
        .map(|base| {
            let rest = base.strip_prefix("nats://").unwrap_or(base);
            format!("nats://{user}:{password}@{rest}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Read a credentials file; `None` when it does not exist or lacks a field.
pub fn read(path: &Path) -> anyhow::Result<Option<Credentials>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    };
    let mut vars = parse_env(&text);
    Ok(
        match (
            vars.remove("NATS_URL"),
            vars.remove("NATS_USER"),
            vars.remove("NATS_PASSWORD"),
        ) {
            (Some(url), Some(user), Some(password)) => Some(Credentials {
                url,
                user,
                password,
            }),
            _ => None,
        },
    )
}
