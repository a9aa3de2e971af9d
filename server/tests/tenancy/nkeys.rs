//! NKEY users: the nonce in INFO, signatures in CONNECT, permissions, `no_auth_user`, reload
//! and monitoring, on natsd and on nats-server with the same keys.

use base64::Engine as _;
use nkeys::KeyPair;

use crate::configs::HEADER;
use crate::harness::{
    assert_round_trip, check_config, impls, pub_violation, Impl, Login, Proc, Raw, AUTH_VIOLATION,
};

/// The users of these tests: `root` (full access in `$G`), `limited` (publishes only to
/// `allowed.>` in `$G`), `tenant` (in account `A`), plus the password user `pwuser`.
struct Keys {
    root: KeyPair,
    limited: KeyPair,
    tenant: KeyPair,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            root: KeyPair::new_user(),
            limited: KeyPair::new_user(),
            tenant: KeyPair::new_user(),
        }
    }

    /// `extra` goes at the top level (`no_auth_user: ...`).
    fn config(&self, limited_perms: &str, extra: &str) -> String {
        format!(
            "{HEADER}{extra}\naccounts {{\n  A {{ users: [ {{ nkey: {tenant} }}, {{ user: apw, password: apw }} ] }}\n}}\n\
             authorization {{\n  users: [\n    {{ nkey: {root} }}\n    {{ nkey: {limited}, permissions: {{ {limited_perms} }} }}\n    {{ user: pwuser, password: pwpass }}\n  ]\n}}\n",
            tenant = self.tenant.public_key(),
            root = self.root.public_key(),
            limited = self.limited.public_key(),
        )
    }
}

const LIMITED: &str = "publish: \"allowed.>\"";

fn nonce(info: &serde_json::Value) -> Vec<u8> {
    info["nonce"]
        .as_str()
        .expect("nonce in INFO")
        .as_bytes()
        .to_vec()
}

/// CONNECT fields of an NKEY user signing the nonce (base64url without padding, as the clients
/// send it).
fn signed(key: &KeyPair) -> impl FnOnce(&serde_json::Value) -> serde_json::Value + '_ {
    move |info| {
        let sig = key.sign(&nonce(info)).unwrap();
        serde_json::json!({
            "nkey": key.public_key(),
            "sig": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig),
        })
    }
}

async fn nkey_login(port: u16, key: &KeyPair) -> Raw {
    match Raw::login_with(port, signed(key)).await {
        Login::Ok(raw) => raw,
        Login::Refused(lines) => panic!("NKEY login refused: {lines:?}"),
    }
}

async fn refused(
    kind: Impl,
    port: u16,
    what: &str,
    creds: impl FnOnce(&serde_json::Value) -> serde_json::Value,
) {
    match Raw::login_with(port, creds).await {
        Login::Ok(_) => panic!("{kind:?}: {what} was let in"),
        Login::Refused(lines) => assert_eq!(lines, vec![AUTH_VIOLATION], "{kind:?}: {what}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_users_sign_the_nonce_next_to_password_users() {
    let keys = Keys::new();
    let other = KeyPair::new_user();
    for kind in impls() {
        let p = Proc::start(kind, &keys.config(LIMITED, "")).await;

        // Every connection gets its own 15-character base64url nonce.
        let first = Raw::open(p.port).await.info;
        let second = Raw::open(p.port).await.info;
        for info in [&first, &second] {
            let n = info["nonce"].as_str().expect("nonce");
            assert_eq!(n.len(), 15, "{kind:?}: {n}");
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{kind:?}: {n}"
            );
            assert_eq!(info["auth_required"], true, "{kind:?}");
        }
        assert_ne!(first["nonce"], second["nonce"], "{kind:?}");

        let mut root = nkey_login(p.port, &keys.root).await;
        assert_eq!(
            root.connect_info.as_ref().unwrap()["remote_account"],
            "$G",
            "{kind:?}"
        );
        assert!(
            root.connect_info.as_ref().unwrap().get("nonce").is_none(),
            "{kind:?}: the second INFO repeats the nonce"
        );
        let tenant = nkey_login(p.port, &keys.tenant).await;
        assert_eq!(
            tenant.connect_info.as_ref().unwrap()["remote_account"],
            "A",
            "{kind:?}"
        );
        // Standard (padded) base64 is accepted too.
        let padded = Raw::login_with(p.port, |info| {
            let sig = keys.root.sign(&nonce(info)).unwrap();
            serde_json::json!({
                "nkey": keys.root.public_key(),
                "sig": base64::engine::general_purpose::STANDARD.encode(sig),
            })
        })
        .await;
        assert!(matches!(padded, Login::Ok(_)), "{kind:?}: padded base64");
        // Password users keep working beside them.
        Raw::user(p.port, "pwuser", "pwpass").await;
        let apw = Raw::user(p.port, "apw", "apw").await;
        assert_eq!(apw.connect_info.as_ref().unwrap()["remote_account"], "A");

        refused(
            kind,
            p.port,
            "a missing signature",
            |_| serde_json::json!({ "nkey": keys.root.public_key() }),
        )
        .await;
        refused(kind, p.port, "another key's signature", |info| {
            let sig = other.sign(&nonce(info)).unwrap();
            serde_json::json!({
                "nkey": keys.root.public_key(),
                "sig": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig),
            })
        })
        .await;
        refused(kind, p.port, "a signature of another nonce", |_| {
            let sig = keys.root.sign(b"not-the-nonce").unwrap();
            serde_json::json!({
                "nkey": keys.root.public_key(),
                "sig": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig),
            })
        })
        .await;
        refused(
            kind,
            p.port,
            "a signature that is not base64",
            |_| serde_json::json!({ "nkey": keys.root.public_key(), "sig": "!!!" }),
        )
        .await;
        refused(kind, p.port, "an unknown key", signed(&other)).await;
        refused(
            kind,
            p.port,
            "the key as a user name",
            |_| serde_json::json!({ "user": keys.root.public_key(), "pass": "" }),
        )
        .await;
        // With NKEY users, an NKEY decides alone: a good password next to it does not help.
        refused(kind, p.port, "an unknown key with a good password", |_| {
            serde_json::json!({ "nkey": other.public_key(), "user": "pwuser", "pass": "pwpass" })
        })
        .await;

        // The NKEY user's permissions hold.
        let mut limited = nkey_login(p.port, &keys.limited).await;
        limited.send("SUB allowed.x 1\r\nSUB denied 2\r\n").await;
        limited.publish("allowed.x", None, "ok").await;
        limited.publish("denied", None, "no").await;
        assert_eq!(
            limited.sync().await,
            vec![
                "MSG allowed.x 1 ok".to_string(),
                pub_violation("denied").to_string()
            ],
            "{kind:?}"
        );
        root.send("SUB t 1\r\n").await;
        root.sync().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_has_a_nonce_only_while_nkey_users_exist() {
    for kind in impls() {
        let p = Proc::start(
            kind,
            &format!("{HEADER}authorization {{ users: [ {{ user: a, password: b }} ] }}\n"),
        )
        .await;
        let info = Raw::open(p.port).await.info;
        assert!(info.get("nonce").is_none(), "{kind:?}: {info}");
        let p = Proc::start(kind, HEADER).await;
        let info = Raw::open(p.port).await.info;
        assert!(info.get("nonce").is_none(), "{kind:?}: {info}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_user_may_name_an_nkey_user() {
    let keys = Keys::new();
    for kind in impls() {
        let extra = format!("no_auth_user: {}", keys.tenant.public_key());
        let p = Proc::start(kind, &keys.config(LIMITED, &extra)).await;
        let info = Raw::open(p.port).await.info;
        assert!(info.get("auth_required").is_none(), "{kind:?}: {info}");
        assert!(info.get("nonce").is_some(), "{kind:?}: {info}");
        // No credentials: the NKEY user, without a signature.
        let anon = match Raw::login_with(p.port, |_| serde_json::json!({})).await {
            Login::Ok(raw) => raw,
            Login::Refused(lines) => panic!("{kind:?}: {lines:?}"),
        };
        assert_eq!(
            anon.connect_info.as_ref().unwrap()["remote_account"],
            "A",
            "{kind:?}"
        );
        let connz = p.http_json("/connz?auth=true").await;
        let users: Vec<&str> = connz["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["authorized_user"].as_str())
            .collect();
        assert_eq!(users, vec![keys.tenant.public_key()], "{kind:?}: {connz}");
        // Other NKEY users still sign.
        refused(
            kind,
            p.port,
            "a missing signature",
            |_| serde_json::json!({ "nkey": keys.root.public_key() }),
        )
        .await;
        nkey_login(p.port, &keys.root).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_shows_nkey_users_as_nats_server_does() {
    let keys = Keys::new();
    let mut seen = Vec::new();
    for kind in impls() {
        let p = Proc::start(kind, &keys.config(LIMITED, "")).await;
        let mut tenant = nkey_login(p.port, &keys.tenant).await;
        tenant.send("SUB x 1\r\n").await;
        tenant.sync().await;
        refused(
            kind,
            p.port,
            "a missing signature",
            |_| serde_json::json!({ "nkey": keys.tenant.public_key() }),
        )
        .await;
        let connz = p.http_json("/connz?auth=true").await;
        let conn = &connz["connections"][0];
        assert_eq!(
            conn["authorized_user"],
            keys.tenant.public_key(),
            "{kind:?}: {connz}"
        );
        assert_eq!(conn["account"], "A", "{kind:?}");
        let filtered = p
            .http_json(&format!(
                "/connz?auth=true&user={}",
                keys.tenant.public_key()
            ))
            .await;
        assert_eq!(filtered["num_connections"], 1, "{kind:?}: {filtered}");
        let varz = p.http_json("/varz").await;
        assert_eq!(varz["auth_required"], true, "{kind:?}");
        seen.push((
            kind,
            conn.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["authorized_user", "account", "nkey", "jwt"].contains(&k.as_str()))
                .cloned()
                .collect::<Vec<_>>(),
        ));
    }
    // The same auth fields appear on both servers.
    assert!(
        seen.windows(2).all(|w| w[0].1 == w[1].1),
        "connz auth fields differ: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_removing_or_restricting_an_nkey_user_applies_to_live_connections() {
    let keys = Keys::new();
    let added = KeyPair::new_user();
    for kind in impls() {
        let mut p = Proc::start(kind, &keys.config("", "")).await;
        let mut limited = nkey_login(p.port, &keys.limited).await;
        let mut tenant = nkey_login(p.port, &keys.tenant).await;
        let mut root = nkey_login(p.port, &keys.root).await;
        root.send("SUB keep 1\r\n").await;
        root.sync().await;
        limited.send("SUB secret 1\r\n").await;
        limited.sync().await;

        // `tenant` is removed (and `added` added) and `limited` loses subscribe rights.
        let conf = keys
            .config("subscribe: \"public.>\"", "")
            .replace(&keys.tenant.public_key(), &added.public_key());
        let outcome = p.reload_with(&conf).await;
        assert!(
            outcome.contains("Reloaded server configuration"),
            "{kind:?}: {outcome}"
        );
        assert_eq!(
            tenant.until_closed().await,
            Vec::<String>::new(),
            "{kind:?}"
        );
        refused(kind, p.port, "a removed key", signed(&keys.tenant)).await;
        let fresh = nkey_login(p.port, &added).await;
        assert_eq!(fresh.connect_info.as_ref().unwrap()["remote_account"], "A");
        assert_eq!(
            limited.sync().await,
            vec![
                "-ERR 'Permissions Violation for Subscription to \"secret\" (sid \"1\")'"
                    .to_string()
            ],
            "{kind:?}"
        );
        root.publish("keep", None, "k").await;
        assert_eq!(root.sync().await, vec!["MSG keep 1 k".to_string()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adding_the_first_nkey_user_sends_nonces_from_then_on() {
    let key = KeyPair::new_user();
    for kind in impls() {
        let base = format!("{HEADER}authorization {{ users: [ {{ user: a, password: b }} ] }}\n");
        let mut p = Proc::start(kind, &base).await;
        let mut old = Raw::user(p.port, "a", "b").await;
        let conf = format!(
            "{HEADER}authorization {{ users: [ {{ user: a, password: b }}, {{ nkey: {} }} ] }}\n",
            key.public_key()
        );
        let outcome = p.reload_with(&conf).await;
        assert!(outcome.contains("Reloaded"), "{kind:?}: {outcome}");
        nkey_login(p.port, &key).await;
        assert!(old.sync().await.is_empty(), "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_connects_with_an_nkey_seed() {
    let keys = Keys::new();
    for kind in impls() {
        let p = Proc::start(kind, &keys.config(LIMITED, "")).await;
        let client = async_nats::ConnectOptions::with_nkey(keys.tenant.seed().unwrap())
            .connect(p.url())
            .await
            .unwrap();
        assert_round_trip(&client, &format!("{kind:?}")).await;
        let wrong = async_nats::ConnectOptions::with_nkey(KeyPair::new_user().seed().unwrap())
            .connect(p.url())
            .await;
        assert!(wrong.is_err(), "{kind:?}: an unknown seed connected");
    }
}

#[test]
fn bad_nkey_configs_are_refused_as_nats_server_refuses_them() {
    let key = KeyPair::new_user().public_key();
    let account = KeyPair::new_account().public_key();
    let cases = [
        (
            format!("authorization {{ users: [ {{ nkey: {account} }} ] }}\n"),
            "Not a valid public nkey for a user",
        ),
        (
            "authorization { users: [ { nkey: UNOTAKEY } ] }\n".to_string(),
            "Not a valid public nkey for a user",
        ),
        (
            format!("authorization {{ users: [ {{ nkey: {key}, password: x }} ] }}\n"),
            "Nkey users do not take usernames or passwords",
        ),
        (
            format!("authorization {{ users: [ {{ nkey: {key}, user: x }} ] }}\n"),
            "Nkey users do not take usernames or passwords",
        ),
        (
            format!("accounts {{ A {{ users: [ {{ nkey: {key} }} ] }}, B {{ users: [ {{ nkey: {key} }} ] }} }}\n"),
            "Duplicate nkey",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nats.conf");
    for (text, error) in cases {
        std::fs::write(&path, &text).unwrap();
        for kind in impls() {
            let (ok, stderr) = check_config(kind, &path);
            assert!(!ok, "{kind:?} accepted {text}");
            assert!(stderr.contains(error), "{kind:?}: {text}: {stderr}");
        }
    }
}

/// natsd's own counters: a bad signature is a failed login like a wrong password, counted
/// against the key's account; an unknown key only server-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_count_as_failed_logins() {
    let keys = Keys::new();
    let p = Proc::start(Impl::Natsd, &keys.config(LIMITED, "")).await;
    refused(
        Impl::Natsd,
        p.port,
        "a missing signature",
        |_| serde_json::json!({ "nkey": keys.tenant.public_key() }),
    )
    .await;
    refused(
        Impl::Natsd,
        p.port,
        "an unknown key",
        signed(&KeyPair::new_user()),
    )
    .await;
    let text = testkit::http::get(&format!("http://127.0.0.1:{}/metrics", p.http_port))
        .await
        .body;
    // `name{labels} value` lines; the labels hold the server id.
    let value = |name: &str, label: &str| -> Option<f64> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
            .find_map(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(value("gnatsd_auth_failures", ""), Some(2.0), "{text}");
    assert_eq!(
        value("gnatsd_accstatz_auth_failures", "account=\"A\""),
        Some(1.0),
        "{text}"
    );
}

/// `no_auth_user` cannot change on reload (nats-server refuses it; with an NKEY user it would
/// leave an unsigned connection in place); the old configuration stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_cannot_move_no_auth_user() {
    let keys = Keys::new();
    for kind in impls() {
        let extra = format!("no_auth_user: {}", keys.tenant.public_key());
        let mut p = Proc::start(kind, &keys.config(LIMITED, &extra)).await;
        let mut anon = match Raw::login_with(p.port, |_| serde_json::json!({})).await {
            Login::Ok(raw) => raw,
            Login::Refused(lines) => panic!("{kind:?}: {lines:?}"),
        };
        let outcome = p
            .reload_with(&keys.config(LIMITED, "no_auth_user: pwuser"))
            .await;
        assert!(
            outcome.contains(&format!(
                "config reload not supported for NoAuthUser: old={}, new=pwuser",
                keys.tenant.public_key()
            )),
            "{kind:?}: {outcome}"
        );
        assert!(anon.sync().await.is_empty(), "{kind:?}");
        let again = Raw::login_with(p.port, |_| serde_json::json!({})).await;
        match again {
            Login::Ok(raw) => assert_eq!(
                raw.connect_info.as_ref().unwrap()["remote_account"],
                "A",
                "{kind:?}"
            ),
            Login::Refused(lines) => panic!("{kind:?}: {lines:?}"),
        }
    }
}
