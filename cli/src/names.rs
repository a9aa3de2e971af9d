//! Validated newtypes for what the user types: names, subjects and sizes.
//! Construction validates; everything downstream takes the newtype.

use std::fmt;

/// Longest tenant or user name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Names the system account owns (`SYS` account, `sys` user).
const RESERVED_NAMES: &[&str] = &["sys"];

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
    if RESERVED_NAMES.contains(&name) {
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

/// A subject or subject pattern for a permission list (`orders.*`, `events.>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubjectPattern(String);

impl SubjectPattern {
    /// Tokens separated by `.`, none empty; `*` and `>` only as whole tokens, `>` only last;
    /// no whitespace or control characters.
    pub fn new(subject: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("invalid subject `{subject}`: {why}"));
        if subject.is_empty() {
            return bad("empty subject");
        }
        if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("whitespace is not allowed");
        }
        let tokens: Vec<&str> = subject.split('.').collect();
        for (i, token) in tokens.iter().enumerate() {
            if token.is_empty() {
                return bad("empty token (check for `..` or a leading/trailing `.`)");
            }
            if token.len() > 1 && (token.contains('*') || token.contains('>')) {
                return bad("`*` and `>` must be whole tokens (`orders.*`, not `orders*`)");
            }
            if *token == ">" && i + 1 != tokens.len() {
                return bad("`>` must be the last token");
            }
        }
        Ok(Self(subject.to_owned()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the literal `subject` matches this pattern.
    pub fn matches(&self, subject: &str) -> bool {
        let mut pattern = self.0.split('.');
        let mut literal = subject.split('.');
        loop {
            match (pattern.next(), literal.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(p), Some(l)) if p == l => {}
                (None, None) => return true,
                _ => return false,
            }
        }
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

/// A byte size such as `64MB`, `5GB` or `1048576` (units are binary: 1KB = 1024 bytes,
/// as in nats.conf's `KB`/`MB`/`GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(u64);

impl Size {
    /// Parse `<number>[unit]` with units B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB
    /// (case-insensitive). Zero is refused: it would disable the tenant's JetStream.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid size `{text}`: use a number with a unit, such as 64MB, 512KB or 10GB")
        };
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => return Err(bad()),
        };
        let bytes = number.checked_mul(1u64 << shift).ok_or_else(bad)?;
        if bytes == 0 {
            return Err(format!("invalid size `{text}`: must be more than zero"));
        }
        Ok(Self(bytes))
    }

    /// Wrap a byte count.
    pub fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Human form used in messages (`1.5GB`, `64MB`, `12B`).
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
    /// The canonical form stored in tenant files: the largest exact unit (`128MB`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(40, "TB"), (30, "GB"), (20, "MB"), (10, "KB")] {
            if self.0 % (1u64 << shift) == 0 {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}B", self.0)
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
    fn subjects() {
        for good in [
            "orders", "orders.*", "orders.>", "*.x", ">", "a.*.c", "_INBOX.>",
        ] {
            assert!(SubjectPattern::new(good).is_ok(), "{good}");
        }
        for bad in ["", "a..b", ".a", "a.", "orders*", "a.>.b", "a b", "a.x>"] {
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
        assert_eq!(p.example("t"), "orders.t");
    }

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("64MB").map(Size::bytes), Ok(64 << 20));
        assert_eq!(Size::parse("5gb").map(Size::bytes), Ok(5 << 30));
        assert_eq!(Size::parse("1024").map(Size::bytes), Ok(1024));
        assert_eq!(
            Size::parse("10GiB").map(|s| s.to_string()),
            Ok("10GB".into())
        );
        for bad in ["", "MB", "-1MB", "1.5GB", "12XB", "0", "99999999999TB"] {
            assert!(Size::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Size::from_bytes(1536).human(), "1.5KB");
    }
}
