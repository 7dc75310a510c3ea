use postwarden_engine::{Desired, Expect, Value};
use postwarden_profiles::report::Client;
use postwarden_profiles::{ControlId, Extension, Mode, Profile, TlsMinimum, Vars};
use postwarden_test_support::{baseline, baseline_text, vars};

use super::*;

const SOCKET: TlsCodes = TlsCodes {
    starttls: 2,
    implicit: 3,
};
const ENCRYPT_CONN: TlsCodes = TlsCodes {
    starttls: 2,
    implicit: 1,
};

fn one_of(accepted: &[i64], repair: i64) -> Expect {
    Expect::OneOf {
        accepted: accepted.iter().copied().map(Value::Int).collect(),
        repair: Value::Int(repair),
    }
}

#[test]
fn tls_accepts_by_minimum_and_repairs_by_port() {
    use TlsMinimum::{Starttls, Tls};
    let cases = [
        // (minimum, port, tls ports, codes, expected)
        (
            Starttls,
            Some(143),
            IMAP_TLS_PORTS,
            SOCKET,
            one_of(&[2, 3], 2),
        ),
        (
            Starttls,
            Some(993),
            IMAP_TLS_PORTS,
            SOCKET,
            one_of(&[2, 3], 3),
        ),
        (Starttls, None, IMAP_TLS_PORTS, SOCKET, one_of(&[2, 3], 2)),
        (
            Starttls,
            Some(465),
            SMTP_TLS_PORTS,
            SOCKET,
            one_of(&[2, 3], 3),
        ),
        (
            Starttls,
            Some(587),
            SMTP_TLS_PORTS,
            SOCKET,
            one_of(&[2, 3], 2),
        ),
        (Tls, Some(143), IMAP_TLS_PORTS, SOCKET, one_of(&[3], 3)),
        (Tls, None, POP3_TLS_PORTS, SOCKET, one_of(&[3], 3)),
        // Outlook's codes run the other way round; accepted codes stay in ascending order.
        (
            Starttls,
            Some(110),
            POP3_TLS_PORTS,
            ENCRYPT_CONN,
            one_of(&[1, 2], 2),
        ),
        (
            Starttls,
            Some(995),
            POP3_TLS_PORTS,
            ENCRYPT_CONN,
            one_of(&[1, 2], 1),
        ),
        (
            Tls,
            Some(110),
            POP3_TLS_PORTS,
            ENCRYPT_CONN,
            one_of(&[1], 1),
        ),
    ];
    for (minimum, port, tls_ports, codes, expected) in cases {
        assert_eq!(
            tls_expectation(minimum, port, tls_ports, codes),
            expected,
            "{minimum:?} on {port:?} (TLS ports {tls_ports:?}, {codes:?})"
        );
    }
}

#[test]
fn tls_ports_are_per_protocol() {
    // A server on another protocol's implicit-TLS port keeps STARTTLS: the port says nothing
    // about how a POP3 server on 993 speaks.
    assert_eq!(
        tls_expectation(TlsMinimum::Starttls, Some(993), POP3_TLS_PORTS, SOCKET),
        one_of(&[2, 3], 2)
    );
    assert_eq!(
        tls_expectation(TlsMinimum::Starttls, Some(995), IMAP_TLS_PORTS, SOCKET),
        one_of(&[2, 3], 2)
    );
}

#[test]
fn the_builder_records_the_control_client_scope_and_the_given_note() {
    let profile = baseline();
    let control = profile.control(ControlId::AttachmentScanning).unwrap();
    let mut out: Mapped<String> = Mapped::default();
    let mut b = Builder::new(&mut out, control, Client::Outlook, "policy key");
    b.want("Outlook", "a".to_owned(), Expect::Absent, None);
    b.at("account key")
        .want("account 1", "b".to_owned(), Expect::Absent, Some("why"));
    b.not_applicable("accounts", "no account");
    let mut raw = Builder::raw(&mut out, "raw.x", Mode::Audit, Client::Thunderbird, "p");
    raw.want("profile", "c".to_owned(), Expect::Absent, None);

    let got: Vec<String> = out
        .desired
        .iter()
        .map(|d| {
            format!(
                "{} {:?} {} {} {} {} {:?}",
                d.control, d.client, d.scope, d.target, d.location, d.mode, d.note
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "attachment-scanning Outlook policy key Outlook a enforce None",
            "attachment-scanning Outlook account key account 1 b enforce Some(\"why\")",
            "raw.x Thunderbird p profile c audit None",
        ]
    );
    let na = &out.not_applicable[0];
    assert_eq!(
        (na.control, &*na.scope, &*na.target),
        ("attachment-scanning", "policy key", "accounts")
    );
    assert_eq!(na.reason, "no account");
}

fn desired(control: &'static str, location: &str, mode: Mode) -> Desired<String> {
    Desired {
        control,
        client: Client::Thunderbird,
        scope: "s".into(),
        target: "t".into(),
        location: location.to_owned(),
        expect: Expect::Equals(Value::Bool(true)),
        mode,
        note: Some("the setting's own note".into()),
    }
}

fn locks_of(m: &Mapped<String>) -> Vec<String> {
    m.desired
        .iter()
        .filter(|d| d.expect == Expect::Locked)
        .map(|d| format!("{} {} {} {:?}", d.control, d.location, d.mode, d.note))
        .collect()
}

#[test]
fn locks_cover_enforced_settings_the_client_can_lock() {
    let profile = baseline();
    let mut m = Mapped {
        desired: vec![
            desired("a", "pref.one", Mode::Enforce),
            desired("b", "pref.audited", Mode::Audit),
            desired("c", "file", Mode::Enforce),
        ],
        not_applicable: Vec::new(),
    };
    derive_locks(
        &mut m,
        profile.control(ControlId::SettingsLocked),
        |d| d.location.starts_with("pref."),
        Some("lock note"),
    );
    assert_eq!(
        locks_of(&m),
        ["settings-locked pref.one enforce Some(\"lock note\")"]
    );
    assert_eq!(m.desired.len(), 4, "the settings themselves stay");
}

#[test]
fn locks_take_the_lock_controls_mode_and_need_the_control() {
    let text = baseline_text().replace(
        "[controls.settings-locked]\n",
        "[controls.settings-locked]\nmode = \"audit\"\n",
    );
    let audited = Profile::parse("p.toml", &text).unwrap();
    let mut m = Mapped {
        desired: vec![desired("a", "pref.one", Mode::Enforce)],
        not_applicable: Vec::new(),
    };
    derive_locks(
        &mut m,
        audited.control(ControlId::SettingsLocked),
        |_| true,
        None,
    );
    assert_eq!(locks_of(&m), ["settings-locked pref.one audit None"]);

    let mut m = Mapped {
        desired: vec![desired("a", "pref.one", Mode::Enforce)],
        not_applicable: Vec::new(),
    };
    derive_locks(&mut m, None, |_| true, None);
    assert!(locks_of(&m).is_empty(), "no settings-locked, no locks");
}

#[test]
fn blocked_types_are_listed_as_globs() {
    let exts = ["pif", "exe"].map(|e| Extension(e.into()));
    assert_eq!(extension_globs(&exts), "*.pif *.exe");
    assert_eq!(extension_globs(&[]), "");
}

#[test]
fn templates_that_resolve_pass() {
    assert_eq!(check_templates(&baseline(), &vars()), Ok(()));
}

#[test]
fn a_literal_reply_address_needs_no_variables() {
    let text = baseline_text().replace(
        "value = \"{{ user.email }}\"",
        "value = \"office@example.org\"",
    );
    let p = Profile::parse("p.toml", &text).unwrap();
    assert_eq!(check_templates(&p, &Vars::new()), Ok(()));
}

#[test]
fn an_unresolved_template_is_refused_as_every_client_would_refuse_it() {
    let profile = baseline();
    let err = check_templates(&profile, &Vars::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "builtin:bsi-m5.57:27:9: field `controls.reply-address.value`: template variable \
         `user.email` has no value (pass --var user.email=VALUE)"
    );
    assert_eq!(err.control, ControlId::ReplyAddress);

    // The clients' own error, once they render the template (Thunderbird and Outlook only
    // render it for an identity or account).
    let prefs = crate::thunderbird::prefs::PrefsFile::parse(
        "user_pref(\"mail.accountmanager.accounts\", \"account1\");\n\
         user_pref(\"mail.account.account1.server\", \"server1\");\n\
         user_pref(\"mail.account.account1.identities\", \"id1\");\n\
         user_pref(\"mail.server.server1.type\", \"imap\");\n\
         user_pref(\"mail.identity.id1.useremail\", \"alice@example.org\");\n",
    )
    .unwrap();
    let tb_accounts = crate::thunderbird::accounts::read(|n| prefs.get_user(n).cloned());
    let views = [crate::thunderbird::ProfileView {
        scope: "p",
        accounts: &tb_accounts,
    }];
    let ol_accounts = [crate::outlook::accounts::Account {
        hive: "HKEY_CURRENT_USER".into(),
        profile: "Outlook".into(),
        id: "00000001".into(),
        kind: crate::outlook::accounts::AccountKind::Imap,
        name: None,
        email: Some("alice@example.org".into()),
        incoming_server: None,
        incoming_port: None,
        smtp_server: None,
        smtp_port: None,
    }];
    let ol_view = crate::outlook::View {
        hive: "HKEY_CURRENT_USER",
        accounts: &ol_accounts,
    };
    let vars = Vars::new();
    let clients = [
        crate::thunderbird::map(&profile, &vars, &views, "pol").map(|_| ()),
        crate::outlook::map(&profile, &vars, &ol_view).map(|_| ()),
        crate::applemail::map(&profile, &vars, "/Users/alice").map(|_| ()),
    ];
    for got in clients {
        assert_eq!(got, Err(err.clone()));
    }
}
