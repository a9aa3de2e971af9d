//! The nodes at run time: the nats-server binary, each node's process (verified as in
//! `server.rs` before it is ever signalled), reload through the system account confirmed by
//! each node's `config_digest`, and health (`/healthz`, complete routes, a JetStream meta
//! leader).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::cluster::{Cluster, Node};
use crate::error::ManageError;
use crate::server::{
    self, Monitor, Process, ReloadOutcome, SysClient, SysUnavailable, Via, POLL_INTERVAL,
};
use crate::settings::{Paths, Settings};

/// The nats-server binary of the nodes: `NATS_CLUSTER_BIN`, else the one `scripts/test.sh`
/// installs in `.venv` (under the deployment root, or the repository holding this manage),
/// else `nats-server` on PATH.
pub fn find_binary(settings: &Settings, paths: &Paths) -> Option<PathBuf> {
    if let Some(bin) = &settings.cluster_bin {
        return if bin.contains('/') {
            Some(PathBuf::from(bin))
        } else {
            search_path(bin)
        };
    }
    let venv = |root: &std::path::Path| root.join(".venv/bin/nats-server");
    let repository = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()));
    [Some(paths.root.clone()), repository]
        .into_iter()
        .flatten()
        .map(|root| venv(&root))
        .find(|candidate| candidate.is_file())
        .or_else(|| search_path("nats-server"))
}

fn search_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The verified local process of `node`.
pub fn process(settings: &Settings, paths: &Paths, node: &Node) -> Process {
    server::local_process_for(
        settings,
        &paths.node_conf(&node.name),
        &paths.node_pid_file(&node.name),
    )
}

/// Validate `config/nodes/<node>.conf` with the nodes' binary (`nats-server -t`), and return
/// the `config_digest` a node that loaded it shows: nats-server prints it after `-t`; for a
/// binary that does not, it is computed here as nats-server computes it.
pub fn validate(settings: &Settings, paths: &Paths, node: &Node) -> anyhow::Result<String> {
    let binary = find_binary(settings, paths).ok_or(ManageError::NoClusterBinary)?;
    let conf = paths.node_conf(&node.name);
    let output = Command::new(&binary)
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .current_dir(&paths.root)
        .output()
        .with_context(|| format!("failed to run {} -t", binary.display()))?;
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    if !output.status.success() {
        return Err(ManageError::InvalidConfig {
            checker: format!("{} -t -c {}", binary.display(), paths.display(&conf)),
            output: text.trim().to_owned(),
        }
        .into());
    }
    match printed_digest(&text) {
        Some(digest) => Ok(digest),
        None => digest(settings, paths, node),
    }
}

/// The `config_digest` of a node's configuration as nats-server computes it (the shared
/// `natsd-conf` rules; the node configurations use no environment variables).
pub fn digest(settings: &Settings, paths: &Paths, node: &Node) -> anyhow::Result<String> {
    let conf = paths.node_conf(&node.name);
    let tree = natsd_conf::read_file(&conf, &|name| {
        settings
            .vars
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    })
    .map_err(|output| ManageError::InvalidConfig {
        checker: "the nats.conf parser".into(),
        output,
    })?;
    Ok(natsd_conf::digest(&tree))
}

/// The digest a node running its files shows: what `nats-server -t` says (which also checks
/// them), or the same computation here where there is no nats-server binary.
pub fn expected_digest(settings: &Settings, paths: &Paths, node: &Node) -> anyhow::Result<String> {
    if find_binary(settings, paths).is_some() {
        validate(settings, paths, node)
    } else {
        digest(settings, paths, node)
    }
}

/// The `sha256:<hex>` nats-server prints after `-t`.
fn printed_digest(text: &str) -> Option<String> {
    let start = text.find("(sha256:")? + 1;
    let digest = text.get(start..start + 7 + 64)?;
    digest[7..]
        .chars()
        .all(|c| c.is_ascii_hexdigit())
        .then(|| digest.to_owned())
}

/// Start `node` in the background (its own process group, output to its log), from the
/// deployment root.
pub fn start(settings: &Settings, paths: &Paths, node: &Node) -> anyhow::Result<u32> {
    let binary = find_binary(settings, paths).ok_or(ManageError::NoClusterBinary)?;
    let store = paths.node_store_dir(&node.name);
    std::fs::create_dir_all(&store)
        .with_context(|| format!("failed to create {}", store.display()))?;
    let conf = paths.node_conf(&node.name);
    let child = server::spawn_detached(
        &binary,
        &["-c".as_ref(), conf.as_os_str()],
        &paths.root,
        &[],
        &paths.node_log_file(&node.name),
    )?;
    Ok(child.id())
}

/// Stop a verified node process: SIGTERM, then SIGKILL after `timeout`. Returns whether it had
/// to be killed.
pub fn stop(
    settings: &Settings,
    paths: &Paths,
    node: &Node,
    pid: u32,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let conf = paths.node_conf(&node.name);
    let pid_file = paths.node_pid_file(&node.name);
    server::signal_verified_for(settings, &conf, &pid_file, pid, Signal::SIGTERM)?;
    let started = Instant::now();
    let mut killed = false;
    while server::is_alive(pid) {
        if started.elapsed() > timeout && !killed {
            server::signal_verified_for(settings, &conf, &pid_file, pid, Signal::SIGKILL)?;
            killed = true;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    crate::fs::remove_if_exists(&pid_file)?;
    Ok(killed)
}

/// The error for a node process that cannot be verified (never signalled).
pub fn unverified(paths: &Paths, node: &Node, pid: u32, reason: String) -> anyhow::Error {
    ManageError::UnverifiedProcess {
        pid_file: paths.node_pid_file(&node.name),
        pid,
        reason,
    }
    .into()
}

/// What reloading one node did.
#[derive(Debug)]
pub struct NodeSync {
    /// The node's name.
    pub node: String,
    /// `Ok(NotRunning)` when nothing listens on its client port.
    pub result: anyhow::Result<ReloadOutcome>,
}

/// Bring one node to `expected`: through the system account on its own client port (works
/// wherever it runs), else, when the system user is refused, by SIGHUP to a verified local
/// process; confirmed by its `config_digest` either way.
pub fn sync_node(
    settings: &Settings,
    paths: &Paths,
    node: &Node,
    expected: &str,
    force: bool,
) -> anyhow::Result<ReloadOutcome> {
    let log = paths.node_log_file(&node.name);
    let unconfirmed = |reason: String| ManageError::ReloadNotConfirmed {
        reason,
        log: log.display().to_string(),
    };
    let refused = match SysClient::connect_to(settings, paths, &node.client_addr()) {
        Ok(mut sys) => return sys.reload_to(expected, force, unconfirmed),
        Err(SysUnavailable::NotListening) => return Ok(ReloadOutcome::NotRunning),
        Err(SysUnavailable::Refused(reason)) => reason,
    };
    let pid = match process(settings, paths, node) {
        Process::Ours { pid, .. } => pid,
        Process::Unverified { pid, reason } => return Err(unverified(paths, node, pid, reason)),
        Process::Stale { .. } | Process::None => {
            return Err(ManageError::ServerUnreachable {
                reason: format!(
                    "{refused}, and no process of node {} was found here: the change is saved \
                     but not applied to it",
                    node.name
                ),
            }
            .into())
        }
    };
    let monitor = Monitor::at(node.monitor_url())?;
    let send = || {
        server::signal_verified_for(
            settings,
            &paths.node_conf(&node.name),
            &paths.node_pid_file(&node.name),
            pid,
            Signal::SIGHUP,
        )
    };
    server::signal_and_confirm(
        &monitor,
        expected,
        force,
        Via::Signal,
        Some(&refused),
        send,
        unconfirmed,
    )
}

/// Bring every node to its digest (`expected[i]` for node i), all at once.
pub fn sync_all(
    settings: &Settings,
    paths: &Paths,
    cluster: &Cluster,
    expected: &[String],
    force: bool,
) -> Vec<NodeSync> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = cluster
            .nodes
            .iter()
            .zip(expected)
            .map(|(node, digest)| {
                scope.spawn(move || NodeSync {
                    node: node.name.clone(),
                    result: sync_node(settings, paths, node, digest, force),
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(&cluster.nodes)
            .map(|(handle, node)| {
                handle.join().unwrap_or_else(|_| NodeSync {
                    node: node.name.clone(),
                    result: Err(anyhow::anyhow!("reloading {} panicked", node.name)),
                })
            })
            .collect()
    })
}

/// One node as its monitoring API shows it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// `/varz` answers.
    pub up: bool,
    /// `/healthz` answers ok (for a clustered JetStream node: it is current with the meta
    /// leader).
    pub healthy: bool,
    /// `/varz`
    pub varz: Value,
    /// The other nodes it has routes to (by server name).
    pub peers: BTreeSet<String>,
    /// The JetStream meta leader it follows, if any.
    pub meta_leader: Option<String>,
}

/// Ask one node's monitoring API.
pub fn probe(node: &Node) -> Health {
    let Ok(monitor) = Monitor::at(node.monitor_url()) else {
        return Health::default();
    };
    let Ok(varz) = monitor.get("/varz") else {
        return Health::default();
    };
    let peers = monitor
        .get("/routez")
        .ok()
        .and_then(|routez| {
            Some(
                routez
                    .get("routes")?
                    .as_array()?
                    .iter()
                    .filter_map(|r| r.get("remote_name")?.as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .unwrap_or_default();
    let meta_leader = monitor.get("/jsz").ok().and_then(|jsz| {
        jsz.get("meta_cluster")?
            .get("leader")?
            .as_str()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
    });
    Health {
        up: true,
        healthy: monitor.healthy(),
        varz,
        peers,
        meta_leader,
    }
}

/// Every node, probed at once.
pub fn probe_all(cluster: &Cluster) -> Vec<Health> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = cluster
            .nodes
            .iter()
            .map(|node| scope.spawn(move || probe(node)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Why the cluster is not ready yet (`None`: every node is healthy, has a route to every
/// other node, and all follow the same JetStream meta leader).
pub fn not_ready(cluster: &Cluster, health: &[Health]) -> Option<String> {
    let mut reasons = Vec::new();
    for (node, h) in cluster.nodes.iter().zip(health) {
        if !h.up {
            reasons.push(format!(
                "{} does not answer on {}",
                node.name,
                node.monitor_url()
            ));
            continue;
        }
        if !h.healthy {
            reasons.push(format!("{} is not healthy yet (/healthz)", node.name));
        }
        let missing: Vec<&str> = cluster
            .nodes
            .iter()
            .filter(|other| other.name != node.name && !h.peers.contains(&other.name))
            .map(|other| other.name.as_str())
            .collect();
        if !missing.is_empty() {
            reasons.push(format!(
                "{} has no route to {}",
                node.name,
                missing.join(", ")
            ));
        }
    }
    let leaders: BTreeSet<Option<&String>> =
        health.iter().map(|h| h.meta_leader.as_ref()).collect();
    match leaders.iter().next() {
        _ if leaders.len() > 1 => reasons.push("the nodes disagree on the JetStream leader".into()),
        Some(None) => reasons.push("JetStream has no meta leader yet".into()),
        _ => {}
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Wait until the cluster is ready (see [`not_ready`]); the last health on timeout too.
pub fn wait_ready(cluster: &Cluster, timeout: Duration) -> (Vec<Health>, Option<String>) {
    let started = Instant::now();
    loop {
        let health = probe_all(cluster);
        let reason = not_ready(cluster, &health);
        if reason.is_none() || started.elapsed() > timeout {
            return (health, reason);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
