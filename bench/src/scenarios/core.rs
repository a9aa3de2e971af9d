//! Core messaging scenarios against a server without a config file.

use std::time::{Duration, Instant};

use crate::load::conns::open_idle;
use crate::load::publisher::{publish, Combine, LagGate, PublishPlan};
use crate::load::reqrep::{timed_requests, Responder};
use crate::load::subscriber::{exactly_once_check, SubEnd, SubscribePlan, Subscriber};
use crate::proto::{ClientConn, Credentials, DEFAULT_READ_BUFFER};
use crate::stats::percentile_sorted;

use super::{payload_label, Anomalies, Metric, RunContext, RunOutput, Scenario, ScenarioError};

/// What one publisher-to-subscribers run measured.
#[derive(Debug)]
pub struct Delivery {
    /// Messages published.
    pub published: u64,
    /// Messages received over all subscribers.
    pub received: u64,
    /// From the first byte published to the read holding the last message.
    pub elapsed: Duration,
    /// Server CPU time over the run.
    pub server_cpu: Duration,
    /// Losses, duplicates, disconnects.
    pub anomalies: Anomalies,
}

impl Delivery {
    /// Messages received per second.
    pub fn rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU microseconds per received message.
    pub fn cpu_us_per_msg(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.received.max(1) as f64
    }
}

/// How the subscribers of a [`deliver`] run share messages.
#[derive(Debug, Clone, Copy)]
pub enum Receivers {
    /// Each of n connections subscribes plainly: every one gets every message.
    FanOut(usize),
    /// n connections form one queue group: each message goes to exactly one.
    Queue(usize),
}

/// Publishes `count` messages of `payload` bytes to `subject` while the
/// `receivers` drain them; measures rate and server CPU.
pub fn deliver(
    ctx: &RunContext<'_>,
    pub_creds: &Credentials,
    sub_creds: &Credentials,
    subject: &str,
    payload: usize,
    count: u64,
    receivers: Receivers,
) -> Result<Delivery, ScenarioError> {
    let addr = ctx.server.addr();
    let (n, queue, combine, expected) = match receivers {
        Receivers::FanOut(n) => (n, None, Combine::Slowest, count * n as u64),
        Receivers::Queue(n) => (n, Some("workers".to_owned()), Combine::Total, count),
    };
    let plan = SubscribePlan {
        subject: subject.to_owned(),
        track_sequences: queue.is_some().then_some(count),
        queue,
        drain_bytes_per_sec: None,
    };
    let subscribers = (0..n)
        .map(|_| Subscriber::start(addr, sub_creds, &plan))
        .collect::<Result<Vec<_>, _>>()?;
    let mut publisher = ClientConn::connect(addr, pub_creds, DEFAULT_READ_BUFFER)?;
    let gate = (ctx.settings.max_lag_bytes > 0).then(|| {
        LagGate::new(
            subscribers.iter().map(Subscriber::counter).collect(),
            combine,
            LagGate::msgs_for_bytes(ctx.settings.max_lag_bytes, payload),
        )
    });
    let publish_plan = PublishPlan {
        subject: subject.to_owned(),
        payload_len: payload,
        count,
    };

    let cpu_before = ctx.server.cpu_time()?;
    let published = publish(&mut publisher, &publish_plan, gate.as_ref())?;
    let reports: Vec<_> = subscribers.into_iter().map(Subscriber::finish).collect();
    let server_cpu = ctx.server.cpu_time()?.saturating_sub(cpu_before);

    let received: u64 = reports.iter().map(|r| r.received).sum();
    let last = reports
        .iter()
        .filter_map(|r| r.last_msg_at)
        .max()
        .ok_or_else(|| ScenarioError::Invalid("no message was received".into()))?;
    let mut anomalies = Anomalies::default();
    for report in &reports {
        if report.end != SubEnd::Flushed {
            anomalies.slow_consumers += 1;
            anomalies
                .errors
                .push(format!("subscriber ended: {:?}", report.end));
        }
        anomalies.duplicates += report.duplicates;
        anomalies.errors.extend(report.errors.iter().cloned());
    }
    match receivers {
        Receivers::FanOut(_) => anomalies.lost = expected.saturating_sub(received),
        Receivers::Queue(_) => {
            let (missing, cross_duplicates) = exactly_once_check(&reports, count);
            anomalies.lost = missing;
            anomalies.duplicates += cross_duplicates;
        }
    }
    Ok(Delivery {
        published: count,
        received,
        elapsed: last.saturating_duration_since(published.started),
        server_cpu,
        anomalies,
    })
}

pub(crate) fn subject_for(kind: &str, ctx: &RunContext<'_>) -> String {
    format!("bench.{kind}.{}", ctx.run_id)
}

/// Scenario 1: one publisher, no subscribers.
pub struct PubOnly {
    /// Payload bytes.
    pub payload: usize,
}

impl Scenario for PubOnly {
    fn name(&self) -> String {
        format!("pub {}", payload_label(self.payload))
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let count = ctx.settings.msgs_for(self.payload);
        let mut conn = ClientConn::connect(
            ctx.server.addr(),
            &Credentials::default(),
            DEFAULT_READ_BUFFER,
        )?;
        let plan = PublishPlan {
            subject: subject_for("pub", ctx),
            payload_len: self.payload,
            count,
        };
        let cpu_before = ctx.server.cpu_time()?;
        let report = publish(&mut conn, &plan, None)?;
        let cpu = ctx.server.cpu_time()?.saturating_sub(cpu_before);
        let elapsed = report.flushed.saturating_duration_since(report.started);
        Ok(RunOutput {
            metrics: vec![
                Metric::higher("msgs/s", "msg/s", count as f64 / elapsed.as_secs_f64()),
                Metric::lower("CPU/msg", "µs", cpu.as_secs_f64() * 1e6 / count as f64),
            ],
            anomalies: Anomalies::default(),
        })
    }
}

/// Scenario 2: one publisher, one subscriber.
pub struct PubSub {
    /// Payload bytes.
    pub payload: usize,
}

impl Scenario for PubSub {
    fn name(&self) -> String {
        format!("pub→sub {}", payload_label(self.payload))
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let creds = Credentials::default();
        let count = ctx.settings.msgs_for(self.payload);
        let subject = subject_for("pubsub", ctx);
        let d = deliver(
            ctx,
            &creds,
            &creds,
            &subject,
            self.payload,
            count,
            Receivers::FanOut(1),
        )?;
        Ok(RunOutput {
            metrics: vec![
                Metric::higher("msgs/s", "msg/s", d.rate()),
                Metric::lower("CPU/msg", "µs", d.cpu_us_per_msg()),
            ],
            anomalies: d.anomalies,
        })
    }
}

/// Scenario 3: one publisher, n plain subscribers on separate connections.
pub struct FanOut {
    /// Payload bytes.
    pub payload: usize,
    /// Subscriber connections.
    pub subscribers: usize,
}

impl Scenario for FanOut {
    fn name(&self) -> String {
        format!(
            "fan-out 1→{} {}",
            self.subscribers,
            payload_label(self.payload)
        )
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let creds = Credentials::default();
        // Keep deliveries per run near twice the 1:1 count so a run takes
        // about as long as the others.
        let count =
            (ctx.settings.msgs_for(self.payload) * 2 / self.subscribers.max(1) as u64).max(1);
        let subject = subject_for("fanout", ctx);
        let receivers = Receivers::FanOut(self.subscribers);
        let d = deliver(
            ctx,
            &creds,
            &creds,
            &subject,
            self.payload,
            count,
            receivers,
        )?;
        Ok(RunOutput {
            metrics: vec![
                Metric::higher("deliveries/s", "msg/s", d.rate()),
                Metric::lower("CPU/delivery", "µs", d.cpu_us_per_msg()),
            ],
            anomalies: d.anomalies,
        })
    }
}

/// Scenario 4: one publisher, a queue group of n members.
pub struct QueueGroup {
    /// Payload bytes.
    pub payload: usize,
    /// Members (one connection each).
    pub members: usize,
}

impl Scenario for QueueGroup {
    fn name(&self) -> String {
        format!("queue ×{} {}", self.members, payload_label(self.payload))
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let creds = Credentials::default();
        let count = ctx.settings.msgs_for(self.payload);
        let subject = subject_for("queue", ctx);
        let receivers = Receivers::Queue(self.members);
        let d = deliver(
            ctx,
            &creds,
            &creds,
            &subject,
            self.payload,
            count,
            receivers,
        )?;
        Ok(RunOutput {
            metrics: vec![
                Metric::higher("msgs/s", "msg/s", d.rate()),
                Metric::lower("CPU/msg", "µs", d.cpu_us_per_msg()),
            ],
            anomalies: d.anomalies,
        })
    }
}

/// Scenario 5: sequential request/reply latency.
pub struct RequestReply {
    /// Payload bytes of requests and replies.
    pub payload: usize,
}

impl Scenario for RequestReply {
    fn name(&self) -> String {
        format!("req/reply {}", payload_label(self.payload))
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let creds = Credentials::default();
        let subject = subject_for("svc", ctx);
        let responder = Responder::start(ctx.server.addr(), &creds, &subject)?;
        let (warmup, count) = (ctx.settings.request_warmup, ctx.settings.requests);
        let cpu_before = ctx.server.cpu_time()?;
        let samples = timed_requests(
            ctx.server.addr(),
            &creds,
            &subject,
            self.payload,
            warmup,
            count,
        )?;
        let cpu = ctx.server.cpu_time()?.saturating_sub(cpu_before);
        let mut anomalies = Anomalies::default();
        if let Err(e) = responder.stop() {
            anomalies.errors.push(format!("responder: {e}"));
        }
        let micros = |p| percentile_sorted(&samples, p).map_or(f64::NAN, |ns| ns as f64 / 1e3);
        Ok(RunOutput {
            metrics: vec![
                Metric::lower("p50", "µs", micros(50.0)),
                Metric::lower("p99", "µs", micros(99.0)),
                Metric::lower(
                    "CPU/req",
                    "µs",
                    cpu.as_secs_f64() * 1e6 / (warmup + count) as f64,
                ),
            ],
            anomalies,
        })
    }
}

/// Scenario 6: resident memory per idle connection.
pub struct IdleConnections {
    /// Connections to open.
    pub count: usize,
}

impl Scenario for IdleConnections {
    fn name(&self) -> String {
        format!("idle conns ×{}", self.count)
    }

    fn fresh_server(&self) -> bool {
        true
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let creds = Credentials::default();
        // One connection first, so lazily built server state is in the baseline.
        let mut warm = ClientConn::connect(ctx.server.addr(), &creds, 4096)?;
        warm.flush()?;
        let rss_before = ctx.server.rss_kib()?;
        let started = Instant::now();
        let conns = open_idle(ctx.server.addr(), &creds, self.count)?;
        let elapsed = started.elapsed();
        let rss_after = ctx.server.rss_kib()?;
        drop(conns);
        let per_conn = rss_after.saturating_sub(rss_before) as f64 / self.count.max(1) as f64;
        Ok(RunOutput {
            metrics: vec![
                Metric::lower("RSS/conn", "KiB", per_conn),
                Metric::higher(
                    "connects/s",
                    "conn/s",
                    self.count as f64 / elapsed.as_secs_f64(),
                ),
            ],
            anomalies: Anomalies::default(),
        })
    }
}

/// One HTTP/1.0 GET; returns the bytes of the whole response.
fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<usize> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body)?;
    Ok(body.len())
}

/// A thread that GETs `/metrics` and `/connz` every `every` until stopped.
struct Scraper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, Vec<String>)>,
}

impl Scraper {
    fn start(addr: std::net::SocketAddr, every: Duration) -> Result<Self, ScenarioError> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("scraper".into())
            .spawn(move || {
                let (mut scrapes, mut errors) = (0u64, Vec::new());
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    for path in ["/metrics", "/connz"] {
                        match http_get(addr, path) {
                            Ok(_) => scrapes += 1,
                            Err(e) if errors.is_empty() => errors.push(format!("GET {path}: {e}")),
                            Err(_) => {}
                        }
                    }
                    // The scrape interval itself, not a synchronisation.
                    std::thread::sleep(every);
                }
                (scrapes, errors)
            })?;
        Ok(Self { stop, thread })
    }

    fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|_| (0, vec!["scraper thread panicked".into()]))
    }
}

/// 1:1 pub→sub while `/metrics` and `/connz` are scraped every 100 ms, against the same run
/// without scraping on the same (monitored) server: the cost of being watched.
pub struct ScrapedPubSub {
    /// Payload bytes.
    pub payload: usize,
}

impl Scenario for ScrapedPubSub {
    fn name(&self) -> String {
        format!("pub→sub {} + scrape", payload_label(self.payload))
    }

    fn setup(&self) -> super::ServerSetup {
        super::ServerSetup::Monitored
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let http = ctx
            .server
            .http_addr()
            .ok_or_else(|| ScenarioError::Invalid("server has no monitoring port".into()))?;
        let creds = Credentials::default();
        let count = ctx.settings.msgs_for(self.payload);
        let one = |tag: &str| {
            deliver(
                ctx,
                &creds,
                &creds,
                &subject_for(tag, ctx),
                self.payload,
                count,
                Receivers::FanOut(1),
            )
        };
        let plain = one("plain")?;
        let scraper = Scraper::start(http, Duration::from_millis(100))?;
        let scraped = one("scraped");
        let (scrapes, errors) = scraper.stop();
        let scraped = scraped?;
        let (rate, ratio, cpu) = (
            scraped.rate(),
            scraped.rate() / plain.rate(),
            scraped.cpu_us_per_msg(),
        );
        let mut anomalies = plain.anomalies;
        anomalies.absorb(scraped.anomalies);
        anomalies.errors.extend(errors);
        if scrapes == 0 {
            anomalies.errors.push("no scrape completed".into());
        }
        Ok(RunOutput {
            metrics: vec![
                Metric::higher("msgs/s", "msg/s", rate),
                Metric::higher("scraped/plain", "×", ratio),
                Metric::lower("CPU/msg", "µs", cpu),
            ],
            anomalies,
        })
    }
}
