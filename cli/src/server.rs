//! Talking to this deployment's server: its binary, its configuration (read with the server's
//! own value rules, the `natsd-conf` crate), its process (verified before it is ever signalled), the system account over NATS,
//! and the HTTP monitoring API.
//!
//! A change reaches the running server through the system account first
//! (`$SYS.REQ.SERVER.<id>.RELOAD`, answered once the reload is done, by natsd and nats-server
//! alike, wherever the server runs), and only when that cannot connect through a signal to a
//! process verified as this deployment's server. Either way it is confirmed by the server's
//! `config_digest`: the digest nats-server computes for the files manage wrote.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::Value;

use crate::client::{Client, ClientError, TlsSettings};
use crate::error::ManageError;
use crate::names::SYSTEM_USER;
use crate::settings::{Paths, ReloadMode, Settings};

/// How long a reload may take to show the new digest.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one monitoring request or system-account request; the server is local, so
/// anything slower is a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connecting as the system user may take (bcrypt on the server's side included).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often to poll while waiting on the server.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Start `binary` with `args` from `dir` in the background, output appended to `log`. The
/// server keeps running after manage exits: its own process group keeps a Ctrl-C in this
/// terminal from reaching it.
pub fn spawn_detached(
    binary: &Path,
    args: &[&std::ffi::OsStr],
    dir: &Path,
    env: &[(String, String)],
    log: &Path,
) -> anyhow::Result<std::process::Child> {
    use std::os::unix::process::CommandExt as _;
    crate::fs::ensure_parent(log)?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("failed to open {}", log.display()))?;
    let err = out.try_clone().context("failed to share the log file")?;
    Command::new(binary)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("failed to start {}", binary.display()))
}

/// The server binary: `NATSD_BIN`, else `natsd` next to this executable, else `natsd` on PATH.
pub fn find_binary(settings: &Settings) -> Option<PathBuf> {
    if let Some(bin) = &settings.natsd_bin {
        return if bin.contains('/') {
            Some(PathBuf::from(bin))
        } else {
            search_path(bin)
        };
    }
    let beside = std::env::current_exe().ok()?.parent()?.join("natsd");
    if beside.is_file() {
        return Some(beside);
    }
    search_path("natsd")
}

fn search_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `config/nats.conf` as the server reads its values (the shared `natsd-conf` rules).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed tree: includes merged, variables substituted, sizes read.
    pub tree: natsd_conf::Map,
    /// The `config_digest` a server that loaded these files shows.
    pub digest: String,
}

/// `config/nats.conf` (with what it includes) read by the server's own value rules, with the
/// environment the server gets from manage: includes, variables and units as the server reads
/// them. Whether the server accepts every option is `validate_with_binary`'s question (its
/// `-t`); here only the syntax must hold.
pub fn load_config(settings: &Settings, paths: &Paths) -> Result<LoadedConfig, ManageError> {
    let env = settings.server_env();
    let lookup = |name: &str| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .or_else(|| std::env::var(name).ok())
    };
    let tree = natsd_conf::read_file(&paths.nats_conf(), &lookup).map_err(invalid_config)?;
    let digest = natsd_conf::digest(&tree);
    Ok(LoadedConfig { tree, digest })
}

fn invalid_config(output: String) -> ManageError {
    ManageError::InvalidConfig {
        checker: "the nats.conf parser".into(),
        output,
    }
}

/// The server-wide JetStream limits (`jetstream { max_memory_store, max_file_store }` and
/// their aliases, as nats-server names them); `None` where the server sizes a limit from the
/// machine (not set, or not positive) or JetStream is off. Unquoted values are nats.conf
/// sizes (`1G` = 10^9); quoted ones nats-server's binary form (`"1G"` = 2^30).
pub fn jetstream_limits(tree: &natsd_conf::Map) -> Result<(Option<u64>, Option<u64>), ManageError> {
    use natsd_conf::Value;
    let key_is = |entry: &&natsd_conf::Entry, names: &[&str]| {
        names.iter().any(|n| entry.key.eq_ignore_ascii_case(n))
    };
    let Some(js) = tree
        .entries
        .iter()
        .rev()
        .find(|e| key_is(e, &["jetstream"]))
    else {
        return Ok((None, None));
    };
    let block = match &js.value.value {
        Value::Map(block) => block,
        _ => return Ok((None, None)),
    };
    let enabled = block
        .entries
        .iter()
        .rev()
        .find(|e| key_is(e, natsd_conf::keys::JS_ENABLED))
        .is_none_or(|e| e.value.value != Value::Bool(false));
    if !enabled {
        return Ok((None, None));
    }
    let limit = |names: &[&str], name: &str| -> Result<Option<u64>, ManageError> {
        let Some(entry) = block.entries.iter().rev().find(|e| key_is(e, names)) else {
            return Ok(None);
        };
        let bytes = match &entry.value.value {
            Value::Int(n) => *n,
            Value::Str(s) => natsd_conf::size::parse_storage_string(s)
                .map_err(|why| invalid_config(format!("{}: {name} {why}", entry.key_span)))?,
            _ => {
                return Err(invalid_config(format!(
                    "{}: {name} must be int64 or string",
                    entry.key_span
                )))
            }
        };
        Ok(u64::try_from(bytes).ok().filter(|b| *b > 0))
    };
    Ok((
        limit(natsd_conf::keys::JS_MAX_MEMORY_STORE, "max_mem_store")?,
        limit(natsd_conf::keys::JS_MAX_FILE_STORE, "max_file_store")?,
    ))
}

/// Outcome of [`validate_with_binary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// The server binary accepted the configuration.
    Valid,
    /// No server binary to validate with.
    Skipped,
}

/// Validate `config/nats.conf` (and what it includes) with the server binary that runs it
/// (`<server> -t -c <file>`, with the deployment's environment): the real nats-server when
/// `NATSD_BIN` names it.
pub fn validate_with_binary(settings: &Settings, paths: &Paths) -> anyhow::Result<Validation> {
    let Some(binary) = find_binary(settings) else {
        return Ok(Validation::Skipped);
    };
    let output = Command::new(&binary)
        .arg("-t")
        .arg("-c")
        .arg(paths.nats_conf())
        .current_dir(&paths.root)
        .envs(settings.server_env())
        .output()
        .with_context(|| format!("failed to run {} -t", binary.display()))?;
    if output.status.success() {
        Ok(Validation::Valid)
    } else {
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        Err(ManageError::InvalidConfig {
            checker: format!("{} -t", binary.display()),
            output: text.trim().to_owned(),
        }
        .into())
    }
}

// ---------------------------------------------------------------------------------------------
// The server process: found and verified through /proc, signalled only when verified.

/// What the pid file (or, without one, a look through /proc) says about the server process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Process {
    /// No pid file and no process of this deployment's server.
    None,
    /// A live process verified as this deployment's server: a `natsd` or `nats-server`
    /// executable started with this deployment's `config/nats.conf`.
    Ours {
        /// Its pid.
        pid: u32,
        /// Whether the pid file names it (else it was found through /proc).
        from_pid_file: bool,
    },
    /// The pid file names a process that is gone or is something else: it is ignored.
    Stale {
        /// The pid in the file.
        pid: u32,
        /// Why it is not this deployment's server.
        reason: String,
    },
    /// The pid file names a live process whose executable or configuration cannot be read:
    /// it is never signalled, and nothing is started beside it.
    Unverified {
        /// The pid in the file.
        pid: u32,
        /// What could not be read.
        reason: String,
    },
}

/// What one pid is.
enum Verdict {
    Ours,
    NotOurs(String),
    Unknown(String),
}

/// Send `signal` to `pid`.
pub fn send_signal(pid: u32, signal: Signal) -> nix::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| nix::errno::Errno::EINVAL)?;
    nix::sys::signal::kill(Pid::from_raw(pid), signal)
}

/// Whether `pid` is a live process (a zombie counts as gone; one of another user counts).
pub fn is_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(Pid::from_raw(raw), None) {
        Ok(()) => !is_zombie(pid),
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The executables a server of this deployment runs as.
fn server_names(settings: &Settings) -> Vec<String> {
    let mut names = vec!["natsd".to_owned(), "nats-server".to_owned()];
    let configured = [
        find_binary(settings),
        settings.cluster_bin.as_deref().map(PathBuf::from),
    ];
    for binary in configured.into_iter().flatten() {
        if let Some(name) = binary.file_name().map(|n| n.to_string_lossy().into_owned()) {
            names.push(name);
        }
    }
    names
}

/// The `-c` / `--config` argument of a command line.
fn config_argument(args: &[String]) -> Option<&str> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        for flag in ["-c", "--c", "-config", "--config"] {
            if arg == flag {
                return iter.next().map(String::as_str);
            }
            if let Some(value) = arg.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
                return Some(value);
            }
        }
    }
    None
}

/// Verify that `pid` runs a server executable with this deployment's `config/nats.conf`.
fn verify(pid: u32, names: &[String], config: &Path) -> Verdict {
    if !is_alive(pid) {
        return Verdict::NotOurs(format!("no process {pid} is running"));
    }
    let exe = match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => exe,
        Err(e) => return Verdict::Unknown(format!("cannot read /proc/{pid}/exe: {e}")),
    };
    // A binary rebuilt while it runs shows as "<path> (deleted)".
    let exe_text = exe.to_string_lossy();
    let exe_name = Path::new(exe_text.trim_end_matches(" (deleted)"))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !names.contains(&exe_name) {
        return Verdict::NotOurs(format!("pid {pid} is {exe_text}, not a NATS server"));
    }
    let cmdline = match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(bytes) => bytes,
        Err(e) => return Verdict::Unknown(format!("cannot read /proc/{pid}/cmdline: {e}")),
    };
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let Some(arg) = config_argument(&args) else {
        return Verdict::NotOurs(format!("pid {pid} runs without a configuration file"));
    };
    let arg = Path::new(arg);
    let path = if arg.is_absolute() {
        arg.to_path_buf()
    } else {
        match std::fs::read_link(format!("/proc/{pid}/cwd")) {
            Ok(cwd) => cwd.join(arg),
            Err(e) => return Verdict::Unknown(format!("cannot read /proc/{pid}/cwd: {e}")),
        }
    };
    match (path.canonicalize(), config.canonicalize()) {
        (Ok(theirs), Ok(ours)) if theirs == ours => Verdict::Ours,
        (Ok(theirs), _) => Verdict::NotOurs(format!(
            "pid {pid} runs with {}, not this deployment's {}",
            theirs.display(),
            config.display()
        )),
        (Err(e), _) => Verdict::NotOurs(format!(
            "pid {pid} runs with {}, which does not exist here ({e})",
            path.display()
        )),
    }
}

/// A process of this deployment's server found through /proc (when the pid file is gone).
fn scan_proc(names: &[String], config: &Path) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .find(|&pid| matches!(verify(pid, names, config), Verdict::Ours))
}

/// The server process of this deployment, verified.
pub fn local_process(settings: &Settings, paths: &Paths) -> Process {
    local_process_for(settings, &paths.nats_conf(), &paths.pid_file())
}

/// The verified process of a server started with `config`, by `pid_file` or else through
/// /proc (a cluster node: its `config/nodes/<node>.conf` and `data/nodes/<node>.pid`).
pub fn local_process_for(settings: &Settings, config: &Path, pid_file: &Path) -> Process {
    let names = server_names(settings);
    let config = config.to_path_buf();
    let found = |stale: Process| match scan_proc(&names, &config) {
        Some(pid) => Process::Ours {
            pid,
            from_pid_file: false,
        },
        None => stale,
    };
    let text = match std::fs::read_to_string(pid_file) {
        Ok(text) => text,
        Err(_) => return found(Process::None),
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return found(Process::Stale {
            pid: 0,
            reason: format!("{:?} is not a process id", text.trim()),
        });
    };
    match verify(pid, &names, &config) {
        Verdict::Ours => Process::Ours {
            pid,
            from_pid_file: true,
        },
        Verdict::NotOurs(reason) => found(Process::Stale { pid, reason }),
        Verdict::Unknown(reason) => Process::Unverified { pid, reason },
    }
}

/// Signal `pid` only if it is still this deployment's server (pids are reused).
pub fn signal_verified(
    settings: &Settings,
    paths: &Paths,
    pid: u32,
    signal: Signal,
) -> anyhow::Result<()> {
    signal_verified_for(settings, &paths.nats_conf(), &paths.pid_file(), pid, signal)
}

/// Signal `pid` only if it is still a server started with `config` (a node's, or natsd's).
pub fn signal_verified_for(
    settings: &Settings,
    config: &Path,
    pid_file: &Path,
    pid: u32,
    signal: Signal,
) -> anyhow::Result<()> {
    match verify(pid, &server_names(settings), config) {
        Verdict::Ours => send_signal(pid, signal)
            .with_context(|| format!("failed to send {signal} to the server (pid {pid})")),
        Verdict::NotOurs(reason) | Verdict::Unknown(reason) => {
            Err(ManageError::UnverifiedProcess {
                pid_file: pid_file.to_path_buf(),
                pid,
                reason,
            }
            .into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The system account over NATS.

/// A connection as the system user (`sys`, `NATS_SYS_PASSWORD`).
pub struct SysClient {
    client: Client,
    server_id: String,
}

/// Why [`SysClient::connect`] did not connect.
#[derive(Debug)]
pub enum SysUnavailable {
    /// Nothing accepts connections on the client address.
    NotListening,
    /// Something is there but did not let the system user in, or did not speak NATS.
    Refused(String),
}

impl SysClient {
    /// Connect to the client address of `settings`.
    pub fn connect(settings: &Settings, paths: &Paths) -> Result<Self, SysUnavailable> {
        Self::connect_to(settings, paths, &settings.client_addr())
    }

    /// Connect to the server at `addr` (`host:port`; a node of the cluster).
    pub fn connect_to(
        settings: &Settings,
        paths: &Paths,
        addr: &str,
    ) -> Result<Self, SysUnavailable> {
        let Some(password) = settings.sys_password.as_deref() else {
            return Err(SysUnavailable::Refused(
                "NATS_SYS_PASSWORD is not set".into(),
            ));
        };
        let tls = TlsSettings {
            ca_file: settings.tls_ca.as_ref().map(|p| paths.root.join(p)),
            server_name: settings.tls_server_name.clone(),
        };
        match Client::connect_named(
            addr,
            crate::client::Login::Password {
                user: SYSTEM_USER,
                password,
            },
            CONNECT_TIMEOUT,
            &tls,
            "manage",
        ) {
            Ok(client) => {
                let server_id = client.info["server_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let mut sys = Self { client, server_id };
                sys.confirm_system_account(addr)?;
                Ok(sys)
            }
            Err(ClientError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::AddrNotAvailable
                        | std::io::ErrorKind::HostUnreachable
                        | std::io::ErrorKind::NetworkUnreachable
                ) =>
            {
                Err(SysUnavailable::NotListening)
            }
            Err(ClientError::Authorization) => Err(SysUnavailable::Refused(format!(
                "the server on {addr} does not accept the system user `{SYSTEM_USER}` with \
                 NATS_SYS_PASSWORD from .env"
            ))),
            Err(e) => Err(SysUnavailable::Refused(format!("{addr}: {e}"))),
        }
    }

    /// A server without authentication lets the system user in too, into its global account,
    /// where no one answers the system requests: that server is not this deployment's, and
    /// must not be taken for it (`up` would report it as running, a reload as unconfirmed).
    fn confirm_system_account(&mut self, addr: &str) -> Result<(), SysUnavailable> {
        let subject = format!("$SYS.REQ.SERVER.{}.HEALTHZ", self.server_id);
        match self.client.request(&subject, b"", REQUEST_TIMEOUT) {
            Ok(reply) if !reply.is_no_responders() => Ok(()),
            Ok(_) => Err(SysUnavailable::Refused(format!(
                "the server on {addr} is not this deployment's: it lets the system user in \
                 without this deployment's password and has no system account (another server \
                 on NATS_PORT? stop it or change NATS_PORT in .env)"
            ))),
            Err(e) => Err(SysUnavailable::Refused(format!(
                "the server on {addr} does not answer {subject}: {e}"
            ))),
        }
    }

    fn request(&mut self, endpoint: &str, timeout: Duration) -> anyhow::Result<Value> {
        let subject = format!("$SYS.REQ.SERVER.{}.{endpoint}", self.server_id);
        let reply = self
            .client
            .request(&subject, b"", timeout)
            .with_context(|| format!("no answer to {subject}"))?;
        serde_json::from_slice(&reply.payload).with_context(|| format!("{subject}: not JSON"))
    }

    /// The server's `/varz`, over NATS.
    pub fn varz(&mut self) -> anyhow::Result<Value> {
        let reply = self.request("VARZ", REQUEST_TIMEOUT)?;
        Ok(reply["data"].clone())
    }

    /// Reload unless the server already runs `expected` (or `force`), then confirm that it
    /// shows `expected`. `unconfirmed` words the error when it shows another digest.
    pub fn reload_to(
        &mut self,
        expected: &str,
        force: bool,
        unconfirmed: impl FnOnce(String) -> ManageError,
    ) -> anyhow::Result<ReloadOutcome> {
        let (digest, _) = loaded(&self.varz()?);
        if digest == expected && !force {
            return Ok(ReloadOutcome::InSync { digest });
        }
        let started = Instant::now();
        self.reload()?
            .map_err(|reason| ManageError::ReloadFailed { reason })?;
        let (digest, load_time) = loaded(&self.varz()?);
        if digest != expected {
            return Err(unconfirmed(format!(
                "it runs configuration {digest}, but the files here are {expected} (is it \
                 started with another environment or from another directory?)"
            ))
            .into());
        }
        Ok(ReloadOutcome::Confirmed {
            digest,
            load_time,
            took: started.elapsed(),
            via: Via::SystemAccount,
        })
    }

    /// Ask the server to reload; `Err` carries its reason when it refused.
    pub fn reload(&mut self) -> anyhow::Result<Result<(), String>> {
        let reply = self.request("RELOAD", RELOAD_TIMEOUT)?;
        Ok(match reply["error"]["description"].as_str() {
            Some(reason) => Err(reason.trim_end().to_owned()),
            None => Ok(()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP monitoring.

/// A client for the monitoring API.
#[derive(Debug)]
pub struct Monitor {
    client: reqwest::blocking::Client,
    base: String,
}

impl Monitor {
    /// Talk to the monitoring port from `settings`.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        Self::at(settings.monitor_url())
    }

    /// Talk to the monitoring API at `base` (`http://host:port`).
    pub fn at(base: String) -> anyhow::Result<Self> {
        let client = reqwest::blocking::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .context("failed to create an HTTP client")?;
        Ok(Self { client, base })
    }

    /// The base URL (`http://127.0.0.1:8222`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path` and decode JSON; errors for unreachable servers and non-200 answers.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.get_as(path)
    }

    /// GET `path` and decode the JSON into `T`, skipping what `T` does not name (far cheaper
    /// than a `Value` for a `/connz` of thousands of connections).
    pub fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .get(&url)
            .send()
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("GET {url}: HTTP {status}");
        }
        response
            .json()
            .with_context(|| format!("GET {url}: not JSON"))
    }

    /// `/healthz` answers ok.
    pub fn healthy(&self) -> bool {
        self.get("/healthz")
            .map(|v| v.get("status").and_then(Value::as_str) == Some("ok"))
            .unwrap_or(false)
    }
}

/// `config_digest` and `config_load_time` of a `/varz`.
pub fn loaded(varz: &Value) -> (String, String) {
    let field = |key: &str| varz[key].as_str().unwrap_or_default().to_owned();
    (field("config_digest"), field("config_load_time"))
}

// ---------------------------------------------------------------------------------------------
// Bringing the running server to the files.

/// How the server was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `$SYS.REQ.SERVER.<id>.RELOAD` as the system user.
    SystemAccount,
    /// SIGHUP to the verified process, confirmed on `/varz`.
    Signal,
    /// `docker kill --signal HUP nats` (the compose container), confirmed on `/varz`.
    Compose,
}

impl Via {
    /// For messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::SystemAccount => "system_account",
            Via::Signal => "signal",
            Via::Compose => "compose",
        }
    }
}

/// What [`sync`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// No server runs; the files are ready for the next start.
    NotRunning,
    /// The server already ran this configuration; nothing was sent.
    InSync {
        /// Its `config_digest`.
        digest: String,
    },
    /// The server reloaded and shows the expected digest.
    Confirmed {
        /// The new `config_digest`.
        digest: String,
        /// The new `config_load_time`.
        load_time: String,
        /// From request to confirmation.
        took: Duration,
        /// How it was asked.
        via: Via,
    },
}

/// Bring the running server to `expected` (the digest of the files on disk): reload it unless
/// it already shows that digest (or `force`), and confirm by the digest. Errors when the server
/// refuses, cannot be confirmed, or cannot be reached safely.
pub fn sync(
    settings: &Settings,
    paths: &Paths,
    expected: &str,
    force: bool,
) -> anyhow::Result<ReloadOutcome> {
    let log = match settings.reload {
        ReloadMode::Signal => paths.display(&paths.log_file()),
        ReloadMode::Compose => "docker logs nats".to_owned(),
    };
    let unconfirmed = |reason: String| ManageError::ReloadNotConfirmed {
        reason,
        log: log.clone(),
    };
    let refused = match SysClient::connect(settings, paths) {
        Ok(mut sys) => return sys.reload_to(expected, force, unconfirmed),
        Err(SysUnavailable::NotListening) => None,
        Err(SysUnavailable::Refused(reason)) => Some(reason),
    };
    let monitor = Monitor::new(settings)?;
    let via = match settings.reload {
        ReloadMode::Compose => {
            if !monitor.healthy() {
                return not_running(refused);
            }
            Via::Compose
        }
        ReloadMode::Signal => match local_process(settings, paths) {
            Process::Ours { .. } => Via::Signal,
            Process::Unverified { pid, reason } => {
                return Err(ManageError::UnverifiedProcess {
                    pid_file: paths.pid_file(),
                    pid,
                    reason,
                }
                .into())
            }
            Process::Stale { .. } | Process::None => return not_running(refused),
        },
    };
    let send = || -> anyhow::Result<()> {
        match via {
            Via::Signal => match local_process(settings, paths) {
                Process::Ours { pid, .. } => signal_verified(settings, paths, pid, Signal::SIGHUP),
                _ => Err(unconfirmed("the server process went away".into()).into()),
            },
            _ => {
                // The container is named `nats` in docker-compose.yml, so the engine signals
                // it directly: no compose plugin needed, and nothing printed on success
                // (compose would report a SIGHUP as "Container nats Killing ... Killed").
                let out = Command::new("docker")
                    .args(["kill", "--signal", "HUP", "nats"])
                    .current_dir(&paths.root)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .context("failed to run `docker kill --signal HUP nats`")?;
                if !out.status.success() {
                    return Err(ManageError::ServerUnreachable {
                        reason: format!(
                            "the system account cannot log in ({}), and `docker kill --signal HUP \
                             nats` failed ({}): {}",
                            refused.as_deref().unwrap_or("nothing listens"),
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                    }
                    .into());
                }
                Ok(())
            }
        }
    };
    signal_and_confirm(
        &monitor,
        expected,
        force,
        via,
        refused.as_deref(),
        send,
        unconfirmed,
    )
}

/// Reload a server the system account cannot reach by `send` (a signal), and confirm on its
/// `/varz` that it shows `expected`; a server already showing it is left alone unless `force`.
pub fn signal_and_confirm(
    monitor: &Monitor,
    expected: &str,
    force: bool,
    via: Via,
    refused: Option<&str>,
    send: impl FnOnce() -> anyhow::Result<()>,
    unconfirmed: impl Fn(String) -> ManageError,
) -> anyhow::Result<ReloadOutcome> {
    let before = monitor.get("/varz").map(|v| loaded(&v)).map_err(|e| {
        unconfirmed(format!(
            "the system account cannot connect ({}) and /varz cannot be read ({e:#})",
            refused.unwrap_or("nothing listens")
        ))
    })?;
    if before.0 == expected && !force {
        return Ok(ReloadOutcome::InSync { digest: before.0 });
    }
    let started = Instant::now();
    send()?;
    let mut last = before.clone();
    while started.elapsed() < RELOAD_TIMEOUT {
        if let Ok(varz) = monitor.get("/varz") {
            last = loaded(&varz);
            // A forced reload of an unchanged configuration shows only in the load time.
            if last.0 == expected && (last.1 != before.1 || before.0 != expected) {
                return Ok(ReloadOutcome::Confirmed {
                    digest: last.0,
                    load_time: last.1,
                    took: started.elapsed(),
                    via,
                });
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Err(unconfirmed(format!(
        "after {}s it still runs configuration {} (expected {expected}); a refused reload is in its log",
        RELOAD_TIMEOUT.as_secs(),
        last.0
    ))
    .into())
}

/// No server to reach: fine when nothing listens, an error when something does that manage
/// cannot confirm is this deployment's server.
fn not_running(refused: Option<String>) -> anyhow::Result<ReloadOutcome> {
    match refused {
        None => Ok(ReloadOutcome::NotRunning),
        Some(reason) => Err(ManageError::ServerUnreachable {
            reason: format!("{reason}, and no process of this deployment's server was found"),
        }
        .into()),
    }
}

/// Whether this deployment's server runs, as far as manage can tell: reachable as the system
/// user, a verified local process, or (compose) a healthy monitoring port.
pub fn is_running(settings: &Settings, paths: &Paths) -> bool {
    if SysClient::connect(settings, paths).is_ok() {
        return true;
    }
    match settings.reload {
        ReloadMode::Signal => matches!(local_process(settings, paths), Process::Ours { .. }),
        ReloadMode::Compose => Monitor::new(settings).is_ok_and(|m| m.healthy()),
    }
}

/// The last `lines` lines of a file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// The limits manage checks tenants against, read as natsd's loader reads them
    /// (`config::tests::sizes_table` on the server side; `issue_12_8_sizes_are_the_servers`
    /// compares with a running server's /varz).
    #[test]
    fn jetstream_limits_read_as_the_server_reads_them() {
        let limits = |text: &str| {
            let tree = natsd_conf::parser::parse_text(text, "t.conf", None, 0, &|_| None).unwrap();
            jetstream_limits(&tree)
        };
        assert_eq!(
            limits("jetstream { max_mem: 1G, max_file: \"1G\" }\n").unwrap(),
            (Some(1_000_000_000), Some(1 << 30))
        );
        assert_eq!(
            limits("JetStream { MAX_MEMORY_STORE: 64MB }\n").unwrap(),
            (Some(64 << 20), None)
        );
        assert_eq!(limits("jetstream: enabled\n").unwrap(), (None, None));
        assert_eq!(
            limits("jetstream { enabled: false, max_mem: 1G }\n").unwrap(),
            (None, None)
        );
        assert_eq!(limits("jetstream { max_mem: -1 }\n").unwrap(), (None, None));
        assert_eq!(limits("port: 4222\n").unwrap(), (None, None));
        assert!(limits("jetstream { max_file: \"1g\" }\n").is_err());
        assert!(limits("jetstream { max_file: true }\n").is_err());
    }

    #[test]
    fn config_argument_forms() {
        let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(config_argument(&args("natsd -c /a.conf")), Some("/a.conf"));
        assert_eq!(
            config_argument(&args("natsd -p 1 --config x.conf")),
            Some("x.conf")
        );
        assert_eq!(
            config_argument(&args("natsd --config=y.conf")),
            Some("y.conf")
        );
        assert_eq!(
            config_argument(&args("natsd -config z.conf")),
            Some("z.conf")
        );
        assert_eq!(config_argument(&args("natsd -p 4222")), None);
        assert_eq!(config_argument(&args("natsd -c")), None);
    }
}
