use std::path::Path;

use postwarden_clients::outlook::layers::{CLOUD_POLICY, GROUP_POLICY, MACHINE_POLICY};
use postwarden_clients::outlook::map;
use postwarden_engine::{plan, reconcile, RunKind};
use postwarden_profiles::report::{Finding, Status};
use postwarden_profiles::{Mode, Profile};
use postwarden_registry::pol::{render, PolFile};
use postwarden_registry::{MemRegistry, RegValue, Registry, Root, Shared};
use postwarden_test_support::fixture::registry_from;
use postwarden_test_support::{baseline, vars};

use super::super::group_policy::{HISTORY, REGISTRY_EXTENSION};
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
    run_with(reg, hive, state, running, profile, kind, None)
}

/// [`run`], with the Group Policy files of `place` (none: a computer without any).
fn run_with(
    reg: &Shared<MemRegistry>,
    hive: KeyPath,
    state: &Path,
    running: bool,
    profile: &Profile,
    kind: RunKind,
    place: Option<&GroupPolicyPlace>,
) -> Option<Vec<Finding>> {
    if !is_set_up(reg, &hive).unwrap() {
        return None;
    }
    let journal = JournalPlace {
        dir: state.to_path_buf(),
        scope_root: state.to_path_buf(),
    };
    let mut store = OutlookStore::load(Box::new(reg.clone()), hive, journal, running).unwrap();
    if let Some(place) = place {
        store = store.with_group_policy(place).unwrap();
    }
    let mapped = map(profile, &vars(), &store.view()).unwrap();
    store.expect(&mapped.desired);
    Some(
        reconcile(&mut store, kind, &mapped.desired, &mapped.not_applicable)
            .unwrap()
            .findings,
    )
}

fn go(reg: &Shared<MemRegistry>, state: &Path, kind: RunKind, running: bool) -> Vec<Finding> {
    run(reg, hkcu(), state, running, &baseline(), kind).expect("Outlook is set up in the fixture")
}

/// The finding of the policy value `name`.
fn finding<'a>(findings: &'a [Finding], name: &str) -> &'a Finding {
    let quoted = format!("\"{name}\"");
    findings
        .iter()
        .find(|f| f.setting.as_deref().is_some_and(|s| s.ends_with(&quoted)))
        .unwrap_or_else(|| panic!("no finding for {name}"))
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
    for kind in [RunKind::Check, RunKind::Apply] {
        let findings = go(&reg, state.path(), kind, false);
        let f = finding(&findings, "enablerememberpwd");
        assert_eq!(f.status, Status::Failed, "{kind:?}");
        let o = f.overridden_by.as_ref().unwrap();
        assert_eq!(o.layer, CLOUD_POLICY);
        assert_eq!(
            o.location,
            r#"HKEY_CURRENT_USER\Software\Policies\Microsoft\Cloud\Office\16.0\Outlook\Security "enablerememberpwd""#
        );
        assert!(o.evidence.starts_with("REG_DWORD 0x1;"), "{}", o.evidence);
        assert!(
            o.fix.contains("enablerememberpwd is 0 (REG_DWORD)"),
            "{}",
            o.fix
        );
    }
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

const SECURITY: &str = r"Software\Policies\Microsoft\Office\16.0\Outlook\Security";

/// A computer root with a Windows directory, and a user profile in it.
struct Machine {
    root: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("Users/alice")).unwrap();
        Machine { root }
    }

    fn place(&self, sid: Option<&str>) -> GroupPolicyPlace {
        GroupPolicyPlace {
            windows: self.root.path().join("Windows"),
            profile: self.root.path().join("Users").join("alice"),
            user_sid: sid.map(str::to_owned),
        }
    }

    /// Writes `file` at `rel` (below the root) and returns its path.
    fn pol(&self, rel: &str, file: &PolFile) -> std::path::PathBuf {
        // By components, so the path reads as the store's own on Windows too.
        let path = rel
            .split('/')
            .fold(self.root.path().to_path_buf(), |p, c| p.join(c));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, render(file)).unwrap();
        path
    }
}

const LOCAL_USER_POL: &str = "Windows/System32/GroupPolicy/User/Registry.pol";

fn go_gp(
    reg: &Shared<MemRegistry>,
    state: &Path,
    kind: RunKind,
    place: &GroupPolicyPlace,
) -> Vec<Finding> {
    run_with(reg, hkcu(), state, false, &baseline(), kind, Some(place)).unwrap()
}

#[test]
fn a_gpo_value_is_reported_with_the_gpo_and_never_written() {
    // The local GPO sets "remember password" to 1, and the registry holds what it wrote.
    let reg = seeded();
    let m = Machine::new();
    let mut gpo = PolFile::default();
    gpo.set(SECURITY, "EnableRememberPwd", &RegValue::Dword(1));
    let file = m.pol(LOCAL_USER_POL, &gpo);
    let place = m.place(None);
    let state = tempfile::tempdir().unwrap();

    // The plan holds no action for it.
    let mut store = OutlookStore::load(
        Box::new(reg.clone()),
        hkcu(),
        JournalPlace {
            dir: state.path().to_path_buf(),
            scope_root: state.path().to_path_buf(),
        },
        false,
    )
    .unwrap()
    .with_group_policy(&place)
    .unwrap();
    let mapped = map(&baseline(), &vars(), &store.view()).unwrap();
    store.expect(&mapped.desired);
    let locations: Vec<Location> = mapped.desired.iter().map(|d| d.location.clone()).collect();
    let observed = store.observe(&locations).unwrap();
    let planned = plan(&mapped.desired, &observed);
    assert!(!planned.is_empty(), "other settings are repaired");
    assert!(
        planned
            .actions
            .iter()
            .all(|a| a.location.name != "enablerememberpwd"),
        "{planned:#?}"
    );

    let before = reg.lock().dump();
    for kind in [RunKind::Check, RunKind::Apply] {
        let findings = go_gp(&reg, state.path(), kind, &place);
        let f = finding(&findings, "enablerememberpwd");
        assert_eq!(f.status, Status::Failed, "{kind:?}: {f:#?}");
        assert_eq!(f.actual, serde_json::json!(1));
        let o = f.overridden_by.as_ref().unwrap();
        assert_eq!(o.layer, GROUP_POLICY);
        assert_eq!(
            o.location,
            format!(
                "{} (record at byte 8: {SECURITY}\\enablerememberpwd)",
                file.display()
            )
        );
        assert!(
            o.evidence.starts_with(&format!(
                "the GPO Local Group Policy sets {SECURITY}\\enablerememberpwd to REG_DWORD 0x1 at every Group Policy refresh"
            )),
            "{}",
            o.evidence
        );
        assert!(!o.evidence.contains("the registry holds"), "{}", o.evidence);
        assert_eq!(
            o.fix,
            format!(
                "change the GPO Local Group Policy ({}) so that it sets {SECURITY}\\enablerememberpwd to 0 (REG_DWORD), or remove the setting from it (Not Configured); Postwarden does not write a value Group Policy manages",
                file.display()
            )
        );
        // Everything else is still enforced.
        let rest = findings
            .iter()
            .filter(|f| f.status == Status::Failed)
            .count();
        assert_eq!(rest, 1, "{kind:?}");
    }
    // The apply wrote other values, never this one.
    let after = reg.lock().dump();
    let key = hkcu().join(SECURITY).to_string();
    assert_eq!(
        after[&key].get("enablerememberpwd"),
        before[&key].get("enablerememberpwd")
    );
    assert_ne!(after, before, "the other repairs happened");
}

#[test]
fn a_gpo_that_enforces_the_wanted_value_is_compliant_evidence() {
    let reg = seeded();
    let m = Machine::new();
    let mut gpo = PolFile::default();
    gpo.set(SECURITY, "enablerememberpwd", &RegValue::Dword(0))
        .delete(SECURITY, "fileextensionsremovelevel1")
        .delete(SECURITY, "showlevel1attach");
    m.pol(LOCAL_USER_POL, &gpo);
    let place = m.place(None);
    let state = tempfile::tempdir().unwrap();
    // The registry still holds 1: the GPO puts 0 back at its next refresh.
    let findings = go_gp(&reg, state.path(), RunKind::Check, &place);
    let f = finding(&findings, "enablerememberpwd");
    assert_eq!(f.status, Status::Compliant);
    let o = f.overridden_by.as_ref().unwrap();
    assert_eq!(
        o.fix,
        "none needed: the GPO enforces the value the profile expects"
    );
    assert!(
        o.evidence
            .ends_with("; the registry holds REG_DWORD 0x1 now, which Group Policy replaces"),
        "{}",
        o.evidence
    );
    // A disabled policy (`**del.`) enforces "not set": met for a value that must be absent...
    let f = finding(&findings, "fileextensionsremovelevel1");
    assert_eq!(f.status, Status::Compliant);
    assert!(f
        .overridden_by
        .as_ref()
        .unwrap()
        .evidence
        .contains("deletes"));
    // ...and fails one that must be set, naming the deletion.
    let f = finding(&findings, "showlevel1attach");
    assert_eq!(f.status, Status::Failed);
    let o = f.overridden_by.as_ref().unwrap();
    assert!(
        o.evidence.starts_with("the GPO Local Group Policy deletes"),
        "{}",
        o.evidence
    );
    assert!(
        o.fix.contains("showlevel1attach to 0 (REG_DWORD)"),
        "{}",
        o.fix
    );

    // An apply leaves every GPO-managed value alone.
    let writes = reg.lock().writes();
    let apply = go_gp(&reg, state.path(), RunKind::Apply, &place);
    assert!(reg.lock().writes() > writes);
    assert_eq!(
        reg.get(&hkcu().join(SECURITY), "enablerememberpwd")
            .unwrap(),
        Some(RegValue::Dword(1)),
        "left for Group Policy to put back"
    );
    assert_eq!(
        reg.get(&hkcu().join(SECURITY), "showlevel1attach").unwrap(),
        None
    );
    assert_eq!(finding(&apply, "showlevel1attach").status, Status::Failed);
}

#[test]
fn machine_policy_outranks_the_users_and_is_never_written() {
    let reg = seeded();
    let hklm = KeyPath::new(Root::LocalMachine, SECURITY);
    reg.clone()
        .set(&hklm, "enablerememberpwd", &RegValue::Dword(1))
        .unwrap();
    // The user's value is already right; the machine's is not.
    reg.clone()
        .set(
            &hkcu().join(SECURITY),
            "enablerememberpwd",
            &RegValue::Dword(0),
        )
        .unwrap();
    // The machine's Attachment Manager policy is right, the user's missing.
    let attachments = KeyPath::new(
        Root::LocalMachine,
        r"Software\Microsoft\Windows\CurrentVersion\Policies\Attachments",
    );
    reg.clone()
        .set(&attachments, "ScanWithAntiVirus", &RegValue::Dword(3))
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let writes = reg.lock().writes();
    let check = go(&reg, state.path(), RunKind::Check, false);
    assert_eq!(reg.lock().writes(), writes);
    let f = finding(&check, "enablerememberpwd");
    assert_eq!(f.status, Status::Failed);
    assert_eq!(f.actual, serde_json::json!(1));
    let o = f.overridden_by.as_ref().unwrap();
    assert_eq!(o.layer, MACHINE_POLICY);
    assert!(
        o.fix
            .contains("enablerememberpwd so that enablerememberpwd is 0"),
        "{}",
        o.fix
    );
    let f = finding(&check, "ScanWithAntiVirus");
    assert_eq!(f.status, Status::Compliant);
    assert_eq!(
        f.overridden_by.as_ref().unwrap().fix,
        "none needed: the machine policy holds the value the profile expects"
    );

    let apply = go(&reg, state.path(), RunKind::Apply, false);
    assert_eq!(finding(&apply, "enablerememberpwd").status, Status::Failed);
    assert_eq!(
        finding(&apply, "ScanWithAntiVirus").status,
        Status::Compliant
    );
    assert_eq!(
        reg.get(&hklm, "enablerememberpwd").unwrap(),
        Some(RegValue::Dword(1)),
        "HKLM is never written"
    );
    assert_eq!(
        reg.get(
            &hkcu().join(r"Software\Microsoft\Windows\CurrentVersion\Policies\Attachments"),
            "ScanWithAntiVirus"
        )
        .unwrap(),
        None,
        "nothing is written below a machine value that decides"
    );
}

#[test]
fn a_gpo_that_holds_a_ui_lock_fails_the_lock_with_its_name() {
    let reg = seeded();
    let m = Machine::new();
    let mut gpo = PolFile::default();
    gpo.set(
        r"Software\Policies\Microsoft\Office\16.0\Outlook\Setup",
        "modifyaccounts",
        &RegValue::Dword(0),
    );
    m.pol(LOCAL_USER_POL, &gpo);
    let state = tempfile::tempdir().unwrap();
    let findings = go_gp(&reg, state.path(), RunKind::Apply, &m.place(None));
    assert_eq!(finding(&findings, "modifyaccounts").status, Status::Failed);
    let locks: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.control == "settings-locked" && f.status == Status::Failed)
        .collect();
    assert!(locks.len() > 10, "{}", locks.len());
    for f in locks {
        let reason = f.reason.as_deref().unwrap();
        if f.overridden_by.is_none() {
            assert!(
                reason.contains("held by Group Policy at") && reason.contains("modifyaccounts"),
                "{reason}"
            );
        }
    }
    assert_eq!(
        reg.get(
            &hkcu().join(r"Software\Policies\Microsoft\Office\16.0\Outlook\Setup"),
            "modifyaccounts"
        )
        .unwrap(),
        None
    );
    // The account values themselves are still repaired.
    assert!(findings
        .iter()
        .any(|f| f.control == "require-tls" && f.status == Status::Repaired));
}

#[test]
fn cached_domain_gpos_are_named_and_filtered_by_the_group_policy_history() {
    let reg = seeded();
    let m = Machine::new();
    let applied = "{6AC1786C-016F-11D2-945F-00C04FB984F9}";
    let other = "{0F6B957D-509E-11D1-A7CC-0000F87571E3}";
    let mut sets = PolFile::default();
    sets.set(SECURITY, "enablerememberpwd", &RegValue::Dword(1));
    let mut wants = PolFile::default();
    wants.set(SECURITY, "enablerememberpwd", &RegValue::Dword(0));
    // In the user's cache: the GPO applied to this user sets 1; another user's GPO sets 0.
    let cache = "Users/alice/AppData/Local/GroupPolicy/DataStore/0/SysVol/corp.example/Policies";
    let file = m.pol(&format!("{cache}/{applied}/User/Registry.pol"), &sets);
    m.pol(&format!("{cache}/{other}/User/Registry.pol"), &wants);
    let history = hkcu().join(&format!(r"{HISTORY}\{REGISTRY_EXTENSION}\0"));
    let mut r = reg.clone();
    r.set(&history, "GPOName", &RegValue::Sz(applied.into()))
        .unwrap();
    r.set(
        &history,
        "DisplayName",
        &RegValue::Sz("Outlook baseline".into()),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let findings = go_gp(&reg, state.path(), RunKind::Check, &m.place(None));
    let o = finding(&findings, "enablerememberpwd")
        .overridden_by
        .clone()
        .unwrap();
    assert!(
        o.evidence
            .starts_with(&format!("the GPO \"Outlook baseline\" {applied} sets")),
        "{}",
        o.evidence
    );
    assert!(o.location.starts_with(&file.display().to_string()));

    // Without a history every cached GPO counts, in path order: the last one decides.
    r.delete_value(&history, "GPOName").unwrap();
    let findings = go_gp(&reg, state.path(), RunKind::Check, &m.place(None));
    let f = finding(&findings, "enablerememberpwd");
    assert!(
        f.overridden_by
            .as_ref()
            .unwrap()
            .evidence
            .starts_with(&format!(
                "the GPO {applied} (cached copy; no Group Policy history names it) sets"
            )),
        "{:#?}",
        f.overridden_by
    );
}

#[test]
fn local_gpos_stack_and_the_users_own_wins() {
    let reg = seeded();
    let m = Machine::new();
    let sid = "S-1-5-21-1004336348-1177238915-682003330-1001";
    let mut one = PolFile::default();
    one.set(SECURITY, "enablerememberpwd", &RegValue::Dword(1));
    let mut zero = PolFile::default();
    zero.set(SECURITY, "enablerememberpwd", &RegValue::Dword(0));
    m.pol(LOCAL_USER_POL, &one);
    m.pol(
        "Windows/System32/GroupPolicyUsers/S-1-5-32-545/User/Registry.pol",
        &one,
    );
    m.pol(
        &format!("Windows/System32/GroupPolicyUsers/{sid}/User/Registry.pol"),
        &zero,
    );
    let state = tempfile::tempdir().unwrap();
    // Without the user's SID, the groups' local GPO decides.
    let f = go_gp(&reg, state.path(), RunKind::Check, &m.place(None));
    let o = finding(&f, "enablerememberpwd")
        .overridden_by
        .clone()
        .unwrap();
    assert!(
        o.evidence
            .starts_with("the GPO Local Group Policy for S-1-5-32-545 (Users) sets"),
        "{}",
        o.evidence
    );
    // With it, the user's own local GPO is applied last.
    let f = go_gp(&reg, state.path(), RunKind::Check, &m.place(Some(sid)));
    let f = finding(&f, "enablerememberpwd");
    assert_eq!(f.status, Status::Compliant);
    assert!(f
        .overridden_by
        .as_ref()
        .unwrap()
        .evidence
        .starts_with(&format!("the GPO Local Group Policy for {sid} sets")));
}

#[test]
fn ntuser_pol_is_the_last_resort_record_of_applied_policy() {
    let reg = seeded();
    let m = Machine::new();
    let mut record = PolFile::default();
    record.set(SECURITY, "adminsecuritymode", &RegValue::Dword(0));
    m.pol("Users/alice/ntuser.pol", &record);
    // Garbage in place of the record is ignored: its format is not documented by Microsoft.
    let state = tempfile::tempdir().unwrap();
    let f = go_gp(&reg, state.path(), RunKind::Check, &m.place(None));
    let o = finding(&f, "adminsecuritymode")
        .overridden_by
        .clone()
        .unwrap();
    assert!(
        o.evidence
            .contains("ntuser.pol, which does not name the GPO"),
        "{}",
        o.evidence
    );
    assert!(o.fix.contains("gpresult"), "{}", o.fix);
    std::fs::write(
        m.root.path().join("Users/alice/ntuser.pol"),
        b"not a policy file",
    )
    .unwrap();
    let f = go_gp(&reg, state.path(), RunKind::Check, &m.place(None));
    assert_eq!(finding(&f, "adminsecuritymode").overridden_by, None);
}

#[test]
fn a_corrupt_registry_pol_is_an_error_naming_the_file_and_the_byte() {
    let reg = seeded();
    let m = Machine::new();
    let path = m.pol(LOCAL_USER_POL, &PolFile::default());
    let mut bytes = render(PolFile::default().set(SECURITY, "x", &RegValue::Dword(1)));
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&path, &bytes).unwrap();
    let state = tempfile::tempdir().unwrap();
    let err = OutlookStore::load(
        Box::new(reg.clone()),
        hkcu(),
        JournalPlace {
            dir: state.path().to_path_buf(),
            scope_root: state.path().to_path_buf(),
        },
        false,
    )
    .unwrap()
    .with_group_policy(&m.place(None))
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}: byte ", path.display())),
        "{text}"
    );
    assert!(text.contains("runs past the end of the file"), "{text}");
    assert_eq!(err.kind(), crate::error::StoreErrorKind::Corrupt);
}
