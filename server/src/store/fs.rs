//! The file-system seam: every file the store touches goes through [`Fs`], so tests can
//! inject failures (see [`FaultFs`]).

use std::fmt::Debug;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

/// An open file used with positional I/O, so readers and the appender never share a cursor.
pub(crate) trait FsFile: Send + Sync + Debug {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Flushes file data to stable storage.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// File-system operations the stores need.
pub(crate) trait Fs: Send + Sync + Debug {
    /// `mkdir -p`.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Opens a file read-write, creating it when missing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Renames atomically (same directory).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes one file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory tree.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries in a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Makes renames and creations inside `path` durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StdFs;

#[derive(Debug)]
struct StdFile(std::fs::File);

impl FsFile for StdFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Fs for StdFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(StdFile(f)))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
}

/// A [`StdFs`] wrapper whose writes, syncs or renames can be made to fail on demand.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FaultFs {
    /// Every write fails while set.
    pub fail_writes: Arc<AtomicBool>,
    /// Every fsync (file or directory) fails while set.
    pub fail_sync: Arc<AtomicBool>,
    /// Every rename fails while set.
    pub fail_rename: Arc<AtomicBool>,
    /// File writes attempted so far.
    pub writes: Arc<AtomicU64>,
    /// The errno injected failures carry (`libc::ENOSPC`, `libc::EIO`); 0 for a plain
    /// "injected fault". With `ENOSPC` a file may still shrink, as on a full disk.
    pub errno: Arc<AtomicI32>,
}

#[cfg(test)]
#[derive(Debug)]
struct FaultFile {
    inner: Arc<dyn FsFile>,
    fail_writes: Arc<AtomicBool>,
    fail_sync: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    errno: Arc<AtomicI32>,
}

#[cfg(test)]
fn injected(errno: &AtomicI32) -> io::Error {
    match errno.load(Ordering::SeqCst) {
        0 => io::Error::other("injected fault"),
        code => io::Error::from_raw_os_error(code),
    }
}

#[cfg(test)]
impl FsFile for FaultFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self.fail_writes.load(Ordering::SeqCst) {
            // Model a torn write: half the bytes reach the file, then the error.
            let _ = self.inner.write_all_at(&buf[..buf.len() / 2], offset);
            return Err(injected(&self.errno));
        }
        self.inner.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(injected(&self.errno));
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        // A full disk still lets a file shrink (a torn tail can be cut); EIO does not.
        if self.fail_writes.load(Ordering::SeqCst)
            && self.errno.load(Ordering::SeqCst) != libc::ENOSPC
        {
            return Err(injected(&self.errno));
        }
        self.inner.set_len(len)
    }
}

#[cfg(test)]
impl Fs for FaultFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        Ok(Arc::new(FaultFile {
            inner: StdFs.open(path)?,
            fail_writes: self.fail_writes.clone(),
            fail_sync: self.fail_sync.clone(),
            writes: self.writes.clone(),
            errno: self.errno.clone(),
        }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdFs.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.fail_rename.load(Ordering::SeqCst) {
            return Err(injected(&self.errno));
        }
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        StdFs.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(injected(&self.errno));
        }
        StdFs.sync_dir(path)
    }
}

/// Writes `data` to `path` atomically: temp file, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(fs: &dyn Fs, path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp: PathBuf = path.to_path_buf();
    let mut name = tmp
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    tmp.set_file_name(name);
    let f = fs.open(&tmp)?;
    f.set_len(0)?;
    f.write_all_at(data, 0)?;
    f.sync_data()?;
    drop(f);
    fs.rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs.sync_dir(dir)?;
    }
    Ok(())
}
