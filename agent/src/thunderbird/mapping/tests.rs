use expect_test::{expect, Expect as Snapshot};
use postwarden_profiles::{builtin, Profile, Vars};

use super::*;
use crate::thunderbird::accounts;
use crate::thunderbird::prefs::PrefsFile;

const PROFILE_PREFS: &str = r#"user_pref("mail.accountmanager.accounts", "account1,account2,account3");
user_pref("mail.account.account1.server", "server1");
user_pref("mail.account.account1.identities", "id1");
user_pref("mail.account.account2.server", "server7");
user_pref("mail.account.account2.identities", "id4");
user_pref("mail.account.account3.server", "server3");
user_pref("mail.server.server1.type", "pop3");
user_pref("mail.server.server1.hostname", "pop.example.test");
user_pref("mail.server.server1.userName", "alice");
user_pref("mail.server.server1.port", 995);
user_pref("mail.server.server7.type", "imap");
user_pref("mail.server.server7.hostname", "imap.example.test");
user_pref("mail.server.server7.userName", "alice");
user_pref("mail.server.server3.type", "none");
user_pref("mail.identity.id1.useremail", "alice@example.test");
user_pref("mail.identity.id1.smtpServer", "smtp1");
user_pref("mail.identity.id4.useremail", "alice.imap@example.test");
user_pref("mail.smtpservers", "smtp1");
user_pref("mail.smtpserver.smtp1.hostname", "smtp.example.test");
user_pref("mail.smtpserver.smtp1.port", 587);
"#;

fn baseline() -> Profile {
    builtin::load("bsi-m5.57").unwrap().unwrap()
}

fn vars() -> Vars {
    [("user.email".to_string(), "alice@example.test".to_string())].into()
}

fn accounts_of(text: &str) -> Accounts {
    let p = PrefsFile::parse(text).unwrap();
    accounts::read(|n| p.get_user(n).cloned())
}

/// One line per desired setting or not-applicable control, for snapshots.
fn render(m: &Mapped) -> String {
    let mut out = String::new();
    for d in &m.desired {
        out.push_str(&format!(
            "{} | {} | {} | {:?} | {}\n",
            d.control, d.target, d.location, d.expect, d.mode
        ));
    }
    for n in &m.not_applicable {
        out.push_str(&format!(
            "{} | {} | n/a: {}\n",
            n.control, n.target, n.reason
        ));
    }
    out
}

fn check(profile: &Profile, prefs: &str, want: Snapshot) {
    let accounts = accounts_of(prefs);
    let views = [ProfileView {
        scope: "/home/alice/.thunderbird/x.default",
        accounts: &accounts,
    }];
    let m = map(
        profile,
        &vars(),
        &views,
        "/etc/thunderbird/policies/policies.json",
    )
    .unwrap();
    want.assert_eq(&render(&m));
}

#[test]
fn baseline_on_a_pop_and_imap_profile() {
    check(
        &baseline(),
        PROFILE_PREFS,
        expect![[r#"
            reply-address | identity id1 <alice@example.test> | mail.identity.id1.reply_to | Equals(Text("alice@example.test")) | enforce
            reply-address | identity id4 <alice.imap@example.test> | mail.identity.id4.reply_to | Equals(Text("alice@example.test")) | enforce
            mail-check-interval | server1 (pop3 alice@pop.example.test) | mail.server.server1.check_new_mail | Equals(Bool(true)) | enforce
            mail-check-interval | server1 (pop3 alice@pop.example.test) | mail.server.server1.check_time | Equals(Int(30)) | enforce
            mail-check-interval | server7 (imap alice@imap.example.test) | mail.server.server7.check_new_mail | Equals(Bool(true)) | enforce
            mail-check-interval | server7 (imap alice@imap.example.test) | mail.server.server7.check_time | Equals(Int(30)) | enforce
            pop-delete-after-fetch | server1 (pop3 alice@pop.example.test) | mail.server.server1.leave_on_server | Equals(Bool(false)) | enforce
            no-saved-passwords | profile | signon.rememberSignons | Equals(Bool(false)) | enforce
            no-saved-passwords | profile | logins.json (saved mail passwords) | Absent | enforce
            attachment-scanning | profile | mailnews.downloadToTempFile | Equals(Bool(true)) | enforce
            attachments-save-before-open | attachments .pif | Handlers policy for .pif | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .scr | Handlers policy for .scr | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .vbs | Handlers policy for .vbs | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .exe | Handlers policy for .exe | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .cmd | Handlers policy for .cmd | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .com | Handlers policy for .com | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .bat | Handlers policy for .bat | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .hta | Handlers policy for .hta | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .js | Handlers policy for .js | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .jse | Handlers policy for .jse | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .wsf | Handlers policy for .wsf | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .wsh | Handlers policy for .wsh | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .msi | Handlers policy for .msi | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .ps1 | Handlers policy for .ps1 | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .lnk | Handlers policy for .lnk | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .reg | Handlers policy for .reg | Equals(Text("saveToDisk")) | enforce
            require-tls | server1 (pop3 alice@pop.example.test) | mail.server.server1.socketType | OneOf { accepted: [Int(2), Int(3)], repair: Int(3) } | enforce
            require-tls | server7 (imap alice@imap.example.test) | mail.server.server7.socketType | OneOf { accepted: [Int(2), Int(3)], repair: Int(2) } | enforce
            require-tls | smtp1 (outgoing smtp.example.test:587) | mail.smtpserver.smtp1.try_ssl | OneOf { accepted: [Int(2), Int(3)], repair: Int(2) } | enforce
            require-smtp-auth | smtp1 (outgoing smtp.example.test:587) | mail.smtpserver.smtp1.authMethod | OneOf { accepted: [Int(2), Int(3), Int(4), Int(5), Int(6), Int(7), Int(8), Int(9), Int(10)], repair: Int(3) } | enforce
            mailbox-size-limit | profile | mail.quota.mainwindow_threshold.warning | Equals(Int(90)) | enforce
            settings-locked | identity id1 <alice@example.test> | mail.identity.id1.reply_to | Locked | enforce
            settings-locked | identity id4 <alice.imap@example.test> | mail.identity.id4.reply_to | Locked | enforce
            settings-locked | server1 (pop3 alice@pop.example.test) | mail.server.server1.check_new_mail | Locked | enforce
            settings-locked | server1 (pop3 alice@pop.example.test) | mail.server.server1.check_time | Locked | enforce
            settings-locked | server7 (imap alice@imap.example.test) | mail.server.server7.check_new_mail | Locked | enforce
            settings-locked | server7 (imap alice@imap.example.test) | mail.server.server7.check_time | Locked | enforce
            settings-locked | server1 (pop3 alice@pop.example.test) | mail.server.server1.leave_on_server | Locked | enforce
            settings-locked | profile | signon.rememberSignons | Locked | enforce
            settings-locked | profile | mailnews.downloadToTempFile | Locked | enforce
            settings-locked | server1 (pop3 alice@pop.example.test) | mail.server.server1.socketType | Locked | enforce
            settings-locked | server7 (imap alice@imap.example.test) | mail.server.server7.socketType | Locked | enforce
            settings-locked | smtp1 (outgoing smtp.example.test:587) | mail.smtpserver.smtp1.try_ssl | Locked | enforce
            settings-locked | smtp1 (outgoing smtp.example.test:587) | mail.smtpserver.smtp1.authMethod | Locked | enforce
            settings-locked | profile | mail.quota.mainwindow_threshold.warning | Locked | enforce
            blocked-attachment-types | profile | n/a: Thunderbird has no setting or policy that blocks attachments by file type; block these types on the mail server or gateway (content filter, ZIP archives included) (*.pif *.scr *.vbs *.exe *.cmd *.com *.bat *.hta)
        "#]],
    );
}

#[test]
fn an_empty_profile_is_not_applicable_rather_than_compliant() {
    check(
        &baseline(),
        "",
        expect![[r#"
            no-saved-passwords | profile | signon.rememberSignons | Equals(Bool(false)) | enforce
            no-saved-passwords | profile | logins.json (saved mail passwords) | Absent | enforce
            attachment-scanning | profile | mailnews.downloadToTempFile | Equals(Bool(true)) | enforce
            attachments-save-before-open | attachments .pif | Handlers policy for .pif | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .scr | Handlers policy for .scr | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .vbs | Handlers policy for .vbs | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .exe | Handlers policy for .exe | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .cmd | Handlers policy for .cmd | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .com | Handlers policy for .com | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .bat | Handlers policy for .bat | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .hta | Handlers policy for .hta | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .js | Handlers policy for .js | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .jse | Handlers policy for .jse | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .wsf | Handlers policy for .wsf | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .wsh | Handlers policy for .wsh | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .msi | Handlers policy for .msi | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .ps1 | Handlers policy for .ps1 | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .lnk | Handlers policy for .lnk | Equals(Text("saveToDisk")) | enforce
            attachments-save-before-open | attachments .reg | Handlers policy for .reg | Equals(Text("saveToDisk")) | enforce
            mailbox-size-limit | profile | mail.quota.mainwindow_threshold.warning | Equals(Int(90)) | enforce
            settings-locked | profile | signon.rememberSignons | Locked | enforce
            settings-locked | profile | mailnews.downloadToTempFile | Locked | enforce
            settings-locked | profile | mail.quota.mainwindow_threshold.warning | Locked | enforce
            reply-address | profile | n/a: this profile has no mail identity
            mail-check-interval | profile | n/a: this profile has no POP3 or IMAP account
            pop-delete-after-fetch | profile | n/a: this profile has no POP3 account (IMAP keeps mail on the server by design; see mailbox-size-limit)
            blocked-attachment-types | profile | n/a: Thunderbird has no setting or policy that blocks attachments by file type; block these types on the mail server or gateway (content filter, ZIP archives included) (*.pif *.scr *.vbs *.exe *.cmd *.com *.bat *.hta)
            require-tls | profile | n/a: this profile has no mail server
            require-smtp-auth | profile | n/a: this profile has no outgoing (SMTP) server
        "#]],
    );
}

#[test]
fn audit_controls_are_not_locked() {
    let text = include_str!("../../../../profiles/bsi-m5.57.toml").replace(
        "value = { minutes = 30 }",
        "mode = \"audit\"\nvalue = { minutes = 30 }",
    );
    let p = Profile::parse("p.toml", &text).unwrap();
    let accounts = accounts_of(PROFILE_PREFS);
    let views = [ProfileView {
        scope: "s",
        accounts: &accounts,
    }];
    let m = map(&p, &vars(), &views, "pol").unwrap();
    assert!(m
        .desired
        .iter()
        .filter(|d| d.control == "settings-locked")
        .all(|d| !d.location.to_string().contains("check_time")));
}

#[test]
fn unresolved_template_names_the_control() {
    let accounts = accounts_of(PROFILE_PREFS);
    let views = [ProfileView {
        scope: "s",
        accounts: &accounts,
    }];
    let err = map(&baseline(), &Vars::new(), &views, "pol").unwrap_err();
    assert_eq!(
        err.to_string(),
        "builtin:bsi-m5.57:27:9: field `controls.reply-address.value`: template variable `user.email` has no value (pass --var user.email=VALUE)"
    );
}

#[test]
fn raw_prefs_are_enforced_and_locked() {
    let text = format!(
        "{}\n[raw.thunderbird.prefs]\n\"mail.compose.attachment_reminder\" = true\n",
        include_str!("../../../../profiles/bsi-m5.57.toml")
    );
    let p = Profile::parse("p.toml", &text).unwrap();
    let accounts = accounts_of("");
    let views = [ProfileView {
        scope: "s",
        accounts: &accounts,
    }];
    let m = map(&p, &vars(), &views, "pol").unwrap();
    let raw: Vec<String> = m
        .desired
        .iter()
        .filter(|d| d.location.to_string() == "mail.compose.attachment_reminder")
        .map(|d| format!("{} {:?}", d.control, d.expect))
        .collect();
    assert_eq!(
        raw,
        [
            "raw.thunderbird Equals(Bool(true))",
            "settings-locked Locked"
        ]
    );
}
