//! Go's `time.ParseDuration` syntax (`"1h30m"`, `"500ms"`, `"1.5s"`), with Go's error wording,
//! because nats.conf durations are Go durations.

use std::time::Duration;

/// Parse a Go duration string. Negative durations are rejected by the caller where they matter;
/// here they come back as `Err` only when malformed, and as `Ok((true, d))` when negative.
pub fn parse_go_duration(input: &str) -> Result<(bool, Duration), String> {
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

/// Go's `time.Duration.String()`, which nats-server uses wherever it prints a duration in
/// text (`%v` in errors and logs, the `rtt` of `/connz`): `0s`, `587ns`, `1.5µs`, `1.5ms`,
/// `1.5s`, `2m0s`, `1h30m0s`.
pub fn go_duration(d: Duration) -> String {
    go_string(false, d.as_nanos())
}

/// [`go_duration`] of a Go `time.Duration` (signed nanoseconds): `-5s`.
pub fn go_duration_nanos(ns: i64) -> String {
    go_string(ns < 0, u128::from(ns.unsigned_abs()))
}

fn go_string(negative: bool, nanos: u128) -> String {
    const MICRO: u128 = 1_000;
    const MILLI: u128 = 1_000_000;
    const SECOND: u128 = 1_000_000_000;
    let sign = if negative { "-" } else { "" };
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < MICRO {
        return format!("{sign}{nanos}ns");
    }
    if nanos < MILLI {
        return format!("{sign}{}µs", decimal(nanos, MICRO));
    }
    if nanos < SECOND {
        return format!("{sign}{}ms", decimal(nanos, MILLI));
    }
    let (hours, minutes) = (nanos / (3600 * SECOND), nanos / (60 * SECOND) % 60);
    let seconds = decimal(nanos % (60 * SECOND), SECOND);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{seconds}s")
    } else {
        format!("{sign}{seconds}s")
    }
}

/// `value / unit` in decimal, trailing zeros of the fraction dropped (`unit` a power of ten).
fn decimal(value: u128, unit: u128) -> String {
    let (whole, rest) = (value / unit, value % unit);
    if rest == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
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

    /// Go's `time.Duration.String()`. nats-server 2.15.1 prints it in config errors
    /// (`invalid lame_duck_duration of 1.5ms, minimum is 30 seconds` from `nats-server -t`
    /// with `lame_duck_duration: "1.5ms"`: `config_tests::durations_print_as_nats_server_does`
    /// runs the binary), in `/connz` `rtt` and in the 409 `Exceeded MaxRequestExpires of 1s`.
    #[test]
    fn prints_as_go_prints_durations() {
        for (nanos, want) in [
            (0u64, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_500, "1.5µs"),
            (587_000, "587µs"),
            (1_500_000, "1.5ms"),
            (3_264_616, "3.264616ms"),
            (500_000_000, "500ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (62_500_000_000, "1m2.5s"),
            (120_000_000_000, "2m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (5_400_000_000_000, "1h30m0s"),
            (90_000_000_000_001, "25h0m0.000000001s"),
        ] {
            assert_eq!(go_duration(Duration::from_nanos(nanos)), want, "{nanos}");
            assert_eq!(go_duration_nanos(nanos as i64), want, "{nanos}");
        }
        assert_eq!(go_duration_nanos(-5_000_000_000), "-5s");
        assert_eq!(go_duration_nanos(-1_500_000), "-1.5ms");
        assert_eq!(go_duration_nanos(i64::MIN), "-2562047h47m16.854775808s");
        assert_eq!(go_duration_nanos(i64::MAX), "2562047h47m16.854775807s");
    }

    #[test]
    fn parses_what_it_prints() {
        for nanos in [1u64, 1_500, 1_500_000, 62_500_000_000, i64::MAX as u64] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(parse_go_duration(&go_duration(d)), Ok((false, d)));
        }
    }
}
