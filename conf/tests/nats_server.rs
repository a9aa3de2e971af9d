//! Each value rule of this crate checked against the real nats-server 2.15.1 (the venv's
//! `nats-server`, found by `testkit`). These tests fail when the binary is missing (a
//! comparison that cannot run must not pass), unless `NATSD_SKIP_REFERENCE=1` asks to skip.
//!
//! How each rule is observed from outside the binary:
//! - sizes: `nats-server -t` prints the `config_digest` of the *parsed* tree, so a file holding
//!   one size has the same digest here and there only if both read the size as the same
//!   integer; a size one side refuses must be refused by the other;
//! - Go durations, parsed and printed: `lame_duck_duration` under 30 s is refused with
//!   `invalid lame_duck_duration of <parsed value printed by Go>`, and a malformed one with
//!   `time.ParseDuration`'s own error;
//! - subjects: permission subjects are validated by `-t` (`subject "a..b" is not a valid
//!   subject`);
//! - the quoted JetStream size form, durations as values and timestamps: a running server's
//!   `/varz`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use natsd_conf::duration::{go_duration, go_duration_nanos, parse_go_duration};
use natsd_conf::subject::is_valid_subject;
use natsd_conf::timestamp::{parse_rfc3339_ns, rfc3339_ns};

/// `nats-server -t -c <file with text>`: its verdict, message on stderr.
fn check(nats_server: &Path, dir: &Path, text: &str) -> Output {
    let path = dir.join("t.conf");
    std::fs::write(&path, text).unwrap();
    Command::new(nats_server)
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// The digest nats-server prints after a successful `-t`.
fn printed_digest(out: &Output) -> Option<String> {
    let text = stderr(out);
    let start = text.find("(sha256:")? + 1;
    Some(text[start..text.len() - 1].to_string())
}

#[test]
fn sizes_are_read_as_nats_server_reads_them() {
    let Some(reference) = testkit::reference_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for literal in [
        "1048576", "64k", "64K", "64kb", "64KB", "64ki", "64KiB", "1m", "1M", "1MB", "1mi", "1MiB",
        "1G", "1g", "1GB", "1Gi", "1GiB", "10GB", "1t", "1TB", "1TiB", "1p", "1PB", "1e", "1EB",
        "7EB", "-1", "-2K",
    ] {
        let text = format!("jetstream {{ max_file_store: {literal} }}\n");
        let out = check(&reference, dir.path(), &text);
        let ours = natsd_conf::parser::parse_text(&text, "t.conf", None, 0, &|_| None).unwrap();
        assert_eq!(
            printed_digest(&out),
            Some(natsd_conf::digest(&ours)),
            "{literal}: nats-server says {}",
            stderr(&out)
        );
        let value = match &ours.entries[0].value.value {
            natsd_conf::Value::Map(m) => m.entries[0].value.value.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            value,
            natsd_conf::Value::Int(natsd_conf::size::parse_size(literal).unwrap()),
            "the lexer and parse_size agree on {literal}"
        );
    }
    // Units nats.conf does not know and digits past an int64: refused by both (nats-server:
    // `strconv.ParseInt: parsing "1X"`, `unknown field` when its lexer took the text for a
    // key, `integer ... is out of the range`).
    for literal in ["1XB", "1GBB", "9223372036854775808"] {
        let text = format!("jetstream {{ max_file_store: {literal} }}\n");
        assert!(
            !check(&reference, dir.path(), &text).status.success(),
            "{literal}"
        );
        assert!(natsd_conf::size::parse_size(literal).is_err(), "{literal}");
    }
    // The one deliberate difference (docs/differences.md): nats-server multiplies the unit in
    // without an overflow check, so `8EB` (2^63) wraps to -2^63, a negative limit; natsd
    // refuses it.
    let wrapped = check(
        &reference,
        dir.path(),
        "jetstream { max_file_store: -9223372036854775808 }\n",
    );
    assert_eq!(
        printed_digest(&check(
            &reference,
            dir.path(),
            "jetstream { max_file_store: 8EB }\n"
        )),
        printed_digest(&wrapped),
        "nats-server reads 8EB as i64::MIN"
    );
    assert!(natsd_conf::size::parse_size("8EB").is_err());
}

#[test]
fn durations_parse_and_print_as_nats_server_does() {
    let Some(reference) = testkit::reference_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for input in [
        "1500us",
        "1.5ms",
        "1500µs",
        "0.5s",
        "29.999999999s",
        "1ns",
        "587µs",
        "3.264616ms",
        "-5s",
        "-1.5ms",
        "0",
        "1m-0s",
    ] {
        let out = check(
            &reference,
            dir.path(),
            &format!("lame_duck_duration: \"{input}\"\n"),
        );
        let ours = match parse_go_duration(input) {
            Ok((negative, d)) => {
                let nanos = i64::try_from(d.as_nanos()).unwrap();
                format!(
                    "t.conf:1:0: invalid lame_duck_duration of {}, minimum is 30 seconds",
                    go_duration_nanos(if negative { -nanos } else { nanos })
                )
            }
            Err(e) => format!("t.conf:1:0: error parsing lame_duck_duration: {e}"),
        };
        let theirs = stderr(&out);
        assert!(
            theirs.ends_with(&ours),
            "{input}: nats-server says {theirs:?}, natsd-conf {ours:?}"
        );
    }
    // And the ones it accepts, accepted here with the same value (≥ 30 s).
    for input in ["30s", "1h30m", "2562047h"] {
        assert!(check(
            &reference,
            dir.path(),
            &format!("lame_duck_duration: \"{input}\"\n")
        )
        .status
        .success());
        assert!(parse_go_duration(input).unwrap().1 >= Duration::from_secs(30));
    }
}

#[test]
fn subject_validity_is_nats_servers() {
    let Some(reference) = testkit::reference_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for subject in [
        "orders",
        "orders.*",
        "orders.>",
        ">",
        "*",
        "orders*",
        "a.x>",
        "a.*.c",
        "_INBOX.>",
        "$JS.API.>",
        "a..b",
        ".a",
        "a.",
        "a.>.b",
        ">.a",
        "a b",
        "a\tb",
        "a\u{c}b",
        "ü.ß",
    ] {
        let text = format!(
            "authorization {{ users: [{{user: a, password: b, permissions: {{publish: [\"{subject}\"]}}}}] }}\n"
        );
        let valid_there = check(&reference, dir.path(), &text).status.success();
        assert_eq!(
            is_valid_subject(subject.as_bytes()),
            valid_there,
            "{subject:?}"
        );
    }
}

#[test]
fn varz_values_and_times_are_what_natsd_conf_makes_of_them() {
    let Some(reference) = testkit::reference_server() else {
        return;
    };
    let server = testkit::TestServer::start_bin(
        &reference,
        testkit::ServerSpec::new().monitor().jetstream().config(
            "ping_interval: \"1m30.5s\"\nwrite_deadline: \"1500us\"\nmax_pending: 1G\n\
                 jetstream { max_memory_store: \"1G\", max_file_store: 1G }\n",
        ),
    );
    let varz = testkit::http::get_json_blocking(&format!("{}/varz", server.monitor_url()));
    let nanos = |text: &str| parse_go_duration(text).unwrap().1.as_nanos() as u64;
    assert_eq!(varz["ping_interval"], nanos("1m30.5s"));
    assert_eq!(varz["write_deadline"], nanos("1500us"));
    assert_eq!(
        go_duration(Duration::from_nanos(
            varz["write_deadline"].as_u64().unwrap()
        )),
        "1.5ms"
    );
    assert_eq!(
        varz["max_pending"],
        natsd_conf::size::parse_size("1G").unwrap()
    );
    assert_eq!(
        varz["jetstream"]["config"]["max_memory"],
        natsd_conf::size::parse_storage_string("1G").unwrap(),
        "the quoted form is binary"
    );
    assert_eq!(varz["jetstream"]["config"]["max_storage"], 1_000_000_000);
    // Go's times, printed back identically: RFC 3339, fraction without trailing zeros.
    for key in ["start", "now", "config_load_time"] {
        let text = varz[key].as_str().unwrap();
        let ns = parse_rfc3339_ns(text).unwrap();
        assert_eq!(rfc3339_ns(ns), text, "{key}");
    }
}
