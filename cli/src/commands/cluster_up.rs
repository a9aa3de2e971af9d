//! `manage up --nodes N`, `down` and `status` for a deployment whose servers are the nodes of
//! a nats-server cluster (`config/cluster.toml`).
//!
//! `up` writes the description the first time (N nodes on this machine), renders every node's
//! configuration with the rest of the change (validated by `nats-server -t`), reloads the nodes
//! that run, starts the ones on this machine that do not, and waits until every node is
//! healthy, has a route to every other node and follows one JetStream meta leader.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::{DownArgs, UpArgs};
use crate::cluster::nodes::{self, Health};
use crate::cluster::{Cluster, Node};
use crate::commands::server_up::{port_taken, START_TIMEOUT, STOP_TIMEOUT};
use crate::commands::{begin, init, server_limits, Change, ExitStatus, ServerSync};
use crate::error::ManageError;
use crate::printer::Printer;
use crate::server::{self, Process, SysClient, SysUnavailable};
use crate::Context;

/// How long `up` waits for a whole cluster: formation and the meta leader election take a
/// second or two on one machine; nodes on other hosts may be started by hand meanwhile.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster of the deployment, or the error saying it has none.
fn described(ctx: &Context) -> anyhow::Result<Cluster> {
    Cluster::load(&ctx.paths)?.ok_or_else(|| {
        ManageError::NotACluster {
            root: ctx.paths.root.clone(),
        }
        .into()
    })
}

/// The nodes a command with `--node NAME` works on: that one, else all.
fn selected<'a>(cluster: &'a Cluster, node: Option<&str>) -> anyhow::Result<Vec<&'a Node>> {
    Ok(match node {
        Some(name) => vec![cluster.node(name)?],
        None => cluster.nodes.iter().collect(),
    })
}

/// Whether a server answers on the node's client port as this deployment's system user.
fn answers(ctx: &Context, node: &Node) -> Result<bool, String> {
    match SysClient::connect_to(&ctx.settings, &ctx.paths, &node.client_addr()) {
        Ok(_) => Ok(true),
        Err(SysUnavailable::NotListening) => Ok(false),
        Err(SysUnavailable::Refused(reason)) => Err(reason),
    }
}

/// The deployment's cluster, or (with `nodes`, the first time) a new description of `nodes`
/// local nodes; `true` when it is new. Call with the deployment lock held.
pub fn describe(ctx: &Context, nodes: Option<usize>) -> anyhow::Result<(Cluster, bool)> {
    let existing = Cluster::load(&ctx.paths)?;
    Ok(match (existing, nodes) {
        (Some(cluster), Some(asked)) if cluster.nodes.len() != asked => {
            return Err(ManageError::ClusterMismatch {
                described: cluster.nodes.len(),
                asked,
            }
            .into())
        }
        (Some(cluster), _) => (cluster, false),
        (None, Some(count)) => {
            // A natsd of this deployment serves its tenants from its own store: a cluster beside
            // it in the same deployment would take its port and leave its data behind.
            if server::is_running(&ctx.settings, &ctx.paths) {
                return Err(ManageError::ServerUnreachable {
                    reason: format!(
                        "natsd of this deployment runs on {}: a cluster in this deployment would \
                         take its ports. Run the cluster as another deployment (./manage \
                         --config-dir DIR up --nodes {count}, on other ports) and move the tenants \
                         and their data with ./manage migrate --to DIR; or stop natsd first \
                         (./manage down)",
                        ctx.settings.client_addr()
                    ),
                }
                .into());
            }
            let limits = server_limits(ctx).unwrap_or((None, None));
            (Cluster::local(&ctx.settings, count, limits)?, true)
        }
        (None, None) => {
            return Err(ManageError::NotACluster {
                root: ctx.paths.root.clone(),
            }
            .into())
        }
    })
}

/// `manage up [--nodes N] [--node NAME]`
pub fn up(args: &UpArgs, ctx: &mut Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    let _lock = begin(ctx, printer)?;
    let (cluster, new) = describe(ctx, args.nodes.map(usize::from))?;
    let targets: Vec<Node> = selected(&cluster, args.node.as_deref())?
        .into_iter()
        .cloned()
        .collect();
    if init::ensure_secret(ctx, "NATS_CLUSTER_PASSWORD")? {
        printer.status(
            "Created",
            ".env (NATS_CLUSTER_PASSWORD, the routes' password)",
        );
    }
    // Which of the nodes to start here: not running, on this machine, ports free.
    let mut to_start = Vec::new();
    let mut elsewhere = Vec::new();
    for node in &targets {
        match nodes::process(&ctx.settings, &ctx.paths, node) {
            Process::Ours { .. } => continue,
            Process::Unverified { pid, reason } => {
                return Err(nodes::unverified(&ctx.paths, node, pid, reason))
            }
            Process::Stale { .. } | Process::None => {}
        }
        match answers(ctx, node) {
            Ok(true) => continue,
            Ok(false) => {}
            Err(reason) if node.is_local() => {
                return Err(ManageError::PortInUse {
                    addr: format!("{} ({reason})", node.client_addr()),
                }
                .into())
            }
            Err(_) => {}
        }
        if !node.is_local() {
            elsewhere.push(node.name.clone());
            continue;
        }
        let monitor = node.monitor_url();
        let addrs = [
            node.client_addr(),
            monitor.trim_start_matches("http://").to_owned(),
            node.cluster_addr(),
        ];
        if let Some(addr) = addrs.into_iter().find(|a| port_taken(a)) {
            return Err(ManageError::PortInUse {
                addr: format!("{addr} (node {})", node.name),
            }
            .into());
        }
        to_start.push(node.clone());
    }
    let applied = write_cluster(ctx, printer, &cluster, new, "up")?;
    if let ServerSync::Cluster(synced) = &applied.sync {
        for (sync, _) in synced {
            if let Err(error) = &sync.result {
                printer.warn(format!("{}: {error:#}", sync.node));
            }
        }
    }
    let mut started = Vec::new();
    for node in &to_start {
        let pid = nodes::start(&ctx.settings, &ctx.paths, node)?;
        printer.status(
            "Started",
            format!(
                "{} (pid {pid}, log {})",
                node.name,
                ctx.paths.display(&ctx.paths.node_log_file(&node.name))
            ),
        );
        started.push((node.clone(), pid));
    }
    for name in &elsewhere {
        printer.warn(format!(
            "{name} is not running and its address is not on this machine: start it on its host \
             (./manage up --node {name})"
        ));
    }
    let spinner = printer.spinner("Waiting for the cluster…");
    let outcome = if args.node.is_some() {
        wait_started(ctx, &targets, &started)
    } else {
        let (health, reason) = nodes::wait_ready(&cluster, READY_TIMEOUT);
        match reason {
            None => Ok(health),
            Some(reason) => Err(not_ready(ctx, &started, reason)),
        }
    };
    spinner.finish_and_clear();
    let health = match outcome {
        Ok(_) => nodes::probe_all(&cluster),
        Err(error) => return Err(error),
    };
    let rows = node_rows(ctx, &cluster, &health);
    print_cluster(ctx, printer, &cluster, &health, &rows, "is running");
    printer.json(&json!({
        "ok": true, "running": true, "cluster": cluster.name,
        "started": started.iter().map(|(n, _)| n.name.clone()).collect::<Vec<_>>(),
        "nodes": rows, "client_urls": cluster.client_urls(&ctx.settings),
        "meta_leader": leader(&health),
    }));
    Ok(ExitStatus::Success)
}

/// Render every node's configuration (and `config/cluster.toml` when `new`) as one change,
/// and bring the running nodes to it.
pub fn write_cluster(
    ctx: &Context,
    printer: Printer,
    cluster: &Cluster,
    new: bool,
    command: &str,
) -> anyhow::Result<crate::commands::Applied> {
    let mut change = Change::new(ctx, command)?;
    if new {
        change.put_cluster(cluster.clone())?;
        printer.status(
            "Created",
            format!(
                "config/cluster.toml ({} nodes, cluster `{}`)",
                cluster.nodes.len(),
                cluster.name
            ),
        );
    }
    change.commit(printer, false)
}

/// `up --node NAME`: the node answers on its monitoring port (a lone node cannot be healthy:
/// JetStream waits for a majority of its peers).
fn wait_started(
    ctx: &Context,
    targets: &[Node],
    started: &[(Node, u32)],
) -> anyhow::Result<Vec<Health>> {
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    loop {
        let health: Vec<Health> = targets.iter().map(nodes::probe).collect();
        if health.iter().all(|h| h.up) {
            return Ok(health);
        }
        for (node, pid) in started {
            if !server::is_alive(*pid) {
                return Err(ManageError::StartFailed {
                    reason: format!("node {} exited", node.name),
                    log_tail: server::tail(&ctx.paths.node_log_file(&node.name), 15),
                }
                .into());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(ManageError::StartFailed {
                reason: format!("no answer after {}s", START_TIMEOUT.as_secs()),
                log_tail: String::new(),
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The error for a cluster that did not become ready: a node this run started that exited
/// says so with its log.
fn not_ready(ctx: &Context, started: &[(Node, u32)], reason: String) -> anyhow::Error {
    for (node, pid) in started {
        if !server::is_alive(*pid) {
            return ManageError::StartFailed {
                reason: format!("node {} exited", node.name),
                log_tail: server::tail(&ctx.paths.node_log_file(&node.name), 15),
            }
            .into();
        }
    }
    ManageError::ClusterNotReady {
        reason: format!("after {}s: {reason}", READY_TIMEOUT.as_secs()),
    }
    .into()
}

fn leader(health: &[Health]) -> Option<String> {
    health.iter().find_map(|h| h.meta_leader.clone())
}

/// One node for `status --json` and `up --json`: `name`, `url`, `monitor`, `pid`, `up` (what
/// scripts read), then what the monitoring API tells.
fn node_rows(ctx: &Context, cluster: &Cluster, health: &[Health]) -> Vec<Value> {
    cluster
        .nodes
        .iter()
        .zip(health)
        .map(|(node, h)| {
            let pid = match nodes::process(&ctx.settings, &ctx.paths, node) {
                Process::Ours { pid, .. } => Some(pid),
                _ => None,
            };
            let expected = nodes::expected_digest(&ctx.settings, &ctx.paths, node).ok();
            let running = h.varz.get("config_digest").and_then(Value::as_str);
            json!({
                "name": node.name, "url": node.client_url(&ctx.settings),
                "monitor": node.monitor_url(), "pid": pid, "up": h.up,
                "healthy": h.healthy,
                "version": h.varz.get("version"), "connections": h.varz.get("connections"),
                "routes": h.peers.len(), "jetstream_leader": h.meta_leader,
                "in_sync": match (expected.as_deref(), running) {
                    (Some(e), Some(r)) => json!(e == r),
                    _ => Value::Null,
                },
            })
        })
        .collect()
}

fn print_cluster(
    ctx: &Context,
    printer: Printer,
    cluster: &Cluster,
    health: &[Health],
    rows: &[Value],
    state: &str,
) {
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut table = vec![vec![
        "Node".to_owned(),
        "State".to_owned(),
        "Client".to_owned(),
        "Monitoring".to_owned(),
        "Version".to_owned(),
        "Routes".to_owned(),
        "Conns".to_owned(),
        "Pid".to_owned(),
        "Config".to_owned(),
    ]];
    for (row, h) in rows.iter().zip(health) {
        let state = if !h.up {
            "down"
        } else if h.healthy {
            "healthy"
        } else {
            "starting"
        };
        table.push(vec![
            text(&row["name"]),
            state.to_owned(),
            text(&row["url"]),
            text(&row["monitor"]),
            text(&row["version"]),
            if h.up {
                format!("{}/{}", h.peers.len(), cluster.nodes.len() - 1)
            } else {
                "-".into()
            },
            text(&row["connections"]),
            text(&row["pid"]),
            match &row["in_sync"] {
                Value::Bool(true) => "current".into(),
                Value::Bool(false) => "differs".into(),
                _ => "-".into(),
            },
        ]);
    }
    let mut body = crate::printer::table(&table);
    body.push(String::new());
    body.push(format!(
        "  Client URLs:      {}",
        cluster.client_urls(&ctx.settings).join(",")
    ));
    body.push(format!(
        "  JetStream leader: {}",
        leader(health).unwrap_or_else(|| "none".into())
    ));
    printer.boxed(
        &format!(
            "nats-server cluster `{}` {state} ({} nodes)",
            cluster.name,
            cluster.nodes.len()
        ),
        &body,
    );
}

/// `manage status` of a cluster.
pub fn status(ctx: &Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    let cluster = described(ctx)?;
    let tenants = crate::tenant::repo::load_all(&ctx.paths)?;
    let health = nodes::probe_all(&cluster);
    let rows = node_rows(ctx, &cluster, &health);
    let up = health.iter().filter(|h| h.up).count();
    let state = match up {
        0 => "is not running".to_owned(),
        n if n == cluster.nodes.len() => "is running".to_owned(),
        n => format!("runs {n} of {} nodes", cluster.nodes.len()),
    };
    print_cluster(ctx, printer, &cluster, &health, &rows, &state);
    printer.line(format!("  Tenants: {}", tenants.len()));
    printer.json(&json!({
        "ok": true, "running": up > 0, "cluster": cluster.name, "tenants": tenants.len(),
        "nodes": rows, "client_urls": cluster.client_urls(&ctx.settings),
        "meta_leader": leader(&health), "ready": nodes::not_ready(&cluster, &health).is_none(),
    }));
    Ok(ExitStatus::Success)
}

/// `manage down [--node NAME]`: stop the cluster's nodes that run on this machine.
pub fn down(args: &DownArgs, ctx: &Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    let cluster = described(ctx)?;
    let mut stopped = Vec::new();
    let mut elsewhere = Vec::new();
    for node in selected(&cluster, args.node.as_deref())? {
        match nodes::process(&ctx.settings, &ctx.paths, node) {
            Process::Ours { pid, .. } => {
                let spinner = printer.spinner(format!("Stopping {} (pid {pid})…", node.name));
                let killed = nodes::stop(&ctx.settings, &ctx.paths, node, pid, STOP_TIMEOUT)?;
                spinner.finish_and_clear();
                printer.status("Stopped", format!("{} (pid {pid})", node.name));
                stopped.push(json!({ "name": node.name, "pid": pid, "killed": killed }));
            }
            Process::Unverified { pid, reason } => {
                return Err(nodes::unverified(&ctx.paths, node, pid, reason))
            }
            other => {
                if let Process::Stale { pid, reason } = other {
                    crate::fs::remove_if_exists(&ctx.paths.node_pid_file(&node.name))?;
                    printer.warn(format!(
                        "removed {} (pid {pid}): {reason}",
                        ctx.paths.display(&ctx.paths.node_pid_file(&node.name))
                    ));
                }
                if answers(ctx, node).unwrap_or(false) {
                    printer.warn(format!(
                        "{name} answers on {addr}, but no process of it runs here: stop it \
                         where it runs (on its host, or `docker compose -f \
                         docker-compose.cluster.yml stop {name}` for a container)",
                        name = node.name,
                        addr = node.client_addr(),
                    ));
                    elsewhere.push(node.name.clone());
                } else {
                    printer.status("Stopped", format!("{} is not running", node.name));
                }
            }
        }
    }
    printer.json(&json!({ "ok": true, "stopped": stopped, "running_elsewhere": elsewhere }));
    Ok(ExitStatus::Success)
}
