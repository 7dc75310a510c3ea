//! What Postwarden's tests share, so each helper exists once: the baseline profile and the
//! variables the fixtures are made for, fixture homes, whole-tree snapshots, and readers of
//! the `postwarden.report/v1` JSON.
//!
//! A dev-dependency only. It depends on the shared language (`postwarden-profiles`) and the
//! registry model, never on the crates it helps test, so their tests do not see two copies of
//! their own types.

use std::path::{Path, PathBuf};

use postwarden_profiles::{builtin, Profile, Vars};

pub mod bin;
pub mod fixture;
pub mod pg;
pub mod plist_oracle;
pub mod report;
pub mod tree;

/// The built-in BSI M 5.57 baseline.
pub fn baseline() -> Profile {
    builtin::load("bsi-m5.57")
        .expect("the baseline is built in")
        .expect("the built-in baseline parses")
}

/// The variables the fixtures are made for: `user.email=alice@example.org`.
pub fn vars() -> Vars {
    [("user.email".to_owned(), "alice@example.org".to_owned())].into()
}

/// The repository's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support is two levels below the root")
        .to_path_buf()
}

/// The baseline's TOML text, for tests that edit it into a variant.
pub fn baseline_text() -> &'static str {
    builtin::BUILTIN
        .iter()
        .find(|(id, _)| *id == "bsi-m5.57")
        .map(|(_, text)| *text)
        .expect("the baseline is built in")
}

/// The baseline without `[controls.settings-locked]`: the values in prefs.js are what
/// Thunderbird uses, since policies.json locks nothing (the service tests drift them).
pub fn baseline_without_settings_lock() -> String {
    let profile = baseline_text();
    let header = "[controls.settings-locked]";
    let start = profile
        .find(header)
        .unwrap_or_else(|| panic!("the baseline has no {header}"));
    let end = profile[start + 1..]
        .find("\n[")
        .map(|i| start + 1 + i + 1)
        .unwrap_or(profile.len());
    let variant = format!("{}{}", &profile[..start], &profile[end..]);
    assert!(!variant.contains(header) && variant.contains("[controls.mail-check-interval]"));
    variant
}
