//! `manage reload`: regenerate auth.conf, validate it, reload and confirm by digest. Also
//! what repairs a deployment after an interrupted command or a hand edit of a tenant file.

use serde_json::json;

use crate::commands::{apply, begin, ExitStatus};
use crate::printer::Printer;
use crate::server::Validation;
use crate::Context;

/// Rebuild the generated config and have the running server load it.
pub fn reload(ctx: &mut Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    let _lock = begin(ctx, printer)?;
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
    let tenants = applied.tenants;
    Ok(applied.finish(printer, json!({ "tenants": tenants })))
}
