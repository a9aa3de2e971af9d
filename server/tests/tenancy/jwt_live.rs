//! Operator mode, differential: new account claims reaching connections already made (by a
//! reload of the memory resolver's preload), account name tags in the monitor, closed
//! connections' JWT fields, and scoped signing keys' templates. The same JWTs on natsd and
//! on nats-server; what a client receives must be the same.

use nkeys::KeyPair;
use serde_json::json;
use testkit::jwt::{connect_fields, encode, now, Kind, Operator};

use crate::configs::HEADER;
use crate::harness::{impls, pub_violation, Impl, Login, Proc, Raw, AUTH_VIOLATION, WAIT};

fn conf(op: &Operator, a_nats: serde_json::Value, a_top: serde_json::Value) -> String {
    format!("{HEADER}{}", op.config_with(a_nats, a_top))
}

async fn login(port: u16, jwt: &str, user: &KeyPair) -> Login {
    Raw::login_with(port, |info| {
        connect_fields(jwt, user, info["nonce"].as_str().expect("nonce"))
    })
    .await
}

async fn must_login(kind: Impl, port: u16, jwt: &str, user: &KeyPair) -> Raw {
    match login(port, jwt, user).await {
        Login::Ok(raw) => raw,
        Login::Refused(lines) => panic!("{kind:?}: JWT login refused: {lines:?}"),
    }
}

async fn refused(port: u16, jwt: &str, user: &KeyPair) -> Vec<String> {
    match login(port, jwt, user).await {
        Login::Ok(_) => vec!["let in".to_string()],
        Login::Refused(lines) => lines,
    }
}

async fn closed(raw: &mut Raw) -> Vec<String> {
    tokio::time::timeout(WAIT, raw.until_closed())
        .await
        .expect("the connection was not closed")
}

/// New default permissions reach users whose permissions are the account's defaults (their
/// subscriptions the new ones deny are removed), not users with permissions of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_default_permissions_reach_users_without_their_own() {
    let op = Operator::new();
    for kind in impls() {
        let mut p = Proc::start(kind, &conf(&op, json!({}), json!({}))).await;
        let (plain, plain_user) = op.user(&op.a, json!({}), json!({}));
        let (own, own_user) = op.user(&op.a, json!({ "pub": { "allow": [">"] } }), json!({}));
        let mut by_default = must_login(kind, p.port, &plain, &plain_user).await;
        let mut with_own = must_login(kind, p.port, &own, &own_user).await;
        for raw in [&mut by_default, &mut with_own] {
            raw.send("SUB secret 1\r\nSUB open 2\r\n").await;
            assert!(raw.sync().await.is_empty(), "{kind:?}");
        }
        let defaults = json!({ "default_permissions": {
            "pub": { "deny": ["nopub"] }, "sub": { "deny": ["secret"] }
        }});
        let outcome = p.reload_with(&conf(&op, defaults, json!({}))).await;
        assert!(outcome.contains("Reloaded"), "{kind:?}: {outcome}");
        by_default.publish("nopub", None, "x").await;
        by_default.publish("open", None, "y").await;
        assert_eq!(
            by_default.sync().await,
            vec![
                "-ERR 'Permissions Violation for Subscription to \"secret\" (sid \"1\")'"
                    .to_string(),
                pub_violation("nopub"),
                "MSG open 2 y".to_string(),
            ],
            "{kind:?}"
        );
        with_own.publish("nopub", None, "z").await;
        with_own.publish("secret", None, "s").await;
        assert_eq!(
            with_own.sync().await,
            vec!["MSG open 2 y".to_string(), "MSG secret 1 s".to_string()],
            "{kind:?}"
        );
    }
}

/// `disallow_bearer` newly set closes the bearer-token connections; signed ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallow_bearer_closes_bearer_connections() {
    let op = Operator::new();
    for kind in impls() {
        let mut p = Proc::start(kind, &conf(&op, json!({}), json!({}))).await;
        let (bearer, _) = op.user(&op.a, json!({ "bearer_token": true }), json!({}));
        let Login::Ok(mut by_bearer) = Raw::login_with(p.port, |_| json!({ "jwt": bearer })).await
        else {
            panic!("{kind:?}: bearer token refused");
        };
        let (jwt, user) = op.user(&op.a, json!({}), json!({}));
        let mut signed = must_login(kind, p.port, &jwt, &user).await;
        let outcome = p
            .reload_with(&conf(
                &op,
                json!({ "limits": { "disallow_bearer": true } }),
                json!({}),
            ))
            .await;
        assert!(outcome.contains("Reloaded"), "{kind:?}: {outcome}");
        assert_eq!(
            closed(&mut by_bearer).await,
            vec![AUTH_VIOLATION],
            "{kind:?}"
        );
        assert!(signed.sync().await.is_empty(), "{kind:?}");
        let connz = p.http_json("/connz?state=closed").await;
        assert_eq!(
            connz["connections"][0]["reason"], "Authentication Failure",
            "{kind:?}: {connz}"
        );
    }
}

/// An account JWT that reaches its `exp` closes the account's connections (whether it came at
/// start or by a reload), and its users can no longer log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_account_jwt_closes_its_connections() {
    let op = Operator::new();
    for kind in impls() {
        // Expiries far enough ahead that a loaded machine starts (or checks and reloads) the
        // server before them.
        let mut p = Proc::start(kind, &conf(&op, json!({}), json!({ "exp": now() + 5 }))).await;
        let (jwt, user) = op.user(&op.a, json!({}), json!({}));
        let mut first = must_login(kind, p.port, &jwt, &user).await;
        assert_eq!(
            closed(&mut first).await,
            vec!["-ERR 'Account Authentication Expired'".to_string()],
            "{kind:?}"
        );
        assert_eq!(
            refused(p.port, &jwt, &user).await,
            vec![AUTH_VIOLATION],
            "{kind:?}"
        );
        let connz = p.http_json("/connz?state=closed").await;
        assert_eq!(
            connz["connections"][0]["reason"], "Authentication Expired",
            "{kind:?}: {connz}"
        );
        // Claims without an expiry let the users in again; a reload that sets one closes them
        // when it comes.
        let outcome = p.reload_with(&conf(&op, json!({}), json!({}))).await;
        assert!(outcome.contains("Reloaded"), "{kind:?}: {outcome}");
        let mut second = must_login(kind, p.port, &jwt, &user).await;
        let outcome = p
            .reload_with(&conf(&op, json!({}), json!({ "exp": now() + 5 })))
            .await;
        assert!(outcome.contains("Reloaded"), "{kind:?}: {outcome}");
        assert!(second.sync().await.is_empty(), "{kind:?}");
        assert_eq!(
            closed(&mut second).await,
            vec!["-ERR 'Account Authentication Expired'".to_string()],
            "{kind:?}"
        );
    }
}

/// Account A's JWT as [`Operator::config_with`] makes it.
fn a_jwt(op: &Operator, a_nats: serde_json::Value, a_top: serde_json::Value) -> String {
    let key = op.a.public_key();
    op.config_with(a_nats, a_top)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{key}: "))
                .map(str::to_string)
        })
        .expect("A's JWT in the configuration")
}

/// A server with the directory resolver, the system account and A preloaded, and a
/// system-account client that pushes A's new claims.
async fn full_resolver(kind: Impl, op: &Operator) -> (Proc, async_nats::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let keep = [op.sys.public_key(), op.a.public_key()];
    let memory = conf(op, json!({}), json!({}));
    let (head, _) = memory.split_once("resolver: MEMORY").unwrap();
    let preload: Vec<&str> = memory
        .lines()
        .filter(|l| keep.iter().any(|k| l.trim_start().starts_with(k.as_str())))
        .collect();
    let text = format!(
        "{head}resolver: {{ type: full, dir: \"{}\" }}\nresolver_preload: {{\n{}\n}}\n",
        dir.path().join("jwt").display(),
        preload.join("\n")
    );
    let p = Proc::start(kind, &text).await;
    let (sys_jwt, sys_user) = op.user(&op.sys, json!({}), json!({}));
    let sys = async_nats::ConnectOptions::new()
        .credentials(&testkit::jwt::creds(&sys_jwt, &sys_user))
        .unwrap()
        .connect(p.url())
        .await
        .unwrap();
    (p, sys, dir)
}

async fn push(kind: Impl, sys: &async_nats::Client, token: String) {
    let reply = tokio::time::timeout(WAIT, sys.request("$SYS.REQ.CLAIMS.UPDATE", token.into()))
        .await
        .unwrap()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(answer["data"]["code"], 200, "{kind:?}: {answer}");
}

/// Pushed claims with a lower `conn` limit close the newest connections past it; a lower
/// `subs` limit closes the connections holding at least that many subscriptions; a lower
/// `payload` limit holds for the next publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_account_limits_reach_live_connections() {
    let op = Operator::new();
    for kind in impls() {
        let (p, sys, _dir) = full_resolver(kind, &op).await;
        let (jwt, user) = op.user(&op.a, json!({}), json!({}));
        let mut oldest = must_login(kind, p.port, &jwt, &user).await;
        let mut many_subs = must_login(kind, p.port, &jwt, &user).await;
        let mut newest = must_login(kind, p.port, &jwt, &user).await;
        oldest.send("SUB a 1\r\n").await;
        many_subs.send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\n").await;
        newest.send("SUB a 1\r\n").await;
        for raw in [&mut oldest, &mut many_subs, &mut newest] {
            assert!(raw.sync().await.is_empty(), "{kind:?}");
        }
        let limits = json!({ "limits": { "conn": 3, "subs": 2, "payload": 8 } });
        push(kind, &sys, a_jwt(&op, limits, json!({}))).await;
        assert_eq!(
            closed(&mut many_subs).await,
            vec!["-ERR 'maximum subscriptions exceeded'".to_string()],
            "{kind:?}"
        );
        oldest.send("SUB b 2\r\nSUB c 3\r\n").await;
        assert_eq!(
            oldest.sync().await,
            vec!["-ERR 'maximum subscriptions exceeded'".to_string()],
            "{kind:?}"
        );
        // Two connections left: a limit of one keeps the oldest.
        push(
            kind,
            &sys,
            a_jwt(
                &op,
                json!({ "limits": { "conn": 1, "payload": 8 } }),
                json!({}),
            ),
        )
        .await;
        assert_eq!(
            closed(&mut newest).await,
            vec!["-ERR 'maximum account active connections exceeded'".to_string()],
            "{kind:?}"
        );
        oldest.publish("a", None, "123456789").await;
        assert_eq!(
            closed(&mut oldest).await,
            vec!["-ERR 'Maximum Payload Violation'".to_string()],
            "{kind:?}"
        );
        let connz = p.http_json("/connz?state=closed").await;
        let mut reasons: Vec<String> = connz["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["reason"].as_str().unwrap_or_default().to_string())
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            vec![
                "Maximum Account Connections Exceeded",
                "Maximum Message Payload Exceeded",
                "Maximum Subscriptions Exceeded"
            ],
            "{kind:?}: {connz}"
        );
    }
}

/// The fields of one connection (open or closed) that the name tag and the JWT concern.
fn jwt_fields(connz: &serde_json::Value) -> Vec<serde_json::Value> {
    connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut fields = serde_json::Map::new();
            for key in [
                "authorized_user",
                "account",
                "jwt",
                "issuer_key",
                "tags",
                "name_tag",
            ] {
                if let Some(v) = c.get(key) {
                    fields.insert(key.to_string(), v.clone());
                }
            }
            serde_json::Value::Object(fields)
        })
        .collect()
}

/// The account JWT's `name` is the account's name tag in `/connz?auth=true`, `/accountz` and
/// `/accstatz`; closed connections keep their JWT, issuer key and tags as nats-server shows
/// them (with and without `auth=true`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_tags_and_closed_connections_jwt_fields() {
    let op = Operator::new();
    let (jwt, user) = op.user(
        &op.a_signer,
        json!({ "issuer_account": op.a.public_key(), "tags": ["blue", "x:1"] }),
        json!({ "name": "alice" }),
    );
    let (bearer, _) = op.user(
        &op.a,
        json!({ "bearer_token": true }),
        json!({ "name": "bob" }),
    );
    let mut seen = Vec::new();
    for kind in impls() {
        let p = Proc::start(kind, &conf(&op, json!({}), json!({ "name": "Team A" }))).await;
        let mut signed = must_login(kind, p.port, &jwt, &user).await;
        let Login::Ok(mut by_bearer) = Raw::login_with(p.port, |_| json!({ "jwt": bearer })).await
        else {
            panic!("{kind:?}: bearer token refused");
        };
        let open = jwt_fields(&p.http_json("/connz?auth=true").await);
        assert_eq!(open[0]["name_tag"], "Team A", "{kind:?}: {open:?}");
        signed.send("SUB tagged 1\r\n").await;
        assert!(signed.sync().await.is_empty(), "{kind:?}");
        let subsz = p.http_json("/subsz?subs=1&test=tagged").await;
        assert_eq!(
            subsz["subscriptions_list"][0]["account_tag"], "Team A",
            "{kind:?}: {subsz}"
        );
        let accountz = p
            .http_json(&format!("/accountz?acc={}", op.a.public_key()))
            .await;
        assert_eq!(
            accountz["account_detail"]["name_tag"], "Team A",
            "{kind:?}: {accountz}"
        );
        let accstatz = p.http_json("/accstatz").await;
        assert_eq!(
            accstatz["account_statz"][0]["name"], "Team A",
            "{kind:?}: {accstatz}"
        );
        signed.send("QUIT\r\n").await;
        drop(signed);
        by_bearer.send("QUIT\r\n").await;
        drop(by_bearer);
        let mut closed_auth = Vec::new();
        for _ in 0..100 {
            closed_auth = jwt_fields(&p.http_json("/connz?state=closed&auth=true").await);
            if closed_auth.len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(closed_auth.len(), 2, "{kind:?}: {closed_auth:?}");
        assert_eq!(closed_auth[0]["jwt"], jwt.as_str(), "{kind:?}");
        assert_eq!(
            closed_auth[0]["issuer_key"],
            op.a_signer.public_key(),
            "{kind:?}"
        );
        assert_eq!(closed_auth[0]["tags"], json!(["blue", "x:1"]), "{kind:?}");
        assert_eq!(closed_auth[0]["name_tag"], "Team A", "{kind:?}");
        let closed_plain = jwt_fields(&p.http_json("/connz?state=closed").await);
        // Without `auth=true` a closed connection still shows its JWT fields, and the user
        // JWT's name as its name tag.
        assert_eq!(
            closed_plain[0]["name_tag"], "alice",
            "{kind:?}: {closed_plain:?}"
        );
        assert_eq!(closed_plain[0]["jwt"], jwt.as_str(), "{kind:?}");
        assert_eq!(
            closed_plain[1].get("jwt"),
            None,
            "{kind:?}: {closed_plain:?}"
        );
        seen.push((open, closed_auth, closed_plain));
    }
    testkit::with_reference(&seen, |ours, theirs| assert_eq!(ours, theirs));
}

/// A scoped signing key's template stands in for its users' permissions and limits, with
/// `{{name()}}`, `{{subject()}}`, `{{account-name()}}`, `{{account-subject()}}`,
/// `{{tag(...)}}` and `{{account-tag(...)}}` expanded for each user; an unknown operation, a
/// deny entry naming a tag the user lacks, or a user with limits of its own is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_signing_key_templates() {
    let op = Operator::new();
    let scoped = KeyPair::new_account();
    let picky = KeyPair::new_account();
    let unknown = KeyPair::new_account();
    let deny_tag = KeyPair::new_account();
    let bearer = KeyPair::new_account();
    let scope = |key: &KeyPair, template: serde_json::Value| json!({ "kind": "user_scope", "key": key.public_key(), "template": template });
    let a_nats = json!({
        "tags": ["region:eu", "region:us"],
        "signing_keys": [
            scope(&scoped, json!({
                "pub": { "allow": [
                    "n.{{name()}}", "s.{{subject()}}", "an.{{account-name()}}",
                    "as.{{ account-subject() }}", "t.{{tag(team)}}.{{account-tag(region)}}",
                    "missing.{{tag(nope)}}"
                ] },
                "sub": { "allow": ["_INBOX.>", "in.{{name()}}"] },
                "subs": 2, "payload": 10
            })),
            scope(&picky, json!({ "allowed_connection_types": ["WEBSOCKET"] })),
            scope(&unknown, json!({ "pub": { "allow": ["x.{{nope()}}"] } })),
            scope(&deny_tag, json!({ "pub": { "deny": ["x.{{tag(nope)}}"] } })),
            scope(&bearer, json!({ "bearer_token": true })),
        ]
    });
    let scoped_user = |signer: &KeyPair, nats: serde_json::Value| {
        let user = KeyPair::new_user();
        let mut claims =
            json!({ "issuer_account": op.a.public_key(), "tags": ["team:red", "team:blue"] });
        if let (Some(c), Some(extra)) = (claims.as_object_mut(), nats.as_object()) {
            c.extend(extra.clone());
        }
        let jwt = encode(
            signer,
            &user.public_key(),
            Kind::User,
            claims,
            json!({ "name": "alice" }),
        );
        (jwt, user)
    };
    for kind in impls() {
        let p = Proc::start(kind, &conf(&op, a_nats.clone(), json!({ "name": "acme" }))).await;
        let (jwt, user) = scoped_user(&scoped, json!({}));
        let mut raw = must_login(kind, p.port, &jwt, &user).await;
        let me = user.public_key();
        let acc = op.a.public_key();
        raw.send("SUB in.alice 1\r\nSUB in.bob 2\r\n").await;
        for subject in [
            "n.alice".to_string(),
            format!("s.{me}"),
            "an.acme".to_string(),
            format!("as.{acc}"),
            "t.red.eu".to_string(),
            "t.blue.us".to_string(),
            "t.green.eu".to_string(),
            "n.bob".to_string(),
        ] {
            raw.publish(&subject, None, "x").await;
        }
        assert_eq!(
            raw.sync().await,
            vec![
                "-ERR 'Permissions Violation for Subscription to \"in.bob\"'".to_string(),
                pub_violation("t.green.eu"),
                pub_violation("n.bob"),
            ],
            "{kind:?}"
        );
        // The template's limits, not the user's (unlimited) nor the account's.
        raw.send("SUB _INBOX.a 3\r\nSUB _INBOX.b 4\r\n").await;
        assert_eq!(
            raw.sync().await,
            vec!["-ERR 'maximum subscriptions exceeded'".to_string()],
            "{kind:?}"
        );
        raw.publish("n.alice", None, "12345678901").await;
        assert_eq!(
            closed(&mut raw).await,
            vec!["-ERR 'Maximum Payload Violation'".to_string()],
            "{kind:?}"
        );
        // The scope's `bearer_token`: its users log in without signing the nonce.
        let (token, bearer_user) = scoped_user(&bearer, json!({}));
        let login = Raw::login_with(p.port, |_| json!({ "jwt": token })).await;
        assert!(
            matches!(login, Login::Ok(_)),
            "{kind:?}: scoped bearer token"
        );
        // The JWT itself does not say it is a bearer token: the monitor shows it.
        let connz = p.http_json("/connz?auth=true").await;
        let shown = connz["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["authorized_user"] == bearer_user.public_key().as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(shown["jwt"], token.as_str(), "{kind:?}: {connz}");
        drop(login);
        for (what, signer, nats) in [
            ("the scope's connection types", &picky, json!({})),
            ("an unknown template operation", &unknown, json!({})),
            ("a deny entry with a missing tag", &deny_tag, json!({})),
            (
                "a scoped user with its own limits",
                &scoped,
                json!({ "subs": -1 }),
            ),
            (
                "a scoped user with its own permissions",
                &scoped,
                json!({ "pub": { "allow": [">"] } }),
            ),
        ] {
            let (jwt, user) = scoped_user(signer, nats);
            assert_eq!(
                refused(p.port, &jwt, &user).await,
                vec![AUTH_VIOLATION],
                "{kind:?}: {what}"
            );
        }
    }
}

/// New claims that drop a signing key, or change its scope, close the connections of the
/// users it signed, without a word; users of the account's other keys stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_or_changed_signing_keys_close_their_users() {
    let op = Operator::new();
    let dropped = KeyPair::new_account();
    let changed = KeyPair::new_account();
    let keys = |template: serde_json::Value| {
        json!({ "signing_keys": [
            dropped.public_key(),
            { "kind": "user_scope", "key": changed.public_key(), "template": template },
        ]})
    };
    // A scoped key's users carry no limits of their own; the others are unlimited.
    let user_of = |signer: &KeyPair| {
        let user = KeyPair::new_user();
        let mut nats = json!({ "issuer_account": op.a.public_key() });
        if signer.public_key() != changed.public_key() {
            nats["subs"] = (-1).into();
            nats["payload"] = (-1).into();
        }
        let jwt = encode(signer, &user.public_key(), Kind::User, nats, json!({}));
        (jwt, user)
    };
    for kind in impls() {
        let mut p = Proc::start(kind, &conf(&op, keys(json!({})), json!({}))).await;
        let (jwt, user) = user_of(&dropped);
        let mut by_dropped = must_login(kind, p.port, &jwt, &user).await;
        let (jwt, user) = user_of(&changed);
        let mut by_changed = must_login(kind, p.port, &jwt, &user).await;
        let (jwt, user) = user_of(&op.a_signer);
        let mut by_kept = must_login(kind, p.port, &jwt, &user).await;
        let now_keys = json!({ "signing_keys": [
            { "kind": "user_scope", "key": changed.public_key(),
              "template": { "sub": { "deny": ["x"] } } },
        ]});
        let outcome = p.reload_with(&conf(&op, now_keys, json!({}))).await;
        assert!(outcome.contains("Reloaded"), "{kind:?}: {outcome}");
        assert_eq!(
            closed(&mut by_dropped).await,
            Vec::<String>::new(),
            "{kind:?}"
        );
        assert_eq!(
            closed(&mut by_changed).await,
            Vec::<String>::new(),
            "{kind:?}"
        );
        assert!(by_kept.sync().await.is_empty(), "{kind:?}");
    }
}

/// A user (or account) JWT without a `subs` limit may hold no subscription: nats-server lets
/// the CONNECT through, then says `maximum subscriptions exceeded` and closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_without_subs_is_closed_after_login() {
    let op = Operator::new();
    let without_subs = KeyPair::new_user();
    let unlimited = KeyPair::new_user();
    let jwt_of = |user: &KeyPair, nats: serde_json::Value| {
        encode(&op.a, &user.public_key(), Kind::User, nats, json!({}))
    };
    let cases = [
        (
            json!({}),
            jwt_of(&without_subs, json!({ "payload": -1 })),
            &without_subs,
        ),
        (
            json!({ "limits": { "subs": 0 } }),
            jwt_of(&unlimited, json!({ "subs": -1, "payload": -1 })),
            &unlimited,
        ),
    ];
    for kind in impls() {
        for (a_nats, jwt, user) in &cases {
            let p = Proc::start(kind, &conf(&op, a_nats.clone(), json!({}))).await;
            let mut raw = Raw::open(p.port).await;
            let nonce = raw.info["nonce"].as_str().unwrap().to_string();
            let mut connect = json!({ "verbose": false, "pedantic": false, "protocol": 1 });
            if let (Some(c), Some(extra)) = (
                connect.as_object_mut(),
                connect_fields(jwt, user, &nonce).as_object(),
            ) {
                c.extend(extra.clone());
            }
            raw.send(&format!("CONNECT {connect}\r\nPING\r\n")).await;
            let mut lines = closed(&mut raw).await;
            // The PONG and the error race each other on nats-server.
            lines.sort();
            assert_eq!(
                lines,
                vec![
                    "-ERR 'maximum subscriptions exceeded'".to_string(),
                    "PONG".to_string()
                ],
                "{kind:?}: {a_nats}"
            );
        }
    }
}

/// The `client` of the JetStream API audit advisory names a JWT user as nats-server does: the
/// key that signed its JWT, the JWT's `name` as `name_tag` and its tags (the JWT itself is
/// left out of advisories).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_audit_advisory_shows_the_users_jwt() {
    use futures::StreamExt as _;
    let op = Operator::new();
    let (auditor_jwt, auditor) = op.user(&op.a, json!({}), json!({}));
    let (jwt, user) = op.user(
        &op.a_signer,
        json!({ "issuer_account": op.a.public_key(), "tags": ["blue"] }),
        json!({ "name": "requester" }),
    );
    let mut seen = Vec::new();
    for kind in impls() {
        let store = tempfile::tempdir().unwrap();
        let text = format!(
            "{}jetstream {{ store_dir: \"{}\" }}\n",
            conf(
                &op,
                json!({ "limits": { "mem_storage": -1, "disk_storage": -1 } }),
                json!({ "name": "Team A" }),
            ),
            store.path().display()
        );
        let p = Proc::start(kind, &text).await;
        let connect = |jwt: &str, user: &KeyPair| {
            let creds = testkit::jwt::creds(jwt, user);
            let url = p.url();
            async move {
                async_nats::ConnectOptions::new()
                    .credentials(&creds)
                    .unwrap()
                    .connect(url)
                    .await
                    .unwrap()
            }
        };
        let watcher = connect(&auditor_jwt, &auditor).await;
        let mut audit = watcher.subscribe("$JS.EVENT.ADVISORY.API").await.unwrap();
        watcher.flush().await.unwrap();
        let requester = connect(&jwt, &user).await;
        tokio::time::timeout(WAIT, requester.request("$JS.API.INFO", "".into()))
            .await
            .unwrap()
            .unwrap();
        let advisory = tokio::time::timeout(WAIT, audit.next())
            .await
            .unwrap()
            .unwrap();
        let jsz = p.http_json("/jsz?accounts=true").await;
        let detail = jsz["account_details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == op.a.public_key().as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(detail["name"], "Team A", "{kind:?}: {jsz}");
        let v: serde_json::Value = serde_json::from_slice(&advisory.payload).unwrap();
        let client = &v["client"];
        assert_eq!(client.get("jwt"), None, "{kind:?}: {v}");
        assert_eq!(client["issuer_key"], op.a_signer.public_key(), "{kind:?}");
        assert_eq!(client["name_tag"], "requester", "{kind:?}");
        assert_eq!(client["tags"], json!(["blue"]), "{kind:?}");
        let mut fields: Vec<&String> = client.as_object().unwrap().keys().collect();
        // nats-server measures the round trip when the request arrives, natsd with its first
        // PING: present or not depending on timing.
        fields.retain(|k| *k != "rtt");
        fields.sort();
        seen.push(json!([
            fields,
            client["issuer_key"],
            client["name_tag"],
            client["tags"],
            client["user"]
        ]));
    }
    testkit::with_reference(&seen, |ours, theirs| assert_eq!(ours, theirs));
}

/// A reload that brings an account JWT already past its `exp` closes the account's
/// connections with `Authorization Violation` (nats-server re-authenticates every
/// connection on a reload, and the account has expired).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_an_expired_account_jwt_closes_its_connections() {
    let op = Operator::new();
    for kind in impls() {
        let mut p = Proc::start(kind, &conf(&op, json!({}), json!({}))).await;
        let (jwt, user) = op.user(&op.a, json!({}), json!({}));
        let mut raw = must_login(kind, p.port, &jwt, &user).await;
        let outcome = p
            .reload_with(&conf(&op, json!({}), json!({ "exp": now() - 10 })))
            .await;
        assert!(outcome.contains("Reloaded"), "{kind:?}: {outcome}");
        assert_eq!(closed(&mut raw).await, vec![AUTH_VIOLATION], "{kind:?}");
        assert_eq!(
            refused(p.port, &jwt, &user).await,
            vec![AUTH_VIOLATION],
            "{kind:?}"
        );
    }
}
