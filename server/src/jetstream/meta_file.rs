//! Writing a stream's metadata files (`meta.json`, `meta.sum`) without tearing them, and
//! deciding when they reach the disk.
//!
//! # Durability contract
//! Every write goes through a temporary file renamed over the real one, so a reader (a
//! restart after `kill -9`, or after a power loss) sees the old content or the new, never a
//! mix; `meta.sum` lets a restart tell a file whose data never reached the disk from a good
//! one. The files are in the operating system before the API reply, so an acknowledged create
//! or update survives a process crash in every mode. Against power loss:
//! - [`Durability::Now`]: everything is fsynced before the reply (`sync_always`, and every
//!   rewrite of existing metadata: a power loss must leave the old or the new version, not
//!   neither).
//! - [`Durability::Soon`]: a first write (a stream create) is fsynced by a background thread
//!   right after the reply, as nats-server writes it without any fsync unless `sync_always`.
//!   A power loss in those few milliseconds loses the create, and the new stream's messages
//!   with it: the same window the file store's default `sync_interval` gives its messages.
//!   What a restart finds then is a missing or checksum-failing `meta.json`, reported and
//!   skipped, never a stream with the wrong config.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;

use parking_lot::Mutex;

/// When the files must be on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Before `write_files` returns.
    Now,
    /// Right after, from the background syncer.
    Soon,
}

/// Writes each `(name, data)` into `dir` (created when missing) through `<name>.tmp`: all
/// temporaries first, then the renames in order.
pub(crate) fn write_files(
    dir: &Path,
    files: &[(&str, &[u8])],
    durability: Durability,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Every temporary is complete before the first rename, so a crash between two renames
    // leaves the rest of the new set under `.tmp` for the reader to finish from.
    for (name, data) in files {
        let mut f = std::fs::File::create(dir.join(format!("{name}.tmp")))?;
        f.write_all(data)?;
        if durability == Durability::Now {
            f.sync_all()?;
        }
    }
    for (name, _) in files {
        std::fs::rename(dir.join(format!("{name}.tmp")), dir.join(name))?;
    }
    match durability {
        Durability::Now => sync_dir(dir),
        Durability::Soon => {
            let names = files.iter().map(|(n, _)| dir.join(n)).collect();
            syncer()
                .lock()
                .send(names)
                .map_err(|_| std::io::Error::other("metadata syncer stopped"))
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// One thread for the whole process: fsyncs the files it is given, then their directories
/// and those directories' parents (where a new stream directory's own entry lives).
fn syncer() -> &'static Mutex<Sender<Vec<PathBuf>>> {
    static SYNCER: OnceLock<Mutex<Sender<Vec<PathBuf>>>> = OnceLock::new();
    SYNCER.get_or_init(|| {
        let (tx, rx) = channel::<Vec<PathBuf>>();
        let spawned = std::thread::Builder::new()
            .name("js-meta-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Whatever queued up meanwhile shares this round (creates in a burst).
                    let mut files: Vec<PathBuf> = first;
                    while let Ok(more) = rx.try_recv() {
                        files.extend(more);
                    }
                    let mut dirs = BTreeSet::new();
                    for f in &files {
                        sync_quietly(f);
                        if let Some(d) = f.parent() {
                            dirs.insert(d.to_path_buf());
                            if let Some(p) = d.parent() {
                                dirs.insert(p.to_path_buf());
                            }
                        }
                    }
                    for d in &dirs {
                        sync_quietly(d);
                    }
                }
            });
        if let Err(e) = spawned {
            // Without the thread the sends fail and every write reports the error.
            tracing::error!("JetStream metadata syncer could not start: {}", e);
        }
        Mutex::new(tx)
    })
}

/// A file or directory removed meanwhile (a stream deleted right after its create) has
/// nothing left to make durable.
fn sync_quietly(path: &Path) {
    let synced = std::fs::File::open(path).and_then(|f| f.sync_all());
    if let Err(e) = synced {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("JetStream metadata fsync {}: {}", path.display(), e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_modes_replace_whole_files_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("s");
        write_files(&d, &[("a", b"one"), ("b", b"1")], Durability::Soon).expect("write");
        write_files(&d, &[("a", b"two"), ("b", b"2")], Durability::Now).expect("rewrite");
        assert_eq!(std::fs::read(d.join("a")).expect("a"), b"two");
        assert_eq!(std::fs::read(d.join("b")).expect("b"), b"2");
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
    }
}
