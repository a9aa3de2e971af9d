//! Flow control: a publisher faster than (one of) its subscribers, with no lag gate. nats-server
//! holds such a publisher back ("stalls" it) rather than cutting off a subscriber that keeps
//! reading; natsd does the same, and stops holding back for a subscriber that has stopped.

use crate::load::publisher::{publish, PublishPlan};
use crate::load::subscriber::{SubEnd, SubscribePlan, Subscriber};
use crate::proto::{ClientConn, Credentials, DEFAULT_READ_BUFFER};

use super::core::subject_for;
use super::{payload_label, Anomalies, Metric, RunContext, RunOutput, Scenario, ScenarioError};

/// The slow subscriber's drain rate: about a quarter of what a publisher pushes through
/// either server at 1 KiB on this machine kind (a Python worker behind a Rust producer).
const SLOW_DRAIN_BYTES_PER_SEC: u64 = 200 * 1024 * 1024;

/// Messages per run: several times the 64 MiB `max_pending`, so a server that neither holds
/// the publisher back nor cuts the subscriber off would need far more memory.
fn flood_count(ctx: &RunContext<'_>, payload: usize) -> u64 {
    let bytes = ctx.settings.msgs_for(payload) * payload as u64 * 2;
    (bytes.max(256 << 20) / payload as u64).max(1)
}

/// What a flood run measured.
struct Flood {
    published: u64,
    publisher_rate: f64,
    delivered_percent: f64,
    anomalies: Anomalies,
}

/// Publishes `count` messages flat out (no lag gate) and times it up to the final PONG.
fn flood(
    ctx: &RunContext<'_>,
    subject: &str,
    payload: usize,
    count: u64,
) -> Result<Flood, ScenarioError> {
    let mut publisher = ClientConn::connect(
        ctx.server.addr(),
        &Credentials::default(),
        DEFAULT_READ_BUFFER,
    )?;
    let plan = PublishPlan {
        subject: subject.to_owned(),
        payload_len: payload,
        count,
    };
    let report = publish(&mut publisher, &plan, None)?;
    let elapsed = report.flushed.saturating_duration_since(report.started);
    Ok(Flood {
        published: count,
        publisher_rate: count as f64 / elapsed.as_secs_f64(),
        delivered_percent: 0.0,
        anomalies: Anomalies::default(),
    })
}

/// Fills in what the subscriber got once it has read everything queued for it.
fn settle(mut run: Flood, subscriber: Subscriber) -> Flood {
    let report = subscriber.finish();
    run.delivered_percent = report.received as f64 * 100.0 / run.published.max(1) as f64;
    run.anomalies.lost = run.published.saturating_sub(report.received);
    if report.end != SubEnd::Flushed {
        run.anomalies.slow_consumers += 1;
        run.anomalies
            .errors
            .push(format!("subscriber ended: {:?}", report.end));
    }
    run.anomalies.errors.extend(report.errors);
    run
}

fn metrics(run: &Flood, delivered: &'static str) -> Vec<Metric> {
    vec![
        Metric::higher(delivered, "%", run.delivered_percent),
        Metric::higher("pub msgs/s", "msg/s", run.publisher_rate),
    ]
}

/// (a) One subscriber that drains at a quarter of the publisher's speed, and keeps draining.
pub struct SlowSubscriber {
    /// Payload bytes.
    pub payload: usize,
}

impl Scenario for SlowSubscriber {
    fn name(&self) -> String {
        format!("slow_sub {}", payload_label(self.payload))
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let subject = subject_for("slow", ctx);
        let count = flood_count(ctx, self.payload);
        let subscriber = Subscriber::start(
            ctx.server.addr(),
            &Credentials::default(),
            &SubscribePlan {
                subject: subject.clone(),
                queue: None,
                track_sequences: None,
                drain_bytes_per_sec: Some(SLOW_DRAIN_BYTES_PER_SEC),
            },
        )?;
        let run = flood(ctx, &subject, self.payload, count)?;
        let run = settle(run, subscriber);
        Ok(RunOutput {
            metrics: metrics(&run, "delivered"),
            anomalies: run.anomalies,
        })
    }
}

/// (b) One subscriber that never reads, plus one live subscriber at full speed. The stuck one
/// is expected to be cut off; what counts is that the live one gets everything, and how fast
/// the publisher gets to publish meanwhile.
pub struct StuckPlusLive {
    /// Payload bytes.
    pub payload: usize,
}

impl Scenario for StuckPlusLive {
    fn name(&self) -> String {
        format!("stuck_plus_live {}", payload_label(self.payload))
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let subject = subject_for("stuck", ctx);
        let count = flood_count(ctx, self.payload);
        // Subscribed, and never read again.
        let mut stuck = ClientConn::connect(
            ctx.server.addr(),
            &Credentials::default(),
            DEFAULT_READ_BUFFER,
        )?;
        stuck.subscribe(&subject, None, 1)?;
        let live = Subscriber::start(
            ctx.server.addr(),
            &Credentials::default(),
            &SubscribePlan {
                subject: subject.clone(),
                queue: None,
                track_sequences: None,
                drain_bytes_per_sec: None,
            },
        )?;
        let run = flood(ctx, &subject, self.payload, count)?;
        let run = settle(run, live);
        // Keep the stuck connection open (unread) until the live one has everything.
        drop(stuck);
        Ok(RunOutput {
            metrics: metrics(&run, "live delivered"),
            anomalies: run.anomalies,
        })
    }
}
