//! `manage check [--fix]`: what an operator runs after a crash or a hand edit. It checks that
//! the tenant files parse, every user has exactly one credentials file (an NKEY user also its
//! seed file, both holding the seed of the key in the tenant file) and every credentials
//! file belongs to a user, auth.conf is what the tenant files render, the running server runs
//! the files' configuration (by digest), file modes, and leftovers (temp files, the journal of
//! an interrupted command, a stale pid file). `--fix` repairs what can be repaired; what is
//! left makes the exit status 1.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::cli::CheckArgs;
use crate::cluster::{nodes, Cluster};
use crate::commands::{apply, ExitStatus};
use crate::error::ManageError;
use crate::fs::{
    fix_mode, mode_of, remove_if_exists, DeploymentLock, AUTH_CONF_MODE, SECRET_DIR_MODE,
    SECRET_FILE_MODE,
};
use crate::names::TenantName;
use crate::printer::{style, Printer};
use crate::render::env_file;
use crate::server::{self, Process};
use crate::settings::credentials_owner;
use crate::tenant::{model::parse_tenant, Tenant};
use crate::Context;

/// What `--fix` does about a problem.
#[derive(Debug, Clone)]
enum Fix {
    /// Nothing it can do; the message says what to do.
    None,
    /// Give the file this mode.
    Mode(PathBuf, u32),
    /// Delete the file.
    Remove(PathBuf),
    /// Roll back the interrupted command.
    RollBack,
    /// Move credentials to the names they now have.
    Migrate,
    /// Re-render auth.conf and bring the server to it.
    Apply,
    /// Write an NKEY user's seed file from its credentials file (whose seed is the tenant
    /// file's key).
    SeedFile(PathBuf, String),
}

struct Problem {
    check: &'static str,
    message: String,
    fix: Fix,
    fixed: bool,
}

fn problem(check: &'static str, message: String, fix: Fix) -> Problem {
    Problem {
        check,
        message,
        fix,
        fixed: false,
    }
}

/// Every tenant file, parsed separately so each broken one is reported.
fn tenant_files(ctx: &Context, problems: &mut Vec<Problem>) -> Vec<Tenant> {
    let dir = ctx.paths.tenants_dir();
    let mut tenants = Vec::new();
    let Ok(entries) = fs::read_dir(&dir) else {
        return tenants;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    for path in paths {
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = TenantName::new(&stem)
            .map_err(|e| {
                format!(
                    "{}: the file name is not a tenant name: {e}",
                    path.display()
                )
            })
            .and_then(|name| {
                let text =
                    fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                parse_tenant(&path, &name, &text).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(tenant) => tenants.push(tenant),
            Err(message) => problems.push(problem("tenant files", message, Fix::None)),
        }
        if mode_of(&path).is_some_and(|m| m != SECRET_FILE_MODE) {
            problems.push(mode_problem(ctx, &path, SECRET_FILE_MODE));
        }
    }
    tenants
}

fn mode_problem(ctx: &Context, path: &Path, mode: u32) -> Problem {
    problem(
        "file modes",
        format!(
            "{} is {:o}, should be {mode:o}",
            ctx.paths.display(path),
            mode_of(path).unwrap_or(0)
        ),
        Fix::Mode(path.to_path_buf(), mode),
    )
}

fn credentials(ctx: &Context, tenants: &[Tenant], problems: &mut Vec<Problem>) {
    let paths = &ctx.paths;
    let mut expected: Vec<PathBuf> = Vec::new();
    for tenant in tenants {
        for entry in &tenant.users {
            let (name, user) = (tenant.name.as_str(), entry.name.as_str());
            let path = paths.credentials_file(name, user);
            let legacy = paths.legacy_credentials_file(name, user);
            expected.push(path.clone());
            if entry.is_passwordless() {
                expected.push(paths.seed_file(name, user));
            }
            match env_file::read(&path) {
                Ok(Some(found)) if found.user == user => {
                    seed_files(ctx, tenant, entry, &found, problems);
                }
                Ok(Some(found)) => problems.push(problem(
                    "credentials",
                    format!(
                        "{} holds the credentials of `{}`, not of `{user}`",
                        paths.display(&path),
                        found.user
                    ),
                    Fix::None,
                )),
                Ok(None) if path.exists() => problems.push(problem(
                    "credentials",
                    format!(
                        "{} is incomplete; run ./manage rotate {name} {user}",
                        paths.display(&path)
                    ),
                    Fix::None,
                )),
                Ok(None) => {
                    let in_legacy = legacy != path
                        && env_file::read(&legacy)
                            .ok()
                            .flatten()
                            .is_some_and(|c| c.user == user);
                    if in_legacy {
                        expected.push(legacy.clone());
                        problems.push(problem(
                            "credentials",
                            format!(
                                "the credentials of `{user}` are under the old name {}",
                                paths.display(&legacy)
                            ),
                            Fix::Migrate,
                        ));
                    } else {
                        problems.push(problem(
                            "credentials",
                            format!(
                                "user `{user}` of tenant `{name}` has no credentials file; run ./manage rotate {name} {user}"
                            ),
                            Fix::None,
                        ));
                    }
                }
                Err(e) => problems.push(problem("credentials", format!("{e:#}"), Fix::None)),
            }
        }
    }
    let Ok(entries) = fs::read_dir(paths.credentials_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            continue; // reported with the other temp files
        }
        let Some(stem) = name
            .strip_suffix(".env")
            .or_else(|| name.strip_suffix(".nk"))
        else {
            if name == "sys.bcrypt" && mode_of(&path).is_some_and(|m| m != SECRET_FILE_MODE) {
                problems.push(mode_problem(ctx, &path, SECRET_FILE_MODE));
            }
            continue;
        };
        if mode_of(&path).is_some_and(|m| m != SECRET_FILE_MODE) {
            problems.push(mode_problem(ctx, &path, SECRET_FILE_MODE));
        }
        if expected.contains(&path) {
            continue;
        }
        let exists = |t: &str, u: &str| {
            tenants
                .iter()
                .any(|tenant| tenant.name.as_str() == t && tenant.user(u).is_some())
        };
        let owner = credentials_owner(stem)
            .map(|(t, u)| {
                if exists(&t, &u) {
                    format!(" (a seed file, but `{u}` of tenant `{t}` logs in with a password)")
                } else {
                    format!(" (named for user `{u}` of tenant `{t}`, which does not exist)")
                }
            })
            .unwrap_or_default();
        problems.push(problem(
            "credentials",
            format!("{} belongs to no user{owner}", paths.display(&path)),
            Fix::Remove(path),
        ));
    }
}

/// A user's credentials against its tenant file: the kind of secret, an NKEY user's seed
/// (its public key must be the one auth.conf has) and its seed file (the same seed).
fn seed_files(
    ctx: &Context,
    tenant: &Tenant,
    user: &crate::tenant::User,
    found: &env_file::Credentials,
    problems: &mut Vec<Problem>,
) {
    let paths = &ctx.paths;
    let (name, user_name) = (tenant.name.as_str(), user.name.as_str());
    let path = paths.credentials_file(name, user_name);
    if let Some(mismatch) = crate::credentials::mismatch(user, found) {
        problems.push(problem(
            "credentials",
            format!(
                "{}: {mismatch}; run ./manage rotate {name} {user_name}",
                paths.display(&path)
            ),
            Fix::None,
        ));
        return;
    }
    let Some(seed) = found.secret.seed() else {
        return;
    };
    let seed_path = paths.seed_file(name, user_name);
    let message = match env_file::read_seed_file(&seed_path) {
        Ok(Some(in_file)) if in_file == seed.trim() => return,
        Ok(Some(_)) => format!(
            "{} holds another seed than {}",
            paths.display(&seed_path),
            paths.display(&path)
        ),
        Ok(None) => format!(
            "NKEY user `{user_name}` of tenant `{name}` has no seed file {}",
            paths.display(&seed_path)
        ),
        Err(e) => format!("{e:#}"),
    };
    problems.push(problem(
        "credentials",
        format!("{message}; --fix writes it from the credentials file"),
        Fix::SeedFile(seed_path, env_file::render_seed_file(seed)),
    ));
}

fn modes(ctx: &Context, problems: &mut Vec<Problem>) {
    let paths = &ctx.paths;
    for (path, mode) in [
        (paths.env_file(), SECRET_FILE_MODE),
        (paths.auth_conf(), AUTH_CONF_MODE),
        (paths.credentials_dir(), SECRET_DIR_MODE),
    ] {
        if mode_of(&path).is_some_and(|m| m != mode) {
            problems.push(mode_problem(ctx, &path, mode));
        }
    }
}

fn leftovers(ctx: &Context, problems: &mut Vec<Problem>) {
    let paths = &ctx.paths;
    for path in crate::commands::leftover_temp_files(paths) {
        problems.push(problem(
            "leftovers",
            format!(
                "{} is a temp file an interrupted write left",
                paths.display(&path)
            ),
            Fix::Remove(path),
        ));
    }
    if paths.journal_file().exists() {
        problems.push(problem(
            "leftovers",
            format!(
                "{}: a command was interrupted before it finished; its changes are rolled back",
                paths.display(&paths.journal_file())
            ),
            Fix::RollBack,
        ));
    }
    match server::local_process(&ctx.settings, paths) {
        Process::Stale { pid, reason } => problems.push(problem(
            "server",
            format!(
                "{} names pid {pid}: {reason}",
                paths.display(&paths.pid_file())
            ),
            Fix::Remove(paths.pid_file()),
        )),
        Process::Unverified { pid, reason } => problems.push(problem(
            "server",
            format!(
                "pid {pid} in {} cannot be verified: {reason}",
                paths.display(&paths.pid_file())
            ),
            Fix::None,
        )),
        Process::Ours { .. } | Process::None => {}
    }
}

/// auth.conf against the tenant files, and the server against auth.conf.
fn generated(ctx: &Context, tenants: &[Tenant], problems: &mut Vec<Problem>) {
    let Ok(text) = fs::read_to_string(ctx.paths.sys_hash_file()) else {
        problems.push(problem(
            "auth.conf",
            "the system user's hash is not cached yet".into(),
            Fix::Apply,
        ));
        return;
    };
    let hash = text
        .trim()
        .split_once(' ')
        .map(|(_, h)| h.to_owned())
        .unwrap_or_default();
    let want = crate::render::auth_conf::render(tenants, &hash);
    if fs::read_to_string(ctx.paths.auth_conf()).ok().as_deref() != Some(want.as_str()) {
        problems.push(problem(
            "auth.conf",
            format!(
                "{} is not what the tenant files render",
                ctx.paths.display(&ctx.paths.auth_conf())
            ),
            Fix::Apply,
        ));
        return;
    }
    match Cluster::load(&ctx.paths) {
        Ok(Some(cluster)) => return nodes_generated(ctx, &cluster, problems),
        Ok(None) => {}
        Err(e) => {
            problems.push(problem("cluster", format!("{e:#}"), Fix::None));
            return;
        }
    }
    let expected = match server::load_config(&ctx.settings, &ctx.paths) {
        Ok(loaded) => loaded.digest,
        Err(e) => {
            problems.push(problem("configuration", e.to_string(), Fix::None));
            return;
        }
    };
    if let Ok(mut sys) = server::SysClient::connect(&ctx.settings, &ctx.paths) {
        runs_files(&mut sys, "the running server", &expected, problems);
    }
}

/// The server behind `sys` runs the configuration whose digest is `expected`.
fn runs_files(sys: &mut server::SysClient, who: &str, expected: &str, problems: &mut Vec<Problem>) {
    match sys.varz() {
        Ok(varz) if varz["config_digest"] == expected => {}
        Ok(varz) => problems.push(problem(
            "server",
            format!(
                "{who} runs configuration {}, its files' is {expected}",
                varz["config_digest"]
            ),
            Fix::Apply,
        )),
        Err(e) => problems.push(problem("server", format!("{who}: {e:#}"), Fix::None)),
    }
}

/// A cluster: every node's configuration is what config/cluster.toml renders, and every node
/// that runs runs it; a node that does not run while others do missed every change since.
fn nodes_generated(ctx: &Context, cluster: &Cluster, problems: &mut Vec<Problem>) {
    let paths = &ctx.paths;
    let Some(password) = ctx.settings.cluster_password.as_deref() else {
        problems.push(problem(
            "cluster",
            "NATS_CLUSTER_PASSWORD is not set in .env; ./manage up creates it".into(),
            Fix::None,
        ));
        return;
    };
    let mut rendered = true;
    for (path, _, current) in cluster.node_confs(paths, password) {
        if !current {
            rendered = false;
            problems.push(problem(
                "cluster",
                format!(
                    "{} is not what config/cluster.toml renders",
                    paths.display(&path)
                ),
                Fix::Apply,
            ));
        } else if mode_of(&path).is_some_and(|m| m != AUTH_CONF_MODE) {
            problems.push(mode_problem(ctx, &path, AUTH_CONF_MODE));
        }
    }
    for path in cluster.stale_node_confs(paths) {
        problems.push(problem(
            "cluster",
            format!(
                "{} belongs to no node of config/cluster.toml",
                paths.display(&path)
            ),
            Fix::Apply,
        ));
    }
    if !rendered {
        return;
    }
    let mut down = Vec::new();
    let mut up = 0;
    for node in &cluster.nodes {
        let expected = match nodes::expected_digest(&ctx.settings, paths, node) {
            Ok(digest) => digest,
            Err(e) => {
                problems.push(problem("configuration", format!("{e:#}"), Fix::None));
                continue;
            }
        };
        match server::SysClient::connect_to(&ctx.settings, paths, &node.client_addr()) {
            Ok(mut sys) => {
                up += 1;
                runs_files(
                    &mut sys,
                    &format!("node {}", node.name),
                    &expected,
                    problems,
                );
            }
            Err(server::SysUnavailable::NotListening) => down.push(node.name.clone()),
            Err(server::SysUnavailable::Refused(reason)) => problems.push(problem(
                "server",
                format!("node {}: {reason}", node.name),
                Fix::Apply,
            )),
        }
        if let Process::Stale { pid, reason } = nodes::process(&ctx.settings, paths, node) {
            problems.push(problem(
                "leftovers",
                format!(
                    "{} names pid {pid}: {reason}",
                    paths.display(&paths.node_pid_file(&node.name))
                ),
                Fix::Remove(paths.node_pid_file(&node.name)),
            ));
        }
    }
    // A stopped cluster is not a problem; a node down while others run misses every change.
    if up > 0 {
        for name in down {
            problems.push(problem(
                "server",
                format!(
                    "node {name} does not answer while the others run; start it (./manage up, \
                     or ./manage up --node {name} on its host), then ./manage check --fix"
                ),
                Fix::None,
            ));
        }
    }
}

fn repair(ctx: &mut Context, printer: Printer, problems: &mut [Problem]) {
    let fixes: Vec<Fix> = problems.iter().map(|p| p.fix.clone()).collect();
    let mut results = Vec::with_capacity(fixes.len());
    // Roll back and move files first, remove strays, fix modes, then render and reload once.
    let mut applied: Option<bool> = None;
    for fix in &fixes {
        let done = match fix {
            Fix::None => false,
            Fix::RollBack => crate::journal::recover(&ctx.paths).is_ok(),
            Fix::Migrate => crate::tenant::repo::load_all(&ctx.paths)
                .and_then(|t| crate::credentials::migrate(&ctx.paths, &t))
                .is_ok(),
            Fix::Remove(path) => remove_if_exists(path).is_ok(),
            Fix::Mode(path, mode) => fix_mode(path, *mode).is_ok(),
            Fix::SeedFile(path, text) => {
                crate::fs::write_atomic(path, text, SECRET_FILE_MODE).is_ok()
            }
            Fix::Apply => *applied.get_or_insert_with(|| match apply(ctx, printer, false) {
                Ok(a) => match a.sync.into_result() {
                    Ok(()) => true,
                    Err(e) => {
                        printer.warn(format!("{e:#}"));
                        false
                    }
                },
                Err(e) => {
                    printer.warn(format!("{e:#}"));
                    false
                }
            }),
        };
        results.push(done);
    }
    for (p, done) in problems.iter_mut().zip(results) {
        p.fixed = done;
    }
}

/// `manage check [--fix]`
pub fn check(args: &CheckArgs, ctx: &mut Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    let _lock = DeploymentLock::acquire(&ctx.paths.lock_file())?;
    let mut problems = Vec::new();
    leftovers(ctx, &mut problems);
    let tenants = tenant_files(ctx, &mut problems);
    credentials(ctx, &tenants, &mut problems);
    modes(ctx, &mut problems);
    if !problems.iter().any(|p| p.check == "tenant files") {
        generated(ctx, &tenants, &mut problems);
    }
    if args.fix {
        repair(ctx, printer, &mut problems);
    }
    let left = problems.iter().filter(|p| !p.fixed).count();
    let mut body = Vec::new();
    for p in &problems {
        let mark = if p.fixed {
            style::ok().apply_to("fixed")
        } else {
            style::error().apply_to("✗")
        };
        body.push(format!("  {mark} {}: {}", p.check, p.message));
    }
    if problems.is_empty() {
        body.push(format!(
            "  {} everything is consistent",
            style::ok().apply_to("✓")
        ));
    }
    printer.boxed("Deployment check", &body);
    let list: Vec<Value> = problems
        .iter()
        .map(|p| {
            json!({
                "check": p.check, "message": p.message,
                "fixable": !matches!(p.fix, Fix::None), "fixed": p.fixed,
            })
        })
        .collect();
    printer.json(&json!({
        "ok": left == 0, "code": if left == 0 { Value::Null } else { json!("check_failed") },
        "problems": list, "fixed": problems.len() - left, "remaining": left,
    }));
    if left == 0 {
        return Ok(ExitStatus::Success);
    }
    crate::report_human(&ManageError::CheckFailed { count: left }.into());
    Ok(ExitStatus::Failure)
}
