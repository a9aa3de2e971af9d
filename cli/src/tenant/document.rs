//! `TenantDoc`: edits a tenant file through `toml_edit`, so comments, ordering and hand
//! edits survive every change `manage` makes.

use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::error::ManageError;
use crate::names::{Size, SubjectPattern, TenantName, UserName};
use crate::tenant::model::line_col;
use crate::tenant::{Permissions, UserAuth};

/// What an edit did, so the printer can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Something new was added.
    Added,
    /// An existing value changed.
    Updated,
    /// Something was removed.
    Removed,
    /// Nothing to do.
    Unchanged,
}

/// An editable tenant file.
#[derive(Debug, Clone)]
pub struct TenantDoc {
    doc: DocumentMut,
}

impl TenantDoc {
    /// A fresh tenant file with explanatory comments.
    pub fn new(tenant: &TenantName, memory: Size, storage: Size, created: &str) -> Self {
        let text = format!(
            "# Tenant `{tenant}`: NATS account {account}, managed by ./manage.\n\
             # This file is the source of truth for config/auth.conf. Hand edits and comments\n\
             # are kept; run ./manage reload after editing it.\n\
             \n\
             # JetStream limits of the account (binary units: KB, MB, GB, TB).\n\
             memory = \"{memory}\"\n\
             storage = \"{storage}\"\n\
             created = \"{created}\"\n",
            account = tenant.account(),
        );
        let mut doc: DocumentMut = text.parse().unwrap_or_default();
        let mut users = Table::new();
        users.set_implicit(true);
        doc.insert("users", Item::Table(users));
        Self { doc }
    }

    /// Parse an existing file's text; errors name the file and line.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManageError> {
        text.parse::<DocumentMut>()
            .map(|doc| Self { doc })
            .map_err(|e| {
                let (line, column) = line_col(text, e.span().map_or(0, |s| s.start));
                ManageError::Malformed {
                    path: path.to_owned(),
                    line,
                    column,
                    message: e.message().trim().to_owned(),
                }
            })
    }

    fn users_mut(&mut self, path: &Path) -> Result<&mut Table, ManageError> {
        let users = self.doc.entry("users").or_insert_with(|| {
            let mut table = Table::new();
            table.set_implicit(true);
            Item::Table(table)
        });
        users.as_table_mut().ok_or_else(|| ManageError::Malformed {
            path: path.to_owned(),
            line: 1,
            column: 1,
            message: "`users` must be a table ([users.<name>])".into(),
        })
    }

    /// Add a user with its password hash or public NKEY, and permissions.
    pub fn add_user(
        &mut self,
        path: &Path,
        user: &UserName,
        auth: &UserAuth,
        permissions: &Permissions,
    ) -> Result<Edit, ManageError> {
        let users = self.users_mut(path)?;
        if users.contains_key(user.as_str()) {
            return Ok(Edit::Unchanged);
        }
        let mut table = Table::new();
        let (key, value) = auth_entry(auth);
        table.insert(key, toml_edit::value(value));
        for (key, list) in [
            ("publish", &permissions.publish),
            ("subscribe", &permissions.subscribe),
            ("deny_publish", &permissions.deny_publish),
            ("deny_subscribe", &permissions.deny_subscribe),
        ] {
            if !list.is_empty() {
                let array: Array = list.iter().map(SubjectPattern::as_str).collect();
                table.insert(key, Item::Value(Value::Array(array)));
            }
        }
        if permissions.allow_responses {
            table.insert("allow_responses", toml_edit::value(true));
        }
        users.insert(user.as_str(), Item::Table(table));
        Ok(Edit::Added)
    }

    /// Remove a user; `Unchanged` when it was not there.
    pub fn remove_user(&mut self, path: &Path, user: &UserName) -> Result<Edit, ManageError> {
        let users = self.users_mut(path)?;
        Ok(match users.remove(user.as_str()) {
            Some(_) => Edit::Removed,
            None => Edit::Unchanged,
        })
    }

    /// Replace how a user logs in: a new password hash or public NKEY, the other one removed
    /// (a user has exactly one).
    pub fn set_auth(
        &mut self,
        path: &Path,
        user: &UserName,
        auth: &UserAuth,
    ) -> Result<Edit, ManageError> {
        let users = self.users_mut(path)?;
        let Some(table) = users
            .get_mut(user.as_str())
            .and_then(Item::as_table_like_mut)
        else {
            return Ok(Edit::Unchanged);
        };
        let (key, value) = auth_entry(auth);
        let other = if key == "nkey" {
            "password_hash"
        } else {
            "nkey"
        };
        table.remove(other);
        table.insert(key, toml_edit::value(value));
        Ok(Edit::Updated)
    }
}

/// The tenant file's key and value for a user's login.
fn auth_entry(auth: &UserAuth) -> (&'static str, &str) {
    match auth {
        UserAuth::Password { hash } => ("password_hash", hash),
        UserAuth::Nkey { public_key } => ("nkey", public_key),
    }
}

impl std::fmt::Display for TenantDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.doc)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::tenant::model::parse_tenant;

    const HASH: &str = "$2b$11$rMWCjY8x.9EQ1Byq6YIIiO8R1Ex/idX7uJJChXxmHUCZe3OhteZpK";

    #[test]
    fn edits_keep_comments_and_round_trip() {
        let path = Path::new("shop.toml");
        let tenant = TenantName::new("shop").unwrap();
        let mut doc = TenantDoc::new(
            &tenant,
            Size::parse("64MB").unwrap(),
            Size::parse("5GB").unwrap(),
            "now",
        );
        let hash = UserAuth::Password { hash: HASH.into() };
        doc.add_user(path, &tenant.admin_user(), &hash, &Permissions::default())
            .unwrap();
        let text = format!("{doc}\n# a hand-written note\n");
        let mut doc = TenantDoc::parse(path, &text).unwrap();
        let svc = UserName::new("order-service").unwrap();
        let perms = Permissions {
            publish: vec![SubjectPattern::new("orders.*").unwrap()],
            allow_responses: true,
            ..Permissions::default()
        };
        assert_eq!(
            doc.add_user(path, &svc, &hash, &perms).unwrap(),
            Edit::Added
        );
        assert_eq!(
            doc.add_user(path, &svc, &hash, &perms).unwrap(),
            Edit::Unchanged
        );
        let text = doc.to_string();
        assert!(text.contains("# a hand-written note"), "{text}");
        assert!(text.contains("[users.order-service]"), "{text}");
        let parsed = parse_tenant(path, &tenant, &text).unwrap();
        assert_eq!(parsed.user("order-service").unwrap().permissions, perms);
        // Switching to an NKEY replaces the hash: a user has one way to log in.
        let (public_key, _) = crate::nkey::generate().unwrap();
        let nkey = UserAuth::Nkey { public_key };
        assert_eq!(doc.set_auth(path, &svc, &nkey).unwrap(), Edit::Updated);
        let text = doc.to_string();
        let parsed = parse_tenant(path, &tenant, &text).unwrap();
        let user = parsed.user("order-service").unwrap();
        assert_eq!(user.auth, nkey);
        assert_eq!(user.permissions, perms);
        assert!(user.is_passwordless());
        assert_eq!(doc.set_auth(path, &svc, &hash).unwrap(), Edit::Updated);
        let parsed = parse_tenant(path, &tenant, &doc.to_string()).unwrap();
        assert_eq!(parsed.user("order-service").unwrap().auth, hash);
        assert_eq!(doc.remove_user(path, &svc).unwrap(), Edit::Removed);
        assert_eq!(doc.set_auth(path, &svc, &hash).unwrap(), Edit::Unchanged);
    }
}
