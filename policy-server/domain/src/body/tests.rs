use super::*;
use postwarden_wire::v1::{EnrollRequest, ReportBatch, UsersUpdate};
use proptest::prelude::*;
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

/// The 1-based line and byte column where `needle` first starts in `body`.
fn at(body: &str, needle: &str) -> (u64, u64) {
    let offset = body
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the body"));
    position(body.as_bytes(), offset)
}

/// A report batch with one event item, laid out over several lines; `event` is the event's
/// members and `extra` more members of the item.
fn batch(event: &str, extra: &str) -> String {
    format!(
        r#"{{
  "schema": "postwarden.report-batch/v1",
  "items": [
    {{
      "id": "67e55044-10b1-426f-9247-bb680e5fe0c8",
      "at": "2026-11-28T10:00:00Z",
      "kind": "event",{extra}
      "event": {{
        "control": "mail-check-interval", "client": "thunderbird", "user": "alice",
        "scope": "p", "target": "t", "old": 1, "new": 2, "repaired": true,
        {event}
      }}
    }}
  ]
}}"#
    )
}

#[test]
fn a_valid_batch_parses() {
    let b = batch(r#""status": "repaired""#, "");
    let parsed: ReportBatch = json(b.as_bytes()).unwrap();
    assert_eq!(parsed.items.len(), 1);
}

#[test]
fn errors_name_the_field_path_and_place() {
    let e = json::<Outer>(b"{\"items\": [{\"status\": \"a\"},\n {\"colour\": 1}]}").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("items[1].colour"));
    assert!(e.message.contains("colour"), "{}", e.message);
    assert_eq!(e.line, 2);
    let e = json::<Outer>(b"{\"items\": [{\"status\": 5}]}").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("items[0].status"));
    assert_eq!(e.message, "invalid type: integer `5`, expected a string");
    let e = json::<EnrollRequest>(
        br#"{"token": "t", "hostname": "h", "os": "linux", "agent_version": "1", "users": ["a", 3]}"#,
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("users[1]"));
    let e = json::<UsersUpdate>(br#"{"users": [], "device": "dev_x"}"#).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("device"));
    assert!(
        e.message.starts_with("unknown field `device`"),
        "{}",
        e.message
    );
}

#[test]
fn a_bad_status_inside_a_batch_item_is_named_and_located() {
    // Batch items are an internally tagged enum: serde's own path stops at `items[0]`.
    let b = batch(r#""status": "bogus""#, "");
    let e = json::<ReportBatch>(b.as_bytes()).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("items[0].event.status"), "{e:?}");
    assert!(
        e.message.starts_with("unknown variant `bogus`"),
        "{}",
        e.message
    );
    assert_eq!((e.line, e.column), at(&b, r#""bogus""#));
}

#[test]
fn unknown_fields_inside_a_batch_item_are_named_and_located() {
    let b = batch(r#""status": "repaired", "extra": 2"#, "");
    let e = json::<ReportBatch>(b.as_bytes()).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("items[0].event.extra"), "{e:?}");
    assert_eq!((e.line, e.column), at(&b, r#""extra""#));

    let b = batch(r#""status": "repaired""#, r#" "colour": "red","#);
    let e = json::<ReportBatch>(b.as_bytes()).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("items[0].colour"), "{e:?}");
    assert_eq!((e.line, e.column), at(&b, r#""colour""#));
}

#[test]
fn a_wrong_type_inside_a_batch_item_is_named() {
    let b = batch(r#""status": "repaired", "notified": "yes""#, "");
    let e = json::<ReportBatch>(b.as_bytes()).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("items[0].event.notified"), "{e:?}");
    assert_eq!((e.line, e.column), at(&b, r#""yes""#));
}

#[test]
fn an_ambiguous_culprit_keeps_the_shorter_path() {
    // `bogus` is both the bad status and the (valid) scope: which one serde refused cannot be
    // told from the message, so the path stays at the item.
    let b = batch(r#""status": "bogus""#, "").replace(r#""scope": "p""#, r#""scope": "bogus""#);
    let e = json::<ReportBatch>(b.as_bytes()).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("items[0]"), "{e:?}");
    assert!(e.line >= 1);
}

#[test]
fn errors_that_are_not_about_a_quoted_value_keep_serdes_path() {
    let b = batch(r#""status": "repaired""#, "").replace("67e55044", "nope");
    let e = json::<ReportBatch>(b.as_bytes()).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("items[0]"), "{e:?}");
    assert!(e.message.contains("UUID"), "{}", e.message);
    let e = json::<ReportBatch>(br#"{"schema": "postwarden.report-batch/v9", "items": []}"#)
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("schema"));
    assert!(e.message.contains("unsupported schema"), "{}", e.message);
    let e = json::<ReportBatch>(
        br#"{"schema": "postwarden.report-batch/v1", "items": [{"kind": "weird"}]}"#,
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("items[0].kind"));
}

#[test]
fn truncated_trailing_empty_and_broken_bodies_fail_cleanly() {
    let e = json::<Outer>(b"{\"items\": [").unwrap_err();
    assert!(e.message.contains("EOF"), "{}", e.message);
    assert_eq!(e.line, 1);
    assert!(!e.message.contains("at line"), "{}", e.message);
    let e = json::<Outer>(b"{\"items\": []} trailing").unwrap_err();
    assert!(e.message.contains("trailing"), "{}", e.message);
    assert_eq!(e.field, None);
    let e = json::<Outer>(b"").unwrap_err();
    assert!(e.message.contains("EOF"), "{}", e.message);
    let e = json::<Outer>(b"{\"items\": [{\"status\": \"\xff\xfe\"}]}").unwrap_err();
    assert!(e.message.contains("unicode"), "{}", e.message);
    let e = json::<Outer>(b"\xef\xbb\xbf{\"items\": []}").unwrap_err();
    assert_eq!((e.line, e.column), (1, 1), "{e:?}");
    assert!(json::<Outer>(b"{\"items\": [{\"status\": \"ok\"}]}").is_ok());
}

#[test]
fn huge_and_hostile_input_is_clipped_in_the_error() {
    let huge = format!("{{\"items\": [{{\"status\": {}}}]}}", "9".repeat(100_000));
    let e = json::<Outer>(huge.as_bytes()).unwrap_err();
    assert!(e.message.len() <= MAX_MESSAGE + 4, "{}", e.message.len());

    let key = "k".repeat(100_000);
    let body = format!("{{\"items\": [], \"{key}\": 1}}");
    let e = json::<Outer>(body.as_bytes()).unwrap_err();
    assert!(
        e.field.as_ref().is_some_and(|f| f.len() <= MAX_FIELD + 4),
        "{e:?}"
    );
    assert!(e.message.len() <= MAX_MESSAGE + 4);

    // A key with NUL, a line break and a bidi override comes back escaped.
    let e = json::<Outer>(b"{\"items\": [], \"a\\u0000b\\n\\u202e\": 1}").unwrap_err();
    let field = e.field.unwrap();
    assert_eq!(field, "a\\0b\\n\\u{202e}");
    assert!(
        !e.message.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{}",
        e.message
    );

    // Nesting deeper than serde_json's limit is an error, not a stack overflow.
    let deep = format!(
        "{{\"items\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = json::<Outer>(deep.as_bytes()).unwrap_err();
    assert!(e.field.is_some_and(|f| f.starts_with("items[0]")));
    let e = json::<serde_json::Value>(deep.as_bytes()).unwrap_err();
    assert!(e.message.contains("recursion limit"), "{}", e.message);
}

#[test]
fn culprits_are_read_from_serdes_messages() {
    assert_eq!(
        Culprit::from_message("unknown field `a`, b`, expected `x`"),
        Some(Culprit::Key("a".into()))
    );
    assert_eq!(
        Culprit::from_message("unknown field `z`, there are no fields"),
        Some(Culprit::Key("z".into()))
    );
    assert_eq!(
        Culprit::from_message("unknown variant `v`, expected `a` or `b`"),
        Some(Culprit::Variant("v".into()))
    );
    assert_eq!(
        Culprit::from_message("invalid type: string \"x, expected y\", expected u32"),
        Some(Culprit::Rendered("string \"x, expected y\"".into()))
    );
    assert_eq!(Culprit::from_message("missing field `status`"), None);
    assert_eq!(Culprit::from_message("unknown field `unterminated"), None);
}

#[test]
fn locate_finds_keys_and_values_past_tricky_strings() {
    let body = r#" { "a\"}": [1, {"x": "]}\\"}, [ ] ], "b" : { "c": [10, 20, "t"] } } "#;
    let b = body.as_bytes();
    let p = |steps: &[Step], at_key| locate(b, steps, at_key).map(|o| &body[o..o + 4]);
    assert_eq!(p(&[Step::Key("b".into())], true), Some(r#""b" "#));
    assert_eq!(
        p(
            &[Step::Key("b".into()), Step::Key("c".into()), Step::Index(2)],
            false
        ),
        Some(r#""t"]"#)
    );
    assert_eq!(
        p(
            &[
                Step::Key("a\"}".into()),
                Step::Index(1),
                Step::Key("x".into())
            ],
            false
        ),
        Some(r#""]}\"#)
    );
    assert_eq!(
        p(&[Step::Key("a\"}".into()), Step::Index(2)], false),
        Some("[ ] ")
    );
    assert_eq!(p(&[Step::Key("nope".into())], false), None);
    assert_eq!(
        p(
            &[Step::Key("b".into()), Step::Key("c".into()), Step::Index(9)],
            false
        ),
        None
    );
    assert_eq!(position(b"ab\ncd", 4), (2, 2));
    assert_eq!(position(b"", 0), (1, 1));
}

#[test]
fn a_nul_character_is_refused_by_field() {
    let body = batch(r#""status": "repaired""#, "")
        .replace("\"user\": \"alice\"", "\"user\": \"al\\u0000ice\"");
    assert!(body.contains("\\u0000"), "{body}");
    let e = json::<ReportBatch>(body.as_bytes()).unwrap_err();
    assert!(e.field.as_deref().unwrap().ends_with(".user"), "{e:?}");
    assert!(e.message.contains("NUL"), "{e:?}");
    // An escaped backslash followed by `u0000` is text, not a NUL.
    let text = batch(r#""status": "repaired""#, "")
        .replace("\"user\": \"alice\"", "\"user\": \"a\\\\u0000\"");
    assert!(json::<ReportBatch>(text.as_bytes()).is_ok(), "{text}");
}

proptest! {
    /// Any bytes at all: an error or a value, never a panic, and the error is bounded.
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = json::<ReportBatch>(&body) {
            prop_assert!(e.message.len() <= MAX_MESSAGE + 4);
        }
    }

    /// A valid batch with one byte changed: the same.
    #[test]
    fn mutated_batches_never_panic(pos in 0usize..600, byte in any::<u8>()) {
        let mut body = batch(r#""status": "repaired""#, "").into_bytes();
        let i = pos % body.len();
        body[i] = byte;
        if let Err(e) = json::<ReportBatch>(&body) {
            prop_assert!(e.field.as_ref().is_none_or(|f| f.len() <= MAX_FIELD + 4));
            prop_assert!(!e.message.is_empty());
        }
    }
}
