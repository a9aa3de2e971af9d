//! `config/auth.conf`: accounts, users (bcrypt hashes or public NKEYs, never a secret) and
//! permissions, rendered
//! deterministically (tenants and users sorted) so re-rendering is idempotent.

use std::fmt::Write as _;

use crate::names::{SubjectPattern, SYSTEM_ACCOUNT, SYSTEM_USER};
use crate::render::AUTH_CONF_HEADER;
use crate::tenant::{Permissions, Tenant, UserAuth};

/// Render auth.conf for `tenants` plus the system account with `sys_hash`.
pub fn render(tenants: &[Tenant], sys_hash: &str) -> String {
    let mut sorted: Vec<&Tenant> = tenants.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::with_capacity(256 + tenants.len() * 512);
    out.push_str(AUTH_CONF_HEADER);
    out.push_str("\naccounts {\n");
    for tenant in sorted {
        let _ = writeln!(out, "  {}: {{", quote(&tenant.account_name()));
        let _ = writeln!(
            out,
            "    jetstream: {{ max_mem: {}, max_file: {} }}",
            tenant.memory.bytes(),
            tenant.storage.bytes()
        );
        out.push_str("    users: [\n");
        let mut users: Vec<_> = tenant.users.iter().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        for user in users {
            let head = match &user.auth {
                UserAuth::Password { hash } => format!(
                    "user: {}, password: {}",
                    quote(user.name.as_str()),
                    quote(hash)
                ),
                UserAuth::Nkey { public_key } => {
                    // The servers take no name with a key: the comment says whose it is.
                    let _ = writeln!(out, "      # {} (NKEY user)", user.name);
                    format!("nkey: {}", quote(public_key))
                }
            };
            if user.permissions.is_full_access() {
                let _ = writeln!(out, "      {{ {head} }}");
            } else {
                let _ = writeln!(out, "      {{");
                let _ = writeln!(out, "        {head}");
                render_permissions(&mut out, &user.permissions);
                let _ = writeln!(out, "      }}");
            }
        }
        out.push_str("    ]\n  }\n");
    }
    let _ = writeln!(out, "  {}: {{", quote(SYSTEM_ACCOUNT));
    let _ = writeln!(
        out,
        "    users: [\n      {{ user: {}, password: {} }}\n    ]\n  }}",
        quote(SYSTEM_USER),
        quote(sys_hash)
    );
    out.push_str("}\n");
    let _ = writeln!(out, "system_account: {SYSTEM_ACCOUNT}");
    out
}

fn render_permissions(out: &mut String, permissions: &Permissions) {
    out.push_str("        permissions: {\n");
    for (key, allow, deny) in [
        ("publish", &permissions.publish, &permissions.deny_publish),
        (
            "subscribe",
            &permissions.subscribe,
            &permissions.deny_subscribe,
        ),
    ] {
        let mut parts = Vec::new();
        if !allow.is_empty() {
            parts.push(format!("allow: {}", list(allow)));
        }
        if !deny.is_empty() {
            parts.push(format!("deny: {}", list(deny)));
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "          {key}: {{ {} }}", parts.join(", "));
        }
    }
    if permissions.allow_responses {
        out.push_str("          allow_responses: true\n");
    }
    out.push_str("        }\n");
}

fn list(subjects: &[SubjectPattern]) -> String {
    let items: Vec<String> = subjects.iter().map(|s| quote(s.as_str())).collect();
    format!("[{}]", items.join(", "))
}

/// A double-quoted nats.conf string: no variable expansion, escapes processed.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Tenant {
    /// The NATS account of this tenant.
    pub fn account_name(&self) -> String {
        self.name.account()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::names::{Size, TenantName, UserName};
    use crate::tenant::User;

    const HASH: &str = "$2b$11$rMWCjY8x.9EQ1Byq6YIIiO8R1Ex/idX7uJJChXxmHUCZe3OhteZpK";

    #[test]
    fn deterministic_and_hash_only() {
        let user = |name: &str, permissions: Permissions| User {
            name: UserName::new(name).unwrap(),
            auth: UserAuth::Password { hash: HASH.into() },
            permissions,
        };
        let tenant = |name: &str, users: Vec<User>| Tenant {
            name: TenantName::new(name).unwrap(),
            memory: Size::parse("64MB").unwrap(),
            storage: Size::parse("5GB").unwrap(),
            users,
        };
        let perms = Permissions {
            publish: vec![SubjectPattern::new("orders.*").unwrap()],
            deny_subscribe: vec![SubjectPattern::new("secret.>").unwrap()],
            ..Permissions::default()
        };
        let a = vec![
            tenant("zeta", vec![user("zeta", Permissions::default())]),
            tenant(
                "alpha",
                vec![
                    user("svc", perms.clone()),
                    user("alpha", Permissions::default()),
                ],
            ),
        ];
        let b = vec![a[1].clone(), a[0].clone()];
        let text = render(&a, HASH);
        assert_eq!(text, render(&b, HASH));
        assert!(text.starts_with("# config/auth.conf: generated"));
        assert!(text.find("\"ALPHA\"") < text.find("\"ZETA\""));
        assert!(
            text.contains("publish: { allow: [\"orders.*\"] }"),
            "{text}"
        );
        assert!(
            text.contains("subscribe: { deny: [\"secret.>\"] }"),
            "{text}"
        );
        assert!(text.contains("max_mem: 67108864, max_file: 5368709120"));
        assert!(text.contains("system_account: SYS"));
        assert!(!text.contains("password: $"), "hashes must be quoted");
    }

    #[test]
    fn nkey_users_have_only_their_public_key() {
        let (public_key, seed) = crate::nkey::generate().unwrap();
        let user = |name: &str, auth: UserAuth, permissions: Permissions| User {
            name: UserName::new(name).unwrap(),
            auth,
            permissions,
        };
        let perms = Permissions {
            subscribe: vec![SubjectPattern::new("payments.*").unwrap()],
            ..Permissions::default()
        };
        let tenant = Tenant {
            name: TenantName::new("shop").unwrap(),
            memory: Size::parse("64MB").unwrap(),
            storage: Size::parse("5GB").unwrap(),
            users: vec![
                user(
                    "shop",
                    UserAuth::Password { hash: HASH.into() },
                    Permissions::default(),
                ),
                user(
                    "svc",
                    UserAuth::Nkey {
                        public_key: public_key.clone(),
                    },
                    perms,
                ),
            ],
        };
        let text = render(&[tenant], HASH);
        assert!(text.contains(&format!("nkey: \"{public_key}\"")), "{text}");
        assert!(text.contains("# svc (NKEY user)"), "{text}");
        assert!(!text.contains("\"svc\""), "no name beside a key: {text}");
        assert!(!text.contains(&seed), "never the seed");
        assert!(
            text.contains("subscribe: { allow: [\"payments.*\"] }"),
            "{text}"
        );
        // The comment comes before the entry it names.
        assert!(text.find("# svc") < text.find(&public_key));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
