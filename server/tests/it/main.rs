//! The one integration-test binary. Every test starts its own server process: natsd by
//! default, or whatever `NATSD_TEST_BIN` names (`NATSD_TEST_BIN=nats-server` proves the
//! tests against the reference server). Set `NATSD_TEST_LOG=1` to echo server logs.

// A test binary has no public API, and tests may unwrap (HELPERS.md).
#![allow(unreachable_pub, clippy::unwrap_used)]

mod cmdline;
mod common;

mod differential;
mod flow_control;
mod limits;
mod malformed;
mod monitor;
mod proto;
mod pubsub;
mod reload_request;
mod unsupported;
mod websocket;
