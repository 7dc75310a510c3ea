use expect_test::expect;
use postwarden_test_support::{baseline, vars};

use super::*;

#[test]
fn baseline_for_one_user() {
    let m = map(&baseline(), &vars(), "/Users/alice").unwrap();
    expect![[r#"
        reply-address | /Users/alice | Mail | com.apple.mail UserHeaders → Reply-To | Equals(Text("alice@example.org")) | enforce | note: Mail has no per-account reply-to; the global UserHeaders dictionary adds this Reply-To header to every message from every account (a long-standing hint used by administrators, unverified on macOS 13-15); enforcing Reply-To on the submission server is more robust
        mail-check-interval | /Users/alice | Mail | com.apple.mail AutoFetch | Equals(Bool(true)) | enforce | -
        mail-check-interval | /Users/alice | Mail | com.apple.mail PollTime | Equals(Int(30)) | enforce | note: Mail reads it at launch; PollTime is in minutes (-1 = automatically, 0 = manually)
        attachment-scanning | /Users/alice | Launch Services | com.apple.LaunchServices LSQuarantine | OneOf { accepted: [Absent, Bool(true)], repair: Absent } | enforce | note: LSQuarantine = false would stop files saved from Mail getting the quarantine flag, and with it the Gatekeeper and XProtect check when they are opened; that Gatekeeper stays on is locked only by an MDM device profile (com.apple.systempolicy.control EnableAssessment, com.apple.systempolicy.managed DisableOverride), and whether an antivirus runs is not checked
        attachment-scanning | /Users/alice | Mail (app group) | group.com.apple.mail LoadRemoteContent-v2 | Equals(Int(11)) | enforce | note: content fetched from the network when a message opens never passes the virus scanner: Mail blocks all remote content (11 = Protect Mail Activity off, IP hidden, block all; bit layout from decompiled code, unverified)
        attachment-scanning | /Users/alice | Mail (shared preferences) | com.apple.mail-shared DisableURLLoading | Equals(Bool(true)) | enforce | note: the pre-macOS 12 switch; set as well, honoured on 13-15 unverified
        attachments-save-before-open | /Users/alice | Mail | com.apple.mail DisableInlineAttachmentViewing | Equals(Bool(true)) | enforce | note: attachments are shown as icons, never rendered in the message; Mail has no per-type save-to-disk setting, and saved attachments get the quarantine flag, so Gatekeeper and XProtect check them when they are opened
        settings-locked | /Users/alice | Mail | com.apple.mail UserHeaders → Reply-To | Locked | enforce | note: only a configuration profile installed by MDM forces a preference (export --format mobileconfig); whether Mail greys out the setting is unverified
        settings-locked | /Users/alice | Mail | com.apple.mail AutoFetch | Locked | enforce | note: only a configuration profile installed by MDM forces a preference (export --format mobileconfig); whether Mail greys out the setting is unverified
        settings-locked | /Users/alice | Mail | com.apple.mail PollTime | Locked | enforce | note: only a configuration profile installed by MDM forces a preference (export --format mobileconfig); whether Mail greys out the setting is unverified
        settings-locked | /Users/alice | Mail (app group) | group.com.apple.mail LoadRemoteContent-v2 | Locked | enforce | note: only a configuration profile installed by MDM forces a preference (export --format mobileconfig); whether Mail greys out the setting is unverified
        settings-locked | /Users/alice | Mail (shared preferences) | com.apple.mail-shared DisableURLLoading | Locked | enforce | note: only a configuration profile installed by MDM forces a preference (export --format mobileconfig); whether Mail greys out the setting is unverified
        settings-locked | /Users/alice | Mail | com.apple.mail DisableInlineAttachmentViewing | Locked | enforce | note: only a configuration profile installed by MDM forces a preference (export --format mobileconfig); whether Mail greys out the setting is unverified
        pop-delete-after-fetch | POP accounts | n/a: Apple Mail keeps the POP deletion policy in Accounts4.sqlite and has no preference or MDM key for it; set "Remove copy from server after retrieving a message: Right away" by hand or move the account to IMAP
        no-saved-passwords | keychain | n/a: Apple Mail keeps passwords in the login keychain and has no setting or MDM key that stops it saving one; the configuration profile carries no password, so the user is asked; use Kerberos/SSO or OAuth accounts to avoid stored passwords
        blocked-attachment-types | attachments | n/a: Apple Mail has no setting that blocks attachments by file type; block these types on the mail server or gateway (*.pif *.scr *.vbs *.exe *.cmd *.com *.bat *.hta)
        require-tls | accounts | n/a: Apple Mail keeps account settings in ~/Library/Accounts/Accounts4.sqlite, which no supported interface writes; deploy the account with the configuration profile (postwarden-agent export --format mobileconfig), which sets SSL and password authentication on both servers with explicit ports and locks them
        require-smtp-auth | accounts | n/a: Apple Mail keeps account settings in ~/Library/Accounts/Accounts4.sqlite, which no supported interface writes; deploy the account with the configuration profile (postwarden-agent export --format mobileconfig), which sets SSL and password authentication on both servers with explicit ports and locks them
        mailbox-size-limit | mailbox | n/a: Apple Mail has no quota warning setting; the mailbox quota and its warning are set on the mail server
    "#]].assert_eq(&crate::mapping::snapshot(&m));
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
    let na: Vec<&str> = m.not_applicable.iter().map(|n| n.control).collect();
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
