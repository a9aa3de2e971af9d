//! Consumer state machine tests against a MemStore, and driver tests on paused tokio time.
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use bytes::Bytes;

use super::config::{check_workqueue_partition, StreamContext};
use super::*;
use crate::store::{MemStore, MessageStore, StoreLimits};

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn store_with(subjects: &[&str]) -> MemStore {
    let s = MemStore::new(StoreLimits::default());
    for (i, subj) in subjects.iter().enumerate() {
        s.store_msg(
            subj.as_bytes(),
            None,
            format!("m{}", i + 1).as_bytes(),
            T0 + i as u64,
        )
        .unwrap();
    }
    s
}

fn ctx() -> StreamContext<'static> {
    StreamContext {
        subjects: &[],
        workqueue: false,
        interest_or_workqueue: false,
        replicas: 1,
        max_ack_pending_limit: 0,
        stream_max_ack_pending: 0,
        stream_inactive_threshold: 0,
    }
}

fn pull_cfg(ack: AckPolicy) -> ConsumerConfig {
    let mut c = ConsumerConfig {
        durable_name: "w".into(),
        ack_policy: ack,
        ..Default::default()
    };
    c.apply_defaults(&ctx());
    c.validate(&ctx()).unwrap();
    c
}

fn pull(reply: &str, body: &str, now: u64) -> PullRequest {
    PullRequest::parse(Bytes::from(reply.to_string()), body.as_bytes(), now).unwrap()
}

fn msgs(out: &[Outbound]) -> Vec<&Delivery> {
    out.iter()
        .filter_map(|o| match o {
            Outbound::Msg(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn statuses(out: &[Outbound]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Outbound::Status { headers, .. } => Some(String::from_utf8_lossy(headers).into()),
            _ => None,
        })
        .collect()
}

fn fetch(c: &mut Consumer, s: &MemStore, body: &str, now: u64) -> Vec<Outbound> {
    let mut out = Vec::new();
    c.add_pull_request(pull("_INBOX.r", body, now), s, now, &mut out);
    c.next_batch(s, now, &mut out);
    out
}

fn ack(c: &mut Consumer, d: &Delivery, body: &str, now: u64) -> AckOutcome {
    let tokens = parse_ack_subject(&d.reply).unwrap();
    let mut out = Vec::new();
    c.process_ack(&tokens, &parse_ack_body(body.as_bytes()), now, &mut out)
}

fn priority_consumer(policy: config::PriorityPolicy, s: &MemStore) -> Consumer {
    let mut c = ConsumerConfig {
        durable_name: "w".into(),
        ack_policy: AckPolicy::Explicit,
        priority_policy: policy,
        priority_groups: vec!["A".into()],
        ..Default::default()
    };
    c.apply_defaults(&ctx());
    c.validate(&ctx()).unwrap();
    Consumer::new("S", "w", c, s, T0)
}

fn pull_to(c: &mut Consumer, s: &MemStore, reply: &str, body: &str, now: u64) -> Vec<Outbound> {
    let mut out = Vec::new();
    c.add_pull_request(pull(reply, body, now), s, now, &mut out);
    c.next_batch(s, now, &mut out);
    out
}

#[test]
fn pinned_client_gets_everything_until_unpinned() {
    let s = store_with(&["a", "a", "a", "a"]);
    let mut c = priority_consumer(config::PriorityPolicy::PinnedClient, &s);
    let out = pull_to(&mut c, &s, "one", r#"{"batch":1,"group":"A"}"#, T0);
    let d = msgs(&out)[0];
    let h = String::from_utf8_lossy(d.headers.as_deref().unwrap()).into_owned();
    let id = h.split("Nats-Pin-Id: ").nth(1).unwrap().trim().to_string();
    // Another client waits; a wrong id is refused; the pinned one is served.
    let waiting = pull_to(
        &mut c,
        &s,
        "two",
        r#"{"batch":1,"group":"A","expires":9000000000}"#,
        T0,
    );
    assert!(msgs(&waiting).is_empty());
    let wrong = pull_to(
        &mut c,
        &s,
        "x",
        r#"{"batch":1,"group":"A","id":"nope"}"#,
        T0,
    );
    assert_eq!(
        statuses(&wrong),
        ["NATS/1.0 423 Nats-Pin-Id mismatch\r\n\r\n"]
    );
    let body = format!(r#"{{"batch":1,"group":"A","id":"{id}"}}"#);
    let again = pull_to(&mut c, &s, "one", &body, T0);
    assert_eq!(msgs(&again)[0].deliver_to, "one");
    // Unpinned: the waiting client is pinned next, with a new id.
    let mut out = Vec::new();
    c.unpin("A", &mut out).unwrap();
    c.next_batch(&s, T0, &mut out);
    let d = msgs(&out)[0];
    assert_eq!(d.deliver_to, "two");
    assert!(!String::from_utf8_lossy(d.headers.as_deref().unwrap()).contains(&id));
    assert!(c.unpin("B", &mut out).is_err());
}

#[test]
fn overflow_waits_for_its_mark_and_prioritized_serves_low_numbers_first() {
    let s = store_with(&["a", "a"]);
    let mut c = priority_consumer(config::PriorityPolicy::Overflow, &s);
    let body = r#"{"batch":1,"group":"A","min_pending":3,"expires":9000000000}"#;
    assert!(msgs(&pull_to(&mut c, &s, "o", body, T0)).is_empty());
    let body = r#"{"batch":1,"group":"A","min_pending":2}"#;
    assert_eq!(msgs(&pull_to(&mut c, &s, "p", body, T0)).len(), 1);

    let s = store_with(&[]);
    let mut c = priority_consumer(config::PriorityPolicy::Prioritized, &s);
    let mut out = Vec::new();
    for (reply, p) in [("low", 5), ("high", 0)] {
        let body = format!(r#"{{"batch":2,"group":"A","priority":{p},"expires":9000000000}}"#);
        c.add_pull_request(pull(reply, &body, T0), &s, T0, &mut out);
    }
    for _ in 0..3 {
        s.store_msg(b"a", None, b"m", 0).unwrap();
    }
    c.next_batch(&s, T0, &mut out);
    let to: Vec<_> = msgs(&out).iter().map(|d| d.deliver_to.clone()).collect();
    assert_eq!(to, ["high", "high", "low"]);
}

#[test]
fn flow_control_answers_acknowledge_what_was_delivered() {
    let s = store_with(&["a", "a", "a"]);
    let mut cfg = ConsumerConfig {
        durable_name: "w".into(),
        deliver_subject: "d".into(),
        ack_policy: AckPolicy::FlowControl,
        max_ack_pending: 2,
        ..Default::default()
    };
    cfg.apply_defaults(&ctx());
    assert!(cfg.flow_control);
    cfg.validate(&ctx()).unwrap();
    let mut c = Consumer::new("S", "w", cfg, &s, T0);
    c.set_push_active(true);
    let mut out = Vec::new();
    c.next_batch(&s, T0, &mut out);
    // Two delivered (max_ack_pending), then a flow-control request.
    assert_eq!(msgs(&out).len(), 2);
    let fc = out
        .iter()
        .find_map(|o| match o {
            Outbound::Status { reply: Some(r), .. } => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    // Nothing is redelivered by time.
    let mut timers = Vec::new();
    c.check_timers(T0 + 3600 * SEC, &mut timers);
    assert!(msgs(&timers).is_empty());
    let answer = b"NATS/1.0\r\nNats-Last-Consumer: 2\r\nNats-Last-Stream: 2\r\n\r\n";
    let outcome = c.process_flow_control(&fc, Some(answer));
    assert_eq!(outcome.acked.as_slice(), [1, 2]);
    assert_eq!(c.state().ack_floor.stream_seq, 2);
}

#[test]
fn reset_moves_delivery_and_forgets_pending() {
    let s = store_with(&["a", "a", "a", "a", "a"]);
    let mut c = Consumer::new("S", "w", pull_cfg(AckPolicy::Explicit), &s, T0);
    let out = fetch(&mut c, &s, r#"{"batch":3}"#, T0);
    let got = msgs(&out);
    ack(&mut c, got[0], "+ACK", T0);
    assert_eq!(c.state().pending.len(), 2);
    // Back to just above the ack floor: the unacked two come again, as first deliveries.
    assert_eq!(c.reset(0, &s), Ok(2));
    assert!(c.state().pending.is_empty());
    assert_eq!(c.state().delivered.consumer_seq, 0);
    let again = fetch(&mut c, &s, r#"{"batch":1}"#, T0);
    let d = msgs(&again)[0];
    assert_eq!((d.stream_seq, d.consumer_seq, d.deliveries), (2, 1, 1));
    assert_eq!(c.reset(5, &s), Ok(5));
    assert_eq!(c.num_pending(&s), 1);
    let mut from3 = pull_cfg(AckPolicy::Explicit);
    from3.deliver_policy = DeliverPolicy::ByStartSequence;
    from3.opt_start_seq = 3;
    let mut c = Consumer::new("S", "f", from3, &s, T0);
    assert_eq!(c.reset(2, &s), Err("below start seq"));
    assert_eq!(c.reset(4, &s), Ok(4));
    let mut last = pull_cfg(AckPolicy::Explicit);
    last.deliver_policy = DeliverPolicy::Last;
    let mut c = Consumer::new("S", "l", last, &s, T0);
    assert_eq!(c.reset(1, &s), Err("not allowed"));
}

#[test]
fn defaults_match_nats_server() {
    let mut c = ConsumerConfig {
        durable_name: "worker".into(),
        name: "worker".into(),
        ack_policy: AckPolicy::Explicit,
        filter_subject: "orders.>".into(),
        ..Default::default()
    };
    c.apply_defaults(&ctx());
    c.set_server_metadata("2.15.1");
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(
        json,
        r#"{"durable_name":"worker","name":"worker","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"filter_subject":"orders.>","replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0,"metadata":{"_nats.level":"5","_nats.req.level":"0","_nats.ver":"2.15.1"}}"#
    );
    // Ephemeral push with ack none: no ack_wait/max_ack_pending/max_waiting, 5s inactivity.
    let mut e = ConsumerConfig {
        deliver_subject: "dlv".into(),
        ..Default::default()
    };
    e.apply_defaults(&ctx());
    assert_eq!(e.ack_wait, 0);
    assert_eq!(e.max_ack_pending, 0);
    assert_eq!(e.max_waiting, 0);
    assert_eq!(e.inactive_threshold, 5 * SEC as i64);
    // Backoff overrides ack_wait.
    let mut b = pull_cfg(AckPolicy::Explicit);
    b.backoff = vec![SEC as i64, 2 * SEC as i64];
    b.apply_defaults(&ctx());
    assert_eq!(b.ack_wait, SEC as i64);
}

#[test]
fn validation_errors_carry_real_codes() {
    let check = |c: ConsumerConfig, stream: StreamContext<'_>| {
        let mut c = c;
        c.apply_defaults(&stream);
        c.validate(&stream).unwrap_err().err_code
    };
    let fc = ConsumerConfig {
        deliver_subject: "d".into(),
        flow_control: true,
        ..Default::default()
    };
    assert_eq!(check(fc, ctx()), 10108);
    let hb = ConsumerConfig {
        idle_heartbeat: SEC as i64,
        ..Default::default()
    };
    assert_eq!(check(hb, ctx()), 10088);
    let wq = StreamContext {
        workqueue: true,
        interest_or_workqueue: true,
        ..ctx()
    };
    assert_eq!(check(ConsumerConfig::default(), wq), 10084);
    let bad = ConsumerConfig {
        durable_name: "a.b".into(),
        ..Default::default()
    };
    let mut bad2 = bad.clone();
    bad2.apply_defaults(&ctx());
    let err = bad2.validate(&ctx()).unwrap_err();
    assert_eq!(
        (err.code, err.err_code),
        (500, 10052),
        "{}",
        err.description
    );
    let lps = ConsumerConfig {
        deliver_policy: DeliverPolicy::LastPerSubject,
        ..Default::default()
    };
    assert_eq!(check(lps, ctx()), 10094);
    let overlap = ConsumerConfig {
        filter_subjects: vec!["a.>".into(), "a.b".into()],
        ..Default::default()
    };
    assert_eq!(check(overlap, ctx()), 10138);
    let backoff = ConsumerConfig {
        ack_policy: AckPolicy::Explicit,
        max_deliver: 1,
        backoff: vec![1, 2],
        ..Default::default()
    };
    assert_eq!(check(backoff, ctx()), 10116);

    let a = ConsumerConfig {
        filter_subject: "a.>".into(),
        ..Default::default()
    };
    let unfiltered = ConsumerConfig::default();
    assert_eq!(
        check_workqueue_partition(&unfiltered, &[&a])
            .unwrap_err()
            .err_code,
        10099
    );
    let ab = ConsumerConfig {
        filter_subject: "a.b".into(),
        ..Default::default()
    };
    assert_eq!(
        check_workqueue_partition(&ab, &[&a]).unwrap_err().err_code,
        10100
    );
    let b = ConsumerConfig {
        filter_subject: "b".into(),
        ..Default::default()
    };
    assert!(check_workqueue_partition(&b, &[&a]).is_ok());
}

#[test]
fn ack_subject_round_trip() {
    let s = store_with(&["orders.new"]);
    let mut c = Consumer::new("ORDERS", "worker", pull_cfg(AckPolicy::Explicit), &s, T0);
    let out = fetch(&mut c, &s, "", T0);
    let d = msgs(&out)[0];
    assert_eq!(
        String::from_utf8_lossy(&d.reply),
        format!("$JS.ACK.ORDERS.worker.1.1.1.{T0}.0")
    );
    assert_eq!(&d.subject[..], b"orders.new");
    assert_eq!(&d.payload[..], b"m1");
    let v2 = parse_ack_subject(b"$JS.ACK.dom.hash.S.C.2.5.7.123.9.xyz").unwrap();
    assert_eq!((v2.deliveries, v2.stream_seq, v2.consumer_seq), (2, 5, 7));
    assert!(parse_ack_subject(b"$JS.ACK.S.C.1.x.1.1.1").is_none());
    assert_eq!(parse_ack_body(b"-NAK {\"delay\":5}"), AckKind::Nak(Some(5)));
    assert_eq!(parse_ack_body(b"-NAK 2s"), AckKind::Nak(Some(2 * SEC)));
    assert_eq!(parse_ack_body(b"-NAK bogus"), AckKind::Nak(None));
    assert_eq!(parse_ack_body(b"+TERM why"), AckKind::Term(b"why"));
}

#[test]
fn deliver_policies_pick_the_start() {
    let s = store_with(&["a.1", "b.1", "a.2", "a.1", "b.1"]);
    let start = |dp: DeliverPolicy, filter: &str, seq: u64, time: Option<String>| {
        let mut cfg = pull_cfg(AckPolicy::None);
        cfg.deliver_policy = dp;
        cfg.filter_subject = filter.into();
        cfg.opt_start_seq = seq;
        cfg.opt_start_time = time;
        cfg.validate(&ctx()).unwrap();
        let mut c = Consumer::new("S", "c", cfg, &s, T0);
        let out = fetch(&mut c, &s, r#"{"batch":10,"no_wait":true}"#, T0);
        msgs(&out).iter().map(|d| d.stream_seq).collect::<Vec<_>>()
    };
    assert_eq!(start(DeliverPolicy::All, "", 0, None), vec![1, 2, 3, 4, 5]);
    assert_eq!(start(DeliverPolicy::All, "a.*", 0, None), vec![1, 3, 4]);
    assert_eq!(start(DeliverPolicy::Last, "", 0, None), vec![5]);
    assert_eq!(start(DeliverPolicy::Last, "a.>", 0, None), vec![4]);
    assert_eq!(start(DeliverPolicy::New, "", 0, None), Vec::<u64>::new());
    assert_eq!(
        start(DeliverPolicy::ByStartSequence, "", 3, None),
        vec![3, 4, 5]
    );
    let t = natsd_conf::timestamp::rfc3339_ns(T0 + 2);
    assert_eq!(
        start(DeliverPolicy::ByStartTime, "", 0, Some(t)),
        vec![3, 4, 5]
    );
    assert_eq!(
        start(DeliverPolicy::LastPerSubject, "a.*", 0, None),
        vec![3, 4]
    );
    assert_eq!(
        start(DeliverPolicy::LastPerSubject, ">", 0, None),
        vec![3, 4, 5]
    );
}

#[test]
fn deliver_new_sees_later_messages_and_counts_pending() {
    let s = store_with(&["a", "a"]);
    let mut cfg = pull_cfg(AckPolicy::Explicit);
    cfg.deliver_policy = DeliverPolicy::New;
    let mut c = Consumer::new("S", "c", cfg, &s, T0);
    assert_eq!(c.state().delivered.stream_seq, 2);
    assert_eq!(c.state().ack_floor.stream_seq, 2);
    assert_eq!(c.num_pending(&s), 0);
    s.store_msg(b"a", None, b"x", 0).unwrap();
    s.store_msg(b"a", None, b"y", 0).unwrap();
    assert_eq!(c.num_pending(&s), 2);
    let out = fetch(&mut c, &s, "1", T0);
    let d = msgs(&out)[0];
    assert_eq!(d.stream_seq, 3);
    assert!(
        String::from_utf8_lossy(&d.reply).ends_with(".1"),
        "pending 1 after this"
    );
    let info = c.info(&s, T0);
    assert_eq!(
        (
            info.num_pending,
            info.num_ack_pending,
            info.delivered.stream_seq
        ),
        (1, 1, 3)
    );
}

#[test]
fn pull_batch_no_wait_and_max_bytes() {
    let s = store_with(&["a", "a", "a"]);
    let mut c = Consumer::new("S", "c", pull_cfg(AckPolicy::Explicit), &s, T0);
    let out = fetch(&mut c, &s, r#"{"batch":5,"no_wait":true}"#, T0);
    assert_eq!(msgs(&out).len(), 3);
    assert_eq!(statuses(&out), vec!["NATS/1.0 404 No Messages\r\n\r\n"]);
    assert!(
        matches!(out.last(), Some(Outbound::Status { .. })),
        "404 comes last"
    );
    assert_eq!(c.num_waiting(), 0);
    // Nothing left: immediate 404, nothing queued.
    let out = fetch(&mut c, &s, r#"{"batch":1,"no_wait":true}"#, T0);
    assert_eq!(statuses(&out), vec!["NATS/1.0 404 No Messages\r\n\r\n"]);
    assert_eq!(c.num_waiting(), 0);

    // max_bytes smaller than the next message: 409 with what was still owed.
    s.store_msg(b"a", None, &[b'x'; 100], 0).unwrap();
    let out = fetch(&mut c, &s, r#"{"batch":2,"max_bytes":50}"#, T0);
    assert!(msgs(&out).is_empty());
    assert_eq!(
        statuses(&out),
        vec!["NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 2\r\nNats-Pending-Bytes: 50\r\n\r\n"]
    );
    // A big enough budget delivers it.
    let out = fetch(&mut c, &s, r#"{"batch":2,"max_bytes":1000}"#, T0);
    assert_eq!(msgs(&out).len(), 1);
    assert_eq!(c.num_waiting(), 1, "still owed one message");
}

#[test]
fn pull_expires_gives_408_with_pending_counts() {
    let s = store_with(&["a"]);
    let mut c = Consumer::new("S", "c", pull_cfg(AckPolicy::Explicit), &s, T0);
    let out = fetch(&mut c, &s, r#"{"batch":3,"expires":1000000000}"#, T0);
    assert_eq!(msgs(&out).len(), 1);
    assert!(statuses(&out).is_empty());
    assert_eq!(c.next_wakeup(), Some(T0 + SEC));
    let mut out = Vec::new();
    c.check_timers(T0 + SEC - 1, &mut out);
    assert!(out.is_empty());
    c.check_timers(T0 + SEC, &mut out);
    assert_eq!(
        statuses(&out),
        vec!["NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 2\r\nNats-Pending-Bytes: 0\r\n\r\n"]
    );
    // no_wait + expires with nothing available waits for expiry, then 408.
    let out = fetch(
        &mut c,
        &s,
        r#"{"batch":1,"no_wait":true,"expires":300000000}"#,
        T0,
    );
    assert!(out.is_empty());
    assert_eq!(c.num_waiting(), 1);
    // Negative expires: immediate 408.
    let out = fetch(&mut c, &s, r#"{"batch":1,"expires":-1}"#, T0);
    assert_eq!(statuses(&out).len(), 1);
    assert!(statuses(&out)[0].starts_with("NATS/1.0 408 Request Timeout"));
    // Bad JSON: 400.
    let err = PullRequest::parse(Bytes::from_static(b"r"), b"{bad", T0).unwrap_err();
    assert!(String::from_utf8_lossy(&err).starts_with("NATS/1.0 400 Bad Request - "));
}

#[test]
fn pull_request_limits_give_409() {
    let s = store_with(&[]);
    let mut cfg = pull_cfg(AckPolicy::Explicit);
    cfg.max_batch = 2;
    cfg.max_waiting = 1;
    cfg.max_expires = SEC as i64;
    let mut c = Consumer::new("S", "c", cfg, &s, T0);
    let out = fetch(&mut c, &s, "3", T0);
    assert_eq!(
        statuses(&out),
        vec!["NATS/1.0 409 Exceeded MaxRequestBatch of 2\r\n\r\n"]
    );
    let out = fetch(&mut c, &s, r#"{"expires":2000000000}"#, T0);
    assert_eq!(
        statuses(&out),
        vec!["NATS/1.0 409 Exceeded MaxRequestExpires of 1s\r\n\r\n"]
    );
    assert!(fetch(&mut c, &s, "1", T0).is_empty());
    let out = fetch(&mut c, &s, "1", T0);
    assert_eq!(
        statuses(&out),
        vec!["NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n"]
    );
}

#[test]
fn ack_nak_term_progress_and_floor() {
    let s = store_with(&["a", "a", "a", "a"]);
    let mut c = Consumer::new("S", "c", pull_cfg(AckPolicy::Explicit), &s, T0);
    let out = fetch(&mut c, &s, "4", T0);
    let d: Vec<Delivery> = msgs(&out).into_iter().cloned().collect();
    assert_eq!(c.info(&s, T0).num_ack_pending, 4);

    // Ack #2 first: the floor cannot move past the unacked #1.
    let o = ack(&mut c, &d[1], "+ACK", T0);
    assert_eq!(o.acked.as_slice(), &[2]);
    assert!(o.reply);
    assert_eq!(c.state().ack_floor.stream_seq, 0);
    let o = ack(&mut c, &d[0], "", T0);
    assert_eq!(o.acked.as_slice(), &[1]);
    assert_eq!(
        c.state().ack_floor,
        SeqPair {
            consumer_seq: 2,
            stream_seq: 2
        }
    );
    // A repeated ack is harmless and still gets its reply.
    let o = ack(&mut c, &d[0], "+ACK", T0);
    assert!(o.acked.is_empty() && o.reply);
    assert!(c.has_acked(1) && c.has_acked(2) && !c.has_acked(3));

    // -NAK: redelivered at once with delivery count 2 and a new consumer seq.
    let mut adv = Vec::new();
    let tokens = parse_ack_subject(&d[2].reply).unwrap();
    c.process_ack(&tokens, &AckKind::Nak(None), T0, &mut adv);
    assert!(matches!(&adv[0], Outbound::Advisory { subject, .. }
        if subject == "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.S.c"));
    let out = fetch(&mut c, &s, "1", T0);
    let r = msgs(&out)[0];
    assert_eq!((r.stream_seq, r.deliveries, r.consumer_seq), (3, 2, 5));
    assert!(String::from_utf8_lossy(&r.reply).starts_with("$JS.ACK.S.c.2.3.5."));
    assert_eq!(c.info(&s, T0).num_redelivered, 1);

    // +TERM: gone for good, advisory with the reason, counts as done for retention.
    let mut adv = Vec::new();
    let tokens = parse_ack_subject(&r.reply).unwrap();
    let o = c.process_ack(&tokens, &parse_ack_body(b"+TERM bad data"), T0, &mut adv);
    assert_eq!(o.acked.as_slice(), &[3]);
    match &adv[0] {
        Outbound::Advisory { subject, payload } => {
            assert_eq!(subject, "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.c");
            let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
            assert_eq!(v["reason"], "bad data");
            assert_eq!(v["type"], "io.nats.jetstream.advisory.v1.terminated");
        }
        other => panic!("unexpected {other:?}"),
    }

    // +WPI pushes the ack wait out.
    let ack_wait = 30 * SEC;
    ack(&mut c, &d[3], "+WPI", T0 + 20 * SEC);
    let mut out = Vec::new();
    c.check_timers(T0 + ack_wait + 1, &mut out);
    assert!(fetch(&mut c, &s, r#"{"no_wait":true}"#, T0 + ack_wait + 1)
        .iter()
        .all(|o| !matches!(o, Outbound::Msg(_))));
    c.check_timers(T0 + 20 * SEC + ack_wait, &mut out);
    let out = fetch(&mut c, &s, "1", T0 + 20 * SEC + ack_wait);
    assert_eq!(msgs(&out)[0].stream_seq, 4);
}

#[test]
fn nak_with_delay_waits() {
    let s = store_with(&["a"]);
    let mut c = Consumer::new("S", "c", pull_cfg(AckPolicy::Explicit), &s, T0);
    let out = fetch(&mut c, &s, "1", T0);
    let d = msgs(&out)[0].clone();
    ack(&mut c, &d, "-NAK {\"delay\":2000000000}", T0);
    let mut out = Vec::new();
    c.check_timers(T0 + SEC, &mut out);
    let out = fetch(&mut c, &s, r#"{"no_wait":true}"#, T0 + SEC);
    assert!(msgs(&out).is_empty());
    let mut out = Vec::new();
    c.check_timers(T0 + 2 * SEC, &mut out);
    let out = fetch(&mut c, &s, "1", T0 + 2 * SEC);
    assert_eq!(msgs(&out)[0].deliveries, 2);
}

#[test]
fn ack_all_acks_everything_below() {
    let s = store_with(&["a", "a", "a"]);
    let mut c = Consumer::new("S", "c", pull_cfg(AckPolicy::All), &s, T0);
    let out = fetch(&mut c, &s, "3", T0);
    let d = msgs(&out)[1].clone();
    let o = ack(&mut c, &d, "+ACK", T0);
    assert_eq!(o.acked.as_slice(), &[1, 2]);
    assert_eq!(c.state().ack_floor.stream_seq, 2);
    assert_eq!(c.info(&s, T0).num_ack_pending, 1);
}

#[test]
fn redelivery_after_ack_wait_with_backoff_and_max_deliver() {
    let s = store_with(&["a"]);
    let mut cfg = pull_cfg(AckPolicy::Explicit);
    cfg.backoff = vec![SEC as i64, 3 * SEC as i64];
    cfg.max_deliver = 3;
    cfg.apply_defaults(&ctx());
    cfg.validate(&ctx()).unwrap();
    let mut c = Consumer::new("S", "c", cfg, &s, T0);
    let mut now = T0;
    let out = fetch(&mut c, &s, "1", now);
    assert_eq!(msgs(&out)[0].deliveries, 1);
    assert_eq!(c.next_wakeup(), Some(now + SEC));

    // First redelivery after backoff[0].
    now += SEC;
    let mut out = Vec::new();
    c.check_timers(now, &mut out);
    let out = fetch(&mut c, &s, "1", now);
    assert_eq!(msgs(&out)[0].deliveries, 2);
    // Second waits backoff[1] = 3s.
    let mut out = Vec::new();
    c.check_timers(now + 2 * SEC, &mut out);
    assert!(msgs(&fetch(&mut c, &s, r#"{"no_wait":true}"#, now + 2 * SEC)).is_empty());
    now += 3 * SEC;
    c.check_timers(now, &mut out);
    let out = fetch(&mut c, &s, "1", now);
    assert_eq!(msgs(&out)[0].deliveries, 3);

    // max_deliver 3 reached: dropped with an advisory, never redelivered.
    now += 3 * SEC;
    let mut out = Vec::new();
    c.check_timers(now, &mut out);
    let adv: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Outbound::Advisory { subject, payload } => Some((subject.clone(), payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(adv.len(), 1);
    assert_eq!(adv[0].0, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.c");
    let v: serde_json::Value = serde_json::from_slice(&adv[0].1).unwrap();
    assert_eq!(v["deliveries"], 3);
    assert_eq!(v["stream_seq"], 1);
    let info = c.info(&s, now);
    assert_eq!((info.num_ack_pending, info.num_redelivered), (0, 1));
    // Never acked, so the ack floor stays below it (as in nats-server).
    assert_eq!(info.ack_floor.stream_seq, 0);
    assert!(msgs(&fetch(&mut c, &s, r#"{"no_wait":true}"#, now + 100 * SEC)).is_empty());
}

#[test]
fn max_ack_pending_blocks_new_messages() {
    let s = store_with(&["a", "a", "a"]);
    let mut cfg = pull_cfg(AckPolicy::Explicit);
    cfg.max_ack_pending = 2;
    let mut c = Consumer::new("S", "c", cfg, &s, T0);
    let out = fetch(&mut c, &s, "3", T0);
    let d: Vec<Delivery> = msgs(&out).into_iter().cloned().collect();
    assert_eq!(d.len(), 2);
    assert_eq!(c.num_waiting(), 1);
    ack(&mut c, &d[0], "+ACK", T0);
    let mut out = Vec::new();
    c.next_batch(&s, T0, &mut out);
    assert_eq!(msgs(&out)[0].stream_seq, 3);
    assert_eq!(c.num_waiting(), 0);
}

#[test]
fn headers_only_adds_msg_size() {
    let s = MemStore::new(StoreLimits::default());
    s.store_msg(b"k", Some(b"NATS/1.0\r\nA: b\r\n\r\n"), b"hello", 0)
        .unwrap();
    s.store_msg(b"k", None, b"x", 0).unwrap();
    let mut cfg = pull_cfg(AckPolicy::None);
    cfg.headers_only = true;
    let mut c = Consumer::new("S", "c", cfg, &s, T0);
    let out = fetch(&mut c, &s, "2", T0);
    let m = msgs(&out);
    assert_eq!(
        m[0].headers.as_deref(),
        Some(&b"NATS/1.0\r\nA: b\r\nNats-Msg-Size: 5\r\n\r\n"[..])
    );
    assert!(m[0].payload.is_empty());
    assert_eq!(
        m[1].headers.as_deref(),
        Some(&b"NATS/1.0\r\nNats-Msg-Size: 1\r\n\r\n"[..])
    );
    // Ack none: delivered is acked at once.
    assert_eq!(c.state().ack_floor.stream_seq, 2);
    assert!(c.has_acked(2));
}

#[test]
fn state_round_trip_and_restore() {
    let s = store_with(&["a", "a", "a", "a"]);
    let cfg = pull_cfg(AckPolicy::Explicit);
    let mut c = Consumer::new("S", "c", cfg.clone(), &s, T0);
    let out = fetch(&mut c, &s, "3", T0);
    let d: Vec<Delivery> = msgs(&out).into_iter().cloned().collect();
    ack(&mut c, &d[0], "+ACK", T0);
    ack(&mut c, &d[2], "-NAK", T0);
    let _ = fetch(&mut c, &s, "1", T0); // redelivery of 3
    assert!(c.is_dirty());
    let blob = c.encode_state();
    assert!(!c.is_dirty());
    s.consumer_store().save("c", &blob).unwrap();

    let loaded = s.consumer_store().load("c").unwrap().unwrap();
    let state = ConsumerState::decode(&loaded, cfg.ack_wait as u64).unwrap();
    assert_eq!(state.delivered, c.state().delivered);
    assert_eq!(state.ack_floor, c.state().ack_floor);
    assert_eq!(
        state.pending.keys().collect::<Vec<_>>(),
        c.state().pending.keys().collect::<Vec<_>>()
    );
    assert_eq!(state.redelivered, c.state().redelivered);
    assert!(ConsumerState::decode(&loaded[..loaded.len() - 1], 0).is_err());

    // After a "restart": the next new message is #4, and unacked ones come back after
    // ack_wait.
    let mut r = Consumer::restore("S", "c", cfg.clone(), T0, state);
    let out = fetch(&mut r, &s, r#"{"batch":5,"no_wait":true}"#, T0 + 1);
    assert_eq!(
        msgs(&out).iter().map(|d| d.stream_seq).collect::<Vec<_>>(),
        vec![4]
    );
    let later = T0 + cfg.ack_wait as u64;
    let mut out = Vec::new();
    r.check_timers(later, &mut out);
    let out = fetch(&mut r, &s, r#"{"batch":5,"no_wait":true}"#, later);
    let redelivered: Vec<(u64, u64)> = msgs(&out)
        .iter()
        .map(|d| (d.stream_seq, d.deliveries))
        .collect();
    assert_eq!(redelivered, vec![(2, 2), (3, 3)]);
}

#[test]
fn push_flow_control_and_heartbeat() {
    let s = MemStore::new(StoreLimits::default());
    let big = vec![b'x'; 64 * 1024];
    for _ in 0..40 {
        s.store_msg(b"a", None, &big, 0).unwrap();
    }
    let mut cfg = ConsumerConfig {
        deliver_subject: "dlv".into(),
        flow_control: true,
        idle_heartbeat: SEC as i64,
        ..Default::default()
    };
    cfg.apply_defaults(&ctx());
    cfg.validate(&ctx()).unwrap();
    let mut c = Consumer::new("S", "pc", cfg, &s, T0);
    let mut out = Vec::new();
    c.next_batch(&s, T0, &mut out);
    assert!(out.is_empty(), "no interest, no delivery");
    c.set_push_active(true);
    c.next_batch(&s, T0, &mut out);
    let fc: Vec<Bytes> = out
        .iter()
        .filter_map(|o| match o {
            Outbound::Status {
                reply: Some(r),
                headers,
                ..
            } => {
                assert_eq!(headers, b"NATS/1.0 100 FlowControl Request\r\n\r\n");
                Some(r.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(fc.len(), 1);
    assert!(fc[0].starts_with(b"$JS.FC.S.pc."));
    let delivered = msgs(&out).len();
    assert!(
        delivered > 16 && delivered < 40,
        "stalled after the window: {delivered}"
    );

    // Stalled: heartbeat carries the stall marker.
    let mut out = Vec::new();
    c.next_batch(&s, T0, &mut out);
    assert!(out.is_empty());
    c.check_timers(T0 + SEC, &mut out);
    let hb = statuses(&out);
    assert_eq!(
        hb[0],
        format!(
            "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {delivered}\r\nNats-Last-Stream: {delivered}\r\nNats-Consumer-Stalled: {}\r\n\r\n",
            String::from_utf8_lossy(&fc[0])
        )
    );

    // Answering resumes delivery.
    c.process_flow_control(&fc[0], None);
    let mut out = Vec::new();
    c.next_batch(&s, T0, &mut out);
    assert_eq!(msgs(&out).len(), 40 - delivered);
}

#[test]
fn workqueue_acks_report_stream_sequences() {
    let s = store_with(&["jobs.a", "jobs.b"]);
    let wq = StreamContext {
        workqueue: true,
        interest_or_workqueue: true,
        ..ctx()
    };
    let mut cfg = ConsumerConfig {
        durable_name: "w".into(),
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    cfg.apply_defaults(&ctx());
    cfg.validate(&wq).unwrap();
    let mut c = Consumer::new("S", "w", cfg, &s, T0);
    let out = fetch(&mut c, &s, "2", T0);
    let d: Vec<Delivery> = msgs(&out).into_iter().cloned().collect();
    let o = ack(&mut c, &d[1], "+ACK", T0);
    assert_eq!(o.acked.as_slice(), &[2]);
    // The stream removes it; a deleted pending message is simply forgotten on redelivery.
    s.remove_msg(2).unwrap();
    ack(&mut c, &d[0], "-NAK", T0);
    s.remove_msg(1).unwrap();
    let out = fetch(&mut c, &s, r#"{"no_wait":true}"#, T0);
    assert!(msgs(&out).is_empty());
    assert_eq!(c.info(&s, T0).num_ack_pending, 0);
}

mod driver_tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::account::{Account, AccountSettings};
    use crate::consumer::driver::{self, ConsumerHost, StopReason};
    use crate::route;
    use crate::subscription::{FlushSet, InternalHandler, InternalMsg};

    /// subject, reply, headers, payload
    type Captured = (String, Option<String>, Option<String>, Vec<u8>);

    #[derive(Default)]
    struct Collect(Mutex<Vec<Captured>>);
    impl InternalHandler for Collect {
        fn deliver(&self, m: &InternalMsg<'_>, _flush: &mut FlushSet) {
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            self.0.lock().unwrap().push((
                s(m.subject),
                m.reply.map(s),
                m.headers.map(s),
                m.payload.to_vec(),
            ));
        }
    }

    #[derive(Default)]
    struct Host {
        acked: Mutex<Vec<u64>>,
        inactive: Mutex<Vec<String>>,
    }
    impl ConsumerHost for Host {
        fn acked(&self, _consumer: &str, seqs: &[u64]) {
            self.acked.lock().unwrap().extend_from_slice(seqs);
        }
        fn reset(&self, _consumer: &str, _seq: u64) {}
        fn inactive(&self, consumer: &str) {
            self.inactive.lock().unwrap().push(consumer.to_string());
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pull_ack_and_expiry_through_the_account() {
        let account = Account::new("A", AccountSettings::default());
        let store: Arc<dyn MessageStore> = Arc::new(store_with(&["orders.1", "orders.2"]));
        let host = Arc::new(Host::default());
        let inbox = Arc::new(Collect::default());
        route::subscribe_internal(&account, b"_INBOX.p", None, inbox.clone()).unwrap();
        let c = Consumer::new(
            "ORDERS",
            "w",
            pull_cfg(AckPolicy::Explicit),
            &*store,
            crate::store::now_ns(),
        );
        let handle = driver::spawn(c, account.clone(), store.clone(), host.clone()).unwrap();

        route::publish(
            &account,
            b"$JS.API.CONSUMER.MSG.NEXT.ORDERS.w",
            Some(b"_INBOX.p"),
            None,
            br#"{"batch":3,"expires":1000000000}"#,
        );
        settle().await;
        let got = inbox.0.lock().unwrap().clone();
        assert_eq!(got.len(), 2);
        // Routed to the request's inbox, shown with the message's own subject (nats-server).
        assert_eq!(got[0].0, "orders.1");
        assert_eq!(got[0].3, b"m1");
        let reply = got[0].1.clone().unwrap();
        assert!(reply.starts_with("$JS.ACK.ORDERS.w.1.1.1."), "{reply}");

        // Ack with a reply subject: the double-ack answer is an empty message.
        let ack_inbox = Arc::new(Collect::default());
        route::subscribe_internal(&account, b"_INBOX.ack", None, ack_inbox.clone()).unwrap();
        route::publish(
            &account,
            reply.as_bytes(),
            Some(b"_INBOX.ack"),
            None,
            b"+ACK",
        );
        settle().await;
        assert_eq!(ack_inbox.0.lock().unwrap().len(), 1);
        assert!(ack_inbox.0.lock().unwrap()[0].3.is_empty());
        assert_eq!(*host.acked.lock().unwrap(), vec![1]);

        // The request expires after 1s with one message still owed.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        settle().await;
        let got = inbox.0.lock().unwrap().clone();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[2].2.as_deref(),
            Some("NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\nNats-Pending-Bytes: 0\r\n\r\n")
        );

        // A new message wakes a waiting request once the stream pokes the consumer.
        route::publish(
            &account,
            b"$JS.API.CONSUMER.MSG.NEXT.ORDERS.w",
            Some(b"_INBOX.p"),
            None,
            b"",
        );
        settle().await;
        assert_eq!(inbox.0.lock().unwrap().len(), 3);
        store.store_msg(b"orders.3", None, b"m3", 0).unwrap();
        handle.notify();
        settle().await;
        assert_eq!(inbox.0.lock().unwrap().last().unwrap().3, b"m3");

        let info = handle.info().await.unwrap();
        assert_eq!(info.delivered.stream_seq, 3);
        assert_eq!(info.num_ack_pending, 2);

        // Unacked messages come back after ack_wait (30s).
        route::publish(
            &account,
            b"$JS.API.CONSUMER.MSG.NEXT.ORDERS.w",
            Some(b"_INBOX.p"),
            None,
            b"5",
        );
        tokio::time::sleep(Duration::from_secs(31)).await;
        settle().await;
        let got = inbox.0.lock().unwrap().clone();
        let redelivered: Vec<_> = got
            .iter()
            .filter_map(|m| m.1.clone())
            .filter(|r| r.starts_with("$JS.ACK.ORDERS.w.2."))
            .collect();
        assert_eq!(redelivered.len(), 2, "{got:?}");

        let consumer = handle.stop(StopReason::Unloaded).await.unwrap();
        assert_eq!(consumer.state().delivered.consumer_seq, 5);
        let saved = store.consumer_store().load("w").unwrap().unwrap();
        assert_eq!(
            ConsumerState::decode(&saved, 0)
                .unwrap()
                .delivered
                .consumer_seq,
            5
        );
        // Unsubscribed: nobody answers MSG.NEXT any more.
        assert_eq!(
            route::publish(
                &account,
                b"$JS.API.CONSUMER.MSG.NEXT.ORDERS.w",
                Some(b"_INBOX.p"),
                None,
                b""
            ),
            0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn push_heartbeat_and_inactive_ephemeral() {
        let account = Account::new("A", AccountSettings::default());
        let store: Arc<dyn MessageStore> = Arc::new(store_with(&["a"]));
        let host = Arc::new(Host::default());
        let mut cfg = ConsumerConfig {
            deliver_subject: "dlv".into(),
            idle_heartbeat: 1_000_000_000,
            ..Default::default()
        };
        cfg.apply_defaults(&ctx());
        let c = Consumer::new("S", "eph", cfg, &*store, crate::store::now_ns());
        let inbox = Arc::new(Collect::default());
        let sub = route::subscribe_internal(&account, b"dlv", None, inbox.clone()).unwrap();
        let handle = driver::spawn(c, account.clone(), store.clone(), host.clone()).unwrap();
        handle.notify();
        settle().await;
        assert_eq!(inbox.0.lock().unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(1050)).await;
        settle().await;
        let got = inbox.0.lock().unwrap().clone();
        assert_eq!(
            got.last().unwrap().2.as_deref(),
            Some("NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 1\r\n\r\n")
        );
        // Subscriber gone: after the 5s inactive threshold the host is told to delete it.
        route::unsubscribe_internal(&account, &sub);
        handle.notify();
        settle().await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        settle().await;
        assert_eq!(*host.inactive.lock().unwrap(), vec!["eph".to_string()]);
    }
}

/// Consumer info prints its times as stream info does and as nats-server does (Go's
/// RFC3339Nano: `.5Z`, not `.500Z`; the one formatter is natsd_conf::timestamp).
#[test]
fn info_times_print_as_go_prints_them() {
    let s = store_with(&["a"]);
    let half = T0 + SEC / 2;
    let mut c = Consumer::new("S", "w", pull_cfg(AckPolicy::Explicit), &s, half);
    let info = c.info(&s, half);
    assert_eq!(info.created, "2023-11-14T22:13:20.5Z");
    assert_eq!(info.ts, info.created);
}
