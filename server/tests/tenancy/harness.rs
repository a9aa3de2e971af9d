//! Test harness: run natsd (or the real nats-server, for differential checks) as a process on
//! a random port, read its log, reload it, and talk to it over raw TCP.

use std::io::{BufRead, BufReader as StdBufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// How long any single wait in these tests may take before it is a failure.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Impl {
    Natsd,
    NatsServer,
}

/// natsd always; the real nats-server too when it is on PATH (said loudly when it is not).
pub(crate) fn impls() -> Vec<Impl> {
    let mut list = vec![Impl::Natsd];
    if nats_server_available() {
        list.push(Impl::NatsServer);
    } else {
        eprintln!("!!! nats-server not on PATH: differential half of this test SKIPPED");
    }
    list
}

pub(crate) fn nats_server_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn binary(kind: Impl) -> PathBuf {
    match kind {
        Impl::Natsd => std::env::var_os("NATSD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_natsd"))),
        Impl::NatsServer => PathBuf::from("nats-server"),
    }
}

/// `-t` on a config file: (accepted, stderr).
pub(crate) fn check_config(kind: Impl, path: &Path) -> (bool, String) {
    let out = Command::new(binary(kind))
        .arg("-c")
        .arg(path)
        .arg("-t")
        .output()
        .expect("run -t");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running server process, killed on drop.
pub(crate) struct Proc {
    pub(crate) kind: Impl,
    child: Child,
    pub(crate) port: u16,
    pub(crate) http_port: u16,
    pub(crate) conf: PathBuf,
    _dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Write `conf` to `<tempdir>/nats.conf`, check it with `-t` (both servers must accept every
    /// config these tests use), start the server and wait for `Server is ready`.
    pub(crate) async fn start(kind: Impl, conf: &str) -> Proc {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, conf).expect("write conf");
        Self::start_in(kind, dir, path).await
    }

    pub(crate) async fn start_in(kind: Impl, dir: tempfile::TempDir, path: PathBuf) -> Proc {
        for checker in impls() {
            let (ok, err) = check_config(checker, &path);
            assert!(ok, "{checker:?} -t refused the test config: {err}");
        }
        let mut child = Command::new(binary(kind))
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in StdBufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("TENANCY_SHOW_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut proc = Proc {
            kind,
            child,
            port: 0,
            http_port: 0,
            conf: path,
            _dir: dir,
            log,
        };
        proc.wait_log(0, "Server is ready").await;
        proc.port = proc.port_after("Listening for client connections on ");
        proc.http_port = proc.port_after("Starting http monitor on ");
        proc
    }

    fn port_after(&self, marker: &str) -> u16 {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| {
                let rest = &l[l.find(marker)? + marker.len()..];
                let addr = rest.split_whitespace().next()?;
                addr.rsplit(':').next()?.parse().ok()
            })
            .unwrap_or(0)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    pub(crate) fn log_since(&self, from: usize) -> Vec<String> {
        self.log.lock().unwrap()[from..].to_vec()
    }

    /// Wait for a log line (at index `from` or later) containing `needle`; returns it.
    pub(crate) async fn wait_log(&mut self, from: usize, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self
                .log
                .lock()
                .unwrap()
                .iter()
                .skip(from)
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{:?} exited ({status}) before logging {needle:?}:\n{}",
                    self.kind,
                    self.log.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "{:?}: no log line {needle:?} within {WAIT:?}:\n{}",
                self.kind,
                self.log_since(from).join("\n")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Replace the config file and send SIGHUP; returns the outcome line
    /// (`Reloaded server configuration ...` or `Failed to reload server configuration: ...`).
    pub(crate) async fn reload_with(&mut self, conf: &str) -> String {
        std::fs::write(&self.conf, conf).expect("write conf");
        // natsd -t and nats-server -t must agree on every file these tests reload, good or bad.
        let verdicts: Vec<(Impl, bool, String)> = impls()
            .into_iter()
            .map(|k| {
                let (ok, err) = check_config(k, &self.conf);
                (k, ok, err)
            })
            .collect();
        assert!(
            verdicts.windows(2).all(|w| w[0].1 == w[1].1),
            "-t verdicts differ: {verdicts:?}"
        );
        let from = self.log_len();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("SIGHUP");
        self.wait_reload_outcome(from).await
    }

    pub(crate) async fn wait_reload_outcome(&mut self, from: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.log_since(from).into_iter().find(|l| {
                l.contains("Reloaded server configuration")
                    || l.contains("Failed to reload server configuration")
            }) {
                return line;
            }
            assert!(Instant::now() < deadline, "no reload outcome logged");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// GET a monitoring endpoint and parse the JSON.
    pub(crate) async fn http_json(&self, path: &str) -> serde_json::Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.http_port))
            .await
            .expect("connect monitor");
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut body = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut body))
            .await
            .expect("monitor timeout")
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        let start = text.find("\r\n\r\n").expect("http header end") + 4;
        let json = &text[start..];
        // Tolerate chunked encoding: the JSON object is between the first '{' and the last '}'.
        let (a, b) = (json.find('{').unwrap(), json.rfind('}').unwrap());
        serde_json::from_str(&json[a..=b]).expect("monitor json")
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw protocol connection, for checking exact server bytes.
pub(crate) struct Raw {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    pub(crate) info: serde_json::Value,
    /// The second INFO (`connect_info`), once seen.
    pub(crate) connect_info: Option<serde_json::Value>,
}

/// What a login attempt produced.
pub(crate) enum Login {
    Ok(Raw),
    /// Everything the server sent before closing (INFO lines left out).
    Refused(Vec<String>),
}

impl Raw {
    pub(crate) async fn open(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (r, w) = stream.into_split();
        let mut raw = Raw {
            rd: BufReader::new(r),
            wr: w,
            info: serde_json::Value::Null,
            connect_info: None,
        };
        let line = raw.line().await.expect("INFO");
        raw.info = serde_json::from_str(line.trim_start_matches("INFO ").trim()).unwrap();
        raw
    }

    pub(crate) async fn login(port: u16, user: &str, pass: &str) -> Login {
        let mut raw = Raw::open(port).await;
        let connect = serde_json::json!({
            "verbose": false, "pedantic": false, "protocol": 1, "headers": true,
            "user": user, "pass": pass,
        });
        raw.send(&format!("CONNECT {connect}\r\nPING\r\n")).await;
        let mut seen = Vec::new();
        loop {
            match raw.line().await {
                Some(l) if l == "PONG" => break,
                Some(l) => seen.push(l),
                None => return Login::Refused(seen),
            }
        }
        // The second INFO follows the first PONG.
        let line = raw.line().await.expect("second INFO");
        raw.connect_info =
            Some(serde_json::from_str(line.trim_start_matches("INFO ").trim()).unwrap());
        assert!(seen.is_empty(), "unexpected lines during login: {seen:?}");
        Login::Ok(raw)
    }

    /// Log in, panicking if refused.
    pub(crate) async fn user(port: u16, user: &str, pass: &str) -> Raw {
        match Raw::login(port, user, pass).await {
            Login::Ok(raw) => raw,
            Login::Refused(lines) => panic!("login {user} refused: {lines:?}"),
        }
    }

    pub(crate) async fn send(&mut self, s: &str) {
        self.wr.write_all(s.as_bytes()).await.expect("send");
    }

    /// One line without CRLF; `None` at EOF. Answers server PINGs on the way.
    async fn line(&mut self) -> Option<String> {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, self.rd.read_line(&mut line))
                .await
                .expect("timed out waiting for the server")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            if line == "PING" {
                let _ = self.wr.write_all(b"PONG\r\n").await;
                continue;
            }
            return Some(line);
        }
    }

    /// Round trip: everything the server sent before the PONG to our PING. A MSG comes out as
    /// one entry `MSG <subject> <sid> [reply] <payload>`.
    pub(crate) async fn sync(&mut self) -> Vec<String> {
        self.send("PING\r\n").await;
        let mut out = Vec::new();
        loop {
            let line = self.line().await.expect("connection closed during sync");
            if line == "PONG" {
                return out;
            }
            if line.starts_with("INFO ") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("MSG ") {
                let mut parts: Vec<&str> = rest.split_whitespace().collect();
                let size: usize = parts.pop().unwrap().parse().unwrap();
                let mut payload = vec![0u8; size + 2];
                self.rd.read_exact(&mut payload).await.unwrap();
                payload.truncate(size);
                parts.push(std::str::from_utf8(&payload).unwrap());
                out.push(format!("MSG {}", parts.join(" ")));
                continue;
            }
            out.push(line);
        }
    }

    /// Round trips until `n` entries arrived: for traffic from a client whose `flush` only
    /// empties its socket buffer (async-nats), which is no barrier at the server.
    pub(crate) async fn sync_until(&mut self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::new();
        while out.len() < n {
            assert!(Instant::now() < deadline, "only {out:?} arrived");
            out.extend(self.sync().await);
        }
        out
    }

    /// Everything the server sends until it closes the connection.
    pub(crate) async fn until_closed(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(line) = self.line().await {
            if !line.starts_with("INFO ") {
                out.push(line);
            }
        }
        out
    }

    /// Publish (and nothing else): `PUB subject [reply] n\r\npayload\r\n`.
    pub(crate) async fn publish(&mut self, subject: &str, reply: Option<&str>, payload: &str) {
        let cmd = match reply {
            Some(r) => format!("PUB {subject} {r} {}\r\n{payload}\r\n", payload.len()),
            None => format!("PUB {subject} {}\r\n{payload}\r\n", payload.len()),
        };
        self.send(&cmd).await;
    }
}

/// Permission-violation texts, as the server sends them.
pub(crate) fn pub_violation(subject: &str) -> String {
    format!("-ERR 'Permissions Violation for Publish to \"{subject}\"'")
}

pub(crate) fn sub_violation(subject: &str) -> String {
    format!("-ERR 'Permissions Violation for Subscription to \"{subject}\"'")
}

pub(crate) const AUTH_VIOLATION: &str = "-ERR 'Authorization Violation'";
