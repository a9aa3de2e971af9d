//! `manage reload`: regenerate auth.conf, validate it, reload and confirm.

use serde_json::json;

use crate::commands::{apply, init, lock, ExitStatus};
use crate::printer::Printer;
use crate::server::{ReloadOutcome, Validation};
use crate::Context;

/// Rebuild the generated config and have the running server load it.
pub fn reload(ctx: &mut Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    init::ensure(ctx)?;
    let _lock = lock(ctx)?;
    let applied = apply(ctx, printer, true)?;
    let auth = ctx.paths.display(&ctx.paths.auth_conf());
    printer.status(
        if applied.changed {
            "Generated"
        } else {
            "Unchanged"
        },
        format!("{auth} ({} tenants)", applied.tenants),
    );
    if applied.validation == Validation::Valid {
        printer.status(
            "Validated",
            "configuration accepted by the server binary (-t)",
        );
    }
    match &applied.reload {
        Some(ReloadOutcome::Confirmed { load_time, took }) => printer.status(
            "Reloaded",
            format!("natsd loaded the new configuration at {load_time} ({} ms)", took.as_millis()),
        ),
        Some(ReloadOutcome::Unconfirmed { reason }) => {
            printer.warn(format!("signalled natsd but could not confirm the reload: {reason}"))
        }
        Some(ReloadOutcome::NotRunning) | None => printer.status(
            "Not running",
            "no natsd server is running; nothing to reload (./manage up starts it with this configuration)",
        ),
    }
    printer.json(&json!({ "ok": true, "tenants": applied.tenants, "apply": applied.to_json() }));
    Ok(ExitStatus::Success)
}
