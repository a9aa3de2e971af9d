//! Operator (JWT) mode in nats.conf: `operator` (a JWT file or the JWT inline), `resolver:
//! MEMORY` and `resolver_preload`. The preloaded account JWTs become the server's accounts
//! (named by their public keys, with the limits their claims carry); users are not configured
//! at all but present a user JWT signed by one of those accounts when they connect.

use std::path::Path;

use natsd_conf::parser::{Entry, Node, Value};

use super::options::{
    AccountConfig, AccountJetStreamLimits, AccountLimits, ClaimsDelete, OperatorMode, Options,
};
use crate::jwt::{self, AccountLimitsClaim, Kind};

/// What the top-level keys of operator mode set, before the checks across them.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) operators: Option<Vec<String>>,
    pub(super) resolver_memory: bool,
    pub(super) preload: Vec<(String, String)>,
    /// `resolver: { type: full, dir }`.
    pub(super) dir: Option<std::path::PathBuf>,
    /// The directory resolver's `allow_delete` / `hard_delete`.
    pub(super) delete: ClaimsDelete,
}

/// `resolver: { type: full, dir: ... }` (the directory resolver nats-server calls `full`):
/// its directory and what a deletion request does.
pub(super) fn directory_resolver(e: &Entry) -> Result<(std::path::PathBuf, ClaimsDelete), String> {
    let Value::Map(m) = &e.value.value else {
        return Err("resolver must be MEMORY or a map".to_string());
    };
    let mut kind = String::new();
    let mut dir = None;
    let mut allow_delete = false;
    let mut hard_delete = None;
    let mut ttl = false;
    for entry in &m.entries {
        match (entry.key.to_ascii_lowercase().as_str(), &entry.value.value) {
            ("type", Value::Str(s)) => kind = s.to_ascii_lowercase(),
            ("dir", Value::Str(s)) => dir = Some(std::path::PathBuf::from(s)),
            ("allow_delete", Value::Bool(b)) => allow_delete = *b,
            ("hard_delete", Value::Bool(b)) => hard_delete = Some(*b),
            ("allow_delete" | "hard_delete", other) => {
                return Err(format!(
                    "{} must be a boolean, got {}",
                    entry.key,
                    other.go_type()
                ))
            }
            ("ttl", _) => ttl = true,
            // The sync interval and fetch timeout concern clusters of resolvers; `limit` caps
            // how many JWTs the directory takes, which a single node's operator sets itself.
            ("interval" | "timeout" | "limit", _) => {}
            (key, _) => return Err(format!("unknown field \"{key}\" in resolver")),
        }
    }
    if kind != "full" {
        // The cache resolver fills its directory from other servers' full resolvers and
        // loads accounts lazily, neither of which a single node has; see docs/differences.md.
        return Err(format!(
            "option \"resolver\" (JWT account resolver of type {kind:?}; natsd serves MEMORY and full) is not supported by natsd; refusing the configuration"
        ));
    }
    if ttl {
        return Err("FULL does not accept ttl".to_string());
    }
    if hard_delete.is_some() && !allow_delete {
        return Err("hard_delete has no effect without delete".to_string());
    }
    let delete = match (allow_delete, hard_delete) {
        (false, _) => ClaimsDelete::Refused,
        (true, Some(true)) => ClaimsDelete::Remove,
        (true, _) => ClaimsDelete::Rename,
    };
    dir.map(|d| (d, delete))
        .ok_or_else(|| "dir has no value and needs to point to a directory".to_string())
}

/// The account JWTs a resolver directory holds (`<public key>.jwt`), creating it if needed.
fn read_directory(dir: &Path) -> Result<Vec<(String, String)>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("resolver dir {}: {e}", dir.display()))?;
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("resolver dir {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(key) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jwt"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("resolver dir {}: {e}", path.display()))?;
        if jwt::decode(&text, Kind::Account).is_ok() {
            out.push((key.to_string(), text.trim().to_string()));
        }
    }
    out.sort();
    Ok(out)
}

/// The JWT in a file's text or an inline value: the first token that looks like one
/// (files from nsc wrap it in `-----BEGIN ... JWT-----` lines).
fn find_jwt(text: &str) -> Option<&str> {
    text.split_whitespace().find(|t| t.starts_with("eyJ"))
}

fn strings(node: &Node) -> Result<Vec<String>, String> {
    match &node.value {
        Value::Str(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|n| match &n.value {
                Value::Str(s) => Ok(s.clone()),
                other => Err(format!(
                    "error parsing operators: unsupported type {} where string is expected",
                    other.go_type()
                )),
            })
            .collect(),
        other => Err(format!(
            "error parsing operators: unsupported type {}",
            other.go_type()
        )),
    }
}

/// `operator: ...`: each value a file holding the operator JWT, or the JWT itself.
pub(super) fn operators(e: &Entry, base: Option<&Path>) -> Result<Vec<String>, Vec<String>> {
    let values = strings(&e.value).map_err(|m| vec![m])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for value in values {
        let path = match base {
            Some(dir) if Path::new(&value).is_relative() => dir.join(&value),
            _ => Path::new(&value).to_path_buf(),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(_) if value.starts_with("eyJ") => value.clone(),
            Err(err) => {
                errors.push(format!("error parsing operator JWT: {err}"));
                continue;
            }
        };
        let Some(token) = find_jwt(&text) else {
            errors.push("error parsing operator JWT: no JWT found".to_string());
            continue;
        };
        match jwt::decode(token, Kind::Operator) {
            Ok(_) => out.push(token.to_string()),
            Err(err) => errors.push(format!("error parsing operator JWT: {err}")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `resolver: MEMORY` (true); the other resolvers are refused by the caller.
pub(super) fn is_memory_resolver(value: &str) -> bool {
    let v = value.trim().to_ascii_uppercase();
    v.starts_with("MEM")
}

/// `resolver_preload { ACCOUNT_KEY: JWT }`.
pub(super) fn preload(e: &Entry) -> Result<Vec<(String, String)>, Vec<String>> {
    let Value::Map(m) = &e.value.value else {
        return Err(vec![
            "preload should be a map of account_public_key:account_jwt".to_string(),
        ]);
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for entry in &m.entries {
        match &entry.value.value {
            Value::Str(token) if jwt::decode(token, Kind::Account).is_ok() => {
                out.push((entry.key.clone(), token.trim().to_string()))
            }
            Value::Str(_) => errors.push(format!("{}: invalid account JWT", entry.value.span)),
            _ => errors.push(format!(
                "{}: preload map value should be a string JWT",
                entry.value.span
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Check operator mode across the options (as nats-server does at start) and derive the
/// accounts from the preloaded JWTs. Errors are worded as nats-server's.
pub(super) fn finish(pending: Pending, o: &mut Options) -> Result<(), String> {
    let Some(operators) = pending.operators else {
        return Ok(());
    };
    if !pending.resolver_memory && pending.dir.is_none() {
        return Err("operators require an account resolver to be configured".to_string());
    }
    if !o.accounts.is_empty() {
        return Err("operators do not allow Accounts to be configured directly".to_string());
    }
    if !o.auth.users.is_empty() {
        return Err("operators do not allow users to be configured directly".to_string());
    }
    let claims: Vec<jwt::Claims> = operators
        .iter()
        .filter_map(|t| jwt::decode(t, Kind::Operator).ok())
        .collect();
    let operator_system = claims
        .iter()
        .filter_map(|c| c.nats.system_account.clone())
        .collect::<Vec<_>>();
    match &o.system_account {
        Some(sys) if !operator_system.is_empty() && !operator_system.contains(sys) => {
            return Err("system_account in config and operator JWT must be identical".to_string())
        }
        Some(_) => {}
        None => o.system_account = operator_system.first().cloned(),
    }
    let mut preload = pending.preload;
    if let Some(dir) = &pending.dir {
        if o.system_account.is_none() {
            return Err("using nats based account resolver - the system account needs to be specified in configuration or the operator jwt".to_string());
        }
        // What was pushed before wins over the preload, as the directory is the newer state.
        let stored = read_directory(dir)?;
        preload.retain(|(k, _)| !stored.iter().any(|(s, _)| s == k));
        preload.extend(stored);
    }
    let trusted: Vec<&str> = claims.iter().flat_map(|c| c.operator_keys()).collect();
    let mut accounts = Vec::new();
    for (key, token) in &preload {
        let Ok(account) = jwt::decode(token, Kind::Account) else {
            continue;
        };
        // An account not signed by a trusted operator (or not for this key) is unusable, as
        // on nats-server: its users cannot log in.
        if &account.sub != key || !trusted.contains(&account.iss.as_str()) {
            continue;
        }
        let problems = super::operator_imports::problems(&account);
        if !problems.is_empty() {
            tracing::warn!(
                "Account [{key}] has validation issues: {}",
                problems.join("; ")
            );
            continue;
        }
        let mut config = account_config(key, &account.nats.limits);
        config.mappings = crate::mapping::from_claims(&account.nats.mappings);
        o.accounts.push(config);
        accounts.push(account);
    }
    super::operator_imports::apply(&mut o.accounts, &accounts, chrono::Utc::now().timestamp());
    if let Some(sys) = &o.system_account {
        if !o.accounts.iter().any(|a| &a.name == sys) {
            let unlimited = AccountLimitsClaim {
                subs: -1,
                data: -1,
                payload: -1,
                conn: -1,
                ..AccountLimitsClaim::default()
            };
            o.accounts.push(account_config(sys, &unlimited));
        }
    }
    o.operator = Some(OperatorMode {
        operators,
        preload,
        dir: pending.dir,
        delete: pending.delete,
    });
    Ok(())
}

/// An account's settings from its JWT limits. JetStream is on when the claims give it storage
/// (in the `R1` tier or untiered); zero stream, consumer, ack-pending and size limits mean
/// unlimited there (the first two are kept as zero, which JetStream reads as no limit, so
/// `$JS.API.INFO` shows them as nats-server does).
fn account_config(key: &str, limits: &AccountLimitsClaim) -> AccountConfig {
    let r1 = limits.tiered_limits.get("R1");
    let js = r1.unwrap_or(limits);
    let unlimited_if_zero = |v: i64| if v == 0 { -1 } else { v };
    let jetstream = (js.mem_storage != 0 || js.disk_storage != 0).then(|| AccountJetStreamLimits {
        max_memory: js.mem_storage,
        max_store: js.disk_storage,
        max_streams: js.streams,
        max_consumers: js.consumer,
        max_ack_pending: unlimited_if_zero(js.max_ack_pending),
        memory_max_stream_bytes: unlimited_if_zero(js.mem_max_stream_bytes),
        storage_max_stream_bytes: unlimited_if_zero(js.disk_max_stream_bytes),
        max_bytes_required: js.max_bytes_required,
        r1_tier: r1.is_some(),
    });
    AccountConfig {
        name: key.to_string(),
        jetstream,
        limits: AccountLimits {
            max_connections: limits.conn,
            max_subscriptions: limits.subs,
            max_payload: limits.payload,
        },
        ..AccountConfig::default()
    }
}
