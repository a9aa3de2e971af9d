//! `manage rotate <tenant> [user]`: a new password; the reload makes the old one fail.

use serde_json::json;

use crate::cli::TenantUserArgs;
use crate::commands::{
    apply, credentials_box, generate_password, hash_password, init, lock, report_reload, url_for,
    write_credentials, ExitStatus,
};
use crate::error::ManageError;
use crate::printer::Printer;
use crate::tenant::repo;
use crate::Context;

/// Replace a user's password (default: the tenant's admin user).
pub fn rotate(
    args: &TenantUserArgs,
    ctx: &mut Context,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    init::ensure(ctx)?;
    let user = args
        .user
        .clone()
        .unwrap_or_else(|| args.tenant.admin_user());
    let tenant = repo::load(&ctx.paths, &args.tenant)?;
    if tenant.user(user.as_str()).is_none() {
        return Err(ManageError::UserNotFound {
            tenant: args.tenant.to_string(),
            user: user.to_string(),
        }
        .into());
    }
    let password = generate_password();
    let hash = hash_password(&password, printer)?;
    let _lock = lock(ctx)?;
    let path = ctx.paths.tenant_file(args.tenant.as_str());
    let mut doc = repo::load_doc(&ctx.paths, &args.tenant)?;
    doc.set_password_hash(&path, &user, &hash)?;
    repo::save_doc(&ctx.paths, &args.tenant, &doc)?;
    let file = write_credentials(ctx, &tenant, user.as_str(), &password)?;
    let applied = apply(ctx, printer, false)?;
    printer.status(
        "Rotated",
        format!("password of `{user}` in tenant `{}`", args.tenant),
    );
    report_reload(&applied, printer);
    let url = url_for(ctx, user.as_str(), &password);
    credentials_box(printer, user.as_str(), &password, &url, &file, &[]);
    printer.json(&json!({
        "ok": true, "tenant": args.tenant.as_str(), "user": user.as_str(), "password": password,
        "url": url, "credentials_file": file, "apply": applied.to_json(),
    }));
    Ok(ExitStatus::Success)
}
