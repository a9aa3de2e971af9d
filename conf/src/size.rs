//! Byte sizes as nats.conf writes them, with nats-server's rules (checked against the 2.15.1
//! binary; the tests below pin them). `manage` reads sizes through these functions too, so a
//! tenant's `1G` means what the server's `1G` means.
//!
//! Two forms exist:
//! - An unquoted integer with an optional suffix (any case): the bare letter is decimal and a
//!   `b`, `i` or `ib` after it is binary. `k` = 1000, `kb` = `ki` = `kib` = 1024, `m` = 10^6,
//!   `mb` = 2^20, `g` = 10^9, `gb` = 2^30, and so on up to `e`/`eb`.
//! - A quoted string, accepted only by `jetstream { max_memory_store, max_file_store }`
//!   (nats-server's `getStorageSize`): digits and one upper-case `K`, `M`, `G` or `T`, all
//!   binary, so `"1G"` is 2^30 where an unquoted `1G` is 10^9.

/// Why a size does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No digits where the number should be.
    #[error(
        "invalid size `{0}`: expected digits with an optional unit (64MB, 1G, 512KB, 1048576)"
    )]
    Syntax(String),
    /// A unit nats.conf does not know.
    #[error("invalid size `{0}`: unknown unit (use K, KB, M, MB, G, GB, T, TB, P, PB, E or EB)")]
    Unit(String),
    /// More than an i64 holds.
    #[error("invalid size `{0}`: too large")]
    TooLarge(String),
}

/// The factor of a size suffix (already lower-cased): `k` = 1000, `kb`/`ki`/`kib` = 1024, ...
pub fn size_multiplier(suffix: &str) -> Option<i64> {
    // Units are ASCII; anything else is no unit (and must not be split inside a character:
    // `5ФB` crashed manage, found by fuzz/tenant_toml).
    if !suffix.is_ascii() {
        return None;
    }
    let (letter, rest) = suffix.split_at(suffix.len().min(1));
    let power: u32 = match letter {
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        "e" => 6,
        _ => return None,
    };
    match rest {
        "" => Some(1000i64.pow(power)),
        "b" | "i" | "ib" => Some(1024i64.pow(power)),
        _ => None,
    }
}

/// An unquoted nats.conf size (`64MB`, `1G`, `1048576`, `-1`), exactly as the config lexer
/// reads it.
pub fn parse_size(text: &str) -> Result<i64, SizeError> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let split = body
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(body.len());
    let (digits, suffix) = body.split_at(split);
    if digits.is_empty() {
        return Err(SizeError::Syntax(text.to_string()));
    }
    let multiplier = if suffix.is_empty() {
        1
    } else {
        size_multiplier(&suffix.to_ascii_lowercase())
            .ok_or_else(|| SizeError::Unit(text.to_string()))?
    };
    let signed = if negative {
        format!("-{digits}")
    } else {
        digits.to_string()
    };
    signed
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| SizeError::TooLarge(text.to_string()))
}

/// The quoted form of `max_memory_store` / `max_file_store` (nats-server's `getStorageSize`):
/// an empty string is 0, otherwise digits and one of `K`, `M`, `G`, `T` (upper case, binary).
/// The error is worded as nats-server words it after the option name.
pub fn parse_storage_string(text: &str) -> Result<i64, String> {
    let Some(unit) = text.chars().last() else {
        return Ok(0);
    };
    let number = &text[..text.len() - unit.len_utf8()];
    let n: i64 = number
        .parse()
        .map_err(|_| format!("strconv.ParseInt: parsing \"{number}\": invalid syntax"))?;
    let shift = match unit {
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return Err("sizes defined as strings must end in K, M, G, T".to_string()),
    };
    // nats-server multiplies without an overflow check; refusing is the safe reading.
    n.checked_mul(1i64 << shift)
        .ok_or_else(|| format!("strconv.ParseInt: parsing \"{number}\": value out of range"))
}

/// What the nats.conf lexer makes of `literal` written as a value in a file: the integer, or
/// `None` when it refuses it or reads something else (a string). [`parse_size`] must agree with
/// it on every size; the fuzz targets check that.
pub fn conf_size(literal: &str) -> Option<i64> {
    let conf = format!("max_payload: {literal}\n");
    let map = crate::parser::parse_text(&conf, "size.conf", None, 0, &|_| None).ok()?;
    match map.entries.first().map(|e| &e.value.value) {
        Some(crate::parser::Value::Int(n)) => Some(*n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pair was read back from nats-server 2.15.1's `/varz`; the test
    /// `sizes_are_read_as_nats_server_reads_them` compares the loader with the binary.
    #[test]
    fn unquoted_sizes_follow_nats_server() {
        for (text, want) in [
            ("1048576", 1_048_576),
            ("64k", 64_000),
            ("64K", 64_000),
            ("64kb", 65_536),
            ("64KiB", 65_536),
            ("64ki", 65_536),
            ("1M", 1_000_000),
            ("1MB", 1_048_576),
            ("1G", 1_000_000_000),
            ("1GB", 1_073_741_824),
            ("10GB", 10_737_418_240),
            ("1t", 1_000_000_000_000),
            ("1TiB", 1_099_511_627_776),
            ("1P", 1_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("-1", -1),
            ("-2K", -2000),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in ["", "MB", "1.5G", "1XB", "1GBB", "1 GB", "64B", "-"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_size("18446744073709551615"),
            Err(SizeError::TooLarge(_))
        ));
        assert!(matches!(parse_size("10E"), Err(SizeError::TooLarge(_))));
    }

    #[test]
    fn a_unit_that_is_not_ascii_is_an_error_not_a_panic() {
        assert!(matches!(parse_size("5ФB"), Err(SizeError::Unit(_))));
        assert!(parse_size("1é").is_err());
    }

    #[test]
    fn quoted_storage_sizes_are_binary_and_upper_case() {
        assert_eq!(parse_storage_string("1G"), Ok(1 << 30));
        assert_eq!(parse_storage_string("256M"), Ok(256 << 20));
        assert_eq!(parse_storage_string("2T"), Ok(2 << 40));
        assert_eq!(parse_storage_string(""), Ok(0));
        assert!(parse_storage_string("1g").is_err());
        assert!(parse_storage_string("1GB").is_err());
        assert!(parse_storage_string("G").is_err());
    }
}
