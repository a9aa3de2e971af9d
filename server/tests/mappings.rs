//! Subject mappings (top level, per account, from account JWTs): every scenario runs against
//! natsd and the reference nats-server with the same assertions and compares what was seen;
//! the reference must be installed (the test fails without it unless
//! `NATSD_SKIP_REFERENCE=1`).

// A test binary has no public API, and tests may unwrap.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use testkit::jwt::Operator;
use testkit::{ServerSpec, Signal, TestServer as Server};

/// How long a condition may take to come true.
const WAIT: Duration = Duration::from_secs(10);

fn servers() -> Vec<std::path::PathBuf> {
    testkit::natsd_and_reference()
}

const CONFIG: &str = r#"
jetstream { store_dir: "@DIR@" }
authorization { users: [{user: g, password: g}] }
mappings {
  "orders.new": "orders.created"
  "in.*.*": "out.$2.{{wildcard(1)}}"
  "w": [ {destination: "w.x", weight: 50%}, {destination: "w.y", weight: 50} ]
  "part": [ {destination: "part.x", weight: 30} ]
  "clu": [ {destination: "clu.east", weight: 100, cluster: "east"} ]
}
accounts {
  A {
    jetstream: enabled
    users: [
      {user: a, password: a}
      {user: p, password: p, permissions: {publish: ["p.src", "q.dst", "end", "_INBOX.>"], subscribe: ">"}}
    ]
    mappings {
      "p.src": "p.dst"
      "q.src": "q.dst"
      "a.src": "a.dst"
      "svc": "svc.real"
    }
  }
}
"#;

fn start(bin: &std::path::Path, conf: &str, dir: &std::path::Path) -> Server {
    let text = conf.replace("@DIR@", dir.to_str().unwrap());
    Server::start_bin(bin, ServerSpec::new().config(&text).monitor())
}

async fn login(s: &Server, user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(s.addr())
        .await
        .unwrap()
}

/// The subjects `sub` receives until one named `end` (which `nc` publishes last, so it comes
/// after everything published before on the same connection), counted.
async fn collect_until_end(
    nc: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
) -> BTreeMap<String, u32> {
    nc.publish("end", "".into()).await.unwrap();
    let mut seen = BTreeMap::new();
    loop {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("a message in time")
            .expect("subscription open");
        if m.subject.as_str() == "end" {
            return seen;
        }
        *seen.entry(m.subject.to_string()).or_insert(0) += 1;
    }
}

/// `/accountz?acc=` mappings, each destination list sorted by subject (nats-server orders
/// equal weights at random).
async fn accountz_mappings(s: &Server, acc: &str) -> Value {
    let v = testkit::http::get_json(&format!("{}/accountz?acc={acc}", s.monitor_url())).await;
    let mut m = v["account_detail"]["mappings"].clone();
    if let Some(obj) = m.as_object_mut() {
        for dests in obj.values_mut() {
            if let Some(list) = dests.as_array_mut() {
                list.sort_by_key(|d| d["subject"].as_str().unwrap_or("").to_string());
            }
        }
    }
    m
}

/// Plain, wildcard (tokens reordered) and weighted mappings of the global account; a
/// cluster-scoped destination on a node in no cluster; an account's mappings applied before
/// the publish permission check (which sees the mapped subject); a request's reply subject
/// kept; JetStream storing the mapped subject; `/accountz` listing the mappings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_route_publishes_as_on_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(&bin, CONFIG, dir.path());
        let g = login(&s, "g", "g").await;
        let mut all = g.subscribe(">").await.unwrap();
        g.flush().await.unwrap();
        g.publish("orders.new", "".into()).await.unwrap();
        g.publish("in.a.b", "".into()).await.unwrap();
        g.publish("clu", "".into()).await.unwrap();
        for _ in 0..1000 {
            g.publish("w", "".into()).await.unwrap();
            g.publish("part", "".into()).await.unwrap();
        }
        let seen = collect_until_end(&g, &mut all).await;
        let count = |k: &str| seen.get(k).copied().unwrap_or(0);
        for k in ["w.x", "w.y"] {
            assert!((350..=650).contains(&count(k)), "{bin:?}: {k} {seen:?}");
        }
        assert_eq!(count("w.x") + count("w.y"), 1000, "{bin:?}: {seen:?}");
        assert_eq!(count("w"), 0, "{bin:?}: {seen:?}");
        assert!((150..=450).contains(&count("part.x")), "{bin:?}: {seen:?}");
        assert_eq!(count("part.x") + count("part"), 1000, "{bin:?}: {seen:?}");
        let exact: BTreeMap<&String, &u32> = seen
            .iter()
            .filter(|(k, _)| !k.starts_with("w") && !k.starts_with("part"))
            .collect();

        // Account A: permission checks see the mapped subject.
        let a = login(&s, "a", "a").await;
        let p = login(&s, "p", "p").await;
        let mut a_all = a.subscribe(">").await.unwrap();
        // Through its own subscription: the server has it before p publishes (a flush only
        // proves it was written).
        a.publish("ready", "".into()).await.unwrap();
        let ready = tokio::time::timeout(WAIT, a_all.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ready.subject.as_str(), "ready");
        for subject in ["p.src", "q.src", "a.src"] {
            p.publish(subject, "".into()).await.unwrap();
        }
        p.flush().await.unwrap();
        // The marker goes through p so it follows p's publishes.
        let mut marker = p.subscribe("end").await.unwrap();
        p.publish("end", "".into()).await.unwrap();
        tokio::time::timeout(WAIT, marker.next())
            .await
            .unwrap()
            .unwrap();
        let a_seen = collect_until_end(&a, &mut a_all).await;
        drop(a_all);

        // A request through a mapping: the responder sees the mapped subject, the reply
        // subject is the requester's own.
        let mut svc = a.subscribe("svc.real").await.unwrap();
        a.flush().await.unwrap();
        let responder = tokio::spawn({
            let a = a.clone();
            async move {
                let req = tokio::time::timeout(WAIT, svc.next())
                    .await
                    .unwrap()
                    .unwrap();
                let reply = req.reply.clone().unwrap();
                a.publish(reply.clone(), req.subject.to_string().into())
                    .await
                    .unwrap();
                reply.starts_with("_INBOX.")
            }
        });
        let answer = tokio::time::timeout(WAIT, a.request("svc", "".into()))
            .await
            .unwrap()
            .unwrap();
        assert!(
            responder.await.unwrap(),
            "{bin:?}: reply subject not an inbox"
        );

        // JetStream stores the mapped subject.
        let js = async_nats::jetstream::new(a.clone());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "S".into(),
            subjects: vec!["a.dst".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let ack = js
            .publish("a.src", "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
        let mut stream = js.get_stream("S").await.unwrap();
        let stored = stream.get_raw_message(1).await.unwrap();
        let messages = stream.info().await.unwrap().state.messages;

        results.push(json!({
            "global": exact,
            "account": a_seen,
            "answer": String::from_utf8_lossy(&answer.payload),
            "ack_stream": ack.stream,
            "stored_subject": stored.subject.to_string(),
            "messages": messages,
            "accountz_g": accountz_mappings(&s, "$G").await,
            "accountz_a": accountz_mappings(&s, "A").await,
        }));
    }
    let ours = &results[0];
    assert_eq!(ours["global"]["orders.created"], 1, "{ours}");
    assert_eq!(ours["global"]["out.b.a"], 1, "{ours}");
    assert_eq!(ours["account"]["q.dst"], 1, "{ours}");
    assert_eq!(ours["stored_subject"], "a.dst", "{ours}");
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// A request through a service import is mapped again by the exporting account's mappings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_imports_are_mapped_in_the_exporter() {
    let conf = r#"
accounts {
  E {
    users: [{user: e, password: e}]
    exports: [{service: "esvc"}]
    mappings { "esvc": "esvc.real" }
  }
  I {
    users: [{user: i, password: i}]
    imports: [{service: {account: E, subject: "esvc"}}]
  }
}
"#;
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(&bin, conf, dir.path());
        let e = login(&s, "e", "e").await;
        let i = login(&s, "i", "i").await;
        let mut svc = e.subscribe("esvc.>").await.unwrap();
        let mut plain = e.subscribe("esvc").await.unwrap();
        // A message through its own subscription proves the server has both SUBs (a flush
        // only proves they were written).
        e.publish("esvc.ready", "".into()).await.unwrap();
        let ready = tokio::time::timeout(WAIT, svc.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ready.subject.as_str(), "esvc.ready");
        let responder = tokio::spawn({
            let e = e.clone();
            async move {
                let req = tokio::time::timeout(WAIT, svc.next())
                    .await
                    .unwrap()
                    .unwrap();
                e.publish(req.reply.clone().unwrap(), req.subject.to_string().into())
                    .await
                    .unwrap();
            }
        });
        let answer = tokio::time::timeout(WAIT, i.request("esvc", "".into()))
            .await
            .unwrap()
            .unwrap();
        responder.await.unwrap();
        let unmapped = tokio::time::timeout(Duration::from_millis(200), plain.next())
            .await
            .is_ok();
        assert!(
            !unmapped,
            "{bin:?}: the unmapped subject reached the exporter"
        );
        results.push(String::from_utf8_lossy(&answer.payload).into_owned());
    }
    assert_eq!(results[0], "esvc.real");
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// A reload adds a mapping, then another removes it; publishes follow each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_mappings() {
    let plain = "authorization { users: [{user: g, password: g}] }\n";
    let mapped = format!("{plain}mappings {{ \"r.src\": \"r.dst\" }}\n");
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(&bin, plain, dir.path());
        let g = login(&s, "g", "g").await;
        let mut all = g.subscribe("r.*").await.unwrap();
        let mut steps = Vec::new();
        for conf in [plain, &mapped, plain] {
            std::fs::write(s.config_path(), conf).unwrap();
            let from = s.log_len();
            s.signal(Signal::SIGHUP);
            assert!(
                s.wait_for_log_since(from, "Reloaded server configuration", WAIT)
                    .is_some(),
                "{bin:?}: no reload"
            );
            g.publish("r.src", "".into()).await.unwrap();
            let m = tokio::time::timeout(WAIT, all.next())
                .await
                .unwrap()
                .unwrap();
            steps.push(m.subject.to_string());
        }
        assert_eq!(steps[..2], ["r.src", "r.dst"], "{bin:?}");
        // nats-server keeps a top-level mapping a reload removes (until a restart); natsd
        // drops it, as the file says (docs/differences.md).
        if results.is_empty() {
            assert_eq!(steps[2], "r.src");
        }
        results.push(steps[..2].to_vec());
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// `-t` refuses invalid mappings on both servers with the same reasons (compared without
/// positions and sorted: nats-server reads a block's entries in no set order).
#[test]
fn invalid_mappings_are_refused_alike() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        "mappings { \"a.*\": \"b.$2\" }",
        "mappings { \"w\": [ {destination: x, weight: 60%}, {destination: y, weight: 60%} ] }",
        "mappings { \"w\": [ {destination: x, weight: 10}, {destination: x, weight: 10} ] }",
        "mappings { \"q\": {destination: z, weight: \"abc\"} }",
        "mappings { \"q\": {destination: z, weight: 101} }",
        "mappings { \"r\": [ {destination: z} ] }",
        "mappings { \"s\": [ {destination: z, weight: 10, foo: 1} ] }",
        "mappings { \"a..b\": c }",
        "mappings { \"t\": \"{{nope(1)}}\" }",
        "mappings { \"u\": 5 }",
        "accounts { A { mappings { \"k.>\": l } } }",
    ];
    for text in cases {
        let path = dir.path().join("bad.conf");
        std::fs::write(&path, text).unwrap();
        let mut outputs = Vec::new();
        for bin in servers() {
            let out = Command::new(&bin)
                .arg("-t")
                .arg("-c")
                .arg(&path)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{bin:?} accepted {text}");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let mut reasons: Vec<String> = stderr
                .lines()
                .filter_map(|l| l.split("bad.conf:").nth(1))
                .map(|r| r.split_once(": ").map_or(r, |(_, m)| m).to_string())
                .collect();
            reasons.sort();
            assert!(!reasons.is_empty(), "{bin:?}: {stderr}");
            outputs.push(reasons);
        }
        testkit::with_reference(&outputs, |ours, theirs| {
            assert_eq!(ours, theirs, "natsd vs nats-server on {text}")
        });
    }
}

/// An account JWT's `mappings` apply like configured ones (a destination without a weight
/// takes all), including weighted ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_jwt_mappings_apply() {
    let op = Operator::new();
    let conf = op.config(json!({
        "mappings": {
            "j.src": [{"subject": "j.dst"}],
            "j.*.*": [{"subject": "j.r.$2.$1", "weight": 100}],
            "j.w": [{"subject": "j.x", "weight": 50}, {"subject": "j.y", "weight": 50}]
        }
    }));
    let (jwt, user) = op.user(&op.a, json!({}), json!({}));
    let creds = testkit::jwt::creds(&jwt, &user);
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(&bin, &conf, dir.path());
        let nc = async_nats::ConnectOptions::with_credentials(&creds)
            .unwrap()
            .connect(s.addr())
            .await
            .unwrap();
        let mut all = nc.subscribe(">").await.unwrap();
        nc.flush().await.unwrap();
        nc.publish("j.src", "".into()).await.unwrap();
        nc.publish("j.a.b", "".into()).await.unwrap();
        for _ in 0..1000 {
            nc.publish("j.w", "".into()).await.unwrap();
        }
        let seen = collect_until_end(&nc, &mut all).await;
        let count = |k: &str| seen.get(k).copied().unwrap_or(0);
        for k in ["j.x", "j.y"] {
            assert!((350..=650).contains(&count(k)), "{bin:?}: {k} {seen:?}");
        }
        results.push(json!({
            "src": count("j.dst"),
            "reordered": count("j.r.b.a"),
            "weighted": count("j.x") + count("j.y"),
            "unmapped": count("j.src") + count("j.a.b") + count("j.w"),
        }));
    }
    assert_eq!(
        results[0],
        json!({"src": 1, "reordered": 1, "weighted": 1000, "unmapped": 0})
    );
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}
