//! Parser and encoder throughput on the hot path: many small publishes in one read buffer.
//!
//! Run with `cargo bench -p natsd --bench parser`. Uses std::time only (no harness). Each case
//! runs whole passes over a buffer of many ops for a while and reports the best pass (the one
//! least disturbed by other load on the machine) and the median pass, as ns/op and GB/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use natsd::bench::encode;
use natsd::bench::{parse, ClientOp, ParseLimits, Parsed};

const OPS_PER_BUFFER: usize = 100_000;
const MIN_RUN: Duration = Duration::from_millis(1500);

fn pub_buffer(payload_len: usize) -> Vec<u8> {
    let mut one = format!("PUB foo.bar {payload_len}\r\n").into_bytes();
    one.extend(std::iter::repeat_n(b'x', payload_len));
    one.extend_from_slice(b"\r\n");
    one.repeat(OPS_PER_BUFFER)
}

/// Parses every op in `buf`; returns how many there were (and folds payload lengths into a
/// checksum so the work cannot be optimised away).
fn parse_all(buf: &[u8], limits: &ParseLimits) -> (usize, usize) {
    let mut at = 0;
    let mut ops = 0;
    let mut checksum = 0usize;
    while at < buf.len() {
        match parse(&buf[at..], limits) {
            Ok(Parsed::Op { op, consumed }) => {
                if let ClientOp::Pub {
                    subject, payload, ..
                } = op
                {
                    checksum = checksum.wrapping_add(subject.len() + payload.len());
                }
                at += consumed;
                ops += 1;
            }
            other => panic!("benchmark buffer must parse cleanly: {other:?}"),
        }
    }
    (ops, checksum)
}

/// Times `pass` repeatedly for at least `MIN_RUN`; `pass` returns (ops, bytes) it handled.
fn measure(name: &str, mut pass: impl FnMut() -> (usize, usize)) {
    let mut samples = Vec::new();
    let (mut ops, mut bytes) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < MIN_RUN || samples.len() < 5 {
        let t = Instant::now();
        (ops, bytes) = pass();
        samples.push(t.elapsed());
    }
    samples.sort();
    let best = samples[0].as_secs_f64();
    let median = samples[samples.len() / 2].as_secs_f64();
    println!(
        "{name:<32} best {:>7.2} ns/op {:>6.2} GB/s | median {:>7.2} ns/op {:>6.2} GB/s | {} passes",
        best * 1e9 / ops as f64,
        bytes as f64 / best / 1e9,
        median * 1e9 / ops as f64,
        bytes as f64 / median / 1e9,
        samples.len(),
    );
}

fn bench_parse(name: &str, buf: &[u8]) {
    let limits = ParseLimits::default();
    measure(name, || {
        let (n, checksum) = parse_all(black_box(buf), &limits);
        black_box(checksum);
        (n, buf.len())
    });
}

fn bench_encode_msg(payload_len: usize) {
    let payload = vec![b'x'; payload_len];
    let mut out = BytesMut::with_capacity(
        encode::msg_len(b"foo.bar", b"1", None, payload_len) * OPS_PER_BUFFER,
    );
    measure(&format!("encode MSG {payload_len}B payload"), || {
        out.clear();
        for _ in 0..OPS_PER_BUFFER {
            encode::msg(
                &mut out,
                black_box(b"foo.bar"),
                black_box(b"1"),
                None,
                black_box(&payload),
            );
        }
        black_box(&out);
        (OPS_PER_BUFFER, out.len())
    });
}

fn main() {
    bench_parse("parse PUB foo.bar 16", &pub_buffer(16));
    bench_parse("parse PUB foo.bar 128", &pub_buffer(128));
    bench_parse("parse PUB foo.bar 1024", &pub_buffer(1024));
    let mixed = b"SUB foo.bar 1\r\nPING\r\nPUB foo.bar reply.inbox.1 2\r\nhi\r\nUNSUB 1 10\r\n"
        .repeat(OPS_PER_BUFFER / 4);
    bench_parse("parse mixed SUB/PING/PUB/UNSUB", &mixed);
    bench_encode_msg(16);
}
