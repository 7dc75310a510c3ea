//! End to end for Outlook's registry layers: the agent's Windows build (`postwarden-agent.exe`)
//! against Wine's registry and file system, seeded with the non-compliant Outlook profile of
//! `e2e_outlook_wine.rs` plus a layer the agent does not own:
//!
//! - machine policy under `HKEY_LOCAL_MACHINE` (imported with `wine reg import`), which the agent
//!   models as outranking the user's policy key;
//! - a local Group Policy object: a `Registry.pol` (written byte for byte by our writer, in the
//!   documented `PReg` format) under `C:\Windows\System32\GroupPolicy\User`, and the registry
//!   value it produced;
//! - Microsoft 365 Cloud Policy under `HKCU\Software\Policies\Microsoft\Cloud\Office\16.0`.
//!
//! In each case `check` and `apply` report the setting `failed` (or `compliant` when the layer
//! holds the profile's value) with `overridden_by` naming the layer, and `apply` leaves the value
//! untouched, which `wine reg export` shows. No Group Policy engine and no Office run here: what
//! Windows and Outlook do with these layers is as documented in docs/adr/0002.

use std::collections::BTreeMap;

use postwarden_e2e::wine::WinePrefix;
use postwarden_registry::pol::{render, PolFile};
use postwarden_registry::regfile::{self, Entry, Op, RegFile, Section};
use postwarden_registry::{KeyPath, RegValue};
use serde_json::Value as Json;

const FIXTURE: &[u8] = include_bytes!("../../agent/tests/data/outlook/noncompliant.reg");
const SECURITY: &str = r"Software\Policies\Microsoft\Office\16.0\Outlook\Security";
const SETUP: &str = r"Software\Policies\Microsoft\Office\16.0\Outlook\Setup";
const PST: &str = r"Software\Policies\Microsoft\Office\16.0\Outlook\PST";
const CLOUD_SECURITY: &str = r"Software\Policies\Microsoft\Cloud\Office\16.0\Outlook\Security";
const ARGS: &[&str] = &[
    "--profile",
    "builtin:bsi-m5.57",
    "--var",
    "user.email=alice@example.org",
    "--client",
    "outlook",
    // The Windows directory the agent looks for Group Policy files in is under this root.
    "--system-root",
    r"C:\",
    "--format",
    "json",
];

fn seeded(extra: &[(&str, &str, RegValue)]) -> WinePrefix {
    let prefix = WinePrefix::new().unwrap_or_else(|e| panic!("{e:#}"));
    prefix.reg_import(FIXTURE).unwrap();
    if !extra.is_empty() {
        let mut file = RegFile::default();
        for (key, name, value) in extra {
            file.sections.push(Section {
                key: KeyPath::parse(key).unwrap(),
                delete: false,
                entries: vec![Entry {
                    name: (*name).to_owned(),
                    op: Op::Set(value.clone()),
                }],
            });
        }
        prefix.reg_import(&regfile::render(&file)).unwrap();
    }
    prefix
}

/// `postwarden-agent.exe <cmd>` with the JSON report.
fn report(prefix: &WinePrefix, cmd: &str) -> (i32, Json) {
    let mut args = vec![cmd];
    args.extend_from_slice(ARGS);
    let out = prefix.agent(&args).unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "postwarden-agent.exe {cmd} exited {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd}: not a JSON report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

/// The finding of the value `name`.
fn finding<'a>(report: &'a Json, name: &str) -> &'a Json {
    let quoted = format!("\"{name}\"");
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["setting"].as_str().is_some_and(|s| s.ends_with(&quoted)))
        .unwrap_or_else(|| panic!("no finding for {name}: {report:#}"))
}

/// Every value of `key` as `reg export` writes them (name folded to lower case).
fn export(prefix: &WinePrefix, key: &str) -> BTreeMap<String, RegValue> {
    let Some(file) = prefix.reg_export(key).unwrap() else {
        return BTreeMap::new();
    };
    file.sections
        .iter()
        .filter(|s| s.key == KeyPath::parse(key).unwrap())
        .flat_map(|s| s.entries.iter())
        .filter_map(|e| match &e.op {
            Op::Set(v) => Some((e.name.to_ascii_lowercase(), v.clone())),
            Op::Delete => None,
        })
        .collect()
}

#[test]
fn machine_policy_outranks_the_users_as_modelled_and_is_never_written() {
    let hklm = |k: &str| format!(r"HKEY_LOCAL_MACHINE\{k}");
    let prefix = seeded(&[
        // Not what the profile wants: it decides over the user's value.
        (&hklm(SECURITY), "enablerememberpwd", RegValue::Dword(1)),
        // What the profile wants: compliant, with the machine value as evidence.
        (&hklm(PST), "maxlargefilesize", RegValue::Dword(10000)),
    ]);
    let machine_before = prefix.reg_export_bytes(&hklm(SECURITY)).unwrap().unwrap();
    for cmd in ["check", "apply"] {
        let (code, report) = report(&prefix, cmd);
        assert_eq!(code, 1, "{cmd}: {report:#}");
        let f = finding(&report, "enablerememberpwd");
        assert_eq!(f["status"], "failed", "{cmd}: {f:#}");
        assert_eq!(f["actual"], 1);
        let o = &f["overridden_by"];
        assert_eq!(o["layer"], "machine policy (HKLM)", "{f:#}");
        assert_eq!(
            o["location"],
            format!(r#"HKEY_LOCAL_MACHINE\{SECURITY} "enablerememberpwd""#)
        );
        assert!(o["fix"]
            .as_str()
            .unwrap()
            .contains("enablerememberpwd is 0 (REG_DWORD)"));
        let f = finding(&report, "maxlargefilesize");
        assert_eq!(f["status"], "compliant", "{cmd}: {f:#}");
        assert_eq!(f["overridden_by"]["layer"], "machine policy (HKLM)");
    }
    // HKLM is byte-identical; below it, the user's values were not written either.
    assert!(prefix.reg_export_bytes(&hklm(SECURITY)).unwrap().unwrap() == machine_before);
    let user = export(&prefix, &format!(r"HKEY_CURRENT_USER\{SECURITY}"));
    assert_eq!(user.get("enablerememberpwd"), Some(&RegValue::Dword(1)));
    assert_eq!(
        export(&prefix, &format!(r"HKEY_CURRENT_USER\{PST}")).get("maxlargefilesize"),
        None
    );
    // What no layer holds was repaired as usual.
    assert_eq!(
        user.get("adminsecuritymode"),
        Some(&RegValue::Dword(3)),
        "{user:?}"
    );
}

#[test]
fn a_group_policy_value_is_reported_with_its_registry_pol_and_left_alone() {
    // The local GPO sets "remember password" on (against the profile) and the account lock on
    // (as the profile wants). Group Policy already wrote the first into the registry (the
    // fixture holds 1); the second it has not written yet.
    let prefix = seeded(&[]);
    let mut gpo = PolFile::default();
    gpo.set(SECURITY, "enablerememberpwd", &RegValue::Dword(1))
        .set(SETUP, "modifyaccounts", &RegValue::Dword(1));
    let pol = prefix
        .path()
        .join("drive_c/windows/system32/GroupPolicy/User/Registry.pol");
    std::fs::create_dir_all(pol.parent().unwrap()).unwrap();
    std::fs::write(&pol, render(&gpo)).unwrap();
    let file = r"C:\Windows\System32\GroupPolicy\User\Registry.pol";

    let user_key = format!(r"HKEY_CURRENT_USER\{SECURITY}");
    let before = export(&prefix, &user_key);
    for cmd in ["check", "apply"] {
        let (code, report) = report(&prefix, cmd);
        assert_eq!(code, 1, "{cmd}: {report:#}");
        let f = finding(&report, "enablerememberpwd");
        assert_eq!(f["status"], "failed", "{cmd}: {f:#}");
        let o = &f["overridden_by"];
        assert_eq!(o["layer"], "Group Policy");
        assert_eq!(
            o["location"],
            format!(r"{file} (record at byte 8: {SECURITY}\enablerememberpwd)")
        );
        assert!(
            o["evidence"]
                .as_str()
                .unwrap()
                .starts_with("the GPO Local Group Policy sets"),
            "{o:#}"
        );
        assert!(
            o["fix"].as_str().unwrap().starts_with(&format!(
                r"change the GPO Local Group Policy ({file}) so that it sets {SECURITY}\enablerememberpwd to 0 (REG_DWORD)"
            )),
            "{o:#}"
        );
        let f = finding(&report, "modifyaccounts");
        assert_eq!(f["status"], "compliant", "{cmd}: {f:#}");
        assert_eq!(
            f["overridden_by"]["fix"],
            "none needed: the GPO enforces the value the profile expects"
        );
        assert!(f["overridden_by"]["evidence"]
            .as_str()
            .unwrap()
            .ends_with("the registry holds (not set) now, which Group Policy replaces"));
        if cmd == "apply" {
            // Only the GPO's settings fail; everything else was repaired.
            let failed: Vec<&Json> = report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["status"] == "failed")
                .collect();
            assert_eq!(failed.len(), 1, "{failed:#?}");
        }
    }
    // The registry snapshot: the GPO's value is untouched, the value it has not written yet
    // was not written by the agent either, and the agent's other repairs landed.
    let after = export(&prefix, &user_key);
    assert_eq!(
        after.get("enablerememberpwd"),
        before.get("enablerememberpwd")
    );
    assert_eq!(after.get("enablerememberpwd"), Some(&RegValue::Dword(1)));
    assert_eq!(
        export(&prefix, &format!(r"HKEY_CURRENT_USER\{SETUP}")).get("modifyaccounts"),
        None
    );
    assert_eq!(after.get("adminsecuritymode"), Some(&RegValue::Dword(3)));
}

#[test]
fn cloud_policy_is_reported_the_same_way() {
    let prefix = seeded(&[(
        &format!(r"HKEY_CURRENT_USER\{CLOUD_SECURITY}"),
        "enablerememberpwd",
        RegValue::Dword(1),
    )]);
    for cmd in ["check", "apply"] {
        let (code, report) = report(&prefix, cmd);
        assert_eq!(code, 1);
        let f = finding(&report, "enablerememberpwd");
        assert_eq!(f["status"], "failed", "{cmd}: {f:#}");
        let o = &f["overridden_by"];
        assert_eq!(o["layer"], "Microsoft 365 Cloud Policy");
        assert_eq!(
            o["location"],
            format!(r#"HKEY_CURRENT_USER\{CLOUD_SECURITY} "enablerememberpwd""#)
        );
        assert!(o["fix"].as_str().unwrap().contains("config.office.com"));
    }
    let user = export(&prefix, &format!(r"HKEY_CURRENT_USER\{SECURITY}"));
    assert_eq!(
        user.get("enablerememberpwd"),
        Some(&RegValue::Dword(1)),
        "the user's policy value below Cloud Policy is left as it was"
    );
    assert_eq!(
        export(&prefix, &format!(r"HKEY_CURRENT_USER\{CLOUD_SECURITY}")).get("enablerememberpwd"),
        Some(&RegValue::Dword(1))
    );
}

/// Thunderbird's own registry policy (what its ADMX templates write through Group Policy), read
/// by the agent's Windows build from Wine's registry: its `Preferences` replaces policies.json's
/// whole `Preferences` policy (Mozilla's CombinedProvider), so the setting it decides, and every
/// lock the agent would put in policies.json, is reported with the key, and `apply` writes no
/// such lock.
#[test]
fn thunderbirds_registry_policy_is_read_from_wines_registry_and_reported() {
    let prefix = WinePrefix::new().unwrap_or_else(|e| panic!("{e:#}"));
    let fixture = postwarden_test_support::fixture::data("thunderbird/noncompliant");
    let (home_win, home) = prefix.c_file("alice");
    let root = home.join("AppData/Roaming/Thunderbird");
    let profile = root.join("k3x9qv2p.default-default");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::copy(fixture.join("profiles.ini"), root.join("profiles.ini")).unwrap();
    std::fs::copy(fixture.join("prefs.js"), profile.join("prefs.js")).unwrap();
    prefix
        .reg_add(
            r"HKLM\Software\Policies\Mozilla\Thunderbird",
            "Preferences",
            // Multi-string: Mozilla's GPO parser reads it as JSON (a plain string would be
            // refused by Thunderbird's schema, yet still hide policies.json's Preferences).
            "REG_MULTI_SZ",
            r#"{"mail.server.server1.check_time": {"Value": 10, "Status": "locked"}}"#,
        )
        .unwrap();
    let args = |cmd: &'static str| {
        vec![
            cmd,
            "--profile",
            "builtin:bsi-m5.57",
            "--var",
            "user.email=alice@example.org",
            "--client",
            "thunderbird",
            "--home",
            home_win.as_str(),
            "--system-root",
            r"C:\",
            "--format",
            "json",
        ]
    };
    for cmd in ["check", "apply"] {
        let out = prefix.agent(&args(cmd)).unwrap();
        let report: Json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{cmd}: not a JSON report ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let finding = |setting: &str| {
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["setting"] == setting && f["control"] != "settings-locked")
                .unwrap_or_else(|| panic!("{cmd}: no finding for {setting}: {report}"))
                .clone()
        };
        let f = finding("mail.server.server1.check_time");
        assert_eq!(f["status"], "failed", "{cmd}: {f}");
        assert_eq!(
            f["actual"], 10,
            "{cmd}: the registry's value is what Thunderbird uses: {f}"
        );
        let layer = f["overridden_by"]["layer"].as_str().unwrap_or_default();
        assert!(layer.contains("Windows registry"), "{cmd}: {f}");
        let location = f["overridden_by"]["location"].as_str().unwrap_or_default();
        assert!(location.contains(r"Mozilla\Thunderbird"), "{cmd}: {f}");
        let tls = finding("mail.server.server1.socketType");
        assert_eq!(tls["status"], "failed", "{cmd}: {tls}");
        assert!(tls["overridden_by"].is_object(), "{cmd}: {tls}");
    }
    let policies = prefix
        .path()
        .join("drive_c/Program Files/Mozilla Thunderbird/distribution/policies.json");
    let written = std::fs::read_to_string(&policies).unwrap_or_default();
    assert!(
        !written.contains("mail.server.server1.check_time"),
        "apply wrote a lock the registry policy hides: {written}"
    );
    assert_eq!(
        prefix
            .reg_query(r"HKLM\Software\Policies\Mozilla\Thunderbird", "Preferences")
            .unwrap()
            .map(|(_, data)| data.contains("\"Value\": 10")),
        Some(true),
        "the registry policy is left as it was"
    );
}
