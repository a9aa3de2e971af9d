//! Zero-copy parser for client → server operations. See the module contract in `proto`.
//!
//! The parser is stateless: every call looks at the start of the read buffer and either frames
//! one whole operation (returning slices that borrow from the buffer) or asks for more bytes.
//! Re-parsing a control line while its payload trickles in is cheap next to copying it, and it
//! keeps the hot path (a whole `PUB` already in the buffer) free of state and allocation.
//!
//! # Wire rules (as the reference server behaves, see `reference/protocol.md` §1, §2, §9)
//! - Op keywords are ASCII case-insensitive and are recognised byte by byte: the first byte
//!   that cannot continue any keyword is an `Unknown Protocol Operation` (so an empty line,
//!   leading whitespace, or `MSG` from a client fail at once).
//! - `PUB`, `HPUB`, `SUB`, `UNSUB` and `-ERR` need at least one space or tab after the
//!   keyword; `CONNECT` and `INFO` take their argument with or without one.
//! - The first argument byte is taken even when it is CR or LF, so the line end is searched
//!   after it (the reference server does the same: `PUB \nfoo 2` publishes to `"\nfoo"`).
//! - A control line ends at LF. If a CR occurs anywhere in the argument part, one byte is
//!   dropped from its end (normally that CR; the reference server does this for a line that
//!   arrives in one read). SUB and UNSUB also split arguments on CR and LF; PUB and HPUB do not.
//! - Sizes are at most nine decimal digits; anything else (sign, tenth digit) is `BadArgs`.
//!   A bad UNSUB max reads as `Some(0)` (unsubscribe at once), as the reference server does.
//! - `INFO` from a client must be a JSON object or `null` (else `BadArgs`: the reference
//!   server fails to decode it and closes silently); otherwise it is ignored.
//! - The argument part (after the keyword and its blanks, up to the CR) may hold at most
//!   `max_control_line` bytes. This is also enforced while the line is still incomplete, so a
//!   client streaming an endless line is cut off as soon as it crosses the limit.
//! - A payload must be followed by exactly CR LF; anything else is `Unknown Protocol
//!   Operation`, reported as soon as the offending byte is in the buffer.
//!
//! # Deliberate deviations
//! The reference server never bounds the junk after `PING`/`PONG`/`+OK`, nor a run of blanks
//! before the arguments. A stateless parser has to keep such a line buffered, so both are
//! bounded at [`JUNK_LIMIT_FACTOR`] × `max_control_line` (64 KiB by default) and reported as
//! `MaxControlLine`. A `-ERR` line from a client is reported as [`ProtoError::ClientErr`],
//! not as an op, so the caller's ordinary error path closes the connection.
//! The parser does not know whether the client enabled headers: the caller rejects `HPUB`
//! itself (silent close). For an `HPUB` whose total exceeds `max_payload` from such a client
//! the reference server closes silently, while this parser reports `MaxPayload` first.

use memchr::memchr;

/// Limits the parser enforces while framing (they can change on reload).
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// `max_control_line`: the argument bytes after `OP ` up to CR (default 4096).
    pub max_control_line: usize,
    /// `max_payload`: PUB size / HPUB total size (default 1 MiB).
    pub max_payload: usize,
}

impl Default for ParseLimits {
    /// The reference server's defaults: 4096-byte control lines, 1 MiB payloads.
    fn default() -> Self {
        Self {
            max_control_line: 4096,
            max_payload: 1024 * 1024,
        }
    }
}

/// How many times `max_control_line` the parser tolerates in text the protocol ignores (junk
/// after `PING`/`PONG`/`+OK`, blanks before arguments) before cutting the client off.
pub(crate) const JUNK_LIMIT_FACTOR: usize = 16;

/// One client operation, borrowing from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// `CONNECT <json>`: the raw JSON (possibly empty or invalid; the caller decodes it and
    /// closes silently when it does not decode, as the reference server does).
    Connect(&'a [u8]),
    /// `PUB <subject> [reply] <size>` with its payload.
    Pub {
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    /// `headers` is the header block including its final blank line; `payload` follows it.
    HPub {
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        headers: &'a [u8],
        payload: &'a [u8],
    },
    /// `SUB <subject> [queue] <sid>`.
    Sub {
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        sid: &'a [u8],
    },
    /// `max` is `Some(n)` for `UNSUB sid n`; a non-numeric max parses as `Some(0)` (unsubscribe now).
    Unsub { sid: &'a [u8], max: Option<u64> },
    /// `PING` (anything after the keyword up to the line end is ignored).
    Ping,
    /// `PONG` (anything after the keyword up to the line end is ignored).
    Pong,
    /// `+OK` and `INFO` from a client are ignored.
    Ignored,
}

/// The outcome of one successful [`parse`] call.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole operation framed from the start of the buffer; drop `consumed` bytes after use.
    Op { op: ClientOp<'a>, consumed: usize },
    /// The buffer holds only the start of an operation; nothing was consumed. `at_least` is
    /// the total buffer length needed when known (a parsed `PUB`/`HPUB` control line plus its
    /// payload and CR LF), otherwise one more than the current length.
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
    /// The exact text (without quotes) of the `-ERR '...'` the server sends before closing, or
    /// `None` when the reference server closes without a word.
    pub fn client_error(&self) -> Option<&'static str> {
        match self {
            ProtoError::UnknownOp => Some("Unknown Protocol Operation"),
            ProtoError::MaxControlLine => Some("maximum control line exceeded"),
            ProtoError::MaxPayload => Some("Maximum Payload Violation"),
            ProtoError::BadArgs | ProtoError::ClientErr => None,
        }
    }
}

const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// The reference server reads sizes of at most nine digits (999,999,999); longer is an error.
const MAX_SIZE_DIGITS: usize = 9;

/// Frames the first client operation in `buf`. See the module docs for the exact rules.
pub fn parse<'a>(buf: &'a [u8], limits: &ParseLimits) -> Result<Parsed<'a>, ProtoError> {
    let Some(&first) = buf.first() else {
        return Ok(need_more(buf));
    };
    // OR-ing 0x20 folds ASCII upper case to lower case, and only letters land on `a..=z`.
    match first | 0x20 {
        b'p' => match buf.get(1).map(|b| b | 0x20) {
            Some(b'u') => parse_pub(buf, limits),
            Some(b'i') => parse_keyword_line(buf, b"ping", ClientOp::Ping, limits),
            Some(b'o') => parse_keyword_line(buf, b"pong", ClientOp::Pong, limits),
            Some(_) => Err(ProtoError::UnknownOp),
            None => Ok(need_more(buf)),
        },
        b's' => parse_sub(buf, limits),
        b'u' => parse_unsub(buf, limits),
        b'h' => parse_hpub(buf, limits),
        b'c' => parse_connect(buf, limits),
        b'i' => parse_info(buf, limits),
        _ => match first {
            b'+' => parse_keyword_line(buf, b"+ok", ClientOp::Ignored, limits),
            b'-' => parse_client_err(buf, limits),
            _ => Err(ProtoError::UnknownOp),
        },
    }
}

#[inline(always)]
fn need_more(buf: &[u8]) -> Parsed<'_> {
    Parsed::NeedMore {
        at_least: buf.len() + 1,
    }
}

#[inline(always)]
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// SUB and UNSUB split their arguments on CR and LF too (PUB and HPUB do not).
#[inline(always)]
fn is_sub_separator(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == CR || b == LF
}

fn junk_limit(limits: &ParseLimits) -> usize {
    limits.max_control_line.saturating_mul(JUNK_LIMIT_FACTOR)
}

/// Checks `buf` against the lower-case keyword `kw`, as far as `buf` goes.
/// `Ok(true)`: the whole keyword is there; `Ok(false)`: a prefix of it is.
#[inline(always)]
fn keyword(buf: &[u8], kw: &[u8]) -> Result<bool, ProtoError> {
    let n = buf.len().min(kw.len());
    for (have, want) in buf[..n].iter().zip(&kw[..n]) {
        if have | 0x20 != *want {
            return Err(ProtoError::UnknownOp);
        }
    }
    Ok(buf.len() >= kw.len())
}

/// Matches `kw` followed by a mandatory space or tab. `Ok(None)` means more bytes are needed;
/// `Ok(Some(i))` is the index just after that first blank.
#[inline(always)]
fn keyword_and_blank(buf: &[u8], kw: &[u8]) -> Result<Option<usize>, ProtoError> {
    if !keyword(buf, kw)? {
        return Ok(None);
    }
    match buf.get(kw.len()) {
        None => Ok(None),
        Some(&b) if is_blank(b) => Ok(Some(kw.len() + 1)),
        Some(_) => Err(ProtoError::UnknownOp),
    }
}

/// Frames the argument part of a control line whose blanks start at `start`.
/// Returns the arguments (CR dropped) and the index just after the LF, or `None` when the line
/// is not complete yet.
#[inline(always)]
fn arg_line<'a>(
    buf: &'a [u8],
    start: usize,
    limits: &ParseLimits,
) -> Result<Option<(&'a [u8], usize)>, ProtoError> {
    let mut arg_start = start;
    while arg_start < buf.len() && is_blank(buf[arg_start]) {
        arg_start += 1;
    }
    if arg_start - start > junk_limit(limits) {
        return Err(ProtoError::MaxControlLine);
    }
    if arg_start == buf.len() {
        return Ok(None);
    }
    let max = limits.max_control_line;
    // An LF beyond `max` argument bytes plus a CR cannot end a legal line, so the search stops
    // there: a long partial line costs at most one bounded scan per call.
    let window_end = buf
        .len()
        .min(arg_start.saturating_add(max).saturating_add(2));
    let after_first = &buf[arg_start + 1..window_end];
    match find_lf(after_first) {
        Some(offset) => {
            let lf = arg_start + 1 + offset;
            let tail = &after_first[..offset];
            let drop = usize::from(tail.last() == Some(&CR) || memchr(CR, tail).is_some());
            let args = &buf[arg_start..lf - drop];
            if args.len() > max {
                return Err(ProtoError::MaxControlLine);
            }
            Ok(Some((args, lf + 1)))
        }
        None => {
            let drop = usize::from(memchr(CR, after_first).is_some());
            if window_end - arg_start - drop > max {
                return Err(ProtoError::MaxControlLine);
            }
            Ok(None)
        }
    }
}

/// Splits `line` into at most `N` arguments; returns `None` when there are more.
/// `find_separator(line, i)` is the index of the first separator at or after `i` (or the
/// length), a faster equivalent of scanning for `is_separator`.
#[inline(always)]
fn split_args<'a, const N: usize>(
    line: &'a [u8],
    out: &mut [&'a [u8]; N],
    is_separator: impl Fn(u8) -> bool,
    find_separator: impl Fn(&[u8], usize) -> usize,
) -> Option<usize> {
    let mut count = 0;
    let mut i = 0;
    let len = line.len();
    loop {
        while i < len && is_separator(line[i]) {
            i += 1;
        }
        if i == len {
            return Some(count);
        }
        let begin = i;
        i = find_separator(line, i);
        let slot = out.get_mut(count)?;
        *slot = &line[begin..i];
        count += 1;
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Sets the high bit of bytes of `word` equal to `byte`. Only the lowest flag is guaranteed
/// exact (a borrow can flag bytes above a real match), which is all a forward search needs.
#[inline(always)]
fn flag_bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

#[inline(always)]
fn load_word(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

#[inline(always)]
fn first_flagged(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

/// Index of the first space or tab in `line` at or after `from`, or `line.len()`. Subjects are
/// the longest PUB arguments, so this goes eight bytes at a time.
#[inline(always)]
fn find_blank(line: &[u8], mut from: usize) -> usize {
    while let Some(word) = load_word(line, from) {
        let flags = flag_bytes_equal(word, b' ') | flag_bytes_equal(word, b'\t');
        if flags != 0 {
            return from + first_flagged(flags);
        }
        from += 8;
    }
    while from < line.len() && !is_blank(line[from]) {
        from += 1;
    }
    from
}

#[inline(always)]
fn find_sub_separator(line: &[u8], mut from: usize) -> usize {
    while from < line.len() && !is_sub_separator(line[from]) {
        from += 1;
    }
    from
}

/// Index of the first LF in `hay`. Typical control lines end within a few words, where this is
/// cheaper than memchr's setup; memchr takes over for long lines.
#[inline(always)]
fn find_lf(hay: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < 32 {
        let Some(word) = load_word(hay, at) else {
            break;
        };
        let flags = flag_bytes_equal(word, LF);
        if flags != 0 {
            return Some(at + first_flagged(flags));
        }
        at += 8;
    }
    memchr(LF, &hay[at..]).map(|offset| at + offset)
}

/// A non-negative decimal of at most nine digits, as the reference server accepts.
#[inline(always)]
fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > MAX_SIZE_DIGITS {
        return None;
    }
    let mut n = 0usize;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + usize::from(d);
    }
    Some(n)
}

/// Frames the `size` payload bytes at `start` and the CR LF after them. `Ok(None)` means the
/// buffer needs `start + size + 2` bytes.
#[inline(always)]
fn payload(buf: &[u8], start: usize, size: usize) -> Result<Option<(&[u8], usize)>, ProtoError> {
    let end = start + size;
    let total = end + 2;
    if buf.len() >= total {
        if buf[end] != CR || buf[end + 1] != LF {
            return Err(ProtoError::UnknownOp);
        }
        Ok(Some((&buf[start..end], total)))
    } else {
        if buf.len() > end && buf[end] != CR {
            return Err(ProtoError::UnknownOp);
        }
        Ok(None)
    }
}

fn parse_pub<'a>(buf: &'a [u8], limits: &ParseLimits) -> Result<Parsed<'a>, ProtoError> {
    let Some(start) = keyword_and_blank(buf, b"pub")? else {
        return Ok(need_more(buf));
    };
    let Some((line, body)) = arg_line(buf, start, limits)? else {
        return Ok(need_more(buf));
    };
    let mut args: [&[u8]; 3] = [&[]; 3];
    let (subject, reply, size) = match split_args(line, &mut args, is_blank, find_blank) {
        Some(2) => (args[0], None, args[1]),
        Some(3) => (args[0], Some(args[1]), args[2]),
        _ => return Err(ProtoError::BadArgs),
    };
    let size = parse_size(size).ok_or(ProtoError::BadArgs)?;
    if size > limits.max_payload {
        return Err(ProtoError::MaxPayload);
    }
    match payload(buf, body, size)? {
        Some((payload, consumed)) => Ok(Parsed::Op {
            op: ClientOp::Pub {
                subject,
                reply,
                payload,
            },
            consumed,
        }),
        None => Ok(Parsed::NeedMore {
            at_least: body + size + 2,
        }),
    }
}

fn parse_hpub<'a>(buf: &'a [u8], limits: &ParseLimits) -> Result<Parsed<'a>, ProtoError> {
    let Some(start) = keyword_and_blank(buf, b"hpub")? else {
        return Ok(need_more(buf));
    };
    let Some((line, body)) = arg_line(buf, start, limits)? else {
        return Ok(need_more(buf));
    };
    let mut args: [&[u8]; 4] = [&[]; 4];
    let (subject, reply, header_size, total_size) =
        match split_args(line, &mut args, is_blank, find_blank) {
            Some(3) => (args[0], None, args[1], args[2]),
            Some(4) => (args[0], Some(args[1]), args[2], args[3]),
            _ => return Err(ProtoError::BadArgs),
        };
    let header_size = parse_size(header_size).ok_or(ProtoError::BadArgs)?;
    let total_size = parse_size(total_size).ok_or(ProtoError::BadArgs)?;
    if header_size > total_size {
        return Err(ProtoError::BadArgs);
    }
    if total_size > limits.max_payload {
        return Err(ProtoError::MaxPayload);
    }
    match payload(buf, body, total_size)? {
        Some((all, consumed)) => {
            let (headers, payload) = all.split_at(header_size);
            Ok(Parsed::Op {
                op: ClientOp::HPub {
                    subject,
                    reply,
                    headers,
                    payload,
                },
                consumed,
            })
        }
        None => Ok(Parsed::NeedMore {
            at_least: body + total_size + 2,
        }),
    }
}

fn parse_sub<'a>(buf: &'a [u8], limits: &ParseLimits) -> Result<Parsed<'a>, ProtoError> {
    let Some(start) = keyword_and_blank(buf, b"sub")? else {
        return Ok(need_more(buf));
    };
    let Some((line, consumed)) = arg_line(buf, start, limits)? else {
        return Ok(need_more(buf));
    };
    let mut args: [&[u8]; 3] = [&[]; 3];
    let op = match split_args(line, &mut args, is_sub_separator, find_sub_separator) {
        Some(2) => ClientOp::Sub {
            subject: args[0],
            queue: None,
            sid: args[1],
        },
        Some(3) => ClientOp::Sub {
            subject: args[0],
            queue: Some(args[1]),
            sid: args[2],
        },
        _ => return Err(ProtoError::BadArgs),
    };
    Ok(Parsed::Op { op, consumed })
}

fn parse_unsub<'a>(buf: &'a [u8], limits: &ParseLimits) -> Result<Parsed<'a>, ProtoError> {
    let Some(start) = keyword_and_blank(buf, b"unsub")? else {
        return Ok(need_more(buf));
    };
    let Some((line, consumed)) = arg_line(buf, start, limits)? else {
        return Ok(need_more(buf));
    };
    let mut args: [&[u8]; 2] = [&[]; 2];
    let op = match split_args(line, &mut args, is_sub_separator, find_sub_separator) {
        Some(1) => ClientOp::Unsub {
            sid: args[0],
            max: None,
        },
        Some(2) => {
            // The reference server reads a bad max as -1, which unsubscribes at once, like 0.
            let max = parse_size(args[1]).map_or(0, |n| n as u64);
            ClientOp::Unsub {
                sid: args[0],
                max: Some(max),
            }
        }
        _ => return Err(ProtoError::BadArgs),
    };
    Ok(Parsed::Op { op, consumed })
}

fn parse_connect<'a>(buf: &'a [u8], limits: &ParseLimits) -> Result<Parsed<'a>, ProtoError> {
    if !keyword(buf, b"connect")? {
        return Ok(need_more(buf));
    }
    match arg_line(buf, b"connect".len(), limits)? {
        Some((json, consumed)) => Ok(Parsed::Op {
            op: ClientOp::Connect(json),
            consumed,
        }),
        None => Ok(need_more(buf)),
    }
}

fn parse_info<'a>(buf: &'a [u8], limits: &ParseLimits) -> Result<Parsed<'a>, ProtoError> {
    if !keyword(buf, b"info")? {
        return Ok(need_more(buf));
    }
    let Some((json, consumed)) = arg_line(buf, b"info".len(), limits)? else {
        return Ok(need_more(buf));
    };
    // The reference server decodes a client's INFO into its INFO struct and closes silently
    // when that fails; otherwise it ignores it.
    if !is_json_object_or_null(json) {
        return Err(ProtoError::BadArgs);
    }
    Ok(Parsed::Op {
        op: ClientOp::Ignored,
        consumed,
    })
}

/// True for a syntactically valid JSON object or `null` (what decoding into a struct accepts,
/// short of checking field types).
fn is_json_object_or_null(json: &[u8]) -> bool {
    let first = json
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    matches!(first, Some(b'{' | b'n'))
        && serde_json::from_slice::<serde::de::IgnoredAny>(json).is_ok()
}

fn parse_client_err<'a>(buf: &'a [u8], limits: &ParseLimits) -> Result<Parsed<'a>, ProtoError> {
    let Some(start) = keyword_and_blank(buf, b"-err")? else {
        return Ok(need_more(buf));
    };
    // The whole line is awaited so an over-long one still gets its control-line error first.
    match arg_line(buf, start, limits)? {
        Some(_) => Err(ProtoError::ClientErr),
        None => Ok(need_more(buf)),
    }
}

/// `PING`, `PONG` and `+OK`: the keyword, then anything up to the LF is ignored.
fn parse_keyword_line<'a>(
    buf: &'a [u8],
    kw: &[u8],
    op: ClientOp<'a>,
    limits: &ParseLimits,
) -> Result<Parsed<'a>, ProtoError> {
    if !keyword(buf, kw)? {
        return Ok(need_more(buf));
    }
    let window_end = buf.len().min(
        kw.len()
            .saturating_add(junk_limit(limits))
            .saturating_add(2),
    );
    match memchr(LF, &buf[kw.len()..window_end]) {
        Some(offset) => Ok(Parsed::Op {
            op,
            consumed: kw.len() + offset + 1,
        }),
        // The window only stops short of the buffer's end once the junk is over the limit.
        None if window_end - kw.len() > junk_limit(limits) + 1 => Err(ProtoError::MaxControlLine),
        None => Ok(need_more(buf)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: ParseLimits = ParseLimits {
        max_control_line: 4096,
        max_payload: 1024 * 1024,
    };

    fn parse_default(buf: &[u8]) -> Result<Parsed<'_>, ProtoError> {
        parse(buf, &LIMITS)
    }

    fn op_of(buf: &[u8]) -> (ClientOp<'_>, usize) {
        match parse_default(buf) {
            Ok(Parsed::Op { op, consumed }) => (op, consumed),
            other => panic!(
                "expected an op from {:?}, got {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    fn whole(buf: &[u8]) -> ClientOp<'_> {
        let (op, consumed) = op_of(buf);
        assert_eq!(consumed, buf.len(), "{:?}", String::from_utf8_lossy(buf));
        op
    }

    fn error_of(buf: &[u8]) -> ProtoError {
        match parse_default(buf) {
            Err(e) => e,
            other => panic!(
                "expected an error from {:?}, got {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    fn is_need_more(buf: &[u8]) -> bool {
        matches!(parse_default(buf), Ok(Parsed::NeedMore { .. }))
    }

    /// One valid encoding of every op, with what it must parse to.
    fn valid_ops() -> Vec<(&'static [u8], ClientOp<'static>)> {
        vec![
            (
                b"CONNECT {\"verbose\":false}\r\n",
                ClientOp::Connect(b"{\"verbose\":false}"),
            ),
            (b"connect{}\r\n", ClientOp::Connect(b"{}")),
            (b"CONNECT \t {}\n", ClientOp::Connect(b"{}")),
            (
                b"PUB foo 5\r\nhello\r\n",
                ClientOp::Pub {
                    subject: b"foo",
                    reply: None,
                    payload: b"hello",
                },
            ),
            (
                b"pub foo reply.x 2\r\nhi\r\n",
                ClientOp::Pub {
                    subject: b"foo",
                    reply: Some(b"reply.x"),
                    payload: b"hi",
                },
            ),
            (
                b"PUB foo 0\r\n\r\n",
                ClientOp::Pub {
                    subject: b"foo",
                    reply: None,
                    payload: b"",
                },
            ),
            (
                b"PuB\tfoo  \t 2 \n\r\n\r\n",
                ClientOp::Pub {
                    subject: b"foo",
                    reply: None,
                    payload: b"\r\n",
                },
            ),
            (
                b"HPUB foo 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n",
                ClientOp::HPub {
                    subject: b"foo",
                    reply: None,
                    headers: b"NATS/1.0\r\nA: b\r\n\r\n",
                    payload: b"hello",
                },
            ),
            (
                b"hpub foo rep 12 12\r\nNATS/1.0\r\n\r\n\r\n",
                ClientOp::HPub {
                    subject: b"foo",
                    reply: Some(b"rep"),
                    headers: b"NATS/1.0\r\n\r\n",
                    payload: b"",
                },
            ),
            (
                b"SUB foo 1\r\n",
                ClientOp::Sub {
                    subject: b"foo",
                    queue: None,
                    sid: b"1",
                },
            ),
            (
                b"sub foo  1\n",
                ClientOp::Sub {
                    subject: b"foo",
                    queue: None,
                    sid: b"1",
                },
            ),
            (
                b"SUB\tfoo.>   workers abc-XYZ_1\r\n",
                ClientOp::Sub {
                    subject: b"foo.>",
                    queue: Some(b"workers"),
                    sid: b"abc-XYZ_1",
                },
            ),
            (
                b"UNSUB 1\r\n",
                ClientOp::Unsub {
                    sid: b"1",
                    max: None,
                },
            ),
            (
                b"unsub 1 2\r\n",
                ClientOp::Unsub {
                    sid: b"1",
                    max: Some(2),
                },
            ),
            (
                b"UNSUB 1 abc\r\n",
                ClientOp::Unsub {
                    sid: b"1",
                    max: Some(0),
                },
            ),
            (
                b"UNSUB 1 1234567890\r\n",
                ClientOp::Unsub {
                    sid: b"1",
                    max: Some(0),
                },
            ),
            (b"PING\r\n", ClientOp::Ping),
            (b"ping\n", ClientOp::Ping),
            (b"PING x\r\n", ClientOp::Ping),
            (b"PINGX\r\n", ClientOp::Ping),
            (b"PONG\r\n", ClientOp::Pong),
            (b"PoNgX\r\n", ClientOp::Pong),
            (b"+OK\r\n", ClientOp::Ignored),
            (b"+ok junk\r\n", ClientOp::Ignored),
            (b"INFO {\"server_id\":\"x\"}\r\n", ClientOp::Ignored),
            (b"INFO{}\r\n", ClientOp::Ignored),
            (b"info null\r\n", ClientOp::Ignored),
        ]
    }

    #[test]
    fn every_op_whole() {
        for (wire, expected) in valid_ops() {
            assert_eq!(whole(wire), expected, "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn every_op_byte_by_byte_needs_more_until_complete() {
        for (wire, expected) in valid_ops() {
            for cut in 0..wire.len() {
                match parse_default(&wire[..cut]) {
                    Ok(Parsed::NeedMore { at_least }) => {
                        assert!(
                            at_least > cut && at_least <= wire.len(),
                            "{wire:?} cut {cut}"
                        );
                    }
                    other => panic!(
                        "{:?} cut at {cut}: {other:?}",
                        String::from_utf8_lossy(wire)
                    ),
                }
            }
            assert_eq!(whole(wire), expected);
        }
    }

    #[test]
    fn at_least_is_exact_once_the_pub_control_line_is_in() {
        let wire = b"PUB foo.bar 16\r\n0123456789abcdef\r\n";
        let line_end = b"PUB foo.bar 16\r\n".len();
        for cut in line_end..wire.len() {
            assert_eq!(
                parse_default(&wire[..cut]),
                Ok(Parsed::NeedMore {
                    at_least: wire.len()
                }),
                "cut {cut}"
            );
        }
        let wire = b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        assert_eq!(
            parse_default(&wire[..17]),
            Ok(Parsed::NeedMore {
                at_least: wire.len()
            })
        );
    }

    /// Feeds `wire` in two reads split at every index, the way a connection's read loop would,
    /// and returns the ops seen (as debug strings, since they borrow from a moving buffer).
    fn ops_through_split_reads(wire: &[u8], split: usize) -> Vec<String> {
        let mut seen = Vec::new();
        let mut buffer: Vec<u8> = Vec::new();
        for chunk in [&wire[..split], &wire[split..]] {
            buffer.extend_from_slice(chunk);
            while let Parsed::Op { op, consumed } = parse_default(&buffer).expect("valid stream") {
                seen.push(format!("{op:?}"));
                buffer.drain(..consumed);
            }
        }
        assert!(buffer.is_empty(), "left over: {buffer:?}");
        seen
    }

    #[test]
    fn pipelined_ops_split_at_every_index() {
        let ops = valid_ops();
        let wire: Vec<u8> = ops.iter().flat_map(|(w, _)| w.iter().copied()).collect();
        let expected: Vec<String> = ops.iter().map(|(_, op)| format!("{op:?}")).collect();
        for split in 0..=wire.len() {
            assert_eq!(
                ops_through_split_reads(&wire, split),
                expected,
                "split at {split}"
            );
        }
    }

    #[test]
    fn pipelined_ops_in_one_buffer() {
        let wire = b"SUB foo 1\r\nPUB foo 2\r\nhi\r\nPING\r\nUNSUB 1\r\nPUB";
        let mut at = 0;
        let mut seen = Vec::new();
        while let Parsed::Op { op, consumed } = parse_default(&wire[at..]).expect("valid stream") {
            seen.push(format!("{op:?}"));
            at += consumed;
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(&wire[at..], b"PUB");
    }

    #[test]
    fn unknown_operation_cases() {
        for wire in [
            &b"\r\n"[..],
            b"\n",
            b" PING\r\n",
            b"\tSUB foo 1\r\n",
            b"XYZ\r\n",
            b"PX",
            b"PIN\r\n",
            b"PUB\r\n",
            b"PUBX foo 1\r\n",
            b"SUB\r\n",
            b"UNSUB\r\n",
            b"HPUB\r\n",
            b"MSG foo 1 2\r\nhi\r\n",
            b"HMSG foo 1 2 2\r\nhi\r\n",
            b"-ERR\r\n",
            b"+O\r\n",
            b"PUB foo 2\r\nhi\n",
            b"PUB foo 2\r\nhix\r\n",
            b"PUB foo 2\r\nhi\rx",
            b"HPUB foo 2 4\r\n\r\nhi\n\n",
        ] {
            assert_eq!(
                error_of(wire),
                ProtoError::UnknownOp,
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn payload_overrun_is_reported_before_the_rest_arrives() {
        assert_eq!(error_of(b"PUB foo 2\r\nhix"), ProtoError::UnknownOp);
        assert!(is_need_more(b"PUB foo 2\r\nhi\r"));
    }

    #[test]
    fn silent_close_cases() {
        for wire in [
            &b"PUB foo\r\n"[..],
            b"PUB \r\n",
            b"PUB foo a b 2\r\n",
            b"PUB foo x\r\n",
            b"PUB foo -1\r\n",
            b"PUB foo +2\r\n",
            b"PUB foo 0000000002\r\n",
            b"HPUB foo 2\r\n",
            b"HPUB foo a b c d\r\n",
            b"HPUB foo 5 3\r\n",
            b"HPUB foo x 3\r\n",
            b"HPUB foo 3 x\r\n",
            b"HPUB foo 2000000 1048577\r\n",
            b"SUB foo\r\n",
            b"SUB foo q 1 extra\r\n",
            b"SUB foo\r1\n",
            b"UNSUB 1 2 3\r\n",
            b"INFO x\r\n",
            b"INFO\r\n",
            b"INFO [1]\r\n",
        ] {
            let err = error_of(wire);
            assert_eq!(
                err,
                ProtoError::BadArgs,
                "{:?}",
                String::from_utf8_lossy(wire)
            );
            assert_eq!(err.client_error(), None);
        }
    }

    #[test]
    fn client_err_closes_silently() {
        assert_eq!(error_of(b"-ERR 'boom'\r\n"), ProtoError::ClientErr);
        assert_eq!(error_of(b"-err\tx\n"), ProtoError::ClientErr);
        assert!(is_need_more(b"-ERR 'bo"));
        assert_eq!(ProtoError::ClientErr.client_error(), None);
    }

    #[test]
    fn connect_forms_the_caller_must_judge() {
        assert_eq!(whole(b"CONNECT\r\n"), ClientOp::Connect(b"\r"));
        assert_eq!(whole(b"CONNECTX\r\n"), ClientOp::Connect(b"X"));
        // The reference server takes the first argument byte even when it is an LF.
        assert_eq!(whole(b"CONNECT\n{}\r\n"), ClientOp::Connect(b"\n{}"));
        assert_eq!(
            whole(b"PUB \nfoo 2\r\nhi\r\n"),
            ClientOp::Pub {
                subject: b"\nfoo",
                reply: None,
                payload: b"hi"
            }
        );
    }

    #[test]
    fn client_error_texts_are_exact() {
        assert_eq!(
            ProtoError::UnknownOp.client_error(),
            Some("Unknown Protocol Operation")
        );
        assert_eq!(
            ProtoError::MaxControlLine.client_error(),
            Some("maximum control line exceeded")
        );
        assert_eq!(
            ProtoError::MaxPayload.client_error(),
            Some("Maximum Payload Violation")
        );
        assert_eq!(ProtoError::BadArgs.client_error(), None);
    }

    fn line_with_args(op: &str, args_len: usize, ending: &str) -> Vec<u8> {
        // "foo " + padding + " 1": a SUB/UNSUB-compatible line of exactly `args_len` arg bytes.
        let mut line = format!("{op} ").into_bytes();
        let mut args = b"foo ".to_vec();
        args.resize(args_len - 2, b'a');
        args.extend_from_slice(b" 1");
        assert_eq!(args.len(), args_len);
        line.extend_from_slice(&args);
        line.extend_from_slice(ending.as_bytes());
        line
    }

    #[test]
    fn max_control_line_boundary_on_complete_lines() {
        for ending in ["\r\n", "\n"] {
            let ok = line_with_args("SUB", 4096, ending);
            assert!(matches!(whole(&ok), ClientOp::Sub { .. }));
            let too_long = line_with_args("SUB", 4097, ending);
            assert_eq!(error_of(&too_long), ProtoError::MaxControlLine);
        }
        let mut connect = b"CONNECT {\"name\":\"".to_vec();
        connect.resize(5000, b'x');
        connect.extend_from_slice(b"\"}\r\n");
        assert_eq!(error_of(&connect), ProtoError::MaxControlLine);
        let mut info = b"INFO {\"a\":\"".to_vec();
        info.resize(5000, b'x');
        info.extend_from_slice(b"\"}\r\n");
        assert_eq!(error_of(&info), ProtoError::MaxControlLine);
    }

    #[test]
    fn endless_line_is_cut_off_before_its_end_arrives() {
        let mut line = b"PUB ".to_vec();
        line.resize(4 + 4096, b'a');
        assert!(is_need_more(&line));
        line.push(b'\r');
        assert!(
            is_need_more(&line),
            "4096 argument bytes plus CR may still end well"
        );
        line.pop();
        line.push(b'a');
        assert_eq!(error_of(&line), ProtoError::MaxControlLine);
        // Even when the buffer holds far more than the limit.
        line.resize(1 << 20, b'a');
        assert_eq!(error_of(&line), ProtoError::MaxControlLine);
        let mut connect = b"CONNECT {".to_vec();
        connect.resize(8 + 4097, b'x');
        assert_eq!(error_of(&connect), ProtoError::MaxControlLine);
    }

    #[test]
    fn junk_lines_are_bounded() {
        let mut ping = b"PING ".to_vec();
        ping.resize(5000, b'x');
        ping.extend_from_slice(b"\r\n");
        assert_eq!(
            whole(&ping),
            ClientOp::Ping,
            "the reference server accepts this"
        );
        let mut endless = b"PING ".to_vec();
        endless.resize(4096 * JUNK_LIMIT_FACTOR + 100, b'x');
        assert_eq!(error_of(&endless), ProtoError::MaxControlLine);
        let mut blanks = b"PUB".to_vec();
        blanks.resize(4096 * JUNK_LIMIT_FACTOR + 100, b' ');
        assert_eq!(error_of(&blanks), ProtoError::MaxControlLine);
        let mut some_blanks = b"PUB".to_vec();
        some_blanks.resize(5000, b' ');
        assert!(is_need_more(&some_blanks));
        some_blanks.extend_from_slice(b"foo 1\r\nx\r\n");
        assert!(matches!(whole(&some_blanks), ClientOp::Pub { .. }));
    }

    #[test]
    fn max_payload_is_checked_on_the_control_line() {
        assert_eq!(error_of(b"PUB foo 1048577\r\n"), ProtoError::MaxPayload);
        assert_eq!(error_of(b"HPUB foo 2 1048577\r\n"), ProtoError::MaxPayload);
        assert_eq!(
            parse_default(b"PUB foo 1048576\r\n"),
            Ok(Parsed::NeedMore {
                at_least: 17 + 1048576 + 2
            })
        );
        let mut exact = b"PUB foo 1048576\r\n".to_vec();
        exact.resize(exact.len() + 1048576, b'z');
        exact.extend_from_slice(b"\r\n");
        assert!(matches!(whole(&exact), ClientOp::Pub { payload, .. } if payload.len() == 1048576));
        let small = ParseLimits {
            max_control_line: 4096,
            max_payload: 4,
        };
        assert_eq!(parse(b"PUB foo 5\r\n", &small), Err(ProtoError::MaxPayload));
        assert!(matches!(
            parse(b"PUB foo 4\r\n", &small),
            Ok(Parsed::NeedMore { .. })
        ));
    }

    #[test]
    fn a_smaller_control_line_limit_applies() {
        let tight = ParseLimits {
            max_control_line: 7,
            max_payload: 1024,
        };
        assert!(matches!(
            parse(b"SUB foo 123\r\n", &tight),
            Ok(Parsed::Op { .. })
        ));
        assert_eq!(
            parse(b"SUB foo 1234\r\n", &tight),
            Err(ProtoError::MaxControlLine)
        );
        assert_eq!(
            parse(b"SUB foo 1234", &tight),
            Err(ProtoError::MaxControlLine)
        );
        assert!(matches!(
            parse(b"SUB foo 123", &tight),
            Ok(Parsed::NeedMore { .. })
        ));
    }

    fn any_limits() -> impl Strategy<Value = ParseLimits> {
        (0usize..64, 0usize..64).prop_map(|(max_control_line, max_payload)| ParseLimits {
            max_control_line,
            max_payload,
        })
    }

    /// Bytes biased toward protocol fragments, so random input reaches the deep branches.
    fn protocol_soup() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"PUB ".to_vec()),
            Just(b"HPUB ".to_vec()),
            Just(b"SUB ".to_vec()),
            Just(b"UNSUB ".to_vec()),
            Just(b"PING".to_vec()),
            Just(b"CONNECT ".to_vec()),
            Just(b"INFO ".to_vec()),
            Just(b"-ERR ".to_vec()),
            Just(b"+OK".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            (0u32..40).prop_map(|n| n.to_string().into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..6),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn never_panics_nor_overconsumes_on_random_bytes(
            buf in proptest::collection::vec(any::<u8>(), 0..256),
            limits in any_limits(),
        ) {
            if let Ok(Parsed::Op { consumed, .. }) = parse(&buf, &limits) {
                prop_assert!(consumed > 0 && consumed <= buf.len());
            }
        }

        #[test]
        fn never_panics_nor_overconsumes_on_protocol_soup(
            buf in protocol_soup(),
            limits in any_limits(),
        ) {
            match parse(&buf, &limits) {
                Ok(Parsed::Op { consumed, .. }) => prop_assert!(consumed > 0 && consumed <= buf.len()),
                Ok(Parsed::NeedMore { at_least }) => prop_assert!(at_least > buf.len()),
                Err(_) => {}
            }
        }

        #[test]
        fn a_prefix_of_a_parsed_op_needs_more_or_fails_identically(
            buf in protocol_soup(),
        ) {
            let limits = ParseLimits { max_control_line: 64, max_payload: 64 };
            if let Ok(Parsed::Op { consumed, .. }) = parse(&buf, &limits) {
                for cut in 0..consumed {
                    let prefix = parse(&buf[..cut], &limits);
                    prop_assert!(matches!(prefix, Ok(Parsed::NeedMore { .. })), "cut {} -> {:?}", cut, prefix);
                }
            }
        }
    }
}
