//! Operator mode's exports and imports: the `exports` and `imports` of the trusted account
//! JWTs become the accounts' configured exports and imports, so one router
//! (`crate::imports`) serves both modes, rebuilt whenever the claims change (a reload, or a
//! push to the directory resolver, which reloads).
//!
//! What only JWTs have is settled here, at load: a private export (`token_req`) admits an
//! importer only through an activation JWT that the exporting account (or one of its signing
//! keys) issued to it for the imported subject, that has not expired and that the export does
//! not revoke. An import nats-server would not add (no such account, no export covering it
//! or admitting the importer, no valid activation, a wildcard stream prefix) is left out, as
//! it is there; one whose activation expires later stops routing then (`crate::imports`).

use super::options::{AccountConfig, Export, ExportKind, Import, ResponseType};
use crate::jwt::{self, Claims, ExportClaim, ImportClaim, Kind};
use crate::subject::{is_literal, is_subset, is_valid_subject};
use crate::subject_transform::references_as_wildcards;

/// Gives each of `accounts` the exports and imports of its claims among `claims` (the trusted
/// account JWTs, decoded). `now`: Unix seconds, for the activations' validity.
pub(super) fn apply(accounts: &mut [AccountConfig], claims: &[Claims], now: i64) {
    for acc in accounts.iter_mut() {
        if let Some(c) = claims.iter().find(|c| c.sub == acc.name) {
            acc.exports = c.nats.exports.iter().filter_map(export).collect();
        }
    }
    for importer in claims {
        for claim in &importer.nats.imports {
            let Some(mut import) = import(claim) else {
                continue;
            };
            let Some(exporter) = claims.iter().find(|c| c.sub == import.account) else {
                continue;
            };
            let Some(exported) = covering_export(exporter, import.kind, &import.subject) else {
                continue;
            };
            let position = exported.account_token_position;
            if position > 0 {
                if import.subject.split('.').nth(position - 1) != Some(importer.sub.as_str()) {
                    continue;
                }
            } else if exported.token_req {
                let Some(expires) =
                    activation_valid(claim, &import, &importer.sub, exporter, exported, now)
                else {
                    continue;
                };
                import.expires = expires;
                let admitted = accounts
                    .iter_mut()
                    .filter(|a| a.name == exporter.sub)
                    .flat_map(|a| a.exports.iter_mut())
                    .find(|e| e.kind == import.kind && e.subject == exported.subject);
                if let Some(e) = admitted {
                    if !e.accounts.contains(&importer.sub) {
                        e.accounts.push(importer.sub.clone());
                    }
                }
            }
            if let Some(acc) = accounts.iter_mut().find(|a| a.name == importer.sub) {
                acc.imports.push(import);
            }
        }
    }
}

/// What makes nats-server refuse the account JWT `claims` for its exports and imports (the
/// JWT library's validation): its users cannot log in, as with an account the operator did
/// not sign. An expired activation is not among them; it only leaves its import out.
pub(crate) fn problems(claims: &Claims) -> Vec<String> {
    let mut out = Vec::new();
    for e in &claims.nats.exports {
        let k = kind(&e.kind);
        match (k, e.response_type.as_str()) {
            (None, _) => out.push(format!("invalid export type: {:?}", e.kind)),
            (Some(ExportKind::Service), "" | "Singleton" | "Stream" | "Chunked") => {}
            (Some(ExportKind::Stream), "") => {}
            (Some(_), rt) => out.push(format!("invalid response type {rt:?} for {}", e.kind)),
        }
        if e.response_threshold < 0 || e.response_threshold > 0 && k != Some(ExportKind::Service) {
            out.push("response threshold only valid (and positive) for services".to_string());
        }
        if !is_valid_subject(e.subject.as_bytes()) {
            out.push(format!("invalid export subject {:?}", e.subject));
        }
        if e.account_token_position > 0
            && e.subject.split('.').nth(e.account_token_position - 1) != Some("*")
        {
            out.push(format!(
                "Account Token Position {} must match a * in: {}",
                e.account_token_position, e.subject
            ));
        }
    }
    // No export may contain another of its kind.
    for (i, a) in claims.nats.exports.iter().enumerate() {
        for (j, b) in claims.nats.exports.iter().enumerate() {
            let same_kind = (a.kind == "service") == (b.kind == "service");
            if i != j && same_kind && contained(&a.subject, &b.subject) {
                out.push(format!(
                    "export subject {:?} already exports {:?}",
                    b.subject, a.subject
                ));
            }
        }
    }
    let mut services: Vec<(&str, String)> = Vec::new();
    for i in &claims.nats.imports {
        let Some(k) = kind(&i.kind) else {
            out.push(format!("invalid import type: {:?}", i.kind));
            continue;
        };
        if i.account.is_empty() {
            out.push("account to import from is not specified".to_string());
        }
        if !is_valid_subject(i.subject.as_bytes()) {
            out.push(format!("invalid import subject {:?}", i.subject));
        }
        if !i.local_subject.is_empty() && !i.to.is_empty() {
            out.push("Local Subject replaces To".to_string());
        }
        if i.share && k != ExportKind::Service {
            out.push(format!(
                "sharing information is only valid for services: {:?}",
                i.subject
            ));
        }
        if k == ExportKind::Service {
            let local = match (i.to.as_str(), i.local_subject.as_str()) {
                ("", "") => i.subject.clone(),
                ("", local) => references_as_wildcards(local),
                (to, _) => to.to_string(),
            };
            for (account, other) in &services {
                if *account == i.account && (contained(&local, other) || contained(other, &local)) {
                    out.push(format!(
                        "overlapping subject namespace for {local:?} and {other:?}"
                    ));
                }
            }
            services.push((&i.account, local));
        }
        if !i.token.is_empty() {
            out.extend(token_problem(i, k, &claims.sub));
        }
    }
    out
}

/// What is wrong with an import's activation JWT for the importing account `importer`,
/// other than its validity window.
fn token_problem(i: &ImportClaim, k: ExportKind, importer: &str) -> Option<String> {
    let Ok(act) = jwt::decode(&i.token, Kind::Activation) else {
        return Some(format!(
            "import {:?} contains an invalid activation token",
            i.subject
        ));
    };
    let issuer_ok = act.iss == i.account || act.nats.issuer_account.as_deref() == Some(&i.account);
    let subject = match k {
        ExportKind::Service if !i.to.is_empty() => &i.to,
        _ => &i.subject,
    };
    if !issuer_ok {
        Some(format!(
            "activation token doesn't match account for import {:?}",
            i.subject
        ))
    } else if act.sub != importer {
        Some(format!(
            "activation token doesn't match account it is being included in, {:?}",
            i.subject
        ))
    } else if kind(&act.nats.import_kind) != Some(k) {
        Some("mismatch between token import type and type of import".to_string())
    } else if !contained(subject, &act.nats.subject) {
        Some(format!(
            "activation token import subject {:?} doesn't match import {:?}",
            act.nats.subject, i.subject
        ))
    } else {
        None
    }
}

/// Whether `subject` is `within` or one of its subjects, token by token as the JWT library
/// compares claims (where a `*` of `within` also takes a `>`).
fn contained(subject: &str, within: &str) -> bool {
    let mine: Vec<&str> = subject.split('.').collect();
    let other: Vec<&str> = within.split('.').collect();
    let open = other.last() == Some(&">");
    if mine.len() < other.len() || mine.len() > other.len() && !open {
        return false;
    }
    for (i, tok) in other.iter().enumerate() {
        if i == other.len() - 1 && *tok == ">" {
            return true;
        }
        if *tok != mine[i] && *tok != "*" {
            return false;
        }
    }
    true
}

fn kind(name: &str) -> Option<ExportKind> {
    match name {
        "stream" => Some(ExportKind::Stream),
        "service" => Some(ExportKind::Service),
        _ => None,
    }
}

fn export(claim: &ExportClaim) -> Option<Export> {
    let kind = kind(&claim.kind)?;
    if !is_valid_subject(claim.subject.as_bytes()) {
        return None;
    }
    let mut e = Export::new(kind, &claim.subject);
    e.token_required = claim.token_req;
    e.account_token_position = claim.account_token_position;
    if kind == ExportKind::Service {
        e.response_type = match claim.response_type.as_str() {
            "Stream" => ResponseType::Stream,
            "Chunked" => ResponseType::Chunked,
            _ => ResponseType::Singleton,
        };
        e.response_threshold = u64::try_from(claim.response_threshold)
            .ok()
            .filter(|&ns| ns > 0)
            .map(std::time::Duration::from_nanos);
    }
    Some(e)
}

/// The import as the configuration states one: `subject` in the exporter, `local` in the
/// importer (whose `$1`, `$2`, ... name the subject's wildcards).
fn import(claim: &ImportClaim) -> Option<Import> {
    let kind = kind(&claim.kind)?;
    let mut import = Import::new(kind, &claim.account, &claim.subject);
    import.share = claim.share && kind == ExportKind::Service;
    let local = (!claim.local_subject.is_empty()).then(|| claim.local_subject.clone());
    match kind {
        ExportKind::Stream => match (local, claim.to.as_str()) {
            (Some(local), _) => import.local = Some(local),
            (None, "") => {}
            (None, prefix) if is_literal(prefix.as_bytes()) => import.prefix = Some(prefix.into()),
            (None, _) => return None,
        },
        ExportKind::Service => match (local, claim.to.as_str()) {
            (Some(local), _) => import.local = Some(local),
            (None, "") => {}
            // `to` is the exporter's subject; `subject` is where the importer publishes.
            (None, to) => {
                import.local = Some(claim.subject.clone());
                import.subject = to.to_string();
            }
        },
    }
    let local = references_as_wildcards(&import.local_subject());
    let valid = is_valid_subject(import.subject.as_bytes())
        && (kind == ExportKind::Stream && import.local.is_some()
            || is_valid_subject(local.as_bytes()));
    valid.then_some(import)
}

/// The exporter's export of `kind` that covers `subject`: the one exported as that very
/// subject, else the first wider one.
fn covering_export<'a>(
    exporter: &'a Claims,
    kind_wanted: ExportKind,
    subject: &str,
) -> Option<&'a ExportClaim> {
    let of_kind = || {
        exporter
            .nats
            .exports
            .iter()
            .filter(move |e| kind(&e.kind) == Some(kind_wanted))
    };
    of_kind()
        .find(|e| e.subject == subject)
        .or_else(|| of_kind().find(|e| is_subset(subject.as_bytes(), e.subject.as_bytes())))
}

/// Whether the import's activation JWT lets `importer` in: signed by the exporting account
/// (or by one of its signing keys, naming the account), issued to the importer for this kind
/// of import and a subject covering the imported one, within its validity window, and not
/// revoked by the export. `Some(when it expires)` if it does.
fn activation_valid(
    claim: &ImportClaim,
    import: &Import,
    importer: &str,
    exporter: &Claims,
    export: &ExportClaim,
    now: i64,
) -> Option<Option<i64>> {
    if claim.token.is_empty() {
        return None;
    }
    let act = jwt::decode(&claim.token, Kind::Activation).ok()?;
    let signer_ok = match act.nats.issuer_account.as_deref().filter(|a| !a.is_empty()) {
        None => act.iss == exporter.sub,
        Some(account) => account == exporter.sub && exporter.account_signer(&act.iss).is_some(),
    };
    let kind_ok = kind(&act.nats.import_kind) == Some(import.kind);
    let covered = contained(&import.subject, &act.nats.subject);
    let revoked = [importer, "*"]
        .iter()
        .any(|k| export.revocations.get(*k).is_some_and(|&t| t >= act.iat));
    let valid = signer_ok
        && act.sub == importer
        && kind_ok
        && covered
        && !act.is_expired_at(now)
        && !revoked;
    valid.then_some((act.exp > 0).then_some(act.exp))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly by design")]
mod tests {
    use super::*;

    fn claims(key: &str, nats: serde_json::Value) -> Claims {
        serde_json::from_value(serde_json::json!({ "sub": key, "nats": nats })).unwrap()
    }

    fn activation(signer: &nkeys::KeyPair, importer: &str, nats: serde_json::Value) -> String {
        jwt::encode(signer, importer, Kind::Activation, "act", nats).unwrap()
    }

    #[test]
    fn private_exports_admit_importers_with_valid_activations_only() {
        let exporter = nkeys::KeyPair::new_account();
        let signer = nkeys::KeyPair::new_account();
        let (b, c, d) = ("BIMPORTER", "CIMPORTER", "DIMPORTER");
        let good = activation(
            &signer,
            b,
            serde_json::json!({ "subject": "svc.>", "kind": "service", "issuer_account": exporter.public_key() }),
        );
        let wrong_kind = activation(
            &exporter,
            c,
            serde_json::json!({ "subject": "svc.>", "kind": "stream" }),
        );
        let revoked = activation(
            &exporter,
            d,
            serde_json::json!({ "subject": "svc.x", "kind": "service" }),
        );
        let all = vec![
            claims(
                &exporter.public_key(),
                serde_json::json!({
                    "signing_keys": [signer.public_key()],
                    "exports": [
                        { "subject": "svc.>", "type": "service", "token_req": true,
                          "response_type": "Stream", "revocations": { d: chrono::Utc::now().timestamp() + 5 } },
                        { "subject": "pub.>", "type": "stream" },
                    ]
                }),
            ),
            claims(
                b,
                serde_json::json!({ "imports": [
                    { "subject": "svc.x", "account": exporter.public_key(), "type": "service", "token": good },
                    { "subject": "pub.x", "account": exporter.public_key(), "type": "stream", "to": "in" },
                    { "subject": "svc.y", "account": exporter.public_key(), "type": "service" },
                ]}),
            ),
            claims(
                c,
                serde_json::json!({ "imports": [
                    { "subject": "svc.x", "account": exporter.public_key(), "type": "service", "token": wrong_kind },
                ]}),
            ),
            claims(
                d,
                serde_json::json!({ "imports": [
                    { "subject": "svc.x", "account": exporter.public_key(), "type": "service", "token": revoked },
                ]}),
            ),
        ];
        let mut accounts: Vec<AccountConfig> = all
            .iter()
            .map(|c| AccountConfig {
                name: c.sub.clone(),
                ..AccountConfig::default()
            })
            .collect();
        apply(&mut accounts, &all, chrono::Utc::now().timestamp());
        let svc = &accounts[0].exports[0];
        assert!(svc.token_required);
        assert_eq!(svc.accounts, vec![b.to_string()]);
        assert_eq!(svc.response_type, ResponseType::Stream);
        let b_imports = &accounts[1].imports;
        assert_eq!(b_imports.len(), 2, "{b_imports:?}");
        assert_eq!(b_imports[1].local_subject(), "in.pub.x");
        assert!(accounts[2].imports.is_empty() && accounts[3].imports.is_empty());
        assert!(
            crate::config::authorizing_export(&accounts[0], b, ExportKind::Service, "svc.x")
                .is_some()
        );
        assert!(
            crate::config::authorizing_export(&accounts[0], c, ExportKind::Service, "svc.x")
                .is_none()
        );
    }

    #[test]
    fn containment_is_the_jwt_librarys() {
        assert!(contained("a.b", "a.>") && contained("a.b.c", "a.*.c"));
        assert!(contained("a.>", "a.*") && contained("a.*", "a.*"));
        assert!(!contained("a", "a.>") && !contained("a.b.c", "a.*"));
        assert!(!contained("a.*", "a.b"));
    }

    #[test]
    fn service_to_names_the_exporters_subject() {
        let claim = ImportClaim {
            subject: "local.q".into(),
            to: "remote.q".into(),
            kind: "service".into(),
            account: "A".into(),
            ..ImportClaim::default()
        };
        let i = import(&claim).unwrap();
        assert_eq!(
            (i.subject.as_str(), i.local_subject()),
            ("remote.q", "local.q".into())
        );
        let claim = ImportClaim {
            subject: "remote.*".into(),
            local_subject: "mine.$1".into(),
            ..claim
        };
        let i = import(&claim).unwrap();
        assert_eq!(
            (i.subject.as_str(), i.local_subject()),
            ("remote.*", "mine.$1".into())
        );
    }
}
