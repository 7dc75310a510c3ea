//! `policies.json`, Thunderbird's enterprise policy file: reading what it enforces and editing
//! the entries Postwarden owns while keeping everything an administrator put there.
//!
//! Facts this relies on (measured on Thunderbird 140 and 153):
//! - `{"Value": v, "Status": "locked"}` in `Preferences` sets the default branch and locks it;
//!   the user value is ignored but kept in prefs.js.
//! - A plain value (`"name": v`, the legacy form) unlocks, sets and locks, and so also wins over
//!   a `pref(.., locked)` default-pref file; a `Status: locked` entry loses to one.
//! - `OfferToSaveLogins: false` and `PasswordManagerEnabled: false` lock
//!   `signon.rememberSignons` to false.
//! - One JSON syntax error disables every policy, so we never write text that does not parse.

use serde_json::{Map, Value as Json};

use super::prefs::PrefValue;

/// How a `Preferences` entry applies its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyStatus {
    /// `"Status": "locked"`.
    Locked,
    /// A plain value: unlock, set, lock.
    Legacy,
    /// `"Status": "default"` or no status: the default branch only; a user value wins.
    Default,
    /// `"Status": "user"`: written as a user value at every start.
    User,
    /// `"Status": "clear"`: the user value is cleared at every start.
    Clear,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPref {
    pub value: Option<PrefValue>,
    pub status: PolicyStatus,
}

/// A `policies.json` that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PoliciesError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A parsed `policies.json`, key order preserved.
#[derive(Debug, Clone, PartialEq)]
pub struct PoliciesDoc {
    root: Map<String, Json>,
}

/// A JSON scalar as a pref value (`None` for null, arrays, objects and non-integers).
pub fn json_to_pref(v: &Json) -> Option<PrefValue> {
    match v {
        Json::Bool(b) => Some(PrefValue::Bool(*b)),
        Json::Number(n) => n.as_i64().map(PrefValue::Int),
        Json::String(s) => Some(PrefValue::Str(s.clone())),
        _ => None,
    }
}

pub fn pref_to_json(v: &PrefValue) -> Json {
    match v {
        PrefValue::Bool(b) => Json::Bool(*b),
        PrefValue::Int(i) => Json::from(*i),
        PrefValue::Str(s) => Json::String(s.clone()),
    }
}

impl Default for PoliciesDoc {
    fn default() -> Self {
        let mut root = Map::new();
        root.insert("policies".into(), Json::Object(Map::new()));
        PoliciesDoc { root }
    }
}

impl PoliciesDoc {
    /// Parses `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<PoliciesDoc, PoliciesError> {
        let err = |line, column, message: String| PoliciesError {
            file: file.to_owned(),
            line,
            column,
            message,
        };
        let value: Json =
            serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| {
                err(
                    e.line(),
                    e.column(),
                    format!(
                        "not valid JSON ({e}); Thunderbird ignores every policy in such a file"
                    ),
                )
            })?;
        let Json::Object(root) = value else {
            return Err(err(1, 1, "the top level must be an object".into()));
        };
        match root.get("policies") {
            Some(Json::Object(_)) => {}
            Some(_) => return Err(err(1, 1, "field `policies` must be an object".into())),
            None => return Err(err(1, 1, "missing the top-level field `policies`".into())),
        }
        if let Some(p) = root["policies"].get("Preferences") {
            if !p.is_object() {
                return Err(err(
                    1,
                    1,
                    "field `policies.Preferences` must be an object".into(),
                ));
            }
        }
        Ok(PoliciesDoc { root })
    }

    fn policies(&self) -> &Map<String, Json> {
        self.root["policies"].as_object().expect("checked in parse")
    }

    fn policies_mut(&mut self) -> &mut Map<String, Json> {
        self.root
            .get_mut("policies")
            .and_then(Json::as_object_mut)
            .expect("checked in parse")
    }

    /// The `Preferences` entry for `name`.
    pub fn pref(&self, name: &str) -> Option<PolicyPref> {
        let entry = self.policies().get("Preferences")?.get(name)?;
        match entry {
            Json::Object(obj) => {
                let status = match obj.get("Status").and_then(Json::as_str) {
                    Some("locked") => PolicyStatus::Locked,
                    Some("user") => PolicyStatus::User,
                    Some("clear") => PolicyStatus::Clear,
                    Some("default") | None => PolicyStatus::Default,
                    // Thunderbird drops an entry with an invalid status.
                    Some(_) => return None,
                };
                Some(PolicyPref {
                    value: obj.get("Value").and_then(json_to_pref),
                    status,
                })
            }
            other => Some(PolicyPref {
                value: json_to_pref(other),
                status: PolicyStatus::Legacy,
            }),
        }
    }

    /// Names of all `Preferences` entries.
    pub fn pref_names(&self) -> Vec<String> {
        self.policies()
            .get("Preferences")
            .and_then(Json::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The named policy that locks `signon.rememberSignons` to false, if any.
    pub fn named_signon_lock(&self) -> Option<&'static str> {
        let p = self.policies();
        if p.get("PasswordManagerEnabled") == Some(&Json::Bool(false)) {
            Some("PasswordManagerEnabled")
        } else if p.get("OfferToSaveLogins") == Some(&Json::Bool(false)) {
            Some("OfferToSaveLogins")
        } else {
            None
        }
    }

    /// The `Handlers` policy for a file extension: `(action, ask)`.
    pub fn handler(&self, ext: &str) -> Option<(String, bool)> {
        let h = self
            .policies()
            .get("Handlers")?
            .get("extensions")?
            .get(ext)?;
        let action = h.get("action")?.as_str()?.to_owned();
        let ask = h.get("ask").and_then(Json::as_bool).unwrap_or(false);
        Some((action, ask))
    }

    fn object_at<'a>(map: &'a mut Map<String, Json>, key: &str) -> &'a mut Map<String, Json> {
        let slot = map
            .entry(key.to_owned())
            .or_insert_with(|| Json::Object(Map::new()));
        if !slot.is_object() {
            *slot = Json::Object(Map::new());
        }
        slot.as_object_mut().expect("just made an object")
    }

    /// Sets `name` to `{"Value": value, "Status": "locked"}`.
    pub fn set_locked_pref(&mut self, name: &str, value: &PrefValue) {
        let prefs = Self::object_at(self.policies_mut(), "Preferences");
        let mut entry = Map::new();
        entry.insert("Value".into(), pref_to_json(value));
        entry.insert("Status".into(), Json::String("locked".into()));
        prefs.insert(name.to_owned(), Json::Object(entry));
    }

    /// Sets `name` to a plain value: the legacy form, which unlocks, sets and locks, and so
    /// also overrides a `pref(.., locked)` of a default-pref file (a `Status: locked` entry
    /// silently loses to one).
    pub fn set_legacy_pref(&mut self, name: &str, value: &PrefValue) {
        let prefs = Self::object_at(self.policies_mut(), "Preferences");
        prefs.insert(name.to_owned(), pref_to_json(value));
    }

    /// Sets a top-level named policy, e.g. `"OfferToSaveLogins": false`.
    pub fn set_named(&mut self, policy: &str, value: Json) {
        self.policies_mut().insert(policy.to_owned(), value);
    }

    /// Removes the `Preferences` entry for `name`; drops an emptied `Preferences`.
    pub fn remove_pref(&mut self, name: &str) -> bool {
        let policies = self.policies_mut();
        let Some(Json::Object(prefs)) = policies.get_mut("Preferences") else {
            return false;
        };
        let removed = prefs.shift_remove(name).is_some();
        if prefs.is_empty() {
            policies.shift_remove("Preferences");
        }
        removed
    }

    /// Makes Thunderbird save attachments of `ext` to disk without asking.
    pub fn set_save_to_disk(&mut self, ext: &str) {
        let handlers = Self::object_at(self.policies_mut(), "Handlers");
        let extensions = Self::object_at(handlers, "extensions");
        let mut entry = Map::new();
        entry.insert("action".into(), Json::String("saveToDisk".into()));
        entry.insert("ask".into(), Json::Bool(false));
        extensions.insert(ext.to_owned(), Json::Object(entry));
    }

    /// The file text: pretty-printed, key order kept, trailing newline.
    pub fn render(&self) -> String {
        let mut s = serde_json::to_string_pretty(&Json::Object(self.root.clone()))
            .expect("JSON values serialise");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_entry_form() {
        let doc = PoliciesDoc::parse(
            "p.json",
            r#"{"policies": {"Preferences": {
                "a": {"Value": 30, "Status": "locked"},
                "b": 5,
                "c": {"Value": "x"},
                "d": {"Value": true, "Status": "user"},
                "e": {"Value": 1, "Status": "bogus"}
            }, "OfferToSaveLogins": false,
               "Handlers": {"extensions": {"exe": {"action": "saveToDisk", "ask": false}}}}}"#,
        )
        .unwrap();
        assert_eq!(
            doc.pref("a"),
            Some(PolicyPref {
                value: Some(PrefValue::Int(30)),
                status: PolicyStatus::Locked
            })
        );
        assert_eq!(doc.pref("b").unwrap().status, PolicyStatus::Legacy);
        assert_eq!(doc.pref("c").unwrap().status, PolicyStatus::Default);
        assert_eq!(doc.pref("d").unwrap().status, PolicyStatus::User);
        assert_eq!(doc.pref("e"), None);
        assert_eq!(doc.named_signon_lock(), Some("OfferToSaveLogins"));
        assert_eq!(doc.handler("exe"), Some(("saveToDisk".into(), false)));
        assert_eq!(doc.handler("bat"), None);
    }

    #[test]
    fn edits_keep_the_administrators_entries_and_order() {
        let text = "{\n  \"policies\": {\n    \"DisableAppUpdate\": true,\n    \"Preferences\": {\n      \"mail.admin\": {\"Value\": \"x\", \"Status\": \"locked\"}\n    }\n  }\n}\n";
        let mut doc = PoliciesDoc::parse("p.json", text).unwrap();
        doc.set_locked_pref("mail.server.server1.check_time", &PrefValue::Int(30));
        doc.set_save_to_disk("exe");
        let out = doc.render();
        let again = PoliciesDoc::parse("p.json", &out).unwrap();
        assert_eq!(
            again.pref("mail.admin").unwrap().value,
            Some(PrefValue::Str("x".into()))
        );
        assert_eq!(
            again.pref("mail.server.server1.check_time").unwrap().value,
            Some(PrefValue::Int(30))
        );
        assert!(out.find("DisableAppUpdate").unwrap() < out.find("Preferences").unwrap());
        assert!(doc.remove_pref("mail.server.server1.check_time"));
        assert!(doc.remove_pref("mail.admin"));
        assert!(!doc.render().contains("Preferences"));
    }

    /// Found by fuzzing (`agent/fuzz/regressions/policies_json/float-drift.json`): without
    /// serde_json's `float_roundtrip`, an administrator's number could change in its last
    /// digits each time the agent rewrote the file.
    #[test]
    fn numbers_survive_a_rewrite_exactly() {
        for text in [
            r#"{"policies":{"":[-9223372036885477588]}}"#,
            r#"{"policies":{"A":0.1,"B":1e300,"C":2.2250738585072014e-308}}"#,
        ] {
            let doc = PoliciesDoc::parse("p.json", text).unwrap();
            let again = PoliciesDoc::parse("p.json", &doc.render()).unwrap();
            assert_eq!(again, doc, "{text}");
            assert_eq!(again.render(), doc.render());
        }
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = PoliciesDoc::parse(
            "/etc/p.json",
            "{\n  \"policies\": {\n    \"A\": true,\n  }\n}",
        )
        .unwrap_err();
        assert_eq!((err.line, err.column), (4, 3));
        assert!(err
            .to_string()
            .starts_with("/etc/p.json:4:3: not valid JSON"));
        let err = PoliciesDoc::parse("p.json", "{\"Preferences\": {}}").unwrap_err();
        assert!(err
            .message
            .contains("missing the top-level field `policies`"));
    }
}
