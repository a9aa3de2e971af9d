//! Tenancy: accounts, authentication, permissions, hot reload and TLS, exercised against a
//! natsd process (and against the real nats-server when it is on PATH, as a differential check).
//!
//! `NATSD_TEST_LOG=1` echoes the servers' logs.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

#[path = "tenancy/harness.rs"]
mod harness;

#[path = "tenancy/configs.rs"]
mod configs;

#[path = "tenancy/accounts.rs"]
mod accounts;

#[path = "tenancy/permissions.rs"]
mod permissions;

#[path = "tenancy/reload.rs"]
mod reload;

#[path = "tenancy/tls.rs"]
mod tls;

#[path = "tenancy/tls_parity.rs"]
mod tls_parity;

#[path = "tenancy/bench.rs"]
mod bench;

#[path = "tenancy/nkeys.rs"]
mod nkeys;

#[path = "tenancy/jwt.rs"]
mod jwt;

#[path = "tenancy/jwt_limits.rs"]
mod jwt_limits;

#[path = "tenancy/jwt_imports.rs"]
mod jwt_imports;

#[path = "tenancy/jwt_live.rs"]
mod jwt_live;
