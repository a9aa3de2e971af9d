//! `manage add-user <tenant> <user> [-p subjects] [-s subjects] [--auth password|nkey]`

use serde_json::json;

use crate::cli::{AddUserArgs, SubjectList};
use crate::commands::{
    begin, credentials_box, new_secret, secret_json, url_for, Change, ExitStatus,
};
use crate::names::SubjectPattern;
use crate::printer::Printer;
use crate::tenant::{repo, Permissions};
use crate::Context;

fn flatten(lists: &[SubjectList]) -> Vec<SubjectPattern> {
    let mut all: Vec<SubjectPattern> = Vec::new();
    for pattern in lists.iter().flat_map(|l| l.0.iter()) {
        if !all.contains(pattern) {
            all.push(pattern.clone());
        }
    }
    all
}

/// Add a user with permissions to an existing tenant.
pub fn user_add(
    args: &AddUserArgs,
    ctx: &mut Context,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let permissions = Permissions {
        publish: flatten(&args.publish),
        subscribe: flatten(&args.subscribe),
        deny_publish: flatten(&args.deny_publish),
        deny_subscribe: flatten(&args.deny_subscribe),
        allow_responses: args.allow_responses,
    };
    // Fail fast (before hashing) on a missing tenant or a taken name; re-checked under the lock.
    repo::load(&ctx.paths, &args.tenant)?;
    repo::ensure_user_free(&repo::load_all(&ctx.paths)?, &args.user)?;
    let (secret, auth) = new_secret(args.auth, printer)?;

    let _lock = begin(ctx, printer)?;
    let mut change = Change::new(ctx, "add-user")?.undone_unless_reloaded();
    repo::ensure_user_free(change.tenants(), &args.user)?;
    let path = ctx.paths.tenant_file(args.tenant.as_str());
    let mut doc = repo::load_doc(&ctx.paths, &args.tenant)?;
    doc.add_user(&path, &args.user, &auth, &permissions)?;
    change.put_tenant(&args.tenant, &doc)?;
    let written = change.put_credentials(&args.tenant, args.user.as_str(), &secret)?;
    let applied = change.commit(printer, false)?;
    printer.status(
        "Added",
        format!(
            "{}user `{}` to tenant `{}` ({})",
            match args.auth {
                crate::tenant::AuthKind::Nkey => "NKEY ",
                crate::tenant::AuthKind::Password => "",
            },
            args.user,
            args.tenant,
            permissions.summary()
        ),
    );
    let url = url_for(ctx, args.user.as_str(), &secret);
    let extra = vec![format!("  Access:   {}", permissions.summary())];
    credentials_box(printer, args.user.as_str(), &secret, &url, &written, &extra);
    let list = |l: &[SubjectPattern]| l.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>();
    let mut doc = json!({
            "tenant": args.tenant.as_str(), "account": args.tenant.account(), "user": args.user.as_str(),
            "url": url, "credentials_file": written.file,
            "permissions": {
                "publish": list(&permissions.publish), "subscribe": list(&permissions.subscribe),
                "deny_publish": list(&permissions.deny_publish), "deny_subscribe": list(&permissions.deny_subscribe),
                "allow_responses": permissions.allow_responses, "full_access": permissions.is_full_access(),
                "replies_only": permissions.replies_only(),
            },
    });
    secret_json(&mut doc, &secret, written.seed_file.as_deref());
    Ok(applied.finish(printer, doc))
}
