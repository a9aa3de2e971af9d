//! Consumer state persistence: one opaque blob per consumer, replaced atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::fs::{write_atomic, Fs};
use super::StoreError;

/// Saves and loads each consumer's state blob (delivered / ack-floor state encoded by the
/// consumer layer). A save replaces the previous blob atomically: after a crash the
/// consumer sees either the old or the new state, never a mix.
pub(crate) trait ConsumerStore: Send + Sync + std::fmt::Debug {
    /// Replaces `consumer`'s state.
    fn save(&self, consumer: &str, state: &[u8]) -> Result<(), StoreError>;
    /// `consumer`'s last saved state, if any.
    fn load(&self, consumer: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Forgets `consumer`.
    fn remove(&self, consumer: &str) -> Result<(), StoreError>;
    /// Names with saved state, sorted.
    fn list(&self) -> Result<Vec<String>, StoreError>;
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name.bytes().any(|b| matches!(b, b'/' | b'\\' | 0 | b'\n'))
        || name.ends_with(".tmp");
    if bad {
        return Err(StoreError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// Consumer states kept in memory (memory-storage streams).
#[derive(Debug, Default)]
pub(crate) struct MemConsumerStore {
    states: Mutex<HashMap<String, Vec<u8>>>,
}

impl ConsumerStore for MemConsumerStore {
    fn save(&self, consumer: &str, state: &[u8]) -> Result<(), StoreError> {
        check_name(consumer)?;
        let mut g = self.states.lock();
        g.insert(consumer.to_owned(), state.to_vec());
        Ok(())
    }
    fn load(&self, consumer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_name(consumer)?;
        Ok(self.states.lock().get(consumer).cloned())
    }
    fn remove(&self, consumer: &str) -> Result<(), StoreError> {
        check_name(consumer)?;
        self.states.lock().remove(consumer);
        Ok(())
    }
    fn list(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self.states.lock().keys().cloned().collect();
        names.sort();
        Ok(names)
    }
}

/// Consumer states as files `<dir>/<consumer>` holding `crc32 u32 LE | blob`, written via
/// temp file + fsync + rename + directory fsync.
#[derive(Debug)]
pub(crate) struct FileConsumerStore {
    dir: PathBuf,
    fs: Arc<dyn Fs>,
}

impl FileConsumerStore {
    /// Uses (and creates when needed) `dir`.
    pub(crate) fn new(dir: &Path, fs: Arc<dyn Fs>) -> Result<Self, StoreError> {
        fs.create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.into(),
            source,
        })?;
        Ok(FileConsumerStore {
            dir: dir.to_path_buf(),
            fs,
        })
    }
}

impl ConsumerStore for FileConsumerStore {
    fn save(&self, consumer: &str, state: &[u8]) -> Result<(), StoreError> {
        check_name(consumer)?;
        let path = self.dir.join(consumer);
        let mut data = Vec::with_capacity(4 + state.len());
        data.extend_from_slice(&crc32fast::hash(state).to_le_bytes());
        data.extend_from_slice(state);
        write_atomic(&*self.fs, &path, &data).map_err(|source| StoreError::Io { path, source })
    }

    fn load(&self, consumer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_name(consumer)?;
        let path = self.dir.join(consumer);
        let data = match self.fs.read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let corrupt = |reason: &str| StoreError::Corrupt {
            file: path.clone(),
            offset: 0,
            reason: reason.to_owned(),
        };
        if data.len() < 4 {
            return Err(corrupt("consumer state shorter than its checksum"));
        }
        let crc = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        if crc32fast::hash(&data[4..]) != crc {
            return Err(corrupt("consumer state checksum mismatch"));
        }
        Ok(Some(data[4..].to_vec()))
    }

    fn remove(&self, consumer: &str) -> Result<(), StoreError> {
        check_name(consumer)?;
        let path = self.dir.join(consumer);
        match self.fs.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Io { path, source }),
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        let mut names = self
            .fs
            .list_dir(&self.dir)
            .map_err(|source| StoreError::Io {
                path: self.dir.clone(),
                source,
            })?;
        names.retain(|n| check_name(n).is_ok());
        names.sort();
        Ok(names)
    }
}
