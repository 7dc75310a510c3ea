use super::*;

/// An in-memory store: a map of named settings. `sticky` makes writes silently not stick;
/// `refuse` makes the store report a failure for that location; `running` marks every write
/// as not yet loaded by the client.
#[derive(Default)]
struct Memory {
    values: BTreeMap<String, Observation>,
    writes: Vec<Action<String>>,
    sticky: bool,
    refuse: Option<String>,
    running: bool,
    /// Stop the apply with an error after this many writes (a disk that filled up).
    stop_after: Option<usize>,
}

impl Store for Memory {
    type Location = String;
    type Error = String;

    fn observe(&mut self, locations: &[String]) -> Result<Observed<String>, Self::Error> {
        Ok(locations
            .iter()
            .map(|l| {
                (
                    l.clone(),
                    self.values
                        .get(l)
                        .cloned()
                        .unwrap_or(Observation::new(Value::Absent)),
                )
            })
            .collect())
    }

    fn apply(&mut self, plan: &Plan<String>) -> Result<Failures<String>, Self::Error> {
        let mut failures = Failures::new();
        for a in &plan.actions {
            if self.stop_after == Some(self.writes.len()) {
                return Err("writing b: no space left on device".to_owned());
            }
            self.writes.push(a.clone());
            if self.refuse.as_ref() == Some(&a.location) {
                failures.insert(a.location.clone(), Failure::value("permission denied"));
                continue;
            }
            if !self.sticky {
                self.values.insert(
                    a.location.clone(),
                    Observation {
                        value: a.value.clone(),
                        locked: a.lock,
                        stale: self.running,
                        overridden_by: None,
                    },
                );
            }
        }
        Ok(failures)
    }
}

fn want(loc: &str, expect: Expect, mode: Mode) -> Desired<String> {
    Desired {
        control: "c",
        client: Client::Thunderbird,
        scope: "p".into(),
        target: "t".into(),
        location: loc.into(),
        expect,
        mode,
        note: None,
    }
}

fn store(pairs: &[(&str, Value)]) -> Memory {
    Memory {
        values: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Observation::new(v.clone())))
            .collect(),
        ..Memory::default()
    }
}

fn statuses(f: &[Finding]) -> Vec<Status> {
    f.iter().map(|f| f.status).collect()
}

#[test]
fn check_never_writes_and_reports_drift() {
    let mut s = store(&[("a", Value::Int(5)), ("b", Value::Int(30))]);
    let d = [
        want("a", Expect::Equals(Value::Int(30)), Mode::Enforce),
        want("b", Expect::Equals(Value::Int(30)), Mode::Enforce),
    ];
    let f = reconcile(&mut s, RunKind::Check, &d, &[]).unwrap().findings;
    assert_eq!(statuses(&f), [Status::Drifted, Status::Compliant]);
    assert!(s.writes.is_empty());
    assert_eq!(f[0].expected, json!(30));
    assert_eq!(f[0].actual, json!(5));
}

#[test]
fn audit_mode_never_writes_even_on_apply() {
    let mut s = store(&[("a", Value::Int(5))]);
    let d = [want("a", Expect::Equals(Value::Int(30)), Mode::Audit)];
    let f = reconcile(&mut s, RunKind::Apply, &d, &[]).unwrap().findings;
    assert_eq!(statuses(&f), [Status::Drifted]);
    assert!(s.writes.is_empty());
}

#[test]
fn apply_repairs_and_records_the_previous_value() {
    let mut s = store(&[("a", Value::Int(5))]);
    let d = [want("a", Expect::Equals(Value::Int(30)), Mode::Enforce)];
    let f = reconcile(&mut s, RunKind::Apply, &d, &[]).unwrap().findings;
    assert_eq!(statuses(&f), [Status::Repaired]);
    assert_eq!(f[0].previous, Some(json!(5)));
    assert_eq!(f[0].actual, json!(30));
}

#[test]
fn a_write_that_does_not_stick_is_a_failure() {
    let mut s = store(&[("a", Value::Int(5))]);
    s.sticky = true;
    let d = [want("a", Expect::Equals(Value::Int(30)), Mode::Enforce)];
    let f = reconcile(&mut s, RunKind::Apply, &d, &[]).unwrap().findings;
    assert_eq!(statuses(&f), [Status::Failed]);
    assert_eq!(
        f[0].reason.as_deref(),
        Some("the change did not take effect: read back 5")
    );
}

#[test]
fn store_failures_carry_their_reason() {
    let mut s = store(&[("a", Value::Int(5)), ("b", Value::Int(5))]);
    s.refuse = Some("a".into());
    let d = [
        want("a", Expect::Equals(Value::Int(30)), Mode::Enforce),
        want("b", Expect::Equals(Value::Int(30)), Mode::Enforce),
    ];
    let f = reconcile(&mut s, RunKind::Apply, &d, &[]).unwrap().findings;
    assert_eq!(statuses(&f), [Status::Failed, Status::Repaired]);
    assert_eq!(f[0].reason.as_deref(), Some("permission denied"));
}

#[test]
fn a_lock_failure_fails_only_the_lock() {
    struct NoLock(Memory);
    impl Store for NoLock {
        type Location = String;
        type Error = String;
        fn observe(&mut self, l: &[String]) -> Result<Observed<String>, Self::Error> {
            self.0.observe(l)
        }
        fn apply(&mut self, plan: &Plan<String>) -> Result<Failures<String>, Self::Error> {
            let unlocked = Plan {
                actions: plan
                    .actions
                    .iter()
                    .map(|a| Action {
                        lock: false,
                        ..a.clone()
                    })
                    .collect(),
            };
            self.0.apply(&unlocked)?;
            Ok(plan
                .actions
                .iter()
                .map(|a| {
                    (
                        a.location.clone(),
                        Failure::lock("shared with another user"),
                    )
                })
                .collect())
        }
    }
    let mut s = NoLock(store(&[("a", Value::Int(5))]));
    let d = [
        want("a", Expect::Equals(Value::Int(30)), Mode::Enforce),
        want("a", Expect::Locked, Mode::Enforce),
    ];
    let f = reconcile(&mut s, RunKind::Apply, &d, &[]).unwrap().findings;
    assert_eq!(statuses(&f), [Status::Repaired, Status::Failed]);
    assert_eq!(f[1].reason.as_deref(), Some("shared with another user"));
}

#[test]
fn writes_a_running_client_has_not_loaded_are_pending_restart() {
    let mut s = store(&[("a", Value::Int(5))]);
    s.running = true;
    let d = [want("a", Expect::Equals(Value::Int(30)), Mode::Enforce)];
    let f = reconcile(&mut s, RunKind::Apply, &d, &[]).unwrap().findings;
    assert_eq!(statuses(&f), [Status::PendingRestart]);
    // And a later check still says so, instead of calling it compliant.
    let f = reconcile(&mut s, RunKind::Check, &d, &[]).unwrap().findings;
    assert_eq!(statuses(&f), [Status::PendingRestart]);
}

#[test]
fn one_of_accepts_any_and_repairs_to_the_chosen_value() {
    let accepted = vec![Value::Int(2), Value::Int(3)];
    let d = [
        want(
            "ok",
            Expect::OneOf {
                accepted: accepted.clone(),
                repair: Value::Int(3),
            },
            Mode::Enforce,
        ),
        want(
            "bad",
            Expect::OneOf {
                accepted,
                repair: Value::Int(2),
            },
            Mode::Enforce,
        ),
    ];
    let mut s = store(&[("ok", Value::Int(2)), ("bad", Value::Int(0))]);
    let f = reconcile(&mut s, RunKind::Apply, &d, &[]).unwrap().findings;
    assert_eq!(statuses(&f), [Status::Compliant, Status::Repaired]);
    assert_eq!(s.writes.len(), 1);
    assert_eq!(s.writes[0].value, Value::Int(2));
    assert_eq!(f[0].expected, json!({"one_of": [2, 3]}));
}

#[test]
fn a_lock_only_action_locks_the_value_in_force() {
    let mut s = store(&[("a", Value::Int(30))]);
    let d = [
        want("a", Expect::Equals(Value::Int(30)), Mode::Enforce),
        want("a", Expect::Locked, Mode::Enforce),
    ];
    let p = plan(&d, &s.observe(&["a".into()]).unwrap());
    assert_eq!(
        p.actions,
        [Action {
            location: "a".to_string(),
            value: Value::Int(30),
            lock: true
        }]
    );
    let f = reconcile(&mut s, RunKind::Apply, &d, &[]).unwrap().findings;
    assert_eq!(statuses(&f), [Status::Compliant, Status::Repaired]);
    assert_eq!(f[1].expected, json!("locked"));
    assert_eq!(f[1].actual, json!("locked"));
}

#[test]
fn a_value_repair_is_locked_when_a_lock_is_wanted() {
    let mut s = store(&[("a", Value::Int(5))]);
    s.values.get_mut("a").unwrap().locked = true;
    let d = [
        want("a", Expect::Equals(Value::Int(30)), Mode::Enforce),
        want("a", Expect::Locked, Mode::Enforce),
    ];
    let p = plan(&d, &s.observe(&["a".into()]).unwrap());
    assert!(
        p.actions[0].lock,
        "an already locked wrong value is relocked at the new value"
    );
}

#[test]
fn absent_expectation_removes() {
    let mut s = store(&[("pw", Value::Redacted("2 stored".into()))]);
    let d = [want("pw", Expect::Absent, Mode::Enforce)];
    let f = reconcile(&mut s, RunKind::Apply, &d, &[]).unwrap().findings;
    assert_eq!(s.writes[0].value, Value::Absent);
    assert_eq!(statuses(&f), [Status::Repaired]);
    assert_eq!(f[0].previous, Some(json!("<redacted: 2 stored>")));
    assert_eq!(f[0].expected, Json::Null);
}

#[test]
fn not_applicable_is_never_compliant() {
    let mut s = store(&[]);
    let na = [NotApplicable {
        control: "blocked-attachment-types",
        client: Client::Thunderbird,
        scope: "p".into(),
        target: "profile".into(),
        reason: "no such setting".into(),
    }];
    let f = reconcile(&mut s, RunKind::Apply, &[], &na)
        .unwrap()
        .findings;
    assert_eq!(statuses(&f), [Status::NotApplicable]);
    assert_eq!(f[0].reason.as_deref(), Some("no such setting"));
}

#[test]
fn an_apply_that_stops_part_way_reports_what_landed_and_what_failed() {
    let mut s = store(&[("a", Value::Int(1)), ("b", Value::Int(1))]);
    s.stop_after = Some(1);
    let desired = [
        want("a", Expect::Equals(Value::Int(2)), Mode::Enforce),
        want("b", Expect::Equals(Value::Int(2)), Mode::Enforce),
    ];
    let f = reconcile(&mut s, RunKind::Apply, &desired, &[])
        .unwrap()
        .findings;
    assert_eq!(statuses(&f), [Status::Repaired, Status::Failed]);
    let reason = f[1].reason.as_deref().unwrap();
    assert_eq!(
        reason,
        "the repair stopped part-way: writing b: no space left on device"
    );
}

fn overridden(value: Value) -> Observation {
    Observation {
        overridden_by: Some(Override {
            layer: "Group Policy".into(),
            location: r"HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Options".into(),
            evidence: "sets 10".into(),
            fix: "change the GPO".into(),
        }),
        locked: true,
        ..Observation::new(value)
    }
}

#[test]
fn an_overriding_layer_is_never_fought_and_never_compliant_when_wrong() {
    for (run, mode) in [
        (RunKind::Check, Mode::Enforce),
        (RunKind::Apply, Mode::Enforce),
        (RunKind::Apply, Mode::Audit),
    ] {
        let mut s = store(&[]);
        s.values.insert("a".into(), overridden(Value::Int(10)));
        let d = [
            want("a", Expect::Equals(Value::Int(30)), mode),
            want("a", Expect::Locked, mode),
        ];
        let f = reconcile(&mut s, run, &d, &[]).unwrap().findings;
        assert!(
            s.writes.is_empty(),
            "{run:?} {mode:?}: wrote {:?}",
            s.writes
        );
        // The value is wrong: failed, naming the layer. The lock is the layer's: compliant.
        assert_eq!(statuses(&f), [Status::Failed, Status::Compliant]);
        let o = f[0].overridden_by.as_ref().expect("the layer is named");
        assert_eq!(o.layer, "Group Policy");
        assert!(f[0].reason.as_deref().unwrap().contains("does not own"));
    }
}

#[test]
fn an_overriding_layer_with_the_right_value_is_compliant_and_named() {
    let mut s = store(&[("b", Value::Int(1))]);
    s.values.insert("a".into(), overridden(Value::Int(30)));
    let d = [
        want("a", Expect::Equals(Value::Int(30)), Mode::Enforce),
        want("b", Expect::Equals(Value::Int(30)), Mode::Enforce),
    ];
    let f = reconcile(&mut s, RunKind::Apply, &d, &[]).unwrap().findings;
    assert_eq!(statuses(&f), [Status::Compliant, Status::Repaired]);
    assert!(f[0].overridden_by.is_some());
    assert!(f[1].overridden_by.is_none());
    assert_eq!(s.writes.len(), 1, "only the setting we own is written");
}
