//! Go's `time.ParseDuration` syntax (`"1h30m"`, `"500ms"`, `"1.5s"`), with Go's error wording,
//! because nats.conf durations are Go durations.

use std::time::Duration;

/// Parse a Go duration string. Negative durations are rejected by the caller where they matter;
/// here they come back as `Err` only when malformed, and as `Ok((true, d))` when negative.
pub(crate) fn parse_go_duration(input: &str) -> Result<(bool, Duration), String> {
    let invalid = || format!("time: invalid duration \"{input}\"");
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok((false, Duration::ZERO));
    }
    if s.is_empty() {
        return Err(invalid());
    }
    // Whole numbers are exact integers, as in Go; only a fraction goes through a float,
    // scaled within its own unit, so the error stays under a nanosecond per component.
    let mut total: u64 = 0;
    while !s.is_empty() {
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let int_part = &s[..digits_end];
        s = &s[digits_end..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            frac_part = &rest[..frac_end];
            s = &rest[frac_end..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_end = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let unit = &s[..unit_end];
        s = &s[unit_end..];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration \"{input}\""));
        }
        let scale: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit}\" in duration \"{input}\""
                ))
            }
        };
        let whole: u64 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut v = whole.checked_mul(scale).ok_or_else(invalid)?;
        // Fraction digits past what 63 bits hold are ignored, as Go does.
        let (mut f, mut div) = (0u64, 1f64);
        for d in frac_part.bytes() {
            match f
                .checked_mul(10)
                .and_then(|x| x.checked_add(u64::from(d - b'0')))
            {
                Some(x) if x <= GO_LIMIT => {
                    f = x;
                    div *= 10.0;
                }
                _ => break,
            }
        }
        if f > 0 {
            v = v
                .checked_add((f as f64 * (scale as f64 / div)) as u64)
                .ok_or_else(invalid)?;
        }
        total = total.checked_add(v).ok_or_else(invalid)?;
        if total > GO_LIMIT {
            return Err(invalid());
        }
    }
    // Go's limit: an int64 of nanoseconds (about 290 years); -2^63 is still representable.
    if !negative && total > GO_LIMIT - 1 {
        return Err(invalid());
    }
    Ok((negative, Duration::from_nanos(total)))
}

/// 2^63: the magnitude of the most negative Go duration.
const GO_LIMIT: u64 = 1 << 63;

/// Render like Go's `Duration.String()` for the common cases (`30s`, `2m0s`, `1h30m0s`, `500ms`).
pub(crate) fn go_duration_string(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        return if nanos % 1_000_000 == 0 {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos % 1000 == 0 {
            format!("{}µs", nanos / 1000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = d.as_secs();
    let frac = d.subsec_nanos();
    let sec_part = if frac == 0 {
        format!("{}s", secs % 60)
    } else {
        let f = format!("{:09}", frac);
        format!("{}.{}s", secs % 60, f.trim_end_matches('0'))
    };
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    if h > 0 {
        format!("{h}h{m}m{sec_part}")
    } else if m > 0 {
        format!("{m}m{sec_part}")
    } else {
        sec_part
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly by design")]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let ok = |s: &str| parse_go_duration(s).unwrap().1;
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0"), Duration::ZERO);
        // Exact to the nanosecond where Go is (found by fuzz/size_duration_diff).
        assert_eq!(
            ok("2708942136.339502872s").as_nanos(),
            2_708_942_136_339_502_872
        );
        assert_eq!(ok("2562047h47m16.854775807s").as_nanos(), i64::MAX as u128);
        assert!(parse_go_duration("2562047h47m16.854775808s").is_err());
        assert!(parse_go_duration("-2562047h47m16.854775808s").unwrap().0);
        assert!(parse_go_duration("-5s").unwrap().0);
        assert_eq!(
            parse_go_duration("bogus").unwrap_err(),
            "time: invalid duration \"bogus\""
        );
        assert_eq!(
            parse_go_duration("2x").unwrap_err(),
            "time: unknown unit \"x\" in duration \"2x\""
        );
        assert_eq!(
            parse_go_duration("5").unwrap_err(),
            "time: missing unit in duration \"5\""
        );
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn renders_like_go() {
        assert_eq!(go_duration_string(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration_string(Duration::from_secs(120)), "2m0s");
        assert_eq!(go_duration_string(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(go_duration_string(Duration::from_millis(500)), "500ms");
    }
}
