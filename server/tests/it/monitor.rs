//! Process-level behaviour: monitoring endpoints, pid file, signals.

use std::time::Duration;

use crate::common::{ServerSpec, Signal, TestServer};

#[tokio::test]
async fn varz_answers_with_basic_fields() {
    let server = TestServer::start(ServerSpec::new().monitor());
    let client = server.client().await;
    client.publish("x", "12345".into()).await.unwrap();
    crate::common::barrier(&client).await;

    let varz = server.http_json("/varz").await;
    let server_id = varz["server_id"].as_str().unwrap();
    assert_eq!(server_id.len(), 56);
    let version = varz["version"].as_str().unwrap();
    assert!(
        version.starts_with("2.") && version.split('.').count() == 3,
        "{version}"
    );
    assert_eq!(varz["port"], server.port);
    assert_eq!(varz["max_payload"], 1_048_576);
    assert_eq!(varz["connections"], 1);
    assert!(varz["in_msgs"].as_u64().unwrap() >= 1);
    assert!(varz["in_bytes"].as_u64().unwrap() >= 5);
    assert!(varz["now"].is_string());
    assert!(varz["uptime"].is_string());
    let info_id = server.raw().await.info["server_id"].clone();
    assert_eq!(varz["server_id"], info_id, "/varz and INFO agree on the id");
}

#[tokio::test]
async fn healthz_is_ok() {
    let server = TestServer::start(ServerSpec::new().monitor());
    let testkit::http::Response { status, body, .. } = server.http_get("/healthz").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json, serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn pid_file_holds_bare_digits_of_the_process() {
    let server = TestServer::start(ServerSpec::new().pid_file());
    let content = std::fs::read_to_string(server.pid_path()).unwrap();
    assert!(
        !content.is_empty() && content.bytes().all(|b| b.is_ascii_digit()),
        "bare digits, no newline: {content:?}"
    );
    assert_eq!(content.parse::<u32>().unwrap(), server.pid());
}

#[tokio::test]
async fn sigterm_exits_cleanly_with_code_0() {
    let mut server = TestServer::plain();
    let mut c = server.raw_ready().await;
    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    c.read_until_closed(Duration::from_secs(5)).await;
}

/// `<bin> --signal reload=<pidfile>` makes the running server re-read its config.
#[tokio::test]
async fn signal_reload_applies_new_config() {
    let server = TestServer::start(ServerSpec::new().config("max_payload: 4096\n").pid_file());
    assert_eq!(server.raw().await.info["max_payload"], 4096);
    std::fs::write(server.config_path(), "max_payload: 2048\n").unwrap();
    let status = std::process::Command::new(server.bin())
        .arg("--signal")
        .arg(format!("reload={}", server.pid_path().display()))
        .status()
        .unwrap();
    assert!(status.success(), "--signal reload exit {status}");
    // Reload is asynchronous; poll new connections until the new limit shows.
    testkit::eventually_async(Duration::from_secs(10), "the reload to apply", async || {
        server.raw().await.info["max_payload"] == 2048
    })
    .await;
    let mut c = server.raw_ready().await;
    c.send("PUB foo 2049\r\n").await;
    c.expect("-ERR 'Maximum Payload Violation'\r\n").await;
}
