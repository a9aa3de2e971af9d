//! Writers for server → client frames. See the module contract in `proto`.
//!
//! Every writer reserves the exact frame size first and then appends, so a frame costs at most
//! one buffer growth and no temporary allocation. The `*_len` functions give that size up front
//! for callers that batch many frames into one reservation.

use bytes::BytesMut;

/// `PING` sent by the server (keepalive).
pub const PING: &[u8] = b"PING\r\n";
/// `PONG` answering a client's `PING`.
pub const PONG: &[u8] = b"PONG\r\n";
/// `+OK` sent after each op when the client asked for `verbose`.
pub const OK: &[u8] = b"+OK\r\n";

const CRLF: &[u8] = b"\r\n";

/// Number of decimal digits of `n`.
#[inline]
fn decimal_len(n: usize) -> usize {
    match n.checked_ilog10() {
        Some(log) => log as usize + 1,
        None => 1,
    }
}

#[inline]
fn put_decimal(out: &mut BytesMut, n: usize) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(n).as_bytes());
}

#[inline]
fn put_routing(out: &mut BytesMut, subject: &[u8], sid: &[u8], reply: Option<&[u8]>) {
    out.extend_from_slice(subject);
    out.extend_from_slice(b" ");
    out.extend_from_slice(sid);
    out.extend_from_slice(b" ");
    if let Some(reply) = reply {
        out.extend_from_slice(reply);
        out.extend_from_slice(b" ");
    }
}

#[inline]
fn routing_len(subject: &[u8], sid: &[u8], reply: Option<&[u8]>) -> usize {
    subject.len() + 1 + sid.len() + 1 + reply.map_or(0, |r| r.len() + 1)
}

/// Size of the control line `MSG <subject> <sid> [reply] <len>\r\n`.
#[inline]
pub fn msg_head_len(subject: &[u8], sid: &[u8], reply: Option<&[u8]>, payload_len: usize) -> usize {
    b"MSG ".len() + routing_len(subject, sid, reply) + decimal_len(payload_len) + CRLF.len()
}

/// Size of the whole frame [`msg`] writes.
#[inline]
pub fn msg_len(subject: &[u8], sid: &[u8], reply: Option<&[u8]>, payload_len: usize) -> usize {
    msg_head_len(subject, sid, reply, payload_len) + payload_len + CRLF.len()
}

/// Appends only the control line `MSG <subject> <sid> [reply] <payload_len>\r\n`, for callers
/// that write the payload and its CR LF themselves (for example from a shared buffer).
pub fn msg_head(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    payload_len: usize,
) {
    out.reserve(msg_head_len(subject, sid, reply, payload_len));
    out.extend_from_slice(b"MSG ");
    put_routing(out, subject, sid, reply);
    put_decimal(out, payload_len);
    out.extend_from_slice(CRLF);
}

/// Appends `MSG <subject> <sid> [reply] <len>\r\n<payload>\r\n`.
pub fn msg(out: &mut BytesMut, subject: &[u8], sid: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    out.reserve(msg_len(subject, sid, reply, payload.len()));
    out.extend_from_slice(b"MSG ");
    put_routing(out, subject, sid, reply);
    put_decimal(out, payload.len());
    out.extend_from_slice(CRLF);
    out.extend_from_slice(payload);
    out.extend_from_slice(CRLF);
}

/// Size of the control line `HMSG <subject> <sid> [reply] <hdr_len> <total_len>\r\n`.
#[inline]
pub fn hmsg_head_len(
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers_len: usize,
    payload_len: usize,
) -> usize {
    b"HMSG ".len()
        + routing_len(subject, sid, reply)
        + decimal_len(headers_len)
        + 1
        + decimal_len(headers_len + payload_len)
        + CRLF.len()
}

/// Size of the whole frame [`hmsg`] writes.
#[inline]
pub fn hmsg_len(
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers_len: usize,
    payload_len: usize,
) -> usize {
    hmsg_head_len(subject, sid, reply, headers_len, payload_len)
        + headers_len
        + payload_len
        + CRLF.len()
}

/// Appends only the control line `HMSG <subject> <sid> [reply] <hdr_len> <total_len>\r\n`
/// (total = headers + payload), for callers that write the body themselves.
pub fn hmsg_head(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers_len: usize,
    payload_len: usize,
) {
    out.reserve(hmsg_head_len(subject, sid, reply, headers_len, payload_len));
    put_hmsg_head(out, subject, sid, reply, headers_len, payload_len);
}

#[inline]
fn put_hmsg_head(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers_len: usize,
    payload_len: usize,
) {
    out.extend_from_slice(b"HMSG ");
    put_routing(out, subject, sid, reply);
    put_decimal(out, headers_len);
    out.extend_from_slice(b" ");
    put_decimal(out, headers_len + payload_len);
    out.extend_from_slice(CRLF);
}

/// Appends `HMSG <subject> <sid> [reply] <hdr_len> <total_len>\r\n<headers><payload>\r\n`.
/// `headers` is the whole header block, including its final blank line.
pub fn hmsg(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    out.reserve(hmsg_len(subject, sid, reply, headers.len(), payload.len()));
    put_hmsg_head(out, subject, sid, reply, headers.len(), payload.len());
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    out.extend_from_slice(CRLF);
}

/// Size of the frame [`info`] writes.
#[inline]
pub fn info_len(json: &[u8]) -> usize {
    b"INFO ".len() + json.len() + b" \r\n".len()
}

/// Appends `INFO <json> \r\n`; the space before CR LF is what the reference server sends.
pub fn info(out: &mut BytesMut, json: &[u8]) {
    out.reserve(info_len(json));
    out.extend_from_slice(b"INFO ");
    out.extend_from_slice(json);
    out.extend_from_slice(b" \r\n");
}

/// Size of the frame [`err`] writes.
#[inline]
pub fn err_len(text: &[u8]) -> usize {
    b"-ERR '".len() + text.len() + b"'\r\n".len()
}

/// Appends `-ERR '<text>'\r\n`. `text` comes without quotes, for example
/// [`ProtoError::client_error`](super::parser::ProtoError::client_error).
pub fn err(out: &mut BytesMut, text: impl AsRef<[u8]>) {
    let text = text.as_ref();
    out.reserve(err_len(text));
    out.extend_from_slice(b"-ERR '");
    out.extend_from_slice(text);
    out.extend_from_slice(b"'\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut BytesMut)) -> (Vec<u8>, usize) {
        let mut out = BytesMut::new();
        f(&mut out);
        let capacity = out.capacity();
        (out.to_vec(), capacity)
    }

    #[test]
    fn msg_without_and_with_reply() {
        let (bytes, _) = written(|o| msg(o, b"foo.bar", b"1", None, b"hello"));
        assert_eq!(bytes, b"MSG foo.bar 1 5\r\nhello\r\n");
        let (bytes, _) = written(|o| msg(o, b"foo", b"abc-XYZ_1", Some(b"_INBOX.x"), b""));
        assert_eq!(bytes, b"MSG foo abc-XYZ_1 _INBOX.x 0\r\n\r\n");
    }

    #[test]
    fn msg_len_is_exact_across_digit_boundaries() {
        for n in [0usize, 1, 9, 10, 99, 100, 999, 1000, 65535, 1 << 20] {
            let payload = vec![b'x'; n];
            for reply in [None, Some(&b"r.1"[..])] {
                let (bytes, _) = written(|o| msg(o, b"s", b"22", reply, &payload));
                assert_eq!(bytes.len(), msg_len(b"s", b"22", reply, n), "n={n}");
                let (head, _) = written(|o| msg_head(o, b"s", b"22", reply, n));
                assert_eq!(head.len(), msg_head_len(b"s", b"22", reply, n));
                assert_eq!(&bytes[..head.len()], &head[..]);
            }
        }
    }

    #[test]
    fn msg_reserves_exactly_once_into_an_empty_buffer() {
        let payload = [7u8; 16];
        let (bytes, capacity) = written(|o| msg(o, b"foo.bar", b"1", None, &payload));
        assert_eq!(capacity, bytes.len());
    }

    #[test]
    fn hmsg_matches_reference_frame() {
        let (bytes, _) =
            written(|o| hmsg(o, b"foo", b"1", None, b"NATS/1.0\r\nA: b\r\n\r\n", b"hello"));
        assert_eq!(
            bytes,
            b"HMSG foo 1 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n"
        );
        let (bytes, _) = written(|o| hmsg(o, b"foo", b"9", Some(b"rep"), b"NATS/1.0\r\n\r\n", b""));
        assert_eq!(bytes, b"HMSG foo 9 rep 12 12\r\nNATS/1.0\r\n\r\n\r\n");
        assert_eq!(bytes.len(), hmsg_len(b"foo", b"9", Some(b"rep"), 12, 0));
        let (head, _) = written(|o| hmsg_head(o, b"foo", b"9", Some(b"rep"), 12, 0));
        assert_eq!(head, b"HMSG foo 9 rep 12 12\r\n");
        assert_eq!(head.len(), hmsg_head_len(b"foo", b"9", Some(b"rep"), 12, 0));
    }

    #[test]
    fn hmsg_len_is_exact_when_total_gains_a_digit() {
        let headers = vec![b'h'; 9];
        let payload = vec![b'p'; 1];
        let (bytes, _) = written(|o| hmsg(o, b"a", b"1", None, &headers, &payload));
        assert!(bytes.starts_with(b"HMSG a 1 9 10\r\n"));
        assert_eq!(bytes.len(), hmsg_len(b"a", b"1", None, 9, 1));
    }

    #[test]
    fn info_has_a_space_before_crlf() {
        let (bytes, _) = written(|o| info(o, br#"{"a":1}"#));
        assert_eq!(bytes, b"INFO {\"a\":1} \r\n");
        assert_eq!(bytes.len(), info_len(br#"{"a":1}"#));
    }

    #[test]
    fn err_quotes_the_text() {
        let (bytes, _) = written(|o| err(o, "Unknown Protocol Operation"));
        assert_eq!(bytes, b"-ERR 'Unknown Protocol Operation'\r\n");
        let (bytes, _) = written(|o| err(o, b"Permissions Violation for Publish to \"x\""));
        assert_eq!(
            bytes,
            b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n"
        );
        assert_eq!(
            bytes.len(),
            err_len(b"Permissions Violation for Publish to \"x\"")
        );
    }

    #[test]
    fn constants_are_crlf_terminated() {
        assert_eq!(PING, b"PING\r\n");
        assert_eq!(PONG, b"PONG\r\n");
        assert_eq!(OK, b"+OK\r\n");
    }

    #[test]
    fn decimal_len_matches_itoa() {
        for n in [0usize, 1, 9, 10, 11, 99, 100, 12345, usize::MAX] {
            assert_eq!(decimal_len(n), itoa::Buffer::new().format(n).len(), "n={n}");
        }
    }
}
