//! `manage remove-user` and `manage remove-tenant`. Both confirm on a terminal unless
//! `--yes`; without a terminal (scripts) they proceed.

use std::io::IsTerminal as _;

use serde_json::json;

use crate::cli::{RemoveUserArgs, TenantArgs};
use crate::commands::{apply, init, lock, report_reload, ExitStatus};
use crate::error::ManageError;
use crate::fs::remove_if_exists;
use crate::printer::Printer;
use crate::tenant::repo;
use crate::Context;

/// Ask on a terminal; `true` when confirmed, when `--yes` is given, or without a terminal.
fn confirm(ctx: &Context, printer: Printer, question: &str) -> anyhow::Result<bool> {
    if ctx.yes
        || printer.is_json()
        || !std::io::stdin().is_terminal()
        || !std::io::stderr().is_terminal()
    {
        return Ok(true);
    }
    Ok(dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()?)
}

fn aborted(printer: Printer) -> ExitStatus {
    printer.status("Aborted", "nothing was changed");
    ExitStatus::Failure
}

/// Remove one user (not the admin user) and its credentials file.
pub fn user_remove(
    args: &RemoveUserArgs,
    ctx: &mut Context,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    init::ensure(ctx)?;
    let tenant = repo::load(&ctx.paths, &args.tenant)?;
    if tenant.user(args.user.as_str()).is_none() {
        return Err(ManageError::UserNotFound {
            tenant: args.tenant.to_string(),
            user: args.user.to_string(),
        }
        .into());
    }
    if args.user == args.tenant.admin_user() {
        return Err(ManageError::AdminUser {
            tenant: args.tenant.to_string(),
            user: args.user.to_string(),
        }
        .into());
    }
    let question = format!(
        "Remove user `{}` from tenant `{}`? Its connections will be closed.",
        args.user, args.tenant
    );
    if !confirm(ctx, printer, &question)? {
        return Ok(aborted(printer));
    }
    let _lock = lock(ctx)?;
    let path = ctx.paths.tenant_file(args.tenant.as_str());
    let mut doc = repo::load_doc(&ctx.paths, &args.tenant)?;
    doc.remove_user(&path, &args.user)?;
    repo::save_doc(&ctx.paths, &args.tenant, &doc)?;
    let credentials = ctx
        .paths
        .credentials_file(args.tenant.as_str(), args.user.as_str());
    remove_if_exists(&credentials)?;
    let applied = apply(ctx, printer, false)?;
    printer.status(
        "Removed",
        format!("user `{}` from tenant `{}`", args.user, args.tenant),
    );
    report_reload(&applied, printer);
    printer.json(&json!({
        "ok": true, "tenant": args.tenant.as_str(), "user": args.user.as_str(),
        "credentials_removed": ctx.paths.display(&credentials), "apply": applied.to_json(),
    }));
    Ok(ExitStatus::Success)
}

/// Remove a tenant, all its users and their credentials files.
pub fn tenant_remove(
    args: &TenantArgs,
    ctx: &mut Context,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    init::ensure(ctx)?;
    let tenant = repo::load(&ctx.paths, &args.tenant)?;
    let question = format!(
        "Remove tenant `{}` (account {}) and its {} user(s)? Their connections will be closed.",
        args.tenant,
        args.tenant.account(),
        tenant.users.len()
    );
    if !confirm(ctx, printer, &question)? {
        return Ok(aborted(printer));
    }
    let _lock = lock(ctx)?;
    let tenant = repo::load(&ctx.paths, &args.tenant)?;
    remove_if_exists(&ctx.paths.tenant_file(args.tenant.as_str()))?;
    let mut removed = Vec::new();
    for user in &tenant.users {
        let path = ctx
            .paths
            .credentials_file(args.tenant.as_str(), user.name.as_str());
        if remove_if_exists(&path)? {
            removed.push(ctx.paths.display(&path));
        }
    }
    let applied = apply(ctx, printer, false)?;
    printer.status(
        "Removed",
        format!(
            "tenant `{}` and {} user(s)",
            args.tenant,
            tenant.users.len()
        ),
    );
    report_reload(&applied, printer);
    let users: Vec<&str> = tenant.users.iter().map(|u| u.name.as_str()).collect();
    printer.json(&json!({
        "ok": true, "tenant": args.tenant.as_str(), "users": users, "credentials_removed": removed,
        "apply": applied.to_json(),
    }));
    Ok(ExitStatus::Success)
}
