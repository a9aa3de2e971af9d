//! HTTP monitoring (`-m` / `http_port`): the nats-server endpoints tools already read, plus a
//! Prometheus `/metrics` (also on `metrics_port` when configured), and the tenant console
//! (`/console`, see [`console`]).
//!
//! Each endpoint is a plain function from the server state to a serde struct (`varz`, `connz`,
//! `subsz`, `accountz`, `accstatz`, `jsz`, `healthz`); the HTTP layer only decodes query
//! parameters and serializes (pretty JSON, as nats-server does). Everything is read at request
//! time from what the server keeps anyway: nothing here adds work to the publish path, and no
//! lock is held longer than it takes to copy one connection's figures.

pub(crate) mod accountz;
pub(crate) mod claims;
pub(crate) mod connz;
pub(crate) mod console;
pub(crate) mod jsz;
pub(crate) mod metrics;
pub(crate) mod subsz;
pub(crate) mod sysreq;
pub(crate) mod varz;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
pub(crate) use natsd_conf::duration::go_duration;
pub(crate) use natsd_conf::timestamp::rfc3339;
use serde::Serialize;
use tokio::sync::watch;

use crate::server::{Server, ServerError};

pub(crate) use accountz::{accountz, accstatz, AccountStatzOptions};
pub(crate) use connz::{connz, ConnzOptions};
pub(crate) use jsz::{healthz, jsz, HealthzOptions, JszOptions};
pub(crate) use subsz::{subsz, SubszOptions};
pub(crate) use varz::varz;

/// Why a monitoring request was refused: nats-server answers these with HTTP 400 and the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MonitorError {
    #[error("Error decoding boolean for '{param}': strconv.ParseBool: parsing {value:?}: invalid syntax")]
    BadBool { param: String, value: String },
    #[error("Error decoding int for '{param}': strconv.Atoi: parsing {value:?}: {reason}")]
    BadInt {
        param: String,
        value: String,
        reason: &'static str,
    },
    #[error("Error decoding uint64 for '{param}': strconv.ParseUint: parsing {value:?}: {reason}")]
    BadUint {
        param: String,
        value: String,
        reason: &'static str,
    },
    #[error("Error decoding state for {0}")]
    BadState(String),
    #[error("invalid sorting option: {0}")]
    BadSort(String),
    #[error("sort by {0} only valid on closed connections")]
    SortNeedsClosed(&'static str),
    #[error("invalid test subject, must be valid publish subject: {0}")]
    BadTestSubject(String),
    #[error("Account {0} does not exist")]
    NoAccount(String),
}

impl IntoResponse for MonitorError {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.to_string(),
        )
            .into_response()
    }
}

/// The query string, decoded; like Go's `Query().Get`, the first value wins and an empty value
/// counts as absent.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Decode a raw query string (`a=1&b=x`).
    pub(crate) fn parse(query: &str) -> Params {
        Params(
            query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A boolean the way Go's `strconv.ParseBool` reads it; absent is false.
    pub(crate) fn bool(&self, name: &str) -> Result<bool, MonitorError> {
        let Some(value) = self.get(name) else {
            return Ok(false);
        };
        match value {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(MonitorError::BadBool {
                param: name.to_string(),
                value: value.to_string(),
            }),
        }
    }

    /// An integer the way Go's `strconv.Atoi` reads it; absent is 0.
    pub(crate) fn int(&self, name: &str) -> Result<i64, MonitorError> {
        let Some(value) = self.get(name) else {
            return Ok(0);
        };
        value.parse::<i64>().map_err(|e| MonitorError::BadInt {
            param: name.to_string(),
            value: value.to_string(),
            reason: int_error_reason(&e),
        })
    }

    /// An unsigned integer the way Go's `strconv.ParseUint` reads it; absent is 0.
    pub(crate) fn uint(&self, name: &str) -> Result<u64, MonitorError> {
        let Some(value) = self.get(name) else {
            return Ok(0);
        };
        // Rust accepts a leading '+', Go's ParseUint does not.
        if value.starts_with('+') {
            Err(MonitorError::BadUint {
                param: name.to_string(),
                value: value.to_string(),
                reason: "invalid syntax",
            })
        } else {
            value.parse::<u64>().map_err(|e| MonitorError::BadUint {
                param: name.to_string(),
                value: value.to_string(),
                reason: int_error_reason(&e),
            })
        }
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn int_error_reason(err: &std::num::ParseIntError) -> &'static str {
    use std::num::IntErrorKind;
    match err.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
        _ => "invalid syntax",
    }
}

/// Shared by the monitoring and the metrics listeners of one server.
pub(crate) struct Monitor {
    server: Arc<Server>,
    requests: Mutex<BTreeMap<String, u64>>,
    cpu: Mutex<CpuSample>,
    /// Highest value reported per counter: a connection's counters move from its own atomics to
    /// its account's when it closes, and a scrape in between must not see a counter go down
    /// (Prometheus would read that as a reset).
    high_water: Mutex<HashMap<String, u64>>,
}

struct CpuSample {
    at: Option<Instant>,
    ticks: f64,
    percent: f64,
}

type Shared = Arc<Monitor>;

impl Monitor {
    pub(crate) fn new(server: Arc<Server>) -> Arc<Monitor> {
        Arc::new(Monitor {
            server,
            requests: Mutex::new(BTreeMap::new()),
            cpu: Mutex::new(CpuSample {
                at: None,
                ticks: 0.0,
                percent: 0.0,
            }),
            high_water: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// Requests served per path, for `/varz` `http_req_stats`.
    pub(crate) fn request_stats(&self) -> BTreeMap<String, u64> {
        self.requests.lock().clone()
    }

    /// `max(value, anything reported before under key)`.
    pub(crate) fn monotonic(&self, key: &str, value: u64) -> u64 {
        let mut seen = self.high_water.lock();
        match seen.get_mut(key) {
            Some(prev) if *prev >= value => *prev,
            Some(prev) => {
                *prev = value;
                value
            }
            None => {
                seen.insert(key.to_string(), value);
                value
            }
        }
    }

    /// Process CPU in percent of one core: over the last second or more between two calls,
    /// over the process lifetime for the first one.
    pub(crate) fn cpu_percent(&self) -> f64 {
        let ticks = cpu_ticks();
        let now = Instant::now();
        let mut sample = self.cpu.lock();
        match sample.at {
            None => {
                let uptime = SystemTime::now()
                    .duration_since(self.server.start)
                    .unwrap_or_default()
                    .as_secs_f64();
                sample.percent = if uptime > 0.0 {
                    round2(ticks / CLOCK_TICKS / uptime * 100.0)
                } else {
                    0.0
                };
                sample.at = Some(now);
                sample.ticks = ticks;
            }
            Some(at) if now.duration_since(at) >= Duration::from_secs(1) => {
                let secs = now.duration_since(at).as_secs_f64();
                sample.percent = round2((ticks - sample.ticks) / CLOCK_TICKS / secs * 100.0);
                sample.at = Some(now);
                sample.ticks = ticks;
            }
            Some(_) => {}
        }
        sample.percent
    }

    /// Bind the monitoring listener and serve every endpoint until shutdown.
    pub(crate) async fn serve_http(
        self: &Arc<Self>,
        host: &str,
        port: i32,
        shutdown: watch::Receiver<bool>,
    ) -> Result<SocketAddr, ServerError> {
        let app = Router::new()
            .route("/", get(root))
            .route("/varz", get(varz_handler).post(varz_handler))
            .route("/healthz", get(healthz_handler))
            .route("/connz", get(connz_handler))
            .route("/subsz", get(subsz_handler))
            .route("/subscriptionsz", get(subsz_handler))
            .route("/accountz", get(accountz_handler))
            .route("/accstatz", get(accstatz_handler))
            .route("/jsz", get(jsz_handler))
            .route("/routez", get(routez_handler))
            .route("/gatewayz", get(gatewayz_handler))
            .route("/leafz", get(leafz_handler))
            .route("/metrics", get(metrics_handler))
            .route("/console", get(console::page))
            .route("/console/console.js", get(console::script))
            .route("/console/console.css", get(console::style))
            .route("/console/data", get(console::data))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(
                self.clone(),
                count_and_headers,
            ))
            .with_state(self.clone());
        let addr = serve(app, host, port, shutdown).await?;
        tracing::info!("Starting http monitor on {}", addr);
        Ok(addr)
    }

    /// Bind a listener that serves only `/metrics` (`metrics_port`).
    pub(crate) async fn serve_metrics(
        self: &Arc<Self>,
        host: &str,
        port: i32,
        shutdown: watch::Receiver<bool>,
    ) -> Result<SocketAddr, ServerError> {
        let app = Router::new()
            .route("/metrics", get(metrics_handler))
            .fallback(not_found)
            .with_state(self.clone());
        let addr = serve(app, host, port, shutdown).await?;
        tracing::info!("Starting prometheus metrics on {}", addr);
        Ok(addr)
    }
}

async fn serve(
    app: Router,
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

/// The paths `http_req_stats` counts.
const ENDPOINTS: &[&str] = &[
    "/",
    "/varz",
    "/healthz",
    "/connz",
    "/subsz",
    "/subscriptionsz",
    "/accountz",
    "/accstatz",
    "/jsz",
    "/routez",
    "/gatewayz",
    "/leafz",
    "/metrics",
];

/// Count requests per path (`http_req_stats`) and add the header nats-server sends.
async fn count_and_headers(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // Counted before answering, so a `/varz` includes itself, as in nats-server.
    if ENDPOINTS.contains(&path) {
        *state.requests.lock().entry(path.to_string()).or_default() += 1;
    }
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

/// Pretty JSON with 2-space indent; `<`, `>` and `&` escaped as Go's encoder does.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    go_html_escape(body)
}

fn go_html_escape(body: Vec<u8>) -> Vec<u8> {
    if !body.iter().any(|b| matches!(b, b'<' | b'>' | b'&')) {
        return body;
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    for b in body {
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            _ => out.push(b),
        }
    }
    out
}

fn json_response<T: Serialize>(value: &T) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], to_json(value)).into_response()
}

fn respond<T: Serialize>(result: Result<T, MonitorError>) -> Response {
    match result {
        Ok(value) => json_response(&value),
        Err(err) => err.into_response(),
    }
}

fn params(RawQuery(query): RawQuery) -> Params {
    Params::parse(query.as_deref().unwrap_or(""))
}

type RawParams = RawQuery;

async fn root() -> Html<String> {
    let links = [
        ("varz", "General"),
        ("jsz", "JetStream"),
        ("connz", "Connections"),
        ("accountz", "Accounts"),
        ("accstatz", "Account Stats"),
        ("subsz", "Subscriptions"),
        ("routez", "Routes"),
        ("leafz", "LeafNodes"),
        ("gatewayz", "Gateways"),
        ("healthz", "Health Probe"),
        ("metrics", "Prometheus Metrics"),
        ("console", "Tenant Console"),
    ];
    let mut page =
        String::from("<html lang=\"en\">\n<head><title>natsd monitoring</title></head>\n<body>\n");
    page.push_str(&format!(
        "<p>natsd {} (nats-server {} compatible)</p>\n",
        crate::server::NATSD_VERSION,
        crate::server::NATS_COMPAT_VERSION
    ));
    for (path, title) in links {
        page.push_str(&format!("<a href=./{path}>{title}</a><br/>\n"));
    }
    page.push_str("</body>\n</html>\n");
    Html(page)
}

async fn varz_handler(State(state): State<Shared>) -> Response {
    json_response(&varz::varz_for(&state))
}

async fn healthz_handler(State(state): State<Shared>, query: RawParams) -> Response {
    let params = params(query);
    let opts = match HealthzOptions::from_params(&params) {
        Ok(o) => o,
        Err(err) => return err.into_response(),
    };
    let (status, body) = healthz(&state.server, &opts);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        go_html_escape(serde_json::to_vec(&body).unwrap_or_default()),
    )
        .into_response()
}

async fn connz_handler(State(state): State<Shared>, query: RawParams) -> Response {
    let params = params(query);
    respond(ConnzOptions::from_params(&params).and_then(|o| connz(&state.server, &o)))
}

async fn subsz_handler(State(state): State<Shared>, query: RawParams) -> Response {
    let params = params(query);
    respond(SubszOptions::from_params(&params).and_then(|o| subsz(&state.server, &o)))
}

async fn accountz_handler(State(state): State<Shared>, query: RawParams) -> Response {
    let params = params(query);
    respond(accountz(&state.server, params.get("acc")))
}

async fn accstatz_handler(State(state): State<Shared>, query: RawParams) -> Response {
    let params = params(query);
    respond(AccountStatzOptions::from_params(&params).map(|o| accstatz(&state, &o)))
}

async fn jsz_handler(State(state): State<Shared>, query: RawParams) -> Response {
    let params = params(query);
    respond(JszOptions::from_params(&params).map(|o| jsz(&state.server, &o)))
}

async fn routez_handler(State(state): State<Shared>) -> Response {
    json_response(&routez(&state.server))
}

async fn gatewayz_handler(State(state): State<Shared>) -> Response {
    json_response(&gatewayz(&state.server))
}

async fn leafz_handler(State(state): State<Shared>) -> Response {
    json_response(&leafz(&state.server))
}

async fn metrics_handler(State(state): State<Shared>) -> Response {
    match metrics::render(&state) {
        Ok(body) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// `/routez` of a server without a cluster.
#[derive(Debug, Serialize)]
pub(crate) struct Routez {
    pub server_id: String,
    pub server_name: String,
    pub now: String,
    pub num_routes: usize,
    pub routes: Vec<serde_json::Value>,
}

pub(crate) fn routez(server: &Server) -> Routez {
    Routez {
        server_id: server.id.clone(),
        server_name: server.name(),
        now: rfc3339(SystemTime::now()),
        num_routes: 0,
        routes: Vec::new(),
    }
}

/// `/gatewayz` of a server without gateways.
#[derive(Debug, Serialize)]
pub(crate) struct Gatewayz {
    pub server_id: String,
    pub now: String,
    pub outbound_gateways: BTreeMap<String, serde_json::Value>,
    pub inbound_gateways: BTreeMap<String, serde_json::Value>,
}

pub(crate) fn gatewayz(server: &Server) -> Gatewayz {
    Gatewayz {
        server_id: server.id.clone(),
        now: rfc3339(SystemTime::now()),
        outbound_gateways: BTreeMap::new(),
        inbound_gateways: BTreeMap::new(),
    }
}

/// `/leafz` of a server without leaf nodes.
#[derive(Debug, Serialize)]
pub(crate) struct Leafz {
    pub server_id: String,
    pub now: String,
    pub leafnodes: usize,
    pub leafs: Vec<serde_json::Value>,
}

pub(crate) fn leafz(server: &Server) -> Leafz {
    Leafz {
        server_id: server.id.clone(),
        now: rfc3339(SystemTime::now()),
        leafnodes: 0,
        leafs: Vec::new(),
    }
}

/// nats-server's uptime format: whole seconds, with every larger unit once one is present
/// (`"3s"`, `"5m3s"`, `"1h0m2s"`, `"2d3h0m0s"`, `"1y2d0h0m0s"`).
pub(crate) fn go_uptime(d: Duration) -> String {
    let secs = d.as_secs();
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86_400);
    let years = days / 365;
    if years > 0 {
        format!(
            "{years}y{}d{}h{}m{}s",
            days % 365,
            hours % 24,
            mins % 60,
            secs % 60
        )
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hours % 24, mins % 60, secs % 60)
    } else if hours > 0 {
        format!("{hours}h{}m{}s", mins % 60, secs % 60)
    } else if mins > 0 {
        format!("{mins}m{}s", secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// Resident set size of this process in bytes.
pub(crate) fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// USER_HZ on Linux.
const CLOCK_TICKS: f64 = 100.0;

/// User plus system CPU time of this process, in clock ticks.
fn cpu_ticks() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    field(11) + field(12)
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_like_nats_server() {
        assert_eq!(go_uptime(Duration::from_secs(3)), "3s");
        assert_eq!(go_uptime(Duration::from_secs(303)), "5m3s");
        assert_eq!(go_uptime(Duration::from_secs(3600 + 2)), "1h0m2s");
        assert_eq!(
            go_uptime(Duration::from_secs(2 * 86_400 + 3 * 3600)),
            "2d3h0m0s"
        );
        assert_eq!(go_uptime(Duration::from_secs(366 * 86_400)), "1y1d0h0m0s");
    }

    #[test]
    fn params_decode_like_go() {
        let p = Params::parse("subs=xyz&limit=abc&cid=-1&ok=T&big=99999999999999999999&e=");
        assert_eq!(
            p.bool("subs").unwrap_err().to_string(),
            "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"xyz\": invalid syntax"
        );
        assert_eq!(
            p.int("limit").unwrap_err().to_string(),
            "Error decoding int for 'limit': strconv.Atoi: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            p.int("big").unwrap_err().to_string(),
            "Error decoding int for 'big': strconv.Atoi: parsing \"99999999999999999999\": value out of range"
        );
        assert!(p.uint("cid").is_err());
        assert_eq!(p.bool("ok"), Ok(true));
        assert_eq!(p.bool("e"), Ok(false));
        assert_eq!(p.int("missing"), Ok(0));
    }

    #[test]
    fn json_escapes_like_go() {
        let body = to_json(&serde_json::json!({"s": "$JS.API.>"}));
        assert!(String::from_utf8(body).unwrap().contains("$JS.API.\\u003e"));
    }
}
