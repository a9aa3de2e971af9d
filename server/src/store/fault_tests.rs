//! Faults: failing writes and fsyncs through the [`FaultFs`] seam (full disk, EIO), and
//! damaged files (bit flips, zeroed ranges, truncation) at random offsets in a loop.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::filestore::WRITE_RETRY;
use super::fs::FaultFs;
use super::*;

fn fault_store(dir: &Path, errno: i32, sync: SyncPolicy) -> (FileStore, Arc<FaultFs>) {
    let fault = Arc::new(FaultFs::default());
    fault.errno.store(errno, Ordering::SeqCst);
    let mut cfg = FileStoreConfig::new(dir);
    cfg.sync = sync;
    cfg.fs = fault.clone();
    (FileStore::open(cfg).unwrap(), fault)
}

fn refusal(r: Result<(u64, u64), StoreError>) -> String {
    match r {
        Err(StoreError::WriteFailed(text)) => text,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A full disk on write: the publisher's error names it, nothing acknowledged is lost,
/// state never counts the failed record, and writes resume by themselves once the disk
/// has room (no reopen).
#[test]
fn enospc_on_write_refuses_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (s, fault) = fault_store(dir.path(), libc::ENOSPC, SyncPolicy::Always);
    for i in 1..=5u64 {
        assert_eq!(s.store_msg(b"d", None, b"acked", 0).unwrap().0, i);
    }
    fault.fail_writes.store(true, Ordering::SeqCst);
    let err = s.store_msg(b"d", None, b"lost", 0).unwrap_err();
    assert!(
        io_error_text(&err).ends_with(": no space left on device"),
        "{err}"
    );
    assert_eq!(s.state().msgs, 5);
    assert_eq!(s.state().last_seq, 5);
    let text = refusal(s.store_msg(b"d", None, b"refused", 0));
    assert!(text.ends_with("no space left on device"), "{text}");
    // Still full after the retry interval: tried again, refused again, still 5.
    std::thread::sleep(WRITE_RETRY);
    assert!(s.store_msg(b"d", None, b"still full", 0).is_err());
    assert_eq!(s.state().msgs, 5);
    fault.fail_writes.store(false, Ordering::SeqCst);
    std::thread::sleep(WRITE_RETRY);
    assert_eq!(s.store_msg(b"d", None, b"after", 0).unwrap().0, 6);
    drop(s);
    let (s, _) = fault_store(dir.path(), 0, SyncPolicy::Always);
    let payloads: Vec<_> = (1..=6).map(|q| s.load_msg(q).unwrap().payload).collect();
    assert_eq!(&payloads[..5], &vec![Bytes::from_static(b"acked"); 5][..]);
    assert_eq!(&payloads[5][..], b"after");
}

/// EIO on fsync with a background sync: the store refuses writes until an fsync works,
/// even though plain writes do (a failed fsync is only cleared by one that succeeds).
#[test]
fn eio_on_fsync_is_cleared_only_by_a_good_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (s, fault) = fault_store(
        dir.path(),
        libc::EIO,
        SyncPolicy::Interval(Duration::from_secs(3600)),
    );
    s.store_msg(b"e", None, b"one", 0).unwrap();
    fault.fail_sync.store(true, Ordering::SeqCst);
    let err = s.flush().unwrap_err();
    assert!(
        io_error_text(&err).ends_with(": input/output error"),
        "{err}"
    );
    let text = refusal(s.store_msg(b"e", None, b"two", 0));
    assert!(text.ends_with("input/output error"), "{text}");
    std::thread::sleep(WRITE_RETRY);
    // The write itself works, the fault stays until a sync does.
    s.store_msg(b"e", None, b"two", 0).unwrap();
    assert!(s.flush().is_err());
    fault.fail_sync.store(false, Ordering::SeqCst);
    std::thread::sleep(WRITE_RETRY);
    s.store_msg(b"e", None, b"three", 0).unwrap();
    s.flush().unwrap();
    assert_eq!(s.state().msgs, 3);
}

/// A write that fails in the middle of a held batch fails the whole batch's commit, and
/// the records held before it are not counted afterwards.
#[test]
fn a_failure_inside_a_held_batch_fails_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (s, fault) = fault_store(
        dir.path(),
        libc::ENOSPC,
        SyncPolicy::Interval(Duration::from_secs(3600)),
    );
    s.store_msg(b"b", None, b"before", 0).unwrap();
    s.hold_writes();
    s.store_msg(b"b", None, b"held", 0).unwrap();
    fault.fail_writes.store(true, Ordering::SeqCst);
    // A removal writes at once (after what is held): it fails, and takes the batch along.
    assert!(s.remove_msg(1).is_err());
    fault.fail_writes.store(false, Ordering::SeqCst);
    assert!(s.commit().is_err());
    assert_eq!(s.state().msgs, 1);
    assert_eq!(&s.load_msg(1).unwrap().payload[..], b"before");
    assert!(s.load_msg(2).is_err());
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip(usize, u8),
    Zero(usize, usize),
    Truncate(usize),
}

/// Where each message record lies: seq → (block file, start, end).
fn record_map(dir: &Path) -> BTreeMap<u64, (PathBuf, usize, usize)> {
    let mut map = BTreeMap::new();
    let msgs = dir.join("msgs");
    for e in std::fs::read_dir(&msgs).unwrap() {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let fmt = record::decode_block_header(&data).unwrap();
        let mut off = fmt.header_len();
        while off < data.len() {
            let rec = fmt.decode(&data[off..]).unwrap();
            if rec.kind == record::RecordKind::Msg {
                map.insert(rec.seq, (path.clone(), off, off + rec.len));
            }
            off += rec.len;
        }
    }
    map
}

/// Damages files at random offsets in a loop: opening never panics, every acknowledged
/// message whose record bytes are untouched is read back exactly, state counts only what
/// loads, and each message lost to a flip or zeroed range is reported.
#[test]
fn random_damage_keeps_every_intact_message() {
    let mut rng = fastrand::Rng::with_seed(0x6e61_7473);
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FileStoreConfig::new(dir.path());
        cfg.sync = SyncPolicy::Always;
        cfg.block_size = 4096;
        let s = FileStore::open(cfg.clone()).unwrap();
        let mut deleted = BTreeSet::new();
        for i in 1..=150u64 {
            let payload = format!("payload-{i}-{}", "x".repeat(rng.usize(0..120)));
            s.store_msg(
                format!("s.{}", i % 7).as_bytes(),
                None,
                payload.as_bytes(),
                0,
            )
            .unwrap();
        }
        for _ in 0..10 {
            let q = rng.u64(1..=150);
            if s.remove_msg(q).unwrap() {
                deleted.insert(q);
            }
        }
        s.consumer_store().save("C", b"\x01state").unwrap();
        drop(s);
        let records = record_map(dir.path());
        let mut files: Vec<PathBuf> = records.values().map(|(p, _, _)| p.clone()).collect();
        files.sort();
        files.dedup();
        files.push(dir.path().join("obs").join("C"));
        // 1-3 damages, each in a random file.
        let mut damaged: Vec<(PathBuf, usize, usize)> = Vec::new();
        let mut truncated = false;
        for _ in 0..rng.usize(1..=3) {
            let path = files[rng.usize(0..files.len())].clone();
            let mut data = std::fs::read(&path).unwrap();
            if data.is_empty() {
                continue;
            }
            let at = rng.usize(0..data.len());
            let damage = match rng.u8(0..3) {
                0 => Damage::Flip(at, 1 << rng.u8(0..8)),
                1 => Damage::Zero(at, rng.usize(1..64).min(data.len() - at)),
                _ => Damage::Truncate(at),
            };
            match damage {
                Damage::Flip(at, bit) => {
                    data[at] ^= bit;
                    damaged.push((path.clone(), at, at + 1));
                }
                Damage::Zero(at, n) => {
                    data[at..at + n].fill(0);
                    damaged.push((path.clone(), at, at + n));
                }
                Damage::Truncate(at) => {
                    damaged.push((path.clone(), at, usize::MAX));
                    data.truncate(at);
                    truncated = true;
                }
            }
            std::fs::write(&path, &data).unwrap();
        }
        let s = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            FileStore::open(cfg.clone())
        }))
        .unwrap_or_else(|_| panic!("round {round}: open panicked after {damaged:?}"))
        .unwrap_or_else(|e| panic!("round {round}: open failed: {e} after {damaged:?}"));
        let report = s.recovery_report();
        let state = s.state();
        let mut loadable = 0u64;
        for q in state.first_seq..=state.last_seq {
            if s.load_msg(q).is_ok() {
                loadable += 1;
            }
        }
        assert_eq!(
            loadable, state.msgs,
            "round {round}: state counts unloadable messages"
        );
        for (seq, (path, start, end)) in &records {
            if deleted.contains(seq) {
                continue;
            }
            let hit = damaged
                .iter()
                .any(|(p, a, b)| p == path && *a < *end && *b > *start);
            // The block header carries the bases the records are relative to.
            let header_hit = damaged.iter().any(|(p, a, _)| p == path && *a < 28);
            match s.load_msg(*seq) {
                Ok(m) => assert!(
                    m.payload.starts_with(format!("payload-{seq}-").as_bytes()),
                    "round {round}: seq {seq} read back wrong"
                ),
                Err(e) => {
                    assert!(
                        hit || header_hit,
                        "round {round}: intact seq {seq} lost ({e}) after {damaged:?}"
                    );
                    assert!(
                        report.lost_msgs.contains(seq) || truncated || !report.truncated.is_empty(),
                        "round {round}: lost seq {seq} not reported: {report:?}"
                    );
                }
            }
        }
        // Consumer state: damaged or not, loading it reports rather than panics.
        let _ = s.consumer_store().load("C");
        // The store still takes writes after recovering.
        let (seq, _) = s.store_msg(b"after", None, b"damage", 0).unwrap();
        assert_eq!(&s.load_msg(seq).unwrap().payload[..], b"damage");
    }
}

/// A damaged block header no longer costs the block: its records are read with the
/// header rebuilt from the file name, and the header is rewritten.
#[test]
fn damaged_block_header_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = {
        let mut c = FileStoreConfig::new(dir.path());
        c.sync = SyncPolicy::Always;
        c
    };
    let s = FileStore::open(cfg.clone()).unwrap();
    for _ in 0..10 {
        s.store_msg(b"h", None, b"kept", 0).unwrap();
    }
    drop(s);
    let path = dir.path().join("msgs").join(format!("{:016}.blk", 1));
    let mut data = std::fs::read(&path).unwrap();
    data[5] ^= 0x40; // the version field
    std::fs::write(&path, &data).unwrap();
    let s = FileStore::open(cfg.clone()).unwrap();
    assert_eq!(s.state().msgs, 10);
    assert!(s.lost().is_none());
    drop(s);
    assert!(record::decode_block_header(&std::fs::read(&path).unwrap()).is_ok());
}
