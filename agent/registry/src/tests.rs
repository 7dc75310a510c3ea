use proptest::prelude::*;

use super::*;

fn hkcu(path: &str) -> KeyPath {
    KeyPath::new(Root::CurrentUser, path)
}

#[test]
fn key_paths_compare_case_insensitively_and_keep_their_spelling() {
    let a = hkcu(r"Software\Policies\Microsoft");
    let b = KeyPath::parse(r"HKCU\software\POLICIES\microsoft\").unwrap();
    assert_eq!(a, b);
    assert_eq!(
        b.to_string(),
        r"HKEY_CURRENT_USER\software\POLICIES\microsoft"
    );
    assert!(hkcu(r"Software\Policies\Microsoft\Office").is_within(&a));
    assert!(!hkcu(r"Software\PoliciesX").is_within(&hkcu(r"Software\Policies")));
    assert_eq!(a.parent(), Some(hkcu(r"Software\Policies")));
    assert_eq!(
        a.ancestors().map(|k| k.path).collect::<Vec<_>>(),
        vec![
            r"Software\Policies\Microsoft",
            r"Software\Policies",
            "Software"
        ]
    );
    assert_eq!(KeyPath::parse(r"HKEY_NOPE\x"), None);
}

#[test]
fn outlook_account_strings_read_from_binary_and_sz() {
    let bin = RegValue::binary_text("replies@example.org");
    assert_eq!(bin.as_text().as_deref(), Some("replies@example.org"));
    assert_eq!(
        &bin.to_bytes()[..4],
        &[b'r', 0, b'e', 0],
        "UTF-16LE, low byte first"
    );
    assert_eq!(&bin.to_bytes()[bin.to_bytes().len() - 2..], &[0, 0]);
    assert_eq!(RegValue::Sz("a@b".into()).as_text().as_deref(), Some("a@b"));
    // A DPAPI blob is not text.
    assert_eq!(RegValue::Binary(vec![2, 1, 0, 0, 0]).as_text(), None);
    assert_eq!(RegValue::Dword(1).as_text(), None);
}

#[test]
fn multi_strings_drop_only_the_terminator() {
    let v = RegValue::MultiSz(vec!["contoso.com".into(), "fabrikam.com".into()]);
    assert_eq!(RegValue::from_bytes(7, &v.to_bytes()), v);
    assert_eq!(
        RegValue::from_bytes(4, &[1, 2]),
        RegValue::Other {
            ty: 4,
            data: vec![1, 2]
        }
    );
}

fn any_value() -> impl Strategy<Value = RegValue> {
    let text = "[^\u{0}]{0,12}";
    prop_oneof![
        any::<u32>().prop_map(RegValue::Dword),
        any::<u64>().prop_map(RegValue::Qword),
        text.prop_map(RegValue::Sz),
        text.prop_map(RegValue::ExpandSz),
        proptest::collection::vec("[^\u{0}]{1,8}", 0..4).prop_map(RegValue::MultiSz),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(RegValue::Binary),
    ]
}

proptest! {
    #[test]
    fn values_round_trip_through_their_stored_bytes(v in any_value()) {
        prop_assert_eq!(RegValue::from_bytes(v.type_code(), &v.to_bytes()), v);
    }
}

#[test]
fn mem_registry_creates_keys_and_ignores_case() {
    let mut r = MemRegistry::new();
    let key = hkcu(r"Software\Policies\Microsoft\Office\16.0\Outlook\Security");
    r.set(&key, "AdminSecurityMode", &RegValue::Dword(3))
        .unwrap();
    assert_eq!(
        r.get(
            &hkcu(r"software\policies\microsoft\office\16.0\outlook\security"),
            "adminsecuritymode"
        )
        .unwrap(),
        Some(RegValue::Dword(3))
    );
    assert!(r.exists(&hkcu(r"Software\Policies")).unwrap());
    assert_eq!(
        r.subkeys(&hkcu(r"Software\Policies\Microsoft\Office"))
            .unwrap(),
        vec!["16.0"]
    );
    // The first spelling of a value name is kept.
    r.set(&key, "ADMINSECURITYMODE", &RegValue::Dword(2))
        .unwrap();
    assert_eq!(
        r.values(&key).unwrap().keys().collect::<Vec<_>>(),
        vec!["AdminSecurityMode"]
    );
    assert_eq!(r.get(&hkcu("Nope"), "x").unwrap(), None);
    assert!(!r.delete_key_if_empty(&key).unwrap(), "has a value");
    r.delete_value(&key, "adminsecuritymode").unwrap();
    assert!(r.delete_key_if_empty(&key).unwrap());
    assert!(
        !r.delete_key_if_empty(&hkcu(r"Software\Policies")).unwrap(),
        "has a subkey"
    );
}

#[test]
fn mem_registry_refuses_writes_below_protected_keys() {
    let mut r = MemRegistry::new();
    r.deny_writes_below(hkcu(r"Software\Policies"));
    let err = r
        .set(
            &hkcu(r"Software\Policies\Microsoft"),
            "x",
            &RegValue::Dword(1),
        )
        .unwrap_err();
    assert!(err.is_access_denied());
    assert_eq!(
        err.to_string(),
        r"HKEY_CURRENT_USER\Software\Policies\Microsoft: access denied"
    );
    assert_eq!(r.writes(), 0);
    r.set(&hkcu(r"Software\Microsoft"), "x", &RegValue::Dword(1))
        .unwrap();
    assert_eq!(r.writes(), 1);
}

#[test]
fn snapshots_name_the_keys_that_changed() {
    let mut r = MemRegistry::new();
    let root = hkcu(r"Software\Microsoft\Office\16.0\Outlook\Profiles");
    let acct = root.join(r"Outlook\9375CFF0413111d3B88A00104B2A6676\00000001");
    r.set(&acct, "Leave on Server", &RegValue::Dword(0))
        .unwrap();
    let before = snapshot::Snapshot::read(&r, &root).unwrap();
    assert_eq!(before.keys.len(), 4);
    assert!(before.changed_keys(&before).is_empty());

    r.set(&acct, "leave on server", &RegValue::Dword(1))
        .unwrap();
    let other = root.join(r"Second\9375CFF0413111d3B88A00104B2A6676");
    r.set(&other, "NextAccountID", &RegValue::Dword(2)).unwrap();
    let after = snapshot::Snapshot::read(&r, &root).unwrap();
    let changed: Vec<String> = before
        .changed_keys(&after)
        .into_iter()
        .map(|k| k.path)
        .collect();
    assert_eq!(
        changed,
        vec![
            r"Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001",
            r"Software\Microsoft\Office\16.0\Outlook\Profiles\Second",
            r"Software\Microsoft\Office\16.0\Outlook\Profiles\Second\9375CFF0413111d3B88A00104B2A6676",
        ]
    );
    assert!(snapshot::Snapshot::read(&r, &hkcu("Missing"))
        .unwrap()
        .keys
        .is_empty());
}

#[test]
fn stored_bytes_that_the_typed_form_would_change_stay_raw() {
    // REG_SZ written without its terminating NUL (the API allows it).
    let unterminated = [b'h', 0, b'i', 0];
    let v = RegValue::from_bytes(1, &unterminated);
    assert_eq!(
        v,
        RegValue::Other {
            ty: 1,
            data: unterminated.to_vec()
        }
    );
    assert_eq!(v.to_bytes(), unterminated);
    assert_eq!(v.as_text().as_deref(), Some("hi"));
    // Data after the NUL survives too.
    let trailing = [b'a', 0, 0, 0, b'x', 0];
    assert_eq!(RegValue::from_bytes(1, &trailing).to_bytes(), trailing);
}
