//! Pull requests (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>` bodies) and the status
//! frames (header-only messages) sent to pull requesters and push subscribers.

use bytes::Bytes;
use serde::Deserialize;

/// A waiting pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PullRequest {
    /// Where the messages and status frames go (the request's reply subject).
    pub reply: Bytes,
    /// Messages still owed.
    pub batch: u64,
    /// Bytes still allowed (0 = unlimited).
    pub max_bytes: u64,
    /// Deadline, ns since the epoch.
    pub expires: Option<u64>,
    /// Answer 404 instead of waiting when nothing is available.
    pub no_wait: bool,
    /// Idle heartbeat interval, ns (0 = none).
    pub heartbeat: u64,
    /// Next heartbeat due, ns.
    pub next_heartbeat: u64,
    /// Messages delivered to it so far.
    pub delivered: u64,
    /// A negative `expires`: answer 408 at once.
    pub expired_on_arrival: bool,
    /// The priority group fields of a JSON request (`None` for an empty or numeric body).
    pub group: Option<PriorityGroup>,
}

/// A pull request's priority group fields (nats-server's `PriorityGroup`, inlined in the
/// request JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct PriorityGroup {
    /// The consumer's priority group the request belongs to.
    #[serde(default)]
    pub group: String,
    /// Overflow: served only while the consumer has at least this many messages pending.
    #[serde(default)]
    pub min_pending: i64,
    /// Overflow: served only while at least this many acks are outstanding.
    #[serde(default)]
    pub min_ack_pending: i64,
    /// Pinned client: the pin id the client was given (`Nats-Pin-Id`).
    #[serde(default)]
    pub id: String,
    /// Prioritized: 0 (first) to 9.
    #[serde(default)]
    pub priority: i64,
}

#[derive(Deserialize)]
struct PullBody {
    #[serde(default)]
    batch: i64,
    #[serde(default)]
    expires: i64,
    #[serde(default)]
    no_wait: bool,
    #[serde(default)]
    max_bytes: i64,
    #[serde(default)]
    idle_heartbeat: i64,
    #[serde(flatten)]
    group: PriorityGroup,
}

impl PullRequest {
    /// Parses a MSG.NEXT body: empty (batch 1), a bare number (the batch; anything else
    /// means 1, as on nats-server) or the JSON form. An error is the `400 Bad Request - ...`
    /// status frame to send back.
    pub(crate) fn parse(reply: Bytes, body: &[u8], now: u64) -> Result<PullRequest, Vec<u8>> {
        let body = body.trim_ascii();
        let mut req = PullRequest {
            reply,
            batch: 1,
            max_bytes: 0,
            expires: None,
            no_wait: false,
            heartbeat: 0,
            next_heartbeat: u64::MAX,
            delivered: 0,
            expired_on_arrival: false,
            group: None,
        };
        if body.is_empty() {
            return Ok(req);
        }
        if body[0] != b'{' {
            let n = std::str::from_utf8(body)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(1);
            req.batch = n.max(1) as u64;
            return Ok(req);
        }
        let parsed: PullBody = crate::json::from_request(body)
            .map_err(|e| status(400, &format!("Bad Request - {e}")))?;
        if parsed.idle_heartbeat > 0 && parsed.idle_heartbeat.saturating_mul(2) > parsed.expires {
            return Err(status(400, "Bad Request - heartbeat value too large"));
        }
        req.group = Some(parsed.group);
        req.batch = parsed.batch.max(1) as u64;
        req.max_bytes = parsed.max_bytes.max(0) as u64;
        req.no_wait = parsed.no_wait;
        if parsed.expires > 0 {
            req.expires = Some(now.saturating_add(parsed.expires as u64));
        } else if parsed.expires < 0 {
            req.expired_on_arrival = true;
        }
        if parsed.idle_heartbeat > 0 {
            req.heartbeat = parsed.idle_heartbeat as u64;
            req.next_heartbeat = now.saturating_add(req.heartbeat);
        }
        Ok(req)
    }
}

/// `NATS/1.0 <code> <description>\r\n\r\n`.
pub(crate) fn status(code: u16, description: &str) -> Vec<u8> {
    format!("NATS/1.0 {code} {description}\r\n\r\n").into_bytes()
}

/// A status with the pending counts still owed to a request.
pub(crate) fn status_with_pending(code: u16, description: &str, msgs: u64, bytes: u64) -> Vec<u8> {
    format!(
        "NATS/1.0 {code} {description}\r\nNats-Pending-Messages: {msgs}\r\nNats-Pending-Bytes: {bytes}\r\n\r\n"
    )
    .into_bytes()
}

/// `NATS/1.0 408 Request Timeout` with the counts still owed.
pub(crate) fn request_timeout(msgs: u64, bytes: u64) -> Vec<u8> {
    status_with_pending(408, "Request Timeout", msgs, bytes)
}

/// `NATS/1.0 409 Consumer Deleted`: the consumer a request waits on is gone.
pub(crate) fn consumer_deleted() -> Vec<u8> {
    status(409, "Consumer Deleted")
}

/// `NATS/1.0 409 Server Shutdown` with the counts still owed: the request will not survive
/// the server going down.
pub(crate) fn server_shutdown(msgs: u64, bytes: u64) -> Vec<u8> {
    status_with_pending(409, "Server Shutdown", msgs, bytes)
}

/// `NATS/1.0 423 Nats-Wrong-Pin-Id` with the counts still owed: the request carries a pin id
/// that is not (or no longer) the pinned client's.
pub(crate) fn wrong_pin_id(msgs: u64, bytes: u64) -> Vec<u8> {
    status_with_pending(423, "Nats-Wrong-Pin-Id", msgs, bytes)
}

/// `NATS/1.0 404 No Messages`.
pub(crate) fn no_messages() -> Vec<u8> {
    b"NATS/1.0 404 No Messages\r\n\r\n".to_vec()
}

/// `NATS/1.0 409 Message Size Exceeds MaxBytes` with the counts still owed.
pub(crate) fn max_bytes_exceeded(msgs: u64, bytes: u64) -> Vec<u8> {
    status_with_pending(409, "Message Size Exceeds MaxBytes", msgs, bytes)
}

/// `NATS/1.0 100 Idle Heartbeat` (push and pull), with the stall marker when flow
/// control is holding delivery.
pub(crate) fn idle_heartbeat(
    last_consumer: u64,
    last_stream: u64,
    stalled: Option<&[u8]>,
) -> Vec<u8> {
    let mut h = format!(
        "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {last_consumer}\r\nNats-Last-Stream: {last_stream}\r\n"
    )
    .into_bytes();
    if let Some(fc) = stalled {
        h.extend_from_slice(b"Nats-Consumer-Stalled: ");
        h.extend_from_slice(fc);
        h.extend_from_slice(b"\r\n");
    }
    h.extend_from_slice(b"\r\n");
    h
}

/// `NATS/1.0 100 FlowControl Request` (sent with the `$JS.FC...` reply subject).
pub(crate) fn flow_control_request() -> Vec<u8> {
    b"NATS/1.0 100 FlowControl Request\r\n\r\n".to_vec()
}
