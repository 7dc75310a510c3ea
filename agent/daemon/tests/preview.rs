//! Issue 12 (staged rollout): a bundle that carries a preview makes the service evaluate the
//! candidate version in audit mode after its pass, for each user, and queue the findings as a
//! `preview` item; the evaluation writes nothing, whatever the candidate's modes, and is sent
//! again only when its findings change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postwarden_daemon::enforcer::{Enforcer, EnforcerConfig, Outbox};
use postwarden_daemon::run::policy_of;
use postwarden_daemon::state::StateDir;
use postwarden_daemon::track::PassKind;
use postwarden_daemon::users::LocalUser;
use postwarden_profiles::report::{Client, RunKind, Status};
use postwarden_queue::Entry;
use postwarden_test_support::fixture::Machine;
use postwarden_wire::v1::{BatchItemKind, BundlePayload, BundleProfile, BundleSchema, DeviceId};

struct Collect(Arc<Mutex<Vec<Entry>>>);

impl Outbox for Collect {
    fn push(&mut self, entries: Vec<Entry>) {
        self.0.lock().unwrap().extend(entries);
    }
}

/// The baseline as version 2, with a 15-minute mail check (what a rollout would preview).
fn candidate_toml() -> String {
    let v2 = postwarden_test_support::baseline_text()
        .replacen("version = 1\n", "version = 2\n", 1)
        .replacen("value = { minutes = 30 }", "value = { minutes = 15 }", 1);
    assert_ne!(v2, postwarden_test_support::baseline_text());
    v2
}

fn bundle(preview: Option<String>) -> BundlePayload {
    BundlePayload {
        schema: BundleSchema,
        device: DeviceId("dev_aaaaaaaaaaaaaaaaaaaaaaaaaa".into()),
        serial: 4,
        issued_at: time::OffsetDateTime::now_utc(),
        profile: BundleProfile {
            id: "bsi-m5.57".into(),
            version: 1,
            toml: postwarden_test_support::baseline_text().to_owned(),
        },
        variables: BTreeMap::from([("alice".to_owned(), postwarden_test_support::vars())]),
        preview: preview.map(|toml| BundleProfile {
            id: "bsi-m5.57".into(),
            version: 2,
            toml,
        }),
    }
}

fn enforcer(
    machine: &Machine,
    state: &std::path::Path,
    payload: &BundlePayload,
) -> (Enforcer, Arc<Mutex<Vec<Entry>>>) {
    let policy = Arc::new(policy_of(payload).expect("the bundle's profiles parse"));
    let config = EnforcerConfig {
        system_root: machine.root.clone(),
        clients: vec![Client::Thunderbird],
        full_check: Duration::from_secs(900),
        debounce: Duration::from_millis(10),
        watch: false,
        mode: "enrolled",
        contest_limit: 10,
        discover: false,
    };
    let users = vec![LocalUser {
        name: "alice".into(),
        home: machine.home.clone(),
        sid: None,
    }];
    let sent = Arc::new(Mutex::new(Vec::new()));
    let e = Enforcer::new(
        config,
        users,
        Some(policy),
        Box::new(Collect(sent.clone())),
        None,
        StateDir::new(state.to_path_buf()),
    );
    (e, sent)
}

#[test]
fn a_preview_is_evaluated_in_audit_mode_and_reported_without_writing() {
    let machine = Machine::empty().with_thunderbird();
    let state = tempfile::tempdir().unwrap();
    let payload = bundle(Some(candidate_toml()));
    let (mut enforcer, sent) = enforcer(&machine, state.path(), &payload);

    // The pass enforces the bundle's own profile (version 1): a 30-minute mail check.
    enforcer.pass(0, PassKind::Policy);
    let prefs = machine.thunderbird_profile().join("prefs.js");
    let enforced = std::fs::read_to_string(&prefs).unwrap();
    assert!(
        enforced.contains("user_pref(\"mail.server.server1.check_time\", 30);"),
        "{enforced}"
    );
    let reports: Vec<u32> = sent
        .lock()
        .unwrap()
        .drain(..)
        .filter_map(|e| match e.item.kind {
            BatchItemKind::Report { report, .. } => Some(report.profile.version),
            BatchItemKind::Preview { .. } => panic!("no preview from the pass itself"),
            _ => None,
        })
        .collect();
    assert_eq!(reports, [1], "the enforced version's report");

    // The preview: a check of version 2 against the machine as it is; nothing is written,
    // neither in the home and system root nor in the state folder.
    let before = machine.snapshot();
    let state_before = postwarden_test_support::tree::snapshot(state.path());
    enforcer.preview(0);
    machine
        .snapshot()
        .assert_same(&before, "the preview wrote nothing");
    postwarden_test_support::tree::snapshot(state.path()).assert_same(
        &state_before,
        "the preview wrote nothing into the state folder",
    );

    let entries: Vec<Entry> = sent.lock().unwrap().drain(..).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].key, "preview/alice");
    let BatchItemKind::Preview { report, user } = &entries[0].item.kind else {
        panic!("a preview item: {:?}", entries[0].item.kind)
    };
    assert_eq!(user, "alice");
    assert_eq!(report.run, RunKind::Check, "audit mode: a check run");
    assert_eq!(
        (report.profile.id.as_str(), report.profile.version),
        ("bsi-m5.57", 2)
    );
    // Version 2 would change the mail check on both servers (30 → 15) and nothing else.
    let drifted: Vec<(&str, Option<&str>, String, String)> = report
        .findings
        .iter()
        .filter(|f| f.status == Status::Drifted)
        .map(|f| {
            (
                f.control.as_str(),
                f.setting.as_deref(),
                f.expected.to_string(),
                f.actual.to_string(),
            )
        })
        .collect();
    assert_eq!(
        drifted,
        [
            (
                "mail-check-interval",
                Some("mail.server.server1.check_time"),
                "15".to_owned(),
                "30".to_owned()
            ),
            (
                "mail-check-interval",
                Some("mail.server.server2.check_time"),
                "15".to_owned(),
                "30".to_owned()
            ),
        ],
        "{:#?}",
        report.findings
    );
    assert_eq!(std::fs::read_to_string(&prefs).unwrap(), enforced);

    // The same findings again are not sent again; a changed machine is.
    enforcer.preview(0);
    assert!(
        sent.lock().unwrap().is_empty(),
        "unchanged: nothing new to send"
    );
    // Someone removes the policy file: version 2 now finds other things (the locks are gone).
    std::fs::remove_file(machine.thunderbird_policy_file()).unwrap();
    enforcer.preview(0);
    let again: Vec<Entry> = sent.lock().unwrap().drain(..).collect();
    assert_eq!(again.len(), 1, "changed findings are sent again");
    let BatchItemKind::Preview { report: second, .. } = &again[0].item.kind else {
        panic!("a preview item")
    };
    assert_ne!(second.findings, report.findings);
    assert!(
        !machine.thunderbird_policy_file().exists(),
        "and still nothing written"
    );
}

#[test]
fn without_a_preview_nothing_is_evaluated_and_a_bad_one_is_left_out() {
    let machine = Machine::empty().with_thunderbird();
    let state = tempfile::tempdir().unwrap();
    let (mut enforcer, sent) = enforcer(&machine, state.path(), &bundle(None));
    enforcer.pass(0, PassKind::Policy);
    sent.lock().unwrap().clear();
    enforcer.preview(0);
    assert!(sent.lock().unwrap().is_empty());

    // A preview the agent cannot parse does not cost the bundle: its own profile is used.
    let bad = bundle(Some(
        "format = 1\nid = \"bsi-m5.57\"\nversion = \"two\"\n".into(),
    ));
    let policy = policy_of(&bad).expect("the bundle's own profile parses");
    assert!(policy.preview.is_none());
    assert_eq!(policy.profile.version.0, 1);
}
