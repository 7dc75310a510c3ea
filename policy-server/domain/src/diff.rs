//! What changed between two versions of a profile, per control: added, removed, a changed value,
//! a changed mode. Both versions are validated by the agent's own parser first; values are shown
//! as the TOML wrote them (as JSON), modes as the profile resolves them (a control without its
//! own `mode` takes the profile's).
//!
//! `raw.thunderbird` (the `[raw.thunderbird]` prefs) and `account` (the `[account]` section)
//! are compared as pseudo-controls; `account` has no mode.
//!
//! Bounds: the texts are stored profiles, which were validated and size-limited on upload; the
//! work is linear in their size.

use std::collections::{BTreeMap, BTreeSet};

use postwarden_profiles::{Mode, Profile, ProfileError};
use serde::Serialize;

/// How a control differs between the two versions (JSON: `"added"`, `"removed"`,
/// `"changed"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only in the newer version.
    Added,
    /// Only in the older version.
    Removed,
    /// In both, with another value or mode.
    Changed,
}

/// One control's difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlDiff {
    /// The control id, or `raw.thunderbird` / `account`.
    pub control: String,
    pub change: Change,
    /// The value in the older version, as its TOML wrote it (absent when added).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<serde_json::Value>,
    /// The value in the newer version (absent when removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_to: Option<serde_json::Value>,
    /// The effective mode (`enforce` / `audit`) in the older version; absent when added, and
    /// for `account`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode_from: Option<String>,
    /// The effective mode in the newer version; absent when removed, and for `account`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode_to: Option<String>,
    /// The value differs (always true for added and removed).
    pub value_changed: bool,
    /// The mode differs (true for an added or removed control that has a mode).
    pub mode_changed: bool,
}

/// The differences between two versions of one profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileDiff {
    /// The profile id.
    pub id: String,
    /// The older version compared (`from_toml`'s).
    pub from: u32,
    /// The newer version compared (`to_toml`'s).
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

/// Compares version `from_toml` with version `to_toml` of one profile, both validated by the
/// agent's parser ([`Profile::parse`]). An invalid text is an error whose `file` is `from` or
/// `to`; so is a `to_toml` of another profile id (field `id`).
pub fn diff(from_toml: &str, to_toml: &str) -> Result<ProfileDiff, ProfileError> {
    let (a, from) = side("from", from_toml)?;
    let (b, to) = side("to", to_toml)?;
    if a.id != b.id {
        return Err(ProfileError {
            file: "to".to_owned(),
            line: 0,
            column: 0,
            field: Some("id".to_owned()),
            message: format!(
                "the profile id is {:?}, not {:?}: a diff compares two versions of one profile",
                b.id.0, a.id.0
            ),
        });
    }
    let mut controls = Vec::new();
    let ids: BTreeSet<&String> = from.keys().chain(to.keys()).collect();
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
mod tests;
