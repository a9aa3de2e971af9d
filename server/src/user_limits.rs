//! Where and when a JWT user may log in: the user claims' `src` (the networks a client may
//! connect from), `times` (daily wall-clock windows) and `times_location` (the IANA zone of
//! those windows, the server's own zone when absent).
//!
//! As in nats-server, a claim that does not parse (a bad CIDR or clock time, an unknown zone)
//! makes the whole user JWT invalid, and the checks happen at login: a client outside every
//! window or network is refused with `Authorization Violation`, and a client inside a window
//! is disconnected with `User Authentication Expired` when the window (the one that lasts
//! longest, if several hold) closes. Nothing else reads these claims: a connection is not
//! checked again later against the source networks.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;

/// The claims as they appear in a user JWT (or a scoped signing key's template).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct UserLimitsClaim {
    pub(crate) src: SourceList,
    pub(crate) times: Vec<TimeRangeClaim>,
    /// An IANA zone name (`Europe/Berlin`), `UTC`, or `Local`.
    #[serde(rename = "times_location")]
    pub(crate) locale: String,
}

/// `src`: a JSON list of CIDRs, or one string of comma-separated CIDRs (which nsc writes and
/// the jwt library reads trimmed, lower-cased, without empty or repeated entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SourceList(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for SourceList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Joined(String),
        }
        Ok(match Option::<Raw>::deserialize(d)? {
            None => SourceList::default(),
            Some(Raw::List(list)) => SourceList(list),
            Some(Raw::Joined(joined)) => {
                let mut list: Vec<String> = Vec::new();
                for entry in joined.split(',') {
                    let entry = entry.trim().to_ascii_lowercase();
                    if !entry.is_empty() && !list.contains(&entry) {
                        list.push(entry);
                    }
                }
                SourceList(list)
            }
        })
    }
}

/// One daily window, `HH:MM:SS` to `HH:MM:SS`; an end before the start crosses midnight.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct TimeRangeClaim {
    pub(crate) start: String,
    pub(crate) end: String,
}

/// Why the claims make a user JWT invalid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum InvalidLimits {
    #[error("invalid cidr {0:?} in user src limits")]
    Cidr(String),
    #[error("invalid time {0:?} in time range")]
    Time(String),
    #[error("could not parse iana time zone by name: {0:?}")]
    Zone(String),
}

/// Why a login was refused; the text is the log line nats-server writes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum LoginRefused {
    #[error("Bad src Ip {0}")]
    Source(IpAddr),
    #[error("Outside connect times")]
    Times,
}

/// The claims, parsed: what a login is checked against.
#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// Empty: any source.
    src: Vec<IpNet>,
    /// Empty: any time.
    times: Vec<(Time, Time)>,
    zone: TimeZone,
}

impl UserLimitsClaim {
    /// The limits to check at login: `Ok(None)` when the claims limit neither source nor time.
    pub(crate) fn compile(&self) -> Result<Option<LoginLimits>, InvalidLimits> {
        let src = self
            .src
            .0
            .iter()
            .map(|c| parse_cidr(c).ok_or_else(|| InvalidLimits::Cidr(c.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let clock = |s: &str| parse_clock(s).ok_or_else(|| InvalidLimits::Time(s.to_string()));
        let times = self
            .times
            .iter()
            .map(|r| Ok((clock(&r.start)?, clock(&r.end)?)))
            .collect::<Result<Vec<_>, _>>()?;
        let zone =
            load_zone(&self.locale).ok_or_else(|| InvalidLimits::Zone(self.locale.clone()))?;
        Ok((!src.is_empty() || !times.is_empty()).then_some(LoginLimits { src, times, zone }))
    }
}

impl LoginLimits {
    /// Whether a client at `peer` may log in at `now`; `Ok(Some(d))` when a time window
    /// admits it and closes `d` from now.
    pub(crate) fn admit(
        &self,
        peer: IpAddr,
        now: Timestamp,
    ) -> Result<Option<Duration>, LoginRefused> {
        let peer = peer.to_canonical();
        if !self.src.is_empty() && !self.src.iter().any(|n| n.contains(&peer)) {
            return Err(LoginRefused::Source(peer));
        }
        if self.times.is_empty() {
            return Ok(None);
        }
        let today = now.to_zoned_datetime(self.zone.clone()).date();
        self.times
            .iter()
            .filter_map(|&(start, end)| window_left(today, start, end, now, &self.zone))
            .max()
            .map(Some)
            .ok_or(LoginRefused::Times)
    }
}

/// How long the window `start`..`end` (wall clock in `zone`, on `today` or, crossing
/// midnight, from yesterday or into tomorrow) still holds at `now`; `None` outside it. The
/// bounds themselves are outside.
fn window_left(
    today: Date,
    start: Time,
    end: Time,
    now: Timestamp,
    zone: &TimeZone,
) -> Option<Duration> {
    let at = |date: Date, time: Time| wall_clock(zone, date, time);
    let left = |end: Timestamp| Duration::try_from(end.duration_since(now)).ok();
    let (start_at, end_at) = (at(today, start)?, at(today, end)?);
    if start_at < now && now < end_at {
        return left(end_at);
    }
    if start > end {
        if now < end_at {
            return left(end_at);
        }
        let end_tomorrow = at(today.tomorrow().ok()?, end)?;
        if start_at < now && now < end_tomorrow {
            return left(end_tomorrow);
        }
    }
    None
}

/// The instant a wall-clock time names in `zone`, resolved as Go's `time.Date` resolves it:
/// the offset in force at the wall clock read as UTC, then the offset in force at the result.
/// In a gap or an overlap this picks what nats-server picks (an earlier or later instant,
/// depending on the zone's side of UTC), which a choice of "earlier" or "later" would not.
fn wall_clock(zone: &TimeZone, date: Date, time: Time) -> Option<Timestamp> {
    let as_utc = TimeZone::UTC.to_timestamp(date.to_datetime(time)).ok()?;
    let shift = |ts: Timestamp, offset: jiff::tz::Offset| {
        ts.checked_sub(jiff::SignedDuration::from_secs(i64::from(offset.seconds())))
            .ok()
    };
    let first = shift(as_utc, zone.to_offset(as_utc))?;
    shift(as_utc, zone.to_offset(first))
}

/// A CIDR as Go's `net.ParseCIDR` reads it (an address, `/`, a prefix length; host bits may
/// be set). An IPv4-mapped IPv6 network also holds the IPv4 addresses it maps, as in Go.
fn parse_cidr(s: &str) -> Option<IpNet> {
    let (addr, prefix) = s.split_once('/')?;
    // The standard parser refuses IPv4 octets with leading zeros, as Go does; the prefix
    // length may have them.
    let addr: IpAddr = addr.parse().ok()?;
    if prefix.is_empty() || prefix.len() > 8 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let net = IpNet::new(addr, prefix.parse().ok()?).ok()?;
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            return Ipv4Net::new(v4, v6.prefix_len() - 96).ok().map(IpNet::V4);
        }
    }
    Some(net)
}

/// A clock time as Go parses the layout `15:04:05`: an hour of one or two digits, two-digit
/// minutes and seconds, optionally a fraction of a second (ignored, as nats-server uses
/// whole seconds).
fn parse_clock(s: &str) -> Option<Time> {
    let b = s.as_bytes();
    let digit = |i: usize| b.get(i).filter(|c| c.is_ascii_digit()).map(|c| c - b'0');
    let (hour, rest) = match (digit(0), digit(1)) {
        (Some(h1), Some(h2)) => (h1 * 10 + h2, 2),
        (Some(h), None) => (h, 1),
        _ => return None,
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    if b.get(rest) != Some(&b':') || b.get(rest + 3) != Some(&b':') {
        return None;
    }
    let (minute, second) = (two(rest + 1)?, two(rest + 4)?);
    let mut end = rest + 6;
    if matches!(b.get(end), Some(b'.' | b',')) && digit(end + 1).is_some() {
        end += 1;
        while digit(end).is_some() {
            end += 1;
        }
    }
    if end != b.len() || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Time::new(hour as i8, minute as i8, second as i8, 0).ok()
}

/// A zone as Go's `time.LoadLocation` finds it: empty or `Local` is the server's own zone,
/// `UTC` is UTC, anything else a zone of the system's database, named with its exact case.
fn load_zone(name: &str) -> Option<TimeZone> {
    match name {
        "" | "Local" => Some(TimeZone::system()),
        "UTC" => Some(TimeZone::UTC),
        _ => TimeZone::get(name)
            .ok()
            .filter(|tz| tz.iana_name() == Some(name)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    fn limits(claims: serde_json::Value) -> Result<Option<LoginLimits>, InvalidLimits> {
        serde_json::from_value::<UserLimitsClaim>(claims)
            .unwrap()
            .compile()
    }

    fn at(rfc3339: &str) -> Timestamp {
        rfc3339.parse().unwrap()
    }

    #[test]
    fn sources_are_a_list_or_a_comma_separated_string() {
        let list: UserLimitsClaim =
            serde_json::from_value(serde_json::json!({ "src": ["10.0.0.0/8", "::1/128"] }))
                .unwrap();
        assert_eq!(list.src.0, vec!["10.0.0.0/8", "::1/128"]);
        let joined: UserLimitsClaim = serde_json::from_value(
            serde_json::json!({ "src": " 10.0.0.0/8,,FE80::/10, 10.0.0.0/8" }),
        )
        .unwrap();
        assert_eq!(joined.src.0, vec!["10.0.0.0/8", "fe80::/10"]);
        let none: UserLimitsClaim =
            serde_json::from_value(serde_json::json!({ "src": null })).unwrap();
        assert!(none.src.0.is_empty());
        assert!(limits(serde_json::json!({})).unwrap().is_none());
    }

    #[test]
    fn a_source_outside_every_network_is_refused() {
        let l = limits(serde_json::json!({ "src": ["10.1.2.3/8", "192.168.0.0/24"] }))
            .unwrap()
            .unwrap();
        let now = Timestamp::now();
        assert_eq!(l.admit("10.200.0.1".parse().unwrap(), now), Ok(None));
        assert_eq!(l.admit("192.168.0.255".parse().unwrap(), now), Ok(None));
        let outside: IpAddr = "192.168.1.1".parse().unwrap();
        assert_eq!(l.admit(outside, now), Err(LoginRefused::Source(outside)));
        assert_eq!(
            LoginRefused::Source(outside).to_string(),
            "Bad src Ip 192.168.1.1"
        );
        // An IPv4 client reached over an IPv6 socket is still the IPv4 client.
        assert_eq!(l.admit("::ffff:10.0.0.1".parse().unwrap(), now), Ok(None));
        // IPv6 networks hold no IPv4 clients, IPv4-mapped ones do.
        let v6 = limits(serde_json::json!({ "src": ["::/0"] }))
            .unwrap()
            .unwrap();
        assert!(v6.admit("127.0.0.1".parse().unwrap(), now).is_err());
        assert_eq!(v6.admit("::1".parse().unwrap(), now), Ok(None));
        let mapped = limits(serde_json::json!({ "src": ["::ffff:127.0.0.0/104"] }))
            .unwrap()
            .unwrap();
        assert_eq!(mapped.admit("127.0.0.1".parse().unwrap(), now), Ok(None));
    }

    #[test]
    fn claims_that_do_not_parse_invalidate_the_jwt() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "010.0.0.0/8",
            "host/8",
            " 10.0.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "fe80::1%eth0/64",
        ] {
            assert_eq!(
                limits(serde_json::json!({ "src": [bad] })).unwrap_err(),
                InvalidLimits::Cidr(bad.into()),
                "{bad}"
            );
        }
        for bad in [
            "",
            "24:00:00",
            "9:60:00",
            "09:00",
            "09:00:0",
            "09:00:00 ",
            "009:00:00",
            "09:00:00.",
        ] {
            assert!(
                limits(serde_json::json!({ "times": [{ "start": bad, "end": "10:00:00" }] }))
                    .is_err(),
                "{bad:?}"
            );
        }
        for good in [
            "9:00:00",
            "09:00:00",
            "23:59:59",
            "09:00:00.123",
            "09:00:00,5",
        ] {
            assert!(
                limits(serde_json::json!({ "times": [{ "start": good, "end": "10:00:00" }] }))
                    .is_ok(),
                "{good:?}"
            );
        }
        for good in ["10.0.0.1/08", "fe80::1/64", "0.0.0.0/0"] {
            assert!(
                limits(serde_json::json!({ "src": [good] })).is_ok(),
                "{good}"
            );
        }
        for bad in ["Mars/Olympus", "europe/berlin", "utc"] {
            assert_eq!(
                limits(serde_json::json!({ "times_location": bad })).unwrap_err(),
                InvalidLimits::Zone(bad.into())
            );
        }
        for good in ["Europe/Berlin", "UTC", "Local", "US/Pacific"] {
            assert!(
                limits(serde_json::json!({ "times_location": good })).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn time_windows_in_their_zone() {
        let l = limits(serde_json::json!({
            "times": [{ "start": "09:00:00", "end": "17:00:00" }],
            "times_location": "America/New_York"
        }))
        .unwrap()
        .unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        // 12:00 in New York (EST, UTC-5): five hours left.
        assert_eq!(
            l.admit(peer, at("2026-01-15T17:00:00Z")),
            Ok(Some(Duration::from_secs(5 * 3600)))
        );
        // 08:00 and 17:00 there: outside (the bounds are outside).
        assert_eq!(
            l.admit(peer, at("2026-01-15T13:00:00Z")),
            Err(LoginRefused::Times)
        );
        assert_eq!(
            l.admit(peer, at("2026-01-15T22:00:00Z")),
            Err(LoginRefused::Times)
        );
        // In summer (EDT, UTC-4) the same wall clock is an hour earlier in UTC.
        assert_eq!(
            l.admit(peer, at("2026-07-15T20:59:00Z")),
            Ok(Some(Duration::from_secs(60)))
        );
    }

    #[test]
    fn wall_clocks_in_dst_gaps_resolve_as_go_resolves_them() {
        let day = |d: &str| d.parse::<Date>().unwrap();
        let time = |t: &str| t.parse::<Time>().unwrap();
        let utc = |z: Option<Timestamp>| z.unwrap().to_string();
        // New York springs forward at 07:00 UTC: 02:30 does not exist; Go takes 01:30 EST.
        let ny = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            utc(wall_clock(&ny, day("2026-03-08"), time("02:30:00"))),
            "2026-03-08T06:30:00Z"
        );
        // Berlin springs forward at 01:00 UTC: Go takes 02:30 CET, the later instant.
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            utc(wall_clock(&berlin, day("2026-03-29"), time("02:30:00"))),
            "2026-03-29T01:30:00Z"
        );
        // New York falls back at 06:00 UTC: 01:30 happens twice; Go takes the first (EDT).
        assert_eq!(
            utc(wall_clock(&ny, day("2026-11-01"), time("01:30:00"))),
            "2026-11-01T05:30:00Z"
        );
        // An ordinary time.
        assert_eq!(
            utc(wall_clock(&berlin, day("2026-07-01"), time("12:00:00"))),
            "2026-07-01T10:00:00Z"
        );
    }

    #[test]
    fn windows_across_midnight_and_the_longest_of_several() {
        let l = limits(serde_json::json!({
            "times": [
                { "start": "22:00:00", "end": "06:00:00" },
                { "start": "05:00:00", "end": "07:00:00" }
            ],
            "times_location": "UTC"
        }))
        .unwrap()
        .unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            l.admit(peer, at("2026-03-01T23:30:00Z")),
            Ok(Some(Duration::from_secs(6 * 3600 + 1800)))
        );
        assert_eq!(
            l.admit(peer, at("2026-03-01T02:00:00Z")),
            Ok(Some(Duration::from_secs(4 * 3600)))
        );
        // Both hold at 05:30: the second lasts longer.
        assert_eq!(
            l.admit(peer, at("2026-03-01T05:30:00Z")),
            Ok(Some(Duration::from_secs(5400)))
        );
        assert_eq!(
            l.admit(peer, at("2026-03-01T12:00:00Z")),
            Err(LoginRefused::Times)
        );
    }

    #[test]
    fn source_is_checked_before_times() {
        let l = limits(serde_json::json!({
            "src": ["10.0.0.0/8"],
            "times": [{ "start": "00:00:00", "end": "00:00:01" }],
            "times_location": "UTC"
        }))
        .unwrap()
        .unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            l.admit(peer, at("2026-03-01T12:00:00Z")),
            Err(LoginRefused::Source(peer))
        );
    }
}
