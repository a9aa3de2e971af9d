//! One file per command, and what they share: [`apply`] (render auth.conf, validate it
//! with the server, reload the running server), passwords, and limit checks.

pub mod init;
pub mod reload;
pub mod remove;
pub mod rotate;
pub mod server_up;
pub mod show;
pub mod tenant_add;
pub mod tenant_list;
pub mod test;
pub mod user_add;

use std::fs;
use std::time::Instant;

use anyhow::Context as _;
use rand::Rng as _;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::error::ManageError;
use crate::fs::{
    remove_if_exists, write_atomic, DeploymentLock, CONFIG_FILE_MODE, SECRET_FILE_MODE,
};
use crate::names::Size;
use crate::printer::Printer;
use crate::render::{auth_conf, env_file};
use crate::server::{self, Monitor, ReloadOutcome, Validation};
use crate::tenant::{repo, Tenant};
use crate::Context;

/// bcrypt cost for every password hash. 11 is what `nats server passwd` uses: about
/// 150 ms per hash on a current core, paid once per connection attempt on the server
/// (which caches successful verifications) and once per password change here. Existing
/// hashes are stored in the tenant files, so rendering auth.conf never re-hashes.
pub const BCRYPT_COST: u32 = 11;

/// Length of generated passwords: 32 alphanumerics (about 190 bits), URL-safe.
pub const PASSWORD_LEN: usize = 32;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exit 0.
    Success,
    /// Exit 1: the command could not do what was asked (nothing was changed).
    Failure,
    /// Exit 2: the command line was wrong.
    Usage,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Success => Self::SUCCESS,
            ExitStatus::Failure => Self::from(1),
            ExitStatus::Usage => Self::from(2),
        }
    }
}

/// A fresh random password.
pub fn generate_password() -> String {
    rand::rngs::OsRng
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// Hash a password at [`BCRYPT_COST`], with a spinner.
pub fn hash_password(password: &str, printer: Printer) -> anyhow::Result<String> {
    let spinner = printer.spinner("Hashing password (bcrypt)…");
    let hash = bcrypt::hash(password, BCRYPT_COST).context("bcrypt failed")?;
    spinner.finish_and_clear();
    Ok(hash)
}

/// Take the deployment lock: mutating commands run one at a time.
pub fn lock(ctx: &Context) -> anyhow::Result<DeploymentLock> {
    DeploymentLock::acquire(&ctx.paths.lock_file())
}

/// The system user's bcrypt hash, cached in `.credentials/sys.bcrypt` next to a SHA-256
/// fingerprint of the password so a changed NATS_SYS_PASSWORD is noticed.
fn sys_hash(ctx: &Context, printer: Printer) -> anyhow::Result<String> {
    let password =
        ctx.settings
            .sys_password
            .as_deref()
            .ok_or_else(|| ManageError::NotInitialised {
                root: ctx.paths.root.clone(),
            })?;
    let fingerprint = hex::encode(sha2::Sha256::digest(password.as_bytes()));
    let path = ctx.paths.sys_hash_file();
    if let Ok(text) = fs::read_to_string(&path) {
        if let Some((cached_fingerprint, hash)) = text.trim().split_once(' ') {
            if cached_fingerprint == fingerprint {
                return Ok(hash.to_owned());
            }
        }
    }
    let hash = hash_password(password, printer)?;
    write_atomic(&path, &format!("{fingerprint} {hash}\n"), SECRET_FILE_MODE)?;
    Ok(hash)
}

/// What [`apply`] did.
#[derive(Debug)]
pub struct Applied {
    /// auth.conf changed on disk.
    pub changed: bool,
    /// Whether the server binary checked it.
    pub validation: Validation,
    /// The reload, when one was attempted.
    pub reload: Option<ReloadOutcome>,
    /// Tenants rendered.
    pub tenants: usize,
}

impl Applied {
    /// JSON form for command output.
    pub fn to_json(&self) -> Value {
        let reload = match &self.reload {
            None => json!(null),
            Some(ReloadOutcome::NotRunning) => json!({ "running": false }),
            Some(ReloadOutcome::Confirmed { load_time, took }) => {
                json!({ "running": true, "confirmed": true, "config_load_time": load_time, "ms": took.as_millis() as u64 })
            }
            Some(ReloadOutcome::Unconfirmed { reason }) => {
                json!({ "running": true, "confirmed": false, "reason": reason })
            }
        };
        json!({ "auth_conf_changed": self.changed, "validated": self.validation == Validation::Valid, "reload": reload })
    }
}

/// Regenerate `config/auth.conf` from the tenant files, validate it with the server
/// binary (restoring the previous file if it is refused), and reload a running server.
/// Call with the deployment lock held.
pub fn apply(ctx: &Context, printer: Printer, force_reload: bool) -> anyhow::Result<Applied> {
    let tenants = repo::load_all(&ctx.paths)?;
    let sys_hash = sys_hash(ctx, printer)?;
    let text = auth_conf::render(&tenants, &sys_hash);
    let path = ctx.paths.auth_conf();
    let previous = fs::read_to_string(&path).ok();
    let changed = previous.as_deref() != Some(text.as_str());
    if changed {
        write_atomic(&path, &text, CONFIG_FILE_MODE)?;
    }
    let validation = match server::validate_config(&ctx.settings, &ctx.paths) {
        Ok(validation) => validation,
        Err(error) => {
            if changed {
                match &previous {
                    Some(previous) => write_atomic(&path, previous, CONFIG_FILE_MODE)?,
                    None => {
                        remove_if_exists(&path)?;
                    }
                }
            }
            return Err(error);
        }
    };
    if validation == Validation::Skipped {
        printer.warn("no server binary found (NATSD_BIN); config/auth.conf was not validated");
    }
    let reload = if changed || force_reload {
        let monitor = Monitor::new(&ctx.settings)?;
        let spinner = printer.spinner("Reloading natsd…");
        let outcome = server::reload(&ctx.settings, &ctx.paths, &monitor);
        spinner.finish_and_clear();
        Some(outcome?)
    } else {
        None
    };
    Ok(Applied {
        changed,
        validation,
        reload,
        tenants: tenants.len(),
    })
}

/// Say what a reload did.
pub fn report_reload(applied: &Applied, printer: Printer) {
    match &applied.reload {
        Some(ReloadOutcome::Confirmed { took, .. }) => {
            printer.status("Reloaded", format!("natsd ({} ms)", took.as_millis()));
        }
        Some(ReloadOutcome::Unconfirmed { reason }) => {
            printer.warn(format!(
                "signalled natsd to reload but could not confirm it: {reason}"
            ));
        }
        Some(ReloadOutcome::NotRunning) => {
            printer.status(
                "Saved",
                "natsd is not running; the change applies at the next ./manage up",
            );
        }
        None => {}
    }
}

/// Write one user's credentials file (mode 0600); returns its path for display.
pub fn write_credentials(
    ctx: &Context,
    tenant: &Tenant,
    user: &str,
    password: &str,
) -> anyhow::Result<String> {
    write_credentials_for(
        ctx,
        tenant.name.as_str(),
        &tenant.account_name(),
        user,
        password,
    )
}

/// [`write_credentials`] by names.
pub fn write_credentials_for(
    ctx: &Context,
    tenant: &str,
    account: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<String> {
    crate::fs::ensure_dir(&ctx.paths.credentials_dir(), crate::fs::SECRET_DIR_MODE)?;
    let path = ctx.paths.credentials_file(tenant, user);
    let shown = ctx.paths.display(&path);
    let text = env_file::render(tenant, account, user, password, &ctx.settings, &shown);
    write_atomic(&path, &text, SECRET_FILE_MODE)?;
    Ok(shown)
}

/// The connection-details box the seed prints.
pub fn credentials_box(
    printer: Printer,
    user: &str,
    password: &str,
    url: &str,
    file: &str,
    extra: &[String],
) {
    let mut body = vec![
        format!("  User:     {user}"),
        format!("  Password: {password}"),
        format!("  URL:      {url}"),
    ];
    body.extend(extra.iter().cloned());
    body.push(String::new());
    body.push(format!("  Credentials saved to: {file}"));
    printer.boxed("Connection Details", &body);
}

/// The client URL for a user.
pub fn url_for(ctx: &Context, user: &str, password: &str) -> String {
    format!(
        "nats://{user}:{password}@{}:{}",
        ctx.settings.url_host, ctx.settings.port
    )
}

/// The server's JetStream limits from `config/nats.conf` (`max_memory_store`,
/// `max_file_store`); `None` for a limit the file does not set.
pub fn server_limits(ctx: &Context) -> (Option<u64>, Option<u64>) {
    let text = fs::read_to_string(ctx.paths.nats_conf()).unwrap_or_default();
    let mut memory = None;
    let mut file = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let key_end = line.find([':', '=', ' ', '\t']).unwrap_or(line.len());
        let (key, rest) = line.split_at(key_end);
        let value = rest.trim_start_matches([':', '=', ' ', '\t']);
        let value = value.split(['#', ' ', '\t', ',', ';']).next().unwrap_or("");
        match key.to_ascii_lowercase().as_str() {
            "max_memory_store" | "max_mem_store" | "max_mem" => memory = parse_conf_size(value),
            "max_file_store" | "max_file" => file = parse_conf_size(value),
            _ => {}
        }
    }
    (memory, file)
}

/// A nats.conf size: digits plus an optional suffix (`k`=1000, `kb`=1024, `m`, `mb`, ...).
pub fn parse_conf_size(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let factor: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1000,
        "kb" | "ki" | "kib" => 1 << 10,
        "m" => 1_000_000,
        "mb" | "mi" | "mib" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" | "gi" | "gib" => 1 << 30,
        "t" => 1_000_000_000_000,
        "tb" | "ti" | "tib" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Refuse when the tenants' JetStream reservations would exceed the server's.
pub fn check_limits(
    ctx: &Context,
    others: &[Tenant],
    memory: Size,
    storage: Size,
) -> Result<(), ManageError> {
    let (max_memory, max_file) = server_limits(ctx);
    let wanted_memory: u64 = others.iter().map(|t| t.memory.bytes()).sum::<u64>() + memory.bytes();
    let wanted_storage: u64 =
        others.iter().map(|t| t.storage.bytes()).sum::<u64>() + storage.bytes();
    for (resource, setting, wanted, allowed) in [
        ("memory", "max_memory_store", wanted_memory, max_memory),
        ("storage", "max_file_store", wanted_storage, max_file),
    ] {
        if let Some(allowed) = allowed {
            if wanted > allowed {
                return Err(ManageError::OverLimit {
                    resource,
                    setting,
                    config: ctx.paths.nats_conf(),
                    wanted: Size::from_bytes(wanted).human(),
                    allowed: Size::from_bytes(allowed).human(),
                });
            }
        }
    }
    Ok(())
}

/// Time something for `--json` figures.
pub fn millis_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn conf_sizes() {
        assert_eq!(parse_conf_size("256MB"), Some(256 << 20));
        assert_eq!(parse_conf_size("10GB"), Some(10 << 30));
        assert_eq!(parse_conf_size("1G"), Some(1_000_000_000));
        assert_eq!(parse_conf_size("12"), Some(12));
        assert_eq!(parse_conf_size("x"), None);
    }

    #[test]
    fn passwords_are_long_and_distinct() {
        let a = generate_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate_password());
    }
}
