//! Stream configuration as clients send it (`StreamConfig` JSON), with nats-server's defaults
//! and validation, plus the JSON time format the API uses.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::js_errors::{ApiError, JsError};
use crate::json::{cannot_unmarshal, go_enum, NameCase};
use crate::store::{Discard, StorageType, StoreLimits};
use crate::subject_transform::SubjectTransform;

/// Default `duplicate_window`: two minutes.
pub(crate) const DEFAULT_DUPLICATE_WINDOW: u64 = 120_000_000_000;
/// JetStream API level we implement (as nats-server 2.15).
pub(crate) const API_LEVEL: &str = "5";

/// `retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Retention {
    /// Keep messages until limits remove them.
    #[default]
    Limits,
    /// Keep messages while some consumer still has to see them.
    Interest,
    /// Each message is consumed once.
    Workqueue,
}

/// `storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Storage {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DiscardPolicy {
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

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = [
            ("limits", Retention::Limits),
            ("interest", Retention::Interest),
            ("workqueue", Retention::Workqueue),
        ];
        go_enum(d, &names, NameCase::Exact, cannot_unmarshal)
    }
}

impl<'de> Deserialize<'de> for Storage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = [("file", Storage::File), ("memory", Storage::Memory)];
        go_enum(d, &names, NameCase::Exact, cannot_unmarshal)
    }
}

impl<'de> Deserialize<'de> for DiscardPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = [("old", DiscardPolicy::Old), ("new", DiscardPolicy::New)];
        go_enum(d, &names, NameCase::Folded, cannot_unmarshal)
    }
}

/// `compression` as a request gives it: only `none` and `s2`, never empty or `null`.
fn compression_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let names = [("none", "none"), ("s2", "s2")];
    // Go reads the member into a string first: a number, bool, object or array fails there.
    go_enum(d, &names, NameCase::Exact, |raw| {
        let kind = match raw.as_bytes().first() {
            Some(b'"' | b'n') => return "unknown compression algorithm".to_string(),
            Some(b't' | b'f') => "bool",
            Some(b'{') => "object",
            Some(b'[') => "array",
            _ => "number",
        };
        format!("json: cannot unmarshal {kind} into Go value of type string")
    })
    .map(str::to_string)
}

/// `subject_transform`, and each of a source's `subject_transforms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct SubjectTransformConfig {
    /// Filter the transform applies to (empty = `>`).
    #[serde(default)]
    pub src: String,
    /// Destination pattern.
    #[serde(default)]
    pub dest: String,
}

/// `republish`: stored messages are also published on a transformed subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct RePublish {
    /// Which stored subjects (empty = `>`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub src: String,
    /// Destination pattern.
    #[serde(default)]
    pub dest: String,
    /// Publish the headers only, with `Nats-Msg-Size`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub headers_only: bool,
}

/// A source or mirror in another account (or domain): where its API and deliveries are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct ExternalStream {
    /// API prefix standing for `$JS.API` of the origin.
    #[serde(default)]
    pub api: String,
    /// Prefix of the subjects deliveries arrive on.
    #[serde(default)]
    pub deliver: String,
}

/// A durable consumer on the origin that sourcing reads through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct StreamConsumerSource {
    /// Consumer name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its deliver subject.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deliver_subject: String,
}

/// One `sources` entry, or the `mirror`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct StreamSource {
    /// The origin stream.
    #[serde(default)]
    pub name: String,
    /// First origin sequence to copy (a new stream only).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub opt_start_seq: u64,
    /// Copy messages stored at or after this time (a new stream only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// Only subjects matching this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    /// Filters with a transform each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_transforms: Vec<SubjectTransformConfig>,
    /// Origin in another account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStream>,
    /// Read through this durable consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<StreamConsumerSource>,
}

/// `persist_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PersistMode {
    /// Acknowledge once the store has the message (default).
    #[default]
    Default,
    /// Acknowledge before the write is flushed.
    Async,
}

impl PersistMode {
    fn is_default(&self) -> bool {
        *self == PersistMode::Default
    }
}

impl Serialize for PersistMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            PersistMode::Default => "default",
            PersistMode::Async => "async",
        })
    }
}

impl<'de> Deserialize<'de> for PersistMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = [
            ("default", PersistMode::Default),
            ("", PersistMode::Default),
            ("async", PersistMode::Async),
        ];
        go_enum(d, &names, NameCase::Exact, cannot_unmarshal)
    }
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// `consumer_limits`: defaults and ceilings for the stream's consumers (0 = none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConsumerLimits {
    /// ns.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub inactive_threshold: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_ack_pending: i64,
}

/// A stream's configuration, in nats-server's field order so replies read the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StreamConfig {
    /// Stream name.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Captured subjects (default `[name]`; none for mirrors and sourcing streams).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
    /// Store without sending PubAcks.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_ack: bool,
    /// Nanoseconds; 0 in a request means the default (mirrors and sources keep 0).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub duplicate_window: i64,
    /// Kept verbatim (one server: nothing to place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<serde_json::Value>,
    /// Copy another stream, sequence for sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    /// Copy messages from other streams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<StreamSource>,
    /// `none` or `s2`.
    #[serde(default = "compression_none", deserialize_with = "compression_name")]
    pub compression: String,
    /// The sequence a new stream starts at (applied at creation only, as nats-server does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    /// Rewrites the subject of every captured message before anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransformConfig>,
    /// Publishes stored messages again on another subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<RePublish>,
    /// Serve `$JS.API.DIRECT.GET`.
    #[serde(default)]
    pub allow_direct: bool,
    /// Mirror direct get.
    #[serde(default)]
    pub mirror_direct: bool,
    /// With discard new: refuse per subject.
    #[serde(default, skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
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
    #[serde(default)]
    pub consumer_limits: ConsumerLimits,
    /// Per-message TTLs (`Nats-TTL`).
    #[serde(default)]
    pub allow_msg_ttl: bool,
    /// Nanoseconds a subject delete marker lives; 0 = no markers.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub subject_delete_marker_ttl: i64,
    /// A counter stream: publishes carry `Nats-Incr` and the stream keeps totals.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_msg_counter: bool,
    /// Atomic batch publish (`Nats-Batch-Id`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_atomic: bool,
    /// Message schedules (`Nats-Schedule`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_msg_schedules: bool,
    /// When a PubAck may be sent relative to the write.
    #[serde(default, skip_serializing_if = "PersistMode::is_default")]
    pub persist_mode: PersistMode,
    /// Fast batch publish (reply subjects ending in `.$FI`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_batched: bool,
    /// User metadata (the server adds `_nats.*` keys in replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// A create/update request's pedantic mode: refuse rather than adjust (taken out of the
    /// config before it is checked, never stored).
    #[serde(default, skip_serializing)]
    pub pedantic: bool,
}

fn bad_name(name: &str) -> bool {
    name.is_empty()
        || name
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | '\\' | '/') || c.is_whitespace())
}

/// Is `name` usable as a stream name?
pub(crate) fn valid_stream_name(name: &str) -> bool {
    !bad_name(name) && name.len() <= 255
}

impl StreamConfig {
    /// Applies nats-server's defaults and checks the config, as on create and update, in
    /// nats-server's order (the first failing check decides the error). Checks that need the
    /// account (origins of mirrors and sources, cycles, overlaps) are in `api.rs`.
    pub(crate) fn normalize(&mut self) -> Result<(), ApiError> {
        self.normalize_as(false)
    }

    /// [`Self::normalize`]; `pedantic` (a request's pedantic mode) refuses, as nats-server
    /// does, where a default would otherwise replace or add to what the request said.
    pub(crate) fn normalize_as(&mut self, pedantic: bool) -> Result<(), ApiError> {
        if !valid_stream_name(&self.name) {
            return Err(JsError::StreamInvalidConfig
                .with("stream name is required and can not contain '.', '*', '>', '\\', '/'"));
        }
        if self.description.as_ref().is_some_and(|d| d.len() > 4096) {
            return Err(JsError::StreamInvalidConfig
                .with("stream description is too long, maximum allowed is 4096"));
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
        for (v, name) in [
            (&mut self.max_msgs, "max_msgs"),
            (&mut self.max_msgs_per_subject, "max_msgs_per_subject"),
            (&mut self.max_bytes, "max_bytes"),
            (&mut self.max_msg_size, "max_msg_size"),
            (&mut self.max_consumers, "max_consumers"),
        ] {
            if pedantic && *v < -1 {
                return Err(JsError::Pedantic.with(format!("{name} must be set to -1")));
            }
            if *v == 0 || *v < -1 {
                *v = -1;
            }
        }
        if self.max_age < 0 {
            return Err(JsError::StreamInvalidConfig.with("max age can not be negative"));
        }
        if self.max_age != 0 && self.max_age < 100_000_000 {
            return Err(JsError::StreamInvalidConfig.with("max age needs to be >= 100ms"));
        }
        // Copies take the origin's Msg-Ids as they are: no window of their own by default.
        if self.duplicate_window == 0 && self.mirror.is_none() && self.sources.is_empty() {
            let shorter_age = self.max_age != 0 && (self.max_age as u64) < DEFAULT_DUPLICATE_WINDOW;
            if shorter_age && pedantic {
                return Err(
                    JsError::Pedantic.with("duplicate window cannot be bigger than max age")
                );
            }
            self.duplicate_window = if shorter_age {
                self.max_age
            } else {
                DEFAULT_DUPLICATE_WINDOW as i64
            };
        }
        if self.duplicate_window < 0 {
            return Err(JsError::StreamInvalidConfig.with("duplicates window can not be negative"));
        }
        if self.max_age != 0 && self.duplicate_window > self.max_age {
            return Err(JsError::StreamInvalidConfig
                .with("duplicates window can not be larger then max age"));
        }
        if self.duplicate_window > 0 && self.duplicate_window < 100_000_000 {
            return Err(JsError::StreamInvalidConfig.with("duplicates window needs to be >= 100ms"));
        }
        if self.deny_purge && self.allow_rollup_hdrs {
            return Err(JsError::StreamInvalidConfig.with("roll-ups require the purge permission"));
        }
        if self.discard_new_per_subject {
            if self.discard != DiscardPolicy::New {
                return Err(JsError::StreamInvalidConfig
                    .with("discard new per subject requires discard new policy to be set"));
            }
            if self.max_msgs_per_subject <= 0 {
                return Err(JsError::StreamInvalidConfig
                    .with("discard new per subject requires max msgs per subject > 0"));
            }
        }
        if self.subject_delete_marker_ttl > 0 {
            if self.subject_delete_marker_ttl < 1_000_000_000 {
                return Err(JsError::StreamInvalidConfig
                    .with("subject delete marker TTL must be at least 1 second"));
            }
            // Markers are messages with a TTL that roll up their subject. (Pedantic refusals
            // here are 10052 on nats-server, not 10157.)
            if !self.allow_msg_ttl {
                if pedantic {
                    return Err(JsError::StreamInvalidConfig
                        .with("subject delete marker cannot be set if message TTLs are disabled"));
                }
                self.allow_msg_ttl = true;
            }
            if !self.allow_rollup_hdrs {
                if pedantic {
                    return Err(JsError::StreamInvalidConfig
                        .with("subject delete marker cannot be set if roll-ups are disabled"));
                }
                self.allow_rollup_hdrs = true;
                self.deny_purge = false;
            }
        } else if self.subject_delete_marker_ttl < 0 {
            return Err(
                JsError::StreamInvalidConfig.with("subject delete marker TTL must not be negative")
            );
        }
        if self.allow_msg_schedules {
            if self.discard == DiscardPolicy::New {
                return Err(
                    JsError::StreamInvalidConfig.with("message scheduling cannot use discard new")
                );
            }
            // A schedule replaces its subject's previous schedule by a roll-up.
            if !self.allow_rollup_hdrs {
                if pedantic {
                    return Err(JsError::StreamInvalidConfig
                        .with("message scheduling cannot be set if roll-ups are disabled"));
                }
                self.allow_rollup_hdrs = true;
                self.deny_purge = false;
            }
        }
        if self.persist_mode == PersistMode::Async {
            if self.storage != Storage::File {
                return Err(JsError::StreamInvalidConfig
                    .with("async persist mode is only supported on file storage"));
            }
            if self.allow_atomic {
                return Err(JsError::StreamInvalidConfig
                    .with("async persist mode is not supported with atomic batch publish"));
            }
        }
        super::sourcing::check_config(self)?;
        if self.subjects.is_empty() {
            if self.mirror.is_none() && self.sources.is_empty() {
                self.subjects = vec![self.name.clone()];
            }
        } else {
            if self.mirror.is_some() {
                return Err(ApiError::from(JsError::MirrorWithSubjects));
            }
            self.check_subjects()?;
        }
        if self.subjects.is_empty() && self.sources.is_empty() && self.mirror.is_none() {
            return Err(JsError::StreamInvalidConfig
                .with("stream needs at least one configured subject or be a source/mirror"));
        }
        if let Some(t) = &self.subject_transform {
            if !t.src.is_empty() && !crate::subject::is_valid_subject(t.src.as_bytes()) {
                return Err(JsError::StreamTransformInvalidSource
                    .with(format!("invalid subject {}", t.src)));
            }
            SubjectTransform::validate(&t.src, &t.dest)
                .map_err(|e| JsError::StreamTransformInvalidDestination.with(e))?;
        }
        self.check_republish(pedantic)?;
        if self
            .placement
            .as_ref()
            .is_some_and(|p| p.is_null() || p.as_object().is_some_and(|o| o.is_empty()))
        {
            self.placement = None;
        }
        if self.compression.is_empty() {
            self.compression = compression_none();
        }
        if self.compression != "none" && self.compression != "s2" {
            return Err(JsError::InvalidJSON.with("unknown compression algorithm"));
        }
        if self.allow_msg_counter {
            let bad = if self.discard == DiscardPolicy::New {
                Some("counter stream cannot use discard new")
            } else if self.allow_msg_ttl {
                Some("counter stream cannot use message TTLs")
            } else if self.retention != Retention::Limits {
                Some("counter stream can only use limits retention")
            } else {
                None
            };
            if let Some(why) = bad {
                return Err(JsError::StreamInvalidConfig.with(why));
            }
            if self.mirror.is_some() {
                return Err(JsError::MirrorWithCounters.into());
            }
        }
        if let Some(md) = &mut self.metadata {
            md.retain(|k, _| !k.starts_with("_nats."));
            if md.is_empty() {
                self.metadata = None;
            }
        }
        Ok(())
    }

    /// Subject validity, duplicates and overlaps, and the reserved subject spaces.
    fn check_subjects(&self) -> Result<(), ApiError> {
        use crate::subject::{collide, is_subset, is_valid_subject};
        for (i, s) in self.subjects.iter().enumerate() {
            let b = s.as_bytes();
            if !is_valid_subject(b) {
                return Err(JsError::StreamInvalidConfig.with("invalid subject"));
            }
            if self.subjects[..i].iter().any(|o| o == s) {
                return Err(JsError::StreamInvalidConfig.with("duplicate subjects detected"));
            }
            if s == ">" && !self.no_ack {
                return Err(JsError::StreamInvalidConfig
                    .with("capturing all subjects requires no-ack to be true"));
            }
            if !self.no_ack {
                let api = [b"$JS.>".as_slice(), b"$JSC.>", b"$NRG.>"]
                    .iter()
                    .any(|ns| collide(b, ns))
                    && !is_subset(b, b"$JS.EVENT.>");
                if api {
                    return Err(JsError::StreamInvalidConfig.with(
                        "subjects that overlap with jetstream api require no-ack to be true",
                    ));
                }
                if collide(b, b"$SYS.>") && !is_subset(b, b"$SYS.ACCOUNT.>") {
                    return Err(JsError::StreamInvalidConfig
                        .with("subjects that overlap with system api require no-ack to be true"));
                }
            }
            if let Some(other) = self.subjects[i + 1..]
                .iter()
                .find(|o| collide(o.as_bytes(), b))
            {
                return Err(JsError::StreamInvalidConfig
                    .with(format!("subject {s:?} overlaps with {other:?}")));
            }
        }
        Ok(())
    }

    /// `republish`: an empty source means `>`, and the destination must not feed back
    /// into the stream.
    fn check_republish(&mut self, pedantic: bool) -> Result<(), ApiError> {
        let Some(rp) = &mut self.republish else {
            return Ok(());
        };
        if rp.src.is_empty() {
            if pedantic {
                return Err(JsError::Pedantic.with("republish source can not be empty"));
            }
            rp.src = ">".into();
        }
        // `>` to `>` would loop, unless the stream's only subject is transformed: then the
        // transformed subjects are what gets republished.
        if let Some(t) = &self.subject_transform {
            if rp.src == ">"
                && rp.dest == ">"
                && self.subjects.len() == 1
                && t.src == self.subjects[0]
            {
                if pedantic {
                    return Err(
                        JsError::Pedantic.with("implicit republish based on subject transform")
                    );
                }
                rp.src = t.dest.clone();
                rp.dest = t.dest.clone();
            }
        }
        if self
            .subjects
            .iter()
            .any(|s| crate::subject::collide(rp.dest.as_bytes(), s.as_bytes()))
        {
            return Err(JsError::StreamInvalidConfig
                .with("stream configuration for republish destination forms a cycle"));
        }
        if rp.dest.is_empty() || SubjectTransform::new(&rp.src, &rp.dest).is_err() {
            return Err(JsError::StreamInvalidConfig.with(format!(
                "stream configuration for republish with transform from '{}' to '{}' not valid",
                rp.src, rp.dest
            )));
        }
        Ok(())
    }

    /// `consumer_limits` as `(max_ack_pending, inactive_threshold ns)`, 0 where unset.
    pub(crate) fn consumer_limits(&self) -> (i64, i64) {
        let l = &self.consumer_limits;
        (l.max_ack_pending, l.inactive_threshold)
    }

    /// What the store enforces.
    pub(crate) fn store_limits(&self) -> StoreLimits {
        let pos = |v: i64| (v > 0).then_some(v as u64);
        StoreLimits {
            max_msgs: pos(self.max_msgs),
            max_bytes: pos(self.max_bytes),
            // With subject delete markers the stream expires by age itself (markers are
            // messages the store cannot write).
            max_age: (self.max_age > 0 && self.subject_delete_marker_ttl <= 0)
                .then(|| Duration::from_nanos(self.max_age as u64)),
            max_msgs_per_subject: pos(self.max_msgs_per_subject),
            max_msg_size: pos(self.max_msg_size),
            discard: match self.discard {
                DiscardPolicy::Old => Discard::Old,
                DiscardPolicy::New => Discard::New,
            },
            discard_new_per_subject: self.discard_new_per_subject,
        }
    }

    /// The API level a server needs to run this stream as configured (nats-server's
    /// `_nats.req.level`): 1 for per-message TTLs, 2 for counters.
    pub(crate) fn required_api_level(&self) -> u8 {
        if self.allow_msg_counter {
            2
        } else if self.allow_msg_ttl {
            1
        } else {
            0
        }
    }

    /// The config as replies show it: the user's metadata plus the server's `_nats.*` keys
    /// (LIST shows only `_nats.req.level`).
    pub(crate) fn for_reply(&self, with_versions: bool) -> StreamConfig {
        let mut out = self.clone();
        let mut md = self.metadata.clone().unwrap_or_default();
        if with_versions {
            md.insert("_nats.level".into(), API_LEVEL.into());
            md.insert(
                "_nats.ver".into(),
                crate::server::NATS_COMPAT_VERSION.into(),
            );
        }
        md.insert(
            "_nats.req.level".into(),
            self.required_api_level().to_string(),
        );
        out.metadata = Some(md);
        out
    }
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
}
