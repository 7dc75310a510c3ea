//! What a device's bundle is made of (its group's profile version, its users and their
//! variables), the fingerprint that decides when its serial advances, and the payload.

use std::collections::BTreeMap;

use postwarden_wire::v1::{BundlePayload, BundleProfile, BundleSchema, DeviceId};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The content of a device's bundle, apart from its serial and time.
#[derive(Debug, Clone, Copy)]
pub struct BundleContent<'a> {
    pub device: &'a str,
    pub profile_id: &'a str,
    pub profile_version: u32,
    pub profile_toml: &'a str,
    /// The device's local users.
    pub users: &'a [String],
    /// Variables of any users; only the device's users' go into the bundle.
    pub variables: &'a BTreeMap<String, BTreeMap<String, String>>,
}

impl BundleContent<'_> {
    /// The variables of the device's users (users without variables are left out).
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

/// Lower-hex SHA-256 over a canonical, unambiguous encoding of the content: equal content,
/// equal fingerprint; any change in profile, users or the users' variables, another one.
pub fn fingerprint(c: &BundleContent<'_>) -> String {
    let mut users: Vec<&String> = c.users.iter().collect();
    users.sort();
    users.dedup();
    let canonical = serde_json::json!({
        "device": c.device,
        "profile": [c.profile_id, c.profile_version, c.profile_toml],
        "users": users,
        "variables": c.device_variables(),
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The payload to sign.
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars(pairs: &[(&str, &str, &str)]) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut m: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (u, k, v) in pairs {
            m.entry((*u).into())
                .or_default()
                .insert((*k).into(), (*v).into());
        }
        m
    }

    #[test]
    fn only_the_devices_users_variables_go_out() {
        let users = vec!["alice".to_owned(), "bob".to_owned()];
        let v = vars(&[
            ("alice", "user.email", "a@x"),
            ("carol", "user.email", "c@x"),
        ]);
        let c = BundleContent {
            device: "dev_x",
            profile_id: "p",
            profile_version: 1,
            profile_toml: "t",
            users: &users,
            variables: &v,
        };
        let p = payload(&c, 3, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(p.variables, vars(&[("alice", "user.email", "a@x")]));
        assert_eq!(p.serial, 3);
        // Another user's variables do not change this device's fingerprint.
        let v2 = vars(&[
            ("alice", "user.email", "a@x"),
            ("carol", "user.email", "other"),
        ]);
        assert_eq!(
            fingerprint(&c),
            fingerprint(&BundleContent {
                variables: &v2,
                ..c
            })
        );
    }

    proptest! {
        #[test]
        fn fingerprints_are_equal_exactly_when_content_is(
            a in ("[ab]", 1u32..3, "[xy]", proptest::collection::vec("[uv]", 0..3), "[01]"),
            b in ("[ab]", 1u32..3, "[xy]", proptest::collection::vec("[uv]", 0..3), "[01]"),
        ) {
            let make = |(id, ver, toml, users, email): &(String, u32, String, Vec<String>, String)| {
                (id.clone(), *ver, toml.clone(), users.clone(), vars(&[("u", "user.email", email)]))
            };
            let (ida, va, ta, ua, xa) = make(&a);
            let (idb, vb, tb, ub, xb) = make(&b);
            let ca = BundleContent { device: "d", profile_id: &ida, profile_version: va, profile_toml: &ta, users: &ua, variables: &xa };
            let cb = BundleContent { device: "d", profile_id: &idb, profile_version: vb, profile_toml: &tb, users: &ub, variables: &xb };
            let same_users = {
                let mut x = ua.clone(); x.sort(); x.dedup();
                let mut y = ub.clone(); y.sort(); y.dedup();
                x == y
            };
            let same = ida == idb && va == vb && ta == tb && same_users
                && ca.device_variables() == cb.device_variables();
            prop_assert_eq!(fingerprint(&ca) == fingerprint(&cb), same);
        }
    }
}
