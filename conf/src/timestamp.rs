//! Times as nats-server writes them: Go's `time.Time` marshalled to JSON (RFC 3339 with up to
//! nine fraction digits, trailing zeros dropped, so half a second is `.5Z`, never `.500Z`), in
//! UTC, and Go's zero time `0001-01-01T00:00:00Z` for "never". One formatter for stream info,
//! consumer info, advisories and the monitoring endpoints.

use std::time::SystemTime;

use chrono::{DateTime, Utc};

/// Go's zero `time.Time`, which nats-server writes for a time that was never set.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `ns` since the Unix epoch as Go writes it; 0 is Go's zero time (natsd's "unset").
pub fn rfc3339_ns(ns: u64) -> String {
    if ns == 0 {
        return GO_ZERO_TIME.to_string();
    }
    let secs = (ns / 1_000_000_000) as i64;
    let nanos = (ns % 1_000_000_000) as u32;
    match DateTime::<Utc>::from_timestamp(secs, nanos) {
        Some(t) => go_format(&t),
        None => GO_ZERO_TIME.to_string(),
    }
}

/// A system time as Go writes it (times before the epoch too).
pub fn rfc3339(t: SystemTime) -> String {
    go_format(&DateTime::<Utc>::from(t))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with the fraction's trailing zeros dropped.
fn go_format(t: &DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S");
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let fraction = format!("{nanos:09}");
    format!("{base}.{}Z", fraction.trim_end_matches('0'))
}

/// An RFC 3339 time (any offset, any number of fraction digits) as ns since the epoch. Go's
/// zero time and anything else before the epoch count as 0; `None` when it does not parse or
/// lies past what ns in a u64-compatible i64 hold (the year 2262).
pub fn parse_rfc3339_ns(text: &str) -> Option<u64> {
    let t = DateTime::parse_from_rfc3339(text).ok()?;
    if t.timestamp() < 0 {
        return Some(0);
    }
    t.timestamp_nanos_opt().map(i64::unsigned_abs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use std::time::Duration;

    /// nats-server 2.15.1 writes stream and consumer `created` times, `/varz` `start` and
    /// `now` with Go's RFC3339Nano: `2026-12-07T18:04:05.5Z` for half a second (checked in
    /// `/varz` and `$JS.API.STREAM.INFO` replies of the venv's nats-server: fractions of one
    /// to nine digits, never padded) and the zero time for unset times (consumer info's
    /// `pause_until` when not paused, a stream's `first_ts` when empty).
    #[test]
    fn prints_as_go_prints_time() {
        assert_eq!(rfc3339_ns(0), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339_ns(1_000_000_000), "1970-01-01T00:00:01Z");
        assert_eq!(rfc3339_ns(1_500_000_000), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339_ns(1_500_000), "1970-01-01T00:00:00.0015Z");
        assert_eq!(
            rfc3339_ns(1_795_784_752_850_644_583),
            "2026-11-27T13:05:52.850644583Z"
        );
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(1_500)),
            "1970-01-01T00:00:01.5Z"
        );
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn parses_back_what_it_prints() {
        for ns in [1, 1_500_000_000, 1_795_784_752_850_644_583] {
            assert_eq!(parse_rfc3339_ns(&rfc3339_ns(ns)), Some(ns));
        }
        assert_eq!(parse_rfc3339_ns(GO_ZERO_TIME), Some(0));
        assert_eq!(parse_rfc3339_ns("1960-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("1970-01-01T01:00:01.5+01:00"),
            Some(1_500_000_000)
        );
        assert_eq!(parse_rfc3339_ns("3000-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ns("yesterday"), None);
    }
}
