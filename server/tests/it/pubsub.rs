//! Publish/subscribe semantics: wildcards, queue groups, request/reply, headers,
//! auto-unsubscribe and fan-out at scale, mostly through async-nats.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;

use crate::common::{barrier, msg, Frame, TestServer};

const RECV_TIMEOUT: Duration = Duration::from_secs(5);

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(RECV_TIMEOUT, sub.next())
        .await
        .expect("timed out waiting for a message")
        .expect("subscription ended")
}

async fn assert_no_message(sub: &mut async_nats::Subscriber) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
        panic!("unexpected message on {}: {:?}", m.subject, m.payload);
    }
}

#[tokio::test]
async fn publish_reaches_subscriber() {
    let server = TestServer::plain();
    let sub_client = server.client().await;
    let pub_client = server.client().await;
    let mut sub = sub_client.subscribe("orders.created").await.unwrap();
    barrier(&sub_client).await;
    pub_client
        .publish("orders.created", r#"{"id":1}"#.into())
        .await
        .unwrap();
    pub_client.flush().await.unwrap();
    let m = next(&mut sub).await;
    assert_eq!(m.subject.as_str(), "orders.created");
    assert_eq!(&m.payload[..], br#"{"id":1}"#);
}

/// protocol.md §3: subs foo.>(1) foo.*(2) *(3) >(4) *.bar(5) foo.*.baz(6).
#[tokio::test]
async fn wildcard_matrix_matches_reference_table() {
    let server = TestServer::plain();
    let mut sub = server.raw_ready().await;
    sub.send(
        "SUB foo.> 1\r\nSUB foo.* 2\r\nSUB * 3\r\nSUB > 4\r\nSUB *.bar 5\r\nSUB foo.*.baz 6\r\n",
    )
    .await;
    sub.ping_pong().await;
    let mut publisher = server.raw_ready().await;
    let table: &[(&str, &[&str])] = &[
        ("foo", &["3", "4"]),
        ("foo.bar", &["1", "2", "4", "5"]),
        ("foo.bar.baz", &["1", "4", "6"]),
        ("x.bar", &["4", "5"]),
        ("nomatch.a.b.c", &["4"]),
    ];
    for (subject, sids) in table {
        publisher.send(format!("PUB {subject} 2\r\nhi\r\n")).await;
        publisher.ping_pong().await;
        let mut got = sub.frames_until_pong().await;
        got.sort();
        let mut want: Vec<Frame> = sids.iter().map(|sid| msg(subject, sid, b"hi")).collect();
        want.sort();
        assert_eq!(got, want, "deliveries for {subject}");
    }
}

#[tokio::test]
async fn client_wildcards_and_non_matches() {
    let server = TestServer::plain();
    let client = server.client().await;
    let mut star = client.subscribe("payments.*").await.unwrap();
    let mut tail = client.subscribe("orders.>").await.unwrap();
    barrier(&client).await;
    let publisher = server.client().await;
    for subject in [
        "payments.card",
        "payments.card.visa",
        "payments",
        "orders",
        "orders.item.added",
        "order.x",
    ] {
        publisher.publish(subject, subject.into()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    assert_eq!(next(&mut star).await.subject.as_str(), "payments.card");
    assert_eq!(next(&mut tail).await.subject.as_str(), "orders.item.added");
    assert_no_message(&mut star).await;
    assert_no_message(&mut tail).await;
}

#[tokio::test]
async fn queue_group_delivers_each_message_once_spread_over_members() {
    let server = TestServer::plain();
    let client = server.client().await;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(
            client
                .queue_subscribe("work", "workers".into())
                .await
                .unwrap(),
        );
    }
    let mut other_group = client
        .queue_subscribe("work", "auditors".into())
        .await
        .unwrap();
    let mut plain = client.subscribe("work").await.unwrap();
    barrier(&client).await;

    let publisher = server.client().await;
    const N: usize = 300;
    for i in 0..N {
        publisher
            .publish("work", i.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();

    for _ in 0..N {
        next(&mut plain).await;
        next(&mut other_group).await;
    }
    let mut seen = HashMap::new();
    let mut per_member = Vec::new();
    for member in &mut members {
        let mut count = 0;
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), member.next()).await
        {
            *seen.entry(m.payload.to_vec()).or_insert(0) += 1;
            count += 1;
        }
        per_member.push(count);
    }
    assert_eq!(seen.len(), N, "every message reached the group");
    assert!(
        seen.values().all(|&c| c == 1),
        "no message twice in a group"
    );
    assert!(
        per_member.iter().all(|&c| c > 0),
        "messages spread over all members: {per_member:?}"
    );
    assert_no_message(&mut plain).await;
}

#[tokio::test]
async fn request_reply_round_trip() {
    let server = TestServer::plain();
    let responder = server.client().await;
    let mut service = responder.subscribe("inventory.check").await.unwrap();
    barrier(&responder).await;
    tokio::spawn(async move {
        while let Some(req) = service.next().await {
            let reply = req.reply.unwrap();
            let mut body = b"stock for ".to_vec();
            body.extend_from_slice(&req.payload);
            responder.publish(reply, body.into()).await.unwrap();
        }
    });
    let requester = server.client().await;
    let response = tokio::time::timeout(
        RECV_TIMEOUT,
        requester.request("inventory.check", "ABC123".into()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(&response.payload[..], b"stock for ABC123");
}

#[tokio::test]
async fn request_without_responders_fails_fast() {
    let server = TestServer::plain();
    let client = server.client().await;
    let err = tokio::time::timeout(RECV_TIMEOUT, client.request("nobody.home", "x".into()))
        .await
        .expect("no-responders must come back before the request timeout")
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test]
async fn headers_round_trip() {
    let server = TestServer::plain();
    let client = server.client().await;
    let mut sub = client.subscribe("h.test").await.unwrap();
    barrier(&client).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Trace-Id", "abc-123");
    headers.append("Multi", "one");
    headers.append("Multi", "two");
    client
        .publish_with_headers("h.test", headers, "body".into())
        .await
        .unwrap();
    barrier(&client).await;
    let m = next(&mut sub).await;
    let got = m.headers.expect("headers arrive");
    assert_eq!(got.get("Trace-Id").unwrap().as_str(), "abc-123");
    let multi: Vec<&str> = got
        .get_all("Multi")
        .map(async_nats::HeaderValue::as_str)
        .collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(&m.payload[..], b"body");
}

#[tokio::test]
async fn hpub_exact_bytes_and_plain_msg_for_non_header_subscriber() {
    let server = TestServer::plain();
    let mut with_headers = server.raw_ready().await;
    with_headers.send("SUB foo 1\r\n").await;
    with_headers.ping_pong().await;
    let mut without = server.raw().await;
    without
        .handshake(r#"{"verbose":false,"pedantic":false,"headers":false}"#)
        .await;
    without.send("SUB foo 7\r\n").await;
    without.ping_pong().await;

    let mut publisher = server.raw_ready().await;
    publisher
        .send("HPUB foo 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n")
        .await;
    publisher
        .send("HPUB foo rep 18 18\r\nNATS/1.0\r\nA: b\r\n\r\n\r\n")
        .await;
    publisher.ping_pong().await;
    with_headers
        .expect("HMSG foo 1 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n")
        .await;
    with_headers
        .expect("HMSG foo 1 rep 18 18\r\nNATS/1.0\r\nA: b\r\n\r\n\r\n")
        .await;
    without.expect("MSG foo 7 5\r\nhello\r\n").await;
    without.expect("MSG foo 7 rep 0\r\n\r\n").await;
}

#[tokio::test]
async fn auto_unsubscribe_delivers_exactly_max() {
    let server = TestServer::plain();
    let mut sub = server.raw_ready().await;
    sub.send("SUB foo 1\r\nUNSUB 1 2\r\n").await;
    sub.ping_pong().await;
    let mut publisher = server.raw_ready().await;
    for _ in 0..4 {
        publisher.send("PUB foo 1\r\nx\r\n").await;
    }
    publisher.ping_pong().await;
    let got = sub.frames_until_pong().await;
    assert_eq!(got, vec![msg("foo", "1", b"x"), msg("foo", "1", b"x")]);
}

#[tokio::test]
async fn client_unsubscribe_after() {
    let server = TestServer::plain();
    let client = server.client().await;
    let mut sub = client.subscribe("limited").await.unwrap();
    sub.unsubscribe_after(2).await.unwrap();
    barrier(&client).await;
    let publisher = server.client().await;
    for i in 0..5 {
        publisher
            .publish("limited", i.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    assert_eq!(&next(&mut sub).await.payload[..], b"0");
    assert_eq!(&next(&mut sub).await.payload[..], b"1");
    let end = tokio::time::timeout(RECV_TIMEOUT, sub.next())
        .await
        .unwrap();
    assert!(end.is_none(), "subscription ends after 2 messages");
}

#[tokio::test]
async fn thousand_subscriptions_on_one_connection_all_receive() {
    let server = TestServer::plain();
    let client = server.client().await;
    let mut subs = Vec::new();
    for i in 0..1000 {
        subs.push(client.subscribe(format!("fan.{i}")).await.unwrap());
    }
    let mut everyone = Vec::new();
    for _ in 0..1000 {
        everyone.push(client.subscribe("fan.all").await.unwrap());
    }
    barrier(&client).await;
    let publisher = server.client().await;
    for i in 0..1000 {
        publisher
            .publish(format!("fan.{i}"), i.to_string().into())
            .await
            .unwrap();
    }
    publisher.publish("fan.all", "all".into()).await.unwrap();
    publisher.flush().await.unwrap();
    for (i, sub) in subs.iter_mut().enumerate() {
        assert_eq!(next(sub).await.payload, i.to_string().as_bytes());
    }
    for sub in &mut everyone {
        assert_eq!(&next(sub).await.payload[..], b"all");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_connections_round_trip() {
    let server = TestServer::plain();
    let responder = server.client().await;
    let mut service = responder.subscribe("echo").await.unwrap();
    barrier(&responder).await;
    tokio::spawn(async move {
        while let Some(req) = service.next().await {
            if let Some(reply) = req.reply {
                responder.publish(reply, req.payload).await.unwrap();
            }
        }
    });
    let url = server.url();
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = async_nats::connect(&url).await.unwrap();
                let body = format!("conn-{i}");
                let resp = tokio::time::timeout(
                    Duration::from_secs(30),
                    client.request("echo", body.clone().into()),
                )
                .await
                .unwrap()
                .unwrap();
                assert_eq!(resp.payload, body.as_bytes());
                client
            })
        })
        .collect();
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    assert_eq!(clients.len(), 500);
    server.assert_alive().await;
}
