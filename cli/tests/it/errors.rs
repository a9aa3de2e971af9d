//! Bad input for every command: clear message, right exit code, nothing changed.

use crate::common::TestContext;

#[test]
fn usage_errors_exit_2() {
    let ctx = TestContext::new();
    ctx.ok(&["init"]);
    for args in [
        vec!["add-tenant", "My App"],
        vec!["add-tenant", "-bad"],
        vec!["add-tenant", "sys"],
        vec!["add-tenant", "ok", "12XB"],
        vec!["add-tenant", "ok", "64MB", "0"],
        vec!["add-user", "ok", "Bad.User"],
        vec!["add-user", "ok", "svc", "-p", "orders..x"],
        vec!["add-user", "ok", "svc", "-s", "orders.>.x"],
        vec!["add-user", "ok", "svc", "-p", "a.*,,b"],
        vec!["add-user", "ok", "svc", "--deny-publish", "ord.>.x"],
        vec!["add-tenant", "ok", "1G", "18446744073709551615"],
        vec!["show"],
        vec!["remove-user", "ok"],
        vec!["frobnicate"],
    ] {
        let stderr = ctx.fails(&args, 2);
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
    assert!(
        std::fs::read_dir(ctx.path("config/tenants"))
            .unwrap()
            .next()
            .is_none(),
        "nothing may be created"
    );
}

#[test]
fn missing_and_duplicate_things_exit_1() {
    let ctx = TestContext::new();
    ctx.ok(&["add-tenant", "shop", "16MB", "1GB"]);
    ctx.ok(&["add-tenant", "blog", "16MB", "1GB"]);
    ctx.ok(&["add-user", "shop", "worker"]);
    let auth_before = ctx.read("config/auth.conf");

    let err = ctx.fails(&["add-tenant", "shop"], 1);
    assert!(err.contains("tenant `shop` already exists"), "{err}");
    let err = ctx.fails(&["add-user", "nope", "x"], 1);
    assert!(err.contains("tenant `nope` does not exist"), "{err}");
    let err = ctx.fails(&["add-user", "shop", "worker"], 1);
    assert!(err.contains("already exists in tenant `shop`"), "{err}");
    let err = ctx.fails(&["add-user", "blog", "worker"], 1);
    assert!(
        err.contains("user `worker` already exists in tenant `shop`"),
        "{err}"
    );
    let err = ctx.fails(&["add-tenant", "worker"], 1);
    assert!(err.contains("already exists in tenant `shop`"), "{err}");
    for args in [
        vec!["show", "nope"],
        vec!["test", "nope"],
        vec!["rotate", "nope"],
        vec!["remove-tenant", "nope", "--yes"],
    ] {
        let err = ctx.fails(&args, 1);
        assert!(
            err.contains("tenant `nope` does not exist"),
            "{args:?}: {err}"
        );
    }
    for args in [
        vec!["show", "shop", "ghost"],
        vec!["remove-user", "shop", "ghost", "--yes"],
        vec!["rotate", "shop", "ghost"],
    ] {
        let err = ctx.fails(&args, 1);
        assert!(
            err.contains("user `ghost` does not exist in tenant `shop`"),
            "{args:?}: {err}"
        );
    }
    let err = ctx.fails(&["remove-user", "shop", "shop", "--yes"], 1);
    assert!(err.contains("remove-tenant"), "{err}");
    assert_eq!(
        ctx.read("config/auth.conf"),
        auth_before,
        "failed commands must not change auth.conf"
    );
}

#[test]
fn limits_over_the_server_are_refused_with_advice() {
    let ctx = TestContext::new();
    ctx.ok(&["add-tenant", "big", "200MB", "8GB"]);
    let err = ctx.fails(&["add-tenant", "more", "64MB", "1GB"], 1);
    assert!(
        err.contains("insufficient memory resources available"),
        "{err}"
    );
    assert!(err.contains("max_memory_store"), "{err}");
    assert!(
        err.contains("./manage add-tenant smallapp 32MB 1GB"),
        "{err}"
    );
    let err = ctx.fails(&["add-tenant", "more", "16MB", "3GB"], 1);
    assert!(
        err.contains("insufficient storage resources available"),
        "{err}"
    );
    assert!(!ctx.path("config/tenants/more.toml").exists());
    ctx.ok(&["add-tenant", "more", "32MB", "1GB"]);
}

#[test]
fn corrupted_tenant_file_names_file_and_line() {
    let ctx = TestContext::new();
    ctx.ok(&["add-tenant", "shop", "16MB", "1GB"]);
    let path = ctx.path("config/tenants/shop.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let broken = text.replace("storage = \"1GB\"", "storage = \"1GB");
    let line = broken
        .lines()
        .position(|l| l.starts_with("storage"))
        .unwrap()
        + 1;
    std::fs::write(&path, broken).unwrap();
    for args in [vec!["list"], vec!["add-tenant", "other"], vec!["reload"]] {
        let err = ctx.fails(&args, 1);
        assert!(
            err.contains(&format!("shop.toml:{line}:")),
            "{args:?}: {err}"
        );
    }
    std::fs::write(
        &path,
        text.replace("storage = \"1GB\"", "storage = \"lots\""),
    )
    .unwrap();
    let err = ctx.fails(&["list"], 1);
    assert!(
        err.contains(&format!("shop.toml:{line}:")) && err.contains("invalid size"),
        "{err}"
    );
}

/// Issue 18: `NATS_RELOAD=compose` where docker has no Compose v2 plugin (Debian's docker.io
/// alone): `up` fails and says what is missing, not only that a command failed.
#[test]
fn compose_without_the_plugin_says_so() {
    use std::os::unix::fs::PermissionsExt as _;
    let ctx = TestContext::new();
    ctx.ok(&["init"]);
    let env = ctx.read(".env") + "NATS_RELOAD=compose\n";
    std::fs::write(ctx.path(".env"), env).unwrap();
    let bin = ctx.path("fake-bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(
        bin.join("docker"),
        "#!/bin/sh\necho \"docker: '$1' is not a docker command.\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(bin.join("docker"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = ctx.command(&["up"]).env("PATH", path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`docker compose up -d nats` failed")
            && stderr.contains("install the Docker Compose v2 plugin"),
        "{stderr}"
    );
}
