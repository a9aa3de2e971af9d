//! Planned JetStream scenarios (extension point; not run yet).
//!
//! Each variant will run against [`ServerSetup::JetStream`], which starts the
//! server with `-js -sd <workdir>/js`:
//!
//! * `js_pub`: sequential `PUB` with reply inbox to a file stream, waiting
//!   for each ack (acks/s, p50/p99).
//! * `js_pub_256`: the same with 256 publishes in flight.
//! * `js_consume`: drain a pre-filled stream through a pull consumer (msgs/s).
//! * `kv_put_get`: KV bucket put then get, sequential (ops/s, p99).
//! * `js_recovery`: stop the server with N stored messages and time the
//!   restart until INFO is sent again (seconds).
//!
//! To implement one, add its `run` arm and push the variant in
//! [`super::catalog`].

use super::{RunContext, RunOutput, Scenario, ScenarioError, ServerSetup};

/// The JetStream scenarios planned for the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JetStreamScenario {
    /// Sequential publishes, each waiting for its ack.
    PubSequential,
    /// Publishes with this many acks outstanding.
    PubInFlight(usize),
    /// Pull-consumer drain of a filled stream.
    Consume,
    /// KV put then get.
    KvPutGet,
    /// Restart time with a filled store.
    Recovery,
}

impl JetStreamScenario {
    /// All planned variants.
    pub const PLANNED: [JetStreamScenario; 5] = [
        JetStreamScenario::PubSequential,
        JetStreamScenario::PubInFlight(256),
        JetStreamScenario::Consume,
        JetStreamScenario::KvPutGet,
        JetStreamScenario::Recovery,
    ];
}

impl Scenario for JetStreamScenario {
    fn name(&self) -> String {
        match self {
            JetStreamScenario::PubSequential => "js_pub".into(),
            JetStreamScenario::PubInFlight(n) => format!("js_pub_{n}"),
            JetStreamScenario::Consume => "js_consume".into(),
            JetStreamScenario::KvPutGet => "kv_put_get".into(),
            JetStreamScenario::Recovery => "js_recovery".into(),
        }
    }

    fn setup(&self) -> ServerSetup {
        ServerSetup::JetStream
    }

    fn fresh_server(&self) -> bool {
        matches!(self, JetStreamScenario::Recovery)
    }

    fn run(&self, _ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        Err(ScenarioError::NotImplemented(self.name()))
    }
}
