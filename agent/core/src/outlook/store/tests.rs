use std::path::Path;

use postwarden_clients::outlook::map;
use postwarden_engine::{reconcile, RunKind};
use postwarden_profiles::report::{Finding, Status};
use postwarden_profiles::{Mode, Profile};
use postwarden_registry::{MemRegistry, RegValue, Registry, Root, Shared};
use postwarden_test_support::fixture::registry_from;
use postwarden_test_support::{baseline, vars};

use super::*;

fn hkcu() -> KeyPath {
    KeyPath::new(Root::CurrentUser, "")
}

fn seeded() -> Shared<MemRegistry> {
    Shared::new(registry_from("outlook/noncompliant.reg"))
}

/// Checks or applies `profile` to the Outlook in `hive`; `None` if it is not set up there.
fn run(
    reg: &Shared<MemRegistry>,
    hive: KeyPath,
    state: &Path,
    running: bool,
    profile: &Profile,
    kind: RunKind,
) -> Option<Vec<Finding>> {
    if !is_set_up(reg, &hive).unwrap() {
        return None;
    }
    let journal = JournalPlace {
        dir: state.to_path_buf(),
        scope_root: state.to_path_buf(),
    };
    let mut store = OutlookStore::load(Box::new(reg.clone()), hive, journal, running).unwrap();
    let mapped = map(profile, &vars(), &store.view()).unwrap();
    Some(
        reconcile(&mut store, kind, &mapped.desired, &mapped.not_applicable)
            .unwrap()
            .findings,
    )
}

fn go(reg: &Shared<MemRegistry>, state: &Path, kind: RunKind, running: bool) -> Vec<Finding> {
    run(reg, hkcu(), state, running, &baseline(), kind).expect("Outlook is set up in the fixture")
}

fn count(findings: &[Finding], status: Status) -> usize {
    findings.iter().filter(|f| f.status == status).count()
}

fn account_key(id: &str) -> KeyPath {
    hkcu().join(&format!(
        r"Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\{id}"
    ))
}

#[test]
fn check_apply_check_restore_round_trip() {
    let reg = seeded();
    let original = reg.lock().dump();
    let state = tempfile::tempdir().unwrap();

    let seeded_writes = reg.lock().writes();
    let check = go(&reg, state.path(), RunKind::Check, false);
    assert_eq!(reg.lock().writes(), seeded_writes, "check never writes");
    assert_eq!(count(&check, Status::Repaired), 0);
    assert!(count(&check, Status::Drifted) > 30, "{check:#?}");
    let leave = check
        .iter()
        .find(|f| {
            f.setting
                .as_deref()
                .is_some_and(|s| s.ends_with("\"Leave on Server\""))
        })
        .unwrap();
    assert_eq!(leave.actual, serde_json::json!(true));
    assert_eq!(leave.target, "account 00000001 (POP3 alice@example.org)");
    let secret = check
        .iter()
        .find(|f| {
            f.setting
                .as_deref()
                .is_some_and(|s| s.ends_with("\"POP3 Password\""))
        })
        .unwrap();
    assert_eq!(
        secret.actual,
        serde_json::json!("<redacted: saved password, 40 bytes>")
    );

    let apply = go(&reg, state.path(), RunKind::Apply, false);
    let failed: Vec<&Finding> = apply
        .iter()
        .filter(|f| f.status == Status::Failed)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(count(&apply, Status::Drifted), 0);
    assert_eq!(count(&apply, Status::NotApplicable), 1, "the .srs interval");

    let again = go(&reg, state.path(), RunKind::Check, false);
    assert!(again
        .iter()
        .all(|f| matches!(f.status, Status::Compliant | Status::NotApplicable)));

    // Only the LEAVE_ON_SERVER bit changed: the 14-day field stays.
    let pop = account_key("00000001");
    assert_eq!(
        reg.get(&pop, "Leave on Server").unwrap(),
        Some(RegValue::Dword(0x000e_0002))
    );
    // Account text keeps Outlook's REG_BINARY UTF-16 form.
    assert_eq!(
        reg.get(&pop, "Reply E-mail").unwrap(),
        Some(RegValue::binary_text("alice@example.org"))
    );
    assert_eq!(reg.get(&pop, "POP3 Password").unwrap(), None);
    // Values we do not manage are untouched.
    assert_eq!(
        reg.get(&pop, "Service UID").unwrap(),
        Some(RegValue::Binary((0x40..0x50).collect()))
    );
    let imap = account_key("00000002");
    assert_eq!(
        reg.get(&imap, "SMTP Auth Method").unwrap(),
        Some(RegValue::Dword(0))
    );
    assert_eq!(
        reg.get(&imap, "IMAP Secure Connection").unwrap(),
        Some(RegValue::Dword(2))
    );
    assert_eq!(
        reg.get(&imap, "SMTP Secure Connection").unwrap(),
        Some(RegValue::Dword(2))
    );

    // A second apply has nothing to do.
    let writes = reg.lock().writes();
    go(&reg, state.path(), RunKind::Apply, false);
    assert_eq!(reg.lock().writes(), writes, "apply is idempotent");

    let journal = Journal::open_for_write(state.path(), state.path()).unwrap();
    journal.restore(Some(&mut reg.clone())).unwrap();
    assert_eq!(
        reg.lock().dump(),
        original,
        "restore puts the registry back exactly"
    );
}

#[test]
fn audit_mode_reports_but_never_writes() {
    let reg = seeded();
    let seeded_writes = reg.lock().writes();
    let state = tempfile::tempdir().unwrap();
    let mut profile = baseline();
    for c in &mut profile.controls {
        c.mode = Mode::Audit;
    }
    let findings = run(&reg, hkcu(), state.path(), false, &profile, RunKind::Apply).unwrap();
    assert_eq!(reg.lock().writes(), seeded_writes);
    assert!(count(&findings, Status::Drifted) >= 30);
    assert!(!state.path().join("journal.json").exists());
}

#[test]
fn a_standard_user_gets_account_repairs_and_clear_policy_failures() {
    let reg = seeded();
    reg.lock()
        .deny_writes_below(hkcu().join(r"Software\Policies"));
    reg.lock()
        .deny_writes_below(hkcu().join(r"Software\Microsoft\Windows\CurrentVersion\Policies"));
    let state = tempfile::tempdir().unwrap();
    let findings = go(&reg, state.path(), RunKind::Apply, false);
    let failed: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.status == Status::Failed)
        .collect();
    assert!(!failed.is_empty());
    for f in &failed {
        let reason = f.reason.as_deref().unwrap();
        assert!(reason.contains("access denied"), "{reason}");
        assert!(reason.contains("administrator or SYSTEM"), "{reason}");
    }
    // The lock (modifyaccounts) failed, so the account values are repaired but reported unlocked.
    let lock_failures = failed
        .iter()
        .filter(|f| f.control == "settings-locked")
        .count();
    assert!(lock_failures > 10, "{lock_failures}");
    let pop = account_key("00000001");
    assert_eq!(
        reg.get(&pop, "POP3 Password").unwrap(),
        None,
        "account repairs still happen"
    );
    assert!(findings
        .iter()
        .any(|f| f.control == "require-tls" && f.status == Status::Repaired));
}

#[test]
fn a_cloud_policy_value_is_reported_not_fought() {
    let reg = seeded();
    let cloud = hkcu().join(r"Software\Policies\Microsoft\Cloud\Office\16.0\Outlook\Security");
    reg.clone()
        .set(&cloud, "enablerememberpwd", &RegValue::Dword(1))
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let findings = go(&reg, state.path(), RunKind::Apply, false);
    let f = findings
        .iter()
        .find(|f| {
            f.setting
                .as_deref()
                .is_some_and(|s| s.ends_with("\"enablerememberpwd\""))
        })
        .unwrap();
    assert_eq!(f.status, Status::Failed);
    assert!(f
        .reason
        .as_deref()
        .unwrap()
        .contains("Microsoft 365 Cloud Policy"));
    let gp = hkcu().join(r"Software\Policies\Microsoft\Office\16.0\Outlook\Security");
    assert_eq!(
        reg.get(&gp, "enablerememberpwd").unwrap(),
        Some(RegValue::Dword(1)),
        "the group-policy value under it is left as it was"
    );
}

#[test]
fn writes_while_outlook_runs_are_pending_restart() {
    let reg = seeded();
    let state = tempfile::tempdir().unwrap();
    let findings = go(&reg, state.path(), RunKind::Apply, true);
    assert_eq!(count(&findings, Status::Repaired), 0);
    assert!(count(&findings, Status::PendingRestart) > 30);
    assert_eq!(count(&findings, Status::Failed), 0);
}

#[test]
fn a_user_without_outlook_gets_no_findings() {
    let reg = Shared::new(MemRegistry::new());
    let state = tempfile::tempdir().unwrap();
    let out = run(
        &reg,
        hkcu(),
        state.path(),
        false,
        &baseline(),
        RunKind::Apply,
    );
    assert!(out.is_none());
    assert_eq!(reg.lock().writes(), 0);
}

#[test]
fn a_service_works_on_the_users_hive() {
    // As a service: HKEY_USERS\<SID> instead of HKEY_CURRENT_USER.
    let sid = "S-1-5-21-1004336348-1177238915-682003330-1001";
    let mut mem = MemRegistry::new();
    let source = seeded();
    let dump = source.lock().dump();
    for (key, values) in dump {
        let k = KeyPath::parse(&key).unwrap();
        let target = KeyPath::new(Root::Users, format!("{sid}\\{}", k.path));
        for (name, v) in values {
            mem.set(&target, &name, &v).unwrap();
        }
    }
    let reg = Shared::new(mem);
    let state = tempfile::tempdir().unwrap();
    let hive = KeyPath::new(Root::Users, sid);
    let findings = run(
        &reg,
        hive.clone(),
        state.path(),
        false,
        &baseline(),
        RunKind::Apply,
    )
    .unwrap();
    assert_eq!(count(&findings, Status::Failed), 0);
    assert!(
        findings[0].scope.starts_with(&format!("HKEY_USERS\\{sid}")),
        "{}",
        findings[0].scope
    );
    assert_eq!(
        reg.get(
            &hive.join(r"Software\Policies\Microsoft\Office\16.0\Outlook\Setup"),
            "modifyaccounts"
        )
        .unwrap(),
        Some(RegValue::Dword(1))
    );
}
