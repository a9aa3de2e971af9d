#![allow(clippy::unwrap_used, reason = "tests fail loudly")]
//! The fuzz targets on stable, as plain tests: every saved regression input
//! (`fuzz/regressions/<target>/`) and every seed (`fuzz/seeds/<target>/`) goes through the
//! same entry point the fuzzer calls, and a short deterministic mutation run of the seeds
//! follows, so a parser change that crashes on known input fails `cargo test` without
//! nightly. The long runs are `scripts/fuzz.sh`.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}

/// Runs one input, naming it when it panics.
fn run(target: &str, f: fn(&[u8]), path: &Path, data: &[u8]) {
    if std::panic::catch_unwind(|| f(data)).is_err() {
        panic!("fuzz target {target} panicked on {}", path.display());
    }
}

#[test]
fn every_target_has_seeds() {
    for (target, _) in natsd::fuzz::TARGETS {
        assert!(
            !inputs("seeds", target).is_empty(),
            "fuzz/seeds/{target} is empty"
        );
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "no cargo-fuzz target for {target}"
        );
    }
}

#[test]
fn regression_inputs_replay() {
    for (target, f) in natsd::fuzz::TARGETS {
        for (path, data) in inputs("regressions", target) {
            run(target, *f, &path, &data);
        }
    }
}

#[test]
fn seed_corpus_replays() {
    for (target, f) in natsd::fuzz::TARGETS {
        for (path, data) in inputs("seeds", target) {
            run(target, *f, &path, &data);
        }
    }
}

/// A few hundred cheap mutations per target (bit flips, truncation, splices), fixed seed
/// (`FUZZ_REPLAY_ROUNDS` for more).
#[test]
fn short_mutation_run() {
    let mut rng = fastrand::Rng::with_seed(0x6e617473);
    for (target, f) in natsd::fuzz::TARGETS {
        let seeds = inputs("seeds", target);
        // FUZZ_REPLAY_ROUNDS=N runs longer by hand; the default keeps the test command fast.
        let base = std::env::var("FUZZ_REPLAY_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300usize);
        let rounds = if *target == "store_recover" {
            base / 5
        } else {
            base
        };
        for i in 0..rounds {
            let (path, base) = &seeds[i % seeds.len()];
            let mut data = base.clone();
            match rng.u8(0..4) {
                0 if !data.is_empty() => {
                    let at = rng.usize(0..data.len());
                    data[at] ^= 1 << rng.u8(0..8);
                }
                1 if !data.is_empty() => data.truncate(rng.usize(0..data.len())),
                2 => {
                    let (_, other) = &seeds[rng.usize(0..seeds.len())];
                    let cut = rng.usize(0..=data.len());
                    data.truncate(cut);
                    data.extend_from_slice(&other[rng.usize(0..=other.len())..]);
                }
                _ => {
                    let at = rng.usize(0..=data.len());
                    data.insert(at, rng.u8(..));
                }
            }
            if std::panic::catch_unwind(|| f(&data)).is_err() {
                let out = std::env::temp_dir().join(format!("fuzz-replay-{target}-{i}"));
                std::fs::write(&out, &data).unwrap();
                panic!(
                    "fuzz target {target} panicked on a mutation of {} (saved as {})",
                    path.display(),
                    out.display()
                );
            }
        }
    }
}

/// Regenerates the binary seeds (store blocks, consumer state) from the real encoders:
/// `cargo test -p natsd --test fuzz_replay write_binary_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand when the formats change"]
fn write_binary_seeds() {
    use natsd::consumer::state::{ConsumerState, Pending, SeqPair};
    use natsd::store::{FileStore, FileStoreConfig, MessageStore, SyncPolicy};

    let seeds = fuzz_dir().join("seeds");
    for t in ["store_records", "store_recover", "consumer_state"] {
        std::fs::create_dir_all(seeds.join(t)).unwrap();
    }
    // Consumer states, as the consumer persists them.
    let mut state = ConsumerState {
        delivered: SeqPair {
            consumer_seq: 12,
            stream_seq: 40,
        },
        ack_floor: SeqPair {
            consumer_seq: 9,
            stream_seq: 30,
        },
        ..ConsumerState::default()
    };
    std::fs::write(seeds.join("consumer_state/empty"), state.encode()).unwrap();
    state.pending.insert(
        35,
        Pending {
            consumer_seq: 10,
            timestamp: 1_700_000_000_000_000_000,
            deadline: 0,
        },
    );
    state.redelivered.insert(35, 2);
    std::fs::write(seeds.join("consumer_state/pending"), state.encode()).unwrap();

    // Real stores: a block with messages, headers, a delete and a purge floor.
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = FileStoreConfig::new(tmp.path());
    cfg.sync = SyncPolicy::Always;
    let store = FileStore::open(cfg).unwrap();
    store.store_msg(b"orders.new", None, b"one", 0).unwrap();
    store
        .store_msg(b"orders.new", Some(b"NATS/1.0\r\nA: b\r\n\r\n"), b"two", 0)
        .unwrap();
    store.store_msg(b"orders.old", None, b"three", 0).unwrap();
    store.remove_msg(2).unwrap();
    store.flush().unwrap();
    store.consumer_store().save("C", &state.encode()).unwrap();
    drop(store);
    let block = std::fs::read(tmp.path().join("msgs").join(format!("{:016}.blk", 1))).unwrap();
    let obs = std::fs::read(tmp.path().join("obs").join("C")).unwrap_or_default();
    std::fs::write(seeds.join("store_records/block"), &block).unwrap();
    // store_recover: block length (u16 LE), block, consumer state file.
    let mut joined = u16::try_from(block.len()).unwrap().to_le_bytes().to_vec();
    joined.extend_from_slice(&block);
    std::fs::write(seeds.join("store_recover/block_only"), &joined).unwrap();
    joined.extend_from_slice(&obs);
    std::fs::write(seeds.join("store_recover/block_and_consumer"), &joined).unwrap();
    std::fs::write(seeds.join("store_recover/empty"), [0u8, 0]).unwrap();
}
