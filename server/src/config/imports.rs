//! The import/export graph between accounts, checked as nats-server checks it when it loads a
//! configuration: every account an export names or an import comes from must exist, an import
//! must be covered by an export that lets the importer in, a stream import's prefix must be
//! literal, no import may be there twice, and no chain of imports may lead back to where it
//! started. The runtime side (routing through the imports) is `crate::imports`.
//!
//! nats-server resolves the accounts of a file in map order; natsd goes in file order, so
//! when several imports together form a cycle, the one reported may differ.

use super::options::{AccountConfig, Export, ExportKind, Import};
use crate::subject::{collide, is_literal, is_subset, is_valid_subject};

/// nats-server gives up looking for a cycle after this many accounts on one path.
const MAX_CYCLE_SEARCH_DEPTH: usize = 1024;

/// What is wrong with the accounts' imports and exports, in nats-server's words and order
/// (export account lists, then stream imports, then service imports).
pub(crate) fn check(accounts: &[AccountConfig]) -> Vec<String> {
    let mut errors = Vec::new();
    let known = |name: &str| accounts.iter().any(|a| a.name == name);
    for kind in [ExportKind::Stream, ExportKind::Service] {
        for acc in accounts {
            for export in acc.exports.iter().filter(|e| e.kind == kind) {
                for name in export.accounts.iter().filter(|n| !known(n)) {
                    errors.push(format!(
                        "\"{name}\" account not defined for {} export",
                        kind_name(kind)
                    ));
                }
            }
        }
    }
    // Imports are added one by one; a cycle is looked for among those added before.
    let mut added: Vec<Added> = Vec::new();
    for kind in [ExportKind::Stream, ExportKind::Service] {
        for acc in accounts {
            for import in acc.imports.iter().filter(|i| i.kind == kind) {
                let Some(origin) = accounts.iter().find(|a| a.name == import.account) else {
                    errors.push(format!(
                        "\"{}\" account not defined for {} import",
                        import.account,
                        kind_name(kind)
                    ));
                    continue;
                };
                let checked = match kind {
                    ExportKind::Stream => {
                        check_stream_import(accounts, &acc.name, origin, import, &added)
                    }
                    ExportKind::Service => {
                        check_service_import(accounts, &acc.name, origin, import, &added)
                    }
                };
                match checked {
                    Ok(()) => added.push(Added {
                        importer: acc.name.clone(),
                        origin: origin.name.clone(),
                        kind,
                        remote: import.subject.clone(),
                        local: import.local_subject(),
                    }),
                    Err(reason) => errors.push(format!(
                        "Error adding {} import \"{}\": {reason}",
                        kind_name(kind),
                        import.subject
                    )),
                }
            }
        }
    }
    errors
}

fn kind_name(kind: ExportKind) -> &'static str {
    match kind {
        ExportKind::Stream => "stream",
        ExportKind::Service => "service",
    }
}

/// The export of `origin` that lets `importer` import `subject` (of `kind`), if any: one whose
/// subject covers it and whose account list (or token position) admits the importer.
pub(crate) fn authorizing_export<'a>(
    origin: &'a AccountConfig,
    importer: &str,
    kind: ExportKind,
    subject: &str,
) -> Option<&'a Export> {
    if !is_valid_subject(subject.as_bytes()) {
        return None;
    }
    origin.exports.iter().find(|e| {
        e.kind == kind
            && (e.subject == subject || is_subset(subject.as_bytes(), e.subject.as_bytes()))
            && admits(e, importer, subject)
    })
}

fn admits(export: &Export, importer: &str, subject: &str) -> bool {
    if export.account_token_position > 0 {
        return subject.split('.').nth(export.account_token_position - 1) == Some(importer);
    }
    (export.accounts.is_empty() && !export.token_required)
        || export.accounts.iter().any(|a| a == importer)
}

/// An import accepted so far, for the cycle search.
struct Added {
    importer: String,
    origin: String,
    kind: ExportKind,
    /// The subject in the exporting account.
    remote: String,
    /// The subject in the importing account.
    local: String,
}

fn check_stream_import(
    accounts: &[AccountConfig],
    importer: &str,
    origin: &AccountConfig,
    import: &Import,
    added: &[Added],
) -> Result<(), &'static str> {
    if authorizing_export(origin, importer, ExportKind::Stream, &import.subject).is_none() {
        return Err("stream import not authorized");
    }
    if let Some(prefix) = &import.prefix {
        if !is_literal(prefix.as_bytes()) {
            return Err("stream import prefix can not contain wildcard tokens");
        }
    }
    let to = import.local_subject();
    let visited = vec![importer.to_string()];
    let stream = ExportKind::Stream;
    if cycle(accounts, stream, &origin.name, &to, visited.clone(), added)?
        || cycle(
            accounts,
            stream,
            &origin.name,
            &import.subject,
            visited,
            added,
        )?
    {
        return Err("import forms a cycle");
    }
    let duplicate = added.iter().any(|a| {
        a.kind == ExportKind::Stream
            && a.importer == importer
            && a.origin == origin.name
            && a.remote == import.subject
    });
    if duplicate {
        return Err("stream import already exists");
    }
    Ok(())
}

fn check_service_import(
    accounts: &[AccountConfig],
    importer: &str,
    origin: &AccountConfig,
    import: &Import,
    added: &[Added],
) -> Result<(), &'static str> {
    let local = import.local_subject();
    if !is_valid_subject(import.subject.as_bytes()) || !is_valid_subject(local.as_bytes()) {
        return Err("invalid subject");
    }
    if authorizing_export(origin, importer, ExportKind::Service, &import.subject).is_none() {
        return Err("service import not authorized");
    }
    let visited = vec![importer.to_string()];
    if cycle(
        accounts,
        ExportKind::Service,
        &origin.name,
        &local,
        visited,
        added,
    )? {
        return Err("import forms a cycle");
    }
    Ok(())
}

/// Whether `subject`, arriving in `account`, goes on through `account`'s imports of `kind`
/// back to an account already on the path (nats-server's `checkStreamImportsForCycles` and
/// `checkServiceImportsForCycles`). A stream goes on only where the account exports it; a
/// request goes on where the account's service import takes it.
fn cycle(
    accounts: &[AccountConfig],
    kind: ExportKind,
    account: &str,
    subject: &str,
    mut visited: Vec<String>,
    added: &[Added],
) -> Result<bool, &'static str> {
    if visited.len() >= MAX_CYCLE_SEARCH_DEPTH {
        return Err("search cycle depth exhausted");
    }
    if kind == ExportKind::Stream {
        let exported = accounts.iter().any(|acc| {
            acc.name == account
                && acc.exports.iter().any(|e| {
                    e.kind == ExportKind::Stream
                        && is_subset(subject.as_bytes(), e.subject.as_bytes())
                })
        });
        if !exported {
            return Ok(false);
        }
    }
    for a in added
        .iter()
        .filter(|a| a.kind == kind && a.importer == account)
    {
        let onward = match kind {
            ExportKind::Stream => &a.local,
            ExportKind::Service => &a.remote,
        };
        if !collide(subject.as_bytes(), onward.as_bytes()) {
            continue;
        }
        if visited.contains(&a.origin) {
            return Ok(true);
        }
        visited.push(account.to_string());
        let next = if is_subset(a.local.as_bytes(), subject.as_bytes()) {
            a.local.as_str()
        } else {
            subject
        };
        if cycle(accounts, kind, &a.origin, next, visited.clone(), added)? {
            return Ok(true);
        }
    }
    Ok(false)
}
