//! Zero-copy parser for client → server operations. See the module contract in `proto`.

/// Limits the parser enforces while framing (they can change on reload).
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// `max_control_line`: the argument bytes after `OP ` up to CR (default 4096).
    pub max_control_line: usize,
    /// `max_payload`: PUB size / HPUB total size (default 1 MiB).
    pub max_payload: usize,
}

/// One client operation, borrowing from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientOp<'a> {
    Connect(&'a [u8]),
    Pub { subject: &'a [u8], reply: Option<&'a [u8]>, payload: &'a [u8] },
    /// `headers` is the header block including its final blank line; `payload` follows it.
    HPub { subject: &'a [u8], reply: Option<&'a [u8]>, headers: &'a [u8], payload: &'a [u8] },
    Sub { subject: &'a [u8], queue: Option<&'a [u8]>, sid: &'a [u8] },
    /// `max` is `Some(n)` for `UNSUB sid n`; a non-numeric max parses as `Some(0)` (unsubscribe now).
    Unsub { sid: &'a [u8], max: Option<u64> },
    Ping,
    Pong,
    /// `+OK` and `INFO` from a client are ignored.
    Ignored,
    /// `-ERR` from a client: the server closes without a reply.
    Err,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    Op { op: ClientOp<'a>, consumed: usize },
    NeedMore { at_least: usize },
}

/// Why a connection must be closed; `client_error()` is the `-ERR` text, if the real server sends one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("unknown protocol operation")]
    UnknownOp,
    #[error("maximum control line exceeded")]
    MaxControlLine,
    #[error("maximum payload exceeded")]
    MaxPayload,
    /// Wrong argument count, bad size, etc.: the real server closes silently.
    #[error("malformed arguments")]
    BadArgs,
    /// `-ERR` received from the client.
    #[error("client sent -ERR")]
    ClientErr,
}

impl ProtoError {
    pub fn client_error(&self) -> Option<&'static str> {
        todo!()
    }
}

pub fn parse<'a>(_buf: &'a [u8], _limits: &ParseLimits) -> Result<Parsed<'a>, ProtoError> {
    todo!()
}
