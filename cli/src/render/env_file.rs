//! `.credentials/<tenant>[_<user>].env`: NATS_URL, NATS_USER, NATS_PASSWORD (mode 0600).

use std::fs;
use std::io;
use std::path::Path;

use anyhow::Context as _;

use crate::render::{fill, CREDENTIALS_TEMPLATE};
use crate::settings::{parse_env, Settings};

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

/// Render one credentials file.
pub fn render(
    tenant: &str,
    account: &str,
    user: &str,
    password: &str,
    settings: &Settings,
    shown_path: &str,
) -> String {
    fill(
        CREDENTIALS_TEMPLATE,
        &[
            ("tenant", tenant),
            ("account", account),
            ("user", user),
            ("password", password),
            ("host", &settings.url_host),
            ("port", &settings.port.to_string()),
            ("path", shown_path),
        ],
    )
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
