//! `manage add-tenant <name> [memory] [storage] [--auth password|nkey]`

use serde_json::json;

use crate::cli::AddTenantArgs;
use crate::commands::{
    begin, check_limits, credentials_box, new_secret, secret_json, url_for, Change, ExitStatus,
};
use crate::error::ManageError;
use crate::printer::Printer;
use crate::tenant::{repo, Permissions, TenantDoc};
use crate::Context;

/// Create the tenant file with its admin user and its credentials, and reload.
pub fn tenant_add(
    args: &AddTenantArgs,
    ctx: &mut Context,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let tenant = &args.name;
    let admin = tenant.admin_user();
    let path = ctx.paths.tenant_file(tenant.as_str());
    let exists = || -> anyhow::Result<()> {
        if path.exists() {
            return Err(ManageError::TenantExists {
                tenant: tenant.to_string(),
            }
            .into());
        }
        Ok(())
    };
    exists()?;
    // Hash before taking the lock so concurrent runs only serialise the file work.
    let (secret, auth) = new_secret(args.auth, printer)?;
    let _lock = begin(ctx, printer)?;
    let mut change = Change::new(ctx, "add-tenant")?.undone_unless_reloaded();
    exists()?;
    repo::ensure_user_free(change.tenants(), &admin)?;
    check_limits(ctx, change.tenants(), args.memory, args.storage)?;

    let mut doc = TenantDoc::new(tenant, args.memory, args.storage, &chrono_now());
    doc.add_user(&path, &admin, &auth, &Permissions::default())?;
    change.put_tenant(tenant, &doc)?;
    let written = change.put_credentials(tenant, admin.as_str(), &secret)?;
    let applied = change.commit(printer, false)?;
    let account = tenant.account();
    printer.status(
        "Created",
        format!(
            "tenant `{tenant}` (account {account}, JetStream memory {}, storage {})",
            args.memory, args.storage
        ),
    );
    let url = url_for(ctx, admin.as_str(), &secret);
    credentials_box(printer, admin.as_str(), &secret, &url, &written, &[]);
    let mut doc = json!({
        "tenant": tenant.as_str(), "account": account, "user": admin.as_str(),
        "url": url, "credentials_file": written.file,
        "memory": args.memory.to_string(), "storage": args.storage.to_string(),
        "memory_bytes": args.memory.bytes(), "storage_bytes": args.storage.bytes(),
    });
    secret_json(&mut doc, &secret, written.seed_file.as_deref());
    Ok(applied.finish(printer, doc))
}

/// Seconds since the epoch as RFC 3339 UTC, without a date crate.
pub(crate) fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}
