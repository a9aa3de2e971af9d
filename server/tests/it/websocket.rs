//! The WebSocket listener, against natsd and the reference nats-server alike: upgrade
//! answers and refusals, origin checks, the start-up refusals, pub/sub between a TCP and a
//! WebSocket client with frames cut anywhere, permessage-deflate, the block's auth override,
//! and what the monitor shows.

use std::io::Write as _;
use std::time::Duration;

use flate2::write::DeflateEncoder;
use flate2::Compression;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{RawClient, ServerSpec, TestServer, EXPECT_TIMEOUT};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn both_servers() -> Vec<std::path::PathBuf> {
    testkit::natsd_and_reference()
}

fn name(bin: &std::path::Path) -> String {
    bin.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Start `bin` with a `websocket` block (`extra` inside it) on a random port; returns the
/// server and its WebSocket port, read from the log line both servers print.
fn start(bin: &std::path::Path, extra: &str, top: &str) -> (TestServer, u16) {
    let config =
        format!("{top}\nwebsocket {{\n  listen: \"127.0.0.1:-1\"\n  no_tls: true\n  {extra}\n}}\n");
    let server = TestServer::start_bin(bin, ServerSpec::new().config(&config).monitor());
    let port = ws_port(&server);
    (server, port)
}

fn ws_port(server: &TestServer) -> u16 {
    let re = regex::Regex::new(r"Listening for websocket clients on wss?://[^ ]*:(\d+)").unwrap();
    let log = server.log();
    let caps = re
        .captures(&log)
        .unwrap_or_else(|| panic!("no websocket listening line in:\n{log}"));
    caps[1].parse().unwrap()
}

/// The upgrade request, with `extra` header lines.
fn upgrade_request(port: u16, extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Send a raw request head and return the response head and body (read until close, or the
/// end of a `101` head).
async fn raw_http(port: u16, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + EXPECT_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.starts_with(b"HTTP/1.1 101") && buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|len| buf.len() >= end + 4 + len) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // After a 101 come frames (the INFO), not an HTTP body.
    let body = if head.starts_with("HTTP/1.1 101") {
        ""
    } else {
        body
    };
    (head.to_string(), body.to_string())
}

/// The parts of a response both servers must agree on: the status line, the headers that
/// matter (sorted, without Date), and the body.
fn normalise(head: &str, body: &str) -> String {
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_string();
    let mut headers: Vec<String> = lines
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("date:") && !l.starts_with("connection: close")
        })
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            format!("{}:{}", k.to_ascii_lowercase(), v.trim())
        })
        .collect();
    headers.sort();
    format!("{status}\n{}\n{body}", headers.join("\n"))
}

/// A byte stream a WebSocket client runs over (plain TCP or TLS).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A WebSocket client speaking the NATS protocol in masked binary frames.
struct WsClient {
    stream: Box<dyn Io>,
    /// Protocol bytes received and not yet taken.
    text: Vec<u8>,
    pending: Vec<u8>,
    compressed: bool,
    pub close: Option<Vec<u8>>,
}

impl WsClient {
    async fn connect(port: u16, extra: &str) -> WsClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Self::over(Box::new(stream), port, extra).await
    }

    async fn over(mut stream: Box<dyn Io>, port: u16, extra: &str) -> WsClient {
        stream
            .write_all(upgrade_request(port, extra).as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(EXPECT_TIMEOUT, stream.read(&mut byte))
                .await
                .expect("upgrade answer in time")
                .unwrap();
            assert_eq!(
                n,
                1,
                "closed during upgrade: {}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        let compressed = head.to_ascii_lowercase().contains("permessage-deflate");
        WsClient {
            stream,
            text: Vec::new(),
            pending: Vec::new(),
            compressed,
            close: None,
        }
    }

    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x37u8, 0xfa, 0x21, 0x3d];
        let mut f = vec![b0];
        let len = payload.len();
        if len <= 125 {
            f.push(0x80 | len as u8);
        } else if len < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        f
    }

    /// Send `data` as one binary message.
    async fn send(&mut self, data: &[u8]) {
        let f = Self::frame(0x82, data);
        self.stream.write_all(&f).await.unwrap();
    }

    /// Send `data` compressed (permessage-deflate, no context takeover).
    async fn send_compressed(&mut self, data: &[u8]) {
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        let mut payload = enc.flush_finish().unwrap();
        // A sync flush ends in 00 00 ff ff, which stays off the wire.
        if payload.ends_with(&[0, 0, 0xff, 0xff]) {
            payload.truncate(payload.len() - 4);
        }
        let f = Self::frame(0xc2, &payload);
        self.stream.write_all(&f).await.unwrap();
    }

    /// Send `data` as one message in frames of `size` bytes, each written on its own.
    async fn send_fragmented(&mut self, data: &[u8], size: usize) {
        let chunks: Vec<&[u8]> = data.chunks(size).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let op = if i == 0 { 0x02 } else { 0x00 };
            let fin = if i + 1 == chunks.len() { 0x80 } else { 0 };
            let f = Self::frame(op | fin, chunk);
            // Split the frame itself across writes too.
            let (a, b) = f.split_at(f.len() / 2);
            self.stream.write_all(a).await.unwrap();
            self.stream.flush().await.unwrap();
            self.stream.write_all(b).await.unwrap();
        }
    }

    /// Read frames until `self.text` holds `needle`; returns everything up to and including it.
    async fn expect(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + EXPECT_TIMEOUT;
        loop {
            if let Some(pos) = find(&self.text, needle.as_bytes()) {
                let end = pos + needle.len();
                let got: Vec<u8> = self.text.drain(..end).collect();
                return String::from_utf8_lossy(&got).to_string();
            }
            let more = tokio::time::timeout_at(deadline, self.read_frame())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no {needle:?} in time; got {:?}",
                        String::from_utf8_lossy(&self.text)
                    )
                });
            assert!(
                more,
                "closed before {needle:?}; got {:?}",
                String::from_utf8_lossy(&self.text)
            );
        }
    }

    /// Read one frame into `text` (data) or `close`; false once the connection ended.
    async fn read_frame(&mut self) -> bool {
        loop {
            if let Some((b0, payload, used)) = parse_server_frame(&self.pending) {
                self.pending.drain(..used);
                let op = b0 & 0x0f;
                match op {
                    8 => {
                        self.close = Some(payload);
                        return false;
                    }
                    9 | 10 => {}
                    _ => {
                        if b0 & 0x40 != 0 {
                            assert!(self.compressed, "compressed frame without agreement");
                            let mut data = payload.clone();
                            data.extend_from_slice(&[0, 0, 0xff, 0xff]);
                            let mut dec = flate2::Decompress::new(false);
                            let mut out = Vec::with_capacity(data.len() * 20 + 1024);
                            dec.decompress_vec(&data, &mut out, flate2::FlushDecompress::Sync)
                                .unwrap();
                            self.text.extend_from_slice(&out);
                        } else {
                            self.text.extend_from_slice(&payload);
                        }
                    }
                }
                return true;
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return false;
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    /// Read until the server closes; true if it sent a close frame.
    async fn expect_closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + EXPECT_TIMEOUT;
        while tokio::time::timeout_at(deadline, self.read_frame())
            .await
            .expect("closed in time")
        {}
        self.close.is_some()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete unmasked server frame at the front of `buf`: (first byte, payload, length used).
fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
    let (len, start) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        l => (l as usize, 2),
    };
    if buf.len() < start + len {
        return None;
    }
    Some((buf[0], buf[start..start + len].to_vec(), start + len))
}

/// Builds a request for a listener's port.
type RequestFor = Box<dyn Fn(u16) -> String>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_answers_and_refusals_match_nats_server() {
    let cases: Vec<(&str, RequestFor)> = vec![
        ("good", Box::new(|p| upgrade_request(p, ""))),
        (
            "post",
            Box::new(|p| upgrade_request(p, "").replacen("GET", "POST", 1)),
        ),
        (
            "no upgrade header",
            Box::new(|p| upgrade_request(p, "").replace("Upgrade: websocket\r\n", "")),
        ),
        (
            "connection without upgrade",
            Box::new(|p| {
                upgrade_request(p, "").replace("Connection: Upgrade", "Connection: keep-alive")
            }),
        ),
        (
            "no key",
            Box::new(|p| {
                upgrade_request(p, "").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "")
            }),
        ),
        (
            "short key",
            Box::new(|p| upgrade_request(p, "").replace(KEY, "c2hvcnQ=")),
        ),
        (
            "version 8",
            Box::new(|p| upgrade_request(p, "").replace("Version: 13", "Version: 8")),
        ),
        (
            "allowed origin",
            Box::new(|p| upgrade_request(p, "Origin: https://app.example.com\r\n")),
        ),
        (
            "origin other scheme",
            Box::new(|p| upgrade_request(p, "Origin: http://app.example.com\r\n")),
        ),
        (
            "origin other host",
            Box::new(|p| upgrade_request(p, "Origin: https://evil.example.com\r\n")),
        ),
        (
            "deflate offered",
            Box::new(|p| {
                upgrade_request(
                    p,
                    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
                )
            }),
        ),
        (
            "no masking",
            Box::new(|p| upgrade_request(p, "Nats-No-Masking: true\r\n")),
        ),
    ];
    let mut results: Vec<Vec<String>> = Vec::new();
    for bin in both_servers() {
        let (_server, port) = start(
            &bin,
            "allowed_origins: [\"https://app.example.com\"]\n  compression: true\n  headers { X-Extra: \"yes\" }",
            "",
        );
        let mut answers = Vec::new();
        for (case, request) in &cases {
            let (head, body) = raw_http(port, &request(port)).await;
            answers.push(format!("{case}: {}", normalise(&head, &body)));
        }
        results.push(answers);
    }
    assert!(
        results[0][0].contains("101 Switching Protocols"),
        "{}",
        results[0][0]
    );
    assert!(results[0][0].contains("x-extra:yes"), "{}", results[0][0]);
    assert!(results[0][1].contains("405"), "{}", results[0][1]);
    assert!(results[0][8].contains("403 Forbidden"), "{}", results[0][8]);
    assert!(
        results[0][10]
            .contains("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "{}",
        results[0][10]
    );
    testkit::with_reference(&results, |natsd, reference| {
        for (ours, theirs) in natsd.iter().zip(reference) {
            assert_eq!(ours, theirs, "natsd and nats-server answer differently");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_refuses_other_origins_like_nats_server() {
    for bin in both_servers() {
        let (_server, port) = start(&bin, "same_origin: true", "");
        let own = format!("Origin: http://127.0.0.1:{port}\r\n");
        let (head, _) = raw_http(port, &upgrade_request(port, &own)).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{}: {head}", name(&bin));
        let (head, body) = raw_http(
            port,
            &upgrade_request(port, "Origin: http://127.0.0.1:1\r\n"),
        )
        .await;
        assert!(
            head.starts_with("HTTP/1.1 403 Forbidden"),
            "{}: {head}",
            name(&bin)
        );
        assert_eq!(body, "Forbidden\n", "{}", name(&bin));
        let (head, _) = raw_http(
            port,
            &upgrade_request(port, &own.replace("http:", "https:")),
        )
        .await;
        assert!(
            head.starts_with("HTTP/1.1 403"),
            "{}: scheme differs: {head}",
            name(&bin)
        );
    }
}

#[test]
fn start_up_refusals_match_nats_server() {
    let cases = [
        ("websocket { port: -1 }", "websocket requires TLS configuration"),
        (
            "websocket { port: -1, no_tls: true, allowed_origins: [\"ftp://x\"] }",
            "allowed origins must be absolute URLs with http or https scheme",
        ),
        (
            "authorization { users: [{user: a, password: b}] }\nwebsocket { port: -1, no_tls: true, authorization { token: t } }",
            "websocket authentication token not compatible with presence of users/nkeys",
        ),
        (
            "websocket { port: -1, no_tls: true, no_auth_user: nobody }",
            "no_auth_user: \"nobody\" present, but users/nkeys are not defined",
        ),
        (
            "websocket { port: -1, no_tls: true, headers { Upgrade: x } }",
            "websocket: invalid header \"Upgrade\" not allowed",
        ),
        (
            "websocket { port: -1, no_tls: true, jwt_cookie: my_jwt }",
            "trusted operators or trusted keys configuration is required for JWT authentication via cookie \"my_jwt\"",
        ),
    ];
    for bin in both_servers() {
        for (config, expected) in cases {
            let result = TestServer::try_start_bin(&bin, ServerSpec::new().config(config));
            let err = match result {
                Ok(_) => panic!("{} started with {config}", name(&bin)),
                Err(e) => e,
            };
            assert!(
                err.log.contains(expected),
                "{} with {config}: expected {expected:?} in:\n{}",
                name(&bin),
                err.log
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_websocket_clients_share_subjects() {
    for bin in both_servers() {
        let (server, port) = start(&bin, "", "");
        let mut ws = WsClient::connect(port, "").await;
        let info = ws.expect("\r\n").await;
        assert!(info.starts_with("INFO {"), "{info}");
        let info: serde_json::Value =
            serde_json::from_str(info.trim_start_matches("INFO ").trim()).unwrap();
        assert_eq!(
            info["port"],
            port,
            "{}: INFO names the websocket port",
            name(&bin)
        );
        // A control line cut across frames and writes, then merged lines in one frame.
        ws.send_fragmented(
            b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nSUB tcp.> 1\r\n",
            5,
        )
        .await;
        ws.send(b"PING\r\n").await;
        ws.expect("PONG\r\n").await;

        let mut tcp = RawClient::connect(&server.addr()).await;
        tcp.handshake("{\"verbose\":false}").await;
        tcp.send("SUB ws.* 9\r\nPING\r\n").await;
        tcp.expect("PONG\r\n").await;
        tcp.send("PUB tcp.hello 5\r\nworld\r\n").await;
        ws.expect("MSG tcp.hello 1 5\r\nworld\r\n").await;

        let big = vec![b'x'; 100_000];
        let mut publish = b"PUB ws.big 100000\r\n".to_vec();
        publish.extend_from_slice(&big);
        publish.extend_from_slice(b"\r\nPUB ws.small 2\r\nhi\r\n");
        ws.send_fragmented(&publish, 7_000).await;
        let mut expected = b"MSG ws.big 9 100000\r\n".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"\r\nMSG ws.small 9 2\r\nhi\r\n");
        let got = tcp.read_available(Duration::from_millis(500)).await;
        assert!(
            got == expected,
            "{}: got {} bytes, not the two messages",
            name(&bin),
            got.len()
        );

        // A ping frame is answered with a pong frame, and the protocol goes on.
        ws.stream
            .write_all(&WsClient::frame(0x89, b"hey"))
            .await
            .unwrap();
        ws.send(b"PING\r\n").await;
        ws.expect("PONG\r\n").await;

        // A close frame is echoed and the connection ends.
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        ws.stream
            .write_all(&WsClient::frame(0x88, &close))
            .await
            .unwrap();
        assert!(
            ws.expect_closed().await,
            "{}: close frame answered",
            name(&bin)
        );
        assert_eq!(ws.close.as_deref(), Some(&close[..]), "{}", name(&bin));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_frames_both_ways() {
    for bin in both_servers() {
        let (server, port) = start(&bin, "compression: true", "");
        let mut ws =
            WsClient::connect(port, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
        assert!(ws.compressed, "{}: deflate agreed", name(&bin));
        ws.expect("\r\n").await;
        ws.send_compressed(b"CONNECT {\"verbose\":false}\r\nSUB c 1\r\nPING\r\n")
            .await;
        ws.expect("PONG\r\n").await;
        let mut tcp = RawClient::connect(&server.addr()).await;
        tcp.handshake("{\"verbose\":false}").await;
        tcp.send("SUB d 2\r\nPING\r\n").await;
        tcp.expect("PONG\r\n").await;
        let payload = "compressible ".repeat(100);
        tcp.send(format!("PUB c {}\r\n{payload}\r\n", payload.len()))
            .await;
        ws.expect(&format!("MSG c 1 {}\r\n{payload}\r\n", payload.len()))
            .await;
        ws.send_compressed(format!("PUB d {}\r\n{payload}\r\n", payload.len()).as_bytes())
            .await;
        tcp.expect(&format!("MSG d 2 {}\r\n{payload}\r\n", payload.len()))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_close_with_a_close_frame() {
    for bin in both_servers() {
        let (_server, port) = start(&bin, "", "");
        let mut ws = WsClient::connect(port, "").await;
        ws.expect("\r\n").await;
        // An unmasked frame from a client: the connection ends. nats-server queues a 1002
        // close frame first but does not always get it out before the socket closes; natsd
        // always sends it. When a close frame comes, both say the same.
        ws.stream
            .write_all(&[0x82, 0x02, b'h', b'i'])
            .await
            .unwrap();
        let close_frame = ws.expect_closed().await;
        let is_natsd = bin == testkit::natsd();
        assert!(close_frame || !is_natsd, "natsd sends a close frame");
        if let Some(close) = ws.close.clone() {
            assert_eq!(&close[..2], &1002u16.to_be_bytes(), "{}", name(&bin));
            assert_eq!(&close[2..], b"mask bit missing", "{}", name(&bin));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_authorization_overrides_only_websocket_clients() {
    for bin in both_servers() {
        let (server, port) = start(&bin, "authorization { token: \"s3cret\" }", "");
        // TCP needs nothing.
        let mut tcp = RawClient::connect_silent(&server.addr()).await;
        let info = tcp.expect_info().await;
        assert!(
            info.get("auth_required").is_none(),
            "{}: {info}",
            name(&bin)
        );
        tcp.handshake("{\"verbose\":false}").await;
        tcp.send("PING\r\n").await;
        tcp.expect("PONG\r\n").await;

        let mut ws = WsClient::connect(port, "").await;
        let info = ws.expect("\r\n").await;
        assert!(
            info.contains("\"auth_required\":true"),
            "{}: {info}",
            name(&bin)
        );
        ws.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n").await;
        ws.expect("-ERR 'Authorization Violation'\r\n").await;
        assert!(ws.expect_closed().await, "{}", name(&bin));
        let close = ws.close.clone().unwrap();
        assert_eq!(&close[..2], &1008u16.to_be_bytes(), "{}", name(&bin));

        let mut ws = WsClient::connect(port, "").await;
        ws.expect("\r\n").await;
        ws.send(b"CONNECT {\"verbose\":false,\"auth_token\":\"s3cret\"}\r\nPING\r\n")
            .await;
        ws.expect("PONG\r\n").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_shows_websocket_clients_and_settings() {
    for bin in both_servers() {
        let (server, port) = start(
            &bin,
            "compression: true\n  same_origin: true\n  handshake_timeout: \"3s\"",
            "",
        );
        let mut ws = WsClient::connect(port, "").await;
        ws.expect("\r\n").await;
        ws.send(b"CONNECT {\"verbose\":false,\"name\":\"browser\"}\r\nPING\r\n")
            .await;
        ws.expect("PONG\r\n").await;
        let varz = testkit::http::get_json(&format!("{}/varz", server.monitor_url())).await;
        let section = &varz["websocket"];
        assert_eq!(section["port"], port, "{}: {section}", name(&bin));
        assert_eq!(section["host"], "127.0.0.1", "{}: {section}", name(&bin));
        assert_eq!(section["no_tls"], true, "{}: {section}", name(&bin));
        assert_eq!(section["compression"], true, "{}: {section}", name(&bin));
        assert_eq!(section["same_origin"], true, "{}: {section}", name(&bin));
        assert_eq!(
            section["handshake_timeout"],
            3_000_000_000u64,
            "{}: {section}",
            name(&bin)
        );
        let connz = testkit::http::get_json(&format!("{}/connz", server.monitor_url())).await;
        let conns = connz["connections"].as_array().unwrap();
        let browser = conns
            .iter()
            .find(|c| c["name"] == "browser")
            .unwrap_or_else(|| panic!("{}: {connz}", name(&bin)));
        assert_eq!(browser["type"], "websocket", "{}: {browser}", name(&bin));
        assert_eq!(browser["kind"], "Client", "{}: {browser}", name(&bin));
        let _ = Duration::ZERO;
    }
}

/// A CA and a server certificate for localhost/127.0.0.1, written into `dir`: (ca, cert, key).
fn write_pki(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    (
        write("ca.pem", ca.pem()),
        write("server.pem", cert.pem()),
        write("server-key.pem", key.serialize_pem()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_tls_block() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = write_pki(dir.path());
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&ca).unwrap();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    for bin in both_servers() {
        let config = format!(
            "websocket {{\n  listen: \"127.0.0.1:-1\"\n  tls {{ cert_file: \"{}\", key_file: \"{}\" }}\n}}\n",
            cert.display(),
            key.display()
        );
        let server = TestServer::start_bin(&bin, ServerSpec::new().config(&config).monitor());
        assert!(
            server
                .log()
                .contains("Listening for websocket clients on wss://"),
            "{}",
            name(&bin)
        );
        let port = ws_port(&server);
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let domain = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(domain, tcp).await.unwrap();
        let mut ws = WsClient::over(Box::new(tls), port, "").await;
        let info = ws.expect("\r\n").await;
        assert!(
            info.contains("\"tls_required\":true"),
            "{}: {info}",
            name(&bin)
        );
        ws.send(b"CONNECT {\"verbose\":false,\"name\":\"secure\"}\r\nPING\r\n")
            .await;
        ws.expect("PONG\r\n").await;
        let connz = testkit::http::get_json(&format!("{}/connz", server.monitor_url())).await;
        let conn = connz["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "secure")
            .cloned()
            .unwrap_or_else(|| panic!("{}: {connz}", name(&bin)));
        assert_eq!(conn["type"], "websocket", "{}: {conn}", name(&bin));
        assert_eq!(conn["tls_version"], "1.3", "{}: {conn}", name(&bin));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_cookies() {
    for bin in both_servers() {
        let (_server, port) = start(
            &bin,
            "user_cookie: \"nu\"\n  pass_cookie: \"np\"",
            "authorization { users: [{user: alice, password: wonder}] }",
        );
        let mut ws = WsClient::connect(port, "Cookie: theme=dark; nu=alice; np=wonder\r\n").await;
        ws.expect("\r\n").await;
        ws.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n").await;
        ws.expect("PONG\r\n").await;

        // CONNECT's own credentials win over the cookies.
        let mut ws = WsClient::connect(port, "Cookie: nu=alice; np=wonder\r\n").await;
        ws.expect("\r\n").await;
        ws.send(b"CONNECT {\"verbose\":false,\"user\":\"alice\",\"pass\":\"wrong\"}\r\nPING\r\n")
            .await;
        ws.expect("-ERR 'Authorization Violation'\r\n").await;

        let mut ws = WsClient::connect(port, "Cookie: nu=alice\r\n").await;
        ws.expect("\r\n").await;
        ws.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n").await;
        ws.expect("-ERR 'Authorization Violation'\r\n").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_says_auth_required_as_nats_server_does() {
    let cases = [
        // (top-level config, websocket block extra, auth_required in the websocket INFO)
        ("", "", false),
        (
            "authorization { users: [{user: a, password: b}] }",
            "no_auth_user: a",
            true,
        ),
        (
            "authorization { users: [{user: a, password: b}] }\nno_auth_user: a",
            "",
            true,
        ),
        ("", "authorization { user: x, password: y }", true),
    ];
    for bin in both_servers() {
        for (top, extra, required) in cases {
            let (_server, port) = start(&bin, extra, top);
            let mut ws = WsClient::connect(port, "").await;
            let info = ws.expect("\r\n").await;
            assert_eq!(
                info.contains("\"auth_required\":true"),
                required,
                "{} with {top:?} / {extra:?}: {info}",
                name(&bin)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_users_sign_the_websocket_info_nonce() {
    use base64::Engine as _;
    let user = nkeys::KeyPair::new_user();
    let top = format!(
        "authorization {{ users: [{{nkey: {}}}] }}",
        user.public_key()
    );
    for bin in both_servers() {
        let (_server, port) = start(&bin, "", &top);
        let mut ws = WsClient::connect(port, "").await;
        let info = ws.expect("\r\n").await;
        let info: serde_json::Value =
            serde_json::from_str(info.trim_start_matches("INFO ").trim()).unwrap();
        let nonce = info["nonce"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no nonce in {info}", name(&bin)));
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(user.sign(nonce.as_bytes()).unwrap());
        let connect = format!(
            "CONNECT {{\"verbose\":false,\"nkey\":\"{}\",\"sig\":\"{sig}\"}}\r\nPING\r\n",
            user.public_key()
        );
        ws.send(connect.as_bytes()).await;
        ws.expect("PONG\r\n").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_mode_takes_the_user_jwt_from_the_cookie() {
    use base64::Engine as _;
    let op = testkit::jwt::Operator::new();
    let top = op.config(serde_json::json!({}));
    let (jwt, user) = op.user(&op.a, serde_json::json!({}), serde_json::json!({}));
    let login = |info: &str| {
        let info: serde_json::Value =
            serde_json::from_str(info.trim_start_matches("INFO ").trim()).unwrap();
        let nonce = info["nonce"].as_str().unwrap_or_default().to_string();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(user.sign(nonce.as_bytes()).unwrap());
        format!("CONNECT {{\"verbose\":false,\"sig\":\"{sig}\"}}\r\nPING\r\n")
    };
    for bin in both_servers() {
        let (_server, port) = start(&bin, "jwt_cookie: \"nats_jwt\"", &top);
        let mut ws =
            WsClient::connect(port, &format!("Cookie: theme=dark; nats_jwt={jwt}\r\n")).await;
        let info = ws.expect("\r\n").await;
        ws.send(login(&info).as_bytes()).await;
        ws.expect("PONG\r\n").await;

        // Without the cookie the same CONNECT names no user.
        let mut ws = WsClient::connect(port, "").await;
        let info = ws.expect("\r\n").await;
        ws.send(login(&info).as_bytes()).await;
        ws.expect("-ERR 'Authorization Violation'\r\n").await;
    }
}

/// A user JWT's `allowed_connection_types` admits it over the listed kinds of connection
/// only (`STANDARD`: the client port, `WEBSOCKET`: the WebSocket listener).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_jwts_log_in_over_their_allowed_connection_types_only() {
    use base64::Engine as _;
    let op = testkit::jwt::Operator::new();
    let top = op.config(serde_json::json!({}));
    let user_of = |types: &[&str]| {
        op.user(
            &op.a,
            serde_json::json!({ "allowed_connection_types": types }),
            serde_json::json!({}),
        )
    };
    let connect = |info: &str, jwt: &str, user: &nkeys::KeyPair| {
        let info: serde_json::Value =
            serde_json::from_str(info.trim_start_matches("INFO ").trim()).unwrap();
        let nonce = info["nonce"].as_str().unwrap_or_default().to_string();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(user.sign(nonce.as_bytes()).unwrap());
        format!("CONNECT {{\"verbose\":false,\"jwt\":\"{jwt}\",\"sig\":\"{sig}\"}}\r\nPING\r\n")
    };
    let cases = [
        (user_of(&["WEBSOCKET"]), true, false),
        (user_of(&["standard"]), false, true),
        (user_of(&["STANDARD", "WEBSOCKET"]), true, true),
        (user_of(&["MQTT"]), false, false),
        (user_of(&[]), true, true),
    ];
    for bin in both_servers() {
        let (server, port) = start(&bin, "", &top);
        for ((jwt, user), over_ws, over_tcp) in &cases {
            let mut ws = WsClient::connect(port, "").await;
            let info = ws.expect("\r\n").await;
            ws.send(connect(&info, jwt, user).as_bytes()).await;
            ws.expect(if *over_ws {
                "PONG\r\n"
            } else {
                "-ERR 'Authorization Violation'\r\n"
            })
            .await;

            let mut tcp = RawClient::connect(&server.addr()).await;
            let info = format!("INFO {}", tcp.info);
            tcp.send(connect(&info, jwt, user)).await;
            tcp.expect(if *over_tcp {
                "PONG\r\n"
            } else {
                "-ERR 'Authorization Violation'\r\n"
            })
            .await;
        }
    }
}

/// A publisher over TCP that sends `count` numbered messages of `size` bytes in 256 KiB
/// writes (faster than any subscriber reads), then waits for the PONG that says the server
/// has processed them all; returns whether it got it.
async fn numbered_blast(addr: &str, subject: &str, count: usize, size: usize) -> bool {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
        .await
        .unwrap();
    let mut batch = Vec::with_capacity(300 * 1024);
    for seq in 0..count {
        let mut body = format!("{seq:010}").into_bytes();
        body.resize(size, b'.');
        batch.extend_from_slice(format!("PUB {subject} {size}\r\n").as_bytes());
        batch.extend_from_slice(&body);
        batch.extend_from_slice(b"\r\n");
        if batch.len() >= 256 * 1024 || seq + 1 == count {
            if stream.write_all(&batch).await.is_err() {
                return false;
            }
            batch.clear();
        }
    }
    stream.write_all(b"PING\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !seen.windows(6).any(|w| w == b"PONG\r\n") {
        match tokio::time::timeout(Duration::from_secs(120), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    true
}

/// What a slow WebSocket subscriber saw: the sequence numbers of the messages in the order
/// they came, and whether the server closed it.
struct SlowOutcome {
    seqs: Vec<usize>,
    closed: bool,
}

/// A WebSocket subscriber that reads about `bytes_per_pause` and then pauses `pause`, until
/// it has `count` messages, the server closes it, or nothing comes for 10 s.
async fn slow_websocket_subscriber(
    mut ws: WsClient,
    count: usize,
    bytes_per_pause: usize,
    pause: Duration,
) -> SlowOutcome {
    let mut seqs = Vec::with_capacity(count);
    let mut since_pause = 0;
    let mut closed = false;
    while seqs.len() < count {
        let before = ws.pending.len() + ws.text.len();
        match tokio::time::timeout(Duration::from_secs(10), ws.read_frame()).await {
            Ok(true) => {}
            Ok(false) => {
                closed = true;
                break;
            }
            Err(_) => break,
        }
        since_pause += (ws.pending.len() + ws.text.len()).saturating_sub(before);
        // Take every complete MSG out of the protocol text.
        while let Some(eol) = find(&ws.text, b"\r\n") {
            let line = String::from_utf8_lossy(&ws.text[..eol]).to_string();
            let Some(size) = line
                .strip_prefix("MSG ")
                .and_then(|rest| rest.rsplit(' ').next())
                .and_then(|n| n.parse::<usize>().ok())
            else {
                // PING, +OK and the like.
                ws.text.drain(..eol + 2);
                continue;
            };
            if ws.text.len() < eol + 2 + size + 2 {
                break;
            }
            let body = &ws.text[eol + 2..eol + 2 + size];
            let seq = String::from_utf8_lossy(&body[..10]).parse().unwrap();
            seqs.push(seq);
            ws.text.drain(..eol + 2 + size + 2);
        }
        // A frame may be larger than a step: pause for every step it held.
        while since_pause >= bytes_per_pause {
            since_pause -= bytes_per_pause;
            tokio::time::sleep(pause).await;
        }
    }
    SlowOutcome { seqs, closed }
}

/// A WebSocket subscriber that reads slowly (about 1 MB/s, in 64 KiB steps) but keeps
/// reading gets every message of a fast TCP publisher, in order, and is not cut off: the
/// publisher is held back, as for a slow TCP subscriber. natsd only: nats-server holds a
/// publisher back for at most a moment per read, and cuts this subscriber off as a slow
/// consumer once its pending bytes pass `max_pending` (its outcome is checked below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_websocket_subscriber_gets_every_message_in_order() {
    const COUNT: usize = 8_000;
    const SIZE: usize = 1024;
    for bin in both_servers() {
        let is_natsd = bin == testkit::natsd();
        let (server, port) = start(&bin, "", "max_pending: 2MB");
        let mut ws = WsClient::connect(port, "").await;
        ws.expect("\r\n").await;
        ws.send(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nSUB flood 1\r\nPING\r\n")
            .await;
        ws.expect("PONG\r\n").await;
        let reader = tokio::spawn(slow_websocket_subscriber(
            ws,
            COUNT,
            64 * 1024,
            Duration::from_millis(64),
        ));
        let published = numbered_blast(&server.addr(), "flood", COUNT, SIZE).await;
        let outcome = reader.await.unwrap();
        let varz = server.http_json("/varz").await;
        if is_natsd {
            assert!(published, "the publisher was closed");
            assert_eq!(outcome.seqs.len(), COUNT, "lost messages");
            assert!(
                outcome.seqs.iter().enumerate().all(|(i, &s)| i == s),
                "messages out of order"
            );
            assert!(!outcome.closed, "the slow subscriber was cut off");
            assert_eq!(varz["slow_consumers"], 0);
            assert!(
                varz["stalled_clients"].as_u64().unwrap_or(0) > 0,
                "the publisher was never held back"
            );
        } else {
            // What nats-server does with the same subscriber: what it delivered came in
            // order, and it either delivered everything or cut the subscriber off.
            assert!(
                outcome.seqs.iter().enumerate().all(|(i, &s)| i == s),
                "{}: messages out of order",
                name(&bin)
            );
            eprintln!(
                "{}: delivered {} of {COUNT}, closed: {}, slow_consumers: {}",
                name(&bin),
                outcome.seqs.len(),
                outcome.closed,
                varz["slow_consumers"]
            );
            assert!(
                outcome.seqs.len() == COUNT || varz["slow_consumers"].as_u64() > Some(0),
                "{}",
                name(&bin)
            );
        }
    }
}

/// A user JWT's `src` is checked against the WebSocket client's TCP peer, not against the
/// `X-Forwarded-For` header, which any client can write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_jwt_src_holds_the_tcp_peer_not_x_forwarded_for() {
    use base64::Engine as _;
    let op = testkit::jwt::Operator::new();
    let top = op.config(serde_json::json!({}));
    let user_from = |src: &str| {
        op.user(
            &op.a,
            serde_json::json!({ "src": [src] }),
            serde_json::json!({}),
        )
    };
    let connect = |info: &str, jwt: &str, user: &nkeys::KeyPair| {
        let info: serde_json::Value =
            serde_json::from_str(info.trim_start_matches("INFO ").trim()).unwrap();
        let nonce = info["nonce"].as_str().unwrap_or_default().to_string();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(user.sign(nonce.as_bytes()).unwrap());
        format!("CONNECT {{\"verbose\":false,\"jwt\":\"{jwt}\",\"sig\":\"{sig}\"}}\r\nPING\r\n")
    };
    let forwarded = "X-Forwarded-For: 10.1.2.3\r\n";
    let cases = [
        (user_from("127.0.0.0/8"), "PONG\r\n"),
        (
            user_from("10.0.0.0/8"),
            "-ERR 'Authorization Violation'\r\n",
        ),
    ];
    for bin in both_servers() {
        let (_server, port) = start(&bin, "", &top);
        for ((jwt, user), answer) in &cases {
            let mut ws = WsClient::connect(port, forwarded).await;
            let info = ws.expect("\r\n").await;
            ws.send(connect(&info, jwt, user).as_bytes()).await;
            ws.expect(answer).await;
        }
    }
}
