//! End to end for Outlook: the agent's Windows build (`postwarden-agent.exe`) against Wine's
//! real registry, seeded with a realistic Outlook profile (`agent/tests/data/outlook/noncompliant.reg`:
//! a POP3 and an IMAP account, saved passwords, leave-on-server, a user's unblocked attachment
//! types, a permissive policy). Results are read back with `wine reg export` and parsed with our
//! `.reg` reader. No Outlook runs: this proves what the agent writes, not what Outlook does with
//! it (see docs/adr/0002-outlook-through-the-registry.md).

use std::collections::BTreeMap;

use postwarden_e2e::wine::WinePrefix;
use postwarden_registry::regfile::{Op, RegFile};
use postwarden_registry::RegValue;
use postwarden_test_support::report::statuses;
use serde_json::Value as Json;

const FIXTURE: &[u8] = include_bytes!("../../agent/tests/data/outlook/noncompliant.reg");
const ACCOUNTS: &str = r"HKEY_CURRENT_USER\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676";
const POLICIES: &str = r"HKEY_CURRENT_USER\Software\Policies\Microsoft\Office\16.0\Outlook";
const PROFILE_ARGS: &[&str] = &[
    "--profile",
    "builtin:bsi-m5.57",
    "--var",
    "user.email=alice@example.org",
    "--client",
    "outlook",
];

fn seeded() -> WinePrefix {
    let prefix = WinePrefix::new().unwrap_or_else(|e| panic!("{e:#}"));
    prefix.reg_import(FIXTURE).unwrap();
    prefix
}

fn agent(prefix: &WinePrefix, cmd: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec![cmd];
    args.extend_from_slice(PROFILE_ARGS);
    args.extend_from_slice(extra);
    let out = prefix.agent(&args).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "postwarden-agent.exe {cmd} exited {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, stdout)
}

fn report(prefix: &WinePrefix, cmd: &str) -> (i32, Json) {
    let (code, out) = agent(prefix, cmd, &["--format", "json"]);
    (
        code,
        serde_json::from_str(&out).expect("the report is JSON"),
    )
}

/// Every value of every key of an export: `key -> name -> value`.
fn values(file: &RegFile) -> BTreeMap<String, BTreeMap<String, RegValue>> {
    file.sections
        .iter()
        .map(|s| {
            let vals = s
                .entries
                .iter()
                .filter_map(|e| match &e.op {
                    Op::Set(v) => Some((e.name.to_ascii_lowercase(), v.clone())),
                    Op::Delete => None,
                })
                .collect();
            (s.key.to_string().to_ascii_lowercase(), vals)
        })
        .collect()
}

fn value(
    all: &BTreeMap<String, BTreeMap<String, RegValue>>,
    key: &str,
    name: &str,
) -> Option<RegValue> {
    all.get(&key.to_ascii_lowercase())
        .and_then(|v| v.get(&name.to_ascii_lowercase()))
        .cloned()
}

#[test]
fn check_apply_check_restore_against_wines_registry() {
    let prefix = seeded();
    let before = prefix
        .reg_export_bytes(r"HKCU\Software")
        .unwrap()
        .expect("HKCU\\Software exists");

    let (code, check) = report(&prefix, "check");
    assert_eq!(code, 1, "the seeded profile is not compliant");
    let counts = statuses(&check);
    assert!(counts["drifted"] >= 40, "{counts:?}");
    assert_eq!(counts["not_applicable"], 1, "{counts:?}");
    assert!(check["caveats"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.as_str().unwrap().contains("no Outlook ran")));

    let (code, apply) = report(&prefix, "apply");
    assert_eq!(code, 0, "{apply:#}");
    let counts = statuses(&apply);
    assert_eq!(counts.get("failed"), None, "{apply:#}");
    assert!(counts["repaired"] >= 40, "{counts:?}");

    // What the registry holds now, read by Wine's reg.exe and our .reg reader.
    let accounts = values(&prefix.reg_export(ACCOUNTS).unwrap().unwrap());
    let pop = format!(r"{ACCOUNTS}\00000001");
    let imap = format!(r"{ACCOUNTS}\00000002");
    assert_eq!(
        value(&accounts, &pop, "Leave on Server"),
        Some(RegValue::Dword(0x000e_0002)),
        "only the leave-on-server bit is cleared"
    );
    assert_eq!(
        value(&accounts, &pop, "Reply E-mail"),
        Some(RegValue::binary_text("alice@example.org"))
    );
    assert_eq!(
        value(&accounts, &imap, "Reply E-mail"),
        Some(RegValue::binary_text("alice@example.org"))
    );
    for (key, name) in [
        (&pop, "POP3 Password"),
        (&imap, "IMAP Password"),
        (&imap, "SMTP Password"),
    ] {
        assert_eq!(value(&accounts, key, name), None, "{name} is removed");
    }
    assert_eq!(
        value(&accounts, &pop, "POP3 Use SSL"),
        Some(RegValue::Dword(1))
    );
    assert_eq!(
        value(&accounts, &pop, "POP3 Secure Connection"),
        Some(RegValue::Dword(2)),
        "STARTTLS on port 110"
    );
    assert_eq!(
        value(&accounts, &pop, "SMTP Use Auth"),
        Some(RegValue::Dword(1))
    );
    assert_eq!(
        value(&accounts, &imap, "SMTP Auth Method"),
        Some(RegValue::Dword(0))
    );
    assert_eq!(
        value(&accounts, &pop, "Service UID"),
        Some(RegValue::Binary((0x40..0x50).collect())),
        "values we do not manage are untouched"
    );
    let policies = values(&prefix.reg_export(POLICIES).unwrap().unwrap());
    for (key, name, v) in [
        ("Security", "enablerememberpwd", 0),
        ("Security", "adminsecuritymode", 3),
        ("Security", "showlevel1attach", 0),
        ("Setup", "modifyaccounts", 1),
        ("PST", "maxlargefilesize", 10000),
        ("PST", "warnlargefilesize", 9000),
        ("RPC", "disablebasicauthsavedcreds", 1),
    ] {
        assert_eq!(
            value(&policies, &format!(r"{POLICIES}\{key}"), name),
            Some(RegValue::Dword(v)),
            "{key}\\{name}"
        );
    }
    assert_eq!(
        value(
            &policies,
            &format!(r"{POLICIES}\Security"),
            "fileextensionsaddlevel1"
        ),
        Some(RegValue::Sz(
            ".pif;.scr;.vbs;.exe;.cmd;.com;.bat;.hta".into()
        ))
    );

    let (code, again) = report(&prefix, "check");
    assert_eq!(code, 0, "{again:#}");
    assert_eq!(again["compliant"], Json::Bool(true));

    let out = prefix.agent(&["restore"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    let after = prefix.reg_export_bytes(r"HKCU\Software").unwrap().unwrap();
    assert!(
        before == after,
        "restore leaves HKCU\\Software byte-identical (as `reg export` writes it)"
    );
}

#[test]
fn drift_made_with_reg_add_is_found_by_the_next_check_and_repaired() {
    let prefix = seeded();
    let (code, _) = report(&prefix, "apply");
    assert_eq!(code, 0);
    // The user turns "leave a copy on the server" back on behind the agent's back.
    prefix
        .reg_add(
            &format!(r"{ACCOUNTS}\00000001"),
            "Leave on Server",
            "REG_DWORD",
            "0x000e0003",
        )
        .unwrap();
    let (code, check) = report(&prefix, "check");
    assert_eq!(code, 1);
    let drifted: Vec<&Json> = check["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "drifted")
        .collect();
    assert_eq!(drifted.len(), 1, "{drifted:#?}");
    assert_eq!(drifted[0]["control"], "pop-delete-after-fetch");
    assert!(drifted[0]["setting"]
        .as_str()
        .unwrap()
        .ends_with(r#"00000001 "Leave on Server""#));

    let (code, apply) = report(&prefix, "apply");
    assert_eq!(code, 0);
    assert_eq!(statuses(&apply).get("repaired"), Some(&1));
}

#[test]
fn a_service_works_on_the_users_hive_under_hkey_users() {
    let prefix = seeded();
    // Wine's user hive; HKEY_CURRENT_USER is a view of it.
    let sid = "S-1-5-21-0-0-0-1000";
    let (code, apply) = report_with(&prefix, "apply", &["--registry-user", sid]);
    assert_eq!(code, 0, "{apply:#}");
    let scope = apply["findings"][0]["scope"].as_str().unwrap();
    assert!(scope.starts_with(&format!(r"HKEY_USERS\{sid}\")), "{scope}");
    // The same values, seen through HKEY_CURRENT_USER.
    let (code, _) = report(&prefix, "check");
    assert_eq!(code, 0);
    let out = prefix.agent(&["restore", "--registry-user", sid]).unwrap();
    assert!(out.status.success(), "{out:?}");
    let (code, _) = report(&prefix, "check");
    assert_eq!(code, 1, "restored to the non-compliant original");
}

fn report_with(prefix: &WinePrefix, cmd: &str, extra: &[&str]) -> (i32, Json) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(extra);
    let (code, out) = agent(prefix, cmd, &all);
    (
        code,
        serde_json::from_str(&out).expect("the report is JSON"),
    )
}

#[test]
fn writes_while_outlook_runs_are_pending_restart() {
    let prefix = seeded();
    // A stand-in OUTLOOK.EXE: Wine's cmd.exe under that name, waiting on its standard input.
    let (_, outlook) = prefix.c_file("OUTLOOK.EXE");
    std::fs::copy(
        prefix.path().join("drive_c/windows/system32/cmd.exe"),
        &outlook,
    )
    .unwrap();
    let running = prefix.spawn(&outlook).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, apply) = report(&prefix, "apply");
    drop(running);
    assert_eq!(code, 0, "{apply:#}");
    let counts = statuses(&apply);
    assert_eq!(counts.get("repaired"), None, "{counts:?}");
    assert!(counts["pending_restart"] >= 40, "{counts:?}");
}

#[test]
fn the_exported_reg_file_imports_into_wine_and_reads_back() {
    let prefix = seeded();
    let (win, unix) = prefix.c_file("policy.reg");
    let out = prefix
        .agent(&[
            "export",
            "--profile",
            "builtin:bsi-m5.57",
            "--format",
            "reg",
            "-o",
            &win,
        ])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let written = std::fs::read(&unix).unwrap();
    assert_eq!(&written[..2], b"\xff\xfe", "UTF-16LE with a BOM");

    // The Linux build exports the same bytes.
    let profile = postwarden_test_support::baseline();
    let view = postwarden_clients::outlook::View {
        hive: "HKEY_CURRENT_USER",
        accounts: &[],
    };
    let mapped =
        postwarden_clients::outlook::map(&profile, &postwarden_profiles::Vars::new(), &view)
            .unwrap();
    let linux =
        postwarden_agent_core::export::reg(&profile, &postwarden_profiles::Vars::new()).unwrap();
    assert!(
        linux == written,
        "Linux and Windows builds export the same file"
    );

    prefix.reg_import(&written).unwrap();
    let exported = postwarden_clients::outlook::export::policy_file(&mapped);
    let mut imported = values(&prefix.reg_export(POLICIES).unwrap().unwrap());
    imported.extend(values(
        &prefix
            .reg_export(r"HKCU\Software\Microsoft\Windows\CurrentVersion\Policies\Attachments")
            .unwrap()
            .unwrap(),
    ));
    let mut checked = 0;
    for section in &exported.sections {
        for entry in &section.entries {
            let got = value(&imported, &section.key.to_string(), &entry.name);
            match &entry.op {
                Op::Set(v) => assert_eq!(got.as_ref(), Some(v), "{} {}", section.key, entry.name),
                Op::Delete => assert_eq!(got, None),
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");

    // With the policy part imported, every policy finding of a check is compliant.
    let (_, check) = report(&prefix, "check");
    let policy: Vec<&Json> = check["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["setting"].as_str().is_some_and(|s| {
                s.starts_with(r"HKCU\Software\Policies\")
                    || s.starts_with(r"HKCU\Software\Microsoft\Windows\CurrentVersion\Policies\")
            })
        })
        .collect();
    assert!(policy.len() >= 15, "{}", policy.len());
    for f in policy {
        assert_eq!(f["status"], "compliant", "{f:#}");
    }
}
