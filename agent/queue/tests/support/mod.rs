//! Items to queue in the tests and the benchmark: deterministic ids, times and sizes.

#![allow(dead_code)] // each test binary uses its own part

use postwarden_profiles::report::{Client, ProfileRef, Report, RunKind, Status};
use postwarden_queue::Entry;
use postwarden_wire::v1::{BatchItem, BatchItemKind, DriftEvent, Notice, NoticeKind};
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// The item id of number `n`.
pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0196_9a1c_2f00_7000_8000_0000_0000_0000 | n)
}

/// A time `secs` seconds after a fixed start.
pub fn at(secs: i64) -> OffsetDateTime {
    datetime!(2026-05-04 09:31:00 UTC) + Duration::seconds(secs)
}

pub fn drift(setting: &str, old: Value, new: Value) -> DriftEvent {
    DriftEvent {
        control: "require-tls".into(),
        client: Client::Thunderbird,
        user: "alice".into(),
        scope: "/home/alice/.thunderbird/x.default".into(),
        target: "server1".into(),
        setting: Some(setting.into()),
        old,
        new,
        repaired: true,
        status: Status::Repaired,
        notified: None,
        contested: false,
        changed_by: None,
        note: None,
        merged: None,
        detected_at: None,
    }
}

/// Event number `n` at second `n`, changing `setting` from `old` to `new`.
pub fn event(n: u128, setting: &str, old: Value, new: Value) -> Entry {
    event_with(n, drift(setting, old, new))
}

pub fn event_with(n: u128, event: DriftEvent) -> Entry {
    Entry::from_item(BatchItem {
        id: id(n),
        at: at(n as i64),
        kind: BatchItemKind::Event { event },
    })
}

/// Event number `n` of a setting of its own (never folds with another number's).
pub fn distinct(n: u128) -> Entry {
    event(
        n,
        &format!("setting.{n:06}"),
        json!(n as u64),
        json!(n as u64 + 1),
    )
}

/// A full report number `n` for `user`.
pub fn report(n: u128, user: &str) -> Entry {
    Entry::from_item(BatchItem {
        id: id(n),
        at: at(n as i64),
        kind: BatchItemKind::Report {
            report: Report {
                schema: "postwarden.report/v1".into(),
                run: RunKind::Check,
                compliant: true,
                profile: ProfileRef {
                    id: "acme-mail".into(),
                    version: 3,
                    title: format!("ACME mail, run {n}"),
                },
                generated_at: None,
                controls: Vec::new(),
                findings: Vec::new(),
                caveats: Vec::new(),
            },
            user: user.into(),
        },
    })
}

/// A notice number `n` with the given fold key.
pub fn notice(n: u128, key: &str) -> Entry {
    Entry {
        item: BatchItem {
            id: id(n),
            at: at(n as i64),
            kind: BatchItemKind::Notice {
                notice: Notice {
                    kind: NoticeKind::BundleRefused,
                    detail: format!("bundle {n} refused"),
                    serial: Some(n as u64),
                },
            },
        },
        key: key.into(),
    }
}

/// The serialized size of an entry's item, as the queue counts it.
pub fn size(entry: &Entry) -> u64 {
    serde_json::to_vec(&entry.item).unwrap().len() as u64
}

/// The item as JSON: compares offsets too (`OffsetDateTime`'s `==` compares instants only).
pub fn json_of(item: &BatchItem) -> String {
    serde_json::to_string(item).unwrap()
}

pub fn event_of(item: &BatchItem) -> &DriftEvent {
    match &item.kind {
        BatchItemKind::Event { event } => event,
        other => panic!("not an event: {other:?}"),
    }
}
