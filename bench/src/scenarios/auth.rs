//! Scenarios for the tenancy work: bcrypt and NKEY reconnect storms and the cost of
//! permission checks on the message path.

use crate::load::conns::connect_storm;
use crate::proto::Credentials;

use super::core::{deliver, Receivers};
use super::{
    payload_label, Anomalies, Metric, RunContext, RunOutput, Scenario, ScenarioError, ServerSetup,
};

/// bcrypt cost of the storm user's hash, as `nats server passwd` produces.
const BCRYPT_COST: u32 = 11;

/// Ten allow patterns; the bench subject matches only the last one, so a
/// server that scans the list linearly pays for all ten.
const ALLOW_PATTERNS: [&str; 10] = [
    "app.orders.*",
    "app.billing.>",
    "tenant.a.>",
    "tenant.b.*.events",
    "metrics.>",
    "logs.*.error",
    "svc.*.req",
    "_INBOX.>",
    "bench.other.*",
    "bench.perm.>",
];

/// The users of the [`ServerSetup::Auth`] configuration.
#[derive(Debug, Clone)]
pub struct AuthFixture {
    /// User authenticated by a `$2a$11$` bcrypt hash.
    pub storm: Credentials,
    storm_hash: String,
    /// Plain-password user without permissions.
    pub open: Credentials,
    /// Plain-password user with ten publish and ten subscribe allow patterns.
    pub limited: Credentials,
    /// NKEY user: each login is one ed25519 signature check of the connection's nonce.
    pub nkey: Credentials,
}

impl AuthFixture {
    /// Hashes the storm password (takes a fraction of a second).
    pub fn generate() -> Result<Self, bcrypt::BcryptError> {
        let storm_pass = "storm-secret-password";
        let storm_hash = bcrypt::hash_with_result(storm_pass, BCRYPT_COST)?
            .format_for_version(bcrypt::Version::TwoA);
        Ok(Self {
            storm: Credentials::user_pass("storm", storm_pass),
            storm_hash,
            open: Credentials::user_pass("open", "open-password"),
            limited: Credentials::user_pass("limited", "limited-password"),
            nkey: Credentials::new_nkey_user(),
        })
    }

    /// The server config file text.
    pub fn config(&self) -> String {
        let patterns = ALLOW_PATTERNS
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let pass = |c: &Credentials| c.pass.clone().unwrap_or_default();
        let nkey = self
            .nkey
            .nkey
            .as_ref()
            .map(|k| k.public_key())
            .unwrap_or_default();
        format!(
            "authorization {{\n  users: [\n    \
             {{ user: storm, password: \"{storm_hash}\" }}\n    \
             {{ nkey: {nkey} }}\n    \
             {{ user: open, password: \"{open}\" }}\n    \
             {{ user: limited, password: \"{limited}\", permissions: {{\n      \
             publish: {{ allow: [{patterns}] }}\n      \
             subscribe: {{ allow: [{patterns}] }}\n    }} }}\n  ]\n}}\n",
            storm_hash = self.storm_hash,
            open = pass(&self.open),
            limited = pass(&self.limited),
        )
    }
}

/// Scenario 7a: sequential connects of a bcrypt-authenticated user.
pub struct ConnectStorm {
    /// Connects per run.
    pub connects: usize,
}

impl Scenario for ConnectStorm {
    fn name(&self) -> String {
        format!("bcrypt connects ×{}", self.connects)
    }

    fn setup(&self) -> ServerSetup {
        ServerSetup::Auth
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let cpu_before = ctx.server.cpu_time()?;
        let elapsed = connect_storm(ctx.server.addr(), &ctx.auth.storm, self.connects)?;
        let cpu = ctx.server.cpu_time()?.saturating_sub(cpu_before);
        let n = self.connects.max(1) as f64;
        Ok(RunOutput {
            metrics: vec![
                Metric::higher("connects/s", "conn/s", n / elapsed.as_secs_f64()),
                Metric::lower("CPU/connect", "µs", cpu.as_secs_f64() * 1e6 / n),
            ],
            anomalies: Anomalies::default(),
        })
    }
}

/// Scenario 7c: sequential connects of an NKEY user; each costs the server one signature
/// check of the nonce it sent (and the bench client one signature).
pub struct NkeyConnectStorm {
    /// Connects per run.
    pub connects: usize,
}

impl Scenario for NkeyConnectStorm {
    fn name(&self) -> String {
        format!("nkey connects ×{}", self.connects)
    }

    fn setup(&self) -> ServerSetup {
        ServerSetup::Auth
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let cpu_before = ctx.server.cpu_time()?;
        let elapsed = connect_storm(ctx.server.addr(), &ctx.auth.nkey, self.connects)?;
        let cpu = ctx.server.cpu_time()?.saturating_sub(cpu_before);
        let n = self.connects.max(1) as f64;
        Ok(RunOutput {
            metrics: vec![
                Metric::higher("sig checks/s", "conn/s", n / elapsed.as_secs_f64()),
                Metric::lower("CPU/connect", "µs", cpu.as_secs_f64() * 1e6 / n),
            ],
            anomalies: Anomalies::default(),
        })
    }
}

/// Scenario 7b: 1:1 pub/sub as a user with ten allow patterns each way,
/// against the same run as an unrestricted user.
pub struct PermissionsPubSub {
    /// Payload bytes.
    pub payload: usize,
}

impl Scenario for PermissionsPubSub {
    fn name(&self) -> String {
        format!("perms pub→sub {}", payload_label(self.payload))
    }

    fn setup(&self) -> ServerSetup {
        ServerSetup::Auth
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<RunOutput, ScenarioError> {
        let count = ctx.settings.msgs_for(self.payload);
        let subject = format!("bench.perm.{}", ctx.run_id);
        let one = Receivers::FanOut(1);
        let run =
            |creds: &Credentials| deliver(ctx, creds, creds, &subject, self.payload, count, one);
        // The second run on a server tends to differ from the first: alternate which goes
        // first so the ratio carries no order bias.
        let (open, limited) = if ctx.run_id.is_multiple_of(2) {
            let open = run(&ctx.auth.open)?;
            (open, run(&ctx.auth.limited)?)
        } else {
            let limited = run(&ctx.auth.limited)?;
            (run(&ctx.auth.open)?, limited)
        };
        let mut anomalies = open.anomalies.clone();
        anomalies.absorb(limited.anomalies.clone());
        Ok(RunOutput {
            metrics: vec![
                Metric::higher("msgs/s limited", "msg/s", limited.rate()),
                Metric::higher("msgs/s open", "msg/s", open.rate()),
                Metric::higher("limited/open", "×", limited.rate() / open.rate()),
                Metric::lower("CPU/msg limited", "µs", limited.cpu_us_per_msg()),
                Metric::lower("CPU/msg open", "µs", open.cpu_us_per_msg()),
            ],
            anomalies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_bcrypt_2a_hash_and_ten_patterns() {
        let fixture = AuthFixture {
            storm: Credentials::user_pass("storm", "x"),
            storm_hash: "$2a$11$abcdefghijklmnopqrstuv".into(),
            open: Credentials::user_pass("open", "o"),
            limited: Credentials::user_pass("limited", "l"),
            nkey: Credentials::new_nkey_user(),
        };
        let conf = fixture.config();
        assert!(conf.contains("password: \"$2a$11$abcdefghijklmnopqrstuv\""));
        assert_eq!(conf.matches("\"bench.perm.>\"").count(), 2);
        assert_eq!(conf.matches("\"app.orders.*\"").count(), 2);
        let key = fixture.nkey.nkey.as_ref().unwrap().public_key();
        assert!(conf.contains(&format!("{{ nkey: {key} }}")));
    }
}
