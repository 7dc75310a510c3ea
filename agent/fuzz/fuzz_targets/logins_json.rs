//! Fuzzes Thunderbird's `logins.json` reader/writer (`thunderbird::logins::Logins`).
//!
//! For any UTF-8 input: `parse` never panics; an error names the file and a line within the
//! text; whatever parses renders to text that parses back equal, and rendering that again gives
//! the same text; `remove_mail` removes exactly the entries `mail_hosts` lists (the count it
//! returns), after which no mail host is left, every other login is kept in its order, and every
//! other top-level field is unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postwarden_clients::thunderbird::logins::Logins;
use serde_json::{Map, Value as Json};

const FILE: &str = "logins.json";

fn reparse(logins: &Logins, what: &str) -> Logins {
    let text = logins.render();
    match Logins::parse(FILE, &text) {
        Ok(again) => {
            assert!(
                &again == logins && again.render() == text,
                "text rendered after {what} reads back differently:\n{text}"
            );
            again
        }
        Err(e) => panic!("text rendered after {what} does not parse: {e}\n{text}"),
    }
}

/// The rendered file as plain JSON, to check what `remove_mail` kept.
fn json(logins: &Logins) -> Map<String, Json> {
    match serde_json::from_str(&logins.render()).expect("rendered JSON parses") {
        Json::Object(map) => map,
        other => panic!("rendered a non-object: {other}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let logins = match Logins::parse(FILE, text) {
        Ok(logins) => logins,
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.split('\n').count(), "{e}");
            assert!(e
                .to_string()
                .starts_with(&format!("{FILE}:{}:{}: ", e.line, e.column)));
            return;
        }
    };
    let logins = reparse(&logins, "parse");
    let hosts = logins.mail_hosts();

    let mut edited = logins.clone();
    assert_eq!(edited.remove_mail(), hosts.len());
    let after = reparse(&edited, "remove_mail");
    assert!(after.mail_hosts().is_empty());
    assert_eq!(
        after.clone().remove_mail(),
        0,
        "remove_mail is not idempotent"
    );

    let (before, after) = (json(&logins), json(&after));
    assert!(before.keys().eq(after.keys()), "top-level fields changed");
    for (k, v) in &before {
        if k != "logins" {
            assert_eq!(after.get(k), Some(v), "top-level field {k:?} changed");
        }
    }
    let empty = Vec::new();
    let list = |m: &Map<String, Json>| {
        m.get("logins")
            .and_then(Json::as_array)
            .unwrap_or(&empty)
            .clone()
    };
    let (old, new) = (list(&before), list(&after));
    assert_eq!(old.len() - new.len(), hosts.len());
    // `new` is `old` without the removed entries, in order.
    let mut kept = new.iter().peekable();
    for entry in &old {
        if kept.peek() == Some(&entry) {
            kept.next();
        } else {
            let host = entry.get("hostname").and_then(Json::as_str);
            assert!(
                host.is_some_and(|h| hosts.iter().any(|m| m == h)),
                "non-mail entry removed: {entry}"
            );
        }
    }
    assert!(
        kept.next().is_none(),
        "remove_mail reordered the kept entries"
    );
});
