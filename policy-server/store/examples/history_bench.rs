//! How big the database gets with DEVICES devices × DAYS days of reports and drift events, and
//! what the history costs on it (issue 12): `cargo run --release -p postwarden-server-store
//! --example history_bench -- REPORT.json DEVICES DAYS [sqlite|postgres|both]`.
//!
//! REPORT.json is a real agent report (`postwarden-agent check --format json`; the command in
//! docs/benchmarks.md makes one from the fixture Thunderbird home: 46 findings, 19 KB as the
//! agent sends it). Per device and day the seed stores what an agent sends on a day with some
//! drift: one report (that report, with its time and one finding's status changed so no two
//! are alike), three drift events (a repair in the same pass; a repair pending a restart and
//! the event that it took effect ten minutes later), and one heartbeat (a long-poll). Batches
//! go through `Store::ingest` as the HTTP handler calls it, 8 at once, day after day.
//!
//! Then it measures the database (SQLite: the file after a WAL checkpoint; PostgreSQL:
//! `pg_database_size` of a throwaway cluster's database, per table `pg_total_relation_size`),
//! times the rollup of every day, a time-to-repair query over all days, and the retention
//! with half the days kept.

use std::time::Instant;

use postwarden_profiles::report::{Report, Status};
use postwarden_server_store::{
    Audit, Backend, EventItem, FindingRow, IngestItem, IngestKind, NewDevice, NewEnrollmentToken,
    NewProfile, RepairQuery, Store, ROLLUP_GRACE_MS,
};
use sqlx::Row;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
/// 2026-01-01T00:00:00Z: the first day of the seed.
const DAY0: i64 = 1_767_225_600_000;
const TASKS: usize = 8;

fn audit() -> Audit<'static> {
    Audit {
        actor: "bench",
        source: "local",
        action: "bench",
        target: "",
        detail: serde_json::Value::Null,
        at_ms: DAY0,
    }
}

fn device_id(n: usize) -> String {
    format!("dev_{n:026}")
}

/// One device's batch of one day.
fn batch(template: &Report, device: usize, day: i64) -> Vec<IngestItem> {
    let at = DAY0 + day * DAY + (device as i64 % 16) * HOUR + 8 * HOUR;
    let mut report = template.clone();
    report.generated_at = Some(format!("day {day} device {device}"));
    let n = report.findings.len();
    let flip = (device + day as usize) % n;
    report.findings[flip].status = if report.findings[flip].status == Status::Compliant {
        Status::Drifted
    } else {
        Status::Compliant
    };
    let findings: Vec<FindingRow> = report
        .findings
        .iter()
        .map(FindingRow::from_finding)
        .collect();
    let event = |e: usize, k: usize, at_ms: i64, status: Status, detected: Option<i64>| {
        let f = &report.findings[k % n];
        IngestItem {
            id: format!("{device}-{day}-e{e}"),
            at_ms,
            kind: IngestKind::Event(EventItem {
                control: f.control.clone(),
                client: "thunderbird".into(),
                user: "alice".into(),
                scope: f.scope.clone(),
                target: f.target.clone(),
                setting: f.setting.clone(),
                old: "30".into(),
                new: "5".into(),
                repaired: status == Status::Repaired,
                status: status.as_str().into(),
                notified: Some(true),
                contested: false,
                changed_by: None,
                note: None,
                merged: 0,
                detected_ms: detected,
            }),
        }
    };
    vec![
        IngestItem {
            id: format!("{device}-{day}-r"),
            at_ms: at,
            kind: IngestKind::Report {
                user: "alice".into(),
                report_json: serde_json::to_string(&report).expect("a report serializes"),
                profile_id: report.profile.id.clone(),
                profile_version: i64::from(report.profile.version),
                compliant: report.compliant,
                findings,
            },
        },
        event(0, 0, at + 1_000, Status::Repaired, Some(at + 1_000 - 12)),
        event(
            1,
            1,
            at + 2_000,
            Status::PendingRestart,
            Some(at + 2_000 - 11),
        ),
        event(2, 1, at + 602_000, Status::Compliant, Some(at + 602_000)),
    ]
}

async fn size(store: &Store) -> (i64, Vec<(String, i64)>) {
    match store.backend() {
        Backend::Sqlite => {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(store.pool())
                .await
                .unwrap();
            let get = |sql: &'static str| async move {
                sqlx::query(sql)
                    .fetch_one(store.pool())
                    .await
                    .unwrap()
                    .get::<i64, _>(0)
            };
            let used = (get("PRAGMA page_count").await - get("PRAGMA freelist_count").await)
                * get("PRAGMA page_size").await;
            // Per table and its indexes, where this SQLite has the dbstat table.
            let tables = sqlx::query(
                "SELECT COALESCE(m.tbl_name, d.name), SUM(d.pgsize) FROM dbstat d \
                 LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1 ORDER BY 2 DESC",
            )
            .fetch_all(store.pool())
            .await
            .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            .unwrap_or_default();
            (used, tables)
        }
        Backend::Postgres => {
            let db = sqlx::query("SELECT CAST(pg_database_size(current_database()) AS BIGINT)")
                .fetch_one(store.pool())
                .await
                .unwrap()
                .get::<i64, _>(0);
            let tables = sqlx::query(
                "SELECT CAST(relname AS TEXT), CAST(pg_total_relation_size(relid) AS BIGINT) \
                 FROM pg_catalog.pg_statio_user_tables ORDER BY 2 DESC",
            )
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
            (db, tables)
        }
    }
}

fn mb(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

async fn run(name: &str, url: &str, template: &Report, devices: usize, days: i64) {
    let store = Store::connect(url, TASKS as u32 + 2).await.unwrap();
    store.migrate().await.unwrap();
    let (empty, _) = size(&store).await;
    store
        .put_profile(
            &NewProfile {
                id: &template.profile.id,
                version: i64::from(template.profile.version),
                title: "P",
                sha256: "aa",
                toml: "",
            },
            &audit(),
        )
        .await
        .unwrap();
    store
        .put_group(
            "office",
            &template.profile.id,
            i64::from(template.profile.version),
            &audit(),
        )
        .await
        .unwrap();
    store
        .create_enrollment_token(
            &NewEnrollmentToken {
                id: "enr",
                hash: "h",
                group: "office",
                uses: devices as i64,
                expires_ms: i64::MAX,
            },
            &audit(),
        )
        .await
        .unwrap();
    for d in 0..devices {
        store
            .enroll(
                "h",
                &NewDevice {
                    id: &device_id(d),
                    credential_hash: &format!("cred{d}"),
                    hostname: "h",
                    os: "linux",
                    agent_version: "1",
                    users: &["alice".into()],
                },
                DAY0,
            )
            .await
            .unwrap();
    }

    let started = Instant::now();
    for day in 0..days {
        let handles: Vec<_> = (0..TASKS)
            .map(|t| {
                let store = store.clone();
                let template = template.clone();
                tokio::spawn(async move {
                    for d in (t..devices).step_by(TASKS) {
                        let items = batch(&template, d, day);
                        let now = items[0].at_ms + 700_000;
                        let done = store.ingest(&device_id(d), &items, now).await.unwrap();
                        assert_eq!(done.accepted as usize, items.len());
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let beats: Vec<(String, i64, Option<i64>)> = (0..devices)
            .map(|d| (device_id(d), DAY0 + day * DAY + 23 * HOUR, Some(1)))
            .collect();
        for chunk in beats.chunks(1000) {
            store.touch_devices(chunk).await.unwrap();
        }
        eprintln!(
            "{name}: day {} of {days} stored ({:.0} s)",
            day + 1,
            started.elapsed().as_secs_f64()
        );
    }
    let seeded = started.elapsed().as_secs_f64();
    let (raw, tables) = size(&store).await;
    let reports = devices as i64 * days;
    println!(
        "{name}: {devices} devices × {days} days = {reports} reports + {} events + {} heartbeat \
         days, stored in {seeded:.0} s: database {} (empty schema {}), {:.1} KB per device-day",
        reports * 3,
        reports,
        mb(raw),
        mb(empty),
        (raw - empty) as f64 / reports as f64 / 1e3
    );
    for (t, bytes) in tables.iter().take(8) {
        println!("  {t:24} {}", mb(*bytes));
    }
    if store.backend() == Backend::Postgres {
        // Every report replaces its device's current findings: a seed of 30 days in a minute
        // leaves dead rows autovacuum has not reclaimed yet, as 30 real days would not.
        sqlx::query("VACUUM FULL")
            .execute(store.pool())
            .await
            .unwrap();
        let (live, tables) = size(&store).await;
        println!(
            "  after VACUUM FULL (live rows only): database {}",
            mb(live)
        );
        for (t, bytes) in tables.iter().take(4) {
            println!("  {t:24} {}", mb(*bytes));
        }
    }

    let now = DAY0 + days * DAY + ROLLUP_GRACE_MS;
    let t = Instant::now();
    let (mut rolled, mut read) = (0, 0);
    loop {
        let done = store.roll_up(now, 24 * HOUR, 31, 0).await.unwrap();
        if done.days.is_empty() {
            break;
        }
        rolled += done.days.len();
        read += done.reports;
    }
    let rollup = t.elapsed().as_secs_f64();
    let (after_rollup, tables) = size(&store).await;
    let history: i64 = tables
        .iter()
        .filter(|(t, _)| t.starts_with("history_") || t == "device_seen")
        .map(|(_, b)| b)
        .sum();
    println!(
        "  rollup: {rolled} days, {read} reports read in {rollup:.1} s ({:.2} s per day); \
         database {} (history tables {})",
        rollup / rolled.max(1) as f64,
        mb(after_rollup),
        mb(history)
    );

    let t = Instant::now();
    let ttr = store
        .time_to_repair(&RepairQuery {
            from_ms: DAY0,
            to_ms: DAY0 + days * DAY,
            ..RepairQuery::default()
        })
        .await
        .unwrap();
    let repairs: u64 = ttr.rows.iter().map(|r| r.repairs).sum();
    println!(
        "  time to repair over {days} days: {} events, {repairs} repairs, {} rows in {:.1} s",
        ttr.events,
        ttr.rows.len(),
        t.elapsed().as_secs_f64()
    );

    let keep = (days / 2).max(1);
    let t = Instant::now();
    let gone = store
        .apply_retention(DAY0 + days * DAY, keep * DAY)
        .await
        .unwrap();
    let (after, _) = size(&store).await;
    println!(
        "  retention {keep} days: {} reports and {} events deleted in {:.1} s; {} {}",
        gone.reports,
        gone.events,
        t.elapsed().as_secs_f64(),
        if store.backend() == Backend::Sqlite {
            "pages in use"
        } else {
            "database (not shrunk before VACUUM)"
        },
        mb(after)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "history_bench REPORT.json DEVICES DAYS [sqlite|postgres|both]";
    let text = std::fs::read_to_string(args.first().expect(usage)).expect("the report file");
    let template: Report = serde_json::from_str(&text).expect("a postwarden.report/v1 report");
    let devices: usize = args.get(1).expect(usage).parse().expect(usage);
    let days: i64 = args.get(2).expect(usage).parse().expect(usage);
    let which = args.get(3).map_or("both", String::as_str);
    println!(
        "report: {} findings, {} bytes as sent",
        template.findings.len(),
        serde_json::to_string(&template).unwrap().len()
    );
    if which != "postgres" {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        run("sqlite", &url, &template, devices, days).await;
    }
    if which != "sqlite" {
        let pg = postwarden_test_support::pg::Cluster::start();
        run("postgres", &pg.database(), &template, devices, days).await;
    }
}
