//! Options natsd does not implement (issue 12): each one that bears on security or on what is
//! stored refuses the configuration at start (`[FTL]`, non-zero exit, nothing listening) and
//! on reload (the old configuration stays); each harmless one starts with a warning. Every
//! option is one the reference nats-server knows. A configuration whose users are all NKEY
//! users lets only those keys in.

use std::process::{Command, Stdio};
use std::time::Duration;

use natsd::config::{unsupported_options, UnsupportedOption};

use crate::common::{server_under_test_bin, ServerSpec, TestServer};

/// The reference nats-server, or a failure: a comparison that cannot run must not pass
/// (`None` only under `NATSD_SKIP_REFERENCE=1`).
fn reference() -> Option<std::path::PathBuf> {
    testkit::reference_server()
}

/// The system account every config here has, so reloads can be asked for over NATS.
const SYS: &str = "SYS { users: [ { user: sys, password: sys } ] }";

/// A config with `option` in its context; the value `1` does not matter (natsd refuses or
/// ignores the key whatever it holds; nats-server reports a bad value, never an unknown field,
/// for a key it knows).
fn config_with(option: &UnsupportedOption, dir: &std::path::Path) -> String {
    let key = option.key;
    let (top, account) = match option.context {
        "top level" => (format!("{key}: 1"), String::new()),
        "authorization" => (
            format!("authorization {{ default_permissions: {{ publish: \">\" }}, {key}: 1 }}"),
            String::new(),
        ),
        "user" => (
            String::new(),
            format!("A {{ users: [ {{ user: a, password: a, {key}: 1 }} ] }}"),
        ),
        "account" => (String::new(), format!("A {{ {key}: 1 }}")),
        "account jetstream" => (String::new(), format!("A {{ jetstream {{ {key}: 1 }} }}")),
        "account limits" => (String::new(), format!("A {{ limits {{ {key}: 1 }} }}")),
        "jetstream" => (
            format!(
                "jetstream {{ store_dir: \"{}\", {key}: 1 }}",
                dir.join("js").display()
            ),
            String::new(),
        ),
        "tls" => (
            format!(
                "tls {{ cert_file: \"{0}/c.pem\", key_file: \"{0}/k.pem\", {key}: 1 }}",
                dir.display()
            ),
            String::new(),
        ),
        other => panic!("no config for context {other}"),
    };
    format!("{top}\naccounts {{\n  {SYS}\n  {account}\n}}\nsystem_account: SYS\n")
}

fn refusal(option: &UnsupportedOption) -> String {
    format!(
        "option \"{}\" ({}) is not supported by natsd; refusing the configuration",
        option.key, option.what
    )
}

#[test]
fn every_refused_option_fails_the_start_with_ftl() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("refused.conf");
    let mut checked = 0;
    for option in unsupported_options().filter(|o| o.refused) {
        std::fs::write(&conf, config_with(&option, dir.path())).unwrap();
        let out = Command::new(server_under_test_bin())
            .args(["-a", "127.0.0.1", "-p", "-1", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{option:?}: {stderr}");
        assert!(
            stderr.contains("[FTL]"),
            "{option:?}: no [FTL] line: {stderr}"
        );
        assert!(stderr.contains(&refusal(&option)), "{option:?}: {stderr}");
        assert!(!stderr.contains("Server is ready"), "{option:?}: {stderr}");
        let test = Command::new(server_under_test_bin())
            .arg("-t")
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(!test.status.success(), "{option:?}: -t passed");
        checked += 1;
    }
    assert!(checked > 50, "only {checked} refused options");
}

#[test]
fn every_ignored_option_starts_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for option in unsupported_options().filter(|o| !o.refused) {
        let server = TestServer::start(ServerSpec::new().config(&config_with(&option, dir.path())));
        let warning = format!(
            "[WRN] {}",
            server.config_path().display() // the line starts with the file's position
        );
        let log = server.log();
        let line = log
            .lines()
            .find(|l| l.contains(&warning))
            .unwrap_or_else(|| panic!("{option:?}: no warning in {log}"));
        assert!(
            line.ends_with(&format!(
                "option \"{}\" ({}) is not supported by natsd and is ignored",
                option.key, option.what
            )),
            "{option:?}: {line}"
        );
        checked += 1;
    }
    assert!(checked > 30, "only {checked} ignored options");
}

#[test]
fn nats_server_knows_every_option_natsd_refuses_or_ignores() {
    let Some(reference) = reference() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ref.conf");
    for option in unsupported_options() {
        std::fs::write(&conf, config_with(&option, dir.path())).unwrap();
        let out = Command::new(&reference)
            .arg("-t")
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
        assert!(
            !stderr.contains("unknown field") && !stderr.contains("parse error"),
            "nats-server does not know {option:?}: {stderr}"
        );
    }
}

/// Ask the server to reload over NATS as the system user; the reply's `error.description`.
async fn reload_error(sys: &async_nats::Client) -> Option<String> {
    let id = sys.server_info().server_id;
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        sys.request(format!("$SYS.REQ.SERVER.{id}.RELOAD"), "".into()),
    )
    .await
    .expect("reload reply in time")
    .expect("reload reply");
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    body["error"]["description"].as_str().map(str::to_owned)
}

async fn varz_digest(sys: &async_nats::Client) -> String {
    let reply = sys
        .request("$SYS.REQ.SERVER.PING.VARZ", "".into())
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    body["data"]["config_digest"].as_str().unwrap().to_owned()
}

async fn connect(server: &TestServer, user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(server.url())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refused_option_is_refused_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "accounts {{\n  {SYS}\n  A {{ users: [ {{ user: a, password: a }} ] }}\n}}\nsystem_account: SYS\n"
    );
    let server = TestServer::start(ServerSpec::new().config(&base));
    let sys = connect(&server, "sys", "sys").await;
    let digest = varz_digest(&sys).await;
    for option in unsupported_options().filter(|o| o.refused) {
        std::fs::write(server.config_path(), config_with(&option, dir.path())).unwrap();
        let error = reload_error(&sys).await;
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains(&refusal(&option))),
            "{option:?}: {error:?}"
        );
        assert_eq!(varz_digest(&sys).await, digest, "{option:?} was applied");
    }
    // Still the old configuration: the password user logs in, nobody else does.
    connect(&server, "a", "a").await;
    assert!(async_nats::connect(server.url()).await.is_err());
}

/// Users that are all NKEY users (once refused here, now served): the server starts, and
/// reloads, into one that lets only those keys in.
#[tokio::test(flavor = "multi_thread")]
async fn nkey_only_users_never_yield_an_open_server() {
    let key = nkeys::KeyPair::new_user();
    let nkey = key.public_key();
    let seed = key.seed().unwrap();
    let configs = [
        format!("authorization {{ users: [ {{ nkey: {nkey} }} ] }}\n"),
        format!("accounts {{ A {{ users: [ {{ nkey: {nkey} }} ] }} }}\n"),
        format!(
            "accounts {{\n  A {{ users: [ {{ nkey: {nkey}, permissions: {{ subscribe: \">\" }} }} ] }}\n  {SYS}\n}}\nsystem_account: SYS\n"
        ),
    ];
    for text in &configs {
        let server = TestServer::start(ServerSpec::new().config(text));
        assert!(
            async_nats::connect(server.url()).await.is_err(),
            "{text}: anonymous client accepted"
        );
        async_nats::ConnectOptions::with_nkey(seed.clone())
            .connect(server.url())
            .await
            .unwrap();
        if let Some(reference) = reference() {
            let check = Command::new(reference)
                .arg("-t")
                .arg("-c")
                .arg(server.config_path())
                .output()
                .unwrap();
            assert!(check.status.success(), "{text}");
        }
    }

    // A running server with password users, reloaded (by signal and over NATS) into NKEY-only.
    let base = format!(
        "accounts {{\n  {SYS}\n  A {{ users: [ {{ user: a, password: a }} ] }}\n}}\nsystem_account: SYS\n"
    );
    let server = TestServer::start(ServerSpec::new().config(&base));
    let sys = connect(&server, "sys", "sys").await;
    let nkey_only = format!(
        "accounts {{\n  {SYS}\n  A {{ users: [ {{ nkey: {nkey} }} ] }}\n}}\nsystem_account: SYS\n"
    );
    std::fs::write(server.config_path(), &nkey_only).unwrap();
    assert_eq!(reload_error(&sys).await, None);
    assert!(
        async_nats::ConnectOptions::new()
            .connect(server.url())
            .await
            .is_err(),
        "anonymous client accepted"
    );
    async_nats::ConnectOptions::with_nkey(seed)
        .connect(server.url())
        .await
        .unwrap();
    assert!(
        async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
            .connect(server.url())
            .await
            .is_err(),
        "the removed password user logged in"
    );
}
