//! Talking to the server process: finding its binary, validating a config with it,
//! the pid file and signals, and the HTTP monitoring API.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::error::ManageError;
use crate::settings::{Paths, ReloadMode, Settings};

/// How long `reload` waits for `/varz` to show a new `config_load_time`.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one monitoring request; the server is local, so anything slower is a failure.
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// How often to poll while waiting on the server.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

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

/// Outcome of [`validate_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// The server binary accepted the configuration.
    Valid,
    /// No server binary to validate with.
    Skipped,
}

/// Validate `config/nats.conf` (and what it includes) with the server's own parser,
/// by running `<server> -t -c <file>` with the deployment's environment.
pub fn validate_config(settings: &Settings, paths: &Paths) -> anyhow::Result<Validation> {
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
            binary,
            output: text.trim().to_owned(),
        }
        .into())
    }
}

/// Send `signal` to `pid`.
#[allow(
    unsafe_code,
    reason = "std has no safe wrapper for kill(2); the call has no memory effects"
)]
pub fn send_signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) only reads its two integer arguments.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn is_alive(pid: u32) -> bool {
    match send_signal(pid, 0) {
        Ok(()) => !is_zombie(pid),
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
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

/// The pid in the pid file when that process is alive and runs in this deployment
/// (checked through /proc where available, so a stale file with a reused pid is ignored).
pub fn running_pid(paths: &Paths) -> Option<u32> {
    let text = std::fs::read_to_string(paths.pid_file()).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    if !is_alive(pid) {
        return None;
    }
    match (
        std::fs::read_link(format!("/proc/{pid}/cwd")),
        paths.root.canonicalize(),
    ) {
        (Ok(cwd), Ok(root)) if cwd != root => None,
        _ => Some(pid),
    }
}

/// A client for the monitoring API.
#[derive(Debug)]
pub struct Monitor {
    client: reqwest::blocking::Client,
    base: String,
}

impl Monitor {
    /// Talk to the monitoring port from `settings`.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let client = reqwest::blocking::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .no_proxy()
            .build()
            .context("failed to create an HTTP client")?;
        Ok(Self {
            client,
            base: settings.monitor_url(),
        })
    }

    /// The base URL (`http://127.0.0.1:8222`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path` and decode JSON; errors for unreachable servers and non-200 answers.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
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

    /// `config_load_time` from `/varz`.
    pub fn config_load_time(&self) -> anyhow::Result<String> {
        let varz = self.get("/varz")?;
        varz.get("config_load_time")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("/varz has no config_load_time")
    }
}

/// Whether a server of this deployment runs, and how to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Nothing to reload.
    NotRunning,
    /// A local process (pid file) or, in compose mode, whatever answers /healthz.
    Running {
        /// The process id, when known.
        pid: Option<u32>,
    },
}

/// Find out whether the server runs.
pub fn detect(settings: &Settings, paths: &Paths, monitor: &Monitor) -> ServerState {
    match settings.reload {
        ReloadMode::Signal => match running_pid(paths) {
            Some(pid) => ServerState::Running { pid: Some(pid) },
            None => ServerState::NotRunning,
        },
        ReloadMode::Compose => {
            if monitor.healthy() {
                ServerState::Running { pid: None }
            } else {
                ServerState::NotRunning
            }
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// No server runs; the files are ready for the next start.
    NotRunning,
    /// The server reloaded; `/varz` shows the new load time.
    Confirmed {
        /// The new `config_load_time`.
        load_time: String,
        /// From signal to confirmation.
        took: Duration,
    },
    /// Signalled, but `/varz` could not be read to confirm.
    Unconfirmed {
        /// Why it could not be confirmed.
        reason: String,
    },
}

/// Signal the running server to reload and wait until `/varz` confirms it.
pub fn reload(
    settings: &Settings,
    paths: &Paths,
    monitor: &Monitor,
) -> anyhow::Result<ReloadOutcome> {
    let state = detect(settings, paths, monitor);
    let ServerState::Running { pid } = state else {
        return Ok(ReloadOutcome::NotRunning);
    };
    let before = monitor.config_load_time();
    let started = Instant::now();
    match (settings.reload, pid) {
        (ReloadMode::Signal, Some(pid)) => send_signal(pid, libc::SIGHUP)
            .with_context(|| format!("failed to send SIGHUP to natsd (pid {pid})"))?,
        _ => {
            let status = Command::new("docker")
                .args(["compose", "kill", "-s", "HUP", "nats"])
                .current_dir(&paths.root)
                .status()
                .context("failed to run `docker compose kill -s HUP nats`")?;
            anyhow::ensure!(
                status.success(),
                "`docker compose kill -s HUP nats` failed ({status})"
            );
        }
    }
    let before = match before {
        Ok(before) => before,
        Err(e) => {
            return Ok(ReloadOutcome::Unconfirmed {
                reason: format!("{e:#}"),
            })
        }
    };
    while started.elapsed() < RELOAD_TIMEOUT {
        if let Ok(now) = monitor.config_load_time() {
            if now != before {
                return Ok(ReloadOutcome::Confirmed {
                    load_time: now,
                    took: started.elapsed(),
                });
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Err(ManageError::ReloadNotConfirmed {
        seconds: RELOAD_TIMEOUT.as_secs(),
        log: paths.log_file(),
    }
    .into())
}

/// The last `lines` lines of a file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
