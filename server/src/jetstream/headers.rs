//! NATS header blocks (`NATS/1.0[ status]\r\nName: value\r\n...\r\n\r\n`) as JetStream reads
//! and rewrites them: the headers the server acts on ([`JsHeaders`]), and the edits that
//! sourcing, republish and markers make. Header names are case-sensitive, as in nats-server.

/// The block of a message without headers of its own that gets some.
const EMPTY: &[u8] = b"NATS/1.0\r\n\r\n";

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

/// `(name, value)` pairs of a block, values trimmed; lines that are not UTF-8 or lack a
/// colon are skipped.
pub(crate) fn pairs(block: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    block
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| std::str::from_utf8(line.strip_suffix(b"\r").unwrap_or(line)).ok())
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k, v.trim()))
        })
}

/// The value of header `name`, if the block has it.
pub(crate) fn get<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    pairs(block).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// The block without the headers `drop` selects (by name); `None` when nothing is left
/// but the status line and it had no status.
pub(crate) fn remove(block: &[u8], drop: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut lines = block.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or(b"NATS/1.0\r");
    out.extend_from_slice(first);
    out.push(b'\n');
    let mut kept = 0;
    for line in lines {
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        if text.is_empty() {
            continue;
        }
        let name = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.split_once(':'))
            .map(|(k, _)| k);
        if name.is_some_and(&drop) {
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
        kept += 1;
    }
    out.extend_from_slice(b"\r\n");
    let bare = first.strip_suffix(b"\r").unwrap_or(first) == b"NATS/1.0";
    (kept > 0 || !bare).then_some(out)
}

/// `block` (or an empty one) with `name: value` lines appended.
pub(crate) fn append(block: Option<&[u8]>, extra: &[(&str, &str)]) -> Vec<u8> {
    let block = block.filter(|b| b.ends_with(b"\r\n\r\n")).unwrap_or(EMPTY);
    let mut out = Vec::with_capacity(block.len() + extra.len() * 32);
    out.extend_from_slice(&block[..block.len() - 2]);
    for (k, v) in extra {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
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

    #[test]
    fn remove_and_append_round_trip() {
        let block = b"NATS/1.0\r\nA: 1\r\nNats-Expected-Stream: x\r\nB: 2\r\n\r\n";
        let kept = remove(block, |n| n.starts_with("Nats-Expected-")).unwrap();
        assert_eq!(kept, b"NATS/1.0\r\nA: 1\r\nB: 2\r\n\r\n");
        assert_eq!(
            remove(b"NATS/1.0\r\nNats-Expected-Stream: x\r\n\r\n", |_| true),
            None
        );
        let added = append(Some(&kept), &[("C", "3")]);
        assert_eq!(added, b"NATS/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
        assert_eq!(append(None, &[("C", "3")]), b"NATS/1.0\r\nC: 3\r\n\r\n");
        assert_eq!(get(&added, "B"), Some("2"));
    }
}
