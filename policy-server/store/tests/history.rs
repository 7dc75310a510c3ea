//! The history store (schema 4) on both databases: a rollup counts each day once, also when
//! two replicas run it at once; it resumes where it stopped; a report that arrives late for a
//! day already counted still reaches the days after; heartbeats keep a device fresh in the
//! past; the retention deletes only what the rollup has read; metrics tokens.

use postwarden_profiles::report::Status;
use postwarden_server_domain::history::{day_start, DAY_MS};
use postwarden_server_store::{
    Audit, Created, FindingRow, HistoryDay, HistoryQuery, IngestItem, IngestKind, NewDevice,
    NewEnrollmentToken, NewProfile, Store, ROLLUP_GRACE_MS,
};

/// 2025-11-21T00:00:00Z: day 0 of the scenarios.
const DAY0: i64 = 1_763_683_200_000;
const HOUR: i64 = 3_600_000;

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
    two_replicas_roll_up_each_day_once,
    a_rollup_resumes_where_it_stopped,
    a_late_report_reaches_the_days_after,
    heartbeats_keep_a_device_fresh_in_the_past,
    retention_deletes_only_what_the_rollup_has_read,
    metrics_tokens_are_hashed_named_and_revocable,
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
        source: "local",
        action,
        target: "t",
        detail: serde_json::Value::Null,
        at_ms: DAY0,
    }
}

fn device_id(n: usize) -> String {
    format!("dev_{n:026}")
}

/// Devices `0..n` in group `office`, enrolled on day 0, user alice.
async fn with_devices(s: &Store, n: usize) {
    s.put_profile(
        &NewProfile {
            id: "p",
            version: 1,
            title: "P",
            sha256: "aa",
            toml: "",
        },
        &audit("profile.upload"),
    )
    .await
    .unwrap();
    s.put_group("office", "p", 1, &audit("group.assign"))
        .await
        .unwrap();
    s.create_enrollment_token(
        &NewEnrollmentToken {
            id: "enr_1",
            hash: "h",
            group: "office",
            uses: 1000,
            expires_ms: i64::MAX,
        },
        &audit("enrollment_token.create"),
    )
    .await
    .unwrap();
    for i in 0..n {
        let id = device_id(i);
        s.enroll(
            "h",
            &NewDevice {
                id: &id,
                credential_hash: &format!("c{i}"),
                hostname: "h",
                os: "linux",
                agent_version: "1",
                users: &["alice".to_owned()],
            },
            DAY0,
        )
        .await
        .unwrap();
    }
}

/// A report of alice with one finding of `tls`.
fn report(id: &str, at_ms: i64, status: Status) -> IngestItem {
    let finding = FindingRow {
        control: "tls".into(),
        client: "thunderbird".into(),
        scope: "s".into(),
        target: "t".into(),
        setting: Some("tls.pref".into()),
        status: status.as_str().into(),
        expected: "3".into(),
        actual: "3".into(),
        previous: None,
        locked: None,
        reason: None,
        note: None,
        overridden_by: None,
    };
    IngestItem {
        id: id.into(),
        at_ms,
        kind: IngestKind::Report {
            user: "alice".into(),
            report_json: serde_json::json!({
                "schema": "postwarden.report/v1",
                "findings": [{"control": "tls", "client": "thunderbird", "scope": "s",
                    "target": "t", "setting": "tls.pref", "status": status.as_str()}],
            })
            .to_string(),
            profile_id: "p".into(),
            profile_version: 1,
            compliant: status.is_satisfied(),
            findings: vec![finding],
        },
    }
}

/// `(compliant, non_compliant, stale)` of `tls` on each rolled-up day from day 0.
async fn tls_days(s: &Store, days: i64) -> Vec<(i64, u64, u64, u64)> {
    s.history(&HistoryQuery {
        from_day_ms: DAY0,
        to_day_ms: DAY0 + days * DAY_MS,
        ..HistoryQuery::default()
    })
    .await
    .unwrap()
    .iter()
    .map(|d: &HistoryDay| {
        let c = d.summary.controls.iter().find(|c| c.control == "tls");
        (
            (d.day_ms - DAY0) / DAY_MS,
            c.map_or(0, |c| c.compliant),
            c.map_or(0, |c| c.non_compliant),
            c.map_or(0, |c| c.stale),
        )
    })
    .collect()
}

/// The moment by which day `n` (from day 0) is rolled up.
fn after_day(n: i64) -> i64 {
    DAY0 + (n + 1) * DAY_MS + ROLLUP_GRACE_MS
}

/// Three devices reporting every day for 5 days: device 0 compliant, 1 drifted on odd days,
/// 2 silent after day 1 (stale from day 3 with a 36 h limit).
async fn five_days(s: &Store) {
    with_devices(s, 3).await;
    for day in 0..5 {
        let at = DAY0 + day * DAY_MS + 12 * HOUR;
        s.ingest(
            &device_id(0),
            &[report(&format!("0-{day}"), at, Status::Compliant)],
            at,
        )
        .await
        .unwrap();
        let s1 = if day % 2 == 1 {
            Status::Drifted
        } else {
            Status::Repaired
        };
        s.ingest(&device_id(1), &[report(&format!("1-{day}"), at, s1)], at)
            .await
            .unwrap();
        if day <= 1 {
            s.ingest(
                &device_id(2),
                &[report(&format!("2-{day}"), at, Status::Compliant)],
                at,
            )
            .await
            .unwrap();
        }
    }
}

const STALE: i64 = 36 * HOUR;

const FIVE_DAYS: [(i64, u64, u64, u64); 5] = [
    (0, 3, 0, 0),
    (1, 2, 1, 0),
    (2, 3, 0, 0),
    (3, 1, 1, 1),
    (4, 2, 0, 1),
];

async fn two_replicas_roll_up_each_day_once(db: Db) {
    let one = open(&db).await;
    five_days(&one).await;
    let two = open(&db).await;
    let now = after_day(4);
    let (a, b) = tokio::join!(
        one.roll_up(now, STALE, 31, 0),
        two.roll_up(now, STALE, 31, 0)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // Each day was written by exactly one of them.
    let mut written: Vec<i64> = a.days.iter().chain(&b.days).copied().collect();
    written.sort();
    let five: Vec<i64> = (0..5).map(|d| DAY0 + d * DAY_MS).collect();
    assert_eq!(written, five, "{a:?} {b:?}");
    assert!(a.lost_race || b.lost_race || a.days.is_empty() || b.days.is_empty());
    assert_eq!(tls_days(&one, 10).await, FIVE_DAYS);
    // Again: nothing left to do.
    let again = one.roll_up(now + DAY_MS / 2, STALE, 31, 0).await.unwrap();
    assert!(again.days.is_empty(), "{again:?}");
    assert_eq!(tls_days(&two, 10).await, FIVE_DAYS);
}

async fn a_rollup_resumes_where_it_stopped(db: Db) {
    let s = open(&db).await;
    five_days(&s).await;
    // Two days per call, and the clock moves on between calls: the same counts as at once.
    let mut calls = 0;
    loop {
        let done = s.roll_up(after_day(4), STALE, 2, 0).await.unwrap();
        calls += 1;
        if done.days.is_empty() {
            break;
        }
        assert!(done.days.len() <= 2);
    }
    assert_eq!(calls, 4, "2 + 2 + 1 days, then nothing");
    assert_eq!(tls_days(&s, 10).await, FIVE_DAYS);
    // Nothing before the grace after midnight.
    let early = s
        .roll_up(DAY0 + 6 * DAY_MS + ROLLUP_GRACE_MS - 1, STALE, 31, 0)
        .await
        .unwrap();
    assert!(early.days.is_empty());
}

async fn a_late_report_reaches_the_days_after(db: Db) {
    let s = open(&db).await;
    with_devices(&s, 1).await;
    let d = device_id(0);
    s.ingest(
        &d,
        &[report("a", DAY0 + HOUR, Status::Drifted)],
        DAY0 + HOUR,
    )
    .await
    .unwrap();
    s.roll_up(after_day(1), DAY_MS * 10, 31, 0).await.unwrap();
    assert_eq!(tls_days(&s, 5).await, [(0, 0, 1, 0), (1, 0, 1, 0)]);
    // The agent was offline: its report of day 1 arrives on day 2, after day 1 was counted.
    s.ingest(
        &d,
        &[report("b", DAY0 + DAY_MS + HOUR, Status::Compliant)],
        after_day(1) + HOUR,
    )
    .await
    .unwrap();
    s.roll_up(after_day(3), DAY_MS * 10, 31, 0).await.unwrap();
    assert_eq!(
        tls_days(&s, 5).await,
        [(0, 0, 1, 0), (1, 0, 1, 0), (2, 1, 0, 0), (3, 1, 0, 0)],
        "day 1 stays as counted; the days after count the late report"
    );
}

async fn heartbeats_keep_a_device_fresh_in_the_past(db: Db) {
    let s = open(&db).await;
    with_devices(&s, 2).await;
    for n in 0..2 {
        s.ingest(
            &device_id(n),
            &[report(&format!("r{n}"), DAY0 + HOUR, Status::Compliant)],
            DAY0 + HOUR,
        )
        .await
        .unwrap();
    }
    // Device 0 long-polls every day (no report: nothing changed); device 1 is silent.
    for day in 1..4 {
        s.touch_devices(&[(device_id(0), DAY0 + day * DAY_MS + 20 * HOUR, None)])
            .await
            .unwrap();
    }
    s.roll_up(after_day(3), 24 * HOUR, 31, 0).await.unwrap();
    assert_eq!(
        tls_days(&s, 5).await,
        [(0, 2, 0, 0), (1, 1, 0, 1), (2, 1, 0, 1), (3, 1, 0, 1)]
    );
    // Of the rolled-up days only each device's newest contact is kept.
    let rows: i64 = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM device_seen")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1);
    // The kept contact still counts: day 3, 20:00 is 28 h before the end of day 4, fresh
    // with a 30 h limit.
    s.roll_up(after_day(4), 30 * HOUR, 31, 0).await.unwrap();
    assert_eq!(tls_days(&s, 5).await[4], (4, 1, 0, 1));
}

async fn retention_deletes_only_what_the_rollup_has_read(db: Db) {
    let s = open(&db).await;
    with_devices(&s, 1).await;
    let d = device_id(0);
    for day in 0..4 {
        let at = DAY0 + day * DAY_MS + HOUR;
        s.ingest(&d, &[report(&format!("r{day}"), at, Status::Compliant)], at)
            .await
            .unwrap();
    }
    // Nothing rolled up: nothing deleted, however old.
    let none = s
        .apply_retention(DAY0 + 100 * DAY_MS, DAY_MS)
        .await
        .unwrap();
    assert_eq!((none.cutoff_ms, none.reports), (None, 0));
    s.roll_up(after_day(1), DAY_MS, 31, 0).await.unwrap();
    // Rolled up to day 1: raw rows of days 0 and 1 may go, not later ones (not counted yet).
    let done = s
        .apply_retention(DAY0 + 100 * DAY_MS, DAY_MS)
        .await
        .unwrap();
    assert_eq!(done.cutoff_ms, Some(DAY0 + 2 * DAY_MS));
    assert_eq!(done.reports, 2);
    let left: Vec<String> = s
        .reports_of(&d, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.item_id)
        .collect();
    assert_eq!(left, ["r3", "r2"]);
    // A late report of day 0 (newer than what the rollup read for day 0, older than the
    // state) is... older than the state (r1): deletable at once. One newer than the state,
    // not read yet, waits.
    s.ingest(
        &d,
        &[report("late", DAY0 + 2 * HOUR, Status::Drifted)],
        DAY0 + 3 * DAY_MS,
    )
    .await
    .unwrap();
    s.ingest(
        &d,
        &[report("late2", DAY0 + DAY_MS + 5 * HOUR, Status::Drifted)],
        DAY0 + 3 * DAY_MS,
    )
    .await
    .unwrap();
    let done = s
        .apply_retention(DAY0 + 100 * DAY_MS, DAY_MS)
        .await
        .unwrap();
    assert_eq!(done.reports, 1, "only `late`: the state has newer");
    let mut left: Vec<String> = s
        .reports_of(&d, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.item_id)
        .collect();
    left.sort();
    assert_eq!(left, ["late2", "r2", "r3"]);
    // The next rollup reads it (day 2 counts it until r2), then it may go.
    s.roll_up(after_day(2), DAY_MS, 31, 0).await.unwrap();
    let done = s
        .apply_retention(DAY0 + 100 * DAY_MS, DAY_MS)
        .await
        .unwrap();
    assert_eq!((done.cutoff_ms, done.reports), (Some(DAY0 + 3 * DAY_MS), 2));
    // The current report is never deleted.
    assert_eq!(
        s.reports_of(&d, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.item_id)
            .collect::<Vec<_>>(),
        ["r3"]
    );
    let far = s
        .apply_retention(DAY0 + 1000 * DAY_MS, DAY_MS)
        .await
        .unwrap();
    assert_eq!(far.reports, 0);
    assert_eq!(day_start(far.cutoff_ms.unwrap()), DAY0 + 3 * DAY_MS);
}

async fn metrics_tokens_are_hashed_named_and_revocable(db: Db) {
    let s = open(&db).await;
    assert_eq!(
        s.create_metrics_token("prom", "hash-1", &audit("metrics_token.create"))
            .await
            .unwrap(),
        Created::Yes
    );
    assert_eq!(
        s.create_metrics_token("prom", "hash-2", &audit("metrics_token.create"))
            .await
            .unwrap(),
        Created::Conflict
    );
    assert_eq!(
        s.metrics_token_by_hash("hash-1").await.unwrap().as_deref(),
        Some("prom")
    );
    assert_eq!(s.metrics_token_by_hash("hash-2").await.unwrap(), None);
    // Not an admin token.
    assert_eq!(s.admin_by_hash("hash-1").await.unwrap(), None);
    assert!(s
        .revoke_metrics_token("prom", &audit("metrics_token.revoke"))
        .await
        .unwrap());
    assert!(!s
        .revoke_metrics_token("prom", &audit("metrics_token.revoke"))
        .await
        .unwrap());
    assert_eq!(s.metrics_token_by_hash("hash-1").await.unwrap(), None);
    // The name is free again.
    assert_eq!(
        s.create_metrics_token("prom", "hash-3", &audit("metrics_token.create"))
            .await
            .unwrap(),
        Created::Yes
    );
    let actions: Vec<String> = s
        .audit_log(10, None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(
        actions,
        [
            "metrics_token.create",
            "metrics_token.revoke",
            "metrics_token.create"
        ]
    );
}
