//! All-or-nothing changes to the deployment's files.
//!
//! A mutating command changes several files (a tenant file, credentials, auth.conf). Each file
//! is replaced atomically, but the set is not, so the command first writes a journal
//! (`data/manage.journal`, 0600: it may hold new passwords) with every file's contents before
//! and after, then replaces the files, then validates the result, and deletes the journal only
//! once the result is valid and, for a change to tenants or users, the running server has it.
//! Deleting the journal is the commit.
//!
//! - A failed validation restores the old contents and deletes the journal: nothing changed.
//! - A tenant or user change the running server does not take (it refuses the reload, does not
//!   confirm it, or cannot be reached) is undone the same way ([`Written::undo`]): the command
//!   fails with nothing changed, and running it again is safe. `reload` keeps its files: they
//!   are what the tenant files say.
//! - A command killed (even with `kill -9`) while the journal exists leaves it behind; the
//!   next command that takes the deployment lock rolls the files back to their old contents
//!   before anything else ([`recover`]), so the files end in the old state or the new one,
//!   never a mix. (Rolling back is always right: the journal outlives no committed change.)
//!   Each command brings the running server to the files by digest, so a server that loaded
//!   the files of a command killed during its reload is brought back by the next one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::error::ManageError;
use crate::fs::{remove_if_exists, write_atomic, SECRET_FILE_MODE};
use crate::settings::Paths;

/// One file's change: its contents before and after (`None`: absent).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileChange {
    /// Relative to the deployment root.
    path: PathBuf,
    mode: u32,
    before: Option<String>,
    after: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The command that wrote it, for messages.
    command: String,
    files: Vec<FileChange>,
}

/// A set of file changes applied all or nothing (see the module docs).
#[derive(Debug)]
pub struct Transaction {
    root: PathBuf,
    command: String,
    changes: Vec<FileChange>,
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

/// Test hook: abort the process at a named step when `MANAGE_FAILPOINT` names it, as a
/// `kill -9` there would. The crash tests use it to stop a command at every step.
pub fn failpoint(name: &str) {
    if std::env::var_os("MANAGE_FAILPOINT").is_some_and(|v| v == name) {
        std::process::abort();
    }
}

impl Transaction {
    /// An empty change set for `command` (named in messages about an interrupted run).
    pub fn new(paths: &Paths, command: &str) -> Self {
        Self {
            root: paths.root.clone(),
            command: command.to_owned(),
            changes: Vec::new(),
        }
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root).unwrap_or(path).to_path_buf()
    }

    fn record(&mut self, path: &Path, mode: u32, after: Option<String>) -> anyhow::Result<()> {
        let relative = self.relative(path);
        if let Some(change) = self.changes.iter_mut().find(|c| c.path == relative) {
            change.after = after;
            change.mode = mode;
            return Ok(());
        }
        let before = read_optional(path)?;
        self.changes.push(FileChange {
            path: relative,
            mode,
            before,
            after,
        });
        Ok(())
    }

    /// Replace `path` with `contents` (mode `mode`) when the transaction commits.
    pub fn write(&mut self, path: &Path, contents: String, mode: u32) -> anyhow::Result<()> {
        self.record(path, mode, Some(contents))
    }

    /// Remove `path` when the transaction commits.
    pub fn remove(&mut self, path: &Path) -> anyhow::Result<()> {
        self.record(path, SECRET_FILE_MODE, None)
    }

    /// The contents `path` will have after the commit (`None`: absent), as recorded so far.
    pub fn pending(&self, path: &Path) -> Option<Option<&str>> {
        let relative = self.relative(path);
        self.changes
            .iter()
            .find(|c| c.path == relative)
            .map(|c| c.after.as_deref())
    }

    /// Journal, apply, run `check` on the result; keep it when `check` passes, restore the old
    /// files when it fails (returning its error).
    pub fn commit<T>(
        self,
        paths: &Paths,
        check: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let (value, written) = self.write_checked(paths, check)?;
        written.keep()?;
        Ok(value)
    }

    /// Journal, apply, run `check` on the result; restore the old files when it fails
    /// (returning its error). When it passes the journal stays: the change is decided by
    /// [`Written::keep`] or [`Written::undo`], and a command killed before either is rolled
    /// back by the next one ([`recover`]).
    pub fn write_checked<T>(
        mut self,
        paths: &Paths,
        check: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, Written)> {
        self.changes.retain(|c| c.before != c.after);
        let record = Record {
            command: self.command.clone(),
            files: self.changes,
        };
        let journal = paths.journal_file();
        if !record.files.is_empty() {
            let text = serde_json::to_string(&record).context("failed to encode the journal")?;
            crate::fs::ensure_parent(&journal)?;
            write_atomic(&journal, &text, SECRET_FILE_MODE)?;
        }
        failpoint("journal-written");
        let applied = apply(&self.root, &record.files, |c| c.after.as_deref());
        failpoint("files-written");
        let result = applied.and_then(|()| check());
        let written = Written {
            root: self.root,
            journal,
            files: record.files,
        };
        match result {
            Ok(value) => {
                failpoint("validated");
                Ok((value, written))
            }
            Err(error) => {
                written
                    .undo()
                    .with_context(|| format!("{error:#}"))
                    .context("failed to restore the files after a failed change")?;
                Err(error)
            }
        }
    }
}

/// A change whose files are written and checked, with its journal still on disk.
#[derive(Debug)]
#[must_use = "a written change is kept or undone"]
pub struct Written {
    root: PathBuf,
    journal: PathBuf,
    files: Vec<FileChange>,
}

impl Written {
    /// Commit: delete the journal.
    pub fn keep(self) -> anyhow::Result<()> {
        remove_if_exists(&self.journal)?;
        Ok(())
    }

    /// Restore every file's old contents, then delete the journal: nothing changed.
    pub fn undo(self) -> anyhow::Result<()> {
        roll_back(&self.root, &self.files)?;
        remove_if_exists(&self.journal)?;
        Ok(())
    }
}

fn apply(
    root: &Path,
    files: &[FileChange],
    contents: impl Fn(&FileChange) -> Option<&str>,
) -> anyhow::Result<()> {
    for change in files {
        let path = root.join(&change.path);
        match contents(change) {
            Some(text) => {
                crate::fs::ensure_parent(&path)?;
                write_atomic(&path, text, change.mode)?;
            }
            None => {
                remove_if_exists(&path)?;
            }
        }
    }
    Ok(())
}

fn roll_back(root: &Path, files: &[FileChange]) -> anyhow::Result<()> {
    // In reverse, so a file changed last is restored first.
    let reversed: Vec<FileChange> = files.iter().rev().cloned().collect();
    apply(root, &reversed, |c| c.before.as_deref())
}

/// Roll back the files of a command that did not finish (its journal is still there). Returns
/// the command's name when there was one. Call with the deployment lock held.
pub fn recover(paths: &Paths) -> anyhow::Result<Option<String>> {
    let journal = paths.journal_file();
    let Some(text) = read_optional(&journal)? else {
        return Ok(None);
    };
    let record: Record = serde_json::from_str(&text).map_err(|e| ManageError::BrokenJournal {
        path: journal.clone(),
        reason: e.to_string(),
    })?;
    roll_back(&paths.root, &record.files)?;
    remove_if_exists(&journal)?;
    Ok(Some(record.command))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn paths() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            root: dir.path().to_path_buf(),
        };
        (dir, paths)
    }

    #[test]
    fn commit_keeps_and_a_failed_check_restores() {
        let (_dir, paths) = paths();
        let a = paths.root.join("a");
        let b = paths.root.join("sub/b");
        fs::write(&a, "old a").unwrap();
        let mut t = Transaction::new(&paths, "test");
        t.write(&a, "new a".into(), 0o600).unwrap();
        t.write(&b, "new b".into(), 0o600).unwrap();
        let err = t
            .commit(&paths, || -> anyhow::Result<()> {
                anyhow::bail!("refused")
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "refused");
        assert_eq!(fs::read_to_string(&a).unwrap(), "old a");
        assert!(!b.exists());
        assert!(!paths.journal_file().exists());

        let mut t = Transaction::new(&paths, "test");
        t.write(&b, "new b".into(), 0o600).unwrap();
        t.remove(&a).unwrap();
        t.commit(&paths, || Ok(())).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read_to_string(&b).unwrap(), "new b");
        assert!(!paths.journal_file().exists());
    }

    #[test]
    fn recover_rolls_an_interrupted_change_back() {
        let (_dir, paths) = paths();
        let a = paths.root.join("a");
        fs::write(&a, "old").unwrap();
        let record = Record {
            command: "rotate".into(),
            files: vec![
                FileChange {
                    path: "a".into(),
                    mode: 0o600,
                    before: Some("old".into()),
                    after: Some("new".into()),
                },
                FileChange {
                    path: "b".into(),
                    mode: 0o600,
                    before: None,
                    after: Some("new".into()),
                },
            ],
        };
        fs::create_dir_all(paths.data_dir()).unwrap();
        fs::write(
            paths.journal_file(),
            serde_json::to_string(&record).unwrap(),
        )
        .unwrap();
        fs::write(&a, "new").unwrap();
        fs::write(paths.root.join("b"), "new").unwrap();
        assert_eq!(recover(&paths).unwrap().as_deref(), Some("rotate"));
        assert_eq!(fs::read_to_string(&a).unwrap(), "old");
        assert!(!paths.root.join("b").exists());
        assert_eq!(recover(&paths).unwrap(), None);
        fs::write(paths.journal_file(), "{not json").unwrap();
        assert!(
            recover(&paths).is_err(),
            "a broken journal is never guessed at"
        );
    }
}
