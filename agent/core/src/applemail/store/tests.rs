use std::fs;
use std::path::Path;

use plist::Value as Plist;
use postwarden_clients::applemail::mapping::map;
use postwarden_clients::applemail::plistfile::Format;
use postwarden_engine::{reconcile, RunKind};
use postwarden_profiles::report::{Finding, Status};
use postwarden_test_support::{baseline, vars};

use super::*;

/// A home as macOS leaves it: binary plists with keys we do not manage.
fn home(dir: &Path) -> PathBuf {
    let home = dir.join("Users/alice");
    let write = |domain: Domain, pairs: &[(&str, Plist)]| {
        let path = home.join(domain.home_path());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let doc = PlistDoc {
            root: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            format: Format::Binary,
        };
        fs::write(path, doc.to_binary()).unwrap();
    };
    write(
        Domain::Mail,
        &[
            ("PollTime", Plist::String("-1".into())),
            ("AutoFetch", Plist::Boolean(true)),
            (
                "NSWindow Frame MessageViewer",
                Plist::String("0 0 800 600".into()),
            ),
        ],
    );
    write(
        Domain::MailShared,
        &[("DisableURLLoading", Plist::Boolean(false))],
    );
    home
}

fn run(store: &mut AppleMailStore, intent: RunKind) -> Vec<Finding> {
    let m = map(&baseline(), &vars(), "alice").unwrap();
    reconcile(store, intent, &m.desired, &m.not_applicable)
        .unwrap()
        .findings
}

fn load(dir: &Path, home: &Path, channel: Channel) -> AppleMailStore {
    AppleMailStore::load(
        home,
        &dir.join("root"),
        "alice",
        channel,
        dir.join("state"),
        false,
    )
    .unwrap()
}

fn status_of<'a>(findings: &'a [Finding], setting: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.setting.as_deref() == Some(setting) && f.control != "settings-locked")
        .unwrap_or_else(|| panic!("no finding for {setting}"))
}

#[test]
fn apply_writes_binary_plists_and_keeps_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    let mut store = load(dir.path(), &home, Channel::Files);
    let check = run(&mut store, RunKind::Check);
    let poll = status_of(&check, "com.apple.mail PollTime");
    assert_eq!(poll.status, Status::Drifted);
    assert_eq!(
        poll.actual,
        serde_json::json!(-1),
        "a numeric string reads as a number"
    );

    let apply = run(&mut store, RunKind::Apply);
    assert_eq!(
        status_of(&apply, "com.apple.mail PollTime").status,
        Status::Repaired
    );
    // Without MDM nothing can be forced: settings-locked fails with the way out.
    let lock = apply
        .iter()
        .find(|f| f.control == "settings-locked")
        .unwrap();
    assert_eq!(lock.status, Status::Failed);
    assert!(lock.reason.as_deref().unwrap().contains("mobileconfig"));

    let bytes = fs::read(home.join(Domain::Mail.home_path())).unwrap();
    assert!(
        bytes.starts_with(b"bplist00"),
        "written binary, as cfprefsd does"
    );
    let doc = PlistDoc::parse(&bytes).unwrap();
    assert_eq!(doc.root.get("PollTime"), Some(&Plist::Integer(30.into())));
    assert_eq!(
        doc.root.get("NSWindow Frame MessageViewer"),
        Some(&Plist::String("0 0 800 600".into())),
        "unknown keys are kept"
    );
    assert!(
        home.join(Domain::MailGroup.home_path()).is_file(),
        "created"
    );
}

#[test]
fn forced_values_are_locked_and_not_fought() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    let managed = dir.path().join("root/Library/Managed Preferences/alice");
    fs::create_dir_all(&managed).unwrap();
    let forced = PlistDoc {
        root: [
            ("PollTime".to_owned(), Plist::Integer(30.into())),
            ("AutoFetch".to_owned(), Plist::Boolean(false)),
        ]
        .into_iter()
        .collect(),
        format: Format::Binary,
    };
    fs::write(managed.join("com.apple.mail.plist"), forced.to_binary()).unwrap();
    let mut store = load(dir.path(), &home, Channel::Files);
    let apply = run(&mut store, RunKind::Apply);
    let poll = status_of(&apply, "com.apple.mail PollTime");
    assert_eq!(poll.status, Status::Compliant);
    assert_eq!(poll.locked, Some(true));
    let fetch = status_of(&apply, "com.apple.mail AutoFetch");
    assert_eq!(fetch.status, Status::Failed);
    let by = fetch.overridden_by.as_ref().unwrap();
    assert_eq!(
        by.layer,
        "macOS managed preferences (configuration profile)"
    );
    assert!(by.fix.contains("configuration profile"), "{}", by.fix);
}

/// A managed plist as the profile system writes it: `pairs` at the top level.
fn write_managed(
    dir: &Path,
    user: Option<&str>,
    domain: Domain,
    pairs: &[(&str, Plist)],
) -> PathBuf {
    let mut folder = dir.join("root/Library/Managed Preferences");
    if let Some(user) = user {
        folder = folder.join(user);
    }
    fs::create_dir_all(&folder).unwrap();
    let path = folder.join(format!("{}.plist", domain.name()));
    let doc = PlistDoc {
        root: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        format: Format::Binary,
    };
    fs::write(&path, doc.to_binary()).unwrap();
    path
}

fn user_plist(home: &Path, domain: Domain) -> plist::Dictionary {
    PlistDoc::parse(&fs::read(home.join(domain.home_path())).unwrap())
        .unwrap()
        .root
}

#[test]
fn forced_for_the_computer_fails_naming_the_file_and_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    let path = write_managed(
        dir.path(),
        None,
        Domain::Mail,
        &[("PollTime", Plist::Integer(5.into()))],
    );
    let before = fs::read(&path).unwrap();
    let mut store = load(dir.path(), &home, Channel::Files);
    for run_kind in [RunKind::Check, RunKind::Apply] {
        let findings = run(&mut store, run_kind);
        let poll = status_of(&findings, "com.apple.mail PollTime");
        assert_eq!(poll.status, Status::Failed, "{run_kind:?}");
        assert_eq!(poll.actual, serde_json::json!(5));
        assert_eq!(poll.locked, Some(true));
        let by = poll.overridden_by.as_ref().unwrap();
        assert_eq!(by.layer, MANAGED_LAYER);
        assert_eq!(
            slashes(&by.location),
            slashes(&format!("{}, key \"PollTime\"", path.display()))
        );
        assert_eq!(by.evidence, "PollTime = 5 (forced)");
        assert!(
            by.fix.contains("for every user of this computer"),
            "{}",
            by.fix
        );
        // The lock is what the profile holds: settings-locked is met.
        let lock = findings
            .iter()
            .find(|f| {
                f.control == "settings-locked"
                    && f.setting.as_deref() == Some("com.apple.mail PollTime")
            })
            .unwrap();
        assert_eq!(lock.status, Status::Compliant);
    }
    // Not written: the user's own value is still there (hidden), the managed file untouched,
    // and the other settings of the domain were repaired.
    let mail = user_plist(&home, Domain::Mail);
    assert_eq!(mail.get("PollTime"), Some(&Plist::String("-1".into())));
    assert_eq!(
        mail.get("DisableInlineAttachmentViewing"),
        Some(&Plist::Boolean(true))
    );
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn forced_for_the_user_is_compliant_when_right_and_failed_when_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    let path = write_managed(
        dir.path(),
        Some("alice"),
        Domain::MailShared,
        &[("DisableURLLoading", Plist::Boolean(true))],
    );
    write_managed(
        dir.path(),
        Some("alice"),
        Domain::LaunchServices,
        &[("LSQuarantine", Plist::Boolean(false))],
    );
    let mut store = load(dir.path(), &home, Channel::Files);
    let apply = run(&mut store, RunKind::Apply);
    let url = status_of(&apply, "com.apple.mail-shared DisableURLLoading");
    assert_eq!(url.status, Status::Compliant);
    let by = url.overridden_by.as_ref().unwrap();
    assert_eq!(
        slashes(&by.location),
        slashes(&format!("{}, key \"DisableURLLoading\"", path.display()))
    );
    assert!(by.fix.contains("for this user"), "{}", by.fix);
    let quarantine = status_of(&apply, "com.apple.LaunchServices LSQuarantine");
    assert_eq!(quarantine.status, Status::Failed);
    assert_eq!(quarantine.actual, serde_json::json!(false));
    assert!(quarantine
        .reason
        .as_deref()
        .unwrap()
        .contains("does not fight it"));
    assert_eq!(
        user_plist(&home, Domain::MailShared).get("DisableURLLoading"),
        Some(&Plist::Boolean(false)),
        "the user's (hidden) value is left as it was"
    );
}

/// Both layers force the same key: the user's wins, the computer's is not consulted.
#[test]
fn the_users_forced_value_beats_the_computers() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    write_managed(
        dir.path(),
        None,
        Domain::Mail,
        &[
            ("PollTime", Plist::Integer(5.into())),
            ("DisableInlineAttachmentViewing", Plist::Boolean(true)),
        ],
    );
    let user = write_managed(
        dir.path(),
        Some("alice"),
        Domain::Mail,
        &[
            ("PollTime", Plist::Integer(30.into())),
            (
                "PayloadIdentifier",
                Plist::String("org.example.mail.prefs".into()),
            ),
            ("PayloadDisplayName", Plist::String("Mail".into())),
            (
                "PayloadUUID",
                Plist::String("83C9F6E8-EF4B-4974-B83B-B2E7FE79B75C".into()),
            ),
        ],
    );
    let mut store = load(dir.path(), &home, Channel::Files);
    let check = run(&mut store, RunKind::Check);
    let poll = status_of(&check, "com.apple.mail PollTime");
    assert_eq!(poll.status, Status::Compliant);
    let by = poll.overridden_by.as_ref().unwrap();
    assert!(
        slashes(&by.location).starts_with(&slashes(&user.display().to_string())),
        "{}",
        by.location
    );
    assert!(
        by.fix.contains("payload org.example.mail.prefs (\"Mail\")"),
        "{}",
        by.fix
    );
    // A key only the computer forces still comes from the computer's file.
    let inline = status_of(&check, "com.apple.mail DisableInlineAttachmentViewing");
    assert_eq!(inline.status, Status::Compliant);
    assert!(inline
        .overridden_by
        .as_ref()
        .unwrap()
        .fix
        .contains("every user"));
    // Payload metadata is not a preference.
    let ids = store
        .forced
        .values()
        .flatten()
        .filter(|f| f.values.contains_key("PayloadUUID"))
        .count();
    assert_eq!(ids, 0);
}

/// A forced dictionary decides the whole key: the user's own entries are hidden.
#[test]
fn a_forced_dictionary_hides_the_users_entries() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    write_managed(
        dir.path(),
        None,
        Domain::Mail,
        &[(
            "UserHeaders",
            Plist::Dictionary(
                [("X-Other".to_owned(), Plist::String("x".into()))]
                    .into_iter()
                    .collect(),
            ),
        )],
    );
    let mut store = load(dir.path(), &home, Channel::Files);
    let apply = run(&mut store, RunKind::Apply);
    let reply = status_of(&apply, "com.apple.mail UserHeaders → Reply-To");
    assert_eq!(reply.status, Status::Failed);
    assert_eq!(reply.actual, serde_json::Value::Null);
    let by = reply.overridden_by.as_ref().unwrap();
    assert_eq!(
        by.evidence,
        "UserHeaders is forced to {\"X-Other\": \"x\"} without \"Reply-To\""
    );
    assert!(
        user_plist(&home, Domain::Mail).get("UserHeaders").is_none(),
        "not written"
    );
}

/// Set-once settings land in the user's own domain: afterwards they are the user's values,
/// checked and repaired like any other, and nothing reports them as a managed layer.
#[test]
fn set_once_values_are_ordinary_user_values_and_are_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    // What the profile system leaves after applying `Set-Once` {PollTime: 5, AutoFetch: false}.
    let path = home.join(Domain::Mail.home_path());
    let mut doc = PlistDoc::parse(&fs::read(&path).unwrap()).unwrap();
    doc.root.insert("PollTime".into(), Plist::Integer(5.into()));
    doc.root.insert("AutoFetch".into(), Plist::Boolean(false));
    fs::write(&path, doc.to_binary()).unwrap();
    let mut store = load(dir.path(), &home, Channel::Files);
    let check = run(&mut store, RunKind::Check);
    let poll = status_of(&check, "com.apple.mail PollTime");
    assert_eq!(poll.status, Status::Drifted);
    assert_eq!(poll.overridden_by, None);
    assert_eq!(poll.locked, Some(false));
    let apply = run(&mut store, RunKind::Apply);
    for setting in ["com.apple.mail PollTime", "com.apple.mail AutoFetch"] {
        let f = status_of(&apply, setting);
        assert_eq!(f.status, Status::Repaired, "{setting}");
        assert_eq!(f.overridden_by, None);
    }
    let mail = user_plist(&home, Domain::Mail);
    assert_eq!(mail.get("PollTime"), Some(&Plist::Integer(30.into())));
    assert_eq!(mail.get("AutoFetch"), Some(&Plist::Boolean(true)));
}

#[test]
fn a_corrupt_plist_is_an_error_naming_it_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    let shared = home.join(Domain::MailShared.home_path());
    let bytes = fs::read(&shared).unwrap();
    fs::write(&shared, &bytes[..bytes.len() / 2]).unwrap();
    let err = AppleMailStore::load(
        &home,
        &dir.path().join("root"),
        "alice",
        Channel::Files,
        dir.path().join("state"),
        false,
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("com.apple.mail-shared.plist: not a valid binary property list"),
        "{msg}"
    );
    assert!(!dir.path().join("state").exists());
}

/// A stand-in for macOS's `defaults`: `export DOMAIN -` and `import DOMAIN FILE` on plist files
/// kept per domain under one directory, with every call logged.
fn fake_defaults(dir: &Path) -> PathBuf {
    let prog = dir.join("defaults");
    let store = dir.join("cfprefsd");
    fs::create_dir_all(&store).unwrap();
    fs::write(
        &prog,
        format!(
            r#"#!/usr/bin/env python3
import os, plistlib, sys
store = {store:?}
log = open(os.path.join(store, "calls.log"), "a")
log.write(" ".join(sys.argv[1:]) + "\n")
cmd, domain = sys.argv[1], sys.argv[2]
path = os.path.join(store, domain.replace("/", "_") + ".plist")
if cmd == "export":
    data = plistlib.load(open(path, "rb")) if os.path.exists(path) else {{}}
    sys.stdout.buffer.write(plistlib.dumps(data, fmt=plistlib.FMT_XML))
elif cmd == "import":
    data = plistlib.load(open(sys.argv[3], "rb"))
    plistlib.dump(data, open(path, "wb"), fmt=plistlib.FMT_BINARY)
else:
    sys.exit("unsupported: " + cmd)
"#
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
    }
    prog
}

// The stand-in `defaults` is a shell script.
#[cfg(unix)]
#[test]
fn through_defaults_the_store_reads_and_writes_whole_domains() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("Users/alice");
    fs::create_dir_all(&home).unwrap();
    let program = fake_defaults(dir.path());
    let mut store = load(dir.path(), &home, Channel::Defaults { program });
    let apply = run(&mut store, RunKind::Apply);
    assert_eq!(
        status_of(&apply, "com.apple.mail PollTime").status,
        Status::Repaired
    );
    let log = fs::read_to_string(dir.path().join("cfprefsd/calls.log")).unwrap();
    assert!(log.contains("export com.apple.mail -"), "{log}");
    assert!(log.contains("import com.apple.mail "), "{log}");
    let group = home
        .join(Domain::MailGroup.home_path())
        .with_extension("")
        .display()
        .to_string();
    assert!(
        log.contains(&format!("import {group} ")),
        "the app-group suite is addressed by path: {log}"
    );
    assert!(
        !home.join(Domain::Mail.home_path()).exists(),
        "no file edited behind cfprefsd"
    );
}

/// Paths joined from `/`-separated parts and by `Path::join` differ in their separators on
/// Windows (the tests also run there, under Wine); compare them with `/`.
fn slashes(s: &str) -> String {
    s.replace('\\', "/")
}
