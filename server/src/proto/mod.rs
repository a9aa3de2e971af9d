//! The NATS client protocol.
//!
//! CONTRACT (implemented by the parser work):
//! - `parser::parse(buf: &[u8], limits: &ParseLimits) -> Result<Parsed<'_>, ProtoError>` looks at
//!   the start of `buf` only. `Parsed::Op { op: ClientOp<'_>, consumed: usize }` when a whole op
//!   (with its payload) is there; `Parsed::NeedMore { at_least: usize }` otherwise (consumes
//!   nothing; `at_least` is the total buffer length needed when known, e.g. once a PUB control
//!   line is parsed). Errors are final: the caller sends `err.client_error()` (if any) and closes.
//! - `encode`: writers that append server frames into a `BytesMut` with no allocation:
//!   `msg(out, subject, sid, reply, payload)`, `hmsg(out, subject, sid, reply, headers, payload)`,
//!   `info(out, json)`, `err(out, text)`, and constants `PING`, `PONG`, `OK`.

pub mod encode;
pub(crate) mod headers;
pub(crate) mod parser;
