//! Names clients send: checked before anything is stored or looked up, each kind with its own
//! alphabet and length, and always refusing path tricks (`/`, `..`), quotes, control and
//! invisible characters, so a name is safe in a URL, a file name, a log line and a CSV cell.
//!
//! The length is checked first, so a huge value costs nothing and is never echoed back: an
//! error quotes at most the one offending character.

use postwarden_wire::v1::FieldError;

use crate::text::{clip, is_invisible};

/// The prefix of a device id (see [`crate::secret::id`]).
pub const DEVICE_ID_PREFIX: &str = "dev_";

/// The number of base32 characters after an id's prefix (16 random bytes).
pub const ID_BODY_LEN: usize = 26;

/// What a name names; each kind has its own rules, all bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A device group: 1–64 of `[A-Za-z0-9._-]`, starting with a letter or digit, no `..`.
    Group,
    /// A profile id, as in the profile's `id`: like a group.
    ProfileId,
    /// An admin token's name: like a group.
    TokenName,
    /// A local login name as the agent reports it (`alice`, `EXAMPLE\alice`,
    /// `alice@example.org`): 1–256 printable characters without white space, quotes (`"`, `'`,
    /// `` ` ``), `/`, `..`, control or invisible characters; not `.` alone.
    UserKey,
    /// A template variable (`user.email`) or a control id: 1–64 of `[a-z0-9._-]`, no `..`.
    VariableName,
    /// A device id made by the server: `dev_` and 26 lowercase base32 characters.
    DeviceId,
}

impl NameKind {
    /// The longest accepted name, in characters (all kinds but [`NameKind::UserKey`] are ASCII).
    pub const fn max_len(self) -> usize {
        match self {
            NameKind::UserKey => 256,
            NameKind::DeviceId => DEVICE_ID_PREFIX.len() + ID_BODY_LEN,
            NameKind::Group
            | NameKind::ProfileId
            | NameKind::TokenName
            | NameKind::VariableName => 64,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            NameKind::Group | NameKind::ProfileId | NameKind::TokenName => {
                "letters, digits, '.', '_' and '-', starting with a letter or digit"
            }
            NameKind::UserKey => {
                "printable characters without spaces, quotes, '/' or control characters"
            }
            NameKind::VariableName => "lowercase letters, digits, '.', '_' and '-'",
            NameKind::DeviceId => "an id made by the server: dev_ and 26 characters a-z, 2-7",
        }
    }

    fn allows(self, c: char) -> bool {
        match self {
            NameKind::Group | NameKind::ProfileId | NameKind::TokenName => {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
            }
            NameKind::UserKey => {
                !c.is_control()
                    && !c.is_whitespace()
                    && !is_invisible(c)
                    && !matches!(c, '"' | '\'' | '`' | '/')
            }
            NameKind::VariableName => {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            }
            NameKind::DeviceId => c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        }
    }
}

/// Checks `value` as a name of `kind`.
///
/// The error's `field` is `field` (the JSON field or path segment, e.g. `group` or `users[2]`);
/// its `line` and `column` are 0, as a name is not located in a text. The message never repeats
/// the value, only the first offending character.
pub fn check(kind: NameKind, field: &str, value: &str) -> Result<(), FieldError> {
    let fail = |message: String| FieldError {
        line: 0,
        column: 0,
        field: Some(clip(field, 128)),
        message,
    };
    if value.is_empty() {
        return Err(fail("must not be empty".into()));
    }
    let max = kind.max_len();
    // A char is at most 4 bytes: a value this long in bytes is too long in characters too, and is
    // refused before anything proportional to its length is done.
    if value.len() > 4 * max || value.chars().count() > max {
        return Err(fail(format!("is longer than {max} characters")));
    }
    if let Some(c) = value.chars().find(|c| !kind.allows(*c)) {
        return Err(fail(format!(
            "contains {}; allowed are {}",
            show(c),
            kind.describe()
        )));
    }
    if value.contains("..") {
        return Err(fail("must not contain \"..\"".into()));
    }
    match kind {
        NameKind::Group | NameKind::ProfileId | NameKind::TokenName => {
            if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                return Err(fail("must start with a letter or digit".into()));
            }
        }
        NameKind::DeviceId => {
            if !is_id(DEVICE_ID_PREFIX, value) {
                return Err(fail(format!("is not {}", kind.describe())));
            }
        }
        NameKind::UserKey => {
            if value == "." {
                return Err(fail("must not be \".\"".into()));
            }
        }
        NameKind::VariableName => {}
    }
    Ok(())
}

/// Checks `value` as a server-made id with `prefix` (e.g. `enr_` for an enrollment token's id):
/// the prefix, then 26 lowercase base32 characters (see [`crate::secret::id`]).
pub fn check_id(prefix: &str, field: &str, value: &str) -> Result<(), FieldError> {
    if is_id(prefix, value) {
        return Ok(());
    }
    Err(FieldError {
        line: 0,
        column: 0,
        field: Some(clip(field, 128)),
        message: format!(
            "is not an id made by the server: {} and {ID_BODY_LEN} characters a-z, 2-7",
            clip(prefix, 16)
        ),
    })
}

/// One character for a message: `'x'` when it is visible, else its code point (`U+0000`).
fn show(c: char) -> String {
    if c == ' ' {
        "a space".to_owned()
    } else if c.is_ascii_graphic() || (c.is_alphanumeric() && !c.is_control() && !is_invisible(c)) {
        format!("'{c}'")
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

fn is_id(prefix: &str, value: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|body| {
        body.len() == ID_BODY_LEN && body.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(kind: NameKind, value: &str) {
        if let Err(e) = check(kind, "f", value) {
            panic!("{kind:?} {value:?} was refused: {e}");
        }
    }

    /// Refused, with the field named, a short message, and the message containing `needle`.
    fn refused(kind: NameKind, value: &str, needle: &str) {
        let e = check(kind, "users[3]", value)
            .err()
            .unwrap_or_else(|| panic!("{kind:?} {value:?} was accepted"));
        assert_eq!(e.field.as_deref(), Some("users[3]"), "{value:?}");
        assert_eq!((e.line, e.column), (0, 0));
        assert!(
            e.message.contains(needle),
            "{kind:?} {value:?}: {:?} lacks {needle:?}",
            e.message
        );
        assert!(e.message.len() < 200, "the value is not echoed back");
    }

    #[test]
    fn good_names_pass() {
        ok(NameKind::Group, "office");
        ok(NameKind::Group, "Berlin-2.floor_3");
        ok(NameKind::Group, &"g".repeat(64));
        ok(NameKind::ProfileId, "bsi-m5.57");
        ok(NameKind::TokenName, "ci-bot");
        ok(NameKind::UserKey, "alice");
        ok(NameKind::UserKey, "EXAMPLE\\alice");
        ok(NameKind::UserKey, "alice@example.org");
        ok(NameKind::UserKey, "jürgen");
        ok(NameKind::UserKey, "o.brien_2-x");
        ok(NameKind::UserKey, &"ü".repeat(256));
        ok(NameKind::VariableName, "user.email");
        ok(NameKind::VariableName, "raw.thunderbird");
        ok(NameKind::VariableName, "mail.incoming_port");
        ok(NameKind::DeviceId, "dev_abcdefghijklmnopqrstuvwxyz");
        ok(NameKind::DeviceId, "dev_234567abcdefghijklmnopqrst");
    }

    #[test]
    fn path_tricks_quotes_and_control_characters_are_refused() {
        refused(NameKind::Group, "../etc", "'/'");
        refused(NameKind::Group, "a/b", "'/'");
        refused(NameKind::Group, "a\\b", "'\\'");
        refused(NameKind::Group, "a\"b", "'\"'");
        refused(NameKind::Group, "a'b", "'''");
        refused(NameKind::Group, "a\0b", "U+0000");
        refused(NameKind::Group, "a b", "a space");
        refused(NameKind::Group, "a..b", "\"..\"");
        refused(NameKind::Group, "-leading", "start with");
        refused(NameKind::Group, ".hidden", "start with");
        refused(NameKind::Group, "grüppe", "'ü'");
        refused(NameKind::ProfileId, "a%2e%2e", "'%'");
        refused(NameKind::TokenName, "name\n", "U+000A");
        refused(NameKind::UserKey, "../root", "'/'");
        refused(NameKind::UserKey, "..\\root", "\"..\"");
        refused(NameKind::UserKey, ".", "\".\"");
        refused(NameKind::UserKey, "al'ice", "'''");
        refused(NameKind::UserKey, "al\"ice", "'\"'");
        refused(NameKind::UserKey, "al`ice", "'`'");
        refused(NameKind::UserKey, "a\u{0}", "U+0000");
        refused(NameKind::UserKey, "a\nb", "U+000A");
        refused(NameKind::UserKey, "a\u{7f}", "U+007F");
        refused(NameKind::UserKey, "two words", "a space");
        refused(NameKind::UserKey, "no\u{a0}break", "U+00A0");
        refused(NameKind::UserKey, "admin\u{202e}txt", "U+202E");
        refused(NameKind::UserKey, "ad\u{200b}min", "U+200B");
        refused(NameKind::UserKey, "\u{feff}alice", "U+FEFF");
        refused(NameKind::VariableName, "User.Email", "'U'");
        refused(NameKind::VariableName, "user email", "a space");
        refused(NameKind::VariableName, "user..email", "\"..\"");
        refused(NameKind::VariableName, "{{user.email}}", "'{'");
        refused(NameKind::DeviceId, "dev_short", "not an id");
        refused(NameKind::DeviceId, "dev_ABCDEFGHIJKLMNOPQRSTUVWXYZ", "'A'");
        refused(
            NameKind::DeviceId,
            "dev_abcdefghijklmnopqrstuvw1",
            "not an id",
        );
        refused(
            NameKind::DeviceId,
            "enr_abcdefghijklmnopqrstuvwxyz",
            "not an id",
        );
        refused(NameKind::DeviceId, "../abcdefghijklmnopqrstuvwxyz", "'.'");
    }

    #[test]
    fn empty_and_huge_values_are_refused_without_echo() {
        for kind in [
            NameKind::Group,
            NameKind::ProfileId,
            NameKind::TokenName,
            NameKind::UserKey,
            NameKind::VariableName,
            NameKind::DeviceId,
        ] {
            refused(kind, "", "empty");
            refused(kind, &"a".repeat(1_000_000), "longer than");
            refused(kind, &"a".repeat(kind.max_len() + 1), "longer than");
        }
        // Characters, not bytes, are counted: 257 two-byte characters are too many.
        refused(NameKind::UserKey, &"ü".repeat(257), "longer than 256");
    }

    #[test]
    fn a_huge_field_name_is_clipped_too() {
        let field = "f".repeat(10_000);
        let e = check(NameKind::Group, &field, "").unwrap_err();
        assert!(e.field.is_some_and(|f| f.len() < 200));
    }

    #[test]
    fn other_ids_are_checked_with_their_prefix() {
        check_id("enr_", "id", "enr_abcdefghijklmnopqrstuvwxyz").unwrap();
        for bad in [
            "dev_abcdefghijklmnopqrstuvwxyz",
            "enr_abcdefghijklmnopqrstuvwxy",
            "enr_../efghijklmnopqrstuvwxyz",
            "enr_abcdefghijklmnopqrstuvwx\0",
            "",
        ] {
            let e = check_id("enr_", "id", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("id"));
            assert!(e.message.contains("enr_"), "{}", e.message);
        }
    }

    proptest! {
        /// Whatever a client sends, checking never panics, and an accepted name of any kind
        /// holds none of the characters that break paths, quoting or logs.
        #[test]
        fn accepted_names_are_safe(value in "\\PC{0,40}|[a-z./\\\\\"' \0-]{0,12}") {
            for kind in [NameKind::Group, NameKind::UserKey, NameKind::VariableName, NameKind::DeviceId] {
                if check(kind, "f", &value).is_ok() {
                    prop_assert!(!value.is_empty());
                    prop_assert!(!value.contains(".."));
                    prop_assert!(!value.contains(['/', '"', '\'', '\0', ' ']));
                    prop_assert!(!value.chars().any(char::is_control));
                }
            }
        }
    }
}
