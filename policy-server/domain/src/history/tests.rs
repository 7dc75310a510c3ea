use super::*;
use proptest::prelude::*;

const T0: i64 = 1_764_288_000_000; // 2025-11-28T00:00:00Z

fn device(id: &str, group: &str, enrolled_ms: i64) -> DeviceInfo {
    DeviceInfo {
        id: id.to_owned(),
        group: group.to_owned(),
        enrolled_ms,
        retired_ms: None,
        last_seen_ms: enrolled_ms,
    }
}

fn newest(at_ms: i64, id: &str, controls: &[(&str, Status)]) -> Newest {
    Newest {
        at_ms,
        item_id: id.to_owned(),
        controls: controls
            .iter()
            .map(|(c, s)| ((*c).to_owned(), *s))
            .collect(),
    }
}

fn counts(s: &Summary, control: &str) -> (u64, u64, u64, u64, u64, u64) {
    let c = s
        .controls
        .iter()
        .find(|c| c.control == control)
        .unwrap_or_else(|| panic!("no {control} in {s:?}"));
    (
        c.compliant,
        c.non_compliant,
        c.pending_restart,
        c.not_applicable,
        c.error,
        c.stale,
    )
}

#[test]
fn days_are_utc_dates() {
    assert_eq!(day_text(T0), "2025-11-28");
    assert_eq!(day_text(T0 + DAY_MS - 1), "2025-11-28");
    assert_eq!(day_start(T0 + DAY_MS - 1), T0);
    assert_eq!(day_start(-1), -DAY_MS);
    assert_eq!(parse_day("2025-11-28"), Some(T0));
    assert_eq!(parse_day("1970-01-01"), Some(0));
    assert_eq!(parse_day("2024-02-29"), Some(1_709_164_800_000));
    assert_eq!(day_text(1_709_164_800_000), "2024-02-29");
    for bad in [
        "2025-02-29",
        "2025-13-01",
        "2025-00-10",
        "2025-04-31",
        "2025-1-01",
        "2025-11-28T00:00:00Z",
        "+025-11-28",
        "2025/11/28",
        "1969-12-31",
        "",
        "２０２５-11-28",
    ] {
        assert_eq!(parse_day(bad), None, "{bad}");
    }
}

proptest! {
    #[test]
    fn day_text_and_parse_day_agree(days in 0i64..2_932_896) {
        let day = days * DAY_MS;
        prop_assert_eq!(parse_day(&day_text(day)), Some(day));
        prop_assert_eq!(day_start(day + 12_345), day);
    }
}

#[test]
fn a_report_is_reduced_to_the_worst_status_per_control() {
    let json = r#"{"schema": "postwarden.report/v1", "findings": [
        {"control": "tls", "client": "thunderbird", "scope": "s", "target": "a", "status": "compliant", "expected": 1, "actual": 1},
        {"control": "tls", "client": "thunderbird", "scope": "s", "target": "b", "status": "failed", "expected": 1, "actual": 0},
        {"control": "tls", "client": "outlook", "scope": "s", "target": "c", "status": "drifted", "expected": 1, "actual": 0},
        {"control": "pw", "client": "outlook", "scope": "s", "target": "c", "status": "repaired", "expected": 1, "actual": 1},
        {"control": "na", "client": "outlook", "scope": "s", "target": "c", "status": "not_applicable", "expected": 1, "actual": null}
    ]}"#;
    assert_eq!(
        report_controls(json).unwrap(),
        vec![
            ("na".to_owned(), Status::NotApplicable),
            ("pw".to_owned(), Status::Repaired),
            ("tls".to_owned(), Status::Failed),
        ]
    );
    let f = report_findings(json).unwrap();
    assert_eq!(f.len(), 5);
    assert_eq!(f[2].client, "outlook");
    assert!(report_controls("{\"findings\": 3}").is_err());
    assert!(report_controls("not json").is_err());
}

#[test]
fn a_day_counts_by_the_live_rules() {
    let stale_after = DAY_MS;
    let end = T0 + DAY_MS; // the moment of day T0
    let mut retired = device("r", "office", T0 - 10 * DAY_MS);
    retired.retired_ms = Some(T0 + 3_600_000);
    let mut replay = Replay::new(
        [
            device("a", "office", T0 - 5 * DAY_MS),
            device("b", "office", T0 - 5 * DAY_MS),
            device("c", "lab", T0 - 5 * DAY_MS),
            // Enrolled after the moment, never reported: not there yet.
            device("later", "office", end + 1),
            // Enrolled before, no report, heard from today: unreported.
            device("quiet", "office", T0 + 1000),
            retired,
        ],
        stale_after,
    );
    // a: two users; the newest report of each counts, by at then id.
    assert!(replay.report(
        "a",
        "alice",
        newest(T0 + 10, "1", &[("tls", Status::Compliant)])
    ));
    assert!(replay.report(
        "a",
        "alice",
        newest(T0 + 20, "2", &[("tls", Status::Drifted)])
    ));
    assert!(
        !replay.report(
            "a",
            "alice",
            newest(T0 + 15, "9", &[("tls", Status::Compliant)])
        ),
        "an older report arriving late changes nothing"
    );
    assert!(replay.report(
        "a",
        "alice",
        newest(T0 + 20, "3", &[("tls", Status::Repaired)])
    ));
    assert!(replay.report(
        "a",
        "bob",
        newest(T0 + 30, "4", &[("tls", Status::PendingRestart)])
    ));
    // b: reported long ago, silent since: stale, never compliant.
    assert!(replay.report(
        "b",
        "alice",
        newest(T0 - 3 * DAY_MS, "5", &[("tls", Status::Compliant)])
    ));
    // c: compliant, and heard from (a heartbeat) today.
    assert!(replay.report(
        "c",
        "carol",
        newest(T0 - 3 * DAY_MS, "6", &[("tls", Status::Compliant)])
    ));
    replay.contact("c", T0 + 5);
    assert!(!replay.report("unknown", "x", newest(T0, "7", &[])));

    let day = replay.counts_at(end);
    assert_eq!(
        day.keys().collect::<Vec<_>>(),
        ["lab", "office"],
        "groups with devices then"
    );
    let office = &day["office"];
    assert_eq!(
        (
            office.devices,
            office.stale_devices,
            office.unreported_devices
        ),
        (3, 1, 1),
        "a, b (stale) and quiet (unreported); not later, not the retired one"
    );
    // a: worst of repaired (alice) and pending restart (bob); b: stale.
    assert_eq!(counts(office, "tls"), (0, 0, 1, 0, 0, 1));
    assert_eq!(counts(&day["lab"], "tls"), (1, 0, 0, 0, 0, 0));
    assert_eq!(day["lab"].controls[0].compliance_percent, Some(100.0));

    // The retired device counted before its retirement.
    let before = replay.counts_at(T0);
    assert_eq!(
        before["office"].devices, 3,
        "a, b, r (quiet enrolled later)"
    );

    // Added up, as the fleet.
    let fleet = add_up(day.values());
    assert_eq!((fleet.devices, fleet.stale_devices), (4, 1));
    assert_eq!(counts(&fleet, "tls"), (1, 0, 1, 0, 0, 1));
    assert_eq!(fleet.controls[0].compliance_percent, Some(33.3));
}

#[test]
fn the_state_between_rollups_is_what_changed() {
    let mut replay = Replay::new([device("a", "g", T0)], DAY_MS);
    replay.report(
        "a",
        "alice",
        newest(T0 + 1, "1", &[("tls", Status::Drifted)]),
    );
    replay.report(
        "a",
        "alice",
        newest(T0 + 2, "2", &[("tls", Status::Compliant)]),
    );
    let changed = replay.take_changed();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].2.item_id, "2");
    assert!(replay.take_changed().is_empty(), "taken");
    let json = changed[0].2.controls_json();
    assert_eq!(json, r#"[["tls","compliant"]]"#);
    assert_eq!(
        Newest::parse_controls(&json).unwrap(),
        changed[0].2.controls
    );
    assert!(Newest::parse_controls("[[1]]").is_err());
}

/// One generated report: (device, user, at, id, control statuses).
type Gen = (usize, usize, i64, u8, Vec<(u8, u8)>);

const STATUSES: [Status; 6] = [
    Status::Compliant,
    Status::Repaired,
    Status::Drifted,
    Status::PendingRestart,
    Status::NotApplicable,
    Status::Failed,
];

fn generated(g: &Gen) -> (String, String, Newest) {
    let (d, u, at, id, controls) = g;
    let controls: Vec<(String, Status)> = controls
        .iter()
        .map(|(c, s)| (format!("c{}", c % 4), STATUSES[usize::from(*s) % 6]))
        .collect();
    (
        format!("d{}", d % 5),
        format!("u{}", u % 2),
        Newest {
            at_ms: T0 + at,
            item_id: format!("{id:03}"),
            controls: reduce(controls.iter().map(|(c, s)| (c.as_str(), *s))),
        },
    )
}

fn devices() -> Vec<DeviceInfo> {
    (0..5)
        .map(|i| DeviceInfo {
            id: format!("d{i}"),
            group: format!("g{}", i % 2),
            enrolled_ms: T0 + i64::from(i) * 3_600_000,
            retired_ms: (i == 4).then_some(T0 + 5 * DAY_MS),
            last_seen_ms: T0,
        })
        .collect()
}

/// The counts computed from scratch at `moment`: per device and user the newest report before
/// it, then the live summary per group.
fn from_scratch(reports: &[Gen], moment: i64, stale_after: i64) -> BTreeMap<String, Summary> {
    let mut newest_of: BTreeMap<(String, String), Newest> = BTreeMap::new();
    for g in reports {
        let (d, u, n) = generated(g);
        if n.at_ms >= moment {
            continue;
        }
        let slot = newest_of.entry((d, u)).or_insert_with(|| n.clone());
        if (n.at_ms, &n.item_id) > (slot.at_ms, &slot.item_id) {
            *slot = n;
        }
    }
    type Present = (String, i64, Vec<(String, Status)>);
    let mut per_group: BTreeMap<String, Vec<Present>> = BTreeMap::new();
    for d in devices() {
        if d.retired_ms.is_some_and(|r| r < moment) {
            continue;
        }
        let mine: Vec<&Newest> = newest_of
            .iter()
            .filter(|((id, _), _)| *id == d.id)
            .map(|(_, n)| n)
            .collect();
        if d.enrolled_ms >= moment && mine.is_empty() {
            continue;
        }
        let contact = [
            Some(d.enrolled_ms).filter(|t| *t < moment),
            Some(d.last_seen_ms).filter(|t| *t < moment),
            mine.iter().map(|n| n.at_ms).max(),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(i64::MIN);
        let findings = mine.iter().flat_map(|n| n.controls.clone()).collect();
        per_group
            .entry(d.group.clone())
            .or_default()
            .push((d.id, contact, findings));
    }
    per_group
        .into_iter()
        .map(|(g, ds)| {
            let s = compliance::summarize(
                ds.iter().map(|(id, c, f)| DeviceFindings {
                    device: id,
                    last_seen_ms: *c,
                    findings: f,
                }),
                moment,
                stale_after,
            );
            (g, s)
        })
        .collect()
}

fn report_strategy() -> impl Strategy<Value = Gen> {
    (
        0usize..5,
        0usize..2,
        0i64..8 * DAY_MS,
        any::<u8>(),
        prop::collection::vec((any::<u8>(), any::<u8>()), 0..5),
    )
}

proptest! {
    /// Replaying day by day, with the state kept between rollups as the store keeps it, gives
    /// every day the counts computed from scratch, whatever the order reports arrive in within
    /// a day.
    #[test]
    fn replay_day_by_day_equals_counting_from_scratch(
        mut reports in prop::collection::vec(report_strategy(), 0..40),
        stale_hours in 1i64..72,
        shuffle_seed in any::<u64>(),
    ) {
        let stale_after = stale_hours * 3_600_000;
        // Any order within a day.
        reports.sort_by_key(|(d, u, at, id, _)| {
            (day_start(*at), (*d as u64 ^ *u as u64 ^ u64::from(*id)).wrapping_mul(shuffle_seed))
        });
        let mut kept: Vec<(String, String, Newest)> = Vec::new();
        for day in 0..8 {
            let start = T0 + day * DAY_MS;
            // A new replay per rollup, restored from what the previous ones kept.
            let mut replay = Replay::new(devices(), stale_after);
            for (d, u, n) in &kept {
                prop_assert!(replay.restore(d, u, n.clone()));
            }
            for g in reports.iter().filter(|g| day_start(T0 + g.2) == start) {
                let (d, u, n) = generated(g);
                replay.report(&d, &u, n);
            }
            let moment = start + DAY_MS;
            prop_assert_eq!(replay.counts_at(moment), from_scratch(&reports, moment, stale_after));
            for (d, u, n) in replay.take_changed() {
                kept.retain(|(kd, ku, _)| (kd, ku) != (&d, &u));
                kept.push((d, u, n));
            }
        }
    }
}

#[test]
fn days_to_roll_are_complete_days_after_a_grace() {
    let grace = 15 * 60_000;
    // Just after midnight, within the grace: yesterday is not rolled up yet.
    assert!(days_to_roll(T0, T0 + DAY_MS + 60_000, grace, 10).is_empty());
    assert_eq!(days_to_roll(T0, T0 + DAY_MS + grace, grace, 10), vec![T0]);
    assert_eq!(
        days_to_roll(T0 + 5, T0 + 3 * DAY_MS + grace, grace, 10),
        vec![T0, T0 + DAY_MS, T0 + 2 * DAY_MS]
    );
    assert_eq!(
        days_to_roll(T0, T0 + 3 * DAY_MS + grace, grace, 2),
        vec![T0, T0 + DAY_MS],
        "at most max_days per run"
    );
}

#[test]
fn retention_never_deletes_what_is_not_rolled_up() {
    let retention = 400 * DAY_MS;
    let now = T0 + 1000 * DAY_MS;
    assert_eq!(raw_cutoff(now, retention, None), None);
    assert_eq!(
        raw_cutoff(now, retention, Some(now - DAY_MS)),
        Some(now - retention)
    );
    // The rollup is behind: only what it counted may go.
    assert_eq!(raw_cutoff(now, retention, Some(T0)), Some(T0));
}

fn key(setting: &str) -> SettingKey {
    SettingKey {
        device: "d".into(),
        user: "alice".into(),
        control: "mail-check-interval".into(),
        client: "thunderbird".into(),
        scope: "/home/alice/.thunderbird/p".into(),
        target: "server1".into(),
        setting: Some(setting.into()),
    }
}

fn event(setting: &str, at_ms: i64, detected: Option<i64>, status: Status) -> RepairEvent {
    RepairEvent {
        key: key(setting),
        at_ms,
        detected_ms: detected,
        status,
        repaired: status == Status::Repaired,
    }
}

#[test]
fn time_to_repair_pairs_drifts_with_their_repairs() {
    let mut t = TimeToRepair::new(T0);
    // Repaired in the pass that saw it: at - detected_at.
    t.event(&event("a", T0 + 1_012, Some(T0 + 1_000), Status::Repaired));
    // Pending a restart, then compliant when Thunderbird restarted: from the first sighting.
    t.event(&event(
        "b",
        T0 + 5_000,
        Some(T0 + 4_990),
        Status::PendingRestart,
    ));
    t.event(&event(
        "b",
        T0 + 6_000,
        Some(T0 + 5_990),
        Status::PendingRestart,
    ));
    t.event(&event(
        "b",
        T0 + 65_000,
        Some(T0 + 64_990),
        Status::Compliant,
    ));
    // Failed, then a later report shows it satisfied.
    t.event(&event("c", T0 + 10_000, None, Status::Failed));
    // Failed and still failing: open.
    t.event(&event("d", T0 + 20_000, Some(T0 + 19_000), Status::Failed));
    // Not applicable any more: ends without a repair.
    t.event(&event("e", T0 + 30_000, Some(T0 + 30_000), Status::Drifted));
    t.event(&event("e", T0 + 31_000, None, Status::NotApplicable));
    // An old agent: repaired, start unknown.
    t.event(&event("f", T0 + 40_000, None, Status::Repaired));
    // A compliant event without an open drift is nothing.
    t.event(&event("g", T0 + 41_000, None, Status::Compliant));
    let open: Vec<&str> = {
        let mut o: Vec<&str> = t
            .open()
            .map(|(k, _)| k.setting.as_deref().unwrap())
            .collect();
        o.sort();
        o
    };
    assert_eq!(open, ["c", "d"]);
    t.finding(&key("c"), T0 + 9_000, Status::Compliant); // before it opened: nothing
    t.finding(&key("d"), T0 + 100_000, Status::Failed);
    t.finding(&key("c"), T0 + 110_000, Status::Compliant);
    let rows = t.finish();
    assert_eq!(
        rows,
        vec![RepairTimes {
            control: "mail-check-interval".into(),
            client: "thunderbird".into(),
            repairs: 3,
            p50_ms: Some(60_010),
            p95_ms: Some(100_000),
            max_ms: Some(100_000),
            open: 1,
            unmeasured: 1,
        }]
    );
}

#[test]
fn repairs_before_the_window_only_open_drifts() {
    let mut t = TimeToRepair::new(T0);
    t.event(&event("a", T0 - 5_000, Some(T0 - 5_010), Status::Repaired));
    t.event(&event(
        "b",
        T0 - 2_000,
        Some(T0 - 2_100),
        Status::PendingRestart,
    ));
    t.event(&event("b", T0 + 3_000, None, Status::Compliant));
    let rows = t.finish();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].repairs, rows[0].p50_ms, rows[0].unmeasured),
        (1, Some(5_100), 0),
        "only b, repaired in the window, counted from before it"
    );
}

#[test]
fn percentiles_are_nearest_rank() {
    let hundred: Vec<i64> = (1..=100).collect();
    assert_eq!(nearest_rank(&hundred, 50), Some(50));
    assert_eq!(nearest_rank(&hundred, 95), Some(95));
    assert_eq!(nearest_rank(&hundred, 100), Some(100));
    assert_eq!(nearest_rank(&[10, 20, 30], 50), Some(20));
    assert_eq!(nearest_rank(&[10, 20, 30], 95), Some(30));
    assert_eq!(nearest_rank(&[7], 95), Some(7));
    assert_eq!(nearest_rank(&[10, 20], 50), Some(10));
    assert_eq!(nearest_rank(&[], 50), None);
}

proptest! {
    /// The nearest-rank percentile is a value of the list with at least p % of the values at
    /// or below it and fewer than p % strictly below it.
    #[test]
    fn nearest_rank_is_the_smallest_value_covering_p_percent(
        mut values in prop::collection::vec(-1_000i64..1_000_000, 1..300),
        p in 1u32..=100,
    ) {
        values.sort_unstable();
        let v = nearest_rank(&values, p).unwrap();
        prop_assert!(values.contains(&v));
        let n = values.len() as u64;
        let at_or_below = values.iter().filter(|x| **x <= v).count() as u64;
        let below = values.iter().filter(|x| **x < v).count() as u64;
        prop_assert!(at_or_below * 100 >= u64::from(p) * n);
        prop_assert!(below * 100 < u64::from(p) * n);
    }

    /// Every repair in the window is counted once: as a measured time or as unmeasured.
    #[test]
    fn every_repair_is_counted_once(
        events in prop::collection::vec((0u8..3, 0i64..100_000, any::<bool>(), 0u8..6), 0..60),
    ) {
        let mut sorted = events.clone();
        sorted.sort_by_key(|e| e.1);
        let mut t = TimeToRepair::new(T0 + 50_000);
        let mut expected = 0u64;
        for (s, at, known, status) in &sorted {
            let status = STATUSES[usize::from(*status)];
            let e = event(&format!("s{s}"), T0 + at, known.then_some(T0 + at - 7), status);
            if e.repaired && e.at_ms >= T0 + 50_000 {
                expected += 1;
            }
            t.event(&e);
        }
        let rows = t.finish();
        let repaired_events: u64 = rows.iter().map(|r| r.repairs + r.unmeasured).sum();
        // Compliant events that close an open drift add repairs beyond the repaired events.
        prop_assert!(repaired_events >= expected);
        for r in &rows {
            prop_assert!(r.p50_ms <= r.p95_ms && r.p95_ms <= r.max_ms);
            prop_assert!(r.p50_ms.is_none_or(|p| p >= 0));
        }
    }
}
