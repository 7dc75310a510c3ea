//! Fuzzes the Thunderbird pref-file reader/writer.
//!
//! For any UTF-8 input: `parse` never panics; if it parses, `render` gives
//! the input back byte for byte; after `set_user` (a new and an existing
//! name) and `remove_user`, the text still parses, reads back the values
//! written, and equals the edited in-memory state.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postwarden_clients::thunderbird::prefs::{PrefKind, PrefValue, PrefsFile};

fn reparse(file: &PrefsFile, what: &str) -> PrefsFile {
    let text = file.render();
    match PrefsFile::parse(&text) {
        Ok(again) => {
            assert_eq!(
                &again, file,
                "state after {what} differs from a fresh parse"
            );
            again
        }
        Err(e) => panic!("text after {what} does not parse: {e}\n{text:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = PrefsFile::parse(text) else {
        return;
    };
    assert_eq!(file.render(), text, "render is not the input");

    // A string derived from the input: reversed, so that quotes, escapes,
    // control and non-ASCII characters of the input end up in the value.
    let derived: String = text.chars().rev().take(200).collect();
    let value = PrefValue::Str(derived);
    let mut edited = file.clone();
    edited.set_user("fuzz.pref", &value);
    let again = reparse(&edited, "set_user(\"fuzz.pref\")");
    assert_eq!(again.get_user("fuzz.pref"), Some(&value));
    for (a, b) in file
        .entries()
        .iter()
        .zip(again.entries())
        .filter(|(a, _)| !(a.kind == PrefKind::User && a.name == "fuzz.pref"))
    {
        assert_eq!((a.kind, &a.name, &a.value), (b.kind, &b.name, &b.value));
    }

    // Overwrite the last user pref of the file, whatever its name.
    if let Some(name) = file
        .entries()
        .iter()
        .rev()
        .find(|e| e.kind == PrefKind::User)
        .map(|e| e.name.clone())
    {
        let int = PrefValue::Int(i64::try_from(text.len()).unwrap_or(i64::MAX).wrapping_neg());
        let mut edited = file.clone();
        edited.set_user(&name, &int);
        let again = reparse(&edited, "set_user(existing)");
        assert_eq!(again.get_user(&name), Some(&int));
        assert_eq!(again.entries().len(), file.entries().len());

        let mut removed = again;
        assert!(removed.remove_user(&name));
        let again = reparse(&removed, "remove_user");
        assert_eq!(again.get_user(&name), None);
    }
});
