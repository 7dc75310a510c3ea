//! Staged rollouts in the store (issue 12), on SQLite and on PostgreSQL: one active rollout per
//! group also when two replicas create one at once, every change a compare-and-set decided
//! once across replicas with its audit row, completion only from the group's version, the
//! bundle source carrying the rollout only while it applies, and previews stored newest-wins
//! and idempotently inside the batch's transaction.

use postwarden_server_domain::rollout::{Rings, State, Thresholds};
use postwarden_server_store::{
    Audit, Change, Changed, CreateRollout, Enrolled, FindingRow, IngestItem, IngestKind, NewDevice,
    NewEnrollmentToken, NewProfile, NewRollout, PreviewItem, Store,
};
use sqlx::Row;

const NOW: i64 = 1_764_000_000_000;

macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::Db::sqlite()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(super::Db::postgres()).await
            }
        }
    )*};
}

on_both!(
    one_active_rollout_per_group_even_from_two_stores,
    a_change_is_decided_once_across_stores,
    completion_assigns_the_group_only_from_its_version,
    the_bundle_source_carries_the_rollout_while_it_applies,
    previews_are_stored_newest_first_and_once,
);

struct Db {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        Db {
            url: format!("sqlite://{}", dir.path().join("t.db").display()),
            _dir: Some(dir),
        }
    }

    fn postgres() -> Db {
        Db {
            url: postwarden_test_support::pg::database(),
            _dir: None,
        }
    }
}

async fn open(db: &Db) -> Store {
    let s = Store::connect(&db.url, 8).await.unwrap();
    s.migrate().await.unwrap();
    s
}

fn audit(action: &'static str) -> Audit<'static> {
    Audit {
        actor: "tester",
        source: "127.0.0.1",
        action,
        target: "t",
        detail: serde_json::json!({}),
        at_ms: NOW,
    }
}

async fn count(s: &Store, sql: &str) -> i64 {
    sqlx::query(sql).fetch_one(s.pool()).await.unwrap().get(0)
}

/// Profile `p` versions 1 to 3, group `office` on version 1, `devices` devices in it.
async fn setup(s: &Store, devices: usize) {
    for v in 1..=3 {
        let sha = format!("sha{v}");
        s.put_profile(
            &NewProfile {
                id: "p",
                version: v,
                title: "P",
                sha256: &sha,
                toml: &format!("toml v{v}"),
            },
            &audit("profile.upload"),
        )
        .await
        .unwrap();
    }
    s.put_group("office", "p", 1, &audit("group.assign"))
        .await
        .unwrap();
    assert!(s
        .create_enrollment_token(
            &NewEnrollmentToken {
                id: "enr_1",
                hash: "token-hash",
                group: "office",
                uses: 1000,
                expires_ms: NOW + 60_000,
            },
            &audit("enrollment_token.create"),
        )
        .await
        .unwrap());
    for n in 0..devices {
        let id = device(n);
        let enrolled = s
            .enroll(
                "token-hash",
                &NewDevice {
                    id: &id,
                    credential_hash: &format!("cred-{n}"),
                    hostname: &format!("host-{n}"),
                    os: "linux",
                    agent_version: "0.1.0",
                    users: &["alice".to_owned()],
                },
                NOW,
            )
            .await
            .unwrap();
        assert!(matches!(enrolled, Enrolled::Yes { .. }));
    }
}

fn device(n: usize) -> String {
    format!("dev_{n:026}")
}

fn rings() -> Rings {
    Rings::new("rings", &[10, 50, 100]).unwrap()
}

fn new_rollout<'a>(id: &'a str, rings: &'a Rings, to: i64, start: State) -> NewRollout<'a> {
    NewRollout {
        id,
        group: "office",
        to_version: to,
        rings,
        soak_ms: 60_000,
        auto_promote: false,
        thresholds: Thresholds {
            max_failed_percent: Some(10),
            max_failed_devices: None,
        },
        start,
    }
}

async fn one_active_rollout_per_group_even_from_two_stores(db: Db) {
    let (a, b) = (open(&db).await, open(&db).await);
    setup(&a, 0).await;
    let r = rings();
    let (ra, rb) = (
        new_rollout("rol_a", &r, 2, State::Previewing),
        new_rollout("rol_b", &r, 3, State::Rolling),
    );
    let create = audit("rollout.create");
    let (x, y) = tokio::join!(
        a.create_rollout(&ra, NOW, &create),
        b.create_rollout(&rb, NOW, &create),
    );
    let outcomes = [x.unwrap(), y.unwrap()];
    let created: Vec<&CreateRollout> = outcomes
        .iter()
        .filter(|o| matches!(o, CreateRollout::Created(_)))
        .collect();
    assert_eq!(created.len(), 1, "{outcomes:?}");
    let CreateRollout::Created(row) = created[0] else {
        unreachable!()
    };
    assert!(
        outcomes.contains(&CreateRollout::Active(row.id.clone())),
        "the other names the active one: {outcomes:?}"
    );
    assert_eq!(row.from_version, 1);
    assert_eq!(
        count(
            &a,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'rollout.create'"
        )
        .await,
        1,
        "only the created one is audited"
    );
    // A rolling one starts at its first ring.
    if row.state == State::Rolling {
        assert_eq!(
            (row.ring, row.started_ms, row.ring_started_ms),
            (Some(0), Some(NOW), Some(NOW))
        );
    } else {
        assert_eq!((row.ring, row.started_ms), (None, None));
    }
    // Nothing for a group that does not run version 1 → 1, an unknown version or group.
    assert_eq!(
        a.create_rollout(
            &new_rollout("rol_c", &r, 1, State::Previewing),
            NOW,
            &audit("x")
        )
        .await
        .unwrap(),
        CreateRollout::SameVersion
    );
    assert_eq!(
        a.create_rollout(
            &new_rollout("rol_c", &r, 9, State::Previewing),
            NOW,
            &audit("x")
        )
        .await
        .unwrap(),
        CreateRollout::UnknownVersion {
            profile_id: "p".into()
        }
    );
    let mut other = new_rollout("rol_c", &r, 2, State::Previewing);
    other.group = "nowhere";
    assert_eq!(
        a.create_rollout(&other, NOW, &audit("x")).await.unwrap(),
        CreateRollout::UnknownGroup
    );
    assert_eq!(count(&a, "SELECT COUNT(*) FROM rollouts").await, 1);
    assert_eq!(
        count(&a, "SELECT COUNT(*) FROM audit_log WHERE action = 'x'").await,
        0
    );
}

fn step<'a>(id: &'a str, expect: (State, Option<i64>), ring: i64, now: i64) -> Change<'a> {
    Change {
        id,
        expect,
        state: State::Rolling,
        ring: Some(ring),
        ring_starts: true,
        halt: None,
        ends: false,
        assign: None,
        now_ms: now,
    }
}

async fn a_change_is_decided_once_across_stores(db: Db) {
    let (a, b) = (open(&db).await, open(&db).await);
    setup(&a, 0).await;
    let r = rings();
    a.create_rollout(
        &new_rollout("rol_a", &r, 2, State::Previewing),
        NOW,
        &audit("rollout.create"),
    )
    .await
    .unwrap();
    // Both replicas see "previewing" and promote to the first ring at once: one wins.
    let c = step("rol_a", (State::Previewing, None), 0, NOW + 5);
    let audits = [audit("rollout.promote")];
    let (x, y) = tokio::join!(a.change_rollout(&c, &audits), b.change_rollout(&c, &audits));
    let outcomes = [x.unwrap(), y.unwrap()];
    let done: Vec<&Changed> = outcomes
        .iter()
        .filter(|o| matches!(o, Changed::Done(_)))
        .collect();
    assert_eq!(done.len(), 1, "{outcomes:?}");
    assert!(outcomes.contains(&Changed::Stale), "{outcomes:?}");
    let Changed::Done(row) = done[0] else {
        unreachable!()
    };
    assert_eq!(
        (row.state, row.ring, row.started_ms, row.ring_started_ms),
        (State::Rolling, Some(0), Some(NOW + 5), Some(NOW + 5))
    );
    assert_eq!(
        count(
            &a,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'rollout.promote'"
        )
        .await,
        1
    );
    // The next ring keeps the first ring's start; a halt keeps the ring and says why.
    let c = step("rol_a", (State::Rolling, Some(0)), 1, NOW + 9);
    let Changed::Done(row) = a.change_rollout(&c, &audits).await.unwrap() else {
        panic!("promoted")
    };
    assert_eq!(
        (row.started_ms, row.ring_started_ms),
        (Some(NOW + 5), Some(NOW + 9))
    );
    let halt = Change {
        id: "rol_a",
        expect: (State::Rolling, Some(1)),
        state: State::Halted,
        ring: Some(1),
        ring_starts: false,
        halt: Some(("bad TLS", "tester")),
        ends: false,
        assign: None,
        now_ms: NOW + 10,
    };
    let Changed::Done(row) = a
        .change_rollout(&halt, &[audit("rollout.halt")])
        .await
        .unwrap()
    else {
        panic!("halted")
    };
    assert_eq!(
        (
            row.state,
            row.halt_reason.as_deref(),
            row.halted_by.as_deref(),
            row.ended_ms
        ),
        (State::Halted, Some("bad TLS"), Some("tester"), None)
    );
    // A change from what is no longer true, or of nothing, writes nothing.
    assert_eq!(a.change_rollout(&c, &audits).await.unwrap(), Changed::Stale);
    let mut missing = c.clone();
    missing.id = "rol_nope";
    assert_eq!(
        a.change_rollout(&missing, &audits).await.unwrap(),
        Changed::Missing
    );
    assert_eq!(
        count(
            &a,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'rollout.promote'"
        )
        .await,
        2
    );
}

async fn completion_assigns_the_group_only_from_its_version(db: Db) {
    let s = open(&db).await;
    setup(&s, 0).await;
    let r = Rings::new("rings", &[100]).unwrap();
    s.create_rollout(
        &new_rollout("rol_a", &r, 2, State::Rolling),
        NOW,
        &audit("rollout.create"),
    )
    .await
    .unwrap();
    let complete = Change {
        id: "rol_a",
        expect: (State::Rolling, Some(0)),
        state: State::Completed,
        ring: Some(0),
        ring_starts: false,
        halt: None,
        ends: true,
        assign: Some((1, 2)),
        now_ms: NOW + 1,
    };
    // Reassigned by hand meanwhile: the completion changes nothing at all.
    s.put_group("office", "p", 3, &audit("group.assign"))
        .await
        .unwrap();
    assert_eq!(
        s.change_rollout(&complete, &[audit("rollout.complete")])
            .await
            .unwrap(),
        Changed::Superseded
    );
    let row = s.rollout("rol_a").await.unwrap().unwrap();
    assert_eq!((row.state, row.ended_ms), (State::Rolling, None));
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'rollout.complete'"
        )
        .await,
        0
    );
    // Back on version 1: it completes, and the group runs version 2.
    s.put_group("office", "p", 1, &audit("group.assign"))
        .await
        .unwrap();
    let Changed::Done(row) = s
        .change_rollout(&complete, &[audit("rollout.complete")])
        .await
        .unwrap()
    else {
        panic!("completed")
    };
    assert_eq!((row.state, row.ended_ms), (State::Completed, Some(NOW + 1)));
    assert_eq!(
        s.group_assignment("office").await.unwrap(),
        Some(("p".into(), 2))
    );
    assert!(s.active_rollout("office").await.unwrap().is_none());
    assert_eq!(
        s.list_rollouts(Some("office"), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.list_rollouts(None, Some(State::Completed), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn the_bundle_source_carries_the_rollout_while_it_applies(db: Db) {
    let s = open(&db).await;
    setup(&s, 1).await;
    assert_eq!(
        s.bundle_source(&device(0)).await.unwrap().unwrap().rollout,
        None
    );
    let r = rings();
    s.create_rollout(
        &new_rollout("rol_a", &r, 2, State::Rolling),
        NOW,
        &audit("rollout.create"),
    )
    .await
    .unwrap();
    let src = s.bundle_source(&device(0)).await.unwrap().unwrap();
    let rollout = src.rollout.expect("the active rollout");
    assert_eq!(
        (
            rollout.id.as_str(),
            rollout.state,
            rollout.ring_percent,
            rollout.to_version
        ),
        ("rol_a", State::Rolling, Some(10), 2)
    );
    assert_eq!(rollout.to_toml, "toml v2");
    assert_eq!(
        (src.profile_version, src.profile_toml.as_str()),
        (1, "toml v1")
    );
    // Reassigned by hand: the rollout no longer applies to the bundle.
    s.put_group("office", "p", 3, &audit("group.assign"))
        .await
        .unwrap();
    let src = s.bundle_source(&device(0)).await.unwrap().unwrap();
    assert_eq!((src.profile_version, src.rollout), (3, None));
}

fn finding(control: &str, status: &str) -> FindingRow {
    FindingRow {
        control: control.into(),
        client: "thunderbird".into(),
        scope: "/home/alice/.thunderbird/x".into(),
        target: "server1".into(),
        setting: Some(format!("{control}.setting")),
        status: status.into(),
        expected: "15".into(),
        actual: "30".into(),
        previous: None,
        locked: None,
        reason: None,
        note: None,
        overridden_by: None,
    }
}

fn preview(id: &str, at: i64, version: i64, findings: Vec<FindingRow>) -> IngestItem {
    IngestItem {
        id: id.into(),
        at_ms: at,
        kind: IngestKind::Preview(PreviewItem {
            user: "alice".into(),
            profile_id: "p".into(),
            profile_version: version,
            findings,
        }),
    }
}

async fn previews_are_stored_newest_first_and_once(db: Db) {
    let s = open(&db).await;
    setup(&s, 2).await;
    let r = rings();
    let CreateRollout::Created(row) = s
        .create_rollout(
            &new_rollout("rol_a", &r, 2, State::Previewing),
            NOW,
            &audit("rollout.create"),
        )
        .await
        .unwrap()
    else {
        panic!("created")
    };
    let first = vec![
        finding("mail-check-interval", "drifted"),
        finding("require-tls", "failed"),
        finding("no-saved-passwords", "compliant"),
        finding("blocked-attachment-types", "not_applicable"),
    ];
    let done = s
        .ingest(&device(0), &[preview("p1", NOW + 10, 2, first)], NOW + 20)
        .await
        .unwrap();
    assert_eq!((done.accepted, done.duplicates, done.reports), (1, 0, 0));
    // Only what would change or fail is kept; no report, no current finding.
    assert_eq!(count(&s, "SELECT COUNT(*) FROM preview_findings").await, 2);
    assert_eq!(count(&s, "SELECT COUNT(*) FROM reports").await, 0);
    assert_eq!(count(&s, "SELECT COUNT(*) FROM current_findings").await, 0);
    // The same item again, or an older one: nothing changes.
    let again = s
        .ingest(&device(0), &[preview("p1", NOW + 10, 2, vec![])], NOW + 30)
        .await
        .unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1));
    let older = s
        .ingest(&device(0), &[preview("p0", NOW + 5, 2, vec![])], NOW + 30)
        .await
        .unwrap();
    assert_eq!((older.accepted, older.duplicates), (0, 1));
    assert_eq!(count(&s, "SELECT COUNT(*) FROM preview_findings").await, 2);
    // A newer one replaces the device's findings; another device adds its own.
    let newer = s
        .ingest(
            &device(0),
            &[
                preview(
                    "p2",
                    NOW + 40,
                    2,
                    vec![finding("mail-check-interval", "drifted")],
                ),
                preview("p3", NOW + 41, 2, vec![finding("require-tls", "compliant")]),
            ],
            NOW + 50,
        )
        .await
        .unwrap();
    assert_eq!(
        (newer.accepted, newer.duplicates),
        (1, 1),
        "the batch's newest wins"
    );
    s.ingest(
        &device(1),
        &[preview(
            "q1",
            NOW + 40,
            2,
            vec![finding("require-tls", "failed")],
        )],
        NOW + 50,
    )
    .await
    .unwrap();
    let rows = s.preview_rows(&row, 1000).await.unwrap();
    assert_eq!(
        rows.evaluated.iter().cloned().collect::<Vec<_>>(),
        [device(0), device(1)]
    );
    let got: Vec<(String, String, String)> = rows
        .findings
        .iter()
        .map(|f| (f.device_id.clone(), f.control.clone(), f.status.clone()))
        .collect();
    assert_eq!(
        got,
        [(device(1), "require-tls".into(), "failed".into()),],
        "device 0's newest preview (p3) found nothing to change"
    );
    assert!(!rows.truncated);
    // Evaluations from before the rollout was created do not count for it.
    let mut later = row.clone();
    later.created_ms = NOW + 60;
    assert!(s
        .preview_rows(&later, 1000)
        .await
        .unwrap()
        .evaluated
        .is_empty());
    // The limit cuts the rows and says so.
    s.ingest(
        &device(1),
        &[preview(
            "q2",
            NOW + 70,
            2,
            vec![
                finding("a", "drifted"),
                finding("b", "drifted"),
                finding("c", "failed"),
            ],
        )],
        NOW + 80,
    )
    .await
    .unwrap();
    let cut = s.preview_rows(&row, 2).await.unwrap();
    assert_eq!((cut.findings.len(), cut.truncated), (2, true));
}
