//! Benchmark scenarios. Each implements [`Scenario`]; [`catalog`] lists the
//! ones a comparison runs, in order.
//!
//! Adding a scenario: implement [`Scenario`] (pick a [`ServerSetup`], return
//! [`Metric`]s with a unit and a direction), and push it in [`catalog`]. The
//! runner handles rounds, alternation between servers, medians and output.
//! JetStream scenarios are in [`jetstream`].

pub mod auth;
pub mod core;
pub mod flow;
pub mod jetstream;

use serde::Serialize;
use thiserror::Error;

use crate::proto::ProtoError;
use crate::server::{ServerError, ServerProcess};

pub use self::auth::AuthFixture;

/// Payload sizes every throughput scenario runs at.
pub const PAYLOADS: [usize; 2] = [16, 1024];

/// Configuration a scenario needs from the server it runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerSetup {
    /// No config file.
    Plain,
    /// The users of [`AuthFixture`] (bcrypt user, open user, restricted user, NKEY user).
    Auth,
    /// JetStream enabled with its store under the server's work directory
    /// (the scenarios in [`jetstream`]).
    JetStream,
    /// HTTP monitoring on (`-m <port>`), for runs that scrape it.
    Monitored,
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Throughput-like.
    Higher,
    /// Cost- or latency-like.
    Lower,
}

/// One figure from one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// Short name, unique within the scenario ("msgs/s", "p99").
    pub name: &'static str,
    /// Unit shown next to values.
    pub unit: &'static str,
    /// Direction of improvement.
    pub better: Better,
    /// The value.
    pub value: f64,
}

impl Metric {
    /// A higher-is-better metric.
    pub fn higher(name: &'static str, unit: &'static str, value: f64) -> Self {
        Self {
            name,
            unit,
            better: Better::Higher,
            value,
        }
    }

    /// A lower-is-better metric.
    pub fn lower(name: &'static str, unit: &'static str, value: f64) -> Self {
        Self {
            name,
            unit,
            better: Better::Lower,
            value,
        }
    }
}

/// Things that went wrong without aborting a run; they cast doubt on its figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Anomalies {
    /// Subscriber connections closed or failed before their final PONG
    /// (slow-consumer disconnects show up here).
    pub slow_consumers: u64,
    /// Messages expected but never received.
    pub lost: u64,
    /// Messages received more than once (queue groups).
    pub duplicates: u64,
    /// `-ERR` texts and reader failures.
    pub errors: Vec<String>,
}

impl Anomalies {
    /// True if nothing went wrong.
    pub fn is_clean(&self) -> bool {
        self.slow_consumers == 0 && self.lost == 0 && self.duplicates == 0 && self.errors.is_empty()
    }

    /// Adds `other` into `self`.
    pub fn absorb(&mut self, other: Anomalies) {
        self.slow_consumers += other.slow_consumers;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.errors.extend(other.errors);
    }
}

/// The result of one scenario run against one server.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// Figures, in display order.
    pub metrics: Vec<Metric>,
    /// What went wrong along the way.
    pub anomalies: Anomalies,
}

/// Why a run produced no figures.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// Talking to the server failed.
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// The server itself failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A thread could not be started.
    #[error("spawn thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The run finished but its result is unusable.
    #[error("{0}")]
    Invalid(String),
    /// A planned scenario that has no implementation yet.
    #[error("scenario {0} is not implemented yet")]
    NotImplemented(String),
}

/// Message counts and limits shared by all scenarios.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Messages per run at payloads up to 256 bytes.
    pub small_msgs: u64,
    /// Messages per run at larger payloads.
    pub large_msgs: u64,
    /// Subscriber connections in the fan-out scenario.
    pub fanout_subs: usize,
    /// Members of the queue group scenario.
    pub queue_members: usize,
    /// Timed requests per request/reply run.
    pub requests: u64,
    /// Untimed requests before them.
    pub request_warmup: u64,
    /// Connections held open for the RSS scenario.
    pub idle_conns: usize,
    /// Sequential authenticated connects in the reconnect storm.
    pub storm_connects: usize,
    /// How far (bytes of deliveries) publishers may run ahead of subscribers.
    pub max_lag_bytes: u64,
}

impl Settings {
    /// Defaults for a full run.
    pub fn full() -> Self {
        Self {
            small_msgs: 2_000_000,
            large_msgs: 200_000,
            fanout_subs: 5,
            queue_members: 4,
            requests: 10_000,
            request_warmup: 500,
            idle_conns: 2_000,
            storm_connects: 500,
            max_lag_bytes: 16 * 1024 * 1024,
        }
    }

    /// Reduced counts for `--quick`.
    pub fn quick() -> Self {
        Self {
            small_msgs: 800_000,
            large_msgs: 80_000,
            requests: 5_000,
            request_warmup: 200,
            storm_connects: 50,
            ..Self::full()
        }
    }

    /// Messages per run for a payload size.
    pub fn msgs_for(&self, payload_len: usize) -> u64 {
        if payload_len <= 256 {
            self.small_msgs
        } else {
            self.large_msgs
        }
    }
}

/// What a run gets to work with.
pub struct RunContext<'a> {
    /// The server under test, ready.
    pub server: &'a ServerProcess,
    /// Counts and limits.
    pub settings: &'a Settings,
    /// Users and passwords of the [`ServerSetup::Auth`] config.
    pub auth: &'a AuthFixture,
    /// Distinct per run, for subjects that must not collide with leftovers
    /// of earlier runs.
    pub run_id: u64,
}

/// A benchmark scenario.
pub trait Scenario {
    /// Display name, unique in the catalog ("pub 16B").
    fn name(&self) -> String;

    /// Server configuration required.
    fn setup(&self) -> ServerSetup {
        ServerSetup::Plain
    }

    /// True if each run needs a newly started server (memory measurements).
    fn fresh_server(&self) -> bool {
        false
    }

    /// Runs once against `ctx.server`.
    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError>;
}

/// The scenarios of a comparison, in run order.
pub fn catalog(settings: &Settings) -> Vec<Box<dyn Scenario>> {
    use self::core::{FanOut, IdleConnections, PubOnly, PubSub, QueueGroup, RequestReply};
    let mut list: Vec<Box<dyn Scenario>> = Vec::new();
    for payload in PAYLOADS {
        list.push(Box::new(PubOnly { payload }));
    }
    for payload in PAYLOADS {
        list.push(Box::new(PubSub { payload }));
    }
    for payload in PAYLOADS {
        list.push(Box::new(FanOut {
            payload,
            subscribers: settings.fanout_subs,
        }));
    }
    for payload in PAYLOADS {
        list.push(Box::new(QueueGroup {
            payload,
            members: settings.queue_members,
        }));
    }
    for payload in PAYLOADS {
        list.push(Box::new(RequestReply { payload }));
    }
    list.push(Box::new(IdleConnections {
        count: settings.idle_conns,
    }));
    list.push(Box::new(auth::ConnectStorm {
        connects: settings.storm_connects,
    }));
    list.push(Box::new(auth::NkeyConnectStorm {
        connects: settings.storm_connects,
    }));
    list.push(Box::new(auth::PermissionsPubSub { payload: 16 }));
    list.push(Box::new(self::core::ScrapedPubSub { payload: 16 }));
    list.push(Box::new(flow::SlowSubscriber { payload: 1024 }));
    list.push(Box::new(flow::StuckPlusLive { payload: 1024 }));
    for scenario in jetstream::JetStreamScenario::ALL {
        list.push(Box::new(scenario));
    }
    list
}

/// Human-readable payload size ("16B", "1KiB").
pub fn payload_label(payload: usize) -> String {
    if payload >= 1024 && payload.is_multiple_of(1024) {
        format!("{}KiB", payload / 1024)
    } else {
        format!("{payload}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_are_unique() {
        let list = catalog(&Settings::full());
        let mut names: Vec<String> = list.iter().map(|s| s.name()).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
        assert!(names.iter().any(|n| n == "pub 16B"));
    }

    #[test]
    fn payload_labels() {
        assert_eq!(payload_label(16), "16B");
        assert_eq!(payload_label(1024), "1KiB");
        assert_eq!(payload_label(1500), "1500B");
    }
}
