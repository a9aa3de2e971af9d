//! `manage up`, `down` and `status`: the server process of this deployment.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::commands::{apply, init, lock, ExitStatus};
use crate::error::ManageError;
use crate::fs::{remove_if_exists, write_atomic, CONFIG_FILE_MODE};
use crate::printer::Printer;
use crate::server::{self, Monitor, ServerState, POLL_INTERVAL};
use crate::settings::ReloadMode;
use crate::tenant::repo;
use crate::Context;

/// How long `up` waits for `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `down` waits for the process to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

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

/// `manage up`
pub fn up(ctx: &mut Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    for path in init::ensure(ctx)? {
        printer.status("Created", path);
    }
    let _lock = lock(ctx)?;
    let monitor = Monitor::new(&ctx.settings)?;
    if let ServerState::Running { pid } = server::detect(&ctx.settings, &ctx.paths, &monitor) {
        let applied = apply(ctx, printer, false)?;
        crate::commands::report_reload(&applied, printer);
        endpoints(
            ctx,
            printer,
            &format!("natsd is already running{}", pid_note(pid)),
        );
        printer.json(&json!({ "ok": true, "running": true, "started": false, "pid": pid }));
        return Ok(ExitStatus::Success);
    }
    apply(ctx, printer, false)?;
    if ctx.settings.reload == ReloadMode::Compose {
        let status = Command::new("docker")
            .args(["compose", "up", "-d", "nats"])
            .current_dir(&ctx.paths.root)
            .status()
            .context("failed to run `docker compose up -d nats`")?;
        anyhow::ensure!(
            status.success(),
            "`docker compose up -d nats` failed ({status})"
        );
        wait_healthy(ctx, printer, &monitor, None)?;
        endpoints(ctx, printer, "natsd is running (docker compose)");
        printer.json(&json!({ "ok": true, "running": true, "started": true, "pid": null }));
        return Ok(ExitStatus::Success);
    }
    let binary = server::find_binary(&ctx.settings).ok_or(ManageError::NoServerBinary)?;
    let log_path = ctx.paths.log_file();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("failed to open {}", log_path.display()))?;
    let log_err = log.try_clone().context("failed to share the log file")?;
    // The server keeps running after manage exits: its own process group keeps a Ctrl-C
    // in this terminal from reaching it.
    let mut child = Command::new(&binary)
        .arg("-c")
        .arg(ctx.paths.nats_conf())
        .current_dir(&ctx.paths.root)
        .envs(ctx.settings.server_env())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("failed to start {}", binary.display()))?;
    wait_healthy(ctx, printer, &monitor, Some(&mut child))?;
    let pid = match server::running_pid(&ctx.paths) {
        Some(pid) => pid,
        None => {
            // A server that does not write pid_file still gets one, so reload and down work.
            write_atomic(
                &ctx.paths.pid_file(),
                &format!("{}\n", child.id()),
                CONFIG_FILE_MODE,
            )?;
            child.id()
        }
    };
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
pub fn down(ctx: &Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    if ctx.settings.reload == ReloadMode::Compose {
        let status = Command::new("docker")
            .args(["compose", "stop", "nats"])
            .current_dir(&ctx.paths.root)
            .status()
            .context("failed to run `docker compose stop nats`")?;
        anyhow::ensure!(
            status.success(),
            "`docker compose stop nats` failed ({status})"
        );
        printer.status("Stopped", "natsd (docker compose)");
        printer.json(&json!({ "ok": true, "stopped": true }));
        return Ok(ExitStatus::Success);
    }
    let Some(pid) = server::running_pid(&ctx.paths) else {
        printer.status("Stopped", "natsd is not running");
        printer.json(&json!({ "ok": true, "stopped": false, "running": false }));
        return Ok(ExitStatus::Success);
    };
    server::send_signal(pid, libc::SIGTERM)
        .with_context(|| format!("failed to stop natsd (pid {pid})"))?;
    let spinner = printer.spinner(format!("Stopping natsd (pid {pid})…"));
    let started = Instant::now();
    let mut killed = false;
    while server::is_alive(pid) {
        if started.elapsed() > STOP_TIMEOUT && !killed {
            printer.warn(format!(
                "natsd (pid {pid}) ignored SIGTERM for {}s; sending SIGKILL",
                STOP_TIMEOUT.as_secs()
            ));
            server::send_signal(pid, libc::SIGKILL)
                .with_context(|| format!("failed to kill pid {pid}"))?;
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
    let monitor = Monitor::new(&ctx.settings)?;
    let tenants = repo::load_all(&ctx.paths)?;
    let state = server::detect(&ctx.settings, &ctx.paths, &monitor);
    let ServerState::Running { pid } = state else {
        printer.boxed(
            "natsd is not running",
            &[
                format!("  Tenants:  {}", tenants.len()),
                "  Start it with: ./manage up".to_owned(),
            ],
        );
        printer.json(&json!({ "running": false, "tenants": tenants.len() }));
        return Ok(ExitStatus::Success);
    };
    let varz = monitor.get("/varz").unwrap_or(Value::Null);
    let field = |key: &str| varz.get(key).cloned().unwrap_or(Value::Null);
    let text = |key: &str| match varz.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "unknown".into(),
    };
    let body = vec![
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
            "  Client:      nats://{}:{}",
            ctx.settings.url_host, ctx.settings.port
        ),
        format!("  Monitoring:  {}", monitor.base()),
    ];
    printer.boxed("natsd is running", &body);
    printer.json(&json!({
        "running": true, "pid": pid, "server_name": field("server_name"), "version": field("version"),
        "uptime": field("uptime"), "connections": field("connections"), "tenants": tenants.len(),
        "config_load_time": field("config_load_time"),
    }));
    Ok(ExitStatus::Success)
}
