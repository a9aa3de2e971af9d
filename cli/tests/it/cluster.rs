//! Issue 16: manage runs the tenants of a nats-server cluster. A local three-node cluster of the
//! real nats-server (`up --nodes 3`), every change confirmed on every node, a node that misses
//! one (exit 3) and converges, per-node configurations, the JetStream limits a cluster
//! enforces, and `migrate` from natsd into the cluster.

use std::process::Command;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;

use crate::common::{env_value, TestContext};

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The entry of `doc[list]` whose `key` is `value`.
fn entry<'a>(doc: &'a Value, list: &str, key: &str, value: &str) -> &'a Value {
    doc[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {doc}"))
        .iter()
        .find(|e| e[key] == value)
        .unwrap_or_else(|| panic!("no {key} {value} in {list} of {doc}"))
}

/// One stream of a `migrate --json` report.
fn stream_report(doc: &Value, stream: &str) -> Value {
    entry(doc, "streams", "stream", stream).clone()
}

/// `migrate --to` killed right after the target took its first batch (the failpoint), so that
/// the next run has to check and resume.
fn migrate_killed_after_first_batch(source: &TestContext, to: &str) {
    let killed = source
        .command(&["migrate", "--to", to])
        .env("MANAGE_FAILPOINT", "migrate-batch-published")
        .output()
        .unwrap();
    assert!(
        !killed.status.success(),
        "the failpoint did not stop migrate"
    );
}

fn node<'a>(doc: &'a Value, name: &str) -> &'a Value {
    entry(doc, "nodes", "name", name)
}

/// Connect with the credentials of a (comma-separated) URL list from a credentials file.
async fn connect(urls: &str) -> async_nats::Client {
    let first = urls.split(',').next().unwrap();
    let rest = first.strip_prefix("nats://").unwrap();
    let (userinfo, _) = rest.split_once('@').unwrap();
    let (user, password) = userinfo.split_once(':').unwrap();
    let servers: Vec<String> = urls
        .split(',')
        .map(|u| format!("nats://{}", u.split_once('@').unwrap().1))
        .collect();
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connection_timeout(Duration::from_secs(5))
        .connect(servers.as_slice())
        .await
        .unwrap()
}

fn signal(pid: u64, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

fn kill_9(pid: u64) {
    signal(pid, "-9");
    testkit::eventually(Duration::from_secs(10), format!("pid {pid} to die"), || {
        !std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    });
}

/// Parts 1 to 3: up --nodes 3, per-node configurations that nats-server accepts, status with
/// `nodes`, a change confirmed on every node, a node down (exit 3, `partial_reload`, the node
/// named), restarted by `up`, converged by `reload`; `test` on every node; `check`; `down`.
#[test]
fn issue_16_a_local_cluster_gets_every_change_on_every_node() {
    let Some(mut ctx) = TestContext::cluster(3) else {
        return;
    };
    let up = ctx.json(&["up", "--nodes", "3"]);
    ctx.started_for_drop();
    assert_eq!(up["ok"], true, "{up}");
    let nodes = up["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{up}");
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n["name"], format!("nats-{}", i + 1));
        assert_eq!(n["up"], true, "{n}");
        assert_eq!(n["healthy"], true, "{n}");
        assert_eq!(n["routes"], 2, "{n}");
        assert_eq!(n["in_sync"], true, "{n}");
        assert!(n["pid"].as_u64().is_some(), "{n}");
        assert_eq!(
            n["url"],
            format!("nats://localhost:{}", ctx.port + i as u16),
            "node i takes NATS_PORT+i"
        );
    }
    assert!(
        up["meta_leader"]
            .as_str()
            .is_some_and(|l| l.starts_with("nats-")),
        "{up}"
    );
    assert_eq!(up["client_urls"].as_array().unwrap().len(), 3);

    // The status table gives each node's own version (nodes of a rolling upgrade differ).
    let table = ctx.ok(&["status"]);
    let header = table
        .lines()
        .find(|l| l.contains("Node") && l.contains("State"))
        .unwrap_or_else(|| panic!("no table header in\n{table}"));
    assert!(header.contains("Version"), "{table}");
    for n in nodes {
        let name = n["name"].as_str().unwrap();
        let version = n["version"].as_str().unwrap();
        let row = table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name} in\n{table}"));
        assert!(row.contains(version), "{name} without {version}:\n{table}");
    }

    // Every node's configuration includes the one auth.conf and passes nats-server -t.
    let auth = ctx.read("config/auth.conf");
    for i in 1..=3 {
        let conf = ctx.read(&format!("config/nodes/nats-{i}.conf"));
        assert!(conf.contains("include ../auth.conf"), "{conf}");
        assert!(
            conf.contains(&format!("server_name: \"nats-{i}\"")),
            "{conf}"
        );
        let check = Command::new("nats-server")
            .args(["-t", "-c", &format!("config/nodes/nats-{i}.conf")])
            .current_dir(ctx.root())
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert_eq!(ctx.mode(&format!("config/nodes/nats-{i}.conf")), 0o640);
    }

    let added = ctx.json(&["add-tenant", "shop"]);
    let reload = &added["apply"]["reload"];
    assert_eq!(reload["confirmed_nodes"], 3, "{added}");
    for i in 1..=3 {
        let n = node(reload, &format!("nats-{i}"));
        assert_eq!(n["confirmed"], true, "{n}");
        assert_eq!(n["config_digest"], n["expected_digest"], "{n}");
    }
    assert_ne!(ctx.read("config/auth.conf"), auth);
    // The credentials name every node.
    let url = env_value(&ctx.read(".credentials/shop.env"), "NATS_URL");
    assert_eq!(url.split(',').count(), 3, "{url}");

    // A node goes down: the change reaches the others, names the one that missed it, exit 3.
    let status = ctx.json(&["status"]);
    let victim = node(&status, "nats-2")["pid"].as_u64().unwrap();
    kill_9(victim);
    let out = ctx.run(&["add-user", "shop", "late", "-p", "orders.*", "--json"]);
    assert_eq!(out.status.code(), Some(3), "partial exit code");
    let doc = json_of(&out);
    assert_eq!(doc["code"], "partial_reload", "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("nats-2 missed it"),
        "{doc}"
    );
    assert_eq!(node(&doc["apply"]["reload"], "nats-2")["running"], false);
    assert_eq!(node(&doc["apply"]["reload"], "nats-1")["confirmed"], true);
    assert!(
        ctx.path(".credentials/shop_late.env").exists(),
        "the change is saved"
    );
    let status = ctx.json(&["status"]);
    assert_eq!(node(&status, "nats-2")["up"], false, "{status}");
    assert_eq!(node(&status, "nats-1")["up"], true, "{status}");
    let check = ctx.run(&["check", "--json"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        json_of(&check)["problems"]
            .to_string()
            .contains("nats-2 does not answer"),
        "{}",
        json_of(&check)
    );

    // `up` again starts the missing node; `reload` converges everything.
    let up = ctx.json(&["up"]);
    assert_eq!(up["started"], serde_json::json!(["nats-2"]), "{up}");
    let reload = ctx.json(&["reload"]);
    assert_eq!(reload["apply"]["reload"]["confirmed_nodes"], 3, "{reload}");
    let check = ctx.json(&["check"]);
    assert_eq!(check["ok"], true, "{check}");

    // A node that runs but does not answer (stopped here; a partition alike) misses the change
    // too; answering again it runs the old configuration until `check --fix` reloads it.
    let frozen = node(&ctx.json(&["status"]), "nats-3")["pid"]
        .as_u64()
        .unwrap();
    signal(frozen, "-STOP");
    let out = ctx.run(&["add-user", "shop", "frozen", "--json"]);
    signal(frozen, "-CONT");
    assert_eq!(out.status.code(), Some(3), "{}", json_of(&out));
    let doc = json_of(&out);
    assert!(
        doc["error"].as_str().unwrap().contains("nats-3 missed it"),
        "{doc}"
    );
    let check = ctx.run(&["check", "--json"]);
    assert_eq!(check.status.code(), Some(1), "{}", json_of(&check));
    let problems = json_of(&check)["problems"].to_string();
    assert!(
        problems.contains("node nats-3 runs configuration"),
        "{problems}"
    );
    let fixed = ctx.json(&["check", "--fix"]);
    assert_eq!(fixed["remaining"], 0, "{fixed}");
    let status = ctx.json(&["status"]);
    for n in status["nodes"].as_array().unwrap() {
        assert_eq!(n["in_sync"], true, "converged: {status}");
    }
    assert_eq!(ctx.json(&["check"])["ok"], true);

    let test = ctx.json(&["test", "shop", "late"]);
    assert_eq!(test["ok"], true, "{test}");
    let tested: Vec<&Value> = test["nodes"].as_array().unwrap().iter().collect();
    assert_eq!(tested.len(), 3, "{test}");
    assert!(tested.iter().all(|n| n["ok"] == true), "{test}");

    // `list` counts the connections of every node.
    let list = ctx.json(&["list"]);
    assert_eq!(list["server_running"], true, "{list}");
    assert_eq!(list["tenants"][0]["name"], "shop", "{list}");

    // Asking for another size is refused; without --nodes the cluster is what `up` runs.
    let err = ctx.fails(&["up", "--nodes", "5"], 1);
    assert!(err.contains("describes 3 nodes"), "{err}");

    let down = ctx.json(&["down"]);
    assert_eq!(down["stopped"].as_array().unwrap().len(), 3, "{down}");
    let status = ctx.json(&["status"]);
    assert_eq!(status["running"], false, "{status}");
    // With every node stopped a change is saved for the next start (not a partial one).
    ctx.ok(&["add-user", "shop", "offline"]);
}

/// Part 2: an account's JetStream limits hold in the cluster as nats-server enforces them
/// there (every replica counts), and add-tenant's check is the cluster's capacity: the sum of
/// the nodes' limits.
#[tokio::test(flavor = "multi_thread")]
async fn issue_16_jetstream_limits_count_every_replica() {
    let Some(mut ctx) = TestContext::cluster(3) else {
        return;
    };
    ctx.ok(&["up", "--nodes", "3"]);
    ctx.started_for_drop();
    // Each node 10GB (nats.conf's max_file_store): 30GB for the tenants together.
    ctx.ok(&["add-tenant", "big", "64MB", "20GB"]);
    let out = ctx.run(&["add-tenant", "huge", "64MB", "11GB", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json_of(&out);
    assert_eq!(doc["code"], "limit_exceeded", "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("× 3 nodes"),
        "{doc}"
    );
    ctx.ok(&["add-tenant", "small", "1MB", "3MB"]);

    let client = connect(&env_value(&ctx.read(".credentials/small.env"), "NATS_URL")).await;
    let js = async_nats::jetstream::new(client);
    let stream = |name: &str, replicas: usize| async_nats::jetstream::stream::Config {
        name: name.into(),
        subjects: vec![format!("{name}.>")],
        num_replicas: replicas,
        max_bytes: 1024 * 1024,
        ..Default::default()
    };
    // 1MB × 3 replicas = the tenant's 3MB.
    js.create_stream(stream("R3", 3)).await.expect("R3 fits");
    let refused = js.create_stream(stream("MORE", 1)).await.unwrap_err();
    assert!(
        refused.to_string().contains("insufficient storage"),
        "{refused}"
    );
    let r3 = js.get_stream("R3").await.unwrap();
    let info = r3.get_info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.cluster.unwrap().replicas.len(), 2, "two followers");
}

/// Part 4: `migrate --to` moves tenants and JetStream data from natsd into the cluster:
/// messages with subjects and headers, KV history, durable consumers at their positions;
/// verified by counts and digests; resumes after a kill; a rerun copies only what is new.
#[tokio::test(flavor = "multi_thread")]
async fn issue_16_migrate_moves_a_natsd_deployment_into_the_cluster() {
    let Some(mut cluster) = TestContext::cluster(3) else {
        return;
    };
    let mut source = TestContext::new();
    crate::require_server!();
    source.up();
    source.ok(&["add-tenant", "shop", "64MB", "1GB"]);
    source.ok(&["add-user", "shop", "svc", "-p", "orders.>"]);
    cluster.ok(&["up", "--nodes", "3"]);
    cluster.started_for_drop();

    let client = connect(&env_value(
        &source.read(".credentials/shop.env"),
        "NATS_URL",
    ))
    .await;
    let js = async_nats::jetstream::new(client.clone());
    let orders = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..600u32 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("X-Order", i.to_string().as_str());
        headers.insert("Nats-Msg-Id", format!("m{i}").as_str());
        js.publish_with_headers(format!("orders.{}", i % 5), headers, i.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    orders.delete_message(7).await.unwrap();
    // Messages that share a Nats-Msg-Id, stored because they came more than the duplicate
    // window apart: the copy must keep both of each pair.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "DUPS".into(),
        subjects: vec!["dups.>".into()],
        duplicate_window: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    for round in 0..2 {
        for id in ["a", "b"] {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id);
            let ack = js
                .publish_with_headers(format!("dups.{id}"), headers, round.to_string().into())
                .await
                .unwrap()
                .await
                .unwrap();
            assert!(!ack.duplicate);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "cfg".into(),
            history: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..10 {
        kv.put(format!("k{}", i % 2), i.to_string().into())
            .await
            .unwrap();
    }
    kv.delete("k1").await.unwrap();
    // A durable consumer that acknowledged the first 50 messages.
    let worker = orders
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("worker".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = worker.fetch().max_messages(50).messages().await.unwrap();
    let mut acked = 0;
    while let Some(msg) = batch.next().await {
        msg.unwrap().ack().await.unwrap();
        acked += 1;
    }
    assert_eq!(acked, 50);
    // Acks reach natsd before migrate reads the consumer's floor.
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let to = cluster.root().display().to_string();
    // Killed after the cluster took its first batch: the rerun checks and resumes.
    migrate_killed_after_first_batch(&source, &to);
    let doc = source.json(&["migrate", "--to", &to]);
    assert_eq!(doc["ok"], true, "{doc}");
    let orders_report = stream_report(&doc, "ORDERS");
    assert_eq!(orders_report["source_messages"], 599, "{orders_report}");
    assert_eq!(orders_report["target_messages"], 599, "{orders_report}");
    assert_eq!(orders_report["verified"], true);
    assert_eq!(orders_report["replicas"], 3);
    assert_eq!(
        orders_report["source_digest"],
        orders_report["target_digest"]
    );
    assert_eq!(stream_report(&doc, "KV_cfg")["verified"], true);
    let dups = stream_report(&doc, "DUPS");
    assert_eq!(
        (
            dups["source_messages"].clone(),
            dups["target_messages"].clone()
        ),
        (4.into(), 4.into()),
        "{dups}"
    );

    // The users log in to the cluster with the passwords they had.
    let svc = env_value(&source.read(".credentials/shop_svc.env"), "NATS_PASSWORD");
    assert_eq!(
        env_value(&cluster.read(".credentials/shop_svc.env"), "NATS_PASSWORD"),
        svc
    );
    assert!(cluster.login("svc", &svc));

    let there = connect(&env_value(
        &cluster.read(".credentials/shop.env"),
        "NATS_URL",
    ))
    .await;
    let tjs = async_nats::jetstream::new(there);
    let torders = tjs.get_stream("ORDERS").await.unwrap();
    let info = torders.get_info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.state.messages, 599);
    // Subjects, headers and payloads as they were (order i was sequence i+1 here, and
    // sequence 7, order 6, was deleted: sequence 7 there holds order 7).
    let m = torders.get_raw_message(7).await.unwrap();
    assert_eq!(m.subject.as_str(), "orders.2");
    assert_eq!(m.headers.get("X-Order").unwrap().as_str(), "7");
    let id = m.headers.get(async_nats::header::NATS_MESSAGE_ID);
    assert_eq!(id.unwrap().as_str(), "m7");
    assert_eq!(m.payload.as_ref(), b"7");
    // The consumer resumes after what it acknowledged.
    let tworker: async_nats::jetstream::consumer::PullConsumer =
        torders.get_consumer("worker").await.unwrap();
    let mut next = tworker.fetch().max_messages(1).messages().await.unwrap();
    let first = next.next().await.unwrap().unwrap();
    assert_eq!(
        first.payload.as_ref(),
        b"51",
        "orders 0..=50 less the deleted 7 were acked"
    );
    // KV history as configured (4 per key) and the delete marker.
    let tkv = tjs.get_key_value("cfg").await.unwrap();
    let mut history = tkv.history("k0").await.unwrap();
    let mut values = Vec::new();
    while let Some(entry) = history.next().await {
        values.push(String::from_utf8(entry.unwrap().value.to_vec()).unwrap());
    }
    assert_eq!(values, ["2", "4", "6", "8"]);
    assert!(tkv.get("k1").await.unwrap().is_none(), "k1 was deleted");

    // A rerun copies nothing; new messages here are copied, nothing twice.
    let again = source.json(&["migrate", "--to", &to]);
    let again_orders = stream_report(&again, "ORDERS");
    assert_eq!(again_orders["copied"], 0, "{again}");
    js.publish("orders.new", "600".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let third = source.json(&["migrate", "--to", &to]);
    let third_orders = stream_report(&third, "ORDERS");
    assert_eq!(third_orders["copied"], 1, "{third}");
    assert_eq!(third_orders["target_messages"], 600, "{third}");
    assert_eq!(third_orders["verified"], true);

    // A mirror and a sourcing stream are made on the cluster from their configuration after
    // their origins, and the cluster copies into them itself.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "ORDERS_MIRROR".into(),
        mirror: Some(async_nats::jetstream::stream::Source {
            name: "ORDERS".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "ALL".into(),
        sources: Some(vec![
            async_nats::jetstream::stream::Source {
                name: "DUPS".into(),
                ..Default::default()
            },
            async_nats::jetstream::stream::Source {
                name: "ORDERS".into(),
                filter_subject: Some("orders.1".into()),
                ..Default::default()
            },
        ]),
        ..Default::default()
    })
    .await
    .unwrap();
    // natsd copies into them on its own: wait until it has (119 of orders.1, order 6 was deleted, and 4 dups).
    for (stream, want) in [("ORDERS_MIRROR", 600), ("ALL", 123)] {
        testkit::eventually_async(
            Duration::from_secs(20),
            format!("{stream} here"),
            async || {
                let mut s = js.get_stream(stream).await.unwrap();
                s.info().await.unwrap().state.messages == want
            },
        )
        .await;
    }
    let moved = source.json(&["migrate", "--to", &to]);
    assert_eq!(moved["ok"], true, "{moved}");
    for (stream, count) in [("ORDERS_MIRROR", 600), ("ALL", 123)] {
        let report = stream_report(&moved, stream);
        assert_eq!(report["verified"], true, "{report}");
        assert_eq!(report["source_messages"], count, "{report}");
        assert_eq!(report["target_messages"], count, "{report}");
        assert_eq!(report["source_digest"], report["target_digest"]);
    }
    let mut tmirror = tjs.get_stream("ORDERS_MIRROR").await.unwrap();
    let info = tmirror.info().await.unwrap();
    assert_eq!(info.config.mirror.as_ref().unwrap().name, "ORDERS");
    assert_eq!(info.state.messages, 600);
    let m = tmirror.get_raw_message(7).await.unwrap();
    assert_eq!(m.headers.get("X-Order").unwrap().as_str(), "7");
    let mut tall = tjs.get_stream("ALL").await.unwrap();
    assert_eq!(tall.info().await.unwrap().state.messages, 123);
    // A rerun finds them there and verifies again.
    let again = source.json(&["migrate", "--to", &to]);
    assert_eq!(stream_report(&again, "ALL")["action"], "exists", "{again}");
    assert_eq!(stream_report(&again, "ALL")["verified"], true, "{again}");

    // A sourcing stream that also took a direct publish cannot be made again by the cluster's
    // copy: refused before anything moves.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "MIXED".into(),
        subjects: vec!["mixed.>".into()],
        sources: Some(vec![async_nats::jetstream::stream::Source {
            name: "DUPS".into(),
            ..Default::default()
        }]),
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("mixed.direct", "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let out = source.run(&["migrate", "--to", &to, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let refused = json_of(&out);
    assert_eq!(refused["code"], "migrate_unsupported", "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("MIXED") && error.contains("directly"),
        "{refused}"
    );
    assert!(tjs.get_stream("MIXED").await.is_err(), "nothing moved");
    js.delete_stream("MIXED").await.unwrap();

    // `manage test` publishes to an allowed subject (here one ORDERS stores): last.
    let test = cluster.json(&["test", "shop", "svc"]);
    assert_eq!(test["ok"], true, "{test}");

    // A tenant changed on the cluster since is not overwritten.
    cluster.ok(&["add-user", "shop", "cluster-only"]);
    source.ok(&["add-user", "shop", "later"]);
    let out = source.run(&["migrate", "--to", &to, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_of(&out)["code"], "migrate_conflict");
}

/// Describing a cluster is all or nothing like every change: killed after the files were
/// written, the deployment is rolled back to no cluster; done again, it has one.
#[test]
fn issue_16_a_killed_cluster_change_rolls_back() {
    let Some(ctx) = TestContext::cluster(3) else {
        return;
    };
    ctx.ok(&["init"]);
    let killed = ctx
        .command(&["init", "--nodes", "3"])
        .env("MANAGE_FAILPOINT", "files-written")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    assert!(
        ctx.path("config/cluster.toml").exists(),
        "written before the kill"
    );
    let check = ctx.run(&["check", "--fix", "--json"]);
    assert_eq!(check.status.code(), Some(0), "{}", json_of(&check));
    assert!(!ctx.path("config/cluster.toml").exists(), "rolled back");
    assert!(
        !ctx.path("config/nodes/nats-1.conf").exists(),
        "rolled back"
    );
    let status = ctx.json(&["status"]);
    assert!(status.get("nodes").is_none(), "natsd again: {status}");

    ctx.ok(&["init", "--nodes", "3"]);
    for i in 1..=3 {
        assert!(ctx.path(&format!("config/nodes/nats-{i}.conf")).exists());
    }
    let status = ctx.json(&["status"]);
    assert_eq!(status["running"], false, "init starts nothing: {status}");
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3, "{status}");
    assert!(ctx.read(".env").contains("NATS_CLUSTER_PASSWORD="));
}

/// A JetStream API request over a plain client.
async fn js_api(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    let reply = client
        .request(subject.to_owned(), body.to_string().into())
        .await
        .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

/// Publish and return the acknowledgement.
async fn publish_acked(
    client: &async_nats::Client,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> Value {
    let mut map = async_nats::HeaderMap::new();
    for (key, value) in headers {
        map.insert(*key, *value);
    }
    let reply = client
        .request_with_headers(subject.to_owned(), map, payload.to_owned().into())
        .await
        .unwrap();
    let ack: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert!(ack.get("error").is_none(), "{subject}: {ack}");
    ack
}

/// Every message of a stream as stored: (subject, raw headers, payload).
async fn stored_messages(
    client: &async_nats::Client,
    stream: &str,
) -> Vec<(String, String, String)> {
    use base64::Engine as _;
    let decode = |v: &Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or(""))
                .unwrap(),
        )
        .unwrap()
    };
    let mut out = Vec::new();
    let mut seq = 1;
    loop {
        let reply = js_api(
            client,
            &format!("$JS.API.STREAM.MSG.GET.{stream}"),
            serde_json::json!({ "seq": seq, "next_by_subj": ">" }),
        )
        .await;
        let Some(m) = reply.get("message") else {
            return out;
        };
        out.push((
            m["subject"].as_str().unwrap().to_owned(),
            decode(&m["hdrs"]),
            decode(&m["data"]),
        ));
        seq = m["seq"].as_u64().unwrap() + 1;
    }
}

/// Issue 16 item 4: streams with a subject transform and counter streams move from natsd to
/// a nats-server cluster. A transform stream is copied under its stored (transformed)
/// subjects before a plain stream that takes those subjects there, then gets its own subjects
/// and transform back; counters are replayed as increments, with per-subject history, negative
/// steps and totals beyond i64; reruns copy nothing twice, copy what is new, and a transform
/// stream whose stored subjects another moved stream takes now is refused with what to do.
#[tokio::test(flavor = "multi_thread")]
async fn issue_16_migrate_copies_subject_transforms_and_counters() {
    let Some(mut target) = TestContext::cluster(3) else {
        return;
    };
    let mut source = TestContext::new();
    crate::require_server!();
    source.up();
    target.ok(&["up", "--nodes", "3"]);
    target.started_for_drop();
    source.ok(&["add-tenant", "lab", "64MB", "1GB"]);
    let client = connect(&env_value(&source.read(".credentials/lab.env"), "NATS_URL")).await;
    for config in [
        serde_json::json!({"name": "A_PLAIN", "subjects": ["t.>"]}),
        serde_json::json!({"name": "T", "subjects": ["in.>", "raw.>"], "max_msgs_per_subject": 2,
            "subject_transform": {"src": "in.>", "dest": "t.>"}}),
        serde_json::json!({"name": "T2", "subjects": ["in2.*"],
            "subject_transform": {"src": "in2.*", "dest": "u.{{wildcard(1)}}"}}),
        serde_json::json!({"name": "C", "subjects": ["c.>"], "allow_msg_counter": true,
            "max_msgs_per_subject": 3}),
    ] {
        let name = config["name"].as_str().unwrap().to_owned();
        let created = js_api(&client, &format!("$JS.API.STREAM.CREATE.{name}"), config).await;
        assert!(created.get("error").is_none(), "{created}");
    }
    for (subject, headers, payload) in [
        ("in.a", vec![("X-N", "1")], "1"),
        ("in.a", vec![("X-N", "2")], "2"),
        ("in.a", vec![("X-N", "3")], "3"),
        ("in.b.c", vec![("X-N", "4"), ("Nats-Msg-Id", "four")], "4"),
        ("raw.x", vec![], "5"),
        ("t.p", vec![], "plain"),
        ("in2.a", vec![], "a"),
        ("in2.b", vec![("X-N", "b")], "b"),
    ] {
        publish_acked(&client, subject, &headers, payload).await;
    }
    let big = "9223372036854775807";
    for (subject, incr, total) in [
        ("c.a", "+5", "5"),
        ("c.a", "-7", "-2"),
        ("c.a", "+100", "98"),
        ("c.a", "2", "100"),
        ("c.big", big, big),
        ("c.big", "10", "9223372036854775817"),
    ] {
        let ack = publish_acked(
            &client,
            subject,
            &[("Nats-Incr", incr), ("X-Note", incr)],
            "",
        )
        .await;
        assert_eq!(ack["val"], total, "{ack}");
    }

    let to = target.root().display().to_string();
    // Killed after the first batch (T's, moved first, under its stored subjects): the rerun
    // checks what the target took and finishes.
    migrate_killed_after_first_batch(&source, &to);
    let there = connect(&env_value(&target.read(".credentials/lab.env"), "NATS_URL")).await;
    let relaxed = js_api(&there, "$JS.API.STREAM.INFO.T", serde_json::json!({})).await;
    assert_eq!(
        relaxed["config"]["subjects"],
        serde_json::json!(["raw.x", "t.a", "t.b.c"]),
        "copied under its stored subjects: {relaxed}"
    );
    assert!(
        relaxed["config"]["subject_transform"].is_null(),
        "{relaxed}"
    );
    let doc = source.json(&["migrate", "--to", &to]);
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(stream_report(&doc, "T")["action"], "resumed", "{doc}");
    for (stream, count) in [("A_PLAIN", 1), ("T", 4), ("T2", 2), ("C", 5)] {
        let report = stream_report(&doc, stream);
        assert_eq!(report["verified"], true, "{report}");
        assert_eq!(report["source_messages"], count, "{report}");
        assert_eq!(report["target_messages"], count, "{report}");
        assert_eq!(report["source_digest"], report["target_digest"], "{report}");
    }

    // The transform stream: its own configuration, its messages under the stored subjects.
    let info = js_api(&there, "$JS.API.STREAM.INFO.T", serde_json::json!({})).await;
    assert_eq!(
        info["config"]["subjects"],
        serde_json::json!(["in.>", "raw.>"]),
        "{info}"
    );
    assert_eq!(info["config"]["subject_transform"]["dest"], "t.>", "{info}");
    let t = stored_messages(&there, "T").await;
    let subjects: Vec<(&str, &str)> = t.iter().map(|(s, _, p)| (s.as_str(), p.as_str())).collect();
    assert_eq!(
        subjects,
        [("t.a", "2"), ("t.a", "3"), ("t.b.c", "4"), ("raw.x", "5")]
    );
    assert_eq!(
        t,
        stored_messages(&client, "T").await,
        "headers byte for byte"
    );
    assert!(t[2].1.contains("X-N: 4\r\n") && t[2].1.contains("Nats-Msg-Id: four\r\n"));
    let t2 = js_api(&there, "$JS.API.STREAM.INFO.T2", serde_json::json!({})).await;
    assert_eq!(
        t2["config"]["subject_transform"]["dest"], "u.{{wildcard(1)}}",
        "{t2}"
    );
    // The counters: per-subject history as configured; where the first increment of c.a is
    // gone here, the oldest kept total's step is its increment.
    let cinfo = js_api(&there, "$JS.API.STREAM.INFO.C", serde_json::json!({})).await;
    assert_eq!(cinfo["config"]["allow_msg_counter"], true, "{cinfo}");
    assert_eq!(cinfo["config"]["max_msgs_per_subject"], 3, "{cinfo}");
    assert_eq!(info["config"]["max_msgs_per_subject"], 2, "{info}");
    let c = stored_messages(&there, "C").await;
    let expected = [
        ("c.a", "-2", "-7", "-2"),
        ("c.a", "+100", "+100", "98"),
        ("c.a", "2", "2", "100"),
        ("c.big", big, big, big),
        ("c.big", "10", "10", "9223372036854775817"),
    ];
    assert_eq!(c.len(), expected.len(), "{c:?}");
    for ((subject, headers, payload), (want_subject, incr, note, total)) in c.iter().zip(expected) {
        assert_eq!(subject, want_subject);
        assert!(
            headers.contains(&format!("Nats-Incr: {incr}\r\n")),
            "{headers}"
        );
        assert!(
            headers.contains(&format!("X-Note: {note}\r\n")),
            "{headers}"
        );
        assert_eq!(payload, &format!("{{\"val\":\"{total}\"}}"));
    }
    let here = stored_messages(&client, "C").await;
    assert_eq!(
        c[1..],
        here[1..],
        "kept byte for byte where the history is whole"
    );

    // A rerun copies nothing and changes nothing (A_PLAIN takes T's stored subjects there now).
    let again = source.json(&["migrate", "--to", &to]);
    assert_eq!(again["ok"], true, "{again}");
    for stream in ["A_PLAIN", "T", "T2", "C"] {
        let report = stream_report(&again, stream);
        assert_eq!(report["copied"], 0, "{report}");
        assert_eq!(report["verified"], true, "{report}");
    }
    // New messages here: copied once, the totals going on from where they were.
    publish_acked(&client, "in2.c", &[], "c").await;
    let ack = publish_acked(&client, "c.a", &[("Nats-Incr", "-1000")], "").await;
    assert_eq!(ack["val"], "-900");
    let third = source.json(&["migrate", "--to", &to]);
    assert_eq!(third["ok"], true, "{third}");
    for stream in ["T2", "C"] {
        let report = stream_report(&third, stream);
        assert_eq!(report["copied"], 1, "{report}");
        assert_eq!(report["verified"], true, "{report}");
    }
    let last = js_api(
        &there,
        "$JS.API.STREAM.MSG.GET.C",
        serde_json::json!({ "last_by_subj": "c.a" }),
    )
    .await;
    assert_eq!(last["message"]["data"], "eyJ2YWwiOiItOTAwIn0=", "{last}"); // {"val":"-900"}
    let t2 = js_api(&there, "$JS.API.STREAM.INFO.T2", serde_json::json!({})).await;
    assert_eq!(
        t2["config"]["subjects"],
        serde_json::json!(["in2.*"]),
        "{t2}"
    );
    assert_eq!(t2["state"]["messages"], 3, "{t2}");

    // A new message of T now would have to be published to t.q, which A_PLAIN takes there.
    publish_acked(&client, "in.q", &[], "q").await;
    let out = source.run(&["migrate", "--to", &to, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let failed = stream_report(&json_of(&out), "T");
    assert_eq!(failed["verified"], false, "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("transformed subjects") && error.contains("t.q"),
        "{failed}"
    );
    let info = js_api(&there, "$JS.API.STREAM.INFO.T", serde_json::json!({})).await;
    assert_eq!(
        info["config"]["subject_transform"]["dest"], "t.>",
        "untouched: {info}"
    );

    // A counter stream that sources another: nats-server would sum what it sources with a
    // header natsd does not write; refused before anything moves.
    let created = js_api(
        &client,
        "$JS.API.STREAM.CREATE.CS",
        serde_json::json!({"name": "CS", "allow_msg_counter": true, "sources": [{"name": "C"}]}),
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    let out = source.run(&["migrate", "--to", &to, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let refused = json_of(&out);
    assert_eq!(refused["code"], "migrate_unsupported", "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("CS") && error.contains("Nats-Counter-Sources"),
        "{refused}"
    );
    let missing = js_api(&there, "$JS.API.STREAM.INFO.CS", serde_json::json!({})).await;
    assert_eq!(
        missing["error"]["err_code"], 10059,
        "nothing moved: {missing}"
    );

    // The target runs them as nats-server streams: publishes are transformed and counted.
    let ack = publish_acked(&there, "in.z", &[], "z").await;
    assert_eq!(ack["stream"], "T");
    let ack = publish_acked(&there, "c.big", &[("Nats-Incr", "1")], "").await;
    assert_eq!(ack["val"], "9223372036854775818");
}

/// How many messages `stream` holds on each subject matching `filter`.
async fn per_subject(client: &async_nats::Client, stream: &str, filter: &str) -> Value {
    let info = js_api(
        client,
        &format!("$JS.API.STREAM.INFO.{stream}"),
        serde_json::json!({ "subjects_filter": filter }),
    )
    .await;
    info["state"]["subjects"].clone()
}

/// Part 4, message schedules: a stream with schedules moves with its plain messages, what a
/// fired one-shot schedule produced, a repeating schedule and its products, and a one-shot
/// schedule still pending, which fires on the cluster at its time, once (natsd fires it too:
/// a rerun copies nothing of what either produced after the move).
#[tokio::test(flavor = "multi_thread")]
async fn issue_16_migrate_moves_message_schedules() {
    /// Enough plain messages for several batches.
    const PLAIN: u64 = 20000;
    let Some(mut cluster) = TestContext::cluster(3) else {
        return;
    };
    let mut source = TestContext::new();
    crate::require_server!();
    source.up();
    source.ok(&["add-tenant", "shop", "64MB", "1GB"]);
    cluster.ok(&["up", "--nodes", "3"]);
    cluster.started_for_drop();

    let client = connect(&env_value(
        &source.read(".credentials/shop.env"),
        "NATS_URL",
    ))
    .await;
    let js = async_nats::jetstream::new(client.clone());
    let created = js_api(
        &client,
        "$JS.API.STREAM.CREATE.SCHED",
        serde_json::json!({
            "name": "SCHED", "subjects": ["sched.>"], "storage": "file",
            "allow_msg_schedules": true, "allow_rollup_hdrs": true,
        }),
    )
    .await;
    assert!(created["error"].is_null(), "{created}");
    let schedule = async |subject: &str, pattern: &str, target: &str| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Schedule", pattern);
        headers.insert("Nats-Schedule-Target", target);
        headers.insert("X-Kind", subject);
        js.publish_with_headers(subject.to_owned(), headers, "payload".into())
            .await
            .unwrap()
            .await
            .unwrap();
    };
    let rfc3339 = |t: std::time::SystemTime| {
        let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        natsd_conf::timestamp::rfc3339_ns(secs * 1_000_000_000)
    };
    // Repeating, armed first on the cluster: it fires there while the rest is copied.
    schedule("sched.s.every", "@every 1s", "sched.out.every").await;
    let mut acks = Vec::new();
    for i in 0..PLAIN {
        acks.push(
            js.publish("sched.plain", i.to_string().into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    // Already fired here: its product stays, the schedule is gone.
    schedule(
        "sched.s.done",
        &format!("@at {}", rfc3339(std::time::SystemTime::now())),
        "sched.out.done",
    )
    .await;
    // Pending: fires on the cluster at its time, once.
    // On a whole second, as the schedule names it.
    let due = std::time::UNIX_EPOCH
        + Duration::from_secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 15,
        );
    schedule(
        "sched.s.later",
        &format!("@at {}", rfc3339(due)),
        "sched.out.later",
    )
    .await;
    // Pending, and ended by a client on natsd after the move.
    schedule(
        "sched.s.ended",
        &format!("@at {}", rfc3339(due + Duration::from_secs(3600))),
        "sched.out.ended",
    )
    .await;
    testkit::eventually_async(
        Duration::from_secs(10),
        "natsd to fire the due schedules",
        async || {
            let subjects = per_subject(&client, "SCHED", "sched.out.>").await;
            subjects["sched.out.done"] == 1 && subjects["sched.out.every"].as_u64() >= Some(2)
        },
    )
    .await;

    let to = cluster.root().display().to_string();
    // Killed after the cluster took the first batch, which armed the repeating schedule
    // there: the rerun finds it armed and goes on.
    migrate_killed_after_first_batch(&source, &to);
    let doc = source.json(&["migrate", "--to", &to]);
    assert_eq!(doc["ok"], true, "{doc}");
    let report = stream_report(&doc, "SCHED");
    assert_eq!(report["action"], "resumed", "{report}");
    assert_eq!(report["verified"], true, "{report}");
    let finished = std::time::SystemTime::now();

    let there = connect(&env_value(
        &cluster.read(".credentials/shop.env"),
        "NATS_URL",
    ))
    .await;
    let tjs = async_nats::jetstream::new(there.clone());
    let tsched = tjs.get_stream("SCHED").await.unwrap();
    let info = js_api(&there, "$JS.API.STREAM.INFO.SCHED", serde_json::json!({})).await;
    assert_eq!(info["config"]["allow_msg_schedules"], true, "{info}");
    assert_eq!(info["config"]["num_replicas"], 3, "{info}");
    let subjects = per_subject(&there, "SCHED", ">").await;
    assert_eq!(subjects["sched.plain"], PLAIN, "{subjects}");
    assert!(subjects.get("sched.s.done").is_none(), "{subjects}");
    assert_eq!(subjects["sched.s.every"], 1, "{subjects}");
    if finished + Duration::from_secs(1) < due {
        assert_eq!(subjects["sched.s.later"], 1, "pending there: {subjects}");
        assert!(subjects.get("sched.out.later").is_none(), "{subjects}");
    }
    // What the fired one-shot schedule produced, byte for byte as natsd stored it.
    let done = tsched
        .get_last_raw_message_by_subject("sched.out.done")
        .await
        .unwrap();
    let here = js
        .get_stream("SCHED")
        .await
        .unwrap()
        .get_last_raw_message_by_subject("sched.out.done")
        .await
        .unwrap();
    assert_eq!(done.headers, here.headers);
    assert_eq!(
        done.headers.get("Nats-Scheduler").unwrap().as_str(),
        "sched.s.done"
    );
    assert_eq!(
        done.headers.get("Nats-Schedule-Next").unwrap().as_str(),
        "purge"
    );
    assert_eq!(done.payload.as_ref(), b"payload");
    // A repeating schedule's earlier products, without the two headers nats-server takes
    // from no client (the cluster's own carry them).
    let mut stripped = 0;
    let mut seq = 1;
    loop {
        let got = js_api(
            &there,
            "$JS.API.STREAM.MSG.GET.SCHED",
            serde_json::json!({ "seq": seq, "next_by_subj": "sched.out.every" }),
        )
        .await;
        let Some(at) = got["message"]["seq"].as_u64() else {
            break;
        };
        let headers = tsched.get_raw_message(at).await.unwrap().headers;
        assert_eq!(headers.get("X-Kind").unwrap().as_str(), "sched.s.every");
        if headers.get("Nats-Scheduler").is_none() {
            assert!(headers.get("Nats-Schedule-Next").is_none(), "{got}");
            stripped += 1;
        }
        seq = at + 1;
    }
    assert!(stripped >= 2, "natsd's products copied: {stripped}");
    // The repeating schedule goes on firing there, in its own name.
    testkit::eventually_async(
        Duration::from_secs(10),
        "the cluster to fire the repeating schedule",
        async || {
            let m = tsched
                .get_last_raw_message_by_subject("sched.out.every")
                .await
                .unwrap();
            m.headers
                .get("Nats-Scheduler")
                .is_some_and(|s| s.as_str() == "sched.s.every")
        },
    )
    .await;
    // The pending one fires at its time, once, and its schedule is gone.
    testkit::eventually_async(
        Duration::from_secs(30),
        "the cluster to fire the pending schedule",
        async || {
            let subjects = per_subject(&there, "SCHED", "sched.>").await;
            subjects["sched.out.later"] == 1 && subjects.get("sched.s.later").is_none()
        },
    )
    .await;
    let later = tsched
        .get_last_raw_message_by_subject("sched.out.later")
        .await
        .unwrap();
    let due_ns = due
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    assert!(
        later.time.unix_timestamp_nanos() >= due_ns,
        "not before its time: {} < {due_ns}",
        later.time.unix_timestamp_nanos()
    );
    assert_eq!(
        later.headers.get("X-Kind").unwrap().as_str(),
        "sched.s.later"
    );
    // natsd fired it too; the rerun copies neither that nor the repeating schedule's products
    // since the move, and verifies what was copied.
    testkit::eventually_async(
        Duration::from_secs(10),
        "natsd to fire the pending schedule",
        async || per_subject(&client, "SCHED", "sched.out.later").await["sched.out.later"] == 1,
    )
    .await;
    let again = source.json(&["migrate", "--to", &to]);
    let rerun = stream_report(&again, "SCHED");
    assert_eq!(rerun["copied"], 0, "{rerun}");
    assert_eq!(rerun["verified"], true, "{rerun}");
    let subjects = per_subject(&there, "SCHED", "sched.out.later").await;
    assert_eq!(subjects["sched.out.later"], 1, "once: {subjects}");

    // A client ends a schedule on natsd: the next migrate ends it on the cluster too.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Scheduler", "sched.s.ended");
    headers.insert("Nats-Schedule-Next", "purge");
    js.publish_with_headers("sched.end", headers, "".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let subjects = per_subject(&there, "SCHED", "sched.s.ended").await;
    assert_eq!(subjects["sched.s.ended"], 1, "armed there: {subjects}");
    let ended = source.json(&["migrate", "--to", &to]);
    let report = stream_report(&ended, "SCHED");
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(report["verified"], true, "{report}");
    let subjects = per_subject(&there, "SCHED", "sched.>").await;
    assert!(subjects.get("sched.s.ended").is_none(), "{subjects}");
    assert_eq!(subjects["sched.end"], 1, "{subjects}");
    let last = source.json(&["migrate", "--to", &to]);
    assert_eq!(stream_report(&last, "SCHED")["copied"], 0, "{last}");
}
