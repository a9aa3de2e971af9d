//! `manage up`, `down` and `status`: the server process of this deployment.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

use nix::sys::signal::Signal;

use crate::cli::{DownArgs, UpArgs};
use crate::commands::{apply, begin, cluster_up, ExitStatus};
use crate::error::ManageError;
use crate::fs::{remove_if_exists, write_atomic, SECRET_FILE_MODE};
use crate::printer::Printer;
use crate::server::{self, Monitor, Process, POLL_INTERVAL};
use crate::settings::ReloadMode;
use crate::tenant::repo;
use crate::Context;

/// How long `up` waits for `/healthz`.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `down` waits for the process to exit after SIGTERM before SIGKILL.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn endpoints(ctx: &Context, printer: Printer, title: &str) {
    let s = &ctx.settings;
    let rows = [
        (
            "Service",
            "Port".to_owned(),
            "URL".to_owned(),
            "Description",
        ),
        (
            "Client",
            s.port.to_string(),
            format!("nats://{}:{}", s.url_host, s.port),
            "NATS client connections",
        ),
        (
            "Monitoring",
            s.http_port.to_string(),
            format!("http://{}:{}", s.url_host, s.http_port),
            "HTTP monitoring API",
        ),
    ];
    let url_width = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
    let body: Vec<String> = rows
        .iter()
        .map(|(service, port, url, description)| {
            format!("  {service:<11} {port:<6} {url:<url_width$}  {description}")
        })
        .collect();
    printer.boxed(title, &body);
}

/// Whether something accepts TCP connections on `addr` (a server of another deployment, or
/// this one's whose process cannot be found).
pub(crate) fn port_taken(addr: &str) -> bool {
    use std::net::ToSocketAddrs as _;
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
        })
}

/// `manage up`
pub fn up(args: &UpArgs, ctx: &mut Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    if args.nodes.is_some() || args.node.is_some() || ctx.paths.cluster_file().exists() {
        return cluster_up::up(args, ctx, printer);
    }
    let _lock = begin(ctx, printer)?;
    let monitor = Monitor::new(&ctx.settings)?;
    let running = if ctx.settings.reload == ReloadMode::Compose {
        monitor.healthy().then_some(None)
    } else {
        match server::local_process(&ctx.settings, &ctx.paths) {
            Process::Ours { pid, from_pid_file } => {
                if !from_pid_file {
                    // Found by its command line: the pid file was lost, so write it again.
                    write_atomic(&ctx.paths.pid_file(), &format!("{pid}\n"), SECRET_FILE_MODE)?;
                    printer.status(
                        "Found",
                        format!(
                            "natsd (pid {pid}) without its pid file; wrote {}",
                            ctx.paths.display(&ctx.paths.pid_file())
                        ),
                    );
                }
                Some(Some(pid))
            }
            Process::Unverified { pid, reason } => {
                return Err(ManageError::UnverifiedProcess {
                    pid_file: ctx.paths.pid_file(),
                    pid,
                    reason,
                }
                .into())
            }
            Process::Stale { pid, reason } => {
                printer.warn(format!(
                    "ignoring {} (pid {pid}): {reason}",
                    ctx.paths.display(&ctx.paths.pid_file())
                ));
                None
            }
            Process::None => None,
        }
    };
    // A server whose process manage cannot see (another user, a container) but that takes
    // this deployment's system password is this deployment's: it is brought to the files.
    let running = match running {
        Some(pid) => Some(pid),
        None if ctx.settings.reload == ReloadMode::Signal
            && server::SysClient::connect(&ctx.settings, &ctx.paths).is_ok() =>
        {
            Some(None)
        }
        None => None,
    };
    if let Some(pid) = running {
        let applied = apply(ctx, printer, false)?;
        endpoints(
            ctx,
            printer,
            &format!("natsd is already running{}", pid_note(pid)),
        );
        return Ok(applied.finish(
            printer,
            json!({ "running": true, "started": false, "pid": pid }),
        ));
    }
    if ctx.settings.reload == ReloadMode::Signal {
        for addr in [ctx.settings.client_addr(), monitor_addr(ctx)] {
            if port_taken(&addr) {
                return Err(ManageError::PortInUse { addr }.into());
            }
        }
    }
    let applied = apply(ctx, printer, false)?;
    applied.sync.into_result()?;
    if ctx.settings.reload == ReloadMode::Compose {
        compose(ctx, &["up", "-d", "nats"])?;
        wait_healthy(ctx, printer, &monitor, None)?;
        endpoints(ctx, printer, "natsd is running (docker compose)");
        printer.json(&json!({ "ok": true, "running": true, "started": true, "pid": null }));
        return Ok(ExitStatus::Success);
    }
    let binary = server::find_binary(&ctx.settings).ok_or(ManageError::NoServerBinary)?;
    let log_path = ctx.paths.log_file();
    let conf = ctx.paths.nats_conf();
    let mut child = server::spawn_detached(
        &binary,
        &["-c".as_ref(), conf.as_os_str()],
        &ctx.paths.root,
        &ctx.settings.server_env(),
        &log_path,
    )?;
    wait_healthy(ctx, printer, &monitor, Some(&mut child))?;
    let pid = child.id();
    match server::local_process(&ctx.settings, &ctx.paths) {
        Process::Ours { pid: found, .. } if found == pid => {}
        _ => {
            // A server that does not write pid_file still gets one, so reload and down work.
            write_atomic(&ctx.paths.pid_file(), &format!("{pid}\n"), SECRET_FILE_MODE)?;
        }
    }
    printer.status(
        "Started",
        format!(
            "{} (pid {pid}, log {})",
            binary.display(),
            ctx.paths.display(&log_path)
        ),
    );
    endpoints(ctx, printer, &format!("natsd is running (pid {pid})"));
    printer.json(&json!({
        "ok": true, "running": true, "started": true, "pid": pid,
        "client_url": format!("nats://{}:{}", ctx.settings.url_host, ctx.settings.port),
        "monitor_url": monitor.base(),
    }));
    Ok(ExitStatus::Success)
}

/// `docker compose <args>` in the deployment, its output shown. A failure says so when the
/// Compose v2 plugin is what is missing (Debian's docker.io, for one, comes without it).
fn compose(ctx: &Context, args: &[&str]) -> anyhow::Result<()> {
    let shown = format!("docker compose {}", args.join(" "));
    let status = Command::new("docker")
        .arg("compose")
        .args(args)
        .current_dir(&ctx.paths.root)
        .status()
        .with_context(|| format!("failed to run `{shown}` (is docker installed?)"))?;
    if status.success() {
        return Ok(());
    }
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !plugin {
        crate::commands::hint(
            "`docker compose version` fails: install the Docker Compose v2 plugin \
             (docker-compose-plugin), or set NATS_RELOAD=signal in .env to run natsd without docker",
        );
    }
    anyhow::bail!("`{shown}` failed ({status})")
}

/// `host:port` of the monitoring listener, as seen from this machine.
fn monitor_addr(ctx: &Context) -> String {
    ctx.settings
        .monitor_url()
        .trim_start_matches("http://")
        .to_owned()
}

fn pid_note(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

fn wait_healthy(
    ctx: &Context,
    printer: Printer,
    monitor: &Monitor,
    mut child: Option<&mut std::process::Child>,
) -> anyhow::Result<()> {
    let spinner = printer.spinner(format!("Waiting for {}/healthz…", monitor.base()));
    let started = Instant::now();
    let result = loop {
        if let Some(child) = child.as_deref_mut() {
            if let Some(status) = child
                .try_wait()
                .context("failed to watch the server process")?
            {
                break Err(ManageError::StartFailed {
                    reason: format!("the server exited ({status})"),
                    log_tail: server::tail(&ctx.paths.log_file(), 15),
                });
            }
        }
        if monitor.healthy() {
            break Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            break Err(ManageError::StartFailed {
                reason: format!(
                    "no answer on {}/healthz after {}s",
                    monitor.base(),
                    START_TIMEOUT.as_secs()
                ),
                log_tail: server::tail(&ctx.paths.log_file(), 15),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    spinner.finish_and_clear();
    Ok(result?)
}

/// `manage down`
pub fn down(args: &DownArgs, ctx: &Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    if args.node.is_some() || ctx.paths.cluster_file().exists() {
        return cluster_up::down(args, ctx, printer);
    }
    if ctx.settings.reload == ReloadMode::Compose {
        compose(ctx, &["stop", "nats"])?;
        printer.status("Stopped", "natsd (docker compose)");
        printer.json(&json!({ "ok": true, "stopped": true }));
        return Ok(ExitStatus::Success);
    }
    let pid = match server::local_process(&ctx.settings, &ctx.paths) {
        Process::Ours { pid, .. } => pid,
        Process::Unverified { pid, reason } => {
            return Err(ManageError::UnverifiedProcess {
                pid_file: ctx.paths.pid_file(),
                pid,
                reason,
            }
            .into())
        }
        stale_or_none => {
            if let Process::Stale { pid, reason } = stale_or_none {
                remove_if_exists(&ctx.paths.pid_file())?;
                printer.warn(format!(
                    "removed {} (pid {pid}): {reason}",
                    ctx.paths.display(&ctx.paths.pid_file())
                ));
            }
            if server::SysClient::connect(&ctx.settings, &ctx.paths).is_ok() {
                return Err(ManageError::ServerUnreachable {
                    reason: format!(
                        "a server of this deployment answers on {}, but no process of it was found \
                         here (another user's, or a container's): stop it where it runs",
                        ctx.settings.client_addr()
                    ),
                }
                .into());
            }
            printer.status("Stopped", "natsd is not running");
            printer.json(&json!({ "ok": true, "stopped": false, "running": false }));
            return Ok(ExitStatus::Success);
        }
    };
    server::signal_verified(&ctx.settings, &ctx.paths, pid, Signal::SIGTERM)?;
    let spinner = printer.spinner(format!("Stopping natsd (pid {pid})…"));
    let started = Instant::now();
    let mut killed = false;
    while server::is_alive(pid) {
        if started.elapsed() > STOP_TIMEOUT && !killed {
            printer.warn(format!(
                "natsd (pid {pid}) ignored SIGTERM for {}s; sending SIGKILL",
                STOP_TIMEOUT.as_secs()
            ));
            server::signal_verified(&ctx.settings, &ctx.paths, pid, Signal::SIGKILL)?;
            killed = true;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    spinner.finish_and_clear();
    remove_if_exists(&ctx.paths.pid_file())?;
    printer.status("Stopped", format!("natsd (pid {pid})"));
    printer.json(&json!({ "ok": true, "stopped": true, "pid": pid, "killed": killed }));
    Ok(ExitStatus::Success)
}

/// `manage status`
pub fn status(ctx: &Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    if ctx.paths.cluster_file().exists() {
        return cluster_up::status(ctx, printer);
    }
    let monitor = Monitor::new(&ctx.settings)?;
    // The files are read (1,000 tenants: tens of milliseconds) while the server is asked.
    std::thread::scope(|s| {
        let files = s.spawn(|| {
            let tenants = repo::load_all(&ctx.paths);
            let digest = server::load_config(&ctx.settings, &ctx.paths)
                .ok()
                .map(|l| l.digest);
            (tenants, digest)
        });
        let varz = ask_status(ctx, &monitor);
        let (tenants, expected) = files
            .join()
            .map_err(|_| anyhow::anyhow!("reading the tenant files failed"))?;
        print_status(ctx, printer, &monitor, tenants?, expected, varz)
    })
}

/// What `status` learns from the server: `/varz` (if it answers), the verified pid, notes.
struct StatusProbe {
    varz: Option<Value>,
    pid: Option<u32>,
    notes: Vec<String>,
}

fn ask_status(ctx: &Context, monitor: &Monitor) -> StatusProbe {
    let process = match ctx.settings.reload {
        ReloadMode::Signal => server::local_process(&ctx.settings, &ctx.paths),
        ReloadMode::Compose => Process::None,
    };
    let mut notes = Vec::new();
    let pid = match &process {
        Process::Ours { pid, .. } => Some(*pid),
        Process::Stale { pid, reason } => {
            notes.push(format!(
                "  Note:        ignoring data/natsd.pid (pid {pid}): {reason}"
            ));
            None
        }
        Process::Unverified { pid, reason } => {
            notes.push(format!(
                "  Note:        pid {pid} cannot be verified: {reason}"
            ));
            None
        }
        Process::None => None,
    };
    // The monitoring port when the process is known (no connection of manage's own is then
    // counted), else the system account, which also finds a server in a container or
    // elsewhere.
    let http_varz = || monitor.get("/varz").ok();
    let mut refused = None;
    let mut sys_varz = || match server::SysClient::connect(&ctx.settings, &ctx.paths) {
        Ok(mut sys) => sys.varz().ok(),
        Err(server::SysUnavailable::Refused(reason)) => {
            refused = Some(reason);
            None
        }
        Err(server::SysUnavailable::NotListening) => None,
    };
    let varz = if pid.is_some() || ctx.settings.reload == ReloadMode::Compose {
        http_varz().or_else(&mut sys_varz)
    } else {
        sys_varz()
    };
    // Something holds the client port without being this deployment's server: say so, since
    // `up` will refuse to start beside it.
    if let (None, Some(reason)) = (&varz, refused) {
        notes.push(format!("  Note:        {reason}"));
    }
    StatusProbe { varz, pid, notes }
}

fn print_status(
    ctx: &Context,
    printer: Printer,
    monitor: &Monitor,
    tenants: Vec<crate::tenant::Tenant>,
    expected: Option<String>,
    probe: StatusProbe,
) -> anyhow::Result<ExitStatus> {
    let StatusProbe { varz, pid, notes } = probe;
    let running = varz.is_some() || pid.is_some();
    if !running {
        let mut body = vec![
            format!("  Tenants:  {}", tenants.len()),
            "  Start it with: ./manage up".to_owned(),
        ];
        body.extend(notes);
        printer.boxed("natsd is not running", &body);
        printer
            .json(&json!({ "ok": true, "running": false, "tenants": tenants.len(), "pid": null }));
        return Ok(ExitStatus::Success);
    }
    let varz = varz.unwrap_or(Value::Null);
    let field = |key: &str| varz.get(key).cloned().unwrap_or(Value::Null);
    let text = |key: &str| match varz.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "unknown".into(),
    };
    let in_sync = expected
        .as_deref()
        .map(|d| Value::String(d.to_owned()) == field("config_digest"));
    let mut body = vec![
        format!(
            "  Server:      {} (version {})",
            text("server_name"),
            text("version")
        ),
        format!(
            "  Pid:         {}",
            pid.map_or("unknown".into(), |p| p.to_string())
        ),
        format!("  Uptime:      {}", text("uptime")),
        format!("  Connections: {}", text("connections")),
        format!("  Tenants:     {}", tenants.len()),
        format!(
            "  Config:      {}",
            match in_sync {
                Some(true) => "runs the files in config/".to_owned(),
                Some(false) => "differs from the files in config/ (./manage reload)".to_owned(),
                None => "config/nats.conf cannot be read".to_owned(),
            }
        ),
        format!(
            "  Client:      nats://{}:{}",
            ctx.settings.url_host, ctx.settings.port
        ),
        format!("  Monitoring:  {}", monitor.base()),
    ];
    body.extend(notes);
    printer.boxed("natsd is running", &body);
    printer.json(&json!({
        "ok": true, "running": true, "pid": pid, "server_name": field("server_name"), "version": field("version"),
        "uptime": field("uptime"), "connections": field("connections"), "tenants": tenants.len(),
        "config_load_time": field("config_load_time"), "config_digest": field("config_digest"),
        "in_sync": in_sync,
    }));
    Ok(ExitStatus::Success)
}
