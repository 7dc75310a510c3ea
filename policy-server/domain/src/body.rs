//! Strict JSON request bodies: unknown fields are refused by the types (`deny_unknown_fields`),
//! and any error names the line, the column and the field path (`items[3].event.status`).

use postwarden_wire::v1::FieldError;
use serde::de::DeserializeOwned;

/// Parses `body` as `T`.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        FieldError {
            line: inner.line() as u64,
            column: inner.column() as u64,
            field: (path != ".").then_some(path),
            message: short(&inner.to_string()),
        }
    })?;
    de.end().map_err(|e| FieldError {
        line: e.line() as u64,
        column: e.column() as u64,
        field: None,
        message: short(&e.to_string()),
    })?;
    Ok(value)
}

/// serde's message, without its own "at line L column C" (the error carries those) and never
/// longer than 300 bytes (it may quote the input).
fn short(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    if message.len() <= 300 {
        return message.to_owned();
    }
    let mut end = 300;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        status: String,
    }

    #[test]
    fn errors_name_the_field_path_and_place() {
        let e =
            json::<Outer>(b"{\"items\": [{\"status\": \"a\"},\n {\"colour\": 1}]}").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[1].colour"));
        assert!(e.message.contains("colour"), "{}", e.message);
        assert_eq!(e.line, 2);
        let e = json::<Outer>(b"{\"items\": [{\"status\": 5}]}").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[0].status"));
        assert!(!e.message.contains("at line"));
    }

    #[test]
    fn truncated_trailing_and_huge_bodies_fail_cleanly() {
        let e = json::<Outer>(b"{\"items\": [").unwrap_err();
        assert!(e.message.contains("EOF"), "{}", e.message);
        let e = json::<Outer>(b"{\"items\": []} trailing").unwrap_err();
        assert!(e.message.contains("trailing"), "{}", e.message);
        let huge = format!("{{\"items\": [{{\"status\": {}}}]}}", "9".repeat(100_000));
        let e = json::<Outer>(huge.as_bytes()).unwrap_err();
        assert!(e.message.len() <= 304);
        assert!(json::<Outer>(b"{\"items\": [{\"status\": \"ok\"}]}").is_ok());
    }
}
