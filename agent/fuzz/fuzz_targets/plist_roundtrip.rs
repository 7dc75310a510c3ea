//! Fuzzes the preference-plist reader/writer used for Apple Mail.
//!
//! For any bytes (raw, and behind a `bplist00` magic): `PlistDoc::parse` never panics; whatever
//! parses writes back as binary that parses to the same dictionary; after setting a key, an
//! entry inside a dictionary value, and removing them again, the document still round-trips and
//! every key it had before is still there with its value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plist::Value;
use postwarden_agent::applemail::plistfile::PlistDoc;

fn round_trip(doc: &PlistDoc, what: &str) -> PlistDoc {
    let bytes = doc.to_binary();
    match PlistDoc::parse(&bytes) {
        Ok(again) => {
            assert_eq!(again.root, doc.root, "binary written after {what} reads back differently");
            again
        }
        Err(e) => panic!("binary written after {what} does not parse: {e}"),
    }
}

fn check(data: &[u8]) {
    let Ok(doc) = PlistDoc::parse(data) else {
        return;
    };
    let before = round_trip(&doc, "parse");
    let mut edited = before.clone();
    edited.set("PollTime", None, Some(Value::Integer(30.into())));
    edited.set("UserHeaders", Some("Reply-To"), Some(Value::String("a@example.org".into())));
    let after = round_trip(&edited, "set");
    assert_eq!(after.get("PollTime", None), Some(&Value::Integer(30.into())));
    assert_eq!(
        after.get("UserHeaders", Some("Reply-To")),
        Some(&Value::String("a@example.org".into()))
    );
    for (k, v) in before.root.iter() {
        if k != "PollTime" && k != "UserHeaders" {
            assert_eq!(after.root.get(k), Some(v), "unrelated key {k:?} changed");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut magic = b"bplist00".to_vec();
    magic.extend_from_slice(data);
    check(&magic);
});
