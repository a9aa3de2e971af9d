//! JetStream: persistent streams on top of the message stores.
//!
//! # Layout
//! - [`JetStream`]: the server-wide engine: store directory, server limits, one
//!   [`JsAccount`] per account, the API thread.
//! - [`api`]: `$JS.API.*` request handling (streams, account info, message get/delete,
//!   direct get).
//! - [`stream`]: one stream: its store, internal subscriptions and ingest worker.
//! - [`config`]: the stream configuration JSON with nats-server's defaults.
//! - [`monitor`]: read-only figures for the HTTP monitoring (`/jsz`, `/varz`, metrics).
//!
//! # Threads
//! Nothing here runs on the client tasks except the hand-off: internal subscriptions copy a
//! message into a bounded queue and return. API requests go to one API thread (requests are
//! handled in arrival order, like nats-server's API queue); each stream has a worker thread
//! that stores its messages and publishes the PubAcks.
//!
//! # On disk
//! `<store_dir>/jetstream/<account>/streams/<stream>/` holds the file store and `meta.json`
//! (config + creation time) with `meta.sum` (its SHA-256), both replaced atomically. Memory
//! streams are not persisted (as in nats-server, they are gone after a restart).

pub(crate) mod api;
pub(crate) mod batch;
pub(crate) mod config;
pub(crate) mod consumers;
mod counter;
pub(crate) mod headers;
mod meta_file;
pub(crate) mod monitor;
pub(crate) mod schedule;
pub(crate) mod sourcing;
pub(crate) mod stream;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::account::Account;
use crate::config::{
    AccountConfig, AccountJetStreamLimits, JetStreamConfig, Options, GLOBAL_ACCOUNT,
};
use crate::consumer::advisory;
use crate::js_errors::{ApiError, JsError};
use crate::route;
use crate::server::Server;
use crate::store::{
    FileStore, FileStoreConfig, MemStore, MessageStore, StorageType, StoreError, SyncPolicy,
};
use crate::subscription::{FlushSet, InternalHandler, InternalMsg, SubRef};
use config::{Storage, StreamConfig, StreamSource};
use meta_file::Durability;
use stream::Stream;

/// API requests waiting for the API thread before new ones are dropped (as nats-server does
/// when its API queue is full: the client times out).
const API_QUEUE: usize = 65_536;

/// JetStream start-up failures.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JetStreamError {
    /// The store directory could not be created.
    #[error("could not create storage directory {path}: {source}")]
    StoreDir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("could not start JetStream thread: {0}")]
    Thread(std::io::Error),
    /// Another server uses the store directory.
    #[error("{0}")]
    Locked(#[from] crate::store::dirlock::DirLockError),
}

/// Usage across the whole server, checked against `max_memory_store` / `max_file_store`.
#[derive(Debug, Default)]
pub(crate) struct ServerUsage {
    mem: AtomicI64,
    file: AtomicI64,
    /// Resolved `max_memory_store`.
    pub max_memory: i64,
    /// Resolved `max_file_store`.
    pub max_store: i64,
}

/// One account's usage and limits, shared by its streams' workers.
#[derive(Debug)]
pub(crate) struct Usage {
    mem: AtomicI64,
    file: AtomicI64,
    limits: ArcSwapOption<AccountJetStreamLimits>,
    server: Arc<ServerUsage>,
}

impl Usage {
    fn add(&self, storage: StorageType, delta: i64) {
        match storage {
            StorageType::Memory => {
                self.mem.fetch_add(delta, Ordering::Relaxed);
                self.server.mem.fetch_add(delta, Ordering::Relaxed);
            }
            StorageType::File => {
                self.file.fetch_add(delta, Ordering::Relaxed);
                self.server.file.fetch_add(delta, Ordering::Relaxed);
            }
        }
    }

    /// Bytes in use: (memory, file).
    pub(crate) fn used(&self) -> (u64, u64) {
        (
            self.mem.load(Ordering::Relaxed).max(0) as u64,
            self.file.load(Ordering::Relaxed).max(0) as u64,
        )
    }

    fn has_limits(&self) -> bool {
        self.limits
            .load()
            .as_ref()
            .is_some_and(|l| l.max_memory >= 0 || l.max_store >= 0)
    }

    /// May a message of `size` accounted bytes be added?
    fn check(&self, storage: StorageType, size: i64) -> Result<(), ApiError> {
        let (used, server_used, server_max) = match storage {
            StorageType::Memory => (&self.mem, &self.server.mem, self.server.max_memory),
            StorageType::File => (&self.file, &self.server.file, self.server.max_store),
        };
        if let Some(limits) = self.limits.load().as_ref() {
            let limit = match storage {
                StorageType::Memory => limits.max_memory,
                StorageType::File => limits.max_store,
            };
            if limit >= 0 && used.load(Ordering::Relaxed) + size > limit {
                return Err(JsError::AccountResourcesExceeded.into());
            }
        }
        if server_max >= 0 && server_used.load(Ordering::Relaxed) + size > server_max {
            return Err(JsError::InsufficientResources.into());
        }
        Ok(())
    }
}

/// One account as JetStream sees it (present for every account, enabled or not).
pub(crate) struct JsAccount {
    /// Account name.
    pub name: String,
    pub(crate) account: Arc<Account>,
    pub(crate) usage: Arc<Usage>,
    pub(crate) streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    api_handler: Arc<ApiHandler>,
    api_subs: Mutex<Vec<SubRef>>,
    pub(crate) api_total: AtomicU64,
    pub(crate) api_errors: AtomicU64,
    /// `jetstream { strict }`: refuse API requests with unknown members.
    pub(crate) strict: bool,
    /// Serialises creates/updates/deletes so limit and overlap checks see a stable picture.
    pub(crate) admin: Mutex<()>,
}

impl JsAccount {
    /// The account's JetStream limits; `None` when JetStream is disabled for it.
    pub(crate) fn limits(&self) -> Option<AccountJetStreamLimits> {
        self.usage.limits.load().as_deref().copied()
    }

    /// Streams by name (sorted).
    pub(crate) fn streams(&self) -> Vec<Arc<Stream>> {
        self.streams.read().values().cloned().collect()
    }

    /// One stream.
    pub(crate) fn stream(&self, name: &str) -> Option<Arc<Stream>> {
        self.streams.read().get(name).cloned()
    }

    pub(crate) fn direct_handler(&self) -> Arc<dyn InternalHandler> {
        self.api_handler.clone()
    }

    /// Sum of `max_bytes` of this account's streams of `storage` (their reservations).
    pub(crate) fn reserved(&self, storage: Storage) -> u64 {
        self.streams()
            .iter()
            .map(|s| s.config())
            .filter(|c| c.storage == storage && c.max_bytes > 0)
            .map(|c| c.max_bytes as u64)
            .sum()
    }
}

/// An API request copied off the publisher's task.
pub(crate) struct ApiRequest {
    pub(crate) account: Arc<JsAccount>,
    pub(crate) subject: String,
    pub(crate) reply: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    /// The requesting client connection (none for the server's own requests).
    pub(crate) client: Option<crate::subscription::ClientInfo>,
}

struct ApiHandler {
    tx: SyncSender<ApiRequest>,
    account: Mutex<Weak<JsAccount>>,
}

impl InternalHandler for ApiHandler {
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) {
        // A request without a reply subject gets no answer, so it is not worth queueing.
        let Some(reply) = msg.reply else { return };
        let Some(subject) = std::str::from_utf8(msg.subject).ok() else {
            return;
        };
        // Consumers answer their own subjects (pull requests, resets); unknown ones get
        // nothing. Either way nothing is copied to the API thread.
        if subject
            .strip_prefix("$JS.API.")
            .and_then(api::classify)
            .is_none()
        {
            return;
        }
        let Some(account) = self.account.lock().upgrade() else {
            return;
        };
        if let Some(arg) = msg
            .subject
            .strip_prefix(b"$JS.API.DIRECT.GET.".as_slice())
            .filter(|arg| !arg.is_empty())
        {
            // A direct get only reads the store: answered on the requester's own task, its
            // reply leaves with the requester's batch (no API-thread or writer wake-up). Like
            // nats-server, direct gets are not counted as API requests.
            let arg = String::from_utf8_lossy(arg);
            let (headers, body) = api::direct_get(&account, &arg, msg.payload, reply);
            route::publish_into(
                &account.account,
                reply,
                None,
                headers.as_deref(),
                &body,
                flush,
            );
            return;
        }
        let req = ApiRequest {
            account,
            subject: subject.to_string(),
            reply: reply.to_vec(),
            payload: msg.payload.to_vec(),
            client: flush.publisher().map(|p| p.client_info()),
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(req) {
            tracing::warn!("JetStream API queue full, dropping request");
        }
    }
}

/// `$JS.<domain>.API.>`: a request to the domain's API, forwarded to the account's own.
struct DomainApi {
    account: Weak<Account>,
    prefix: Vec<u8>,
}

impl InternalHandler for DomainApi {
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) {
        let (Some(account), Some(rest)) = (
            self.account.upgrade(),
            msg.subject.strip_prefix(self.prefix.as_slice()),
        ) else {
            return;
        };
        let mut subject = b"$JS.API.".to_vec();
        subject.extend_from_slice(rest);
        route::publish_into(
            &account,
            &subject,
            msg.reply,
            msg.headers,
            msg.payload,
            flush,
        );
    }
}

/// The server-wide JetStream engine.
pub(crate) struct JetStream {
    /// `<store_dir>/jetstream`.
    pub store_dir: PathBuf,
    /// The exclusive lock on `store_dir`, held while JetStream runs.
    _dir_lock: crate::store::dirlock::DirLock,
    /// The configuration it was started with.
    pub config: JetStreamConfig,
    pub(crate) usage: Arc<ServerUsage>,
    accounts: Mutex<HashMap<String, Arc<JsAccount>>>,
    api_tx: SyncSender<ApiRequest>,
    pub(crate) server_name: String,
    /// Shared with the accounts' API handlers, which answer direct gets themselves.
    pub(crate) api_total: Arc<AtomicU64>,
    pub(crate) api_errors: AtomicU64,
    /// The runtime consumers run on (API requests arrive on a plain thread).
    pub(crate) rt: tokio::runtime::Handle,
    /// The accounts' imports and exports, for mirrors and sources of other accounts.
    account_configs: ArcSwap<Vec<AccountConfig>>,
    /// Itself, for the streams' origin lookups.
    me: Weak<JetStream>,
}

/// Looks up the origins of one account's mirrors and sources.
struct AccountOrigins {
    js: Weak<JetStream>,
    account: String,
}

impl AccountOrigins {
    /// The account holding `source`'s origin, if JetStream is enabled there.
    fn origin_account(&self, source: &StreamSource) -> Option<Arc<JsAccount>> {
        let js = self.js.upgrade()?;
        let account = match &source.external {
            None => self.account.clone(),
            Some(ext) => {
                let configs = js.account_configs.load();
                sourcing::resolve_external(&self.account, &configs, ext, &source.name)?.to_string()
            }
        };
        let jsa = js.account(&account)?;
        jsa.limits()?;
        Some(jsa)
    }
}

impl stream::Origins for AccountOrigins {
    fn find(&self, source: &StreamSource) -> Option<Arc<Stream>> {
        self.origin_account(source)?.stream(&source.name)
    }

    fn keep_consumer(
        &self,
        source: &StreamSource,
        origin: &Arc<Stream>,
        config: crate::consumer::ConsumerConfig,
    ) -> Result<String, ApiError> {
        let jsa = self.origin_account(source).ok_or(JsError::StreamNotFound)?;
        consumers::ensure_sourcing(origin, &jsa, config)
    }

    fn drop_consumer(&self, source: &StreamSource, name: &str) {
        let Some(jsa) = self.origin_account(source) else {
            return;
        };
        if let Some(origin) = jsa.stream(&source.name) {
            consumers::remove(&origin, &jsa, name);
        }
    }

    fn domain(&self) -> Option<String> {
        self.js.upgrade()?.config.domain.clone()
    }
}

/// 75% of physical memory, as nats-server sizes an unset `max_memory_store`.
fn default_max_memory() -> i64 {
    let total_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        });
    match total_kb {
        Some(kb) => kb.saturating_mul(1024) / 4 * 3,
        None => 256 * 1024 * 1024,
    }
}

/// 75% of the free space under the store directory.
fn default_max_store(dir: &Path) -> i64 {
    match fs4::available_space(dir) {
        Ok(n) => (n / 4 * 3) as i64,
        Err(_) => 1024 * 1024 * 1024 * 1024,
    }
}

fn human(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[i])
    }
}

/// The account's JetStream limits under `opts`, `None` when it has no JetStream. As in
/// nats-server, the global account gets unlimited JetStream when it is the only account.
pub(crate) fn account_limits(
    opts: &Options,
    account: &Account,
    system: &str,
) -> Option<AccountJetStreamLimits> {
    if account.name == system {
        return None;
    }
    if let Some(l) = account.settings().jetstream {
        return Some(l);
    }
    let global_only = opts.accounts.iter().all(|a| a.name == system);
    (account.name == GLOBAL_ACCOUNT && global_only).then(AccountJetStreamLimits::default)
}

/// Account names become directory names: keep the readable ones, hex-encode the rest.
fn account_dir_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$' | b'.'));
    if plain {
        name.to_string()
    } else {
        format!("hex-{}", hex::encode(name))
    }
}

/// What `meta.json` holds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StreamMeta {
    pub(crate) config: StreamConfig,
    pub(crate) created: String,
}

/// Writes `meta.json` and `meta.sum` (see [`meta_file`] for when they reach the disk).
fn write_meta(dir: &Path, meta: &StreamMeta, durability: Durability) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    let sum = hex::encode(Sha256::digest(&body));
    meta_file::write_files(
        dir,
        &[("meta.json", body.as_slice()), ("meta.sum", sum.as_bytes())],
        durability,
    )
}

fn read_meta(dir: &Path) -> Result<StreamMeta, String> {
    let body = std::fs::read(dir.join("meta.json")).map_err(|e| e.to_string())?;
    let sum = std::fs::read_to_string(dir.join("meta.sum")).map_err(|e| e.to_string())?;
    let digest = hex::encode(Sha256::digest(&body));
    if digest != sum.trim() {
        // A crash between the two renames: the new `meta.json` is in place and its sum
        // still waits complete in `meta.sum.tmp` (meta_file writes both before renaming).
        let pending = std::fs::read_to_string(dir.join("meta.sum.tmp")).unwrap_or_default();
        if digest != pending.trim() {
            return Err("meta.json checksum mismatch".into());
        }
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

impl JetStream {
    /// Starts JetStream for `server`: store directory, API thread, and every account's
    /// streams recovered from disk. Logs as nats-server does.
    pub(crate) fn start(server: &Server) -> Result<Arc<JetStream>, JetStreamError> {
        let opts = server.options();
        let config = opts.jetstream.clone().unwrap_or_default();
        let base = match &config.store_dir {
            Some(dir) => dir.clone(),
            None => {
                tracing::warn!(
                    "Temporary storage directory used, data could be lost on system reboot"
                );
                std::env::temp_dir().join("nats")
            }
        };
        let store_dir = base.join("jetstream");
        std::fs::create_dir_all(&store_dir).map_err(|source| JetStreamError::StoreDir {
            path: store_dir.clone(),
            source,
        })?;
        let dir_lock = crate::store::dirlock::lock_dir(&store_dir)?;
        let max_memory = if config.max_memory >= 0 {
            config.max_memory
        } else {
            default_max_memory()
        };
        let max_store = if config.max_store >= 0 {
            config.max_store
        } else {
            default_max_store(&store_dir)
        };
        tracing::info!("Starting JetStream");
        tracing::info!("---------------- JETSTREAM ----------------");
        tracing::info!("  Max Memory:      {}", human(max_memory));
        tracing::info!("  Max Storage:     {}", human(max_store));
        tracing::info!("  Store Directory: \"{}\"", store_dir.display());
        tracing::info!("-------------------------------------------");
        let (api_tx, api_rx) = std::sync::mpsc::sync_channel(API_QUEUE);
        let js = Arc::new_cyclic(|me| JetStream {
            store_dir,
            _dir_lock: dir_lock,
            config,
            usage: Arc::new(ServerUsage {
                max_memory,
                max_store,
                ..ServerUsage::default()
            }),
            accounts: Mutex::new(HashMap::new()),
            api_tx,
            server_name: server.name(),
            api_total: Arc::new(AtomicU64::new(0)),
            api_errors: AtomicU64::new(0),
            rt: tokio::runtime::Handle::current(),
            account_configs: ArcSwap::from_pointee(opts.accounts.clone()),
            me: me.clone(),
        });
        let api_js = js.clone();
        std::thread::Builder::new()
            .name("js-api".into())
            .spawn(move || api_js.api_loop(api_rx))
            .map_err(JetStreamError::Thread)?;
        js.sync_accounts(server);
        tracing::info!("JetStream started");
        Ok(js)
    }

    fn api_loop(self: Arc<Self>, rx: Receiver<ApiRequest>) {
        while let Ok(req) = rx.recv() {
            if let Some((headers, body)) = api::handle(&self, &req) {
                route::publish(
                    &req.account.account,
                    &req.reply,
                    None,
                    headers.as_deref(),
                    &body,
                );
                api::audit(&self, &req, &body);
            }
        }
    }

    /// Brings the JetStream view in line with the server's accounts: new accounts get the
    /// API subscription (and their streams recovered), changed limits apply at once, and an
    /// account that is gone (or lost JetStream) is unloaded with its data kept on disk.
    pub(crate) fn sync_accounts(&self, server: &Server) {
        let opts = server.options();
        self.account_configs.store(Arc::new(opts.accounts.clone()));
        let system = server.system_account();
        let accounts = server.accounts();
        // Unloading joins stream workers, and a mirror or source worker may be waiting for
        // this map to find its origin: unload only after the lock is released.
        let mut unloads: Vec<(Arc<JsAccount>, &str)> = Vec::new();
        let mut map = self.accounts.lock();
        let live: HashMap<&str, &Arc<Account>> =
            accounts.iter().map(|a| (a.name.as_str(), a)).collect();
        let gone: Vec<String> = map
            .iter()
            .filter(|(name, jsa)| {
                live.get(name.as_str())
                    .is_none_or(|a| !Arc::ptr_eq(a, &jsa.account))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(jsa) = map.remove(&name) {
                unloads.push((jsa, "account removed"));
            }
        }
        // Server-wide reservations of account limits are checked in a stable order.
        let mut reserved_mem = 0i64;
        let mut reserved_file = 0i64;
        for account in &accounts {
            let mut limits = account_limits(&opts, account, &system);
            if let Some(l) = limits {
                let mem = reserved_mem + l.max_memory.max(0);
                let file = reserved_file + l.max_store.max(0);
                if mem > self.usage.max_memory || file > self.usage.max_store {
                    tracing::error!(
                        "Error enabling JetStream for account '{}': insufficient resources",
                        account.name
                    );
                    limits = None;
                } else {
                    reserved_mem = mem;
                    reserved_file = file;
                }
            }
            let jsa = match map.get(&account.name) {
                Some(jsa) => jsa.clone(),
                None => {
                    let jsa = self.new_account(account);
                    map.insert(account.name.clone(), jsa.clone());
                    jsa
                }
            };
            let was_enabled = jsa.limits().is_some();
            jsa.usage.limits.store(limits.map(Arc::new));
            match (was_enabled, limits.is_some()) {
                (false, true) => self.recover_account(&jsa),
                (true, false) => unloads.push((jsa, "JetStream disabled for account")),
                _ => {}
            }
        }
        drop(map);
        for (jsa, why) in unloads {
            self.unload(&jsa, why);
        }
    }

    fn new_account(&self, account: &Arc<Account>) -> Arc<JsAccount> {
        let handler = Arc::new(ApiHandler {
            tx: self.api_tx.clone(),
            account: Mutex::new(Weak::new()),
        });
        let jsa = Arc::new(JsAccount {
            name: account.name.clone(),
            account: account.clone(),
            usage: Arc::new(Usage {
                mem: AtomicI64::new(0),
                file: AtomicI64::new(0),
                limits: ArcSwapOption::empty(),
                server: self.usage.clone(),
            }),
            streams: RwLock::new(BTreeMap::new()),
            api_handler: handler.clone(),
            api_subs: Mutex::new(Vec::new()),
            api_total: AtomicU64::new(0),
            api_errors: AtomicU64::new(0),
            strict: self.config.strict,
            admin: Mutex::new(()),
        });
        *handler.account.lock() = Arc::downgrade(&jsa);
        let mut subs = jsa.api_subs.lock();
        // Like nats-server's `$JS.API.>` import, the API space has a responder: a request
        // for an unknown API, or for a consumer that is not there, gets no reply (the client
        // times out) rather than "no responders". Pull requests and direct gets are the
        // exception nats-server makes: only the consumer or stream itself answers those.
        for subject in [
            "$JS.API.*",
            "$JS.API.STREAM.>",
            "$JS.API.ACCOUNT.>",
            "$JS.API.META.>",
            "$JS.API.SERVER.>",
            "$JS.API.CONSUMER.*",
            "$JS.API.CONSUMER.CREATE.>",
            "$JS.API.CONSUMER.DURABLE.>",
            "$JS.API.CONSUMER.INFO.>",
            "$JS.API.CONSUMER.DELETE.>",
            "$JS.API.CONSUMER.NAMES.>",
            "$JS.API.CONSUMER.LIST.>",
            "$JS.API.CONSUMER.PAUSE.>",
            "$JS.API.CONSUMER.RESET.>",
            "$JS.API.CONSUMER.UNPIN.>",
            "$JS.API.CONSUMER.LEADER.>",
        ] {
            let h: Arc<dyn InternalHandler> = handler.clone();
            match route::subscribe_internal(account, subject.as_bytes(), None, h) {
                Ok(sub) => subs.push(sub),
                Err(e) => tracing::error!("JetStream API subscription {}: {}", subject, e),
            }
        }
        if let Some(domain) = &self.config.domain {
            // The domain's API is the account's own (nats-server imports `$JS.<domain>.API.>`
            // as `$JS.API.>`): everything under it, pull requests included, is re-published
            // under `$JS.API.` with the same reply.
            let subject = format!("$JS.{domain}.API.>");
            let forward = Arc::new(DomainApi {
                account: Arc::downgrade(account),
                prefix: format!("$JS.{domain}.API.").into_bytes(),
            });
            match route::subscribe_internal(account, subject.as_bytes(), None, forward) {
                Ok(sub) => subs.push(sub),
                Err(e) => tracing::error!("JetStream API subscription {}: {}", subject, e),
            }
        }
        drop(subs);
        jsa
    }

    fn unload(&self, jsa: &JsAccount, why: &str) {
        let streams: Vec<Arc<Stream>> = std::mem::take(&mut *jsa.streams.write())
            .into_values()
            .collect();
        if !streams.is_empty() {
            tracing::warn!(
                "JetStream account '{}' unloaded ({}): {} stream(s) kept on disk under {}",
                jsa.name,
                why,
                streams.len(),
                self.account_dir(&jsa.name).display()
            );
        }
        for s in streams {
            s.stop();
        }
        if why == "account removed" {
            for sub in jsa.api_subs.lock().drain(..) {
                route::unsubscribe_internal(&jsa.account, &sub);
            }
        }
    }

    fn account_dir(&self, account: &str) -> PathBuf {
        self.store_dir
            .join(account_dir_name(account))
            .join("streams")
    }

    pub(crate) fn stream_dir(&self, account: &str, stream: &str) -> PathBuf {
        self.account_dir(account).join(stream)
    }

    fn sync_policy(&self) -> (SyncPolicy, bool) {
        if self.config.sync_always {
            // The worker fsyncs once per batch (group commit), so the store itself need not.
            (SyncPolicy::Interval(Duration::from_secs(1)), true)
        } else {
            (
                SyncPolicy::Interval(self.config.sync_interval.unwrap_or(Duration::from_secs(1))),
                false,
            )
        }
    }

    /// Opens the store for `cfg` and starts the stream (not yet registered in the account).
    pub(crate) fn open_stream(
        &self,
        jsa: &JsAccount,
        cfg: StreamConfig,
        created: u64,
    ) -> Result<Arc<Stream>, ApiError> {
        let (policy, sync_always) = self.sync_policy();
        let (store, dir): (Arc<dyn MessageStore>, Option<PathBuf>) = match cfg.storage {
            Storage::Memory => (Arc::new(MemStore::new(cfg.store_limits())), None),
            Storage::File => {
                let dir = self.stream_dir(&jsa.name, &cfg.name);
                let mut fc = FileStoreConfig::new(&dir);
                fc.limits = cfg.store_limits();
                fc.sync = policy;
                let store = FileStore::open(fc).map_err(ApiError::internal)?;
                (Arc::new(store), Some(dir))
            }
        };
        let allow_direct = cfg.allow_direct;
        // `persist_mode: async` lets the PubAck go out before the fsync that
        // `sync_interval: always` would otherwise wait for (it cannot change later).
        let sync_always = sync_always && cfg.persist_mode != config::PersistMode::Async;
        let stream = Stream::start(
            cfg,
            created,
            store,
            jsa.account.clone(),
            jsa.usage.clone(),
            dir,
            sync_always,
            self.rt.clone(),
            Arc::new(AccountOrigins {
                js: self.me.clone(),
                account: jsa.name.clone(),
            }),
            self.config.domain.as_deref(),
        )?;
        if allow_direct {
            stream.set_direct(Some(jsa.direct_handler()));
        }
        Ok(stream)
    }

    /// Persists a file stream's metadata.
    pub(crate) fn save_meta(&self, stream: &Stream) -> Result<(), ApiError> {
        let Some(dir) = &stream.dir else {
            return Ok(());
        };
        let meta = StreamMeta {
            config: (*stream.config()).clone(),
            created: natsd_conf::timestamp::rfc3339_ns(stream.created),
        };
        // A first write may reach the disk just after the reply; a rewrite must not leave a
        // window where neither the old nor the new config is durable.
        let durability = if self.config.sync_always || dir.join("meta.json").exists() {
            Durability::Now
        } else {
            Durability::Soon
        };
        write_meta(dir, &meta, durability).map_err(ApiError::internal)
    }

    /// Loads every persisted stream of an account that (now) has JetStream.
    fn recover_account(&self, jsa: &Arc<JsAccount>) {
        let dir = self.account_dir(&jsa.name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            if !path.is_dir() {
                continue;
            }
            let meta = match read_meta(&path) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(
                        "JetStream: skipping stream directory {}: {}",
                        path.display(),
                        e
                    );
                    continue;
                }
            };
            let name = meta.config.name.clone();
            if path.file_name().and_then(|n| n.to_str()) != Some(name.as_str()) {
                tracing::warn!(
                    "JetStream: stream directory {} holds stream '{}', skipping",
                    path.display(),
                    name
                );
                continue;
            }
            let created = natsd_conf::timestamp::parse_rfc3339_ns(&meta.created).unwrap_or(0);
            match self.open_stream(jsa, meta.config, created) {
                Ok(stream) => {
                    let st = stream.store.state();
                    tracing::info!(
                        "  Restored {} messages for stream '{} > {}'",
                        st.msgs,
                        jsa.name,
                        name
                    );
                    // Consumers first: a mirror or source finding this stream must find
                    // the consumer it keeps here rather than make another.
                    consumers::recover(&stream, jsa);
                    jsa.streams.write().insert(name, stream.clone());
                }
                Err(e) => tracing::error!(
                    "JetStream: could not restore stream '{} > {}': {}",
                    jsa.name,
                    name,
                    e.description
                ),
            }
        }
    }

    /// The JetStream view of an account.
    pub(crate) fn account(&self, name: &str) -> Option<Arc<JsAccount>> {
        self.accounts.lock().get(name).cloned()
    }

    /// Every account JetStream knows, sorted by name.
    pub(crate) fn accounts(&self) -> Vec<Arc<JsAccount>> {
        let mut v: Vec<_> = self.accounts.lock().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Total reservations of stream `max_bytes` across accounts: (memory, file).
    pub(crate) fn reserved(&self) -> (u64, u64) {
        self.accounts().iter().fold((0, 0), |(m, f), a| {
            (
                m + a.reserved(Storage::Memory),
                f + a.reserved(Storage::File),
            )
        })
    }

    /// Server-wide usage: (memory, file).
    pub(crate) fn used(&self) -> (u64, u64) {
        (
            self.usage.mem.load(Ordering::Relaxed).max(0) as u64,
            self.usage.file.load(Ordering::Relaxed).max(0) as u64,
        )
    }

    /// Flushes and closes every stream (orderly shutdown).
    /// Tells every waiting pull request that the server is going down (`409 Server
    /// Shutdown`), before the connections close, as nats-server does.
    pub(crate) fn signal_pull_consumers(&self) {
        for jsa in self.accounts() {
            for s in jsa.streams() {
                s.consumers.signal_shutdown();
            }
        }
    }

    pub(crate) fn shutdown(&self) {
        for jsa in self.accounts() {
            for s in jsa.streams() {
                s.stop();
            }
        }
    }
}

/// A store's refusal as the API reports it (nats-server's texts for the limits are the
/// store errors' own).
pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::MaxMsgs | StoreError::MaxBytes | StoreError::MaxMsgsPerSubject => {
            JsError::StreamStoreFailed.with(e)
        }
        StoreError::MsgTooLarge => JsError::StreamMessageExceedsMaximum.into(),
        StoreError::NotFound => JsError::NoMessageFound.into(),
        // A write that failed (full disk, EIO) or is refused until the store recovers: the
        // publisher hears why, with nats-server's "store failed" error (503, 10077).
        StoreError::WriteFailed(text) => JsError::StreamStoreFailed.with(text),
        StoreError::Io { .. } => JsError::StreamStoreFailed.with(crate::store::io_error_text(&e)),
        other => ApiError::internal(other),
    }
}

/// Announces a stream or consumer being created, modified or deleted, on the subjects and
/// with the bodies nats-server uses (`$JS.EVENT.ADVISORY.STREAM.CREATED.<stream>`, ...).
pub(crate) fn action_advisory(jsa: &JsAccount, stream: &str, consumer: Option<&str>, action: &str) {
    #[derive(serde::Serialize)]
    struct Action<'a> {
        stream: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        consumer: Option<&'a str>,
        action: &'a str,
    }
    let event = match action {
        "create" => "CREATED",
        "modify" => "UPDATED",
        _ => "DELETED",
    };
    let (kind, subject) = match consumer {
        Some(c) => (
            "io.nats.jetstream.advisory.v1.consumer_action",
            format!("$JS.EVENT.ADVISORY.CONSUMER.{event}.{stream}.{c}"),
        ),
        None => (
            "io.nats.jetstream.advisory.v1.stream_action",
            format!("$JS.EVENT.ADVISORY.STREAM.{event}.{stream}"),
        ),
    };
    let body = Action {
        stream,
        consumer,
        action,
    };
    let payload = advisory::body(kind, &body);
    route::publish(&jsa.account, subject.as_bytes(), None, None, &payload);
}

/// `$JS.EVENT.ADVISORY.CONSUMER.PAUSE.<stream>.<consumer>`, as nats-server sends it.
pub(crate) fn pause_advisory(jsa: &JsAccount, stream: &str, consumer: &str, until: Option<u64>) {
    #[derive(serde::Serialize)]
    struct Pause<'a> {
        stream: &'a str,
        consumer: &'a str,
        paused: bool,
        pause_until: String,
    }
    let body = Pause {
        stream,
        consumer,
        paused: until.is_some(),
        pause_until: natsd_conf::timestamp::rfc3339_ns(until.unwrap_or(0)),
    };
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.PAUSE.{stream}.{consumer}");
    let payload = advisory::body("io.nats.jetstream.advisory.v1.consumer_pause", &body);
    route::publish(&jsa.account, subject.as_bytes(), None, None, &payload);
}
