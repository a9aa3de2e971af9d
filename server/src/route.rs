//! Routing a message to the subscriptions it matched: the one delivery path shared by client
//! publishes and by the server's own publishes (JetStream replies, advisories), plus internal
//! subscriptions through which server subsystems (JetStream) receive messages like any client.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::account::Account;
use crate::outbound::Queued;
use crate::sublist::{SublistError, SublistResult};
use crate::subscription::{FlushSet, InternalHandler, InternalMsg, SubRef, Subscription, Target};

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
    let client = match &sub.target {
        Target::Client { out, .. } => out,
        Target::Internal(handler) => {
            let taken = handler.deliver_counted(
                &InternalMsg {
                    subject,
                    reply,
                    headers,
                    payload,
                },
                flush,
            );
            if taken {
                sub.delivered.fetch_add(1, Ordering::Relaxed);
            }
            return taken;
        }
    };
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
    let skipped = |sub: &SubRef| skip.is_some() && sub.client_id() == skip;
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
pub(crate) fn publish(
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
pub(crate) fn publish_into(
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

/// End a subscription whose auto-unsubscribe limit a delivery reached: its connection removes
/// it from the account and from its own records. The subscription may belong to another
/// connection than the publisher's.
pub(crate) fn remove_subscription(sub: &SubRef) {
    if let Target::Client { owner, .. } = &sub.target {
        if let Some(owner) = owner.upgrade() {
            owner.forget(sub);
        }
    }
}

static NEXT_INTERNAL_SID: AtomicU64 = AtomicU64::new(1);

/// Subscribe a server subsystem to `subject` in `account`.
pub(crate) fn subscribe_internal(
    account: &Arc<Account>,
    subject: &[u8],
    queue: Option<&[u8]>,
    handler: Arc<dyn InternalHandler>,
) -> Result<SubRef, SublistError> {
    let sid = NEXT_INTERNAL_SID
        .fetch_add(1, Ordering::Relaxed)
        .to_string();
    let sub = SubRef(Arc::new(Subscription {
        sid: sid.as_bytes().into(),
        subject: subject.into(),
        queue: queue.map(Into::into),
        max: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        deny_filtered: AtomicBool::new(false),
        target: Target::Internal(handler),
    }));
    account.sublist.insert(subject, queue, sub.clone())?;
    Ok(sub)
}

/// Remove an internal subscription from `account`.
pub(crate) fn unsubscribe_internal(account: &Account, sub: &SubRef) -> bool {
    account
        .sublist
        .remove(&sub.subject, sub.queue.as_deref(), sub)
}
