//! The profiles shipped inside the binaries, so an agent enforces a sensible baseline even with
//! no server and no file at hand.

use crate::model::Profile;
use crate::parse::ProfileError;

/// `(id, TOML text)` of every built-in profile.
pub const BUILTIN: &[(&str, &str)] = &[("bsi-m5.57", include_str!("../bsi-m5.57.toml"))];

/// The names accepted by [`load`]: `builtin:<id>`.
pub fn names() -> impl Iterator<Item = String> {
    BUILTIN.iter().map(|(id, _)| format!("builtin:{id}"))
}

/// Parses a built-in profile by id (`bsi-m5.57`). `None` if there is no such profile.
pub fn load(id: &str) -> Option<Result<Profile, ProfileError>> {
    BUILTIN
        .iter()
        .find(|(name, _)| *name == id)
        .map(|(name, text)| Profile::parse(&format!("builtin:{name}"), text))
}
