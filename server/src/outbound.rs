//! The half of a connection that publishers touch: its outbound buffer, the writer task that
//! flushes it, and the flow control that holds fast publishers back.
//!
//! A publisher copies each message once into the receiver's buffer under the receiver's
//! mutex; the receiver's writer task swaps the buffer out and writes it in one call. A
//! receiver whose pending bytes reach three quarters of `max_pending` holds back the client
//! publishers that feed it (as nats-server's "stall" of fast producers, see
//! docs/architecture.md): each waits at the end of its read batch, without reading more, until
//! the receiver drains below that mark. A receiver whose socket has taken nothing for
//! [`STOPPED_RECEIVER_AFTER`] counts as stopped and holds nobody back; it is cut off as a slow
//! consumer once its pending bytes pass `max_pending` or its socket has taken nothing for
//! `write_deadline`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::auth::ClientPermissions;
use crate::proto::encode;

pub(crate) type ClientId = u64;

/// Smallest growth of an outbound buffer.
const MIN_GROWTH: usize = 512;
/// A writer keeps its spare buffer between flushes unless it grew beyond this.
pub(crate) const MAX_KEPT_WRITE_BUFFER: usize = 1024 * 1024;
/// A receiver whose socket has accepted no byte for this long, while it has data pending, has
/// stopped reading (or its host is gone) rather than reading slowly: publishers stop waiting
/// for it. Long enough for a live reader's pauses (a garbage collection, a scheduler hiccup,
/// a TCP retransmission), short enough that one stuck subscriber costs its publishers at most
/// this once. Never longer than the `write_deadline`, which cuts such a receiver off anyway.
pub(crate) const STOPPED_RECEIVER_AFTER: Duration = Duration::from_secs(1);

/// Milliseconds on a monotonic clock shared by all connections (progress stamps).
fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    // Never 0, so 0 can mean "no stamp yet".
    start.elapsed().as_millis() as u64 + 1
}

/// Why a connection ended, as `/connz?state=closed` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    AuthenticationTimeout,
    AuthenticationViolation,
    SlowConsumerPendingBytes,
    SlowConsumerWriteDeadline,
    WriteError,
    ReadError,
    ParseError,
    StaleConnection,
    ProtocolViolation,
    BadClientProtocolVersion,
    MaxConnectionsExceeded,
    MaxAccountConnectionsExceeded,
    /// New account claims lowered the subscription limit to what the connection holds.
    MaxSubscriptionsExceeded,
    MaxPayloadExceeded,
    MaxControlLineExceeded,
    AuthenticationExpired,
    /// A user JWT revoked by its account's new claims.
    Revocation,
    ServerShutdown,
    LameDuckMode,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::AuthenticationTimeout => "Authentication Timeout",
            CloseReason::AuthenticationViolation => "Authentication Failure",
            CloseReason::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            CloseReason::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            CloseReason::WriteError => "Write Error",
            CloseReason::ReadError => "Read Error",
            CloseReason::ParseError => "Parse Error",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::BadClientProtocolVersion => "Bad Client Protocol Version",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::MaxAccountConnectionsExceeded => "Maximum Account Connections Exceeded",
            CloseReason::MaxSubscriptionsExceeded => "Maximum Subscriptions Exceeded",
            CloseReason::MaxPayloadExceeded => "Maximum Message Payload Exceeded",
            CloseReason::MaxControlLineExceeded => "Maximum Control Line Exceeded",
            CloseReason::AuthenticationExpired => "Authentication Expired",
            CloseReason::Revocation => "Credentials Revoked",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::LameDuckMode => "Lame Duck Mode",
        }
    }

    /// Whether what is already queued for the client should still be written before closing
    /// (an `-ERR` explaining the close, for instance). A slow consumer gets nothing more.
    fn flush_before_close(self) -> bool {
        !matches!(
            self,
            CloseReason::SlowConsumerPendingBytes
                | CloseReason::SlowConsumerWriteDeadline
                | CloseReason::WriteError
        )
    }
}

/// What a buffered delivery did to the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// The buffer was empty: the receiver's writer must be woken.
    NeedsFlush,
    /// Already pending data: a wake-up is on its way.
    Pending,
    /// Queued, and the receiver is now behind (pending bytes at or above its stall mark): a
    /// publisher that holds back should wait for it before publishing more.
    Stalled,
    /// The receiver is closing (or just became a slow consumer), or it is behind and the
    /// publisher drops rather than waits: nothing queued.
    Dropped,
}

/// What a publisher does about a receiver that is behind (pending bytes at or above three
/// quarters of its `max_pending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Queue anyway; the receiver is cut off once past `max_pending`. The server's own
    /// publishers (JetStream, the system account), which must never wait for a client.
    #[default]
    Queue,
    /// Queue, and wait at the end of the read batch until the receiver has drained: client
    /// publishers, as nats-server stalls fast producers.
    HoldPublisher,
    /// Do not queue the message for that receiver (`no_fast_producer_stall: true`, as in
    /// nats-server 2.11+).
    DropMessage,
}

/// How a wait for a receiver that was behind ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Below its stall mark again, or closed.
    Drained,
    /// Its socket has taken nothing for a while: waiting longer would hold the publisher for
    /// a reader that is not reading.
    Stopped,
}

struct OutBuf {
    buf: BytesMut,
    /// Bytes the writer took out of `buf` and has not written yet: pending too.
    in_flight: usize,
    /// A publisher may be waiting for this receiver to drain below its stall mark.
    stall_gate: bool,
    /// When the current stall began (monotonic ms), so a receiver that was idle for long is
    /// not taken as stopped the moment it falls behind.
    stall_since_ms: u64,
    out_msgs: u64,
    out_bytes: u64,
}

impl OutBuf {
    fn pending(&self) -> usize {
        self.buf.len() + self.in_flight
    }
}

/// What publishers, the writer and the monitor share of one connection: its identity, the
/// outbound buffer and its flow control, the close state, and the delivery-side permissions.
pub struct Outbound {
    pub cid: ClientId,
    pub addr: SocketAddr,
    pub start: SystemTime,
    out: Mutex<OutBuf>,
    writer_wake: Notify,
    pub(crate) reader_wake: Notify,
    closing: AtomicBool,
    close_reason: Mutex<Option<CloseReason>>,
    max_pending: usize,
    /// Pending bytes at which client publishers are held back: three quarters of
    /// `max_pending`, nats-server's mark.
    stall_threshold: usize,
    /// Woken when the receiver drains below `stall_threshold` or closes.
    drained: Notify,
    /// Monotonic ms of the last time the socket accepted bytes or the writer took new work.
    progress_ms: AtomicU64,
    /// Times a publisher waited for this receiver (`/connz` `stalls`).
    pub stalls: AtomicU64,
    /// The client asked for headers (CONNECT); messages to it keep theirs.
    pub(crate) wants_headers: AtomicBool,
    pub permissions: ArcSwapOption<ClientPermissions>,
    /// Bumped when a reload changes this client's permissions; the reader then drops its caches.
    pub(crate) permissions_generation: AtomicU64,
    /// Replies this client may publish to under `allow_responses`: reply → (remaining, expiry).
    responses: Mutex<HashMap<Box<[u8]>, ResponseAllowance>>,
    /// Unix milliseconds of the last read batch or flush; 0 until the first one.
    pub last_activity_ms: AtomicU64,
    /// Someone (the writer task, or the reader writing its own replies) is writing to the
    /// socket; whoever holds it writes the outbound buffer in order.
    writing: AtomicBool,
}

/// How many more replies may go to one reply subject, and until when.
type ResponseAllowance = (u32, Instant);

impl Outbound {
    pub fn new(cid: ClientId, addr: SocketAddr, max_pending: usize) -> Outbound {
        Outbound {
            cid,
            addr,
            start: SystemTime::now(),
            out: Mutex::new(OutBuf {
                buf: BytesMut::new(),
                in_flight: 0,
                stall_gate: false,
                stall_since_ms: 0,
                out_msgs: 0,
                out_bytes: 0,
            }),
            writer_wake: Notify::new(),
            reader_wake: Notify::new(),
            closing: AtomicBool::new(false),
            close_reason: Mutex::new(None),
            max_pending,
            stall_threshold: max_pending / 4 * 3,
            drained: Notify::new(),
            progress_ms: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            wants_headers: AtomicBool::new(false),
            permissions: ArcSwapOption::empty(),
            permissions_generation: AtomicU64::new(0),
            responses: Mutex::new(HashMap::new()),
            last_activity_ms: AtomicU64::new(0),
            writing: AtomicBool::new(false),
        }
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        *self.close_reason.lock()
    }

    /// (out_msgs, out_bytes, pending bytes)
    pub fn out_stats(&self) -> (u64, u64, usize) {
        let out = self.out.lock();
        (out.out_msgs, out.out_bytes, out.pending())
    }

    /// When the connection last read or flushed anything (its start before that).
    pub fn last_activity(&self) -> SystemTime {
        match self.last_activity_ms.load(Ordering::Relaxed) {
            0 => self.start,
            ms => SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
        }
    }

    /// Record now as the last activity; called once per read batch or flush, never per message.
    pub(crate) fn touch(&self) {
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// Start closing the connection: the writer flushes what is queued (when `reason` allows)
    /// and shuts the socket; the reader stops. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        {
            let mut r = self.close_reason.lock();
            if r.is_some() {
                return;
            }
            *r = Some(reason);
        }
        if !reason.flush_before_close() {
            self.out.lock().buf.clear();
        }
        self.closing.store(true, Ordering::Release);
        self.writer_wake.notify_one();
        self.reader_wake.notify_one();
        // Publishers waiting for this receiver to drain stop waiting.
        self.drained.notify_waiters();
    }

    /// The writer took `chunk` bytes out of the buffer to write them (or found it empty).
    fn took_for_writing(&self, out: &mut OutBuf, chunk: usize) -> bool {
        out.in_flight = chunk;
        if chunk > 0 {
            self.progress_ms.store(monotonic_ms(), Ordering::Relaxed);
        }
        self.gate_opens(out)
    }

    /// The socket accepted `n` bytes of the chunk in flight.
    fn wrote(&self, n: usize) {
        self.progress_ms.store(monotonic_ms(), Ordering::Relaxed);
        let opened = {
            let mut out = self.out.lock();
            out.in_flight = out.in_flight.saturating_sub(n);
            self.gate_opens(&mut out)
        };
        if opened {
            self.drained.notify_waiters();
        }
    }

    /// Close the stall gate once the receiver is below its mark; true if waiters must be woken.
    fn gate_opens(&self, out: &mut OutBuf) -> bool {
        if out.stall_gate && out.pending() < self.stall_threshold {
            out.stall_gate = false;
            return true;
        }
        false
    }

    /// Wait until this receiver has drained below its stall mark, has closed, or has stopped
    /// draining: its socket took nothing for `stopped_after` (counted from the later of its
    /// last progress and the start of the stall). Never takes more than one lock per wake-up.
    pub async fn wait_for_room(&self, stopped_after: Duration) -> Room {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let since_progress = {
                let out = self.out.lock();
                if out.pending() < self.stall_threshold || self.is_closing() {
                    return Room::Drained;
                }
                let last = self
                    .progress_ms
                    .load(Ordering::Relaxed)
                    .max(out.stall_since_ms);
                Duration::from_millis(monotonic_ms().saturating_sub(last))
            };
            if since_progress >= stopped_after {
                return Room::Stopped;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(stopped_after - since_progress) => {}
            }
        }
    }

    /// Wake the writer after queueing data from outside a read batch.
    pub fn flush_soon(&self) {
        self.writer_wake.notify_one();
    }

    /// Queue raw protocol bytes (INFO, PONG, +OK, -ERR) for this client.
    pub fn queue_proto(&self, bytes: &[u8]) -> Queued {
        self.queue_with(bytes.len(), None, Backpressure::Queue, |buf| {
            buf.extend_from_slice(bytes)
        })
    }

    /// Append one frame of about `size` bytes; `msg_bytes` counts it as a delivered message.
    fn queue_with(
        &self,
        size: usize,
        msg_bytes: Option<usize>,
        backpressure: Backpressure,
        write: impl FnOnce(&mut BytesMut),
    ) -> Queued {
        if self.is_closing() {
            return Queued::Dropped;
        }
        let mut out = self.out.lock();
        let pending = out.pending();
        if pending + size > self.max_pending && pending > 0 {
            drop(out);
            tracing::info!(
                "{} - cid:{} - Slow Consumer Detected: MaxPending of {} Exceeded",
                self.addr,
                self.cid,
                self.max_pending
            );
            self.close(CloseReason::SlowConsumerPendingBytes);
            return Queued::Dropped;
        }
        if pending >= self.stall_threshold && backpressure == Backpressure::DropMessage {
            return Queued::Dropped;
        }
        let was_empty = out.buf.is_empty();
        if out.buf.capacity() - out.buf.len() < size {
            let grow = size.max(out.buf.len()).max(MIN_GROWTH);
            out.buf.reserve(grow);
        }
        write(&mut out.buf);
        if let Some(bytes) = msg_bytes {
            out.out_msgs += 1;
            out.out_bytes += bytes as u64;
        }
        if backpressure == Backpressure::HoldPublisher && out.pending() >= self.stall_threshold {
            if !out.stall_gate {
                out.stall_gate = true;
                out.stall_since_ms = monotonic_ms();
            }
            return Queued::Stalled;
        }
        if was_empty {
            Queued::NeedsFlush
        } else {
            Queued::Pending
        }
    }

    /// Queue one message for subscription `sid`. Headers are dropped for a client that did not
    /// ask for them, as nats-server does.
    pub fn queue_msg(
        &self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
        backpressure: Backpressure,
    ) -> Queued {
        let headers = headers.filter(|_| self.wants_headers.load(Ordering::Relaxed));
        let frame_len = 32
            + subject.len()
            + sid.len()
            + reply.map_or(0, <[u8]>::len)
            + headers.map_or(0, <[u8]>::len)
            + payload.len();
        let msg_bytes = headers.map_or(0, <[u8]>::len) + payload.len();
        self.queue_with(
            frame_len,
            Some(msg_bytes),
            backpressure,
            |buf| match headers {
                Some(h) => encode::hmsg(buf, subject, sid, reply, h, payload),
                None => encode::msg(buf, subject, sid, reply, payload),
            },
        )
    }

    pub(crate) fn record_response_permission(&self, reply: &[u8]) {
        let Some(perms) = self.permissions.load_full() else {
            return;
        };
        let Some(rp) = perms.allow_responses else {
            return;
        };
        let mut map = self.responses.lock();
        map.insert(reply.into(), (rp.max.max(1), Instant::now() + rp.expires));
    }

    /// Consume one allowed response to `subject` if there is one.
    pub(crate) fn take_response_permission(&self, subject: &[u8]) -> bool {
        let mut map = self.responses.lock();
        let now = Instant::now();
        map.retain(|_, (left, expires)| *left > 0 && *expires > now);
        match map.get_mut(subject) {
            Some((left, _)) => {
                *left -= 1;
                true
            }
            None => false,
        }
    }

    /// Write this connection's pending bytes from its reader's task without blocking, through
    /// `direct_buf` (the reader's spare buffer); true when nothing is left for the writer
    /// task (which is then not woken).
    pub fn write_direct(&self, tcp: &OwnedWriteHalf, direct_buf: &mut BytesMut) -> bool {
        let shared = self;
        if shared
            .writing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        std::mem::swap(&mut shared.out.lock().buf, direct_buf);
        let mut written = 0;
        let mut failed = false;
        while written < direct_buf.len() {
            match tcp.try_write(&direct_buf[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let (done, opened) = {
            let mut out = shared.out.lock();
            if written < direct_buf.len() && !failed {
                // The socket is full: what is left goes back in front of anything queued
                // meanwhile, and the writer task carries on (with the write deadline).
                let rest = &direct_buf[written..];
                if out.buf.is_empty() {
                    out.buf.extend_from_slice(rest);
                } else {
                    let mut joined = BytesMut::with_capacity(rest.len() + out.buf.len());
                    joined.extend_from_slice(rest);
                    joined.extend_from_slice(&out.buf);
                    out.buf = joined;
                }
            }
            shared.writing.store(false, Ordering::Release);
            (out.buf.is_empty(), shared.gate_opens(&mut out))
        };
        if opened {
            shared.drained.notify_waiters();
        }
        direct_buf.clear();
        if direct_buf.capacity() > MAX_KEPT_WRITE_BUFFER {
            *direct_buf = BytesMut::new();
        }
        if failed {
            shared.close(CloseReason::WriteError);
            return true;
        }
        if written > 0 {
            shared.progress_ms.store(monotonic_ms(), Ordering::Relaxed);
            shared.touch();
        }
        done
    }
}

/// The socket's write side. A plain TCP socket is shared, so the reader can write its own
/// connection's replies (PONG, +OK, PubAcks, requests answered in the same batch) right at the
/// end of a read batch instead of waking the writer task: one thread hop less on every round
/// trip. A TLS stream is written by the writer task only.
pub(crate) enum Outlet {
    Tcp(Arc<OwnedWriteHalf>),
    Stream(Box<dyn AsyncWrite + Unpin + Send>),
}

/// Flush the outbound buffer whenever woken, in one write per wake-up, until the connection closes.
pub(crate) async fn write_loop(shared: Arc<Outbound>, mut outlet: Outlet, deadline: Duration) {
    let mut spare = BytesMut::new();
    'outer: loop {
        shared.writer_wake.notified().await;
        if shared
            .writing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // The reader is writing directly; it wakes us again if it leaves anything.
            continue;
        }
        // The flag stays ours until the buffer is found empty, so the bytes in flight are
        // always those of the chunk this loop is writing.
        loop {
            let opened = {
                let mut out = shared.out.lock();
                std::mem::swap(&mut out.buf, &mut spare);
                shared.took_for_writing(&mut out, spare.len())
            };
            if opened {
                shared.drained.notify_waiters();
            }
            if spare.is_empty() {
                shared.writing.store(false, Ordering::Release);
                if shared.is_closing() {
                    break 'outer;
                }
                break;
            }
            let written = match &mut outlet {
                Outlet::Tcp(tcp) => write_all_tcp(&shared, tcp, &spare, deadline).await,
                Outlet::Stream(stream) => write_all_stream(&shared, stream, &spare, deadline).await,
            };
            match written {
                Ok(()) => shared.touch(),
                Err(reason) => {
                    shared.writing.store(false, Ordering::Release);
                    if reason == CloseReason::SlowConsumerWriteDeadline {
                        tracing::info!(
                            "{} - cid:{} - Slow Consumer Detected: WriteDeadline of {} exceeded with 1 chunks of {} total bytes.",
                            shared.addr,
                            shared.cid,
                            natsd_conf::duration::go_duration(deadline),
                            spare.len()
                        );
                    }
                    shared.close(reason);
                    break 'outer;
                }
            }
            spare.clear();
            if spare.capacity() > MAX_KEPT_WRITE_BUFFER {
                spare = BytesMut::new();
            }
        }
    }
    // Dropping a TCP write half shuts the write direction down; the last owner drops it.
    if let Outlet::Stream(mut stream) = outlet {
        let _ = stream.shutdown().await;
    }
}

/// Write all of `buf` to a shared TCP write half. The write deadline is the time the socket
/// may take no byte at all (a slow reader that keeps reading is not cut off); progress is
/// reported to `shared` whenever the socket fills, so held-back publishers see it.
async fn write_all_tcp(
    shared: &Outbound,
    tcp: &OwnedWriteHalf,
    buf: &[u8],
    deadline: Duration,
) -> Result<(), CloseReason> {
    let mut written = 0;
    let mut reported = 0;
    while written < buf.len() {
        match tcp.try_write(&buf[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if written > reported {
                    shared.wrote(written - reported);
                    reported = written;
                }
                let probed = wait_writable(tcp, &buf[written..], deadline).await?;
                if probed > 0 {
                    written += probed;
                    shared.wrote(probed);
                    reported = written;
                }
            }
            Err(_) => return Err(CloseReason::WriteError),
        }
    }
    Ok(())
}

/// First and longest pause between probes of a full socket (see [`wait_writable`]).
const PROBE_FIRST: Duration = Duration::from_millis(50);
const PROBE_MAX: Duration = Duration::from_millis(400);

/// Wait until a full socket can take more of `rest`, within `deadline` of no progress.
///
/// The kernel reports a full TCP socket writable again only once a large part of its send
/// buffer is free (half of what is queued), which for a slow reader behind a multi-megabyte
/// buffer can take seconds of steady reading. So while waiting, `rest` is offered to the
/// socket directly every so often (the socket accepts bytes as soon as the reader has freed
/// any): a reader that drains slowly shows progress within a fraction of a second, and only
/// one that reads nothing looks stopped. Returns how many bytes such a probe wrote (0 when
/// the socket became writable first).
async fn wait_writable(
    tcp: &OwnedWriteHalf,
    rest: &[u8],
    deadline: Duration,
) -> Result<usize, CloseReason> {
    let give_up = tokio::time::Instant::now() + deadline;
    let mut pause = PROBE_FIRST;
    loop {
        let next_probe = (tokio::time::Instant::now() + pause).min(give_up);
        match tokio::time::timeout_at(next_probe, tcp.writable()).await {
            Ok(Ok(())) => return Ok(0),
            Ok(Err(_)) => return Err(CloseReason::WriteError),
            Err(_) if tokio::time::Instant::now() >= give_up => {
                return Err(CloseReason::SlowConsumerWriteDeadline)
            }
            Err(_) => {}
        }
        // Written beside tokio's readiness tracking: at worst it is stale, and the next
        // `try_write` finds out. Only this writer writes to the socket meanwhile.
        let fd = std::os::fd::AsRawFd::as_raw_fd(tcp.as_ref());
        let flags =
            nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL;
        match nix::sys::socket::send(fd, rest, flags) {
            Ok(n) if n > 0 => return Ok(n),
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => pause = (pause * 2).min(PROBE_MAX),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Err(CloseReason::WriteError),
        }
    }
}

/// [`write_all_tcp`] for a TLS stream: each write may take up to the deadline.
async fn write_all_stream(
    shared: &Outbound,
    stream: &mut (dyn AsyncWrite + Unpin + Send),
    buf: &[u8],
    deadline: Duration,
) -> Result<(), CloseReason> {
    let mut written = 0;
    while written < buf.len() {
        match tokio::time::timeout(deadline, stream.write(&buf[written..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(CloseReason::WriteError),
            Ok(Ok(n)) => {
                written += n;
                if written < buf.len() {
                    shared.wrote(n);
                }
            }
            Err(_) => return Err(CloseReason::SlowConsumerWriteDeadline),
        }
    }
    match tokio::time::timeout(deadline, stream.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(CloseReason::WriteError),
        Err(_) => Err(CloseReason::SlowConsumerWriteDeadline),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(max_pending: usize) -> Arc<Outbound> {
        Arc::new(Outbound::new(
            1,
            SocketAddr::from(([127, 0, 0, 1], 1)),
            max_pending,
        ))
    }

    fn queue(client: &Outbound, len: usize, backpressure: Backpressure) -> Queued {
        client.queue_msg(b"s", b"1", None, None, &vec![b'x'; len], backpressure)
    }

    #[test]
    fn a_receiver_behind_its_mark_stalls_holders_drops_for_droppers_and_queues_for_the_server() {
        let client = receiver(4000);
        assert_eq!(
            queue(&client, 1000, Backpressure::HoldPublisher),
            Queued::NeedsFlush
        );
        assert_eq!(
            queue(&client, 1000, Backpressure::HoldPublisher),
            Queued::Pending
        );
        // Past three quarters of max_pending (3000 bytes with the frame overhead).
        assert_eq!(
            queue(&client, 1000, Backpressure::HoldPublisher),
            Queued::Stalled
        );
        let pending = client.out_stats().2;
        assert!(pending >= 3000, "{pending}");
        assert_eq!(
            queue(&client, 10, Backpressure::DropMessage),
            Queued::Dropped
        );
        assert_eq!(
            client.out_stats().2,
            pending,
            "a dropped message is not queued"
        );
        assert!(!client.is_closing(), "dropping is not a disconnect");
        assert_eq!(queue(&client, 10, Backpressure::Queue), Queued::Pending);
        // Past max_pending: cut off whatever the publisher's policy.
        assert_eq!(queue(&client, 1000, Backpressure::Queue), Queued::Dropped);
        assert_eq!(
            client.close_reason(),
            Some(CloseReason::SlowConsumerPendingBytes)
        );
    }

    #[test]
    fn bytes_in_flight_count_as_pending_until_written() {
        let client = receiver(4000);
        queue(&client, 2000, Backpressure::HoldPublisher);
        let chunk = {
            let mut out = client.out.lock();
            let chunk = out.buf.split();
            client.took_for_writing(&mut out, chunk.len());
            chunk
        };
        assert_eq!(client.out_stats().2, chunk.len());
        assert_eq!(
            queue(&client, 1000, Backpressure::HoldPublisher),
            Queued::Stalled
        );
        client.wrote(chunk.len());
        assert!(client.out_stats().2 < 1100);
    }

    #[tokio::test]
    async fn a_held_publisher_is_released_when_the_receiver_drains() {
        let client = receiver(4000);
        queue(&client, 3500, Backpressure::HoldPublisher);
        let waiter = tokio::spawn({
            let client = client.clone();
            async move { client.wait_for_room(Duration::from_secs(30)).await }
        });
        // The writer takes the data and the socket accepts it bit by bit.
        let len = {
            let mut out = client.out.lock();
            let len = out.buf.split().len();
            client.took_for_writing(&mut out, len);
            len
        };
        client.wrote(10);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "still above the mark: keeps waiting");
        client.wrote(len - 10);
        let room = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released without waiting for the stopped-receiver timeout")
            .expect("waiter task");
        assert_eq!(room, Room::Drained);
    }

    #[tokio::test]
    async fn a_receiver_whose_socket_takes_nothing_counts_as_stopped() {
        let client = receiver(4000);
        queue(&client, 3500, Backpressure::HoldPublisher);
        let started = Instant::now();
        let room = client.wait_for_room(Duration::from_millis(200)).await;
        assert_eq!(room, Room::Stopped);
        assert!(started.elapsed() >= Duration::from_millis(150));
        // Later publishers do not wait again while it stays stopped.
        let again = Instant::now();
        assert_eq!(
            client.wait_for_room(Duration::from_millis(200)).await,
            Room::Stopped
        );
        assert!(again.elapsed() < Duration::from_millis(100));
        // Closing releases anyone waiting.
        client.close(CloseReason::SlowConsumerWriteDeadline);
        assert_eq!(
            client.wait_for_room(Duration::from_secs(30)).await,
            Room::Drained
        );
    }
}
