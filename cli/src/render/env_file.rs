//! `.credentials/<tenant>[_<user>].env` (mode 0600): NATS_URL, NATS_USER and either
//! NATS_PASSWORD, or for an NKEY user NATS_NKEY (the seed file), NATS_NKEY_PUBLIC and
//! NATS_NKEY_SEED. An NKEY user also has `<tenant>[_<user>].nk` beside it: the seed alone, the
//! file the official clients read (nats CLI `--nkey`, nats.py `nkeys_seed=`, nats.go
//! `NkeyOptionFromSeed`).

use std::fs;
use std::io;
use std::path::Path;

use anyhow::Context as _;

use crate::client::Login;
use crate::render::{fill, CREDENTIALS_TEMPLATE, NKEY_CREDENTIALS_TEMPLATE};
use crate::settings::parse_env;
use crate::tenant::AuthKind;

/// The secret a user logs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// The plaintext password.
    Password(String),
    /// An NKEY user's seed (`SU...`).
    Nkey(String),
}

impl Secret {
    /// Password or NKEY.
    pub fn kind(&self) -> AuthKind {
        match self {
            Secret::Password(_) => AuthKind::Password,
            Secret::Nkey(_) => AuthKind::Nkey,
        }
    }

    /// The password, for a password user.
    pub fn password(&self) -> Option<&str> {
        match self {
            Secret::Password(password) => Some(password),
            Secret::Nkey(_) => None,
        }
    }

    /// The seed, for an NKEY user.
    pub fn seed(&self) -> Option<&str> {
        match self {
            Secret::Nkey(seed) => Some(seed),
            Secret::Password(_) => None,
        }
    }
}

/// What a credentials file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `nats://user:password@host:port`, or `nats://host:port` for an NKEY user.
    pub url: String,
    /// The user name.
    pub user: String,
    /// Password or seed.
    pub secret: Secret,
}

impl Credentials {
    /// How a client logs in with these credentials.
    pub fn login(&self) -> Login<'_> {
        match &self.secret {
            Secret::Password(password) => Login::Password {
                user: &self.user,
                password,
            },
            Secret::Nkey(seed) => Login::Nkey { seed },
        }
    }
}

/// Render one credentials file; `url` is the user's client URL (see [`user_url`]), `seed_file`
/// the absolute path of an NKEY user's seed file.
pub fn render(
    tenant: &str,
    account: &str,
    user: &str,
    secret: &Secret,
    url: &str,
    shown_path: &str,
    seed_file: &str,
) -> String {
    match secret {
        Secret::Password(password) => fill(
            CREDENTIALS_TEMPLATE,
            &[
                ("tenant", tenant),
                ("account", account),
                ("user", user),
                ("password", password),
                ("url", url),
                ("path", shown_path),
            ],
        ),
        Secret::Nkey(seed) => {
            // The seed was generated or read back by manage: its public key is known to exist.
            let public_key = crate::nkey::public_key_of(seed).unwrap_or_default();
            fill(
                NKEY_CREDENTIALS_TEMPLATE,
                &[
                    ("tenant", tenant),
                    ("account", account),
                    ("user", user),
                    ("seed_file", seed_file),
                    ("public_key", &public_key),
                    ("seed", seed),
                    ("url", url),
                    ("path", shown_path),
                ],
            )
        }
    }
}

/// The seed file of an NKEY user: the seed and a newline, nothing else (nats.py reads the
/// whole file as the seed).
pub fn render_seed_file(seed: &str) -> String {
    format!("{}\n", seed.trim())
}

/// The client URL of `user` for servers at `bases` (`nats://host:port` each). A password is
/// written into every entry so any of them can be used alone; an NKEY user's URL has no
/// credentials (the seed signs, it is never sent).
pub fn user_url(bases: &[String], user: &str, secret: &Secret) -> String {
    bases
        .iter()
        .map(|base| match secret {
            Secret::Password(password) => {
                let rest = base.strip_prefix("nats://").unwrap_or(base);
                format!("nats://{user}:{password}@{rest}")
            }
            Secret::Nkey(_) => base.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Read a credentials file; `None` when it does not exist or lacks a field (a file with both a
/// password and a seed lacks a clear one).
pub fn read(path: &Path) -> anyhow::Result<Option<Credentials>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    };
    let mut vars = parse_env(&text);
    let secret = match (vars.remove("NATS_PASSWORD"), vars.remove("NATS_NKEY_SEED")) {
        (Some(password), None) => Secret::Password(password),
        (None, Some(seed)) => Secret::Nkey(seed),
        _ => return Ok(None),
    };
    Ok(match (vars.remove("NATS_URL"), vars.remove("NATS_USER")) {
        (Some(url), Some(user)) => Some(Credentials { url, user, secret }),
        _ => None,
    })
}

/// The seed in an NKEY user's seed file; `None` when the file does not exist.
pub fn read_seed_file(path: &Path) -> anyhow::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn nkey_credentials_round_trip_without_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let (public_key, seed) = crate::nkey::generate().unwrap();
        let secret = Secret::Nkey(seed.clone());
        let url = user_url(&["nats://127.0.0.1:4222".into()], "svc", &secret);
        assert_eq!(url, "nats://127.0.0.1:4222");
        let text = render(
            "shop",
            "SHOP",
            "svc",
            &secret,
            &url,
            ".credentials/shop_svc.env",
            "/srv/.credentials/shop_svc.nk",
        );
        assert!(
            text.contains(&format!("NATS_NKEY_PUBLIC={public_key}\n")),
            "{text}"
        );
        assert!(
            text.contains("NATS_NKEY=/srv/.credentials/shop_svc.nk\n"),
            "{text}"
        );
        assert!(!text.contains("NATS_PASSWORD"), "{text}");
        let path = dir.path().join("shop_svc.env");
        fs::write(&path, &text).unwrap();
        let read_back = read(&path).unwrap().unwrap();
        assert_eq!(read_back.secret, secret);
        assert_eq!(read_back.user, "svc");
        let seed_path = dir.path().join("shop_svc.nk");
        fs::write(&seed_path, render_seed_file(&seed)).unwrap();
        assert_eq!(read_seed_file(&seed_path).unwrap().unwrap(), seed);
        // Both secrets in one file: neither is trusted.
        fs::write(&path, format!("{text}NATS_PASSWORD=x\n")).unwrap();
        assert_eq!(read(&path).unwrap(), None);
    }

    #[test]
    fn password_urls_carry_the_password() {
        let secret = Secret::Password("pw".into());
        let bases = ["nats://a:1".to_owned(), "nats://b:2".to_owned()];
        assert_eq!(
            user_url(&bases, "u", &secret),
            "nats://u:pw@a:1,nats://u:pw@b:2"
        );
    }
}
