//! The report is a contract: its JSON is pinned here, and so is the text an auditor reads.
//! Update deliberately with `UPDATE_EXPECT=1 cargo test -p postwarden-profiles`.

use expect_test::expect;
use serde_json::json;

use super::*;
use crate::builtin;

fn finding(control: &str, target: &str, setting: &str, status: Status) -> Finding {
    Finding {
        control: control.into(),
        client: Client::Thunderbird,
        scope: "/home/alice/.thunderbird/x.default".into(),
        target: target.into(),
        setting: Some(setting.into()),
        status,
        expected: json!(30),
        actual: json!(5),
        previous: None,
        locked: Some(false),
        reason: None,
        note: None,
        overridden_by: None,
    }
}

fn sample(run: RunKind) -> Report {
    let profile = builtin::load("bsi-m5.57").unwrap().unwrap();
    let findings = vec![
        finding(
            "mail-check-interval",
            "server1 (pop3 alice@pop.example.org)",
            "mail.server.server1.check_time",
            Status::Drifted,
        ),
        Finding {
            expected: json!({"one_of": [2, 3]}),
            actual: json!(3),
            locked: Some(true),
            ..finding(
                "require-tls",
                "server2 (imap alice@imap.example.org)",
                "mail.server.server2.socketType",
                Status::Compliant,
            )
        },
        Finding {
            expected: json!("locked"),
            actual: json!("unlocked"),
            locked: None,
            reason: Some("enforced, not locked: shared machine-wide".into()),
            ..finding(
                "settings-locked",
                "identity id1 <alice@example.org>",
                "mail.identity.id1.reply_to",
                Status::Failed,
            )
        },
        Finding {
            expected: json!(false),
            actual: json!(false),
            previous: Some(json!(true)),
            locked: Some(true),
            ..finding(
                "no-saved-passwords",
                "profile",
                "signon.rememberSignons",
                Status::PendingRestart,
            )
        },
        Finding {
            setting: None,
            expected: Json::Null,
            actual: Json::Null,
            locked: None,
            reason: Some("Thunderbird has no setting that blocks attachments by type".into()),
            ..finding(
                "blocked-attachment-types",
                "profile",
                "",
                Status::NotApplicable,
            )
        },
    ];
    Report::new(run, &profile, findings, Some("2026-11-22T12:00:00Z".into()))
}

#[test]
fn json_contract_v1() {
    let mut v = serde_json::to_value(sample(RunKind::Check)).unwrap();
    // The control metadata is the profile's text; the contract is its shape.
    v["controls"] = json!(v["controls"].as_array().unwrap().len());
    expect![[r#"
        {
          "schema": "postwarden.report/v1",
          "run": "check",
          "compliant": false,
          "profile": {
            "id": "bsi-m5.57",
            "version": 1,
            "title": "BSI IT-Grundschutz M 5.57: secure configuration of mail clients"
          },
          "generated_at": "2026-11-22T12:00:00Z",
          "controls": 11,
          "findings": [
            {
              "control": "mail-check-interval",
              "client": "thunderbird",
              "scope": "/home/alice/.thunderbird/x.default",
              "target": "server1 (pop3 alice@pop.example.org)",
              "setting": "mail.server.server1.check_time",
              "status": "drifted",
              "expected": 30,
              "actual": 5,
              "locked": false
            },
            {
              "control": "require-tls",
              "client": "thunderbird",
              "scope": "/home/alice/.thunderbird/x.default",
              "target": "server2 (imap alice@imap.example.org)",
              "setting": "mail.server.server2.socketType",
              "status": "compliant",
              "expected": {
                "one_of": [
                  2,
                  3
                ]
              },
              "actual": 3,
              "locked": true
            },
            {
              "control": "settings-locked",
              "client": "thunderbird",
              "scope": "/home/alice/.thunderbird/x.default",
              "target": "identity id1 <alice@example.org>",
              "setting": "mail.identity.id1.reply_to",
              "status": "failed",
              "expected": "locked",
              "actual": "unlocked",
              "reason": "enforced, not locked: shared machine-wide"
            },
            {
              "control": "no-saved-passwords",
              "client": "thunderbird",
              "scope": "/home/alice/.thunderbird/x.default",
              "target": "profile",
              "setting": "signon.rememberSignons",
              "status": "pending_restart",
              "expected": false,
              "actual": false,
              "previous": true,
              "locked": true
            },
            {
              "control": "blocked-attachment-types",
              "client": "thunderbird",
              "scope": "/home/alice/.thunderbird/x.default",
              "target": "profile",
              "status": "not_applicable",
              "expected": null,
              "actual": null,
              "reason": "Thunderbird has no setting that blocks attachments by type"
            }
          ]
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&v).unwrap());
}

#[test]
fn json_round_trips() {
    let r = sample(RunKind::Apply);
    let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn caveats_are_reported_as_not_verified() {
    let mut r = sample(RunKind::Check);
    assert!(!serde_json::to_string(&r).unwrap().contains("caveats"));
    r.caveats.push("policy location unverified".into());
    assert!(r
        .render_text(None)
        .contains("NOT VERIFIED\n  • policy location unverified\n"));
    assert!(serde_json::to_string(&r)
        .unwrap()
        .contains("\"caveats\":[\"policy location unverified\"]"));
}

#[test]
fn text_report_reads_like_an_audit() {
    expect![[r#"
        POSTWARDEN COMPLIANCE REPORT
        Profile   bsi-m5.57 (version 1): BSI IT-Grundschutz M 5.57: secure configuration of mail clients
        Run       check (read only, nothing was changed)
        Time      2026-11-22T12:00:00Z
        Result    NOT COMPLIANT: 3 of 5 checks need attention
        Counts    1 compliant, 0 repaired, 1 drifted, 1 pending restart, 1 failed, 1 not applicable

        Thunderbird: /home/alice/.thunderbird/x.default

          Automatic mail check every 30 minutes  [mail-check-interval · low · BSI M 5.57]
            ✗ server1 (pop3 alice@pop.example.org): mail.server.server1.check_time = 5, expected 30: drifted

          No saved passwords  [no-saved-passwords · high · BSI M 5.57]
            ◷ profile: signon.rememberSignons = false (was true): pending restart [locked]

          Dangerous attachment types are blocked  [blocked-attachment-types · high · MDaemon audit (content filter), BSI M 5.57]
            – profile: not applicable
                Thunderbird has no setting that blocks attachments by type

          Mail connections are encrypted (SSL/TLS or STARTTLS)  [require-tls · high · MDaemon audit (SSL, STARTTLS and STLS), IMail security levels]
            ✓ server2 (imap alice@imap.example.org): mail.server.server2.socketType = 3 [locked]

          Users cannot change the enforced settings  [settings-locked · high · BSI M 5.57]
            ✗ identity id1 <alice@example.org>: mail.identity.id1.reply_to is not locked: failed
                enforced, not locked: shared machine-wide

        CONCLUSION
          The configuration has serious deviations from the profile: 3 open findings (2 high, 0 medium, 1 low priority). 1 fix takes effect when the mail client restarts. Run `postwarden-agent apply` to repair what the profile enforces. 1 check cannot be enforced in the client and must be covered on the server or gateway (see below).

        RECOMMENDATIONS

          High priority
          • No saved passwords (no-saved-passwords): 1 open finding
              ◷ profile (signon.rememberSignons): pending_restart
              1. Switch off the client's offer to save passwords and lock it.
              2. Delete the mail passwords the client already stores.
              3. Tell users they will be asked for their password at each start.
          • Users cannot change the enforced settings (settings-locked): 1 open finding
              ✗ identity id1 <alice@example.org> (mail.identity.id1.reply_to): failed
              1. Lock every enforced setting with the client's own mechanism (Thunderbird: policies.json with "Status": "locked"; Outlook: policy keys; Apple Mail: a configuration profile).
              2. Tell users that these settings are managed and cannot be changed.

          Medium priority
          • No recommendation

          Low priority
          • Automatic mail check every 30 minutes (mail-check-interval): 1 open finding
              ✗ server1 (pop3 alice@pop.example.org) (mail.server.server1.check_time): drifted
              1. Turn on the automatic check for new mail on every incoming server.
              2. Set its interval to 30 minutes.
              3. Lock both settings (control settings-locked).

        OUTSIDE THE CLIENT'S REACH
          • Dangerous attachment types are blocked (blocked-attachment-types) on Thunderbird: Thunderbird has no setting that blocks attachments by type
              1. Block these attachment types in the client where it can (Outlook: Level 1 attachments).
              2. Where the client cannot block them (Thunderbird, Apple Mail), block them on the mail server or gateway content filter, and inspect ZIP archives for them too.

        NOTE
          The results reflect the configuration at the time of the run. Values were read from the clients' own configuration (files, registry) as the client itself resolves them (locks, user values, defaults); "pending restart" means the client reads the fix at its next start.
    "#]]
    .assert_eq(&sample(RunKind::Check).render_text(Some(REPAIR_HINT)));
}

const REPAIR_HINT: &str = "Run `postwarden-agent apply` to repair what the profile enforces.";

#[test]
fn the_repair_hint_is_the_callers() {
    let r = sample(RunKind::Check);
    let cli = r.render_text(Some("Run `postwarden-agent apply` to repair."));
    assert!(
        cli.contains("Run `postwarden-agent apply` to repair."),
        "{cli}"
    );
    let server = r.render_text(None);
    assert!(!server.contains("postwarden-agent"), "{server}");
    assert!(
        !sample(RunKind::Apply)
            .render_text(Some(REPAIR_HINT))
            .contains(REPAIR_HINT),
        "an apply run has repaired what it could"
    );
}

#[test]
fn a_client_that_could_not_be_read_shows_no_values() {
    let mut r = sample(RunKind::Apply);
    r.findings = vec![Finding {
        control: "mail-check-interval".into(),
        client: Client::Thunderbird,
        scope: "/home/alice/.thunderbird/x/prefs.js".into(),
        target: "configuration".into(),
        setting: None,
        status: Status::Failed,
        expected: Json::Null,
        actual: Json::Null,
        previous: None,
        locked: None,
        reason: Some("Thunderbird could not be checked or changed: prefs.js:2:41: unterminated string literal".into()),
        note: None,
        overridden_by: None,
    }];
    let text = r.render_text(None);
    assert!(text.contains("    ✗ configuration: failed\n"), "{text}");
    assert!(text.contains("prefs.js:2:41: unterminated"), "{text}");
}
