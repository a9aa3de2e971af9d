//! The reader side of a connection: the read loop, op dispatch, PUB/SUB/UNSUB, keepalive,
//! and holding the publisher back while a receiver it fed is behind.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::tcp::OwnedWriteHalf;

use crate::account::Account;
use crate::auth::{ClientPermissions, SubscribeCheck};
use crate::mapping::Mapped;
use crate::outbound::{Backpressure, CloseReason, Queued, Room, STOPPED_RECEIVER_AFTER};
use crate::proto::encode;
use crate::proto::parser::{self, ClientOp, ParseLimits, Parsed, ProtoError};
use crate::route;
use crate::subject;
use crate::sublist::SublistResult;
use crate::subscription::{ClosedSub, FlushSet, SubOwner, SubRef, Subscription};

use super::connect::ProtocolOptions;
use super::{ClientShared, ConnectionHost};

/// Smallest read buffer; idle connections stay this small (memory per idle connection matters).
const MIN_READ_BUFFER: usize = 512;
/// Largest read buffer a busy connection grows to (beyond that only a big payload needs more).
const MAX_READ_BUFFER: usize = 64 * 1024;
/// Entries in the per-connection subject → subscribers cache.
const L1_CACHE_SIZE: usize = 256;
/// Entries in the per-connection publish-permission cache.
const PERM_CACHE_SIZE: usize = 1024;
/// Delay of the first server PING after CONNECT (plus jitter), like nats-server.
const FIRST_PING_INTERVAL: Duration = Duration::from_secs(2);

/// Result of handling one op: keep going, or close with a reason (after queueing any -ERR).
pub(super) type OpResult = Result<(), CloseReason>;

/// Publish-permission decisions of one connection. A publisher usually repeats one subject,
/// so the last decision is checked first (a byte comparison), then a bounded map.
#[derive(Default)]
pub(super) struct PublishPermissionCache {
    /// The last subject checked (its buffer is reused, so no allocation per change).
    last: Vec<u8>,
    last_allowed: Option<bool>,
    seen: FxHashMap<Box<[u8]>, bool>,
}

impl PublishPermissionCache {
    pub(super) fn check(&mut self, subject: &[u8], decide: impl FnOnce(&[u8]) -> bool) -> bool {
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

    pub(super) fn clear(&mut self) {
        self.last_allowed = None;
        self.seen.clear();
    }
}

/// Reader-side state of one connection.
pub(super) struct Connection {
    pub(super) server: Arc<dyn ConnectionHost>,
    pub(super) shared: Arc<ClientShared>,
    pub(super) account: Arc<Account>,
    pub(super) permissions: Option<Arc<ClientPermissions>>,
    /// CONNECT seen (or not needed).
    pub(super) connected: bool,
    pub(super) auth_required: bool,
    /// What CONNECT asked for (nats-server's defaults until then).
    pub(super) opts: ProtocolOptions,
    pub(super) sent_second_info: bool,
    /// Per-connection cache of sublist matches, valid for one sublist generation.
    pub(super) l1: FxHashMap<Box<[u8]>, Arc<SublistResult<SubRef>>>,
    pub(super) l1_genid: u64,
    pub(super) pub_perm_cache: PublishPermissionCache,
    pub(super) permissions_generation: u64,
    /// Receivers whose writers must be woken at the end of this read batch.
    pub(super) pending_flush: FlushSet,
    /// [`STOPPED_RECEIVER_AFTER`], or the write deadline when that is shorter.
    pub(super) stopped_receiver_after: Duration,
    pub(super) in_msgs: u64,
    pub(super) in_bytes: u64,
    pub(super) last_ping_sent: Option<Instant>,
    pub(super) last_in: Instant,
    /// The shared TCP write half, for writing this connection's own replies directly.
    pub(super) direct: Option<Arc<OwnedWriteHalf>>,
    pub(super) direct_buf: BytesMut,
    /// The user's own limits (a user JWT's `subs` and `payload`); `-1`: none.
    pub(super) user_max_subs: i64,
    pub(super) user_max_payload: i64,
}

impl Connection {
    /// A connection that has seen nothing yet; without authentication it is bound to the
    /// global account at once (a client may publish before, or without, CONNECT).
    pub(super) fn new(
        server: Arc<dyn ConnectionHost>,
        shared: Arc<ClientShared>,
        direct: Option<Arc<OwnedWriteHalf>>,
    ) -> Connection {
        let auth = server.authenticator();
        let global = server.global_account();
        let mut pending_flush = FlushSet::default();
        pending_flush.set_publisher(shared.clone());
        let mut conn = Connection {
            server: server.clone(),
            shared,
            account: global,
            permissions: None,
            connected: !auth.required(),
            auth_required: auth.required(),
            opts: ProtocolOptions::default(),
            sent_second_info: false,
            l1: FxHashMap::default(),
            l1_genid: u64::MAX,
            pub_perm_cache: PublishPermissionCache::default(),
            permissions_generation: 0,
            pending_flush,
            stopped_receiver_after: STOPPED_RECEIVER_AFTER,
            in_msgs: 0,
            in_bytes: 0,
            last_ping_sent: None,
            last_in: Instant::now(),
            direct,
            direct_buf: BytesMut::new(),
            user_max_subs: -1,
            user_max_payload: -1,
        };
        if !conn.auth_required {
            conn.bind_account(conn.account.clone(), None);
        }
        conn
    }

    pub(super) async fn read_loop<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> CloseReason {
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
            if self.shared.out.is_closing() {
                return self
                    .shared
                    .out
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
                _ = self.shared.out.reader_wake.notified() => continue,
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
    pub(super) fn ping_tick(&mut self, interval: Duration, ping_max: u32) -> Option<CloseReason> {
        let outstanding = self.shared.pings_out.load(Ordering::Relaxed);
        if outstanding + 1 > ping_max {
            self.send_err("Stale Connection");
            self.server
                .counters()
                .stale_connections
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                "{} - cid:{} - Stale Client Connection - Closing",
                self.shared.out.addr,
                self.shared.out.cid
            );
            return Some(CloseReason::StaleConnection);
        }
        if outstanding == 0 && self.last_in.elapsed() < interval && self.last_ping_sent.is_some() {
            return None;
        }
        self.shared.pings_out.fetch_add(1, Ordering::Relaxed);
        self.last_ping_sent = Some(Instant::now());
        if self.shared.out.queue_proto(encode::PING) == Queued::NeedsFlush {
            self.shared.out.flush_soon();
        }
        None
    }

    /// Parse and handle every complete op in `buf`; returns how many bytes the next op needs.
    pub(super) async fn process(&mut self, buf: &mut BytesMut) -> Result<usize, CloseReason> {
        let opts = self.server.options();
        // The account's and the user's payload limits lower the server's, as on nats-server.
        let account_payload = self.account.settings().limits.max_payload;
        let max_payload = [account_payload, self.user_max_payload]
            .into_iter()
            .filter(|&l| l >= 0)
            .fold(opts.max_payload, |max, l| max.min(l as usize));
        let limits = ParseLimits {
            max_control_line: opts.max_control_line,
            max_payload,
        };
        self.pending_flush
            .set_backpressure(if opts.no_fast_producer_stall {
                Backpressure::DropMessage
            } else {
                Backpressure::HoldPublisher
            });
        self.stopped_receiver_after = STOPPED_RECEIVER_AFTER.min(opts.write_deadline);
        drop(opts);
        let generation = self
            .shared
            .out
            .permissions_generation
            .load(Ordering::Acquire);
        if generation != self.permissions_generation {
            self.permissions_generation = generation;
            self.permissions = self.shared.out.permissions.load_full();
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
        self.shared.out.touch();
        result
    }

    pub(super) fn handle(&mut self, op: ClientOp<'_>) -> OpResult {
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
                if !self.opts.headers {
                    tracing::debug!(
                        "{} - cid:{} - message headers not supported",
                        self.shared.out.addr,
                        self.shared.out.cid
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
                if self.opts.protocol >= 1 && !self.sent_second_info {
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
            ClientOp::Connect(_) => Ok(()),
        }
    }

    pub(super) fn process_pub(
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
        if self.opts.pedantic && !subject::is_valid_literal_subject(subject) {
            self.send_err("Invalid Publish Subject");
        }
        if self.opts.verbose {
            self.queue_self(encode::OK);
        }
        // As nats-server: mappings apply before the publish permission check, which then
        // sees the mapped subject.
        match self.account.map_subject(subject) {
            None => self.route_pub(subject, reply, headers, payload),
            Some(Mapped::To(mapped)) => self.route_pub(mapped.as_bytes(), reply, headers, payload),
            Some(Mapped::Dropped) => {}
        }
        Ok(())
    }

    pub(super) fn route_pub(
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
                self.shared.out.addr,
                self.shared.out.cid,
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
        let delivered = if result.plain.is_empty() && result.queues.is_empty() {
            0
        } else {
            let skip = (!self.opts.echo).then_some(self.shared.out.cid);
            route::deliver_all(
                &result,
                skip,
                subject,
                reply,
                headers,
                payload,
                &mut self.pending_flush,
            )
        };
        // As nats-server: a request nobody took (nobody subscribed, or a service import whose
        // exporter has no responder) gets "no responders".
        if delivered == 0 {
            if let Some(reply) = reply {
                if self.opts.no_responders {
                    self.send_no_responders(subject, reply);
                }
            }
        }
    }

    pub(super) fn send_no_responders(&mut self, subject: &[u8], reply: &[u8]) {
        let result = self.account.sublist.match_subject(reply);
        let own = result
            .plain
            .iter()
            .chain(result.queues.iter().flat_map(|g| g.members.iter()));
        let Some(sub) = own
            .into_iter()
            .find(|s| s.client_id() == Some(self.shared.out.cid))
            .cloned()
        else {
            return;
        };
        let mut headers = Vec::with_capacity(32 + subject.len());
        headers.extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
        headers.extend_from_slice(subject);
        headers.extend_from_slice(b"\r\n\r\n");
        if self.shared.out.queue_msg(
            reply,
            &sub.sid,
            None,
            Some(&headers),
            b"",
            Backpressure::Queue,
        ) == Queued::NeedsFlush
        {
            self.pending_flush.push(&self.shared.out);
        }
    }

    pub(super) fn lookup(&mut self, subject: &[u8]) -> Arc<SublistResult<SubRef>> {
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

    pub(super) fn publish_allowed(&mut self, subject: &[u8]) -> bool {
        let Some(perms) = &self.permissions else {
            return true;
        };
        let allowed = self.pub_perm_cache.check(subject, |s| perms.can_publish(s));
        allowed
            || (perms.allow_responses.is_some()
                && self.shared.out.take_response_permission(subject))
    }

    pub(super) fn process_sub(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        sid: &[u8],
    ) -> OpResult {
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
                        self.shared.out.addr,
                        self.shared.out.cid,
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
            let subs = self.shared.subs.lock();
            if subs.contains_key(sid) {
                // A duplicate sid is ignored; the first subscription stays.
                drop(subs);
                if self.opts.verbose {
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
            let over_user = self.user_max_subs >= 0 && subs.len() as i64 >= self.user_max_subs;
            if over_server || over_account || over_user {
                drop(subs);
                self.send_err("maximum subscriptions exceeded");
                return Ok(());
            }
        }
        let shared: Arc<dyn SubOwner> = self.shared.clone();
        let owner = Arc::downgrade(&shared);
        let sub = SubRef(Arc::new(Subscription::client(
            self.shared.out.clone(),
            owner,
            sid,
            subject,
            queue,
            filtered,
        )));
        if self
            .account
            .sublist
            .insert(subject, queue, sub.clone())
            .is_err()
        {
            self.send_err("Invalid Subject");
            return Ok(());
        }
        self.shared.subs.lock().insert(sid.into(), sub);
        if self.opts.verbose {
            self.queue_self(encode::OK);
        }
        Ok(())
    }

    pub(super) fn process_unsub(&mut self, sid: &[u8], max: Option<u64>) -> OpResult {
        let sub = self.shared.subs.lock().get(sid).cloned();
        if let Some(sub) = sub {
            match max {
                Some(max) if max > sub.delivered() => sub.max.store(max, Ordering::Relaxed),
                _ => route::remove_subscription(&sub),
            }
        }
        if self.opts.verbose {
            self.queue_self(encode::OK);
        }
        Ok(())
    }

    pub(super) fn remove_all_subs(&self, account: &Account) -> Vec<SubRef> {
        let subs: Vec<SubRef> = self.shared.subs.lock().drain().map(|(_, s)| s).collect();
        for sub in &subs {
            account
                .sublist
                .remove(&sub.subject, sub.queue.as_deref(), sub);
        }
        subs
    }

    pub(super) fn cleanup(&mut self) {
        if let Some(account) = self.shared.account() {
            let subs = self.remove_all_subs(&account);
            if self.server.options().max_closed_clients > 0 {
                *self.shared.closed_subs.lock() = subs.iter().map(ClosedSub::of).collect();
            }
            account.num_connections.fetch_sub(1, Ordering::Relaxed);
            let (out_msgs, out_bytes, _) = self.shared.out.out_stats();
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

    pub(super) fn user_label(&self) -> String {
        let user = self.shared.meta.lock().user.clone().unwrap_or_default();
        format!("{}/user:{}", self.account.name, user)
    }

    pub(super) fn queue_self(&mut self, bytes: &[u8]) {
        if self.shared.out.queue_proto(bytes) == Queued::NeedsFlush {
            self.pending_flush.push(&self.shared.out);
        }
    }

    pub(super) fn send_err(&mut self, text: &str) {
        let mut frame = BytesMut::with_capacity(text.len() + 10);
        encode::err(&mut frame, text);
        self.queue_self(&frame);
    }

    /// Complete deferred work (streams write and ack what this batch stored), then wake
    /// every receiver this batch queued data for, each once.
    pub(super) fn flush_batch(&mut self) {
        self.pending_flush.complete_deferred();
        if self.direct.is_some()
            && self.pending_flush.take(&self.shared.out)
            && !self.write_direct()
        {
            self.shared.out.flush_soon();
        }
        self.pending_flush.flush();
    }

    /// Hold this publisher back (it reads nothing more meanwhile, so TCP slows the client
    /// down) until every receiver its last batch left behind has drained, closed or stopped.
    /// The wait is asynchronous: the runtime's threads keep serving everyone else.
    pub(super) async fn hold_back(&mut self) {
        let stalled = self.pending_flush.take_stalled();
        for receiver in stalled {
            receiver.stalls.fetch_add(1, Ordering::Relaxed);
            self.server
                .counters()
                .stalled_clients
                .fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                biased;
                // Closing this connection (shutdown, reload, lame duck) ends the wait; the
                // read loop then sees why.
                () = self.shared.out.reader_wake.notified() => return,
                room = receiver.wait_for_room(self.stopped_receiver_after) => {
                    if room == Room::Stopped {
                        tracing::debug!(
                            "{} - cid:{} - Not holding back for cid:{}: it has written nothing for {:?}",
                            self.shared.out.addr,
                            self.shared.out.cid,
                            receiver.cid,
                            self.stopped_receiver_after
                        );
                    }
                }
            }
        }
    }

    /// This connection's pending bytes, written from the reader's task (see [`Outlet`]).
    pub(super) fn write_direct(&mut self) -> bool {
        match &self.direct {
            Some(tcp) => self.shared.out.write_direct(tcp, &mut self.direct_buf),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn publish_permission_cache_decides_once_per_subject_until_cleared() {
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
}
