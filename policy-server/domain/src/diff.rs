//! What changed between two versions of a profile, per control: added, removed, a changed value,
//! a changed mode. Both versions are validated by the agent's own parser first; values are shown
//! as the TOML wrote them (as JSON), modes as the profile resolves them (a control without its
//! own `mode` takes the profile's).
//!
//! `raw.thunderbird` (the `[raw.thunderbird]` prefs) and `account` (the `[account]` section)
//! are compared as pseudo-controls.

use std::collections::BTreeMap;

use postwarden_profiles::{Mode, Profile, ProfileError};
use serde::Serialize;

/// How a control differs between the two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// One control's difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlDiff {
    pub control: String,
    pub change: Change,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_to: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode_to: Option<String>,
    pub value_changed: bool,
    pub mode_changed: bool,
}

/// The differences between two versions of one profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileDiff {
    pub id: String,
    pub from: u32,
    pub to: u32,
    /// Sorted by control id; unchanged controls are left out.
    pub controls: Vec<ControlDiff>,
}

/// (value as JSON, effective mode) per control id.
type Side = BTreeMap<String, (serde_json::Value, Option<Mode>)>;

fn side(origin: &str, text: &str) -> Result<(Profile, Side), ProfileError> {
    let profile = Profile::parse(origin, text)?;
    // The parser accepted it, so it is a TOML table; only the raw values are read here.
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ProfileError {
        file: origin.to_owned(),
        line: 0,
        column: 0,
        field: None,
        message: e.message().to_owned(),
    })?;
    let json = |v: &toml::Value| serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    let mut out = Side::new();
    let controls = table.get("controls").and_then(toml::Value::as_table);
    for control in &profile.controls {
        let value = controls
            .and_then(|c| c.get(control.id.as_str()))
            .and_then(|c| c.get("value"))
            .map(json)
            .unwrap_or(serde_json::Value::Null);
        out.insert(control.id.as_str().to_owned(), (value, Some(control.mode)));
    }
    if let Some(raw) = &profile.raw_thunderbird {
        let value = table
            .get("raw")
            .and_then(|r| r.get("thunderbird"))
            .and_then(|t| t.get("prefs"))
            .map(json)
            .unwrap_or(serde_json::Value::Null);
        out.insert("raw.thunderbird".to_owned(), (value, Some(raw.mode)));
    }
    if let Some(account) = table.get("account") {
        out.insert("account".to_owned(), (json(account), None));
    }
    Ok((profile, out))
}

fn mode_name(m: Option<Mode>) -> Option<String> {
    m.map(|m| m.to_string())
}

/// Compares version `from_toml` with version `to_toml`.
pub fn diff(from_toml: &str, to_toml: &str) -> Result<ProfileDiff, ProfileError> {
    let (a, from) = side("from", from_toml)?;
    let (b, to) = side("to", to_toml)?;
    let mut controls = Vec::new();
    let ids: std::collections::BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    for id in ids {
        let entry = match (from.get(id), to.get(id)) {
            (Some((v, m)), None) => ControlDiff {
                control: id.clone(),
                change: Change::Removed,
                value_from: Some(v.clone()),
                value_to: None,
                mode_from: mode_name(*m),
                mode_to: None,
                value_changed: true,
                mode_changed: m.is_some(),
            },
            (None, Some((v, m))) => ControlDiff {
                control: id.clone(),
                change: Change::Added,
                value_from: None,
                value_to: Some(v.clone()),
                mode_from: None,
                mode_to: mode_name(*m),
                value_changed: true,
                mode_changed: m.is_some(),
            },
            (Some((va, ma)), Some((vb, mb))) if va != vb || ma != mb => ControlDiff {
                control: id.clone(),
                change: Change::Changed,
                value_from: Some(va.clone()),
                value_to: Some(vb.clone()),
                mode_from: mode_name(*ma),
                mode_to: mode_name(*mb),
                value_changed: va != vb,
                mode_changed: ma != mb,
            },
            _ => continue,
        };
        controls.push(entry);
    }
    Ok(ProfileDiff {
        id: b.id.0.clone(),
        from: a.version.0,
        to: b.version.0,
        controls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> &'static str {
        postwarden_profiles::builtin::BUILTIN[0].1
    }

    #[test]
    fn identical_versions_differ_in_nothing() {
        let d = diff(base(), base()).unwrap();
        assert!(d.controls.is_empty(), "{d:?}");
        assert_eq!((d.from, d.to), (1, 1));
    }

    #[test]
    fn value_mode_added_and_removed_are_told_apart() {
        let v2 = base()
            .replacen("version = 1\n", "version = 2\n", 1)
            .replacen("value = { minutes = 30 }", "value = { minutes = 15 }", 1);
        let d = diff(base(), &v2).unwrap();
        assert_eq!(d.controls.len(), 1);
        let c = &d.controls[0];
        assert_eq!(c.control, "mail-check-interval");
        assert_eq!(c.change, Change::Changed);
        assert!(c.value_changed && !c.mode_changed);
        assert_eq!(c.value_to.as_ref().unwrap()["minutes"], 15);

        // The profile-wide mode flips every control's effective mode.
        let audit = base().replacen("mode = \"enforce\"", "mode = \"audit\"", 1);
        let d = diff(base(), &audit).unwrap();
        assert!(d
            .controls
            .iter()
            .all(|c| c.mode_changed && !c.value_changed));
        assert_eq!(d.controls[0].mode_to.as_deref(), Some("audit"));

        // Dropping a whole control section removes it.
        let start = base().find("[controls.mailbox-size-limit]").unwrap();
        let end = base().find("[controls.settings-locked]").unwrap();
        let fewer = format!("{}{}", &base()[..start], &base()[end..]);
        let d = diff(base(), &fewer).unwrap();
        assert_eq!(d.controls.len(), 1);
        assert_eq!(d.controls[0].change, Change::Removed);
        let d = diff(&fewer, base()).unwrap();
        assert_eq!(d.controls[0].change, Change::Added);
        assert_eq!(d.controls[0].control, "mailbox-size-limit");
    }

    #[test]
    fn an_invalid_version_is_an_error_naming_its_side() {
        let e = diff(base(), "id = 3").unwrap_err();
        assert_eq!(e.file, "to");
    }
}
