//! Accounts and authentication: isolation, logins, bcrypt, the system account.

use futures::StreamExt;

use crate::configs;
use crate::harness::{impls, Impl, Login, Proc, Raw, AUTH_VIOLATION};

async fn client(p: &Proc, user: &str, pass: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), pass.into())
        .connect(p.url())
        .await
        .unwrap_or_else(|e| panic!("{:?}: {user} could not connect: {e}", p.kind))
}

/// Next message's payload, or a panic after the harness wait.
async fn next_payload(sub: &mut async_nats::Subscriber) -> String {
    let msg = tokio::time::timeout(crate::harness::WAIT, sub.next())
        .await
        .expect("no message")
        .expect("subscription ended");
    String::from_utf8(msg.payload.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_isolate_identical_subjects() {
    for kind in impls() {
        let p = Proc::start(kind, &configs::base()).await;
        let shop = client(&p, "shop", "shoppw").await;
        let blog = client(&p, "blog", "blogpw").await;
        let mut shop_all = shop.subscribe(">").await.unwrap();
        let mut blog_all = blog.subscribe(">").await.unwrap();
        shop.flush().await.unwrap();
        blog.flush().await.unwrap();
        shop.publish("orders.1", "from-shop".into()).await.unwrap();
        blog.publish("orders.1", "from-blog".into()).await.unwrap();
        shop.flush().await.unwrap();
        blog.flush().await.unwrap();
        // Each account's own publish arrives; a sentinel published afterwards proves the other
        // account's message is not just late.
        shop.publish("sentinel", "shop-end".into()).await.unwrap();
        blog.publish("sentinel", "blog-end".into()).await.unwrap();
        assert_eq!(next_payload(&mut shop_all).await, "from-shop", "{kind:?}");
        assert_eq!(next_payload(&mut shop_all).await, "shop-end", "{kind:?}");
        assert_eq!(next_payload(&mut blog_all).await, "from-blog", "{kind:?}");
        assert_eq!(next_payload(&mut blog_all).await, "blog-end", "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_unknown_login_is_refused_and_closed() {
    for kind in impls() {
        let p = Proc::start(kind, &configs::base()).await;
        for (user, pass) in [
            ("shop", "wrong"),     // bcrypt user, wrong password
            ("blog", "wrong"),     // plain user, wrong password
            ("nobody", "x"),       // unknown user
            ("order-service", ""), // empty password
        ] {
            match Raw::login(p.port, user, pass).await {
                Login::Ok(_) => panic!("{kind:?}: {user}/{pass} was let in"),
                Login::Refused(lines) => {
                    assert_eq!(lines, vec![AUTH_VIOLATION], "{kind:?} {user}/{pass}")
                }
            }
        }
        // Under auth the first op must be CONNECT.
        let mut raw = Raw::open(p.port).await;
        assert_eq!(raw.info["auth_required"], true, "{kind:?}");
        raw.send("PUB foo 2\r\nhi\r\n").await;
        assert_eq!(raw.until_closed().await, vec![AUTH_VIOLATION], "{kind:?}");
        // The official client reports it as an authorization error.
        let err = async_nats::ConnectOptions::with_user_and_password("shop".into(), "bad".into())
            .connect(p.url())
            .await
            .expect_err("bad password accepted");
        assert!(
            err.to_string()
                .to_lowercase()
                .contains("authorization violation"),
            "{kind:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcrypt_2a_2b_2y_and_plain_users_log_in() {
    for kind in impls() {
        let p = Proc::start(kind, &configs::base()).await;
        for (user, pass, account) in [
            ("shop", "shoppw", "SHOP"),       // $2a$
            ("order-service", "pw2", "SHOP"), // $2b$
            ("auditor", "auditpw", "SHOP"),   // $2y$
            ("blog", "blogpw", "BLOG"),       // plain
        ] {
            let raw = Raw::user(p.port, user, pass).await;
            let info = raw.connect_info.as_ref().unwrap();
            assert_eq!(info["remote_account"], account, "{kind:?} {user}");
        }
        // Twice more: the second verification of the same (user, password) comes from the cache
        // in natsd and must give the same answers, including for a wrong password after a hit.
        for _ in 0..2 {
            Raw::user(p.port, "shop", "shoppw").await;
            assert!(matches!(
                Raw::login(p.port, "shop", "shoppw2").await,
                Login::Refused(_)
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_account_users_connect() {
    for kind in impls() {
        // Named by system_account.
        let p = Proc::start(kind, &configs::base()).await;
        let raw = Raw::user(p.port, "sys", "syspw").await;
        assert_eq!(raw.connect_info.as_ref().unwrap()["remote_account"], "SYS");
        assert_eq!(
            raw.connect_info.as_ref().unwrap()["acc_is_sys"],
            true,
            "{kind:?}"
        );
        let raw = Raw::user(p.port, "blog", "blogpw").await;
        assert!(raw
            .connect_info
            .as_ref()
            .unwrap()
            .get("acc_is_sys")
            .is_none());
        let sys = client(&p, "sys", "syspw").await;
        sys.flush().await.unwrap();
        drop(p);

        // The default `$SYS`, declared to give it users.
        let conf = format!(
            "{}accounts {{\n  APP {{ users: [ {{ user: app, password: apppw }} ] }}\n  \"$SYS\" {{ users: [ {{ user: admin, password: adminpw }} ] }}\n}}\n",
            configs::HEADER
        );
        let p = Proc::start(kind, &conf).await;
        let raw = Raw::user(p.port, "admin", "adminpw").await;
        assert_eq!(
            raw.connect_info.as_ref().unwrap()["remote_account"],
            "$SYS",
            "{kind:?}"
        );
        assert_eq!(
            raw.connect_info.as_ref().unwrap()["acc_is_sys"],
            true,
            "{kind:?}"
        );
        let raw = Raw::user(p.port, "app", "apppw").await;
        assert_eq!(raw.connect_info.as_ref().unwrap()["remote_account"], "APP");
    }
}

/// nats-py against natsd: refused login text and a permission violation through error_cb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_sees_auth_and_permission_errors() {
    // A missing nats-py fails the test; only NATSD_SKIP_REFERENCE=1 skips it (loudly).
    let Some(python) = testkit::python_with_nats() else {
        return;
    };
    const SCRIPT: &str = r#"
import asyncio, sys, nats
url = sys.argv[1]
async def main():
    try:
        await nats.connect(url, user="shop", password="bad", max_reconnect_attempts=0, allow_reconnect=False)
        print("LOGIN-OK")
    except Exception as e:
        print("LOGIN-ERR", "Authorization Violation" in str(e))
    errors = []
    async def on_err(e):
        errors.append(str(e))
    nc = await nats.connect(url, user="order-service", password="pw2", error_cb=on_err)
    got = []
    sub = await nc.subscribe("payments.*")
    await nc.publish("payments.x", b"no")
    await nc.flush()
    for _ in range(100):
        if errors: break
        await asyncio.sleep(0.02)
    print("ERR", errors[0] if errors else "none")
    print("CONNECTED", nc.is_connected)
    await nc.close()
asyncio.run(main())
"#;
    let p = Proc::start(Impl::Natsd, &configs::base()).await;
    let out = tokio::process::Command::new(python)
        .args(["-c", SCRIPT, &p.url()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("LOGIN-ERR True"), "{stdout}");
    assert!(
        stdout.contains("ERR nats: permissions violation for publish to \"payments.x\""),
        "{stdout}"
    );
    assert!(stdout.contains("CONNECTED True"), "{stdout}");
}
