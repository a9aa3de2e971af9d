//! The tenant file fuzz target on stable: its seeds and saved regression inputs go through
//! `manage::tenant::fuzz_tenant_toml` as plain tests (the long runs are `scripts/fuzz.sh`).

use std::path::{Path, PathBuf};

fn inputs(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join("tenant_toml");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn tenant_toml_seeds_and_regressions_replay() {
    let seeds = inputs("seeds");
    assert!(!seeds.is_empty(), "fuzz/seeds/tenant_toml is empty");
    for path in seeds.iter().chain(inputs("regressions").iter()) {
        let data = std::fs::read(path).unwrap();
        if std::panic::catch_unwind(|| manage::tenant::fuzz_tenant_toml(&data)).is_err() {
            panic!("tenant_toml panicked on {}", path.display());
        }
    }
}
