//! `manage add-tenant <name> [memory] [storage]`

use serde_json::json;

use crate::cli::AddTenantArgs;
use crate::commands::{
    apply, check_limits, credentials_box, generate_password, hash_password, init, lock,
    report_reload, url_for, write_credentials_for, ExitStatus,
};
use crate::error::ManageError;
use crate::fs::remove_if_exists;
use crate::printer::Printer;
use crate::tenant::{repo, Permissions, TenantDoc};
use crate::Context;

/// Create the tenant file with its admin user, its credentials, and reload.
pub fn tenant_add(
    args: &AddTenantArgs,
    ctx: &mut Context,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    init::ensure(ctx)?;
    let tenant = &args.name;
    let admin = tenant.admin_user();
    let path = ctx.paths.tenant_file(tenant.as_str());
    if path.exists() {
        return Err(ManageError::TenantExists {
            tenant: tenant.to_string(),
        }
        .into());
    }
    // Hash before taking the lock so concurrent runs only serialise the file work.
    let password = generate_password();
    let hash = hash_password(&password, printer)?;
    let _lock = lock(ctx)?;
    let tenants = repo::load_all(&ctx.paths)?;
    if path.exists() {
        return Err(ManageError::TenantExists {
            tenant: tenant.to_string(),
        }
        .into());
    }
    repo::ensure_user_free(&tenants, &admin)?;
    check_limits(ctx, &tenants, args.memory, args.storage)?;

    let created = chrono_now();
    let mut doc = TenantDoc::new(tenant, args.memory, args.storage, &created);
    doc.add_user(&path, &admin, &hash, &Permissions::default())?;
    repo::save_doc(&ctx.paths, tenant, &doc)?;
    let account = tenant.account();
    let written = write_credentials_for(ctx, tenant.as_str(), &account, admin.as_str(), &password)
        .and_then(|file| apply(ctx, printer, false).map(|applied| (file, applied)));
    let (file, applied) = match written {
        Ok(done) => done,
        Err(error) => {
            remove_if_exists(&path)?;
            remove_if_exists(&ctx.paths.credentials_file(tenant.as_str(), admin.as_str()))?;
            return Err(error);
        }
    };
    printer.status(
        "Created",
        format!(
            "tenant `{tenant}` (account {account}, JetStream memory {}, storage {})",
            args.memory, args.storage
        ),
    );
    report_reload(&applied, printer);
    let url = url_for(ctx, admin.as_str(), &password);
    credentials_box(printer, admin.as_str(), &password, &url, &file, &[]);
    printer.json(&json!({
        "ok": true, "tenant": tenant.as_str(), "account": account, "user": admin.as_str(),
        "password": password, "url": url, "credentials_file": file,
        "memory": args.memory.to_string(), "storage": args.storage.to_string(),
        "memory_bytes": args.memory.bytes(), "storage_bytes": args.storage.bytes(),
        "apply": applied.to_json(),
    }));
    Ok(ExitStatus::Success)
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
