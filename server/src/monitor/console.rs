//! The tenant console: `/console` on the monitoring port, a page that lists every account with
//! its connections, traffic, JetStream usage against its limits, slow consumers and failed
//! logins, refreshed every two seconds from `/console/data`.
//!
//! The page, script and style are compiled into the binary (no CDN, no extra process). The data
//! is what `/accstatz?unused=1`, `/jsz?accounts=true`, `/connz?auth=true` and `/metrics` already
//! show on the same port, gathered in one request so a page with hundreds of tenants costs one
//! pass over the accounts and one over the connections. Rates are computed by the page from
//! two samples.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::accountz::{account_traffic, monotonic_traffic};
use super::jsz::account_storage;
use super::{rfc3339, Monitor};
use crate::jetstream::monitor::stream_figures;
use crate::jetstream::JetStream;

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// Only the embedded script and style run; the page cannot be framed by another site.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

pub(super) async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `/console/data`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConsoleData {
    pub server_id: String,
    pub server_name: String,
    pub now: String,
    pub system_account: String,
    pub jetstream: bool,
    pub connections: usize,
    pub accounts: Vec<ConsoleAccount>,
}

/// One account's row.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConsoleAccount {
    pub name: String,
    pub conns: usize,
    /// Distinct users among the account's connections.
    pub users: usize,
    pub subscriptions: usize,
    /// Published by the account's clients (`received` in `/accstatz`).
    pub in_msgs: u64,
    pub in_bytes: u64,
    /// Delivered to the account's clients (`sent` in `/accstatz`).
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    pub auth_failures: u64,
    /// Absent when the account has no JetStream.
    pub jetstream: Option<ConsoleJetStream>,
}

/// JetStream use of one account; limits are -1 when unlimited (as in `/jsz`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConsoleJetStream {
    pub memory: u64,
    pub storage: u64,
    pub max_memory: i64,
    pub max_storage: i64,
    pub streams: usize,
    pub consumers: u64,
}

pub(crate) fn console_data(monitor: &Monitor) -> ConsoleData {
    let server = monitor.server();
    let js = server.subsystem::<JetStream>();
    let clients = server.clients();
    let mut users: HashMap<String, HashSet<String>> = HashMap::new();
    for client in &clients {
        let meta = client.meta.lock();
        if let Some(user) = &meta.user {
            users
                .entry(meta.account.clone())
                .or_default()
                .insert(user.clone());
        }
    }
    let accounts = account_traffic(server)
        .into_iter()
        .map(|(account, traffic)| {
            let t = monotonic_traffic(monitor, &account.name, traffic);
            let storage = account_storage(server, &account);
            let jetstream = js
                .as_ref()
                .and_then(|js| js.account(&account.name))
                .filter(|jsa| jsa.limits().is_some())
                .map(|jsa| {
                    let streams = stream_figures(&jsa);
                    ConsoleJetStream {
                        memory: storage.memory_used,
                        storage: storage.storage_used,
                        max_memory: storage.max_memory,
                        max_storage: storage.max_storage,
                        streams: streams.len(),
                        consumers: streams.iter().map(|s| s.consumer_count()).sum(),
                    }
                });
            ConsoleAccount {
                conns: account.connections(),
                users: users.get(&account.name).map_or(0, HashSet::len),
                subscriptions: account.sublist.count(),
                in_msgs: t.in_msgs,
                in_bytes: t.in_bytes,
                out_msgs: t.out_msgs,
                out_bytes: t.out_bytes,
                slow_consumers: account.stats.slow_consumers.load(Relaxed),
                auth_failures: account.stats.auth_failures.load(Relaxed),
                jetstream,
                name: account.name.clone(),
            }
        })
        .collect();
    ConsoleData {
        server_id: server.id.clone(),
        server_name: server.name(),
        now: rfc3339(SystemTime::now()),
        system_account: server.system_account(),
        jetstream: js.is_some(),
        connections: clients.len(),
        accounts,
    }
}

pub(super) async fn data(
    axum::extract::State(state): axum::extract::State<Arc<Monitor>>,
) -> Response {
    let mut resp = super::json_response(&console_data(&state));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
