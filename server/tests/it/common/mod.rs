//! Shared helpers for the integration tests. Servers, raw clients, ports and waiting come
//! from the workspace's one harness, `testkit`.
//!
//! The binary under test is `natsd` (the one cargo built) unless `NATSD_TEST_BIN` names
//! another one (for example `NATSD_TEST_BIN=nats-server`), so the same tests prove the
//! reference server's behaviour and then hold natsd to it.

#![allow(dead_code)] // each test module uses a different subset of the harness

pub use testkit::{msg, Frame, RawClient, ServerSpec, Signal, TestServer, EXPECT_TIMEOUT};

/// The binary under test: `NATSD_TEST_BIN`, else the natsd that cargo built.
pub fn server_under_test_bin() -> String {
    testkit::natsd().display().to_string()
}

/// Builds a payload of `len` bytes.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A server round trip on `client`'s connection: async-nats `flush()` only empties the
/// socket buffer, so a SUB may still be unprocessed when another connection publishes.
/// A message to itself comes back only after the server has handled everything before it.
pub async fn barrier(client: &async_nats::Client) {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(EXPECT_TIMEOUT, sub.next())
        .await
        .expect("barrier round trip timed out")
        .expect("barrier subscription closed");
}
