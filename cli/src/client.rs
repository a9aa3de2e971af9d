//! A tiny blocking NATS client over `TcpStream`, enough for `manage test`, the system
//! account's requests (reload, varz) and `manage migrate`: CONNECT with user and password or
//! as an NKEY user (the server's nonce signed with the seed), SUB,
//! PUB and HPUB (headers passed through byte for byte), request/reply (also many requests in
//! flight at once), PING/PONG, MSG and HMSG, and `-ERR` for permission violations. When the
//! server's INFO asks for TLS, the connection is upgraded (rustls) before CONNECT.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection failed or dropped.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server refused the credentials.
    #[error("authorization violation (wrong user, password or NKEY seed)")]
    Authorization,
    /// The server sent no nonce, so it cannot check an NKEY user's signature.
    #[error("the server sent no nonce to sign: it does not accept NKEY users")]
    NoNonce,
    /// The NKEY seed in the credentials cannot be used.
    #[error("the NKEY seed cannot be used: {0}")]
    Seed(String),
    /// The server refused a PUB or SUB (`-ERR 'Permissions Violation ...'`).
    #[error("{0}")]
    Denied(String),
    /// Any other `-ERR`.
    #[error("server error: {0}")]
    Server(String),
    /// Nothing arrived in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The server spoke something unexpected.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// TLS could not be set up or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
}

/// How a connection logs in.
#[derive(Debug, Clone, Copy)]
pub enum Login<'a> {
    /// `user` and `pass` in CONNECT.
    Password {
        /// The user name.
        user: &'a str,
        /// The plaintext password.
        password: &'a str,
    },
    /// An NKEY user: its public key and the server's nonce signed with the seed; the seed
    /// itself never leaves this process.
    Nkey {
        /// `SU...`
        seed: &'a str,
    },
}

/// How to trust a server that requires TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM file with the CA certificates that signed the server's certificate, trusted in
    /// addition to the system's roots (`NATS_TLS_CA`).
    pub ca_file: Option<PathBuf>,
    /// Name to check the server's certificate against instead of the host connected to
    /// (`NATS_TLS_SERVER_NAME`).
    pub server_name: Option<String>,
}

impl TlsSettings {
    fn client_config(&self) -> Result<rustls::ClientConfig, ClientError> {
        let roots = root_store(self.ca_file.as_deref())
            .map_err(|e| ClientError::Tls(format!("NATS_TLS_CA: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// The system's trust anchors (certificates rustls cannot parse are skipped) plus every
/// certificate in `ca_file`. Without either the store is empty, and the handshake's error says
/// what to set.
fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Ok(certs) = rustls_native_certs::load_native_certs() {
        roots.add_parsable_certificates(certs);
    }
    if let Some(ca) = ca_file {
        let file = std::fs::File::open(ca).map_err(|e| format!("open {}: {e}", ca.display()))?;
        let bad = || format!("failed to parse root ca certificate in {}", ca.display());
        for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
            roots.add(cert.map_err(|_| bad())?).map_err(|_| bad())?;
        }
    }
    Ok(roots)
}

/// The byte stream under the protocol: plain TCP, or TLS over it.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => &tls.sock,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            Transport::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write(buf),
            Transport::Tls(tls) => tls.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.flush(),
            Transport::Tls(tls) => tls.flush(),
        }
    }
}

/// A message received on a subscription.
#[derive(Debug, Clone)]
pub struct Message {
    /// The subject it was published to.
    pub subject: String,
    /// Subscription id it arrived on.
    pub sid: String,
    /// The raw header block (`NATS/1.0 ...\r\n...\r\n\r\n`) of an HMSG.
    pub headers: Option<Vec<u8>>,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Message {
    /// The server's answer that no one subscribes the request's subject (status 503).
    pub fn is_no_responders(&self) -> bool {
        self.headers
            .as_deref()
            .is_some_and(|h| h.starts_with(b"NATS/1.0 503"))
    }
}

/// One request of [`Client::request_many`]: subject, raw header block, payload.
pub type Request<'a> = (&'a str, Option<&'a [u8]>, &'a [u8]);

enum Event {
    Pong,
    Msg(Message),
    Err(String),
}

/// A connected client.
pub struct Client {
    stream: BufReader<Transport>,
    pending: VecDeque<Message>,
    timeout: Duration,
    next_sid: u64,
    /// Whether the connection was upgraded to TLS.
    pub tls: bool,
    /// The server's INFO (`server_id`, `server_name`, ...).
    pub info: serde_json::Value,
}

impl Client {
    /// Connect and authenticate as `manage test`; returns once the server answered the first
    /// PING.
    pub fn connect(
        addr: &str,
        login: Login<'_>,
        timeout: Duration,
        tls: &TlsSettings,
    ) -> Result<Self, ClientError> {
        Self::connect_named(addr, login, timeout, tls, "manage-test")
    }

    /// [`Client::connect`] with the connection name the server shows in `/connz`.
    pub fn connect_named(
        addr: &str,
        login: Login<'_>,
        timeout: Duration,
        tls: &TlsSettings,
        name: &str,
    ) -> Result<Self, ClientError> {
        let socket = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| ClientError::Protocol(format!("cannot resolve {addr}")))?;
        let tcp = TcpStream::connect_timeout(&socket, timeout)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        tcp.set_nodelay(true)?;
        let info = read_info(&tcp, timeout)?;
        let transport = if info["tls_required"] == true {
            if info["tls_verify"] == true {
                return Err(ClientError::Tls(
                    "the server requires client certificates (tls verify), which manage test \
                     cannot present"
                        .into(),
                ));
            }
            let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
            Transport::Tls(Box::new(tls_handshake(tcp, tls, host)?))
        } else {
            Transport::Plain(tcp)
        };
        let mut client = Self {
            tls: matches!(transport, Transport::Tls(_)),
            stream: BufReader::new(transport),
            pending: VecDeque::new(),
            timeout,
            next_sid: 0,
            info,
        };
        let mut connect = serde_json::json!({
            "verbose": false, "pedantic": false, "tls_required": client.tls,
            "name": name, "lang": "manage", "version": env!("CARGO_PKG_VERSION"),
            "protocol": 1, "echo": true, "headers": true, "no_responders": true,
        });
        match login {
            Login::Password { user, password } => {
                connect["user"] = user.into();
                connect["pass"] = password.into();
            }
            Login::Nkey { seed } => {
                // A server that accepts NKEY users sends a nonce to sign; one that sends none
                // would only refuse the login, so say why instead.
                let Some(nonce) = client.info["nonce"].as_str() else {
                    return Err(ClientError::NoNonce);
                };
                let public_key = crate::nkey::public_key_of(seed)
                    .map_err(|e| ClientError::Seed(e.to_string()))?;
                let sig = crate::nkey::sign_nonce(seed, nonce)
                    .map_err(|e| ClientError::Seed(e.to_string()))?;
                connect["nkey"] = public_key.into();
                connect["sig"] = sig.into();
            }
        }
        client.send(format!("CONNECT {connect}\r\n"))?;
        client.ping().map_err(|e| match e {
            ClientError::Server(msg) if msg.contains("Authorization Violation") => {
                ClientError::Authorization
            }
            ClientError::Io(_) | ClientError::Timeout(_) => ClientError::Authorization,
            other => other,
        })?;
        Ok(client)
    }

    fn send(&mut self, text: String) -> Result<(), ClientError> {
        self.write_all(text.as_bytes())
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let out = self.stream.get_mut();
        out.write_all(bytes)?;
        out.flush()?;
        Ok(())
    }

    /// Round trip: every command sent before is processed once this returns.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.send("PING\r\n".into())?;
        let deadline = Instant::now() + self.timeout;
        // Read up to this PING's PONG even after an -ERR: a PONG left unread would be taken
        // as the answer to the next PING, before the server has seen what came with it.
        let mut error = None;
        loop {
            match self.next_event(deadline)? {
                Event::Pong => return error.map_or(Ok(()), Err),
                Event::Msg(msg) => self.pending.push_back(msg),
                Event::Err(text) => {
                    error.get_or_insert(classify(text));
                }
            }
        }
    }

    /// Subscribe, and confirm the server accepted it.
    pub fn subscribe(&mut self, subject: &str, sid: &str) -> Result<(), ClientError> {
        self.send(format!("SUB {subject} {sid}\r\n"))?;
        self.ping()
    }

    /// Publish, and confirm the server accepted it.
    pub fn publish(&mut self, subject: &str, payload: &[u8]) -> Result<(), ClientError> {
        let mut frame = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.write_all(&frame)?;
        self.ping()
    }

    /// Send `payload` to `subject` and wait up to `timeout` for the first reply.
    pub fn request(
        &mut self,
        subject: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        self.next_sid += 1;
        let sid = format!("r{}", self.next_sid);
        let inbox = format!("_INBOX.manage.{}", crate::commands::generate_password());
        self.send(format!("SUB {inbox} {sid}\r\nUNSUB {sid} 1\r\n"))?;
        let mut frame = format!("PUB {subject} {inbox} {}\r\n", payload.len()).into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.write_all(&frame)?;
        self.next_message(&sid, timeout)
    }

    /// Send every request at once (each with its own reply subject under one inbox), then
    /// collect the replies; the answers come back in the order of `requests`. Fails when any
    /// reply is missing after `timeout`.
    pub fn request_many(
        &mut self,
        requests: &[Request<'_>],
        timeout: Duration,
    ) -> Result<Vec<Message>, ClientError> {
        self.next_sid += 1;
        let sid = format!("m{}", self.next_sid);
        let inbox = format!("_INBOX.manage.{}", crate::commands::generate_password());
        let mut frames = format!("SUB {inbox}.* {sid}\r\n").into_bytes();
        for (i, (subject, headers, payload)) in requests.iter().enumerate() {
            push_pub(
                &mut frames,
                subject,
                &format!("{inbox}.{i}"),
                *headers,
                payload,
            );
        }
        self.write_all(&frames)?;
        let mut replies: Vec<Option<Message>> = vec![None; requests.len()];
        let mut missing = requests.len();
        let deadline = Instant::now() + timeout;
        while missing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.next_message(&sid, left).map_err(|e| match e {
                ClientError::Timeout(_) => ClientError::Timeout(timeout),
                other => other,
            })?;
            let index = msg
                .subject
                .rsplit_once('.')
                .and_then(|(_, i)| i.parse::<usize>().ok())
                .filter(|i| *i < replies.len());
            if let Some(slot) = index.and_then(|i| replies.get_mut(i)) {
                if slot.is_none() {
                    missing -= 1;
                }
                *slot = Some(msg);
            }
        }
        self.send(format!("UNSUB {sid}\r\n"))?;
        Ok(replies.into_iter().flatten().collect())
    }

    /// Wait for the next message on `sid`.
    pub fn next_message(&mut self, sid: &str, timeout: Duration) -> Result<Message, ClientError> {
        if let Some(i) = self.pending.iter().position(|m| m.sid == sid) {
            if let Some(msg) = self.pending.remove(i) {
                return Ok(msg);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_event(deadline)? {
                Event::Msg(msg) if msg.sid == sid => return Ok(msg),
                Event::Msg(msg) => self.pending.push_back(msg),
                Event::Pong => {}
                Event::Err(text) => return Err(classify(text)),
            }
        }
    }

    fn read_line(&mut self) -> Result<String, ClientError> {
        let mut line = String::new();
        match self.stream.read_line(&mut line) {
            Ok(0) => Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(ClientError::Timeout(self.timeout))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn next_event(&mut self, deadline: Instant) -> Result<Event, ClientError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(self.timeout));
            }
            self.stream.get_ref().tcp().set_read_timeout(Some(left))?;
            let line = self.read_line()?;
            let (op, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match op.to_ascii_uppercase().as_str() {
                "PONG" => return Ok(Event::Pong),
                "PING" => self.send("PONG\r\n".into())?,
                "+OK" | "INFO" => {}
                "-ERR" => return Ok(Event::Err(rest.trim().trim_matches('\'').to_owned())),
                "MSG" => return self.read_msg(rest).map(Event::Msg),
                "HMSG" => return self.read_hmsg(rest).map(Event::Msg),
                _ => return Err(ClientError::Protocol(format!("unexpected {line:?}"))),
            }
        }
    }

    fn read_msg(&mut self, args: &str) -> Result<Message, ClientError> {
        let parts: Vec<&str> = args.split_whitespace().collect();
        let (subject, sid, len) = match parts.as_slice() {
            [subject, sid, len] | [subject, sid, _, len] => (*subject, *sid, *len),
            _ => return Err(ClientError::Protocol(format!("bad MSG {args:?}"))),
        };
        let len: usize = len
            .parse()
            .map_err(|_| ClientError::Protocol(format!("bad MSG size {len:?}")))?;
        let mut payload = vec![0; len + 2];
        self.stream.read_exact(&mut payload)?;
        payload.truncate(len);
        Ok(Message {
            subject: subject.to_owned(),
            sid: sid.to_owned(),
            headers: None,
            payload,
        })
    }

    fn read_hmsg(&mut self, args: &str) -> Result<Message, ClientError> {
        let parts: Vec<&str> = args.split_whitespace().collect();
        let (subject, sid, header_len, total_len) = match parts.as_slice() {
            [subject, sid, h, t] | [subject, sid, _, h, t] => (*subject, *sid, *h, *t),
            _ => return Err(ClientError::Protocol(format!("bad HMSG {args:?}"))),
        };
        let number = |text: &str| {
            text.parse::<usize>()
                .map_err(|_| ClientError::Protocol(format!("bad HMSG size {text:?}")))
        };
        let (header_len, total_len) = (number(header_len)?, number(total_len)?);
        if header_len > total_len {
            return Err(ClientError::Protocol(format!("bad HMSG {args:?}")));
        }
        let mut body = vec![0; total_len + 2];
        self.stream.read_exact(&mut body)?;
        body.truncate(total_len);
        let payload = body.split_off(header_len);
        Ok(Message {
            subject: subject.to_owned(),
            sid: sid.to_owned(),
            headers: Some(body),
            payload,
        })
    }
}

/// A PUB, or an HPUB when there are headers, with a reply subject.
fn push_pub(out: &mut Vec<u8>, subject: &str, reply: &str, headers: Option<&[u8]>, payload: &[u8]) {
    match headers {
        Some(headers) => out.extend_from_slice(
            format!(
                "HPUB {subject} {reply} {} {}\r\n",
                headers.len(),
                headers.len() + payload.len()
            )
            .as_bytes(),
        ),
        None => {
            out.extend_from_slice(format!("PUB {subject} {reply} {}\r\n", payload.len()).as_bytes())
        }
    }
    if let Some(headers) = headers {
        out.extend_from_slice(headers);
    }
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// The server's INFO, read straight off the socket: nothing else arrives before the client
/// speaks (or starts TLS), so no bytes are left behind in a buffer.
fn read_info(tcp: &TcpStream, timeout: Duration) -> Result<serde_json::Value, ClientError> {
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into())),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(ClientError::Timeout(timeout))
        }
        Err(e) => return Err(e.into()),
    }
    if !reader.buffer().is_empty() {
        return Err(ClientError::Protocol("unexpected data after INFO".into()));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(json) = line.strip_prefix("INFO ") else {
        return Err(ClientError::Protocol(format!(
            "expected INFO, got {line:?}"
        )));
    };
    serde_json::from_str(json).map_err(|e| ClientError::Protocol(format!("bad INFO: {e}")))
}

/// TLS handshake right after INFO, checking the certificate against `host` (or the
/// configured server name).
fn tls_handshake(
    tcp: TcpStream,
    tls: &TlsSettings,
    host: &str,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, ClientError> {
    let name = tls.server_name.as_deref().unwrap_or(host);
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|_| ClientError::Tls(format!("{name:?} is not a valid server name")))?;
    let conn = rustls::ClientConnection::new(Arc::new(tls.client_config()?), server_name)
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| {
            let text = e.to_string();
            let hint = if text.contains("UnknownIssuer") {
                ": the server's certificate is not signed by a CA this machine trusts; set \
                 NATS_TLS_CA in .env to the CA file (the tls ca_file)"
            } else if text.contains("NotValidForName") {
                ": set NATS_TLS_SERVER_NAME in .env to a name the certificate holds"
            } else {
                ""
            };
            ClientError::Tls(format!("handshake with {name} failed: {text}{hint}"))
        })?;
    }
    Ok(stream)
}

fn classify(text: String) -> ClientError {
    if text.starts_with("Permissions Violation") {
        ClientError::Denied(text)
    } else if text.contains("Authorization Violation") {
        ClientError::Authorization
    } else {
        ClientError::Server(text)
    }
}
