//! Runs scenarios in rounds, alternating which server goes first, and keeps
//! one server per (kind, setup) alive across runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::report::{Results, ScenarioResults};
use crate::scenarios::{AuthFixture, RunContext, Scenario, ServerSetup, Settings};
use testkit::ServerSpec;

use crate::server::{ServerError, ServerKind, ServerProcess};

/// Paths of the two server binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// natsd.
    pub natsd: PathBuf,
    /// nats-server.
    pub nats_server: PathBuf,
}

impl Binaries {
    /// The binary for `kind`.
    pub fn path(&self, kind: ServerKind) -> &Path {
        match kind {
            ServerKind::Natsd => &self.natsd,
            ServerKind::NatsServer => &self.nats_server,
        }
    }
}

/// Orchestrates a comparison.
pub struct Runner<'a> {
    binaries: &'a Binaries,
    settings: &'a Settings,
    auth: &'a AuthFixture,
    pool: HashMap<(ServerKind, ServerSetup), ServerProcess>,
    broken: HashMap<(ServerKind, ServerSetup), String>,
    next_run_id: u64,
}

impl<'a> Runner<'a> {
    /// A runner with no servers started yet.
    pub fn new(binaries: &'a Binaries, settings: &'a Settings, auth: &'a AuthFixture) -> Self {
        Self {
            binaries,
            settings,
            auth,
            pool: HashMap::new(),
            broken: HashMap::new(),
            next_run_id: 0,
        }
    }

    /// Runs every scenario for `rounds` rounds against both servers. Within a
    /// round both servers run back to back, the first one alternating, so
    /// slow drifts of machine load hit both alike. `progress` receives one
    /// line per run.
    pub fn compare(
        &mut self,
        scenarios: &[Box<dyn Scenario>],
        rounds: usize,
        progress: &mut dyn FnMut(&str),
    ) -> Results {
        let mut results = Results::default();
        for scenario in scenarios {
            let mut outcome = ScenarioResults::new(scenario.name());
            for round in 0..rounds {
                let order = if round % 2 == 0 {
                    ServerKind::BOTH
                } else {
                    [ServerKind::NatsServer, ServerKind::Natsd]
                };
                for kind in order {
                    if !outcome.of(kind).errors.is_empty() {
                        continue;
                    }
                    let line = match self.run_once(scenario.as_ref(), kind) {
                        Ok(output) => {
                            let summary = output
                                .metrics
                                .iter()
                                .map(|m| format!("{} {:.3} {}", m.name, m.value, m.unit))
                                .collect::<Vec<_>>()
                                .join(", ");
                            let flag = if output.anomalies.is_clean() {
                                ""
                            } else {
                                "  [anomalies]"
                            };
                            outcome.record(kind, output);
                            format!("{summary}{flag}")
                        }
                        Err(error) => {
                            let text = error.to_string();
                            outcome.record_error(kind, text.clone());
                            format!("ERROR: {text}")
                        }
                    };
                    progress(&format!(
                        "[{}] round {}/{} {}: {line}",
                        scenario.name(),
                        round + 1,
                        rounds,
                        kind.label()
                    ));
                }
            }
            results.scenarios.push(outcome);
        }
        self.pool.clear();
        results
    }

    fn run_once(
        &mut self,
        scenario: &dyn Scenario,
        kind: ServerKind,
    ) -> Result<crate::scenarios::RunOutput, String> {
        let setup = scenario.setup();
        self.next_run_id += 1;
        let run_id = self.next_run_id;
        if scenario.fresh_server() {
            let server = self.start(kind, setup).map_err(|e| e.to_string())?;
            return self.run_on(scenario, &server, run_id);
        }
        let key = (kind, setup);
        if let Some(server) = self.pool.get_mut(&key) {
            if server.check_running().is_err() {
                self.pool.remove(&key);
            }
        }
        if !self.pool.contains_key(&key) {
            if let Some(reason) = self.broken.get(&key) {
                return Err(format!("server did not start earlier: {reason}"));
            }
            match self.start(kind, setup) {
                Ok(server) => {
                    self.pool.insert(key, server);
                }
                Err(e) => {
                    self.broken.insert(key, e.to_string());
                    return Err(e.to_string());
                }
            }
        }
        let server = self
            .pool
            .get(&key)
            .ok_or_else(|| "server vanished from pool".to_string())?;
        let result = self.run_on(scenario, server, run_id);
        if result.is_err() {
            // A failed run may leave the server wedged; the next run gets a new one.
            self.pool.remove(&key);
        }
        result
    }

    fn run_on(
        &self,
        scenario: &dyn Scenario,
        server: &ServerProcess,
        run_id: u64,
    ) -> Result<crate::scenarios::RunOutput, String> {
        let ctx = RunContext {
            server,
            settings: self.settings,
            auth: self.auth,
            run_id,
        };
        scenario.run(&ctx).map_err(|e| e.to_string())
    }

    fn start(&self, kind: ServerKind, setup: ServerSetup) -> Result<ServerProcess, ServerError> {
        let spec = match setup {
            ServerSetup::Plain => ServerSpec::new(),
            ServerSetup::Auth => ServerSpec::new().config(&self.auth.config()),
            ServerSetup::JetStream => ServerSpec::new().jetstream(),
            ServerSetup::Monitored => ServerSpec::new().monitor(),
        };
        ServerProcess::start(kind, self.binaries.path(kind), spec)
    }
}
