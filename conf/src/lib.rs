//! The value rules of nats.conf and of nats-server's output that both natsd and `manage` need,
//! written once: `1G` means 10^9 bytes, `1.5ms` prints as `1.5ms`, a time prints as Go prints
//! it, and `orders.>` matches the same subjects, wherever this workspace reads or writes them.
//! Each rule's tests say which nats-server 2.15.1 behaviour they pin and how it was checked
//! against the real binary.
//!
//! The server's typed options (what each key means, defaults, refusals) stay in the server
//! crate; this crate knows values, not options.
//!
//! # Layout
//! - `parser`: the nats.conf lexer and parser (text → tree with spans; includes and
//!   `$VARIABLE`s resolved), and [`read_file`] for a file on disk.
//! - `digest`: nats-server's `config_digest` of a parsed tree.
//! - `size`: sizes (`1G` = 10^9, `1GB` = `1Gi` = 2^30; the quoted JetStream form `"1G"` = 2^30).
//! - `duration`: Go durations, parsed as `time.ParseDuration` and printed as
//!   `time.Duration.String()`.
//! - `timestamp`: RFC 3339 times as Go's `time.Time` prints them (`.5Z`, not `.500Z`).
//! - `subject`: subject validation, wildcard matching, subset and overlap (hot-path code).
//! - `bcrypt`: which passwords nats-server treats as bcrypt hashes.
//! - `keys`: option names (with nats-server's aliases) that more than the server reads.

pub mod bcrypt;
pub mod digest;
pub mod duration;
pub mod keys;
pub mod parser;
pub mod size;
pub mod subject;
pub mod timestamp;

use std::path::Path;

pub use digest::digest;
pub use parser::{Entry, Env, Map, Node, Span, Value};

/// Read and parse a nats.conf file: includes resolved relative to the including file, `$NAME`
/// references the file does not define looked up in `env`. Invalid UTF-8 is read lossily, as
/// nats-server reads bytes. The error is nats-server's wording (the first error only, as its
/// parser stops at the first).
pub fn read_file(path: &Path, env: Env<'_>) -> Result<Map, String> {
    let bytes = std::fs::read(path).map_err(|e| parser::io_message(path, &e))?;
    let text = String::from_utf8_lossy(&bytes);
    let dir = path.parent().map(Path::to_path_buf);
    parser::parse_text(&text, &path.display().to_string(), dir, 0, env)
}
