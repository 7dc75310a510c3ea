//! Fuzzes the preference-plist reader/writer used for Apple Mail.
//!
//! For any bytes (raw, and behind a `bplist00` magic): `PlistDoc::parse` never panics; whatever
//! parses writes back as binary that parses to the same dictionary (reals bit for bit, NaN
//! included); after setting a key and an entry inside a dictionary value, and after removing
//! them again, the document still round-trips, reads back what was written, and every other key
//! it had before is still there with its value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plist::{Dictionary, Value};
use postwarden_clients::applemail::plistfile::PlistDoc;

/// `==` that holds for a NaN too (`Value` compares reals as `f64`, and NaN != NaN): reals must
/// keep their bits.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Real(x), Value::Real(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Dictionary(x), Value::Dictionary(y)) => same_dict(x, y),
        _ => a == b,
    }
}

fn same_dict(a: &Dictionary, b: &Dictionary) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
}

fn round_trip(doc: &PlistDoc, what: &str) -> PlistDoc {
    let bytes = doc.to_binary();
    match PlistDoc::parse(&bytes) {
        Ok(again) => {
            assert!(
                same_dict(&again.root, &doc.root),
                "binary written after {what} reads back differently:\n{:?}\n{:?}",
                again.root,
                doc.root
            );
            again
        }
        Err(e) => panic!("binary written after {what} does not parse: {e}"),
    }
}

/// Every key of `before` but `edited` is in `after` with its value.
fn others_kept(before: &PlistDoc, after: &PlistDoc, edited: &[&str]) {
    for (k, v) in before.root.iter() {
        if !edited.contains(&k.as_str()) {
            let kept = after.root.get(k).is_some_and(|a| same(a, v));
            assert!(kept, "unrelated key {k:?} changed");
        }
    }
}

fn check(data: &[u8]) {
    let Ok(doc) = PlistDoc::parse(data) else {
        return;
    };
    let before = round_trip(&doc, "parse");
    let poll = Value::Integer(30.into());
    let reply_to = Value::String("a@example.org".into());
    let mut edited = before.clone();
    edited.set("PollTime", None, Some(poll.clone()));
    edited.set("UserHeaders", Some("Reply-To"), Some(reply_to.clone()));
    let after = round_trip(&edited, "set");
    assert_eq!(after.get("PollTime", None), Some(&poll));
    assert_eq!(after.get("UserHeaders", Some("Reply-To")), Some(&reply_to));
    others_kept(&before, &after, &["PollTime", "UserHeaders"]);

    let mut removed = after;
    removed.set("PollTime", None, None);
    removed.set("UserHeaders", Some("Reply-To"), None);
    let after = round_trip(&removed, "remove");
    assert_eq!(after.get("PollTime", None), None);
    assert_eq!(after.get("UserHeaders", Some("Reply-To")), None);
    others_kept(&before, &after, &["PollTime", "UserHeaders"]);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut magic = b"bplist00".to_vec();
    magic.extend_from_slice(data);
    check(&magic);
});
