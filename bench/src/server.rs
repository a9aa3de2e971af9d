//! Starting the two servers under test and reading their resource use from /proc.

use std::fs::{self, File};
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use crate::sys;

/// How long a server may take to accept a connection and send INFO.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

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
    /// The binary could not be executed.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// Path that was executed.
        binary: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The process exited before or while serving.
    #[error("{kind} exited ({status}); log tail:\n{log_tail}")]
    Exited {
        /// Which server.
        kind: &'static str,
        /// Exit status as text.
        status: String,
        /// Last lines of its output.
        log_tail: String,
    },
    /// It never sent INFO within [`READY_TIMEOUT`].
    #[error("{kind} not ready after {READY_TIMEOUT:?}; log tail:\n{log_tail}")]
    NotReady {
        /// Which server.
        kind: &'static str,
        /// Last lines of its output.
        log_tail: String,
    },
    /// Preparing files or reading /proc failed.
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

/// A running server bound to a free loopback port. Killed on drop.
pub struct ServerProcess {
    kind: ServerKind,
    /// Behind a lock so a scenario holding `&ServerProcess` can restart it.
    child: Mutex<Child>,
    addr: SocketAddr,
    workdir: PathBuf,
    log_path: PathBuf,
    ticks_per_second: u64,
    /// How it was started, so [`ServerProcess::restart`] can start it again.
    binary: PathBuf,
    args: Vec<String>,
}

impl ServerProcess {
    /// Starts `binary -a 127.0.0.1 -p <port> [-c <conf>] [extra_args]` and
    /// waits until it greets a client with INFO.
    pub fn start(
        kind: ServerKind,
        binary: &Path,
        config: Option<&str>,
        extra_args: &[String],
    ) -> Result<Self, ServerError> {
        let workdir = unique_workdir();
        fs::create_dir_all(&workdir)
            .map_err(io_context(format!("create {}", workdir.display())))?;
        let port = free_port().map_err(io_context("find a free port"))?;
        let log_path = workdir.join("server.log");
        let log = File::create(&log_path).map_err(io_context("create server log"))?;
        let log_err = log.try_clone().map_err(io_context("clone server log"))?;

        let mut args: Vec<String> = ["-a", "127.0.0.1", "-p", &port.to_string()]
            .iter()
            .map(|a| a.to_string())
            .collect();
        if let Some(text) = config {
            let conf = workdir.join("server.conf");
            fs::write(&conf, text).map_err(io_context("write server config"))?;
            args.push("-c".into());
            args.push(conf.display().to_string());
        }
        args.extend(extra_args.iter().cloned());
        let child = spawn_logged(binary, &args, &workdir, log, log_err)?;

        let server = Self {
            kind,
            child: Mutex::new(child),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            workdir,
            log_path,
            ticks_per_second: sys::clock_ticks_per_second(),
            binary: binary.to_path_buf(),
            args,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Stops the server with SIGTERM (an orderly shutdown that flushes its stores), starts
    /// it again with the same arguments, work directory and port, and returns the time from
    /// the new process's spawn until it greets a client with INFO.
    pub fn restart(&self) -> Result<Duration, ServerError> {
        let mut child = lock(&self.child);
        sys::terminate(child.id()).map_err(io_context("signal server"))?;
        // An error means the process is already gone, which is what we want.
        let _ = child.wait();
        let log = fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .map_err(io_context("open server log"))?;
        let log_err = log.try_clone().map_err(io_context("clone server log"))?;
        let started = Instant::now();
        *child = spawn_logged(&self.binary, &self.args, &self.workdir, log, log_err)?;
        drop(child);
        self.wait_ready()?;
        Ok(started.elapsed())
    }

    /// The HTTP monitoring address, when the server was started with `-m <port>`.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        let at = self.args.iter().position(|a| a == "-m")?;
        let port = self.args.get(at + 1)?.parse().ok()?;
        Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    fn wait_ready(&self) -> Result<(), ServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            self.check_running()?;
            if greets_with_info(self.addr) {
                return Ok(());
            }
            // Polling the readiness check itself; the sleep only paces retries.
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(ServerError::NotReady {
            kind: self.kind.label(),
            log_tail: self.log_tail(),
        })
    }

    /// Which implementation this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Client address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        lock(&self.child).id()
    }

    /// Errors with the log tail if the process has exited.
    pub fn check_running(&self) -> Result<(), ServerError> {
        match lock(&self.child).try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(ServerError::Exited {
                kind: self.kind.label(),
                status: status.to_string(),
                log_tail: self.log_tail(),
            }),
            Err(source) => Err(ServerError::Io {
                context: "wait for server".into(),
                source,
            }),
        }
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

    /// Last lines of the server's stdout/stderr.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Directory holding the config, log and any store of this server.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A failure here means the process is already gone.
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
        let _ = fs::remove_dir_all(&self.workdir);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn spawn_logged(
    binary: &Path,
    args: &[String],
    workdir: &Path,
    log: File,
    log_err: File,
) -> Result<Child, ServerError> {
    let mut command = Command::new(binary);
    command
        .args(args)
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    sys::kill_child_with_parent(&mut command);
    command.spawn().map_err(|source| ServerError::Spawn {
        binary: binary.display().to_string(),
        source,
    })
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

fn greets_with_info(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && head.eq_ignore_ascii_case(b"INFO ")
}

pub use testkit::ports::try_free_port as free_port;

const WORKDIR_PREFIX: &str = "natsd-bench-";

fn unique_workdir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("{WORKDIR_PREFIX}{}-{n}", std::process::id()))
}

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
