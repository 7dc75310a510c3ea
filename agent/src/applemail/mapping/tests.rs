use postwarden_profiles::{builtin, Vars};

use super::*;

fn baseline() -> Profile {
    builtin::load("bsi-m5.57").unwrap().unwrap()
}

fn vars() -> Vars {
    let mut v = Vars::new();
    v.insert("user.email".into(), "alice@example.org".into());
    v
}

#[test]
fn every_control_is_mapped_or_explained() {
    let m = map(&baseline(), &vars(), "/Users/alice").unwrap();
    for control in baseline().controls {
        let id = control.id.as_str();
        assert!(
            m.desired.iter().any(|d| d.control == id)
                || m.not_applicable.iter().any(|n| n.control == id),
            "{id} is neither mapped nor explained"
        );
    }
    let na: Vec<&str> = m
        .not_applicable
        .iter()
        .map(|n| n.control.as_str())
        .collect();
    assert_eq!(
        na,
        [
            "pop-delete-after-fetch",
            "no-saved-passwords",
            "blocked-attachment-types",
            "require-tls",
            "require-smtp-auth",
            "mailbox-size-limit"
        ]
    );
    assert!(m.not_applicable.iter().all(|n| !n.reason.is_empty()));
}

#[test]
fn preferences_land_in_the_right_domains() {
    let m = map(&baseline(), &vars(), "/Users/alice").unwrap();
    let got: Vec<(String, &Expect)> = m
        .desired
        .iter()
        .filter(|d| d.expect != Expect::Locked)
        .map(|d| (d.location.to_string(), &d.expect))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "com.apple.mail UserHeaders → Reply-To".into(),
                &Expect::Equals(Value::Text("alice@example.org".into()))
            ),
            (
                "com.apple.mail AutoFetch".into(),
                &Expect::Equals(Value::Bool(true))
            ),
            (
                "com.apple.mail PollTime".into(),
                &Expect::Equals(Value::Int(30))
            ),
            (
                "com.apple.LaunchServices LSQuarantine".into(),
                &Expect::OneOf {
                    accepted: vec![Value::Absent, Value::Bool(true)],
                    repair: Value::Absent
                }
            ),
            (
                "group.com.apple.mail LoadRemoteContent-v2".into(),
                &Expect::Equals(Value::Int(11))
            ),
            (
                "com.apple.mail-shared DisableURLLoading".into(),
                &Expect::Equals(Value::Bool(true))
            ),
            (
                "com.apple.mail DisableInlineAttachmentViewing".into(),
                &Expect::Equals(Value::Bool(true))
            ),
        ]
    );
    // Forced by a profile: every exact value, not the "anything but false" quarantine check.
    assert_eq!(m.forced().count(), 6);
    let locked = m
        .desired
        .iter()
        .filter(|d| d.expect == Expect::Locked)
        .count();
    assert_eq!(locked, 6);
}

#[test]
fn the_domains_live_where_macos_keeps_them() {
    assert_eq!(
        Domain::Mail.home_path(),
        "Library/Containers/com.apple.mail/Data/Library/Preferences/com.apple.mail.plist"
    );
    assert_eq!(
        Domain::MailGroup.home_path(),
        "Library/Group Containers/group.com.apple.mail/Library/Preferences/group.com.apple.mail.plist"
    );
    assert!(REPLY_TO_NOTE.contains("unverified"));
}
