//! [`RawClient`]: a client that speaks raw protocol bytes, for exact wire assertions
//! (like nats-server's own send/expect test helpers).

use std::time::Duration;

use regex::bytes::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Default time a raw client waits for an expected frame.
pub const EXPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client that speaks raw protocol bytes, for exact wire assertions.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The INFO JSON the server sent on accept.
    pub info: serde_json::Value,
    closed: bool,
}

impl RawClient {
    /// Connects and consumes the server's first INFO line.
    pub async fn connect(addr: &str) -> RawClient {
        Self::connect_silent(addr).await.greeted().await
    }

    /// Connects without reading anything.
    pub async fn connect_silent(addr: &str) -> RawClient {
        Self::over(TcpStream::connect(addr).await.unwrap())
    }

    fn over(stream: TcpStream) -> RawClient {
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
            info: serde_json::Value::Null,
            closed: false,
        }
    }

    /// Reads the server's first INFO into [`RawClient::info`].
    async fn greeted(mut self) -> RawClient {
        self.info = self.expect_info().await;
        self
    }

    /// Reads one `INFO {...} \r\n` frame and returns its JSON.
    pub async fn expect_info(&mut self) -> serde_json::Value {
        let line = self.expect_regex(r"^INFO \{.*\} \r\n").await;
        let text = String::from_utf8(line).unwrap();
        let json = &text["INFO ".len()..text.len() - " \r\n".len()];
        serde_json::from_str(json).unwrap()
    }

    /// Sends `CONNECT <json>` and a PING, then waits for the PONG (after `+OK` if verbose).
    pub async fn handshake(&mut self, connect_json: &str) {
        self.send(format!("CONNECT {connect_json}\r\nPING\r\n"))
            .await;
        self.expect_regex(r"^(\+OK\r\n)?PONG\r\n").await;
    }

    /// Writes bytes to the socket.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.unwrap();
    }

    /// Writes bytes, ignoring errors (for sockets the server may already have closed).
    pub async fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> bool {
        self.stream.write_all(bytes.as_ref()).await.is_ok()
    }

    /// PING, expect PONG: a barrier proving the server processed everything sent before.
    pub async fn ping_pong(&mut self) {
        self.send("PING\r\n").await;
        self.expect("PONG\r\n").await;
    }

    /// Reads more bytes into the buffer; returns false on EOF or reset.
    async fn fill(&mut self, deadline: tokio::time::Instant) -> Result<bool, ()> {
        if self.closed {
            return Ok(false);
        }
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Err(()),
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.closed = true;
                Ok(false)
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    /// The next bytes from the server must be exactly `expected`.
    pub async fn expect(&mut self, expected: &str) {
        self.expect_bytes(expected.as_bytes()).await;
    }

    /// The next bytes from the server must be exactly `expected`.
    pub async fn expect_bytes(&mut self, expected: &[u8]) {
        let deadline = tokio::time::Instant::now() + EXPECT_TIMEOUT;
        loop {
            let n = self.buf.len().min(expected.len());
            assert_eq!(
                String::from_utf8_lossy(&self.buf[..n]),
                String::from_utf8_lossy(&expected[..n]),
                "unexpected bytes from server (want {:?}, have {:?})",
                String::from_utf8_lossy(expected),
                String::from_utf8_lossy(&self.buf)
            );
            if self.buf.len() >= expected.len() {
                self.buf.drain(..expected.len());
                return;
            }
            match self.fill(deadline).await {
                Ok(true) => {}
                Ok(false) => panic!(
                    "connection closed while waiting for {:?}; got {:?}",
                    String::from_utf8_lossy(expected),
                    String::from_utf8_lossy(&self.buf)
                ),
                Err(()) => panic!(
                    "timed out waiting for {:?}; got {:?}",
                    String::from_utf8_lossy(expected),
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// The buffered bytes must match `pattern` at the start (anchor it with `^`); the
    /// matched bytes are consumed and returned.
    pub async fn expect_regex(&mut self, pattern: &str) -> Vec<u8> {
        let re = Regex::new(pattern).unwrap();
        let deadline = tokio::time::Instant::now() + EXPECT_TIMEOUT;
        loop {
            if let Some(m) = re.find(&self.buf) {
                if m.start() == 0 {
                    let end = m.end();
                    return self.buf.drain(..end).collect();
                }
            }
            match self.fill(deadline).await {
                Ok(true) => {}
                Ok(false) => panic!(
                    "connection closed while waiting for /{pattern}/; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Err(()) => panic!(
                    "timed out waiting for /{pattern}/; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Waits for the server to close the connection, asserting it sent nothing more.
    pub async fn expect_closed(&mut self) {
        let rest = self.read_until_closed(EXPECT_TIMEOUT).await;
        assert!(
            rest.is_empty(),
            "expected a silent close, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Reads until the server closes; returns whatever arrived. Panics on timeout.
    pub async fn read_until_closed(&mut self, timeout: Duration) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.fill(deadline).await {
                Ok(true) => {}
                Ok(false) => return std::mem::take(&mut self.buf),
                Err(()) => panic!(
                    "connection still open after {timeout:?}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Collects what arrives until the line has been quiet for `quiet` (or it closes).
    pub async fn read_available(&mut self, quiet: Duration) -> Vec<u8> {
        loop {
            let deadline = tokio::time::Instant::now() + quiet;
            match self.fill(deadline).await {
                Ok(true) => {}
                Ok(false) | Err(()) => return std::mem::take(&mut self.buf),
            }
        }
    }

    /// Asserts nothing arrives within `quiet`.
    pub async fn expect_nothing(&mut self, quiet: Duration) {
        let got = self.read_available(quiet).await;
        assert!(
            got.is_empty(),
            "expected silence, got {:?}",
            String::from_utf8_lossy(&got)
        );
    }

    /// Whether the server has closed the connection (observed so far).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// One server-to-client protocol frame, as parsed by [`RawClient::next_frame`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Frame {
    /// `INFO {...}`; the JSON body is kept but differential tests drop it.
    Info(String),
    /// `MSG subject sid [reply] len` plus payload.
    Msg {
        subject: String,
        sid: String,
        reply: Option<String>,
        payload: Vec<u8>,
    },
    /// `HMSG subject sid [reply] hlen tlen` plus headers and payload.
    HMsg {
        subject: String,
        sid: String,
        reply: Option<String>,
        headers: Vec<u8>,
        payload: Vec<u8>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR '<text>'` with the text inside the quotes.
    Err(String),
    /// Anything else (a protocol bug in the server).
    Other(String),
}

impl RawClient {
    /// Parses one complete frame from the front of the buffer, if there is one.
    fn parse_frame(&mut self) -> Option<Frame> {
        let line_end = self.buf.windows(2).position(|w| w == b"\r\n")?;
        let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
        let mut parts = line.split_whitespace();
        let op = parts.next().unwrap_or("").to_string();
        let args: Vec<String> = parts.map(str::to_string).collect();
        let body_start = line_end + 2;
        let frame_with_body = |buf: &[u8], total: usize| -> Option<(Vec<u8>, usize)> {
            if buf.len() < body_start + total + 2 {
                return None;
            }
            Some((
                buf[body_start..body_start + total].to_vec(),
                body_start + total + 2,
            ))
        };
        let (frame, consumed) = match op.as_str() {
            "INFO" => (Frame::Info(line[5..].trim().to_string()), body_start),
            "PING" => (Frame::Ping, body_start),
            "PONG" => (Frame::Pong, body_start),
            "+OK" => (Frame::Ok, body_start),
            "-ERR" => {
                let text = line[4..].trim().trim_matches('\'').to_string();
                (Frame::Err(text), body_start)
            }
            "MSG" if args.len() == 3 || args.len() == 4 => {
                let len: usize = args.last()?.parse().ok()?;
                let (payload, consumed) = frame_with_body(&self.buf, len)?;
                let reply = (args.len() == 4).then(|| args[2].clone());
                let frame = Frame::Msg {
                    subject: args[0].clone(),
                    sid: args[1].clone(),
                    reply,
                    payload,
                };
                (frame, consumed)
            }
            "HMSG" if args.len() == 4 || args.len() == 5 => {
                let total: usize = args.last()?.parse().ok()?;
                let hlen: usize = args[args.len() - 2].parse().ok()?;
                let (body, consumed) = frame_with_body(&self.buf, total)?;
                let reply = (args.len() == 5).then(|| args[2].clone());
                let frame = Frame::HMsg {
                    subject: args[0].clone(),
                    sid: args[1].clone(),
                    reply,
                    headers: body[..hlen.min(body.len())].to_vec(),
                    payload: body[hlen.min(body.len())..].to_vec(),
                };
                (frame, consumed)
            }
            _ => (Frame::Other(line.clone()), body_start),
        };
        self.buf.drain(..consumed);
        Some(frame)
    }

    /// Reads the next frame; `None` when the connection closed first. Panics after
    /// [`EXPECT_TIMEOUT`].
    pub async fn next_frame(&mut self) -> Option<Frame> {
        self.next_frame_within(EXPECT_TIMEOUT).await
    }

    /// [`RawClient::next_frame`] with its own timeout.
    pub async fn next_frame_within(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(frame) = self.parse_frame() {
                return Some(frame);
            }
            match self.fill(deadline).await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(()) => panic!(
                    "timed out waiting for a frame; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Sends PING and returns every frame received before the matching PONG.
    pub async fn frames_until_pong(&mut self) -> Vec<Frame> {
        self.send("PING\r\n").await;
        let mut frames = Vec::new();
        loop {
            match self.next_frame().await {
                Some(Frame::Pong) => return frames,
                Some(frame) => frames.push(frame),
                None => panic!("connection closed before PONG; frames so far: {frames:?}"),
            }
        }
    }

    /// Collects frames until the line is quiet for `quiet` or closes. A trailing
    /// partial frame is returned as `Frame::Other`.
    pub async fn frames_available(&mut self, quiet: Duration) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            while let Some(frame) = self.parse_frame() {
                frames.push(frame);
            }
            let deadline = tokio::time::Instant::now() + quiet;
            match self.fill(deadline).await {
                Ok(true) => {}
                Ok(false) | Err(()) => break,
            }
        }
        while let Some(frame) = self.parse_frame() {
            frames.push(frame);
        }
        if !self.buf.is_empty() {
            frames.push(Frame::Other(
                String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned(),
            ));
        }
        frames
    }

    /// Connects with a tiny kernel receive buffer, so a client that stops reading backs
    /// up into the server quickly (slow-consumer tests).
    pub async fn connect_small_rcvbuf(addr: &str, rcvbuf: u32) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(rcvbuf).unwrap();
        let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
        Self::over(stream).greeted().await
    }
}

/// A `MSG` frame without reply, for assertions.
pub fn msg(subject: &str, sid: &str, payload: &[u8]) -> Frame {
    Frame::Msg {
        subject: subject.to_string(),
        sid: sid.to_string(),
        reply: None,
        payload: payload.to_vec(),
    }
}
