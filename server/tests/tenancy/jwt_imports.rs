//! Exports and imports of account JWTs (operator mode): the same operator, account, user and
//! activation JWTs on natsd and on nats-server.

use std::time::Duration;

use futures::StreamExt as _;
use nkeys::KeyPair;
use testkit::jwt::{activation, creds, now, Operator};

use crate::configs::HEADER;
use crate::harness::{impls, Impl, Proc, WAIT};

/// A connection as a new user of `account` (signed by the account's own key).
async fn client(op: &Operator, port: u16, account: &KeyPair) -> async_nats::Client {
    let (jwt, user) = op.user(account, serde_json::json!({}), serde_json::json!({}));
    async_nats::ConnectOptions::new()
        .credentials(&creds(&jwt, &user))
        .unwrap()
        .request_timeout(Some(Duration::from_secs(2)))
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap()
}

/// Answers every request on `subject` with `reply: <subject>`.
async fn responder(client: &async_nats::Client, subject: &str) {
    let mut sub = client.subscribe(subject.to_string()).await.unwrap();
    let c = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let answer = format!("reply: {}", msg.subject);
                let _ = c.publish(reply, answer.into()).await;
            }
        }
    });
    settle(client).await;
}

/// Answers every request on `subject` twice, then publishes `ev.done`.
async fn twice_responder(client: &async_nats::Client, subject: &str) {
    let mut sub = client.subscribe(subject.to_string()).await.unwrap();
    let c = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = c.publish(reply.clone(), "1".into()).await;
                let _ = c.publish(reply, "2".into()).await;
                let _ = c.publish("ev.done", "".into()).await;
            }
        }
    });
    settle(client).await;
}

/// Returns once the server has handled everything `client` sent before (a flush only writes
/// it out): a request nobody answers comes back as "no responders".
async fn settle(client: &async_nats::Client) {
    let answer = tokio::time::timeout(WAIT, client.request("settle.none", "".into())).await;
    assert!(
        matches!(&answer, Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "{answer:?}"
    );
}

/// Waits for `subject` on `sub`, returning what came before it.
async fn until(sub: &mut async_nats::Subscriber, subject: &str) -> Vec<String> {
    let mut before = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        if msg.subject.as_str() == subject {
            return before;
        }
        before.push(msg.subject.to_string());
    }
}

/// A request's answer, or `no responders` (nobody, or no import, took it).
async fn ask(kind: Impl, client: &async_nats::Client, subject: &str) -> String {
    match tokio::time::timeout(WAIT, client.request(subject.to_string(), "q".into())).await {
        Ok(Ok(msg)) => String::from_utf8_lossy(&msg.payload).into_owned(),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            "no responders".to_string()
        }
        other => panic!("{kind:?}: request on {subject}: {other:?}"),
    }
}

fn exports() -> serde_json::Value {
    serde_json::json!([
        { "subject": "svc.>", "type": "service" },
        { "subject": "ev.>", "type": "stream" },
        { "subject": "priv.>", "type": "service", "token_req": true },
        { "subject": "pev.>", "type": "stream", "token_req": true },
        { "subject": "twice.s.>", "type": "service", "response_type": "Stream" },
        { "subject": "twice.o.>", "type": "service", "response_type": "Singleton" },
        // The importer's own key must be the second token.
        { "subject": "tok.*.q", "type": "service", "account_token_position": 2 },
    ])
}

/// Service imports answer requests across accounts (renamed with `local_subject` or not),
/// stream imports deliver across accounts (renamed, or under a `to` prefix), and a private
/// export is imported only with a valid activation: none, one the export revokes or an
/// expired one leave the import out, and one issued to another account makes the account
/// unusable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_jwt_exports_and_imports_route_between_accounts() {
    let op = Operator::new();
    let (b, c, d) = (
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
    );
    let a_key = op.a.public_key();
    // Issued by the exporter's signing key, naming the exporter.
    let by_signer = serde_json::json!({ "issuer_account": a_key });
    let b_service = activation(
        &op.a_signer,
        &b,
        "priv.>",
        "service",
        by_signer.clone(),
        serde_json::json!({}),
    );
    let b_stream = activation(
        &op.a,
        &b,
        "pev.>",
        "stream",
        serde_json::json!({}),
        serde_json::json!({}),
    );
    let c_revoked = activation(
        &op.a,
        &c,
        "priv.q",
        "service",
        serde_json::json!({}),
        serde_json::json!({}),
    );
    let c_expired = activation(
        &op.a,
        &c,
        "pev.>",
        "stream",
        serde_json::json!({}),
        serde_json::json!({ "exp": now() - 5 }),
    );
    let mut a_exports = exports();
    let revoked_at = now() + 5;
    a_exports[2]["revocations"] = serde_json::json!({ c.public_key(): revoked_at });
    let config = format!(
        "{HEADER}{}",
        op.config_with_accounts(&[
            (
                &op.a,
                serde_json::json!({ "signing_keys": [op.a_signer.public_key()], "exports": a_exports }),
            ),
            (
                &b,
                serde_json::json!({ "imports": [
                    { "subject": "svc.echo", "account": a_key, "type": "service" },
                    { "subject": "svc.*", "local_subject": "ask.$1", "account": a_key, "type": "service" },
                    { "subject": "svc.*.*", "local_subject": "swap.$2.$1", "account": a_key, "type": "service" },
                    { "subject": "ev.>", "local_subject": "from_a.>", "account": a_key, "type": "stream" },
                    { "subject": "ev.x", "to": "pre", "account": a_key, "type": "stream" },
                    { "subject": "priv.q", "account": a_key, "type": "service", "token": b_service },
                    { "subject": "priv.untokened", "account": a_key, "type": "service" },
                    { "subject": "pev.>", "account": a_key, "type": "stream", "token": b_stream },
                    { "subject": "twice.s.>", "account": a_key, "type": "service" },
                    { "subject": "twice.o.>", "account": a_key, "type": "service" },
                    { "subject": format!("tok.{}.q", b.public_key()), "account": a_key, "type": "service" },
                ]}),
            ),
            (
                &c,
                serde_json::json!({ "imports": [
                    { "subject": "priv.q", "account": a_key, "type": "service", "token": c_revoked },
                    { "subject": "pev.>", "account": a_key, "type": "stream", "token": c_expired },
                    // B's key in the token position: not C's to import.
                    { "subject": format!("tok.{}.q", b.public_key()), "account": a_key, "type": "service" },
                ]}),
            ),
            (
                &d,
                // B's activation is not D's: nats-server refuses the whole account.
                serde_json::json!({ "imports": [
                    { "subject": "priv.b", "account": a_key, "type": "service",
                      "token": activation(&op.a, &b, "priv.b", "service", serde_json::json!({}), serde_json::json!({})) },
                ]}),
            ),
        ])
    );
    for kind in impls() {
        let p = Proc::start(kind, &config).await;
        let (jwt, user) = op.user(&d, serde_json::json!({}), serde_json::json!({}));
        let refused = async_nats::ConnectOptions::new()
            .credentials(&creds(&jwt, &user))
            .unwrap()
            .connect(format!("nats://127.0.0.1:{}", p.port));
        assert!(
            matches!(refused.await, Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation),
            "{kind:?}: a user of an account with another account's activation"
        );
        let a = client(&op, p.port, &op.a).await;
        let bc = client(&op, p.port, &b).await;
        let cc = client(&op, p.port, &c).await;
        responder(&a, "svc.>").await;
        responder(&a, "priv.>").await;
        responder(&a, "tok.>").await;
        // `/accountz` lists the imports that were added, as the configuration's are.
        let imports_from_a = |account: String| {
            let p = &p;
            let a_key = a_key.clone();
            async move {
                let accountz = p.http_json(&format!("/accountz?acc={account}")).await;
                let mut list: Vec<String> = accountz["account_detail"]["imports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|i| i["account"] == a_key.as_str())
                    .map(|i| format!("{} {} {}", i["type"], i["subject"], i["local_subject"]))
                    .collect();
                list.sort();
                list
            }
        };
        let tok = format!("tok.{}.q", b.public_key());
        let mut expected: Vec<String> = [
            ("service", "priv.q", "priv.q"),
            ("service", "svc.*", "ask.*"),
            ("service", "svc.*.*", "swap.*.*"),
            ("service", "svc.echo", "svc.echo"),
            ("service", tok.as_str(), tok.as_str()),
            ("service", "twice.o.>", "twice.o.>"),
            ("service", "twice.s.>", "twice.s.>"),
            ("stream", "ev.>", "from_a.>"),
            ("stream", "ev.x", "pre.ev.x"),
            ("stream", "pev.>", "pev.>"),
        ]
        .iter()
        .map(|(t, s, l)| format!("\"{t}\" \"{s}\" \"{l}\""))
        .collect();
        expected.sort();
        assert_eq!(imports_from_a(b.public_key()).await, expected, "{kind:?}");
        let accountz = p.http_json(&format!("/accountz?acc={a_key}")).await;
        let revoked: Vec<&serde_json::Value> = accountz["account_detail"]["exports"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e.get("revoked_activations").is_some())
            .collect();
        assert_eq!(revoked.len(), 1, "{kind:?}: {accountz}");
        assert_eq!(revoked[0]["subject"], "priv.>", "{kind:?}");
        assert_eq!(revoked[0]["token_req"], true, "{kind:?}");
        assert_eq!(
            revoked[0]["revoked_activations"][c.public_key()],
            natsd_conf::timestamp::rfc3339_ns(revoked_at as u64 * 1_000_000_000),
            "{kind:?}"
        );
        assert_eq!(
            imports_from_a(c.public_key()).await,
            Vec::<String>::new(),
            "{kind:?}"
        );

        assert_eq!(
            ask(kind, &bc, "svc.echo").await,
            "reply: svc.echo",
            "{kind:?}"
        );
        assert_eq!(
            ask(kind, &bc, "swap.x.y").await,
            "reply: svc.y.x",
            "{kind:?}"
        );
        assert_eq!(
            ask(kind, &bc, "ask.other").await,
            "reply: svc.other",
            "{kind:?}"
        );
        assert_eq!(ask(kind, &bc, "priv.q").await, "reply: priv.q", "{kind:?}");
        assert_eq!(
            ask(kind, &bc, "priv.untokened").await,
            "no responders",
            "{kind:?}"
        );
        assert_eq!(
            ask(kind, &cc, "priv.q").await,
            "no responders",
            "{kind:?}: revoked"
        );
        assert_eq!(
            ask(kind, &cc, "svc.echo").await,
            "no responders",
            "{kind:?}: not imported"
        );

        let token_subject = format!("tok.{}.q", b.public_key());
        assert_eq!(
            ask(kind, &bc, &token_subject).await,
            format!("reply: {token_subject}"),
            "{kind:?}"
        );
        assert_eq!(
            ask(kind, &cc, &token_subject).await,
            "no responders",
            "{kind:?}: another account's token"
        );
        let mut b_events = bc.subscribe(">").await.unwrap();
        let mut c_events = cc.subscribe(">").await.unwrap();
        // Each importer's own marker shows its subscription is in place, then ends what it
        // received.
        for (client, events) in [(&bc, &mut b_events), (&cc, &mut c_events)] {
            client.publish("ready", "".into()).await.unwrap();
            assert_eq!(until(events, "ready").await, Vec::<String>::new());
        }
        for subject in ["ev.x", "pev.y", "other"] {
            a.publish(subject, "e".into()).await.unwrap();
        }
        settle(&a).await;
        let mut got = Vec::new();
        for (name, client, events) in [("B", &bc, &mut b_events), ("C", &cc, &mut c_events)] {
            client.publish("end", "".into()).await.unwrap();
            got.extend(
                until(events, "end")
                    .await
                    .into_iter()
                    .map(|s| format!("{name} {s}")),
            );
        }
        // A `Stream` export's requester gets every response, a `Singleton` one's the first.
        twice_responder(&a, "twice.>").await;
        for (subject, expected) in [("twice.s.1", 2), ("twice.o.1", 1)] {
            bc.publish_with_reply(subject, "inbox.b", "q".into())
                .await
                .unwrap();
            let before = until(&mut b_events, "from_a.done").await;
            let responses = before.iter().filter(|s| *s == "inbox.b").count();
            assert_eq!(responses, expected, "{kind:?}: {subject}: {before:?}");
        }
        got.sort();
        assert_eq!(got, vec!["B from_a.x", "B pev.y", "B pre.ev.x"], "{kind:?}");
    }
}

/// With the directory resolver, pushed account JWTs change the imports at once: an import
/// gains its activation, then the exporter revokes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_account_jwts_change_imports() {
    let op = Operator::new();
    let b = KeyPair::new_account();
    let a_key = op.a.public_key();
    let b_claims = |token: Option<&str>| {
        let mut import =
            serde_json::json!({ "subject": "priv.q", "account": a_key, "type": "service" });
        if let Some(t) = token {
            import["token"] = t.into();
        }
        serde_json::json!({ "imports": [import] })
    };
    let a_claims = |revoke: bool| {
        let mut e = exports();
        if revoke {
            e[2]["revocations"] = serde_json::json!({ b.public_key(): now() + 5 });
        }
        serde_json::json!({ "exports": e })
    };
    for kind in impls() {
        let dir = tempfile::tempdir().unwrap();
        let memory = op.config_with_accounts(&[(&op.a, a_claims(false)), (&b, b_claims(None))]);
        let conf = format!(
            "{HEADER}{}",
            memory.replace(
                "resolver: MEMORY",
                &format!(
                    "resolver: {{ type: full, dir: \"{}\" }}",
                    dir.path().join("jwt").display()
                )
            )
        );
        let p = Proc::start(kind, &conf).await;
        let sys = client(&op, p.port, &op.sys).await;
        let a = client(&op, p.port, &op.a).await;
        let bc = client(&op, p.port, &b).await;
        responder(&a, "priv.>").await;
        assert_eq!(ask(kind, &bc, "priv.q").await, "no responders", "{kind:?}");

        let push = |token: String| {
            let sys = sys.clone();
            async move {
                let reply =
                    tokio::time::timeout(WAIT, sys.request("$SYS.REQ.CLAIMS.UPDATE", token.into()))
                        .await
                        .unwrap()
                        .unwrap();
                let answer: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
                assert_eq!(answer["data"]["code"], 200, "{kind:?}: {answer}");
            }
        };
        // Claims whose import carries another account's activation are not taken.
        let foreign = activation(
            &op.a,
            &KeyPair::new_account(),
            "priv.q",
            "service",
            serde_json::json!({}),
            serde_json::json!({}),
        );
        let reply = tokio::time::timeout(
            WAIT,
            sys.request(
                "$SYS.REQ.CLAIMS.UPDATE",
                op.account_jwt(&b, b_claims(Some(&foreign))).into(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(answer["error"]["code"], 500, "{kind:?}: {answer}");
        assert!(
            answer["error"]["description"]
                .as_str()
                .unwrap()
                .starts_with("jwt validation failed - validation errors: ["),
            "{kind:?}: {answer}"
        );
        let token = activation(
            &op.a,
            &b,
            "priv.q",
            "service",
            serde_json::json!({}),
            serde_json::json!({}),
        );
        push(op.account_jwt(&b, b_claims(Some(&token)))).await;
        assert_eq!(
            ask(kind, &bc, "priv.q").await,
            "reply: priv.q",
            "{kind:?}: activated"
        );
        push(op.account_jwt(&op.a, a_claims(true))).await;
        assert_eq!(
            ask(kind, &bc, "priv.q").await,
            "no responders",
            "{kind:?}: revoked"
        );
    }
}

/// An import admitted by an activation that expires stops routing when it does: requests
/// find no responders and streamed messages no longer arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_stop_when_their_activation_expires() {
    let op = Operator::new();
    let b = KeyPair::new_account();
    let a_key = op.a.public_key();
    for kind in impls() {
        // Long enough for the server to start and the first checks to pass.
        let expires = serde_json::json!({ "exp": now() + 4 });
        let service = activation(
            &op.a,
            &b,
            // nats-server lapses an import only when its activation names the very subject.
            "priv.q",
            "service",
            serde_json::json!({}),
            expires.clone(),
        );
        let stream = activation(&op.a, &b, "pev.>", "stream", serde_json::json!({}), expires);
        let config = format!(
            "{HEADER}{}",
            op.config_with_accounts(&[
                (&op.a, serde_json::json!({ "exports": exports() })),
                (
                    &b,
                    serde_json::json!({ "imports": [
                        { "subject": "priv.q", "account": a_key, "type": "service", "token": service },
                        { "subject": "pev.>", "account": a_key, "type": "stream", "token": stream },
                    ]}),
                ),
            ])
        );
        let p = Proc::start(kind, &config).await;
        let a = client(&op, p.port, &op.a).await;
        let bc = client(&op, p.port, &b).await;
        responder(&a, "priv.>").await;
        let mut events = bc.subscribe("pev.>").await.unwrap();
        let mut markers = bc.subscribe("marker").await.unwrap();
        // Whether a message A publishes on `pev.x` still reaches B (B's own marker, published
        // after A's message has been handled, bounds the wait).
        let mut streamed = async || {
            a.publish("pev.x", "".into()).await.unwrap();
            settle(&a).await;
            bc.publish("marker", "".into()).await.unwrap();
            tokio::time::timeout(WAIT, markers.next())
                .await
                .unwrap()
                .unwrap();
            let mut got = false;
            while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, events.next()).await {
                got = true;
            }
            got
        };
        assert_eq!(ask(kind, &bc, "priv.q").await, "reply: priv.q", "{kind:?}");
        assert!(streamed().await, "{kind:?}: streamed before expiry");
        testkit::eventually_async(
            WAIT,
            format!("{kind:?}: the service import to lapse"),
            async || ask(kind, &bc, "priv.q").await == "no responders",
        )
        .await;
        assert!(!streamed().await, "{kind:?}: streamed after expiry");
    }
}
