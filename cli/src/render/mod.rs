//! Generated files: `config/auth.conf`, `.credentials/*.env` (and NKEY seed files `*.nk`), and the initial `config/nats.conf`.
//! Templates live in the repository's `templates/` and are compiled in.

pub mod auth_conf;
pub mod env_file;

/// `templates/nats.conf`: the server configuration `init` writes when none exists.
pub const NATS_CONF_TEMPLATE: &str = include_str!("../../../templates/nats.conf");
/// `templates/auth.conf.header`: the "generated, do not edit" banner.
pub const AUTH_CONF_HEADER: &str = include_str!("../../../templates/auth.conf.header");
/// `templates/credentials.env`: one user's credentials.
pub const CREDENTIALS_TEMPLATE: &str = include_str!("../../../templates/credentials.env");
/// `templates/credentials-nkey.env`: one NKEY user's credentials.
pub const NKEY_CREDENTIALS_TEMPLATE: &str = include_str!("../../../templates/credentials-nkey.env");

/// Replace each `{{key}}` in `template`.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(template.to_owned(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}
