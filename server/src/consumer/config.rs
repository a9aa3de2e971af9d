//! Consumer configuration as clients send it (`ConsumerConfig` JSON), nats-server's
//! server-filled defaults, validation with the real error codes, and the info types
//! (`ConsumerInfo`, `SequenceInfo`) the API replies carry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::js_errors::{ApiError, JsError};
use crate::json::{cannot_unmarshal, go_enum, NameCase};
use crate::subject;
use natsd_conf::timestamp::parse_rfc3339_ns;

/// Default `ack_wait`: 30 s in ns.
pub(crate) const DEFAULT_ACK_WAIT: i64 = 30_000_000_000;
/// Default `max_ack_pending` when acks are on.
pub(crate) const DEFAULT_MAX_ACK_PENDING: i64 = 1000;
/// Default `max_waiting` for pull consumers.
pub(crate) const DEFAULT_MAX_WAITING: i64 = 512;
/// Default `priority_timeout` of a pinned-client consumer: 2 minutes.
pub(crate) const DEFAULT_PINNED_TTL: i64 = 120_000_000_000;
/// Default `inactive_threshold` for ephemeral (and named non-durable) consumers: 5 s.
pub(crate) const DEFAULT_INACTIVE_THRESHOLD: i64 = 5_000_000_000;
/// Longest consumer name nats-server accepts.
pub(crate) const MAX_NAME_LEN: usize = 255;
/// Longest description.
pub(crate) const MAX_DESCRIPTION_LEN: usize = 4096;
/// Metadata size limit (keys + values).
pub(crate) const MAX_METADATA_LEN: usize = 128 * 1024;

/// `deliver_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliverPolicy {
    /// From the first message.
    #[default]
    All,
    /// The last message (of the filter).
    Last,
    /// Only messages stored after creation.
    New,
    /// From `opt_start_seq`.
    ByStartSequence,
    /// From the first message at or after `opt_start_time`.
    ByStartTime,
    /// The last message of every subject matching the filter, then new ones.
    LastPerSubject,
}

/// `ack_policy`. Left out of a request it is `none` (Go's zero value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AckPolicy {
    /// No acks: delivered means done.
    #[default]
    None,
    /// An ack acknowledges every lower sequence too.
    All,
    /// Every message is acked by itself.
    Explicit,
    /// Like `all`, but acknowledged by the answers to flow-control requests, which carry the
    /// last delivered sequences (push consumers that copy a stream, as sources do).
    FlowControl,
}

/// The idle heartbeat a flow-control-acked consumer must use (nats-server's source health
/// interval): 1 s.
pub(crate) const ACK_FLOW_CONTROL_HEARTBEAT: i64 = 1_000_000_000;

/// `replay_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReplayPolicy {
    /// As fast as possible.
    #[default]
    Instant,
    /// At the pace the messages were stored.
    Original,
}

/// `priority_policy`: how a pull consumer's priority group chooses among waiting requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PriorityPolicy {
    /// No priority groups.
    #[default]
    None,
    /// Requests with `min_pending` / `min_ack_pending` are served only past those marks.
    Overflow,
    /// One client (the pinned one, with its `Nats-Pin-Id`) gets every message until its pin
    /// expires (`priority_timeout`) or is unpinned.
    PinnedClient,
    /// Requests with a lower `priority` are served first.
    Prioritized,
}

impl<'de> Deserialize<'de> for DeliverPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = [
            ("all", DeliverPolicy::All),
            ("undefined", DeliverPolicy::All),
            ("last", DeliverPolicy::Last),
            ("new", DeliverPolicy::New),
            ("by_start_sequence", DeliverPolicy::ByStartSequence),
            ("by_start_time", DeliverPolicy::ByStartTime),
            ("last_per_subject", DeliverPolicy::LastPerSubject),
        ];
        go_enum(d, &names, NameCase::Exact, cannot_unmarshal)
    }
}

impl<'de> Deserialize<'de> for AckPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = [
            ("none", AckPolicy::None),
            ("all", AckPolicy::All),
            ("explicit", AckPolicy::Explicit),
            ("flow_control", AckPolicy::FlowControl),
        ];
        go_enum(d, &names, NameCase::Exact, cannot_unmarshal)
    }
}

impl<'de> Deserialize<'de> for ReplayPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = [
            ("instant", ReplayPolicy::Instant),
            ("original", ReplayPolicy::Original),
        ];
        go_enum(d, &names, NameCase::Exact, cannot_unmarshal)
    }
}

impl<'de> Deserialize<'de> for PriorityPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = [
            ("none", PriorityPolicy::None),
            ("overflow", PriorityPolicy::Overflow),
            ("pinned_client", PriorityPolicy::PinnedClient),
            ("prioritized", PriorityPolicy::Prioritized),
        ];
        go_enum(d, &names, NameCase::Exact, |raw| {
            format!("unknown priority policy: {raw}")
        })
    }
}

impl PriorityPolicy {
    fn is_none(&self) -> bool {
        *self == PriorityPolicy::None
    }
}

/// A priority group name: 1 to 16 of `A-Z a-z 0-9 / _ = -`.
pub(crate) fn is_valid_group_name(name: &str) -> bool {
    (1..=16).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'=' | b'-'))
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// A consumer's configuration, in nats-server's field order so replies read the same.
/// Durations are integers in nanoseconds, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct ConsumerConfig {
    /// Durable name (set for durables only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub durable_name: String,
    /// Name (durables: equal to `durable_name`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Where delivery starts.
    #[serde(default)]
    pub deliver_policy: DeliverPolicy,
    /// Start sequence for `by_start_sequence`.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub opt_start_seq: u64,
    /// Start time (RFC 3339) for `by_start_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// How messages are acknowledged.
    #[serde(default)]
    pub ack_policy: AckPolicy,
    /// Redelivery delay for unacked messages, ns.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ack_wait: i64,
    /// Delivery attempts per message; -1 unlimited.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_deliver: i64,
    /// Redelivery delays per attempt, ns (overrides `ack_wait`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<i64>,
    /// One filter subject.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    /// Several non-overlapping filter subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    /// Replay pace.
    #[serde(default)]
    pub replay_policy: ReplayPolicy,
    /// Push rate limit, bits per second.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub rate_limit_bps: u64,
    /// Ack sampling (`"50%"`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sample_freq: String,
    /// Pull: most waiting requests.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_waiting: i64,
    /// Most unacknowledged messages in flight; -1 unlimited.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_ack_pending: i64,
    /// Push: flow control.
    #[serde(default, skip_serializing_if = "is_false")]
    pub flow_control: bool,
    /// Deliver headers only, with `Nats-Msg-Size`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub headers_only: bool,
    /// Pull: largest batch per request.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_batch: i64,
    /// Pull: longest `expires` per request, ns.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_expires: i64,
    /// Pull: largest `max_bytes` per request.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_bytes: i64,
    /// Push: where messages go.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deliver_subject: String,
    /// Push: queue group of the subscribers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deliver_group: String,
    /// Push: idle heartbeat interval, ns.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub idle_heartbeat: i64,
    /// Delete after this long without interest, ns.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub inactive_threshold: i64,
    /// Replicas (always shown).
    #[serde(default)]
    pub num_replicas: i64,
    /// Keep state in memory.
    #[serde(default, skip_serializing_if = "is_false")]
    pub mem_storage: bool,
    /// Internal direct consumer (sourcing).
    #[serde(default, skip_serializing_if = "is_false")]
    pub direct: bool,
    /// A stream's sourcing consumer (nats-server 2.14+); refused by the API.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sourcing: bool,
    /// User and server metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Paused until this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
    /// Pull priority groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_groups: Vec<String>,
    /// How the priority groups choose among waiting requests.
    #[serde(default, skip_serializing_if = "PriorityPolicy::is_none")]
    pub priority_policy: PriorityPolicy,
    /// Pinned client TTL, ns.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub priority_timeout: i64,
}

/// What validation needs to know about the parent stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamContext<'a> {
    /// The stream's subjects (not enforced: nats-server 2.15 accepts any filter).
    pub subjects: &'a [String],
    /// Work-queue retention.
    pub workqueue: bool,
    /// Interest or work-queue retention (replicas must match the stream's).
    pub interest_or_workqueue: bool,
    /// The stream's `num_replicas`.
    pub replicas: i64,
    /// Account/server `max_ack_pending` limit (0 or less = none).
    pub max_ack_pending_limit: i64,
    /// The stream's `consumer_limits.max_ack_pending` (0 = none).
    pub stream_max_ack_pending: i64,
    /// The stream's `consumer_limits.inactive_threshold`, ns (0 = none).
    pub stream_inactive_threshold: i64,
}

impl ConsumerConfig {
    /// Is this a pull consumer?
    pub(crate) fn is_pull(&self) -> bool {
        self.deliver_subject.is_empty()
    }

    /// Durable: has a durable name.
    pub(crate) fn is_durable(&self) -> bool {
        !self.durable_name.is_empty()
    }

    /// The filters as one list (empty = the whole stream).
    pub(crate) fn filters(&self) -> Vec<String> {
        if !self.filter_subject.is_empty() {
            vec![self.filter_subject.clone()]
        } else {
            self.filter_subjects.clone()
        }
    }

    /// Fills in what nats-server fills in (`setConsumerConfigDefaults`: the stream's
    /// `consumer_limits` first, then the account's `max_ack_pending`), plus the 5 s
    /// `inactive_threshold` of non-durables. Call before [`ConsumerConfig::validate`].
    pub(crate) fn apply_defaults(&mut self, stream: &StreamContext<'_>) {
        // Without pedantic mode nothing is refused.
        let _ = self.apply_defaults_as(stream, false);
    }

    /// [`Self::apply_defaults`]; `pedantic` (a create request's pedantic mode) refuses with
    /// nats-server's 10157 where a value would be replaced or a stream limit filled in.
    pub(crate) fn apply_defaults_as(
        &mut self,
        stream: &StreamContext<'_>,
        pedantic: bool,
    ) -> Result<(), ApiError> {
        let refuse = |what: &str| Err(JsError::Pedantic.with(what));
        if self.max_deliver == 0 || self.max_deliver < -1 {
            if pedantic && self.max_deliver < -1 {
                return refuse("max_deliver must be set to -1");
            }
            self.max_deliver = -1;
        }
        // Negative values become 0 (-1 for max_ack_pending), in nats-server's order.
        let zero_floors = [
            (&mut self.max_waiting, 0, "max_waiting must not be negative"),
            (
                &mut self.max_ack_pending,
                -1,
                "max_ack_pending must be set to -1",
            ),
            (&mut self.max_batch, 0, "max_batch must not be negative"),
            (&mut self.max_expires, 0, "max_expires must not be negative"),
            (&mut self.max_bytes, 0, "max_bytes must not be negative"),
            (
                &mut self.idle_heartbeat,
                0,
                "idle_heartbeat must not be negative",
            ),
            (
                &mut self.inactive_threshold,
                0,
                "inactive_threshold must not be negative",
            ),
            (
                &mut self.priority_timeout,
                0,
                "priority_timeout must not be negative",
            ),
        ];
        for (v, floor, why) in zero_floors {
            if *v < floor {
                if pedantic {
                    return refuse(why);
                }
                *v = floor;
            }
        }
        if self.is_pull() && self.max_waiting == 0 {
            self.max_waiting = DEFAULT_MAX_WAITING;
        }
        if self.ack_wait == 0 && matches!(self.ack_policy, AckPolicy::Explicit | AckPolicy::All) {
            self.ack_wait = DEFAULT_ACK_WAIT;
        }
        if let Some(&first) = self.backoff.first() {
            if pedantic && self.ack_wait != first {
                return refuse("first backoff value has to equal batch AckWait");
            }
            self.ack_wait = first;
        }
        if self.max_ack_pending == 0 {
            if pedantic && stream.stream_max_ack_pending > 0 {
                return refuse("max_ack_pending must be set if it's configured in stream limits");
            }
            self.max_ack_pending = stream.stream_max_ack_pending.max(0);
        }
        if self.inactive_threshold == 0 {
            if pedantic && stream.stream_inactive_threshold > 0 {
                return refuse(
                    "inactive_threshold must be set if it's configured in stream limits",
                );
            }
            self.inactive_threshold = stream.stream_inactive_threshold.max(0);
        }
        if self.max_ack_pending == 0 && self.ack_policy != AckPolicy::None {
            let limit = stream.max_ack_pending_limit;
            self.max_ack_pending = if limit > 0 {
                DEFAULT_MAX_ACK_PENDING.min(limit)
            } else {
                DEFAULT_MAX_ACK_PENDING
            };
        }
        if !self.is_durable() && self.inactive_threshold == 0 {
            self.inactive_threshold = DEFAULT_INACTIVE_THRESHOLD;
        }
        if self.priority_policy == PriorityPolicy::PinnedClient && self.priority_timeout == 0 {
            self.priority_timeout = DEFAULT_PINNED_TTL;
        }
        // Pedantic mode leaves these to the request, whose checks then refuse what is missing.
        if self.ack_policy == AckPolicy::FlowControl && !pedantic {
            self.flow_control = true;
            self.idle_heartbeat = ACK_FLOW_CONTROL_HEARTBEAT;
        }
        Ok(())
    }

    /// Adds the `_nats.*` metadata nats-server 2.15 shows in replies.
    pub(crate) fn set_server_metadata(&mut self, server_version: &str) {
        let req_level = if self.pause_until.is_some()
            || !self.priority_policy.is_none()
            || self.priority_timeout != 0
            || !self.priority_groups.is_empty()
        {
            "1"
        } else {
            "0"
        };
        self.metadata.insert("_nats.level".into(), "5".into());
        self.metadata
            .insert("_nats.req.level".into(), req_level.into());
        self.metadata
            .insert("_nats.ver".into(), server_version.into());
    }

    /// nats-server's `checkConsumerCfg` and the work-queue checks of `addConsumer` that
    /// need only this consumer (see [`check_workqueue_partition`] for the others).
    pub(crate) fn validate(&self, stream: &StreamContext<'_>) -> Result<(), ApiError> {
        let bad_name = |n: &str| !is_valid_name(n);
        if !self.name.is_empty() && bad_name(&self.name) {
            return Err(JsError::StreamInvalidConfig
                .with("consumer name can not contain '.', '*', '>', '\\', '/'"));
        }
        if self.is_durable() && bad_name(&self.durable_name) {
            return Err(JsError::StreamInvalidConfig
                .with("consumer durable name can not contain '.', '*', '>', '\\', '/'"));
        }
        if self.durable_name.len() > MAX_NAME_LEN || self.name.len() > MAX_NAME_LEN {
            return Err(JsError::ConsumerNameTooLong.with(MAX_NAME_LEN));
        }
        if self.num_replicas > 0 && self.num_replicas > stream.replicas {
            return Err(JsError::ConsumerReplicasExceedsStream.into());
        }
        if self.num_replicas < 0 {
            return Err(JsError::ReplicasCountCannotBeNegative.into());
        }
        if stream.interest_or_workqueue
            && self.num_replicas != 0
            && self.num_replicas != stream.replicas
        {
            return Err(JsError::ConsumerReplicasShouldMatchStream.into());
        }
        if self.backoff.iter().any(|&b| b < 0) {
            return Err(JsError::ConsumerBackOffNegative.into());
        }
        if self.ack_wait < 0 {
            return Err(JsError::ConsumerAckWaitNegative.into());
        }
        if self.ack_policy == AckPolicy::FlowControl {
            if self.is_pull() {
                return Err(JsError::ConsumerAckFCRequiresPush.into());
            }
            if !self.flow_control {
                return Err(JsError::ConsumerAckFCRequiresFC.into());
            }
            if self.idle_heartbeat != ACK_FLOW_CONTROL_HEARTBEAT {
                return Err(JsError::StreamInvalidConfig
                    .with("flow control ack policy heartbeat needs to be 1s"));
            }
            if self.max_ack_pending <= 0 {
                return Err(JsError::ConsumerAckFCRequiresMaxAckPending.into());
            }
            if self.ack_wait != 0 || !self.backoff.is_empty() {
                return Err(JsError::ConsumerAckFCRequiresNoAckWait.into());
            }
            if self.max_deliver > 0 {
                return Err(JsError::ConsumerAckFCRequiresNoMaxDeliver.into());
            }
        }
        if !self.backoff.is_empty()
            && self.max_deliver != -1
            && self.backoff.len() as i64 > self.max_deliver
        {
            return Err(JsError::ConsumerMaxDeliverBackoff.into());
        }
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(JsError::ConsumerDescriptionTooLong.with(MAX_DESCRIPTION_LEN));
        }
        if !self.is_pull() {
            let ds = self.deliver_subject.as_bytes();
            if !subject::is_literal(ds) {
                return Err(JsError::ConsumerDeliverToWildcards.into());
            }
            if !subject::is_valid_subject(ds) {
                return Err(JsError::ConsumerInvalidDeliverSubject.into());
            }
            if stream
                .subjects
                .iter()
                .any(|s| subject::matches(s.as_bytes(), ds))
            {
                return Err(JsError::ConsumerDeliverCycle.into());
            }
            if self.max_waiting != 0 {
                return Err(JsError::ConsumerPushMaxWaiting.into());
            }
            if self.max_ack_pending > 0 && self.ack_policy == AckPolicy::None {
                return Err(JsError::ConsumerMaxPendingAckPolicyRequired.into());
            }
            if self.idle_heartbeat > 0 && self.idle_heartbeat < 100_000_000 {
                return Err(JsError::ConsumerSmallHeartbeat.into());
            }
        } else {
            if self.ack_policy == AckPolicy::None && stream.workqueue {
                return Err(JsError::ConsumerPullRequiresAck.into());
            }
            if self.rate_limit_bps > 0 {
                return Err(JsError::ConsumerPullWithRateLimit.into());
            }
            if self.idle_heartbeat > 0 {
                return Err(JsError::ConsumerHBRequiresPush.into());
            }
            if self.flow_control {
                return Err(JsError::ConsumerFCRequiresPush.into());
            }
            if self.max_expires != 0 && self.max_expires < 1_000_000 {
                return Err(JsError::ConsumerMaxRequestExpiresTooSmall.into());
            }
        }
        if stream.max_ack_pending_limit > 0 && self.max_ack_pending > stream.max_ack_pending_limit {
            return Err(JsError::ConsumerMaxPendingAckExcess.with(stream.max_ack_pending_limit));
        }
        if stream.stream_max_ack_pending > 0 && self.max_ack_pending > stream.stream_max_ack_pending
        {
            return Err(JsError::ConsumerMaxPendingAckExcess.with(stream.stream_max_ack_pending));
        }
        if stream.stream_inactive_threshold > 0
            && self.inactive_threshold > stream.stream_inactive_threshold
        {
            return Err(JsError::ConsumerInactiveThresholdExcess.with(
                natsd_conf::duration::go_duration_nanos(stream.stream_inactive_threshold),
            ));
        }
        if self.direct {
            if self.is_pull() {
                return Err(JsError::ConsumerDirectRequiresPush.into());
            }
            if self.is_durable() {
                return Err(JsError::ConsumerDirectRequiresEphemeral.into());
            }
        }
        if !self.filter_subject.is_empty() && !self.filter_subjects.is_empty() {
            return Err(JsError::ConsumerDuplicateFilterSubjects.into());
        }
        if self.filter_subjects.iter().any(String::is_empty) {
            return Err(JsError::ConsumerEmptyFilter.into());
        }
        let filters = self.filters();
        for (i, f) in filters.iter().enumerate() {
            if !subject::is_valid_subject(f.as_bytes()) {
                return Err(JsError::StreamInvalidConfig.with("invalid subject"));
            }
            for (j, g) in filters.iter().enumerate() {
                if i != j && subject::is_subset(f.as_bytes(), g.as_bytes()) {
                    return Err(JsError::ConsumerOverlappingSubjectFilters.into());
                }
            }
        }
        self.validate_start(!filters.is_empty())?;
        if !self.sample_freq.is_empty() {
            let s = self.sample_freq.trim_end_matches('%');
            if s.parse::<u32>().is_err() {
                return Err(JsError::ConsumerInvalidSampling
                    .with(format_args!("strconv.Atoi: parsing {s:?}: invalid syntax")));
            }
        }
        if self.flow_control && self.idle_heartbeat == 0 {
            return Err(ApiError::from(
                JsError::ConsumerWithFlowControlNeedsHeartbeats,
            ));
        }
        if self.is_durable() && !self.name.is_empty() && self.name != self.durable_name {
            return Err(ApiError::from(
                JsError::ConsumerCreateDurableAndNameMismatch,
            ));
        }
        let meta_len: usize = self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if meta_len > MAX_METADATA_LEN {
            return Err(
                JsError::ConsumerMetadataLength.with(format_args!("{}KB", MAX_METADATA_LEN / 1024))
            );
        }
        if self.priority_policy.is_none() {
            if !self.priority_groups.is_empty() {
                return Err(JsError::ConsumerPriorityGroupWithPolicyNone.into());
            }
            if self.priority_timeout > 0 {
                return Err(JsError::ConsumerPinnedTTLWithoutPriorityPolicyNone.into());
            }
        } else {
            if !self.is_pull() {
                return Err(JsError::ConsumerPushWithPriorityGroup.into());
            }
            if self.priority_groups.is_empty() {
                return Err(JsError::ConsumerPriorityPolicyWithoutGroup.into());
            }
            for group in &self.priority_groups {
                if group.is_empty() {
                    return Err(JsError::ConsumerEmptyGroupName.into());
                }
                if !is_valid_group_name(group) {
                    return Err(JsError::ConsumerInvalidGroupName.into());
                }
            }
        }
        // A copy's consumer is exempt from the work-queue rules, as on nats-server.
        if stream.workqueue && !self.direct && !self.sourcing {
            if !matches!(
                self.ack_policy,
                AckPolicy::Explicit | AckPolicy::FlowControl
            ) {
                return Err(JsError::ConsumerWQRequiresExplicitAck.into());
            }
            if self.deliver_policy != DeliverPolicy::All {
                return Err(JsError::ConsumerWQConsumerNotDeliverAll.into());
            }
        }
        Ok(())
    }

    fn validate_start(&self, filtered: bool) -> Result<(), ApiError> {
        let bad_start = |dp: &str, start: &str| {
            JsError::ConsumerInvalidPolicy.with(format!(
                "consumer delivery policy is deliver {dp}, but optional start {start} is also set"
            ))
        };
        let not_set = |dp: &str, what: &str| {
            JsError::ConsumerInvalidPolicy.with(format!(
                "consumer delivery policy is deliver {dp}, but optional {what} is not set"
            ))
        };
        let seq = self.opt_start_seq > 0;
        let time = self.opt_start_time.is_some();
        let simple = |dp: &str| {
            if seq {
                Err(bad_start(dp, "sequence"))
            } else if time {
                Err(bad_start(dp, "time"))
            } else {
                Ok(())
            }
        };
        match self.deliver_policy {
            DeliverPolicy::All => simple("all"),
            DeliverPolicy::Last => simple("last"),
            DeliverPolicy::New => simple("new"),
            DeliverPolicy::LastPerSubject => {
                simple("last per subject")?;
                if !filtered {
                    return Err(not_set("last per subject", "filter subject"));
                }
                Ok(())
            }
            DeliverPolicy::ByStartSequence => {
                if !seq {
                    return Err(not_set("by start sequence", "start sequence"));
                }
                if time {
                    return Err(bad_start("by start sequence", "time"));
                }
                Ok(())
            }
            DeliverPolicy::ByStartTime => {
                if !time {
                    return Err(not_set("by start time", "start time"));
                }
                if seq {
                    return Err(bad_start("by start time", "start sequence"));
                }
                if self.start_time_ns().is_none() {
                    return Err(JsError::ConsumerInvalidPolicy.with("invalid start time"));
                }
                Ok(())
            }
        }
    }

    /// `opt_start_time` in ns since the epoch.
    pub(crate) fn start_time_ns(&self) -> Option<u64> {
        parse_rfc3339_ns(self.opt_start_time.as_deref()?)
    }

    /// `pause_until` in ns since the epoch.
    pub(crate) fn pause_until_ns(&self) -> Option<u64> {
        parse_rfc3339_ns(self.pause_until.as_deref()?)
    }

    /// The fields an update may not change, as nats-server's error text names them
    /// (`500 10012 <field> can not be updated`). `self` is the existing config.
    pub(crate) fn check_update(&self, new: &ConsumerConfig) -> Result<(), ApiError> {
        let err =
            |what: &str| Err(JsError::ConsumerCreate.with(format!("{what} can not be updated")));
        if self.deliver_policy != new.deliver_policy {
            return err("deliver policy");
        }
        if self.opt_start_seq != new.opt_start_seq {
            return err("start sequence");
        }
        if self.opt_start_time != new.opt_start_time {
            return err("start time");
        }
        if self.ack_policy != new.ack_policy {
            return err("ack policy");
        }
        if self.replay_policy != new.replay_policy {
            return err("replay policy");
        }
        if self.rate_limit_bps != new.rate_limit_bps {
            return err("rate limit");
        }
        if self.flow_control != new.flow_control {
            return err("flow control");
        }
        if self.is_pull() != new.is_pull() {
            return Err(JsError::ConsumerCreate.with("can not update push consumer to pull based"));
        }
        if self.mem_storage != new.mem_storage {
            return err("memory storage");
        }
        Ok(())
    }
}

/// Stream/consumer names: no `.`, `*`, `>`, `\`, `/`, whitespace or control characters.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .bytes()
            .any(|b| matches!(b, b'.' | b'*' | b'>' | b'\\' | b'/') || b <= b' ' || b == 0x7f)
}

/// Work-queue streams: a new consumer's filters must not overlap any other consumer's, and
/// only one unfiltered consumer may exist (10099 / 10100). `others` excludes the one being
/// updated.
pub(crate) fn check_workqueue_partition(
    new: &ConsumerConfig,
    others: &[&ConsumerConfig],
) -> Result<(), ApiError> {
    if others.is_empty() {
        return Ok(());
    }
    let mine = new.filters();
    if mine.is_empty() {
        return Err(JsError::ConsumerWQMultipleUnfiltered.into());
    }
    for other in others {
        let theirs = other.filters();
        let overlap = theirs.is_empty()
            || mine.iter().any(|m| {
                theirs
                    .iter()
                    .any(|t| subject::collide(m.as_bytes(), t.as_bytes()))
            });
        if overlap {
            return Err(JsError::ConsumerWQConsumerNotUnique.into());
        }
    }
    Ok(())
}

/// A random 8-character ephemeral name (nats-server hashes a NUID to 8 characters).
pub(crate) fn generate_name() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// `delivered` / `ack_floor` in consumer info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct SequenceInfo {
    /// Consumer sequence.
    pub consumer_seq: u64,
    /// Stream sequence.
    pub stream_seq: u64,
    /// Last activity, RFC 3339 (omitted when never active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active: Option<String>,
}

/// Consumer info: create replies, `CONSUMER.INFO`, `CONSUMER.LIST` items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConsumerInfo {
    /// Parent stream.
    pub stream_name: String,
    /// Consumer name.
    pub name: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Effective config.
    pub config: ConsumerConfig,
    /// Last delivered.
    pub delivered: SequenceInfo,
    /// Everything at or below is acknowledged.
    pub ack_floor: SequenceInfo,
    /// Delivered, not yet acknowledged.
    pub num_ack_pending: u64,
    /// Messages delivered more than once and still tracked.
    pub num_redelivered: u64,
    /// Waiting pull requests.
    pub num_waiting: u64,
    /// Messages not yet delivered.
    pub num_pending: u64,
    /// Push consumer with interest on its deliver subject.
    #[serde(default, skip_serializing_if = "is_false")]
    pub push_bound: bool,
    /// Deliveries are paused (`pause_until` is in the future).
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// ns until the pause ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_remaining: Option<u64>,
    /// When this info was taken, RFC 3339.
    pub ts: String,
    /// Priority groups and their pinned clients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_groups: Vec<super::PriorityGroupState>,
}
