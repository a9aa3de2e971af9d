//! Options natsd does not implement (docs/differences.md lists every one; the integration test
//! `it::unsupported` starts and reloads a server with each), NKEY users, and
//! `config_digest` as nats-server computes it. The comparisons with nats-server fail when it is
//! missing, unless `NATSD_SKIP_REFERENCE=1` skips them.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// The reference nats-server (testkit's rule): a missing one fails the test, except under
/// `NATSD_SKIP_REFERENCE=1`, where the comparison is skipped (`None`).
fn reference() -> Option<PathBuf> {
    testkit::reference_server()
}

/// `nats-server -t` on `text`: (success, stderr); `None` when the comparison is skipped.
fn reference_test(dir: &Path, text: &str) -> Option<(bool, String)> {
    let reference = reference()?;
    let path = dir.join("ref.conf");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(reference)
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .current_dir(dir)
        .output()
        .unwrap();
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn load_text(dir: &Path, text: &str) -> Result<Loaded, ConfigErrors> {
    let path = dir.join("t.conf");
    std::fs::write(&path, text).unwrap();
    load_file(&path)
}

#[test]
fn differences_md_lists_every_unsupported_option() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/differences.md"),
    )
    .unwrap();
    for option in unsupported_options() {
        let (context, key) = (option.context, option.key);
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| {context} |")) && l.contains(&format!("`{key}`")))
            .unwrap_or_else(|| {
                panic!("docs/differences.md has no `| {context} |` row naming `{key}`")
            });
        let verdict = if option.refused {
            "| refused |"
        } else {
            "| ignored |"
        };
        assert!(row.contains(verdict), "{context} {key}: {row}");
    }
}

/// NKEY users load (alone or beside password users, in `authorization` and in accounts) with
/// their permissions, where nats-server loads them too; nothing is dropped on the way.
#[test]
fn nkey_users_load_with_their_accounts_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let nkey = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";
    for (text, account, password_users) in [
        (
            format!("authorization {{ users: [ {{ nkey: {nkey} }} ] }}\n"),
            GLOBAL_ACCOUNT,
            0,
        ),
        (
            format!("accounts {{ A {{ users: [ {{ nkey: {nkey} }} ] }} }}\n"),
            "A",
            0,
        ),
        (
            format!(
                "accounts {{ A {{ users: [ {{ user: a, password: b }}, {{ nkey: {nkey}, permissions: {{ publish: \"x\" }} }} ] }} }}\n"
            ),
            "A",
            1,
        ),
    ] {
        let loaded = load_text(dir.path(), &text).unwrap();
        let users = &loaded.options.auth.users;
        let key = users.iter().find(|u| u.nkey).expect("the NKEY user");
        assert_eq!((key.name.as_str(), key.account.as_str()), (nkey, account));
        assert!(key.password.is_empty());
        assert_eq!(users.iter().filter(|u| !u.nkey).count(), password_users);
        if password_users > 0 {
            let publish = key.permissions.as_ref().and_then(|p| p.publish.as_ref());
            assert_eq!(
                publish.and_then(|p| p.allow.clone()),
                Some(vec!["x".to_string()])
            );
        }
        if let Some((ok, stderr)) = reference_test(dir.path(), &text) {
            assert!(ok, "nats-server accepts {text}: {stderr}");
        }
    }
}

/// Each pair was checked against `nats-server -t`, which prints the digest it also shows in
/// `/varz`: includes merged, variables and environment substituted, keys sorted, Go's escaping.
#[test]
fn config_digest_matches_nats_server() {
    let Some(reference) = reference() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inc.conf"),
        "PW: \"s<e>c&ret\"\naccounts { A { users: [ { user: a, password: $PW, permissions: { publish: { allow: [\"a.>\", \"b.*\"] }, allow_responses: { max: 2, expires: \"1m\" } } } ] } }\n",
    )
    .unwrap();
    for text in [
        "port: 4222\n".to_string(),
        "Port: 4333\nmax_payload: 1MB\nmax_pending: 64kb\ndebug: yes\nserver_name: \"a\\tb\"\n"
            .to_string(),
        "include ./inc.conf\nping_interval: \"1m30s\"\nauthorization { timeout: 1.5 }\n"
            .to_string(),
        "max_payload: 100\nmax_payload: 200\nhttp_port: $H12_TEST_PORT\n".to_string(),
        format!(
            "jetstream {{ store_dir: \"{}\", max_memory_store: \"1G\", max_file_store: 10GB }}\n",
            dir.path().join("js").display()
        ),
    ] {
        let path = dir.path().join("d.conf");
        std::fs::write(&path, &text).unwrap();
        let env = |name: &str| (name == "H12_TEST_PORT").then(|| "8999".to_string());
        let ours = load_file_with_env(&path, &env).unwrap().digest;
        let out = Command::new(&reference)
            .arg("-t")
            .arg("-c")
            .arg(&path)
            .env("H12_TEST_PORT", "8999")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}: {stderr}");
        assert!(
            stderr.contains(&format!("({ours})")),
            "{text}: natsd {ours}, nats-server: {stderr}"
        );
    }
}

/// The environment a config is read with decides its `$NAME`s, and so its digest.
#[test]
fn load_with_an_environment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.conf");
    std::fs::write(&path, "port: $H12_ONLY_HERE\n").unwrap();
    assert!(load_file(&path).is_err());
    let env = |name: &str| (name == "H12_ONLY_HERE").then(|| "4333".to_string());
    let a = load_file_with_env(&path, &env).unwrap();
    assert_eq!(a.options.port, 4333);
    let env = |name: &str| (name == "H12_ONLY_HERE").then(|| "4334".to_string());
    assert_ne!(load_file_with_env(&path, &env).unwrap().digest, a.digest);
}

/// The quoted JetStream sizes nats-server accepts (binary, upper-case unit only).
#[test]
fn jetstream_limits_take_nats_servers_quoted_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let js = dir.path().join("js");
    let text = format!(
        "jetstream {{ store_dir: \"{}\", max_memory_store: \"1G\", max_file_store: \"2T\" }}\n",
        js.display()
    );
    let o = load_text(dir.path(), &text).unwrap().options;
    let js_opts = o.jetstream.unwrap();
    assert_eq!((js_opts.max_memory, js_opts.max_store), (1 << 30, 2 << 40));
    for (value, why) in [
        (
            "1g",
            "max_mem_store sizes defined as strings must end in K, M, G, T",
        ),
        (
            "1GB",
            "max_mem_store strconv.ParseInt: parsing \"1G\": invalid syntax",
        ),
    ] {
        let text = format!(
            "jetstream {{ store_dir: \"{}\", max_memory_store: \"{value}\" }}\n",
            js.display()
        );
        let errors = load_text(dir.path(), &text).unwrap_err().errors;
        assert!(errors[0].ends_with(why), "{errors:?}");
        if let Some((ok, stderr)) = reference_test(dir.path(), &text) {
            assert!(!ok && stderr.contains(why), "{stderr}");
        }
    }
}

/// Every size form, read by natsd and by nats-server: the same integer (the digest holds the
/// value each server parsed), so `manage`, which reads sizes with these rules, agrees with
/// both servers.
#[test]
fn sizes_are_read_as_nats_server_reads_them() {
    let Some(reference) = reference() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.conf");
    for size in [
        "1048576", "64k", "64K", "64kb", "64KiB", "64ki", "1m", "1M", "1MB", "1mib", "1G", "1GB",
        "5gb", "1t", "1TB", "2P", "1E",
    ] {
        std::fs::write(&path, format!("max_pending: {size}\n")).unwrap();
        let ours = load_file(&path).unwrap();
        assert_eq!(
            i64::try_from(ours.options.max_pending).ok(),
            parse_size(size).ok().filter(|n| *n >= 0),
            "{size}"
        );
        let out = Command::new(&reference)
            .arg("-t")
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("({})", ours.digest)),
            "{size}: natsd {} ({:?}), nats-server: {stderr}",
            ours.digest,
            parse_size(size)
        );
    }
}
