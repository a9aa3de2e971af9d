//! natsd: a NATS-compatible messaging server.
//!
//! # Layout
//! - [`server`]: the server: accounts, client registry, listeners, reload, lame duck, shutdown.
//! - [`client`]: one connection: reader (parse, route) and writer (flush) tasks, slow consumers.
//! - [`route`]: delivery to matched subscriptions, server publishes, internal subscriptions.
//! - [`account`]: isolated subject spaces, each with its own sublist and limits.
//! - [`auth`]: authentication (bcrypt with a verification cache) and permissions.
//! - [`subject`]: subject validation, tokenizing, wildcard matching and subset checks.
//! - [`sublist`]: the per-account subscription trie with its match cache.
//! - [`subject_transform`]: subject rewrites (`src` → `dest` with wildcards and mapping functions).
//! - [`proto`]: the client protocol: zero-copy parser over the read buffer and frame encoders.
//! - [`config`]: nats.conf lexer/parser, typed [`config::Options`], command-line flags.
//! - [`monitor`]: HTTP monitoring endpoints (`/varz`, `/healthz`, ...).
//! - [`tls`]: rustls acceptor from the `tls {}` block.
//! - [`signal`]: `--signal` to a running server.
//! - [`logging`]: nats-server style log lines.
//! - [`js_errors`]: the one table of named JetStream API errors (nats-server's `errors.json`).
//! - `json`: request bodies decoded with Go's meaning of `null` (not set).
//! - [`jetstream`]: JetStream streams and the `$JS.API` over the stores.
//! - [`store`]: JetStream message stores (file and memory) behind one trait.
//! - [`consumer`]: JetStream consumers: delivery state machine, pull/push, acks, driver task.
//! - `fuzz`: entry points for the fuzz targets in `fuzz/` and their stable replay test.

pub mod account;
pub mod auth;
pub mod client;
pub mod config;
pub mod consumer;
#[doc(hidden)]
pub mod fuzz;
pub mod jetstream;
pub mod js_errors;
pub(crate) mod json;
pub mod logging;
pub mod monitor;
pub mod node;
pub mod outbound;
pub mod proto;
pub mod route;
pub mod server;
pub mod signal;
pub mod store;
pub mod subject;
pub mod subject_transform;
pub mod sublist;
pub mod subscription;
pub mod tls;
