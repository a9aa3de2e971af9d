//! Validated newtypes for what the user types: names, subjects and sizes.
//! Construction validates; everything downstream takes the newtype. Subjects and sizes follow
//! the server's own rules (`natsd_conf::subject`, `natsd_conf::size`, the crate the server
//! reads them with), so manage and the server never disagree about what a permission or a
//! limit means.

use std::fmt;

/// Longest tenant or user name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// The system account every deployment has (`system_account` in auth.conf).
pub const SYSTEM_ACCOUNT: &str = "SYS";
/// The system account's user; its password is `NATS_SYS_PASSWORD` in `.env`.
pub const SYSTEM_USER: &str = "sys";

fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !first_ok || !rest_ok || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "invalid {kind} name `{name}`: use lower-case letters, digits, `_` and `-`, \
             starting with a letter or digit, at most {MAX_NAME_LEN} characters"
        ));
    }
    // A tenant `sys` would be account SYS with admin user sys: the system account's own.
    if name == SYSTEM_USER || name.to_ascii_uppercase() == SYSTEM_ACCOUNT {
        return Err(format!("`{name}` is reserved for the system account"));
    }
    Ok(())
}

/// A tenant name (`myapp`); its NATS account is the upper-case form (`MYAPP`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantName(String);

impl TenantName {
    /// Validate `[a-z0-9][a-z0-9_-]*`, at most [`MAX_NAME_LEN`].
    pub fn new(name: &str) -> Result<Self, String> {
        validate_name("tenant", name).map(|()| Self(name.to_owned()))
    }
    /// The NATS account of this tenant.
    pub fn account(&self) -> String {
        self.0.to_ascii_uppercase()
    }
    /// The name as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The tenant's admin user, which has the tenant's name.
    pub fn admin_user(&self) -> UserName {
        UserName(self.0.clone())
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user name; global across all tenants in NATS.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

impl UserName {
    /// Validate `[a-z0-9][a-z0-9_-]*`, at most [`MAX_NAME_LEN`].
    pub fn new(name: &str) -> Result<Self, String> {
        validate_name("user", name).map(|()| Self(name.to_owned()))
    }
    /// The name as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subject or subject pattern for a permission list (`orders.*`, `events.>`), valid by the
/// server's rules: non-empty tokens, no whitespace, `>` only as the last token. As in NATS, a
/// `*` or `>` inside a token (`orders*`) is a literal character, not a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubjectPattern(String);

impl SubjectPattern {
    /// Validate with the server's `is_valid_subject`.
    pub fn new(subject: &str) -> Result<Self, String> {
        if natsd_conf::subject::is_valid_subject(subject.as_bytes()) {
            Ok(Self(subject.to_owned()))
        } else {
            Err(format!(
                "invalid subject `{subject}`: tokens separated by `.` must not be empty or \
                 contain whitespace, and `>` may only be the last token"
            ))
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the literal `subject` matches this pattern (the server's `matches`).
    pub fn matches(&self, subject: &str) -> bool {
        natsd_conf::subject::matches(self.0.as_bytes(), subject.as_bytes())
    }

    /// One literal subject this pattern matches, for `manage test`.
    pub fn example(&self, filler: &str) -> String {
        self.0
            .split('.')
            .map(|t| if t == "*" || t == ">" { filler } else { t })
            .collect::<Vec<_>>()
            .join(".")
    }
}

impl fmt::Display for SubjectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parse a comma-separated list (`"orders.*,events.order.*"`); empty entries are errors.
pub fn parse_subject_list(list: &str) -> Result<Vec<SubjectPattern>, String> {
    list.split(',')
        .map(|s| {
            let s = s.trim();
            if s.is_empty() {
                Err(format!("empty subject in list `{list}`"))
            } else {
                SubjectPattern::new(s)
            }
        })
        .collect()
}

/// A byte size such as `64MB`, `5GB`, `1G` or `1048576`, read with nats.conf's rules (the
/// server's own parser): `KB`/`MB`/`GB`/`TB` are binary (1MB = 1048576), a bare `K`/`M`/`G`/`T`
/// is decimal (1G = 1000000000), as nats-server reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(u64);

impl Size {
    /// Parse a positive nats.conf size. Zero is refused (it would disable the tenant's
    /// JetStream), and so is anything the server could not hold (over an int64).
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        match natsd_conf::size::parse_size(trimmed) {
            Ok(n) if n > 0 => Ok(Self(n.unsigned_abs())),
            Ok(_) => Err(format!("invalid size `{text}`: must be more than zero")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Wrap a byte count.
    pub fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Human form used in messages (`1.5GB`, `64MB`, `12B`), in binary units.
    pub fn human(self) -> String {
        const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if value.fract() == 0.0 {
            format!("{value:.0}{}", UNITS[unit])
        } else {
            format!("{value:.1}{}", UNITS[unit])
        }
    }
}

impl fmt::Display for Size {
    /// The canonical form stored in tenant files, which reads back to the same bytes: the
    /// largest exact binary unit (`128MB`), else the largest exact decimal one (`1G`), else
    /// the plain number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(40, "TB"), (30, "GB"), (20, "MB"), (10, "KB")] {
            if self.0.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        for (factor, unit) in [
            (1_000_000_000_000u64, "T"),
            (1_000_000_000, "G"),
            (1_000_000, "M"),
            (1_000, "K"),
        ] {
            if self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(TenantName::new("myapp").is_ok());
        assert!(TenantName::new("my-app_2").is_ok());
        assert!(TenantName::new("0abc").is_ok());
        for bad in [
            "",
            "MyApp",
            "-x",
            "_x",
            "a b",
            "a.b",
            "sys",
            &"a".repeat(65),
        ] {
            assert!(TenantName::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TenantName::new("order-svc").map(|t| t.account()),
            Ok("ORDER-SVC".into())
        );
    }

    #[test]
    fn subjects_follow_the_server() {
        for good in [
            "orders", "orders.*", "orders.>", "*.x", ">", "a.*.c", "_INBOX.>", "orders*", "a.x>",
        ] {
            assert!(SubjectPattern::new(good).is_ok(), "{good}");
        }
        for bad in ["", "a..b", ".a", "a.", "a.>.b", "a b", "a\tb"] {
            assert!(SubjectPattern::new(bad).is_err(), "{bad}");
        }
        assert!(parse_subject_list("a.*,,b").is_err());
        assert_eq!(parse_subject_list("a.*, b").map(|l| l.len()), Ok(2));
    }

    #[test]
    fn matching() {
        let p = SubjectPattern::new("orders.*").unwrap();
        assert!(p.matches("orders.x"));
        assert!(!p.matches("orders.x.y"));
        let p = SubjectPattern::new("orders.>").unwrap();
        assert!(p.matches("orders.x.y"));
        assert!(!p.matches("orders"));
        assert!(
            !p.matches("orders."),
            "an empty token matches nothing, not even >"
        );
        assert_eq!(p.example("t"), "orders.t");
        let literal = SubjectPattern::new("orders*").unwrap();
        assert!(literal.matches("orders*") && !literal.matches("ordersx"));
    }

    #[test]
    fn sizes_follow_nats_conf() {
        assert_eq!(Size::parse("64MB").map(Size::bytes), Ok(64 << 20));
        assert_eq!(Size::parse("5gb").map(Size::bytes), Ok(5 << 30));
        assert_eq!(Size::parse("1G").map(Size::bytes), Ok(1_000_000_000));
        assert_eq!(Size::parse("64k").map(Size::bytes), Ok(64_000));
        assert_eq!(Size::parse("1024").map(Size::bytes), Ok(1024));
        assert_eq!(
            Size::parse("10GiB").map(|s| s.to_string()),
            Ok("10GB".into())
        );
        for (text, shown) in [("1G", "1G"), ("1500", "1500"), ("3M", "3M"), ("2KB", "2KB")] {
            let size = Size::parse(text).unwrap();
            assert_eq!(size.to_string(), shown);
            assert_eq!(
                Size::parse(&size.to_string()),
                Ok(size),
                "round trip {text}"
            );
        }
        for bad in [
            "",
            "MB",
            "-1MB",
            "1.5GB",
            "12XB",
            "0",
            "64B",
            "99999999999TB",
            "18446744073709551615",
        ] {
            assert!(Size::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Size::from_bytes(1536).human(), "1.5KB");
    }
}
