//! Strict JSON request bodies: unknown fields are refused by the types (`deny_unknown_fields`),
//! and any error names the line, the column and the field path (`items[3].event.status`).
//!
//! The path comes from `serde_path_to_error`. It stops short inside an internally tagged enum
//! (serde buffers such a value before reading it, e.g. each item of a report batch), so for a
//! data error whose path ends at an object or array, the culprit is looked for below it: the key
//! an "unknown field" message names, or the value an "unknown variant" or "invalid type/value"
//! message quotes. Only a culprit found at exactly one place refines the path (and the line and
//! column then point at it); otherwise the shorter path stands, never a guess.
//!
//! Bounds: the caller limits the body's size (it answers 413); `serde_json` limits nesting to
//! 128 levels; what the error echoes back (path, message) is clipped and its control
//! characters escaped.

use postwarden_wire::v1::FieldError;
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use serde_json::Value;
use serde_path_to_error::Segment;

use crate::text::clip;

/// The longest field path an error carries, in bytes.
const MAX_FIELD: usize = 256;
/// The longest message an error carries, in bytes (serde's messages may quote the input).
const MAX_MESSAGE: usize = 300;

/// Parses a JSON request body strictly; on error returns a [`FieldError`] with the line and
/// column (1-based; the column counts bytes, as `serde_json` does), the field path (e.g.
/// `items[3].event.status`; `None` at the top level) and serde's message.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => value,
        Err(e) => {
            let steps = steps(e.path());
            let display = e.path().to_string();
            return Err(explain(body, steps, &display, &e.into_inner()));
        }
    };
    de.end().map_err(|e| FieldError {
        line: e.line() as u64,
        column: e.column() as u64,
        field: None,
        message: message_of(&e),
    })?;
    refuse_nul(body)?;
    Ok(value)
}

/// JSON may carry a NUL character (`\u0000`); no text column of PostgreSQL can store one, and
/// nothing a client sends needs one. The first string (or key) holding one is named.
fn refuse_nul(body: &[u8]) -> Result<(), FieldError> {
    let Some(at) = body
        .windows(6)
        .position(|w| w.eq_ignore_ascii_case(b"\\u0000"))
    else {
        return Ok(());
    };
    // An escaped backslash before `u0000` is text, not a NUL: decide on the parsed document.
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(());
    };
    let Some(path) = nul_path(&doc, String::new()) else {
        return Ok(());
    };
    let before = &body[..at];
    let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let column = (before.len()
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1)) as u64
        + 1;
    Err(FieldError {
        line,
        column,
        message: "contains a NUL character, which is not accepted".to_owned(),
        field: Some(clip(&path, MAX_FIELD)),
    })
}

fn nul_path(v: &serde_json::Value, here: String) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0').then_some(here),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, format!("{here}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let path = if here.is_empty() {
                k.clone()
            } else {
                format!("{here}.{k}")
            };
            if k.contains('\0') {
                return Some(path);
            }
            nul_path(item, path)
        }),
        _ => None,
    }
}

/// One step of a path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
    /// An enum variant: the key of an externally tagged variant, or nothing for a unit variant
    /// written as a string.
    Variant(String),
}

fn steps(path: &serde_path_to_error::Path) -> Option<Vec<Step>> {
    path.iter()
        .map(|s| match s {
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Enum { variant } => Some(Step::Variant(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// A path as `serde_path_to_error` writes it: `items[3].event.status`.
fn render_path(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Key(k) | Step::Variant(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
        }
    }
    out
}

/// serde's message without its own " at line L column C" (the error carries those), clipped.
fn message_of(e: &serde_json::Error) -> String {
    clip(&bare(e), MAX_MESSAGE)
}

fn explain(
    body: &[u8],
    steps: Option<Vec<Step>>,
    display: &str,
    e: &serde_json::Error,
) -> FieldError {
    let message = bare(e);
    if e.classify() == Category::Data {
        if let Some(found) = steps.as_deref().and_then(|s| refine(body, s, &message)) {
            let (line, column) = position(body, found.offset);
            return FieldError {
                line,
                column,
                field: Some(clip(&render_path(&found.path), MAX_FIELD)),
                message: clip(&message, MAX_MESSAGE),
            };
        }
    }
    FieldError {
        line: e.line() as u64,
        column: e.column() as u64,
        field: (display != ".").then(|| clip(display, MAX_FIELD)),
        message: clip(&message, MAX_MESSAGE),
    }
}

/// serde's message without the position `Display` appends.
fn bare(e: &serde_json::Error) -> String {
    let mut text = e.to_string();
    if e.line() > 0 {
        if let Some(cut) = text.rfind(" at line ") {
            text.truncate(cut);
        }
    }
    text
}

/// What the message says is wrong, to look for below the path.
#[derive(Debug, PartialEq, Eq)]
enum Culprit {
    /// `unknown field `x``: an object key.
    Key(String),
    /// `unknown variant `x``: a string value.
    Variant(String),
    /// `invalid type: integer `3`, expected …`: a scalar as serde renders it.
    Rendered(String),
}

impl Culprit {
    fn from_message(message: &str) -> Option<Culprit> {
        if let Some(rest) = message.strip_prefix("unknown field `") {
            return Some(Culprit::Key(rest[..rest.find("`, ")?].to_owned()));
        }
        if let Some(rest) = message.strip_prefix("unknown variant `") {
            return Some(Culprit::Variant(rest[..rest.find("`, ")?].to_owned()));
        }
        for prefix in ["invalid type: ", "invalid value: "] {
            if let Some(rest) = message.strip_prefix(prefix) {
                return Some(Culprit::Rendered(
                    rest[..rest.rfind(", expected ")?].to_owned(),
                ));
            }
        }
        None
    }

    fn is_value(&self, v: &Value) -> bool {
        match self {
            Culprit::Key(_) => false,
            Culprit::Variant(x) => v.as_str() == Some(x.as_str()),
            Culprit::Rendered(x) => render_scalar(v).is_some_and(|r| r == *x),
        }
    }
}

/// A scalar as serde's `Unexpected` (through `serde_json`) writes it in a message.
fn render_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(format!("string {s:?}")),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(format!("integer `{n}`")),
        Value::Bool(b) => Some(format!("boolean `{b}`")),
        Value::Null => Some("null".to_owned()),
        Value::Number(_) | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Where the culprit is: its full path (keys and indices only) and its byte offset (a key's
/// opening quote, or a value's first byte).
struct Found {
    path: Vec<Step>,
    offset: usize,
}

fn refine(body: &[u8], steps: &[Step], message: &str) -> Option<Found> {
    let culprit = Culprit::from_message(message)?;
    if let (Culprit::Key(k), Some(Step::Key(last))) = (&culprit, steps.last()) {
        if k == last {
            return None; // the path already ends at the unknown key
        }
    }
    let root: Value = serde_json::from_slice(body).ok()?;
    // Walk down the path; a variant step descends only where the variant is a key.
    let mut node = &root;
    let mut path = Vec::with_capacity(steps.len());
    for s in steps {
        match (s, node) {
            (Step::Index(i), Value::Array(items)) => {
                node = items.get(*i)?;
                path.push(Step::Index(*i));
            }
            (Step::Key(k) | Step::Variant(k), Value::Object(map)) if map.contains_key(k) => {
                node = map.get(k)?;
                path.push(Step::Key(k.clone()));
            }
            (Step::Variant(_), _) => {}
            _ => return None,
        }
    }
    if !(node.is_object() || node.is_array()) {
        return None; // the path already names a single value
    }
    let mut hits = Vec::new();
    search(node, &culprit, &mut path, &mut hits);
    let [(path, at_key)] = <[(Vec<Step>, bool); 1]>::try_from(hits).ok()?;
    let offset = locate(body, &path, at_key)?;
    Some(Found { path, offset })
}

/// Collects where `culprit` is below `node` (stopping at two: one is all that is used).
fn search(
    node: &Value,
    culprit: &Culprit,
    path: &mut Vec<Step>,
    hits: &mut Vec<(Vec<Step>, bool)>,
) {
    if hits.len() > 1 {
        return;
    }
    match node {
        Value::Object(map) => {
            for (k, v) in map {
                path.push(Step::Key(k.clone()));
                if matches!(culprit, Culprit::Key(x) if x == k) {
                    hits.push((path.clone(), true));
                }
                search(v, culprit, path, hits);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(Step::Index(i));
                search(v, culprit, path, hits);
                path.pop();
            }
        }
        scalar => {
            if culprit.is_value(scalar) {
                hits.push((path.clone(), false));
            }
        }
    }
}

/// The byte offset of the value at `path` in `body` (valid JSON), or of its key's opening quote
/// when `at_key`.
fn locate(body: &[u8], path: &[Step], at_key: bool) -> Option<usize> {
    let mut c = Cursor { b: body, i: 0 };
    for (n, step) in path.iter().enumerate() {
        let last = n + 1 == path.len();
        match step {
            Step::Index(k) => {
                c.eat(b'[')?;
                for _ in 0..*k {
                    c.skip_value()?;
                    c.eat(b',')?;
                }
            }
            Step::Key(k) | Step::Variant(k) => {
                c.eat(b'{')?;
                loop {
                    c.ws();
                    let start = c.i;
                    if c.b.get(start) != Some(&b'"') {
                        return None;
                    }
                    let end = c.string_end(start)?;
                    let key: String = serde_json::from_slice(&c.b[start..end]).ok()?;
                    c.i = end;
                    c.eat(b':')?;
                    if key == *k {
                        if last && at_key {
                            return Some(start);
                        }
                        break;
                    }
                    c.skip_value()?;
                    c.eat(b',')?;
                }
            }
        }
    }
    c.ws();
    Some(c.i)
}

/// A cursor over JSON text already known to be valid.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.i) == Some(&byte)).then(|| self.i += 1)
    }

    /// The offset just past the string starting at `start` (its opening quote).
    fn string_end(&self, start: usize) -> Option<usize> {
        let mut i = start + 1;
        loop {
            match *self.b.get(i)? {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        self.ws();
        match *self.b.get(self.i)? {
            b'"' => self.i = self.string_end(self.i)?,
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.b.get(self.i)? {
                        b'"' => {
                            self.i = self.string_end(self.i)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while let Some(c) = self.b.get(self.i) {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
            }
        }
        Some(())
    }
}

/// 1-based line and byte column of `offset`, as `serde_json` counts them.
fn position(body: &[u8], offset: usize) -> (u64, u64) {
    let before = &body[..offset.min(body.len())];
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    (line as u64, (before.len() - line_start + 1) as u64)
}

#[cfg(test)]
mod tests;
