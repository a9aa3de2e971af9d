//! Entry points for the fuzz targets in `fuzz/` and for their stable replay test
//! (`server/tests/fuzz_replay.rs`): each takes untrusted bytes, runs one parser the way the
//! server runs it, and panics only when an invariant the parser promises is broken (a crash
//! the fuzzer then saves). The parsers themselves stay private; only these functions are
//! public, so the fuzz crate sees nothing else.
//!
//! Differential entry points compare an optimised implementation with a naive one written
//! here from the rules (subject matching, the sublist, Go durations, size suffixes).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::proto::parser::{parse, ClientOp, ParseLimits, Parsed};
use crate::store::record::{decode_block_header, BlockFormat, RecordKind};
use crate::store::{FileStore, FileStoreConfig, MessageStore, StoreError, SyncPolicy};
use natsd_conf::duration::{go_duration, parse_go_duration};

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every fuzz target by name, for the replay test and `scripts/fuzz.sh`.
pub const TARGETS: &[(&str, Target)] = &[
    ("client_protocol", client_protocol),
    ("config", config),
    ("store_records", store_records),
    ("store_recover", store_recover),
    ("consumer_state", consumer_state),
    ("js_api_json", js_api_json),
    ("monitor_query", monitor_query),
    ("subject_diff", subject_diff),
    ("sublist_diff", sublist_diff),
    ("size_duration_diff", size_duration_diff),
];

/// Splits `data` at the first `\n` (the second part may be empty).
fn split2(data: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\n', data) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn ops_of(buf: &[u8], limits: &ParseLimits) -> (Vec<String>, Option<String>) {
    let mut ops = Vec::new();
    let mut pos = 0;
    loop {
        match parse(&buf[pos..], limits) {
            Ok(Parsed::Op { op, consumed }) => {
                assert!(consumed > 0, "an op consumed nothing");
                assert!(
                    consumed <= buf.len() - pos,
                    "an op consumed past the buffer"
                );
                if let ClientOp::Pub { payload, .. } = &op {
                    assert!(payload.len() <= limits.max_payload);
                }
                ops.push(format!("{op:?}"));
                pos += consumed;
            }
            Ok(Parsed::NeedMore { at_least }) => {
                assert!(
                    at_least > buf.len() - pos,
                    "NeedMore for bytes already there"
                );
                return (ops, None);
            }
            Err(e) => return (ops, Some(format!("{e:?}"))),
        }
    }
}

/// The client protocol parser: the whole buffer at once and the same bytes arriving in
/// two reads split at a fuzzed point must frame the same operations.
pub fn client_protocol(data: &[u8]) {
    let Some((&knob, data)) = data.split_first() else {
        return;
    };
    let limits = ParseLimits {
        max_control_line: 16 + usize::from(knob & 0x3f) * 4,
        max_payload: 64 << (knob >> 6),
    };
    let (whole, whole_err) = ops_of(data, &limits);
    // Two reads: parse what the first read brought, keep the rest, append the second read.
    let cut = if data.is_empty() {
        0
    } else {
        usize::from(knob) % data.len()
    };
    let (mut ops, mut pos, mut err) = (Vec::new(), 0, None);
    for end in [cut, data.len()] {
        loop {
            match parse(&data[pos..end], &limits) {
                Ok(Parsed::Op { op, consumed }) => {
                    ops.push(format!("{op:?}"));
                    pos += consumed;
                }
                Ok(Parsed::NeedMore { .. }) => break,
                Err(e) => {
                    err = Some(format!("{e:?}"));
                    break;
                }
            }
        }
        if err.is_some() {
            break;
        }
    }
    // A split can only delay an error the protocol cannot see yet, never change the ops.
    if err.is_some() || whole_err.is_none() {
        assert_eq!(ops, whole, "split reads framed different operations");
        assert_eq!(err, whole_err, "split reads ended differently");
    } else {
        assert!(whole.starts_with(&ops));
    }
}

/// A scratch directory per thread, with two include files the fuzzed text may name.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // tmpfs when there is one: the store target writes and fsyncs files on every run.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("natsd-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(
            dir.join("inc.conf"),
            "port: 4333\nauthorization { token: t }\n",
        );
        let _ = std::fs::write(dir.join("self.conf"), "include self.conf\n");
        dir
    })
}

/// A fixed environment for `$NAME` lookups, so runs are repeatable: a size, a string, and
/// variables that refer to themselves and to each other.
fn fuzz_env(name: &str) -> Option<String> {
    match name {
        "SIZE" => Some("1MB".into()),
        "WORD" => Some("hello".into()),
        "LOOP" => Some("$LOOP".into()),
        "PING" => Some("$PONG".into()),
        "PONG" => Some("$PING".into()),
        _ => None,
    }
}

/// nats.conf: lexer, parser (includes, variables, nesting) and the typed options.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let dir = scratch().to_path_buf();
    let Ok(tree) = crate::config::parser::parse_text(&text, "fuzz.conf", Some(dir), 0, &fuzz_env)
    else {
        return;
    };
    let outcome = crate::config::load::build(&tree);
    if outcome.errors.is_empty() {
        let _ = outcome.options.check_startup();
    }
}

/// The store's block header and record decoders, walked the way recovery walks a block.
pub fn store_records(data: &[u8]) {
    let fmt = decode_block_header(data).ok();
    let (fmt, mut off) = match fmt {
        Some(f) => (f, f.header_len()),
        None => (BlockFormat::new(1, 0), 0),
    };
    while off < data.len() {
        let claimed = fmt.peek_len(&data[off..]);
        match fmt.decode(&data[off..]) {
            Ok(rec) => {
                assert!(rec.len > 0 && rec.len <= data.len() - off);
                assert_eq!(claimed, Some(rec.len), "peek_len disagrees with decode");
                if rec.kind == RecordKind::Msg {
                    // What decodes must re-encode to the same bytes.
                    let mut out = Vec::new();
                    fmt.encode_msg(
                        &mut out,
                        rec.seq,
                        rec.ts,
                        rec.subject,
                        rec.headers,
                        rec.payload,
                    );
                    assert_eq!(
                        fmt.decode(&out)
                            .map(|r| (r.seq, r.ts, r.subject, r.payload))
                            .ok(),
                        Some((rec.seq, rec.ts, rec.subject, rec.payload))
                    );
                }
                off += rec.len;
            }
            Err(_) => off += 1,
        }
    }
}

/// Recovery of a whole store from damaged files: after a two-byte little-endian length
/// comes a block file of that length, then a consumer state file. Open must not panic,
/// what the stream then reports must be loadable, and a write after recovery must
/// survive a reopen.
pub fn store_recover(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (block, obs) = rest.split_at(usize::from(u16::from_le_bytes(*len)).min(rest.len()));
    let dir = scratch().join(format!("store-{:?}", std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(dir.join("msgs"));
    let _ = std::fs::create_dir_all(dir.join("obs"));
    let first = decode_block_header(block).map(|f| f.first_seq).unwrap_or(1);
    let _ = std::fs::write(dir.join("msgs").join(format!("{first:016}.blk")), block);
    let _ = std::fs::write(dir.join("obs").join("C"), obs);
    let open = || {
        let mut cfg = FileStoreConfig::new(&dir);
        cfg.sync = SyncPolicy::Always;
        FileStore::open(cfg)
    };
    let Ok(store) = open() else {
        return;
    };
    let state = store.state();
    let mut loadable = 0u64;
    for seq in state.first_seq..=state.last_seq.min(state.first_seq.saturating_add(10_000)) {
        match store.load_msg(seq) {
            Ok(m) => {
                assert_eq!(m.seq, seq);
                loadable += 1;
            }
            Err(StoreError::NotFound | StoreError::Corrupt { .. }) => {}
            Err(e) => panic!("load of {seq} failed: {e}"),
        }
    }
    if state.last_seq.saturating_sub(state.first_seq) < 10_000 {
        assert_eq!(
            loadable, state.msgs,
            "stream reports messages it cannot load"
        );
    }
    if let Ok(Some(state)) = store.consumer_store().load("C") {
        consumer_state(&state);
    }
    let stored = store.store_msg(b"after", None, b"recovery", 0);
    drop(store);
    if let Ok((seq, _)) = stored {
        let again = open().expect("reopen after a write");
        assert_eq!(
            again.load_msg(seq).map(|m| m.payload).ok().as_deref(),
            Some(&b"recovery"[..])
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A consumer's persisted state; what decodes re-encodes to a state that decodes the same.
pub fn consumer_state(data: &[u8]) {
    use crate::consumer::state::ConsumerState;
    if let Ok(state) = ConsumerState::decode(data, 30_000_000_000) {
        let again = ConsumerState::decode(&state.encode(), 30_000_000_000);
        assert_eq!(again.ok().as_ref(), Some(&state));
    }
}

/// JetStream API request bodies: the first byte picks the request type.
pub fn js_api_json(data: &[u8]) {
    use crate::consumer::config::{ConsumerConfig, StreamContext};
    use crate::jetstream::config::StreamConfig;
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(mut cfg) = crate::json::from_request::<StreamConfig>(body) {
                if cfg.normalize().is_ok() {
                    let _ = cfg.store_limits();
                    let _ = serde_json::to_vec(&cfg.for_reply(true));
                }
            }
        }
        1 => {
            if let Ok(parsed) = crate::json::from_request::<ConsumerConfig>(body) {
                let subjects = vec!["a.>".to_string()];
                let mut cfg = parsed.clone();
                for workqueue in [false, true] {
                    let stream = StreamContext {
                        subjects: &subjects,
                        workqueue,
                        interest_or_workqueue: workqueue,
                        replicas: 1,
                        max_ack_pending_limit: 0,
                        stream_max_ack_pending: 0,
                        stream_inactive_threshold: 0,
                    };
                    cfg = parsed.clone();
                    cfg.apply_defaults(&stream);
                    let _ = cfg.validate(&stream);
                }
                let _ = cfg.start_time_ns();
                let _ = cfg.pause_until_ns();
                let _ = serde_json::to_vec(&cfg);
            }
        }
        _ => {
            let _ = crate::json::from_request::<serde_json::Value>(body);
        }
    }
}

/// Monitoring query strings, through every endpoint's option decoder.
pub fn monitor_query(data: &[u8]) {
    use crate::monitor::{accountz, connz, jsz, subsz, Params};
    let query = String::from_utf8_lossy(data);
    let p = Params::parse(&query);
    let _ = connz::ConnzOptions::from_params(&p);
    let _ = subsz::SubszOptions::from_params(&p);
    let _ = jsz::JszOptions::from_params(&p);
    let _ = jsz::HealthzOptions::from_params(&p);
    let _ = accountz::AccountStatzOptions::from_params(&p);
}

/// Subject matching by the rules, token by token, with no shortcuts.
fn naive_matches(pattern: &[u8], literal: &[u8]) -> bool {
    let p: Vec<&[u8]> = pattern.split(|&b| b == b'.').collect();
    let l: Vec<&[u8]> = literal.split(|&b| b == b'.').collect();
    for (i, pt) in p.iter().enumerate() {
        if *pt == b">" {
            return i == p.len() - 1 && l.len() > i;
        }
        match l.get(i) {
            None => return false,
            Some(lt) if *pt != b"*" && pt != lt => return false,
            Some(_) => {}
        }
    }
    p.len() == l.len()
}

/// A subject is valid when no token is empty and no token holds whitespace (space, tab,
/// CR, LF, form feed: nats-server's set); a wildcard is
/// a whole token, and `>` only last.
fn naive_valid(subject: &[u8], literal_only: bool) -> bool {
    if subject.is_empty() {
        return false;
    }
    let tokens: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && !t
                .iter()
                .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0c))
            && match *t {
                b">" => !literal_only && i == tokens.len() - 1,
                b"*" => !literal_only,
                _ => true,
            }
    })
}

/// Subject matcher and validity against the naive versions above.
pub fn subject_diff(data: &[u8]) {
    let (pattern, literal) = split2(data);
    let valid = crate::subject::is_valid_subject(pattern);
    assert_eq!(
        valid,
        naive_valid(pattern, false),
        "validity of {pattern:?}"
    );
    let lit_valid = crate::subject::is_valid_literal_subject(literal);
    assert_eq!(
        lit_valid,
        naive_valid(literal, true),
        "literal validity of {literal:?}"
    );
    if valid && lit_valid {
        assert_eq!(
            crate::subject::matches(pattern, literal),
            naive_matches(pattern, literal),
            "{pattern:?} vs {literal:?}"
        );
        if crate::subject::is_literal(pattern) {
            // A literal pattern is a subset of whatever matches it.
            let wide = crate::subject::is_subset(pattern, b">");
            assert!(wide, "every literal is under >");
        }
    }
}

/// The sublist against a linear scan: each line is `+pattern [queue]`, `-pattern [queue]`
/// or `?literal`; every query must give the same plain and queue subscribers.
pub fn sublist_diff(data: &[u8]) {
    let sl: crate::sublist::Sublist<u32> = crate::sublist::Sublist::new();
    let mut subs: Vec<(Vec<u8>, Option<Vec<u8>>, u32)> = Vec::new();
    let mut next_id = 0u32;
    for line in data.split(|&b| b == b'\n').take(256) {
        let Some((&op, rest)) = line.split_first() else {
            continue;
        };
        let mut parts = rest.splitn(2, |&b| b == b' ');
        let subject = parts.next().unwrap_or_default();
        let queue = parts.next().filter(|q| !q.is_empty());
        match op {
            b'+' => {
                let ok = sl.insert(subject, queue, next_id).is_ok();
                assert_eq!(ok, naive_valid(subject, false), "insert of {subject:?}");
                if ok {
                    subs.push((subject.to_vec(), queue.map(<[u8]>::to_vec), next_id));
                    next_id += 1;
                }
            }
            b'-' => {
                let found = subs
                    .iter()
                    .position(|(s, q, _)| s == subject && q.as_deref() == queue);
                if let Some(i) = found {
                    let (_, _, id) = subs.remove(i);
                    assert!(sl.remove(subject, queue, &id), "remove of {subject:?}");
                }
            }
            _ => {
                if !naive_valid(subject, true) {
                    continue;
                }
                let r = sl.match_subject(subject);
                let mut plain: Vec<u32> = r.plain.clone();
                let mut queued: Vec<u32> = r
                    .queues
                    .iter()
                    .flat_map(|g| g.members.iter().copied())
                    .collect();
                plain.sort_unstable();
                queued.sort_unstable();
                let matching = subs.iter().filter(|(s, _, _)| naive_matches(s, subject));
                let mut want_plain: Vec<u32> = Vec::new();
                let mut want_queued: Vec<u32> = Vec::new();
                for (_, q, id) in matching {
                    if q.is_some() {
                        want_queued.push(*id);
                    } else {
                        want_plain.push(*id);
                    }
                }
                want_plain.sort_unstable();
                want_queued.sort_unstable();
                assert_eq!(plain, want_plain, "plain subscribers of {subject:?}");
                assert_eq!(queued, want_queued, "queue subscribers of {subject:?}");
            }
        }
        assert_eq!(sl.count(), subs.len());
    }
}

/// Go's `time.ParseDuration`, written from its documentation: a sign, then one or more
/// decimal numbers each with a unit; exact integer nanoseconds (no float rounding).
fn naive_go_duration(s: &str) -> Option<(bool, u128)> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some((neg, 0));
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int = &rest[..int_end];
        rest = &rest[int_end..];
        let mut frac = "";
        if let Some(r) = rest.strip_prefix('.') {
            let e = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            frac = &r[..e];
            rest = &r[e..];
        }
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_end = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale: u128 = match &rest[..unit_end] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_end..];
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().unwrap_or(u128::MAX / 2)
        };
        total = total.saturating_add(int.saturating_mul(scale));
        let mut f = 0u128;
        let mut div = 1u128;
        for d in frac.bytes() {
            let next = f * 10 + u128::from(d - b'0');
            // Past 30 digits a digit is worth under a nanosecond even in hours, and `div`
            // (Go keeps its scale in a float) would overflow after 38 leading zeros.
            if next > GO_MAX_NANOS + 1 || div >= FRACTION_DIGITS_BOUND {
                break;
            }
            f = next;
            div *= 10;
        }
        total = total.saturating_add(f * scale / div);
    }
    Some((neg, total))
}

/// Go's limit: a duration is an int64 of nanoseconds.
const GO_MAX_NANOS: u128 = i64::MAX as u128;

/// 10^30: no fraction digit after this many changes a duration by a nanosecond.
const FRACTION_DIGITS_BOUND: u128 = 10u128.pow(30);

/// Durations and config sizes against the rules: the parser agrees with the exact
/// reference on accept/reject and (within float rounding) on the value, and every
/// duration it formats parses back to itself. Sizes: `n` with a suffix through the
/// config lexer equals `n` times the nats-server multiplier (or an error past i64), and
/// the shared `parse_size` (what manage uses) reads it the same.
pub fn size_duration_diff(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (dur, size) = text.split_once('\n').unwrap_or((&text, ""));
    let got = parse_go_duration(dur);
    // Go reads a fraction through a float: allow a nanosecond of rounding per fraction.
    let slack = dur.matches('.').count() as u128;
    match naive_go_duration(dur) {
        Some((neg, nanos)) => {
            let limit = if neg { GO_MAX_NANOS + 1 } else { GO_MAX_NANOS };
            if nanos.saturating_add(slack) <= limit {
                let (g_neg, g) = got.unwrap_or_else(|e| panic!("{dur:?} rejected: {e}"));
                assert!(nanos == 0 || g_neg == neg, "sign of {dur:?}");
                let g = g.as_nanos();
                assert!(g.abs_diff(nanos) <= slack, "{dur:?}: {g} vs {nanos}");
            } else if nanos > limit + slack {
                assert!(got.is_err(), "{dur:?} past Go's limit accepted as {got:?}");
            }
        }
        None => assert!(got.is_err(), "{dur:?} accepted as {got:?}"),
    }
    if let Some(d) = data.get(..8) {
        let nanos = u64::from_le_bytes(d.try_into().unwrap_or_default()) >> 1;
        let d = Duration::from_nanos(nanos);
        let back = parse_go_duration(&go_duration(d));
        assert_eq!(back.map(|(_, b)| b).ok(), Some(d), "round trip of {d:?}");
    }
    // Sizes: digits then a suffix, read by the config lexer.
    let digits_end = size
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(size.len());
    let (digits, suffix) = size.split_at(digits_end);
    if digits.is_empty() || digits.len() > 30 || suffix.len() > 3 || !suffix.is_ascii() {
        return;
    }
    if !suffix.chars().all(|c| c.is_ascii_alphabetic()) {
        return;
    }
    let lower = suffix.to_ascii_lowercase();
    let want = naive_size(digits, &lower);
    let literal = format!("{digits}{suffix}");
    let got = natsd_conf::size::conf_size(&literal);
    // The shared rule manage uses must read a size exactly as the config lexer does.
    let shared = natsd_conf::size::parse_size(&literal).ok();
    if want.is_some() {
        assert_eq!(shared, got, "parse_size vs the config lexer on {literal}");
    }
    match want {
        Some(Some(n)) => assert_eq!(got, Some(n), "{digits}{suffix}"),
        Some(None) => assert_eq!(got, None, "{digits}{suffix} out of range"),
        None => assert!(
            !matches!(got, Some(n) if n.to_string() != digits),
            "{digits}{suffix} read as a size"
        ),
    }
}

/// nats-server's sizes: k/m/g/t/p/e are powers of 1000; with `b`, `i` or `ib` after the
/// letter, powers of 1024. `Some(None)`: a size, but past i64. `None`: not a size suffix.
fn naive_size(digits: &str, suffix: &str) -> Option<Option<i64>> {
    if suffix.is_empty() {
        return Some(digits.parse().ok());
    }
    let letters = ["k", "m", "g", "t", "p", "e"];
    let power = letters.iter().position(|l| suffix.starts_with(l))? as u32 + 1;
    let base: i128 = match &suffix[1..] {
        "" => 1000,
        "b" | "i" | "ib" => 1024,
        _ => return None,
    };
    let n: i128 = match digits.parse() {
        Ok(n) => n,
        Err(_) => return Some(None),
    };
    Some(
        n.checked_mul(base.pow(power))
            .and_then(|v| i64::try_from(v).ok()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod seeds {
    use super::*;

    /// Regenerates the binary seeds (store blocks, consumer state) from the real encoders:
    /// `cargo test -p natsd --lib write_binary_seeds -- --ignored`.
    #[test]
    #[ignore = "writes fuzz/seeds; run by hand when the formats change"]
    fn write_binary_seeds() {
        use crate::consumer::state::{ConsumerState, Pending, SeqPair};

        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        for t in ["store_records", "store_recover", "consumer_state"] {
            std::fs::create_dir_all(seeds.join(t)).unwrap();
        }
        // Consumer states, as the consumer persists them.
        let mut state = ConsumerState {
            delivered: SeqPair {
                consumer_seq: 12,
                stream_seq: 40,
            },
            ack_floor: SeqPair {
                consumer_seq: 9,
                stream_seq: 30,
            },
            ..ConsumerState::default()
        };
        std::fs::write(seeds.join("consumer_state/empty"), state.encode()).unwrap();
        state.pending.insert(
            35,
            Pending {
                consumer_seq: 10,
                timestamp: 1_700_000_000_000_000_000,
                deadline: 0,
            },
        );
        state.redelivered.insert(35, 2);
        std::fs::write(seeds.join("consumer_state/pending"), state.encode()).unwrap();

        // Real stores: a block with messages, headers, a delete and a purge floor.
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = FileStoreConfig::new(tmp.path());
        cfg.sync = SyncPolicy::Always;
        let store = FileStore::open(cfg).unwrap();
        store.store_msg(b"orders.new", None, b"one", 0).unwrap();
        store
            .store_msg(b"orders.new", Some(b"NATS/1.0\r\nA: b\r\n\r\n"), b"two", 0)
            .unwrap();
        store.store_msg(b"orders.old", None, b"three", 0).unwrap();
        store.remove_msg(2).unwrap();
        store.flush().unwrap();
        store.consumer_store().save("C", &state.encode()).unwrap();
        drop(store);
        let block = std::fs::read(tmp.path().join("msgs").join(format!("{:016}.blk", 1))).unwrap();
        let obs = std::fs::read(tmp.path().join("obs").join("C")).unwrap_or_default();
        std::fs::write(seeds.join("store_records/block"), &block).unwrap();
        // store_recover: block length (u16 LE), block, consumer state file.
        let mut joined = u16::try_from(block.len()).unwrap().to_le_bytes().to_vec();
        joined.extend_from_slice(&block);
        std::fs::write(seeds.join("store_recover/block_only"), &joined).unwrap();
        joined.extend_from_slice(&obs);
        std::fs::write(seeds.join("store_recover/block_and_consumer"), &joined).unwrap();
        std::fs::write(seeds.join("store_recover/empty"), [0u8, 0]).unwrap();
    }
}
