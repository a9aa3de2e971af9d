//! Routing between accounts through the imports and exports of the configuration (checked
//! by `config::imports` when it is loaded).
//!
//! Everything here is an internal subscription, so the publish path of an account without
//! imports or exports is untouched:
//! - a **stream import** of `from` by account B from account A is a subscription on `from` in
//!   A whose handler re-publishes the message into B under the imported subject (`to`, or
//!   `prefix.from`); nats-server reaches the same receivers with shadow subscriptions it
//!   adds to A for B's subscribers.
//! - a **service import** is a subscription in the importer on its local subject whose
//!   handler re-publishes the request into the exporter under the exported subject, with a
//!   reply subject of the exporter's (`_R_.<6>.<6>`) mapped back to the requester's reply.
//!   One wildcard subscription per exporting account on `_R_.<its prefix>.>` takes the
//!   responses and sends each to the requester in its own account: one for a singleton
//!   export, any number until an empty one for stream and chunked exports, and none once the
//!   export's `response_threshold` passed without one.
//!
//! As on nats-server, a message that arrived through a stream import is not imported again
//! (no chains of stream imports, and it reaches no service import), and a message that
//! arrived through a service import (a request or a response) is not exported as a stream.
//! Service imports may chain; one that would pass through the same import twice is dropped.
//!
//! # Invariants
//! The hop a delivery is in is kept per thread ([`HOP`]): deliveries are synchronous, so the
//! handler that re-publishes sets it for the nested delivery and restores it afterwards.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::account::Account;
use crate::config::{AccountConfig, ExportKind, Import, ResponseType};
use crate::mapping::Mapped;
use crate::route;
use crate::subject::is_literal;
use crate::subject_transform::{is_reference, references_as_wildcards, SubjectTransform};
use crate::subscription::SubRef;
use crate::subscription::{ClientInfo, FlushSet, InternalHandler, InternalMsg};

/// nats-server's default `response_threshold`: a reply mapping lives this long without a
/// response.
pub(crate) const DEFAULT_RESPONSE_THRESHOLD: Duration = Duration::from_secs(120);

/// The header a request gets when it crosses a service import (nats-server's
/// `ClientInfoHdr`), naming the requester's account.
pub(crate) const REQUEST_INFO_HEADER: &str = "Nats-Request-Info";

/// Replies that cross a service import unchanged: acks of JetStream messages pulled through
/// another account's API go straight to the consumer, as on nats-server.
const JS_ACK_PREFIX: &[u8] = b"$JS.ACK.";

/// Service imports one request may pass through before it is dropped (a loop the load-time
/// cycle check did not see).
const MAX_SERVICE_HOPS: usize = 8;

/// The hop the current delivery is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hop {
    /// A message as its publisher sent it.
    Direct,
    /// Arrived through a stream import.
    Stream,
    /// Arrived through a service import (a request or its response).
    Service,
}

thread_local! {
    static HOP: Cell<Hop> = const { Cell::new(Hop::Direct) };
    /// The service imports the current request passed through, by handler address.
    static SERVICE_PATH: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Sets the hop for a nested delivery and restores the previous one when dropped.
struct HopGuard(Hop);

impl HopGuard {
    fn enter(hop: Hop) -> HopGuard {
        HopGuard(HOP.with(|h| h.replace(hop)))
    }
}

impl Drop for HopGuard {
    fn drop(&mut self) {
        HOP.with(|h| h.set(self.0));
    }
}

fn current_hop() -> Hop {
    HOP.with(Cell::get)
}

/// How an imported subject becomes the subject on the other side.
#[derive(Debug)]
enum Mapping {
    /// The subject stays as published (wildcard import without a different `to`).
    Same,
    /// Always this literal subject (a literal import).
    Fixed(String),
    /// `prefix.` + the subject.
    Prefix(String),
    /// Wildcards placed by position.
    Transform(SubjectTransform),
}

impl Mapping {
    /// Maps subjects matching `src` to `dest`: the n-th `*` of one is the n-th `*` of the
    /// other, `>` is `>`.
    fn new(src: &str, dest: &str) -> Mapping {
        if is_literal(src.as_bytes()) {
            return Mapping::Fixed(dest.to_string());
        }
        if src == dest {
            return Mapping::Same;
        }
        let mut n = 0;
        let numbered: Vec<String> = dest
            .split('.')
            .map(|t| {
                if t == "*" {
                    n += 1;
                    format!("${n}")
                } else {
                    t.to_string()
                }
            })
            .collect();
        match SubjectTransform::new(src, &numbered.join(".")) {
            Ok(Some(t)) => Mapping::Transform(t),
            // The loader checked the subjects; an unmappable pair keeps the subject.
            _ => Mapping::Same,
        }
    }

    /// A service import's: requests on `local` go to `remote`. A token `$N` of `local` stands
    /// for the N-th `*` of `remote` (subscribed to as `*`), so the wildcards may change order.
    fn service(local: &str, remote: &str) -> Mapping {
        let src = references_as_wildcards(local);
        if src == local {
            return Mapping::new(local, remote);
        }
        // The k-th `*` of `remote` takes the wildcard of `local` that says `$k`: `$m` if that
        // is the m-th wildcard of `local`.
        let wildcards: Vec<&str> = local
            .split('.')
            .filter(|t| *t == "*" || is_reference(t))
            .collect();
        let mut k = 0;
        let mut dest = Vec::new();
        for token in remote.split('.') {
            if token != "*" {
                dest.push(token.to_string());
                continue;
            }
            k += 1;
            let named = format!("${k}");
            match wildcards.iter().position(|t| *t == named) {
                Some(m) => dest.push(format!("${}", m + 1)),
                None => return Mapping::new(&src, remote),
            }
        }
        match SubjectTransform::new(&src, &dest.join(".")) {
            Ok(Some(t)) => Mapping::Transform(t),
            _ => Mapping::new(&src, remote),
        }
    }

    fn apply<'a>(&'a self, subject: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
        match self {
            Mapping::Same => subject,
            Mapping::Fixed(s) => s.as_bytes(),
            Mapping::Prefix(p) => {
                buf.clear();
                buf.extend_from_slice(p.as_bytes());
                buf.extend_from_slice(subject);
                buf
            }
            Mapping::Transform(t) => {
                let Some(mapped) = std::str::from_utf8(subject).ok().and_then(|s| t.apply(s))
                else {
                    return subject;
                };
                buf.clear();
                buf.extend_from_slice(mapped.as_bytes());
                buf
            }
        }
    }
}

/// Whether an import admitted by an activation JWT that expires at `expires` (Unix seconds)
/// has lapsed: it then routes nothing, as nats-server drops it when the activation expires.
fn lapsed(expires: Option<i64>) -> bool {
    expires.is_some_and(|t| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        i64::try_from(now).unwrap_or(i64::MAX) >= t
    })
}

/// Whether `import` routes nothing any more (its activation expired).
pub(crate) fn import_lapsed(import: &Import) -> bool {
    lapsed(import.expires)
}

/// A stream import: subscribed in the exporting account, delivers into the importer.
struct StreamImport {
    importer: Weak<Account>,
    mapping: Mapping,
    expires: Option<i64>,
}

impl InternalHandler for StreamImport {
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) {
        self.deliver_counted(msg, flush);
    }

    fn deliver_counted(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) -> bool {
        if current_hop() != Hop::Direct || lapsed(self.expires) {
            return false;
        }
        let Some(importer) = self.importer.upgrade() else {
            return false;
        };
        let mut buf = Vec::new();
        let subject = self.mapping.apply(msg.subject, &mut buf);
        let _hop = HopGuard::enter(Hop::Stream);
        route::publish_into(
            &importer,
            subject,
            msg.reply,
            msg.headers,
            msg.payload,
            flush,
        ) > 0
    }
}

/// A service import: subscribed in the importing account on its local subject, re-publishes
/// requests into the exporter.
struct ServiceImport {
    importer_name: String,
    /// `share`: the requester's connection details go into `Nats-Request-Info`.
    share: bool,
    /// This server's name, for `Nats-Request-Info` with `share`.
    server_name: String,
    importer: Weak<Account>,
    exporter: Weak<Account>,
    mapping: Mapping,
    response_type: ResponseType,
    threshold: Duration,
    responses: Arc<Responses>,
    expires: Option<i64>,
}

impl ServiceImport {
    /// `Nats-Request-Info` as nats-server writes it: the requesting account and its
    /// connection's round-trip time, and with `share` the whole connection (nats-server's
    /// `ClientInfo`).
    fn request_info(&self, flush: &FlushSet) -> String {
        let client = flush.publisher().map(|p| p.client_info());
        let info = match client {
            Some(mut c) if self.share => {
                c.acc = self.importer_name.clone();
                c.server = self.server_name.clone();
                c
            }
            other => ClientInfo {
                acc: self.importer_name.clone(),
                rtt: other.map_or(0, |c| c.rtt),
                ..ClientInfo::default()
            },
        };
        serde_json::to_string(&info).unwrap_or_default()
    }
}

impl InternalHandler for ServiceImport {
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) {
        self.deliver_counted(msg, flush);
    }

    fn deliver_counted(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) -> bool {
        if current_hop() == Hop::Stream || lapsed(self.expires) {
            return false;
        }
        let me = self as *const ServiceImport as usize;
        let looped = SERVICE_PATH.with(|p| {
            let p = p.borrow();
            p.contains(&me) || p.len() >= MAX_SERVICE_HOPS
        });
        if looped {
            return false;
        }
        let Some(exporter) = self.exporter.upgrade() else {
            return false;
        };
        let mut buf = Vec::new();
        let subject = self.mapping.apply(msg.subject, &mut buf);
        // The exporting account's own subject mappings apply to what enters it, as nats-server
        // applies them there.
        let exporter_mapped;
        let subject = match exporter.map_subject(subject) {
            None => subject,
            Some(Mapped::To(s)) => {
                exporter_mapped = s;
                exporter_mapped.as_bytes()
            }
            Some(Mapped::Dropped) => return false,
        };
        let mut mapped_reply = None;
        let reply = match msg.reply {
            Some(r) if r.starts_with(JS_ACK_PREFIX) => Some(r),
            Some(r) => {
                let new = self.responses.add(Pending {
                    requester: self.importer.clone(),
                    reply: r.into(),
                    response_type: self.response_type,
                    threshold: self.threshold,
                    last: Instant::now(),
                });
                mapped_reply = Some(new);
                mapped_reply.as_deref().map(str::as_bytes)
            }
            None => None,
        };
        let headers = with_request_info(msg.headers, || self.request_info(flush));
        SERVICE_PATH.with(|p| p.borrow_mut().push(me));
        let delivered = {
            let _hop = HopGuard::enter(Hop::Service);
            route::publish_into(
                &exporter,
                subject,
                reply,
                Some(&headers),
                msg.payload,
                flush,
            )
        };
        SERVICE_PATH.with(|p| p.borrow_mut().pop());
        if delivered == 0 {
            if let Some(r) = &mapped_reply {
                self.responses.remove(r);
            }
        }
        delivered > 0
    }
}

/// `headers` with `Nats-Request-Info` (`info`, JSON) added, unless an earlier service import
/// already added it.
fn with_request_info(headers: Option<&[u8]>, info: impl FnOnce() -> String) -> Vec<u8> {
    match headers {
        Some(h) if contains_header(h, REQUEST_INFO_HEADER) => h.to_vec(),
        _ => with_header(headers, &info()),
    }
}

fn with_header(headers: Option<&[u8]>, info: &str) -> Vec<u8> {
    match headers {
        Some(h) if h.ends_with(b"\r\n\r\n") => {
            let mut out = h[..h.len() - 2].to_vec();
            out.extend_from_slice(format!("{REQUEST_INFO_HEADER}: {info}\r\n\r\n").as_bytes());
            out
        }
        _ => format!("NATS/1.0\r\n{REQUEST_INFO_HEADER}: {info}\r\n\r\n").into_bytes(),
    }
}

fn contains_header(headers: &[u8], name: &str) -> bool {
    headers.split(|b| *b == b'\n').skip(1).any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':'
    })
}

/// A request waiting for its responses.
struct Pending {
    requester: Weak<Account>,
    /// The reply subject in the requester's account.
    reply: Box<[u8]>,
    response_type: ResponseType,
    threshold: Duration,
    /// When the request was made or last answered.
    last: Instant,
}

/// The reply mappings of one exporting account, behind its `_R_.<prefix>.>` subscription.
pub(crate) struct Responses {
    /// `_R_.<6 characters>.`: this account's reply prefix.
    prefix: String,
    pending: Mutex<PendingMap>,
}

#[derive(Default)]
struct PendingMap {
    by_reply: HashMap<String, Pending>,
    last_sweep: Option<Instant>,
}

/// nats-server's alphabet for reply tokens.
const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_token(n: usize) -> String {
    (0..n)
        .map(|_| DIGITS[fastrand::usize(..DIGITS.len())] as char)
        .collect()
}

impl Responses {
    fn new() -> Responses {
        Responses {
            prefix: format!("_R_.{}.", random_token(6)),
            pending: Mutex::new(PendingMap::default()),
        }
    }

    /// Registers a request and returns its reply subject in the exporting account.
    fn add(&self, pending: Pending) -> String {
        let reply = format!("{}{}", self.prefix, random_token(6));
        let mut map = self.pending.lock();
        let now = pending.last;
        // Expired mappings go at most once a second, on the request path of this export.
        if map
            .last_sweep
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            map.last_sweep = Some(now);
            map.by_reply
                .retain(|_, p| now.duration_since(p.last) < p.threshold);
        }
        map.by_reply.insert(reply.clone(), pending);
        reply
    }

    fn remove(&self, reply: &str) {
        self.pending.lock().by_reply.remove(reply);
    }
}

/// The `_R_.<prefix>.>` subscription of an exporting account: sends each response to its
/// requester.
struct ResponseRouter {
    responses: Arc<Responses>,
}

impl InternalHandler for ResponseRouter {
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) {
        self.deliver_counted(msg, flush);
    }

    fn deliver_counted(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) -> bool {
        let Ok(subject) = std::str::from_utf8(msg.subject) else {
            return false;
        };
        let now = Instant::now();
        let (requester, reply, response_type) = {
            let mut map = self.responses.pending.lock();
            let Some(p) = map.by_reply.get_mut(subject) else {
                return false;
            };
            if now.duration_since(p.last) >= p.threshold {
                map.by_reply.remove(subject);
                return false;
            }
            p.last = now;
            (p.requester.clone(), p.reply.clone(), p.response_type)
        };
        let delivered = match requester.upgrade() {
            Some(account) => {
                let reply_on = msg.reply.filter(|r| r.starts_with(JS_ACK_PREFIX));
                let _hop = HopGuard::enter(Hop::Service);
                route::publish_into(&account, &reply, reply_on, msg.headers, msg.payload, flush)
            }
            None => 0,
        };
        let ends = msg.headers.is_none() && msg.payload.is_empty();
        if delivered == 0 || response_type == ResponseType::Singleton || ends {
            self.responses.remove(subject);
        }
        delivered > 0
    }
}

/// What the imports of the configuration installed: their subscriptions, and the reply
/// mappings of every exporting account (kept across reloads, so requests in flight get their
/// responses).
#[derive(Default)]
pub(crate) struct Router {
    installed: Mutex<Installed>,
}

#[derive(Default)]
struct Installed {
    subs: Vec<(Weak<Account>, SubRef)>,
    /// Per exporting account: its reply mappings and their subscription.
    responses: HashMap<String, (Weak<Account>, Arc<Responses>, SubRef)>,
}

impl Router {
    /// Replaces the installed imports with those of `config` (at start and on every reload).
    /// `account` finds a live account by name.
    pub(crate) fn install(
        &self,
        config: &[AccountConfig],
        server_name: &str,
        account: &dyn Fn(&str) -> Option<Arc<Account>>,
    ) {
        let mut installed = self.installed.lock();
        for (acc, sub) in installed.subs.drain(..) {
            if let Some(acc) = acc.upgrade() {
                route::unsubscribe_internal(&acc, &sub);
            }
        }
        // Reply mappings of accounts that are gone (or were replaced) go with them.
        installed.responses.retain(|name, (acc, _, sub)| {
            let live = account(name);
            let same = live
                .as_ref()
                .zip(acc.upgrade())
                .is_some_and(|(l, a)| Arc::ptr_eq(l, &a));
            if !same {
                if let Some(a) = acc.upgrade() {
                    route::unsubscribe_internal(&a, sub);
                }
            }
            same
        });
        for importer_cfg in config {
            let Some(importer) = account(&importer_cfg.name) else {
                continue;
            };
            for import in &importer_cfg.imports {
                let Some(origin_cfg) = config.iter().find(|a| a.name == import.account) else {
                    continue;
                };
                let Some(origin) = account(&origin_cfg.name) else {
                    continue;
                };
                let Some(export) = crate::config::authorizing_export(
                    origin_cfg,
                    &importer_cfg.name,
                    import.kind,
                    &import.subject,
                ) else {
                    continue;
                };
                let (subscribe_in, subject, handler): (_, String, Arc<dyn InternalHandler>) =
                    match import.kind {
                        ExportKind::Stream => (
                            origin.clone(),
                            import.subject.clone(),
                            Arc::new(StreamImport {
                                importer: Arc::downgrade(&importer),
                                mapping: stream_mapping(import),
                                expires: import.expires,
                            }),
                        ),
                        ExportKind::Service => {
                            let responses = Self::responses_of(&mut installed.responses, &origin);
                            let local = import.local_subject();
                            (
                                importer.clone(),
                                references_as_wildcards(&local),
                                Arc::new(ServiceImport {
                                    importer_name: importer_cfg.name.clone(),
                                    share: import.share,
                                    server_name: server_name.to_string(),
                                    importer: Arc::downgrade(&importer),
                                    exporter: Arc::downgrade(&origin),
                                    mapping: Mapping::service(&local, &import.subject),
                                    response_type: export.response_type,
                                    threshold: export
                                        .response_threshold
                                        .unwrap_or(DEFAULT_RESPONSE_THRESHOLD),
                                    responses,
                                    expires: import.expires,
                                }),
                            )
                        }
                    };
                match route::subscribe_internal(&subscribe_in, subject.as_bytes(), None, handler) {
                    Ok(sub) => installed.subs.push((Arc::downgrade(&subscribe_in), sub)),
                    Err(e) => tracing::error!(
                        "Import of \"{}\" from account {} into {}: {}",
                        import.subject,
                        origin_cfg.name,
                        importer_cfg.name,
                        e
                    ),
                }
            }
        }
    }

    /// The reply mappings of `exporter`, created (with their subscription) at its first
    /// service import.
    fn responses_of(
        all: &mut HashMap<String, (Weak<Account>, Arc<Responses>, SubRef)>,
        exporter: &Arc<Account>,
    ) -> Arc<Responses> {
        if let Some((_, r, _)) = all.get(&exporter.name) {
            return r.clone();
        }
        let responses = Arc::new(Responses::new());
        let wildcard = format!("{}>", responses.prefix);
        let router = Arc::new(ResponseRouter {
            responses: responses.clone(),
        });
        match route::subscribe_internal(exporter, wildcard.as_bytes(), None, router) {
            Ok(sub) => {
                all.insert(
                    exporter.name.clone(),
                    (Arc::downgrade(exporter), responses.clone(), sub),
                );
            }
            Err(e) => tracing::error!("Service reply subscription {}: {}", wildcard, e),
        }
        responses
    }
}

fn stream_mapping(import: &Import) -> Mapping {
    match (&import.prefix, &import.local) {
        (Some(prefix), _) => {
            let prefix = if prefix.ends_with('.') {
                prefix.clone()
            } else {
                format!("{prefix}.")
            };
            if is_literal(import.subject.as_bytes()) {
                Mapping::Fixed(format!("{prefix}{}", import.subject))
            } else {
                Mapping::Prefix(prefix)
            }
        }
        (None, Some(to)) => Mapping::new(&import.subject, to),
        (None, None) => Mapping::Same,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly by design")]
mod tests {
    use super::*;

    fn map(m: &Mapping, s: &str) -> String {
        let mut buf = Vec::new();
        String::from_utf8(m.apply(s.as_bytes(), &mut buf).to_vec()).unwrap()
    }

    #[test]
    fn mappings_place_wildcards_by_position() {
        assert_eq!(map(&Mapping::new("a.*.b.*", "x.*.*"), "a.1.b.2"), "x.1.2");
        assert_eq!(map(&Mapping::new("a.>", "b.>"), "a.1.2"), "b.1.2");
        assert_eq!(map(&Mapping::new("a.>", "a.>"), "a.1.2"), "a.1.2");
        assert_eq!(map(&Mapping::new("a.b", "c"), "a.b"), "c");
        assert_eq!(map(&Mapping::service("l.$2.$1", "r.*.*"), "l.x.y"), "r.y.x");
        assert_eq!(
            map(&Mapping::service("l.$1.>", "r.*.>"), "l.x.y.z"),
            "r.x.y.z"
        );
        assert_eq!(references_as_wildcards("l.$2.$1.$x"), "l.*.*.$x");
        let mut import = Import::new(ExportKind::Stream, "A", "ev.>");
        import.prefix = Some("from_a".into());
        assert_eq!(map(&stream_mapping(&import), "ev.x.y"), "from_a.ev.x.y");
    }

    #[test]
    fn request_info_is_added_once() {
        let acc = |name: &str| serde_json::json!({ "acc": name }).to_string();
        let h = with_request_info(None, || acc("B"));
        assert_eq!(
            String::from_utf8(h.clone()).unwrap(),
            "NATS/1.0\r\nNats-Request-Info: {\"acc\":\"B\"}\r\n\r\n"
        );
        assert_eq!(with_request_info(Some(&h), || acc("C")), h);
        let other = with_request_info(Some(b"NATS/1.0\r\nX: 1\r\n\r\n"), || acc("B"));
        assert_eq!(
            String::from_utf8(other).unwrap(),
            "NATS/1.0\r\nX: 1\r\nNats-Request-Info: {\"acc\":\"B\"}\r\n\r\n"
        );
    }
}
