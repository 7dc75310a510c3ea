//! Thunderbird's platform policies at the edge: the Group Policy keys in the registry (Windows)
//! and the `org.mozilla.thunderbird` preference files (macOS), read into the snapshots that
//! `postwarden_clients::thunderbird::platform_policies` maps as Thunderbird's policy engine does.
//!
//! # Platform specific behavior
//! - Windows: `HKEY_CURRENT_USER` (or the target's `HKEY_USERS\<SID>`) and `HKEY_LOCAL_MACHINE`
//!   `\Software\Policies\Mozilla\Thunderbird`, through the [`Registry`] trait (so a
//!   `MemRegistry` stands in on Linux). The trait lists values sorted by name, not in the order
//!   Windows enumerates them (creation order); values are put in the order Group Policy writes
//!   lists (numbered names ascending, `1`, `2`, ..., `10`), then the others by name, which only
//!   matters for telling a list from an object (`WindowsGPOParser` looks at the first value's
//!   name). Subkeys are sorted by their upper-cased names, as `RegEnumKeyEx` returns them.
//! - macOS: the domain's files under the target's system root and home, highest precedence
//!   first: `/Library/Managed Preferences/<user>/`, `/Library/Managed Preferences/`,
//!   `~/Library/Preferences/`, `/Library/Preferences/` (`org.mozilla.thunderbird.plist` in each).
//!   Not read: `ByHost` files, the global domain and command-line arguments, which
//!   `NSUserDefaults` also searches. On a live Mac `cfprefsd` may hold a newer state of the
//!   user's domain than its file.

use std::path::PathBuf;

use postwarden_clients::applemail::plistfile::PlistDoc;
use postwarden_clients::thunderbird::platform_policies::{
    from_plists, from_registry, Layer, PlatformPolicies, PlistLayer, RegKey, MAC_DOMAIN, POLICY_KEY,
};
use postwarden_clients::under;
use postwarden_registry::{KeyPath, RegError, Registry, Root};

use crate::error::StoreError;
use crate::fs::read_bytes;
use crate::target::Target;

/// The two policy keys, in the order Thunderbird reads them: the user's, then the machine's.
pub fn registry_policy_keys(target: &Target) -> [(Layer, KeyPath); 2] {
    [
        (Layer::RegistryUser, target.hive().join(POLICY_KEY)),
        (
            Layer::RegistryMachine,
            KeyPath::new(Root::LocalMachine, POLICY_KEY),
        ),
    ]
}

/// The preference files of Thunderbird's domain, highest precedence first.
pub fn mac_policy_files(target: &Target) -> [(Layer, PathBuf); 4] {
    let file = format!("{MAC_DOMAIN}.plist");
    let managed = under(&target.system_root, "Library/Managed Preferences");
    [
        (
            Layer::MacManagedUser,
            managed.join(&target.user).join(&file),
        ),
        (Layer::MacManagedComputer, managed.join(&file)),
        (
            Layer::MacUserDomain,
            target.home.join("Library/Preferences").join(&file),
        ),
        (
            Layer::MacMachineDomain,
            under(&target.system_root, "Library/Preferences").join(&file),
        ),
    ]
}

/// Where Group Policy puts list items: `1`, `2`, ... (numerically), then every other name.
fn value_order(name: &str) -> (u8, u64, String) {
    match name.parse::<u64>() {
        Ok(n) if !name.starts_with('+') => (0, n, name.to_owned()),
        _ => (1, 0, name.to_owned()),
    }
}

fn read_key(reg: &dyn Registry, path: &KeyPath) -> Result<RegKey, RegError> {
    let mut values: Vec<_> = reg.values(path)?.into_iter().collect();
    values.sort_by_key(|(n, _)| value_order(n));
    let mut names = reg.subkeys(path)?;
    // `RegEnumKeyEx` order: the hive keeps subkeys sorted by upper-cased name.
    names.sort_by_key(|n| n.to_uppercase());
    let subkeys = names
        .iter()
        .map(|n| read_key(reg, &path.join(n)))
        .collect::<Result<_, _>>()?;
    Ok(RegKey {
        path: path.clone(),
        values,
        subkeys,
    })
}

/// `%NAME%` in a `REG_EXPAND_SZ` as Thunderbird, running as the user, would expand it: the
/// user's profile folder and name from the target, anything else from the agent's own
/// environment (which, for a service, is not the user's).
fn user_environment(target: &Target) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        if name.eq_ignore_ascii_case("USERPROFILE") || name.eq_ignore_ascii_case("HOME") {
            Some(target.home.display().to_string())
        } else if name.eq_ignore_ascii_case("USERNAME") {
            Some(target.user.clone())
        } else {
            std::env::var(name).ok()
        }
    }
}

/// Thunderbird's Group Policy for the target's user (`None`: no registry policy applies).
pub fn read_registry_policies(
    target: &Target,
    reg: &dyn Registry,
) -> Result<Option<PlatformPolicies>, StoreError> {
    let [(_, user), (_, machine)] = registry_policy_keys(target);
    // `wrk.hasChild("Mozilla\\" + Services.appinfo.name)`: a missing key is no pass at all.
    let read = |path: &KeyPath| -> Result<Option<RegKey>, StoreError> {
        if reg.exists(path)? {
            Ok(Some(read_key(reg, path)?))
        } else {
            Ok(None)
        }
    };
    let user = read(&user)?;
    let machine = read(&machine)?;
    Ok(from_registry(
        user.as_ref(),
        machine.as_ref(),
        &user_environment(target),
    ))
}

/// Thunderbird's policies from its macOS preference domain for the target's user (`None`:
/// `EnterprisePoliciesEnabled` is not true, or there is no policy). A file that is not a
/// property list stops the client, naming it.
pub fn read_macos_policies(target: &Target) -> Result<Option<PlatformPolicies>, StoreError> {
    let mut layers = Vec::new();
    for (layer, path) in mac_policy_files(target) {
        let Some(bytes) = read_bytes(&path)? else {
            continue;
        };
        let name = path.display().to_string();
        let doc = PlistDoc::parse(&bytes)
            .map_err(|e| StoreError::corrupt(name.clone(), None, None, e.to_string()))?;
        layers.push(PlistLayer {
            layer,
            path: name,
            dict: doc.root,
        });
    }
    Ok(from_plists(&layers))
}

/// The platform policies Thunderbird reads for the target's user, on the OS the agent runs on:
/// the registry when one is given (Windows, or a `MemRegistry` in tests), the preference
/// domain on macOS, nothing elsewhere (Linux has only `policies.json`).
pub fn read_platform_policies(
    target: &Target,
    reg: Option<&dyn Registry>,
) -> Result<Option<PlatformPolicies>, StoreError> {
    match reg {
        Some(reg) => read_registry_policies(target, reg),
        None if cfg!(target_os = "macos") => read_macos_policies(target),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use plist::Value as Plist;
    use postwarden_clients::thunderbird::platform_policies::combine;
    use postwarden_clients::thunderbird::policies::PoliciesDoc;
    use postwarden_clients::thunderbird::prefs::PrefValue;
    use postwarden_registry::{MemRegistry, RegValue};
    use serde_json::{json, Value as Json};

    use super::*;

    fn target(dir: &std::path::Path) -> Target {
        let home = dir.join("Users/alice");
        let root = dir.join("root");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&root).unwrap();
        Target {
            home,
            system_root: root,
            user: "alice".into(),
            registry_user: None,
        }
    }

    #[test]
    fn the_registry_is_read_user_first_then_machine_in_windows_order() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let mut reg = MemRegistry::new();
        let hkcu = KeyPath::new(Root::CurrentUser, POLICY_KEY);
        let hklm = KeyPath::new(Root::LocalMachine, POLICY_KEY);
        reg.set(&hkcu, "OfferToSaveLogins", &RegValue::Dword(1))
            .unwrap();
        reg.set(&hkcu, "DisableAppUpdate", &RegValue::Dword(1))
            .unwrap();
        reg.set(&hklm, "OfferToSaveLogins", &RegValue::Dword(0))
            .unwrap();
        // A list written 1, 2, 10; MemRegistry lists names sorted as text.
        let locales = hklm.join("RequestedLocales");
        for (n, v) in [("1", "de"), ("2", "fr"), ("10", "en-US")] {
            reg.set(&locales, n, &RegValue::Sz(v.into())).unwrap();
        }
        // Subkeys in RegEnumKeyEx order: "1", "10", "2".
        for n in ["2", "10", "1"] {
            reg.set(
                &hklm.join("Bookmarks").join(n),
                "Title",
                &RegValue::Sz(n.into()),
            )
            .unwrap();
        }
        let prefs = hklm.join("Preferences");
        reg.set(
            &prefs.join("mail.server.default.check_time"),
            "Value",
            &RegValue::Dword(5),
        )
        .unwrap();
        reg.set(
            &prefs.join("mail.server.default.check_time"),
            "Status",
            &RegValue::Sz("locked".into()),
        )
        .unwrap();
        let p = read_platform_policies(&t, Some(&reg)).unwrap().unwrap();
        let got = Json::Object(p.policies.clone());
        assert_eq!(got["OfferToSaveLogins"], json!(0), "the machine wins");
        assert_eq!(got["DisableAppUpdate"], json!(1), "the user's stays");
        assert_eq!(got["RequestedLocales"], json!(["de", "fr", "en-US"]));
        assert_eq!(
            got["Bookmarks"],
            json!([{"Title": "1"}, {"Title": "10"}, {"Title": "2"}])
        );
        let c = combine(
            Some(&p),
            Some(
                &PoliciesDoc::parse("p.json", r#"{"policies": {"Preferences": {"mail.a": 1}}}"#)
                    .unwrap(),
            ),
        );
        let doc = c.doc.unwrap();
        assert_eq!(
            doc.pref("mail.server.default.check_time").unwrap().value,
            Some(PrefValue::Int(5))
        );
        assert_eq!(
            doc.pref("mail.a"),
            None,
            "hidden by the registry's Preferences"
        );
        let o = c.origins.pref("mail.server.default.check_time").unwrap();
        assert_eq!(
            o.location,
            r"HKEY_LOCAL_MACHINE\Software\Policies\Mozilla\Thunderbird\Preferences\mail.server.default.check_time"
        );
        assert_eq!(o.layer, Layer::RegistryMachine);
    }

    #[test]
    fn a_service_reads_the_users_hive_and_nothing_is_no_policy() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = target(dir.path());
        let reg = MemRegistry::new();
        assert!(read_platform_policies(&t, Some(&reg)).unwrap().is_none());
        assert!(read_platform_policies(&t, None).unwrap().is_none() || cfg!(target_os = "macos"));
        let mut reg = MemRegistry::new();
        let sid = "S-1-5-21-1-2-3-1001";
        t.registry_user = Some(sid.parse().unwrap());
        let user = KeyPath::new(Root::Users, format!(r"{sid}\{POLICY_KEY}"));
        reg.set(
            &user,
            "Preferences",
            &RegValue::MultiSz(vec![
                r#"{"mail.x": {"Value": "%USERPROFILE%\\x", "Status": "user"}}"#.into(),
            ]),
        )
        .unwrap();
        reg.set(
            &user,
            "Dir",
            &RegValue::ExpandSz(r"%USERPROFILE%\Mail".into()),
        )
        .unwrap();
        let p = read_platform_policies(&t, Some(&reg)).unwrap().unwrap();
        assert_eq!(p.origins["Preferences"].layer, Layer::RegistryUser);
        assert!(p.origins["Preferences"]
            .location
            .starts_with(r"HKEY_USERS\S-1-5-21-1-2-3-1001\Software"));
        assert_eq!(
            p.policies["Dir"],
            json!(format!(r"{}\Mail", t.home.display())),
            "REG_EXPAND_SZ expands the user's profile folder"
        );
        assert_eq!(
            p.policies["Preferences"]["mail.x"]["Value"],
            json!("%USERPROFILE%\\x"),
            "REG_MULTI_SZ JSON is not expanded"
        );
    }

    fn write_plist(path: &std::path::Path, pairs: &[(&str, Plist)], binary: bool) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let dict: plist::Dictionary = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let v = Plist::Dictionary(dict);
        if binary {
            v.to_file_binary(path).unwrap();
        } else {
            v.to_file_xml(path).unwrap();
        }
    }

    #[test]
    fn the_macos_domain_is_read_from_every_layer_in_precedence_order() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let [(_, managed_user), (_, managed), (_, user_domain), (_, machine_domain)] =
            mac_policy_files(&t);
        assert!(managed_user
            .ends_with("Library/Managed Preferences/alice/org.mozilla.thunderbird.plist"));
        assert!(read_macos_policies(&t).unwrap().is_none(), "no file");
        write_plist(
            &machine_domain,
            &[
                ("EnterprisePoliciesEnabled", Plist::Boolean(true)),
                ("DisableAppUpdate", Plist::Boolean(true)),
            ],
            false,
        );
        write_plist(
            &managed,
            &[
                ("PasswordManagerEnabled", Plist::Boolean(true)),
                (
                    "Preferences",
                    Plist::Dictionary(
                        [(
                            "mail.server.default.check_time".to_owned(),
                            Plist::Dictionary(
                                [
                                    ("Value".to_owned(), Plist::Integer(10.into())),
                                    ("Status".to_owned(), Plist::String("locked".into())),
                                ]
                                .into_iter()
                                .collect(),
                            ),
                        )]
                        .into_iter()
                        .collect(),
                    ),
                ),
            ],
            true,
        );
        write_plist(
            &managed_user,
            &[("PasswordManagerEnabled", Plist::Boolean(false))],
            true,
        );
        write_plist(
            &user_domain,
            &[
                ("Preferences", Plist::Dictionary(plist::Dictionary::new())),
                ("NSNavLastRootDirectory", Plist::String("~/Desktop".into())),
            ],
            true,
        );
        let p = read_macos_policies(&t).unwrap().unwrap();
        assert_eq!(
            p.origins["PasswordManagerEnabled"].layer,
            Layer::MacManagedUser
        );
        assert_eq!(p.origins["Preferences"].layer, Layer::MacManagedComputer);
        assert_eq!(p.origins["DisableAppUpdate"].layer, Layer::MacMachineDomain);
        let c = combine(Some(&p), None);
        let doc = c.doc.unwrap();
        assert_eq!(doc.named_signon_lock(), Some("PasswordManagerEnabled"));
        let o = c.origins.pref("mail.server.default.check_time").unwrap();
        assert_eq!(
            o.location,
            format!(
                "{}, key \"Preferences\", entry \"mail.server.default.check_time\"",
                managed.display()
            )
        );
        assert_eq!(o.to_override().layer, "macOS managed preferences");

        // A file that is not a property list names itself.
        fs::write(&managed_user, b"<plist><dict><key>x</key></plist>").unwrap();
        let err = read_macos_policies(&t).unwrap_err().to_string();
        assert!(
            err.replace('\\', "/")
                .contains("alice/org.mozilla.thunderbird.plist"),
            "{err}"
        );
    }
}
