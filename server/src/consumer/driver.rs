//! The tokio task that runs one [`Consumer`] inside an account: it receives pull requests
//! (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`), acks (`$JS.ACK.<stream>.<consumer>.>`)
//! and flow-control answers (`$JS.FC.<stream>.<consumer>.>`) through internal
//! subscriptions, wakes on new stream messages ([`ConsumerHandle::notify`]) and on timers,
//! and publishes deliveries, status frames and advisories with [`route::publish`].
//!
//! Subscription handlers run on the publisher's task, so they only parse the ack tokens
//! (no allocation for a plain `+ACK` without reply) and push an event on a channel.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::{
    parse_ack_body, parse_ack_subject, pull, AckKind, AckTokens, Consumer, ConsumerInfo, Outbound,
    PullRequest,
};
use crate::account::Account;
use crate::js_errors::{ApiError, JsError};
use crate::route;
use crate::store::MessageStore;
use crate::sublist::SublistError;
use crate::subscription::{FlushSet, InternalHandler, InternalMsg, SubRef};

/// Events drained per wake-up before delivering, so acks are applied in batches.
const EVENTS_PER_TURN: usize = 512;
/// How often dirty state is saved to the consumer store.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// A push consumer without a subscriber on its deliver subject looks again after this long,
/// doubling up to [`INTEREST_POLL_MAX`]: clients subscribe right after creating the consumer,
/// and the sublist has no interest notifications (nats-server's has).
const INTEREST_POLL_MIN: Duration = Duration::from_millis(1);
const INTEREST_POLL_MAX: Duration = Duration::from_millis(250);

/// What the stream layer provides to a running consumer.
pub(crate) trait ConsumerHost: Send + Sync + 'static {
    /// `consumer` no longer needs these stream sequences (acked or terminated): work-queue
    /// streams remove them, interest streams remove them once no consumer needs them.
    fn acked(&self, consumer: &str, stream_seqs: &[u64]);
    /// `consumer` was reset to deliver from `seq` on: it needs the messages from there and no
    /// longer those below (interest retention).
    fn reset(&self, consumer: &str, seq: u64);
    /// `consumer` has had no interest for `inactive_threshold`: the host should delete it
    /// (the driver has already stopped and saved nothing further).
    fn inactive(&self, consumer: &str);
}

#[derive(Debug)]
enum Event {
    Pull {
        reply: Bytes,
        body: Bytes,
    },
    Reset {
        reply: Bytes,
        body: Bytes,
    },
    Ack {
        tokens: AckTokens,
        kind: OwnedAck,
        reply: Option<Bytes>,
    },
    FlowControl(Bytes, Option<Bytes>),
    Info(oneshot::Sender<ConsumerInfo>),
    Unpin(String, oneshot::Sender<Result<(), ApiError>>),
    Stop(oneshot::Sender<Consumer>, StopReason),
    SignalShutdown(oneshot::Sender<()>),
    ResetPending,
    CopiedThrough(u64),
    Update(Box<super::ConsumerConfig>),
}

#[derive(Debug)]
enum OwnedAck {
    Ack,
    Nak(Option<u64>),
    Progress,
    Term(Bytes),
    Next(Bytes),
    Unknown,
}

impl OwnedAck {
    fn borrow(&self) -> AckKind<'_> {
        match self {
            OwnedAck::Ack => AckKind::Ack,
            OwnedAck::Nak(d) => AckKind::Nak(*d),
            OwnedAck::Progress => AckKind::Progress,
            OwnedAck::Term(r) => AckKind::Term(r),
            OwnedAck::Next(r) => AckKind::Next(r),
            OwnedAck::Unknown => AckKind::Unknown,
        }
    }
}

#[derive(Clone, Copy)]
enum InboxKind {
    Next,
    Reset,
    Ack,
    FlowControl,
}

struct Inbox {
    tx: mpsc::UnboundedSender<Event>,
    kind: InboxKind,
}

impl InternalHandler for Inbox {
    fn deliver(&self, msg: &InternalMsg<'_>, _flush: &mut FlushSet) {
        let event = match self.kind {
            InboxKind::Next => {
                let Some(reply) = msg.reply else { return };
                Event::Pull {
                    reply: Bytes::copy_from_slice(reply),
                    body: Bytes::copy_from_slice(msg.payload),
                }
            }
            InboxKind::Reset => {
                let Some(reply) = msg.reply else { return };
                Event::Reset {
                    reply: Bytes::copy_from_slice(reply),
                    body: Bytes::copy_from_slice(msg.payload),
                }
            }
            InboxKind::Ack => {
                let Some(tokens) = parse_ack_subject(msg.subject) else {
                    return;
                };
                let kind = match parse_ack_body(msg.payload) {
                    AckKind::Ack => OwnedAck::Ack,
                    AckKind::Nak(d) => OwnedAck::Nak(d),
                    AckKind::Progress => OwnedAck::Progress,
                    AckKind::Term(r) => OwnedAck::Term(Bytes::copy_from_slice(r)),
                    AckKind::Next(r) => OwnedAck::Next(Bytes::copy_from_slice(r)),
                    AckKind::Unknown => OwnedAck::Unknown,
                };
                Event::Ack {
                    tokens,
                    kind,
                    reply: msg.reply.map(Bytes::copy_from_slice),
                }
            }
            InboxKind::FlowControl => Event::FlowControl(
                Bytes::copy_from_slice(msg.subject),
                msg.headers.map(Bytes::copy_from_slice),
            ),
        };
        // A closed channel means the consumer stopped; the message has nowhere to go.
        let _ = self.tx.send(event);
    }
}

/// Why a consumer stops: what its waiting pull requests are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The consumer (or its stream) is deleted: `409 Consumer Deleted`.
    Deleted,
    /// The stream is unloaded (shutdown, account removed): requests are dropped silently,
    /// [`ConsumerHandle::signal_shutdown`] having told them already.
    Unloaded,
}

/// Control of a running consumer.
#[derive(Debug)]
pub(crate) struct ConsumerHandle {
    tx: mpsc::UnboundedSender<Event>,
    notify: Arc<Notify>,
}

impl ConsumerHandle {
    /// The stream stored a message: wake the consumer (cheap; coalesces).
    pub(crate) fn notify(&self) {
        self.notify.notify_one();
    }

    /// Current info; `None` if the consumer has stopped.
    pub(crate) async fn info(&self) -> Option<ConsumerInfo> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Event::Info(tx)).ok()?;
        rx.await.ok()
    }

    /// `$JS.API.CONSUMER.UNPIN`: drops `group`'s pin (10160 when the consumer has no such
    /// group); `None` if the consumer has stopped.
    pub(crate) async fn unpin(&self, group: &str) -> Option<Result<(), ApiError>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Event::Unpin(group.to_string(), tx)).ok()?;
        rx.await.ok()
    }

    /// A mirror or source reading the stream itself copied what this consumer would
    /// deliver through stream sequence `seq`: counted as delivered and acknowledged, as the
    /// copy's flow-control answers acknowledge on nats-server.
    pub(crate) fn copied_through(&self, seq: u64) {
        let _ = self.tx.send(Event::CopiedThrough(seq));
    }

    /// The stream was purged or lost messages: recount `num_pending`.
    pub(crate) fn reset_pending(&self) {
        let _ = self.tx.send(Event::ResetPending);
    }

    /// Applies a config update the caller checked with
    /// [`super::ConsumerConfig::check_update`].
    pub(crate) fn update(&self, config: super::ConsumerConfig) {
        let _ = self.tx.send(Event::Update(Box::new(config)));
    }

    /// Stops the task (unsubscribing, saving state) and returns the consumer.
    pub(crate) async fn stop(&self, reason: StopReason) -> Option<Consumer> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Event::Stop(tx, reason)).ok()?;
        rx.await.ok()
    }

    /// The server is going down: every waiting pull request gets `409 Server Shutdown`
    /// (published when this returns), as nats-server tells them before closing connections.
    pub(crate) async fn signal_shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Event::SignalShutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Wall clock that follows tokio's (paused-able) clock: ns since the epoch.
#[derive(Clone, Copy)]
struct Clock {
    base_ns: u64,
    base: Instant,
}

impl Clock {
    fn new() -> Self {
        Clock {
            base_ns: crate::store::now_ns(),
            base: Instant::now(),
        }
    }
    fn now(&self) -> u64 {
        self.base_ns + self.base.elapsed().as_nanos() as u64
    }
    fn instant_at(&self, ns: u64) -> Instant {
        self.base + Duration::from_nanos(ns.saturating_sub(self.base_ns))
    }
}

/// Starts `consumer` in `account`: subscribes its API, ack and flow-control subjects and
/// spawns its task on the current tokio runtime.
pub(crate) fn spawn(
    mut consumer: Consumer,
    account: Arc<Account>,
    store: Arc<dyn MessageStore>,
    host: Arc<dyn ConsumerHost>,
) -> Result<ConsumerHandle, SublistError> {
    let (tx, rx) = mpsc::unbounded_channel();
    consumer.set_account(&account.name);
    let stream = consumer.stream().to_string();
    let name = consumer.name().to_string();
    let subscriptions = [
        (
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"),
            InboxKind::Next,
        ),
        (
            format!("$JS.API.CONSUMER.RESET.{stream}.{name}"),
            InboxKind::Reset,
        ),
        (format!("$JS.ACK.{stream}.{name}.>"), InboxKind::Ack),
        (format!("$JS.FC.{stream}.{name}.>"), InboxKind::FlowControl),
    ];
    let mut subs = Vec::with_capacity(subscriptions.len());
    for (subject, kind) in subscriptions {
        let inbox = Arc::new(Inbox {
            tx: tx.clone(),
            kind,
        });
        match route::subscribe_internal(&account, subject.as_bytes(), None, inbox) {
            Ok(sub) => subs.push(sub),
            Err(e) => {
                for sub in &subs {
                    route::unsubscribe_internal(&account, sub);
                }
                return Err(e);
            }
        }
    }
    let notify = Arc::new(Notify::new());
    let task = Task {
        consumer,
        account,
        store,
        host,
        subs,
        rx,
        notify: notify.clone(),
        clock: Clock::new(),
        out: Vec::with_capacity(256),
        acked: Vec::new(),
        inactive_since: None,
        last_save: Instant::now(),
        interest_poll: INTEREST_POLL_MIN,
    };
    tokio::spawn(task.run());
    Ok(ConsumerHandle { tx, notify })
}

struct Task {
    consumer: Consumer,
    account: Arc<Account>,
    store: Arc<dyn MessageStore>,
    host: Arc<dyn ConsumerHost>,
    subs: Vec<SubRef>,
    rx: mpsc::UnboundedReceiver<Event>,
    notify: Arc<Notify>,
    clock: Clock,
    out: Vec<Outbound>,
    acked: Vec<u64>,
    inactive_since: Option<u64>,
    last_save: Instant,
    /// Push consumers without interest: when to look for a subscriber again.
    interest_poll: Duration,
}

enum Control {
    Continue,
    Stop(oneshot::Sender<Consumer>),
}

impl Task {
    async fn run(mut self) {
        let stop_reply = loop {
            let wake = self.next_wake();
            let first = tokio::select! {
                ev = self.rx.recv() => match ev {
                    Some(ev) => Some(ev),
                    None => break None,
                },
                _ = self.notify.notified() => None,
                _ = sleep_until_opt(wake) => None,
            };
            let now = self.clock.now();
            let mut control = Control::Continue;
            if let Some(ev) = first {
                control = self.handle(ev, now);
                let mut n = 1;
                while matches!(control, Control::Continue) && n < EVENTS_PER_TURN {
                    match self.rx.try_recv() {
                        Ok(ev) => control = self.handle(ev, now),
                        Err(_) => break,
                    }
                    n += 1;
                }
            }
            if let Control::Stop(reply) = control {
                self.flush();
                break Some(reply);
            }
            self.turn(now);
            if self.check_inactive(now) {
                self.shutdown();
                self.host.inactive(self.consumer.name());
                return;
            }
            if self.consumer.is_dirty() && self.last_save.elapsed() >= SAVE_INTERVAL {
                self.save().await;
            }
        };
        self.shutdown();
        self.save().await;
        if let Some(reply) = stop_reply {
            let _ = reply.send(self.consumer);
        }
    }

    fn shutdown(&mut self) {
        for sub in &self.subs {
            route::unsubscribe_internal(&self.account, sub);
        }
        self.subs.clear();
    }

    async fn save(&mut self) {
        self.last_save = Instant::now();
        let blob = self.consumer.encode_state();
        let cs = self.store.consumer_store();
        let name = self.consumer.name().to_string();
        let saved = tokio::task::spawn_blocking(move || cs.save(&name, &blob)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(consumer = %self.consumer.name(), "saving consumer state: {e}")
            }
            Err(e) => {
                tracing::warn!(consumer = %self.consumer.name(), "saving consumer state: {e}")
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let mut t = self.consumer.next_wakeup();
        let threshold = self.consumer.config().inactive_threshold.max(0) as u64;
        if let (Some(since), true) = (self.inactive_since, threshold > 0) {
            let at = since.saturating_add(threshold);
            t = Some(t.map_or(at, |x| x.min(at)));
        }
        if self.consumer.is_dirty() {
            let at = self.clock.now() + SAVE_INTERVAL.as_nanos() as u64;
            t = Some(t.map_or(at, |x| x.min(at)));
        }
        if !self.consumer.config().is_pull() && !self.consumer.push_active() {
            let at = self.clock.now() + self.interest_poll.as_nanos() as u64;
            t = Some(t.map_or(at, |x| x.min(at)));
        }
        t.map(|ns| self.clock.instant_at(ns))
    }

    fn handle(&mut self, ev: Event, now: u64) -> Control {
        match ev {
            Event::Pull { reply, body } => {
                self.add_pull(reply, &body, now);
            }
            Event::Reset { reply, body } => self.reset(&reply, &body, now),
            Event::Ack {
                tokens,
                kind,
                reply,
            } => {
                let outcome =
                    self.consumer
                        .process_ack(&tokens, &kind.borrow(), now, &mut self.out);
                self.acked.extend_from_slice(&outcome.acked);
                if outcome.reply {
                    if let Some(reply) = reply.as_ref() {
                        route::publish(&self.account, reply, None, None, b"");
                    }
                }
                if let (OwnedAck::Next(body), Some(reply)) = (&kind, reply) {
                    self.add_pull(reply, body, now);
                }
            }
            Event::FlowControl(subject, headers) => {
                let outcome = self
                    .consumer
                    .process_flow_control(&subject, headers.as_deref());
                self.acked.extend_from_slice(&outcome.acked);
            }
            Event::Info(tx) => {
                self.update_push_interest();
                let info = self.consumer.info(&*self.store, now);
                let _ = tx.send(info);
            }
            Event::Unpin(group, tx) => {
                let _ = tx.send(self.consumer.unpin(&group, &mut self.out));
            }
            Event::Stop(tx, reason) => {
                if reason == StopReason::Deleted {
                    self.consumer
                        .release_waiting(|_| pull::consumer_deleted(), &mut self.out);
                }
                return Control::Stop(tx);
            }
            Event::SignalShutdown(tx) => {
                self.consumer.release_waiting(
                    |r| pull::server_shutdown(r.batch, r.max_bytes),
                    &mut self.out,
                );
                self.publish_out();
                let _ = tx.send(());
            }
            Event::ResetPending => self.consumer.reset_pending_count(),
            Event::CopiedThrough(seq) => {
                let acked = self.consumer.copied_through(seq, &*self.store);
                self.acked.extend_from_slice(&acked);
            }
            Event::Update(config) => self.consumer.update_config(*config),
        }
        Control::Continue
    }

    /// `$JS.API.CONSUMER.RESET.<stream>.<consumer>`: answered by the consumer itself, as on
    /// nats-server (so a missing consumer means no responders).
    fn reset(&mut self, reply: &[u8], body: &[u8], now: u64) {
        #[derive(serde::Deserialize, Default)]
        struct ResetRequest {
            #[serde(default)]
            seq: u64,
        }
        #[derive(serde::Serialize)]
        struct ResetResponse {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<ApiError>,
            #[serde(flatten, skip_serializing_if = "Option::is_none")]
            info: Option<ConsumerInfo>,
            reset_seq: u64,
        }
        let body = body.trim_ascii();
        let request = if body.is_empty() {
            Ok(ResetRequest::default())
        } else {
            crate::json::from_request::<ResetRequest>(body)
                .map_err(|e| JsError::InvalidJSON.with(e))
        };
        let reset = request.and_then(|r| {
            self.consumer
                .reset(r.seq, &*self.store)
                .map_err(|e| JsError::ConsumerInvalidReset.with(e))
        });
        let mut response = ResetResponse {
            kind: "io.nats.jetstream.api.v1.consumer_reset_response",
            error: None,
            info: None,
            reset_seq: 0,
        };
        match reset {
            Ok(seq) => {
                self.host.reset(self.consumer.name(), seq);
                self.update_push_interest();
                response.info = Some(self.consumer.info(&*self.store, now));
                response.reset_seq = seq;
            }
            Err(e) => response.error = Some(e),
        }
        if reply.is_empty() {
            return;
        }
        let payload = serde_json::to_vec(&response).unwrap_or_default();
        route::publish(&self.account, reply, None, None, &payload);
    }

    fn add_pull(&mut self, reply: Bytes, body: &[u8], now: u64) {
        match PullRequest::parse(reply.clone(), body, now) {
            Ok(req) => self
                .consumer
                .add_pull_request(req, &*self.store, now, &mut self.out),
            Err(headers) => self.out.push(Outbound::Status {
                to: reply,
                reply: None,
                headers,
            }),
        }
    }

    fn update_push_interest(&mut self) {
        let cfg = self.consumer.config();
        if cfg.is_pull() {
            return;
        }
        let active = !self
            .account
            .sublist
            .match_subject(cfg.deliver_subject.as_bytes())
            .is_empty();
        self.interest_poll = if active {
            INTEREST_POLL_MIN
        } else {
            (self.interest_poll * 2).min(INTEREST_POLL_MAX)
        };
        self.consumer.set_push_active(active);
    }

    /// Timers, then deliveries until the consumer has nothing more, publishing as it goes.
    fn turn(&mut self, now: u64) {
        self.update_push_interest();
        self.consumer.check_timers(now, &mut self.out);
        loop {
            let sublist = &self.account.sublist;
            let has_interest = |reply: &[u8]| !sublist.match_subject(reply).is_empty();
            let more =
                self.consumer
                    .next_batch_where(&*self.store, now, &mut self.out, &has_interest);
            self.publish_out();
            if !more {
                break;
            }
        }
        self.flush();
    }

    /// Publishes what is queued and reports acknowledged sequences to the stream.
    fn flush(&mut self) {
        self.publish_out();
        if !self.acked.is_empty() {
            self.host.acked(self.consumer.name(), &self.acked);
            self.acked.clear();
        }
    }

    fn publish_out(&mut self) {
        let mut flush = FlushSet::default();
        for frame in self.out.drain(..) {
            match frame {
                Outbound::Msg(d) => {
                    // Routed by the deliver subject, but the client sees the message's own
                    // subject (as nats-server delivers: `HMSG orders.a <sid> $JS.ACK...`).
                    let result = self.account.sublist.match_subject(&d.deliver_to);
                    route::deliver_all(
                        &result,
                        None,
                        &d.subject,
                        Some(&d.reply),
                        d.headers.as_deref(),
                        &d.payload,
                        &mut flush,
                    );
                }
                Outbound::Status { to, reply, headers } => {
                    route::publish(&self.account, &to, reply.as_deref(), Some(&headers), b"");
                }
                Outbound::Advisory { subject, payload } => {
                    route::publish(&self.account, subject.as_bytes(), None, None, &payload);
                }
            }
        }
        flush.flush();
    }

    /// Interest for ephemerals: push needs a subscriber on the deliver subject, pull needs
    /// waiting requests or recent activity.
    fn check_inactive(&mut self, now: u64) -> bool {
        let threshold = self.consumer.config().inactive_threshold.max(0) as u64;
        if threshold == 0 {
            return false;
        }
        let interested = if self.consumer.config().is_pull() {
            self.consumer.num_waiting() > 0
        } else {
            self.consumer.push_active()
        };
        if interested {
            self.inactive_since = None;
            return false;
        }
        let since = if self.consumer.config().is_pull() {
            self.consumer
                .last_activity()
                .max(self.inactive_since.unwrap_or(now))
        } else {
            self.inactive_since.unwrap_or(now)
        };
        self.inactive_since = Some(since);
        now >= since.saturating_add(threshold)
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
