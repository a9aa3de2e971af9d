//! Test harness: run natsd (or the real nats-server, for differential checks) through the
//! workspace's one harness (`testkit`) on a random port, read its log, reload it, and talk to
//! it over raw TCP (testkit's raw client).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{Frame, RawClient, ServerSpec, Signal, TestServer};

/// How long any single wait in these tests may take before it is a failure.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Impl {
    Natsd,
    NatsServer,
}

/// natsd, then the real nats-server. A missing nats-server fails the test (a differential
/// check without it proves nothing); only `NATSD_SKIP_REFERENCE=1` leaves it out.
pub(crate) fn impls() -> Vec<Impl> {
    let mut list = vec![Impl::Natsd];
    if nats_server_available() {
        list.push(Impl::NatsServer);
    }
    list
}

/// Whether the reference runs: a failure when it is missing, `false` only under
/// `NATSD_SKIP_REFERENCE=1`.
pub(crate) fn nats_server_available() -> bool {
    testkit::reference_server().is_some()
}

pub(crate) fn binary(kind: Impl) -> PathBuf {
    match kind {
        Impl::Natsd => testkit::natsd(),
        Impl::NatsServer => {
            testkit::reference_server().expect("the reference nats-server for this comparison")
        }
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

/// A running server process, killed on drop (its log printed if the test failed).
pub(crate) struct Proc {
    pub(crate) kind: Impl,
    pub(crate) port: u16,
    pub(crate) http_port: u16,
    pub(crate) conf: PathBuf,
    server: TestServer,
    _dir: tempfile::TempDir,
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
        // The config names host and ports (`port: -1`); they are read back from the log.
        let spec = ServerSpec::new().config_file(&path).ports_from_config();
        let server = TestServer::start_bin(binary(kind), spec);
        Proc {
            kind,
            port: server.port,
            http_port: server.monitor_port.unwrap_or(0),
            conf: path,
            server,
            _dir: dir,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.server.pid()
    }

    pub(crate) fn log_len(&self) -> usize {
        self.server.log_len()
    }

    /// The first line logged from index `from` on that contains `needle` (`None` if none
    /// comes within [`WAIT`]).
    pub(crate) async fn log_line_since(&self, from: usize, needle: &str) -> Option<String> {
        self.server
            .wait_for_log_since_async(from, &[needle], WAIT)
            .await
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
        self.server.signal(Signal::SIGHUP);
        self.wait_reload_outcome(from).await
    }

    pub(crate) async fn wait_reload_outcome(&mut self, from: usize) -> String {
        let outcomes = [
            "Reloaded server configuration",
            "Failed to reload server configuration",
        ];
        self.server
            .wait_for_log_since_async(from, &outcomes, WAIT)
            .await
            .expect("no reload outcome logged")
    }

    /// GET a monitoring endpoint (it must answer 200) and parse the JSON.
    pub(crate) async fn http_json(&self, path: &str) -> serde_json::Value {
        testkit::http::get_json(&format!("http://127.0.0.1:{}{path}", self.http_port)).await
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// A raw protocol connection (testkit's [`RawClient`]) that renders what the server sends as
/// text lines, for comparing exact server output.
pub(crate) struct Raw {
    client: RawClient,
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
        let client = RawClient::connect(&format!("127.0.0.1:{port}")).await;
        let info = client.info.clone();
        Raw {
            client,
            info,
            connect_info: None,
        }
    }

    pub(crate) async fn login(port: u16, user: &str, pass: &str) -> Login {
        Raw::login_with(port, |_| serde_json::json!({ "user": user, "pass": pass })).await
    }

    /// Log in with the credentials `creds` makes from the server's INFO (an NKEY user signs
    /// its nonce), merged into the CONNECT.
    pub(crate) async fn login_with(
        port: u16,
        creds: impl FnOnce(&serde_json::Value) -> serde_json::Value,
    ) -> Login {
        let mut raw = Raw::open(port).await;
        let mut connect = serde_json::json!({
            "verbose": false, "pedantic": false, "protocol": 1, "headers": true,
        });
        if let (Some(fields), serde_json::Value::Object(extra)) =
            (connect.as_object_mut(), creds(&raw.info))
        {
            fields.extend(extra);
        }
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
        self.client.send(s).await;
    }

    /// The next frame as one line: `MSG <subject> <sid> [reply] <payload>` for a message, the
    /// protocol line otherwise; `None` once the server closed. Answers server PINGs on the way.
    async fn line(&mut self) -> Option<String> {
        loop {
            let line = match self.client.next_frame_within(WAIT).await? {
                Frame::Ping => {
                    self.client.try_send("PONG\r\n").await;
                    continue;
                }
                Frame::Pong => "PONG".to_string(),
                Frame::Ok => "+OK".to_string(),
                Frame::Info(json) => format!("INFO {json}"),
                Frame::Err(text) => format!("-ERR '{text}'"),
                Frame::Msg {
                    subject,
                    sid,
                    reply,
                    payload,
                } => message_line("MSG", &subject, &sid, reply.as_deref(), &payload),
                Frame::HMsg {
                    subject,
                    sid,
                    reply,
                    headers,
                    payload,
                } => {
                    let body = [headers, payload].concat();
                    message_line("HMSG", &subject, &sid, reply.as_deref(), &body)
                }
                Frame::Other(line) => line,
            };
            return Some(line);
        }
    }

    /// Round trip: everything the server sent before the PONG to our PING (INFO left out).
    pub(crate) async fn sync(&mut self) -> Vec<String> {
        self.send("PING\r\n").await;
        let mut out = Vec::new();
        loop {
            let line = self.line().await.expect("connection closed during sync");
            if line == "PONG" {
                return out;
            }
            if !line.starts_with("INFO ") {
                out.push(line);
            }
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

fn message_line(op: &str, subject: &str, sid: &str, reply: Option<&str>, body: &[u8]) -> String {
    let body = String::from_utf8_lossy(body);
    match reply {
        Some(reply) => format!("{op} {subject} {sid} {reply} {body}"),
        None => format!("{op} {subject} {sid} {body}"),
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

/// A message `client` publishes comes back to its own subscription.
pub(crate) async fn assert_round_trip(client: &async_nats::Client, context: &str) {
    use futures::StreamExt as _;
    let mut sub = client.subscribe("t").await.unwrap();
    client.publish("t", "hi".into()).await.unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap_or_else(|_| panic!("{context}: no message back"))
        .unwrap();
    assert_eq!(&msg.payload[..], b"hi", "{context}");
}
