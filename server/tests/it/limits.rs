//! Limits: max payload, max connections, slow consumers (protocol.md §8).

use std::time::Duration;

use futures::StreamExt;

use crate::common::{barrier, payload, RawClient, ServerSpec, TestServer};

#[tokio::test]
async fn payload_of_exactly_max_is_accepted_one_more_is_a_violation() {
    let server = TestServer::plain();
    let max = 1_048_576;
    let mut sub = server.raw_ready().await;
    assert_eq!(sub.info["max_payload"], max);
    sub.send("SUB big 1\r\n").await;
    sub.ping_pong().await;

    let mut publisher = server.raw_ready().await;
    let body = payload(max);
    let mut frame = format!("PUB big {max}\r\n").into_bytes();
    frame.extend_from_slice(&body);
    frame.extend_from_slice(b"\r\n");
    publisher.send(&frame).await;
    publisher.ping_pong().await;
    let mut want = format!("MSG big 1 {max}\r\n").into_bytes();
    want.extend_from_slice(&body);
    want.extend_from_slice(b"\r\n");
    sub.expect_bytes(&want).await;

    // The size is checked on the control line, before any payload byte is sent.
    publisher.send(format!("PUB big {}\r\n", max + 1)).await;
    publisher
        .expect("-ERR 'Maximum Payload Violation'\r\n")
        .await;
    publisher.expect_closed().await;
    sub.ping_pong().await;
}

#[tokio::test]
async fn configured_max_payload_is_advertised_and_enforced() {
    let server = TestServer::start(ServerSpec::new().config("max_payload: 1024\n"));
    let mut c = server.raw_ready().await;
    assert_eq!(c.info["max_payload"], 1024);
    c.send("PUB foo 1025\r\n").await;
    c.expect("-ERR 'Maximum Payload Violation'\r\n").await;
    c.expect_closed().await;
    server.assert_alive().await;
}

#[tokio::test]
async fn client_refuses_oversized_publish() {
    let server = TestServer::start(ServerSpec::new().config("max_payload: 1024\n"));
    let client = server.client().await;
    let err = client
        .publish("foo", payload(1025).into())
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::client::PublishErrorKind::MaxPayloadExceeded
    );
    client.publish("foo", payload(1024).into()).await.unwrap();
    client.flush().await.unwrap();
}

#[tokio::test]
async fn max_connections_sends_info_then_error() {
    let server = TestServer::start(ServerSpec::new().config("max_connections: 2\n"));
    let mut first = server.raw_ready().await;
    let mut second = server.raw_ready().await;
    let mut third = server.raw().await; // INFO arrives first
    third
        .expect("-ERR 'maximum connections exceeded'\r\n")
        .await;
    third.expect_closed().await;
    first.ping_pong().await;
    second.ping_pong().await;
    drop(first);
    // The slot frees once the server notices the close; retry until it does.
    let answer = async || {
        let mut c = server.raw().await;
        c.send("CONNECT {\"verbose\":false}\r\nPING\r\n").await;
        c.next_frame().await
    };
    let freed = testkit::fetch_until_async(Duration::from_secs(5), answer, |frame| {
        matches!(frame, Some(crate::common::Frame::Pong))
    })
    .await;
    if let Err(other) = freed {
        panic!("slot never freed: {other:?}");
    }
}

/// A subscriber that stops reading is cut off silently; the publisher and a healthy
/// subscriber are unaffected and the healthy one receives every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected_others_keep_flowing() {
    let server =
        TestServer::start(ServerSpec::new().config("max_pending: 262144\nmax_payload: 32768\n"));
    let mut slow = RawClient::connect_small_rcvbuf(&server.addr(), 4096).await;
    slow.handshake(r#"{"verbose":false,"pedantic":false}"#)
        .await;
    slow.send("SUB flood 1\r\n").await;
    slow.ping_pong().await;

    const N: usize = 20_000;
    // max_pending applies to every connection, so the healthy subscriber is kept well
    // inside it: the publisher sends a batch, then waits until the healthy side has it.
    const BATCH: usize = 50;
    let healthy = server.client().await;
    let mut healthy_sub = healthy.subscribe("flood").await.unwrap();
    barrier(&healthy).await;

    let publisher = server.client().await;
    let body = bytes::Bytes::from(payload(1000));
    let mut received_by_healthy = 0;
    for _ in 0..N / BATCH {
        for _ in 0..BATCH {
            publisher.publish("flood", body.clone()).await.unwrap();
        }
        publisher.flush().await.unwrap();
        for _ in 0..BATCH {
            let m = tokio::time::timeout(Duration::from_secs(10), healthy_sub.next())
                .await
                .expect("healthy subscriber stalled")
                .expect("healthy subscription ended");
            assert_eq!(m.payload.len(), 1000);
            received_by_healthy += 1;
        }
    }
    assert_eq!(received_by_healthy, N);

    let received = slow.read_until_closed(Duration::from_secs(20)).await;
    assert!(
        received.len() < N * 1000,
        "slow consumer was cut off before getting everything ({} bytes)",
        received.len()
    );
    assert!(
        !received.windows(5).any(|w| w == b"-ERR "),
        "slow consumer close carries no -ERR"
    );
    // The publisher's connection is still healthy.
    barrier(&publisher).await;
    assert_eq!(
        publisher.connection_state(),
        async_nats::connection::State::Connected
    );
}
