//! Staged rollout (issue 12, section 4), end to end against the real binary with simulated
//! devices: enrolled through the API, fetching their signed bundles with their own credentials
//! (saying they read previews, as the agent does), and posting reports, previews and notices
//! as the agent would. Every scenario runs on SQLite and on PostgreSQL.
//!
//! Ring membership is checked against an independent computation of the contract (SHA-256 of
//! `postwarden.rollout-ring/v1` NUL device id, first eight bytes, modulo 10,000).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{baseline_toml, baseline_v2_toml, csv_records, expect, Db, Server};
use postwarden_profiles::report::{Client, Finding, Report, RunKind, Status};
use postwarden_profiles::Profile;
use postwarden_wire::v1::BundlePayload;
use postwarden_wire::{verify_bundle, Jwk};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

on_both!(preview_shows_the_impact_and_enforces_nothing);
on_both!(rings_are_deterministic_nested_and_promoted_by_hand);
on_both!(automatic_promotion_after_the_soak);
on_both!(failed_outcomes_halt_and_roll_back);
on_both!(refused_bundles_halt_and_roll_back);
on_both!(a_halt_by_hand_freezes_and_a_rollback_restores);
on_both!(abuse_is_refused_and_stores_nothing);
on_both!(the_command_line_acts_on_the_database);

/// A simulated device: its id and credential.
#[derive(Debug, Clone)]
struct Device {
    id: String,
    credential: String,
}

/// Whether `device` is in a ring of `percent` %, computed independently of the server.
fn in_ring(device: &str, percent: u64) -> bool {
    let mut h = Sha256::new();
    h.update(b"postwarden.rollout-ring/v1\0");
    h.update(device.as_bytes());
    let d = h.finalize();
    let bucket = u64::from_be_bytes(d[..8].try_into().unwrap()) % 10_000;
    bucket < percent * 100
}

/// Profiles v1 and v2 of the baseline (v2: a 15-minute mail check), group `office` on v1, and
/// `n` devices enrolled into it with the user alice.
async fn fleet(server: &Server, n: usize) -> Vec<Device> {
    server.upload(&baseline_toml(), StatusCode::CREATED).await;
    server
        .upload(&baseline_v2_toml(), StatusCode::CREATED)
        .await;
    server.put_group("office", "bsi-m5.57", 1).await;
    let token = server
        .enrollment_token("office", u32::try_from(n).unwrap())
        .await;
    let mut devices = Vec::with_capacity(n);
    for _ in 0..n {
        let (id, credential) = server.enroll(&token, &["alice"]).await;
        devices.push(Device { id, credential });
    }
    devices
}

/// The device's bundle, verified; `preview`: the request says the agent reads previews.
async fn fetch(server: &Server, d: &Device, preview: bool) -> BundlePayload {
    let mut req = server
        .request(Method::GET, "/api/v1/bundle")
        .bearer_auth(&d.credential);
    if preview {
        req = req.header("postwarden-features", "preview");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let jws = r.text().await.unwrap();
    let jwk: Jwk = serde_json::from_value(server.jwk.clone()).unwrap();
    verify_bundle(&jws, &jwk, &d.id, None).expect("a bundle the agent accepts")
}

/// `(enforced version, preview version)` of a device's bundle.
async fn versions(server: &Server, d: &Device) -> (u32, Option<u32>) {
    let b = fetch(server, d, true).await;
    (b.profile.version, b.preview.map(|p| p.version))
}

fn v2() -> Profile {
    Profile::parse("v2", &baseline_v2_toml()).unwrap()
}

fn finding(
    control: &str,
    setting: &str,
    status: Status,
    expected: Value,
    actual: Value,
) -> Finding {
    Finding {
        control: control.into(),
        client: Client::Thunderbird,
        scope: "/home/alice/.thunderbird/abc.default".into(),
        target: "server1 (pop3 alice@pop.example.org)".into(),
        setting: Some(setting.into()),
        status,
        expected,
        actual,
        previous: None,
        locked: Some(true),
        reason: (status == Status::Failed)
            .then(|| "a lockPref in /etc/thunderbird/corp.cfg decides it".to_owned()),
        note: None,
        overridden_by: None,
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A full pass's report of the enforced `version`: every control compliant, or with a
/// `failed` finding for require-tls.
fn report_item(version: u32, failed: bool) -> Value {
    let profile = if version == 2 {
        v2()
    } else {
        postwarden_test_support::baseline()
    };
    let mut findings: Vec<Finding> = profile
        .controls
        .iter()
        .map(|c| {
            finding(
                c.id.as_str(),
                &format!("setting.{}", c.id.as_str()),
                Status::Compliant,
                json!(1),
                json!(1),
            )
        })
        .collect();
    if failed {
        findings.push(finding(
            "require-tls",
            "mail.server.server1.socketType",
            Status::Failed,
            json!({"one_of": [2, 3]}),
            json!(0),
        ));
    }
    let report = Report::new(RunKind::Apply, &profile, findings, Some(now()));
    json!({"id": uuid::Uuid::new_v4(), "at": now(), "kind": "report", "user": "alice",
           "report": report})
}

/// The agent's audit-mode evaluation of v2: the mail check would change (30 → 15) unless the
/// device has 15 already; `fail`: TLS cannot be enforced there.
fn preview_item(version: u32, changes: bool, fail: bool) -> Value {
    let mut profile = v2();
    profile.version.0 = version;
    let check_time = if changes {
        finding(
            "mail-check-interval",
            "mail.server.server1.check_time",
            Status::Drifted,
            json!(15),
            json!(30),
        )
    } else {
        finding(
            "mail-check-interval",
            "mail.server.server1.check_time",
            Status::Compliant,
            json!(15),
            json!(15),
        )
    };
    let mut findings = vec![check_time];
    findings.push(finding(
        "require-tls",
        "mail.server.server1.socketType",
        if fail {
            Status::Failed
        } else {
            Status::Compliant
        },
        json!({"one_of": [2, 3]}),
        json!(if fail { 0 } else { 3 }),
    ));
    let report = Report::new(RunKind::Check, &profile, findings, Some(now()));
    json!({"id": uuid::Uuid::new_v4(), "at": now(), "kind": "preview", "user": "alice",
           "report": report})
}

fn notice_item(kind: &str) -> Value {
    json!({"id": uuid::Uuid::new_v4(), "at": now(), "kind": "notice",
           "notice": {"kind": kind, "detail": "bundle serial 9: signature does not verify"}})
}

async fn post_items(server: &Server, d: &Device, items: Vec<Value>) -> Value {
    let r = server
        .request(Method::POST, "/api/v1/reports")
        .bearer_auth(&d.credential)
        .json(&json!({"schema": "postwarden.report-batch/v1", "items": items}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::OK).await
}

async fn admin_post(server: &Server, path: &str, body: Option<Value>, status: StatusCode) -> Value {
    let mut req = server.admin(Method::POST, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    expect(req.send().await.unwrap(), status).await
}

async fn create(server: &Server, body: Value) -> Value {
    admin_post(server, "/api/v1/rollouts", Some(body), StatusCode::CREATED).await
}

async fn state(server: &Server, id: &str) -> Value {
    server.get_json(&format!("/api/v1/rollouts/{id}")).await
}

/// `(actor, action, target)` of the audit log's rollout entries, oldest first.
async fn rollout_audit(server: &Server) -> Vec<(String, String, Value)> {
    let log = server.get_json("/api/v1/audit-log?limit=1000").await;
    let mut out: Vec<(String, String, Value)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("rollout."))
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["detail"].clone(),
            )
        })
        .collect();
    out.reverse();
    out
}

fn actions(audit: &[(String, String, Value)]) -> Vec<(&str, &str)> {
    audit
        .iter()
        .map(|(actor, action, _)| (actor.as_str(), action.as_str()))
        .collect()
}

/// Polls the rollout until `done` holds (at most `limit`).
async fn wait_for(
    server: &Server,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let s = state(server, id).await;
        if done(&s) {
            return s;
        }
        assert!(started.elapsed() < limit, "not within {limit:?}: {s:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn preview_shows_the_impact_and_enforces_nothing(db: Db) {
    let s = Server::start(db);
    let devices = fleet(&s, 12).await;
    let before = fetch(&s, &devices[0], true).await;
    assert_eq!(
        (before.profile.version, before.preview.is_none()),
        (1, true)
    );

    let r = create(
        &s,
        json!({"group": "office", "version": 2, "rings": [10, 50, 100], "soak_s": 600}),
    )
    .await;
    assert_eq!(r["state"], "previewing");
    assert_eq!(
        (r["ring"].clone(), r["from_version"].clone()),
        (Value::Null, json!(1))
    );
    let id = r["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("rol_"), "{id}");

    // The bundle carries the candidate as a preview, signed, under a new serial; the enforced
    // profile stays v1. An agent that does not say it reads previews gets none.
    let with = fetch(&s, &devices[0], true).await;
    assert!(with.serial > before.serial, "the device refetches");
    assert_eq!(with.profile.version, 1);
    let preview = with.preview.expect("a preview");
    assert_eq!((preview.id.as_str(), preview.version), ("bsi-m5.57", 2));
    assert_eq!(preview.toml, baseline_v2_toml());
    let old_agent = fetch(&s, &devices[1], false).await;
    assert_eq!((old_agent.profile.version, old_agent.preview), (1, None));

    // Nine devices evaluate it: seven would change the mail check, one of those cannot
    // enforce TLS, two have 15 minutes already. Another's preview of a version nobody
    // previews is accepted and dropped.
    for (i, d) in devices.iter().enumerate().take(9) {
        let a = post_items(&s, d, vec![preview_item(2, i < 7, i == 6)]).await;
        assert_eq!(a["accepted"], 1);
    }
    let stray = post_items(&s, &devices[9], vec![preview_item(3, true, true)]).await;
    assert_eq!(
        (stray["accepted"].clone(), stray["duplicates"].clone()),
        (json!(1), json!(0))
    );

    let v = state(&s, &id).await;
    let i = &v["impact"];
    assert_eq!(
        (
            i["devices"].clone(),
            i["evaluated"].clone(),
            i["changing"].clone(),
            i["failing"].clone()
        ),
        (json!(12), json!(9), json!(7), json!(1)),
        "{v:#}"
    );
    assert_eq!(i["affected"].as_array().unwrap().len(), 7, "{v:#}");
    let settings = i["settings"].as_array().unwrap();
    assert_eq!(settings.len(), 2, "{v:#}");
    assert_eq!(
        (
            settings[0]["control"].clone(),
            settings[0]["setting"].clone(),
            settings[0]["mode"].clone(),
            settings[0]["expected"].clone(),
            settings[0]["devices"].clone(),
        ),
        (
            json!("mail-check-interval"),
            json!("mail.server.server1.check_time"),
            json!("enforce"),
            json!("15"),
            json!(7)
        )
    );
    assert_eq!(
        (
            settings[1]["control"].clone(),
            settings[1]["failing"].clone()
        ),
        (json!("require-tls"), json!(1))
    );
    assert_eq!(
        (
            v["devices"]["in_ring"].clone(),
            v["devices"]["updated"].clone()
        ),
        (json!(0), json!(0))
    );

    // The impact as CSV, one row per setting.
    let csv = s
        .admin(Method::GET, &format!("/api/v1/rollouts/{id}"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows = csv_records(&csv);
    assert_eq!(rows[0]["control"], "mail-check-interval");
    assert_eq!(
        (rows[0]["devices"].as_str(), rows[1]["failing"].as_str()),
        ("7", "1")
    );

    // Nothing is enforced anywhere: every device still runs v1.
    for d in &devices {
        assert_eq!(versions(&s, d).await, (1, Some(2)), "{}", d.id);
    }
    let list = s.get_json("/api/v1/rollouts?group=office").await;
    assert_eq!(list["rollouts"][0]["state"], "previewing");
    let audit = rollout_audit(&s).await;
    assert_eq!(actions(&audit), [("tester", "rollout.create")]);
    assert_eq!(audit[0].2["from_version"], 1);
    assert_eq!(audit[0].2["to_version"], 2);
    assert_eq!(audit[0].2["rings"], json!([10, 50, 100]));
    // No secret reached the log.
    let log = s.log();
    assert!(!log.contains(&s.admin));
    for d in &devices {
        assert!(!log.contains(&d.credential));
    }
}

async fn rings_are_deterministic_nested_and_promoted_by_hand(db: Db) {
    let s = Server::start(db);
    let devices = fleet(&s, 40).await;
    let r = create(
        &s,
        json!({"group": "office", "version": 2, "rings": [10, 50, 100]}),
    )
    .await;
    let id = r["id"].as_str().unwrap().to_owned();
    let promote = format!("/api/v1/rollouts/{id}/promote");
    let mut previous: BTreeSet<String> = BTreeSet::new();
    for (ring, percent) in [(0u64, 10u64), (1, 50), (2, 100)] {
        let v = admin_post(&s, &promote, None, StatusCode::OK).await;
        assert_eq!(
            (v["state"].clone(), v["ring"].clone()),
            (json!("rolling"), json!(ring))
        );
        assert_eq!(v["ring_percent"], json!(percent));
        let mut inside = BTreeSet::new();
        for d in &devices {
            let expected = in_ring(&d.id, percent);
            let got = versions(&s, d).await;
            // In the ring: the candidate, nothing to preview; outside: v1 and the preview.
            let want = if expected { (2, None) } else { (1, Some(2)) };
            assert_eq!(got, want, "{} at {percent} %", d.id);
            if expected {
                inside.insert(d.id.clone());
            }
            // The same again: the serial does not move (deterministic, no churn).
            let again = fetch(&s, d, true).await;
            assert_eq!(again.profile.version, got.0);
        }
        assert!(previous.is_subset(&inside), "rings are nested");
        assert_eq!(v["devices"]["in_ring"], json!(inside.len()));
        previous = inside;
    }
    assert_eq!(previous.len(), 40, "the last ring is every device");
    // The last ring promoted: completed, the group runs v2, bundles carry no preview.
    let done = admin_post(&s, &promote, None, StatusCode::OK).await;
    assert_eq!(done["state"], "completed");
    assert!(done["ended_at"].is_string());
    let groups = s.get_json("/api/v1/groups").await;
    assert_eq!(groups["groups"][0]["version"], 2);
    assert_eq!(versions(&s, &devices[0]).await, (2, None));
    let again = admin_post(&s, &promote, None, StatusCode::CONFLICT).await;
    assert!(
        again["detail"].as_str().unwrap().contains("completed"),
        "{again}"
    );
    // A completed rollout can be undone: the group runs v1 again.
    let back = admin_post(
        &s,
        &format!("/api/v1/rollouts/{id}/rollback"),
        Some(json!({"reason": "the help desk asked for it"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(back["state"], "rolled_back");
    assert_eq!(
        s.get_json("/api/v1/groups").await["groups"][0]["version"],
        1
    );
    for d in devices.iter().take(5) {
        assert_eq!(versions(&s, d).await, (1, None));
    }
    let audit = rollout_audit(&s).await;
    assert_eq!(
        actions(&audit),
        [
            ("tester", "rollout.create"),
            ("tester", "rollout.promote"),
            ("tester", "rollout.promote"),
            ("tester", "rollout.promote"),
            ("tester", "rollout.complete"),
            ("tester", "rollout.rollback"),
        ]
    );
    assert_eq!(audit[1].2["percent"], 10);
    assert_eq!(audit[5].2["reason"], "the help desk asked for it");
}

async fn automatic_promotion_after_the_soak(db: Db) {
    let s = Server::start(db);
    let devices = fleet(&s, 10).await;
    let r = create(
        &s,
        json!({"group": "office", "version": 2, "rings": [50, 100], "soak_s": 1,
               "auto_promote": true, "start": "rolling"}),
    )
    .await;
    assert_eq!(
        (r["state"].clone(), r["ring"].clone()),
        (json!("rolling"), json!(0))
    );
    assert!(r["promote_after"].is_string(), "{r:#}");
    let id = r["id"].as_str().unwrap().to_owned();
    let done = wait_for(&s, &id, Duration::from_secs(20), |v| {
        v["state"] == "completed"
    })
    .await;
    let ms = |v: &Value, k: &str| {
        time::OffsetDateTime::parse(
            v[k].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    // Each ring soaked a second before it was promoted.
    let started = ms(&done, "started_at");
    let second = ms(&done, "ring_started_at");
    let ended = ms(&done, "ended_at");
    assert!(second - started >= time::Duration::seconds(1), "{done:#}");
    assert!(ended - second >= time::Duration::seconds(1), "{done:#}");
    assert_eq!(
        s.get_json("/api/v1/groups").await["groups"][0]["version"],
        2
    );
    for d in &devices {
        assert_eq!(versions(&s, d).await, (2, None));
    }
    let audit = rollout_audit(&s).await;
    assert_eq!(
        actions(&audit),
        [
            ("tester", "rollout.create"),
            ("system", "rollout.promote"),
            ("system", "rollout.complete"),
        ]
    );
    assert_eq!(audit[1].2["percent"], 100);
}

/// The ring's devices of a 50 % rollout, after each fetched the candidate and reported it
/// healthy; the others reported v1 (with a failure, which does not count for the rollout).
async fn ring_reports_healthy(s: &Server, devices: &[Device]) -> Vec<Device> {
    let ring: Vec<Device> = devices
        .iter()
        .filter(|d| in_ring(&d.id, 50))
        .cloned()
        .collect();
    assert!(
        ring.len() >= 4,
        "30 devices put at least 4 in a 50 % ring: {}",
        ring.len()
    );
    for d in devices {
        let inside = in_ring(&d.id, 50);
        assert_eq!(versions(s, d).await.0, if inside { 2 } else { 1 });
        post_items(s, d, vec![report_item(if inside { 2 } else { 1 }, !inside)]).await;
    }
    ring
}

async fn failed_outcomes_halt_and_roll_back(db: Db) {
    let s = Server::start(db);
    let devices = fleet(&s, 30).await;
    let r = create(
        &s,
        json!({"group": "office", "version": 2, "rings": [50, 100], "start": "rolling",
               "max_failed_percent": 20}),
    )
    .await;
    let id = r["id"].as_str().unwrap().to_owned();
    let ring = ring_reports_healthy(&s, &devices).await;
    let k = ring.len();
    let v = state(&s, &id).await;
    assert_eq!(
        (
            v["state"].clone(),
            v["devices"]["updated"].clone(),
            v["devices"]["failed"].clone()
        ),
        (json!("rolling"), json!(k), json!(0)),
        "failures of v1 outside the ring do not count: {v:#}"
    );
    let serial_v2 = fetch(&s, &ring[0], true).await.serial;
    // One ring device after the other reports a failure with v2: the rollout halts exactly
    // when the failing share exceeds 20 % of the updated devices.
    let mut halted_at = None;
    for (f, d) in ring.iter().enumerate() {
        let failing = f + 1;
        post_items(&s, d, vec![report_item(2, true)]).await;
        let v = state(&s, &id).await;
        let expect_halt = failing * 100 > 20 * k;
        assert_eq!(
            v["state"] == "rolled_back",
            expect_halt,
            "{failing} of {k} failing: {v:#}"
        );
        if expect_halt {
            halted_at = Some((failing, v));
            break;
        }
        assert_eq!(v["devices"]["failed"], json!(failing));
    }
    let (failing, v) = halted_at.expect("the rollout halted");
    let reason = v["halt_reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "{failing} of {k} devices that received bsi-m5.57 v2 failed or refused it"
        )),
        "{reason}"
    );
    assert!(reason.contains("above the limit of 20 %"), "{reason}");
    assert_eq!(v["halted_by"], "system");
    // Everyone runs v1 again, under a newer serial; nothing is previewed any more.
    let back = fetch(&s, &ring[0], true).await;
    assert_eq!((back.profile.version, back.preview.is_none()), (1, true));
    assert!(back.serial > serial_v2);
    for d in &devices {
        assert_eq!(versions(&s, d).await, (1, None));
    }
    let again = admin_post(
        &s,
        &format!("/api/v1/rollouts/{id}/promote"),
        None,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        again["detail"].as_str().unwrap().contains("rolled_back"),
        "{again}"
    );
    let audit = rollout_audit(&s).await;
    assert_eq!(
        actions(&audit),
        [
            ("tester", "rollout.create"),
            ("system", "rollout.halt"),
            ("system", "rollout.rollback"),
        ]
    );
    assert_eq!(audit[1].2["reason"], reason);
    assert_eq!(audit[1].2["counts"]["failed"], json!(failing));
    assert_eq!(audit[1].2["counts"]["base"], json!(k));
}

async fn refused_bundles_halt_and_roll_back(db: Db) {
    let s = Server::start(db);
    let devices = fleet(&s, 30).await;
    let r = create(
        &s,
        json!({"group": "office", "version": 2, "rings": [50, 100], "start": "rolling",
               "max_failed_devices": 1}),
    )
    .await;
    assert_eq!(
        (
            r["max_failed_devices"].clone(),
            r["max_failed_percent"].clone()
        ),
        (json!(1), Value::Null)
    );
    let id = r["id"].as_str().unwrap().to_owned();
    let ring: Vec<&Device> = devices.iter().filter(|d| in_ring(&d.id, 50)).collect();
    let outside = devices.iter().find(|d| !in_ring(&d.id, 50)).unwrap();
    assert!(ring.len() >= 2);
    // A refusal outside the ring does not count; one inside is not more than one device.
    post_items(&s, outside, vec![notice_item("bundle_refused")]).await;
    post_items(&s, ring[0], vec![notice_item("bundle_refused")]).await;
    let v = state(&s, &id).await;
    assert_eq!(
        (v["state"].clone(), v["devices"]["refused"].clone()),
        (json!("rolling"), json!(1))
    );
    assert_eq!(v["refused_devices"][0]["id"], json!(ring[0].id));
    // A second device of the ring cannot use it either: more than one, halted, rolled back.
    post_items(&s, ring[1], vec![notice_item("profile_refused")]).await;
    let v = state(&s, &id).await;
    assert_eq!(v["state"], "rolled_back", "{v:#}");
    let reason = v["halt_reason"].as_str().unwrap();
    assert!(reason.contains("above the limit of 1 device:"), "{reason}");
    assert!(
        reason.contains("0 with failed findings, 2 refused the bundle"),
        "{reason}"
    );
    for d in ring.iter().take(3) {
        assert_eq!(versions(&s, d).await, (1, None));
    }
    assert_eq!(
        actions(&rollout_audit(&s).await),
        [
            ("tester", "rollout.create"),
            ("system", "rollout.halt"),
            ("system", "rollout.rollback"),
        ]
    );
}

async fn a_halt_by_hand_freezes_and_a_rollback_restores(db: Db) {
    let s = Server::start(db);
    let devices = fleet(&s, 20).await;
    let r = create(
        &s,
        json!({"group": "office", "version": 2, "rings": [50, 100], "start": "rolling"}),
    )
    .await;
    let id = r["id"].as_str().unwrap().to_owned();
    let halt = format!("/api/v1/rollouts/{id}/halt");
    let v = admin_post(
        &s,
        &halt,
        Some(json!({"reason": "users report TLS errors"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            v["state"].clone(),
            v["halt_reason"].clone(),
            v["halted_by"].clone()
        ),
        (
            json!("halted"),
            json!("users report TLS errors"),
            json!("tester")
        )
    );
    // Frozen: the ring keeps the candidate, the others stay on v1 and preview nothing.
    for d in &devices {
        let want = if in_ring(&d.id, 50) {
            (2, None)
        } else {
            (1, None)
        };
        assert_eq!(versions(&s, d).await, want, "{}", d.id);
    }
    let p = admin_post(
        &s,
        &format!("/api/v1/rollouts/{id}/promote"),
        None,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("halted"), "{p}");
    admin_post(&s, &halt, None, StatusCode::CONFLICT).await;
    let rollback = format!("/api/v1/rollouts/{id}/rollback");
    let v = admin_post(&s, &rollback, None, StatusCode::OK).await;
    assert_eq!(v["state"], "rolled_back");
    assert_eq!(
        v["halt_reason"], "users report TLS errors",
        "the reason stays"
    );
    for d in &devices {
        assert_eq!(versions(&s, d).await, (1, None));
    }
    admin_post(&s, &rollback, None, StatusCode::CONFLICT).await;
    // A new rollout may start now.
    create(&s, json!({"group": "office", "version": 2})).await;
    let audit = rollout_audit(&s).await;
    assert_eq!(
        actions(&audit),
        [
            ("tester", "rollout.create"),
            ("tester", "rollout.halt"),
            ("tester", "rollout.rollback"),
            ("tester", "rollout.create"),
        ]
    );
    assert_eq!(audit[1].2["reason"], "users report TLS errors");
}

async fn abuse_is_refused_and_stores_nothing(db: Db) {
    let s = Server::start(db);
    fleet(&s, 1).await;
    let body = json!({"group": "office", "version": 2});
    // Without a token, or with a wrong one: 401, for every rollout route.
    let r = s
        .request(Method::POST, "/api/v1/rollouts")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;
    let r = s
        .request(Method::POST, "/api/v1/rollouts")
        .bearer_auth("pwa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;
    for path in [
        "/api/v1/rollouts",
        "/api/v1/rollouts/rol_aaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let r = s.request(Method::GET, path).send().await.unwrap();
        expect(r, StatusCode::UNAUTHORIZED).await;
    }
    let r = s
        .request(
            Method::POST,
            "/api/v1/rollouts/rol_aaaaaaaaaaaaaaaaaaaaaaaaaa/promote",
        )
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;

    // Bad fields: 400 naming the field.
    let bad = |extra: Value| {
        let mut b = body.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (extra, field) in [
        (json!({"rings": [5, 5, 100]}), "rings[1]"),
        (json!({"rings": [25, 5, 100]}), "rings[1]"),
        (json!({"rings": [5, 25]}), "rings[1]"),
        (json!({"rings": [0, 100]}), "rings[0]"),
        (json!({"rings": []}), "rings"),
        (json!({"rings": "5,25,100"}), "rings"),
        (json!({"version": 0}), "version"),
        (json!({"max_failed_percent": 150}), "max_failed_percent"),
        (json!({"soak_s": 99_999_999}), "soak_s"),
        (json!({"start": "later"}), "start"),
        (json!({"group": "../etc"}), "group"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let p = admin_post(
            &s,
            "/api/v1/rollouts",
            Some(bad(extra.clone())),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(p["errors"][0]["field"], json!(field), "{extra}: {p}");
    }
    // Well-formed but unknown: 422 naming the field; the version the group runs: 409.
    let p = admin_post(
        &s,
        "/api/v1/rollouts",
        Some(bad(json!({"version": 9}))),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "version", "{p}");
    let p = admin_post(
        &s,
        "/api/v1/rollouts",
        Some(bad(json!({"group": "nowhere"}))),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "group", "{p}");
    admin_post(
        &s,
        "/api/v1/rollouts",
        Some(bad(json!({"version": 1}))),
        StatusCode::CONFLICT,
    )
    .await;
    let r = s
        .admin(Method::POST, "/api/v1/rollouts")
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // None of it stored anything or wrote an audit row.
    assert_eq!(s.get_json("/api/v1/rollouts").await["rollouts"], json!([]));
    assert!(rollout_audit(&s).await.is_empty());

    // One active rollout per group.
    let r = create(&s, body.clone()).await;
    let id = r["id"].as_str().unwrap().to_owned();
    let p = admin_post(
        &s,
        "/api/v1/rollouts",
        Some(body.clone()),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains(&id), "{p}");
    // Ids, reasons, list filters.
    let p = expect(
        s.admin(Method::GET, "/api/v1/rollouts/nope")
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "id");
    expect(
        s.admin(
            Method::GET,
            "/api/v1/rollouts/rol_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        )
        .send()
        .await
        .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    for q in ["state=paused", "limit=0", "group=a/b", "colour=red"] {
        let r = s
            .admin(Method::GET, &format!("/api/v1/rollouts?{q}"))
            .send()
            .await
            .unwrap();
        expect(r, StatusCode::BAD_REQUEST).await;
    }
    let halt = format!("/api/v1/rollouts/{id}/halt");
    admin_post(&s, &halt, None, StatusCode::CONFLICT).await; // a preview is not rolling
    admin_post(
        &s,
        &format!("/api/v1/rollouts/{id}/promote"),
        None,
        StatusCode::OK,
    )
    .await;
    let p = admin_post(
        &s,
        &halt,
        Some(json!({"reason": "a\u{0}b"})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "reason");
    let p = admin_post(
        &s,
        &halt,
        Some(json!({"why": "x"})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "why");
    admin_post(&s, &halt, Some(json!({"reason": "stop"})), StatusCode::OK).await;
    // A halted rollout is not promoted.
    let p = admin_post(
        &s,
        &format!("/api/v1/rollouts/{id}/promote"),
        None,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("halted"), "{p}");
    assert_eq!(
        actions(&rollout_audit(&s).await),
        [
            ("tester", "rollout.create"),
            ("tester", "rollout.promote"),
            ("tester", "rollout.halt"),
        ]
    );
}

/// `postwarden-server rollout …` against the server's database; returns its standard output.
fn cli(s: &Server, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(postwarden_test_support::bin::server());
    cmd.arg("rollout")
        .args(args)
        .arg("--data-dir")
        .arg(&s.dir)
        .env_remove("POSTWARDEN_DATABASE_URL");
    if let Some(url) = &s.database_url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn the_command_line_acts_on_the_database(db: Db) {
    let s = Server::start(db);
    let devices = fleet(&s, 10).await;
    let (ok, out, err) = cli(
        &s,
        &[
            "start",
            "--group",
            "office",
            "--version",
            "2",
            "--rings",
            "50,100",
            "--soak",
            "10m",
        ],
    );
    assert!(ok, "{err}");
    println!("$ postwarden-server rollout start --group office --version 2 --rings 50,100 --soak 10m\n{out}");
    assert!(out.contains("State:    previewing, no ring yet"), "{out}");
    assert!(out.contains("Rings:    50 % → 100 %; soak 600 s"), "{out}");
    // The running server picks it up (on SQLite through its periodic look at the rollouts).
    let started = Instant::now();
    while versions(&s, &devices[0]).await.1 != Some(2) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the server did not see the CLI's rollout"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for d in devices.iter().take(6) {
        post_items(&s, d, vec![preview_item(2, true, false)]).await;
    }
    let (ok, out, err) = cli(&s, &["status", "--group", "office"]);
    assert!(ok, "{err}");
    println!("$ postwarden-server rollout status --group office\n{out}");
    assert!(
        out.contains("6 evaluated it: 6 would change, 0 would fail"),
        "{out}"
    );
    assert!(out.contains("mail.server.server1.check_time"), "{out}");
    let (ok, out, err) = cli(&s, &["promote", "--group", "office"]);
    assert!(ok, "{err}");
    println!("$ postwarden-server rollout promote --group office\n{out}");
    assert!(
        out.contains("State:    rolling, ring 1 of 2 (50 %)"),
        "{out}"
    );
    let ring_device = devices.iter().find(|d| in_ring(&d.id, 50)).unwrap();
    let started = Instant::now();
    while versions(&s, ring_device).await.0 != 2 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the server did not see the promotion"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, out, err) = cli(
        &s,
        &[
            "halt",
            "--group",
            "office",
            "--reason",
            "wait for the help desk",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("Halted:   wait for the help desk (by cli)"),
        "{out}"
    );
    let (ok, _, err) = cli(&s, &["promote", "--group", "office"]);
    assert!(!ok, "a halted rollout is not promoted");
    assert!(
        err.contains("is halted; only a previewing or rolling rollout can be promoted"),
        "{err}"
    );
    let (ok, out, err) = cli(&s, &["rollback", "--group", "office", "--format", "json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "rolled_back");
    let (ok, out, _) = cli(&s, &["list"]);
    assert!(ok);
    println!("$ postwarden-server rollout list\n{out}");
    assert!(out.contains("rolled_back"), "{out}");
    let (ok, _, err) = cli(
        &s,
        &[
            "start",
            "--group",
            "office",
            "--version",
            "2",
            "--rings",
            "50,25,100",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("rings[1]: must be larger than the ring before it (50 %)"),
        "{err}"
    );
    assert_eq!(
        actions(&rollout_audit(&s).await),
        [
            ("cli", "rollout.create"),
            ("cli", "rollout.promote"),
            ("cli", "rollout.halt"),
            ("cli", "rollout.rollback"),
        ]
    );
}

// --- dashboard and replicas ----------------------------------------------------------------

/// Logs in to the dashboard; returns the session cookie (`name=value`).
async fn login(s: &Server, client: &reqwest::Client) -> String {
    let form = client.get(format!("{}/login", s.url)).send().await.unwrap();
    let nonce_cookie = set_cookie(&form, "__Host-postwarden-login").expect("a login nonce");
    let html = form.text().await.unwrap();
    let nonce = hidden(&html, "csrf");
    let r = client
        .post(format!("{}/login", s.url))
        .header("cookie", &nonce_cookie)
        .form(&[
            ("token", s.admin.as_str()),
            ("csrf", &nonce),
            ("next", "/rollouts"),
        ])
        .send()
        .await
        .unwrap();
    set_cookie(&r, "__Host-postwarden").expect("a session cookie")
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

fn hidden(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no hidden {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The dashboard's rollout page: start, impact, promote, a stale or forged form refused, halt
/// and rollback, all as plain forms; no inline script or style (the CSP forbids them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_runs_a_rollout_without_javascript() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s = Server::start(Db::Sqlite);
    let devices = fleet(&s, 10).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let session = login(&s, &client).await;
    let get = |path: &str| {
        let (client, session, url) = (client.clone(), session.clone(), s.url.clone());
        let path = path.to_owned();
        async move {
            let r = client
                .get(format!("{url}{path}"))
                .header("cookie", &session)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            r.text().await.unwrap()
        }
    };
    let post = |fields: Vec<(&'static str, String)>| {
        let (client, session, url) = (client.clone(), session.clone(), s.url.clone());
        async move {
            let r = client
                .post(format!("{url}/rollouts"))
                .header("cookie", &session)
                .form(&fields)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };
    let profiles = get("/profiles").await;
    assert!(
        profiles.contains("href=\"/rollouts\""),
        "the profiles page links to it"
    );
    let list = get("/rollouts").await;
    assert!(list.contains("href=\"/rollouts?group=office\""), "{list}");
    let page = get("/rollouts?group=office").await;
    assert!(page.contains("No rollout for this group yet."), "{page}");
    let csrf = hidden(&page, "csrf");

    let (status, _) = post(vec![
        ("csrf", csrf.clone()),
        ("action", "start".into()),
        ("group", "office".into()),
        ("version", "2".into()),
        ("rings", "50,100".into()),
        ("soak_s", "600".into()),
        ("max_failed_percent", "10".into()),
        ("start", "preview".into()),
    ])
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    for d in devices.iter().take(4) {
        post_items(&s, d, vec![preview_item(2, true, false)]).await;
    }
    let page = get("/rollouts?group=office").await;
    assert!(page.contains("<dd>previewing</dd>"), "{page}");
    assert!(page.contains("Impact preview of v2"), "{page}");
    assert!(
        page.contains("<code>mail.server.server1.check_time</code>"),
        "{page}"
    );
    assert!(page.contains("evaluated it in audit mode"), "{page}");
    let id = hidden(&page, "id");
    for inline in ["<script>", " style=", "onclick="] {
        assert!(!page.contains(inline), "no inline {inline:?}");
    }

    // A forged form (no session's token) changes nothing.
    let (status, _) = post(vec![
        ("csrf", "forged".into()),
        ("action", "promote".into()),
        ("group", "office".into()),
        ("id", id.clone()),
        ("stage", "previewing.-".into()),
    ])
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(hidden(&page, "stage"), "previewing.-");
    let promote = vec![
        ("csrf", csrf.clone()),
        ("action", "promote".into()),
        ("group", "office".into()),
        ("id", id.clone()),
        ("stage", hidden(&page, "stage")),
    ];
    assert_eq!(post(promote.clone()).await.0, StatusCode::SEE_OTHER);
    // The same form again (a second click, a stale page) does not skip a ring.
    let (status, html) = post(promote).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert!(html.contains("moved on since it was shown"), "{html}");
    let v = state(&s, &id).await;
    assert_eq!(
        (v["state"].clone(), v["ring"].clone()),
        (json!("rolling"), json!(0))
    );

    let (status, _) = post(vec![
        ("csrf", csrf.clone()),
        ("action", "halt".into()),
        ("group", "office".into()),
        ("id", id.clone()),
        ("reason", "printer tickets".into()),
    ])
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let page = get("/rollouts?group=office").await;
    assert!(page.contains("Halted by tester: printer tickets"), "{page}");
    let (status, _) = post(vec![
        ("csrf", csrf.clone()),
        ("action", "rollback".into()),
        ("group", "office".into()),
        ("id", id.clone()),
        ("reason", String::new()),
    ])
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(state(&s, &id).await["state"], "rolled_back");
    assert_eq!(
        actions(&rollout_audit(&s).await),
        [
            ("tester", "rollout.create"),
            ("tester", "rollout.promote"),
            ("tester", "rollout.halt"),
            ("tester", "rollout.rollback"),
        ]
    );
}

/// Two replicas on one PostgreSQL decide once: of two promotions at the same moment one wins
/// and the other is told (409); of two halts one is audited; both serve the same bundles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_decide_each_change_once() {
    let a = Server::start(Db::Postgres);
    let b = a.replica(&[]);
    let devices = fleet(&a, 12).await;
    let r = create(
        &a,
        json!({"group": "office", "version": 2, "rings": [50, 100]}),
    )
    .await;
    let id = r["id"].as_str().unwrap().to_owned();
    let promote = format!("/api/v1/rollouts/{id}/promote");
    // Two administrators promote what they both saw, one on each replica, at once: one
    // promotion happens, the other is told the rollout moved on.
    let seen = a
        .admin(Method::GET, &format!("/api/v1/rollouts/{id}"))
        .send()
        .await
        .unwrap();
    let tag = seen.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(tag, "\"previewing.-\"");
    let (x, y) = tokio::join!(
        a.admin(Method::POST, &promote)
            .header("if-match", &tag)
            .send(),
        b.admin(Method::POST, &promote)
            .header("if-match", &tag)
            .send()
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut statuses = [x.status(), y.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);
    let winner = if x.status() == StatusCode::OK { x } else { y };
    assert_eq!(winner.headers()["etag"], "\"rolling.0\"");
    // The same with a halt each; without If-Match the second halt finds it halted (409).
    let halt = format!("/api/v1/rollouts/{id}/halt");
    let (x, y) = tokio::join!(
        a.admin(Method::POST, &halt)
            .header("if-match", "\"rolling.0\"")
            .send(),
        b.admin(Method::POST, &halt)
            .header("if-match", "\"rolling.0\"")
            .send()
    );
    let mut statuses = [x.unwrap().status(), y.unwrap().status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);
    let again = b.admin(Method::POST, &halt).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let bad = a
        .admin(Method::POST, &promote)
        .header("if-match", "\"soon\"")
        .send()
        .await
        .unwrap();
    let p = expect(bad, StatusCode::BAD_REQUEST).await;
    assert_eq!(p["errors"][0]["field"], "If-Match");
    assert_eq!(
        actions(&rollout_audit(&a).await),
        [
            ("tester", "rollout.create"),
            ("tester", "rollout.promote"),
            ("tester", "rollout.halt"),
        ]
    );
    // Both replicas serve every device the same bundle (the other one's change arrived by
    // NOTIFY).
    for d in &devices {
        let (x, y) = (fetch(&a, d, true).await, fetch(&b, d, true).await);
        assert_eq!(x, y, "{}", d.id);
        assert_eq!(x.profile.version, if in_ring(&d.id, 50) { 2 } else { 1 });
    }
}
