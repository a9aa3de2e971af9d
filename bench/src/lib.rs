//! Side-by-side benchmark of natsd against the reference nats-server.
//!
//! # Layout
//!
//! * [`server`]: start a server on a free loopback port, wait for INFO, read
//!   its CPU time and RSS from /proc, kill it on drop.
//! * [`proto`]: the client protocol over `std::net`: handshake and a fast
//!   frame reader for `MSG` streams.
//! * [`load`]: load generators: batched publisher with a lag gate,
//!   subscriber threads, request/reply, connection openers.
//! * [`scenarios`]: the [`scenarios::Scenario`] trait and the catalog.
//! * [`runner`]: rounds, alternation between servers, server pool.
//! * [`report`]: medians, ratios, text / markdown / JSON output.
//! * [`stats`]: median and percentile math.
//! * [`sys`]: the only `unsafe` (rlimit, parent-death signal, clock ticks).

pub mod load;
pub mod proto;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod server;
pub mod stats;
pub mod sys;
