//! The file store: append-only block files under `<dir>/msgs/`, an in-memory index rebuilt
//! at open, tombstone/floor records for deletions, block compaction, group-committed
//! fsync. Format: `docs/filestore-format.md`.
//!
//! # Write faults
//! A failed write or fsync (a full disk, EIO) poisons the in-memory state: it may count
//! records that never reached the file. The next access rebuilds it from the files, as an
//! open would (cutting the torn tail), so state and loads never report what is not stored.
//! Writes are then refused with the original error for [`WRITE_RETRY`], after which the
//! next write tries again; the store resumes by itself once one succeeds (a failed fsync is
//! only cleared by a successful one). Each way is logged once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fs4::fs_std::FileExt;
use rustc_hash::{FxHashMap, FxHashSet};

use super::consumer::FileConsumerStore;
use super::fs::{Fs, FsFile, StdFs};
use super::index::{Index, Removed};
use super::memstore::{purge_victims, PurgeVictims};
use super::record::{self, BlockFormat, DecodeError, RecordKind, BLOCK_HEADER_LEN, MAX_RECORD_LEN};
use super::{
    file_msg_size, now_ns, ConsumerStore, MessageStore, PurgeRequest, StorageType, StoreError,
    StoreLimits, StoreState, StoredMsg, SubjectState,
};

/// When written data is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncPolicy {
    /// fsync before every mutating call returns; concurrent writers share one fsync.
    Always,
    /// fsync from a background thread at this interval when something was written.
    Interval(Duration),
}

impl Default for SyncPolicy {
    /// `Interval(1s)`: a process crash loses nothing either way (data is in the OS), so the
    /// interval only bounds what power loss can take. One second is the common "everysec"
    /// trade-off (Redis AOF, Kafka-style flushes): far tighter than nats-server's 2-minute
    /// default while costing at most one fsync per second per stream.
    fn default() -> Self {
        SyncPolicy::Interval(Duration::from_secs(1))
    }
}

/// How open treats damaged data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum RecoveryMode {
    /// Truncate a torn record at the end of the last block (and fsync); damage anywhere
    /// else is reported (see [`FileStore::recovery_report`]), loads of the lost sequences
    /// fail with [`StoreError::Corrupt`] naming file and offset, and the rest is served.
    #[default]
    TolerateTailCorruption,
    /// Any damaged record, torn tail included, fails open with [`StoreError::Corrupt`].
    AbsoluteConsistency,
}

/// File store options.
#[derive(Debug, Clone)]
pub(crate) struct FileStoreConfig {
    /// The stream's directory (holds `LOCK`, `msgs/`, `obs/`).
    pub dir: PathBuf,
    /// Limits to enforce.
    pub limits: StoreLimits,
    /// Roll to a new block once the tail reaches this size (default 8 MiB).
    pub block_size: u64,
    /// fsync policy.
    pub sync: SyncPolicy,
    /// Damage handling at open.
    pub recovery: RecoveryMode,
    /// File-system seam.
    pub fs: Arc<dyn Fs>,
}

impl FileStoreConfig {
    /// Defaults for a store in `dir`.
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        FileStoreConfig {
            dir: dir.into(),
            limits: StoreLimits::default(),
            block_size: 8 * 1024 * 1024,
            sync: SyncPolicy::default(),
            recovery: RecoveryMode::default(),
            fs: Arc::new(StdFs),
        }
    }
}

/// Damage found at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CorruptRegion {
    /// The block file.
    pub file: PathBuf,
    /// Offset of the first bad byte.
    pub offset: u64,
    /// Sequences that may have been lost there (inclusive).
    pub seqs: (u64, u64),
    /// What was wrong.
    pub reason: String,
}

/// What open had to repair or skip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RecoveryReport {
    /// Torn tails truncated: (file, new length).
    pub truncated: Vec<(PathBuf, u64)>,
    /// Damage skipped.
    pub corrupt: Vec<CorruptRegion>,
    /// Files in `msgs/` that are not block files (left alone).
    pub foreign_files: Vec<String>,
    /// Sequences in damaged regions that recovery could not read back (neither live nor
    /// deleted by a record it read), in order; at most [`MAX_LOST_LISTED`] are listed.
    pub lost_msgs: Vec<u64>,
    /// Bytes of damaged records and blocks skipped.
    pub lost_bytes: u64,
}

/// Lost sequences listed at most (a damaged block can span millions).
pub(crate) const MAX_LOST_LISTED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Loc {
    block: u32,
    offset: u32,
    len: u32,
}

#[derive(Debug)]
struct Block {
    first_seq: u64,
    /// Header fields the block's records are encoded against.
    fmt: BlockFormat,
    path: PathBuf,
    file: Arc<dyn FsFile>,
    len: u64,
    live_msgs: u64,
    live_bytes: u64,
    /// Deleted message records still physically in this block.
    dead: Vec<u64>,
    /// Targets of the plain tombstones this block holds.
    tombs: Vec<u64>,
}

#[derive(Debug)]
struct Inner {
    index: Index<Loc>,
    limits: StoreLimits,
    blocks: BTreeMap<u32, Block>,
    tail: u32,
    next_block_id: u32,
    /// Deleted-but-present message records → their block: a tombstone for them is needed.
    dead_at: FxHashMap<u64, u32>,
    persisted_floor: u64,
    floor_block: Option<u32>,
    written_gen: u64,
    /// The in-memory state may not match the files (a write failed); see [`Shared::inner`].
    poisoned: bool,
    /// No reload before this (one that failed is retried later).
    reload_at: Option<Instant>,
    /// Writes are failing: refused until `retry_at`, cleared by the next one that works.
    fault: Option<WriteFault>,
    /// How long the last rebuild after a failed write took.
    reload_cost: Duration,
    /// A failure not yet turned into `fault` (text, was an fsync, when); see [`Inner::fail`].
    failed: Option<(String, bool, Instant)>,
    /// Something failed since [`MessageStore::hold_writes`]: held records may be lost, so
    /// the batch's commit must fail.
    batch_failed: bool,
    closed: bool,
    report: RecoveryReport,
    buf: Vec<u8>,
    /// Appended records not yet written to the tail file (see [`MessageStore::hold_writes`]):
    /// always the last `held.len()` bytes of the tail's `len`.
    held: Vec<u8>,
    holding: bool,
    lock_file: Option<std::fs::File>,
}

/// How long writes are refused after one failed, before the next is tried.
pub(crate) const WRITE_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct WriteFault {
    /// The failure as the publisher sees it (`<path>: no space left on device`).
    error: String,
    since: Instant,
    retry_at: Instant,
    /// A failed fsync: only a successful fsync clears it (a write may work meanwhile).
    sync: bool,
}

impl Inner {
    /// A write (or with `sync`, an fsync) failed with `err`: the state is untrusted until
    /// reloaded, and writes are refused for a while ([`Shared::inner`] does both).
    fn fail(&mut self, err: &StoreError, sync: bool) {
        self.poisoned = true;
        self.batch_failed = true;
        if matches!(err, StoreError::Io { .. }) || (self.failed.is_none() && self.fault.is_none()) {
            self.failed = Some((super::io_error_text(err), sync, Instant::now()));
        }
    }
}

/// Starts (or extends) the write fault for a failure [`Inner::fail`] recorded.
fn note_fault(dir: &Path, g: &mut Inner) {
    let Some((error, sync, now)) = g.failed.take() else {
        return;
    };
    g.reload_at = None;
    match &mut g.fault {
        Some(f) => {
            f.retry_at = now + retry_after(g.reload_cost);
            f.sync |= sync;
            f.error = error;
        }
        None => {
            tracing::error!(
                "JetStream store \"{}\" write failed, refusing writes until one succeeds: {}",
                dir.display(),
                error
            );
            g.fault = Some(WriteFault {
                error,
                since: now,
                retry_at: now + retry_after(g.reload_cost),
                sync,
            });
        }
    }
}

/// How long writes are refused after a failure: [`WRITE_RETRY`], or ten times what the last
/// rebuild from the files took, so a large store that stays full spends at most a tenth
/// of its time re-reading its blocks.
fn retry_after(reload_cost: Duration) -> Duration {
    WRITE_RETRY.max(reload_cost * 10)
}

/// A write (`sync` false) or fsync (`sync` true) worked: ends a fault it can end.
fn healthy(dir: &Path, g: &mut Inner, sync: bool) {
    // Only the kind of operation that failed can show it works again: an fsync of
    // unchanged data succeeds on a full disk, a write succeeds where fsync gives EIO.
    if g.poisoned || g.fault.as_ref().is_none_or(|f| f.sync != sync) {
        return;
    }
    if let Some(f) = g.fault.take() {
        tracing::info!(
            "JetStream store \"{}\" is writable again after {:.1}s, resuming",
            dir.display(),
            f.since.elapsed().as_secs_f64()
        );
    }
}

#[derive(Debug, Default)]
struct SyncState {
    synced_gen: u64,
    syncing: bool,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    sync: Mutex<SyncState>,
    sync_cv: Condvar,
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    msgs_dir: PathBuf,
    block_size: u64,
    policy: SyncPolicy,
    consumers: Arc<FileConsumerStore>,
}

/// A [`MessageStore`] on disk.
#[derive(Debug)]
pub(crate) struct FileStore {
    shared: Arc<Shared>,
    flusher: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn block_name(first_seq: u64) -> String {
    format!("{first_seq:016}.blk")
}

fn parse_block_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".blk")?;
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl FileStore {
    /// Opens (or creates) the store in `cfg.dir`, recovering its index from the blocks.
    pub(crate) fn open(cfg: FileStoreConfig) -> Result<Self, StoreError> {
        let fs = cfg.fs.clone();
        let msgs_dir = cfg.dir.join("msgs");
        fs.create_dir_all(&msgs_dir).map_err(io_err(&msgs_dir))?;
        let lock_path = cfg.dir.join("LOCK");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        if !lock_file.try_lock_exclusive().map_err(io_err(&lock_path))? {
            return Err(StoreError::Locked(cfg.dir.clone()));
        }
        let consumers = Arc::new(FileConsumerStore::new(&cfg.dir.join("obs"), fs.clone())?);
        let mut inner = recover(&*fs, &msgs_dir, cfg.recovery, true)?;
        if !inner.report.corrupt.is_empty() {
            let r = &inner.report;
            tracing::warn!(
                "JetStream store \"{}\" recovered from damaged files: {} messages lost ({} bytes skipped in {} places), first lost {:?}",
                cfg.dir.display(),
                r.lost_msgs.len(),
                r.lost_bytes,
                r.corrupt.len(),
                r.lost_msgs.first()
            );
        }
        inner.lock_file = Some(lock_file);
        inner.limits = cfg.limits.clone();
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            sync: Mutex::new(SyncState::default()),
            sync_cv: Condvar::new(),
            fs,
            dir: cfg.dir.clone(),
            msgs_dir,
            block_size: cfg.block_size.max(4096),
            policy: cfg.sync,
            consumers,
        });
        {
            // Head evictions are not logged; replaying the limits restores them.
            let mut g = shared.inner.lock();
            let Inner { index, limits, .. } = &mut *g;
            let mut removed = Vec::new();
            index.enforce(limits, None, Some(now_ns()), &mut removed);
            shared.apply_removals(&mut g, removed, false, false)?;
        }
        let flusher = match cfg.sync {
            SyncPolicy::Always => None,
            SyncPolicy::Interval(every) => Some(spawn_flusher(&shared, every)),
        };
        Ok(FileStore {
            shared,
            flusher: Mutex::new(flusher),
        })
    }

    /// What open repaired or skipped.
    #[cfg(test)]
    pub(crate) fn recovery_report(&self) -> RecoveryReport {
        self.shared.inner().report.clone()
    }

    /// Bytes of block files on disk.
    #[cfg(test)]
    pub(crate) fn disk_usage(&self) -> u64 {
        self.shared.inner().blocks.values().map(|b| b.len).sum()
    }

    /// Number of block files.
    #[cfg(test)]
    pub(crate) fn block_count(&self) -> usize {
        self.shared.inner().blocks.len()
    }

    /// True once an I/O failure stopped writes.
    #[cfg(test)]
    pub(crate) fn is_poisoned(&self) -> bool {
        self.shared.inner().poisoned
    }

    fn stop_flusher(&self) {
        if let Some((tx, handle)) = self.flusher.lock().take() {
            let _ = tx.send(());
            let _ = handle.join();
        }
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn spawn_flusher(shared: &Arc<Shared>, every: Duration) -> (Sender<()>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let shared = shared.clone();
    let handle = std::thread::spawn(move || loop {
        match rx.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {
                // A failure is logged (once) by the fault handling; keep syncing so the
                // store is durable again once the disk recovers.
                if let Err(StoreError::Closed) = shared.flush() {
                    return;
                }
            }
            _ => return,
        }
    });
    (tx, handle)
}

/// Rebuilds the index from the block files.
/// With `repair` false nothing is written: a torn tail is only skipped and an interrupted
/// compaction left alone (the read-only view after a failed write, see [`Shared::reload`]).
fn recover(
    fs: &dyn Fs,
    msgs_dir: &Path,
    mode: RecoveryMode,
    repair: bool,
) -> Result<Inner, StoreError> {
    let mut report = RecoveryReport::default();
    let mut names: Vec<(u64, String)> = Vec::new();
    for name in fs.list_dir(msgs_dir).map_err(io_err(msgs_dir))? {
        if let Some(seq) = parse_block_name(&name) {
            names.push((seq, name));
        } else if name.ends_with(".blk.tmp") && parse_block_name(&name[..name.len() - 4]).is_some()
        {
            // An interrupted compaction; the original block is intact.
            if repair {
                let p = msgs_dir.join(&name);
                fs.remove_file(&p).map_err(io_err(&p))?;
            }
        } else {
            tracing::warn!(dir = %msgs_dir.display(), file = %name, "ignoring foreign file in store");
            report.foreign_files.push(name);
        }
    }
    names.sort();
    let mut inner = Inner {
        index: Index::new(),
        limits: StoreLimits::default(),
        blocks: BTreeMap::new(),
        tail: 0,
        next_block_id: 0,
        dead_at: FxHashMap::default(),
        persisted_floor: 0,
        floor_block: None,
        written_gen: 0,
        poisoned: false,
        reload_at: None,
        fault: None,
        reload_cost: Duration::ZERO,
        failed: None,
        batch_failed: false,
        closed: false,
        report,
        buf: Vec::new(),
        held: Vec::new(),
        holding: false,
        lock_file: None,
    };
    let count = names.len();
    // Deleted sequences, so a damaged region does not report them as lost.
    let mut tombstoned: FxHashSet<u64> = FxHashSet::default();
    for (i, (first_seq, name)) in names.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let path = msgs_dir.join(&name);
        let data = fs.read(&path).map_err(io_err(&path))?;
        let file = fs.open(&path).map_err(io_err(&path))?;
        let id = inner.next_block_id;
        inner.next_block_id += 1;
        let fmt = match record::decode_block_header(&data) {
            Ok(f) if f.first_seq == first_seq => f,
            Err(DecodeError::UnsupportedVersion(v)) => {
                // A newer format: refuse rather than misread or "repair" it.
                return Err(corrupt(
                    &path,
                    0,
                    &format!("unsupported block format version {v}"),
                ));
            }
            Ok(_) | Err(_) if is_last && data.len() < BLOCK_HEADER_LEN => {
                // A block created just before a crash; rewrite its header.
                if mode == RecoveryMode::AbsoluteConsistency {
                    return Err(corrupt(&path, 0, "torn block header"));
                }
                if !repair {
                    return Err(corrupt(&path, 0, "torn block header (not repaired)"));
                }
                let fmt = BlockFormat::new(first_seq, now_ns());
                file.set_len(0).map_err(io_err(&path))?;
                file.write_all_at(&fmt.encode_header(), 0)
                    .map_err(io_err(&path))?;
                file.sync_data().map_err(io_err(&path))?;
                inner
                    .report
                    .truncated
                    .push((path.clone(), BLOCK_HEADER_LEN as u64));
                fmt
            }
            _ => {
                if mode == RecoveryMode::AbsoluteConsistency {
                    return Err(corrupt(&path, 0, "bad block header"));
                }
                // The records carry their own checksums: read them with what the header
                // must have said (the file name holds first_seq), and rewrite the header.
                let fmt = record::salvage_block_header(&data, first_seq);
                let salvaged = data.len() > fmt.header_len()
                    && resync(&fmt, &data, fmt.header_len(), 0, None).is_some();
                if !salvaged {
                    tracing::error!(file = %path.display(), "bad block header; block skipped");
                    inner.report.lost_bytes += data.len() as u64;
                    inner.report.corrupt.push(CorruptRegion {
                        file: path,
                        offset: 0,
                        seqs: (first_seq, 0),
                        reason: "bad block header".into(),
                    });
                    continue;
                }
                tracing::warn!(file = %path.display(), "bad block header; records read with a rebuilt header");
                if repair {
                    file.write_all_at(&fmt.encode_header(), 0)
                        .map_err(io_err(&path))?;
                    file.sync_data().map_err(io_err(&path))?;
                }
                fmt
            }
        };
        inner.index.bump_last_seq(first_seq.saturating_sub(1), None);
        let header_len = fmt.header_len();
        let mut block = Block {
            first_seq,
            fmt,
            path: path.clone(),
            file,
            len: data.len().max(header_len) as u64,
            live_msgs: 0,
            live_bytes: 0,
            dead: Vec::new(),
            tombs: Vec::new(),
        };
        let mut off = header_len;
        while off < data.len() {
            let rec = match fmt.decode(&data[off..]) {
                Ok(rec) => rec,
                Err(err) => {
                    let claimed = fmt.peek_len(&data[off..]).unwrap_or(0);
                    let next_by_len = !matches!(err, DecodeError::Truncated { .. })
                        && (fmt.min_record_len()..=MAX_RECORD_LEN).contains(&claimed)
                        && off + claimed < data.len()
                        && fmt.decode(&data[off + claimed..]).is_ok();
                    // A damaged length: look for the next record that checks out, so
                    // intact records after the damage are kept (a torn tail has none).
                    let skip_to = resync(
                        &fmt,
                        &data,
                        off + 1,
                        inner.index.last_seq(),
                        next_by_len.then_some(off + claimed),
                    );
                    let skippable = skip_to.is_some();
                    let claimed = skip_to.map_or(claimed, |to| to - off);
                    if mode == RecoveryMode::AbsoluteConsistency {
                        return Err(corrupt(&path, off as u64, &err.to_string()));
                    }
                    if is_last && !skippable {
                        if repair {
                            tracing::warn!(file = %path.display(), offset = off, error = %err, "truncating torn tail");
                            block.file.set_len(off as u64).map_err(io_err(&path))?;
                            block.file.sync_data().map_err(io_err(&path))?;
                        }
                        block.len = off as u64;
                        inner.report.truncated.push((path.clone(), off as u64));
                        break;
                    }
                    tracing::error!(file = %path.display(), offset = off, error = %err, "corrupt record skipped");
                    inner.report.corrupt.push(CorruptRegion {
                        file: path.clone(),
                        offset: off as u64,
                        seqs: (inner.index.last_seq() + 1, 0),
                        reason: err.to_string(),
                    });
                    if !skippable {
                        inner.report.lost_bytes += (data.len() - off) as u64;
                        break;
                    }
                    inner.report.lost_bytes += claimed as u64;
                    off += claimed;
                    continue;
                }
            };
            match rec.kind {
                RecordKind::Msg if rec.seq > inner.index.last_seq() => {
                    let size = file_msg_size(
                        rec.subject.len(),
                        rec.headers.map(<[u8]>::len),
                        rec.payload.len(),
                    ) as u32;
                    let loc = Loc {
                        block: id,
                        offset: off as u32,
                        len: rec.len as u32,
                    };
                    inner.index.insert(rec.seq, rec.ts, rec.subject, size, loc);
                    if super::never_expires(rec.headers) {
                        inner.index.pin(rec.seq);
                    }
                    block.live_msgs += 1;
                    block.live_bytes += rec.len as u64;
                }
                RecordKind::Msg => {
                    inner.report.corrupt.push(CorruptRegion {
                        file: path.clone(),
                        offset: off as u64,
                        seqs: (rec.seq, rec.seq),
                        reason: format!("sequence {} out of order", rec.seq),
                    });
                }
                RecordKind::Tombstone => {
                    tombstoned.insert(rec.seq);
                    let scrubbed = rec.has_body();
                    if !scrubbed {
                        block.tombs.push(rec.seq);
                    }
                    if let Some(r) = inner.index.remove(rec.seq) {
                        mark_dead(&mut inner, &mut block, id, &r);
                    }
                    // A scrubbed record keeps the message's own timestamp.
                    inner
                        .index
                        .bump_last_seq(rec.seq, scrubbed.then_some(rec.ts));
                }
                RecordKind::Floor => {
                    let mut removed = Vec::new();
                    inner.index.remove_below(rec.seq, &mut removed);
                    for r in &removed {
                        mark_dead(&mut inner, &mut block, id, r);
                    }
                    // A floor record carries the stream's last timestamp.
                    inner
                        .index
                        .bump_last_seq(rec.seq.saturating_sub(1), Some(rec.ts));
                    if rec.seq >= inner.persisted_floor {
                        inner.persisted_floor = rec.seq;
                        inner.floor_block = Some(id);
                    }
                }
            }
            off += rec.len;
        }
        inner.blocks.insert(id, block);
    }
    // Close the open-ended corruption ranges.
    let firsts: Vec<(PathBuf, u64)> = inner
        .blocks
        .values()
        .map(|b| (b.path.clone(), b.first_seq))
        .collect();
    let last = inner.index.last_seq();
    for region in &mut inner.report.corrupt {
        if region.seqs.1 == 0 {
            let next_first = firsts.iter().map(|(_, f)| *f).find(|&f| f > region.seqs.0);
            region.seqs.1 = next_first.map_or(last, |f| f - 1);
            if region.seqs.1 < region.seqs.0 {
                region.seqs.1 = region.seqs.0;
            }
        }
    }
    let floor = inner.persisted_floor;
    let mut lost = std::collections::BTreeSet::new();
    for region in inner
        .report
        .corrupt
        .iter()
        .filter(|r| !r.reason.contains("out of order"))
    {
        for seq in region.seqs.0.max(floor)..=region.seqs.1.min(last) {
            if lost.len() >= MAX_LOST_LISTED {
                break;
            }
            if inner.index.get(seq).is_none() && !tombstoned.contains(&seq) {
                lost.insert(seq);
            }
        }
    }
    inner.report.lost_msgs = lost.into_iter().collect();
    if inner.blocks.is_empty() {
        if !repair {
            return Err(StoreError::Poisoned);
        }
        let first = inner.index.last_seq() + 1;
        let id = create_block(fs, msgs_dir, &mut inner, first)?;
        inner.tail = id;
    } else {
        inner.tail = *inner.blocks.keys().next_back().unwrap_or(&0);
        // New records never go after damage: what recovery decided about the damaged
        // bytes must not change when more data follows them.
        let damaged_tail = inner.blocks.get(&inner.tail).is_some_and(|t| {
            inner
                .report
                .corrupt
                .iter()
                .any(|r| r.file == t.path && r.offset > 0)
                && t.first_seq <= inner.index.last_seq()
        });
        if damaged_tail && repair {
            let first = inner.index.last_seq() + 1;
            let id = create_block(fs, msgs_dir, &mut inner, first)?;
            inner.tail = id;
        }
    }
    Ok(inner)
}

/// Where reading resumes past damage: the first offset at or after `from` where a record
/// decodes with a good checksum (a message must also come after `last_seq`). With
/// `by_len` (where the damaged record's own length field points, at a valid record), an
/// earlier candidate wins only when the records that follow it reach as far as those
/// after `by_len`: a damaged length field can point past intact records (found by
/// fuzz/store_recover), while a record-like run of bytes inside a damaged payload cannot
/// continue into the real records after it.
fn resync(
    fmt: &BlockFormat,
    data: &[u8],
    from: usize,
    last_seq: u64,
    by_len: Option<usize>,
) -> Option<usize> {
    let reach = by_len.map(|p| chain_end(fmt, data, p));
    (from..data.len()).find(|&p| {
        if Some(p) == by_len {
            return true;
        }
        let plausible = match fmt.decode(&data[p..]) {
            Ok(rec) => rec.kind != RecordKind::Msg || rec.seq > last_seq,
            Err(_) => false,
        };
        plausible && reach.is_none_or(|r| chain_end(fmt, data, p) >= r)
    })
}

/// Where the run of back-to-back valid records starting at `p` ends.
fn chain_end(fmt: &BlockFormat, data: &[u8], mut p: usize) -> usize {
    while let Ok(rec) = fmt.decode(&data[p..]) {
        p += rec.len;
        if p >= data.len() {
            break;
        }
    }
    p
}

fn corrupt(path: &Path, offset: u64, reason: &str) -> StoreError {
    StoreError::Corrupt {
        file: path.to_path_buf(),
        offset,
        reason: reason.to_owned(),
    }
}

/// Records during recovery that a message record (in `r`'s block) was deleted.
fn mark_dead(inner: &mut Inner, current: &mut Block, current_id: u32, r: &Removed<Loc>) {
    let b = if r.entry.data.block == current_id {
        Some(current)
    } else {
        inner.blocks.get_mut(&r.entry.data.block)
    };
    if let Some(b) = b {
        b.live_msgs -= 1;
        b.live_bytes -= u64::from(r.entry.data.len);
        b.dead.push(r.seq);
    }
    inner.dead_at.insert(r.seq, r.entry.data.block);
}

impl Inner {
    /// The index points at this record for `seq`: the live copy, not an older dead one.
    fn indexes_at(&self, seq: u64, block: u32, offset: usize) -> bool {
        self.index
            .get(seq)
            .is_some_and(|e| e.data.block == block && e.data.offset as usize == offset)
    }
}

/// Writes the held tail bytes out (one write for all of them). A failure poisons the store.
fn write_held(inner: &mut Inner) -> Result<(), StoreError> {
    if inner.held.is_empty() {
        return Ok(());
    }
    let res = match inner.blocks.get(&inner.tail) {
        Some(tail) => tail
            .file
            .write_all_at(&inner.held, tail.len - inner.held.len() as u64)
            .map_err(io_err(&tail.path)),
        None => Err(StoreError::Poisoned),
    };
    inner.held.clear();
    if inner.held.capacity() > MAX_HELD_BYTES {
        inner.held = Vec::new();
    }
    if let Err(e) = &res {
        // The held records' owners get errors; the reload drops them from the index.
        inner.fail(e, false);
    }
    res
}

/// Held bytes are written early past this size, so a batch of large messages does not
/// sit in memory twice.
const MAX_HELD_BYTES: usize = 1 << 20;

/// True when the record at `loc` is still only in the held buffer.
fn is_held(inner: &Inner, loc: Loc) -> bool {
    !inner.held.is_empty()
        && loc.block == inner.tail
        && inner
            .blocks
            .get(&inner.tail)
            .is_some_and(|t| u64::from(loc.offset) >= t.len - inner.held.len() as u64)
}

fn create_block(
    fs: &dyn Fs,
    msgs_dir: &Path,
    inner: &mut Inner,
    first_seq: u64,
) -> Result<u32, StoreError> {
    // Held bytes belong to the current tail, which stops being the tail here.
    write_held(inner)?;
    let path = msgs_dir.join(block_name(first_seq));
    let fmt = BlockFormat::new(first_seq, now_ns());
    let file = fs.open(&path).map_err(io_err(&path))?;
    file.set_len(0).map_err(io_err(&path))?;
    file.write_all_at(&fmt.encode_header(), 0)
        .map_err(io_err(&path))?;
    fs.sync_dir(msgs_dir).map_err(io_err(msgs_dir))?;
    let id = inner.next_block_id;
    inner.next_block_id += 1;
    inner.blocks.insert(
        id,
        Block {
            first_seq,
            fmt,
            path,
            file,
            len: BLOCK_HEADER_LEN as u64,
            live_msgs: 0,
            live_bytes: 0,
            dead: Vec::new(),
            tombs: Vec::new(),
        },
    );
    Ok(id)
}

impl Shared {
    /// The state, rebuilt from the files first when a failed write left it untrusted.
    fn inner(&self) -> MutexGuard<'_, Inner> {
        let mut g = self.inner.lock();
        note_fault(&self.dir, &mut g);
        if g.poisoned && !g.closed && g.reload_at.is_none_or(|at| Instant::now() >= at) {
            self.reload(&mut g);
        }
        g
    }

    /// Replaces the in-memory state with what the files hold, as an open would (the torn
    /// tail cut). When that repair cannot write, a read-only view is taken instead and the
    /// store stays poisoned: reads are right, writes wait for a reload that can repair.
    fn reload(&self, g: &mut Inner) {
        let started = Instant::now();
        let fresh = recover(
            &*self.fs,
            &self.msgs_dir,
            RecoveryMode::TolerateTailCorruption,
            true,
        )
        .map(|i| (i, true))
        .or_else(|_| {
            recover(
                &*self.fs,
                &self.msgs_dir,
                RecoveryMode::TolerateTailCorruption,
                false,
            )
            .map(|i| (i, false))
        });
        let (mut fresh, repaired) = match fresh {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(
                    "JetStream store \"{}\" could not be reloaded after a failed write: {}",
                    self.dir.display(),
                    e
                );
                g.reload_at = Some(Instant::now() + WRITE_RETRY);
                return;
            }
        };
        fresh.lock_file = g.lock_file.take();
        fresh.limits = g.limits.clone();
        fresh.fault = g.fault.take();
        fresh.holding = g.holding;
        fresh.batch_failed = g.batch_failed;
        // Later syncs must not count as done by an fsync of the old state.
        fresh.written_gen = g.written_gen + 1;
        // Damage found at open stays reported; the reload's own torn tail is expected.
        fresh.report.corrupt = std::mem::take(&mut g.report.corrupt);
        fresh.report.foreign_files = std::mem::take(&mut g.report.foreign_files);
        fresh.report.lost_msgs = std::mem::take(&mut g.report.lost_msgs);
        fresh.report.lost_bytes = g.report.lost_bytes;
        let mut truncated = std::mem::take(&mut g.report.truncated);
        truncated.append(&mut fresh.report.truncated);
        fresh.report.truncated = truncated;
        fresh.poisoned = !repaired;
        fresh.reload_cost = started.elapsed();
        fresh.reload_at = (!repaired).then(|| Instant::now() + WRITE_RETRY);
        *g = fresh;
        if repaired {
            let mut removed = Vec::new();
            let Inner { index, limits, .. } = &mut *g;
            index.enforce(limits, None, Some(now_ns()), &mut removed);
            if let Err(e) = self.apply_removals(g, removed, false, false) {
                g.fail(&e, false);
                note_fault(&self.dir, g);
            }
        }
        let st = g.index.state();
        tracing::warn!(
            "JetStream store \"{}\" reloaded from its files after a failed write: {} messages, last sequence {}",
            self.dir.display(),
            st.msgs,
            st.last_seq
        );
    }

    fn writable(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let g = self.inner();
        if g.closed {
            return Err(StoreError::Closed);
        }
        if let Some(f) = &g.fault {
            if g.poisoned || Instant::now() < f.retry_at {
                return Err(StoreError::WriteFailed(f.error.clone()));
            }
        }
        if g.poisoned {
            return Err(StoreError::Poisoned);
        }
        Ok(g)
    }

    /// Appends the whole records `encode` writes (against the format of the block they
    /// land in) to the tail, rolling first when the tail is full or still in an old
    /// format. `buf` is scratch space and holds the encoded bytes afterwards. Returns the
    /// (block, offset) written. With `may_hold` (a store and what it evicts) the bytes stay
    /// in memory while the store is holding writes; anything else is written at once, after
    /// whatever is held. Any failure poisons the store.
    fn append(
        &self,
        g: &mut Inner,
        buf: &mut Vec<u8>,
        roll_ok: bool,
        may_hold: bool,
        encode: impl Fn(&BlockFormat, &mut Vec<u8>),
    ) -> Result<(u32, u64), StoreError> {
        let res = self.append_inner(g, buf, roll_ok, may_hold, encode);
        match &res {
            Err(e) => g.fail(e, false),
            Ok(_) if !g.holding || !may_hold => healthy(&self.dir, g, false),
            Ok(_) => {}
        }
        res
    }

    fn append_inner(
        &self,
        g: &mut Inner,
        buf: &mut Vec<u8>,
        roll_ok: bool,
        may_hold: bool,
        encode: impl Fn(&BlockFormat, &mut Vec<u8>),
    ) -> Result<(u32, u64), StoreError> {
        let next_seq = g.index.last_seq() + 1;
        let tail = g.blocks.get(&g.tail).ok_or(StoreError::Poisoned)?;
        buf.clear();
        encode(&tail.fmt, buf);
        let has_records = tail.len > tail.fmt.header_len() as u64;
        let full = has_records
            && (tail.len + buf.len() as u64 > self.block_size || !tail.fmt.is_current())
            && tail.first_seq != next_seq;
        if roll_ok && full {
            write_held(g)?;
            let tail = g.blocks.get(&g.tail).ok_or(StoreError::Poisoned)?;
            // Sealed blocks are fsynced once, here, so later syncs only need the tail.
            tail.file.sync_data().map_err(io_err(&tail.path))?;
            let id = create_block(&*self.fs, &self.msgs_dir, g, next_seq)?;
            g.tail = id;
            if let Some(t) = g.blocks.get(&id) {
                buf.clear();
                encode(&t.fmt, buf);
            }
        }
        let holding = may_hold && g.holding;
        if !holding {
            write_held(g)?;
        }
        let tail_id = g.tail;
        let tail = g.blocks.get_mut(&tail_id).ok_or(StoreError::Poisoned)?;
        let off = tail.len;
        if !holding {
            tail.file
                .write_all_at(buf, off)
                .map_err(io_err(&tail.path))?;
        }
        tail.len += buf.len() as u64;
        g.written_gen += 1;
        if holding {
            g.held.extend_from_slice(buf);
            if g.held.len() >= MAX_HELD_BYTES {
                write_held(g)?;
            }
        }
        Ok((tail_id, off))
    }

    /// Books removed messages against their blocks; writes tombstones for the ones a
    /// replay would not remove again (`explicit`, or not at the head), then reclaims
    /// blocks that became empty or sparse.
    fn apply_removals(
        &self,
        g: &mut Inner,
        removed: Vec<Removed<Loc>>,
        explicit: bool,
        may_hold: bool,
    ) -> Result<(), StoreError> {
        if removed.is_empty() {
            return Ok(());
        }
        let mut touched: FxHashSet<u32> = FxHashSet::default();
        let mut tomb_seqs = Vec::new();
        let ts = now_ns();
        for r in &removed {
            let loc = r.entry.data;
            if let Some(b) = g.blocks.get_mut(&loc.block) {
                b.live_msgs -= 1;
                b.live_bytes -= u64::from(loc.len);
                b.dead.push(r.seq);
                touched.insert(loc.block);
            }
            g.dead_at.insert(r.seq, loc.block);
            if explicit || !r.head {
                tomb_seqs.push(r.seq);
            }
        }
        if !tomb_seqs.is_empty() {
            let mut buf = Vec::new();
            let (id, _) = self.append(g, &mut buf, true, may_hold, |f, out| {
                for &s in &tomb_seqs {
                    f.encode_tombstone(out, s, ts);
                }
            })?;
            if let Some(b) = g.blocks.get_mut(&id) {
                b.tombs.extend(tomb_seqs);
            }
        }
        self.reclaim(g, &touched)
    }

    /// Removes blocks without live messages and rewrites sparse ones.
    fn reclaim(&self, g: &mut Inner, touched: &FxHashSet<u32>) -> Result<(), StoreError> {
        let mut ids: Vec<u32> = touched.iter().copied().collect();
        ids.sort_unstable();
        let first_live_block = g
            .blocks
            .iter()
            .find(|(_, b)| b.live_msgs > 0)
            .map(|(id, _)| *id);
        for id in ids {
            if id == g.tail {
                continue;
            }
            let Some(b) = g.blocks.get(&id) else { continue };
            let used = b.len.saturating_sub(b.fmt.header_len() as u64);
            if b.live_msgs == 0 {
                self.remove_block(g, id)?;
            } else {
                // The head block empties by itself under eviction; compact it only when
                // very sparse, other blocks once half of them is garbage.
                let ratio = if Some(id) == first_live_block { 4 } else { 2 };
                if b.live_bytes * ratio < used && used >= 4096 {
                    self.rewrite_block(g, id)?;
                }
            }
        }
        // A tail that held messages and lost them all is replaced by a fresh one.
        let tail = g.tail;
        let next_seq = g.index.last_seq() + 1;
        if let Some(b) = g.blocks.get(&tail) {
            if b.live_msgs == 0 && b.first_seq != next_seq && b.len > b.fmt.header_len() as u64 {
                let id = create_block(&*self.fs, &self.msgs_dir, g, next_seq)
                    .inspect_err(|e| g.fail(e, false))?;
                g.tail = id;
                self.remove_block(g, tail)?;
            }
        }
        Ok(())
    }

    /// Deletes a block without live messages, first re-appending to the tail the
    /// tombstones and floor it holds that are still needed.
    fn remove_block(&self, g: &mut Inner, id: u32) -> Result<(), StoreError> {
        let Some(b) = g.blocks.get(&id) else {
            return Ok(());
        };
        let mut seqs = Vec::new();
        let ts = now_ns();
        for &t in &b.tombs {
            if t >= g.persisted_floor && g.dead_at.get(&t).is_some_and(|&blk| blk != id) {
                seqs.push(t);
            }
        }
        let floor =
            (g.floor_block == Some(id) && g.persisted_floor > 0).then_some(g.persisted_floor);
        if !seqs.is_empty() || floor.is_some() {
            let last_ts = g.index.state().last_ts;
            let mut buf = Vec::new();
            let (tail, _) = self.append(g, &mut buf, false, false, |f, out| {
                for &s in &seqs {
                    f.encode_tombstone(out, s, ts);
                }
                if let Some(fl) = floor {
                    f.encode_floor(out, fl, last_ts);
                }
            })?;
            if let Some(t) = g.blocks.get_mut(&tail) {
                t.tombs.extend(seqs);
            }
            if floor.is_some() {
                g.floor_block = Some(tail);
            }
        }
        if let Some(b) = g.blocks.remove(&id) {
            for s in &b.dead {
                g.dead_at.remove(s);
            }
            if let Err(source) = self.fs.remove_file(&b.path) {
                let e = StoreError::Io {
                    path: b.path,
                    source,
                };
                g.fail(&e, false);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Rewrites a sealed block keeping only live messages and needed markers.
    fn rewrite_block(&self, g: &mut Inner, id: u32) -> Result<(), StoreError> {
        let res = self.rewrite_block_inner(g, id);
        if let Err(e) = &res {
            g.fail(e, false);
        }
        res
    }

    fn rewrite_block_inner(&self, g: &mut Inner, id: u32) -> Result<(), StoreError> {
        let Some(b) = g.blocks.get(&id) else {
            return Ok(());
        };
        let path = b.path.clone();
        let fmt = b.fmt;
        let data = self.fs.read(&path).map_err(io_err(&path))?;
        // Same header (same bases), so surviving records are copied byte for byte.
        let mut out = fmt.encode_header();
        let mut moves: Vec<(u64, u32)> = Vec::new();
        let mut tombs = Vec::new();
        let mut kept_floor = false;
        let mut off = fmt.header_len();
        while off < data.len() {
            let Ok(rec) = fmt.decode(&data[off..]) else {
                break;
            };
            let raw = &data[off..off + rec.len];
            match rec.kind {
                RecordKind::Msg => {
                    if g.indexes_at(rec.seq, id, off) {
                        moves.push((rec.seq, out.len() as u32));
                        out.extend_from_slice(raw);
                    }
                }
                RecordKind::Tombstone if !rec.has_body() => {
                    let t = rec.seq;
                    if t >= g.persisted_floor && g.dead_at.get(&t).is_some_and(|&blk| blk != id) {
                        tombs.push(t);
                        out.extend_from_slice(raw);
                    }
                }
                RecordKind::Floor => {
                    if g.floor_block == Some(id) && rec.seq == g.persisted_floor && !kept_floor {
                        kept_floor = true;
                        out.extend_from_slice(raw);
                    }
                }
                RecordKind::Tombstone => {}
            }
            off += rec.len;
        }
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let f = self.fs.open(&tmp).map_err(io_err(&tmp))?;
        f.set_len(0).map_err(io_err(&tmp))?;
        f.write_all_at(&out, 0).map_err(io_err(&tmp))?;
        f.sync_data().map_err(io_err(&tmp))?;
        self.fs.rename(&tmp, &path).map_err(io_err(&path))?;
        self.fs
            .sync_dir(&self.msgs_dir)
            .map_err(io_err(&self.msgs_dir))?;
        for (seq, new_off) in moves {
            if let Some(e) = g.index.get_mut(seq) {
                e.data.offset = new_off;
            }
        }
        let Some(b) = g.blocks.get_mut(&id) else {
            return Ok(());
        };
        let dead = std::mem::take(&mut b.dead);
        b.file = f;
        b.len = out.len() as u64;
        b.tombs = tombs;
        for s in dead {
            g.dead_at.remove(&s);
        }
        Ok(())
    }

    /// Persists the head position when evictions moved it past the last floor record.
    fn write_floor_if_moved(&self, g: &mut Inner) -> Result<(), StoreError> {
        let first = g.index.first_seq();
        if first <= g.persisted_floor || first <= 1 {
            return Ok(());
        }
        self.write_floor(g, first)
    }

    fn write_floor(&self, g: &mut Inner, floor: u64) -> Result<(), StoreError> {
        let last_ts = g.index.state().last_ts;
        let mut buf = Vec::new();
        let (id, _) = self.append(g, &mut buf, false, false, |f, out| {
            f.encode_floor(out, floor, last_ts)
        })?;
        g.persisted_floor = floor;
        g.floor_block = Some(id);
        Ok(())
    }

    /// Group commit: returns once everything up to write generation `gen` is fsynced.
    /// One caller fsyncs the tail for everybody waiting; the others sleep on the condvar.
    fn sync_to(&self, gen: u64) -> Result<(), StoreError> {
        let mut s = self.sync.lock();
        loop {
            if s.synced_gen >= gen {
                return Ok(());
            }
            if !s.syncing {
                s.syncing = true;
                drop(s);
                let (file, path, target, poisoned) = {
                    let mut g = self.inner.lock();
                    let held_failed = write_held(&mut g).is_err();
                    let tail = g.blocks.get(&g.tail);
                    (
                        tail.map(|b| b.file.clone()),
                        tail.map(|b| b.path.clone()).unwrap_or_default(),
                        g.written_gen,
                        g.poisoned || held_failed,
                    )
                };
                let res = match (poisoned, file) {
                    (false, Some(f)) => f.sync_data().map_err(io_err(&path)),
                    _ => Err(StoreError::Poisoned),
                };
                s = self.sync.lock();
                s.syncing = false;
                if res.is_ok() {
                    s.synced_gen = s.synced_gen.max(target);
                }
                self.sync_cv.notify_all();
                drop(s);
                let mut g = self.inner.lock();
                match &res {
                    Ok(()) => healthy(&self.dir, &mut g, true),
                    Err(e) => g.fail(e, true),
                }
                drop(g);
                res?;
                s = self.sync.lock();
            } else {
                self.sync_cv.wait(&mut s);
                if self.inner.lock().poisoned && s.synced_gen < gen {
                    return Err(StoreError::Poisoned);
                }
            }
        }
    }

    /// Syncs according to policy after a mutation that reached generation `gen`.
    fn after_write(&self, gen: u64) -> Result<(), StoreError> {
        match self.policy {
            SyncPolicy::Always => self.sync_to(gen),
            SyncPolicy::Interval(_) => Ok(()),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        let gen = {
            let mut g = self.writable()?;
            self.write_floor_if_moved(&mut g)?;
            g.written_gen
        };
        self.sync_to(gen)
    }

    /// Reads a live message; a record still held is written out first, so nothing is
    /// served that a crash could take back.
    fn read_msg(&self, g: &mut Inner, seq: u64) -> Result<StoredMsg, StoreError> {
        if let Some(e) = g.index.get(seq) {
            if is_held(g, e.data) {
                write_held(g)?;
            }
        }
        let Some(e) = g.index.get(seq) else {
            if let Some(r) = g
                .report
                .corrupt
                .iter()
                .find(|r| (r.seqs.0..=r.seqs.1).contains(&seq))
            {
                return Err(corrupt(&r.file, r.offset, &r.reason));
            }
            return Err(StoreError::NotFound);
        };
        let loc = e.data;
        let b = g.blocks.get(&loc.block).ok_or(StoreError::NotFound)?;
        let mut buf = vec![0u8; loc.len as usize];
        b.file
            .read_exact_at(&mut buf, u64::from(loc.offset))
            .map_err(io_err(&b.path))?;
        let rec = b
            .fmt
            .decode(&buf)
            .map_err(|err| corrupt(&b.path, u64::from(loc.offset), &err.to_string()))?;
        if rec.seq != seq || rec.kind != RecordKind::Msg {
            return Err(corrupt(
                &b.path,
                u64::from(loc.offset),
                "index points at wrong record",
            ));
        }
        // Body fields are contiguous: subject, headers, payload.
        let subj_start = rec.subject.as_ptr() as usize - buf.as_ptr() as usize;
        let subj_len = rec.subject.len();
        let hdr = rec.headers.map(<[u8]>::len);
        let payload_len = rec.payload.len();
        let ts = rec.ts;
        let all = Bytes::from(buf);
        let hdr_start = subj_start + subj_len;
        let pay_start = hdr_start + hdr.unwrap_or(0);
        Ok(StoredMsg {
            subject: all.slice(subj_start..hdr_start),
            seq,
            ts,
            headers: hdr.map(|_| all.slice(hdr_start..pay_start)),
            payload: all.slice(pay_start..pay_start + payload_len),
        })
    }
}

impl MessageStore for FileStore {
    fn store_msg(
        &self,
        subject: &[u8],
        headers: Option<&[u8]>,
        payload: &[u8],
        timestamp_ns: u64,
    ) -> Result<(u64, u64), StoreError> {
        let sh = &*self.shared;
        let mut guard = sh.writable()?;
        let g = &mut *guard;
        if subject.len() > usize::from(u16::MAX) {
            return Err(StoreError::SubjectTooLong);
        }
        let hdr_len = headers.map(<[u8]>::len);
        if record::max_record_len(subject.len(), hdr_len.unwrap_or(0), payload.len())
            > MAX_RECORD_LEN
        {
            return Err(StoreError::MsgTooLarge);
        }
        let size = file_msg_size(subject.len(), hdr_len, payload.len());
        let content = (hdr_len.unwrap_or(0) + payload.len()) as u64;
        g.index.admit(&g.limits, subject, content, size)?;
        let ts = if timestamp_ns == 0 {
            now_ns()
        } else {
            timestamp_ns
        };
        let seq = g.index.last_seq() + 1;
        let mut buf = std::mem::take(&mut g.buf);
        let res = sh.append(g, &mut buf, true, true, |f, out| {
            f.encode_msg(out, seq, ts, subject, headers, payload)
        });
        let rec_len = buf.len();
        g.buf = buf;
        let (block, off) = res?;
        if let Some(b) = g.blocks.get_mut(&block) {
            b.live_msgs += 1;
            b.live_bytes += rec_len as u64;
        }
        let loc = Loc {
            block,
            offset: off as u32,
            len: rec_len as u32,
        };
        g.index.insert(seq, ts, subject, size as u32, loc);
        if super::never_expires(headers) {
            g.index.pin(seq);
        }
        let mut removed = Vec::new();
        let now = g.limits.max_age.map(|_| now_ns());
        let Inner { index, limits, .. } = &mut *g;
        index.enforce(limits, Some(subject), now, &mut removed);
        sh.apply_removals(g, removed, false, true)?;
        let gen = g.written_gen;
        drop(guard);
        sh.after_write(gen)?;
        Ok((seq, ts))
    }

    fn load_msg(&self, seq: u64) -> Result<StoredMsg, StoreError> {
        let mut g = self.shared.inner();
        self.shared.read_msg(&mut g, seq)
    }

    fn load_last_msg(&self, filter: &[u8]) -> Result<StoredMsg, StoreError> {
        let mut g = self.shared.inner();
        let seq = g.index.last_match(filter).ok_or(StoreError::NotFound)?;
        self.shared.read_msg(&mut g, seq)
    }

    fn load_next_msg(&self, filter: &[u8], start_seq: u64) -> Result<StoredMsg, StoreError> {
        let mut g = self.shared.inner();
        let seq = g
            .index
            .next_match(filter, start_seq)
            .ok_or(StoreError::NotFound)?;
        self.shared.read_msg(&mut g, seq)
    }

    fn num_pending(&self, filter: &[u8], start_seq: u64) -> u64 {
        self.shared.inner().index.num_pending(filter, start_seq)
    }

    fn remove_msg(&self, seq: u64) -> Result<bool, StoreError> {
        let sh = &*self.shared;
        let mut g = sh.writable()?;
        let Some(r) = g.index.remove(seq) else {
            return Ok(false);
        };
        sh.apply_removals(&mut g, vec![r], true, false)?;
        let gen = g.written_gen;
        drop(g);
        sh.after_write(gen)?;
        Ok(true)
    }

    fn erase_msg(&self, seq: u64) -> Result<bool, StoreError> {
        let sh = &*self.shared;
        let mut guard = sh.writable()?;
        let g = &mut *guard;
        // The record is overwritten in place, so it must be in the file first.
        write_held(g)?;
        let Some(loc) = g.index.get(seq).map(|e| e.data) else {
            return Ok(false);
        };
        let Some(b) = g.blocks.get(&loc.block) else {
            return Ok(false);
        };
        let (file, path, fmt) = (b.file.clone(), b.path.clone(), b.fmt);
        let mut rec = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut rec, u64::from(loc.offset))
            .map_err(io_err(&path))?;
        if !fmt.scrub_in_place(&mut rec, || fastrand::u8(..)) {
            return Err(corrupt(
                &path,
                u64::from(loc.offset),
                "record to erase is damaged",
            ));
        }
        let written = file
            .write_all_at(&rec, u64::from(loc.offset))
            .map_err(io_err(&path));
        let written = written.and_then(|()| match sh.policy {
            SyncPolicy::Always => file.sync_data().map_err(io_err(&path)),
            SyncPolicy::Interval(_) => Ok(()),
        });
        if let Err(e) = written {
            g.fail(&e, false);
            return Err(e);
        }
        // The scrubbed record marks itself deleted: no tombstone, and not "dead" either.
        if let Some(r) = g.index.remove(seq) {
            if let Some(b) = g.blocks.get_mut(&loc.block) {
                b.live_msgs -= 1;
                b.live_bytes -= u64::from(r.entry.data.len);
            }
            let touched: FxHashSet<u32> = std::iter::once(loc.block).collect();
            sh.reclaim(g, &touched)?;
        }
        g.written_gen += 1;
        let gen = g.written_gen;
        drop(guard);
        sh.after_write(gen)?;
        Ok(true)
    }

    fn purge(&self, req: &PurgeRequest) -> Result<u64, StoreError> {
        let sh = &*self.shared;
        let mut g = sh.writable()?;
        let n = match purge_victims(&g.index, req) {
            PurgeVictims::Below(seq) => floor_to(sh, &mut g, seq)?,
            PurgeVictims::Seqs(seqs) => {
                let removed: Vec<_> = seqs.into_iter().filter_map(|s| g.index.remove(s)).collect();
                let n = removed.len() as u64;
                sh.apply_removals(&mut g, removed, true, false)?;
                n
            }
        };
        let gen = g.written_gen;
        drop(g);
        sh.after_write(gen)?;
        Ok(n)
    }

    fn compact(&self, seq: u64) -> Result<u64, StoreError> {
        let sh = &*self.shared;
        let mut g = sh.writable()?;
        let n = floor_to(sh, &mut g, seq)?;
        let gen = g.written_gen;
        drop(g);
        sh.after_write(gen)?;
        Ok(n)
    }

    fn skip_msgs(&self, through: u64) -> Result<(), StoreError> {
        let sh = &*self.shared;
        let mut g = sh.writable()?;
        if through <= g.index.last_seq() {
            return Ok(());
        }
        if g.index.msgs() == 0 {
            floor_to(sh, &mut g, through + 1)?;
        } else {
            // A tombstone past the end: recovery raises last_seq to it, and every block
            // written later starts above it, so dropping it with its block loses nothing.
            let ts = now_ns();
            let mut buf = Vec::new();
            let (id, _) = sh.append(&mut g, &mut buf, true, true, |f, out| {
                f.encode_tombstone(out, through, ts)
            })?;
            if let Some(b) = g.blocks.get_mut(&id) {
                b.tombs.push(through);
            }
            g.index.bump_last_seq(through, None);
        }
        let gen = g.written_gen;
        drop(g);
        sh.after_write(gen)
    }

    fn expire(&self, now: u64) -> Result<u64, StoreError> {
        let sh = &*self.shared;
        let mut g = sh.writable()?;
        let age_only = StoreLimits {
            max_age: g.limits.max_age,
            ..StoreLimits::default()
        };
        let mut removed = Vec::new();
        g.index.enforce(&age_only, None, Some(now), &mut removed);
        let n = removed.len() as u64;
        sh.apply_removals(&mut g, removed, false, false)?;
        Ok(n)
    }

    fn state(&self) -> StoreState {
        self.shared.inner().index.state()
    }

    fn subjects_state(&self, filter: &[u8]) -> Vec<SubjectState> {
        self.shared.inner().index.subjects_state(filter)
    }

    fn deleted_seqs(&self) -> Vec<u64> {
        self.shared.inner().index.deleted_seqs()
    }

    fn lost(&self) -> Option<super::LostData> {
        let g = self.shared.inner();
        let r = &g.report;
        (!r.lost_msgs.is_empty() || r.lost_bytes > 0).then(|| super::LostData {
            msgs: r.lost_msgs.clone(),
            bytes: r.lost_bytes,
        })
    }

    fn stored_size(&self, subject: &[u8], headers: Option<&[u8]>, payload: &[u8]) -> u64 {
        file_msg_size(subject.len(), headers.map(<[u8]>::len), payload.len())
    }

    fn update_config(&self, limits: &StoreLimits) -> Result<(), StoreError> {
        let sh = &*self.shared;
        let mut guard = sh.writable()?;
        let g = &mut *guard;
        // Past head evictions must not come back if the new limits are looser.
        sh.write_floor_if_moved(g)?;
        g.limits = limits.clone();
        let mut removed = Vec::new();
        let Inner { index, limits, .. } = &mut *g;
        index.enforce(limits, None, Some(now_ns()), &mut removed);
        sh.apply_removals(g, removed, false, false)?;
        let gen = g.written_gen;
        drop(guard);
        sh.sync_to(gen)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.shared.flush()
    }

    /// Reads each block from the window's start once instead of one read per message.
    fn visit_headers_since(&self, min_ts: u64, visit: &mut dyn FnMut(u64, u64, &[u8])) {
        let sh = &*self.shared;
        let mut g = sh.inner.lock();
        if write_held(&mut g).is_err() {
            return;
        }
        let Some((start, first_block)) = g
            .index
            .oldest_of_newest(min_ts)
            .map(|(seq, e)| (seq, e.data.block))
        else {
            return;
        };
        for (&id, block) in g.blocks.range(first_block..) {
            let data = match sh.fs.read(&block.path) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(file = %block.path.display(), error = %e, "reading block for Msg-Ids");
                    continue;
                }
            };
            let mut off = block.fmt.header_len();
            while off < data.len().min(block.len as usize) {
                let Ok(rec) = block.fmt.decode(&data[off..]) else {
                    break;
                };
                let live = rec.kind == RecordKind::Msg
                    && rec.seq >= start
                    && g.indexes_at(rec.seq, id, off);
                if live {
                    if let Some(h) = rec.headers {
                        visit(rec.seq, rec.ts, h);
                    }
                }
                off += rec.len;
            }
        }
    }

    fn hold_writes(&self) {
        let mut g = self.shared.inner();
        g.holding = true;
        g.batch_failed = false;
    }

    fn commit(&self) -> Result<(), StoreError> {
        let sh = &*self.shared;
        let mut g = sh.inner.lock();
        g.holding = false;
        let had_held = !g.held.is_empty();
        let earlier = std::mem::take(&mut g.batch_failed);
        if let Err(e) = write_held(&mut g) {
            g.batch_failed = false;
            drop(g);
            // Rebuild from the files now, so nothing unstored is counted meanwhile.
            drop(sh.inner());
            return Err(e);
        }
        drop(g);
        let mut g = sh.inner();
        if g.poisoned || earlier {
            let err = g
                .fault
                .as_ref()
                .map(|f| StoreError::WriteFailed(f.error.clone()))
                .unwrap_or(StoreError::Poisoned);
            return Err(err);
        }
        if had_held {
            healthy(&sh.dir, &mut g, false);
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), StoreError> {
        self.stop_flusher();
        let res = {
            let g = self.shared.inner.lock();
            (!g.closed && !g.poisoned).then_some(())
        };
        let res = match res {
            Some(()) => self.shared.flush(),
            None => Ok(()),
        };
        let mut g = self.shared.inner.lock();
        g.closed = true;
        if let Some(f) = g.lock_file.take() {
            let _ = FileExt::unlock(&f);
        }
        res
    }

    fn delete(&self) -> Result<(), StoreError> {
        let _ = self.stop();
        let dir = &self.shared.dir;
        match self.shared.fs.remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                path: dir.clone(),
                source,
            }),
        }
    }

    fn storage_type(&self) -> StorageType {
        StorageType::File
    }

    fn consumer_store(&self) -> Arc<dyn ConsumerStore> {
        self.shared.consumers.clone()
    }
}

/// Removes everything below `seq` and records it as one floor record.
fn floor_to(sh: &Shared, g: &mut Inner, seq: u64) -> Result<u64, StoreError> {
    let mut removed = Vec::new();
    g.index.remove_below(seq, &mut removed);
    let n = removed.len() as u64;
    let floor = g.index.first_seq();
    if floor > g.persisted_floor && (n > 0 || seq > 1) {
        sh.write_floor(g, floor)?;
    }
    sh.apply_removals(g, removed, false, false)?;
    Ok(n)
}
