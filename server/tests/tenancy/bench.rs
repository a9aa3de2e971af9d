//! Sequential bcrypt (cost 11) logins per second, natsd vs nats-server.
//!
//! `cargo test -p natsd --test tenancy -- --ignored --nocapture bcrypt_login_rate`
//! (`NATSD_BIN=target/release/natsd` to measure a release build; `LOGINS=n` to change the count.)

use std::time::Instant;

use crate::harness::{nats_server_available, Impl, Proc, Raw};

/// "s3cret" at cost 11, as `nats server passwd` would produce it.
const COST11_HASH: &str = "$2a$11$rMWCjY8x.9EQ1Byq6YIIiO8R1Ex/idX7uJJChXxmHUCZe3OhteZpK";

async fn logins_per_second(kind: Impl, logins: usize) -> f64 {
    let conf = format!(
        "{}accounts {{ APP {{ users: [ {{ user: app, password: \"{COST11_HASH}\" }} ] }} }}\n",
        crate::configs::HEADER
    );
    let p = Proc::start(kind, &conf).await;
    let started = Instant::now();
    for _ in 0..logins {
        Raw::user(p.port, "app", "s3cret").await;
    }
    let rate = logins as f64 / started.elapsed().as_secs_f64();
    println!("{kind:?}: {logins} sequential cost-11 bcrypt logins, {rate:.1} logins/s");
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn bcrypt_login_rate() {
    let logins: usize = std::env::var("LOGINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let natsd = logins_per_second(Impl::Natsd, logins).await;
    if !nats_server_available() {
        return; // NATSD_SKIP_REFERENCE=1: testkit said so loudly
    }
    // nats-server pays a full bcrypt per login; a tenth of the logins gives a stable rate.
    let real = logins_per_second(Impl::NatsServer, (logins / 10).max(10)).await;
    println!("natsd / nats-server = {:.0}x", natsd / real);
    assert!(natsd > real * 10.0, "the verification cache is not working");
}
