//! `manage migrate --to DIR`: move this deployment's tenants and their JetStream data into
//! another deployment (typically a nats-server cluster made with `up --nodes 3`), verify the
//! copy, and be safe to run again.
//!
//! 1. Preflight, before anything is written: every tenant's admin credentials, every stream
//!    and consumer read from the servers here, and the tenants' JetStream limits checked
//!    against what the streams need on the target with their replicas (an account's limits
//!    count every replica in a cluster, as nats-server counts them).
//! 2. The tenants: the tenant files are copied as they are (same users, bcrypt hashes,
//!    permissions and limits), with the users' credentials rewritten for the target's URLs,
//!    as one all-or-nothing change of the target, reloaded on every node and confirmed.
//! 3. Per stream: created on the target with the same configuration and `--replicas`; the
//!    messages copied in order with their subjects, headers (byte for byte, less the
//!    `Nats-Expected-*` / `Nats-Batch-*` publish preconditions, which nats-server drops too when
//!    it sources a stream) and payloads; then the durable consumers with their positions; then
//!    the configuration the copy relaxed (sealed, no_ack, duplicate window, republish). Key-Value
//!    buckets and object stores are streams, so their history moves as configured.
//!    Mirrors and sourcing streams are not published to: they are created from their
//!    configuration after the streams they copy from, the target copies from those itself,
//!    and migrate waits (bounded) until it has caught up (see [`follow_stream`]).
//!    A stream with a subject transform stores its messages under the transformed subjects:
//!    it is copied without the transform, taking those subjects, and gets its own subjects and
//!    transform back afterwards (see [`capture_config`]). A counter stream stores running
//!    totals: each is published as the increment from the subject's previous total (see
//!    [`Replay`]). A stream with message schedules is copied in order with its pending
//!    schedules, which the target arms and fires from then on (see [`schedules`]).
//! 4. Verification: message counts and a SHA-256 digest over every message's subject, headers
//!    and payload, source against target (sequence numbers and timestamps are the target's own).
//!
//! Progress is recorded per stream in `data/migrate/<tenant>/<stream>.json` after every batch:
//! a rerun resumes after the last message the target acknowledged (checking by digest the ones
//! it holds beyond the record), copies only what the source gained since, and refuses a target
//! stream that holds messages it did not copy.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use num_bigint::BigInt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::cli::MigrateArgs;
use crate::client::TlsSettings;
use crate::cluster::Cluster;
use crate::commands::{begin, check_limits, Change, ExitStatus, ServerSync};
use crate::error::ManageError;
use crate::fs::{write_atomic, SECRET_FILE_MODE};
use crate::jetstream::{api_code, JetStream, Reader, StoredMessage};
use crate::names::{Size, TenantName};
use crate::printer::{style, Printer};
use crate::render::env_file::{Credentials, Secret};
use crate::server::ReloadOutcome;
use crate::settings::{Paths, Settings};
use crate::tenant::{repo, Tenant, TenantDoc};
use crate::Context;

mod schedules;

/// Messages per batch: published together, then the progress record is written.
const BATCH: usize = 256;
/// Bytes per batch at most.
const BATCH_BYTES: usize = 1 << 20;
/// The duplicate window while copying: nats-server's minimum. Two messages with the same
/// `Nats-Msg-Id` in the source were published at least the source's window apart; the copy
/// keeps them at least this far apart so the target takes both.
const COPY_DUPLICATE_WINDOW: Duration = Duration::from_millis(100);
/// Margin over [`COPY_DUPLICATE_WINDOW`] before a repeated `Nats-Msg-Id` is published again.
const MSG_ID_SPACING: Duration = Duration::from_millis(250);

/// How long a mirror or sourcing stream on the target may copy from its origins without
/// progress before migrate reports that it does not converge.
const CATCH_UP_IDLE: Duration = Duration::from_secs(30);
/// How often its state is read meanwhile.
const CATCH_UP_POLL: Duration = Duration::from_millis(250);

/// What `data/migrate/<tenant>/<stream>.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Progress {
    /// The target deployment's root.
    target: PathBuf,
    /// The target stream's `created`: a stream deleted and made again is another stream.
    created: String,
    /// The last source sequence copied.
    source_seq: u64,
    /// The target sequence it got.
    target_seq: u64,
    /// The message schedules the copy armed on the target.
    #[serde(default, skip_serializing_if = "schedules::ArmedSchedules::is_empty")]
    schedules: schedules::ArmedSchedules,
}

/// One consumer's outcome.
#[derive(Debug, Clone)]
struct ConsumerReport {
    name: String,
    action: String,
    position: Option<String>,
}

/// One stream's outcome.
#[derive(Debug, Clone, Default)]
struct StreamReport {
    tenant: String,
    stream: String,
    replicas: u64,
    action: String,
    copied: u64,
    source_messages: u64,
    target_messages: u64,
    source_digest: String,
    target_digest: String,
    verified: bool,
    consumers: Vec<ConsumerReport>,
    error: Option<String>,
}

impl StreamReport {
    fn to_json(&self) -> Value {
        json!({
            "tenant": self.tenant, "stream": self.stream, "replicas": self.replicas,
            "action": self.action, "copied": self.copied,
            "source_messages": self.source_messages, "target_messages": self.target_messages,
            "source_digest": self.source_digest, "target_digest": self.target_digest,
            "verified": self.verified, "error": self.error,
            "consumers": self.consumers.iter().map(|c| json!({
                "name": c.name, "action": c.action, "position": c.position,
            })).collect::<Vec<_>>(),
        })
    }
}

/// What one tenant brings: its file, the credentials here, its streams as they are now.
struct Plan {
    tenant: Tenant,
    text: String,
    /// (user, password or NKEY seed) of every user whose credentials file is here.
    secrets: Vec<(String, Secret)>,
    admin: Credentials,
    streams: Vec<Value>,
}

/// The target deployment.
struct Target {
    ctx: Context,
    cluster: Option<Cluster>,
}

impl Target {
    fn addrs(&self) -> Vec<String> {
        match &self.cluster {
            Some(cluster) => cluster.nodes.iter().map(|n| n.client_addr()).collect(),
            None => vec![self.ctx.settings.client_addr()],
        }
    }

    fn nodes(&self) -> usize {
        self.cluster.as_ref().map_or(1, |c| c.nodes.len())
    }
}

fn tls(ctx: &Context) -> TlsSettings {
    TlsSettings {
        ca_file: ctx.settings.tls_ca.as_ref().map(|p| ctx.paths.root.join(p)),
        server_name: ctx.settings.tls_server_name.clone(),
    }
}

/// The client addresses of this deployment's servers.
fn source_addrs(ctx: &Context) -> anyhow::Result<Vec<String>> {
    Ok(match Cluster::load(&ctx.paths)? {
        Some(cluster) => cluster.nodes.iter().map(|n| n.client_addr()).collect(),
        None => vec![ctx.settings.client_addr()],
    })
}

fn open_target(ctx: &Context, dir: &Path) -> anyhow::Result<Target> {
    let root = dir
        .canonicalize()
        .with_context(|| format!("the target deployment {} does not exist", dir.display()))?;
    let here = ctx
        .paths
        .root
        .canonicalize()
        .unwrap_or(ctx.paths.root.clone());
    anyhow::ensure!(
        root != here,
        "the target is this deployment; give the directory of the deployment to move to"
    );
    let paths = Paths { root };
    let settings = Settings::load_other(&paths)?;
    if settings.sys_password.is_none() {
        return Err(ManageError::NotInitialised { root: paths.root }.into());
    }
    let cluster = Cluster::load(&paths)?;
    Ok(Target {
        ctx: Context {
            paths,
            settings,
            yes: ctx.yes,
        },
        cluster,
    })
}

/// `manage migrate --to DIR [--replicas N] [--tenant NAME]...`
pub fn migrate(
    args: &MigrateArgs,
    ctx: &mut Context,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let _lock = begin(ctx, printer)?;
    let target = open_target(ctx, &args.to)?;
    let replicas = u64::from(
        args.replicas
            .unwrap_or_else(|| u8::try_from(target.nodes().min(3)).unwrap_or(1)),
    );
    anyhow::ensure!(
        replicas as usize <= target.nodes(),
        "--replicas {replicas}: the target has {} node(s)",
        target.nodes()
    );
    let plans = preflight(args, ctx, replicas)?;
    printer.status(
        "Checked",
        format!(
            "{} tenant(s), {} stream(s); each stream gets {replicas} replica(s) on {}",
            plans.len(),
            plans.iter().map(|p| p.streams.len()).sum::<usize>(),
            target.ctx.paths.root.display()
        ),
    );
    let tenants_doc = move_tenants(ctx, &plans, &target, printer)?;

    let mut reports = Vec::new();
    for plan in &plans {
        let mut source = JetStream::connect(&source_addrs(ctx)?, &plan.admin, &tls(ctx))
            .with_context(|| format!("tenant `{}` on this deployment", plan.tenant.name))?;
        let mut dest = JetStream::connect(&target.addrs(), &plan.admin, &tls(&target.ctx))
            .with_context(|| format!("tenant `{}` on the target", plan.tenant.name))?;
        // The streams verified on the target: a mirror or sourcing stream copies only from
        // those.
        let mut moved: HashSet<String> = HashSet::new();
        for info in &plan.streams {
            let name = info["config"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let spinner = printer.spinner(format!("Copying {}/{name}…", plan.tenant.name));
            let mut report = StreamReport {
                tenant: plan.tenant.name.to_string(),
                stream: name.clone(),
                replicas,
                ..StreamReport::default()
            };
            let copied = if origins(&info["config"]).is_empty() {
                copy_stream(
                    ctx,
                    &target,
                    &mut source,
                    &mut dest,
                    &plan.tenant.name,
                    &name,
                    replicas,
                    &mut report,
                )
            } else {
                follow_stream(&mut source, &mut dest, &name, replicas, &moved, &mut report)
            };
            spinner.finish_and_clear();
            if copied.is_ok() && report.verified {
                moved.insert(name.clone());
            }
            if let Err(error) = copied {
                report.error = Some(format!("{error:#}"));
            }
            print_stream(printer, &report);
            reports.push(report);
        }
    }
    let failed = reports.iter().filter(|r| !r.verified).count();
    print_summary(printer, &reports, &target);
    printer.json(&json!({
        "ok": failed == 0,
        "code": if failed == 0 { Value::Null } else { json!("verify_failed") },
        "target": target.ctx.paths.root, "replicas": replicas,
        "tenants": tenants_doc,
        "streams": reports.iter().map(StreamReport::to_json).collect::<Vec<_>>(),
    }));
    if failed == 0 {
        return Ok(ExitStatus::Success);
    }
    crate::report_human(&ManageError::VerifyFailed { count: failed }.into());
    Ok(ExitStatus::Failure)
}

/// Read what moves and refuse what cannot fit, before anything is written.
fn preflight(args: &MigrateArgs, ctx: &Context, replicas: u64) -> anyhow::Result<Vec<Plan>> {
    let all = repo::load_all(&ctx.paths)?;
    let chosen: Vec<Tenant> = if args.tenant.is_empty() {
        all
    } else {
        let mut chosen = Vec::new();
        for name in &args.tenant {
            chosen.push(
                all.iter()
                    .find(|t| &t.name == name)
                    .cloned()
                    .ok_or_else(|| ManageError::TenantNotFound {
                        tenant: name.to_string(),
                    })?,
            );
        }
        chosen
    };
    let addrs = source_addrs(ctx)?;
    let mut plans = Vec::new();
    for tenant in chosen {
        let path = ctx.paths.tenant_file(tenant.name.as_str());
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let admin = tenant.name.admin_user();
        let admin_credentials =
            crate::credentials::read(&ctx.paths, tenant.name.as_str(), admin.as_str())?;
        let mut secrets = Vec::new();
        for user in &tenant.users {
            if let Ok(c) =
                crate::credentials::read(&ctx.paths, tenant.name.as_str(), user.name.as_str())
            {
                secrets.push((user.name.to_string(), c.secret));
            }
        }
        let mut js =
            JetStream::connect(&addrs, &admin_credentials, &tls(ctx)).with_context(|| {
                format!(
                    "reading tenant `{}` here (is this deployment's server running? ./manage up)",
                    tenant.name
                )
            })?;
        let mut streams = Vec::new();
        let names = js.stream_names()?;
        for name in &names {
            if let Some(info) = js.stream_info(name)? {
                let refused = match not_copyable(&info["config"])
                    .or_else(|| not_replayable(&info["config"]))
                {
                    Some(feature) => Some(feature.to_owned()),
                    None => not_derivable(&mut js, name, &info["config"], &names)?,
                };
                if let Some(feature) = refused {
                    return Err(ManageError::MigrateUnsupported {
                        what: format!("stream {name} of tenant `{}`", tenant.name),
                        feature,
                    }
                    .into());
                }
                streams.push(info);
            }
        }
        let streams = in_dependency_order(&tenant.name, transforms_first(streams))?;
        // What the streams take on the target: every replica counts against the account.
        let mut need = [0u128; 2];
        for info in &streams {
            let config = &info["config"];
            let bytes = info["state"]["bytes"].as_u64().unwrap_or(0);
            let reserved = config["max_bytes"]
                .as_i64()
                .and_then(|b| u64::try_from(b).ok())
                .unwrap_or(0);
            let slot = usize::from(config["storage"].as_str() != Some("memory"));
            need[slot] += u128::from(bytes.max(reserved)) * u128::from(replicas);
        }
        for (slot, resource, key, limit) in [
            (0, "memory", "memory", tenant.memory),
            (1, "storage", "storage", tenant.storage),
        ] {
            if need[slot] > u128::from(limit.bytes()) {
                return Err(ManageError::OverLimit {
                    resource,
                    setting: format!(
                        "`{key}` of tenant `{}` (its streams' data or max_bytes × {replicas} replicas; raise it, or use --replicas)",
                        tenant.name
                    ),
                    config: path,
                    wanted: u64::try_from(need[slot])
                        .map(|b| Size::from_bytes(b).human())
                        .unwrap_or_else(|_| format!("{}B", need[slot])),
                    allowed: limit.human(),
                }
                .into());
            }
        }
        plans.push(Plan {
            tenant,
            text,
            secrets,
            admin: admin_credentials,
            streams,
        });
    }
    Ok(plans)
}

/// Write the tenants into the target as one change and confirm it on every node.
fn move_tenants(
    ctx: &Context,
    plans: &[Plan],
    target: &Target,
    printer: Printer,
) -> anyhow::Result<Value> {
    let mut tctx = Context {
        paths: target.ctx.paths.clone(),
        settings: target.ctx.settings.clone(),
        yes: target.ctx.yes,
    };
    let _lock = begin(&mut tctx, printer)?;
    let mut change = Change::new(&tctx, "migrate")?;
    let mut doc = Vec::new();
    for plan in plans {
        let name = &plan.tenant.name;
        let path = tctx.paths.tenant_file(name.as_str());
        let before = std::fs::read_to_string(&path).ok();
        // User names are global: none of this tenant's may belong to another tenant there.
        for other in change.tenants().iter().filter(|t| &t.name != name) {
            for user in &plan.tenant.users {
                if other.user(user.name.as_str()).is_some() {
                    return Err(anyhow::Error::from(ManageError::UserTaken {
                        user: user.name.to_string(),
                        owner: other.name.to_string(),
                    })
                    .context(format!(
                        "tenant `{name}` cannot move to {}",
                        tctx.paths.root.display()
                    )));
                }
            }
        }
        // A tenant file there is replaced only when it is what the last migrate wrote: a
        // tenant changed on the target since (or never moved from here) is not overwritten.
        let moved = std::fs::read_to_string(tenant_record(ctx, name)).ok();
        let action = match &before {
            Some(text) if text == &plan.text => "unchanged",
            Some(text) if Some(text) == moved.as_ref() => "updated",
            Some(_) => {
                return Err(ManageError::MigrateConflict {
                    what: format!("tenant `{name}`"),
                    reason: format!(
                        "{} differs from this deployment's and was not written by its last \
                         migrate (changed there since, or another tenant of the same name); \
                         remove it there (./manage --config-dir {} remove-tenant {name}) or \
                         leave it out (--tenant)",
                        tctx.paths.display(&path),
                        tctx.paths.root.display()
                    ),
                }
                .into())
            }
            None => "added",
        };
        if action != "unchanged" {
            change.put_tenant(name, &TenantDoc::parse(&path, &plan.text)?)?;
        }
        let mut users = Vec::new();
        for (user, secret) in &plan.secrets {
            let current = crate::credentials::read(&tctx.paths, name.as_str(), user).ok();
            if current.as_ref().is_none_or(|c| &c.secret != secret) {
                change.put_credentials(name, user, secret)?;
            }
            users.push(user.clone());
        }
        doc.push(json!({ "tenant": name.as_str(), "action": action, "users": users }));
        printer.status(
            match action {
                "added" => "Added",
                "updated" => "Updated",
                _ => "Unchanged",
            },
            format!(
                "tenant `{name}` in the target ({} users)",
                plan.tenant.users.len()
            ),
        );
    }
    // The target's own rule for the sum of its tenants' limits (a cluster's capacity).
    let tenants: Vec<Tenant> = change.tenants().to_vec();
    for plan in plans {
        let others: Vec<Tenant> = tenants
            .iter()
            .filter(|t| t.name != plan.tenant.name)
            .cloned()
            .collect();
        check_limits(&tctx, &others, plan.tenant.memory, plan.tenant.storage)?;
    }
    let applied = change.commit(printer, false)?;
    for plan in plans {
        let record = tenant_record(ctx, &plan.tenant.name);
        crate::fs::ensure_parent(&record)?;
        write_atomic(&record, &plan.text, SECRET_FILE_MODE)?;
    }
    crate::commands::report_reload(&applied, printer);
    let advice = "the target's servers did not all take the tenants (they are saved there); \
                  bring them up (./manage up) and run migrate again";
    match applied.sync.failure() {
        Some((_, crate::commands::Failure::Partial(error))) => return Err(error.context(advice)),
        Some((_, crate::commands::Failure::Server(error))) => {
            return Err(anyhow::anyhow!("{error:#}").context(advice))
        }
        None => {}
    }
    let running = match &applied.sync {
        ServerSync::Single(result) => !matches!(result, Ok(ReloadOutcome::NotRunning)),
        ServerSync::Cluster(nodes) => nodes
            .iter()
            .any(|(n, _)| !matches!(n.result, Ok(ReloadOutcome::NotRunning))),
    };
    if !running {
        return Err(ManageError::ServerUnreachable {
            reason: format!(
                "no server of the target runs; start it (./manage --config-dir {} up) and run migrate again: the tenants are saved there",
                tctx.paths.root.display()
            ),
        }
        .into());
    }
    Ok(json!(doc))
}

/// Headers as the copy publishes them: `Nats-Expected-*` and `Nats-Batch-*` are publish
/// preconditions the source already checked (nats-server drops them too when it sources a
/// stream); everything else stays byte for byte. `None` when nothing is left.
pub fn portable_headers(raw: Option<&[u8]>) -> Option<Vec<u8>> {
    strip_headers(raw, |key| {
        key.starts_with("nats-expected-") || key.starts_with("nats-batch-")
    })
}

/// Headers as a mirror's or a sourcing stream's messages are compared: also without
/// `Nats-Stream-Source`, which names the origin's sequence (the target's numbering differs).
fn derived_headers(raw: Option<&[u8]>) -> Option<Vec<u8>> {
    strip_headers(raw, |key| {
        key.starts_with("nats-expected-")
            || key.starts_with("nats-batch-")
            || key == "nats-stream-source"
    })
}

/// `raw` without the fields whose lower-case key `drop` names; byte for byte when none is.
fn strip_headers(raw: Option<&[u8]>, drop: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    let raw = raw?;
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("NATS/1.0");
    let fields: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let keep: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|line| {
            let key = line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            !drop(&key)
        })
        .collect();
    if keep.len() == fields.len() {
        return Some(raw.to_vec());
    }
    if keep.is_empty() && status.trim() == "NATS/1.0" {
        return None;
    }
    let mut out = format!("{status}\r\n");
    for line in keep {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    Some(out.into_bytes())
}

/// The value of `Nats-Msg-Id`, if any.
fn msg_id(headers: Option<&[u8]>) -> Option<String> {
    header_value(headers, "nats-msg-id")
}

/// The value of the header `key` (any case), if any.
fn header_value(headers: Option<&[u8]>, key: &str) -> Option<String> {
    let text = String::from_utf8_lossy(headers?);
    text.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case(key)
            .then(|| value.trim().to_owned())
    })
}

/// A message as it is compared: subject, portable headers, payload.
fn portable(message: &StoredMessage) -> StoredMessage {
    StoredMessage {
        seq: message.seq,
        subject: message.subject.clone(),
        headers: schedules::portable_output(portable_headers(message.headers.as_deref())),
        payload: message.payload.clone(),
    }
}

/// Feed one message into a stream digest (length-prefixed, so no two messages run together).
fn digest_message(hasher: &mut Sha256, message: &StoredMessage) {
    let headers = message.headers.as_deref().unwrap_or_default();
    for part in [message.subject.as_bytes(), headers, &message.payload] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
}

fn same_content(a: &StoredMessage, b: &StoredMessage) -> bool {
    a.subject == b.subject && a.headers == b.headers && a.payload == b.payload
}

/// The tenant file as the last migrate wrote it to the target.
fn tenant_record(ctx: &Context, tenant: &TenantName) -> PathBuf {
    ctx.paths
        .migrate_dir()
        .join(tenant.as_str())
        .join("tenant.toml")
}

fn progress_path(ctx: &Context, tenant: &TenantName, stream: &str) -> PathBuf {
    ctx.paths
        .migrate_dir()
        .join(tenant.as_str())
        .join(format!("{stream}.json"))
}

fn load_progress(path: &Path) -> Option<Progress> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn save_progress(path: &Path, progress: &Progress) -> anyhow::Result<()> {
    crate::fs::ensure_parent(path)?;
    let text = serde_json::to_string_pretty(progress).context("failed to encode progress")?;
    write_atomic(path, &text, SECRET_FILE_MODE)
}

/// The configuration the target gets in the end: the source's with `replicas`.
fn final_config(source: &Value, replicas: u64) -> Value {
    let mut config = source.clone();
    config["num_replicas"] = json!(replicas);
    config
}

/// The configuration while copying: what would refuse, drop or echo the copied messages is
/// relaxed (sealed, no_ack, republish, a long duplicate window).
fn copy_config(final_config: &Value) -> Value {
    let mut config = final_config.clone();
    config["sealed"] = json!(false);
    config["no_ack"] = json!(false);
    if let Some(map) = config.as_object_mut() {
        map.remove("republish");
    }
    let window = config["duplicate_window"].as_u64().unwrap_or(0);
    let shortest = COPY_DUPLICATE_WINDOW.as_nanos() as u64;
    if window > shortest {
        config["duplicate_window"] = json!(shortest);
    }
    config
}

/// Whether `config` sets `key` to something (not null, false, empty or 0).
fn is_set(config: &Value, key: &str) -> bool {
    match &config[key] {
        Value::Null | Value::Bool(false) => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        Value::String(text) => !text.is_empty(),
        Value::Number(n) => n.as_u64() != Some(0),
        Value::Bool(true) => true,
    }
}

/// A feature of a stream configuration whose messages neither a copy by publishing nor the
/// target's own copy from an origin gets right: schedules that would fire again (see
/// [`schedules::not_copyable`]).
fn not_copyable(config: &Value) -> Option<&'static str> {
    schedules::not_copyable(config)
}

/// The mirror's or the sources' specifications of a stream that copies from others; empty
/// for a stream that takes publishes only.
fn origins(config: &Value) -> Vec<&Value> {
    if is_set(config, "mirror") {
        return vec![&config["mirror"]];
    }
    config["sources"]
        .as_array()
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

/// The names of the streams `config` copies from, sorted.
fn origin_names(config: &Value) -> Vec<String> {
    let mut names: Vec<String> = origins(config)
        .iter()
        .map(|o| o["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

/// Why a mirror or sourcing stream cannot be made again on the target by copying from its
/// moved origins (`None` when it can). `names` are the tenant's streams here.
fn not_derivable(
    js: &mut JetStream,
    name: &str,
    config: &Value,
    names: &[String],
) -> anyhow::Result<Option<String>> {
    if config["retention"].as_str().unwrap_or("limits") != "limits" {
        return Ok(Some(
            "a mirror or sources with interest or work-queue retention (the target would \
             drop what it copies before the consumers exist)"
                .into(),
        ));
    }
    for origin in origins(config) {
        let from = origin["name"].as_str().unwrap_or_default();
        if is_set(origin, "external") || is_set(origin, "domain") {
            return Ok(Some(format!(
                "an origin in another account or domain ({from})"
            )));
        }
        if !names.iter().any(|n| n == from) {
            return Ok(Some(format!(
                "an origin that is not one of its tenant's streams here ({from})"
            )));
        }
        if is_set(origin, "opt_start_seq") || is_set(origin, "opt_start_time") {
            return Ok(Some(format!(
                "a start sequence or time on its origin {from} (sequences and times are the \
                 target's own after the move)"
            )));
        }
    }
    if is_set(config, "sources") {
        // Every message a source copied carries `Nats-Stream-Source`; one without it was
        // published to the stream directly, and the target's copy from the origins would
        // not have it.
        let mut reader = Reader::new(js, name, 0)?;
        while let Some(message) = reader.next(js)? {
            if header_value(message.headers.as_deref(), "nats-stream-source").is_none() {
                return Ok(Some(format!(
                    "sources and messages published to it directly (message {} came from no \
                     source; the target would copy only what its sources hold)",
                    message.seq
                )));
            }
        }
    }
    Ok(None)
}

/// The streams in the order they move: those that take publishes first, then each mirror or
/// sourcing stream after every stream it copies from. Refuses a cycle.
fn in_dependency_order(tenant: &TenantName, streams: Vec<Value>) -> anyhow::Result<Vec<Value>> {
    let (mut ordered, mut waiting): (Vec<Value>, Vec<Value>) = streams
        .into_iter()
        .partition(|info| origins(&info["config"]).is_empty());
    while !waiting.is_empty() {
        let placed: HashSet<String> = ordered
            .iter()
            .filter_map(|i| i["config"]["name"].as_str().map(str::to_owned))
            .collect();
        let (ready, rest): (Vec<Value>, Vec<Value>) = waiting.into_iter().partition(|info| {
            origin_names(&info["config"])
                .iter()
                .all(|o| placed.contains(o))
        });
        if ready.is_empty() {
            return Err(ManageError::MigrateUnsupported {
                what: format!(
                    "stream {} of tenant `{tenant}`",
                    rest[0]["config"]["name"].as_str().unwrap_or("?")
                ),
                feature: "mirrors or sources that copy from each other in a cycle".into(),
            }
            .into());
        }
        ordered.extend(ready);
        waiting = rest;
    }
    Ok(ordered)
}

/// Why a subject transform or counter stream cannot be copied (`None` when it can): both are
/// copied by publishing, which a stream that copies from others does not take.
fn not_replayable(config: &Value) -> Option<&'static str> {
    let copies = !origins(config).is_empty();
    if copies && is_set(config, "subject_transform") {
        return Some(
            "a subject transform on a mirror or sourcing stream (the target would transform \
             what it copies from the origins again)",
        );
    }
    if copies && is_set(config, "allow_msg_counter") {
        return Some(
            "counters that source other streams (their totals mix what they sourced, kept per \
             origin in `Nats-Counter-Sources`, with their own increments, which replaying \
             increments on the target would not reproduce)",
        );
    }
    None
}

/// The streams with a subject transform first: while one is copied it takes the subjects its
/// messages are stored under, which another stream of the tenant may take too once it is
/// moved (in the source that one takes publishes, this one transformed ones).
fn transforms_first(streams: Vec<Value>) -> Vec<Value> {
    let (mut first, rest): (Vec<Value>, Vec<Value>) = streams
        .into_iter()
        .partition(|info| is_set(&info["config"], "subject_transform"));
    first.extend(rest);
    first
}

/// Up to this many distinct stored subjects, a transform stream is copied taking just those
/// (the fewest subjects another stream on the target could also take); beyond, the
/// transform's destination as a wildcard keeps its configuration small.
const CAPTURE_LITERALS: usize = 1024;

/// The configuration a stream with a subject transform is copied under: its messages are
/// stored under the transformed subjects already, and the transform would map them again.
/// So the copy goes to the stream without the transform, taking the subjects its messages
/// are stored under (each of them, or past [`CAPTURE_LITERALS`] the transform's destination
/// as a wildcard where the mapping allows, plus each stored subject outside it); the final
/// configuration gives its own subjects and transform back. Other streams, and a transform
/// stream without messages, copy as they are.
fn capture_config(source: &mut JetStream, name: &str, relaxed: Value) -> anyhow::Result<Value> {
    if !is_set(&relaxed, "subject_transform") {
        return Ok(relaxed);
    }
    let stored = source.stream_subjects(name)?;
    if stored.is_empty() {
        return Ok(relaxed);
    }
    let subjects = capture_subjects(
        relaxed["subject_transform"]["dest"].as_str(),
        stored,
        CAPTURE_LITERALS,
    );
    let mut config = relaxed;
    if let Some(map) = config.as_object_mut() {
        map.remove("subject_transform");
    }
    config["subjects"] = json!(subjects);
    Ok(config)
}

/// The subjects that take every one of `stored`: each of them, or past `literals` of them the
/// wildcard `dest` can produce (where it matches any) plus each stored subject outside it.
fn capture_subjects(dest: Option<&str>, stored: Vec<String>, literals: usize) -> Vec<String> {
    let pattern = dest
        .filter(|_| stored.len() > literals)
        .and_then(destination_pattern)
        .filter(|p| stored.iter().any(|s| subject_matches(p, s)));
    let mut subjects: Vec<String> = pattern.iter().cloned().collect();
    subjects.extend(
        stored
            .into_iter()
            .filter(|s| pattern.as_ref().is_none_or(|p| !subject_matches(p, s))),
    );
    subjects
}

fn subject_matches(pattern: &str, subject: &str) -> bool {
    natsd_conf::subject::matches(pattern.as_bytes(), subject.as_bytes())
}

/// Every subject a transform destination can produce, as one wildcard subject: each token
/// made by a mapping function that yields one token (`{{wildcard(n)}}`, `{{partition(…)}}`,
/// `$n`) becomes `*`. `None` where a function can yield several tokens (the split and slice
/// functions) or the result would start with a wildcard (it would take the JetStream API's
/// subjects too).
fn destination_pattern(dest: &str) -> Option<String> {
    let mut tokens = Vec::new();
    for token in dest.split('.') {
        let lower = token.to_ascii_lowercase();
        let legacy = token.len() > 1
            && token.starts_with('$')
            && token[1..].bytes().all(|b| b.is_ascii_digit());
        if lower.contains("{{") {
            let functions: Vec<&str> = lower
                .split("{{")
                .skip(1)
                .map(|f| f.trim_start().split('(').next().unwrap_or("").trim())
                .collect();
            if !functions
                .iter()
                .all(|f| *f == "wildcard" || *f == "partition")
            {
                return None;
            }
            tokens.push("*");
        } else if legacy {
            tokens.push("*");
        } else {
            tokens.push(token);
        }
    }
    match tokens.first() {
        None | Some(&"*" | &">" | &"") => None,
        Some(_) => Some(tokens.join(".")),
    }
}

/// A copy refused because a stream's capturing subjects overlap another stream's there, told
/// with what to do about it.
fn explain_capture(error: anyhow::Error, relaxed: &Value) -> anyhow::Error {
    // err_code of "subjects overlap with an existing stream".
    const SUBJECTS_OVERLAP: u64 = 10065;
    if api_code(&error) != Some(SUBJECTS_OVERLAP) || is_set(relaxed, "subject_transform") {
        return error;
    }
    error.context(format!(
        "its messages are stored under transformed subjects ({}), which the copy publishes to, \
         and another stream on the target takes them (moved before this stream had messages \
         to copy); delete that stream on the target and run migrate again: it copies both, \
         this one first",
        relaxed["subjects"]
            .as_array()
            .map(|s| s
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    ))
}

/// How one stream's messages are published to the target and compared: as stored here less
/// the publish preconditions ([`portable`]), and for a counter stream with the increment that
/// takes its subject from the total it has on the target (its last message's there, zero
/// without one; on a resumed copy too) to the stored one. A counter keeps the `Nats-Incr` it
/// was published with where that is the increment (its subject's whole history is here);
/// where it is not (earlier messages of the subject are gone) the increment is written
/// instead, and the target holds that. Which of the two a kept message has depends on what was
/// gone when it was copied, so counters are compared by their totals and the rest of their
/// headers, without `Nats-Incr`.
#[derive(Default)]
struct Replay {
    /// For a counter stream: each subject's total on the target once the messages read so
    /// far are published.
    totals: Option<HashMap<String, BigInt>>,
}

/// What a counter subject totals on the target (`None` without a message there).
type TargetTotal<'a> = dyn FnMut(&str) -> anyhow::Result<Option<BigInt>> + 'a;

/// The total `subject` has in `stream` of `js` (`None` without a message).
fn counter_total_of(
    js: &mut JetStream,
    stream: &str,
    subject: &str,
) -> anyhow::Result<Option<BigInt>> {
    js.last_message(stream, subject)?
        .map(|m| {
            counter_total(&m.payload).with_context(|| {
                format!(
                    "message {} ({subject}) of {stream} on the target holds no total",
                    m.seq
                )
            })
        })
        .transpose()
}

impl Replay {
    fn new(config: &Value) -> Self {
        Self {
            totals: is_set(config, "allow_msg_counter").then(HashMap::new),
        }
    }

    /// `message` (stored here, read in order) as the target holds it once published after
    /// the ones before it; `there` tells a subject's total on the target the first time it
    /// comes.
    fn expected(
        &mut self,
        message: &StoredMessage,
        there: &mut TargetTotal<'_>,
    ) -> anyhow::Result<StoredMessage> {
        let mut out = portable(message);
        let Some(totals) = &mut self.totals else {
            return Ok(out);
        };
        let total = counter_total(&message.payload).with_context(|| {
            format!(
                "message {} ({}) of a counter stream holds no total: {}",
                message.seq,
                message.subject,
                String::from_utf8_lossy(&message.payload)
            )
        })?;
        let previous = match totals.get(&message.subject) {
            Some(previous) => previous.clone(),
            None => there(&message.subject)?.unwrap_or_default(),
        };
        totals.insert(message.subject.clone(), total.clone());
        let increment = total - previous;
        let stated = header_value(out.headers.as_deref(), "nats-incr")
            .and_then(|v| v.parse::<BigInt>().ok());
        if stated.as_ref() != Some(&increment) {
            out.headers = Some(set_header(
                out.headers.as_deref(),
                "Nats-Incr",
                &increment.to_string(),
            ));
        }
        Ok(out)
    }

    /// A message (here or there) as the source and target are compared.
    fn compared(&self, message: &StoredMessage) -> StoredMessage {
        let mut out = portable(message);
        if self.totals.is_some() {
            out.headers = strip_headers(out.headers.as_deref(), |key| key == "nats-incr");
        }
        out
    }

    /// What is published for an [`Replay::expected`] message: a counter's total is the
    /// target's to make from the increment.
    fn publishable(&self, message: StoredMessage) -> StoredMessage {
        if self.totals.is_none() {
            return message;
        }
        StoredMessage {
            payload: Vec::new(),
            ..message
        }
    }
}

/// The total a counter message holds (`{"val":"<integer>"}`).
fn counter_total(payload: &[u8]) -> Option<BigInt> {
    #[derive(Deserialize)]
    struct Total {
        val: String,
    }
    serde_json::from_slice::<Total>(payload)
        .ok()?
        .val
        .parse()
        .ok()
}

/// `raw` with the header `key` (any case) set to `value`: in its place where it is, else last.
fn set_header(raw: Option<&[u8]>, key: &str, value: &str) -> Vec<u8> {
    let text = raw.map(String::from_utf8_lossy).unwrap_or_default();
    let mut lines = text.split("\r\n");
    let status = lines.next().filter(|s| !s.is_empty()).unwrap_or("NATS/1.0");
    let mut out = format!("{status}\r\n");
    let mut found = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        if !found && name.eq_ignore_ascii_case(key) {
            out.push_str(&format!("{name}: {value}\r\n"));
            found = true;
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    if !found {
        out.push_str(&format!("{key}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Whether two stream configurations differ in what the copy changes.
fn differs(current: &Value, wanted: &Value) -> bool {
    [
        "sealed",
        "no_ack",
        "duplicate_window",
        "republish",
        "subjects",
        "subject_transform",
    ]
    .iter()
    .any(|key| {
        let normal = |v: &Value| match v {
            Value::Null => Value::Null,
            Value::Bool(false) => Value::Null,
            other => other.clone(),
        };
        normal(&current[key]) != normal(&wanted[key])
    })
}

#[allow(
    clippy::too_many_arguments,
    reason = "one stream's copy needs both ends and its report"
)]
fn copy_stream(
    ctx: &Context,
    target: &Target,
    source: &mut JetStream,
    dest: &mut JetStream,
    tenant: &TenantName,
    name: &str,
    replicas: u64,
    report: &mut StreamReport,
) -> anyhow::Result<()> {
    let info = source
        .stream_info(name)?
        .with_context(|| format!("stream {name} went away here"))?;
    let wanted = final_config(&info["config"], replicas);
    let relaxed = capture_config(source, name, copy_config(&wanted))?;
    let retention = info["config"]["retention"]
        .as_str()
        .unwrap_or("limits")
        .to_owned();
    let record_path = progress_path(ctx, tenant, name);
    let what = format!("stream {tenant}/{name}");
    let mut progress = match dest.stream_info(name)? {
        None => {
            let created = dest
                .create_stream(&relaxed)
                .map_err(|e| explain_capture(e, &relaxed))
                .with_context(|| format!("creating {what} on the target"))?;
            report.action = "created".into();
            let progress = Progress {
                target: target.ctx.paths.root.clone(),
                created: created["created"].as_str().unwrap_or_default().to_owned(),
                source_seq: 0,
                target_seq: created["state"]["last_seq"].as_u64().unwrap_or(0),
                schedules: schedules::ArmedSchedules::default(),
            };
            save_progress(&record_path, &progress)?;
            // Interest and work-queue streams keep only what a consumer still wants: the
            // consumers come first, or the copied messages would have no interest.
            if retention != "limits" {
                let source_seqs = sequences(source, name, 0)?;
                let base = progress.target_seq;
                let targets: Vec<u64> = (1..=source_seqs.len() as u64).map(|i| base + i).collect();
                report.consumers =
                    copy_consumers(source, dest, name, &retention, &source_seqs, &targets)?;
            }
            progress
        }
        Some(existing) => {
            let created = existing["created"].as_str().unwrap_or_default();
            let state = &existing["state"];
            match load_progress(&record_path) {
                Some(p) if p.target == target.ctx.paths.root && p.created == created => {
                    report.action = "resumed".into();
                    p
                }
                _ if state["messages"].as_u64() == Some(0)
                    && state["consumer_count"].as_u64().unwrap_or(0) == 0 =>
                {
                    report.action = "adopted (empty)".into();
                    Progress {
                        target: target.ctx.paths.root.clone(),
                        created: created.to_owned(),
                        source_seq: 0,
                        target_seq: state["last_seq"].as_u64().unwrap_or(0),
                        schedules: schedules::ArmedSchedules::default(),
                    }
                }
                _ => {
                    return Err(ManageError::MigrateConflict {
                        what,
                        reason: "it exists on the target with messages this deployment's \
                                 migrate did not copy (no progress record for it here); delete \
                                 it there to copy it again"
                            .into(),
                    }
                    .into())
                }
            }
        }
    };
    // A stream whose subjects the copy changes takes them only when there is something to
    // copy: a rerun must not collide with the streams moved after it.
    let has_new = info["state"]["last_seq"].as_u64().unwrap_or(0) > progress.source_seq;
    if let Some(existing) = dest.stream_info(name)? {
        if differs(&existing["config"], &relaxed)
            && (has_new || !is_set(&info["config"], "subject_transform"))
        {
            if existing["config"]["sealed"].as_bool() == Some(true) {
                anyhow::ensure!(
                    info["state"]["last_seq"].as_u64().unwrap_or(0) <= progress.source_seq,
                    "{what} is sealed on the target, but has new messages here"
                );
            } else {
                dest.update_stream(&relaxed)
                    .map_err(|e| explain_capture(e, &relaxed))
                    .with_context(|| format!("relaxing {what} for the copy"))?;
            }
        }
    }
    let mut replay = Replay::new(&info["config"]);
    report.copied = copy_messages(
        source,
        dest,
        name,
        &record_path,
        &mut progress,
        &what,
        &mut replay,
    )?;
    // Verify, and learn which target sequence each source message has.
    let ((src_seqs, src_count, src_digest), (dst_seqs, dst_count, dst_digest)) =
        schedules::settled(|| {
            // What schedules produced after they were armed on the target is each server's own.
            let armed = &progress.schedules;
            let here = read_all(source, name, progress.source_seq, &replay, |m| {
                schedules::made_here_after_arming(m, armed)
            })?;
            let there = read_all(dest, name, progress.target_seq, &replay, |m| {
                schedules::made_by_target(m, armed)
            })?;
            let alike = here.1 == there.1 && here.2 == there.2;
            Ok(((here, there), alike || armed.is_empty()))
        })?;
    report.source_messages = src_count;
    report.target_messages = dst_count;
    report.source_digest = src_digest.clone();
    report.target_digest = dst_digest.clone();
    report.verified = src_count == dst_count && src_digest == dst_digest;
    if report.verified {
        // Consumers made before the copy keep their report; the rest are made (or found) now.
        let later = copy_consumers(source, dest, name, &retention, &src_seqs, &dst_seqs)?;
        for consumer in later {
            if !report.consumers.iter().any(|c| c.name == consumer.name) {
                report.consumers.push(consumer);
            }
        }
    } else {
        report.consumers.push(ConsumerReport {
            name: "*".into(),
            action: "not created: the stream does not match its source".into(),
            position: None,
        });
    }
    if let Some(existing) = dest.stream_info(name)? {
        if differs(&existing["config"], &wanted) {
            dest.update_stream(&wanted)
                .with_context(|| format!("restoring the configuration of {what}"))?;
        }
    }
    if !report.verified {
        report.error = Some(format!(
            "{src_count} messages here (digest {src_digest}), {dst_count} on the target (digest {dst_digest})"
        ));
    }
    Ok(())
}

/// A mirror or sourcing stream: created on the target from its configuration after its
/// origins were moved, so that the target copies from them itself; then waited for until its
/// messages match the ones here, and its durable consumers made.
fn follow_stream(
    source: &mut JetStream,
    dest: &mut JetStream,
    name: &str,
    replicas: u64,
    moved: &HashSet<String>,
    report: &mut StreamReport,
) -> anyhow::Result<()> {
    let info = source
        .stream_info(name)?
        .with_context(|| format!("stream {name} went away here"))?;
    let config = &info["config"];
    let from = origin_names(config);
    if let Some(missing) = from.iter().find(|o| !moved.contains(*o)) {
        anyhow::bail!(
            "not created on the target: the stream it copies from, {missing}, was not moved \
             and verified"
        );
    }
    let mirror = is_set(config, "mirror");
    match dest.stream_info(name)? {
        None => {
            dest.create_stream(&final_config(config, replicas))
                .with_context(|| format!("creating {name} on the target"))?;
            report.action = if mirror {
                "created, mirroring"
            } else {
                "created, sourcing"
            }
            .into();
        }
        Some(existing) if origin_names(&existing["config"]) == from => {
            report.action = "exists".into();
        }
        Some(_) => {
            return Err(ManageError::MigrateConflict {
                what: format!("stream {name}"),
                reason: "it exists on the target and does not copy from the same streams; \
                         delete it there to move it again"
                    .into(),
            }
            .into())
        }
    }
    // The target copies on its own: wait while it makes progress, give up after
    // CATCH_UP_IDLE without any.
    let mut seen = Value::Null;
    let mut idle_since = Instant::now();
    let state = |js: &mut JetStream| -> anyhow::Result<Value> {
        Ok(js
            .stream_info(name)?
            .map(|i| i["state"].clone())
            .unwrap_or(Value::Null))
    };
    let (here, there) = loop {
        let src = state(source)?;
        let dst = state(dest)?;
        if src["messages"] == dst["messages"] {
            let here = derived_read(source, name, mirror)?;
            let there = derived_read(dest, name, mirror)?;
            if here.digest == there.digest || idle_since.elapsed() > CATCH_UP_IDLE {
                break (here, there);
            }
        }
        let progress = json!([dst["messages"], dst["last_seq"]]);
        if progress != seen {
            seen = progress;
            idle_since = Instant::now();
        } else if idle_since.elapsed() > CATCH_UP_IDLE {
            break (
                derived_read(source, name, mirror)?,
                derived_read(dest, name, mirror)?,
            );
        }
        std::thread::sleep(CATCH_UP_POLL);
    };
    report.source_messages = here.keys.len() as u64;
    report.target_messages = there.keys.len() as u64;
    report.source_digest = here.digest.clone();
    report.target_digest = there.digest.clone();
    report.verified = here.digest == there.digest;
    if !report.verified {
        report.error = Some(format!(
            "{} messages here, {} on the target after its copy from {} stopped progressing for \
             {}s: the target did not converge (messages the origins no longer hold, or \
             something else writes to it there)",
            report.source_messages,
            report.target_messages,
            from.join(", "),
            CATCH_UP_IDLE.as_secs()
        ));
        report.consumers.push(ConsumerReport {
            name: "*".into(),
            action: "not created: the stream does not match its source".into(),
            position: None,
        });
        return Ok(());
    }
    // Which target sequence holds each message here: the same content, in order of
    // occurrence (sources interleave in the target's own order).
    let mut at: HashMap<[u8; 32], std::collections::VecDeque<u64>> = HashMap::new();
    for (key, seq) in there.keys.iter().zip(&there.seqs) {
        at.entry(*key).or_default().push_back(*seq);
    }
    let mut src_seqs = Vec::new();
    let mut dst_seqs = Vec::new();
    for (key, seq) in here.keys.iter().zip(&here.seqs) {
        if let Some(target) = at
            .get_mut(key)
            .and_then(std::collections::VecDeque::pop_front)
        {
            src_seqs.push(*seq);
            dst_seqs.push(target);
        }
    }
    report.consumers = copy_consumers(source, dest, name, "limits", &src_seqs, &dst_seqs)?;
    Ok(())
}

/// A mirror's or sourcing stream's messages as compared.
struct DerivedRead {
    seqs: Vec<u64>,
    /// SHA-256 of each message's subject, headers (without `Nats-Stream-Source`) and payload.
    keys: Vec<[u8; 32]>,
    /// Over the keys in order for a mirror, sorted for sources (whose interleaving is each
    /// server's own).
    digest: String,
}

fn derived_read(js: &mut JetStream, stream: &str, ordered: bool) -> anyhow::Result<DerivedRead> {
    let mut seqs = Vec::new();
    let mut keys = Vec::new();
    let mut reader = Reader::new(js, stream, 0)?;
    while let Some(message) = reader.next(js)? {
        let mut hasher = Sha256::new();
        digest_message(
            &mut hasher,
            &StoredMessage {
                headers: schedules::portable_output(derived_headers(message.headers.as_deref())),
                ..message.clone()
            },
        );
        seqs.push(message.seq);
        keys.push(hasher.finalize().into());
    }
    let mut sorted = keys.clone();
    if !ordered {
        sorted.sort_unstable();
    }
    let mut hasher = Sha256::new();
    for key in &sorted {
        hasher.update(key);
    }
    Ok(DerivedRead {
        seqs,
        keys,
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
    })
}

/// Every source sequence after `after`, in order.
fn sequences(js: &mut JetStream, stream: &str, after: u64) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    let mut reader = Reader::new(js, stream, after)?;
    while let Some(message) = reader.next(js)? {
        seqs.push(message.seq);
    }
    Ok(seqs)
}

/// Sequences, count and digest of every message up to `up_to` less those `skip` names, each
/// as `replay` compares it.
fn read_all(
    js: &mut JetStream,
    stream: &str,
    up_to: u64,
    replay: &Replay,
    skip: impl Fn(&StoredMessage) -> bool,
) -> anyhow::Result<(Vec<u64>, u64, String)> {
    let mut hasher = Sha256::new();
    let mut seqs = Vec::new();
    let mut reader = Reader::new(js, stream, 0)?;
    while let Some(message) = reader.next(js)? {
        if message.seq > up_to {
            break;
        }
        if skip(&message) {
            continue;
        }
        digest_message(&mut hasher, &replay.compared(&message));
        seqs.push(message.seq);
    }
    let count = seqs.len() as u64;
    Ok((
        seqs,
        count,
        format!("sha256:{}", hex::encode(hasher.finalize())),
    ))
}

/// Copy every source message after `progress.source_seq`; returns how many were published.
fn copy_messages(
    source: &mut JetStream,
    dest: &mut JetStream,
    name: &str,
    record_path: &Path,
    progress: &mut Progress,
    what: &str,
    replay: &mut Replay,
) -> anyhow::Result<u64> {
    // Messages the target holds beyond the record (a run stopped between a batch and its
    // record) must be the next source messages, in order.
    let dest_last = dest
        .stream_info(name)?
        .and_then(|i| i["state"]["last_seq"].as_u64())
        .unwrap_or(0);
    let mut reader = Reader::new(source, name, progress.source_seq)?;
    while progress.target_seq < dest_last {
        let seq = progress.target_seq + 1;
        let there = dest.message(name, seq)?;
        if there
            .as_ref()
            .is_some_and(|m| schedules::made_by_target(m, &progress.schedules))
        {
            progress.target_seq = seq;
            continue;
        }
        let Some(from) =
            schedules::next_to_copy(&mut reader, source, dest, name, &progress.schedules)?
        else {
            break;
        };
        if let Some(there) = there {
            if !same_content(&replay.compared(&from), &replay.compared(&there)) {
                return Err(ManageError::MigrateConflict {
                    what: what.to_owned(),
                    reason: format!(
                        "message {seq} on the target is not message {} here: something else \
                         writes to it; delete it there to copy it again",
                        from.seq
                    ),
                }
                .into());
            }
        }
        progress.source_seq = from.seq;
        progress.target_seq = seq;
        progress.schedules.found(&from, seq);
    }
    progress.schedules.publishing(None);
    save_progress(record_path, progress)?;
    let mut copied = 0;
    let mut recent: HashMap<String, Instant> = HashMap::new();
    loop {
        let mut batch: Vec<StoredMessage> = Vec::new();
        let mut bytes = 0;
        let mut batch_ids: HashSet<String> = HashSet::new();
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            let Some(message) =
                schedules::next_to_copy(&mut reader, source, dest, name, &progress.schedules)?
            else {
                break;
            };
            // A Msg-Id the target saw less than its (copy) window ago, or that this batch
            // has, would be dropped as a duplicate: publish what is batched, then wait the
            // window out.
            if let Some(id) = msg_id(message.headers.as_deref()) {
                if batch_ids.contains(&id) || (recent.contains_key(&id) && !batch.is_empty()) {
                    reader.unread(message);
                    break;
                }
                if let Some(wait) = recent
                    .get(&id)
                    .and_then(|at| MSG_ID_SPACING.checked_sub(at.elapsed()))
                {
                    std::thread::sleep(wait);
                }
                batch_ids.insert(id);
            }
            let expected = replay.expected(&message, &mut |s| counter_total_of(dest, name, s))?;
            let message = replay.publishable(expected);
            bytes += message.payload.len() + message.headers.as_ref().map_or(0, Vec::len);
            batch.push(message);
        }
        if batch.is_empty() {
            break;
        }
        let armed_after = schedules::before_arming(source, name, &mut batch)?;
        let source_seqs: Vec<u64> = batch.iter().map(|m| m.seq).collect();
        if batch.is_empty() {
            continue;
        }
        if armed_after.is_some() {
            progress.schedules.publishing(armed_after);
            save_progress(record_path, progress)?;
        }
        let acks = dest.publish_all(&batch)?;
        // Test hook: a run killed after the target took a batch, before its record.
        crate::journal::failpoint("migrate-batch-published");
        let now = Instant::now();
        for ((message, ack), source_seq) in batch.iter().zip(&acks).zip(&source_seqs) {
            if let Some(error) = ack.get("error").filter(|e| !e.is_null()) {
                save_progress(record_path, progress)?;
                anyhow::bail!(
                    "{what}: the target refused message {source_seq}: {}",
                    error["description"].as_str().unwrap_or("unknown error")
                );
            }
            // A schedule armed there may have fired since.
            if let Some(seq) = ack["seq"].as_u64() {
                if schedules::own_products(
                    dest,
                    name,
                    progress.target_seq + 1,
                    seq.saturating_sub(1),
                    &progress.schedules,
                )? {
                    progress.target_seq = seq - 1;
                }
            }
            let expected = progress.target_seq + 1;
            if ack["stream"].as_str() != Some(name)
                || ack["seq"].as_u64() != Some(expected)
                || ack["duplicate"].as_bool() == Some(true)
            {
                save_progress(record_path, progress)?;
                return Err(ManageError::MigrateConflict {
                    what: what.to_owned(),
                    reason: format!(
                        "message {source_seq} was acknowledged as {ack} where sequence {expected} \
                         of {name} was expected: another stream takes its subject there, or \
                         something else writes to it"
                    ),
                }
                .into());
            }
            progress.source_seq = *source_seq;
            progress.target_seq = expected;
            progress.schedules.stored(message, armed_after, expected);
            copied += 1;
            if let Some(id) = msg_id(message.headers.as_deref()) {
                recent.insert(id, now);
            }
        }
        recent.retain(|_, at| at.elapsed() < MSG_ID_SPACING);
        progress.schedules.publishing(None);
        save_progress(record_path, progress)?;
    }
    Ok(copied)
}

/// Create the durable consumers of `stream` on the target, positioned after what each has
/// acknowledged here: `source_seqs[i]` is at `target_seqs[i]` there.
fn copy_consumers(
    source: &mut JetStream,
    dest: &mut JetStream,
    stream: &str,
    retention: &str,
    source_seqs: &[u64],
    target_seqs: &[u64],
) -> anyhow::Result<Vec<ConsumerReport>> {
    let mut reports = Vec::new();
    for info in source.consumers(stream)? {
        let config = &info["config"];
        let Some(durable) = config["durable_name"]
            .as_str()
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
        else {
            reports.push(ConsumerReport {
                name: info["name"].as_str().unwrap_or("?").to_owned(),
                action: "skipped: ephemeral consumers are not moved".into(),
                position: None,
            });
            continue;
        };
        if dest.consumer_info(stream, &durable)?.is_some() {
            reports.push(ConsumerReport {
                name: durable,
                action: "exists".into(),
                position: None,
            });
            continue;
        }
        let mut wanted = config.clone();
        wanted["name"] = json!(durable);
        // Replicas follow the stream's (interest and work-queue streams require it).
        wanted["num_replicas"] = json!(0);
        let floor = info["ack_floor"]["stream_seq"].as_u64().unwrap_or(0);
        let first_here = source_seqs.first().copied().unwrap_or(u64::MAX);
        let policy = config["deliver_policy"].as_str().unwrap_or("all");
        let position = if retention == "workqueue" || (policy == "all" && floor < first_here) {
            // Everything that is left is still to be delivered to it.
            None
        } else {
            // The lowest target sequence of a message above the floor (sources interleave
            // in the target's own order, so that need not be the first one's).
            let start = source_seqs
                .iter()
                .zip(target_seqs)
                .filter(|(s, _)| **s > floor)
                .map(|(_, t)| *t)
                .min()
                .unwrap_or_else(|| target_seqs.iter().max().map_or(1, |last| last + 1));
            if let Some(map) = wanted.as_object_mut() {
                map.remove("opt_start_time");
            }
            wanted["deliver_policy"] = json!("by_start_sequence");
            wanted["opt_start_seq"] = json!(start);
            Some(format!(
                "from target sequence {start} (acknowledged up to {floor} here)"
            ))
        };
        dest.create_consumer(stream, &wanted)
            .with_context(|| format!("creating consumer {durable} of {stream} on the target"))?;
        reports.push(ConsumerReport {
            name: durable,
            action: "created".into(),
            position,
        });
    }
    Ok(reports)
}

fn print_stream(printer: Printer, report: &StreamReport) {
    let mark = if report.verified {
        style::ok().apply_to("✓").to_string()
    } else {
        style::error().apply_to("✗").to_string()
    };
    let consumers = if report.consumers.is_empty() {
        String::new()
    } else {
        format!(
            ", consumers: {}",
            report
                .consumers
                .iter()
                .map(|c| format!("{} {}", c.name, c.action))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    printer.status(
        "Copied",
        format!(
            "{mark} {}/{} ({}, R{}): {} new, {} → {} messages{consumers}",
            report.tenant,
            report.stream,
            if report.action.is_empty() {
                "-"
            } else {
                &report.action
            },
            report.replicas,
            report.copied,
            report.source_messages,
            report.target_messages,
        ),
    );
    if let Some(error) = &report.error {
        printer.warn(format!("{}/{}: {error}", report.tenant, report.stream));
    }
}

fn print_summary(printer: Printer, reports: &[StreamReport], target: &Target) {
    let mut rows = vec![vec![
        "Tenant".to_owned(),
        "Stream".to_owned(),
        "R".to_owned(),
        "Copied".to_owned(),
        "Messages".to_owned(),
        "Digest".to_owned(),
        "Consumers".to_owned(),
    ]];
    for r in reports {
        rows.push(vec![
            r.tenant.clone(),
            r.stream.clone(),
            r.replicas.to_string(),
            r.copied.to_string(),
            format!("{} → {}", r.source_messages, r.target_messages),
            if r.verified {
                format!(
                    "✓ {}",
                    r.target_digest
                        .trim_start_matches("sha256:")
                        .get(..12)
                        .unwrap_or("")
                )
            } else {
                "✗ differs".into()
            },
            r.consumers
                .iter()
                .filter(|c| c.action == "created" || c.action == "exists")
                .count()
                .to_string(),
        ]);
    }
    let mut body = crate::printer::table(&rows);
    body.push(String::new());
    let ok = reports.iter().filter(|r| r.verified).count();
    body.push(format!(
        "  {ok}/{} streams verified (counts and SHA-256 of subjects, headers, payloads)",
        reports.len()
    ));
    body.push(format!(
        "  Target: {} ({})",
        target.ctx.paths.root.display(),
        target
            .cluster
            .as_ref()
            .map_or("one server".to_owned(), |c| format!(
                "cluster `{}`, {} nodes",
                c.name,
                c.nodes.len()
            ))
    ));
    printer.boxed("Migration", &body);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn publish_preconditions_are_dropped_and_the_rest_kept_byte_for_byte() {
        let raw = b"NATS/1.0\r\nA: 1\r\nNats-Expected-Last-Subject-Sequence: 0\r\nb:  two \r\n\r\n";
        assert_eq!(
            portable_headers(Some(raw)).unwrap(),
            b"NATS/1.0\r\nA: 1\r\nb:  two \r\n\r\n"
        );
        let untouched = b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n";
        assert_eq!(portable_headers(Some(untouched)).unwrap(), untouched);
        assert_eq!(
            portable_headers(Some(b"NATS/1.0\r\nNats-Batch-Id: x\r\n\r\n")),
            None
        );
        assert_eq!(portable_headers(None), None);
    }

    #[test]
    fn msg_ids_are_found_in_any_case() {
        assert_eq!(
            msg_id(Some(b"NATS/1.0\r\nnats-msg-id: abc\r\n\r\n")).as_deref(),
            Some("abc")
        );
        assert_eq!(msg_id(Some(b"NATS/1.0\r\nX: 1\r\n\r\n")), None);
    }

    #[test]
    fn streams_a_copy_would_get_wrong_are_named() {
        let plain =
            json!({"name": "S", "sources": [], "mirror": null, "allow_msg_schedules": false});
        assert_eq!(not_copyable(&plain), None);
        // Schedules where a fired one is kept (and would fire again there) are refused.
        assert!(not_copyable(&json!({"allow_msg_schedules": true})).is_some());
        let schedules = json!({"allow_msg_schedules": true, "allow_rollup_hdrs": true});
        assert_eq!(not_copyable(&schedules), None);
        // Transforms and counters are copied by publishing, which a mirror or sourcing
        // stream does not take.
        let transform = json!({"subject_transform": {"src": "in.>", "dest": "x.>"}});
        let counter = json!({"allow_msg_counter": true, "sources": []});
        for config in [&transform, &counter] {
            assert_eq!(not_copyable(config), None, "{config}");
            assert_eq!(not_replayable(config), None, "{config}");
        }
        let sourcing_counter = json!({"allow_msg_counter": true, "sources": [{"name": "C"}]});
        assert!(not_replayable(&sourcing_counter)
            .unwrap()
            .contains("Nats-Counter-Sources"));
        let sourcing_transform = json!({"subject_transform": {"src": ">", "dest": "x.>"},
            "sources": [{"name": "C"}]});
        assert!(not_replayable(&sourcing_transform).is_some());
        // Mirrors and sources are made on the target from their configuration instead.
        let mirror = json!({"mirror": {"name": "O"}, "sources": []});
        assert_eq!(not_copyable(&mirror), None);
        assert_eq!(origin_names(&mirror), ["O"]);
        let sourcing = json!({"mirror": null, "sources": [{"name": "B"}, {"name": "A"}]});
        assert_eq!(origin_names(&sourcing), ["A", "B"]);
        assert!(origins(&plain).is_empty());
    }

    #[test]
    fn mirrors_and_sources_move_after_their_origins_and_cycles_are_refused() {
        let stream = |name: &str, config: Value| {
            let mut config = config;
            config["name"] = json!(name);
            json!({ "config": config })
        };
        let tenant = TenantName::new("t").unwrap();
        let streams = vec![
            stream("MM", json!({"mirror": {"name": "M"}})),
            stream("M", json!({"mirror": {"name": "O"}})),
            stream("S", json!({"sources": [{"name": "O"}, {"name": "M"}]})),
            stream("O", json!({})),
        ];
        let order: Vec<String> = in_dependency_order(&tenant, streams)
            .unwrap()
            .iter()
            .map(|i| i["config"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(order, ["O", "M", "MM", "S"]);
        let cycle = vec![
            stream("A", json!({"mirror": {"name": "B"}})),
            stream("B", json!({"sources": [{"name": "A"}]})),
        ];
        assert!(in_dependency_order(&tenant, cycle).is_err());
    }

    #[test]
    fn the_origin_header_is_left_out_of_a_derived_comparison() {
        let raw = b"NATS/1.0\r\nA: 1\r\nNats-Stream-Source: O 7 > >\r\n\r\n";
        assert_eq!(
            derived_headers(Some(raw)).unwrap(),
            b"NATS/1.0\r\nA: 1\r\n\r\n"
        );
        assert_eq!(
            header_value(Some(raw), "nats-stream-source").as_deref(),
            Some("O 7 > >")
        );
    }

    #[test]
    fn a_transform_destination_becomes_the_wildcard_it_can_produce() {
        assert_eq!(destination_pattern("x.>").as_deref(), Some("x.>"));
        assert_eq!(
            destination_pattern("x.{{wildcard(1)}}.y.{{ Partition(3,1) }}").as_deref(),
            Some("x.*.y.*")
        );
        assert_eq!(destination_pattern("x.$2.a$1").as_deref(), Some("x.*.a$1"));
        assert_eq!(destination_pattern("x.{{split(1,-)}}"), None);
        assert_eq!(destination_pattern("{{wildcard(1)}}.x"), None);
        assert_eq!(destination_pattern(">"), None);
        // Few stored subjects are taken one by one; many by the wildcard, plus those
        // outside it (a subject the transform's source did not match is stored as published).
        let stored = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let dest = Some("t.{{wildcard(1)}}");
        let few = stored(&["raw.x", "t.a", "t.b"]);
        assert_eq!(capture_subjects(dest, few.clone(), 3), few);
        assert_eq!(
            capture_subjects(dest, few.clone(), 2),
            ["t.*", "raw.x"],
            "past the limit"
        );
        assert_eq!(
            capture_subjects(Some("t.{{split(1,-)}}"), few.clone(), 2),
            few
        );
        assert_eq!(
            capture_subjects(Some("u.*"), few.clone(), 2),
            few,
            "matches none"
        );
    }

    #[test]
    fn counters_replay_as_increments_between_stored_totals() {
        let counter = |seq: u64, subject: &str, incr: &str, total: &str| StoredMessage {
            seq,
            subject: subject.into(),
            headers: Some(format!("NATS/1.0\r\nNats-Incr: {incr}\r\nX: 1\r\n\r\n").into_bytes()),
            payload: format!("{{\"val\":\"{total}\"}}").into_bytes(),
        };
        let mut replay = Replay::new(&json!({"allow_msg_counter": true}));
        let mut none = |_: &str| Ok(None);
        let big = "123456789012345678901234567890";
        // The whole history here: every stated increment is the step, kept byte for byte.
        for m in [
            counter(1, "c.a", "+5", "5"),
            counter(2, "c.a", "-7", "-2"),
            counter(3, "c.b", big, big),
        ] {
            assert_eq!(replay.expected(&m, &mut none).unwrap(), m);
            let published = replay.publishable(m.clone());
            assert!(published.payload.is_empty());
            assert_eq!(published.headers, m.headers);
        }
        // Message 4 is gone: 5's step is from message 2's total, in the header's place.
        let five = counter(5, "c.a", "1", "10");
        assert_eq!(
            replay.expected(&five, &mut none).unwrap().headers.unwrap(),
            b"NATS/1.0\r\nNats-Incr: 12\r\nX: 1\r\n\r\n"
        );
        // A resumed copy: the step of a subject is from the total the target has.
        let mut resumed = Replay::new(&json!({"allow_msg_counter": true}));
        let mut asked = Vec::new();
        let mut there = |s: &str| {
            asked.push(s.to_owned());
            Ok(Some(BigInt::from(7)))
        };
        let six = counter(6, "c.a", "1", "10");
        let seven = counter(7, "c.a", "+1", "11");
        let stepped = resumed.expected(&six, &mut there).unwrap();
        assert_eq!(
            stepped.headers.unwrap(),
            b"NATS/1.0\r\nNats-Incr: 3\r\nX: 1\r\n\r\n"
        );
        assert_eq!(resumed.expected(&seven, &mut there).unwrap(), seven);
        assert_eq!(asked, ["c.a"], "asked once per subject");
        let broken = StoredMessage {
            payload: b"x".to_vec(),
            ..five.clone()
        };
        assert!(replay.expected(&broken, &mut none).is_err());
        // Counters are compared without the increment the target may hold in its place.
        assert_eq!(
            replay.compared(&five).headers.unwrap(),
            b"NATS/1.0\r\nX: 1\r\n\r\n"
        );
        // Other streams are compared and published as they are.
        let mut plain = Replay::default();
        let m = counter(1, "c.a", "1", "1");
        let expected = plain.expected(&m, &mut none).unwrap();
        assert_eq!(plain.publishable(expected), m);
        assert_eq!(plain.compared(&m), m);
        assert_eq!(
            set_header(None, "Nats-Incr", "3"),
            b"NATS/1.0\r\nNats-Incr: 3\r\n\r\n"
        );
    }

    #[test]
    fn copy_config_relaxes_and_final_restores() {
        let source = json!({
            "name": "S", "sealed": true, "no_ack": true, "duplicate_window": 120_000_000_000u64,
            "num_replicas": 1, "republish": {"src": ">", "dest": "x.>"},
        });
        let wanted = final_config(&source, 3);
        let relaxed = copy_config(&wanted);
        assert_eq!(relaxed["sealed"], false);
        assert_eq!(relaxed["no_ack"], false);
        assert_eq!(relaxed["duplicate_window"], 100_000_000u64);
        assert!(relaxed.get("republish").is_none());
        assert_eq!(relaxed["num_replicas"], 3);
        assert!(differs(&relaxed, &wanted));
        assert!(!differs(&wanted, &wanted));
    }
}
