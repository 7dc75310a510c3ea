//! `logins.json`, where Thunderbird keeps saved passwords (encrypted with `key4.db`).
//! Postwarden only counts and removes the entries of mail accounts; it never decrypts anything
//! and never reports a user name or password.

use serde_json::{Map, Value as Json};

/// URL schemes of saved mail-account passwords.
const MAIL_SCHEMES: &[&str] = &["pop3://", "imap://", "smtp://", "mailbox://", "ews://"];

#[derive(Debug, Clone, PartialEq)]
pub struct Logins {
    root: Map<String, Json>,
}

/// A `logins.json` that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct LoginsError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

fn is_mail(entry: &Json) -> bool {
    entry
        .get("hostname")
        .and_then(Json::as_str)
        .is_some_and(|h| MAIL_SCHEMES.iter().any(|s| h.starts_with(s)))
}

impl Logins {
    pub fn parse(file: &str, text: &str) -> Result<Logins, LoginsError> {
        let err = |line, column, message: String| LoginsError {
            file: file.to_owned(),
            line,
            column,
            message,
        };
        let v: Json = serde_json::from_str(text)
            .map_err(|e| err(e.line(), e.column(), format!("not valid JSON ({e})")))?;
        let Json::Object(root) = v else {
            return Err(err(1, 1, "the top level must be an object".into()));
        };
        if let Some(l) = root.get("logins") {
            if !l.is_array() {
                return Err(err(1, 1, "field `logins` must be an array".into()));
            }
        }
        Ok(Logins { root })
    }

    fn entries(&self) -> &[Json] {
        self.root
            .get("logins")
            .and_then(Json::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The server URLs of saved mail passwords, e.g. `pop3://pop.example.org`.
    pub fn mail_hosts(&self) -> Vec<String> {
        self.entries()
            .iter()
            .filter(|e| is_mail(e))
            .filter_map(|e| e.get("hostname").and_then(Json::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// Removes every saved mail password, keeping all other entries and fields.
    pub fn remove_mail(&mut self) -> usize {
        let Some(Json::Array(list)) = self.root.get_mut("logins") else {
            return 0;
        };
        let before = list.len();
        list.retain(|e| !is_mail(e));
        before - list.len()
    }

    pub fn render(&self) -> String {
        // Thunderbird writes logins.json compact; so do we.
        serde_json::to_string(&Json::Object(self.root.clone())).expect("JSON serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"{"nextId":4,"logins":[
        {"id":1,"hostname":"pop3://pop.example.test","encryptedUsername":"u","encryptedPassword":"p"},
        {"id":2,"hostname":"https://calendar.example.test","encryptedUsername":"u","encryptedPassword":"p"},
        {"id":3,"hostname":"smtp://smtp.example.test","encryptedUsername":"u","encryptedPassword":"p"}
    ],"potentiallyVulnerablePasswords":[],"version":3}"#;

    #[test]
    fn finds_and_removes_only_mail_passwords() {
        let mut l = Logins::parse("logins.json", TEXT).unwrap();
        assert_eq!(
            l.mail_hosts(),
            ["pop3://pop.example.test", "smtp://smtp.example.test"]
        );
        assert_eq!(l.remove_mail(), 2);
        let again = Logins::parse("logins.json", &l.render()).unwrap();
        assert!(again.mail_hosts().is_empty());
        assert!(again.render().contains("calendar.example.test"));
        assert!(again.render().contains("\"nextId\":4"));
    }

    #[test]
    fn corrupt_files_name_the_position() {
        let e = Logins::parse("/p/logins.json", "{\"logins\": [}").unwrap_err();
        assert!(e.to_string().starts_with("/p/logins.json:1:13:"), "{e}");
    }
}
