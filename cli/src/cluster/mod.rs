//! A deployment's nats-server cluster: `config/cluster.toml` describes the nodes (name, host,
//! client, monitoring and route ports, each node's JetStream limits); manage renders one
//! `config/nodes/<node>.conf` per node from it, every one including the same generated
//! `config/auth.conf`. While `config/cluster.toml` exists the deployment is a cluster: every
//! command works on all its nodes (natsd has no cluster protocol; the nodes run nats-server).
//!
//! `./manage up --nodes N` writes the file for N local nodes: node i (from 0) takes
//! `NATS_PORT+i`, `NATS_HTTP_PORT+i` and `NATS_CLUSTER_PORT+i`. For nodes on other hosts the
//! file is edited by hand (each node's `host` is where manage, clients and the other nodes
//! reach it).
//!
//! # Layout
//! - this file: the description, read strictly, and the node configurations rendered from it.
//! - `nodes`: the nodes at run time: binary, processes, reload and confirmation, health.

pub mod nodes;

use std::fmt::Write as _;
use std::net::{IpAddr, TcpListener};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::error::ManageError;
use crate::names::Size;
use crate::render::{auth_conf::quote, fill};
use crate::settings::{Paths, Settings};
use crate::tenant::model::{from_toml, line_col};

/// `templates/node.conf`: one node's configuration.
pub const NODE_CONF_TEMPLATE: &str = include_str!("../../../templates/node.conf");

/// The user routes authenticate as (`cluster.authorization`); the password is
/// `NATS_CLUSTER_PASSWORD`.
pub const ROUTE_USER: &str = "route";

/// The most nodes `up --nodes` creates; a larger cluster is described by hand.
pub const MAX_LOCAL_NODES: usize = 32;

/// Default JetStream limits of each node, as `templates/nats.conf` has them for natsd.
const DEFAULT_NODE_MEMORY: &str = "256MB";
const DEFAULT_NODE_STORAGE: &str = "10GB";

/// One node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its `server_name` (unique in the cluster).
    pub name: String,
    /// Where manage, clients and the other nodes reach it.
    pub host: String,
    /// What it binds (default: `host`).
    pub listen: String,
    /// Client port.
    pub port: u16,
    /// Monitoring port.
    pub http_port: u16,
    /// Route port.
    pub cluster_port: u16,
}

impl Node {
    /// The host to connect to from this machine (an unspecified bind address is reached on
    /// loopback).
    fn reach_host(&self) -> &str {
        if self.host == "0.0.0.0" || self.host.is_empty() {
            "127.0.0.1"
        } else {
            &self.host
        }
    }

    /// `host:port` of the client listener.
    pub fn client_addr(&self) -> String {
        join_host_port(self.reach_host(), self.port)
    }

    /// `host:port` of the route listener.
    pub fn cluster_addr(&self) -> String {
        join_host_port(self.reach_host(), self.cluster_port)
    }

    /// Base URL of the monitoring API.
    pub fn monitor_url(&self) -> String {
        format!(
            "http://{}",
            join_host_port(self.reach_host(), self.http_port)
        )
    }

    /// The client URL users get: loopback addresses are shown as `NATS_URL_HOST` (as for
    /// natsd), anything else as it is.
    pub fn client_url(&self, settings: &Settings) -> String {
        let host = match self.reach_host().parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => settings.url_host.as_str(),
            _ => self.reach_host(),
        };
        format!("nats://{}", join_host_port(host, self.port))
    }

    /// Whether the node's address belongs to this machine (it can be bound here), so manage
    /// starts and stops it here.
    pub fn is_local(&self) -> bool {
        let host = if self.listen == "0.0.0.0" {
            self.reach_host()
        } else {
            &self.listen
        };
        TcpListener::bind((host, 0)).is_ok()
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The cluster of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster's name (`cluster.name` of every node).
    pub name: String,
    /// `max_memory_store` of each node.
    pub max_memory_store: Size,
    /// `max_file_store` of each node.
    pub max_file_store: Size,
    /// The nodes, in the file's order.
    pub nodes: Vec<Node>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Spanned<String>,
    max_memory_store: Spanned<String>,
    max_file_store: Spanned<String>,
    #[serde(rename = "node")]
    nodes: Vec<Spanned<RawNode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    host: Spanned<String>,
    listen: Option<Spanned<String>>,
    port: Spanned<u16>,
    http_port: Spanned<u16>,
    cluster_port: Spanned<u16>,
}

/// Node and cluster names: what nats-server accepts as a server name and a route name, and
/// safe in file names (`config/nodes/<name>.conf`).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
}

impl Cluster {
    /// The deployment's cluster; `None` when it has no `config/cluster.toml` (natsd).
    pub fn load(paths: &Paths) -> anyhow::Result<Option<Self>> {
        let path = paths.cluster_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("failed to read {}", path.display()))
                )
            }
        };
        Ok(Some(Self::parse(&path, &text)?))
    }

    /// Parse and validate the text of `config/cluster.toml`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManageError> {
        let malformed = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            ManageError::MalformedCluster {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let raw: RawCluster = from_toml(text, malformed)?;
        if !valid_name(raw.name.get_ref()) {
            return Err(malformed(
                raw.name.span().start,
                format!(
                    "invalid cluster name {:?}: use letters, digits, `-` and `_`",
                    raw.name.get_ref()
                ),
            ));
        }
        let size = |field: &Spanned<String>, key: &str| {
            Size::parse(field.get_ref())
                .map_err(|e| malformed(field.span().start, format!("{key}: {e}")))
        };
        if raw.nodes.is_empty() {
            return Err(malformed(0, "the cluster has no [[node]]".into()));
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(raw.nodes.len());
        let mut taken: Vec<(String, u16, &'static str, String)> = Vec::new();
        for raw_node in &raw.nodes {
            let at = raw_node.span().start;
            let raw_node = raw_node.get_ref();
            let name = raw_node.name.get_ref().clone();
            if !valid_name(&name) {
                return Err(malformed(
                    raw_node.name.span().start,
                    format!("invalid node name {name:?}: use letters, digits, `-` and `_`"),
                ));
            }
            if nodes.iter().any(|n| n.name == name) {
                return Err(malformed(at, format!("two nodes are named `{name}`")));
            }
            let host = raw_node.host.get_ref().clone();
            if !valid_host(&host) {
                return Err(malformed(
                    raw_node.host.span().start,
                    format!("invalid host {host:?} of node `{name}`"),
                ));
            }
            let listen = match &raw_node.listen {
                Some(listen) if !valid_host(listen.get_ref()) => {
                    return Err(malformed(
                        listen.span().start,
                        format!("invalid listen address {:?}", listen.get_ref()),
                    ))
                }
                Some(listen) => listen.get_ref().clone(),
                None => host.clone(),
            };
            for (port, key) in [
                (&raw_node.port, "port"),
                (&raw_node.http_port, "http_port"),
                (&raw_node.cluster_port, "cluster_port"),
            ] {
                let value = *port.get_ref();
                if value == 0 {
                    return Err(malformed(
                        port.span().start,
                        format!("{key} of node `{name}` must not be 0"),
                    ));
                }
                if let Some((_, _, other_key, other)) =
                    taken.iter().find(|(h, p, _, _)| *h == host && *p == value)
                {
                    return Err(malformed(
                        port.span().start,
                        format!(
                            "{key} {value} of node `{name}` is also {other_key} of node `{other}` on {host}"
                        ),
                    ));
                }
                taken.push((host.clone(), value, key, name.clone()));
            }
            nodes.push(Node {
                name,
                host,
                listen,
                port: *raw_node.port.get_ref(),
                http_port: *raw_node.http_port.get_ref(),
                cluster_port: *raw_node.cluster_port.get_ref(),
            });
        }
        Ok(Self {
            name: raw.name.get_ref().clone(),
            max_memory_store: size(&raw.max_memory_store, "max_memory_store")?,
            max_file_store: size(&raw.max_file_store, "max_file_store")?,
            nodes,
        })
    }

    /// `count` nodes on this machine: node i (from 0) on `NATS_PORT+i`, `NATS_HTTP_PORT+i`,
    /// `NATS_CLUSTER_PORT+i`, named `<NATS_CLUSTER_NAME>-<i+1>`, with natsd's JetStream limits
    /// (`config/nats.conf`) on each node when they can be read.
    pub fn local(
        settings: &Settings,
        count: usize,
        limits: (Option<u64>, Option<u64>),
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=MAX_LOCAL_NODES).contains(&count),
            "--nodes must be between 1 and {MAX_LOCAL_NODES}"
        );
        let port = |base: u16, i: usize, key: &str| -> anyhow::Result<u16> {
            u16::try_from(usize::from(base) + i)
                .map_err(|_| anyhow::anyhow!("{key}={base} leaves no port for node {i}"))
        };
        let (host, listen) = if settings.host == "0.0.0.0" {
            ("127.0.0.1".to_owned(), "0.0.0.0".to_owned())
        } else {
            (settings.host.clone(), settings.host.clone())
        };
        let mut nodes = Vec::with_capacity(count);
        for i in 0..count {
            nodes.push(Node {
                name: format!("{}-{}", settings.cluster_name, i + 1),
                host: host.clone(),
                listen: listen.clone(),
                port: port(settings.port, i, "NATS_PORT")?,
                http_port: port(settings.http_port, i, "NATS_HTTP_PORT")?,
                cluster_port: port(settings.cluster_port, i, "NATS_CLUSTER_PORT")?,
            });
        }
        let size = |bytes: Option<u64>, default: &str| {
            bytes
                .map(Size::from_bytes)
                .map_or_else(|| Size::parse(default), Ok)
                .map_err(anyhow::Error::msg)
        };
        let cluster = Self {
            name: settings.cluster_name.clone(),
            max_memory_store: size(limits.0, DEFAULT_NODE_MEMORY)?,
            max_file_store: size(limits.1, DEFAULT_NODE_STORAGE)?,
            nodes,
        };
        // The same checks a hand-written file gets.
        Self::parse(Path::new("config/cluster.toml"), &cluster.to_toml())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(cluster)
    }

    /// The text of `config/cluster.toml`.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# The nats-server cluster of this deployment. manage generates config/nodes/<name>.conf\n\
             # for every node from this file (and NATS_CLUSTER_PASSWORD in .env); every node includes\n\
             # the same config/auth.conf. To put nodes on other hosts, set each node's host (where\n\
             # manage, clients and the other nodes reach it; `listen` when it binds another address),\n\
             # then run ./manage reload, and ./manage up --node <name> on each host.\n\n",
        );
        let _ = writeln!(out, "name = {}", toml_string(&self.name));
        let _ = writeln!(
            out,
            "# JetStream limits of each node. A tenant's limits count every replica: an R3 stream of\n\
             # 1GB takes 3GB of its tenant's storage (nats-server's account limits in a cluster)."
        );
        let _ = writeln!(
            out,
            "max_memory_store = {}",
            toml_string(&self.max_memory_store.to_string())
        );
        let _ = writeln!(
            out,
            "max_file_store = {}",
            toml_string(&self.max_file_store.to_string())
        );
        for node in &self.nodes {
            out.push_str("\n[[node]]\n");
            let _ = writeln!(out, "name = {}", toml_string(&node.name));
            let _ = writeln!(out, "host = {}", toml_string(&node.host));
            if node.listen != node.host {
                let _ = writeln!(out, "listen = {}", toml_string(&node.listen));
            }
            let _ = writeln!(out, "port = {}", node.port);
            let _ = writeln!(out, "http_port = {}", node.http_port);
            let _ = writeln!(out, "cluster_port = {}", node.cluster_port);
        }
        out
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&Node, ManageError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| ManageError::NodeNotFound {
                node: name.to_owned(),
                known: self.nodes.iter().map(|n| n.name.clone()).collect(),
            })
    }

    /// Every node's client URL, in order: what clients get as their server list.
    pub fn client_urls(&self, settings: &Settings) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_url(settings)).collect()
    }

    /// The cluster's JetStream capacity: the sum of every node's limits (memory, storage).
    /// A tenant's account limits count every replica of its streams, as nats-server counts
    /// them in a cluster, so the tenants' limits together must fit in this.
    pub fn capacity(&self) -> (u64, u64) {
        let n = self.nodes.len() as u64;
        (
            self.max_memory_store.bytes().saturating_mul(n),
            self.max_file_store.bytes().saturating_mul(n),
        )
    }

    /// Files in `config/nodes/` of nodes this description does not have (left by a node
    /// removed from it).
    pub fn stale_node_confs(&self, paths: &Paths) -> Vec<std::path::PathBuf> {
        let Ok(entries) = std::fs::read_dir(paths.nodes_config_dir()) else {
            return Vec::new();
        };
        let mut stale: Vec<std::path::PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|path| {
                let described = path
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .is_some_and(|stem| self.nodes.iter().any(|n| n.name == stem));
                path.extension().is_some_and(|e| e == "conf") && !described
            })
            .collect();
        stale.sort();
        stale
    }

    /// Every node's configuration file, what it must hold, and whether it holds that now.
    pub fn node_confs(
        &self,
        paths: &Paths,
        route_password: &str,
    ) -> Vec<(std::path::PathBuf, String, bool)> {
        self.nodes
            .iter()
            .map(|node| {
                let path = paths.node_conf(&node.name);
                let text = self.render_node(node, paths, route_password);
                let current = std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str());
                (path, text, current)
            })
            .collect()
    }

    /// `config/nodes/<node>.conf` for `node`.
    pub fn render_node(&self, node: &Node, paths: &Paths, route_password: &str) -> String {
        let relative = |path: std::path::PathBuf| format!("./{}", paths.display(&path));
        let mut routes = String::new();
        for peer in self.nodes.iter().filter(|n| n.name != node.name) {
            let url = format!(
                "nats-route://{ROUTE_USER}:{route_password}@{}",
                join_host_port(peer.reach_host(), peer.cluster_port)
            );
            let _ = writeln!(routes, "        {}", quote(&url));
        }
        fill(
            NODE_CONF_TEMPLATE,
            &[
                ("name_q", &quote(&node.name)),
                ("name", &node.name),
                ("cluster_q", &quote(&self.name)),
                ("cluster", &self.name),
                ("listen_q", &quote(&node.listen)),
                ("port", &node.port.to_string()),
                ("http_port", &node.http_port.to_string()),
                ("cluster_port", &node.cluster_port.to_string()),
                (
                    "pid_file_q",
                    &quote(&relative(paths.node_pid_file(&node.name))),
                ),
                (
                    "store_dir_q",
                    &quote(&relative(paths.node_store_dir(&node.name))),
                ),
                ("max_memory_store", &self.max_memory_store.to_string()),
                ("max_file_store", &self.max_file_store.to_string()),
                ("route_user_q", &quote(ROUTE_USER)),
                ("route_password_q", &quote(route_password)),
                ("routes", &routes),
            ],
        )
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml_edit::Value::from(text).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn settings() -> Settings {
        let paths = Paths {
            root: PathBuf::from("/nonexistent-manage-test"),
        };
        let mut s = Settings::load(&paths).unwrap();
        s.port = 4222;
        s.http_port = 8222;
        s.cluster_port = 6222;
        s.host = "127.0.0.1".into();
        s.cluster_name = "nats".into();
        s
    }

    #[test]
    fn local_nodes_take_consecutive_ports_and_round_trip() {
        let cluster = Cluster::local(&settings(), 3, (None, None)).unwrap();
        let names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["nats-1", "nats-2", "nats-3"]);
        assert_eq!(cluster.nodes[2].port, 4224);
        assert_eq!(cluster.nodes[2].http_port, 8224);
        assert_eq!(cluster.nodes[2].cluster_port, 6224);
        let text = cluster.to_toml();
        let back = Cluster::parse(Path::new("cluster.toml"), &text).unwrap();
        assert_eq!(back, cluster);
        assert_eq!(cluster.capacity().1, 3 * 10 * (1 << 30));
    }

    #[test]
    fn strict_and_located_errors() {
        let good = Cluster::local(&settings(), 2, (None, None))
            .unwrap()
            .to_toml();
        let typo = good.replace("http_port", "htp_port");
        let err = Cluster::parse(Path::new("c.toml"), &typo).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `htp_port`"),
            "{err}"
        );
        assert_eq!(err.code(), "malformed_cluster_file");
        let clash = good.replace("port = 4223", "port = 8222");
        let err = Cluster::parse(Path::new("c.toml"), &clash).unwrap_err();
        assert!(err.to_string().contains("also http_port"), "{err}");
        let dup = good.replace("\"nats-2\"", "\"nats-1\"");
        assert!(Cluster::parse(Path::new("c.toml"), &dup).is_err());
        let bad_name = good.replace("\"nats-2\"", "\"nats 2\"");
        assert!(Cluster::parse(Path::new("c.toml"), &bad_name).is_err());
    }

    #[test]
    fn node_conf_routes_to_every_other_node() {
        let cluster = Cluster::local(&settings(), 3, (None, None)).unwrap();
        let paths = Paths {
            root: PathBuf::from("/srv/nats"),
        };
        let conf = cluster.render_node(&cluster.nodes[0], &paths, "pw");
        assert!(conf.contains("server_name: \"nats-1\""), "{conf}");
        assert!(
            conf.contains("nats-route://route:pw@127.0.0.1:6223"),
            "{conf}"
        );
        assert!(
            conf.contains("nats-route://route:pw@127.0.0.1:6224"),
            "{conf}"
        );
        assert!(
            !conf.contains("127.0.0.1:6222\""),
            "no route to itself: {conf}"
        );
        assert!(
            conf.contains("store_dir: \"./data/nodes/nats-1\""),
            "{conf}"
        );
        assert!(conf.contains("include ../auth.conf"), "{conf}");
    }
}
