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
/// Most open batches per stream.
const MAX_INFLIGHT_PER_STREAM: usize = 50;
/// Most open batches on the server.
const MAX_INFLIGHT_TOTAL: i64 = 1000;
/// A batch not added to for this long is abandoned.
pub(crate) const BATCH_TIMEOUT_NS: u64 = 10_000_000_000;
/// Longest batch id.
const MAX_ID_LEN: usize = 64;

/// Open batches across every stream of the server.
static INFLIGHT: AtomicI64 = AtomicI64::new(0);

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

struct Open {
    msgs: Vec<Staged>,
    last_seq: u64,
    touched: u64,
}

/// A stream's open batches.
#[derive(Default)]
pub(crate) struct Batches {
    open: HashMap<String, Open>,
}

impl Drop for Batches {
    fn drop(&mut self) {
        INFLIGHT.fetch_sub(self.open.len() as i64, Ordering::Relaxed);
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
        if !self.open.contains_key(id) {
            if seq != 1 {
                let err = if size > MAX_BATCH_SIZE {
                    JsError::AtomicPublishTooLargeBatch.with(MAX_BATCH_SIZE)
                } else {
                    ApiError::from(JsError::AtomicPublishIncompleteBatch)
                };
                return Step::Refused(err, None);
            }
            if self.open.len() >= MAX_INFLIGHT_PER_STREAM {
                return Step::Refused(ApiError::from(JsError::AtomicPublishTooManyInflight), None);
            }
            if INFLIGHT.fetch_add(1, Ordering::Relaxed) >= MAX_INFLIGHT_TOTAL {
                INFLIGHT.fetch_sub(1, Ordering::Relaxed);
                return Step::Refused(ApiError::from(JsError::AtomicPublishTooManyInflight), None);
            }
            self.open.insert(
                id.to_string(),
                Open {
                    msgs: Vec::new(),
                    last_seq: 0,
                    touched: now,
                },
            );
        }
        if commit == Commit::Invalid {
            self.close(id);
            return Step::Refused(
                ApiError::from(JsError::AtomicPublishInvalidBatchCommit),
                None,
            );
        }
        let Some(batch) = self.open.get_mut(id) else {
            return Step::Refused(ApiError::from(JsError::AtomicPublishIncompleteBatch), None);
        };
        batch.last_seq += 1;
        batch.touched = now;
        if batch.last_seq != seq || (seq == 1 && commit == Commit::EndOfBatch) {
            self.close(id);
            return Step::Refused(
                ApiError::from(JsError::AtomicPublishIncompleteBatch),
                Some(Abandoned::Incomplete),
            );
        }
        if size > MAX_BATCH_SIZE {
            self.close(id);
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
        match self.close(id) {
            Some(msgs) => Step::Commit(msgs),
            None => Step::Refused(ApiError::from(JsError::AtomicPublishIncompleteBatch), None),
        }
    }

    /// Drops the batches unused since before `now - BATCH_TIMEOUT_NS`; returns their ids.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<String> {
        let stale: Vec<String> = self
            .open
            .iter()
            .filter(|(_, b)| now.saturating_sub(b.touched) >= BATCH_TIMEOUT_NS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            self.close(id);
        }
        stale
    }

    /// Drops every open batch (atomic publish switched off).
    pub(crate) fn clear(&mut self) {
        let ids: Vec<String> = self.open.keys().cloned().collect();
        for id in ids {
            self.close(&id);
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    fn close(&mut self, id: &str) -> Option<Vec<Staged>> {
        let b = self.open.remove(id)?;
        INFLIGHT.fetch_sub(1, Ordering::Relaxed);
        Some(b.msgs)
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
    fn idle_batches_expire() {
        let mut b = Batches::default();
        b.accept("x", Some("1"), Commit::No, msg(1), 0);
        assert!(b.expire(BATCH_TIMEOUT_NS - 1).is_empty());
        assert_eq!(b.expire(BATCH_TIMEOUT_NS), vec!["x".to_string()]);
        assert!(b.is_empty());
    }
}
