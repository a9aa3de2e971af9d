//! `manage list`: tenants, users and permissions; live connections and JetStream usage
//! when the server runs (each endpoint optional: a server without it just shows less).

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::commands::ExitStatus;
use crate::names::Size;
use crate::printer::{style, Printer};
use crate::server::{self, Monitor};
use crate::tenant::repo;
use crate::Context;

/// Live figures from the monitoring API.
#[derive(Debug, Default)]
struct Live {
    /// (account, user) → open connections; `None` when /connz was unavailable.
    connections: Option<HashMap<(String, String), u64>>,
    /// account → (memory, storage) bytes used; `None` when /jsz was unavailable.
    jetstream: Option<HashMap<String, (u64, u64)>>,
}

fn live(ctx: &Context) -> Option<Live> {
    // natsd, or every node of the cluster that answers.
    let monitors: Vec<Monitor> = match Cluster::load(&ctx.paths).ok()? {
        Some(cluster) => cluster
            .nodes
            .iter()
            .filter_map(|n| Monitor::at(n.monitor_url()).ok())
            .filter(|m| m.get("/varz").is_ok())
            .collect(),
        None => {
            if !server::is_running(&ctx.settings, &ctx.paths) {
                return None;
            }
            vec![Monitor::new(&ctx.settings).ok()?]
        }
    };
    if monitors.is_empty() {
        return None;
    }
    let mut live = Live::default();
    for monitor in &monitors {
        // Connections are each node's own: they add up.
        if let Ok(connz) = monitor.get("/connz?auth=true&limit=100000") {
            let counts = live.connections.get_or_insert_with(HashMap::new);
            for conn in connz
                .get("connections")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let field = |k: &str| {
                    conn.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                *counts
                    .entry((field("account"), field("authorized_user")))
                    .or_insert(0) += 1;
            }
        }
        // An account's JetStream usage is the same on every node (cluster-wide, every
        // replica counted): take the largest answer rather than a sum.
        if let Ok(jsz) = monitor.get("/jsz?accounts=true") {
            let usage = live.jetstream.get_or_insert_with(HashMap::new);
            for a in jsz
                .get("account_details")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = a.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let used = |k: &str| a.get(k).and_then(Value::as_u64).unwrap_or(0);
                let entry = usage.entry(name.to_owned()).or_insert((0, 0));
                entry.0 = entry.0.max(used("memory"));
                entry.1 = entry.1.max(used("storage"));
            }
        }
    }
    Some(live)
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Print every tenant with its users.
pub fn tenant_list(ctx: &Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    let tenants = repo::load_all(&ctx.paths)?;
    let live = live(ctx);
    let mut body = vec![String::new()];
    let mut docs = Vec::new();
    for tenant in &tenants {
        let account = tenant.account_name();
        let conns = |user: &str| {
            live.as_ref().and_then(|l| l.connections.as_ref()).map(|c| {
                c.get(&(account.clone(), user.to_owned()))
                    .copied()
                    .unwrap_or(0)
            })
        };
        let used = live
            .as_ref()
            .and_then(|l| l.jetstream.as_ref())
            .map(|js| js.get(&account).copied().unwrap_or((0, 0)));
        let tenant_conns: Option<u64> = tenant.users.iter().map(|u| conns(u.name.as_str())).sum();
        let mut head = format!(
            "  {}  {}",
            style::title().apply_to(&account),
            style::dim().apply_to(format!(
                "memory {}, storage {}",
                tenant.memory, tenant.storage
            ))
        );
        if let Some(n) = tenant_conns {
            head.push_str(&format!(" · {}", plural(n, "connection")));
        }
        if let Some((memory, storage)) = used {
            head.push_str(&format!(
                " · JetStream used {} memory, {} storage",
                Size::from_bytes(memory).human(),
                Size::from_bytes(storage).human()
            ));
        }
        body.push(head);
        let mut users = Vec::new();
        for user in &tenant.users {
            let mut line = format!("    ├─ {} ({})", user.name, user.permissions.summary());
            if let Some(n) = conns(user.name.as_str()) {
                line.push_str(&format!(" · {}", plural(n, "connection")));
            }
            body.push(line);
            let p = &user.permissions;
            let list = |l: &[crate::names::SubjectPattern]| {
                l.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>()
            };
            users.push(json!({
                "name": user.name.as_str(), "admin": user.name == tenant.name.admin_user(),
                "full_access": p.is_full_access(), "publish": list(&p.publish), "subscribe": list(&p.subscribe),
                "deny_publish": list(&p.deny_publish), "deny_subscribe": list(&p.deny_subscribe),
                "allow_responses": p.allow_responses, "replies_only": p.replies_only(),
                "connections": conns(user.name.as_str()),
            }));
        }
        body.push(String::new());
        docs.push(json!({
            "name": tenant.name.as_str(), "account": account,
            "memory": tenant.memory.to_string(), "storage": tenant.storage.to_string(),
            "memory_bytes": tenant.memory.bytes(), "storage_bytes": tenant.storage.bytes(),
            "connections": tenant_conns,
            "jetstream_used": used.map(|(m, s)| json!({ "memory": m, "storage": s })),
            "users": users,
        }));
    }
    if tenants.is_empty() {
        body.push("  No tenants yet: ./manage add-tenant <name>".into());
        body.push(String::new());
    }
    body.pop();
    printer.boxed("NATS Tenants and Users", &body);
    printer.json(&json!({ "ok": true, "server_running": live.is_some(), "tenants": docs }));
    Ok(ExitStatus::Success)
}
