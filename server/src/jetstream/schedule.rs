//! Message schedules (`allow_msg_schedules`): when a schedule message fires next. No I/O;
//! the stream's worker keeps the schedules, fires them on its tick and stores what they
//! produce.
//!
//! A schedule message carries `Nats-Schedule` with one of
//! - `@at <RFC 3339 time>`: once;
//! - `@every <Go duration>` (at least `1s`): repeating, counted from the last firing;
//! - a cron expression of six fields, `sec min hour day-of-month month day-of-week`
//!   (`*`, `?`, lists, ranges, steps, month and weekday names), or `@yearly`/`@annually`,
//!   `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`; with
//!   `Nats-Schedule-Time-Zone` evaluated in that zone (system tz database, as nats-server),
//!   else in UTC. As in cron, when both day fields are restricted a day matching either
//!   matches.
//!
//! A repeating schedule that would have fired several times (after a restart) fires once,
//! from now on.

use jiff::civil::{self, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, ZonedDateTime};

/// Why a schedule is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScheduleError {
    /// The pattern is not one of the accepted forms.
    Pattern,
    /// `Nats-Schedule-Time-Zone` is empty or names no zone.
    TimeZone,
}

/// When a schedule fires next, and whether it repeats afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Next {
    /// Nanoseconds since the epoch.
    pub(crate) at: u64,
    pub(crate) repeat: bool,
}

/// The time zone of `Nats-Schedule-Time-Zone`, `None` without the header.
pub(crate) fn time_zone(header: Option<&str>) -> Result<Option<TimeZone>, ScheduleError> {
    match header {
        None => Ok(None),
        Some("") => Err(ScheduleError::TimeZone),
        Some(name) => TimeZone::get(name)
            .map(Some)
            .map_err(|_| ScheduleError::TimeZone),
    }
}

/// The next firing of `pattern` after `from` (ns), `now` being the current time; `Ok(None)`
/// for an empty pattern (no schedule).
pub(crate) fn next_firing(
    pattern: &str,
    tz: Option<&TimeZone>,
    from: u64,
    now: u64,
) -> Result<Option<Next>, ScheduleError> {
    if pattern.is_empty() {
        return Ok(None);
    }
    if let Some(at) = pattern.strip_prefix("@at ") {
        if tz.is_some() {
            return Err(ScheduleError::Pattern);
        }
        let t = natsd_conf::timestamp::parse_rfc3339_ns(at).ok_or(ScheduleError::Pattern)?;
        return Ok(Some(Next {
            at: t,
            repeat: false,
        }));
    }
    if let Some(every) = pattern.strip_prefix("@every ") {
        if tz.is_some() {
            return Err(ScheduleError::Pattern);
        }
        let every = match natsd_conf::duration::parse_go_duration(every) {
            Ok((false, d)) if d.as_secs() >= 1 => d.as_nanos() as u64,
            _ => return Err(ScheduleError::Pattern),
        };
        let mut at = round_to_second(from).saturating_add(every);
        if at < now {
            at = round_to_second(now).saturating_add(every);
        }
        return Ok(Some(Next { at, repeat: true }));
    }
    let pattern = match pattern {
        "@yearly" | "@annually" => "0 0 0 1 1 *",
        "@monthly" => "0 0 0 1 * *",
        "@weekly" => "0 0 0 * * 0",
        "@daily" | "@midnight" => "0 0 0 * * *",
        "@hourly" => "0 0 * * * *",
        other => other,
    };
    let cron = Cron::parse(pattern).ok_or(ScheduleError::Pattern)?;
    let tz = tz.cloned().unwrap_or(TimeZone::UTC);
    let mut at = cron.next_after(from, &tz).ok_or(ScheduleError::Pattern)?;
    if at < now {
        at = cron
            .next_after(round_to_second(now), &tz)
            .ok_or(ScheduleError::Pattern)?;
    }
    Ok(Some(Next { at, repeat: true }))
}

/// Rounds to the nearest whole second (half up), as Go's `Round(time.Second)`.
fn round_to_second(ns: u64) -> u64 {
    (ns + 500_000_000) / 1_000_000_000 * 1_000_000_000
}

/// A parsed six-field cron expression: one bit per allowed value, bit 63 set when the
/// field was `*` or `?` (for the day-of-month / day-of-week rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cron {
    second: u64,
    minute: u64,
    hour: u64,
    day_of_month: u64,
    month: u64,
    day_of_week: u64,
}

const STAR: u64 = 1 << 63;
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field's bounds and names (`names[i]` stands for `first_name + i`).
struct Field {
    min: u64,
    max: u64,
    names: &'static [&'static str],
    first_name: u64,
}

impl Field {
    fn value(&self, text: &str) -> Option<u64> {
        let lower = text.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            return Some(self.first_name + i as u64);
        }
        text.parse::<u64>().ok()
    }

    /// A comma-separated list of `n`, `a-b`, `*`/`?`, each with an optional `/step`.
    fn parse(&self, field: &str) -> Option<u64> {
        let mut bits = 0;
        for expr in field.split(',').filter(|e| !e.is_empty()) {
            bits |= self.range(expr)?;
        }
        Some(bits)
    }

    fn range(&self, expr: &str) -> Option<u64> {
        let mut parts = expr.split('/');
        let range = parts.next()?;
        let step = parts.next();
        if parts.next().is_some() {
            return None;
        }
        let bounds: Vec<&str> = range.split('-').collect();
        let (mut start, mut end, mut extra) = if bounds[0] == "*" || bounds[0] == "?" {
            (self.min, self.max, STAR)
        } else {
            let start = self.value(bounds[0])?;
            let end = match bounds.len() {
                1 => start,
                2 => self.value(bounds[1])?,
                _ => return None,
            };
            (start, end, 0)
        };
        let step = match step {
            None => 1,
            Some(s) => {
                let step = s.parse::<u64>().ok()?;
                // `n/step` runs from n to the field's end.
                if bounds.len() == 1 && extra == 0 {
                    end = self.max;
                }
                if step > 1 {
                    extra = 0;
                }
                step
            }
        };
        if bounds[0] == "*" || bounds[0] == "?" {
            start = self.min;
        }
        if start < self.min || end > self.max || start > end || step == 0 {
            return None;
        }
        let bits = (start..=end)
            .step_by(step as usize)
            .fold(0u64, |b, v| b | (1 << v));
        Some(bits | extra)
    }
}

impl Cron {
    fn parse(pattern: &str) -> Option<Cron> {
        let fields: Vec<&str> = pattern.split_whitespace().collect();
        if fields.len() != 6 {
            return None;
        }
        let plain = |min, max| Field {
            min,
            max,
            names: &[],
            first_name: 0,
        };
        Some(Cron {
            second: plain(0, 59).parse(fields[0])?,
            minute: plain(0, 59).parse(fields[1])?,
            hour: plain(0, 23).parse(fields[2])?,
            day_of_month: plain(1, 31).parse(fields[3])?,
            month: Field {
                min: 1,
                max: 12,
                names: &MONTHS,
                first_name: 1,
            }
            .parse(fields[4])?,
            day_of_week: Field {
                min: 0,
                max: 6,
                names: &WEEKDAYS,
                first_name: 0,
            }
            .parse(fields[5])?,
        })
    }

    fn day_matches(&self, t: &ZonedDateTime) -> bool {
        let dom = self.day_of_month & (1 << t.day()) != 0;
        let weekday = match t.weekday() {
            Weekday::Sunday => 0,
            other => other.to_monday_one_offset(),
        };
        let dow = self.day_of_week & (1 << weekday) != 0;
        if self.day_of_month & STAR != 0 || self.day_of_week & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching second strictly after `from` (ns), within five years.
    fn next_after(&self, from: u64, tz: &TimeZone) -> Option<u64> {
        let ts = Timestamp::from_second((from / 1_000_000_000) as i64 + 1).ok()?;
        let mut t = ts.to_zoned_datetime(tz.clone());
        let limit = t.year() + 5;
        let at_midnight = |y: i16, m: i8, d: i8| {
            civil::date(y, m, d)
                .at(0, 0, 0, 0)
                .to_zoned_datetime(tz.clone())
                .ok()
        };
        // Each unit is moved forward until it matches; moving a larger unit starts the
        // smaller ones from zero, and a wrap into the next year checks everything again.
        let mut truncated = false;
        'wrap: loop {
            if t.year() > limit {
                return None;
            }
            while self.month & (1 << t.month()) == 0 {
                if !truncated {
                    truncated = true;
                    t = at_midnight(t.year(), t.month(), 1)?;
                }
                t = t.checked_add(1.month()).ok()?;
                if t.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&t) {
                if !truncated {
                    truncated = true;
                    t = at_midnight(t.year(), t.month(), t.day())?;
                }
                t = t.checked_add(1.day()).ok()?;
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while self.hour & (1 << t.hour()) == 0 {
                if !truncated {
                    truncated = true;
                    t = civil::date(t.year(), t.month(), t.day())
                        .at(t.hour(), 0, 0, 0)
                        .to_zoned_datetime(tz.clone())
                        .ok()?;
                }
                t = t.checked_add(1.hour()).ok()?;
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while self.minute & (1 << t.minute()) == 0 {
                if !truncated {
                    truncated = true;
                    t = truncate(&t, 60)?;
                }
                t = t.checked_add(1.minute()).ok()?;
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            while self.second & (1 << t.second()) == 0 {
                if !truncated {
                    truncated = true;
                    t = truncate(&t, 1)?;
                }
                t = t.checked_add(1.second()).ok()?;
                if t.second() == 0 {
                    continue 'wrap;
                }
            }
            return u64::try_from(t.timestamp().as_nanosecond()).ok();
        }
    }
}

/// Truncates to a multiple of `secs` seconds of absolute time, as Go's `Truncate`.
fn truncate(t: &ZonedDateTime, secs: i64) -> Option<ZonedDateTime> {
    let s = t.timestamp().as_second();
    Timestamp::from_second(s - s.rem_euclid(secs))
        .ok()
        .map(|ts| ts.to_zoned_datetime(t.time_zone().clone()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ns(t: &str) -> u64 {
        natsd_conf::timestamp::parse_rfc3339_ns(t).unwrap()
    }

    fn next(pattern: &str, tz: Option<&str>, from: &str) -> Option<String> {
        let tz = time_zone(tz).unwrap();
        let from = ns(from);
        next_firing(pattern, tz.as_ref(), from, from)
            .unwrap()
            .map(|n| natsd_conf::timestamp::rfc3339_ns(n.at))
    }

    #[test]
    fn fixed_intervals_and_times() {
        assert_eq!(
            next("@every 5s", None, "2025-01-01T00:00:00.2Z").as_deref(),
            Some("2025-01-01T00:00:05Z")
        );
        assert_eq!(
            next("@at 2030-01-02T03:04:05Z", None, "2025-01-01T00:00:00Z").as_deref(),
            Some("2030-01-02T03:04:05Z")
        );
        assert_eq!(next("", None, "2025-01-01T00:00:00Z"), None);
        let bad = |p: &str| next_firing(p, None, 0, 0).unwrap_err();
        assert_eq!(bad("@every 500ms"), ScheduleError::Pattern);
        assert_eq!(bad("@at yesterday"), ScheduleError::Pattern);
        assert_eq!(bad("* * * * *"), ScheduleError::Pattern);
        assert_eq!(bad("60 * * * * *"), ScheduleError::Pattern);
        let berlin = time_zone(Some("Europe/Berlin")).unwrap();
        assert_eq!(
            next_firing("@every 5s", berlin.as_ref(), 0, 0).unwrap_err(),
            ScheduleError::Pattern
        );
        assert_eq!(
            time_zone(Some("Nowhere/Else")).unwrap_err(),
            ScheduleError::TimeZone
        );
        assert_eq!(time_zone(Some("")).unwrap_err(), ScheduleError::TimeZone);
    }

    #[test]
    fn cron_expressions() {
        let at = |p: &str| next(p, None, "2025-01-31T10:15:30Z").unwrap();
        assert_eq!(at("* * * * * *"), "2025-01-31T10:15:31Z");
        assert_eq!(at("0 * * * * *"), "2025-01-31T10:16:00Z");
        assert_eq!(at("@hourly"), "2025-01-31T11:00:00Z");
        assert_eq!(at("@daily"), "2025-02-01T00:00:00Z");
        assert_eq!(at("@monthly"), "2025-02-01T00:00:00Z");
        assert_eq!(at("@yearly"), "2026-01-01T00:00:00Z");
        assert_eq!(at("0 0 12 * * mon-fri"), "2025-01-31T12:00:00Z");
        assert_eq!(at("0 0 12 * * SAT"), "2025-02-01T12:00:00Z");
        assert_eq!(at("*/20 * * * * *"), "2025-01-31T10:15:40Z");
        assert_eq!(at("0 0 0 29 feb ?"), "2028-02-29T00:00:00Z");
        // Both day fields restricted: either matches (the 1st, or a Monday).
        assert_eq!(at("0 0 0 1 * 1"), "2025-02-01T00:00:00Z");
        assert_eq!(
            next(
                "0 0 9 * * *",
                Some("America/New_York"),
                "2025-01-31T10:15:30Z"
            )
            .unwrap(),
            "2025-01-31T14:00:00Z"
        );
        // Never within five years: refused.
        assert_eq!(
            next_firing("0 0 0 30 2 *", None, 0, 0).unwrap_err(),
            ScheduleError::Pattern
        );
    }
}
