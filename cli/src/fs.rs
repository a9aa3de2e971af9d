//! File writes that a reloading server or a concurrent `manage` never sees half done,
//! and the deployment-wide lock that serialises read-modify-write cycles.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context as _;

/// Mode for files holding secrets (`.credentials/*.env`, `.env`, the journal) and for the
/// tenant files (bcrypt hashes; only manage reads them).
pub const SECRET_FILE_MODE: u32 = 0o600;
/// Mode for `.credentials/`.
pub const SECRET_DIR_MODE: u32 = 0o700;
/// Mode for `config/auth.conf`: bcrypt hashes, readable by the owner and the file's group so
/// a server running under that group (the compose container, `NATS_GID`) can read it.
pub const AUTH_CONF_MODE: u32 = 0o640;
/// Mode for files without secrets (`config/nats.conf` from the template, `.gitignore`).
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Write `contents` to `path` via a temp file in the same directory, fsync, then rename.
pub fn write_atomic(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("failed to create a temp file in {}", dir.display()))?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| {
            format!(
                "failed to set permissions on a temp file in {}",
                dir.display()
            )
        })?;
    temp.write_all(contents.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("failed to write {}", path.display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(())
}

/// Create `dir` (and parents) with `mode` on the last component, fixing the mode if it exists.
pub fn ensure_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set permissions on {}", dir.display()))
}

/// Create the directory `path` lives in, if needed.
pub fn ensure_parent(path: &Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Give `path` exactly `mode`; `Ok(true)` when it had another one. A missing file is fine.
pub fn fix_mode(path: &Path, mode: u32) -> anyhow::Result<bool> {
    let current = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    };
    if current == mode {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set permissions on {}", path.display()))?;
    Ok(true)
}

/// The mode bits of `path`, if it exists.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// Remove a file; a missing file is fine.
pub fn remove_if_exists(path: &Path) -> anyhow::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("failed to remove {}", path.display())),
    }
}

/// An exclusive advisory lock on the deployment, released on drop.
#[derive(Debug)]
pub struct DeploymentLock {
    _file: File,
}

impl DeploymentLock {
    /// Block until the lock at `path` is ours.
    pub fn acquire(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(SECRET_FILE_MODE)
            .open(path)
            .with_context(|| format!("failed to open the lock file {}", path.display()))?;
        fs4::fs_std::FileExt::lock_exclusive(&file)
            .with_context(|| format!("failed to lock {}", path.display()))?;
        Ok(Self { _file: file })
    }
}
