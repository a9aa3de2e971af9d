//! One stream: its store, the internal subscriptions that capture its subjects, and the
//! worker thread that stores what they capture.
//!
//! A captured message is stored on the publisher's own task when the stream is idle, else
//! queued to the stream's worker thread (`IngestHandler`). Either way the store holds the
//! writes of a batch (the messages of one read, or up to 1,024 queued ones) after the header
//! checks (dedupe, expected-*), and `Worker::commit` writes them with one write (and fsyncs
//! when `sync_interval: always`) before the PubAcks are published. So an ack always means the
//! message is in the store, and one write (or fsync) covers the whole batch.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::config::{Retention, StreamConfig};
use super::consumers::Consumers;
use super::Usage;
use crate::account::Account;
use crate::client::SubRef;
use crate::js_errors::{ApiError, JsError};
use crate::route::{self, Deferred, FlushSet, InternalHandler, InternalMsg};
use crate::store::{MessageStore, PurgeRequest, StorageType, StoreError};

/// Captured messages a stream may have waiting before new ones are refused.
const INGEST_QUEUE: usize = 65_536;
/// Messages stored per batch before the acks go out.
const MAX_BATCH: usize = 1024;

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
    Stop,
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
    tx: SyncSender<Work>,
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
        let Ok(mut guard) = worker.try_lock() else {
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
        let mut acks = Vec::new();
        let mut worker = lock(self);
        worker.commit(&mut acks);
        let account = worker.stream.account.clone();
        drop(worker);
        for (reply, body) in acks {
            route::publish_into(&account, &reply, None, None, &body, flush);
        }
    }
}

impl InternalHandler for IngestHandler {
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) {
        if self.try_store_inline(msg, flush) {
            return;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(Work::Msg(Inbound::copy(msg))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                // The publisher gets no ack and retries; blocking here would stall its connection.
                if self.dropped.fetch_add(1, Ordering::Relaxed) % 10_000 == 0 {
                    tracing::warn!(
                        "JetStream stream '{}' ingest queue full, dropping messages",
                        self.stream
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// One stream.
pub struct Stream {
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
    tx: SyncSender<Work>,
    ingest: Arc<IngestHandler>,
    subs: Mutex<Vec<SubRef>>,
    direct_subs: Mutex<Vec<SubRef>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Where its metadata lives (file streams only).
    pub(crate) dir: Option<PathBuf>,
    /// Its consumers.
    pub(crate) consumers: Consumers,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    ) -> Result<Arc<Stream>, ApiError> {
        let consumers = Consumers::new(rt, dir.as_deref());
        let (tx, rx) = std::sync::mpsc::sync_channel(INGEST_QUEUE);
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
        });
        stream.refresh_usage();
        let worker = Arc::new(Mutex::new(Worker::new(stream.clone(), sync_always)));
        let _ = stream.ingest.worker.set(worker.clone());
        let ingest = stream.ingest.clone();
        let handle = std::thread::Builder::new()
            .name(format!("js-{}", stream.name))
            .spawn(move || Worker::run(&worker, &ingest, rx))
            .map_err(ApiError::internal)?;
        *lock(&stream.worker) = Some(handle);
        stream.subscribe()?;
        Ok(stream)
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<StreamConfig> {
        self.config.load_full()
    }

    fn subscribe(&self) -> Result<(), ApiError> {
        let cfg = self.config();
        let mut subs = lock(&self.subs);
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
        let mut subs = lock(&self.direct_subs);
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
        let resubscribe = cfg.subjects != self.config().subjects;
        self.config.store(Arc::new(cfg));
        if resubscribe {
            self.subscribe()?;
        }
        self.refresh_usage();
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
        for sub in lock(&self.subs).drain(..) {
            route::unsubscribe_internal(&self.account, &sub);
        }
        self.set_direct(None);
        let _ = self.tx.send(Work::Stop);
        if let Some(handle) = lock(&self.worker).take() {
            let _ = handle.join();
        }
    }

    /// Stops the stream and closes its store, keeping its data.
    pub(crate) fn stop(&self) {
        self.consumers.stop_all();
        self.stop_worker();
        if let Err(e) = self.store.stop() {
            tracing::warn!("JetStream stream '{}' stop: {}", self.name, e);
        }
        let old = self.accounted.swap(0, Ordering::Relaxed);
        self.usage.add(self.store.storage_type(), -old);
    }

    /// Stops the stream and removes its data.
    pub(crate) fn delete(&self) -> Result<(), ApiError> {
        self.consumers.stop_all();
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

    /// Bytes currently counted for this stream.
    pub fn bytes(&self) -> u64 {
        self.accounted.load(Ordering::Relaxed).max(0) as u64
    }
}

/// Headers the server acts on; names are case-sensitive, as in nats-server.
#[derive(Default)]
struct JsHeaders<'a> {
    msg_id: Option<&'a str>,
    expected_stream: Option<&'a str>,
    expected_last_seq: Option<&'a str>,
    expected_last_subject_seq: Option<&'a str>,
    expected_last_msg_id: Option<&'a str>,
    rollup: Option<&'a str>,
    ttl: Option<&'a str>,
}

fn parse_headers(block: &[u8]) -> JsHeaders<'_> {
    let mut h = JsHeaders::default();
    let Ok(text) = std::str::from_utf8(block) else {
        return h;
    };
    for line in text.split("\r\n").skip(1) {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Nats-Msg-Id" => h.msg_id = Some(value),
            "Nats-Expected-Stream" => h.expected_stream = Some(value),
            "Nats-Expected-Last-Sequence" => h.expected_last_seq = Some(value),
            "Nats-Expected-Last-Subject-Sequence" => h.expected_last_subject_seq = Some(value),
            "Nats-Expected-Last-Msg-Id" => h.expected_last_msg_id = Some(value),
            "Nats-Rollup" => h.rollup = Some(value),
            "Nats-TTL" => h.ttl = Some(value),
            _ => {}
        }
    }
    h
}

/// A `Nats-TTL` value: `Ok(None)` for `never`, else the TTL in ns. Whole seconds or a Go
/// duration, at least one second (as nats-server accepts them).
fn parse_msg_ttl(value: &str) -> Result<Option<u64>, ApiError> {
    if value == "never" {
        return Ok(None);
    }
    let ns = match value.parse::<u64>() {
        Ok(secs) => secs.saturating_mul(1_000_000_000),
        Err(_) => match crate::config::duration::parse_go_duration(value) {
            Ok((false, d)) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            _ => 0,
        },
    };
    if ns < 1_000_000_000 {
        return Err(JsError::MessageTTLInvalid.into());
    }
    Ok(Some(ns))
}

/// The PubAck bytes nats-server sends (note the space in `"duplicate": true`).
fn pub_ack(prefix: &[u8], seq: u64, duplicate: bool) -> Vec<u8> {
    let mut digits = itoa::Buffer::new();
    let seq = digits.format(seq).as_bytes();
    let mut out = Vec::with_capacity(prefix.len() + seq.len() + 20);
    out.extend_from_slice(prefix);
    out.extend_from_slice(seq);
    if duplicate {
        out.extend_from_slice(b",\"duplicate\": true");
    }
    out.push(b'}');
    out
}

/// The constant start of a stream's PubAcks, up to the sequence.
fn pub_ack_prefix(stream: &str) -> Vec<u8> {
    let name = serde_json::to_string(stream).unwrap_or_default();
    format!("{{\"stream\":{name},\"seq\":").into_bytes()
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
    /// (reply, body) of PubAcks for messages stored since the last commit: the store may
    /// still hold their records, so they wait for [`Worker::commit`].
    unacked: Vec<(Vec<u8>, Vec<u8>)>,
    /// Something was stored since the last commit.
    stored_since_commit: bool,
    /// The constant start of this stream's PubAcks.
    ack_prefix: Vec<u8>,
    /// Messages with a `Nats-TTL`: (expiry ns, seq), soonest first.
    ttls: BinaryHeap<Reverse<(u64, u64)>>,
}

impl Worker {
    fn new(stream: Arc<Stream>, sync_always: bool) -> Worker {
        let ack_prefix = pub_ack_prefix(&stream.name);
        let mut w = Worker {
            stream,
            sync_always,
            dedupe: HashMap::new(),
            dedupe_order: VecDeque::new(),
            last_msg_id: None,
            unacked: Vec::new(),
            stored_since_commit: false,
            ack_prefix,
            ttls: BinaryHeap::new(),
        };
        w.rebuild_dedupe();
        w.rebuild_ttls();
        w
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
            .visit_headers_since(cutoff, &mut |seq, ts, headers| {
                if let Some(id) = parse_headers(headers).msg_id {
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
            .visit_headers_since(0, &mut |seq, ts, headers| {
                if let Some(Ok(Some(ns))) = parse_headers(headers).ttl.map(parse_msg_ttl) {
                    ttls.push(Reverse((ts.saturating_add(ns), seq)));
                }
            });
    }

    /// Removes the messages whose `Nats-TTL` ran out.
    fn expire_ttls(&mut self, now: u64) {
        let mut removed = false;
        while let Some(&Reverse((at, seq))) = self.ttls.peek() {
            if at > now {
                break;
            }
            self.ttls.pop();
            match self.stream.store.remove_msg(seq) {
                Ok(found) => removed |= found,
                Err(e) => {
                    tracing::warn!("JetStream stream '{}' TTL expiry: {}", self.stream.name, e)
                }
            }
        }
        if removed {
            self.stream.refresh_usage();
            self.stream.after_removal();
        }
    }

    /// The worker thread: store what the handler queued, in batches, until told to stop.
    fn run(worker: &Mutex<Worker>, ingest: &IngestHandler, rx: Receiver<Work>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut acks: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(MAX_BATCH);
        loop {
            let tick = lock(worker).expire_tick();
            match rx.recv_timeout(tick) {
                Ok(w) => batch.push(w),
                Err(RecvTimeoutError::Timeout) => {
                    lock(worker).expire();
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
            let mut w = lock(worker);
            let stop = w.store_batch(batch.drain(..));
            w.commit(&mut acks);
            // Still under the lock: the inline path must not overtake what was queued.
            ingest.queued.fetch_sub(msgs, Ordering::AcqRel);
            let account = w.stream.account.clone();
            drop(w);
            for (reply, body) in acks.drain(..) {
                route::publish(&account, &reply, None, None, &body);
            }
            if stop {
                return;
            }
        }
    }

    /// Stores a batch with the store holding its writes; the PubAcks wait in `unacked` for
    /// [`Worker::commit`]. True when the batch held the stop signal.
    fn store_batch(&mut self, batch: impl Iterator<Item = Work>) -> bool {
        let cfg = self.stream.config();
        self.stream.store.hold_writes();
        let mut stop = false;
        for work in batch {
            match work {
                Work::Stop => stop = true,
                Work::Msg(_) if stop => {}
                Work::Msg(msg) => {
                    let result = self.process(&cfg, &msg);
                    self.stored_since_commit |= matches!(result, Ok((_, false)));
                    if let Some(reply) = msg.reply().filter(|_| !cfg.no_ack) {
                        let body = match &result {
                            Ok((seq, dup)) => pub_ack(&self.ack_prefix, *seq, *dup),
                            Err(e) => pub_error(&cfg.name, e),
                        };
                        self.unacked.push((reply.to_vec(), body));
                    }
                }
            }
        }
        stop
    }

    /// Writes what the store holds (and fsyncs with `sync_interval: always`), then moves the
    /// waiting PubAcks to `acks` for the caller to publish once the worker lock is released.
    fn commit(&mut self, acks: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        let store = &self.stream.store;
        let mut res = store.commit();
        if res.is_ok() && self.stored_since_commit && self.sync_always {
            res = store.flush();
        }
        if let Err(e) = res {
            let name = &self.stream.name;
            tracing::error!("JetStream stream '{}' write or sync failed: {}", name, e);
            // Not durable as promised: answer with errors instead of acks.
            let err = ApiError::internal(e);
            for (_, body) in self.unacked.iter_mut() {
                *body = pub_error(name, &err);
            }
        }
        acks.append(&mut self.unacked);
        // Under steady load the worker's timer never fires: TTLs are checked here as well.
        if self
            .ttls
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= crate::store::now_ns())
        {
            self.expire_ttls(crate::store::now_ns());
        }
        self.stream.refresh_usage();
        if std::mem::take(&mut self.stored_since_commit) {
            self.stream.consumers.notify_all();
        }
    }

    fn expire_tick(&self) -> Duration {
        let cfg = self.stream.config();
        let tick = if cfg.max_age > 0 {
            Duration::from_nanos((cfg.max_age as u64 / 10).clamp(50_000_000, 1_000_000_000))
        } else {
            Duration::from_secs(1)
        };
        match self.ttls.peek() {
            Some(Reverse((at, _))) => {
                let until = Duration::from_nanos(at.saturating_sub(crate::store::now_ns()));
                tick.min(until.max(Duration::from_millis(10)))
            }
            None => tick,
        }
    }

    fn expire(&mut self) {
        self.expire_ttls(crate::store::now_ns());
        let cfg = self.stream.config();
        if cfg.max_age > 0 {
            match self.stream.store.expire(crate::store::now_ns()) {
                Ok(n) if n > 0 => self.stream.refresh_usage(),
                Ok(_) => {}
                Err(e) => tracing::warn!("JetStream stream '{}' expire: {}", cfg.name, e),
            }
        }
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

    /// Checks and stores one message: `(seq, duplicate)` or the error for the PubAck.
    fn process(&mut self, cfg: &StreamConfig, msg: &Inbound) -> Result<(u64, bool), ApiError> {
        let stream = Arc::clone(&self.stream);
        let store = &stream.store;
        let subject = msg.subject();
        let headers = msg.headers();
        let payload = msg.payload();
        let js = headers.map(parse_headers).unwrap_or_default();
        if cfg.sealed {
            return Err(JsError::StreamSealed.into());
        }
        if let Some(expected) = js.expected_stream {
            if expected != cfg.name {
                return Err(JsError::StreamNotMatch.into());
            }
        }
        let ttl = match js.ttl {
            None => None,
            Some(_) if !cfg.allow_msg_ttl => return Err(JsError::MessageTTLDisabled.into()),
            Some(value) => parse_msg_ttl(value)?,
        };
        if let Some(id) = js.msg_id {
            if !self.dedupe_order.is_empty() {
                self.prune_dedupe(cfg);
            }
            if let Some((seq, _)) = self.dedupe.get(id) {
                return Ok((*seq, true));
            }
        }
        if let Some(expected) = js.expected_last_seq {
            let last = store.state().last_seq;
            if expected.parse::<u64>().ok() != Some(last) {
                return Err(JsError::StreamWrongLastSequence.with(last));
            }
        }
        if let Some(expected) = js.expected_last_subject_seq {
            let last = match store.load_last_msg(subject) {
                Ok(m) => m.seq,
                Err(StoreError::NotFound) => 0,
                Err(e) => return Err(ApiError::internal(e)),
            };
            if expected.parse::<u64>().ok() != Some(last) {
                return Err(JsError::StreamWrongLastSequence.with(last));
            }
        }
        if let Some(expected) = js.expected_last_msg_id {
            let last = self.last_msg_id.as_deref().unwrap_or("");
            if expected != last {
                return Err(JsError::StreamWrongLastMsgID.with(last));
            }
        }
        let rollup_all = match js.rollup {
            None => None,
            Some(_) if !cfg.allow_rollup_hdrs => {
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
        let size = store.stored_size(subject, headers, payload);
        if cfg.max_bytes <= 0 {
            self.stream.usage.check(store.storage_type(), size as i64)?;
        }
        let do_store = || store.store_msg(subject, headers, payload, 0);
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
        if let Some(ns) = ttl {
            self.ttls.push(Reverse((ts.saturating_add(ns), seq)));
        }
        if let Some(id) = js.msg_id {
            self.dedupe.insert(id.to_string(), (seq, ts));
            self.dedupe_order.push_back((ts, id.to_string()));
            self.last_msg_id = Some(id.to_string());
        }
        if let Some(all) = rollup_all {
            let req = PurgeRequest {
                filter: (!all).then(|| subject.to_vec()),
                seq: None,
                keep: Some(1),
            };
            if let Err(e) = store.purge(&req) {
                tracing::warn!("JetStream stream '{}' rollup: {}", cfg.name, e);
            }
        }
        if !interested {
            // Nobody is interested: acked, then dropped at once (as observed on nats-server).
            let _ = store.remove_msg(seq);
        }
        Ok((seq, false))
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
        assert_eq!(parse_msg_ttl("1.5s").unwrap(), Some(1_500_000_000));
        for bad in ["0", "-1", "0.5s", "999ms", "abc", "", "-5s"] {
            assert!(parse_msg_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_names_are_case_sensitive() {
        let h = parse_headers(b"NATS/1.0\r\nnats-msg-id: a\r\nNats-Rollup: sub\r\n\r\n");
        assert!(h.msg_id.is_none());
        assert_eq!(h.rollup, Some("sub"));
    }

    #[test]
    fn pub_ack_bytes_match_nats_server() {
        assert_eq!(
            pub_ack(&pub_ack_prefix("ORDERS"), 1, false),
            br#"{"stream":"ORDERS","seq":1}"#
        );
        assert_eq!(
            pub_ack(&pub_ack_prefix("ORDERS"), 1, true),
            br#"{"stream":"ORDERS","seq":1,"duplicate": true}"#
        );
        assert_eq!(
            pub_error("E", &ApiError::from(JsError::StreamNotMatch)),
            br#"{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},"stream":"E","seq":0}"#
        );
    }
}
