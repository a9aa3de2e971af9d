//! The directory account resolver's requests, as nats-server answers them: a system-account
//! user pushes an account JWT with `$SYS.REQ.CLAIMS.UPDATE` or
//! `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` (or the older `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE`);
//! natsd checks it, stores it as `<dir>/<key>.jwt` and reloads, so the account appears (or
//! takes its new limits) at once; the reply is `{"server": {...}, "data": {"account", "code":
//! 200, "message": "jwt updated"}}` or an `"error"` with code 500. `$SYS.REQ.ACCOUNT.<key>.
//! CLAIMS.LOOKUP` answers with the stored JWT (empty when there is none).

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use serde_json::json;

use crate::jwt::{self, Kind};
use crate::route;
use crate::server::Server;
use crate::subscription::{FlushSet, InternalHandler, InternalMsg};

struct ClaimRequests {
    server: Weak<Server>,
    dir: PathBuf,
    runtime: Option<tokio::runtime::Handle>,
}

/// Subscribe the system account to the resolver requests when the directory resolver is on.
pub(crate) fn install(server: &Arc<Server>) {
    let opts = server.options();
    let Some(dir) = opts.operator.as_ref().and_then(|o| o.dir.clone()) else {
        return;
    };
    let Some(account) = server.account(&server.system_account()) else {
        return;
    };
    let handler = Arc::new(ClaimRequests {
        server: Arc::downgrade(server),
        dir,
        runtime: tokio::runtime::Handle::try_current().ok(),
    });
    for subject in [
        "$SYS.REQ.CLAIMS.UPDATE",
        "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE",
        "$SYS.ACCOUNT.*.CLAIMS.UPDATE",
        "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP",
    ] {
        if let Err(e) =
            route::subscribe_internal(&account, subject.as_bytes(), None, handler.clone())
        {
            tracing::warn!("account resolver subscription {subject}: {e}");
        }
    }
}

/// Whether `claims` may be stored: signed by a key of a trusted operator.
fn trusted(server: &Server, claims: &jwt::Claims) -> bool {
    let opts = server.options();
    opts.operator.as_ref().is_some_and(|mode| {
        mode.operators.iter().any(|token| {
            jwt::decode(token, Kind::Operator)
                .is_ok_and(|op| op.operator_keys().any(|k| k == claims.iss))
        })
    })
}

impl ClaimRequests {
    /// Check and store the pushed JWT, reload, and answer.
    fn update(
        &self,
        server: Arc<Server>,
        subject_key: Option<String>,
        reply: Option<Vec<u8>>,
        payload: Vec<u8>,
    ) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        let dir = self.dir.clone();
        runtime.spawn(async move {
            let token = String::from_utf8_lossy(&payload).trim().to_string();
            let outcome = match jwt::decode(&token, Kind::Account) {
                Err(e) => Err(("n/a".to_string(), "jwt update resulted in error", e.to_string())),
                Ok(claims) if subject_key.as_ref().is_some_and(|k| k != &claims.sub) => Err((
                    subject_key.clone().unwrap_or_default(),
                    "jwt update resulted in error",
                    "subject does not match jwt content".to_string(),
                )),
                Ok(claims) if claims.is_expired_at(chrono::Utc::now().timestamp()) => Err((
                    claims.sub.clone(),
                    "jwt validation failed",
                    "claim is expired".to_string(),
                )),
                Ok(claims) if !trusted(&server, &claims) => Err((
                    claims.sub.clone(),
                    "jwt update resulted in error",
                    "not trusted".to_string(),
                )),
                Ok(claims) => {
                    let path = dir.join(format!("{}.jwt", claims.sub));
                    let tmp = dir.join(format!(".{}.jwt.tmp", claims.sub));
                    let stored = std::fs::write(&tmp, &token)
                        .and_then(|()| std::fs::rename(&tmp, &path))
                        .map_err(|e| e.to_string());
                    match stored {
                        Err(e) => Err((claims.sub.clone(), "jwt update resulted in error", e)),
                        Ok(()) => match server.reload().await {
                            Ok(()) => Ok(claims.sub.clone()),
                            Err(e) => Err((
                                claims.sub.clone(),
                                "jwt update resulted in error",
                                e.to_string(),
                            )),
                        },
                    }
                }
            };
            let body = match &outcome {
                Ok(account) => {
                    tracing::debug!("jwt updated - {}", account);
                    json!({
                        "server": {},
                        "data": { "account": account, "code": 200, "message": "jwt updated" },
                    })
                }
                Err((account, message, error)) => {
                    tracing::error!("{} - {} - {}", message, account, error);
                    json!({
                        "server": {},
                        "error": { "account": account, "code": 500, "description": format!("{message}: {error}") },
                    })
                }
            };
            if let (Some(reply), Some(account)) =
                (reply, server.account(&server.system_account()))
            {
                let payload = serde_json::to_vec(&body).unwrap_or_default();
                route::publish(&account, &reply, None, None, &payload);
            }
        });
    }
}

impl InternalHandler for ClaimRequests {
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) {
        let Some(server) = self.server.upgrade() else {
            return;
        };
        let subject = String::from_utf8_lossy(msg.subject).into_owned();
        let tokens: Vec<&str> = subject.split('.').collect();
        match tokens.as_slice() {
            ["$SYS", "REQ", "ACCOUNT", key, "CLAIMS", "LOOKUP"] => {
                let Some(reply) = msg.reply else { return };
                let Some(account) = server.account(&server.system_account()) else {
                    return;
                };
                let stored = std::fs::read(self.dir.join(format!("{key}.jwt"))).unwrap_or_default();
                route::publish_into(&account, reply, None, None, &stored, flush);
            }
            ["$SYS", "REQ", "CLAIMS", "UPDATE"] => self.update(
                server,
                None,
                msg.reply.map(<[u8]>::to_vec),
                msg.payload.to_vec(),
            ),
            ["$SYS", "REQ", "ACCOUNT", key, "CLAIMS", "UPDATE"]
            | ["$SYS", "ACCOUNT", key, "CLAIMS", "UPDATE"] => self.update(
                server,
                Some(key.to_string()),
                msg.reply.map(<[u8]>::to_vec),
                msg.payload.to_vec(),
            ),
            _ => {}
        }
    }
}
