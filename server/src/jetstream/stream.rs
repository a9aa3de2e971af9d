//! One stream: its store, the internal subscriptions that capture its subjects, and the
//! worker thread that stores what they capture.
//!
//! A captured message is stored on the publisher's own task when the stream is idle, else
//! queued to the stream's worker thread (`IngestHandler`). Either way the store holds the
//! writes of a batch (the messages of one read, or up to 1,024 queued ones) after the header
//! checks (dedupe, expected-*), and `Worker::commit` writes them with one write (and fsyncs
//! when `sync_interval: always`) before the PubAcks are published. So an ack always means the
//! message is in the store, and one write (or fsync) covers the whole batch.
//!
//! The worker also copies messages in for a mirror or sources ([`super::sourcing`]): an
//! origin rings the [`Doorbell`] of every stream copying from it after each commit, and the
//! worker then reads the origin's store and stores the copies the same way, in batches.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::OnceLock;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::batch;
use super::batch::{Abandoned, Batches, Commit, Staged};
use super::config::{Retention, StreamConfig, StreamSource};
use super::consumers::{Consumers, ThroughConsumer};
use super::counter;
use super::headers::{self, JsHeaders};
use super::schedule;
use super::sourcing::{self, Source, SourceInfo};
use super::Usage;
use crate::account::Account;
use crate::consumer::driver::StopReason;
use crate::js_errors::{ApiError, JsError};
use crate::route;
use crate::store::{MessageStore, PurgeRequest, StorageType, StoreError};
use crate::subject_transform::SubjectTransform;
use crate::subscription::{Deferred, FlushSet, InternalHandler, InternalMsg, SubRef};

/// Captured messages a stream may have waiting before new ones are refused. The channel
/// itself is unbounded (it allocates as it fills, where a bounded one would allocate and touch
/// every slot when the stream is created: megabytes per stream, most of a create's cost);
/// `IngestHandler::queued` holds it to this bound.
const INGEST_QUEUE: usize = 65_536;
/// Messages stored per batch before the acks go out.
const MAX_BATCH: usize = 1024;
/// How often sources and mirrors look at their origins without being rung: an origin that
/// appears, comes back or changes its config is noticed within this time.
const SOURCE_TICK: Duration = Duration::from_secs(1);

/// A captured publish, copied out of the publisher's read buffer in one allocation.
pub(crate) struct Inbound {
    buf: Box<[u8]>,
    subject_len: usize,
    reply_len: Option<usize>,
    headers_len: Option<usize>,
}

impl Inbound {
    fn copy(msg: &InternalMsg<'_>) -> Inbound {
        let total = msg.subject.len()
            + msg.reply.map_or(0, <[u8]>::len)
            + msg.headers.map_or(0, <[u8]>::len)
            + msg.payload.len();
        let mut buf = Vec::with_capacity(total);
        buf.extend_from_slice(msg.subject);
        if let Some(r) = msg.reply {
            buf.extend_from_slice(r);
        }
        if let Some(h) = msg.headers {
            buf.extend_from_slice(h);
        }
        buf.extend_from_slice(msg.payload);
        Inbound {
            buf: buf.into_boxed_slice(),
            subject_len: msg.subject.len(),
            reply_len: msg.reply.map(<[u8]>::len),
            headers_len: msg.headers.map(<[u8]>::len),
        }
    }
    fn subject(&self) -> &[u8] {
        &self.buf[..self.subject_len]
    }
    fn reply(&self) -> Option<&[u8]> {
        let start = self.subject_len;
        self.reply_len.map(|n| &self.buf[start..start + n])
    }
    fn headers(&self) -> Option<&[u8]> {
        let start = self.subject_len + self.reply_len.unwrap_or(0);
        self.headers_len.map(|n| &self.buf[start..start + n])
    }
    fn payload(&self) -> &[u8] {
        let start = self.subject_len + self.reply_len.unwrap_or(0) + self.headers_len.unwrap_or(0);
        &self.buf[start..]
    }
}

pub(crate) enum Work {
    Msg(Inbound),
    /// An origin stored messages: copy them in.
    Pull,
    Stop,
}

/// Wakes a stream's worker to copy from its origins. Armed until the worker starts
/// pulling, so a busy origin queues at most one wake-up.
pub(crate) struct Doorbell {
    tx: Sender<Work>,
    rung: std::sync::atomic::AtomicBool,
}

impl Doorbell {
    pub(crate) fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) && self.tx.send(Work::Pull).is_err() {
            self.rung.store(false, Ordering::Release);
        }
    }
}

/// Finds the origin stream of a mirror or source (in this account, or through imports).
pub(crate) trait Origins: Send + Sync {
    fn find(&self, source: &StreamSource) -> Option<Arc<Stream>>;
    /// Makes sure `origin` (found for `source`) has the consumer `config` describes
    /// ([`super::consumers::ensure_sourcing`]); its deliver subject.
    fn keep_consumer(
        &self,
        source: &StreamSource,
        origin: &Arc<Stream>,
        config: crate::consumer::ConsumerConfig,
    ) -> Result<String, ApiError>;
    /// Deletes consumer `name` from `source`'s origin, if both exist.
    fn drop_consumer(&self, source: &StreamSource, name: &str);
    /// The JetStream domain (part of the names of those consumers).
    fn domain(&self) -> Option<String>;
}

/// Where a message being stored comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A client's publish.
    Publish,
    /// Copied by a source.
    Sourced,
    /// Copied by the mirror: stored at the origin's sequence with the origin's time.
    Mirrored { ts: u64 },
    /// A subject delete marker the stream places itself.
    Marker,
    /// What a message schedule produced.
    Scheduled,
}

/// A message on its way into the store.
struct Incoming<'a> {
    subject: &'a [u8],
    headers: Option<&'a [u8]>,
    payload: &'a [u8],
    origin: Origin,
    /// The headers the server acts on, read once.
    js: JsHeaders<'a>,
}

impl<'a> Incoming<'a> {
    fn new(
        subject: &'a [u8],
        headers: Option<&'a [u8]>,
        payload: &'a [u8],
        origin: Origin,
    ) -> Incoming<'a> {
        Incoming {
            subject,
            headers,
            payload,
            origin,
            js: headers.map(headers::parse).unwrap_or_default(),
        }
    }
}

/// Something to publish once the messages it follows are committed.
struct OutMsg {
    subject: Vec<u8>,
    headers: Option<Vec<u8>>,
    payload: Vec<u8>,
    /// A PubAck (replaced by an error when the commit fails).
    ack: bool,
}

/// The internal-subscription handler: stores inline when the stream is idle, else hands the
/// message to the worker without blocking.
///
/// A sequential publisher (one message, wait for the PubAck, next) would otherwise pay two
/// thread wake-ups per message; when nothing is queued and the worker state is free, the
/// publisher's own task stores the message and publishes the ack. Messages still queued for
/// the worker keep the inline path closed, so per-publisher order holds. With
/// `sync_interval: always` every store ends in an fsync, which must not run on a runtime
/// thread, so that mode always goes through the worker.
pub(crate) struct IngestHandler {
    tx: Sender<Work>,
    stream: String,
    dropped: AtomicU64,
    /// Messages sent to the worker and not yet stored (decremented under the worker lock).
    queued: AtomicUsize,
    worker: OnceLock<Arc<Mutex<Worker>>>,
    sync_always: bool,
}

impl IngestHandler {
    /// Stores on the caller's task, holding the write until the caller's batch is flushed:
    /// all the messages one read brought then cost one write, and their acks follow it.
    fn try_store_inline(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) -> bool {
        if self.sync_always {
            return false;
        }
        let Some(worker) = self.worker.get() else {
            return false;
        };
        let Some(mut guard) = worker.try_lock() else {
            return false;
        };
        if self.queued.load(Ordering::Acquire) != 0 {
            return false;
        }
        guard.store_batch(std::iter::once(Work::Msg(Inbound::copy(msg))));
        drop(guard);
        flush.defer(worker.clone());
        true
    }
}

impl Deferred for Mutex<Worker> {
    fn complete(&self, flush: &mut FlushSet) {
        let mut out = Vec::new();
        let mut worker = self.lock();
        worker.commit(&mut out);
        let account = worker.stream.account.clone();
        drop(worker);
        for m in out {
            route::publish_into(
                &account,
                &m.subject,
                None,
                m.headers.as_deref(),
                &m.payload,
                flush,
            );
        }
    }
}

impl InternalHandler for IngestHandler {
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) {
        if self.try_store_inline(msg, flush) {
            return;
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= INGEST_QUEUE {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            // The publisher gets no ack and retries; blocking here would stall its connection.
            if self
                .dropped
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(10_000)
            {
                tracing::warn!(
                    "JetStream stream '{}' ingest queue full, dropping messages",
                    self.stream
                );
            }
            return;
        }
        if self.tx.send(Work::Msg(Inbound::copy(msg))).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One stream.
pub(crate) struct Stream {
    /// Stream name.
    pub name: String,
    /// Creation time, ns since the epoch.
    pub created: u64,
    config: ArcSwap<StreamConfig>,
    pub(crate) store: Arc<dyn MessageStore>,
    account: Arc<Account>,
    usage: Arc<Usage>,
    /// Bytes this stream last reported into `usage`.
    accounted: AtomicI64,
    tx: Sender<Work>,
    ingest: Arc<IngestHandler>,
    subs: Mutex<Vec<SubRef>>,
    direct_subs: Mutex<Vec<SubRef>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Where its metadata lives (file streams only).
    pub(crate) dir: Option<PathBuf>,
    /// Its consumers.
    pub(crate) consumers: Consumers,
    /// Rings this stream's worker to copy from its origins.
    doorbell: Arc<Doorbell>,
    /// Doorbells of the streams copying from this one, rung after each commit.
    downstream: ArcSwap<Vec<Weak<Doorbell>>>,
    /// Finds the origins of this stream's mirror or sources.
    origins: Arc<dyn Origins>,
    /// The start of its PubAcks, up to the sequence (names the JetStream domain, if any).
    ack_prefix: Vec<u8>,
}

impl Stream {
    /// Wraps an opened store, starts the worker and subscribes the stream's subjects.
    // One caller (`JetStream::open_stream`), which holds every piece already.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        config: StreamConfig,
        created: u64,
        store: Arc<dyn MessageStore>,
        account: Arc<Account>,
        usage: Arc<Usage>,
        dir: Option<PathBuf>,
        sync_always: bool,
        rt: tokio::runtime::Handle,
        origins: Arc<dyn Origins>,
        domain: Option<&str>,
    ) -> Result<Arc<Stream>, ApiError> {
        let consumers = Consumers::new(rt, dir.as_deref());
        let (tx, rx) = std::sync::mpsc::channel();
        let ack_prefix = pub_ack_prefix(&config.name, domain);
        let doorbell = Arc::new(Doorbell {
            tx: tx.clone(),
            rung: std::sync::atomic::AtomicBool::new(false),
        });
        let ingest = Arc::new(IngestHandler {
            tx: tx.clone(),
            stream: config.name.clone(),
            dropped: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            worker: OnceLock::new(),
            sync_always,
        });
        let stream = Arc::new(Stream {
            name: config.name.clone(),
            created,
            config: ArcSwap::from_pointee(config),
            store,
            account,
            usage,
            accounted: AtomicI64::new(0),
            tx,
            ingest,
            subs: Mutex::new(Vec::new()),
            direct_subs: Mutex::new(Vec::new()),
            worker: Mutex::new(None),
            dir,
            consumers,
            doorbell,
            downstream: ArcSwap::from_pointee(Vec::new()),
            origins,
            ack_prefix,
        });
        stream.refresh_usage();
        let worker = Arc::new(Mutex::new(Worker::new(stream.clone(), sync_always)));
        let _ = stream.ingest.worker.set(worker.clone());
        let ingest = stream.ingest.clone();
        let handle = std::thread::Builder::new()
            .name(format!("js-{}", stream.name))
            .spawn(move || Worker::run(&worker, &ingest, rx))
            .map_err(ApiError::internal)?;
        *stream.worker.lock() = Some(handle);
        stream.subscribe()?;
        if stream.config().mirror.is_some() || !stream.config().sources.is_empty() {
            stream.doorbell.ring();
        }
        Ok(stream)
    }

    /// Registers a stream copying from this one to be rung after each commit.
    fn add_downstream(&self, bell: &Arc<Doorbell>) {
        let current = self.downstream.load();
        if current.iter().any(|w| w.as_ptr() == Arc::as_ptr(bell)) {
            return;
        }
        self.downstream.rcu(|list| {
            let mut next: Vec<Weak<Doorbell>> = list
                .iter()
                .filter(|w| w.strong_count() > 0)
                .cloned()
                .collect();
            next.push(Arc::downgrade(bell));
            next
        });
    }

    /// Rings the streams copying from this one.
    fn ring_downstream(&self) {
        let list = self.downstream.load();
        for bell in list.iter().filter_map(Weak::upgrade) {
            bell.ring();
        }
    }

    /// The mirror's and the sources' state for stream info.
    pub(crate) fn sources_info(&self) -> (Option<SourceInfo>, Vec<SourceInfo>) {
        let Some(worker) = self.ingest.worker.get() else {
            return (None, Vec::new());
        };
        let now = crate::store::now_ns();
        let w = worker.lock();
        if w.mirror {
            (w.sources.first().map(|s| s.info(now)), Vec::new())
        } else {
            (None, w.sources.iter().map(|s| s.info(now)).collect())
        }
    }

    /// The current configuration.
    pub(crate) fn config(&self) -> Arc<StreamConfig> {
        self.config.load_full()
    }

    fn subscribe(&self) -> Result<(), ApiError> {
        let cfg = self.config();
        let mut subs = self.subs.lock();
        for sub in subs.drain(..) {
            route::unsubscribe_internal(&self.account, &sub);
        }
        for subject in &cfg.subjects {
            let handler: Arc<dyn InternalHandler> = self.ingest.clone();
            let sub = route::subscribe_internal(&self.account, subject.as_bytes(), None, handler)
                .map_err(|e| {
                JsError::StreamInvalidConfig.with(format!("invalid subject: {e}"))
            })?;
            subs.push(sub);
        }
        Ok(())
    }

    /// Subscribes (or drops) `$JS.API.DIRECT.GET.<name>` per `allow_direct`.
    pub(crate) fn set_direct(&self, handler: Option<Arc<dyn InternalHandler>>) {
        let mut subs = self.direct_subs.lock();
        for sub in subs.drain(..) {
            route::unsubscribe_internal(&self.account, &sub);
        }
        let Some(handler) = handler else { return };
        for subject in [
            format!("$JS.API.DIRECT.GET.{}", self.name),
            format!("$JS.API.DIRECT.GET.{}.>", self.name),
        ] {
            if let Ok(sub) =
                route::subscribe_internal(&self.account, subject.as_bytes(), None, handler.clone())
            {
                subs.push(sub);
            }
        }
    }

    /// Applies an (already validated) new configuration.
    pub(crate) fn update(&self, cfg: StreamConfig) -> Result<(), ApiError> {
        self.store
            .update_config(&cfg.store_limits())
            .map_err(ApiError::internal)?;
        let old = self.config();
        let resubscribe = cfg.subjects != old.subjects;
        let copies = cfg.mirror.is_some() || !cfg.sources.is_empty();
        let new = Arc::new(cfg);
        self.config.store(new.clone());
        self.drop_origin_consumers(&old, Some(&new));
        if resubscribe {
            self.subscribe()?;
        }
        self.refresh_usage();
        if copies {
            self.doorbell.ring();
        }
        Ok(())
    }

    /// Re-reads the store's byte count into the account and server usage.
    pub(crate) fn refresh_usage(&self) {
        let bytes = self.store.state().bytes as i64;
        let old = self.accounted.swap(bytes, Ordering::Relaxed);
        let delta = bytes - old;
        if delta != 0 {
            self.usage.add(self.store.storage_type(), delta);
        }
    }

    /// Stops the worker and unsubscribes; the store is left open for the caller.
    fn stop_worker(&self) {
        for sub in self.subs.lock().drain(..) {
            route::unsubscribe_internal(&self.account, &sub);
        }
        self.set_direct(None);
        let _ = self.tx.send(Work::Stop);
        if let Some(handle) = self.worker.lock().take() {
            let _ = handle.join();
        }
    }

    /// Stops the stream and closes its store, keeping its data.
    pub(crate) fn stop(&self) {
        self.consumers.stop_all(StopReason::Unloaded);
        self.stop_worker();
        if let Err(e) = self.store.stop() {
            tracing::warn!("JetStream stream '{}' stop: {}", self.name, e);
        }
        let old = self.accounted.swap(0, Ordering::Relaxed);
        self.usage.add(self.store.storage_type(), -old);
    }

    /// Deletes the consumers this stream's copies keep on their origins: those of every copy
    /// of `old` (the stream is deleted), or of the copies `new` no longer has (a source
    /// removed, the mirror promoted), as nats-server deletes its sourcing consumers.
    fn drop_origin_consumers(&self, old: &StreamConfig, new: Option<&StreamConfig>) {
        let domain = self.origins.domain();
        let copies = old.mirror.iter().map(|m| (m, None));
        let copies = copies.chain(
            old.sources
                .iter()
                .map(|s| (s, Some(old.sources.as_slice()))),
        );
        for (src, all) in copies.filter(|(s, _)| s.consumer.is_none()) {
            let iname = sourcing::index_name(src);
            let stays = new.is_some_and(|n| {
                n.mirror
                    .iter()
                    .chain(&n.sources)
                    .any(|s| s.consumer.is_none() && sourcing::index_name(s) == iname)
            });
            if stays {
                continue;
            }
            let name = sourcing::sourcing_consumer_name(
                &old.name,
                &self.account.name,
                domain.as_deref(),
                src,
                all,
            );
            self.origins.drop_consumer(src, &name);
        }
    }

    /// Stops the stream and removes its data, and the consumers its mirror or sources kept
    /// on their origins.
    pub(crate) fn delete(&self) -> Result<(), ApiError> {
        self.drop_origin_consumers(&self.config(), None);
        self.consumers.stop_all(StopReason::Deleted);
        self.stop_worker();
        let old = self.accounted.swap(0, Ordering::Relaxed);
        self.usage.add(self.store.storage_type(), -old);
        self.store.delete().map_err(ApiError::internal)?;
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    /// Purge through the API.
    pub(crate) fn purge(&self, req: &PurgeRequest) -> Result<u64, ApiError> {
        let n = self.store.purge(req).map_err(ApiError::internal)?;
        self.refresh_usage();
        self.after_removal();
        Ok(n)
    }

    /// Message delete through the API.
    pub(crate) fn delete_msg(&self, seq: u64, erase: bool) -> Result<bool, ApiError> {
        let res = if erase {
            self.store.erase_msg(seq)
        } else {
            self.store.remove_msg(seq)
        };
        let found = res.map_err(ApiError::internal)?;
        self.refresh_usage();
        self.after_removal();
        Ok(found)
    }

    fn after_removal(&self) {
        let first = self.store.state().first_seq;
        let store = &self.store;
        self.consumers
            .reset_pending(first, |seq| store.load_msg(seq).is_ok());
    }
}

/// A message the stream took (or recognised as a duplicate): what its PubAck says.
pub(crate) struct Stored {
    seq: u64,
    duplicate: bool,
    /// Counter streams: the subject's new total.
    counter: Option<String>,
}

impl Stored {
    fn new(seq: u64, duplicate: bool) -> Stored {
        Stored {
            seq,
            duplicate,
            counter: None,
        }
    }
}

/// A `Nats-TTL` value: `Ok(None)` for `never`, else the TTL in ns. Whole seconds or a Go
/// duration, at least one second (as nats-server accepts them).
fn parse_msg_ttl(value: &str) -> Result<Option<u64>, ApiError> {
    if value.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let ns = match value.parse::<u64>() {
        Ok(secs) => secs.saturating_mul(1_000_000_000),
        Err(_) => match natsd_conf::duration::parse_go_duration(value) {
            Ok((false, d)) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            _ => 0,
        },
    };
    if ns < 1_000_000_000 {
        return Err(JsError::MessageTTLInvalid.into());
    }
    // Kept in whole seconds, as nats-server keeps it.
    Ok(Some(ns / 1_000_000_000 * 1_000_000_000))
}

/// The PubAck bytes nats-server sends (note the space in `"duplicate": true`).
fn pub_ack(prefix: &[u8], stored: &Stored) -> Vec<u8> {
    let mut digits = itoa::Buffer::new();
    let seq = digits.format(stored.seq).as_bytes();
    let mut out = Vec::with_capacity(prefix.len() + seq.len() + 20);
    out.extend_from_slice(prefix);
    out.extend_from_slice(seq);
    if stored.duplicate {
        out.extend_from_slice(b",\"duplicate\": true");
    }
    if let Some(val) = &stored.counter {
        out.extend_from_slice(b",\"val\":\"");
        out.extend_from_slice(val.as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
    out
}

/// The constant start of a stream's PubAcks, up to the sequence; with a JetStream domain
/// nats-server names it between the two.
fn pub_ack_prefix(stream: &str, domain: Option<&str>) -> Vec<u8> {
    let name = serde_json::to_string(stream).unwrap_or_default();
    match domain {
        Some(d) => {
            let d = serde_json::to_string(d).unwrap_or_default();
            format!("{{\"stream\":{name},\"domain\":{d},\"seq\":").into_bytes()
        }
        None => format!("{{\"stream\":{name},\"seq\":").into_bytes(),
    }
}

fn pub_error(stream: &str, err: &ApiError) -> Vec<u8> {
    let name = serde_json::to_string(stream).unwrap_or_default();
    let err = serde_json::to_string(err).unwrap_or_default();
    format!("{{\"error\":{err},\"stream\":{name},\"seq\":0}}").into_bytes()
}

/// State the worker thread owns.
struct Worker {
    stream: Arc<Stream>,
    sync_always: bool,
    /// Msg-Id → (seq, ts) inside the duplicate window.
    dedupe: HashMap<String, (u64, u64)>,
    dedupe_order: VecDeque<(u64, String)>,
    last_msg_id: Option<String>,
    /// What to publish once the messages stored since the last commit are written: their
    /// PubAcks and republished copies. The store may still hold those records, so these
    /// wait for [`Worker::commit`].
    out: Vec<OutMsg>,
    /// Something was stored since the last commit.
    stored_since_commit: bool,
    /// The constant start of this stream's PubAcks.
    ack_prefix: Vec<u8>,
    /// Messages with a `Nats-TTL`: (expiry ns, seq), soonest first.
    ttls: BinaryHeap<Reverse<(u64, u64)>>,
    /// The config the fields below were built from (rebuilt when it is replaced).
    compiled: Arc<StreamConfig>,
    /// `subject_transform`.
    transform: Option<SubjectTransform>,
    /// `republish`.
    republish: Option<SubjectTransform>,
    /// The mirror (then `mirror` is set and it is the only entry) or the sources.
    sources: Vec<Source>,
    mirror: bool,
    /// When expiry is next due (ns), so steady load still expires.
    next_expire: u64,
    /// Atomic batches being staged.
    batches: Batches,
    /// Fast batches under way.
    fast: batch::FastBatches,
    /// The source positions last saved (see [`Worker::save_positions`]), and when to look
    /// again.
    saved_positions: Vec<u8>,
    next_save: u64,
    /// Durable consumers copied through, and how far, to acknowledge after the commit.
    through_acks: Vec<(Arc<Stream>, String, u64)>,
    /// Message schedules: schedule subject → (its message's sequence, next firing ns).
    schedules: HashMap<Vec<u8>, (u64, u64)>,
    /// The same, soonest first: (next firing ns, schedule subject).
    schedule_order: std::collections::BTreeSet<(u64, Vec<u8>)>,
}

impl Worker {
    fn new(stream: Arc<Stream>, sync_always: bool) -> Worker {
        let ack_prefix = stream.ack_prefix.clone();
        let compiled = stream.config();
        let mut w = Worker {
            stream,
            sync_always,
            dedupe: HashMap::new(),
            dedupe_order: VecDeque::new(),
            last_msg_id: None,
            out: Vec::new(),
            stored_since_commit: false,
            ack_prefix,
            ttls: BinaryHeap::new(),
            compiled: compiled.clone(),
            transform: None,
            republish: None,
            sources: Vec::new(),
            mirror: false,
            next_expire: 0,
            batches: Batches::default(),
            fast: batch::FastBatches::default(),
            saved_positions: Vec::new(),
            through_acks: Vec::new(),
            next_save: 0,
            schedules: HashMap::new(),
            schedule_order: std::collections::BTreeSet::new(),
        };
        w.compile(&compiled);
        w.rebuild_dedupe();
        w.rebuild_ttls();
        w.rebuild_schedules();
        w
    }

    /// Builds the transforms and the source list of `cfg`. Sources that stay configured
    /// keep their positions.
    fn compile(&mut self, cfg: &Arc<StreamConfig>) {
        self.compiled = cfg.clone();
        if !cfg.allow_atomic {
            self.batches.clear();
        }
        if !cfg.allow_batched {
            self.fast.clear();
        }
        self.transform = cfg
            .subject_transform
            .as_ref()
            .and_then(|t| SubjectTransform::new(&t.src, &t.dest).ok().flatten());
        self.republish = cfg
            .republish
            .as_ref()
            .and_then(|r| SubjectTransform::new(&r.src, &r.dest).ok().flatten());
        let wanted: Vec<(StreamSource, bool)> = match &cfg.mirror {
            Some(m) => vec![(m.clone(), true)],
            None => cfg.sources.iter().map(|s| (s.clone(), false)).collect(),
        };
        // Consumers of copies that went away are dropped by `Stream::update`.
        let mut old = std::mem::take(&mut self.sources);
        self.mirror = cfg.mirror.is_some();
        for (config, mirror) in wanted {
            let iname = sourcing::index_name(&config);
            let kept = old
                .iter()
                .position(|o| o.iname == iname)
                .map(|i| old.swap_remove(i));
            self.sources.push(match kept {
                Some(mut s) => {
                    s.config = config;
                    s
                }
                None => Source::new(config, mirror),
            });
        }
    }

    /// The consumer source `i` keeps on its origin when that is a work-queue or interest
    /// stream (none when it reads through a configured consumer): its name and deliver
    /// subject, creating it if needed.
    fn origin_consumer(
        &mut self,
        i: usize,
        cfg: &StreamConfig,
        origin: &Arc<Stream>,
    ) -> Option<Result<(String, String), ApiError>> {
        let src = &self.sources[i];
        if src.config.consumer.is_some()
            || origin.config().retention == super::config::Retention::Limits
        {
            return None;
        }
        if let Some(name) = &src.origin_consumer {
            if let Some(deliver) = origin.consumers.deliver_subject(name) {
                return Some(Ok((name.clone(), deliver)));
            }
        }
        let account = &self.stream.account.name;
        let domain = self.stream.origins.domain();
        let all = (!self.mirror).then_some(cfg.sources.as_slice());
        let name = sourcing::sourcing_consumer_name(
            &cfg.name,
            account,
            domain.as_deref(),
            &src.config,
            all,
        );
        let config = sourcing::sourcing_consumer_config(
            &name,
            &cfg.name,
            account,
            domain.as_deref(),
            &src.config,
            self.mirror,
        );
        let kept = self
            .stream
            .origins
            .keep_consumer(&src.config, origin, config);
        Some(kept.map(|deliver| {
            self.sources[i].origin_consumer = Some(name.clone());
            (name, deliver)
        }))
    }

    /// Rebuilds from the current config if it was replaced since.
    fn config(&mut self) -> Arc<StreamConfig> {
        let cfg = self.stream.config();
        if !Arc::ptr_eq(&cfg, &self.compiled) {
            self.compile(&cfg);
        }
        cfg
    }

    /// After a restart, re-learn the Msg-Ids stored inside the duplicate window.
    fn rebuild_dedupe(&mut self) {
        let cfg = self.stream.config();
        let window = cfg.duplicate_window.max(0) as u64;
        if window == 0 || self.stream.store.state().msgs == 0 {
            return;
        }
        let cutoff = crate::store::now_ns().saturating_sub(window);
        let mut found = Vec::new();
        self.stream
            .store
            .visit_headers_since(cutoff, &mut |seq, ts, block| {
                if let Some(id) = headers::parse(block).msg_id {
                    found.push((seq, ts, id.to_string()));
                }
            });
        for (seq, ts, id) in found {
            self.dedupe.insert(id.clone(), (seq, ts));
            self.dedupe_order.push_back((ts, id.clone()));
            self.last_msg_id = Some(id);
        }
    }

    /// After a restart, re-learn when the messages with a `Nats-TTL` expire.
    fn rebuild_ttls(&mut self) {
        if !self.stream.config().allow_msg_ttl {
            return;
        }
        let ttls = &mut self.ttls;
        self.stream
            .store
            .visit_headers_since(0, &mut |seq, ts, block| {
                if let Some(Ok(Some(ns))) = headers::parse(block).ttl.map(parse_msg_ttl) {
                    ttls.push(Reverse((ts.saturating_add(ns), seq)));
                }
            });
    }

    /// After a restart, re-learn the schedules from the schedule messages in the store.
    fn rebuild_schedules(&mut self) {
        if !self.stream.config().allow_msg_schedules {
            return;
        }
        let mut found = Vec::new();
        self.stream
            .store
            .visit_headers_since(0, &mut |seq, ts, block| {
                if headers::parse(block).schedule.is_some() {
                    found.push((seq, ts));
                }
            });
        let now = crate::store::now_ns();
        for (seq, ts) in found {
            if let Ok(m) = self.stream.store.load_msg(seq) {
                let js = m.headers.as_deref().map(headers::parse).unwrap_or_default();
                if let Ok(Some(next)) = next_schedule(&js, ts, now) {
                    self.set_schedule(&m.subject, seq, next.at);
                }
            }
        }
    }

    fn set_schedule(&mut self, subject: &[u8], seq: u64, at: u64) {
        if let Some((_, old)) = self.schedules.insert(subject.to_vec(), (seq, at)) {
            self.schedule_order.remove(&(old, subject.to_vec()));
        }
        self.schedule_order.insert((at, subject.to_vec()));
    }

    fn drop_schedule(&mut self, subject: &[u8]) {
        if let Some((_, at)) = self.schedules.remove(subject) {
            self.schedule_order.remove(&(at, subject.to_vec()));
        }
    }

    /// The checks nats-server makes of a publish that schedules a message, or (with
    /// `Nats-Schedule-Next: purge`) ends a schedule. A schedule replaces the previous one on
    /// its subject: returns true when `Nats-Rollup: sub` must be added for that.
    fn check_schedule(
        &self,
        cfg: &StreamConfig,
        subject: &[u8],
        js: &JsHeaders<'_>,
    ) -> Result<bool, ApiError> {
        let mut add_rollup = false;
        let next = next_schedule(js, crate::store::now_ns(), crate::store::now_ns());
        match next {
            Err(_) if !cfg.allow_msg_schedules => {
                return Err(ApiError::from(JsError::MessageSchedulesDisabled))
            }
            Err(e) => return Err(e),
            Ok(None) => {}
            Ok(Some(_)) => {
                if !cfg.allow_msg_schedules {
                    return Err(ApiError::from(JsError::MessageSchedulesDisabled));
                }
                if js.schedule_ttl.is_some_and(|t| parse_msg_ttl(t).is_err()) {
                    return Err(ApiError::from(JsError::MessageSchedulesTTLInvalid));
                }
                if js.schedule_rollup().is_some_and(|r| r != "sub") {
                    return Err(ApiError::from(JsError::MessageSchedulesRollupInvalid));
                }
                if js.schedule_ttl.is_some_and(|t| !t.is_empty()) && !cfg.allow_msg_ttl {
                    return Err(ApiError::from(JsError::MessageTTLDisabled));
                }
                let publishable = |s: &str| {
                    crate::subject::is_valid_subject(s.as_bytes())
                        && crate::subject::is_literal(s.as_bytes())
                };
                let target = js.schedule_target.unwrap_or("");
                if target.is_empty() || !publishable(target) || target.as_bytes() == subject {
                    return Err(ApiError::from(JsError::MessageSchedulesTargetInvalid));
                }
                let source = js.schedule_source.unwrap_or("");
                if !source.is_empty()
                    && (source == target || source.as_bytes() == subject || !publishable(source))
                {
                    return Err(ApiError::from(JsError::MessageSchedulesSourceInvalid));
                }
                let captured = |s: &str| {
                    cfg.subjects
                        .iter()
                        .any(|c| crate::subject::collide(c.as_bytes(), s.as_bytes()))
                };
                if !captured(target) {
                    return Err(ApiError::from(JsError::MessageSchedulesTargetInvalid));
                }
                if !source.is_empty() && !captured(source) {
                    return Err(ApiError::from(JsError::MessageSchedulesSourceInvalid));
                }
                match js.rollup {
                    None => add_rollup = true,
                    Some("sub") => {}
                    Some(_) => return Err(ApiError::from(JsError::MessageSchedulesRollupInvalid)),
                }
            }
        }
        if let Some(value) = js.schedule_next {
            // Clients may only end a schedule, naming it in `Nats-Scheduler`.
            let scheduler = js.scheduler.unwrap_or("");
            if value != "purge"
                || scheduler.is_empty()
                || scheduler.as_bytes() == subject
                || !crate::subject::is_literal(scheduler.as_bytes())
                || !crate::subject::is_valid_subject(scheduler.as_bytes())
            {
                return Err(ApiError::from(JsError::MessageSchedulesSchedulerInvalid));
            }
            if !cfg.allow_msg_schedules {
                return Err(ApiError::from(JsError::MessageSchedulesDisabled));
            }
            let last = self.stream.store.load_last_msg(scheduler.as_bytes()).ok();
            let not_a_schedule = last.is_some_and(|m| {
                m.headers
                    .as_deref()
                    .is_none_or(|h| headers::parse(h).schedule.is_none())
            });
            if not_a_schedule {
                return Err(ApiError::from(JsError::MessageSchedulesSchedulerInvalid));
            }
        } else if js.scheduler.is_some() {
            return Err(ApiError::from(JsError::MessageSchedulesSchedulerInvalid));
        }
        Ok(add_rollup)
    }

    /// Keeps the schedules in step with a stored message: a schedule message (re)sets its
    /// subject's schedule, anything else stored on that subject ends it, and a message a
    /// repeating schedule produced moves that schedule on.
    fn track_schedule(&mut self, subject: &[u8], seq: u64, ts: u64, js: &JsHeaders<'_>) {
        let now = crate::store::now_ns();
        match next_schedule(js, ts, now) {
            Ok(Some(next)) => self.set_schedule(subject, seq, next.at),
            _ if js.scheduler.is_none() => self.drop_schedule(subject),
            _ => {}
        }
        if let (Some(next), Some(scheduler)) = (js.schedule_next, js.scheduler) {
            if next != "purge" {
                if let Some(at) = natsd_conf::timestamp::parse_rfc3339_ns(next) {
                    if let Some(&(seq, _)) = self.schedules.get(scheduler.as_bytes()) {
                        self.set_schedule(scheduler.as_bytes(), seq, at);
                    }
                }
            }
        }
    }

    /// Fires the schedules that are due: each produces a message on its target (with the
    /// content of its source subject's last message, when it names one).
    fn fire_schedules(&mut self, cfg: &StreamConfig, now: u64) {
        while let Some((at, subject)) = self.schedule_order.first().cloned() {
            if at > now {
                break;
            }
            let Some(&(seq, _)) = self.schedules.get(&subject) else {
                self.schedule_order.remove(&(at, subject));
                continue;
            };
            let Some(out) = self.scheduled_message(&subject, seq, at, now) else {
                self.drop_schedule(&subject);
                continue;
            };
            let Produced {
                target,
                headers: block,
                payload,
                next,
            } = out;
            let incoming = Incoming::new(&target, Some(&block), &payload, Origin::Scheduled);
            match self.process(cfg, &incoming) {
                Ok(_) => self.stored_since_commit = true,
                Err(e) => tracing::warn!(
                    "JetStream stream '{}' scheduled message for '{}': {}",
                    cfg.name,
                    String::from_utf8_lossy(&subject),
                    e
                ),
            }
            // Stored, it moved the schedule on (or purged it); if not, try again later.
            if self.schedules.get(&subject).is_some_and(|&(_, a)| a == at) {
                match next {
                    Some(next) => self.set_schedule(&subject, seq, next.max(now + 1_000_000_000)),
                    None => self.drop_schedule(&subject),
                }
            }
        }
    }

    /// The message schedule `subject` (stored at `seq`) produces when it fires at `at`:
    /// target, headers, payload and the firing after this one. `None` when the schedule
    /// message is gone or no longer valid.
    fn scheduled_message(&self, subject: &[u8], seq: u64, at: u64, now: u64) -> Option<Produced> {
        let store = &self.stream.store;
        let msg = store.load_msg(seq).ok()?;
        let block = msg.headers.as_deref()?;
        let js = headers::parse(block);
        let pattern = js.schedule.filter(|p| !p.is_empty())?;
        let tz = schedule::time_zone(js.schedule_time_zone).ok()?;
        let next = schedule::next_firing(pattern, tz.as_ref(), at, now).ok()??;
        let ttl = js.schedule_ttl.filter(|t| !t.is_empty());
        if ttl.is_some_and(|t| parse_msg_ttl(t).is_err()) {
            return None;
        }
        let target = js.schedule_target.filter(|t| !t.is_empty())?;
        let content = js
            .schedule_source
            .filter(|s| !s.is_empty())
            .and_then(|s| store.load_last_msg(s.as_bytes()).ok())
            .unwrap_or_else(|| msg.clone());
        let strip = |n: &str| {
            n.starts_with("Nats-Schedule")
                || n.starts_with("Nats-Expected-")
                || matches!(n, "Nats-Msg-Id" | "Nats-TTL" | "Nats-Rollup")
        };
        let kept = content
            .headers
            .as_deref()
            .and_then(|h| headers::remove(h, strip));
        let scheduler = String::from_utf8_lossy(subject);
        let next_text = if next.repeat {
            format_in_zone(next.at, tz.as_ref())
        } else {
            "purge".to_string()
        };
        let mut extra = vec![
            ("Nats-Scheduler", &*scheduler),
            ("Nats-Schedule-Next", next_text.as_str()),
        ];
        if let Some(ttl) = ttl {
            extra.push(("Nats-TTL", ttl));
        }
        if let Some(rollup) = js.schedule_rollup() {
            extra.push(("Nats-Rollup", rollup));
        }
        let block = headers::append(kept.as_deref(), &extra);
        Some(Produced {
            target: target.as_bytes().to_vec(),
            headers: block,
            payload: content.payload.to_vec(),
            next: next.repeat.then_some(next.at),
        })
    }

    /// Removes the messages whose `Nats-TTL` ran out.
    fn expire_ttls(&mut self, now: u64) {
        let mut removed = false;
        let cfg = self.config();
        while let Some(&Reverse((at, seq))) = self.ttls.peek() {
            if at > now {
                break;
            }
            self.ttls.pop();
            removed |= self.remove_expired(&cfg, seq);
        }
        if removed {
            self.stream.refresh_usage();
            self.stream.after_removal();
        }
    }

    /// Removes a message whose time is up. With subject delete markers, the last message
    /// of its subject (unless itself a marker) is instead replaced by a marker that rolls
    /// the subject up, so watchers learn the subject is gone.
    fn remove_expired(&mut self, cfg: &StreamConfig, seq: u64) -> bool {
        if cfg.subject_delete_marker_ttl > 0 {
            let Ok(m) = self.stream.store.load_msg(seq) else {
                return false;
            };
            let last = self.stream.store.num_pending(&m.subject, 0) == 1;
            if last && !m.headers.as_deref().is_some_and(is_delete_marker) {
                return self.place_marker(cfg, &m.subject);
            }
        }
        match self.stream.store.remove_msg(seq) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("JetStream stream '{}' expiry: {}", self.stream.name, e);
                false
            }
        }
    }

    /// Stores a subject delete marker on `subject`: it rolls the subject up (removing what
    /// expired) and expires itself after `subject_delete_marker_ttl`.
    fn place_marker(&mut self, cfg: &StreamConfig, subject: &[u8]) -> bool {
        let ttl_secs = cfg.subject_delete_marker_ttl / 1_000_000_000;
        let ttl = natsd_conf::duration::go_duration_nanos(ttl_secs * 1_000_000_000);
        let block = headers::append(
            None,
            &[
                ("Nats-Marker-Reason", "MaxAge"),
                ("Nats-TTL", &ttl),
                ("Nats-Rollup", "sub"),
            ],
        );
        let marker = Incoming::new(subject, Some(&block), b"", Origin::Marker);
        match self.process(cfg, &marker) {
            Ok(_) => {
                self.stored_since_commit = true;
                true
            }
            Err(e) => {
                tracing::warn!("JetStream stream '{}' delete marker: {}", cfg.name, e);
                false
            }
        }
    }

    /// `max_age` with subject delete markers: the worker expires what the store would, oldest
    /// first, leaving markers where subjects disappear. `Nats-TTL: never` messages stay.
    fn expire_aged_with_markers(&mut self, cfg: &StreamConfig, now: u64) -> bool {
        let cutoff = now.saturating_sub(cfg.max_age.max(0) as u64);
        let mut seq = self.stream.store.state().first_seq;
        let mut removed = false;
        for _ in 0..MAX_BATCH {
            let Ok(m) = self.stream.store.load_next_msg(b"", seq) else {
                break;
            };
            if m.ts > cutoff {
                break;
            }
            seq = m.seq + 1;
            if crate::store::never_expires(m.headers.as_deref()) {
                continue;
            }
            removed |= self.remove_expired(cfg, m.seq);
        }
        removed
    }

    /// The worker thread: store what the handler queued, in batches, until told to stop.
    fn run(worker: &Mutex<Worker>, ingest: &IngestHandler, rx: Receiver<Work>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut out: Vec<OutMsg> = Vec::with_capacity(MAX_BATCH);
        loop {
            let tick = worker.lock().expire_tick();
            match rx.recv_timeout(tick) {
                Ok(w) => batch.push(w),
                Err(RecvTimeoutError::Timeout) => {
                    let mut w = worker.lock();
                    w.expire();
                    let more = w.pull();
                    w.commit(&mut out);
                    w.save_positions(false);
                    let account = w.stream.account.clone();
                    let bell = w.stream.doorbell.clone();
                    drop(w);
                    publish_all(&account, &mut out);
                    if more {
                        bell.ring();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            let msgs = batch.iter().filter(|w| matches!(w, Work::Msg(_))).count();
            let pull = batch.iter().any(|w| matches!(w, Work::Pull));
            let mut w = worker.lock();
            let stop = w.store_batch(batch.drain(..));
            let more = pull && !stop && w.pull();
            w.commit(&mut out);
            if pull || stop {
                w.save_positions(stop);
            }
            // Still under the lock: the inline path must not overtake what was queued.
            ingest.queued.fetch_sub(msgs, Ordering::AcqRel);
            let account = w.stream.account.clone();
            let bell = w.stream.doorbell.clone();
            drop(w);
            publish_all(&account, &mut out);
            if stop {
                return;
            }
            if more {
                bell.ring();
            }
        }
    }

    /// Stores a batch with the store holding its writes; the PubAcks wait in `out` for
    /// [`Worker::commit`]. True when the batch held the stop signal.
    fn store_batch(&mut self, batch: impl Iterator<Item = Work>) -> bool {
        let cfg = self.config();
        self.stream.store.hold_writes();
        let mut stop = false;
        for work in batch {
            match work {
                Work::Stop => stop = true,
                Work::Pull => {}
                Work::Msg(_) if stop => {}
                Work::Msg(msg) => {
                    let incoming =
                        Incoming::new(msg.subject(), msg.headers(), msg.payload(), Origin::Publish);
                    if let Some(fast) = msg.reply().and_then(batch::parse_fast_reply) {
                        self.fast_batch_msg(&cfg, fast, &incoming, msg.reply().unwrap_or(b""));
                        continue;
                    }
                    let body = if let Some(id) = incoming.js.batch_id {
                        self.atomic_batch_msg(&cfg, id, &incoming)
                    } else {
                        let result = self.process(&cfg, &incoming);
                        self.stored_since_commit |= matches!(
                            result,
                            Ok(Stored {
                                duplicate: false,
                                ..
                            })
                        );
                        result.map(|stored| pub_ack(&self.ack_prefix, &stored))
                    };
                    if let Some(reply) = msg.reply().filter(|_| !cfg.no_ack) {
                        let body = match body {
                            Ok(ack) => ack,
                            Err(e) => pub_error(&cfg.name, &e),
                        };
                        self.out.push(OutMsg {
                            subject: reply.to_vec(),
                            headers: None,
                            payload: body,
                            ack: true,
                        });
                    }
                }
            }
        }
        stop
    }

    /// One message of an atomic batch: staged (the reply is empty), or with the commit the
    /// whole batch is checked and stored (the reply is a PubAck with `batch` and `count`).
    fn atomic_batch_msg(
        &mut self,
        cfg: &StreamConfig,
        id: &str,
        msg: &Incoming<'_>,
    ) -> Result<Vec<u8>, ApiError> {
        if cfg.sealed {
            return Err(ApiError::from(JsError::StreamSealed));
        }
        let content = msg.headers.map_or(0, <[u8]>::len) + msg.payload.len();
        if cfg.max_msg_size >= 0 && content as i64 > cfg.max_msg_size {
            return Err(ApiError::from(JsError::StreamMessageExceedsMaximum));
        }
        if !cfg.allow_atomic {
            return Err(ApiError::from(JsError::AtomicPublishDisabled));
        }
        let commit = Commit::from_header(msg.js.batch_commit);
        let staged = Staged {
            subject: msg.subject.to_vec(),
            headers: msg.headers.map(<[u8]>::to_vec),
            payload: msg.payload.to_vec(),
        };
        let now = crate::store::now_ns();
        let mut msgs = match self
            .batches
            .accept(id, msg.js.batch_seq, commit, staged, now)
        {
            batch::Step::Staged => return Ok(Vec::new()),
            batch::Step::Refused(e, why) => {
                if let Some(why) = why {
                    self.batch_abandoned(id, why);
                }
                return Err(e);
            }
            batch::Step::Commit(msgs) => msgs,
        };
        if commit == Commit::EndOfBatch {
            // The stored batch ends like one committed by its last message.
            if let Some(last) = msgs.last_mut() {
                last.headers = Some(headers::append(
                    last.headers.as_deref(),
                    &[("Nats-Batch-Commit", "1")],
                ));
            }
        }
        self.check_batch(cfg, &msgs)?;
        let mut last = Stored::new(0, false);
        for m in &msgs {
            let incoming = Incoming::new(
                &m.subject,
                m.headers.as_deref(),
                &m.payload,
                Origin::Publish,
            );
            last = self.process(cfg, &incoming)?;
            self.stored_since_commit = true;
        }
        let mut ack = pub_ack(&self.ack_prefix, &last);
        ack.pop();
        let id = serde_json::to_string(id).unwrap_or_default();
        ack.extend_from_slice(format!(",\"batch\":{id},\"count\":{}}}", msgs.len()).as_bytes());
        Ok(ack)
    }

    /// One message of a fast batch: stored at once; the replies (flow acks, gaps, errors,
    /// the final PubAck) go to its reply subject.
    fn fast_batch_msg(
        &mut self,
        cfg: &StreamConfig,
        fast: Result<batch::FastMsg, ()>,
        msg: &Incoming<'_>,
        reply: &[u8],
    ) {
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let content = msg.headers.map_or(0, <[u8]>::len) + msg.payload.len();
        let checked = if cfg.sealed {
            Err(JsError::StreamSealed.into())
        } else if cfg.max_msg_size >= 0 && content as i64 > cfg.max_msg_size {
            Err(JsError::StreamMessageExceedsMaximum.into())
        } else if !cfg.allow_batched {
            Err(JsError::BatchPublishDisabled.into())
        } else {
            fast.map_err(|()| JsError::BatchPublishInvalidPattern.into())
        };
        let now = crate::store::now_ns();
        match checked.and_then(|f| {
            let step = self.fast.before(&f, now, &self.ack_prefix)?;
            Ok((f, step))
        }) {
            Err(e) => replies.push(pub_error(&cfg.name, &e)),
            Ok((f, (out, next))) => {
                replies.extend(out);
                if next == batch::FastNext::Store {
                    let result = self
                        .process(cfg, msg)
                        .map(|stored| (stored.seq, stored.duplicate));
                    self.stored_since_commit |= matches!(result, Ok((_, false)));
                    let name = cfg.name.clone();
                    let prefix = self.ack_prefix.clone();
                    replies.extend(
                        self.fast
                            .stored(&f, result, &prefix, |e| pub_error(&name, e)),
                    );
                }
            }
        }
        if cfg.no_ack || reply.is_empty() {
            return;
        }
        for body in replies {
            self.out.push(OutMsg {
                subject: reply.to_vec(),
                headers: None,
                payload: body,
                ack: true,
            });
        }
    }

    /// Checks a whole batch against the stream before any of it is stored, as if its
    /// messages were stored one after the other: expectations, de-duplication, roll-ups
    /// and discard-new limits.
    fn check_batch(&mut self, cfg: &StreamConfig, msgs: &[Staged]) -> Result<(), ApiError> {
        if !self.dedupe_order.is_empty() {
            self.prune_dedupe(cfg);
        }
        let stream = Arc::clone(&self.stream);
        let store = &stream.store;
        let state = store.state();
        let (mut total_msgs, mut total_bytes) = (state.msgs, state.bytes);
        let mut written: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut ids: Vec<&str> = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let transformed = self.transform.as_ref().and_then(|t| {
                std::str::from_utf8(&m.subject)
                    .ok()
                    .and_then(|s| t.apply(s))
            });
            let subject = transformed.map_or_else(|| m.subject.clone(), String::into_bytes);
            let js = m.headers.as_deref().map(headers::parse).unwrap_or_default();
            if js.expected_last_msg_id.is_some() {
                return Err(
                    JsError::AtomicPublishUnsupportedHeaderBatch.with("Nats-Expected-Last-Msg-Id")
                );
            }
            if js.expected_stream.is_some_and(|s| s != cfg.name) {
                return Err(ApiError::from(JsError::StreamNotMatch));
            }
            if let Some(ttl) = js.ttl {
                if !cfg.allow_msg_ttl {
                    return Err(ApiError::from(JsError::MessageTTLDisabled));
                }
                parse_msg_ttl(ttl)?;
            }
            if let Some(id) = js.msg_id {
                if ids.contains(&id) || self.dedupe.contains_key(id) {
                    return Err(ApiError::from(
                        JsError::AtomicPublishContainsDuplicateMessage,
                    ));
                }
                ids.push(id);
            }
            if js.stream_source.is_some() {
                return Err(ApiError::from(JsError::MessageSourceHdrNotAllowed));
            }
            if let Some(expected) = js.expected_last_seq {
                // As if the batch's earlier messages were stored; only the first may ask.
                let at = state.last_seq + i as u64;
                if expected.parse::<u64>().ok() != Some(at) {
                    return Err(JsError::StreamWrongLastSequence.with(at));
                }
                if i > 0 {
                    return Err(ApiError::from(JsError::StreamWrongLastSequenceConstant));
                }
            }
            if let Some(expected) = js.expected_last_subject_seq {
                let on = js
                    .expected_last_subject_seq_subject
                    .map_or(subject.as_slice(), str::as_bytes);
                if written.contains_key(on) {
                    return Err(ApiError::from(JsError::StreamWrongLastSequenceConstant));
                }
                let last = store.load_last_msg(on).map_or(0, |m| m.seq);
                if expected.parse::<u64>().ok() != Some(last) {
                    return Err(JsError::StreamWrongLastSequence.with(last));
                }
            } else if js.expected_last_subject_seq_subject.is_some() {
                return Err(ApiError::from(
                    JsError::StreamExpectedLastSeqPerSubjectInvalid,
                ));
            }
            match js.rollup {
                None => {}
                Some(_) if !cfg.allow_rollup_hdrs || cfg.deny_purge => {
                    return Err(JsError::StreamRollupFailed.with("rollup not permitted"))
                }
                Some("sub") if written.contains_key(&subject) => {
                    return Err(JsError::StreamRollupFailed.with("batch rollup sub invalid"))
                }
                Some("all") if i > 0 => {
                    return Err(JsError::StreamRollupFailed.with("batch rollup all invalid"))
                }
                Some("sub" | "all") => {}
                Some(other) => {
                    return Err(JsError::StreamRollupFailed
                        .with(format!("rollup value invalid: {other:?}")))
                }
            }
            let size = store.stored_size(&subject, m.headers.as_deref(), &m.payload);
            let ops = written.entry(subject.clone()).or_insert(0);
            *ops += 1;
            if cfg.discard == super::config::DiscardPolicy::New {
                total_msgs += 1;
                total_bytes += size;
                if cfg.max_msgs > 0 && total_msgs > cfg.max_msgs as u64 {
                    return Err(JsError::StreamStoreFailed.with("maximum messages exceeded"));
                }
                if cfg.max_bytes > 0 && total_bytes > cfg.max_bytes as u64 {
                    return Err(JsError::StreamStoreFailed.with("maximum bytes exceeded"));
                }
                let per = cfg.max_msgs_per_subject;
                if cfg.discard_new_per_subject && per > 0 && js.rollup.is_none() {
                    let on_subject = store.num_pending(&subject, 0) + *ops;
                    if on_subject > per as u64 {
                        return Err(JsError::StreamStoreFailed
                            .with("maximum messages per subject exceeded"));
                    }
                }
            }
        }
        Ok(())
    }

    /// `$JS.EVENT.ADVISORY.STREAM.BATCH_ABANDONED.<stream>`, as nats-server sends it.
    fn batch_abandoned(&self, id: &str, why: Abandoned) {
        let name = &self.stream.name;
        #[derive(serde::Serialize)]
        struct BatchAbandoned<'a> {
            stream: &'a str,
            batch: &'a str,
            reason: &'a str,
        }
        let body = BatchAbandoned {
            stream: name,
            batch: id,
            reason: why.as_str(),
        };
        let subject = format!("$JS.EVENT.ADVISORY.STREAM.BATCH_ABANDONED.{name}");
        let payload = crate::consumer::advisory::body(
            "io.nats.jetstream.advisory.v1.stream_batch_abandoned",
            &body,
        );
        route::publish(
            &self.stream.account,
            subject.as_bytes(),
            None,
            None,
            &payload,
        );
    }

    /// Copies what the origins have beyond each source's position, up to one batch.
    /// True when an origin has more (the caller rings again).
    fn pull(&mut self) -> bool {
        self.stream.doorbell.rung.store(false, Ordering::Release);
        let cfg = self.config();
        if self.sources.is_empty() {
            return false;
        }
        self.stream.store.hold_writes();
        let now = crate::store::now_ns();
        let unpositioned: Vec<String> = self
            .sources
            .iter()
            .filter(|s| s.next.is_none())
            .map(|s| s.iname.clone())
            .collect();
        let recovered = if self.mirror || unpositioned.is_empty() {
            HashMap::new()
        } else {
            let mut found = sourcing::recover_positions(&*self.stream.store, &unpositioned);
            if let Some(dir) = &self.stream.dir {
                sourcing::merge_positions(&mut found, sourcing::load_positions(dir), &unpositioned);
            }
            found
        };
        let mut budget = MAX_BATCH;
        let mut more = false;
        for i in 0..self.sources.len() {
            let Some(origin) = self.stream.origins.find(&self.sources[i].config) else {
                continue;
            };
            origin.add_downstream(&self.stream.doorbell);
            // Through a durable consumer (nats-server resets it to its ack floor and copies
            // what it delivers): copy what it would deliver from there, and move its ack
            // floor over what was copied once that is committed.
            let mut through: Option<(String, Vec<Vec<u8>>, u64)> = None;
            // A work-queue or interest origin counts the copy as a consumer (nats-server's
            // sourcing consumer), read through like a configured one.
            let consumer = match self.origin_consumer(i, &cfg, &origin) {
                Some(Ok(named)) => Some(named),
                Some(Err(e)) => {
                    self.sources[i].error = Some(e);
                    continue;
                }
                None => self.sources[i]
                    .config
                    .consumer
                    .as_ref()
                    .map(|c| (c.name.clone(), c.deliver_subject.clone())),
            };
            if let Some((name, deliver_subject)) = consumer {
                match origin.consumers.through(&name, &deliver_subject) {
                    ThroughConsumer::Ready { ack_floor, filters } => {
                        through = Some((name, filters, ack_floor));
                    }
                    ThroughConsumer::NotFlowControl => {
                        self.sources[i].error = Some(ApiError::from(if self.mirror {
                            JsError::MirrorConsumerRequiresAckFC
                        } else {
                            JsError::SourceConsumerRequiresAckFC
                        }));
                        continue;
                    }
                    ThroughConsumer::Missing | ThroughConsumer::Silent => {
                        self.sources[i].error = None;
                        continue;
                    }
                }
            }
            let ostore = origin.store.clone();
            let identity = sourcing::identity(origin.created);
            self.sources[i].check_identity(&identity);
            if self.sources[i].next.is_none() {
                let local = self.stream.store.state();
                let src = &mut self.sources[i];
                if self.mirror {
                    src.position_mirror(&local, &*ostore);
                } else {
                    src.position_source(recovered.get(&src.iname), &identity, &local, &*ostore);
                }
            }
            if let Some((_, _, ack_floor)) = &through {
                // What the copy already holds (a crash before the consumer heard of it) is
                // not copied again; what the consumer acknowledged otherwise is skipped.
                let src = &mut self.sources[i];
                src.next = Some(src.next.unwrap_or(0).max(ack_floor + 1));
            }
            let through_from = self.sources[i].next;
            while let Some(msg) = self.sources[i].peek(&*ostore) {
                if budget == 0 {
                    more = true;
                    break;
                }
                budget -= 1;
                let seq = msg.seq;
                if let Some((_, filters, _)) = &through {
                    let wanted = filters.is_empty()
                        || filters
                            .iter()
                            .any(|f| crate::subject::matches(f, &msg.subject));
                    if !wanted {
                        self.sources[i].advance(seq);
                        continue;
                    }
                }
                if self.mirror {
                    match self.align_mirror(seq) {
                        Ok(true) => {}
                        Ok(false) => {
                            self.sources[i].advance(seq);
                            continue;
                        }
                        Err(e) => {
                            self.sources[i].error = Some(e);
                            break;
                        }
                    }
                }
                let copy = self.sources[i].copy_of(msg);
                let origin = if self.mirror {
                    Origin::Mirrored { ts: copy.ts }
                } else {
                    Origin::Sourced
                };
                let incoming = Incoming::new(
                    &copy.subject,
                    copy.headers.as_deref(),
                    &copy.payload,
                    origin,
                );
                match self.process(&cfg, &incoming) {
                    Ok(stored) => {
                        self.stored_since_commit |= !stored.duplicate;
                        self.sources[i].advance(seq);
                    }
                    Err(e) => {
                        // Retried from the same origin message on the next pull (limits
                        // with discard new free up, a sealed stream never does).
                        tracing::debug!(
                            "JetStream stream '{}' could not store copy of '{}' seq {}: {}",
                            cfg.name,
                            self.sources[i].config.name,
                            seq,
                            e
                        );
                        break;
                    }
                }
            }
            self.sources[i].observe(&*ostore, now);
            if let (Some((name, _, _)), Some(next)) = (through, self.sources[i].next) {
                if through_from.is_some_and(|from| next > from) {
                    self.through_acks.push((origin.clone(), name, next - 1));
                }
            }
        }
        more
    }

    /// Moves the ack floors of the durable consumers copied through (after a commit, so a
    /// consumer never acknowledges what a crash could still take back).
    fn acknowledge_through(&mut self) {
        for (origin, name, seq) in self.through_acks.drain(..) {
            origin.consumers.acknowledge_through(&name, seq);
        }
    }

    /// Saves the sources' positions next to the store when they moved (file streams only).
    /// Called after a commit, so a saved position never runs ahead of what is written; it
    /// only matters where the stream no longer holds any of a source's messages.
    fn save_positions(&mut self, force: bool) {
        self.acknowledge_through();
        let now = crate::store::now_ns();
        if !force && now < self.next_save {
            return;
        }
        self.next_save = now + SOURCE_TICK.as_nanos() as u64;
        let Some(dir) = self.stream.dir.clone() else {
            return;
        };
        if self.mirror || self.sources.is_empty() {
            return;
        }
        let marks: BTreeMap<&str, serde_json::Value> = self
            .sources
            .iter()
            .filter_map(|s| {
                let (seq, identity) = s.saved_mark()?;
                Some((
                    s.iname.as_str(),
                    serde_json::json!({"seq": seq, "identity": identity}),
                ))
            })
            .collect();
        let Ok(body) = serde_json::to_vec(&marks) else {
            return;
        };
        if body == self.saved_positions {
            return;
        }
        let tmp = dir.join(format!("{}.tmp", sourcing::POSITIONS_FILE));
        let written = std::fs::write(&tmp, &body)
            .and_then(|()| std::fs::rename(&tmp, dir.join(sourcing::POSITIONS_FILE)));
        match written {
            Ok(()) => self.saved_positions = body,
            Err(e) => tracing::warn!(
                "JetStream stream '{}' could not save source positions: {}",
                self.stream.name,
                e
            ),
        }
    }

    /// Gets the store's next sequence to `seq` for the mirror, skipping what the origin no
    /// longer has. False when the mirror already has `seq`.
    fn align_mirror(&mut self, seq: u64) -> Result<bool, ApiError> {
        let last = self.stream.store.state().last_seq;
        if seq <= last {
            return Ok(false);
        }
        if seq > last + 1 {
            self.stream
                .store
                .skip_msgs(seq - 1)
                .map_err(ApiError::internal)?;
        }
        Ok(true)
    }

    /// Writes what the store holds (and fsyncs with `sync_interval: always`), then moves the
    /// waiting messages to `out` for the caller to publish once the worker lock is released.
    fn commit(&mut self, out: &mut Vec<OutMsg>) {
        // Under steady load the worker's timer never fires: expiry runs here as well, before
        // the write so markers it stores go out with the batch.
        let now = crate::store::now_ns();
        if now >= self.next_expire || self.ttls.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            self.expire();
        }
        let store = &self.stream.store;
        let mut res = store.commit();
        if res.is_ok() && self.stored_since_commit && self.sync_always {
            res = store.flush();
        }
        if let Err(e) = res {
            let name = &self.stream.name;
            // A refusal while the store recovers was logged when the fault began.
            if !matches!(e, StoreError::WriteFailed(_)) {
                let why = crate::store::io_error_text(&e);
                tracing::error!("JetStream stream '{}' write or sync failed: {}", name, why);
            }
            // Not durable as promised: answer with errors instead of acks, republish nothing.
            let err = super::store_error(e);
            self.out.retain(|m| m.ack);
            for m in self.out.iter_mut() {
                m.payload = pub_error(name, &err);
            }
            self.forget_unstored();
        }
        out.append(&mut self.out);
        self.stream.refresh_usage();
        if std::mem::take(&mut self.stored_since_commit) {
            self.stream.consumers.notify_all();
            self.stream.ring_downstream();
        }
    }

    /// After a failed commit the store holds only what reached its files: Msg-Ids and
    /// TTLs of the messages that did not are dropped, so a retry is stored, not answered
    /// as a duplicate of nothing.
    fn forget_unstored(&mut self) {
        let last = self.stream.store.state().last_seq;
        let before = self.dedupe.len();
        self.dedupe.retain(|_, (seq, _)| *seq <= last);
        if self.dedupe.len() != before {
            self.last_msg_id = None;
        }
        self.ttls.retain(|Reverse((_, seq))| *seq <= last);
    }

    fn expire_tick(&self) -> Duration {
        let cfg = self.stream.config();
        let mut tick = if cfg.max_age > 0 {
            Duration::from_nanos((cfg.max_age as u64 / 10).clamp(50_000_000, 1_000_000_000))
        } else {
            Duration::from_secs(1)
        };
        if !self.sources.is_empty() {
            tick = tick.min(SOURCE_TICK);
        }
        if let Some((at, _)) = self.schedule_order.first() {
            let until = Duration::from_nanos(at.saturating_sub(crate::store::now_ns()));
            tick = tick.min(until.max(Duration::from_millis(10)));
        }
        match self.ttls.peek() {
            Some(Reverse((at, _))) => {
                let until = Duration::from_nanos(at.saturating_sub(crate::store::now_ns()));
                tick.min(until.max(Duration::from_millis(10)))
            }
            None => tick,
        }
    }

    fn expire(&mut self) {
        let now = crate::store::now_ns();
        self.expire_ttls(now);
        let cfg = self.config();
        if cfg.max_age > 0 && cfg.subject_delete_marker_ttl > 0 {
            if self.expire_aged_with_markers(&cfg, now) {
                self.stream.refresh_usage();
                self.stream.after_removal();
            }
        } else if cfg.max_age > 0 {
            match self.stream.store.expire(now) {
                Ok(n) if n > 0 => self.stream.refresh_usage(),
                Ok(_) => {}
                Err(e) => tracing::warn!("JetStream stream '{}' expire: {}", cfg.name, e),
            }
        }
        for id in self.batches.expire(now) {
            self.batch_abandoned(&id, Abandoned::Timeout);
        }
        self.fast.expire(now);
        if !self.schedule_order.is_empty() {
            self.fire_schedules(&cfg, now);
        }
        self.next_expire = now + self.expire_tick().as_nanos() as u64;
        self.prune_dedupe(&cfg);
    }

    fn prune_dedupe(&mut self, cfg: &StreamConfig) {
        let cutoff = crate::store::now_ns().saturating_sub(cfg.duplicate_window.max(0) as u64);
        while let Some((ts, _)) = self.dedupe_order.front() {
            if *ts >= cutoff {
                break;
            }
            if let Some((_, id)) = self.dedupe_order.pop_front() {
                if self.dedupe.get(&id).is_some_and(|(_, t)| *t < cutoff) {
                    self.dedupe.remove(&id);
                }
            }
        }
    }

    /// Checks and stores one message: what its PubAck says, or the error for it.
    fn process(&mut self, cfg: &StreamConfig, msg: &Incoming<'_>) -> Result<Stored, ApiError> {
        let stream = Arc::clone(&self.stream);
        let store = &stream.store;
        let sourced = msg.origin != Origin::Publish;
        // The stream's own transform comes before anything else.
        let transformed = self.transform.as_ref().and_then(|t| {
            std::str::from_utf8(msg.subject)
                .ok()
                .and_then(|s| t.apply(s))
        });
        let subject = transformed.as_deref().map_or(msg.subject, str::as_bytes);
        let headers = msg.headers;
        let mut payload = msg.payload;
        let js = &msg.js;
        if cfg.sealed {
            return Err(JsError::StreamSealed.into());
        }
        let incr = counter::increment(js.incr)?;
        // A copy is stored as the origin wrote it; only a counter stream adds it up.
        if incr.is_some() && !sourced {
            if !cfg.allow_msg_counter {
                return Err(JsError::MessageIncrDisabled.into());
            }
            if !payload.is_empty() {
                return Err(JsError::MessageIncrPayload.into());
            }
            // A total cannot be rolled up or published conditionally.
            if js.rollup.is_some()
                || js.expected_stream.is_some()
                || js.expected_last_msg_id.is_some()
                || js.expected_last_seq.is_some()
                || js.expected_last_subject_seq.is_some()
            {
                return Err(JsError::MessageIncrInvalid.into());
            }
        }
        if let Some(expected) = js.expected_stream {
            if expected != cfg.name {
                return Err(JsError::StreamNotMatch.into());
            }
        }
        let mut ttl = match js.ttl {
            None => None,
            Some(_) if !cfg.allow_msg_ttl && !sourced => {
                return Err(ApiError::from(JsError::MessageTTLDisabled))
            }
            Some(value) => parse_msg_ttl(value)?,
        };
        // With delete markers a message outlives a marker's TTL, or a marker still standing
        // for its subject could hide it (one message per subject cannot meet an old marker).
        let raised;
        let mut headers = headers;
        if let Some(ns) =
            ttl.filter(|_| cfg.subject_delete_marker_ttl > 0 && cfg.max_msgs_per_subject != 1)
        {
            let min = cfg.subject_delete_marker_ttl as u64 / 1_000_000_000 * 1_000_000_000;
            if ns < min {
                ttl = Some(min);
                let kept = headers.and_then(|h| headers::remove(h, |n| n == "Nats-TTL"));
                let secs = (min / 1_000_000_000).to_string();
                raised = headers::append(kept.as_deref(), &[("Nats-TTL", &secs)]);
                headers = Some(&raised);
            }
        }
        if !sourced && js.stream_source.is_some() {
            return Err(ApiError::from(JsError::MessageSourceHdrNotAllowed));
        }
        // A mirror takes the origin's messages as they are: no de-duplication of its own.
        let msg_id = js
            .msg_id
            .filter(|_| !matches!(msg.origin, Origin::Mirrored { .. }));
        if let Some(id) = msg_id {
            if !self.dedupe_order.is_empty() {
                self.prune_dedupe(cfg);
            }
            if let Some((seq, _)) = self.dedupe.get(id) {
                return Ok(Stored::new(*seq, true));
            }
        }
        if let Some(expected) = js.expected_last_seq {
            let last = store.state().last_seq;
            if expected.parse::<u64>().ok() != Some(last) {
                return Err(JsError::StreamWrongLastSequence.with(last));
            }
        }
        if let Some(expected) = js.expected_last_subject_seq {
            let on = js
                .expected_last_subject_seq_subject
                .map_or(subject, str::as_bytes);
            let last = match store.load_last_msg(on) {
                Ok(m) => m.seq,
                Err(StoreError::NotFound) => 0,
                Err(e) => return Err(ApiError::internal(e)),
            };
            if expected.parse::<u64>().ok() != Some(last) {
                return Err(JsError::StreamWrongLastSequence.with(last));
            }
        } else if js.expected_last_subject_seq_subject.is_some() {
            return Err(ApiError::from(
                JsError::StreamExpectedLastSeqPerSubjectInvalid,
            ));
        }
        // A schedule replaces the previous one on its subject through a subject roll-up.
        let schedule_rollup = if sourced {
            false
        } else {
            self.check_schedule(cfg, subject, js)?
        };
        let with_rollup;
        if schedule_rollup {
            with_rollup = headers::append(headers, &[("Nats-Rollup", "sub")]);
            headers = Some(&with_rollup);
        }
        if let Some(expected) = js.expected_last_msg_id {
            let last = self.last_msg_id.as_deref().unwrap_or("");
            if expected != last {
                return Err(JsError::StreamWrongLastMsgID.with(last));
            }
        }
        let rollup = if schedule_rollup {
            Some("sub")
        } else {
            js.rollup
        };
        let rollup_all = match rollup {
            None => None,
            // Copies carry the origin's roll-ups; they apply where roll-ups are allowed.
            Some(_) if !cfg.allow_rollup_hdrs && !sourced => {
                return Err(JsError::StreamRollupFailed.with("rollup not permitted"))
            }
            Some("sub") => Some(false),
            Some("all") => Some(true),
            Some(other) => {
                return Err(
                    JsError::StreamRollupFailed.with(format!("rollup value invalid: {other:?}"))
                )
            }
        };
        let mut counted = None;
        match incr {
            None if cfg.allow_msg_counter => return Err(JsError::MessageIncrMissing.into()),
            Some(incr) if cfg.allow_msg_counter => {
                let last = match store.load_last_msg(subject) {
                    Ok(m) => Some(m),
                    Err(StoreError::NotFound) => None,
                    Err(e) => return Err(ApiError::internal(e)),
                };
                let last = last
                    .as_ref()
                    .map(|m| (&m.payload[..], m.headers.as_deref()));
                counted = Some(counter::update(last, incr, subject, headers, payload)?);
            }
            _ => {}
        }
        if let Some(c) = &counted {
            payload = &c.payload;
            if let Some(h) = &c.headers {
                headers = Some(h);
            }
        }
        let counter = counted.as_ref().map(|c| c.val.clone());
        let size = store.stored_size(subject, headers, payload);
        if cfg.max_bytes <= 0 {
            self.stream.usage.check(store.storage_type(), size as i64)?;
        }
        let republish = self.republish.as_ref().and_then(|t| {
            std::str::from_utf8(subject)
                .ok()
                .and_then(|s| t.apply(s))
                .filter(|d| crate::subject::is_valid_literal_subject(d.as_bytes()))
        });
        // Republished copies tell lightweight clients the subject's previous sequence.
        let prev_on_subject = match &republish {
            Some(_) => store.load_last_msg(subject).map_or(0, |m| m.seq),
            None => 0,
        };
        let ts = match msg.origin {
            Origin::Mirrored { ts } => ts,
            _ => 0,
        };
        let do_store = || store.store_msg(subject, headers, payload, ts);
        let (stored, interested) = if cfg.retention == Retention::Interest {
            stream
                .consumers
                .record_interest(subject, do_store, |r| r.as_ref().ok().map(|(seq, _)| *seq))
        } else {
            (do_store(), true)
        };
        let (seq, ts) = stored.map_err(super::store_error)?;
        if store.storage_type() == StorageType::Memory || self.stream.usage.has_limits() {
            self.stream.refresh_usage();
        }
        if let Some(ns) = ttl.filter(|_| cfg.allow_msg_ttl) {
            self.ttls.push(Reverse((ts.saturating_add(ns), seq)));
        }
        if let Some(id) = msg_id {
            self.dedupe.insert(id.to_string(), (seq, ts));
            self.dedupe_order.push_back((ts, id.to_string()));
            self.last_msg_id = Some(id.to_string());
        }
        let roll = cfg.allow_rollup_hdrs && !cfg.deny_purge;
        if let Some(all) = rollup_all.filter(|_| roll) {
            let req = PurgeRequest {
                filter: (!all).then(|| subject.to_vec()),
                seq: None,
                keep: Some(1),
            };
            if let Err(e) = store.purge(&req) {
                tracing::warn!("JetStream stream '{}' rollup: {}", cfg.name, e);
            }
        }
        if cfg.allow_msg_schedules {
            self.track_schedule(subject, seq, ts, js);
            // The last message of a one-shot schedule removes the schedule itself.
            if let (Some("purge"), Some(scheduler), true) = (js.schedule_next, js.scheduler, roll) {
                let req = PurgeRequest {
                    filter: Some(scheduler.as_bytes().to_vec()),
                    seq: None,
                    keep: None,
                };
                if let Err(e) = store.purge(&req) {
                    tracing::warn!("JetStream stream '{}' schedule purge: {}", cfg.name, e);
                }
                self.drop_schedule(scheduler.as_bytes());
            }
        }
        if !interested {
            // Nobody is interested: acked, then dropped at once (as observed on nats-server).
            let _ = store.remove_msg(seq);
            return Ok(Stored {
                counter,
                ..Stored::new(seq, false)
            });
        }
        if let Some(dest) = republish {
            let headers_only = cfg.republish.as_ref().is_some_and(|r| r.headers_only);
            self.out.push(republished(
                &cfg.name,
                subject,
                dest,
                headers,
                payload,
                (seq, ts, prev_on_subject),
                headers_only,
            ));
        }
        Ok(Stored {
            counter,
            ..Stored::new(seq, false)
        })
    }
}

/// What a firing schedule stores: on its target, with its headers and payload, and when it
/// fires next (`None` for a one-shot).
struct Produced {
    target: Vec<u8>,
    headers: Vec<u8>,
    payload: Vec<u8>,
    next: Option<u64>,
}

/// A message's schedule (from `from`, at `now`): `Ok(None)` without `Nats-Schedule`.
fn next_schedule(
    js: &JsHeaders<'_>,
    from: u64,
    now: u64,
) -> Result<Option<schedule::Next>, ApiError> {
    let Some(pattern) = js.schedule else {
        return Ok(None);
    };
    let tz = schedule::time_zone(js.schedule_time_zone)
        .map_err(|_| ApiError::from(JsError::MessageSchedulesTimeZoneInvalid))?;
    schedule::next_firing(pattern, tz.as_ref(), from, now)
        .map_err(|_| ApiError::from(JsError::MessageSchedulesPatternInvalid))
}

/// RFC 3339 with Go's trimmed nanoseconds, with the zone's offset (UTC: `Z`).
fn format_in_zone(ns: u64, tz: Option<&jiff::tz::TimeZone>) -> String {
    let Some(tz) = tz else {
        return natsd_conf::timestamp::rfc3339_ns(ns);
    };
    let Ok(ts) = jiff::Timestamp::from_nanosecond(i128::from(ns)) else {
        return natsd_conf::timestamp::rfc3339_ns(ns);
    };
    let offset = tz.to_offset(ts).seconds();
    if offset == 0 {
        return natsd_conf::timestamp::rfc3339_ns(ns);
    }
    let local =
        natsd_conf::timestamp::rfc3339_ns((ns as i64 + i64::from(offset) * 1_000_000_000) as u64);
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.unsigned_abs();
    format!(
        "{}{sign}{:02}:{:02}",
        local.trim_end_matches('Z'),
        abs / 3600,
        abs % 3600 / 60
    )
}

/// A subject delete marker, or a KV purge (which is one by the client's hand).
fn is_delete_marker(block: &[u8]) -> bool {
    headers::get(block, "Nats-Marker-Reason").is_some_and(|v| !v.is_empty())
        || headers::get(block, "KV-Operation") == Some("PURGE")
}

/// The copy `republish` sends: the stored headers plus where the message is stored.
fn republished(
    stream: &str,
    subject: &[u8],
    dest: String,
    headers: Option<&[u8]>,
    payload: &[u8],
    (seq, ts, prev): (u64, u64, u64),
    headers_only: bool,
) -> OutMsg {
    let subject = String::from_utf8_lossy(subject);
    let seq = seq.to_string();
    let time = natsd_conf::timestamp::rfc3339_ns(ts);
    let prev = prev.to_string();
    let size = payload.len().to_string();
    let mut extra = vec![
        ("Nats-Stream", stream),
        ("Nats-Subject", &*subject),
        ("Nats-Sequence", &seq),
        ("Nats-Time-Stamp", &time),
        ("Nats-Last-Sequence", &prev),
    ];
    if headers_only {
        extra.push(("Nats-Msg-Size", &size));
    }
    OutMsg {
        subject: dest.into_bytes(),
        headers: Some(headers::append(headers, &extra)),
        payload: if headers_only {
            Vec::new()
        } else {
            payload.to_vec()
        },
        ack: false,
    }
}

fn publish_all(account: &Account, out: &mut Vec<OutMsg>) {
    for m in out.drain(..) {
        route::publish(account, &m.subject, None, m.headers.as_deref(), &m.payload);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn msg_ttl_values() {
        assert_eq!(parse_msg_ttl("never").unwrap(), None);
        assert_eq!(parse_msg_ttl("2").unwrap(), Some(2_000_000_000));
        assert_eq!(parse_msg_ttl("1m30s").unwrap(), Some(90_000_000_000));
        assert_eq!(parse_msg_ttl("1.5s").unwrap(), Some(1_000_000_000));
        assert_eq!(parse_msg_ttl("NEVER").unwrap(), None);
        for bad in ["0", "-1", "0.5s", "999ms", "abc", "", "-5s"] {
            assert!(parse_msg_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pub_ack_bytes_match_nats_server() {
        assert_eq!(
            pub_ack(&pub_ack_prefix("ORDERS", None), &Stored::new(1, false)),
            br#"{"stream":"ORDERS","seq":1}"#
        );
        assert_eq!(
            pub_ack(&pub_ack_prefix("ORDERS", None), &Stored::new(1, true)),
            br#"{"stream":"ORDERS","seq":1,"duplicate": true}"#
        );
        assert_eq!(
            pub_ack(
                &pub_ack_prefix("ORDERS", Some("hub")),
                &Stored::new(2, false)
            ),
            br#"{"stream":"ORDERS","domain":"hub","seq":2}"#
        );
        assert_eq!(
            pub_error("E", &ApiError::from(JsError::StreamNotMatch)),
            br#"{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},"stream":"E","seq":0}"#
        );
    }
}
