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

/// The trust is fixed for the server's life: a reload to another operator (with its own system
/// account, the first difference both servers name) is refused and the old trust stays, its
/// users still logging in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_cannot_change_the_trusted_operator() {
    let op = Operator::new();
    let other = Operator::new();
    for kind in impls() {
        let mut p = Proc::start(kind, &tenancy_config(&op, serde_json::json!({}))).await;
        let outcome = p
            .reload_with(&tenancy_config(&other, serde_json::json!({})))
            .await;
        assert!(
            outcome.contains("config reload not supported for SystemAccount: old="),
            "{kind:?}: {outcome}"
        );
        let (jwt, user) = op.user(&op.a, serde_json::json!({}), serde_json::json!({}));
        must_login(kind, p.port, &jwt, &user).await;
        let (jwt, user) = other.user(&other.a, serde_json::json!({}), serde_json::json!({}));
        must_refuse(kind, p.port, "a user of the other operator", &jwt, &user).await;
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
fn operator_mode_refuses_configured_users_a_missing_resolver_and_bad_resolver_fields() {
    let op = Operator::new();
    let base = tenancy_config(&op, serde_json::json!({}));
    let resolver = tempfile::tempdir().unwrap();
    let cases = [
        (
            format!("{base}authorization {{ users: [ {{ user: a, password: b }} ] }}\n"),
            "operators do not allow users to be configured directly",
        ),
        (
            format!("{base}system_account: {}\n", op.a.public_key()),
            "system_account in config and operator JWT must be identical",
        ),
        (
            directory_config(&op, &resolver.path().join("a"), "hard_delete: true"),
            "hard_delete has no effect without delete",
        ),
        (
            directory_config(&op, &resolver.path().join("b"), "ttl: \"1h\""),
            "FULL does not accept ttl",
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

/// The operator's configuration with the directory resolver in `dir` (with `extra` fields in
/// its block) and only the system account preloaded.
fn directory_config(op: &Operator, dir: &std::path::Path, extra: &str) -> String {
    let memory = tenancy_config(op, serde_json::json!({}));
    let sys_line = memory
        .lines()
        .find(|l| l.trim_start().starts_with(&op.sys.public_key()))
        .unwrap()
        .to_string();
    let head = memory.split("resolver: MEMORY").next().unwrap();
    format!(
        "{head}resolver: {{ type: full, dir: \"{}\", {extra} }}\nresolver_preload: {{\n{sys_line}\n}}\n",
        dir.display()
    )
}

/// A reply's JSON with the values that name the server (and the time) blanked, so two
/// servers' replies compare byte for byte: the fields and their order are what is left.
fn comparable(reply: &[u8]) -> String {
    let mut value: serde_json::Value = serde_json::from_slice(reply).unwrap();
    if let Some(server) = value.get_mut("server").and_then(|s| s.as_object_mut()) {
        for (_, v) in server.iter_mut() {
            *v = serde_json::Value::Null;
        }
    }
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    // serde_json sorts keys, so the order is read from the raw bytes.
    let text = String::from_utf8_lossy(reply).into_owned();
    let order = |names: Vec<String>| -> Vec<String> {
        let mut names = names;
        names.sort_by_key(|n| text.find(&format!("\"{n}\":")));
        names
    };
    format!(
        "{} top={:?} server={:?}",
        value,
        order(keys(&value)),
        order(keys(&value["server"]))
    )
}

/// `$SYS.REQ.CLAIMS.LIST`, `PACK` and `DELETE` (what `nsc push --prune` and `nsc pull` send)
/// answer as on nats-server: the list of stored accounts, the store's JWTs unless the
/// requester's hash matches, and deletion by a request the operator signed, which closes the
/// deleted account's connections with `Account Authentication Expired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_resolver_lists_packs_and_deletes() {
    use sha2::Digest as _;
    let op = Operator::new();
    let mut seen = Vec::new();
    for kind in impls() {
        let dir = tempfile::tempdir().unwrap();
        let jwt_dir = dir.path().join("jwt");
        let conf = directory_config(&op, &jwt_dir, "allow_delete: true");
        let p = Proc::start(kind, &conf).await;
        let (sys_jwt, sys_user) = op.user(&op.sys, serde_json::json!({}), serde_json::json!({}));
        let sys = async_nats::ConnectOptions::new()
            .credentials(&creds(&sys_jwt, &sys_user))
            .unwrap()
            .connect(p.url())
            .await
            .unwrap();
        let request = |subject: &str, body: Vec<u8>| {
            let sys = sys.clone();
            let subject = subject.to_string();
            async move {
                tokio::time::timeout(WAIT, sys.request(subject, body.into()))
                    .await
                    .unwrap()
                    .unwrap()
                    .payload
                    .to_vec()
            }
        };
        let a_jwt = encode(
            &op.operator,
            &op.a.public_key(),
            Kind::Account,
            serde_json::json!({ "limits": unlimited_account_limits() }),
            serde_json::json!({}),
        );
        let pushed = request("$SYS.REQ.CLAIMS.UPDATE", a_jwt.clone().into_bytes()).await;
        let mut pushed = vec![comparable(&pushed)];
        // Refused pushes: for another account's subject, not a JWT. (An expired account JWT
        // is refused by natsd and stored by nats-server: docs/differences.md.)
        for (subject, body) in [
            (
                format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", op.sys.public_key()),
                a_jwt.clone(),
            ),
            ("$SYS.REQ.CLAIMS.UPDATE".to_string(), "garbage".to_string()),
        ] {
            pushed.push(comparable(&request(&subject, body.into_bytes()).await));
        }
        let pushed = pushed.join("\n");
        let mut expected = vec![op.a.public_key(), op.sys.public_key()];
        expected.sort();
        let listed = request("$SYS.REQ.CLAIMS.LIST", Vec::new()).await;
        let listed_json: serde_json::Value = serde_json::from_slice(&listed).unwrap();
        assert_eq!(listed_json["data"], serde_json::json!(expected), "{kind:?}");
        let listed = comparable(&listed);

        // PACK: every stored JWT as `<key>|<jwt>`, then an empty message; nothing but the
        // empty message for a requester whose hash is ours.
        let pack = |theirs: Vec<u8>| {
            let sys = sys.clone();
            async move {
                let inbox = sys.new_inbox();
                let mut sub = sys.subscribe(inbox.clone()).await.unwrap();
                sys.publish_with_reply("$SYS.REQ.CLAIMS.PACK", inbox, theirs.into())
                    .await
                    .unwrap();
                let mut got = Vec::new();
                loop {
                    let msg = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut sub))
                        .await
                        .unwrap()
                        .unwrap();
                    if msg.payload.is_empty() {
                        break got;
                    }
                    got.push(String::from_utf8_lossy(&msg.payload).into_owned());
                }
            }
        };
        let mut packed = pack(vec![0; 32]).await;
        packed.sort();
        let stored_sys =
            std::fs::read_to_string(jwt_dir.join(format!("{}.jwt", op.sys.public_key()))).unwrap();
        let mut want = vec![
            format!("{}|{a_jwt}", op.a.public_key()),
            format!("{}|{stored_sys}", op.sys.public_key()),
        ];
        want.sort();
        assert_eq!(packed, want, "{kind:?}");
        let mut hash = [0u8; 32];
        for text in [&a_jwt, &stored_sys] {
            for (h, b) in hash.iter_mut().zip(sha2::Sha256::digest(text.as_bytes())) {
                *h ^= b;
            }
        }
        assert_eq!(pack(hash.to_vec()).await, Vec::<String>::new(), "{kind:?}");

        // DELETE: refused unless self-signed by the operator, and never for the system account.
        let (jwt, user) = op.user(&op.a, serde_json::json!({}), serde_json::json!({}));
        let mut one = must_login(kind, p.port, &jwt, &user).await;
        let deletion = |issuer: &KeyPair, subject: &str, accounts: serde_json::Value| {
            encode(
                issuer,
                subject,
                Kind::Operator,
                serde_json::json!({ "accounts": accounts }),
                serde_json::json!({}),
            )
            .into_bytes()
        };
        let op_key = op.operator.public_key();
        let mut refusals = Vec::new();
        for body in [
            deletion(
                &op.operator,
                &op.a.public_key(),
                serde_json::json!([op.a.public_key()]),
            ),
            deletion(
                &op.a,
                &op.a.public_key(),
                serde_json::json!([op.a.public_key()]),
            ),
            deletion(
                &op.operator,
                &op_key,
                serde_json::json!([op.sys.public_key()]),
            ),
            deletion(&op.operator, &op_key, serde_json::json!(["not-a-key"])),
            deletion(&op.operator, &op_key, serde_json::json!("x")),
            b"garbage".to_vec(),
        ] {
            let reply = request("$SYS.REQ.CLAIMS.DELETE", body).await;
            refusals.push(comparable(&reply));
        }
        let deleted = request(
            "$SYS.REQ.CLAIMS.DELETE",
            deletion(
                &op.operator,
                &op_key,
                serde_json::json!([op.a.public_key()]),
            ),
        )
        .await;
        let deleted_json: serde_json::Value = serde_json::from_slice(&deleted).unwrap();
        assert_eq!(
            deleted_json["data"]["message"], "deleted 1 accounts",
            "{kind:?}"
        );
        assert_eq!(
            one.until_closed().await,
            vec!["-ERR 'Account Authentication Expired'".to_string()],
            "{kind:?}"
        );
        let a_file = jwt_dir.join(format!("{}.jwt", op.a.public_key()));
        assert!(!a_file.exists(), "{kind:?}");
        assert!(
            jwt_dir
                .join(format!("{}.jwt.deleted", op.a.public_key()))
                .exists(),
            "{kind:?}"
        );
        let listed_after = request("$SYS.REQ.CLAIMS.LIST", Vec::new()).await;
        let listed_after: serde_json::Value = serde_json::from_slice(&listed_after).unwrap();
        assert_eq!(
            listed_after["data"],
            serde_json::json!([op.sys.public_key()]),
            "{kind:?}"
        );
        must_refuse(kind, p.port, "a user of a deleted account", &jwt, &user).await;
        // New claims pushed for it bring the account back.
        let renewed = encode(
            &op.operator,
            &op.a.public_key(),
            Kind::Account,
            serde_json::json!({ "limits": unlimited_account_limits() }),
            serde_json::json!({}),
        );
        let again = request("$SYS.REQ.CLAIMS.UPDATE", renewed.into_bytes()).await;
        let again: serde_json::Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(again["data"]["code"], 200, "{kind:?}: {again}");
        must_login(kind, p.port, &jwt, &user).await;
        drop(p);

        // Without allow_delete every deletion is refused.
        let dir = tempfile::tempdir().unwrap();
        let p = Proc::start(kind, &directory_config(&op, &dir.path().join("jwt"), "")).await;
        let sys = async_nats::ConnectOptions::new()
            .credentials(&creds(&sys_jwt, &sys_user))
            .unwrap()
            .connect(p.url())
            .await
            .unwrap();
        let refused = tokio::time::timeout(
            WAIT,
            sys.request(
                "$SYS.REQ.CLAIMS.DELETE",
                deletion(
                    &op.operator,
                    &op_key,
                    serde_json::json!([op.a.public_key()]),
                )
                .into(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        seen.push((
            pushed,
            listed,
            refusals,
            comparable(&deleted),
            comparable(&refused.payload),
        ));
    }
    testkit::with_reference(&seen, |ours, theirs| {
        let fields = [
            "update",
            "list",
            "refusals",
            "deleted",
            "without allow_delete",
        ];
        let ours = [
            ours.0.clone(),
            ours.1.clone(),
            ours.2.join("\n"),
            ours.3.clone(),
            ours.4.clone(),
        ];
        let theirs = [
            theirs.0.clone(),
            theirs.1.clone(),
            theirs.2.join("\n"),
            theirs.3.clone(),
            theirs.4.clone(),
        ];
        for ((field, ours), theirs) in fields.iter().zip(ours).zip(theirs) {
            assert_eq!(ours, theirs, "{field}");
        }
    });
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
