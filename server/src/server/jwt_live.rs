//! Operator mode: new account claims (a push to the directory resolver, or a reload) reaching
//! the connections already made, as nats-server applies them. For each account whose JWT
//! changed, its connections are walked oldest first:
//!
//! - past the new `conn` limit, the newest connections are closed (`maximum account active
//!   connections exceeded`), the oldest keep their seats;
//! - a connection holding as many subscriptions as its limit now allows (the user's, the
//!   account's `subs`, the server's `max_subs`, whichever is lowest) or more is closed with
//!   `maximum subscriptions exceeded` (the new `payload` limit needs nothing here: every
//!   read batch takes the account's current limits);
//! - a user whose permissions are the account's defaults gets the new defaults, and loses the
//!   subscriptions they no longer allow;
//! - a bearer-token user of an account that now sets `disallow_bearer` is closed with
//!   `Authorization Violation`, a revoked user with `User Authentication Revoked`;
//! - a user signed by a signing key the account dropped, or whose scope changed, is closed
//!   without a word.
//!
//! An account JWT that expires (`exp`) closes the account's connections with `Account
//! Authentication Expired` at that moment ([`AccountExpiry`]); one already expired when a
//! reload brings it closes them with `Authorization Violation`, as nats-server's
//! re-authentication of every connection on a reload does.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::Server;
use crate::auth::{Authenticator, ClientPermissions};
use crate::client::{self, ClientShared};
use crate::jwt;
use crate::outbound::CloseReason;
use crate::proto::encode;

/// Queue `-ERR 'text'` for `client` and close it for `reason` (what is queued goes out first).
fn close_with(client: &ClientShared, text: &str, reason: CloseReason) {
    let mut frame = bytes::BytesMut::new();
    encode::err(&mut frame, text);
    client.out.queue_proto(&frame);
    client.out.close(reason);
}

/// The lowest of the limits that are set (`-1`, or any negative, is none; so is a server
/// `max_subs` of 0).
fn lowest_limit(limits: &[i64]) -> Option<i64> {
    limits.iter().copied().filter(|&l| l >= 0).min()
}

impl Server {
    /// After a reload in operator mode: apply each changed account's claims in `new` to the
    /// connections of that account.
    pub(super) fn apply_account_claims(&self, old: &Authenticator, new: &Authenticator) {
        let clients = self.clients();
        let mut by_account: HashMap<String, Vec<Arc<ClientShared>>> = HashMap::new();
        for c in clients {
            if c.out.is_closing() {
                continue;
            }
            if let Some(account) = c.account() {
                by_account.entry(account.name.clone()).or_default().push(c);
            }
        }
        for (key, mut clients) in by_account {
            let Some(claims) = new.jwt_account(&key) else {
                continue;
            };
            let previous = old.jwt_account(&key);
            if previous.is_some_and(|p| p.jti == claims.jti && p.iss == claims.iss) {
                continue;
            }
            clients.sort_by_key(|c| (c.out.start, c.out.cid));
            self.apply_claims_to(claims, previous, &clients);
        }
    }

    fn apply_claims_to(
        &self,
        claims: &jwt::Claims,
        previous: Option<&jwt::Claims>,
        clients: &[Arc<ClientShared>],
    ) {
        let limits = &claims.nats.limits;
        let server_max_subs = self.options().max_subs as i64;
        let defaults_changed =
            previous.is_none_or(|p| p.nats.default_permissions != claims.nats.default_permissions);
        let defaults = Some(&claims.nats.default_permissions)
            .filter(|p| !p.is_empty())
            .map(|p| Arc::new(ClientPermissions::compile(&crate::auth::jwt_permissions(p))));
        // On a reload nats-server authenticates every connection again: an account JWT that
        // arrives already expired refuses them all.
        if claims.is_expired_at(chrono::Utc::now().timestamp()) {
            for client in clients {
                close_with(
                    client,
                    "Authorization Violation",
                    CloseReason::AuthenticationViolation,
                );
            }
            return;
        }
        let mut seated = 0i64;
        for client in clients {
            if limits.conn >= 0 && seated >= limits.conn {
                close_with(
                    client,
                    "maximum account active connections exceeded",
                    CloseReason::MaxAccountConnectionsExceeded,
                );
                continue;
            }
            seated += 1;
            let (login, user, issued_at) = {
                let meta = client.meta.lock();
                (
                    meta.jwt_login.clone(),
                    meta.user.clone(),
                    meta.jwt_issued_at,
                )
            };
            let user_subs = login.as_ref().map_or(-1, |l| l.max_subs);
            let server_subs = if server_max_subs > 0 {
                server_max_subs
            } else {
                -1
            };
            if let Some(max) = lowest_limit(&[user_subs, limits.subs, server_subs]) {
                if client.subs.lock().len() as i64 >= max {
                    close_with(
                        client,
                        "maximum subscriptions exceeded",
                        CloseReason::MaxSubscriptionsExceeded,
                    );
                    continue;
                }
            }
            let Some(login) = login else {
                continue;
            };
            if login.default_permissions && defaults_changed {
                if let Some(account) = client.account() {
                    client::apply_new_permissions(client, &account, defaults.clone());
                }
            }
            if login.bearer && limits.disallow_bearer {
                tracing::error!(
                    "{} - cid:{} - authentication error - bearer token not allowed",
                    client.out.addr,
                    client.out.cid
                );
                close_with(
                    client,
                    "Authorization Violation",
                    CloseReason::AuthenticationViolation,
                );
                continue;
            }
            if let (Some(user), Some(issued_at)) = (&user, issued_at) {
                if claims.revokes(user, issued_at) {
                    close_with(
                        client,
                        "User Authentication Revoked",
                        CloseReason::Revocation,
                    );
                    continue;
                }
            }
        }
        // A signing key dropped, or its scope changed: its users lose their seats.
        let Some(previous) = previous else {
            return;
        };
        for client in clients {
            let Some(login) = client.meta.lock().jwt_login.clone() else {
                continue;
            };
            if login.signing_key.is_empty() {
                continue;
            }
            let now = claims.account_signer(&login.signing_key);
            let before = previous.account_signer(&login.signing_key);
            if now.is_none() || now != before {
                client.out.close(CloseReason::AuthenticationViolation);
            }
        }
    }

    /// An account JWT reached its `exp`: close the account's connections, unless newer claims
    /// (with another expiry) have replaced it meanwhile.
    fn expire_account(&self, key: &str, exp: i64) {
        let auth = self.authenticator();
        if auth.jwt_account(key).is_none_or(|c| c.exp != exp) {
            return;
        }
        for client in self.clients() {
            if client.account().is_some_and(|a| a.name == key) {
                close_with(
                    &client,
                    "Account Authentication Expired",
                    CloseReason::AuthenticationExpired,
                );
            }
        }
    }
}

/// One timer per account JWT with an `exp` still ahead, rescheduled whenever a reload brings
/// new claims; attached to the server as a [`Subsystem`](super::Subsystem).
pub(crate) struct AccountExpiry {
    server: Weak<Server>,
    timers: Mutex<HashMap<String, (i64, tokio::task::JoinHandle<()>)>>,
}

impl AccountExpiry {
    /// Start the timers for `server`'s accounts (on the runtime).
    pub(crate) fn start(server: &Arc<Server>) -> Arc<AccountExpiry> {
        let expiry = Arc::new(AccountExpiry {
            server: Arc::downgrade(server),
            timers: Mutex::new(HashMap::new()),
        });
        expiry.schedule(server);
        expiry
    }

    fn schedule(&self, server: &Server) {
        let auth = server.authenticator();
        let now = chrono::Utc::now().timestamp();
        let wanted: HashMap<String, i64> = auth
            .jwt_accounts()
            .filter(|(_, c)| c.exp > now)
            .map(|(k, c)| (k.clone(), c.exp))
            .collect();
        let mut timers = self.timers.lock();
        timers.retain(|key, (exp, task)| {
            let keep = wanted.get(key) == Some(exp) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, exp) in wanted {
            if timers.contains_key(&key) {
                continue;
            }
            let server = self.server.clone();
            let account = key.clone();
            let task = tokio::spawn(async move {
                let left = exp - chrono::Utc::now().timestamp();
                tokio::time::sleep(Duration::from_secs(left.max(0) as u64)).await;
                if let Some(server) = server.upgrade() {
                    server.expire_account(&account, exp);
                }
            });
            timers.insert(key, (exp, task));
        }
    }
}

impl super::Subsystem for AccountExpiry {
    fn reloaded(&self, server: &Server) {
        self.schedule(server);
    }

    fn shutdown(&self) {
        for (_, (_, task)) in self.timers.lock().drain() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lowest_limit;

    #[test]
    fn the_lowest_set_limit_wins() {
        assert_eq!(lowest_limit(&[-1, -1, -1]), None);
        assert_eq!(lowest_limit(&[5, -1, 3]), Some(3));
        assert_eq!(lowest_limit(&[-1, 0, 7]), Some(0));
    }
}
