use super::*;
use crate::builtin;

const MINIMAL: &str = r#"
id = "t"
version = 3
title = "Test"

[controls.mail-check-interval]
title = "Check"
severity = "low"
rationale = "r"
reference = "BSI M 5.57"
remediation = "1. fix"
value = { minutes = 30 }
"#;

/// Parses `text` as `p.toml` and returns the error rendered as the CLI prints it.
fn err(text: &str) -> String {
    Profile::parse("p.toml", text).unwrap_err().to_string()
}

fn with_control(body: &str) -> String {
    format!(
        "id = \"t\"\nversion = 1\ntitle = \"T\"\n\n[controls.{body}\ntitle = \"x\"\nseverity = \"high\"\nrationale = \"r\"\nreference = \"ref\"\nremediation = \"m\"\n"
    )
}

#[test]
fn minimal_profile_parses_with_defaults() {
    let p = Profile::parse("p.toml", MINIMAL).unwrap();
    assert_eq!(p.version, ProfileVersion(3));
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.controls.len(), 1);
    let c = &p.controls[0];
    assert_eq!(c.id, ControlId::MailCheckInterval);
    assert_eq!(c.value, ControlValue::MailCheckInterval { minutes: 30 });
    assert_eq!(c.mode, Mode::Enforce);
    assert_eq!(c.origin, "p.toml:12:9");
}

#[test]
fn builtin_baseline_has_every_control() {
    let p = builtin::load("bsi-m5.57").unwrap().unwrap();
    let ids: Vec<&str> = p.controls.iter().map(|c| c.id.as_str()).collect();
    let all: Vec<&str> = ControlId::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(ids, all);
    assert_eq!(p.id.0, "bsi-m5.57");
    match &p.control(ControlId::BlockedAttachmentTypes).unwrap().value {
        ControlValue::BlockedAttachmentTypes { extensions } => {
            let e: Vec<&str> = extensions.iter().map(|e| e.0.as_str()).collect();
            assert_eq!(e, ["pif", "scr", "vbs", "exe", "cmd", "com", "bat", "hta"]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn per_control_mode_overrides_default() {
    let text = MINIMAL.replace("value = {", "mode = \"audit\"\nvalue = {");
    let p = Profile::parse("p.toml", &text).unwrap();
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.controls[0].mode, Mode::Audit);
}

#[test]
fn errors_name_file_line_column_and_field() {
    let cases: &[(&str, &str)] = &[
        (
            "id = \"t\"\nversion = 1\ntitle = \"T\"\nbogus = 1\n",
            "p.toml:4:1: field `bogus`: unknown field `bogus`",
        ),
        (
            "id = \"t\"\nversion = \"one\"\ntitle = \"T\"\n",
            "p.toml:2:11: field `version`: invalid type: string \"one\", expected i64",
        ),
        (
            "id = \"t\"\nversion = 0\ntitle = \"T\"\n",
            "p.toml:2:11: field `version`: version must be a whole number of at least 1, got 0",
        ),
        (
            "id = \"t\"\nversion = 1\ntitle = \"T\"\n[controls.no-such-thing]\ntitle = \"x\"\nseverity = \"low\"\nrationale = \"r\"\nreference = \"r\"\nremediation = \"r\"\nvalue = 1\n",
            "p.toml:4:11: field `controls.no-such-thing`: unknown control `no-such-thing`",
        ),
        (
            "id = \"t\"\nversion = 1\ntitle = \"T\"\nmode = \"lenient\"\n",
            "p.toml:4:8: field `mode`: unknown variant `lenient`, expected `enforce` or `audit`",
        ),
        (
            "id = \"t\"\nversion = 1\ntitle = \"T\"\nformat = 2\n",
            "p.toml:4:10: field `format`: unsupported profile format 2",
        ),
        ("id = \"t\"\nversion = 1\ntitle = \"T\n", "p.toml:3:11: field `title`: invalid basic string"),
    ];
    for (text, want) in cases {
        let got = err(text);
        assert!(got.starts_with(want), "got {got:?}\nwant prefix {want:?}");
    }
}

#[test]
fn control_values_are_typed_and_range_checked() {
    let cases: &[(&str, &str)] = &[
        (
            "mail-check-interval]\nvalue = { minutes = 0 }",
            "field `controls.mail-check-interval.value.minutes`: 0 minutes is out of range (2 to 1440",
        ),
        (
            "mail-check-interval]\nvalue = { minutes = 1 }",
            "1 minutes is out of range (2 to 1440; 1 cannot be locked in Thunderbird",
        ),
        (
            "mail-check-interval]\nvalue = { minutes = \"30\" }",
            "field `controls.mail-check-interval.value`: invalid type: string \"30\", expected u32",
        ),
        (
            "mail-check-interval]\nvalue = { minutes = 30, hours = 1 }",
            "field `controls.mail-check-interval.value`: unknown field `hours`",
        ),
        (
            "require-tls]\nvalue = { minimum = \"ssl3\" }",
            "field `controls.require-tls.value`: unknown variant `ssl3`",
        ),
        (
            "no-saved-passwords]\nvalue = false",
            "field `controls.no-saved-passwords.value`: this control can only be `true`",
        ),
        (
            "reply-address]\nvalue = \"{{ user.email\"",
            "field `controls.reply-address.value`: unterminated placeholder",
        ),
        (
            "reply-address]\nvalue = \"nobody\"",
            "field `controls.reply-address.value`: \"nobody\" is not a mail address",
        ),
        (
            "blocked-attachment-types]\nvalue = { extensions = [\"exe\", \"a b\"] }",
            "field `controls.blocked-attachment-types.value.extensions`: \"a b\" is not a file extension",
        ),
        (
            "mailbox-size-limit]\nvalue = { warning_percent = 90, warning_mb = 10, maximum_mb = 5 }",
            "field `controls.mailbox-size-limit.value.warning_mb`: warning_mb (10) must be above 0 and below maximum_mb (5)",
        ),
    ];
    for (body, want) in cases {
        let got = err(&with_control(body));
        assert!(got.contains(want), "got {got:?}\nwant {want:?}");
        assert!(
            got.starts_with("p.toml:6:"),
            "value errors point at line 6: {got}"
        );
    }
}

#[test]
fn missing_control_field_is_named() {
    let text = "id = \"t\"\nversion = 1\ntitle = \"T\"\n[controls.settings-locked]\nvalue = true\n";
    let got = err(text);
    assert!(got.contains("missing field `title`"), "{got}");
    assert!(got.starts_with("p.toml:4:"), "{got}");
}

#[test]
fn extensions_are_normalised() {
    let p = Profile::parse(
        "p.toml",
        &with_control(
            "blocked-attachment-types]\nvalue = { extensions = [\"*.EXE\", \".bat\", \"exe\"] }",
        ),
    )
    .unwrap();
    assert_eq!(
        p.controls[0].value,
        ControlValue::BlockedAttachmentTypes {
            extensions: vec![Extension("exe".into()), Extension("bat".into())]
        }
    );
}

#[test]
fn raw_thunderbird_prefs_follow_the_policy_allow_list() {
    let base = "id = \"t\"\nversion = 1\ntitle = \"T\"\n[raw.thunderbird.prefs]\n";
    let ok = Profile::parse(
        "p.toml",
        &format!("{base}\"mail.compose.attachment_reminder\" = true\n\"mailnews.start_page.enabled\" = false\n\"mail.default_html_action\" = 3\n"),
    )
    .unwrap();
    let raw = ok.raw_thunderbird.unwrap();
    assert_eq!(raw.prefs.len(), 3);
    assert_eq!(raw.mode, Mode::Enforce);
    assert_eq!(raw.severity, Severity::Low);

    let got = err(&format!("{base}\"security.tls.version.min\" = 3\n"));
    assert!(
        got.starts_with("p.toml:5:1: field `raw.thunderbird.prefs.\"security.tls.version.min\"`: Thunderbird's policy engine only accepts"),
        "{got}"
    );
    let got = err(&format!("{base}\"mail.x\" = 1\n"));
    assert!(got.contains("integer 1 is ambiguous"), "{got}");
    let got = err(&format!("{base}\"mail.x\" = [1]\n"));
    assert!(got.contains("not array"), "{got}");
}

fn account_vars(extra: &[(&str, &str)]) -> crate::Vars {
    let mut v: crate::Vars = [
        ("mail.account_type", "imap"),
        ("mail.incoming_host", "imap.example.org"),
        ("mail.outgoing_host", "smtp.example.org"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, val) in extra {
        v.insert(k.to_string(), val.to_string());
    }
    v
}

#[test]
fn the_account_resolves_from_variables_with_standard_ports() {
    let p = builtin::load("bsi-m5.57").unwrap().unwrap();
    let account = p.account.expect("the baseline has an [account]");
    let r = account.resolve(&account_vars(&[])).unwrap();
    assert_eq!(r.account_type, AccountType::Imap);
    assert_eq!((r.incoming_port, r.outgoing_port), (993, 587));
    let r = account
        .resolve(&account_vars(&[
            ("mail.account_type", "pop"),
            ("mail.outgoing_port", "465"),
        ]))
        .unwrap();
    assert_eq!((r.incoming_port, r.outgoing_port), (995, 465));
}

#[test]
fn account_errors_name_where_the_field_is() {
    let p = builtin::load("bsi-m5.57").unwrap().unwrap();
    let account = p.account.unwrap();
    let e = account
        .resolve(&account_vars(&[("mail.account_type", "exchange")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("builtin:bsi-m5.57:")
            && e.contains("field `account.type`: \"exchange\" is not an account type"),
        "{e}"
    );
    let e = account
        .resolve(&account_vars(&[("mail.incoming_port", "99999")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("field `account.incoming_port`: \"99999\" is not a port"),
        "{e}"
    );
    let e = account
        .resolve(&account_vars(&[("mail.outgoing_host", "smtp://x.example")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a host name"), "{e}");
    let mut vars = account_vars(&[]);
    vars.remove("mail.incoming_host");
    let e = account.resolve(&vars).unwrap_err().to_string();
    assert!(e.contains("pass --var mail.incoming_host=VALUE"), "{e}");
}

#[test]
fn the_account_section_is_strict() {
    let base = "id = \"t\"\nversion = 1\ntitle = \"T\"\n[account]\ntype = \"imap\"\nincoming_host = \"a\"\noutgoing_host = \"b\"\n";
    assert!(Profile::parse("p.toml", base).unwrap().account.is_some());
    let got = err(&format!("{base}password = \"x\"\n"));
    assert!(got.starts_with("p.toml:8:1:"), "{got}");
    let got = err(&base.replace("\"a\"", "\"{{ Bad Name }}\""));
    assert!(got.contains("field `account.incoming_host`"), "{got}");
}

/// Found by fuzzing (`agent/fuzz/regressions/profile_toml/empty-message-*`): the toml crate has
/// no message for these syntax errors, and the user saw `file:1:6: field `id`: ` and nothing.
#[test]
fn every_syntax_error_has_a_message() {
    for text in [
        "id = ",
        "id = \"x\"\r",
        "# a comment with a \0\nid = \"x\"\n",
    ] {
        let e = Profile::parse("p.toml", text).unwrap_err();
        assert!(!e.message.trim().is_empty(), "{text:?}: {e}");
        assert!(e.to_string().starts_with("p.toml:1:"), "{e}");
    }
}

#[test]
fn agent_section_defaults_to_telling_the_user_every_five_minutes() {
    let p = Profile::parse("p.toml", MINIMAL).unwrap();
    assert_eq!(p.agent, AgentSettings::default());
    assert!(p.agent.notify_user);
    assert_eq!(p.agent.notify_interval_secs, 300);
}

#[test]
fn agent_section_sets_the_notification_switch_and_interval() {
    let text = format!("{MINIMAL}\n[agent]\nnotify_user = false\nnotify_interval = 60\n");
    let p = Profile::parse("p.toml", &text).unwrap();
    assert_eq!(
        p.agent,
        AgentSettings {
            notify_user: false,
            notify_interval_secs: 60
        }
    );
}

#[test]
fn agent_section_errors_name_the_field_and_line() {
    let text = format!("{MINIMAL}\n[agent]\nnotify_interval = 5\n");
    let e = err(&text);
    assert!(
        e.starts_with("p.toml:15:19: field `agent.notify_interval`"),
        "{e}"
    );
    let e = err(&format!("{MINIMAL}\n[agent]\nnotify = true\n"));
    assert!(e.contains("unknown field `notify`"), "{e}");
}
