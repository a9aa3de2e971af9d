//! `/metrics` in the Prometheus text format, named like prometheus-nats-exporter's series so
//! dashboards built on it (Grafana "NATS Servers", id 2279) work unchanged:
//!
//! - `gnatsd_varz_<key>` for every numeric `/varz` key (nested keys joined by `_`),
//! - `gnatsd_connz_*`, `gnatsd_subsz_*`, `gnatsd_routez_num_routes`, `gnatsd_healthz_status`,
//! - `gnatsd_accstatz_*{account}` per account, and `jetstream_account_*{account}` storage,
//! - natsd's own: `gnatsd_auth_failures` (refused logins) and
//!   `gnatsd_accstatz_auth_failures{account}` (wrong passwords of the account's users), which
//!   neither the exporter nor Surveyor has (nats-server only publishes an advisory per failure).
//!
//! Every series carries `server_id`. All values are gauges, as the exporter exposes them.
//! Everything is collected at scrape time by a custom collector from the server state.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::accountz::{account_traffic, monotonic_traffic};
use super::{connz, jsz, subsz, varz, Monitor};

/// The Prometheus text exposition format, version 0.0.4.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One gauge family: name, help, and its samples (label values beyond `server_id`).
#[derive(Debug, Clone)]
struct Family {
    name: String,
    help: String,
    samples: Vec<(Vec<(String, String)>, f64)>,
}

/// The families of one scrape, computed before encoding.
#[derive(Debug, Default)]
struct Snapshot {
    server_id: String,
    families: Vec<Family>,
}

impl Snapshot {
    fn gauge(&mut self, name: impl Into<String>, help: impl Into<String>, value: f64) {
        self.families.push(Family {
            name: name.into(),
            help: help.into(),
            samples: vec![(Vec::new(), value)],
        });
    }

    fn family(&mut self, name: &str, help: &str) -> &mut Vec<(Vec<(String, String)>, f64)> {
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            return &mut self.families[i].samples;
        }
        self.families.push(Family {
            name: name.to_string(),
            help: help.to_string(),
            samples: Vec::new(),
        });
        let last = self.families.len() - 1;
        &mut self.families[last].samples
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let mut metric = encoder.encode_descriptor(
                &family.name,
                &family.help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (labels, value) in &family.samples {
                let mut all: Vec<(&str, &str)> = vec![("server_id", self.server_id.as_str())];
                all.extend(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let gauge = ConstGauge::new(*value);
                gauge.encode(metric.encode_family(&all)?)?;
            }
        }
        Ok(())
    }
}

/// Walk a JSON value and emit a gauge for every number, named by its key path.
fn numeric_leaves(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, f64)>) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(v) = n.as_f64() {
                out.push((prefix.to_string(), v));
            }
        }
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                numeric_leaves(&format!("{prefix}_{key}"), v, out);
            }
        }
        _ => {}
    }
}

fn epoch_secs(rfc: &str) -> Option<f64> {
    natsd_conf::timestamp::parse_rfc3339_ns(rfc).map(|ns| ns as f64 / 1e9)
}

fn collect(monitor: &Monitor) -> Snapshot {
    let server = monitor.server();
    let mut snap = Snapshot {
        server_id: server.id.clone(),
        families: Vec::new(),
    };

    // /varz: every numeric key, like the exporter's generic walk. The per-path request
    // counts are not metrics (their keys are paths).
    let v = varz::varz_for(monitor);
    let (start, config_load_time) = (v.start.clone(), v.config_load_time.clone());
    let mut json = serde_json::to_value(&v).unwrap_or_default();
    if let Some(map) = json.as_object_mut() {
        map.remove("http_req_stats");
    }
    let mut leaves = Vec::new();
    numeric_leaves("gnatsd_varz", &json, &mut leaves);
    for (name, value) in leaves {
        let help = format!("varz {}", name.trim_start_matches("gnatsd_varz_"));
        snap.gauge(name, help, value);
    }
    if let Some(t) = epoch_secs(&start) {
        snap.gauge("gnatsd_varz_start", "server start time (unix seconds)", t);
    }
    if let Some(t) = epoch_secs(&config_load_time) {
        snap.gauge(
            "gnatsd_varz_config_load_time",
            "last configuration load (unix seconds)",
            t,
        );
    }

    // /connz sums over the open connections (what the exporter adds up from one page).
    let clients = server.clients();
    let (mut pending, mut subs, mut in_msgs, mut out_msgs, mut in_bytes, mut out_bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for c in clients.iter().take(connz::DEFAULT_LIMIT) {
        let (om, ob, p) = c.out.out_stats();
        pending += p as u64;
        out_msgs += om;
        out_bytes += ob;
        in_msgs += c.in_msgs.load(std::sync::atomic::Ordering::Relaxed);
        in_bytes += c.in_bytes.load(std::sync::atomic::Ordering::Relaxed);
        subs += c.num_subs() as u64;
    }
    let total = clients.len();
    let page = total.min(connz::DEFAULT_LIMIT);
    for (name, value) in [
        ("num_connections", page as f64),
        ("total", total as f64),
        ("offset", 0.0),
        ("limit", connz::DEFAULT_LIMIT as f64),
        ("pending_bytes", pending as f64),
        ("subscriptions", subs as f64),
        ("in_msgs", in_msgs as f64),
        ("out_msgs", out_msgs as f64),
        ("in_bytes", in_bytes as f64),
        ("out_bytes", out_bytes as f64),
    ] {
        snap.gauge(
            format!("gnatsd_connz_{name}"),
            format!("connz {name}"),
            value,
        );
    }

    // /subsz statistics over all accounts.
    let stats: Vec<_> = server
        .accounts()
        .iter()
        .map(|a| a.sublist.stats())
        .collect();
    let mut leaves = Vec::new();
    numeric_leaves(
        "gnatsd_subsz",
        &serde_json::to_value(subsz::sum_stats(&stats)).unwrap_or_default(),
        &mut leaves,
    );
    leaves.extend([
        ("gnatsd_subsz_total".to_string(), 0.0),
        ("gnatsd_subsz_offset".to_string(), 0.0),
        (
            "gnatsd_subsz_limit".to_string(),
            subsz::DEFAULT_LIMIT as f64,
        ),
    ]);
    for (name, value) in leaves {
        let help = format!("subsz {}", name.trim_start_matches("gnatsd_subsz_"));
        snap.gauge(name, help, value);
    }

    snap.gauge("gnatsd_routez_num_routes", "routez num_routes", 0.0);
    snap.gauge(
        "gnatsd_auth_failures",
        "logins refused for bad credentials, unknown users included (natsd only)",
        server
            .stats
            .connections
            .auth_failures
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    let (status, _) = jsz::healthz(server, &jsz::HealthzOptions::default());
    let healthy = status.is_success();
    snap.gauge(
        "gnatsd_healthz_status",
        "healthz status (0 = ok, 1 = not ok)",
        if healthy { 0.0 } else { 1.0 },
    );
    snap.family(
        "gnatsd_healthz_status_value",
        "healthz status value (1 for the current one)",
    )
    .push((
        vec![(
            "value".to_string(),
            if healthy { "ok" } else { "unavailable" }.to_string(),
        )],
        1.0,
    ));

    // Per account: /accstatz?unused=1 names, and JetStream storage used against the limits.
    for (account, traffic) in account_traffic(server) {
        let t = monotonic_traffic(monitor, &account.name, traffic);
        let label = vec![("account".to_string(), account.name.clone())];
        let conns = account.connections() as f64;
        let per_account: [(&str, &str, f64); 10] = [
            (
                "gnatsd_accstatz_current_connections",
                "current client connections",
                conns,
            ),
            (
                "gnatsd_accstatz_total_connections",
                "client and leaf connections",
                conns,
            ),
            ("gnatsd_accstatz_leaf_nodes", "leaf node connections", 0.0),
            (
                "gnatsd_accstatz_subscriptions",
                "subscriptions",
                account.sublist.count() as f64,
            ),
            (
                "gnatsd_accstatz_slow_consumers",
                "slow consumers",
                account
                    .stats
                    .slow_consumers
                    .load(std::sync::atomic::Ordering::Relaxed) as f64,
            ),
            (
                "gnatsd_accstatz_auth_failures",
                "logins refused for a wrong password of one of the account's users (natsd only)",
                account
                    .stats
                    .auth_failures
                    .load(std::sync::atomic::Ordering::Relaxed) as f64,
            ),
            (
                "gnatsd_accstatz_sent_messages",
                "messages delivered to the account's clients",
                t.out_msgs as f64,
            ),
            (
                "gnatsd_accstatz_sent_bytes",
                "bytes delivered to the account's clients",
                t.out_bytes as f64,
            ),
            (
                "gnatsd_accstatz_received_messages",
                "messages published by the account's clients",
                t.in_msgs as f64,
            ),
            (
                "gnatsd_accstatz_received_bytes",
                "bytes published by the account's clients",
                t.in_bytes as f64,
            ),
        ];
        for (name, help, value) in per_account {
            snap.family(name, help).push((label.clone(), value));
        }
        let storage = jsz::account_storage(server, &account);
        for (name, help, value) in [
            (
                "jetstream_account_max_memory",
                "JetStream memory limit (-1 unlimited, 0 disabled)",
                storage.max_memory as f64,
            ),
            (
                "jetstream_account_max_storage",
                "JetStream storage limit (-1 unlimited, 0 disabled)",
                storage.max_storage as f64,
            ),
            (
                "jetstream_account_memory_used",
                "JetStream memory used",
                storage.memory_used as f64,
            ),
            (
                "jetstream_account_storage_used",
                "JetStream storage used",
                storage.storage_used as f64,
            ),
        ] {
            snap.family(name, help).push((label.clone(), value));
        }
    }
    snap
}

/// Render one scrape.
pub(crate) fn render(monitor: &Monitor) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collect(monitor)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}
