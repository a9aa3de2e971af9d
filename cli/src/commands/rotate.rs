//! `manage rotate <tenant> [user]`: a new password; the reload makes the old one fail.

use serde_json::json;

use crate::cli::TenantUserArgs;
use crate::commands::{
    begin, credentials_box, generate_password, hash_password, url_for, Change, ExitStatus,
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
    let user = args.user_name();
    let not_found = || ManageError::UserNotFound {
        tenant: args.tenant.to_string(),
        user: user.to_string(),
    };
    if repo::load(&ctx.paths, &args.tenant)?
        .user(user.as_str())
        .is_none()
    {
        return Err(not_found().into());
    }
    let password = generate_password();
    let hash = hash_password(&password, printer)?;
    let _lock = begin(ctx, printer)?;
    let mut change = Change::new(ctx, "rotate")?.undone_unless_reloaded();
    let path = ctx.paths.tenant_file(args.tenant.as_str());
    let mut doc = repo::load_doc(&ctx.paths, &args.tenant)?;
    if doc.set_password_hash(&path, &user, &hash)? == crate::tenant::Edit::Unchanged {
        return Err(not_found().into());
    }
    change.put_tenant(&args.tenant, &doc)?;
    let file = change.put_credentials(&args.tenant, user.as_str(), &password)?;
    let applied = change.commit(printer, false)?;
    printer.status(
        "Rotated",
        format!("password of `{user}` in tenant `{}`", args.tenant),
    );
    let url = url_for(ctx, user.as_str(), &password);
    credentials_box(printer, user.as_str(), &password, &url, &file, &[]);
    Ok(applied.finish(
        printer,
        json!({
            "tenant": args.tenant.as_str(), "user": user.as_str(), "password": password,
            "url": url, "credentials_file": file,
        }),
    ))
}
