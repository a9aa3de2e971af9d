//! `$JS.API.*` request handling. Every reply is one JSON message of type
//! `io.nats.jetstream.api.v1.<kind>_response` (direct get replies with the raw message).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::config::{Storage, StreamConfig, StreamSource};
use super::consumers;
use super::sourcing::SourceInfo;
use super::stream::Stream;
use super::{ApiRequest, JetStream, JsAccount};
use crate::js_errors::{ApiError, JsError};
use crate::route;
use crate::store::{PurgeRequest, StoredMsg};
use crate::subscription::ClientInfo;
use natsd_conf::timestamp::rfc3339_ns;

/// Page sizes of the `NAMES` and `LIST` requests (streams and consumers), as nats-server.
pub(super) const NAMES_LIMIT: usize = 1024;
pub(super) const LIST_LIMIT: usize = 256;
const SUBJECTS_LIMIT: u64 = 100_000;

/// A reply: optional header block and body.
pub(crate) type Reply = (Option<Vec<u8>>, Vec<u8>);

/// Serialises `body` with `"type"` as its first field, keeping the struct's field order.
pub(crate) fn typed<T: Serialize>(kind: &str, body: &T) -> Vec<u8> {
    let json = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    let rest = json.strip_prefix('{').unwrap_or("}");
    let sep = if rest == "}" { "" } else { "," };
    format!("{{\"type\":\"io.nats.jetstream.api.v1.{kind}_response\"{sep}{rest}").into_bytes()
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a ApiError,
    #[serde(flatten)]
    extra: BTreeMap<&'static str, u64>,
}

fn error_reply(kind: &str, err: &ApiError) -> Vec<u8> {
    let mut extra = BTreeMap::new();
    match kind {
        "stream_info" => {
            extra.insert("total", 0);
            extra.insert("offset", 0);
            extra.insert("limit", 0);
        }
        "stream_purge" => {
            extra.insert("purged", 0);
        }
        _ => {}
    }
    typed(kind, &ErrorBody { error: err, extra })
}

/// The API kind (reply type) of a request subject, and what follows the operation's fixed
/// tokens. The patterns are the subjects nats-server subscribes, so a request with the wrong
/// number of tokens gets no reply from either server.
pub(crate) fn classify(op: &str) -> Option<(&'static str, &str)> {
    const OPS: [(&str, &str); 21] = [
        ("INFO", "account_info"),
        ("CONSUMER.DURABLE.CREATE.*.*", "consumer_durable_create"),
        ("CONSUMER.CREATE.*", "consumer_create"),
        ("CONSUMER.CREATE.*.>", "consumer_create"),
        ("CONSUMER.INFO.*.*", "consumer_info"),
        ("CONSUMER.DELETE.*.*", "consumer_delete"),
        ("CONSUMER.NAMES.*", "consumer_names"),
        ("CONSUMER.LIST.*", "consumer_list"),
        ("CONSUMER.PAUSE.*.*", "consumer_pause"),
        ("CONSUMER.UNPIN.*.*", "consumer_unpin"),
        ("STREAM.CREATE.*", "stream_create"),
        ("STREAM.UPDATE.*", "stream_update"),
        ("STREAM.INFO.*", "stream_info"),
        ("STREAM.DELETE.*", "stream_delete"),
        ("STREAM.PURGE.*", "stream_purge"),
        ("STREAM.MSG.GET.*", "stream_msg_get"),
        ("STREAM.MSG.DELETE.*", "stream_msg_delete"),
        ("DIRECT.GET.*", "direct_get"),
        ("DIRECT.GET.*.>", "direct_get"),
        ("STREAM.NAMES", "stream_names"),
        ("STREAM.LIST", "stream_list"),
    ];
    OPS.iter().find_map(|&(pattern, kind)| {
        if !crate::subject::matches(pattern.as_bytes(), op.as_bytes()) {
            return None;
        }
        let fixed = pattern.find(['*', '>']).unwrap_or(pattern.len());
        Some((kind, op.get(fixed..).unwrap_or("")))
    })
}

/// Handles one request; `None` means no reply (unknown API, as nats-server).
pub(crate) fn handle(js: &JetStream, req: &ApiRequest) -> Option<Reply> {
    let op = req.subject.strip_prefix("$JS.API.")?;
    let (kind, arg) = classify(op)?;
    let jsa = &req.account;
    if kind == "direct_get" {
        return Some(direct_get(jsa, arg, &req.payload, &req.reply));
    }
    let result = if jsa.limits().is_none() {
        Err(JsError::NotEnabledForAccount.into())
    } else {
        match kind {
            "account_info" => Ok(account_info(js, jsa)),
            "stream_create" => stream_create(js, jsa, arg, &req.payload),
            "stream_update" => stream_update(js, jsa, arg, &req.payload),
            "stream_info" => stream_info(js, jsa, arg, &req.payload),
            "stream_delete" => stream_delete(jsa, arg),
            "stream_purge" => stream_purge(jsa, arg, &req.payload),
            "stream_msg_get" => msg_get(jsa, arg, &req.payload),
            "stream_msg_delete" => msg_delete(jsa, arg, &req.payload),
            "stream_names" => stream_names(jsa, &req.payload, false, js),
            "stream_list" => stream_names(jsa, &req.payload, true, js),
            "consumer_create" => consumers::create(js, jsa, arg, &req.payload, false),
            "consumer_durable_create" => consumers::create(js, jsa, arg, &req.payload, true),
            "consumer_info" => consumers::info(jsa, arg),
            "consumer_delete" => consumers::delete(jsa, arg),
            "consumer_names" => consumers::names(jsa, arg, &req.payload, false),
            "consumer_list" => consumers::names(jsa, arg, &req.payload, true),
            "consumer_pause" => consumers::pause(jsa, arg, &req.payload),
            "consumer_unpin" => consumers::unpin(jsa, arg, &req.payload),
            _ => return None,
        }
    };
    // Counted as the reply leaves, as nats-server does: an account info reply does not
    // count its own request yet.
    js.api_total.fetch_add(1, Ordering::Relaxed);
    jsa.api_total.fetch_add(1, Ordering::Relaxed);
    Some(match result {
        Ok(body) => (None, body),
        Err(err) => {
            js.api_errors.fetch_add(1, Ordering::Relaxed);
            jsa.api_errors.fetch_add(1, Ordering::Relaxed);
            let kind = if kind == "consumer_durable_create" {
                "consumer_create"
            } else {
                kind
            };
            (None, error_reply(kind, &err))
        }
    })
}

/// `$JS.EVENT.ADVISORY.API`: the audit advisory nats-server sends after every API reply,
/// built only when someone listens. `response` is the reply just sent.
pub(crate) fn audit(js: &JetStream, req: &ApiRequest, response: &[u8]) {
    const SUBJECT: &[u8] = b"$JS.EVENT.ADVISORY.API";
    let account = &req.account.account;
    if account.sublist.match_subject(SUBJECT).is_empty() {
        return;
    }
    #[derive(Serialize)]
    struct Audit<'a> {
        server: &'a str,
        client: ClientInfo,
        subject: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        request: &'a str,
        response: &'a str,
    }
    // The server's own requests (a source's consumer) name only the account.
    let mut client = req.client.clone().unwrap_or_else(|| ClientInfo {
        acc: account.name.clone(),
        ..ClientInfo::default()
    });
    client.server = js.server_name.clone();
    // Advisories leave the user's JWT out (its key, name and tags stay).
    client.jwt.clear();
    let body = Audit {
        server: &js.server_name,
        client,
        subject: &req.subject,
        request: &String::from_utf8_lossy(&req.payload),
        response: &String::from_utf8_lossy(response),
    };
    let payload = crate::consumer::advisory::body("io.nats.jetstream.advisory.v1.api_audit", &body);
    route::publish(account, SUBJECT, None, None, &payload);
}

type ApiResult = Result<Vec<u8>, ApiError>;

fn is_empty_body(payload: &[u8]) -> bool {
    let trimmed = payload.trim_ascii();
    trimmed.is_empty() || trimmed == b"null"
}

/// Parses an API request body (strictly when the account's JetStream is strict); an empty
/// body is the type's default.
pub(crate) fn parse_body<T: DeserializeOwned + Default>(
    jsa: &JsAccount,
    payload: &[u8],
) -> Result<T, ApiError> {
    if is_empty_body(payload) {
        return Ok(T::default());
    }
    decode(jsa, payload)
}

/// Decodes a non-empty API request body (strictly when the account's JetStream is strict).
pub(crate) fn decode<T: DeserializeOwned>(jsa: &JsAccount, payload: &[u8]) -> Result<T, ApiError> {
    crate::json::from_api_request(payload, jsa.strict).map_err(|e| JsError::InvalidJSON.with(e))
}

#[derive(Serialize)]
struct ApiStats {
    level: u32,
    total: u64,
    errors: u64,
}

#[derive(Serialize)]
struct AccountLimitsJson {
    max_memory: i64,
    max_storage: i64,
    max_streams: i64,
    max_consumers: i64,
    max_ack_pending: i64,
    memory_max_stream_bytes: i64,
    storage_max_stream_bytes: i64,
    max_bytes_required: bool,
}

#[derive(Serialize)]
struct AccountInfo<'a> {
    #[serde(flatten)]
    usage: TierJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'a str>,
    api: ApiStats,
    /// Limits from an account JWT's tiers, by tier name; the top-level limits are then zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    tiers: Option<std::collections::BTreeMap<&'static str, TierJson>>,
}

/// An account's (or one tier's) usage and limits.
#[derive(Serialize)]
struct TierJson {
    memory: u64,
    storage: u64,
    reserved_memory: u64,
    reserved_storage: u64,
    streams: usize,
    consumers: u64,
    limits: AccountLimitsJson,
}

fn account_info(js: &JetStream, jsa: &JsAccount) -> Vec<u8> {
    let limits = jsa.limits().unwrap_or_default();
    let (memory, storage) = jsa.usage.used();
    let usage = |limits: AccountLimitsJson| TierJson {
        memory,
        storage,
        reserved_memory: jsa.reserved(Storage::Memory),
        reserved_storage: jsa.reserved(Storage::File),
        streams: jsa.streams().len(),
        consumers: consumers::consumer_count(jsa) as u64,
        limits,
    };
    let own = AccountLimitsJson {
        max_memory: limits.max_memory,
        max_storage: limits.max_store,
        max_streams: limits.max_streams,
        max_consumers: limits.max_consumers,
        max_ack_pending: limits.max_ack_pending,
        memory_max_stream_bytes: limits.memory_max_stream_bytes,
        storage_max_stream_bytes: limits.storage_max_stream_bytes,
        max_bytes_required: limits.max_bytes_required,
    };
    // A single node's streams are all R1, so the R1 tier holds the whole usage.
    let (top, tiers) = if limits.r1_tier {
        let tiers = std::collections::BTreeMap::from([("R1", usage(own))]);
        (AccountLimitsJson::zero(), Some(tiers))
    } else {
        (own, None)
    };
    typed(
        "account_info",
        &AccountInfo {
            usage: usage(top),
            domain: js.config.domain.as_deref(),
            api: ApiStats {
                level: 5,
                total: jsa.api_total.load(Ordering::Relaxed),
                errors: jsa.api_errors.load(Ordering::Relaxed),
            },
            tiers,
        },
    )
}

impl AccountLimitsJson {
    /// What nats-server shows as an account's own limits when its JWT has tiers instead.
    fn zero() -> AccountLimitsJson {
        AccountLimitsJson {
            max_memory: 0,
            max_storage: 0,
            max_streams: 0,
            max_consumers: 0,
            max_ack_pending: 0,
            memory_max_stream_bytes: 0,
            storage_max_stream_bytes: 0,
            max_bytes_required: false,
        }
    }
}

/// Stream state as the API shows it.
#[derive(Serialize)]
pub(crate) struct StateJson {
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub first_ts: String,
    pub last_seq: u64,
    pub last_ts: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub num_subjects: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "is_zero")]
    pub num_deleted: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Vec<u64>>,
    /// What recovery could not read back from damaged files (nats-server's field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<crate::store::LostData>,
    pub consumer_count: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub(crate) fn state_json(stream: &Stream) -> StateJson {
    let st = stream.store.state();
    StateJson {
        messages: st.msgs,
        bytes: st.bytes,
        // A stream that never held a message reports 0, not last_seq + 1.
        first_seq: if st.last_seq == 0 && st.msgs == 0 {
            0
        } else {
            st.first_seq
        },
        first_ts: rfc3339_ns(st.first_ts),
        last_seq: st.last_seq,
        last_ts: rfc3339_ns(st.last_ts),
        num_subjects: st.num_subjects,
        subjects: None,
        num_deleted: st.num_deleted,
        deleted: None,
        lost: stream.store.lost(),
        consumer_count: stream.consumers.count() as u64,
    }
}

#[derive(Serialize)]
struct Cluster<'a> {
    leader: &'a str,
}

#[derive(Serialize)]
struct CreateResponse<'a> {
    config: StreamConfig,
    created: String,
    state: StateJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<Cluster<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror: Option<SourceInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<SourceInfo>,
    ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    did_create: Option<bool>,
}

#[derive(Serialize)]
struct InfoResponse<'a> {
    total: u64,
    offset: u64,
    limit: u64,
    config: StreamConfig,
    created: String,
    state: StateJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'a str>,
    cluster: Cluster<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror: Option<SourceInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<SourceInfo>,
    ts: String,
}

fn now() -> String {
    rfc3339_ns(crate::store::now_ns())
}

fn info_body<'a>(
    js: &'a JetStream,
    stream: &Stream,
    did_create: Option<bool>,
) -> CreateResponse<'a> {
    let (mirror, sources) = stream.sources_info();
    CreateResponse {
        config: stream.config().for_reply(true),
        created: rfc3339_ns(stream.created),
        state: state_json(stream),
        // nats-server names the domain and leader in info and list replies, not in
        // create/update.
        domain: js.config.domain.as_deref().filter(|_| did_create.is_none()),
        cluster: did_create.is_none().then_some(Cluster {
            leader: &js.server_name,
        }),
        mirror,
        sources,
        ts: now(),
        did_create,
    }
}

/// A create or update request's config, checked in nats-server's order, and whether the
/// request is pedantic.
fn parse_config(
    jsa: &JsAccount,
    name: &str,
    payload: &[u8],
    create: bool,
) -> Result<(StreamConfig, bool), ApiError> {
    if is_empty_body(payload) {
        return Err(JsError::StreamMismatch.into());
    }
    let mut cfg: StreamConfig = decode(jsa, payload)?;
    if cfg.name.is_empty() || cfg.name != name {
        return Err(JsError::StreamMismatch.into());
    }
    if create {
        if name.contains(['\\', '/']) {
            return Err(JsError::StreamNameContainsPathSeparators.into());
        }
        if cfg.sealed {
            return Err(JsError::StreamInvalidConfig
                .with("stream configuration for create can not be sealed"));
        }
        if cfg.mirror_direct && cfg.mirror.is_none() {
            return Err(JsError::StreamInvalidConfig
                .with("stream has no mirror but does have mirror direct"));
        }
    }
    let pedantic = std::mem::take(&mut cfg.pedantic);
    cfg.normalize_as(pedantic)?;
    Ok((cfg, pedantic))
}

/// What an update may not change, in nats-server's order; a sealed stream's limits are
/// pinned as nats-server pins them.
fn check_update(old: &StreamConfig, cfg: &mut StreamConfig) -> Result<(), ApiError> {
    use super::config::{DiscardPolicy, Retention};
    let refuse = |what: &str| Err(JsError::StreamInvalidConfig.with(what));
    if old.storage != cfg.storage {
        return refuse("stream configuration update can not change storage type");
    }
    if old.retention != cfg.retention
        && (old.retention == Retention::Workqueue || cfg.retention == Retention::Workqueue)
    {
        return refuse(
            "stream configuration update can not change retention policy to/from workqueue",
        );
    }
    if old.sealed && !cfg.sealed {
        return refuse("stream configuration update can not unseal a sealed stream");
    }
    if old.deny_delete && !cfg.deny_delete {
        return refuse("stream configuration update can not cancel deny message deletes");
    }
    if old.deny_purge && !cfg.deny_purge {
        return refuse("stream configuration update can not cancel deny purge");
    }
    // Removing the mirror promotes the stream; changing it is not allowed.
    if cfg.mirror.is_some() && cfg.mirror != old.mirror {
        return Err(ApiError::from(JsError::StreamMirrorNotUpdatable));
    }
    if old.allow_msg_counter != cfg.allow_msg_counter {
        return refuse("stream configuration update can not change message counter setting");
    }
    if old.allow_msg_ttl && !cfg.allow_msg_ttl {
        // Stored TTLs would silently stop being honoured.
        return refuse("message TTL status can not be disabled");
    }
    if old.allow_msg_schedules && !cfg.allow_msg_schedules {
        return refuse("message schedules can not be disabled");
    }
    if old.persist_mode != cfg.persist_mode {
        return refuse("stream configuration update can not change persist mode");
    }
    if cfg.sealed {
        cfg.max_age = 0;
        cfg.discard = DiscardPolicy::New;
        cfg.deny_delete = true;
        cfg.deny_purge = true;
        cfg.allow_rollup_hdrs = false;
    }
    Ok(())
}

/// A stricter `consumer_limits` may not leave existing consumers over them (nats-server
/// names them in a 10069 error).
fn check_consumer_limits(
    stream: &Stream,
    old: &StreamConfig,
    cfg: &StreamConfig,
) -> Result<(), ApiError> {
    let (new, old) = (&cfg.consumer_limits, &old.consumer_limits);
    let (it, map) = (new.inactive_threshold, new.max_ack_pending);
    let changed =
        (it > 0 && it != old.inactive_threshold) || (map > 0 && map != old.max_ack_pending);
    if !changed {
        return Ok(());
    }
    let over = stream.consumers.over_limits(it, map);
    if over.is_empty() {
        return Ok(());
    }
    Err(JsError::StreamUpdate.with(format!(
        "change to limits violates consumers: {}",
        over.join(", ")
    )))
}

/// The checks of mirrors and sources that look at other streams of the account, as
/// nats-server makes them: message sizes against the origins', the external delivery
/// prefixes against the origins' subjects, and cycles. A mirror inherits `mirror_direct`
/// from its origin's `allow_direct`.
fn check_origins(jsa: &JsAccount, cfg: &mut StreamConfig, pedantic: bool) -> Result<(), ApiError> {
    let mut origin_subjects: Vec<String> = Vec::new();
    let mut deliver_prefixes: Vec<String> = Vec::new();
    let copies = cfg.mirror.iter().map(|m| (m, true));
    let copies: Vec<(StreamSource, bool)> = copies
        .chain(cfg.sources.iter().map(|s| (s, false)))
        .map(|(s, mirror)| (s.clone(), mirror))
        .collect();
    for (src, mirror) in copies {
        if let Some(ext) = &src.external {
            if !ext.deliver.is_empty() {
                deliver_prefixes.push(ext.deliver.clone());
            }
            continue;
        }
        let Some(origin) = jsa.stream(&src.name).map(|s| s.config()) else {
            continue;
        };
        origin_subjects.extend(origin.subjects.iter().cloned());
        if cfg.max_msg_size > 0 && origin.max_msg_size > 0 && cfg.max_msg_size < origin.max_msg_size
        {
            return Err(if mirror {
                ApiError::from(JsError::MirrorMaxMessageSizeTooBig)
            } else {
                ApiError::from(JsError::SourceMaxMessageSizeTooBig)
            });
        }
        if mirror {
            if pedantic && cfg.mirror_direct != origin.allow_direct {
                return Err(JsError::Pedantic
                    .with("origin stream has direct get set, mirror has it disabled"));
            }
            cfg.mirror_direct = origin.allow_direct;
        }
    }
    for prefix in deliver_prefixes {
        for subject in &origin_subjects {
            let prefixed = format!("{prefix}.{subject}");
            if crate::subject::collide(subject.as_bytes(), prefixed.as_bytes()) {
                return Err(JsError::StreamExternalDelPrefixOverlaps.with_each(&[&prefix, subject]));
            }
        }
    }
    check_cycles(jsa, cfg)
}

/// Refuses a stream whose sources (through other streams' sources and mirrors) lead back to
/// itself with subjects that would be copied round again.
fn check_cycles(jsa: &JsAccount, cfg: &StreamConfig) -> Result<(), ApiError> {
    let cycle = || Err(JsError::StreamInvalidConfig.with("detected cycle"));
    let overlaps = |subjects: &[String], filter: &str| {
        filter.is_empty()
            || subjects
                .iter()
                .any(|s| crate::subject::collide(s.as_bytes(), filter.as_bytes()))
    };
    let mut to_visit: Vec<std::sync::Arc<StreamConfig>> = vec![std::sync::Arc::new(cfg.clone())];
    let mut visited: Vec<String> = Vec::new();
    while let Some(c) = (!to_visit.is_empty()).then(|| to_visit.remove(0)) {
        visited.push(c.name.clone());
        for src in c.sources.iter().filter(|s| s.external.is_none()) {
            if visited.contains(&src.name) {
                if overlaps(&c.subjects, &src.filter_subject) {
                    return cycle();
                }
            } else if let Some(next) = jsa.stream(&src.name) {
                to_visit.push(next.config());
            }
        }
        if let Some(m) = c.mirror.as_ref().filter(|m| m.external.is_none()) {
            if visited.contains(&m.name) {
                return cycle();
            }
            if let Some(next) = jsa.stream(&m.name) {
                to_visit.push(next.config());
            }
        }
    }
    Ok(())
}

fn overlaps(jsa: &JsAccount, cfg: &StreamConfig) -> bool {
    jsa.streams()
        .iter()
        .filter(|s| s.name != cfg.name)
        .any(|s| {
            let other = s.config();
            other.subjects.iter().any(|a| {
                cfg.subjects
                    .iter()
                    .any(|b| crate::subject::collide(a.as_bytes(), b.as_bytes()))
            })
        })
}

/// Checks that a stream may reserve `max_bytes` (beyond what `current` already holds).
fn check_reservation(
    js: &JetStream,
    jsa: &JsAccount,
    cfg: &StreamConfig,
    current: u64,
) -> Result<(), ApiError> {
    let exceeded = || match cfg.storage {
        Storage::Memory => ApiError::from(JsError::MemoryResourcesExceeded),
        Storage::File => ApiError::from(JsError::StorageResourcesExceeded),
    };
    let limits = jsa.limits().unwrap_or_default();
    let account_limit = match cfg.storage {
        Storage::Memory => limits.max_memory,
        Storage::File => limits.max_store,
    };
    let want = cfg.max_bytes.max(0) as u64;
    if account_limit >= 0 {
        if want > 0 && jsa.reserved(cfg.storage) - current + want > account_limit as u64 {
            return Err(exceeded());
        }
        // Accounts with limits reserved their whole quota from the server when enabled.
        return Ok(());
    }
    if want > 0 {
        let (res_mem, res_file) = js.reserved();
        let (server_max, reserved) = match cfg.storage {
            Storage::Memory => (js.usage.max_memory, res_mem),
            Storage::File => (js.usage.max_store, res_file),
        };
        if reserved - current + want > server_max.max(0) as u64 {
            return Err(exceeded());
        }
    }
    Ok(())
}

fn stream_create(js: &JetStream, jsa: &JsAccount, name: &str, payload: &[u8]) -> ApiResult {
    let (mut cfg, pedantic) = parse_config(jsa, name, payload, true)?;
    check_max_bytes_limits(jsa, &cfg)?;
    let _admin = jsa.admin.lock();
    check_origins(jsa, &mut cfg, pedantic)?;
    if let Some(existing) = jsa.stream(name) {
        if *existing.config() == cfg {
            return Ok(typed(
                "stream_create",
                &info_body(js, &existing, Some(true)),
            ));
        }
        return Err(JsError::StreamNameExist.into());
    }
    let limits = jsa.limits().unwrap_or_default();
    // Zero is no limit, as for consumers (and as nats-server reads both).
    if limits.max_streams > 0 && jsa.streams().len() as i64 >= limits.max_streams {
        return Err(JsError::MaximumStreamsLimit.into());
    }
    if overlaps(jsa, &cfg) {
        return Err(JsError::StreamSubjectOverlap.into());
    }
    check_reservation(js, jsa, &cfg, 0)?;
    if cfg.storage == Storage::Memory && limits.max_memory == 0 {
        return Err(JsError::MemoryResourcesExceeded.into());
    }
    if cfg.storage == Storage::File && limits.max_store == 0 {
        return Err(JsError::StorageResourcesExceeded.into());
    }
    if cfg.storage == Storage::File {
        // A leftover directory (a stream deleted while its account was unloaded, or a crash
        // mid-delete) must not resurrect old messages under a new stream.
        let dir = js.stream_dir(&jsa.name, &cfg.name);
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let first_seq = cfg.first_seq.unwrap_or(0);
    let stream = js.open_stream(jsa, cfg, crate::store::now_ns())?;
    // `first_seq`: the new stream's first message gets this sequence (a floor, kept on disk).
    let started = if first_seq > 1 {
        stream
            .store
            .compact(first_seq)
            .map(|_| ())
            .map_err(ApiError::internal)
    } else {
        Ok(())
    };
    if let Err(e) = started.and_then(|()| js.save_meta(&stream)) {
        let _ = stream.delete();
        return Err(e);
    }
    jsa.streams.write().insert(name.to_string(), stream.clone());
    tracing::debug!("JetStream stream '{} > {}' created", jsa.name, name);
    super::action_advisory(jsa, name, None, "create");
    Ok(typed("stream_create", &info_body(js, &stream, Some(true))))
}

/// The account's per-stream byte limits (nats-server's `maxBytesLimits`): streams must set
/// `max_bytes` when the account requires it, and may not reserve more than allowed.
fn check_max_bytes_limits(jsa: &JsAccount, cfg: &StreamConfig) -> Result<(), ApiError> {
    let limits = jsa.limits().unwrap_or_default();
    let max_stream_bytes = match cfg.storage {
        Storage::Memory => limits.memory_max_stream_bytes,
        Storage::File => limits.storage_max_stream_bytes,
    };
    if limits.max_bytes_required && cfg.max_bytes <= 0 {
        return Err(JsError::StreamMaxBytesRequired.into());
    }
    if max_stream_bytes > 0 && cfg.max_bytes > max_stream_bytes {
        return Err(JsError::StreamMaxStreamBytesExceeded.into());
    }
    Ok(())
}

fn stream_update(js: &JetStream, jsa: &JsAccount, name: &str, payload: &[u8]) -> ApiResult {
    let (mut cfg, pedantic) = parse_config(jsa, name, payload, false)?;
    check_max_bytes_limits(jsa, &cfg)?;
    let _admin = jsa.admin.lock();
    let stream = jsa
        .stream(name)
        .ok_or_else(|| ApiError::from(JsError::StreamNotFound))?;
    check_origins(jsa, &mut cfg, pedantic)?;
    let old = stream.config();
    check_update(&old, &mut cfg)?;
    check_consumer_limits(&stream, &old, &cfg)?;
    if overlaps(jsa, &cfg) {
        return Err(JsError::StreamSubjectOverlap.into());
    }
    check_reservation(js, jsa, &cfg, old.max_bytes.max(0) as u64)?;
    let allow_direct = cfg.allow_direct;
    stream.update(cfg)?;
    stream.set_direct(allow_direct.then(|| jsa.direct_handler()));
    js.save_meta(&stream)?;
    super::action_advisory(jsa, name, None, "modify");
    Ok(typed("stream_update", &info_body(js, &stream, None)))
}

#[derive(Deserialize, Default)]
struct InfoRequest {
    #[serde(default)]
    subjects_filter: Option<String>,
    #[serde(default)]
    deleted_details: bool,
    #[serde(default)]
    offset: u64,
}

fn stream_info(js: &JetStream, jsa: &JsAccount, name: &str, payload: &[u8]) -> ApiResult {
    let req: InfoRequest = parse_body(jsa, payload)?;
    let stream = jsa.stream(name).ok_or(JsError::StreamNotFound)?;
    let mut state = state_json(&stream);
    // Paging fields are set only when the filter matched something; empty lists are left
    // out, as nats-server's JSON does.
    let (mut total, mut offset, mut limit) = (0, 0, 0);
    if let Some(filter) = req.subjects_filter.filter(|f| !f.is_empty()) {
        let all = stream.store.subjects_state(filter.as_bytes());
        if !all.is_empty() {
            (total, offset, limit) = (all.len() as u64, req.offset, SUBJECTS_LIMIT);
            let page: BTreeMap<String, u64> = all
                .into_iter()
                .skip(req.offset as usize)
                .take(SUBJECTS_LIMIT as usize)
                .map(|s| (String::from_utf8_lossy(&s.subject).into_owned(), s.msgs))
                .collect();
            state.subjects = (!page.is_empty()).then_some(page);
        }
    }
    if req.deleted_details {
        state.deleted = Some(stream.store.deleted_seqs()).filter(|d| !d.is_empty());
    }
    let (mirror, sources) = stream.sources_info();
    Ok(typed(
        "stream_info",
        &InfoResponse {
            total,
            offset,
            limit,
            config: stream.config().for_reply(true),
            created: rfc3339_ns(stream.created),
            state,
            domain: js.config.domain.as_deref(),
            cluster: Cluster {
                leader: &js.server_name,
            },
            mirror,
            sources,
            ts: now(),
        },
    ))
}

#[derive(Serialize)]
struct Success {
    success: bool,
}

fn stream_delete(jsa: &JsAccount, name: &str) -> ApiResult {
    let _admin = jsa.admin.lock();
    let stream = jsa
        .streams
        .write()
        .remove(name)
        .ok_or(JsError::StreamNotFound)?;
    let consumers = stream.consumers.names();
    stream.delete()?;
    for consumer in &consumers {
        super::action_advisory(jsa, name, Some(consumer), "delete");
    }
    super::action_advisory(jsa, name, None, "delete");
    Ok(typed("stream_delete", &Success { success: true }))
}

#[derive(Deserialize, Default)]
struct PurgeBody {
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    keep: Option<u64>,
}

#[derive(Serialize)]
struct PurgeResponse {
    success: bool,
    purged: u64,
}

fn stream_purge(jsa: &JsAccount, name: &str, payload: &[u8]) -> ApiResult {
    let body: PurgeBody = parse_body(jsa, payload)?;
    let stream = jsa.stream(name).ok_or(JsError::StreamNotFound)?;
    let cfg = stream.config();
    // Sealing also denies purges; nats-server reports the seal first.
    if cfg.sealed {
        return Err(JsError::StreamSealed.into());
    }
    if cfg.deny_purge {
        return Err(JsError::StreamPurgeFailed.with("stream purge not permitted"));
    }
    if body.seq.is_some() && body.keep.is_some() {
        return Err(JsError::BadRequest.into());
    }
    let req = PurgeRequest {
        filter: body
            .filter
            .filter(|f| !f.is_empty() && f != ">")
            .map(String::into_bytes),
        seq: body.seq.filter(|s| *s > 0),
        keep: body.keep.filter(|k| *k > 0),
    };
    let purged = stream.purge(&req)?;
    Ok(typed(
        "stream_purge",
        &PurgeResponse {
            success: true,
            purged,
        },
    ))
}

#[derive(Deserialize, Default)]
struct MsgGetRequest {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    last_by_subj: Option<String>,
    #[serde(default)]
    next_by_subj: Option<String>,
    #[serde(default)]
    batch: Option<u64>,
    #[serde(default)]
    multi_last: Option<Vec<String>>,
    #[serde(default)]
    max_bytes: Option<u64>,
    /// RFC 3339: the first message at or after this time.
    #[serde(default)]
    start_time: Option<String>,
    /// Known to strict decoding; nats-server ignores them in `STREAM.MSG.GET`, and natsd's
    /// batched direct gets do not implement them yet (docs/differences.md).
    #[serde(default, rename = "up_to_seq")]
    _up_to_seq: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "up_to_time")]
    _up_to_time: Option<serde::de::IgnoredAny>,
    /// Leave the headers out of the reply.
    #[serde(default)]
    no_hdr: bool,
}

#[derive(Serialize)]
struct MsgJson {
    subject: String,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hdrs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    time: String,
}

#[derive(Serialize)]
struct MsgGetResponse {
    message: MsgJson,
}

fn load(stream: &Stream, req: &MsgGetRequest) -> Result<StoredMsg, ApiError> {
    let store = &stream.store;
    let res = if let Some(subj) = req.last_by_subj.as_deref().filter(|s| !s.is_empty()) {
        store.load_last_msg(subj.as_bytes())
    } else if let Some(subj) = req.next_by_subj.as_deref().filter(|s| !s.is_empty()) {
        store.load_next_msg(subj.as_bytes(), req.seq.unwrap_or(0))
    } else if let Some(seq) = req.seq {
        store.load_msg(seq)
    } else {
        return Err(JsError::BadRequest.into());
    };
    res.map_err(super::store_error)
}

/// `$JS.API.STREAM.MSG.GET.<stream>`, checked in nats-server's order.
fn msg_get(jsa: &JsAccount, name: &str, payload: &[u8]) -> ApiResult {
    if is_empty_body(payload) {
        return Err(JsError::BadRequest.into());
    }
    let mut req: MsgGetRequest = parse_body(jsa, payload)?;
    let seq = req.seq.unwrap_or(0);
    let last = req.last_by_subj.as_deref().is_some_and(|s| !s.is_empty());
    let next = req.next_by_subj.as_deref().is_some_and(|s| !s.is_empty());
    let start = req.start_time.is_some();
    let batched = req.batch.is_some_and(|b| b > 0) || req.max_bytes.is_some_and(|b| b > 0);
    if batched
        || (seq > 0 && last)
        || (seq == 0 && !last && !next && !start)
        || (seq > 0 && start)
        || (start && last)
        || (last && next)
    {
        return Err(JsError::BadRequest.into());
    }
    let stream = jsa.stream(name).ok_or(JsError::StreamNotFound)?;
    if let Some(t) = req.start_time.as_deref() {
        let t = natsd_conf::timestamp::parse_rfc3339_ns(t)
            .ok_or_else(|| JsError::InvalidJSON.with(format_args!("invalid start_time {t:?}")))?;
        let st = stream.store.state();
        let at =
            crate::consumer::first_seq_at_or_after(&*stream.store, t, st.first_seq, st.last_seq);
        req.seq = Some(at);
        if !next {
            req.next_by_subj = Some(">".to_string());
        }
    }
    let mut msg = load(&stream, &req)?;
    if req.no_hdr {
        msg.headers = None;
    }
    Ok(typed(
        "stream_msg_get",
        &MsgGetResponse {
            message: MsgJson {
                subject: String::from_utf8_lossy(&msg.subject).into_owned(),
                seq: msg.seq,
                hdrs: msg.headers.as_deref().map(base64),
                data: (!msg.payload.is_empty()).then(|| base64(&msg.payload)),
                time: rfc3339_ns(msg.ts),
            },
        },
    ))
}

#[derive(Deserialize, Default)]
struct MsgDeleteRequest {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    no_erase: bool,
}

fn msg_delete(jsa: &JsAccount, name: &str, payload: &[u8]) -> ApiResult {
    let stream = jsa.stream(name).ok_or(JsError::StreamNotFound)?;
    if is_empty_body(payload) {
        return Err(JsError::BadRequest.into());
    }
    let req: MsgDeleteRequest = parse_body(jsa, payload)?;
    let cfg = stream.config();
    if cfg.sealed {
        return Err(JsError::StreamSealed.into());
    }
    if cfg.deny_delete {
        return Err(JsError::StreamMsgDeleteFailed.with("message delete not permitted"));
    }
    if req.seq > stream.store.state().last_seq {
        // Past the end nats-server's store reports EOF rather than "not found".
        return Err(JsError::StreamMsgDeleteFailed.with("stream store EOF"));
    }
    if !stream.delete_msg(req.seq, !req.no_erase)? {
        return Err(JsError::SequenceNotFound.with(req.seq));
    }
    Ok(typed("stream_msg_delete", &Success { success: true }))
}

#[derive(Deserialize, Default)]
struct NamesRequest {
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    subject: Option<String>,
}

#[derive(Serialize)]
struct NamesResponse {
    total: usize,
    offset: usize,
    limit: usize,
    streams: Vec<String>,
}

#[derive(Serialize)]
struct ListResponse<'a> {
    total: usize,
    offset: usize,
    limit: usize,
    streams: Vec<CreateResponse<'a>>,
}

fn stream_names(jsa: &JsAccount, payload: &[u8], list: bool, js: &JetStream) -> ApiResult {
    let req: NamesRequest = parse_body(jsa, payload)?;
    let streams: Vec<Arc<Stream>> = jsa
        .streams()
        .into_iter()
        .filter(|s| match req.subject.as_deref().filter(|f| !f.is_empty()) {
            None => true,
            Some(filter) => s
                .config()
                .subjects
                .iter()
                .any(|subj| crate::subject::collide(subj.as_bytes(), filter.as_bytes())),
        })
        .collect();
    let total = streams.len();
    if list {
        let page = streams
            .iter()
            .skip(req.offset)
            .take(LIST_LIMIT)
            .map(|s| {
                let mut info = info_body(js, s, None);
                info.config = s.config().for_reply(false);
                info
            })
            .collect();
        return Ok(typed(
            "stream_list",
            &ListResponse {
                total,
                offset: req.offset,
                limit: LIST_LIMIT,
                streams: page,
            },
        ));
    }
    Ok(typed(
        "stream_names",
        &NamesResponse {
            total,
            offset: req.offset,
            limit: NAMES_LIMIT,
            streams: streams
                .iter()
                .skip(req.offset)
                .take(NAMES_LIMIT)
                .map(|s| s.name.clone())
                .collect(),
        },
    ))
}

fn status(code: u16, text: &str) -> Reply {
    (
        Some(format!("NATS/1.0 {code} {text}\r\n\r\n").into_bytes()),
        Vec::new(),
    )
}

fn direct_headers(stream: &str, msg: &StoredMsg, extra: &[(&str, String)]) -> Vec<u8> {
    let mut h = match msg.headers.as_deref() {
        Some(stored) if stored.ends_with(b"\r\n\r\n") => stored[..stored.len() - 2].to_vec(),
        _ => b"NATS/1.0\r\n".to_vec(),
    };
    let subject = String::from_utf8_lossy(&msg.subject);
    h.extend_from_slice(
        format!(
            "Nats-Stream: {stream}\r\nNats-Subject: {subject}\r\nNats-Sequence: {}\r\nNats-Time-Stamp: {}\r\n",
            msg.seq,
            rfc3339_ns(msg.ts)
        )
        .as_bytes(),
    );
    for (k, v) in extra {
        h.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    h.extend_from_slice(b"\r\n");
    h
}

/// `$JS.API.DIRECT.GET.<stream>[.<subject>]`: the raw message with `Nats-*` headers.
pub(crate) fn direct_get(jsa: &JsAccount, arg: &str, payload: &[u8], reply_to: &[u8]) -> Reply {
    let (name, subject) = match arg.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (arg, None),
    };
    let Some(stream) = jsa.stream(name).filter(|s| s.config().allow_direct) else {
        return status(404, "Message Not Found");
    };
    let req = match subject {
        Some(s) => MsgGetRequest {
            last_by_subj: Some(s.to_string()),
            ..MsgGetRequest::default()
        },
        None if is_empty_body(payload) => return status(408, "Empty Request"),
        None => match crate::json::from_request::<MsgGetRequest>(payload) {
            Ok(r) => r,
            Err(_) => return status(408, "Bad Request"),
        },
    };
    if req.multi_last.is_some() || req.batch.is_some_and(|b| b > 1) {
        return direct_batch(jsa, &stream, name, &req, reply_to);
    }
    match load(&stream, &req) {
        Ok(msg) => (Some(direct_headers(name, &msg, &[])), msg.payload.to_vec()),
        Err(_) => status(404, "Message Not Found"),
    }
}

/// Batched direct gets: every message but the last goes out here, each with
/// `Nats-Num-Pending` / `Nats-Last-Sequence`; the returned reply is the `204 EOB` frame.
fn direct_batch(
    jsa: &JsAccount,
    stream: &Stream,
    name: &str,
    req: &MsgGetRequest,
    reply_to: &[u8],
) -> Reply {
    let store = &stream.store;
    let limit = req.batch.filter(|b| *b > 0).unwrap_or(u64::MAX);
    let mut msgs: Vec<StoredMsg> = Vec::new();
    let mut up_to = None;
    let filter = req
        .next_by_subj
        .as_deref()
        .unwrap_or("")
        .as_bytes()
        .to_vec();
    if let Some(filters) = &req.multi_last {
        let last = store.state().last_seq;
        up_to = Some(last);
        let mut seqs: Vec<u64> = filters
            .iter()
            .flat_map(|f| store.subjects_state(f.as_bytes()))
            .map(|s| s.last_seq)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        msgs.extend(
            seqs.into_iter()
                .take(limit.min(1024) as usize)
                .filter_map(|seq| store.load_msg(seq).ok()),
        );
    } else {
        let mut seq = req.seq.unwrap_or(0).max(1);
        while (msgs.len() as u64) < limit {
            match store.load_next_msg(&filter, seq) {
                Ok(m) => {
                    seq = m.seq + 1;
                    msgs.push(m);
                }
                Err(_) => break,
            }
        }
    }
    if msgs.is_empty() {
        return status(404, "Message Not Found");
    }
    let mut last_seq = 0;
    let mut pending = 0;
    let count = msgs.len();
    for (i, m) in msgs.iter().enumerate() {
        pending = if up_to.is_some() {
            (count - i - 1) as u64
        } else {
            store.num_pending(&filter, m.seq + 1)
        };
        let h = direct_headers(
            name,
            m,
            &[
                ("Nats-Num-Pending", pending.to_string()),
                ("Nats-Last-Sequence", last_seq.to_string()),
            ],
        );
        route::publish(&jsa.account, reply_to, None, Some(&h), &m.payload);
        last_seq = m.seq;
    }
    let mut eob = format!(
        "NATS/1.0 204 EOB\r\nNats-Num-Pending: {pending}\r\nNats-Last-Sequence: {last_seq}\r\n"
    );
    if let Some(up_to) = up_to {
        eob.push_str(&format!("Nats-UpTo-Sequence: {up_to}\r\n"));
    }
    eob.push_str("\r\n");
    (Some(eob.into_bytes()), Vec::new())
}

/// Standard base64 with padding (what Go's `[]byte` JSON encoding produces).
fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(TABLE[(n >> 18) as usize & 63] as char);
        out.push(TABLE[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            TABLE[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            TABLE[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_reference_samples() {
        assert_eq!(base64(b"v1"), "djE=");
        assert_eq!(
            base64(b"NATS/1.0\r\nX-Foo: bar\r\n\r\n"),
            "TkFUUy8xLjANClgtRm9vOiBiYXINCg0K"
        );
    }

    #[test]
    fn typed_puts_type_first() {
        let body = typed("stream_delete", &Success { success: true });
        assert_eq!(
            body,
            br#"{"type":"io.nats.jetstream.api.v1.stream_delete_response","success":true}"#
        );
        let err = error_reply(
            "stream_purge",
            &JsError::StreamPurgeFailed.with("stream purge not permitted"),
        );
        assert_eq!(
            String::from_utf8(err).unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.stream_purge_response","error":{"code":500,"err_code":10110,"description":"stream purge not permitted"},"purged":0}"#
        );
    }
}
