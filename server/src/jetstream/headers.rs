//! NATS header blocks (`NATS/1.0[ status]\r\nName: value\r\n...\r\n\r\n`) as JetStream reads
//! and rewrites them: the headers the server acts on ([`JsHeaders`]), and the edits that
//! sourcing, republish and markers make. Header names are case-sensitive, as in nats-server.

pub(crate) use crate::proto::headers::{append, get, pairs, remove, set};

/// The headers the server acts on when a message is stored.
#[derive(Default, Debug)]
pub(crate) struct JsHeaders<'a> {
    pub(crate) msg_id: Option<&'a str>,
    pub(crate) expected_stream: Option<&'a str>,
    pub(crate) expected_last_seq: Option<&'a str>,
    pub(crate) expected_last_subject_seq: Option<&'a str>,
    pub(crate) expected_last_subject_seq_subject: Option<&'a str>,
    pub(crate) expected_last_msg_id: Option<&'a str>,
    pub(crate) rollup: Option<&'a str>,
    pub(crate) ttl: Option<&'a str>,
    pub(crate) stream_source: Option<&'a str>,
    pub(crate) batch_id: Option<&'a str>,
    pub(crate) batch_seq: Option<&'a str>,
    pub(crate) batch_commit: Option<&'a str>,
    pub(crate) schedule: Option<&'a str>,
    pub(crate) schedule_target: Option<&'a str>,
    pub(crate) schedule_source: Option<&'a str>,
    pub(crate) schedule_ttl: Option<&'a str>,
    pub(crate) schedule_rollup: Option<&'a str>,
    pub(crate) schedule_time_zone: Option<&'a str>,
    pub(crate) schedule_next: Option<&'a str>,
    pub(crate) scheduler: Option<&'a str>,
    /// `Nats-Incr`: a counter stream's increment.
    pub(crate) incr: Option<&'a str>,
}

impl JsHeaders<'_> {
    /// `Nats-Schedule-Rollup`, when not empty.
    pub(crate) fn schedule_rollup(&self) -> Option<&str> {
        self.schedule_rollup.filter(|r| !r.is_empty())
    }
}

/// Reads the headers the server acts on out of a header block.
pub(crate) fn parse(block: &[u8]) -> JsHeaders<'_> {
    let mut h = JsHeaders::default();
    for (key, value) in pairs(block) {
        let slot = match key {
            "Nats-Msg-Id" => &mut h.msg_id,
            "Nats-Expected-Stream" => &mut h.expected_stream,
            "Nats-Expected-Last-Sequence" => &mut h.expected_last_seq,
            "Nats-Expected-Last-Subject-Sequence" => &mut h.expected_last_subject_seq,
            "Nats-Expected-Last-Subject-Sequence-Subject" => {
                &mut h.expected_last_subject_seq_subject
            }
            "Nats-Expected-Last-Msg-Id" => &mut h.expected_last_msg_id,
            "Nats-Rollup" => &mut h.rollup,
            "Nats-TTL" => &mut h.ttl,
            "Nats-Stream-Source" => &mut h.stream_source,
            "Nats-Batch-Id" => &mut h.batch_id,
            "Nats-Batch-Sequence" => &mut h.batch_seq,
            "Nats-Batch-Commit" => &mut h.batch_commit,
            "Nats-Schedule" => &mut h.schedule,
            "Nats-Schedule-Target" => &mut h.schedule_target,
            "Nats-Schedule-Source" => &mut h.schedule_source,
            "Nats-Schedule-TTL" => &mut h.schedule_ttl,
            "Nats-Schedule-Rollup" => &mut h.schedule_rollup,
            "Nats-Schedule-Time-Zone" => &mut h.schedule_time_zone,
            "Nats-Schedule-Next" => &mut h.schedule_next,
            "Nats-Scheduler" => &mut h.scheduler,
            super::counter::INCR => &mut h.incr,
            _ => continue,
        };
        // The first occurrence counts, as Go's header lookup returns it.
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    h
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_sensitive_and_first_wins() {
        let h =
            parse(b"NATS/1.0\r\nnats-msg-id: a\r\nNats-Rollup: sub\r\nNats-Rollup: all\r\n\r\n");
        assert!(h.msg_id.is_none());
        assert_eq!(h.rollup, Some("sub"));
    }
}
