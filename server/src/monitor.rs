//! HTTP monitoring (`-m` / `http_port`): the nats-server endpoints tools already read.
//!
//! Each endpoint is a plain function from the server state to a serde struct; the HTTP layer
//! only decodes query parameters and serializes (pretty JSON, as nats-server does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::server::{Server, ServerError, NATSD_VERSION, NATS_COMPAT_VERSION};

struct MonitorState {
    server: Arc<Server>,
    requests: Mutex<BTreeMap<String, u64>>,
}

type Shared = Arc<MonitorState>;

/// Bind the monitoring listener and serve until shutdown; returns the bound address.
pub async fn start(
    server: Arc<Server>,
    host: &str,
    port: i32,
    mut shutdown: watch::Receiver<bool>,
) -> Result<SocketAddr, ServerError> {
    let port = if port < 0 { 0 } else { port as u16 };
    let bind = format!("{host}:{port}");
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|source| ServerError::Listen {
            addr: bind.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen { addr: bind, source })?;
    tracing::info!("Starting http monitor on {}", addr);
    let state = Arc::new(MonitorState {
        server,
        requests: Mutex::new(BTreeMap::new()),
    });
    let app = Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
        .route("/varz", get(varz).post(varz))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_and_headers,
        ))
        .with_state(state);
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|stopped| *stopped).await;
        };
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!("Error serving http monitor: {}", err);
        }
    });
    Ok(addr)
}

/// Count requests per path (`http_req_stats`) and add the headers nats-server sends.
async fn count_and_headers(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if let Ok(mut counts) = state.requests.lock() {
        *counts.entry(path).or_default() += 1;
    }
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

async fn root() -> Html<&'static str> {
    Html(concat!(
        "<html><head><title>natsd monitoring</title></head><body>\n",
        "<a href=./varz>varz</a><br/>\n<a href=./connz>connz</a><br/>\n",
        "<a href=./routez>routez</a><br/>\n<a href=./gatewayz>gatewayz</a><br/>\n",
        "<a href=./leafz>leafz</a><br/>\n<a href=./subsz>subsz</a><br/>\n",
        "<a href=./accountz>accountz</a><br/>\n<a href=./accstatz>accstatz</a><br/>\n",
        "<a href=./jsz>jsz</a><br/>\n<a href=./healthz>healthz</a><br/>\n",
        "</body></html>\n"
    ))
}

async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn varz(State(state): State<Shared>) -> Response {
    let requests = state.requests.lock().map(|r| r.clone()).unwrap_or_default();
    json(&build_varz(&state.server, requests))
}

/// RFC 3339 with nanoseconds in UTC, as nats-server writes times.
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A Go-style duration string (`"5m3s"`, `"1h2m3s"`, `"2d3h"` for long uptimes).
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if days > 0 {
        out.push_str(&format!("{days}d"));
    }
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if mins > 0 {
        out.push_str(&format!("{mins}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// Resident set size of this process in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    4096
}

/// CPU use of this process over its lifetime, in percent of one core.
fn cpu_percent(uptime: Duration) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    let secs = uptime.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    ((ticks / 100.0) / secs * 10000.0).round() / 100.0
}

#[derive(Serialize)]
pub struct Varz {
    pub server_id: String,
    pub server_name: String,
    pub version: &'static str,
    pub natsd_version: &'static str,
    pub proto: u32,
    pub git_commit: &'static str,
    pub go: &'static str,
    pub host: String,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_required: Option<bool>,
    pub max_connections: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_subscriptions: Option<usize>,
    pub ping_interval: u128,
    pub ping_max: u32,
    pub http_host: String,
    pub http_port: u16,
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
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub in_client_msgs: u64,
    pub out_client_msgs: u64,
    pub in_client_bytes: u64,
    pub out_client_bytes: u64,
    pub slow_consumers: u64,
    pub stale_connections: u64,
    pub stalled_clients: u64,
    pub subscriptions: usize,
    pub http_req_stats: BTreeMap<String, u64>,
    pub config_load_time: String,
    pub config_digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_account: Option<String>,
    pub slow_consumer_stats: KindStats,
    pub stale_connection_stats: KindStats,
}

#[derive(Serialize)]
pub struct KindStats {
    pub clients: u64,
    pub routes: u64,
    pub gateways: u64,
    pub leafs: u64,
}

impl KindStats {
    fn clients(n: u64) -> KindStats {
        KindStats {
            clients: n,
            routes: 0,
            gateways: 0,
            leafs: 0,
        }
    }
}

pub fn build_varz(server: &Server, http_req_stats: BTreeMap<String, u64>) -> Varz {
    use std::sync::atomic::Ordering::Relaxed;
    let opts = server.options();
    let now = SystemTime::now();
    let uptime = now.duration_since(server.start).unwrap_or_default();
    let traffic = server.traffic();
    let config = server.config_state();
    let addr = server.client_addr();
    let http = server.http_addr();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let slow = server.stats.slow_consumers.load(Relaxed);
    let stale = server.stats.stale_connections.load(Relaxed);
    Varz {
        server_id: server.id.clone(),
        server_name: server.name(),
        version: NATS_COMPAT_VERSION,
        natsd_version: NATSD_VERSION,
        proto: 1,
        git_commit: "",
        go: "natsd",
        host: addr
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| opts.host.clone()),
        port: addr.map(|a| a.port()).unwrap_or_default(),
        auth_required: server.authenticator().advertise_required().then_some(true),
        tls_required: opts.tls.as_ref().map(|_| true),
        max_connections: opts.max_connections,
        max_subscriptions: (opts.max_subs > 0).then_some(opts.max_subs),
        ping_interval: opts.ping_interval.as_nanos(),
        ping_max: opts.ping_max,
        http_host: http.map(|a| a.ip().to_string()).unwrap_or_default(),
        http_port: http.map(|a| a.port()).unwrap_or_default(),
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
        websocket: serde_json::json!({}),
        jetstream: serde_json::json!({}),
        tls_timeout: opts.tls.as_ref().map_or(0.0, |t| t.timeout.as_secs_f64()),
        write_deadline: opts.write_deadline.as_nanos(),
        start: rfc3339(server.start),
        now: rfc3339(now),
        uptime: go_duration(uptime),
        mem: rss_bytes(),
        cores,
        gomaxprocs: cores,
        cpu: cpu_percent(uptime),
        connections: server.num_clients(),
        total_connections: server.stats.total_connections.load(Relaxed),
        routes: 0,
        remotes: 0,
        leafnodes: 0,
        in_msgs: traffic.in_msgs,
        out_msgs: traffic.out_msgs,
        in_bytes: traffic.in_bytes,
        out_bytes: traffic.out_bytes,
        in_client_msgs: traffic.in_msgs,
        out_client_msgs: traffic.out_msgs,
        in_client_bytes: traffic.in_bytes,
        out_client_bytes: traffic.out_bytes,
        slow_consumers: slow,
        stale_connections: stale,
        stalled_clients: 0,
        subscriptions: server.num_subscriptions(),
        http_req_stats,
        config_load_time: rfc3339(config.load_time),
        config_digest: config.digest,
        system_account: Some(server.system_account()),
        slow_consumer_stats: KindStats::clients(slow),
        stale_connection_stats: KindStats::clients(stale),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_read_like_nats_server() {
        assert_eq!(go_duration(Duration::from_secs(3)), "3s");
        assert_eq!(go_duration(Duration::from_secs(303)), "5m3s");
        assert_eq!(go_duration(Duration::from_secs(3600 + 2)), "1h2s");
        assert_eq!(
            go_duration(Duration::from_secs(2 * 86_400 + 3 * 3600)),
            "2d3h0s"
        );
    }

    #[test]
    fn times_are_rfc3339_utc_with_nanoseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_500_000_123);
        assert_eq!(rfc3339(t), "1970-01-01T00:00:01.500000123Z");
    }
}
