//! The CONNECT handshake: options as nats-server reads them, authentication, binding the
//! connection to its account.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Deserialize;

use crate::account::Account;
use crate::auth::{ClientPermissions, Credentials, Identity};
use crate::outbound::CloseReason;
use crate::proto::encode;

use super::connection::{Connection, OpResult};

/// The CONNECT options that govern the protocol; missing fields, and a connection that has
/// not sent CONNECT, take nats-server's defaults (verbose and pedantic on).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub(super) struct ProtocolOptions {
    pub(super) verbose: bool,
    pub(super) pedantic: bool,
    pub(super) echo: bool,
    pub(super) headers: bool,
    pub(super) no_responders: bool,
    pub(super) protocol: i64,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        ProtocolOptions {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            protocol: 0,
        }
    }
}

/// CONNECT options.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConnectOptions {
    #[serde(flatten)]
    protocol: ProtocolOptions,
    name: Option<String>,
    lang: Option<String>,
    version: Option<String>,
    user: Option<String>,
    pass: Option<String>,
    auth_token: Option<String>,
    nkey: Option<String>,
    sig: Option<String>,
    jwt: Option<String>,
    account: Option<serde_json::Value>,
    new_account: Option<serde_json::Value>,
}

/// CONNECT JSON for the trace log, with secrets replaced as nats-server does.
fn redact_connect(json: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(mut map)) => {
            for key in ["pass", "auth_token", "sig", "jwt"] {
                if map.get(key).is_some_and(|v| !v.is_null()) {
                    map.insert(
                        key.to_string(),
                        serde_json::Value::String("[REDACTED]".into()),
                    );
                }
            }
            serde_json::Value::Object(map).to_string()
        }
        _ => String::from_utf8_lossy(json).into_owned(),
    }
}

impl Connection {
    pub(super) async fn process_connect(&mut self, json: &[u8]) -> OpResult {
        tracing::trace!(
            "{} - cid:{} - <<- [CONNECT {}]",
            self.shared.out.addr,
            self.shared.out.cid,
            redact_connect(json)
        );
        // Invalid JSON or a wrong value type: nats-server closes without an -ERR. A `null`
        // leaves the field at its default, as Go's decoder does (async-nats sends `"name":null`).
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(json) else {
            return Err(CloseReason::ParseError);
        };
        if let Some(fields) = value.as_object_mut() {
            fields.retain(|_, v| !v.is_null());
        }
        let Ok(mut opts) = ConnectOptions::deserialize(value) else {
            return Err(CloseReason::ParseError);
        };
        if let Some(carried) = self.server.transport_credentials() {
            carried.fill(
                &mut opts.user,
                &mut opts.pass,
                &mut opts.auth_token,
                &mut opts.jwt,
            );
        }
        let protocol = opts.protocol;
        if protocol.protocol < 0 || protocol.protocol > 1 {
            self.send_err("invalid client protocol");
            return Err(CloseReason::BadClientProtocolVersion);
        }
        if protocol.no_responders && !protocol.headers {
            self.send_err("no responders requires headers support");
            return Err(CloseReason::ProtocolViolation);
        }
        if opts.account.is_some() || opts.new_account.is_some() {
            self.send_err("Authorization Violation");
            return Err(CloseReason::AuthenticationViolation);
        }
        let (peer_cert, websocket, peer) = {
            let meta = self.shared.meta.lock();
            let peer = meta.tcp_peer.unwrap_or(self.shared.out.addr).ip();
            (meta.peer_cert.clone(), meta.websocket, peer)
        };
        let creds = Credentials {
            user: opts.user.as_deref(),
            pass: opts.pass.as_deref(),
            token: opts.auth_token.as_deref(),
            nkey: opts.nkey.as_deref(),
            jwt: opts.jwt.as_deref(),
            sig: opts.sig.as_deref(),
            nonce: self.shared.nonce.get().map_or(&[], |n| n.as_bytes()),
            cert: peer_cert.as_deref(),
            websocket,
        };
        // A reload during the (slow) bcrypt check would not see this connection yet, so check
        // again against the configuration that is current once the check is done.
        let identity = loop {
            let auth = self.server.authenticator();
            let identity = auth.authenticate(creds, self.server.password_cache()).await;
            if Arc::ptr_eq(&auth, &self.server.authenticator()) {
                break identity;
            }
        };
        let mut window_left = None;
        let identity = identity.filter(|id| match self.login_window(id, peer) {
            Ok(left) => {
                window_left = left;
                true
            }
            Err(()) => false,
        });
        let Some(identity) = identity else {
            self.count_auth_failure(opts.nkey.as_deref().or(opts.user.as_deref()));
            // A refused JWT login names no user: nats-server learns the user's key only
            // when the login succeeds, and logs the bare line.
            if let Some(nkey) = &opts.nkey {
                tracing::error!(
                    "{} - cid:{} - authentication error - Nkey {:?}",
                    self.shared.out.addr,
                    self.shared.out.cid,
                    nkey
                );
            } else if let Some(user) = &opts.user {
                tracing::error!(
                    "{} - cid:{} - authentication error - User {:?}",
                    self.shared.out.addr,
                    self.shared.out.cid,
                    user
                );
            } else {
                tracing::error!(
                    "{} - cid:{} - authentication error",
                    self.shared.out.addr,
                    self.shared.out.cid
                );
            }
            self.send_err("Authorization Violation");
            return Err(CloseReason::AuthenticationViolation);
        };
        let Some(account) = self.server.account(&identity.account) else {
            self.send_err("Authorization Violation");
            return Err(CloseReason::AuthenticationViolation);
        };
        self.opts = ProtocolOptions {
            headers: protocol.headers && !self.server.options().no_header_support,
            ..protocol
        };
        self.shared
            .out
            .wants_headers
            .store(self.opts.headers, Ordering::Relaxed);
        {
            let mut meta = self.shared.meta.lock();
            meta.name = opts.name.unwrap_or_default();
            meta.lang = opts.lang.unwrap_or_default();
            meta.version = opts.version.unwrap_or_default();
            meta.user = identity.user.as_ref().map(|u| u.name.clone());
            // A JWT user is its public key.
            let jwt_user = identity
                .jwt_login
                .as_ref()
                .and(identity.user.as_ref())
                .map(|u| u.name.clone());
            meta.connect_user = creds
                .nkey
                .or(creds.user)
                .map(str::to_string)
                .or(jwt_user)
                .or_else(|| creds.token.map(|_| "[REDACTED]".to_string()))
                .unwrap_or_default();
            meta.jwt_issued_at = identity.jwt_issued_at;
            meta.jwt_shown = identity.jwt_shown.clone();
            meta.jwt_login = identity.jwt_login.clone();
            meta.account = account.name.clone();
        }
        self.bind_identity(account, &identity)?;
        let until_expiry = identity.expires.map(|at| {
            let left = at - chrono::Utc::now().timestamp();
            std::time::Duration::from_secs(left.max(0) as u64)
        });
        // The JWT's expiry or the end of its time window, whichever comes first.
        if let Some(left) = until_expiry.into_iter().chain(window_left).min() {
            self.expire_in(left);
        }
        self.connected = true;
        if self.opts.verbose {
            self.queue_self(encode::OK);
        }
        Ok(())
    }

    /// A JWT user's `src` and `times` checked against the connection's peer and the time:
    /// `Ok(Some(left))` when a time window admits the login and closes `left` from now. A
    /// refusal is logged with its reason, as nats-server logs it.
    fn login_window(
        &self,
        identity: &Identity,
        peer: std::net::IpAddr,
    ) -> Result<Option<std::time::Duration>, ()> {
        let Some(limits) = &identity.login_limits else {
            return Ok(None);
        };
        limits
            .admit(peer, jiff::Timestamp::now())
            .map_err(|refused| {
                tracing::error!(
                    "{} - cid:{} - {refused}",
                    self.shared.out.addr,
                    self.shared.out.cid
                );
            })
    }

    /// Close the connection `left` from now, when its user JWT expires or its time window
    /// ends, as nats-server does.
    fn expire_in(&self, left: std::time::Duration) {
        let out = self.shared.out.clone();
        tokio::spawn(async move {
            tokio::time::sleep(left).await;
            if out.is_closing() {
                return;
            }
            let mut frame = bytes::BytesMut::new();
            encode::err(&mut frame, "User Authentication Expired");
            out.queue_proto(&frame);
            out.close(CloseReason::AuthenticationExpired);
        });
    }

    /// Count a refused login, and against the account when the user name (or NKEY) is one of
    /// its users (a wrong password or signature), so an operator sees whose logins fail.
    fn count_auth_failure(&self, user: Option<&str>) {
        self.server
            .counters()
            .auth_failures
            .fetch_add(1, Ordering::Relaxed);
        let account = user
            .and_then(|u| {
                self.server
                    .authenticator()
                    .user(u)
                    .map(|e| e.account.clone())
            })
            .and_then(|name| self.server.account(&name));
        if let Some(account) = account {
            account.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn bind_identity(&mut self, account: Arc<Account>, identity: &Identity) -> OpResult {
        let limits = account.settings().limits;
        let same = Arc::ptr_eq(&account, &self.account) && self.shared.account().is_some();
        if !same
            && limits.max_connections >= 0
            && account.connections() as i64 >= limits.max_connections
        {
            self.send_err("maximum account active connections exceeded");
            return Err(CloseReason::MaxAccountConnectionsExceeded);
        }
        self.bind_account(account, identity.permissions());
        self.user_max_subs = identity.max_subs;
        self.user_max_payload = identity.max_payload;
        self.close_if_at_subscription_limit(limits.max_subscriptions);
        Ok(())
    }

    /// A connection already holding as many subscriptions as its limits allow (at login: a
    /// limit of 0, which a user or account JWT without `subs` has) is told `maximum
    /// subscriptions exceeded` and closed a moment later, the CONNECT itself succeeding, as
    /// on nats-server.
    fn close_if_at_subscription_limit(&mut self, account_subs: i64) {
        let server_subs = self.server.options().max_subs;
        let server_subs = if server_subs > 0 {
            server_subs as i64
        } else {
            -1
        };
        let lowest = [self.user_max_subs, account_subs, server_subs]
            .into_iter()
            .filter(|&l| l >= 0)
            .min();
        let Some(lowest) = lowest else {
            return;
        };
        if (self.shared.subs.lock().len() as i64) < lowest {
            return;
        }
        self.send_err("maximum subscriptions exceeded");
        let out = self.shared.out.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            out.close(CloseReason::MaxSubscriptionsExceeded);
        });
    }

    pub(super) fn bind_account(
        &mut self,
        account: Arc<Account>,
        permissions: Option<Arc<ClientPermissions>>,
    ) {
        if let Some(previous) = self.shared.account() {
            if !Arc::ptr_eq(&previous, &account) {
                // A second CONNECT moving accounts: subscriptions stay with the old account's
                // subject space, so drop them.
                self.remove_all_subs(&previous);
                previous.num_connections.fetch_sub(1, Ordering::Relaxed);
                account.num_connections.fetch_add(1, Ordering::Relaxed);
                account
                    .stats
                    .total_connections
                    .fetch_add(1, Ordering::Relaxed);
            }
        } else {
            account.num_connections.fetch_add(1, Ordering::Relaxed);
            account
                .stats
                .total_connections
                .fetch_add(1, Ordering::Relaxed);
        }
        self.shared.account.store(Some(account.clone()));
        self.account = account;
        self.shared.out.permissions.store(permissions.clone());
        self.permissions = permissions;
        self.l1.clear();
        self.l1_genid = u64::MAX;
        self.pub_perm_cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Result<ConnectOptions, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn connect_options_default_to_nats_server_and_refuse_wrong_types() {
        let opts = decode("{}").expect("empty CONNECT");
        assert!(opts.protocol.verbose && opts.protocol.pedantic && opts.protocol.echo);
        assert!(!opts.protocol.headers && !opts.protocol.no_responders);
        assert_eq!(opts.protocol.protocol, 0);

        let opts = decode(
            r#"{"verbose":false,"echo":false,"headers":true,"protocol":1,"name":"n","user":"u"}"#,
        )
        .expect("CONNECT");
        assert!(!opts.protocol.verbose && opts.protocol.pedantic && !opts.protocol.echo);
        assert!(opts.protocol.headers);
        assert_eq!(opts.protocol.protocol, 1);
        assert_eq!(opts.name.as_deref(), Some("n"));
        assert_eq!(opts.user.as_deref(), Some("u"));

        assert!(decode(r#"{"verbose":"yes"}"#).is_err());
        assert!(decode(r#"{"protocol":"1"}"#).is_err());
        assert!(decode(r#"{"name":1}"#).is_err());
    }
}
