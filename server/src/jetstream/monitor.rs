//! Read-only figures for the HTTP monitoring (`crate::monitor::jsz`): plain numbers and
//! handles, no JSON. The shapes of `/jsz`, `/varz` `jetstream`, `/healthz` and `/metrics` live
//! in the monitoring module; this side only says what JetStream holds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::api::{state_json, StateJson};
use super::stream::Stream;
use super::{JetStream, JsAccount};

/// The default fsync interval when `sync_interval` is not configured.
const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// API requests handled and answered with an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ApiCounts {
    /// Requests handled.
    pub total: u64,
    /// Requests answered with an error.
    pub errors: u64,
}

impl JetStream {
    /// Resolved server limits `(max_memory, max_store)` in bytes (defaults already applied).
    pub(crate) fn server_limits(&self) -> (i64, i64) {
        (self.usage.max_memory, self.usage.max_store)
    }

    /// The fsync interval in effect, and whether every batch is fsynced (`sync_interval: always`).
    pub(crate) fn sync_interval(&self) -> (Duration, bool) {
        (
            self.config.sync_interval.unwrap_or(DEFAULT_SYNC_INTERVAL),
            self.config.sync_always,
        )
    }

    /// Stream `max_bytes` reservations across accounts `(memory, file)`.
    pub(crate) fn reserved_bytes(&self) -> (u64, u64) {
        self.reserved()
    }

    /// API counters over all accounts.
    pub(crate) fn api_counts(&self) -> ApiCounts {
        ApiCounts {
            total: self.api_total.load(Ordering::Relaxed),
            errors: self.api_errors.load(Ordering::Relaxed),
        }
    }

    /// Accounts with JetStream enabled, sorted by name.
    pub(crate) fn enabled_accounts(&self) -> Vec<Arc<JsAccount>> {
        self.accounts()
            .into_iter()
            .filter(|a| a.limits().is_some())
            .collect()
    }

    /// The name streams report as their (single-server) leader.
    pub(crate) fn leader_name(&self) -> &str {
        &self.server_name
    }
}

impl JsAccount {
    /// Bytes in use `(memory, file)`.
    pub(crate) fn used(&self) -> (u64, u64) {
        self.usage.used()
    }

    /// This account's API counters.
    pub(crate) fn api_counts(&self) -> ApiCounts {
        ApiCounts {
            total: self.api_total.load(Ordering::Relaxed),
            errors: self.api_errors.load(Ordering::Relaxed),
        }
    }
}

/// One stream's monitoring figures.
pub(crate) struct StreamFigures {
    /// The stream (name, creation time, config).
    pub stream: Arc<Stream>,
    /// Its state as the API reports it.
    pub state: StateJson,
}

impl StreamFigures {
    /// Consumers on this stream: taken from the stream state the API reports, so consumer
    /// counts appear in `/jsz` as soon as the consumer work fills `consumer_count` there.
    pub(crate) fn consumer_count(&self) -> u64 {
        self.state.consumer_count
    }
}

/// Figures of every stream of `account`, sorted by name.
pub(crate) fn stream_figures(account: &JsAccount) -> Vec<StreamFigures> {
    account
        .streams()
        .into_iter()
        .map(|stream| StreamFigures {
            state: state_json(&stream),
            stream,
        })
        .collect()
}
