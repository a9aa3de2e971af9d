//! Deployment settings: the `.env` file, overridden by the process environment, and the
//! paths of a deployment root (`config/`, `.credentials/`, `data/`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Default server name (`NATS_SERVER_NAME`).
pub const DEFAULT_SERVER_NAME: &str = "nats-1";
/// Default bind address (`NATS_HOST`): local only.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default client port (`NATS_PORT`).
pub const DEFAULT_PORT: u16 = 4222;
/// Default monitoring port (`NATS_HTTP_PORT`).
pub const DEFAULT_HTTP_PORT: u16 = 8222;
/// Default host in printed URLs (`NATS_URL_HOST`).
pub const DEFAULT_URL_HOST: &str = "localhost";
/// Default cluster (route) port of the first node (`NATS_CLUSTER_PORT`), nats-server's.
pub const DEFAULT_CLUSTER_PORT: u16 = 6222;
/// Default cluster name (`NATS_CLUSTER_NAME`); nodes are named `<cluster>-1`, `<cluster>-2`, ...
pub const DEFAULT_CLUSTER_NAME: &str = "nats";

/// Where each file of a deployment lives.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The deployment root (holds `config/`, `.credentials/`, `.env`).
    pub root: PathBuf,
}

impl Paths {
    /// `config/`
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }
    /// `config/nats.conf`
    pub fn nats_conf(&self) -> PathBuf {
        self.config_dir().join("nats.conf")
    }
    /// `config/auth.conf` (generated)
    pub fn auth_conf(&self) -> PathBuf {
        self.config_dir().join("auth.conf")
    }
    /// `config/cluster.toml`: the nodes of this deployment's nats-server cluster. While it
    /// exists the deployment is a cluster (see `cluster.rs`).
    pub fn cluster_file(&self) -> PathBuf {
        self.config_dir().join("cluster.toml")
    }
    /// `config/nodes/` (generated node configurations)
    pub fn nodes_config_dir(&self) -> PathBuf {
        self.config_dir().join("nodes")
    }
    /// `config/nodes/<node>.conf`
    pub fn node_conf(&self, node: &str) -> PathBuf {
        self.nodes_config_dir().join(format!("{node}.conf"))
    }
    /// `data/nodes/` (per-node stores, pid files and logs)
    pub fn nodes_data_dir(&self) -> PathBuf {
        self.data_dir().join("nodes")
    }
    /// `data/nodes/<node>/`: the node's JetStream store.
    pub fn node_store_dir(&self, node: &str) -> PathBuf {
        self.nodes_data_dir().join(node)
    }
    /// `data/nodes/<node>.pid`
    pub fn node_pid_file(&self, node: &str) -> PathBuf {
        self.nodes_data_dir().join(format!("{node}.pid"))
    }
    /// `data/nodes/<node>.log`
    pub fn node_log_file(&self, node: &str) -> PathBuf {
        self.nodes_data_dir().join(format!("{node}.log"))
    }
    /// `data/migrate/`: what `manage migrate` copied so far, per stream (so a rerun resumes).
    pub fn migrate_dir(&self) -> PathBuf {
        self.data_dir().join("migrate")
    }
    /// `config/tenants/`
    pub fn tenants_dir(&self) -> PathBuf {
        self.config_dir().join("tenants")
    }
    /// `config/tenants/<tenant>.toml`
    pub fn tenant_file(&self, tenant: &str) -> PathBuf {
        self.tenants_dir().join(format!("{tenant}.toml"))
    }
    /// `.credentials/`
    pub fn credentials_dir(&self) -> PathBuf {
        self.root.join(".credentials")
    }
    /// `.credentials/<tenant>.env` for the admin user, `<tenant>_<user>.env` for others.
    ///
    /// A `_` in the tenant name is written twice, so no two (tenant, user) pairs share a file:
    /// tenant `p` with user `q` is `p_q.env`, the admin of tenant `p_q` is `p__q.env`. The
    /// single `_` separates tenant from user, and names never start with `_`, so a file name
    /// reads back to exactly one pair ([`credentials_owner`]). Names without `_` in the tenant
    /// (the usual case) keep the seed's `<tenant>_<user>.env`.
    pub fn credentials_file(&self, tenant: &str, user: &str) -> PathBuf {
        self.credentials_dir()
            .join(format!("{}.env", credentials_stem(tenant, user)))
    }

    /// `.credentials/<tenant>[_<user>].nk`: an NKEY user's seed file, beside its `.env`.
    pub fn seed_file(&self, tenant: &str, user: &str) -> PathBuf {
        self.credentials_dir()
            .join(format!("{}.nk", credentials_stem(tenant, user)))
    }

    /// Where manage wrote the credentials before tenant names were escaped: the same as
    /// [`Paths::credentials_file`] unless the tenant name has a `_`.
    pub fn legacy_credentials_file(&self, tenant: &str, user: &str) -> PathBuf {
        if tenant == user {
            self.credentials_dir().join(format!("{tenant}.env"))
        } else {
            self.credentials_dir().join(format!("{tenant}_{user}.env"))
        }
    }

    /// The record of a change in progress (`data/manage.journal`, 0600: it can hold new
    /// passwords): while it exists, the last mutating command did not finish and the next
    /// one rolls its files back first.
    pub fn journal_file(&self) -> PathBuf {
        self.data_dir().join("manage.journal")
    }
    /// The cached bcrypt hash of the system password (so renders never re-hash).
    pub fn sys_hash_file(&self) -> PathBuf {
        self.credentials_dir().join("sys.bcrypt")
    }
    /// `.env`
    pub fn env_file(&self) -> PathBuf {
        self.root.join(".env")
    }
    /// `data/` (JetStream store, pid file, log)
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    /// The server's pid file, as `pid_file` in `config/nats.conf` names it.
    pub fn pid_file(&self) -> PathBuf {
        self.data_dir().join("natsd.pid")
    }
    /// Where `manage up` sends the server's output.
    pub fn log_file(&self) -> PathBuf {
        self.data_dir().join("natsd.log")
    }
    /// The lock that serialises mutating commands.
    pub fn lock_file(&self) -> PathBuf {
        self.data_dir().join("manage.lock")
    }
    /// A path relative to the root, for messages (`.credentials/myapp.env`).
    pub fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// The file stem of a user's credentials (see [`Paths::credentials_file`]).
pub fn credentials_stem(tenant: &str, user: &str) -> String {
    let escaped = tenant.replace('_', "__");
    if tenant == user {
        escaped
    } else {
        format!("{escaped}_{user}")
    }
}

/// The (tenant, user) a credentials file stem belongs to: the inverse of [`credentials_stem`].
pub fn credentials_owner(stem: &str) -> Option<(String, String)> {
    let mut tenant = String::new();
    let mut chars = stem.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            tenant.push(c);
        } else if chars.peek() == Some(&'_') {
            chars.next();
            tenant.push('_');
        } else {
            let user: String = chars.collect();
            return (!user.is_empty() && !tenant.is_empty()).then_some((tenant, user));
        }
    }
    (!tenant.is_empty()).then(|| (tenant.clone(), tenant))
}

/// How `reload` reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadMode {
    /// SIGHUP to the pid in the pid file.
    Signal,
    /// `docker kill --signal HUP nats` (the container docker-compose.yml names `nats`).
    Compose,
}

/// Settings resolved from `.env` and the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `.env` merged with the process environment (the latter wins), `NATS_*` keys only.
    pub vars: BTreeMap<String, String>,
    /// `NATS_SERVER_NAME`
    pub server_name: String,
    /// `NATS_HOST`
    pub host: String,
    /// `NATS_PORT`
    pub port: u16,
    /// `NATS_HTTP_PORT`
    pub http_port: u16,
    /// `NATS_URL_HOST`
    pub url_host: String,
    /// `NATS_SYS_PASSWORD`, when set.
    pub sys_password: Option<String>,
    /// `NATS_RELOAD`
    pub reload: ReloadMode,
    /// `NATSD_BIN`
    pub natsd_bin: Option<String>,
    /// `NATS_TLS_CA`: CA file `manage test` trusts when the server requires TLS.
    pub tls_ca: Option<String>,
    /// `NATS_TLS_SERVER_NAME`: the name the server's certificate is checked against.
    pub tls_server_name: Option<String>,
    /// `NATS_CLUSTER_PORT`: the route port of the first node of a local cluster.
    pub cluster_port: u16,
    /// `NATS_CLUSTER_NAME`
    pub cluster_name: String,
    /// `NATS_CLUSTER_PASSWORD`: what the nodes' routes authenticate with (generated by
    /// `up --nodes`).
    pub cluster_password: Option<String>,
    /// `NATS_CLUSTER_BIN`: the nats-server binary of the cluster's nodes.
    pub cluster_bin: Option<String>,
}

impl Settings {
    /// Read `.env` under `paths.root` (missing is fine) and apply the process environment.
    pub fn load(paths: &Paths) -> anyhow::Result<Self> {
        Self::load_with(paths, true)
    }

    /// The settings of another deployment than the one manage runs for (`migrate --to`): its
    /// `.env` wins over the process environment, which only fills keys the file lacks (the
    /// environment's `NATS_PORT` is meant for this deployment, not that one).
    pub fn load_other(paths: &Paths) -> anyhow::Result<Self> {
        Self::load_with(paths, false)
    }

    fn load_with(paths: &Paths, environment_wins: bool) -> anyhow::Result<Self> {
        let mut vars = match fs::read_to_string(paths.env_file()) {
            Ok(text) => parse_env(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("failed to read {}", paths.env_file().display()))
            }
        };
        for (key, value) in std::env::vars() {
            if (key.starts_with("NATS_") || key == "NATSD_BIN")
                && (environment_wins || !vars.contains_key(&key))
            {
                vars.insert(key, value);
            }
        }
        let text = |key: &str, default: &str| {
            vars.get(key)
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| default.to_owned())
        };
        let port = |key: &str, default: u16| -> anyhow::Result<u16> {
            match vars.get(key).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .with_context(|| format!("{key}={v} is not a port number")),
            }
        };
        let reload = match text("NATS_RELOAD", "signal").as_str() {
            "signal" => ReloadMode::Signal,
            "compose" => ReloadMode::Compose,
            other => anyhow::bail!("NATS_RELOAD={other}: expected `signal` or `compose`"),
        };
        Ok(Self {
            server_name: text("NATS_SERVER_NAME", DEFAULT_SERVER_NAME),
            host: text("NATS_HOST", DEFAULT_HOST),
            port: port("NATS_PORT", DEFAULT_PORT)?,
            http_port: port("NATS_HTTP_PORT", DEFAULT_HTTP_PORT)?,
            url_host: text("NATS_URL_HOST", DEFAULT_URL_HOST),
            sys_password: vars
                .get("NATS_SYS_PASSWORD")
                .filter(|v| !v.is_empty())
                .cloned(),
            natsd_bin: vars
                .get("NATSD_BIN")
                .filter(|v| !v.is_empty())
                .map(|bin| absolute_command(bin)),
            tls_ca: vars.get("NATS_TLS_CA").filter(|v| !v.is_empty()).cloned(),
            tls_server_name: vars
                .get("NATS_TLS_SERVER_NAME")
                .filter(|v| !v.is_empty())
                .cloned(),
            reload,
            cluster_port: port("NATS_CLUSTER_PORT", DEFAULT_CLUSTER_PORT)?,
            cluster_name: text("NATS_CLUSTER_NAME", DEFAULT_CLUSTER_NAME),
            cluster_password: vars
                .get("NATS_CLUSTER_PASSWORD")
                .filter(|v| !v.is_empty())
                .cloned(),
            cluster_bin: vars
                .get("NATS_CLUSTER_BIN")
                .filter(|v| !v.is_empty())
                .map(|bin| absolute_command(bin)),
            vars,
        })
    }

    /// The variables `config/nats.conf` refers to, as the server sees them: what `manage up`
    /// gives natsd, or with `NATS_RELOAD=compose` what docker-compose.yml's `environment:`
    /// gives the container (it listens on all interfaces and the default ports inside, behind
    /// the ports .env maps). Validation and the expected `config_digest` use the same values.
    pub fn server_env(&self) -> Vec<(String, String)> {
        let (host, port, http_port) = match self.reload {
            ReloadMode::Signal => (self.host.clone(), self.port, self.http_port),
            ReloadMode::Compose => ("0.0.0.0".to_owned(), DEFAULT_PORT, DEFAULT_HTTP_PORT),
        };
        vec![
            ("NATS_SERVER_NAME".into(), self.server_name.clone()),
            ("NATS_HOST".into(), host),
            ("NATS_PORT".into(), port.to_string()),
            ("NATS_HTTP_PORT".into(), http_port.to_string()),
        ]
    }

    /// Base URL of the monitoring API, as seen from this machine.
    pub fn monitor_url(&self) -> String {
        let host = if self.host == "0.0.0.0" || self.host.is_empty() {
            "127.0.0.1"
        } else {
            self.host.as_str()
        };
        format!("http://{host}:{}", self.http_port)
    }

    /// The address clients connect to, as seen from this machine.
    pub fn client_addr(&self) -> String {
        let host = if self.host == "0.0.0.0" {
            "127.0.0.1"
        } else {
            &self.host
        };
        format!("{host}:{}", self.port)
    }
}

/// A relative path names a file from where manage was started (it then works in the
/// deployment root); a bare name is looked up on PATH later.
fn absolute_command(bin: &str) -> String {
    if bin.contains('/') && Path::new(bin).is_relative() {
        std::env::current_dir()
            .map(|cwd| cwd.join(bin).display().to_string())
            .unwrap_or_else(|_| bin.to_owned())
    } else {
        bin.to_owned()
    }
}

/// Parse `KEY=VALUE` lines; `#` comments, `export ` prefixes and quotes are allowed.
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn credentials_names_never_collide() {
        let pairs = [
            ("p", "p"),
            ("p", "q"),
            ("p_q", "p_q"),
            ("p", "q_r"),
            ("p_q", "r"),
            ("p_q_r", "p_q_r"),
            ("p_", "p_"),
            ("p_", "q"),
            ("p__q", "r"),
            ("p", "q__r"),
        ];
        let stems: Vec<String> = pairs.iter().map(|(t, u)| credentials_stem(t, u)).collect();
        for (i, a) in stems.iter().enumerate() {
            for b in &stems[i + 1..] {
                assert_ne!(a, b);
            }
        }
        for ((tenant, user), stem) in pairs.iter().zip(&stems) {
            assert_eq!(
                credentials_owner(stem),
                Some(((*tenant).to_owned(), (*user).to_owned())),
                "{stem}"
            );
        }
        assert_eq!(
            credentials_stem("myapp", "order-service"),
            "myapp_order-service"
        );
        assert_eq!(credentials_stem("myapp", "myapp"), "myapp");
    }

    #[test]
    fn env_parsing() {
        let vars = parse_env("# c\nA=1\nexport B=\"two words\"\nC='x'\n\nbad line\n");
        assert_eq!(vars.get("A").map(String::as_str), Some("1"));
        assert_eq!(vars.get("B").map(String::as_str), Some("two words"));
        assert_eq!(vars.get("C").map(String::as_str), Some("x"));
        assert_eq!(vars.len(), 3);
    }
}
