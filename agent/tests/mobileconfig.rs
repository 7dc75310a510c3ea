//! The `.mobileconfig` profile against independent judges:
//!
//! - Apple's own schemas (`tests/data/apple/schemas/`, vendored from `apple/device-management`),
//!   through the checker below;
//! - two plist readers that share no code with the `plist` crate: Python's `plistlib` and
//!   libplist's `plistutil` (`postwarden_test_support::plist_oracle`);
//! - for signing, the `openssl cms` command-line tool. It is a test oracle only: the product
//!   signs with the RustCrypto crates and has no OpenSSL dependency (`tests/architecture.rs`
//!   keeps it that way).

use postwarden_test_support::plist_oracle;

use std::path::Path;
use std::process::Command;

use plist::{Dictionary, Value};
use postwarden_agent_core::export::sign::{sign, SignError};
use postwarden_clients::applemail::mobileconfig::{
    build, to_xml, AccountPayload, ForcedPreference, MailAuth, MobileconfigSpec,
};
use postwarden_profiles::AccountType;

// ---------------------------------------------------------------------------------------------
// Profiles to check
// ---------------------------------------------------------------------------------------------

fn account(account_type: AccountType) -> AccountPayload {
    AccountPayload {
        account_type,
        address: "alice@example.org".into(),
        description: "Example mail (Ärger & <Co>)".into(),
        incoming_host: "mail.example.org".into(),
        incoming_port: if account_type == AccountType::Pop {
            995
        } else {
            993
        },
        incoming_ssl: true,
        incoming_auth: MailAuth::Password,
        outgoing_host: "smtp.example.org".into(),
        outgoing_port: 587,
        outgoing_ssl: true,
        outgoing_auth: MailAuth::Password,
    }
}

fn forced(domain: &str, key: &str, value: Value) -> ForcedPreference {
    ForcedPreference {
        domain: domain.into(),
        key: key.into(),
        value,
    }
}

fn full_spec() -> MobileconfigSpec {
    MobileconfigSpec {
        identifier: "org.example.postwarden.mail".into(),
        display_name: "Mail policy (BSI M 5.57)".into(),
        description: "The mail account and the settings the security officer requires".into(),
        organization: Some("Example Org".into()),
        account: Some(account(AccountType::Imap)),
        forced: vec![
            forced("com.apple.mail", "PollTime", Value::Integer(30.into())),
            forced("com.apple.mail", "AutoFetch", Value::Boolean(true)),
            forced(
                "com.apple.mail-shared",
                "DisableURLLoading",
                Value::Boolean(true),
            ),
            forced(
                "com.apple.mail",
                "DisableInlineAttachmentViewing",
                Value::Boolean(true),
            ),
            forced(
                "group.com.apple.mail",
                "LoadRemoteContent-v2",
                Value::Integer(11.into()),
            ),
        ],
    }
}

/// Every shape the builder can produce.
fn specs() -> Vec<(&'static str, MobileconfigSpec)> {
    let full = full_spec();
    let mut pop = full_spec();
    let mut pop_account = account(AccountType::Pop);
    pop_account.outgoing_auth = MailAuth::None;
    pop_account.incoming_ssl = false;
    pop.account = Some(pop_account);
    pop.forced.clear();
    pop.organization = None;
    let mut prefs_only = full_spec();
    prefs_only.account = None;
    let mut empty = full_spec();
    empty.account = None;
    empty.forced.clear();
    vec![
        ("IMAP account and preferences", full),
        ("POP account only", pop),
        ("preferences only", prefs_only),
        ("nothing to configure", empty),
    ]
}

// ---------------------------------------------------------------------------------------------
// A schema checker driven by Apple's YAML
// ---------------------------------------------------------------------------------------------

mod schema {
    use std::collections::BTreeMap;
    use std::fmt;

    use plist::{Dictionary, Value};
    use serde::Deserialize;

    /// The oldest macOS Postwarden supports: keys introduced later are flagged.
    pub const MIN_MACOS: (u32, u32) = (13, 0);

    const SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/apple/schemas");

    #[derive(Debug, Deserialize)]
    pub struct Schema {
        pub payload: PayloadInfo,
        pub payloadkeys: Vec<KeySpec>,
    }

    #[derive(Debug, Deserialize)]
    pub struct PayloadInfo {
        pub payloadtype: String,
        #[serde(rename = "supportedOS", default)]
        pub supported_os: Option<SupportedOs>,
    }

    /// Only macOS matters here; the other systems' entries are ignored.
    #[derive(Debug, Deserialize)]
    pub struct SupportedOs {
        #[serde(rename = "macOS", default)]
        pub macos: Option<OsSupport>,
    }

    #[derive(Debug, Deserialize)]
    pub struct OsSupport {
        #[serde(default)]
        pub introduced: Option<String>,
    }

    /// One key of `payloadkeys` (or of a key's `subkeys`). The fields not read here (`title`,
    /// `content`, `default`, `format`, `subkeytype`) are ignored; `format` is a regular
    /// expression only S/MIME UUID keys have, all of them `n/a` on macOS.
    #[derive(Debug, Deserialize)]
    pub struct KeySpec {
        pub key: String,
        #[serde(rename = "type")]
        pub ty: String,
        #[serde(default)]
        pub presence: Option<String>,
        #[serde(default)]
        pub rangelist: Option<Vec<RangeValue>>,
        #[serde(rename = "supportedOS", default)]
        pub supported_os: Option<SupportedOs>,
        #[serde(default)]
        pub subkeys: Vec<KeySpec>,
    }

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(untagged)]
    pub enum RangeValue {
        Int(i64),
        Str(String),
    }

    impl fmt::Display for RangeValue {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                RangeValue::Int(i) => write!(f, "{i}"),
                RangeValue::Str(s) => write!(f, "{s:?}"),
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// A `presence: required` key is missing.
        Missing,
        /// The value's plist type is not the schema's.
        WrongType,
        /// The value is not one of the `rangelist`.
        NotInRange,
        /// The schema does not know the key.
        UnknownKey,
        /// The key or payload exists, but not on macOS (`introduced: n/a`).
        NotOnMacos,
        /// The key or payload came after [`MIN_MACOS`].
        TooNewForMacos,
        /// No schema for this `PayloadType`.
        UnknownPayloadType,
        /// Two payloads (or the profile and a payload) share a `PayloadIdentifier`.
        DuplicateIdentifier,
        /// Two payloads (or the profile and a payload) share a `PayloadUUID`.
        DuplicateUuid,
        /// A dictionary in the XML has the same `<key>` twice (every parser keeps one silently).
        DuplicateXmlKey,
        /// Not a plist at all.
        NotAPlist,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Finding {
        pub kind: Kind,
        /// Where: `PayloadContent[0].IncomingMailServerPortNumber`; empty for the root.
        pub path: String,
        pub detail: String,
    }

    impl fmt::Display for Finding {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:?} at {:?}: {}", self.kind, self.path, self.detail)
        }
    }

    pub struct Checker {
        top: Schema,
        common: Schema,
        payloads: BTreeMap<String, Schema>,
    }

    fn load(file: &str) -> Schema {
        let path = format!("{SCHEMA_DIR}/{file}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    impl Checker {
        pub fn load() -> Checker {
            let mut payloads = BTreeMap::new();
            for file in [
                "com.apple.mail.managed.yaml",
                "com.apple.ManagedClient.preferences.yaml",
            ] {
                let schema = load(file);
                payloads.insert(schema.payload.payloadtype.clone(), schema);
            }
            Checker {
                top: load("TopLevel.yaml"),
                common: load("CommonPayloadKeys.yaml"),
                payloads,
            }
        }

        pub fn payload_schema(&self, payload_type: &str) -> Option<&Schema> {
            self.payloads.get(payload_type)
        }

        /// Checks an XML profile: its raw text for duplicate keys, then its value.
        pub fn check_xml(&self, xml: &[u8]) -> Vec<Finding> {
            let mut findings = duplicate_xml_keys(&String::from_utf8_lossy(xml));
            match Value::from_reader_xml(xml) {
                Ok(v) => findings.extend(self.check(&v)),
                Err(e) => findings.push(Finding {
                    kind: Kind::NotAPlist,
                    path: String::new(),
                    detail: e.to_string(),
                }),
            }
            findings
        }

        /// Checks a profile value: the top level against `TopLevel.yaml`, each payload against
        /// `CommonPayloadKeys.yaml` plus its type's schema, and identifiers and UUIDs for
        /// uniqueness.
        pub fn check(&self, profile: &Value) -> Vec<Finding> {
            let mut out = Vec::new();
            let Some(top) = profile.as_dictionary() else {
                out.push(finding(Kind::WrongType, "", "the root is not a dictionary"));
                return out;
            };
            let top_specs: Vec<&KeySpec> = self.top.payloadkeys.iter().collect();
            check_os(&self.top.payload.supported_os, "", &mut out);
            check_dict(top, &top_specs, "", &mut out);

            let mut ids: Vec<(String, String)> = Vec::new();
            let mut uuids: Vec<(String, String)> = Vec::new();
            let mut note = |d: &Dictionary, path: &str| {
                if let Some(id) = d.get("PayloadIdentifier").and_then(Value::as_string) {
                    ids.push((path.to_owned(), id.to_owned()));
                }
                if let Some(uuid) = d.get("PayloadUUID").and_then(Value::as_string) {
                    uuids.push((path.to_owned(), uuid.to_owned()));
                }
            };
            note(top, "");

            if let Some(items) = top.get("PayloadContent").and_then(Value::as_array) {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("PayloadContent[{i}]");
                    let Some(payload) = item.as_dictionary() else {
                        continue; // reported by check_dict against TopLevel.yaml
                    };
                    note(payload, &path);
                    let Some(payload_type) = payload.get("PayloadType").and_then(Value::as_string)
                    else {
                        continue; // reported against CommonPayloadKeys below
                    };
                    let Some(schema) = self.payloads.get(payload_type) else {
                        out.push(finding(
                            Kind::UnknownPayloadType,
                            &path,
                            &format!("no schema for PayloadType {payload_type:?}"),
                        ));
                        continue;
                    };
                    check_os(&schema.payload.supported_os, &path, &mut out);
                    // The payload's own definition of a key wins over the common one.
                    let mut specs: Vec<&KeySpec> = schema.payloadkeys.iter().collect();
                    for common in &self.common.payloadkeys {
                        if !specs.iter().any(|s| s.key == common.key) {
                            specs.push(common);
                        }
                    }
                    check_dict(payload, &specs, &path, &mut out);
                }
            }

            for (kind, values) in [
                (Kind::DuplicateIdentifier, &ids),
                (Kind::DuplicateUuid, &uuids),
            ] {
                for (i, (path, value)) in values.iter().enumerate() {
                    if let Some((first, _)) = values[..i].iter().find(|(_, v)| v == value) {
                        out.push(finding(
                            kind,
                            path,
                            &format!("{value:?} is already used at {first:?}"),
                        ));
                    }
                }
            }
            out
        }
    }

    fn finding(kind: Kind, path: &str, detail: &str) -> Finding {
        Finding {
            kind,
            path: path.to_owned(),
            detail: detail.to_owned(),
        }
    }

    fn join(path: &str, key: &str) -> String {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    }

    fn check_os(os: &Option<SupportedOs>, path: &str, out: &mut Vec<Finding>) {
        let Some(introduced) = os
            .as_ref()
            .and_then(|o| o.macos.as_ref())
            .and_then(|m| m.introduced.as_deref())
        else {
            return;
        };
        if introduced == "n/a" {
            out.push(finding(Kind::NotOnMacos, path, "macOS: introduced n/a"));
            return;
        }
        let mut parts = introduced.split('.').map(|p| p.parse::<u32>());
        match (parts.next(), parts.next()) {
            (Some(Ok(major)), minor) => {
                let minor = minor.and_then(Result::ok).unwrap_or(0);
                if (major, minor) > MIN_MACOS {
                    out.push(finding(
                        Kind::TooNewForMacos,
                        path,
                        &format!(
                            "introduced in macOS {introduced}, after {}.{}",
                            MIN_MACOS.0, MIN_MACOS.1
                        ),
                    ));
                }
            }
            _ => panic!("schema: cannot read macOS version {introduced:?} at {path}"),
        }
    }

    fn type_name(v: &Value) -> &'static str {
        match v {
            Value::String(_) => "<string>",
            Value::Integer(_) => "<integer>",
            Value::Boolean(_) => "<boolean>",
            Value::Real(_) => "<real>",
            Value::Array(_) => "<array>",
            Value::Dictionary(_) => "<dictionary>",
            Value::Data(_) => "<data>",
            Value::Date(_) => "<date>",
            _ => "<other>",
        }
    }

    fn check_dict(d: &Dictionary, specs: &[&KeySpec], path: &str, out: &mut Vec<Finding>) {
        let any = specs.iter().find(|s| s.key == "ANY");
        for spec in specs.iter().filter(|s| s.key != "ANY") {
            if spec.presence.as_deref() == Some("required") && !d.contains_key(&spec.key) {
                out.push(finding(
                    Kind::Missing,
                    &join(path, &spec.key),
                    "required by the schema",
                ));
            }
        }
        for (key, value) in d {
            let p = join(path, key);
            match specs.iter().find(|s| s.key == *key).or(any) {
                Some(spec) => check_value(value, spec, &p, out),
                None => out.push(finding(Kind::UnknownKey, &p, "not in the schema")),
            }
        }
    }

    fn check_value(v: &Value, spec: &KeySpec, path: &str, out: &mut Vec<Finding>) {
        check_os(&spec.supported_os, path, out);
        if spec.ty != "<any>" && spec.ty != type_name(v) {
            out.push(finding(
                Kind::WrongType,
                path,
                &format!("want {}, found {}: {v:?}", spec.ty, type_name(v)),
            ));
            return;
        }
        if let Some(range) = &spec.rangelist {
            let scalars: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for s in scalars {
                let ok = range.iter().any(|r| match (r, s) {
                    (RangeValue::Int(i), Value::Integer(n)) => n.as_signed() == Some(*i),
                    (RangeValue::Str(r), Value::String(s)) => r == s,
                    _ => false,
                });
                if !ok {
                    let allowed: Vec<String> = range.iter().map(|r| r.to_string()).collect();
                    out.push(finding(
                        Kind::NotInRange,
                        path,
                        &format!("{s:?} is not one of {}", allowed.join(", ")),
                    ));
                }
            }
        }
        if spec.subkeys.is_empty() {
            return;
        }
        match v {
            Value::Dictionary(d) => {
                let specs: Vec<&KeySpec> = spec.subkeys.iter().collect();
                check_dict(d, &specs, path, out);
            }
            // An array's single subkey describes each element.
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_value(item, &spec.subkeys[0], &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    /// Dictionaries of the XML text that repeat a `<key>`. A small scanner of the tags: the
    /// parsers keep the last value silently, so the value-level check cannot see this.
    fn duplicate_xml_keys(xml: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        // One entry per open <dict> (its keys) or <array> (None).
        let mut stack: Vec<Option<Vec<String>>> = Vec::new();
        let mut rest = xml;
        while let Some(start) = rest.find('<') {
            rest = &rest[start..];
            let Some(end) = rest.find('>') else { break };
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            match tag {
                "dict" => stack.push(Some(Vec::new())),
                "array" => stack.push(None),
                "/dict" | "/array" => {
                    stack.pop();
                }
                "key" => {
                    let close = rest.find("</key>").unwrap_or(rest.len());
                    let key = rest[..close].to_owned();
                    rest = &rest[close..];
                    if let Some(Some(keys)) = stack.last_mut() {
                        if keys.contains(&key) {
                            out.push(finding(
                                Kind::DuplicateXmlKey,
                                &key,
                                "the same <key> twice in one <dict>",
                            ));
                        }
                        keys.push(key);
                    }
                }
                _ => {}
            }
        }
        out
    }
}

use schema::{Checker, Kind};

fn assert_clean(what: &str, findings: &[schema::Finding]) {
    let text: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
    assert!(
        findings.is_empty(),
        "{what}: the schema checker found:\n{}",
        text.join("\n")
    );
}

#[test]
fn every_generated_profile_passes_apples_schema() {
    let checker = Checker::load();
    for (what, spec) in specs() {
        let profile = build(&spec);
        assert_clean(what, &checker.check(&profile));
        assert_clean(what, &checker.check_xml(&to_xml(&profile)));
    }
}

#[test]
fn the_schemas_are_read_whole() {
    let checker = Checker::load();
    let mail = checker.payload_schema("com.apple.mail.managed").unwrap();
    let account_type = mail
        .payloadkeys
        .iter()
        .find(|k| k.key == "EmailAccountType")
        .unwrap();
    assert_eq!(account_type.presence.as_deref(), Some("required"));
    assert_eq!(
        account_type.rangelist,
        Some(vec![
            schema::RangeValue::Str("EmailTypeIMAP".into()),
            schema::RangeValue::Str("EmailTypePOP".into()),
        ])
    );
    assert!(mail.payloadkeys.len() >= 30, "{}", mail.payloadkeys.len());

    // `Set-Once` reuses `Forced`'s subkeys through a YAML alias (&id001 / *id001).
    let prefs = checker
        .payload_schema("com.apple.ManagedClient.preferences")
        .unwrap();
    let domain = &prefs.payloadkeys[0].subkeys[0];
    assert_eq!(domain.key, "ANY");
    for name in ["Forced", "Set-Once"] {
        let k = domain.subkeys.iter().find(|k| k.key == name).unwrap();
        assert_eq!(
            k.subkeys[0].subkeys[0].key, "mcx_preference_settings",
            "{name}"
        );
    }
}

/// Runs `edit` on the full profile and returns what the checker finds.
fn findings_after(edit: impl FnOnce(&mut Dictionary)) -> Vec<schema::Finding> {
    let mut profile = build(&full_spec());
    edit(profile.as_dictionary_mut().unwrap());
    Checker::load().check(&profile)
}

fn payload_mut(top: &mut Dictionary, index: usize) -> &mut Dictionary {
    top.get_mut("PayloadContent")
        .and_then(Value::as_array_mut)
        .unwrap()[index]
        .as_dictionary_mut()
        .unwrap()
}

/// Exactly one finding, of this kind at this path.
fn assert_only(findings: &[schema::Finding], kind: Kind, path: &str) {
    assert!(
        findings.len() == 1 && findings[0].kind == kind && findings[0].path == path,
        "want only {kind:?} at {path:?}, found:\n{}",
        findings
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn checker_catches_a_missing_account_type() {
    let f = findings_after(|top| {
        payload_mut(top, 0).remove("EmailAccountType");
    });
    assert_only(&f, Kind::Missing, "PayloadContent[0].EmailAccountType");
}

#[test]
fn checker_catches_a_port_given_as_a_string() {
    let f = findings_after(|top| {
        payload_mut(top, 0).insert(
            "IncomingMailServerPortNumber".into(),
            Value::String("993".into()),
        );
    });
    assert_only(
        &f,
        Kind::WrongType,
        "PayloadContent[0].IncomingMailServerPortNumber",
    );
}

#[test]
fn checker_catches_a_boolean_where_an_integer_belongs_and_the_reverse() {
    let f = findings_after(|top| {
        top.insert("PayloadVersion".into(), Value::Boolean(true));
    });
    assert_only(&f, Kind::WrongType, "PayloadVersion");
    let f = findings_after(|top| {
        payload_mut(top, 0).insert("IncomingMailServerUseSSL".into(), Value::Integer(1.into()));
    });
    assert_only(
        &f,
        Kind::WrongType,
        "PayloadContent[0].IncomingMailServerUseSSL",
    );
}

#[test]
fn checker_catches_a_duplicate_uuid_and_identifier() {
    let f = findings_after(|top| {
        let uuid = payload_mut(top, 0)["PayloadUUID"].clone();
        payload_mut(top, 1).insert("PayloadUUID".into(), uuid);
    });
    assert_only(&f, Kind::DuplicateUuid, "PayloadContent[1]");
    let f = findings_after(|top| {
        let id = top["PayloadIdentifier"].clone();
        payload_mut(top, 0).insert("PayloadIdentifier".into(), id);
    });
    assert_only(&f, Kind::DuplicateIdentifier, "PayloadContent[0]");
}

#[test]
fn checker_catches_an_unknown_payload_key() {
    let f = findings_after(|top| {
        payload_mut(top, 0).insert("EmailAccountColour".into(), Value::String("red".into()));
    });
    assert_only(&f, Kind::UnknownKey, "PayloadContent[0].EmailAccountColour");
    let f = findings_after(|top| {
        top.insert("PayloadRemovalAllowed".into(), Value::Boolean(true));
    });
    assert_only(&f, Kind::UnknownKey, "PayloadRemovalAllowed");
}

#[test]
fn checker_catches_values_out_of_range() {
    let f = findings_after(|top| {
        payload_mut(top, 0).insert(
            "EmailAccountType".into(),
            Value::String("EmailTypeExchange".into()),
        );
    });
    assert_only(&f, Kind::NotInRange, "PayloadContent[0].EmailAccountType");
    let f = findings_after(|top| {
        top.insert("PayloadType".into(), Value::String("configuration".into()));
    });
    assert_only(&f, Kind::NotInRange, "PayloadType");
    let f = findings_after(|top| {
        top.insert("PayloadVersion".into(), Value::Integer(2.into()));
    });
    assert_only(&f, Kind::NotInRange, "PayloadVersion");
}

#[test]
fn checker_catches_keys_that_do_not_exist_on_macos() {
    let f = findings_after(|top| {
        payload_mut(top, 0).insert("PreventMove".into(), Value::Boolean(true));
    });
    assert_only(&f, Kind::NotOnMacos, "PayloadContent[0].PreventMove");
}

#[test]
fn checker_catches_broken_custom_settings() {
    // `Forced` items need `mcx_preference_settings`; a domain knows only Forced and Set-Once.
    let f = findings_after(|top| {
        let content = payload_mut(top, 1)
            .get_mut("PayloadContent")
            .and_then(Value::as_dictionary_mut)
            .unwrap();
        let domain = content
            .get_mut("com.apple.mail")
            .and_then(Value::as_dictionary_mut)
            .unwrap();
        domain.insert(
            "Forced".into(),
            Value::Array(vec![Value::Dictionary(Dictionary::new())]),
        );
        domain.insert("Always".into(), Value::Array(vec![]));
    });
    let kinds: Vec<_> = f.iter().map(|f| (f.kind, f.path.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (
                Kind::Missing,
                "PayloadContent[1].PayloadContent.com.apple.mail.Forced[0].mcx_preference_settings"
            ),
            (
                Kind::UnknownKey,
                "PayloadContent[1].PayloadContent.com.apple.mail.Always"
            ),
        ],
        "{f:?}"
    );
}

#[test]
fn checker_catches_an_unknown_payload_type() {
    let f = findings_after(|top| {
        payload_mut(top, 0).insert(
            "PayloadType".into(),
            Value::String("com.apple.mail.unmanaged".into()),
        );
    });
    assert_only(&f, Kind::UnknownPayloadType, "PayloadContent[0]");
}

#[test]
fn checker_catches_a_key_written_twice_in_the_xml() {
    let xml = String::from_utf8(to_xml(&build(&full_spec()))).unwrap();
    let twice = xml.replacen(
        "<key>EmailAddress</key>",
        "<key>EmailAddress</key>\n\t\t\t<string>mallory@example.org</string>\n\t\t\t<key>EmailAddress</key>",
        1,
    );
    let f = Checker::load().check_xml(twice.as_bytes());
    assert_only(&f, Kind::DuplicateXmlKey, "EmailAddress");
}

// ---------------------------------------------------------------------------------------------
// Independent plist readers
// ---------------------------------------------------------------------------------------------

#[test]
fn plistlib_and_plistutil_read_every_generated_profile_as_built() {
    for (_, spec) in specs() {
        let profile = build(&spec);
        plist_oracle::assert_reads_back_as(&to_xml(&profile), &profile);
    }
}

fn every_type() -> Value {
    let date = plist::Date::from_xml_format("2024-02-29T23:59:58Z").unwrap();
    let old = plist::Date::from_xml_format("1969-07-20T20:17:40Z").unwrap();
    let mut inner = Dictionary::new();
    inner.insert("empty".into(), Value::Dictionary(Dictionary::new()));
    inner.insert("list".into(), Value::Array(vec![]));
    let mut d = Dictionary::new();
    d.insert("yes".into(), Value::Boolean(true));
    d.insert("no".into(), Value::Boolean(false));
    d.insert("zero".into(), Value::Integer(0.into()));
    d.insert("negative".into(), Value::Integer((-42).into()));
    d.insert("big".into(), Value::Integer(u64::MAX.into()));
    d.insert("real".into(), Value::Real(0.1));
    d.insert("whole real".into(), Value::Real(30.0));
    d.insert(
        "string".into(),
        Value::String("Grüße & <tags> \"quoted\"".into()),
    );
    d.insert("empty string".into(), Value::String(String::new()));
    d.insert("data".into(), Value::Data(vec![0, 1, 2, 0xfe, 0xff]));
    d.insert("date".into(), Value::Date(date));
    d.insert("before 1970".into(), Value::Date(old));
    d.insert(
        "array".into(),
        Value::Array(vec![
            Value::Integer(1.into()),
            Value::String("two".into()),
            Value::Boolean(false),
        ]),
    );
    d.insert("nested".into(), Value::Dictionary(inner));
    Value::Dictionary(d)
}

#[test]
fn the_oracle_reads_binary_and_xml_with_every_type() {
    let value = every_type();
    let mut xml = Vec::new();
    value.to_writer_xml(&mut xml).unwrap();
    let mut binary = Vec::new();
    value.to_writer_binary(&mut binary).unwrap();
    assert!(binary.starts_with(b"bplist00"));
    plist_oracle::assert_reads_back_as(&xml, &value);
    plist_oracle::assert_reads_back_as(&binary, &value);

    // The JSON form keeps the types apart.
    let json = plist_oracle::read_with_plistlib(&binary);
    assert_eq!(json["yes"], serde_json::json!(true));
    assert_eq!(json["zero"], serde_json::json!(0));
    assert_eq!(
        json["whole real"],
        serde_json::json!({"$real": "0x403e000000000000"})
    );
    assert_eq!(json["data"], serde_json::json!({"$data": "000102feff"}));
    assert_eq!(
        json["date"],
        serde_json::json!({"$date": "2024-02-29T23:59:58Z"})
    );
    assert_eq!(
        json["before 1970"],
        serde_json::json!({"$date": "1969-07-20T20:17:40Z"})
    );
}

#[test]
fn the_oracle_notices_a_changed_value() {
    let value = every_type();
    let mut changed = value.clone();
    changed
        .as_dictionary_mut()
        .unwrap()
        .insert("zero".into(), Value::Boolean(false));
    let mut xml = Vec::new();
    changed.to_writer_xml(&mut xml).unwrap();
    let diff = plist_oracle::first_difference(
        &plist_oracle::expected(&value),
        &plist_oracle::read_with_plistutil(&xml),
        "",
    );
    assert_eq!(diff.as_deref(), Some("/zero: want 0, got false"));
}

#[test]
fn the_oracle_fails_loudly_with_the_tools_message() {
    // plistutil turns a bad integer into 0 and exits 0; plistlib refuses it.
    let bad_integer = br#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>n</key><integer>abc</integer></dict></plist>"#;
    let err = plist_oracle::try_read_with_plistlib(bad_integer).unwrap_err();
    assert!(err.contains("ValueError"), "{err}");
    assert_eq!(
        plist_oracle::try_read_with_plistutil(bad_integer).unwrap(),
        serde_json::json!({"n": 0}),
        "plistutil's coercion, caught by comparing values"
    );

    let not_xml = b"<plist version=\"1.0\"><dict><key>a</key>";
    let err = plist_oracle::try_read_with_plistutil(not_xml).unwrap_err();
    assert!(err.contains("Failed to convert"), "{err}");
    assert!(plist_oracle::try_read_with_plistlib(not_xml).is_err());

    // Corrupt binary: plistutil writes an empty <plist/> and exits 0.
    let corrupt = b"bplist00\x00\x01\x02garbage garbage garbage garbage";
    let err = plist_oracle::try_read_with_plistutil(corrupt).unwrap_err();
    assert!(err.contains("no root object"), "{err}");
    assert!(plist_oracle::try_read_with_plistlib(corrupt).is_err());
}

// ---------------------------------------------------------------------------------------------
// Signing, verified by `openssl cms`
// ---------------------------------------------------------------------------------------------

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const RSA_KEY: &str = include_str!("data/apple/signing/rsa-2048.key.pem");

/// Root CA → intermediate CA → profile signer, as a real signing certificate is issued.
struct Pki {
    root_pem: String,
    intermediate_pem: String,
    signer_pem: String,
    signer_key_pem: String,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
}

fn pki(signer_key: KeyPair) -> Pki {
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("Postwarden test root CA");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);

    let intermediate_key = KeyPair::generate().unwrap();
    let intermediate_params = ca_params("Postwarden test intermediate CA");
    let intermediate = intermediate_params
        .signed_by(&intermediate_key, &root_issuer)
        .unwrap();
    let intermediate_issuer = Issuer::new(intermediate_params, intermediate_key);

    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "Postwarden test profile signer");
    let signer = params.signed_by(&signer_key, &intermediate_issuer).unwrap();
    Pki {
        root_pem: root.pem(),
        intermediate_pem: intermediate.pem(),
        signer_pem: signer.pem(),
        signer_key_pem: signer_key.serialize_pem(),
    }
}

fn key_types() -> Vec<(&'static str, Pki)> {
    vec![
        ("ECDSA P-256", pki(KeyPair::generate().unwrap())),
        ("RSA 2048", pki(KeyPair::from_pem(RSA_KEY).unwrap())),
    ]
}

/// `openssl cms -verify` against `root_pem` only; returns the content it extracted, or its
/// stderr.
fn openssl_verify(signed: &[u8], root_pem: &str) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().unwrap();
    let signed_path = dir.path().join("profile.signed.mobileconfig");
    let root_path = dir.path().join("root.pem");
    let content_path = dir.path().join("content.mobileconfig");
    std::fs::write(&signed_path, signed).unwrap();
    std::fs::write(&root_path, root_pem).unwrap();
    let out = Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-binary"])
        .arg("-CAfile")
        .arg(&root_path)
        .arg("-in")
        .arg(&signed_path)
        .arg("-out")
        .arg(&content_path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): the signing tests need the openssl command-line tool")
        });
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(std::fs::read(Path::new(&content_path)).unwrap())
}

#[test]
fn openssl_verifies_the_signed_profile_and_extracts_it_byte_for_byte() {
    let profile = build(&full_spec());
    let xml = to_xml(&profile);
    for (what, pki) in key_types() {
        let signed = sign(
            &xml,
            &pki.signer_pem,
            &pki.signer_key_pem,
            Some(&pki.intermediate_pem),
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let content = openssl_verify(&signed, &pki.root_pem)
            .unwrap_or_else(|e| panic!("{what}: openssl cms -verify refused: {e}"));
        assert!(content == xml, "{what}: extracted content differs");
        plist_oracle::assert_reads_back_as(&content, &profile);
    }
}

#[test]
fn openssl_refuses_a_tampered_profile_and_a_missing_chain() {
    let xml = to_xml(&build(&full_spec()));
    let pki = pki(KeyPair::generate().unwrap());

    // Without the intermediate, the signer cannot be chained to the root.
    let signed = sign(&xml, &pki.signer_pem, &pki.signer_key_pem, None).unwrap();
    let err = openssl_verify(&signed, &pki.root_pem).unwrap_err();
    assert!(
        err.contains("unable to get local issuer certificate"),
        "{err}"
    );

    // One byte of the embedded content changed.
    let mut signed = sign(
        &xml,
        &pki.signer_pem,
        &pki.signer_key_pem,
        Some(&pki.intermediate_pem),
    )
    .unwrap();
    let needle = b"alice@example.org";
    let at = signed
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the content is embedded");
    signed[at] = b'm';
    let err = openssl_verify(&signed, &pki.root_pem).unwrap_err();
    assert!(err.to_lowercase().contains("verif"), "{err}");
}

#[test]
fn the_signed_profile_parses_back_with_the_cms_crate() {
    use cms::content_info::ContentInfo;
    use cms::signed_data::SignedData;
    use der::asn1::OctetString;
    use der::Decode;

    let xml = to_xml(&build(&full_spec()));
    for (what, pki) in key_types() {
        let signed = sign(
            &xml,
            &pki.signer_pem,
            &pki.signer_key_pem,
            Some(&pki.intermediate_pem),
        )
        .unwrap();
        let info = ContentInfo::from_der(&signed).unwrap();
        assert_eq!(
            info.content_type.to_string(),
            "1.2.840.113549.1.7.2",
            "{what}"
        );
        let sd = info.content.decode_as::<SignedData>().unwrap();
        assert_eq!(
            sd.encap_content_info.econtent_type.to_string(),
            "1.2.840.113549.1.7.1",
            "{what}: id-data"
        );
        let content = sd
            .encap_content_info
            .econtent
            .expect("embedded, not detached")
            .decode_as::<OctetString>()
            .unwrap();
        assert!(content.as_bytes() == xml.as_slice(), "{what}");
        assert_eq!(
            sd.certificates.unwrap().0.len(),
            2,
            "{what}: signer and intermediate"
        );
        assert_eq!(sd.signer_infos.0.len(), 1, "{what}");
    }
}

#[test]
fn sign_refuses_a_key_that_does_not_match_the_certificate() {
    let xml = to_xml(&build(&full_spec()));
    let a = pki(KeyPair::generate().unwrap());
    let b = pki(KeyPair::from_pem(RSA_KEY).unwrap());
    for (cert, key) in [
        (&a.signer_pem, &b.signer_key_pem),
        (&b.signer_pem, &a.signer_key_pem),
        (
            &a.signer_pem,
            &pki(KeyPair::generate().unwrap()).signer_key_pem,
        ),
    ] {
        let err = sign(&xml, cert, key, None).unwrap_err();
        assert!(matches!(err, SignError::KeyMismatch { .. }), "{err:?}");
        assert!(err
            .to_string()
            .starts_with("the private key does not match the signer certificate"));
    }
}

// ---------------------------------------------------------------------------------------------
// The command line: `postwarden-agent export --format mobileconfig`
// ---------------------------------------------------------------------------------------------

const AGENT: &str = env!("CARGO_BIN_EXE_postwarden-agent");

fn export(extra: &[&str]) -> std::process::Output {
    Command::new(AGENT)
        .args([
            "export",
            "--profile",
            "builtin:bsi-m5.57",
            "--format",
            "mobileconfig",
            "--var",
            "user.email=alice@example.org",
            "--var",
            "mail.account_type=pop",
            "--var",
            "mail.incoming_host=pop.example.org",
            "--var",
            "mail.outgoing_host=smtp.example.org",
            "--var",
            "mail.outgoing_port=465",
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_cli_exports_the_baselines_profile_signed_or_not() {
    let out = export(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = out.stdout;
    let profile = Value::from_reader(std::io::Cursor::new(&xml)).unwrap();
    let checker = Checker::load();
    assert_clean("CLI export", &checker.check(&profile));
    assert_clean("CLI export (XML)", &checker.check_xml(&xml));
    plist_oracle::assert_reads_back_as(&xml, &profile);

    let top = profile.as_dictionary().unwrap();
    assert_eq!(
        top["PayloadIdentifier"].as_string(),
        Some("org.postwarden.bsi-m5.57")
    );
    let account = top["PayloadContent"].as_array().unwrap()[0]
        .as_dictionary()
        .unwrap();
    for (key, want) in [
        ("EmailAccountType", Value::String("EmailTypePOP".into())),
        ("EmailAddress", Value::String("alice@example.org".into())),
        (
            "IncomingMailServerHostName",
            Value::String("pop.example.org".into()),
        ),
        ("IncomingMailServerPortNumber", Value::Integer(995.into())),
        ("IncomingMailServerUseSSL", Value::Boolean(true)),
        (
            "IncomingMailServerAuthentication",
            Value::String("EmailAuthPassword".into()),
        ),
        ("OutgoingMailServerPortNumber", Value::Integer(465.into())),
        ("OutgoingMailServerUseSSL", Value::Boolean(true)),
        (
            "OutgoingMailServerAuthentication",
            Value::String("EmailAuthPassword".into()),
        ),
    ] {
        assert_eq!(account.get(key), Some(&want), "{key}");
    }
    assert!(account
        .keys()
        .all(|k| !k.contains("Password") || k.ends_with("Authentication")));

    // The same file again: stable identifiers and UUIDs.
    assert!(
        export(&[]).stdout == xml,
        "regenerating gives the same bytes"
    );

    // Signed through the command line: openssl extracts exactly the unsigned file.
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(KeyPair::generate().unwrap());
    let cert = dir.path().join("signer.pem");
    let key = dir.path().join("signer.key");
    let chain = dir.path().join("chain.pem");
    std::fs::write(&cert, &pki.signer_pem).unwrap();
    std::fs::write(&key, &pki.signer_key_pem).unwrap();
    std::fs::write(&chain, &pki.intermediate_pem).unwrap();
    let signed_path = dir.path().join("profile.mobileconfig");
    let out = export(&[
        "--sign-cert",
        cert.to_str().unwrap(),
        "--sign-key",
        key.to_str().unwrap(),
        "--sign-chain",
        chain.to_str().unwrap(),
        "-o",
        signed_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = std::fs::read(&signed_path).unwrap();
    let content = openssl_verify(&signed, &pki.root_pem).unwrap();
    assert!(content == xml, "the signed profile holds the unsigned one");

    // A key that is not the certificate's: exit 2, the files named, nothing written.
    let other = dir.path().join("other.key");
    std::fs::write(&other, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let refused = dir.path().join("refused.mobileconfig");
    let out = export(&[
        "--sign-cert",
        cert.to_str().unwrap(),
        "--sign-key",
        other.to_str().unwrap(),
        "-o",
        refused.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("other.key"), "{err}");
    assert!(!refused.exists());
}

#[test]
fn the_cli_names_a_missing_account_variable() {
    let out = Command::new(AGENT)
        .args([
            "export",
            "--profile",
            "builtin:bsi-m5.57",
            "--format",
            "mobileconfig",
            "--var",
            "user.email=alice@example.org",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("field `account.type`"), "{err}");
    assert!(err.contains("--var mail.account_type=VALUE"), "{err}");
    assert!(out.stdout.is_empty());
}
