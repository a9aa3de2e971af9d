//! The server: accounts, the client registry, listeners, reload, lame duck and shutdown.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustc_hash::FxHashMap;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::account::{Account, AccountSettings};
use crate::auth::{Authenticator, PasswordCache};
use crate::client::{self, ClientShared, ConnectionCounters, ConnectionHost};
use crate::config::{
    HandshakeFirst, Options, DEFAULT_SYSTEM_ACCOUNT, DEFAULT_TLS_TIMEOUT, GLOBAL_ACCOUNT,
};
use crate::imports;
use crate::outbound::{ClientId, CloseReason, Outlet, Queued};
use crate::proto::encode;
use crate::subscription::ClosedSub;
use crate::tls;

mod jwt_live;
mod ws_listener;

pub(crate) use jwt_live::AccountExpiry;

/// The nats-server version whose behaviour natsd implements; clients gate features on it.
pub const NATS_COMPAT_VERSION: &str = "2.15.1";
/// natsd's own version.
pub const NATSD_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Unsent bytes the socket of a TLS or WebSocket client may hold (`TCP_NOTSENT_LOWAT`):
/// writability is then reported each time about half of it has gone out. Their writers see
/// the socket only through a TLS stream or the WebSocket bridge and cannot probe a full
/// socket as a plain client's writer does (`outbound::wait_writable`).
const STREAM_NOTSENT_LOWAT: u32 = 128 * 1024;
/// JetStream API level advertised in INFO, as nats-server 2.15 does.
const API_LEVEL: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("error resolving system account: account missing")]
    SystemAccountMissing,
    #[error("Error listening on port: {addr}, {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("config reload not supported for {option}: old={old}, new={new}")]
    ReloadUnsupported {
        option: &'static str,
        old: String,
        new: String,
    },
    #[error("{0}")]
    Config(String),
}

/// Counters for events that are rare enough to count on shared atomics.
#[derive(Default)]
pub struct ServerStats {
    pub total_connections: AtomicU64,
    pub slow_consumers: AtomicU64,
    /// What connections count themselves (stale connections, publisher stalls).
    pub connections: ConnectionCounters,
    closed_in_msgs: AtomicU64,
    closed_in_bytes: AtomicU64,
    closed_out_msgs: AtomicU64,
    closed_out_bytes: AtomicU64,
}

/// Message totals over live and closed connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
}

/// What `/connz?state=closed` keeps of a closed connection.
#[derive(Debug, Clone)]
pub struct ClosedClient {
    pub cid: ClientId,
    pub addr: SocketAddr,
    pub start: SystemTime,
    pub stop: SystemTime,
    pub reason: CloseReason,
    pub meta: client::ConnMeta,
    pub traffic: Traffic,
    pub last_activity: SystemTime,
    pub rtt: Duration,
    pub pending_bytes: usize,
    pub stalls: u64,
    pub subs: Vec<ClosedSub>,
}

/// When the configuration was last (re)loaded, for `/varz` and `manage reload`.
#[derive(Debug, Clone)]
pub struct ConfigState {
    pub load_time: SystemTime,
    pub digest: String,
}

/// Something that runs beside the server (JetStream): started by `node::start`, told of
/// every applied reload and of the shutdown. The server knows nothing else of it.
pub trait Subsystem: std::any::Any + Send + Sync {
    /// A reload was applied (accounts and their limits may have changed).
    fn reloaded(&self, server: &Server);
    /// The server begins shutting down and its clients are still connected: the last moment
    /// to tell them something.
    fn stopping(&self) {}
    /// The server is shutting down; its clients are closed.
    fn shutdown(&self);
}

/// Applied on top of the file on every (re)load: the command-line flags.
pub(crate) type Overrides = Box<dyn Fn(&mut Options) + Send + Sync>;

pub struct Server {
    pub id: String,
    opts: ArcSwap<Options>,
    overrides: Overrides,
    auth: ArcSwap<Authenticator>,
    pub password_cache: PasswordCache,
    accounts: RwLock<HashMap<String, Arc<Account>>>,
    global: Arc<Account>,
    clients: Mutex<FxHashMap<ClientId, Arc<ClientShared>>>,
    closed: Mutex<VecDeque<ClosedClient>>,
    next_cid: AtomicU64,
    pub stats: ServerStats,
    pub start: SystemTime,
    config: Mutex<ConfigState>,
    shutdown: watch::Sender<bool>,
    lame_duck: AtomicBool,
    client_addr: Mutex<Option<SocketAddr>>,
    http_addr: Mutex<Option<SocketAddr>>,
    tls: ArcSwapOption<tokio_rustls::TlsAcceptor>,
    reload_lock: tokio::sync::Mutex<()>,
    /// What runs beside the server and follows its reloads and shutdown (JetStream).
    subsystems: Mutex<Vec<Arc<dyn Subsystem>>>,
    /// The routes between accounts that the configuration's imports make.
    imports: imports::Router,
    /// The WebSocket listener, when configured.
    pub(crate) websocket: ws_listener::WebsocketState,
}

/// A 56-character id in nats-server's shape (an nkey-like base32 string starting with `N`).
fn generate_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut id = String::with_capacity(56);
    id.push('N');
    for _ in 1..56 {
        id.push(ALPHABET[fastrand::usize(..ALPHABET.len())] as char);
    }
    id
}

fn system_account_name(opts: &Options) -> String {
    opts.system_account
        .clone()
        .unwrap_or_else(|| DEFAULT_SYSTEM_ACCOUNT.to_string())
}

/// The account map a set of options describes: `$G`, the system account, and the declared ones.
fn build_settings(opts: &Options) -> Result<HashMap<String, AccountSettings>, ServerError> {
    let mut map = HashMap::new();
    map.insert(
        GLOBAL_ACCOUNT.to_string(),
        AccountSettings {
            mappings: opts.mappings.clone(),
            ..AccountSettings::default()
        },
    );
    for acc in &opts.accounts {
        map.insert(
            acc.name.clone(),
            AccountSettings {
                limits: acc.limits,
                jetstream: acc.jetstream,
                mappings: acc.mappings.clone(),
            },
        );
    }
    let system = system_account_name(opts);
    if opts.system_account.is_some() && !map.contains_key(&system) {
        return Err(ServerError::SystemAccountMissing);
    }
    map.entry(system).or_default();
    Ok(map)
}

/// Start-up checks nats-server makes after parsing (so `-t` does not catch them either).
fn validate(opts: &Options) -> Result<(), ServerError> {
    opts.check_startup()
        .map_err(|errors| ServerError::Config(errors.join("\n")))
}

impl Server {
    pub fn new(
        mut opts: Options,
        overrides: Overrides,
        digest: String,
    ) -> Result<Arc<Server>, ServerError> {
        overrides(&mut opts);
        validate(&opts)?;
        let settings = build_settings(&opts)?;
        let accounts: HashMap<String, Arc<Account>> = settings
            .into_iter()
            .map(|(name, s)| (name.clone(), Account::new(&name, s)))
            .collect();
        let global = accounts
            .get(GLOBAL_ACCOUNT)
            .cloned()
            .unwrap_or_else(|| Account::new(GLOBAL_ACCOUNT, AccountSettings::default()));
        let tls = tls::acceptor_for(opts.tls.as_ref(), opts.ocsp.as_ref())?.map(Arc::new);
        let (shutdown, _) = watch::channel(false);
        let server = Arc::new(Server {
            id: generate_server_id(),
            auth: ArcSwap::from_pointee(Authenticator::from_options(&opts)),
            opts: ArcSwap::from_pointee(opts),
            overrides,
            password_cache: PasswordCache::default(),
            accounts: RwLock::new(accounts),
            global,
            clients: Mutex::new(FxHashMap::default()),
            closed: Mutex::new(VecDeque::new()),
            next_cid: AtomicU64::new(1),
            stats: ServerStats::default(),
            start: SystemTime::now(),
            config: Mutex::new(ConfigState {
                load_time: SystemTime::now(),
                digest,
            }),
            shutdown,
            lame_duck: AtomicBool::new(false),
            client_addr: Mutex::new(None),
            http_addr: Mutex::new(None),
            tls: ArcSwapOption::new(tls),
            reload_lock: tokio::sync::Mutex::new(()),
            subsystems: Mutex::new(Vec::new()),
            imports: imports::Router::default(),
            websocket: ws_listener::WebsocketState::default(),
        });
        let opts = server.options();
        server
            .imports
            .install(&opts.accounts, &server.name(), &|name| server.account(name));
        Ok(server)
    }

    /// Run `subsystem` beside the server: it hears of every reload and of the shutdown.
    pub fn attach(&self, subsystem: Arc<dyn Subsystem>) {
        self.subsystems.lock().push(subsystem);
    }

    /// The attached subsystem of type `T` (JetStream, for the monitor), if there is one.
    pub fn subsystem<T: Subsystem>(&self) -> Option<Arc<T>> {
        self.subsystems.lock().iter().find_map(|s| {
            let any: Arc<dyn std::any::Any + Send + Sync> = s.clone();
            any.downcast::<T>().ok()
        })
    }

    fn subsystems(&self) -> Vec<Arc<dyn Subsystem>> {
        self.subsystems.lock().clone()
    }

    pub fn options(&self) -> Arc<Options> {
        self.opts.load_full()
    }

    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.auth.load_full()
    }

    pub fn name(&self) -> String {
        self.options()
            .server_name
            .clone()
            .unwrap_or_else(|| self.id.clone())
    }

    pub fn global_account(&self) -> Arc<Account> {
        self.global.clone()
    }

    pub fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.accounts.read().get(name).cloned()
    }

    pub fn accounts(&self) -> Vec<Arc<Account>> {
        let mut list: Vec<_> = self.accounts.read().values().cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    pub fn system_account(&self) -> String {
        system_account_name(&self.options())
    }

    pub fn clients(&self) -> Vec<Arc<ClientShared>> {
        let mut list: Vec<_> = self.clients.lock().values().cloned().collect();
        list.sort_by_key(|c| c.out.cid);
        list
    }

    pub fn num_clients(&self) -> usize {
        self.clients.lock().len()
    }

    pub fn closed_clients(&self) -> Vec<ClosedClient> {
        self.closed.lock().iter().cloned().collect()
    }

    pub fn config_state(&self) -> ConfigState {
        self.config.lock().clone()
    }

    pub fn client_addr(&self) -> Option<SocketAddr> {
        *self.client_addr.lock()
    }

    /// Where the HTTP monitor listens, once it does.
    pub fn set_http_addr(&self, addr: SocketAddr) {
        *self.http_addr.lock() = Some(addr);
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        *self.http_addr.lock()
    }

    pub fn is_lame_duck(&self) -> bool {
        self.lame_duck.load(Ordering::Relaxed)
    }

    /// Totals over closed and live connections, summed when asked (monitoring), never on publish.
    pub fn traffic(&self) -> Traffic {
        let mut t = Traffic {
            in_msgs: self.stats.closed_in_msgs.load(Ordering::Relaxed),
            in_bytes: self.stats.closed_in_bytes.load(Ordering::Relaxed),
            out_msgs: self.stats.closed_out_msgs.load(Ordering::Relaxed),
            out_bytes: self.stats.closed_out_bytes.load(Ordering::Relaxed),
        };
        for c in self.clients() {
            let live = client_traffic(&c);
            t.in_msgs += live.in_msgs;
            t.in_bytes += live.in_bytes;
            t.out_msgs += live.out_msgs;
            t.out_bytes += live.out_bytes;
        }
        t
    }

    pub fn num_subscriptions(&self) -> usize {
        self.accounts().iter().map(|a| a.sublist.count()).sum()
    }

    pub fn identity(&self) -> ServerIdentity {
        let addr = self.client_addr();
        ServerIdentity {
            server_id: self.id.clone(),
            server_name: self.name(),
            version: NATS_COMPAT_VERSION,
            natsd_version: NATSD_VERSION,
            proto: 1,
            git_commit: "",
            go: "natsd",
            host: addr
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|| self.options().host.clone()),
            port: addr.map(|a| a.port()).unwrap_or_default(),
        }
    }

    /// The INFO JSON for a client; with `account`, the second INFO (`connect_info`).
    pub fn info_json(&self, client: &ClientShared, account: Option<&Account>) -> Vec<u8> {
        self.info_json_with(client, account, None)
    }

    /// The INFO a new connection is greeted with. While NKEY users exist it carries a fresh
    /// nonce for the client to sign (later INFOs do not repeat it, as on nats-server).
    pub fn greeting_info_json(&self, client: &ClientShared) -> Vec<u8> {
        let nonce = self.authenticator().nonce_required().then(|| {
            client
                .nonce
                .get_or_init(crate::auth::generate_nonce)
                .as_str()
        });
        self.info_json_with(client, None, nonce)
    }

    fn info_json_with(
        &self,
        client: &ClientShared,
        account: Option<&Account>,
        nonce: Option<&str>,
    ) -> Vec<u8> {
        let opts = self.options();
        let auth = self.authenticator();
        let info = Info {
            identity: self.identity(),
            headers: !opts.no_header_support,
            max_payload: opts.max_payload,
            auth_required: auth.advertise_required().then_some(true),
            tls_required: opts.tls.as_ref().map(|_| true),
            tls_verify: opts.tls.as_ref().and_then(|t| t.verify.then_some(true)),
            jetstream: opts.jetstream.as_ref().map(|_| true),
            client_id: client.out.cid,
            client_ip: client.out.addr.ip().to_string(),
            connect_info: account.map(|_| true),
            remote_account: account.map(|a| a.name.as_str()),
            acc_is_sys: account
                .filter(|a| a.name == system_account_name(&opts))
                .map(|_| true),
            ldm: self.is_lame_duck().then_some(true),
            api_lvl: API_LEVEL,
            nonce,
        };
        serde_json::to_vec(&info).unwrap_or_default()
    }

    /// The start-up lines nats-server logs before anything else.
    pub fn announce(&self) {
        let opts = self.options();
        tracing::info!("Starting nats-server");
        tracing::info!(
            "  Version:  {} (natsd {})",
            NATS_COMPAT_VERSION,
            NATSD_VERSION
        );
        tracing::info!("  Name:     {}", self.name());
        tracing::info!("  ID:       {}", self.id);
        if let Some(file) = &opts.config_file {
            tracing::info!("Using configuration file: {}", file.display());
        }
        if opts.has_plaintext_passwords() {
            tracing::warn!("Plaintext passwords detected, use nkeys or bcrypt");
        }
    }

    /// Bind the client listener and accept connections until shutdown (the last step of a
    /// start, see `node::start`).
    pub async fn listen(self: &Arc<Self>) -> Result<(), ServerError> {
        let opts = self.options();
        let (listener, local) = bind_listener(&opts.host, opts.port).await?;
        *self.client_addr.lock() = Some(local);
        tracing::info!("Listening for client connections on {}", local);
        if let Some(tls) = &opts.tls {
            tracing::info!("TLS required for client connections");
            if tls.handshake_first == HandshakeFirst::Always {
                tracing::warn!(
                    "Clients that are not using \"TLS Handshake First\" option will fail to connect"
                );
            }
        }
        self.listen_websocket().await?;
        tracing::info!("Server is ready");
        let server = self.clone();
        tokio::spawn(async move {
            let accept = |server: Arc<Self>, stream, addr| server.handle_accept(stream, addr);
            server.accept_loop(listener, "client", accept).await
        });
        Ok(())
    }

    /// Accepts connections on `listener` until shutdown or lame duck, each handled by
    /// `handle` in a task of its own; `kind` names them in errors.
    async fn accept_loop<F, Fut>(
        self: Arc<Self>,
        listener: TcpListener,
        kind: &'static str,
        handle: F,
    ) where
        F: Fn(Arc<Self>, TcpStream, SocketAddr) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        tokio::spawn(handle(self.clone(), stream, addr));
                    }
                    Err(err) => {
                        tracing::error!("Error accepting {kind} connection: {}", err);
                        // Out of file descriptors and the like: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = shutdown.changed() => break,
            }
            if self.is_lame_duck() {
                break;
            }
        }
    }

    /// Counts a new connection and registers it, unless the server already holds
    /// `max_connections`: then false, and the caller refuses it.
    fn admit(&self, cid: u64, shared: &Arc<ClientShared>, max_connections: usize) -> bool {
        self.stats.total_connections.fetch_add(1, Ordering::Relaxed);
        let mut clients = self.clients.lock();
        if clients.len() >= max_connections {
            return false;
        }
        clients.insert(cid, shared.clone());
        true
    }

    async fn handle_accept(self: Arc<Self>, stream: TcpStream, addr: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let opts = self.options();
        let cid = self.next_cid.fetch_add(1, Ordering::Relaxed);
        let shared = ClientShared::new(cid, addr, opts.max_pending);
        let mut info = bytes::BytesMut::new();
        encode::info(&mut info, &self.greeting_info_json(&shared));
        if !self.admit(cid, &shared, opts.max_connections) {
            // nats-server sends INFO first, then the error.
            let mut frame = info;
            encode::err(&mut frame, "maximum connections exceeded");
            let mut stream = stream;
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, &frame).await;
            tracing::error!("{} - cid:{} - maximum connections exceeded", addr, cid);
            return;
        }
        tracing::debug!("{} - cid:{} - Client connection created", addr, cid);
        match self.tls.load_full() {
            None => {
                shared.out.queue_proto(&info);
                shared.out.flush_soon();
                let (r, w) = stream.into_split();
                client::serve(self.clone(), shared, r, Outlet::Tcp(Arc::new(w))).await;
            }
            Some(acceptor) => {
                // A TLS writer sees the socket only through the TLS stream, so it cannot
                // probe a full socket the way a plain one does (client.rs, wait_writable).
                // Keeping little unsent data in the kernel makes it report writability in
                // small steps instead, so a slow reader still shows progress.
                let _ = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(STREAM_NOTSENT_LOWAT);
                // The acceptor and the options are swapped one after the other by a reload.
                let (handshake_first, timeout, map) = opts
                    .tls
                    .as_ref()
                    .map_or((HandshakeFirst::Off, DEFAULT_TLS_TIMEOUT, false), |t| {
                        (t.handshake_first, t.timeout, t.verify_and_map)
                    });
                let tls_first = match handshake_first {
                    HandshakeFirst::Off => false,
                    HandshakeFirst::Always => true,
                    // Whatever the client sends first (a ClientHello, or garbage the handshake
                    // will refuse) means it did not wait for INFO.
                    HandshakeFirst::Fallback(wait) => {
                        let mut probe = [0u8; 1];
                        matches!(
                            tokio::time::timeout(wait, stream.peek(&mut probe)).await,
                            Ok(Ok(n)) if n > 0
                        )
                    }
                };
                let mut stream = stream;
                if !tls_first
                    && tokio::io::AsyncWriteExt::write_all(&mut stream, &info)
                        .await
                        .is_err()
                {
                    self.unregister(&shared, CloseReason::WriteError);
                    return;
                }
                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        {
                            let session = tls_stream.get_ref().1;
                            let mut meta = shared.meta.lock();
                            meta.tls = true;
                            meta.tls_first = tls_first;
                            meta.tls_version =
                                crate::tls::tls_version_name(session.protocol_version());
                            meta.tls_cipher =
                                crate::tls::tls_cipher_name(session.negotiated_cipher_suite());
                            (meta.tls_peer_certs, meta.peer_cert) =
                                crate::tls::peer_certificates(session.peer_certificates(), map);
                        }
                        if tls_first {
                            // INFO goes out inside TLS, ahead of anything the reader answers.
                            shared.out.queue_proto(&info);
                            shared.out.flush_soon();
                        }
                        let (r, w) = tokio::io::split(tls_stream);
                        client::serve(self.clone(), shared, r, Outlet::Stream(Box::new(w))).await;
                    }
                    Ok(Err(err)) => {
                        tracing::error!("{} - cid:{} - TLS handshake error: {}", addr, cid, err);
                        self.unregister(&shared, CloseReason::ReadError);
                    }
                    Err(_) => {
                        tracing::error!("{} - cid:{} - TLS handshake timeout", addr, cid);
                        self.unregister(&shared, CloseReason::ReadError);
                    }
                }
            }
        }
    }

    /// Forget a closed connection, keeping a summary for `/connz?state=closed`.
    pub(crate) fn unregister(&self, shared: &Arc<ClientShared>, reason: CloseReason) {
        self.clients.lock().remove(&shared.out.cid);
        if matches!(
            reason,
            CloseReason::SlowConsumerPendingBytes | CloseReason::SlowConsumerWriteDeadline
        ) {
            self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
            if let Some(account) = shared.account() {
                account.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
            }
        }
        let traffic = client_traffic(shared);
        self.stats
            .closed_in_msgs
            .fetch_add(traffic.in_msgs, Ordering::Relaxed);
        self.stats
            .closed_in_bytes
            .fetch_add(traffic.in_bytes, Ordering::Relaxed);
        self.stats
            .closed_out_msgs
            .fetch_add(traffic.out_msgs, Ordering::Relaxed);
        self.stats
            .closed_out_bytes
            .fetch_add(traffic.out_bytes, Ordering::Relaxed);
        tracing::debug!(
            "{} - cid:{} - Client connection closed: {}",
            shared.out.addr,
            shared.out.cid,
            reason.as_str()
        );
        let max = self.options().max_closed_clients;
        if max == 0 {
            return;
        }
        let entry = ClosedClient {
            cid: shared.out.cid,
            addr: shared.out.addr,
            start: shared.out.start,
            stop: SystemTime::now(),
            reason,
            meta: shared.meta.lock().clone(),
            traffic,
            last_activity: shared.out.last_activity(),
            rtt: shared.rtt(),
            pending_bytes: shared.out.out_stats().2,
            stalls: shared.out.stalls.load(Ordering::Relaxed),
            subs: shared.take_closed_subs(),
        };
        let mut closed = self.closed.lock();
        while closed.len() >= max {
            closed.pop_front();
        }
        closed.push_back(entry);
    }

    /// Re-read the configuration file and apply it (SIGHUP). All or nothing.
    pub async fn reload(&self) -> Result<(), ServerError> {
        let _guard = self.reload_lock.lock().await;
        let old = self.options();
        let Some(path) = old.config_file.clone() else {
            return Err(ServerError::Config(
                "no configuration file to reload".into(),
            ));
        };
        let loaded =
            crate::config::load_file(&path).map_err(|e| ServerError::Config(e.to_string()))?;
        let mut new = loaded.options;
        new.config_file = Some(path);
        (self.overrides)(&mut new);
        validate(&new)?;
        let changes = diff_unsupported(&old, &new);
        if let Some(err) = changes {
            return Err(err);
        }
        let settings = build_settings(&new)?;
        let tls = tls::acceptor_for(new.tls.as_ref(), new.ocsp.as_ref())?.map(Arc::new);
        let authenticator = Authenticator::from_options(&new);
        self.reload_websocket_tls(&new)?;
        let old_ws_auth = self.websocket_authenticator();

        // From here on nothing can fail: swap everything in.
        let removed_accounts = {
            let mut accounts = self.accounts.write();
            let removed: Vec<String> = accounts
                .keys()
                .filter(|k| !settings.contains_key(*k))
                .cloned()
                .collect();
            for name in &removed {
                accounts.remove(name);
            }
            for (name, s) in settings {
                match accounts.get(&name) {
                    Some(acc) => acc.set_settings(s),
                    None => {
                        accounts.insert(name.clone(), Account::new(&name, s));
                    }
                }
            }
            removed
        };
        self.tls.store(tls);
        let old_auth = self.auth.swap(Arc::new(authenticator));
        self.opts.store(Arc::new(new));
        let opts = self.options();
        self.imports
            .install(&opts.accounts, &self.name(), &|name| self.account(name));
        for name in &removed_accounts {
            tracing::info!("Account {} removed by reload", name);
        }
        for subsystem in self.subsystems() {
            subsystem.reloaded(self);
        }
        self.apply_auth_to_clients(&old_auth, &old_ws_auth);
        *self.config.lock() = ConfigState {
            load_time: SystemTime::now(),
            digest: loaded.digest.clone(),
        };
        tracing::info!("Reloaded: authorization users");
        tracing::info!("Reloaded: accounts");
        tracing::info!("Reloaded server configuration ({})", loaded.digest);
        Ok(())
    }

    /// After a reload: close connections whose user (or account) is gone or changed, and apply
    /// changed permissions to the others. As in nats-server, a removed user (or account) is
    /// closed silently, while credentials that no longer match (a changed password or token)
    /// get `Authorization Violation` first.
    fn apply_auth_to_clients(&self, old_auth: &Authenticator, old_ws_auth: &Authenticator) {
        let tcp_auth = self.authenticator();
        let ws_auth = self.websocket_authenticator();
        for client in self.clients() {
            // WebSocket clients log in through the websocket block's credentials, if it has any.
            let (auth, old_auth) = if client.meta.lock().websocket {
                (&ws_auth, old_ws_auth)
            } else {
                (&tcp_auth, old_auth)
            };
            let Some(account) = client.account() else {
                continue;
            };
            let user = client.meta.lock().user.clone();
            let current_account = self.account(&account.name);
            let still_there = current_account
                .as_ref()
                .is_some_and(|a| Arc::ptr_eq(a, &account));
            if !still_there {
                client.out.close(CloseReason::ClientClosed);
                continue;
            }
            match user {
                None => {
                    if !old_auth.anonymous_still_valid(auth) {
                        reject_credentials(&client, None);
                    }
                }
                Some(name) => match auth.user(&name) {
                    // A user JWT's rights come from the JWT and its account's claims, applied
                    // below; it keeps its seat while its account exists (checked above).
                    None if auth.operator_mode() => {}
                    None => client.out.close(CloseReason::ClientClosed),
                    Some(entry) if entry.account != account.name => {
                        client.out.close(CloseReason::ClientClosed)
                    }
                    Some(entry)
                        if old_auth
                            .user(&name)
                            .is_some_and(|old| !old.same_password(entry)) =>
                    {
                        reject_credentials(&client, Some(entry));
                    }
                    Some(entry) => {
                        let new_perms = entry.permissions.clone();
                        let old_perms = client.out.permissions.load_full();
                        if old_perms != new_perms {
                            client::apply_new_permissions(&client, &account, new_perms);
                        }
                    }
                },
            }
        }
        if tcp_auth.operator_mode() {
            self.apply_account_claims(old_auth, &tcp_auth);
        }
    }

    /// Enter lame-duck mode: stop accepting, tell clients (INFO with `ldm`), then close them
    /// spread over `lame_duck_duration`, then shut down.
    pub async fn lame_duck(self: &Arc<Self>) {
        if self.lame_duck.swap(true, Ordering::SeqCst) {
            return;
        }
        let opts = self.options();
        tracing::info!("Entering lame duck mode, stop accepting new clients");
        let clients = self.clients();
        for c in &clients {
            let mut frame = bytes::BytesMut::new();
            encode::info(&mut frame, &self.info_json(c, None));
            if c.out.queue_proto(&frame) == Queued::NeedsFlush {
                c.out.flush_soon();
            }
        }
        tokio::time::sleep(opts.lame_duck_grace_period.min(opts.lame_duck_duration)).await;
        let remaining = self.clients();
        let spread = opts
            .lame_duck_duration
            .saturating_sub(opts.lame_duck_grace_period);
        let step = if remaining.is_empty() {
            Duration::ZERO
        } else {
            spread / remaining.len() as u32
        };
        for c in remaining {
            c.out.close(CloseReason::LameDuckMode);
            if !step.is_zero() {
                tokio::time::sleep(step.min(Duration::from_secs(1))).await;
            }
        }
        self.shutdown().await;
    }

    /// Stop accepting and close every connection.
    pub async fn shutdown(&self) {
        tracing::info!("Initiating Shutdown...");
        let _ = self.shutdown.send(true);
        for subsystem in self.subsystems() {
            subsystem.stopping();
        }
        for c in self.clients() {
            c.out.close(CloseReason::ServerShutdown);
        }
        // Give writers a moment to flush their last frames.
        for _ in 0..50 {
            if self.num_clients() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for subsystem in self.subsystems() {
            subsystem.shutdown();
        }
        tracing::info!("Server Exiting..");
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

impl ConnectionHost for Server {
    fn options(&self) -> Arc<Options> {
        Server::options(self)
    }

    fn authenticator(&self) -> Arc<Authenticator> {
        Server::authenticator(self)
    }

    fn password_cache(&self) -> &PasswordCache {
        &self.password_cache
    }

    fn global_account(&self) -> Arc<Account> {
        Server::global_account(self)
    }

    fn account(&self, name: &str) -> Option<Arc<Account>> {
        Server::account(self, name)
    }

    fn info_json(&self, client: &ClientShared, account: Option<&Account>) -> Vec<u8> {
        Server::info_json(self, client, account)
    }

    fn counters(&self) -> &ConnectionCounters {
        &self.stats.connections
    }

    fn closed(&self, client: &Arc<ClientShared>, reason: CloseReason) {
        self.unregister(client, reason);
    }
}

/// Close a live connection whose credentials a reload invalidated, as nats-server does.
fn reject_credentials(client: &ClientShared, user: Option<&crate::auth::UserEntry>) {
    match user {
        Some(user) if user.is_nkey() => tracing::error!(
            "{} - cid:{} - authentication error - Nkey {:?}",
            client.out.addr,
            client.out.cid,
            user.name
        ),
        Some(user) => tracing::error!(
            "{} - cid:{} - authentication error - User {:?}",
            client.out.addr,
            client.out.cid,
            user.name
        ),
        None => tracing::error!(
            "{} - cid:{} - authentication error",
            client.out.addr,
            client.out.cid
        ),
    }
    let mut frame = bytes::BytesMut::new();
    encode::err(&mut frame, "Authorization Violation");
    client.out.queue_proto(&frame);
    client.out.close(CloseReason::AuthenticationViolation);
}

pub(crate) fn client_traffic(c: &ClientShared) -> Traffic {
    let (out_msgs, out_bytes, _) = c.out.out_stats();
    Traffic {
        in_msgs: c.in_msgs.load(Ordering::Relaxed),
        in_bytes: c.in_bytes.load(Ordering::Relaxed),
        out_msgs,
        out_bytes,
    }
}

/// The first option that changed but cannot be changed by a reload, as nats-server reports it.
fn diff_unsupported(old: &Options, new: &Options) -> Option<ServerError> {
    // Only the WebSocket listener's certificate may change, as in nats-server.
    let websocket = |o: &Options| {
        format!(
            "{:?}",
            o.websocket
                .clone()
                .map(|ws| crate::config::WebsocketConfig { tls: None, ..ws })
        )
    };
    // The operators' JWTs (as loaded, each verified): changing the trust anchor takes a
    // restart on nats-server too; switching between config and operator mode as well.
    let operators = |o: &Options| format!("{:?}", o.operator.as_ref().map(|m| &m.operators));
    // In the order nats-server compares its options, so both name the same first difference.
    let checks: [(&'static str, String, String); 11] = [
        (
            "ServerName",
            old.server_name.clone().unwrap_or_default(),
            new.server_name.clone().unwrap_or_default(),
        ),
        ("Host", old.host.clone(), new.host.clone()),
        ("Port", old.port.to_string(), new.port.to_string()),
        (
            "MaxSubs",
            old.max_subs.to_string(),
            new.max_subs.to_string(),
        ),
        (
            "NoAuthUser",
            old.auth.no_auth_user.clone().unwrap_or_default(),
            new.auth.no_auth_user.clone().unwrap_or_default(),
        ),
        (
            "SystemAccount",
            old.system_account.clone().unwrap_or_default(),
            new.system_account.clone().unwrap_or_default(),
        ),
        (
            "HTTPPort",
            format!("{:?}", old.http_port),
            format!("{:?}", new.http_port),
        ),
        (
            "MaxPending",
            old.max_pending.to_string(),
            new.max_pending.to_string(),
        ),
        (
            "JetStream",
            format!("{:?}", old.jetstream),
            format!("{:?}", new.jetstream),
        ),
        ("Websocket", websocket(old), websocket(new)),
        ("TrustedOperators", operators(old), operators(new)),
    ];
    checks
        .into_iter()
        .find(|(_, a, b)| a != b)
        .map(|(option, old, new)| ServerError::ReloadUnsupported { option, old, new })
}

/// The fields INFO and `/varz` both open with: who this server is and where it listens.
#[derive(Debug, Clone, Serialize)]
pub struct ServerIdentity {
    pub server_id: String,
    pub server_name: String,
    /// The nats-server version whose behaviour natsd implements.
    pub version: &'static str,
    /// natsd's own version (not in nats-server's output).
    pub natsd_version: &'static str,
    pub proto: u32,
    pub git_commit: &'static str,
    pub go: &'static str,
    pub host: String,
    pub port: u16,
}

#[derive(Serialize)]
struct Info<'a> {
    #[serde(flatten)]
    identity: ServerIdentity,
    headers: bool,
    max_payload: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_verify: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jetstream: Option<bool>,
    client_id: u64,
    client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_info: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_account: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acc_is_sys: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ldm: Option<bool>,
    api_lvl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

/// Binds `host:port` (a negative port picks a free one) and returns the listener with the
/// address it got.
/// The accept queue Go's listeners ask for (the kernel caps it at `somaxconn`): a burst of
/// connects, hundreds of clients reconnecting at once, waits in it instead of being dropped
/// and retried by the clients' SYN back-off seconds later (tokio's default is 1,024).
const LISTEN_BACKLOG: u32 = 4096;

fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub(crate) async fn bind_listener(
    host: &str,
    port: i32,
) -> Result<(TcpListener, SocketAddr), ServerError> {
    let port = if port < 0 { 0 } else { port as u16 };
    let bind = format!("{host}:{port}");
    let listen_error = |source| ServerError::Listen {
        addr: bind.clone(),
        source,
    };
    let mut last_error = None;
    let mut listener = None;
    for addr in tokio::net::lookup_host(&bind).await.map_err(listen_error)? {
        match listen_on(addr) {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let listener = listener.ok_or_else(|| {
        listen_error(last_error.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address to bind")
        }))
    })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Listen { addr: bind, source })?;
    Ok((listener, local))
}
