//! The queue's costs, on a file in the target folder (a real disk, so fsync costs what it
//! costs; a tmpfs would hide it):
//!
//! - `push/1 event`: one drift event, one transaction, fsynced: the daemon's everyday write.
//! - `push/100 events`: one transaction of 100 (a burst after a profile change).
//! - `peek 500 + ack`: one batch read back and deleted (fsynced), as the sender does per
//!   request; the 500 items are pushed before each iteration, outside the measurement.
//! - `push/1 event into a full queue of 100,000`: the worst steady case of a full queue: every
//!   push goes over the limit, and folding (a scan of the fold index) frees one item, so
//!   nothing is dropped.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use postwarden_queue::{Entry, Limits, Queue, DEFAULT_MAX_ITEMS};
use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-05-05 12:00:00 UTC);

/// Drift event number `n`, a setting of its own (nothing folds).
fn event(n: u128) -> Entry {
    support::event(
        n,
        &format!("mail.server.server{n}.socketType"),
        json!(3),
        json!(0),
    )
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let limits = Limits {
        max_items: u64::MAX,
        max_bytes: u64::MAX,
    };
    let mut queue = Queue::open(&dir.path().join("queue.db"), limits).unwrap();
    let mut next = 0u128;
    let mut batch = |n: u128| {
        let entries: Vec<Entry> = (next..next + n).map(event).collect();
        next += n;
        entries
    };

    let mut group = c.benchmark_group("queue");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for n in [1u128, 100] {
        let name = if n == 1 {
            "push/1 event".to_owned()
        } else {
            format!("push/{n} events")
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let batches: Vec<Vec<Entry>> = (0..iters).map(|_| batch(n)).collect();
                let start = Instant::now();
                for entries in &batches {
                    queue.push(entries, NOW).unwrap();
                }
                let elapsed = start.elapsed();
                // Keep the queue small between samples, outside the measurement.
                queue.ack(i64::MAX).unwrap();
                elapsed
            })
        });
    }
    group.bench_function("peek 500 + ack", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                queue.push(&batch(500), NOW).unwrap(); // not measured
                let start = Instant::now();
                let items = queue.peek(500, usize::MAX).unwrap();
                queue.ack(items[items.len() - 1].seq).unwrap();
                elapsed += start.elapsed();
                assert_eq!(items.len(), 500);
            }
            elapsed
        })
    });

    // A full default-sized queue of distinct settings, plus one setting that every measured
    // push folds into.
    let full = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut queue = Queue::open(&full.path().join("queue.db"), Limits::default()).unwrap();
    let fill = DEFAULT_MAX_ITEMS as u128;
    let contested = |n| support::event(n, "contested.setting", json!(3), json!(0));
    for start in (0..fill).step_by(1000) {
        let mut entries: Vec<Entry> = (start..start + 1000).map(event).collect();
        if start + 1000 == fill {
            entries[999] = contested(fill - 1);
        }
        queue.push(&entries, NOW).unwrap();
    }
    assert_eq!(queue.stats().unwrap().items, DEFAULT_MAX_ITEMS);
    let mut n = fill;
    group.bench_function("push/1 event into a full queue of 100,000", |b| {
        b.iter(|| {
            n += 1;
            let pushed = queue.push(&[contested(n)], NOW).unwrap();
            assert_eq!((pushed.merged, pushed.dropped), (1, 0));
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
