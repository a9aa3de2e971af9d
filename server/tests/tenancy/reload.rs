//! Hot reload: SIGHUP and `--signal reload=`, users added/removed/changed, permissions
//! tightened on live connections, broken files refused.

use futures::StreamExt;

use crate::configs;
use crate::harness::{impls, sub_violation, Impl, Login, Proc, Raw, AUTH_VIOLATION, WAIT};

async fn load_time(p: &Proc) -> String {
    p.http_json("/varz").await["config_load_time"]
        .as_str()
        .expect("config_load_time")
        .to_string()
}

/// Wait until /varz shows a load time other than `before` (the reload applied).
async fn assert_load_time_changed(p: &Proc, before: &str) {
    testkit::eventually_async(
        WAIT,
        format!("{:?}: config_load_time to change", p.kind),
        async || load_time(p).await != before,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_an_account_while_existing_clients_keep_receiving() {
    for kind in impls() {
        let mut p = Proc::start(kind, &configs::base()).await;
        let before = load_time(&p).await;
        let shop =
            async_nats::ConnectOptions::with_user_and_password("shop".into(), "shoppw".into())
                .connect(p.url())
                .await
                .unwrap();
        let mut sub = shop.subscribe("ticks").await.unwrap();
        shop.flush().await.unwrap();
        assert!(matches!(
            Raw::login(p.port, "newt", "newtpw").await,
            Login::Refused(_)
        ));

        // Load times have one-second resolution in nats-server's /varz.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let conf = configs::with_accounts(
            &configs::shop_users(""),
            "NEWT { users: [ { user: newt, password: newtpw } ] }",
        );
        let outcome = p.reload_with(&conf).await;
        assert!(
            outcome.contains("Reloaded server configuration"),
            "{kind:?}: {outcome}"
        );
        assert_load_time_changed(&p, &before).await;

        let newt = Raw::user(p.port, "newt", "newtpw").await;
        assert_eq!(
            newt.connect_info.as_ref().unwrap()["remote_account"],
            "NEWT"
        );
        // The old client's connection and subscription survived the reload untouched.
        shop.publish("ticks", "after-reload".into()).await.unwrap();
        let msg = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&msg.payload[..], b"after-reload", "{kind:?}");
        assert!(
            shop.connection_state() == async_nats::connection::State::Connected,
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_removing_a_user_closes_it_silently_and_refuses_new_logins() {
    for kind in impls() {
        let mut p = Proc::start(kind, &configs::base()).await;
        let mut blog = Raw::user(p.port, "blog", "blogpw").await;
        let mut shop = Raw::user(p.port, "shop", "shoppw").await;
        shop.send("SUB keep 1\r\n").await;
        shop.sync().await;
        let conf = configs::with_blog(&configs::shop_users(""), "", "");
        let outcome = p.reload_with(&conf).await;
        assert!(
            outcome.contains("Reloaded server configuration"),
            "{kind:?}: {outcome}"
        );
        assert_eq!(blog.until_closed().await, Vec::<String>::new(), "{kind:?}");
        assert!(matches!(
            Raw::login(p.port, "blog", "blogpw").await,
            Login::Refused(_)
        ));
        // Unrelated connections and their subscriptions are untouched.
        shop.publish("keep", None, "k").await;
        assert_eq!(
            shop.sync().await,
            vec!["MSG keep 1 k".to_string()],
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changed_password_gets_authorization_violation() {
    for kind in impls() {
        let mut p = Proc::start(kind, &configs::base()).await;
        let mut blog = Raw::user(p.port, "blog", "blogpw").await;
        let mut shop = Raw::user(p.port, "shop", "shoppw").await;
        let conf = configs::with_blog(
            &configs::shop_users(""),
            "{ user: blog, password: newblogpw }",
            "",
        );
        let outcome = p.reload_with(&conf).await;
        assert!(
            outcome.contains("Reloaded server configuration"),
            "{kind:?}: {outcome}"
        );
        assert_eq!(blog.until_closed().await, vec![AUTH_VIOLATION], "{kind:?}");
        assert!(matches!(
            Raw::login(p.port, "blog", "blogpw").await,
            Login::Refused(_)
        ));
        Raw::user(p.port, "blog", "newblogpw").await;
        assert!(shop.sync().await.is_empty(), "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_tightened_permissions_apply_to_live_connections() {
    for kind in impls() {
        let mut p = Proc::start(kind, &configs::base()).await;
        let mut aud = Raw::user(p.port, "auditor", "auditpw").await;
        aud.send("SUB orders.a 1\r\nSUB orders.b.c 2\r\nSUB orders.> 3\r\n")
            .await;
        assert!(aud.sync().await.is_empty(), "{kind:?}");
        let mut other = Raw::user(p.port, "order-service", "pw2").await;
        other.send("SUB payments.* 7\r\n").await;
        other.sync().await;

        // auditor: subscribe narrowed to orders.b.>, publish narrowed to reports.*.
        let narrowed = configs::shop_users("").replace(
            r#"publish: { deny: ["orders.>"] }
          subscribe: { allow: ["orders.>", "q.> workers"], deny: ["orders.secret", "orders.*.private"] }"#,
            r#"publish: ["reports.*"]
          subscribe: ["orders.b.>"]"#,
        );
        assert_ne!(narrowed, configs::shop_users(""));
        let outcome = p.reload_with(&configs::with_accounts(&narrowed, "")).await;
        assert!(
            outcome.contains("Reloaded server configuration"),
            "{kind:?}: {outcome}"
        );
        let mut errs = aud.sync().await;
        errs.sort();
        assert_eq!(
            errs,
            vec![
                "-ERR 'Permissions Violation for Subscription to \"orders.>\" (sid \"3\")'"
                    .to_string(),
                "-ERR 'Permissions Violation for Subscription to \"orders.a\" (sid \"1\")'"
                    .to_string(),
            ],
            "{kind:?}"
        );
        let mut shop = Raw::user(p.port, "shop", "shoppw").await;
        shop.publish("orders.a", None, "gone").await;
        shop.publish("orders.b.c", None, "kept").await;
        shop.publish("payments.x", None, "untouched").await;
        shop.sync().await;
        assert_eq!(
            aud.sync().await,
            vec!["MSG orders.b.c 2 kept".to_string()],
            "{kind:?}"
        );
        assert_eq!(
            other.sync().await,
            vec!["MSG payments.x 7 untouched".to_string()],
            "{kind:?}"
        );
        // Publish narrowing applies on the next PUB; the connection stays.
        aud.publish("reports.x", None, "r").await;
        aud.publish("misc", None, "m").await;
        assert_eq!(
            aud.sync().await,
            vec![crate::harness::pub_violation("misc")],
            "{kind:?}"
        );
        // And a new subscription is checked against the new rules.
        aud.send("SUB orders.a 4\r\n").await;
        assert_eq!(
            aud.sync().await,
            vec![sub_violation("orders.a")],
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_is_refused_and_the_old_one_keeps_serving() {
    for kind in impls() {
        let mut p = Proc::start(kind, &configs::base()).await;
        let before = load_time(&p).await;
        let mut shop = Raw::user(p.port, "shop", "shoppw").await;
        shop.send("SUB a 1\r\n").await;
        shop.sync().await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        for broken in [
            format!("{}\nbogus_field: 1\n", configs::base()),
            format!(
                "{}\naccounts {{ X {{ users: [ {{ user: x password: y }} ] }}",
                configs::HEADER
            ),
        ] {
            let outcome = p.reload_with(&broken).await;
            assert!(
                outcome.contains("Failed to reload server configuration: "),
                "{kind:?}: {outcome}"
            );
            assert_eq!(load_time(&p).await, before, "{kind:?}");
            shop.publish("a", None, "still").await;
            assert_eq!(
                shop.sync().await,
                vec!["MSG a 1 still".to_string()],
                "{kind:?}"
            );
            Raw::user(p.port, "blog", "blogpw").await;
        }
    }
}

/// `natsd --signal reload=<pid>` and `=<pidfile>` reach the running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_flag_reloads_by_pid_and_pidfile() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("natsd.pid");
    let conf_path = dir.path().join("nats.conf");
    let with_pid = |accounts: &str| {
        format!(
            "pid_file: \"{}\"\n{}",
            pid_file.display(),
            configs::with_accounts(&configs::shop_users(""), accounts)
        )
    };
    std::fs::write(&conf_path, with_pid("")).unwrap();
    let mut p = Proc::start_in(Impl::Natsd, dir, conf_path.clone()).await;
    for (n, target) in [p.pid().to_string(), pid_file.display().to_string()]
        .into_iter()
        .enumerate()
    {
        let user = format!("u{n}");
        std::fs::write(
            &conf_path,
            with_pid(&format!(
                "T{n} {{ users: [ {{ user: {user}, password: pw }} ] }}"
            )),
        )
        .unwrap();
        let from = p.log_len();
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_natsd"))
            .arg("--signal")
            .arg(format!("reload={target}"))
            .status()
            .unwrap();
        assert!(status.success());
        let outcome = p.wait_reload_outcome(from).await;
        assert!(
            outcome.contains("Reloaded server configuration"),
            "{outcome}"
        );
        Raw::user(p.port, &user, "pw").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_moving_a_user_or_removing_an_account_closes_silently() {
    for kind in impls() {
        let conf = configs::with_accounts(
            &configs::shop_users(""),
            "GONE { users: [ { user: gone, password: gonepw } ] }",
        );
        let mut p = Proc::start(kind, &conf).await;
        let mut blog = Raw::user(p.port, "blog", "blogpw").await;
        let mut gone = Raw::user(p.port, "gone", "gonepw").await;
        let mut shop = Raw::user(p.port, "shop", "shoppw").await;
        // blog moves from BLOG to NEWS; GONE disappears.
        let conf = configs::with_blog(
            &configs::shop_users(""),
            "",
            "NEWS { users: [ { user: blog, password: blogpw } ] }",
        );
        let outcome = p.reload_with(&conf).await;
        assert!(
            outcome.contains("Reloaded server configuration"),
            "{kind:?}: {outcome}"
        );
        assert!(blog.until_closed().await.is_empty(), "{kind:?}");
        assert!(gone.until_closed().await.is_empty(), "{kind:?}");
        let blog = Raw::user(p.port, "blog", "blogpw").await;
        assert_eq!(
            blog.connect_info.as_ref().unwrap()["remote_account"],
            "NEWS"
        );
        assert!(shop.sync().await.is_empty(), "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_token_clients_unless_the_token_changes() {
    for kind in impls() {
        let conf = |token: &str, max_payload: &str| {
            format!(
                "{}max_payload: {max_payload}\nauthorization {{ token: \"{token}\" }}\n",
                configs::HEADER
            )
        };
        let mut p = Proc::start(kind, &conf("t0k3n", "1MB")).await;
        let mut raw = Raw::open(p.port).await;
        raw.send("CONNECT {\"verbose\":false,\"auth_token\":\"t0k3n\"}\r\nSUB a 1\r\n")
            .await;
        assert!(raw.sync().await.is_empty());
        let outcome = p.reload_with(&conf("t0k3n", "512KB")).await;
        assert!(
            outcome.contains("Reloaded server configuration"),
            "{kind:?}: {outcome}"
        );
        raw.publish("a", None, "same-token").await;
        assert_eq!(
            raw.sync().await,
            vec!["MSG a 1 same-token".to_string()],
            "{kind:?}"
        );
        let outcome = p.reload_with(&conf("n3w", "512KB")).await;
        assert!(
            outcome.contains("Reloaded server configuration"),
            "{kind:?}: {outcome}"
        );
        assert_eq!(raw.until_closed().await, vec![AUTH_VIOLATION], "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_turning_auth_on_rejects_anonymous_clients() {
    for kind in impls() {
        let mut p = Proc::start(kind, configs::HEADER).await;
        let mut anon = Raw::open(p.port).await;
        anon.send("CONNECT {\"verbose\":false}\r\n").await;
        assert!(anon.sync().await.is_empty());
        let conf = format!(
            "{}authorization {{ users: [ {{ user: a, password: a }} ] }}\n",
            configs::HEADER
        );
        let outcome = p.reload_with(&conf).await;
        assert!(
            outcome.contains("Reloaded server configuration"),
            "{kind:?}: {outcome}"
        );
        assert_eq!(anon.until_closed().await, vec![AUTH_VIOLATION], "{kind:?}");
        Raw::user(p.port, "a", "a").await;
    }
}
