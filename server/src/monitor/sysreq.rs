//! Monitoring over NATS for the system account, as nats-server answers it (what `nats server
//! list / ping / report` send): `$SYS.REQ.SERVER.PING` (statistics),
//! `$SYS.REQ.SERVER.PING.<ENDPOINT>` and `$SYS.REQ.SERVER.<id>.<ENDPOINT>` for `VARZ`, `CONNZ`,
//! `SUBSZ`, `JSZ`, `ACCOUNTZ`, `HEALTHZ` and `STATSZ`. Replies are
//! `{"server": {...}, "data": {...}}` (`"statsz"` for the statistics); a request body may
//! carry the endpoint's options as a JSON object with the HTTP query parameters' names.
//! An endpoint nats-server does not serve has no subscription (the requester sees no
//! responders).
//!
//! `$SYS.REQ.SERVER.<id>.RELOAD` reloads the configuration file (as SIGHUP does) and answers
//! once the reload is done: `{"server": {...}}`, or with `"error": {"code": 500,
//! "description": <why>}` when it was refused (nothing changed then). As in nats-server there
//! is no `PING` form, a body that is not a JSON object gets code 400, and a body whose
//! `server_name` / `host` / `cluster` / `tags` / `domain` filter does not match this server
//! gets no reply. Only users of the system account can send it: the subscription lives there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use serde_json::{json, Value};

use super::{accountz, connz, jsz, subsz, varz, Params};
use crate::route;
use crate::server::Server;
use crate::subscription::{FlushSet, InternalHandler, InternalMsg};

/// Answers the requests; holds the server weakly (the server owns the subscription).
struct SysRequests {
    server: Weak<Server>,
    /// `seq` of the replies' server block; shared with the tasks that answer reloads.
    seq: Arc<AtomicU64>,
    /// Where reloads run: a request may be delivered on a thread outside the runtime (a
    /// JetStream worker).
    runtime: Option<tokio::runtime::Handle>,
}

/// Subscribe the system account to the server requests.
pub(crate) fn install(server: &Arc<Server>) {
    let Some(account) = server.account(&server.system_account()) else {
        return;
    };
    let handler = Arc::new(SysRequests {
        server: Arc::downgrade(server),
        seq: Arc::new(AtomicU64::new(0)),
        runtime: tokio::runtime::Handle::try_current().ok(),
    });
    let id = server.identity().server_id;
    // One subscription per endpoint, as nats-server has, so a request for an endpoint it does
    // not serve (or `PING.RELOAD`) finds no responders instead of waiting for a reply.
    let mut subjects = vec!["$SYS.REQ.SERVER.PING".to_string()];
    for endpoint in ENDPOINTS {
        subjects.push(format!("$SYS.REQ.SERVER.PING.{endpoint}"));
        subjects.push(format!("$SYS.REQ.SERVER.{id}.{endpoint}"));
    }
    subjects.push(format!("$SYS.REQ.SERVER.{id}.RELOAD"));
    for subject in subjects {
        if let Err(e) =
            route::subscribe_internal(&account, subject.as_bytes(), None, handler.clone())
        {
            tracing::warn!("system account request subscription {subject}: {e}");
        }
    }
}

/// The options a request body carries, as query parameters.
fn params(payload: &[u8]) -> Params {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(payload) else {
        return Params::default();
    };
    let pairs: Vec<String> = map
        .iter()
        .filter_map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some(format!("{k}={v}"))
        })
        .collect();
    Params::parse(&pairs.join("&"))
}

/// The reply's `statsz`, from the same figures `/varz` shows.
fn statsz(server: &Server) -> Value {
    let v = varz::varz(server, BTreeMap::new());
    let accounts = server.accounts();
    json!({
        "start": v.start,
        "mem": v.mem,
        "cores": v.cores,
        "gomaxprocs": v.cores,
        "cpu": v.cpu,
        "connections": v.connections,
        "total_connections": v.total_connections,
        "active_accounts": accounts.len(),
        "subscriptions": v.subscriptions,
        "sent": {"msgs": v.out_msgs, "bytes": v.out_bytes},
        "sent_to_clients": {"msgs": v.out_msgs, "bytes": v.out_bytes},
        "received": {"msgs": v.in_msgs, "bytes": v.in_bytes},
        "received_from_clients": {"msgs": v.in_msgs, "bytes": v.in_bytes},
        "slow_consumers": v.slow_consumers,
        "active_servers": 1,
    })
}

/// A system reply as nats-server writes it: `server` first, then `data` (or `statsz`) or
/// `error`, each in its own field order (a `Value` would sort the keys).
#[derive(serde::Serialize)]
struct SysReply<'a, T: serde::Serialize> {
    server: &'a ServerInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statsz: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ReplyError<'a>>,
}

#[derive(serde::Serialize)]
struct ReplyError<'a> {
    code: u16,
    description: &'a str,
}

fn encode<T: serde::Serialize>(reply: &SysReply<'_, T>) -> Vec<u8> {
    serde_json::to_vec(reply).unwrap_or_default()
}

fn data_reply<T: serde::Serialize>(server: &ServerInfo, data: &T) -> Vec<u8> {
    encode(&SysReply {
        server,
        data: Some(data),
        statsz: None,
        error: None,
    })
}

/// A reply with only the `server` block, or with an error beside it.
fn error_reply(server: &ServerInfo, error: Option<(u16, &str)>) -> Vec<u8> {
    encode::<()>(&SysReply {
        server,
        data: None,
        statsz: None,
        error: error.map(|(code, description)| ReplyError { code, description }),
    })
}

impl SysRequests {
    /// The reply of one endpoint, with its data or the error nats-server would answer.
    fn reply(&self, server: &Server, endpoint: &str, p: &Params) -> Vec<u8> {
        let block = self.server_block(server);
        let error = |e: super::MonitorError| e.to_string();
        let body = (|| -> Result<Vec<u8>, String> {
            Ok(match endpoint {
                "VARZ" => data_reply(&block, &varz::varz(server, BTreeMap::new())),
                "CONNZ" => data_reply(
                    &block,
                    &connz::connz(server, &connz::ConnzOptions::from_params(p).map_err(error)?)
                        .map_err(error)?,
                ),
                "SUBSZ" => data_reply(
                    &block,
                    &subsz::subsz(server, &subsz::SubszOptions::from_params(p).map_err(error)?)
                        .map_err(error)?,
                ),
                "JSZ" => data_reply(
                    &block,
                    &jsz::jsz(server, &jsz::JszOptions::from_params(p).map_err(error)?),
                ),
                "ACCOUNTZ" => data_reply(
                    &block,
                    &accountz::accountz(server, p.get("acc")).map_err(error)?,
                ),
                "HEALTHZ" => {
                    let opts = jsz::HealthzOptions::from_params(p).map_err(error)?;
                    data_reply(&block, &jsz::healthz(server, &opts).1)
                }
                "STATSZ" => encode::<()>(&SysReply {
                    server: &block,
                    data: None,
                    statsz: Some(&statsz(server)),
                    error: None,
                }),
                other => return Err(format!("unknown endpoint {other}")),
            })
        })();
        body.unwrap_or_else(|e| error_reply(&block, Some((400, &e))))
    }

    fn server_block(&self, server: &Server) -> ServerInfo {
        ServerInfo::new(server, self.seq.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// The cluster feature flags nats-server 2.15 announces by default. They describe how its
/// cluster nodes talk to each other; a single node has nothing to negotiate and shows the
/// defaults.
const FEATURE_FLAGS: &[(&str, bool)] = &[
    ("js_ack_fc_v2", false),
    ("js_api_reply_v2", false),
    ("js_raft_delete_range", true),
    ("js_snapshot_sources", false),
];

/// The capability flags a server with JetStream announces, as nats-server 2.15 sets them:
/// JetStream enabled (1), binary stream snapshots (2), account Raft groups allowed (4).
const JETSTREAM_CAPABILITIES: u64 = 1 | 2 | 4;

/// The `server` block of a system reply, in nats-server's field order.
#[derive(serde::Serialize)]
pub(super) struct ServerInfo {
    name: String,
    host: String,
    id: String,
    ver: &'static str,
    feature_flags: BTreeMap<&'static str, bool>,
    jetstream: bool,
    flags: u64,
    seq: u64,
    time: String,
}

impl ServerInfo {
    /// This server's block for the `seq`th reply.
    pub(super) fn new(server: &Server, seq: u64) -> ServerInfo {
        let id = server.identity();
        let js = server.subsystem::<crate::jetstream::JetStream>().is_some();
        ServerInfo {
            name: id.server_name,
            host: id.host,
            id: id.server_id,
            ver: id.version,
            feature_flags: FEATURE_FLAGS.iter().copied().collect(),
            jetstream: js,
            flags: if js { JETSTREAM_CAPABILITIES } else { 0 },
            seq,
            time: super::rfc3339(std::time::SystemTime::now()),
        }
    }
}

/// The endpoints answered besides `RELOAD`.
const ENDPOINTS: &[&str] = &[
    "VARZ", "CONNZ", "SUBSZ", "JSZ", "ACCOUNTZ", "HEALTHZ", "STATSZ",
];

/// nats-server's `EventFilterOptions`: which servers a request is meant for.
#[derive(Debug, Default, serde::Deserialize)]
struct EventFilter {
    #[serde(default, rename = "server_name")]
    name: String,
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    exact_match: bool,
}

impl EventFilter {
    /// Whether this server is one the filter names. natsd has no cluster, tags or domain, so
    /// a filter on any of those matches nothing, as on a nats-server without them.
    fn matches(&self, name: &str, host: &str) -> bool {
        let field = |want: &str, have: &str| {
            want.is_empty()
                || if self.exact_match {
                    want == have
                } else {
                    have.contains(want)
                }
        };
        field(&self.name, name)
            && field(&self.host, host)
            && field(&self.cluster, "")
            && self.tags.is_empty()
            && self.domain.is_empty()
    }
}

impl SysRequests {
    /// `$SYS.REQ.SERVER.<id>.RELOAD`: reload on a task of its own (a reload waits for other
    /// reloads and must not hold up the requester's connection), then answer.
    fn reload(&self, server: &Arc<Server>, reply: &[u8], payload: &[u8]) {
        let mut refused = None;
        if !payload.is_empty() {
            match serde_json::from_slice::<EventFilter>(payload) {
                Err(e) => refused = Some((400, e.to_string())),
                Ok(filter) => {
                    let id = server.identity();
                    if !filter.matches(&id.server_name, &id.host) {
                        return;
                    }
                }
            }
        }
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        let handler = SysRequests {
            server: self.server.clone(),
            seq: self.seq.clone(),
            runtime: None,
        };
        let server = server.clone();
        let reply = reply.to_vec();
        runtime.spawn(async move {
            let error = match refused {
                Some(error) => Some(error),
                None => match server.reload().await {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::error!("Failed to reload server configuration: {}", e);
                        Some((500, e.to_string()))
                    }
                },
            };
            let block = handler.server_block(&server);
            let payload = error_reply(
                &block,
                error
                    .as_ref()
                    .map(|(code, description)| (*code, description.as_str())),
            );
            // The system account as the reload left it: the old one may have been replaced.
            if let Some(account) = server.account(&server.system_account()) {
                route::publish(&account, &reply, None, None, &payload);
            }
        });
    }
}

impl InternalHandler for SysRequests {
    fn deliver(&self, msg: &InternalMsg<'_>, flush: &mut FlushSet) {
        let Some(reply) = msg.reply else { return };
        let Some(server) = self.server.upgrade() else {
            return;
        };
        let Some(account) = server.account(&server.system_account()) else {
            return;
        };
        let subject = String::from_utf8_lossy(msg.subject);
        let endpoint = match subject.rsplit_once('.') {
            _ if subject == "$SYS.REQ.SERVER.PING" => "STATSZ",
            Some((_, last)) => last,
            None => return,
        };
        if endpoint == "RELOAD" {
            self.reload(&server, reply, msg.payload);
            return;
        }
        let payload = self.reply(&server, endpoint, &params(msg.payload));
        route::publish_into(&account, reply, None, None, &payload, flush);
    }
}
