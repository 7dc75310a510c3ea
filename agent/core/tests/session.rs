//! The session API with two and three clients: bad input writes nothing anywhere; a corrupt
//! client fails alone while the others are checked and enforced; restore undoes all of it.
//! Outlook runs on any OS here, against an in-memory registry seeded from a `.reg` fixture.

use std::fs;
use std::sync::Arc;

use postwarden_agent_core::{InputError, Session, StoreErrorKind, Target};
use postwarden_profiles::report::{Client, Report, RunKind, Status};
use postwarden_registry::{MemRegistry, Shared};
use postwarden_test_support::fixture::{registry_from, Machine};
use postwarden_test_support::{baseline, vars};

const SHARED_PLIST: &str = "Library/Preferences/com.apple.mail-shared.plist";

/// A user with Thunderbird, Apple Mail and Outlook, all non-compliant.
struct Three {
    machine: Machine,
    registry: Shared<MemRegistry>,
}

impl Three {
    fn new() -> Three {
        Three {
            machine: Machine::empty().with_thunderbird().with_apple_mail(),
            registry: Shared::new(registry_from("outlook/noncompliant.reg")),
        }
    }

    fn session(&self, clients: &[Client]) -> Session {
        let target =
            Target::new(self.machine.home.clone(), self.machine.root.clone()).expect("dirs exist");
        let registry = self.registry.clone();
        Session::new(target, clients)
            .expect("valid options")
            .with_registry(Arc::new(move || Box::new(registry.clone())))
            .with_outlook_running(false)
    }

    fn all(&self) -> Session {
        self.session(&[Client::Thunderbird, Client::Outlook, Client::AppleMail])
    }

    fn registry_dump(&self) -> impl PartialEq + std::fmt::Debug {
        self.registry.lock().dump()
    }
}

fn count(report: &Report, client: Client, status: Status) -> usize {
    report
        .findings
        .iter()
        .filter(|f| f.client == client && f.status == status)
        .count()
}

fn clients_with(report: &Report, status: Status) -> Vec<Client> {
    let mut c: Vec<Client> = report
        .findings
        .iter()
        .filter(|f| f.status == status)
        .map(|f| f.client)
        .collect();
    c.sort();
    c.dedup();
    c
}

#[test]
fn three_clients_check_apply_check_restore() {
    let t = Three::new();
    let tree = t.machine.snapshot();
    let registry = t.registry_dump();

    let profile = baseline();
    let check = t.all().prepare(&profile, &vars()).unwrap();
    assert_eq!(
        check.clients(),
        [Client::Thunderbird, Client::Outlook, Client::AppleMail]
    );
    let check = check.run(RunKind::Check, None);
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    for client in [Client::Thunderbird, Client::Outlook, Client::AppleMail] {
        assert!(
            count(&check.report, client, Status::Drifted) > 0,
            "{client:?}"
        );
    }
    tree.assert_same(&t.machine.snapshot(), "check never writes");
    assert_eq!(
        t.registry_dump(),
        registry,
        "check never writes the registry"
    );

    let apply = t
        .all()
        .prepare(&baseline(), &vars())
        .unwrap()
        .run(RunKind::Apply, None);
    assert!(apply.problems.is_empty(), "{:?}", apply.problems);
    assert_eq!(clients_with(&apply.report, Status::Drifted), []);
    for client in [Client::Thunderbird, Client::Outlook, Client::AppleMail] {
        assert!(
            count(&apply.report, client, Status::Repaired) > 0,
            "{client:?}"
        );
    }

    let again = t
        .all()
        .prepare(&baseline(), &vars())
        .unwrap()
        .run(RunKind::Check, None);
    for client in [Client::Thunderbird, Client::Outlook] {
        assert_eq!(
            count(&again.report, client, Status::Drifted),
            0,
            "{client:?}"
        );
    }

    let restored = t.all().restore().unwrap();
    assert!(!restored.is_empty());
    tree.assert_same(&t.machine.snapshot(), "restore is exact for files");
    assert_eq!(
        t.registry_dump(),
        registry,
        "restore is exact for the registry"
    );
    assert!(
        t.all().restore().unwrap().is_empty(),
        "nothing left to restore"
    );
}

#[test]
fn a_corrupt_apple_mail_plist_fails_apple_mail_alone() {
    let t = Three::new();
    let plist = t.machine.home.join(SHARED_PLIST);
    fs::write(&plist, b"not a plist").unwrap();
    let apple_before = fs::read(&plist).unwrap();

    let outcome = t
        .all()
        .prepare(&baseline(), &vars())
        .unwrap()
        .run(RunKind::Apply, None);

    assert_eq!(outcome.problems.len(), 1);
    let problem = &outcome.problems[0];
    assert_eq!(problem.client, Client::AppleMail);
    assert_eq!(problem.error.kind(), StoreErrorKind::Corrupt);
    assert!(!problem.error.is_transient());
    let apple: Vec<_> = outcome
        .report
        .findings
        .iter()
        .filter(|f| f.client == Client::AppleMail)
        .collect();
    assert_eq!(apple.len(), baseline().controls.len(), "one per control");
    for f in &apple {
        assert_eq!(f.status, Status::Failed);
        let reason = f.reason.as_deref().unwrap();
        assert!(reason.contains("com.apple.mail-shared.plist"), "{reason}");
        assert_eq!(f.scope, plist.display().to_string());
    }
    // The other clients were still checked and enforced.
    assert!(count(&outcome.report, Client::Thunderbird, Status::Repaired) > 30);
    assert!(count(&outcome.report, Client::Outlook, Status::Repaired) > 30);
    assert_eq!(fs::read(&plist).unwrap(), apple_before, "not touched");
    let other_plist = t
        .machine
        .home
        .join("Library/Containers/com.apple.mail/Data/Library/Preferences/com.apple.mail.plist");
    let fixture = postwarden_test_support::fixture::data(
        "applemail/home/Library/Containers/com.apple.mail/Data/Library/Preferences/com.apple.mail.plist",
    );
    assert_eq!(
        fs::read(other_plist).unwrap(),
        fs::read(fixture).unwrap(),
        "no Apple Mail domain was written"
    );
    assert!(!outcome.report.compliant);
}

#[test]
fn a_corrupt_prefs_js_fails_thunderbird_alone_with_two_clients() {
    let t = Three::new();
    let prefs = t.machine.thunderbird_profile().join("prefs.js");
    fs::write(&prefs, "user_pref(\"a\", 1);\nuser_pref(\"b\", \"oops);\n").unwrap();
    let thunderbird_before =
        postwarden_test_support::tree::snapshot(&t.machine.home.join(".thunderbird"));

    let outcome = t
        .session(&[Client::Thunderbird, Client::AppleMail])
        .prepare(&baseline(), &vars())
        .unwrap()
        .run(RunKind::Apply, None);

    assert_eq!(outcome.problems.len(), 1);
    assert_eq!(outcome.problems[0].client, Client::Thunderbird);
    let f = outcome
        .report
        .findings
        .iter()
        .find(|f| f.client == Client::Thunderbird)
        .unwrap();
    assert_eq!(f.status, Status::Failed);
    let reason = f.reason.as_deref().unwrap();
    assert!(reason.contains("prefs.js:2:"), "{reason}");
    assert!(count(&outcome.report, Client::AppleMail, Status::Repaired) > 0);
    thunderbird_before.assert_same(
        &postwarden_test_support::tree::snapshot(&t.machine.home.join(".thunderbird")),
        "Thunderbird untouched",
    );
    assert!(
        !t.machine.policies_json().exists(),
        "no machine-wide Thunderbird policy was written"
    );
}

#[test]
fn a_bad_variable_writes_nothing_for_any_client() {
    let t = Three::new();
    let tree = t.machine.snapshot();
    let registry = t.registry_dump();
    let err = t
        .all()
        .prepare(&baseline(), &Default::default())
        .unwrap_err();
    assert!(matches!(err, InputError::Template(_)), "{err}");
    assert!(
        err.to_string()
            .contains("field `controls.reply-address.value`: template variable `user.email`"),
        "{err}"
    );
    tree.assert_same(&t.machine.snapshot(), "bad input writes nothing");
    assert_eq!(t.registry_dump(), registry);
}

#[test]
fn contradicting_options_are_refused() {
    let t = Three::new();
    let mut target = Target::new(t.machine.home.clone(), t.machine.root.clone()).unwrap();
    target.registry_user = Some("S-1-5-21-1-2-3-1001".parse().unwrap());
    let err = Session::new(target, &[Client::Thunderbird]).unwrap_err();
    assert!(
        err.to_string()
            .contains("--registry-user applies to Outlook"),
        "{err}"
    );

    // Outlook without a registry (the Linux build): refused before anything is read.
    let target = Target::new(t.machine.home.clone(), t.machine.root.clone()).unwrap();
    let session = Session::new(target, &[Client::Thunderbird, Client::Outlook]).unwrap();
    if cfg!(not(windows)) {
        let err = session.prepare(&baseline(), &vars()).unwrap_err();
        assert!(err.to_string().contains("run the Windows build"), "{err}");
    }
}

#[test]
fn audit_mode_writes_nothing_for_three_clients() {
    let t = Three::new();
    let tree = t.machine.snapshot();
    let registry = t.registry_dump();
    let mut profile = baseline();
    for c in &mut profile.controls {
        c.mode = postwarden_profiles::Mode::Audit;
    }
    let outcome = t
        .all()
        .prepare(&profile, &vars())
        .unwrap()
        .run(RunKind::Apply, None);
    assert_eq!(clients_with(&outcome.report, Status::Repaired), []);
    assert_eq!(
        clients_with(&outcome.report, Status::Drifted),
        [Client::Thunderbird, Client::Outlook, Client::AppleMail]
    );
    tree.assert_same(&t.machine.snapshot(), "audit never writes");
    assert_eq!(t.registry_dump(), registry);
}

#[test]
fn a_machine_wide_path_in_the_way_fails_thunderbird_alone() {
    let t = Three::new();
    // The policy file's folder is a file: Thunderbird's policy file can be neither read nor
    // written, whoever runs the agent.
    let policies = postwarden_clients::thunderbird::paths::policy_path(&t.machine.root);
    let folder = policies.parent().unwrap();
    fs::create_dir_all(folder.parent().unwrap()).unwrap();
    fs::write(folder, b"in the way").unwrap();
    let outcome = t
        .session(&[Client::Thunderbird, Client::AppleMail])
        .prepare(&baseline(), &vars())
        .unwrap()
        .run(RunKind::Apply, None);
    // Depending on the OS, reading through a file is an error (Linux: not a directory) or a
    // missing file (Windows): Thunderbird fails at loading or at writing; either way it is a
    // problem naming the folder, none of its repairs is reported done, and Apple Mail goes on.
    assert_eq!(outcome.problems.len(), 1, "{:?}", outcome.problems);
    assert_eq!(outcome.problems[0].client, Client::Thunderbird);
    let error = outcome.problems[0].error.to_string();
    let name = folder.file_name().unwrap().to_string_lossy();
    assert!(error.contains(name.as_ref()), "{error}");
    assert!(count(&outcome.report, Client::Thunderbird, Status::Failed) > 0);
    assert_eq!(
        count(&outcome.report, Client::Thunderbird, Status::Repaired),
        0
    );
    assert!(count(&outcome.report, Client::AppleMail, Status::Repaired) > 0);
}

/// A service's contested settings: held ones are observed and reported, never written; the
/// rest of the pass is enforced as usual.
#[test]
fn held_settings_are_reported_drifted_and_left_alone() {
    use postwarden_agent_core::{Hold, SettingKey};
    let three = Three::new();
    let session = three.session(&[Client::Thunderbird]);
    let profile = baseline();
    let check = session
        .prepare(&profile, &vars())
        .unwrap()
        .run(RunKind::Check, None);
    let held = check
        .report
        .findings
        .iter()
        .find(|f| {
            f.control == "mail-check-interval"
                && f.setting.as_deref() == Some("mail.server.server1.check_time")
        })
        .expect("the fixture's check interval is drifted");
    assert_eq!(held.status, Status::Drifted);
    let key = SettingKey::of(held).unwrap();
    let mut hold = Hold::default();
    hold.insert(key.clone(), "contested: left alone".to_owned());

    let prefs = three.machine.thunderbird_profile().join("prefs.js");
    let mut prepared = session.prepare(&profile, &vars()).unwrap();
    prepared.hold(&hold);
    let outcome = prepared.run(RunKind::Apply, None);
    let mine: Vec<_> = outcome
        .report
        .findings
        .iter()
        .filter(|f| SettingKey::of(f).as_ref() == Some(&key))
        .collect();
    assert!(!mine.is_empty());
    for f in &mine {
        assert_eq!(f.status, Status::Drifted, "{f:?}");
        assert_eq!(f.note.as_deref(), Some("contested: left alone"), "{f:?}");
    }
    let text = fs::read_to_string(&prefs).unwrap();
    assert!(
        text.contains(r#"user_pref("mail.server.server1.check_time", 5);"#),
        "the held value is untouched"
    );
    assert!(
        count(&outcome.report, Client::Thunderbird, Status::Repaired) > 0,
        "everything else was repaired"
    );
}

#[test]
fn thunderbirds_registry_policies_are_reported_not_fought() {
    use postwarden_registry::{KeyPath, RegValue, Registry, Root};
    let t = Three::new();
    // A Group Policy for Thunderbird: its `Preferences` replaces policies.json's whole
    // `Preferences` policy (Mozilla's CombinedProvider), and it sets the check interval to 10.
    t.registry
        .lock()
        .set(
            &KeyPath::new(Root::LocalMachine, r"Software\Policies\Mozilla\Thunderbird"),
            "Preferences",
            &RegValue::MultiSz(vec![
                r#"{"mail.server.server1.check_time": {"Value": 10, "Status": "locked"}}"#.into(),
            ]),
        )
        .unwrap();
    let policies = t.machine.policies_json();
    for run in [RunKind::Check, RunKind::Apply] {
        let out = t
            .session(&[Client::Thunderbird])
            .prepare(&baseline(), &vars())
            .unwrap()
            .run(run, None);
        let f = out
            .report
            .findings
            .iter()
            .find(|f| f.setting.as_deref() == Some("mail.server.server1.check_time"))
            .expect("the check interval is checked");
        assert_eq!(f.status, Status::Failed, "{run:?}: {f:?}");
        assert_eq!(
            f.actual,
            serde_json::json!(10),
            "the registry's value is in force"
        );
        let o = f
            .overridden_by
            .as_ref()
            .expect("the registry policy is named");
        assert!(o.layer.contains("Windows registry"), "{o:?}");
        assert!(o.location.contains(r"Mozilla\Thunderbird"), "{o:?}");
        // Every other pref: the agent's policies.json locks would be hidden too.
        let tls = out
            .report
            .findings
            .iter()
            .find(|f| f.setting.as_deref() == Some("mail.server.server1.socketType"))
            .expect("TLS is checked");
        assert_eq!(tls.status, Status::Failed, "{tls:?}");
        assert!(tls.overridden_by.is_some(), "{tls:?}");
    }
    let written = fs::read_to_string(&policies).unwrap_or_default();
    assert!(
        !written.contains("mail.server.server1.check_time"),
        "apply wrote a lock the registry policy hides: {written}"
    );
}
