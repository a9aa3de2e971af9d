//! WebSocket transport for client connections: the HTTP upgrade ([`handshake`]), the frame
//! codec with permessage-deflate ([`frame`]), and a bridge that lets a connection's reader
//! and writer tasks see a plain byte stream.
//!
//! The bridge is two small tasks per connection between the socket and an in-memory pipe:
//! one turns the client's frames into protocol bytes (answering pings and closes itself), the
//! other frames whatever the connection writes. The protocol handling, auth and accounting
//! are the TCP client's own ([`crate::client::serve`]); the plain TCP path is untouched.

pub(crate) mod frame;
pub(crate) mod handshake;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf,
};
use tokio::sync::{mpsc, Notify};

use crate::outbound::{CloseReason, Outbound};

use self::frame::{Control, Decoded, Decoder, Encoder};
pub(crate) use self::handshake::{Accepted, Refusal, UpgradeRules};

/// Largest upgrade request head accepted.
const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// Bytes in flight in each direction of the pipe between the socket and the connection.
const PIPE_SIZE: usize = 64 * 1024;
/// Socket read size.
const READ_SIZE: usize = 32 * 1024;

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpgradeError {
    /// Refused with an HTTP error (already written).
    #[error("{}", .0.reason)]
    Refused(Refusal),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed before the upgrade request was complete")]
    Eof,
}

/// Read the upgrade request from `stream`, check it and answer it: `101` (and what was agreed)
/// or an HTTP error.
pub(crate) async fn upgrade<S>(
    stream: &mut S,
    rules: &UpgradeRules,
) -> Result<Accepted, UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    let (request, head_len) = loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(UpgradeError::Eof);
        }
        match handshake::parse_request(&buf) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) if buf.len() < MAX_REQUEST_HEAD => continue,
            Ok(None) => {
                return refuse(
                    stream,
                    Refusal {
                        status: 431,
                        reason: "request header too large".to_string(),
                    },
                )
                .await
            }
            Err(refusal) => return refuse(stream, refusal).await,
        }
    };
    let accepted = match handshake::check(&request, rules) {
        Ok(accepted) => accepted,
        Err(refusal) => return refuse(stream, refusal).await,
    };
    if buf.len() > head_len {
        return refuse(
            stream,
            Refusal {
                status: 400,
                reason: "client sent data before handshake is complete".to_string(),
            },
        )
        .await;
    }
    stream.write_all(&accepted.response).await?;
    stream.flush().await?;
    Ok(accepted)
}

async fn refuse<S: AsyncWrite + Unpin>(
    stream: &mut S,
    refusal: Refusal,
) -> Result<Accepted, UpgradeError> {
    let _ = stream.write_all(&refusal.response()).await;
    let _ = stream.shutdown().await;
    Err(UpgradeError::Refused(refusal))
}

/// The close status nats-server sends for each way a connection ends.
fn close_status(reason: Option<CloseReason>) -> u16 {
    use CloseReason::*;
    match reason {
        None | Some(ClientClosed) => frame::CLOSE_NORMAL,
        Some(
            AuthenticationTimeout
            | AuthenticationViolation
            | SlowConsumerPendingBytes
            | SlowConsumerWriteDeadline
            | MaxAccountConnectionsExceeded
            | MaxConnectionsExceeded
            | MaxControlLineExceeded
            | MaxSubscriptionsExceeded
            | AuthenticationExpired
            | Revocation,
        ) => frame::CLOSE_POLICY_VIOLATION,
        Some(ParseError | ProtocolViolation | BadClientProtocolVersion) => {
            frame::CLOSE_PROTOCOL_ERROR
        }
        Some(MaxPayloadExceeded) => frame::CLOSE_MESSAGE_TOO_BIG,
        Some(WriteError | ReadError | StaleConnection | ServerShutdown) => frame::CLOSE_GOING_AWAY,
        Some(LameDuckMode) => frame::CLOSE_INTERNAL_ERROR,
    }
}

/// Bridge an upgraded `socket` to a byte pipe; returns the connection's ends of it. `out` is
/// the connection's outbound state (for the close status when the connection ends).
pub(crate) fn bridge<S>(
    socket: S,
    accepted: &Accepted,
    max_payload: usize,
    out: Arc<Outbound>,
) -> (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (conn_end, pump_end) = tokio::io::duplex(PIPE_SIZE);
    let (sock_r, sock_w) = tokio::io::split(socket);
    let (pipe_r, pipe_w) = tokio::io::split(pump_end);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let done = Arc::new(Notify::new());
    let decoder = Decoder::new(!accepted.no_masking, accepted.compress, max_payload);
    let encoder = Encoder::new(
        accepted.compress,
        accepted.browser,
        accepted.no_compressed_fragments,
    );
    tokio::spawn(inbound(sock_r, pipe_w, decoder, control_tx, done.clone()));
    tokio::spawn(outbound(sock_w, pipe_r, encoder, control_rx, done, out));
    tokio::io::split(conn_end)
}

/// Client frames → protocol bytes for the connection's reader.
async fn inbound<R, W>(
    mut sock: R,
    mut pipe: W,
    mut decoder: Decoder,
    control: mpsc::UnboundedSender<Control>,
    done: Arc<Notify>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = BytesMut::with_capacity(READ_SIZE);
    let mut data = BytesMut::new();
    let mut answers = Vec::new();
    loop {
        input.reserve(READ_SIZE);
        let read = tokio::select! {
            read = sock.read_buf(&mut input) => read,
            () = done.notified() => break,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let decoded = decoder.decode(&mut input, &mut data, &mut answers);
        for answer in answers.drain(..) {
            let _ = control.send(answer);
        }
        if !data.is_empty() {
            if pipe.write_all(&data).await.is_err() {
                break;
            }
            data.clear();
        }
        match decoded {
            Ok(Decoded::More) => {}
            Ok(Decoded::Closed { reply }) => {
                let _ = control.send(Control::Close(reply.unwrap_or_default()));
                break;
            }
            Err(e) => {
                tracing::debug!("websocket frame error: {}", e.reason);
                let _ = control.send(Control::Close(frame::close_payload(e.status, &e.reason)));
                break;
            }
        }
    }
    // The connection's reader sees the end of its stream and closes as the client did.
    let _ = pipe.shutdown().await;
}

/// Protocol bytes from the connection's writer → frames, plus control answers.
async fn outbound<W, R>(
    mut sock: W,
    mut pipe: R,
    mut encoder: Encoder,
    mut control: mpsc::UnboundedReceiver<Control>,
    done: Arc<Notify>,
    out: Arc<Outbound>,
) where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut framed = Vec::with_capacity(READ_SIZE + 16);
    let mut close_sent = false;
    let mut control_open = true;
    loop {
        buf.reserve(READ_SIZE);
        tokio::select! {
            // Control answers first: a close the reader queued must go out before the end of
            // the pipe (which follows it) makes this side close with its own status.
            biased;
            answer = control.recv(), if control_open => match answer {
                Some(Control::Pong(payload)) => {
                    framed.clear();
                    frame::control_frame(frame::OP_PONG, &payload, &mut framed);
                    if sock.write_all(&framed).await.is_err() {
                        break;
                    }
                }
                Some(Control::Close(payload)) => {
                    framed.clear();
                    frame::control_frame(frame::OP_CLOSE, &payload, &mut framed);
                    let _ = sock.write_all(&framed).await;
                    close_sent = true;
                    // What the connection still writes goes nowhere: the client closed.
                    control_open = false;
                }
                None => control_open = false,
            },
            read = pipe.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if close_sent {
                        buf.clear();
                        continue;
                    }
                    framed.clear();
                    encoder.encode(&buf, &mut framed);
                    buf.clear();
                    if sock.write_all(&framed).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    if !close_sent {
        let status = close_status(out.close_reason());
        let reason = out.close_reason().unwrap_or(CloseReason::ClientClosed);
        framed.clear();
        frame::control_frame(
            frame::OP_CLOSE,
            &frame::close_payload(status, reason.as_str()),
            &mut framed,
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), sock.write_all(&framed)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sock.shutdown()).await;
    done.notify_one();
}
