use plist::{Dictionary, Value};
use proptest::prelude::*;

use super::*;

fn dict(pairs: &[(&str, Value)]) -> Dictionary {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn binary_and_xml_parse_to_the_same_dictionary() {
    let root = dict(&[
        ("PollTime", Value::Integer(5.into())),
        ("AutoFetch", Value::Boolean(false)),
        ("NSNavLastRootDirectory", Value::String("~/Desktop".into())),
    ]);
    let mut xml = Vec::new();
    Value::Dictionary(root.clone())
        .to_writer_xml(&mut xml)
        .unwrap();
    let from_xml = PlistDoc::parse(&xml).unwrap();
    assert_eq!(from_xml.format, Format::Xml);
    let bin = from_xml.to_binary();
    assert!(bin.starts_with(b"bplist00"));
    let from_bin = PlistDoc::parse(&bin).unwrap();
    assert_eq!(from_bin.format, Format::Binary);
    assert_eq!(from_bin.root, root);
    // Order is kept.
    assert_eq!(
        from_bin.root.keys().collect::<Vec<_>>(),
        ["PollTime", "AutoFetch", "NSNavLastRootDirectory"]
    );
}

#[test]
fn corrupt_truncated_and_wrong_roots_are_errors() {
    let good = PlistDoc {
        root: dict(&[("PollTime", Value::Integer(30.into()))]),
        format: Format::Binary,
    }
    .to_binary();
    let truncated = &good[..good.len() - 5];
    let e = PlistDoc::parse(truncated).unwrap_err().to_string();
    assert!(e.starts_with("not a valid binary property list"), "{e}");
    assert_eq!(
        PlistDoc::parse(b"").unwrap_err().to_string(),
        "empty file: not a property list"
    );
    let e = PlistDoc::parse(b"<plist><dict><key>a</key></dict></plist>")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("not a valid XML property list"), "{e}");
    let mut arr = Vec::new();
    Value::Array(vec![]).to_writer_binary(&mut arr).unwrap();
    assert_eq!(
        PlistDoc::parse(&arr).unwrap_err().to_string(),
        "the root is an array; a preference file's root is a dictionary"
    );
}

#[test]
fn entries_inside_a_dictionary_value() {
    let mut doc = PlistDoc::empty();
    doc.set(
        "UserHeaders",
        Some("Reply-To"),
        Some(Value::String("a@x".into())),
    );
    doc.set(
        "UserHeaders",
        Some("X-Other"),
        Some(Value::String("kept".into())),
    );
    assert_eq!(
        doc.get("UserHeaders", Some("Reply-To")),
        Some(&Value::String("a@x".into()))
    );
    doc.set("UserHeaders", Some("Reply-To"), None);
    assert!(doc.get("UserHeaders", Some("X-Other")).is_some());
    doc.set("UserHeaders", Some("X-Other"), None);
    assert_eq!(
        doc.get("UserHeaders", None),
        None,
        "the empty dictionary goes"
    );
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(|i| Value::Integer(i.into())),
        any::<u64>().prop_map(|i| Value::Integer(i.into())),
        "[^\u{0}]{0,16}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..32).prop_map(Value::Data),
        (-1.0e12f64..1.0e12).prop_map(Value::Real),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec(("[a-zA-Z0-9 ._-]{1,12}", inner), 0..5)
                .prop_map(|kv| Value::Dictionary(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever a preference file holds survives a read and a binary write unchanged, and so
    /// does its XML form: unknown keys are never lost.
    #[test]
    fn any_dictionary_round_trips(
        entries in proptest::collection::vec(("[a-zA-Z0-9 ._-]{1,16}", value()), 0..8),
    ) {
        let root: Dictionary = entries.into_iter().collect();
        let doc = PlistDoc { root: root.clone(), format: Format::Binary };
        let back = PlistDoc::parse(&doc.to_binary()).unwrap();
        prop_assert_eq!(&back.root, &root);
        let mut xml = Vec::new();
        Value::Dictionary(root.clone()).to_writer_xml(&mut xml).unwrap();
        prop_assert_eq!(PlistDoc::parse(&xml).unwrap().root, root);
    }

    /// Arbitrary bytes never panic the reader.
    #[test]
    fn arbitrary_bytes_are_an_error_or_a_dictionary(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = PlistDoc::parse(&bytes);
        let mut b = b"bplist00".to_vec();
        b.extend(&bytes);
        let _ = PlistDoc::parse(&b);
    }
}

#[test]
fn errors_are_words_not_debug_output() {
    for (bytes, want) in [
        (
            &b"not a plist"[..],
            "not a valid XML property list: more data follows",
        ),
        (
            &b"bplist00\x01\x02"[..],
            "not a valid binary property list: an offset points outside the data",
        ),
        (
            &b"<?xml version=\"1.0\"?><plist><dict><key>a</key></plist>"[..],
            "not a valid XML property list:",
        ),
    ] {
        let e = PlistDoc::parse(bytes).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e}");
        assert!(
            !e.contains('{') && !e.contains("Eof"),
            "no Debug output: {e}"
        );
    }
}
