//! One client connection: a reader task that parses and routes ([`connection`]), a writer
//! task that flushes ([`crate::outbound`]), and the CONNECT handshake ([`connect`]).
//!
//! Data path: the reader parses ops in place from its read buffer; a publish is matched in
//! the account's sublist (through a small per-connection cache keyed on the sublist's
//! generation) and copied once into each receiver's outbound buffer under that receiver's
//! mutex. Receivers whose buffer went from empty to non-empty are collected and woken once
//! per read batch, and each receiver's writer task flushes everything pending in one write.
//! Flow control (holding back publishers of receivers that fall behind) is in
//! [`crate::outbound`].
//!
//! The server that accepted the connection is reached through [`ConnectionHost`] only.

mod connect;
mod connection;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::BytesMut;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::io::AsyncRead;

use crate::account::Account;
use crate::auth::{Authenticator, ClientPermissions, PasswordCache, SubscribeCheck};
use crate::config::Options;
use crate::outbound::{self, ClientId, CloseReason, Outbound, Outlet, Queued};
use crate::proto::encode;
use crate::subscription::{ClosedSub, SubOwner, SubRef};

use self::connection::Connection;

/// What a connection needs from the server that accepted it.
pub(crate) trait ConnectionHost: Send + Sync + 'static {
    /// The options in force (swapped whole on reload).
    fn options(&self) -> Arc<Options>;
    fn authenticator(&self) -> Arc<Authenticator>;
    fn password_cache(&self) -> &PasswordCache;
    /// The account connections land in without credentials.
    fn global_account(&self) -> Arc<Account>;
    fn account(&self, name: &str) -> Option<Arc<Account>>;
    /// The INFO JSON for `client` (bound to `account` once it has one).
    fn info_json(&self, client: &ClientShared, account: Option<&Account>) -> Vec<u8>;
    fn counters(&self) -> &ConnectionCounters;
    /// The connection has ended (its subscriptions are already gone).
    fn closed(&self, client: &Arc<ClientShared>, reason: CloseReason);
    /// Credentials the transport carried outside CONNECT (WebSocket cookies).
    fn transport_credentials(&self) -> Option<&TransportCredentials> {
        None
    }
}

/// Credentials that arrived with the transport; each one stands in for the CONNECT field
/// the client left empty.
#[derive(Debug, Clone, Default)]
pub(crate) struct TransportCredentials {
    pub(crate) user: Option<String>,
    pub(crate) pass: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) jwt: Option<String>,
}

impl TransportCredentials {
    fn fill(
        &self,
        user: &mut Option<String>,
        pass: &mut Option<String>,
        token: &mut Option<String>,
        jwt: &mut Option<String>,
    ) {
        for (field, value) in [
            (user, &self.user),
            (pass, &self.pass),
            (token, &self.token),
            (jwt, &self.jwt),
        ] {
            if field.as_deref().is_none_or(str::is_empty) && value.is_some() {
                field.clone_from(value);
            }
        }
    }
}

/// Server-wide counters that connections bump (rare events only).
#[derive(Default)]
pub struct ConnectionCounters {
    pub stale_connections: AtomicU64,
    /// Times a client publisher waited for a receiver that was behind (`/varz` `stalled_clients`).
    pub stalled_clients: AtomicU64,
    /// CONNECTs refused for bad credentials, unknown users included (`/metrics`
    /// `gnatsd_auth_failures`; nats-server only publishes an advisory per failure).
    pub auth_failures: AtomicU64,
}

/// Descriptive data about a connection, for monitoring.
#[derive(Debug, Clone, Default)]
pub struct ConnMeta {
    /// Who the CONNECT says it is, as nats-server reports a requester (`ClientInfo.user`):
    /// its NKEY, else its user name, else `[REDACTED]` for a token.
    pub connect_user: String,
    pub name: String,
    pub lang: String,
    pub version: String,
    pub user: Option<String>,
    /// When the user's JWT was issued (operator mode).
    pub jwt_issued_at: Option<i64>,
    /// The user JWT's `/connz?auth=true` fields (operator mode).
    pub jwt_shown: Option<Arc<crate::auth::JwtShown>>,
    /// What new claims of the account are checked against (operator mode).
    pub jwt_login: Option<Arc<crate::auth::JwtLogin>>,
    pub account: String,
    pub tls: bool,
    /// Negotiated TLS version as nats-server names it (`"1.3"`); empty without TLS.
    pub tls_version: String,
    /// Negotiated cipher suite as Go names it (`"TLS_AES_128_GCM_SHA256"`); empty without TLS.
    pub tls_cipher: String,
    /// The handshake came before INFO (`handshake_first`).
    pub tls_first: bool,
    /// The certificates the client presented, for `/connz?auth=true`.
    pub tls_peer_certs: Vec<crate::tls::PeerCertInfo>,
    /// The client certificate's names, kept under `verify_and_map` for CONNECT to map.
    pub peer_cert: Option<Arc<crate::tls::PeerCert>>,
    /// Connected through the WebSocket listener.
    pub websocket: bool,
    /// The TCP peer, when the connection's address is the one a WebSocket proxy forwarded
    /// (`X-Forwarded-For`): a JWT user's `src` is checked against the peer, as any client
    /// can write that header.
    pub tcp_peer: Option<std::net::SocketAddr>,
}

/// A connection as the server's registry, reloads and the monitor see it: the outbound half
/// that publishers deliver into, and the account and subscriptions the reader manages.
pub struct ClientShared {
    pub out: Arc<Outbound>,
    pub subs: Mutex<FxHashMap<Box<[u8]>, SubRef>>,
    pub meta: Mutex<ConnMeta>,
    account: ArcSwapOption<Account>,
    /// The subscriptions held when the connection closed, for `/connz?state=closed`.
    closed_subs: Mutex<Vec<ClosedSub>>,
    /// Written only by the connection's reader, once per read batch.
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    pub rtt_us: AtomicU64,
    pub pings_out: AtomicU32,
    /// The nonce sent in this connection's INFO for an NKEY user to sign (unset when NKEY
    /// users did not exist as it connected).
    pub nonce: std::sync::OnceLock<String>,
}

impl ClientShared {
    pub fn new(cid: ClientId, addr: std::net::SocketAddr, max_pending: usize) -> Arc<ClientShared> {
        Arc::new(ClientShared {
            out: Arc::new(Outbound::new(cid, addr, max_pending)),
            subs: Mutex::new(FxHashMap::default()),
            meta: Mutex::new(ConnMeta::default()),
            account: ArcSwapOption::empty(),
            closed_subs: Mutex::new(Vec::new()),
            in_msgs: AtomicU64::new(0),
            in_bytes: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
            pings_out: AtomicU32::new(0),
            nonce: std::sync::OnceLock::new(),
        })
    }

    pub fn account(&self) -> Option<Arc<Account>> {
        self.account.load_full()
    }

    pub fn num_subs(&self) -> usize {
        self.subs.lock().len()
    }

    /// Round-trip time of the last answered server PING; zero before the first.
    pub fn rtt(&self) -> Duration {
        Duration::from_micros(self.rtt_us.load(Ordering::Relaxed))
    }

    /// The subscriptions this connection held when it closed (empty while open).
    pub fn take_closed_subs(&self) -> Vec<ClosedSub> {
        std::mem::take(&mut *self.closed_subs.lock())
    }
}

impl crate::subscription::Publisher for ClientShared {
    fn client_info(&self) -> crate::subscription::ClientInfo {
        let meta = self.meta.lock();
        let shown = meta.jwt_shown.as_deref();
        let start = self
            .out
            .start
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        crate::subscription::ClientInfo {
            start: natsd_conf::timestamp::rfc3339_ns(start),
            host: self.out.addr.ip().to_string(),
            id: self.out.cid,
            acc: self
                .account()
                .map_or_else(|| meta.account.clone(), |a| a.name.clone()),
            user: meta.connect_user.clone(),
            name: meta.name.clone(),
            lang: meta.lang.clone(),
            ver: meta.version.clone(),
            rtt: self.rtt().as_nanos() as u64,
            server: String::new(),
            jwt: meta
                .jwt_login
                .as_ref()
                .map(|l| l.jwt.clone())
                .unwrap_or_default(),
            issuer_key: shown.map(|s| s.issuer_key.clone()).unwrap_or_default(),
            name_tag: shown.map(|s| s.name.clone()).unwrap_or_default(),
            tags: shown.map(|s| s.tags.clone()).unwrap_or_default(),
            kind: "Client".into(),
            client_type: "nats".into(),
        }
    }
}

impl SubOwner for ClientShared {
    fn forget(&self, sub: &SubRef) {
        if let Some(account) = self.account() {
            account
                .sublist
                .remove(&sub.subject, sub.queue.as_deref(), sub);
        }
        let mut subs = self.subs.lock();
        if subs.get(&sub.sid).is_some_and(|s| s == sub) {
            subs.remove(&sub.sid);
        }
    }
}

/// Serve one accepted connection until it closes.
pub(crate) async fn serve<R>(
    server: Arc<dyn ConnectionHost>,
    shared: Arc<ClientShared>,
    mut reader: R,
    outlet: Outlet,
) where
    R: AsyncRead + Unpin + Send + 'static,
{
    let opts = server.options();
    let direct = match &outlet {
        Outlet::Tcp(tcp) => Some(tcp.clone()),
        Outlet::Stream(_) => None,
    };
    let writer_task = tokio::spawn(outbound::write_loop(
        shared.out.clone(),
        outlet,
        opts.write_deadline,
    ));
    let mut conn = Connection::new(server.clone(), shared.clone(), direct);
    let reason = conn.read_loop(&mut reader).await;
    shared.out.close(reason);
    conn.cleanup();
    drop(reader);
    let _ = writer_task.await;
    server.closed(&shared, reason);
}

/// A reload changed a live client's permissions: swap them in, and remove (with nats-server's
/// error) every subscription the new permissions no longer allow.
pub(crate) fn apply_new_permissions(
    client: &Arc<ClientShared>,
    account: &Account,
    permissions: Option<Arc<ClientPermissions>>,
) {
    client.out.permissions.store(permissions.clone());
    client
        .out
        .permissions_generation
        .fetch_add(1, Ordering::AcqRel);
    let subs: Vec<SubRef> = client.subs.lock().values().cloned().collect();
    let mut needs_flush = false;
    for sub in subs {
        let check = match &permissions {
            None => SubscribeCheck::Allowed { filtered: false },
            Some(p) => p.check_subscribe(&sub.subject, sub.queue.as_deref()),
        };
        match check {
            SubscribeCheck::Allowed { filtered } => {
                sub.deny_filtered.store(filtered, Ordering::Relaxed)
            }
            SubscribeCheck::Denied => {
                account
                    .sublist
                    .remove(&sub.subject, sub.queue.as_deref(), &sub);
                client.subs.lock().remove(&sub.sid);
                let text = format!(
                    "Permissions Violation for Subscription to \"{}\" (sid \"{}\")",
                    String::from_utf8_lossy(&sub.subject),
                    String::from_utf8_lossy(&sub.sid)
                );
                let mut frame = BytesMut::new();
                encode::err(&mut frame, &text);
                needs_flush |= client.out.queue_proto(&frame) == Queued::NeedsFlush;
            }
        }
    }
    if needs_flush {
        client.out.flush_soon();
    }
}
