//! `manage show <tenant> [user]`: connection details from the credentials file.

use serde_json::json;

use crate::cli::TenantUserArgs;
use crate::commands::{credentials_box, secret_json, ExitStatus, Written};
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
    let seed_path = ctx.paths.seed_file(args.tenant.as_str(), user.as_str());
    let written = Written {
        file: ctx.paths.display(&path),
        seed_file: (credentials.secret.seed().is_some() && seed_path.exists())
            .then(|| ctx.paths.display(&seed_path)),
    };
    // What the server checks the login against, and whether these credentials pass it.
    if let Some(problem) = crate::credentials::mismatch(entry, &credentials) {
        printer.warn(format!(
            "{}: {problem}; run ./manage rotate {} {user}",
            written.file, args.tenant
        ));
    }
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
        &credentials.secret,
        &credentials.url,
        &written,
        &extra,
    );
    let mut doc = json!({
        "ok": true, "tenant": args.tenant.as_str(), "account": args.tenant.account(), "user": credentials.user,
        "url": credentials.url, "credentials_file": written.file,
        "access": entry.permissions.summary(), "passwordless": entry.is_passwordless(),
    });
    secret_json(&mut doc, &credentials.secret, written.seed_file.as_deref());
    printer.json(&doc);
    Ok(ExitStatus::Success)
}
