//! natsd: a NATS-compatible messaging server.
//!
//! # Layout
//! - [`server`]: the server: accounts, client registry, listeners, reload, lame duck, shutdown.
//! - [`client`]: one connection: reader (parse, route) and writer (flush) tasks, slow consumers.
//! - [`route`]: delivery to matched subscriptions, server publishes, internal subscriptions.
//! - [`account`]: isolated subject spaces, each with its own sublist and limits.
//! - [`imports`]: routing between accounts through their imports and exports.
//! - [`auth`]: authentication (bcrypt with a verification cache) and permissions.
//! - [`user_limits`]: where and when a JWT user may log in (`src`, `times`).
//! - [`subject`]: subject validation, tokenizing, wildcard matching and subset checks (the
//!   shared rules of the `natsd-conf` crate, which `manage` uses too).
//! - [`sublist`]: the per-account subscription trie with its match cache.
//! - [`subject_transform`]: subject rewrites (`src` → `dest` with wildcards and mapping functions).
//! - [`mapping`]: account subject mappings applied to client publishes (weighted transforms).
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
//!
//! # Public API
//! Every module is the crate's own except what the binary (`main.rs`), `manage`, the
//! benches, the fuzz targets and the integration tests need: [`Server`] and [`start`] (a
//! whole node), `config`, `logging`, `signal`, `subject` and `tls`, plus the hidden `fuzz`
//! entry points and `bench` re-exports. Integration tests drive the binary or these; a test
//! that needs internals is a unit test beside the code.

pub(crate) mod account;
pub(crate) mod auth;
pub(crate) mod client;
pub(crate) mod consumer;
pub(crate) mod imports;
pub(crate) mod jetstream;
pub(crate) mod js_errors;
pub(crate) mod json;
pub(crate) mod jwt;
pub(crate) mod mapping;
pub(crate) mod monitor;
pub(crate) mod node;
pub(crate) mod outbound;
pub(crate) mod proto;
pub(crate) mod route;
pub(crate) mod server;
pub(crate) mod store;
pub(crate) mod subject_transform;
pub(crate) mod sublist;
pub(crate) mod subscription;
pub(crate) mod user_limits;
pub(crate) mod websocket;

// nats.conf and the command line (also read by `manage`).
pub mod config;
// `-T`/`-D`/`-V` logging in nats-server's format.
pub mod logging;
// `--signal` to a running server.
pub mod signal;
// Subject rules: the shared ones of `natsd-conf` (which `manage` uses too).
pub use natsd_conf::subject;
// TLS settings (`manage` reads a CA file with the same rules).
pub mod tls;

pub use node::start;
pub use server::{Server, ServerError, NATSD_VERSION, NATS_COMPAT_VERSION};

// Entry points of the fuzz targets in `fuzz/` and their stable replay test.
#[doc(hidden)]
pub mod fuzz;

/// What `server/benches` measure: the client protocol parser and encoder, and the sublist.
#[doc(hidden)]
pub mod bench {
    pub use crate::proto::encode;
    pub use crate::proto::parser::{parse, ClientOp, ParseLimits, Parsed};
    pub use crate::sublist::Sublist;
}
