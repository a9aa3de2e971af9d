//! The JetStream API of one account, over the blocking client: what `manage migrate` needs to
//! read streams and consumers on one server and write them on another. Requests and answers
//! are JSON kept as `serde_json::Value`, so every field a server reports (natsd's or
//! nats-server's) passes through unchanged.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::client::{Client, ClientError, Request, TlsSettings};
use crate::render::env_file::Credentials;

/// Timeout of one API request: a stream create in a cluster waits for its replicas to form.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connect may take (bcrypt on the server's side included).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `err_code` of "stream not found".
pub const STREAM_NOT_FOUND: u64 = 10059;
/// `err_code` of "consumer not found".
pub const CONSUMER_NOT_FOUND: u64 = 10014;
/// `err_code` of "no message found".
pub const NO_MESSAGE_FOUND: u64 = 10037;

/// An error the JetStream API answered with.
#[derive(Debug, thiserror::Error)]
#[error("{description} (err_code {err_code})")]
pub struct ApiError {
    /// nats-server's stable error code.
    pub err_code: u64,
    /// Its text.
    pub description: String,
}

/// A message as a stream stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its sequence in the stream.
    pub seq: u64,
    /// Subject.
    pub subject: String,
    /// The raw header block, as stored.
    pub headers: Option<Vec<u8>>,
    /// Payload.
    pub payload: Vec<u8>,
}

/// A connection to one account's JetStream.
pub struct JetStream {
    client: Client,
}

impl JetStream {
    /// Connect as `user` (password or NKEY, from its credentials) to the first server of
    /// `addrs` that lets it in.
    pub fn connect(
        addrs: &[String],
        credentials: &Credentials,
        tls: &TlsSettings,
    ) -> anyhow::Result<Self> {
        let user = &credentials.user;
        let mut errors = Vec::new();
        for addr in addrs {
            match Client::connect_named(addr, credentials.login(), CONNECT_TIMEOUT, tls, "manage") {
                Ok(client) => return Ok(Self { client }),
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        anyhow::bail!("cannot connect as `{user}`: {}", errors.join("; "))
    }

    /// One API request; `Err(ApiError)` (downcastable) when the server answers with an error.
    pub fn api(&mut self, subject: &str, body: &Value) -> anyhow::Result<Value> {
        let payload = serde_json::to_vec(body).context("failed to encode a request")?;
        let reply = self
            .client
            .request(subject, &payload, API_TIMEOUT)
            .map_err(|e| match e {
                ClientError::Timeout(_) => {
                    anyhow::anyhow!("{subject}: no answer within {}s", API_TIMEOUT.as_secs())
                }
                other => anyhow::anyhow!("{subject}: {other}"),
            })?;
        if is_no_responders(reply.headers.as_deref()) {
            anyhow::bail!("{subject}: no responders (is JetStream enabled for this account?)");
        }
        let value: Value = serde_json::from_slice(&reply.payload)
            .with_context(|| format!("{subject}: the answer is not JSON"))?;
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            return Err(ApiError {
                err_code: error["err_code"].as_u64().unwrap_or(0),
                description: error["description"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_owned(),
            }
            .into());
        }
        Ok(value)
    }

    /// Every stream's name.
    pub fn stream_names(&mut self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        loop {
            let page = self.api("$JS.API.STREAM.NAMES", &json!({ "offset": names.len() }))?;
            let batch: Vec<String> = page["streams"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect();
            let total = page["total"].as_u64().unwrap_or(0) as usize;
            let empty = batch.is_empty();
            names.extend(batch);
            if empty || names.len() >= total {
                break;
            }
        }
        names.sort();
        Ok(names)
    }

    /// `$JS.API.STREAM.INFO.<stream>`; `None` when there is no such stream.
    pub fn stream_info(&mut self, stream: &str) -> anyhow::Result<Option<Value>> {
        match self.api(&format!("$JS.API.STREAM.INFO.{stream}"), &json!({})) {
            Ok(info) => Ok(Some(info)),
            Err(e) if api_code(&e) == Some(STREAM_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The distinct subjects `stream` holds messages on (`subjects_filter`, page by page).
    pub fn stream_subjects(&mut self, stream: &str) -> anyhow::Result<Vec<String>> {
        let mut all: Vec<String> = Vec::new();
        loop {
            let info = self.api(
                &format!("$JS.API.STREAM.INFO.{stream}"),
                &json!({ "subjects_filter": ">", "offset": all.len() }),
            )?;
            let page: Vec<String> = info["state"]["subjects"]
                .as_object()
                .map(|subjects| subjects.keys().cloned().collect())
                .unwrap_or_default();
            let total = info["total"].as_u64().unwrap_or(0) as usize;
            let empty = page.is_empty();
            all.extend(page);
            if empty || all.len() >= total {
                break;
            }
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// Create a stream with `config`.
    pub fn create_stream(&mut self, config: &Value) -> anyhow::Result<Value> {
        let name = config["name"].as_str().unwrap_or_default();
        self.api(&format!("$JS.API.STREAM.CREATE.{name}"), config)
    }

    /// Update a stream to `config`.
    pub fn update_stream(&mut self, config: &Value) -> anyhow::Result<Value> {
        let name = config["name"].as_str().unwrap_or_default();
        self.api(&format!("$JS.API.STREAM.UPDATE.{name}"), config)
    }

    /// The first message at or after `seq` (`None` past the end).
    pub fn next_message(
        &mut self,
        stream: &str,
        seq: u64,
    ) -> anyhow::Result<Option<StoredMessage>> {
        let subject = format!("$JS.API.STREAM.MSG.GET.{stream}");
        match self.api(&subject, &json!({ "seq": seq, "next_by_subj": ">" })) {
            Ok(reply) => decode_message(&reply["message"]).map(Some),
            Err(e) if api_code(&e) == Some(NO_MESSAGE_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The message at `seq` (`None` when it is not there).
    pub fn message(&mut self, stream: &str, seq: u64) -> anyhow::Result<Option<StoredMessage>> {
        let subject = format!("$JS.API.STREAM.MSG.GET.{stream}");
        match self.api(&subject, &json!({ "seq": seq })) {
            Ok(reply) => decode_message(&reply["message"]).map(Some),
            Err(e) if api_code(&e) == Some(NO_MESSAGE_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The last message on `subject` (`None` when there is none).
    pub fn last_message(
        &mut self,
        stream: &str,
        subject: &str,
    ) -> anyhow::Result<Option<StoredMessage>> {
        let request = format!("$JS.API.STREAM.MSG.GET.{stream}");
        match self.api(&request, &json!({ "last_by_subj": subject })) {
            Ok(reply) => decode_message(&reply["message"]).map(Some),
            Err(e) if api_code(&e) == Some(NO_MESSAGE_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The messages at `first..=last` that exist (deleted ones are skipped), asked for all at
    /// once.
    pub fn messages_at(
        &mut self,
        stream: &str,
        first: u64,
        last: u64,
    ) -> anyhow::Result<Vec<StoredMessage>> {
        let subject = format!("$JS.API.STREAM.MSG.GET.{stream}");
        let bodies: Vec<Vec<u8>> = (first..=last)
            .map(|seq| format!("{{\"seq\":{seq}}}").into_bytes())
            .collect();
        let requests: Vec<Request<'_>> = bodies
            .iter()
            .map(|b| (subject.as_str(), None, b.as_slice()))
            .collect();
        let replies = self
            .client
            .request_many(&requests, API_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("{subject}: {e}"))?;
        let mut found = Vec::with_capacity(replies.len());
        for reply in replies {
            let value: Value = serde_json::from_slice(&reply.payload)
                .with_context(|| format!("{subject}: the answer is not JSON"))?;
            match value.get("error").filter(|e| !e.is_null()) {
                Some(error) if error["err_code"].as_u64() == Some(NO_MESSAGE_FOUND) => {}
                Some(error) => anyhow::bail!(
                    "{subject}: {}",
                    error["description"].as_str().unwrap_or("unknown error")
                ),
                None => found.push(decode_message(&value["message"])?),
            }
        }
        Ok(found)
    }

    /// Every consumer's info on `stream`.
    pub fn consumers(&mut self, stream: &str) -> anyhow::Result<Vec<Value>> {
        let mut all: Vec<Value> = Vec::new();
        loop {
            let page = self.api(
                &format!("$JS.API.CONSUMER.LIST.{stream}"),
                &json!({ "offset": all.len() }),
            )?;
            let batch: Vec<Value> = page["consumers"].as_array().cloned().unwrap_or_default();
            let total = page["total"].as_u64().unwrap_or(0) as usize;
            let empty = batch.is_empty();
            all.extend(batch);
            if empty || all.len() >= total {
                break;
            }
        }
        Ok(all)
    }

    /// `$JS.API.CONSUMER.INFO.<stream>.<name>`; `None` when there is no such consumer.
    pub fn consumer_info(&mut self, stream: &str, name: &str) -> anyhow::Result<Option<Value>> {
        match self.api(
            &format!("$JS.API.CONSUMER.INFO.{stream}.{name}"),
            &json!({}),
        ) {
            Ok(info) => Ok(Some(info)),
            Err(e) if api_code(&e) == Some(CONSUMER_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create the consumer `config["durable_name"]` (or `name`) on `stream`.
    pub fn create_consumer(&mut self, stream: &str, config: &Value) -> anyhow::Result<Value> {
        let name = config["durable_name"]
            .as_str()
            .or_else(|| config["name"].as_str())
            .unwrap_or_default();
        self.api(
            &format!("$JS.API.CONSUMER.CREATE.{stream}.{name}"),
            &json!({ "stream_name": stream, "config": config, "action": "create" }),
        )
    }

    /// Publish every message at once and return each one's acknowledgement (`{"stream",
    /// "seq", "duplicate"}` or `{"error"}`), in order.
    pub fn publish_all(&mut self, messages: &[StoredMessage]) -> anyhow::Result<Vec<Value>> {
        let requests: Vec<Request<'_>> = messages
            .iter()
            .map(|m| {
                (
                    m.subject.as_str(),
                    m.headers.as_deref(),
                    m.payload.as_slice(),
                )
            })
            .collect();
        let replies = self
            .client
            .request_many(&requests, API_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("publishing {} messages: {e}", messages.len()))?;
        replies
            .iter()
            .map(|reply| {
                if is_no_responders(reply.headers.as_deref()) {
                    anyhow::bail!("no stream took the message (no responders)");
                }
                serde_json::from_slice(&reply.payload).context("an acknowledgement is not JSON")
            })
            .collect()
    }
}

/// How many sequences a [`Reader`] asks for at once.
const READ_BATCH: u64 = 256;

/// A stream's messages in order from a sequence on. Where the stream is dense (at most half
/// its sequences deleted) a batch of sequences is asked for at once; where it is sparse (a
/// Key-Value history, many deletes) and past its last sequence when the reader was made, the
/// next message is asked for one at a time.
pub struct Reader {
    stream: String,
    /// The next sequence to fetch.
    cursor: u64,
    /// Fetch in batches up to here.
    dense_until: u64,
    buffer: VecDeque<StoredMessage>,
}

impl Reader {
    /// Read `stream` after sequence `after`.
    pub fn new(js: &mut JetStream, stream: &str, after: u64) -> anyhow::Result<Self> {
        let state = js
            .stream_info(stream)?
            .map(|info| info["state"].clone())
            .unwrap_or(Value::Null);
        let first = state["first_seq"].as_u64().unwrap_or(0);
        let last = state["last_seq"].as_u64().unwrap_or(0);
        let messages = state["messages"].as_u64().unwrap_or(0);
        let span = last.saturating_sub(first) + 1;
        let dense = messages > 0 && messages.saturating_mul(2) >= span;
        Ok(Self {
            stream: stream.to_owned(),
            cursor: (after + 1).max(if dense { first } else { 0 }),
            dense_until: if dense { last } else { 0 },
            buffer: VecDeque::new(),
        })
    }

    /// The next message, if any.
    pub fn next(&mut self, js: &mut JetStream) -> anyhow::Result<Option<StoredMessage>> {
        loop {
            if let Some(message) = self.buffer.pop_front() {
                return Ok(Some(message));
            }
            if self.cursor <= self.dense_until {
                let last = (self.cursor + READ_BATCH - 1).min(self.dense_until);
                self.buffer
                    .extend(js.messages_at(&self.stream, self.cursor, last)?);
                self.cursor = last + 1;
                continue;
            }
            let next = js.next_message(&self.stream, self.cursor)?;
            if let Some(message) = &next {
                self.cursor = message.seq + 1;
            }
            return Ok(next);
        }
    }

    /// Give a message back: the next call returns it again.
    pub fn unread(&mut self, message: StoredMessage) {
        self.buffer.push_front(message);
    }
}

/// The `err_code` of an API error.
pub fn api_code(error: &anyhow::Error) -> Option<u64> {
    error.downcast_ref::<ApiError>().map(|e| e.err_code)
}

/// A `503` status reply: nobody listens on the subject.
fn is_no_responders(headers: Option<&[u8]>) -> bool {
    headers.is_some_and(|h| h.starts_with(b"NATS/1.0 503"))
}

fn decode_message(message: &Value) -> anyhow::Result<StoredMessage> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let decode = |key: &str| -> anyhow::Result<Option<Vec<u8>>> {
        match message.get(key).and_then(Value::as_str) {
            None | Some("") => Ok(None),
            Some(text) => engine
                .decode(text)
                .map(Some)
                .with_context(|| format!("`{key}` of a stored message is not base64")),
        }
    };
    Ok(StoredMessage {
        seq: message["seq"]
            .as_u64()
            .context("a stored message without `seq`")?,
        subject: message["subject"]
            .as_str()
            .context("a stored message without `subject`")?
            .to_owned(),
        headers: decode("hdrs")?,
        payload: decode("data")?.unwrap_or_default(),
    })
}
