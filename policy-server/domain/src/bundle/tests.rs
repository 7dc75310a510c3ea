use super::*;
use proptest::prelude::*;

type Vars = BTreeMap<String, BTreeMap<String, String>>;

fn vars(pairs: &[(&str, &str, &str)]) -> Vars {
    let mut m: Vars = BTreeMap::new();
    for (u, k, v) in pairs {
        m.entry((*u).into())
            .or_default()
            .insert((*k).into(), (*v).into());
    }
    m
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn only_the_devices_users_variables_go_out() {
    let users = strings(&["alice", "bob"]);
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
        preview: None,
    };
    let p = payload(&c, 3, OffsetDateTime::UNIX_EPOCH);
    assert_eq!(p.variables, vars(&[("alice", "user.email", "a@x")]));
    assert_eq!((p.serial, p.device.as_str()), (3, "dev_x"));
    assert_eq!(
        (
            p.profile.id.as_str(),
            p.profile.version,
            p.profile.toml.as_str()
        ),
        ("p", 1, "t")
    );
    // Another user's variables do not change this device's fingerprint; its own user's do.
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
    let v3 = vars(&[("alice", "user.email", "new@x")]);
    assert_ne!(
        fingerprint(&c),
        fingerprint(&BundleContent {
            variables: &v3,
            ..c
        })
    );
    // Order and duplicates of the users change nothing; another user does.
    let shuffled = strings(&["bob", "alice", "bob"]);
    assert_eq!(
        fingerprint(&c),
        fingerprint(&BundleContent {
            users: &shuffled,
            ..c
        })
    );
    let more = strings(&["alice", "bob", "dave"]);
    assert_ne!(
        fingerprint(&c),
        fingerprint(&BundleContent { users: &more, ..c })
    );
}

#[test]
fn the_payload_is_the_wire_contract() {
    let users = strings(&["alice"]);
    let v = vars(&[("alice", "user.email", "a@x")]);
    let c = BundleContent {
        device: "dev_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        profile_id: "bsi-m5.57",
        profile_version: 2,
        profile_toml: "id = \"bsi-m5.57\"\n",
        users: &users,
        variables: &v,
        preview: None,
    };
    let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
    assert_eq!(
        serde_json::to_string(&payload(&c, 7, at)).unwrap(),
        r#"{"schema":"postwarden.bundle/v1","device":"dev_aaaaaaaaaaaaaaaaaaaaaaaaaa","serial":7,"issued_at":"2026-11-18T11:06:40Z","profile":{"id":"bsi-m5.57","version":2,"toml":"id = \"bsi-m5.57\"\n"},"variables":{"alice":{"user.email":"a@x"}}}"#
    );
}

#[test]
fn the_fingerprint_encoding_is_pinned() {
    // Stored fingerprints are compared with new ones: a change here bumps every device's
    // serial once. Change this value only on purpose. It is the SHA-256 (checked with Python's
    // hashlib) of the canonical text
    // {"device":"dev_aaaaaaaaaaaaaaaaaaaaaaaaaa","profile":["bsi-m5.57",2,"id = \"bsi-m5.57\"\n"],
    //  "users":["alice","bob"],"variables":{"alice":{"user.email":"a@x"},"bob":{"user.email":"b@x"}}}
    // (one line, no spaces).
    let users = strings(&["bob", "alice"]);
    let v = vars(&[("alice", "user.email", "a@x"), ("bob", "user.email", "b@x")]);
    let c = BundleContent {
        device: "dev_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        profile_id: "bsi-m5.57",
        profile_version: 2,
        profile_toml: "id = \"bsi-m5.57\"\n",
        users: &users,
        variables: &v,
        preview: None,
    };
    let fp = fingerprint(&c);
    assert_eq!(fp.len(), 64);
    assert!(fp
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(
        fp,
        "4e8698347754a710de9c2cab76ea0af533b75b2f98b58fb75755b7f89624160e"
    );
}

#[test]
fn separators_inside_values_cannot_make_two_contents_collide() {
    // Naive concatenation would encode both as `a|b|c`.
    let u1 = strings(&["a|b", "c"]);
    let u2 = strings(&["a", "b|c"]);
    let none = Vars::new();
    let make = |users| BundleContent {
        device: "d",
        profile_id: "p",
        profile_version: 1,
        profile_toml: "t",
        users,
        variables: &none,
        preview: None,
    };
    assert_ne!(fingerprint(&make(&u1)), fingerprint(&make(&u2)));
    let id_a = BundleContent {
        profile_id: "p\",1,\"t",
        profile_toml: "",
        ..make(&u1)
    };
    let id_b = BundleContent {
        profile_id: "p",
        profile_toml: "\",1,\"t",
        ..make(&u1)
    };
    assert_ne!(fingerprint(&id_a), fingerprint(&id_b));
}

/// Content as owned parts, for generating.
#[derive(Debug, Clone)]
struct Owned {
    device: String,
    id: String,
    version: u32,
    toml: String,
    users: Vec<String>,
    vars: Vars,
}

impl Owned {
    fn content(&self) -> BundleContent<'_> {
        BundleContent {
            device: &self.device,
            profile_id: &self.id,
            profile_version: self.version,
            profile_toml: &self.toml,
            users: &self.users,
            variables: &self.vars,
            preview: None,
        }
    }
}

fn owned() -> impl Strategy<Value = Owned> {
    (
        "d[12]",
        "[ab]",
        1u32..3,
        "[xy]{0,2}",
        proptest::collection::vec("[uvw]", 0..4),
        proptest::collection::btree_map(
            "[uvwz]",
            proptest::collection::btree_map("[kl]", "[01]{0,1}", 0..2),
            0..4,
        ),
    )
        .prop_map(|(device, id, version, toml, users, vars)| Owned {
            device,
            id,
            version,
            toml,
            users,
            vars,
        })
}

proptest! {
    /// Equal content (judged by the payloads and the sets of users, independently of the
    /// fingerprint's encoding) ⇔ equal fingerprints.
    #[test]
    fn fingerprints_are_equal_exactly_when_content_is(a in owned(), b in owned()) {
        let (ca, cb) = (a.content(), b.content());
        let set = |u: &[String]| u.iter().cloned().collect::<std::collections::BTreeSet<_>>();
        let same = payload(&ca, 0, OffsetDateTime::UNIX_EPOCH)
            == payload(&cb, 0, OffsetDateTime::UNIX_EPOCH)
            && set(&a.users) == set(&b.users);
        prop_assert_eq!(fingerprint(&ca) == fingerprint(&cb), same);
    }

    /// The payload carries exactly the device's users that have variables.
    #[test]
    fn payload_variables_belong_to_the_devices_users(a in owned()) {
        let p = payload(&a.content(), 1, OffsetDateTime::UNIX_EPOCH);
        for (user, vars) in &p.variables {
            prop_assert!(a.users.contains(user));
            prop_assert_eq!(Some(vars), a.vars.get(user));
            prop_assert!(!vars.is_empty());
        }
        for user in &a.users {
            let has = a.vars.get(user).is_some_and(|v| !v.is_empty());
            prop_assert_eq!(p.variables.contains_key(user), has);
        }
    }
}

/// Issue 12 (staged rollout): a preview is part of the content (the serial moves when one is
/// added, changed or removed, so the device fetches it), pinned like the rest; without one the
/// fingerprint is the one from before previews existed.
#[test]
fn a_preview_is_content_and_its_encoding_is_pinned() {
    let users = strings(&["bob", "alice"]);
    let v = vars(&[("alice", "user.email", "a@x"), ("bob", "user.email", "b@x")]);
    let c = BundleContent {
        device: "dev_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        profile_id: "bsi-m5.57",
        profile_version: 2,
        profile_toml: "id = \"bsi-m5.57\"\n",
        users: &users,
        variables: &v,
        preview: Some(PreviewContent {
            profile_id: "bsi-m5.57",
            profile_version: 3,
            profile_toml: "id = \"bsi-m5.57\"\nversion = 3\n",
        }),
    };
    // SHA-256 (Python's hashlib) of {"device":"dev_aaaaaaaaaaaaaaaaaaaaaaaaaa","preview":
    // ["bsi-m5.57",3,"id = \"bsi-m5.57\"\nversion = 3\n"],"profile":["bsi-m5.57",2,
    // "id = \"bsi-m5.57\"\n"],"users":["alice","bob"],"variables":{…as without a preview…}}.
    assert_eq!(
        fingerprint(&c),
        "76578f0562bd8c4ac8881f4711a9053e72beaa49112448f58cb523c23ce5e6ec"
    );
    let without = BundleContent { preview: None, ..c };
    assert_ne!(fingerprint(&c), fingerprint(&without));
    let other = BundleContent {
        preview: Some(PreviewContent {
            profile_version: 4,
            ..c.preview.unwrap()
        }),
        ..c
    };
    assert_ne!(fingerprint(&c), fingerprint(&other));
    let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
    let p = payload(&c, 9, at);
    let preview = p.preview.expect("the payload carries the preview");
    assert_eq!(
        (preview.id.as_str(), preview.version, preview.toml.as_str()),
        ("bsi-m5.57", 3, "id = \"bsi-m5.57\"\nversion = 3\n")
    );
    assert_eq!(payload(&without, 9, at).preview, None);
}
