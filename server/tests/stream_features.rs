//! Stream-side JetStream features (subject transforms, republish, mirrors, sources), each
//! run against natsd and the reference nats-server with the same assertions, plus natsd's
//! own guarantee that a mirror or source resumes after `kill -9` without gaps or duplicates.

// A test binary has no public API, and tests may unwrap (HELPERS.md).
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

#[path = "support/js_server.rs"]
#[allow(
    dead_code,
    reason = "shared by several test binaries, each using a part"
)]
mod js_server;
use js_server::{
    api, connect, err_code, natsd, natsd_and_reference, publish_raw as publish, request_text,
    start_conf,
};

const JS_CONF: &str = "host: 127.0.0.1\nport: @PORT@\njetstream { store_dir: \"@DIR@\" }\n";

/// natsd, then the reference (missing only under `NATSD_SKIP_REFERENCE=1`).
fn servers() -> Vec<String> {
    natsd_and_reference()
}

/// Stream info once `ready` holds for it; fails after `within`.
async fn info_when(
    nc: &async_nats::Client,
    stream: &str,
    within: Duration,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let subject = format!("$JS.API.STREAM.INFO.{stream}");
    testkit::fetch_until_async(within, async || api(nc, &subject, Value::Null).await, ready)
        .await
        .unwrap_or_else(|info| panic!("{stream} never got ready: {info}"))
}

/// `(subject, payload, headers)` of message `seq`, decoded.
/// Creates the stream `cfg` names and returns the API's reply.
async fn create_stream(nc: &async_nats::Client, cfg: Value) -> Value {
    let name = cfg["name"].as_str().unwrap_or_default().to_string();
    api(nc, &format!("$JS.API.STREAM.CREATE.{name}"), cfg).await
}

async fn get_msg(nc: &async_nats::Client, stream: &str, seq: u64) -> Value {
    use base64::Engine;
    let r = api(
        nc,
        &format!("$JS.API.STREAM.MSG.GET.{stream}"),
        json!({ "seq": seq }),
    )
    .await;
    let m = &r["message"];
    if m.is_null() {
        return r;
    }
    let decode = |v: &Value| {
        v.as_str().map_or(String::new(), |s| {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
        })
    };
    json!({
        "subject": m["subject"],
        "data": decode(&m["data"]),
        "hdrs": decode(&m["hdrs"]),
        "time": m["time"],
    })
}

fn header<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    block
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A stream's subject transform rewrites what it stores; `republish` (headers only here)
/// sends each stored message on with where it was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_transform_and_republish_match_nats_server() {
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let cfg = json!({"name": "TR", "subjects": ["test", "foo"],
                         "subject_transform": {"src": ">", "dest": "transformed.>"}});
        let created = api(&nc, "$JS.API.STREAM.CREATE.TR", cfg).await;
        assert_eq!(
            created["config"]["subject_transform"],
            json!({"src": ">", "dest": "transformed.>"}),
            "{bin}: {created}"
        );
        let ack = publish(&nc, "test", &[], "0").await;
        assert_eq!(ack["seq"], 1, "{bin}: {ack}");
        let m = get_msg(&nc, "TR", 1).await;
        assert_eq!(m["subject"], "transformed.test", "{bin}: {m}");

        let cfg = json!({"name": "RP", "subjects": ["rp.>"],
                         "republish": {"src": "rp.*", "dest": "out.$1", "headers_only": true}});
        let created = api(&nc, "$JS.API.STREAM.CREATE.RP", cfg).await;
        assert!(created["error"].is_null(), "{bin}: {created}");
        let mut out = nc.subscribe("out.>").await.unwrap();
        nc.flush().await.unwrap();
        publish(&nc, "rp.a", &[("X-Foo", "bar")], "hello").await;
        publish(&nc, "rp.b", &[], "x").await;
        publish(&nc, "rp.a", &[], "world").await;
        let mut seen = Vec::new();
        for _ in 0..3 {
            let m = tokio::time::timeout(Duration::from_secs(5), out.next())
                .await
                .unwrap()
                .unwrap();
            let h = m.headers.clone().unwrap_or_default();
            // Looked up by text: async-nats keys its well-known names apart from &str ones.
            let get = |k: &str| {
                h.iter()
                    .find(|(n, _)| n.to_string() == k)
                    .and_then(|(_, v)| v.first())
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            };
            seen.push(json!({
                "subject": m.subject.as_str(), "len": m.payload.len(),
                "foo": get("X-Foo"), "stream": get("Nats-Stream"), "subj": get("Nats-Subject"),
                "seq": get("Nats-Sequence"), "last": get("Nats-Last-Sequence"),
                "size": get("Nats-Msg-Size"), "has_time": !get("Nats-Time-Stamp").is_empty(),
            }));
        }
        assert_eq!(
            seen,
            vec![
                json!({"subject": "out.a", "len": 0, "foo": "bar", "stream": "RP", "subj": "rp.a",
                       "seq": "1", "last": "0", "size": "5", "has_time": true}),
                json!({"subject": "out.b", "len": 0, "foo": "", "stream": "RP", "subj": "rp.b",
                       "seq": "2", "last": "0", "size": "1", "has_time": true}),
                json!({"subject": "out.a", "len": 0, "foo": "", "stream": "RP", "subj": "rp.a",
                       "seq": "3", "last": "1", "size": "5", "has_time": true}),
            ],
            "{bin}"
        );
    }
}

/// Invalid and normalised mirror, source, transform and republish configs: the same error
/// codes and descriptions, and the same config echoed back, on both servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_feature_configs_match_nats_server() {
    let cases: Vec<(&str, Value)> = vec![
        ("M", json!({"mirror": {"name": "O"}, "subjects": ["m"]})),
        (
            "M",
            json!({"mirror": {"name": "O"}, "sources": [{"name": "O"}]}),
        ),
        ("M", json!({"mirror": {"name": "O"}, "first_seq": 5})),
        (
            "M",
            json!({"mirror": {"name": "O", "filter_subject": "o.a",
                     "subject_transforms": [{"src": "o.b", "dest": "x"}]}}),
        ),
        (
            "M",
            json!({"mirror": {"name": "O",
                     "subject_transforms": [{"src": "o.>", "dest": "x.>"}, {"src": "o.a", "dest": "y"}]}}),
        ),
        (
            "M",
            json!({"mirror": {"name": "O", "subject_transforms": [{"src": "o.*", "dest": "x.$2"}]}}),
        ),
        ("M", json!({"mirror": {"name": "a.b"}})),
        ("M", json!({"mirror": {"name": "O"}, "max_msg_size": 10})),
        ("M", json!({"mirror": {"name": "O"}})),
        (
            "M",
            json!({"mirror": {"name": "O", "opt_start_time": "2024-02-19T13:50:50.5+00:00"}}),
        ),
        ("S", json!({"sources": [{"name": "O"}, {"name": "O"}]})),
        ("S", json!({"sources": [{"name": "a*"}]})),
        (
            "S",
            json!({"sources": [{"name": "O", "filter_subject": "o.a",
                      "subject_transforms": [{"src": "o.b", "dest": "x"}]}]}),
        ),
        (
            "S",
            json!({"sources": [{"name": "O",
                      "subject_transforms": [{"src": ">", "dest": "a.>"}, {"src": ">", "dest": "b.>"}]}]}),
        ),
        (
            "S",
            json!({"sources": [{"name": "O", "subject_transforms": [{"src": "o..x", "dest": "y"}]}]}),
        ),
        (
            "S",
            json!({"sources": [{"name": "O", "subject_transforms": [{"src": "o.*", "dest": "{{nope(1)}}"}]}]}),
        ),
        (
            "S",
            json!({"sources": [{"name": "O", "external": {"api": "$JS.API", "deliver": "d"}}]}),
        ),
        (
            "S",
            json!({"sources": [{"name": "O", "external": {"api": "JS.X.API", "deliver": "d.*"}}]}),
        ),
        (
            "S",
            json!({"sources": [{"name": "O", "external": {"api": "JS.*.API", "deliver": "d"}}]}),
        ),
        ("S", json!({"sources": [{"name": "O"}], "max_msg_size": 10})),
        (
            "S",
            json!({"sources": [{"name": "O", "filter_subject": "o.a"}, {"name": "O", "filter_subject": "o.b"}]}),
        ),
        (
            "T",
            json!({"subjects": ["t.*"], "subject_transform": {"src": "t..", "dest": "x"}}),
        ),
        (
            "T",
            json!({"subjects": ["t.*"], "subject_transform": {"src": "t.*", "dest": "x.$2"}}),
        ),
        (
            "T",
            json!({"subjects": ["t.*"], "subject_transform": {"src": "t.*", "dest": "x. y"}}),
        ),
        (
            "R",
            json!({"subjects": ["r.>"], "republish": {"src": ">", "dest": "r.x.>"}}),
        ),
        (
            "R",
            json!({"subjects": ["r.>"], "republish": {"dest": "copy.>"}}),
        ),
        (
            "R",
            json!({"subjects": ["r.>"], "republish": {"src": "r.*", "dest": "copy.>"}}),
        ),
        (
            "R",
            json!({"subjects": ["r"], "subject_transform": {"src": "r", "dest": "q"},
                     "republish": {"src": ">", "dest": ">"}}),
        ),
        ("P", json!({"subjects": ["p"], "persist_mode": "async"})),
        (
            "P",
            json!({"subjects": ["p"], "persist_mode": "async", "storage": "memory"}),
        ),
        ("P", json!({"subjects": ["p"], "persist_mode": "default"})),
    ];
    let mut results: Vec<Vec<Value>> = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let origin =
            json!({"name": "O", "subjects": ["o.>"], "allow_direct": true, "max_msg_size": 100});
        assert!(api(&nc, "$JS.API.STREAM.CREATE.O", origin).await["error"].is_null());
        let mut got = Vec::new();
        for (name, cfg) in &cases {
            let mut cfg = cfg.clone();
            cfg["name"] = json!(name);
            let r = api(&nc, &format!("$JS.API.STREAM.CREATE.{name}"), cfg.clone()).await;
            let c = &r["config"];
            got.push(json!({
                "request": cfg,
                "error": r["error"],
                "subjects": c["subjects"], "mirror": c["mirror"], "sources": c["sources"],
                "republish": c["republish"], "subject_transform": c["subject_transform"],
                "duplicate_window": c["duplicate_window"], "mirror_direct": c["mirror_direct"],
                "persist_mode": c["persist_mode"],
            }));
            if r["error"].is_null() {
                api(&nc, &format!("$JS.API.STREAM.DELETE.{name}"), Value::Null).await;
            }
        }
        // Sealing pins the limits; a purge or delete then reports the seal.
        let seal = json!({"name": "SEAL", "subjects": ["seal"], "max_age": 1_000_000_000u64});
        api(&nc, "$JS.API.STREAM.CREATE.SEAL", seal.clone()).await;
        let mut sealed = seal;
        sealed["sealed"] = json!(true);
        let r = api(&nc, "$JS.API.STREAM.UPDATE.SEAL", sealed).await;
        let c = &r["config"];
        got.push(json!([
            c["max_age"],
            c["discard"],
            c["deny_delete"],
            c["deny_purge"]
        ]));
        got.push(api(&nc, "$JS.API.STREAM.PURGE.SEAL", Value::Null).await["error"].clone());
        got.push(
            api(&nc, "$JS.API.STREAM.MSG.DELETE.SEAL", json!({"seq": 1})).await["error"].clone(),
        );
        // A cycle through sources is refused when the second stream closes it.
        let a = json!({"name": "CA", "sources": [{"name": "CB"}]});
        got.push(api(&nc, "$JS.API.STREAM.CREATE.CA", a).await["error"].clone());
        let b = json!({"name": "CB", "sources": [{"name": "CA"}]});
        got.push(api(&nc, "$JS.API.STREAM.CREATE.CB", b).await["error"].clone());
        results.push(got);
    }
    testkit::with_reference(&results, |ours_all, theirs_all| {
        for (ours, theirs) in ours_all.iter().zip(theirs_all) {
            assert_eq!(ours, theirs, "natsd vs nats-server");
        }
    });
}

/// A mirror copies the origin sequence for sequence (deleted ones skipped), reports itself
/// in stream info, follows new messages, starts where its options say, and can be promoted
/// to a plain stream by removing the mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_match_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let origin = json!({"name": "O", "subjects": ["o.>"], "allow_direct": true});
        assert!(api(&nc, "$JS.API.STREAM.CREATE.O", origin).await["error"].is_null());
        for i in 1..=5 {
            publish(
                &nc,
                &format!("o.{i}"),
                &[("X-N", &i.to_string())],
                &format!("m{i}"),
            )
            .await;
        }
        let del = api(&nc, "$JS.API.STREAM.MSG.DELETE.O", json!({"seq": 3})).await;
        assert_eq!(del["success"], true, "{bin}: {del}");
        let created = api(
            &nc,
            "$JS.API.STREAM.CREATE.M",
            json!({"name": "M", "mirror": {"name": "O"}}),
        )
        .await;
        assert_eq!(created["config"]["mirror_direct"], true, "{bin}: {created}");
        let info = info_when(&nc, "M", Duration::from_secs(10), |i| {
            i["state"]["last_seq"] == 5
        })
        .await;
        let st = &info["state"];
        assert_eq!(
            (&st["messages"], &st["first_seq"], &st["num_deleted"]),
            (&json!(4), &json!(1), &json!(1)),
            "{bin}: {info}"
        );
        assert_eq!(info["mirror"]["name"], "O", "{bin}: {info}");
        assert_eq!(info["mirror"]["lag"], 0, "{bin}: {info}");
        assert!(info["mirror"].get("seq").is_none(), "{bin}: {info}");
        assert!(
            info["mirror"]["active"].as_i64().unwrap() >= 0,
            "{bin}: {info}"
        );
        for seq in [1, 2, 4, 5] {
            assert_eq!(
                get_msg(&nc, "M", seq).await,
                get_msg(&nc, "O", seq).await,
                "{bin}: seq {seq}"
            );
        }
        assert_eq!(err_code(&get_msg(&nc, "M", 3).await), Some(10037), "{bin}");
        publish(&nc, "o.6", &[], "m6").await;
        info_when(&nc, "M", Duration::from_secs(10), |i| {
            i["state"]["last_seq"] == 6
        })
        .await;

        // A filtered mirror with a start sequence: only what matches, at its sequence.
        let m2 = json!({"name": "M2", "mirror": {"name": "O", "opt_start_seq": 2, "filter_subject": "o.4"}});
        assert!(api(&nc, "$JS.API.STREAM.CREATE.M2", m2).await["error"].is_null());
        let info2 = info_when(&nc, "M2", Duration::from_secs(10), |i| {
            i["state"]["messages"] == 1
        })
        .await;
        publish(&nc, "o.4", &[], "again").await;
        let info3 = info_when(&nc, "M2", Duration::from_secs(10), |i| {
            i["state"]["messages"] == 2
        })
        .await;

        // Promotion: the update without `mirror` keeps the messages.
        info_when(&nc, "M", Duration::from_secs(10), |i| {
            i["state"]["last_seq"] == 7
        })
        .await;
        let mut cfg = info["config"].clone();
        cfg.as_object_mut().unwrap().remove("mirror");
        let promoted = api(&nc, "$JS.API.STREAM.UPDATE.M", cfg).await;
        assert!(promoted["error"].is_null(), "{bin}: {promoted}");
        assert!(promoted["config"]["mirror"].is_null(), "{bin}: {promoted}");
        assert_eq!(promoted["state"]["messages"], 6, "{bin}: {promoted}");
        // Changing (rather than removing) a mirror is refused.
        let mut changed = info2["config"].clone();
        changed["mirror"]["filter_subject"] = json!("o.5");
        let refused = api(&nc, "$JS.API.STREAM.UPDATE.M2", changed).await;
        results.push(json!({
            "m2": [&info2["state"]["first_seq"], &info2["state"]["last_seq"],
                   &info3["state"]["first_seq"], &info3["state"]["last_seq"], &info3["state"]["num_deleted"]],
            "promoted_subjects": promoted["config"]["subjects"],
            "refused": refused["error"],
        }));
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// Sources copy filtered and transformed messages under their own sequences, marked with
/// `Nats-Stream-Source`, from a start sequence or time when given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_match_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        for (name, subj) in [("A", "a.>"), ("B", "b.>")] {
            let cfg = json!({"name": name, "subjects": [subj]});
            assert!(
                api(&nc, &format!("$JS.API.STREAM.CREATE.{name}"), cfg).await["error"].is_null()
            );
        }
        for subj in ["a.x", "a.y", "a.x", "b.1", "b.2", "b.3"] {
            publish(
                &nc,
                subj,
                &[("Nats-Expected-Stream", &subj[..1].to_uppercase())],
                subj,
            )
            .await;
        }
        let cfg = json!({"name": "S", "subjects": ["s.own"], "sources": [
            {"name": "A", "filter_subject": "a.x"},
            {"name": "B", "opt_start_seq": 2, "subject_transforms": [{"src": "b.*", "dest": "bb.$1"}]},
        ]});
        let created = api(&nc, "$JS.API.STREAM.CREATE.S", cfg).await;
        assert!(created["error"].is_null(), "{bin}: {created}");
        publish(&nc, "s.own", &[], "own").await;
        let info = info_when(&nc, "S", Duration::from_secs(10), |i| {
            i["state"]["messages"] == 5
        })
        .await;
        let mut copies = Vec::new();
        for seq in 1..=5 {
            let m = get_msg(&nc, "S", seq).await;
            let hdrs = m["hdrs"].as_str().unwrap_or_default();
            // The last field identifies the origin by its creation time: differs per run.
            let source = header(hdrs, "Nats-Stream-Source").map(|v| {
                let (rest, identity) = v.rsplit_once(' ').unwrap();
                assert_eq!(identity.len(), 8, "{bin}: {v}");
                rest.to_string()
            });
            copies.push(json!({
                "subject": m["subject"],
                "data": m["data"],
                "source": source,
                "expected": header(hdrs, "Nats-Expected-Stream"),
            }));
        }
        copies.sort_by_key(|c| c.to_string());
        let mut sources: Vec<Value> = info["sources"].as_array().unwrap().clone();
        for s in &mut sources {
            s.as_object_mut().unwrap().remove("active");
        }
        sources.sort_by_key(|s| s["name"].to_string());

        // A start time takes only what was stored from then on.
        let mid = api(&nc, "$JS.API.STREAM.MSG.GET.A", json!({"seq": 2})).await;
        let t = mid["message"]["time"].clone();
        let cfg = json!({"name": "ST", "sources": [{"name": "A", "opt_start_time": t}]});
        assert!(api(&nc, "$JS.API.STREAM.CREATE.ST", cfg).await["error"].is_null());
        let st = info_when(&nc, "ST", Duration::from_secs(10), |i| {
            i["state"]["messages"] == 2
        })
        .await;
        let by_time = st["config"]["sources"][0]["opt_start_time"] == t;
        results.push(json!({"copies": copies, "sources": sources, "by_time": by_time}));
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
    let copies = &results[0]["copies"];
    assert!(
        copies
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["source"] == "B 2 b.* bb.$1 b.2" && c["subject"] == "bb.2"),
        "{copies}"
    );
}

/// Reads every message of `stream` as `(seq, subject, payload, headers)` through an
/// ephemeral pull consumer.
async fn read_all(nc: &async_nats::Client, stream: &str) -> Vec<(u64, String, String, String)> {
    let js = async_nats::jetstream::new(nc.clone());
    let st = js.get_stream(stream).await.unwrap();
    let total = st.cached_info().state.messages as usize;
    let consumer = st
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let seq = m.info().unwrap().stream_sequence;
        let source = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Stream-Source"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        out.push((
            seq,
            m.subject.to_string(),
            String::from_utf8_lossy(&m.payload).into_owned(),
            source,
        ));
    }
    out
}

/// natsd killed with SIGKILL while a mirror and a source are copying: after the restart
/// both resume where their stores are, and end up with every origin message exactly once
/// (the mirror at the origin's sequences).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_and_source_resume_after_kill_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_conf(natsd(), JS_CONF, dir.path());
    let nc = connect(&s).await;
    let js = async_nats::jetstream::new(nc.clone());
    assert!(api(
        &nc,
        "$JS.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"]})
    )
    .await["error"]
        .is_null());
    publish_acked(&js, "o", 7, 0..20_000).await;
    for cfg in [
        json!({"name": "M", "mirror": {"name": "O"}}),
        json!({"name": "S", "sources": [{"name": "O"}]}),
    ] {
        let r = create_stream(&nc, cfg).await;
        assert!(r["error"].is_null(), "{r}");
    }
    // Kill while the copies are under way.
    info_when(&nc, "M", Duration::from_secs(10), |i| {
        i["state"]["messages"].as_u64().unwrap_or(0) > 0
    })
    .await;
    s.kill();
    drop(s);

    let s = start_conf(natsd(), JS_CONF, dir.path());
    let nc = connect(&s).await;
    let js = async_nats::jetstream::new(nc.clone());
    publish_acked(&js, "o", 7, 20_000..21_000).await;
    let origin = api(&nc, "$JS.API.STREAM.INFO.O", Value::Null).await;
    let last = origin["state"]["last_seq"].clone();
    let msgs = origin["state"]["messages"].clone();
    info_when(&nc, "M", Duration::from_secs(30), |i| {
        i["state"]["last_seq"] == last
    })
    .await;
    info_when(&nc, "S", Duration::from_secs(30), |i| {
        i["state"]["messages"] == msgs
    })
    .await;

    let o = read_all(&nc, "O").await;
    let m = read_all(&nc, "M").await;
    assert_eq!(m.len(), o.len());
    for (a, b) in o.iter().zip(&m) {
        assert_eq!((a.0, &a.1, &a.2), (b.0, &b.1, &b.2), "mirror differs");
    }
    let src = read_all(&nc, "S").await;
    let mut copied: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, subject, payload, header) in &src {
        let seq: u64 = header.split(' ').nth(1).unwrap().parse().unwrap();
        *copied.entry(seq).or_default() += 1;
        let orig = &o[(seq - 1) as usize];
        assert_eq!(
            (&orig.1, &orig.2),
            (subject, payload),
            "source copy of {seq}"
        );
    }
    assert!(copied.values().all(|&n| n == 1), "duplicates in the source");
    assert_eq!(copied.len(), o.len(), "gaps in the source");
    // In origin order.
    let order: Vec<u64> = src
        .iter()
        .map(|c| c.3.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
}

/// The headers of the newest message on `subject`, or `None` when there is none.
async fn last_headers(nc: &async_nats::Client, stream: &str, subject: &str) -> Option<String> {
    use base64::Engine;
    let r = api(
        nc,
        &format!("$JS.API.STREAM.MSG.GET.{stream}"),
        json!({ "last_by_subj": subject }),
    )
    .await;
    let h = r["message"]["hdrs"].as_str()?;
    Some(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(h).unwrap()).unwrap())
}

/// Subject delete markers: when `max_age` or a `Nats-TTL` removes the last message of a
/// subject, a marker takes its place and later expires itself; shorter TTLs are raised to
/// the marker TTL; `Nats-TTL: never` outlives `max_age`. Same sequences and headers as
/// nats-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_markers_and_never_ttl_match_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let mut got = Vec::new();
        for bad in [
            json!({"name": "B", "subjects": ["b"], "subject_delete_marker_ttl": 500_000_000}),
            json!({"name": "B", "subjects": ["b"], "subject_delete_marker_ttl": -1}),
            json!({"name": "B", "mirror": {"name": "X"}, "subject_delete_marker_ttl": 1_000_000_000u64}),
        ] {
            got.push(api(&nc, "$JS.API.STREAM.CREATE.B", bad).await["error"].clone());
        }
        let cfg = json!({"name": "K", "subjects": ["k.>"], "max_age": 1_000_000_000u64,
                         "subject_delete_marker_ttl": 1_000_000_000u64});
        let created = api(&nc, "$JS.API.STREAM.CREATE.K", cfg).await;
        let c = &created["config"];
        got.push(json!([
            c["allow_msg_ttl"],
            c["allow_rollup_hdrs"],
            c["subject_delete_marker_ttl"]
        ]));
        publish(&nc, "k.a", &[], "1").await;
        publish(&nc, "k.b", &[], "2").await;
        publish(&nc, "k.b", &[], "3").await;
        publish(&nc, "k.n", &[("Nats-TTL", "never")], "4").await;
        let ack = publish(&nc, "k.t", &[("Nats-TTL", "1s")], "5").await;
        got.push(ack["seq"].clone());
        // Markers replace the last message of k.a and k.b (k.n stays, k.t's TTL too).
        let info = info_when(&nc, "K", Duration::from_secs(15), |i| {
            i["state"]["last_seq"].as_u64().unwrap_or(0) >= 8
        })
        .await;
        let mut markers = Vec::new();
        for subject in ["k.a", "k.b", "k.t"] {
            let h = last_headers(&nc, "K", subject).await.unwrap_or_default();
            markers.push(json!([
                subject,
                header(&h, "Nats-Marker-Reason"),
                header(&h, "Nats-TTL"),
                header(&h, "Nats-Rollup"),
            ]));
        }
        got.push(json!(markers));
        got.push(info["state"]["last_seq"].clone());
        // The markers expire in turn; the never-expiring message stays.
        let left = info_when(&nc, "K", Duration::from_secs(15), |i| {
            i["state"]["messages"] == 1
        })
        .await;
        got.push(left["state"]["first_seq"].clone());
        got.push(json!(last_headers(&nc, "K", "k.n").await.is_some()));

        // A short TTL is raised to the marker TTL (more than one message per subject).
        let cfg = json!({"name": "R", "subjects": ["r.>"], "subject_delete_marker_ttl": 5_000_000_000u64});
        assert!(api(&nc, "$JS.API.STREAM.CREATE.R", cfg).await["error"].is_null());
        publish(&nc, "r.a", &[("Nats-TTL", "1s")], "x").await;
        let h = last_headers(&nc, "R", "r.a").await.unwrap();
        got.push(json!(header(&h, "Nats-TTL")));
        results.push(got);
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// Atomic batches: staged messages get an empty reply, the commit a PubAck with `batch` and
/// `count`, and a batch that fails any check stores nothing; the same replies, stored
/// headers and advisories as nats-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_batches_match_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let mut advisories = nc
            .subscribe("$JS.EVENT.ADVISORY.STREAM.BATCH_ABANDONED.>")
            .await
            .unwrap();
        let cfg = json!({"name": "B", "subjects": ["b.>"], "allow_atomic": true,
                         "allow_rollup_hdrs": true, "discard": "new", "max_msgs": 8});
        let created = api(&nc, "$JS.API.STREAM.CREATE.B", cfg).await;
        assert_eq!(created["config"]["allow_atomic"], true, "{bin}: {created}");
        let plain = json!({"name": "P", "subjects": ["p.>"]});
        assert!(api(&nc, "$JS.API.STREAM.CREATE.P", plain).await["error"].is_null());
        let b = |id: &'static str, seq: &'static str| {
            vec![("Nats-Batch-Id", id), ("Nats-Batch-Sequence", seq)]
        };
        let with = |mut h: Vec<(&'static str, &'static str)>, k: &'static str, v: &'static str| {
            h.push((k, v));
            h
        };
        let mut got = Vec::new();
        // A batch of three, then one ended by an end-of-batch message.
        got.push(request_text(&nc, "b.a", &b("x", "1"), "1").await);
        nc.publish_with_headers(
            "b.b",
            {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Batch-Id", "x");
                h.insert("Nats-Batch-Sequence", "2");
                h
            },
            "2".into(),
        )
        .await
        .unwrap();
        got.push(
            request_text(
                &nc,
                "b.c",
                &with(b("x", "3"), "Nats-Batch-Commit", "1"),
                "3",
            )
            .await,
        );
        got.push(request_text(&nc, "b.d", &b("y", "1"), "4").await);
        got.push(
            request_text(
                &nc,
                "b.e",
                &with(b("y", "2"), "Nats-Batch-Commit", "eob"),
                "",
            )
            .await,
        );
        // Refusals.
        let requests: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("b.f", b("g", "1")),
            ("b.f", b("g", "3")),
            ("b.f", vec![("Nats-Batch-Id", "m")]),
            ("b.f", with(b("c", "1"), "Nats-Batch-Commit", "2")),
            ("p.a", b("n", "1")),
            ("b.f", b(Box::leak("i".repeat(65).into_boxed_str()), "1")),
            ("b.f", b("big", "1001")),
            ("b.f", with(b("d", "1"), "Nats-Msg-Id", "same")),
            (
                "b.g",
                with(
                    with(b("d", "2"), "Nats-Msg-Id", "same"),
                    "Nats-Batch-Commit",
                    "1",
                ),
            ),
            ("b.f", b("e", "1")),
            (
                "b.g",
                with(
                    with(b("e", "2"), "Nats-Expected-Last-Sequence", "4"),
                    "Nats-Batch-Commit",
                    "1",
                ),
            ),
            ("b.f", b("k", "1")),
            (
                "b.g",
                with(
                    with(b("k", "2"), "Nats-Expected-Last-Sequence", "5"),
                    "Nats-Batch-Commit",
                    "1",
                ),
            ),
            ("b.f", with(b("l", "1"), "Nats-Expected-Last-Msg-Id", "z")),
            ("b.g", with(b("l", "2"), "Nats-Batch-Commit", "1")),
            ("b.f", b("r", "1")),
            (
                "b.g",
                with(
                    with(b("r", "2"), "Nats-Rollup", "all"),
                    "Nats-Batch-Commit",
                    "1",
                ),
            ),
            ("b.f", b("f", "1")),
            ("b.f", b("f", "2")),
            ("b.f", b("f", "3")),
            ("b.f", b("f", "4")),
            ("b.f", with(b("f", "5"), "Nats-Batch-Commit", "1")),
        ];
        for (subject, headers) in &requests {
            got.push(request_text(&nc, subject, headers, "z").await);
        }
        let info = api(&nc, "$JS.API.STREAM.INFO.B", Value::Null).await;
        got.push(info["state"]["messages"].to_string());
        for seq in [3, 4] {
            let m = get_msg(&nc, "B", seq).await;
            let h = m["hdrs"].as_str().unwrap_or_default().to_string();
            got.push(format!(
                "{} {:?} {:?} {:?}",
                m["subject"],
                header(&h, "Nats-Batch-Id"),
                header(&h, "Nats-Batch-Sequence"),
                header(&h, "Nats-Batch-Commit")
            ));
        }
        let mut reasons = Vec::new();
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), advisories.next()).await
        {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            reasons.push(json!([
                m.subject.as_str(),
                v["type"],
                v["stream"],
                v["batch"],
                v["reason"]
            ]));
        }
        got.push(json!(reasons).to_string());
        results.push(got);
    }
    testkit::with_reference(&results, |ours_all, theirs_all| {
        for (i, (ours, theirs)) in ours_all.iter().zip(theirs_all).enumerate() {
            assert_eq!(ours, theirs, "reply {i}: natsd vs nats-server");
        }
    });
}

/// Message schedules: the same refusals as nats-server, a stored schedule gets `Nats-Rollup:
/// sub`, a one-shot `@at` fires once on its target and removes itself, `@every` repeats
/// with the content of its source subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_schedules_match_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let cfg = json!({"name": "SC", "subjects": ["sched.>", "target.>", "src.>"],
                         "allow_msg_schedules": true, "allow_msg_ttl": true});
        let created = api(&nc, "$JS.API.STREAM.CREATE.SC", cfg).await;
        let mut got = vec![json!([
            created["config"]["allow_rollup_hdrs"],
            created["config"]["allow_msg_schedules"]
        ])];
        let plain = json!({"name": "P", "subjects": ["p.>"]});
        assert!(api(&nc, "$JS.API.STREAM.CREATE.P", plain).await["error"].is_null());
        for cfg in [
            json!({"name": "X", "mirror": {"name": "SC"}, "allow_msg_schedules": true}),
            json!({"name": "X", "sources": [{"name": "SC"}], "allow_msg_schedules": true}),
            json!({"name": "X", "subjects": ["x"], "allow_msg_schedules": true, "discard": "new"}),
        ] {
            got.push(api(&nc, "$JS.API.STREAM.CREATE.X", cfg).await["error"].clone());
        }
        let refused: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("sched.a", vec![("Nats-Schedule", "@every 5s")]),
            (
                "sched.a",
                vec![
                    ("Nats-Schedule", "@every 5s"),
                    ("Nats-Schedule-Target", "other.x"),
                ],
            ),
            (
                "sched.a",
                vec![
                    ("Nats-Schedule", "@every 5s"),
                    ("Nats-Schedule-Target", "sched.a"),
                ],
            ),
            (
                "sched.a",
                vec![
                    ("Nats-Schedule", "@every 1ms"),
                    ("Nats-Schedule-Target", "target.a"),
                ],
            ),
            (
                "sched.a",
                vec![
                    ("Nats-Schedule", "0 0 * * *"),
                    ("Nats-Schedule-Target", "target.a"),
                ],
            ),
            (
                "sched.a",
                vec![
                    ("Nats-Schedule", "@hourly"),
                    ("Nats-Schedule-Target", "target.a"),
                    ("Nats-Schedule-Time-Zone", "Nowhere/Else"),
                ],
            ),
            (
                "sched.a",
                vec![
                    ("Nats-Schedule", "@every 5s"),
                    ("Nats-Schedule-Target", "target.a"),
                    ("Nats-Schedule-Time-Zone", "Europe/Berlin"),
                ],
            ),
            (
                "sched.a",
                vec![
                    ("Nats-Schedule", "@every 5s"),
                    ("Nats-Schedule-Target", "target.a"),
                    ("Nats-Schedule-Rollup", "all"),
                ],
            ),
            (
                "sched.a",
                vec![
                    ("Nats-Schedule", "@every 5s"),
                    ("Nats-Schedule-Target", "target.a"),
                    ("Nats-Schedule-TTL", "0.5s"),
                ],
            ),
            (
                "sched.a",
                vec![
                    ("Nats-Schedule", "@every 5s"),
                    ("Nats-Schedule-Target", "target.a"),
                    ("Nats-Schedule-Source", "other.q"),
                ],
            ),
            ("sched.a", vec![("Nats-Scheduler", "sched.b")]),
            (
                "sched.a",
                vec![
                    ("Nats-Schedule-Next", "soon"),
                    ("Nats-Scheduler", "sched.b"),
                ],
            ),
            (
                "p.a",
                vec![
                    ("Nats-Schedule", "@every 5s"),
                    ("Nats-Schedule-Target", "p.b"),
                ],
            ),
        ];
        for (subject, headers) in &refused {
            got.push(publish(&nc, subject, headers, "x").await["error"].clone());
        }
        // A one-shot, one second from now.
        let at = chrono::Utc::now() + chrono::Duration::seconds(1);
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let pattern = format!("@at {at}");
        let ack = publish(
            &nc,
            "sched.once",
            &[
                ("Nats-Schedule", &pattern),
                ("Nats-Schedule-Target", "target.once"),
                ("Nats-Schedule-TTL", "5s"),
                ("X-Keep", "k"),
                ("Nats-Msg-Id", "m1"),
            ],
            "once",
        )
        .await;
        let stored = get_msg(&nc, "SC", ack["seq"].as_u64().unwrap()).await;
        got.push(json!(header(
            stored["hdrs"].as_str().unwrap(),
            "Nats-Rollup"
        )));
        // A repeating one with a source.
        publish(&nc, "src.v", &[("X-Src", "1")], "from source").await;
        publish(
            &nc,
            "sched.every",
            &[
                ("Nats-Schedule", "@every 1s"),
                ("Nats-Schedule-Target", "target.every"),
                ("Nats-Schedule-Source", "src.v"),
            ],
            "own",
        )
        .await;
        let once = testkit::try_eventually_async(Duration::from_secs(10), async || {
            last_headers(&nc, "SC", "target.once").await
        })
        .await
        .expect("the @at schedule never fired");
        let once_msg = api(
            &nc,
            "$JS.API.STREAM.MSG.GET.SC",
            json!({"last_by_subj": "target.once"}),
        )
        .await;
        got.push(json!([
            header(&once, "Nats-Scheduler"),
            header(&once, "Nats-Schedule-Next"),
            header(&once, "Nats-TTL"),
            header(&once, "X-Keep"),
            header(&once, "Nats-Msg-Id"),
            header(&once, "Nats-Schedule"),
            once_msg["message"]["data"],
        ]));
        // The one-shot schedule is gone, the repeating one fires again and again.
        let gone = testkit::try_eventually_async(Duration::from_secs(5), async || {
            last_headers(&nc, "SC", "sched.once").await.is_none()
        })
        .await;
        got.push(json!(gone.is_some()));
        let fired = async || {
            let r = api(
                &nc,
                "$JS.API.STREAM.INFO.SC",
                json!({"subjects_filter": "target.every"}),
            )
            .await;
            r["state"]["subjects"]["target.every"].as_u64().unwrap_or(0)
        };
        let (Ok(firings) | Err(firings)) =
            testkit::fetch_until_async(Duration::from_secs(15), fired, |n| *n >= 2).await;
        assert!(firings >= 2, "{bin}: @every fired {firings} times");
        let every = last_headers(&nc, "SC", "target.every").await.unwrap();
        let every_msg = api(
            &nc,
            "$JS.API.STREAM.MSG.GET.SC",
            json!({"last_by_subj": "target.every"}),
        )
        .await;
        let next = header(&every, "Nats-Schedule-Next").unwrap_or("");
        got.push(json!([
            header(&every, "Nats-Scheduler"),
            header(&every, "X-Src"),
            every_msg["message"]["data"],
            next.ends_with('Z') && next.len() >= 20,
        ]));
        results.push(got);
    }
    testkit::with_reference(&results, |ours_all, theirs_all| {
        for (i, (ours, theirs)) in ours_all.iter().zip(theirs_all).enumerate() {
            assert_eq!(ours, theirs, "item {i}: natsd vs nats-server");
        }
    });
}

/// A source whose copies were all purged from the stream does not copy them again after a
/// kill -9: its position is kept next to the store, not only in its messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_source_does_not_copy_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_conf(natsd(), JS_CONF, dir.path());
    let nc = connect(&s).await;
    assert!(api(
        &nc,
        "$JS.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"]})
    )
    .await["error"]
        .is_null());
    for i in 0..5 {
        publish(&nc, "o.x", &[], &i.to_string()).await;
    }
    let cfg = json!({"name": "S", "sources": [{"name": "O"}]});
    assert!(api(&nc, "$JS.API.STREAM.CREATE.S", cfg).await["error"].is_null());
    info_when(&nc, "S", Duration::from_secs(10), |i| {
        i["state"]["messages"] == 5
    })
    .await;
    let purged = api(&nc, "$JS.API.STREAM.PURGE.S", Value::Null).await;
    assert_eq!(purged["purged"], 5, "{purged}");
    // The position is saved on the worker's next look at its origins (at most a second).
    let saved = dir.path().join("jetstream/$G/streams/S/sources.json");
    let saved_soon =
        testkit::try_eventually_async(Duration::from_secs(5), async || saved.exists()).await;
    assert!(saved_soon.is_some(), "positions never saved");
    s.kill();
    drop(s);
    let s = start_conf(natsd(), JS_CONF, dir.path());
    let nc = connect(&s).await;
    publish(&nc, "o.x", &[], "new").await;
    let info = info_when(&nc, "S", Duration::from_secs(10), |i| {
        i["state"]["messages"] == 1
    })
    .await;
    assert_eq!(info["sources"][0]["seq"], 6, "{info}");
    // Nothing old came back while it got the new one.
    let last = get_msg(&nc, "S", info["state"]["last_seq"].as_u64().unwrap()).await;
    assert_eq!(last["data"], "new", "{last}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = api(&nc, "$JS.API.STREAM.INFO.S", Value::Null).await;
    assert_eq!(again["state"]["messages"], 1, "{again}");
}

/// Fast batches: messages stored as they come, flow acks every `flow` messages, gaps and
/// errors reported, the commit answered with `batch` and `count`; same replies as
/// nats-server, message for message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_batches_match_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let cfg = json!({"name": "F", "subjects": ["f.>"], "allow_batched": true});
        let created = api(&nc, "$JS.API.STREAM.CREATE.F", cfg).await;
        assert_eq!(created["config"]["allow_batched"], true, "{bin}: {created}");
        let plain = json!({"name": "P", "subjects": ["p.>"]});
        assert!(api(&nc, "$JS.API.STREAM.CREATE.P", plain).await["error"].is_null());
        let mut inbox = nc.subscribe("fi.>").await.unwrap();
        nc.flush().await.unwrap();
        type Send<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
        let sends: Vec<Send> = vec![
            ("f.a", "fi.b1.2.fail.1.0.$FI", vec![]),
            ("f.b", "fi.b1.2.fail.2.1.$FI", vec![]),
            ("f.c", "fi.b1.2.fail.3.2.$FI", vec![]),
            ("f.a", "fi.b2.5.fail.1.0.$FI", vec![]),
            ("f.a", "fi.b2.5.fail.3.1.$FI", vec![]),
            ("f.a", "fi.b3.5.ok.1.0.$FI", vec![]),
            ("f.a", "fi.b3.5.ok.3.1.$FI", vec![]),
            (
                "f.a",
                "fi.b3.5.ok.4.1.$FI",
                vec![("Nats-Expected-Stream", "X")],
            ),
            ("f.a", "fi.b3.5.ok.5.4.$FI", vec![]),
            ("f.a", "fi.b3.5.ok.5.2.$FI", vec![]),
            ("f.a", "fi.b4.1.fail.1.0.$FI", vec![("Nats-Msg-Id", "d")]),
            ("f.a", "fi.b4.1.fail.2.3.$FI", vec![]),
            ("f.a", "fi.b5.1.fail.1.0.$FI", vec![("Nats-Msg-Id", "d")]),
            (
                "f.a",
                "fi.b6.1.fail.1.0.$FI",
                vec![("Nats-Expected-Stream", "X")],
            ),
            ("p.a", "fi.b7.1.fail.1.0.$FI", vec![]),
            ("f.a", "fi.b8.1.maybe.1.0.$FI", vec![]),
            ("f.a", "fi.b9.1.fail.2.1.$FI", vec![]),
        ];
        for (subject, reply, headers) in &sends {
            let mut h = async_nats::HeaderMap::new();
            for (k, v) in headers {
                h.insert(*k, *v);
            }
            nc.publish_with_reply_and_headers(
                subject.to_string(),
                reply.to_string(),
                h,
                "x".into(),
            )
            .await
            .unwrap();
        }
        nc.flush().await.unwrap();
        let mut got = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), inbox.next()).await
        {
            got.push(format!(
                "{} {}",
                m.subject,
                String::from_utf8_lossy(&m.payload)
            ));
        }
        // Replies of one batch come in order; two streams' replies interleave freely.
        got.sort_by_key(|r| r.split(' ').next().unwrap_or("").to_string());
        let info = api(&nc, "$JS.API.STREAM.INFO.F", Value::Null).await;
        got.push(info["state"]["messages"].to_string());
        results.push(got);
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// A source that reads through a durable consumer: created as asked; with no such consumer
/// it waits quietly, with a consumer that lacks the `flow_control` ack policy it reports
/// 10217. Neither copies anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_consumer_sources_report_as_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        assert!(api(
            &nc,
            "$JS.API.STREAM.CREATE.UP",
            json!({"name": "UP", "subjects": ["up"]})
        )
        .await["error"]
            .is_null());
        publish(&nc, "up", &[], "x").await;
        let consumer = json!({"stream_name": "UP",
                              "config": {"name": "D", "deliver_subject": "d2", "ack_policy": "explicit"}});
        assert!(api(&nc, "$JS.API.CONSUMER.CREATE.UP.D", consumer).await["error"].is_null());
        let mut got = Vec::new();
        for (name, consumer) in [("DOWN", "C"), ("DOWN2", "D")] {
            let cfg = json!({"name": name, "sources": [
                {"name": "UP", "consumer": {"name": consumer, "deliver_subject": "d2"}}]});
            let created = api(&nc, &format!("$JS.API.STREAM.CREATE.{name}"), cfg).await;
            got.push(created["config"]["sources"].clone());
        }
        let with_error = info_when(&nc, "DOWN2", Duration::from_secs(10), |i| {
            !i["sources"][0]["error"].is_null()
        })
        .await;
        got.push(with_error["sources"][0]["error"].clone());
        got.push(with_error["state"]["messages"].clone());
        let quiet = api(&nc, "$JS.API.STREAM.INFO.DOWN", Value::Null).await;
        got.push(json!([
            quiet["sources"][0]["error"],
            quiet["sources"][0]["active"],
            quiet["state"]["messages"]
        ]));
        results.push(got);
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// A mirror and a source reading through durable consumers with the `flow_control` ack
/// policy copy what those consumers deliver (the source's consumer filtered), from their ack
/// floor on, and move the ack floor over what they copied; later messages follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_consumer_copies_match_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let up = api(
            &nc,
            "$JS.API.STREAM.CREATE.UP",
            json!({"name": "UP", "subjects": ["up.*"]}),
        )
        .await;
        assert!(up["error"].is_null(), "{bin}: {up}");
        for i in 0..6 {
            let subject = if i % 2 == 0 { "up.a" } else { "up.b" };
            publish(&nc, subject, &[], &format!("m{i}")).await;
        }
        for (name, deliver, filter) in [("FM", "dfm", ""), ("FS", "dfs", "up.a")] {
            let consumer = json!({"stream_name": "UP", "config": {
                "durable_name": name, "deliver_subject": deliver, "ack_policy": "flow_control",
                "flow_control": true, "idle_heartbeat": 1_000_000_000u64,
                "max_ack_pending": 100, "filter_subject": filter}});
            let c = api(
                &nc,
                &format!("$JS.API.CONSUMER.DURABLE.CREATE.UP.{name}"),
                consumer,
            )
            .await;
            assert!(c["error"].is_null(), "{bin}: {c}");
        }
        let mirror = json!({"name": "M", "mirror": {"name": "UP",
                            "consumer": {"name": "FM", "deliver_subject": "dfm"}}});
        let source = json!({"name": "S", "sources": [{"name": "UP",
                            "consumer": {"name": "FS", "deliver_subject": "dfs"}}]});
        for (name, cfg) in [("M", mirror), ("S", source)] {
            let r = api(&nc, &format!("$JS.API.STREAM.CREATE.{name}"), cfg).await;
            assert!(r["error"].is_null(), "{bin}: {r}");
        }
        let mut got = Vec::new();
        let wait = Duration::from_secs(20);
        for (stream, n) in [("M", 6), ("S", 3)] {
            let info = info_when(&nc, stream, wait, |i| i["state"]["messages"] == n).await;
            got.push(json!([
                stream,
                info["state"]["messages"],
                info["state"]["last_seq"]
            ]));
        }
        publish(&nc, "up.a", &[], "late").await;
        for (stream, n) in [("M", 7), ("S", 4)] {
            let info = info_when(&nc, stream, wait, |i| i["state"]["messages"] == n).await;
            got.push(json!([stream, info["state"]["messages"]]));
            let last = info["state"]["last_seq"].as_u64().unwrap();
            let m = get_msg(&nc, stream, last).await;
            got.push(json!([m["subject"], m["data"]]));
        }
        for (name, floor) in [("FM", 7), ("FS", 7)] {
            let subject = format!("$JS.API.CONSUMER.INFO.UP.{name}");
            // Compared below either way: a floor that never gets there shows in the diff.
            let info = testkit::fetch_until_async(
                wait,
                async || api(&nc, &subject, Value::Null).await,
                |i| i["ack_floor"]["stream_seq"] == floor,
            )
            .await
            .unwrap_or_else(|i| i);
            got.push(json!([
                name,
                info["ack_floor"]["stream_seq"],
                info["num_pending"]
            ]));
        }
        results.push(got);
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// Copies through durable consumers resume after `kill -9` mid-copy: the mirror ends equal
/// to its origin, the source holds every origin message exactly once, and the consumers'
/// ack floors reach the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_consumer_copies_resume_after_kill_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_conf(natsd(), JS_CONF, dir.path());
    let nc = connect(&s).await;
    let js = async_nats::jetstream::new(nc.clone());
    let up = api(
        &nc,
        "$JS.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"]}),
    )
    .await;
    assert!(up["error"].is_null(), "{up}");
    publish_acked(&js, "o", 7, 0..5_000).await;
    for (name, deliver) in [("FM", "dfm"), ("FS", "dfs")] {
        let consumer = json!({"stream_name": "O", "config": {
            "durable_name": name, "deliver_subject": deliver, "ack_policy": "flow_control",
            "flow_control": true, "idle_heartbeat": 1_000_000_000u64, "max_ack_pending": 100}});
        let c = api(
            &nc,
            &format!("$JS.API.CONSUMER.DURABLE.CREATE.O.{name}"),
            consumer,
        )
        .await;
        assert!(c["error"].is_null(), "{c}");
    }
    for cfg in [
        json!({"name": "M", "mirror": {"name": "O", "consumer": {"name": "FM", "deliver_subject": "dfm"}}}),
        json!({"name": "S", "sources": [{"name": "O", "consumer": {"name": "FS", "deliver_subject": "dfs"}}]}),
    ] {
        let r = create_stream(&nc, cfg).await;
        assert!(r["error"].is_null(), "{r}");
    }
    info_when(&nc, "S", Duration::from_secs(10), |i| {
        i["state"]["messages"].as_u64().unwrap_or(0) > 0
    })
    .await;
    s.kill();
    drop(s);

    let s = start_conf(natsd(), JS_CONF, dir.path());
    let nc = connect(&s).await;
    let js = async_nats::jetstream::new(nc.clone());
    publish_acked(&js, "o", 7, 5_000..5_500).await;
    info_when(&nc, "M", Duration::from_secs(30), |i| {
        i["state"]["last_seq"] == 5_500
    })
    .await;
    info_when(&nc, "S", Duration::from_secs(30), |i| {
        i["state"]["messages"] == 5_500
    })
    .await;
    let o = read_all(&nc, "O").await;
    let m = read_all(&nc, "M").await;
    assert_eq!(m.len(), o.len());
    for (a, b) in o.iter().zip(&m) {
        assert_eq!((a.0, &a.1, &a.2), (b.0, &b.1, &b.2), "mirror differs");
    }
    let mut copied: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, _, _, header) in read_all(&nc, "S").await {
        let seq: u64 = header.split(' ').nth(1).unwrap().parse().unwrap();
        *copied.entry(seq).or_default() += 1;
    }
    assert!(copied.values().all(|&n| n == 1), "duplicates in the source");
    assert_eq!(copied.len(), o.len(), "gaps in the source");
    for name in ["FM", "FS"] {
        let subject = format!("$JS.API.CONSUMER.INFO.O.{name}");
        testkit::fetch_until_async(
            Duration::from_secs(10),
            async || api(&nc, &subject, Value::Null).await,
            |i| i["ack_floor"]["stream_seq"] == 5_500,
        )
        .await
        .unwrap_or_else(|info| panic!("{name} ack floor: {info}"));
    }
}

/// Tightening `consumer_limits` below what a consumer has is refused, naming the consumers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_limits_updates_match_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let cfg = json!({"name": "L", "subjects": ["l"]});
        assert!(api(&nc, "$JS.API.STREAM.CREATE.L", cfg.clone()).await["error"].is_null());
        let c = json!({"stream_name": "L", "config": {"durable_name": "name", "ack_policy": "explicit"}});
        assert!(api(&nc, "$JS.API.CONSUMER.CREATE.L.name", c).await["error"].is_null());
        let mut got = Vec::new();
        for limits in [
            json!({"inactive_threshold": 2_000_000_000u64, "max_ack_pending": 10}),
            json!({"max_ack_pending": 5000}),
        ] {
            let mut update = cfg.clone();
            update["consumer_limits"] = limits;
            let r = api(&nc, "$JS.API.STREAM.UPDATE.L", update).await;
            got.push(json!([r["error"], r["config"]["consumer_limits"]]));
        }
        results.push(got);
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// A Key-Value mirror made with async-nats's KV API: the same stream config (mirror direct
/// on, no subjects), the same copies, and the same answers to reads through the mirror
/// bucket, on both servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_mirrors_match_nats_server() {
    use async_nats::jetstream::kv;
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let js = async_nats::jetstream::new(nc.clone());
        let orig = js
            .create_key_value(kv::Config {
                bucket: "ORIG".into(),
                history: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        orig.put("k1", "v1".into()).await.unwrap();
        orig.put("k2", "v2".into()).await.unwrap();
        orig.put("k1", "v1b".into()).await.unwrap();
        orig.delete("k2").await.unwrap();
        let mirror = js
            .create_key_value(kv::Config {
                bucket: "MIR".into(),
                history: 3,
                mirror: Some(async_nats::jetstream::stream::Source {
                    name: "ORIG".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let info = info_when(&nc, "KV_MIR", Duration::from_secs(10), |i| {
            i["state"]["last_seq"] == 4
        })
        .await;
        let get = |key: &'static str| {
            let mirror = mirror.clone();
            async move {
                match mirror.entry(key).await {
                    Ok(Some(e)) => format!("{:?} {} {:?}", e.operation, e.revision, e.value),
                    Ok(None) => "none".to_string(),
                    Err(e) => format!("error {}", e.kind()),
                }
            }
        };
        results.push(json!([
            info["config"]["mirror_direct"],
            info["config"]["subjects"],
            info["config"]["mirror"],
            info["state"]["messages"],
            get("k1").await,
            get("k2").await,
        ]));
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
}

/// A repeating schedule keeps firing after a kill -9: schedules are re-learnt from the
/// schedule messages in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_conf(natsd(), JS_CONF, dir.path());
    let nc = connect(&s).await;
    let cfg =
        json!({"name": "SC", "subjects": ["sched.>", "target.>"], "allow_msg_schedules": true});
    assert!(api(&nc, "$JS.API.STREAM.CREATE.SC", cfg).await["error"].is_null());
    publish(
        &nc,
        "sched.every",
        &[
            ("Nats-Schedule", "@every 1s"),
            ("Nats-Schedule-Target", "target.every"),
        ],
        "tick",
    )
    .await;
    s.kill();
    drop(s);
    let s = start_conf(natsd(), JS_CONF, dir.path());
    let nc = connect(&s).await;
    let info = async || {
        let filter = json!({"subjects_filter": "target.every"});
        api(&nc, "$JS.API.STREAM.INFO.SC", filter).await
    };
    let fired = testkit::fetch_until_async(Duration::from_secs(15), info, |r| {
        r["state"]["subjects"]["target.every"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    if let Err(r) = fired {
        panic!("the schedule stopped firing: {r}");
    }
}

/// Stream info's optional details: `subjects_filter` reports the matching subjects with
/// their paging (nothing, and zero paging, when none match), `deleted_details` the deleted
/// sequences (nothing when none are); a create refuses `sealed` and `mirror_direct` without
/// a mirror before anything else (nats.py's `test_jsm_stream_info_options`, `test_kv_direct`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_info_details_and_create_checks_match_nats_server() {
    let mut results: Vec<Vec<Value>> = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let created = api(
            &nc,
            "$JS.API.STREAM.CREATE.foo",
            json!({"name": "foo", "subjects": ["foo.>"]}),
        )
        .await;
        assert!(created["error"].is_null(), "{bin}: {created}");
        for i in 0..5 {
            publish(&nc, &format!("foo.{i}"), &[], "A").await;
        }
        let mut got = Vec::new();
        let info = |body: Value| {
            let nc = nc.clone();
            async move {
                let r = api(&nc, "$JS.API.STREAM.INFO.foo", body).await;
                let st = &r["state"];
                json!({"total": r["total"], "offset": r["offset"], "limit": r["limit"],
                       "messages": st["messages"], "has_subjects": st.get("subjects").is_some(),
                       "subjects": st["subjects"], "has_deleted": st.get("deleted").is_some(),
                       "deleted": st["deleted"], "num_deleted": st["num_deleted"]})
            }
        };
        got.push(info(json!({"subjects_filter": ">"})).await);
        got.push(info(json!({"subjects_filter": "foo.1"})).await);
        got.push(info(json!({"subjects_filter": "asdf"})).await);
        got.push(info(json!({"subjects_filter": ">", "offset": 10})).await);
        got.push(info(Value::Null).await);
        got.push(info(json!({"deleted_details": true})).await);
        let del = api(&nc, "$JS.API.STREAM.MSG.DELETE.foo", json!({"seq": 2})).await;
        assert_eq!(del["success"], true, "{bin}: {del}");
        got.push(info(json!({"deleted_details": true})).await);
        got.push(info(json!({"deleted_details": false})).await);
        for cfg in [
            json!({"name": "sl", "subjects": ["sl"], "sealed": true}),
            json!({"name": "md", "mirror_direct": true}),
            json!({"name": "md", "subjects": ["md"], "mirror_direct": true, "max_age": -1}),
        ] {
            let r = create_stream(&nc, cfg).await;
            got.push(r["error"].clone());
        }
        results.push(got);
    }
    testkit::with_reference(&results, |ours_all, theirs_all| {
        assert_eq!(
            theirs_all[0]["subjects"]["foo.3"], 1,
            "reference: {theirs_all:?}"
        );
        for (ours, theirs) in ours_all.iter().zip(theirs_all) {
            assert_eq!(ours, theirs, "natsd vs nats-server");
        }
    });
}

/// What a work-queue or interest origin shows of the consumer a copy keeps on it.
fn kept_consumer(list: &Value) -> Value {
    let Some(c) = list["consumers"].as_array().and_then(|a| a.first()) else {
        return Value::Null;
    };
    let mut cfg = c["config"].clone();
    let deliver = cfg["deliver_subject"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // `$JS.S.<random>`: the random part differs per run.
    cfg["deliver_subject"] = json!(deliver.rsplit_once('.').map(|(p, _)| p));
    json!({
        "total": list["total"],
        "name": c["name"],
        "config": cfg,
        "delivered": [c["delivered"]["consumer_seq"], c["delivered"]["stream_seq"]],
        "ack_floor": [c["ack_floor"]["consumer_seq"], c["ack_floor"]["stream_seq"]],
        "num_pending": c["num_pending"],
        "num_ack_pending": c["num_ack_pending"],
        "push_bound": c["push_bound"],
    })
}

fn state_of(info: &Value) -> Value {
    let st = &info["state"];
    json!([
        st["messages"],
        st["first_seq"],
        st["last_seq"],
        st["consumer_count"]
    ])
}

/// A source of a work-queue stream and a mirror of an interest stream count as consumers of
/// their origin, as nats-server's sourcing consumers do: the origin lists the consumer the
/// copy keeps there (`JS_SRC_...`, `JS_MIRROR_...`), removes (work queue) or releases
/// (interest) what was copied, keeps what was not copied yet, and forgets the consumer when
/// the source is deleted or the mirror promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_queue_and_interest_origins_count_their_copies_as_nats_server() {
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let mut t = Vec::new();
        for cfg in [
            json!({"name": "WQ", "subjects": ["wq.>"], "retention": "workqueue"}),
            json!({"name": "IN", "subjects": ["in.>"], "retention": "interest"}),
        ] {
            assert!(create_stream(&nc, cfg).await["error"].is_null());
        }
        for i in 0..3 {
            publish(&nc, &format!("wq.{i}"), &[], "w").await;
            publish(&nc, &format!("in.{i}"), &[], "i").await;
        }
        for cfg in [
            json!({"name": "S", "sources": [{"name": "WQ"}]}),
            json!({"name": "M", "mirror": {"name": "IN"}}),
        ] {
            assert!(create_stream(&nc, cfg).await["error"].is_null());
        }
        info_when(&nc, "S", Duration::from_secs(10), |i| {
            i["state"]["messages"] == 3
        })
        .await;
        // The interest origin kept nothing before the mirror came; from now on it keeps
        // what the mirror has not copied yet.
        let consumer = |name: &'static str| {
            let nc = nc.clone();
            async move {
                let subject = format!("$JS.API.CONSUMER.LIST.{name}");
                kept_consumer(&api(&nc, &subject, Value::Null).await)
            }
        };
        testkit::fetch_until_async(
            Duration::from_secs(10),
            async || consumer("IN").await,
            |c| c["total"] == 1,
        )
        .await
        .unwrap();
        for i in 3..5 {
            publish(&nc, &format!("wq.{i}"), &[], "w").await;
            publish(&nc, &format!("in.{i}"), &[], "i").await;
        }
        let s_info = info_when(&nc, "S", Duration::from_secs(10), |i| {
            i["state"]["messages"] == 5
        })
        .await;
        let m_info = info_when(&nc, "M", Duration::from_secs(10), |i| {
            i["state"]["last_seq"] == 5
        })
        .await;
        // Acknowledged once copied: the origins let go of everything.
        let wq = info_when(&nc, "WQ", Duration::from_secs(10), |i| {
            i["state"]["messages"] == 0
        })
        .await;
        let inter = info_when(&nc, "IN", Duration::from_secs(10), |i| {
            i["state"]["messages"] == 0
        })
        .await;
        t.push(json!([
            state_of(&s_info),
            state_of(&m_info),
            state_of(&wq),
            state_of(&inter)
        ]));
        let settled = |c: &Value| c["ack_floor"][1] == 5 && c["delivered"][1] == 5;
        let wq_consumer = testkit::fetch_until_async(
            Duration::from_secs(10),
            async || consumer("WQ").await,
            settled,
        )
        .await
        .unwrap();
        let in_consumer = testkit::fetch_until_async(
            Duration::from_secs(10),
            async || consumer("IN").await,
            settled,
        )
        .await
        .unwrap();
        t.push(json!([wq_consumer, in_consumer]));
        // A work-queue origin's consumers may not overlap, but the copy's does not count.
        let c = json!({"stream_name": "WQ", "config": {"durable_name": "mine", "ack_policy": "explicit"}});
        let beside = api(&nc, "$JS.API.CONSUMER.CREATE.WQ.mine", c).await;
        t.push(beside["error"].clone());
        api(&nc, "$JS.API.CONSUMER.DELETE.WQ.mine", Value::Null).await;

        // Another consumer on the interest origin: a message stays until both have it.
        let c = json!({"stream_name": "IN", "config": {"durable_name": "other", "ack_policy": "explicit"}});
        assert!(api(&nc, "$JS.API.CONSUMER.CREATE.IN.other", c).await["error"].is_null());
        publish(&nc, "in.6", &[], "i").await;
        info_when(&nc, "M", Duration::from_secs(10), |i| {
            i["state"]["last_seq"] == 6
        })
        .await;
        let held = info_when(&nc, "IN", Duration::from_secs(10), |i| {
            i["state"]["messages"] == 1
        })
        .await;
        t.push(state_of(&held));

        // Deleting the source stream and promoting the mirror drop their consumers.
        let deleted = api(&nc, "$JS.API.STREAM.DELETE.S", Value::Null).await;
        assert_eq!(deleted["success"], true, "{bin}: {deleted}");
        let mut cfg = m_info["config"].clone();
        cfg.as_object_mut().unwrap().remove("mirror");
        let promoted = api(&nc, "$JS.API.STREAM.UPDATE.M", cfg).await;
        assert!(promoted["error"].is_null(), "{bin}: {promoted}");
        let wq = info_when(&nc, "WQ", Duration::from_secs(10), |i| {
            i["state"]["consumer_count"] == 0
        })
        .await;
        let inter = info_when(&nc, "IN", Duration::from_secs(10), |i| {
            i["state"]["consumer_count"] == 1
        })
        .await;
        publish(&nc, "wq.7", &[], "w").await;
        let wq_after = api(&nc, "$JS.API.STREAM.INFO.WQ", Value::Null).await;
        t.push(json!([
            state_of(&wq),
            state_of(&inter),
            state_of(&wq_after)
        ]));
        results.push(t);
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours, theirs, "natsd vs nats-server")
    });
    assert_eq!(results[0][1][0]["name"], "JS_SRC_N6lXlrSF");
    assert!(results[0][2].is_null(), "{:?}", results[0]);
}

/// A source of a work-queue stream killed mid-copy resumes after a restart without gaps or
/// duplicates, and the origin ends empty: its consumer is durable and acknowledges only what
/// the copy has written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_queue_source_resumes_after_kill_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_conf(natsd(), JS_CONF, dir.path());
    let nc = connect(&s).await;
    let wq = json!({"name": "WQ", "subjects": ["wq.>"], "retention": "workqueue"});
    assert!(create_stream(&nc, wq).await["error"].is_null());
    publish_acked(&async_nats::jetstream::new(nc.clone()), "wq", 5, 0..20_000).await;
    let r = create_stream(&nc, json!({"name": "S", "sources": [{"name": "WQ"}]})).await;
    assert!(r["error"].is_null(), "{r}");
    info_when(&nc, "S", Duration::from_secs(10), |i| {
        i["state"]["messages"].as_u64().unwrap_or(0) > 0
    })
    .await;
    s.kill();
    drop(s);

    let s = start_conf(natsd(), JS_CONF, dir.path());
    let nc = connect(&s).await;
    publish_acked(
        &async_nats::jetstream::new(nc.clone()),
        "wq",
        5,
        20_000..21_000,
    )
    .await;
    info_when(&nc, "S", Duration::from_secs(30), |i| {
        i["state"]["messages"] == 21_000
    })
    .await;
    info_when(&nc, "WQ", Duration::from_secs(30), |i| {
        i["state"]["messages"] == 0
    })
    .await;
    let copies = read_all(&nc, "S").await;
    let mut seen = vec![0u32; 21_000];
    for (_, _, payload, _) in &copies {
        seen[payload.parse::<usize>().unwrap()] += 1;
    }
    assert!(seen.iter().all(|&n| n == 1), "gaps or duplicates");
    let list = api(&nc, "$JS.API.CONSUMER.LIST.WQ", Value::Null).await;
    assert_eq!(
        list["consumers"][0]["ack_floor"]["stream_seq"], 21_000,
        "{list}"
    );
}

/// Publishes `i` to `<prefix>.<i % subjects>` for each `i` in `range`, at most 200 unacked at a
/// time, and waits for every ack.
async fn publish_acked(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    subjects: u32,
    range: std::ops::Range<u32>,
) {
    let mut acks = Vec::new();
    for i in range {
        acks.push(
            js.publish(format!("{prefix}.{}", i % subjects), format!("{i}").into())
                .await
                .unwrap(),
        );
        if acks.len() == 200 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks {
        a.await.unwrap();
    }
}

/// Every message of `stream` as `{subject, data, headers}`, headers as `name: value` lines in
/// stored order with the origin identity (a hash of the origin's creation time, different
/// per run) cut off `Nats-Stream-Source`.
async fn stored_counters(nc: &async_nats::Client, stream: &str) -> Vec<Value> {
    let info = api(nc, &format!("$JS.API.STREAM.INFO.{stream}"), Value::Null).await;
    let last = info["state"]["last_seq"].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = get_msg(nc, stream, seq).await;
        let hdrs = m["hdrs"].as_str().unwrap_or_default();
        let lines: Vec<String> = hdrs
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| match l.strip_prefix("Nats-Stream-Source: ") {
                Some(v) => {
                    let (rest, identity) = v.rsplit_once(' ').unwrap();
                    assert_eq!(identity.len(), 8, "{stream} {seq}: {v}");
                    format!("Nats-Stream-Source: {rest}")
                }
                None => l.to_string(),
            })
            .collect();
        out.push(json!({"subject": m["subject"], "data": m["data"], "headers": lines}));
    }
    out
}

/// Counter streams that source counter streams add up what they copy, as nats-server does:
/// each copy counts as the difference to the last total seen from its origin subject
/// (stored as its `Nats-Incr`), the per-origin totals travel in `Nats-Counter-Sources`, own
/// increments add on top, a chain of aggregates and a subject transform on the source work,
/// and a plain stream stores the copies as they are; all of it again after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sourced_counters_match_nats_server() {
    let incr = async |nc: &async_nats::Client, subject: &str, by: &str| {
        let ack = publish(nc, subject, &[("Nats-Incr", by)], "").await;
        assert!(ack["error"].is_null(), "{subject} {by}: {ack}");
        ack["val"].as_str().unwrap().to_string()
    };
    let mut results = Vec::new();
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        let counter = |name: &str, subjects: Value, sources: Value| {
            json!({"name": name, "subjects": subjects, "allow_msg_counter": true,
                "sources": sources})
        };
        let count = async |nc: &async_nats::Client, stream: &str, n: u64| {
            info_when(nc, stream, Duration::from_secs(10), |i| {
                i["state"]["messages"] == n
            })
            .await;
        };
        for cfg in [
            counter("A", json!(["a.>"]), json!([])),
            counter("B", json!(["b.>"]), json!([])),
            counter(
                "S",
                json!(["s.>"]),
                json!([
                    {"name": "A", "subject_transforms": [{"src": "a.*", "dest": "s.$1"}]},
                    {"name": "B", "subject_transforms": [{"src": "b.*", "dest": "s.$1"}]},
                ]),
            ),
        ] {
            let r = create_stream(&nc, cfg).await;
            assert!(r["error"].is_null(), "{bin}: {r}");
        }
        // One change at a time: the order S sees them in (which source first) is part of what
        // it stores, and two sources that both have something are read in no set order.
        let mut acks = Vec::new();
        let mut in_s = 0;
        for (subject, by) in [
            ("a.x", "5"),
            ("a.x", "2"),
            ("b.x", "10"),
            ("a.y", "7"),
            ("s.x", "100"),
            ("a.x", "-1"),
        ] {
            acks.push(incr(&nc, subject, by).await);
            in_s += 1;
            count(&nc, "S", in_s).await;
        }
        // Copies of what is there already: an aggregate of the aggregate, and a plain stream
        // that stores the counter's messages as they are.
        for cfg in [
            counter("T", json!(["t.>"]), json!([{"name": "S"}])),
            json!({"name": "P", "subjects": ["p.>"], "sources": [{"name": "A"}]}),
        ] {
            let r = create_stream(&nc, cfg).await;
            assert!(r["error"].is_null(), "{bin}: {r}");
        }
        count(&nc, "T", 6).await;
        count(&nc, "P", 4).await;

        // A restart keeps the totals and where each source got to.
        s.stop();
        drop(s);
        let s = start_conf(&bin, JS_CONF, dir.path());
        let nc = connect(&s).await;
        for (subject, by) in [("b.x", "5"), ("s.y", "1"), ("a.y", "-7")] {
            acks.push(incr(&nc, subject, by).await);
            in_s += 1;
            count(&nc, "S", in_s).await;
        }
        count(&nc, "T", 9).await;
        count(&nc, "P", 5).await;

        let mut stored = BTreeMap::new();
        for stream in ["S", "T", "P"] {
            stored.insert(stream, stored_counters(&nc, stream).await);
        }
        let mut totals = BTreeMap::new();
        for (stream, subject) in [("S", "s.x"), ("S", "s.y"), ("T", "s.x"), ("A", "a.x")] {
            let last = api(
                &nc,
                &format!("$JS.API.STREAM.MSG.GET.{stream}"),
                json!({"last_by_subj": subject}),
            )
            .await;
            let data = last["message"]["data"].as_str().unwrap_or_default();
            use base64::Engine;
            let data = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap();
            totals.insert(
                format!("{stream} {subject}"),
                String::from_utf8(data).unwrap(),
            );
        }
        results.push(json!({"acks": acks, "stored": stored, "totals": totals}));
    }
    testkit::with_reference(&results, |ours, theirs| {
        assert_eq!(ours["acks"], theirs["acks"], "PubAck totals");
        assert_eq!(ours["totals"], theirs["totals"], "totals");
        for stream in ["S", "T", "P"] {
            let (o, t) = (&ours["stored"][stream], &theirs["stored"][stream]);
            for (i, (a, b)) in o
                .as_array()
                .unwrap()
                .iter()
                .zip(t.as_array().unwrap())
                .enumerate()
            {
                assert_eq!(a, b, "{stream} message {}", i + 1);
            }
            assert_eq!(o, t, "{stream}");
        }
    });
    // 5 + 2 - 1 from A, 10 + 5 from B, 100 of its own.
    let ours = &results[0];
    assert_eq!(ours["totals"]["S s.x"], r#"{"val":"121"}"#, "{ours}");
    assert_eq!(ours["totals"]["T s.x"], r#"{"val":"121"}"#, "{ours}");
    assert_eq!(ours["totals"]["S s.y"], r#"{"val":"1"}"#, "{ours}");
    let last_s = ours["stored"]["S"].as_array().unwrap().last().unwrap();
    assert!(
        last_s["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(r#"Nats-Counter-Sources: {"A":{"a.y":"0"}}"#)),
        "{last_s}"
    );
}
