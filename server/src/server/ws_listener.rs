//! The WebSocket client listener: accept, upgrade, register the connection like a TCP client
//! and serve it over the [`crate::websocket`] bridge, with the `websocket {}` block's
//! authentication override and INFO.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Server, ServerError};
use crate::account::Account;
use crate::auth::{Authenticator, PasswordCache};
use crate::client::{self, ClientShared, ConnectionCounters, ConnectionHost, TransportCredentials};
use crate::config::{Options, User, WebsocketConfig};
use crate::outbound::{CloseReason, Outlet};
use crate::proto::encode;
use crate::tls;
use crate::websocket::{self, UpgradeError, UpgradeRules};

/// The listener's state inside the server.
#[derive(Default)]
pub(crate) struct WebsocketState {
    addr: Mutex<Option<SocketAddr>>,
    tls: ArcSwapOption<tokio_rustls::TlsAcceptor>,
    /// The options and authenticator WebSocket clients see, derived from the server's and
    /// rebuilt when a reload swaps those.
    derived: ArcSwapOption<Derived>,
}

struct Derived {
    base_opts: Arc<Options>,
    base_auth: Arc<Authenticator>,
    opts: Arc<Options>,
    auth: Arc<Authenticator>,
    rules: Arc<UpgradeRules>,
}

impl WebsocketState {
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        *self.addr.lock()
    }
}

/// The server's options as a WebSocket client sees them: the block's auth timeout and ping
/// interval, and its credentials in place of the top-level ones when it sets any.
fn derive_options(base: &Options, ws: &WebsocketConfig) -> Options {
    let mut opts = base.clone();
    if let Some(timeout) = ws.auth_timeout {
        opts.auth.timeout = timeout;
    }
    if let Some(interval) = ws.ping_interval {
        opts.ping_interval = interval;
    }
    if ws.auth_override() {
        opts.auth.token = ws.token.clone();
        opts.auth.no_auth_user = ws.no_auth_user.clone();
        if let Some(name) = &ws.username {
            opts.auth.users.push(User {
                name: name.clone(),
                password: ws.password.clone().unwrap_or_default(),
                nkey: false,
                account: String::new(),
                permissions: None,
            });
        }
    }
    opts
}

/// What the TLS handshake of a `wss` connection established.
struct TlsMeta {
    version: String,
    cipher: String,
    peer_certs: Vec<tls::PeerCertInfo>,
    /// Under the block's `verify_and_map`: the names CONNECT maps to a user.
    peer_cert: Option<Arc<tls::PeerCert>>,
}

/// What a WebSocket connection reaches the server through.
struct WebsocketHost {
    server: Arc<Server>,
    /// The credentials its upgrade request carried in the configured cookies.
    cookies: TransportCredentials,
}

impl WebsocketHost {
    fn derived(&self) -> Arc<Derived> {
        self.server.websocket_derived()
    }

    /// The first INFO (with the nonce NKEY users sign, when there are any).
    fn greeting_info_json(&self, client: &ClientShared) -> Vec<u8> {
        self.websocket_info(self.server.greeting_info_json(client))
    }

    /// The server's INFO as a WebSocket client gets it: the listener's host, port and TLS,
    /// and auth_required as nats-server computes it for these clients.
    fn websocket_info(&self, raw: Vec<u8>) -> Vec<u8> {
        let Ok(serde_json::Value::Object(mut info)) = serde_json::from_slice(&raw) else {
            return raw;
        };
        let derived = self.derived();
        let opts = &derived.opts;
        if let Some(ws) = &opts.websocket {
            let addr = self.server.websocket.addr();
            info.insert("host".into(), ws.host.clone().into());
            info.insert(
                "port".into(),
                addr.map(|a| a.port()).unwrap_or_default().into(),
            );
            info.remove("tls_required");
            info.remove("tls_verify");
            info.remove("tls_available");
            if ws.tls.is_some() {
                info.insert("tls_required".into(), true.into());
                info.insert("tls_available".into(), true.into());
            }
            // As nats-server: required whenever the server has credentials at all (a top-level
            // no_auth_user clears it for TCP clients only) or the block sets its own.
            if derived.base_auth.required() || ws.auth_override() {
                info.insert("auth_required".into(), true.into());
            } else {
                info.remove("auth_required");
            }
        }
        serde_json::to_vec(&info).unwrap_or(raw)
    }
}

impl ConnectionHost for WebsocketHost {
    fn options(&self) -> Arc<Options> {
        self.derived().opts.clone()
    }

    fn authenticator(&self) -> Arc<Authenticator> {
        self.derived().auth.clone()
    }

    fn password_cache(&self) -> &PasswordCache {
        &self.server.password_cache
    }

    fn global_account(&self) -> Arc<Account> {
        self.server.global_account()
    }

    fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.server.account(name)
    }

    fn info_json(&self, client: &ClientShared, account: Option<&Account>) -> Vec<u8> {
        self.websocket_info(self.server.info_json(client, account))
    }

    fn counters(&self) -> &ConnectionCounters {
        &self.server.stats.connections
    }

    fn closed(&self, client: &Arc<ClientShared>, reason: CloseReason) {
        self.server.unregister(client, reason);
    }

    fn transport_credentials(&self) -> Option<&TransportCredentials> {
        Some(&self.cookies)
    }
}

impl Server {
    /// The authenticator WebSocket clients log in with.
    pub(super) fn websocket_authenticator(&self) -> Arc<Authenticator> {
        self.websocket_derived().auth.clone()
    }

    fn websocket_derived(&self) -> Arc<Derived> {
        let base_opts = self.options();
        let base_auth = self.authenticator();
        if let Some(d) = self.websocket.derived.load_full() {
            if Arc::ptr_eq(&d.base_opts, &base_opts) && Arc::ptr_eq(&d.base_auth, &base_auth) {
                return d;
            }
        }
        let (opts, auth, rules) = match &base_opts.websocket {
            Some(ws) => {
                let opts = derive_options(&base_opts, ws);
                let auth = if ws.auth_override() {
                    Arc::new(Authenticator::from_options(&opts))
                } else {
                    base_auth.clone()
                };
                (Arc::new(opts), auth, UpgradeRules::from_config(ws))
            }
            None => (
                base_opts.clone(),
                base_auth.clone(),
                UpgradeRules::default(),
            ),
        };
        let d = Arc::new(Derived {
            base_opts,
            base_auth,
            opts,
            auth,
            rules: Arc::new(rules),
        });
        self.websocket.derived.store(Some(d.clone()));
        d
    }

    /// Bind the WebSocket listener when the configuration has one.
    pub(super) async fn listen_websocket(self: &Arc<Self>) -> Result<(), ServerError> {
        let opts = self.options();
        let Some(ws) = &opts.websocket else {
            return Ok(());
        };
        if let Some(cfg) = &ws.tls {
            self.websocket
                .tls
                .store(Some(Arc::new(tls::acceptor(cfg)?)));
        }
        let (listener, local) = super::bind_listener(&ws.host, ws.port).await?;
        *self.websocket.addr.lock() = Some(local);
        let scheme = if ws.tls.is_some() { "wss" } else { "ws" };
        tracing::info!(
            "Listening for websocket clients on {}://{}:{}",
            scheme,
            ws.host,
            local.port()
        );
        if ws.tls.is_none() {
            tracing::warn!("Websocket not configured with TLS. DO NOT USE IN PRODUCTION!");
        }
        let server = self.clone();
        tokio::spawn(async move {
            let accept = |server: Arc<Server>, stream, addr| server.websocket_accept(stream, addr);
            server.accept_loop(listener, "websocket", accept).await
        });
        Ok(())
    }

    /// A reload may change the certificate of the WebSocket listener (nothing else of it).
    pub(super) fn reload_websocket_tls(&self, new: &Options) -> Result<(), ServerError> {
        if let Some(cfg) = new.websocket.as_ref().and_then(|ws| ws.tls.as_ref()) {
            self.websocket
                .tls
                .store(Some(Arc::new(tls::acceptor(cfg)?)));
        }
        Ok(())
    }

    async fn websocket_accept(self: Arc<Self>, stream: TcpStream, addr: SocketAddr) {
        let _ = stream.set_nodelay(true);
        // The bridge's writer meets a full socket through `write_all`, which the kernel wakes
        // only once about half of its (autotuned, multi-megabyte) send buffer is free: for a
        // slowly reading client that takes seconds, long enough for the connection to look
        // stopped, and its publishers would no longer be held back for it. Little unsent data
        // makes the kernel report each step of the client's progress instead.
        let _ = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(super::STREAM_NOTSENT_LOWAT);
        let derived = self.websocket_derived();
        let timeout = derived
            .opts
            .websocket
            .as_ref()
            .map_or(Duration::ZERO, |ws| ws.handshake_timeout);
        match self.websocket.tls.load_full() {
            None => self.websocket_upgrade(stream, addr, timeout, None).await,
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                let (tls_timeout, map) = derived
                    .opts
                    .websocket
                    .as_ref()
                    .and_then(|ws| ws.tls.as_ref())
                    .map_or((Duration::from_secs(2), false), |t| {
                        (t.timeout, t.verify_and_map)
                    });
                match tokio::time::timeout(tls_timeout, handshake).await {
                    Ok(Ok(tls_stream)) => {
                        let session = tls_stream.get_ref().1;
                        // The block's own verify_and_map decides for WebSocket clients, as
                        // on nats-server (the top-level one does not apply here).
                        let (peer_certs, peer_cert) =
                            tls::peer_certificates(session.peer_certificates(), map);
                        let meta = TlsMeta {
                            version: tls::tls_version_name(session.protocol_version()),
                            cipher: tls::tls_cipher_name(session.negotiated_cipher_suite()),
                            peer_certs,
                            peer_cert,
                        };
                        self.websocket_upgrade(tls_stream, addr, timeout, Some(meta))
                            .await
                    }
                    Ok(Err(err)) => {
                        tracing::error!("{} - websocket TLS handshake error: {}", addr, err)
                    }
                    Err(_) => tracing::error!("{} - websocket TLS handshake timeout", addr),
                }
            }
        }
    }

    async fn websocket_upgrade<S>(
        self: Arc<Self>,
        mut stream: S,
        addr: SocketAddr,
        timeout: Duration,
        tls_meta: Option<TlsMeta>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let rules = self.websocket_derived().rules.clone();
        let upgrade = websocket::upgrade(&mut stream, &rules);
        let result = if timeout.is_zero() {
            upgrade.await
        } else {
            match tokio::time::timeout(timeout, upgrade).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::error!("{} - websocket handshake error: timeout", addr);
                    return;
                }
            }
        };
        let accepted = match result {
            Ok(accepted) => accepted,
            Err(UpgradeError::Refused(refusal)) => {
                tracing::error!("{} - websocket handshake error: {}", addr, refusal.reason);
                return;
            }
            Err(err) => {
                tracing::debug!("{} - websocket handshake error: {}", addr, err);
                return;
            }
        };
        let ws_host = Arc::new(WebsocketHost {
            server: self.clone(),
            cookies: TransportCredentials {
                user: accepted.cookie_user.clone(),
                pass: accepted.cookie_pass.clone(),
                token: accepted.cookie_token.clone(),
                jwt: accepted.cookie_jwt.clone(),
            },
        });
        let host: Arc<dyn ConnectionHost> = ws_host.clone();
        let opts = host.options();
        let cid = self.next_cid.fetch_add(1, Ordering::Relaxed);
        let client_addr = match accepted.forwarded_for {
            Some(ip) => SocketAddr::new(ip, addr.port()),
            None => addr,
        };
        let shared = ClientShared::new(cid, client_addr, opts.max_pending);
        {
            let mut meta = shared.meta.lock();
            meta.websocket = true;
            meta.tcp_peer = accepted.forwarded_for.map(|_| addr);
            if let Some(tls) = tls_meta {
                meta.tls = true;
                meta.tls_version = tls.version;
                meta.tls_cipher = tls.cipher;
                meta.tls_peer_certs = tls.peer_certs;
                meta.peer_cert = tls.peer_cert;
            }
        }
        let mut info = bytes::BytesMut::new();
        encode::info(&mut info, &ws_host.greeting_info_json(&shared));
        if !self.admit(cid, &shared, opts.max_connections) {
            encode::err(&mut info, "maximum connections exceeded");
            let mut framed = Vec::new();
            websocket::frame::Encoder::new(false, false, false).encode(&info, &mut framed);
            let _ = stream.write_all(&framed).await;
            tracing::error!("{} - cid:{} - maximum connections exceeded", addr, cid);
            return;
        }
        tracing::debug!("{} - cid:{} - Client connection created", addr, cid);
        let (reader, writer) =
            websocket::bridge(stream, &accepted, opts.max_payload, shared.out.clone());
        shared.out.queue_proto(&info);
        shared.out.flush_soon();
        client::serve(host, shared, reader, Outlet::Stream(Box::new(writer))).await;
    }
}
