//! Monitoring over NATS for the system account, as nats-server answers it (what `nats server
//! list / ping / report` send): `$SYS.REQ.SERVER.PING` (statistics),
//! `$SYS.REQ.SERVER.PING.<ENDPOINT>` and `$SYS.REQ.SERVER.<id>.<ENDPOINT>` for `VARZ`, `CONNZ`,
//! `SUBSZ`, `JSZ`, `ACCOUNTZ`, `HEALTHZ` and `STATSZ`. Replies are
//! `{"server": {...}, "data": {...}}` (`"statsz"` for the statistics); a request body may
//! carry the endpoint's options as a JSON object with the HTTP query parameters' names.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use serde_json::{json, Value};

use super::{accountz, connz, jsz, subsz, varz, Params};
use crate::route::{self, FlushSet, InternalHandler, InternalMsg};
use crate::server::Server;

/// Answers the requests; holds the server weakly (the server owns the subscription).
struct SysRequests {
    server: Weak<Server>,
    seq: AtomicU64,
}

/// Subscribe the system account to the server requests.
pub fn install(server: &Arc<Server>) {
    let Some(account) = server.account(&server.system_account()) else {
        return;
    };
    let handler = Arc::new(SysRequests {
        server: Arc::downgrade(server),
        seq: AtomicU64::new(0),
    });
    let id = server.identity().server_id;
    for subject in [
        "$SYS.REQ.SERVER.PING".to_string(),
        "$SYS.REQ.SERVER.PING.*".to_string(),
        format!("$SYS.REQ.SERVER.{id}.*"),
    ] {
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

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

impl SysRequests {
    /// The `data` of one endpoint, or the error nats-server would put in the reply.
    fn data(&self, server: &Server, endpoint: &str, p: &Params) -> Result<Value, String> {
        let error = |e: super::MonitorError| e.to_string();
        Ok(match endpoint {
            "VARZ" => to_value(&varz::varz(server, BTreeMap::new())),
            "CONNZ" => to_value(
                &connz::connz(server, &connz::ConnzOptions::from_params(p).map_err(error)?)
                    .map_err(error)?,
            ),
            "SUBSZ" => to_value(
                &subsz::subsz(server, &subsz::SubszOptions::from_params(p).map_err(error)?)
                    .map_err(error)?,
            ),
            "JSZ" => to_value(&jsz::jsz(
                server,
                &jsz::JszOptions::from_params(p).map_err(error)?,
            )),
            "ACCOUNTZ" => to_value(&accountz::accountz(server, p.get("acc")).map_err(error)?),
            "HEALTHZ" => {
                let opts = jsz::HealthzOptions::from_params(p).map_err(error)?;
                to_value(&jsz::healthz(server, &opts).1)
            }
            "STATSZ" => statsz(server),
            other => return Err(format!("unknown endpoint {other}")),
        })
    }

    fn server_block(&self, server: &Server) -> Value {
        let id = server.identity();
        let js = server.jetstream().is_some();
        json!({
            "name": id.server_name,
            "host": id.host,
            "id": id.server_id,
            "ver": id.version,
            "jetstream": js,
            "flags": u64::from(js),
            "seq": self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            "time": super::rfc3339(std::time::SystemTime::now()),
        })
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
        let server_block = self.server_block(&server);
        let body = match self.data(&server, endpoint, &params(msg.payload)) {
            Ok(data) if endpoint == "STATSZ" => json!({"server": server_block, "statsz": data}),
            Ok(data) => json!({"server": server_block, "data": data}),
            Err(e) => json!({"server": server_block, "error": {"code": 400, "description": e}}),
        };
        let payload = serde_json::to_vec(&body).unwrap_or_default();
        route::publish_into(&account, reply, None, None, &payload, flush);
    }
}
