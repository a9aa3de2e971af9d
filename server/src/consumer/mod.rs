//! JetStream consumers: the delivery state machine ([`Consumer`], no I/O), its config and
//! info types ([`config`]), persisted state ([`state`]), pull requests and status frames
//! ([`pull`]), and the tokio task that runs one consumer inside an account ([`driver`]).
//!
//! # How the stream layer plugs it in
//! 1. Create: parse the request's `config`, call [`ConsumerConfig::apply_defaults`],
//!    [`ConsumerConfig::validate`] (and [`config::check_workqueue_partition`] on
//!    work-queue streams), then [`Consumer::new`] (or [`Consumer::restore`] with the blob
//!    from the stream's [`crate::store::ConsumerStore`]) and [`driver::spawn`].
//! 2. After every stored message: [`driver::ConsumerHandle::notify`].
//! 3. INFO/LIST: [`driver::ConsumerHandle::info`]. DELETE: [`driver::ConsumerHandle::stop`]
//!    then `ConsumerStore::remove`.
//! 4. Work-queue / interest retention: the driver reports acknowledged stream sequences
//!    through [`driver::ConsumerHost::acked`]; [`Consumer::has_acked`] answers "may this
//!    consumer's interest in `seq` be dropped".
//!
//! # Time
//! Every method takes `now` in ns since the Unix epoch, so tests drive time by hand.
//!
//! # Hot path
//! A delivery costs one store lookup, one `BTreeMap` insert (pending) and the formatted
//! `$JS.ACK` reply; subject, headers and payload are shared `Bytes`. An ack parses the
//! reply tokens (no JSON) and removes one map entry. `num_pending` is kept incrementally.

pub(crate) mod advisory;
pub(crate) mod config;
pub(crate) mod driver;
mod pacing;
mod priority;
pub(crate) mod pull;
pub(crate) mod state;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::store::{MessageStore, StoreError, StoredMsg};
pub(crate) use config::{
    AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy, SequenceInfo, StreamContext,
};
pub(crate) use priority::PriorityGroupState;
pub(crate) use pull::PullRequest;
pub(crate) use state::{ConsumerState, Pending, SeqPair};

/// Most frames [`Consumer::next_batch`] emits per call, so the driver interleaves acks.
const MAX_FRAMES_PER_BATCH: usize = 1024;
/// Flow control window: nats-server starts at 32 MB / 16 and doubles per answered request.
const FC_MAX_PENDING: u64 = 32 * 1024 * 1024;
/// The ack deadline of a message that is never redelivered by time (flow-control acks):
/// `u64::MAX` itself marks a message queued for redelivery.
const NO_DEADLINE: u64 = u64::MAX - 1;

/// One message to publish to a consumer's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// The message's original subject.
    pub subject: Bytes,
    /// The `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` reply.
    pub reply: Vec<u8>,
    /// Original headers (headers-only: plus `Nats-Msg-Size`).
    pub headers: Option<Bytes>,
    /// Payload (empty for headers-only).
    pub payload: Bytes,
    /// Pull request reply subject, or the push deliver subject.
    pub deliver_to: Bytes,
    /// Stream sequence.
    pub stream_seq: u64,
    /// Consumer sequence of this delivery.
    pub consumer_seq: u64,
    /// Delivery count (1 = first delivery).
    pub deliveries: u64,
}

/// Something the consumer wants published into its account, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outbound {
    /// A message.
    Msg(Delivery),
    /// A header-only status frame (`NATS/1.0 404 No Messages`, heartbeats, flow control).
    Status {
        /// Subject to publish on.
        to: Bytes,
        /// Reply subject (flow-control requests only).
        reply: Option<Bytes>,
        /// The header block.
        headers: Vec<u8>,
    },
    /// An advisory (`$JS.EVENT.ADVISORY.CONSUMER...`) with its JSON body.
    Advisory {
        /// Subject.
        subject: String,
        /// JSON body.
        payload: Vec<u8>,
    },
}

/// The numbers in an ack reply subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckTokens {
    /// Delivery count.
    pub deliveries: u64,
    /// Stream sequence.
    pub stream_seq: u64,
    /// Consumer sequence.
    pub consumer_seq: u64,
    /// Message timestamp, ns.
    pub timestamp: u64,
    /// Pending count at delivery.
    pub pending: u64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<cseq>.<ts>.<pending>` (9 tokens) or the
/// 12-token v2 form `$JS.ACK.<domain>.<acchash>.<stream>.<consumer>.<dc>.<sseq>.<cseq>.<ts>.<pending>.<rand>`.
pub(crate) fn parse_ack_subject(subject: &[u8]) -> Option<AckTokens> {
    let mut toks: SmallVec<[&[u8]; 12]> = SmallVec::new();
    for t in subject.split(|&b| b == b'.') {
        if toks.len() == 12 {
            return None;
        }
        toks.push(t);
    }
    let first = match toks.len() {
        9 => 4,
        12 => 6,
        _ => return None,
    };
    if toks[0] != b"$JS" || toks[1] != b"ACK" {
        return None;
    }
    let num = |t: &[u8]| -> Option<u64> {
        if t.is_empty() || t.len() > 20 {
            return None;
        }
        t.iter().try_fold(0u64, |acc, &b| {
            b.is_ascii_digit()
                .then(|| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))
                .flatten()
        })
    };
    Some(AckTokens {
        deliveries: num(toks[first])?,
        stream_seq: num(toks[first + 1])?,
        consumer_seq: num(toks[first + 2])?,
        timestamp: num(toks[first + 3])?,
        pending: num(toks[first + 4])?,
    })
}

/// What an ack body asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckKind<'a> {
    /// Empty, `+ACK` or `+OK`.
    Ack,
    /// `-NAK`, with an optional delay in ns (`{"delay":ns}` or a Go duration like `5s`).
    Nak(Option<u64>),
    /// `+WPI`: still working, restart the ack wait.
    Progress,
    /// `+TERM [reason]`: never redeliver.
    Term(&'a [u8]),
    /// `+NXT [pull request]`: ack, then pull with the ack's reply subject.
    Next(&'a [u8]),
    /// Anything else (ignored, but a reply is still sent).
    Unknown,
}

/// Classifies an ack body as nats-server's `processAck` does.
pub(crate) fn parse_ack_body(body: &[u8]) -> AckKind<'_> {
    if body.is_empty() || body == b"+ACK" || body == b"+OK" {
        AckKind::Ack
    } else if let Some(rest) = body.strip_prefix(b"+NXT") {
        AckKind::Next(rest)
    } else if let Some(rest) = body.strip_prefix(b"-NAK") {
        AckKind::Nak(parse_nak_delay(rest.trim_ascii()))
    } else if body == b"+WPI" {
        AckKind::Progress
    } else if let Some(rest) = body.strip_prefix(b"+TERM") {
        AckKind::Term(rest.trim_ascii())
    } else {
        AckKind::Unknown
    }
}

fn parse_nak_delay(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() {
        return None;
    }
    if arg[0] == b'{' {
        #[derive(serde::Deserialize)]
        struct NakOptions {
            #[serde(default)]
            delay: i64,
        }
        let opts: NakOptions = crate::json::from_request(arg).ok()?;
        return Some(opts.delay.max(0) as u64);
    }
    match natsd_conf::duration::parse_go_duration(std::str::from_utf8(arg).ok()?) {
        Ok((false, d)) => u64::try_from(d.as_nanos()).ok(),
        _ => None,
    }
}

/// What an ack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AckOutcome {
    /// Stream sequences this consumer no longer needs (acked or terminated), for
    /// work-queue/interest retention.
    pub acked: SmallVec<[u64; 2]>,
    /// An empty reply must go to the ack's reply subject (every kind but `+NXT`).
    pub reply: bool,
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Redelivery,
    LastPerSubject,
    New,
}

#[derive(Debug, Default)]
struct FlowControl {
    pending_bytes: u64,
    window: u64,
    outstanding: Option<Bytes>,
    outstanding_size: u64,
}

/// A consumer's delivery state machine. Not thread-safe by itself: one driver owns it.
#[derive(Debug)]
pub(crate) struct Consumer {
    stream: String,
    name: String,
    config: ConsumerConfig,
    created: u64,
    filters: Vec<Vec<u8>>,
    state: ConsumerState,
    ack_wait: u64,
    backoff: Vec<u64>,
    max_deliver: u64,
    max_ack_pending: usize,
    ack_prefix: Vec<u8>,
    deliver_subject: Bytes,
    redeliver_queue: VecDeque<u64>,
    waiting: VecDeque<PullRequest>,
    last_per_subject: VecDeque<u64>,
    last_per_subject_max: u64,
    num_pending: u64,
    num_pending_valid: bool,
    num_pending_last_seq: u64,
    num_pending_first_seq: u64,
    ack_deadline_hint: u64,
    /// End of the current pause (`pause_until` in the future), as of the last batch.
    pause_end: Option<u64>,
    push_active: bool,
    /// Pinned-client consumers: the client holding the pin.
    pin: Option<priority::Pin>,
    /// The account's name, for advisories that carry it.
    account: String,
    /// Replay-original and rate-limit pacing of deliveries.
    pacing: pacing::Pacing,
    /// `sample_freq` as a percentage (0: no ack metrics).
    sample_percent: u32,
    flow: FlowControl,
    last_push_activity: u64,
    last_delivery: u64,
    last_ack: u64,
    dirty: bool,
}

impl Consumer {
    /// A new consumer positioned per its deliver policy. `config` must have been through
    /// [`ConsumerConfig::apply_defaults`] and [`ConsumerConfig::validate`].
    pub(crate) fn new(
        stream: &str,
        name: &str,
        config: ConsumerConfig,
        store: &dyn MessageStore,
        now: u64,
    ) -> Consumer {
        let mut c = Consumer::bare(stream, name, config, now, ConsumerState::default());
        c.position(store);
        c
    }

    /// A consumer resumed from saved state (after a restart). `created` is the original
    /// creation time, ns.
    pub(crate) fn restore(
        stream: &str,
        name: &str,
        config: ConsumerConfig,
        created: u64,
        state: ConsumerState,
    ) -> Consumer {
        let mut c = Consumer::bare(stream, name, config, created, state);
        c.ack_deadline_hint = c
            .state
            .pending
            .values()
            .map(|p| p.deadline)
            .min()
            .unwrap_or(u64::MAX);
        c
    }

    fn bare(
        stream: &str,
        name: &str,
        config: ConsumerConfig,
        created: u64,
        state: ConsumerState,
    ) -> Consumer {
        let filters = config
            .filters()
            .into_iter()
            .map(String::into_bytes)
            .collect();
        let backoff: Vec<u64> = config.backoff.iter().map(|&b| b.max(0) as u64).collect();
        let max_ack_pending = if config.ack_policy == AckPolicy::None {
            0
        } else {
            config.max_ack_pending.max(0) as usize
        };
        let ack_prefix = format!("$JS.ACK.{stream}.{name}.").into_bytes();
        let pacing = pacing::Pacing::new(&config);
        let sample_percent = config
            .sample_freq
            .trim_end_matches('%')
            .parse()
            .unwrap_or(0);
        Consumer {
            stream: stream.to_string(),
            name: name.to_string(),
            filters,
            ack_wait: config.ack_wait.max(0) as u64,
            backoff,
            max_deliver: config.max_deliver.max(0) as u64,
            max_ack_pending,
            ack_prefix,
            deliver_subject: Bytes::from(config.deliver_subject.clone().into_bytes()),
            config,
            created,
            state,
            redeliver_queue: VecDeque::new(),
            waiting: VecDeque::new(),
            last_per_subject: VecDeque::new(),
            last_per_subject_max: 0,
            num_pending: 0,
            num_pending_valid: false,
            num_pending_last_seq: 0,
            num_pending_first_seq: 0,
            ack_deadline_hint: u64::MAX,
            pause_end: None,
            push_active: false,
            pin: None,
            account: String::new(),
            pacing,
            sample_percent,
            flow: FlowControl {
                window: FC_MAX_PENDING / 16,
                ..FlowControl::default()
            },
            last_push_activity: created,
            last_delivery: 0,
            last_ack: 0,
            dirty: true,
        }
    }

    fn position(&mut self, store: &dyn MessageStore) {
        let st = store.state();
        let start = match self.config.deliver_policy {
            DeliverPolicy::All => st.first_seq.max(1),
            DeliverPolicy::New => st.last_seq + 1,
            DeliverPolicy::ByStartSequence => self.config.opt_start_seq.max(st.first_seq),
            DeliverPolicy::Last => {
                let last = if self.filters.is_empty() {
                    store.load_last_msg(b"").ok().map(|m| m.seq)
                } else {
                    self.filters
                        .iter()
                        .filter_map(|f| store.load_last_msg(f).ok().map(|m| m.seq))
                        .max()
                };
                last.unwrap_or(st.last_seq + 1)
            }
            DeliverPolicy::ByStartTime => {
                let t = self.config.start_time_ns().unwrap_or(0);
                first_seq_at_or_after(store, t, st.first_seq, st.last_seq)
            }
            DeliverPolicy::LastPerSubject => {
                let mut seqs: Vec<u64> = self
                    .filters
                    .iter()
                    .flat_map(|f| store.subjects_state(f))
                    .map(|s| s.last_seq)
                    .collect();
                seqs.sort_unstable();
                seqs.dedup();
                let start = seqs.first().copied().unwrap_or(st.last_seq + 1);
                self.last_per_subject_max = seqs.last().copied().unwrap_or(0);
                self.last_per_subject = seqs.into();
                start
            }
        };
        let floor = start.saturating_sub(1);
        self.state.delivered.stream_seq = floor;
        self.state.ack_floor.stream_seq = floor;
    }

    /// The consumer's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The parent stream's name.
    pub(crate) fn stream(&self) -> &str {
        &self.stream
    }

    /// The effective config.
    pub(crate) fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Delivery state.
    pub(crate) fn state(&self) -> &ConsumerState {
        &self.state
    }

    /// The state blob for [`crate::store::ConsumerStore::save`]; clears the dirty flag.
    pub(crate) fn encode_state(&mut self) -> Vec<u8> {
        self.dirty = false;
        self.state.encode()
    }

    /// Changed since the last [`Consumer::encode_state`].
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Waiting pull requests.
    pub(crate) fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Applies an allowed config update (the caller ran [`ConsumerConfig::check_update`]).
    pub(crate) fn update_config(&mut self, config: ConsumerConfig) {
        let state = std::mem::take(&mut self.state);
        let mut next = Consumer::bare(&self.stream, &self.name, config, self.created, state);
        next.redeliver_queue = std::mem::take(&mut self.redeliver_queue);
        next.waiting = std::mem::take(&mut self.waiting);
        next.last_per_subject = std::mem::take(&mut self.last_per_subject);
        next.last_per_subject_max = self.last_per_subject_max;
        next.ack_deadline_hint = 0;
        next.push_active = self.push_active;
        next.pin = self.pin.take();
        next.account = std::mem::take(&mut self.account);
        *self = next;
    }

    /// Is `stream_seq` done for this consumer (acked, terminated, dropped after
    /// max_deliver, or delivered with ack none)? Interest retention removes a message
    /// once every interested consumer says so.
    #[cfg(test)]
    pub(crate) fn has_acked(&self, stream_seq: u64) -> bool {
        if stream_seq <= self.state.ack_floor.stream_seq {
            return true;
        }
        if self.config.ack_policy == AckPolicy::None {
            return stream_seq <= self.state.delivered.stream_seq;
        }
        stream_seq <= self.state.delivered.stream_seq
            && !self.state.pending.contains_key(&stream_seq)
    }

    /// The account the consumer lives in (named in some advisories).
    pub(crate) fn set_account(&mut self, name: &str) {
        self.account = name.to_string();
    }

    /// Push consumers: whether anyone subscribes to the deliver subject (the driver checks).
    pub(crate) fn set_push_active(&mut self, active: bool) {
        self.push_active = active;
    }

    /// Push consumers with interest.
    pub(crate) fn push_active(&self) -> bool {
        self.push_active
    }

    fn deliveries(&self, stream_seq: u64) -> u64 {
        self.state
            .redelivered
            .get(&stream_seq)
            .copied()
            .unwrap_or(1)
    }

    fn wait_for(&self, deliveries: u64) -> u64 {
        if self.backoff.is_empty() {
            return self.ack_wait;
        }
        let i = (deliveries.max(1) - 1) as usize;
        self.backoff[i.min(self.backoff.len() - 1)]
    }

    /// Messages not yet delivered (plus last-per-subject starts still owed).
    pub(crate) fn num_pending(&mut self, store: &dyn MessageStore) -> u64 {
        self.refresh_num_pending(store);
        self.num_pending
    }

    /// Forces a full recount of `num_pending` (after a purge or message delete).
    pub(crate) fn reset_pending_count(&mut self) {
        self.num_pending_valid = false;
    }

    fn count_from(&self, store: &dyn MessageStore, start: u64) -> u64 {
        if self.filters.is_empty() {
            store.num_pending(b"", start)
        } else {
            self.filters
                .iter()
                .map(|f| store.num_pending(f, start))
                .sum()
        }
    }

    fn refresh_num_pending(&mut self, store: &dyn MessageStore) {
        let st = store.state();
        let next = self.state.delivered.stream_seq + 1;
        let purged_ahead = st.first_seq != self.num_pending_first_seq && st.first_seq > next;
        if !self.num_pending_valid || purged_ahead || st.last_seq < self.num_pending_last_seq {
            let from = next.max(if self.last_per_subject.is_empty() {
                0
            } else {
                self.last_per_subject_max + 1
            });
            self.num_pending = self.last_per_subject.len() as u64 + self.count_from(store, from);
            self.num_pending_valid = true;
        } else if st.last_seq > self.num_pending_last_seq {
            let from = (self.num_pending_last_seq + 1).max(next);
            self.num_pending += self.count_from(store, from);
        }
        self.num_pending_last_seq = st.last_seq;
        self.num_pending_first_seq = st.first_seq;
    }

    fn load_next(&self, store: &dyn MessageStore, start: u64) -> Result<StoredMsg, StoreError> {
        match self.filters.len() {
            0 => store.load_next_msg(b"", start),
            1 => store.load_next_msg(&self.filters[0], start),
            _ => self
                .filters
                .iter()
                .filter_map(|f| store.load_next_msg(f, start).ok())
                .min_by_key(|m| m.seq)
                .ok_or(StoreError::NotFound),
        }
    }

    /// The next message to deliver, without consuming it. Drops stale redelivery entries
    /// and messages past max_deliver on the way.
    fn peek(
        &mut self,
        store: &dyn MessageStore,
        out: &mut Vec<Outbound>,
    ) -> Option<(StoredMsg, Source)> {
        while let Some(&seq) = self.redeliver_queue.front() {
            let queued = self
                .state
                .pending
                .get(&seq)
                .is_some_and(|p| p.deadline == u64::MAX);
            if !queued {
                self.redeliver_queue.pop_front();
                continue;
            }
            if self.max_deliver > 0 && self.deliveries(seq) >= self.max_deliver {
                self.redeliver_queue.pop_front();
                self.drop_max_delivered(seq, out);
                continue;
            }
            match store.load_msg(seq) {
                Ok(m) => return Some((m, Source::Redelivery)),
                Err(StoreError::NotFound) => {
                    // Removed from the stream meanwhile: nothing left to redeliver.
                    self.redeliver_queue.pop_front();
                    self.state.pending.remove(&seq);
                    self.state.redelivered.remove(&seq);
                    self.advance_ack_floor();
                }
                Err(_) => return None,
            }
        }
        if self.max_ack_pending > 0 && self.state.pending.len() >= self.max_ack_pending {
            return None;
        }
        while let Some(&seq) = self.last_per_subject.front() {
            match store.load_msg(seq) {
                Ok(m) => return Some((m, Source::LastPerSubject)),
                Err(_) => {
                    self.last_per_subject.pop_front();
                    self.num_pending = self.num_pending.saturating_sub(1);
                }
            }
        }
        let start = self.state.delivered.stream_seq + 1;
        self.load_next(store, start).ok().map(|m| (m, Source::New))
    }

    fn build_reply(&self, deliveries: u64, sseq: u64, cseq: u64, ts: u64, pending: u64) -> Vec<u8> {
        let mut reply = Vec::with_capacity(self.ack_prefix.len() + 64);
        reply.extend_from_slice(&self.ack_prefix);
        let mut buf = itoa::Buffer::new();
        for (i, n) in [deliveries, sseq, cseq, ts, pending]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                reply.push(b'.');
            }
            reply.extend_from_slice(buf.format(n).as_bytes());
        }
        reply
    }

    /// Consumes a peeked message: assigns the consumer sequence, tracks it as pending and
    /// builds the delivery.
    fn commit(&mut self, msg: StoredMsg, source: Source, deliver_to: Bytes, now: u64) -> Delivery {
        let sseq = msg.seq;
        let deliveries = match source {
            Source::Redelivery => {
                self.redeliver_queue.pop_front();
                let dc = self.state.redelivered.entry(sseq).or_insert(1);
                *dc += 1;
                *dc
            }
            Source::LastPerSubject => {
                self.last_per_subject.pop_front();
                self.num_pending = self.num_pending.saturating_sub(1);
                self.state.delivered.stream_seq = self.state.delivered.stream_seq.max(sseq);
                1
            }
            Source::New => {
                self.num_pending = self.num_pending.saturating_sub(1);
                self.state.delivered.stream_seq = sseq;
                1
            }
        };
        self.state.delivered.consumer_seq += 1;
        let cseq = self.state.delivered.consumer_seq;
        if self.config.ack_policy == AckPolicy::None {
            self.state.ack_floor = self.state.delivered;
        } else {
            let deadline = if self.config.ack_policy == AckPolicy::FlowControl {
                NO_DEADLINE
            } else {
                now.saturating_add(self.wait_for(deliveries))
            };
            self.ack_deadline_hint = self.ack_deadline_hint.min(deadline);
            self.state
                .pending
                .entry(sseq)
                .and_modify(|p| {
                    p.timestamp = now;
                    p.deadline = deadline;
                })
                .or_insert(Pending {
                    consumer_seq: cseq,
                    timestamp: now,
                    deadline,
                });
        }
        self.last_delivery = now;
        self.pacing.delivered(msg.ts, now);
        self.dirty = true;
        let reply = self.build_reply(deliveries, sseq, cseq, msg.ts, self.num_pending);
        let (headers, payload) = if self.config.headers_only {
            (
                Some(headers_only(msg.headers.as_deref(), msg.payload.len())),
                Bytes::new(),
            )
        } else {
            (msg.headers, msg.payload)
        };
        Delivery {
            subject: msg.subject,
            reply,
            headers,
            payload,
            deliver_to,
            stream_seq: sseq,
            consumer_seq: cseq,
            deliveries,
        }
    }

    fn advance_ack_floor(&mut self) {
        match self.state.pending.first_key_value() {
            None => self.state.ack_floor = self.state.delivered,
            Some((&sseq, p)) => {
                let floor = SeqPair {
                    consumer_seq: p.consumer_seq.saturating_sub(1),
                    stream_seq: sseq - 1,
                };
                if floor.stream_seq > self.state.ack_floor.stream_seq {
                    self.state.ack_floor = floor;
                }
            }
        }
    }

    fn drop_max_delivered(&mut self, seq: u64, out: &mut Vec<Outbound>) {
        let deliveries = self.deliveries(seq);
        self.state.redelivered.insert(seq, deliveries);
        // Like nats-server, the ack floor stays below a message that was never acked: it only
        // moves past it with a later ack (or when nothing else is pending).
        if self.state.pending.remove(&seq).is_some() {
            self.dirty = true;
        }
        out.push(self.advisory(
            "MAX_DELIVERIES",
            advisory::body(
                "io.nats.jetstream.advisory.v1.max_deliver",
                &MsgEvent {
                    stream: &self.stream,
                    consumer: &self.name,
                    consumer_seq: None,
                    stream_seq: seq,
                    deliveries,
                    reason: None,
                },
            ),
        ));
    }

    /// `$JS.EVENT.ADVISORY.CONSUMER.<kind>.<stream>.<consumer>` with `payload`.
    fn advisory(&self, kind: &str, payload: Vec<u8>) -> Outbound {
        Outbound::Advisory {
            subject: format!(
                "$JS.EVENT.ADVISORY.CONSUMER.{kind}.{}.{}",
                self.stream, self.name
            ),
            payload,
        }
    }

    /// Queues a pull request (after nats-server's checks, whose refusals are status frames
    /// in `out`). Call [`Consumer::next_batch`] afterwards to serve it.
    pub(crate) fn add_pull_request(
        &mut self,
        req: PullRequest,
        store: &dyn MessageStore,
        now: u64,
        out: &mut Vec<Outbound>,
    ) {
        let refuse = |out: &mut Vec<Outbound>, headers: Vec<u8>| {
            out.push(Outbound::Status {
                to: req.reply.clone(),
                reply: None,
                headers,
            });
        };
        self.last_ack = self.last_ack.max(now);
        if !self.config.is_pull() {
            return refuse(out, pull::status(409, "Consumer is push based"));
        }
        let cfg = &self.config;
        if cfg.max_batch > 0 && req.batch > cfg.max_batch as u64 {
            let text = format!("Exceeded MaxRequestBatch of {}", cfg.max_batch);
            return refuse(out, pull::status(409, &text));
        }
        if let Some(exp) = req.expires {
            if cfg.max_expires > 0 && exp > now.saturating_add(cfg.max_expires as u64) {
                let text = format!(
                    "Exceeded MaxRequestExpires of {}",
                    natsd_conf::duration::go_duration_nanos(cfg.max_expires)
                );
                return refuse(out, pull::status(409, &text));
            }
        }
        if cfg.max_bytes > 0 && req.max_bytes > cfg.max_bytes as u64 {
            let text = format!("Exceeded MaxRequestMaxBytes of {}", cfg.max_bytes);
            return refuse(out, pull::status(409, &text));
        }
        if let Err(text) = self.check_priority_group(&req, now) {
            return refuse(out, text);
        }
        if req.expired_on_arrival {
            return refuse(out, pull::request_timeout(req.batch, req.max_bytes));
        }
        if req.no_wait && req.expires.is_none() {
            let available = self.num_pending(store) + self.redeliver_queue.len() as u64;
            if available == 0 {
                return refuse(out, pull::no_messages());
            }
        }
        if self.waiting.len() >= self.config.max_waiting.max(1) as usize {
            self.expire_pull_requests(now, out);
            if self.waiting.len() >= self.config.max_waiting.max(1) as usize {
                // A client with heartbeats notices their absence and retries; a 409 would
                // have it retry at once, in a loop (nats-server's reasoning).
                if req.heartbeat == 0 {
                    refuse(out, pull::status(409, "Exceeded MaxWaiting"));
                }
                return;
            }
        }
        self.enqueue(req);
    }

    /// nats-server's consumer reset (`$JS.API.CONSUMER.RESET`): delivery restarts at stream
    /// sequence `seq` (0: just above the ack floor) with consumer sequence 1, and pending,
    /// redelivery and activity state are forgotten; waiting pull requests stay. A consumer that
    /// starts at a sequence or time may not go below it, and only those and deliver-all
    /// consumers may be moved to a chosen sequence. Returns where delivery restarts, or why
    /// the reset is refused (the `{err}` of error 10204).
    pub(crate) fn reset(
        &mut self,
        seq: u64,
        store: &dyn MessageStore,
    ) -> Result<u64, &'static str> {
        let seq = if seq == 0 {
            self.state.ack_floor.stream_seq + 1
        } else {
            match self.config.deliver_policy {
                DeliverPolicy::All => seq,
                DeliverPolicy::ByStartSequence if seq < self.config.opt_start_seq => {
                    return Err("below start seq")
                }
                DeliverPolicy::ByStartSequence => seq,
                DeliverPolicy::ByStartTime => {
                    let st = store.state();
                    let t = self.config.start_time_ns().unwrap_or(0);
                    if seq < first_seq_at_or_after(store, t, st.first_seq, st.last_seq) {
                        return Err("below start time");
                    }
                    seq
                }
                _ => return Err("not allowed"),
            }
        }
        .max(1);
        self.state.pending.clear();
        self.state.redelivered.clear();
        self.redeliver_queue.clear();
        self.last_per_subject.clear();
        self.state.delivered = SeqPair {
            consumer_seq: 0,
            stream_seq: seq - 1,
        };
        self.state.ack_floor = self.state.delivered;
        self.last_delivery = 0;
        self.last_ack = 0;
        self.num_pending_valid = false;
        self.ack_deadline_hint = u64::MAX;
        self.dirty = true;
        Ok(seq)
    }

    /// A delivery's size as nats-server counts it: subject + reply + headers + payload (the
    /// reply's numbers are estimated, the real ones are not known yet).
    fn delivery_size(&self, msg: &StoredMsg) -> u64 {
        (msg.subject.len()
            + self.ack_prefix.len()
            + 40
            + msg.headers.as_ref().map_or(0, |h| h.len())
            + msg.payload.len()) as u64
    }

    /// Whether pacing (replay original, rate limit) lets `msg` go now.
    fn pace(&mut self, msg: &StoredMsg, size: u64, store: &dyn MessageStore, now: u64) -> bool {
        self.pacing
            .ready(msg.seq, msg.ts, size, now, || store.state().last_seq)
    }

    /// `sample_freq`: an ack of a pending message is reported, for that share of the acks,
    /// on `$JS.EVENT.METRIC.CONSUMER.ACK.<stream>.<consumer>` with its delay since delivery.
    fn sample_ack(&self, tokens: &AckTokens, now: u64, out: &mut Vec<Outbound>) {
        let sampled = match self.sample_percent {
            0 => false,
            p if p >= 100 => true,
            p => fastrand::u32(..100) <= p,
        };
        let Some(pending) = self
            .state
            .pending
            .get(&tokens.stream_seq)
            .filter(|_| sampled)
        else {
            return;
        };
        #[derive(serde::Serialize)]
        struct AckMetric<'a> {
            stream: &'a str,
            consumer: &'a str,
            consumer_seq: u64,
            stream_seq: u64,
            ack_time: u64,
            deliveries: u64,
        }
        out.push(Outbound::Advisory {
            subject: format!(
                "$JS.EVENT.METRIC.CONSUMER.ACK.{}.{}",
                self.stream, self.name
            ),
            payload: advisory::body(
                "io.nats.jetstream.metric.v1.consumer_ack",
                &AckMetric {
                    stream: &self.stream,
                    consumer: &self.name,
                    consumer_seq: tokens.consumer_seq,
                    stream_seq: tokens.stream_seq,
                    ack_time: now.saturating_sub(pending.timestamp),
                    deliveries: tokens.deliveries,
                },
            ),
        });
    }

    /// Drops every waiting pull request, telling each with the status frame `headers` builds
    /// for it (`409 Consumer Deleted`, `409 Server Shutdown`).
    pub(crate) fn release_waiting(
        &mut self,
        headers: impl Fn(&PullRequest) -> Vec<u8>,
        out: &mut Vec<Outbound>,
    ) {
        for r in self.waiting.drain(..) {
            out.push(Outbound::Status {
                headers: headers(&r),
                to: r.reply,
                reply: None,
            });
        }
    }

    /// Delivers what can be delivered now: redeliveries first, then new messages, to the
    /// waiting pull requests in order (pull) or to the deliver subject (push, when it has
    /// interest and flow control allows). Returns true when it stopped only because of
    /// its per-call frame cap (call again).
    #[cfg(test)]
    pub(crate) fn next_batch(
        &mut self,
        store: &dyn MessageStore,
        now: u64,
        out: &mut Vec<Outbound>,
    ) -> bool {
        self.next_batch_where(store, now, out, &|_| true)
    }

    /// [`Consumer::next_batch`], dropping (silently, as nats-server does) a pull request
    /// whose reply subject nobody subscribes any more when a message would go to it: a
    /// client that gave up on a fetch does not swallow messages meant for the next one.
    pub(crate) fn next_batch_where(
        &mut self,
        store: &dyn MessageStore,
        now: u64,
        out: &mut Vec<Outbound>,
        has_interest: &dyn Fn(&[u8]) -> bool,
    ) -> bool {
        self.refresh_num_pending(store);
        // Paused: pull requests wait (and still expire), nothing is delivered.
        self.pause_end = match self.config.pause_until.is_some() {
            true => self.config.pause_until_ns().filter(|&t| t > now),
            false => None,
        };
        if self.pause_end.is_some() {
            return false;
        }
        if self.config.is_pull() {
            self.next_pull_batch(store, now, out, has_interest)
        } else {
            self.next_push_batch(store, now, out)
        }
    }

    fn next_pull_batch(
        &mut self,
        store: &dyn MessageStore,
        now: u64,
        out: &mut Vec<Outbound>,
        has_interest: &dyn Fn(&[u8]) -> bool,
    ) -> bool {
        let mut frames = 0;
        let mut exhausted = false;
        while !self.waiting.is_empty() {
            if frames >= MAX_FRAMES_PER_BATCH {
                return true;
            }
            let Some((msg, source)) = self.peek(store, out) else {
                exhausted = true;
                break;
            };
            let size = self.delivery_size(&msg);
            if !self.pace(&msg, size, store, now) {
                break;
            }
            let before = out.len();
            let Some(deliver_to) = self.next_waiting(size, now, out, has_interest) else {
                break;
            };
            frames += out.len() - before;
            let mut delivery = self.commit(msg, source, deliver_to, now);
            if let Some(id) = self.pin_id() {
                let headers = with_header(delivery.headers.as_deref(), "Nats-Pin-Id", id);
                delivery.headers = Some(headers);
            }
            out.push(Outbound::Msg(delivery));
            frames += 1;
        }
        if exhausted {
            // End of the stream for now: no-wait requests are answered (nats-server's
            // processWaiting with eos).
            let mut i = 0;
            while i < self.waiting.len() {
                let r = &self.waiting[i];
                if r.no_wait && (r.expires.is_none() || r.delivered > 0) {
                    if let Some(r) = self.waiting.remove(i) {
                        out.push(Outbound::Status {
                            to: r.reply,
                            reply: None,
                            headers: pull::no_messages(),
                        });
                    }
                } else {
                    i += 1;
                }
            }
        }
        false
    }

    fn next_push_batch(
        &mut self,
        store: &dyn MessageStore,
        now: u64,
        out: &mut Vec<Outbound>,
    ) -> bool {
        let mut frames = 0;
        while self.push_active {
            if self.config.flow_control && self.flow.pending_bytes > self.flow.window {
                return false;
            }
            if frames >= MAX_FRAMES_PER_BATCH {
                return true;
            }
            let Some((msg, source)) = self.peek(store, out) else {
                self.request_flow_control_ack(true, out);
                return false;
            };
            if !self.pace(&msg, self.delivery_size(&msg), store, now) {
                return false;
            }
            let delivery = self.commit(msg, source, self.deliver_subject.clone(), now);
            let size = (delivery.subject.len()
                + delivery.reply.len()
                + delivery.headers.as_ref().map_or(0, |h| h.len())
                + delivery.payload.len()) as u64;
            out.push(Outbound::Msg(delivery));
            frames += 1;
            self.last_push_activity = now;
            if self.config.flow_control {
                self.flow.pending_bytes += size;
                if self.flow.outstanding.is_none() && self.flow.pending_bytes > self.flow.window / 2
                {
                    self.send_flow_control(out);
                }
            }
        }
        false
    }

    fn new_flow_control_subject(&self) -> Bytes {
        let rand: String = (0..4).map(|_| fastrand::alphanumeric()).collect();
        Bytes::from(format!("$JS.FC.{}.{}.{rand}", self.stream, self.name))
    }

    /// A client answered a flow-control request on `subject`: widen the window and resume.
    /// With `ack_policy: flow_control` the answer's `Nats-Last-Stream` header acknowledges
    /// everything delivered up to that stream sequence (the outcome's `acked`).
    pub(crate) fn process_flow_control(
        &mut self,
        subject: &[u8],
        headers: Option<&[u8]>,
    ) -> AckOutcome {
        let mut outcome = AckOutcome::default();
        if self.flow.outstanding.as_deref() != Some(subject) {
            return outcome;
        }
        self.flow.window = (self.flow.window * 2).min(FC_MAX_PENDING);
        self.flow.pending_bytes = self
            .flow
            .pending_bytes
            .saturating_sub(self.flow.outstanding_size);
        self.flow.outstanding = None;
        self.flow.outstanding_size = 0;
        if self.config.ack_policy == AckPolicy::FlowControl {
            let last_stream = headers
                .and_then(|h| crate::proto::headers::get(h, "Nats-Last-Stream"))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if last_stream > 0 {
                self.ack(last_stream, &mut outcome);
            }
        }
        outcome
    }

    /// Flow-control acks: asks for an answer (which acknowledges) when nothing is outstanding
    /// and messages wait to be acknowledged, either because `max_ack_pending` is reached or,
    /// from the idle heartbeat, because delivery went quiet.
    fn request_flow_control_ack(&mut self, only_when_full: bool, out: &mut Vec<Outbound>) {
        let pending = self.state.pending.len();
        let full = self.max_ack_pending > 0 && pending >= self.max_ack_pending;
        if self.config.ack_policy != AckPolicy::FlowControl
            || self.flow.outstanding.is_some()
            || pending == 0
            || (only_when_full && !full)
        {
            return;
        }
        self.send_flow_control(out);
    }

    /// Sends a flow-control request covering what is pending now.
    fn send_flow_control(&mut self, out: &mut Vec<Outbound>) {
        let fc = self.new_flow_control_subject();
        self.flow.outstanding = Some(fc.clone());
        self.flow.outstanding_size = self.flow.pending_bytes;
        out.push(Outbound::Status {
            to: self.deliver_subject.clone(),
            reply: Some(fc),
            headers: pull::flow_control_request(),
        });
    }

    /// Applies an ack. `tokens` come from [`parse_ack_subject`], `kind` from
    /// [`parse_ack_body`]; advisories (nak, term) go to `out`. For `+NXT` the caller then
    /// parses the rest as a pull request whose reply is the ack message's reply subject.
    pub(crate) fn process_ack(
        &mut self,
        tokens: &AckTokens,
        kind: &AckKind<'_>,
        now: u64,
        out: &mut Vec<Outbound>,
    ) -> AckOutcome {
        let mut outcome = AckOutcome {
            acked: SmallVec::new(),
            reply: !matches!(kind, AckKind::Next(_)),
        };
        self.last_ack = now;
        if self.config.ack_policy == AckPolicy::None {
            return outcome;
        }
        let sseq = tokens.stream_seq;
        match kind {
            AckKind::Ack | AckKind::Next(_) => {
                if self.config.ack_policy == AckPolicy::Explicit {
                    self.sample_ack(tokens, now, out);
                }
                self.ack(sseq, &mut outcome)
            }
            AckKind::Term(reason) => {
                let Some(p) = self.state.pending.get(&sseq).copied() else {
                    return outcome;
                };
                let deliveries = self.deliveries(sseq);
                self.remove_pending(sseq, &mut outcome);
                let reason = String::from_utf8_lossy(reason);
                out.push(self.advisory(
                    "MSG_TERMINATED",
                    advisory::body(
                        "io.nats.jetstream.advisory.v1.terminated",
                        &MsgEvent {
                            stream: &self.stream,
                            consumer: &self.name,
                            consumer_seq: Some(tokens.consumer_seq.max(p.consumer_seq)),
                            stream_seq: sseq,
                            deliveries,
                            reason: Some(reason.as_ref()).filter(|r| !r.is_empty()),
                        },
                    ),
                ));
            }
            AckKind::Nak(delay) => {
                if !self.state.pending.contains_key(&sseq) {
                    return outcome;
                }
                let deliveries = self.deliveries(sseq);
                out.push(self.advisory(
                    "MSG_NAKED",
                    advisory::body(
                        "io.nats.jetstream.advisory.v1.nak",
                        &MsgEvent {
                            stream: &self.stream,
                            consumer: &self.name,
                            consumer_seq: Some(tokens.consumer_seq),
                            stream_seq: sseq,
                            deliveries,
                            reason: None,
                        },
                    ),
                ));
                let Some(p) = self.state.pending.get_mut(&sseq) else {
                    return outcome;
                };
                match delay {
                    Some(d) if *d > 0 => {
                        p.deadline = now.saturating_add(*d);
                        self.ack_deadline_hint = self.ack_deadline_hint.min(p.deadline);
                    }
                    _ => {
                        if p.deadline != u64::MAX {
                            p.deadline = u64::MAX;
                            self.redeliver_queue.push_back(sseq);
                        }
                    }
                }
                self.dirty = true;
            }
            AckKind::Progress => {
                let wait = self.wait_for(self.deliveries(sseq));
                if let Some(p) = self.state.pending.get_mut(&sseq) {
                    p.timestamp = now;
                    if p.deadline != u64::MAX {
                        p.deadline = now.saturating_add(wait);
                    }
                    self.dirty = true;
                }
            }
            AckKind::Unknown => {}
        }
        outcome
    }

    fn ack(&mut self, sseq: u64, outcome: &mut AckOutcome) {
        if matches!(
            self.config.ack_policy,
            AckPolicy::All | AckPolicy::FlowControl
        ) {
            if sseq <= self.state.ack_floor.stream_seq {
                return;
            }
            let rest = self.state.pending.split_off(&(sseq + 1));
            let done = std::mem::replace(&mut self.state.pending, rest);
            for seq in done.into_keys() {
                self.state.redelivered.remove(&seq);
                outcome.acked.push(seq);
            }
            if self.state.pending.is_empty() {
                self.state.ack_floor = self.state.delivered;
            } else {
                self.advance_ack_floor();
            }
            self.dirty = true;
            return;
        }
        self.remove_pending(sseq, outcome);
    }

    /// A copy that reads the stream itself took every message this consumer would deliver
    /// through stream sequence `seq`: they count as delivered, and everything up to there is
    /// acknowledged (flow-control acks acknowledge all below them). Returns the stream
    /// sequences acknowledged, for work-queue and interest retention.
    pub(crate) fn copied_through(&mut self, seq: u64, store: &dyn MessageStore) -> Vec<u64> {
        let mut acked = Vec::new();
        if seq <= self.state.ack_floor.stream_seq {
            return acked;
        }
        let mut next = self.state.delivered.stream_seq + 1;
        while next <= seq {
            match self.load_next(store, next) {
                Ok(m) if m.seq <= seq => {
                    self.state.delivered.consumer_seq += 1;
                    acked.push(m.seq);
                    next = m.seq + 1;
                }
                _ => break,
            }
        }
        self.state.delivered.stream_seq = self.state.delivered.stream_seq.max(seq);
        let rest = self.state.pending.split_off(&(seq + 1));
        let done = std::mem::replace(&mut self.state.pending, rest);
        for s in done.into_keys() {
            self.state.redelivered.remove(&s);
            acked.push(s);
        }
        if self.state.pending.is_empty() {
            self.state.ack_floor = self.state.delivered;
        } else {
            self.advance_ack_floor();
        }
        self.num_pending_valid = false;
        self.dirty = true;
        acked
    }

    fn remove_pending(&mut self, sseq: u64, outcome: &mut AckOutcome) {
        if self.state.pending.remove(&sseq).is_some() {
            self.state.redelivered.remove(&sseq);
            outcome.acked.push(sseq);
            self.advance_ack_floor();
            self.dirty = true;
        }
    }

    /// Timers: moves messages whose ack wait (or backoff, or nak delay) ran out to the
    /// redelivery queue (dropping those at max_deliver, with an advisory), expires pull
    /// requests (408) and sends due heartbeats.
    pub(crate) fn check_timers(&mut self, now: u64, out: &mut Vec<Outbound>) {
        if now >= self.ack_deadline_hint {
            let mut due: Vec<u64> = Vec::new();
            let mut next = u64::MAX;
            for (&seq, p) in &self.state.pending {
                if p.deadline <= now {
                    due.push(seq);
                } else if p.deadline != u64::MAX {
                    next = next.min(p.deadline);
                }
            }
            self.ack_deadline_hint = next;
            for seq in due {
                if self.max_deliver > 0 && self.deliveries(seq) >= self.max_deliver {
                    self.drop_max_delivered(seq, out);
                } else if let Some(p) = self.state.pending.get_mut(&seq) {
                    p.deadline = u64::MAX;
                    self.redeliver_queue.push_back(seq);
                }
            }
        }
        self.expire_pull_requests(now, out);
        self.expire_pin(now, out);
        let hb = self.config.idle_heartbeat.max(0) as u64;
        if !self.config.is_pull()
            && hb > 0
            && self.push_active
            && now >= self.last_push_activity.saturating_add(hb)
        {
            self.last_push_activity = now;
            out.push(Outbound::Status {
                to: self.deliver_subject.clone(),
                reply: None,
                headers: pull::idle_heartbeat(
                    self.state.delivered.consumer_seq,
                    self.state.delivered.stream_seq,
                    self.flow.outstanding.as_deref(),
                ),
            });
            self.request_flow_control_ack(false, out);
        }
    }

    /// Answers expired pull requests with `408 Request Timeout` and sends due pull
    /// heartbeats.
    pub(crate) fn expire_pull_requests(&mut self, now: u64, out: &mut Vec<Outbound>) {
        let mut i = 0;
        while i < self.waiting.len() {
            let r = &mut self.waiting[i];
            if r.expires.is_some_and(|e| e <= now) {
                if let Some(r) = self.waiting.remove(i) {
                    out.push(Outbound::Status {
                        to: r.reply,
                        reply: None,
                        headers: pull::request_timeout(r.batch, r.max_bytes),
                    });
                }
                continue;
            }
            if r.heartbeat > 0 && r.next_heartbeat <= now {
                r.next_heartbeat = now.saturating_add(r.heartbeat);
                out.push(Outbound::Status {
                    to: r.reply.clone(),
                    reply: None,
                    headers: pull::idle_heartbeat(
                        self.state.delivered.consumer_seq,
                        self.state.delivered.stream_seq,
                        None,
                    ),
                });
            }
            i += 1;
        }
    }

    /// The earliest time [`Consumer::check_timers`] has something to do, ns.
    pub(crate) fn next_wakeup(&self) -> Option<u64> {
        let mut t = self.ack_deadline_hint;
        for r in &self.waiting {
            if let Some(e) = r.expires {
                t = t.min(e);
            }
            if r.heartbeat > 0 {
                t = t.min(r.next_heartbeat);
            }
        }
        let hb = self.config.idle_heartbeat.max(0) as u64;
        if !self.config.is_pull() && hb > 0 && self.push_active {
            t = t.min(self.last_push_activity.saturating_add(hb));
        }
        if let Some(end) = self.pause_end {
            t = t.min(end);
        }
        if let Some(pin) = &self.pin {
            t = t.min(pin.expires);
        }
        if let Some(at) = self.pacing.wake() {
            t = t.min(at);
        }
        (t != u64::MAX).then_some(t)
    }

    /// Time of the last pull request or ack, ns (inactivity of pull consumers).
    pub(crate) fn last_activity(&self) -> u64 {
        self.last_ack.max(self.last_delivery)
    }

    /// Consumer info as the API replies it.
    pub(crate) fn info(&mut self, store: &dyn MessageStore, now: u64) -> ConsumerInfo {
        let num_pending = self.num_pending(store);
        let active = |t: u64| (t > 0).then(|| natsd_conf::timestamp::rfc3339_ns(t));
        let pause_remaining = self
            .config
            .pause_until_ns()
            .filter(|&t| t > now)
            .map(|t| t - now);
        ConsumerInfo {
            stream_name: self.stream.clone(),
            name: self.name.clone(),
            created: natsd_conf::timestamp::rfc3339_ns(self.created),
            config: self.config.clone(),
            delivered: SequenceInfo {
                consumer_seq: self.state.delivered.consumer_seq,
                stream_seq: self.state.delivered.stream_seq,
                last_active: active(self.last_delivery),
            },
            ack_floor: SequenceInfo {
                consumer_seq: self.state.ack_floor.consumer_seq,
                stream_seq: self.state.ack_floor.stream_seq,
                last_active: active(self.last_ack),
            },
            num_ack_pending: self.state.pending.len() as u64,
            num_redelivered: self.state.redelivered.len() as u64,
            num_waiting: self.waiting.len() as u64,
            num_pending,
            // A sourcing consumer's copy reads the store itself and is always bound.
            push_bound: !self.config.is_pull() && (self.push_active || self.config.sourcing),
            paused: pause_remaining.is_some(),
            pause_remaining,
            ts: natsd_conf::timestamp::rfc3339_ns(now),
            priority_groups: self.priority_group_states(),
        }
    }
}

/// Smallest sequence whose timestamp is at or after `t` (timestamps grow with sequences).
pub(crate) fn first_seq_at_or_after(
    store: &dyn MessageStore,
    t: u64,
    first: u64,
    last: u64,
) -> u64 {
    let (mut lo, mut hi) = (first.max(1), last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match store.load_next_msg(b"", mid) {
            Ok(m) if m.seq < hi && m.ts < t => lo = m.seq + 1,
            _ => hi = mid,
        }
    }
    lo
}

fn headers_only(headers: Option<&[u8]>, size: usize) -> Bytes {
    with_header(headers, "Nats-Msg-Size", itoa::Buffer::new().format(size))
}

/// A header block with `key: value` appended (a new block when there was none).
fn with_header(headers: Option<&[u8]>, key: &str, value: &str) -> Bytes {
    Bytes::from(crate::proto::headers::append(headers, &[(key, value)]))
}

/// The fields of the advisories about one message (`max_deliver`, `nak`, `terminated`).
#[derive(serde::Serialize)]
struct MsgEvent<'a> {
    stream: &'a str,
    consumer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer_seq: Option<u64>,
    stream_seq: u64,
    deliveries: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}
