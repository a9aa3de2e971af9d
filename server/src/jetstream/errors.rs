//! JetStream API errors: the `{"code","err_code","description"}` objects clients match on.
//! Codes and texts are nats-server's (`server/errors.json`), see the reference §8.

use serde::Serialize;

/// One API error as it appears in a reply's `error` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// HTTP-like status.
    pub code: u16,
    /// Stable JetStream error code.
    pub err_code: u32,
    /// Human-readable text.
    pub description: String,
}

impl ApiError {
    /// An error with an explicit description.
    pub fn new(code: u16, err_code: u32, description: impl Into<String>) -> Self {
        ApiError {
            code,
            err_code,
            description: description.into(),
        }
    }

    /// 10002.
    pub fn account_resources_exceeded() -> Self {
        Self::new(400, 10002, "resource limits exceeded for account")
    }
    /// 10003.
    pub fn bad_request() -> Self {
        Self::new(400, 10003, "bad request")
    }
    /// 10023.
    pub fn insufficient_resources() -> Self {
        Self::new(503, 10023, "insufficient resources")
    }
    /// 10025.
    pub fn invalid_json(err: impl std::fmt::Display) -> Self {
        Self::new(400, 10025, format!("invalid JSON: {err}"))
    }
    /// 10027.
    pub fn max_streams() -> Self {
        Self::new(400, 10027, "maximum number of streams reached")
    }
    /// 10028: the text the seed's troubleshooting section quotes.
    pub fn memory_resources_exceeded() -> Self {
        Self::new(500, 10028, "insufficient memory resources available")
    }
    /// 10037.
    pub fn no_message_found() -> Self {
        Self::new(404, 10037, "no message found")
    }
    /// 10039.
    pub fn not_enabled_for_account() -> Self {
        Self::new(503, 10039, "JetStream not enabled for account")
    }
    /// 10043.
    pub fn sequence_not_found(seq: u64) -> Self {
        Self::new(400, 10043, format!("sequence {seq} not found"))
    }
    /// 10047.
    pub fn storage_resources_exceeded() -> Self {
        Self::new(500, 10047, "insufficient storage resources available")
    }
    /// 10052: invalid stream configuration.
    pub fn stream_config(err: impl Into<String>) -> Self {
        Self::new(500, 10052, err)
    }
    /// 10056.
    pub fn stream_name_mismatch() -> Self {
        Self::new(400, 10056, "stream name in subject does not match request")
    }
    /// 10057.
    pub fn msg_delete_failed(err: impl Into<String>) -> Self {
        Self::new(500, 10057, err)
    }
    /// 10058.
    pub fn stream_name_in_use() -> Self {
        Self::new(
            400,
            10058,
            "stream name already in use with a different configuration",
        )
    }
    /// 10059.
    pub fn stream_not_found() -> Self {
        Self::new(404, 10059, "stream not found")
    }
    /// 10060.
    pub fn expected_stream_mismatch() -> Self {
        Self::new(400, 10060, "expected stream does not match")
    }
    /// 10065.
    pub fn subjects_overlap() -> Self {
        Self::new(400, 10065, "subjects overlap with an existing stream")
    }
    /// 10165.
    pub fn msg_ttl_invalid() -> Self {
        Self::new(400, 10165, "invalid per-message TTL")
    }
    /// 10166.
    pub fn msg_ttl_disabled() -> Self {
        Self::new(400, 10166, "per-message TTL is disabled")
    }
    /// 10070.
    pub fn wrong_last_msg_id(id: &str) -> Self {
        Self::new(400, 10070, format!("wrong last msg ID: {id}"))
    }
    /// 10071.
    pub fn wrong_last_sequence(seq: u64) -> Self {
        Self::new(400, 10071, format!("wrong last sequence: {seq}"))
    }
    /// 10074.
    pub fn replicas_not_supported() -> Self {
        Self::new(
            500,
            10074,
            "replicas > 1 not supported in non-clustered mode",
        )
    }
    /// 10077: the store refused the message.
    pub fn store_failed(err: impl Into<String>) -> Self {
        Self::new(503, 10077, err)
    }
    /// 10110.
    pub fn purge_failed(err: impl Into<String>) -> Self {
        Self::new(500, 10110, err)
    }
    /// 10111.
    pub fn rollup_failed(err: impl Into<String>) -> Self {
        Self::new(500, 10111, err)
    }
    /// 10109.
    pub fn stream_sealed() -> Self {
        Self::new(400, 10109, "invalid operation on sealed stream")
    }
    /// Anything unexpected from the store (10077 carries the store's own words).
    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::new(500, 10077, err.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.description, self.err_code)
    }
}

impl std::error::Error for ApiError {}
