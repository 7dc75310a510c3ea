//! Synthetic agent traffic: reports with a chosen number of findings, and report batches with
//! fresh item ids, as an agent would send them.
//!
//! A batch differs from the last only in its item ids and times, so the report (almost all of
//! the bytes) is serialized once and each batch is spliced around it. The unit tests pin that
//! the spliced text is exactly what serde writes for the typed [`ReportBatch`].

use postwarden_profiles::report::{Client, Finding, Report, RunKind, Status};
use postwarden_profiles::Profile;
use postwarden_wire::v1::REPORT_BATCH_SCHEMA;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

/// `count` findings of a Thunderbird check against `profile`: the profile's controls in turn,
/// one account per round of controls, every tenth finding drifted (so the report is not
/// compliant and the server stores a mix of statuses, as in a real fleet).
pub fn findings(profile: &Profile, count: usize) -> Vec<Finding> {
    let controls: Vec<&str> = profile.controls.iter().map(|c| c.id.as_str()).collect();
    let controls = if controls.is_empty() {
        vec!["reply-address"]
    } else {
        controls
    };
    (0..count)
        .map(|i| {
            let control = controls[i % controls.len()];
            let account = i / controls.len() + 1;
            let drifted = i % 10 == 9;
            Finding {
                control: control.to_owned(),
                client: Client::Thunderbird,
                scope: "/home/user/.thunderbird/x7k2m9qa.default-release".to_owned(),
                target: format!("account{account}"),
                setting: Some(format!("mail.server.server{account}.{control}")),
                status: if drifted {
                    Status::Drifted
                } else {
                    Status::Compliant
                },
                expected: json!(true),
                actual: json!(!drifted),
                previous: None,
                locked: Some(!drifted),
                reason: None,
                note: None,
                overridden_by: None,
            }
        })
        .collect()
}

/// A `check` report of `findings_per_report` synthetic findings.
pub fn report(profile: &Profile, findings_per_report: usize, generated_at: &str) -> Report {
    Report::new(
        RunKind::Check,
        profile,
        findings(profile, findings_per_report),
        Some(generated_at.to_owned()),
    )
}

/// The local users of a simulated device: one per report in a batch, so every report of a
/// batch is some user's current report (the server replaces a user's current findings with
/// the newest report; two reports of one user in one batch would do that work twice).
pub fn users(reports_per_batch: usize) -> Vec<String> {
    (1..=reports_per_batch.max(1))
        .map(|i| format!("user{i}"))
        .collect()
}

/// One report item of a batch: its id, its time (RFC 3339) and its user.
#[derive(Debug, Clone)]
pub struct Item<'a> {
    pub id: Uuid,
    pub at: String,
    pub user: &'a str,
}

/// The JSON of a `postwarden.report-batch/v1` whose items all carry `report_json` (a report
/// serialized once with `serde_json::to_string`).
pub fn batch_body(report_json: &str, items: &[Item<'_>]) -> String {
    let per_item = report_json.len() + 128;
    let mut out = String::with_capacity(64 + items.len() * per_item);
    out.push_str("{\"schema\":\"");
    out.push_str(REPORT_BATCH_SCHEMA);
    out.push_str("\",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":\"");
        out.push_str(
            item.id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer()),
        );
        out.push_str("\",\"at\":");
        // Both are plain text; serde_json quotes and escapes them as the typed form would.
        out.push_str(&serde_json::to_string(&item.at).expect("a string serializes"));
        out.push_str(",\"kind\":\"report\",\"report\":");
        out.push_str(report_json);
        out.push_str(",\"user\":");
        out.push_str(&serde_json::to_string(item.user).expect("a string serializes"));
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// RFC 3339 of a time given in milliseconds since the Unix epoch.
pub fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// The next item time after `last`: now, or one millisecond after the last one if the clock
/// has not moved on. Each report must be newer than the device's current one, or the server
/// keeps the old findings and skips the work this benchmark is meant to measure.
pub fn next_at(last_ms: i64, now_ms: i64) -> i64 {
    now_ms.max(last_ms.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use postwarden_wire::v1::{BatchItem, BatchItemKind, ReportBatch, ReportBatchSchema};

    fn baseline() -> Profile {
        postwarden_profiles::builtin::load("bsi-m5.57")
            .expect("the built-in profile exists")
            .expect("the built-in profile parses")
    }

    #[test]
    fn findings_have_the_requested_count_and_cover_every_control() {
        let profile = baseline();
        for n in [0, 1, 10, 100, 1000] {
            assert_eq!(findings(&profile, n).len(), n);
        }
        let many = findings(&profile, 100);
        for control in &profile.controls {
            assert!(
                many.iter().any(|f| f.control == control.id.as_str()),
                "{}",
                control.id.as_str()
            );
        }
        assert_eq!(
            many.iter().filter(|f| f.status == Status::Drifted).count(),
            10
        );
    }

    #[test]
    fn a_report_carries_its_findings_and_is_not_compliant_with_a_drifted_one() {
        let profile = baseline();
        let r = report(&profile, 100, "2025-01-01T00:00:00Z");
        assert_eq!(r.findings.len(), 100);
        assert!(!r.compliant);
        assert!(report(&profile, 5, "2025-01-01T00:00:00Z").compliant);
    }

    #[test]
    fn the_spliced_batch_is_what_serde_writes_for_the_typed_batch() {
        let profile = baseline();
        let r = report(&profile, 7, "2025-01-01T00:00:00Z");
        let report_json = serde_json::to_string(&r).unwrap();
        let users = users(2);
        let items: Vec<Item<'_>> = users
            .iter()
            .enumerate()
            .map(|(i, user)| Item {
                id: Uuid::new_v4(),
                at: rfc3339_ms(1_735_689_600_000 + i as i64),
                user,
            })
            .collect();
        let body = batch_body(&report_json, &items);
        let typed = ReportBatch {
            schema: ReportBatchSchema,
            items: items
                .iter()
                .map(|item| BatchItem {
                    id: item.id,
                    at: OffsetDateTime::parse(&item.at, &Rfc3339).unwrap(),
                    kind: BatchItemKind::Report {
                        report: r.clone(),
                        user: item.user.to_owned(),
                    },
                })
                .collect(),
        };
        assert_eq!(body, serde_json::to_string(&typed).unwrap());
        let parsed: ReportBatch = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed, typed);
    }

    #[test]
    fn body_size_grows_linearly_with_findings() {
        let profile = baseline();
        let size = |n: usize| {
            let r = serde_json::to_string(&report(&profile, n, "2025-01-01T00:00:00Z")).unwrap();
            let users = users(1);
            let items = [Item {
                id: Uuid::nil(),
                at: rfc3339_ms(0),
                user: &users[0],
            }];
            batch_body(&r, &items).len()
        };
        let (s0, s100, s200) = (size(0), size(100), size(200));
        let per_finding = (s200 - s100) as f64 / 100.0;
        assert!(
            (150.0..400.0).contains(&per_finding),
            "{per_finding} bytes per finding"
        );
        let linear = s0 as f64 + 100.0 * per_finding;
        // Within 2 %: account numbers gain digits as the count grows.
        assert!(
            (s100 as f64 - linear).abs() < s100 as f64 * 0.02,
            "{s0} {s100} {s200}"
        );
        // Two items are two copies of the report.
        let r = serde_json::to_string(&report(&profile, 100, "x")).unwrap();
        let users = users(2);
        let two: Vec<Item<'_>> = users
            .iter()
            .map(|user| Item {
                id: Uuid::nil(),
                at: rfc3339_ms(0),
                user,
            })
            .collect();
        assert!(batch_body(&r, &two).len() > 2 * r.len());
    }

    #[test]
    fn item_times_strictly_increase() {
        assert_eq!(next_at(100, 200), 200);
        assert_eq!(next_at(200, 200), 201);
        assert_eq!(next_at(300, 200), 301);
        assert_eq!(next_at(i64::MAX, 0), i64::MAX);
        assert_eq!(rfc3339_ms(1_735_689_600_123), "2025-01-01T00:00:00.123Z");
    }

    #[test]
    fn users_are_one_per_report() {
        assert_eq!(users(0), ["user1"]);
        assert_eq!(users(3), ["user1", "user2", "user3"]);
    }
}
