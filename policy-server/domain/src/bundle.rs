//! What a device's bundle is made of (its group's profile version, its users and their
//! variables), the fingerprint that decides when its serial advances, and the payload.
//!
//! The fingerprint is stored with the device's serial: when the content's fingerprint differs
//! from the stored one, the serial is bumped. Its encoding is therefore a contract too (a test
//! pins it): changing it bumps every device's serial once.
//!
//! Bounds: the caller bounds the users of a device and each user's variables when it accepts
//! them; the work here is linear in the content.

use std::collections::BTreeMap;

use postwarden_wire::v1::{BundlePayload, BundleProfile, BundleSchema, DeviceId};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::text::hex;

/// What the payload of a device's bundle is made of, apart from its serial and time.
#[derive(Debug, Clone, Copy)]
pub struct BundleContent<'a> {
    /// The device id.
    pub device: &'a str,
    /// The profile assigned to the device's group.
    pub profile_id: &'a str,
    pub profile_version: u32,
    /// The profile's TOML text, as uploaded.
    pub profile_toml: &'a str,
    /// The device's local users (any order, duplicates allowed).
    pub users: &'a [String],
    /// Variables of *all* users asked for; [`payload`] keeps only the device's users'.
    pub variables: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// A candidate version for the agent to evaluate in audit mode (a staged rollout's impact
    /// preview, see [`crate::rollout`]); only for agents that read it.
    pub preview: Option<PreviewContent<'a>>,
}

/// The candidate profile version a bundle carries as a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviewContent<'a> {
    pub profile_id: &'a str,
    pub profile_version: u32,
    /// The candidate's TOML text, as uploaded.
    pub profile_toml: &'a str,
}

impl BundleContent<'_> {
    /// The variables of the device's users (users without variables are left out): what the
    /// payload's `variables` holds.
    pub fn device_variables(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.users
            .iter()
            .filter_map(|u| {
                self.variables
                    .get(u)
                    .filter(|v| !v.is_empty())
                    .map(|v| (u.clone(), v.clone()))
            })
            .collect()
    }
}

/// Lower-hex SHA-256 over a canonical, unambiguous encoding of the content: the device, the
/// profile (id, version, text), the preview when there is one (id, version, text; without one
/// the encoding is the one from before previews existed, so no serial moves for them), the
/// device's users (sorted, deduplicated) and their variables only. Equal content ⇔ equal fingerprint: the order of `users`, duplicates in it, and other
/// users' variables change nothing; anything else in the payload, or the users, changes it.
pub fn fingerprint(c: &BundleContent<'_>) -> String {
    let mut users: Vec<&String> = c.users.iter().collect();
    users.sort();
    users.dedup();
    // JSON is unambiguous (strings quoted and escaped). The keys are in alphabetical order, so
    // the text is the same whether or not `serde_json` preserves insertion order; variables are
    // sorted `BTreeMap`s.
    let canonical = match &c.preview {
        None => serde_json::json!({
            "device": c.device,
            "profile": [c.profile_id, c.profile_version, c.profile_toml],
            "users": users,
            "variables": c.device_variables(),
        }),
        Some(p) => serde_json::json!({
            "device": c.device,
            "preview": [p.profile_id, p.profile_version, p.profile_toml],
            "profile": [c.profile_id, c.profile_version, c.profile_toml],
            "users": users,
            "variables": c.device_variables(),
        }),
    };
    hex(&Sha256::digest(canonical.to_string().as_bytes()))
}

/// The payload to sign for `serial`, issued at `issued_at`: schema `postwarden.bundle/v1`, the
/// profile, the variables of the device's users only, and the preview if there is one.
pub fn payload(c: &BundleContent<'_>, serial: u64, issued_at: OffsetDateTime) -> BundlePayload {
    BundlePayload {
        schema: BundleSchema,
        device: DeviceId(c.device.to_owned()),
        serial,
        issued_at,
        profile: BundleProfile {
            id: c.profile_id.to_owned(),
            version: c.profile_version,
            toml: c.profile_toml.to_owned(),
        },
        variables: c.device_variables(),
        preview: c.preview.map(|p| BundleProfile {
            id: p.profile_id.to_owned(),
            version: p.profile_version,
            toml: p.profile_toml.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
