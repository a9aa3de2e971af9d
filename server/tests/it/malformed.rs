//! Malformed client input over raw sockets. Each case checks the exact reaction from
//! protocol.md §9 (an -ERR and close, a silent close, or an -ERR with the connection
//! kept), and that the server and an already connected bystander are unaffected.

use crate::common::{RawClient, TestServer};

/// The handshake most cases start from, so the bad bytes are the only thing under test.
const QUIET_CONNECT: &str = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";

#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// `-ERR '<text>'` and then the server closes.
    ErrClose(&'static str),
    /// The server closes without a word.
    SilentClose,
    /// `-ERR '<text>'` and the connection keeps working.
    ErrKeep(&'static str),
}

async fn bystander(server: &TestServer) -> RawClient {
    let mut c = server.raw_ready().await;
    c.send("SUB bystander 1\r\n").await;
    c.ping_pong().await;
    c
}

async fn assert_bystander_unaffected(server: &TestServer, by: &mut RawClient) {
    by.send("PUB bystander 2\r\nok\r\n").await;
    by.expect("MSG bystander 1 2\r\nok\r\n").await;
    by.ping_pong().await;
    server.assert_alive().await;
}

async fn check(server: &TestServer, prefix: &str, input: &[u8], outcome: Outcome) {
    let mut by = bystander(server).await;
    let mut c = server.raw().await;
    c.send(prefix).await;
    c.send(input).await;
    let what = String::from_utf8_lossy(input);
    match outcome {
        Outcome::ErrClose(text) => {
            c.expect(&format!("-ERR '{text}'\r\n")).await;
            c.expect_closed().await;
        }
        Outcome::SilentClose => c.expect_closed().await,
        Outcome::ErrKeep(text) => {
            c.expect(&format!("-ERR '{text}'\r\n")).await;
            c.ping_pong().await;
        }
    }
    eprintln!("ok: {what:?} -> {outcome:?}");
    assert_bystander_unaffected(server, &mut by).await;
}

const UNKNOWN: Outcome = Outcome::ErrClose("Unknown Protocol Operation");

#[tokio::test]
async fn garbage_and_bad_keywords() {
    let server = TestServer::plain();
    for input in [
        &b"FOO BAR\r\n"[..],
        b"\x00\x01\x02garbage\r\n",
        b"\r\n",
        b" PING\r\n",
        b"PUB\r\n",
        b"SUB\r\n",
        b"UNSUB\r\n",
        b"MSG foo 1 2\r\nhi\r\n",
    ] {
        check(&server, QUIET_CONNECT, input, UNKNOWN).await;
    }
}

#[tokio::test]
async fn wrong_argument_counts_and_sizes_close_silently() {
    let server = TestServer::plain();
    for input in [
        &b"PUB foo\r\n"[..],
        b"PUB foo a b 2\r\n",
        b"PUB foo x\r\n",
        b"PUB foo -1\r\n",
        b"SUB foo\r\n",
        b"SUB foo q 1 extra\r\n",
        b"UNSUB 1 2 3\r\n",
        b"HPUB foo 10 5\r\n",
        b"-ERR 'client says no'\r\n",
    ] {
        // HPUB needs a headers-capable connection so the size check is what trips.
        let prefix = if input.starts_with(b"HPUB") {
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n"
        } else {
            QUIET_CONNECT
        };
        check(&server, prefix, input, Outcome::SilentClose).await;
    }
}

#[tokio::test]
async fn payload_not_ending_in_crlf() {
    let server = TestServer::plain();
    check(&server, QUIET_CONNECT, b"PUB foo 2\r\nhello\r\n", UNKNOWN).await;
    check(&server, QUIET_CONNECT, b"PUB foo 2\r\nhi\n", UNKNOWN).await;
}

#[tokio::test]
async fn truncated_publish_then_close_delivers_nothing() {
    let server = TestServer::plain();
    let mut by = bystander(&server).await;
    let mut watcher = server.raw_ready().await;
    watcher.send("SUB foo 1\r\n").await;
    watcher.ping_pong().await;
    {
        let mut c = server.raw().await;
        c.send(QUIET_CONNECT).await;
        c.send("PUB foo 10\r\nabc").await;
    }
    let mut c = server.raw().await;
    c.send(QUIET_CONNECT).await;
    c.send("PUB foo 10\r\nab").await;
    drop(c);
    assert_eq!(watcher.frames_until_pong().await, vec![]);
    assert_bystander_unaffected(&server, &mut by).await;
}

#[tokio::test]
async fn control_line_limit_is_4096_argument_bytes() {
    let server = TestServer::plain();
    // "SUB " + subject + " 1": the argument part is subject.len() + 2 bytes.
    let at_limit = "a".repeat(4094);
    let mut c = server.raw_ready().await;
    c.send(format!("SUB {at_limit} 1\r\n")).await;
    c.send(format!("PUB {at_limit} 2\r\nhi\r\n")).await;
    c.expect(&format!("MSG {at_limit} 1 2\r\nhi\r\n")).await;
    c.ping_pong().await;

    let over = "a".repeat(4095);
    check(
        &server,
        QUIET_CONNECT,
        format!("SUB {over} 1\r\n").as_bytes(),
        Outcome::ErrClose("maximum control line exceeded"),
    )
    .await;
    let big_connect = format!("CONNECT {{\"name\":\"{}\"}}\r\n", "n".repeat(5000));
    check(
        &server,
        "",
        big_connect.as_bytes(),
        Outcome::ErrClose("maximum control line exceeded"),
    )
    .await;
}

#[tokio::test]
async fn invalid_subscription_subjects_keep_the_connection() {
    let server = TestServer::plain();
    for subject in ["foo..bar", "foo.", ".foo", "foo.>.bar", "."] {
        check(
            &server,
            QUIET_CONNECT,
            format!("SUB {subject} 1\r\n").as_bytes(),
            Outcome::ErrKeep("Invalid Subject"),
        )
        .await;
    }
    // Also as the subject of a queue subscription.
    check(
        &server,
        QUIET_CONNECT,
        b"SUB foo..bar q 1\r\n",
        Outcome::ErrKeep("Invalid Subject"),
    )
    .await;
}

#[tokio::test]
async fn invalid_subject_does_not_create_a_subscription() {
    let server = TestServer::plain();
    let mut c = server.raw_ready().await;
    c.send("SUB foo..bar 1\r\nPUB foo..bar 1\r\nx\r\n").await;
    c.expect("-ERR 'Invalid Subject'\r\n").await;
    c.ping_pong().await;
}

#[tokio::test]
async fn bad_connect_json_closes_silently() {
    let server = TestServer::plain();
    for input in [
        &b"CONNECT {bad\r\n"[..],
        b"CONNECT {\"verbose\":\"yes\"}\r\n",
        b"CONNECT {\"echo\":1}\r\n",
        b"CONNECT [1,2]\r\n",
    ] {
        check(&server, "", input, Outcome::SilentClose).await;
    }
}

#[tokio::test]
async fn connect_option_errors() {
    let server = TestServer::plain();
    check(
        &server,
        "",
        b"CONNECT {\"verbose\":false,\"protocol\":2}\r\n",
        Outcome::ErrClose("invalid client protocol"),
    )
    .await;
    check(
        &server,
        "",
        b"CONNECT {\"verbose\":false,\"no_responders\":true}\r\n",
        Outcome::ErrClose("no responders requires headers support"),
    )
    .await;
}

#[tokio::test]
async fn hpub_without_headers_in_connect_closes_silently() {
    let server = TestServer::plain();
    check(
        &server,
        QUIET_CONNECT,
        b"HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n",
        Outcome::SilentClose,
    )
    .await;
}
