//! A tiny blocking NATS client over `TcpStream`, enough for `manage test`: CONNECT with
//! user and password, SUB, PUB, PING/PONG, MSG, and `-ERR` for permission violations.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection failed or dropped.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server refused the credentials.
    #[error("authorization violation (wrong user or password)")]
    Authorization,
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
}

/// A message received on a subscription.
#[derive(Debug, Clone)]
pub struct Message {
    /// The subject it was published to.
    pub subject: String,
    /// Subscription id it arrived on.
    pub sid: String,
    /// Payload.
    pub payload: Vec<u8>,
}

enum Event {
    Pong,
    Msg(Message),
    Err(String),
}

/// A connected client.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    pending: VecDeque<Message>,
    timeout: Duration,
}

impl Client {
    /// Connect and authenticate; returns once the server answered the first PING.
    pub fn connect(
        addr: &str,
        user: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let socket = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| ClientError::Protocol(format!("cannot resolve {addr}")))?;
        let stream = TcpStream::connect_timeout(&socket, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut client = Self {
            reader: BufReader::new(stream),
            writer,
            pending: VecDeque::new(),
            timeout,
        };
        let info = client.read_line()?;
        if !info.starts_with("INFO ") {
            return Err(ClientError::Protocol(format!(
                "expected INFO, got {info:?}"
            )));
        }
        let connect = serde_json::json!({
            "verbose": false, "pedantic": false, "tls_required": false,
            "name": "manage-test", "lang": "manage", "version": env!("CARGO_PKG_VERSION"),
            "protocol": 1, "echo": true, "headers": false,
            "user": user, "pass": password,
        });
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
        self.writer.write_all(text.as_bytes())?;
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
        self.writer.write_all(&frame)?;
        self.ping()
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
        match self.reader.read_line(&mut line) {
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
            self.reader.get_ref().set_read_timeout(Some(left))?;
            let line = self.read_line()?;
            let (op, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match op.to_ascii_uppercase().as_str() {
                "PONG" => return Ok(Event::Pong),
                "PING" => self.send("PONG\r\n".into())?,
                "+OK" | "INFO" => {}
                "-ERR" => return Ok(Event::Err(rest.trim().trim_matches('\'').to_owned())),
                "MSG" => return self.read_msg(rest).map(Event::Msg),
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
        self.reader.read_exact(&mut payload)?;
        payload.truncate(len);
        Ok(Message {
            subject: subject.to_owned(),
            sid: sid.to_owned(),
            payload,
        })
    }
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
