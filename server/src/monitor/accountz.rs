//! `/accountz` (accounts and one account's detail) and `/accstatz` (per-account traffic).

use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use serde::Serialize;

use super::{jsz, rfc3339, Monitor, MonitorError, Params};
use crate::account::Account;
use crate::config::ExportKind;
use crate::server::Server;
use crate::sublist::SublistStats;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Accountz {
    pub server_id: String,
    pub now: String,
    pub system_account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_detail: Option<AccountInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AccountInfo {
    pub account_name: String,
    pub update_time: String,
    pub expired: bool,
    pub complete: bool,
    pub jetstream_enabled: bool,
    pub leafnode_connections: usize,
    pub client_connections: usize,
    pub subscriptions: usize,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub mappings: std::collections::BTreeMap<String, Vec<crate::mapping::DestInfo>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExportInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<ImportInfo>,
    pub name_tag: String,
    pub sublist_stats: SublistStats,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExportInfo {
    pub subject: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Service exports: `Singleton`, `Streamed` or `Chunked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_type: Option<&'static str>,
    /// Operator mode's private export: importers need an activation JWT.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub token_req: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approved_accounts: Vec<String>,
    /// Operator mode: importing accounts whose activations issued up to the time are revoked.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub revoked_activations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ImportInfo {
    pub subject: String,
    pub account: String,
    /// Service imports only (nats-server's deprecated duplicate of `local_subject`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub local_subject: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub invalid: bool,
    pub share: bool,
    pub tracking: bool,
}

fn kind_name(kind: &ExportKind) -> &'static str {
    match kind {
        ExportKind::Stream => "stream",
        ExportKind::Service => "service",
    }
}

/// `/accountz`, or with `acc` that account's detail (400 when it does not exist).
pub(crate) fn accountz(server: &Server, acc: Option<&str>) -> Result<Accountz, MonitorError> {
    let mut out = Accountz {
        server_id: server.id.clone(),
        now: rfc3339(SystemTime::now()),
        system_account: server.system_account(),
        accounts: None,
        account_detail: None,
    };
    let Some(name) = acc else {
        out.accounts = Some(server.accounts().iter().map(|a| a.name.clone()).collect());
        return Ok(out);
    };
    let account = server
        .account(name)
        .ok_or_else(|| MonitorError::NoAccount(name.to_string()))?;
    let opts = server.options();
    let config = opts.accounts.iter().find(|a| a.name == account.name);
    let claims = opts.operator.as_ref().and_then(|o| {
        let (_, token) = o.preload.iter().find(|(k, _)| k == &account.name)?;
        crate::jwt::decode(token, crate::jwt::Kind::Account).ok()
    });
    let exports = config
        .map(|c| {
            c.exports
                .iter()
                .map(|e| ExportInfo {
                    subject: e.subject.clone(),
                    kind: kind_name(&e.kind),
                    response_type: (e.kind == ExportKind::Service).then(|| e.response_type.name()),
                    token_req: e.token_required,
                    // Activated importers are not approved accounts (nats-server lists none).
                    approved_accounts: if e.token_required {
                        Vec::new()
                    } else {
                        e.accounts.clone()
                    },
                    revoked_activations: claims
                        .iter()
                        .flat_map(|c| &c.nats.exports)
                        .find(|c| c.subject == e.subject && c.kind == kind_name(&e.kind))
                        .map(|c| {
                            c.revocations
                                .iter()
                                .map(|(k, &t)| {
                                    let ns =
                                        u64::try_from(t).unwrap_or(0).saturating_mul(1_000_000_000);
                                    (k.clone(), natsd_conf::timestamp::rfc3339_ns(ns))
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let imports = config
        .map(|c| {
            c.imports
                .iter()
                .map(|i| {
                    let local = match i.kind {
                        // As subscribed to: wildcard references (`$1`) show as `*`.
                        ExportKind::Service => {
                            crate::subject_transform::references_as_wildcards(&i.local_subject())
                        }
                        ExportKind::Stream => i.local_subject(),
                    };
                    ImportInfo {
                        subject: i.subject.clone(),
                        account: i.account.clone(),
                        to: (i.kind == ExportKind::Service).then(|| local.clone()),
                        local_subject: local,
                        kind: kind_name(&i.kind),
                        invalid: crate::imports::import_lapsed(i),
                        share: i.share,
                        tracking: false,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    out.account_detail = Some(AccountInfo {
        account_name: account.name.clone(),
        update_time: rfc3339(server.config_state().load_time),
        expired: server.authenticator().account_expired(&account.name),
        complete: true,
        jetstream_enabled: jsz::account_enabled(server, &account),
        leafnode_connections: 0,
        client_connections: account.connections(),
        subscriptions: account.sublist.count(),
        mappings: account.mappings_info().into_iter().collect(),
        exports,
        imports,
        name_tag: server.authenticator().name_tag(&account.name),
        sublist_stats: account.sublist.stats(),
    });
    Ok(out)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AccountStatzOptions {
    /// `accs=A,B`: only these accounts.
    pub accounts: Vec<String>,
    /// `unused=true`: include accounts without connections.
    pub include_unused: bool,
}

impl AccountStatzOptions {
    pub(crate) fn from_params(p: &Params) -> Result<AccountStatzOptions, MonitorError> {
        Ok(AccountStatzOptions {
            accounts: p
                .get("accs")
                .map(|s| {
                    s.split(',')
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            include_unused: p.bool("unused")?,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AccountStatz {
    pub server_id: String,
    pub now: String,
    pub account_statz: Vec<AccountStat>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AccountStat {
    pub acc: String,
    pub name: String,
    pub conns: usize,
    pub leafnodes: usize,
    pub total_conns: usize,
    pub num_subscriptions: usize,
    pub sent: DataStats,
    pub received: DataStats,
    pub slow_consumers: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct MsgBytes {
    pub msgs: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct DataStats {
    pub msgs: u64,
    pub bytes: u64,
    pub gateways: MsgBytes,
    pub routes: MsgBytes,
    pub leafs: MsgBytes,
}

impl DataStats {
    fn of(msgs: u64, bytes: u64) -> DataStats {
        DataStats {
            msgs,
            bytes,
            ..DataStats::default()
        }
    }
}

/// One account's message totals: closed connections' (folded into the account when they
/// closed) plus the live connections' own counters, summed now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AccountTraffic {
    /// Messages the account's clients published (`received` in `/accstatz`).
    pub in_msgs: u64,
    pub in_bytes: u64,
    /// Messages delivered to the account's clients (`sent` in `/accstatz`).
    pub out_msgs: u64,
    pub out_bytes: u64,
}

/// Message totals of every account, read at call time (never counted on the publish path).
pub(crate) fn account_traffic(server: &Server) -> Vec<(std::sync::Arc<Account>, AccountTraffic)> {
    let accounts = server.accounts();
    // Read closed totals before the live counters: a connection closing in between is then
    // counted at most once.
    let mut totals: Vec<AccountTraffic> = accounts
        .iter()
        .map(|a| AccountTraffic {
            in_msgs: a.stats.closed_in_msgs.load(Relaxed),
            in_bytes: a.stats.closed_in_bytes.load(Relaxed),
            out_msgs: a.stats.closed_out_msgs.load(Relaxed),
            out_bytes: a.stats.closed_out_bytes.load(Relaxed),
        })
        .collect();
    for client in server.clients() {
        let Some(account) = client.account() else {
            continue;
        };
        let Some(i) = accounts
            .iter()
            .position(|a| std::sync::Arc::ptr_eq(a, &account))
        else {
            continue;
        };
        let (out_msgs, out_bytes, _) = client.out.out_stats();
        let t = &mut totals[i];
        t.in_msgs += client.in_msgs.load(Relaxed);
        t.in_bytes += client.in_bytes.load(Relaxed);
        t.out_msgs += out_msgs;
        t.out_bytes += out_bytes;
    }
    accounts.into_iter().zip(totals).collect()
}

/// `/accstatz`. Counters never go down between two calls on the same `monitor`.
pub(crate) fn accstatz(monitor: &Monitor, opts: &AccountStatzOptions) -> AccountStatz {
    let server = monitor.server();
    let mut list = Vec::new();
    for (account, t) in account_traffic(server) {
        if !opts.accounts.is_empty() && !opts.accounts.contains(&account.name) {
            continue;
        }
        let conns = account.connections();
        if conns == 0 && !opts.include_unused {
            continue;
        }
        let t = monotonic_traffic(monitor, &account.name, t);
        list.push(AccountStat {
            acc: account.name.clone(),
            name: server.authenticator().name_tag(&account.name),
            conns,
            leafnodes: 0,
            total_conns: conns,
            num_subscriptions: account.sublist.count(),
            sent: DataStats::of(t.out_msgs, t.out_bytes),
            received: DataStats::of(t.in_msgs, t.in_bytes),
            slow_consumers: account
                .stats
                .slow_consumers
                .load(std::sync::atomic::Ordering::Relaxed),
        });
    }
    AccountStatz {
        server_id: server.id.clone(),
        now: rfc3339(SystemTime::now()),
        account_statz: list,
    }
}

pub(crate) fn monotonic_traffic(
    monitor: &Monitor,
    account: &str,
    t: AccountTraffic,
) -> AccountTraffic {
    AccountTraffic {
        in_msgs: monitor.monotonic(&format!("acc:{account}:in_msgs"), t.in_msgs),
        in_bytes: monitor.monotonic(&format!("acc:{account}:in_bytes"), t.in_bytes),
        out_msgs: monitor.monotonic(&format!("acc:{account}:out_msgs"), t.out_msgs),
        out_bytes: monitor.monotonic(&format!("acc:{account}:out_bytes"), t.out_bytes),
    }
}
