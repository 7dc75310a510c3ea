//! Fuzzes Thunderbird's `policies.json` reader/writer (`thunderbird::policies::PoliciesDoc`).
//!
//! For any UTF-8 input: `parse` never panics; an error names the file and a line within the
//! text; every query (`pref` of each name, `named_signon_lock`, `handler`) answers without
//! panicking; whatever parses renders to text that parses back equal, and rendering that again
//! gives the same text; after `set_locked_pref`, `set_legacy_pref` (a new and an existing
//! name), `set_named`, `set_save_to_disk` and `remove_pref`, the rendered text still parses,
//! reads back the values written, and keeps every other `Preferences` entry.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postwarden_clients::thunderbird::policies::{PoliciesDoc, PolicyStatus};
use postwarden_clients::thunderbird::prefs::PrefValue;
use serde_json::Value as Json;

const FILE: &str = "policies.json";

/// `doc` rendered and parsed again: equal to `doc`, and rendering is a fixed point.
fn reparse(doc: &PoliciesDoc, what: &str) -> PoliciesDoc {
    let text = doc.render();
    match PoliciesDoc::parse(FILE, &text) {
        Ok(again) => {
            assert!(
                &again == doc && again.render() == text,
                "text rendered after {what} reads back differently:\n{text}"
            );
            again
        }
        Err(e) => panic!("text rendered after {what} does not parse: {e}\n{text}"),
    }
}

fn query_everything(doc: &PoliciesDoc) {
    for name in doc.pref_names() {
        let _ = doc.pref(&name);
    }
    let _ = doc.named_signon_lock();
    let _ = doc.handler("exe");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let doc = match PoliciesDoc::parse(FILE, text) {
        Ok(doc) => doc,
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.split('\n').count(), "{e}");
            assert!(e
                .to_string()
                .starts_with(&format!("{FILE}:{}:{}: ", e.line, e.column)));
            return;
        }
    };
    query_everything(&doc);
    let doc = reparse(&doc, "parse");
    let names = doc.pref_names();

    // A name and a string derived from the input, so that quotes, escapes and non-ASCII
    // characters of the input end up in what is written.
    let derived: String = text.chars().rev().take(100).collect();
    let mut edited = doc.clone();
    edited.set_locked_pref(&derived, &PrefValue::Str(derived.clone()));
    edited.set_named("OfferToSaveLogins", Json::Bool(false));
    edited.set_save_to_disk(&derived);
    let again = reparse(&edited, "set_locked_pref/set_named/set_save_to_disk");
    query_everything(&again);
    let written = again.pref(&derived).expect("the pref just written");
    assert_eq!(written.status, PolicyStatus::Locked);
    assert_eq!(written.value, Some(PrefValue::Str(derived.clone())));
    assert_eq!(
        again.handler(&derived),
        Some(("saveToDisk".to_owned(), false))
    );
    assert!(again.named_signon_lock().is_some());
    for name in names.iter().filter(|n| **n != derived) {
        assert_eq!(
            again.pref(name),
            doc.pref(name),
            "unrelated pref {name:?} changed"
        );
    }

    // Overwrite an administrator's entry in the legacy form, then remove it.
    if let Some(name) = names.last() {
        let int = PrefValue::Int(i64::try_from(text.len()).unwrap_or(i64::MAX).wrapping_neg());
        let mut edited = doc.clone();
        edited.set_legacy_pref(name, &int);
        let again = reparse(&edited, "set_legacy_pref(existing)");
        let written = again.pref(name).expect("the pref just written");
        assert_eq!(
            (written.status, written.value),
            (PolicyStatus::Legacy, Some(int))
        );
        assert_eq!(again.pref_names().len(), names.len());

        let mut removed = again;
        assert!(removed.remove_pref(name));
        let again = reparse(&removed, "remove_pref");
        assert_eq!(again.pref(name), None);
        assert_eq!(again.pref_names().len(), names.len() - 1);
    }
});
