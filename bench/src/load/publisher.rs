//! A publisher that writes pre-built batches of `PUB` frames as fast as the
//! socket takes them, optionally held back by a [`LagGate`] so subscribers are
//! never pushed into slow-consumer territory.

use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::{ClientConn, ProtoError};

use super::stamp_sequence;

/// Size of one `write` call. Large enough that syscall cost per message is
/// negligible even at 16-byte payloads.
const BATCH_BYTES: usize = 256 * 1024;

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    /// Subject of every message.
    pub subject: String,
    /// Payload size in bytes; the first 8 carry the sequence number.
    pub payload_len: usize,
    /// Number of messages.
    pub count: u64,
}

/// How receiver progress counters combine into "messages consumed".
#[derive(Debug, Clone, Copy)]
pub enum Combine {
    /// Every receiver gets every message (fan-out): progress is the slowest one.
    Slowest,
    /// Receivers share the messages (queue group): progress is the sum.
    Total,
}

/// Receivers that make no progress for this long are taken as dead (for
/// example disconnected as slow consumers); the gate then opens for good so
/// the run ends and reports the loss instead of hanging.
const STALLED_RECEIVERS: Duration = Duration::from_secs(5);

/// Bounds how far the publisher may run ahead of its receivers.
pub struct LagGate {
    counters: Vec<Arc<AtomicU64>>,
    combine: Combine,
    max_lag_msgs: u64,
    abandoned: Cell<bool>,
}

impl LagGate {
    /// A gate over receiver counters allowing `max_lag_msgs` in flight.
    pub fn new(counters: Vec<Arc<AtomicU64>>, combine: Combine, max_lag_msgs: u64) -> Self {
        Self {
            counters,
            combine,
            max_lag_msgs: max_lag_msgs.max(1),
            abandoned: Cell::new(false),
        }
    }

    /// The in-flight budget for a byte budget and a frame size.
    pub fn msgs_for_bytes(max_lag_bytes: u64, payload_len: usize) -> u64 {
        // ~40 bytes of MSG control line per delivered message.
        (max_lag_bytes / (payload_len as u64 + 40)).max(1)
    }

    fn consumed(&self) -> u64 {
        let values = self.counters.iter().map(|c| c.load(Ordering::Relaxed));
        match self.combine {
            Combine::Slowest => values.min().unwrap_or(u64::MAX),
            Combine::Total => values.sum(),
        }
    }

    /// Blocks until at most `max_lag_msgs` would be in flight once `next`
    /// more messages are sent after `sent`. Returns the time spent waiting.
    fn wait_for_room(&self, sent: u64, next: u64) -> Duration {
        let started = Instant::now();
        let (mut last_seen, mut last_progress) = (self.consumed(), started);
        while !self.abandoned.get() {
            let consumed = self.consumed();
            if (sent + next).saturating_sub(consumed) <= self.max_lag_msgs {
                break;
            }
            let now = Instant::now();
            if consumed != last_seen {
                (last_seen, last_progress) = (consumed, now);
            } else if now.duration_since(last_progress) > STALLED_RECEIVERS {
                self.abandoned.set(true);
            }
            // Sleeping (rather than spinning) leaves the CPU to the server and
            // the receivers on a 2-core machine; the budget is megabytes, so
            // the wake-up latency never starves the pipe.
            std::thread::sleep(Duration::from_micros(100));
        }
        started.elapsed()
    }
}

/// Timings of one publishing run.
#[derive(Debug, Clone)]
pub struct PublishReport {
    /// Just before the first byte was written.
    pub started: Instant,
    /// When the server answered the final PING: it has processed every PUB.
    pub flushed: Instant,
    /// Time spent held back by the lag gate.
    pub gated: Duration,
}

/// Publishes `plan.count` messages on `conn`, then round-trips a PING.
pub fn publish(
    conn: &mut ClientConn,
    plan: &PublishPlan,
    gate: Option<&LagGate>,
) -> Result<PublishReport, ProtoError> {
    let header = format!("PUB {} {}\r\n", plan.subject, plan.payload_len);
    let frame_len = header.len() + plan.payload_len + 2;
    let per_batch = (BATCH_BYTES / frame_len).max(1);
    let mut batch = Vec::with_capacity(per_batch * frame_len);
    for _ in 0..per_batch {
        batch.extend_from_slice(header.as_bytes());
        batch.resize(batch.len() + plan.payload_len, b'x');
        batch.extend_from_slice(b"\r\n");
    }

    let started = Instant::now();
    let mut gated = Duration::ZERO;
    let mut sent = 0u64;
    while sent < plan.count {
        let in_batch = (plan.count - sent).min(per_batch as u64) as usize;
        for i in 0..in_batch {
            let at = i * frame_len + header.len();
            stamp_sequence(&mut batch[at..at + plan.payload_len], sent + i as u64);
        }
        if let Some(gate) = gate {
            gated += gate.wait_for_room(sent, in_batch as u64);
        }
        conn.writer.write_all(&batch[..in_batch * frame_len])?;
        sent += in_batch as u64;
    }
    conn.flush()?;
    Ok(PublishReport {
        started,
        flushed: Instant::now(),
        gated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(values: &[u64]) -> Vec<Arc<AtomicU64>> {
        values
            .iter()
            .map(|v| Arc::new(AtomicU64::new(*v)))
            .collect()
    }

    #[test]
    fn fan_out_progress_is_the_slowest_and_queue_progress_the_sum() {
        let fan = LagGate::new(counters(&[10, 4, 7]), Combine::Slowest, 100);
        assert_eq!(fan.consumed(), 4);
        let queue = LagGate::new(counters(&[10, 4, 7]), Combine::Total, 100);
        assert_eq!(queue.consumed(), 21);
    }

    #[test]
    fn gate_lets_a_batch_through_within_budget() {
        let gate = LagGate::new(counters(&[1_000]), Combine::Slowest, 500);
        // 1,000 consumed, 1,400 sent + 100 more = 500 in flight: allowed.
        assert!(gate.wait_for_room(1_400, 100) < Duration::from_millis(50));
        assert!(!gate.abandoned.get());
    }

    #[test]
    fn lag_budget_in_messages_scales_with_payload() {
        assert_eq!(LagGate::msgs_for_bytes(5_600, 16), 100);
        assert!(LagGate::msgs_for_bytes(16 << 20, 1024) < LagGate::msgs_for_bytes(16 << 20, 16));
        assert_eq!(LagGate::msgs_for_bytes(0, 16), 1);
    }
}
