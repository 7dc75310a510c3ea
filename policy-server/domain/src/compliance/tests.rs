use super::*;
use proptest::prelude::*;

fn f(control: &str, s: Status) -> (String, Status) {
    (control.to_owned(), s)
}

fn device<'a>(
    device: &'a str,
    last_seen_ms: i64,
    findings: &'a [(String, Status)],
) -> DeviceFindings<'a> {
    DeviceFindings {
        device,
        last_seen_ms,
        findings,
    }
}

#[test]
fn the_worst_status_counts_and_stale_is_never_compliant() {
    let a = [
        f("tls", Status::Compliant),
        f("tls", Status::Drifted),
        f("pw", Status::Repaired),
    ];
    let b = [f("tls", Status::Compliant), f("pw", Status::NotApplicable)];
    let c = [f("tls", Status::Compliant), f("pw", Status::Compliant)];
    let devices = [
        device("a", 1000, &a),
        device("b", 1000, &b),
        // c was last seen long ago: stale for every control, though its findings say compliant.
        device("c", 10, &c),
        device("d", 1000, &[]),
        // e is stale and never reported: a stale device, not an unreported one.
        device("e", 10, &[]),
    ];
    let s = summarize(devices, 1000, 500);
    assert_eq!(
        (s.devices, s.stale_devices, s.unreported_devices),
        (5, 2, 1)
    );
    assert_eq!(s.controls.len(), 2);
    let pw = &s.controls[0];
    assert_eq!(pw.control, "pw");
    assert_eq!(
        (pw.compliant, pw.not_applicable, pw.stale, pw.non_compliant),
        (1, 1, 1, 0)
    );
    assert_eq!(
        pw.compliance_percent,
        Some(50.0),
        "not applicable is left out"
    );
    let tls = &s.controls[1];
    assert_eq!((tls.compliant, tls.non_compliant, tls.stale), (1, 1, 1));
    assert_eq!(tls.compliance_percent, Some(33.3));
    assert_eq!(
        device_bucket(&devices[0], 1000, 500),
        Some(Bucket::NonCompliant)
    );
    assert_eq!(
        device_bucket(&devices[1], 1000, 500),
        Some(Bucket::Compliant)
    );
    assert_eq!(device_bucket(&devices[2], 1000, 500), Some(Bucket::Stale));
    assert_eq!(device_bucket(&devices[3], 1000, 500), None);
    assert_eq!(device_bucket(&devices[4], 1000, 500), Some(Bucket::Stale));
}

#[test]
fn the_summary_serializes_with_the_issues_names() {
    let a = [f("require-tls", Status::PendingRestart)];
    let s = summarize([device("a", 5, &a)], 5, 1);
    assert_eq!(
        serde_json::to_string(&s).unwrap(),
        r#"{"devices":1,"stale_devices":0,"unreported_devices":0,"controls":[{"control":"require-tls","compliant":0,"non_compliant":0,"pending_restart":1,"not_applicable":0,"error":0,"stale":0,"compliance_percent":0.0}]}"#
    );
    let na = [f("x", Status::NotApplicable)];
    let s = summarize([device("a", 5, &na)], 5, 1);
    assert_eq!(s.controls[0].compliance_percent, None, "nothing counts");
    assert!(serde_json::to_string(&s)
        .unwrap()
        .contains("\"compliance_percent\":null"));
    let empty = summarize(std::iter::empty(), 0, 0);
    assert_eq!(empty, Summary::default());
}

#[test]
fn every_status_has_its_bucket() {
    for (status, expected) in [
        (Status::Compliant, Bucket::Compliant),
        (Status::Repaired, Bucket::Compliant),
        (Status::Drifted, Bucket::NonCompliant),
        (Status::Failed, Bucket::Error),
        (Status::PendingRestart, Bucket::PendingRestart),
        (Status::NotApplicable, Bucket::NotApplicable),
    ] {
        assert_eq!(bucket(status), expected, "{status:?}");
    }
}

#[test]
fn buckets_order_from_best_to_worst_and_have_their_names() {
    let mut sorted = Bucket::ALL;
    sorted.sort();
    assert_eq!(sorted, Bucket::ALL);
    assert_eq!(
        Bucket::ALL.map(Bucket::as_str),
        [
            "not_applicable",
            "compliant",
            "pending_restart",
            "non_compliant",
            "error",
            "stale"
        ]
    );
    for b in Bucket::ALL {
        assert_eq!(serde_json::to_value(b).unwrap(), b.as_str());
        assert_eq!(Bucket::parse(b.as_str()), Some(b));
    }
    assert_eq!(Bucket::parse("Compliant"), None);
    assert_eq!(Bucket::parse("unreported"), None);
    assert_eq!(Bucket::parse(""), None);
}

#[test]
fn stale_is_strictly_older_than_the_limit() {
    assert!(!is_stale(500, 1000, 500), "exactly at the limit is fresh");
    assert!(is_stale(499, 1000, 500));
    assert!(!is_stale(2000, 1000, 500), "a clock ahead is fresh");
    assert!(is_stale(999, 1000, -5), "a negative limit counts as 0");
    assert!(!is_stale(1000, 1000, -5));
    assert!(!is_stale(i64::MIN, i64::MIN, i64::MAX), "no overflow");
    assert!(is_stale(i64::MIN, i64::MAX, 0));
}

#[test]
fn percentages_round_to_a_tenth() {
    let ok = [f("c", Status::Compliant)];
    let bad = [f("c", Status::Failed)];
    let s = summarize(
        [
            device("a", 0, &ok),
            device("b", 0, &ok),
            device("c", 0, &bad),
        ],
        0,
        10,
    );
    assert_eq!(s.controls[0].compliance_percent, Some(66.7));
    let s = summarize([device("a", 0, &ok)], 0, 10);
    assert_eq!(s.controls[0].compliance_percent, Some(100.0));
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Compliant),
        Just(Status::Repaired),
        Just(Status::Drifted),
        Just(Status::PendingRestart),
        Just(Status::NotApplicable),
        Just(Status::Failed),
    ]
}

/// How bad a status is, written out independently of `Bucket`'s order.
fn badness(s: Status) -> u8 {
    match s {
        Status::NotApplicable => 0,
        Status::Compliant | Status::Repaired => 1,
        Status::PendingRestart => 2,
        Status::Drifted => 3,
        Status::Failed => 4,
    }
}

proptest! {
    #[test]
    fn each_device_counts_once_per_control_by_its_worst_finding(
        fleet in proptest::collection::vec(
            (0i64..2000, proptest::collection::vec((0usize..4, status()), 0..8)), 0..30)
    ) {
        let (now, limit) = (2000, 1000);
        let findings: Vec<Vec<(String, Status)>> = fleet
            .iter()
            .map(|(_, fs)| fs.iter().map(|(c, s)| (format!("c{c}"), *s)).collect())
            .collect();
        let devices: Vec<DeviceFindings> = fleet
            .iter()
            .zip(&findings)
            .map(|((seen, _), fs)| device("d", *seen, fs))
            .collect();
        let s = summarize(devices.iter().copied(), now, limit);
        prop_assert_eq!(s.devices, fleet.len() as u64);
        let stale = fleet.iter().filter(|(seen, _)| *seen < now - limit).count() as u64;
        let unreported = fleet
            .iter()
            .filter(|(seen, fs)| *seen >= now - limit && fs.is_empty())
            .count() as u64;
        prop_assert_eq!((s.stale_devices, s.unreported_devices), (stale, unreported));
        let mut ids: Vec<&String> = findings.iter().flatten().map(|(c, _)| c).collect();
        ids.sort();
        ids.dedup();
        prop_assert_eq!(s.controls.iter().map(|c| &c.control).collect::<Vec<_>>(), ids);
        for c in &s.controls {
            // The counts sum to the number of devices with findings for the control.
            let with: Vec<usize> = (0..fleet.len())
                .filter(|i| findings[*i].iter().any(|(x, _)| *x == c.control))
                .collect();
            prop_assert_eq!(c.total(), with.len() as u64);
            // Each bucket holds the devices whose worst finding falls in it; stale ones apart.
            let mut expected = [0u64; 6];
            for i in with {
                let slot = if fleet[i].0 < now - limit {
                    5
                } else {
                    let worst = findings[i]
                        .iter()
                        .filter(|(x, _)| *x == c.control)
                        .map(|(_, st)| badness(*st))
                        .max()
                        .unwrap_or(0);
                    usize::from(worst)
                };
                expected[slot] += 1;
            }
            prop_assert_eq!(
                [c.not_applicable, c.compliant, c.pending_restart, c.non_compliant, c.error, c.stale],
                expected
            );
            match c.compliance_percent {
                Some(p) => {
                    prop_assert!((0.0..=100.0).contains(&p));
                    let counted = c.total() - c.not_applicable;
                    let exact = c.compliant as f64 * 100.0 / counted as f64;
                    prop_assert!((p - exact).abs() <= 0.05 + 1e-9, "{} vs {}", p, exact);
                }
                None => prop_assert_eq!(c.total(), c.not_applicable),
            }
        }
        for d in &devices {
            let b = device_bucket(d, now, limit);
            if d.last_seen_ms < now - limit {
                prop_assert_eq!(b, Some(Bucket::Stale));
            } else {
                prop_assert_eq!(b, d.findings.iter().map(|(_, st)| bucket(*st)).max());
            }
        }
    }
}
