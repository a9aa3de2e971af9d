//! `manage remove-user` and `manage remove-tenant`. Both confirm on a terminal unless
//! `--yes`; without a terminal (scripts) they proceed. Asking to remove what is already gone
//! still brings the server to the tenant files first, so a removal that was interrupted after
//! its files were written is completed by running it again.

use std::io::IsTerminal as _;

use serde_json::json;

use crate::cli::{RemoveUserArgs, TenantArgs};
use crate::commands::{apply, begin, Change, ExitStatus};
use crate::error::ManageError;
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

/// `error`, after bringing the running server to the tenant files (so the user or tenant that
/// is gone from the files is gone from the server too).
fn gone(ctx: &Context, printer: Printer, error: ManageError) -> anyhow::Result<ExitStatus> {
    if let Err(sync_error) = apply(ctx, printer, false).and_then(|a| a.sync.into_result()) {
        printer.warn(format!("{sync_error:#}"));
    }
    Err(error.into())
}

/// Remove one user (not the admin user) and its credentials file.
pub fn user_remove(
    args: &RemoveUserArgs,
    ctx: &mut Context,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
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
    let _lock = begin(ctx, printer)?;
    let mut change = Change::new(ctx, "remove-user")?.undone_unless_reloaded();
    let tenant = repo::load(&ctx.paths, &args.tenant)?;
    if tenant.user(args.user.as_str()).is_none() {
        return gone(
            ctx,
            printer,
            ManageError::UserNotFound {
                tenant: args.tenant.to_string(),
                user: args.user.to_string(),
            },
        );
    }
    let path = ctx.paths.tenant_file(args.tenant.as_str());
    let mut doc = repo::load_doc(&ctx.paths, &args.tenant)?;
    doc.remove_user(&path, &args.user)?;
    change.put_tenant(&args.tenant, &doc)?;
    let removed = change.remove_credentials(args.tenant.as_str(), args.user.as_str())?;
    let applied = change.commit(printer, false)?;
    printer.status(
        "Removed",
        format!("user `{}` from tenant `{}`", args.user, args.tenant),
    );
    Ok(applied.finish(
        printer,
        json!({
            "tenant": args.tenant.as_str(), "user": args.user.as_str(),
            "credentials_removed": removed,
        }),
    ))
}

/// Remove a tenant, all its users and their credentials files.
pub fn tenant_remove(
    args: &TenantArgs,
    ctx: &mut Context,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let users = repo::load(&ctx.paths, &args.tenant).map_or(0, |t| t.users.len());
    let question = format!(
        "Remove tenant `{}` (account {}) and its {users} user(s)? Their connections will be closed.",
        args.tenant,
        args.tenant.account(),
    );
    if !confirm(ctx, printer, &question)? {
        return Ok(aborted(printer));
    }
    let _lock = begin(ctx, printer)?;
    let mut change = Change::new(ctx, "remove-tenant")?.undone_unless_reloaded();
    let Some(tenant) = change
        .tenants()
        .iter()
        .find(|t| t.name == args.tenant)
        .cloned()
    else {
        return gone(
            ctx,
            printer,
            ManageError::TenantNotFound {
                tenant: args.tenant.to_string(),
            },
        );
    };
    change.remove_tenant(&args.tenant)?;
    let mut removed = Vec::new();
    for user in &tenant.users {
        removed.extend(change.remove_credentials(args.tenant.as_str(), user.name.as_str())?);
    }
    let applied = change.commit(printer, false)?;
    printer.status(
        "Removed",
        format!(
            "tenant `{}` and {} user(s)",
            args.tenant,
            tenant.users.len()
        ),
    );
    let users: Vec<&str> = tenant.users.iter().map(|u| u.name.as_str()).collect();
    Ok(applied.finish(
        printer,
        json!({ "tenant": args.tenant.as_str(), "users": users, "credentials_removed": removed }),
    ))
}
