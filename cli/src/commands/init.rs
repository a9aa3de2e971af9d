//! `manage init`: first-time setup of a deployment. Idempotent; never replaces a secret.

use std::fs;

use anyhow::Context as _;
use serde_json::json;

use crate::cli::InitArgs;
use crate::commands::{apply, begin, cluster_up, ExitStatus};
use crate::fs::{
    ensure_dir, fix_mode, write_atomic, AUTH_CONF_MODE, PUBLIC_FILE_MODE, SECRET_DIR_MODE,
    SECRET_FILE_MODE,
};
use crate::printer::Printer;
use crate::render::NATS_CONF_TEMPLATE;
use crate::Context;

/// `.env.example`, the starting point of `.env`.
const ENV_TEMPLATE: &str = include_str!("../../../.env.example");

/// Keeps everything in `.credentials/` out of git, including if the root .gitignore is lost.
const CREDENTIALS_GITIGNORE: &str = "# Generated credentials: never commit.\n*\n";

/// Create what is missing and narrow what is too open; returns the paths created, for
/// reporting. Call with the deployment lock held ([`begin`] does).
pub fn ensure(ctx: &mut Context, printer: Printer) -> anyhow::Result<Vec<String>> {
    let paths = ctx.paths.clone();
    let mut created = Vec::new();
    for dir in [paths.config_dir(), paths.tenants_dir(), paths.data_dir()] {
        if !dir.is_dir() {
            fs::create_dir_all(&dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            created.push(paths.display(&dir));
        }
    }
    let credentials = paths.credentials_dir();
    if !credentials.is_dir() {
        created.push(paths.display(&credentials));
    }
    ensure_dir(&credentials, SECRET_DIR_MODE)?;
    let ignore = credentials.join(".gitignore");
    if !ignore.exists() {
        write_atomic(&ignore, CREDENTIALS_GITIGNORE, PUBLIC_FILE_MODE)?;
    }
    let nats_conf = paths.nats_conf();
    if !nats_conf.exists() {
        write_atomic(&nats_conf, NATS_CONF_TEMPLATE, PUBLIC_FILE_MODE)?;
        created.push(paths.display(&nats_conf));
    }
    let env_path = paths.env_file();
    let existing = match fs::read_to_string(&env_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", env_path.display())),
    };
    // .env holds the system password: nobody but its owner reads it.
    if existing.is_some() && fix_mode(&env_path, SECRET_FILE_MODE)? {
        printer.warn(format!(
            "{} was readable by others; it holds NATS_SYS_PASSWORD, so it is now 0600",
            paths.display(&env_path)
        ));
    }
    // Credentials, hashes and tenant files too, whoever wrote them.
    let mut narrowed = Vec::new();
    for (dir, ext, mode) in [
        (paths.credentials_dir(), "env", SECRET_FILE_MODE),
        (paths.credentials_dir(), "bcrypt", SECRET_FILE_MODE),
        (paths.tenants_dir(), "toml", SECRET_FILE_MODE),
    ] {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == ext) && fix_mode(&path, mode)? {
                narrowed.push(paths.display(&path));
            }
        }
    }
    if fix_mode(&paths.auth_conf(), AUTH_CONF_MODE)? {
        narrowed.push(paths.display(&paths.auth_conf()));
    }
    if !narrowed.is_empty() {
        printer.warn(format!(
            "narrowed the modes of files readable by others: {}",
            narrowed.join(", ")
        ));
    }
    let has_secret = existing
        .as_deref()
        .map(crate::settings::parse_env)
        .and_then(|vars| vars.get("NATS_SYS_PASSWORD").cloned())
        .is_some_and(|v| !v.is_empty());
    if !has_secret {
        let password = crate::commands::generate_password();
        let text = match existing {
            Some(text) => {
                let kept: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("NATS_SYS_PASSWORD="))
                    .collect();
                format!(
                    "{}\nNATS_SYS_PASSWORD={password}\n",
                    kept.join("\n").trim_end()
                )
            }
            None => fresh_env(ctx, &password),
        };
        write_atomic(&env_path, &text, SECRET_FILE_MODE)?;
        created.push(format!("{} (NATS_SYS_PASSWORD)", paths.display(&env_path)));
        ctx.reload_settings()?;
    }
    if paths.cluster_file().exists() && ensure_secret(ctx, "NATS_CLUSTER_PASSWORD")? {
        created.push(format!(
            "{} (NATS_CLUSTER_PASSWORD)",
            paths.display(&env_path)
        ));
    }
    Ok(created)
}

/// Add a generated `key` to `.env` unless it has one (or the environment sets it); returns
/// whether it was added. Call with the deployment lock held.
pub fn ensure_secret(ctx: &mut Context, key: &str) -> anyhow::Result<bool> {
    if ctx.settings.vars.get(key).is_some_and(|v| !v.is_empty()) {
        return Ok(false);
    }
    let env_path = ctx.paths.env_file();
    let existing = match fs::read_to_string(&env_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", env_path.display())),
    };
    let kept: Vec<&str> = existing
        .lines()
        .filter(|l| !l.trim_start().starts_with(&format!("{key}=")))
        .collect();
    let text = format!(
        "{}\n{key}={}\n",
        kept.join("\n").trim_end(),
        crate::commands::generate_password()
    );
    write_atomic(&env_path, text.trim_start(), SECRET_FILE_MODE)?;
    ctx.reload_settings()?;
    Ok(true)
}

/// `.env` from the example, with the effective name and ports so a deployment started
/// with NATS_PORT=... in the environment keeps them, and the group docker compose runs the
/// server in (the group of this directory, so the container can read auth.conf).
fn fresh_env(ctx: &Context, password: &str) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let s = &ctx.settings;
    let gid = fs::metadata(&ctx.paths.root)
        .map(|m| m.gid().to_string())
        .unwrap_or_else(|_| "0".into());
    let values = [
        ("NATS_SERVER_NAME", s.server_name.clone()),
        ("NATS_HOST", s.host.clone()),
        ("NATS_PORT", s.port.to_string()),
        ("NATS_HTTP_PORT", s.http_port.to_string()),
        ("NATS_SYS_PASSWORD", password.to_owned()),
        ("NATS_GID", gid),
    ];
    let mut out = String::new();
    for line in ENV_TEMPLATE.lines() {
        let replaced = values
            .iter()
            .find(|(key, _)| line.starts_with(&format!("{key}=")))
            .map(|(key, value)| format!("{key}={value}"));
        out.push_str(&replaced.unwrap_or_else(|| line.to_owned()));
        out.push('\n');
    }
    out
}

/// `manage init [--nodes N]`
pub fn init(args: &InitArgs, ctx: &mut Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    let _lock = begin(ctx, printer)?;
    let applied = match args.nodes {
        None => apply(ctx, printer, false)?,
        Some(nodes) => {
            let (cluster, new) = cluster_up::describe(ctx, Some(usize::from(nodes)))?;
            ensure_secret(ctx, "NATS_CLUSTER_PASSWORD")?;
            cluster_up::write_cluster(ctx, printer, &cluster, new, "init")?
        }
    };
    if applied.changed {
        printer.status("Generated", ctx.paths.display(&ctx.paths.auth_conf()));
    } else {
        printer.status("Ready", format!("{} is set up", ctx.paths.root.display()));
    }
    Ok(applied.finish(printer, json!({})))
}
