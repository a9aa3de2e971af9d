//! Core protocol behaviour on the wire: INFO, CONNECT options, verbose/pedantic, echo,
//! second INFO, sids, no-responders bytes, PING handling (protocol.md §1-§6).

use std::time::Duration;

use crate::common::{msg, Frame, ServerSpec, TestServer};

#[tokio::test]
async fn info_has_the_fields_clients_rely_on() {
    let server = TestServer::plain();
    let client = server.raw().await;
    let info = &client.info;
    let server_id = info["server_id"].as_str().unwrap();
    assert_eq!(server_id.len(), 56, "nkey-style server id: {server_id}");
    assert!(server_id.starts_with('N'));
    assert!(info["server_name"].is_string());
    let version = info["version"].as_str().unwrap();
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(parts.len(), 3, "version 2.x.y: {version}");
    assert_eq!(parts[0], "2");
    assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()), "{version}");
    assert_eq!(info["proto"], 1);
    assert_eq!(info["headers"], true);
    assert_eq!(info["max_payload"], 1_048_576);
    assert_eq!(info["port"], server.port);
    assert_eq!(info["host"], "127.0.0.1");
    assert!(info["client_id"].is_u64());
    assert_eq!(info["client_ip"], "127.0.0.1");
    assert!(
        info.get("auth_required").is_none(),
        "no auth_required without auth"
    );

    let second = server.raw().await;
    assert_ne!(
        second.info["client_id"], info["client_id"],
        "client ids differ"
    );
    assert_eq!(second.info["server_id"], info["server_id"]);
}

#[tokio::test]
async fn info_line_ends_with_space_crlf() {
    let server = TestServer::plain();
    let mut client = crate::common::RawClient::connect_silent(&server.addr()).await;
    let line = client.expect_regex(r"^INFO \{[^\r\n]*\} \r\n").await;
    assert!(line.ends_with(b"} \r\n"));
}

#[tokio::test]
async fn verbose_sends_ok_for_connect_sub_pub_unsub_but_not_ping() {
    let server = TestServer::plain();
    let mut c = server.raw().await;
    c.send("CONNECT {\"verbose\":true,\"pedantic\":false}\r\n")
        .await;
    c.expect("+OK\r\n").await;
    c.send("SUB foo 1\r\n").await;
    c.expect("+OK\r\n").await;
    c.send("PUB foo 2\r\nhi\r\n").await;
    c.expect("+OK\r\nMSG foo 1 2\r\nhi\r\n").await;
    c.send("UNSUB 1\r\n").await;
    c.expect("+OK\r\n").await;
    c.send("UNSUB 99\r\n").await;
    c.expect("+OK\r\n").await;
    c.send("PING\r\n").await;
    c.expect("PONG\r\n").await;
}

#[tokio::test]
async fn connect_defaults_are_verbose_and_pedantic() {
    let server = TestServer::plain();
    let mut c = server.raw().await;
    c.send("CONNECT {}\r\n").await;
    c.expect("+OK\r\n").await;
    c.send("PUB foo.* 2\r\nhi\r\n").await;
    c.expect("-ERR 'Invalid Publish Subject'\r\n").await;
}

#[tokio::test]
async fn no_connect_at_all_runs_verbose() {
    let server = TestServer::plain();
    let mut c = server.raw().await;
    c.send("SUB foo 1\r\n").await;
    c.expect("+OK\r\n").await;
}

#[tokio::test]
async fn pedantic_invalid_publish_subject_is_still_delivered() {
    let server = TestServer::plain();
    let mut c = server.raw().await;
    c.handshake(r#"{"verbose":false,"pedantic":true}"#).await;
    c.send("SUB > 1\r\nPUB foo.* 2\r\nhi\r\n").await;
    c.expect("-ERR 'Invalid Publish Subject'\r\nMSG foo.* 1 2\r\nhi\r\n")
        .await;
    c.ping_pong().await;
}

#[tokio::test]
async fn non_pedantic_wildcard_publish_delivered_and_empty_tokens_match_nothing() {
    let server = TestServer::plain();
    let mut c = server.raw_ready().await;
    c.send("SUB > 1\r\nPUB foo.> 2\r\nhi\r\nPUB foo..bar 2\r\nhi\r\nPUB .foo 2\r\nhi\r\n")
        .await;
    assert_eq!(c.frames_until_pong().await, vec![msg("foo.>", "1", b"hi")]);
}

#[tokio::test]
async fn echo_false_suppresses_own_messages_only() {
    let server = TestServer::plain();
    let mut quiet = server.raw().await;
    quiet
        .handshake(r#"{"verbose":false,"pedantic":false,"echo":false}"#)
        .await;
    quiet.send("SUB foo 1\r\nPUB foo 2\r\nhi\r\n").await;
    assert_eq!(quiet.frames_until_pong().await, vec![]);
    let mut other = server.raw_ready().await;
    other.send("PUB foo 2\r\nyo\r\n").await;
    other.ping_pong().await;
    assert_eq!(
        quiet.frames_until_pong().await,
        vec![msg("foo", "1", b"yo")]
    );
}

#[tokio::test]
async fn echo_default_delivers_own_messages() {
    let server = TestServer::plain();
    let mut c = server.raw_ready().await;
    c.send("SUB foo 1\r\nPUB foo 2\r\nhi\r\n").await;
    assert_eq!(c.frames_until_pong().await, vec![msg("foo", "1", b"hi")]);
}

#[tokio::test]
async fn duplicate_sid_is_ignored() {
    let server = TestServer::plain();
    let mut c = server.raw_ready().await;
    c.send("SUB foo 1\r\nSUB bar 1\r\nPUB bar 1\r\nb\r\nPUB foo 1\r\nf\r\n")
        .await;
    assert_eq!(c.frames_until_pong().await, vec![msg("foo", "1", b"f")]);
}

#[tokio::test]
async fn one_msg_per_matching_subscription_and_publish_subject_in_msg() {
    let server = TestServer::plain();
    let mut c = server.raw_ready().await;
    c.send("SUB foo.> 1\r\nSUB > 4\r\nPUB foo.bar 1\r\nx\r\n")
        .await;
    let mut got = c.frames_until_pong().await;
    got.sort();
    assert_eq!(
        got,
        vec![msg("foo.bar", "1", b"x"), msg("foo.bar", "4", b"x")]
    );
}

#[tokio::test]
async fn sid_may_be_any_token_and_reply_is_relayed() {
    let server = TestServer::plain();
    let mut c = server.raw_ready().await;
    c.send("SUB q.c abc-XYZ_1\r\nPUB q.c my.reply 1\r\n1\r\n")
        .await;
    c.expect("MSG q.c abc-XYZ_1 my.reply 1\r\n1\r\n").await;
}

#[tokio::test]
async fn empty_payload_and_unsub_stop_delivery() {
    let server = TestServer::plain();
    let mut c = server.raw_ready().await;
    c.send("SUB foo 1\r\nPUB foo 0\r\n\r\nUNSUB 1\r\nPUB foo 1\r\nx\r\n")
        .await;
    assert_eq!(c.frames_until_pong().await, vec![msg("foo", "1", b"")]);
}

#[tokio::test]
async fn framing_is_lenient_about_case_tabs_and_bare_lf() {
    let server = TestServer::plain();
    let mut c = server.raw_ready().await;
    c.send("sub\tfoo   1\npub foo 2\r\nhi\r\nping x\r\n").await;
    c.expect("MSG foo 1 2\r\nhi\r\nPONG\r\n").await;
    c.send("PINGX\r\nPONGX\r\n+OK\r\nINFO {}\r\nPING\r\n").await;
    c.expect("PONG\r\nPONG\r\n").await;
}

#[tokio::test]
async fn second_info_after_first_ping_with_protocol_1() {
    let server = TestServer::plain();
    let mut c = server.raw().await;
    c.send("CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n")
        .await;
    c.expect("PONG\r\n").await;
    let info = c.expect_info().await;
    assert_eq!(info["connect_info"], true);
    assert_eq!(info["remote_account"], "$G");
    assert_eq!(info["client_id"], c.info["client_id"]);
    c.send("PING\r\n").await;
    c.expect("PONG\r\n").await;
    c.expect_nothing(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn no_second_info_with_protocol_0() {
    let server = TestServer::plain();
    let mut c = server.raw().await;
    c.send("CONNECT {\"verbose\":false,\"protocol\":0}\r\nPING\r\n")
        .await;
    c.expect("PONG\r\n").await;
    c.expect_nothing(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn no_responders_exact_bytes() {
    let server = TestServer::plain();
    let mut c = server.raw_ready().await;
    c.send("SUB _INBOX.x 1\r\nPUB nobody _INBOX.x 0\r\n\r\n")
        .await;
    c.expect("HMSG _INBOX.x 1 38 38\r\nNATS/1.0 503\r\nNats-Subject: nobody\r\n\r\n\r\n")
        .await;
}

#[tokio::test]
async fn no_responders_not_sent_unless_asked() {
    let server = TestServer::plain();
    let mut c = server.raw().await;
    c.handshake(r#"{"verbose":false,"pedantic":false,"headers":true}"#)
        .await;
    c.send("SUB _INBOX.x 1\r\nPUB nobody _INBOX.x 0\r\n\r\n")
        .await;
    assert_eq!(c.frames_until_pong().await, vec![]);
}

#[tokio::test]
async fn reserved_reply_prefix_is_a_permissions_violation() {
    let server = TestServer::plain();
    let mut c = server.raw_ready().await;
    c.send("SUB foo 1\r\nPUB foo _R_.x 1\r\nx\r\n").await;
    assert_eq!(
        c.frames_until_pong().await,
        vec![Frame::Err(
            "Permissions Violation for Publish with Reply of \"_R_.x\"".into()
        )]
    );
}

#[tokio::test]
async fn server_pings_and_answered_pings_keep_the_connection() {
    let server =
        TestServer::start(ServerSpec::new().config("ping_interval: \"1s\"\nping_max: 2\n"));
    let mut c = server.raw_ready().await;
    for _ in 0..4 {
        c.expect("PING\r\n").await;
        c.send("PONG\r\n").await;
    }
    c.ping_pong().await;
}

#[tokio::test]
async fn unanswered_pings_give_stale_connection() {
    let server =
        TestServer::start(ServerSpec::new().config("ping_interval: \"1s\"\nping_max: 2\n"));
    let mut c = server.raw_ready().await;
    let start = std::time::Instant::now();
    c.expect("PING\r\n").await;
    c.expect("PING\r\n").await;
    c.expect("-ERR 'Stale Connection'\r\n").await;
    c.expect_closed().await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
        "stale after about 3 intervals, took {took:?}"
    );
    server.assert_alive().await;
}
