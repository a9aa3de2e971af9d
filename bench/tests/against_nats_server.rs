//! Runs the load generators against the real nats-server with small counts, checking that
//! every message is accounted for.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

use bench::scenarios::core::{FanOut, IdleConnections, PubOnly, PubSub, QueueGroup, RequestReply};
use bench::scenarios::{AuthFixture, RunContext, RunOutput, Scenario, Settings};
use bench::server::{ServerKind, ServerProcess};

fn small_settings() -> Settings {
    Settings {
        small_msgs: 20_000,
        large_msgs: 2_000,
        requests: 200,
        request_warmup: 20,
        idle_conns: 50,
        storm_connects: 2,
        ..Settings::quick()
    }
}

fn run(server: &ServerProcess, scenario: &dyn Scenario, run_id: u64) -> RunOutput {
    let settings = small_settings();
    let auth = AuthFixture::generate().unwrap();
    let ctx = RunContext {
        server,
        settings: &settings,
        auth: &auth,
        run_id,
    };
    let output = scenario.run(&ctx).unwrap();
    assert!(
        output.anomalies.is_clean(),
        "{}: {:?}",
        scenario.name(),
        output.anomalies
    );
    output
}

fn metric(output: &RunOutput, name: &str) -> f64 {
    output
        .metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap()
        .value
}

#[test]
fn generators_account_for_every_message_on_nats_server() {
    let Some(reference) = testkit::reference_server() else {
        return;
    };
    let server = ServerProcess::start(
        ServerKind::NatsServer,
        &reference,
        testkit::ServerSpec::new(),
    )
    .unwrap();

    let out = run(&server, &PubOnly { payload: 16 }, 1);
    assert!(metric(&out, "msgs/s") > 0.0);

    let out = run(&server, &PubSub { payload: 1024 }, 2);
    assert!(metric(&out, "msgs/s") > 0.0);
    assert!(metric(&out, "CPU/msg") >= 0.0);

    let out = run(
        &server,
        &FanOut {
            payload: 16,
            subscribers: 3,
        },
        3,
    );
    assert!(metric(&out, "deliveries/s") > 0.0);

    let out = run(
        &server,
        &QueueGroup {
            payload: 16,
            members: 4,
        },
        4,
    );
    assert!(metric(&out, "msgs/s") > 0.0);

    let out = run(&server, &RequestReply { payload: 16 }, 5);
    assert!(metric(&out, "p50") > 0.0);
    assert!(metric(&out, "p99") >= metric(&out, "p50"));

    let out = run(&server, &IdleConnections { count: 50 }, 6);
    assert!(metric(&out, "RSS/conn") >= 0.0);
}
