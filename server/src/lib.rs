//! natsd: a NATS-compatible messaging server.
//!
//! # Layout
//! - [`subject`]: subject validation, tokenizing, wildcard matching and subset checks.
//! - [`sublist`]: the per-account subscription trie with its match cache.
//! - [`proto`]: the client protocol: zero-copy parser over the read buffer and frame encoders.
//! - [`config`]: nats.conf lexer/parser, typed [`config::Options`], command-line flags.
//! - [`store`]: JetStream message stores (file and memory) behind one trait.

pub mod config;
pub mod proto;
pub mod store;
pub mod subject;
pub mod sublist;
