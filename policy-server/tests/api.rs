//! The admin workflow and the agent API, end to end against the real binary, each scenario on
//! SQLite and on PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{baseline_toml, baseline_v2_toml, csv_records, expect, Db, Server};
use postwarden_wire::v1::{
    BatchItem, BatchItemKind, DriftEvent, Notice, NoticeKind, ReportBatch, ReportBatchSchema,
};
use postwarden_wire::{verify_bundle, Jwk};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn jwk(server: &Server) -> Jwk {
    serde_json::from_value(server.jwk.clone()).expect("the ready file holds a public JWK")
}

/// A report for `user` whose findings come from the baseline profile: every control compliant
/// except `failing`, which is drifted.
fn report(user: &str, failing: &[&str]) -> postwarden_profiles::report::Report {
    use postwarden_profiles::report::{Client, Finding, Report, RunKind, Status};
    let profile = postwarden_test_support::baseline();
    let findings = profile
        .controls
        .iter()
        .map(|c| {
            let bad = failing.contains(&c.id.as_str());
            Finding {
                control: c.id.as_str().to_owned(),
                client: Client::Thunderbird,
                scope: format!("/home/{user}/.thunderbird/abc.default"),
                target: "profile".into(),
                setting: Some(format!("setting.{}", c.id.as_str())),
                status: if bad {
                    Status::Drifted
                } else {
                    Status::Compliant
                },
                expected: json!(30),
                actual: if bad { json!(5) } else { json!(30) },
                previous: None,
                locked: Some(!bad),
                reason: bad.then(|| "the user changed it".to_owned()),
                note: None,
                overridden_by: bad.then(|| postwarden_profiles::report::Override {
                    layer: "AutoConfig".into(),
                    location: "/usr/lib/thunderbird/mozilla.cfg:3".into(),
                    evidence: "lockPref(\"mail.server.default.check_time\", 5)".into(),
                    fix: "remove the lockPref".into(),
                }),
            }
        })
        .collect();
    Report::new(
        RunKind::Check,
        &profile,
        findings,
        Some("2026-11-28T10:00:00Z".into()),
    )
}

fn batch(items: Vec<BatchItem>) -> ReportBatch {
    ReportBatch {
        schema: ReportBatchSchema,
        items,
    }
}

fn report_item(user: &str, failing: &[&str], at: &str) -> BatchItem {
    BatchItem {
        id: uuid::Uuid::new_v4(),
        at: time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .unwrap(),
        kind: BatchItemKind::Report {
            report: report(user, failing),
            user: user.into(),
        },
    }
}

fn event_item(user: &str, control: &str) -> BatchItem {
    use postwarden_profiles::report::{Client, Status};
    BatchItem {
        id: uuid::Uuid::new_v4(),
        at: time::OffsetDateTime::now_utc(),
        kind: BatchItemKind::Event {
            event: DriftEvent {
                control: control.into(),
                client: Client::Thunderbird,
                user: user.into(),
                scope: "/home/alice/.thunderbird/abc.default".into(),
                target: "server1".into(),
                setting: Some("mail.server.server1.check_time".into()),
                old: json!(30),
                new: json!(5),
                repaired: true,
                status: Status::Repaired,
                notified: Some(true),
                contested: false,
                changed_by: None,
                note: None,
                merged: None,
                detected_at: None,
            },
        },
    }
}

fn notice_item(kind: NoticeKind, detail: &str, serial: Option<u64>, at: &str) -> BatchItem {
    BatchItem {
        id: uuid::Uuid::new_v4(),
        at: time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .unwrap(),
        kind: BatchItemKind::Notice {
            notice: Notice {
                kind,
                detail: detail.into(),
                serial,
            },
        },
    }
}

async fn post_batch(server: &Server, credential: &str, b: &ReportBatch) -> (u64, u64) {
    let r = server
        .request(Method::POST, "/api/v1/reports")
        .bearer_auth(credential)
        .json(b)
        .send()
        .await
        .unwrap();
    let v = expect(r, StatusCode::OK).await;
    (
        v["accepted"].as_u64().unwrap(),
        v["duplicates"].as_u64().unwrap(),
    )
}

async fn admin_workflow(db: Db) {
    let s = Server::start(db);

    // Profiles: created, identical again, conflicting, invalid with a located error.
    let created = s.upload(&baseline_toml(), StatusCode::CREATED).await;
    assert_eq!(created["id"], "bsi-m5.57");
    assert_eq!(created["version"], 1);
    assert_eq!(created["sha256"].as_str().unwrap().len(), 64);
    let again = s.upload(&baseline_toml(), StatusCode::OK).await;
    assert_eq!(again, created);
    let changed_v1 =
        baseline_toml().replacen("value = { minutes = 30 }", "value = { minutes = 10 }", 1);
    let conflict = s.upload(&changed_v1, StatusCode::CONFLICT).await;
    assert!(
        conflict["detail"].as_str().unwrap().contains("bsi-m5.57/1"),
        "{conflict}"
    );
    let invalid = baseline_toml().replacen("severity = \"low\"", "severity = \"catastrophic\"", 1);
    let problem = s.upload(&invalid, StatusCode::UNPROCESSABLE_ENTITY).await;
    let e = &problem["errors"][0];
    assert!(e["line"].as_u64().unwrap() > 1, "{problem}");
    assert!(e["column"].as_u64().unwrap() >= 1, "{problem}");
    assert!(
        e["field"].as_str().unwrap().contains("severity"),
        "the field is named: {problem}"
    );
    s.upload(&baseline_v2_toml(), StatusCode::CREATED).await;

    let list = s.get_json("/api/v1/profiles").await;
    assert_eq!(list["profiles"][0]["id"], "bsi-m5.57");
    let versions: Vec<u64> = list["profiles"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2]);
    let toml = s
        .admin(Method::GET, "/api/v1/profiles/bsi-m5.57/2")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        toml,
        baseline_v2_toml(),
        "the TOML comes back byte for byte"
    );
    let diff = s
        .get_json("/api/v1/profiles/bsi-m5.57/diff?from=1&to=2")
        .await;
    let changes = diff["controls"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{diff}");
    assert_eq!(changes[0]["control"], "mail-check-interval");
    assert_eq!(changes[0]["change"], "changed");

    // Groups: created, reassigned; an unknown version is refused.
    let r = s
        .admin(Method::PUT, "/api/v1/groups/office")
        .json(&json!({"profile": "bsi-m5.57", "version": 1}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::CREATED).await;
    let r = s
        .admin(Method::PUT, "/api/v1/groups/office")
        .json(&json!({"profile": "bsi-m5.57", "version": 9}))
        .send()
        .await
        .unwrap();
    let p = expect(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["errors"][0]["field"], "version");

    // Variables, then enrollment.
    let r = s
        .admin(Method::PUT, "/api/v1/users/alice/variables")
        .json(&json!({"user.email": "alice@example.org"}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::OK).await;
    let r = s
        .admin(Method::PUT, "/api/v1/users/carol/variables")
        .json(&json!({"user.email": "carol@example.org"}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::OK).await;
    let token = s.enrollment_token("office", 1).await;
    let (device, credential) = s.enroll(&token, &["alice", "bob"]).await;
    assert!(device.starts_with("dev_"));
    assert!(credential.starts_with("pwd_"));
    let r = s
        .request(Method::POST, "/api/v1/enroll")
        .json(&json!({"token": token, "hostname": "ws-02", "os": "linux", "agent_version": "0.1.0", "users": []}))
        .send()
        .await
        .unwrap();
    let p = expect(r, StatusCode::UNAUTHORIZED).await;
    assert!(p["detail"].as_str().unwrap().contains("used up"), "{p}");

    // The bundle: signed, for this device, with only its users' variables; 304 when unchanged.
    let (status, serial, jws) = s.bundle(&credential, None, None).await;
    assert_eq!(status, StatusCode::OK);
    let serial = serial.expect("an ETag");
    let payload = verify_bundle(&jws, &jwk(&s), &device, None).expect("the bundle verifies");
    assert_eq!(payload.serial, serial);
    assert_eq!(payload.profile.id, "bsi-m5.57");
    assert_eq!(payload.profile.version, 1);
    assert_eq!(payload.profile.toml, baseline_toml());
    assert_eq!(
        payload.variables,
        BTreeMap::from([(
            "alice".to_owned(),
            BTreeMap::from([("user.email".to_owned(), "alice@example.org".to_owned())])
        )]),
        "carol's variables stay off a device she is not on"
    );
    payload.profile().expect("the profile in the bundle parses");
    let (status, _, body) = s.bundle(&credential, Some(serial), None).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());

    // Anything in the payload changes → a higher serial: assignment, variables, users.
    s.put_group("office", "bsi-m5.57", 2).await;
    let (status, serial2, jws) = s.bundle(&credential, Some(serial), None).await;
    assert_eq!(status, StatusCode::OK);
    let serial2 = serial2.unwrap();
    assert!(serial2 > serial);
    assert_eq!(
        verify_bundle(&jws, &jwk(&s), &device, Some(serial))
            .unwrap()
            .profile
            .version,
        2
    );
    let r = s
        .admin(Method::PUT, "/api/v1/users/bob/variables")
        .json(&json!({"user.email": "bob@example.org"}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::OK).await;
    let (status, serial3, jws) = s.bundle(&credential, Some(serial2), None).await;
    assert_eq!(status, StatusCode::OK);
    let serial3 = serial3.unwrap();
    assert!(serial3 > serial2);
    let p = verify_bundle(&jws, &jwk(&s), &device, None).unwrap();
    assert_eq!(p.variables["bob"]["user.email"], "bob@example.org");
    let r = s
        .request(Method::POST, "/api/v1/users")
        .bearer_auth(&credential)
        .json(&json!({"users": ["alice", "bob", "carol"]}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::OK).await;
    let (_, serial4, jws) = s.bundle(&credential, Some(serial3), None).await;
    assert!(serial4.unwrap() > serial3);
    let p = verify_bundle(&jws, &jwk(&s), &device, None).unwrap();
    assert_eq!(p.variables.len(), 3, "carol now gets her variables");
    // Rollback is assigning an older version; the serial still goes up.
    s.put_group("office", "bsi-m5.57", 1).await;
    let (_, serial5, jws) = s.bundle(&credential, serial4, None).await;
    assert!(serial5.unwrap() > serial4.unwrap());
    assert_eq!(
        verify_bundle(&jws, &jwk(&s), &device, None)
            .unwrap()
            .profile
            .version,
        1
    );

    // Reports and events: idempotent by item id.
    let b = batch(vec![
        report_item("alice", &["mail-check-interval"], "2026-11-28T10:00:00Z"),
        report_item("bob", &[], "2026-11-28T10:00:00Z"),
        event_item("alice", "mail-check-interval"),
    ]);
    assert_eq!(post_batch(&s, &credential, &b).await, (3, 0));
    assert_eq!(
        post_batch(&s, &credential, &b).await,
        (0, 3),
        "a replayed batch"
    );

    let summary = s.get_json("/api/v1/compliance/summary").await;
    assert_eq!(summary["devices"], 1);
    let controls = summary["controls"].as_array().unwrap();
    let mci = controls
        .iter()
        .find(|c| c["control"] == "mail-check-interval")
        .unwrap();
    assert_eq!(mci["non_compliant"], 1, "{summary}");
    assert_eq!(mci["compliant"], 0, "the device counts by its worst status");
    assert_eq!(mci["compliance_percent"], 0.0);
    let tls = controls
        .iter()
        .find(|c| c["control"] == "require-tls")
        .unwrap();
    assert_eq!(tls["compliant"], 1);
    assert_eq!(tls["compliance_percent"], 100.0);

    let failing = s
        .get_json("/api/v1/compliance/controls/mail-check-interval")
        .await;
    let devices = failing["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["id"], device.as_str());
    let evidence = &devices[0]["findings"][0];
    assert_eq!(evidence["user"], "alice");
    assert_eq!(evidence["expected"], 30);
    assert_eq!(evidence["actual"], 5);
    assert_eq!(evidence["reason"], "the user changed it");
    // The overriding layer reaches the server's views as the agent named it.
    assert_eq!(evidence["overridden_by"]["layer"], "AutoConfig");
    assert_eq!(
        evidence["overridden_by"]["location"],
        "/usr/lib/thunderbird/mozilla.cfg:3"
    );
    let passing = s.get_json("/api/v1/compliance/controls/require-tls").await;
    assert!(passing["devices"].as_array().unwrap().is_empty());

    // A newer report replaces the current findings; an older one does not.
    let newer = batch(vec![report_item("alice", &[], "2026-11-28T11:00:00Z")]);
    post_batch(&s, &credential, &newer).await;
    let older = batch(vec![report_item(
        "alice",
        &["require-tls"],
        "2026-11-28T09:00:00Z",
    )]);
    post_batch(&s, &credential, &older).await;
    let summary = s.get_json("/api/v1/compliance/summary").await;
    for c in summary["controls"].as_array().unwrap() {
        assert_eq!(c["compliant"], 1, "{c}");
    }

    let events = s
        .get_json("/api/v1/events?control=mail-check-interval")
        .await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["old"], 30);
    assert_eq!(events[0]["new"], 5);
    assert_eq!(events[0]["repaired"], true);
    assert_eq!(events[0]["device"], device.as_str());
    let none = s.get_json("/api/v1/events?control=require-tls").await;
    assert!(none["events"].as_array().unwrap().is_empty());

    // Devices: list, filter, detail with evidence.
    let list = s.get_json("/api/v1/devices?group=office").await;
    assert_eq!(list["devices"][0]["id"], device.as_str());
    assert_eq!(list["devices"][0]["status"], "compliant");
    assert_eq!(list["devices"][0]["stale"], false);
    let none = s.get_json("/api/v1/devices?status=stale").await;
    assert!(none["devices"].as_array().unwrap().is_empty());
    let detail = s.get_json(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(detail["hostname"], "ws-01.example.org");
    assert_eq!(detail["agent_version"], "0.1.0");
    assert!(detail["bundle_serial"].as_i64().unwrap() >= serial5.unwrap() as i64);
    assert_eq!(
        detail["reports"].as_array().unwrap().len(),
        2,
        "one per user"
    );

    // CSV for a list.
    let r = s
        .admin(Method::GET, "/api/v1/devices")
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    let mut lines = csv.split("\r\n");
    assert!(lines
        .next()
        .unwrap()
        .starts_with("id,hostname,group,status"));
    assert!(lines.next().unwrap().starts_with(&device));

    // Retiring a device stops its credential at once.
    let r = s
        .admin(Method::DELETE, &format!("/api/v1/devices/{device}"))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::NO_CONTENT).await;
    let r = s
        .request(Method::GET, "/api/v1/bundle")
        .bearer_auth(&credential)
        .send()
        .await
        .unwrap();
    let p = expect(r, StatusCode::UNAUTHORIZED).await;
    assert!(p["detail"].as_str().unwrap().contains("retired"), "{p}");

    // The audit log names who did what, from where.
    let log = s.get_json("/api/v1/audit-log").await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "device.retire",
        "group.assign",
        "variables.set",
        "enrollment_token.create",
        "profile.upload",
        "admin_token.create",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    let retire = &log["entries"][0];
    assert_eq!(retire["action"], "device.retire");
    assert_eq!(retire["actor"], "tester");
    assert_eq!(retire["source"], "127.0.0.1");

    // Secrets never reach the log.
    let text = s.log();
    for secret in [&s.admin, &token, &credential] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret in the server log"
        );
    }
    assert!(text.contains("listening"), "{text}");
}
on_both!(admin_workflow);

/// Issue 10's wire: an event's `contested`, `changed_by`, `note` and `merged` come back in
/// `GET /events` (JSON and CSV); notices are stored once, shown on their device newest first
/// (at most 50), and a replay counts them as duplicates.
async fn event_context_and_notices_are_stored_and_shown(db: Db) {
    let s = Server::start(db);
    s.upload(&baseline_toml(), StatusCode::CREATED).await;
    s.put_group("office", "bsi-m5.57", 1).await;
    let token = s.enrollment_token("office", 2).await;
    let (device, credential) = s.enroll(&token, &["alice"]).await;
    let (other, other_credential) = s.enroll(&token, &["alice"]).await;

    let mut contested = event_item("alice", "mail-check-interval");
    let BatchItemKind::Event { event } = &mut contested.kind else {
        unreachable!()
    };
    event.repaired = false;
    event.status = postwarden_profiles::report::Status::Drifted;
    event.contested = true;
    event.changed_by = Some("Thunderbird (pid 42), which rewrites prefs.js when it exits".into());
    event.note =
        Some("repaired 5 times within an hour, \"left alone\";\nuntil the next bundle".into());
    event.merged = Some(3);
    let plain = event_item("alice", "require-tls");
    let refused = notice_item(
        NoticeKind::BundleRefused,
        "the signature does not verify with the pinned key",
        Some(7),
        "2026-11-28T10:00:02Z",
    );
    let shed = notice_item(
        NoticeKind::QueueShed,
        "120 queued items were dropped:\n\tthe queue was full",
        None,
        "2026-11-28T10:00:03Z",
    );
    let b = batch(vec![
        report_item("alice", &[], "2026-11-28T10:00:00Z"),
        contested.clone(),
        plain.clone(),
        refused.clone(),
        shed.clone(),
    ]);
    assert_eq!(post_batch(&s, &credential, &b).await, (5, 0));
    assert_eq!(
        post_batch(&s, &credential, &b).await,
        (0, 5),
        "a replayed batch: the notices too"
    );

    // JSON.
    let events = s.get_json(&format!("/api/v1/events?device={device}")).await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let by_id = |id: uuid::Uuid| {
        events
            .iter()
            .find(|e| e["id"] == id.to_string().as_str())
            .unwrap_or_else(|| panic!("event {id} in {events:?}"))
    };
    let e = by_id(contested.id);
    assert_eq!(
        [
            &e["contested"],
            &e["changed_by"],
            &e["note"],
            &e["merged"],
            &e["repaired"],
            &e["status"],
        ],
        [
            &json!(true),
            &json!("Thunderbird (pid 42), which rewrites prefs.js when it exits"),
            &json!("repaired 5 times within an hour, \"left alone\";\nuntil the next bundle"),
            &json!(3),
            &json!(false),
            &json!("drifted"),
        ]
    );
    let p = by_id(plain.id);
    assert_eq!(
        [&p["contested"], &p["changed_by"], &p["note"], &p["merged"]],
        [&json!(false), &Value::Null, &Value::Null, &json!(0)],
        "absent on the wire: not contested, nothing folded"
    );

    // CSV: the same values, one column each.
    let r = s
        .admin(Method::GET, &format!("/api/v1/events?device={device}"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rows = csv_records(&r.text().await.unwrap());
    let row = rows
        .iter()
        .find(|r| r["control"] == "mail-check-interval")
        .unwrap();
    let cells = |r: &BTreeMap<String, String>| {
        ["contested", "changed_by", "note", "merged"].map(|c| r[c].clone())
    };
    assert_eq!(
        cells(row),
        [
            "true",
            "Thunderbird (pid 42), which rewrites prefs.js when it exits",
            "repaired 5 times within an hour, \"left alone\";\nuntil the next bundle",
            "3",
        ]
    );
    let row = rows.iter().find(|r| r["control"] == "require-tls").unwrap();
    assert_eq!(cells(row), ["false", "", "", "0"]);

    // The device shows its notices, newest first, exactly these members.
    let detail = s.get_json(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(
        detail["notices"],
        json!([
            {"id": shed.id.to_string(), "at": "2026-11-28T10:00:03Z", "kind": "queue_shed",
             "detail": "120 queued items were dropped:\n\tthe queue was full", "serial": null},
            {"id": refused.id.to_string(), "at": "2026-11-28T10:00:02Z", "kind": "bundle_refused",
             "detail": "the signature does not verify with the pinned key", "serial": 7},
        ])
    );
    let detail = s.get_json(&format!("/api/v1/devices/{other}")).await;
    assert_eq!(
        detail["notices"],
        json!([]),
        "another device's notices stay off"
    );

    // At most the newest 50, of many delivered in one batch.
    let many = batch(
        (0..60)
            .map(|i| {
                notice_item(
                    NoticeKind::ProfileRefused,
                    &format!("notice {i:02}"),
                    Some(i),
                    &format!("2026-11-28T11:00:{i:02}Z"),
                )
            })
            .collect(),
    );
    assert_eq!(post_batch(&s, &other_credential, &many).await, (60, 0));
    let detail = s.get_json(&format!("/api/v1/devices/{other}")).await;
    let shown: Vec<u64> = detail["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(shown, (10..60).rev().collect::<Vec<u64>>());
}
on_both!(event_context_and_notices_are_stored_and_shown);

async fn long_poll_wakes_on_change(db: Db) {
    let s = Server::start(db);
    s.upload(&baseline_toml(), StatusCode::CREATED).await;
    s.upload(&baseline_v2_toml(), StatusCode::CREATED).await;
    s.put_group("office", "bsi-m5.57", 1).await;
    let token = s.enrollment_token("office", 1).await;
    let (_, credential) = s.enroll(&token, &["alice"]).await;
    let (_, serial, _) = s.bundle(&credential, None, None).await;

    // Unchanged: 304 after the wait.
    let started = Instant::now();
    let (status, _, _) = s.bundle(&credential, serial, Some(1)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Changed while waiting: answered at once.
    let poll = {
        let client = s.client.clone();
        let url = format!("{}/api/v1/bundle?wait=30", s.url);
        let credential = credential.clone();
        let serial = serial.unwrap();
        tokio::spawn(async move {
            let r = client
                .get(url)
                .bearer_auth(credential)
                .header("if-none-match", format!("\"{serial}\""))
                .send()
                .await
                .unwrap();
            (r.status(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let changed_at = Instant::now();
    s.put_group("office", "bsi-m5.57", 2).await;
    let (status, answered_at) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        answered_at.duration_since(changed_at) < Duration::from_secs(1),
        "the long-poll answered {:?} after the change",
        answered_at.duration_since(changed_at)
    );

    // A wait beyond the limit is a named error.
    let r = s
        .request(Method::GET, "/api/v1/bundle?wait=301")
        .bearer_auth(&credential)
        .send()
        .await
        .unwrap();
    let p = expect(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(p["errors"][0]["field"], "wait");
}
on_both!(long_poll_wakes_on_change);

async fn csv_variables_are_all_or_nothing(db: Db) {
    let s = Server::start(db);
    let send = |body: &'static str| {
        s.admin(Method::POST, "/api/v1/users/variables")
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    let r = send("user,user.email\nalice,alice@example.org\nEXAMPLE\\bob,bob@example.org\n")
        .await
        .unwrap();
    let v = expect(r, StatusCode::OK).await;
    assert_eq!(v["users"], 2);
    // Line 3 has an extra column: nothing of this upload is stored.
    let r = send("user,user.email\ndave,dave@example.org\nerin,erin@example.org,extra\n")
        .await
        .unwrap();
    let p = expect(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["errors"][0]["line"], 3, "{p}");

    s.upload(&baseline_toml(), StatusCode::CREATED).await;
    s.put_group("office", "bsi-m5.57", 1).await;
    let token = s.enrollment_token("office", 1).await;
    let (device, credential) = s.enroll(&token, &["alice", "dave", "EXAMPLE\\bob"]).await;
    let (_, _, jws) = s.bundle(&credential, None, None).await;
    let p = verify_bundle(&jws, &jwk(&s), &device, None).unwrap();
    assert_eq!(p.variables["alice"]["user.email"], "alice@example.org");
    assert_eq!(p.variables["EXAMPLE\\bob"]["user.email"], "bob@example.org");
    assert!(
        !p.variables.contains_key("dave"),
        "the failed upload stored nothing"
    );

    let csv = s
        .admin(Method::GET, "/api/v1/audit-log")
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.contains("variables.import"), "{csv}");
}
on_both!(csv_variables_are_all_or_nothing);

async fn stale_devices_never_count_compliant(db: Db) {
    let s = Server::start_with(db, &["--stale-after", "2s"]);
    s.upload(&baseline_toml(), StatusCode::CREATED).await;
    s.put_group("office", "bsi-m5.57", 1).await;
    let token = s.enrollment_token("office", 1).await;
    let (device, credential) = s.enroll(&token, &["alice"]).await;
    post_batch(
        &s,
        &credential,
        &batch(vec![report_item("alice", &[], "2026-11-28T10:00:00Z")]),
    )
    .await;
    let summary = s.get_json("/api/v1/compliance/summary").await;
    assert_eq!(summary["controls"][0]["compliant"], 1, "{summary}");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let summary = s.get_json("/api/v1/compliance/summary").await;
    for c in summary["controls"].as_array().unwrap() {
        assert_eq!(c["compliant"], 0, "{c}");
        assert_eq!(c["stale"], 1, "{c}");
    }
    assert_eq!(summary["stale_devices"], 1);
    let stale = s.get_json("/api/v1/devices?status=stale").await;
    assert_eq!(stale["devices"][0]["id"], device.as_str());
    assert_eq!(stale["devices"][0]["stale"], true);
    // A heartbeat (any authenticated request) makes it fresh again.
    s.bundle(&credential, None, None).await;
    let fresh = s.get_json("/api/v1/devices?status=compliant").await;
    assert_eq!(fresh["devices"][0]["id"], device.as_str());
}
on_both!(stale_devices_never_count_compliant);

async fn a_revoked_admin_token_stops_working(db: Db) {
    let s = Server::start(db);
    assert_eq!(
        s.admin(Method::GET, "/api/v1/groups")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let mut cmd = std::process::Command::new(postwarden_test_support::bin::server());
    cmd.args(["admin", "revoke-token", "--name", "tester", "--data-dir"])
        .arg(&s.dir);
    if let Some(url) = &s.database_url {
        cmd.args(["--database-url", url]);
    }
    assert!(cmd.status().unwrap().success());
    let r = s.admin(Method::GET, "/api/v1/groups").send().await.unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;
}
on_both!(a_revoked_admin_token_stops_working);

#[tokio::test]
async fn the_signing_key_is_public_and_matches_the_ready_file() {
    let s = Server::start(Db::Sqlite);
    let r = s
        .request(Method::GET, "/api/v1/signing-key")
        .send()
        .await
        .unwrap();
    let v: Value = expect(r, StatusCode::OK).await;
    assert_eq!(v, s.jwk);
    assert_eq!(v["kty"], "OKP");
    assert_eq!(v["crv"], "Ed25519");
    assert!(v.get("d").is_none(), "never the private part");
}
