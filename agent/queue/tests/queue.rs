//! The queue's contract: order, peek and ack, folding and dropping when full, reopening, and
//! what it does with a file that is not a usable queue.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use postwarden_queue::{Entry, Limits, Pushed, Queue, QueueError, Queued, Stats};
use postwarden_wire::v1::{BatchItemKind, Notice, NoticeKind};
use serde_json::json;
use support::{at, distinct, event, event_of, event_with, id, json_of, notice, report, size};
use tempfile::TempDir;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::OffsetDateTime;

/// The queue moves to the daemon's worker thread.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Queue>();
};

const NOW: OffsetDateTime = datetime!(2026-05-05 12:00:00 UTC);

fn items(max_items: u64) -> Limits {
    Limits {
        max_items,
        max_bytes: 1024 * 1024,
    }
}

struct Fixture {
    _dir: TempDir,
    path: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    Fixture { _dir: dir, path }
}

fn open(f: &Fixture, limits: Limits) -> Queue {
    Queue::open(&f.path, limits).unwrap()
}

fn all(q: &mut Queue) -> Vec<Queued> {
    q.peek(usize::MAX, usize::MAX).unwrap()
}

fn ids(queued: &[Queued]) -> Vec<uuid::Uuid> {
    queued.iter().map(|q| q.item.id).collect()
}

fn assert_increasing(queued: &[Queued]) {
    for pair in queued.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "{} !< {}",
            pair[0].seq,
            pair[1].seq
        );
    }
}

// --- order, peek, ack ---

#[test]
fn items_come_out_in_push_order_with_their_original_form() {
    let f = fixture();
    let mut q = open(&f, Limits::default());
    let mut offset = event(3, "b", json!(1), json!(2));
    offset.item.at = datetime!(2026-05-04 11:02:17.25 +02:00);
    let pushed = [
        event(1, "a", json!(null), json!("x")),
        report(2, "alice"),
        offset,
        notice(4, "n"),
        distinct(5),
    ];
    q.push(&pushed[..2], NOW).unwrap();
    q.push(&pushed[2..3], NOW).unwrap();
    assert_eq!(q.push(&pushed[3..], NOW).unwrap(), Pushed::default());

    let out = all(&mut q);
    assert_increasing(&out);
    let want: Vec<String> = pushed.iter().map(|e| json_of(&e.item)).collect();
    let got: Vec<String> = out.iter().map(|q| json_of(&q.item)).collect();
    assert_eq!(got, want);
}

#[test]
fn an_empty_push_and_an_empty_queue() {
    let f = fixture();
    let mut q = open(&f, Limits::default());
    assert_eq!(q.push(&[], NOW).unwrap(), Pushed::default());
    assert!(q.peek(10, 1000).unwrap().is_empty());
    assert_eq!(q.in_flight_through(), None);
    assert_eq!(q.ack(i64::MAX).unwrap(), 0);
    assert_eq!(q.stats().unwrap(), Stats::default());
}

#[test]
fn peek_stops_at_max_items() {
    let f = fixture();
    let mut q = open(&f, Limits::default());
    q.push(&(1..=5).map(distinct).collect::<Vec<_>>(), NOW)
        .unwrap();
    let out = q.peek(3, usize::MAX).unwrap();
    assert_eq!(ids(&out), vec![id(1), id(2), id(3)]);
    // 0 counts as 1: a sender never gets an empty batch from a non-empty queue.
    assert_eq!(ids(&q.peek(0, usize::MAX).unwrap()), vec![id(1)]);
}

#[test]
fn peek_stops_before_max_bytes_but_hands_out_at_least_one_item() {
    let f = fixture();
    let mut q = open(&f, Limits::default());
    let entries: Vec<Entry> = (1..=4).map(distinct).collect();
    q.push(&entries, NOW).unwrap();
    let two = (size(&entries[0]) + size(&entries[1])) as usize;
    assert_eq!(ids(&q.peek(10, two).unwrap()), vec![id(1), id(2)]);
    assert_eq!(ids(&q.peek(10, two - 1).unwrap()), vec![id(1)]);
    assert_eq!(ids(&q.peek(10, 1).unwrap()), vec![id(1)]);
    assert_eq!(ids(&q.peek(10, 0).unwrap()), vec![id(1)]);
}

#[test]
fn peek_without_ack_hands_out_the_same_items_again() {
    let f = fixture();
    let mut q = open(&f, Limits::default());
    q.push(&(1..=3).map(distinct).collect::<Vec<_>>(), NOW)
        .unwrap();
    let first = q.peek(2, usize::MAX).unwrap();
    let again = q.peek(2, usize::MAX).unwrap();
    assert_eq!(ids(&first), ids(&again));
    assert_eq!(
        first.iter().map(|q| q.seq).collect::<Vec<_>>(),
        again.iter().map(|q| q.seq).collect::<Vec<_>>()
    );
    assert_eq!(q.in_flight_through(), Some(first[1].seq));
}

#[test]
fn ack_deletes_through_the_seq_and_says_how_many() {
    let f = fixture();
    let mut q = open(&f, Limits::default());
    let entries: Vec<Entry> = (1..=5).map(distinct).collect();
    q.push(&entries, NOW).unwrap();
    let batch = q.peek(3, usize::MAX).unwrap();
    assert_eq!(q.ack(batch[2].seq).unwrap(), 3);
    assert_eq!(q.in_flight_through(), None);
    assert_eq!(q.ack(batch[2].seq).unwrap(), 0, "acknowledged twice");

    let rest = all(&mut q);
    assert_eq!(ids(&rest), vec![id(4), id(5)]);
    let stats = q.stats().unwrap();
    assert_eq!(stats.items, 2);
    assert_eq!(stats.bytes, size(&entries[3]) + size(&entries[4]));
    assert_eq!(stats.oldest_at, Some(at(4)));

    assert_eq!(q.ack(i64::MAX).unwrap(), 2);
    assert_eq!(q.stats().unwrap().items, 0);
    assert_eq!(q.stats().unwrap().bytes, 0);
}

#[test]
fn a_partial_ack_keeps_the_rest_of_the_batch_in_flight() {
    let f = fixture();
    let mut q = open(&f, Limits::default());
    q.push(&(1..=4).map(distinct).collect::<Vec<_>>(), NOW)
        .unwrap();
    let batch = q.peek(3, usize::MAX).unwrap();
    q.ack(batch[0].seq).unwrap();
    assert_eq!(q.in_flight_through(), Some(batch[2].seq));
    // A smaller peek after a failed send does not shrink the mark.
    q.peek(1, usize::MAX).unwrap();
    assert_eq!(q.in_flight_through(), Some(batch[2].seq));
    q.ack(batch[2].seq).unwrap();
    assert_eq!(q.in_flight_through(), None);
}

#[test]
fn seq_is_never_reused_after_the_queue_emptied() {
    let f = fixture();
    let mut q = open(&f, Limits::default());
    q.push(&[distinct(1), distinct(2)], NOW).unwrap();
    let last = all(&mut q)[1].seq;
    q.ack(last).unwrap();
    q.push(&[distinct(3)], NOW).unwrap();
    let next = all(&mut q)[0].seq;
    assert!(next > last, "{next} <= {last}");
    q.ack(next).unwrap();
    drop(q);

    let mut q = open(&f, Limits::default());
    q.push(&[distinct(4)], NOW).unwrap();
    let after_reopen = all(&mut q)[0].seq;
    assert!(after_reopen > next, "{after_reopen} <= {next}");
}

#[test]
fn stats_count_items_bytes_and_the_earliest_time() {
    let f = fixture();
    let mut q = open(&f, Limits::default());
    let mut late = distinct(1);
    late.item.at = at(100);
    let mut early = distinct(2);
    early.item.at = datetime!(2026-05-04 11:00:00.5 +02:00); // 09:00:00.5 UTC
    let entries = vec![late, early.clone(), distinct(3)];
    q.push(&entries, NOW).unwrap();
    let stats = q.stats().unwrap();
    assert_eq!(stats.items, 3);
    assert_eq!(stats.bytes, entries.iter().map(size).sum::<u64>());
    let oldest = stats.oldest_at.unwrap();
    assert_eq!(oldest, early.item.at);
    assert_eq!(oldest.offset(), early.item.at.offset(), "offset kept");
}

// --- refused pushes ---

#[test]
fn a_duplicate_id_refuses_the_whole_push() {
    let f = fixture();
    let mut q = open(&f, Limits::default());
    q.push(&[distinct(1)], NOW).unwrap();
    let err = q.push(&[distinct(2), distinct(1)], NOW).unwrap_err();
    assert!(
        matches!(&err, QueueError::DuplicateId { id: dup, .. } if *dup == id(1)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&f.path.display().to_string()),
        "{err}"
    );
    let err = q.push(&[distinct(3), distinct(3)], NOW).unwrap_err();
    assert!(matches!(err, QueueError::DuplicateId { .. }), "{err:?}");
    assert_eq!(ids(&all(&mut q)), vec![id(1)]);
    assert_eq!(q.stats().unwrap().items, 1);
    q.push(&[distinct(2)], NOW).unwrap();
    assert_eq!(ids(&all(&mut q)), vec![id(1), id(2)]);
}

#[test]
fn an_item_bigger_than_max_bytes_is_refused_and_nothing_is_written() {
    let f = fixture();
    let limits = Limits {
        max_items: 100,
        max_bytes: 2000,
    };
    let mut q = open(&f, limits);
    q.push(&[distinct(1)], NOW).unwrap();
    let big = event(2, "big", json!("x".repeat(2000)), json!(null));
    let err = q.push(&[distinct(3), big.clone()], NOW).unwrap_err();
    match &err {
        QueueError::TooLarge {
            path,
            id: which,
            bytes,
            max_bytes,
        } => {
            assert_eq!(path, &f.path);
            assert_eq!(*which, id(2));
            assert_eq!(*bytes, size(&big));
            assert_eq!(*max_bytes, 2000);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("more than the queue's limit of 2000 bytes"),
        "{err}"
    );
    assert_eq!(ids(&all(&mut q)), vec![id(1)]);
    let stats = q.stats().unwrap();
    assert_eq!(
        (stats.items, stats.merged_total, stats.dropped_total),
        (1, 0, 0)
    );
}

#[test]
fn limits_too_small_are_refused_before_any_file_is_made() {
    let f = fixture();
    for limits in [
        Limits {
            max_items: 0,
            max_bytes: 1 << 20,
        },
        Limits {
            max_items: 10,
            max_bytes: 1023,
        },
    ] {
        let err = Queue::open(&f.path, limits).unwrap_err();
        assert!(matches!(err, QueueError::InvalidLimits { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&f.path.display().to_string()),
            "{err}"
        );
    }
    assert!(!f.path.exists());
}

// --- folding ---

#[test]
fn folding_keeps_the_newest_event_with_the_oldest_old_and_counts_the_merged() {
    let f = fixture();
    let mut q = open(&f, items(4));
    q.push(
        &[
            event(1, "a", json!(0), json!(1)),
            event(2, "a", json!(1), json!(2)),
            event(3, "b", json!("x"), json!("y")),
            event(4, "a", json!(2), json!(3)),
        ],
        NOW,
    )
    .unwrap();
    let pushed = q
        .push(&[event(5, "c", json!(false), json!(true))], NOW)
        .unwrap();
    assert_eq!(
        pushed,
        Pushed {
            merged: 2,
            dropped: 0
        }
    );

    let out = all(&mut q);
    assert_eq!(
        ids(&out),
        vec![id(3), id(4), id(5)],
        "the survivor keeps its place"
    );
    let survivor = &out[1].item;
    assert_eq!(survivor.at, at(4), "the survivor keeps its time");
    let e = event_of(survivor);
    assert_eq!((&e.old, &e.new, e.merged), (&json!(0), &json!(3), Some(2)));
    // Everything else of the event is the survivor's own.
    let mut expected = support::drift("a", json!(0), json!(3));
    expected.merged = Some(2);
    assert_eq!(e, &expected);
    assert_eq!(
        event_of(&out[0].item).merged,
        None,
        "a lone event is untouched"
    );

    let stats = q.stats().unwrap();
    assert_eq!(
        (stats.items, stats.merged_total, stats.dropped_total),
        (3, 2, 0)
    );
    let bytes: u64 = out
        .iter()
        .map(|q| serde_json::to_vec(&q.item).unwrap().len() as u64)
        .sum();
    assert_eq!(
        stats.bytes, bytes,
        "the rewritten survivor is counted at its new size"
    );
}

#[test]
fn folding_adds_the_counts_of_earlier_folds() {
    let f = fixture();
    let mut q = open(&f, items(3));
    let with_merged = |n, old, new, merged| {
        let mut e = support::drift("a", json!(old), json!(new));
        e.merged = merged;
        event_with(n, e)
    };
    // Events that had absorbed 5 and 1 earlier events, and one that had absorbed none.
    q.push(
        &[
            with_merged(1, 10, 11, Some(5)),
            with_merged(2, 11, 12, None),
            with_merged(3, 12, 13, Some(1)),
        ],
        NOW,
    )
    .unwrap();
    let pushed = q.push(&[distinct(4)], NOW).unwrap();
    assert_eq!(
        pushed,
        Pushed {
            merged: 2,
            dropped: 0
        }
    );
    let out = all(&mut q);
    assert_eq!(ids(&out), vec![id(3), id(4)]);
    let e = event_of(&out[0].item);
    // Its own 1, plus the 2 folded events, plus the 5 the first of them had absorbed.
    assert_eq!(
        (&e.old, &e.new, e.merged),
        (&json!(10), &json!(13), Some(8))
    );
    // merged_total counts the items removed here; the 5 were counted by their own fold.
    assert_eq!(q.stats().unwrap().merged_total, 2);
}

#[test]
fn a_long_outage_keeps_the_latest_state_of_every_setting() {
    let f = fixture();
    let mut q = open(&f, items(10));
    let settings = ["a", "b", "c"];
    let mut pushed_total = Pushed::default();
    for n in 0..300u128 {
        let setting = settings[(n % 3) as usize];
        let p = q
            .push(&[event(n + 1, setting, json!(n), json!(n + 3))], NOW)
            .unwrap();
        pushed_total.merged += p.merged;
        pushed_total.dropped += p.dropped;
    }
    assert_eq!(
        pushed_total.dropped, 0,
        "three settings always fit in ten items"
    );
    let out = all(&mut q);
    let stats = q.stats().unwrap();
    assert_eq!(stats.merged_total, pushed_total.merged);
    assert_eq!(
        stats.merged_total + out.len() as u64,
        300,
        "each event kept or merged"
    );
    for (i, setting) in settings.iter().enumerate() {
        let mine: Vec<&Queued> = out
            .iter()
            .filter(|q| event_of(&q.item).setting.as_deref() == Some(setting))
            .collect();
        // Every event of the setting is either here or counted in a survivor's `merged`.
        let represented: u64 = mine
            .iter()
            .map(|q| 1 + event_of(&q.item).merged.unwrap_or(0))
            .sum();
        assert_eq!(represented, 100, "{setting}");
        let first = event_of(&mine[0].item);
        assert_eq!(first.old, json!(i), "{setting}: the oldest old");
        let last = event_of(&mine[mine.len() - 1].item);
        assert_eq!(last.new, json!(297 + i + 3), "{setting}: the latest state");
    }
}

#[test]
fn a_full_queue_folds_each_new_event_into_its_setting() {
    let f = fixture();
    let mut q = open(&f, items(64));
    let mut fill: Vec<Entry> = (1..=63).map(distinct).collect();
    fill.push(event(64, "hot", json!(0), json!(1)));
    q.push(&fill, NOW).unwrap();
    for n in 65..=264u128 {
        let pushed = q
            .push(&[event(n, "hot", json!(n - 64), json!(n - 63))], NOW)
            .unwrap();
        assert_eq!(
            pushed,
            Pushed {
                merged: 1,
                dropped: 0
            },
            "push {n}"
        );
    }
    let out = all(&mut q);
    assert_eq!(out.len(), 64);
    assert_eq!(ids(&out[..63]), (1..=63).map(id).collect::<Vec<_>>());
    let hot = event_of(&out[63].item);
    assert_eq!(
        (&hot.old, &hot.new, hot.merged),
        (&json!(0), &json!(201), Some(200))
    );
    assert_eq!(out[63].item.id, id(264));
    assert_eq!(q.stats().unwrap().merged_total, 200);
}

#[test]
fn items_in_flight_before_a_reopen_fold_after_it() {
    let f = fixture();
    let mut q = open(&f, items(3));
    q.push(&[event(1, "a", json!(0), json!(1))], NOW).unwrap();
    q.peek(10, usize::MAX).unwrap();
    q.push(
        &[
            event(2, "a", json!(1), json!(2)),
            event(3, "a", json!(2), json!(3)),
        ],
        NOW,
    )
    .unwrap();
    let pushed = q.push(&[distinct(4)], NOW).unwrap();
    assert_eq!(
        pushed,
        Pushed {
            merged: 1,
            dropped: 0
        },
        "event 1 is in flight"
    );
    drop(q);

    // The sender's batch died with the process: event 1 is an ordinary item again.
    let mut q = open(&f, items(3));
    let pushed = q.push(&[distinct(5)], NOW).unwrap();
    assert_eq!(
        pushed,
        Pushed {
            merged: 1,
            dropped: 0
        }
    );
    let out = all(&mut q);
    assert_eq!(ids(&out), vec![id(3), id(4), id(5)]);
    let e = event_of(&out[0].item);
    assert_eq!((&e.old, &e.new, e.merged), (&json!(0), &json!(3), Some(2)));
}

#[test]
fn reports_are_superseded_by_the_newest_of_their_user() {
    let f = fixture();
    let mut q = open(&f, items(3));
    q.push(
        &[report(1, "alice"), report(2, "bob"), report(3, "alice")],
        NOW,
    )
    .unwrap();
    let pushed = q.push(&[report(4, "alice")], NOW).unwrap();
    assert_eq!(
        pushed,
        Pushed {
            merged: 2,
            dropped: 0
        }
    );
    let out = all(&mut q);
    assert_eq!(ids(&out), vec![id(2), id(4)]);
    assert_eq!(
        json_of(&out[1].item),
        json_of(&report(4, "alice").item),
        "untouched"
    );
    assert_eq!(q.stats().unwrap().merged_total, 2);
}

#[test]
fn only_items_of_the_same_kind_fold() {
    let f = fixture();
    let mut q = open(&f, items(3));
    let mut ev = event(2, "a", json!(1), json!(2));
    ev.key = "same".into();
    let mut rep = report(1, "alice");
    rep.key = "same".into();
    q.push(&[rep, ev, notice(3, "same")], NOW).unwrap();
    let pushed = q.push(&[notice(4, "same")], NOW).unwrap();
    assert_eq!(pushed.merged, 0);
    assert_eq!(pushed.dropped, 2, "{pushed:?}");
    let kinds: Vec<&str> = all(&mut q)
        .iter()
        .map(|q| match &q.item.kind {
            BatchItemKind::Report { .. } => "report",
            BatchItemKind::Event { .. } => "event",
            BatchItemKind::Notice { .. } => "notice",
            BatchItemKind::Preview { .. } => "preview",
        })
        .collect();
    assert_eq!(kinds, vec!["notice", "notice", "notice"]);
}

#[test]
fn derived_keys_tell_settings_users_and_kinds_apart() {
    let key = |e: &Entry| Entry::derived_key(&e.item);
    let base = event(1, "a", json!(0), json!(1));
    assert_eq!(
        key(&base),
        key(&event(2, "a", json!(5), json!(6))),
        "values do not count"
    );
    let variants: Vec<fn(&mut postwarden_wire::v1::DriftEvent)> = vec![
        |e| e.client = postwarden_profiles::report::Client::Outlook,
        |e| e.user = "bob".into(),
        |e| e.scope = "/home/alice/.thunderbird/y.default".into(),
        |e| e.target = "server2".into(),
        |e| e.control = "other-control".into(),
        |e| e.setting = None,
    ];
    for (i, change) in variants.into_iter().enumerate() {
        let mut drift = support::drift("a", json!(0), json!(1));
        change(&mut drift);
        assert_ne!(key(&base), key(&event_with(1, drift)), "variant {i}");
    }
    assert_eq!(key(&report(1, "alice")), key(&report(2, "alice")));
    assert_ne!(key(&report(1, "alice")), key(&report(1, "bob")));
    let n1 = Entry::from_item(notice(1, "x").item);
    let n2 = Entry::from_item(notice(2, "x").item);
    assert_ne!(n1.key, n2.key, "a notice's key is its own");
}

// --- in flight ---

#[test]
fn items_in_flight_are_never_folded_or_dropped() {
    let f = fixture();
    let mut q = open(&f, items(3));
    let first = [
        event(1, "a", json!(0), json!(1)),
        event(2, "a", json!(1), json!(2)),
    ];
    q.push(&first, NOW).unwrap();
    let batch = q.peek(10, usize::MAX).unwrap();
    assert_eq!(batch.len(), 2);

    // Over the limit: only the two events after the batch fold.
    let pushed = q
        .push(
            &[
                event(3, "a", json!(2), json!(3)),
                event(4, "a", json!(3), json!(4)),
            ],
            NOW,
        )
        .unwrap();
    assert_eq!(
        pushed,
        Pushed {
            merged: 1,
            dropped: 0
        }
    );
    let out = all(&mut q);
    assert_eq!(ids(&out), vec![id(1), id(2), id(4)]);
    assert_eq!(json_of(&out[0].item), json_of(&first[0].item));
    assert_eq!(json_of(&out[1].item), json_of(&first[1].item));
    let e = event_of(&out[2].item);
    assert_eq!(
        (&e.old, e.merged),
        (&json!(2), Some(1)),
        "old from event 3, not 1"
    );

    // That `all` put everything in flight: acknowledge the first batch only.
    q.ack(batch[1].seq).unwrap();
    assert_eq!(q.in_flight_through(), Some(out[2].seq));
    // Still over after folding nothing: only the new items can be dropped.
    let pushed = q
        .push(&[distinct(5), distinct(6), distinct(7)], NOW)
        .unwrap();
    assert_eq!(
        pushed,
        Pushed {
            merged: 0,
            dropped: 2
        }
    );
    let out = all(&mut q);
    assert_eq!(
        &ids(&out)[..2],
        &[id(4), id(7)],
        "event 4 is in flight, kept"
    );
    shed_notice(&out[2].item);
    assert_eq!(out.len(), 3);
}

#[test]
fn items_acknowledged_leave_the_in_flight_mark_and_the_rest_can_fold() {
    let f = fixture();
    let mut q = open(&f, items(3));
    q.push(
        &[
            event(1, "a", json!(0), json!(1)),
            event(2, "a", json!(1), json!(2)),
        ],
        NOW,
    )
    .unwrap();
    let batch = q.peek(1, usize::MAX).unwrap();
    q.ack(batch[0].seq).unwrap();
    q.push(&[event(3, "a", json!(2), json!(3)), distinct(4)], NOW)
        .unwrap();
    let pushed = q.push(&[distinct(5)], NOW).unwrap();
    assert_eq!(
        pushed,
        Pushed {
            merged: 1,
            dropped: 0
        }
    );
    let out = all(&mut q);
    assert_eq!(ids(&out), vec![id(3), id(4), id(5)]);
    assert_eq!(event_of(&out[0].item).old, json!(1));
}

// --- dropping ---

fn shed_notice(item: &postwarden_wire::v1::BatchItem) -> &Notice {
    match &item.kind {
        BatchItemKind::Notice { notice } if notice.kind == NoticeKind::QueueShed => notice,
        other => panic!("not a shed notice: {other:?}"),
    }
}

#[test]
fn dropping_removes_the_oldest_and_appends_a_notice() {
    let f = fixture();
    let mut q = open(&f, items(5));
    q.push(&(1..=5).map(distinct).collect::<Vec<_>>(), NOW)
        .unwrap();
    let pushed = q.push(&[distinct(6)], NOW).unwrap();
    assert_eq!(
        pushed,
        Pushed {
            merged: 0,
            dropped: 2
        }
    );

    let out = all(&mut q);
    assert_eq!(&ids(&out)[..4], &[id(3), id(4), id(5), id(6)]);
    let item = &out[4].item;
    assert_eq!(
        shed_notice(item),
        &Notice {
            kind: NoticeKind::QueueShed,
            detail: format!(
                "2 queued items were dropped: the queue was full (at most 5 items and 1048576 \
                 bytes); oldest dropped from {}",
                at(1).format(&Rfc3339).unwrap()
            ),
            serial: None,
        }
    );
    assert_eq!(item.at, NOW);
    assert!(!item.id.is_nil());
    assert!((1..=6).all(|n| item.id != id(n)));

    let stats = q.stats().unwrap();
    assert_eq!(
        (stats.items, stats.merged_total, stats.dropped_total),
        (5, 0, 2)
    );
}

#[test]
fn the_notice_names_the_earliest_time_dropped() {
    let f = fixture();
    let mut q = open(&f, items(2));
    let mut later = distinct(1);
    later.item.at = at(50);
    q.push(&[later, distinct(2)], NOW).unwrap();
    let pushed = q.push(&[distinct(3)], NOW).unwrap();
    assert_eq!(pushed.dropped, 2);
    let out = all(&mut q);
    assert_eq!(out[0].item.id, id(3));
    let detail = &shed_notice(&out[1].item).detail;
    assert!(
        detail.ends_with(&format!(
            "oldest dropped from {}",
            at(2).format(&Rfc3339).unwrap()
        )),
        "{detail}"
    );
}

#[test]
fn dropping_goes_a_margin_below_the_limits() {
    let f = fixture();
    let mut q = open(&f, items(128));
    q.push(&(1..=128).map(distinct).collect::<Vec<_>>(), NOW)
        .unwrap();
    assert_eq!(q.stats().unwrap().items, 128, "a full queue sheds nothing");
    let pushed = q.push(&[distinct(129)], NOW).unwrap();
    // 1/64 of 128 is 2: down to 126 items with the notice.
    assert_eq!(
        pushed,
        Pushed {
            merged: 0,
            dropped: 4
        }
    );
    assert_eq!(q.stats().unwrap().items, 126);
    // The next push fits without shedding.
    assert_eq!(q.push(&[distinct(130)], NOW).unwrap(), Pushed::default());
}

#[test]
fn the_byte_limit_sheds_too() {
    let f = fixture();
    let limits = Limits {
        max_items: 1000,
        max_bytes: 4096,
    };
    let mut q = open(&f, limits);
    let mut n = 0u128;
    let mut total = 0u64;
    loop {
        let next = distinct(n + 1);
        if total + size(&next) > limits.max_bytes {
            break;
        }
        n += 1;
        total += size(&next);
        assert_eq!(q.push(&[next], NOW).unwrap(), Pushed::default());
    }
    assert_eq!(q.stats().unwrap().bytes, total);
    let pushed = q.push(&[distinct(n + 1)], NOW).unwrap();
    assert_eq!(pushed.merged, 0);
    assert!(pushed.dropped > 0);
    let stats = q.stats().unwrap();
    assert!(
        stats.bytes <= limits.max_bytes - limits.max_bytes / 64,
        "{stats:?}"
    );
    let out = all(&mut q);
    let kept = ids(&out[..out.len() - 1]);
    let first_kept = pushed.dropped as u128 + 1;
    assert_eq!(
        kept,
        (first_kept..=n + 1).map(id).collect::<Vec<_>>(),
        "the oldest went"
    );
    shed_notice(&out[out.len() - 1].item);
    assert_eq!(
        stats.bytes,
        out.iter()
            .map(|q| json_of(&q.item).len() as u64)
            .sum::<u64>()
    );
}

#[test]
fn notices_are_never_dropped_or_folded() {
    let f = fixture();
    let mut q = open(&f, items(4));
    q.push(
        &[notice(1, "n"), distinct(2), notice(3, "n"), distinct(4)],
        NOW,
    )
    .unwrap();
    let pushed = q.push(&[notice(5, "n"), notice(6, "n")], NOW).unwrap();
    assert_eq!(
        pushed,
        Pushed {
            merged: 0,
            dropped: 2
        }
    );
    let out = all(&mut q);
    assert_eq!(&ids(&out)[..4], &[id(1), id(3), id(5), id(6)]);
    shed_notice(&out[4].item);
    // Nothing left to drop: the push goes over the limit rather than lose a notice.
    let pushed = q.push(&[notice(7, "n")], NOW).unwrap();
    assert_eq!(pushed, Pushed::default());
    assert_eq!(q.stats().unwrap().items, 6);
}

#[test]
fn a_push_bigger_than_the_queue_keeps_its_newest_items() {
    let f = fixture();
    let mut q = open(&f, items(3));
    let pushed = q
        .push(&(1..=10).map(distinct).collect::<Vec<_>>(), NOW)
        .unwrap();
    assert_eq!(
        pushed,
        Pushed {
            merged: 0,
            dropped: 8
        }
    );
    let out = all(&mut q);
    assert_eq!(&ids(&out)[..2], &[id(9), id(10)]);
    shed_notice(&out[2].item);
}

// --- reopening ---

#[test]
fn reopening_keeps_items_order_and_counters() {
    let f = fixture();
    let mut q = open(&f, items(4));
    q.push(
        &[
            event(1, "a", json!(0), json!(1)),
            distinct(2),
            event(3, "a", json!(1), json!(2)),
            distinct(4),
        ],
        NOW,
    )
    .unwrap();
    q.push(&[distinct(5)], NOW).unwrap(); // folds 1 into 3
    q.push(&[distinct(6), distinct(7)], NOW).unwrap(); // drops 2, 3 and 4
    let before = all(&mut q);
    let stats = q.stats().unwrap();
    assert_eq!((stats.merged_total, stats.dropped_total), (1, 3));
    assert_eq!(&ids(&before)[..3], &[id(5), id(6), id(7)]);
    drop(q);

    let mut q = open(&f, items(4));
    assert_eq!(q.stats().unwrap(), stats);
    assert_eq!(
        q.in_flight_through(),
        None,
        "the in-flight mark lives in memory"
    );
    let after = all(&mut q);
    assert_eq!(
        after
            .iter()
            .map(|q| (q.seq, json_of(&q.item)))
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|q| (q.seq, json_of(&q.item)))
            .collect::<Vec<_>>()
    );
}

// --- files that are not a usable queue ---

fn assert_corrupt(err: &QueueError, path: &Path) {
    assert!(err.is_corrupt(), "{err:?}");
    assert_eq!(err.path(), path);
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

/// Recovers `f` and checks the file was moved aside intact and a new queue works.
fn assert_recovers(f: &Fixture) {
    let original = fs::read(&f.path).unwrap();
    let (mut q, aside) = Queue::open_or_recover(&f.path, Limits::default(), NOW).unwrap();
    let aside = aside.expect("moved aside");
    let expected = f.path.with_file_name(format!(
        "queue.db.corrupt-{}",
        NOW.unix_timestamp_nanos() / 1_000_000
    ));
    assert_eq!(aside, expected);
    assert_eq!(fs::read(&aside).unwrap(), original, "moved, not changed");
    assert_eq!(q.stats().unwrap(), Stats::default());
    q.push(&[distinct(1)], NOW).unwrap();
    assert_eq!(ids(&all(&mut q)), vec![id(1)]);
}

/// A queue of 300 items, closed.
fn full_queue(f: &Fixture) {
    let mut q = open(f, Limits::default());
    for chunk in (1..=300).map(distinct).collect::<Vec<_>>().chunks(50) {
        q.push(chunk, NOW).unwrap();
    }
}

#[test]
fn garbage_bytes_are_corrupt_and_moved_aside() {
    let f = fixture();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(&f.path, &garbage).unwrap();
    let err = Queue::open(&f.path, Limits::default()).unwrap_err();
    assert_corrupt(&err, &f.path);
    assert_eq!(fs::read(&f.path).unwrap(), garbage, "open changed nothing");
    assert_recovers(&f);
}

#[test]
fn a_truncated_database_is_corrupt_and_moved_aside() {
    let f = fixture();
    full_queue(&f);
    let len = fs::metadata(&f.path).unwrap().len();
    assert!(len > 16 * 1024, "{len}");
    let file = fs::OpenOptions::new().write(true).open(&f.path).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    let err = Queue::open(&f.path, Limits::default()).unwrap_err();
    assert_corrupt(&err, &f.path);
    assert_recovers(&f);
}

#[test]
fn overwritten_pages_fail_the_integrity_check() {
    let f = fixture();
    full_queue(&f);
    let mut bytes = fs::read(&f.path).unwrap();
    let page = 4096;
    bytes[2 * page..4 * page].fill(0x5a);
    fs::write(&f.path, &bytes).unwrap();
    let err = Queue::open(&f.path, Limits::default()).unwrap_err();
    assert_corrupt(&err, &f.path);
    assert!(matches!(err, QueueError::Corrupt { .. }), "{err:?}");
    assert_recovers(&f);
}

#[test]
fn an_unknown_schema_version_is_refused_and_moved_aside() {
    let f = fixture();
    full_queue(&f);
    let conn = rusqlite::Connection::open(&f.path).unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    drop(conn);
    let err = Queue::open(&f.path, Limits::default()).unwrap_err();
    assert_corrupt(&err, &f.path);
    assert!(
        matches!(
            err,
            QueueError::UnknownSchema {
                found: 2,
                expected: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("has schema version 2, this agent reads only version 1"),
        "{err}"
    );
    assert_recovers(&f);
}

#[test]
fn another_programs_database_is_not_taken_for_a_queue() {
    let f = fixture();
    let conn = rusqlite::Connection::open(&f.path).unwrap();
    conn.execute_batch("CREATE TABLE outbox (x); PRAGMA user_version = 1;")
        .unwrap();
    drop(conn);
    let err = Queue::open(&f.path, Limits::default()).unwrap_err();
    assert_corrupt(&err, &f.path);
    assert!(err.to_string().contains("not a Postwarden queue"), "{err}");
    assert_recovers(&f);
}

#[test]
fn recovery_moves_the_wal_along_and_never_overwrites_an_earlier_corrupt_file() {
    let f = fixture();
    let wal = PathBuf::from(format!("{}-wal", f.path.display()));
    let first_aside = f.path.with_file_name(format!(
        "queue.db.corrupt-{}",
        NOW.unix_timestamp_nanos() / 1_000_000
    ));
    fs::write(&first_aside, b"an earlier one").unwrap();
    fs::write(&f.path, b"not a database, not even close").unwrap();
    fs::write(&wal, b"a stale wal").unwrap();
    let (q, aside) = Queue::open_or_recover(&f.path, Limits::default(), NOW).unwrap();
    let aside = aside.unwrap();
    assert_eq!(
        aside,
        first_aside.with_file_name(format!(
            "queue.db.corrupt-{}-1",
            NOW.unix_timestamp_nanos() / 1_000_000
        ))
    );
    assert_eq!(fs::read(&first_aside).unwrap(), b"an earlier one");
    assert_eq!(fs::read(&aside).unwrap(), b"not a database, not even close");
    assert_eq!(
        fs::read(format!("{}-wal", aside.display())).unwrap(),
        b"a stale wal"
    );
    assert_eq!(q.stats().unwrap(), Stats::default());
}

/// SQLite deletes a WAL it finds beside an empty database file: a new queue must never be
/// an empty file beside a WAL that holds its first commits.
#[test]
fn a_new_queue_is_never_an_empty_file_beside_its_wal() {
    let f = fixture();
    let wal = PathBuf::from(format!("{}-wal", f.path.display()));
    let mut q = open(&f, Limits::default());
    q.push(&[distinct(1)], NOW).unwrap();
    assert!(wal.exists());
    assert!(fs::metadata(&f.path).unwrap().len() > 0);
    // What a kill -9 here leaves: the file and the WAL as they are; another open sees them.
    let copy = f.path.with_file_name("copy.db");
    fs::copy(&f.path, &copy).unwrap();
    fs::copy(&wal, format!("{}-wal", copy.display())).unwrap();
    let mut reopened = Queue::open(&copy, Limits::default()).unwrap();
    assert_eq!(ids(&all(&mut reopened)), vec![id(1)]);
}

#[test]
fn a_sound_queue_is_opened_not_moved() {
    let f = fixture();
    full_queue(&f);
    let (q, aside) = Queue::open_or_recover(&f.path, Limits::default(), NOW).unwrap();
    assert_eq!(aside, None);
    assert_eq!(q.stats().unwrap().items, 300);
}

#[test]
fn a_queue_in_use_is_busy_and_not_moved() {
    let f = fixture();
    let mut first = open(&f, Limits::default());
    first.push(&[distinct(1)], NOW).unwrap();
    let err = Queue::open(&f.path, Limits::default()).unwrap_err();
    assert!(matches!(err, QueueError::Busy { .. }), "{err:?}");
    assert!(!err.is_corrupt());
    assert!(
        err.to_string().contains("is in use by another process"),
        "{err}"
    );
    let err = Queue::open_or_recover(&f.path, Limits::default(), NOW).unwrap_err();
    assert!(matches!(err, QueueError::Busy { .. }), "{err:?}");
    first.push(&[distinct(2)], NOW).unwrap();
    assert_eq!(ids(&all(&mut first)), vec![id(1), id(2)]);
}

#[test]
fn a_missing_folder_is_an_error_naming_the_path_and_moves_nothing() {
    let f = fixture();
    let path = f.path.with_file_name("missing").join("queue.db");
    let err = Queue::open_or_recover(&path, Limits::default(), NOW).unwrap_err();
    assert!(matches!(err, QueueError::Io { .. }), "{err:?}");
    assert!(!err.is_corrupt());
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn the_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let f = fixture();
    let wal = PathBuf::from(format!("{}-wal", f.path.display()));
    let mut q = open(&f, Limits::default());
    q.push(&[distinct(1)], NOW).unwrap();
    assert_eq!(mode(&f.path), 0o600);
    assert_eq!(mode(&wal), 0o600);
    drop(q);

    // A queue file (and a WAL) someone made readable is tightened.
    fs::set_permissions(&f.path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&wal, b"").unwrap();
    fs::set_permissions(&wal, fs::Permissions::from_mode(0o644)).unwrap();
    let mut q = open(&f, Limits::default());
    assert_eq!(mode(&f.path), 0o600);
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(ids(&all(&mut q)), vec![id(1)]);
}
