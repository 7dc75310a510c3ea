//! Names clients send: checked before anything is stored or looked up, each kind with its own
//! alphabet and length, and always refusing path tricks (`/`, `..`), quotes and control
//! characters, so a name is safe in a URL, a file name, a log line and a CSV cell.

use postwarden_wire::v1::FieldError;

/// What a name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A device group: 1–64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
    Group,
    /// A profile id, as in the profile's `id`: like a group.
    ProfileId,
    /// An admin token's name: like a group.
    TokenName,
    /// A local login name as the agent reports it (`alice`, `EXAMPLE\alice`,
    /// `alice@example.org`): 1–256 printable characters without spaces, quotes or `/`.
    UserKey,
    /// A template variable (`user.email`) or a control id: 1–64 of `[a-z0-9._-]`.
    VariableName,
    /// A server-made id: a short lowercase prefix, `_`, then 26 base32 characters.
    DeviceId,
}

impl NameKind {
    fn max_len(self) -> usize {
        match self {
            NameKind::UserKey => 256,
            NameKind::DeviceId => 40,
            _ => 64,
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
            NameKind::DeviceId => "an id made by the server, such as dev_ and 26 characters",
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
                    && !matches!(c, '"' | '\'' | '/' | '`' | '\u{feff}')
            }
            NameKind::VariableName => {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            }
            NameKind::DeviceId => c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        }
    }
}

/// Checks `value` as a name of `kind`; the error names `field`.
pub fn check(kind: NameKind, field: &str, value: &str) -> Result<(), FieldError> {
    let fail = |message: String| FieldError {
        line: 0,
        column: 0,
        field: Some(field.to_owned()),
        message,
    };
    if value.is_empty() {
        return Err(fail("must not be empty".into()));
    }
    if value.len() > kind.max_len() {
        return Err(fail(format!(
            "is {} bytes long; at most {} are allowed",
            value.len(),
            kind.max_len()
        )));
    }
    if let Some(c) = value.chars().find(|c| !kind.allows(*c)) {
        return Err(fail(format!(
            "contains {c:?}; allowed are {}",
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
            let ok = value.split_once('_').is_some_and(|(prefix, rest)| {
                (2..=8).contains(&prefix.len())
                    && prefix.chars().all(|c| c.is_ascii_lowercase())
                    && rest.len() == 26
                    && rest.chars().all(|c| matches!(c, 'a'..='z' | '2'..='7'))
            });
            if !ok {
                return Err(fail(format!("is not {}", kind.describe())));
            }
        }
        NameKind::UserKey | NameKind::VariableName => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_pass() {
        for (kind, v) in [
            (NameKind::Group, "office"),
            (NameKind::Group, "Berlin-2.floor_3"),
            (NameKind::ProfileId, "bsi-m5.57"),
            (NameKind::UserKey, "alice"),
            (NameKind::UserKey, "EXAMPLE\\alice"),
            (NameKind::UserKey, "alice@example.org"),
            (NameKind::UserKey, "jürgen"),
            (NameKind::VariableName, "user.email"),
            (NameKind::VariableName, "raw.thunderbird"),
            (NameKind::DeviceId, "dev_abcdefghijklmnopqrstuvwxyz"),
            (NameKind::DeviceId, "enr_234567abcdefghijklmnopqrst"),
        ] {
            check(kind, "f", v).unwrap_or_else(|e| panic!("{kind:?} {v:?}: {e}"));
        }
    }

    #[test]
    fn abuse_is_refused_and_the_field_named() {
        let huge = "a".repeat(100_000);
        for (kind, v) in [
            (NameKind::Group, "../etc"),
            (NameKind::Group, "a/b"),
            (NameKind::Group, "a\"b"),
            (NameKind::Group, "a\0b"),
            (NameKind::Group, ""),
            (NameKind::Group, "-leading"),
            (NameKind::Group, ".hidden"),
            (NameKind::Group, "a..b"),
            (NameKind::Group, huge.as_str()),
            (NameKind::UserKey, "../root"),
            (NameKind::UserKey, "al'ice"),
            (NameKind::UserKey, "al\"ice"),
            (NameKind::UserKey, "a\u{0}"),
            (NameKind::UserKey, "a\nb"),
            (NameKind::UserKey, "two words"),
            (NameKind::UserKey, huge.as_str()),
            (NameKind::VariableName, "User.Email"),
            (NameKind::VariableName, "user email"),
            (NameKind::DeviceId, "dev_short"),
            (NameKind::DeviceId, "dev_ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            (NameKind::DeviceId, "../abcdefghijklmnopqrstuvwxyz"),
        ] {
            let e = check(kind, "users[3]", v).expect_err(v);
            assert_eq!(e.field.as_deref(), Some("users[3]"));
            assert!(!e.message.is_empty());
            assert!(e.message.len() < 200, "a huge value is not echoed back");
        }
    }
}
