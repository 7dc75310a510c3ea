use postwarden_engine::{Expect, Value};
use postwarden_registry::RegValue;

use super::*;
use crate::outlook::mapping::{Form, OUTLOOK_POLICIES};

fn location() -> Location {
    Location {
        key: format!("{OUTLOOK_POLICIES}\\Security"),
        name: "enablerememberpwd".into(),
        form: Form::PolicyDword,
    }
}

fn gpo(value: Option<u32>) -> GpoValue {
    GpoValue {
        gpo: "Local Group Policy".into(),
        file: r"C:\Windows\System32\GroupPolicy\User\Registry.pol".into(),
        offset: 8,
        key: format!("{OUTLOOK_POLICIES}\\Security"),
        name: "enablerememberpwd".into(),
        value: value.map(RegValue::Dword),
        archive: false,
    }
}

const D: fn(u32) -> Option<RegValue> = |v| Some(RegValue::Dword(v));

#[test]
fn precedence_table() {
    // (cloud, machine GPO, HKLM, user GPO, HKCU) -> (value, decider)
    let m = |v| Some(gpo(v));
    let rows: Vec<(Readings, Option<RegValue>, Decider)> = vec![
        (Readings::default(), None, Decider::User),
        (
            Readings {
                user: D(0),
                ..Default::default()
            },
            D(0),
            Decider::User,
        ),
        (
            Readings {
                machine: D(1),
                user: D(0),
                ..Default::default()
            },
            D(1),
            Decider::Machine,
        ),
        (
            Readings {
                cloud: D(2),
                machine: D(1),
                user: D(0),
                ..Default::default()
            },
            D(2),
            Decider::Cloud,
        ),
        (
            Readings {
                user_gpo: m(Some(1)),
                user: D(0),
                ..Default::default()
            },
            D(1),
            Decider::UserGpo(gpo(Some(1))),
        ),
        (
            Readings {
                user_gpo: m(None),
                user: D(0),
                ..Default::default()
            },
            None,
            Decider::UserGpo(gpo(None)),
        ),
        (
            Readings {
                machine: D(1),
                user_gpo: m(Some(0)),
                user: D(0),
                ..Default::default()
            },
            D(1),
            Decider::Machine,
        ),
        (
            Readings {
                machine_gpo: m(Some(3)),
                machine: D(1),
                user: D(0),
                ..Default::default()
            },
            D(3),
            Decider::MachineGpo(gpo(Some(3))),
        ),
        (
            // A machine GPO that deletes the HKLM value leaves the user's layer in charge.
            Readings {
                machine_gpo: m(None),
                machine: D(1),
                user: D(0),
                ..Default::default()
            },
            D(0),
            Decider::User,
        ),
        (
            Readings {
                cloud: D(5),
                machine_gpo: m(Some(3)),
                user_gpo: m(Some(1)),
                ..Default::default()
            },
            D(5),
            Decider::Cloud,
        ),
    ];
    for (i, (readings, value, decider)) in rows.into_iter().enumerate() {
        assert_eq!(readings.decide(), (value, decider), "row {i}: {readings:?}");
    }
}

#[test]
fn only_the_users_own_layer_is_the_agents() {
    assert!(Decider::User.is_agents());
    for d in [
        Decider::Cloud,
        Decider::Machine,
        Decider::UserGpo(gpo(Some(0))),
    ] {
        assert!(!d.is_agents());
        let o = override_of(
            &d,
            &location(),
            "HKEY_CURRENT_USER",
            &Readings::default(),
            None,
        )
        .unwrap();
        assert!(o.fix.contains("the value the profile expects"), "{o:?}");
    }
    assert_eq!(
        override_of(
            &Decider::User,
            &location(),
            "HKEY_CURRENT_USER",
            &Readings::default(),
            None
        ),
        None
    );
}

#[test]
fn a_gpo_override_names_the_file_the_record_and_the_fix() {
    let readings = Readings {
        user_gpo: Some(gpo(Some(1))),
        user: D(0),
        ..Default::default()
    };
    let (value, decider) = readings.decide();
    assert_eq!(value, D(1));
    let want = Want::describe(&Expect::Equals(Value::Int(0)), false).unwrap();
    let o = override_of(
        &decider,
        &location(),
        "HKEY_CURRENT_USER",
        &readings,
        Some(&want),
    )
    .unwrap();
    assert_eq!(o.layer, GROUP_POLICY);
    assert_eq!(
        o.location,
        format!(
            r"C:\Windows\System32\GroupPolicy\User\Registry.pol (record at byte 8: {OUTLOOK_POLICIES}\Security\enablerememberpwd)"
        )
    );
    assert!(
        o.evidence.starts_with("the GPO Local Group Policy sets"),
        "{}",
        o.evidence
    );
    assert!(o.evidence.contains("REG_DWORD 0x1"), "{}", o.evidence);
    assert!(
        o.evidence.contains("the registry holds REG_DWORD 0x0 now"),
        "{}",
        o.evidence
    );
    assert_eq!(
        o.fix,
        format!(
            r"change the GPO Local Group Policy (C:\Windows\System32\GroupPolicy\User\Registry.pol) so that it sets {OUTLOOK_POLICIES}\Security\enablerememberpwd to 0 (REG_DWORD), or remove the setting from it (Not Configured); Postwarden does not write a value Group Policy manages"
        )
    );

    // The GPO already wants what the profile wants: evidence, nothing to fix.
    let met = Want::describe(&Expect::Equals(Value::Int(1)), true).unwrap();
    let o = override_of(
        &decider,
        &location(),
        "HKEY_CURRENT_USER",
        &readings,
        Some(&met),
    )
    .unwrap();
    assert_eq!(
        o.fix,
        "none needed: the GPO enforces the value the profile expects"
    );

    // A profile that wants the value gone.
    let gone = Want::describe(&Expect::Absent, false).unwrap();
    let o = override_of(
        &decider,
        &location(),
        "HKEY_CURRENT_USER",
        &readings,
        Some(&gone),
    )
    .unwrap();
    assert!(o.fix.contains(r"so that it deletes Software"), "{}", o.fix);
}

#[test]
fn cloud_and_machine_overrides_say_where_to_change_them() {
    let readings = Readings {
        cloud: D(1),
        machine: D(1),
        user: D(0),
        ..Default::default()
    };
    let want = Want::describe(&Expect::Equals(Value::Int(0)), false).unwrap();
    let o = override_of(
        &Decider::Cloud,
        &location(),
        "HKEY_USERS\\S-1-5-21-1",
        &readings,
        Some(&want),
    )
    .unwrap();
    assert_eq!(o.layer, CLOUD_POLICY);
    assert_eq!(
        o.location,
        r#"HKEY_USERS\S-1-5-21-1\Software\Policies\Microsoft\Cloud\Office\16.0\Outlook\Security "enablerememberpwd""#
    );
    assert!(o
        .evidence
        .starts_with("REG_DWORD 0x1; Cloud Policy overrides"));
    assert!(o.fix.contains("config.office.com"));
    assert!(
        o.fix.contains("enablerememberpwd is 0 (REG_DWORD)"),
        "{}",
        o.fix
    );

    let o = override_of(
        &Decider::Machine,
        &location(),
        "HKEY_CURRENT_USER",
        &readings,
        Some(&want),
    )
    .unwrap();
    assert_eq!(o.layer, MACHINE_POLICY);
    assert_eq!(
        o.location,
        r#"HKEY_LOCAL_MACHINE\Software\Policies\Microsoft\Office\16.0\Outlook\Security "enablerememberpwd""#
    );
    assert!(o.evidence.contains("not documented by Microsoft"));
    assert!(o
        .fix
        .starts_with(r"an administrator changes HKEY_LOCAL_MACHINE\Software"));
}

#[test]
fn wants_are_described_for_fixes() {
    let d = |e: Expect| Want::describe(&e, false).map(|w| w.text);
    assert_eq!(
        d(Expect::Equals(Value::Int(3))),
        Some(Some("3 (REG_DWORD)".into()))
    );
    assert_eq!(
        d(Expect::Equals(Value::Text(".exe;.com".into()))),
        Some(Some(r#"".exe;.com" (REG_SZ)"#.into()))
    );
    assert_eq!(d(Expect::Absent), Some(None));
    assert_eq!(d(Expect::Locked), None);
    assert_eq!(
        d(Expect::OneOf {
            accepted: vec![Value::Absent, Value::Int(0)],
            repair: Value::Int(0)
        }),
        Some(Some("one of not set, 0 (REG_DWORD)".into()))
    );
}
