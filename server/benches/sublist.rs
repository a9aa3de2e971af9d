//! Sublist micro-benchmarks, in the spirit of nats-server's own sublist benchmarks.
//!
//! Run with `cargo bench -p natsd --bench sublist`. Plain `std::time` loops, printing ns/op,
//! so that no benchmark framework has to be built.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use natsd::bench::Sublist;

/// Runs `op` `iterations` times per round and prints the best and the median round's mean
/// cost of one call: the machine is shared, so the best round is the least disturbed one.
fn measure(name: &str, iterations: u64, mut op: impl FnMut(u64)) {
    const ROUNDS: usize = 5;
    // Warm up caches and branch predictors before timing.
    for i in 0..iterations / 10 {
        op(i);
    }
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iterations {
                op(i);
            }
            start.elapsed().as_nanos() as f64 / iterations as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    let (best, median) = (rounds[0], rounds[ROUNDS / 2]);
    println!("{name:<44} best {best:>9.1} ns/op   median {median:>9.1} ns/op");
}

/// A populated list resembling one busy account: 10k literal subjects over three token
/// levels, a few hundred wildcard subscriptions and some queue groups.
fn populated() -> Sublist<Arc<u64>> {
    let list = Sublist::new();
    let mut id = 0u64;
    let mut next = || {
        id += 1;
        Arc::new(id)
    };
    for a in 0..10 {
        for b in 0..10 {
            for c in 0..100 {
                let subject = format!("svc{a}.region{b}.item{c}");
                list.insert(subject.as_bytes(), None, next()).ok();
            }
            list.insert(format!("svc{a}.region{b}.*").as_bytes(), None, next())
                .ok();
            list.insert(
                format!("svc{a}.region{b}.>").as_bytes(),
                Some(b"workers"),
                next(),
            )
            .ok();
        }
        list.insert(format!("svc{a}.*.item7").as_bytes(), None, next())
            .ok();
        list.insert(format!("svc{a}.>").as_bytes(), None, next())
            .ok();
    }
    list.insert(b">", None, next()).ok();
    list
}

fn main() {
    let list = populated();
    println!("subscriptions: {}", list.count());

    let hot = b"svc3.region4.item42";
    measure("match, cached", 2_000_000, |_| {
        black_box(list.match_subject(black_box(hot)));
    });

    // Far more distinct subjects than the cache holds: nearly every lookup is a miss that
    // walks the trie, builds a result and stores it (evicting a sweep now and then).
    let subjects: Vec<String> = (0..100_000u64)
        .map(|i| format!("svc{}.region{}.item{}", i % 10, (i / 10) % 10, i / 100))
        .collect();
    measure("match, uncached (miss + store)", 300_000, |i| {
        let subject = &subjects[(i as usize * 7919) % subjects.len()];
        black_box(list.match_subject(black_box(subject.as_bytes())));
    });

    // Fill the cache with the hot subjects before timing churn, as a running server has it.
    for subject in subjects.iter().take(1024) {
        list.match_subject(subject.as_bytes());
    }
    let inbox_item = Arc::new(u64::MAX);
    // Other requests of the same client keep the inbox prefix alive, so only leaves churn.
    list.insert(b"_INBOX.a1b2c3d4.pending", None, Arc::new(0))
        .ok();
    measure("insert + remove, literal inbox", 300_000, |i| {
        let inbox = [b"_INBOX.a1b2c3d4.r".as_slice(), &[b'a' + (i % 26) as u8]].concat();
        list.insert(&inbox, None, Arc::clone(&inbox_item)).ok();
        black_box(list.remove(&inbox, None, &inbox_item));
    });
    measure("insert + remove, wildcard (scans cache)", 20_000, |_| {
        list.insert(b"svc5.*.item9", None, Arc::clone(&inbox_item))
            .ok();
        black_box(list.remove(b"svc5.*.item9", None, &inbox_item));
    });

    let threads = 2;
    let per_thread = 2_000_000u64;
    let shared = Arc::new(list);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let list = Arc::clone(&shared);
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    black_box(list.match_subject(black_box(hot)));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().ok();
    }
    let ns = start.elapsed().as_nanos() as f64 / per_thread as f64;
    println!(
        "{:<48} {ns:>10.1} ns/op per thread",
        format!("match, cached, {threads} threads")
    );
    println!("{:?}", shared.stats());
}
