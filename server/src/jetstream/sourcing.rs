//! Mirrors and sources: copying another stream's messages into this one.
//!
//! # Model
//! A mirror keeps the origin's sequences: origin message N is stored as message N, and
//! sequences the origin no longer holds (or that the filter skips) are skipped as deleted.
//! A sourcing stream stores each copied message under its own next sequence and marks it
//! with `Nats-Stream-Source: <origin> <origin seq> <filter> <transform> <subject>`.
//!
//! [`Source`] holds one mirror's or source's position and does no I/O of its own: it reads
//! the origin through the `&dyn MessageStore` it is given and says what to store; the
//! stream's worker (`stream.rs`) stores it and then calls [`Source::advance`]. The worker
//! pulls when an origin rings its doorbell after storing, and once a second.
//!
//! # Where a copy resumes
//! Nothing but the stream's own store says how far a copy got, so a restart (or `kill -9`)
//! resumes exactly after the last message that reached the store, without gaps or
//! duplicates: a mirror at its own `last_seq + 1`, a source after the origin sequence in
//! the newest `Nats-Stream-Source` header for it ([`recover_positions`]). Start options
//! (`opt_start_seq`, `opt_start_time`) apply only where nothing was copied yet, as in
//! nats-server.
//!
//! # Origins
//! The origin is read in-process. A same-account origin is looked up by name. An
//! `external` origin (`api` / `deliver` prefixes) is found through the account's imports:
//! the API prefix must reach an account's `$JS.API` through a service import that account
//! exports, and the deliver prefix must arrive through a stream import from that same
//! account ([`resolve_external`]); nats-server routes its requests and deliveries through
//! exactly those imports.

use std::collections::HashMap;

use bytes::Bytes;

use super::config::{ExternalStream, StreamConfig, StreamSource, SubjectTransformConfig};
use super::headers;
use crate::config::{authorizing_export, AccountConfig, ExportKind};
use crate::js_errors::{ApiError, JsError};
use crate::store::{MessageStore, StoreState, StoredMsg};
use crate::subject::{collide, is_subset, is_valid_subject, matches};
use crate::subject_transform::SubjectTransform;

/// Header carrying a sourced message's origin.
pub(crate) const STREAM_SOURCE: &str = "Nats-Stream-Source";

fn valid_consumer_source(c: &super::config::StreamConsumerSource) -> bool {
    super::config::valid_stream_name(&c.name)
        && crate::subject::is_valid_literal_subject(c.deliver_subject.as_bytes())
}

/// A transform's filter and mapping, checked as a mirror's or source's.
fn check_transform(
    t: &SubjectTransformConfig,
    bad_src: JsError,
    bad_dest: JsError,
) -> Result<(), ApiError> {
    if !t.src.is_empty() && !is_valid_subject(t.src.as_bytes()) {
        return Err(bad_src.with(format!("invalid subject {}", t.src)));
    }
    SubjectTransform::validate(&t.src, &t.dest).map_err(|e| bad_dest.with(e))
}

/// The checks of `mirror` and `sources` that need no other stream, in nats-server's order;
/// also puts `opt_start_time` in the form replies show.
pub(crate) fn check_config(cfg: &mut StreamConfig) -> Result<(), ApiError> {
    let mut deliver_prefixes: Vec<String> = Vec::new();
    let mut api_prefixes: Vec<String> = Vec::new();
    if let Some(m) = &cfg.mirror {
        if cfg.first_seq.is_some_and(|s| s > 0) {
            return Err(ApiError::from(JsError::MirrorWithFirstSeq));
        }
        if !cfg.subjects.is_empty() {
            return Err(ApiError::from(JsError::MirrorWithSubjects));
        }
        if !cfg.sources.is_empty() {
            return Err(ApiError::from(JsError::MirrorWithSources));
        }
        if cfg.allow_atomic {
            return Err(ApiError::from(JsError::MirrorWithAtomicPublish));
        }
        if cfg.allow_batched {
            return Err(ApiError::from(JsError::MirrorWithBatchPublish));
        }
        if cfg.allow_msg_schedules {
            return Err(ApiError::from(JsError::MirrorWithMsgSchedules));
        }
        if let Some(c) = &m.consumer {
            if !valid_consumer_source(c)
                || m.opt_start_seq != 0
                || m.opt_start_time.is_some()
                || !m.filter_subject.is_empty()
            {
                return Err(ApiError::from(JsError::MirrorDurableConsumerCfgInvalid));
            }
        }
        if !m.filter_subject.is_empty() && !m.subject_transforms.is_empty() {
            return Err(ApiError::from(JsError::MirrorMultipleFiltersNotAllowed));
        }
        if cfg.subject_delete_marker_ttl > 0 {
            // Markers would take sequences the origin does not have.
            return Err(
                JsError::StreamInvalidConfig.with("subject delete markers forbidden on mirrors")
            );
        }
        for (i, t) in m.subject_transforms.iter().enumerate() {
            check_transform(
                t,
                JsError::MirrorInvalidSubjectFilter,
                JsError::MirrorInvalidTransformDestination,
            )?;
            let overlap = m
                .subject_transforms
                .iter()
                .enumerate()
                .any(|(j, o)| j != i && collide(filter_or_all(&t.src), filter_or_all(&o.src)));
            if overlap {
                return Err(ApiError::from(JsError::MirrorOverlappingSubjectFilters));
            }
        }
        match &m.external {
            None if !super::config::valid_stream_name(&m.name) => {
                return Err(ApiError::from(JsError::MirrorInvalidStreamName))
            }
            None => {}
            Some(ext) => collect_prefixes(ext, &mut deliver_prefixes, &mut api_prefixes),
        }
    }
    if !cfg.sources.is_empty() && cfg.allow_msg_schedules {
        return Err(ApiError::from(JsError::SourceWithMsgSchedules));
    }
    let mut inames: Vec<String> = Vec::new();
    let mut cnames: Vec<String> = Vec::new();
    for src in &cfg.sources {
        if !super::config::valid_stream_name(&src.name) {
            return Err(ApiError::from(JsError::SourceInvalidStreamName));
        }
        let iname = index_name(src);
        if inames.contains(&iname) {
            return Err(ApiError::from(JsError::SourceDuplicateDetected));
        }
        inames.push(iname);
        if !src.filter_subject.is_empty() && !src.subject_transforms.is_empty() {
            return Err(ApiError::from(JsError::SourceMultipleFiltersNotAllowed));
        }
        for t in &src.subject_transforms {
            check_transform(
                t,
                JsError::SourceInvalidSubjectFilter,
                JsError::SourceInvalidTransformDestination,
            )?;
        }
        for (i, t) in src.subject_transforms.iter().enumerate() {
            let overlap =
                src.subject_transforms.iter().enumerate().any(|(j, o)| {
                    j != i && is_subset(filter_or_all(&t.src), filter_or_all(&o.src))
                });
            if overlap {
                return Err(ApiError::from(JsError::SourceOverlappingSubjectFilters));
            }
        }
        if let Some(c) = &src.consumer {
            if !valid_consumer_source(c)
                || src.opt_start_seq != 0
                || src.opt_start_time.is_some()
                || !src.filter_subject.is_empty()
            {
                return Err(ApiError::from(JsError::SourceDurableConsumerCfgInvalid));
            }
            let cname = format!("{} {}", external_name(src), c.name);
            if cnames.contains(&cname) {
                return Err(ApiError::from(
                    JsError::SourceDurableConsumerDuplicateDetected,
                ));
            }
            cnames.push(cname);
        }
        if let Some(ext) = &src.external {
            collect_prefixes(ext, &mut deliver_prefixes, &mut api_prefixes);
        }
    }
    for p in &deliver_prefixes {
        if !crate::subject::is_valid_literal_subject(p.as_bytes()) {
            return Err(JsError::StreamInvalidExternalDeliverySubj.with(p));
        }
    }
    for p in &api_prefixes {
        if !crate::subject::is_valid_literal_subject(p.as_bytes()) {
            return Err(JsError::StreamInvalidConfig.with(format!(
                "stream external api prefix {p:?} must be a valid subject without wildcards"
            )));
        }
        if collide(p.as_bytes(), b"$JS.API") {
            return Err(JsError::StreamExternalApiOverlap.with_each(&[p, &"$JS.API"]));
        }
    }
    let sources = cfg.mirror.iter_mut().chain(cfg.sources.iter_mut());
    for src in sources {
        if let Some(t) = &src.opt_start_time {
            let ns = natsd_conf::timestamp::parse_rfc3339_ns(t).ok_or_else(|| {
                JsError::InvalidJSON.with(format!("parsing time {t:?} as RFC 3339"))
            })?;
            src.opt_start_time = Some(natsd_conf::timestamp::rfc3339_ns(ns));
        }
    }
    Ok(())
}

fn collect_prefixes(ext: &ExternalStream, deliver: &mut Vec<String>, api: &mut Vec<String>) {
    if !ext.deliver.is_empty() {
        deliver.push(ext.deliver.clone());
    }
    if !ext.api.is_empty() {
        api.push(ext.api.clone());
    }
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn filter_or_all(f: &str) -> &[u8] {
    if f.is_empty() {
        b">"
    } else {
        f.as_bytes()
    }
}

/// 8 characters of the SHA-256 of `name` in nats-server's base-62 alphabet (how it tells
/// apart origins of the same name behind different API prefixes).
pub(crate) fn hash8(name: &str) -> String {
    use sha2::{Digest, Sha256};
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    Sha256::digest(name.as_bytes())
        .iter()
        .take(8)
        .map(|b| DIGITS[usize::from(*b) % DIGITS.len()] as char)
        .collect()
}

/// The origin part of a source's index name: the stream, plus a hash of an external API
/// prefix.
fn external_name(src: &StreamSource) -> String {
    match &src.external {
        Some(ext) => format!("{}:{}", src.name, hash8(&ext.api)),
        None => src.name.clone(),
    }
}

/// A source's index name: `<origin>[:<api hash>][:C=<consumer hash>] <filters> <dests>`,
/// filters and destinations joined by form feeds. It identifies the source in
/// `Nats-Stream-Source` headers, so it must not change for a configured source.
pub(crate) fn index_name(src: &StreamSource) -> String {
    let mut name = external_name(src);
    if let Some(c) = &src.consumer {
        name.push_str(":C=");
        name.push_str(&hash8(&c.name));
    }
    let or_all = |s: &str| {
        if s.is_empty() {
            ">".to_string()
        } else {
            s.to_string()
        }
    };
    let (filter, dest) = if src.subject_transforms.is_empty() {
        (or_all(&src.filter_subject), ">".to_string())
    } else {
        let f: Vec<String> = src
            .subject_transforms
            .iter()
            .map(|t| or_all(&t.src))
            .collect();
        let d: Vec<String> = src
            .subject_transforms
            .iter()
            .map(|t| or_all(&t.dest))
            .collect();
        (f.join("\u{c}"), d.join("\u{c}"))
    };
    format!("{name} {filter} {dest}")
}

/// The name of the consumer a mirror or source of stream `stream` (of `account`, in JetStream
/// `domain`) keeps on a work-queue or interest origin, as nats-server names it:
/// `JS_MIRROR_<hash>`, or `JS_SRC_<hash>` where a source whose origin appears more than once
/// among `sources` also hashes its index name.
pub(crate) fn sourcing_consumer_name(
    stream: &str,
    account: &str,
    domain: Option<&str>,
    src: &StreamSource,
    sources: Option<&[StreamSource]>,
) -> String {
    let mut id = format!("{stream} {account}");
    if let Some(d) = domain.filter(|d| !d.is_empty()) {
        id = format!("{id} {d}");
    }
    let stable = hash8(&id);
    let Some(sources) = sources else {
        return format!("JS_MIRROR_{stable}");
    };
    let same_origin = sources.iter().filter(|s| s.name == src.name).count();
    if same_origin > 1 {
        format!("JS_SRC_{}", hash8(&format!("{stable} {}", index_name(src))))
    } else {
        format!("JS_SRC_{}", hash8(&stable))
    }
}

/// The config of that consumer, as nats-server asks for it: durable, acknowledged by the
/// copy's flow-control answers, delivering (nowhere, on natsd: the copy reads the store)
/// to a subject of its own, filtered as the source is and starting where it starts.
pub(crate) fn sourcing_consumer_config(
    name: &str,
    stream: &str,
    account: &str,
    domain: Option<&str>,
    src: &StreamSource,
    mirror: bool,
) -> crate::consumer::ConsumerConfig {
    use crate::consumer::config::{AckPolicy, DeliverPolicy};
    let (kind, token) = if mirror {
        ("mirror", "M")
    } else {
        ("src", "S")
    };
    let random = crate::consumer::config::generate_name();
    let deliver_subject = match src.external.as_ref().filter(|e| !e.deliver.is_empty()) {
        Some(ext) => format!("{}.{token}.{random}", ext.deliver),
        None => format!("$JS.{token}.{random}"),
    };
    let mut cfg = crate::consumer::ConsumerConfig {
        durable_name: name.to_string(),
        name: name.to_string(),
        deliver_subject,
        ack_policy: AckPolicy::FlowControl,
        flow_control: true,
        sourcing: true,
        ..Default::default()
    };
    if src.opt_start_seq > 0 {
        cfg.deliver_policy = DeliverPolicy::ByStartSequence;
        cfg.opt_start_seq = src.opt_start_seq;
    } else if let Some(t) = &src.opt_start_time {
        cfg.deliver_policy = DeliverPolicy::ByStartTime;
        cfg.opt_start_time = Some(t.clone());
    }
    if !src.filter_subject.is_empty() {
        cfg.filter_subject = src.filter_subject.clone();
    } else if src.subject_transforms.iter().all(|t| !t.src.is_empty()) {
        cfg.filter_subjects = src
            .subject_transforms
            .iter()
            .map(|t| t.src.clone())
            .collect();
    }
    cfg.metadata
        .insert(format!("_nats.{kind}.stream"), stream.to_string());
    cfg.metadata
        .insert(format!("_nats.{kind}.acc"), account.to_string());
    if let Some(d) = domain.filter(|d| !d.is_empty()) {
        cfg.metadata
            .insert(format!("_nats.{kind}.domain"), d.to_string());
    }
    cfg.metadata.insert("_nats.req.level".into(), "4".into());
    cfg
}

/// An origin's identity: a hash of its creation time, so a copy notices when the origin
/// was deleted and created again (and starts over rather than wait for old sequences).
pub(crate) fn identity(created_ns: u64) -> String {
    hash8(&natsd_conf::timestamp::rfc3339_ns(created_ns))
}

/// What a `Nats-Stream-Source` value records: the source's index name, the origin
/// sequence, and the origin's identity when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceMark {
    pub(crate) iname: String,
    pub(crate) seq: u64,
    pub(crate) identity: Option<String>,
}

/// Reads a `Nats-Stream-Source` value (`<origin> <seq> <filter> <dest> <subject> [<identity>]`).
/// Values of the pre-2.10 form (`<stream> <seq>`) give the stream name as index name.
pub(crate) fn parse_source_header(value: &str) -> Option<SourceMark> {
    let fields: Vec<&str> = value.split(' ').collect();
    let seq = fields.get(1)?.parse::<u64>().ok()?;
    let iname = match fields.len() {
        2 => fields[0].to_string(),
        n if n >= 4 => format!("{} {} {}", fields[0], fields[2], fields[3]),
        _ => return None,
    };
    Some(SourceMark {
        iname,
        seq,
        identity: fields.get(5).map(|s| (*s).to_string()),
    })
}

/// Finds, scanning the stream backwards, the newest mark of each source (by index name).
/// Stops as soon as every source is found.
pub(crate) fn recover_positions(
    store: &dyn MessageStore,
    inames: &[String],
) -> HashMap<String, SourceMark> {
    let mut found: HashMap<String, SourceMark> = HashMap::new();
    if inames.is_empty() {
        return found;
    }
    let state = store.state();
    let mut seq = state.last_seq;
    while seq >= state.first_seq.max(1) && found.len() < inames.len() {
        if let Ok(m) = store.load_msg(seq) {
            if let Some(value) = m
                .headers
                .as_deref()
                .and_then(|h| headers::get(h, STREAM_SOURCE))
            {
                if let Some(mark) = parse_source_header(value) {
                    if inames.contains(&mark.iname) {
                        found.entry(mark.iname.clone()).or_insert(mark);
                    } else if !mark.iname.contains(' ') {
                        // Old form: matches every source of that stream not found yet.
                        for i in inames {
                            if i.split(' ').next() == Some(mark.iname.as_str()) {
                                found.entry(i.clone()).or_insert_with(|| mark.clone());
                            }
                        }
                    }
                }
            }
        }
        seq -= 1;
    }
    found
}

/// File next to a stream's store that remembers its sources' positions.
pub(crate) const POSITIONS_FILE: &str = "sources.json";

/// The sources' positions as last saved (`iname → mark`), for a source none of whose
/// messages the stream still holds (purged, expired) after a restart. Missing or unreadable
/// means nothing saved.
pub(crate) fn load_positions(dir: &std::path::Path) -> HashMap<String, SourceMark> {
    #[derive(serde::Deserialize)]
    struct Saved {
        seq: u64,
        identity: Option<String>,
    }
    let Ok(body) = std::fs::read(dir.join(POSITIONS_FILE)) else {
        return HashMap::new();
    };
    let saved: HashMap<String, Saved> = serde_json::from_slice(&body).unwrap_or_default();
    saved
        .into_iter()
        .map(|(iname, s)| {
            let mark = SourceMark {
                iname: iname.clone(),
                seq: s.seq,
                identity: s.identity,
            };
            (iname, mark)
        })
        .collect()
}

/// The newer of what the stream's own messages say and what was saved, per source.
pub(crate) fn merge_positions(
    found: &mut HashMap<String, SourceMark>,
    saved: HashMap<String, SourceMark>,
    inames: &[String],
) {
    for (iname, mark) in saved {
        if !inames.contains(&iname) {
            continue;
        }
        match found.get(&iname) {
            Some(f) if f.seq >= mark.seq || f.identity != mark.identity => {}
            _ => {
                found.insert(iname, mark);
            }
        }
    }
}

/// Finds the account an `external` origin lives in, from `importer`'s imports and the
/// exporting account's exports (see the module docs). `None` when they do not connect.
pub(crate) fn resolve_external<'a>(
    importer: &str,
    accounts: &'a [AccountConfig],
    ext: &ExternalStream,
    stream: &str,
) -> Option<&'a str> {
    let me = accounts.iter().find(|a| a.name == importer)?;
    let request = format!("{}.CONSUMER.CREATE.{stream}", ext.api);
    let exported = |account: &str, kind: ExportKind, subject: &str| {
        accounts
            .iter()
            .find(|a| a.name == account)
            .is_some_and(|a| authorizing_export(a, importer, kind, subject).is_some())
    };
    let origin = me.imports.iter().find_map(|imp| {
        if imp.kind != ExportKind::Service {
            return None;
        }
        let local = imp.local_subject();
        if !matches(local.as_bytes(), request.as_bytes()) {
            return None;
        }
        let mapped = match SubjectTransform::new(&local, &imp.subject) {
            Ok(Some(t)) => t.apply(&request)?,
            _ => imp.subject.clone(),
        };
        let reaches_api = mapped.starts_with("$JS.API.CONSUMER.CREATE.")
            && exported(&imp.account, ExportKind::Service, &imp.subject);
        reaches_api.then_some(imp.account.as_str())
    })?;
    if ext.deliver.is_empty() {
        return Some(origin);
    }
    let delivered = format!("{}.x", ext.deliver);
    let delivers = me.imports.iter().any(|imp| {
        imp.kind == ExportKind::Stream
            && imp.account == origin
            && imp.local.is_none()
            && imp.prefix.is_none()
            && matches(imp.subject.as_bytes(), delivered.as_bytes())
            && exported(origin, ExportKind::Stream, &imp.subject)
    });
    delivers.then_some(origin)
}

/// A message to store for a source or the mirror.
#[derive(Debug)]
pub(crate) struct Copy {
    /// Subject after the source's transform.
    pub(crate) subject: Bytes,
    /// Headers as they are stored.
    pub(crate) headers: Option<Bytes>,
    /// Payload.
    pub(crate) payload: Bytes,
    /// Origin timestamp (mirrors keep it).
    pub(crate) ts: u64,
}

/// One source, or the mirror: its position in the origin and what stream info reports.
#[derive(Debug)]
pub(crate) struct Source {
    /// As configured.
    pub(crate) config: StreamSource,
    /// Index name (identity in `Nats-Stream-Source`).
    pub(crate) iname: String,
    mirror: bool,
    filters: Vec<String>,
    transforms: Vec<Option<SubjectTransform>>,
    /// The next origin sequence to copy; `None` until positioned.
    pub(crate) next: Option<u64>,
    /// Origin messages left to copy at the last look.
    pub(crate) lag: u64,
    /// When the origin was last read (ns since the epoch), 0 = never.
    pub(crate) last_active: u64,
    /// Why the copy is stuck, as stream info shows it.
    pub(crate) error: Option<ApiError>,
    /// Identity of the origin the position belongs to (sources only).
    identity: Option<String>,
    /// The consumer this copy keeps on a work-queue or interest origin, once made.
    pub(crate) origin_consumer: Option<String>,
}

impl Source {
    /// A source (or, with `mirror`, the mirror) not yet positioned.
    pub(crate) fn new(config: StreamSource, mirror: bool) -> Source {
        let (filters, transforms) = if config.subject_transforms.is_empty() {
            let f = if config.filter_subject.is_empty() {
                Vec::new()
            } else {
                vec![config.filter_subject.clone()]
            };
            (f, Vec::new())
        } else {
            config
                .subject_transforms
                .iter()
                .map(|t| {
                    // Validated with the config; a transform that fails here copies unchanged.
                    let tr = SubjectTransform::new(&t.src, &t.dest).ok().flatten();
                    (
                        if t.src.is_empty() {
                            ">".into()
                        } else {
                            t.src.clone()
                        },
                        tr,
                    )
                })
                .unzip()
        };
        Source {
            iname: index_name(&config),
            config,
            mirror,
            filters,
            transforms,
            next: None,
            lag: 0,
            last_active: 0,
            error: None,
            identity: None,
            origin_consumer: None,
        }
    }

    /// Positions the mirror: after the stream's last message, or (for a stream that never
    /// held one) by the start options.
    pub(crate) fn position_mirror(&mut self, local: &StoreState, origin: &dyn MessageStore) {
        let next = if local.last_seq > 0 {
            local.last_seq + 1
        } else {
            self.start_by_options(None, origin)
        };
        self.next = Some(next);
    }

    /// Positions a source: after the recovered origin sequence (unless that was of an
    /// origin since deleted and created again), else by the options.
    pub(crate) fn position_source(
        &mut self,
        recovered: Option<&SourceMark>,
        origin_identity: &str,
        local: &StoreState,
        origin: &dyn MessageStore,
    ) {
        let same_origin =
            |m: &&SourceMark| m.identity.as_deref().is_none_or(|i| i == origin_identity);
        self.identity = Some(origin_identity.to_string());
        let next = match recovered.filter(same_origin) {
            Some(mark) => mark.seq + 1,
            None => {
                // Nothing of this source is left here: the stream's newest time is the best
                // guess of how far it got (nats-server's rule for a purged stream).
                let guess = (local.first_seq > 1 && local.last_ts != 0).then_some(local.last_ts);
                self.start_by_options(Some((local.last_ts, guess)), origin)
            }
        };
        self.next = Some(next);
    }

    /// `opt_start_seq`, else `opt_start_time` (for a source: not before the stream's last
    /// message time), else `fallback_time`, else the origin's beginning.
    fn start_by_options(
        &self,
        local_times: Option<(u64, Option<u64>)>,
        origin: &dyn MessageStore,
    ) -> u64 {
        if self.config.opt_start_seq > 0 {
            return self.config.opt_start_seq;
        }
        let configured = self
            .config
            .opt_start_time
            .as_deref()
            .and_then(natsd_conf::timestamp::parse_rfc3339_ns);
        let time = match (configured, local_times) {
            (Some(t), Some((last_ts, _))) if last_ts != 0 && t < last_ts => Some(last_ts),
            (Some(t), _) => Some(t),
            (None, Some((_, guess))) => guess,
            (None, None) => None,
        };
        match time {
            Some(t) => {
                let st = origin.state();
                crate::consumer::first_seq_at_or_after(origin, t, st.first_seq, st.last_seq)
            }
            None => 1,
        }
    }

    /// Starts over when the origin was deleted and created again since this source was
    /// positioned: the new origin's sequences have nothing to do with the old ones.
    pub(crate) fn check_identity(&mut self, origin_identity: &str) {
        if self.mirror || self.next.is_none() {
            return;
        }
        if self
            .identity
            .as_deref()
            .is_some_and(|i| i != origin_identity)
        {
            self.next = None;
        }
    }

    /// The next origin message to copy, if the origin has one.
    pub(crate) fn peek(&self, origin: &dyn MessageStore) -> Option<StoredMsg> {
        let next = self.next?;
        if self.filters.is_empty() {
            return origin.load_next_msg(b"", next).ok();
        }
        self.filters
            .iter()
            .filter_map(|f| origin.load_next_msg(f.as_bytes(), next).ok())
            .min_by_key(|m| m.seq)
    }

    /// What to store for origin message `msg`.
    pub(crate) fn copy_of(&self, msg: StoredMsg) -> Copy {
        let subject_text = String::from_utf8_lossy(&msg.subject);
        let mut subject = msg.subject.clone();
        for (filter, tr) in self.filters.iter().zip(&self.transforms) {
            if !matches(filter.as_bytes(), &msg.subject) {
                continue;
            }
            if let Some(t) = tr.as_ref().and_then(|t| t.apply(&subject_text)) {
                subject = Bytes::from(t);
            }
            break;
        }
        // Expectations were checked by the origin; batches are not carried over.
        let ours = |name: &str| {
            name.starts_with("Nats-Expected-")
                || name.starts_with("Nats-Batch-")
                || (!self.mirror && name == STREAM_SOURCE)
        };
        let kept = msg
            .headers
            .as_deref()
            .and_then(|h| headers::remove(h, ours));
        let headers = if self.mirror {
            kept
        } else {
            let mut value = format!(
                "{} {} {} {}",
                self.header_prefix(msg.seq),
                self.iname.split(' ').nth(1).unwrap_or(">"),
                self.iname.split(' ').nth(2).unwrap_or(">"),
                subject_text
            );
            if let Some(identity) = &self.identity {
                value.push(' ');
                value.push_str(identity);
            }
            Some(headers::append(kept.as_deref(), &[(STREAM_SOURCE, &value)]))
        };
        Copy {
            subject,
            headers: headers.map(Bytes::from),
            payload: msg.payload,
            ts: msg.ts,
        }
    }

    fn header_prefix(&self, seq: u64) -> String {
        format!("{} {seq}", self.iname.split(' ').next().unwrap_or(""))
    }

    /// Records that origin sequence `seq` was copied (or deliberately passed over).
    pub(crate) fn advance(&mut self, seq: u64) {
        self.next = Some(seq + 1);
    }

    /// Re-counts what is left to copy and notes the origin as active at `now`.
    pub(crate) fn observe(&mut self, origin: &dyn MessageStore, now: u64) {
        self.last_active = now;
        self.error = None;
        let Some(next) = self.next else { return };
        self.lag = if self.filters.is_empty() {
            origin.num_pending(b"", next)
        } else {
            self.filters
                .iter()
                .map(|f| origin.num_pending(f.as_bytes(), next))
                .sum()
        };
    }

    /// What [`load_positions`] reads back: the last origin sequence copied, once positioned.
    pub(crate) fn saved_mark(&self) -> Option<(u64, Option<&str>)> {
        Some((self.next?.saturating_sub(1), self.identity.as_deref()))
    }

    /// Stream info's view of this source.
    pub(crate) fn info(&self, now: u64) -> SourceInfo {
        SourceInfo {
            name: self.config.name.clone(),
            external: self.config.external.clone(),
            lag: self.lag,
            // nats-server reports it for sources only.
            seq: if self.mirror {
                0
            } else {
                self.next.map_or(0, |n| n.saturating_sub(1))
            },
            active: if self.last_active == 0 {
                -1
            } else {
                now.saturating_sub(self.last_active) as i64
            },
            error: self.error.clone(),
            filter_subject: (!self.config.filter_subject.is_empty())
                .then(|| self.config.filter_subject.clone()),
            subject_transforms: self.config.subject_transforms.clone(),
        }
    }
}

/// `mirror` / `sources[]` in stream info, as nats-server reports them.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct SourceInfo {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    external: Option<ExternalStream>,
    lag: u64,
    /// The last origin sequence copied (or passed over).
    #[serde(skip_serializing_if = "is_zero_u64")]
    seq: u64,
    /// Nanoseconds since the origin was last read; -1 when never.
    active: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ApiError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter_subject: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subject_transforms: Vec<SubjectTransformConfig>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{MemStore, StoreLimits};

    fn src(json: &str) -> StreamSource {
        serde_json::from_str(json).unwrap()
    }

    fn origin(subjects: &[&str]) -> MemStore {
        let s = MemStore::new(StoreLimits::default());
        for subj in subjects {
            s.store_msg(subj.as_bytes(), None, b"x", 0).unwrap();
        }
        s
    }

    #[test]
    fn sourcing_consumers_are_named_as_by_nats_server() {
        // Names nats-server 2.15.1 gave a source S and a mirror M in account $G.
        let o = src(r#"{"name":"O"}"#);
        assert_eq!(
            sourcing_consumer_name("S", "$G", None, &o, Some(std::slice::from_ref(&o))),
            "JS_SRC_N6lXlrSF"
        );
        assert_eq!(
            sourcing_consumer_name("M", "$G", None, &o, None),
            "JS_MIRROR_ih8eMwqr"
        );
        let twice = [o.clone(), src(r#"{"name":"O","filter_subject":"a"}"#)];
        let a = sourcing_consumer_name("S", "$G", None, &twice[0], Some(&twice));
        let b = sourcing_consumer_name("S", "$G", None, &twice[1], Some(&twice));
        assert_ne!(a, b);
    }

    #[test]
    fn index_names_and_headers_follow_nats_server() {
        assert_eq!(index_name(&src(r#"{"name":"O"}"#)), "O > >");
        assert_eq!(
            index_name(&src(r#"{"name":"O","filter_subject":"a.*"}"#)),
            "O a.* >"
        );
        assert_eq!(
            index_name(&src(
                r#"{"name":"O","subject_transforms":[{"src":"a.>","dest":"b.>"},{"src":"c","dest":""}]}"#
            )),
            "O a.>\u{c}c b.>\u{c}>"
        );
        let ext = index_name(&src(
            r#"{"name":"O","external":{"api":"JS.A.API","deliver":""}}"#,
        ));
        assert!(ext.starts_with("O:") && ext.ends_with(" > >"), "{ext}");
        assert_eq!(hash8("JS.A.API").len(), 8);
        let mark = parse_source_header("O 12 > > orders.new abcdefgh").unwrap();
        assert_eq!((mark.iname.as_str(), mark.seq), ("O > >", 12));
        assert_eq!(mark.identity.as_deref(), Some("abcdefgh"));
        let old = parse_source_header("O 7").unwrap();
        assert_eq!((old.iname.as_str(), old.seq, old.identity), ("O", 7, None));
        assert_eq!(parse_source_header("O x > >"), None);
    }

    #[test]
    fn a_source_copies_filtered_transformed_and_marked() {
        let o = origin(&["a.1", "b.1", "a.2"]);
        let mut s = Source::new(
            src(r#"{"name":"O","subject_transforms":[{"src":"a.*","dest":"x.$1"}]}"#),
            false,
        );
        let local = StoreState::default();
        s.position_source(None, "ident", &local, &o);
        let m = s.peek(&o).unwrap();
        assert_eq!(m.seq, 1);
        let c = s.copy_of(m);
        assert_eq!(&c.subject[..], b"x.1");
        let h = c.headers.unwrap();
        assert_eq!(
            headers::get(&h, STREAM_SOURCE),
            Some("O 1 a.* x.$1 a.1 ident")
        );
        s.advance(1);
        assert_eq!(s.peek(&o).unwrap().seq, 3);
        s.observe(&o, 5);
        assert_eq!(s.lag, 1);
        assert_eq!(s.info(7).active, 2);
    }

    #[test]
    fn positions_resume_where_the_store_says() {
        let o = origin(&["a", "a", "a", "a"]);
        // A restarted mirror continues after its last message.
        let mut m = Source::new(src(r#"{"name":"O","opt_start_seq":2}"#), true);
        let local = StoreState {
            last_seq: 3,
            ..StoreState::default()
        };
        m.position_mirror(&local, &o);
        assert_eq!(m.next, Some(4));
        // A new one starts by its options.
        m.position_mirror(&StoreState::default(), &o);
        assert_eq!(m.next, Some(2));
        // A source resumes after the sequence in its newest header.
        let here = MemStore::new(StoreLimits::default());
        let mut s = Source::new(src(r#"{"name":"O"}"#), false);
        s.position_source(None, "one", &StoreState::default(), &o);
        for seq in 1..=3u64 {
            let c = s.copy_of(o.load_msg(seq).unwrap());
            here.store_msg(&c.subject, c.headers.as_deref(), &c.payload, 0)
                .unwrap();
        }
        here.store_msg(b"own", None, b"y", 0).unwrap();
        let found = recover_positions(&here, std::slice::from_ref(&s.iname));
        let mark = found.get(&s.iname).unwrap();
        assert_eq!(mark.seq, 3);
        // Same origin: resume after 3. A recreated origin: start over.
        let mut again = Source::new(src(r#"{"name":"O"}"#), false);
        again.position_source(Some(mark), "one", &here.state(), &o);
        assert_eq!(again.next, Some(4));
        again.position_source(Some(mark), "two", &here.state(), &o);
        assert_ne!(again.next, Some(4));
    }

    #[test]
    fn config_checks_use_nats_server_codes() {
        let check = |json: &str| {
            let mut c: StreamConfig = serde_json::from_str(json).unwrap();
            check_config(&mut c).map(|_| c).map_err(|e| e.err_code)
        };
        assert_eq!(
            check(r#"{"name":"M","mirror":{"name":"O"},"subjects":["x"]}"#).unwrap_err(),
            10034
        );
        assert_eq!(
            check(r#"{"name":"M","mirror":{"name":"O"},"sources":[{"name":"P"}]}"#).unwrap_err(),
            10031
        );
        assert_eq!(
            check(r#"{"name":"S","sources":[{"name":"O","subject_transforms":[{"src":">","dest":"a.>"},{"src":">","dest":"b.>"}]}]}"#)
                .unwrap_err(),
            10147
        );
        assert_eq!(
            check(r#"{"name":"S","sources":[{"name":"O"},{"name":"O"}]}"#).unwrap_err(),
            10140
        );
        assert_eq!(
            check(
                r#"{"name":"S","sources":[{"name":"O","external":{"api":"$JS.API","deliver":""}}]}"#
            )
            .unwrap_err(),
            10021
        );
        let ok = check(r#"{"name":"S","sources":[{"name":"O","opt_start_time":"2024-02-19T13:50:50.5+00:00"}]}"#)
            .unwrap();
        assert_eq!(
            ok.sources[0].opt_start_time.as_deref(),
            Some("2024-02-19T13:50:50.5Z")
        );
    }

    #[test]
    fn external_origins_need_matching_imports_and_exports() {
        use crate::config::{Export, Import};
        let a = AccountConfig {
            name: "A".into(),
            exports: vec![
                {
                    let mut e = Export::new(ExportKind::Service, "$JS.API.>");
                    e.accounts = vec!["B".into()];
                    e
                },
                Export::new(ExportKind::Stream, "deliver.>"),
            ],
            ..AccountConfig::default()
        };
        let b = AccountConfig {
            name: "B".into(),
            imports: vec![
                {
                    let mut i = Import::new(ExportKind::Service, "A", "$JS.API.>");
                    i.local = Some("JS.A.API.>".into());
                    i
                },
                Import::new(ExportKind::Stream, "A", "deliver.>"),
            ],
            ..AccountConfig::default()
        };
        let accounts = vec![a, b];
        let ext = ExternalStream {
            api: "JS.A.API".into(),
            deliver: "deliver.b".into(),
        };
        assert_eq!(resolve_external("B", &accounts, &ext, "O"), Some("A"));
        let wrong_api = ExternalStream {
            api: "JS.C.API".into(),
            ..ext.clone()
        };
        assert_eq!(resolve_external("B", &accounts, &wrong_api, "O"), None);
        let wrong_deliver = ExternalStream {
            deliver: "elsewhere".into(),
            ..ext.clone()
        };
        assert_eq!(resolve_external("B", &accounts, &wrong_deliver, "O"), None);
        // A does not export its API to C.
        assert_eq!(resolve_external("A", &accounts, &ext, "O"), None);
    }
}
