//! `manage rotate <tenant> [user] [--auth password|nkey]`: a new password, or a new NKEY key
//! pair; the reload makes the old one fail.

use serde_json::json;

use crate::cli::RotateArgs;
use crate::commands::{
    begin, credentials_box, new_secret, secret_json, url_for, Change, ExitStatus,
};
use crate::error::ManageError;
use crate::printer::Printer;
use crate::tenant::repo;
use crate::Context;

/// Replace a user's password or key pair (default: the tenant's admin user, the kind it has).
pub fn rotate(
    args: &RotateArgs,
    ctx: &mut Context,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let tenant = &args.who.tenant;
    let user = args.who.user_name();
    let not_found = || ManageError::UserNotFound {
        tenant: tenant.to_string(),
        user: user.to_string(),
    };
    let Some(kind) = repo::load(&ctx.paths, tenant)?
        .user(user.as_str())
        .map(|u| args.auth.unwrap_or_else(|| u.auth.kind()))
    else {
        return Err(not_found().into());
    };
    let (secret, auth) = new_secret(kind, printer)?;
    let _lock = begin(ctx, printer)?;
    let mut change = Change::new(ctx, "rotate")?.undone_unless_reloaded();
    let path = ctx.paths.tenant_file(tenant.as_str());
    let mut doc = repo::load_doc(&ctx.paths, tenant)?;
    let before = change
        .tenants()
        .iter()
        .find(|t| &t.name == tenant)
        .and_then(|t| t.user(user.as_str()))
        .map(|u| u.auth.kind());
    if doc.set_auth(&path, &user, &auth)? == crate::tenant::Edit::Unchanged {
        return Err(not_found().into());
    }
    change.put_tenant(tenant, &doc)?;
    let written = change.put_credentials(tenant, user.as_str(), &secret)?;
    let applied = change.commit(printer, false)?;
    let what = match (before, kind) {
        (Some(before), kind) if before != kind => format!("`{user}` from {before} to {kind}"),
        (_, crate::tenant::AuthKind::Nkey) => format!("NKEY key pair of `{user}`"),
        (_, crate::tenant::AuthKind::Password) => format!("password of `{user}`"),
    };
    printer.status("Rotated", format!("{what} in tenant `{tenant}`"));
    let url = url_for(ctx, user.as_str(), &secret);
    credentials_box(printer, user.as_str(), &secret, &url, &written, &[]);
    let mut doc = json!({
        "tenant": tenant.as_str(), "user": user.as_str(), "url": url,
        "credentials_file": written.file,
        "previous_auth": before.map(|k| k.as_str()),
    });
    secret_json(&mut doc, &secret, written.seed_file.as_deref());
    Ok(applied.finish(printer, doc))
}
