//! JetStream scenarios against [`ServerSetup::JetStream`] (`-js`, the store in the server's own directory), spoken in
//! raw protocol like the core ones:
//!
//! * `js_pub`: sequential `PUB` with a reply inbox to a file stream, waiting for each PubAck
//!   (acks/s, p50/p99).
//! * `js_pub_256`: the same with 256 publishes in flight; the replacements for the acks one
//!   read brought go out in one write, as the official clients buffer them.
//! * `js_pub_async_nats`, `js_pub_256_async_nats`: sequential and 256 in flight through the
//!   official async-nats client's JetStream API, as a check that the raw client above behaves
//!   like a real one.
//! * `js_consume`: drain a pre-filled stream through a durable pull consumer, batches of 100,
//!   each message acked with `+ACK` (msgs/s).
//! * `kv_put_get`: KV bucket put then direct get of the same key, sequential (p50s, ops/s).
//! * `js_recovery`: store 1,000,000 messages (256 acks in flight; `fill` is that rate), stop
//!   the server (SIGTERM), start it again on the same store and time until
//!   `$JS.API.STREAM.INFO` reports every message (s per million). Some nats-server rounds
//!   fail with a read timeout (not investigated; seen since the fill got faster); the median
//!   is of the rounds that finished.
//!
//! An API that a server does not answer (natsd before consumers land) fails the scenario for
//! that server with a readable reason; the other scenarios still run.

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::proto::{ClientConn, Credentials, Frame, ProtoError, IO_TIMEOUT};
use crate::stats::percentile_sorted;

use super::{Anomalies, Metric, RunContext, RunOutput, Scenario, ScenarioError, ServerSetup};

/// How long an API request may stay unanswered before the API counts as missing.
const API_TIMEOUT: Duration = Duration::from_secs(3);

/// Messages `js_recovery` stores before the restart.
pub const RECOVERY_MSGS: u64 = 1_000_000;

/// Payload of every stored message.
const PAYLOAD: &[u8] = b"0123456789abcdef";

/// The JetStream scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JetStreamScenario {
    /// Sequential publishes, each waiting for its ack.
    PubSequential,
    /// Publishes with this many acks outstanding.
    PubInFlight(usize),
    /// The same through async-nats.
    PubInFlightAsyncNats(usize),
    /// Pull-consumer drain of a filled stream.
    Consume,
    /// KV put then get.
    KvPutGet,
    /// Restart time with a filled store.
    Recovery,
}

impl JetStreamScenario {
    /// Every variant, in run order.
    pub const ALL: [JetStreamScenario; 7] = [
        JetStreamScenario::PubSequential,
        JetStreamScenario::PubInFlight(256),
        JetStreamScenario::PubInFlightAsyncNats(1),
        JetStreamScenario::PubInFlightAsyncNats(256),
        JetStreamScenario::Consume,
        JetStreamScenario::KvPutGet,
        JetStreamScenario::Recovery,
    ];
}

impl Scenario for JetStreamScenario {
    fn name(&self) -> String {
        match self {
            JetStreamScenario::PubSequential => "js_pub".into(),
            JetStreamScenario::PubInFlight(n) => format!("js_pub_{n}"),
            JetStreamScenario::PubInFlightAsyncNats(1) => "js_pub_async_nats".into(),
            JetStreamScenario::PubInFlightAsyncNats(n) => format!("js_pub_{n}_async_nats"),
            JetStreamScenario::Consume => "js_consume".into(),
            JetStreamScenario::KvPutGet => "kv_put_get".into(),
            JetStreamScenario::Recovery => "js_recovery".into(),
        }
    }

    fn setup(&self) -> ServerSetup {
        ServerSetup::JetStream
    }

    fn fresh_server(&self) -> bool {
        matches!(self, JetStreamScenario::Recovery)
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        match self {
            JetStreamScenario::PubSequential => pub_sequential(ctx),
            JetStreamScenario::PubInFlight(n) => pub_in_flight(ctx, *n),
            JetStreamScenario::PubInFlightAsyncNats(n) => pub_in_flight_async_nats(ctx, *n),
            JetStreamScenario::Consume => consume(ctx),
            JetStreamScenario::KvPutGet => kv_put_get(ctx),
            JetStreamScenario::Recovery => recovery(ctx),
        }
    }
}

/// A connection with a reply inbox, for requests and acked publishes.
struct JsClient {
    conn: ClientConn,
    inbox: String,
    /// Scratch buffer for batched writes.
    out: Vec<u8>,
}

/// A message on the inbox, copied out of the read buffer.
struct Reply {
    /// Header block (`HMSG`), empty for `MSG`.
    headers: Vec<u8>,
    payload: Vec<u8>,
    /// Reply subject (the ack subject of a consumer delivery).
    reply: Option<Vec<u8>>,
}

/// Sid of the inbox subscription.
const INBOX_SID: &[u8] = b"1";

impl JsClient {
    fn connect(ctx: &RunContext<'_>) -> Result<Self, ScenarioError> {
        let mut conn = ClientConn::connect(ctx.server.addr(), &Credentials::default(), 1 << 20)?;
        let inbox = format!("_INBOX.bench{}", ctx.run_id);
        conn.subscribe(&format!("{inbox}.*"), None, 1)?;
        Ok(Self {
            conn,
            inbox,
            out: Vec::with_capacity(1 << 16),
        })
    }

    fn push_pub(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) {
        let line = match reply {
            Some(r) => format!("PUB {subject} {r} {}\r\n", payload.len()),
            None => format!("PUB {subject} {}\r\n", payload.len()),
        };
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(payload);
        self.out.extend_from_slice(b"\r\n");
    }

    fn send(&mut self) -> Result<(), ScenarioError> {
        self.conn.writer.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    /// The next message on the inbox. Server PINGs are answered.
    fn next_reply(&mut self) -> Result<Reply, ScenarioError> {
        loop {
            let got = self.conn.reader.read_frame(|frame| match frame {
                Frame::Msg(m) if m.sid == INBOX_SID => Ok(Some(Reply {
                    headers: m.headers.to_vec(),
                    payload: m.payload.to_vec(),
                    reply: m.reply.map(<[u8]>::to_vec),
                })),
                Frame::Ping => Ok(None),
                Frame::Err(text) => Err(String::from_utf8_lossy(text).into_owned()),
                _ => Err(String::new()),
            })?;
            match got {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => self.conn.writer.write_all(b"PONG\r\n")?,
                Err(text) if text.is_empty() => {}
                Err(text) => return Err(ProtoError::Refused(text).into()),
            }
        }
    }

    /// A JetStream API request with a short timeout: an API that does not answer is reported
    /// as not available instead of stalling the run.
    fn api(&mut self, subject: &str, body: &Value) -> Result<Value, ScenarioError> {
        let reply = format!("{}.api", self.inbox);
        self.push_pub(subject, Some(&reply), body.to_string().as_bytes());
        self.send()?;
        self.conn.writer.set_read_timeout(Some(API_TIMEOUT))?;
        let answer = self.next_reply();
        self.conn.writer.set_read_timeout(Some(IO_TIMEOUT))?;
        let payload = answer
            .map_err(|e| match e {
                ScenarioError::Proto(ProtoError::Io(io))
                    if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    let what = subject.split('.').take(4).collect::<Vec<_>>().join(".");
                    ScenarioError::Invalid(format!(
                        "{what} API not available (no reply within {} s)",
                        API_TIMEOUT.as_secs()
                    ))
                }
                other => other,
            })?
            .payload;
        let value: Value = serde_json::from_slice(&payload)
            .map_err(|e| ScenarioError::Invalid(format!("{subject}: bad JSON reply: {e}")))?;
        if let Some(err) = value.get("error") {
            return Err(ScenarioError::Invalid(format!("{subject}: {err}")));
        }
        Ok(value)
    }

    fn create_stream(&mut self, name: &str, subjects: &str) -> Result<(), ScenarioError> {
        self.api(
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &json!({"name": name, "subjects": [subjects], "storage": "file", "num_replicas": 1}),
        )?;
        Ok(())
    }

    fn delete_stream(&mut self, name: &str) -> Result<(), ScenarioError> {
        self.api(&format!("$JS.API.STREAM.DELETE.{name}"), &json!({}))?;
        Ok(())
    }

    /// Publishes `count` messages with at most `window` PubAcks outstanding; returns the
    /// acks that carried an error. Like the official clients (which buffer what is published
    /// while their last write is in progress), it takes every ack one read brought before it
    /// writes their replacements, in one write.
    fn publish_acked(
        &mut self,
        subject: &str,
        count: u64,
        window: u64,
    ) -> Result<u64, ScenarioError> {
        let reply = format!("{}.ack", self.inbox);
        let (mut sent, mut acked, mut failed) = (0u64, 0u64, 0u64);
        while acked < count {
            while sent < count && sent - acked < window {
                self.push_pub(subject, Some(&reply), PAYLOAD);
                sent += 1;
            }
            if !self.out.is_empty() {
                self.send()?;
            }
            loop {
                let payload = self.next_reply()?.payload;
                acked += 1;
                if memchr::memmem::find(&payload, b"\"error\"").is_some() {
                    failed += 1;
                }
                if acked >= count || self.conn.reader.buffered() == 0 {
                    break;
                }
            }
        }
        Ok(failed)
    }
}

fn stream_name(ctx: &RunContext<'_>) -> String {
    format!("BENCH{}", ctx.run_id)
}

fn failed_acks(failed: u64) -> Anomalies {
    let mut anomalies = Anomalies::default();
    if failed > 0 {
        anomalies
            .errors
            .push(format!("{failed} PubAcks carried an error"));
    }
    anomalies
}

fn pub_sequential(ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
    let mut client = JsClient::connect(ctx)?;
    let stream = stream_name(ctx);
    let subject = format!("js.{}.x", ctx.run_id);
    client.create_stream(&stream, &format!("js.{}.>", ctx.run_id))?;
    let count = ctx.settings.requests;
    let reply = format!("{}.ack", client.inbox);
    let mut samples = Vec::with_capacity(count as usize);
    let mut failed = 0;
    let started = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        client.push_pub(&subject, Some(&reply), PAYLOAD);
        client.send()?;
        let payload = client.next_reply()?.payload;
        samples.push(t.elapsed().as_nanos() as u64);
        if memchr::memmem::find(&payload, b"\"error\"").is_some() {
            failed += 1;
        }
    }
    let elapsed = started.elapsed();
    client.delete_stream(&stream)?;
    samples.sort_unstable();
    let micros = |p| percentile_sorted(&samples, p).map_or(f64::NAN, |ns| ns as f64 / 1e3);
    Ok(RunOutput {
        metrics: vec![
            Metric::higher("acks/s", "ack/s", count as f64 / elapsed.as_secs_f64()),
            Metric::lower("p50", "µs", micros(50.0)),
            Metric::lower("p99", "µs", micros(99.0)),
        ],
        anomalies: failed_acks(failed),
    })
}

fn pub_in_flight(ctx: &RunContext<'_>, window: usize) -> Result<RunOutput, ScenarioError> {
    let mut client = JsClient::connect(ctx)?;
    let stream = stream_name(ctx);
    client.create_stream(&stream, &format!("js.{}.>", ctx.run_id))?;
    let count = ctx.settings.requests * 20;
    let cpu_before = ctx.server.cpu_time()?;
    let started = Instant::now();
    let failed = client.publish_acked(&format!("js.{}.x", ctx.run_id), count, window as u64)?;
    let elapsed = started.elapsed();
    let cpu = ctx.server.cpu_time()?.saturating_sub(cpu_before);
    client.delete_stream(&stream)?;
    Ok(RunOutput {
        metrics: vec![
            Metric::higher("acks/s", "ack/s", count as f64 / elapsed.as_secs_f64()),
            Metric::lower("CPU/msg", "µs", cpu.as_secs_f64() * 1e6 / count as f64),
        ],
        anomalies: failed_acks(failed),
    })
}

fn pub_in_flight_async_nats(
    ctx: &RunContext<'_>,
    window: usize,
) -> Result<RunOutput, ScenarioError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Sequential publishes are slower by the round trip: fewer of them take as long.
    let count = if window == 1 {
        ctx.settings.requests
    } else {
        ctx.settings.requests * 20
    };
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        ScenarioError::Invalid(format!("async-nats {what}: {e}"))
    };
    let stream = stream_name(ctx);
    let subject = format!("js.{}.x", ctx.run_id);
    let (elapsed, cpu, failed) = runtime.block_on(async {
        let client = async_nats::connect(ctx.server.addr().to_string())
            .await
            .map_err(|e| invalid("connect", &e))?;
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("js.{}.>", ctx.run_id)],
            ..Default::default()
        })
        .await
        .map_err(|e| invalid("create stream", &e))?;
        let payload = bytes::Bytes::from_static(PAYLOAD);
        let mut in_flight = std::collections::VecDeque::with_capacity(window);
        let mut failed = 0u64;
        let cpu_before = ctx.server.cpu_time()?;
        let started = Instant::now();
        for _ in 0..count {
            if in_flight.len() >= window {
                if let Some(ack) = in_flight.pop_front() {
                    let ack: async_nats::jetstream::context::PublishAckFuture = ack;
                    failed += u64::from(ack.await.is_err());
                }
            }
            let ack = js
                .publish(subject.clone(), payload.clone())
                .await
                .map_err(|e| invalid("publish", &e))?;
            in_flight.push_back(ack);
        }
        for ack in in_flight {
            failed += u64::from(ack.await.is_err());
        }
        let elapsed = started.elapsed();
        let cpu = ctx.server.cpu_time()?.saturating_sub(cpu_before);
        js.delete_stream(&stream)
            .await
            .map_err(|e| invalid("delete stream", &e))?;
        Ok::<_, ScenarioError>((elapsed, cpu, failed))
    })?;
    Ok(RunOutput {
        metrics: vec![
            Metric::higher("acks/s", "ack/s", count as f64 / elapsed.as_secs_f64()),
            Metric::lower("CPU/msg", "µs", cpu.as_secs_f64() * 1e6 / count as f64),
        ],
        anomalies: failed_acks(failed),
    })
}

fn consume(ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
    const BATCH: u64 = 100;
    let mut client = JsClient::connect(ctx)?;
    let stream = stream_name(ctx);
    client.create_stream(&stream, &format!("js.{}.>", ctx.run_id))?;
    let count = ctx.settings.requests * 20;
    let failed = client.publish_acked(&format!("js.{}.x", ctx.run_id), count, 256)?;
    let consumer = "bench";
    let created = client.api(
        &format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{consumer}"),
        &json!({"stream_name": stream, "config": {
            "durable_name": consumer, "ack_policy": "explicit", "deliver_policy": "all"}}),
    );
    let created = match created {
        Err(e) => {
            let _ = client.delete_stream(&stream);
            return Err(ScenarioError::Invalid(format!("consumer API: {e}")));
        }
        Ok(v) => v,
    };
    let _ = created;
    let next = format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}");
    let reply = format!("{}.pull", client.inbox);
    let mut anomalies = failed_acks(failed);
    let cpu_before = ctx.server.cpu_time()?;
    let started = Instant::now();
    let mut received = 0u64;
    while received < count {
        let want = BATCH.min(count - received);
        client.push_pub(
            &next,
            Some(&reply),
            format!("{{\"batch\":{want}}}").as_bytes(),
        );
        client.send()?;
        let mut got = 0;
        while got < want {
            let Reply { headers, reply, .. } = client.next_reply()?;
            match reply {
                Some(ack) => {
                    let ack = String::from_utf8_lossy(&ack).into_owned();
                    client.push_pub(&ack, None, b"+ACK");
                    got += 1;
                }
                None => {
                    // A status (404/408) ends the pull early.
                    anomalies.errors.push(format!(
                        "pull ended early: {}",
                        String::from_utf8_lossy(&headers).trim()
                    ));
                    break;
                }
            }
        }
        received += got;
        client.send()?;
        if got < want {
            break;
        }
    }
    client.conn.flush()?;
    let elapsed = started.elapsed();
    let cpu = ctx.server.cpu_time()?.saturating_sub(cpu_before);
    if received < count {
        anomalies.lost += count - received;
    }
    client.delete_stream(&stream)?;
    Ok(RunOutput {
        metrics: vec![
            Metric::higher("msgs/s", "msg/s", received as f64 / elapsed.as_secs_f64()),
            Metric::lower(
                "CPU/msg",
                "µs",
                cpu.as_secs_f64() * 1e6 / received.max(1) as f64,
            ),
        ],
        anomalies,
    })
}

fn kv_put_get(ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
    let mut client = JsClient::connect(ctx)?;
    let bucket = format!("b{}", ctx.run_id);
    let stream = format!("KV_{bucket}");
    client.api(
        &format!("$JS.API.STREAM.CREATE.{stream}"),
        &json!({
            "name": stream, "subjects": [format!("$KV.{bucket}.>")], "storage": "file",
            "num_replicas": 1, "max_msgs_per_subject": 1, "discard": "new",
            "allow_rollup_hdrs": true, "deny_delete": true, "allow_direct": true,
            "max_age": 0, "duplicate_window": 120_000_000_000u64,
        }),
    )?;
    let count = ctx.settings.requests;
    let reply = format!("{}.kv", client.inbox);
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    let mut anomalies = Anomalies::default();
    let value = PAYLOAD;
    let started = Instant::now();
    for i in 0..count {
        let key = format!("k{i}");
        let t = Instant::now();
        client.push_pub(&format!("$KV.{bucket}.{key}"), Some(&reply), value);
        client.send()?;
        let ack = client.next_reply()?.payload;
        puts.push(t.elapsed().as_nanos() as u64);
        if memchr::memmem::find(&ack, b"\"error\"").is_some() {
            anomalies
                .errors
                .push(String::from_utf8_lossy(&ack).into_owned());
            break;
        }
        let t = Instant::now();
        client.push_pub(
            &format!("$JS.API.DIRECT.GET.{stream}.$KV.{bucket}.{key}"),
            Some(&reply),
            b"",
        );
        client.send()?;
        client.conn.writer.set_read_timeout(Some(API_TIMEOUT))?;
        let got = client.next_reply();
        client.conn.writer.set_read_timeout(Some(IO_TIMEOUT))?;
        let Reply {
            headers, payload, ..
        } =
            got.map_err(|e| ScenarioError::Invalid(format!("direct get API not available ({e})")))?;
        gets.push(t.elapsed().as_nanos() as u64);
        if payload != value {
            anomalies.lost += 1;
            if anomalies.errors.is_empty() {
                anomalies.errors.push(format!(
                    "get {key}: {}",
                    String::from_utf8_lossy(&headers).trim()
                ));
            }
        }
    }
    let elapsed = started.elapsed();
    client.delete_stream(&stream)?;
    puts.sort_unstable();
    gets.sort_unstable();
    let micros = |s: &[u64], p| percentile_sorted(s, p).map_or(f64::NAN, |ns| ns as f64 / 1e3);
    Ok(RunOutput {
        metrics: vec![
            Metric::higher(
                "ops/s",
                "op/s",
                (puts.len() + gets.len()) as f64 / elapsed.as_secs_f64(),
            ),
            Metric::lower("put p50", "µs", micros(&puts, 50.0)),
            Metric::lower("get p50", "µs", micros(&gets, 50.0)),
        ],
        anomalies,
    })
}

fn recovery(ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
    let stream = stream_name(ctx);
    let count = RECOVERY_MSGS;
    let fill = {
        let mut client = JsClient::connect(ctx)?;
        client.create_stream(&stream, &format!("js.{}.>", ctx.run_id))?;
        let started = Instant::now();
        let failed = client.publish_acked(&format!("js.{}.x", ctx.run_id), count, 256)?;
        if failed > 0 {
            return Err(ScenarioError::Invalid(format!(
                "{failed} of {count} publishes failed while filling"
            )));
        }
        started.elapsed()
    };
    let restart = ctx.server.restart()?;
    let started = Instant::now();
    let mut client = JsClient::connect(ctx)?;
    let info_subject = format!("$JS.API.STREAM.INFO.{stream}");
    loop {
        // nats-server may accept clients before every stream is back: poll until it is.
        match client.api(&info_subject, &json!({})) {
            Ok(info) if info["state"]["messages"].as_u64() == Some(count) => break,
            Ok(info) if started.elapsed() > IO_TIMEOUT => {
                return Err(ScenarioError::Invalid(format!(
                    "after restart the stream holds {} of {count} messages",
                    info["state"]["messages"]
                )))
            }
            Err(e) if started.elapsed() > IO_TIMEOUT => return Err(e),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let total = restart + started.elapsed();
    let _ = client.delete_stream(&stream);
    Ok(RunOutput {
        metrics: vec![
            Metric::lower("s/M", "s", total.as_secs_f64() * 1e6 / count as f64),
            Metric::higher("fill", "msg/s", count as f64 / fill.as_secs_f64()),
        ],
        anomalies: Anomalies::default(),
    })
}
