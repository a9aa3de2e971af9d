//! `/varz`: server identity, configuration and totals, with nats-server's keys.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use serde::Serialize;

use super::{go_uptime, jsz, rfc3339, rss_bytes, Monitor};
use crate::server::{Server, ServerIdentity};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Varz {
    #[serde(flatten)]
    pub identity: ServerIdentity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    pub max_connections: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_subscriptions: Option<usize>,
    pub ping_interval: u128,
    pub ping_max: u32,
    pub http_host: String,
    pub http_port: i32,
    pub http_base_path: &'static str,
    pub https_port: u16,
    pub auth_timeout: f64,
    pub max_control_line: usize,
    pub max_payload: usize,
    pub max_pending: usize,
    pub cluster: serde_json::Value,
    pub gateway: serde_json::Value,
    pub leaf: serde_json::Value,
    pub mqtt: serde_json::Value,
    pub websocket: serde_json::Value,
    pub jetstream: serde_json::Value,
    pub tls_timeout: f64,
    pub write_deadline: u128,
    pub start: String,
    pub now: String,
    pub uptime: String,
    pub mem: u64,
    pub cores: usize,
    pub gomaxprocs: usize,
    pub cpu: f64,
    pub connections: usize,
    pub total_connections: u64,
    pub routes: u64,
    pub remotes: u64,
    pub leafnodes: u64,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub in_client_msgs: u64,
    pub in_client_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub out_client_msgs: u64,
    pub out_client_bytes: u64,
    pub slow_consumers: u64,
    pub stale_connections: u64,
    pub stalled_clients: u64,
    pub subscriptions: usize,
    pub http_req_stats: BTreeMap<String, u64>,
    pub config_load_time: String,
    pub config_digest: String,
    pub feature_flags: FeatureFlags,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_account: Option<String>,
    pub slow_consumer_stats: KindStats,
    pub stale_connection_stats: KindStats,
    pub disk_io_wait_stats: DiskIoWaitStats,
}

/// nats-server's JetStream feature switches; natsd has none of these behaviours.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct FeatureFlags {
    pub js_ack_fc_v2: bool,
    pub js_api_reply_v2: bool,
    pub js_raft_delete_range: bool,
    pub js_snapshot_sources: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct KindStats {
    pub clients: u64,
    pub routes: u64,
    pub gateways: u64,
    pub leafs: u64,
}

impl KindStats {
    fn clients(n: u64) -> KindStats {
        KindStats {
            clients: n,
            ..KindStats::default()
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct DiskIoWaitStats {
    pub waiters: u64,
    pub waits: u64,
    pub wait_time: u64,
    pub max_wait_time: u64,
}

/// `/varz` as the HTTP endpoint serves it: request counts, CPU sampled between calls, and
/// traffic counters that never go down between two calls.
pub(crate) fn varz_for(monitor: &Monitor) -> Varz {
    let mut v = varz(monitor.server(), monitor.request_stats());
    v.cpu = monitor.cpu_percent();
    v.in_msgs = monitor.monotonic("in_msgs", v.in_msgs);
    v.in_bytes = monitor.monotonic("in_bytes", v.in_bytes);
    v.out_msgs = monitor.monotonic("out_msgs", v.out_msgs);
    v.out_bytes = monitor.monotonic("out_bytes", v.out_bytes);
    v.in_client_msgs = v.in_msgs;
    v.in_client_bytes = v.in_bytes;
    v.out_client_msgs = v.out_msgs;
    v.out_client_bytes = v.out_bytes;
    v
}

/// Build `/varz` from the server state; `cpu` is the lifetime average here.
pub(crate) fn varz(server: &Server, http_req_stats: BTreeMap<String, u64>) -> Varz {
    let opts = server.options();
    let now = SystemTime::now();
    let uptime = now.duration_since(server.start).unwrap_or_default();
    let traffic = server.traffic();
    let config = server.config_state();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let slow = server.stats.slow_consumers.load(Relaxed);
    let stale = server.stats.connections.stale_connections.load(Relaxed);
    let cpu = {
        let secs = uptime.as_secs_f64();
        if secs > 0.0 {
            super::round2(super::cpu_ticks() / super::CLOCK_TICKS / secs * 100.0)
        } else {
            0.0
        }
    };
    Varz {
        identity: server.identity(),
        auth_required: server.authenticator().advertise_required().then_some(true),
        tls_required: opts.tls.as_ref().map(|_| true),
        tls_verify: opts.tls.as_ref().and_then(|t| t.verify.then_some(true)),
        max_connections: opts.max_connections,
        max_subscriptions: (opts.max_subs > 0).then_some(opts.max_subs),
        ping_interval: opts.ping_interval.as_nanos(),
        ping_max: opts.ping_max,
        // Like nats-server: the configured values (`-m -1` shows -1), not the bound port.
        http_host: opts.http_host.clone().unwrap_or_else(|| opts.host.clone()),
        http_port: opts.http_port.unwrap_or(0),
        http_base_path: "",
        https_port: 0,
        auth_timeout: opts.auth.timeout.as_secs_f64(),
        max_control_line: opts.max_control_line,
        max_payload: opts.max_payload,
        max_pending: opts.max_pending,
        cluster: serde_json::json!({}),
        gateway: serde_json::json!({}),
        leaf: serde_json::json!({}),
        mqtt: serde_json::json!({}),
        websocket: varz_websocket(server, &opts),
        jetstream: jsz::varz_jetstream(server),
        tls_timeout: opts
            .tls
            .as_ref()
            .map_or(crate::config::DEFAULT_TLS_TIMEOUT.as_secs_f64(), |t| {
                t.timeout.as_secs_f64()
            }),
        write_deadline: opts.write_deadline.as_nanos(),
        start: rfc3339(server.start),
        now: rfc3339(now),
        uptime: go_uptime(uptime),
        mem: rss_bytes(),
        cores,
        gomaxprocs: cores,
        cpu,
        connections: server.num_clients(),
        total_connections: server.stats.total_connections.load(Relaxed),
        routes: 0,
        remotes: 0,
        leafnodes: 0,
        in_msgs: traffic.in_msgs,
        in_bytes: traffic.in_bytes,
        in_client_msgs: traffic.in_msgs,
        in_client_bytes: traffic.in_bytes,
        out_msgs: traffic.out_msgs,
        out_bytes: traffic.out_bytes,
        out_client_msgs: traffic.out_msgs,
        out_client_bytes: traffic.out_bytes,
        slow_consumers: slow,
        stale_connections: stale,
        stalled_clients: server.stats.connections.stalled_clients.load(Relaxed),
        subscriptions: server.num_subscriptions(),
        http_req_stats,
        config_load_time: rfc3339(config.load_time),
        config_digest: config.digest,
        feature_flags: FeatureFlags::default(),
        system_account: Some(server.system_account()),
        slow_consumer_stats: KindStats::clients(slow),
        stale_connection_stats: KindStats::clients(stale),
        disk_io_wait_stats: DiskIoWaitStats::default(),
    }
}

/// The `websocket` section: the block's settings, empty fields left out as nats-server does.
fn varz_websocket(server: &Server, opts: &crate::config::Options) -> serde_json::Value {
    let mut v = serde_json::Map::new();
    let Some(ws) = &opts.websocket else {
        return serde_json::Value::Object(v);
    };
    let port = server
        .websocket
        .addr()
        .map_or(i64::from(ws.port), |a| i64::from(a.port()));
    v.insert("host".into(), ws.host.clone().into());
    v.insert("port".into(), port.into());
    if let Some(advertise) = &ws.advertise {
        v.insert("advertise".into(), advertise.clone().into());
    }
    if let Some(user) = &ws.no_auth_user {
        v.insert("no_auth_user".into(), user.clone().into());
    }
    if let Some(cookie) = &ws.jwt_cookie {
        v.insert("jwt_cookie".into(), cookie.clone().into());
    }
    if !ws.handshake_timeout.is_zero() {
        let nanos = u64::try_from(ws.handshake_timeout.as_nanos()).unwrap_or(u64::MAX);
        v.insert("handshake_timeout".into(), nanos.into());
    }
    if let Some(timeout) = ws.auth_timeout.filter(|t| !t.is_zero()) {
        v.insert("auth_timeout".into(), timeout.as_secs_f64().into());
    }
    if ws.no_tls {
        v.insert("no_tls".into(), true.into());
    }
    if ws.same_origin {
        v.insert("same_origin".into(), true.into());
    }
    if !ws.allowed_origins.is_empty() {
        v.insert("allowed_origins".into(), ws.allowed_origins.clone().into());
    }
    if ws.compression {
        v.insert("compression".into(), true.into());
    }
    serde_json::Value::Object(v)
}
