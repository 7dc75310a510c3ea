//! History, exports and metrics (issue 12 §3) against the real binary, each scenario on SQLite
//! and on PostgreSQL: compliance per day rolled up over several days by the live summary's
//! rules (today live), time to repair with known p50/p95, retention deleting old raw rows but
//! keeping the daily points (and every device's current report), JSON and CSV, and `/metrics`
//! read by a real Prometheus parser behind its own token.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{baseline_toml, csv_records, expect, Db, Server};
use postwarden_profiles::report::{Client, Finding, Report, RunKind, Status};
use postwarden_server_domain::history::{day_start, day_text, DAY_MS};
use postwarden_server_store::{Store, ROLLUP_GRACE_MS};
use postwarden_wire::v1::{BatchItem, BatchItemKind, DriftEvent, ReportBatch, ReportBatchSchema};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use time::OffsetDateTime;

const HOUR: i64 = 3_600_000;
const MINUTE: i64 = 60_000;

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn time_of(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
}

fn rfc3339(ms: i64) -> String {
    time_of(ms)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A report for `user` with a finding per control of the baseline: compliant, except the
/// statuses given.
fn report(user: &str, statuses: &[(&str, Status)]) -> Report {
    let profile = postwarden_test_support::baseline();
    let findings = profile
        .controls
        .iter()
        .map(|c| {
            let status = statuses
                .iter()
                .find(|(id, _)| *id == c.id.as_str())
                .map_or(Status::Compliant, |(_, s)| *s);
            Finding {
                control: c.id.as_str().to_owned(),
                client: Client::Thunderbird,
                scope: format!("/home/{user}/.thunderbird/p"),
                target: "server1".into(),
                setting: Some(format!("setting.{}", c.id.as_str())),
                status,
                expected: json!(30),
                actual: if status.is_satisfied() {
                    json!(30)
                } else {
                    json!(5)
                },
                previous: None,
                locked: Some(true),
                reason: None,
                note: None,
                overridden_by: None,
            }
        })
        .collect();
    Report::new(RunKind::Apply, &profile, findings, None)
}

fn report_item(user: &str, statuses: &[(&str, Status)], at_ms: i64) -> BatchItem {
    BatchItem {
        id: uuid::Uuid::new_v4(),
        at: time_of(at_ms),
        kind: BatchItemKind::Report {
            report: report(user, statuses),
            user: user.into(),
        },
    }
}

/// A drift event of `user`'s Thunderbird, on the finding `report` makes for `control` (target
/// `server1`) or on another target.
fn event_item(
    user: &str,
    control: &str,
    target: &str,
    status: Status,
    at_ms: i64,
    detected_ms: Option<i64>,
) -> BatchItem {
    BatchItem {
        id: uuid::Uuid::new_v4(),
        at: time_of(at_ms),
        kind: BatchItemKind::Event {
            event: DriftEvent {
                control: control.into(),
                client: Client::Thunderbird,
                user: user.into(),
                scope: format!("/home/{user}/.thunderbird/p"),
                target: target.into(),
                setting: Some(format!("setting.{control}")),
                old: json!(30),
                new: json!(5),
                repaired: status == Status::Repaired,
                status,
                notified: None,
                contested: false,
                changed_by: None,
                note: None,
                merged: None,
                detected_at: detected_ms.map(time_of),
            },
        },
    }
}

async fn post(server: &Server, credential: &str, items: Vec<BatchItem>) {
    let n = items.len() as u64;
    let r = server
        .request(Method::POST, "/api/v1/reports")
        .bearer_auth(credential)
        .json(&ReportBatch {
            schema: ReportBatchSchema,
            items,
        })
        .send()
        .await
        .unwrap();
    let v = expect(r, StatusCode::OK).await;
    assert_eq!(v["accepted"], n, "{v}");
}

async fn get_csv(server: &Server, path: &str) -> Vec<BTreeMap<String, String>> {
    let r = server
        .admin(Method::GET, path)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    csv_records(&r.text().await.unwrap())
}

/// The field a 400 answer names.
async fn bad_field(server: &Server, path: &str) -> String {
    let r = server.admin(Method::GET, path).send().await.unwrap();
    let v = expect(r, StatusCode::BAD_REQUEST).await;
    v["errors"][0]["field"]
        .as_str()
        .unwrap_or_else(|| panic!("GET {path}: no field named: {v}"))
        .to_owned()
}

/// `(compliant, non_compliant, pending_restart, not_applicable, error, stale, percent)` of a
/// control in a day's (or a summary's) `controls`.
fn counts(controls: &Value, control: &str) -> (u64, u64, u64, u64, u64, u64, Value) {
    let c = controls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["control"] == control)
        .unwrap_or_else(|| panic!("no {control} in {controls}"));
    let n = |k: &str| c[k].as_u64().unwrap();
    (
        n("compliant"),
        n("non_compliant"),
        n("pending_restart"),
        n("not_applicable"),
        n("error"),
        n("stale"),
        c["compliance_percent"].clone(),
    )
}

/// The TTR row of a control.
fn repair_row<'a>(answer: &'a Value, control: &str) -> &'a Value {
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["control"] == control)
        .unwrap_or_else(|| panic!("no {control} in {answer}"))
}

async fn history_trend_time_to_repair_and_retention(db: Db) {
    // Phase 1: the data, with no rollup running (the first one would come after a minute).
    let mut s = Server::start_with(db, &["--rollup-every", "1h"]);
    s.upload(&baseline_toml(), StatusCode::CREATED).await;
    s.put_group("office", "bsi-m5.57", 1).await;
    s.put_group("lab", "bsi-m5.57", 1).await;
    let office = s.enrollment_token("office", 2).await;
    let (a, cred_a) = s.enroll(&office, &["alice"]).await;
    let (b, cred_b) = s.enroll(&office, &["bob"]).await;
    let (c, cred_c) = s
        .enroll(&s.enrollment_token("lab", 1).await, &["carol"])
        .await;

    let now = now_ms();
    let today = day_start(now);
    let d = |n: i64| today - n * DAY_MS;
    // A: compliant, drifted TLS, compliant, compliant. B: failed TLS once, then silent.
    // C: compliant once. The default stale limit is 24 h: a device counts at the end of the
    // day it reported on (23 h after 01:00), stale at the end of the next.
    post(
        &s,
        &cred_a,
        vec![
            report_item("alice", &[], d(6) + HOUR),
            report_item("alice", &[("require-tls", Status::Drifted)], d(4) + HOUR),
            report_item("alice", &[], d(2) + HOUR),
            report_item("alice", &[], d(1) + 5 * HOUR),
        ],
    )
    .await;
    post(
        &s,
        &cred_b,
        vec![report_item(
            "bob",
            &[("require-tls", Status::Failed)],
            d(6) + HOUR,
        )],
    )
    .await;
    post(&s, &cred_c, vec![report_item("carol", &[], d(5) + HOUR)]).await;

    // Drift events of A. mail-check-interval: 20 repairs in the pass that saw them, taking
    // 10, 20, …, 200 ms (nearest-rank p50 = the 10th = 100 ms, p95 = the 19th = 190 ms).
    let mut events: Vec<BatchItem> = (0..20)
        .map(|i| {
            let at = d(2) + 2 * HOUR + i * MINUTE;
            let took = 10 * (i + 1);
            event_item(
                "alice",
                "mail-check-interval",
                "server1",
                Status::Repaired,
                at,
                Some(at - took),
            )
        })
        .collect();
    let tls =
        |status, at, detected| event_item("alice", "require-tls", "server1", status, at, detected);
    // require-tls: pending a restart, compliant five minutes later (300,010 ms); failed, and
    // A's report an hour later shows it compliant (3,600,020 ms); repaired by an agent that
    // does not say when it noticed (unmeasured, another target); and an old repair that the
    // retention will delete.
    events.push(tls(
        Status::PendingRestart,
        d(2) + 3 * HOUR,
        Some(d(2) + 3 * HOUR - 10),
    ));
    events.push(tls(Status::Compliant, d(2) + 3 * HOUR + 5 * MINUTE, None));
    events.push(tls(
        Status::Failed,
        d(1) + 4 * HOUR,
        Some(d(1) + 4 * HOUR - 20),
    ));
    events.push(event_item(
        "alice",
        "require-tls",
        "server2",
        Status::Repaired,
        d(1) + 6 * HOUR,
        None,
    ));
    events.push(tls(Status::Repaired, d(5) + HOUR, Some(d(5) + HOUR - 5)));
    // require-smtp-auth: failed and never repaired: open.
    events.push(event_item(
        "alice",
        "require-smtp-auth",
        "server1",
        Status::Failed,
        d(1) + 7 * HOUR,
        Some(d(1) + 7 * HOUR - 5),
    ));
    post(&s, &cred_a, events).await;

    // Time to repair before the retention: the old repair counts.
    let ttr = s.get_json("/api/v1/compliance/time-to-repair").await;
    assert_eq!(repair_row(&ttr, "require-tls")["repairs"], 3, "{ttr}");
    assert_eq!(repair_row(&ttr, "require-tls")["p50_ms"], 300_010, "{ttr}");

    // Phase 2: the same server and database, rolling up every second, 3 days of raw history.
    s.restart(&["--rollup-every", "1s", "--retention", "3d"]);
    // Every completed day from the first report on, once its 15-minute grace is over.
    let mut expected_days: Vec<i64> = (1..=6).rev().map(d).collect();
    expected_days.retain(|day| day + DAY_MS <= now_ms() - ROLLUP_GRACE_MS);
    let from = day_text(d(6));
    let office_path = format!("/api/v1/compliance/history?group=office&from={from}");
    let started = Instant::now();
    let trend = loop {
        let v = s.get_json(&office_path).await;
        let rolled = v["days"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["live"] == false)
            .count();
        if rolled == expected_days.len() {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the days were not rolled up within 60 s: {v}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let days = trend["days"].as_array().unwrap();
    assert_eq!(trend["from"], from);
    assert_eq!(trend["to"], day_text(today));
    let point = |day: i64| {
        days.iter()
            .find(|p| p["day"] == day_text(day))
            .unwrap_or_else(|| panic!("no {} in {trend}", day_text(day)))
    };
    // office, require-tls, at each day's end: (compliant, non_compliant, pending_restart,
    // not_applicable, error, stale, percent).
    let want = [
        (6, (1, 0, 0, 0, 1, 0, json!(50.0))),
        (5, (0, 0, 0, 0, 0, 2, json!(0.0))),
        (4, (0, 1, 0, 0, 0, 1, json!(0.0))),
        (3, (0, 0, 0, 0, 0, 2, json!(0.0))),
        (2, (1, 0, 0, 0, 0, 1, json!(50.0))),
        (1, (1, 0, 0, 0, 0, 1, json!(50.0))),
    ];
    for (n, tls) in want {
        if !expected_days.contains(&d(n)) {
            continue;
        }
        let p = point(d(n));
        assert_eq!(p["live"], false);
        assert_eq!(p["stale_after_s"], 86_400);
        assert_eq!(counts(&p["controls"], "require-tls"), tls, "day -{n}: {p}");
        assert_eq!(p["devices"], 2, "A and B: {p}");
        assert_eq!(
            p["unreported_devices"], 0,
            "every device counted had reported: {p}"
        );
    }
    // Another control, all compliant when fresh: the same devices, by the same rules.
    assert_eq!(
        counts(&point(d(6))["controls"], "mail-check-interval"),
        (2, 0, 0, 0, 0, 0, json!(100.0))
    );
    // Today is the live summary.
    let live = days.last().unwrap();
    assert_eq!(
        (live["day"].as_str(), &live["live"]),
        (Some(day_text(today).as_str()), &json!(true))
    );
    let summary = s.get_json("/api/v1/compliance/summary?group=office").await;
    assert_eq!(
        live["controls"], summary["controls"],
        "today = the live summary"
    );
    assert_eq!(live["devices"], summary["devices"]);
    assert_eq!(
        counts(&live["controls"], "require-tls"),
        (1, 0, 0, 0, 1, 0, json!(50.0)),
        "live: both fresh (they just posted), B's failure as error"
    );

    // Every group added up, one control: lab's C from the day it reported.
    let fleet = s
        .get_json(&format!(
            "/api/v1/compliance/history?control=require-tls&from={from}"
        ))
        .await;
    let fleet_day = |n: i64| {
        fleet["days"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["day"] == day_text(d(n)))
            .cloned()
    };
    if let (Some(six), Some(five)) = (fleet_day(6), fleet_day(5)) {
        assert_eq!(six["devices"], 2, "C had not reported yet: {six}");
        assert_eq!(five["devices"], 3, "{five}");
        assert_eq!(
            counts(&five["controls"], "require-tls"),
            (1, 0, 0, 0, 0, 2, json!(33.3))
        );
        assert_eq!(five["controls"].as_array().unwrap().len(), 1, "one control");
    } else {
        panic!("days -6 and -5 are always complete: {fleet}");
    }
    let live = fleet["days"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&live["live"], &live["devices"], &live["unreported_devices"]),
        (&json!(true), &json!(3), &json!(0)),
        "the live point counts devices like the summary, whatever the control: {live}"
    );
    assert_eq!(
        counts(&live["controls"], "require-tls"),
        (2, 0, 0, 0, 1, 0, json!(66.7))
    );

    // The same view as CSV: a row per day and control.
    let rows = get_csv(
        &s,
        &format!("/api/v1/compliance/history?group=office&control=require-tls&from={from}"),
    )
    .await;
    assert_eq!(rows.len(), expected_days.len() + 1, "{rows:?}");
    let four = rows.iter().find(|r| r["day"] == day_text(d(4))).unwrap();
    assert_eq!(
        [
            &four["live"],
            &four["control"],
            &four["non_compliant"],
            &four["stale"],
            &four["compliance_percent"],
            &four["devices"],
        ],
        ["false", "require-tls", "1", "1", "0.0", "2"]
    );
    assert_eq!(rows.last().unwrap()["live"], "true");

    // Retention: raw rows before now − 3 days go once their days are rolled up; the events
    // of day -5 are deleted, those of days -2 and -1 kept.
    let old_events = format!("/api/v1/events?until={}", rfc3339(d(3)));
    let started = Instant::now();
    while !s.get_json(&old_events).await["events"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the retention did not run: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = s.get_json("/api/v1/events?limit=1000").await;
    assert_eq!(kept["events"].as_array().unwrap().len(), 25, "{kept}");
    let url = s
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", s.dir.join("postwarden.db").display()));
    let store = Store::connect(&url, 2).await.unwrap();
    let at_of = |rows: Vec<postwarden_server_store::ReportRow>| {
        let mut at: Vec<i64> = rows.iter().map(|r| r.at_ms).collect();
        at.sort();
        at
    };
    assert_eq!(
        at_of(store.reports_of(&a, 100).await.unwrap()),
        [d(2) + HOUR, d(1) + 5 * HOUR],
        "A's reports of days -6 and -4 are gone"
    );
    assert_eq!(
        at_of(store.reports_of(&b, 100).await.unwrap()),
        [d(6) + HOUR],
        "B's only report is its current one: kept, whatever its age"
    );
    assert_eq!(
        at_of(store.reports_of(&c, 100).await.unwrap()),
        [d(5) + HOUR]
    );
    drop(store);
    // The daily points stay: the downsampled history.
    let after = s.get_json(&office_path).await;
    assert_eq!(
        after["days"], trend["days"],
        "the rolled-up days are unchanged"
    );
    // The device page still shows B's last report.
    let device_b = s.get_json(&format!("/api/v1/devices/{b}")).await;
    assert_eq!(device_b["reports"].as_array().unwrap().len(), 1);

    // Time to repair after the retention (the repair of day -5 is gone).
    let ttr = s
        .get_json("/api/v1/compliance/time-to-repair?days=30")
        .await;
    assert_eq!(ttr["percentiles"], "nearest-rank");
    assert_eq!(ttr["complete"], true);
    let mci = repair_row(&ttr, "mail-check-interval");
    assert_eq!(
        [
            &mci["client"],
            &mci["repairs"],
            &mci["p50_ms"],
            &mci["p95_ms"],
            &mci["max_ms"],
            &mci["open"],
            &mci["unmeasured"]
        ],
        [
            &json!("thunderbird"),
            &json!(20),
            &json!(100),
            &json!(190),
            &json!(200),
            &json!(0),
            &json!(0)
        ],
        "{mci}"
    );
    let tls_row = repair_row(&ttr, "require-tls");
    assert_eq!(
        [
            &tls_row["repairs"],
            &tls_row["p50_ms"],
            &tls_row["p95_ms"],
            &tls_row["max_ms"],
            &tls_row["open"],
            &tls_row["unmeasured"]
        ],
        [
            &json!(2),
            &json!(300_010),
            &json!(3_600_020),
            &json!(3_600_020),
            &json!(0),
            &json!(1)
        ],
        "pending → compliant event, failed → compliant report; one repair unmeasured: {tls_row}"
    );
    let smtp = repair_row(&ttr, "require-smtp-auth");
    assert_eq!(
        [&smtp["repairs"], &smtp["open"], &smtp["p50_ms"]],
        [&json!(0), &json!(1), &Value::Null]
    );
    // Filters.
    let only = s
        .get_json("/api/v1/compliance/time-to-repair?control=require-tls&client=thunderbird&group=office&days=7")
        .await;
    assert_eq!(only["rows"].as_array().unwrap().len(), 1, "{only}");
    for none in [
        "/api/v1/compliance/time-to-repair?client=outlook",
        "/api/v1/compliance/time-to-repair?group=lab",
    ] {
        let v = s.get_json(none).await;
        assert_eq!(v["rows"], json!([]), "{none}: {v}");
    }
    // CSV.
    let rows = get_csv(&s, "/api/v1/compliance/time-to-repair").await;
    let mci = rows
        .iter()
        .find(|r| r["control"] == "mail-check-interval")
        .unwrap();
    assert_eq!(
        [
            &mci["client"],
            &mci["repairs"],
            &mci["p50_ms"],
            &mci["p95_ms"],
            &mci["max_ms"]
        ],
        ["thunderbird", "20", "100", "190", "200"]
    );
    let smtp = rows
        .iter()
        .find(|r| r["control"] == "require-smtp-auth")
        .unwrap();
    assert_eq!([&smtp["p50_ms"], &smtp["open"]], ["", "1"]);

    // Bad values are refused, naming the field.
    for (path, field) in [
        ("/api/v1/compliance/history?from=2026-02-30", "from"),
        ("/api/v1/compliance/history?to=2026/01/01", "to"),
        (
            "/api/v1/compliance/history?from=2026-01-02&to=2026-01-01",
            "from",
        ),
        ("/api/v1/compliance/history?from=1990-01-01", "from"),
        ("/api/v1/compliance/history?group=a%20b", "group"),
        (
            "/api/v1/compliance/history?control=Require%20TLS",
            "control",
        ),
        ("/api/v1/compliance/time-to-repair?days=0", "days"),
        ("/api/v1/compliance/time-to-repair?days=401", "days"),
        (
            "/api/v1/compliance/time-to-repair?client=lotus-notes",
            "client",
        ),
        ("/api/v1/compliance/time-to-repair?group=..", "group"),
    ] {
        assert_eq!(bad_field(&s, path).await, field, "{path}");
    }
    for path in [
        "/api/v1/compliance/history?since=2026-01-01",
        "/api/v1/compliance/time-to-repair?days=many",
    ] {
        let r = s.admin(Method::GET, path).send().await.unwrap();
        expect(r, StatusCode::BAD_REQUEST).await;
    }
    // Admin only.
    for path in [
        "/api/v1/compliance/history",
        "/api/v1/compliance/time-to-repair",
    ] {
        let r = s.request(Method::GET, path).send().await.unwrap();
        expect(r, StatusCode::UNAUTHORIZED).await;
    }
}
on_both!(history_trend_time_to_repair_and_retention);

/// `postwarden-server admin <command> --name NAME` against the server's database; returns
/// stdout.
fn admin_cli(s: &Server, command: &str, name: &str) -> String {
    let mut cmd = Command::new(postwarden_test_support::bin::server());
    cmd.args(["admin", command, "--name", name, "--data-dir"])
        .arg(&s.dir)
        .env_remove("POSTWARDEN_DATABASE_URL");
    if let Some(url) = &s.database_url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "admin {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A parsed sample: (family type, sample name, labels, value).
type Sample = (String, String, BTreeMap<String, String>, f64);

/// Reads OpenMetrics text with Prometheus' own parser (Python `prometheus_client`, installed
/// by scripts/install-test-deps.sh): every sample, or the parser's error.
fn prometheus_parse(text: &str) -> Result<Vec<Sample>, String> {
    const SCRIPT: &str = "\
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([family.type, s.name, s.labels, s.value])
print(json.dumps(out))
";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/install-test-deps.sh installs prometheus_client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("No module named"),
        "prometheus_client is missing (scripts/install-test-deps.sh installs it): {stderr}"
    );
    if !out.status.success() {
        return Err(stderr);
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

async fn metrics_are_openmetrics_behind_their_own_token(db: Db) {
    let s = Server::start(db);
    s.upload(&baseline_toml(), StatusCode::CREATED).await;
    s.put_group("office", "bsi-m5.57", 1).await;
    let token = s.enrollment_token("office", 2).await;
    let (_, cred_a) = s.enroll(&token, &["alice"]).await;
    let (_, cred_b) = s.enroll(&token, &["bob"]).await;
    let now = now_ms();
    post(&s, &cred_a, vec![report_item("alice", &[], now - MINUTE)]).await;
    let bob = vec![
        report_item("bob", &[("require-tls", Status::Drifted)], now - MINUTE),
        event_item(
            "bob",
            "require-tls",
            "server1",
            Status::Drifted,
            now,
            Some(now - 3),
        ),
        event_item(
            "bob",
            "reply-address",
            "server1",
            Status::Repaired,
            now,
            Some(now - 3),
        ),
        event_item(
            "bob",
            "mail-check-interval",
            "server1",
            Status::Repaired,
            now,
            Some(now - 3),
        ),
    ];
    post(&s, &cred_b, bob.clone()).await;
    // The same batch again (a retry) is stored once, and counted once.
    let r = s
        .request(Method::POST, "/api/v1/reports")
        .bearer_auth(&cred_b)
        .json(&ReportBatch {
            schema: ReportBatchSchema,
            items: bob,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(expect(r, StatusCode::OK).await["duplicates"], 4);
    // Bundles: one sent, one not modified; then a long-poll left waiting.
    let (status, serial, _) = s.bundle(&cred_a, None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = s.bundle(&cred_a, serial, None).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    let poll = {
        let client = s.client.clone();
        let url = format!("{}/api/v1/bundle?wait=60", s.url);
        let cred = cred_b.clone();
        let serial = serial.unwrap();
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(cred)
                .header("if-none-match", format!("\"{serial}\""))
                .send()
                .await
        })
    };

    let metrics_token = admin_cli(&s, "create-metrics-token", "prometheus")
        .trim()
        .to_owned();
    assert!(metrics_token.starts_with("pwm_"), "{metrics_token}");
    let scrape = || async {
        s.request(Method::GET, "/metrics")
            .bearer_auth(&metrics_token)
            .send()
            .await
            .unwrap()
    };
    // Wait until the long-poll is counted as open.
    let started = Instant::now();
    let (content_type, text) = loop {
        let r = scrape().await;
        assert_eq!(r.status(), StatusCode::OK);
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        let text = r.text().await.unwrap();
        if text.contains("\npostwarden_long_polls_open 1\n") {
            break (ct, text);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the long-poll never showed: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let samples = prometheus_parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        samples
            .iter()
            .find(|(_, n, l, _)| n == name && *l == want)
            .unwrap_or_else(|| panic!("no {name}{want:?} in {text}"))
            .3
    };
    let kind = |name: &str| {
        samples
            .iter()
            .find(|(_, n, _, _)| n == name)
            .map(|(t, _, _, _)| t.clone())
            .unwrap_or_default()
    };
    let tls = |bucket| {
        value(
            "postwarden_compliance_devices",
            &[
                ("group", "office"),
                ("control", "require-tls"),
                ("bucket", bucket),
            ],
        )
    };
    assert_eq!(
        (tls("compliant"), tls("non_compliant"), tls("stale")),
        (1.0, 1.0, 0.0)
    );
    assert_eq!(
        value(
            "postwarden_compliance_ratio",
            &[("group", "office"), ("control", "require-tls")]
        ),
        0.5
    );
    assert_eq!(value("postwarden_devices", &[("group", "office")]), 2.0);
    assert_eq!(
        value("postwarden_stale_devices", &[("group", "office")]),
        0.0
    );
    assert_eq!(value("postwarden_events_ingested_total", &[]), 3.0);
    assert_eq!(value("postwarden_reports_ingested_total", &[]), 2.0);
    assert_eq!(
        value("postwarden_bundle_fetches_total", &[("result", "sent")]),
        1.0
    );
    assert_eq!(
        value(
            "postwarden_bundle_fetches_total",
            &[("result", "not_modified")]
        ),
        1.0
    );
    assert_eq!(value("postwarden_long_polls_open", &[]), 1.0);
    assert_eq!(kind("postwarden_events_ingested_total"), "counter");
    assert_eq!(kind("postwarden_compliance_devices"), "gauge");
    // The parser is strict: the same text without its end is refused.
    assert!(prometheus_parse(text.trim_end_matches("# EOF\n")).is_err());
    poll.abort();

    // Only a live metrics token opens /metrics, and it opens nothing else.
    let admin = s.admin.clone();
    let device = cred_a.clone();
    let other = format!("pwm_{}", "A".repeat(43));
    let cases: [(&str, Option<&str>); 4] = [
        ("no token", None),
        ("an unknown metrics token", Some(&other)),
        ("an admin token", Some(&admin)),
        ("a device credential", Some(&device)),
    ];
    for (what, token) in cases {
        let mut r = s.request(Method::GET, "/metrics");
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
    }
    for path in [
        "/api/v1/devices",
        "/api/v1/compliance/summary",
        "/api/v1/compliance/history",
    ] {
        let r = s
            .request(Method::GET, path)
            .bearer_auth(&metrics_token)
            .send()
            .await
            .unwrap();
        expect(r, StatusCode::UNAUTHORIZED).await;
    }
    let r = s
        .request(Method::GET, "/api/v1/bundle")
        .bearer_auth(&metrics_token)
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;
    // A second token of the same name is refused while the first lives; revoked, it stops.
    let mut cmd = Command::new(postwarden_test_support::bin::server());
    cmd.args([
        "admin",
        "create-metrics-token",
        "--name",
        "prometheus",
        "--data-dir",
    ])
    .arg(&s.dir)
    .env_remove("POSTWARDEN_DATABASE_URL");
    if let Some(url) = &s.database_url {
        cmd.args(["--database-url", url]);
    }
    assert!(!cmd.output().unwrap().status.success());
    admin_cli(&s, "revoke-metrics-token", "prometheus");
    let r = scrape().await;
    expect(r, StatusCode::UNAUTHORIZED).await;
    // Both are in the audit log; the token is in no log line and no audit entry.
    let audit = s.get_json("/api/v1/audit-log").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"metrics_token.create") && actions.contains(&"metrics_token.revoke"),
        "{actions:?}"
    );
    assert!(!audit.to_string().contains(&metrics_token));
    assert!(
        !s.log().contains(&metrics_token),
        "the token reached the log"
    );
}
on_both!(metrics_are_openmetrics_behind_their_own_token);
