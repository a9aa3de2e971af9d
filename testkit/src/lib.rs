//! The one test harness of the workspace: the server and cli integration tests and the
//! benchmark start servers, find ports, wait for conditions and read HTTP through it.
//!
//! # Layout
//! - [`bins`]: which binaries run (natsd under test, the reference nats-server, a Python
//!   with nats-py) and the rule for a missing reference: a comparison fails without it,
//!   unless `NATSD_SKIP_REFERENCE=1` explicitly skips it for a quick local run.
//! - [`ports`]: free 127.0.0.1 ports.
//! - [`server`]: [`TestServer`], a natsd or nats-server process: readiness on its
//!   `Server is ready` log line, the log kept and printed when the test fails, stop,
//!   kill -9 and restart on the same ports and store.
//! - [`wait`]: [`eventually`] and [`eventually_async`], the one way to wait for a condition
//!   that has no readiness signal.
//! - [`http`]: GET through reqwest; the status code is always returned or checked.
//! - [`raw`]: [`RawClient`], a raw-protocol client with send/expect helpers.
//! - [`jwt`]: operator, account and user JWTs and `.creds` files for operator-mode tests.
//!
//! Environment: `NATSD_TEST_BIN` (server under test), `NATS_SERVER_BIN` (reference),
//! `NATSD_SKIP_REFERENCE=1` (skip comparisons whose reference is missing), `NATSD_TEST_LOG=1`
//! (echo every server log line as it arrives).

// A test harness fails by panicking: that is how a test reports.
#![allow(
    clippy::unwrap_used,
    reason = "a test harness reports failure by panicking"
)]

pub mod bins;
pub mod http;
pub mod jwt;
pub mod ports;
pub mod raw;
pub mod server;
pub mod wait;

pub use bins::{natsd, natsd_and_reference, python_with_nats, reference_server, with_reference};
pub use ports::{free_port, free_port_range};
pub use raw::{msg, Frame, RawClient, EXPECT_TIMEOUT};
pub use server::{ServerSpec, Signal, StartError, TestServer};
pub use wait::{
    eventually, eventually_async, fetch_until, fetch_until_async, try_eventually,
    try_eventually_async, Check,
};
