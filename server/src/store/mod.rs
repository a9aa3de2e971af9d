//! JetStream message stores: [`MemStore`] and [`FileStore`] behind one object-safe
//! [`MessageStore`] trait, plus [`ConsumerStore`] for consumer state blobs.
//!
//! The stores are synchronous (a `Mutex` around the state); async callers run them on
//! blocking threads (`spawn_blocking`) because a store call may `fsync`.
//!
//! # Limits
//! The store enforces `max_msgs`, `max_bytes`, `max_age` (on [`MessageStore::expire`],
//! which the owner calls periodically, and on every store), `max_msgs_per_subject`,
//! `max_msg_size` and the discard policy. With [`Discard::New`] a store past a limit
//! fails with [`StoreError::MaxMsgs`]/[`StoreError::MaxBytes`]/
//! [`StoreError::MaxMsgsPerSubject`] (the JetStream API layer maps store errors onto its
//! error codes; the store knows none).
//!
//! # Byte accounting
//! `bytes` in [`StoreState`] matches nats-server: a file-store message counts
//! `22 + subject + payload + 8` (plus `4 + headers` when it has headers), a memory-store
//! message `subject + headers + payload + 16`. [`MessageStore::stored_size`] exposes the
//! same figure for account quota checks before a store.
//!
//! # Durability contract (file store)
//! [`MessageStore::store_msg`] returns only after the record has been written to the OS
//! with `pwrite`. Everything the OS has survives a process crash (`kill -9`): on reopen the
//! store has every message whose `store_msg` returned. Only power loss or a kernel crash
//! can lose data the OS had not yet flushed; that window is bounded by [`SyncPolicy`]:
//! `Always` fsyncs before returning (writers waiting together share one fsync), and the
//! default `Interval(1s)` fsyncs from a background thread at most one second after a
//! write. A torn record at the tail (a write cut short by a crash) is truncated on
//! reopen. Head evictions by limits are replayed deterministically at open, and an
//! explicit delete or purge is written as a tombstone/floor record before it returns.

mod consumer;
pub(crate) mod dirlock;
#[cfg(test)]
mod fault_tests;
mod filestore;
pub(crate) mod fs;
mod index;
mod memstore;
pub(crate) mod record;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

pub(crate) use consumer::{ConsumerStore, MemConsumerStore};
pub(crate) use filestore::{FileStore, FileStoreConfig, SyncPolicy};
pub(crate) use memstore::MemStore;

/// A store error as nats-server words an I/O failure: `<path>: no space left on device`
/// (Go's lower-case errno text, no "os error" suffix).
pub(crate) fn io_error_text(e: &StoreError) -> String {
    match e {
        StoreError::Io { path, source } => {
            let reason = source.to_string();
            let reason = reason
                .find(" (os error ")
                .map_or(reason.as_str(), |i| &reason[..i]);
            let mut chars = reason.chars();
            let reason: String = match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => String::new(),
            };
            format!("{}: {reason}", path.display())
        }
        StoreError::WriteFailed(text) => text.clone(),
        other => other.to_string(),
    }
}

/// What a store lost to damaged files, as nats-server reports it in stream state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct LostData {
    /// Sequences that could not be read back (at most 10,000 listed).
    pub msgs: Vec<u64>,
    /// Bytes skipped.
    pub bytes: u64,
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageType {
    /// On disk, in a [`FileStore`].
    File,
    /// In memory, in a [`MemStore`].
    Memory,
}

/// What happens when a limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Discard {
    /// Evict the oldest messages (default).
    #[default]
    Old,
    /// Refuse the new message.
    New,
}

/// The stream limits the store enforces. `None` means unlimited (the config's `-1`/`0`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct StoreLimits {
    /// `max_msgs`.
    pub max_msgs: Option<u64>,
    /// `max_bytes`, in accounted bytes.
    pub max_bytes: Option<u64>,
    /// `max_age`.
    pub max_age: Option<Duration>,
    /// `max_msgs_per_subject`.
    pub max_msgs_per_subject: Option<u64>,
    /// `max_msg_size`: headers + payload.
    pub max_msg_size: Option<u64>,
    /// `discard`.
    pub discard: Discard,
    /// `discard_new_per_subject`: with `Discard::New`, refuse instead of evicting per subject.
    pub discard_new_per_subject: bool,
}

/// A message read back from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMsg {
    /// Subject it was published on.
    pub subject: Bytes,
    /// Stream sequence.
    pub seq: u64,
    /// Timestamp, ns since the Unix epoch.
    pub ts: u64,
    /// Header block (`NATS/1.0\r\n...`) when the message had one.
    pub headers: Option<Bytes>,
    /// Payload.
    pub payload: Bytes,
}

/// Stream state as reported by stream info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StoreState {
    /// Live messages.
    pub msgs: u64,
    /// Accounted bytes of the live messages (nats-server formula).
    pub bytes: u64,
    /// First live sequence, or `last_seq + 1` when empty.
    pub first_seq: u64,
    /// Timestamp of the first live message (0 when empty).
    pub first_ts: u64,
    /// Highest sequence ever assigned (survives purges).
    pub last_seq: u64,
    /// Timestamp of the last stored message (0 if none since the last purge-all).
    pub last_ts: u64,
    /// Deleted sequences between first and last.
    pub num_deleted: u64,
    /// Distinct subjects with live messages.
    pub num_subjects: u64,
    /// Always 0 from the store: the stream layer fills in its consumer count.
    pub consumer_count: u64,
}

/// Per-subject counts from [`MessageStore::subjects_state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubjectState {
    /// The literal subject.
    pub subject: Bytes,
    /// Live messages on it.
    pub msgs: u64,
    /// Its first live sequence.
    pub first_seq: u64,
    /// Its last live sequence.
    pub last_seq: u64,
}

/// A purge request (`$JS.API.STREAM.PURGE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PurgeRequest {
    /// Only subjects matching this (wildcards allowed).
    pub filter: Option<Vec<u8>>,
    /// Only sequences below this one (exclusive).
    pub seq: Option<u64>,
    /// Keep the newest `keep` messages (of the filter, if any).
    pub keep: Option<u64>,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// No live message with that sequence / for that filter.
    #[error("no message found")]
    NotFound,
    /// Discard-new: `max_msgs` reached.
    #[error("maximum messages exceeded")]
    MaxMsgs,
    /// Discard-new: `max_bytes` reached.
    #[error("maximum bytes exceeded")]
    MaxBytes,
    /// Discard-new per subject: `max_msgs_per_subject` reached.
    #[error("maximum messages per subject exceeded")]
    MaxMsgsPerSubject,
    /// Headers + payload larger than `max_msg_size` (or than a record can hold).
    #[error("message size exceeds maximum allowed")]
    MsgTooLarge,
    /// A subject over 65535 bytes cannot be stored.
    #[error("subject too long")]
    SubjectTooLong,
    /// A consumer name that is unusable as a file name.
    #[error("invalid consumer name {0:?}")]
    InvalidName(String),
    /// An earlier I/O failure left the store in an unknown state that could not yet be
    /// rebuilt from its files (it is retried).
    #[error("store poisoned by an earlier I/O error")]
    Poisoned,
    /// Writes are refused for a moment after one failed (the failure, as
    /// `<path>: no space left on device`); the store retries by itself.
    #[error("{0}")]
    WriteFailed(String),
    /// The store was stopped or deleted.
    #[error("store closed")]
    Closed,
    /// Another process (or store instance) holds the directory's LOCK.
    #[error("store directory {0} is locked by another process")]
    Locked(PathBuf),
    /// A damaged record or block.
    #[error("corrupt data in {file} at offset {offset}: {reason}")]
    Corrupt {
        /// File that holds the damage.
        file: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// An I/O failure (the store is poisoned for writes afterwards).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Storage for one stream's messages. Object safe: the stream layer holds a
/// `Box<dyn MessageStore>`.
pub(crate) trait MessageStore: Send + Sync {
    /// Stores a message under the next sequence. `timestamp_ns == 0` means "now".
    /// Returns the assigned `(seq, ts)`.
    fn store_msg(
        &self,
        subject: &[u8],
        headers: Option<&[u8]>,
        payload: &[u8],
        timestamp_ns: u64,
    ) -> Result<(u64, u64), StoreError>;
    /// The live message with sequence `seq`.
    fn load_msg(&self, seq: u64) -> Result<StoredMsg, StoreError>;
    /// The newest message whose subject matches `filter` (wildcards allowed; empty = all).
    fn load_last_msg(&self, filter: &[u8]) -> Result<StoredMsg, StoreError>;
    /// The first message at or after `start_seq` whose subject matches `filter`.
    fn load_next_msg(&self, filter: &[u8], start_seq: u64) -> Result<StoredMsg, StoreError>;
    /// Live messages at or after `start_seq` matching `filter` (consumer pending counts).
    fn num_pending(&self, filter: &[u8], start_seq: u64) -> u64;
    /// Deletes one message; `Ok(false)` when it did not exist.
    fn remove_msg(&self, seq: u64) -> Result<bool, StoreError>;
    /// Deletes one message and overwrites its bytes on disk; `Ok(false)` when missing.
    fn erase_msg(&self, seq: u64) -> Result<bool, StoreError>;
    /// Purges per the request; returns the number of messages removed.
    fn purge(&self, req: &PurgeRequest) -> Result<u64, StoreError>;
    /// Removes every message below `seq`; afterwards `first_seq >= seq`. Returns the count.
    fn compact(&self, seq: u64) -> Result<u64, StoreError>;
    /// Raises `last_seq` to `through` without storing anything: the sequences in between
    /// count as deleted (a mirror following an origin that no longer has them). Nothing
    /// happens when `last_seq` is already there.
    fn skip_msgs(&self, through: u64) -> Result<(), StoreError>;
    /// Removes messages older than `max_age` relative to `now_ns`; returns the count.
    fn expire(&self, now_ns: u64) -> Result<u64, StoreError>;
    /// Current state.
    fn state(&self) -> StoreState;
    /// Per-subject counts for subjects matching `filter` (empty = all), sorted by subject.
    fn subjects_state(&self, filter: &[u8]) -> Vec<SubjectState>;
    /// Interior deleted sequences (stream info `deleted_details`).
    fn deleted_seqs(&self) -> Vec<u64>;

    /// Data recovery could not read back from damaged files (nats-server's `lost` in
    /// stream state); `None` when nothing was lost.
    fn lost(&self) -> Option<LostData> {
        None
    }
    /// Accounted size of a message in this store type.
    fn stored_size(&self, subject: &[u8], headers: Option<&[u8]>, payload: &[u8]) -> u64;
    /// Applies new limits, evicting at once what they exclude.
    fn update_config(&self, limits: &StoreLimits) -> Result<(), StoreError>;
    /// Forces everything written so far to stable storage.
    fn flush(&self) -> Result<(), StoreError>;
    /// Calls `visit(seq, ts, headers)` for every live message with headers stored at or
    /// after `min_ts`, in sequence order (the de-duplication window's Msg-Ids after a
    /// restart).
    fn visit_headers_since(&self, min_ts: u64, visit: &mut dyn FnMut(u64, u64, &[u8])) {
        let state = self.state();
        let mut seq = state.last_seq;
        let mut found = Vec::new();
        while seq >= state.first_seq && seq > 0 {
            if let Ok(m) = self.load_msg(seq) {
                if m.ts < min_ts {
                    break;
                }
                if m.headers.is_some() {
                    found.push(m);
                }
            }
            seq -= 1;
        }
        for m in found.iter().rev() {
            if let Some(h) = &m.headers {
                visit(m.seq, m.ts, h);
            }
        }
    }
    /// Lets the following stores keep their records in memory until [`Self::commit`], so a
    /// batch of messages costs one write. Reading a held record, `flush` and `stop` write
    /// it out; a crash loses held records, so nothing may be acknowledged before `commit`.
    fn hold_writes(&self) {}
    /// Writes what [`Self::hold_writes`] kept back (into the OS, not fsynced) and stops
    /// holding. An error means the held messages may be lost (the store is poisoned).
    fn commit(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Flushes and closes; later calls fail with [`StoreError::Closed`].
    fn stop(&self) -> Result<(), StoreError>;
    /// Stops and removes all the store's files.
    fn delete(&self) -> Result<(), StoreError>;
    /// File or memory.
    fn storage_type(&self) -> StorageType;
    /// Where consumers of this stream persist their state.
    fn consumer_store(&self) -> std::sync::Arc<dyn ConsumerStore>;
}

/// Accounted size of a file-store message, as nats-server counts it.
pub(crate) fn file_msg_size(
    subject_len: usize,
    headers_len: Option<usize>,
    payload_len: usize,
) -> u64 {
    let hdr = headers_len.map_or(0, |h| 4 + h);
    (22 + subject_len + hdr + payload_len + 8) as u64
}

/// Accounted size of a memory-store message, as nats-server counts it.
pub(crate) fn mem_msg_size(
    subject_len: usize,
    headers_len: Option<usize>,
    payload_len: usize,
) -> u64 {
    (subject_len + headers_len.unwrap_or(0) + payload_len + 16) as u64
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Does the literal `subject` match `filter`? Empty filter and `>` match everything.
pub(crate) fn filter_matches(filter: &[u8], subject: &[u8]) -> bool {
    if filter.is_empty() || filter == b">" {
        return true;
    }
    let mut f = filter.split(|&b| b == b'.');
    let mut s = subject.split(|&b| b == b'.');
    loop {
        match (f.next(), s.next()) {
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(ft), Some(st)) if ft == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Do these headers exempt their message from `max_age` (`Nats-TTL: never`, any case)?
pub(crate) fn never_expires(headers: Option<&[u8]>) -> bool {
    let Some(block) = headers else {
        return false;
    };
    block.split(|&b| b == b'\n').skip(1).any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.strip_prefix(b"Nats-TTL:")
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"never"))
    })
}

/// Is `filter` free of wildcards (a single literal subject)?
pub(crate) fn is_literal(filter: &[u8]) -> bool {
    !filter.is_empty() && !filter.split(|&b| b == b'.').any(|t| t == b"*" || t == b">")
}
