//! `$SYS.REQ.SERVER.<id>.RELOAD`: a reload asked for over NATS by the system account, as
//! nats-server 2.15 answers it (the path `manage` reloads through). The same scenario runs
//! against natsd and the reference nats-server and both must answer alike; the comparison
//! fails when the reference is missing.

use std::time::Duration;

use async_nats::RequestErrorKind;
use serde_json::Value;

use crate::common::{server_under_test_bin, ServerSpec, TestServer};

const CONFIG: &str = "accounts {\n  SYS { users: [ { user: sys, password: sys } ] }\n  A { users: [ { user: a, password: a } ] }\n}\nsystem_account: SYS\n";

async fn connect(server: &TestServer, user: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), user.into())
        .connect(server.url())
        .await
        .unwrap()
}

/// What one request got: a JSON reply, no responders, or nothing within the wait.
#[derive(Debug)]
enum Answer {
    Reply(Value),
    NoResponders,
    Silence,
}

async fn ask(client: &async_nats::Client, subject: String, body: &str, wait: Duration) -> Answer {
    let request = async_nats::Request::new()
        .payload(body.to_owned().into())
        .timeout(Some(wait));
    match client.send_request(subject, request).await {
        Ok(msg) => Answer::Reply(serde_json::from_slice(&msg.payload).unwrap()),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => Answer::NoResponders,
        Err(e) if e.kind() == RequestErrorKind::TimedOut => Answer::Silence,
        Err(e) => panic!("request failed: {e}"),
    }
}

async fn varz(sys: &async_nats::Client, field: &str) -> String {
    match ask(
        sys,
        "$SYS.REQ.SERVER.PING.VARZ".into(),
        "",
        Duration::from_secs(5),
    )
    .await
    {
        Answer::Reply(v) => v["data"][field].as_str().unwrap().to_owned(),
        other => panic!("no VARZ: {other:?}"),
    }
}

async fn load_time(sys: &async_nats::Client) -> String {
    varz(sys, "config_load_time").await
}

/// The scenario, run against `bin`; returns what each step answered, normalised for comparison.
async fn scenario(bin: &str) -> Vec<String> {
    let server = TestServer::start_bin(bin, ServerSpec::new().config(CONFIG));
    let sys = connect(&server, "sys").await;
    let id = sys.server_info().server_id;
    let subject = format!("$SYS.REQ.SERVER.{id}.RELOAD");
    let long = Duration::from_secs(10);
    let mut seen = Vec::new();

    // A plain reload: answered once it is done, with the server block and no error.
    let before = load_time(&sys).await;
    let Answer::Reply(reply) = ask(&sys, subject.clone(), "", long).await else {
        panic!("{bin}: no reload reply")
    };
    assert_eq!(reply["server"]["id"], id.as_str(), "{bin}: {reply}");
    assert!(
        reply.get("error").is_none() && reply.get("data").is_none(),
        "{bin}: {reply}"
    );
    assert_ne!(
        load_time(&sys).await,
        before,
        "{bin}: config_load_time unchanged"
    );
    seen.push(format!("ok keys={:?}", keys(&reply)));
    // The same file gives the same config_digest on both servers.
    seen.push(format!("digest {}", varz(&sys, "config_digest").await));

    // A filter that names this server is answered; one that names another is not.
    let name = reply["server"]["name"].as_str().unwrap().to_owned();
    let Answer::Reply(reply) = ask(
        &sys,
        subject.clone(),
        &format!(r#"{{"server_name":"{name}"}}"#),
        long,
    )
    .await
    else {
        panic!("{bin}: filter naming the server got no reply")
    };
    seen.push(format!("named keys={:?}", keys(&reply)));
    let other = ask(
        &sys,
        subject.clone(),
        r#"{"server_name":"no-such-server"}"#,
        Duration::from_millis(500),
    )
    .await;
    seen.push(format!("other server: {}", kind(&other)));

    // A body that is not a JSON object: code 400.
    let Answer::Reply(reply) = ask(&sys, subject.clone(), "{bad", long).await else {
        panic!("{bin}: bad body got no reply")
    };
    seen.push(format!("bad body: code {}", reply["error"]["code"]));

    // A configuration the server refuses: code 500 naming the problem; nothing changes.
    let before = load_time(&sys).await;
    std::fs::write(server.config_path(), format!("{CONFIG}bogus_field: 1\n")).unwrap();
    let Answer::Reply(reply) = ask(&sys, subject.clone(), "", long).await else {
        panic!("{bin}: refused reload got no reply")
    };
    let description = reply["error"]["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("unknown field \"bogus_field\""),
        "{bin}: {reply}"
    );
    assert_eq!(
        load_time(&sys).await,
        before,
        "{bin}: a refused reload changed the config"
    );
    seen.push(format!("refused: code {}", reply["error"]["code"]));

    // No PING form, and nobody outside the system account gets an answer.
    let ping = ask(&sys, "$SYS.REQ.SERVER.PING.RELOAD".into(), "", long).await;
    seen.push(format!("ping form: {}", kind(&ping)));
    let a = connect(&server, "a").await;
    let outsider = ask(&a, subject, "", long).await;
    seen.push(format!("account A: {}", kind(&outsider)));
    seen
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn kind(a: &Answer) -> &'static str {
    match a {
        Answer::Reply(_) => "reply",
        Answer::NoResponders => "no responders",
        Answer::Silence => "silence",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_request_answers_as_nats_server_does() {
    // Missing, the reference fails the test; under NATSD_SKIP_REFERENCE=1 it is skipped.
    let Some(reference) = testkit::reference_server() else {
        return;
    };
    let mut ours = scenario(&server_under_test_bin()).await;
    let theirs = scenario(&reference.display().to_string()).await;
    assert_eq!(ours, theirs);
    ours.remove(1);
    assert_eq!(
        ours,
        vec![
            r#"ok keys=["server"]"#,
            r#"named keys=["server"]"#,
            "other server: silence",
            "bad body: code 400",
            "refused: code 500",
            "ping form: no responders",
            "account A: no responders",
        ]
    );
}
