//! Priority groups of pull consumers (`priority_policy` with `priority_groups`), as
//! nats-server 2.15 runs them:
//!
//! - **overflow**: a request with `min_pending` / `min_ack_pending` is passed over (moved to
//!   the back of the queue) until the consumer has at least that many messages pending or
//!   acks outstanding; requests without them are served as usual.
//! - **pinned_client**: the first request without a pin id gets one (a `Nats-Pin-Id` on every
//!   message it receives, a `PINNED` advisory); from then on only requests carrying that id are
//!   served, requests without an id wait, and requests with another id get
//!   `423 Nats-Wrong-Pin-Id`. A pull request with the pin id keeps the pin for another
//!   `priority_timeout`; when that runs out (or `$JS.API.CONSUMER.UNPIN` asks) the pin goes
//!   (`UNPINNED` advisory) and the next request without an id gets a new one.
//! - **prioritized**: waiting requests are ordered by `priority` (0 first, 9 last), first come
//!   first served within a priority.
//!
//! Whatever the policy, a request that still owes messages after one goes back to the end of
//! the queue (of its priority), so concurrent requests share the messages.

use bytes::Bytes;

use super::config::PriorityPolicy;
use super::pull::{self, PullRequest};
use super::{advisory, Consumer, Outbound};
use crate::js_errors::{ApiError, JsError};

/// The pinned client of a pinned-client consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pin {
    /// The id handed out (`Nats-Pin-Id`).
    pub(super) id: String,
    /// The group it was pinned in.
    pub(super) group: String,
    /// When it was pinned, ns.
    pub(super) since: u64,
    /// When it lapses unless a pull request with the id renews it, ns.
    pub(super) expires: u64,
}

/// `priority_groups` of consumer info: the group, and its pinned client if any.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PriorityGroupState {
    /// The group.
    pub group: String,
    /// The pin id currently held.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pinned_client_id: String,
    /// When it was pinned (Go's zero time when nobody is).
    pub pinned_ts: String,
}

impl Consumer {
    /// nats-server's checks of a pull request's priority group fields, and the renewal of the
    /// pin by a request that carries it. An error is the status frame to answer with.
    pub(super) fn check_priority_group(
        &mut self,
        req: &PullRequest,
        now: u64,
    ) -> Result<(), Vec<u8>> {
        let policy = self.config.priority_policy;
        let Some(g) = &req.group else {
            return Ok(());
        };
        if (g.min_pending != 0 || g.min_ack_pending != 0) && policy != PriorityPolicy::Overflow {
            return Err(pull::status(
                400,
                "Bad Request - Not a Overflow Priority consumer",
            ));
        }
        if !g.id.is_empty() && policy != PriorityPolicy::PinnedClient {
            return Err(pull::status(
                400,
                "Bad Request - Not a Pinned Client Priority consumer",
            ));
        }
        if !(0..=9).contains(&g.priority) {
            return Err(pull::status(
                400,
                "Bad Request - Priority must be between 0 and 9",
            ));
        }
        if policy == PriorityPolicy::None {
            return Ok(());
        }
        if g.group.is_empty() {
            return Err(pull::status(400, "Bad Request - Priority Group missing"));
        }
        if !self.config.priority_groups.contains(&g.group) {
            return Err(pull::status(400, "Bad Request - Invalid Priority Group"));
        }
        let ttl = self.config.priority_timeout.max(0) as u64;
        if let Some(pin) = &mut self.pin {
            if g.id == pin.id {
                pin.expires = now.saturating_add(ttl);
            } else if !g.id.is_empty() {
                return Err(pull::status(423, "Nats-Pin-Id mismatch"));
            }
        }
        Ok(())
    }

    /// Queues a request: in priority order for a prioritized consumer, else at the back.
    pub(super) fn enqueue(&mut self, req: PullRequest) {
        if self.config.priority_policy != PriorityPolicy::Prioritized {
            self.waiting.push_back(req);
            return;
        }
        let p = priority(&req);
        let at = self
            .waiting
            .iter()
            .position(|r| priority(r) > p)
            .unwrap_or(self.waiting.len());
        self.waiting.insert(at, req);
    }

    /// The waiting request the next message (`size` bytes as nats-server counts them) goes
    /// to, as nats-server's `nextWaiting` picks it: expired requests are answered 408,
    /// requests the priority policy passes over are moved back, requests nobody listens to
    /// any more are dropped, a request whose `max_bytes` the message exceeds is answered 409. The chosen request owes one message fewer and
    /// moves to the back (or leaves the queue when done). `None`: nobody may take it now.
    pub(super) fn next_waiting(
        &mut self,
        size: u64,
        now: u64,
        out: &mut Vec<Outbound>,
        has_interest: &dyn Fn(&[u8]) -> bool,
    ) -> Option<Bytes> {
        let policy = self.config.priority_policy;
        let mut passed_over = 0;
        while let Some(req) = self.waiting.front() {
            if req.expires.is_some_and(|e| e <= now) {
                let r = self.waiting.pop_front()?;
                out.push(status_to(
                    r.reply,
                    pull::request_timeout(r.batch, r.max_bytes),
                ));
                continue;
            }
            let id = req.group.as_ref().map_or("", |g| g.id.as_str());
            let mut pinned_now = false;
            match &self.pin {
                None if policy == PriorityPolicy::PinnedClient => {
                    if !id.is_empty() {
                        let r = self.waiting.pop_front()?;
                        out.push(status_to(r.reply, pull::wrong_pin_id(r.batch, r.max_bytes)));
                        continue;
                    }
                    pinned_now = self.pin_front(now, out);
                }
                Some(pin) if id != pin.id => {
                    if id.is_empty() {
                        passed_over += 1;
                        if !self.pass_over(passed_over) {
                            return None;
                        }
                    } else {
                        let r = self.waiting.pop_front()?;
                        out.push(status_to(r.reply, pull::wrong_pin_id(r.batch, r.max_bytes)));
                    }
                    continue;
                }
                _ => {}
            }
            if policy == PriorityPolicy::Overflow && !self.overflowing(self.waiting.front()?) {
                passed_over += 1;
                if !self.pass_over(passed_over) {
                    return None;
                }
                continue;
            }
            if !has_interest(&self.waiting.front()?.reply) {
                self.waiting.pop_front();
                if pinned_now {
                    self.pin = None;
                }
                continue;
            }
            let req = self.waiting.front_mut()?;
            if req.max_bytes > 0 && size > req.max_bytes {
                let r = self.waiting.pop_front()?;
                out.push(status_to(
                    r.reply,
                    pull::max_bytes_exceeded(r.batch, r.max_bytes),
                ));
                if pinned_now {
                    self.pin = None;
                }
                continue;
            }
            req.batch -= 1;
            req.delivered += 1;
            if req.heartbeat > 0 {
                req.next_heartbeat = now.saturating_add(req.heartbeat);
            }
            let bytes_done = req.max_bytes > 0 && {
                req.max_bytes -= size;
                req.max_bytes == 0
            };
            let reply = req.reply.clone();
            let done = req.batch == 0 || bytes_done;
            if done {
                self.waiting.pop_front();
            } else if self.waiting.len() > 1 {
                let r = self.waiting.pop_front()?;
                self.enqueue(r);
            }
            return Some(reply);
        }
        None
    }

    /// Moves the front request to the back; false once every request has been passed over.
    fn pass_over(&mut self, passed_over: usize) -> bool {
        if let Some(r) = self.waiting.pop_front() {
            self.waiting.push_back(r);
        }
        passed_over < self.waiting.len()
    }

    /// Overflow: may `req` be served now? (Without marks it always may; with them, once
    /// either is reached.)
    fn overflowing(&self, req: &PullRequest) -> bool {
        let Some(g) = &req.group else { return true };
        if g.min_pending <= 0 && g.min_ack_pending <= 0 {
            return true;
        }
        (g.min_pending > 0 && g.min_pending as u64 <= self.num_pending)
            || (g.min_ack_pending > 0 && g.min_ack_pending as usize <= self.state.pending.len())
    }

    /// Pins the front request's client (when the request names a group): a new id, recorded
    /// on the request so its further messages match, and the `PINNED` advisory.
    fn pin_front(&mut self, now: u64, out: &mut Vec<Outbound>) -> bool {
        let ttl = self.config.priority_timeout.max(0) as u64;
        let Some(g) = self
            .waiting
            .front_mut()
            .and_then(|r| r.group.as_mut())
            .filter(|g| !g.group.is_empty())
        else {
            return false;
        };
        let id: String = (0..22).map(|_| fastrand::alphanumeric()).collect();
        g.id = id.clone();
        let group = g.group.clone();
        out.push(self.group_advisory(&group, Some(&id), None));
        self.pin = Some(Pin {
            id,
            group,
            since: now,
            expires: now.saturating_add(ttl),
        });
        true
    }

    /// Drops the pin (`reason`: `timeout` or `admin`) with the `UNPINNED` advisory.
    fn unpin_with(&mut self, group: &str, reason: &str, out: &mut Vec<Outbound>) {
        self.pin = None;
        out.push(self.group_advisory(group, None, Some(reason)));
    }

    /// `$JS.EVENT.ADVISORY.CONSUMER.PINNED.<stream>.<consumer>` with the new `pinned_id`, or
    /// `UNPINNED` with the `reason`.
    fn group_advisory(
        &self,
        group: &str,
        pinned_id: Option<&str>,
        reason: Option<&str>,
    ) -> Outbound {
        #[derive(serde::Serialize)]
        struct GroupEvent<'a> {
            account: &'a str,
            stream: &'a str,
            consumer: &'a str,
            group: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            pinned_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'a str>,
        }
        let (kind, event) = if pinned_id.is_some() {
            (
                "PINNED",
                "io.nats.jetstream.advisory.v1.consumer_group_pinned",
            )
        } else {
            (
                "UNPINNED",
                "io.nats.jetstream.advisory.v1.consumer_group_unpinned",
            )
        };
        let body = GroupEvent {
            account: &self.account,
            stream: &self.stream,
            consumer: &self.name,
            group,
            pinned_id,
            reason,
        };
        self.advisory(kind, advisory::body(event, &body))
    }

    /// `$JS.API.CONSUMER.UNPIN`: the group's pin goes; the next request without an id gets a
    /// new one.
    pub(crate) fn unpin(&mut self, group: &str, out: &mut Vec<Outbound>) -> Result<(), ApiError> {
        if !self.config.priority_groups.iter().any(|g| g == group) {
            return Err(JsError::ConsumerInvalidPriorityGroup.into());
        }
        self.unpin_with(group, "admin", out);
        Ok(())
    }

    /// Lets a lapsed pin go (from the timers).
    pub(super) fn expire_pin(&mut self, now: u64, out: &mut Vec<Outbound>) {
        if let Some(pin) = self.pin.as_ref().filter(|p| p.expires <= now) {
            let group = pin.group.clone();
            self.unpin_with(&group, "timeout", out);
        }
    }

    /// The `Nats-Pin-Id` a delivery to a pinned client carries.
    pub(super) fn pin_id(&self) -> Option<&str> {
        (self.config.priority_policy == PriorityPolicy::PinnedClient)
            .then_some(self.pin.as_ref()?.id.as_str())
    }

    /// `priority_groups` of consumer info (nats-server reports the first group).
    pub(super) fn priority_group_states(&self) -> Vec<PriorityGroupState> {
        let Some(group) = self.config.priority_groups.first() else {
            return Vec::new();
        };
        vec![PriorityGroupState {
            group: group.clone(),
            pinned_client_id: self.pin.as_ref().map(|p| p.id.clone()).unwrap_or_default(),
            pinned_ts: natsd_conf::timestamp::rfc3339_ns(self.pin.as_ref().map_or(0, |p| p.since)),
        }]
    }
}

/// A request's priority; requests without a group come after every priority.
fn priority(req: &PullRequest) -> i64 {
    req.group
        .as_ref()
        .map_or(i64::from(i32::MAX), |g| g.priority)
}

fn status_to(to: Bytes, headers: Vec<u8>) -> Outbound {
    Outbound::Status {
        to,
        reply: None,
        headers,
    }
}
