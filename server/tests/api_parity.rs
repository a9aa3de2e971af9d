//! JetStream API parity with nats-server, request by request: natsd and the reference server
//! get the same requests and must answer alike. These tests need the reference (`nats-server`
//! on PATH, as scripts/test.sh arranges): without it they fail rather than pass untested.

// A test binary has no public API, and tests may unwrap (HELPERS.md).
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};

#[path = "support/js_server.rs"]
#[allow(
    dead_code,
    reason = "shared by several test binaries, each using a part"
)]
mod js_server;
use js_server::{api, connect, start_js, start_js_with, Server};

/// The reference nats-server: a failure when it is missing (a comparison without it proves
/// nothing), `None` only under `NATSD_SKIP_REFERENCE=1` (the test is then skipped).
fn reference_bin() -> Option<PathBuf> {
    testkit::reference_server()
}

/// natsd and nats-server, each with its own store (the directories live as long as the servers).
struct Pair {
    ours: Server,
    theirs: Server,
    _dirs: [tempfile::TempDir; 2],
}

fn start_pair() -> Option<Pair> {
    let reference = reference_bin()?;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    Some(Pair {
        ours: start_js(dirs[0].path()),
        theirs: start_js_with(reference.to_str().unwrap(), dirs[1].path()),
        _dirs: dirs,
    })
}

/// Every member of nats-server 2.15's `StreamConfig` (its JSON names).
const STREAM_FIELDS: &[&str] = &[
    "description",
    "subjects",
    "retention",
    "max_consumers",
    "max_msgs",
    "max_bytes",
    "max_age",
    "max_msgs_per_subject",
    "max_msg_size",
    "discard",
    "storage",
    "num_replicas",
    "no_ack",
    "duplicate_window",
    "placement",
    "mirror",
    "sources",
    "compression",
    "first_seq",
    "subject_transform",
    "republish",
    "allow_direct",
    "mirror_direct",
    "discard_new_per_subject",
    "sealed",
    "deny_delete",
    "deny_purge",
    "allow_rollup_hdrs",
    "consumer_limits",
    "allow_msg_ttl",
    "subject_delete_marker_ttl",
    "allow_msg_counter",
    "allow_atomic",
    "allow_msg_schedules",
    "persist_mode",
    "allow_batched",
    "metadata",
];

/// Every member of nats-server 2.15's `ConsumerConfig`.
const CONSUMER_FIELDS: &[&str] = &[
    "durable_name",
    "name",
    "description",
    "deliver_policy",
    "opt_start_seq",
    "opt_start_time",
    "ack_policy",
    "ack_wait",
    "max_deliver",
    "backoff",
    "filter_subject",
    "filter_subjects",
    "replay_policy",
    "rate_limit_bps",
    "sample_freq",
    "max_waiting",
    "max_ack_pending",
    "flow_control",
    "headers_only",
    "max_batch",
    "max_expires",
    "max_bytes",
    "deliver_subject",
    "deliver_group",
    "idle_heartbeat",
    "inactive_threshold",
    "num_replicas",
    "mem_storage",
    "direct",
    "sourcing",
    "metadata",
    "pause_until",
    "priority_groups",
    "priority_policy",
    "priority_timeout",
];

/// Fields whose Go type decodes JSON itself and so refuses `null` (10025, on both servers).
const REFERENCE_REFUSES_NULL: &[&str] = &[
    "retention",
    "discard",
    "storage",
    "compression",
    "persist_mode",
    "deliver_policy",
    "ack_policy",
    "replay_policy",
    "priority_policy",
];

/// The config of a create reply without what differs by server or by time.
fn config_of(reply: &Value) -> Value {
    let mut cfg = reply["config"].clone();
    if let Some(c) = cfg.as_object_mut() {
        c.remove("metadata");
        c.remove("name");
        c.remove("subjects");
    }
    cfg
}

/// Both servers took `field: null` as unset (`expected`), or both refused it with the same
/// error where its Go type decodes `null` itself.
fn check_null_member(field: &str, ours: &Value, theirs: &Value, expected: &Value) {
    if REFERENCE_REFUSES_NULL.contains(&field) {
        assert_eq!(theirs["error"]["err_code"], 10025, "{field}: {theirs}");
        assert_eq!(ours["error"], theirs["error"], "{field}: null");
    } else {
        assert!(ours["error"].is_null(), "natsd, {field}: null: {ours}");
        assert_eq!(&config_of(ours), expected, "natsd, {field}: null");
        assert_eq!(&config_of(theirs), expected, "nats-server, {field}: null");
    }
}

fn with_nulls(base: Value, fields: &[&str], skip: &[&str]) -> Value {
    let mut obj: Map<String, Value> = base.as_object().unwrap().clone();
    for f in fields.iter().filter(|f| !skip.contains(f)) {
        obj.entry(f.to_string()).or_insert(Value::Null);
    }
    Value::Object(obj)
}

/// `null` means "not set" in every stream and consumer config member but the enums, as Go
/// decodes it: each member sent as `null` alone gives the same config as leaving it out, or
/// the same refusal, on both servers; and a request with every other member `null` at once
/// is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_config_members_are_not_set() {
    let Some(pair) = start_pair() else {
        return;
    };
    let a = connect(&pair.ours).await;
    let b = connect(&pair.theirs).await;
    let mut n = 0;
    let mut stream = |extra: Option<&str>| {
        n += 1;
        let name = format!("S{n}");
        let mut cfg = json!({"name": name, "subjects": [format!("s{n}.>")]});
        if let Some(f) = extra {
            cfg[f] = Value::Null;
        }
        (name, cfg)
    };
    let (plain_name, plain) = stream(None);
    let subject = format!("$JS.API.STREAM.CREATE.{plain_name}");
    let plain_ours = config_of(&api(&a, &subject, plain.clone()).await);
    assert_eq!(plain_ours, config_of(&api(&b, &subject, plain).await));
    for field in STREAM_FIELDS {
        let (name, cfg) = stream(Some(field));
        let subject = format!("$JS.API.STREAM.CREATE.{name}");
        let ours = api(&a, &subject, cfg.clone()).await;
        let theirs = api(&b, &subject, cfg.clone()).await;
        check_null_member(field, &ours, &theirs, &plain_ours);
    }
    let (name, base) = stream(None);
    let accepted = with_nulls(base, STREAM_FIELDS, REFERENCE_REFUSES_NULL);
    let subject = format!("$JS.API.STREAM.CREATE.{name}");
    assert_eq!(
        config_of(&api(&b, &subject, accepted.clone()).await),
        config_of(&api(&a, &subject, accepted).await),
        "every member nats-server takes as null"
    );

    let consumer = |cfg: Value| json!({"stream_name": plain_name, "config": cfg});
    let create = format!("$JS.API.CONSUMER.CREATE.{plain_name}");
    let base = json!({"ack_policy": "explicit", "inactive_threshold": 60_000_000_000u64});
    let plain_ours = config_of(&api(&a, &create, consumer(base.clone())).await);
    assert_eq!(
        plain_ours,
        config_of(&api(&b, &create, consumer(base.clone())).await)
    );
    for field in CONSUMER_FIELDS {
        let mut cfg = base.clone();
        let expected = if base.get(field).is_some() {
            cfg.as_object_mut().unwrap().remove(*field);
            config_of(&api(&a, &create, consumer(cfg.clone())).await)
        } else {
            plain_ours.clone()
        };
        cfg[*field] = Value::Null;
        let ours = api(&a, &create, consumer(cfg.clone())).await;
        let theirs = api(&b, &create, consumer(cfg)).await;
        check_null_member(field, &ours, &theirs, &expected);
    }
    let accepted = with_nulls(base, CONSUMER_FIELDS, REFERENCE_REFUSES_NULL);
    assert_eq!(
        config_of(&api(&b, &create, consumer(accepted.clone())).await),
        config_of(&api(&a, &create, consumer(accepted)).await),
        "every member nats-server takes as null"
    );

    // A pull request's members too: a no-wait fetch of an empty stream answers 404 on both.
    for nc in [&a, &b] {
        let created = api(
            nc,
            &create,
            consumer(json!({"name": "pull", "ack_policy": "explicit"})),
        )
        .await;
        assert!(created["error"].is_null(), "{created}");
        let next = format!("$JS.API.CONSUMER.MSG.NEXT.{plain_name}.pull");
        let body = json!({"batch": 1, "no_wait": true, "expires": null, "max_bytes": null, "idle_heartbeat": null});
        let reply = nc
            .request(next, serde_json::to_vec(&body).unwrap().into())
            .await
            .unwrap();
        assert_eq!(reply.status.map(|s| s.as_u16()), Some(404), "{reply:?}");
    }
}

/// A request's reply (`{"status": 503}` for no responders), or `None` when none comes within
/// half a second (an API subject nobody answers though something subscribes it).
async fn reply_to(nc: &async_nats::Client, subject: &str, body: &Value) -> Option<Value> {
    use async_nats::client::RequestErrorKind;
    let payload = serde_json::to_vec(body).unwrap();
    let request = nc.request(subject.to_string(), payload.into());
    match tokio::time::timeout(Duration::from_millis(500), request).await {
        Ok(Ok(reply)) => Some(serde_json::from_slice(&reply.payload).unwrap()),
        Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => Some(json!({"status": 503})),
        Ok(Err(e)) => panic!("{subject}: {e}"),
        Err(_) => None,
    }
}

/// Sends each request to both servers and asserts the replies carry the same error (code,
/// err_code and description) or both none, or that neither server answers.
async fn same_errors(pair: &Pair, requests: &[(String, Value)]) {
    let a = connect(&pair.ours).await;
    let b = connect(&pair.theirs).await;
    for (subject, body) in requests {
        let ours = reply_to(&a, subject, body).await;
        let theirs = reply_to(&b, subject, body).await;
        let what = format!("{subject} {body}\n natsd: {ours:?}\n nats-server: {theirs:?}");
        match (ours, theirs) {
            (Some(ours), Some(theirs)) => {
                assert_eq!(
                    comparable_error(&ours["error"]),
                    comparable_error(&theirs["error"]),
                    "{what}"
                );
                assert_eq!(ours["type"], theirs["type"], "{what}");
            }
            (None, None) => {}
            _ => panic!("one server answered: {what}"),
        }
    }
}

/// The consumer create subjects (legacy ephemeral, legacy durable, named, named with a
/// filter) refused with nats-server's error for each mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_create_subject_errors() {
    let Some(pair) = start_pair() else {
        return;
    };
    let create = |subject: &str, stream: &str, config: Value| {
        (
            format!("$JS.API.CONSUMER.{subject}"),
            json!({"stream_name": stream, "config": config}),
        )
    };
    let requests = vec![
        (
            "$JS.API.STREAM.CREATE.S".to_string(),
            json!({"name": "S", "subjects": ["s.>"]}),
        ),
        create("DURABLE.CREATE.S", "S", json!({"durable_name": "d"})),
        create("DURABLE.CREATE.S.d.x", "S", json!({"durable_name": "d"})),
        create("DURABLE.CREATE.S.d", "S", json!({})),
        create("DURABLE.CREATE.S.d", "S", json!({"durable_name": "e"})),
        create("DURABLE.CREATE.S.d", "T", json!({"durable_name": "d"})),
        create("DURABLE.CREATE.S.d", "S", json!({"durable_name": "d"})),
        create("CREATE.S.n", "S", json!({"durable_name": "m"})),
        create("CREATE.S.a/b", "S", json!({})),
        create("CREATE.S", "S", json!({"durable_name": "x"})),
        create("CREATE.S", "S", json!({"name": "x.y"})),
        create("CREATE.S.f.s.a", "S", json!({"filter_subject": "s.b"})),
        create(
            "CREATE.S.f.s.a",
            "S",
            json!({"filter_subjects": ["s.a", "s.b"]}),
        ),
        create("CREATE.S.f.s.a", "S", json!({"filter_subject": "s.a"})),
        create("CREATE.S.r", "S", json!({"num_replicas": 3})),
        create("CREATE.NOPE.n", "NOPE", json!({})),
    ];
    same_errors(&pair, &requests).await;
}

/// A pull request's subscription: the inbox, and the request sent on it.
async fn pull(
    nc: &async_nats::Client,
    stream: &str,
    consumer: &str,
    body: Value,
) -> async_nats::Subscriber {
    let inbox = nc.new_inbox();
    let sub = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish_with_reply(
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
        inbox,
        serde_json::to_vec(&body).unwrap().into(),
    )
    .await
    .unwrap();
    nc.flush().await.unwrap();
    sub
}

/// The status line (`409 Consumer Deleted`) of the next frame on `sub`.
async fn next_status(sub: &mut async_nats::Subscriber, what: &str) -> String {
    use futures::StreamExt;
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap_or_else(|_| panic!("no status frame: {what}"))
        .unwrap();
    let status = msg.status.map(|s| s.as_u16()).unwrap_or(0);
    format!("{status} {}", msg.description.unwrap_or_default())
}

/// A pull request that waits (30 s) on `stream`'s consumer `c`, once the consumer counts it.
async fn waiting_pull(nc: &async_nats::Client, stream: &str) -> async_nats::Subscriber {
    let wait = json!({"batch": 5, "expires": 30_000_000_000u64});
    let sub = pull(nc, stream, "c", wait).await;
    let info = format!("$JS.API.CONSUMER.INFO.{stream}.c");
    testkit::eventually_async(
        Duration::from_secs(10),
        format!("the pull request waiting on {stream}"),
        async || api(nc, &info, Value::Null).await["num_waiting"] == 1,
    )
    .await;
    sub
}

/// Waiting pull requests are told when their consumer goes away: `409 Consumer Deleted` when
/// the consumer or its stream is deleted, `409 Server Shutdown` when the server stops
/// (clients reset their ordered consumers on these instead of waiting forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_pulls_are_told_when_the_consumer_goes() {
    let Some(pair) = start_pair() else {
        return;
    };
    for (ours, server) in [(true, &pair.ours), (false, &pair.theirs)] {
        let nc = connect(server).await;
        for stream in ["A", "B", "C"] {
            let r = api(
                &nc,
                &format!("$JS.API.STREAM.CREATE.{stream}"),
                json!({"name": stream, "subjects": [format!("{stream}.>")]}),
            )
            .await;
            assert!(r["error"].is_null(), "{r}");
            let r = api(
                &nc,
                &format!("$JS.API.CONSUMER.CREATE.{stream}.c"),
                json!({"stream_name": stream, "config": {"name": "c", "ack_policy": "explicit"}}),
            )
            .await;
            assert!(r["error"].is_null(), "{r}");
        }
        let mut deleted = waiting_pull(&nc, "A").await;
        api(&nc, "$JS.API.CONSUMER.DELETE.A.c", Value::Null).await;
        let what = format!("consumer delete, natsd: {ours}");
        assert_eq!(
            next_status(&mut deleted, &what).await,
            "409 Consumer Deleted"
        );
        let mut stream_gone = waiting_pull(&nc, "B").await;
        api(&nc, "$JS.API.STREAM.DELETE.B", Value::Null).await;
        let what = format!("stream delete, natsd: {ours}");
        assert_eq!(
            next_status(&mut stream_gone, &what).await,
            "409 Consumer Deleted"
        );
        let mut shutdown = waiting_pull(&nc, "C").await;
        server.signal(testkit::Signal::SIGTERM);
        let what = format!("shutdown, natsd: {ours}");
        assert_eq!(
            next_status(&mut shutdown, &what).await,
            "409 Server Shutdown"
        );
    }
}

/// An API error without the parts that legitimately differ: the text of 10025 (invalid JSON)
/// is the JSON decoder's own (Go's there, serde's here; docs/differences.md).
fn comparable_error(e: &Value) -> Value {
    let mut e = e.clone();
    if e["err_code"] == 10025 {
        e["description"] = Value::Null;
    }
    e
}

/// The fields of a consumer reply that do not depend on time or server.
fn consumer_state(v: &Value) -> Value {
    json!({
        "error": comparable_error(&v["error"]),
        "reset_seq": v["reset_seq"],
        "delivered": [v["delivered"]["consumer_seq"], v["delivered"]["stream_seq"]],
        "ack_floor": [v["ack_floor"]["consumer_seq"], v["ack_floor"]["stream_seq"]],
        "num_ack_pending": v["num_ack_pending"],
        "num_pending": v["num_pending"],
        "type": v["type"],
    })
}

/// `$JS.API.CONSUMER.RESET.<stream>.<consumer>`: to a sequence, back to the ack floor, refused
/// below a consumer's start or for a deliver-last consumer, and delivery resumes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_reset_matches_nats_server() {
    use futures::StreamExt;
    let Some(pair) = start_pair() else {
        return;
    };
    let mut replies = Vec::new();
    for server in [&pair.ours, &pair.theirs] {
        let nc = connect(server).await;
        let mut out = Vec::new();
        api(
            &nc,
            "$JS.API.STREAM.CREATE.R",
            json!({"name": "R", "subjects": ["r.>"]}),
        )
        .await;
        for i in 0..6 {
            let ack = nc
                .request(format!("r.{i}"), format!("m{i}").into())
                .await
                .unwrap();
            assert!(!ack.payload.is_empty());
        }
        let consumers = [
            ("all", json!({"name": "all", "ack_policy": "explicit"})),
            (
                "from3",
                json!({"name": "from3", "ack_policy": "explicit",
                    "deliver_policy": "by_start_sequence", "opt_start_seq": 3}),
            ),
            (
                "last",
                json!({"name": "last", "ack_policy": "explicit", "deliver_policy": "last"}),
            ),
        ];
        for (name, config) in consumers {
            let r = api(
                &nc,
                &format!("$JS.API.CONSUMER.CREATE.R.{name}"),
                json!({"stream_name": "R", "config": config}),
            )
            .await;
            assert!(r["error"].is_null(), "{r}");
        }
        // Two delivered and acked, one delivered and left pending.
        let mut sub = pull(&nc, "R", "all", json!({"batch": 3})).await;
        for i in 0..3 {
            let m = sub.next().await.unwrap();
            if i < 2 {
                nc.publish(m.reply.unwrap(), "+ACK".into()).await.unwrap();
            }
        }
        nc.flush().await.unwrap();
        let info = |nc: async_nats::Client| async move {
            testkit::eventually_async(Duration::from_secs(10), "ack floor 2", async || {
                let i = api(&nc, "$JS.API.CONSUMER.INFO.R.all", Value::Null).await;
                (i["ack_floor"]["stream_seq"] == 2).then_some(i)
            })
            .await
        };
        out.push(consumer_state(&info(nc.clone()).await));
        for (consumer, body) in [
            ("all", Value::Null),
            ("all", json!({"seq": 5})),
            ("all", json!({"seq": 0})),
            ("from3", json!({"seq": 1})),
            ("from3", json!({"seq": 4})),
            ("last", json!({"seq": 2})),
            ("last", Value::Null),
            ("all", json!({"seq": "x"})),
        ] {
            let reply = api(&nc, &format!("$JS.API.CONSUMER.RESET.R.{consumer}"), body).await;
            out.push(consumer_state(&reply));
        }
        let mut sub = pull(&nc, "R", "all", json!({"batch": 1})).await;
        let m = sub.next().await.unwrap();
        out.push(json!(m.subject.as_str()));
        for missing in ["CONSUMER.RESET.R.nope", "CONSUMER.MSG.NEXT.R.nope", "NOPE"] {
            let reply = reply_to(&nc, &format!("$JS.API.{missing}"), &Value::Null).await;
            out.push(json!([missing, reply]));
        }
        replies.push(out);
    }
    assert_eq!(replies[0], replies[1]);
}

/// What arrives on a pull request's inbox within `within`: `msg <payload>` (with ` pinned`
/// when it carries a `Nats-Pin-Id`) or `<code> <description>`, up to `max` frames.
async fn frames(sub: &mut async_nats::Subscriber, max: usize, within: Duration) -> Vec<String> {
    use futures::StreamExt;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < max {
        let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await else {
            break;
        };
        match m.status {
            Some(s) => out.push(format!(
                "{} {}",
                s.as_u16(),
                m.description.unwrap_or_default()
            )),
            None => {
                let pinned = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Pin-Id"))
                    .is_some();
                let payload = String::from_utf8_lossy(&m.payload).into_owned();
                out.push(format!(
                    "msg {payload}{}",
                    if pinned { " pinned" } else { "" }
                ));
            }
        }
    }
    out
}

/// The `Nats-Pin-Id` of the first message on `sub`.
async fn pin_id_of(sub: &mut async_nats::Subscriber) -> String {
    use futures::StreamExt;
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("no message")
        .unwrap();
    let headers = m.headers.expect("no headers");
    headers.get("Nats-Pin-Id").expect("no pin id").to_string()
}

/// Priority groups: config errors, pull request errors, the pinned-client flow (pin, pass
/// over, wrong pin, UNPIN and its errors, re-pin, lapse), overflow marks and prioritized
/// order, observed the same on both servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_groups_match_nats_server() {
    let Some(pair) = start_pair() else {
        return;
    };
    let create = |name: &str, config: Value| {
        let mut config = config;
        config["name"] = json!(name);
        (
            format!("$JS.API.CONSUMER.CREATE.P.{name}"),
            json!({"stream_name": "P", "config": config}),
        )
    };
    let mut requests = vec![(
        "$JS.API.STREAM.CREATE.P".to_string(),
        json!({"name": "P", "subjects": ["p.>"]}),
    )];
    for (i, config) in [
        json!({"priority_groups": ["A"]}),
        json!({"priority_timeout": 1_000_000_000u64}),
        json!({"priority_policy": "overflow", "priority_groups": ["A"], "deliver_subject": "d"}),
        json!({"priority_policy": "overflow"}),
        json!({"priority_policy": "pinned_client", "priority_groups": [""]}),
        json!({"priority_policy": "pinned_client", "priority_groups": ["bad name"]}),
        json!({"priority_policy": "pinned_client", "priority_groups": ["ABCDEFGHIJKLMNOPQ"]}),
        json!({"priority_policy": "sometimes", "priority_groups": ["A"]}),
        json!({"priority_policy": "none"}),
    ]
    .into_iter()
    .enumerate()
    {
        requests.push(create(&format!("bad{i}"), config));
    }
    let mut config = |name: &str, policy: &str, extra: Value| {
        let mut c =
            json!({"ack_policy": "explicit", "priority_policy": policy, "priority_groups": ["A"]});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        requests.push(create(name, c));
    };
    config("o", "overflow", json!({}));
    config("p", "pinned_client", json!({}));
    config(
        "t",
        "pinned_client",
        json!({"priority_timeout": 300_000_000u64}),
    );
    config("r", "prioritized", json!({"filter_subject": "p.r.>"}));
    requests.push(create("n", json!({"ack_policy": "explicit"})));
    same_errors(&pair, &requests).await;

    let mut transcripts = Vec::new();
    for server in [&pair.ours, &pair.theirs] {
        let nc = connect(server).await;
        let mut t: Vec<Value> = Vec::new();
        let mut advisories = nc
            .subscribe("$JS.EVENT.ADVISORY.CONSUMER.*.P.*")
            .await
            .unwrap();
        for i in 0..3 {
            nc.request(format!("p.{i}"), format!("{i}").into())
                .await
                .unwrap();
        }
        let short = 400_000_000u64;
        let ask = |consumer: &'static str, extra: Value| {
            let mut body = json!({"batch": 1, "expires": short});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            pull(&nc, "P", consumer, body)
        };
        let wait = Duration::from_millis(700);
        // Pull request checks.
        for (consumer, extra) in [
            ("n", json!({"group": "A", "min_pending": 5})),
            ("n", json!({"id": "x"})),
            ("o", json!({"group": "A", "priority": 10})),
            ("o", json!({})),
            ("o", json!({"group": "B"})),
            ("r", json!({"group": "A", "priority": -1})),
        ] {
            let mut sub = ask(consumer, extra).await;
            t.push(json!(frames(&mut sub, 1, wait).await));
        }
        // Overflow: passed over below its mark, served at it.
        let mut sub = ask("o", json!({"group": "A", "min_pending": 5})).await;
        t.push(json!(frames(&mut sub, 1, wait).await));
        let mut sub = ask("o", json!({"group": "A", "min_pending": 3})).await;
        t.push(json!(frames(&mut sub, 1, wait).await));
        // Pinned client.
        let mut first = ask("p", json!({"group": "A"})).await;
        let pin = pin_id_of(&mut first).await;
        let info = api(&nc, "$JS.API.CONSUMER.INFO.P.p", Value::Null).await;
        t.push(json!(
            info["priority_groups"][0]["pinned_client_id"] == json!(pin)
        ));
        let mut other = ask("p", json!({"group": "A"})).await;
        t.push(json!(frames(&mut other, 1, wait).await));
        let mut wrong = ask("p", json!({"group": "A", "id": "bogus"})).await;
        t.push(json!(frames(&mut wrong, 1, wait).await));
        let mut again = ask("p", json!({"group": "A", "id": pin})).await;
        t.push(json!(frames(&mut again, 1, wait).await));
        for (consumer, body) in [
            ("P.p", Value::Null),
            ("P.p", json!({"group": ""})),
            ("P.p", json!({"group": "bad name"})),
            ("P.p", json!({"group": "Z"})),
            ("P.nope", json!({"group": "A"})),
            ("NOPE.p", json!({"group": "A"})),
            ("P.p", json!({"group": "A"})),
        ] {
            let payload = if body.is_null() {
                Vec::new()
            } else {
                serde_json::to_vec(&body).unwrap()
            };
            let reply = nc
                .request(format!("$JS.API.CONSUMER.UNPIN.{consumer}"), payload.into())
                .await
                .unwrap();
            let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
            t.push(json!([reply["type"], comparable_error(&reply["error"])]));
        }
        let mut stale = ask("p", json!({"group": "A", "id": pin})).await;
        t.push(json!(frames(&mut stale, 1, wait).await));
        let mut repinned = ask("p", json!({"group": "A"})).await;
        t.push(json!(pin_id_of(&mut repinned).await != pin));
        // A pin that no pull request renews lapses after priority_timeout.
        let mut lapsing = ask("t", json!({"group": "A"})).await;
        t.push(json!(frames(&mut lapsing, 1, wait).await));
        // Prioritized: the lower priority number is served first.
        let mut requests = Vec::new();
        for (batch, priority) in [(5, 5), (2, 0)] {
            let body = json!({"batch": batch, "expires": 2_000_000_000u64, "group": "A",
                "priority": priority});
            requests.push(pull(&nc, "P", "r", body).await);
        }
        let [mut low, mut high] = <[_; 2]>::try_from(requests).ok().unwrap();
        testkit::eventually_async(Duration::from_secs(10), "two waiting pulls", async || {
            api(&nc, "$JS.API.CONSUMER.INFO.P.r", Value::Null).await["num_waiting"] == 2
        })
        .await;
        for i in 0..3 {
            nc.request(format!("p.r.{i}"), format!("r{i}").into())
                .await
                .unwrap();
        }
        let high_got = frames(&mut high, 2, Duration::from_secs(3)).await;
        let low_got = frames(&mut low, 1, Duration::from_secs(3)).await;
        t.push(json!([high_got, low_got]));
        // The advisories, in order, without ids and times: up to the lapse of `t`'s pin (a
        // few hundred ms after it was pinned), then whatever else comes soon after.
        let mut seen = Vec::new();
        use futures::StreamExt;
        let lapsed = |seen: &Vec<Value>| seen.iter().any(|a| a[3] == "timeout");
        while let Ok(Some(m)) = tokio::time::timeout(
            Duration::from_millis(if lapsed(&seen) { 300 } else { 3000 }),
            advisories.next(),
        )
        .await
        {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            if !m.subject.contains("PINNED") {
                continue;
            }
            seen.push(json!([
                m.subject.as_str(),
                v["type"],
                v["group"],
                v["reason"]
            ]));
        }
        t.push(json!(seen));
        transcripts.push(t);
    }
    for (i, (ours, theirs)) in transcripts[0].iter().zip(&transcripts[1]).enumerate() {
        assert_eq!(ours, theirs, "observation {i}");
    }
    assert_eq!(transcripts[0].len(), transcripts[1].len());
}

/// API accounting and the `$JS.EVENT.ADVISORY.API` audit advisory: a request counts once its
/// reply is made (an account info does not count itself), errors count as errors, direct gets
/// and consumer resets are not API requests, and every counted request is audited with its
/// subject, request and reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_audit_and_counts_match_nats_server() {
    use futures::StreamExt;
    let Some(pair) = start_pair() else {
        return;
    };
    let mut transcripts = Vec::new();
    for server in [&pair.ours, &pair.theirs] {
        let nc = connect(server).await;
        let mut audit = nc.subscribe("$JS.EVENT.ADVISORY.API").await.unwrap();
        nc.flush().await.unwrap();
        let mut t = Vec::new();
        let totals = |v: &Value| json!([v["api"]["total"], v["api"]["errors"]]);
        t.push(totals(&api(&nc, "$JS.API.INFO", Value::Null).await));
        api(
            &nc,
            "$JS.API.STREAM.CREATE.D",
            json!({"name": "D", "subjects": ["d.>"], "allow_direct": true}),
        )
        .await;
        api(&nc, "$JS.API.STREAM.INFO.NOPE", Value::Null).await;
        nc.request("d.x", "x".into()).await.unwrap();
        nc.request("$JS.API.DIRECT.GET.D", r#"{"seq":1}"#.into())
            .await
            .unwrap();
        api(
            &nc,
            "$JS.API.CONSUMER.CREATE.D.c",
            json!({"stream_name": "D", "config": {"name": "c"}}),
        )
        .await;
        api(&nc, "$JS.API.CONSUMER.RESET.D.c", Value::Null).await;
        t.push(totals(&api(&nc, "$JS.API.INFO", Value::Null).await));
        let mut seen = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), audit.next()).await
        {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            let response: Value = serde_json::from_str(v["response"].as_str().unwrap()).unwrap();
            seen.push(json!([
                v["type"],
                v["subject"],
                v["request"],
                v["server"].is_string(),
                v["client"]["acc"],
                response["type"],
                response["error"]["err_code"],
            ]));
        }
        // nats-server sends some audits from another goroutine: the order may differ.
        seen.sort_by_key(|v| v.to_string());
        t.push(json!(seen));
        transcripts.push(t);
    }
    assert_eq!(transcripts[0], transcripts[1]);
}

/// Counter streams (`allow_msg_counter`): totals in PubAcks (`val`) and stored messages, the
/// publish errors (10168-10171) and the config rules, against nats-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_nats_server() {
    let Some(pair) = start_pair() else {
        return;
    };
    let stream = |name: &str, extra: Value| {
        let mut cfg = json!({"name": name, "subjects": [format!("{}.>", name.to_lowercase())],
            "allow_msg_counter": true});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        (format!("$JS.API.STREAM.CREATE.{name}"), cfg)
    };
    let requests = vec![
        stream("C", json!({})),
        stream("N", json!({"discard": "new"})),
        stream("T", json!({"allow_msg_ttl": true})),
        stream("I", json!({"retention": "interest"})),
        stream("P", json!({"allow_msg_counter": false})),
        (
            "$JS.API.STREAM.UPDATE.C".to_string(),
            json!({"name": "C", "subjects": ["c.>"]}),
        ),
    ];
    same_errors(&pair, &requests).await;
    let mut transcripts = Vec::new();
    for server in [&pair.ours, &pair.theirs] {
        let nc = connect(server).await;
        let mut t = Vec::new();
        for (subject, incr, payload, extra) in [
            ("c.x", Some("5"), "", None),
            ("c.x", Some("3"), "", None),
            ("c.x", Some("-10"), "", None),
            ("c.y", Some("123456789012345678901234567890"), "", None),
            ("c.x", Some("1"), "body", None),
            ("c.x", Some("x"), "", None),
            ("c.x", None, "", None),
            (
                "c.x",
                Some("1"),
                "",
                Some(("Nats-Expected-Last-Sequence", "3")),
            ),
            ("p.x", Some("1"), "", None),
        ] {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(incr) = incr {
                headers.insert("Nats-Incr", incr);
            }
            if let Some((k, v)) = extra {
                headers.insert(k, v);
            }
            let ack = nc
                .request_with_headers(subject.to_string(), headers, payload.to_string().into())
                .await
                .unwrap();
            t.push(serde_json::from_slice::<Value>(&ack.payload).unwrap());
        }
        let info = api(&nc, "$JS.API.STREAM.INFO.C", Value::Null).await;
        t.push(json!([
            info["config"]["allow_msg_counter"],
            info["config"]["metadata"]["_nats.req.level"],
            info["state"]["messages"]
        ]));
        let last = api(
            &nc,
            "$JS.API.STREAM.MSG.GET.C",
            json!({"last_by_subj": "c.x"}),
        )
        .await;
        t.push(last["message"]["data"].clone());
        transcripts.push(t);
    }
    for (i, (ours, theirs)) in transcripts[0].iter().zip(&transcripts[1]).enumerate() {
        assert_eq!(ours, theirs, "observation {i}");
    }
}

/// A stream's `consumer_limits` are the defaults and ceilings of its consumers, and an update
/// that would leave a consumer above them is refused (10069), as on nats-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_consumer_limits_match_nats_server() {
    let Some(pair) = start_pair() else {
        return;
    };
    let limits = json!({"max_ack_pending": 10, "inactive_threshold": 2_000_000_000u64});
    let create = |name: &str, config: Value| {
        (
            format!("$JS.API.CONSUMER.CREATE.L.{name}"),
            json!({"stream_name": "L", "config": config}),
        )
    };
    let requests = vec![
        (
            "$JS.API.STREAM.CREATE.L".to_string(),
            json!({"name": "L", "subjects": ["l.>"], "consumer_limits": limits}),
        ),
        create("a", json!({"name": "a", "ack_policy": "explicit"})),
        create(
            "b",
            json!({"name": "b", "max_ack_pending": 20, "ack_policy": "explicit"}),
        ),
        create(
            "c",
            json!({"name": "c", "inactive_threshold": 5_000_000_000u64}),
        ),
        // Only `a` exceeds the update's limit (nats-server lists several in map order).
        create(
            "d",
            json!({"durable_name": "d", "ack_policy": "explicit", "max_ack_pending": 3}),
        ),
        (
            "$JS.API.STREAM.UPDATE.L".to_string(),
            json!({"name": "L", "subjects": ["l.>"], "consumer_limits": {"max_ack_pending": 5}}),
        ),
    ];
    same_errors(&pair, &requests).await;
    for server in [&pair.ours, &pair.theirs] {
        let nc = connect(server).await;
        let a = api(&nc, "$JS.API.CONSUMER.INFO.L.a", Value::Null).await;
        assert_eq!(a["config"]["max_ack_pending"], 10, "{a}");
        assert_eq!(a["config"]["inactive_threshold"], 2_000_000_000u64, "{a}");
    }
}

const LIMITS_CONF: &str = r#"
host: 127.0.0.1
port: @PORT@
jetstream { store_dir: "@DIR@", domain: "hub" }
no_auth_user: u
accounts {
  A {
    users: [{ user: u }]
    jetstream {
      max_mem: 64MB, max_file: 32MB, max_streams: 10, max_consumers: 20, max_ack_pending: 100,
      memory_max_stream_bytes: 2048, store_max_stream_bytes: 4096, max_stream_bytes: true
    }
  }
}
"#;

/// Account limits beyond the quotas (`max_bytes` required and capped per stream, the
/// `max_ack_pending` ceiling), the JetStream domain in account info, PubAcks and its API
/// prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_limits_and_domain_match_nats_server() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let Some(reference) = reference_bin() else {
        return;
    };
    let mut transcripts = Vec::new();
    for (bin, dir) in [
        (js_server::natsd(), dirs[0].path()),
        (reference.to_str().unwrap(), dirs[1].path()),
    ] {
        let port = js_server::free_port();
        let conf = LIMITS_CONF
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", dir.to_str().unwrap());
        let path = dir.join("limits.conf");
        std::fs::write(&path, conf).unwrap();
        let server = js_server::spawn(bin, &["-c".to_string(), path.display().to_string()]);
        let nc = connect(&server).await;
        let mut t = Vec::new();
        for (subject, body) in [
            ("$JS.API.STREAM.CREATE.S", json!({"name": "S"})),
            (
                "$JS.API.STREAM.CREATE.S",
                json!({"name": "S", "max_bytes": 65536}),
            ),
            (
                "$JS.API.STREAM.CREATE.S",
                json!({"name": "S", "max_bytes": 4096, "storage": "memory"}),
            ),
            (
                "$JS.API.STREAM.CREATE.S",
                json!({"name": "S", "max_bytes": 128}),
            ),
            (
                "$JS.API.CONSUMER.CREATE.S.c",
                json!({"stream_name": "S", "config": {"name": "c", "max_ack_pending": 200, "ack_policy": "explicit"}}),
            ),
            (
                "$JS.API.CONSUMER.CREATE.S.d",
                json!({"stream_name": "S", "config": {"name": "d", "ack_policy": "explicit"}}),
            ),
            ("$JS.hub.API.STREAM.INFO.S", Value::Null),
            ("$JS.API.STREAM.LIST", Value::Null),
            ("$JS.API.INFO", Value::Null),
            // A PubAck names the domain too.
            ("S", Value::Null),
        ] {
            let v = api(&nc, subject, body).await;
            t.push(json!([
                v["type"],
                comparable_error(&v["error"]),
                v["config"]["max_ack_pending"],
                v["domain"],
                v["limits"],
                v["streams"][0]["domain"],
                v["stream"],
                v["seq"],
            ]));
        }
        transcripts.push(t);
    }
    for (i, (ours, theirs)) in transcripts[0].iter().zip(&transcripts[1]).enumerate() {
        assert_eq!(ours, theirs, "observation {i}");
    }
}

/// Every consumer config nats-server refuses, refused with the same code and text (and the
/// ones it accepts, accepted): checkConsumerCfg's checks in order, on limits, work-queue and
/// interest streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_consumer_configs_match_nats_server() {
    let Some(pair) = start_pair() else {
        return;
    };
    let mut requests = vec![
        (
            "$JS.API.STREAM.CREATE.V".to_string(),
            json!({"name": "V", "subjects": ["v.>"]}),
        ),
        (
            "$JS.API.STREAM.CREATE.W".to_string(),
            json!({"name": "W", "subjects": ["w.>"], "retention": "workqueue"}),
        ),
        (
            "$JS.API.STREAM.CREATE.I".to_string(),
            json!({"name": "I", "subjects": ["i.>"], "retention": "interest"}),
        ),
    ];
    let configs = [
        json!({"name": "a.b"}),
        json!({"durable_name": "a*b"}),
        json!({"num_replicas": 3}),
        json!({"num_replicas": -1}),
        json!({"backoff": [-1]}),
        json!({"ack_wait": -1}),
        json!({"ack_policy": "explicit", "backoff": [1000000000, 2000000000], "max_deliver": 1}),
        json!({"description": "x".repeat(4097)}),
        json!({"deliver_subject": "d.*"}),
        json!({"deliver_subject": "d..x"}),
        json!({"deliver_subject": "v.x"}),
        json!({"deliver_subject": "d", "max_waiting": 5}),
        json!({"deliver_subject": "d", "max_ack_pending": 5}),
        json!({"deliver_subject": "d", "idle_heartbeat": 50_000_000}),
        json!({"rate_limit_bps": 100}),
        json!({"idle_heartbeat": 1_000_000_000}),
        json!({"flow_control": true}),
        json!({"max_expires": 500_000}),
        json!({"direct": true}),
        json!({"direct": true, "deliver_subject": "d", "durable_name": "x"}),
        json!({"filter_subject": "v.a", "filter_subjects": ["v.b"]}),
        json!({"filter_subject": "v..a"}),
        json!({"filter_subjects": ["v.a", ""]}),
        json!({"filter_subjects": ["v.*", "v.a"]}),
        json!({"deliver_policy": "all", "opt_start_seq": 3}),
        json!({"deliver_policy": "last", "opt_start_time": "2024-01-01T00:00:00Z"}),
        json!({"deliver_policy": "last_per_subject"}),
        json!({"deliver_policy": "new", "opt_start_seq": 1}),
        json!({"deliver_policy": "by_start_sequence"}),
        json!({"deliver_policy": "by_start_sequence", "opt_start_seq": 1,
            "opt_start_time": "2024-01-01T00:00:00Z"}),
        json!({"deliver_policy": "by_start_time"}),
        json!({"deliver_policy": "by_start_time", "opt_start_time": "2024-01-01T00:00:00Z",
            "opt_start_seq": 2}),
        json!({"sample_freq": "abc"}),
        json!({"sample_freq": "50%"}),
        json!({"deliver_subject": "d", "flow_control": true}),
        json!({"durable_name": "x", "name": "y"}),
        json!({"metadata": {"k": "v".repeat(129 * 1024)}}),
        json!({"max_deliver": -5, "max_waiting": -1, "max_batch": -1, "inactive_threshold": -1}),
        json!({"deliver_policy": "sometimes"}),
        json!({"ack_policy": "flow_control"}),
        json!({"ack_policy": "flow_control", "deliver_subject": "fc1"}),
        json!({"ack_policy": "flow_control", "deliver_subject": "fc2", "ack_wait": 1_000_000_000}),
        json!({"ack_policy": "flow_control", "deliver_subject": "fc3", "max_deliver": 3}),
        json!({"ack_policy": "flow_control", "deliver_subject": "fc4", "max_ack_pending": -1}),
        json!({"replay_policy": "original"}),
    ];
    for (i, config) in configs.iter().enumerate() {
        let mut config = config.clone();
        if config.get("name").is_none() && config.get("durable_name").is_none() {
            config["name"] = json!(format!("c{i}"));
        }
        let name = config
            .get("durable_name")
            .or(config.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let subject = if name.contains(['.', '*', '>']) {
            "$JS.API.CONSUMER.CREATE.V".to_string()
        } else {
            format!("$JS.API.CONSUMER.CREATE.V.{name}")
        };
        requests.push((subject, json!({"stream_name": "V", "config": config})));
    }
    for (stream, config) in [
        ("W", json!({"name": "w1"})),
        (
            "W",
            json!({"name": "w2", "ack_policy": "explicit", "deliver_policy": "last"}),
        ),
        ("W", json!({"name": "w3", "ack_policy": "explicit"})),
        ("W", json!({"name": "w4", "ack_policy": "explicit"})),
        (
            "W",
            json!({"name": "w5", "ack_policy": "explicit", "filter_subject": "w.a"}),
        ),
        ("I", json!({"name": "i1", "num_replicas": 1})),
    ] {
        let name = config["name"].as_str().unwrap().to_string();
        requests.push((
            format!("$JS.API.CONSUMER.CREATE.{stream}.{name}"),
            json!({"stream_name": stream, "config": config}),
        ));
    }
    same_errors(&pair, &requests).await;
}

/// `sample_freq` (ack metrics), `replay_policy: original` (the stored gaps between messages)
/// and `rate_limit_bps` (a push consumer held to its rate), observed on both servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_sampling_replay_and_rate_limit_match_nats_server() {
    use futures::StreamExt;
    let Some(pair) = start_pair() else {
        return;
    };
    let mut transcripts = Vec::new();
    for server in [&pair.ours, &pair.theirs] {
        let nc = connect(server).await;
        let mut t = Vec::new();
        api(
            &nc,
            "$JS.API.STREAM.CREATE.Q",
            json!({"name": "Q", "subjects": ["q.>"]}),
        )
        .await;
        for i in 0..3 {
            nc.request(format!("q.{i}"), "x".into()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let create = |name: &str, config: Value| {
            let mut config = config;
            config["name"] = json!(name);
            let subject = format!("$JS.API.CONSUMER.CREATE.Q.{name}");
            let nc = nc.clone();
            async move { api(&nc, &subject, json!({"stream_name": "Q", "config": config})).await }
        };
        // Ack metrics: every ack of an explicit consumer at 100%.
        let mut metrics = nc
            .subscribe("$JS.EVENT.METRIC.CONSUMER.ACK.>")
            .await
            .unwrap();
        create(
            "s",
            json!({"ack_policy": "explicit", "sample_freq": "100%"}),
        )
        .await;
        let mut sub = pull(&nc, "Q", "s", json!({"batch": 1})).await;
        let m = sub.next().await.unwrap();
        nc.publish(m.reply.unwrap(), "+ACK".into()).await.unwrap();
        let metric = tokio::time::timeout(Duration::from_secs(5), metrics.next())
            .await
            .expect("no ack metric")
            .unwrap();
        let v: Value = serde_json::from_slice(&metric.payload).unwrap();
        t.push(json!([
            metric.subject.as_str(),
            v["type"],
            v["stream_seq"],
            v["consumer_seq"],
            v["deliveries"],
            v["ack_time"].is_u64(),
        ]));
        // Replay original: the 300 ms gaps come back.
        create(
            "r",
            json!({"ack_policy": "none", "replay_policy": "original"}),
        )
        .await;
        let mut sub = pull(
            &nc,
            "Q",
            "r",
            json!({"batch": 3, "expires": 5_000_000_000u64}),
        )
        .await;
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            sub.next().await.unwrap();
        }
        t.push(json!(start.elapsed() >= Duration::from_millis(500)));
        // Rate limit: 1 MB/s with a 1 MB burst; 3 MB take about two seconds.
        let big = vec![b'x'; 100_000];
        for _ in 0..30 {
            nc.request("q.big", big.clone().into()).await.unwrap();
        }
        let inbox = nc.new_inbox();
        let mut push = nc.subscribe(inbox.clone()).await.unwrap();
        create(
            "l",
            json!({"deliver_subject": inbox, "filter_subject": "q.big",
                "rate_limit_bps": 8_000_000u64}),
        )
        .await;
        let start = tokio::time::Instant::now();
        let mut bytes = 0;
        while bytes < 30 * 100_000 {
            let m = tokio::time::timeout(Duration::from_secs(10), push.next())
                .await
                .expect("rate-limited delivery stalled")
                .unwrap();
            bytes += m.payload.len();
        }
        let took = start.elapsed();
        t.push(json!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(4)
        ));
        transcripts.push(t);
    }
    assert_eq!(transcripts[0], transcripts[1]);
    assert_eq!(transcripts[0][1], json!(true), "replay kept the gaps");
    assert_eq!(transcripts[0][2], json!(true), "rate limit held");
}

/// `jetstream { strict }` (on by default, as on nats-server): a request member its type does
/// not have is refused with Go's `json: unknown field`, and accepted with `strict: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_requests_match_nats_server() {
    let Some(pair) = start_pair() else {
        return;
    };
    let requests = vec![
        (
            "$JS.API.STREAM.CREATE.U".to_string(),
            json!({"name": "U", "bogus": 1}),
        ),
        (
            "$JS.API.STREAM.CREATE.U".to_string(),
            json!({"name": "U", "consumer_limits": {"bogus": 1}}),
        ),
        ("$JS.API.STREAM.CREATE.U".to_string(), json!({"name": "U"})),
        (
            "$JS.API.CONSUMER.CREATE.U.c".to_string(),
            json!({"stream_name": "U", "config": {"name": "c", "bogus": true}}),
        ),
        (
            "$JS.API.STREAM.INFO.U".to_string(),
            json!({"deleted_details": true, "bogus": 1}),
        ),
        (
            "$JS.API.STREAM.MSG.GET.U".to_string(),
            json!({"seq": 1, "bogus": 1}),
        ),
    ];
    same_errors(&pair, &requests).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("lenient.conf");
    let port = js_server::free_port();
    std::fs::write(
        &conf,
        format!(
            "host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: \"{}\", strict: false }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let lenient = js_server::spawn(
        js_server::natsd(),
        &["-c".to_string(), conf.display().to_string()],
    );
    let nc = connect(&lenient).await;
    let r = api(
        &nc,
        "$JS.API.STREAM.CREATE.U",
        json!({"name": "U", "bogus": 1}),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
}

/// A value of the right type for each member of nats-server 2.15's `StreamConfig`, nested
/// members included (each member then is known to strict decoding on both servers).
fn stream_member(field: &str, n: usize) -> Value {
    match field {
        "description" => json!("d"),
        "subjects" => json!([format!("k{n}.>")]),
        "retention" => json!("limits"),
        "discard" => json!("old"),
        "storage" => json!("file"),
        "compression" => json!("none"),
        "persist_mode" => json!("default"),
        "num_replicas" | "first_seq" => json!(1),
        "max_consumers" | "max_msgs" | "max_bytes" | "max_msgs_per_subject" | "max_msg_size" => {
            json!(-1)
        }
        "max_age" | "duplicate_window" | "subject_delete_marker_ttl" => json!(0),
        "placement" => json!({"cluster": "", "tags": [], "preferred": ""}),
        "mirror" => json!({"name": "O", "opt_start_seq": 0, "filter_subject": "",
            "subject_transforms": [], "external": {"api": "", "deliver": ""},
            "consumer": {"name": "c", "deliver_subject": "d"}}),
        "sources" => {
            json!([{"name": "O", "opt_start_seq": 1, "opt_start_time": "2026-01-01T00:00:00Z",
            "filter_subject": "a", "subject_transforms": [{"src": "a", "dest": "b"}],
            "external": {"api": "$JS.X.API", "deliver": "dlv"}}])
        }
        "subject_transform" => json!({"src": format!("k{n}.>"), "dest": "t.>"}),
        "republish" => json!({"src": ">", "dest": "rp.>", "headers_only": false}),
        "consumer_limits" => json!({"inactive_threshold": 0, "max_ack_pending": 0}),
        "metadata" => json!({"k": "v"}),
        _ => json!(false),
    }
}

/// The same for nats-server 2.15's `ConsumerConfig`.
fn consumer_member(field: &str) -> Value {
    match field {
        "durable_name" | "name" => json!("c"),
        "description" | "filter_subject" | "deliver_subject" | "deliver_group" | "sample_freq" => {
            json!("")
        }
        "deliver_policy" => json!("all"),
        "ack_policy" => json!("explicit"),
        "replay_policy" => json!("instant"),
        "priority_policy" => json!("none"),
        "opt_start_time" | "pause_until" => json!("2020-01-01T00:00:00Z"),
        "backoff" | "filter_subjects" | "priority_groups" => json!([]),
        "max_deliver" => json!(-1),
        "metadata" => json!({"k": "v"}),
        "flow_control" | "headers_only" | "mem_storage" | "direct" | "sourcing" => json!(false),
        _ => json!(0),
    }
}

fn unknown_field(reply: &Value) -> bool {
    reply["error"]["description"]
        .as_str()
        .is_some_and(|d| d.contains("unknown field"))
}

/// Strict decoding knows every member nats-server knows: each stream and consumer config
/// member (nested members of sources, mirrors, transforms and limits too) sent with a value
/// of its type is never an "unknown field" on natsd, whatever else either server says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_config_member_is_known() {
    let Some(pair) = start_pair() else {
        return;
    };
    let a = connect(&pair.ours).await;
    let b = connect(&pair.theirs).await;
    for (n, field) in STREAM_FIELDS.iter().enumerate() {
        let name = format!("K{n}");
        let mut cfg = json!({"name": name, "subjects": [format!("k{n}.>")]});
        cfg[*field] = stream_member(field, n);
        let subject = format!("$JS.API.STREAM.CREATE.{name}");
        let theirs = api(&b, &subject, cfg.clone()).await;
        assert!(!unknown_field(&theirs), "nats-server, {field}: {theirs}");
        let ours = api(&a, &subject, cfg).await;
        assert!(!unknown_field(&ours), "natsd, {field}: {ours}");
    }
    for nc in [&a, &b] {
        let r = api(nc, "$JS.API.STREAM.CREATE.C", json!({"name": "C"})).await;
        assert!(r["error"].is_null(), "{r}");
    }
    for field in CONSUMER_FIELDS {
        let mut cfg = json!({"ack_policy": "explicit"});
        cfg[*field] = consumer_member(field);
        let body = json!({"stream_name": "C", "config": cfg, "action": "", "pedantic": false});
        let theirs = api(&b, "$JS.API.CONSUMER.CREATE.C", body.clone()).await;
        assert!(!unknown_field(&theirs), "nats-server, {field}: {theirs}");
        let ours = api(&a, "$JS.API.CONSUMER.CREATE.C", body).await;
        assert!(!unknown_field(&ours), "natsd, {field}: {ours}");
    }
}

/// Creates consumers `from..to` on `stream`, 50 requests in flight; the replies in order.
async fn create_consumers(
    nc: &async_nats::Client,
    stream: &str,
    range: std::ops::Range<usize>,
) -> Vec<Value> {
    use futures::StreamExt;
    futures::stream::iter(range)
        .map(|i| {
            let subject = format!("$JS.API.CONSUMER.CREATE.{stream}.c{i}");
            let body = json!({"stream_name": stream, "config": {"durable_name": format!("c{i}")}});
            async move { api(nc, &subject, body).await }
        })
        .buffered(50)
        .collect()
        .await
}

/// nats-server 2.15 gives a stream without a consumer limit of its own (or of its account's) a
/// default of 1,000 consumers: the 1,001st is refused with 10026; a stream's own
/// `max_consumers` above it is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_consumer_limit_matches_nats_server() {
    let Some(pair) = start_pair() else {
        return;
    };
    for server in [&pair.ours, &pair.theirs] {
        let nc = connect(server).await;
        for (name, max) in [("D", -1), ("E", 1001)] {
            let cfg = json!({"name": name, "storage": "memory", "max_consumers": max});
            let r = api(&nc, &format!("$JS.API.STREAM.CREATE.{name}"), cfg).await;
            assert!(r["error"].is_null(), "{r}");
        }
        let ok = create_consumers(&nc, "D", 0..1000).await;
        assert!(ok.iter().all(|r| r["error"].is_null()), "{:?}", ok.last());
        let over = create_consumers(&nc, "D", 1000..1001).await;
        assert_eq!(over[0]["error"]["err_code"], 10026, "{}", over[0]);
        let ok = create_consumers(&nc, "E", 0..1001).await;
        assert!(ok.iter().all(|r| r["error"].is_null()), "{:?}", ok.last());
        let over = create_consumers(&nc, "E", 1001..1002).await;
        assert_eq!(over[0]["error"]["err_code"], 10026, "{}", over[0]);
    }
}

/// A create or update reply reduced to what pedantic mode decides: the error, or the config
/// members a default could have changed.
fn pedantic_outcome(reply: &Value) -> Value {
    if !reply["error"].is_null() {
        return comparable_error(&reply["error"]);
    }
    let cfg = &reply["config"];
    let keep = [
        "max_msgs",
        "max_msgs_per_subject",
        "max_bytes",
        "max_msg_size",
        "max_consumers",
        "duplicate_window",
        "allow_msg_ttl",
        "allow_rollup_hdrs",
        "deny_purge",
        "mirror_direct",
        "republish",
        "sealed",
        "discard",
        "deny_delete",
        "max_deliver",
        "ack_wait",
        "max_ack_pending",
        "inactive_threshold",
        "max_waiting",
        "flow_control",
        "idle_heartbeat",
    ];
    keep.iter()
        .map(|k| (k.to_string(), cfg[k].clone()))
        .collect()
}

/// `pedantic: true` in stream and consumer create/update requests: where nats-server would
/// adjust the config (negative limits, a duplicate window shortened to `max_age`, markers or
/// schedules turning on TTLs and roll-ups, an implicit or empty republish source, a mirror's
/// direct get, the consumer defaults taken from the stream's limits, a first backoff that
/// is not the ack wait, flow-control acks), it refuses instead, with the same code and text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pedantic_mode_matches_nats_server() {
    let Some(pair) = start_pair() else {
        return;
    };
    let streams = [
        json!({"name": "P1", "subjects": ["p1"]}),
        json!({"name": "P2", "subjects": ["p2"], "max_msgs": -5}),
        json!({"name": "P3", "subjects": ["p3"], "max_consumers": -2, "max_bytes": -3}),
        json!({"name": "P4", "subjects": ["p4"], "max_age": 1_000_000_000}),
        json!({"name": "P5", "subjects": ["p5"], "max_age": 1_000_000_000, "duplicate_window": 500_000_000}),
        json!({"name": "P6", "subjects": ["p6"], "subject_delete_marker_ttl": 2_000_000_000}),
        json!({"name": "P7", "subjects": ["p7"], "subject_delete_marker_ttl": 2_000_000_000, "allow_msg_ttl": true}),
        json!({"name": "P8", "subjects": ["p8"], "subject_delete_marker_ttl": 2_000_000_000, "allow_msg_ttl": true, "allow_rollup_hdrs": true}),
        json!({"name": "P9", "subjects": ["p9"], "allow_msg_schedules": true}),
        json!({"name": "P10", "subjects": ["p10"], "allow_msg_schedules": true, "allow_rollup_hdrs": true}),
        json!({"name": "P11", "subjects": ["p11"], "republish": {"dest": "rp.>"}}),
        json!({"name": "P12", "subjects": ["p12.>"], "republish": {"src": "p12.>", "dest": "rp12.>"}}),
        json!({"name": "P13", "subjects": ["p13.*"], "subject_transform": {"src": "p13.*", "dest": "t13.$1"}, "republish": {"src": ">", "dest": ">"}}),
        json!({"name": "P14", "subjects": ["p14"], "max_msg_size": 0, "num_replicas": 0}),
        json!({"name": "OD", "subjects": ["od"], "allow_direct": true}),
        json!({"name": "M1", "mirror": {"name": "OD"}}),
        json!({"name": "M2", "mirror": {"name": "OD"}, "mirror_direct": true}),
        json!({"name": "M3", "mirror": {"name": "P1"}}),
        json!({"name": "C", "subjects": ["c.>"]}),
        json!({"name": "CL", "subjects": ["cl.>"], "consumer_limits": {"max_ack_pending": 50, "inactive_threshold": 10_000_000_000_u64}}),
    ];
    let consumers = [
        ("C", json!({"durable_name": "d1", "ack_policy": "explicit"})),
        (
            "C",
            json!({"durable_name": "d2", "ack_policy": "explicit", "max_deliver": -3}),
        ),
        ("C", json!({"durable_name": "d3", "max_waiting": -1})),
        ("C", json!({"durable_name": "d4", "max_ack_pending": -2})),
        ("C", json!({"durable_name": "d5", "max_batch": -1})),
        ("C", json!({"durable_name": "d6", "max_expires": -1})),
        ("C", json!({"durable_name": "d7", "max_bytes": -1})),
        (
            "C",
            json!({"durable_name": "d8", "idle_heartbeat": -1, "deliver_subject": "x"}),
        ),
        ("C", json!({"durable_name": "d9", "inactive_threshold": -1})),
        ("C", json!({"durable_name": "d10", "priority_timeout": -1})),
        (
            "C",
            json!({"durable_name": "d11", "ack_policy": "explicit", "backoff": [1_000_000_000, 2_000_000_000]}),
        ),
        (
            "C",
            json!({"durable_name": "d12", "ack_policy": "explicit", "backoff": [1_000_000_000, 2_000_000_000], "ack_wait": 1_000_000_000, "max_deliver": 3}),
        ),
        ("CL", json!({"durable_name": "d13"})),
        ("CL", json!({"durable_name": "d14", "max_ack_pending": 10})),
        (
            "CL",
            json!({"durable_name": "d15", "max_ack_pending": 10, "inactive_threshold": 5_000_000_000_u64}),
        ),
        (
            "C",
            json!({"durable_name": "d16", "ack_policy": "flow_control", "deliver_subject": "fc"}),
        ),
        (
            "C",
            json!({"durable_name": "d17", "ack_policy": "flow_control", "deliver_subject": "fc", "flow_control": true, "idle_heartbeat": 1_000_000_000}),
        ),
        ("C", json!({"name": "e1", "ack_policy": "none"})),
    ];
    let mut transcripts = Vec::new();
    for server in [&pair.ours, &pair.theirs] {
        let nc = connect(server).await;
        let mut t = Vec::new();
        for cfg in &streams {
            let name = cfg["name"].as_str().unwrap();
            let mut body = cfg.clone();
            body["pedantic"] = json!(true);
            let r = api(&nc, &format!("$JS.API.STREAM.CREATE.{name}"), body).await;
            t.push(json!([name, pedantic_outcome(&r)]));
        }
        // Not pedantic: the same adjustments are made silently.
        let lax = json!({"name": "L", "subjects": ["l"], "max_msgs": -5, "pedantic": false});
        let r = api(&nc, "$JS.API.STREAM.CREATE.L", lax).await;
        t.push(json!(["L", pedantic_outcome(&r)]));
        let update = json!({"name": "P1", "subjects": ["p1"], "max_msgs": -4, "pedantic": true});
        let r = api(&nc, "$JS.API.STREAM.UPDATE.P1", update).await;
        t.push(json!(["update", pedantic_outcome(&r)]));
        // Sealing adjusts other members even in pedantic mode.
        let seal = json!({"name": "P1", "subjects": ["p1"], "sealed": true, "pedantic": true});
        let r = api(&nc, "$JS.API.STREAM.UPDATE.P1", seal).await;
        t.push(json!(["seal", pedantic_outcome(&r)]));
        for (stream, cfg) in &consumers {
            let name = cfg["durable_name"]
                .as_str()
                .or(cfg["name"].as_str())
                .unwrap();
            let body = json!({"stream_name": stream, "config": cfg, "pedantic": true});
            let subject = format!("$JS.API.CONSUMER.CREATE.{stream}.{name}");
            let r = api(&nc, &subject, body).await;
            t.push(json!([name, pedantic_outcome(&r)]));
        }
        transcripts.push(t);
    }
    for (ours, theirs) in transcripts[0].iter().zip(&transcripts[1]) {
        assert_eq!(ours, theirs, "natsd vs nats-server");
    }
    let refused = transcripts[0]
        .iter()
        .filter(|o| o[1]["err_code"] == 10157)
        .count();
    assert!(refused >= 15, "{:?}", transcripts[0]);
}

/// The `client` object of the `$JS.EVENT.ADVISORY.API` audit advisory describes the requesting
/// connection as nats-server describes it: its id (the `client_id` of its INFO), address,
/// account, user, name, client library and version, connection start, kind and the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_audit_names_the_requesting_client_as_nats_server() {
    let Some(reference) = reference_bin() else {
        return;
    };
    let users = "host: 127.0.0.1\nport: @PORT@\njetstream { store_dir: \"@DIR@\" }\n\
        accounts { A { jetstream: enabled, users: [{user: u, password: p}] } }\n";
    let token = "host: 127.0.0.1\nport: @PORT@\njetstream { store_dir: \"@DIR@\" }\n\
        authorization { token: s3cret }\n";
    let login_user = || async_nats::ConnectOptions::new().user_and_password("u".into(), "p".into());
    let login_token = || async_nats::ConnectOptions::new().token("s3cret".into());
    for (conf, login, user) in [
        (
            users,
            &login_user as &dyn Fn() -> async_nats::ConnectOptions,
            "u",
        ),
        (token, &login_token, "[REDACTED]"),
    ] {
        let mut transcripts = Vec::new();
        for bin in [
            js_server::natsd().to_string(),
            reference.display().to_string(),
        ] {
            transcripts.push(audited_client(&bin, conf, login).await);
        }
        assert_eq!(transcripts[0], transcripts[1], "natsd vs nats-server");
        assert_eq!(transcripts[0]["values"][2], user);
    }
}

/// The `client` of the audit advisory of one `$JS.API.INFO` request on `bin` started with
/// `conf`, both connections logging in with `login`: its fields and the values that do not
/// change from run to run.
async fn audited_client(
    bin: &str,
    conf: &str,
    login: &dyn Fn() -> async_nats::ConnectOptions,
) -> Value {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let server = js_server::start_conf(bin, conf, dir.path());
    let url = format!("127.0.0.1:{}", server.port);
    let auditor = login().connect(&url).await.unwrap();
    let mut audit = auditor.subscribe("$JS.EVENT.ADVISORY.API").await.unwrap();
    auditor.flush().await.unwrap();
    let requester = login().name("requester").connect(&url).await.unwrap();
    let cid = requester.server_info().client_id;
    api(&requester, "$JS.API.INFO", Value::Null).await;
    let m = tokio::time::timeout(Duration::from_secs(5), audit.next())
        .await
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    let client = &v["client"];
    assert_eq!(client["id"], cid, "{bin}: {v}");
    assert_eq!(client["server"], v["server"], "{bin}: {v}");
    let start = client["start"].as_str().unwrap_or_default();
    assert!(start.ends_with('Z') && start.len() > 20, "{bin}: {v}");
    let mut fields: Vec<&String> = client.as_object().unwrap().keys().collect();
    // nats-server measures the round trip when the request arrives, natsd with its first
    // PING (docs/differences.md): present or not depending on timing.
    fields.retain(|k| *k != "rtt");
    fields.sort();
    json!({
        "fields": fields,
        "values": [&client["host"], &client["acc"], &client["user"], &client["name"],
                   &client["lang"], &client["ver"], &client["kind"], &client["client_type"]],
    })
}

/// The enum members are decoded as Go decodes them: the same names taken (`discard` in any
/// case, `deliver_policy: "undefined"`, an empty `persist_mode` or `action`), and anything
/// else (`null`, an empty or unknown name, a number) refused with the same description.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enum_members_match_nats_server() {
    let Some(pair) = start_pair() else {
        return;
    };
    let a = connect(&pair.ours).await;
    let b = connect(&pair.theirs).await;
    let odd_values = [json!(null), json!(""), json!("bogus"), json!(1)];
    let mut stream_cases = vec![
        ("discard", json!("OLD")),
        ("compression", json!("s2")),
        ("compression", json!("S2")),
        ("persist_mode", json!("")),
        ("storage", json!("Memory")),
    ];
    for field in [
        "retention",
        "discard",
        "storage",
        "compression",
        "persist_mode",
    ] {
        stream_cases.extend(odd_values.iter().map(|v| (field, v.clone())));
    }
    for (n, (field, value)) in stream_cases.into_iter().enumerate() {
        let name = format!("E{n}");
        let mut cfg = json!({"name": name, "subjects": [format!("e{n}.>")]});
        cfg[field] = value.clone();
        let subject = format!("$JS.API.STREAM.CREATE.{name}");
        let ours = api(&a, &subject, cfg.clone()).await;
        let theirs = api(&b, &subject, cfg).await;
        assert_eq!(ours["error"], theirs["error"], "{field}: {value}");
        assert_eq!(
            config_of(&ours)[field],
            config_of(&theirs)[field],
            "{field}: {value}"
        );
    }

    let created = api(&a, "$JS.API.STREAM.CREATE.C", json!({"name": "C"})).await;
    assert!(created["error"].is_null(), "{created}");
    let created = api(&b, "$JS.API.STREAM.CREATE.C", json!({"name": "C"})).await;
    assert!(created["error"].is_null(), "{created}");
    let mut consumer_cases = vec![
        ("deliver_policy", json!("undefined")),
        ("deliver_policy", json!("last_per_subject")),
        ("ack_policy", json!("Explicit")),
        ("priority_policy", json!("pinned")),
    ];
    for field in [
        "deliver_policy",
        "ack_policy",
        "replay_policy",
        "priority_policy",
    ] {
        consumer_cases.extend(odd_values.iter().map(|v| (field, v.clone())));
    }
    for (n, (field, value)) in consumer_cases.into_iter().enumerate() {
        let mut cfg = json!({"name": format!("c{n}"), "ack_policy": "explicit"});
        cfg[field] = value.clone();
        let request = json!({"stream_name": "C", "config": cfg});
        let subject = format!("$JS.API.CONSUMER.CREATE.C.c{n}");
        let ours = api(&a, &subject, request.clone()).await;
        let theirs = api(&b, &subject, request).await;
        assert_eq!(ours["error"], theirs["error"], "{field}: {value}");
        assert_eq!(
            config_of(&ours)[field],
            config_of(&theirs)[field],
            "{field}: {value}"
        );
    }
    for (n, action) in [
        json!(""),
        json!("create"),
        json!(null),
        json!("bogus"),
        json!(2),
    ]
    .into_iter()
    .enumerate()
    {
        let request =
            json!({"stream_name": "C", "config": {"name": format!("a{n}")}, "action": action});
        let subject = format!("$JS.API.CONSUMER.CREATE.C.a{n}");
        let ours = api(&a, &subject, request.clone()).await;
        let theirs = api(&b, &subject, request).await;
        assert_eq!(ours["error"], theirs["error"], "action: {action}");
    }
}
