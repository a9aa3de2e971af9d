//! Config tests: syntax, option mapping, error wording and positions, the reference's examples,
//! and flags. Where `nats-server` is on PATH, fixtures natsd accepts are also checked with
//! `nats-server -t` so our parser never grows more lenient than the real one by accident.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::flags::{parse_args, Command, FlagError, SignalCommand};
use super::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/configs")
}

struct Tmp {
    dir: tempfile::TempDir,
}

impl Tmp {
    fn new() -> Self {
        Tmp {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// Load `text` as `t.conf`; returns the result with the temp dir stripped from messages.
fn load(text: &str) -> Result<Loaded, Vec<String>> {
    let tmp = Tmp::new();
    let path = tmp.write("t.conf", text);
    let prefix = format!("{}/", tmp.dir.path().display());
    let strip = |v: &[String]| v.iter().map(|m| m.replace(&prefix, "")).collect::<Vec<_>>();
    match load_file(&path) {
        Ok(mut l) => {
            l.warnings = strip(&l.warnings);
            l.notices = strip(&l.notices);
            Ok(l)
        }
        Err(e) => Err(strip(&e.errors)),
    }
}

fn ok(text: &str) -> Options {
    match load(text) {
        Ok(l) => l.options,
        Err(e) => panic!("expected {text:?} to load, got {e:?}"),
    }
}

fn err(text: &str) -> Vec<String> {
    match load(text) {
        Ok(l) => panic!("expected {text:?} to fail, got {:?}", l.options),
        Err(e) => e,
    }
}

/// Assert the real nats-server accepts the file too (skipped when it is not installed).
fn real_server_accepts(path: &Path) {
    let Ok(out) = std::process::Command::new("nats-server")
        .arg("-t")
        .arg("-c")
        .arg(path)
        .output()
    else {
        eprintln!(
            "nats-server not on PATH: skipping the cross-check of {}",
            path.display()
        );
        return;
    };
    assert!(
        out.status.success(),
        "nats-server rejects {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Syntax

#[test]
fn separators_terminators_and_case() {
    let o = ok("Port = 4333; MAX_PAYLOAD: 2048, server_name natsd-x # comment\ndebug: true // c\n");
    assert_eq!(o.port, 4333);
    assert_eq!(o.max_payload, 2048);
    assert_eq!(o.server_name.as_deref(), Some("natsd-x"));
    assert!(o.debug);
}

#[test]
fn hash_inside_bare_value_is_not_a_comment() {
    assert_eq!(ok("server_name: a#b\n").server_name.as_deref(), Some("a#b"));
}

#[test]
fn last_duplicate_wins() {
    assert_eq!(
        ok("max_payload: 1000\nmax_payload: 2000\n").max_payload,
        2000
    );
}

#[test]
fn maps_brace_on_next_line_and_trailing_comma() {
    let o = ok("authorization\n{\n  user: a, password: b,\n}\n");
    assert_eq!(o.auth.users.len(), 1);
    assert_eq!(o.auth.users[0].name, "a");
    assert_eq!(o.auth.users[0].account, GLOBAL_ACCOUNT);
}

#[test]
fn one_line_map_needs_separators() {
    assert_eq!(
        err("authorization {user: a password: b}\n"),
        vec!["Parse error on line 1: 'Expected a map value terminator \",\" or a map terminator \"}\", but got 'p' instead.'"]
    );
}

#[test]
fn arrays_multiline_and_trailing_comma() {
    let o =
        ok("authorization { users: [\n {user: a, password: b}\n {user: c, password: d},\n] }\n");
    assert_eq!(
        o.auth
            .users
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(
        err("authorization { users: [ {user: a, password: b},, ] }\n"),
        vec!["Parse error on line 1: 'Unexpected array value terminator ','.'"]
    );
}

#[test]
fn string_forms() {
    assert_eq!(
        ok("server_name: \"a\\tb\"\n").server_name.as_deref(),
        Some("a\tb")
    );
    assert_eq!(
        ok("server_name: 'a\\tb'\n").server_name.as_deref(),
        Some("a\\tb")
    );
    assert_eq!(
        ok("server_name: \"a\\x41\"\n").server_name.as_deref(),
        Some("aA")
    );
    let o = ok("authorization { token: (\nline1\nline2\n)\n}\n");
    assert_eq!(o.auth.token.as_deref(), Some("\nline1\nline2\n"));
    assert_eq!(
        err("server_name: \"a\\qb\"\n"),
        vec!["Parse error on line 1: 'Invalid escape character 'q'. Only the following escape characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\.'"]
    );
    assert_eq!(
        err("server_name: \"abc\n"),
        vec!["Parse error on line 2: 'Unexpected EOF.'"]
    );
}

#[test]
fn booleans() {
    let o = ok("debug: yes\ntrace: ON\nlogtime: Off\nno_header_support: true\n");
    assert!(o.debug && o.trace && !o.logtime && o.no_header_support);
    assert_eq!(
        err("debug: \"yes\"\n"),
        vec!["t.conf:1:0: interface conversion: interface {} is string, not bool"]
    );
}

#[test]
fn sizes_table() {
    let cases: &[(&str, i64)] = &[
        ("1", 1),
        ("64k", 64_000),
        ("64K", 64_000),
        ("64kb", 65_536),
        ("64KB", 65_536),
        ("64ki", 65_536),
        ("64KiB", 65_536),
        ("1m", 1_000_000),
        ("1MB", 1_048_576),
        ("1mi", 1_048_576),
        ("1mib", 1_048_576),
        ("1G", 1_000_000_000),
        ("1gb", 1 << 30),
        ("1t", 1_000_000_000_000),
        ("1tb", 1 << 40),
        ("1p", 1_000_000_000_000_000),
        ("1pib", 1 << 50),
        ("1e", 1_000_000_000_000_000_000),
        ("1eb", 1 << 60),
    ];
    for (text, want) in cases {
        let o = ok(&format!("jetstream {{ max_file_store: {text} }}\n"));
        assert_eq!(o.jetstream.unwrap().max_store, *want, "{text}");
    }
    assert!(err("jetstream { max_file_store: 8eb }\n")[0].contains("out of the range"));
    assert_eq!(
        err("max_payload: \"64KB\"\n"),
        vec!["t.conf:1:0: interface conversion: interface {} is string, not int64"]
    );
}

#[test]
fn floats_and_numbers_that_are_strings() {
    let o = ok("authorization { user: a, password: b, timeout: 0.5 }\nlisten: 127.0.0.1:4999\n");
    assert_eq!(o.auth.timeout, Duration::from_millis(500));
    assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 4999));
    assert_eq!(
        err("max_payload: .5\n"),
        vec!["Parse error on line 1: 'Floats must start with a digit'"]
    );
    assert_eq!(
        err("max_payload: -x\n"),
        vec!["Parse error on line 1: 'Expected a digit but got 'x'.'"]
    );
    assert_eq!(
        err("port: 1.5\n"),
        vec!["t.conf:1:0: interface conversion: interface {} is float64, not int64"]
    );
}

#[test]
fn separator_then_newline_is_an_error() {
    assert_eq!(
        err("authorization =\n{ user: a, password: b }\n"),
        vec!["Parse error on line 2: 'Expected value but found new line'"]
    );
}

#[test]
fn stray_and_wrapping_braces_tolerated() {
    assert_eq!(ok("port: 4333\n}\n").port, 4333);
    assert_eq!(ok("{\nport: 4334\n}\n").port, 4334);
}

#[test]
fn dates_parse_but_are_not_strings() {
    assert_eq!(
        err("server_name: 2006-01-02T15:04:05Z\n"),
        vec!["t.conf:1:0: interface conversion: interface {} is time.Time, not string"]
    );
}

// ---------------------------------------------------------------------------------------------
// Variables, environment, includes

#[test]
fn variables_scopes_and_usage() {
    let o = ok("A: 5\nauthorization { user: a, password: b, timeout: $A }\n");
    assert_eq!(o.auth.timeout, Duration::from_secs(5));
    let o = ok("authorization { A: 7, user: a, password: b, timeout: $A }\n");
    assert_eq!(o.auth.timeout, Duration::from_secs(7));
    let o = ok("authorization { PERM = { publish: \"foo\" }\n users: [ {user: a, password: b, permissions: $PERM } ] }\n");
    let perms = o.auth.users[0].permissions.clone().unwrap();
    assert_eq!(perms.publish.unwrap().allow, Some(vec!["foo".to_string()]));
    assert_eq!(
        err("X: 1\nport: 4222\n"),
        vec!["t.conf:1:0: unknown field \"X\""]
    );
    assert_eq!(
        err("port: 4222\n\nauthorization { user: $NOPE_X, password: b }\n"),
        vec!["variable reference for 'NOPE_X' on line 3 can not be found"]
    );
}

#[test]
fn no_substitution_inside_quotes() {
    let o = ok("authorization { user: a, password: \"$SECRET\" }\n");
    assert_eq!(o.auth.users[0].password, "$SECRET");
}

#[test]
fn bcrypt_2a_is_literal_but_2b_is_a_variable() {
    let o = ok("authorization { user: a, password: $2a$10$abc }\n");
    assert_eq!(o.auth.users[0].password, "$2a$10$abc");
    assert_eq!(
        err("authorization { user: a, password: $2b$10$abc }\n"),
        vec!["variable reference for '2b$10$abc' on line 1 can not be found"]
    );
}

#[test]
fn environment_variables_are_parsed_as_values() {
    // Unique names: tests run in parallel and share the environment.
    std::env::set_var("NATSD_CFG_TEST_PORT", "4555");
    std::env::set_var("NATSD_CFG_TEST_NAME", "abc");
    assert_eq!(ok("port: $NATSD_CFG_TEST_PORT\n").port, 4555);
    assert_eq!(
        err("port: $NATSD_CFG_TEST_NAME\n"),
        vec!["t.conf:1:0: interface conversion: interface {} is string, not int64"]
    );
}

#[test]
fn include_is_relative_and_parsed_on_its_own() {
    let tmp = Tmp::new();
    std::fs::create_dir(tmp.dir.path().join("sub")).unwrap();
    tmp.write(
        "sub/part.conf",
        "P: 9\nauthorization { user: a, password: b, timeout: $P }\n",
    );
    let main = tmp.write("sub/main.conf", "port: 4444\ninclude ./part.conf\n");
    let o = load_file(&main).unwrap().options;
    assert_eq!(o.port, 4444);
    assert_eq!(o.auth.timeout, Duration::from_secs(9));

    // A parent variable is not visible in the included file.
    tmp.write(
        "child.conf",
        "authorization { user: a, password: $PARENT_ONLY }\n",
    );
    let parent = tmp.write("parent.conf", "PARENT_ONLY: x\ninclude \"child.conf\"\n");
    let e = load_file(&parent).unwrap_err();
    assert!(
        e.errors[0].contains("variable reference for 'PARENT_ONLY' on line 1 can not be found"),
        "{e}"
    );

    let missing = tmp.write("missing.conf", "include nothere.conf\n");
    let e = load_file(&missing).unwrap_err();
    assert!(
        e.errors[0].starts_with("error parsing include file 'nothere.conf', open "),
        "{e}"
    );
    assert!(
        e.errors[0].ends_with("nothere.conf: no such file or directory"),
        "{e}"
    );
}

#[test]
fn include_cycle_is_an_error_not_a_hang() {
    let tmp = Tmp::new();
    let a = tmp.write("a.conf", "include b.conf\n");
    tmp.write("b.conf", "include a.conf\n");
    assert!(load_file(&a).is_err());
}

// ---------------------------------------------------------------------------------------------
// Options and their errors

#[test]
fn defaults_without_keys() {
    let l = load("# nothing\n").unwrap();
    let want = Options {
        config_file: l.options.config_file.clone(),
        ..Options::default()
    };
    assert_eq!(l.options, want);
    assert!(l.digest.starts_with("sha256:") && l.digest.len() == 7 + 64);
}

#[test]
fn digest_is_of_the_parsed_tree_not_the_bytes() {
    // Comments, spacing, order and how a value is spelled do not change it; values do.
    let a = load("port: 4222\nmax_payload: 1MB\n").unwrap().digest;
    let b = load("# c\nmax_payload = 1048576;   port 4222 // c\n")
        .unwrap()
        .digest;
    assert_eq!(a, b);
    assert_ne!(a, load("port: 4223\nmax_payload: 1MB\n").unwrap().digest);
}

#[test]
fn server_options() {
    let o = ok("host: 127.0.0.1\nport: -1\nserver_name: n1\nhttp_port: 8223\nmetrics_port: 7777\n\
        max_conn: 10\nmax_pending: 10MB\nmax_control_line: 2KB\nmax_subs: 1k\nping_max: 3\n\
        pidfile: /tmp/p.pid\nlogfile: /tmp/l.log\nlame_duck_duration: \"45s\"\nlame_duck_grace_period: \"3s\"\n\
        max_closed_clients: 5\nwrite_deadline: \"2s\"\nping_interval: \"1h30m\"\n");
    assert_eq!(o.host, "127.0.0.1");
    assert_eq!(o.port, -1);
    assert_eq!(o.server_name.as_deref(), Some("n1"));
    assert_eq!(o.http_port, Some(8223));
    assert_eq!(o.metrics_port, Some(7777));
    assert_eq!(o.max_connections, 10);
    assert_eq!(o.max_pending, 10 * 1024 * 1024);
    assert_eq!(o.max_control_line, 2048);
    assert_eq!(o.max_subs, 1000);
    assert_eq!(o.ping_max, 3);
    assert_eq!(o.pid_file, Some(PathBuf::from("/tmp/p.pid")));
    assert_eq!(o.log_file, Some(PathBuf::from("/tmp/l.log")));
    assert_eq!(o.lame_duck_duration, Duration::from_secs(45));
    assert_eq!(o.lame_duck_grace_period, Duration::from_secs(3));
    assert_eq!(o.max_closed_clients, 5);
    assert_eq!(o.write_deadline, Duration::from_secs(2));
    assert_eq!(o.ping_interval, Duration::from_secs(5400));
    let o = ok("http: \"127.0.0.1:8999\"\nmonitor_port: 8998\n");
    assert_eq!(
        (o.http_host.as_deref(), o.http_port),
        (Some("127.0.0.1"), Some(8998))
    );
    assert_eq!(ok("listen: 4333\n").port, 4333);
}

#[test]
fn option_errors_with_positions() {
    assert_eq!(
        err("port: 4222\n   foo_bar: 1\n"),
        vec!["t.conf:2:4: unknown field \"foo_bar\""]
    );
    assert_eq!(
        err("port: 4222\nauthorization {\n    foo: 1\n}\n"),
        vec!["t.conf:3:5: unknown field \"foo\""]
    );
    assert_eq!(
        err("server_name: \"a b\"\n"),
        vec!["t.conf:1:0: server name cannot contain spaces"]
    );
    assert_eq!(
        err("max_payload: 3GB\n"),
        vec!["t.conf:1:0: max_payload value is too big"]
    );
    assert_eq!(
        err("listen: \"127.0.0.1\"\n"),
        vec!["t.conf:1:0: could not parse address string \"127.0.0.1\""]
    );
    assert_eq!(
        err("max_pings_out: 3\n"),
        vec!["t.conf:1:0: unknown field \"max_pings_out\""]
    );
    assert_eq!(
        err("lame_duck_duration: \"5s\"\n"),
        vec!["t.conf:1:0: invalid lame_duck_duration of 5s, minimum is 30 seconds"]
    );
    // Printed as nats-server 2.15.1 prints it there (Go's Duration.String(), checked with
    // `nats-server -t`: conf/tests/nats_server.rs), not as `1500µs`.
    assert_eq!(
        err("lame_duck_duration: \"1500us\"\n"),
        vec!["t.conf:1:0: invalid lame_duck_duration of 1.5ms, minimum is 30 seconds"]
    );
    assert_eq!(
        err("lame_duck_duration: \"-5s\"\n"),
        vec!["t.conf:1:0: invalid lame_duck_duration of -5s, minimum is 30 seconds"]
    );
    assert_eq!(
        err("lame_duck_grace_period: \"-5s\"\n"),
        vec!["t.conf:1:0: invalid lame_duck_grace_period, needs to be positive"]
    );
}

#[test]
fn all_semantic_errors_in_one_pass() {
    assert_eq!(
        err("foo: 1\nbar: 2\nauthorization { baz: 3 }\n"),
        vec![
            "t.conf:1:0: unknown field \"foo\"",
            "t.conf:2:1: unknown field \"bar\"",
            "t.conf:3:17: unknown field \"baz\"",
        ]
    );
}

#[test]
fn durations() {
    let l = load("ping_interval: 30\n").unwrap();
    assert_eq!(l.options.ping_interval, Duration::from_secs(30));
    assert_eq!(
        l.warnings,
        vec!["t.conf:1:0: invalid use of field \"ping_interval\": ping_interval should be converted to a duration"]
    );
    // Unquoted `2m` is two million seconds, with the same warning.
    let l = load("write_deadline: 2m\n").unwrap();
    assert_eq!(l.options.write_deadline, Duration::from_secs(2_000_000));
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(
        err("ping_interval: \"bogus\"\n"),
        vec!["t.conf:1:0: error parsing ping_interval: time: invalid duration \"bogus\""]
    );
    assert_eq!(
        err("write_deadline: \"2x\"\n"),
        vec![
            "t.conf:1:0: error parsing write_deadline: time: unknown unit \"x\" in duration \"2x\""
        ]
    );
    assert_eq!(
        ok("ping_interval: 10s\n").ping_interval,
        Duration::from_secs(10)
    );
}

#[test]
fn notices_do_not_fail_test_mode() {
    let l =
        load("authorization { user: a, password: b }\nmax_payload: 9MB\ncluster { port: 6222 }\n")
            .unwrap();
    assert!(l.warnings.is_empty());
    assert!(l
        .notices
        .iter()
        .any(|n| n == "Plaintext passwords detected, use nkeys or bcrypt"));
    assert!(l
        .notices
        .iter()
        .any(|n| n.contains("Maximum payloads over 8.00 MB")));
    assert!(l
        .notices
        .iter()
        .any(|n| n.contains("option \"cluster\" (clustering; natsd runs a single node) is not supported by natsd and is ignored")));
}

#[test]
fn startup_checks_are_separate_from_loading() {
    let o = ok("max_payload: 128MB\nsystem_account: NOPE\nno_auth_user: zz\n");
    let errs = o.check_startup().unwrap_err();
    assert_eq!(
        errs,
        vec![
            "max_payload (134217728) cannot be higher than max_pending (67108864)",
            "error resolving system account: account missing",
            "no_auth_user: \"zz\" not present as user or nkey in authorization block or account configuration",
        ]
    );
    assert!(Options::default().check_startup().is_ok());
}

#[test]
fn authorization_variants() {
    let o = ok("authorization { token: \"s3cr3t\" }\n");
    assert_eq!(o.auth.token.as_deref(), Some("s3cr3t"));
    let o = ok("authorization { user: a, password: b, timeout: 3 }\n");
    assert_eq!(o.auth.timeout, Duration::from_secs(3));
    assert_eq!(
        ok("authorization { username: a, pass: b, timeout: \"3s\" }\n")
            .auth
            .users[0]
            .password,
        "b"
    );
    let o = ok("authorization { users: [ {user: a, password: b, permissions: { publish: \"foo\", subscribe: [\"bar\", \"baz\"] } } ] }\n");
    let p = o.auth.users[0].permissions.clone().unwrap();
    assert_eq!(p.publish.unwrap().allow, Some(vec!["foo".to_string()]));
    assert_eq!(
        p.subscribe.unwrap().allow,
        Some(vec!["bar".to_string(), "baz".to_string()])
    );
    assert_eq!(
        err("authorization { token: x, users: [{user: a, password: b}] }\n"),
        vec!["t.conf:1:0: Can not have a token and a users array"]
    );
    assert_eq!(
        err("authorization { token: x, user: a, password: b }\n"),
        vec!["t.conf:1:0: Cannot have a user/pass and token"]
    );
    assert_eq!(
        err("authorization { user: a, password: b, timeout: \"abc\" }\n"),
        vec!["t.conf:1:38: error parsing authorization config, 'timeout' time: invalid duration \"abc\""]
    );
    // Block-level permissions are the default for users without their own.
    let o = ok("authorization { permissions: { publish: \"a\" }, users: [{user: u, password: p}, {user: v, password: p, permissions: {publish: \"b\"}}] }\n");
    assert_eq!(
        o.auth.users[0]
            .permissions
            .clone()
            .unwrap()
            .publish
            .unwrap()
            .allow,
        Some(vec!["a".into()])
    );
    assert_eq!(
        o.auth.users[1]
            .permissions
            .clone()
            .unwrap()
            .publish
            .unwrap()
            .allow,
        Some(vec!["b".into()])
    );
}

#[test]
fn permissions_forms_and_errors() {
    let o = ok("authorization { users: [{user: a, password: b, permissions: {\n\
        pub: { allow: \"x.>\", deny: [\"x.y\"] }\n sub: { deny: \"s.*\" }\n allow_responses: { max_msgs: 5, ttl: \"1m\" } }}] }\n");
    let p = o.auth.users[0].permissions.clone().unwrap();
    assert_eq!(
        p.publish,
        Some(SubjectPermission {
            allow: Some(vec!["x.>".into()]),
            deny: vec!["x.y".into()]
        })
    );
    assert_eq!(
        p.subscribe,
        Some(SubjectPermission {
            allow: None,
            deny: vec!["s.*".into()]
        })
    );
    assert_eq!(
        p.allow_responses,
        Some(ResponsePermission {
            max: 5,
            expires: Duration::from_secs(60)
        })
    );
    let o = ok("authorization { users: [{user: a, password: b, permissions: { subscribe: \"q.> workers\", allow_responses: true }}] }\n");
    let p = o.auth.users[0].permissions.clone().unwrap();
    assert_eq!(p.subscribe.unwrap().allow, Some(vec!["q.> workers".into()]));
    assert_eq!(p.allow_responses, Some(ResponsePermission::default()));

    assert_eq!(
        err("authorization { users: [{user: a, password: b, permissions: {bogus: 1}}] }\n"),
        vec!["t.conf:1:61: Unknown field \"bogus\" parsing permissions"]
    );
    assert_eq!(
        err("authorization { users: [{user: a, password: b, permissions: {publish: {allow: \"a\", deny: [\"b\"], bogus: 1}}}] }\n"),
        vec!["t.conf:1:96: Unknown field name \"bogus\" parsing subject permissions, only 'allow' or 'deny' are permitted"]
    );
    assert!(err(
        "authorization { users: [{user: a, password: b, permissions: {publish: \"foo..bar\"}}] }\n"
    )[0]
    .ends_with("subject \"foo..bar\" is not a valid subject"));
    assert!(err("authorization { users: [{user: a, password: b, permissions: {subscribe: \"foo bar baz\"}}] }\n")[0]
        .ends_with("subject \"foo bar baz\" is not a valid subject"));
    assert_eq!(
        err("authorization { users: [{user: a, password: b, permissions: {allow_responses: {max: 5, expires: \"1m\", zz: 1}}}] }\n"),
        vec!["t.conf:1:102: Unknown field \"zz\" parsing permissions"]
    );
    assert_eq!(
        err("authorization { users: [{user: a, password: b, permissions: {allow_responses: {max: 5, expires: 30}}}] }\n"),
        vec!["t.conf:1:87: error parsing expires, not a duration string"]
    );
}

#[test]
fn account_errors() {
    assert_eq!(
        err("accounts { A { users: [{user: a, password: b}] }, B { users: [{user: a, password: c}] } }\n"),
        vec!["t.conf:1:54: Duplicate user \"a\" detected"]
    );
    assert_eq!(
        err("accounts { \"$G\": { users: [{user: a, password: b}] } }\n"),
        vec!["t.conf:1:12: \"$G\" is a Reserved Account"]
    );
    assert_eq!(
        err("accounts { A { jetstream: maybe } }\n"),
        vec!["t.conf:1:15: Expected 'enabled' or 'disabled' for string value, got 'maybe'"]
    );
    assert_eq!(
        err("accounts { A { users: [{user: a, password: b}], bogus: 1 } }\n"),
        vec!["t.conf:1:48: unknown field \"bogus\""]
    );
    assert_eq!(
        err("accounts { A { users: [{user: a, password: b, bogus: 1}] } }\n"),
        vec!["t.conf:1:46: unknown field \"bogus\""]
    );
    assert_eq!(
        err("accounts { A { jetstream: { max_mem: 1G, bogus: 1 } } }\n"),
        vec!["t.conf:1:41: unknown field \"bogus\""]
    );
    assert_eq!(
        err("accounts { A { limits: {max_connections: 1, bogus: 2} } }\n"),
        vec!["t.conf:1:44: Unknown field \"bogus\" parsing account limits"]
    );
    assert_eq!(
        err("accounts { A: 1 }\n"),
        vec!["t.conf:1:11: Expected map entries for accounts"]
    );
    assert!(
        err("accounts { A { imports: [{stream: {account: B, subject: \"x\"}}] } }\n")[0]
            .ends_with("\"B\" account not defined for stream import")
    );
    // `$SYS` may be declared to add users to the default system account.
    assert_eq!(
        ok("accounts { \"$SYS\": { users: [{user: s, password: p}] } }\n").accounts[0].name,
        "$SYS"
    );
}

#[test]
fn accounts_small_forms() {
    let o = ok("accounts { A { jetstream: enabled, users: [ {user: x, password: y} ] } }\n");
    assert_eq!(
        o.accounts[0].jetstream,
        Some(AccountJetStreamLimits::default())
    );
    let o = ok("accounts { A { limits { max_connections: 1, max_subscriptions: 1 }, users: [ {user: x, password: y} ] } }\n");
    assert_eq!(
        o.accounts[0].limits,
        AccountLimits {
            max_connections: 1,
            max_subscriptions: 1,
            max_payload: -1
        }
    );
    let o = ok("accounts { A { jetstream: { max_ack_pending: 100, memory_max_stream_bytes: 2k, store_max_stream_bytes: 4k, max_stream_bytes: true } } }\n");
    assert_eq!(
        o.accounts[0].jetstream,
        Some(AccountJetStreamLimits {
            max_ack_pending: 100,
            memory_max_stream_bytes: 2000,
            storage_max_stream_bytes: 4000,
            max_bytes_required: true,
            ..AccountJetStreamLimits::default()
        })
    );
    let o = ok("jetstream { domain: hub }\n");
    assert_eq!(o.jetstream.unwrap().domain.as_deref(), Some("hub"));
    let e = err("jetstream { domain: \"a.b\" }\n");
    assert!(e.iter().any(|m| m.contains("invalid domain name")), "{e:?}");
    let o = ok("accounts { A { jetstream: { mem: 1k, disk: 2k, streams: 3, consumers: 4 }, default_permissions: { publish: \"p.>\" }, users: [{user: x, password: y}] } }\n");
    assert_eq!(
        o.accounts[0].jetstream,
        Some(AccountJetStreamLimits {
            max_memory: 1000,
            max_store: 2000,
            max_streams: 3,
            max_consumers: 4,
            ..AccountJetStreamLimits::default()
        })
    );
    assert_eq!(
        o.auth.users[0]
            .permissions
            .clone()
            .unwrap()
            .publish
            .unwrap()
            .allow,
        Some(vec!["p.>".into()])
    );
}

#[test]
fn jetstream_forms() {
    assert_eq!(
        ok("jetstream: enabled\n").jetstream,
        Some(JetStreamConfig::default())
    );
    assert_eq!(
        ok("jetstream: true\n").jetstream,
        Some(JetStreamConfig::default())
    );
    assert_eq!(ok("jetstream: disabled\n").jetstream, None);
    let js =
        ok("jetstream { storedir: /tmp/x, max_mem: 1G, max_file: 2G, sync_interval: always }\n")
            .jetstream
            .unwrap();
    assert_eq!(js.store_dir, Some(PathBuf::from("/tmp/x")));
    assert_eq!(
        (js.max_memory, js.max_store, js.sync_always),
        (1_000_000_000, 2_000_000_000, true)
    );
    let js = ok("jetstream { store: /d, sync: \"2m\" }\n")
        .jetstream
        .unwrap();
    assert_eq!(js.sync_interval, Some(Duration::from_secs(120)));
    let js = ok("store_dir: /top\njetstream: enabled\n")
        .jetstream
        .unwrap();
    assert_eq!(js.store_dir, Some(PathBuf::from("/top")));
    assert_eq!(
        err("jetstream { bogus: 1 }\n"),
        vec!["t.conf:1:12: unknown field \"bogus\""]
    );
    assert_eq!(
        err("jetstream: \"maybe\"\n"),
        vec!["t.conf:1:0: Expected 'enabled' or 'disabled' for string value, got 'maybe'"]
    );
}

#[test]
fn tls_block() {
    let tmp = Tmp::new();
    let cert = tmp.write("c.pem", "x");
    let key = tmp.write("k.pem", "x");
    let text = format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\", verify: true, timeout: 3 }}\n",
        cert.display(),
        key.display()
    );
    let tls = ok(&text).tls.unwrap();
    assert_eq!(
        (tls.cert_file, tls.key_file, tls.verify, tls.timeout),
        (cert, key, true, Duration::from_secs(3))
    );
    assert_eq!(
        err("tls { key_file: \"/tmp/x.key\" }\n"),
        vec!["t.conf:1:0: missing 'cert_file' in TLS configuration"]
    );
    assert_eq!(
        err("tls { cert_file: \"/nonexistent/c.pem\", key_file: \"/nonexistent/k.pem\" }\n"),
        vec!["t.conf:1:0: error parsing X509 certificate/key pair: open /nonexistent/c.pem: no such file or directory"]
    );
}

// ---------------------------------------------------------------------------------------------
// The reference's §8 examples

#[test]
fn example_8_1_multitenant() {
    let path = fixtures().join("ex1_multitenant.conf");
    let l = load_file(&path).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let o = l.options;
    assert_eq!(o.server_name.as_deref(), Some("natsd-1"));
    assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 14260));
    assert_eq!(
        (o.http_host.as_deref(), o.http_port),
        (Some("127.0.0.1"), Some(14860))
    );
    assert_eq!(o.max_payload, 1 << 20);
    assert_eq!(o.max_connections, 1000);
    assert_eq!(o.ping_interval, Duration::from_secs(30));
    assert_eq!(o.write_deadline, Duration::from_secs(5));
    assert_eq!(o.system_account.as_deref(), Some("SYS"));
    assert_eq!(
        o.accounts
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        ["SHOP", "BLOG", "SYS"]
    );
    let names: Vec<(&str, &str)> = o
        .auth
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.account.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("shop", "SHOP"),
            ("order-service", "SHOP"),
            ("pricing", "SHOP"),
            ("blog", "BLOG"),
            ("sys", "SYS")
        ]
    );
    assert!(o.auth.users[1].password.starts_with("$2b$10$"));
    let svc = o.auth.users[1].permissions.clone().unwrap();
    assert_eq!(
        svc.publish,
        Some(SubjectPermission {
            allow: Some(vec!["orders.>".into(), "_INBOX.>".into()]),
            deny: vec!["orders.admin.>".into()]
        })
    );
    assert_eq!(
        svc.subscribe.unwrap().allow,
        Some(vec!["orders.*".into(), "_INBOX.>".into()])
    );
    let pricing = o.auth.users[2].permissions.clone().unwrap();
    assert_eq!(
        pricing.subscribe.unwrap().allow,
        Some(vec!["pricing.>".into()])
    );
    assert_eq!(
        pricing.allow_responses,
        Some(ResponsePermission {
            max: 1,
            expires: Duration::from_secs(120)
        })
    );
    assert!(o.auth.users[0].permissions.is_none());
    assert!(o.check_startup().is_ok());
    assert!(!l.notices.iter().any(|n| n.contains("Plaintext")));
    real_server_accepts(&path);
}

#[test]
fn example_8_2_jetstream() {
    let path = fixtures().join("ex2_jetstream.conf");
    let o = load_file(&path).unwrap().options;
    assert_eq!(o.http_port, Some(14861));
    assert_eq!(o.pid_file, Some(PathBuf::from("/tmp/nx/ex/natsd-js.pid")));
    let js = o.jetstream.clone().unwrap();
    assert_eq!(js.store_dir, Some(PathBuf::from("/tmp/nx/ex/jsdata")));
    assert_eq!((js.max_memory, js.max_store), (512 << 20, 10 << 30));
    let acc = |n: &str| o.accounts.iter().find(|a| a.name == n).unwrap().clone();
    assert_eq!(
        acc("SHOP").jetstream,
        Some(AccountJetStreamLimits {
            max_memory: 67_108_864,
            max_store: 1_073_741_824,
            max_streams: 10,
            max_consumers: 100,
            ..AccountJetStreamLimits::default()
        })
    );
    assert_eq!(
        acc("BLOG").jetstream,
        Some(AccountJetStreamLimits::default())
    );
    assert_eq!(acc("NOJS").jetstream, None);
    assert_eq!(
        o.auth
            .users
            .iter()
            .find(|u| u.name == "plain")
            .unwrap()
            .account,
        "NOJS"
    );
    real_server_accepts(&path);
}

#[test]
fn example_8_3_include_variables_exports_imports() {
    let path = fixtures().join("ex3.conf");
    let o = load_file(&path).unwrap().options;
    assert_eq!(
        (o.host.as_str(), o.port, o.http_port),
        ("127.0.0.1", 14262, Some(14862))
    );
    let sys = o.auth.users.iter().find(|u| u.name == "sys").unwrap();
    assert_eq!(
        sys.password,
        "$2a$11$rMWCjY8x.9EQ1Byq6YIIiO8R1Ex/idX7uJJChXxmHUCZe3OhteZpK"
    );
    let prov = o.accounts.iter().find(|a| a.name == "PROVIDER").unwrap();
    let mut private = Export::new(ExportKind::Service, "api.private");
    private.accounts = vec!["CONSUMER".into()];
    assert_eq!(
        prov.exports,
        vec![
            Export::new(ExportKind::Stream, "events.>"),
            Export::new(ExportKind::Service, "api.time"),
            private,
        ]
    );
    let cons = o.accounts.iter().find(|a| a.name == "CONSUMER").unwrap();
    let mut events = Import::new(ExportKind::Stream, "PROVIDER", "events.>");
    events.prefix = Some("prov".into());
    let mut time = Import::new(ExportKind::Service, "PROVIDER", "api.time");
    time.local = Some("time.now".into());
    assert_eq!(cons.imports, vec![events, time]);
    real_server_accepts(&path);
}

/// The import/export graph errors, each with nats-server 2.15's text and position (checked
/// with `nats-server -t`; `tests/imports.rs` compares the two binaries on the same files).
#[test]
fn import_graph_errors_read_as_nats_server_reports_them() {
    let a = "  A: { users: [{user: a, password: a}], ";
    let cases = [
        (
            format!("accounts {{\n{a}exports: [{{stream: \"foo.>\", accounts: [C]}}] }}\n  B: {{ imports: [{{stream: {{account: A, subject: \"foo.>\"}}}}] }}\n  C: {{}}\n}}\n"),
            vec!["t.conf:1:0: Error adding stream import \"foo.>\": stream import not authorized"],
        ),
        (
            format!("accounts {{\n{a}exports: [{{service: \"svc.>\"}}], imports: [{{service: {{account: B, subject: \"x.>\"}}}}] }}\n  B: {{ exports: [{{service: \"x.>\"}}], imports: [{{service: {{account: A, subject: \"svc.>\"}}, to: \"x.>\"}}] }}\n}}\n"),
            vec!["t.conf:1:0: Error adding service import \"svc.>\": import forms a cycle"],
        ),
        (
            format!("accounts {{\n{a}exports: [{{stream: \"foo.>\"}}] }}\n  B: {{ imports: [{{stream: {{account: A, subject: \"foo.>\"}}, prefix: \"x.*\"}}, {{service: {{account: A, subject: \"nope\"}}}}] }}\n}}\n"),
            vec![
                "t.conf:1:0: Error adding stream import \"foo.>\": stream import prefix can not contain wildcard tokens",
                "t.conf:1:0: Error adding service import \"nope\": service import not authorized",
            ],
        ),
        (
            format!("accounts {{\n{a}exports: [{{stream: \"foo.>\", accounts: [Z]}}] }}\n  B: {{ imports: [{{stream: {{account: Q, subject: \"foo.>\"}}}}] }}\n}}\n"),
            vec![
                "t.conf:1:0: \"Z\" account not defined for stream export",
                "t.conf:1:0: \"Q\" account not defined for stream import",
            ],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(&text), want, "{text}");
    }
    // A restricted export admits the accounts it names, and token positions admit by name.
    let o = ok("accounts {\n  A: { exports: [{service: \"q.>\", accounts: [B], response_type: stream, response_threshold: \"5s\"}, {stream: \"t.*.x\", account_token_position: 2}] }\n  B: { imports: [{service: {account: A, subject: \"q.>\"}, to: \"A.q.>\"}, {stream: {account: A, subject: \"t.B.x\"}}] }\n}\n");
    let export = &o.accounts[0].exports[0];
    assert_eq!(export.response_type, ResponseType::Stream);
    assert_eq!(
        export.response_threshold,
        Some(std::time::Duration::from_secs(5))
    );
    assert_eq!(
        err("accounts {\n  A: { exports: [{stream: \"t.*.x\", account_token_position: 2}] }\n  B: { imports: [{stream: {account: A, subject: \"t.C.x\"}}] }\n}\n"),
        vec!["t.conf:1:0: Error adding stream import \"t.C.x\": stream import not authorized"]
    );
}

// ---------------------------------------------------------------------------------------------
// Flags

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn run(s: &str) -> flags::FlagOptions {
    match parse_args(&args(s)).unwrap() {
        Command::Run(f) => f,
        other => panic!("{other:?}"),
    }
}

#[test]
fn flags_basic_forms() {
    let f = run("-a 127.0.0.1 --port=-1 -n srv -m 8222 -c /etc/n.conf -P /p -l /l -DV -js -sd=/data --user u --pass p");
    assert_eq!(f.host.as_deref(), Some("127.0.0.1"));
    assert_eq!(f.port, Some(-1));
    assert_eq!(f.server_name.as_deref(), Some("srv"));
    assert_eq!(f.http_port, Some(8222));
    assert_eq!(f.config_file, Some(PathBuf::from("/etc/n.conf")));
    assert_eq!(
        (f.debug, f.trace, f.jetstream),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(f.store_dir, Some(PathBuf::from("/data")));
    assert_eq!(
        (f.user.as_deref(), f.pass.as_deref()),
        (Some("u"), Some("p"))
    );
    assert_eq!(run("--net h --logtime=false").logtime, Some(false));
    assert_eq!(run("--addr h").host.as_deref(), Some("h"));
    let f = run("-VV");
    assert_eq!((f.debug, f.trace), (None, Some(true)));
    assert_eq!(run("-DVV").debug, Some(true));
    let f = run("--tls --tlscert c --tlskey k --tlscacert ca --tlsverify --auth tok");
    assert_eq!(
        (f.tls, f.tls_verify, f.auth_token.as_deref()),
        (Some(true), Some(true), Some("tok"))
    );
}

#[test]
fn flags_commands() {
    assert!(matches!(
        parse_args(&args("-c x.conf -t")).unwrap(),
        Command::Test(_)
    ));
    assert_eq!(parse_args(&args("-v")).unwrap(), Command::Version);
    assert_eq!(parse_args(&args("--help")).unwrap(), Command::Help);
    assert_eq!(
        parse_args(&args("--signal reload=/tmp/n.pid")).unwrap(),
        Command::Signal {
            command: SignalCommand::Reload,
            target: Some("/tmp/n.pid".into())
        }
    );
    assert_eq!(
        parse_args(&args("-sl=ldm")).unwrap(),
        Command::Signal {
            command: SignalCommand::Ldm,
            target: None
        }
    );
    assert_eq!(
        parse_args(&args("-sl bogus")).unwrap_err(),
        FlagError::UnknownSignal("bogus".into())
    );
    assert_eq!(SignalCommand::Stop.signal(), libc::SIGKILL);
}

#[test]
fn flags_errors_and_not_built() {
    assert_eq!(
        parse_args(&args("--bogus")).unwrap_err(),
        FlagError::Unknown("bogus".into())
    );
    assert_eq!(
        parse_args(&args("-p")).unwrap_err(),
        FlagError::MissingValue("p".into())
    );
    assert!(matches!(
        parse_args(&args("-p abc")).unwrap_err(),
        FlagError::InvalidValue { .. }
    ));
    assert_eq!(
        parse_args(&args("-p 1 extra")).unwrap_err(),
        FlagError::UnexpectedArgument("extra".into())
    );
    let f = run("--cluster nats://0.0.0.0:6222 --routes nats://a:6222 --cluster_name c -p 5");
    assert_eq!(f.not_built, ["--cluster", "--routes", "--cluster_name"]);
    assert_eq!(f.port, Some(5));
    assert!(flags::usage().contains("--signal"));
    // Monitoring over TLS is not built and bears on security: refused, not ignored.
    for flag in ["-ms 8443", "--https_port=8443"] {
        let error = parse_args(&args(flag)).unwrap_err();
        assert!(matches!(error, FlagError::Refused { .. }), "{flag}");
        assert!(error
            .to_string()
            .contains("(monitoring over TLS) is not supported by natsd"));
    }
    assert_eq!(
        parse_args(&args("--user_nkey U")).unwrap_err(),
        FlagError::Unknown("user_nkey".into())
    );
}

#[test]
fn flags_override_file_values() {
    let mut o = ok("listen: 127.0.0.1:14301\nserver_name: file\njetstream { store_dir: /a }\n");
    run("-p 14303 -n flagname -sd /b -D --user u --pass p").apply(&mut o);
    assert_eq!(o.port, 14303);
    assert_eq!(o.host, "127.0.0.1");
    assert_eq!(o.server_name.as_deref(), Some("flagname"));
    assert_eq!(o.jetstream.unwrap().store_dir, Some(PathBuf::from("/b")));
    assert!(o.debug);
    assert_eq!(o.auth.users[0].name, "u");

    let mut o = Options::default();
    run("-js -sd /c").apply(&mut o);
    assert_eq!(o.jetstream.unwrap().store_dir, Some(PathBuf::from("/c")));
}

// ---------------------------------------------------------------------------------------------
// Cross-check with the real server

/// The reference's §8.4 small forms and a few syntax corners: natsd must accept each, and so must
/// nats-server when it is installed.
#[test]
fn small_forms_accepted_by_both() {
    let forms = [
        "authorization { token: \"s3cr3t\" }\n",
        "authorization { user: a, password: b, timeout: 3 }\n",
        "authorization { users: [ {user: a, password: b, permissions: { publish: \"foo\", subscribe: [\"bar\", \"baz\"] } } ] }\n",
        "authorization { PERM = { publish: \"foo\" }\n users: [ {user: a, password: b, permissions: $PERM } ] }\n",
        "jetstream: enabled\n",
        "accounts { A { jetstream: enabled, users: [ {user: x, password: y} ] } }\n",
        "accounts { A { limits { max_connections: 1, max_subscriptions: 1 }, users: [ {user: x, password: y} ] } }\n",
        "port=14301;  max_payload = 2048; # c\n",
        "Port: 4333\nMAX_PAYLOAD: 1KB\nserver_name: a#b\n",
        "authorization\n{\n  user: a, password: b,\n}\n",
        "max_payload: 9MB\nmax_subs: 1k\ncluster { port: 6222 }\n",
        "jetstream { store_dir: /tmp/x, max_mem: 1G, max_file: 2G, sync_interval: always }\n",
        "ping_interval: 10s\nwrite_deadline: \"1m30s\"\nlame_duck_duration: \"45s\"\n",
    ];
    let tmp = Tmp::new();
    for (i, text) in forms.iter().enumerate() {
        let path = tmp.write(&format!("f{i}.conf"), text);
        let loaded = load_file(&path).unwrap_or_else(|e| panic!("natsd rejects {text:?}: {e}"));
        assert!(
            loaded.warnings.is_empty(),
            "{text:?}: {:?}",
            loaded.warnings
        );
        real_server_accepts(&path);
    }
}

/// Files nats-server rejects are rejected here too.
#[test]
fn invalid_forms_rejected_by_both() {
    let forms = [
        "foo_bar: 1\n",
        "authorization {user: a password: b}\n",
        "max_payload: \"64KB\"\n",
        "accounts { A { users: [{user: a, password: b}] }, B { users: [{user: a, password: c}] } }\n",
        "authorization { user: a, password: $2b$10$abc }\n",
    ];
    let tmp = Tmp::new();
    for (i, text) in forms.iter().enumerate() {
        let path = tmp.write(&format!("bad{i}.conf"), text);
        assert!(load_file(&path).is_err(), "natsd accepts {text:?}");
        if let Ok(out) = std::process::Command::new("nats-server")
            .arg("-t")
            .arg("-c")
            .arg(&path)
            .output()
        {
            assert!(!out.status.success(), "nats-server accepts {text:?}");
        }
    }
}
