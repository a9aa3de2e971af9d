//! Shared harness for the integration tests: start a server binary as a child process,
//! talk to it over raw sockets or through async-nats.
//!
//! The binary under test is `natsd` (the one cargo built) unless `NATSD_TEST_BIN` names
//! another one (for example `NATSD_TEST_BIN=nats-server`), so the same tests prove the
//! reference server's behaviour and then hold natsd to it.

#![allow(dead_code)] // each test module uses a different subset of the harness

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::bytes::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a server gets to print `Server is ready`. Debug builds on a loaded 2-core
/// machine can be slow, so this is generous; a healthy start takes milliseconds.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Default time a raw client waits for an expected frame.
pub const EXPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to start: optional config file content and extra command-line arguments.
#[derive(Clone, Debug, Default)]
pub struct ServerSpec {
    /// Content of a config file, written to the server's temp dir and passed as `-c`.
    pub config: Option<String>,
    /// Extra arguments appended after the harness's own (`-a`, `-p`, `-m`, `-P`).
    pub args: Vec<String>,
    /// Start the HTTP monitor (`-m PORT`).
    pub monitor: bool,
    /// Write a pid file (`-P FILE`) into the temp dir.
    pub pid_file: bool,
}

impl ServerSpec {
    /// A plain server: no config, no monitor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use `content` as the config file.
    pub fn config(mut self, content: &str) -> Self {
        self.config = Some(content.to_string());
        self
    }

    /// Append one command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Enable the monitoring port.
    pub fn monitor(mut self) -> Self {
        self.monitor = true;
        self
    }

    /// Ask for a pid file.
    pub fn pid_file(mut self) -> Self {
        self.pid_file = true;
        self
    }
}

/// A running server process; killed when dropped.
pub struct TestServer {
    child: Option<Child>,
    /// Client port on 127.0.0.1.
    pub port: u16,
    /// Monitoring port, when the spec asked for one.
    pub monitor_port: Option<u16>,
    /// Temp dir holding the config and pid file (removed on drop).
    pub dir: tempfile::TempDir,
    /// Path of the pid file (only written if the spec asked for one).
    pub pid_path: PathBuf,
    /// Path of the config file (only written if the spec had one).
    pub config_path: PathBuf,
    /// Every log line the server has printed so far (stderr and stdout).
    log: Arc<Mutex<Vec<String>>>,
    /// Which binary this is, for messages.
    pub bin: String,
}

/// The binary under test: `NATSD_TEST_BIN`, else the natsd that cargo built.
pub fn server_under_test_bin() -> String {
    match std::env::var("NATSD_TEST_BIN") {
        Ok(bin) if !bin.is_empty() => bin,
        _ => env!("CARGO_BIN_EXE_natsd").to_string(),
    }
}

/// The reference nats-server: `NATS_SERVER_BIN`, else `nats-server` found on PATH.
pub fn reference_bin() -> Option<String> {
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        if !bin.is_empty() && Path::new(&bin).exists() {
            return Some(bin);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

/// A port that was free a moment ago. Racy by nature, so `start` retries on a bind failure.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Parses `...on 127.0.0.1:PORT` style log lines.
fn port_after(line: &str, marker: &str) -> Option<u16> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let port = rest.trim().rsplit(':').next()?;
    port.trim_end_matches('/').parse().ok()
}

impl TestServer {
    /// Starts the server under test with `spec`, waiting for `Server is ready`.
    pub fn start(spec: ServerSpec) -> TestServer {
        Self::start_bin(&server_under_test_bin(), spec)
    }

    /// Starts the server under test with default settings.
    pub fn plain() -> TestServer {
        Self::start(ServerSpec::new())
    }

    /// Starts the real nats-server for differential tests, or `None` (announced loudly on
    /// stderr) when it is not installed.
    pub fn reference(spec: ServerSpec) -> Option<TestServer> {
        match reference_bin() {
            Some(bin) => Some(Self::start_bin(&bin, spec)),
            None => {
                eprintln!(
                    "\n!!!!!!!! SKIPPED: reference nats-server not found (set NATS_SERVER_BIN or put \
                     nats-server on PATH; scripts/test.sh installs it into .venv) !!!!!!!!\n"
                );
                None
            }
        }
    }

    /// Starts `bin` with `spec`. Retries a few times in case the chosen port was taken.
    pub fn start_bin(bin: &str, spec: ServerSpec) -> TestServer {
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(bin, &spec) {
                Ok(server) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("could not start {bin}: {last_error}");
    }

    fn try_start(bin: &str, spec: &ServerSpec) -> Result<TestServer, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let pid_path = dir.path().join("server.pid");
        let config_path = dir.path().join("server.conf");
        let mut cmd = Command::new(bin);
        cmd.arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string());
        if let Some(config) = &spec.config {
            std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
            cmd.arg("-c").arg(&config_path);
        }
        let monitor_port = spec.monitor.then(free_port);
        if let Some(monitor_port) = monitor_port {
            cmd.arg("-m").arg(monitor_port.to_string());
        }
        if spec.pid_file {
            cmd.arg("-P").arg(&pid_path);
        }
        cmd.args(&spec.args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {bin}: {e} (is it built / on PATH?)"))?;

        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        // Both pipes are drained for the whole life of the process so a chatty server
        // never blocks on a full pipe.
        spawn_log_reader(child.stderr.take().unwrap(), log.clone(), tx.clone());
        spawn_log_reader(child.stdout.take().unwrap(), log.clone(), tx);

        let mut server = TestServer {
            child: Some(child),
            port,
            monitor_port,
            dir,
            pid_path,
            config_path,
            log,
            bin: bin.to_string(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(p) = port_after(&line, "Listening for client connections on ") {
                        server.port = p;
                    }
                    if server.monitor_port.is_some() {
                        if let Some(p) = port_after(&line, "Starting http monitor on ") {
                            server.monitor_port = Some(p);
                        }
                    }
                    if line.contains("Server is ready") {
                        return Ok(server);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "server exited before ready; log:\n{}",
                        server.log()
                    ));
                }
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().ok().flatten() {
                // Give the readers a moment to collect the last words for the message.
                std::thread::sleep(Duration::from_millis(50));
                return Err(format!(
                    "server exited with {status} before ready; log:\n{}",
                    server.log()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no 'Server is ready' within {READY_TIMEOUT:?}; log:\n{}",
                    server.log()
                ));
            }
        }
    }

    /// `127.0.0.1:PORT` of the client listener.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Base URL of the monitor (`http://127.0.0.1:PORT`); panics if it was not enabled.
    pub fn monitor_url(&self) -> String {
        let port = self
            .monitor_port
            .expect("monitor not enabled in the ServerSpec");
        format!("http://127.0.0.1:{port}")
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...) with the system `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// Connects an async-nats client.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.unwrap()
    }

    /// Connects a raw client and reads its INFO.
    pub async fn raw(&self) -> RawClient {
        RawClient::connect(&self.addr()).await
    }

    /// Raw client after `CONNECT {verbose:false,pedantic:false,headers:true,no_responders:true}`.
    pub async fn raw_ready(&self) -> RawClient {
        let mut client = self.raw().await;
        client
            .handshake(r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true}"#)
            .await;
        client
    }

    /// Asserts the server still serves new connections (a fresh PING gets PONG).
    pub async fn assert_alive(&self) {
        let mut client = self.raw_ready().await;
        client.ping_pong().await;
    }

    /// GET a monitor path; returns status code and body.
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.monitor_url());
        tokio::task::spawn_blocking(move || {
            let resp = reqwest::blocking::get(&url).unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().unwrap())
        })
        .await
        .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_log_reader<R: Read + Send + 'static>(
    pipe: R,
    log: Arc<Mutex<Vec<String>>>,
    tx: mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("NATSD_TEST_LOG").is_some() {
                eprintln!("[server] {line}");
            }
            log.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
}

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
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut client = RawClient {
            stream,
            buf: Vec::new(),
            info: serde_json::Value::Null,
            closed: false,
        };
        client.info = client.expect_info().await;
        client
    }

    /// Connects without reading anything.
    pub async fn connect_silent(addr: &str) -> RawClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
            info: serde_json::Value::Null,
            closed: false,
        }
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

/// Builds a payload of `len` bytes.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
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

    /// Reads the next frame; `None` when the connection closed first. Panics on timeout.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + EXPECT_TIMEOUT;
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
        stream.set_nodelay(true).unwrap();
        let mut client = RawClient {
            stream,
            buf: Vec::new(),
            info: serde_json::Value::Null,
            closed: false,
        };
        client.info = client.expect_info().await;
        client
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

/// A server round trip on `client`'s connection: async-nats `flush()` only empties the
/// socket buffer, so a SUB may still be unprocessed when another connection publishes.
/// A message to itself comes back only after the server has handled everything before it.
pub async fn barrier(client: &async_nats::Client) {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(EXPECT_TIMEOUT, sub.next())
        .await
        .expect("barrier round trip timed out")
        .expect("barrier subscription closed");
}
