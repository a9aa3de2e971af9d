//! Delivery pacing, as nats-server paces a consumer's deliveries:
//!
//! - `replay_policy: original`: until the consumer has caught up with what the stream held
//!   when it started, each message waits as long after the previous delivery as it was stored
//!   after the previous message (gaps of a millisecond or less are not waited for).
//! - `rate_limit_bps` (push consumers): a token bucket of `rate_limit_bps / 8` bytes a second,
//!   as deep as the largest message: 1 MiB, nats-server's default `max_payload` (nats-server
//!   uses the stream's `max_msg_size` or the account's `max_payload` when set).
//!
//! No I/O: the caller passes the time and asks [`Pacing::ready`] before each delivery; when
//! that says no, [`Pacing::wake`] tells when to ask again.

use super::config::{ConsumerConfig, ReplayPolicy};

/// Gaps nats-server does not wait for when replaying, ns.
const REPLAY_MIN_GAP: u64 = 1_000_000;
/// Bucket depth: the default `max_payload`.
const BURST: u64 = 1024 * 1024;

#[derive(Debug, Default)]
pub(super) struct Pacing {
    replay: Option<Replay>,
    rate: Option<TokenBucket>,
    /// When a held-back delivery may go, ns.
    wake: Option<u64>,
}

#[derive(Debug, Default)]
struct Replay {
    /// The stream's last sequence when replay began (learnt at the first delivery).
    until_seq: Option<u64>,
    /// Stored time of the last message delivered, ns (0 before the first).
    last_ts: u64,
    /// When it was delivered, ns.
    last_at: u64,
}

#[derive(Debug)]
struct TokenBucket {
    bytes_per_sec: u64,
    burst: u64,
    tokens: f64,
    last: u64,
}

impl Pacing {
    /// Pacing for `config`.
    pub(super) fn new(config: &ConsumerConfig) -> Pacing {
        let replay = (config.replay_policy == ReplayPolicy::Original).then(Replay::default);
        let rate = (config.rate_limit_bps >= 8).then_some(TokenBucket {
            bytes_per_sec: config.rate_limit_bps / 8,
            burst: BURST,
            tokens: BURST as f64,
            last: 0,
        });
        Pacing {
            replay,
            rate,
            wake: None,
        }
    }

    /// May the message with stream sequence `seq`, stored at `ts`, of `size` bytes, go out
    /// `now`? `last_seq` is the stream's last sequence (asked once, when replay begins).
    pub(super) fn ready(
        &mut self,
        seq: u64,
        ts: u64,
        size: u64,
        now: u64,
        last_seq: impl FnOnce() -> u64,
    ) -> bool {
        self.wake = None;
        if let Some(r) = &mut self.replay {
            let until = *r.until_seq.get_or_insert_with(last_seq);
            if seq > until {
                self.replay = None;
            } else if r.last_ts > 0 {
                let gap = ts.saturating_sub(r.last_ts);
                let due = r.last_at.saturating_add(gap);
                if gap > REPLAY_MIN_GAP && now < due {
                    self.wake = Some(due);
                    return false;
                }
            }
        }
        if let Some(b) = &mut self.rate {
            let rate = b.bytes_per_sec as f64 / 1e9;
            let elapsed = now.saturating_sub(b.last) as f64;
            b.tokens = (b.tokens + elapsed * rate).min(b.burst as f64);
            b.last = now;
            // A message larger than the bucket goes once the bucket is full.
            let need = (size as f64).min(b.burst as f64);
            if b.tokens < need {
                self.wake = Some(now + ((need - b.tokens) / rate).ceil() as u64);
                return false;
            }
            b.tokens -= size as f64;
        }
        true
    }

    /// The message stored at `ts` went out `now`.
    pub(super) fn delivered(&mut self, ts: u64, now: u64) {
        if let Some(r) = &mut self.replay {
            r.last_ts = ts;
            r.last_at = now;
        }
    }

    /// When a held-back delivery may go.
    pub(super) fn wake(&self) -> Option<u64> {
        self.wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn replay_original_keeps_the_gaps_until_caught_up() {
        let cfg = ConsumerConfig {
            replay_policy: ReplayPolicy::Original,
            ..Default::default()
        };
        let mut p = Pacing::new(&cfg);
        assert!(p.ready(1, 1000 * MS, 10, 5000 * MS, || 3));
        p.delivered(1000 * MS, 5000 * MS);
        // Stored 200 ms after the first: not before 200 ms after its delivery.
        assert!(!p.ready(2, 1200 * MS, 10, 5100 * MS, || 3));
        assert_eq!(p.wake(), Some(5200 * MS));
        assert!(p.ready(2, 1200 * MS, 10, 5200 * MS, || 3));
        p.delivered(1200 * MS, 5200 * MS);
        // Past what the stream held at the start: instant again.
        assert!(p.ready(4, 9000 * MS, 10, 5200 * MS, || 3));
    }

    #[test]
    fn rate_limit_spends_and_refills_its_bucket() {
        let cfg = ConsumerConfig {
            rate_limit_bps: 8_000,
            ..Default::default()
        };
        // 1000 bytes a second, 1 MiB deep.
        let mut p = Pacing::new(&cfg);
        assert!(p.ready(1, 0, BURST - 500, 0, || 0));
        assert!(!p.ready(2, 0, 1000, 0, || 0));
        assert_eq!(p.wake(), Some(500 * MS));
        assert!(p.ready(2, 0, 1000, 500 * MS, || 0));
    }
}
