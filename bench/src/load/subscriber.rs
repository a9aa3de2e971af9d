//! A subscriber connection drained by its own thread, counting messages with
//! as little work per message as possible.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::proto::{ClientConn, Credentials, Frame, FrameReader, ProtoError, DEFAULT_READ_BUFFER};

use super::read_sequence;

/// What to subscribe to.
#[derive(Debug, Clone)]
pub struct SubscribePlan {
    /// Subject (wildcards allowed).
    pub subject: String,
    /// Queue group, if any.
    pub queue: Option<String>,
    /// When set, record which sequence numbers (below this bound) arrived.
    pub track_sequences: Option<u64>,
    /// When set, read no faster than this many bytes per second (a slow consumer that
    /// keeps draining, like a Python worker behind a Go producer).
    pub drain_bytes_per_sec: Option<u64>,
}

/// Why the reader thread stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubEnd {
    /// Our final PING was answered: everything the server queued was read.
    Flushed,
    /// The server closed the connection first (typically a slow consumer).
    Closed,
    /// Reading failed (timeout, protocol error).
    Failed(String),
}

/// The outcome of one subscriber.
#[derive(Debug)]
pub struct SubReport {
    /// Messages received.
    pub received: u64,
    /// Time the read holding the last message returned.
    pub last_msg_at: Option<Instant>,
    /// How the reader stopped.
    pub end: SubEnd,
    /// `-ERR` texts received.
    pub errors: Vec<String>,
    /// Bitset of sequence numbers seen, if tracking was requested.
    pub seen: Option<Vec<u64>>,
    /// Messages whose sequence was already in `seen` on this connection.
    pub duplicates: u64,
}

/// A running subscriber.
pub struct Subscriber {
    received: Arc<AtomicU64>,
    writer: TcpStream,
    /// Taken by [`Subscriber::finish`]; still present on drop means the run
    /// was abandoned and the reader must be woken by closing the socket.
    thread: Option<JoinHandle<SubReport>>,
}

impl Subscriber {
    /// Connects, subscribes, waits until the subscription is active, and
    /// starts the reader thread.
    pub fn start(
        addr: SocketAddr,
        creds: &Credentials,
        plan: &SubscribePlan,
    ) -> Result<Self, ProtoError> {
        let mut conn = ClientConn::connect(addr, creds, DEFAULT_READ_BUFFER)?;
        conn.subscribe(&plan.subject, plan.queue.as_deref(), 1)?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        let pong_writer = conn.writer.try_clone()?;
        let track = plan.track_sequences;
        let pace = plan.drain_bytes_per_sec;
        let thread = std::thread::Builder::new()
            .name("bench-sub".into())
            .spawn(move || drain(conn.reader, pong_writer, &counter, track, pace))?;
        Ok(Self {
            received,
            writer: conn.writer,
            thread: Some(thread),
        })
    }

    /// Live count of received messages, for a [`super::publisher::LagGate`].
    pub fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.received)
    }

    /// Sends a PING and waits for the reader to see its PONG (or the end of
    /// the connection), then returns what it saw.
    pub fn finish(mut self) -> SubReport {
        // If the write fails the connection is gone and the reader ends on its own.
        let _ = self.writer.write_all(b"PING\r\n");
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(report)) => report,
            Some(Err(_)) | None => SubReport {
                received: self.received.load(Ordering::Relaxed),
                last_msg_at: None,
                end: SubEnd::Failed("reader thread panicked".into()),
                errors: Vec::new(),
                seen: None,
                duplicates: 0,
            },
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // The reader owns a clone of the socket; shutting it down makes
            // its blocked read return so the thread ends now.
            let _ = self.writer.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn drain(
    mut reader: FrameReader<TcpStream>,
    mut pong_writer: TcpStream,
    counter: &AtomicU64,
    track: Option<u64>,
    pace: Option<u64>,
) -> SubReport {
    let started = Instant::now();
    let mut bytes_read = 0u64;
    let mut seen = track.map(|bound| vec![0u64; bound.div_ceil(64) as usize]);
    let mut report = SubReport {
        received: 0,
        last_msg_at: None,
        end: SubEnd::Failed("not finished".into()),
        errors: Vec::new(),
        seen: None,
        duplicates: 0,
    };
    let mut received = 0u64;
    report.end = 'read: loop {
        let before = received;
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => break 'read SubEnd::Failed(e.to_string()),
            };
            match frame {
                Frame::Msg(msg) => {
                    received += 1;
                    if let (Some(bits), Some(seq)) = (seen.as_mut(), read_sequence(msg.payload)) {
                        if let Some(word) = bits.get_mut((seq / 64) as usize) {
                            let mask = 1u64 << (seq % 64);
                            if *word & mask != 0 {
                                report.duplicates += 1;
                            }
                            *word |= mask;
                        }
                    }
                }
                Frame::Pong => break 'read SubEnd::Flushed,
                Frame::Ping => {
                    if let Err(e) = pong_writer.write_all(b"PONG\r\n") {
                        break 'read SubEnd::Failed(e.to_string());
                    }
                }
                Frame::Err(text) => report
                    .errors
                    .push(String::from_utf8_lossy(text).into_owned()),
                Frame::Ok | Frame::Info(_) => {}
            }
        }
        if received != before {
            report.last_msg_at = Some(Instant::now());
            counter.store(received, Ordering::Relaxed);
        }
        if let Some(rate) = pace {
            // Sleeping is the point here: this reader is slow on purpose.
            let due = Duration::from_secs_f64(bytes_read as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        match reader.fill() {
            Ok(0) => break SubEnd::Closed,
            Ok(n) => bytes_read += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break SubEnd::Failed(e.to_string()),
        }
    };
    // Messages parsed in the batch that ended the loop.
    if received != counter.load(Ordering::Relaxed) {
        report.last_msg_at = Some(Instant::now());
        counter.store(received, Ordering::Relaxed);
    }
    report.received = received;
    report.seen = seen;
    report
}

/// Merges the sequence bitsets of several receivers of `expected` messages
/// into (missing, duplicated across receivers).
pub fn exactly_once_check(reports: &[SubReport], expected: u64) -> (u64, u64) {
    let words = expected.div_ceil(64) as usize;
    let mut union = vec![0u64; words];
    let mut cross_duplicates = 0u64;
    for bits in reports.iter().filter_map(|r| r.seen.as_ref()) {
        for (acc, word) in union.iter_mut().zip(bits) {
            cross_duplicates += u64::from((*acc & word).count_ones());
            *acc |= word;
        }
    }
    let present: u64 = union.iter().map(|w| u64::from(w.count_ones())).sum();
    (expected.saturating_sub(present), cross_duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with(seqs: &[u64], bound: u64) -> SubReport {
        let mut bits = vec![0u64; bound.div_ceil(64) as usize];
        for s in seqs {
            bits[(s / 64) as usize] |= 1 << (s % 64);
        }
        SubReport {
            received: seqs.len() as u64,
            last_msg_at: None,
            end: SubEnd::Flushed,
            errors: Vec::new(),
            seen: Some(bits),
            duplicates: 0,
        }
    }

    #[test]
    fn exactly_once_detects_missing_and_duplicated() {
        let complete = [
            report_with(&[0, 2, 64], 70),
            report_with(&[1, 3, 65, 66, 67, 68, 69], 70),
        ];
        assert_eq!(exactly_once_check(&complete, 70).1, 0);
        let all: Vec<u64> = (0..70).collect();
        assert_eq!(exactly_once_check(&[report_with(&all, 70)], 70), (0, 0));
        let overlapping = [report_with(&[0, 1, 2], 3), report_with(&[2], 3)];
        assert_eq!(exactly_once_check(&overlapping, 3), (0, 1));
        let gap = [report_with(&[0, 2], 3)];
        assert_eq!(exactly_once_check(&gap, 3), (1, 0));
    }
}
