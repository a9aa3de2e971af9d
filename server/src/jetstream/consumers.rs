//! A stream's consumers: the running engines ([`crate::consumer::driver`]), retention by
//! acknowledgement (work-queue and interest streams), persistence of durable consumers'
//! configs next to their state blobs, and the `$JS.API.CONSUMER.*` requests.
//!
//! # Interest retention
//! When an interest stream stores a message it records which consumers' filters match it
//! (none: the message is removed at once, as nats-server does). Each ack removes that
//! consumer from the message's set; an empty set removes the message. Deleting a consumer
//! drops it from every set. After a restart the sets are rebuilt from the restored
//! consumers' ack state.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use tokio::runtime::Handle;

use super::api::{decode, parse_body, typed, LIST_LIMIT, NAMES_LIMIT};
use super::config::{Retention, StreamConfig};
use super::stream::Stream;
use super::{action_advisory, pause_advisory, JetStream, JsAccount};
use crate::consumer::config::{
    check_workqueue_partition, generate_name, is_valid_group_name, AckPolicy,
};
use crate::consumer::driver::{self, ConsumerHandle, ConsumerHost, StopReason};
use crate::consumer::{Consumer, ConsumerConfig, ConsumerState, StreamContext};
use crate::js_errors::{ApiError, JsError};
use natsd_conf::timestamp::{parse_rfc3339_ns, rfc3339_ns};

/// Runs `f` to completion from synchronous code: the API thread (outside the runtime)
/// blocks on the runtime; a multi-threaded runtime worker steps aside first.
pub(crate) fn block_on<F: Future>(rt: &Handle, f: F) -> Option<F::Output> {
    match Handle::try_current() {
        Err(_) => Some(rt.block_on(f)),
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            Some(tokio::task::block_in_place(|| h.block_on(f)))
        }
        // A current-thread runtime cannot block on its own tasks.
        Ok(_) => None,
    }
}

/// See [`Consumers::through`].
pub(crate) enum ThroughConsumer {
    /// No such consumer (yet): the copy waits quietly.
    Missing,
    /// It exists without `ack_policy: flow_control`: nats-server's 10214 / 10217.
    NotFlowControl,
    /// It delivers elsewhere than the configured `deliver_subject`: nothing arrives.
    Silent,
    /// Copy from `ack_floor + 1`, what `filters` match (none: everything).
    Ready {
        ack_floor: u64,
        filters: Vec<Vec<u8>>,
    },
}

/// One running consumer as the stream sees it.
pub(crate) struct ConsumerEntry {
    pub(crate) handle: ConsumerHandle,
    pub(crate) config: Mutex<ConsumerConfig>,
    filters: Vec<Vec<u8>>,
}

impl ConsumerEntry {
    fn matches(&self, subject: &[u8]) -> bool {
        self.filters.is_empty()
            || self
                .filters
                .iter()
                .any(|f| crate::subject::matches(f, subject))
    }
}

type InterestSet = SmallVec<[Arc<str>; 2]>;

/// A stream's consumers.
pub(crate) struct Consumers {
    rt: Handle,
    map: RwLock<BTreeMap<String, Arc<ConsumerEntry>>>,
    /// Interest streams: stream sequence → consumers that still need it.
    interest: Mutex<HashMap<u64, InterestSet>>,
    /// `<stream dir>/cmeta` for file streams.
    meta_dir: Option<PathBuf>,
}

/// What `cmeta/<name>.json` holds for a durable consumer.
#[derive(Serialize, Deserialize)]
struct ConsumerMeta {
    config: ConsumerConfig,
    created: u64,
}

impl Consumers {
    pub(crate) fn new(rt: Handle, stream_dir: Option<&Path>) -> Consumers {
        Consumers {
            rt,
            map: RwLock::new(BTreeMap::new()),
            interest: Mutex::new(HashMap::new()),
            meta_dir: stream_dir.map(|d| d.join("cmeta")),
        }
    }

    /// The consumers' names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.map.read().keys().cloned().collect()
    }

    /// What a source or mirror reading through durable consumer `name` (its `consumer`
    /// config) finds on this stream.
    pub(crate) fn through(&self, name: &str, deliver_subject: &str) -> ThroughConsumer {
        let Some(e) = self.get(name) else {
            return ThroughConsumer::Missing;
        };
        let (ack_policy, subject) = {
            let cfg = e.config.lock();
            (cfg.ack_policy, cfg.deliver_subject.clone())
        };
        if ack_policy != AckPolicy::FlowControl {
            return ThroughConsumer::NotFlowControl;
        }
        if subject != deliver_subject {
            // nats-server listens on the configured subject and hears nothing.
            return ThroughConsumer::Silent;
        }
        match block_on(&self.rt, e.handle.info()).flatten() {
            Some(info) => ThroughConsumer::Ready {
                ack_floor: info.ack_floor.stream_seq,
                filters: e.filters.clone(),
            },
            None => ThroughConsumer::Missing,
        }
    }

    /// A source copied everything through origin sequence `seq` through consumer `name`:
    /// its ack floor moves there, as the copy's flow-control answers move it on nats-server
    /// (a work-queue origin then removes what was copied, an interest origin what no other
    /// consumer needs).
    pub(crate) fn acknowledge_through(&self, name: &str, seq: u64) {
        if let Some(e) = self.get(name) {
            e.handle.copied_through(seq);
        }
    }

    /// Consumer `name`'s deliver subject, if it exists.
    pub(crate) fn deliver_subject(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|e| e.config.lock().deliver_subject.clone())
    }

    /// How many consumers the stream has.
    pub(crate) fn count(&self) -> usize {
        self.map.read().len()
    }

    /// The consumers a stricter `consumer_limits` (inactive threshold, max ack pending; 0
    /// meaning unset) would leave over their limit, as nats-server lists them on an update.
    pub(crate) fn over_limits(&self, inactive_threshold: i64, max_ack_pending: i64) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|(_, e)| {
                let c = e.config.lock();
                (inactive_threshold > 0 && c.inactive_threshold > inactive_threshold)
                    || (max_ack_pending > 0 && c.max_ack_pending > max_ack_pending)
            })
            .map(|(name, _)| name)
            .collect()
    }

    fn entries(&self) -> Vec<(String, Arc<ConsumerEntry>)> {
        self.map
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn get(&self, name: &str) -> Option<Arc<ConsumerEntry>> {
        self.map.read().get(name).cloned()
    }

    /// Wakes every consumer (after the worker stored a batch).
    pub(crate) fn notify_all(&self) {
        for e in self.map.read().values() {
            e.handle.notify();
        }
    }

    /// After a purge or message delete: recount pending and forget removed sequences.
    pub(crate) fn reset_pending(&self, first_seq: u64, still_stored: impl Fn(u64) -> bool) {
        for e in self.map.read().values() {
            e.handle.reset_pending();
        }
        self.interest
            .lock()
            .retain(|&seq, _| seq >= first_seq && still_stored(seq));
    }

    /// Interest streams, called by the worker with `store` storing the message: records
    /// which consumers need it. Returns false when none does (the caller removes it).
    pub(crate) fn record_interest<T>(
        &self,
        subject: &[u8],
        store: impl FnOnce() -> T,
        seq_of: impl Fn(&T) -> Option<u64>,
    ) -> (T, bool) {
        // Held across the store so an ack cannot arrive before the set exists.
        let mut interest = self.interest.lock();
        let set: InterestSet = self
            .map
            .read()
            .iter()
            .filter(|(_, e)| e.matches(subject))
            .map(|(k, _)| Arc::from(k.as_str()))
            .collect();
        let out = store();
        let Some(seq) = seq_of(&out) else {
            return (out, true);
        };
        if set.is_empty() {
            return (out, false);
        }
        interest.insert(seq, set);
        (out, true)
    }

    /// Stops every consumer: keeping their state when the stream is unloaded, telling their
    /// waiting pull requests when it is deleted.
    pub(crate) fn stop_all(&self, reason: StopReason) {
        let entries = std::mem::take(&mut *self.map.write());
        for e in entries.values() {
            block_on(&self.rt, e.handle.stop(reason));
        }
    }

    /// Tells every consumer's waiting pull requests that the server is going down.
    pub(crate) fn signal_shutdown(&self) {
        for (_, e) in self.entries() {
            block_on(&self.rt, e.handle.signal_shutdown());
        }
    }

    fn meta_path(&self, name: &str) -> Option<PathBuf> {
        self.meta_dir
            .as_ref()
            .map(|d| d.join(format!("{name}.json")))
    }

    fn save_meta(&self, name: &str, meta: &ConsumerMeta) -> Result<(), ApiError> {
        let Some(path) = self.meta_path(name) else {
            return Ok(());
        };
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let body = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
            let tmp = path.with_extension("json.tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(ApiError::internal)
    }

    fn remove_meta(&self, name: &str) {
        if let Some(path) = self.meta_path(name) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The [`ConsumerHost`] of one stream.
struct StreamHost {
    stream: Weak<Stream>,
    jsa: Weak<JsAccount>,
}

impl ConsumerHost for StreamHost {
    fn acked(&self, consumer: &str, stream_seqs: &[u64]) {
        let Some(stream) = self.stream.upgrade() else {
            return;
        };
        let cfg = stream.config();
        match cfg.retention {
            Retention::Limits => return,
            Retention::Workqueue => {
                for &seq in stream_seqs {
                    let _ = stream.store.remove_msg(seq);
                }
            }
            Retention::Interest => {
                let mut interest = stream.consumers.interest.lock();
                for &seq in stream_seqs {
                    let Some(set) = interest.get_mut(&seq) else {
                        continue;
                    };
                    set.retain(|c| &**c != consumer);
                    if set.is_empty() {
                        interest.remove(&seq);
                        let _ = stream.store.remove_msg(seq);
                    }
                }
            }
        }
        stream.refresh_usage();
    }

    fn reset(&self, consumer: &str, seq: u64) {
        let Some(stream) = self.stream.upgrade() else {
            return;
        };
        if stream.config().retention != Retention::Interest {
            return;
        }
        let Some(entry) = stream.consumers.get(consumer) else {
            return;
        };
        // Below `seq` the consumer gives its interest up; from `seq` on it needs every
        // matching message still stored again.
        drop_interest(&stream, consumer, seq, |interest| {
            let mut next = seq.max(stream.store.state().first_seq);
            while let Ok(msg) = stream.store.load_next_msg(b"", next) {
                next = msg.seq + 1;
                if entry.matches(&msg.subject) {
                    let set = interest.entry(msg.seq).or_default();
                    if !set.iter().any(|c| &**c == consumer) {
                        set.push(Arc::from(consumer));
                    }
                }
            }
        });
    }

    fn inactive(&self, consumer: &str) {
        let (Some(stream), Some(jsa)) = (self.stream.upgrade(), self.jsa.upgrade()) else {
            return;
        };
        let removed = stream.consumers.map.write().remove(consumer);
        if removed.is_some() {
            forget(&stream, consumer);
            action_advisory(&jsa, &stream.name, Some(consumer), "delete");
        }
    }
}

/// Removes a stopped consumer's persisted state and its interest.
fn forget(stream: &Stream, name: &str) {
    let _ = stream.store.consumer_store().remove(name);
    stream.consumers.remove_meta(name);
    if stream.config().retention == Retention::Interest {
        drop_interest(stream, name, u64::MAX, |_| {});
    }
}

/// Interest streams: `consumer` no longer needs the messages below `below`; messages nobody
/// needs any more are removed. `then` edits the sets further under the same lock.
fn drop_interest(
    stream: &Stream,
    consumer: &str,
    below: u64,
    then: impl FnOnce(&mut HashMap<u64, InterestSet>),
) {
    let mut gone = Vec::new();
    let mut interest = stream.consumers.interest.lock();
    interest.retain(|&seq, set| {
        if seq < below {
            set.retain(|c| &**c != consumer);
        }
        if set.is_empty() {
            gone.push(seq);
            false
        } else {
            true
        }
    });
    then(&mut interest);
    drop(interest);
    for seq in gone {
        let _ = stream.store.remove_msg(seq);
    }
    stream.refresh_usage();
}

fn host(stream: &Arc<Stream>, jsa: &Arc<JsAccount>) -> Arc<dyn ConsumerHost> {
    Arc::new(StreamHost {
        stream: Arc::downgrade(stream),
        jsa: Arc::downgrade(jsa),
    })
}

fn start(
    stream: &Arc<Stream>,
    jsa: &Arc<JsAccount>,
    consumer: Consumer,
) -> Result<Arc<ConsumerEntry>, ApiError> {
    let config = consumer.config().clone();
    let name = consumer.name().to_string();
    let _guard = stream.consumers.rt.enter();
    let handle = driver::spawn(
        consumer,
        jsa.account.clone(),
        stream.store.clone(),
        host(stream, jsa),
    )
    .map_err(ApiError::internal)?;
    let entry = Arc::new(ConsumerEntry {
        handle,
        filters: config
            .filters()
            .into_iter()
            .map(String::into_bytes)
            .collect(),
        config: Mutex::new(config),
    });
    stream.consumers.map.write().insert(name, entry.clone());
    Ok(entry)
}

/// Restarts a recovered stream's durable consumers; ephemerals' leftovers are removed.
pub(crate) fn recover(stream: &Arc<Stream>, jsa: &Arc<JsAccount>) {
    let cs = stream.store.consumer_store();
    let mut metas: BTreeMap<String, ConsumerMeta> = BTreeMap::new();
    if let Some(dir) = &stream.consumers.meta_dir {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let path = e.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
                else {
                    let _ = std::fs::remove_file(&path);
                    continue;
                };
                match std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ConsumerMeta>(&b).ok())
                {
                    Some(meta) => {
                        metas.insert(name, meta);
                    }
                    None => {
                        tracing::warn!("JetStream: unreadable consumer config {}", path.display())
                    }
                }
            }
        }
    }
    for name in cs.list().unwrap_or_default() {
        if !metas.contains_key(&name) {
            let _ = cs.remove(&name);
        }
    }
    let interest = stream.config().retention == Retention::Interest;
    let mut restored = Vec::new();
    for (name, meta) in metas {
        let state = match cs.load(&name) {
            Ok(Some(blob)) => ConsumerState::decode(&blob, meta.config.ack_wait.max(0) as u64)
                .map_err(|e| tracing::warn!("JetStream: consumer '{name}' state: {e}"))
                .ok(),
            Ok(None) => None,
            Err(e) => {
                // Damaged state: the consumer restarts from its config (redelivering
                // rather than skipping anything).
                tracing::warn!(
                    "JetStream: consumer '{name}' state unreadable, restarting it from its configuration: {e}"
                );
                None
            }
        };
        let consumer = match state {
            Some(state) => Consumer::restore(&stream.name, &name, meta.config, meta.created, state),
            None => Consumer::new(
                &stream.name,
                &name,
                meta.config,
                &*stream.store,
                meta.created,
            ),
        };
        if interest {
            restored.push((
                consumer
                    .config()
                    .filters()
                    .into_iter()
                    .map(String::into_bytes)
                    .collect::<Vec<_>>(),
                name.clone(),
                consumer.state().ack_floor.stream_seq,
                consumer.state().delivered.stream_seq,
                consumer
                    .state()
                    .pending
                    .keys()
                    .copied()
                    .collect::<Vec<u64>>(),
            ));
        }
        if let Err(e) = start(stream, jsa, consumer) {
            tracing::error!("JetStream: could not restart consumer '{name}': {e:?}");
        }
    }
    if interest {
        rebuild_interest(stream, &restored);
    }
}

type RestoredInterest = (Vec<Vec<u8>>, String, u64, u64, Vec<u64>);

/// Interest sets after a restart: a consumer still needs a message it matches and has not
/// acknowledged (above its ack floor and either undelivered or pending).
fn rebuild_interest(stream: &Stream, restored: &[RestoredInterest]) {
    let st = stream.store.state();
    let mut interest = stream.consumers.interest.lock();
    let mut seq = st.first_seq.max(1);
    while seq <= st.last_seq {
        let Ok(msg) = stream.store.load_next_msg(b"", seq) else {
            break;
        };
        seq = msg.seq + 1;
        let set: InterestSet = restored
            .iter()
            .filter(|(filters, _, floor, delivered, pending)| {
                let matches = filters.is_empty()
                    || filters
                        .iter()
                        .any(|f| crate::subject::matches(f, &msg.subject));
                matches && msg.seq > *floor && (msg.seq > *delivered || pending.contains(&msg.seq))
            })
            .map(|(_, name, ..)| Arc::from(name.as_str()))
            .collect();
        if set.is_empty() {
            let _ = stream.store.remove_msg(msg.seq);
        } else {
            interest.insert(msg.seq, set);
        }
    }
}

// ---------------------------------------------------------------------------------------
// API

#[derive(Deserialize, Default)]
struct CreateRequest {
    #[serde(default)]
    stream_name: String,
    #[serde(default)]
    config: Option<ConsumerConfig>,
    #[serde(default, deserialize_with = "consumer_action")]
    action: String,
    /// Refuse rather than adjust the config (nats-server's pedantic mode).
    #[serde(default)]
    pedantic: bool,
}

/// `action`: empty (create or update), `create` or `update`.
fn consumer_action<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let names = [("", ""), ("create", "create"), ("update", "update")];
    crate::json::go_enum(d, &names, crate::json::NameCase::Exact, |raw| {
        format!("unknown consumer action: {raw}")
    })
    .map(str::to_string)
}

fn account_consumers(jsa: &JsAccount) -> usize {
    jsa.streams().iter().map(|s| s.consumers.count()).sum()
}

/// Consumers across an account (for `$JS.API.INFO` and monitoring).
pub(crate) fn consumer_count(jsa: &JsAccount) -> usize {
    account_consumers(jsa)
}

fn info_json(stream: &Stream, entry: &ConsumerEntry) -> Result<Vec<u8>, ApiError> {
    let info = block_on(&stream.consumers.rt, entry.handle.info())
        .flatten()
        .ok_or(JsError::ConsumerNotFound)?;
    serde_json::to_vec(&info).map_err(ApiError::internal)
}

fn typed_raw(kind: &str, info_json: &[u8]) -> Vec<u8> {
    let rest = info_json.strip_prefix(b"{").unwrap_or(b"}");
    let mut out = format!("{{\"type\":\"io.nats.jetstream.api.v1.{kind}_response\"").into_bytes();
    if rest != b"}" {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out
}

/// The consumers a stream may have when neither it nor its account sets a limit: nats-server
/// 2.15's `default_max_consumers`, which guards against applications that create consumers
/// without end.
const DEFAULT_MAX_CONSUMERS: i64 = 1000;

/// `$JS.API.CONSUMER.CREATE.<stream>[.<name>[.<filter>]]` and
/// `$JS.API.CONSUMER.DURABLE.CREATE.<stream>.<durable>`.
pub(crate) fn create(
    js: &JetStream,
    jsa: &Arc<JsAccount>,
    arg: &str,
    payload: &[u8],
    legacy_durable: bool,
) -> Result<Vec<u8>, ApiError> {
    let mut parts = arg.splitn(3, '.');
    let stream_name = parts.next().unwrap_or("");
    let subject_name = parts.next().filter(|n| !n.is_empty());
    let subject_filter = parts.next();
    let req: CreateRequest = parse_body(jsa, payload)?;
    if req.config.as_ref().is_some_and(|c| c.sourcing) {
        return Err(
            JsError::StreamInvalidConfig.with("consumer sourcing is not supported by natsd")
        );
    }
    // nats-server's order of checks (`jsConsumerCreateRequest`).
    if legacy_durable && (subject_name.is_none() || subject_filter.is_some()) {
        return Err(JsError::ConsumerDurableNameNotInSubject.into());
    }
    if req.stream_name != stream_name {
        return Err(JsError::StreamMismatch.into());
    }
    if subject_name.is_some_and(|n| n.contains(['\\', '/'])) {
        return Err(JsError::ConsumerNameContainsPathSeparators.into());
    }
    let mut config = req.config.unwrap_or_default();
    let name = match subject_name {
        Some(name) => {
            if legacy_durable && config.durable_name.is_empty() {
                return Err(JsError::ConsumerDurableNameNotSet.into());
            }
            if !config.durable_name.is_empty() && config.durable_name != name {
                return Err(JsError::ConsumerDurableNameNotMatchSubject.into());
            }
            config.name = name.to_string();
            name.to_string()
        }
        None => {
            if !config.durable_name.is_empty() {
                return Err(JsError::ConsumerEphemeralWithDurableName.into());
            }
            // The legacy ephemeral form takes the name from the config, else makes one up.
            if config.name.is_empty() {
                config.name = generate_name();
            }
            config.name.clone()
        }
    };
    if let Some(filter) = subject_filter.filter(|_| !legacy_durable) {
        if !config.filter_subjects.is_empty() {
            return Err(JsError::ConsumerMultipleFiltersNotAllowed.into());
        }
        if config.filter_subject != filter {
            return Err(JsError::ConsumerCreateFilterSubjectMismatch.into());
        }
    }
    if config.num_replicas > 1 {
        return Err(JsError::StreamReplicasNotSupported.into());
    }
    let stream = jsa.stream(stream_name).ok_or(JsError::StreamNotFound)?;
    let limits = jsa.limits().unwrap_or_default();
    let scfg = stream.config();
    let workqueue = scfg.retention == Retention::Workqueue;
    let context = stream_context(&scfg, limits.max_ack_pending);
    config.apply_defaults_as(&context, req.pedantic)?;
    config.set_server_metadata(crate::server::NATS_COMPAT_VERSION);
    config.validate(&context)?;
    let _admin = jsa.admin.lock();
    if let Some(existing) = stream.consumers.get(&name) {
        if req.action == "create" {
            let same = *existing.config.lock() == config;
            if !same {
                return Err(JsError::ConsumerAlreadyExists.into());
            }
        }
        let old = existing.config.lock().clone();
        if old != config {
            old.check_update(&config)?;
            apply_config(&stream, &existing, &name, config)?;
        }
        return Ok(typed_raw(
            "consumer_create",
            &info_json(&stream, &existing)?,
        ));
    }
    if req.action == "update" {
        return Err(JsError::ConsumerDoesNotExist.into());
    }
    // Like nats-server, the account's max_consumers bounds each stream (the stricter of the
    // two limits applies), not the account's total; with neither, the server's default does.
    let mut max_consumers = scfg.max_consumers;
    if max_consumers <= 0 || (limits.max_consumers > 0 && limits.max_consumers < max_consumers) {
        max_consumers = limits.max_consumers;
    }
    if max_consumers <= 0 && !config.direct {
        max_consumers = DEFAULT_MAX_CONSUMERS;
    }
    if max_consumers > 0 && stream.consumers.count() as i64 >= max_consumers {
        return Err(JsError::MaximumConsumersLimit.into());
    }
    if workqueue {
        check_partition(&stream, &config)?;
    }
    let now = crate::store::now_ns();
    let entry = add(&stream, jsa, &name, config, now)?;
    let _ = js;
    let pause_until = entry.config.lock().pause_until_ns();
    if let Some(until) = pause_until.filter(|&t| t > now) {
        pause_advisory(jsa, stream_name, &name, Some(until));
    }
    Ok(typed_raw("consumer_create", &info_json(&stream, &entry)?))
}

/// What a consumer's defaults and checks need of its stream.
fn stream_context(scfg: &StreamConfig, max_ack_pending_limit: i64) -> StreamContext<'_> {
    let (stream_max_ack_pending, stream_inactive_threshold) = scfg.consumer_limits();
    StreamContext {
        subjects: &scfg.subjects,
        workqueue: scfg.retention == Retention::Workqueue,
        interest_or_workqueue: scfg.retention != Retention::Limits,
        replicas: scfg.num_replicas,
        max_ack_pending_limit,
        stream_max_ack_pending,
        stream_inactive_threshold,
    }
}

/// A work-queue stream's consumers may not overlap (nats-server's 10099 / 10100); the
/// consumers copies keep there do not count, as on nats-server.
fn check_partition(stream: &Stream, config: &ConsumerConfig) -> Result<(), ApiError> {
    let others: Vec<ConsumerConfig> = stream
        .consumers
        .entries()
        .iter()
        .map(|(_, e)| e.config.lock().clone())
        .filter(|c| !c.sourcing && !c.direct)
        .collect();
    let refs: Vec<&ConsumerConfig> = others.iter().collect();
    check_workqueue_partition(config, &refs)
}

/// Persists (when durable) and starts a new, checked consumer, and announces it.
fn add(
    stream: &Arc<Stream>,
    jsa: &Arc<JsAccount>,
    name: &str,
    config: ConsumerConfig,
    now: u64,
) -> Result<Arc<ConsumerEntry>, ApiError> {
    if config.is_durable() {
        stream.consumers.save_meta(
            name,
            &ConsumerMeta {
                config: config.clone(),
                created: now,
            },
        )?;
    }
    let consumer = Consumer::new(&stream.name, name, config, &*stream.store, now);
    let entry = start(stream, jsa, consumer)?;
    action_advisory(jsa, &stream.name, Some(name), "create");
    Ok(entry)
}

/// The durable consumer a mirror or source keeps on a work-queue or interest origin, as
/// nats-server's sourcing consumer (`JS_SRC_...` / `JS_MIRROR_...`): created when missing, so
/// the origin counts the copy as one of its consumers, keeping what it has not copied yet and
/// letting go of what it has. The copy reads the origin's store itself and acknowledges
/// through it ([`Consumers::acknowledge_through`]). Returns its deliver subject.
pub(crate) fn ensure_sourcing(
    stream: &Arc<Stream>,
    jsa: &Arc<JsAccount>,
    mut config: ConsumerConfig,
) -> Result<String, ApiError> {
    if let Some(e) = stream.consumers.get(&config.name) {
        return Ok(e.config.lock().deliver_subject.clone());
    }
    let limits = jsa.limits().unwrap_or_default();
    let scfg = stream.config();
    let context = stream_context(&scfg, limits.max_ack_pending);
    config.apply_defaults(&context);
    config.validate(&context)?;
    let deliver_subject = config.deliver_subject.clone();
    let name = config.name.clone();
    add(stream, jsa, &name, config, crate::store::now_ns())?;
    Ok(deliver_subject)
}

/// Deletes consumer `name` of `stream` (an API delete, or a copy's consumer whose mirror or
/// source went away); false when there was none.
pub(crate) fn remove(stream: &Stream, jsa: &JsAccount, name: &str) -> bool {
    let Some(entry) = stream.consumers.map.write().remove(name) else {
        return false;
    };
    block_on(&stream.consumers.rt, entry.handle.stop(StopReason::Deleted));
    forget(stream, name);
    action_advisory(jsa, &stream.name, Some(name), "delete");
    true
}

/// Gives a running consumer a new configuration, and persists it for a durable one.
fn apply_config(
    stream: &Stream,
    entry: &ConsumerEntry,
    name: &str,
    config: ConsumerConfig,
) -> Result<(), ApiError> {
    entry.handle.update(config.clone());
    *entry.config.lock() = config.clone();
    if config.is_durable() {
        let created = created_of(stream, entry);
        stream
            .consumers
            .save_meta(name, &ConsumerMeta { config, created })?;
    }
    Ok(())
}

fn created_of(stream: &Stream, entry: &ConsumerEntry) -> u64 {
    block_on(&stream.consumers.rt, entry.handle.info())
        .flatten()
        .and_then(|i| parse_rfc3339_ns(&i.created))
        .unwrap_or_else(crate::store::now_ns)
}

fn stream_and_consumer<'a>(
    jsa: &JsAccount,
    arg: &'a str,
) -> Result<(Arc<Stream>, &'a str), ApiError> {
    let (stream, consumer) = arg.split_once('.').ok_or(JsError::BadRequest)?;
    let stream = jsa.stream(stream).ok_or(JsError::StreamNotFound)?;
    Ok((stream, consumer))
}

/// `$JS.API.CONSUMER.INFO.<stream>.<consumer>`.
pub(crate) fn info(jsa: &JsAccount, arg: &str) -> Result<Vec<u8>, ApiError> {
    let (stream, name) = stream_and_consumer(jsa, arg)?;
    let entry = stream
        .consumers
        .get(name)
        .ok_or(JsError::ConsumerNotFound)?;
    Ok(typed_raw("consumer_info", &info_json(&stream, &entry)?))
}

#[derive(Deserialize, Default)]
struct PauseRequest {
    #[serde(default)]
    pause_until: Option<String>,
}

/// `$JS.API.CONSUMER.PAUSE.<stream>.<consumer>`: pause deliveries until a time (a missing or
/// past time resumes), kept in the consumer's `pause_until`.
pub(crate) fn pause(jsa: &JsAccount, arg: &str, payload: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: PauseRequest = parse_body(jsa, payload)?;
    let (stream, name) = stream_and_consumer(jsa, arg)?;
    let _admin = jsa.admin.lock();
    let entry = stream
        .consumers
        .get(name)
        .ok_or(JsError::ConsumerNotFound)?;
    let now = crate::store::now_ns();
    let until = match req.pause_until.as_deref() {
        None => None,
        Some(t) => Some(
            parse_rfc3339_ns(t)
                .ok_or_else(|| JsError::InvalidJSON.with(format!("invalid pause_until {t:?}")))?,
        ),
    }
    .filter(|&t| t > now);
    let old = entry.config.lock().clone();
    let mut config = old.clone();
    config.pause_until = until.map(rfc3339_ns);
    if config != old {
        apply_config(&stream, &entry, name, config)?;
    }
    let was_paused = old.pause_until_ns().is_some_and(|t| t > now);
    if until.is_some() || was_paused {
        pause_advisory(jsa, &stream.name, name, until);
    }
    let mut body = serde_json::json!({
        "paused": until.is_some(),
        "pause_until": rfc3339_ns(until.unwrap_or(0)),
    });
    if let Some(t) = until {
        body["pause_remaining"] = (t - now).into();
    }
    Ok(typed("consumer_pause", &body))
}

#[derive(Deserialize)]
struct UnpinRequest {
    #[serde(default)]
    group: String,
}

/// `$JS.API.CONSUMER.UNPIN.<stream>.<consumer>`: a pinned-client consumer's group loses its
/// pin (nats-server's order of checks).
pub(crate) fn unpin(jsa: &JsAccount, arg: &str, payload: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: UnpinRequest = if payload.trim_ascii().is_empty() {
        return Err(JsError::InvalidJSON.with("unexpected end of JSON input"));
    } else {
        decode(jsa, payload)?
    };
    if req.group.is_empty() {
        return Err(JsError::InvalidJSON.with("consumer group not specified"));
    }
    if !is_valid_group_name(&req.group) {
        return Err(JsError::ConsumerInvalidGroupName.into());
    }
    let (stream, name) = stream_and_consumer(jsa, arg)?;
    let entry = stream
        .consumers
        .get(name)
        .ok_or(JsError::ConsumerNotFound)?;
    block_on(&stream.consumers.rt, entry.handle.unpin(&req.group))
        .flatten()
        .ok_or(JsError::ConsumerNotFound)??;
    Ok(typed("consumer_unpin", &serde_json::json!({})))
}

/// `$JS.API.CONSUMER.DELETE.<stream>.<consumer>`.
pub(crate) fn delete(jsa: &JsAccount, arg: &str) -> Result<Vec<u8>, ApiError> {
    let (stream, name) = stream_and_consumer(jsa, arg)?;
    let _admin = jsa.admin.lock();
    if !remove(&stream, jsa, name) {
        return Err(JsError::ConsumerNotFound.into());
    }
    Ok(typed(
        "consumer_delete",
        &serde_json::json!({"success": true}),
    ))
}

#[derive(Deserialize, Default)]
struct PageRequest {
    #[serde(default)]
    offset: usize,
}

/// `$JS.API.CONSUMER.NAMES.<stream>` / `$JS.API.CONSUMER.LIST.<stream>`.
pub(crate) fn names(
    jsa: &JsAccount,
    stream: &str,
    payload: &[u8],
    list: bool,
) -> Result<Vec<u8>, ApiError> {
    let req: PageRequest = parse_body(jsa, payload)?;
    let stream = jsa.stream(stream).ok_or(JsError::StreamNotFound)?;
    let entries = stream.consumers.entries();
    let total = entries.len();
    let limit = if list { LIST_LIMIT } else { NAMES_LIMIT };
    let page = entries.iter().skip(req.offset).take(limit);
    let mut out = format!(
        "{{\"type\":\"io.nats.jetstream.api.v1.consumer_{}_response\",\"total\":{total},\"offset\":{},\"limit\":{limit},\"consumers\":[",
        if list { "list" } else { "names" },
        req.offset
    )
    .into_bytes();
    for (i, (name, entry)) in page.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if list {
            match info_json(&stream, entry) {
                Ok(j) => out.extend_from_slice(&j),
                Err(_) => out.extend_from_slice(b"null"),
            }
        } else {
            out.extend_from_slice(serde_json::to_string(name).unwrap_or_default().as_bytes());
        }
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}
