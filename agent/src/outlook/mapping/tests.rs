use postwarden_profiles::{builtin, Vars};

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

fn vars() -> Vars {
    let mut v = Vars::new();
    v.insert("user.email".into(), "alice@example.org".into());
    v
}

fn baseline() -> Profile {
    builtin::load("bsi-m5.57").unwrap().unwrap()
}

fn settings<'a>(m: &'a Mapped, control: &str) -> Vec<(String, &'a Expect)> {
    m.desired
        .iter()
        .filter(|d| d.control == control)
        .map(|d| (d.location.to_string(), &d.expect))
        .collect()
}

#[test]
fn every_control_is_mapped_or_explained() {
    let accounts = [
        account("00000001", AccountKind::Pop3, 110, 25),
        account("00000002", AccountKind::Imap, 993, 465),
    ];
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
    let na: Vec<&str> = m
        .not_applicable
        .iter()
        .map(|n| n.control.as_str())
        .collect();
    assert_eq!(
        na,
        ["mail-check-interval"],
        "only the .srs interval has no registry form"
    );
    assert!(m.not_applicable[0].reason.contains(".srs"));
}

#[test]
fn account_values_follow_the_account_type_and_port() {
    let accounts = [
        account("00000001", AccountKind::Pop3, 110, 25),
        account("00000002", AccountKind::Imap, 993, 465),
    ];
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
    let wanted_locked: Vec<&Desired<OlLocation>> = m
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
    let na: Vec<&str> = m
        .not_applicable
        .iter()
        .map(|n| n.control.as_str())
        .collect();
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
