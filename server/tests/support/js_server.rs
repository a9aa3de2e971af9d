//! Starting a natsd (or nats-server) process for the JetStream test binaries: a free port,
//! readiness from the `Server is ready` log line, killed on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn natsd() -> &'static str {
    env!("CARGO_BIN_EXE_natsd")
}

/// Starts `bin` with `args` and waits for `Server is ready`; the port comes from the log.
pub fn spawn(bin: &str, args: &[String]) -> Server {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut port = None;
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("server did not become ready: {log:#?}"));
        if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
            port = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok());
        }
        let ready = line.contains("Server is ready");
        log.push(line);
        if ready {
            break;
        }
    }
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Server {
        child,
        port: port.expect("listen line"),
    }
}

/// Starts `bin` with `conf`, where `@PORT@` becomes a free port and `@DIR@` the directory.
#[allow(
    dead_code,
    reason = "not every test binary including this file uses every helper"
)]
pub fn start_conf(bin: &str, conf: &str, dir: &Path) -> Server {
    let port = free_port();
    let text = conf
        .replace("@PORT@", &port.to_string())
        .replace("@DIR@", dir.to_str().unwrap());
    let path = dir.join(format!("server-{port}.conf"));
    std::fs::write(&path, text).unwrap();
    spawn(bin, &["-c".to_string(), path.to_str().unwrap().to_string()])
}

pub fn start_js(dir: &Path) -> Server {
    start_js_with(natsd(), dir)
}

/// `bin` (natsd or nats-server) on a free loopback port with JetStream storing in `dir`.
pub fn start_js_with(bin: &str, dir: &Path) -> Server {
    let args = [
        "-a",
        "127.0.0.1",
        "-p",
        &free_port().to_string(),
        "-js",
        "-sd",
        dir.to_str().unwrap(),
    ]
    .map(String::from);
    spawn(bin, &args)
}

/// A Python with nats-py: the repository's `.venv` (scripts/test.sh creates it before the
/// cargo tests run), else `python3` from PATH.
pub fn python_with_nats() -> Option<String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    [venv.display().to_string(), "python3".to_string()]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import nats"])
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// Run a nats-py `script` (it gets the server URL as its argument) and assert it succeeds;
/// skipped, loudly, when no Python with nats-py is found.
pub fn run_nats_py(script: &str, server: &Server, dir: &Path) {
    let Some(python) = python_with_nats() else {
        eprintln!("SKIPPED: no python with nats-py (scripts/test.sh installs it in .venv)");
        return;
    };
    let path = dir.join("script.py");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(python)
        .arg(&path)
        .arg(format!("nats://127.0.0.1:{}", server.port))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client connection without credentials.
pub async fn connect(s: &Server) -> async_nats::Client {
    async_nats::connect(format!("127.0.0.1:{}", s.port))
        .await
        .unwrap()
}

/// A `$JS.API` request; a null body sends an empty payload.
pub async fn api(
    nc: &async_nats::Client,
    subject: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let payload = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    let msg = nc
        .request(subject.to_string(), payload.into())
        .await
        .unwrap();
    serde_json::from_slice(&msg.payload).unwrap()
}

/// The `err_code` of an API error reply.
pub fn err_code(v: &serde_json::Value) -> Option<u64> {
    v["error"]["err_code"].as_u64()
}

/// The reference nats-server: from PATH, else the repository's `.venv` (scripts/test.sh
/// installs it there). Panics when there is none: a comparison without the reference
/// proves nothing, so it must fail rather than pass.
#[allow(
    dead_code,
    reason = "not every test binary including this file uses every helper"
)]
pub fn reference_server() -> String {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nats-server"))
            .find(|p| p.is_file())
    });
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nats-server");
    on_path
        .or_else(|| venv.is_file().then_some(venv))
        .map(|p| p.display().to_string())
        .expect(
            "the reference nats-server is not installed: run scripts/test.sh (it puts it in .venv)",
        )
}

/// Publishes with headers as a request: the PubAck (or error) as JSON.
pub async fn publish_raw(
    nc: &async_nats::Client,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> serde_json::Value {
    let reply = request_text(nc, subject, headers, payload).await;
    serde_json::from_str(&reply).unwrap()
}

/// A request with headers whose reply is kept as text (an empty reply stays empty).
pub async fn request_text(
    nc: &async_nats::Client,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> String {
    let mut h = async_nats::HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, *v);
    }
    let msg = nc
        .request_with_headers(subject.to_string(), h, payload.to_string().into())
        .await
        .unwrap();
    String::from_utf8_lossy(&msg.payload).into_owned()
}
