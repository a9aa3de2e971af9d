//! JetStream stream API tests against a natsd process (and the real nats-server for the
//! differential checks). Each test starts its own server on a free port with its own store.

// A test binary has no public API, and tests may unwrap (HELPERS.md).
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use futures::StreamExt;
use serde_json::{json, Value};

#[path = "support/js_server.rs"]
#[allow(
    dead_code,
    reason = "shared by several test binaries, each using a part"
)]
mod js_server;
use js_server::{
    api, connect, err_code, natsd, natsd_and_reference, publish_raw, reference_server, run_nats_py,
    start_conf, start_js, Server,
};
use testkit::Signal;

async fn connect_user(s: &Server, user: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), "pw".into())
        .connect(format!("127.0.0.1:{}", s.port))
        .await
        .unwrap()
}

fn orders_config() -> stream::Config {
    stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.*".into()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_messages: 100_000,
        max_age: Duration::from_secs(7 * 24 * 3600),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_stream_publish_get_purge_delete() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_js(dir.path());
    let nc = connect(&s).await;
    let js = jetstream::new(nc.clone());
    let mut stream = js.create_stream(orders_config()).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..10_000u32 {
        let subject = if i % 2 == 0 {
            "orders.new"
        } else {
            "orders.paid"
        };
        pending.push(
            js.publish(subject, format!("order {i}").into())
                .await
                .unwrap(),
        );
        if pending.len() == 256 {
            for ack in pending.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in pending.drain(..) {
        ack.await.unwrap();
    }
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.state.messages, 10_000);
    assert_eq!(info.state.last_sequence, 10_000);
    assert_eq!(info.config.max_messages, 100_000);
    let first = stream.get_raw_message(1).await.unwrap();
    assert_eq!(&first.payload[..], b"order 0");
    let last = stream
        .get_last_raw_message_by_subject("orders.new")
        .await
        .unwrap();
    assert_eq!(last.sequence, 9_999);
    let purged = stream.purge().filter("orders.paid").await.unwrap();
    assert_eq!(purged.purged, 5_000);
    assert_eq!(stream.info().await.unwrap().state.messages, 5_000);
    let missing = api(&nc, "$JS.API.STREAM.MSG.GET.ORDERS", json!({"seq": 2})).await;
    assert_eq!(err_code(&missing), Some(10037));
    assert!(js.delete_stream("ORDERS").await.unwrap().success);
    let gone = api(&nc, "$JS.API.STREAM.INFO.ORDERS", Value::Null).await;
    assert_eq!(err_code(&gone), Some(10059));
    assert_eq!(
        gone["type"],
        "io.nats.jetstream.api.v1.stream_info_response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_retention() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_js(dir.path());
    let nc = connect(&s).await;
    let js = jetstream::new(nc.clone());

    let mut capped = js
        .create_stream(stream::Config {
            name: "CAP".into(),
            subjects: vec!["cap.>".into()],
            max_messages: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..12 {
        js.publish("cap.x", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let st = capped.info().await.unwrap().state.clone();
    assert_eq!(
        (st.messages, st.first_sequence, st.last_sequence),
        (5, 8, 12)
    );

    let mut per_subject = js
        .create_stream(stream::Config {
            name: "PER".into(),
            subjects: vec!["per.*".into()],
            max_messages_per_subject: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    for subj in [
        "per.a", "per.a", "per.a", "per.b", "per.b", "per.b", "per.c",
    ] {
        js.publish(subj, "x".into()).await.unwrap().await.unwrap();
    }
    assert_eq!(per_subject.info().await.unwrap().state.messages, 5);

    let created = api(
        &nc,
        "$JS.API.STREAM.CREATE.NEW",
        json!({"name":"NEW","subjects":["new.>"],"max_msgs":2,"discard":"new"}),
    )
    .await;
    assert!(created["error"].is_null(), "{created}");
    for _ in 0..2 {
        let ack = publish_raw(&nc, "new.a", &[], "x").await;
        assert!(ack["seq"].as_u64().unwrap() > 0);
    }
    let refused = publish_raw(&nc, "new.a", &[], "x").await;
    assert_eq!(err_code(&refused), Some(10077), "{refused}");
    assert_eq!(refused["error"]["description"], "maximum messages exceeded");

    let aged = api(
        &nc,
        "$JS.API.STREAM.CREATE.AGED",
        json!({"name":"AGED","subjects":["aged.>"],"max_age": 300_000_000u64}),
    )
    .await;
    assert_eq!(aged["config"]["duplicate_window"], 300_000_000u64);
    publish_raw(&nc, "aged.a", &[], "x").await;
    let info = testkit::fetch_until_async(
        Duration::from_secs(5),
        async || api(&nc, "$JS.API.STREAM.INFO.AGED", Value::Null).await,
        |info| info["state"]["messages"] == 0,
    )
    .await
    .unwrap_or_else(|info| panic!("max_age never expired: {info}"));
    assert_eq!(info["state"]["first_seq"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_and_expected_headers() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_js(dir.path());
    let nc = connect(&s).await;
    let r = api(
        &nc,
        "$JS.API.STREAM.CREATE.E",
        json!({"name":"E","subjects":["e.>"],"allow_rollup_hdrs":true}),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    let a = publish_raw(&nc, "e.a", &[("Nats-Msg-Id", "m1")], "1").await;
    assert_eq!(a, json!({"stream":"E","seq":1}));
    let dup = nc
        .request_with_headers(
            "e.a",
            {
                let mut h = HeaderMap::new();
                h.insert("Nats-Msg-Id", "m1");
                h
            },
            "1".into(),
        )
        .await
        .unwrap();
    assert_eq!(
        &dup.payload[..],
        br#"{"stream":"E","seq":1,"duplicate": true}"#
    );
    // Header names are case-sensitive: this one is not a Msg-Id.
    let other = publish_raw(&nc, "e.a", &[("nats-msg-id", "m1")], "1").await;
    assert_eq!(other["seq"], 2);
    let wrong = publish_raw(&nc, "e.b", &[("Nats-Expected-Stream", "X")], "1").await;
    assert_eq!(err_code(&wrong), Some(10060));
    let wrong = publish_raw(&nc, "e.b", &[("Nats-Expected-Last-Sequence", "1")], "1").await;
    assert_eq!(err_code(&wrong), Some(10071));
    assert_eq!(wrong["error"]["description"], "wrong last sequence: 2");
    let ok = publish_raw(&nc, "e.b", &[("Nats-Expected-Last-Sequence", "2")], "1").await;
    assert_eq!(ok["seq"], 3);
    let ok = publish_raw(
        &nc,
        "e.c",
        &[("Nats-Expected-Last-Subject-Sequence", "0")],
        "1",
    )
    .await;
    assert_eq!(ok["seq"], 4);
    let wrong = publish_raw(
        &nc,
        "e.c",
        &[("Nats-Expected-Last-Subject-Sequence", "0")],
        "1",
    )
    .await;
    assert_eq!(wrong["error"]["description"], "wrong last sequence: 4");
    let wrong = publish_raw(&nc, "e.c", &[("Nats-Expected-Last-Msg-Id", "zz")], "1").await;
    assert_eq!(err_code(&wrong), Some(10070));
    assert_eq!(wrong["error"]["description"], "wrong last msg ID: m1");
    let bad = publish_raw(&nc, "e.c", &[("Nats-Rollup", "xyz")], "1").await;
    assert_eq!(bad["error"]["description"], "rollup value invalid: \"xyz\"");
    let rolled = publish_raw(&nc, "e.a", &[("Nats-Rollup", "sub")], "r").await;
    assert_eq!(rolled["seq"], 5);
    let info = api(&nc, "$JS.API.STREAM.INFO.E", json!({"subjects_filter":">"})).await;
    assert_eq!(info["state"]["subjects"]["e.a"], 1, "{info}");
    assert_eq!(info["state"]["messages"], 3);
}

const TENANTS: &str = r#"
host: 127.0.0.1
port: @PORT@
jetstream { store_dir: "@DIR@", max_memory_store: 64MB, max_file_store: 256MB }
accounts {
  A { jetstream { max_mem: 1MB, max_file: 4KB, max_streams: 2, max_consumers: 10 }
      users = [ { user: a, password: pw } ] }
  B { jetstream: enabled
      users = [ { user: b, password: pw } ] }
  C { users = [ { user: c, password: pw } ] }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_conf(natsd(), TENANTS, dir.path());
    let a = connect_user(&s, "a").await;
    let b = connect_user(&s, "b").await;
    let c = connect_user(&s, "c").await;
    let cfg = json!({"name":"S","subjects":["s.>"]});
    let ra = api(&a, "$JS.API.STREAM.CREATE.S", cfg.clone()).await;
    let rb = api(&b, "$JS.API.STREAM.CREATE.S", cfg.clone()).await;
    assert!(ra["error"].is_null() && rb["error"].is_null(), "{ra} {rb}");
    publish_raw(&b, "s.x", &[], "from b").await;
    let ia = api(&a, "$JS.API.STREAM.INFO.S", Value::Null).await;
    let ib = api(&b, "$JS.API.STREAM.INFO.S", Value::Null).await;
    assert_eq!(
        (
            ia["state"]["messages"].as_u64(),
            ib["state"]["messages"].as_u64()
        ),
        (Some(0), Some(1))
    );
    let rc = api(&c, "$JS.API.STREAM.CREATE.S", cfg.clone()).await;
    assert_eq!(err_code(&rc), Some(10039));
    let info = api(&c, "$JS.API.INFO", Value::Null).await;
    assert_eq!(
        info["error"]["description"],
        "JetStream not enabled for account"
    );

    // A: 4KB of file storage. Three 1000-byte messages fit (3 x 1032), the fourth does not.
    let big = "x".repeat(1000);
    for _ in 0..3 {
        let ack = publish_raw(&a, "s.t", &[], &big).await;
        assert!(ack["error"].is_null(), "{ack}");
    }
    let over = publish_raw(&a, "s.t", &[], &big).await;
    assert_eq!(err_code(&over), Some(10002), "{over}");
    let reserve = api(
        &a,
        "$JS.API.STREAM.CREATE.M",
        json!({"name":"M","subjects":["m.>"],"storage":"memory","max_bytes": 2_000_000}),
    )
    .await;
    assert_eq!(err_code(&reserve), Some(10028));
    assert_eq!(
        reserve["error"]["description"],
        "insufficient memory resources available"
    );
    let file_reserve = api(
        &a,
        "$JS.API.STREAM.CREATE.F",
        json!({"name":"F","subjects":["f.>"],"max_bytes": 1_000_000}),
    )
    .await;
    assert_eq!(err_code(&file_reserve), Some(10047));
    let second = api(&a, "$JS.API.STREAM.CREATE.T", json!({"name":"T"})).await;
    assert!(second["error"].is_null(), "{second}");
    let third = api(&a, "$JS.API.STREAM.CREATE.U", json!({"name":"U"})).await;
    assert_eq!(err_code(&third), Some(10027));
    let overlap = api(
        &b,
        "$JS.API.STREAM.CREATE.O",
        json!({"name":"O","subjects":["s.*"]}),
    )
    .await;
    assert_eq!(err_code(&overlap), Some(10065));
    let names = api(&b, "$JS.API.STREAM.NAMES", Value::Null).await;
    assert_eq!(names["streams"], json!(["S"]));
}

/// kill -9 during a publish loop; after a restart every acked message is there and the
/// stream continues. 20 short rounds on one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    for round in 0..20u32 {
        let mut s = start_js(dir.path());
        let nc = connect(&s).await;
        let js = jetstream::new(nc.clone());
        let mut stream = if round == 0 {
            js.create_stream(stream::Config {
                name: "DUR".into(),
                subjects: vec!["dur.>".into()],
                ..Default::default()
            })
            .await
            .unwrap()
        } else {
            js.get_stream("DUR").await.unwrap()
        };
        for (seq, payload) in &acked {
            let m = stream
                .get_raw_message(*seq)
                .await
                .unwrap_or_else(|e| panic!("round {round}: acked seq {seq} lost: {e}"));
            assert_eq!(&m.payload[..], payload.as_bytes());
        }
        let last = stream.info().await.unwrap().state.last_sequence;
        assert!(last >= acked.last().map_or(0, |a| a.0));
        // Publish with 32 in flight; kill once enough acks came back.
        let target = 50 + (round as usize * 7) % 60;
        let mut got = 0;
        let mut inflight = std::collections::VecDeque::new();
        let mut i = 0u64;
        while got < target {
            let payload = format!("r{round}-{i}");
            i += 1;
            inflight.push_back((
                payload.clone(),
                js.publish("dur.x", payload.into()).await.unwrap(),
            ));
            if inflight.len() >= 32 {
                let (p, fut) = inflight.pop_front().unwrap();
                let ack = fut.await.unwrap();
                assert!(ack.sequence > last, "sequences continue");
                acked.push((ack.sequence, p));
                got += 1;
            }
        }
        s.kill();
        // Acks not yet seen promise nothing; only the acked set is checked.
        drop(inflight);
    }
}

/// A create's metadata reaches the disk just after the reply (docs/differences.md), but it
/// is in the operating system before it: streams created, and one updated, right before a
/// kill -9 all come back with the config they were acknowledged with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_and_updates_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_js(dir.path());
    let nc = connect(&s).await;
    for i in 0..20 {
        let r = api(
            &nc,
            &format!("$JS.API.STREAM.CREATE.K{i}"),
            json!({"name": format!("K{i}"), "subjects": [format!("k.{i}")]}),
        )
        .await;
        assert!(r["error"].is_null(), "{r}");
    }
    let r = api(
        &nc,
        "$JS.API.STREAM.UPDATE.K0",
        json!({"name":"K0","subjects":["k.0"],"max_msgs": 7}),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    s.kill();
    let s = start_js(dir.path());
    let nc = connect(&s).await;
    let names = api(&nc, "$JS.API.STREAM.NAMES", Value::Null).await;
    assert_eq!(names["total"], 20, "{names}");
    let info = api(&nc, "$JS.API.STREAM.INFO.K0", Value::Null).await;
    assert_eq!(info["config"]["max_msgs"], 7);
    let info = api(&nc, "$JS.API.STREAM.INFO.K19", Value::Null).await;
    assert_eq!(info["config"]["subjects"], json!(["k.19"]));
}

/// A crash between the renames of `meta.json` and `meta.sum` (an update): the new config
/// is read back with the sum still waiting in `meta.sum.tmp`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_metadata_renames_keeps_the_new_config() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = start_js(dir.path());
        let nc = connect(&s).await;
        let r = api(
            &nc,
            "$JS.API.STREAM.CREATE.M",
            json!({"name":"M","subjects":["m"]}),
        )
        .await;
        assert!(r["error"].is_null(), "{r}");
    }
    let sdir = dir.path().join("jetstream/$G/streams/M");
    let mut meta: Value =
        serde_json::from_slice(&std::fs::read(sdir.join("meta.json")).unwrap()).unwrap();
    meta["config"]["max_msgs"] = json!(3);
    let body = serde_json::to_vec_pretty(&meta).unwrap();
    let sum = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&body))
    };
    std::fs::write(sdir.join("meta.json"), &body).unwrap();
    std::fs::write(sdir.join("meta.sum.tmp"), sum).unwrap();
    let s = start_js(dir.path());
    let nc = connect(&s).await;
    let info = api(&nc, "$JS.API.STREAM.INFO.M", Value::Null).await;
    assert_eq!(info["config"]["max_msgs"], 3, "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_recover_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = start_js(dir.path());
        let nc = connect(&s).await;
        let r = api(
            &nc,
            "$JS.API.STREAM.CREATE.R",
            json!({"name":"R","subjects":["r.>"],"max_msgs": 10}),
        )
        .await;
        assert!(r["error"].is_null());
        for _ in 0..3 {
            publish_raw(&nc, "r.a", &[("Nats-Msg-Id", "same")], "x").await;
        }
    }
    let s = start_js(dir.path());
    let nc = connect(&s).await;
    let info = api(&nc, "$JS.API.STREAM.INFO.R", Value::Null).await;
    assert_eq!(info["config"]["max_msgs"], 10);
    assert_eq!(info["state"]["messages"], 1);
    // The duplicate window survives the restart.
    let dup = publish_raw(&nc, "r.a", &[("Nats-Msg-Id", "same")], "x").await;
    assert_eq!(dup["duplicate"], true);
    let next = publish_raw(&nc, "r.a", &[], "y").await;
    assert_eq!(next["seq"], 2);
}

/// A JetStream configuration both servers take (`start_conf`).
const JS_CONF: &str = "host: 127.0.0.1\nport: @PORT@\njetstream { store_dir: \"@DIR@\" }\n";

/// `stream`'s state, polled until `ready` holds; fails after `within`.
async fn stream_state_when(
    nc: &async_nats::Client,
    stream: &str,
    within: Duration,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let subject = format!("$JS.API.STREAM.INFO.{stream}");
    let info = testkit::fetch_until_async(
        within,
        async || api(nc, &subject, Value::Null).await,
        |info| ready(&info["state"]),
    )
    .await
    .unwrap_or_else(|info| panic!("{stream} never got ready: {info}"));
    info["state"].clone()
}

/// Per-message TTL (`Nats-TTL`): refused unless the stream allows it, validated as nats-server
/// does, and expired messages disappear (polled, not slept for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_message_ttl_matches_nats_server() {
    for bin in natsd_and_reference() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let plain = json!({"name": "NT", "subjects": ["nt.>"]});
        assert!(api(&nc, "$JS.API.STREAM.CREATE.NT", plain).await["error"].is_null());
        let refused = publish_raw(&nc, "nt.a", &[("Nats-TTL", "1s")], "x").await;
        assert_eq!(err_code(&refused), Some(10166), "{bin}: {refused}");
        let cfg = json!({"name": "T", "subjects": ["t.>"], "allow_msg_ttl": true});
        assert!(api(&nc, "$JS.API.STREAM.CREATE.T", cfg).await["error"].is_null());
        let mut seqs = Vec::new();
        for ttl in ["1s", "2", "0.5s", "abc", "never", "-1", "0"] {
            let ack = publish_raw(&nc, "t.a", &[("Nats-TTL", ttl)], "x").await;
            seqs.push((ttl, ack["seq"].as_u64(), err_code(&ack)));
        }
        assert_eq!(
            seqs,
            vec![
                ("1s", Some(1), None),
                ("2", Some(2), None),
                ("0.5s", Some(0), Some(10165)),
                ("abc", Some(0), Some(10165)),
                ("never", Some(3), None),
                ("-1", Some(0), Some(10165)),
                ("0", Some(0), Some(10165)),
            ],
            "{bin}"
        );
        let state =
            stream_state_when(&nc, "T", Duration::from_secs(10), |st| st["messages"] == 1).await;
        assert_eq!(state["first_seq"], 3, "{bin}: {state}");
        let off = json!({"name": "T", "subjects": ["t.>"], "allow_msg_ttl": false});
        let refused = api(&nc, "$JS.API.STREAM.UPDATE.T", off).await;
        assert_eq!(err_code(&refused), Some(10052), "{bin}: {refused}");
    }
}

/// `no_ack`: messages are stored and no PubAck is sent, on both servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ack_streams_store_silently() {
    for bin in natsd_and_reference() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let cfg = json!({"name": "NA", "subjects": ["na.>"], "no_ack": true});
        let created = api(&nc, "$JS.API.STREAM.CREATE.NA", cfg).await;
        assert_eq!(created["config"]["no_ack"], true, "{bin}: {created}");
        let mut replies = nc.subscribe("na-acks").await.unwrap();
        nc.publish_with_reply("na.x", "na-acks", "1".into())
            .await
            .unwrap();
        // nats-server stores behind its API: poll until the message is in.
        stream_state_when(&nc, "NA", Duration::from_secs(5), |st| st["messages"] == 1).await;
        let ack = tokio::time::timeout(Duration::from_millis(300), replies.next()).await;
        assert!(ack.is_err(), "{bin}: a no_ack stream sent a PubAck");
        let plain = json!({"name": "P", "subjects": ["p.>"]});
        let created = api(&nc, "$JS.API.STREAM.CREATE.P", plain).await;
        assert!(
            created["config"].get("no_ack").is_none(),
            "{bin}: {created}"
        );
    }
}

/// A TTL outlives a restart: the expiry is re-learnt from the stored headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_message_ttl_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_js(dir.path());
    let nc = connect(&s).await;
    let cfg = json!({"name": "T", "subjects": ["t.>"], "allow_msg_ttl": true});
    assert!(api(&nc, "$JS.API.STREAM.CREATE.T", cfg).await["error"].is_null());
    publish_raw(&nc, "t.a", &[("Nats-TTL", "2s")], "short").await;
    publish_raw(&nc, "t.b", &[], "kept").await;
    s.kill();
    let s = start_js(dir.path());
    let nc = connect(&s).await;
    let state =
        stream_state_when(&nc, "T", Duration::from_secs(10), |st| st["messages"] == 1).await;
    assert_eq!(state["first_seq"], 2, "{state}");
}

/// `first_seq` starts a new stream's sequences there, on both servers, and survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_seq_starts_the_sequence() {
    for bin in natsd_and_reference() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let cfg = json!({"name": "FS", "subjects": ["fs.>"], "first_seq": 100});
        let created = api(&nc, "$JS.API.STREAM.CREATE.FS", cfg).await;
        assert_eq!(created["state"]["first_seq"], 100, "{bin}: {created}");
        assert_eq!(created["state"]["last_seq"], 99, "{bin}: {created}");
        assert_eq!(created["config"]["first_seq"], 100, "{bin}: {created}");
        let ack = publish_raw(&nc, "fs.a", &[], "x").await;
        assert_eq!(ack["seq"], 100, "{bin}: {ack}");
        if bin == natsd() {
            s.kill();
            let s = start_conf(&bin, JS_CONF, dir.path());
            let nc = connect(&s).await;
            let ack = publish_raw(&nc, "fs.b", &[], "y").await;
            assert_eq!(ack["seq"], 101, "{ack}");
            let info = api(&nc, "$JS.API.STREAM.INFO.FS", Value::Null).await;
            assert_eq!(info["state"]["first_seq"], 100, "{info}");
        }
    }
}

/// Empty or null stream feature settings (what clients send when a feature is unused) are
/// accepted and read back as unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_stream_feature_settings_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_js(dir.path());
    let nc = connect(&s).await;
    let empty = json!({"name": "E", "subjects": ["e.>"], "sources": [], "mirror": null,
                       "republish": null, "subject_transform": null, "allow_batched": false});
    let created = api(&nc, "$JS.API.STREAM.CREATE.E", empty).await;
    assert!(created["error"].is_null(), "{created}");
    for field in [
        "sources",
        "mirror",
        "republish",
        "subject_transform",
        "allow_batched",
    ] {
        assert!(created["config"].get(field).is_none(), "{field}: {created}");
    }
}

/// Create, update, add a consumer, delete: the same advisories, in the same order, as
/// nats-server (the API audit advisory aside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_advisories_match_nats_server() {
    for bin in natsd_and_reference() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let mut advisories = nc.subscribe("$JS.EVENT.ADVISORY.>").await.unwrap();
        nc.flush().await.unwrap();
        let js = jetstream::new(nc.clone());
        let mut cfg = stream::Config {
            name: "ADV".into(),
            subjects: vec!["adv.>".into()],
            ..Default::default()
        };
        let stream = js.create_stream(cfg.clone()).await.unwrap();
        // Creating it again unchanged is not a new stream.
        js.create_stream(cfg.clone()).await.unwrap();
        cfg.max_messages = 10;
        js.update_stream(cfg).await.unwrap();
        stream
            .create_consumer(jetstream::consumer::pull::Config {
                durable_name: Some("c1".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        js.delete_stream("ADV").await.unwrap();
        let mut seen = Vec::new();
        let ours = bin == natsd();
        while seen.last().map(|(s, _): &(String, Value)| s.as_str())
            != Some("$JS.EVENT.ADVISORY.STREAM.DELETED.ADV")
        {
            let Ok(m) = tokio::time::timeout(Duration::from_secs(5), advisories.next()).await
            else {
                // nats-server now and then never sends its last advisory (seen in CI under
                // load); what it did send is still compared below.
                assert!(!ours, "natsd: advisories stopped at {seen:?}");
                break;
            };
            let m = m.unwrap();
            if m.subject.as_str() == "$JS.EVENT.ADVISORY.API" {
                continue;
            }
            let body: Value = serde_json::from_slice(&m.payload).unwrap();
            assert!(
                body["id"].as_str().is_some_and(|id| !id.is_empty()),
                "{body}"
            );
            assert!(
                body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{body}"
            );
            let kept = json!({
                "type": body["type"], "stream": body["stream"],
                "consumer": body["consumer"], "action": body["action"],
            });
            seen.push((m.subject.to_string(), kept));
        }
        let stream_action = |event: &str, action: &str| {
            (
                format!("$JS.EVENT.ADVISORY.STREAM.{event}.ADV"),
                json!({"type": "io.nats.jetstream.advisory.v1.stream_action",
                       "stream": "ADV", "consumer": null, "action": action}),
            )
        };
        let consumer_action = |event: &str, action: &str| {
            (
                format!("$JS.EVENT.ADVISORY.CONSUMER.{event}.ADV.c1"),
                json!({"type": "io.nats.jetstream.advisory.v1.consumer_action",
                       "stream": "ADV", "consumer": "c1", "action": action}),
            )
        };
        let expected = vec![
            stream_action("CREATED", "create"),
            stream_action("UPDATED", "modify"),
            consumer_action("CREATED", "create"),
            consumer_action("DELETED", "delete"),
            stream_action("DELETED", "delete"),
        ];
        let expected = if ours {
            expected
        } else {
            expected[..seen.len().clamp(4, 5)].to_vec()
        };
        assert_eq!(seen, expected, "{bin}");
    }
}

/// The same requests against natsd and nats-server: reply types, error codes and the
/// stream config defaults must agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_against_nats_server() {
    // Missing, the reference fails the test; under NATSD_SKIP_REFERENCE=1 it is skipped.
    let Some(real) = reference_server() else {
        return;
    };
    let conf = r#"
host: 127.0.0.1
port: @PORT@
server_name: js1
jetstream { store_dir: "@DIR@" }
"#;
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let ours = start_conf(natsd(), conf, d1.path());
    let theirs = start_conf(&real, conf, d2.path());
    let a = connect(&ours).await;
    let b = connect(&theirs).await;
    let requests: Vec<(&str, Value)> = vec![
        ("$JS.API.STREAM.CREATE.S1", json!({"name":"S1"})),
        ("$JS.API.STREAM.CREATE.S1", json!({"name":"S1"})),
        (
            "$JS.API.STREAM.CREATE.S1",
            json!({"name":"S1","max_msgs":5}),
        ),
        ("$JS.API.STREAM.CREATE.S2", json!({"name":"S3"})),
        ("$JS.API.STREAM.CREATE.S2", Value::Null),
        (
            "$JS.API.STREAM.CREATE.S2",
            json!({"name":"S2","subjects":["S1"]}),
        ),
        (
            "$JS.API.STREAM.CREATE.S4",
            json!({"name":"S4","max_age":1000}),
        ),
        (
            "$JS.API.STREAM.CREATE.S5",
            json!({"name":"S5","num_replicas":3}),
        ),
        (
            "$JS.API.STREAM.CREATE.S6",
            json!({"name":"S6","subjects":["m.*"],"max_age":30_000_000_000u64,"deny_purge":true,"deny_delete":true}),
        ),
        (
            "$JS.API.STREAM.UPDATE.S1",
            json!({"name":"S1","max_msgs":7}),
        ),
        (
            "$JS.API.STREAM.UPDATE.S1",
            json!({"name":"S1","storage":"memory"}),
        ),
        ("$JS.API.STREAM.UPDATE.NOPE", json!({"name":"NOPE"})),
        ("$JS.API.STREAM.INFO.S1", Value::Null),
        ("$JS.API.STREAM.INFO.NOPE", Value::Null),
        ("$JS.API.STREAM.NAMES", Value::Null),
        ("$JS.API.STREAM.LIST", Value::Null),
        ("$JS.API.STREAM.MSG.GET.S1", json!({"seq":1})),
        ("$JS.API.STREAM.MSG.GET.S1", Value::Null),
        ("$JS.API.STREAM.MSG.DELETE.S1", json!({"seq":9})),
        ("$JS.API.STREAM.MSG.DELETE.S6", json!({"seq":1})),
        ("$JS.API.STREAM.PURGE.S6", Value::Null),
        ("$JS.API.STREAM.PURGE.S1", Value::Null),
        ("$JS.API.STREAM.DELETE.S1", Value::Null),
        ("$JS.API.STREAM.DELETE.S1", Value::Null),
        ("$JS.API.INFO", Value::Null),
    ];
    for (subject, body) in requests {
        let x = api(&a, subject, body.clone()).await;
        let y = api(&b, subject, body.clone()).await;
        let what = format!("{subject} {body}\n natsd: {x}\n nats-server: {y}");
        assert_eq!(x["type"], y["type"], "{what}");
        assert_eq!(x["error"]["err_code"], y["error"]["err_code"], "{what}");
        assert_eq!(x["error"]["code"], y["error"]["code"], "{what}");
        for key in [
            "success",
            "purged",
            "did_create",
            "total",
            "limit",
            "streams",
        ] {
            if key == "streams" && x["streams"].is_array() && x["streams"][0].is_object() {
                continue;
            }
            assert_eq!(x[key], y[key], "{key}: {what}");
        }
        if y["config"].is_object() {
            let mut cx = x["config"].clone();
            let mut cy = y["config"].clone();
            for c in [&mut cx, &mut cy] {
                c.as_object_mut().unwrap().remove("metadata");
            }
            assert_eq!(cx, cy, "{what}");
            for key in ["messages", "bytes", "first_seq", "last_seq"] {
                assert_eq!(x["state"][key], y["state"][key], "{key}: {what}");
            }
        }
    }
}

/// Throughput against both servers: `cargo test --release --test jetstream -- --ignored --nocapture`.
/// A burst of acked publishes in one write is stored with one file write and acked after it:
/// every ack arrives, in publish order, and a consumer reading meanwhile sees all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_in_one_write_is_stored_and_acked_in_order() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let s = start_js(dir.path());
    let nc = connect(&s).await;
    let js = jetstream::new(nc.clone());
    let stream = js
        .create_stream(stream::Config {
            name: "BURST".into(),
            subjects: vec!["burst.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("reader".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();

    let n = 2_000;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    let (read, mut write) = tcp.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("INFO "), "{line}");
    let mut burst = String::from("CONNECT {\"verbose\":false}\r\nSUB acks.> 1\r\n");
    for i in 0..n {
        let body = format!("m{i}");
        burst.push_str(&format!(
            "PUB burst.x acks.{i} {}\r\n{body}\r\n",
            body.len()
        ));
    }
    write.write_all(burst.as_bytes()).await.unwrap();
    for i in 0..n {
        line.clear();
        read.read_line(&mut line).await.unwrap();
        let head: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            head[..3],
            ["MSG", &format!("acks.{i}"), "1"],
            "ack {i} out of order"
        );
        let len: usize = head[3].parse().unwrap();
        let mut body = vec![0u8; len + 2];
        read.read_exact(&mut body).await.unwrap();
        let ack: Value = serde_json::from_slice(&body[..len]).unwrap();
        assert_eq!(ack, json!({"stream": "BURST", "seq": i + 1}));
    }
    for i in 0..n {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("consumer stalled")
            .unwrap()
            .unwrap();
        assert_eq!(m.payload, format!("m{i}").as_bytes());
        m.ack().await.unwrap();
    }
}

const RELOAD_BEFORE: &str = r#"
host: 127.0.0.1
port: @PORT@
jetstream { store_dir: "@DIR@" }
accounts {
  A { jetstream { max_file: 4KB }, users = [ { user: a, password: pw } ] }
  B { jetstream: enabled, users = [ { user: b, password: pw } ] }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_streams_applies_limits_and_keeps_removed_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_conf(natsd(), RELOAD_BEFORE, dir.path());
    let a = connect_user(&s, "a").await;
    let b = connect_user(&s, "b").await;
    for nc in [&a, &b] {
        let r = api(
            nc,
            "$JS.API.STREAM.CREATE.S",
            json!({"name":"S","subjects":["s.>"]}),
        )
        .await;
        assert!(r["error"].is_null(), "{r}");
    }
    let big = "x".repeat(1000);
    for _ in 0..3 {
        publish_raw(&a, "s.t", &[], &big).await;
    }
    publish_raw(&b, "s.t", &[], "kept").await;
    assert_eq!(
        err_code(&publish_raw(&a, "s.t", &[], &big).await),
        Some(10002)
    );
    let conf = s.config_path().to_path_buf();
    let port = s.port;
    let after = format!(
        "host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: \"{}\" }}\naccounts {{\n  A {{ jetstream {{ max_file: 1MB }}, users = [ {{ user: a, password: pw }} ] }}\n}}\n",
        dir.path().display()
    );
    std::fs::write(&conf, after).unwrap();
    s.signal(Signal::SIGHUP);
    let applied = testkit::fetch_until_async(
        Duration::from_secs(10),
        async || api(&a, "$JS.API.INFO", Value::Null).await,
        |info| info["limits"]["max_storage"] == 1024 * 1024,
    )
    .await;
    if let Err(info) = applied {
        panic!("reload not applied: {info}");
    }
    let ack = publish_raw(&a, "s.t", &[], &big).await;
    assert_eq!(ack["seq"], 4, "{ack}");
    let info = api(&a, "$JS.API.STREAM.INFO.S", Value::Null).await;
    assert_eq!(info["state"]["messages"], 4);
    // B is gone from the config: its stream data stays on disk.
    let b_stream = dir.path().join("jetstream/B/streams/S/meta.json");
    assert!(b_stream.is_file(), "removed account's data must be kept");
}

const NATS_PY: &str = r#"
import asyncio, sys, nats
from nats.js.errors import BadRequestError
async def main():
    nc = await nats.connect(sys.argv[1])
    js = nc.jetstream()
    await js.add_stream(name="PY", subjects=["py.>"], max_msgs_per_subject=3)
    for i in range(10):
        ack = await js.publish("py.a", str(i).encode(), headers={"Nats-Msg-Id": str(i % 5)})
    assert ack.seq == 5 and ack.duplicate, ack
    info = await js.stream_info("PY")
    assert info.state.messages == 3, info.state
    last = await js.get_last_msg("PY", "py.a")
    assert last.data == b"4", last
    kv = await js.create_key_value(bucket="cfg", history=3)
    await kv.put("a.b", b"v1")
    rev = await kv.update("a.b", b"v2", last=1)
    assert (await kv.get("a.b")).value == b"v2" and rev == 2
    try:
        await kv.create("a.b", b"x")
        raise SystemExit("create over an existing key must fail")
    except nats.js.errors.KeyWrongLastSequenceError:
        pass
    await js.purge_stream("PY")
    assert (await js.stream_info("PY")).state.messages == 0
    await js.delete_stream("PY")
    print("nats-py ok")
    await nc.close()
asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_jetstream_api() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_js(dir.path());
    run_nats_py(NATS_PY, &s, dir.path());
}
