//! One store, one server: an exclusive `flock` on `<store_dir>/jetstream/LOCK`, held for as
//! long as JetStream runs. The kernel drops it when the process exits in any way, `kill -9`
//! included, so a stale lock never blocks a restart. The holder's pid is written into the
//! file so the refusal can name it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

/// Why the store directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirLockError {
    /// Another process holds the lock.
    #[error(
        "JetStream store directory \"{}\" is in use by another server{}; only one server may use a store",
        dir.display(),
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse {
        /// The store directory.
        dir: PathBuf,
        /// The holder's pid, when it wrote one.
        pid: Option<u32>,
    },
    /// The lock file could not be opened or locked.
    #[error("could not lock JetStream store directory \"{}\": {source}", dir.display())]
    Io {
        /// The store directory.
        dir: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Takes the exclusive lock on `dir` (which must exist), without waiting.
pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock, DirLockError> {
    let io = |source| DirLockError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("LOCK"))
        .map_err(io)?;
    if !file.try_lock_exclusive().map_err(io)? {
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        return Err(DirLockError::InUse {
            dir: dir.to_path_buf(),
            pid: text.trim().parse().ok(),
        });
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DirLock { _file: file })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path()).unwrap();
        let err = lock_dir(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("(pid {})", std::process::id())),
            "{text}"
        );
        assert!(matches!(err, DirLockError::InUse { .. }));
        drop(first);
        assert!(lock_dir(dir.path()).is_ok());
    }
}
