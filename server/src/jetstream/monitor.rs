//! `/jsz` data and the `/varz` `jetstream` section, as plain functions the HTTP layer calls.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::api::{state_json, StateJson};
use super::config::{format_ts, StreamConfig};
use super::JetStream;
use crate::server::Server;

/// `/jsz` query parameters.
#[derive(Debug, Clone, Default)]
pub struct JszOptions {
    /// `acc`: only this account.
    pub account: Option<String>,
    /// `accounts`: include `account_details`.
    pub accounts: bool,
    /// `streams`: include `stream_detail` (implies accounts).
    pub streams: bool,
    /// `consumers`: include `consumer_detail` (implies streams).
    pub consumers: bool,
    /// `config`: include each stream's config.
    pub config: bool,
}

/// `api` block.
#[derive(Debug, Clone, Serialize)]
pub struct JszApi {
    /// API level.
    pub level: u32,
    /// Requests handled.
    pub total: u64,
    /// Requests answered with an error.
    pub errors: u64,
}

/// `config` block.
#[derive(Debug, Clone, Serialize)]
pub struct JszConfig {
    /// Server memory limit.
    pub max_memory: i64,
    /// Server file limit.
    pub max_storage: i64,
    /// `<store_dir>/jetstream`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_dir: Option<String>,
    /// fsync interval in ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<u64>,
    /// `sync_interval: always`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_always: bool,
    /// Compression supported.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compress_ok: bool,
    /// Strict API parsing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
}

/// `limits` block.
#[derive(Debug, Clone, Serialize)]
pub struct JszLimits {
    /// Default consumer cap.
    pub default_max_consumers: i64,
}

/// One stream in `stream_detail`.
#[derive(Serialize)]
pub struct JszStream {
    /// Name.
    pub name: String,
    /// Creation time.
    pub created: String,
    /// Leader.
    pub cluster: JszCluster,
    /// With `config=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<StreamConfig>,
    /// State.
    pub state: StateJson,
}

/// `cluster` of a stream.
#[derive(Debug, Clone, Serialize)]
pub struct JszCluster {
    /// This server.
    pub leader: String,
}

/// One account in `account_details`.
#[derive(Serialize)]
pub struct JszAccount {
    /// Name.
    pub name: String,
    /// Same as name.
    pub id: String,
    /// Memory in use.
    pub memory: u64,
    /// File storage in use.
    pub storage: u64,
    /// The account's configured memory limit (0 when unlimited).
    pub reserved_memory: u64,
    /// The account's configured file limit (0 when unlimited).
    pub reserved_storage: u64,
    /// Always 1.
    pub accounts: u64,
    /// Always 0 (no clustering).
    pub ha_assets: u64,
    /// API counters.
    pub api: JszApi,
    /// With `streams=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_detail: Option<Vec<JszStream>>,
}

/// `/jsz`.
#[derive(Serialize)]
pub struct Jsz {
    /// Memory in use.
    pub memory: u64,
    /// File storage in use.
    pub storage: u64,
    /// Stream `max_bytes` reservations (memory).
    pub reserved_memory: u64,
    /// Stream `max_bytes` reservations (file).
    pub reserved_storage: u64,
    /// Accounts with JetStream.
    pub accounts: u64,
    /// Always 0.
    pub ha_assets: u64,
    /// API counters.
    pub api: JszApi,
    /// Server id.
    pub server_id: String,
    /// Now.
    pub now: String,
    /// `true` when JetStream is off.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Configuration.
    pub config: JszConfig,
    /// Limits.
    pub limits: JszLimits,
    /// Streams.
    pub streams: u64,
    /// Consumers.
    pub consumers: u64,
    /// Messages.
    pub messages: u64,
    /// Bytes.
    pub bytes: u64,
    /// Accounts listed in details (or with JetStream).
    pub total: u64,
    /// With `accounts=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_details: Option<Vec<JszAccount>>,
}

fn js_config(js: &JetStream) -> JszConfig {
    JszConfig {
        max_memory: js.usage.max_memory,
        max_storage: js.usage.max_store,
        store_dir: Some(js.store_dir.display().to_string()),
        sync_interval: Some(
            js.config
                .sync_interval
                .unwrap_or(std::time::Duration::from_secs(1))
                .as_nanos() as u64,
        ),
        sync_always: js.config.sync_always,
        compress_ok: false,
        strict: true,
    }
}

/// `/jsz` data for `server`.
pub fn jsz(server: &Server, opts: JszOptions) -> Jsz {
    let now = format_ts(crate::store::now_ns());
    let Some(js) = server.jetstream() else {
        return Jsz {
            memory: 0,
            storage: 0,
            reserved_memory: 0,
            reserved_storage: 0,
            accounts: 0,
            ha_assets: 0,
            api: JszApi {
                level: 5,
                total: 0,
                errors: 0,
            },
            server_id: server.id.clone(),
            now,
            disabled: true,
            config: JszConfig {
                max_memory: 0,
                max_storage: 0,
                store_dir: None,
                sync_interval: None,
                sync_always: false,
                compress_ok: false,
                strict: false,
            },
            limits: JszLimits {
                default_max_consumers: 0,
            },
            streams: 0,
            consumers: 0,
            messages: 0,
            bytes: 0,
            total: 0,
            account_details: None,
        };
    };
    let enabled: Vec<_> = js
        .accounts()
        .into_iter()
        .filter(|a| a.limits().is_some())
        .collect();
    let (memory, storage) = js.used();
    let (reserved_memory, reserved_storage) = js.reserved();
    let (mut streams, mut messages, mut bytes) = (0u64, 0u64, 0u64);
    for a in &enabled {
        for s in a.streams() {
            let st = s.store.state();
            streams += 1;
            messages += st.msgs;
            bytes += st.bytes;
        }
    }
    let details = opts.accounts || opts.streams || opts.consumers || opts.account.is_some();
    let account_details = details.then(|| {
        enabled
            .iter()
            .filter(|a| opts.account.as_ref().is_none_or(|n| *n == a.name))
            .map(|a| {
                let limits = a.limits().unwrap_or_default();
                let (m, f) = a.usage.used();
                JszAccount {
                    name: a.name.clone(),
                    id: a.name.clone(),
                    memory: m,
                    storage: f,
                    reserved_memory: limits.max_memory.max(0) as u64,
                    reserved_storage: limits.max_store.max(0) as u64,
                    accounts: 1,
                    ha_assets: 0,
                    api: JszApi {
                        level: 5,
                        total: a.api_total.load(Ordering::Relaxed),
                        errors: a.api_errors.load(Ordering::Relaxed),
                    },
                    stream_detail: (opts.streams || opts.consumers).then(|| {
                        a.streams()
                            .iter()
                            .map(|s| JszStream {
                                name: s.name.clone(),
                                created: format_ts(s.created),
                                cluster: JszCluster {
                                    leader: js.server_name.clone(),
                                },
                                config: opts.config.then(|| s.config().for_reply(true)),
                                state: state_json(s),
                            })
                            .collect()
                    }),
                }
            })
            .collect::<Vec<_>>()
    });
    Jsz {
        memory,
        storage,
        reserved_memory,
        reserved_storage,
        accounts: enabled.len() as u64,
        ha_assets: 0,
        api: JszApi {
            level: 5,
            total: js.api_total.load(Ordering::Relaxed),
            errors: js.api_errors.load(Ordering::Relaxed),
        },
        server_id: server.id.clone(),
        now,
        disabled: false,
        config: js_config(js),
        limits: JszLimits {
            default_max_consumers: 1000,
        },
        streams,
        consumers: 0,
        messages,
        bytes,
        total: account_details.as_ref().map_or(enabled.len(), Vec::len) as u64,
        account_details,
    }
}

/// The `/varz` `jetstream` object: `{}` when JetStream is off.
pub fn varz_section(server: &Server) -> serde_json::Value {
    let Some(js) = server.jetstream() else {
        return serde_json::json!({});
    };
    let (memory, storage) = js.used();
    let (reserved_memory, reserved_storage) = js.reserved();
    let accounts = js
        .accounts()
        .iter()
        .filter(|a| a.limits().is_some())
        .count();
    serde_json::json!({
        "config": js_config(js),
        "stats": {
            "memory": memory,
            "storage": storage,
            "reserved_memory": reserved_memory,
            "reserved_storage": reserved_storage,
            "accounts": accounts,
            "ha_assets": 0,
            "api": {
                "level": 5,
                "total": js.api_total.load(Ordering::Relaxed),
                "errors": js.api_errors.load(Ordering::Relaxed),
            },
        },
        "limits": { "default_max_consumers": 1000 },
    })
}
