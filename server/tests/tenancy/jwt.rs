//! Operator (JWT) mode with the memory resolver: the same operator, account and user JWTs on
//! natsd and on nats-server.

use nkeys::KeyPair;
use testkit::jwt::{connect_fields, creds, encode, now, unlimited_account_limits, Kind, Operator};

use crate::configs::HEADER;
use crate::harness::{
    assert_round_trip, check_config, impls, pub_violation, Impl, Login, Proc, Raw, WAIT,
};

/// The operator's configuration for a tenancy test server (its listen lines first).
pub(crate) fn tenancy_config(op: &Operator, a_nats: serde_json::Value) -> String {
    format!("{HEADER}{}", op.config(a_nats))
}

const AUTH_VIOLATION: &str = crate::harness::AUTH_VIOLATION;

pub(crate) async fn jwt_login(port: u16, jwt: &str, user: &KeyPair) -> Login {
    Raw::login_with(port, |info| {
        connect_fields(jwt, user, info["nonce"].as_str().expect("nonce"))
    })
    .await
}

pub(crate) async fn must_login(kind: Impl, port: u16, jwt: &str, user: &KeyPair) -> Raw {
    match jwt_login(port, jwt, user).await {
        Login::Ok(raw) => raw,
        Login::Refused(lines) => panic!("{kind:?}: JWT login refused: {lines:?}"),
    }
}

pub(crate) async fn must_refuse(kind: Impl, port: u16, what: &str, jwt: &str, user: &KeyPair) {
    match jwt_login(port, jwt, user).await {
        Login::Ok(_) => panic!("{kind:?}: {what} was let in"),
        Login::Refused(lines) => assert_eq!(lines, vec![AUTH_VIOLATION], "{kind:?}: {what}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_jwts_of_trusted_accounts_log_in_with_their_permissions() {
    let op = Operator::new();
    for kind in impls() {
        let p = Proc::start(kind, &tenancy_config(&op, serde_json::json!({}))).await;
        let info = Raw::open(p.port).await.info;
        assert_eq!(info["auth_required"], true, "{kind:?}");
        assert_eq!(info["nonce"].as_str().map(str::len), Some(15), "{kind:?}");

        let (jwt, user) = op.user(
            &op.a,
            serde_json::json!({ "pub": { "allow": ["allowed.>"] }, "sub": { "deny": ["secret"] } }),
            serde_json::json!({}),
        );
        let mut raw = must_login(kind, p.port, &jwt, &user).await;
        assert_eq!(
            raw.connect_info.as_ref().unwrap()["remote_account"],
            op.a.public_key(),
            "{kind:?}"
        );
        raw.send("SUB allowed.x 1\r\nSUB secret 2\r\n").await;
        raw.publish("allowed.x", None, "ok").await;
        raw.publish("denied", None, "no").await;
        assert_eq!(
            raw.sync().await,
            vec![
                "-ERR 'Permissions Violation for Subscription to \"secret\"'".to_string(),
                "MSG allowed.x 1 ok".to_string(),
                pub_violation("denied"),
            ],
            "{kind:?}"
        );

        // Issued by the account's signing key, naming the account.
        let (signed, signer_user) = op.user(
            &op.a_signer,
            serde_json::json!({ "issuer_account": op.a.public_key() }),
            serde_json::json!({}),
        );
        let raw = must_login(kind, p.port, &signed, &signer_user).await;
        assert_eq!(
            raw.connect_info.as_ref().unwrap()["remote_account"],
            op.a.public_key()
        );

        must_refuse(
            kind,
            p.port,
            "a JWT signed with another key",
            &jwt,
            &KeyPair::new_user(),
        )
        .await;
        let (expired, expired_user) = op.user(
            &op.a,
            serde_json::json!({}),
            serde_json::json!({ "exp": now() - 10 }),
        );
        must_refuse(kind, p.port, "an expired JWT", &expired, &expired_user).await;
        let (rogue, rogue_user) = op.user(&op.rogue, serde_json::json!({}), serde_json::json!({}));
        must_refuse(
            kind,
            p.port,
            "a user of an untrusted account",
            &rogue,
            &rogue_user,
        )
        .await;
        let (stranger, stranger_user) = op.user(
            &KeyPair::new_account(),
            serde_json::json!({}),
            serde_json::json!({}),
        );
        must_refuse(
            kind,
            p.port,
            "a user of an unknown account",
            &stranger,
            &stranger_user,
        )
        .await;
        match Raw::login(p.port, "a", "b").await {
            Login::Ok(_) => panic!("{kind:?}: a password login in operator mode"),
            Login::Refused(lines) => assert_eq!(lines, vec![AUTH_VIOLATION]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_users_and_bearer_tokens() {
    let op = Operator::new();
    for kind in impls() {
        let revoked_user = KeyPair::new_user();
        let config = tenancy_config(
            &op,
            serde_json::json!({
                "revocations": { revoked_user.public_key(): now() + 5 }
            }),
        );
        let p = Proc::start(kind, &config).await;
        let revoked = encode(
            &op.a,
            &revoked_user.public_key(),
            Kind::User,
            serde_json::json!({ "subs": -1, "data": -1, "payload": -1 }),
            serde_json::json!({}),
        );
        must_refuse(kind, p.port, "a revoked user", &revoked, &revoked_user).await;
        // A bearer token needs no signature.
        let (bearer, _) = op.user(
            &op.a,
            serde_json::json!({ "bearer_token": true }),
            serde_json::json!({}),
        );
        let login = Raw::login_with(p.port, |_| serde_json::json!({ "jwt": bearer })).await;
        assert!(
            matches!(login, Login::Ok(_)),
            "{kind:?}: bearer token refused"
        );
    }
}

/// An account with `disallow_bearer` refuses its users' bearer tokens; signed logins still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_may_disallow_bearer_tokens() {
    let op = Operator::new();
    for kind in impls() {
        let config = tenancy_config(
            &op,
            serde_json::json!({ "limits": { "disallow_bearer": true } }),
        );
        let p = Proc::start(kind, &config).await;
        let (bearer, _) = op.user(
            &op.a,
            serde_json::json!({ "bearer_token": true }),
            serde_json::json!({}),
        );
        match Raw::login_with(p.port, |_| serde_json::json!({ "jwt": bearer })).await {
            Login::Ok(_) => panic!("{kind:?}: a bearer token of a disallowing account was let in"),
            Login::Refused(lines) => assert_eq!(lines, vec![AUTH_VIOLATION], "{kind:?}"),
        }
        let (jwt, user) = op.user(&op.a, serde_json::json!({}), serde_json::json!({}));
        must_login(kind, p.port, &jwt, &user).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_jwt_limits_hold_per_account() {
    let op = Operator::new();
    for kind in impls() {
        let p = Proc::start(kind, &format!("{HEADER}{}", op.limited_a())).await;
        let (jwt, user) = op.user(&op.a, serde_json::json!({}), serde_json::json!({}));
        let mut first = must_login(kind, p.port, &jwt, &user).await;
        let _second = must_login(kind, p.port, &jwt, &user).await;
        match jwt_login(p.port, &jwt, &user).await {
            Login::Ok(_) => panic!("{kind:?}: a third connection of A"),
            Login::Refused(lines) => assert_eq!(
                lines,
                vec!["-ERR 'maximum account active connections exceeded'"],
                "{kind:?}"
            ),
        }
        first
            .send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB d 4\r\n")
            .await;
        assert_eq!(
            first.sync().await,
            vec!["-ERR 'maximum subscriptions exceeded'".to_string()],
            "{kind:?}"
        );
        let big = "x".repeat(65);
        first
            .send(&format!("PUB a {}\r\n{big}\r\n", big.len()))
            .await;
        assert_eq!(
            first.until_closed().await,
            vec!["-ERR 'Maximum Payload Violation'".to_string()],
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_when_its_user_jwt_expires() {
    let op = Operator::new();
    for kind in impls() {
        let p = Proc::start(kind, &tenancy_config(&op, serde_json::json!({}))).await;
        let (jwt, user) = op.user(
            &op.a,
            serde_json::json!({}),
            serde_json::json!({ "exp": now() + 2 }),
        );
        let mut raw = must_login(kind, p.port, &jwt, &user).await;
        let closed = tokio::time::timeout(WAIT, raw.until_closed())
            .await
            .unwrap();
        assert_eq!(
            closed,
            vec!["-ERR 'User Authentication Expired'".to_string()],
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_connects_with_a_creds_file() {
    let op = Operator::new();
    for kind in impls() {
        let p = Proc::start(kind, &tenancy_config(&op, serde_json::json!({}))).await;
        let (jwt, user) = op.user(&op.a, serde_json::json!({}), serde_json::json!({}));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user.creds");
        std::fs::write(&path, creds(&jwt, &user)).unwrap();
        let client = async_nats::ConnectOptions::with_credentials_file(&path)
            .await
            .unwrap()
            .connect(p.url())
            .await
            .unwrap();
        assert_round_trip(&client, &format!("{kind:?}")).await;
    }
}

#[test]
fn operator_mode_refuses_configured_users_and_a_missing_resolver() {
    let op = Operator::new();
    let base = tenancy_config(&op, serde_json::json!({}));
    let cases = [
        (
            format!("{base}authorization {{ users: [ {{ user: a, password: b }} ] }}\n"),
            "operators do not allow users to be configured directly",
        ),
        (
            format!("{base}system_account: {}\n", op.a.public_key()),
            "system_account in config and operator JWT must be identical",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nats.conf");
    for (text, error) in cases {
        std::fs::write(&path, &text).unwrap();
        for kind in impls() {
            let (ok, stderr) = check_config(kind, &path);
            // nats-server checks these as it starts, after `-t` has passed.
            if ok {
                let out = std::process::Command::new(match kind {
                    Impl::Natsd => testkit::natsd(),
                    Impl::NatsServer => testkit::reference_server().unwrap(),
                })
                .args(["-a", "127.0.0.1", "-p", "-1", "-c"])
                .arg(&path)
                .output()
                .unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(!out.status.success(), "{kind:?} started with {text}");
                assert!(stderr.contains(error), "{kind:?}: {stderr}");
            } else {
                assert!(stderr.contains(error), "{kind:?}: {stderr}");
            }
        }
    }
}

/// The directory resolver: account JWTs pushed by a system-account user over
/// `$SYS.REQ.CLAIMS.UPDATE` and `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` take effect at once
/// (a new account, new limits), and `CLAIMS.LOOKUP` returns the stored JWT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_resolver_takes_pushed_account_jwts() {
    let op = Operator::new();
    for kind in impls() {
        let dir = tempfile::tempdir().unwrap();
        let memory = tenancy_config(&op, serde_json::json!({}));
        // Only SYS is known at start; A arrives by push.
        let sys_line = memory
            .lines()
            .find(|l| l.trim_start().starts_with(&op.sys.public_key()))
            .unwrap()
            .to_string();
        let head = memory.split("resolver: MEMORY").next().unwrap();
        let conf = format!(
            "{head}resolver: {{ type: full, dir: \"{}\" }}\nresolver_preload: {{\n{sys_line}\n}}\n",
            dir.path().join("jwt").display()
        );
        let p = Proc::start(kind, &conf).await;
        let (jwt, user) = op.user(&op.a, serde_json::json!({}), serde_json::json!({}));
        must_refuse(
            kind,
            p.port,
            "a user of an account not pushed yet",
            &jwt,
            &user,
        )
        .await;

        let (sys_jwt, sys_user) = op.user(&op.sys, serde_json::json!({}), serde_json::json!({}));
        let sys = async_nats::ConnectOptions::new()
            .credentials(&creds(&sys_jwt, &sys_user))
            .unwrap()
            .connect(p.url())
            .await
            .unwrap();
        let account_jwt = |limits: serde_json::Value| {
            let mut l = unlimited_account_limits();
            if let (Some(l), Some(extra)) = (l.as_object_mut(), limits.as_object()) {
                l.extend(extra.clone());
            }
            encode(
                &op.operator,
                &op.a.public_key(),
                Kind::Account,
                serde_json::json!({ "limits": l }),
                serde_json::json!({}),
            )
        };
        let push = |subject: String, token: String| {
            let sys = sys.clone();
            async move {
                let reply = tokio::time::timeout(WAIT, sys.request(subject, token.into()))
                    .await
                    .unwrap()
                    .unwrap();
                serde_json::from_slice::<serde_json::Value>(&reply.payload).unwrap()
            }
        };
        let first = account_jwt(serde_json::json!({}));
        let answer = push("$SYS.REQ.CLAIMS.UPDATE".into(), first).await;
        assert_eq!(answer["data"]["code"], 200, "{kind:?}: {answer}");
        assert_eq!(answer["data"]["account"], op.a.public_key(), "{kind:?}");
        assert_eq!(answer["data"]["message"], "jwt updated", "{kind:?}");
        let mut one = must_login(kind, p.port, &jwt, &user).await;

        let one_conn = account_jwt(serde_json::json!({ "conn": 1 }));
        let answer = push(
            format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", op.a.public_key()),
            one_conn.clone(),
        )
        .await;
        assert_eq!(answer["data"]["code"], 200, "{kind:?}: {answer}");
        match jwt_login(p.port, &jwt, &user).await {
            Login::Ok(_) => panic!("{kind:?}: a second connection past the pushed limit"),
            Login::Refused(lines) => assert_eq!(
                lines,
                vec!["-ERR 'maximum account active connections exceeded'"],
                "{kind:?}"
            ),
        }
        // A JWT for another account on this account's subject is refused.
        let answer = push(
            format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", op.sys.public_key()),
            one_conn.clone(),
        )
        .await;
        assert_eq!(answer["error"]["code"], 500, "{kind:?}: {answer}");
        let stored = tokio::time::timeout(
            WAIT,
            sys.request(
                format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.LOOKUP", op.a.public_key()),
                "".into(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&stored.payload),
            one_conn,
            "{kind:?}"
        );
        // Claims that revoke the user close its live connection.
        let mut revoking = unlimited_account_limits();
        revoking["conn"] = 1.into();
        let revoked = encode(
            &op.operator,
            &op.a.public_key(),
            Kind::Account,
            serde_json::json!({
                "limits": revoking,
                "revocations": { user.public_key(): now() + 1 },
            }),
            serde_json::json!({}),
        );
        let answer = push("$SYS.REQ.CLAIMS.UPDATE".into(), revoked).await;
        assert_eq!(answer["data"]["code"], 200, "{kind:?}: {answer}");
        assert_eq!(
            one.until_closed().await,
            vec!["-ERR 'User Authentication Revoked'".to_string()],
            "{kind:?}"
        );
        // A JWT issued before the stored one replaces it all the same: a direct push is stored
        // as sent (only the copies servers exchange among themselves keep the newer).
        let older = encode(
            &op.operator,
            &op.a.public_key(),
            Kind::Account,
            serde_json::json!({ "limits": unlimited_account_limits() }),
            serde_json::json!({ "iat": now() - 3600 }),
        );
        let answer = push("$SYS.REQ.CLAIMS.UPDATE".into(), older.clone()).await;
        assert_eq!(answer["data"]["code"], 200, "{kind:?}: {answer}");
        assert_eq!(answer["data"]["message"], "jwt updated", "{kind:?}");
        let stored = tokio::time::timeout(
            WAIT,
            sys.request(
                format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.LOOKUP", op.a.public_key()),
                "".into(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&stored.payload), older, "{kind:?}");
        must_login(kind, p.port, &jwt, &user).await;
    }
}

/// `/connz?auth=true` shows a JWT user's JWT (not a bearer token's), the key that signed it,
/// its tags and the account's name tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_shows_jwt_users() {
    let op = Operator::new();
    for kind in impls() {
        let p = Proc::start(kind, &tenancy_config(&op, serde_json::json!({}))).await;
        let (signed, signed_user) = op.user(
            &op.a_signer,
            serde_json::json!({ "issuer_account": op.a.public_key(), "tags": ["blue", "x:1"] }),
            serde_json::json!({}),
        );
        let _signed = must_login(kind, p.port, &signed, &signed_user).await;
        let (bearer, bearer_user) = op.user(
            &op.a,
            serde_json::json!({ "bearer_token": true }),
            serde_json::json!({}),
        );
        let Login::Ok(_bearer) =
            Raw::login_with(p.port, |_| serde_json::json!({ "jwt": bearer })).await
        else {
            panic!("{kind:?}: bearer token refused");
        };
        let connz = p.http_json("/connz?auth=true").await;
        let conn = |key: String| {
            connz["connections"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["authorized_user"] == key.as_str()))
                .unwrap_or_else(|| panic!("{kind:?}: no connection of {key} in {connz}"))
                .clone()
        };
        let shown = conn(signed_user.public_key());
        assert_eq!(shown["jwt"], signed.as_str(), "{kind:?}: {shown}");
        assert_eq!(shown["issuer_key"], op.a_signer.public_key(), "{kind:?}");
        assert_eq!(
            shown["tags"],
            serde_json::json!(["blue", "x:1"]),
            "{kind:?}"
        );
        assert_eq!(shown["account"], op.a.public_key(), "{kind:?}");
        assert_eq!(shown["name_tag"], op.a.public_key(), "{kind:?}");
        let shown = conn(bearer_user.public_key());
        assert_eq!(shown.get("jwt"), None, "{kind:?}: {shown}");
        assert_eq!(shown["issuer_key"], op.a.public_key(), "{kind:?}");
        assert_eq!(shown.get("tags"), None, "{kind:?}: {shown}");
    }
}
