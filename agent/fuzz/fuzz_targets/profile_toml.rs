//! Fuzzes the profile parser (`postwarden_profiles::Profile::parse`).
//!
//! For any UTF-8 input: `parse` never panics; an error carries the file name and a 1-based
//! line and column that lie inside the text (at most one past the end of that line), and its
//! message starts with `file:line:column: `; a parsed profile has the file name as its source,
//! and every control's origin is `file:line:column` inside the text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postwarden_profiles::Profile;

const FILE: &str = "fuzz.toml";

/// Whether 1-based `line`/`column` (column in characters) point into `text` or one past the end
/// of that line.
fn inside(text: &str, line: usize, column: usize) -> bool {
    let Some(l) = text.split('\n').nth(line.wrapping_sub(1)) else {
        return false;
    };
    column >= 1 && column <= l.chars().count() + 1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Profile::parse(FILE, text) {
        Ok(profile) => {
            assert_eq!(profile.source, FILE);
            for control in &profile.controls {
                let pos = control.origin.strip_prefix(&format!("{FILE}:"));
                let (line, column) = pos
                    .and_then(|p| p.split_once(':'))
                    .and_then(|(l, c)| Some((l.parse().ok()?, c.parse().ok()?)))
                    .unwrap_or_else(|| {
                        panic!("origin {:?} is not file:line:column", control.origin)
                    });
                assert!(
                    inside(text, line, column),
                    "origin {} outside the text",
                    control.origin
                );
            }
        }
        Err(e) => {
            assert_eq!(e.file, FILE);
            assert!(
                inside(text, e.line, e.column),
                "{e}: position outside the text"
            );
            assert!(e
                .to_string()
                .starts_with(&format!("{FILE}:{}:{}: ", e.line, e.column)));
            // `regressions/profile_toml/empty-message-*`: the toml crate has no message for
            // some syntax errors; `Profile::parse` must give one.
            assert!(!e.message.trim().is_empty(), "{e}: empty message");
        }
    }
});
