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
