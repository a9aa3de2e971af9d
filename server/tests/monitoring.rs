//! HTTP monitoring and `/metrics`, checked against the real nats-server where one is installed.
#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use testkit::{ServerSpec, TestServer};

/// A server on random ports (`-p -1 -m -1`, read back from its log), killed on drop.
struct Proc {
    client_port: u16,
    http_port: u16,
    metrics_port: Option<u16>,
    _server: TestServer,
}

/// Start `bin` with `args` and wait for `Server is ready`, reading the ports from its log.
fn spawn(bin: impl AsRef<Path>, args: &[&str]) -> Proc {
    let server = TestServer::start_bin(
        bin.as_ref(),
        ServerSpec::new().ports_from_config().args(args),
    );
    let metrics_port = server
        .log_since(0)
        .iter()
        .find_map(|line| port_after(line, "Starting prometheus metrics on"));
    Proc {
        client_port: server.port,
        http_port: server.monitor_port.expect("monitor port in log"),
        metrics_port,
        _server: server,
    }
}

fn port_after(line: &str, marker: &str) -> Option<u16> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.trim().rsplit(':').next()?.parse().ok()
}

/// natsd with the monitor on; `NATSD_TEST_LOG=1` echoes its log (at debug and trace level).
fn natsd(extra: &[&str]) -> Proc {
    let mut args = vec!["-a", "127.0.0.1", "-p", "-1", "-m", "-1"];
    if std::env::var_os("NATSD_TEST_LOG").is_some() {
        args.push("-DV");
    }
    args.extend_from_slice(extra);
    spawn(testkit::natsd(), &args)
}

/// The reference with the monitor on: a failure when it is missing, `None` only under
/// `NATSD_SKIP_REFERENCE=1` (the comparison is then skipped).
fn nats_server() -> Option<Proc> {
    let bin = testkit::reference_server()?;
    Some(spawn(bin, &["-a", "127.0.0.1", "-p", "-1", "-m", "-1"]))
}

/// Status code, content type and body of a GET.
async fn get(port: u16, path: &str) -> (u16, String, String) {
    let resp = testkit::http::get(&format!("http://127.0.0.1:{port}{path}")).await;
    (resp.status, resp.content_type, resp.body)
}

/// The JSON of a GET that must answer 200.
async fn get_json(port: u16, path: &str) -> Value {
    testkit::http::get_json(&format!("http://127.0.0.1:{port}{path}")).await
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Compare the shape of two JSON values: same keys (less `ignore`), same value types,
/// recursively; arrays by their first elements.
fn same_shape(path: &str, ours: &Value, theirs: &Value, ignore: &[&str], diffs: &mut Vec<String>) {
    if kind(ours) != kind(theirs) {
        diffs.push(format!(
            "{path}: natsd {} vs nats-server {}",
            kind(ours),
            kind(theirs)
        ));
        return;
    }
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: BTreeSet<&String> =
                a.keys().filter(|k| !ignore.contains(&k.as_str())).collect();
            let kb: BTreeSet<&String> =
                b.keys().filter(|k| !ignore.contains(&k.as_str())).collect();
            for k in ka.symmetric_difference(&kb) {
                let side = if a.contains_key(*k) {
                    "only natsd"
                } else {
                    "only nats-server"
                };
                diffs.push(format!("{path}.{k}: {side}"));
            }
            for k in ka.intersection(&kb) {
                same_shape(&format!("{path}.{k}"), &a[*k], &b[*k], ignore, diffs);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            // Subscription lists come in map order on both servers: compare them by sid.
            let by_sid = |list: &Vec<Value>| {
                let mut list = list.clone();
                list.sort_by_key(|v| v["sid"].as_str().unwrap_or_default().to_string());
                list
            };
            let (a, b) = (by_sid(a), by_sid(b));
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                same_shape(&format!("{path}[0]"), x, y, ignore, diffs);
            }
        }
        _ => {}
    }
}

/// Two clients (one named subscriber with a plain and a queue subscription, one publisher),
/// three messages delivered.
async fn scenario(port: u16, http_port: u16) -> (async_nats::Client, async_nats::Client) {
    let url = format!("nats://127.0.0.1:{port}");
    let sub_client = async_nats::ConnectOptions::new()
        .name("c1")
        .connect(&url)
        .await
        .unwrap();
    let mut subscriber = sub_client.subscribe("foo.*").await.unwrap();
    let _queue = sub_client
        .queue_subscribe("bar", "q1".to_string())
        .await
        .unwrap();
    // async-nats `flush()` is no server round trip: wait until the server holds both.
    wait_for_json(http_port, "/connz?subs=1", |v| {
        v["connections"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["name"] == "c1" && c["subscriptions"] == 2)
        })
    })
    .await;
    let publisher = async_nats::connect(&url).await.unwrap();
    for _ in 0..3 {
        publisher.publish("foo.x", "hello".into()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(5), subscriber.next())
            .await
            .unwrap()
            .unwrap();
    }
    // Keep the subscriptions alive with the client.
    std::mem::forget(subscriber);
    std::mem::forget(_queue);
    (sub_client, publisher)
}

#[tokio::test]
async fn endpoints_have_nats_server_shapes_and_counters() {
    let Some(real) = nats_server() else {
        return;
    };
    let ours = natsd(&[]);
    let _ours_clients = scenario(ours.client_port, ours.http_port).await;
    let _real_clients = scenario(real.client_port, real.http_port).await;

    // Keys nats-server has that natsd legitimately lacks (or the reverse), per endpoint.
    let cases: &[(&str, &[&str])] = &[
        ("/varz", &["natsd_version"]),
        ("/connz?subs=detail&auth=true", &[]),
        ("/connz?subs=1", &[]),
        ("/connz?sort=msgs_from&limit=1&offset=1", &[]),
        // The system account's own service imports: natsd has no internal services.
        ("/accountz", &[]),
        ("/accountz?acc=$G", &["imports"]),
        ("/accstatz", &[]),
        ("/accstatz?unused=1", &[]),
        ("/subsz", &[]),
        ("/subsz?subs=1&test=foo.x", &[]),
        ("/subscriptionsz?subs=1&test=foo.x", &[]),
        ("/jsz", &[]),
        ("/jsz?accounts=true", &[]),
        ("/routez", &[]),
        ("/gatewayz", &[]),
        ("/leafz", &[]),
    ];
    let mut diffs = Vec::new();
    for (path, ignore) in cases {
        let a = get_json(ours.http_port, path).await;
        let b = get_json(real.http_port, path).await;
        same_shape(path, &a, &b, ignore, &mut diffs);
    }
    assert!(diffs.is_empty(), "shape differences:\n{}", diffs.join("\n"));

    // Counters both servers must agree on.
    let a = get_json(ours.http_port, "/varz").await;
    let b = get_json(real.http_port, "/varz").await;
    for key in [
        "connections",
        "total_connections",
        "in_msgs",
        "in_bytes",
        "out_msgs",
        "out_bytes",
        "in_client_msgs",
        "out_client_msgs",
        "slow_consumers",
        "max_payload",
        "max_connections",
        "ping_interval",
        "write_deadline",
        "http_port",
    ] {
        assert_eq!(a[key], b[key], "/varz {key}");
    }
    assert_eq!(a["http_req_stats"]["/varz"], 2, "{}", a["http_req_stats"]);

    let a = get_json(ours.http_port, "/connz?subs=detail&auth=true").await;
    let b = get_json(real.http_port, "/connz?subs=detail&auth=true").await;
    assert_eq!(a["num_connections"], b["num_connections"]);
    for (x, y) in a["connections"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["connections"].as_array().unwrap())
    {
        for key in [
            "kind",
            "type",
            "ip",
            "in_msgs",
            "out_msgs",
            "in_bytes",
            "out_bytes",
            "subscriptions",
            "name",
            "lang",
            "name_tag",
        ] {
            assert_eq!(x[key], y[key], "/connz {key}");
        }
        // Both servers list a connection's subscriptions in map order: compare them by sid.
        let strip_cid = |v: &Value| {
            let mut v = v.clone();
            for s in v.as_array_mut().into_iter().flatten() {
                s.as_object_mut().unwrap().remove("cid");
            }
            if let Some(list) = v.as_array_mut() {
                list.sort_by_key(|s| s["sid"].as_str().unwrap_or_default().to_string());
            }
            v
        };
        assert_eq!(
            strip_cid(&x["subscriptions_list_detail"]),
            strip_cid(&y["subscriptions_list_detail"])
        );
    }

    let a = get_json(ours.http_port, "/subsz?subs=1&test=foo.x").await;
    let b = get_json(real.http_port, "/subsz?subs=1&test=foo.x").await;
    assert_eq!(a["total"], 1);
    assert_eq!(a["total"], b["total"]);
    assert_eq!(a["subscriptions_list"][0]["subject"], "foo.*");
    assert_eq!(
        a["subscriptions_list"][0]["msgs"],
        b["subscriptions_list"][0]["msgs"]
    );

    let a = get_json(ours.http_port, "/accstatz").await;
    let b = get_json(real.http_port, "/accstatz").await;
    let g = |v: &Value| {
        v["account_statz"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["acc"] == "$G")
            .cloned()
            .unwrap()
    };
    for key in ["conns", "total_conns", "sent", "received"] {
        assert_eq!(g(&a)[key], g(&b)[key], "/accstatz {key}");
    }

    let a = get_json(ours.http_port, "/accountz").await;
    let b = get_json(real.http_port, "/accountz").await;
    let names = |v: &Value| -> BTreeSet<String> {
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&a), names(&b));
    assert_eq!(a["system_account"], b["system_account"]);

    let a = get_json(ours.http_port, "/jsz").await;
    let b = get_json(real.http_port, "/jsz").await;
    for key in ["disabled", "config", "api", "streams", "total"] {
        assert_eq!(a[key], b[key], "/jsz {key}");
    }
}

#[tokio::test]
async fn errors_and_plain_answers_match_nats_server() {
    let Some(real) = nats_server() else {
        return;
    };
    let ours = natsd(&[]);
    for path in [
        "/connz?limit=abc",
        "/connz?offset=1x",
        "/connz?subs=xyz",
        "/connz?auth=maybe",
        "/connz?sort=bogus",
        "/connz?sort=stop",
        "/connz?sort=reason&state=all",
        "/connz?state=bogus",
        "/connz?cid=abc",
        "/subsz?test=foo.*",
        "/subsz?subs=2",
        "/accountz?acc=NOPE",
        "/jsz?accounts=zz",
        "/healthz",
        "/healthz?js-enabled-only=true",
        "/healthz?js-server-only=xyz",
        "/healthz?stream=S",
        "/healthz?stream=S&details=true",
        "/healthz?consumer=C&account=A",
        "/healthz?account=A&stream=S",
        "/nope",
    ] {
        let (sa, ta, ba) = get(ours.http_port, path).await;
        let (sb, tb, bb) = get(real.http_port, path).await;
        assert_eq!(sa, sb, "{path}: status ({ba} vs {bb})");
        assert_eq!(ba.trim_end(), bb.trim_end(), "{path}: body");
        assert_eq!(ta, tb, "{path}: content type");
    }
    let (_, _, ours_acc) = get(ours.http_port, "/connz?acc=NOPE").await;
    let (_, _, real_acc) = get(real.http_port, "/connz?acc=NOPE").await;
    let (a, b): (Value, Value) = (
        serde_json::from_str(&ours_acc).unwrap(),
        serde_json::from_str(&real_acc).unwrap(),
    );
    assert_eq!(a["connections"], b["connections"]);
    assert_eq!(a["server_id"], b["server_id"]);
}

#[tokio::test]
async fn headers_pretty_json_and_root_page() {
    let ours = natsd(&[]);
    let url = format!("http://127.0.0.1:{}/varz", ours.http_port);
    let (cors, ctype, body) = tokio::task::spawn_blocking(move || {
        let resp = reqwest::blocking::get(url).unwrap();
        let header = |name: &str| resp.headers()[name].to_str().unwrap().to_string();
        let (cors, ctype) = (
            header("access-control-allow-origin"),
            header("content-type"),
        );
        (cors, ctype, resp.text().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(cors, "*");
    assert_eq!(ctype, "application/json");
    assert!(body.starts_with("{\n  \"server_id\": "), "{body}");
    let (status, ctype, page) = get(ours.http_port, "/").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    for link in [
        "varz", "connz", "subsz", "accountz", "accstatz", "jsz", "healthz",
    ] {
        assert!(
            page.contains(&format!("./{link}")),
            "{link} missing: {page}"
        );
    }
}

const TENANTS: &str = r#"
accounts {
  A { users: [ { user: a, password: pa } ] }
  B { users: [ { user: b, password: pb } ] }
}
metrics_port: -1
"#;

async fn tenant(port: u16, user: &str, pass: &str, name: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), pass.into())
        .name(name)
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap()
}

fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, account: Option<&str>) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| account.is_none_or(|a| s.labels.get("account") == Some(a)))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {account:?}: {found:?}");
    found[0]
}

#[tokio::test]
async fn two_tenants_are_reported_apart() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("tenants.conf");
    std::fs::write(&conf, TENANTS).unwrap();
    let ours = natsd(&["-c", conf.to_str().unwrap()]);
    let metrics_port = ours.metrics_port.expect("metrics port in log");

    // The system account's own request subscriptions are counted too.
    let internal = get_json(ours.http_port, "/subsz").await["num_subscriptions"]
        .as_u64()
        .unwrap();
    let a_sub = tenant(ours.client_port, "a", "pa", "a-sub").await;
    let a_pub = tenant(ours.client_port, "a", "pa", "a-pub").await;
    let b_sub = tenant(ours.client_port, "b", "pb", "b-sub").await;
    let b_pub = tenant(ours.client_port, "b", "pb", "b-pub").await;
    let a_in = a_sub.subscribe("work").await.unwrap();
    let _b_in = b_sub.subscribe("work").await.unwrap();
    // async-nats `flush()` is no server round trip: wait until the server shows both
    // subscriptions, then until it has counted every publish.
    wait_for_json(ours.http_port, "/subsz", |v| {
        v["num_subscriptions"] == internal + 2
    })
    .await;
    for _ in 0..5 {
        a_pub.publish("work", "12345678".into()).await.unwrap();
    }
    for _ in 0..2 {
        b_pub.publish("work", "123".into()).await.unwrap();
    }
    wait_for_json(ours.http_port, "/varz", |v| {
        v["in_msgs"] == 7 && v["out_msgs"] == 7
    })
    .await;

    let connz = get_json(ours.http_port, "/connz?auth=true").await;
    let conns = connz["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 4);
    for c in conns {
        let name = c["name"].as_str().unwrap();
        let (user, account) = if name.starts_with("a-") {
            ("a", "A")
        } else {
            ("b", "B")
        };
        assert_eq!(c["authorized_user"], user, "{c}");
        assert_eq!(c["account"], account, "{c}");
    }
    let plain = get_json(ours.http_port, "/connz").await;
    assert!(plain["connections"][0].get("authorized_user").is_none());
    let only_a = get_json(ours.http_port, "/connz?acc=A&auth=1").await;
    assert_eq!(only_a["total"], 2);
    let by_user = get_json(ours.http_port, "/connz?user=b&auth=1").await;
    assert_eq!(by_user["num_connections"], 2);
    let busiest = get_json(ours.http_port, "/connz?sort=msgs_from&limit=1").await;
    assert_eq!(busiest["connections"][0]["name"], "a-pub");
    assert_eq!(busiest["connections"][0]["in_msgs"], 5);

    let accountz = get_json(ours.http_port, "/accountz").await;
    let names: Vec<&str> = accountz["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(names.contains(&"A") && names.contains(&"B"), "{names:?}");
    let detail = get_json(ours.http_port, "/accountz?acc=A").await;
    assert_eq!(detail["account_detail"]["client_connections"], 2);
    assert_eq!(detail["account_detail"]["subscriptions"], 1);

    let statz = get_json(ours.http_port, "/accstatz").await;
    let stat = |acc: &str| {
        statz["account_statz"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["acc"] == acc)
            .cloned()
            .unwrap()
    };
    assert_eq!(stat("A")["received"]["msgs"], 5);
    assert_eq!(stat("A")["received"]["bytes"], 40);
    assert_eq!(stat("A")["sent"]["msgs"], 5);
    assert_eq!(stat("B")["received"]["msgs"], 2);
    assert_eq!(stat("B")["sent"]["msgs"], 2);

    // Both ports serve the same parseable metrics; the metrics port serves nothing else.
    for port in [ours.http_port, metrics_port] {
        let (status, ctype, text) = get(port, "/metrics").await;
        assert_eq!(status, 200);
        assert!(ctype.starts_with("text/plain"), "{ctype}");
        let scrape = scrape(&text);
        assert_eq!(
            sample(&scrape, "gnatsd_accstatz_received_messages", Some("A")),
            5.0
        );
        assert_eq!(
            sample(&scrape, "gnatsd_accstatz_received_messages", Some("B")),
            2.0
        );
        assert_eq!(
            sample(&scrape, "gnatsd_accstatz_sent_bytes", Some("A")),
            40.0
        );
        assert_eq!(
            sample(&scrape, "gnatsd_accstatz_current_connections", Some("B")),
            2.0
        );
        assert_eq!(
            sample(&scrape, "gnatsd_accstatz_subscriptions", Some("A")),
            1.0
        );
        assert_eq!(
            sample(&scrape, "jetstream_account_storage_used", Some("A")),
            0.0
        );
        // What the Grafana "NATS Servers" dashboard queries.
        for name in [
            "gnatsd_varz_cpu",
            "gnatsd_varz_mem",
            "gnatsd_varz_in_bytes",
            "gnatsd_varz_out_bytes",
            "gnatsd_varz_in_msgs",
            "gnatsd_varz_out_msgs",
            "gnatsd_varz_connections",
            "gnatsd_varz_subscriptions",
            "gnatsd_varz_slow_consumers",
        ] {
            let s = scrape.samples.iter().find(|s| s.metric == name).unwrap();
            assert!(
                s.labels.get("server_id").is_some(),
                "{name} without server_id"
            );
        }
        assert_eq!(sample(&scrape, "gnatsd_varz_in_msgs", None), 7.0);
        assert_eq!(sample(&scrape, "gnatsd_varz_connections", None), 4.0);
        assert_eq!(sample(&scrape, "gnatsd_connz_total", None), 4.0);
        assert_eq!(
            sample(&scrape, "gnatsd_subsz_num_subscriptions", None),
            (internal + 2) as f64
        );
        assert_eq!(sample(&scrape, "gnatsd_healthz_status", None), 0.0);
    }
    let (status, _, _) = get(metrics_port, "/varz").await;
    assert_eq!(status, 404);

    // A closed connection keeps its counters in its account and shows up as closed.
    drop(a_in);
    a_pub.drain().await.unwrap();
    a_sub.drain().await.unwrap();
    let (Ok(closed) | Err(closed)) = testkit::fetch_until_async(
        Duration::from_secs(5),
        async || get_json(ours.http_port, "/connz?state=closed&auth=1&subs=1").await,
        |closed| closed["total"] == 2,
    )
    .await;
    assert_eq!(closed["total"], 2, "{closed}");
    let entry = &closed["connections"][0];
    assert_eq!(entry["reason"], "Client Closed");
    assert_eq!(entry["account"], "A");
    assert!(entry["stop"].is_string());
    let statz = get_json(ours.http_port, "/accstatz?unused=1").await;
    let a = statz["account_statz"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["acc"] == "A")
        .cloned()
        .unwrap();
    assert_eq!(a["conns"], 0);
    assert_eq!(a["received"]["msgs"], 5);
    assert_eq!(a["sent"]["msgs"], 5);
    let default_statz = get_json(ours.http_port, "/accstatz").await;
    assert!(default_statz["account_statz"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["acc"] != "A"));
}

/// Each tenant's subscriber receives exactly its own tenant's message, and `/connz` counts
/// it. async-nats `flush()` is not a server round trip, so the test waits for the message
/// itself (and a self-addressed round trip on the subscriber) before reading `/connz`.
#[tokio::test]
async fn second_tenant_deliveries_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("tenants.conf");
    std::fs::write(&conf, TENANTS).unwrap();
    let ours = natsd(&["-c", conf.to_str().unwrap()]);
    for round in 0..10 {
        let a_sub = tenant(ours.client_port, "a", "pa", "a-sub").await;
        let a_pub = tenant(ours.client_port, "a", "pa", "a-pub").await;
        let b_sub = tenant(ours.client_port, "b", "pb", "b-sub").await;
        let b_pub = tenant(ours.client_port, "b", "pb", "b-pub").await;
        let mut a_in = a_sub.subscribe("work").await.unwrap();
        let mut b_in = b_sub.subscribe("work").await.unwrap();
        round_trip(&a_sub).await;
        round_trip(&b_sub).await;
        a_pub.publish("work", "12345678".into()).await.unwrap();
        b_pub.publish("work", "123".into()).await.unwrap();
        let got_a = tokio::time::timeout(Duration::from_secs(5), a_in.next())
            .await
            .unwrap()
            .unwrap();
        let got_b = tokio::time::timeout(Duration::from_secs(5), b_in.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            &got_a.payload[..],
            b"12345678",
            "round {round}: A gets A's message"
        );
        assert_eq!(
            &got_b.payload[..],
            b"123",
            "round {round}: B gets B's message"
        );
        let connz = get_json(ours.http_port, "/connz?auth=1").await;
        let b = connz["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "b-sub")
            .cloned()
            .unwrap();
        assert_eq!(
            b["out_msgs"], 2,
            "round {round}: the message and the round trip: {b}"
        );
        for c in [a_sub, a_pub, b_sub, b_pub] {
            c.drain().await.unwrap();
        }
    }
}

/// A full server round trip: a message to a fresh inbox of this client comes back.
async fn round_trip(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
}

/// Two accounts, one with JetStream limits; the store directory is appended per server.
fn js_config(store_dir: &std::path::Path) -> String {
    format!(
        r#"
jetstream {{ store_dir: "{}", max_memory_store: 268435456, max_file_store: 1073741824 }}
accounts {{
  A {{ jetstream {{ max_memory: 1048576, max_file: 10485760 }}, users: [ {{ user: a, password: pa }} ] }}
  B {{ users: [ {{ user: b, password: pb }} ] }}
}}
"#,
        store_dir.display()
    )
}

/// Start `bin` with the JetStream config in a fresh store directory.
fn js_server(bin: impl AsRef<Path>, dir: &Path) -> Proc {
    let store = dir.join("store");
    let conf = dir.join("js.conf");
    std::fs::write(&conf, js_config(&store)).unwrap();
    spawn(
        bin,
        &[
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-m",
            "-1",
            "-c",
            conf.to_str().unwrap(),
        ],
    )
}

/// Stream `ORDERS` in account A with five acked messages of 11 bytes payload.
async fn js_scenario(port: u16) -> async_nats::Client {
    let client = tenant(port, "a", "pa", "js").await;
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 0..5 {
        js.publish(format!("orders.{i}"), "hello world".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    client
}

#[tokio::test]
async fn jetstream_figures_match_nats_server() {
    let dir_ours = tempfile::tempdir().unwrap();
    let ours = js_server(testkit::natsd(), dir_ours.path());
    let _ours_client = js_scenario(ours.client_port).await;

    let jsz = get_json(ours.http_port, "/jsz").await;
    assert!(jsz.get("disabled").is_none(), "{jsz}");
    assert_eq!(jsz["streams"], 1);
    assert_eq!(jsz["messages"], 5);
    assert_eq!(jsz["consumers"], 0);
    assert_eq!(jsz["accounts"], 1, "only A has JetStream");
    assert_eq!(jsz["total"], 1);
    assert!(jsz["bytes"].as_u64().unwrap() > 5 * 11);
    assert_eq!(jsz["storage"], jsz["bytes"]);
    assert_eq!(jsz["config"]["max_storage"], 1073741824);
    assert!(jsz["api"]["total"].as_u64().unwrap() >= 1);
    assert!(jsz["config"]["store_dir"]
        .as_str()
        .unwrap()
        .ends_with("/store/jetstream"));

    let detail = get_json(
        ours.http_port,
        "/jsz?accounts=true&streams=true&config=true",
    )
    .await;
    let account = &detail["account_details"][0];
    assert_eq!(account["name"], "A");
    assert_eq!(account["reserved_storage"], 10485760);
    assert_eq!(account["storage"], jsz["bytes"]);
    let stream = &account["stream_detail"][0];
    assert_eq!(stream["name"], "ORDERS");
    assert_eq!(stream["state"]["messages"], 5);
    assert_eq!(stream["state"]["last_seq"], 5);
    assert_eq!(stream["config"]["subjects"][0], "orders.>");
    let paged = get_json(ours.http_port, "/jsz?accounts=true&offset=1").await;
    assert!(paged.get("account_details").is_none(), "{paged}");
    let unknown = get_json(ours.http_port, "/jsz?acc=NOPE").await;
    assert!(unknown.get("account_details").is_none(), "{unknown}");

    let varz = get_json(ours.http_port, "/varz").await;
    assert_eq!(varz["jetstream"]["stats"]["storage"], jsz["bytes"]);
    assert_eq!(varz["jetstream"]["stats"]["accounts"], 1);
    assert_eq!(varz["jetstream"]["limits"]["default_max_consumers"], 1000);

    let accountz = get_json(ours.http_port, "/accountz?acc=A").await;
    assert_eq!(accountz["account_detail"]["jetstream_enabled"], true);
    let accountz = get_json(ours.http_port, "/accountz?acc=B").await;
    assert_eq!(accountz["account_detail"]["jetstream_enabled"], false);

    for (path, status) in [
        ("/healthz", 200),
        ("/healthz?js-enabled-only=true", 200),
        ("/healthz?account=A&stream=ORDERS", 200),
        ("/healthz?account=A&stream=NOPE", 404),
        ("/healthz?account=B", 404),
    ] {
        assert_eq!(get(ours.http_port, path).await.0, status, "{path}");
    }

    let (_, _, text) = get(ours.http_port, "/metrics").await;
    let metrics = scrape(&text);
    let bytes = jsz["bytes"].as_f64().unwrap();
    assert_eq!(
        sample(&metrics, "jetstream_account_storage_used", Some("A")),
        bytes
    );
    assert_eq!(
        sample(&metrics, "jetstream_account_max_storage", Some("A")),
        10485760.0
    );
    assert_eq!(
        sample(&metrics, "jetstream_account_max_memory", Some("A")),
        1048576.0
    );
    assert_eq!(
        sample(&metrics, "jetstream_account_max_storage", Some("B")),
        0.0
    );
    assert_eq!(
        sample(&metrics, "gnatsd_varz_jetstream_stats_storage", None),
        bytes
    );
    assert_eq!(
        sample(&metrics, "gnatsd_varz_jetstream_config_max_storage", None),
        1073741824.0
    );
    assert_eq!(
        sample(&metrics, "gnatsd_varz_jetstream_stats_accounts", None),
        1.0
    );

    let Some(reference) = testkit::reference_server() else {
        return;
    };
    let dir_real = tempfile::tempdir().unwrap();
    let real = js_server(reference, dir_real.path());
    let _real_client = js_scenario(real.client_port).await;
    let mut diffs = Vec::new();
    for path in [
        "/jsz",
        "/jsz?accounts=true&streams=true",
        "/jsz?accounts=true&streams=true&config=true",
        "/jsz?acc=A",
    ] {
        let a = get_json(ours.http_port, path).await;
        let b = get_json(real.http_port, path).await;
        // nats-server adds versioning metadata and fields natsd's stream config does not
        // have yet; the stream config itself is the JetStream API's business.
        same_shape(path, &a, &b, &["metadata", "config"], &mut diffs);
        for key in ["streams", "messages", "consumers", "accounts", "total"] {
            assert_eq!(a[key], b[key], "{path} {key}");
        }
        if let Some(details) = b.get("account_details") {
            let (x, y) = (&a["account_details"][0], &details[0]);
            for key in ["name", "reserved_memory", "reserved_storage", "accounts"] {
                assert_eq!(x[key], y[key], "{path} account {key}");
            }
            if let Some(s) = y.get("stream_detail") {
                let t = &x["stream_detail"][0]["state"];
                for key in [
                    "messages",
                    "first_seq",
                    "last_seq",
                    "num_subjects",
                    "consumer_count",
                ] {
                    assert_eq!(t[key], s[0]["state"][key], "{path} stream state {key}");
                }
            }
        }
    }
    let a = get_json(ours.http_port, "/varz").await;
    let b = get_json(real.http_port, "/varz").await;
    same_shape(
        "/varz.jetstream",
        &a["jetstream"],
        &b["jetstream"],
        // nats-server 2.15 shows `compress_ok` in some setups and not in others (not with `-js`
        // alone); natsd leaves it out.
        &["compress_ok"],
        &mut diffs,
    );
    for key in [
        "memory",
        "accounts",
        "ha_assets",
        "reserved_memory",
        "reserved_storage",
    ] {
        assert_eq!(
            a["jetstream"]["stats"][key], b["jetstream"]["stats"][key],
            "/varz jetstream stats {key}"
        );
    }
    assert_eq!(a["jetstream"]["limits"], b["jetstream"]["limits"]);
    assert!(diffs.is_empty(), "shape differences:\n{}", diffs.join("\n"));
    for path in [
        "/healthz?js-enabled-only=true",
        "/healthz?account=A&stream=NOPE",
        "/healthz?account=A&stream=ORDERS&consumer=C&details=true",
        "/healthz?account=B",
    ] {
        let (sa, _, ba) = get(ours.http_port, path).await;
        let (sb, _, bb) = get(real.http_port, path).await;
        assert_eq!((sa, &ba), (sb, &bb), "{path}");
    }
}

/// Poll a monitoring endpoint until `ready` holds (the server-side readiness check), or fail.
async fn wait_for_json(port: u16, path: &str, ready: impl Fn(&Value) -> bool) {
    let got = testkit::fetch_until_async(
        Duration::from_secs(10),
        async || get_json(port, path).await,
        ready,
    )
    .await;
    if let Err(last) = got {
        panic!("{path} never got ready: {last}");
    }
}

const SYSTEM: &str = r#"
server_name: sys-test
accounts {
  SYS { users = [ { user: sys, password: psys } ] }
  A { users = [ { user: a, password: pa } ] }
}
system_account: SYS
"#;

/// A request to the system account's server endpoints, by the system user.
async fn sys_request(client: &async_nats::Client, subject: &str, body: &str) -> Value {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(subject.to_string(), body.to_string().into()),
    )
    .await
    .unwrap_or_else(|_| panic!("{subject}: no reply"))
    .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&reply.payload).unwrap()
}

/// `$SYS.REQ.SERVER.PING[.<endpoint>]` and `$SYS.REQ.SERVER.<id>.<endpoint>`: what
/// `nats server list / report` read, shaped as nats-server's; other accounts cannot ask.
#[tokio::test]
async fn system_account_server_requests() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("system.conf");
    std::fs::write(&conf, SYSTEM).unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let mut servers = vec![("natsd", natsd(&["-c", &conf]))];
    if let Some(reference) = testkit::reference_server() {
        servers.push((
            "nats-server",
            spawn(
                reference,
                &["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-c", &conf],
            ),
        ));
    }
    let mut replies = Vec::new();
    for (name, p) in &servers {
        let sys = tenant(p.client_port, "sys", "psys", "sys-client").await;
        let _other = tenant(p.client_port, "a", "pa", "a-client").await;
        let id = sys.server_info().server_id;

        let ping = sys_request(&sys, "$SYS.REQ.SERVER.PING", "").await;
        assert_eq!(ping["server"]["name"], "sys-test", "{name}: {ping}");
        assert_eq!(ping["server"]["id"], id.as_str(), "{name}: {ping}");
        assert!(
            ping["statsz"]["connections"].as_u64().unwrap() >= 2,
            "{name}: {ping}"
        );

        let varz = sys_request(&sys, "$SYS.REQ.SERVER.PING.VARZ", "").await;
        assert_eq!(varz["data"]["server_name"], "sys-test", "{name}: {varz}");
        let connz = sys_request(&sys, &format!("$SYS.REQ.SERVER.{id}.CONNZ"), "{}").await;
        assert!(
            connz["data"]["num_connections"].as_u64().unwrap() >= 2,
            "{name}: {connz}"
        );
        let only_a = sys_request(&sys, "$SYS.REQ.SERVER.PING.CONNZ", r#"{"acc":"A"}"#).await;
        assert_eq!(only_a["data"]["num_connections"], 1, "{name}: {only_a}");
        let health = sys_request(&sys, "$SYS.REQ.SERVER.PING.HEALTHZ", "").await;
        assert_eq!(health["data"]["status"], "ok", "{name}: {health}");
        // Written as nats-server writes it: `server` first, each block in its field order.
        let raw = sys
            .request(format!("$SYS.REQ.SERVER.{id}.HEALTHZ"), "".into())
            .await
            .unwrap();
        let raw = String::from_utf8_lossy(&raw.payload);
        assert!(
            raw.starts_with(r#"{"server":{"name":"sys-test","host":"#)
                && raw.contains(r#"},"data":{"status":"ok""#),
            "{name}: {raw}"
        );

        // Another account has no such responders.
        let a = tenant(p.client_port, "a", "pa", "a-asker").await;
        let refused = a.request("$SYS.REQ.SERVER.PING", "".into()).await;
        assert!(
            refused.is_err(),
            "{name}: account A reached the system endpoints"
        );
        replies.push((ping, varz, connz));
    }
    if let [(ping, varz, connz), (their_ping, their_varz, their_connz)] = &replies[..] {
        let mut diffs = Vec::new();
        same_shape(
            "server",
            &ping["server"],
            &their_ping["server"],
            &["feature_flags"],
            &mut diffs,
        );
        same_shape(
            "statsz",
            &ping["statsz"],
            &their_ping["statsz"],
            &[],
            &mut diffs,
        );
        assert!(varz["data"].is_object() && their_varz["data"].is_object());
        assert!(
            connz["data"]["connections"].is_array()
                && their_connz["data"]["connections"].is_array()
        );
        assert!(diffs.is_empty(), "{diffs:#?}");
    }
}

/// The repository's `monitoring/` directory (Prometheus, alert rules, Grafana).
fn shipped(path: &str) -> String {
    let full = format!("{}/../monitoring/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The metric names a PromQL expression reads. Label matchers (`{...}`), ranges (`[...]`),
/// grouping clauses (`by (...)`), functions, operators and keywords are not metric names.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "inf",
        "nan",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skip from an opening bracket to its match, stepping over quoted strings.
    let skip_group = |mut i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => {
                    let quote = chars[i];
                    i += 1;
                    while i < chars.len() && chars[i] != quote {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced {open} in {expr:?}");
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c == '"' || c == '\'' {
            i = skip_group(i, c, c);
        } else if c.is_ascii_digit() || c == '$' {
            // Numbers, durations and Grafana variables.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "._$".contains(chars[i]))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let call = chars.get(next) == Some(&'(');
            if GROUPING.contains(&word.as_str()) && call {
                i = skip_group(next, '(', ')');
            } else if !call
                && !KEYWORDS.contains(&word.as_str())
                && !GROUPING.contains(&word.as_str())
            {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every PromQL expression of the shipped Grafana dashboard, with where it is.
fn dashboard_exprs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let here = format!("{at}.{key}");
                match (key.as_str(), v) {
                    ("expr", Value::String(e)) => out.push((here, e.clone())),
                    // A template variable's query: `label_values(<metric>, <label>)`.
                    ("query", Value::String(q)) | ("definition", Value::String(q)) => {
                        let inner = q
                            .strip_prefix("label_values(")
                            .and_then(|r| r.strip_suffix(')'))
                            .unwrap_or_else(|| panic!("{here}: unexpected query {q:?}"));
                        let metric = inner.split(',').next().unwrap().trim();
                        out.push((here, metric.to_string()));
                    }
                    _ => dashboard_exprs(v, &here, out),
                }
            }
        }
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                dashboard_exprs(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn promql_names_are_found() {
    let names = promql_metric_names(
        r#"sum by (account) (rate(gnatsd_x{account=~"$account", a="}b"}[$__rate_interval])) / on (account) (jetstream_y > 0) and up"#,
    );
    let expected: BTreeSet<String> = ["gnatsd_x", "jetstream_y", "up"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, expected);
}

/// Every metric the shipped Grafana dashboard and the Prometheus alert rules use is served by
/// natsd's `/metrics` once a tenant has JetStream data and a failed login.
#[tokio::test]
async fn shipped_dashboard_and_alert_rules_use_served_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let ours = js_server(testkit::natsd(), dir.path());
    let _client = js_scenario(ours.client_port).await;
    // A wrong password of A's user counts against A; an unknown user only server-wide.
    for (user, pass) in [("a", "wrong"), ("nobody", "x")] {
        let refused = async_nats::ConnectOptions::with_user_and_password(user.into(), pass.into())
            .connect(format!("nats://127.0.0.1:{}", ours.client_port))
            .await;
        assert!(refused.is_err(), "{user} logged in");
    }

    let (status, _, text) = get(ours.http_port, "/metrics").await;
    assert_eq!(status, 200);
    let metrics = scrape(&text);
    for (name, account, expected) in [
        ("gnatsd_auth_failures", None, 2.0),
        ("gnatsd_accstatz_auth_failures", Some("A"), 1.0),
        ("gnatsd_accstatz_auth_failures", Some("B"), 0.0),
    ] {
        assert_eq!(
            sample(&metrics, name, account),
            expected,
            "{name} {account:?}"
        );
    }
    assert!(sample(&metrics, "jetstream_account_storage_used", Some("A")) > 0.0);
    let served: BTreeSet<String> = metrics.samples.iter().map(|s| s.metric.clone()).collect();

    let mut exprs = Vec::new();
    let dashboard: Value = serde_json::from_str(&shipped("grafana/dashboards/natsd.json")).unwrap();
    dashboard_exprs(&dashboard, "dashboard", &mut exprs);
    let rules =
        yaml_rust2::YamlLoader::load_from_str(&shipped("prometheus/rules/natsd.yml")).unwrap();
    for (g, group) in rules[0]["groups"].as_vec().unwrap().iter().enumerate() {
        for (r, rule) in group["rules"].as_vec().unwrap().iter().enumerate() {
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("rule {g}.{r}: no expr"));
            exprs.push((format!("rules group {g} rule {r}"), expr.to_string()));
        }
    }
    assert!(exprs.len() > 20, "too few expressions found: {exprs:?}");

    // `up` is Prometheus's own series for the scrape target.
    let mut missing = Vec::new();
    let mut used = BTreeSet::new();
    for (at, expr) in &exprs {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "{at}: no metric in {expr:?}");
        for name in names {
            if name != "up" && !served.contains(&name) {
                missing.push(format!("{at}: {name}"));
            }
            used.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "not in natsd's /metrics:\n{}",
        missing.join("\n")
    );
    for needed in [
        "gnatsd_varz_connections",
        "gnatsd_varz_slow_consumers",
        "gnatsd_varz_jetstream_stats_storage",
        "gnatsd_accstatz_current_connections",
        "gnatsd_accstatz_received_messages",
        "gnatsd_accstatz_auth_failures",
        "jetstream_account_storage_used",
        "jetstream_account_max_storage",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard or rules lost {needed}"
        );
    }
}

/// `/console` serves its embedded page and assets, and `/console/data` carries the figures of
/// `/accstatz` and `/jsz` for every account.
#[tokio::test]
async fn console_serves_the_figures_of_accstatz_and_jsz() {
    let dir = tempfile::tempdir().unwrap();
    let ours = js_server(testkit::natsd(), dir.path());
    let _client = js_scenario(ours.client_port).await;
    let refused = async_nats::ConnectOptions::with_user_and_password("a".into(), "no".into())
        .connect(format!("nats://127.0.0.1:{}", ours.client_port))
        .await;
    assert!(refused.is_err());

    let (status, ctype, page) = get(ours.http_port, "/console").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    for asset in ["console/console.js", "console/console.css"] {
        assert!(page.contains(&format!("./{asset}")), "{asset} not linked");
        let (status, _, body) = get(ours.http_port, &format!("/{asset}")).await;
        assert_eq!(status, 200, "{asset}");
        assert!(body.len() > 500, "{asset}: {body}");
    }
    // Everything the page loads comes from the server itself.
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );

    let data = get_json(ours.http_port, "/console/data").await;
    let accstatz = get_json(ours.http_port, "/accstatz?unused=1").await;
    let jsz = get_json(ours.http_port, "/jsz?accounts=true").await;
    let rows = data["accounts"].as_array().unwrap();
    let stats = accstatz["account_statz"].as_array().unwrap();
    assert_eq!(rows.len(), stats.len(), "{data}");
    for stat in stats {
        let row = rows.iter().find(|r| r["name"] == stat["acc"]).unwrap();
        assert_eq!(row["conns"], stat["conns"], "{row}");
        assert_eq!(row["subscriptions"], stat["num_subscriptions"], "{row}");
        assert_eq!(row["in_msgs"], stat["received"]["msgs"], "{row}");
        assert_eq!(row["in_bytes"], stat["received"]["bytes"], "{row}");
        assert_eq!(row["slow_consumers"], stat["slow_consumers"], "{row}");
    }
    let a = rows.iter().find(|r| r["name"] == "A").unwrap();
    let js_a = &jsz["account_details"][0];
    assert_eq!(js_a["name"], "A");
    assert_eq!(a["jetstream"]["storage"], js_a["storage"]);
    assert_eq!(a["jetstream"]["max_storage"], js_a["reserved_storage"]);
    assert_eq!(a["jetstream"]["max_memory"], js_a["reserved_memory"]);
    assert_eq!(a["jetstream"]["streams"], 1);
    assert_eq!(a["users"], 1);
    assert_eq!(a["auth_failures"], 1);
    let b = rows.iter().find(|r| r["name"] == "B").unwrap();
    assert!(b["jetstream"].is_null(), "{b}");
    assert_eq!(b["auth_failures"], 0);
}
