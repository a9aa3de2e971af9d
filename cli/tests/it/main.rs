#![allow(clippy::unwrap_used, reason = "tests fail loudly")]
//! End-to-end tests: the real `manage` binary in temp deployments, with the real
//! server binary (`NATSD_BIN`, default `nats-server`) where a server is needed.

mod adversarial;
mod cluster;
mod common;
mod crash;
mod errors;
mod fuzz_replay;
mod nkey;
mod server;
mod tenants;
