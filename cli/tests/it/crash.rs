//! Issue 12, point 5 and "all or nothing": every mutating command is stopped at each step of
//! its change (an abort where `MANAGE_FAILPOINT` says, as `kill -9` there would) and with
//! `kill -9` at random moments. After each interruption one more `manage reload` must leave
//! the files consistent (`manage check` passes) and the server accepting exactly the logins
//! the tenant files say: every user's stored password works, every other password (of users
//! removed, or replaced by a rotation) is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::TestContext;
use crate::require_server;

/// The steps of a change, in order (see `journal.rs`).
pub(crate) const FAILPOINTS: &[&str] =
    &["journal-written", "files-written", "validated", "reloading"];

/// Random kills per command (`MANAGE_CRASH_ROUNDS` overrides), and for `remove-user`, the
/// command the issue saw fail four times in twenty, enough to make twenty tries.
fn random_rounds(command: &str) -> usize {
    let base = std::env::var("MANAGE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    if command == "remove-user" {
        base.max(20 - FAILPOINTS.len())
    } else {
        base
    }
}

/// Every user in the tenant files with the password of its credentials file.
fn users(ctx: &TestContext) -> BTreeMap<String, String> {
    let paths = manage::settings::Paths {
        root: ctx.root().to_path_buf(),
    };
    let tenants = manage::tenant::repo::load_all(&paths).expect("tenant files parse");
    let mut users = BTreeMap::new();
    for tenant in tenants {
        for user in tenant.users {
            let credentials =
                manage::credentials::read(&paths, tenant.name.as_str(), user.name.as_str())
                    .unwrap_or_else(|e| panic!("{}: {e:#}", user.name));
            let password = credentials
                .secret
                .password()
                .unwrap_or_else(|| panic!("{}: not a password user", user.name))
                .to_owned();
            users.insert(user.name.to_string(), password);
        }
    }
    users
}

/// Every password any credentials file holds now (also mid-change: files are read as they
/// are, not through the tenant files).
fn record(ctx: &TestContext, seen: &mut BTreeMap<String, BTreeSet<String>>) {
    for entry in std::fs::read_dir(ctx.path(".credentials")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("env") {
            continue;
        }
        let vars = manage::settings::parse_env(&std::fs::read_to_string(&path).unwrap_or_default());
        if let (Some(user), Some(password)) = (vars.get("NATS_USER"), vars.get("NATS_PASSWORD")) {
            seen.entry(user.clone())
                .or_default()
                .insert(password.clone());
        }
    }
}

/// The invariant, after one more `manage reload`.
fn assert_consistent(ctx: &TestContext, seen: &BTreeMap<String, BTreeSet<String>>, label: &str) {
    ctx.ok(&["reload"]);
    let check = ctx.json(&["check"]);
    assert_eq!(check["ok"], true, "{label}: {check}");
    let now = users(ctx);
    for (user, password) in &now {
        assert!(
            ctx.login(user, password),
            "{label}: {user} cannot log in with its stored password"
        );
    }
    for (user, passwords) in seen {
        for password in passwords {
            if now.get(user) != Some(password) {
                assert!(
                    !ctx.login(user, password),
                    "{label}: {user} still logs in with a password the tenant files do not have"
                );
            }
        }
    }
}

#[test]
fn issue_12_5_kill_9_during_every_mutating_command() {
    require_server!();
    let mut ctx = TestContext::new();
    ctx.up();
    ctx.ok(&["add-tenant", "base", "1MB", "10MB"]);
    ctx.ok(&["add-user", "base", "keep"]);
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    record(&ctx, &mut seen);
    let mut n = 0;
    for command in [
        "add-tenant",
        "add-user",
        "rotate",
        "remove-user",
        "remove-tenant",
        "reload",
    ] {
        // How long the command takes when left alone, for the random kills.
        let mut took = Duration::from_millis(300);
        let interruptions: Vec<Option<&str>> = FAILPOINTS
            .iter()
            .map(|f| Some(*f))
            .chain(std::iter::repeat_n(None, random_rounds(command)))
            .collect();
        for interruption in interruptions {
            n += 1;
            // The state the command needs.
            let present = users(&ctx);
            if command == "remove-user" && !present.contains_key("victim") {
                ctx.ok(&["add-user", "base", "victim"]);
            }
            if command == "remove-tenant" && !present.contains_key("doomed") {
                ctx.ok(&["add-tenant", "doomed", "1MB", "10MB"]);
                ctx.ok(&["add-user", "doomed", "doomed-svc"]);
            }
            record(&ctx, &mut seen);
            let args: Vec<String> = match command {
                "add-tenant" => vec![
                    "add-tenant".into(),
                    format!("t{n}"),
                    "1MB".into(),
                    "10MB".into(),
                ],
                "add-user" => vec!["add-user".into(), "base".into(), format!("u{n}")],
                "rotate" => vec!["rotate".into(), "base".into(), "keep".into()],
                "remove-user" => vec!["remove-user".into(), "base".into(), "victim".into()],
                "remove-tenant" => vec!["remove-tenant".into(), "doomed".into()],
                _ => vec!["reload".into()],
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut cmd = ctx.command(&args);
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let label = match interruption {
                Some(failpoint) => {
                    cmd.env("MANAGE_FAILPOINT", failpoint);
                    let status = cmd.status().unwrap();
                    assert!(!status.success(), "{command} did not stop at {failpoint}");
                    format!("{command} stopped at {failpoint}")
                }
                None => {
                    let delay = took.mul_f64(fastrand_f64(n));
                    let started = Instant::now();
                    let mut child = cmd.spawn().unwrap();
                    std::thread::sleep(delay);
                    let _ = child.kill();
                    let status = child.wait().unwrap();
                    if status.success() {
                        took = took.max(started.elapsed());
                    }
                    format!("{command} killed after {delay:?}")
                }
            };
            // Whatever happened, the passwords the command may have written count as seen.
            record(&ctx, &mut seen);
            assert_consistent(&ctx, &seen, &label);
        }
    }
}

/// A reproducible spread of kill moments over [0, 1.2): some land after a normal finish.
fn fastrand_f64(n: usize) -> f64 {
    let x = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    (x as f64 / (1u64 << 53) as f64) * 1.2
}
