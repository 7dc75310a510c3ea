//! Seeds a server database with a fleet for the dashboard and audit report benchmarks (issue
//! 12, section 5): `cargo run --release -p postwarden-server --example seed_fleet -- DEVICES DAYS
//! (DATA_DIR | postgres://…)`.
//!
//! The baseline profile (11 controls) assigned to four groups; DEVICES devices enrolled DAYS + 1
//! days ago with a mix of host names, operating systems and agent versions; per device and day,
//! up to today, one report of the 11 controls (about 8 % of the findings drifted, 1 % failed,
//! attachment blocking not applicable on Thunderbird) and every third day two drift events (a
//! repair and a pending restart), each with the time the agent noticed it; a heartbeat today for
//! 97 % of the devices (the rest are stale); then every finished day is rolled up. Batches go
//! through `Store::ingest` as the HTTP handler calls it. `docs/benchmarks.md` has the numbers.

use std::time::Instant;

use postwarden_profiles::report::{Client, Finding, Report, RunKind, Status};
use postwarden_profiles::Profile;
use postwarden_server_store::{
    Audit, EventItem, FindingRow, IngestItem, IngestKind, NewDevice, NewEnrollmentToken,
    NewProfile, Store,
};
use serde_json::json;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const GROUPS: [&str; 4] = ["office", "lab", "sales", "board"];
const TASKS: usize = 8;

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

fn audit(at_ms: i64) -> Audit<'static> {
    Audit {
        actor: "seed",
        source: "local",
        action: "seed",
        target: "",
        detail: serde_json::Value::Null,
        at_ms,
    }
}

fn device_id(n: usize) -> String {
    format!("dev_{n:026}")
}

/// A cheap, stable pseudo-random number of (device, day, salt).
fn mix(device: usize, day: i64, salt: u64) -> u64 {
    let mut x = (device as u64) ^ ((day as u64) << 32) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn report(profile: &Profile, device: usize, day: i64, at_ms: i64) -> Report {
    let scope = format!("/home/alice/.thunderbird/{device:08x}.default-release");
    let findings = profile
        .controls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let roll = mix(device, day, i as u64) % 1000;
            let status = if c.id.as_str() == "blocked-attachment-types" {
                Status::NotApplicable
            } else if roll < 10 {
                Status::Failed
            } else if roll < 90 {
                Status::Drifted
            } else if roll < 100 {
                Status::Repaired
            } else {
                Status::Compliant
            };
            let bad = matches!(status, Status::Drifted | Status::Failed);
            Finding {
                control: c.id.as_str().to_owned(),
                client: Client::Thunderbird,
                scope: scope.clone(),
                target: "server1".into(),
                setting: Some(format!("mail.server.server1.{}", c.id.as_str())),
                status,
                expected: json!(30),
                actual: if bad { json!(5) } else { json!(30) },
                previous: (status == Status::Repaired).then(|| json!(5)),
                locked: Some(!bad),
                reason: match status {
                    Status::NotApplicable => {
                        Some("Thunderbird has no setting that blocks attachments by type".into())
                    }
                    Status::Failed => Some("prefs.js could not be written: disk full".into()),
                    Status::Drifted => Some("the user changed it".into()),
                    _ => None,
                },
                note: None,
                overridden_by: None,
            }
        })
        .collect();
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .expect("a time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats");
    Report::new(RunKind::Apply, profile, findings, Some(at))
}

fn batch(profile: &Profile, device: usize, day: i64, day0: i64) -> Vec<IngestItem> {
    let at = day0 + day * DAY + (device as i64 % 10) * HOUR + 8 * HOUR;
    let r = report(profile, device, day, at);
    let mut items = vec![IngestItem {
        id: format!("{device}-{day}-r"),
        at_ms: at,
        kind: IngestKind::Report {
            user: "alice".into(),
            report_json: serde_json::to_string(&r).expect("a report serializes"),
            profile_id: r.profile.id.clone(),
            profile_version: i64::from(r.profile.version),
            compliant: r.compliant,
            findings: r.findings.iter().map(FindingRow::from_finding).collect(),
        },
    }];
    if (device as i64 + day) % 3 == 0 {
        let control = profile.controls[(device + day as usize) % profile.controls.len()]
            .id
            .as_str();
        for (e, (status, after)) in [(Status::Repaired, 900), (Status::PendingRestart, 2_000)]
            .into_iter()
            .enumerate()
        {
            items.push(IngestItem {
                id: format!("{device}-{day}-e{e}"),
                at_ms: at + after,
                kind: IngestKind::Event(EventItem {
                    control: control.to_owned(),
                    client: "thunderbird".into(),
                    user: "alice".into(),
                    scope: format!("/home/alice/.thunderbird/{device:08x}.default-release"),
                    target: "server1".into(),
                    setting: Some(format!("mail.server.server1.{control}")),
                    old: "30".into(),
                    new: "5".into(),
                    repaired: status == Status::Repaired,
                    status: status.as_str().into(),
                    notified: Some(true),
                    contested: false,
                    changed_by: None,
                    note: None,
                    merged: 0,
                    detected_ms: Some(at + after - 9 - (device as i64 % 20)),
                }),
            });
        }
    }
    items
}

#[tokio::main]
async fn main() {
    let usage = "seed_fleet DEVICES DAYS (DATA_DIR | postgres://…)";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let devices: usize = args.first().expect(usage).parse().expect(usage);
    let days: i64 = args.get(1).expect(usage).parse().expect(usage);
    let target = args.get(2).expect(usage);
    let url = if target.starts_with("postgres://") {
        target.clone()
    } else {
        std::fs::create_dir_all(target).expect("the data directory");
        format!("sqlite://{target}/postwarden.db")
    };
    let store = Store::connect(&url, TASKS as u32 + 2)
        .await
        .expect("the database");
    store.migrate().await.expect("migrations");
    let now = now_ms();
    let day0 = (now / DAY - days + 1) * DAY;
    let text = postwarden_test_support::baseline_text();
    let profile = Profile::parse("bsi-m5.57.toml", text).expect("the baseline parses");
    let a = audit(day0 - DAY);
    store
        .put_profile(
            &NewProfile {
                id: &profile.id.0,
                version: i64::from(profile.version.0),
                title: &profile.title,
                sha256: "seeded",
                toml: text,
            },
            &a,
        )
        .await
        .expect("the profile");
    for g in GROUPS {
        store
            .put_group(g, &profile.id.0, i64::from(profile.version.0), &a)
            .await
            .expect("a group");
        store
            .create_enrollment_token(
                &NewEnrollmentToken {
                    id: &format!("enr_{g}"),
                    hash: &format!("seed-{g}"),
                    group: g,
                    uses: devices as i64,
                    expires_ms: i64::MAX,
                },
                &a,
            )
            .await
            .expect("a token");
    }
    let started = Instant::now();
    for d in 0..devices {
        let group = GROUPS[d % GROUPS.len()];
        let os = ["linux (Debian 12)", "windows 11", "macos 15"][d % 3];
        store
            .enroll(
                &format!("seed-{group}"),
                &NewDevice {
                    id: &device_id(d),
                    credential_hash: &format!("cred{d}"),
                    hostname: &format!("ws-{d:05}.example.org"),
                    os,
                    agent_version: ["0.1.0", "0.1.1"][d % 2],
                    users: &["alice".into()],
                },
                day0 - DAY,
            )
            .await
            .expect("enrolls");
    }
    println!(
        "{devices} devices enrolled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let profile = std::sync::Arc::new(profile);
    for day in 0..days {
        let handles: Vec<_> = (0..TASKS)
            .map(|t| {
                let store = store.clone();
                let profile = profile.clone();
                tokio::spawn(async move {
                    for d in (t..devices).step_by(TASKS) {
                        let items = batch(&profile, d, day, day0);
                        let received = (items[0].at_ms + 60_000).min(now);
                        store
                            .ingest(&device_id(d), &items, received)
                            .await
                            .expect("ingests");
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("a seeding task");
        }
    }
    println!(
        "{} reports seeded in {:.1} s",
        devices as i64 * days,
        started.elapsed().as_secs_f64()
    );
    let seen: Vec<(String, i64, Option<i64>)> = (0..devices)
        .filter(|d| d % 33 != 0)
        .map(|d| (device_id(d), now, Some(1)))
        .collect();
    for chunk in seen.chunks(1000) {
        store.touch_devices(chunk).await.expect("heartbeats");
    }
    let started = Instant::now();
    let rolled = store
        .roll_up(now, 24 * HOUR, days as usize + 2, 0)
        .await
        .expect("the rollup");
    println!(
        "{} days rolled up in {:.1} s",
        rolled.days.len(),
        started.elapsed().as_secs_f64()
    );
}
