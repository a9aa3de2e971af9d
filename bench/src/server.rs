//! The two servers under test (testkit's [`TestServer`], the workspace's one harness) and
//! their resource use read from /proc.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use testkit::{ServerSpec, StartError, TestServer};
use thiserror::Error;

use crate::sys;

/// Which implementation a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// The server of this project.
    Natsd,
    /// The reference Go server.
    NatsServer,
}

impl ServerKind {
    /// Both kinds, natsd first.
    pub const BOTH: [ServerKind; 2] = [ServerKind::Natsd, ServerKind::NatsServer];

    /// Name used in output.
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::Natsd => "natsd",
            ServerKind::NatsServer => "nats-server",
        }
    }
}

/// Failures while starting or observing a server.
#[derive(Debug, Error)]
pub enum ServerError {
    /// It did not start or did not become ready.
    #[error("{kind}: {source}")]
    Start {
        /// Which server.
        kind: &'static str,
        /// What went wrong, with its log.
        source: StartError,
    },
    /// The process exited while serving.
    #[error("{kind} exited; log tail:\n{log_tail}")]
    Exited {
        /// Which server.
        kind: &'static str,
        /// Last lines of its output.
        log_tail: String,
    },
    /// Reading /proc failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

fn io_context(context: impl Into<String>) -> impl FnOnce(io::Error) -> ServerError {
    let context = context.into();
    move |source| ServerError::Io { context, source }
}

/// A running server on free loopback ports, in its own temporary directory. Killed on drop.
pub struct ServerProcess {
    kind: ServerKind,
    /// Behind a lock so a scenario holding `&ServerProcess` can restart it.
    server: Mutex<TestServer>,
    ticks_per_second: u64,
}

impl ServerProcess {
    /// Starts `binary` as `spec` says and waits until it logs that it is ready.
    pub fn start(kind: ServerKind, binary: &Path, spec: ServerSpec) -> Result<Self, ServerError> {
        let spec = spec.dir_prefix(format!("{WORKDIR_PREFIX}{}-", std::process::id()));
        let server =
            TestServer::try_start_bin(binary, spec).map_err(|source| ServerError::Start {
                kind: kind.label(),
                source,
            })?;
        Ok(Self {
            kind,
            server: Mutex::new(server),
            ticks_per_second: sys::clock_ticks_per_second(),
        })
    }

    /// Stops the server with SIGTERM (an orderly shutdown that flushes its stores), starts
    /// it again with the same arguments, directory and ports, and returns the time from the
    /// new process's spawn until it is ready.
    pub fn restart(&self) -> Result<Duration, ServerError> {
        let mut server = self.server.lock();
        server.stop();
        let started = Instant::now();
        server
            .try_start_again()
            .map_err(|source| ServerError::Start {
                kind: self.kind.label(),
                source,
            })?;
        Ok(started.elapsed())
    }

    /// The HTTP monitoring address, when the spec enabled the monitor.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        let port = self.server.lock().monitor_port?;
        Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// Which implementation this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.server.lock().port))
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.server.lock().pid()
    }

    /// Errors with the log tail if the process has exited.
    pub fn check_running(&self) -> Result<(), ServerError> {
        let mut server = self.server.lock();
        if server.is_running() {
            return Ok(());
        }
        Err(ServerError::Exited {
            kind: self.kind.label(),
            log_tail: log_tail(&server.log()),
        })
    }

    /// User plus system CPU time consumed so far (all threads).
    pub fn cpu_time(&self) -> Result<Duration, ServerError> {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = fs::read_to_string(&path).map_err(io_context(format!("read {path}")))?;
        let ticks = parse_cpu_ticks(&stat).ok_or_else(|| ServerError::Io {
            context: format!("parse {path}"),
            source: io::Error::new(io::ErrorKind::InvalidData, "no utime/stime"),
        })?;
        Ok(Duration::from_micros(
            ticks * 1_000_000 / self.ticks_per_second,
        ))
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> Result<u64, ServerError> {
        let path = format!("/proc/{}/status", self.pid());
        let status = fs::read_to_string(&path).map_err(io_context(format!("read {path}")))?;
        parse_vm_rss_kib(&status).ok_or_else(|| ServerError::Io {
            context: format!("parse {path}"),
            source: io::Error::new(io::ErrorKind::InvalidData, "no VmRSS"),
        })
    }
}

/// The last lines of a server's output, for error messages.
fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Output of `binary --version`, for the report header.
pub fn version_of(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .map(|out| {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text).trim().to_owned()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

const WORKDIR_PREFIX: &str = "natsd-bench-";

/// Removes server work directories left by bench processes that no longer
/// run (killed by a signal, so their destructors never ran). Returns how
/// many were removed.
pub fn remove_stale_workdirs() -> usize {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let owner = name
                .to_str()
                .and_then(|n| n.strip_prefix(WORKDIR_PREFIX))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            owner.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .filter(|entry| fs::remove_dir_all(entry.path()).is_ok())
        .count()
}

/// utime + stime (clock ticks) from the text of /proc/<pid>/stat.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses, so count
    // fields from the last ')'. After it, field 3 (state) is index 0, so
    // utime (14) and stime (15) are indexes 11 and 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The VmRSS line of /proc/<pid>/status, in KiB.
fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_from_stat_with_odd_command_name() {
        let stat = "1234 (nats server) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 9 0 100 1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn vm_rss_from_status() {
        let status = "Name:\tnats-server\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss_kib(status), Some(12345));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn stale_workdirs_of_dead_processes_are_removed() {
        let tmp = std::env::temp_dir();
        // Above the kernel's maximum pid, so never a live process.
        let dead = tmp.join(format!("{WORKDIR_PREFIX}4294967294-0"));
        let live = tmp.join(format!("{WORKDIR_PREFIX}{}-999999", std::process::id()));
        fs::create_dir_all(&dead).unwrap();
        fs::create_dir_all(&live).unwrap();
        remove_stale_workdirs();
        assert!(!dead.exists());
        assert!(live.exists());
        fs::remove_dir_all(&live).unwrap();
    }

    #[test]
    fn own_process_is_readable() {
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_cpu_ticks(&stat).is_some());
        let status = fs::read_to_string("/proc/self/status").unwrap();
        assert!(parse_vm_rss_kib(&status).unwrap() > 0);
    }
}
