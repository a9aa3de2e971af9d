//! One file per command, and what they share: [`begin`] (the deployment lock, first-time setup,
//! rolling back an interrupted command), [`Change`] (a change to tenant files and credentials,
//! applied all or nothing together with the auth.conf it renders, then brought to the running
//! server), passwords, and limit checks.

pub mod check;
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

use anyhow::Context as _;
use rand::Rng as _;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::error::{code_of, ManageError};
use crate::fs::{write_atomic, DeploymentLock, AUTH_CONF_MODE, SECRET_FILE_MODE};
use crate::journal::{self, Transaction};
use crate::names::{Size, TenantName};
use crate::printer::{style, Printer};
use crate::render::{auth_conf, env_file};
use crate::server::{self, ReloadOutcome, Validation};
use crate::tenant::{model::parse_tenant, repo, Tenant, TenantDoc};
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
    /// Exit 1: the command could not do what was asked.
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

/// Start a command that changes the deployment: take the deployment lock (mutating commands
/// run one at a time), set the deployment up if needed (under the lock, so parallel first
/// runs agree on one system password), roll back whatever an interrupted command left, and
/// move credentials files older versions named ambiguously.
pub fn begin(ctx: &mut Context, printer: Printer) -> anyhow::Result<DeploymentLock> {
    let lock = DeploymentLock::acquire(&ctx.paths.lock_file())?;
    // Another run may have set the deployment up while this one waited for the lock.
    ctx.reload_settings()?;
    for path in init::ensure(ctx, printer)? {
        printer.status("Created", path);
    }
    if let Some(command) = journal::recover(&ctx.paths)? {
        printer.warn(format!(
            "an interrupted `{command}` left its changes half done; they were rolled back"
        ));
    }
    // Temp files of writes that were interrupted: every writer holds the lock, so none is live.
    for path in leftover_temp_files(&ctx.paths) {
        crate::fs::remove_if_exists(&path)?;
    }
    // nats.conf includes auth.conf, so the configuration cannot be read before it exists.
    if !ctx.paths.auth_conf().exists() {
        let text = auth_conf::render(&repo::load_all(&ctx.paths)?, &sys_hash(ctx, printer)?);
        write_atomic(&ctx.paths.auth_conf(), &text, AUTH_CONF_MODE)?;
    }
    if let Ok(tenants) = repo::load_all(&ctx.paths) {
        for (from, to) in crate::credentials::migrate(&ctx.paths, &tenants)? {
            printer.status(
                "Moved",
                format!("{} to {}", ctx.paths.display(&from), ctx.paths.display(&to)),
            );
        }
    }
    Ok(lock)
}

/// Temp files (`.tmp-*`) an interrupted atomic write left in the deployment's directories.
pub fn leftover_temp_files(paths: &crate::settings::Paths) -> Vec<std::path::PathBuf> {
    [
        paths.root.clone(),
        paths.config_dir(),
        paths.tenants_dir(),
        paths.credentials_dir(),
        paths.data_dir(),
    ]
    .iter()
    .flat_map(|dir| fs::read_dir(dir).into_iter().flatten().flatten())
    .filter(|entry| entry.file_name().to_string_lossy().starts_with(".tmp-"))
    .map(|entry| entry.path())
    .collect()
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

/// What a committed [`Change`] did.
#[derive(Debug)]
pub struct Applied {
    /// auth.conf changed on disk.
    pub changed: bool,
    /// Whether the server binary checked it.
    pub validation: Validation,
    /// The `config_digest` of the files on disk.
    pub digest: String,
    /// What the running server did; `Err` when it could not be brought to the files (they
    /// are committed nonetheless, and the next command or `./manage reload` retries).
    pub reload: Result<ReloadOutcome, anyhow::Error>,
    /// Tenants rendered.
    pub tenants: usize,
}

impl Applied {
    /// JSON form for command output.
    pub fn to_json(&self) -> Value {
        let reload = match &self.reload {
            Ok(ReloadOutcome::NotRunning) => json!({ "running": false }),
            Ok(ReloadOutcome::InSync { digest }) => {
                json!({ "running": true, "confirmed": true, "reloaded": false, "config_digest": digest })
            }
            Ok(ReloadOutcome::Confirmed {
                digest,
                load_time,
                took,
                via,
            }) => json!({
                "running": true, "confirmed": true, "reloaded": true, "config_digest": digest,
                "config_load_time": load_time, "ms": took.as_millis() as u64, "via": via.as_str(),
            }),
            Err(error) => json!({
                "running": true, "confirmed": false, "code": code_of(error), "reason": format!("{error:#}"),
            }),
        };
        json!({
            "auth_conf_changed": self.changed, "validated": self.validation == Validation::Valid,
            "config_digest": self.digest, "reload": reload,
        })
    }

    /// Say what happened to the server, then print the command's JSON document with `ok`; the
    /// exit status is a failure when the server could not be brought to the files.
    pub fn finish(self, printer: Printer, mut doc: Value) -> ExitStatus {
        report_reload(&self, printer);
        doc["apply"] = self.to_json();
        match &self.reload {
            Ok(_) => {
                doc["ok"] = json!(true);
                printer.json(&doc);
                ExitStatus::Success
            }
            Err(error) => {
                doc["ok"] = json!(false);
                doc["code"] = json!(code_of(error));
                doc["error"] = json!(error.to_string());
                printer.json(&doc);
                crate::report_human(error);
                ExitStatus::Failure
            }
        }
    }
}

/// Say what a reload did (a failure is reported by [`Applied::finish`]).
pub fn report_reload(applied: &Applied, printer: Printer) {
    match &applied.reload {
        Ok(ReloadOutcome::Confirmed { took, via, .. }) => {
            printer.status(
                "Reloaded",
                format!(
                    "natsd ({} ms, {})",
                    took.as_millis(),
                    via.as_str().replace('_', " ")
                ),
            );
        }
        Ok(ReloadOutcome::InSync { .. }) => {
            printer.status("Unchanged", "natsd already runs this configuration");
        }
        Ok(ReloadOutcome::NotRunning) => {
            printer.status(
                "Saved",
                "no natsd server is running; the change applies at the next ./manage up",
            );
        }
        Err(_) => {}
    }
}

/// A change to tenant files and credentials. Nothing is written until [`Change::commit`],
/// which writes it together with the auth.conf it renders, all or nothing (see
/// `journal.rs`), then brings the running server to it.
pub struct Change<'a> {
    ctx: &'a Context,
    txn: Transaction,
    tenants: Vec<Tenant>,
}

impl<'a> Change<'a> {
    /// Start from the tenant files on disk. Any broken tenant file fails the command here,
    /// before anything is written.
    pub fn new(ctx: &'a Context, command: &str) -> anyhow::Result<Self> {
        Ok(Self {
            ctx,
            txn: Transaction::new(&ctx.paths, command),
            tenants: repo::load_all(&ctx.paths)?,
        })
    }

    /// The tenants as they will be.
    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    /// Write a tenant file (validated as it will be read back).
    pub fn put_tenant(&mut self, name: &TenantName, doc: &TenantDoc) -> anyhow::Result<Tenant> {
        let path = self.ctx.paths.tenant_file(name.as_str());
        let text = doc.to_string();
        let tenant = parse_tenant(&path, name, &text)?;
        self.tenants.retain(|t| &t.name != name);
        self.tenants.push(tenant.clone());
        self.tenants.sort_by(|a, b| a.name.cmp(&b.name));
        self.txn.write(&path, text, SECRET_FILE_MODE)?;
        Ok(tenant)
    }

    /// Remove a tenant file.
    pub fn remove_tenant(&mut self, name: &TenantName) -> anyhow::Result<()> {
        self.tenants.retain(|t| &t.name != name);
        self.txn.remove(&self.ctx.paths.tenant_file(name.as_str()))
    }

    /// Write a user's credentials file (0600); returns its path for display.
    pub fn put_credentials(
        &mut self,
        tenant: &TenantName,
        user: &str,
        password: &str,
    ) -> anyhow::Result<String> {
        let paths = &self.ctx.paths;
        let path = paths.credentials_file(tenant.as_str(), user);
        let shown = paths.display(&path);
        let text = env_file::render(
            tenant.as_str(),
            &tenant.account(),
            user,
            password,
            &self.ctx.settings,
            &shown,
        );
        self.txn.write(&path, text, SECRET_FILE_MODE)?;
        // A copy under an older name would keep the old password around.
        let legacy = paths.legacy_credentials_file(tenant.as_str(), user);
        if legacy != path
            && crate::credentials::files_of(paths, tenant.as_str(), user)?.contains(&legacy)
        {
            self.txn.remove(&legacy)?;
        }
        Ok(shown)
    }

    /// Remove every credentials file of a user; returns their paths for display.
    pub fn remove_credentials(&mut self, tenant: &str, user: &str) -> anyhow::Result<Vec<String>> {
        let paths = &self.ctx.paths;
        let mut removed = Vec::new();
        for path in crate::credentials::files_of(paths, tenant, user)? {
            removed.push(paths.display(&path));
            self.txn.remove(&path)?;
        }
        Ok(removed)
    }

    /// Render auth.conf, write everything, validate it (natsd's loader and the server
    /// binary's `-t`), and keep it only if valid; then bring the running server to it
    /// (`force`: reload even when it already runs this configuration).
    pub fn commit(mut self, printer: Printer, force: bool) -> anyhow::Result<Applied> {
        let ctx = self.ctx;
        let sys_hash = sys_hash(ctx, printer)?;
        let text = auth_conf::render(&self.tenants, &sys_hash);
        let auth = ctx.paths.auth_conf();
        let changed = fs::read_to_string(&auth).ok().as_deref() != Some(text.as_str());
        if changed {
            self.txn.write(&auth, text, AUTH_CONF_MODE)?;
        }
        crate::fs::fix_mode(&auth, AUTH_CONF_MODE)?;
        let (digest, validation) = self.txn.commit(&ctx.paths, || {
            let loaded = server::load_config(&ctx.settings, &ctx.paths)?;
            let validation = server::validate_with_binary(&ctx.settings, &ctx.paths)?;
            Ok((loaded.digest, validation))
        })?;
        if validation == Validation::Skipped {
            printer.warn("no server binary found (NATSD_BIN); checked with natsd's loader only");
        }
        journal::failpoint("committed");
        let spinner = printer.spinner("Reloading natsd…");
        let reload = server::sync(&ctx.settings, &ctx.paths, &digest, force);
        spinner.finish_and_clear();
        Ok(Applied {
            changed,
            validation,
            digest,
            reload,
            tenants: self.tenants.len(),
        })
    }
}

/// Re-render auth.conf from the tenant files and bring the server to it (what `reload`, `up`
/// and `init` do, and what repairs a deployment after an interrupted command or a hand edit).
pub fn apply(ctx: &Context, printer: Printer, force: bool) -> anyhow::Result<Applied> {
    Change::new(ctx, "reload")?.commit(printer, force)
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

/// The server's JetStream limits as natsd reads `config/nats.conf` (includes, variables and
/// units included); `None` for a limit the server sizes from the machine.
pub fn server_limits(ctx: &Context) -> anyhow::Result<(Option<u64>, Option<u64>)> {
    let loaded = server::load_config(&ctx.settings, &ctx.paths)?;
    let limit = |value: i64| u64::try_from(value).ok().filter(|v| *v > 0);
    Ok(match &loaded.options.jetstream {
        Some(js) => (limit(js.max_memory), limit(js.max_store)),
        None => (None, None),
    })
}

/// Refuse when the tenants' JetStream reservations would exceed the server's. Sums are exact
/// (no overflow can wrap a huge request into a small one).
pub fn check_limits(
    ctx: &Context,
    others: &[Tenant],
    memory: Size,
    storage: Size,
) -> anyhow::Result<()> {
    let (max_memory, max_file) = server_limits(ctx)?;
    let sum = |size: fn(&Tenant) -> Size, new: Size| -> u128 {
        others
            .iter()
            .map(|t| u128::from(size(t).bytes()))
            .sum::<u128>()
            + u128::from(new.bytes())
    };
    let wanted_memory = sum(|t| t.memory, memory);
    let wanted_storage = sum(|t| t.storage, storage);
    for (resource, setting, wanted, allowed) in [
        ("memory", "max_memory_store", wanted_memory, max_memory),
        ("storage", "max_file_store", wanted_storage, max_file),
    ] {
        if let Some(allowed) = allowed {
            if wanted > u128::from(allowed) {
                return Err(ManageError::OverLimit {
                    resource,
                    setting,
                    config: ctx.paths.nats_conf(),
                    wanted: human_u128(wanted),
                    allowed: Size::from_bytes(allowed).human(),
                }
                .into());
            }
        }
    }
    Ok(())
}

fn human_u128(bytes: u128) -> String {
    u64::try_from(bytes)
        .map(|b| Size::from_bytes(b).human())
        .unwrap_or_else(|_| format!("{bytes}B"))
}

/// A warning-styled hint line on stderr.
pub fn hint(text: &str) {
    eprintln!("{} {text}", style::warning().apply_to("hint:"));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_and_distinct() {
        let a = generate_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate_password());
    }
}
