//! Streams with message schedules (`allow_msg_schedules`).
//!
//! The target stream is made with schedules on and the messages are copied in order, so that
//! every schedule message the source still holds (a one-shot `@at` not yet due, a repeating
//! `@every` or cron schedule) is published there again and the target arms it, as a store
//! does when it takes a schedule message. From then on the target fires it itself: `@at` and
//! cron schedules at their times; `@every` counts its interval from the copy (the target
//! knows no earlier firing). What schedules produced before is copied as it is stored, but:
//!
//! - what a one-shot schedule produced (`Nats-Scheduler`, `Nats-Schedule-Next: purge`) is
//!   copied byte for byte: the target takes it from a client and purges the schedule subject,
//!   which holds nothing then (the source purged it when it fired);
//! - what a repeating schedule produced (`Nats-Schedule-Next: <time>`) nats-server refuses
//!   from any client: it is copied without `Nats-Scheduler` and `Nats-Schedule-Next`.
//!
//! Both servers keep firing once a schedule is armed on the target. So that nothing fires
//! twice there, the copy records for each armed schedule the source's last sequence just
//! before it was published ([`Armed::source_after`]) and its sequence there
//! ([`Armed::target_seq`]). What the source stored for that schedule after the one (its
//! products, or a client's end of it) and what the target stored for it after the other are
//! each server's own: left out of the comparison of the two streams, on this run and every
//! later one, and not copied, but for a client's end of a schedule the target still holds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{header_value, is_set, strip_headers};
use crate::jetstream::{JetStream, Reader, StoredMessage};

/// A schedule that the copy armed on the target.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Armed {
    /// The source's last sequence just before the schedule message was published there.
    pub(super) source_after: u64,
    /// The sequence of the schedule message there.
    pub(super) target_seq: u64,
}

/// What the copy armed on the target, as the progress record keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct ArmedSchedules {
    /// By schedule subject (its latest schedule message).
    #[serde(default)]
    by_subject: BTreeMap<String, Armed>,
    /// The `source_after` of a batch with schedule messages, saved before it is published: a
    /// rerun that finds the batch on the target (the run stopped before its record) arms its
    /// schedules with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    publishing: Option<u64>,
}

impl ArmedSchedules {
    pub(super) fn is_empty(&self) -> bool {
        self.by_subject.is_empty() && self.publishing.is_none()
    }

    fn get(&self, subject: &str) -> Option<Armed> {
        self.by_subject.get(subject).copied()
    }

    /// A batch arming schedules after the source's `source_after` is about to be published.
    pub(super) fn publishing(&mut self, source_after: Option<u64>) {
        self.publishing = source_after;
    }

    /// `message`, found on the target at `target_seq` beyond the record, is the source's next:
    /// a schedule message among them was armed there by the batch being published.
    pub(super) fn found(&mut self, message: &StoredMessage, target_seq: u64) {
        let publishing = self.publishing;
        self.stored(message, publishing, target_seq);
    }

    /// After `message` was stored at `target_seq` on the target: a schedule message is armed
    /// there now.
    pub(super) fn stored(
        &mut self,
        message: &StoredMessage,
        source_after: Option<u64>,
        target_seq: u64,
    ) {
        if let (true, Some(source_after)) = (is_schedule(message), source_after) {
            self.by_subject.insert(
                message.subject.clone(),
                Armed {
                    source_after,
                    target_seq,
                },
            );
        }
    }
}

/// Why a stream with schedules cannot be copied (`None` when it can). A one-shot schedule's
/// message stays in a stream that denies purges or roll-ups after it fired; copied, the
/// target would arm it and fire it again. A stream with a subject transform is copied taking
/// only the subjects its messages are stored under, where the target refuses a schedule whose
/// target subject (not produced yet) is none of them.
pub(super) fn not_copyable(config: &Value) -> Option<&'static str> {
    if !is_set(config, "allow_msg_schedules") {
        return None;
    }
    if is_set(config, "deny_purge") || !is_set(config, "allow_rollup_hdrs") {
        return Some(
            "message schedules with deny_purge or without allow_rollup_hdrs (a fired one-shot \
             schedule stays and would fire again on the target)",
        );
    }
    is_set(config, "subject_transform").then_some(
        "message schedules with a subject transform (the copy takes only the stored subjects, \
         where the target refuses a schedule for a subject not stored yet)",
    )
}

/// A schedule message: one that carries `Nats-Schedule`.
fn is_schedule(message: &StoredMessage) -> bool {
    header_value(message.headers.as_deref(), "nats-schedule").is_some_and(|p| !p.is_empty())
}

/// The schedule subject a message produced by a schedule names, if it is one.
fn scheduler(message: &StoredMessage) -> Option<String> {
    header_value(message.headers.as_deref(), "nats-scheduler")
}

/// Headers as a schedule's product is published: a repeating schedule's without
/// `Nats-Scheduler` and `Nats-Schedule-Next` (nats-server takes `Nats-Schedule-Next` from a
/// client only as `purge`); every other message's unchanged.
pub(super) fn portable_output(headers: Option<Vec<u8>>) -> Option<Vec<u8>> {
    match header_value(headers.as_deref(), "nats-schedule-next") {
        None => return headers,
        Some(next) if next == "purge" => return headers,
        Some(_) => {}
    }
    strip_headers(headers.as_deref(), |key| {
        key == "nats-scheduler" || key == "nats-schedule-next"
    })
}

/// The armed schedule `message` belongs to when it was stored after that schedule was armed:
/// its product, or a client's end of it (`Nats-Schedule-Next: purge` naming it). `seq` picks
/// the side's sequence of the arming.
fn after_arming(
    message: &StoredMessage,
    armed: &ArmedSchedules,
    seq: impl Fn(&Armed) -> u64,
) -> Option<(String, Armed)> {
    header_value(message.headers.as_deref(), "nats-schedule-next")?;
    let subject = scheduler(message)?;
    let arming = armed.get(&subject)?;
    (message.seq > seq(&arming)).then_some((subject, arming))
}

/// Whether the source stored `message` for a schedule after it was armed on the target: left
/// out of the comparison (the target makes its own), and copied only when it ends the
/// schedule there (see [`next_to_copy`]).
pub(super) fn made_here_after_arming(message: &StoredMessage, armed: &ArmedSchedules) -> bool {
    after_arming(message, armed, |a| a.source_after).is_some()
}

/// Whether the target stored `message` for a schedule the copy armed there, after it: its
/// own product (or an end the copy passed on), left out of the comparison. The copies of a
/// repeating schedule's earlier products carry no `Nats-Scheduler`, and a one-shot schedule's
/// product is copied before it only when the source fired it before it was armed.
pub(super) fn made_by_target(message: &StoredMessage, armed: &ArmedSchedules) -> bool {
    after_arming(message, armed, |a| a.target_seq).is_some()
}

/// The next source message to copy, past what the target produces itself: a schedule's
/// products after it was armed there. A client's end of a schedule (`Nats-Schedule-Next:
/// purge` naming it, on another subject than the schedule's target) is copied while the
/// target still holds the schedule, which it then ends there too.
pub(super) fn next_to_copy(
    reader: &mut Reader,
    source: &mut JetStream,
    dest: &mut JetStream,
    stream: &str,
    armed: &ArmedSchedules,
) -> anyhow::Result<Option<StoredMessage>> {
    while let Some(message) = reader.next(source)? {
        let Some((subject, arming)) = after_arming(&message, armed, |a| a.source_after) else {
            return Ok(Some(message));
        };
        let ends = header_value(message.headers.as_deref(), "nats-schedule-next")
            .is_some_and(|next| next == "purge");
        if !ends {
            continue;
        }
        // natsd's product goes to the schedule's target subject; the target fires its own.
        let held = dest
            .message(stream, arming.target_seq)?
            .filter(|m| m.subject == subject);
        if held.is_some_and(|schedule| {
            header_value(schedule.headers.as_deref(), "nats-schedule-target").as_deref()
                != Some(message.subject.as_str())
        }) {
            return Ok(Some(message));
        }
    }
    Ok(None)
}

/// Before a batch with schedule messages is published: the source's last sequence now (the
/// `source_after` of the schedules it arms), and the batch without the schedule messages the
/// source no longer holds (fired, replaced or deleted since they were read: their product, if
/// any, is copied instead). `None` when the batch has no schedule message.
pub(super) fn before_arming(
    source: &mut JetStream,
    stream: &str,
    batch: &mut Vec<StoredMessage>,
) -> anyhow::Result<Option<u64>> {
    if !batch.iter().any(is_schedule) {
        return Ok(None);
    }
    let last = source
        .stream_info(stream)?
        .and_then(|i| i["state"]["last_seq"].as_u64())
        .unwrap_or(0);
    let mut kept = Vec::with_capacity(batch.len());
    for message in batch.drain(..) {
        if is_schedule(&message) && source.message(stream, message.seq)?.is_none() {
            continue;
        }
        kept.push(message);
    }
    *batch = kept;
    Ok(Some(last))
}

/// How long the two sides of a stream with armed schedules may differ before the copy is
/// reported as not verified: both servers fire a schedule, each at its own moment (natsd on
/// its next tick, nats-server's timer no sooner than 250 ms, a cluster after replicating),
/// and a fired one-shot schedule removes its schedule message.
const SETTLE: Duration = Duration::from_secs(5);
/// How often the comparison is made again meanwhile.
const SETTLE_POLL: Duration = Duration::from_millis(250);

/// `compare()` until it reports the two sides alike (its `bool`), for up to [`SETTLE`];
/// its last result.
pub(super) fn settled<T>(
    mut compare: impl FnMut() -> anyhow::Result<(T, bool)>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        let (result, alike) = compare()?;
        if alike || start.elapsed() >= SETTLE {
            return Ok(result);
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

/// Whether the target sequences `first..=last` hold only what the target produced itself from
/// armed schedules (it fired while the copy went on).
pub(super) fn own_products(
    dest: &mut JetStream,
    stream: &str,
    first: u64,
    last: u64,
    armed: &ArmedSchedules,
) -> anyhow::Result<bool> {
    if armed.by_subject.is_empty() || first > last {
        return Ok(false);
    }
    Ok(dest
        .messages_at(stream, first, last)?
        .iter()
        .all(|m| made_by_target(m, armed)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(seq: u64, headers: &str) -> StoredMessage {
        StoredMessage {
            seq,
            subject: "out".into(),
            headers: Some(format!("NATS/1.0\r\n{headers}\r\n").into_bytes()),
            payload: b"x".to_vec(),
        }
    }

    #[test]
    fn only_a_repeating_schedules_product_loses_its_schedule_headers() {
        let once = b"NATS/1.0\r\nA: 1\r\nNats-Scheduler: s.a\r\nNats-Schedule-Next: purge\r\n\r\n";
        assert_eq!(portable_output(Some(once.to_vec())).unwrap(), once);
        let every =
            b"NATS/1.0\r\nA: 1\r\nNats-Scheduler: s.e\r\nNats-Schedule-Next: 2030-01-01T00:00:00Z\r\n\r\n";
        assert_eq!(
            portable_output(Some(every.to_vec())).unwrap(),
            b"NATS/1.0\r\nA: 1\r\n\r\n"
        );
        let bare =
            b"NATS/1.0\r\nNats-Scheduler: s.e\r\nNats-Schedule-Next: 2030-01-01T00:00:00Z\r\n\r\n";
        assert_eq!(portable_output(Some(bare.to_vec())), None);
        let plain = b"NATS/1.0\r\nA: 1\r\n\r\n";
        assert_eq!(portable_output(Some(plain.to_vec())).unwrap(), plain);
        assert_eq!(portable_output(None), None);
    }

    #[test]
    fn products_after_arming_belong_to_the_target() {
        let mut armed = ArmedSchedules::default();
        let mut schedule = message(3, "Nats-Schedule: @every 1s\r\nNats-Schedule-Target: out");
        schedule.subject = "s.e".into();
        armed.stored(&schedule, Some(10), 4);
        armed.stored(&message(5, "A: 1"), Some(10), 6);
        assert_eq!(armed.by_subject.len(), 1);
        let product = |seq| {
            message(
                seq,
                "Nats-Scheduler: s.e\r\nNats-Schedule-Next: 2030-01-01T00:00:00Z",
            )
        };
        assert!(!made_here_after_arming(&product(10), &armed));
        assert!(made_here_after_arming(&product(11), &armed));
        assert!(made_by_target(&product(5), &armed));
        assert!(!made_by_target(&product(4), &armed));
        // A copy of an earlier product carries no schedule headers there.
        assert!(!made_by_target(&message(7, "A: 1"), &armed));
        let end = message(12, "Nats-Scheduler: s.e\r\nNats-Schedule-Next: purge");
        assert!(made_here_after_arming(&end, &armed));
        assert!(made_by_target(&end, &armed));
        let other = message(20, "Nats-Scheduler: s.x\r\nNats-Schedule-Next: purge");
        assert!(!made_here_after_arming(&other, &armed));
        assert!(!made_by_target(&other, &armed));
    }

    #[test]
    fn a_difference_is_compared_again_until_both_sides_fired() {
        let mut calls = 0;
        let result = settled(|| {
            calls += 1;
            Ok((calls, calls == 3))
        })
        .unwrap();
        assert_eq!(result, 3);
        assert!(settled(|| anyhow::Ok(((), true))).is_ok());
        assert!(settled(|| -> anyhow::Result<((), bool)> { anyhow::bail!("gone") }).is_err());
    }

    #[test]
    fn schedules_that_would_fire_again_are_refused() {
        let ok = json!({"allow_msg_schedules": true, "allow_rollup_hdrs": true});
        assert_eq!(not_copyable(&ok), None);
        let deny =
            json!({"allow_msg_schedules": true, "allow_rollup_hdrs": true, "deny_purge": true});
        assert!(not_copyable(&deny).is_some());
        assert!(not_copyable(&json!({"allow_msg_schedules": true})).is_some());
        assert_eq!(not_copyable(&json!({"deny_purge": true})), None);
        let transform = json!({"allow_msg_schedules": true, "allow_rollup_hdrs": true,
            "subject_transform": {"src": ">", "dest": "x.>"}});
        assert!(not_copyable(&transform)
            .unwrap()
            .contains("subject transform"));
    }
}
