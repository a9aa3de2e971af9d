//! `manage show <tenant> [user]`: connection details from the credentials file.

use serde_json::json;

use crate::cli::TenantUserArgs;
use crate::commands::{credentials_box, ExitStatus};
use crate::printer::Printer;
use crate::tenant::repo;
use crate::Context;

/// Print the stored connection details of a user (default: the tenant's admin).
pub fn show(args: &TenantUserArgs, ctx: &Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    let tenant = repo::load(&ctx.paths, &args.tenant)?;
    let user = args.user_name();
    let entry = tenant.existing_user(user.as_str())?;
    let path = ctx
        .paths
        .credentials_file(args.tenant.as_str(), user.as_str());
    let credentials = crate::credentials::read(&ctx.paths, args.tenant.as_str(), user.as_str())?;
    let file = ctx.paths.display(&path);
    let extra = vec![
        format!(
            "  Tenant:   {} (account {})",
            args.tenant,
            args.tenant.account()
        ),
        format!("  Access:   {}", entry.permissions.summary()),
    ];
    credentials_box(
        printer,
        &credentials.user,
        &credentials.password,
        &credentials.url,
        &file,
        &extra,
    );
    printer.json(&json!({
        "ok": true, "tenant": args.tenant.as_str(), "account": args.tenant.account(), "user": credentials.user,
        "password": credentials.password, "url": credentials.url, "credentials_file": file,
        "access": entry.permissions.summary(),
    }));
    Ok(ExitStatus::Success)
}
