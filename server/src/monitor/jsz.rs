//! `/jsz` and `/healthz`, and the JetStream parts of `/varz` and `/accountz`.
//!
//! JetStream is not built yet, so every answer here is what nats-server gives with JetStream
//! disabled. The JetStream work plugs in at [`jetstream_state`]: once it returns `Some`, `/jsz`,
//! `/varz` `jetstream`, `/healthz` and the per-account metrics report it.

use std::time::SystemTime;

use axum::http::StatusCode;
use serde::Serialize;

use super::{rfc3339, MonitorError, Params};
use crate::account::Account;
use crate::server::Server;

/// What a running JetStream reports; filled in by the JetStream subsystem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JetStreamState {
    pub config: JszConfig,
    pub stats: JszStats,
    pub streams: u64,
    pub consumers: u64,
    pub messages: u64,
    pub bytes: u64,
}

/// The running JetStream, or `None` when it is disabled (always, until JetStream lands).
pub fn jetstream_state(_server: &Server) -> Option<JetStreamState> {
    None
}

/// Whether `account` may use JetStream (`/accountz` `jetstream_enabled`).
pub fn account_enabled(server: &Server, account: &Account) -> bool {
    jetstream_state(server).is_some() && account.settings().jetstream.is_some()
}

/// One account's JetStream storage: used now, and the configured limits (-1 = unlimited,
/// 0 = JetStream not enabled for the account).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountStorage {
    pub memory_used: u64,
    pub storage_used: u64,
    pub max_memory: i64,
    pub max_storage: i64,
}

pub fn account_storage(_server: &Server, account: &Account) -> AccountStorage {
    let limits = account.settings().jetstream;
    AccountStorage {
        memory_used: 0,
        storage_used: 0,
        max_memory: limits.map_or(0, |l| l.max_memory),
        max_storage: limits.map_or(0, |l| l.max_store),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JszOptions {
    pub account: Option<String>,
    pub accounts: bool,
    pub streams: bool,
    pub consumers: bool,
    pub config: bool,
    pub offset: i64,
    pub limit: i64,
}

impl JszOptions {
    pub fn from_params(p: &Params) -> Result<JszOptions, MonitorError> {
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
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JszApi {
    pub level: u32,
    pub total: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JszStats {
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub accounts: u64,
    pub ha_assets: u64,
    pub api: JszApi,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JszConfig {
    pub max_memory: i64,
    pub max_storage: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<u128>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Jsz {
    #[serde(flatten)]
    pub stats: JszStats,
    pub server_id: String,
    pub now: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    pub config: JszConfig,
    pub streams: u64,
    pub consumers: u64,
    pub messages: u64,
    pub bytes: u64,
    pub total: u64,
}

pub fn jsz(server: &Server, _opts: &JszOptions) -> Jsz {
    let state = jetstream_state(server);
    let disabled = state.is_none();
    let state = state.unwrap_or_default();
    Jsz {
        total: state.stats.accounts,
        stats: state.stats,
        server_id: server.id.clone(),
        now: rfc3339(SystemTime::now()),
        disabled,
        config: state.config,
        streams: state.streams,
        consumers: state.consumers,
        messages: state.messages,
        bytes: state.bytes,
    }
}

/// `/varz` `jetstream`: `{}` while JetStream is off.
pub fn varz_jetstream(server: &Server) -> serde_json::Value {
    match jetstream_state(server) {
        None => serde_json::json!({}),
        Some(state) => serde_json::json!({
            "config": state.config,
            "stats": state.stats,
        }),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthzOptions {
    pub js_enabled_only: bool,
    pub js_server_only: bool,
    pub js_meta_only: bool,
    pub account: Option<String>,
    pub stream: Option<String>,
    pub consumer: Option<String>,
    pub details: bool,
}

impl HealthzOptions {
    pub fn from_params(p: &Params) -> Result<HealthzOptions, MonitorError> {
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
pub struct HealthStatus {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<HealthIssue>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HealthIssue {
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
pub fn healthz(server: &Server, opts: &HealthzOptions) -> (StatusCode, HealthStatus) {
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
    // Stream and consumer checks belong here once JetStream runs; without it there is nothing
    // more to check, as in nats-server when JetStream is not configured.
    let _ = jetstream_state(server);
    (StatusCode::OK, ok)
}
