//! Flow control between a fast publisher and slower receivers (issue 11), through the
//! official clients: async-nats publishes, nats-py subscribes (a Python loop is the slow
//! reader of the ordinary "Go/Rust producer, Python worker" pattern).
//!
//! nats-server's contract, which natsd keeps: a receiver that still drains its socket loses
//! nothing (its publishers are held back); one that stops draining is cut off as a slow
//! consumer; `no_fast_producer_stall: true` drops instead of holding back. natsd goes further
//! on one point: it stops holding publishers back for a receiver whose socket has taken
//! nothing for a second, so live receivers beside a stuck one keep their speed.
//!
//! Where both servers should agree the scenario runs against both (the reference must be
//! installed: a missing nats-server or nats-py fails the test).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{payload, server_under_test_bin, RawClient, ServerSpec, TestServer};

/// Messages per scenario: 10 × `max_pending` of 1 KiB messages, enough that a receiver
/// slower than its publisher must either hold the publisher back or lose messages.
const N: usize = 20_000;
const PAYLOAD: usize = 1024;
/// Small buffers keep the scenarios short: the stall mark is 1.5 MiB.
const BASE_CONFIG: &str = "max_pending: 2MB\n";

/// Both binaries, the one under test first. The reference is missing only under
/// `NATSD_SKIP_REFERENCE=1`; otherwise its absence fails the test (testkit): a comparison
/// that silently compares nothing would pass for the wrong reason.
fn both_servers() -> Vec<String> {
    testkit::natsd_and_reference()
        .into_iter()
        .map(|bin| bin.display().to_string())
        .collect()
}

/// A Python interpreter with nats-py: the workspace's `.venv` first, then `python3`.
fn python() -> PathBuf {
    testkit::bins::find_python_with_nats()
        .expect("no python with nats-py (scripts/test.sh installs it into .venv)")
}

/// A nats-py subscriber. `every`/`pause_ms`: after each `every` messages the callback blocks
/// the event loop for `pause_ms`, so the socket is read at that pace (0 = full speed).
/// Ends after `count` messages, after `idle_s` without one, or when the server closes it.
const PY_SUBSCRIBER: &str = r#"
import asyncio, sys, time, nats
url, user, password, subject = sys.argv[1:5]
count, every, pause_ms, idle_s = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
async def main():
    got = 0
    last = time.monotonic()
    closed = asyncio.Event()
    async def on_disconnect():
        closed.set()
    async def on_error(e):
        pass
    kwargs = dict(allow_reconnect=False, max_reconnect_attempts=0, disconnected_cb=on_disconnect,
                  error_cb=on_error)
    if user:
        kwargs.update(user=user, password=password)
    nc = await nats.connect(url, **kwargs)
    done = asyncio.Event()
    async def cb(msg):
        nonlocal got, last
        got += 1
        last = time.monotonic()
        if every and got % every == 0:
            time.sleep(pause_ms / 1000.0)
        if got >= count:
            done.set()
    # Client-side limits out of the way: only the server may drop.
    await nc.subscribe(subject, cb=cb, pending_bytes_limit=1 << 30, pending_msgs_limit=1 << 22)
    await nc.flush()
    print("READY", flush=True)
    while not done.is_set() and not closed.is_set():
        if time.monotonic() - last > idle_s:
            break
        await asyncio.sleep(0.05)
    print("GOT", got, flush=True)
    print("DISCONNECTED" if closed.is_set() else "CONNECTED", flush=True)
    if not closed.is_set():
        await nc.close()
asyncio.run(main())
"#;

/// How a slow subscriber reads.
#[derive(Clone, Copy)]
struct Pace {
    every: usize,
    pause_ms: f64,
}

const FULL_SPEED: Pace = Pace {
    every: 0,
    pause_ms: 0.0,
};

struct PySubscriber {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

struct PyOutcome {
    received: usize,
    disconnected: bool,
}

impl PySubscriber {
    /// Starts the subscriber and waits until its subscription is live on the server.
    async fn start(
        url: &str,
        user: Option<(&str, &str)>,
        subject: &str,
        pace: Pace,
        expect: usize,
    ) -> Self {
        let (u, p) = user.unwrap_or(("", ""));
        let mut child = tokio::process::Command::new(python())
            .args([
                "-c",
                PY_SUBSCRIBER,
                url,
                u,
                p,
                subject,
                &expect.to_string(),
                &pace.every.to_string(),
                &pace.pause_ms.to_string(),
                "3",
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the nats-py subscriber");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("nats-py subscriber did not get ready")
            .expect("read nats-py output");
        assert_eq!(ready.as_deref(), Some("READY"));
        PySubscriber { child, lines }
    }

    async fn finish(mut self) -> PyOutcome {
        let mut received = None;
        let mut disconnected = None;
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(120), self.lines.next_line()).await
        {
            if let Some(n) = line.strip_prefix("GOT ") {
                received = n.parse().ok();
            } else if line == "DISCONNECTED" {
                disconnected = Some(true);
            } else if line == "CONNECTED" {
                disconnected = Some(false);
            }
        }
        let _ = self.child.wait().await;
        PyOutcome {
            received: received.expect("nats-py subscriber reported no count"),
            disconnected: disconnected.expect("nats-py subscriber reported no state"),
        }
    }
}

fn start(bin: &str, config: &str) -> TestServer {
    TestServer::start_bin(bin, ServerSpec::new().config(config).monitor())
}

async fn connect(server: &TestServer, user: Option<(&str, &str)>) -> async_nats::Client {
    let mut options = async_nats::ConnectOptions::new();
    if let Some((u, p)) = user {
        options = options.user_and_password(u.into(), p.into());
    }
    options.connect(server.url()).await.unwrap()
}

/// Publishes `count` messages as fast as async-nats lets it, then waits until the server has
/// processed every one (a message to itself comes back only after all of them).
async fn publish_flood(client: &async_nats::Client, subject: &str, count: usize) -> Duration {
    let body = bytes::Bytes::from(payload(PAYLOAD));
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    let started = Instant::now();
    for _ in 0..count {
        client
            .publish(subject.to_string(), body.clone())
            .await
            .unwrap();
    }
    client.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), echo.next())
        .await
        .expect("the publisher's messages were not all processed within 2 minutes")
        .expect("echo subscription closed");
    started.elapsed()
}

/// Publishes `count` messages over a raw socket in 256 KiB writes (faster than any client
/// library, so the publisher is always the faster side), then waits for the PONG that says
/// the server has processed them all.
async fn blast(server: &TestServer, subject: &str, count: usize) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
        .await
        .unwrap();
    let mut frame = format!("PUB {subject} {PAYLOAD}\r\n").into_bytes();
    frame.extend_from_slice(&payload(PAYLOAD));
    frame.extend_from_slice(b"\r\n");
    let per_batch = (256 * 1024 / frame.len()).max(1);
    let batch = frame.repeat(per_batch);
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let n = per_batch.min(count - sent);
        stream.write_all(&batch[..n * frame.len()]).await.unwrap();
        sent += n;
    }
    stream.write_all(b"PING\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !seen.windows(6).any(|w| w == b"PONG\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(120), stream.read(&mut buf))
            .await
            .expect("no PONG within 2 minutes")
            .unwrap();
        assert!(n > 0, "the server closed the publisher");
        seen.extend_from_slice(&buf[..n]);
    }
    started.elapsed()
}

async fn varz(server: &TestServer) -> serde_json::Value {
    server.http_json("/varz").await
}

async fn closed_reasons(server: &TestServer) -> Vec<String> {
    let connz = server.http_json("/connz?state=closed").await;
    connz["connections"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| c["reason"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A raw subscriber that never reads (its kernel buffer is tiny, so it backs up at once).
async fn stuck_subscriber(server: &TestServer, subject: &str) -> RawClient {
    let mut stuck = RawClient::connect_small_rcvbuf(&server.addr(), 4096).await;
    stuck
        .handshake(r#"{"verbose":false,"pedantic":false}"#)
        .await;
    stuck.send(format!("SUB {subject} 1\r\n")).await;
    stuck.ping_pong().await;
    stuck
}

/// Waits until the monitor shows a closed connection with `reason` (the close is
/// asynchronous to the publisher's last message).
async fn wait_closed_with(server: &TestServer, reason: &str) -> Vec<String> {
    let closed = async || closed_reasons(server).await;
    let has_reason = |reasons: &Vec<String>| reasons.iter().any(|r| r == reason);
    let (Ok(reasons) | Err(reasons)) =
        testkit::fetch_until_async(Duration::from_secs(30), closed, has_reason).await;
    reasons
}

/// A subscriber that reads slower than its publisher but keeps reading gets every message,
/// on both servers: the publisher is held back, nobody is cut off. (nats-server stalls a
/// publisher at most 10 ms per read, so it keeps only subscribers that are not much slower
/// than their publisher: nats-py at its own speed with the default 64 MiB buffers is well
/// inside; natsd has no such floor, see the next test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_draining_subscriber_gets_every_message() {
    // 150 MiB: more than twice the default max_pending.
    let count = 150_000;
    for bin in both_servers() {
        let server = start(&bin, "");
        let sub = PySubscriber::start(&server.url(), None, "flood", FULL_SPEED, count).await;
        blast(&server, "flood", count).await;
        let outcome = sub.finish().await;
        assert_eq!(
            outcome.received, count,
            "{bin}: the slow subscriber lost messages"
        );
        assert!(
            !outcome.disconnected,
            "{bin}: the slow subscriber was cut off"
        );
        let varz = varz(&server).await;
        assert_eq!(varz["slow_consumers"], 0, "{bin}");
        assert!(
            varz["stalled_clients"].as_u64().unwrap_or(0) > 0,
            "{bin}: the publisher was never held back: {}",
            varz["stalled_clients"]
        );
    }
}

/// natsd holds a publisher back for as long as a receiver keeps draining, however slowly:
/// a subscriber ten times slower than the one above still gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn very_slow_subscriber_gets_every_message_on_natsd() {
    let server = start(&server_under_test_bin(), BASE_CONFIG);
    // About 1,000 messages/s, pausing 20 ms at a time.
    let pace = Pace {
        every: 20,
        pause_ms: 20.0,
    };
    let count = 5_000;
    let sub = PySubscriber::start(&server.url(), None, "flood", pace, count).await;
    let publisher = connect(&server, None).await;
    let took = publish_flood(&publisher, "flood", count).await;
    let outcome = sub.finish().await;
    assert_eq!(
        outcome.received, count,
        "lost messages (publisher took {took:?})"
    );
    assert!(!outcome.disconnected);
    assert_eq!(varz(&server).await["slow_consumers"], 0);
}

/// A reader draining about 1 MB/s behind the kernel's multi-megabyte socket buffers: the
/// kernel reports the socket writable again only after megabytes have gone, seconds apart,
/// but natsd sees the reader's progress and keeps holding the publisher back instead of
/// taking the reader for stopped and cutting it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_slow_reader_behind_large_socket_buffers_is_not_taken_for_stopped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(&server_under_test_bin(), BASE_CONFIG);
    let count = 8_000;
    let frame_len = format!("MSG flood 1 {PAYLOAD}\r\n").len() + PAYLOAD + 2;
    let mut reader = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    reader
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB flood 1\r\nPING\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !seen.windows(6).any(|w| w == b"PONG\r\n") {
        let n = reader.read(&mut buf).await.unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    let drain = tokio::spawn(async move {
        let mut bytes = 0usize;
        while bytes < count * frame_len {
            // 64 KiB per 64 ms: about 1 MB/s, steadily.
            match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => bytes += n,
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(64)).await; // the reader's pace
        }
        bytes
    });
    blast(&server, "flood", count).await;
    let bytes = drain.await.unwrap();
    assert_eq!(bytes / frame_len, count, "the steady reader lost messages");
    let varz = varz(&server).await;
    assert_eq!(varz["slow_consumers"], 0);
    assert!(varz["stalled_clients"].as_u64().unwrap_or(0) > 0);
}

/// A subscriber that stops reading is cut off once its pending bytes pass max_pending, with
/// nats-server's close reason, log line and counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_subscriber_is_cut_off_at_max_pending() {
    for bin in both_servers() {
        let server = start(&bin, BASE_CONFIG);
        let _stuck = stuck_subscriber(&server, "flood").await;
        let publisher = connect(&server, None).await;
        // The kernel takes a few MiB into the stuck socket's send buffer first.
        publish_flood(&publisher, "flood", N).await;
        let reasons = wait_closed_with(&server, "Slow Consumer (Pending Bytes)").await;
        assert!(
            reasons.iter().any(|r| r == "Slow Consumer (Pending Bytes)"),
            "{bin}: {reasons:?}"
        );
        let varz = varz(&server).await;
        assert!(varz["slow_consumers"].as_u64().unwrap_or(0) >= 1, "{bin}");
        assert!(
            varz["slow_consumer_stats"]["clients"].as_u64().unwrap_or(0) >= 1,
            "{bin}"
        );
        assert!(
            server.wait_for_log(
                "Slow Consumer Detected: MaxPending of 2097152 Exceeded",
                Duration::from_secs(5)
            ),
            "{bin}: {}",
            server.log()
        );
    }
}

/// A subscriber that stops reading while its publisher stays within max_pending is cut off
/// once its socket has taken nothing for write_deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_subscriber_is_cut_off_at_the_write_deadline() {
    for bin in both_servers() {
        let server = start(&bin, "max_pending: 32MB\nwrite_deadline: \"1s\"\n");
        let _stuck = stuck_subscriber(&server, "flood").await;
        let publisher = connect(&server, None).await;
        // 10 MiB: below the stall mark, above what the kernel takes into the stuck socket.
        publish_flood(&publisher, "flood", 10 * 1024).await;
        let reasons = wait_closed_with(&server, "Slow Consumer (Write Deadline)").await;
        assert!(
            reasons
                .iter()
                .any(|r| r == "Slow Consumer (Write Deadline)"),
            "{bin}: {reasons:?}"
        );
        assert!(varz(&server).await["slow_consumers"].as_u64().unwrap_or(0) >= 1);
        assert!(
            server.wait_for_log(
                "Slow Consumer Detected: WriteDeadline of 1s exceeded",
                Duration::from_secs(5)
            ),
            "{bin}: {}",
            server.log()
        );
    }
}

/// A live subscriber on the same subject as a stuck one gets every message, on both servers;
/// on natsd the publisher is held back for the stuck one at most about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_subscriber_beside_a_stuck_one_gets_every_message() {
    for bin in both_servers() {
        let server = start(&bin, BASE_CONFIG);
        let _stuck = stuck_subscriber(&server, "flood").await;
        let live = PySubscriber::start(&server.url(), None, "flood", FULL_SPEED, N).await;
        let publisher = connect(&server, None).await;
        let took = publish_flood(&publisher, "flood", N).await;
        let outcome = live.finish().await;
        assert_eq!(
            outcome.received, N,
            "{bin}: the live subscriber lost messages"
        );
        assert!(!outcome.disconnected, "{bin}");
        let reasons = wait_closed_with(&server, "Slow Consumer (Pending Bytes)").await;
        assert!(
            reasons.iter().any(|r| r.starts_with("Slow Consumer")),
            "{bin}: the stuck subscriber was not cut off: {reasons:?}"
        );
        eprintln!("{bin}: publisher took {took:?} beside a stuck subscriber");
    }
}

/// `no_fast_producer_stall: true`: nobody is held back; a receiver that is behind loses the
/// messages published meanwhile (and is not disconnected for it), as on nats-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fast_producer_stall_drops_instead_of_holding_back() {
    for bin in both_servers() {
        let server = start(
            &bin,
            &format!("{BASE_CONFIG}no_fast_producer_stall: true\n"),
        );
        let pace = Pace {
            every: 20,
            pause_ms: 2.0,
        };
        let sub = PySubscriber::start(&server.url(), None, "flood", pace, N).await;
        blast(&server, "flood", N).await;
        let outcome = sub.finish().await;
        assert!(
            outcome.received < N,
            "{bin}: every message arrived, so the publisher was held back"
        );
        assert!(outcome.received > 0, "{bin}");
        assert!(!outcome.disconnected, "{bin}: dropping is not a disconnect");
        let varz = varz(&server).await;
        assert_eq!(varz["stalled_clients"], 0, "{bin}");
        assert_eq!(varz["slow_consumers"], 0, "{bin}");
    }
}

const ACCOUNTS_CONFIG: &str = r#"
max_pending: 2MB
accounts {
  A { users = [ { user: a, password: a }, { user: a2, password: a2 } ] }
  B { users = [ { user: b, password: b } ] }
}
"#;

/// Rate of a publisher → subscriber pair over `count` 1 KiB messages.
async fn pair_rate(server: &TestServer, user: (&str, &str), subject: &str, count: usize) -> f64 {
    let sub_client = connect(server, Some(user)).await;
    let mut sub = sub_client.subscribe(subject.to_string()).await.unwrap();
    crate::common::barrier(&sub_client).await;
    let publisher = connect(server, Some(user)).await;
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < count {
            match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        got
    });
    publish_flood(&publisher, subject, count).await;
    let got = reader.await.unwrap();
    assert_eq!(got, count, "the measured pair lost messages");
    count as f64 / started.elapsed().as_secs_f64()
}

/// Only the publishers that feed a slow receiver are held back: a publisher in another
/// account, and one in the same account on another subject, keep their speed while a
/// held-back publisher waits (the wait is asynchronous and blocks no runtime thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_that_do_not_feed_the_slow_receiver_keep_their_speed() {
    let server = start(&server_under_test_bin(), ACCOUNTS_CONFIG);
    let count = 30_000;
    let alone_b = pair_rate(&server, ("b", "b"), "other", count).await;
    let alone_a2 = pair_rate(&server, ("a2", "a2"), "other", count).await;

    // Account A: a slow subscriber and a publisher that keeps feeding it for as long as the
    // test runs.
    let pace = Pace {
        every: 20,
        pause_ms: 20.0,
    };
    let slow =
        PySubscriber::start(&server.url(), Some(("a", "a")), "flood", pace, usize::MAX).await;
    let held = connect(&server, Some(("a", "a"))).await;
    let held_task = tokio::spawn(async move {
        let body = bytes::Bytes::from(payload(PAYLOAD));
        loop {
            if held.publish("flood", body.clone()).await.is_err() {
                return;
            }
        }
    });
    // Wait until the publisher is being held back.
    testkit::eventually_async(
        Duration::from_secs(20),
        "the flood publisher to be held back",
        async || varz(&server).await["stalled_clients"].as_u64().unwrap_or(0) != 0,
    )
    .await;
    let stalls_before = varz(&server).await["stalled_clients"].as_u64().unwrap_or(0);
    let busy_b = pair_rate(&server, ("b", "b"), "other", count).await;
    let busy_a2 = pair_rate(&server, ("a2", "a2"), "other", count).await;
    let varz_after = varz(&server).await;
    let stalls_after = varz_after["stalled_clients"].as_u64().unwrap_or(0);
    assert!(
        stalls_after > stalls_before,
        "the flood publisher must still be held back while the others are measured"
    );
    assert_eq!(
        varz_after["slow_consumers"], 0,
        "the slow subscriber must not be cut off"
    );
    eprintln!(
        "other account: {alone_b:.0} → {busy_b:.0} msgs/s; same account, other subject: \
         {alone_a2:.0} → {busy_a2:.0} msgs/s"
    );
    // Generous bounds for a noisy 2-core machine; a hold-back that blocked a runtime thread
    // would stop them (both threads are taken by held publishers and the slow receiver).
    assert!(
        busy_b > alone_b / 3.0,
        "other account slowed: {alone_b:.0} → {busy_b:.0}"
    );
    assert!(
        busy_a2 > alone_a2 / 3.0,
        "same account, other subject slowed: {alone_a2:.0} → {busy_a2:.0}"
    );
    held_task.abort();
    drop(slow);
}
