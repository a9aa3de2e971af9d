//! A consumer's delivery state (what was delivered, what is acknowledged, what is still
//! pending) and its compact binary encoding for [`crate::store::ConsumerStore`].
//!
//! # Encoding (version 1)
//! `0x01 | varint delivered.cseq | varint delivered.sseq | varint ack_floor.cseq |
//! varint ack_floor.sseq | varint n_pending | n × (varint sseq - ack_floor.sseq,
//! varint cseq - ack_floor.cseq, varint timestamp_ns) | varint n_redelivered |
//! n × (varint sseq, varint count)`. Redelivery deadlines are not saved: a restored
//! pending message is due `ack_wait` after its last delivery.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

const VERSION: u8 = 1;

/// A (consumer sequence, stream sequence) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SeqPair {
    /// Consumer (delivery) sequence.
    pub consumer_seq: u64,
    /// Stream sequence.
    pub stream_seq: u64,
}

/// A delivered message awaiting its ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Consumer sequence of its first delivery (kept across redeliveries, as nats-server).
    pub consumer_seq: u64,
    /// Time of its last delivery (or progress), ns since the epoch.
    pub timestamp: u64,
    /// When it is due for redelivery, ns; `u64::MAX` while queued for redelivery.
    pub deadline: u64,
}

/// Everything a consumer must remember across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ConsumerState {
    /// Last delivered: highest consumer sequence and the highest stream sequence read.
    pub delivered: SeqPair,
    /// Everything at or below is acknowledged.
    pub ack_floor: SeqPair,
    /// Delivered, unacknowledged messages by stream sequence.
    pub pending: BTreeMap<u64, Pending>,
    /// Delivery counts of messages delivered more than once (`num_redelivered` is its size).
    pub redelivered: FxHashMap<u64, u64>,
}

/// A state blob that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateError {
    /// Unknown version byte.
    #[error("unknown consumer state version {0}")]
    Version(u8),
    /// Cut short or malformed.
    #[error("truncated or malformed consumer state")]
    Malformed,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, StateError> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos).ok_or(StateError::Malformed)?;
        *pos += 1;
        if shift >= 64 {
            return Err(StateError::Malformed);
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
    }
}

impl ConsumerState {
    /// The binary form saved through [`crate::store::ConsumerStore::save`].
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.pending.len() * 16);
        out.push(VERSION);
        put_varint(&mut out, self.delivered.consumer_seq);
        put_varint(&mut out, self.delivered.stream_seq);
        put_varint(&mut out, self.ack_floor.consumer_seq);
        put_varint(&mut out, self.ack_floor.stream_seq);
        put_varint(&mut out, self.pending.len() as u64);
        for (&sseq, p) in &self.pending {
            put_varint(&mut out, sseq.saturating_sub(self.ack_floor.stream_seq));
            put_varint(
                &mut out,
                p.consumer_seq.saturating_sub(self.ack_floor.consumer_seq),
            );
            put_varint(&mut out, p.timestamp);
        }
        let mut rdc: Vec<(u64, u64)> = self.redelivered.iter().map(|(&s, &c)| (s, c)).collect();
        rdc.sort_unstable();
        put_varint(&mut out, rdc.len() as u64);
        for (sseq, count) in rdc {
            put_varint(&mut out, sseq);
            put_varint(&mut out, count);
        }
        out
    }

    /// Decodes [`ConsumerState::encode`]'s output. Deadlines come back as
    /// `timestamp + ack_wait_ns`.
    pub(crate) fn decode(buf: &[u8], ack_wait_ns: u64) -> Result<ConsumerState, StateError> {
        let version = *buf.first().ok_or(StateError::Malformed)?;
        if version != VERSION {
            return Err(StateError::Version(version));
        }
        let mut pos = 1;
        let mut next = || get_varint(buf, &mut pos);
        let delivered = SeqPair {
            consumer_seq: next()?,
            stream_seq: next()?,
        };
        let ack_floor = SeqPair {
            consumer_seq: next()?,
            stream_seq: next()?,
        };
        let n = next()?;
        let mut pending = BTreeMap::new();
        for _ in 0..n {
            // Damaged deltas must not overflow (found by fuzz/consumer_state).
            let sseq = ack_floor
                .stream_seq
                .checked_add(next()?)
                .ok_or(StateError::Malformed)?;
            let consumer_seq = ack_floor
                .consumer_seq
                .checked_add(next()?)
                .ok_or(StateError::Malformed)?;
            let timestamp = next()?;
            pending.insert(
                sseq,
                Pending {
                    consumer_seq,
                    timestamp,
                    deadline: timestamp.saturating_add(ack_wait_ns),
                },
            );
        }
        let n = next()?;
        let mut redelivered = FxHashMap::default();
        for _ in 0..n {
            let sseq = next()?;
            let count = next()?;
            redelivered.insert(sseq, count);
        }
        if pos != buf.len() {
            return Err(StateError::Malformed);
        }
        Ok(ConsumerState {
            delivered,
            ack_floor,
            pending,
            redelivered,
        })
    }
}
