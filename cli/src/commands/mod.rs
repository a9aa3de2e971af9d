//! One file per command, and what they share: [`begin`] (the deployment lock, first-time setup,
//! rolling back an interrupted command), [`Change`] (a change to tenant files and credentials,
//! applied all or nothing together with the auth.conf it renders, then brought to the running
//! server), passwords, and limit checks.

pub mod check;
pub mod cluster_up;
pub mod init;
pub mod migrate;
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

use crate::cluster::nodes::{self, NodeSync};
use crate::cluster::Cluster;
use crate::error::{code_of, ManageError};
use crate::fs::{write_atomic, DeploymentLock, AUTH_CONF_MODE, PUBLIC_FILE_MODE, SECRET_FILE_MODE};
use crate::journal::{self, Transaction};
use crate::names::{Size, TenantName};
use crate::printer::{style, Printer};
use crate::render::auth_conf;
use crate::render::env_file::{self, Secret};
use crate::server::{self, ReloadOutcome, Validation};
use crate::tenant::{model::parse_tenant, repo, AuthKind, Tenant, TenantDoc, UserAuth};
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
    /// Exit 3: the change is saved and some nodes of the cluster run it, others missed it
    /// (`partial_reload`); the next `./manage reload` brings them to it.
    Partial,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Success => Self::SUCCESS,
            ExitStatus::Failure => Self::from(1),
            ExitStatus::Usage => Self::from(2),
            ExitStatus::Partial => Self::from(3),
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
        paths.nodes_config_dir(),
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
    let (hash, cache) = sys_hash_and_cache(ctx, printer)?;
    if let Some(text) = cache {
        write_atomic(&ctx.paths.sys_hash_file(), &text, SECRET_FILE_MODE)?;
    }
    Ok(hash)
}

/// The system user's bcrypt hash, and the new contents of its cache file when the cached one
/// is not for the current password (for a [`Change`] to write with the rest).
fn sys_hash_and_cache(ctx: &Context, printer: Printer) -> anyhow::Result<(String, Option<String>)> {
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
                return Ok((hash.to_owned(), None));
            }
        }
    }
    let hash = hash_password(password, printer)?;
    let cache = format!("{fingerprint} {hash}\n");
    Ok((hash, Some(cache)))
}

/// What a committed [`Change`] did to the running servers.
#[derive(Debug)]
pub enum ServerSync {
    /// natsd (or one nats-server): `Err` when it could not be brought to the files (they are
    /// committed nonetheless, and the next command or `./manage reload` retries).
    Single(Result<ReloadOutcome, anyhow::Error>),
    /// Every node of the cluster, each with the digest its files have.
    Cluster(Vec<(NodeSync, String)>),
}

/// How a cluster change ended, node by node.
struct NodeTally<'a> {
    confirmed: Vec<&'a str>,
    down: Vec<&'a str>,
    failed: Vec<(&'a str, &'a anyhow::Error)>,
}

fn tally(nodes: &[(NodeSync, String)]) -> NodeTally<'_> {
    let mut t = NodeTally {
        confirmed: Vec::new(),
        down: Vec::new(),
        failed: Vec::new(),
    };
    for (sync, _) in nodes {
        match &sync.result {
            Ok(ReloadOutcome::NotRunning) => t.down.push(&sync.node),
            Ok(_) => t.confirmed.push(&sync.node),
            Err(e) => t.failed.push((&sync.node, e)),
        }
    }
    t
}

impl ServerSync {
    /// Why the command fails: a server that could not be brought to the files, or a cluster
    /// whose nodes did not all confirm while some run (exit 3, `partial_reload`). A cluster of
    /// which no node runs is fine: the files apply when the nodes start.
    pub fn failure(&self) -> Option<(ExitStatus, Failure<'_>)> {
        match self {
            ServerSync::Single(Ok(_)) => None,
            ServerSync::Single(Err(e)) => Some((ExitStatus::Failure, Failure::Server(e))),
            ServerSync::Cluster(nodes) => {
                let t = tally(nodes);
                if t.failed.is_empty() && (t.down.is_empty() || t.confirmed.is_empty()) {
                    return None;
                }
                let missed: Vec<String> = t
                    .failed
                    .iter()
                    .map(|(n, _)| (*n).to_owned())
                    .chain(t.down.iter().map(|n| (*n).to_owned()))
                    .collect();
                let error: anyhow::Error = ManageError::PartialReload {
                    missed,
                    confirmed: t.confirmed.len(),
                    total: nodes.len(),
                }
                .into();
                Some((ExitStatus::Partial, Failure::Partial(error)))
            }
        }
    }

    /// `Ok` when every running server runs the files.
    pub fn into_result(self) -> anyhow::Result<()> {
        match self {
            ServerSync::Single(result) => result.map(|_| ()),
            other => match other.failure() {
                Some((_, Failure::Partial(error))) => Err(error),
                Some((_, Failure::Server(error))) => Err(anyhow::anyhow!("{error:#}")),
                None => Ok(()),
            },
        }
    }
}

/// Why a change did not reach every server.
#[derive(Debug)]
pub enum Failure<'a> {
    /// natsd's error.
    Server(&'a anyhow::Error),
    /// Some nodes missed it.
    Partial(anyhow::Error),
}

impl Failure<'_> {
    /// The error to report.
    pub fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Server(error) => error,
            Failure::Partial(error) => error,
        }
    }
}

fn outcome_json(result: &Result<ReloadOutcome, anyhow::Error>) -> Value {
    match result {
        Ok(ReloadOutcome::NotRunning) => json!({ "running": false, "confirmed": false }),
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
    }
}

/// What a committed [`Change`] did.
#[derive(Debug)]
pub struct Applied {
    /// auth.conf (or a node's configuration) changed on disk.
    pub changed: bool,
    /// Whether the server binary checked it.
    pub validation: Validation,
    /// The `config_digest` of the files on disk (natsd; each node's is in `sync`).
    pub digest: String,
    /// What the running servers did.
    pub sync: ServerSync,
    /// Tenants rendered.
    pub tenants: usize,
}

impl Applied {
    /// JSON form for command output.
    pub fn to_json(&self) -> Value {
        let mut doc = json!({
            "auth_conf_changed": self.changed, "validated": self.validation == Validation::Valid,
        });
        match &self.sync {
            ServerSync::Single(result) => {
                let mut reload = outcome_json(result);
                if matches!(result, Ok(ReloadOutcome::NotRunning)) {
                    reload = json!({ "running": false });
                }
                doc["config_digest"] = json!(self.digest);
                doc["reload"] = reload;
            }
            ServerSync::Cluster(nodes) => {
                let list: Vec<Value> = nodes
                    .iter()
                    .map(|(sync, expected)| {
                        let mut node = outcome_json(&sync.result);
                        node["name"] = json!(sync.node);
                        node["expected_digest"] = json!(expected);
                        node
                    })
                    .collect();
                let t = tally(nodes);
                doc["reload"] = json!({
                    "running": !t.confirmed.is_empty() || !t.failed.is_empty(),
                    "confirmed": t.failed.is_empty() && t.down.is_empty(),
                    "confirmed_nodes": t.confirmed.len(), "nodes": list,
                });
            }
        }
        doc
    }

    /// Say what happened to the servers, then print the command's JSON document with `ok`; the
    /// exit status is a failure when a server could not be brought to the files, 3 when some
    /// nodes of a cluster confirmed and others missed the change.
    pub fn finish(self, printer: Printer, mut doc: Value) -> ExitStatus {
        report_reload(&self, printer);
        doc["apply"] = self.to_json();
        match self.sync.failure() {
            None => {
                doc["ok"] = json!(true);
                printer.json(&doc);
                ExitStatus::Success
            }
            Some((status, failure)) => {
                let error = failure.error();
                doc["ok"] = json!(false);
                doc["code"] = json!(code_of(error));
                doc["error"] = json!(error.to_string());
                printer.json(&doc);
                crate::report_human(error);
                if let Failure::Server(_) = failure {
                    hint("the files are saved: ./manage reload brings the server to them");
                }
                status
            }
        }
    }
}

/// Say what a reload did (a failure is reported by [`Applied::finish`]).
pub fn report_reload(applied: &Applied, printer: Printer) {
    match &applied.sync {
        ServerSync::Single(Ok(ReloadOutcome::Confirmed { took, via, .. })) => {
            printer.status(
                "Reloaded",
                format!(
                    "natsd ({} ms, {})",
                    took.as_millis(),
                    via.as_str().replace('_', " ")
                ),
            );
        }
        ServerSync::Single(Ok(ReloadOutcome::InSync { .. })) => {
            printer.status("Unchanged", "natsd already runs this configuration");
        }
        ServerSync::Single(Ok(ReloadOutcome::NotRunning)) => {
            printer.status(
                "Saved",
                "no natsd server is running; the change applies at the next ./manage up",
            );
        }
        ServerSync::Single(Err(_)) => {}
        ServerSync::Cluster(nodes) => {
            let t = tally(nodes);
            if t.confirmed.is_empty() && t.failed.is_empty() {
                printer.status(
                    "Saved",
                    "no node of the cluster is running; the change applies at the next ./manage up",
                );
                return;
            }
            for (sync, _) in nodes {
                match &sync.result {
                    Ok(ReloadOutcome::Confirmed { took, via, .. }) => printer.status(
                        "Reloaded",
                        format!(
                            "{} ({} ms, {})",
                            sync.node,
                            took.as_millis(),
                            via.as_str().replace('_', " ")
                        ),
                    ),
                    Ok(ReloadOutcome::InSync { .. }) => printer.status(
                        "Unchanged",
                        format!("{} already runs this configuration", sync.node),
                    ),
                    Ok(ReloadOutcome::NotRunning) => printer.warn(format!(
                        "{} missed the change: nothing answers on its client port",
                        sync.node
                    )),
                    Err(error) => {
                        printer.warn(format!("{} missed the change: {error:#}", sync.node));
                    }
                }
            }
        }
    }
}

/// A change to tenant files and credentials. Nothing is written until [`Change::commit`],
/// which writes it together with the auth.conf it renders, all or nothing (see
/// `journal.rs`), then brings the running server to it.
pub struct Change<'a> {
    ctx: &'a Context,
    txn: Transaction,
    tenants: Vec<Tenant>,
    /// A cluster description written by this change (else the one on disk, if any).
    cluster: Option<Cluster>,
    /// Whether the change is undone when the running server does not take it.
    undo_unless_reloaded: bool,
}

impl<'a> Change<'a> {
    /// Start from the tenant files on disk. Any broken tenant file fails the command here,
    /// before anything is written.
    pub fn new(ctx: &'a Context, command: &str) -> anyhow::Result<Self> {
        Ok(Self {
            ctx,
            txn: Transaction::new(&ctx.paths, command),
            tenants: repo::load_all(&ctx.paths)?,
            cluster: None,
            undo_unless_reloaded: false,
        })
    }

    /// A change that counts only once the running server has it (a tenant, a user, a
    /// password): when natsd refuses the reload, does not confirm it or cannot be reached, the
    /// files are restored and the command fails with nothing changed, so no credentials are
    /// handed out that the server does not take (or removed that it still takes), and running
    /// the command again is safe. Without it the files stay (what `reload` wants: they are
    /// what the tenant files say), and so does a cluster change, which reports nodes that
    /// missed it (`partial_reload`).
    pub fn undone_unless_reloaded(mut self) -> Self {
        self.undo_unless_reloaded = true;
        self
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

    /// Write a user's credentials file (0600) and, for an NKEY user, its seed file (0600); a
    /// seed file the user no longer has (it logs in with a password now) is removed. Returns
    /// the paths for display.
    pub fn put_credentials(
        &mut self,
        tenant: &TenantName,
        user: &str,
        secret: &Secret,
    ) -> anyhow::Result<Written> {
        let paths = &self.ctx.paths;
        let path = paths.credentials_file(tenant.as_str(), user);
        let seed_path = paths.seed_file(tenant.as_str(), user);
        let shown = paths.display(&path);
        let url = env_file::user_url(&self.client_bases()?, user, secret);
        let text = env_file::render(
            tenant.as_str(),
            &tenant.account(),
            user,
            secret,
            &url,
            &shown,
            &seed_path.display().to_string(),
        );
        self.txn.write(&path, text, SECRET_FILE_MODE)?;
        let seed_file = match secret.seed() {
            Some(seed) => {
                self.txn.write(
                    &seed_path,
                    env_file::render_seed_file(seed),
                    SECRET_FILE_MODE,
                )?;
                Some(paths.display(&seed_path))
            }
            None => {
                if seed_path.exists() {
                    self.txn.remove(&seed_path)?;
                }
                None
            }
        };
        // A copy under an older name would keep the old password around.
        let legacy = paths.legacy_credentials_file(tenant.as_str(), user);
        if legacy != path
            && crate::credentials::files_of(paths, tenant.as_str(), user)?.contains(&legacy)
        {
            self.txn.remove(&legacy)?;
        }
        Ok(Written {
            file: shown,
            seed_file,
        })
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

    /// Render auth.conf, write everything, validate it (the nats.conf parser and the server
    /// binary's `-t`), and keep it only if valid; then bring the running server to it
    /// (`force`: reload even when it already runs this configuration).
    pub fn commit(mut self, printer: Printer, force: bool) -> anyhow::Result<Applied> {
        let ctx = self.ctx;
        // The cache of the system user's hash goes with the change, so an undone change
        // leaves it as it was too.
        let (sys_hash, sys_cache) = sys_hash_and_cache(ctx, printer)?;
        if let Some(text) = sys_cache {
            self.txn
                .write(&ctx.paths.sys_hash_file(), text, SECRET_FILE_MODE)?;
        }
        let text = auth_conf::render(&self.tenants, &sys_hash);
        let auth = ctx.paths.auth_conf();
        let mut changed = fs::read_to_string(&auth).ok().as_deref() != Some(text.as_str());
        if changed {
            self.txn.write(&auth, text, AUTH_CONF_MODE)?;
        }
        crate::fs::fix_mode(&auth, AUTH_CONF_MODE)?;
        let cluster = match self.cluster.take() {
            Some(cluster) => Some(cluster),
            None => Cluster::load(&ctx.paths)?,
        };
        if let Some(cluster) = &cluster {
            changed |= self.render_nodes(cluster)?;
            self.refresh_credentials(&client_bases(ctx, Some(cluster)))?;
        }
        let undo = self.undo_unless_reloaded && cluster.is_none();
        let tenants = self.tenants.len();
        let ((digests, validation), written) =
            self.txn.write_checked(&ctx.paths, || match &cluster {
                None => {
                    let loaded = server::load_config(&ctx.settings, &ctx.paths)?;
                    let validation = server::validate_with_binary(&ctx.settings, &ctx.paths)?;
                    Ok((vec![loaded.digest], validation))
                }
                Some(cluster) => {
                    let mut digests = Vec::with_capacity(cluster.nodes.len());
                    for node in &cluster.nodes {
                        digests.push(nodes::validate(&ctx.settings, &ctx.paths, node)?);
                    }
                    Ok((digests, Validation::Valid))
                }
            })?;
        if validation == Validation::Skipped {
            printer.warn(
                "no server binary found (NATSD_BIN); checked the nats.conf syntax only, not the options",
            );
        }
        let written = if undo {
            Some(written)
        } else {
            written.keep()?;
            None
        };
        journal::failpoint("reloading");
        let (digest, sync) = match &cluster {
            None => {
                let digest = digests.into_iter().next().unwrap_or_default();
                let spinner = printer.spinner("Reloading natsd…");
                let reload = server::sync(&ctx.settings, &ctx.paths, &digest, force);
                spinner.finish_and_clear();
                match (written, reload) {
                    (Some(written), Err(error)) => {
                        return Err(undo_change(ctx, printer, written, &digest, error))
                    }
                    (Some(written), Ok(outcome)) => {
                        written.keep()?;
                        (digest, ServerSync::Single(Ok(outcome)))
                    }
                    (None, reload) => (digest, ServerSync::Single(reload)),
                }
            }
            Some(cluster) => {
                let spinner = printer.spinner(format!("Reloading {} nodes…", cluster.nodes.len()));
                let synced = nodes::sync_all(&ctx.settings, &ctx.paths, cluster, &digests, force);
                spinner.finish_and_clear();
                (
                    String::new(),
                    ServerSync::Cluster(synced.into_iter().zip(digests).collect()),
                )
            }
        };
        Ok(Applied {
            changed,
            validation,
            digest,
            sync,
            tenants,
        })
    }

    /// The client URLs (without credentials) of the deployment as this change leaves it.
    fn client_bases(&self) -> anyhow::Result<Vec<String>> {
        let cluster = match &self.cluster {
            Some(cluster) => Some(cluster.clone()),
            None => Cluster::load(&self.ctx.paths)?,
        };
        Ok(client_bases(self.ctx, cluster.as_ref()))
    }

    /// In a cluster, every user's credentials name all the nodes: a credentials file written
    /// for natsd (or for other nodes) gets the current URL list, with its password kept.
    fn refresh_credentials(&mut self, bases: &[String]) -> anyhow::Result<()> {
        let paths = &self.ctx.paths;
        for tenant in &self.tenants {
            for user in &tenant.users {
                let (name, user) = (tenant.name.as_str(), user.name.as_str());
                let path = paths.credentials_file(name, user);
                if self.txn.pending(&path).is_some() {
                    continue;
                }
                let Ok(Some(found)) = env_file::read(&path) else {
                    continue;
                };
                if found.user != user {
                    continue;
                }
                let url = env_file::user_url(bases, user, &found.secret);
                if found.url != url {
                    let shown = paths.display(&path);
                    let text = env_file::render(
                        name,
                        &tenant.name.account(),
                        user,
                        &found.secret,
                        &url,
                        &shown,
                        &paths.seed_file(name, user).display().to_string(),
                    );
                    self.txn.write(&path, text, SECRET_FILE_MODE)?;
                }
            }
        }
        Ok(())
    }

    /// Describe the deployment's cluster: `config/cluster.toml` is written with the rest.
    pub fn put_cluster(&mut self, cluster: Cluster) -> anyhow::Result<()> {
        self.txn.write(
            &self.ctx.paths.cluster_file(),
            cluster.to_toml(),
            PUBLIC_FILE_MODE,
        )?;
        self.cluster = Some(cluster);
        Ok(())
    }

    /// Every node's configuration, and the removal of those of nodes no longer described;
    /// returns whether any changes.
    fn render_nodes(&mut self, cluster: &Cluster) -> anyhow::Result<bool> {
        let paths = &self.ctx.paths;
        let password = self
            .ctx
            .settings
            .cluster_password
            .as_deref()
            .ok_or_else(|| ManageError::NotInitialised {
                root: paths.root.clone(),
            })?;
        let mut changed = false;
        for (path, text, current) in cluster.node_confs(paths, password) {
            if !current {
                changed = true;
                self.txn.write(&path, text, AUTH_CONF_MODE)?;
            }
            crate::fs::fix_mode(&path, AUTH_CONF_MODE)?;
        }
        for path in cluster.stale_node_confs(paths) {
            changed = true;
            self.txn.remove(&path)?;
        }
        Ok(changed)
    }
}

/// A change natsd did not take (`error`): restore the files, and when the server shows the
/// change after all (a reload confirmed too late), bring it back to the restored files.
/// Returns the command's error.
fn undo_change(
    ctx: &Context,
    printer: Printer,
    written: journal::Written,
    undone_digest: &str,
    error: anyhow::Error,
) -> anyhow::Error {
    if let Err(undo_error) = written.undo() {
        return error.context(format!(
            "the running server did not take the change, and restoring the files failed \
             ({undo_error:#}); the next ./manage command finishes restoring them"
        ));
    }
    // These end before the server is asked, or with the server refusing: it runs what it ran.
    let untouched = matches!(
        error.downcast_ref::<ManageError>(),
        Some(
            ManageError::ReloadFailed { .. }
                | ManageError::ServerUnreachable { .. }
                | ManageError::UnverifiedProcess { .. }
        )
    );
    let runs_undone = || {
        server::Monitor::new(&ctx.settings)
            .and_then(|m| m.get("/varz"))
            .is_ok_and(|varz| server::loaded(&varz).0 == undone_digest)
    };
    if !untouched && runs_undone() {
        let restored = server::load_config(&ctx.settings, &ctx.paths)
            .map_err(anyhow::Error::from)
            .and_then(|loaded| server::sync(&ctx.settings, &ctx.paths, &loaded.digest, false));
        if let Err(e) = restored {
            printer.warn(format!(
                "natsd runs the undone change and could not be brought back ({e:#}); run \
                 ./manage reload once it answers"
            ));
        }
    }
    error.context("nothing was changed: the running server did not take the change, so the files were restored")
}

/// Re-render auth.conf from the tenant files and bring the server to it (what `reload`, `up`
/// and `init` do, and what repairs a deployment after an interrupted command or a hand edit).
pub fn apply(ctx: &Context, printer: Printer, force: bool) -> anyhow::Result<Applied> {
    Change::new(ctx, "reload")?.commit(printer, force)
}

/// Where a user's credentials were written, for display.
#[derive(Debug, Clone)]
pub struct Written {
    /// `.credentials/<tenant>[_<user>].env`
    pub file: String,
    /// `.credentials/<tenant>[_<user>].nk`, for an NKEY user.
    pub seed_file: Option<String>,
}

/// The connection-details box the seed prints; an NKEY user's shows its public key and seed
/// where a password user's shows the password, and the seed file.
pub fn credentials_box(
    printer: Printer,
    user: &str,
    secret: &Secret,
    url: &str,
    written: &Written,
    extra: &[String],
) {
    let mut body = match secret {
        Secret::Password(password) => vec![
            format!("  User:     {user}"),
            format!("  Password: {password}"),
        ],
        Secret::Nkey(seed) => vec![
            format!("  User:     {user} (NKEY, no password)"),
            format!(
                "  NKEY:     {}",
                crate::nkey::public_key_of(seed).unwrap_or_else(|e| format!("({e})"))
            ),
            format!("  Seed:     {seed}"),
        ],
    };
    body.push(format!("  URL:      {url}"));
    body.extend(extra.iter().cloned());
    body.push(String::new());
    body.push(format!("  Credentials saved to: {}", written.file));
    if let Some(seed_file) = &written.seed_file {
        body.push(format!("  Seed file:            {seed_file}"));
    }
    printer.boxed("Connection Details", &body);
}

/// The JSON fields of a user's login: `auth`, and `password`, or `nkey`, `seed` and
/// `seed_file`.
pub fn secret_json(doc: &mut Value, secret: &Secret, seed_file: Option<&str>) {
    doc["auth"] = json!(secret.kind().as_str());
    match secret {
        Secret::Password(password) => doc["password"] = json!(password),
        Secret::Nkey(seed) => {
            doc["nkey"] = json!(crate::nkey::public_key_of(seed).ok());
            doc["seed"] = json!(seed);
            doc["seed_file"] = json!(seed_file);
        }
    }
}

/// A new secret of the given kind: a password and its bcrypt hash, or an NKEY key pair (the
/// seed for the credentials, the public key for the tenant file).
pub fn new_secret(kind: AuthKind, printer: Printer) -> anyhow::Result<(Secret, UserAuth)> {
    Ok(match kind {
        AuthKind::Password => {
            let password = generate_password();
            let hash = hash_password(&password, printer)?;
            (Secret::Password(password), UserAuth::Password { hash })
        }
        AuthKind::Nkey => {
            let (public_key, seed) = crate::nkey::generate().context("NKEY generation failed")?;
            (Secret::Nkey(seed), UserAuth::Nkey { public_key })
        }
    })
}

/// The client URL for a user (a comma-separated list, one per node, for a cluster).
pub fn url_for(ctx: &Context, user: &str, secret: &Secret) -> String {
    let cluster = Cluster::load(&ctx.paths).ok().flatten();
    env_file::user_url(&client_bases(ctx, cluster.as_ref()), user, secret)
}

/// `nats://host:port` of natsd, or of every node of `cluster`.
pub fn client_bases(ctx: &Context, cluster: Option<&Cluster>) -> Vec<String> {
    match cluster {
        Some(cluster) => cluster.client_urls(&ctx.settings),
        None => vec![format!(
            "nats://{}:{}",
            ctx.settings.url_host, ctx.settings.port
        )],
    }
}

/// The server's JetStream limits as the server reads `config/nats.conf` (includes, variables
/// and units included); `None` for a limit the server sizes from the machine.
pub fn server_limits(ctx: &Context) -> anyhow::Result<(Option<u64>, Option<u64>)> {
    let loaded = server::load_config(&ctx.settings, &ctx.paths)?;
    Ok(server::jetstream_limits(&loaded.tree)?)
}

/// Refuse when the tenants' JetStream reservations would exceed the server's. Sums are exact
/// (no overflow can wrap a huge request into a small one).
///
/// In a cluster an account's `max_mem` / `max_file` are cluster-wide and count every replica
/// (nats-server's un-tiered account limits: an R3 stream of 1GB takes 3GB of them), while each
/// node's `max_memory_store` / `max_file_store` bound what that node holds; so the tenants'
/// limits together must fit in the sum of the nodes' limits. nats-server itself checks nothing
/// at configuration time in a cluster (it only does on a single server, against its own
/// limits), and refuses a stream whose replicas would pass its account's limit.
pub fn check_limits(
    ctx: &Context,
    others: &[Tenant],
    memory: Size,
    storage: Size,
) -> anyhow::Result<()> {
    let (max_memory, max_file, config, nodes) = match Cluster::load(&ctx.paths)? {
        Some(cluster) => {
            let (memory, file) = cluster.capacity();
            (
                Some(memory),
                Some(file),
                ctx.paths.cluster_file(),
                cluster.nodes.len(),
            )
        }
        None => {
            let (memory, file) = server_limits(ctx)?;
            (memory, file, ctx.paths.nats_conf(), 1)
        }
    };
    let per_node = |setting: &str| {
        if nodes == 1 {
            format!("`{setting}`")
        } else {
            format!("`{setting}` × {nodes} nodes")
        }
    };
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
                    setting: per_node(setting),
                    config,
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
