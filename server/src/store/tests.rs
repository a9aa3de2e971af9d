//! Store tests. Scenario bodies take `&dyn MessageStore` and run against both stores.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::consumer::FileConsumerStore;
use super::filestore::{RecoveryMode, RecoveryReport, WRITE_RETRY};
use super::fs::FaultFs;
use super::*;

const HDR: &[u8] = b"NATS/1.0\r\nX-Foo: bar\r\n\r\n";

fn file_cfg(dir: &Path) -> FileStoreConfig {
    let mut c = FileStoreConfig::new(dir);
    c.sync = SyncPolicy::Always;
    c
}

fn open_file(dir: &Path, limits: StoreLimits) -> FileStore {
    let mut c = file_cfg(dir);
    c.limits = limits;
    FileStore::open(c).unwrap()
}

/// Runs `body` against a memory store and a fresh file store.
fn both(limits: StoreLimits, body: impl Fn(&dyn MessageStore)) {
    body(&MemStore::new(limits.clone()));
    let dir = tempfile::tempdir().unwrap();
    body(&open_file(dir.path(), limits));
}

fn put(s: &dyn MessageStore, subj: &str, payload: &str) -> u64 {
    s.store_msg(subj.as_bytes(), None, payload.as_bytes(), 0)
        .unwrap()
        .0
}

/// Offsets of the records in a block file, then its length.
fn record_offsets(block: &[u8]) -> Vec<usize> {
    let fmt = record::decode_block_header(block).unwrap();
    let mut offs = vec![fmt.header_len()];
    let mut off = fmt.header_len();
    while off < block.len() {
        off += fmt.decode(&block[off..]).unwrap().len;
        offs.push(off);
    }
    offs
}

fn all_msgs(s: &dyn MessageStore) -> Vec<StoredMsg> {
    let st = s.state();
    (st.first_seq..=st.last_seq)
        .filter_map(|q| s.load_msg(q).ok())
        .collect()
}

#[test]
fn byte_accounting_matches_nats_server() {
    assert_eq!(file_msg_size(3, None, 2), 35);
    let dir = tempfile::tempdir().unwrap();
    let fs = open_file(dir.path(), StoreLimits::default());
    for _ in 0..5 {
        put(&fs, "m.a", "v1");
    }
    fs.store_msg(b"m.b", Some(&[b'h'; 24]), b"1234567", 0)
        .unwrap();
    assert_eq!(fs.state().bytes, 243);
    let ms = MemStore::new(StoreLimits::default());
    ms.store_msg(b"m.a", Some(b"hh"), b"v1", 0).unwrap();
    assert_eq!(ms.state().bytes, 3 + 2 + 2 + 16);
}

#[test]
fn round_trip_and_queries() {
    both(StoreLimits::default(), |s| {
        let (seq, ts) = s
            .store_msg(b"orders.new", Some(HDR), b"one", 1_000)
            .unwrap();
        assert_eq!((seq, ts), (1, 1_000));
        put(s, "orders.old", "two");
        put(s, "orders.new", "three");
        s.store_msg(b"other", Some(b""), b"", 0).unwrap();
        let m = s.load_msg(1).unwrap();
        assert_eq!(&m.subject[..], b"orders.new");
        assert_eq!(m.headers.as_deref(), Some(HDR));
        assert_eq!(&m.payload[..], b"one");
        assert_eq!(m.ts, 1_000);
        let m4 = s.load_msg(4).unwrap();
        assert_eq!(m4.headers.as_deref(), Some(&b""[..]));
        assert!(s.load_msg(2).unwrap().headers.is_none());
        assert!(matches!(s.load_msg(9), Err(StoreError::NotFound)));
        assert_eq!(s.load_last_msg(b"orders.*").unwrap().seq, 3);
        assert_eq!(s.load_last_msg(b"orders.old").unwrap().seq, 2);
        assert_eq!(s.load_last_msg(b"").unwrap().seq, 4);
        assert!(matches!(
            s.load_last_msg(b"nope.>"),
            Err(StoreError::NotFound)
        ));
        assert_eq!(s.load_next_msg(b"orders.new", 2).unwrap().seq, 3);
        assert_eq!(s.load_next_msg(b"*.old", 1).unwrap().seq, 2);
        assert_eq!(s.load_next_msg(b">", 4).unwrap().seq, 4);
        assert!(s.load_next_msg(b"orders.>", 4).is_err());
        assert_eq!(s.num_pending(b"orders.>", 2), 2);
        assert_eq!(s.num_pending(b"", 1), 4);
        let st = s.state();
        assert_eq!(
            (st.msgs, st.first_seq, st.last_seq, st.first_ts),
            (4, 1, 4, 1_000)
        );
        assert_eq!((st.num_subjects, st.num_deleted), (3, 0));
        let subj = s.subjects_state(b"orders.*");
        assert_eq!(subj.len(), 2);
        assert_eq!(
            (
                &subj[0].subject[..],
                subj[0].msgs,
                subj[0].first_seq,
                subj[0].last_seq
            ),
            (&b"orders.new"[..], 2, 1, 3)
        );
        let expected: u64 = [
            ("orders.new", Some(HDR), "one"),
            ("orders.old", None, "two"),
            ("orders.new", None, "three"),
            ("other", Some(&b""[..]), ""),
        ]
        .iter()
        .map(|(sj, h, p)| s.stored_size(sj.as_bytes(), *h, p.as_bytes()))
        .sum();
        assert_eq!(st.bytes, expected);
    });
}

#[test]
fn limit_max_msgs_discard_old_and_new() {
    both(
        StoreLimits {
            max_msgs: Some(3),
            ..Default::default()
        },
        |s| {
            for i in 0..5 {
                put(s, "a", &i.to_string());
            }
            let st = s.state();
            assert_eq!((st.msgs, st.first_seq, st.last_seq), (3, 3, 5));
        },
    );
    both(
        StoreLimits {
            max_msgs: Some(2),
            discard: Discard::New,
            ..Default::default()
        },
        |s| {
            put(s, "a", "1");
            put(s, "a", "2");
            let err = s.store_msg(b"a", None, b"3", 0).unwrap_err();
            assert!(matches!(err, StoreError::MaxMsgs));
            assert_eq!(err.to_string(), "maximum messages exceeded");
            assert_eq!(s.state().last_seq, 2);
        },
    );
}

#[test]
fn limit_max_bytes_discard_old_and_new() {
    both(StoreLimits::default(), |probe| {
        let one = probe.stored_size(b"a", None, b"xx");
        let limits = StoreLimits {
            max_bytes: Some(one * 2),
            ..Default::default()
        };
        let old = MemStore::new(limits.clone());
        let s: &dyn MessageStore = if probe.storage_type() == StorageType::Memory {
            &old
        } else {
            probe
        };
        if s.storage_type() == StorageType::File {
            s.update_config(&limits).unwrap();
        }
        for _ in 0..3 {
            put(s, "a", "xx");
        }
        assert_eq!(
            (s.state().msgs, s.state().bytes, s.state().first_seq),
            (2, one * 2, 2)
        );
        let mut l = limits.clone();
        l.discard = Discard::New;
        s.update_config(&l).unwrap();
        let err = s.store_msg(b"a", None, b"xx", 0).unwrap_err();
        assert!(matches!(err, StoreError::MaxBytes), "{err}");
        assert_eq!(err.to_string(), "maximum bytes exceeded");
    });
}

#[test]
fn limit_max_age_expires() {
    let age = Duration::from_secs(10);
    both(
        StoreLimits {
            max_age: Some(age),
            ..Default::default()
        },
        |s| {
            let now = now_ns();
            s.store_msg(b"a", None, b"old", now - 20_000_000_000)
                .unwrap_or((0, 0));
            s.store_msg(b"a", None, b"mid", now - 5_000_000_000)
                .unwrap();
            s.store_msg(b"a", None, b"new", now).unwrap();
            // Stored already-expired messages are dropped on store (time-based check).
            assert_eq!(s.state().msgs, 2);
            assert_eq!(s.expire(now + 6_000_000_000).unwrap(), 1);
            let st = s.state();
            assert_eq!((st.msgs, st.first_seq), (1, 3));
            assert_eq!(s.expire(now + 60_000_000_000).unwrap(), 1);
            assert_eq!(s.state().first_seq, 4);
        },
    );
}

#[test]
fn limit_per_subject_and_msg_size() {
    both(
        StoreLimits {
            max_msgs_per_subject: Some(2),
            ..Default::default()
        },
        |s| {
            for i in 0..4 {
                put(s, "k.a", &i.to_string());
                put(s, "k.b", &i.to_string());
            }
            let subj = s.subjects_state(b"");
            assert_eq!(subj.iter().map(|x| x.msgs).collect::<Vec<_>>(), vec![2, 2]);
            assert_eq!(s.load_msg(5).unwrap().subject, Bytes::from_static(b"k.a"));
            assert!(matches!(s.load_msg(3), Err(StoreError::NotFound)));
            let st = s.state();
            assert_eq!((st.msgs, st.first_seq, st.num_deleted), (4, 5, 0));
        },
    );
    both(
        StoreLimits {
            max_msgs_per_subject: Some(1),
            discard: Discard::New,
            discard_new_per_subject: true,
            ..Default::default()
        },
        |s| {
            put(s, "k", "1");
            assert!(matches!(
                s.store_msg(b"k", None, b"2", 0),
                Err(StoreError::MaxMsgsPerSubject)
            ));
            put(s, "j", "1");
        },
    );
    both(
        StoreLimits {
            max_msg_size: Some(4),
            ..Default::default()
        },
        |s| {
            s.store_msg(b"a", Some(b"12"), b"34", 0).unwrap();
            let err = s.store_msg(b"a", Some(b"12"), b"345", 0).unwrap_err();
            assert!(matches!(err, StoreError::MsgTooLarge), "{err}");
        },
    );
}

fn seed_purge(s: &dyn MessageStore) {
    for subj in ["m.a", "m.b", "m.a", "m.c", "m.a", "m.b"] {
        put(s, subj, "v");
    }
}

#[test]
fn purge_variants() {
    both(StoreLimits::default(), |s| {
        seed_purge(s);
        assert_eq!(s.purge(&PurgeRequest::default()).unwrap(), 6);
        let st = s.state();
        assert_eq!((st.msgs, st.first_seq, st.last_seq, st.bytes), (0, 7, 6, 0));
        assert_eq!(put(s, "m.a", "x"), 7);
    });
    both(StoreLimits::default(), |s| {
        seed_purge(s);
        let req = PurgeRequest {
            filter: Some(b"m.a".to_vec()),
            keep: Some(1),
            ..Default::default()
        };
        assert_eq!(s.purge(&req).unwrap(), 2);
        assert_eq!(s.subjects_state(b"m.a")[0].first_seq, 5);
        // Seq 1 was the head, so only 3 is an interior deletion.
        assert_eq!((s.state().first_seq, s.state().num_deleted), (2, 1));
        assert_eq!(s.deleted_seqs(), vec![3]);
    });
    both(StoreLimits::default(), |s| {
        seed_purge(s);
        assert_eq!(
            s.purge(&PurgeRequest {
                seq: Some(5),
                ..Default::default()
            })
            .unwrap(),
            4
        );
        assert_eq!(s.state().first_seq, 5);
        let req = PurgeRequest {
            filter: Some(b"m.*".to_vec()),
            seq: Some(6),
            ..Default::default()
        };
        assert_eq!(s.purge(&req).unwrap(), 1);
        assert_eq!(s.state().msgs, 1);
    });
    both(StoreLimits::default(), |s| {
        seed_purge(s);
        assert_eq!(
            s.purge(&PurgeRequest {
                keep: Some(2),
                ..Default::default()
            })
            .unwrap(),
            4
        );
        assert_eq!((s.state().first_seq, s.state().msgs), (5, 2));
        assert_eq!(
            s.purge(&PurgeRequest {
                keep: Some(5),
                ..Default::default()
            })
            .unwrap(),
            0
        );
    });
}

#[test]
fn delete_erase_and_compact() {
    both(StoreLimits::default(), |s| {
        for i in 0..6 {
            put(s, "d", &format!("secret-{i}"));
        }
        assert!(s.remove_msg(2).unwrap());
        assert!(!s.remove_msg(2).unwrap());
        assert!(s.erase_msg(3).unwrap());
        assert!(!s.erase_msg(99).unwrap());
        let st = s.state();
        assert_eq!((st.msgs, st.num_deleted, st.first_seq), (4, 2, 1));
        assert_eq!(s.deleted_seqs(), vec![2, 3]);
        assert!(s.remove_msg(1).unwrap());
        assert_eq!(s.state().first_seq, 4);
        assert_eq!(s.compact(5).unwrap(), 1);
        assert_eq!((s.state().first_seq, s.state().msgs), (5, 2));
        assert_eq!(s.compact(20).unwrap(), 2);
        let st = s.state();
        assert_eq!((st.first_seq, st.last_seq, st.msgs), (20, 19, 0));
        assert_eq!(put(s, "d", "after"), 20);
    });
}

#[test]
fn erase_overwrites_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_file(dir.path(), StoreLimits::default());
    put(&s, "x", "TOPSECRETVALUE");
    put(&s, "x", "public");
    assert!(s.erase_msg(1).unwrap());
    s.stop().unwrap();
    let raw = std::fs::read(dir.path().join("msgs").join(format!("{:016}.blk", 1))).unwrap();
    assert!(!raw.windows(14).any(|w| w == b"TOPSECRETVALUE"));
    let s = open_file(dir.path(), StoreLimits::default());
    assert!(matches!(s.load_msg(1), Err(StoreError::NotFound)));
    assert_eq!(s.state().msgs, 1);
}

fn snapshot(s: &dyn MessageStore) -> (StoreState, Vec<StoredMsg>, Vec<u64>) {
    (s.state(), all_msgs(s), s.deleted_seqs())
}

#[test]
fn reopen_preserves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let limits = StoreLimits {
        max_msgs_per_subject: Some(3),
        ..Default::default()
    };
    let mut cfg = file_cfg(dir.path());
    cfg.limits = limits.clone();
    cfg.block_size = 4096;
    let before;
    {
        let s = FileStore::open(cfg.clone()).unwrap();
        for i in 0..400u32 {
            let subj = format!("kv.{}", i % 7);
            let hdr = (i % 3 == 0).then_some(HDR);
            s.store_msg(subj.as_bytes(), hdr, format!("value-{i}").as_bytes(), 0)
                .unwrap();
        }
        s.remove_msg(395).unwrap();
        s.erase_msg(396).unwrap();
        s.purge(&PurgeRequest {
            filter: Some(b"kv.6".to_vec()),
            ..Default::default()
        })
        .unwrap();
        s.compact(390).unwrap();
        assert!(s.block_count() >= 1);
        before = snapshot(&s);
        assert!(before.0.msgs > 0);
    }
    let s = FileStore::open(cfg.clone()).unwrap();
    assert_eq!(snapshot(&s), before);
    assert_eq!(s.recovery_report(), RecoveryReport::default());
    let (seq, _) = s.store_msg(b"kv.1", None, b"next", 0).unwrap();
    assert_eq!(seq, before.0.last_seq + 1);
    drop(s);
    // A purge-all must survive too, including last_seq.
    let s = FileStore::open(cfg.clone()).unwrap();
    s.purge(&PurgeRequest::default()).unwrap();
    let st = s.state();
    drop(s);
    let s = FileStore::open(cfg).unwrap();
    assert_eq!(s.state(), st);
    assert_eq!(s.state().first_seq, st.last_seq + 1);
}

#[test]
fn raised_limits_do_not_resurrect_evicted_messages() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open_file(
            dir.path(),
            StoreLimits {
                max_msgs: Some(5),
                ..Default::default()
            },
        );
        for i in 0..20 {
            put(&s, "a", &i.to_string());
        }
        s.update_config(&StoreLimits::default()).unwrap();
    }
    let s = open_file(dir.path(), StoreLimits::default());
    let st = s.state();
    assert_eq!((st.msgs, st.first_seq, st.last_seq), (5, 16, 20));
}

#[test]
fn deletes_are_compacted_and_space_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    cfg.block_size = 16 * 1024;
    let s = FileStore::open(cfg.clone()).unwrap();
    let payload = [7u8; 100];
    for i in 0..2000u32 {
        s.store_msg(format!("c.{}", i % 10).as_bytes(), None, &payload, 0)
            .unwrap();
    }
    let full = s.disk_usage();
    let blocks = s.block_count();
    assert!(blocks > 5, "{blocks}");
    // Interior deletes: 9 of every 10 messages.
    for seq in 1..=2000u64 {
        if seq % 10 != 0 {
            s.remove_msg(seq).unwrap();
        }
    }
    let after = s.disk_usage();
    assert!(after * 2 < full, "disk {full} -> {after}");
    // Head removals drop whole blocks.
    s.compact(1500).unwrap();
    assert!(s.block_count() < blocks, "{} vs {blocks}", s.block_count());
    let before = snapshot(&s);
    drop(s);
    let s = FileStore::open(cfg).unwrap();
    assert_eq!(snapshot(&s), before);
    assert_eq!(s.state().msgs, 51); // 1500, 1510, ..., 2000
}

#[test]
fn torn_tail_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let block = dir.path().join("msgs").join(format!("{:016}.blk", 1));
    {
        let s = open_file(dir.path(), StoreLimits::default());
        put(&s, "t.a", "first");
        s.store_msg(b"t.b", Some(HDR), b"second", 0).unwrap();
        put(&s, "t.c", "third-and-last");
    }
    let full = std::fs::read(&block).unwrap();
    let offs = record_offsets(&full);
    let last_start = offs[offs.len() - 2];
    for cut in last_start..full.len() {
        let d2 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d2.path().join("msgs")).unwrap();
        let b2 = d2.path().join("msgs").join(format!("{:016}.blk", 1));
        std::fs::write(&b2, &full[..cut]).unwrap();
        let s = open_file(d2.path(), StoreLimits::default());
        let st = s.state();
        assert_eq!((st.msgs, st.last_seq), (2, 2), "cut {cut}");
        assert_eq!(&s.load_msg(2).unwrap().payload[..], b"second");
        let rep = s.recovery_report();
        if cut > last_start {
            assert_eq!(
                rep.truncated,
                vec![(b2.clone(), last_start as u64)],
                "cut {cut}"
            );
        }
        assert_eq!(put(&s, "t.d", "new"), 3);
        drop(s);
        let s = open_file(d2.path(), StoreLimits::default());
        assert_eq!(&s.load_msg(3).unwrap().payload[..], b"new");
        assert_eq!(s.recovery_report(), RecoveryReport::default());
    }
    // Strict mode refuses a torn tail.
    let d3 = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d3.path().join("msgs")).unwrap();
    std::fs::write(
        d3.path().join("msgs").join(format!("{:016}.blk", 1)),
        &full[..full.len() - 1],
    )
    .unwrap();
    let mut cfg = file_cfg(d3.path());
    cfg.recovery = RecoveryMode::AbsoluteConsistency;
    assert!(matches!(
        FileStore::open(cfg),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn middle_corruption_is_reported_and_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    cfg.block_size = 4096;
    {
        let s = FileStore::open(cfg.clone()).unwrap();
        for i in 0..400 {
            put(&s, "mid", &format!("payload-{i:04}"));
        }
        assert!(s.block_count() > 2);
    }
    let first_block = dir.path().join("msgs").join(format!("{:016}.blk", 1));
    let mut data = std::fs::read(&first_block).unwrap();
    let offs = record_offsets(&data);
    // Damage the payload of seq 3 (checksum now fails, length still valid).
    let off = offs[2];
    data[offs[3] - 6] ^= 0xFF;
    std::fs::write(&first_block, &data).unwrap();
    let s = FileStore::open(cfg.clone()).unwrap();
    let rep = s.recovery_report();
    assert_eq!(rep.corrupt.len(), 1);
    assert_eq!(
        (rep.corrupt[0].file.clone(), rep.corrupt[0].offset),
        (first_block.clone(), off as u64)
    );
    match s.load_msg(3) {
        Err(StoreError::Corrupt { file, offset, .. }) => {
            assert_eq!((file, offset), (first_block.clone(), off as u64));
        }
        other => panic!("{other:?}"),
    }
    let err = s.load_msg(3).unwrap_err().to_string();
    assert!(
        err.contains("0000000000000001.blk") && err.contains(&off.to_string()),
        "{err}"
    );
    assert_eq!(&s.load_msg(2).unwrap().payload[..], b"payload-0001");
    assert_eq!(&s.load_msg(4).unwrap().payload[..], b"payload-0003");
    assert_eq!(s.state().msgs, 399);
    assert_eq!(put(&s, "mid", "more"), 401);
    drop(s);
    cfg.recovery = RecoveryMode::AbsoluteConsistency;
    match FileStore::open(cfg) {
        Err(StoreError::Corrupt { file, offset, .. }) => {
            assert_eq!((file, offset), (first_block, off as u64))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn foreign_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("msgs")).unwrap();
    std::fs::write(dir.path().join("msgs").join("README.txt"), b"hello").unwrap();
    std::fs::write(dir.path().join("msgs").join("12.blk"), b"not ours").unwrap();
    std::fs::write(dir.path().join("notes"), b"x").unwrap();
    std::fs::create_dir(dir.path().join("msgs").join("subdir")).unwrap();
    let s = open_file(dir.path(), StoreLimits::default());
    put(&s, "f", "1");
    let mut foreign = s.recovery_report().foreign_files;
    foreign.sort();
    assert_eq!(foreign, vec!["12.blk", "README.txt", "subdir"]);
    drop(s);
    let s = open_file(dir.path(), StoreLimits::default());
    assert_eq!(s.state().msgs, 1);
    assert_eq!(
        std::fs::read(dir.path().join("msgs").join("README.txt")).unwrap(),
        b"hello"
    );
}

#[test]
fn lock_file_excludes_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_file(dir.path(), StoreLimits::default());
    assert!(matches!(
        FileStore::open(file_cfg(dir.path())),
        Err(StoreError::Locked(_))
    ));
    s.stop().unwrap();
    assert!(matches!(
        s.store_msg(b"a", None, b"", 0),
        Err(StoreError::Closed)
    ));
    drop(s);
    let s = open_file(dir.path(), StoreLimits::default());
    s.delete().unwrap();
    assert!(!dir.path().exists());
}

#[test]
fn io_failure_refuses_writes_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let fault = Arc::new(FaultFs::default());
    let mut cfg = file_cfg(dir.path());
    cfg.fs = fault.clone();
    let s = FileStore::open(cfg.clone()).unwrap();
    put(&s, "p", "ok-1");
    put(&s, "p", "ok-2");
    fault.fail_writes.store(true, Ordering::SeqCst);
    assert!(matches!(
        s.store_msg(b"p", None, b"doomed", 0),
        Err(StoreError::Io { .. })
    ));
    fault.fail_writes.store(false, Ordering::SeqCst);
    // Rebuilt from the files at once: the torn record is neither counted nor served.
    assert!(!s.is_poisoned());
    assert_eq!(s.state().msgs, 2);
    assert_eq!(s.state().last_seq, 2);
    assert_eq!(s.recovery_report().truncated.len(), 1);
    // Refused for a moment, with the original failure; reads go on.
    assert!(matches!(
        s.store_msg(b"p", None, b"x", 0),
        Err(StoreError::WriteFailed(_))
    ));
    assert!(matches!(s.remove_msg(1), Err(StoreError::WriteFailed(_))));
    assert_eq!(&s.load_msg(2).unwrap().payload[..], b"ok-2");
    std::thread::sleep(WRITE_RETRY);
    assert_eq!(put(&s, "p", "ok-3"), 3);
    drop(s);
    let s = FileStore::open(cfg.clone()).unwrap();
    assert_eq!(s.state().msgs, 3);
    fault.fail_sync.store(true, Ordering::SeqCst);
    assert!(s.store_msg(b"p", None, b"y", 0).is_err());
    assert!(matches!(
        s.store_msg(b"p", None, b"z", 0),
        Err(StoreError::WriteFailed(_))
    ));
    // The record reached the file before its fsync failed: it is counted, and served.
    assert_eq!(s.state().last_seq, 4);
    assert_eq!(&s.load_msg(4).unwrap().payload[..], b"y");
    fault.fail_sync.store(false, Ordering::SeqCst);
    std::thread::sleep(WRITE_RETRY);
    assert_eq!(put(&s, "p", "z"), 5);
}

#[test]
fn headers_visited_from_a_time_in_sequence_order() {
    both(StoreLimits::default(), |s| {
        let id = b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n";
        s.store_msg(b"a", Some(HDR), b"too old", 1_000).unwrap();
        s.store_msg(b"a", None, b"no headers", 2_000).unwrap();
        s.store_msg(b"a", Some(id), b"p", 3_000).unwrap();
        s.store_msg(b"b", Some(HDR), b"deleted", 4_000).unwrap();
        s.store_msg(b"b", Some(HDR), b"kept", 5_000).unwrap();
        assert!(s.remove_msg(4).unwrap());
        let mut seen = Vec::new();
        s.visit_headers_since(2_500, &mut |seq, ts, h| seen.push((seq, ts, h.to_vec())));
        assert_eq!(
            seen,
            vec![(3, 3_000, id.to_vec()), (5, 5_000, HDR.to_vec())]
        );
    });
}

#[test]
fn headers_visited_across_blocks_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    cfg.block_size = 4096;
    let s = FileStore::open(cfg.clone()).unwrap();
    let body = vec![b'z'; 200];
    for i in 1..=200u64 {
        let hdr = format!("NATS/1.0\r\nNats-Msg-Id: m{i}\r\n\r\n");
        let hdr = (i % 2 == 0).then_some(hdr.as_bytes());
        s.store_msg(b"blk", hdr, &body, i * 1_000).unwrap();
    }
    assert!(s.remove_msg(150).unwrap());
    drop(s);
    let s = FileStore::open(cfg).unwrap();
    assert!(s.block_count() > 5);
    let mut seqs = Vec::new();
    s.visit_headers_since(101_000, &mut |seq, _, h| {
        assert!(h.ends_with(format!("m{seq}\r\n\r\n").as_bytes()));
        seqs.push(seq);
    });
    let expected: Vec<u64> = (102..=200).step_by(2).filter(|&q| q != 150).collect();
    assert_eq!(seqs, expected);
}

/// A file store that syncs only when told, on a fault-injecting file system.
fn open_unsynced(dir: &Path) -> (FileStore, Arc<FaultFs>) {
    let fault = Arc::new(FaultFs::default());
    let mut cfg = FileStoreConfig::new(dir);
    cfg.sync = SyncPolicy::Interval(Duration::from_secs(3600));
    cfg.fs = fault.clone();
    (FileStore::open(cfg).unwrap(), fault)
}

fn block_file_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("msgs").join(format!("{:016}.blk", 1)))
        .unwrap()
        .len()
}

#[test]
fn held_writes_cost_one_write_per_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (s, fault) = open_unsynced(dir.path());
    let empty = block_file_len(dir.path());
    let writes = || fault.writes.load(Ordering::SeqCst);
    let before = writes();
    s.hold_writes();
    for i in 0..100 {
        put(&s, &format!("h.{}", i % 3), &i.to_string());
    }
    assert_eq!(writes(), before, "held stores must not write");
    assert_eq!(block_file_len(dir.path()), empty);
    s.commit().unwrap();
    assert_eq!(writes(), before + 1);
    assert!(block_file_len(dir.path()) > empty);
    // No longer holding: each store writes at once.
    put(&s, "h.0", "after");
    assert_eq!(writes(), before + 2);
    drop(s);
    let (s, _) = open_unsynced(dir.path());
    let msgs = all_msgs(&s);
    assert_eq!(msgs.len(), 101);
    assert_eq!(&msgs[41].payload[..], b"41");
}

#[test]
fn held_records_are_written_before_reads_deletes_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open_unsynced(dir.path());
    let empty = block_file_len(dir.path());
    s.hold_writes();
    put(&s, "r", "one");
    put(&s, "r", "two");
    // A reader (a consumer) may only see what a crash cannot take back.
    assert_eq!(&s.load_msg(2).unwrap().payload[..], b"two");
    assert!(block_file_len(dir.path()) > empty);
    put(&s, "r", "three");
    put(&s, "r", "four");
    // A tombstone lands after the held records, never before them.
    assert!(s.remove_msg(3).unwrap());
    put(&s, "r", "five");
    assert!(s.erase_msg(4).unwrap());
    put(&s, "r", "six");
    // Not committed: stopping still writes it.
    s.stop().unwrap();
    let (s, _) = open_unsynced(dir.path());
    let payloads: Vec<_> = all_msgs(&s).iter().map(|m| m.payload.to_vec()).collect();
    assert_eq!(
        payloads,
        [&b"one"[..], b"two", b"five", b"six"].map(<[u8]>::to_vec)
    );
    assert_eq!(s.state().last_seq, 6);
}

#[test]
fn held_records_roll_into_new_blocks_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let fault = Arc::new(FaultFs::default());
    let mut cfg = FileStoreConfig::new(dir.path());
    cfg.sync = SyncPolicy::Interval(Duration::from_secs(3600));
    cfg.block_size = 4096;
    cfg.fs = fault.clone();
    let s = FileStore::open(cfg.clone()).unwrap();
    s.hold_writes();
    let body = "x".repeat(300);
    for i in 0..100 {
        put(&s, "roll", &format!("{i}{body}"));
    }
    s.commit().unwrap();
    assert!(s.block_count() > 5);
    drop(s);
    let s = FileStore::open(cfg).unwrap();
    let msgs = all_msgs(&s);
    assert_eq!(msgs.len(), 100);
    for (i, m) in msgs.iter().enumerate() {
        assert!(m.payload.starts_with(format!("{i}x").as_bytes()));
    }
}

#[test]
fn failed_commit_drops_held_records() {
    let dir = tempfile::tempdir().unwrap();
    let (s, fault) = open_unsynced(dir.path());
    put(&s, "f", "kept");
    s.hold_writes();
    put(&s, "f", "held");
    fault.fail_writes.store(true, Ordering::SeqCst);
    assert!(matches!(s.commit(), Err(StoreError::Io { .. })));
    fault.fail_writes.store(false, Ordering::SeqCst);
    assert_eq!(s.state().msgs, 1);
    assert!(matches!(s.load_msg(2), Err(StoreError::NotFound)));
    drop(s);
    let (s, _) = open_unsynced(dir.path());
    assert_eq!(s.state().msgs, 1);
    assert_eq!(&s.load_msg(1).unwrap().payload[..], b"kept");
}

#[test]
fn group_commit_many_writers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open_file(dir.path(), StoreLimits::default()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| put(&*s, &format!("g.{t}"), &i.to_string()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    drop(s);
    let s = open_file(dir.path(), StoreLimits::default());
    assert_eq!(s.state().msgs, 400);
}

#[test]
fn interval_sync_policy_flushes_in_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = FileStoreConfig::new(dir.path());
    cfg.sync = SyncPolicy::Interval(Duration::from_millis(10));
    let s = FileStore::open(cfg).unwrap();
    put(&s, "i", "1");
    s.flush().unwrap();
    s.stop().unwrap();
    assert!(matches!(s.flush(), Err(StoreError::Closed)));
}

#[test]
fn consumer_store_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let check = |cs: &dyn ConsumerStore| {
        assert_eq!(cs.load("dur").unwrap(), None);
        cs.save("dur", b"state-1").unwrap();
        cs.save("dur", b"state-2").unwrap();
        cs.save("other", b"").unwrap();
        assert_eq!(cs.load("dur").unwrap().as_deref(), Some(&b"state-2"[..]));
        assert_eq!(cs.list().unwrap(), vec!["dur", "other"]);
        assert!(matches!(
            cs.save("../x", b""),
            Err(StoreError::InvalidName(_))
        ));
        cs.remove("other").unwrap();
        assert_eq!(cs.list().unwrap(), vec!["dur"]);
    };
    check(&*MemStore::new(StoreLimits::default()).consumer_store());
    {
        let s = open_file(dir.path(), StoreLimits::default());
        check(&*s.consumer_store());
    }
    let s = open_file(dir.path(), StoreLimits::default());
    assert_eq!(
        s.consumer_store().load("dur").unwrap().as_deref(),
        Some(&b"state-2"[..])
    );
    let path = dir.path().join("obs").join("dur");
    let mut raw = std::fs::read(&path).unwrap();
    raw[5] ^= 1;
    std::fs::write(&path, raw).unwrap();
    assert!(matches!(
        s.consumer_store().load("dur"),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn consumer_store_rename_failure_keeps_old_state() {
    let dir = tempfile::tempdir().unwrap();
    let fault = Arc::new(FaultFs::default());
    let cs = FileConsumerStore::new(dir.path(), fault.clone()).unwrap();
    cs.save("c", b"old").unwrap();
    fault.fail_rename.store(true, Ordering::SeqCst);
    assert!(cs.save("c", b"new").is_err());
    assert_eq!(cs.load("c").unwrap().as_deref(), Some(&b"old"[..]));
}

#[test]
fn footprint_of_realistic_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = FileStoreConfig::new(dir.path());
    cfg.sync = SyncPolicy::Interval(Duration::from_secs(1));
    let s = FileStore::open(cfg).unwrap();
    let payload = [b'x'; 128];
    let n = 100_000u64;
    let mut content = 0u64;
    for i in 0..n {
        let subj = format!("orders.region{}.created", i % 16);
        content += (subj.len() + payload.len()) as u64;
        s.store_msg(subj.as_bytes(), None, &payload, 0)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let disk = s.disk_usage();
    let accounted = s.state().bytes;
    println!(
        "footprint: disk {disk} B, accounted {accounted} B ({:.4}), subject+payload {content} B ({:.4}), payload {} B ({:.4})",
        disk as f64 / accounted as f64,
        disk as f64 / content as f64,
        n * 128,
        disk as f64 / (n * 128) as f64
    );
    assert!(
        disk as f64 <= content as f64 * 1.10,
        "{disk} vs {content} (subject+headers+payload)"
    );
}

#[test]
#[ignore = "benchmark: cargo test --release -p natsd --lib store::tests::bench -- --ignored --nocapture"]
fn bench_append_and_recovery_1m() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = FileStoreConfig::new(dir.path());
    cfg.sync = SyncPolicy::Interval(Duration::from_secs(1));
    let n = 1_000_000u64;
    let payload = [b'p'; 16];
    {
        let s = FileStore::open(cfg.clone()).unwrap();
        let t = Instant::now();
        for _ in 0..n {
            s.store_msg(b"bench.subject", None, &payload, 0).unwrap();
        }
        let el = t.elapsed();
        println!(
            "append: {n} msgs in {el:?} = {:.0} msgs/s",
            n as f64 / el.as_secs_f64()
        );
        s.stop().unwrap();
    }
    let t = Instant::now();
    let s = FileStore::open(cfg).unwrap();
    let el = t.elapsed();
    println!("recovery of {n} msgs: {el:?} ({} blocks)", s.block_count());
    assert_eq!(s.state().msgs, n);
    assert!(el < Duration::from_secs(1), "recovery took {el:?}");
}

#[test]
fn version_1_blocks_still_open_and_new_writes_use_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = dir.path().join("msgs");
    std::fs::create_dir_all(&msgs).unwrap();
    let v1 = record::BlockFormat {
        version: record::BLOCK_VERSION_V1,
        first_seq: 1,
        base_ts: 0,
    };
    let mut data = v1.encode_header();
    v1.encode_msg(&mut data, 1, 11, b"old.a", None, b"one");
    v1.encode_msg(&mut data, 2, 22, b"old.b", Some(HDR), b"two");
    v1.encode_msg(&mut data, 3, 33, b"old.c", None, b"three");
    v1.encode_tombstone(&mut data, 1, 44);
    std::fs::write(msgs.join(format!("{:016}.blk", 1)), &data).unwrap();
    {
        let s = open_file(dir.path(), StoreLimits::default());
        assert_eq!(s.recovery_report(), RecoveryReport::default());
        assert_eq!((s.state().msgs, s.state().last_seq), (2, 3));
        let m = s.load_msg(2).unwrap();
        assert_eq!((&m.subject[..], m.ts), (&b"old.b"[..], 22));
        assert_eq!(m.headers.as_deref(), Some(HDR));
        assert_eq!(&m.payload[..], b"two");
        assert_eq!(put(&s, "new", "four"), 4);
        assert_eq!(s.block_count(), 2, "appends roll to a v2 block");
        // A tombstone for a v1-block message, written into the v2 tail.
        assert!(s.remove_msg(3).unwrap());
    }
    let v2 = std::fs::read(msgs.join(format!("{:016}.blk", 4))).unwrap();
    assert_eq!(
        record::decode_block_header(&v2).unwrap().version,
        record::BLOCK_VERSION
    );
    let s = open_file(dir.path(), StoreLimits::default());
    assert_eq!(s.recovery_report(), RecoveryReport::default());
    assert_eq!(s.state().msgs, 2);
    assert_eq!(&s.load_msg(2).unwrap().payload[..], b"two");
    assert_eq!(&s.load_msg(4).unwrap().payload[..], b"four");
    assert!(matches!(s.load_msg(3), Err(StoreError::NotFound)));
}

#[test]
fn unknown_block_version_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = dir.path().join("msgs");
    std::fs::create_dir_all(&msgs).unwrap();
    let mut header = record::BlockFormat::new(1, 1).encode_header();
    header[4] = 99;
    let crc_at = header.len() - record::CHECKSUM_LEN;
    let crc = crc32fast::hash(&header[..crc_at]);
    header[crc_at..].copy_from_slice(&crc.to_le_bytes());
    let path = msgs.join(format!("{:016}.blk", 1));
    std::fs::write(&path, &header).unwrap();
    match FileStore::open(file_cfg(dir.path())) {
        Err(StoreError::Corrupt { file, reason, .. }) => {
            assert_eq!(file, path);
            assert!(reason.contains("version 99"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn timestamps_far_from_the_block_base_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let stamps = [
        1u64,
        u64::MAX / 2,
        now_ns() - 5 * 3_600 * 1_000_000_000 + 123,
    ];
    {
        let s = open_file(dir.path(), StoreLimits::default());
        for ts in stamps {
            s.store_msg(b"ts", None, b"x", ts).unwrap();
        }
    }
    let s = open_file(dir.path(), StoreLimits::default());
    for (i, ts) in stamps.iter().enumerate() {
        assert_eq!(s.load_msg(i as u64 + 1).unwrap().ts, *ts);
    }
}

/// A mirror skips sequences its origin no longer has: they count as deleted, the next
/// message takes the sequence after them, and a reopened file store agrees.
#[test]
fn skipped_sequences_are_deleted_and_survive_reopen() {
    both(StoreLimits::default(), |s| {
        // Nothing stored yet: the stream simply starts later.
        s.skip_msgs(4).unwrap();
        let st = s.state();
        assert_eq!((st.first_seq, st.last_seq, st.msgs), (5, 4, 0));
        assert_eq!(put(s, "a", "5"), 5);
        s.skip_msgs(9).unwrap();
        s.skip_msgs(3).unwrap();
        assert_eq!(put(s, "a", "10"), 10);
        let st = s.state();
        assert_eq!(
            (st.first_seq, st.last_seq, st.msgs, st.num_deleted),
            (5, 10, 2, 4)
        );
        assert!(matches!(s.load_msg(7), Err(StoreError::NotFound)));
    });
    let dir = tempfile::tempdir().unwrap();
    {
        let fs = open_file(dir.path(), StoreLimits::default());
        put(&fs, "a", "1");
        fs.skip_msgs(20).unwrap();
        fs.stop().unwrap();
    }
    let fs = open_file(dir.path(), StoreLimits::default());
    assert_eq!(fs.state().last_seq, 20);
    assert_eq!(put(&fs, "a", "21"), 21);
    let st = fs.state();
    assert_eq!((st.msgs, st.num_deleted), (2, 19));
}

/// `Nats-TTL: never` exempts a message from `max_age`, before and after a reopen; the aged
/// messages around it still go.
#[test]
fn never_ttl_messages_outlive_max_age() {
    let limits = StoreLimits {
        max_age: Some(Duration::from_secs(60)),
        ..StoreLimits::default()
    };
    let never = b"NATS/1.0\r\nNats-TTL: Never\r\n\r\n";
    let old = now_ns() - 120_000_000_000;
    let fill = |s: &dyn MessageStore| {
        s.store_msg(b"a", None, b"1", old).unwrap();
        s.store_msg(b"kept", Some(never), b"2", old).unwrap();
        s.store_msg(b"a", None, b"3", old).unwrap();
        s.store_msg(b"a", None, b"4", 0).unwrap();
    };
    both(limits.clone(), |s| {
        fill(s);
        s.expire(now_ns()).unwrap();
        let left: Vec<u64> = all_msgs(s).iter().map(|m| m.seq).collect();
        assert_eq!(left, vec![2, 4]);
    });
    let dir = tempfile::tempdir().unwrap();
    {
        let fs = open_file(dir.path(), StoreLimits::default());
        fill(&fs);
        fs.stop().unwrap();
    }
    let fs = open_file(dir.path(), limits);
    fs.expire(now_ns()).unwrap();
    let left: Vec<u64> = all_msgs(&fs).iter().map(|m| m.seq).collect();
    assert_eq!(left, vec![2, 4]);
}
