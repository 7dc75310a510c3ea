//! Inputs are shaped as Mozilla's own tests and documentation show them: the GPO xpcshell test
//! (`browser_policies_gpo.js`: `writeIntValue("gpo_policy", 1)`), Thunderbird's
//! `policies.yaml` (the gpo / plist / json forms of `Preferences`, `Authentication`,
//! `PasswordManagerEnabled`), and `test_macosparser_unflatten.js`.

use plist::Value as Plist;
use postwarden_registry::Root;
use serde_json::json;

use super::*;

fn key(root: Root, rel: &str) -> KeyPath {
    let path = if rel.is_empty() {
        POLICY_KEY.to_owned()
    } else {
        format!(r"{POLICY_KEY}\{rel}")
    };
    KeyPath::new(root, path)
}

/// A policy key: `values` in creation order, `subkeys` as built.
fn reg(root: Root, rel: &str, values: &[(&str, RegValue)], subkeys: Vec<RegKey>) -> RegKey {
    RegKey {
        path: key(root, rel),
        values: values
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect(),
        subkeys,
    }
}

fn multi_sz(text: &str) -> RegValue {
    RegValue::MultiSz(text.lines().map(str::to_owned).collect())
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn windows(user: Option<&RegKey>, machine: Option<&RegKey>) -> Option<PlatformPolicies> {
    from_registry(user, machine, &no_env)
}

fn doc(text: &str) -> PoliciesDoc {
    PoliciesDoc::parse("policies.json", text).unwrap()
}

fn policies(c: &Combined) -> Json {
    serde_json::from_str::<Json>(&c.doc.as_ref().unwrap().render()).unwrap()["policies"].clone()
}

fn plist_layer(layer: Layer, path: &str, xml: &str) -> PlistLayer {
    let text =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\">{xml}</plist>");
    let dict = Plist::from_reader_xml(text.as_bytes())
        .unwrap()
        .into_dictionary()
        .unwrap();
    PlistLayer {
        layer,
        path: path.to_owned(),
        dict,
    }
}

const MANAGED: &str = "/Library/Managed Preferences/org.mozilla.thunderbird.plist";
const MANAGED_USER: &str = "/Library/Managed Preferences/alice/org.mozilla.thunderbird.plist";
const USER_DOMAIN: &str = "/Users/alice/Library/Preferences/org.mozilla.thunderbird.plist";

/// Booleans as the schema reads them: `true`/`false` and 1/0 compare equal.
fn booleans_as_numbers(v: &Json) -> Json {
    match v {
        Json::Bool(b) => json!(i64::from(*b)),
        Json::Array(a) => Json::Array(a.iter().map(booleans_as_numbers).collect()),
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), booleans_as_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

// --- Windows -------------------------------------------------------------------------------

/// Mozilla's `test_gpo_json_policies`: a GPO-only policy, a JSON-only policy, and one in both,
/// where the registry wins.
#[test]
fn registry_and_policies_json_combine_as_in_mozillas_gpo_test() {
    let user = reg(
        Root::CurrentUser,
        "",
        &[
            ("gpo_policy", RegValue::Dword(1)),
            ("coexist_policy", RegValue::Dword(0)),
        ],
        vec![],
    );
    let platform = windows(Some(&user), None).unwrap();
    assert_eq!(
        Json::Object(platform.policies.clone()),
        json!({"gpo_policy": 1, "coexist_policy": 0})
    );
    let json = doc(r#"{"policies": {"json_policy": true, "coexist_policy": true}}"#);
    let c = combine(Some(&platform), Some(&json));
    assert_eq!(
        policies(&c),
        json!({"gpo_policy": 1, "coexist_policy": 0, "json_policy": true})
    );
    assert_eq!(
        c.origins.policy("coexist_policy").unwrap().layer,
        Layer::RegistryUser
    );
    assert_eq!(c.origins.policy("json_policy"), None, "from policies.json");
}

/// Thunderbird's documented forms of one `Preferences` policy: the REG_MULTI_SZ JSON value,
/// the plist dictionary and policies.json give the same JSON.
#[test]
fn preferences_from_registry_plist_and_policies_json_are_the_same_json() {
    let gpo = reg(
        Root::LocalMachine,
        "",
        &[(
            "Preferences",
            multi_sz(
                r#"{
  "accessibility.force_disabled": {
    "Value": 1,
    "Status": "default"
  },
  "browser.cache.disk.parent_directory": {
    "Value": "SOME_NATIVE_PATH",
    "Status": "user"
  }
}"#,
            ),
        )],
        vec![],
    );
    let plist = plist_layer(
        Layer::MacManagedComputer,
        MANAGED,
        r#"<dict>
  <key>EnterprisePoliciesEnabled</key><true/>
  <key>Preferences</key>
  <dict>
    <key>accessibility.force_disabled</key>
    <dict>
      <key>Value</key>
      <integer>1</integer>
      <key>Status</key>
      <string>default</string>
    </dict>
    <key>browser.cache.disk.parent_directory</key>
    <dict>
      <key>Value</key>
      <string>SOME_NATIVE_PATH</string>
      <key>Status</key>
      <string>user</string>
    </dict>
  </dict>
</dict>"#,
    );
    let json = doc(r#"{
  "policies": {
    "Preferences": {
      "accessibility.force_disabled": {
        "Value": 1,
        "Status": "default"
      },
      "browser.cache.disk.parent_directory": {
        "Value": "SOME_NATIVE_PATH",
        "Status": "user"
      }
    }
  }
}"#);
    let from_json = policies(&combine(None, Some(&json)));
    let from_gpo = policies(&combine(windows(None, Some(&gpo)).as_ref(), None));
    let from_plist = policies(&combine(from_plists(&[plist]).as_ref(), None));
    assert_eq!(from_gpo, from_json);
    assert_eq!(from_plist, from_json);
}

/// `Authentication` as Thunderbird's documentation writes it for GPO (numbered values make a
/// list, subkeys objects, DWORDs numbers) and for a plist (`<true/>` arrives as 1).
#[test]
fn numbered_values_subkeys_and_dwords_match_the_plist_and_json_forms() {
    let sz = |s: &str| RegValue::Sz(s.to_owned());
    let gpo = reg(
        Root::LocalMachine,
        "",
        &[],
        vec![reg(
            Root::LocalMachine,
            "Authentication",
            &[
                ("Locked", RegValue::Dword(1)),
                ("PrivateBrowsing", RegValue::Dword(0)),
            ],
            vec![
                reg(
                    Root::LocalMachine,
                    r"Authentication\AllowNonFQDN",
                    &[("SPNEGO", RegValue::Dword(1)), ("NTLM", RegValue::Dword(0))],
                    vec![],
                ),
                reg(
                    Root::LocalMachine,
                    r"Authentication\SPNEGO",
                    &[
                        ("1", sz("mydomain.com")),
                        ("2", sz("https://myotherdomain.com")),
                    ],
                    vec![],
                ),
            ],
        )],
    );
    let plist = plist_layer(
        Layer::MacManagedComputer,
        MANAGED,
        r#"<dict>
  <key>EnterprisePoliciesEnabled</key><true/>
  <key>Authentication</key>
  <dict>
    <key>SPNEGO</key>
    <array>
      <string>mydomain.com</string>
      <string>https://myotherdomain.com</string>
    </array>
    <key>AllowNonFQDN</key>
    <dict>
      <key>SPNEGO</key><true/>
      <key>NTLM</key><false/>
    </dict>
    <key>Locked</key><true/>
    <key>PrivateBrowsing</key><false/>
  </dict>
</dict>"#,
    );
    let json = doc(r#"{"policies": {"Authentication": {
            "SPNEGO": ["mydomain.com", "https://myotherdomain.com"],
            "AllowNonFQDN": {"SPNEGO": true, "NTLM": false},
            "Locked": true, "PrivateBrowsing": false}}}"#);
    let gpo = windows(None, Some(&gpo)).unwrap();
    let mac = from_plists(&[plist]).unwrap();
    let auth = |p: &Map<String, Json>| p["Authentication"].clone();
    assert_eq!(
        auth(&gpo.policies),
        json!({"Locked": 1, "PrivateBrowsing": 0,
               "AllowNonFQDN": {"SPNEGO": 1, "NTLM": 0},
               "SPNEGO": ["mydomain.com", "https://myotherdomain.com"]})
    );
    let sorted = |v: Json| serde_json::from_str::<Json>(&v.to_string()).unwrap();
    assert_eq!(sorted(auth(&mac.policies)), sorted(auth(&gpo.policies)));
    assert_eq!(
        sorted(booleans_as_numbers(
            &policies(&combine(None, Some(&json)))["Authentication"]
        )),
        sorted(auth(&gpo.policies)),
        "the schema's booleans accept 0 and 1"
    );
}

#[test]
fn a_machine_policy_replaces_the_user_policy_of_the_same_name_whole() {
    let user = reg(
        Root::CurrentUser,
        "",
        &[
            (
                "Preferences",
                multi_sz(r#"{"mail.a": {"Value": 1, "Status": "locked"}, "mail.b": 2}"#),
            ),
            ("OfferToSaveLogins", RegValue::Dword(1)),
        ],
        vec![],
    );
    let machine = reg(
        Root::LocalMachine,
        "",
        &[("Preferences", multi_sz(r#"{"mail.a": 5}"#))],
        vec![],
    );
    let p = windows(Some(&user), Some(&machine)).unwrap();
    assert_eq!(
        p.policies["Preferences"],
        json!({"mail.a": 5}),
        "not merged"
    );
    assert_eq!(
        p.policies["OfferToSaveLogins"],
        json!(1),
        "the user's stays"
    );
    assert_eq!(p.origins["Preferences"].layer, Layer::RegistryMachine);
    assert_eq!(p.origins["OfferToSaveLogins"].layer, Layer::RegistryUser);
    assert_eq!(
        p.pref_origins.keys().collect::<Vec<_>>(),
        ["mail.a"],
        "only the machine's entries"
    );
    let a = &p.pref_origins["mail.a"];
    assert_eq!(
        a.location,
        r#"HKEY_LOCAL_MACHINE\Software\Policies\Mozilla\Thunderbird, value "Preferences" (REG_MULTI_SZ), entry "mail.a""#
    );
    assert_eq!(a.evidence, "5");
}

/// The CombinedProvider works on top-level names: a registry `Preferences` hides every entry of
/// policies.json's `Preferences`, including the agent's own locks.
#[test]
fn a_registry_preferences_hides_the_whole_policies_json_preferences() {
    let machine = reg(
        Root::LocalMachine,
        "",
        &[(
            "Preferences",
            multi_sz(r#"{"mail.server.default.check_time": {"Value": 5, "Status": "locked"}}"#),
        )],
        vec![],
    );
    let json = doc(r#"{"policies": {"Preferences": {
            "mail.server.default.check_time": {"Value": 30, "Status": "locked"},
            "mail.identity.id1.reply_to": {"Value": "a@example.org", "Status": "locked"}},
          "DisableAppUpdate": true}}"#);
    let c = combine(windows(None, Some(&machine)).as_ref(), Some(&json));
    let d = c.doc.as_ref().unwrap();
    assert_eq!(
        d.pref("mail.server.default.check_time").unwrap().value,
        Some(PrefValue::Int(5))
    );
    assert_eq!(d.pref("mail.identity.id1.reply_to"), None, "hidden");
    assert_eq!(policies(&c)["DisableAppUpdate"], json!(true), "added");
    let o = c.origins.pref("mail.server.default.check_time").unwrap();
    assert_eq!(o.layer, Layer::RegistryMachine);
    assert_eq!(c.origins.pref("mail.identity.id1.reply_to"), None);
    assert_eq!(
        c.hides("Preferences").unwrap().layer,
        Layer::RegistryMachine
    );
    assert_eq!(c.hides("DisableAppUpdate"), None);
    let ov = o.to_override();
    assert_eq!(
        ov.layer,
        "Thunderbird policy in the Windows registry (Group Policy)"
    );
    assert_eq!(ov.evidence, r#"{"Value":5,"Status":"locked"}"#);
    assert!(ov.fix.contains("computer Group Policy"), "{}", ov.fix);
    assert!(ov.fix.contains("\"Preferences\""), "{}", ov.fix);
}

/// The deprecated per-pref form (a `Preferences` key with one value per pref, or a subkey per
/// pref with `Value`/`Status`) hides the `Preferences` JSON value: subkeys are read after values.
#[test]
fn the_old_preferences_key_hides_the_preferences_value_and_names_each_entry() {
    let machine = reg(
        Root::LocalMachine,
        "",
        &[("Preferences", multi_sz(r#"{"mail.hidden": 1}"#))],
        vec![reg(
            Root::LocalMachine,
            "Preferences",
            &[("mail.x", RegValue::Dword(1))],
            vec![reg(
                Root::LocalMachine,
                r"Preferences\mail.y",
                &[
                    ("Value", RegValue::Dword(30)),
                    ("Status", RegValue::Sz("locked".into())),
                ],
                vec![],
            )],
        )],
    );
    let p = windows(None, Some(&machine)).unwrap();
    assert_eq!(
        p.policies["Preferences"],
        json!({"mail.x": 1, "mail.y": {"Value": 30, "Status": "locked"}})
    );
    assert_eq!(
        p.pref_origins["mail.x"].location,
        r#"HKEY_LOCAL_MACHINE\Software\Policies\Mozilla\Thunderbird\Preferences, value "mail.x" (REG_DWORD)"#
    );
    assert_eq!(p.pref_origins["mail.x"].evidence, "REG_DWORD 0x1");
    assert_eq!(
        p.pref_origins["mail.y"].location,
        r"HKEY_LOCAL_MACHINE\Software\Policies\Mozilla\Thunderbird\Preferences\mail.y"
    );
    assert_eq!(
        p.pref_origins["mail.y"].evidence,
        r#"Value = REG_DWORD 0x1e; Status = REG_SZ "locked""#
    );
    assert!(!p.pref_origins.contains_key("mail.hidden"));
}

#[test]
fn numbered_values_and_subkeys_make_lists_in_enumeration_order() {
    let sz = |s: &str| RegValue::Sz(s.to_owned());
    let machine = reg(
        Root::LocalMachine,
        "",
        &[],
        vec![
            // Values first named "1": a list; the subkey is ignored.
            reg(
                Root::LocalMachine,
                "RequestedLocales",
                &[("1", sz("de")), ("2", sz("en-US"))],
                vec![reg(
                    Root::LocalMachine,
                    r"RequestedLocales\x",
                    &[("a", sz("b"))],
                    vec![],
                )],
            ),
            // Subkeys first named "1": a list of objects, in RegEnumKeyEx order ("10" < "2").
            reg(
                Root::LocalMachine,
                "Bookmarks",
                &[("Ignored", RegValue::Dword(1))],
                vec![
                    reg(
                        Root::LocalMachine,
                        r"Bookmarks\1",
                        &[("Title", sz("one"))],
                        vec![],
                    ),
                    reg(
                        Root::LocalMachine,
                        r"Bookmarks\10",
                        &[("Title", sz("ten"))],
                        vec![],
                    ),
                    reg(
                        Root::LocalMachine,
                        r"Bookmarks\2",
                        &[("Title", sz("two"))],
                        vec![],
                    ),
                ],
            ),
            // Not first: an object with a key "1".
            reg(
                Root::LocalMachine,
                "Other",
                &[("0", sz("zero")), ("1", sz("one"))],
                vec![],
            ),
        ],
    );
    let p = windows(None, Some(&machine)).unwrap();
    assert_eq!(p.policies["RequestedLocales"], json!(["de", "en-US"]));
    assert_eq!(
        p.policies["Bookmarks"],
        json!([{"Title": "one"}, {"Title": "ten"}, {"Title": "two"}])
    );
    assert_eq!(p.policies["Other"], json!({"0": "zero", "1": "one"}));
}

#[test]
fn value_types_map_as_read_registry_value_does() {
    let env = |name: &str| {
        (name.eq_ignore_ascii_case("USERPROFILE")).then(|| r"C:\Users\alice".to_owned())
    };
    let machine = reg(
        Root::LocalMachine,
        "",
        &[
            ("Sz", RegValue::Sz(r#"{"not": "parsed"}"#.into())),
            (
                "Expand",
                RegValue::ExpandSz(r"%USERPROFILE%\Mail %NOPE% 100%".into()),
            ),
            ("Binary", RegValue::Binary(vec![0x41, 0xe9, 0x00])),
            ("Qword", RegValue::Qword(1 << 40)),
            ("BigQword", RegValue::Qword(u64::MAX)),
            (
                "NotJson",
                RegValue::MultiSz(vec!["{".into(), "oops".into()]),
            ),
            (
                "Lines",
                RegValue::MultiSz(vec!["{".into(), "\"a\": [1,".into(), "2]}".into()]),
            ),
            (
                "BigEndian",
                RegValue::Other {
                    ty: 5,
                    data: vec![0, 0, 0, 1],
                },
            ),
            (
                "None",
                RegValue::Other {
                    ty: 0,
                    data: vec![],
                },
            ),
            // A REG_SZ without its terminating NUL, as RegQueryValueExW may return it.
            (
                "Raw",
                RegValue::Other {
                    ty: 1,
                    data: "ab".encode_utf16().flat_map(u16::to_le_bytes).collect(),
                },
            ),
        ],
        vec![reg(
            Root::LocalMachine,
            "List",
            &[
                (
                    "1",
                    RegValue::Other {
                        ty: 5,
                        data: vec![0; 4],
                    },
                ),
                ("2", RegValue::Dword(7)),
            ],
            vec![],
        )],
    );
    let p = from_registry(None, Some(&machine), &env).unwrap();
    let got = Json::Object(p.policies.clone());
    assert_eq!(
        got["Sz"],
        json!(r#"{"not": "parsed"}"#),
        "REG_SZ is not parsed"
    );
    assert_eq!(got["Expand"], json!(r"C:\Users\alice\Mail %NOPE% 100%"));
    assert_eq!(
        got["Binary"],
        json!("A\u{e9}\u{0}"),
        "one character per byte"
    );
    assert_eq!(got["Qword"], json!(1u64 << 40));
    assert_eq!(
        got["BigQword"],
        json!(18446744073709551615.0),
        "a JavaScript number"
    );
    assert_eq!(got.get("NotJson"), None, "not JSON: skipped");
    assert!(
        p.notes.iter().any(|n| n.contains("\"NotJson\"")),
        "{:?}",
        p.notes
    );
    assert_eq!(
        got["Lines"],
        json!({"a": [1, 2]}),
        "the strings joined by line breaks"
    );
    assert_eq!(got.get("BigEndian"), None, "unknown type: null, skipped");
    assert_eq!(got.get("None"), None);
    assert_eq!(
        got["Raw"],
        json!("a"),
        "the last unit is taken as the terminator"
    );
    assert_eq!(got["List"], json!([null, 7]), "null stays in a list");
}

#[test]
fn a_read_that_throws_keeps_what_was_read_before() {
    let machine = reg(
        Root::LocalMachine,
        "",
        &[
            ("OfferToSaveLogins", RegValue::Dword(0)),
            (
                "Broken",
                RegValue::Other {
                    ty: 1,
                    data: vec![0x41, 0, 0x42],
                },
            ),
            ("PasswordManagerEnabled", RegValue::Dword(0)),
        ],
        vec![],
    );
    let p = windows(None, Some(&machine)).unwrap();
    assert_eq!(
        Json::Object(p.policies.clone()),
        json!({"OfferToSaveLogins": 0})
    );
    assert!(
        p.notes.iter().any(|n| n.contains("stops reading")),
        "{:?}",
        p.notes
    );
}

#[test]
fn a_reg_sz_preferences_is_a_string_it_hides_and_then_is_ignored() {
    let machine = reg(
        Root::LocalMachine,
        "",
        &[("Preferences", RegValue::Sz(r#"{"mail.a": 1}"#.into()))],
        vec![],
    );
    let json = doc(r#"{"policies": {"Preferences": {"mail.b": 2}}}"#);
    let c = combine(windows(None, Some(&machine)).as_ref(), Some(&json));
    assert_eq!(policies(&c), json!({}), "neither applies");
    assert_eq!(
        c.hides("Preferences").unwrap().evidence,
        r#"REG_SZ "{\"mail.a\": 1}""#
    );
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("\"Preferences\"") && n.contains("not an object")),
        "{:?}",
        c.notes
    );
    assert!(c.origins.prefs.is_empty());
}

#[test]
fn a_key_that_reads_as_a_list_drops_every_registry_policy() {
    let user = reg(
        Root::CurrentUser,
        "",
        &[("PasswordManagerEnabled", RegValue::Dword(0))],
        vec![],
    );
    let machine = reg(
        Root::LocalMachine,
        "",
        &[
            ("1", RegValue::Sz("x".into())),
            ("Preferences", multi_sz("{}")),
        ],
        vec![],
    );
    let p = windows(Some(&user), Some(&machine)).unwrap();
    assert!(p.has_policies && p.policies.is_empty());
    let json = doc(r#"{"policies": {"Preferences": {"mail.b": 2}}}"#);
    let c = combine(Some(&p), Some(&json));
    assert_eq!(policies(&c), json!({"Preferences": {"mail.b": 2}}));
}

#[test]
fn only_empty_keys_leave_policies_json_alone() {
    let machine = reg(
        Root::LocalMachine,
        "",
        &[],
        vec![reg(Root::LocalMachine, "Preferences", &[], vec![])],
    );
    assert_eq!(windows(None, Some(&machine)), None, "isEmptyObject");
    assert_eq!(windows(None, None), None);
    let json = doc(r#"{"policies": {"Preferences": {"mail.b": 2}}}"#);
    let c = combine(None, Some(&json));
    assert_eq!(c.doc.as_ref(), Some(&json));
    assert!(c.origins.prefs.is_empty());
}

#[test]
fn a_null_the_emptiness_check_reaches_stops_the_policy_engine() {
    let machine = reg(
        Root::LocalMachine,
        "",
        &[("Preferences", multi_sz(r#"{"mail.a": null}"#))],
        vec![],
    );
    let p = windows(None, Some(&machine)).unwrap();
    assert!(p.engine_failure.is_some());
    let c = combine(Some(&p), Some(&doc(r#"{"policies": {"A": true}}"#)));
    assert_eq!(c.doc, None);
    assert!(c.engine_failure.is_some());
    // A non-empty value before it: the check stops there, nothing throws.
    let machine = reg(
        Root::LocalMachine,
        "",
        &[
            ("DisableAppUpdate", RegValue::Dword(1)),
            ("Preferences", multi_sz(r#"{"mail.a": null}"#)),
        ],
        vec![],
    );
    assert_eq!(windows(None, Some(&machine)).unwrap().engine_failure, None);
    // The same in policies.json.
    let c = combine(None, Some(&doc(r#"{"policies": {"X": {"y": null}}}"#)));
    assert!(c.engine_failure.unwrap().starts_with("policies.json"));
}

// --- macOS ---------------------------------------------------------------------------------

#[test]
fn the_domain_is_read_only_when_enterprise_policies_are_enabled() {
    let with = |enabled: &str| {
        from_plists(&[plist_layer(
            Layer::MacManagedComputer,
            MANAGED,
            &format!("<dict>{enabled}<key>DisableAppUpdate</key><true/></dict>"),
        )])
    };
    assert_eq!(with(""), None);
    assert_eq!(with("<key>EnterprisePoliciesEnabled</key><false/>"), None);
    assert_eq!(
        with("<key>EnterprisePoliciesEnabled</key><string>NO</string>"),
        None
    );
    for yes in [
        "<true/>",
        "<integer>1</integer>",
        "<string>YES</string>",
        "<string>true</string>",
        "<string> 7</string>",
    ] {
        let p = with(&format!("<key>EnterprisePoliciesEnabled</key>{yes}")).unwrap();
        assert_eq!(
            Json::Object(p.policies),
            json!({"DisableAppUpdate": 1}),
            "{yes}: the switch itself is not a policy"
        );
    }
}

#[test]
fn plist_booleans_arrive_as_numbers_and_boolean_policies_accept_them() {
    let p = from_plists(&[plist_layer(
        Layer::MacManagedComputer,
        MANAGED,
        r#"<dict>
  <key>EnterprisePoliciesEnabled</key><true/>
  <key>PasswordManagerEnabled</key><false/>
  <key>Ratio</key><real>2.9</real>
  <key>When</key><date>2024-01-01T00:00:00Z</date>
  <key>Blob</key><data>AAE=</data>
  <key>Handlers</key>
  <dict>
    <key>extensions</key>
    <dict>
      <key>exe</key>
      <dict><key>action</key><string>saveToDisk</string><key>ask</key><true/></dict>
    </dict>
  </dict>
</dict>"#,
    )])
    .unwrap();
    assert_eq!(p.policies["PasswordManagerEnabled"], json!(0));
    assert_eq!(p.policies["Ratio"], json!(2), "longLongValue");
    assert!(!p.policies.contains_key("When") && !p.policies.contains_key("Blob"));
    let c = combine(
        Some(&p),
        Some(&doc(r#"{"policies": {"PasswordManagerEnabled": true}}"#)),
    );
    let d = c.doc.as_ref().unwrap();
    assert_eq!(d.named_signon_lock(), Some("PasswordManagerEnabled"));
    assert_eq!(d.handler("exe"), Some(("saveToDisk".to_owned(), true)));
    let o = c
        .origins
        .policy("PasswordManagerEnabled")
        .unwrap()
        .to_override();
    assert_eq!(o.layer, "macOS managed preferences");
    assert_eq!(
        o.location,
        format!("{MANAGED}, key \"PasswordManagerEnabled\"")
    );
    assert_eq!(o.evidence, "0");
    assert!(o.fix.contains("configuration profile"), "{}", o.fix);
}

/// The domain is merged key by key: per-user managed preferences, then the computer's, then
/// the user's own domain.
#[test]
fn layers_merge_by_top_level_key_in_precedence_order() {
    let p = from_plists(&[
        plist_layer(
            Layer::MacManagedUser,
            MANAGED_USER,
            "<dict><key>OfferToSaveLogins</key><false/></dict>",
        ),
        plist_layer(
            Layer::MacManagedComputer,
            MANAGED,
            r#"<dict>
  <key>EnterprisePoliciesEnabled</key><true/>
  <key>OfferToSaveLogins</key><true/>
  <key>Preferences</key>
  <dict><key>mail.a</key><integer>1</integer></dict>
</dict>"#,
        ),
        plist_layer(
            Layer::MacUserDomain,
            USER_DOMAIN,
            r#"<dict>
  <key>Preferences</key>
  <dict><key>mail.b</key><integer>2</integer></dict>
  <key>DisableAppUpdate</key><false/>
</dict>"#,
        ),
    ])
    .unwrap();
    assert_eq!(
        Json::Object(p.policies.clone()),
        json!({"OfferToSaveLogins": 0, "Preferences": {"mail.a": 1}, "DisableAppUpdate": 0})
    );
    assert_eq!(p.origins["OfferToSaveLogins"].layer, Layer::MacManagedUser);
    assert_eq!(p.origins["Preferences"].layer, Layer::MacManagedComputer);
    assert_eq!(p.origins["DisableAppUpdate"].layer, Layer::MacUserDomain);
    assert_eq!(
        p.pref_origins["mail.a"].location,
        format!("{MANAGED}, key \"Preferences\", entry \"mail.a\"")
    );
    assert!(Origin {
        layer: Layer::MacUserDomain,
        location: String::new(),
        key: "Preferences".into(),
        evidence: String::new()
    }
    .fix()
    .contains("defaults delete org.mozilla.thunderbird Preferences"));
    // The switch may come from any layer, the user's own included.
    let p = from_plists(&[
        plist_layer(
            Layer::MacManagedComputer,
            MANAGED,
            "<dict><key>PasswordManagerEnabled</key><false/></dict>",
        ),
        plist_layer(
            Layer::MacUserDomain,
            USER_DOMAIN,
            "<dict><key>EnterprisePoliciesEnabled</key><true/></dict>",
        ),
    ]);
    assert!(p.is_some());
}

#[test]
fn flattened_keys_unflatten_as_in_mozillas_test() {
    let input: Vec<(String, Json)> = [
        ("DisplayBookmarksToolbar", json!(true)),
        ("Homepage__URL", json!("https://www.mozilla.org")),
        ("Homepage__Locked", json!("true")),
        (
            "Homepage__Additional__0",
            json!("https://extra-homepage-1.example.com"),
        ),
        (
            "Homepage__Additional__1",
            json!("https://extra-homepage-2.example.com"),
        ),
        ("WebsiteFilter__Block__0", json!("*://*.example.org/*")),
        ("WebsiteFilter__Block__1", json!("*://*.example.net/*")),
        (
            "WebsiteFilter__Exceptions__0",
            json!("*://*.example.org/*exception*"),
        ),
        (
            "Permissions__Camera__Allow__0",
            json!("https://www.example.com"),
        ),
        (
            "Permissions__Notifications__Allow__0",
            json!("https://www.example.com"),
        ),
        (
            "Permissions__Notifications__Allow__1",
            json!("https://www.example.org"),
        ),
        (
            "Permissions__Notifications__Block__0",
            json!("https://www.example.net"),
        ),
        ("Permissions__Notifications__BlockNewRequests", json!(true)),
        ("Permissions__Notifications__Locked", json!(true)),
        ("Bookmarks__0__Title", json!("Bookmark 1")),
        ("Bookmarks__0__URL", json!("https://bookmark1.example.com")),
        ("Bookmarks__1__Title", json!("Bookmark 2")),
        ("Bookmarks__1__URL", json!("https://bookmark2.example.com")),
        ("Bookmarks__1__Folder", json!("Folder")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let got = unflatten(&input, &mut Vec::new(), |_, _| {}).unwrap();
    let expected = json!({
        "DisplayBookmarksToolbar": true,
        "Homepage": {
            "URL": "https://www.mozilla.org",
            "Locked": "true",
            "Additional": ["https://extra-homepage-1.example.com", "https://extra-homepage-2.example.com"]
        },
        "WebsiteFilter": {
            "Block": ["*://*.example.org/*", "*://*.example.net/*"],
            "Exceptions": ["*://*.example.org/*exception*"]
        },
        "Permissions": {
            "Camera": {"Allow": ["https://www.example.com"]},
            "Notifications": {
                "Allow": ["https://www.example.com", "https://www.example.org"],
                "Block": ["https://www.example.net"],
                "BlockNewRequests": true,
                "Locked": true
            }
        },
        "Bookmarks": [
            {"Title": "Bookmark 1", "URL": "https://bookmark1.example.com"},
            {"Title": "Bookmark 2", "URL": "https://bookmark2.example.com", "Folder": "Folder"}
        ]
    });
    let sorted = |v: Json| serde_json::from_str::<Json>(&v.to_string()).unwrap();
    assert_eq!(sorted(Json::Object(got)), sorted(expected));

    // test_array_unflatten: indices above 50 are dropped, holes stay.
    let input: Vec<(String, Json)> = [
        ("Foo__1", 1),
        ("Foo__5", 5),
        ("Foo__10", 10),
        ("Foo__30", 30),
        ("Foo__51", 51),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), json!(v)))
    .collect();
    let mut notes = Vec::new();
    let got = unflatten(&input, &mut notes, |_, _| {}).unwrap();
    let foo = got["Foo"].as_array().unwrap();
    assert_eq!(foo.len(), 31);
    assert_eq!(
        (foo[1].clone(), foo[5].clone(), foo[30].clone()),
        (json!(1), json!(5), json!(30))
    );
    assert_eq!(foo[2], Json::Null);
    assert!(notes.iter().any(|n| n.contains("Foo__51")), "{notes:?}");
}

#[test]
fn flattened_preferences_entries_name_their_own_key() {
    let p = from_plists(&[plist_layer(
        Layer::MacManagedComputer,
        MANAGED,
        r#"<dict>
  <key>EnterprisePoliciesEnabled</key><true/>
  <key>Preferences__mail.server.default.check_time__Value</key><integer>30</integer>
  <key>Preferences__mail.server.default.check_time__Status</key><string>locked</string>
  <key>Preferences__mail.x</key><true/>
</dict>"#,
    )])
    .unwrap();
    assert_eq!(
        p.policies["Preferences"],
        json!({"mail.server.default.check_time": {"Value": 30, "Status": "locked"}, "mail.x": 1})
    );
    let o = &p.pref_origins["mail.server.default.check_time"];
    assert!(
        o.location.starts_with(&format!(
            "{MANAGED}, key \"Preferences__mail.server.default.check_time__"
        )),
        "{}",
        o.location
    );
    assert_eq!(
        serde_json::from_str::<Json>(&o.evidence).unwrap(),
        json!({"Value": 30, "Status": "locked"})
    );
    assert_eq!(
        p.pref_origins["mail.x"].location,
        format!("{MANAGED}, key \"Preferences__mail.x\"")
    );
    let c = combine(Some(&p), None);
    assert_eq!(
        c.doc
            .unwrap()
            .pref("mail.server.default.check_time")
            .unwrap()
            .value,
        Some(PrefValue::Int(30))
    );
}

#[test]
fn writing_into_a_string_throws_and_stops_the_policy_engine() {
    let p = from_plists(&[plist_layer(
        Layer::MacManagedComputer,
        MANAGED,
        r#"<dict>
  <key>EnterprisePoliciesEnabled</key><true/>
  <key>Foo</key><string>bar</string>
  <key>Foo__x</key><integer>1</integer>
</dict>"#,
    )])
    .unwrap();
    assert!(p.engine_failure.is_some());
    let c = combine(Some(&p), Some(&doc(r#"{"policies": {"A": true}}"#)));
    assert_eq!(c.doc, None);
}

// --- combine and validation ------------------------------------------------------------------

#[test]
fn without_platform_policies_the_document_is_policies_json() {
    let json = doc(
        r#"{"policies": {"Preferences": {"mail.a": {"Value": 1, "Status": "locked"}}, "OfferToSaveLogins": false}}"#,
    );
    let c = combine(None, Some(&json));
    assert_eq!(c.doc.as_ref(), Some(&json));
    assert_eq!(c.origins, PolicyOrigins::default());
    assert_eq!(combine(None, None).doc, None);
}

#[test]
fn validation_drops_what_thunderbirds_schema_refuses() {
    // One entry with an unknown Status invalidates the whole Preferences policy.
    let c = combine(
        None,
        Some(&doc(
            r#"{"policies": {"Preferences": {"mail.a": 1, "mail.e": {"Value": 1, "Status": "bogus"}},
                "PasswordManagerEnabled": 2, "OfferToSaveLogins": 0}}"#,
        )),
    );
    let d = c.doc.as_ref().unwrap();
    assert_eq!(d.pref("mail.a"), None);
    assert_eq!(
        d.named_signon_lock(),
        Some("OfferToSaveLogins"),
        "0 is false"
    );
    assert_eq!(policies(&c).get("PasswordManagerEnabled"), None);
    assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
    assert!(validate_preferences(&json!({"a": {"Value": [1]}})).is_err());
    assert!(validate_preferences(&json!({"a": null})).is_err());
    assert!(validate_preferences(&json!({"a": [1], "b": "x", "c": {"Status": "clear"}})).is_ok());
}

#[test]
fn integral_numbers_are_integers_as_in_javascript() {
    let machine = reg(
        Root::LocalMachine,
        "",
        &[(
            "Preferences",
            multi_sz(
                r#"{"mail.a": {"Value": 30.0, "Status": "locked"}, "mail.b": 1e1, "mail.c": 0.5}"#,
            ),
        )],
        vec![],
    );
    let c = combine(windows(None, Some(&machine)).as_ref(), None);
    let d = c.doc.as_ref().unwrap();
    assert_eq!(d.pref("mail.a").unwrap().value, Some(PrefValue::Int(30)));
    assert_eq!(d.pref("mail.b").unwrap().value, Some(PrefValue::Int(10)));
    assert_eq!(
        d.pref("mail.c").unwrap().value,
        None,
        "not an integer: Thunderbird refuses it"
    );
}

#[test]
fn numbers_become_booleans_unless_the_pref_is_an_integer() {
    assert_eq!(prefs_number(1, None), PrefValue::Bool(true));
    assert_eq!(
        prefs_number(0, Some(&PrefValue::Bool(true))),
        PrefValue::Bool(false)
    );
    assert_eq!(
        prefs_number(1, Some(&PrefValue::Int(10))),
        PrefValue::Int(1)
    );
    assert_eq!(prefs_number(30, None), PrefValue::Int(30));
    assert_eq!(
        prefs_number(-1, Some(&PrefValue::Bool(true))),
        PrefValue::Int(-1)
    );
}

#[test]
fn javascript_semantics() {
    for (s, n) in [
        ("", 0.0),
        (" 7 ", 7.0),
        ("0x10", 16.0),
        ("1e1", 10.0),
        ("1.", 1.0),
        (".5", 0.5),
        ("-5", -5.0),
        ("Infinity", f64::INFINITY),
    ] {
        assert_eq!(js_number(s), n, "{s:?}");
    }
    for s in ["abc", ".", "+-1", "0x", "inf", "1e", "0x1g", "1_0"] {
        assert!(js_number(s).is_nan(), "{s:?}");
    }
    assert!(valid_subkey("50") && valid_subkey("mail.x") && !valid_subkey("51"));
    assert!(!valid_subkey("Infinity"));
    assert_eq!(array_index("0"), Some(0));
    assert_eq!(array_index("01"), None);
    assert_eq!(array_index("4294967295"), None);
    let m: Map<String, Json> = serde_json::from_str(r#"{"b": 1, "2": 1, "a": 1, "1": 1}"#).unwrap();
    assert_eq!(js_keys(&m), ["1", "2", "b", "a"]);
    assert_eq!(
        expand_environment("%A%%B%x%%y%", &|n| (n == "A").then(|| "1".to_owned())),
        "1%B%x%%y%"
    );
}
