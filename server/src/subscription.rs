//! Subscriptions, and the batch a delivery runs in.
//!
//! A [`Subscription`] is shared between its connection and its account's sublist. It delivers
//! either into a client connection's outbound buffer or to a server subsystem through an
//! [`InternalHandler`]. Deliveries are made in batches ([`FlushSet`]): receivers are woken once
//! per batch, work that is cheaper done once per batch is deferred to its end, and receivers
//! that fell behind are collected for a publisher that holds back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::outbound::{Backpressure, ClientId, Outbound};

/// Whoever keeps a subscription besides its account's sublist (the client connection's sid
/// map), told when a delivery ends the subscription (auto-unsubscribe reached).
pub trait SubOwner: Send + Sync {
    /// Remove `sub` from its account and from the owner's own records.
    fn forget(&self, sub: &SubRef);
}

/// Where a subscription's messages go.
pub enum Target {
    /// A client connection: its outbound buffer, and the connection that holds the subscription.
    Client {
        out: Arc<Outbound>,
        owner: Weak<dyn SubOwner>,
    },
    /// A server subsystem (JetStream).
    Internal(Arc<dyn InternalHandler>),
}

/// A subscription, shared between its connection and the account's sublist.
pub struct Subscription {
    pub sid: Box<[u8]>,
    pub subject: Box<[u8]>,
    pub queue: Option<Box<[u8]>>,
    /// Auto-unsubscribe after this many deliveries; 0 = never.
    pub(crate) max: AtomicU64,
    pub(crate) delivered: AtomicU64,
    /// Some subscribe-deny pattern overlaps this subscription: check each delivery.
    pub(crate) deny_filtered: AtomicBool,
    pub target: Target,
}

impl Subscription {
    /// A client connection's subscription.
    pub fn client(
        out: Arc<Outbound>,
        owner: Weak<dyn SubOwner>,
        sid: &[u8],
        subject: &[u8],
        queue: Option<&[u8]>,
        deny_filtered: bool,
    ) -> Subscription {
        Subscription {
            sid: sid.into(),
            subject: subject.into(),
            queue: queue.map(Into::into),
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            deny_filtered: AtomicBool::new(deny_filtered),
            target: Target::Client { out, owner },
        }
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// The auto-unsubscribe limit (`UNSUB sid max`); 0 when there is none.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The connection this subscription delivers to; `None` for a server subsystem.
    pub fn client_id(&self) -> Option<ClientId> {
        match &self.target {
            Target::Client { out, .. } => Some(out.cid),
            Target::Internal(_) => None,
        }
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

/// A subscription a closed connection held, as `/connz?state=closed&subs=detail` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedSub {
    pub subject: String,
    pub queue: Option<String>,
    pub sid: String,
    pub msgs: u64,
    pub max: u64,
}

impl ClosedSub {
    pub(crate) fn of(sub: &SubRef) -> ClosedSub {
        ClosedSub {
            subject: String::from_utf8_lossy(&sub.subject).into_owned(),
            queue: sub
                .queue
                .as_deref()
                .map(|q| String::from_utf8_lossy(q).into_owned()),
            sid: String::from_utf8_lossy(&sub.sid).into_owned(),
            msgs: sub.delivered(),
            max: sub.max(),
        }
    }
}

/// A server subsystem receiving messages through a subscription. Called on the publisher's
/// task: implementations must only hand the message off (copy it into a queue), never block.
pub trait InternalHandler: Send + Sync {
    /// Takes one message; work that is cheaper done once per batch goes into
    /// [`FlushSet::defer`].
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet);

    /// As [`deliver`](Self::deliver), saying whether the message was taken. A handler that
    /// passes messages on to another account (an import) answers for the receivers there,
    /// so a request nobody there takes gets "no responders", as on nats-server.
    fn deliver_counted(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) -> bool {
        self.deliver(msg, flush);
        true
    }
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

/// A client connection as a server subsystem reports the requester it answers (nats-server's
/// `ClientInfo`, as JSON in the API audit advisory and `Nats-Request-Info`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClientInfo {
    /// When the connection was accepted (RFC 3339).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub start: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub id: u64,
    pub acc: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ver: String,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub rtt: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server: String,
    /// A JWT user's JWT as presented (bearer tokens included, as nats-server reports it), the
    /// key that signed it, the JWT's `name` and its tags.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub jwt: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub issuer_key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name_tag: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_type: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The connection whose read a batch of deliveries comes from.
pub trait Publisher: Send + Sync {
    /// Who it is, as of now (`server` left for the caller).
    fn client_info(&self) -> ClientInfo;
}

/// Receivers whose writers must be woken once the current batch of deliveries is done, and
/// deferred work to complete before that. Dropping it flushes, so nothing is left behind
/// when a batch ends early.
#[derive(Default)]
pub struct FlushSet {
    /// The client connection publishing this batch (none for the server's own publishes).
    publisher: Option<Arc<dyn Publisher>>,
    clients: Vec<Arc<Outbound>>,
    deferred: Vec<Arc<dyn Deferred>>,
    /// What deliveries in this batch do about a receiver that is behind.
    pub(crate) backpressure: Backpressure,
    /// Receivers that fell behind in this batch, for a publisher that holds back.
    stalled: Vec<Arc<Outbound>>,
}

impl Drop for FlushSet {
    fn drop(&mut self) {
        self.flush();
    }
}

impl FlushSet {
    /// The batches of this set are a client connection's publishes.
    pub fn set_publisher(&mut self, publisher: Arc<dyn Publisher>) {
        self.publisher = Some(publisher);
    }

    /// The client connection publishing this batch, if a client's read made it.
    pub fn publisher(&self) -> Option<&dyn Publisher> {
        self.publisher.as_deref()
    }

    /// How deliveries in this batch treat a receiver that is behind (default: queue anyway).
    pub fn set_backpressure(&mut self, backpressure: Backpressure) {
        self.backpressure = backpressure;
    }

    /// The receivers this batch left behind (each once); the publisher waits for them.
    pub fn take_stalled(&mut self) -> Vec<Arc<Outbound>> {
        std::mem::take(&mut self.stalled)
    }

    pub(crate) fn stalled(&mut self, client: &Arc<Outbound>) {
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

    pub fn push(&mut self, client: &Arc<Outbound>) {
        self.clients.push(client.clone());
    }

    /// Remove `client` from the set; true if it was there.
    pub fn take(&mut self, client: &Arc<Outbound>) -> bool {
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
