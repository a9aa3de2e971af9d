//! The slice of the NATS client protocol the load generators need, spoken over
//! `std::net` with no client library: the handshake and a fast reader for the
//! server-to-client stream (`MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`, `INFO`).
//!
//! The reader works on one large buffer and hands out borrowed frames, so a
//! 16-byte message costs a `memchr` for the control line and a few compares.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use thiserror::Error;

/// Longest control line accepted before a `\n` must appear. INFO lines are the
/// longest the server sends; they stay far below this.
const MAX_CONTROL_LINE: usize = 64 * 1024;

/// Default read buffer: large so that one `read` drains most of what the
/// kernel holds, keeping the subscriber ahead of the publisher.
pub const DEFAULT_READ_BUFFER: usize = 1024 * 1024;

/// Read and write timeout on every connection: a stalled or broken server
/// ends a run with an error instead of hanging the bench.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong while reading or speaking the protocol.
#[derive(Debug, Error)]
pub enum ProtoError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The server sent bytes that are not a frame we know.
    #[error("unexpected protocol line: {0:?}")]
    Unexpected(String),
    /// A control line grew past [`MAX_CONTROL_LINE`] without ending.
    #[error("control line longer than {MAX_CONTROL_LINE} bytes")]
    ControlLineTooLong,
    /// The server closed the connection.
    #[error("connection closed by server")]
    Closed,
    /// The server answered the handshake with `-ERR`.
    #[error("server refused: {0}")]
    Refused(String),
}

/// One frame from the server. Slices borrow the reader's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `MSG` or `HMSG`.
    Msg(Msg<'a>),
    /// `PING`: the caller must answer `PONG`.
    Ping,
    /// `PONG`: answer to one of our `PING`s.
    Pong,
    /// `+OK` (only in verbose mode, which the bench does not use).
    Ok,
    /// `-ERR '<text>'`; the slice is the text after `-ERR `.
    Err(&'a [u8]),
    /// `INFO {json}`; the slice is the JSON.
    Info(&'a [u8]),
}

/// A delivered message.
#[derive(Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    /// Subject it was published to.
    pub subject: &'a [u8],
    /// Subscription id it matched.
    pub sid: &'a [u8],
    /// Reply subject, if the publisher set one.
    pub reply: Option<&'a [u8]>,
    /// Header block (`HMSG` only), empty for `MSG`.
    pub headers: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
}

/// Parses one frame at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame, otherwise the
/// frame and the number of bytes it used.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, ProtoError> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > MAX_CONTROL_LINE {
            Err(ProtoError::ControlLineTooLong)
        } else {
            Ok(None)
        };
    };
    let line = trim_cr(&buf[..nl]);
    let after_line = nl + 1;
    let simple = |frame| Ok(Some((frame, after_line)));
    match line.first().map(u8::to_ascii_uppercase) {
        Some(b'M') if starts_with_ci(line, b"MSG ") => {
            parse_msg(buf, &line[4..], after_line, false)
        }
        Some(b'H') if starts_with_ci(line, b"HMSG ") => {
            parse_msg(buf, &line[5..], after_line, true)
        }
        Some(b'P') if line.eq_ignore_ascii_case(b"PING") => simple(Frame::Ping),
        Some(b'P') if line.eq_ignore_ascii_case(b"PONG") => simple(Frame::Pong),
        Some(b'+') if line.eq_ignore_ascii_case(b"+OK") => simple(Frame::Ok),
        Some(b'-') if starts_with_ci(line, b"-ERR") => simple(Frame::Err(trim_spaces(&line[4..]))),
        Some(b'I') if starts_with_ci(line, b"INFO ") => {
            simple(Frame::Info(trim_spaces(&line[5..])))
        }
        _ => Err(unexpected(line)),
    }
}

fn parse_msg<'a>(
    buf: &'a [u8],
    args_line: &'a [u8],
    after_line: usize,
    with_headers: bool,
) -> Result<Option<(Frame<'a>, usize)>, ProtoError> {
    let mut args: [&[u8]; 5] = [&[]; 5];
    let mut count = 0;
    for arg in args_line
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|a| !a.is_empty())
    {
        if count == args.len() {
            return Err(unexpected(args_line));
        }
        args[count] = arg;
        count += 1;
    }
    // MSG: subject sid [reply] size. HMSG: subject sid [reply] hdr_size total_size.
    let sizes = if with_headers { 2 } else { 1 };
    let (reply, sizes_at) = match count.checked_sub(sizes) {
        Some(2) => (None, 2),
        Some(3) => (Some(args[2]), 3),
        _ => return Err(unexpected(args_line)),
    };
    let total = parse_size(args[count - 1]).ok_or_else(|| unexpected(args_line))?;
    let header_len = if with_headers {
        parse_size(args[sizes_at]).ok_or_else(|| unexpected(args_line))?
    } else {
        0
    };
    if header_len > total {
        return Err(unexpected(args_line));
    }
    let end = after_line + total;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(unexpected(&buf[end..end + 2]));
    }
    let body = &buf[after_line..end];
    let msg = Msg {
        subject: args[0],
        sid: args[1],
        reply,
        headers: &body[..header_len],
        payload: &body[header_len..],
    };
    Ok(Some((Frame::Msg(msg), end + 2)))
}

fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + usize::from(d - b'0'))
    })
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

fn starts_with_ci(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn unexpected(bytes: &[u8]) -> ProtoError {
    let shown = &bytes[..bytes.len().min(200)];
    ProtoError::Unexpected(String::from_utf8_lossy(shown).into_owned())
}

/// Buffered reader of server frames over any byte source.
///
/// Use as `while let Some(frame) = r.next_frame()? { … }` followed by
/// `r.fill()?` when it returns `None`.
pub struct FrameReader<R> {
    source: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: Read> FrameReader<R> {
    /// A reader with a `capacity`-byte buffer (grown if one frame is larger).
    pub fn new(source: R, capacity: usize) -> Self {
        Self {
            source,
            buf: vec![0; capacity.max(64)],
            start: 0,
            end: 0,
        }
    }

    /// Reads once from the source. Returns the number of bytes read; 0 means
    /// the source reached its end.
    pub fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < self.buf.len() / 4 {
            // What is left is at most one partial frame, so moving it is cheap
            // compared with issuing small reads into the buffer's tail.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < self.buf.len() / 4 {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
        let read = self.source.read(&mut self.buf[self.end..])?;
        self.end += read;
        Ok(read)
    }

    /// The next complete frame in the buffer, or `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ProtoError> {
        // `buf` and `start` are disjoint fields, so the frame may borrow the
        // buffer while the cursor moves past it.
        match parse_frame(&self.buf[self.start..self.end])? {
            Some((frame, len)) => {
                self.start += len;
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    /// Reads until a frame is available and passes it to `on_frame`.
    pub fn read_frame<T>(
        &mut self,
        on_frame: impl FnOnce(Frame<'_>) -> T,
    ) -> Result<T, ProtoError> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(on_frame(frame));
            }
            if self.fill()? == 0 {
                return Err(ProtoError::Closed);
            }
        }
    }

    /// Bytes received but not yet consumed as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The underlying source.
    pub fn get_ref(&self) -> &R {
        &self.source
    }
}

/// A client connection after a successful handshake: a write half and a
/// frame reader over a clone of the same socket.
pub struct ClientConn {
    /// Write half; callers batch their own buffers before writing.
    pub writer: TcpStream,
    /// Read half.
    pub reader: FrameReader<TcpStream>,
}

/// Credentials sent in CONNECT.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `user`, if any.
    pub user: Option<String>,
    /// `pass`, if any.
    pub pass: Option<String>,
    /// An NKEY user's key pair: it signs the nonce of each connection's INFO.
    pub nkey: Option<NkeySigner>,
}

/// A user key pair (decoded once, so a storm measures the server, not the seed decoding).
#[derive(Clone)]
pub struct NkeySigner(std::sync::Arc<nkeys::KeyPair>);

impl std::fmt::Debug for NkeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NkeySigner")
            .field(&self.0.public_key())
            .finish()
    }
}

impl NkeySigner {
    /// The public key (`U...`) the server config names.
    pub fn public_key(&self) -> String {
        self.0.public_key()
    }
}

impl Credentials {
    /// Username and password.
    pub fn user_pass(user: &str, pass: &str) -> Self {
        Self {
            user: Some(user.to_owned()),
            pass: Some(pass.to_owned()),
            nkey: None,
        }
    }

    /// A fresh NKEY user.
    pub fn new_nkey_user() -> Self {
        Self {
            nkey: Some(NkeySigner(std::sync::Arc::new(nkeys::KeyPair::new_user()))),
            ..Self::default()
        }
    }

    /// The CONNECT JSON for a server that sent `info` (an NKEY user signs its nonce).
    fn connect_json_for(&self, info: &[u8]) -> Result<String, ProtoError> {
        let Some(NkeySigner(key)) = &self.nkey else {
            return Ok(self.connect_json());
        };
        let info: serde_json::Value = serde_json::from_slice(info)
            .map_err(|e| ProtoError::Unexpected(format!("INFO: {e}")))?;
        let nonce = info["nonce"]
            .as_str()
            .ok_or_else(|| ProtoError::Unexpected("INFO without a nonce".into()))?;
        let sig = key
            .sign(nonce.as_bytes())
            .map_err(|e| ProtoError::Unexpected(format!("sign: {e}")))?;
        let mut obj: serde_json::Value = serde_json::from_str(&self.connect_json())
            .map_err(|e| ProtoError::Unexpected(e.to_string()))?;
        if let serde_json::Value::Object(map) = &mut obj {
            use base64::Engine as _;
            map.insert("nkey".into(), key.public_key().into());
            map.insert(
                "sig".into(),
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(sig)
                    .into(),
            );
        }
        Ok(obj.to_string())
    }

    /// The CONNECT JSON object for these credentials.
    pub fn connect_json(&self) -> String {
        let mut obj = serde_json::json!({
            "verbose": false,
            "pedantic": false,
            "tls_required": false,
            "name": "natsd-bench",
            "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"),
            "protocol": 1,
            "echo": true,
        });
        if let (Some(user), serde_json::Value::Object(map)) = (&self.user, &mut obj) {
            map.insert("user".into(), user.clone().into());
            map.insert("pass".into(), self.pass.clone().unwrap_or_default().into());
        }
        obj.to_string()
    }
}

impl ClientConn {
    /// Connects, waits for INFO, sends CONNECT and a PING, and waits for the
    /// PONG so the server has registered the client before we return.
    pub fn connect(
        addr: SocketAddr,
        creds: &Credentials,
        read_buffer: usize,
    ) -> Result<Self, ProtoError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut conn = Self {
            writer: stream.try_clone()?,
            reader: FrameReader::new(stream, read_buffer),
        };
        let connect = conn.reader.read_frame(|frame| match frame {
            Frame::Info(info) => creds.connect_json_for(info),
            other => Err(ProtoError::Unexpected(format!("{other:?} before INFO"))),
        })??;
        let hello = format!("CONNECT {connect}\r\nPING\r\n");
        conn.writer.write_all(hello.as_bytes())?;
        conn.wait_pong()?;
        Ok(conn)
    }

    /// Subscribes (optionally in a queue group) and round-trips a PING so the
    /// subscription is active when this returns.
    pub fn subscribe(
        &mut self,
        subject: &str,
        queue: Option<&str>,
        sid: u32,
    ) -> Result<(), ProtoError> {
        let line = match queue {
            Some(q) => format!("SUB {subject} {q} {sid}\r\nPING\r\n"),
            None => format!("SUB {subject} {sid}\r\nPING\r\n"),
        };
        self.writer.write_all(line.as_bytes())?;
        self.wait_pong()
    }

    /// Sends PING and reads until PONG, answering server PINGs on the way.
    /// Messages that arrive meanwhile are discarded.
    pub fn flush(&mut self) -> Result<(), ProtoError> {
        self.writer.write_all(b"PING\r\n")?;
        self.wait_pong()
    }

    /// Reads until PONG; `-ERR` becomes [`ProtoError::Refused`].
    pub fn wait_pong(&mut self) -> Result<(), ProtoError> {
        loop {
            let step = self.reader.read_frame(|frame| match frame {
                Frame::Pong => Step::Done,
                Frame::Ping => Step::AnswerPing,
                Frame::Err(text) => Step::Failed(String::from_utf8_lossy(text).into_owned()),
                Frame::Msg(_) | Frame::Ok | Frame::Info(_) => Step::Continue,
            })?;
            match step {
                Step::Done => return Ok(()),
                Step::AnswerPing => self.writer.write_all(b"PONG\r\n")?,
                Step::Failed(text) => return Err(ProtoError::Refused(text)),
                Step::Continue => {}
            }
        }
    }
}

enum Step {
    Done,
    AnswerPing,
    Failed(String),
    Continue,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields its bytes in chunks of the given sizes, cycling through them.
    struct Chunked<'a> {
        data: &'a [u8],
        sizes: Vec<usize>,
        turn: usize,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let want = self.sizes[self.turn % self.sizes.len()].max(1);
            self.turn += 1;
            let n = want.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Msg {
            subject: Vec<u8>,
            sid: Vec<u8>,
            reply: Option<Vec<u8>>,
            headers: Vec<u8>,
            payload: Vec<u8>,
        },
        Ping,
        Pong,
        Ok,
        Err(Vec<u8>),
        Info(Vec<u8>),
    }

    fn own(frame: Frame<'_>) -> Owned {
        match frame {
            Frame::Msg(m) => Owned::Msg {
                subject: m.subject.to_vec(),
                sid: m.sid.to_vec(),
                reply: m.reply.map(<[u8]>::to_vec),
                headers: m.headers.to_vec(),
                payload: m.payload.to_vec(),
            },
            Frame::Ping => Owned::Ping,
            Frame::Pong => Owned::Pong,
            Frame::Ok => Owned::Ok,
            Frame::Err(t) => Owned::Err(t.to_vec()),
            Frame::Info(t) => Owned::Info(t.to_vec()),
        }
    }

    fn read_all(data: &[u8], sizes: Vec<usize>, capacity: usize) -> Vec<Owned> {
        let source = Chunked {
            data,
            sizes,
            turn: 0,
        };
        let mut reader = FrameReader::new(source, capacity);
        let mut frames = Vec::new();
        loop {
            while let Some(frame) = reader.next_frame().unwrap() {
                frames.push(own(frame));
            }
            if reader.fill().unwrap() == 0 {
                break;
            }
        }
        assert_eq!(reader.buffered(), 0, "bytes left unparsed");
        frames
    }

    const STREAM: &[u8] = b"INFO {\"server_id\":\"x\"}\r\n\
        MSG foo 1 5\r\nhello\r\n\
        MSG foo.bar 22 reply.to 0\r\n\r\n\
        PING\r\n\
        HMSG h 3 12 17\r\nNATS/1.0\r\n\r\nworld\r\n\
        MSG bin 4 6\r\na\r\nb\nc\r\n\
        -ERR 'Slow Consumer Detected'\r\n\
        +OK\r\n\
        PONG\r\n";

    fn expected() -> Vec<Owned> {
        let msg =
            |subject: &[u8], sid: &[u8], reply: Option<&[u8]>, headers: &[u8], payload: &[u8]| {
                Owned::Msg {
                    subject: subject.to_vec(),
                    sid: sid.to_vec(),
                    reply: reply.map(<[u8]>::to_vec),
                    headers: headers.to_vec(),
                    payload: payload.to_vec(),
                }
            };
        vec![
            Owned::Info(b"{\"server_id\":\"x\"}".to_vec()),
            msg(b"foo", b"1", None, b"", b"hello"),
            msg(b"foo.bar", b"22", Some(b"reply.to"), b"", b""),
            Owned::Ping,
            msg(b"h", b"3", None, b"NATS/1.0\r\n\r\n", b"world"),
            msg(b"bin", b"4", None, b"", b"a\r\nb\nc"),
            Owned::Err(b"'Slow Consumer Detected'".to_vec()),
            Owned::Ok,
            Owned::Pong,
        ]
    }

    #[test]
    fn whole_stream_in_one_read() {
        assert_eq!(read_all(STREAM, vec![STREAM.len()], 4096), expected());
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        for first in 1..STREAM.len() {
            let frames = read_all(STREAM, vec![first, STREAM.len()], 4096);
            assert_eq!(frames, expected(), "split after {first} bytes");
        }
    }

    #[test]
    fn byte_at_a_time_with_a_tiny_buffer_grows_and_compacts() {
        assert_eq!(read_all(STREAM, vec![1], 64), expected());
        assert_eq!(read_all(STREAM, vec![3, 7, 2], 64), expected());
    }

    #[test]
    fn frame_larger_than_buffer_is_read_whole() {
        let payload = vec![b'z'; 10_000];
        let mut data = b"MSG big 1 10000\r\n".to_vec();
        data.extend_from_slice(&payload);
        data.extend_from_slice(b"\r\nPONG\r\n");
        let frames = read_all(&data, vec![1000], 64);
        assert_eq!(frames.len(), 2);
        match &frames[0] {
            Owned::Msg { payload: got, .. } => assert_eq!(got, &payload),
            other => panic!("expected MSG, got {other:?}"),
        }
        assert_eq!(frames[1], Owned::Pong);
    }

    #[test]
    fn partial_frames_need_more_bytes() {
        assert!(parse_frame(b"MSG foo 1 5\r\nhel").unwrap().is_none());
        assert!(parse_frame(b"MSG foo 1 5\r\nhello\r").unwrap().is_none());
        assert!(parse_frame(b"PIN").unwrap().is_none());
        let (frame, used) = parse_frame(b"MSG foo 1 5\r\nhello\r\nPING")
            .unwrap()
            .unwrap();
        assert_eq!(used, 20);
        assert!(matches!(frame, Frame::Msg(m) if m.payload == b"hello"));
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert!(parse_frame(b"MSG foo 5\r\n").is_err());
        assert!(parse_frame(b"MSG foo 1 x5\r\n").is_err());
        assert!(parse_frame(b"MSG foo 1 3\r\nabcXY").is_err());
        assert!(parse_frame(b"HMSG foo 1 9 5\r\n").is_err());
        assert!(parse_frame(b"BOGUS\r\n").is_err());
        assert!(matches!(
            parse_frame(&vec![b'a'; MAX_CONTROL_LINE + 1]),
            Err(ProtoError::ControlLineTooLong)
        ));
    }

    #[test]
    fn connect_json_carries_credentials_only_when_set() {
        let anon: serde_json::Value =
            serde_json::from_str(&Credentials::default().connect_json()).unwrap();
        assert!(anon.get("user").is_none());
        assert_eq!(anon["verbose"], false);
        let named: serde_json::Value =
            serde_json::from_str(&Credentials::user_pass("u", "p\"q").connect_json()).unwrap();
        assert_eq!(named["user"], "u");
        assert_eq!(named["pass"], "p\"q");
    }
}
