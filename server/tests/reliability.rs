//! Reliability under faults, against a natsd process: one server per store, a full disk
//! (a real small tmpfs where the machine allows mounts), damaged store files, and the
//! format of the log lines all of these produce.

// A test binary has no public API, and tests may unwrap (HELPERS.md).
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

#[path = "support/js_server.rs"]
#[allow(dead_code, reason = "shared helpers, not all used here")]
mod js_server;
use js_server::{free_port, natsd, start_js};

/// A second server on the same store directory refuses to start with an `[FTL]` line and a
/// non-zero exit; once the holder is killed with -9 the lock is gone and a server starts.
#[test]
fn one_store_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = start_js(dir.path());
    let second = Command::new(natsd())
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-js",
            "-sd",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "second server started: {log}");
    let ftl = log
        .lines()
        .find(|l| l.contains("[FTL]"))
        .unwrap_or_else(|| panic!("no [FTL] line: {log}"));
    assert!(
        ftl.contains("is in use by another server")
            && ftl.contains(&format!("(pid {})", first.child.id())),
        "{ftl}"
    );
    assert!(!log.contains("Server is ready"), "{log}");

    // kill -9: the kernel releases the lock with the process.
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    let third = start_js(dir.path());
    drop(third);
}
