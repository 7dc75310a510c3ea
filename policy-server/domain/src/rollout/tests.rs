use super::*;
use proptest::prelude::*;

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn rings(p: &[u64]) -> Rings {
    Rings::new("rings", p).unwrap()
}

/// The bucket is a contract: every replica and every version of the server must put a device
/// in the same ring.
#[test]
fn buckets_are_pinned() {
    assert_eq!(bucket("dev_aaaaaaaaaaaaaaaaaaaaaaaaaa"), {
        let d = Sha256::digest(b"postwarden.rollout-ring/v1\0dev_aaaaaaaaaaaaaaaaaaaaaaaaaa");
        u64::from_be_bytes(d[..8].try_into().unwrap()) % 10_000
    });
    // Independently computed (Python: int.from_bytes(sha256(b"postwarden.rollout-ring/v1\0"
    // + b"dev_x").digest()[:8], "big") % 10000).
    assert_eq!(bucket("dev_x"), 438);
    assert_eq!(bucket(""), 6_697);
}

#[test]
fn ring_membership_follows_the_bucket() {
    let b = bucket("dev_x");
    let edge = u8::try_from(b / 100).unwrap();
    assert!(!in_ring("dev_x", edge), "bucket {b} is not below {edge} %");
    assert!(
        in_ring("dev_x", edge + 1),
        "bucket {b} is below {} %",
        edge + 1
    );
    assert!(!in_ring("dev_x", 0));
    assert!(in_ring("dev_x", 100));
    assert!(in_ring("dev_x", 255), "beyond 100 is every device");
}

#[test]
fn about_the_ring_percentage_of_many_devices_is_in_the_ring() {
    let ids: Vec<String> = (0..20_000).map(|i| format!("dev_{i:026}")).collect();
    for p in [1u8, 5, 25, 50] {
        let n = ids.iter().filter(|d| in_ring(d, p)).count();
        let expected = 20_000 * usize::from(p) / 100;
        let slack = expected / 5 + 20;
        assert!(
            n.abs_diff(expected) <= slack,
            "{p} %: {n} of 20000 devices, expected about {expected}"
        );
    }
}

proptest! {
    /// Rings are nested: a device in a smaller ring is in every larger one.
    #[test]
    fn rings_are_nested(device in "dev_[a-z2-7]{26}", a in 0u8..=100, b in 0u8..=100) {
        let (small, large) = (a.min(b), a.max(b));
        if in_ring(&device, small) {
            prop_assert!(in_ring(&device, large));
        }
        prop_assert!(bucket(&device) < BUCKETS);
        prop_assert_eq!(bucket(&device), bucket(&device.clone()));
    }

    /// Any increasing schedule ending at 100 is accepted and survives its stored form.
    #[test]
    fn valid_schedules_round_trip(mut ps in proptest::collection::btree_set(1u64..100, 0..9)) {
        ps.insert(100);
        let list: Vec<u64> = ps.into_iter().collect();
        let r = Rings::new("rings", &list).unwrap();
        prop_assert_eq!(Rings::from_json(&r.to_json()).unwrap(), r.clone());
        prop_assert_eq!(r.percents().iter().map(|p| u64::from(*p)).collect::<Vec<_>>(), list);
    }

    /// A failure more never turns a halt into "healthy", and a device more that took the
    /// candidate without failing never turns "healthy" into a halt.
    #[test]
    fn more_failures_never_undo_a_halt(
        n in 1usize..40, failed in 0usize..40, refused in 0usize..40, percent in 0u8..=100,
    ) {
        let ids: Vec<String> = (0..n).map(|i| format!("d{i:02}")).collect();
        let mut h = Health {
            targeted: ids.iter().cloned().collect(),
            updated: ids.iter().cloned().collect(),
            failed: ids.iter().take(failed.min(n)).cloned().collect(),
            refused: ids.iter().rev().take(refused.min(n)).cloned().collect(),
        };
        let t = Thresholds { max_failed_percent: Some(percent), max_failed_devices: None };
        let before = judge(&h, &t, "p v2").is_some();
        if let Some(next) = ids.iter().find(|d| !h.failed.contains(*d)) {
            h.failed.insert(next.clone());
            prop_assert!(!before || judge(&h, &t, "p v2").is_some());
        }
        let c = h.counts();
        prop_assert!(c.bad <= c.base && c.base <= c.targeted);
        let healthy = judge(&h, &t, "p v2").is_none();
        h.targeted.insert("zz-fine".into());
        h.updated.insert("zz-fine".into());
        prop_assert!(!healthy || judge(&h, &t, "p v2").is_none());
    }
}

#[test]
fn schedules_are_checked_and_errors_name_the_ring() {
    let err = |p: &[u64]| Rings::new("rings", p).unwrap_err();
    assert_eq!(rings(&[5, 25, 100]).percents(), &[5, 25, 100]);
    assert_eq!(rings(&[100]).len(), 1);
    let e = err(&[]);
    assert_eq!(e.field.as_deref(), Some("rings"));
    let e = err(&[5, 5, 100]);
    assert_eq!(e.field.as_deref(), Some("rings[1]"));
    assert!(
        e.message.contains("larger than the ring before it (5 %)"),
        "{e}"
    );
    let e = err(&[25, 5, 100]);
    assert_eq!(e.field.as_deref(), Some("rings[1]"));
    let e = err(&[5, 25]);
    assert_eq!(e.field.as_deref(), Some("rings[1]"));
    assert!(e.message.contains("last ring must be 100"), "{e}");
    let e = err(&[0, 100]);
    assert_eq!(e.field.as_deref(), Some("rings[0]"));
    let e = err(&[5, 101]);
    assert_eq!(e.field.as_deref(), Some("rings[1]"));
    let e = err(&[5, 300, 100]);
    assert_eq!(e.field.as_deref(), Some("rings[1]"));
    let e = err(&(1..=11).map(|i| i * 9 + 1).collect::<Vec<_>>());
    assert_eq!(e.field.as_deref(), Some("rings"));
    assert!(Rings::from_json("[5, 2]").is_err());
    assert!(Rings::from_json("nope").is_err());
}

#[test]
fn states_have_stable_names() {
    for s in State::ALL {
        assert_eq!(State::parse(s.as_str()), Some(s));
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::json!(s.as_str())
        );
    }
    assert_eq!(State::parse("paused"), None);
    let active: Vec<State> = State::ALL.into_iter().filter(|s| s.is_active()).collect();
    assert_eq!(active, [State::Previewing, State::Rolling, State::Halted]);
    assert!(State::Rolling.can_halt());
    assert!(!State::Halted.can_halt() && !State::Previewing.can_halt());
    assert!(State::Completed.can_roll_back() && !State::RolledBack.can_roll_back());
}

#[test]
fn stage_tags_round_trip_and_refuse_anything_else() {
    for (state, ring) in [
        (State::Previewing, None),
        (State::Rolling, Some(0)),
        (State::Halted, Some(9)),
        (State::RolledBack, Some(2)),
    ] {
        let tag = stage_tag(state, ring);
        assert_eq!(parse_stage_tag(&tag), Some((state, ring)), "{tag}");
    }
    assert_eq!(stage_tag(State::Rolling, Some(1)), "rolling.1");
    assert_eq!(stage_tag(State::Previewing, None), "previewing.-");
    for bad in [
        "",
        "rolling",
        "rolling.",
        "rolling.x",
        "rolling.-1",
        "paused.1",
        "rolling.123",
    ] {
        assert_eq!(parse_stage_tag(bad), None, "{bad}");
    }
}

#[test]
fn promotion_walks_the_rings_then_completes() {
    let r = rings(&[5, 25, 100]);
    assert_eq!(next_step(State::Previewing, None, &r), Ok(Step::Ring(0)));
    assert_eq!(next_step(State::Rolling, Some(0), &r), Ok(Step::Ring(1)));
    assert_eq!(next_step(State::Rolling, Some(1), &r), Ok(Step::Ring(2)));
    assert_eq!(next_step(State::Rolling, Some(2), &r), Ok(Step::Complete));
    for s in [State::Halted, State::Completed, State::RolledBack] {
        assert_eq!(next_step(s, Some(1), &r), Err(s));
    }
}

#[test]
fn automatic_promotion_waits_for_the_soak() {
    assert!(!promote_due(State::Rolling, true, Some(1000), 500, 1499));
    assert!(promote_due(State::Rolling, true, Some(1000), 500, 1500));
    assert!(!promote_due(State::Rolling, false, Some(1000), 500, 9999));
    assert!(!promote_due(State::Previewing, true, Some(1000), 0, 9999));
    assert!(!promote_due(State::Halted, true, Some(1000), 0, 9999));
    assert!(!promote_due(State::Rolling, true, None, 0, 9999));
    assert_eq!(promote_at(i64::MAX - 1, 10), i64::MAX);
}

#[test]
fn devices_are_served_by_state_and_ring() {
    // Find one device inside a 50 % ring and one outside.
    let ids: Vec<String> = (0..100).map(|i| format!("dev_{i}")).collect();
    let inside = ids.iter().find(|d| in_ring(d, 50)).unwrap();
    let outside = ids.iter().find(|d| !in_ring(d, 50)).unwrap();
    let s = |d: &str, st, p| {
        let x = serve(d, st, p);
        (x.candidate, x.preview)
    };
    assert_eq!(s(inside, State::Previewing, None), (false, true));
    assert_eq!(s(outside, State::Previewing, None), (false, true));
    assert_eq!(s(inside, State::Rolling, Some(50)), (true, false));
    assert_eq!(s(outside, State::Rolling, Some(50)), (false, true));
    assert_eq!(s(inside, State::Halted, Some(50)), (true, false));
    assert_eq!(s(outside, State::Halted, Some(50)), (false, false));
    for st in [State::Completed, State::RolledBack] {
        assert_eq!(s(inside, st, Some(50)), (false, false));
    }
}

#[test]
fn thresholds_default_to_ten_percent_and_are_bounded() {
    assert_eq!(
        Thresholds::new(None, None).unwrap(),
        Thresholds {
            max_failed_percent: Some(10),
            max_failed_devices: None
        }
    );
    assert_eq!(
        Thresholds::new(None, Some(3)).unwrap(),
        Thresholds {
            max_failed_percent: None,
            max_failed_devices: Some(3)
        }
    );
    let e = Thresholds::new(Some(101), None).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("max_failed_percent"));
    let e = Thresholds::new(None, Some(MAX_THRESHOLD_DEVICES + 1)).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("max_failed_devices"));
    assert_eq!(check_soak("soak_s", 5000), Ok(5000));
    assert!(check_soak("soak_s", u64::MAX).is_err());
    assert!(check_reason("reason", "bad TLS").is_ok());
    for bad in ["", "  ", "a\u{0}b", "a\u{202e}b"] {
        assert!(check_reason("reason", bad).is_err(), "{bad:?}");
    }
    assert!(check_reason("reason", &"x".repeat(MAX_REASON_LEN + 1)).is_err());
    assert!(check_id("id", "rol_abcdefghijklmnopqrstuvwxyz").is_ok());
    for bad in [
        "rol_",
        "dev_abcdefghijklmnopqrstuvwxyz",
        "rol_ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    ] {
        assert!(check_id("id", bad).is_err(), "{bad}");
    }
}

fn health(targeted: &[&str], updated: &[&str], failed: &[&str], refused: &[&str]) -> Health {
    Health {
        targeted: set(targeted),
        updated: set(updated),
        failed: set(failed),
        refused: set(refused),
    }
}

#[test]
fn a_halt_needs_more_failures_than_the_threshold_and_says_why() {
    let pct = |p| Thresholds {
        max_failed_percent: Some(p),
        max_failed_devices: None,
    };
    let ten = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    // 1 of 10 is 10 %: not above 10 %.
    let h = health(&ten, &ten, &["a"], &[]);
    assert_eq!(judge(&h, &pct(10), "p v2"), None);
    // 2 of 10 is above.
    let h = health(&ten, &ten, &["a", "b"], &[]);
    let reason = judge(&h, &pct(10), "p v2").unwrap();
    assert_eq!(
        reason,
        "2 of 10 devices that received p v2 failed or refused it (20.0 %), above the limit of \
         10 %: 2 with failed findings, 0 refused the bundle (a, b)"
    );
    // A refusal counts too, and the refusing device joins the base.
    let h = health(&ten, &ten[..9], &[], &["j"]);
    assert_eq!(h.counts().base, 10);
    assert_eq!(judge(&h, &pct(10), "p v2"), None);
    let h = health(&ten, &ten[..8], &["a"], &["j"]);
    let reason = judge(&h, &pct(10), "p v2").unwrap();
    assert!(
        reason.contains("1 with failed findings, 1 refused the bundle (a, j)"),
        "{reason}"
    );
    // 0 %: any failure halts; nothing failing never halts.
    assert!(judge(&health(&ten, &ten, &["c"], &[]), &pct(0), "p v2").is_some());
    assert_eq!(judge(&health(&ten, &ten, &[], &[]), &pct(0), "p v2"), None);
    // Devices outside the ring do not count.
    let h = health(&["a"], &["a", "x"], &["x", "y"], &["z"]);
    assert_eq!(h.counts().bad, 0);
    assert_eq!(judge(&h, &pct(0), "p v2"), None);
    // An absolute limit: more than 2 devices.
    let abs = Thresholds {
        max_failed_percent: None,
        max_failed_devices: Some(2),
    };
    assert_eq!(
        judge(&health(&ten, &ten, &["a", "b"], &[]), &abs, "p v2"),
        None
    );
    let reason = judge(&health(&ten, &ten, &["a", "b", "c"], &[]), &abs, "p v2").unwrap();
    assert!(reason.contains("above the limit of 2 devices"), "{reason}");
    // Many failing devices: five are named.
    let reason = judge(&health(&ten, &ten, &ten, &[]), &pct(10), "p v2").unwrap();
    assert!(reason.ends_with("(a, b, c, d, e and 5 more)"), "{reason}");
}

fn pf<'a>(
    device: &'a str,
    control: &'a str,
    setting: &'a str,
    status: Status,
) -> PreviewFinding<'a> {
    PreviewFinding {
        device,
        control,
        client: "thunderbird",
        setting: Some(setting),
        status,
        expected: "15",
    }
}

#[test]
fn the_impact_counts_devices_per_setting() {
    let findings = vec![
        pf("d1", "mail-check-interval", "check_time", Status::Drifted),
        pf("d2", "mail-check-interval", "check_time", Status::Drifted),
        pf("d2", "mail-check-interval", "check_time", Status::Drifted),
        pf("d3", "mail-check-interval", "check_time", Status::Compliant),
        pf("d3", "require-tls", "socketType", Status::Failed),
        pf("d4", "reply-address", "reply_to", Status::Drifted),
        pf("d5", "require-tls", "socketType", Status::NotApplicable),
    ];
    let audit = set(&["reply-address"]);
    let i = impact(5, findings, &audit, 100, 100);
    assert_eq!((i.evaluated, i.changing, i.failing), (5, 2, 1));
    assert_eq!(i.devices, ["d1", "d2", "d3"]);
    let rows: Vec<(&str, &str, u64, u64)> = i
        .settings
        .iter()
        .map(|s| (s.control.as_str(), s.mode, s.devices, s.failing))
        .collect();
    assert_eq!(
        rows,
        [
            ("mail-check-interval", "enforce", 2, 0),
            ("reply-address", "audit", 1, 0),
            ("require-tls", "enforce", 0, 1),
        ]
    );
    assert_eq!(i.settings[0].expected.as_deref(), Some("15"));
    // Limits cut the lists, not the counts.
    let again = vec![
        pf("d1", "a", "x", Status::Drifted),
        pf("d2", "b", "y", Status::Drifted),
        pf("d3", "c", "z", Status::Drifted),
    ];
    let i = impact(3, again, &BTreeSet::new(), 2, 1);
    assert_eq!((i.changing, i.settings.len(), i.devices.len()), (3, 2, 1));
    // Differing expected values (templates) are not shown as one.
    let mut a = pf("d1", "reply-address", "reply_to", Status::Drifted);
    a.expected = "\"a@x\"";
    let mut b = pf("d2", "reply-address", "reply_to", Status::Drifted);
    b.expected = "\"b@x\"";
    let i = impact(2, vec![a, b], &BTreeSet::new(), 10, 10);
    assert_eq!(i.settings[0].expected, None);
    assert_eq!(
        impact(0, Vec::new(), &BTreeSet::new(), 10, 10),
        Impact::default()
    );
}
