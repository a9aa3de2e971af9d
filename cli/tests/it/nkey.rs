//! Issue 17, item 5: passwordless (NKEY) tenants and users. A real server (natsd, and the
//! reference nats-server) checks the keys manage writes: async-nats logs in with the seed of
//! the credentials file, the permissions hold, `rotate` makes the old seed useless, a tampered
//! or missing seed fails closed, and password users beside them keep working.

use std::time::Duration;

use crate::common::{env_value, TestContext};
use crate::crash::FAILPOINTS;
use crate::require_server;
use crate::server::delivered;

/// Connect as an NKEY user with `seed`, as an application does (`ConnectOptions::with_nkey`).
async fn connect_nkey(
    ctx: &TestContext,
    seed: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::with_nkey(seed.to_owned())
        .max_reconnects(Some(0))
        .connection_timeout(Duration::from_secs(5))
        .connect(format!("nats://127.0.0.1:{}", ctx.port))
        .await
}

/// A raw CONNECT as an NKEY user with extra fields beside the key, as a client sends them when
/// the whole sourced `.env` reaches it (the nats CLI passes NATS_USER on, as a user or, without
/// a password, as a token): PONG means the server let it in.
fn login_with_extra(ctx: &TestContext, seed: &str, extra: serde_json::Value) -> bool {
    use base64::Engine as _;
    use std::io::{BufRead as _, BufReader, Write as _};
    let stream = std::net::TcpStream::connect(("127.0.0.1", ctx.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(line.trim_start_matches("INFO ").trim()).unwrap();
    let nonce = info["nonce"].as_str().expect("a nonce in INFO");
    let pair = nkeys::KeyPair::from_seed(seed).unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(pair.sign(nonce.as_bytes()).unwrap());
    let mut connect = serde_json::json!({"verbose": false, "nkey": pair.public_key(), "sig": sig});
    for (key, value) in extra.as_object().unwrap() {
        connect[key] = value.clone();
    }
    let mut writer = stream;
    writer
        .write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
        .unwrap();
    line.clear();
    reader.read_line(&mut line).is_ok() && line.starts_with("PONG")
}

fn seed_of(ctx: &TestContext, env: &str) -> String {
    env_value(&ctx.read(env), "NATS_NKEY_SEED")
}

async fn journey(mut ctx: TestContext) {
    ctx.up();
    let doc = ctx.json(&["add-tenant", "shop", "16MB", "1GB", "--auth", "nkey"]);
    assert_eq!(doc["auth"], "nkey", "{doc}");
    assert!(doc.get("password").is_none(), "{doc}");
    assert_eq!(doc["seed_file"], ".credentials/shop.nk", "{doc}");
    let doc = ctx.json(&[
        "add-user",
        "shop",
        "svc",
        "--auth",
        "nkey",
        "-p",
        "orders.*",
        "-s",
        "payments.*",
    ]);
    assert_eq!(doc["auth"], "nkey", "{doc}");
    let public_key = doc["nkey"].as_str().unwrap().to_owned();
    let seed = doc["seed"].as_str().unwrap().to_owned();
    assert!(
        public_key.starts_with('U') && seed.starts_with("SU"),
        "{doc}"
    );
    // A password user in the same tenant, as before.
    ctx.ok(&["add-user", "shop", "legacy"]);

    // Only the public key reaches auth.conf and the tenant file; the seed is in the 0600
    // credentials file and the seed file, and nowhere else.
    let auth = ctx.read("config/auth.conf");
    assert!(auth.contains(&format!("nkey: \"{public_key}\"")), "{auth}");
    assert!(!auth.contains(&seed), "seed in auth.conf");
    assert!(!ctx.read("config/tenants/shop.toml").contains(&seed));
    let env = ctx.read(".credentials/shop_svc.env");
    assert_eq!(env_value(&env, "NATS_NKEY_SEED"), seed);
    assert_eq!(env_value(&env, "NATS_NKEY_PUBLIC"), public_key);
    assert_eq!(
        env_value(&env, "NATS_NKEY"),
        ctx.path(".credentials/shop_svc.nk").display().to_string()
    );
    assert!(!env.contains("NATS_PASSWORD"), "{env}");
    assert!(!env_value(&env, "NATS_URL").contains('@'), "{env}");
    assert_eq!(ctx.read(".credentials/shop_svc.nk"), format!("{seed}\n"));
    assert_eq!(ctx.mode(".credentials/shop_svc.env"), 0o600);
    assert_eq!(ctx.mode(".credentials/shop_svc.nk"), 0o600);
    assert!(ctx.server_accepts_config());

    // A real client logs in with the written seeds, and the permissions hold.
    let admin = connect_nkey(&ctx, &seed_of(&ctx, ".credentials/shop.env"))
        .await
        .expect("admin seed logs in");
    let svc = connect_nkey(&ctx, &seed).await.expect("user seed logs in");
    assert!(
        delivered(&svc, &admin, "orders.created").await,
        "allowed publish"
    );
    assert!(
        delivered(&admin, &svc, "payments.card").await,
        "allowed subscribe"
    );
    assert!(
        !delivered(&svc, &admin, "secret.stuff").await,
        "denied publish delivered"
    );
    assert!(
        !delivered(&admin, &svc, "orders.created").await,
        "denied subscribe delivered"
    );
    let legacy_url = env_value(&ctx.read(".credentials/shop_legacy.env"), "NATS_URL");
    assert!(legacy_url.contains(':') && legacy_url.contains('@'));
    assert!(ctx.login("legacy", &ctx.password(".credentials/shop_legacy.env")));

    // The whole sourced credentials file reaching a client does not get in the way.
    assert!(login_with_extra(&ctx, &seed, serde_json::json!({})));
    assert!(login_with_extra(
        &ctx,
        &seed,
        serde_json::json!({"user": "svc", "pass": ""})
    ));
    assert!(login_with_extra(
        &ctx,
        &seed,
        serde_json::json!({"auth_token": "svc"})
    ));

    // test signs the nonce and checks every permission; list and show say who is passwordless,
    // and list counts the key's connections as the user's.
    let test = ctx.json(&["test", "shop", "svc"]);
    assert_eq!(test["ok"], true, "{test}");
    assert_eq!(test["auth"], "nkey", "{test}");
    assert_eq!(test["checks"].as_array().unwrap().len(), 5, "{test}");
    assert!(ctx
        .ok(&["test", "shop"])
        .contains("✓ connect as shop (NKEY)"));
    let list = ctx.json(&["list"]);
    let users = list["tenants"][0]["users"].as_array().unwrap().clone();
    let user = |name: &str| users.iter().find(|u| u["name"] == name).unwrap().clone();
    assert_eq!(user("svc")["passwordless"], true, "{list}");
    assert_eq!(user("svc")["nkey"], public_key.as_str(), "{list}");
    assert_eq!(user("svc")["connections"], 1, "{list}");
    assert_eq!(user("legacy")["passwordless"], false, "{list}");
    assert_eq!(user("legacy")["auth"], "password", "{list}");
    assert!(ctx
        .ok(&["list"])
        .contains("├─ svc (publish: orders.*; subscribe: payments.*) · NKEY"));
    let show = ctx.json(&["show", "shop", "svc"]);
    assert_eq!(show["passwordless"], true, "{show}");
    assert_eq!(show["seed"], seed.as_str(), "{show}");
    assert!(ctx
        .ok(&["show", "shop", "svc"])
        .contains("(NKEY, no password)"));
    assert_eq!(ctx.json(&["check"])["ok"], true);

    // rotate: a new key pair, the old seed refused from the reload on.
    let rotated = ctx.json(&["rotate", "shop", "svc"]);
    let new_seed = seed_of(&ctx, ".credentials/shop_svc.env");
    assert_ne!(new_seed, seed);
    assert_eq!(rotated["seed"], new_seed.as_str(), "{rotated}");
    assert_ne!(rotated["nkey"], public_key.as_str(), "{rotated}");
    assert!(
        connect_nkey(&ctx, &seed).await.is_err(),
        "old seed still accepted"
    );
    connect_nkey(&ctx, &new_seed)
        .await
        .expect("new seed logs in");
    assert!(!ctx.read("config/auth.conf").contains(&public_key));

    // A tampered seed fails closed: test exits 1, check names the file.
    let env_path = ".credentials/shop_svc.env";
    let good = ctx.read(env_path);
    let other = nkeys::KeyPair::new_user().seed().unwrap();
    std::fs::write(ctx.path(env_path), good.replace(&new_seed, &other)).unwrap();
    let out = ctx.run(&["test", "shop", "svc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("✗ connect as svc (NKEY)"));
    let check = ctx.run(&["check", "--json"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("not `svc`'s"));
    std::fs::write(
        ctx.path(env_path),
        good.replace(&new_seed[..20], "SUAAAAAAAAAAAAAAAAAA"),
    )
    .unwrap();
    assert_eq!(ctx.run(&["test", "shop", "svc"]).status.code(), Some(1));
    // A missing one too.
    std::fs::remove_file(ctx.path(env_path)).unwrap();
    let err = ctx.fails(&["test", "shop", "svc"], 1);
    assert!(err.contains("no credentials"), "{err}");
    std::fs::write(ctx.path(env_path), &good).unwrap();
    std::fs::remove_file(ctx.path(".credentials/shop_svc.nk")).unwrap();
    let check = ctx.run(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("has no seed file"));
    // The credentials file's seed is the tenant file's key: --fix writes the seed file from it.
    let fixed = ctx.json(&["check", "--fix"]);
    assert_eq!(fixed["ok"], true, "{fixed}");
    assert_eq!(
        ctx.read(".credentials/shop_svc.nk"),
        format!("{new_seed}\n")
    );
    assert_eq!(ctx.mode(".credentials/shop_svc.nk"), 0o600);

    // rotate --auth switches kinds both ways; the seed file goes with the key.
    let doc = ctx.json(&["rotate", "shop", "svc", "--auth", "password"]);
    assert_eq!(doc["auth"], "password", "{doc}");
    assert_eq!(doc["previous_auth"], "nkey", "{doc}");
    assert!(!ctx.path(".credentials/shop_svc.nk").exists());
    assert!(ctx.login("svc", &ctx.password(env_path)));
    assert!(connect_nkey(&ctx, &new_seed).await.is_err());
    let doc = ctx.json(&["rotate", "shop", "legacy", "--auth", "nkey"]);
    let legacy_seed = doc["seed"].as_str().unwrap().to_owned();
    connect_nkey(&ctx, &legacy_seed)
        .await
        .expect("switched user logs in");
    assert_eq!(ctx.json(&["check"])["ok"], true);

    // remove-user deletes both files and the key.
    ctx.ok(&["remove-user", "shop", "legacy"]);
    assert!(!ctx.path(".credentials/shop_legacy.env").exists());
    assert!(!ctx.path(".credentials/shop_legacy.nk").exists());
    assert!(
        connect_nkey(&ctx, &legacy_seed).await.is_err(),
        "removed user accepted"
    );
    assert_eq!(ctx.json(&["check"])["ok"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn nkey_users_on_the_server_under_test() {
    require_server!();
    journey(TestContext::new()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nkey_users_on_the_reference_server() {
    // Missing, the reference fails the test; under NATSD_SKIP_REFERENCE=1 it is skipped.
    let Some(reference) = crate::common::reference_server() else {
        return;
    };
    journey(TestContext::new().with_server(reference)).await;
}

/// A tenant file whose key is not a user's public NKEY (or that has a key and a password) is
/// refused with its line, before anything is written.
#[test]
fn broken_keys_in_tenant_files_fail_closed() {
    let ctx = TestContext::new();
    ctx.ok(&["add-tenant", "shop", "16MB", "1GB", "--auth", "nkey"]);
    let path = ctx.path("config/tenants/shop.toml");
    let good = ctx.read("config/tenants/shop.toml");
    let account_key = nkeys::KeyPair::new_account().public_key();
    let key = good
        .lines()
        .find_map(|l| l.strip_prefix("nkey = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_owned();
    for (broken, needle) in [
        (
            good.replace(&key, &account_key),
            "is not a user's public NKEY",
        ),
        (good.replace(&key, "UABC"), "is not a user's public NKEY"),
        (
            good.replace(
                &format!("nkey = \"{key}\""),
                &format!(
                    "nkey = \"{key}\"\npassword_hash = \"{}\"",
                    crate::common::TEST_HASH
                ),
            ),
            "has both `password_hash` and `nkey`",
        ),
        (
            good.replace(&format!("nkey = \"{key}\""), ""),
            "has neither",
        ),
    ] {
        std::fs::write(&path, &broken).unwrap();
        let before = ctx.snapshot();
        let out = ctx.run(&["add-user", "shop", "svc", "--auth", "nkey", "--json"]);
        assert_eq!(out.status.code(), Some(1));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["code"], "malformed_tenant_file", "{doc}");
        assert!(doc["error"].as_str().unwrap().contains(needle), "{doc}");
        assert_eq!(ctx.snapshot(), before, "something was written");
    }
}

/// `add-user --auth nkey` and `rotate` stopped at every step of their change leave the old state
/// or the new one: after a reload, `check` passes and exactly the stored seeds work.
#[tokio::test(flavor = "multi_thread")]
async fn interrupted_nkey_changes_leave_nothing_half_written() {
    require_server!();
    let mut ctx = TestContext::new();
    ctx.up();
    ctx.ok(&["add-tenant", "shop", "16MB", "1GB", "--auth", "nkey"]);
    for (n, failpoint) in FAILPOINTS.iter().enumerate() {
        let user = format!("u{n}");
        let status = ctx
            .command(&["add-user", "shop", &user, "--auth", "nkey"])
            .env("MANAGE_FAILPOINT", failpoint)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "add-user did not stop at {failpoint}");
        let env = format!(".credentials/shop_{user}.env");
        // What the interrupted run wrote, if anything survives.
        let seed = std::fs::read_to_string(ctx.path(&env))
            .ok()
            .map(|text| env_value(&text, "NATS_NKEY_SEED"));
        ctx.ok(&["reload"]);
        assert_eq!(ctx.json(&["check"])["ok"], true, "{failpoint}");
        let exists = ctx
            .read("config/tenants/shop.toml")
            .contains(&format!("[users.{user}]"));
        assert_eq!(
            exists,
            ctx.path(&env).exists(),
            "{failpoint}: credentials and tenant file"
        );
        assert_eq!(
            exists,
            ctx.path(&format!(".credentials/shop_{user}.nk")).exists(),
            "{failpoint}: seed file and tenant file"
        );
        if let Some(seed) = seed {
            assert_eq!(
                connect_nkey(&ctx, &seed).await.is_ok(),
                exists,
                "{failpoint}: the seed works exactly when the user exists"
            );
        }
    }
    // rotate stopped at every step: the stored seed works, the other one does not.
    ctx.ok(&["add-user", "shop", "svc", "--auth", "nkey"]);
    let env = ".credentials/shop_svc.env";
    for failpoint in FAILPOINTS {
        let before = seed_of(&ctx, env);
        let status = ctx
            .command(&["rotate", "shop", "svc"])
            .env("MANAGE_FAILPOINT", failpoint)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "rotate did not stop at {failpoint}");
        let written = std::fs::read_to_string(ctx.path(env))
            .map(|text| env_value(&text, "NATS_NKEY_SEED"))
            .unwrap_or_else(|_| before.clone());
        ctx.ok(&["reload"]);
        assert_eq!(ctx.json(&["check"])["ok"], true, "rotate at {failpoint}");
        let now = seed_of(&ctx, env);
        connect_nkey(&ctx, &now)
            .await
            .unwrap_or_else(|e| panic!("rotate at {failpoint}: the stored seed fails: {e}"));
        for other in [&before, &written] {
            if *other != now {
                assert!(
                    connect_nkey(&ctx, other).await.is_err(),
                    "rotate at {failpoint}: a seed the files do not have still works"
                );
            }
        }
    }
}
