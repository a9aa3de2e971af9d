//! `manage list`: tenants, users and permissions; live connections and JetStream usage
//! when the server runs (each endpoint optional: a server without it just shows less).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::json;

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

/// The parts of `/connz?auth=true` and `/jsz?accounts=true` that `list` reads; the rest of
/// the documents is skipped while decoding.
#[derive(Deserialize)]
struct Connz {
    #[serde(default)]
    connections: Vec<Conn>,
}

#[derive(Deserialize)]
struct Conn {
    #[serde(default)]
    account: String,
    #[serde(default)]
    authorized_user: String,
}

#[derive(Deserialize)]
struct Jsz {
    #[serde(default)]
    account_details: Vec<JsAccount>,
}

#[derive(Deserialize)]
struct JsAccount {
    name: String,
    #[serde(default)]
    memory: u64,
    #[serde(default)]
    storage: u64,
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
        // A node's two requests, and the caller's reading of the tenant files, overlap: at
        // 1,000 tenants and connections each takes tens of milliseconds, mostly waiting.
        let (connz, jsz) = std::thread::scope(|s| {
            let jsz = s.spawn(|| monitor.get_as::<Jsz>("/jsz?accounts=true").ok());
            let connz = monitor
                .get_as::<Connz>("/connz?auth=true&limit=100000")
                .ok();
            (connz, jsz.join().ok().flatten())
        });
        // Connections are each node's own: they add up.
        if let Some(connz) = connz {
            let counts = live.connections.get_or_insert_with(HashMap::new);
            for conn in connz.connections {
                *counts
                    .entry((conn.account, conn.authorized_user))
                    .or_insert(0) += 1;
            }
        }
        // An account's JetStream usage is the same on every node (cluster-wide, every
        // replica counted): take the largest answer rather than a sum.
        if let Some(jsz) = jsz {
            let usage = live.jetstream.get_or_insert_with(HashMap::new);
            for a in jsz.account_details {
                let entry = usage.entry(a.name).or_insert((0, 0));
                entry.0 = entry.0.max(a.memory);
                entry.1 = entry.1.max(a.storage);
            }
        }
    }
    Some(live)
}

/// Cells of a usage bar.
const BAR_WIDTH: u64 = 20;

/// `▕██████░░░░░░░░░░░░░░▏  30% 3MB of 10MB`: JetStream use against the tenant's limit, yellow
/// from 60% and red from 80% (the console's and the alert rules' thresholds).
fn usage_bar(used: u64, limit: Size) -> String {
    let limit_bytes = limit.bytes().max(1);
    let percent = used.saturating_mul(100) / limit_bytes;
    let filled = (used.saturating_mul(BAR_WIDTH) / limit_bytes).min(BAR_WIDTH) as usize;
    let cells = format!(
        "{}{}",
        "█".repeat(filled),
        "░".repeat(BAR_WIDTH as usize - filled)
    );
    let paint = match percent {
        0..=59 => style::ok(),
        60..=79 => style::warning(),
        _ => style::error(),
    };
    format!(
        "▕{}▏ {:>3}% {} of {}",
        paint.apply_to(cells),
        percent,
        Size::from_bytes(used).human(),
        limit.human()
    )
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
    let (tenants, live) = std::thread::scope(|s| {
        let live = s.spawn(|| live(ctx));
        (repo::load_all(&ctx.paths), live.join().ok().flatten())
    });
    let tenants = tenants?;
    // The JSON document is built only when it is printed (1,000 tenants: a third of the work).
    let json_mode = printer.is_json();
    let mut body = vec![String::new()];
    let mut docs = Vec::new();
    for tenant in &tenants {
        let account = tenant.account_name();
        // The servers name an NKEY user's connections by its public key.
        let conns = |user: &crate::tenant::User| {
            let login = user.auth.public_key().unwrap_or(user.name.as_str());
            live.as_ref().and_then(|l| l.connections.as_ref()).map(|c| {
                c.get(&(account.clone(), login.to_owned()))
                    .copied()
                    .unwrap_or(0)
            })
        };
        let used = live
            .as_ref()
            .and_then(|l| l.jetstream.as_ref())
            .map(|js| js.get(&account).copied().unwrap_or((0, 0)));
        let tenant_conns: Option<u64> = tenant.users.iter().map(conns).sum();
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
        body.push(head);
        if let Some((memory, storage)) = used {
            body.push(format!(
                "    JetStream storage {} · memory {}",
                usage_bar(storage, tenant.storage),
                usage_bar(memory, tenant.memory),
            ));
        }
        let mut users = Vec::new();
        for user in &tenant.users {
            let mut line = format!("    ├─ {} ({})", user.name, user.permissions.summary());
            if user.is_passwordless() {
                line.push_str(" · NKEY");
            }
            if let Some(n) = conns(user) {
                line.push_str(&format!(" · {}", plural(n, "connection")));
            }
            body.push(line);
            if !json_mode {
                continue;
            }
            let p = &user.permissions;
            let list = |l: &[crate::names::SubjectPattern]| {
                l.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>()
            };
            users.push(json!({
                "name": user.name.as_str(), "admin": user.name == tenant.name.admin_user(),
                "full_access": p.is_full_access(), "publish": list(&p.publish), "subscribe": list(&p.subscribe),
                "deny_publish": list(&p.deny_publish), "deny_subscribe": list(&p.deny_subscribe),
                "allow_responses": p.allow_responses, "replies_only": p.replies_only(),
                "auth": user.auth.kind().as_str(), "passwordless": user.is_passwordless(),
                "nkey": user.auth.public_key(),
                "connections": conns(user),
            }));
        }
        body.push(String::new());
        if !json_mode {
            continue;
        }
        docs.push(json!({
            "name": tenant.name.as_str(), "account": account,
            "memory": tenant.memory.to_string(), "storage": tenant.storage.to_string(),
            "memory_bytes": tenant.memory.bytes(), "storage_bytes": tenant.storage.bytes(),
            "connections": tenant_conns,
            "jetstream_used": used.map(|(m, s)| json!({ "memory": m, "storage": s })),
            "jetstream_percent": used.map(|(m, s)| json!({
                "memory": m.saturating_mul(100) / tenant.memory.bytes().max(1),
                "storage": s.saturating_mul(100) / tenant.storage.bytes().max(1),
            })),
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
