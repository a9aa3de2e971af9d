//! `natsd --signal <command>[=<pid|pidfile>]`: send a signal to a running server, like
//! `nats-server --signal`.

use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::flags::SignalCommand;

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("could not read pid from {path}: {reason}")]
    BadPidFile { path: String, reason: String },
    #[error("no natsd process running")]
    NoProcess,
    #[error("multiple natsd processes running:\n{0}")]
    Ambiguous(String),
    #[error("failed to signal process {pid}: {source}")]
    Kill { pid: i32, source: nix::Error },
}

/// Resolve a `=<pid|pidfile>` target; without one, the single running natsd process.
fn resolve_pid(target: Option<&str>) -> Result<i32, SignalError> {
    match target {
        Some(t) => match t.parse::<i32>() {
            Ok(pid) => Ok(pid),
            Err(_) => read_pid_file(Path::new(t)),
        },
        None => {
            let me = std::process::id() as i32;
            let pids: Vec<i32> = find_processes("natsd")
                .into_iter()
                .filter(|p| *p != me)
                .collect();
            match pids.as_slice() {
                [] => Err(SignalError::NoProcess),
                [pid] => Ok(*pid),
                many => Err(SignalError::Ambiguous(
                    many.iter()
                        .map(|p| format!("  {p}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                )),
            }
        }
    }
}

pub fn read_pid_file(path: &Path) -> Result<i32, SignalError> {
    let text = std::fs::read_to_string(path).map_err(|e| SignalError::BadPidFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    text.trim().parse().map_err(|_| SignalError::BadPidFile {
        path: path.display().to_string(),
        reason: format!("{:?} is not a pid", text.trim()),
    })
}

fn find_processes(name: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

/// Send `command`'s signal to the target process (as nats-server: `stop` is SIGKILL).
pub fn send(command: SignalCommand, target: Option<&str>) -> Result<i32, SignalError> {
    let signal = Signal::try_from(command.signal())
        .map_err(|source| SignalError::Kill { pid: 0, source })?;
    let pid = resolve_pid(target)?;
    kill(Pid::from_raw(pid), signal).map_err(|source| SignalError::Kill { pid, source })?;
    Ok(pid)
}
