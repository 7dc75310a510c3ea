use expect_test::{expect, Expect as Snapshot};
use postwarden_profiles::{Profile, Vars};
use postwarden_test_support::{baseline, vars};

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

fn accounts_of(text: &str) -> Accounts {
    let p = PrefsFile::parse(text).unwrap();
    accounts::read(|n| p.get_user(n).cloned())
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
    want.assert_eq(&crate::mapping::snapshot(&m));
}

#[test]
fn baseline_on_a_pop_and_imap_profile() {
    check(
        &baseline(),
        PROFILE_PREFS,
        expect![[r#"
            reply-address | /home/alice/.thunderbird/x.default | identity id1 <alice@example.test> | mail.identity.id1.reply_to | Equals(Text("alice@example.org")) | enforce | -
            reply-address | /home/alice/.thunderbird/x.default | identity id4 <alice.imap@example.test> | mail.identity.id4.reply_to | Equals(Text("alice@example.org")) | enforce | -
            mail-check-interval | /home/alice/.thunderbird/x.default | server1 (pop3 alice@pop.example.test) | mail.server.server1.check_new_mail | Equals(Bool(true)) | enforce | -
            mail-check-interval | /home/alice/.thunderbird/x.default | server1 (pop3 alice@pop.example.test) | mail.server.server1.check_time | Equals(Int(30)) | enforce | -
            mail-check-interval | /home/alice/.thunderbird/x.default | server7 (imap alice@imap.example.test) | mail.server.server7.check_new_mail | Equals(Bool(true)) | enforce | -
            mail-check-interval | /home/alice/.thunderbird/x.default | server7 (imap alice@imap.example.test) | mail.server.server7.check_time | Equals(Int(30)) | enforce | -
            pop-delete-after-fetch | /home/alice/.thunderbird/x.default | server1 (pop3 alice@pop.example.test) | mail.server.server1.leave_on_server | Equals(Bool(false)) | enforce | -
            no-saved-passwords | /home/alice/.thunderbird/x.default | profile | signon.rememberSignons | Equals(Bool(false)) | enforce | -
            no-saved-passwords | /home/alice/.thunderbird/x.default | profile | logins.json (saved mail passwords) | Absent | enforce | -
            attachment-scanning | /home/alice/.thunderbird/x.default | profile | mailnews.downloadToTempFile | Equals(Bool(true)) | enforce | note: Thunderbird writes each new message to a temporary file first, so the on-access virus scanner can quarantine it before it reaches the mailbox; whether a scanner runs on this endpoint is not checked by this control
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .pif | Handlers policy for .pif | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .scr | Handlers policy for .scr | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .vbs | Handlers policy for .vbs | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .exe | Handlers policy for .exe | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .cmd | Handlers policy for .cmd | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .com | Handlers policy for .com | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .bat | Handlers policy for .bat | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .hta | Handlers policy for .hta | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .js | Handlers policy for .js | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .jse | Handlers policy for .jse | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .wsf | Handlers policy for .wsf | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .wsh | Handlers policy for .wsh | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .msi | Handlers policy for .msi | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .ps1 | Handlers policy for .ps1 | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .lnk | Handlers policy for .lnk | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .reg | Handlers policy for .reg | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            require-tls | /home/alice/.thunderbird/x.default | server1 (pop3 alice@pop.example.test) | mail.server.server1.socketType | OneOf { accepted: [Int(2), Int(3)], repair: Int(3) } | enforce | -
            require-tls | /home/alice/.thunderbird/x.default | server7 (imap alice@imap.example.test) | mail.server.server7.socketType | OneOf { accepted: [Int(2), Int(3)], repair: Int(2) } | enforce | -
            require-tls | /home/alice/.thunderbird/x.default | smtp1 (outgoing smtp.example.test:587) | mail.smtpserver.smtp1.try_ssl | OneOf { accepted: [Int(2), Int(3)], repair: Int(2) } | enforce | -
            require-smtp-auth | /home/alice/.thunderbird/x.default | smtp1 (outgoing smtp.example.test:587) | mail.smtpserver.smtp1.authMethod | OneOf { accepted: [Int(2), Int(3), Int(4), Int(5), Int(6), Int(7), Int(8), Int(9), Int(10)], repair: Int(3) } | enforce | -
            mailbox-size-limit | /home/alice/.thunderbird/x.default | profile | mail.quota.mainwindow_threshold.warning | Equals(Int(90)) | enforce | note: Thunderbird warns when the quota use the IMAP server reports passes this percentage; the maximum itself (10000 MB) is the mail server's quota, which no client setting can impose
            settings-locked | /home/alice/.thunderbird/x.default | identity id1 <alice@example.test> | mail.identity.id1.reply_to | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | identity id4 <alice.imap@example.test> | mail.identity.id4.reply_to | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | server1 (pop3 alice@pop.example.test) | mail.server.server1.check_new_mail | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | server1 (pop3 alice@pop.example.test) | mail.server.server1.check_time | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | server7 (imap alice@imap.example.test) | mail.server.server7.check_new_mail | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | server7 (imap alice@imap.example.test) | mail.server.server7.check_time | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | server1 (pop3 alice@pop.example.test) | mail.server.server1.leave_on_server | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | profile | signon.rememberSignons | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | profile | mailnews.downloadToTempFile | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | server1 (pop3 alice@pop.example.test) | mail.server.server1.socketType | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | server7 (imap alice@imap.example.test) | mail.server.server7.socketType | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | smtp1 (outgoing smtp.example.test:587) | mail.smtpserver.smtp1.try_ssl | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | smtp1 (outgoing smtp.example.test:587) | mail.smtpserver.smtp1.authMethod | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | profile | mail.quota.mainwindow_threshold.warning | Locked | enforce | -
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
            no-saved-passwords | /home/alice/.thunderbird/x.default | profile | signon.rememberSignons | Equals(Bool(false)) | enforce | -
            no-saved-passwords | /home/alice/.thunderbird/x.default | profile | logins.json (saved mail passwords) | Absent | enforce | -
            attachment-scanning | /home/alice/.thunderbird/x.default | profile | mailnews.downloadToTempFile | Equals(Bool(true)) | enforce | note: Thunderbird writes each new message to a temporary file first, so the on-access virus scanner can quarantine it before it reaches the mailbox; whether a scanner runs on this endpoint is not checked by this control
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .pif | Handlers policy for .pif | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .scr | Handlers policy for .scr | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .vbs | Handlers policy for .vbs | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .exe | Handlers policy for .exe | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .cmd | Handlers policy for .cmd | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .com | Handlers policy for .com | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .bat | Handlers policy for .bat | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .hta | Handlers policy for .hta | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .js | Handlers policy for .js | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .jse | Handlers policy for .jse | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .wsf | Handlers policy for .wsf | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .wsh | Handlers policy for .wsh | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .msi | Handlers policy for .msi | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .ps1 | Handlers policy for .ps1 | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .lnk | Handlers policy for .lnk | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            attachments-save-before-open | /etc/thunderbird/policies/policies.json | attachments .reg | Handlers policy for .reg | Equals(Text("saveToDisk")) | enforce | note: Thunderbird applies the Handlers policy at every start; a user can change the choice only until the next start
            mailbox-size-limit | /home/alice/.thunderbird/x.default | profile | mail.quota.mainwindow_threshold.warning | Equals(Int(90)) | enforce | note: Thunderbird warns when the quota use the IMAP server reports passes this percentage; the maximum itself (10000 MB) is the mail server's quota, which no client setting can impose
            settings-locked | /home/alice/.thunderbird/x.default | profile | signon.rememberSignons | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | profile | mailnews.downloadToTempFile | Locked | enforce | -
            settings-locked | /home/alice/.thunderbird/x.default | profile | mail.quota.mainwindow_threshold.warning | Locked | enforce | -
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
    let text = postwarden_test_support::baseline_text().replace(
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
        postwarden_test_support::baseline_text()
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

#[test]
fn only_the_protocols_own_tls_port_repairs_to_implicit_tls() {
    // 993 is IMAP's implicit-TLS port, not POP3's; 995 is POP3's, not IMAP's (as Outlook).
    let prefs = r#"user_pref("mail.accountmanager.accounts", "account1,account2,account3");
user_pref("mail.account.account1.server", "server1");
user_pref("mail.account.account2.server", "server2");
user_pref("mail.account.account3.server", "server3");
user_pref("mail.server.server1.type", "pop3");
user_pref("mail.server.server1.port", 993);
user_pref("mail.server.server2.type", "imap");
user_pref("mail.server.server2.port", 995);
user_pref("mail.server.server3.type", "imap");
user_pref("mail.server.server3.port", 993);
"#;
    let accounts = accounts_of(prefs);
    let views = [ProfileView {
        scope: "s",
        accounts: &accounts,
    }];
    let m = map(&baseline(), &vars(), &views, "pol").unwrap();
    let repairs: Vec<(String, Value)> = m
        .desired
        .iter()
        .filter_map(|d| match &d.expect {
            Expect::OneOf { repair, .. } if d.control == "require-tls" => {
                Some((d.location.to_string(), repair.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        repairs,
        [
            ("mail.server.server1.socketType".to_owned(), Value::Int(2)),
            ("mail.server.server2.socketType".to_owned(), Value::Int(2)),
            ("mail.server.server3.socketType".to_owned(), Value::Int(3)),
        ]
    );
}
