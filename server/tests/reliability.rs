//! Reliability under faults, against a natsd process: one server per store, a full disk
//! (a real small tmpfs where the machine allows mounts), damaged store files, and the
//! format of the log lines all of these produce.

// A test binary has no public API, and tests may unwrap (HELPERS.md).
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

#[path = "support/js_server.rs"]
#[allow(dead_code, reason = "shared helpers, not all used here")]
mod js_server;
use js_server::{api, free_port, natsd, start_js, ServerSpec};
use testkit::TestServer;

/// A natsd logging to a file (`-l`), so the test can read every line it wrote.
struct Logged {
    server: TestServer,
    port: u16,
    log: PathBuf,
}

impl Logged {
    /// Starts natsd with `conf` (`@PORT@` becomes its port) logging to `log`; ready once this
    /// run's `Server is ready` is in the file (testkit follows it).
    fn start(conf: &str, log: &Path) -> Logged {
        let server = TestServer::start_bin(natsd(), ServerSpec::new().config(conf).log_file(log));
        Logged {
            port: server.port,
            server,
            log: log.to_path_buf(),
        }
    }

    async fn connect(&self) -> async_nats::Client {
        async_nats::connect(format!("127.0.0.1:{}", self.port))
            .await
            .unwrap()
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(mut self) {
        self.server.kill();
    }

    /// A clean stop (SIGTERM), waiting for the exit.
    fn stop(&mut self) {
        self.server.stop();
    }
}

/// Every line in nats-server's shape (`[pid] date time [LVL] text`), with no terminal escapes.
fn assert_nats_log_lines(text: &str) {
    assert!(!text.contains('\x1b'), "ANSI escape in a log file: {text}");
    for line in text.lines() {
        let ok = line.starts_with('[')
            && line.find("] ").is_some_and(|i| {
                line[1..i].bytes().all(|b| b.is_ascii_digit())
                    && line[i + 2..].len() > 27
                    && line.as_bytes()[i + 6] == b'/'
                    && [
                        " [INF] ", " [WRN] ", " [ERR] ", " [DBG] ", " [TRC] ", " [FTL] ",
                    ]
                    .contains(&&line[i + 28..i + 35])
            });
        assert!(ok, "not a nats-server log line: {line:?}");
    }
}

/// A publish through the raw API (so the test sees nats-server's JSON either way).
async fn publish(nc: &async_nats::Client, subject: &str, payload: Vec<u8>) -> Value {
    let msg = nc
        .request(subject.to_string(), payload.into())
        .await
        .unwrap();
    serde_json::from_slice(&msg.payload).unwrap()
}

/// The same with a `Nats-Msg-Id`.
async fn publish_id(nc: &async_nats::Client, subject: &str, id: &str, payload: Vec<u8>) -> Value {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    let msg = nc
        .request_with_headers(subject.to_string(), headers, payload.into())
        .await
        .unwrap();
    serde_json::from_slice(&msg.payload).unwrap()
}

/// A second server on the same store directory refuses to start with an `[FTL]` line and a
/// non-zero exit; once the holder is killed with -9 the lock is gone and a server starts.
#[test]
fn one_store_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = start_js(dir.path());
    let second = Command::new(natsd())
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-js",
            "-sd",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "second server started: {log}");
    let ftl = log
        .lines()
        .find(|l| l.contains("[FTL]"))
        .unwrap_or_else(|| panic!("no [FTL] line: {log}"));
    assert!(
        ftl.contains("is in use by another server")
            && ftl.contains(&format!("(pid {})", first.pid())),
        "{ftl}"
    );
    assert!(!log.contains("Server is ready"), "{log}");

    // kill -9: the kernel releases the lock with the process.
    first.kill(); // SIGKILL
    let third = start_js(dir.path());
    drop(third);
}

/// Unmounts the test's tmpfs however the test ends.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A real full disk: a 4 MiB tmpfs as the store. Publishing until ENOSPC gives the
/// publisher nats-server's store-failed error naming the cause, stream info never counts
/// more than was acknowledged, the stream takes publishes again by itself once space is
/// freed (no restart), each way is logged in nats-server's format, and after a kill -9
/// every acknowledged message is there. Skipped, with a message, where mounts are not
/// allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_on_a_real_tmpfs() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("store");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED full_disk_on_a_real_tmpfs: cannot mount a tmpfs here (needs root and mount rights)");
        return;
    }
    let _mount = Mount(mnt.clone());
    // Room for the stream, then a filler the test deletes to "free space".
    std::fs::write(mnt.join("filler"), vec![7u8; 1 << 20]).unwrap();
    let conf = format!(
        "listen: 127.0.0.1:@PORT@\njetstream {{ store_dir: \"{}\", max_file_store: 1G }}\n",
        mnt.display()
    );
    let log = dir.path().join("natsd.log");
    let server = Logged::start(&conf, &log);
    let nc = server.connect().await;
    let created = api(
        &nc,
        "$JS.API.STREAM.CREATE.FULL",
        json!({"name": "FULL", "subjects": ["full.>"], "storage": "file"}),
    )
    .await;
    assert!(created["error"].is_null(), "{created}");

    let payload = vec![b'p'; 4096];
    let mut acked = Vec::new();
    let mut failure = None;
    let mut failed_id = String::new();
    for n in 0..2000 {
        failed_id = format!("id-{n}");
        let reply = publish_id(&nc, "full.x", &failed_id, payload.clone()).await;
        match reply["seq"].as_u64() {
            Some(seq) if reply["error"].is_null() => acked.push(seq),
            _ => {
                failure = Some(reply);
                break;
            }
        }
    }
    let failure = failure.expect("the disk never filled up");
    assert_eq!(failure["error"]["code"], 503, "{failure}");
    assert_eq!(failure["error"]["err_code"], 10077, "{failure}");
    let text = failure["error"]["description"].as_str().unwrap();
    assert!(text.contains("no space left on device"), "{failure}");
    assert!(acked.len() > 10, "only {} acked", acked.len());
    eprintln!(
        "full disk after {} acknowledged 4 KiB messages",
        acked.len()
    );

    // Stream info never counts what was not acknowledged, also while refusing.
    let refused = publish(&nc, "full.x", payload.clone()).await;
    assert_eq!(refused["error"]["err_code"], 10077, "{refused}");
    let info = api(&nc, "$JS.API.STREAM.INFO.FULL", Value::Null).await;
    assert_eq!(
        info["state"]["messages"].as_u64(),
        Some(acked.len() as u64),
        "{info}"
    );
    assert_eq!(
        info["state"]["last_seq"].as_u64(),
        acked.last().copied(),
        "{info}"
    );

    // Free space: the stream takes publishes again by itself.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    // The retry of the refused publish (same Msg-Id) is stored, not taken for a duplicate.
    let reply = testkit::fetch_until_async(
        Duration::from_secs(10),
        async || publish_id(&nc, "full.x", &failed_id, b"after".to_vec()).await,
        |reply| reply["seq"].is_u64() && reply["error"].is_null(),
    )
    .await
    .unwrap_or_else(|reply| panic!("never resumed: {reply}"));
    assert!(reply["duplicate"].is_null(), "{reply}");
    let resumed = reply["seq"].as_u64().unwrap();
    assert_eq!(
        resumed,
        acked.last().unwrap() + 1,
        "a sequence was skipped or reused"
    );
    acked.push(resumed);
    let text = server.text();
    assert!(
        text.contains("write failed, refusing writes until one succeeds: "),
        "{text}"
    );
    assert!(text.contains("no space left on device"), "{text}");
    assert!(text.contains("is writable again after"), "{text}");
    // One line each way, however many publishes were refused in between.
    assert_eq!(
        text.matches("write failed, refusing writes").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("is writable again").count(), 1, "{text}");
    assert_nats_log_lines(&text);

    // kill -9, restart: every acknowledged message is there, once.
    drop(nc);
    server.kill9();
    let server = Logged::start(&conf, &log);
    let nc = server.connect().await;
    let info = api(&nc, "$JS.API.STREAM.INFO.FULL", Value::Null).await;
    assert_eq!(
        info["state"]["messages"].as_u64(),
        Some(acked.len() as u64),
        "{info}"
    );
    for seq in [acked[0], acked[acked.len() / 2], resumed] {
        let got = api(&nc, "$JS.API.STREAM.MSG.GET.FULL", json!({"seq": seq})).await;
        assert_eq!(got["message"]["seq"].as_u64(), Some(seq), "{got}");
    }
}

/// Damage in the middle of a stream's block file: the restarted server keeps every intact
/// message, reports the lost ones in stream info (`state.lost`, nats-server's field) and in
/// one log line in nats-server's format, and takes new messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_block_is_reported_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let conf = format!(
        "listen: 127.0.0.1:@PORT@\njetstream {{ store_dir: \"{}\" }}\n",
        store.display()
    );
    let log = dir.path().join("natsd.log");
    let server = Logged::start(&conf, &log);
    let nc = server.connect().await;
    let created = api(
        &nc,
        "$JS.API.STREAM.CREATE.DMG",
        json!({"name": "DMG", "subjects": ["dmg"], "storage": "file"}),
    )
    .await;
    assert!(created["error"].is_null(), "{created}");
    for i in 0..100 {
        let reply = publish(
            &nc,
            "dmg",
            format!("message {i:03} {}", "z".repeat(50)).into_bytes(),
        )
        .await;
        assert!(reply["error"].is_null(), "{reply}");
    }
    drop(nc);
    server.kill9();

    let block = find_blocks(&store).pop().expect("a block file");
    let mut data = std::fs::read(&block).unwrap();
    let mid = data.len() / 2;
    data[mid..mid + 40].fill(0);
    std::fs::write(&block, &data).unwrap();

    let server = Logged::start(&conf, &log);
    let nc = server.connect().await;
    let info = api(&nc, "$JS.API.STREAM.INFO.DMG", Value::Null).await;
    let lost: Vec<u64> = info["state"]["lost"]["msgs"]
        .as_array()
        .unwrap_or_else(|| panic!("no state.lost: {info}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(!lost.is_empty() && lost.len() <= 2, "{info}");
    assert!(
        info["state"]["lost"]["bytes"].as_u64().unwrap() > 0,
        "{info}"
    );
    assert_eq!(
        info["state"]["messages"].as_u64(),
        Some(100 - lost.len() as u64),
        "{info}"
    );
    for seq in 1..=100u64 {
        let got = api(&nc, "$JS.API.STREAM.MSG.GET.DMG", json!({"seq": seq})).await;
        assert_eq!(
            got["message"].is_null(),
            lost.contains(&seq),
            "seq {seq}: {got}"
        );
    }
    let reply = publish(&nc, "dmg", b"after".to_vec()).await;
    assert_eq!(reply["seq"].as_u64(), Some(101), "{reply}");
    let text = server.text();
    assert!(text.contains("recovered from damaged files"), "{text}");
    assert_nats_log_lines(&text);
}

fn find_blocks(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "blk") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A damaged consumer state file: the restarted server logs it, keeps the consumer, and
/// restarts it from its configuration, so messages are delivered again rather than skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_consumer_state_redelivers_instead_of_skipping() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let conf = format!(
        "listen: 127.0.0.1:@PORT@\njetstream {{ store_dir: \"{}\" }}\n",
        store.display()
    );
    let log = dir.path().join("natsd.log");
    let server = Logged::start(&conf, &log);
    let nc = server.connect().await;
    let created = api(
        &nc,
        "$JS.API.STREAM.CREATE.CS",
        json!({"name": "CS", "subjects": ["cs"], "storage": "file"}),
    )
    .await;
    assert!(created["error"].is_null(), "{created}");
    let consumer = api(
        &nc,
        "$JS.API.CONSUMER.DURABLE.CREATE.CS.D",
        json!({"stream_name": "CS", "config": {"durable_name": "D", "ack_policy": "explicit"}}),
    )
    .await;
    assert!(consumer["error"].is_null(), "{consumer}");
    for i in 0..10 {
        let reply = publish(&nc, "cs", format!("m{i}").into_bytes()).await;
        assert!(reply["error"].is_null(), "{reply}");
    }
    // Take and acknowledge five.
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish_with_reply(
        "$JS.API.CONSUMER.MSG.NEXT.CS.D",
        inbox,
        serde_json::to_vec(&json!({"batch": 5, "expires": 2_000_000_000u64}))
            .unwrap()
            .into(),
    )
    .await
    .unwrap();
    use futures::StreamExt;
    for _ in 0..5 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        let reply = m.reply.unwrap();
        nc.request(reply.to_string(), "+ACK".into()).await.ok();
    }
    let applied = testkit::fetch_until_async(
        Duration::from_secs(10),
        async || api(&nc, "$JS.API.CONSUMER.INFO.CS.D", Value::Null).await,
        |info| info["ack_floor"]["stream_seq"] == 5,
    )
    .await;
    if let Err(info) = applied {
        panic!("acks not applied: {info}");
    }
    drop(nc);
    // A clean stop, so the state file holds the acknowledgements.
    let mut server = server;
    server.stop();
    drop(server);

    let state = find_files(&store, "D")
        .into_iter()
        .find(|p| p.parent().is_some_and(|d| d.ends_with("obs")))
        .expect("consumer state file");
    let mut data = std::fs::read(&state).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    std::fs::write(&state, &data).unwrap();

    let server = Logged::start(&conf, &log);
    let nc = server.connect().await;
    let info = api(&nc, "$JS.API.CONSUMER.INFO.CS.D", Value::Null).await;
    assert!(info["error"].is_null(), "consumer lost: {info}");
    assert_eq!(info["num_pending"], 10, "{info}");
    let text = server.text();
    assert!(
        text.contains("state unreadable, restarting it from its configuration"),
        "{text}"
    );
    assert_nats_log_lines(&text);
}

fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}
