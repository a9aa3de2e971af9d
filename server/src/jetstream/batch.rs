//! Atomic batch publish (`allow_atomic`): messages carrying `Nats-Batch-Id` and
//! `Nats-Batch-Sequence` are staged until the one with `Nats-Batch-Commit` (`1`, or `eob`
//! for "this one only ends the batch"), then stored together or not at all.
//!
//! [`Batches`] is the staging bookkeeping without I/O: it checks the sequence numbering,
//! sizes and limits and says what to do ([`Step`]). The stream's worker checks the whole
//! batch against the stream before storing any of it, stores it in one go, and answers the
//! commit with a PubAck that carries `batch` and `count`.
//!
//! Limits are nats-server's defaults: 1,000 messages per batch, 50 open batches per stream,
//! 1,000 across the server, and a batch unused for 10 s is abandoned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::js_errors::{ApiError, JsError};

/// Most messages in one batch.
pub(crate) const MAX_BATCH_SIZE: u64 = 1000;
/// A batch not added to for this long is abandoned.
pub(crate) const BATCH_TIMEOUT_NS: u64 = 10_000_000_000;
/// Longest batch id.
const MAX_ID_LEN: usize = 64;

/// How many batches of one kind may be open, per stream and on the whole server, and how
/// many are open across every stream.
struct Limits {
    per_stream: usize,
    total: i64,
    inflight: AtomicI64,
}

/// Atomic batches: 50 open per stream, 1,000 on the server.
static ATOMIC: Limits = Limits {
    per_stream: 50,
    total: 1000,
    inflight: AtomicI64::new(0),
};

/// Fast batches: 1,000 open per stream, 50,000 on the server.
static FAST: Limits = Limits {
    per_stream: 1000,
    total: 50_000,
    inflight: AtomicI64::new(0),
};

/// A stream's open batches of one kind, by id, each counted in its kind's server-wide
/// number until it is closed or the stream's worker drops them.
struct Open<B: 'static> {
    batches: HashMap<String, B>,
    limits: &'static Limits,
}

impl<B> Open<B> {
    fn new(limits: &'static Limits) -> Self {
        Open {
            batches: HashMap::new(),
            limits,
        }
    }

    /// Opens batch `id` (not open yet); false when the stream or the server has as many
    /// open as it may.
    fn open(&mut self, id: &str, batch: B) -> bool {
        if self.batches.len() >= self.limits.per_stream {
            return false;
        }
        if self.limits.inflight.fetch_add(1, Ordering::Relaxed) >= self.limits.total {
            self.limits.inflight.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        self.batches.insert(id.to_string(), batch);
        true
    }

    fn close(&mut self, id: &str) -> Option<B> {
        let batch = self.batches.remove(id)?;
        self.limits.inflight.fetch_sub(1, Ordering::Relaxed);
        Some(batch)
    }

    /// Closes the batches last touched (`touched`, ns) before `now - BATCH_TIMEOUT_NS`;
    /// returns their ids.
    fn expire(&mut self, now: u64, touched: impl Fn(&B) -> u64) -> Vec<String> {
        let stale: Vec<String> = self
            .batches
            .iter()
            .filter(|(_, b)| now.saturating_sub(touched(b)) >= BATCH_TIMEOUT_NS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            self.close(id);
        }
        stale
    }

    fn clear(&mut self) {
        self.limits
            .inflight
            .fetch_sub(self.batches.len() as i64, Ordering::Relaxed);
        self.batches.clear();
    }
}

impl<B> Drop for Open<B> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One staged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Staged {
    pub(crate) subject: Vec<u8>,
    pub(crate) headers: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
}

/// What a batch message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Not the last message.
    No,
    /// The last message, stored with the others.
    Yes,
    /// Ends the batch without being stored itself.
    EndOfBatch,
    /// An unknown `Nats-Batch-Commit` value.
    Invalid,
}

impl Commit {
    pub(crate) fn from_header(value: Option<&str>) -> Commit {
        match value {
            None => Commit::No,
            Some("1") => Commit::Yes,
            Some("eob") => Commit::EndOfBatch,
            Some(_) => Commit::Invalid,
        }
    }
}

/// Why a batch was given up, for the `stream_batch_abandoned` advisory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Abandoned {
    Timeout,
    Large,
    Incomplete,
}

impl Abandoned {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Abandoned::Timeout => "timeout",
            Abandoned::Large => "large",
            Abandoned::Incomplete => "incomplete",
        }
    }
}

/// The outcome of one batch message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Staged; the publisher gets an empty reply.
    Staged,
    /// Check and store these, in order; the commit's PubAck reports them.
    Commit(Vec<Staged>),
    /// Refused; when the batch existed it is gone (`Some` says why, for the advisory).
    Refused(ApiError, Option<Abandoned>),
}

struct Atomic {
    msgs: Vec<Staged>,
    last_seq: u64,
    touched: u64,
}

/// A stream's open batches.
pub(crate) struct Batches {
    open: Open<Atomic>,
}

impl Default for Batches {
    fn default() -> Self {
        Batches {
            open: Open::new(&ATOMIC),
        }
    }
}

impl Batches {
    /// Takes batch message `seq` of batch `id` at time `now` (ns).
    pub(crate) fn accept(
        &mut self,
        id: &str,
        seq: Option<&str>,
        commit: Commit,
        msg: Staged,
        now: u64,
    ) -> Step {
        if id.len() > MAX_ID_LEN {
            return Step::Refused(ApiError::from(JsError::AtomicPublishInvalidBatchID), None);
        }
        let Some(seq) = seq.and_then(|s| s.trim().parse::<u64>().ok()) else {
            return Step::Refused(ApiError::from(JsError::AtomicPublishMissingSeq), None);
        };
        // An end-of-batch message does not count towards the size.
        let size = if commit == Commit::EndOfBatch {
            seq.saturating_sub(1)
        } else {
            seq
        };
        if !self.open.batches.contains_key(id) {
            if seq != 1 {
                let err = if size > MAX_BATCH_SIZE {
                    JsError::AtomicPublishTooLargeBatch.with(MAX_BATCH_SIZE)
                } else {
                    ApiError::from(JsError::AtomicPublishIncompleteBatch)
                };
                return Step::Refused(err, None);
            }
            let batch = Atomic {
                msgs: Vec::new(),
                last_seq: 0,
                touched: now,
            };
            if !self.open.open(id, batch) {
                return Step::Refused(ApiError::from(JsError::AtomicPublishTooManyInflight), None);
            }
        }
        if commit == Commit::Invalid {
            self.open.close(id);
            return Step::Refused(
                ApiError::from(JsError::AtomicPublishInvalidBatchCommit),
                None,
            );
        }
        let Some(batch) = self.open.batches.get_mut(id) else {
            return Step::Refused(ApiError::from(JsError::AtomicPublishIncompleteBatch), None);
        };
        batch.last_seq += 1;
        batch.touched = now;
        if batch.last_seq != seq || (seq == 1 && commit == Commit::EndOfBatch) {
            self.open.close(id);
            return Step::Refused(
                ApiError::from(JsError::AtomicPublishIncompleteBatch),
                Some(Abandoned::Incomplete),
            );
        }
        if size > MAX_BATCH_SIZE {
            self.open.close(id);
            return Step::Refused(
                JsError::AtomicPublishTooLargeBatch.with(MAX_BATCH_SIZE),
                Some(Abandoned::Large),
            );
        }
        if commit != Commit::EndOfBatch {
            batch.msgs.push(msg);
        }
        if commit == Commit::No {
            return Step::Staged;
        }
        match self.open.close(id) {
            Some(batch) => Step::Commit(batch.msgs),
            None => Step::Refused(ApiError::from(JsError::AtomicPublishIncompleteBatch), None),
        }
    }

    /// Drops the batches unused since before `now - BATCH_TIMEOUT_NS`; returns their ids.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<String> {
        self.open.expire(now, |b| b.touched)
    }

    /// Drops every open batch (atomic publish switched off).
    pub(crate) fn clear(&mut self) {
        self.open.clear();
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.open.batches.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(n: u8) -> Staged {
        Staged {
            subject: vec![b'a', b'0' + n],
            headers: None,
            payload: vec![n],
        }
    }

    #[test]
    fn a_batch_commits_in_order_or_not_at_all() {
        let mut b = Batches::default();
        assert_eq!(
            b.accept("x", Some("1"), Commit::No, msg(1), 0),
            Step::Staged
        );
        assert_eq!(
            b.accept("x", Some("2"), Commit::No, msg(2), 0),
            Step::Staged
        );
        assert_eq!(
            b.accept("x", Some("3"), Commit::Yes, msg(3), 0),
            Step::Commit(vec![msg(1), msg(2), msg(3)])
        );
        assert!(b.is_empty());
        // End of batch: the last message only commits.
        b.accept("y", Some("1"), Commit::No, msg(1), 0);
        assert_eq!(
            b.accept("y", Some("2"), Commit::EndOfBatch, msg(9), 0),
            Step::Commit(vec![msg(1)])
        );
    }

    #[test]
    fn gaps_bad_commits_and_ids_are_refused() {
        let mut b = Batches::default();
        let code = |s: Step| match s {
            Step::Refused(e, why) => (e.err_code, why),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(b.accept("x", Some("2"), Commit::No, msg(2), 0)),
            (10176, None)
        );
        b.accept("x", Some("1"), Commit::No, msg(1), 0);
        assert_eq!(
            code(b.accept("x", Some("3"), Commit::No, msg(3), 0)),
            (10176, Some(Abandoned::Incomplete))
        );
        assert!(b.is_empty());
        assert_eq!(
            code(b.accept("x", None, Commit::No, msg(1), 0)),
            (10175, None)
        );
        assert_eq!(
            code(b.accept(&"i".repeat(65), Some("1"), Commit::No, msg(1), 0)),
            (10179, None)
        );
        assert_eq!(
            code(b.accept("z", Some("1"), Commit::Invalid, msg(1), 0)),
            (10200, None)
        );
        assert_eq!(
            code(b.accept("e", Some("1"), Commit::EndOfBatch, msg(1), 0)),
            (10176, Some(Abandoned::Incomplete))
        );
        assert_eq!(
            code(b.accept("big", Some("1001"), Commit::Yes, msg(1), 0)),
            (10199, None)
        );
    }

    #[test]
    fn open_batches_count_per_stream_and_server_wide_until_closed_or_dropped() {
        static LIMITS: Limits = Limits {
            per_stream: 2,
            total: 3,
            inflight: AtomicI64::new(0),
        };
        let inflight = || LIMITS.inflight.load(Ordering::Relaxed);
        let mut a = Open::new(&LIMITS);
        assert!(a.open("1", ()) && a.open("2", ()));
        assert!(!a.open("3", ()), "past the stream's limit");
        let mut b = Open::new(&LIMITS);
        assert!(b.open("1", ()));
        assert!(!b.open("2", ()), "past the server's limit");
        assert_eq!(inflight(), 3);
        assert_eq!(a.close("1"), Some(()));
        assert_eq!(a.close("1"), None);
        assert_eq!(inflight(), 2);
        drop(a);
        assert_eq!(inflight(), 1);
        assert!(b.open("2", ()));
        assert_eq!(b.expire(BATCH_TIMEOUT_NS, |_| 0).len(), 2);
        assert_eq!(inflight(), 0);
        assert!(b.open("3", ()));
        b.clear();
        assert_eq!(inflight(), 0);
    }

    #[test]
    fn idle_batches_expire() {
        let mut b = Batches::default();
        b.accept("x", Some("1"), Commit::No, msg(1), 0);
        assert!(b.expire(BATCH_TIMEOUT_NS - 1).is_empty());
        assert_eq!(b.expire(BATCH_TIMEOUT_NS), vec!["x".to_string()]);
        assert!(b.is_empty());
    }
}

/// The reply suffix that marks a fast batch message.
const FAST_SUFFIX: &[u8] = b".$FI";

/// What a fast batch message asks for (the last token before `$FI`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FastOp {
    Start,
    Append,
    Commit,
    CommitEob,
    Ping,
}

/// A fast batch (`allow_batched`) message, read from its reply subject
/// `<inbox>.<id>.<flow>.<gap ok|fail>.<seq>.<op>.$FI`: the messages are stored as they come,
/// the server acknowledging every `flow` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FastMsg {
    pub(crate) id: String,
    pub(crate) seq: u64,
    /// Acknowledge at most every this many messages.
    pub(crate) flow: u16,
    /// Go on past lost messages (else a gap ends the batch).
    pub(crate) gap_ok: bool,
    pub(crate) op: FastOp,
}

/// `None` when `reply` is not a fast batch reply; `Some(Err)` when it ends like one but does
/// not follow the pattern.
pub(crate) fn parse_fast_reply(reply: &[u8]) -> Option<Result<FastMsg, ()>> {
    let rest = reply.strip_suffix(FAST_SUFFIX)?;
    if rest.is_empty() {
        return None;
    }
    let text = std::str::from_utf8(rest).ok();
    Some(text.and_then(parse_fast_tokens).ok_or(()))
}

fn parse_fast_tokens(rest: &str) -> Option<FastMsg> {
    let mut toks = rest.rsplitn(6, '.');
    let op = match toks.next()?.parse::<i64>().ok()? {
        0 => FastOp::Start,
        1 => FastOp::Append,
        2 => FastOp::Commit,
        3 => FastOp::CommitEob,
        4 => FastOp::Ping,
        _ => return None,
    };
    let seq = toks
        .next()?
        .parse::<u64>()
        .ok()
        .filter(|s| *s != 0 && *s != u64::MAX)?;
    if (seq == 1 && op == FastOp::CommitEob)
        || (op == FastOp::Start && seq != 1)
        || (op == FastOp::Append && seq <= 1)
    {
        return None;
    }
    let gap_ok = match toks.next()? {
        "ok" => true,
        "fail" => false,
        _ => return None,
    };
    let flow = match toks.next()?.parse::<i64>().unwrap_or(0) {
        a if a <= 0 => 10,
        a => u16::try_from(a).unwrap_or(u16::MAX),
    };
    let id = toks.next()?.to_string();
    // The inbox before the id must exist.
    toks.next()?;
    Some(FastMsg {
        id,
        seq,
        flow,
        gap_ok,
        op,
    })
}

/// What the worker does with a fast batch message after [`FastBatches::before`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FastNext {
    /// Store the message, then report with [`FastBatches::stored`].
    Store,
    /// Nothing (more) to do.
    Done,
}

struct Fast {
    /// Highest batch sequence received, persisted, and acknowledged by flow control.
    lseq: u64,
    pseq: u64,
    fseq: u64,
    /// Stream sequence of the last message stored.
    sseq: u64,
    ack_messages: u16,
    max_ack_messages: u16,
    gap_ok: bool,
    commit: bool,
    touched: u64,
}

/// A stream's open fast batches. Replies are rendered here: flow acks
/// (`{"type":"ack","seq":N,"msgs":M}`), gaps (`{"type":"gap","last_seq":X,"seq":Y}`), errors
/// (`{"type":"err","seq":N,"error":{...}}`) and the final PubAck with `batch` and `count`.
pub(crate) struct FastBatches {
    open: Open<Fast>,
}

impl Default for FastBatches {
    fn default() -> Self {
        FastBatches {
            open: Open::new(&FAST),
        }
    }
}

fn flow_ack(seq: u64, msgs: u16) -> Vec<u8> {
    format!("{{\"type\":\"ack\",\"seq\":{seq},\"msgs\":{msgs}}}").into_bytes()
}

fn commit_ack(prefix: &[u8], stream_seq: u64, id: &str, count: u64) -> Vec<u8> {
    let mut out = prefix.to_vec();
    let id = serde_json::to_string(id).unwrap_or_default();
    out.extend_from_slice(format!("{stream_seq},\"batch\":{id},\"count\":{count}}}").as_bytes());
    out
}

impl FastBatches {
    /// First half of a fast batch message: the replies to send now, and whether to store
    /// it. `ack_prefix` is the stream's PubAck up to the sequence.
    pub(crate) fn before(
        &mut self,
        msg: &FastMsg,
        now: u64,
        ack_prefix: &[u8],
    ) -> Result<(Vec<Vec<u8>>, FastNext), ApiError> {
        if msg.id.len() > MAX_ID_LEN {
            return Err(JsError::BatchPublishInvalidBatchID.into());
        }
        if !self.open.batches.contains_key(&msg.id) {
            if msg.seq != 1 {
                return Err(JsError::BatchPublishUnknownBatchID.into());
            }
            // A lone publisher may go as fast as it asks; several start slow.
            let ack_messages = if self.open.batches.is_empty() {
                msg.flow.min(500)
            } else {
                1
            };
            let batch = Fast {
                lseq: 0,
                pseq: 0,
                fseq: 0,
                sseq: 0,
                ack_messages,
                max_ack_messages: msg.flow,
                gap_ok: msg.gap_ok,
                commit: false,
                touched: now,
            };
            if !self.open.open(&msg.id, batch) {
                return Err(JsError::BatchPublishTooManyInflight.into());
            }
        }
        let mut out = Vec::new();
        let inflight = self.open.batches.len();
        let Some(b) = self.open.batches.get_mut(&msg.id) else {
            return Err(JsError::BatchPublishUnknownBatchID.into());
        };
        b.touched = now;
        if msg.op == FastOp::Ping {
            // A ping asks where the batch stands; a gap behind it is reported.
            if msg.seq > b.lseq {
                out.push(gap(b.lseq + 1, msg.seq + 1));
                if !b.gap_ok {
                    out.push(commit_ack(ack_prefix, b.sseq, &msg.id, b.lseq));
                    self.open.close(&msg.id);
                    return Ok((out, FastNext::Done));
                }
                b.lseq = msg.seq;
                b.pseq = b.lseq;
                if let Some(ack) = b.flow_control(inflight) {
                    out.push(ack);
                    return Ok((out, FastNext::Done));
                }
            }
            out.push(flow_ack(b.fseq, b.ack_messages));
            return Ok((out, FastNext::Done));
        }
        if b.commit {
            // Committing already: the publisher waits for the PubAck.
            return Ok((out, FastNext::Done));
        }
        b.lseq += 1;
        if b.lseq != msg.seq {
            // Ahead or behind, a sequence out of step is reported (nats-server 2.15.1).
            out.push(gap(b.lseq, msg.seq));
            if b.gap_ok && msg.seq > b.lseq {
                b.lseq = msg.seq;
            } else {
                b.lseq -= 1;
                out.push(commit_ack(ack_prefix, b.sseq, &msg.id, b.lseq));
                self.open.close(&msg.id);
                return Ok((out, FastNext::Done));
            }
        }
        match msg.op {
            FastOp::CommitEob => {
                b.lseq -= 1;
                b.pseq = b.lseq;
                out.push(commit_ack(ack_prefix, b.sseq, &msg.id, b.lseq));
                self.open.close(&msg.id);
                return Ok((out, FastNext::Done));
            }
            FastOp::Commit => b.commit = true,
            _ => {}
        }
        if msg.seq == 1 && !b.commit {
            out.push(flow_ack(0, b.ack_messages));
        }
        Ok((out, FastNext::Store))
    }

    /// Second half: the message was stored (`Ok((stream seq, duplicate))`) or refused.
    pub(crate) fn stored(
        &mut self,
        msg: &FastMsg,
        result: Result<(u64, bool), ApiError>,
        ack_prefix: &[u8],
        stream_error: impl Fn(&ApiError) -> Vec<u8>,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let inflight = self.open.batches.len();
        let Some(b) = self.open.batches.get_mut(&msg.id) else {
            return out;
        };
        match result {
            Ok((seq, false)) => {
                b.sseq = seq;
                b.pseq = b.lseq;
                if b.commit {
                    out.push(commit_ack(ack_prefix, b.sseq, &msg.id, b.lseq));
                    self.open.close(&msg.id);
                } else if let Some(ack) = b.flow_control(inflight) {
                    out.push(ack);
                }
            }
            Ok((dup_seq, true)) => {
                // A duplicate counts as stored for the flow; only a commit goes on.
                b.pseq = msg.seq;
                if let Some(ack) = b.flow_control(inflight) {
                    out.push(ack);
                }
                if !b.commit {
                    return out;
                }
                if !b.gap_ok && b.lseq == 1 {
                    // A batch that ends at once answers as a single publish would.
                    let mut ack = ack_prefix.to_vec();
                    let id = serde_json::to_string(&msg.id).unwrap_or_default();
                    ack.extend_from_slice(
                        format!(
                            "{dup_seq},\"duplicate\": true,\"batch\":{id},\"count\":{}}}",
                            msg.seq
                        )
                        .as_bytes(),
                    );
                    out.push(ack);
                } else {
                    out.push(commit_ack(ack_prefix, b.sseq, &msg.id, b.lseq));
                }
                self.open.close(&msg.id);
            }
            Err(e) => {
                if !b.gap_ok && b.lseq == 1 {
                    out.push(stream_error(&e));
                    self.open.close(&msg.id);
                    return out;
                }
                let err = serde_json::to_string(&e).unwrap_or_default();
                out.push(
                    format!("{{\"type\":\"err\",\"seq\":{},\"error\":{err}}}", msg.seq)
                        .into_bytes(),
                );
                if b.gap_ok && !b.commit {
                    return out;
                }
                b.lseq -= 1;
                b.pseq = b.lseq;
                out.push(commit_ack(ack_prefix, b.sseq, &msg.id, b.lseq));
                self.open.close(&msg.id);
            }
        }
        out
    }

    /// Drops the batches unused since before `now - BATCH_TIMEOUT_NS`.
    pub(crate) fn expire(&mut self, now: u64) {
        self.open.expire(now, |b| b.touched);
    }

    /// Drops every open batch (fast batches switched off).
    pub(crate) fn clear(&mut self) {
        self.open.clear();
    }
}

fn gap(expected: u64, current: u64) -> Vec<u8> {
    format!("{{\"type\":\"gap\",\"last_seq\":{expected},\"seq\":{current}}}").into_bytes()
}

impl Fast {
    /// A flow acknowledgement once another `ack_messages` are stored, adjusting the pace to
    /// the number of open batches (at most 500 between acks, shared among them).
    fn flow_control(&mut self, inflight: usize) -> Option<Vec<u8>> {
        let every = u64::from(self.ack_messages.max(1));
        if self.pseq < self.fseq + every {
            return None;
        }
        self.fseq += (self.pseq - self.fseq) / every * every;
        let share = u16::try_from(500 / inflight.max(1)).unwrap_or(1).max(1);
        let target = share.min(self.max_ack_messages);
        if self.ack_messages < target {
            self.ack_messages = self.ack_messages.saturating_mul(2).min(target);
        } else if self.ack_messages > target {
            self.ack_messages = (self.ack_messages / 2).max(target);
        }
        Some(flow_ack(self.fseq, self.ack_messages))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fast_tests {
    use super::*;

    fn fast(reply: &str) -> FastMsg {
        parse_fast_reply(reply.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn replies_name_the_batch_and_its_place() {
        let m = fast("_INBOX.x.b1.5.fail.1.0.$FI");
        assert_eq!(
            (m.id.as_str(), m.flow, m.gap_ok, m.seq, m.op),
            ("b1", 5, false, 1, FastOp::Start)
        );
        assert_eq!(parse_fast_reply(b"_INBOX.x"), None);
        for bad in [
            "_INBOX.x.b1.5.fail.2.0.$FI",
            "_INBOX.x.b1.5.fail.1.1.$FI",
            "_INBOX.x.b1.5.maybe.1.0.$FI",
            "_INBOX.x.b1.5.fail.1.3.$FI",
            "b1.5.fail.1.0.$FI",
        ] {
            assert_eq!(parse_fast_reply(bad.as_bytes()), Some(Err(())), "{bad}");
        }
    }

    #[test]
    fn a_batch_stores_as_it_goes_and_acks_every_flow() {
        let mut b = FastBatches::default();
        let p = br#"{"stream":"S","seq":"#;
        let text = |v: Vec<Vec<u8>>| -> Vec<String> {
            v.into_iter()
                .map(|m| String::from_utf8(m).unwrap())
                .collect()
        };
        let m1 = fast("i.b.2.fail.1.0.$FI");
        let (out, next) = b.before(&m1, 0, p).unwrap();
        assert_eq!(
            (text(out), next),
            (
                vec![r#"{"type":"ack","seq":0,"msgs":2}"#.to_string()],
                FastNext::Store
            )
        );
        assert!(text(b.stored(&m1, Ok((10, false)), p, |_| Vec::new())).is_empty());
        let m2 = fast("i.b.2.fail.2.1.$FI");
        b.before(&m2, 0, p).unwrap();
        assert_eq!(
            text(b.stored(&m2, Ok((11, false)), p, |_| Vec::new())),
            vec![r#"{"type":"ack","seq":2,"msgs":2}"#]
        );
        let m3 = fast("i.b.2.fail.3.2.$FI");
        b.before(&m3, 0, p).unwrap();
        assert_eq!(
            text(b.stored(&m3, Ok((12, false)), p, |_| Vec::new())),
            vec![r#"{"stream":"S","seq":12,"batch":"b","count":3}"#]
        );
        // A gap in fail mode ends the batch with what was stored.
        let n1 = fast("i.c.10.fail.1.0.$FI");
        b.before(&n1, 0, p).unwrap();
        b.stored(&n1, Ok((13, false)), p, |_| Vec::new());
        let n3 = fast("i.c.10.fail.3.1.$FI");
        let (out, next) = b.before(&n3, 0, p).unwrap();
        assert_eq!(next, FastNext::Done);
        assert_eq!(
            text(out),
            vec![
                r#"{"type":"gap","last_seq":2,"seq":3}"#.to_string(),
                r#"{"stream":"S","seq":13,"batch":"c","count":1}"#.to_string()
            ]
        );
        assert_eq!(
            b.before(&fast("i.c.10.fail.4.1.$FI"), 0, p)
                .unwrap_err()
                .err_code,
            10208
        );
    }
}
