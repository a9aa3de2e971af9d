//! Account imports and exports (issue #13): stream and service imports, restricted exports,
//! permissions, reload, another account's JetStream through an API prefix, and mirrors and
//! sources across accounts. Every scenario runs against natsd and the reference nats-server
//! with the same assertions; the reference must be installed (the test fails without it).

// A test binary has no public API, and tests may unwrap.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};

#[path = "support/js_server.rs"]
#[allow(
    dead_code,
    reason = "shared by several test binaries, each using a part"
)]
mod js_server;
use js_server::{api, free_port, natsd_and_reference, start_conf, Server};

/// How long a condition may take to come true.
const WAIT: Duration = Duration::from_secs(10);

/// natsd, then the reference (missing only under `NATSD_SKIP_REFERENCE=1`).
fn servers() -> Vec<String> {
    natsd_and_reference()
}

/// Account A exports events, a service, its JetStream API (to B only) and the deliver
/// subjects of copies into B; B imports them. C imports nothing (the reload test adds one).
fn config(c_imports: &str) -> String {
    format!(
        r#"host: 127.0.0.1
port: @PORT@
jetstream {{ store_dir: "@DIR@" }}
accounts {{
  A: {{
    jetstream: enabled
    users: [
      {{user: a, password: a}}
      {{user: responder, password: r, permissions: {{publish: "_INBOX.>", subscribe: ["svc.>", "_INBOX.>"], allow_responses: true}}}}
    ]
    exports: [
      {{stream: "events.>"}}
      {{stream: "private.>", accounts: [C]}}
      {{service: "svc.>"}}
      {{service: "$JS.API.>", accounts: [B]}}
      {{stream: "deliver.b.>", accounts: [B]}}
      {{service: "one", response_type: singleton}}
      {{service: "many", response_type: stream}}
      {{service: "chunks", response_type: chunked}}
    ]
  }}
  B: {{
    jetstream: enabled
    users: [
      {{user: b, password: b}}
      {{user: limited, password: l, permissions: {{publish: ["a.svc.ok", "_INBOX.>"], subscribe: ">"}}}}
    ]
    imports: [
      {{stream: {{account: A, subject: "events.>"}}, prefix: "from_a"}}
      {{service: {{account: A, subject: "svc.>"}}, to: "a.svc.>"}}
      {{service: {{account: A, subject: "$JS.API.>"}}, to: "JS.A.API.>"}}
      {{stream: {{account: A, subject: "deliver.b.>"}}}}
      {{service: {{account: A, subject: "one"}}}}
      {{service: {{account: A, subject: "many"}}}}
      {{service: {{account: A, subject: "chunks"}}}}
    ]
  }}
  C: {{
    users: [{{user: c, password: c}}]
    {c_imports}
  }}
}}
"#
    )
}

async fn login(s: &Server, user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(format!("127.0.0.1:{}", s.port))
        .await
        .unwrap()
}

/// Returns once the server has handled everything `nc` sent before: the client's own
/// message comes back through a subscription made after them (ops of one connection are
/// handled in order; `flush` only writes them out).
async fn synced(nc: &async_nats::Client) {
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish(inbox, "".into()).await.unwrap();
    next(&mut sub).await;
}

/// The next message of `sub`, failing after [`WAIT`].
async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

/// A stream import delivers under the prefix, only to the importer; a service import answers
/// a request through the exporter's responder (whose replies are allowed by `allow_responses`), with
/// the requester's account in `Nats-Request-Info`; nobody there means "no responders".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_service_imports_match_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, &config(""), dir.path());
        let (a, b, c) = (
            login(&s, "a", "a").await,
            login(&s, "b", "b").await,
            login(&s, "c", "c").await,
        );
        let mut b_events = b.subscribe("from_a.events.>").await.unwrap();
        let mut c_all = c.subscribe(">").await.unwrap();
        synced(&b).await;
        synced(&c).await;
        a.publish("events.eu.1", "e1".into()).await.unwrap();
        a.publish("private.x", "p".into()).await.unwrap();
        // In B's own space `events.x` is B's own subject: A's subscribers never see it.
        let mut a_events = a.subscribe("events.>").await.unwrap();
        synced(&a).await;
        b.publish("events.x", "from b".into()).await.unwrap();
        synced(&b).await;
        a.publish("events.done", "d".into()).await.unwrap();
        let m = next(&mut b_events).await;
        assert_eq!(
            (m.subject.as_str(), &m.payload[..]),
            ("from_a.events.eu.1", &b"e1"[..]),
            "{bin}"
        );
        let first_seen_by_a = next(&mut a_events).await;
        assert_eq!(first_seen_by_a.subject.as_str(), "events.done", "{bin}");
        // C imports nothing: the private export reaches it only through an import.
        c.publish("c.mark", "".into()).await.unwrap();
        loop {
            let m = next(&mut c_all).await;
            if m.subject.as_str() == "c.mark" {
                break;
            }
            assert!(
                m.subject.starts_with("_INBOX."),
                "{bin}: C got {}",
                m.subject
            );
        }

        // No responder in A yet: the request through the import gets "no responders".
        let none = b.request("a.svc.echo", "q".into()).await.unwrap_err();
        assert_eq!(
            none.kind(),
            async_nats::RequestErrorKind::NoResponders,
            "{bin}"
        );
        let responder = login(&s, "responder", "r").await;
        let mut requests = responder.subscribe("svc.>").await.unwrap();
        synced(&responder).await;
        let serve = tokio::spawn({
            let responder = responder.clone();
            async move {
                let mut seen = Vec::new();
                while let Some(req) = requests.next().await {
                    let info = req
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Request-Info"))
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    let info: Value = serde_json::from_str(&info).unwrap_or(Value::Null);
                    let reply = req.reply.clone().unwrap();
                    seen.push(json!({
                        "subject": req.subject.as_str(),
                        "reply_is_mapped": reply.starts_with("_R_."),
                        "acc": info["acc"],
                    }));
                    let answer =
                        format!("{}:{}", req.subject, String::from_utf8_lossy(&req.payload));
                    responder.publish(reply, answer.into()).await.unwrap();
                    responder.flush().await.unwrap();
                    if seen.len() == 2 {
                        break;
                    }
                }
                seen
            }
        });
        let reply = b
            .request("a.svc.echo", "q1".into())
            .await
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        assert_eq!(&reply.payload[..], b"svc.echo:q1", "{bin}");
        // The importer's publish permission applies to the subject it publishes.
        let limited = login(&s, "limited", "l").await;
        let ok = limited
            .request("a.svc.ok", "q2".into())
            .await
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        assert_eq!(&ok.payload[..], b"svc.ok:q2", "{bin}");
        let denied = tokio::time::timeout(
            Duration::from_millis(500),
            limited.request("a.svc.echo", "q3".into()),
        )
        .await;
        assert!(
            !matches!(denied, Ok(Ok(_))),
            "{bin}: a denied publish was answered"
        );
        let seen = serve.await.unwrap();
        results.push(json!({ "seen": seen }));
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// Loading: an import the exporter does not allow (restricted to other accounts), an unknown
/// account and an import of something not exported refuse the file with nats-server's messages.
#[test]
fn refused_imports_read_as_on_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        config("imports: []").replace(
            "imports: []",
            "imports: [{stream: {account: A, subject: \"events.>\"}}, {stream: {account: A, subject: \"deliver.b.x\"}}]",
        ),
        // (A cycle is not among these: nats-server finds one only in some orders of its
        // map of accounts; config/tests.rs checks natsd's answer in file order.)
        "accounts {\n  A: { exports: [{service: \"s.>\", accounts: [A]}] }\n  B: { imports: [{service: {account: A, subject: \"s.x\"}, to: \"y\"}, {stream: {account: A, subject: \"s.x\"}}] }\n}\n".to_string(),
        "accounts {\n  A: { imports: [{stream: {account: Q, subject: \"x\"}}] }\n}\n".to_string(),
    ];
    for text in cases {
        let path = dir.path().join("bad.conf");
        std::fs::write(&path, text.replace("@PORT@", "-1").replace("@DIR@", "/tmp")).unwrap();
        let mut outputs = Vec::new();
        for bin in servers() {
            let out = Command::new(&bin)
                .arg("-t")
                .arg("-c")
                .arg(&path)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{bin} accepted {text}");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            // The reasons, without the program name before the first one.
            let reasons: Vec<String> = stderr
                .lines()
                .filter_map(|l| l.split("bad.conf:").nth(1).map(str::to_string))
                .collect();
            assert!(!reasons.is_empty(), "{bin}: {stderr}");
            outputs.push(reasons);
        }
        testkit::with_reference(&outputs, |ours, theirs| {
            assert_eq!(ours, theirs, "natsd vs nats-server on {text}")
        });
    }
}

/// Sends SIGHUP to `s` after writing `conf` where its configuration file is.
fn reload(s: &Server, dir: &Path, conf: &str) {
    let text = conf
        .replace("@PORT@", &s.port.to_string())
        .replace("@DIR@", dir.to_str().unwrap());
    std::fs::write(s.config_path(), text).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Publishes `events.<n>` from A until C's subscription does (`want`) or does not receive
/// it: each round ends with a marker C publishes itself, which arrives after anything A's
/// publish delivered to C (the server had handled A's publish before).
async fn until_c_receives(
    a: &async_nats::Client,
    c: &async_nats::Client,
    c_sub: &mut async_nats::Subscriber,
    want: bool,
) {
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        a.publish(format!("events.{n}"), "".into()).await.unwrap();
        synced(a).await;
        c.publish("c.mark", "".into()).await.unwrap();
        let mut received = false;
        loop {
            let m = next(c_sub).await;
            if m.subject.as_str() == "c.mark" {
                break;
            }
            received |= m.subject.as_str() == format!("events.{n}");
        }
        if received == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "import never took effect ({want})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Adding and removing an import on reload takes effect for connections already open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_imports_for_live_connections() {
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, &config(""), dir.path());
        let (a, c) = (login(&s, "a", "a").await, login(&s, "c", "c").await);
        let mut c_sub = c.subscribe(">").await.unwrap();
        synced(&c).await;
        until_c_receives(&a, &c, &mut c_sub, false).await;
        reload(
            &s,
            dir.path(),
            &config("imports: [{stream: {account: A, subject: \"events.>\"}}]"),
        );
        until_c_receives(&a, &c, &mut c_sub, true).await;
        reload(&s, dir.path(), &config(""));
        until_c_receives(&a, &c, &mut c_sub, false).await;
    }
}

/// Stream info of `stream` (through `prefix`) once `done` holds.
async fn info_when(
    nc: &async_nats::Client,
    prefix: &str,
    stream: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let subject = format!("{prefix}.STREAM.INFO.{stream}");
    testkit::fetch_until_async(WAIT, async || api(nc, &subject, Value::Null).await, done)
        .await
        .unwrap_or_else(|info| panic!("{stream} never got there: {info}"))
}

/// B uses A's JetStream through the API prefix (the streams are A's), then copies A's stream
/// into its own through `external` (a filtered source from a start sequence, and a mirror);
/// after a restart the copies carry on without gaps or duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_through_an_import_and_cross_account_copies_match_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = start_conf(&bin, &config(""), dir.path());
        let (a, b) = (login(&s, "a", "a").await, login(&s, "b", "b").await);
        let created = api(
            &b,
            "JS.A.API.STREAM.CREATE.ORDERS",
            json!({"name": "ORDERS", "subjects": ["orders.>"], "storage": "file"}),
        )
        .await;
        assert!(created["error"].is_null(), "{bin}: {created}");
        // The stream is A's: A sees it, B's own JetStream does not.
        let in_a = api(&a, "$JS.API.STREAM.INFO.ORDERS", Value::Null).await;
        assert!(in_a["error"].is_null(), "{bin}: {in_a}");
        let in_b = api(&b, "$JS.API.STREAM.INFO.ORDERS", Value::Null).await;
        assert_eq!(in_b["error"]["err_code"], 10059, "{bin}: {in_b}");
        for (i, region) in ["eu", "us", "eu", "eu", "us"].iter().enumerate() {
            let ack = a
                .request(format!("orders.{region}.{i}"), format!("o{i}").into())
                .await
                .unwrap();
            let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
            assert_eq!(ack["seq"], i + 1, "{bin}: {ack}");
        }
        let via_b = info_when(&b, "JS.A.API", "ORDERS", |i| i["state"]["messages"] == 5).await;
        let got = api(&b, "JS.A.API.STREAM.MSG.GET.ORDERS", json!({"seq": 2})).await;
        assert_eq!(got["message"]["subject"], "orders.us.1", "{bin}: {got}");

        // B's own stream takes what arrives through a stream import.
        let evt = json!({"name": "EVT", "subjects": ["from_a.events.>"]});
        assert!(api(&b, "$JS.API.STREAM.CREATE.EVT", evt).await["error"].is_null());
        a.publish("events.stored", "e".into()).await.unwrap();
        let evt = info_when(&b, "$JS.API", "EVT", |i| i["state"]["messages"] == 1).await;

        let external = json!({"api": "JS.A.API", "deliver": "deliver.b"});
        let agg = json!({"name": "AGG", "storage": "file", "sources": [
            {"name": "ORDERS", "filter_subject": "orders.eu.>", "opt_start_seq": 2, "external": external}
        ]});
        let made = api(&b, "$JS.API.STREAM.CREATE.AGG", agg).await;
        assert!(made["error"].is_null(), "{bin}: {made}");
        let mirror = json!({"name": "MIR", "storage": "file", "mirror":
            {"name": "ORDERS", "opt_start_seq": 3, "external": external}});
        let made = api(&b, "$JS.API.STREAM.CREATE.MIR", mirror).await;
        assert!(made["error"].is_null(), "{bin}: {made}");
        let agg1 = info_when(&b, "$JS.API", "AGG", |i| i["state"]["messages"] == 2).await;
        let mir1 = info_when(&b, "$JS.API", "MIR", |i| i["state"]["last_seq"] == 5).await;
        let copied = api(&b, "$JS.API.STREAM.MSG.GET.AGG", json!({"seq": 1})).await;

        // Restart on the same store: the copies resume where they were.
        drop(s);
        s = start_conf(&bin, &config(""), dir.path());
        let (a, b) = (login(&s, "a", "a").await, login(&s, "b", "b").await);
        for i in 5..7 {
            a.request(format!("orders.eu.{i}"), "later".into())
                .await
                .unwrap();
        }
        let agg2 = info_when(&b, "$JS.API", "AGG", |i| i["state"]["messages"] == 4).await;
        let mir2 = info_when(&b, "$JS.API", "MIR", |i| i["state"]["last_seq"] == 7).await;
        let last = api(&b, "$JS.API.STREAM.MSG.GET.AGG", json!({"seq": 4})).await;
        results.push(json!({
            "evt_last": evt["state"]["last_seq"],
            "via_b": via_b["state"]["messages"],
            "agg": [agg1["state"]["messages"], agg1["state"]["last_seq"], agg2["state"]["messages"], agg2["state"]["last_seq"]],
            "agg_source": agg1["sources"][0]["external"],
            "agg_first": copied["message"]["subject"],
            "agg_last": last["message"]["subject"],
            "mir": [mir1["state"]["first_seq"], mir1["state"]["messages"], mir2["state"]["messages"]],
            "mir_external": mir1["mirror"]["external"],
        }));
        drop(s);
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// What a requester in B receives for one request to each response type: a singleton's
/// mapping ends with the first response, a stream's and a chunked one's carry all of them
/// until an empty message (nats-server ends both there). Then `/accountz` lists both accounts' imports and exports as
/// nats-server does (compared as sets: nats-server's order follows its maps), apart from the
/// system imports nats-server adds to every account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_types_and_accountz_match_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let http = free_port();
        let conf = format!("http: \"127.0.0.1:{http}\"\n{}", config(""));
        let s = start_conf(&bin, &conf, dir.path());
        let (a, b) = (login(&s, "a", "a").await, login(&s, "b", "b").await);
        let mut services = a.subscribe("*").await.unwrap();
        synced(&a).await;
        let serve = tokio::spawn({
            let a = a.clone();
            async move {
                while let Some(req) = services.next().await {
                    let Some(reply) = req.reply.clone() else {
                        continue;
                    };
                    for i in 0..3 {
                        a.publish(reply.clone(), format!("r{i}").into())
                            .await
                            .unwrap();
                    }
                    a.publish(reply.clone(), "".into()).await.unwrap();
                    a.publish(reply, "after".into()).await.unwrap();
                    // Reaches B through the stream import after every response above.
                    a.publish(format!("events.done.{}", req.subject), "".into())
                        .await
                        .unwrap();
                }
            }
        });
        let mut done = b.subscribe("from_a.events.done.>").await.unwrap();
        let mut got = BTreeMap::new();
        for service in ["one", "many", "chunks"] {
            let inbox = b.new_inbox();
            let mut replies = b.subscribe(inbox.clone()).await.unwrap();
            synced(&b).await;
            b.publish_with_reply(service, inbox, "q".into())
                .await
                .unwrap();
            // One connection's messages arrive in order: once the marker is here, every
            // response that got through is already in `replies`.
            assert_eq!(
                next(&mut done).await.subject.as_str(),
                format!("from_a.events.done.{service}")
            );
            let mut bodies = Vec::new();
            while let Some(Some(m)) = replies.next().now_or_never() {
                bodies.push(String::from_utf8_lossy(&m.payload).into_owned());
            }
            got.insert(service, bodies);
        }
        serve.abort();
        let want = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(got["one"], want(&["r0"]), "{bin}");
        assert_eq!(got["many"], want(&["r0", "r1", "r2", ""]), "{bin}");
        assert_eq!(got["chunks"], want(&["r0", "r1", "r2", ""]), "{bin}");
        let accountz = |acc: &str| {
            let url = format!("http://127.0.0.1:{http}/accountz?acc={acc}");
            async move {
                let v: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
                let detail = &v["account_detail"];
                // nats-server also lists the imports it gives every account from `$SYS`
                // (its account requests and JetStream API), which natsd does not have.
                let listed = |key: &str| -> Vec<String> {
                    let mut items: Vec<String> = detail[key]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .filter(|i| i["account"] != "$SYS")
                        .map(Value::to_string)
                        .collect();
                    items.sort();
                    items
                };
                let (imports, exports) = (listed("imports"), listed("exports"));
                json!({"imports": imports, "exports": exports})
            }
        };
        let (acc_a, acc_b) = (accountz("A").await, accountz("B").await);
        assert_eq!(
            acc_a["exports"].as_array().unwrap().len(),
            8,
            "{bin}: {acc_a}"
        );
        assert_eq!(
            acc_b["imports"].as_array().unwrap().len(),
            7,
            "{bin}: {acc_b}"
        );
        results.push(json!({ "responses": got, "A": acc_a, "B": acc_b }));
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// `Nats-Request-Info` on a request through a service import: the requesting account (and
/// its round-trip time) only, or with `share: true` the requesting connection as nats-server
/// describes it (id, host, start, user, name, client library, server, kind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_info_shares_the_requester_as_nats_server() {
    let conf = r#"host: 127.0.0.1
port: @PORT@
accounts {
  A: { users: [{user: a, password: a}], exports: [{service: "plain"}, {service: "shared"}] }
  B: {
    users: [{user: b, password: b}]
    imports: [
      {service: {account: A, subject: "plain"}}
      {service: {account: A, subject: "shared"}, share: true}
    ]
  }
}
"#;
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, conf, dir.path());
        let a = login(&s, "a", "a").await;
        let mut requests = a.subscribe("*").await.unwrap();
        synced(&a).await;
        let b = async_nats::ConnectOptions::with_user_and_password("b".into(), "b".into())
            .name("requester")
            .connect(format!("127.0.0.1:{}", s.port))
            .await
            .unwrap();
        let (cid, server_name) = {
            let info = b.server_info();
            (info.client_id, info.server_name.clone())
        };
        let mut seen = Vec::new();
        for subject in ["plain", "shared"] {
            let request = tokio::spawn({
                let b = b.clone();
                async move { b.request(subject, "q".into()).await }
            });
            let req = next(&mut requests).await;
            let info: Value = req
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Request-Info"))
                .and_then(|v| serde_json::from_str(v.as_str()).ok())
                .unwrap_or(Value::Null);
            a.publish(req.reply.clone().unwrap(), "ok".into())
                .await
                .unwrap();
            request.await.unwrap().unwrap();
            if subject == "shared" {
                assert_eq!(info["id"], cid, "{bin}: {info}");
                assert_eq!(info["server"], server_name.as_str(), "{bin}: {info}");
                assert!(info["start"].as_str().is_some_and(|t| t.ends_with('Z')));
            }
            // The round trip is measured at different moments (docs/differences.md).
            let mut fields: Vec<String> = info
                .as_object()
                .map(|o| o.keys().filter(|k| *k != "rtt").cloned().collect())
                .unwrap_or_default();
            fields.sort();
            seen.push(json!({
                "fields": fields,
                "values": [&info["acc"], &info["host"], &info["user"], &info["name"],
                           &info["lang"], &info["kind"], &info["client_type"]],
            }));
        }
        results.push(seen);
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
    assert_eq!(results[0][1]["values"][2], "b");
}
