//! A user JWT's `src` and `times` (with `times_location`), and the `data` limits, with the
//! same operator, account and user JWTs on natsd and on nats-server.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use nkeys::KeyPair;
use testkit::jwt::{encode, unlimited_account_limits, Kind, Operator};

use crate::configs::HEADER;

use crate::harness::{impls, Login, Proc, WAIT};
use crate::jwt::{jwt_login, must_login, must_refuse, tenancy_config};

/// The wall clock `offset` from now in `zone`, as the claims write it (`HH:MM:SS`).
fn clock(zone: &TimeZone, offset: SignedDuration) -> String {
    let at = Timestamp::now()
        .checked_add(offset)
        .expect("a time near now")
        .to_zoned_datetime(zone.clone());
    at.time().strftime("%H:%M:%S").to_string()
}

fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).expect("a zone of the system's database")
}

const HOUR: SignedDuration = SignedDuration::from_hours(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_log_in_from_their_src_networks_only() {
    let op = Operator::new();
    let user = |src: serde_json::Value| {
        op.user(
            &op.a,
            serde_json::json!({ "src": src }),
            serde_json::json!({}),
        )
    };
    let loopback = user(serde_json::json!(["127.0.0.0/8"]));
    // nsc writes one comma-separated string.
    let joined = user(serde_json::json!("10.0.0.0/8, 127.0.0.1/32"));
    let elsewhere = user(serde_json::json!(["10.0.0.0/8", "::1/128"]));
    let not_a_cidr = user(serde_json::json!(["127.0.0.1"]));
    for kind in impls() {
        let p = Proc::start(kind, &tenancy_config(&op, serde_json::json!({}))).await;
        must_login(kind, p.port, &loopback.0, &loopback.1).await;
        must_login(kind, p.port, &joined.0, &joined.1).await;
        let from = p.log_len();
        must_refuse(
            kind,
            p.port,
            "a client outside src",
            &elsewhere.0,
            &elsewhere.1,
        )
        .await;
        assert!(
            p.log_line_since(from, "Bad src Ip 127.0.0.1")
                .await
                .is_some(),
            "{kind:?}: no log line naming the refused source"
        );
        let refusal = p.log_line_since(from, "authentication error").await;
        assert!(
            refusal
                .as_deref()
                .is_some_and(|l| l.ends_with("- authentication error")),
            "{kind:?}: {refusal:?}"
        );
        must_refuse(
            kind,
            p.port,
            "a JWT whose src does not parse",
            &not_a_cidr.0,
            &not_a_cidr.1,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_log_in_within_their_times_in_their_zone() {
    let op = Operator::new();
    let tokyo = zone("Asia/Tokyo");
    let user = |start: &str, end: &str, location: &str| {
        op.user(
            &op.a,
            serde_json::json!({
                "times": [{ "start": start, "end": end }],
                "times_location": location
            }),
            serde_json::json!({}),
        )
    };
    let now_in_tokyo = user(&clock(&tokyo, -HOUR), &clock(&tokyo, HOUR), "Asia/Tokyo");
    let later_in_tokyo = user(&clock(&tokyo, HOUR), &clock(&tokyo, 2 * HOUR), "Asia/Tokyo");
    // Tokyo's clock read in New York (13 or 14 hours behind) is outside the window.
    let wrong_zone = user(
        &clock(&tokyo, -HOUR),
        &clock(&tokyo, HOUR),
        "America/New_York",
    );
    // Without a location the window is in the server's own zone.
    let local = TimeZone::system();
    let now_here = user(&clock(&local, -HOUR), &clock(&local, HOUR), "");
    let no_such_zone = user(
        &clock(&tokyo, -HOUR),
        &clock(&tokyo, HOUR),
        "Mars/Olympus_Mons",
    );
    let bad_clock = user("25:00:00", &clock(&tokyo, HOUR), "Asia/Tokyo");
    for kind in impls() {
        let p = Proc::start(kind, &tenancy_config(&op, serde_json::json!({}))).await;
        must_login(kind, p.port, &now_in_tokyo.0, &now_in_tokyo.1).await;
        must_login(kind, p.port, &now_here.0, &now_here.1).await;
        let from = p.log_len();
        must_refuse(
            kind,
            p.port,
            "a login before its window",
            &later_in_tokyo.0,
            &later_in_tokyo.1,
        )
        .await;
        assert!(
            p.log_line_since(from, "Outside connect times")
                .await
                .is_some(),
            "{kind:?}: no log line for a login outside its window"
        );
        must_refuse(
            kind,
            p.port,
            "a window in another zone",
            &wrong_zone.0,
            &wrong_zone.1,
        )
        .await;
        must_refuse(
            kind,
            p.port,
            "an unknown zone",
            &no_such_zone.0,
            &no_such_zone.1,
        )
        .await;
        must_refuse(
            kind,
            p.port,
            "a clock time that does not parse",
            &bad_clock.0,
            &bad_clock.1,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_when_its_time_window_ends() {
    let op = Operator::new();
    let utc = TimeZone::UTC;
    for kind in impls() {
        let p = Proc::start(kind, &tenancy_config(&op, serde_json::json!({}))).await;
        // The window ends two to three seconds from now (the clock has whole seconds).
        let (jwt, user) = op.user(
            &op.a,
            serde_json::json!({
                "times": [{ "start": clock(&utc, -HOUR), "end": clock(&utc, SignedDuration::from_secs(3)) }],
                "times_location": "UTC"
            }),
            serde_json::json!({}),
        );
        let mut raw = must_login(kind, p.port, &jwt, &user).await;
        let closed = tokio::time::timeout(WAIT, raw.until_closed())
            .await
            .expect("closed when the window ends");
        assert_eq!(
            closed,
            vec!["-ERR 'User Authentication Expired'".to_string()],
            "{kind:?}"
        );
    }
}

/// nats-server reads the `data` limits of users and accounts but enforces them nowhere: a
/// client of an account and user limited to 10 bytes publishes and receives 100-byte messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_limits_are_not_enforced() {
    let op = Operator::new();
    let conf = tenancy_config(&op, serde_json::json!({ "limits": { "data": 10 } }));
    let (jwt, user) = op.user(
        &op.a,
        serde_json::json!({ "data": 10 }),
        serde_json::json!({}),
    );
    let payload = "x".repeat(100);
    for kind in impls() {
        let p = Proc::start(kind, &conf).await;
        let mut raw = match jwt_login(p.port, &jwt, &user).await {
            Login::Ok(raw) => raw,
            Login::Refused(lines) => panic!("{kind:?}: refused: {lines:?}"),
        };
        raw.send("SUB data 1\r\n").await;
        for _ in 0..3 {
            raw.send(&format!("PUB data {}\r\n{payload}\r\n", payload.len()))
                .await;
        }
        assert_eq!(
            raw.sync_until(3).await,
            vec![format!("MSG data 1 {payload}"); 3],
            "{kind:?}"
        );
    }
}

/// On a single node every stream is R1, so of an account JWT's JetStream tiers only `R1`
/// applies; `$JS.API.INFO` lists it under `tiers`, with the account's own limits zero. Zero
/// (absent) stream and consumer limits are no limit, and shown as zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_r1_tier_holds_on_a_single_node() {
    let op = Operator::new();
    let r1 = serde_json::json!({
        "mem_storage": 1_048_576, "disk_storage": 4_194_304, "streams": 2, "consumer": 5,
        "max_ack_pending": 100, "mem_max_stream_bytes": 65_536,
        "disk_max_stream_bytes": 1_048_576, "max_bytes_required": false
    });
    let storage_only = serde_json::json!({ "disk_storage": 4_194_304 });
    let variants = [
        serde_json::json!({ "tiered_limits": { "R1": r1 } }),
        serde_json::json!({ "tiered_limits": { "R1": storage_only } }),
        storage_only.clone(),
    ];
    let (jwt, user) = op.user(&op.a, serde_json::json!({}), serde_json::json!({}));
    for limits in variants {
        let mut infos = Vec::new();
        for kind in impls() {
            let store = tempfile::tempdir().unwrap();
            let conf = format!(
                "{}jetstream: {{ store_dir: {:?} }}\n",
                tenancy_config(&op, serde_json::json!({ "limits": limits })),
                store.path()
            );
            let p = Proc::start(kind, &conf).await;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("user.creds");
            std::fs::write(&path, testkit::jwt::creds(&jwt, &user)).unwrap();
            let client = async_nats::ConnectOptions::with_credentials_file(&path)
                .await
                .unwrap()
                .connect(p.url())
                .await
                .unwrap();
            let create = client
                .request(
                    "$JS.API.STREAM.CREATE.S",
                    r#"{"name":"S","subjects":["s"],"max_bytes":1024}"#.into(),
                )
                .await
                .unwrap();
            let create: serde_json::Value = serde_json::from_slice(&create.payload).unwrap();
            assert_eq!(create["did_create"], true, "{kind:?} {limits}: {create}");
            let info = client.request("$JS.API.INFO", "".into()).await.unwrap();
            let mut info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
            info.as_object_mut().unwrap().remove("api");
            infos.push((kind, info));
        }
        let (_, natsd) = &infos[0];
        let own = if limits.get("tiered_limits").is_some() {
            assert_eq!(natsd["limits"]["max_storage"], 0, "{natsd}");
            &natsd["tiers"]["R1"]
        } else {
            assert!(natsd.get("tiers").is_none(), "{natsd}");
            natsd
        };
        assert_eq!(own["limits"]["max_storage"], 4_194_304, "{natsd}");
        assert_eq!(own["streams"], 1, "{natsd}");
        for (kind, info) in &infos[1..] {
            assert_eq!(info, natsd, "{kind:?} {limits}");
        }
    }
}

/// Under a scoped signing key the scope's template decides `src` (the user itself may set
/// none of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_signing_keys_template_sets_src() {
    let op = Operator::new();
    let (near, far) = (KeyPair::new_account(), KeyPair::new_account());
    let scope = |key: &KeyPair, src: &str| {
        serde_json::json!({
            "kind": "user_scope", "key": key.public_key(), "role": "r",
            "template": { "src": [src], "subs": -1, "data": -1, "payload": -1 }
        })
    };
    let account = |subject: &KeyPair, nats: serde_json::Value| {
        encode(
            &op.operator,
            &subject.public_key(),
            Kind::Account,
            nats,
            serde_json::json!({}),
        )
    };
    let operator = encode(
        &op.operator,
        &op.operator.public_key(),
        Kind::Operator,
        serde_json::json!({ "system_account": op.sys.public_key() }),
        serde_json::json!({}),
    );
    let sys = account(
        &op.sys,
        serde_json::json!({ "limits": unlimited_account_limits() }),
    );
    let a = account(
        &op.a,
        serde_json::json!({
            "limits": unlimited_account_limits(),
            "signing_keys": [scope(&near, "127.0.0.0/8"), scope(&far, "10.0.0.0/8")]
        }),
    );
    let conf = format!(
        "{HEADER}operator: {operator}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {sys}\n  {}: {a}\n}}\n",
        op.sys.public_key(),
        op.a.public_key()
    );
    let scoped_user = |signer: &KeyPair| {
        let user = KeyPair::new_user();
        let jwt = encode(
            signer,
            &user.public_key(),
            Kind::User,
            serde_json::json!({ "issuer_account": op.a.public_key() }),
            serde_json::json!({}),
        );
        (jwt, user)
    };
    let (near_user, far_user) = (scoped_user(&near), scoped_user(&far));
    for kind in impls() {
        let p = Proc::start(kind, &conf).await;
        must_login(kind, p.port, &near_user.0, &near_user.1).await;
        must_refuse(
            kind,
            p.port,
            "a scoped user outside the template's src",
            &far_user.0,
            &far_user.1,
        )
        .await;
    }
}
