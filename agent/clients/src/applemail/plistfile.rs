//! Preference plists as cfprefsd keeps them: a dictionary at the root, binary (`bplist00`) or
//! XML on input, binary on output. Pure: bytes in, bytes out; the store adds file names.
//!
//! Unknown keys are kept, in their order: the dictionary is read and written whole, and only the
//! keys a control names are changed.

use plist::{Dictionary, Value};

/// The encoding a plist was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Binary,
    Xml,
}

/// A preference file's content.
#[derive(Debug, Clone, PartialEq)]
pub struct PlistDoc {
    pub root: Dictionary,
    pub format: Format,
}

/// Why bytes are not a preference plist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlistError(pub String);

/// Says in words what a `plist::Error` means. The crate's `Display` prints its internal error
/// kind with `Debug` (`ExpectedEndOfEventStream { found: String } (offset 4)`), which is no
/// message for a user: the kind's name becomes words, a few common ones a sentence, and the
/// offset a byte position.
fn describe(e: &plist::Error) -> String {
    let raw = e.to_string();
    let (kind, offset) = match raw.rsplit_once(" (offset ") {
        Some((kind, rest)) => (kind, rest.strip_suffix(')')),
        None => (raw.as_str(), None),
    };
    let name = kind.split([' ', '(', '{']).next().unwrap_or(kind);
    let text = match name {
        "UnexpectedEof" => "the data ends too early (a truncated file)".to_owned(),
        "ExpectedEndOfEventStream" => {
            "more data follows where the property list should end (is it a property list?)"
                .to_owned()
        }
        "UnexpectedEventType" => "a value of another type than the format requires here".to_owned(),
        "InvalidMagic" => "the header is not that of a binary property list".to_owned(),
        "InvalidXmlSyntax" => "the XML is not well-formed".to_owned(),
        // The bytes are read from memory: an I/O error is a seek or read out of bounds.
        "Io" => "an offset points outside the data (a truncated or corrupt file)".to_owned(),
        other => words(other),
    };
    match offset {
        Some(o) => format!("{text}, at byte {o}"),
        None => text,
    }
}

/// `InvalidTrailerObjectOffsetSize` → `invalid trailer object offset size`.
fn words(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "an array",
        Value::Dictionary(_) => "a dictionary",
        Value::Boolean(_) => "a boolean",
        Value::Data(_) => "data",
        Value::Date(_) => "a date",
        Value::Real(_) => "a real number",
        Value::Integer(_) => "an integer",
        Value::String(_) => "a string",
        Value::Uid(_) => "a UID",
        _ => "an unknown value",
    }
}

impl PlistDoc {
    pub fn empty() -> PlistDoc {
        PlistDoc {
            root: Dictionary::new(),
            format: Format::Binary,
        }
    }

    /// Parses a binary or XML plist whose root is a dictionary. Corrupt, truncated or empty
    /// input is an error; nothing is guessed.
    pub fn parse(bytes: &[u8]) -> Result<PlistDoc, PlistError> {
        if bytes.is_empty() {
            return Err(PlistError("empty file: not a property list".into()));
        }
        let format = if bytes.starts_with(b"bplist") {
            Format::Binary
        } else {
            Format::Xml
        };
        let value = Value::from_reader(std::io::Cursor::new(bytes)).map_err(|e| {
            let why = describe(&e);
            PlistError(match format {
                Format::Binary => format!("not a valid binary property list: {why}"),
                Format::Xml => format!("not a valid XML property list: {why}"),
            })
        })?;
        match value {
            Value::Dictionary(root) => Ok(PlistDoc { root, format }),
            other => Err(PlistError(format!(
                "the root is {}; a preference file's root is a dictionary",
                kind(&other)
            ))),
        }
    }

    /// The binary encoding cfprefsd writes.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = Vec::new();
        Value::Dictionary(self.root.clone())
            .to_writer_binary(&mut out)
            .expect("writing to memory");
        out
    }

    /// The value at `key`, or at `key` → `entry` inside a dictionary value.
    pub fn get(&self, key: &str, entry: Option<&str>) -> Option<&Value> {
        let v = self.root.get(key)?;
        match entry {
            None => Some(v),
            Some(e) => v.as_dictionary()?.get(e),
        }
    }

    /// Sets (`Some`) or removes (`None`) the value at `key` (→ `entry`). Setting an entry in a
    /// key that holds something other than a dictionary replaces it with a dictionary; removing
    /// the last entry removes the key.
    pub fn set(&mut self, key: &str, entry: Option<&str>, value: Option<Value>) {
        match (entry, value) {
            (None, Some(v)) => {
                self.root.insert(key.to_owned(), v);
            }
            (None, None) => {
                self.root.remove(key);
            }
            (Some(e), Some(v)) => {
                if self.root.get(key).and_then(Value::as_dictionary).is_none() {
                    self.root
                        .insert(key.to_owned(), Value::Dictionary(Dictionary::new()));
                }
                if let Some(d) = self.root.get_mut(key).and_then(Value::as_dictionary_mut) {
                    d.insert(e.to_owned(), v);
                }
            }
            (Some(e), None) => {
                let now_empty = match self.root.get_mut(key).and_then(Value::as_dictionary_mut) {
                    Some(d) => {
                        d.remove(e);
                        d.is_empty()
                    }
                    None => false,
                };
                if now_empty {
                    self.root.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
