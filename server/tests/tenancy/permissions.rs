//! Publish/subscribe permissions, allow/deny, wildcards, queues and allow_responses, with the
//! exact -ERR texts, checked on natsd and on nats-server.

use crate::configs;
use crate::harness::{impls, pub_violation, sub_violation, Impl, Proc, Raw};

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_service_permissions_both_directions() {
    for kind in impls() {
        let p = Proc::start(kind, &configs::base()).await;
        let mut watcher = Raw::user(p.port, "shop", "shoppw").await;
        watcher.send("SUB > 1\r\n").await;
        assert!(watcher.sync().await.is_empty());

        let mut svc = Raw::user(p.port, "order-service", "pw2").await;
        svc.send("SUB payments.* 1\r\nSUB inventory.* 2\r\nSUB orders.new 3\r\nSUB payments 4\r\nSUB > 5\r\n")
            .await;
        assert_eq!(
            svc.sync().await,
            vec![
                sub_violation("orders.new"),
                sub_violation("payments"),
                sub_violation(">"),
            ],
            "{kind:?}"
        );
        svc.publish("orders.new", None, "o1").await;
        svc.publish("orders.new.x", None, "o2").await;
        svc.publish("events.order.created", None, "e1").await;
        svc.publish("payments.x", None, "p1").await;
        svc.publish("events.order", None, "e2").await;
        assert_eq!(
            svc.sync().await,
            vec![
                pub_violation("orders.new.x"),
                pub_violation("payments.x"),
                pub_violation("events.order"),
            ],
            "{kind:?}"
        );
        // Denied publishes reached no one.
        assert_eq!(
            watcher.sync().await,
            strs(&["MSG orders.new 1 o1", "MSG events.order.created 1 e1"]),
            "{kind:?}"
        );
        // Deliveries: only what the allowed subscriptions match.
        watcher.publish("payments.card", None, "pay").await;
        watcher.publish("inventory.sku1", None, "inv").await;
        watcher.publish("orders.new", None, "no").await;
        watcher.publish("payments.card.x", None, "no").await;
        watcher.sync().await;
        assert_eq!(
            svc.sync().await,
            strs(&["MSG payments.card 1 pay", "MSG inventory.sku1 2 inv"]),
            "{kind:?}"
        );
    }
}

/// natsd is stricter than nats-server on purpose (docs/differences.md): a subscription must
/// only be able to match allowed subjects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wider_wildcard_than_allowed_is_refused_by_natsd_only() {
    for kind in impls() {
        let p = Proc::start(kind, &configs::base()).await;
        let mut svc = Raw::user(p.port, "order-service", "pw2").await;
        svc.send("SUB payments.> 1\r\nSUB payments.* 2\r\n").await;
        let expected = match kind {
            Impl::Natsd => vec![sub_violation("payments.>")],
            Impl::NatsServer => vec![],
        };
        assert_eq!(svc.sync().await, expected, "{kind:?}");
        // The refused subscription receives nothing: payments.a.b arrives nowhere on natsd.
        let mut shop = Raw::user(p.port, "shop", "shoppw").await;
        shop.publish("payments.a.b", None, "deep").await;
        shop.publish("payments.a", None, "flat").await;
        shop.sync().await;
        let mut expected = match kind {
            Impl::Natsd => strs(&["MSG payments.a 2 flat"]),
            Impl::NatsServer => strs(&[
                "MSG payments.a.b 1 deep",
                "MSG payments.a 1 flat",
                "MSG payments.a 2 flat",
            ]),
        };
        let mut got = svc.sync().await;
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_lists_filter_wildcard_deliveries_and_queues() {
    for kind in impls() {
        let p = Proc::start(kind, &configs::base()).await;
        let mut aud = Raw::user(p.port, "auditor", "auditpw").await;
        aud.send(concat!(
            "SUB orders.> 1\r\n",
            "SUB orders.secret 2\r\n",
            "SUB orders.x.private 3\r\n",
            "SUB q.a workers 4\r\n",
            "SUB q.a 5\r\n",
            "SUB q.a other 6\r\n",
            "SUB other 7\r\n",
        ))
        .await;
        assert_eq!(
            aud.sync().await,
            vec![
                sub_violation("orders.secret"),
                sub_violation("orders.x.private"),
                sub_violation("q.a"),
                "-ERR 'Permissions Violation for Subscription to \"q.a\" using queue \"other\"'"
                    .to_string(),
                sub_violation("other"),
            ],
            "{kind:?}"
        );
        // Publish deny with a wildcard; everything else is allowed (no allow list).
        aud.publish("orders.new", None, "x").await;
        aud.publish("orders.a.b", None, "x").await;
        aud.publish("reports.daily", None, "ok").await;
        assert_eq!(
            aud.sync().await,
            vec![pub_violation("orders.new"), pub_violation("orders.a.b")],
            "{kind:?}"
        );
        let mut shop = Raw::user(p.port, "shop", "shoppw").await;
        for subject in [
            "orders.ok",
            "orders.secret",
            "orders.a.private",
            "orders.a.public",
            "orders.secret.x",
            "q.a",
        ] {
            shop.publish(subject, None, subject).await;
        }
        shop.sync().await;
        assert_eq!(
            aud.sync().await,
            strs(&[
                "MSG orders.ok 1 orders.ok",
                "MSG orders.a.public 1 orders.a.public",
                "MSG orders.secret.x 1 orders.secret.x",
                "MSG q.a 4 q.a",
            ]),
            "{kind:?}"
        );
        // The connection stayed open through all of it.
        aud.publish("reports.daily", None, "still").await;
        assert!(aud.sync().await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_responses_lets_a_responder_reply_once() {
    for kind in impls() {
        let p = Proc::start(kind, &configs::base()).await;
        let mut pricing = Raw::user(p.port, "pricing", "pricingpw").await;
        pricing.send("SUB pricing.> 1\r\n").await;
        assert!(pricing.sync().await.is_empty());
        let mut requester = Raw::user(p.port, "shop", "shoppw").await;
        requester
            .send("SUB _INBOX.r1 9\r\nSUB _INBOX.other 8\r\n")
            .await;
        requester
            .publish("pricing.get", Some("_INBOX.r1"), "q")
            .await;
        requester.sync().await;
        assert_eq!(
            pricing.sync().await,
            strs(&["MSG pricing.get 1 _INBOX.r1 q"]),
            "{kind:?}"
        );
        pricing.publish("_INBOX.r1", None, "first").await;
        pricing.publish("_INBOX.r1", None, "second").await;
        pricing.publish("_INBOX.other", None, "never-asked").await;
        assert_eq!(
            pricing.sync().await,
            vec![pub_violation("_INBOX.r1"), pub_violation("_INBOX.other")],
            "{kind:?}"
        );
        assert_eq!(
            requester.sync().await,
            strs(&["MSG _INBOX.r1 9 first"]),
            "{kind:?}"
        );

        // max: 2 with an explicit publish deny of everything.
        let mut quoter = Raw::user(p.port, "quoter", "quoterpw").await;
        quoter.send("SUB quote.> 1\r\n").await;
        quoter.sync().await;
        requester
            .publish("quote.get", Some("_INBOX.other"), "q")
            .await;
        requester.sync().await;
        assert_eq!(
            quoter.sync().await,
            strs(&["MSG quote.get 1 _INBOX.other q"])
        );
        for n in ["1", "2", "3"] {
            quoter.publish("_INBOX.other", None, n).await;
        }
        quoter.publish("quote.get", None, "x").await;
        assert_eq!(
            quoter.sync().await,
            vec![pub_violation("_INBOX.other"), pub_violation("quote.get")],
            "{kind:?}"
        );
        assert_eq!(
            requester.sync().await,
            strs(&["MSG _INBOX.other 8 1", "MSG _INBOX.other 8 2"]),
            "{kind:?}"
        );
    }
}

/// Allow_responses alone (no publish block): what may the responder publish elsewhere?
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_responses_without_publish_rules_denies_other_publishes() {
    for kind in impls() {
        let p = Proc::start(kind, &configs::base()).await;
        let mut pricing = Raw::user(p.port, "pricing", "pricingpw").await;
        pricing.publish("anything.else", None, "x").await;
        assert_eq!(
            pricing.sync().await,
            vec![pub_violation("anything.else")],
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_responses_expire() {
    for kind in impls() {
        let p = Proc::start(kind, &configs::base()).await;
        let mut slow = Raw::user(p.port, "slow", "slowpw").await;
        slow.send("SUB slow.> 1\r\n").await;
        slow.sync().await;
        let mut requester = Raw::user(p.port, "shop", "shoppw").await;
        requester
            .send("SUB _INBOX.late 9\r\nSUB _INBOX.quick 8\r\n")
            .await;
        requester.publish("slow.a", Some("_INBOX.late"), "q1").await;
        requester.sync().await;
        assert_eq!(slow.sync().await.len(), 1);
        // The allowance (300ms) runs out: what is being tested here is elapsed time itself.
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        slow.publish("_INBOX.late", None, "too-late").await;
        assert_eq!(
            slow.sync().await,
            vec![pub_violation("_INBOX.late")],
            "{kind:?}"
        );
        // A fresh request may be answered at once, several times (max 5).
        requester
            .publish("slow.b", Some("_INBOX.quick"), "q2")
            .await;
        requester.sync().await;
        assert_eq!(slow.sync().await.len(), 1);
        slow.publish("_INBOX.quick", None, "a").await;
        slow.publish("_INBOX.quick", None, "b").await;
        assert!(slow.sync().await.is_empty(), "{kind:?}");
        assert_eq!(
            requester.sync().await,
            strs(&["MSG _INBOX.quick 8 a", "MSG _INBOX.quick 8 b"]),
            "{kind:?}"
        );
    }
}

/// The official Rust client reports violations as server errors and stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_reports_violations_and_stays_connected() {
    for kind in impls() {
        let p = Proc::start(kind, &configs::base()).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::with_user_and_password(
            "order-service".into(),
            "pw2".into(),
        )
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(err) = event {
                    let _ = tx.send(err.to_string());
                }
            }
        })
        .connect(p.url())
        .await
        .unwrap();
        let mut watcher = Raw::user(p.port, "shop", "shoppw").await;
        watcher.send("SUB > 1\r\n").await;
        watcher.sync().await;
        client.publish("payments.x", "no".into()).await.unwrap();
        client.flush().await.unwrap();
        let err = tokio::time::timeout(crate::harness::WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            err.to_lowercase()
                .contains("permissions violation for publish to \"payments.x\""),
            "{kind:?}: {err}"
        );
        client.publish("orders.ok", "yes".into()).await.unwrap();
        client.flush().await.unwrap();
        assert_eq!(
            watcher.sync_until(1).await,
            strs(&["MSG orders.ok 1 yes"]),
            "{kind:?}"
        );
    }
}
