//! The nats-server command line other people's harnesses rely on: random ports, log files,
//! `-t`, `--version`, `--user/--pass`, lame-duck mode.

use std::process::Command;
use std::time::Duration;

use crate::common::{server_under_test_bin, ServerSpec, Signal, TestServer};

#[tokio::test]
async fn random_port_is_logged_and_served() {
    let server = TestServer::start(ServerSpec::new().arg("-p").arg("-1"));
    assert_ne!(server.port, 0);
    assert!(server.log().contains(&format!(
        "Listening for client connections on 127.0.0.1:{}",
        server.port
    )));
    server.assert_alive().await;
}

#[tokio::test]
async fn log_file_receives_the_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("natsd.log");
    let mut cmd = Command::new(server_under_test_bin());
    cmd.args(["-a", "127.0.0.1", "-p", "-1", "-l"]).arg(&log);
    let mut child = cmd.spawn().unwrap();
    // The log goes to the file only: read it until the ready line shows.
    let (Ok(text) | Err(text)) = testkit::fetch_until(
        Duration::from_secs(20),
        || std::fs::read_to_string(&log).unwrap_or_default(),
        |text| text.contains("Server is ready"),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("Server is ready"), "log file: {text}");
    let line = text
        .lines()
        .find(|l| l.contains("Listening for client connections on"))
        .unwrap();
    let re =
        regex::Regex::new(r"^\[\d+\] \d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{6} \[INF\] Listening")
            .unwrap();
    assert!(re.is_match(line), "nats-server log format: {line}");
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(server_under_test_bin())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_reports_a_2_x_y_nats_version() {
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    let re = regex::Regex::new(r"^nats-server: v2\.\d+\.\d+").unwrap();
    assert!(re.is_match(&stdout), "{stdout}");
}

#[test]
fn test_flag_validates_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.conf");
    std::fs::write(&good, "listen: 127.0.0.1:4333\nmax_payload: 2MB\n").unwrap();
    let (code, _, stderr) = run(&["-t", "-c", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("is valid (sha256:"), "{stderr}");

    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "port: 4333\nfoo_bar: 1\n").unwrap();
    let (code, _, stderr) = run(&["-t", "-c", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.conf:2:1: unknown field \"foo_bar\""),
        "{stderr}"
    );
}

#[test]
fn fatal_start_errors_exit_non_zero_with_ftl() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sys.conf");
    std::fs::write(&conf, "system_account: NOPE\n").unwrap();
    let (code, _, stderr) = run(&["-c", conf.to_str().unwrap(), "-p", "-1"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("[FTL]") && stderr.contains("system account"),
        "{stderr}"
    );
}

#[tokio::test]
async fn user_and_pass_flags_require_those_credentials() {
    let server = TestServer::start(
        ServerSpec::new()
            .arg("--user")
            .arg("alice")
            .arg("--pass")
            .arg("s3cret"),
    );
    let mut raw = server.raw().await;
    assert_eq!(raw.info["auth_required"], true);
    raw.send("CONNECT {\"verbose\":false,\"user\":\"alice\",\"pass\":\"wrong\"}\r\n")
        .await;
    raw.expect("-ERR 'Authorization Violation'\r\n").await;
    raw.expect_closed().await;
    let client =
        async_nats::ConnectOptions::with_user_and_password("alice".into(), "s3cret".into())
            .connect(server.addr())
            .await
            .unwrap();
    crate::common::barrier(&client).await;
}

#[tokio::test]
async fn lame_duck_announces_ldm_then_closes_clients_and_exits() {
    let mut server = TestServer::start(
        ServerSpec::new().config("lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\n"),
    );
    let mut raw = server.raw_ready().await;
    server.signal(Signal::SIGUSR2);
    let info = raw.expect_regex(r"INFO \{[^\r]*\} \r\n").await;
    let text = String::from_utf8_lossy(&info);
    assert!(text.contains("\"ldm\":true"), "{text}");
    raw.read_until_closed(Duration::from_secs(10)).await;
    assert!(raw.is_closed());
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("server exits after lame duck");
    assert!(status.success());
}
