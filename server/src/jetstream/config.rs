//! Stream configuration as clients send it (`StreamConfig` JSON), with nats-server's defaults
//! and validation, plus the JSON time format the API uses.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::js_errors::{ApiError, JsError};
use crate::store::{Discard, StorageType, StoreLimits};

/// Default `duplicate_window`: two minutes.
pub const DEFAULT_DUPLICATE_WINDOW: u64 = 120_000_000_000;
/// JetStream API level we implement (as nats-server 2.15).
pub const API_LEVEL: &str = "5";

/// `retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Keep messages until limits remove them.
    #[default]
    Limits,
    /// Keep messages while some consumer still has to see them.
    Interest,
    /// Each message is consumed once.
    Workqueue,
}

/// `storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// File store.
    #[default]
    File,
    /// Memory store.
    Memory,
}

impl From<Storage> for StorageType {
    fn from(s: Storage) -> Self {
        match s {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        }
    }
}

/// `discard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DiscardPolicy {
    /// Evict the oldest.
    #[default]
    Old,
    /// Refuse the new message.
    New,
}

fn minus_one() -> i64 {
    -1
}
fn one() -> i64 {
    1
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn compression_none() -> String {
    "none".to_string()
}

/// A stream's configuration, in nats-server's field order so replies read the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamConfig {
    /// Stream name.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Captured subjects (default `[name]`).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Retention policy.
    #[serde(default)]
    pub retention: Retention,
    /// -1 = unlimited.
    #[serde(default = "minus_one")]
    pub max_consumers: i64,
    /// -1 = unlimited.
    #[serde(default = "minus_one")]
    pub max_msgs: i64,
    /// -1 = unlimited.
    #[serde(default = "minus_one")]
    pub max_bytes: i64,
    /// Nanoseconds, 0 = unlimited.
    #[serde(default)]
    pub max_age: i64,
    /// -1 = unlimited.
    #[serde(default = "minus_one")]
    pub max_msgs_per_subject: i64,
    /// -1 = unlimited.
    #[serde(default = "minus_one")]
    pub max_msg_size: i64,
    /// Discard policy.
    #[serde(default)]
    pub discard: DiscardPolicy,
    /// Storage type.
    #[serde(default)]
    pub storage: Storage,
    /// Always 1 here (no clustering).
    #[serde(default = "one")]
    pub num_replicas: i64,
    /// Nanoseconds; 0 in a request means the default.
    #[serde(default)]
    pub duplicate_window: i64,
    /// `none` only.
    #[serde(default = "compression_none")]
    pub compression: String,
    /// Serve `$JS.API.DIRECT.GET`.
    #[serde(default)]
    pub allow_direct: bool,
    /// Mirror direct get.
    #[serde(default)]
    pub mirror_direct: bool,
    /// No more changes.
    #[serde(default)]
    pub sealed: bool,
    /// Refuse MSG.DELETE.
    #[serde(default)]
    pub deny_delete: bool,
    /// Refuse PURGE.
    #[serde(default)]
    pub deny_purge: bool,
    /// Honour `Nats-Rollup`.
    #[serde(default)]
    pub allow_rollup_hdrs: bool,
    /// Defaults for consumers (kept as given).
    #[serde(default = "empty_object")]
    pub consumer_limits: serde_json::Value,
    /// Per-message TTLs (`Nats-TTL`).
    #[serde(default)]
    pub allow_msg_ttl: bool,
    /// Store without sending PubAcks.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_ack: bool,
    /// With discard new: refuse per subject.
    #[serde(default, skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    /// User metadata (the server adds `_nats.*` keys in replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Features this server does not act on are kept verbatim so they read back unchanged;
    /// `mirror`, `sources`, `republish` and `subject_transform` are refused when set (api.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<serde_json::Value>,
    /// Kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<serde_json::Value>,
    /// Kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<serde_json::Value>,
    /// Kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<serde_json::Value>,
    /// Kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<serde_json::Value>,
    /// The sequence a new stream starts at (applied at creation only, as nats-server does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn bad_name(name: &str) -> bool {
    name.is_empty()
        || name
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | '\\' | '/') || c.is_whitespace())
}

/// Is `name` usable as a stream name?
pub fn valid_stream_name(name: &str) -> bool {
    !bad_name(name) && name.len() <= 255
}

impl StreamConfig {
    /// Applies nats-server's defaults and checks the config, as on create and update.
    pub fn normalize(&mut self) -> Result<(), ApiError> {
        if !valid_stream_name(&self.name) {
            return Err(JsError::StreamInvalidConfig
                .with("stream name is required and can not contain '.', '*', '>', '\\', '/'"));
        }
        if self.num_replicas == 0 {
            self.num_replicas = 1;
        }
        if self.num_replicas > 1 {
            return Err(JsError::StreamReplicasNotSupported.into());
        }
        if self.num_replicas < 0 {
            return Err(JsError::StreamInvalidConfig.with("replicas must be 1"));
        }
        for v in [
            &mut self.max_msgs,
            &mut self.max_bytes,
            &mut self.max_consumers,
            &mut self.max_msgs_per_subject,
            &mut self.max_msg_size,
        ] {
            if *v == 0 {
                *v = -1;
            }
            if *v < -1 {
                *v = -1;
            }
        }
        if self.max_age < 0 {
            return Err(JsError::StreamInvalidConfig.with("max age needs to be >= 100ms"));
        }
        if self.max_age != 0 && self.max_age < 100_000_000 {
            return Err(JsError::StreamInvalidConfig.with("max age needs to be >= 100ms"));
        }
        if self.duplicate_window < 0 {
            return Err(JsError::StreamInvalidConfig.with("duplicates window must be positive"));
        }
        if self.duplicate_window == 0 {
            self.duplicate_window =
                if self.max_age != 0 && (self.max_age as u64) < DEFAULT_DUPLICATE_WINDOW {
                    self.max_age
                } else {
                    DEFAULT_DUPLICATE_WINDOW as i64
                };
        }
        if self.max_age != 0 && self.duplicate_window > self.max_age {
            return Err(JsError::StreamInvalidConfig
                .with("duplicates window can not be larger then max age"));
        }
        if self.compression.is_empty() {
            self.compression = compression_none();
        }
        if self.compression != "none" && self.compression != "s2" {
            return Err(
                JsError::InvalidJSON.with(format!("can not unmarshal {:?}", self.compression))
            );
        }
        if self.subjects.is_empty() && self.mirror.is_none() {
            self.subjects = vec![self.name.clone()];
        }
        for (i, s) in self.subjects.iter().enumerate() {
            if !crate::subject::is_valid_subject(s.as_bytes()) {
                return Err(JsError::StreamInvalidConfig.with(format!("invalid subject: {s}")));
            }
            if self.subjects[..i].iter().any(|o| o == s) {
                return Err(JsError::StreamInvalidConfig.with("duplicate subjects detected"));
            }
            if !self.no_ack && crate::subject::collide(s.as_bytes(), b"$JS.API.>") {
                return Err(JsError::StreamInvalidConfig
                    .with("subjects that overlap with jetstream api require no-ack to be true"));
            }
        }
        if self.max_msgs_per_subject != -1
            && self.discard_new_per_subject
            && self.discard != DiscardPolicy::New
        {
            return Err(JsError::StreamInvalidConfig
                .with("discard new per subject requires discard new policy to be set"));
        }
        if let Some(md) = &mut self.metadata {
            md.retain(|k, _| !k.starts_with("_nats."));
            if md.is_empty() {
                self.metadata = None;
            }
        }
        if self.consumer_limits.is_null() {
            self.consumer_limits = empty_object();
        }
        Ok(())
    }

    /// What the store enforces.
    pub fn store_limits(&self) -> StoreLimits {
        let pos = |v: i64| (v > 0).then_some(v as u64);
        StoreLimits {
            max_msgs: pos(self.max_msgs),
            max_bytes: pos(self.max_bytes),
            max_age: (self.max_age > 0).then(|| Duration::from_nanos(self.max_age as u64)),
            max_msgs_per_subject: pos(self.max_msgs_per_subject),
            max_msg_size: pos(self.max_msg_size),
            discard: match self.discard {
                DiscardPolicy::Old => Discard::Old,
                DiscardPolicy::New => Discard::New,
            },
            discard_new_per_subject: self.discard_new_per_subject,
        }
    }

    /// The config as replies show it: the user's metadata plus the server's `_nats.*` keys
    /// (LIST shows only `_nats.req.level`).
    pub fn for_reply(&self, with_versions: bool) -> StreamConfig {
        let mut out = self.clone();
        let mut md = self.metadata.clone().unwrap_or_default();
        if with_versions {
            md.insert("_nats.level".into(), API_LEVEL.into());
            md.insert(
                "_nats.ver".into(),
                crate::server::NATS_COMPAT_VERSION.into(),
            );
        }
        md.insert("_nats.req.level".into(), "0".into());
        out.metadata = Some(md);
        out
    }
}

/// RFC3339 with nanoseconds and Go's trimming of trailing zeros; 0 is Go's zero time.
pub fn format_ts(ns: u64) -> String {
    if ns == 0 {
        return "0001-01-01T00:00:00Z".to_string();
    }
    let secs = (ns / 1_000_000_000) as i64;
    let nanos = (ns % 1_000_000_000) as u32;
    let Some(dt) = DateTime::<Utc>::from_timestamp(secs, nanos) else {
        return "0001-01-01T00:00:00Z".to_string();
    };
    let base = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

/// Parses [`format_ts`] output (and any RFC3339) back to ns.
pub fn parse_ts(s: &str) -> Option<u64> {
    if s == "0001-01-01T00:00:00Z" {
        return Some(0);
    }
    let dt = DateTime::parse_from_rfc3339(s).ok()?;
    dt.timestamp_nanos_opt().map(|n| n.max(0) as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_nats_server_defaults() {
        let mut c: StreamConfig = serde_json::from_str(r#"{"name":"S1"}"#).unwrap();
        c.normalize().unwrap();
        let v = c.for_reply(true);
        let expected = r#"{"name":"S1","subjects":["S1"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"old","storage":"file","num_replicas":1,"duplicate_window":120000000000,"compression":"none","allow_direct":false,"mirror_direct":false,"sealed":false,"deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false,"consumer_limits":{},"allow_msg_ttl":false,"metadata":{"_nats.level":"5","_nats.req.level":"0","_nats.ver":"2.15.1"}}"#;
        assert_eq!(serde_json::to_string(&v).unwrap(), expected);
    }

    #[test]
    fn short_max_age_shrinks_the_duplicate_window() {
        let mut c: StreamConfig =
            serde_json::from_str(r#"{"name":"S","max_age":30000000000}"#).unwrap();
        c.normalize().unwrap();
        assert_eq!(c.duplicate_window, 30_000_000_000);
        let mut bad: StreamConfig = serde_json::from_str(r#"{"name":"S","max_age":1000}"#).unwrap();
        assert_eq!(bad.normalize().unwrap_err().err_code, 10052);
    }

    #[test]
    fn timestamps_trim_like_go() {
        assert_eq!(format_ts(0), "0001-01-01T00:00:00Z");
        assert_eq!(format_ts(1_500_000_000), "1970-01-01T00:00:01.5Z");
        assert_eq!(
            parse_ts(&format_ts(1_795_784_752_850_644_583)),
            Some(1_795_784_752_850_644_583)
        );
    }
}
