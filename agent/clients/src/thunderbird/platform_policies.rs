//! Thunderbird's *platform* policies: Group Policy in the Windows registry and the macOS
//! preference domain `org.mozilla.thunderbird`, turned into the JSON object Thunderbird's policy
//! engine builds from them, and combined with `policies.json` the way the engine does.
//!
//! Everything here replays Mozilla's own code (toolkit `enterprisepolicies`, shared by Firefox
//! and Thunderbird; read at mozilla/gecko-dev and the Thunderbird 153 sources):
//! - `EnterprisePoliciesParent.sys.mjs`: `WindowsGPOPoliciesProvider` reads
//!   `HKEY_CURRENT_USER\Software\Policies\Mozilla\Thunderbird` first, then
//!   `HKEY_LOCAL_MACHINE\...` *into the same object*, so a machine policy replaces a user policy
//!   of the same name (top level only); `macOSPoliciesProvider` reads the app's preference domain
//!   only when `EnterprisePoliciesEnabled` is true; `_chooseProvider` uses the platform's
//!   policies when it has any, and then a `CombinedProvider` keeps every *top-level* platform
//!   policy and adds only the `policies.json` policies the platform lacks. A registry
//!   `Preferences` therefore hides the whole `Preferences` object of `policies.json`.
//! - `WindowsGPOParser.sys.mjs`: `registryToObject` / `readRegistryValue` ([`from_registry`]).
//! - `macOSPoliciesParser.sys.mjs` and `nsMacPreferencesReader.mm`: the domain's dictionary as
//!   JSON (every `NSNumber`, booleans included, becomes an integer), `__`-flattened keys
//!   unflattened ([`from_plists`]).
//! - `JsonSchemaValidator.sys.mjs` with Thunderbird's `policies-schema.json`: what survives
//!   validation of the policies the agent reads ([`combine`]).
//!
//! Pure: callers read the registry and the files (`postwarden-agent-core`,
//! `thunderbird/platform.rs`) and hand the snapshot in.

use std::collections::BTreeMap;
use std::fmt;

use plist::Value as Plist;
use postwarden_profiles::report::Override;
use postwarden_registry::{KeyPath, RegValue};
use serde_json::{Map, Number, Value as Json};

use super::policies::PoliciesDoc;
use super::prefs::PrefValue;

/// `Services.appinfo.name`: the registry key below `Software\Policies\Mozilla`.
pub const APP_NAME: &str = "Thunderbird";
/// The policy key below a hive (`WindowsGPOPoliciesProvider`: `SOFTWARE\Policies` +
/// `Mozilla\` + the app name).
pub const POLICY_KEY: &str = r"Software\Policies\Mozilla\Thunderbird";
/// Thunderbird's bundle identifier, its preference domain on macOS.
pub const MAC_DOMAIN: &str = "org.mozilla.thunderbird";
/// The switch `nsMacPreferencesReader::PoliciesEnabled` reads (`boolForKey`).
pub const MAC_ENABLED_KEY: &str = "EnterprisePoliciesEnabled";

/// Which provider produced the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Windows,
    MacOs,
}

/// The layer a platform policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// `HKEY_CURRENT_USER\Software\Policies\Mozilla\Thunderbird` (user Group Policy).
    RegistryUser,
    /// `HKEY_LOCAL_MACHINE\Software\Policies\Mozilla\Thunderbird` (computer Group Policy).
    RegistryMachine,
    /// `/Library/Managed Preferences/<user>/org.mozilla.thunderbird.plist`: forced for this user
    /// by a configuration profile.
    MacManagedUser,
    /// `/Library/Managed Preferences/org.mozilla.thunderbird.plist`: forced for every user by a
    /// configuration profile.
    MacManagedComputer,
    /// `~/Library/Preferences/org.mozilla.thunderbird.plist`: the user's own preference domain,
    /// which the user can write (`defaults write`).
    MacUserDomain,
    /// `/Library/Preferences/org.mozilla.thunderbird.plist`: the machine's domain (root only),
    /// Mozilla's documented non-MDM deployment.
    MacMachineDomain,
}

impl Layer {
    /// How a finding names the layer (`Override::layer`).
    pub fn describe(self) -> &'static str {
        match self {
            Layer::RegistryUser | Layer::RegistryMachine => {
                "Thunderbird policy in the Windows registry (Group Policy)"
            }
            Layer::MacManagedUser | Layer::MacManagedComputer => "macOS managed preferences",
            Layer::MacUserDomain => "Thunderbird policy in the user's macOS preferences",
            Layer::MacMachineDomain => "Thunderbird policy in the computer's macOS preferences",
        }
    }
}

/// Where one platform policy (or one entry of its `Preferences` policy) was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub layer: Layer,
    /// The registry key or the plist file, then what in it: `HKEY_LOCAL_MACHINE\Software\
    /// Policies\Mozilla\Thunderbird, value "Preferences" (REG_MULTI_SZ), entry "mail.x"`,
    /// `/Library/Managed Preferences/org.mozilla.thunderbird.plist, key "Preferences", entry
    /// "mail.x"`.
    pub location: String,
    /// The top-level name as stored there (registry value or subkey, plist key), for the fix.
    pub key: String,
    /// What is stored, as found: `REG_DWORD 0x0`, `{"Value":30,"Status":"locked"}`.
    pub evidence: String,
}

impl Origin {
    /// What an administrator must do so the agent's value can hold.
    pub fn fix(&self) -> String {
        let key = &self.key;
        match self.layer {
            Layer::RegistryMachine => format!(
                "change or remove the computer Group Policy that sets Thunderbird's \"{key}\" \
                 policy (HKEY_LOCAL_MACHINE\\{POLICY_KEY}); registry policies take precedence \
                 over policies.json, which Postwarden writes"
            ),
            Layer::RegistryUser => format!(
                "change or remove the user Group Policy that sets Thunderbird's \"{key}\" \
                 policy (HKEY_CURRENT_USER\\{POLICY_KEY}); registry policies take precedence \
                 over policies.json, which Postwarden writes"
            ),
            Layer::MacManagedUser | Layer::MacManagedComputer => format!(
                "change the configuration profile that sets \"{key}\" in {MAC_DOMAIN} \
                 (`profiles show` lists the installed profiles) or remove the key from it; \
                 managed preferences take precedence over policies.json, which Postwarden writes"
            ),
            Layer::MacUserDomain => format!(
                "remove \"{key}\" from the user's preferences (`defaults delete {MAC_DOMAIN} \
                 {key}` as the user); while EnterprisePoliciesEnabled is true, Thunderbird \
                 prefers it to policies.json"
            ),
            Layer::MacMachineDomain => format!(
                "remove \"{key}\" from the computer's preferences (`sudo defaults delete \
                 /Library/Preferences/{MAC_DOMAIN} {key}`); while EnterprisePoliciesEnabled is \
                 true, Thunderbird prefers it to policies.json"
            ),
        }
    }

    /// The finding's `overridden_by`.
    pub fn to_override(&self) -> Override {
        Override {
            layer: self.layer.describe().to_owned(),
            location: self.location.clone(),
            evidence: self.evidence.clone(),
            fix: self.fix(),
        }
    }
}

/// The policies a platform provider hands to Thunderbird's policy engine.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformPolicies {
    pub platform: Platform,
    /// The policies object before validation, top-level names as the provider produced them.
    pub policies: Map<String, Json>,
    /// Where each top-level policy came from.
    pub origins: BTreeMap<String, Origin>,
    /// Where each entry of the `Preferences` policy came from.
    pub pref_origins: BTreeMap<String, Origin>,
    /// The provider's `hasPolicies`: when false, Thunderbird uses `policies.json` alone.
    pub has_policies: bool,
    /// Thunderbird's policy engine throws while reading these policies and then applies no
    /// policy at all, `policies.json` included (why, in words).
    pub engine_failure: Option<String>,
    /// What the parser skipped or could not read, in words (Thunderbird logs these).
    pub notes: Vec<String>,
}

impl PlatformPolicies {
    fn new(platform: Platform) -> PlatformPolicies {
        PlatformPolicies {
            platform,
            policies: Map::new(),
            origins: BTreeMap::new(),
            pref_origins: BTreeMap::new(),
            has_policies: false,
            engine_failure: None,
            notes: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JavaScript semantics the parsers depend on.

/// An array index as JavaScript spells it (`"0"`, `"17"`; not `"01"`, `"-1"`, `"1.0"`).
fn array_index(s: &str) -> Option<usize> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    // 2^32 - 1 is not an array index.
    (n < u64::from(u32::MAX)).then_some(n as usize)
}

/// `Object.keys` order: array indices ascending, then the other keys in insertion order.
fn js_keys(map: &Map<String, Json>) -> Vec<&String> {
    let mut indices: Vec<(usize, &String)> = map
        .keys()
        .filter_map(|k| array_index(k).map(|i| (i, k)))
        .collect();
    indices.sort();
    let mut keys: Vec<&String> = indices.into_iter().map(|(_, k)| k).collect();
    keys.extend(map.keys().filter(|k| array_index(k).is_none()));
    keys
}

/// `isEmptyObject` of `EnterprisePoliciesParent.sys.mjs`: objects whose values are all empty
/// objects, recursively. `Err`: it throws (`Object.keys(null)`), and with it the policy engine.
fn is_empty_object(v: &Json) -> Result<bool, String> {
    match v {
        Json::Object(m) => {
            for k in js_keys(m) {
                if !is_empty_object(&m[k.as_str()])? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Json::Null => Err("`isEmptyObject` reaches a null value and throws".to_owned()),
        _ => Ok(false),
    }
}

fn js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// JavaScript's `Number(string)`.
fn js_number(s: &str) -> f64 {
    let t = s.trim_matches(js_whitespace);
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return f64::NAN;
            }
            return digits.chars().fold(0.0, |acc, c| {
                acc * f64::from(radix) + f64::from(c.to_digit(radix).expect("checked"))
            });
        }
    }
    match t {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    // StrDecimalLiteral: [+-] (digits [. [digits]] | . digits) [(e|E) [+-] digits]
    let b = t.as_bytes();
    let mut i = usize::from(matches!(b[0], b'+' | b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    if i < b.len() && b[i] == b'.' {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return f64::NAN;
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        i += 1;
        if i < b.len() && matches!(b[i], b'+' | b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return f64::NAN;
        }
    }
    if i != b.len() {
        return f64::NAN;
    }
    t.parse().unwrap_or(f64::NAN)
}

fn js_is_integer(n: f64) -> bool {
    n.is_finite() && n.trunc() == n
}

fn js_truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(_) | Json::Object(_) => true,
    }
}

/// A JavaScript number as JSON: an integer when it is one.
fn js_number_json(n: f64) -> Json {
    if js_is_integer(n) && n.abs() < 9_007_199_254_740_992.0 {
        Json::from(n as i64)
    } else {
        Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

// ---------------------------------------------------------------------------------------------
// Windows: WindowsGPOParser.sys.mjs

/// A registry key as `WindowsGPOParser` enumerates it: values in the order `RegEnumValue`
/// returns them (creation order on Windows) and subkeys in the order `RegEnumKeyEx` returns them
/// (sorted by upper-cased name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegKey {
    pub path: KeyPath,
    pub values: Vec<(String, RegValue)>,
    pub subkeys: Vec<RegKey>,
}

impl RegKey {
    /// The key's own name (its last path component).
    pub fn name(&self) -> &str {
        self.path.path.rsplit('\\').next().unwrap_or_default()
    }
}

/// The registry type as Windows numbers it (`RegValue::Other` keeps unknown types).
fn reg_type(v: &RegValue) -> u32 {
    v.type_code()
}

/// `WinRegistry::Key::GetValueAsString` on the stored bytes: the last UTF-16 unit is dropped as
/// the terminator it should be, then one more NUL if the data ended in two. `None`: an odd
/// number of bytes, which `readStringValue` refuses (it throws).
fn stored_string(data: &[u8]) -> Option<String> {
    if data.is_empty() {
        return Some(String::new());
    }
    if !data.len().is_multiple_of(2) {
        return None;
    }
    let mut s: Vec<char> = postwarden_registry::decode_utf16(&data[..data.len() - 2])
        .chars()
        .collect();
    if s.last() == Some(&'\0') {
        s.pop();
    }
    Some(s.into_iter().collect())
}

/// `ExpandEnvironmentStringsW`: `%NAME%` replaced when `env` knows the name (Windows compares
/// names case-insensitively: `env` receives the name as written); an unknown name is left as it
/// is.
pub fn expand_environment(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if end > 0 => {
                let name = &after[..end];
                match env(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('%');
                        out.push_str(name);
                        out.push('%');
                    }
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `readRegistryValue`. `Ok(None)` is JavaScript's `undefined` (a `REG_MULTI_SZ` that is not
/// JSON); `Err`: the read throws.
fn read_registry_value(
    name: &str,
    v: &RegValue,
    env: &dyn Fn(&str) -> Option<String>,
    notes: &mut Vec<String>,
) -> Result<Option<Json>, String> {
    let bad = |what: &str| Err(format!("value \"{name}\": {what}"));
    let string = |v: &RegValue| -> Option<String> {
        match v {
            RegValue::Sz(s) | RegValue::ExpandSz(s) => Some(s.clone()),
            RegValue::MultiSz(items) => Some(items.join("\0")),
            RegValue::Other { data, .. } => stored_string(data),
            _ => None,
        }
    };
    Ok(Some(match reg_type(v) {
        // "While we support JSON in REG_SZ and REG_MULTI_SZ, if it's REG_MULTI_SZ, we know it
        // must be JSON": the strings joined with "\n" (`replace(/\0/g, "\n")`), then parsed.
        7 => {
            let Some(text) = string(v) else {
                return bad("a REG_MULTI_SZ of an odd number of bytes cannot be read");
            };
            match serde_json::from_str::<Json>(&text.replace('\0', "\n")) {
                Ok(json) => json,
                Err(e) => {
                    notes.push(format!(
                        "value \"{name}\" (REG_MULTI_SZ) is not JSON ({e}); Thunderbird skips it"
                    ));
                    return Ok(None);
                }
            }
        }
        1 | 2 => {
            let Some(text) = string(v) else {
                return bad("a string of an odd number of bytes cannot be read");
            };
            // REG_EXPAND_SZ is read with `ExpandEnvironment`.
            if reg_type(v) == 2 {
                Json::String(expand_environment(&text, env))
            } else {
                Json::String(text)
            }
        }
        // `readBinaryValue` returns an ACString: one character per byte.
        3 => {
            let bytes = match v {
                RegValue::Binary(b) | RegValue::Other { data: b, .. } => b,
                _ => unreachable!("type 3 is binary"),
            };
            Json::String(bytes.iter().map(|&b| char::from(b)).collect())
        }
        4 => match v {
            RegValue::Dword(d) => Json::from(*d),
            _ => return bad("a REG_DWORD that is not 4 bytes cannot be read"),
        },
        // `readInt64Value`: a uint64 as a JavaScript number (exact up to 2^53).
        11 => match v {
            RegValue::Qword(q) => js_number_json(*q as f64),
            _ => return bad("a REG_QWORD that is not 8 bytes cannot be read"),
        },
        // "unknown type": null (skipped in an object, kept in an array).
        _ => Json::Null,
    }))
}

/// Where one entry of an object read from the registry came from: a value, or a subkey with the
/// origins of its own entries (for `Preferences`).
type Entries = BTreeMap<String, (Origin, Option<BTreeMap<String, Origin>>)>;

fn value_location(key: &KeyPath, name: &str, v: &RegValue) -> String {
    format!("{key}, value \"{name}\" ({})", v.type_name())
}

/// `registryToObject(wrk, policies)`: the values of `key` (an array when the first is named
/// `"1"`), then its subkeys (an array of objects when the first is named `"1"`); a subkey's
/// object replaces a value of the same name. `into` is the object being filled (the top-level
/// policies object is filled in place, so what was set before a read throws stays); `entries`
/// receives each entry's origin. `Ok(Some(array))`: the key reads as an array instead.
fn registry_to_object(
    key: &RegKey,
    into: &mut Map<String, Json>,
    entries: &mut Entries,
    layer: Layer,
    env: &dyn Fn(&str) -> Option<String>,
    notes: &mut Vec<String>,
) -> Result<Option<Json>, String> {
    if let Some((first, _)) = key.values.first() {
        if first == "1" {
            // "If the first item is 1, just assume it is an array" (children are ignored).
            let mut array = Vec::new();
            for (name, v) in &key.values {
                array.push(read_registry_value(name, v, env, notes)?.unwrap_or(Json::Null));
            }
            return Ok(Some(Json::Array(array)));
        }
        for (name, v) in &key.values {
            // `if (value != undefined)`: undefined and null are both skipped.
            match read_registry_value(name, v, env, notes)? {
                None | Some(Json::Null) => {}
                Some(json) => {
                    let origin = Origin {
                        layer,
                        location: value_location(&key.path, name, v),
                        key: name.clone(),
                        evidence: v.to_string(),
                    };
                    entries.insert(name.clone(), (origin, None));
                    into.insert(name.clone(), json);
                }
            }
        }
    }
    if let Some(first) = key.subkeys.first() {
        if first.name() == "1" {
            // "If the first item is 1, it's an array of objects."
            let mut array = Vec::new();
            for sub in &key.subkeys {
                array.push(read_subkey(sub, layer, env, notes)?.0);
            }
            return Ok(Some(Json::Array(array)));
        }
        for sub in &key.subkeys {
            let (json, sub_entries) = read_subkey(sub, layer, env, notes)?;
            let name = sub.name().to_owned();
            let origin = Origin {
                layer,
                location: sub.path.to_string(),
                key: name.clone(),
                evidence: key_evidence(sub),
            };
            let sub_origins = sub_entries.into_iter().map(|(k, (o, _))| (k, o)).collect();
            entries.insert(name.clone(), (origin, Some(sub_origins)));
            into.insert(name, json);
        }
    }
    Ok(None)
}

/// `registryToObject(childWrk)`: a fresh object (or array) for a subkey.
fn read_subkey(
    key: &RegKey,
    layer: Layer,
    env: &dyn Fn(&str) -> Option<String>,
    notes: &mut Vec<String>,
) -> Result<(Json, Entries), String> {
    let mut map = Map::new();
    let mut entries = Entries::new();
    Ok(
        match registry_to_object(key, &mut map, &mut entries, layer, env, notes)? {
            Some(array) => (array, Entries::new()),
            None => (Json::Object(map), entries),
        },
    )
}

/// A subkey's values in words: `Value = REG_DWORD 0x1e; Status = REG_SZ "locked"`.
fn key_evidence(key: &RegKey) -> String {
    let mut parts: Vec<String> = key
        .values
        .iter()
        .map(|(n, v)| format!("{n} = {v}"))
        .collect();
    if !key.subkeys.is_empty() {
        parts.push(format!("{} subkey(s)", key.subkeys.len()));
    }
    if parts.is_empty() {
        "an empty key".to_owned()
    } else {
        parts.join("; ")
    }
}

/// The `Preferences` entries' origins when `Preferences` is the JSON of a registry value.
fn json_value_entries(origin: &Origin, json: Option<&Json>) -> BTreeMap<String, Origin> {
    let Some(Json::Object(m)) = json else {
        return BTreeMap::new();
    };
    m.iter()
        .map(|(pref, entry)| {
            (
                pref.clone(),
                Origin {
                    layer: origin.layer,
                    location: format!("{}, entry \"{pref}\"", origin.location),
                    key: origin.key.clone(),
                    evidence: entry.to_string(),
                },
            )
        })
        .collect()
}

/// One provider pass (`readPolicies`) over a policy key, into the accumulated policies.
fn registry_pass(
    key: &RegKey,
    layer: Layer,
    out: &mut PlatformPolicies,
    env: &dyn Fn(&str) -> Option<String>,
) {
    let mut entries = Entries::new();
    let mut notes = Vec::new();
    let result = registry_to_object(key, &mut out.policies, &mut entries, layer, env, &mut notes);
    out.notes.extend(notes);
    match result {
        Ok(Some(_array)) => {
            // The policies object *is* this array now: what earlier passes set is gone, the
            // array's indices are unknown policy names ("0", "1", ...) that Thunderbird ignores,
            // and later passes add named policies to it. Only the names matter here.
            out.notes.push(format!(
                "{}: the first value or subkey is named \"1\", so Thunderbird reads the whole key \
                 as a list and no policy from it (nor from an earlier pass) applies",
                key.path
            ));
            out.policies.clear();
            out.origins.clear();
            out.pref_origins.clear();
            out.has_policies = true;
            return;
        }
        Ok(None) => {}
        // `readPolicies` catches and logs; what was set before stays.
        Err(why) => out.notes.push(format!(
            "{}: Thunderbird stops reading the key here: {why}",
            key.path
        )),
    }
    for (name, (origin, sub)) in entries {
        if name == "Preferences" {
            out.pref_origins = match sub {
                Some(sub) => sub,
                None => json_value_entries(&origin, out.policies.get("Preferences")),
            };
        }
        out.origins.insert(name, origin);
    }
}

/// Thunderbird's policies from the registry (`WindowsGPOPoliciesProvider` with
/// `WindowsGPOParser`): `user` is `HKEY_CURRENT_USER\Software\Policies\Mozilla\Thunderbird`,
/// `machine` the same key under `HKEY_LOCAL_MACHINE` (`None`: the key does not exist), read in
/// that order into one object. `env` expands `%NAME%` in `REG_EXPAND_SZ` values.
///
/// `None` when the provider has no policies (neither key, or only empty objects): Thunderbird
/// then reads `policies.json` alone.
///
/// The mapping, value by value (`readRegistryValue`):
/// - `REG_DWORD` and `REG_QWORD`: a number (a boolean policy accepts 0 and 1, see [`combine`]);
/// - `REG_SZ`: the string as it is (not parsed: of Thunderbird's policies only `3rdparty`
///   takes JSON in a string, so a `REG_SZ` `Preferences` is invalid and ignored, yet hides
///   `policies.json`'s); `REG_EXPAND_SZ`: the string with environment variables expanded;
/// - `REG_MULTI_SZ`: JSON, the strings joined with line breaks; not JSON: skipped;
/// - `REG_BINARY`: a string of one character per byte; any other type: null (skipped).
///
/// And key by key (`registryToObject`): values whose first is named `"1"` make an array (the
/// subkeys are then ignored); otherwise an object of the values, then of the subkeys (each an
/// object, or an array of objects when the first subkey is named `"1"`), a subkey replacing a
/// value of the same name: the old per-pref `Preferences` key hides the `Preferences` JSON
/// value, which is why Mozilla's documentation asks to clear the deprecated settings.
pub fn from_registry(
    user: Option<&RegKey>,
    machine: Option<&RegKey>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<PlatformPolicies> {
    let mut out = PlatformPolicies::new(Platform::Windows);
    let mut any = false;
    // "Machine policies override user policies, so we read user policies first and then
    // replace them if necessary."
    for (key, layer) in [
        (user, Layer::RegistryUser),
        (machine, Layer::RegistryMachine),
    ] {
        if let Some(key) = key {
            any = true;
            registry_pass(key, layer, &mut out, env);
        }
    }
    if !any {
        return None;
    }
    // `hasPolicies`: `this._policies !== null && !isEmptyObject(this._policies)`.
    if !out.has_policies {
        match is_empty_object(&Json::Object(out.policies.clone())) {
            Ok(empty) => out.has_policies = !empty,
            Err(why) => {
                out.has_policies = true;
                out.engine_failure =
                    Some(format!("the registry policies contain a null value: {why}"));
            }
        }
    }
    (out.has_policies || out.engine_failure.is_some()).then_some(out)
}

// ---------------------------------------------------------------------------------------------
// macOS: nsMacPreferencesReader.mm and macOSPoliciesParser.sys.mjs

/// One file of Thunderbird's preference domain, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct PlistLayer {
    pub layer: Layer,
    /// The file, for findings.
    pub path: String,
    pub dict: plist::Dictionary,
}

/// `boolForKey:` (`CFPreferencesGetAppBooleanValue`): booleans, non-zero numbers, and the
/// strings "YES"/"true" (any case) or a non-zero leading integer.
fn plist_bool(v: &Plist) -> bool {
    match v {
        Plist::Boolean(b) => *b,
        Plist::Integer(i) => i.as_signed().is_none_or(|i| i != 0),
        Plist::Real(r) => *r != 0.0,
        Plist::String(s) => {
            let t = s.trim();
            if t.eq_ignore_ascii_case("yes") || t.eq_ignore_ascii_case("true") {
                return true;
            }
            let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
            let n: String = digits.chars().take_while(char::is_ascii_digit).collect();
            n.bytes().any(|b| b != b'0')
        }
        _ => false,
    }
}

/// `EvaluateDict` / `EvaluateArray`: strings stay strings, every `NSNumber` (integers, reals,
/// booleans) becomes its `longLongValue`, arrays and dictionaries recurse, anything else
/// (data, dates) is left out. `None`: left out.
fn plist_to_json(v: &Plist) -> Option<Json> {
    Some(match v {
        Plist::String(s) => Json::String(s.clone()),
        Plist::Boolean(b) => Json::from(i64::from(*b)),
        Plist::Integer(i) => Json::from(
            i.as_signed()
                .unwrap_or_else(|| i.as_unsigned().map_or(0, |u| u as i64)),
        ),
        // Truncated toward zero (saturating, as on Apple silicon).
        Plist::Real(r) => Json::from(*r as i64),
        Plist::Array(items) => Json::Array(items.iter().filter_map(plist_to_json).collect()),
        Plist::Dictionary(d) => Json::Object(
            d.iter()
                .filter_map(|(k, v)| plist_to_json(v).map(|j| (k.clone(), j)))
                .collect(),
        ),
        _ => return None,
    })
}

/// `isValidSubkey`: not a number, or a number up to 50.
fn valid_subkey(s: &str) -> bool {
    let n = js_number(s);
    n.is_nan() || n <= 50.0
}

/// Where `unflatten` is writing.
enum Cursor<'a> {
    Node(&'a mut Json),
    /// A property of an array that is not an index: kept by JavaScript, invisible in the JSON.
    Sink,
    /// A primitive (string, number): reading its properties works, writing one throws.
    Prim(Json),
}

fn new_container(array: bool) -> Json {
    if array {
        Json::Array(Vec::new())
    } else {
        Json::Object(Map::new())
    }
}

/// `obj = obj[subkey]`, creating `obj[subkey]` first when it is falsy.
fn step<'a>(node: &'a mut Json, sub: &str, array_next: bool) -> Result<Cursor<'a>, String> {
    let throws = || {
        Err(format!(
            "cannot create property \"{sub}\" on a primitive value"
        ))
    };
    match node {
        Json::Object(m) => {
            if !m.get(sub).is_some_and(js_truthy) {
                m.insert(sub.to_owned(), new_container(array_next));
            }
            let slot = m.get_mut(sub).expect("just made");
            Ok(match slot {
                Json::Object(_) | Json::Array(_) => Cursor::Node(slot),
                other => Cursor::Prim(other.clone()),
            })
        }
        Json::Array(a) => match array_index(sub) {
            Some(i) => {
                if !a.get(i).is_some_and(js_truthy) {
                    if a.len() <= i {
                        a.resize(i + 1, Json::Null);
                    }
                    a[i] = new_container(array_next);
                }
                let slot = &mut a[i];
                Ok(match slot {
                    Json::Object(_) | Json::Array(_) => Cursor::Node(slot),
                    other => Cursor::Prim(other.clone()),
                })
            }
            None if sub == "length" => {
                if a.is_empty() {
                    // `arr.length = {}` throws a RangeError.
                    throws()
                } else {
                    Ok(Cursor::Prim(Json::from(a.len())))
                }
            }
            None => Ok(Cursor::Sink),
        },
        _ => throws(),
    }
}

/// `macOSPoliciesParser.unflatten(input, "__")`: `Foo__Bar__0 = v` becomes
/// `{"Foo": {"Bar": [v]}}`; indices above 50 are refused; a part that is an integer makes the
/// level above it an array. `Err`: it throws (writing into a string or number), and with it the
/// policy engine. `origin_of` receives each written top-level name with the flat key.
fn unflatten(
    input: &[(String, Json)],
    notes: &mut Vec<String>,
    mut written: impl FnMut(&str, &str),
) -> Result<Map<String, Json>, String> {
    let mut ret = Json::Object(Map::new());
    for (key, value) in input {
        if !key.contains("__") {
            ret.as_object_mut()
                .expect("an object")
                .insert(key.clone(), value.clone());
            written(key, key);
            continue;
        }
        let parts: Vec<&str> = key.split("__").collect();
        let mut cursor = Cursor::Node(&mut ret);
        let mut top: Option<&str> = None;
        for i in 0..parts.len() - 1 {
            let sub = parts[i];
            if !valid_subkey(sub) {
                notes.push(format!(
                    "{key}: \"{sub}\" is an index above 50; Thunderbird skips that level"
                ));
                continue;
            }
            top.get_or_insert(sub);
            let array_next = js_is_integer(js_number(parts[i + 1]));
            cursor = match cursor {
                Cursor::Sink => Cursor::Sink,
                Cursor::Prim(Json::String(s)) => {
                    let units: Vec<u16> = s.encode_utf16().collect();
                    match array_index(sub).and_then(|i| units.get(i)) {
                        Some(&u) => Cursor::Prim(Json::String(String::from_utf16_lossy(&[u]))),
                        None => {
                            return Err(format!(
                                "{key}: cannot create property \"{sub}\" on a string"
                            ))
                        }
                    }
                }
                Cursor::Prim(_) => {
                    return Err(format!(
                        "{key}: cannot create property \"{sub}\" on a number"
                    ))
                }
                Cursor::Node(node) => {
                    step(node, sub, array_next).map_err(|e| format!("{key}: {e}"))?
                }
            };
        }
        let last = parts[parts.len() - 1];
        if !valid_subkey(last) {
            notes.push(format!(
                "{key}: \"{last}\" is an index above 50; Thunderbird skips the key"
            ));
            continue;
        }
        match cursor {
            Cursor::Sink => {}
            Cursor::Prim(_) => {
                return Err(format!(
                    "{key}: cannot assign property \"{last}\" on a primitive value"
                ))
            }
            Cursor::Node(Json::Object(m)) => {
                m.insert(last.to_owned(), value.clone());
            }
            Cursor::Node(Json::Array(a)) => {
                if let Some(i) = array_index(last) {
                    if a.len() <= i {
                        a.resize(i + 1, Json::Null);
                    }
                    a[i] = value.clone();
                }
            }
            Cursor::Node(_) => unreachable!("nodes are containers"),
        }
        written(top.unwrap_or(last), key);
    }
    match ret {
        Json::Object(m) => Ok(m),
        _ => unreachable!("an object"),
    }
}

/// Thunderbird's policies from its preference domain (`macOSPoliciesProvider`): `layers` are
/// the domain's files, highest precedence first (per-user managed preferences, computer managed
/// preferences, the user's domain, the computer's domain), merged key by key as
/// `NSUserDefaults` does; nothing when the merged `EnterprisePoliciesEnabled` is not true.
///
/// The mapping: booleans (and reals) become integers, as `nsMacPreferencesReader` writes every
/// `NSNumber` with `longLongValue` (`<true/>` is 1; a boolean policy accepts it, a `Preferences`
/// entry keeps it as a number, see [`prefs_number`]); data and dates are left out; keys with
/// `__` are unflattened (`Preferences__mail.x__Value`). `EnterprisePoliciesEnabled` itself is
/// removed (`removeUnknownPolicies`; other unknown names are kept, they decide nothing).
///
/// `None` when the provider has no policies.
pub fn from_plists(layers: &[PlistLayer]) -> Option<PlatformPolicies> {
    // The merged domain: each top-level key from the first layer that has it.
    let mut merged: Vec<(String, &Plist, &PlistLayer)> = Vec::new();
    for layer in layers {
        for (k, v) in layer.dict.iter() {
            if !merged.iter().any(|(m, _, _)| m == k) {
                merged.push((k.clone(), v, layer));
            }
        }
    }
    let enabled = merged
        .iter()
        .find(|(k, _, _)| k == MAC_ENABLED_KEY)
        .is_some_and(|(_, v, _)| plist_bool(v));
    if !enabled {
        return None;
    }
    let mut out = PlatformPolicies::new(Platform::MacOs);
    // NSDictionary order is unspecified; plain keys first, then flattened ones by name, so a
    // flattened key adds to a dictionary of the same policy rather than being replaced by it.
    merged.sort_by(|a, b| (a.0.contains("__"), &a.0).cmp(&(b.0.contains("__"), &b.0)));
    let input: Vec<(String, Json)> = merged
        .iter()
        .filter_map(|(k, v, _)| plist_to_json(v).map(|j| (k.clone(), j)))
        .collect();
    let layer_of = |flat: &str| -> &PlistLayer {
        merged
            .iter()
            .find(|(k, _, _)| k == flat)
            .map(|(_, _, l)| *l)
            .expect("a merged key")
    };
    let mut tops: Vec<(String, String)> = Vec::new();
    let mut notes = Vec::new();
    let result = unflatten(&input, &mut notes, |top, flat| {
        tops.push((top.to_owned(), flat.to_owned()))
    });
    out.notes = notes;
    let mut policies = match result {
        Ok(p) => p,
        Err(why) => {
            out.engine_failure = Some(format!(
                "macOSPoliciesParser.unflatten throws on {why}; Thunderbird applies no policy"
            ));
            out.has_policies = true;
            return Some(out);
        }
    };
    policies.shift_remove(MAC_ENABLED_KEY);
    for (top, flat) in &tops {
        if top == MAC_ENABLED_KEY || out.origins.contains_key(top) {
            continue;
        }
        let l = layer_of(flat);
        out.origins.insert(
            top.clone(),
            Origin {
                layer: l.layer,
                location: format!("{}, key \"{flat}\"", l.path),
                key: flat.clone(),
                evidence: policies.get(top).map(Json::to_string).unwrap_or_default(),
            },
        );
    }
    if let Some(Json::Object(prefs)) = policies.get("Preferences") {
        for (pref, entry) in prefs {
            // The most specific key that wrote it: `Preferences__<pref>...`, else `Preferences`.
            let flat = tops
                .iter()
                .filter(|(t, f)| {
                    t == "Preferences"
                        && (*f == format!("Preferences__{pref}")
                            || f.starts_with(&format!("Preferences__{pref}__")))
                })
                .map(|(_, f)| f.clone())
                .next();
            let (flat, location) = match flat {
                Some(f) => {
                    let l = layer_of(&f);
                    (f.clone(), (l, format!("{}, key \"{f}\"", l.path)))
                }
                None => {
                    let l = layer_of("Preferences");
                    (
                        "Preferences".to_owned(),
                        (
                            l,
                            format!("{}, key \"Preferences\", entry \"{pref}\"", l.path),
                        ),
                    )
                }
            };
            out.pref_origins.insert(
                pref.clone(),
                Origin {
                    layer: location.0.layer,
                    location: location.1,
                    key: flat,
                    evidence: entry.to_string(),
                },
            );
        }
    }
    // `hasPolicies`: `this._policies !== null && Object.keys(this._policies).length`.
    out.has_policies = !policies.is_empty();
    out.policies = policies;
    out.has_policies.then_some(out)
}

// ---------------------------------------------------------------------------------------------
// CombinedProvider and validation

/// Where the platform policies in force came from; a name not here comes from `policies.json`
/// (or from nowhere).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyOrigins {
    /// Top-level policies (`PasswordManagerEnabled`, `OfferToSaveLogins`, `Handlers`,
    /// `Preferences`, ...).
    pub policies: BTreeMap<String, Origin>,
    /// Entries of the `Preferences` policy, by pref name.
    pub prefs: BTreeMap<String, Origin>,
}

impl PolicyOrigins {
    /// The platform layer of the `Preferences` entry for `name`; `None`: `policies.json`'s.
    pub fn pref(&self, name: &str) -> Option<&Origin> {
        self.prefs.get(name)
    }

    /// The platform layer of a top-level policy; `None`: `policies.json`'s.
    pub fn policy(&self, name: &str) -> Option<&Origin> {
        self.policies.get(name)
    }
}

/// What Thunderbird's policy engine activates.
#[derive(Debug, Clone, PartialEq)]
pub struct Combined {
    /// The policies in force, as a `policies.json` document for the existing resolution
    /// (`effective::Layers::policy`); `None`: no policy applies.
    pub doc: Option<PoliciesDoc>,
    pub origins: PolicyOrigins,
    /// Every top-level policy the platform provides, valid or not: `policies.json`'s policy of
    /// the same name is not used ([`Combined::hides`]).
    pub platform: BTreeMap<String, Origin>,
    /// The engine throws and applies no policy at all (`policies.json` included).
    pub engine_failure: Option<String>,
    /// Policies dropped by validation and what the parsers skipped, in words.
    pub notes: Vec<String>,
}

impl Combined {
    /// The platform policy that hides `policies.json`'s top-level policy `name` (whatever
    /// `policies.json` says, and whatever the agent would write there): with a platform
    /// `Preferences`, none of `policies.json`'s `Preferences` entries applies.
    pub fn hides(&self, name: &str) -> Option<&Origin> {
        self.platform.get(name)
    }
}

fn policies_of(doc: &PoliciesDoc) -> Map<String, Json> {
    match serde_json::from_str::<Json>(&doc.render()) {
        Ok(Json::Object(mut root)) => match root.shift_remove("policies") {
            Some(Json::Object(p)) => p,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}

/// JavaScript has one number type: `30.0` and `1e1` are the integers 30 and 10 to Thunderbird
/// (`Number.isInteger`), so they are written as integers here, where a pref value must be one.
fn integral_numbers(v: &mut Json) {
    match v {
        Json::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                *v = js_number_json(f);
            }
        }
        Json::Array(a) => a.iter_mut().for_each(integral_numbers),
        Json::Object(m) => m.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// `_validateSimpleParam(param, "boolean")`: true, false, 0 or 1.
fn as_schema_bool(v: &Json) -> Option<bool> {
    match v {
        Json::Bool(b) => Some(*b),
        Json::Number(n) if n.as_f64() == Some(0.0) => Some(false),
        Json::Number(n) if n.as_f64() == Some(1.0) => Some(true),
        _ => None,
    }
}

/// Thunderbird's schema for `Preferences`: an object whose entries are a number, boolean,
/// string or object (`Value`: number, boolean or string; `Status`: default, locked, user,
/// clear). One invalid entry invalidates the whole policy (`_activatePolicies` skips it).
pub fn validate_preferences(v: &Json) -> Result<(), String> {
    let Json::Object(prefs) = v else {
        return Err("is not an object".to_owned());
    };
    for (name, entry) in prefs {
        match entry {
            Json::Number(_) | Json::Bool(_) | Json::String(_) | Json::Array(_) => {}
            Json::Null => return Err(format!("entry \"{name}\" is null")),
            Json::Object(e) => {
                if let Some(v) = e.get("Value") {
                    if !matches!(v, Json::Number(_) | Json::Bool(_) | Json::String(_)) {
                        return Err(format!(
                            "entry \"{name}\": Value {v} is not a number, boolean or string"
                        ));
                    }
                }
                if let Some(s) = e.get("Status") {
                    if !matches!(s.as_str(), Some("default" | "locked" | "user" | "clear")) {
                        return Err(format!(
                            "entry \"{name}\": Status {s} is not default, locked, user or clear"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Thunderbird's schema for `Handlers` (the parts the agent reads): `ask` a boolean (0 or 1
/// accepted and made one), `action` one of three. Returns the validated value.
fn validate_handlers(v: &Json) -> Result<Json, String> {
    let Json::Object(h) = v else {
        return Err("is not an object".to_owned());
    };
    let mut out = h.clone();
    for kind in ["mimeTypes", "extensions", "schemes"] {
        let Some(group) = out.get_mut(kind) else {
            continue;
        };
        let Json::Object(group) = group else {
            return Err(format!("{kind} is not an object"));
        };
        for (name, entry) in group.iter_mut() {
            let Json::Object(entry) = entry else {
                return Err(format!("{kind}.{name} is not an object"));
            };
            if let Some(a) = entry.get("action") {
                if !matches!(
                    a.as_str(),
                    Some("saveToDisk" | "useHelperApp" | "useSystemDefault")
                ) {
                    return Err(format!("{kind}.{name}.action {a} is not allowed"));
                }
            }
            if let Some(ask) = entry.get("ask") {
                let b = as_schema_bool(ask)
                    .ok_or_else(|| format!("{kind}.{name}.ask {ask} is not a boolean"))?;
                entry.insert("ask".into(), Json::Bool(b));
            }
        }
    }
    Ok(Json::Object(out))
}

/// The boolean policies the agent reads, validated as the schema does.
const BOOLEAN_POLICIES: &[&str] = &[
    "PasswordManagerEnabled",
    "OfferToSaveLogins",
    "OfferToSaveLoginsDefault",
];

/// Combines the platform's policies with `policies.json` as `_chooseProvider` and
/// `CombinedProvider` do, then validates the policies the agent reads as `_activatePolicies`
/// does:
/// - the platform has policies: every top-level platform policy, plus each `policies.json`
///   policy whose name the platform lacks (a platform `Preferences` hides `policies.json`'s whole
///   `Preferences`, even when it is then invalid);
/// - otherwise `policies.json` alone (`None`: no file);
/// - `PasswordManagerEnabled`, `OfferToSaveLogins`, `OfferToSaveLoginsDefault`: 0 and 1 become
///   false and true, anything else but a boolean drops the policy; `Preferences` and `Handlers`
///   that do not match the schema are dropped whole.
///
/// Numbers in `Preferences` stay numbers (an integral `30.0` becomes `30`, as JavaScript has one
/// number type): how Thunderbird stores one depends on the pref's type ([`prefs_number`]).
pub fn combine(platform: Option<&PlatformPolicies>, json: Option<&PoliciesDoc>) -> Combined {
    let mut notes: Vec<String> = platform.map(|p| p.notes.clone()).unwrap_or_default();
    let platform_names = platform
        .filter(|p| p.has_policies)
        .map(|p| p.origins.clone())
        .unwrap_or_default();
    let nothing = |engine_failure: Option<String>, notes: Vec<String>| Combined {
        doc: None,
        origins: PolicyOrigins::default(),
        platform: BTreeMap::new(),
        engine_failure,
        notes,
    };
    if let Some(why) = platform.and_then(|p| p.engine_failure.clone()) {
        return nothing(Some(why), notes);
    }
    let json_policies = json.map(policies_of);
    // `jsonProvider.hasPolicies` is `!isEmptyObject(policies)`, which may throw: in
    // `_chooseProvider` when the platform has policies, in `_initialize` when it has none.
    let json_has = match &json_policies {
        None => false,
        Some(p) => match is_empty_object(&Json::Object(p.clone())) {
            Ok(empty) => !empty,
            Err(why) => return nothing(Some(format!("policies.json: {why}")), notes),
        },
    };
    let (mut merged, mut origins) = match platform.filter(|p| p.has_policies) {
        Some(p) => {
            // `CombinedProvider`: "Combine policies with primaryProvider taking precedence. We
            // only do this for top level policies."
            let mut merged = p.policies.clone();
            if json_has {
                for (name, v) in json_policies.iter().flatten() {
                    if !merged.contains_key(name) {
                        merged.insert(name.clone(), v.clone());
                    }
                }
            }
            let prefs = if p.policies.contains_key("Preferences") {
                p.pref_origins.clone()
            } else {
                BTreeMap::new()
            };
            let origins = PolicyOrigins {
                policies: p.origins.clone(),
                prefs,
            };
            (merged, origins)
        }
        None => match json_policies {
            Some(p) => (p, PolicyOrigins::default()),
            None => return nothing(None, notes),
        },
    };
    let mut ignore = |name: &str, why: String, merged: &mut Map<String, Json>| {
        merged.shift_remove(name);
        let whose = origins
            .policies
            .get(name)
            .map_or_else(|| "policies.json".to_owned(), |o| o.location.clone());
        notes.push(format!(
            "Thunderbird ignores the \"{name}\" policy ({whose}): it {why}"
        ));
    };
    for name in BOOLEAN_POLICIES {
        if let Some(v) = merged.get(*name) {
            match as_schema_bool(v) {
                Some(b) => {
                    merged.insert((*name).to_owned(), Json::Bool(b));
                }
                None => {
                    let why = format!("is {v}, not a boolean");
                    ignore(name, why, &mut merged);
                }
            }
        }
    }
    if let Some(Err(why)) = merged.get("Preferences").map(validate_preferences) {
        ignore("Preferences", why, &mut merged);
    }
    match merged.get("Handlers").map(validate_handlers) {
        Some(Ok(h)) => {
            merged.insert("Handlers".into(), h);
        }
        Some(Err(why)) => ignore("Handlers", why, &mut merged),
        None => {}
    }
    if !merged.contains_key("Preferences") {
        origins.prefs.clear();
    }
    for v in merged.values_mut() {
        integral_numbers(v);
    }
    origins.policies.retain(|name, _| merged.contains_key(name));
    let mut root = Map::new();
    root.insert("policies".into(), Json::Object(merged));
    let doc = PoliciesDoc::parse("<combined policies>", &Json::Object(root).to_string())
        .expect("validated: an object whose Preferences is an object");
    Combined {
        doc: Some(doc),
        origins,
        platform: platform_names,
        engine_failure: None,
        notes,
    }
}

/// How Thunderbird stores a number it gets from a policy (`Preferences` entries, legacy or
/// `Value`, and `setAndLockPref`): as an integer when the pref already is one
/// (`getPrefType == PREF_INT`) or the number is not 0 or 1, otherwise as a boolean ("On Windows
/// GPO and macOS configs, booleans are converted to 0/1", bug 1666836). A pref that does not
/// exist yet is not an integer: 0 and 1 make it a boolean. `existing` is the pref's value before
/// the policy (default or user, whichever exists; both have the pref's one type).
pub fn prefs_number(n: i64, existing: Option<&PrefValue>) -> PrefValue {
    if matches!(existing, Some(PrefValue::Int(_))) || !(n == 0 || n == 1) {
        PrefValue::Int(n)
    } else {
        PrefValue::Bool(n == 1)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}: {}",
            self.layer.describe(),
            self.location,
            self.evidence
        )
    }
}

#[cfg(test)]
mod tests;
