//! JetStream helpers for the JetStream test binaries; servers come from the workspace's one
//! harness, `testkit` (a free port, readiness from the `Server is ready` log line, the log
//! printed when a test fails, killed on drop).

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

#[allow(
    unused_imports,
    reason = "not every test binary including this file uses every helper"
)]
pub use testkit::{free_port, ServerSpec, TestServer as Server};

/// The natsd under test (`NATSD_TEST_BIN`, else the one cargo built).
pub fn natsd() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| testkit::natsd().display().to_string())
}

/// Starts `bin` with exactly `args` (they name the host and port) and waits until it is ready.
pub fn spawn(bin: &str, args: &[String]) -> Server {
    Server::start_bin(bin, ServerSpec::new().ports_from_config().args(args))
}

/// Starts `bin` with `conf`, where `@PORT@` becomes a free port and `@DIR@` the directory.
#[allow(
    dead_code,
    reason = "not every test binary including this file uses every helper"
)]
pub fn start_conf(bin: &str, conf: &str, dir: &Path) -> Server {
    let text = conf.replace("@DIR@", dir.to_str().unwrap());
    Server::start_bin(bin, ServerSpec::new().config(&text))
}

pub fn start_js(dir: &Path) -> Server {
    start_js_with(natsd(), dir)
}

/// `bin` (natsd or nats-server) on a free loopback port with JetStream storing in `dir`.
pub fn start_js_with(bin: &str, dir: &Path) -> Server {
    Server::start_bin(bin, ServerSpec::new().store_dir(dir))
}

/// Run a nats-py `script` (it gets the server URL as its argument) and assert it succeeds.
/// A missing nats-py fails the test (skipped, loudly, only under `NATSD_SKIP_REFERENCE=1`).
pub fn run_nats_py(script: &str, server: &Server, dir: &Path) {
    let Some(python) = testkit::python_with_nats() else {
        return;
    };
    let path = dir.join("script.py");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(python)
        .arg(&path)
        .arg(server.url())
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

/// The binaries of a differential test: natsd, then the reference nats-server. A missing
/// reference fails the test (a comparison without it proves nothing); only
/// `NATSD_SKIP_REFERENCE=1` leaves it out.
#[allow(
    dead_code,
    reason = "not every test binary including this file uses every helper"
)]
pub fn natsd_and_reference() -> Vec<String> {
    testkit::natsd_and_reference()
        .into_iter()
        .map(|bin| bin.display().to_string())
        .collect()
}

/// The reference nats-server for a test that needs it beside natsd; `None` only under
/// `NATSD_SKIP_REFERENCE=1` (the caller then skips), a failure when it is missing otherwise.
#[allow(
    dead_code,
    reason = "not every test binary including this file uses every helper"
)]
pub fn reference_server() -> Option<String> {
    testkit::reference_server().map(|bin| bin.display().to_string())
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
