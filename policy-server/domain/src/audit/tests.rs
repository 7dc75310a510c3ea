use super::*;
use postwarden_profiles::builtin;
use postwarden_profiles::report::{Override, RunKind};
use serde_json::json;

const HOUR: i64 = 3_600_000;
/// 2026-11-28 12:00:00 UTC.
const NOON: i64 = 1_795_867_200_000;

fn settings(moment: Moment) -> AuditSettings {
    AuditSettings {
        organisation: "Mustermann GmbH".into(),
        scope: Scope::Fleet,
        moment,
        generated_ms: NOON,
        stale_after_ms: 24 * HOUR,
        appendix_devices: 100,
        evidence_per_device: 20,
    }
}

fn device(id: &str, last_seen_ms: i64) -> AuditDevice {
    AuditDevice {
        id: id.into(),
        hostname: format!("{id}.example.org"),
        group: "office".into(),
        last_seen_ms,
    }
}

/// A report on the baseline profile: every control compliant on one Thunderbird profile,
/// except those in `statuses`.
fn report(statuses: &[(&str, Status)]) -> Report {
    let profile = builtin::load("bsi-m5.57").unwrap().unwrap();
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
                scope: "/home/alice/.thunderbird/abc.default".into(),
                target: "profile".into(),
                setting: Some(format!("pref.{}", c.id)),
                status,
                expected: json!(true),
                actual: json!(status == Status::Compliant),
                previous: None,
                locked: None,
                reason: (status == Status::NotApplicable)
                    .then(|| "Thunderbird has no such setting".to_owned()),
                note: None,
                overridden_by: None,
            }
        })
        .collect();
    Report::new(RunKind::Check, &profile, findings, None)
}

fn build(
    settings: AuditSettings,
    devices: &[(&str, i64)],
    reports: &[(&str, i64, Report)],
) -> AuditReport {
    let mut b = AuditBuilder::new(settings);
    for (id, seen) in devices {
        b.device(device(id, *seen));
    }
    for (id, at, r) in reports {
        assert!(b.report(id, "alice", *at, r), "{id} was added");
    }
    b.finish()
}

fn item<'a>(r: &'a AuditReport, control: &str) -> &'a Item {
    r.areas
        .iter()
        .flat_map(|a| &a.items)
        .find(|i| i.control == control)
        .unwrap_or_else(|| panic!("no item {control}"))
}

fn recommended(r: &AuditReport, severity: Severity) -> Vec<Option<&str>> {
    r.recommendations
        .iter()
        .find(|p| p.severity == severity)
        .unwrap()
        .recommendations
        .iter()
        .map(|x| x.control.as_deref())
        .collect()
}

#[test]
fn high_severity_failures_are_serious_deviations_named_with_their_device_counts() {
    let r = build(
        settings(Moment::Now(NOON)),
        &[("a", NOON), ("b", NOON), ("c", NOON)],
        &[
            ("a", NOON - HOUR, report(&[])),
            (
                "b",
                NOON - HOUR,
                report(&[
                    ("no-saved-passwords", Status::Drifted),
                    ("mail-check-interval", Status::Drifted),
                ]),
            ),
            (
                "c",
                NOON - HOUR,
                report(&[("no-saved-passwords", Status::Failed)]),
            ),
        ],
    );
    assert_eq!(r.conclusion.verdict, Verdict::SeriousDeviations);
    let text = r.conclusion.paragraphs.join(" ");
    assert!(
        text.contains(
            "1 high-severity control fails: No saved passwords (no-saved-passwords) fails on 2 of \
             3 devices"
        ),
        "{text}"
    );
    assert!(
        text.contains("1 control of medium or low priority deviates"),
        "{text}"
    );
    assert_eq!(
        recommended(&r, Severity::High),
        [Some("no-saved-passwords")]
    );
    assert!(recommended(&r, Severity::Medium).is_empty());
    assert_eq!(
        recommended(&r, Severity::Low),
        [Some("mail-check-interval")]
    );
    let high = &r.recommendations[0].recommendations[0];
    assert_eq!(
        high.figures,
        "fails on 2 of 3 devices: 1 non-compliant, 1 in error"
    );
    assert_eq!(
        high.steps,
        [
            "Switch off the client's offer to save passwords and lock it.",
            "Delete the mail passwords the client already stores.",
            "Tell users they will be asked for their password at each start.",
        ]
    );
    assert_eq!(r.title.devices, 3);
    assert_eq!(r.title.reporting, 3);
    assert_eq!(
        r.title.profiles,
        ["bsi-m5.57 version 1: BSI IT-Grundschutz M 5.57: secure configuration of mail clients (3 devices)"]
    );
}

#[test]
fn only_lower_priority_failures_are_no_serious_deviations() {
    let r = build(
        settings(Moment::Now(NOON)),
        &[("a", NOON), ("b", NOON)],
        &[
            ("a", NOON, report(&[])),
            ("b", NOON, report(&[("reply-address", Status::Drifted)])),
        ],
    );
    assert_eq!(r.conclusion.verdict, Verdict::NoSeriousDeviations);
    assert!(
        r.conclusion.paragraphs[0].contains("we found no serious deviations"),
        "{:?}",
        r.conclusion
    );
    assert!(recommended(&r, Severity::High).is_empty());
    assert_eq!(recommended(&r, Severity::Medium), [Some("reply-address")]);

    let clean = build(
        settings(Moment::Now(NOON)),
        &[("a", NOON)],
        &[("a", NOON, report(&[]))],
    );
    assert_eq!(clean.conclusion.verdict, Verdict::NoSeriousDeviations);
    assert!(
        clean.conclusion.paragraphs[0].contains("we found no deviations"),
        "{:?}",
        clean.conclusion
    );
    assert!(clean
        .recommendations
        .iter()
        .all(|p| p.recommendations.is_empty()));
    assert_eq!(clean.appendix.failing_devices, 0);
}

#[test]
fn marks_and_figures_follow_the_worst_status_per_device() {
    let r = build(
        settings(Moment::Now(NOON)),
        &[("a", NOON), ("b", NOON), ("c", NOON)],
        &[
            (
                "a",
                NOON,
                report(&[
                    ("blocked-attachment-types", Status::NotApplicable),
                    ("require-tls", Status::PendingRestart),
                ]),
            ),
            (
                "b",
                NOON,
                report(&[
                    ("blocked-attachment-types", Status::NotApplicable),
                    ("require-tls", Status::Repaired),
                ]),
            ),
            (
                "c",
                NOON,
                report(&[
                    ("blocked-attachment-types", Status::NotApplicable),
                    ("mailbox-size-limit", Status::NotApplicable),
                ]),
            ),
        ],
    );
    let tls = item(&r, "require-tls");
    assert_eq!((tls.mark, tls.mark.symbol()), (Mark::Fail, "✗"));
    assert_eq!(
        tls.figures,
        "2 of 3 devices compliant (66.7 %); 1 pending restart"
    );
    let pw = item(&r, "no-saved-passwords");
    assert_eq!((pw.mark, pw.mark.symbol()), (Mark::Pass, "✓"));
    assert_eq!(pw.figures, "3 of 3 devices compliant (100.0 %)");
    let blocked = item(&r, "blocked-attachment-types");
    assert_eq!(blocked.mark, Mark::NotApplicable);
    assert_eq!(blocked.figures, "not applicable on 3 devices");
    let quota = item(&r, "mailbox-size-limit");
    assert_eq!(quota.mark, Mark::Pass);
    assert_eq!(
        quota.figures,
        "2 of 2 devices compliant (100.0 %); 1 not applicable"
    );
    // Areas in report order, each control in the area the MDaemon audit would put it.
    let titles: Vec<&str> = r.areas.iter().map(|a| a.title).collect();
    assert_eq!(titles, AREAS[..5]);
    assert!(r.areas[2]
        .items
        .iter()
        .any(|i| i.control == "blocked-attachment-types"));
}

#[test]
fn every_control_has_an_area_of_its_own_kind() {
    for id in ControlId::ALL {
        assert!(
            area_of(id.as_str()) < 5,
            "{id} falls into \"Other settings\""
        );
    }
    assert_eq!(area_of(RAW_THUNDERBIRD), 5);
    assert_eq!(area_of("something-new"), 5);
}

#[test]
fn an_empty_fleet_has_nothing_to_assess_and_devices_without_reports_are_not_assessed() {
    let r = build(settings(Moment::Now(NOON)), &[], &[]);
    assert_eq!(r.conclusion.verdict, Verdict::NothingToAssess);
    assert!(
        r.conclusion.paragraphs[0].starts_with(
            "No device of the whole fleet (all groups) was enrolled at 2026-11-28 12:00:00 UTC"
        ),
        "{:?}",
        r.conclusion
    );
    assert!(r.areas.is_empty());
    assert!(r.outside.is_empty());
    assert_eq!(r.title.devices, 0);
    assert!(r.title.profiles.is_empty());
    assert_eq!(r.appendix.failing_devices, 0);

    let mut one = settings(Moment::AsOf(NOON));
    one.scope = Scope::Device {
        id: "dev_x".into(),
        hostname: "ws-9".into(),
    };
    let r = build(one, &[], &[]);
    assert_eq!(
        r.conclusion.paragraphs,
        ["Device ws-9 (dev_x) was not enrolled as of 2026-11-28 12:00:00 UTC (enrolled later, or \
          retired by then), so there is nothing to assess."]
    );
    assert_eq!(r.title.scope, "device ws-9 (dev_x)");

    let r = build(
        settings(Moment::Now(NOON)),
        &[("a", NOON), ("b", NOON)],
        &[],
    );
    assert_eq!(r.conclusion.verdict, Verdict::NotReported);
    assert!(r.conclusion.paragraphs[0].starts_with("None of the 2 devices had reported"));
    assert_eq!(r.title.unreported, 2);
    assert!(r
        .not_verified
        .iter()
        .any(|n| n.starts_with("2 devices in the scope had not reported")));
}

#[test]
fn a_stale_device_is_never_compliant_and_is_listed_first() {
    let r = build(
        settings(Moment::Now(NOON)),
        &[("fresh", NOON - HOUR), ("old", NOON - 30 * HOUR)],
        &[
            (
                "fresh",
                NOON - HOUR,
                report(&[("reply-address", Status::Drifted)]),
            ),
            // Its last report said compliant, but it has been silent for 30 hours.
            ("old", NOON - 30 * HOUR, report(&[])),
        ],
    );
    assert_eq!(r.title.stale, 1);
    let pw = item(&r, "no-saved-passwords");
    assert_eq!(pw.mark, Mark::Fail);
    assert_eq!(pw.figures, "1 of 2 devices compliant (50.0 %); 1 stale");
    assert_eq!(r.conclusion.verdict, Verdict::SeriousDeviations);
    assert!(r
        .conclusion
        .paragraphs
        .iter()
        .any(|p| p.contains("1 of 2 devices had not been heard from for more than 24 h")));
    let stale = &r.recommendations[1].recommendations;
    assert!(
        stale
            .iter()
            .any(|x| x.control.is_none() && x.title == "Devices that stopped reporting"),
        "{stale:?}"
    );
    let listed: Vec<(&str, &str)> = r
        .appendix
        .devices
        .iter()
        .map(|d| (d.id.as_str(), d.status))
        .collect();
    assert_eq!(listed, [("old", "stale"), ("fresh", "non_compliant")]);
    assert!(r.appendix.devices[0].evidence.is_empty(), "nothing failed");
    assert_eq!(r.appendix.devices[1].evidence[0].control, "reply-address");
}

#[test]
fn as_of_a_moment_counts_reports_as_contact_and_says_so() {
    // Enrolled 100 hours before the moment, reported an hour before it.
    let devices = [("a", NOON - 100 * HOUR)];
    let reports = [("a", NOON - HOUR, report(&[]))];
    let r = build(settings(Moment::AsOf(NOON)), &devices, &reports);
    assert_eq!(r.title.moment_label, "State as of");
    assert_eq!(r.title.date, "2026-11-28 12:00:00 UTC");
    assert_eq!(r.title.stale, 0, "the report is contact");
    assert_eq!(item(&r, "require-tls").mark, Mark::Pass);
    assert!(r
        .note
        .iter()
        .any(|n| n.contains("heartbeats are not kept as history")));
    // Now, the device's own last-seen time decides (the caller's, with heartbeats).
    let r = build(settings(Moment::Now(NOON)), &devices, &reports);
    assert_eq!(r.title.moment_label, "State at");
    assert_eq!(r.title.stale, 1);
    assert!(!r.note.iter().any(|n| n.contains("heartbeats")));
}

#[test]
fn the_appendix_is_bounded_and_says_what_it_left_out() {
    let mut s = settings(Moment::Now(NOON));
    s.appendix_devices = 2;
    s.evidence_per_device = 1;
    let failing = || {
        report(&[
            ("require-tls", Status::Drifted),
            ("require-smtp-auth", Status::Drifted),
        ])
    };
    let r = build(
        s,
        &[("a", NOON), ("b", NOON), ("c", NOON), ("ok", NOON)],
        &[
            ("a", NOON, failing()),
            ("b", NOON, report(&[("require-tls", Status::Failed)])),
            ("c", NOON, failing()),
            ("ok", NOON, report(&[])),
        ],
    );
    assert_eq!(r.appendix.failing_devices, 3);
    assert_eq!(r.appendix.truncated(), 1);
    let listed: Vec<(&str, usize, usize)> = r
        .appendix
        .devices
        .iter()
        .map(|d| (d.id.as_str(), d.evidence.len(), d.more))
        .collect();
    // In error before non-compliant; then by host name.
    assert_eq!(listed, [("b", 1, 0), ("a", 1, 1)]);
    let e = &r.appendix.devices[0].evidence[0];
    assert_eq!(
        (e.user.as_str(), e.client, e.status, e.actual.as_str()),
        ("alice", "Thunderbird", "failed", "false")
    );
    assert_eq!(e.setting.as_deref(), Some("pref.require-tls"));
    assert_eq!(
        e.control_title,
        "Mail connections are encrypted (SSL/TLS or STARTTLS)"
    );
}

#[test]
fn what_clients_cannot_enforce_comes_from_findings_and_the_server_side_knowledge() {
    let mut overridden = report(&[("mail-check-interval", Status::Failed)]);
    let f = overridden
        .findings
        .iter_mut()
        .find(|f| f.control == "mail-check-interval")
        .unwrap();
    f.overridden_by = Some(Override {
        layer: "AutoConfig".into(),
        location: "/usr/lib/thunderbird/mozilla.cfg:3".into(),
        evidence: "lockPref(\"mail.server.default.check_time\", 5)".into(),
        fix: "remove the lockPref from mozilla.cfg".into(),
    });
    let r = build(
        settings(Moment::Now(NOON)),
        &[("a", NOON), ("b", NOON)],
        &[
            (
                "a",
                NOON,
                report(&[("blocked-attachment-types", Status::NotApplicable)]),
            ),
            ("b", NOON, overridden),
        ],
    );
    let blocked = r
        .outside
        .iter()
        .find(|o| o.control == "blocked-attachment-types")
        .expect("blocked attachment types are outside the client's reach");
    assert_eq!(
        blocked.not_applicable,
        ["Thunderbird on 1 device: Thunderbird has no such setting"]
    );
    let instead = blocked.instead.expect("a gateway counterpart");
    assert!(instead.place.contains("gateway"), "{instead:?}");
    assert!(instead.what.contains("ZIP archives"), "{instead:?}");
    let check = r
        .outside
        .iter()
        .find(|o| o.control == "mail-check-interval")
        .expect("a layer decides the interval");
    assert_eq!(
        check.overridden,
        ["Thunderbird on 1 device: decided by AutoConfig (/usr/lib/thunderbird/mozilla.cfg:3); remove the lockPref from mozilla.cfg"]
    );
    assert!(check.instead.is_none());
    // The server's part of quotas and SMTP authentication is listed even when every client
    // complies: no client setting can do it.
    for control in [
        "mailbox-size-limit",
        "require-smtp-auth",
        "attachment-scanning",
    ] {
        let o = r.outside.iter().find(|o| o.control == control).unwrap();
        assert!(o.instead.is_some(), "{control}");
    }
    assert!(!r.outside.iter().any(|o| o.control == "settings-locked"));
    // The layer's fix is part of the recommendation.
    let low = &r.recommendations[2].recommendations[0];
    assert_eq!(low.control.as_deref(), Some("mail-check-interval"));
    assert_eq!(
        low.layer_fixes,
        ["Thunderbird on 1 device (AutoConfig at /usr/lib/thunderbird/mozilla.cfg:3): remove the lockPref from mozilla.cfg"]
    );
    let e = &r.appendix.devices[0].evidence[0];
    assert!(
        e.detail
            .as_deref()
            .unwrap()
            .starts_with("decided by AutoConfig at /usr/lib/thunderbird/mozilla.cfg:3"),
        "{e:?}"
    );
}

#[test]
fn a_report_of_a_device_not_in_the_scope_is_ignored() {
    let mut b = AuditBuilder::new(settings(Moment::Now(NOON)));
    b.device(device("a", NOON));
    b.device(device("a", 0));
    assert!(!b.report("retired", "alice", NOON, &report(&[])));
    let r = b.finish();
    assert_eq!(r.title.devices, 1);
    assert_eq!(r.conclusion.verdict, Verdict::NotReported);
}

#[test]
fn remediation_text_becomes_steps() {
    assert_eq!(
        steps("1. First step.\n2. Second step\n   continued.\n\n3. Third."),
        ["First step.", "Second step continued.", "Third."]
    );
    assert_eq!(steps("Just do it."), ["Just do it."]);
    assert!(steps("").is_empty());
}

#[test]
fn as_of_takes_a_date_as_the_end_of_that_day_and_refuses_the_future() {
    let now = NOON; // 2026-11-28 12:00 UTC
    let end_of_27th = NOON - 12 * HOUR - 1;
    assert_eq!(parse_as_of("2026-11-27", now), Ok(end_of_27th));
    assert_eq!(format_ms(end_of_27th), "2026-11-27 23:59:59 UTC");
    // Today is not over: it means now.
    assert_eq!(parse_as_of("2026-11-28", now), Ok(now));
    assert_eq!(parse_as_of("2026-11-28T10:00:00Z", now), Ok(now - 2 * HOUR));
    assert_eq!(
        parse_as_of("2026-11-28T11:00:00+01:00", now),
        Ok(now - 2 * HOUR)
    );
    assert_eq!(
        parse_as_of("2026-11-28T10:00:00.250Z", now),
        Ok(now - 2 * HOUR + 250)
    );
    let future = parse_as_of("2026-11-29", now).unwrap_err().0;
    assert!(future.contains("is in the future"), "{future}");
    let future = parse_as_of("2026-11-28T12:00:01Z", now).unwrap_err().0;
    assert!(future.contains("is in the future"), "{future}");
    for bad in [
        "yesterday",
        "2026-13-01",
        "2026-02-30",
        "28.11.2026",
        "",
        "2026-11-28T10:00",
    ] {
        let e = parse_as_of(bad, now).unwrap_err().0;
        assert!(
            e.contains("neither a date (YYYY-MM-DD) nor an RFC 3339 time"),
            "{bad}: {e}"
        );
    }
    // What is echoed is bounded and escaped.
    let e = parse_as_of(&format!("x\u{202e}{}", "9".repeat(10_000)), now)
        .unwrap_err()
        .0;
    assert!(e.len() < 200 && e.contains("\\u{202e}"), "{e}");
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(duration_text(24 * HOUR), "24 h");
    assert_eq!(duration_text(72 * HOUR), "3 d");
    assert_eq!(duration_text(90 * 60_000), "90 min");
    assert_eq!(duration_text(30_000), "30 s");
}
