//! The read-only view of a tenant file, validated, with every error pointing at a line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::error::ManageError;
use crate::names::{Size, SubjectPattern, TenantName, UserName};

/// Publish/subscribe rules of one user. A side with no allow list is unrestricted, except
/// publishing with `allow_responses` and no publish list: that user may only publish replies
/// (as nats-server and natsd read it). Lists are never empty (the tenant file refuses `[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects the user may publish to.
    pub publish: Vec<SubjectPattern>,
    /// Subjects the user may subscribe to.
    pub subscribe: Vec<SubjectPattern>,
    /// Subjects the user may never publish to.
    pub deny_publish: Vec<SubjectPattern>,
    /// Subjects the user may never subscribe to.
    pub deny_subscribe: Vec<SubjectPattern>,
    /// May publish replies to requests it received (`allow_responses: true`).
    pub allow_responses: bool,
}

impl Permissions {
    /// No restriction at all within the tenant.
    pub fn is_full_access(&self) -> bool {
        self.publish.is_empty()
            && self.subscribe.is_empty()
            && self.deny_publish.is_empty()
            && self.deny_subscribe.is_empty()
            && !self.allow_responses
    }

    /// Whether publishing to the literal `subject` is allowed (not counting replies, which
    /// `allow_responses` permits to requests the user received).
    pub fn may_publish(&self, subject: &str) -> bool {
        if self.replies_only() {
            return false;
        }
        allowed(&self.publish, &self.deny_publish, subject)
    }

    /// `allow_responses` without a publish list: the server lets the user publish replies and
    /// nothing else.
    pub fn replies_only(&self) -> bool {
        self.allow_responses && self.publish.is_empty()
    }

    /// Whether subscribing to the literal `subject` is allowed.
    pub fn may_subscribe(&self, subject: &str) -> bool {
        allowed(&self.subscribe, &self.deny_subscribe, subject)
    }

    /// One-line summary for `list` (`publish: orders.*; subscribe: payments.*`).
    pub fn summary(&self) -> String {
        if self.is_full_access() {
            return "full access".into();
        }
        let join = |l: &[SubjectPattern]| {
            l.iter()
                .map(SubjectPattern::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if self.replies_only() {
            parts.push("publish: replies only".to_owned());
        }
        for (label, list) in [
            ("publish", &self.publish),
            ("subscribe", &self.subscribe),
            ("deny publish", &self.deny_publish),
            ("deny subscribe", &self.deny_subscribe),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}: {}", join(list)));
            }
        }
        if self.allow_responses && !self.replies_only() {
            parts.push("allow responses".into());
        }
        parts.join("; ")
    }
}

fn allowed(allow: &[SubjectPattern], deny: &[SubjectPattern], subject: &str) -> bool {
    (allow.is_empty() || allow.iter().any(|p| p.matches(subject)))
        && !deny.iter().any(|p| p.matches(subject))
}

/// How a user logs in (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthKind {
    /// A generated password; the server keeps its bcrypt hash.
    #[default]
    Password,
    /// An NKEY key pair: the server keeps only the public key, the client signs the server's
    /// nonce with the seed (no secret on the server at all).
    Nkey,
}

impl AuthKind {
    /// `password` / `nkey`, as in `--auth` and the JSON documents.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Password => "password",
            AuthKind::Nkey => "nkey",
        }
    }
}

impl std::fmt::Display for AuthKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the server checks a user's login against: never a secret it could give away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAuth {
    /// bcrypt hash of the password.
    Password {
        /// `$2b$11$...`
        hash: String,
    },
    /// The user's public NKEY (`U...`); the seed is only in its credentials files.
    Nkey {
        /// `U...`, 56 characters.
        public_key: String,
    },
}

impl UserAuth {
    /// Password or NKEY.
    pub fn kind(&self) -> AuthKind {
        match self {
            UserAuth::Password { .. } => AuthKind::Password,
            UserAuth::Nkey { .. } => AuthKind::Nkey,
        }
    }

    /// The public key of an NKEY user.
    pub fn public_key(&self) -> Option<&str> {
        match self {
            UserAuth::Nkey { public_key } => Some(public_key),
            UserAuth::Password { .. } => None,
        }
    }
}

/// A user of a tenant.
#[derive(Debug, Clone)]
pub struct User {
    /// The user name (global across tenants).
    pub name: UserName,
    /// Password hash or public NKEY.
    pub auth: UserAuth,
    /// What the user may do.
    pub permissions: Permissions,
}

impl User {
    /// Whether the user logs in without a password (NKEY).
    pub fn is_passwordless(&self) -> bool {
        self.auth.kind() == AuthKind::Nkey
    }
}

/// A tenant and its users, sorted by name.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The tenant name; the account is its upper-case form.
    pub name: TenantName,
    /// JetStream memory limit.
    pub memory: Size,
    /// JetStream file storage limit.
    pub storage: Size,
    /// Users sorted by name.
    pub users: Vec<User>,
}

impl Tenant {
    /// The user named `user`, if any.
    pub fn user(&self, user: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name.as_str() == user)
    }

    /// The user named `user`, or the error a command reports for a name it does not have.
    pub fn existing_user(&self, user: &str) -> Result<&User, ManageError> {
        self.user(user).ok_or_else(|| ManageError::UserNotFound {
            tenant: self.name.to_string(),
            user: user.to_owned(),
        })
    }
}

/// Every key a tenant file may have: anything else (a typo such as `publsh`) is an error, so
/// a permission can never be lost to a misspelling and leave the user unrestricted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    memory: Spanned<String>,
    storage: Spanned<String>,
    /// When `add-tenant` made it (informational).
    #[serde(default)]
    #[allow(dead_code, reason = "validated as a string, not used")]
    created: Option<String>,
    #[serde(default)]
    users: BTreeMap<String, Spanned<RawUser>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    password_hash: Option<Spanned<String>>,
    nkey: Option<Spanned<String>>,
    publish: Option<Spanned<Vec<Spanned<String>>>>,
    subscribe: Option<Spanned<Vec<Spanned<String>>>>,
    deny_publish: Option<Spanned<Vec<Spanned<String>>>>,
    deny_subscribe: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    allow_responses: bool,
}

/// Line and column (1-based) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// `text` read as TOML; a syntax or type error goes to `malformed` with its offset.
pub(crate) fn from_toml<T: serde::de::DeserializeOwned, E>(
    text: &str,
    malformed: impl Fn(usize, String) -> E,
) -> Result<T, E> {
    toml::from_str(text).map_err(|e| {
        malformed(
            e.span().map_or(0, |s| s.start),
            e.message().trim().to_owned(),
        )
    })
}

/// Parse and validate the text of `config/tenants/<name>.toml`.
pub fn parse_tenant(path: &Path, name: &TenantName, text: &str) -> Result<Tenant, ManageError> {
    let malformed = |offset: usize, message: String| {
        let (line, column) = line_col(text, offset);
        ManageError::Malformed {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    };
    let raw: RawTenant = from_toml(text, malformed)?;
    let size = |field: &Spanned<String>, key: &str| {
        Size::parse(field.get_ref())
            .map_err(|e| malformed(field.span().start, format!("{key}: {e}")))
    };
    let subjects = |list: &Option<Spanned<Vec<Spanned<String>>>>, key: &str| {
        let Some(list) = list else {
            return Ok(Vec::new());
        };
        if list.get_ref().is_empty() {
            return Err(malformed(
                list.span().start,
                format!(
                    "`{key} = []` is an empty list: remove the key to leave this unrestricted, \
                     or write `deny_{side} = [\">\"]` to allow nothing",
                    side = key.trim_start_matches("deny_")
                ),
            ));
        }
        list.get_ref()
            .iter()
            .map(|s| {
                SubjectPattern::new(s.get_ref())
                    .map_err(|e| malformed(s.span().start, format!("{key}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut users = Vec::with_capacity(raw.users.len());
    for (user_name, raw_user) in &raw.users {
        let at = raw_user.span().start;
        let name = UserName::new(user_name).map_err(|e| malformed(at, e))?;
        let raw_user = raw_user.get_ref();
        let tenant_hint = name_for_hint(path);
        let auth = match (&raw_user.password_hash, &raw_user.nkey) {
            (Some(hash), None) => {
                if !is_bcrypt(hash.get_ref()) {
                    return Err(malformed(
                        hash.span().start,
                        format!(
                            "password_hash of `{name}` is not a bcrypt hash; run ./manage rotate {tenant_hint} {name}"
                        ),
                    ));
                }
                UserAuth::Password {
                    hash: hash.get_ref().clone(),
                }
            }
            (None, Some(key)) => {
                if !crate::nkey::is_user_public_key(key.get_ref()) {
                    return Err(malformed(
                        key.span().start,
                        format!(
                            "nkey of `{name}` is not a user's public NKEY (56 characters from U); \
                             run ./manage rotate --auth nkey {tenant_hint} {name}"
                        ),
                    ));
                }
                UserAuth::Nkey {
                    public_key: key.get_ref().clone(),
                }
            }
            (Some(_), Some(key)) => {
                return Err(malformed(
                    key.span().start,
                    format!(
                        "`{name}` has both `password_hash` and `nkey`: a user logs in one way; \
                         remove one, or run ./manage rotate --auth <password|nkey> {tenant_hint} {name}"
                    ),
                ))
            }
            (None, None) => {
                return Err(malformed(
                    at,
                    format!(
                        "`{name}` has neither `password_hash` nor `nkey`; run ./manage rotate {tenant_hint} {name}"
                    ),
                ))
            }
        };
        users.push(User {
            name,
            auth,
            permissions: Permissions {
                publish: subjects(&raw_user.publish, "publish")?,
                subscribe: subjects(&raw_user.subscribe, "subscribe")?,
                deny_publish: subjects(&raw_user.deny_publish, "deny_publish")?,
                deny_subscribe: subjects(&raw_user.deny_subscribe, "deny_subscribe")?,
                allow_responses: raw_user.allow_responses,
            },
        });
    }
    Ok(Tenant {
        name: name.clone(),
        memory: size(&raw.memory, "memory")?,
        storage: size(&raw.storage, "storage")?,
        users,
    })
}

fn name_for_hint(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A hash manage may write into auth.conf: bcrypt as nats-server detects it (`$2a$`, `$2b$`,
/// `$2x$`, `$2y$` then a two-digit cost), with something after the prefix and nothing that
/// would need quoting inside the quoted value.
pub fn is_bcrypt(hash: &str) -> bool {
    hash.len() > 7
        && natsd_conf::bcrypt::is_bcrypt(hash)
        && hash
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    const HASH: &str = "$2b$11$rMWCjY8x.9EQ1Byq6YIIiO8R1Ex/idX7uJJChXxmHUCZe3OhteZpK";

    fn parse(text: &str) -> Result<Tenant, ManageError> {
        let name = TenantName::new("t").unwrap();
        parse_tenant(Path::new("t.toml"), &name, text)
    }

    #[test]
    fn reads_users_and_limits() {
        let text = format!(
            "memory = \"64MB\"\nstorage = \"5GB\"\n[users.t]\npassword_hash = \"{HASH}\"\n\
             [users.svc]\npassword_hash = \"{HASH}\"\npublish = [\"orders.*\"]\n"
        );
        let t = parse(&text).unwrap();
        assert_eq!(t.memory.bytes(), 64 << 20);
        assert_eq!(t.users.len(), 2);
        assert!(t.user("t").unwrap().permissions.is_full_access());
        let svc = &t.user("svc").unwrap().permissions;
        assert!(svc.may_publish("orders.x") && !svc.may_publish("other"));
        assert!(svc.may_subscribe("anything"));
    }

    #[test]
    fn errors_point_at_the_line() {
        let err = parse("memory = \"64MB\"\nstorage = \"5GB\"\n[users.t\n").unwrap_err();
        assert!(
            matches!(err, ManageError::Malformed { line: 3, .. }),
            "{err}"
        );
        let err = parse("memory = \"64MB\"\nstorage = \"5XB\"\n").unwrap_err();
        assert!(
            matches!(err, ManageError::Malformed { line: 2, .. }),
            "{err}"
        );
        let text = format!("memory = \"1MB\"\nstorage = \"1MB\"\n[users.t]\npassword_hash = \"{HASH}\"\npublish = [\"a..b\"]\n");
        let err = parse(&text).unwrap_err();
        assert!(
            matches!(err, ManageError::Malformed { line: 5, .. }),
            "{err}"
        );
    }

    #[test]
    fn typos_wrong_types_and_empty_lists_are_errors_at_their_line() {
        let head =
            format!("memory = \"1MB\"\nstorage = \"1MB\"\n[users.t]\npassword_hash = \"{HASH}\"\n");
        for (body, needle) in [
            ("publsh = [\"a\"]\n", "unknown field `publsh`"),
            ("subscibe = [\"a\"]\n", "unknown field `subscibe`"),
            ("publish = \"a\"\n", "invalid type"),
            ("allow_responses = \"yes\"\n", "invalid type"),
            ("publish = []\n", "`publish = []` is an empty list"),
            ("subscribe = []\n", "`subscribe = []` is an empty list"),
            (
                "deny_publish = []\n",
                "`deny_publish = []` is an empty list",
            ),
        ] {
            let err = parse(&format!("{head}{body}")).unwrap_err();
            let ManageError::Malformed { line, message, .. } = &err else {
                panic!("{err}")
            };
            assert_eq!(*line, 5, "{body}: {err}");
            assert!(message.contains(needle), "{body}: {message}");
        }
        let err = parse("memory = \"1MB\"\nstorage = \"1MB\"\nmemroy = \"2MB\"\n").unwrap_err();
        assert!(
            matches!(&err, ManageError::Malformed { line: 3, message, .. } if message.contains("unknown field `memroy`")),
            "{err}"
        );
    }

    #[test]
    fn allow_responses_alone_means_replies_only() {
        let p = Permissions {
            allow_responses: true,
            ..Permissions::default()
        };
        assert!(!p.may_publish("anything"));
        assert!(p.may_subscribe("anything"));
        assert_eq!(p.summary(), "publish: replies only");
        let p = Permissions {
            publish: vec![SubjectPattern::new("a.*").unwrap()],
            allow_responses: true,
            ..Permissions::default()
        };
        assert!(p.may_publish("a.b") && !p.may_publish("b"));
        assert_eq!(p.summary(), "publish: a.*; allow responses");
    }

    #[test]
    fn a_user_has_a_hash_or_a_public_nkey() {
        let (key, seed) = crate::nkey::generate().unwrap();
        let head = "memory = \"1MB\"\nstorage = \"1MB\"\n[users.t]\n";
        let t = parse(&format!("{head}nkey = \"{key}\"\n")).unwrap();
        let user = t.user("t").unwrap();
        assert_eq!(user.auth.public_key(), Some(key.as_str()));
        assert!(user.is_passwordless());
        for (body, needle) in [
            (format!("nkey = \"{seed}\"\n"), "not a user's public NKEY"),
            (
                format!(
                    "nkey = \"{}\"\n",
                    nkeys::KeyPair::new_account().public_key()
                ),
                "not a user's public NKEY",
            ),
            (
                format!("nkey = \"{key}\"\npassword_hash = \"{HASH}\"\n"),
                "both `password_hash` and `nkey`",
            ),
            (
                "publish = [\"a\"]\n".to_owned(),
                "neither `password_hash` nor `nkey`",
            ),
        ] {
            let err = parse(&format!("{head}{body}")).unwrap_err();
            let ManageError::Malformed { message, .. } = &err else {
                panic!("{err}")
            };
            assert!(message.contains(needle), "{body}: {message}");
        }
    }

    #[test]
    fn bcrypt_detection() {
        assert!(is_bcrypt(HASH));
        assert!(!is_bcrypt("plain"));
        assert!(!is_bcrypt("$2c$11$abc"));
    }
}
