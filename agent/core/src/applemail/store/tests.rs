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
    assert!(fetch
        .reason
        .as_deref()
        .unwrap()
        .contains("configuration profile"));
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
