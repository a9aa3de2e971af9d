//! Option names, with nats-server's aliases, that `manage` reads from a parsed tree as well as
//! the server's loader: written once, so the two never read different keys. Keys match
//! case-insensitively, as nats-server's do; the caller lower-cases.

/// `jetstream { max_memory_store }`: the server's memory limit for JetStream.
pub const JS_MAX_MEMORY_STORE: &[&str] = &["max_memory_store", "max_mem_store", "max_mem"];
/// `jetstream { max_file_store }`: the server's file storage limit for JetStream.
pub const JS_MAX_FILE_STORE: &[&str] = &["max_file_store", "max_file"];
/// `jetstream { enabled }`.
pub const JS_ENABLED: &[&str] = &["enabled", "enable"];
