//! Routing a message to the subscriptions it matched: the one delivery path shared by client
//! publishes and by the server's own publishes (JetStream replies, advisories), plus internal
//! subscriptions through which server subsystems (JetStream) receive messages like any client.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::account::Account;
use crate::client::{Backpressure, ClientShared, Queued, SubRef, Subscription};
use crate::sublist::{SublistError, SublistResult};

/// A server subsystem receiving messages through a subscription. Called on the publisher's
/// task: implementations must only hand the message off (copy it into a queue), never block.
pub trait InternalHandler: Send + Sync {
    /// Takes one message; work that is cheaper done once per batch goes into
    /// [`FlushSet::defer`].
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet);
}

/// Work an internal subscriber put off until the end of the current batch of deliveries
/// (a stream writes all the messages one read brought with one write, then acks them).
pub trait Deferred: Send + Sync {
    /// Finishes the work; whatever it publishes goes through `flush`.
    fn complete(&self, flush: &mut FlushSet);
}

/// A message as an internal subscription receives it.
#[derive(Debug, Clone, Copy)]
pub struct InternalMsg<'a> {
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Receivers whose writers must be woken once the current batch of deliveries is done, and
/// deferred work to complete before that. Dropping it flushes, so nothing is left behind
/// when a batch ends early.
#[derive(Default)]
pub struct FlushSet {
    clients: Vec<Arc<ClientShared>>,
    deferred: Vec<Arc<dyn Deferred>>,
    /// What deliveries in this batch do about a receiver that is behind.
    backpressure: Backpressure,
    /// Receivers that fell behind in this batch, for a publisher that holds back.
    stalled: Vec<Arc<ClientShared>>,
}

impl Drop for FlushSet {
    fn drop(&mut self) {
        self.flush();
    }
}

impl FlushSet {
    /// How deliveries in this batch treat a receiver that is behind (default: queue anyway).
    pub fn set_backpressure(&mut self, backpressure: Backpressure) {
        self.backpressure = backpressure;
    }

    /// The receivers this batch left behind (each once); the publisher waits for them.
    pub fn take_stalled(&mut self) -> Vec<Arc<ClientShared>> {
        std::mem::take(&mut self.stalled)
    }

    fn stalled(&mut self, client: &Arc<ClientShared>) {
        if !self.stalled.iter().any(|c| Arc::ptr_eq(c, client)) {
            // Its writer is busy with the data that put it behind, but the first stalled
            // delivery may also have been the one that filled an empty buffer.
            self.clients.push(client.clone());
            self.stalled.push(client.clone());
        }
    }

    /// Run `work` once before this batch is flushed (a second registration is ignored).
    pub fn defer(&mut self, work: Arc<dyn Deferred>) {
        if !self
            .deferred
            .iter()
            .any(|d| std::ptr::addr_eq(Arc::as_ptr(d), Arc::as_ptr(&work)))
        {
            self.deferred.push(work);
        }
    }

    /// Complete the deferred work (which may defer more, or queue data for receivers).
    pub fn complete_deferred(&mut self) {
        while !self.deferred.is_empty() {
            for work in std::mem::take(&mut self.deferred) {
                work.complete(self);
            }
        }
    }

    pub fn push(&mut self, client: &Arc<ClientShared>) {
        self.clients.push(client.clone());
    }

    /// Remove `client` from the set; true if it was there.
    pub fn take(&mut self, client: &Arc<ClientShared>) -> bool {
        let before = self.clients.len();
        self.clients.retain(|c| !Arc::ptr_eq(c, client));
        self.clients.len() != before
    }

    /// Complete the deferred work, then wake every collected writer (a duplicate wake-up is
    /// harmless).
    pub fn flush(&mut self) {
        self.complete_deferred();
        for client in self.clients.drain(..) {
            client.flush_soon();
        }
    }
}

/// Deliver to one subscription (echo suppression is the caller's business); false if the
/// subscription could not take the message.
pub(crate) fn deliver(
    sub: &SubRef,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
    flush: &mut FlushSet,
) -> bool {
    if let Some(handler) = &sub.internal {
        handler.deliver(
            &InternalMsg {
                subject,
                reply,
                headers,
                payload,
            },
            flush,
        );
        sub.delivered.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    let client = &sub.client;
    if sub.deny_filtered.load(Ordering::Relaxed) {
        if let Some(perms) = client.permissions.load().as_ref() {
            if perms.delivery_denied(subject, sub.queue.as_deref()) {
                return false;
            }
        }
    }
    let max = sub.max.load(Ordering::Relaxed);
    if max > 0 {
        let n = sub.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if n > max {
            return false;
        }
        if n == max {
            remove_subscription(sub);
        }
    } else {
        sub.delivered.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(reply) = reply {
        client.record_response_permission(reply);
    }
    match client.queue_msg(
        subject,
        &sub.sid,
        reply,
        headers,
        payload,
        flush.backpressure,
    ) {
        Queued::NeedsFlush => {
            flush.push(client);
            true
        }
        Queued::Pending => true,
        Queued::Stalled => {
            flush.stalled(client);
            true
        }
        Queued::Dropped => false,
    }
}

/// Deliver a matched message: every plain subscription, and one member of each queue group
/// (a random start, skipping members that cannot take it). `skip` suppresses delivery to one
/// connection (echo off). Returns the number of deliveries.
pub(crate) fn deliver_all(
    result: &SublistResult<SubRef>,
    skip: Option<u64>,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
    flush: &mut FlushSet,
) -> usize {
    let mut delivered = 0;
    let skipped = |sub: &SubRef| sub.internal.is_none() && Some(sub.client.cid) == skip;
    for sub in &result.plain {
        if !skipped(sub) && deliver(sub, subject, reply, headers, payload, flush) {
            delivered += 1;
        }
    }
    for group in &result.queues {
        let n = group.members.len();
        if n == 0 {
            continue;
        }
        let start = fastrand::usize(..n);
        for i in 0..n {
            let sub = &group.members[(start + i) % n];
            if !skipped(sub) && deliver(sub, subject, reply, headers, payload, flush) {
                delivered += 1;
                break;
            }
        }
    }
    delivered
}

/// Publish from the server itself into `account` (JetStream acks and deliveries, advisories).
pub fn publish(
    account: &Account,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
) -> usize {
    let mut flush = FlushSet::default();
    let n = publish_into(account, subject, reply, headers, payload, &mut flush);
    flush.flush();
    n
}

/// [`publish`] as part of a caller's batch: receivers are woken when `flush` is.
pub fn publish_into(
    account: &Account,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
    flush: &mut FlushSet,
) -> usize {
    let result = account.sublist.match_subject(subject);
    deliver_all(&result, None, subject, reply, headers, payload, flush)
}

/// Remove a subscription from its account and from its connection. The subscription may
/// belong to another connection (auto-unsubscribe reached while someone else delivered).
pub(crate) fn remove_subscription(sub: &SubRef) {
    if let Some(account) = sub.client.account() {
        account
            .sublist
            .remove(&sub.subject, sub.queue.as_deref(), sub);
    }
    sub.client.forget_sub(sub);
}

static NEXT_INTERNAL_SID: AtomicU64 = AtomicU64::new(1);

/// Subscribe a server subsystem to `subject` in `account`.
pub fn subscribe_internal(
    account: &Arc<Account>,
    subject: &[u8],
    queue: Option<&[u8]>,
    handler: Arc<dyn InternalHandler>,
) -> Result<SubRef, SublistError> {
    // Internal subscriptions have no connection; a detached stand-in keeps the one
    // Subscription shape (it never gets a socket, so nothing is ever queued on it).
    let stand_in = ClientShared::new(0, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), usize::MAX);
    let sid = NEXT_INTERNAL_SID
        .fetch_add(1, Ordering::Relaxed)
        .to_string();
    let sub = SubRef(Arc::new(Subscription {
        client: stand_in,
        sid: sid.as_bytes().into(),
        subject: subject.into(),
        queue: queue.map(Into::into),
        max: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        deny_filtered: AtomicBool::new(false),
        internal: Some(handler),
    }));
    account.sublist.insert(subject, queue, sub.clone())?;
    Ok(sub)
}

/// Remove an internal subscription from `account`.
pub fn unsubscribe_internal(account: &Account, sub: &SubRef) -> bool {
    account
        .sublist
        .remove(&sub.subject, sub.queue.as_deref(), sub)
}
