//! One client connection: a reader task that parses and routes, a writer task that flushes.
//!
//! Data path: the reader parses ops in place from its read buffer; a publish is matched in
//! the account's sublist (through a small per-connection cache keyed on the sublist's
//! generation) and copied once into each receiver's outbound buffer under that receiver's
//! mutex. Receivers whose buffer went from empty to non-empty are collected and woken once
//! per read batch, and each receiver's writer task flushes everything pending in one write.
//!
//! Flow control (as nats-server's "stall" of fast producers, see docs/architecture.md): a
//! receiver whose pending bytes reach three quarters of `max_pending` holds back the client
//! publishers that feed it: each waits at the end of its read batch, without reading more,
//! until the receiver drains below that mark. A receiver whose socket has taken nothing for
//! [`STOPPED_RECEIVER_AFTER`] counts as stopped and holds nobody back; it is cut off as a slow
//! consumer once its pending bytes pass `max_pending` or its socket has taken nothing for
//! `write_deadline`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use bytes::{Buf, BytesMut};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::account::Account;
use crate::auth::{ClientPermissions, Credentials, Identity, SubscribeCheck};
use crate::proto::encode;
use crate::proto::parser::{self, ClientOp, ParseLimits, Parsed, ProtoError};
use crate::route::{self, FlushSet, InternalHandler};
use crate::server::Server;
use crate::subject;
use crate::sublist::SublistResult;

pub type ClientId = u64;

/// Smallest read buffer; idle connections stay this small (memory per idle connection matters).
const MIN_READ_BUFFER: usize = 512;
/// Largest read buffer a busy connection grows to (beyond that only a big payload needs more).
const MAX_READ_BUFFER: usize = 64 * 1024;
/// A writer keeps its spare buffer between flushes unless it grew beyond this.
const MAX_KEPT_WRITE_BUFFER: usize = 1024 * 1024;
/// Entries in the per-connection subject → subscribers cache.
const L1_CACHE_SIZE: usize = 256;
/// Entries in the per-connection publish-permission cache.
const PERM_CACHE_SIZE: usize = 1024;
/// Delay of the first server PING after CONNECT (plus jitter), like nats-server.
const FIRST_PING_INTERVAL: Duration = Duration::from_secs(2);
/// A receiver whose socket has accepted no byte for this long, while it has data pending, has
/// stopped reading (or its host is gone) rather than reading slowly: publishers stop waiting
/// for it. Long enough for a live reader's pauses (a garbage collection, a scheduler hiccup,
/// a TCP retransmission), short enough that one stuck subscriber costs its publishers at most
/// this once. Never longer than the `write_deadline`, which cuts such a receiver off anyway.
pub const STOPPED_RECEIVER_AFTER: Duration = Duration::from_secs(1);

/// Milliseconds on a monotonic clock shared by all connections (progress stamps).
fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    // Never 0, so 0 can mean "no stamp yet".
    start.elapsed().as_millis() as u64 + 1
}

/// Why a connection ended, as `/connz?state=closed` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    AuthenticationTimeout,
    AuthenticationViolation,
    SlowConsumerPendingBytes,
    SlowConsumerWriteDeadline,
    WriteError,
    ReadError,
    ParseError,
    StaleConnection,
    ProtocolViolation,
    BadClientProtocolVersion,
    MaxConnectionsExceeded,
    MaxAccountConnectionsExceeded,
    MaxPayloadExceeded,
    MaxControlLineExceeded,
    AuthenticationExpired,
    ServerShutdown,
    LameDuckMode,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::AuthenticationTimeout => "Authentication Timeout",
            CloseReason::AuthenticationViolation => "Authentication Failure",
            CloseReason::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            CloseReason::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            CloseReason::WriteError => "Write Error",
            CloseReason::ReadError => "Read Error",
            CloseReason::ParseError => "Parse Error",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::BadClientProtocolVersion => "Bad Client Protocol Version",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::MaxAccountConnectionsExceeded => "Maximum Account Connections Exceeded",
            CloseReason::MaxPayloadExceeded => "Maximum Message Payload Exceeded",
            CloseReason::MaxControlLineExceeded => "Maximum Control Line Exceeded",
            CloseReason::AuthenticationExpired => "Authentication Expired",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::LameDuckMode => "Lame Duck Mode",
        }
    }

    /// Whether what is already queued for the client should still be written before closing
    /// (an `-ERR` explaining the close, for instance). A slow consumer gets nothing more.
    fn flush_before_close(self) -> bool {
        !matches!(
            self,
            CloseReason::SlowConsumerPendingBytes
                | CloseReason::SlowConsumerWriteDeadline
                | CloseReason::WriteError
        )
    }
}

/// A subscription, shared between its connection and the account's sublist.
pub struct Subscription {
    pub client: Arc<ClientShared>,
    pub sid: Box<[u8]>,
    pub subject: Box<[u8]>,
    pub queue: Option<Box<[u8]>>,
    /// Auto-unsubscribe after this many deliveries; 0 = never.
    pub(crate) max: AtomicU64,
    pub(crate) delivered: AtomicU64,
    /// Some subscribe-deny pattern overlaps this subscription: check each delivery.
    pub(crate) deny_filtered: AtomicBool,
    /// A server subsystem (JetStream) instead of a connection receives the messages.
    pub(crate) internal: Option<Arc<dyn InternalHandler>>,
}

impl Subscription {
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// The auto-unsubscribe limit (`UNSUB sid max`); 0 when there is none.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }
}

/// Sublist item: identity is the allocation, not the contents.
#[derive(Clone)]
pub struct SubRef(pub Arc<Subscription>);

impl PartialEq for SubRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for SubRef {
    type Target = Subscription;

    fn deref(&self) -> &Subscription {
        &self.0
    }
}

/// Descriptive data about a connection, for monitoring.
#[derive(Debug, Clone, Default)]
pub struct ConnMeta {
    pub name: String,
    pub lang: String,
    pub version: String,
    pub user: Option<String>,
    pub account: String,
    pub tls: bool,
    /// Negotiated TLS version as nats-server names it (`"1.3"`); empty without TLS.
    pub tls_version: String,
    /// Negotiated cipher suite as Go names it (`"TLS_AES_128_GCM_SHA256"`); empty without TLS.
    pub tls_cipher: String,
}

/// What a buffered delivery did to the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// The buffer was empty: the receiver's writer must be woken.
    NeedsFlush,
    /// Already pending data: a wake-up is on its way.
    Pending,
    /// Queued, and the receiver is now behind (pending bytes at or above its stall mark): a
    /// publisher that holds back should wait for it before publishing more.
    Stalled,
    /// The receiver is closing (or just became a slow consumer), or it is behind and the
    /// publisher drops rather than waits: nothing queued.
    Dropped,
}

/// What a publisher does about a receiver that is behind (pending bytes at or above three
/// quarters of its `max_pending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Queue anyway; the receiver is cut off once past `max_pending`. The server's own
    /// publishers (JetStream, the system account), which must never wait for a client.
    #[default]
    Queue,
    /// Queue, and wait at the end of the read batch until the receiver has drained: client
    /// publishers, as nats-server stalls fast producers.
    HoldPublisher,
    /// Do not queue the message for that receiver (`no_fast_producer_stall: true`, as in
    /// nats-server 2.11+).
    DropMessage,
}

/// How a wait for a receiver that was behind ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Below its stall mark again, or closed.
    Drained,
    /// Its socket has taken nothing for a while: waiting longer would hold the publisher for
    /// a reader that is not reading.
    Stopped,
}

struct Outbound {
    buf: BytesMut,
    /// Bytes the writer took out of `buf` and has not written yet: pending too.
    in_flight: usize,
    /// A publisher may be waiting for this receiver to drain below its stall mark.
    stall_gate: bool,
    /// When the current stall began (monotonic ms), so a receiver that was idle for long is
    /// not taken as stopped the moment it falls behind.
    stall_since_ms: u64,
    out_msgs: u64,
    out_bytes: u64,
}

impl Outbound {
    fn pending(&self) -> usize {
        self.buf.len() + self.in_flight
    }
}

/// The half of a connection that other tasks touch: its outbound buffer, its subscriptions,
/// its counters. The reader-only state lives in [`Connection`].
pub struct ClientShared {
    pub cid: ClientId,
    pub addr: SocketAddr,
    pub start: SystemTime,
    out: Mutex<Outbound>,
    writer_wake: Notify,
    reader_wake: Notify,
    closing: AtomicBool,
    close_reason: Mutex<Option<CloseReason>>,
    max_pending: usize,
    /// Pending bytes at which client publishers are held back: three quarters of
    /// `max_pending`, nats-server's mark.
    stall_threshold: usize,
    /// Woken when the receiver drains below `stall_threshold` or closes.
    drained: Notify,
    /// Monotonic ms of the last time the socket accepted bytes or the writer took new work.
    progress_ms: AtomicU64,
    /// Times a publisher waited for this receiver (`/connz` `stalls`).
    pub stalls: AtomicU64,
    wants_headers: AtomicBool,
    echo: AtomicBool,
    pub subs: Mutex<FxHashMap<Box<[u8]>, SubRef>>,
    pub meta: Mutex<ConnMeta>,
    pub permissions: ArcSwapOption<ClientPermissions>,
    /// Replies this client may publish to under `allow_responses`: reply → (remaining, expiry).
    responses: Mutex<HashMap<Box<[u8]>, ResponseAllowance>>,
    /// Written only by the connection's reader, once per read batch.
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    /// Unix milliseconds of the last read batch or flush; 0 until the first one.
    pub last_activity_ms: AtomicU64,
    pub rtt_us: AtomicU64,
    pub pings_out: AtomicU32,
    account: ArcSwapOption<Account>,
    /// Bumped when a reload changes this client's permissions; the reader then drops its caches.
    permissions_generation: AtomicU64,
    /// The subscriptions held when the connection closed, for `/connz?state=closed`.
    closed_subs: Mutex<Vec<crate::server::ClosedSub>>,
    /// Someone (the writer task, or the reader writing its own replies) is writing to the
    /// socket; whoever holds it writes the outbound buffer in order.
    writing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data inconsistent in a way
    // that matters more than losing the connection, so keep serving.
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl ClientShared {
    pub fn new(cid: ClientId, addr: SocketAddr, max_pending: usize) -> Arc<ClientShared> {
        Arc::new(ClientShared {
            cid,
            addr,
            start: SystemTime::now(),
            out: Mutex::new(Outbound {
                buf: BytesMut::new(),
                in_flight: 0,
                stall_gate: false,
                stall_since_ms: 0,
                out_msgs: 0,
                out_bytes: 0,
            }),
            writer_wake: Notify::new(),
            reader_wake: Notify::new(),
            closing: AtomicBool::new(false),
            close_reason: Mutex::new(None),
            max_pending,
            stall_threshold: max_pending / 4 * 3,
            drained: Notify::new(),
            progress_ms: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            wants_headers: AtomicBool::new(false),
            echo: AtomicBool::new(true),
            subs: Mutex::new(FxHashMap::default()),
            meta: Mutex::new(ConnMeta::default()),
            permissions: ArcSwapOption::empty(),
            responses: Mutex::new(HashMap::new()),
            in_msgs: AtomicU64::new(0),
            in_bytes: AtomicU64::new(0),
            last_activity_ms: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
            pings_out: AtomicU32::new(0),
            account: ArcSwapOption::empty(),
            permissions_generation: AtomicU64::new(0),
            closed_subs: Mutex::new(Vec::new()),
            writing: AtomicBool::new(false),
        })
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        *lock(&self.close_reason)
    }

    pub fn account(&self) -> Option<Arc<Account>> {
        self.account.load_full()
    }

    /// (out_msgs, out_bytes, pending bytes)
    pub fn out_stats(&self) -> (u64, u64, usize) {
        let out = lock(&self.out);
        (out.out_msgs, out.out_bytes, out.pending())
    }

    pub fn num_subs(&self) -> usize {
        lock(&self.subs).len()
    }

    /// When the connection last read or flushed anything (its start before that).
    pub fn last_activity(&self) -> SystemTime {
        match self.last_activity_ms.load(Ordering::Relaxed) {
            0 => self.start,
            ms => SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
        }
    }

    /// Round-trip time of the last answered server PING; zero before the first.
    pub fn rtt(&self) -> Duration {
        Duration::from_micros(self.rtt_us.load(Ordering::Relaxed))
    }

    /// The subscriptions this connection held when it closed (empty while open).
    pub fn take_closed_subs(&self) -> Vec<crate::server::ClosedSub> {
        std::mem::take(&mut *lock(&self.closed_subs))
    }

    /// Record now as the last activity; called once per read batch or flush, never per message.
    fn touch(&self) {
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// Start closing the connection: the writer flushes what is queued (when `reason` allows)
    /// and shuts the socket; the reader stops. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        {
            let mut r = lock(&self.close_reason);
            if r.is_some() {
                return;
            }
            *r = Some(reason);
        }
        if !reason.flush_before_close() {
            lock(&self.out).buf.clear();
        }
        self.closing.store(true, Ordering::Release);
        self.writer_wake.notify_one();
        self.reader_wake.notify_one();
        // Publishers waiting for this receiver to drain stop waiting.
        self.drained.notify_waiters();
    }

    /// The writer took `chunk` bytes out of the buffer to write them (or found it empty).
    fn took_for_writing(&self, out: &mut Outbound, chunk: usize) -> bool {
        out.in_flight = chunk;
        if chunk > 0 {
            self.progress_ms.store(monotonic_ms(), Ordering::Relaxed);
        }
        self.gate_opens(out)
    }

    /// The socket accepted `n` bytes of the chunk in flight.
    fn wrote(&self, n: usize) {
        self.progress_ms.store(monotonic_ms(), Ordering::Relaxed);
        let opened = {
            let mut out = lock(&self.out);
            out.in_flight = out.in_flight.saturating_sub(n);
            self.gate_opens(&mut out)
        };
        if opened {
            self.drained.notify_waiters();
        }
    }

    /// Close the stall gate once the receiver is below its mark; true if waiters must be woken.
    fn gate_opens(&self, out: &mut Outbound) -> bool {
        if out.stall_gate && out.pending() < self.stall_threshold {
            out.stall_gate = false;
            return true;
        }
        false
    }

    /// Wait until this receiver has drained below its stall mark, has closed, or has stopped
    /// draining: its socket took nothing for `stopped_after` (counted from the later of its
    /// last progress and the start of the stall). Never takes more than one lock per wake-up.
    pub async fn wait_for_room(&self, stopped_after: Duration) -> Room {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let since_progress = {
                let out = lock(&self.out);
                if out.pending() < self.stall_threshold || self.is_closing() {
                    return Room::Drained;
                }
                let last = self
                    .progress_ms
                    .load(Ordering::Relaxed)
                    .max(out.stall_since_ms);
                Duration::from_millis(monotonic_ms().saturating_sub(last))
            };
            if since_progress >= stopped_after {
                return Room::Stopped;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(stopped_after - since_progress) => {}
            }
        }
    }

    /// Wake the writer after queueing data from outside a read batch.
    pub fn flush_soon(&self) {
        self.writer_wake.notify_one();
    }

    /// Queue raw protocol bytes (INFO, PONG, +OK, -ERR) for this client.
    pub fn queue_proto(&self, bytes: &[u8]) -> Queued {
        self.queue_with(bytes.len(), None, Backpressure::Queue, |buf| {
            buf.extend_from_slice(bytes)
        })
    }

    /// Append one frame of about `size` bytes; `msg_bytes` counts it as a delivered message.
    fn queue_with(
        &self,
        size: usize,
        msg_bytes: Option<usize>,
        backpressure: Backpressure,
        write: impl FnOnce(&mut BytesMut),
    ) -> Queued {
        if self.is_closing() {
            return Queued::Dropped;
        }
        let mut out = lock(&self.out);
        let pending = out.pending();
        if pending + size > self.max_pending && pending > 0 {
            drop(out);
            tracing::info!(
                "{} - cid:{} - Slow Consumer Detected: MaxPending of {} Exceeded",
                self.addr,
                self.cid,
                self.max_pending
            );
            self.close(CloseReason::SlowConsumerPendingBytes);
            return Queued::Dropped;
        }
        if pending >= self.stall_threshold && backpressure == Backpressure::DropMessage {
            return Queued::Dropped;
        }
        let was_empty = out.buf.is_empty();
        if out.buf.capacity() - out.buf.len() < size {
            let grow = size.max(out.buf.len()).max(MIN_READ_BUFFER);
            out.buf.reserve(grow);
        }
        write(&mut out.buf);
        if let Some(bytes) = msg_bytes {
            out.out_msgs += 1;
            out.out_bytes += bytes as u64;
        }
        if backpressure == Backpressure::HoldPublisher && out.pending() >= self.stall_threshold {
            if !out.stall_gate {
                out.stall_gate = true;
                out.stall_since_ms = monotonic_ms();
            }
            return Queued::Stalled;
        }
        if was_empty {
            Queued::NeedsFlush
        } else {
            Queued::Pending
        }
    }

    /// Queue one message for subscription `sid`. Headers are dropped for a client that did not
    /// ask for them, as nats-server does.
    pub fn queue_msg(
        &self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
        backpressure: Backpressure,
    ) -> Queued {
        let headers = headers.filter(|_| self.wants_headers.load(Ordering::Relaxed));
        let frame_len = 32
            + subject.len()
            + sid.len()
            + reply.map_or(0, <[u8]>::len)
            + headers.map_or(0, <[u8]>::len)
            + payload.len();
        let msg_bytes = headers.map_or(0, <[u8]>::len) + payload.len();
        self.queue_with(
            frame_len,
            Some(msg_bytes),
            backpressure,
            |buf| match headers {
                Some(h) => encode::hmsg(buf, subject, sid, reply, h, payload),
                None => encode::msg(buf, subject, sid, reply, payload),
            },
        )
    }

    /// Drop `sub` from this connection's sid map (if it is still the one under its sid).
    pub(crate) fn forget_sub(&self, sub: &SubRef) {
        let mut subs = lock(&self.subs);
        if subs.get(&sub.sid).is_some_and(|s| s == sub) {
            subs.remove(&sub.sid);
        }
    }

    pub(crate) fn record_response_permission(&self, reply: &[u8]) {
        let Some(perms) = self.permissions.load_full() else {
            return;
        };
        let Some(rp) = perms.allow_responses else {
            return;
        };
        let mut map = lock(&self.responses);
        map.insert(reply.into(), (rp.max.max(1), Instant::now() + rp.expires));
    }

    /// Consume one allowed response to `subject` if there is one.
    fn take_response_permission(&self, subject: &[u8]) -> bool {
        let mut map = lock(&self.responses);
        let now = Instant::now();
        map.retain(|_, (left, expires)| *left > 0 && *expires > now);
        match map.get_mut(subject) {
            Some((left, _)) => {
                *left -= 1;
                true
            }
            None => false,
        }
    }
}

/// How many more replies may go to one reply subject, and until when.
type ResponseAllowance = (u32, Instant);

/// CONNECT options; missing fields take nats-server's defaults (verbose and pedantic on).
#[derive(Debug, Deserialize)]
#[serde(default)]
struct ConnectOptions {
    verbose: bool,
    pedantic: bool,
    echo: bool,
    headers: bool,
    no_responders: bool,
    protocol: i64,
    name: Option<String>,
    lang: Option<String>,
    version: Option<String>,
    user: Option<String>,
    pass: Option<String>,
    auth_token: Option<String>,
    account: Option<serde_json::Value>,
    new_account: Option<serde_json::Value>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            protocol: 0,
            name: None,
            lang: None,
            version: None,
            user: None,
            pass: None,
            auth_token: None,
            account: None,
            new_account: None,
        }
    }
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

/// Publish-permission decisions of one connection. A publisher usually repeats one subject,
/// so the last decision is checked first (a byte comparison), then a bounded map.
#[derive(Default)]
struct PublishPermissionCache {
    /// The last subject checked (its buffer is reused, so no allocation per change).
    last: Vec<u8>,
    last_allowed: Option<bool>,
    seen: FxHashMap<Box<[u8]>, bool>,
}

impl PublishPermissionCache {
    fn check(&mut self, subject: &[u8], decide: impl FnOnce(&[u8]) -> bool) -> bool {
        if let Some(allowed) = self.last_allowed {
            if self.last == subject {
                return allowed;
            }
        }
        let allowed = match self.seen.get(subject) {
            Some(&allowed) => allowed,
            None => {
                let allowed = decide(subject);
                if self.seen.len() >= PERM_CACHE_SIZE {
                    self.seen.clear();
                }
                self.seen.insert(subject.into(), allowed);
                allowed
            }
        };
        self.last.clear();
        self.last.extend_from_slice(subject);
        self.last_allowed = Some(allowed);
        allowed
    }

    fn clear(&mut self) {
        self.last_allowed = None;
        self.seen.clear();
    }
}

/// Reader-side state of one connection.
struct Connection {
    server: Arc<Server>,
    shared: Arc<ClientShared>,
    account: Arc<Account>,
    permissions: Option<Arc<ClientPermissions>>,
    /// CONNECT seen (or not needed).
    connected: bool,
    auth_required: bool,
    verbose: bool,
    pedantic: bool,
    echo: bool,
    headers: bool,
    no_responders: bool,
    protocol: i64,
    sent_second_info: bool,
    /// Per-connection cache of sublist matches, valid for one sublist generation.
    l1: FxHashMap<Box<[u8]>, Arc<SublistResult<SubRef>>>,
    l1_genid: u64,
    pub_perm_cache: PublishPermissionCache,
    permissions_generation: u64,
    /// Receivers whose writers must be woken at the end of this read batch.
    pending_flush: FlushSet,
    /// [`STOPPED_RECEIVER_AFTER`], or the write deadline when that is shorter.
    stopped_receiver_after: Duration,
    in_msgs: u64,
    in_bytes: u64,
    last_ping_sent: Option<Instant>,
    last_in: Instant,
    /// The shared TCP write half, for writing this connection's own replies directly.
    direct: Option<Arc<OwnedWriteHalf>>,
    direct_buf: BytesMut,
}

/// Result of handling one op: keep going, or close with a reason (after queueing any -ERR).
type OpResult = Result<(), CloseReason>;

/// The socket's write side. A plain TCP socket is shared, so the reader can write its own
/// connection's replies (PONG, +OK, PubAcks, requests answered in the same batch) right at the
/// end of a read batch instead of waking the writer task: one thread hop less on every round
/// trip. A TLS stream is written by the writer task only.
pub enum Outlet {
    Tcp(Arc<OwnedWriteHalf>),
    Stream(Box<dyn AsyncWrite + Unpin + Send>),
}

/// Serve one accepted connection until it closes.
pub async fn serve<R>(server: Arc<Server>, shared: Arc<ClientShared>, mut reader: R, outlet: Outlet)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let opts = server.options();
    let direct = match &outlet {
        Outlet::Tcp(tcp) => Some(tcp.clone()),
        Outlet::Stream(_) => None,
    };
    let writer_task = tokio::spawn(write_loop(shared.clone(), outlet, opts.write_deadline));
    let auth = server.authenticator();
    let global = server.global_account();
    let mut conn = Connection {
        server: server.clone(),
        shared: shared.clone(),
        account: global,
        permissions: None,
        connected: !auth.required(),
        auth_required: auth.required(),
        verbose: true,
        pedantic: true,
        echo: true,
        headers: false,
        no_responders: false,
        protocol: 0,
        sent_second_info: false,
        l1: FxHashMap::default(),
        l1_genid: u64::MAX,
        pub_perm_cache: PublishPermissionCache::default(),
        permissions_generation: 0,
        pending_flush: FlushSet::default(),
        stopped_receiver_after: STOPPED_RECEIVER_AFTER,
        in_msgs: 0,
        in_bytes: 0,
        last_ping_sent: None,
        last_in: Instant::now(),
        direct,
        direct_buf: BytesMut::new(),
    };
    drop(auth);
    if !conn.auth_required {
        // Without authentication a client may publish before (or without) CONNECT.
        conn.bind_account(conn.account.clone(), None);
    }
    let reason = conn.read_loop(&mut reader).await;
    shared.close(reason);
    conn.cleanup();
    drop(reader);
    let _ = writer_task.await;
    server.unregister(&shared, reason);
}

impl Connection {
    async fn read_loop<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> CloseReason {
        let mut buf = BytesMut::with_capacity(MIN_READ_BUFFER);
        // How much one read asks for: doubled while reads fill it, halved while they use less
        // than half (as nats-server sizes its read buffer), so busy connections read in large
        // chunks and idle ones stay small.
        let mut read_size = MIN_READ_BUFFER;
        let mut need = 0usize;
        let auth_deadline = tokio::time::Instant::now() + self.server.options().auth.timeout;
        let mut next_ping = tokio::time::Instant::now() + FIRST_PING_INTERVAL;
        // One timer for the connection's life, moved only when its deadline changes: a fresh
        // `sleep_until` per read would register and cancel a timer entry on every read.
        let timer = tokio::time::sleep_until(auth_deadline);
        tokio::pin!(timer);
        loop {
            if self.shared.is_closing() {
                return self
                    .shared
                    .close_reason()
                    .unwrap_or(CloseReason::ClientClosed);
            }
            let want = need.saturating_sub(buf.len()).max(read_size);
            if buf.capacity() - buf.len() < want {
                buf.reserve(want);
            }
            let spare = buf.capacity() - buf.len();
            let deadline = if self.connected {
                next_ping
            } else {
                auth_deadline
            };
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                _ = self.shared.reader_wake.notified() => continue,
                read = reader.read_buf(&mut buf) => {
                    match read {
                        Ok(0) => return CloseReason::ClientClosed,
                        Ok(n) => {
                            if n >= spare.min(read_size) && read_size < MAX_READ_BUFFER {
                                read_size *= 2;
                            } else if n < read_size / 2 && read_size > MIN_READ_BUFFER {
                                read_size /= 2;
                            }
                            self.last_in = Instant::now();
                            match self.process(&mut buf).await {
                                Ok(more) => need = more,
                                Err(reason) => {
                                    self.flush_batch();
                                    return reason;
                                }
                            }
                            self.flush_batch();
                            self.hold_back().await;
                            // Give memory back after a burst or a large payload.
                            if buf.is_empty() && buf.capacity() > read_size * 4 {
                                buf = BytesMut::with_capacity(read_size);
                            }
                        }
                        Err(_) => return CloseReason::ReadError,
                    }
                }
                _ = &mut timer => {
                    if !self.connected {
                        self.send_err("Authentication Timeout");
                        return CloseReason::AuthenticationTimeout;
                    }
                    let opts = self.server.options();
                    if let Some(reason) = self.ping_tick(opts.ping_interval, opts.ping_max) {
                        return reason;
                    }
                    next_ping = tokio::time::Instant::now() + opts.ping_interval;
                }
            }
        }
    }

    /// Server-side keepalive: one PING per interval unless the client was heard from recently;
    /// too many unanswered PINGs mean a stale connection.
    fn ping_tick(&mut self, interval: Duration, ping_max: u32) -> Option<CloseReason> {
        let outstanding = self.shared.pings_out.load(Ordering::Relaxed);
        if outstanding + 1 > ping_max {
            self.send_err("Stale Connection");
            self.server
                .stats
                .stale_connections
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                "{} - cid:{} - Stale Client Connection - Closing",
                self.shared.addr,
                self.shared.cid
            );
            return Some(CloseReason::StaleConnection);
        }
        if outstanding == 0 && self.last_in.elapsed() < interval && self.last_ping_sent.is_some() {
            return None;
        }
        self.shared.pings_out.fetch_add(1, Ordering::Relaxed);
        self.last_ping_sent = Some(Instant::now());
        if self.shared.queue_proto(encode::PING) == Queued::NeedsFlush {
            self.shared.flush_soon();
        }
        None
    }

    /// Parse and handle every complete op in `buf`; returns how many bytes the next op needs.
    async fn process(&mut self, buf: &mut BytesMut) -> Result<usize, CloseReason> {
        let opts = self.server.options();
        let limits = ParseLimits {
            max_control_line: opts.max_control_line,
            max_payload: opts.max_payload,
        };
        self.pending_flush
            .set_backpressure(if opts.no_fast_producer_stall {
                Backpressure::DropMessage
            } else {
                Backpressure::HoldPublisher
            });
        self.stopped_receiver_after = STOPPED_RECEIVER_AFTER.min(opts.write_deadline);
        drop(opts);
        let generation = self.shared.permissions_generation.load(Ordering::Acquire);
        if generation != self.permissions_generation {
            self.permissions_generation = generation;
            self.permissions = self.shared.permissions.load_full();
            self.pub_perm_cache.clear();
        }
        let mut offset = 0;
        let result = loop {
            match parser::parse(&buf[offset..], &limits) {
                Ok(Parsed::Op { op, consumed }) => {
                    offset += consumed;
                    let handled = match op {
                        ClientOp::Connect(json) => {
                            let json = json.to_vec();
                            self.process_connect(&json).await
                        }
                        op => self.handle(op),
                    };
                    if let Err(reason) = handled {
                        break Err(reason);
                    }
                }
                Ok(Parsed::NeedMore { at_least }) => break Ok(at_least),
                Err(err) => {
                    if let Some(text) = err.client_error() {
                        self.send_err(text);
                    }
                    break Err(match err {
                        ProtoError::MaxPayload => CloseReason::MaxPayloadExceeded,
                        ProtoError::MaxControlLine => CloseReason::MaxControlLineExceeded,
                        ProtoError::ClientErr => CloseReason::ClientClosed,
                        ProtoError::UnknownOp | ProtoError::BadArgs => CloseReason::ParseError,
                    });
                }
            }
        };
        buf.advance(offset);
        self.shared.in_msgs.store(self.in_msgs, Ordering::Relaxed);
        self.shared.in_bytes.store(self.in_bytes, Ordering::Relaxed);
        self.shared.touch();
        result
    }

    fn handle(&mut self, op: ClientOp<'_>) -> OpResult {
        if !self.connected {
            // Under authentication the first op must be CONNECT.
            self.send_err("Authorization Violation");
            return Err(CloseReason::AuthenticationViolation);
        }
        match op {
            ClientOp::Pub {
                subject,
                reply,
                payload,
            } => self.process_pub(subject, reply, None, payload),
            ClientOp::HPub {
                subject,
                reply,
                headers,
                payload,
            } => {
                if !self.headers {
                    tracing::debug!(
                        "{} - cid:{} - message headers not supported",
                        self.shared.addr,
                        self.shared.cid
                    );
                    return Err(CloseReason::ProtocolViolation);
                }
                self.process_pub(subject, reply, Some(headers), payload)
            }
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.process_sub(subject, queue, sid),
            ClientOp::Unsub { sid, max } => self.process_unsub(sid, max),
            ClientOp::Ping => {
                self.queue_self(encode::PONG);
                if self.protocol >= 1 && !self.sent_second_info {
                    self.sent_second_info = true;
                    let info = self.server.info_json(&self.shared, Some(&self.account));
                    let mut frame = BytesMut::new();
                    encode::info(&mut frame, &info);
                    self.queue_self(&frame);
                }
                Ok(())
            }
            ClientOp::Pong => {
                if let Some(sent) = self.last_ping_sent.take() {
                    self.shared
                        .rtt_us
                        .store(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                self.shared.pings_out.store(0, Ordering::Relaxed);
                Ok(())
            }
            ClientOp::Ignored => Ok(()),
            ClientOp::Err => Err(CloseReason::ClientClosed),
            ClientOp::Connect(_) => Ok(()),
        }
    }

    async fn process_connect(&mut self, json: &[u8]) -> OpResult {
        tracing::trace!(
            "{} - cid:{} - <<- [CONNECT {}]",
            self.shared.addr,
            self.shared.cid,
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
        let Ok(opts) = ConnectOptions::deserialize(value) else {
            return Err(CloseReason::ParseError);
        };
        if opts.protocol < 0 || opts.protocol > 1 {
            self.send_err("invalid client protocol");
            return Err(CloseReason::BadClientProtocolVersion);
        }
        if opts.no_responders && !opts.headers {
            self.send_err("no responders requires headers support");
            return Err(CloseReason::ProtocolViolation);
        }
        if opts.account.is_some() || opts.new_account.is_some() {
            self.send_err("Authorization Violation");
            return Err(CloseReason::AuthenticationViolation);
        }
        let creds = Credentials {
            user: opts.user.as_deref(),
            pass: opts.pass.as_deref(),
            token: opts.auth_token.as_deref(),
        };
        // A reload during the (slow) bcrypt check would not see this connection yet, so check
        // again against the configuration that is current once the check is done.
        let identity = loop {
            let auth = self.server.authenticator();
            let identity = auth.authenticate(creds, &self.server.password_cache).await;
            if Arc::ptr_eq(&auth, &self.server.authenticator()) {
                break identity;
            }
        };
        let Some(identity) = identity else {
            if let Some(user) = &opts.user {
                tracing::error!(
                    "{} - cid:{} - authentication error - User {:?}",
                    self.shared.addr,
                    self.shared.cid,
                    user
                );
            } else {
                tracing::error!(
                    "{} - cid:{} - authentication error",
                    self.shared.addr,
                    self.shared.cid
                );
            }
            self.send_err("Authorization Violation");
            return Err(CloseReason::AuthenticationViolation);
        };
        let Some(account) = self.server.account(&identity.account) else {
            self.send_err("Authorization Violation");
            return Err(CloseReason::AuthenticationViolation);
        };
        self.verbose = opts.verbose;
        self.pedantic = opts.pedantic;
        self.echo = opts.echo;
        self.headers = opts.headers && !self.server.options().no_header_support;
        self.no_responders = opts.no_responders;
        self.protocol = opts.protocol;
        self.shared
            .wants_headers
            .store(self.headers, Ordering::Relaxed);
        self.shared.echo.store(opts.echo, Ordering::Relaxed);
        {
            let mut meta = lock(&self.shared.meta);
            meta.name = opts.name.unwrap_or_default();
            meta.lang = opts.lang.unwrap_or_default();
            meta.version = opts.version.unwrap_or_default();
            meta.user = identity.user.as_ref().map(|u| u.name.clone());
            meta.account = account.name.clone();
        }
        self.bind_identity(account, &identity)?;
        self.connected = true;
        if self.verbose {
            self.queue_self(encode::OK);
        }
        Ok(())
    }

    fn bind_identity(&mut self, account: Arc<Account>, identity: &Identity) -> OpResult {
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
        Ok(())
    }

    fn bind_account(&mut self, account: Arc<Account>, permissions: Option<Arc<ClientPermissions>>) {
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
        self.shared.permissions.store(permissions.clone());
        self.permissions = permissions;
        self.l1.clear();
        self.l1_genid = u64::MAX;
        self.pub_perm_cache.clear();
    }

    fn process_pub(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> OpResult {
        self.in_msgs += 1;
        self.in_bytes += (headers.map_or(0, <[u8]>::len) + payload.len()) as u64;
        // Same order as nats-server: the pedantic check and +OK answer the control line,
        // routing (and its permission errors) follows.
        if self.pedantic && !subject::is_valid_literal_subject(subject) {
            self.send_err("Invalid Publish Subject");
        }
        if self.verbose {
            self.queue_self(encode::OK);
        }
        self.route_pub(subject, reply, headers, payload);
        Ok(())
    }

    fn route_pub(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        if let Some(reply) = reply {
            if reply.starts_with(b"_R_.") {
                let text = format!(
                    "Permissions Violation for Publish with Reply of \"{}\"",
                    String::from_utf8_lossy(reply)
                );
                self.send_err(&text);
                return;
            }
        }
        if self.permissions.is_some() && !self.publish_allowed(subject) {
            tracing::error!(
                "{} - cid:{} - \"{}\" - Publish Violation - Subject \"{}\"",
                self.shared.addr,
                self.shared.cid,
                self.user_label(),
                String::from_utf8_lossy(subject)
            );
            let text = format!(
                "Permissions Violation for Publish to \"{}\"",
                String::from_utf8_lossy(subject)
            );
            self.send_err(&text);
            return;
        }
        let result = self.lookup(subject);
        if result.plain.is_empty() && result.queues.is_empty() {
            if let Some(reply) = reply {
                if self.no_responders {
                    self.send_no_responders(subject, reply);
                }
            }
            return;
        }
        let skip = (!self.echo).then_some(self.shared.cid);
        route::deliver_all(
            &result,
            skip,
            subject,
            reply,
            headers,
            payload,
            &mut self.pending_flush,
        );
    }

    fn send_no_responders(&mut self, subject: &[u8], reply: &[u8]) {
        let result = self.account.sublist.match_subject(reply);
        let own = result
            .plain
            .iter()
            .chain(result.queues.iter().flat_map(|g| g.members.iter()));
        let Some(sub) = own
            .into_iter()
            .find(|s| s.client.cid == self.shared.cid)
            .cloned()
        else {
            return;
        };
        let mut headers = Vec::with_capacity(32 + subject.len());
        headers.extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
        headers.extend_from_slice(subject);
        headers.extend_from_slice(b"\r\n\r\n");
        if self.shared.queue_msg(
            reply,
            &sub.sid,
            None,
            Some(&headers),
            b"",
            Backpressure::Queue,
        ) == Queued::NeedsFlush
        {
            self.pending_flush.push(&self.shared);
        }
    }

    fn lookup(&mut self, subject: &[u8]) -> Arc<SublistResult<SubRef>> {
        let genid = self.account.sublist.genid();
        if genid != self.l1_genid {
            self.l1.clear();
            self.l1_genid = genid;
        } else if let Some(hit) = self.l1.get(subject) {
            return hit.clone();
        }
        let result = self.account.sublist.match_subject(subject);
        if self.l1.len() >= L1_CACHE_SIZE {
            self.l1.clear();
        }
        self.l1.insert(subject.into(), result.clone());
        result
    }

    fn publish_allowed(&mut self, subject: &[u8]) -> bool {
        let Some(perms) = &self.permissions else {
            return true;
        };
        let allowed = self.pub_perm_cache.check(subject, |s| perms.can_publish(s));
        allowed
            || (perms.allow_responses.is_some() && self.shared.take_response_permission(subject))
    }

    fn process_sub(&mut self, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) -> OpResult {
        if !subject::is_valid_subject(subject) {
            self.send_err("Invalid Subject");
            return Ok(());
        }
        let mut filtered = false;
        if let Some(perms) = &self.permissions {
            match perms.check_subscribe(subject, queue) {
                SubscribeCheck::Denied => {
                    let subj = String::from_utf8_lossy(subject);
                    let text = match queue {
                        Some(q) => format!(
                            "Permissions Violation for Subscription to \"{}\" using queue \"{}\"",
                            subj,
                            String::from_utf8_lossy(q)
                        ),
                        None => format!("Permissions Violation for Subscription to \"{subj}\""),
                    };
                    tracing::error!(
                        "{} - cid:{} - \"{}\" - Subscription Violation - Subject \"{}\"",
                        self.shared.addr,
                        self.shared.cid,
                        self.user_label(),
                        subj
                    );
                    self.send_err(&text);
                    return Ok(());
                }
                SubscribeCheck::Allowed { filtered: f } => filtered = f,
            }
        }
        {
            let subs = lock(&self.shared.subs);
            if subs.contains_key(sid) {
                // A duplicate sid is ignored; the first subscription stays.
                drop(subs);
                if self.verbose {
                    self.queue_self(encode::OK);
                }
                return Ok(());
            }
            let opts = self.server.options();
            let limits = self.account.settings().limits;
            let over_server = opts.max_subs > 0 && subs.len() >= opts.max_subs;
            // Like nats-server, an account's max_subscriptions caps each of its connections.
            let over_account =
                limits.max_subscriptions >= 0 && subs.len() as i64 >= limits.max_subscriptions;
            if over_server || over_account {
                drop(subs);
                self.send_err("maximum subscriptions exceeded");
                return Ok(());
            }
        }
        let sub = SubRef(Arc::new(Subscription {
            client: self.shared.clone(),
            sid: sid.into(),
            subject: subject.into(),
            queue: queue.map(Into::into),
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            deny_filtered: AtomicBool::new(filtered),
            internal: None,
        }));
        if self
            .account
            .sublist
            .insert(subject, queue, sub.clone())
            .is_err()
        {
            self.send_err("Invalid Subject");
            return Ok(());
        }
        lock(&self.shared.subs).insert(sid.into(), sub);
        if self.verbose {
            self.queue_self(encode::OK);
        }
        Ok(())
    }

    fn process_unsub(&mut self, sid: &[u8], max: Option<u64>) -> OpResult {
        let sub = lock(&self.shared.subs).get(sid).cloned();
        if let Some(sub) = sub {
            match max {
                Some(max) if max > sub.delivered() => sub.max.store(max, Ordering::Relaxed),
                _ => route::remove_subscription(&sub),
            }
        }
        if self.verbose {
            self.queue_self(encode::OK);
        }
        Ok(())
    }

    fn remove_all_subs(&self, account: &Account) -> Vec<SubRef> {
        let subs: Vec<SubRef> = lock(&self.shared.subs).drain().map(|(_, s)| s).collect();
        for sub in &subs {
            account
                .sublist
                .remove(&sub.subject, sub.queue.as_deref(), sub);
        }
        subs
    }

    fn cleanup(&mut self) {
        if let Some(account) = self.shared.account() {
            let subs = self.remove_all_subs(&account);
            if self.server.options().max_closed_clients > 0 {
                *lock(&self.shared.closed_subs) =
                    subs.iter().map(crate::server::ClosedSub::of).collect();
            }
            account.num_connections.fetch_sub(1, Ordering::Relaxed);
            let (out_msgs, out_bytes, _) = self.shared.out_stats();
            account
                .stats
                .closed_in_msgs
                .fetch_add(self.in_msgs, Ordering::Relaxed);
            account
                .stats
                .closed_in_bytes
                .fetch_add(self.in_bytes, Ordering::Relaxed);
            account
                .stats
                .closed_out_msgs
                .fetch_add(out_msgs, Ordering::Relaxed);
            account
                .stats
                .closed_out_bytes
                .fetch_add(out_bytes, Ordering::Relaxed);
        }
    }

    fn user_label(&self) -> String {
        let user = lock(&self.shared.meta).user.clone().unwrap_or_default();
        format!("{}/user:{}", self.account.name, user)
    }

    fn queue_self(&mut self, bytes: &[u8]) {
        if self.shared.queue_proto(bytes) == Queued::NeedsFlush {
            self.pending_flush.push(&self.shared);
        }
    }

    fn send_err(&mut self, text: &str) {
        let mut frame = BytesMut::with_capacity(text.len() + 10);
        encode::err(&mut frame, text);
        self.queue_self(&frame);
    }

    /// Complete deferred work (streams write and ack what this batch stored), then wake
    /// every receiver this batch queued data for, each once.
    fn flush_batch(&mut self) {
        self.pending_flush.complete_deferred();
        if self.direct.is_some() && self.pending_flush.take(&self.shared) && !self.write_direct() {
            self.shared.flush_soon();
        }
        self.pending_flush.flush();
    }

    /// Hold this publisher back (it reads nothing more meanwhile, so TCP slows the client
    /// down) until every receiver its last batch left behind has drained, closed or stopped.
    /// The wait is asynchronous: the runtime's threads keep serving everyone else.
    async fn hold_back(&mut self) {
        let stalled = self.pending_flush.take_stalled();
        for receiver in stalled {
            receiver.stalls.fetch_add(1, Ordering::Relaxed);
            self.server
                .stats
                .stalled_clients
                .fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                biased;
                // Closing this connection (shutdown, reload, lame duck) ends the wait; the
                // read loop then sees why.
                () = self.shared.reader_wake.notified() => return,
                room = receiver.wait_for_room(self.stopped_receiver_after) => {
                    if room == Room::Stopped {
                        tracing::debug!(
                            "{} - cid:{} - Not holding back for cid:{}: it has written nothing for {:?}",
                            self.shared.addr,
                            self.shared.cid,
                            receiver.cid,
                            self.stopped_receiver_after
                        );
                    }
                }
            }
        }
    }

    /// Write this connection's pending bytes from the reader task without blocking; true when
    /// nothing is left for the writer task (which is then not woken).
    fn write_direct(&mut self) -> bool {
        let Some(tcp) = &self.direct else {
            return false;
        };
        let shared = &self.shared;
        if shared
            .writing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        std::mem::swap(&mut lock(&shared.out).buf, &mut self.direct_buf);
        let mut written = 0;
        let mut failed = false;
        while written < self.direct_buf.len() {
            match tcp.try_write(&self.direct_buf[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let (done, opened) = {
            let mut out = lock(&shared.out);
            if written < self.direct_buf.len() && !failed {
                // The socket is full: what is left goes back in front of anything queued
                // meanwhile, and the writer task carries on (with the write deadline).
                let rest = &self.direct_buf[written..];
                if out.buf.is_empty() {
                    out.buf.extend_from_slice(rest);
                } else {
                    let mut joined = BytesMut::with_capacity(rest.len() + out.buf.len());
                    joined.extend_from_slice(rest);
                    joined.extend_from_slice(&out.buf);
                    out.buf = joined;
                }
            }
            shared.writing.store(false, Ordering::Release);
            (out.buf.is_empty(), shared.gate_opens(&mut out))
        };
        if opened {
            shared.drained.notify_waiters();
        }
        self.direct_buf.clear();
        if self.direct_buf.capacity() > MAX_KEPT_WRITE_BUFFER {
            self.direct_buf = BytesMut::new();
        }
        if failed {
            shared.close(CloseReason::WriteError);
            return true;
        }
        if written > 0 {
            shared.progress_ms.store(monotonic_ms(), Ordering::Relaxed);
            shared.touch();
        }
        done
    }
}

/// Flush the outbound buffer whenever woken, in one write per wake-up, until the connection closes.
async fn write_loop(shared: Arc<ClientShared>, mut outlet: Outlet, deadline: Duration) {
    let mut spare = BytesMut::new();
    'outer: loop {
        shared.writer_wake.notified().await;
        if shared
            .writing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // The reader is writing directly; it wakes us again if it leaves anything.
            continue;
        }
        // The flag stays ours until the buffer is found empty, so the bytes in flight are
        // always those of the chunk this loop is writing.
        loop {
            let opened = {
                let mut out = lock(&shared.out);
                std::mem::swap(&mut out.buf, &mut spare);
                shared.took_for_writing(&mut out, spare.len())
            };
            if opened {
                shared.drained.notify_waiters();
            }
            if spare.is_empty() {
                shared.writing.store(false, Ordering::Release);
                if shared.is_closing() {
                    break 'outer;
                }
                break;
            }
            let written = match &mut outlet {
                Outlet::Tcp(tcp) => write_all_tcp(&shared, tcp, &spare, deadline).await,
                Outlet::Stream(stream) => write_all_stream(&shared, stream, &spare, deadline).await,
            };
            match written {
                Ok(()) => shared.touch(),
                Err(reason) => {
                    shared.writing.store(false, Ordering::Release);
                    if reason == CloseReason::SlowConsumerWriteDeadline {
                        tracing::info!(
                            "{} - cid:{} - Slow Consumer Detected: WriteDeadline of {} exceeded with 1 chunks of {} total bytes.",
                            shared.addr,
                            shared.cid,
                            crate::config::duration::go_duration_string(deadline),
                            spare.len()
                        );
                    }
                    shared.close(reason);
                    break 'outer;
                }
            }
            spare.clear();
            if spare.capacity() > MAX_KEPT_WRITE_BUFFER {
                spare = BytesMut::new();
            }
        }
    }
    // Dropping a TCP write half shuts the write direction down; the last owner drops it.
    if let Outlet::Stream(mut stream) = outlet {
        let _ = stream.shutdown().await;
    }
}

/// Write all of `buf` to a shared TCP write half. The write deadline is the time the socket
/// may take no byte at all (a slow reader that keeps reading is not cut off); progress is
/// reported to `shared` whenever the socket fills, so held-back publishers see it.
async fn write_all_tcp(
    shared: &ClientShared,
    tcp: &OwnedWriteHalf,
    buf: &[u8],
    deadline: Duration,
) -> Result<(), CloseReason> {
    let mut written = 0;
    let mut reported = 0;
    while written < buf.len() {
        match tcp.try_write(&buf[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if written > reported {
                    shared.wrote(written - reported);
                    reported = written;
                }
                let probed = wait_writable(tcp, &buf[written..], deadline).await?;
                if probed > 0 {
                    written += probed;
                    shared.wrote(probed);
                    reported = written;
                }
            }
            Err(_) => return Err(CloseReason::WriteError),
        }
    }
    Ok(())
}

/// First and longest pause between probes of a full socket (see [`wait_writable`]).
const PROBE_FIRST: Duration = Duration::from_millis(50);
const PROBE_MAX: Duration = Duration::from_millis(400);

/// Wait until a full socket can take more of `rest`, within `deadline` of no progress.
///
/// The kernel reports a full TCP socket writable again only once a large part of its send
/// buffer is free (half of what is queued), which for a slow reader behind a multi-megabyte
/// buffer can take seconds of steady reading. So while waiting, `rest` is offered to the
/// socket directly every so often (the socket accepts bytes as soon as the reader has freed
/// any): a reader that drains slowly shows progress within a fraction of a second, and only
/// one that reads nothing looks stopped. Returns how many bytes such a probe wrote (0 when
/// the socket became writable first).
async fn wait_writable(
    tcp: &OwnedWriteHalf,
    rest: &[u8],
    deadline: Duration,
) -> Result<usize, CloseReason> {
    let give_up = tokio::time::Instant::now() + deadline;
    let mut pause = PROBE_FIRST;
    loop {
        let next_probe = (tokio::time::Instant::now() + pause).min(give_up);
        match tokio::time::timeout_at(next_probe, tcp.writable()).await {
            Ok(Ok(())) => return Ok(0),
            Ok(Err(_)) => return Err(CloseReason::WriteError),
            Err(_) if tokio::time::Instant::now() >= give_up => {
                return Err(CloseReason::SlowConsumerWriteDeadline)
            }
            Err(_) => {}
        }
        // Written beside tokio's readiness tracking: at worst it is stale, and the next
        // `try_write` finds out. Only this writer writes to the socket meanwhile.
        let fd = std::os::fd::AsRawFd::as_raw_fd(tcp.as_ref());
        let flags =
            nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL;
        match nix::sys::socket::send(fd, rest, flags) {
            Ok(n) if n > 0 => return Ok(n),
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => pause = (pause * 2).min(PROBE_MAX),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Err(CloseReason::WriteError),
        }
    }
}

/// [`write_all_tcp`] for a TLS stream: each write may take up to the deadline.
async fn write_all_stream(
    shared: &ClientShared,
    stream: &mut (dyn AsyncWrite + Unpin + Send),
    buf: &[u8],
    deadline: Duration,
) -> Result<(), CloseReason> {
    let mut written = 0;
    while written < buf.len() {
        match tokio::time::timeout(deadline, stream.write(&buf[written..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(CloseReason::WriteError),
            Ok(Ok(n)) => {
                written += n;
                if written < buf.len() {
                    shared.wrote(n);
                }
            }
            Err(_) => return Err(CloseReason::SlowConsumerWriteDeadline),
        }
    }
    match tokio::time::timeout(deadline, stream.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(CloseReason::WriteError),
        Err(_) => Err(CloseReason::SlowConsumerWriteDeadline),
    }
}

/// A reload changed a live client's permissions: swap them in, and remove (with nats-server's
/// error) every subscription the new permissions no longer allow.
pub(crate) fn apply_new_permissions(
    client: &Arc<ClientShared>,
    account: &Account,
    permissions: Option<Arc<ClientPermissions>>,
) {
    client.permissions.store(permissions.clone());
    client.permissions_generation.fetch_add(1, Ordering::AcqRel);
    let subs: Vec<SubRef> = lock(&client.subs).values().cloned().collect();
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
                lock(&client.subs).remove(&sub.sid);
                let text = format!(
                    "Permissions Violation for Subscription to \"{}\" (sid \"{}\")",
                    String::from_utf8_lossy(&sub.subject),
                    String::from_utf8_lossy(&sub.sid)
                );
                let mut frame = BytesMut::new();
                encode::err(&mut frame, &text);
                needs_flush |= client.queue_proto(&frame) == Queued::NeedsFlush;
            }
        }
    }
    if needs_flush {
        client.flush_soon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_permission_cache_decides_once_per_subject_until_cleared() {
        let mut cache = PublishPermissionCache::default();
        let mut decisions = 0;
        let mut check = |cache: &mut PublishPermissionCache, subject: &[u8]| {
            cache.check(subject, |s| {
                decisions += 1;
                s.starts_with(b"orders.")
            })
        };
        assert!(check(&mut cache, b"orders.new"));
        assert!(!check(&mut cache, b"blog.x"));
        assert!(check(&mut cache, b"orders.new"));
        assert!(!check(&mut cache, b"blog.x"));
        cache.clear();
        assert!(check(&mut cache, b"orders.new"));
        assert_eq!(
            decisions, 3,
            "two subjects decided once each, then once more after clear"
        );
    }

    fn receiver(max_pending: usize) -> Arc<ClientShared> {
        ClientShared::new(1, SocketAddr::from(([127, 0, 0, 1], 1)), max_pending)
    }

    fn queue(client: &ClientShared, len: usize, backpressure: Backpressure) -> Queued {
        client.queue_msg(b"s", b"1", None, None, &vec![b'x'; len], backpressure)
    }

    #[test]
    fn a_receiver_behind_its_mark_stalls_holders_drops_for_droppers_and_queues_for_the_server() {
        let client = receiver(4000);
        assert_eq!(
            queue(&client, 1000, Backpressure::HoldPublisher),
            Queued::NeedsFlush
        );
        assert_eq!(
            queue(&client, 1000, Backpressure::HoldPublisher),
            Queued::Pending
        );
        // Past three quarters of max_pending (3000 bytes with the frame overhead).
        assert_eq!(
            queue(&client, 1000, Backpressure::HoldPublisher),
            Queued::Stalled
        );
        let pending = client.out_stats().2;
        assert!(pending >= 3000, "{pending}");
        assert_eq!(
            queue(&client, 10, Backpressure::DropMessage),
            Queued::Dropped
        );
        assert_eq!(
            client.out_stats().2,
            pending,
            "a dropped message is not queued"
        );
        assert!(!client.is_closing(), "dropping is not a disconnect");
        assert_eq!(queue(&client, 10, Backpressure::Queue), Queued::Pending);
        // Past max_pending: cut off whatever the publisher's policy.
        assert_eq!(queue(&client, 1000, Backpressure::Queue), Queued::Dropped);
        assert_eq!(
            client.close_reason(),
            Some(CloseReason::SlowConsumerPendingBytes)
        );
    }

    #[test]
    fn bytes_in_flight_count_as_pending_until_written() {
        let client = receiver(4000);
        queue(&client, 2000, Backpressure::HoldPublisher);
        let chunk = {
            let mut out = lock(&client.out);
            let chunk = out.buf.split();
            client.took_for_writing(&mut out, chunk.len());
            chunk
        };
        assert_eq!(client.out_stats().2, chunk.len());
        assert_eq!(
            queue(&client, 1000, Backpressure::HoldPublisher),
            Queued::Stalled
        );
        client.wrote(chunk.len());
        assert!(client.out_stats().2 < 1100);
    }

    #[tokio::test]
    async fn a_held_publisher_is_released_when_the_receiver_drains() {
        let client = receiver(4000);
        queue(&client, 3500, Backpressure::HoldPublisher);
        let waiter = tokio::spawn({
            let client = client.clone();
            async move { client.wait_for_room(Duration::from_secs(30)).await }
        });
        // The writer takes the data and the socket accepts it bit by bit.
        let len = {
            let mut out = lock(&client.out);
            let len = out.buf.split().len();
            client.took_for_writing(&mut out, len);
            len
        };
        client.wrote(10);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "still above the mark: keeps waiting");
        client.wrote(len - 10);
        let room = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released without waiting for the stopped-receiver timeout")
            .expect("waiter task");
        assert_eq!(room, Room::Drained);
    }

    #[tokio::test]
    async fn a_receiver_whose_socket_takes_nothing_counts_as_stopped() {
        let client = receiver(4000);
        queue(&client, 3500, Backpressure::HoldPublisher);
        let started = Instant::now();
        let room = client.wait_for_room(Duration::from_millis(200)).await;
        assert_eq!(room, Room::Stopped);
        assert!(started.elapsed() >= Duration::from_millis(150));
        // Later publishers do not wait again while it stays stopped.
        let again = Instant::now();
        assert_eq!(
            client.wait_for_room(Duration::from_millis(200)).await,
            Room::Stopped
        );
        assert!(again.elapsed() < Duration::from_millis(100));
        // Closing releases anyone waiting.
        client.close(CloseReason::SlowConsumerWriteDeadline);
        assert_eq!(
            client.wait_for_room(Duration::from_secs(30)).await,
            Room::Drained
        );
    }
}
