//! The directory account resolver's requests, as nats-server answers them. A system-account
//! user pushes an account JWT with `$SYS.REQ.CLAIMS.UPDATE` or
//! `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` (or the older `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE`);
//! natsd checks it, stores it as `<dir>/<key>.jwt` and reloads, so the account appears (or
//! takes its new limits) at once; the reply is `{"server": {...}, "data": {"account", "code":
//! 200, "message": "jwt updated"}}` or an `"error"` with code 500. `$SYS.REQ.ACCOUNT.<key>.
//! CLAIMS.LOOKUP` answers with the stored JWT (empty when there is none).
//!
//! What `nsc push --prune` and `nsc pull` use besides:
//! - `$SYS.REQ.CLAIMS.LIST`: `{"data": [<key>...], "server": {...}}`, the stored accounts in
//!   file-name order (an expired JWT is left out, as nats-server's walk of its store does).
//! - `$SYS.REQ.CLAIMS.DELETE`: a JWT signed by the operator (or one of its signing keys) for
//!   itself, whose `nats.accounts` lists the accounts to delete. With `allow_delete` the files
//!   are renamed to `<key>.jwt.deleted` (removed under `hard_delete`), the accounts' clients
//!   get `Account Authentication Expired` and are closed, and the accounts go with a reload.
//!   The reply's `data.message` is `deleted <n> accounts`.
//! - `$SYS.REQ.CLAIMS.PACK` (queue group `responder`): the body is the requester's store
//!   hash (the XOR of the SHA-256 of every stored JWT); when it differs from ours, each
//!   stored JWT follows as a message `<key>|<jwt>`, and an empty message ends the answer
//!   (which is all it is when the hashes match). nats-server's servers send these requests
//!   to each other to converge; a single node only answers them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::sysreq::ServerInfo;
use crate::config::ClaimsDelete;
use crate::jwt::{self, Kind};
use crate::outbound::CloseReason;
use crate::route;
use crate::server::Server;
use crate::subscription::{FlushSet, InternalHandler, InternalMsg};

/// The subscriptions' handler; the tasks that answer updates and deletions share its state.
struct ClaimRequests(Arc<Resolver>);

struct Resolver {
    server: Weak<Server>,
    dir: PathBuf,
    /// `seq` of the replies' server block.
    seq: AtomicU64,
    runtime: Option<tokio::runtime::Handle>,
}

/// Subscribe the system account to the resolver requests when the directory resolver is on,
/// after storing the `resolver_preload` JWTs the directory lacks (nats-server stores them
/// there at start, so they are listed and looked up like pushed ones).
pub(crate) fn install(server: &Arc<Server>) {
    let opts = server.options();
    let Some(mode) = opts.operator.as_ref() else {
        return;
    };
    let Some(dir) = mode.dir.clone() else {
        return;
    };
    for (key, token) in &mode.preload {
        let path = jwt_path(&dir, key);
        if !path.exists() {
            if let Err(e) = write_jwt(&dir, key, token) {
                tracing::warn!("storing preloaded account {key} in {}: {e}", dir.display());
            }
        }
    }
    let Some(account) = server.account(&server.system_account()) else {
        return;
    };
    let handler = Arc::new(ClaimRequests(Arc::new(Resolver {
        server: Arc::downgrade(server),
        dir,
        seq: AtomicU64::new(0),
        runtime: tokio::runtime::Handle::try_current().ok(),
    })));
    for (subject, queue) in [
        ("$SYS.REQ.CLAIMS.UPDATE", None),
        ("$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE", None),
        ("$SYS.ACCOUNT.*.CLAIMS.UPDATE", None),
        ("$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP", None),
        ("$SYS.REQ.CLAIMS.LIST", None),
        ("$SYS.REQ.CLAIMS.DELETE", None),
        ("$SYS.REQ.CLAIMS.PACK", Some(&b"responder"[..])),
    ] {
        if let Err(e) =
            route::subscribe_internal(&account, subject.as_bytes(), queue, handler.clone())
        {
            tracing::warn!("account resolver subscription {subject}: {e}");
        }
    }
}

fn jwt_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.jwt"))
}

/// Store `token` as `<dir>/<key>.jwt`, whole or not at all.
fn write_jwt(dir: &Path, key: &str, token: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{key}.jwt.tmp"));
    std::fs::write(&tmp, token).and_then(|()| std::fs::rename(&tmp, jwt_path(dir, key)))
}

/// The stored JWTs (`<key>.jwt`, not empty) in file-name order, with whether each has
/// expired.
fn stored(dir: &Path) -> std::io::Result<Vec<(String, String, bool)>> {
    let now = chrono::Utc::now().timestamp();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(key) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jwt"))
            .filter(|k| !k.starts_with('.'))
        else {
            continue;
        };
        let key = key.to_string();
        let text = std::fs::read_to_string(&path)?;
        if text.is_empty() {
            continue;
        }
        let expired = jwt::decode_generic(&text).is_ok_and(|c| c.exp > 0 && c.exp < now);
        out.push((key, text, expired));
    }
    out.sort();
    Ok(out)
}

/// The store's hash as resolvers exchange it: the XOR of the SHA-256 of every stored JWT.
fn store_hash(stored: &[(String, String, bool)]) -> [u8; 32] {
    let mut hash = [0u8; 32];
    for (_, text, _) in stored {
        for (h, b) in hash.iter_mut().zip(Sha256::digest(text.as_bytes())) {
            *h ^= b;
        }
    }
    hash
}

/// Whether `claims` may be stored: signed by a key of a trusted operator.
fn trusted(server: &Server, claims: &jwt::Claims) -> bool {
    is_operator_key(server, &claims.iss)
}

fn is_operator_key(server: &Server, key: &str) -> bool {
    let opts = server.options();
    opts.operator.as_ref().is_some_and(|mode| {
        mode.operators.iter().any(|token| {
            jwt::decode(token, Kind::Operator).is_ok_and(|op| op.operator_keys().any(|k| k == key))
        })
    })
}

/// The reply to an update or a deletion, in nats-server's field order.
#[derive(Serialize)]
struct UpdateReply {
    server: ServerInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<UpdateStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<UpdateError>,
}

#[derive(Serialize)]
struct UpdateStatus {
    #[serde(skip_serializing_if = "String::is_empty")]
    account: String,
    code: u16,
    message: String,
}

#[derive(Serialize)]
struct UpdateError {
    #[serde(skip_serializing_if = "String::is_empty")]
    account: String,
    code: u16,
    description: String,
}

/// The reply to a list request: nats-server writes it from a map, so `data` comes first.
#[derive(Serialize)]
struct ListReply {
    data: Vec<String>,
    server: ServerInfo,
}

impl Resolver {
    fn server_info(&self, server: &Server) -> ServerInfo {
        ServerInfo::new(server, self.seq.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Log the outcome of an update or deletion and answer it.
    fn respond(
        &self,
        server: &Server,
        reply: Option<&[u8]>,
        account: &str,
        message: &str,
        outcome: Result<(), String>,
    ) {
        let (data, error) = match outcome {
            Ok(()) => {
                if account.is_empty() {
                    tracing::debug!("{message}");
                } else {
                    tracing::debug!("{message} - {account}");
                }
                let status = UpdateStatus {
                    account: account.to_string(),
                    code: 200,
                    message: message.to_string(),
                };
                (Some(status), None)
            }
            Err(e) => {
                if account.is_empty() {
                    tracing::error!("{message} - {e}");
                } else {
                    tracing::error!("{message} - {account} - {e}");
                }
                let error = UpdateError {
                    account: account.to_string(),
                    code: 500,
                    description: format!("{message} - {e}"),
                };
                (None, Some(error))
            }
        };
        let body = UpdateReply {
            server: self.server_info(server),
            data,
            error,
        };
        self.reply(
            server,
            reply,
            &serde_json::to_vec(&body).unwrap_or_default(),
        );
    }

    fn reply(&self, server: &Server, reply: Option<&[u8]>, payload: &[u8]) {
        if let (Some(reply), Some(account)) = (reply, server.account(&server.system_account())) {
            route::publish(&account, reply, None, None, payload);
        }
    }

    /// Check and store the pushed JWT, reload, and answer.
    fn update(
        self: Arc<Self>,
        server: Arc<Server>,
        subject_key: Option<String>,
        reply: Option<Vec<u8>>,
        payload: Vec<u8>,
    ) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        runtime.spawn(async move {
            let token = String::from_utf8_lossy(&payload).trim().to_string();
            let outcome = match jwt::decode(&token, Kind::Account) {
                Err(e) => Err((
                    "n/a".to_string(),
                    "jwt update resulted in error",
                    e.to_string(),
                )),
                Ok(claims) if claims.is_expired_at(chrono::Utc::now().timestamp()) => Err((
                    claims.sub.clone(),
                    "jwt validation failed",
                    "validation errors: [claim is expired]".to_string(),
                )),
                Ok(claims) if !crate::config::account_claim_problems(&claims).is_empty() => Err((
                    claims.sub.clone(),
                    "jwt validation failed",
                    format!(
                        "validation errors: [{}]",
                        crate::config::account_claim_problems(&claims).join(" ")
                    ),
                )),
                Ok(claims) if subject_key.as_ref().is_some_and(|k| k != &claims.sub) => Err((
                    subject_key.clone().unwrap_or_default(),
                    "jwt update resulted in error",
                    "subject does not match jwt content".to_string(),
                )),
                Ok(claims) if !trusted(&server, &claims) => Err((
                    claims.sub.clone(),
                    "jwt update resulted in error",
                    "not trusted".to_string(),
                )),
                Ok(claims) => match write_jwt(&self.dir, &claims.sub, &token) {
                    Err(e) => Err((
                        claims.sub.clone(),
                        "jwt update resulted in error",
                        e.to_string(),
                    )),
                    Ok(()) => match server.reload().await {
                        Ok(()) => Ok(claims.sub.clone()),
                        Err(e) => Err((
                            claims.sub.clone(),
                            "jwt update resulted in error",
                            e.to_string(),
                        )),
                    },
                },
            };
            let reply = reply.as_deref();
            match outcome {
                Ok(account) => self.respond(&server, reply, &account, "jwt updated", Ok(())),
                Err((account, message, e)) => {
                    self.respond(&server, reply, &account, message, Err(e))
                }
            }
        });
    }

    /// The accounts a deletion request names, once it is checked as nats-server checks it:
    /// `(requester, Ok(accounts))`, or the reason it is refused.
    fn deletion(&self, server: &Server, payload: &[u8]) -> (String, Result<Vec<String>, String>) {
        let text = String::from_utf8_lossy(payload);
        let claims = match jwt::decode_generic(&text) {
            Ok(claims) => claims,
            Err(e) => return (String::new(), Err(e.to_string())),
        };
        let opts = server.options();
        let delete = opts
            .operator
            .as_ref()
            .map_or(ClaimsDelete::Refused, |o| o.delete);
        let malformed = || "malformed request".to_string();
        let checked = if delete == ClaimsDelete::Refused {
            Err("delete must be enabled in server config".to_string())
        } else if claims.sub != claims.iss {
            Err("not self signed".to_string())
        } else if !is_operator_key(server, &claims.iss) {
            Err("not trusted".to_string())
        } else {
            match claims.nats.get("accounts").and_then(|v| v.as_array()) {
                None => Err(malformed()),
                Some(list) => {
                    let system = server.system_account();
                    list.iter().try_fold(Vec::new(), |mut keys, entry| {
                        let key = entry.as_str().ok_or_else(malformed)?;
                        if !is_account_key(key) {
                            return Err(malformed());
                        }
                        if key == system {
                            return Err("not allowed to delete system account".to_string());
                        }
                        keys.push(key.to_string());
                        Ok(keys)
                    })
                }
            }
        };
        (claims.sub, checked)
    }

    /// Delete the requested accounts' JWTs, close their clients, reload, and answer.
    fn delete(self: Arc<Self>, server: Arc<Server>, reply: Option<Vec<u8>>, payload: Vec<u8>) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        runtime.spawn(async move {
            let reply = reply.as_deref();
            let (requester, checked) = self.deletion(&server, &payload);
            let accounts = match checked {
                Ok(accounts) => accounts,
                Err(e) => {
                    let message = format!("delete accounts request by {requester} failed");
                    self.respond(&server, reply, "", &message, Err(e));
                    return;
                }
            };
            let hard = server
                .options()
                .operator
                .as_ref()
                .is_some_and(|o| o.delete == ClaimsDelete::Remove);
            let mut errors = Vec::new();
            let mut removed = Vec::new();
            let mut passed = 0;
            for key in &accounts {
                let path = jwt_path(&self.dir, key);
                let done = if hard {
                    std::fs::remove_file(&path)
                } else {
                    let mut renamed = path.clone().into_os_string();
                    renamed.push(".deleted");
                    std::fs::rename(&path, renamed)
                };
                match done {
                    Ok(()) => {
                        passed += 1;
                        removed.push(key.clone());
                    }
                    // Nothing stored is nothing to delete, and counts as done.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => passed += 1,
                    Err(e) => errors.push(format!("{}: {e}", path.display())),
                }
            }
            expire_clients(&server, &removed);
            if !removed.is_empty() {
                if let Err(e) = server.reload().await {
                    tracing::error!("reload after deleting accounts: {e}");
                }
            }
            if errors.is_empty() {
                let message = format!("deleted {passed} accounts");
                self.respond(&server, reply, "", &message, Ok(()));
            } else {
                let message = format!("deleted {passed} accounts, failed for {}", errors.len());
                self.respond(&server, reply, "", &message, Err(errors.join("\n")));
            }
        });
    }

    fn list(&self, server: &Server, reply: &[u8]) {
        match stored(&self.dir) {
            Ok(stored) => {
                let data = stored
                    .into_iter()
                    .filter(|(_, _, expired)| !expired)
                    .map(|(key, _, _)| key)
                    .collect::<Vec<_>>();
                tracing::debug!("list request responded with {} account ids", data.len());
                let body = ListReply {
                    data,
                    server: self.server_info(server),
                };
                self.reply(
                    server,
                    Some(reply),
                    &serde_json::to_vec(&body).unwrap_or_default(),
                );
            }
            // As on nats-server, the requester times out.
            Err(e) => tracing::error!("list request error: {e}"),
        }
    }

    fn pack(&self, server: &Server, reply: &[u8], theirs: &[u8], flush: &mut FlushSet) {
        let stored = match stored(&self.dir) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!("DirResolver - Pack request error: {e}");
                return;
            }
        };
        let Some(account) = server.account(&server.system_account()) else {
            return;
        };
        if store_hash(&stored).as_slice() != theirs {
            for (key, text, expired) in &stored {
                if !expired {
                    let pack = format!("{key}|{text}");
                    route::publish_into(&account, reply, None, None, pack.as_bytes(), flush);
                }
            }
        }
        route::publish_into(&account, reply, None, None, b"", flush);
    }
}

/// Whether `key` is an account's public NKEY.
fn is_account_key(key: &str) -> bool {
    key.starts_with('A') && nkeys::KeyPair::from_public_key(key).is_ok()
}

/// Tell the clients of deleted accounts and close them, as nats-server does when an
/// account's JWT is deleted (the account expires).
fn expire_clients(server: &Server, accounts: &[String]) {
    if accounts.is_empty() {
        return;
    }
    let mut frame = bytes::BytesMut::new();
    crate::proto::encode::err(&mut frame, "Account Authentication Expired");
    for client in server.clients() {
        let gone = client
            .account()
            .is_some_and(|a| accounts.iter().any(|k| k == &a.name));
        if gone {
            client.out.queue_proto(&frame);
            client.out.close(CloseReason::AuthenticationExpired);
        }
    }
}

impl InternalHandler for ClaimRequests {
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) {
        let me = &self.0;
        let Some(server) = me.server.upgrade() else {
            return;
        };
        let subject = String::from_utf8_lossy(msg.subject).into_owned();
        let tokens: Vec<&str> = subject.split('.').collect();
        let reply = msg.reply.map(<[u8]>::to_vec);
        match tokens.as_slice() {
            ["$SYS", "REQ", "ACCOUNT", key, "CLAIMS", "LOOKUP"] => {
                let Some(reply) = msg.reply else { return };
                let Some(account) = server.account(&server.system_account()) else {
                    return;
                };
                let stored = std::fs::read(jwt_path(&me.dir, key)).unwrap_or_default();
                route::publish_into(&account, reply, None, None, &stored, flush);
            }
            ["$SYS", "REQ", "CLAIMS", "UPDATE"] => {
                me.clone().update(server, None, reply, msg.payload.to_vec())
            }
            ["$SYS", "REQ", "ACCOUNT", key, "CLAIMS", "UPDATE"]
            | ["$SYS", "ACCOUNT", key, "CLAIMS", "UPDATE"] => {
                me.clone()
                    .update(server, Some(key.to_string()), reply, msg.payload.to_vec())
            }
            ["$SYS", "REQ", "CLAIMS", "LIST"] => {
                if let Some(reply) = msg.reply {
                    me.list(&server, reply);
                }
            }
            ["$SYS", "REQ", "CLAIMS", "PACK"] => {
                if let Some(reply) = msg.reply {
                    me.pack(&server, reply, msg.payload, flush);
                }
            }
            ["$SYS", "REQ", "CLAIMS", "DELETE"] => {
                me.clone().delete(server, reply, msg.payload.to_vec())
            }
            _ => {}
        }
    }
}
