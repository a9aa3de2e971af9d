//! `/jsz` and `/healthz`, and the JetStream parts of `/varz`, `/accountz` and `/metrics`.
//!
//! The figures come from the JetStream engine's read-only accessors
//! (`crate::jetstream::monitor`); the JSON shapes here follow nats-server 2.15, with JetStream
//! on and off.

use std::sync::Arc;
use std::time::SystemTime;

use axum::http::StatusCode;
use serde::Serialize;

use super::{rfc3339, MonitorError, Params};
use crate::account::Account;
use crate::jetstream::api::StateJson;
use crate::jetstream::config::StreamConfig;
use crate::jetstream::monitor::{stream_figures, ApiCounts, StreamFigures};
use crate::jetstream::{JetStream, JsAccount};
use crate::server::Server;
use natsd_conf::timestamp::rfc3339_ns;

/// The JetStream API level natsd implements (nats-server 2.11+ reports 1 or more; 2.15 says 5).
const API_LEVEL: u32 = 5;

/// nats-server's default per-stream consumer cap, reported under `limits`.
const DEFAULT_MAX_CONSUMERS: i64 = 1000;

/// Accounts per `/jsz` page when `limit` is absent or 0 (as nats-server).
const DEFAULT_JSZ_LIMIT: usize = 1024;

/// Whether `account` may use JetStream (`/accountz` `jetstream_enabled`).
pub(crate) fn account_enabled(server: &Server, account: &Account) -> bool {
    jetstream(server)
        .and_then(|js| js.account(&account.name))
        .is_some_and(|a| a.limits().is_some())
}

/// One account's JetStream storage: used now, and the configured limits (-1 = unlimited,
/// 0 = JetStream not enabled for the account).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AccountStorage {
    pub memory_used: u64,
    pub storage_used: u64,
    pub max_memory: i64,
    pub max_storage: i64,
}

/// The server's JetStream engine, when it runs one.
fn jetstream(server: &Server) -> Option<std::sync::Arc<JetStream>> {
    server.subsystem::<JetStream>()
}

/// JetStream storage of `account` for the per-account metrics.
pub(crate) fn account_storage(server: &Server, account: &Account) -> AccountStorage {
    let Some(jsa) = jetstream(server).and_then(|js| js.account(&account.name)) else {
        return AccountStorage::default();
    };
    let Some(limits) = jsa.limits() else {
        return AccountStorage::default();
    };
    let (memory_used, storage_used) = jsa.used();
    AccountStorage {
        memory_used,
        storage_used,
        max_memory: limits.max_memory,
        max_storage: limits.max_store,
    }
}

/// `/jsz` query parameters. `leader-only`, `raft`, `stream-leader-only` and
/// `direct-consumers` are accepted and ignored: a single server leads everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JszOptions {
    pub account: Option<String>,
    pub accounts: bool,
    pub streams: bool,
    pub consumers: bool,
    pub config: bool,
    pub offset: i64,
    pub limit: i64,
}

impl JszOptions {
    pub(crate) fn from_params(p: &Params) -> Result<JszOptions, MonitorError> {
        // Parsed only so a malformed value is rejected as nats-server does.
        for ignored in [
            "leader-only",
            "raft",
            "stream-leader-only",
            "direct-consumers",
        ] {
            p.bool(ignored)?;
        }
        Ok(JszOptions {
            account: p.get("acc").map(str::to_string),
            accounts: p.bool("accounts")?,
            streams: p.bool("streams")?,
            consumers: p.bool("consumers")?,
            config: p.bool("config")?,
            offset: p.int("offset")?,
            limit: p.int("limit")?,
        })
    }

    fn wants_details(&self) -> bool {
        self.accounts || self.streams || self.consumers || self.account.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct JszApi {
    pub level: u32,
    pub total: u64,
    pub errors: u64,
}

impl JszApi {
    fn new(level: u32, counts: ApiCounts) -> JszApi {
        JszApi {
            level,
            total: counts.total,
            errors: counts.errors,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct JszStats {
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub accounts: u64,
    pub ha_assets: u64,
    pub api: JszApi,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct JszConfig {
    pub max_memory: i64,
    pub max_storage: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<u128>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_always: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compress_ok: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct JszLimits {
    pub default_max_consumers: i64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct JszCluster {
    pub leader: String,
}

/// One stream in `stream_detail`.
#[derive(Serialize)]
pub(crate) struct JszStream {
    pub name: String,
    pub created: String,
    pub cluster: JszCluster,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<StreamConfig>,
    pub state: StateJson,
    /// Consumers of the stream with `consumers=true`: empty (and so omitted) until the
    /// consumer subsystem exposes its consumers here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumer_detail: Vec<serde_json::Value>,
}

/// One account in `account_details`. As in nats-server, `reserved_*` are the account's
/// limits as unsigned numbers (so "unlimited", -1, shows as 2^64-1), and `accounts` and the
/// API level are not filled in at this level.
#[derive(Serialize)]
pub(crate) struct JszAccount {
    pub name: String,
    pub id: String,
    #[serde(flatten)]
    pub stats: JszStats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stream_detail: Vec<JszStream>,
}

#[derive(Serialize)]
pub(crate) struct Jsz {
    #[serde(flatten)]
    pub stats: JszStats,
    pub server_id: String,
    pub now: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    pub config: JszConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<JszLimits>,
    pub streams: u64,
    pub consumers: u64,
    pub messages: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_details: Vec<JszAccount>,
    pub total: u64,
}

fn js_config(js: &JetStream) -> JszConfig {
    let (max_memory, max_storage) = js.server_limits();
    let (interval, always) = js.sync_interval();
    JszConfig {
        max_memory,
        max_storage,
        store_dir: Some(js.store_dir.display().to_string()),
        sync_interval: Some(interval.as_nanos()),
        sync_always: always,
        compress_ok: false,
        strict: true,
    }
}

fn js_stats(js: &JetStream, enabled_accounts: usize) -> JszStats {
    let (memory, storage) = js.used();
    let (reserved_memory, reserved_storage) = js.reserved_bytes();
    JszStats {
        memory,
        storage,
        reserved_memory,
        reserved_storage,
        accounts: enabled_accounts as u64,
        ha_assets: 0,
        api: JszApi::new(API_LEVEL, js.api_counts()),
    }
}

fn stream_detail(js: &JetStream, stream: StreamFigures, opts: &JszOptions) -> JszStream {
    JszStream {
        name: stream.stream.name.clone(),
        created: rfc3339_ns(stream.stream.created),
        cluster: JszCluster {
            leader: js.leader_name().to_string(),
        },
        config: opts.config.then(|| stream.stream.config().for_reply(true)),
        state: stream.state,
        consumer_detail: Vec::new(),
    }
}

fn account_detail(
    js: &JetStream,
    jsa: &JsAccount,
    opts: &JszOptions,
    auth: &crate::auth::Authenticator,
) -> JszAccount {
    let limits = jsa.limits().unwrap_or_default();
    let (memory, storage) = jsa.used();
    let stream_detail = if opts.streams || opts.consumers {
        stream_figures(jsa)
            .into_iter()
            .map(|s| stream_detail(js, s, opts))
            .collect()
    } else {
        Vec::new()
    };
    JszAccount {
        name: auth.name_tag(&jsa.name),
        id: jsa.name.clone(),
        stats: JszStats {
            memory,
            storage,
            // Go converts the signed limit to uint64: -1 becomes 2^64-1.
            reserved_memory: limits.max_memory as u64,
            reserved_storage: limits.max_store as u64,
            accounts: 0,
            ha_assets: 0,
            api: JszApi::new(0, jsa.api_counts()),
        },
        stream_detail,
    }
}

/// `/jsz`.
pub(crate) fn jsz(server: &Server, opts: &JszOptions) -> Jsz {
    let now = rfc3339(SystemTime::now());
    let Some(js) = jetstream(server) else {
        return Jsz {
            // nats-server reports API level 0 while JetStream is off.
            stats: JszStats::default(),
            server_id: server.id.clone(),
            now,
            disabled: true,
            config: JszConfig::default(),
            limits: None,
            streams: 0,
            consumers: 0,
            messages: 0,
            bytes: 0,
            account_details: Vec::new(),
            total: 0,
        };
    };
    let js = js.as_ref();

    let enabled = js.enabled_accounts();
    let (mut streams, mut consumers, mut messages, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    for jsa in &enabled {
        for s in stream_figures(jsa) {
            streams += 1;
            consumers += s.consumer_count();
            messages += s.state.messages;
            bytes += s.state.bytes;
        }
    }
    let account_details = if opts.wants_details() {
        let selected: Vec<&Arc<JsAccount>> = enabled
            .iter()
            .filter(|a| opts.account.as_ref().is_none_or(|n| *n == a.name))
            .collect();
        let offset = usize::try_from(opts.offset.max(0)).unwrap_or(usize::MAX);
        let limit = match usize::try_from(opts.limit) {
            Ok(0) | Err(_) => DEFAULT_JSZ_LIMIT,
            Ok(n) => n,
        };
        let auth = server.authenticator();
        selected
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|a| account_detail(js, a, opts, &auth))
            .collect()
    } else {
        Vec::new()
    };
    Jsz {
        stats: js_stats(js, enabled.len()),
        server_id: server.id.clone(),
        now,
        disabled: false,
        config: js_config(js),
        limits: Some(JszLimits {
            default_max_consumers: DEFAULT_MAX_CONSUMERS,
        }),
        streams,
        consumers,
        messages,
        bytes,
        account_details,
        total: enabled.len() as u64,
    }
}

/// `/varz` `jetstream`: `{config, stats, limits}`, or `{}` while JetStream is off.
pub(crate) fn varz_jetstream(server: &Server) -> serde_json::Value {
    let Some(js) = jetstream(server) else {
        return serde_json::json!({});
    };
    let js = js.as_ref();

    let enabled = js.enabled_accounts().len();
    serde_json::json!({
        "config": js_config(js),
        "stats": js_stats(js, enabled),
        "limits": JszLimits { default_max_consumers: DEFAULT_MAX_CONSUMERS },
    })
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HealthzOptions {
    pub js_enabled_only: bool,
    pub js_server_only: bool,
    pub js_meta_only: bool,
    pub account: Option<String>,
    pub stream: Option<String>,
    pub consumer: Option<String>,
    pub details: bool,
}

impl HealthzOptions {
    pub(crate) fn from_params(p: &Params) -> Result<HealthzOptions, MonitorError> {
        // `js-enabled` is the deprecated spelling of `js-enabled-only`.
        let js_enabled_only = p.bool("js-enabled-only")? || p.bool("js-enabled")?;
        Ok(HealthzOptions {
            js_enabled_only,
            js_server_only: p.bool("js-server-only")?,
            js_meta_only: p.bool("js-meta-only")?,
            account: p.get("account").map(str::to_string),
            stream: p.get("stream").map(str::to_string),
            consumer: p.get("consumer").map(str::to_string),
            details: p.bool("details")?,
        })
    }
}

/// The `/healthz` body; `status_code` only travels in the system-account reply.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct HealthStatus {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<HealthIssue>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct HealthIssue {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    pub error: String,
}

fn failure(status: &'static str, issue: HealthIssue, details: bool) -> HealthStatus {
    if details {
        HealthStatus {
            status: "error",
            error: None,
            errors: Some(vec![issue]),
        }
    } else {
        HealthStatus {
            status,
            error: Some(issue.error),
            errors: None,
        }
    }
}

/// `/healthz`: the HTTP status and body.
pub(crate) fn healthz(server: &Server, opts: &HealthzOptions) -> (StatusCode, HealthStatus) {
    let bad_request = |error: &str| {
        (
            StatusCode::BAD_REQUEST,
            failure(
                "error",
                HealthIssue {
                    kind: "BAD_REQUEST",
                    account: None,
                    stream: None,
                    consumer: None,
                    error: error.to_string(),
                },
                opts.details,
            ),
        )
    };
    if opts.stream.is_some() && opts.account.is_none() {
        return bad_request("\"account\" must not be empty when checking stream health");
    }
    if opts.consumer.is_some() && opts.stream.is_none() {
        return bad_request("\"stream\" must not be empty when checking consumer health");
    }
    let ok = HealthStatus {
        status: "ok",
        error: None,
        errors: None,
    };
    // JetStream not configured: nothing more to check, as in nats-server.
    if server.options().jetstream.is_none() {
        return (StatusCode::OK, ok);
    }
    let Some(js) = jetstream(server) else {
        let issue = HealthIssue {
            kind: "JETSTREAM",
            account: None,
            stream: None,
            consumer: None,
            error: "JetStream not enabled".to_string(),
        };
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            failure("unavailable", issue, opts.details),
        );
    };
    let js = js.as_ref();

    if opts.js_enabled_only || opts.js_server_only || opts.js_meta_only {
        return (StatusCode::OK, ok);
    }
    // Streams are recovered before the monitor starts, so only named assets can be missing.
    let Some(account) = &opts.account else {
        return (StatusCode::OK, ok);
    };
    let not_found = |kind: &'static str, error: String| {
        let issue = HealthIssue {
            kind,
            account: Some(account.clone()),
            stream: opts.stream.clone(),
            consumer: opts.consumer.clone(),
            error,
        };
        (
            StatusCode::NOT_FOUND,
            failure("unavailable", issue, opts.details),
        )
    };
    let Some(jsa) = js.account(account).filter(|a| a.limits().is_some()) else {
        return not_found(
            "ACCOUNT",
            format!("JetStream account \"{account}\" not found"),
        );
    };
    let Some(stream) = &opts.stream else {
        return (StatusCode::OK, ok);
    };
    if jsa.stream(stream).is_none() {
        return not_found(
            "STREAM",
            format!("JetStream stream \"{stream}\" not found on account \"{account}\""),
        );
    }
    if let Some(consumer) = &opts.consumer {
        // Consumer lookup comes in here once the consumer subsystem exposes its consumers;
        // until then no consumer exists.
        return not_found(
            "CONSUMER",
            format!(
                "JetStream consumer \"{consumer}\" not found for stream \"{stream}\" on account \"{account}\""
            ),
        );
    }
    (StatusCode::OK, ok)
}
