//! JetStream API errors: ONE table of the named errors natsd answers with, each as
//! nats-server's `server/errors.json` names it (its constant in the variant's doc, the
//! HTTP-like `code`, the stable `err_code` clients match on, and the description, where
//! `{name}` marks a part filled in per error). Nothing else in the server writes an
//! `err_code`: an error is `JsError::StreamNotFound.into()`, or `JsError::X.with(detail)`
//! for a description with a placeholder. Stores return their own errors
//! ([`crate::store::StoreError`]); the API layer maps them onto this table.
//!
//! Codes are never reused for something else: a retired error stays out of the table, and a
//! test checks that each `err_code` appears once.

use std::fmt::Display;

use serde::Serialize;

/// One API error as it appears in a reply's `error` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{description} ({err_code})")]
pub(crate) struct ApiError {
    /// HTTP-like status.
    pub code: u16,
    /// Stable JetStream error code.
    pub err_code: u32,
    /// Human-readable text.
    pub description: String,
}

impl ApiError {
    /// Anything unexpected, from the store or the file system: nats-server reports such
    /// failures as 10077 with the underlying error's text.
    pub(crate) fn internal(err: impl Display) -> Self {
        JsError::StreamStoreFailed.with(err)
    }
}

macro_rules! js_errors {
    ($( $(#[$doc:meta])* $name:ident = ($code:expr, $err_code:expr, $text:expr); )*) => {
        /// A named JetStream API error (see the module documentation).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum JsError {
            $( $(#[$doc])* $name, )*
        }

        impl JsError {
            /// Every error of the table.
            #[cfg(test)]
            const ALL: &'static [JsError] = &[$(JsError::$name),*];

            /// `(code, err_code, description)`.
            const fn entry(self) -> (u16, u32, &'static str) {
                match self {
                    $( JsError::$name => ($code, $err_code, $text), )*
                }
            }
        }
    };
}

impl JsError {
    /// HTTP-like status.
    pub(crate) const fn code(self) -> u16 {
        self.entry().0
    }

    /// Stable JetStream error code.
    pub(crate) const fn err_code(self) -> u32 {
        self.entry().1
    }

    /// The description, placeholders (`{err}`, `{seq}`, ...) unfilled.
    pub(crate) const fn description(self) -> &'static str {
        self.entry().2
    }

    /// The error with its one placeholder filled with `detail` (a description without a
    /// placeholder is kept as it is).
    pub(crate) fn with(self, detail: impl Display) -> ApiError {
        let template = self.description();
        let description = match (template.find('{'), template.find('}')) {
            (Some(open), Some(close)) if open < close => {
                format!("{}{detail}{}", &template[..open], &template[close + 1..])
            }
            _ => template.to_string(),
        };
        ApiError {
            code: self.code(),
            err_code: self.err_code(),
            description,
        }
    }
}

impl JsError {
    /// The error with each of its placeholders filled, in order (for the few descriptions
    /// with more than one).
    pub(crate) fn with_each(self, details: &[&dyn Display]) -> ApiError {
        let mut description = String::new();
        let mut rest = self.description();
        let mut details = details.iter();
        while let (Some(open), Some(close)) = (rest.find('{'), rest.find('}')) {
            if close < open {
                break;
            }
            description.push_str(&rest[..open]);
            match details.next() {
                Some(d) => description.push_str(&d.to_string()),
                None => description.push_str(&rest[open..=close]),
            }
            rest = &rest[close + 1..];
        }
        description.push_str(rest);
        ApiError {
            code: self.code(),
            err_code: self.err_code(),
            description,
        }
    }
}

impl From<JsError> for ApiError {
    fn from(e: JsError) -> Self {
        ApiError {
            code: e.code(),
            err_code: e.err_code(),
            description: e.description().to_string(),
        }
    }
}

js_errors! {
    /// `JSAccountResourcesExceededErr`
    AccountResourcesExceeded = (400, 10002, "resource limits exceeded for account");
    /// `JSBadRequestErr`
    BadRequest = (400, 10003, "bad request");
    /// `JSConsumerCreateErrF`
    ConsumerCreate = (500, 10012, "{err}");
    /// `JSConsumerNotFoundErr`
    ConsumerNotFound = (404, 10014, "consumer not found");
    /// `JSConsumerDurableNameNotInSubjectErr`
    ConsumerDurableNameNotInSubject = (400, 10016, "consumer expected to be durable but no durable name set in subject");
    /// `JSConsumerDurableNameNotMatchSubjectErr`
    ConsumerDurableNameNotMatchSubject = (400, 10017, "consumer name in subject does not match durable name in request");
    /// `JSConsumerDurableNameNotSetErr`
    ConsumerDurableNameNotSet = (400, 10018, "consumer expected to be durable but a durable name was not set");
    /// `JSConsumerEphemeralWithDurableNameErr`
    ConsumerEphemeralWithDurableName = (400, 10020, "consumer expected to be ephemeral but a durable name was set in request");
    /// `JSStreamExternalApiOverlapErrF`
    StreamExternalApiOverlap = (400, 10021, "stream external api prefix {prefix} must not overlap with {subject}");
    /// `JSStreamExternalDelPrefixOverlapsErrF`
    StreamExternalDelPrefixOverlaps = (400, 10022, "stream external delivery prefix {prefix} overlaps with stream subject {subject}");
    /// `JSInsufficientResourcesErr`
    InsufficientResources = (503, 10023, "insufficient resources");
    /// `JSStreamInvalidExternalDeliverySubjErrF`
    StreamInvalidExternalDeliverySubj = (400, 10024, "stream external delivery prefix {prefix} must not contain wildcards");
    /// `JSInvalidJSONErr`
    InvalidJSON = (400, 10025, "invalid JSON: {err}");
    /// `JSMaximumConsumersLimitErr`
    MaximumConsumersLimit = (400, 10026, "maximum consumers limit reached");
    /// `JSMaximumStreamsLimitErr`
    MaximumStreamsLimit = (400, 10027, "maximum number of streams reached");
    /// `JSMemoryResourcesExceededErr`
    MemoryResourcesExceeded = (500, 10028, "insufficient memory resources available");
    /// `JSMirrorMaxMessageSizeTooBigErr`
    MirrorMaxMessageSizeTooBig = (400, 10030, "stream mirror must have max message size >= source");
    /// `JSMirrorWithSourcesErr`
    MirrorWithSources = (400, 10031, "stream mirrors can not also contain other sources");
    /// `JSMirrorWithSubjectsErr`
    MirrorWithSubjects = (400, 10034, "stream mirrors can not contain subjects");
    /// `JSNoMessageFoundErr`
    NoMessageFound = (404, 10037, "no message found");
    /// `JSNotEnabledForAccountErr`
    NotEnabledForAccount = (503, 10039, "JetStream not enabled for account");
    /// `JSSequenceNotFoundErrF`
    SequenceNotFound = (400, 10043, "sequence {seq} not found");
    /// `JSSourceMaxMessageSizeTooBigErr`
    SourceMaxMessageSizeTooBig = (400, 10046, "stream source must have max message size >= target");
    /// `JSStorageResourcesExceededErr`
    StorageResourcesExceeded = (500, 10047, "insufficient storage resources available");
    /// `JSStreamInvalidConfigF`
    StreamInvalidConfig = (500, 10052, "{err}");
    /// `JSStreamMessageExceedsMaximumErr`
    StreamMessageExceedsMaximum = (400, 10054, "message size exceeds maximum allowed");
    /// `JSStreamMirrorNotUpdatableErr`
    StreamMirrorNotUpdatable = (400, 10055, "stream mirror configuration can not be updated");
    /// `JSStreamMismatchErr`
    StreamMismatch = (400, 10056, "stream name in subject does not match request");
    /// `JSStreamMsgDeleteFailedF`
    StreamMsgDeleteFailed = (500, 10057, "{err}");
    /// `JSStreamNameExistErr`
    StreamNameExist = (400, 10058, "stream name already in use with a different configuration");
    /// `JSStreamNotFoundErr`
    StreamNotFound = (404, 10059, "stream not found");
    /// `JSStreamNotMatchErr`
    StreamNotMatch = (400, 10060, "expected stream does not match");
    /// `JSStreamSubjectOverlapErr`
    StreamSubjectOverlap = (400, 10065, "subjects overlap with an existing stream");
    /// `JSStreamUpdateErrF`
    StreamUpdate = (500, 10069, "{err}");
    /// `JSStreamWrongLastMsgIDErrF`
    StreamWrongLastMsgID = (400, 10070, "wrong last msg ID: {id}");
    /// `JSStreamWrongLastSequenceErrF`
    StreamWrongLastSequence = (400, 10071, "wrong last sequence: {seq}");
    /// `JSStreamReplicasNotSupportedErr`
    StreamReplicasNotSupported = (500, 10074, "replicas > 1 not supported in non-clustered mode");
    /// `JSStreamStoreFailedF`
    StreamStoreFailed = (503, 10077, "{err}");
    /// `JSConsumerDeliverToWildcardsErr`
    ConsumerDeliverToWildcards = (400, 10079, "consumer deliver subject has wildcards");
    /// `JSConsumerPushMaxWaitingErr`
    ConsumerPushMaxWaiting = (400, 10080, "consumer in push mode can not set max waiting");
    /// `JSConsumerDeliverCycleErr`
    ConsumerDeliverCycle = (400, 10081, "consumer deliver subject forms a cycle");
    /// `JSConsumerMaxPendingAckPolicyRequiredErr`
    ConsumerMaxPendingAckPolicyRequired = (400, 10082, "consumer requires ack policy for max ack pending");
    /// `JSConsumerSmallHeartbeatErr`
    ConsumerSmallHeartbeat = (400, 10083, "consumer idle heartbeat needs to be >= 100ms");
    /// `JSConsumerPullRequiresAckErr`
    ConsumerPullRequiresAck = (400, 10084, "consumer in pull mode requires explicit ack policy on workqueue stream");
    /// `JSConsumerPullWithRateLimitErr`
    ConsumerPullWithRateLimit = (400, 10086, "consumer in pull mode can not have rate limit set");
    /// `JSConsumerHBRequiresPushErr`
    ConsumerHBRequiresPush = (400, 10088, "consumer idle heartbeat requires a push based consumer");
    /// `JSConsumerFCRequiresPushErr`
    ConsumerFCRequiresPush = (400, 10089, "consumer flow control requires a push based consumer");
    /// `JSConsumerDirectRequiresPushErr`
    ConsumerDirectRequiresPush = (400, 10090, "consumer direct requires a push based consumer");
    /// `JSConsumerDirectRequiresEphemeralErr`
    ConsumerDirectRequiresEphemeral = (400, 10091, "consumer direct requires an ephemeral consumer");
    /// `JSConsumerInvalidPolicyErrF`
    ConsumerInvalidPolicy = (400, 10094, "{err}");
    /// `JSConsumerInvalidSamplingErrF`
    ConsumerInvalidSampling = (400, 10095, "failed to parse consumer sampling configuration: {err}");
    /// `JSConsumerWQRequiresExplicitAckErr`
    ConsumerWQRequiresExplicitAck = (400, 10098, "workqueue stream requires explicit ack");
    /// `JSConsumerWQMultipleUnfilteredErr`
    ConsumerWQMultipleUnfiltered = (400, 10099, "multiple non-filtered consumers not allowed on workqueue stream");
    /// `JSConsumerWQConsumerNotUniqueErr`
    ConsumerWQConsumerNotUnique = (400, 10100, "filtered consumer not unique on workqueue stream");
    /// `JSConsumerWQConsumerNotDeliverAllErr`
    ConsumerWQConsumerNotDeliverAll = (400, 10101, "consumer must be deliver all on workqueue stream");
    /// `JSConsumerNameTooLongErrF`
    ConsumerNameTooLong = (400, 10102, "consumer name is too long, maximum allowed is {max}");
    /// `JSConsumerDescriptionTooLongErrF`
    ConsumerDescriptionTooLong = (400, 10107, "consumer description is too long, maximum allowed is {max}");
    /// `JSConsumerWithFlowControlNeedsHeartbeats`
    ConsumerWithFlowControlNeedsHeartbeats = (400, 10108, "consumer with flow control also needs heartbeats");
    /// `JSStreamSealedErr`
    StreamSealed = (400, 10109, "invalid operation on sealed stream");
    /// `JSStreamPurgeFailedF`
    StreamPurgeFailed = (500, 10110, "{err}");
    /// `JSStreamRollupFailedF`
    StreamRollupFailed = (500, 10111, "{err}");
    /// `JSConsumerInvalidDeliverSubject`
    ConsumerInvalidDeliverSubject = (400, 10112, "invalid push consumer deliver subject");
    /// `JSStreamMaxBytesRequired`
    StreamMaxBytesRequired = (400, 10113, "account requires a stream config to have max bytes set");
    /// `JSConsumerMaxRequestExpiresTooSmall`
    ConsumerMaxRequestExpiresTooSmall = (400, 10115, "consumer max request expires needs to be >= 1ms");
    /// `JSConsumerMaxDeliverBackoffErr`
    ConsumerMaxDeliverBackoff = (400, 10116, "max deliver is required to be > length of backoff values");
    /// `JSConsumerMaxPendingAckExcessErrF`
    ConsumerMaxPendingAckExcess = (400, 10121, "consumer max ack pending exceeds system limit of {limit}");
    /// `JSStreamMaxStreamBytesExceeded`
    StreamMaxStreamBytesExceeded = (400, 10122, "stream max bytes exceeds account limit max stream bytes");
    /// `JSConsumerReplicasExceedsStream`
    ConsumerReplicasExceedsStream = (400, 10126, "consumer config replica count exceeds parent stream");
    /// `JSConsumerNameContainsPathSeparatorsErr`
    ConsumerNameContainsPathSeparators = (400, 10127, "Consumer name can not contain path separators");
    /// `JSStreamNameContainsPathSeparatorsErr`
    StreamNameContainsPathSeparators = (400, 10128, "Stream name can not contain path separators");
    /// `JSConsumerCreateFilterSubjectMismatchErr`
    ConsumerCreateFilterSubjectMismatch = (400, 10131, "Consumer create request did not match filtered subject from create subject");
    /// `JSConsumerCreateDurableAndNameMismatch`
    ConsumerCreateDurableAndNameMismatch = (400, 10132, "Consumer Durable and Name have to be equal if both are provided");
    /// `JSReplicasCountCannotBeNegative`
    ReplicasCountCannotBeNegative = (400, 10133, "replicas count cannot be negative");
    /// `JSConsumerReplicasShouldMatchStream`
    ConsumerReplicasShouldMatchStream = (400, 10134, "consumer config replicas must match interest retention stream's replicas");
    /// `JSConsumerMetadataLengthErrF`
    ConsumerMetadataLength = (400, 10135, "consumer metadata exceeds maximum size of {limit}");
    /// `JSConsumerDuplicateFilterSubjects`
    ConsumerDuplicateFilterSubjects = (400, 10136, "consumer cannot have both FilterSubject and FilterSubjects specified");
    /// `JSConsumerMultipleFiltersNotAllowed`
    ConsumerMultipleFiltersNotAllowed = (400, 10137, "consumer with multiple subject filters cannot use subject based API");
    /// `JSConsumerOverlappingSubjectFilters`
    ConsumerOverlappingSubjectFilters = (400, 10138, "consumer subject filters cannot overlap");
    /// `JSConsumerEmptyFilter`
    ConsumerEmptyFilter = (400, 10139, "consumer filter in FilterSubjects cannot be empty");
    /// `JSSourceDuplicateDetected`
    SourceDuplicateDetected = (400, 10140, "duplicate source configuration detected");
    /// `JSSourceInvalidStreamName`
    SourceInvalidStreamName = (400, 10141, "sourced stream name is invalid");
    /// `JSMirrorInvalidStreamName`
    MirrorInvalidStreamName = (400, 10142, "mirrored stream name is invalid");
    /// `JSMirrorWithFirstSeqErr`
    MirrorWithFirstSeq = (400, 10143, "stream mirrors can not have first sequence configured");
    /// `JSSourceMultipleFiltersNotAllowed`
    SourceMultipleFiltersNotAllowed = (400, 10144, "source with multiple subject transforms cannot also have a single subject filter");
    /// `JSSourceInvalidSubjectFilter`
    SourceInvalidSubjectFilter = (400, 10145, "source transform source: {err}");
    /// `JSSourceInvalidTransformDestination`
    SourceInvalidTransformDestination = (400, 10146, "source transform: {err}");
    /// `JSSourceOverlappingSubjectFilters`
    SourceOverlappingSubjectFilters = (400, 10147, "source filters can not overlap");
    /// `JSConsumerAlreadyExists`
    ConsumerAlreadyExists = (400, 10148, "consumer already exists");
    /// `JSConsumerDoesNotExist`
    ConsumerDoesNotExist = (400, 10149, "consumer does not exist");
    /// `JSMirrorMultipleFiltersNotAllowed`
    MirrorMultipleFiltersNotAllowed = (400, 10150, "mirror with multiple subject transforms cannot also have a single subject filter");
    /// `JSMirrorInvalidSubjectFilter`
    MirrorInvalidSubjectFilter = (400, 10151, "mirror transform source: {err}");
    /// `JSMirrorOverlappingSubjectFilters`
    MirrorOverlappingSubjectFilters = (400, 10152, "mirror subject filters can not overlap");
    /// `JSConsumerInactiveThresholdExcess`
    ConsumerInactiveThresholdExcess = (400, 10153, "consumer inactive threshold exceeds system limit of {limit}");
    /// `JSMirrorInvalidTransformDestination`
    MirrorInvalidTransformDestination = (400, 10154, "mirror transform: {err}");
    /// `JSStreamTransformInvalidSource`
    StreamTransformInvalidSource = (400, 10155, "stream transform source: {err}");
    /// `JSStreamTransformInvalidDestination`
    StreamTransformInvalidDestination = (400, 10156, "stream transform: {err}");
    /// `JSPedanticErrF`
    Pedantic = (400, 10157, "pedantic mode: {err}");
    /// `JSConsumerPriorityPolicyWithoutGroup`
    ConsumerPriorityPolicyWithoutGroup = (400, 10159, "Setting PriorityPolicy requires at least one PriorityGroup to be set");
    /// `JSConsumerInvalidPriorityGroupErr`
    ConsumerInvalidPriorityGroup = (400, 10160, "Provided priority group does not exist for this consumer");
    /// `JSConsumerEmptyGroupName`
    ConsumerEmptyGroupName = (400, 10161, "Group name cannot be an empty string");
    /// `JSConsumerInvalidGroupNameErr`
    ConsumerInvalidGroupName = (400, 10162, "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters");
    /// `JSStreamWrongLastSequenceConstantErr`
    StreamWrongLastSequenceConstant = (400, 10164, "wrong last sequence");
    /// `JSMessageTTLInvalidErr`
    MessageTTLInvalid = (400, 10165, "invalid per-message TTL");
    /// `JSMessageTTLDisabledErr`
    MessageTTLDisabled = (400, 10166, "per-message TTL is disabled");
    /// `JSMessageIncrDisabledErr`
    MessageIncrDisabled = (400, 10168, "message counters is disabled");
    /// `JSMessageIncrMissingErr`
    MessageIncrMissing = (400, 10169, "message counter increment is missing");
    /// `JSMessageIncrPayloadErr`
    MessageIncrPayload = (400, 10170, "message counter has payload");
    /// `JSMessageIncrInvalidErr`
    MessageIncrInvalid = (400, 10171, "message counter increment is invalid");
    /// `JSMessageCounterBrokenErr`
    MessageCounterBroken = (400, 10172, "message counter is broken");
    /// `JSMirrorWithCountersErr`
    MirrorWithCounters = (400, 10173, "stream mirrors can not also calculate counters");
    /// `JSAtomicPublishDisabledErr`
    AtomicPublishDisabled = (400, 10174, "atomic publish is disabled");
    /// `JSAtomicPublishMissingSeqErr`
    AtomicPublishMissingSeq = (400, 10175, "atomic publish sequence is missing");
    /// `JSAtomicPublishIncompleteBatchErr`
    AtomicPublishIncompleteBatch = (400, 10176, "atomic publish batch is incomplete");
    /// `JSAtomicPublishUnsupportedHeaderBatchErr`
    AtomicPublishUnsupportedHeaderBatch = (400, 10177, "atomic publish unsupported header used: {header}");
    /// `JSConsumerPushWithPriorityGroupErr`
    ConsumerPushWithPriorityGroup = (400, 10178, "priority groups can not be used with push consumers");
    /// `JSAtomicPublishInvalidBatchIDErr`
    AtomicPublishInvalidBatchID = (400, 10179, "atomic publish batch ID is invalid");
    /// `JSConsumerAckWaitNegativeErr`
    ConsumerAckWaitNegative = (400, 10183, "consumer ack wait needs to be positive");
    /// `JSConsumerBackOffNegativeErr`
    ConsumerBackOffNegative = (400, 10184, "consumer backoff needs to be positive");
    /// `JSMirrorWithMsgSchedulesErr`
    MirrorWithMsgSchedules = (400, 10186, "stream mirrors can not also schedule messages");
    /// `JSSourceWithMsgSchedulesErr`
    SourceWithMsgSchedules = (400, 10187, "stream source can not also schedule messages");
    /// `JSMessageSchedulesDisabledErr`
    MessageSchedulesDisabled = (400, 10188, "message schedules is disabled");
    /// `JSMessageSchedulesPatternInvalidErr`
    MessageSchedulesPatternInvalid = (400, 10189, "message schedules pattern is invalid");
    /// `JSMessageSchedulesTargetInvalidErr`
    MessageSchedulesTargetInvalid = (400, 10190, "message schedules target is invalid");
    /// `JSMessageSchedulesTTLInvalidErr`
    MessageSchedulesTTLInvalid = (400, 10191, "message schedules invalid per-message TTL");
    /// `JSMessageSchedulesRollupInvalidErr`
    MessageSchedulesRollupInvalid = (400, 10192, "message schedules invalid rollup");
    /// `JSStreamExpectedLastSeqPerSubjectInvalid`
    StreamExpectedLastSeqPerSubjectInvalid = (400, 10193, "missing sequence for expected last sequence per subject");
    /// `JSConsumerPriorityGroupWithPolicyNone`
    ConsumerPriorityGroupWithPolicyNone = (400, 10196, "consumer can not have priority groups when policy is none");
    /// `JSConsumerPinnedTTLWithoutPriorityPolicyNone`
    ConsumerPinnedTTLWithoutPriorityPolicyNone = (400, 10197, "PinnedTTL cannot be set when PriorityPolicy is none");
    /// `JSMirrorWithAtomicPublishErr`
    MirrorWithAtomicPublish = (400, 10198, "stream mirrors can not also use atomic publishing");
    /// `JSAtomicPublishTooLargeBatchErrF`
    AtomicPublishTooLargeBatch = (400, 10199, "atomic publish batch is too large: {size}");
    /// `JSAtomicPublishInvalidBatchCommitErr`
    AtomicPublishInvalidBatchCommit = (400, 10200, "atomic publish batch commit is invalid");
    /// `JSAtomicPublishContainsDuplicateMessageErr`
    AtomicPublishContainsDuplicateMessage = (400, 10201, "atomic publish batch contains duplicate message id");
    /// `JSMessageSchedulesSourceInvalidErr`
    MessageSchedulesSourceInvalid = (400, 10203, "message schedules source is invalid");
    /// `JSConsumerInvalidResetErr`
    ConsumerInvalidReset = (400, 10204, "invalid reset: {err}");
    /// `JSBatchPublishDisabledErr`
    BatchPublishDisabled = (400, 10205, "batch publish is disabled");
    /// `JSBatchPublishInvalidPatternErr`
    BatchPublishInvalidPattern = (400, 10206, "batch publish pattern is invalid");
    /// `JSBatchPublishInvalidBatchIDErr`
    BatchPublishInvalidBatchID = (400, 10207, "batch publish ID is invalid");
    /// `JSBatchPublishUnknownBatchIDErr`
    BatchPublishUnknownBatchID = (400, 10208, "batch publish ID unknown");
    /// `JSMirrorWithBatchPublishErr`
    MirrorWithBatchPublish = (400, 10209, "stream mirrors can not also use batch publishing");
    /// `JSAtomicPublishTooManyInflight`
    AtomicPublishTooManyInflight = (429, 10210, "atomic publish too many inflight");
    /// `JSBatchPublishTooManyInflight`
    BatchPublishTooManyInflight = (429, 10211, "batch publish too many inflight");
    /// `JSMessageSchedulesSchedulerInvalidErr`
    MessageSchedulesSchedulerInvalid = (400, 10212, "message schedules invalid scheduler");
    /// `JSMirrorDurableConsumerCfgInvalid`
    MirrorDurableConsumerCfgInvalid = (400, 10213, "stream mirror consumer config is invalid");
    /// `JSMirrorConsumerRequiresAckFCErr`
    MirrorConsumerRequiresAckFC = (400, 10214, "stream mirror consumer requires flow control ack policy");
    /// `JSSourceDurableConsumerCfgInvalid`
    SourceDurableConsumerCfgInvalid = (400, 10215, "stream source consumer config is invalid");
    /// `JSSourceDurableConsumerDuplicateDetected`
    SourceDurableConsumerDuplicateDetected = (400, 10216, "duplicate stream source consumer detected");
    /// `JSSourceConsumerRequiresAckFCErr`
    SourceConsumerRequiresAckFC = (400, 10217, "stream source consumer requires flow control ack policy");
    /// `JSConsumerAckFCRequiresPushErr`
    ConsumerAckFCRequiresPush = (400, 10218, "flow control ack policy requires a push based consumer");
    /// `JSConsumerAckFCRequiresFCErr`
    ConsumerAckFCRequiresFC = (400, 10219, "flow control ack policy requires flow control");
    /// `JSConsumerAckFCRequiresMaxAckPendingErr`
    ConsumerAckFCRequiresMaxAckPending = (400, 10220, "flow control ack policy requires max ack pending");
    /// `JSConsumerAckFCRequiresNoAckWaitErr`
    ConsumerAckFCRequiresNoAckWait = (400, 10221, "flow control ack policy requires unset ack wait");
    /// `JSConsumerAckFCRequiresNoMaxDeliverErr`
    ConsumerAckFCRequiresNoMaxDeliver = (400, 10222, "flow control ack policy requires unset max deliver");
    /// `JSMessageSchedulesTimeZoneInvalidErr`
    MessageSchedulesTimeZoneInvalid = (400, 10223, "message schedules time zone is invalid");
    /// `JSMessageSourceHdrNotAllowedErr`
    MessageSourceHdrNotAllowed = (400, 10227, "message stream source header is not allowed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_err_code_appears_once() {
        let mut codes: Vec<u32> = JsError::ALL.iter().map(|e| e.err_code()).collect();
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n, "an err_code is in the table twice");
    }

    #[test]
    fn placeholders_are_filled() {
        let e = JsError::SequenceNotFound.with(7);
        assert_eq!((e.code, e.err_code), (400, 10043));
        assert_eq!(e.description, "sequence 7 not found");
        let e = JsError::StreamInvalidConfig.with("bad");
        assert_eq!(e.description, "bad");
        let e = JsError::StreamExternalApiOverlap.with_each(&[&"JS.X", &"$JS.API"]);
        assert_eq!(
            e.description,
            "stream external api prefix JS.X must not overlap with $JS.API"
        );
        let plain = ApiError::from(JsError::StreamNotFound);
        assert_eq!(plain.to_string(), "stream not found (10059)");
    }

    #[test]
    fn only_templates_have_braces_in_pairs() {
        for e in JsError::ALL {
            let d = e.description();
            assert_eq!(d.matches('{').count(), d.matches('}').count(), "{e:?}");
        }
    }
}
