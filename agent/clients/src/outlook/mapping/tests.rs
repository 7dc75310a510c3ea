use expect_test::expect;
use postwarden_profiles::Vars;
use postwarden_test_support::{baseline, vars};

use super::*;

fn account(id: &str, kind: AccountKind, port: u32, smtp_port: u32) -> Account {
    Account {
        hive: "HKEY_CURRENT_USER".into(),
        profile: "Outlook".into(),
        id: id.into(),
        kind,
        name: None,
        email: Some("alice@example.org".into()),
        incoming_server: Some("mail.example.org".into()),
        incoming_port: Some(port),
        smtp_server: Some("smtp.example.org".into()),
        smtp_port: Some(smtp_port),
    }
}

fn settings<'a>(m: &'a Mapped, control: &str) -> Vec<(String, &'a Expect)> {
    m.desired
        .iter()
        .filter(|d| d.control == control)
        .map(|d| (d.location.to_string(), &d.expect))
        .collect()
}

/// The two accounts most tests use: POP3 with plain ports (110, 25), IMAP with the implicit-TLS
/// ports (993, 465).
fn pop_and_imap() -> [Account; 2] {
    [
        account("00000001", AccountKind::Pop3, 110, 25),
        account("00000002", AccountKind::Imap, 993, 465),
    ]
}

#[test]
fn baseline_on_a_pop_and_an_imap_account() {
    let accounts = pop_and_imap();
    let view = View {
        hive: "HKEY_CURRENT_USER",
        accounts: &accounts,
    };
    let m = map(&baseline(), &vars(), &view).unwrap();
    expect![[r#"
        reply-address | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "Reply E-mail" | Equals(Text("alice@example.org")) | enforce | note: the value name "Reply E-mail" comes from third-party registry dumps and is not documented by Microsoft; unconfirmed on a real Outlook
        reply-address | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "Reply E-mail" | Equals(Text("alice@example.org")) | enforce | note: the value name "Reply E-mail" comes from third-party registry dumps and is not documented by Microsoft; unconfirmed on a real Outlook
        pop-delete-after-fetch | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "Leave on Server" | Equals(Bool(false)) | enforce | note: bit 0x1 (LEAVE_ON_SERVER) of the value must be clear; the value name comes from third-party registry dumps, the bit layout from Microsoft's Account Management API
        no-saved-passwords | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Outlook | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "enablerememberpwd" | Equals(Int(0)) | enforce | -
        no-saved-passwords | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Outlook | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\RPC "disablebasicauthsavedcreds" | Equals(Int(1)) | enforce | -
        no-saved-passwords | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "POP3 Password" | Absent | enforce | -
        no-saved-passwords | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "SMTP Password" | Absent | enforce | -
        no-saved-passwords | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "IMAP Password" | Absent | enforce | -
        no-saved-passwords | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "SMTP Password" | Absent | enforce | -
        attachment-scanning | HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Policies\Attachments | Windows Attachment Manager | HKCU\Software\Microsoft\Windows\CurrentVersion\Policies\Attachments "ScanWithAntiVirus" | Equals(Int(3)) | enforce | note: Windows Attachment Manager calls the registered antivirus program when an attachment is opened and blocks it if the scan fails; that Outlook routes every attachment through Attachment Manager is not confirmed by Microsoft's documentation, and whether an antivirus program runs is not checked by this control
        attachments-save-before-open | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Outlook | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "adminsecuritymode" | Equals(Int(3)) | enforce | note: Outlook Security Mode 3 ("Use Outlook Security Group Policy") is the gate: without it Outlook ignores the attachment policies
        attachments-save-before-open | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 2 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta;.js;.jse;.wsf;.wsh;.msi;.ps1;.lnk;.reg | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "fileextensionsaddlevel2" | Equals(Text(".pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta;.js;.jse;.wsf;.wsh;.msi;.ps1;.lnk;.reg")) | enforce | -
        attachments-save-before-open | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 2 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta;.js;.jse;.wsf;.wsh;.msi;.ps1;.lnk;.reg | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "Level2Add" | Equals(Text(".pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta;.js;.jse;.wsf;.wsh;.msi;.ps1;.lnk;.reg")) | enforce | note: pre-ADMX value name (Outlook 2002-2010); whether Outlook 16.0 still reads it is unconfirmed, the ADMX value next to it is authoritative
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Outlook | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "adminsecuritymode" | Equals(Int(3)) | enforce | note: Outlook Security Mode 3 ("Use Outlook Security Group Policy") is the gate: without it Outlook ignores the attachment policies
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "fileextensionsaddlevel1" | Equals(Text(".pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta")) | enforce | -
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "Level1Add" | Equals(Text(".pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta")) | enforce | note: pre-ADMX value name (Outlook 2002-2010); whether Outlook 16.0 still reads it is unconfirmed, the ADMX value next to it is authoritative
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "fileextensionsremovelevel1" | Absent | enforce | -
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "showlevel1attach" | Equals(Int(0)) | enforce | -
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "allowuserstolowerattachments" | Equals(Int(0)) | enforce | -
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook "disallowattachmentcustomization" | Equals(Int(1)) | enforce | -
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Security | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Microsoft\Office\16.0\Outlook\Security "Level1Remove" | Absent | enforce | note: the user's own list of unblocked types; ignored while disallowattachmentcustomization is 1, removed anyway
        require-tls | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "POP3 Use SSL" | Equals(Int(1)) | enforce | -
        require-tls | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "POP3 Secure Connection" | OneOf { accepted: [Int(1), Int(2)], repair: Int(2) } | enforce | note: 1 = SSL/TLS and 2 = STARTTLS per Microsoft's ENCRYPT_CONN_* constants; one third-party source reads them the other way round, so both count as encrypted and repairs follow the port (unconfirmed on a real Outlook)
        require-tls | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "SMTP Secure Connection" | OneOf { accepted: [Int(1), Int(2)], repair: Int(2) } | enforce | note: 1 = SSL/TLS and 2 = STARTTLS per Microsoft's ENCRYPT_CONN_* constants; one third-party source reads them the other way round, so both count as encrypted and repairs follow the port (unconfirmed on a real Outlook)
        require-tls | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "IMAP Use SSL" | Equals(Int(1)) | enforce | -
        require-tls | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "IMAP Secure Connection" | OneOf { accepted: [Int(1), Int(2)], repair: Int(1) } | enforce | note: 1 = SSL/TLS and 2 = STARTTLS per Microsoft's ENCRYPT_CONN_* constants; one third-party source reads them the other way round, so both count as encrypted and repairs follow the port (unconfirmed on a real Outlook)
        require-tls | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "SMTP Secure Connection" | OneOf { accepted: [Int(1), Int(2)], repair: Int(1) } | enforce | note: 1 = SSL/TLS and 2 = STARTTLS per Microsoft's ENCRYPT_CONN_* constants; one third-party source reads them the other way round, so both count as encrypted and repairs follow the port (unconfirmed on a real Outlook)
        require-smtp-auth | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "SMTP Use Auth" | Equals(Int(1)) | enforce | -
        require-smtp-auth | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "SMTP Auth Method" | OneOf { accepted: [Absent, Int(0), Int(1)], repair: Int(0) } | enforce | -
        require-smtp-auth | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "SMTP Use Auth" | Equals(Int(1)) | enforce | -
        require-smtp-auth | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "SMTP Auth Method" | OneOf { accepted: [Absent, Int(0), Int(1)], repair: Int(0) } | enforce | -
        mailbox-size-limit | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | data files (PST/OST) | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\PST "maxlargefilesize" | Equals(Int(10000)) | enforce | note: limits of Outlook's local data files (PST/OST), in MB; the mailbox quota and its warning at 90% are set on the mail server (Exchange: Set-Mailbox -IssueWarningQuota), Outlook only shows what the server reports
        mailbox-size-limit | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | data files (PST/OST) | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\PST "warnlargefilesize" | Equals(Int(9000)) | enforce | note: limits of Outlook's local data files (PST/OST), in MB; the mailbox quota and its warning at 90% are set on the mail server (Exchange: Set-Mailbox -IssueWarningQuota), Outlook only shows what the server reports; at this size Outlook stops adding new content
        settings-locked | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Outlook | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Setup "modifyaccounts" | Equals(Int(1)) | enforce | note: removes Account Settings and the Mail control panel from the user; account values stay writable in the registry, so the agent watches and repairs them
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "Reply E-mail" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "Reply E-mail" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "Leave on Server" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "POP3 Password" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "SMTP Password" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "IMAP Password" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "SMTP Password" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Security | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Microsoft\Office\16.0\Outlook\Security "Level1Remove" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "POP3 Use SSL" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "POP3 Secure Connection" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "SMTP Secure Connection" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "IMAP Use SSL" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org) | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "IMAP Secure Connection" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "SMTP Secure Connection" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "SMTP Use Auth" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000001 (POP3 alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001 "SMTP Auth Method" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "SMTP Use Auth" | Locked | enforce | -
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook | account 00000002 (IMAP alice@example.org), SMTP server smtp.example.org | HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000002 "SMTP Auth Method" | Locked | enforce | -
        mail-check-interval | Send/Receive groups | n/a: Outlook keeps the Send/Receive schedule in the profile's .srs file (%APPDATA%\Microsoft\Outlook\<profile>.srs), an undocumented binary format; no registry value or policy sets it, so it can be neither checked nor enforced (Outlook's own default is every 30 minutes)
    "#]].assert_eq(&crate::mapping::snapshot(&m));
}

#[test]
fn baseline_without_accounts() {
    let view = View {
        hive: "HKEY_CURRENT_USER",
        accounts: &[],
    };
    let m = map(&baseline(), &vars(), &view).unwrap();
    expect![[r#"
        no-saved-passwords | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Outlook | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "enablerememberpwd" | Equals(Int(0)) | enforce | -
        no-saved-passwords | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Outlook | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\RPC "disablebasicauthsavedcreds" | Equals(Int(1)) | enforce | -
        attachment-scanning | HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Policies\Attachments | Windows Attachment Manager | HKCU\Software\Microsoft\Windows\CurrentVersion\Policies\Attachments "ScanWithAntiVirus" | Equals(Int(3)) | enforce | note: Windows Attachment Manager calls the registered antivirus program when an attachment is opened and blocks it if the scan fails; that Outlook routes every attachment through Attachment Manager is not confirmed by Microsoft's documentation, and whether an antivirus program runs is not checked by this control
        attachments-save-before-open | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Outlook | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "adminsecuritymode" | Equals(Int(3)) | enforce | note: Outlook Security Mode 3 ("Use Outlook Security Group Policy") is the gate: without it Outlook ignores the attachment policies
        attachments-save-before-open | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 2 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta;.js;.jse;.wsf;.wsh;.msi;.ps1;.lnk;.reg | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "fileextensionsaddlevel2" | Equals(Text(".pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta;.js;.jse;.wsf;.wsh;.msi;.ps1;.lnk;.reg")) | enforce | -
        attachments-save-before-open | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 2 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta;.js;.jse;.wsf;.wsh;.msi;.ps1;.lnk;.reg | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "Level2Add" | Equals(Text(".pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta;.js;.jse;.wsf;.wsh;.msi;.ps1;.lnk;.reg")) | enforce | note: pre-ADMX value name (Outlook 2002-2010); whether Outlook 16.0 still reads it is unconfirmed, the ADMX value next to it is authoritative
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Outlook | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "adminsecuritymode" | Equals(Int(3)) | enforce | note: Outlook Security Mode 3 ("Use Outlook Security Group Policy") is the gate: without it Outlook ignores the attachment policies
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "fileextensionsaddlevel1" | Equals(Text(".pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta")) | enforce | -
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "Level1Add" | Equals(Text(".pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta")) | enforce | note: pre-ADMX value name (Outlook 2002-2010); whether Outlook 16.0 still reads it is unconfirmed, the ADMX value next to it is authoritative
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "fileextensionsremovelevel1" | Absent | enforce | -
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "showlevel1attach" | Equals(Int(0)) | enforce | -
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security "allowuserstolowerattachments" | Equals(Int(0)) | enforce | -
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook "disallowattachmentcustomization" | Equals(Int(1)) | enforce | -
        blocked-attachment-types | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Security | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Microsoft\Office\16.0\Outlook\Security "Level1Remove" | Absent | enforce | note: the user's own list of unblocked types; ignored while disallowattachmentcustomization is 1, removed anyway
        mailbox-size-limit | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | data files (PST/OST) | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\PST "maxlargefilesize" | Equals(Int(10000)) | enforce | note: limits of Outlook's local data files (PST/OST), in MB; the mailbox quota and its warning at 90% are set on the mail server (Exchange: Set-Mailbox -IssueWarningQuota), Outlook only shows what the server reports
        mailbox-size-limit | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | data files (PST/OST) | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\PST "warnlargefilesize" | Equals(Int(9000)) | enforce | note: limits of Outlook's local data files (PST/OST), in MB; the mailbox quota and its warning at 90% are set on the mail server (Exchange: Set-Mailbox -IssueWarningQuota), Outlook only shows what the server reports; at this size Outlook stops adding new content
        settings-locked | HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook | Outlook | HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Setup "modifyaccounts" | Equals(Int(1)) | enforce | note: removes Account Settings and the Mail control panel from the user; account values stay writable in the registry, so the agent watches and repairs them
        settings-locked | HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Security | Level 1 attachments .pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta | HKCU\Software\Microsoft\Office\16.0\Outlook\Security "Level1Remove" | Locked | enforce | -
        reply-address | accounts | n/a: no POP3 or IMAP account in any Outlook profile of this user; for Exchange and Microsoft 365 mailboxes the reply address is set on the server, not in the client
        mail-check-interval | Send/Receive groups | n/a: Outlook keeps the Send/Receive schedule in the profile's .srs file (%APPDATA%\Microsoft\Outlook\<profile>.srs), an undocumented binary format; no registry value or policy sets it, so it can be neither checked nor enforced (Outlook's own default is every 30 minutes)
        pop-delete-after-fetch | accounts | n/a: no POP3 account in any Outlook profile of this user (IMAP keeps mail on the server by design; see mailbox-size-limit)
        require-tls | accounts | n/a: no POP3 or IMAP account in any Outlook profile of this user
        require-smtp-auth | accounts | n/a: no POP3 or IMAP account in any Outlook profile of this user
    "#]].assert_eq(&crate::mapping::snapshot(&m));
}

#[test]
fn every_control_is_mapped_or_explained() {
    let accounts = pop_and_imap();
    let view = View {
        hive: "HKEY_CURRENT_USER",
        accounts: &accounts,
    };
    let m = map(&baseline(), &vars(), &view).unwrap();
    for control in baseline().controls {
        let id = control.id.as_str();
        let mapped = m.desired.iter().any(|d| d.control == id);
        let explained = m.not_applicable.iter().any(|n| n.control == id);
        assert!(mapped || explained, "{id} is neither mapped nor explained");
    }
    let na: Vec<&str> = m.not_applicable.iter().map(|n| n.control).collect();
    assert_eq!(
        na,
        ["mail-check-interval"],
        "only the .srs interval has no registry form"
    );
    assert!(m.not_applicable[0].reason.contains(".srs"));
}

#[test]
fn account_values_follow_the_account_type_and_port() {
    let accounts = pop_and_imap();
    let view = View {
        hive: "HKEY_CURRENT_USER",
        accounts: &accounts,
    };
    let m = map(&baseline(), &vars(), &view).unwrap();
    let key1 = r"HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001";
    let tls = settings(&m, "require-tls");
    let repair = |name: &str| {
        tls.iter()
            .find(|(l, _)| l.ends_with(name))
            .map(|(_, e)| match e {
                Expect::OneOf { repair, .. } => repair.clone(),
                Expect::Equals(v) => v.clone(),
                other => panic!("{other:?}"),
            })
            .unwrap()
    };
    // Port 110 gets STARTTLS, 993 and 465 implicit TLS.
    assert_eq!(
        repair(r#"00000001 "POP3 Secure Connection""#),
        Value::Int(2)
    );
    assert_eq!(
        repair(r#"00000002 "IMAP Secure Connection""#),
        Value::Int(1)
    );
    assert_eq!(
        repair(r#"00000002 "SMTP Secure Connection""#),
        Value::Int(1)
    );
    assert_eq!(
        repair(r#"00000001 "SMTP Secure Connection""#),
        Value::Int(2)
    );
    assert_eq!(repair(r#"00000001 "POP3 Use SSL""#), Value::Int(1));

    let leave = settings(&m, "pop-delete-after-fetch");
    assert_eq!(
        leave,
        vec![(
            format!("{key1} \"Leave on Server\""),
            &Expect::Equals(Value::Bool(false))
        )],
        "IMAP accounts have no leave-on-server"
    );
    let secrets: Vec<String> = settings(&m, "no-saved-passwords")
        .into_iter()
        .filter(|(_, e)| **e == Expect::Absent)
        .map(|(l, _)| l.rsplit('"').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(
        secrets,
        [
            "POP3 Password",
            "SMTP Password",
            "IMAP Password",
            "SMTP Password"
        ]
    );
    let reply = &m
        .desired
        .iter()
        .find(|d| d.control == "reply-address")
        .unwrap();
    assert_eq!(reply.location.name, REPLY_EMAIL_UNCONFIRMED);
    assert_eq!(
        reply.note.as_deref(),
        Some(REPLY_EMAIL_NOTE),
        "unconfirmed names say so"
    );
}

#[test]
fn policy_values_carry_the_lock_and_user_values_want_the_ui_lock() {
    let accounts = [account("00000001", AccountKind::Pop3, 995, 587)];
    let view = View {
        hive: "HKEY_CURRENT_USER",
        accounts: &accounts,
    };
    let m = map(&baseline(), &vars(), &view).unwrap();
    let locks = settings(&m, "settings-locked");
    assert!(locks.contains(&(
        r#"HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Setup "modifyaccounts""#.into(),
        &Expect::Equals(Value::Int(1))
    )));
    let wanted_locked: Vec<&Desired<Location>> = m
        .desired
        .iter()
        .filter(|d| d.expect == Expect::Locked)
        .collect();
    assert!(wanted_locked.iter().all(|d| !d.location.form.is_policy()));
    assert!(wanted_locked
        .iter()
        .any(|d| d.location.name == "Level1Remove"));
    assert!(wanted_locked
        .iter()
        .any(|d| d.location.name == "Leave on Server"));
}

#[test]
fn without_accounts_the_policy_part_still_applies() {
    let view = View {
        hive: "HKEY_CURRENT_USER",
        accounts: &[],
    };
    // No user.email needed: nothing uses it without accounts.
    let m = map(&baseline(), &Vars::new(), &view).unwrap();
    let policy: Vec<String> = m
        .policy_part()
        .map(|d| format!("{}\\{}", d.location.key, d.location.name))
        .collect();
    for expected in [
        r"Software\Policies\Microsoft\Office\16.0\Outlook\Security\enablerememberpwd",
        r"Software\Policies\Microsoft\Office\16.0\Outlook\Security\adminsecuritymode",
        r"Software\Policies\Microsoft\Office\16.0\Outlook\Security\fileextensionsaddlevel1",
        r"Software\Policies\Microsoft\Office\16.0\Outlook\Security\fileextensionsaddlevel2",
        r"Software\Policies\Microsoft\Office\16.0\Outlook\disallowattachmentcustomization",
        r"Software\Policies\Microsoft\Office\16.0\Outlook\PST\maxlargefilesize",
        r"Software\Policies\Microsoft\Office\16.0\Outlook\PST\warnlargefilesize",
        r"Software\Policies\Microsoft\Office\16.0\Outlook\Setup\modifyaccounts",
        r"Software\Microsoft\Windows\CurrentVersion\Policies\Attachments\ScanWithAntiVirus",
    ] {
        assert!(policy.iter().any(|p| p == expected), "{expected} missing");
    }
    let na: Vec<&str> = m.not_applicable.iter().map(|n| n.control).collect();
    assert_eq!(
        na,
        [
            "reply-address",
            "mail-check-interval",
            "pop-delete-after-fetch",
            "require-tls",
            "require-smtp-auth"
        ]
    );
}

#[test]
fn an_unresolved_reply_address_names_the_field() {
    let accounts = [account("00000001", AccountKind::Pop3, 995, 587)];
    let view = View {
        hive: "HKEY_CURRENT_USER",
        accounts: &accounts,
    };
    let err = map(&baseline(), &Vars::new(), &view).unwrap_err();
    assert!(
        err.to_string()
            .contains("field `controls.reply-address.value`"),
        "{err}"
    );
}

#[test]
fn the_level_lists_use_outlooks_format() {
    let exts = ["pif", "exe"].map(|e| postwarden_profiles::Extension(e.into()));
    assert_eq!(extension_list(&exts), ".pif;.exe");
}

#[test]
fn unconfirmed_value_names_stay_behind_named_constants() {
    // If one of these is confirmed or corrected on a real Outlook, change the constant, its
    // note and this test together.
    assert_eq!(REPLY_EMAIL_UNCONFIRMED, "Reply E-mail");
    assert_eq!(LEVEL1_ADD_LEGACY_UNCONFIRMED, "Level1Add");
    assert_eq!(LEVEL2_ADD_LEGACY_UNCONFIRMED, "Level2Add");
    assert!(REPLY_EMAIL_NOTE.contains("unconfirmed"));
    assert!(LEGACY_LIST_NOTE.contains("unconfirmed"));
    assert!(SECURE_CONNECTION_NOTE.contains("unconfirmed"));
}

#[test]
fn only_the_protocols_own_tls_port_repairs_to_implicit_tls() {
    // 993 is IMAP's implicit-TLS port, not POP3's; 995 is POP3's, not IMAP's (as Thunderbird).
    let accounts = [
        account("00000001", AccountKind::Pop3, 993, 587),
        account("00000002", AccountKind::Imap, 995, 587),
        account("00000003", AccountKind::Pop3, 995, 587),
    ];
    let view = View {
        hive: "HKEY_CURRENT_USER",
        accounts: &accounts,
    };
    let m = map(&baseline(), &vars(), &view).unwrap();
    let repairs: Vec<(String, Value)> = settings(&m, "require-tls")
        .into_iter()
        .filter_map(|(l, e)| match e {
            Expect::OneOf { repair, .. } if !l.contains("SMTP") => Some((l, repair.clone())),
            _ => None,
        })
        .map(|(l, r)| (l.rsplit('\\').next().unwrap().to_owned(), r))
        .collect();
    assert_eq!(
        repairs,
        [
            (
                r#"00000001 "POP3 Secure Connection""#.to_owned(),
                Value::Int(2)
            ),
            (
                r#"00000002 "IMAP Secure Connection""#.to_owned(),
                Value::Int(2)
            ),
            (
                r#"00000003 "POP3 Secure Connection""#.to_owned(),
                Value::Int(1)
            ),
        ]
    );
}

#[test]
fn the_security_mode_gate_is_explained_wherever_it_is_wanted() {
    let view = View {
        hive: "HKEY_CURRENT_USER",
        accounts: &[],
    };
    let m = map(&baseline(), &vars(), &view).unwrap();
    let gates: Vec<(&str, Option<&str>)> = m
        .desired
        .iter()
        .filter(|d| d.location.name == "adminsecuritymode")
        .map(|d| (d.control, d.note.as_deref()))
        .collect();
    assert_eq!(
        gates,
        [
            ("attachments-save-before-open", Some(SECURITY_MODE_NOTE)),
            ("blocked-attachment-types", Some(SECURITY_MODE_NOTE)),
        ]
    );
}
