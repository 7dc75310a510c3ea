//! `Registry.pol` files: the registry half of a Group Policy object (the `PReg` format).
//!
//! The format is Microsoft's: [MS-GPREG] 2.2.1 "Registry Policy Message Syntax" and the Win32
//! documentation page "Registry Policy File Format". A file is
//!
//! ```text
//! "PReg" (50 52 65 67)  version 1 (u32 LE)  entry*
//! entry = "[" key NUL ";" value NUL ";" type(u32 LE) ";" size(u32 LE) ";" data[size] "]"
//! ```
//!
//! where every character (`[`, `;`, `]`, the key and value names) is one UTF-16LE code unit,
//! `key` is relative to the hive the file's folder stands for (`...\User\Registry.pol`:
//! `HKEY_CURRENT_USER`, `...\Machine\Registry.pol`: `HKEY_LOCAL_MACHINE`), and `data` is the
//! value's bytes as the registry stores them. Some value names are instructions rather than
//! values ([`Action`]): `**del.NAME`, `**DeleteValues`, `**DelVals`, `**DeleteKeys`,
//! `**SecureKey`, `**soft.NAME`, `**Comment:`.
//!
//! [`parse`] is pure and bounded: it refuses files over [`MAX_FILE_SIZE`], checks every length
//! against the bytes that are left before it uses it, and names the byte offset of whatever it
//! refuses. [`render`] writes a parsed file back byte for byte.
//!
//! [`PolIndex`] answers what a file leaves a value as after all its instructions, in order (the
//! way the Group Policy registry extension replays them).

use std::collections::HashMap;
use std::fmt;

use crate::RegValue;

/// Files larger than this are refused (a GPO's `Registry.pol` is normally a few kilobytes).
pub const MAX_FILE_SIZE: usize = 16 * 1024 * 1024;
/// `PReg`, the first four bytes (`REGFILE_SIGNATURE`, 0x67655250 read as a little-endian u32).
pub const SIGNATURE: [u8; 4] = *b"PReg";
/// `REGISTRY_FILE_VERSION`: the only version Microsoft documents.
pub const VERSION: u32 = 1;
/// The longest key path accepted, in UTF-16 code units (the registry's own limit on a path).
pub const MAX_KEY_UNITS: usize = 32_767;
/// The longest value name accepted, in UTF-16 code units (the registry's limit on a name).
pub const MAX_VALUE_UNITS: usize = 16_383;

const LBRACKET: u16 = b'[' as u16;
const RBRACKET: u16 = b']' as u16;
const SEMICOLON: u16 = b';' as u16;

/// A parsed `Registry.pol` file: its entries in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolFile {
    pub entries: Vec<PolEntry>,
}

/// One `[key;value;type;size;data]` record, exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolEntry {
    /// Byte offset of the record's `[` in the file (0 for entries built in memory).
    pub offset: usize,
    /// The key path as written (relative to the file's hive).
    pub key: String,
    /// The value name as written, `**` instructions included.
    pub value: String,
    /// The registry type (`REG_SZ` = 1, `REG_DWORD` = 4, ...).
    pub ty: u32,
    pub data: Vec<u8>,
}

/// Why a file was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {message}")]
pub struct PolError {
    /// Byte offset into the file.
    pub offset: usize,
    pub message: String,
}

fn error(offset: usize, message: impl Into<String>) -> PolError {
    PolError {
        offset,
        message: message.into(),
    }
}

/// What one record tells the Group Policy registry extension to do with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set a value.
    Set { name: String, value: RegValue },
    /// `**del.NAME`: delete one value (what a policy set to Disabled without a disabled value
    /// writes).
    Delete { name: String },
    /// `**DeleteValues`: delete the values named in the data, separated by `;`.
    DeleteValues(Vec<String>),
    /// `**DelVals`: delete every value of the key.
    DeleteAllValues,
    /// `**DeleteKeys`: delete the subkeys named in the data, separated by `;`.
    DeleteKeys(Vec<String>),
    /// `**SecureKey`: 1 makes the key writable by administrators and the system only.
    SecureKey(bool),
    /// `**soft.NAME`: set a value only if it does not exist yet.
    Soft { name: String, value: RegValue },
    /// `**Comment:...`: nothing.
    Comment(String),
    /// An empty value name with no data: create the key only.
    CreateKey,
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A `;`-separated list in a record's data (UTF-16LE text, whatever the record's type says).
fn name_list(data: &[u8]) -> Vec<String> {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
        .split(';')
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' ').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

impl PolEntry {
    /// The key path without leading or trailing backslashes.
    pub fn key_path(&self) -> &str {
        self.key.trim_matches('\\')
    }

    /// The data as the registry would hold it.
    pub fn reg_value(&self) -> RegValue {
        RegValue::from_bytes(self.ty, &self.data)
    }

    /// What this record does.
    pub fn action(&self) -> Action {
        let v = self.value.as_str();
        if let Some(name) = strip_prefix_ci(v, "**del.") {
            return Action::Delete {
                name: name.to_owned(),
            };
        }
        if let Some(name) = strip_prefix_ci(v, "**soft.") {
            return Action::Soft {
                name: name.to_owned(),
                value: self.reg_value(),
            };
        }
        if strip_prefix_ci(v, "**deletevalues").is_some() {
            return Action::DeleteValues(name_list(&self.data));
        }
        // `**DelVals` and `**DelVals.` both occur.
        if strip_prefix_ci(v, "**delvals").is_some() {
            return Action::DeleteAllValues;
        }
        if strip_prefix_ci(v, "**deletekeys").is_some() {
            return Action::DeleteKeys(name_list(&self.data));
        }
        if strip_prefix_ci(v, "**securekey").is_some() {
            let on = match self.reg_value() {
                RegValue::Dword(d) => d != 0,
                other => other.as_text().is_some_and(|t| t.trim() == "1"),
            };
            return Action::SecureKey(on);
        }
        if let Some(text) = strip_prefix_ci(v, "**comment:") {
            return Action::Comment(text.to_owned());
        }
        if v.is_empty() && self.data.is_empty() {
            return Action::CreateKey;
        }
        Action::Set {
            name: self.value.clone(),
            value: self.reg_value(),
        }
    }
}

impl fmt::Display for PolEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{};{};{};{}]",
            self.key,
            self.value,
            self.ty,
            self.data.len()
        )
    }
}

/// A cursor over the file's bytes that never reads past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn unit(&mut self, what: &str) -> Result<u16, PolError> {
        match self.bytes.get(self.pos..self.pos + 2) {
            Some(b) => {
                self.pos += 2;
                Ok(u16::from_le_bytes([b[0], b[1]]))
            }
            None => Err(error(
                self.pos,
                format!("the file ends inside an entry: expected {what}"),
            )),
        }
    }

    fn expect(&mut self, want: u16, what: &str) -> Result<(), PolError> {
        let at = self.pos;
        let got = self.unit(what)?;
        if got != want {
            return Err(error(
                at,
                format!(
                    "expected {what} (UTF-16LE {:02X} {:02X}), found {:02X} {:02X}",
                    want & 0xff,
                    want >> 8,
                    got & 0xff,
                    got >> 8
                ),
            ));
        }
        Ok(())
    }

    fn u32(&mut self, what: &str) -> Result<u32, PolError> {
        match self.bytes.get(self.pos..self.pos + 4) {
            Some(b) => {
                self.pos += 4;
                Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            None => Err(error(
                self.pos,
                format!("the file ends inside an entry: expected {what} (4 bytes)"),
            )),
        }
    }

    /// A NUL-terminated UTF-16LE string of at most `max` code units.
    fn string(&mut self, what: &str, max: usize) -> Result<String, PolError> {
        let start = self.pos;
        let mut units = Vec::new();
        loop {
            let at = self.pos;
            let u = self.unit(&format!("the rest of the {what} or its NUL"))?;
            if u == 0 {
                break;
            }
            if units.len() == max {
                return Err(error(
                    start,
                    format!("the {what} is longer than {max} UTF-16 code units"),
                ));
            }
            units.push((at, u));
        }
        let mut out = String::with_capacity(units.len());
        let decoded = char::decode_utf16(units.iter().map(|&(_, u)| u));
        let mut i = 0;
        for c in decoded {
            match c {
                Ok(c) => {
                    i += c.len_utf16();
                    out.push(c);
                }
                Err(_) => {
                    return Err(error(
                        units[i].0,
                        format!("the {what} is not valid UTF-16 (unpaired surrogate)"),
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// Reads a `Registry.pol` file. Refuses, naming the byte offset: files over
/// [`MAX_FILE_SIZE`], a wrong signature or version, and any entry that is truncated, malformed,
/// not UTF-16, or whose size runs past the end of the file. A file with the header only (what
/// the Group Policy editor writes when nothing is configured) has no entries.
pub fn parse(bytes: &[u8]) -> Result<PolFile, PolError> {
    if bytes.len() > MAX_FILE_SIZE {
        return Err(error(
            MAX_FILE_SIZE,
            format!(
                "the file has {} bytes; Registry.pol files over {MAX_FILE_SIZE} bytes (16 MiB) \
                 are refused",
                bytes.len()
            ),
        ));
    }
    if bytes.len() < 8 {
        return Err(error(
            bytes.len(),
            format!(
                "the file ends inside the header ({} of 8 bytes: `PReg` and the version)",
                bytes.len()
            ),
        ));
    }
    if bytes[..4] != SIGNATURE {
        return Err(error(
            0,
            format!(
                "not a Registry.pol file: the signature is {:02X?}, expected `PReg` (50 52 65 67)",
                &bytes[..4]
            ),
        ));
    }
    let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(error(
            4,
            format!("unsupported version {version} (only version {VERSION} is documented)"),
        ));
    }
    let mut r = Reader { bytes, pos: 8 };
    let mut file = PolFile::default();
    while r.left() > 0 {
        let offset = r.pos;
        r.expect(LBRACKET, "`[` opening an entry")?;
        let key_at = r.pos;
        let key = r.string("key", MAX_KEY_UNITS)?;
        if key.is_empty() {
            return Err(error(key_at, "empty key"));
        }
        r.expect(SEMICOLON, "`;` after the key")?;
        let value = r.string("value name", MAX_VALUE_UNITS)?;
        r.expect(SEMICOLON, "`;` after the value name")?;
        let ty = r.u32("the type")?;
        r.expect(SEMICOLON, "`;` after the type")?;
        let size_at = r.pos;
        let size = r.u32("the size")?;
        r.expect(SEMICOLON, "`;` after the size")?;
        // The data and the closing `]` must fit in what is left.
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > r.left().saturating_sub(2) {
            return Err(error(
                size_at,
                format!(
                    "the size {size} runs past the end of the file ({} bytes left for the data \
                     and the closing `]`)",
                    r.left()
                ),
            ));
        }
        let data = bytes[r.pos..r.pos + size].to_vec();
        r.pos += size;
        r.expect(RBRACKET, "`]` closing the entry")?;
        file.entries.push(PolEntry {
            offset,
            key,
            value,
            ty,
            data,
        });
    }
    Ok(file)
}

/// Writes a file: the header, then every entry in order. [`parse`] reads it back equal (apart
/// from the offsets of entries built in memory), and the bytes of a parsed file come back
/// exactly.
pub fn render(file: &PolFile) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(SIGNATURE);
    out.extend(VERSION.to_le_bytes());
    let unit = |out: &mut Vec<u8>, u: u16| out.extend(u.to_le_bytes());
    for e in &file.entries {
        unit(&mut out, LBRACKET);
        for u in e.key.encode_utf16().chain([0]) {
            unit(&mut out, u);
        }
        unit(&mut out, SEMICOLON);
        for u in e.value.encode_utf16().chain([0]) {
            unit(&mut out, u);
        }
        unit(&mut out, SEMICOLON);
        out.extend(e.ty.to_le_bytes());
        unit(&mut out, SEMICOLON);
        let size = u32::try_from(e.data.len()).unwrap_or(u32::MAX);
        out.extend(size.to_le_bytes());
        unit(&mut out, SEMICOLON);
        out.extend(&e.data);
        unit(&mut out, RBRACKET);
    }
    out
}

impl PolFile {
    /// An entry that sets `key\name` to `value` (for building files in tests and tools).
    pub fn set(&mut self, key: &str, name: &str, value: &RegValue) -> &mut Self {
        self.entries.push(PolEntry {
            offset: 0,
            key: key.to_owned(),
            value: name.to_owned(),
            ty: value.type_code(),
            data: value.to_bytes(),
        });
        self
    }

    /// An entry that deletes `key\name` (`**del.NAME`, as a policy set to Disabled writes it:
    /// `REG_SZ` data of one space).
    pub fn delete(&mut self, key: &str, name: &str) -> &mut Self {
        self.entries.push(PolEntry {
            offset: 0,
            key: key.to_owned(),
            value: format!("**del.{name}"),
            ty: 1,
            data: RegValue::Sz(" ".into()).to_bytes(),
        });
        self
    }
}

/// What a file leaves one value as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Set to this value at every refresh.
    Set(RegValue),
    /// Deleted at every refresh (`**del.`, `**DeleteValues`, `**DelVals`, `**DeleteKeys`).
    Deleted,
    /// Set only when the value does not exist (`**soft.`): not enforced against a value that is
    /// there.
    Soft(RegValue),
}

/// A file with its records indexed by key, to answer [`PolIndex::effect`] without scanning the
/// whole file.
#[derive(Debug, Clone)]
pub struct PolIndex {
    file: PolFile,
    by_key: HashMap<String, Vec<usize>>,
    /// `**DeleteKeys` targets (folded full paths) and their record.
    deleted_keys: Vec<(String, usize)>,
}

impl PolIndex {
    pub fn new(file: PolFile) -> PolIndex {
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        let mut deleted_keys: Vec<(String, usize)> = Vec::new();
        for (i, e) in file.entries.iter().enumerate() {
            let key = e.key_path().to_ascii_lowercase();
            if let Action::DeleteKeys(subkeys) = e.action() {
                for sub in subkeys {
                    let sub = sub.trim_matches('\\').to_ascii_lowercase();
                    deleted_keys.push((format!("{key}\\{sub}"), i));
                }
            } else {
                by_key.entry(key).or_default().push(i);
            }
        }
        PolIndex {
            file,
            by_key,
            deleted_keys,
        }
    }

    pub fn file(&self) -> &PolFile {
        &self.file
    }

    /// What the file leaves `key\name` as after replaying its records in order, and the record
    /// that decided it; `None` if no record touches that value. Names compare without regard
    /// to ASCII case, as the registry does.
    pub fn effect(&self, key: &str, name: &str) -> Option<(Effect, &PolEntry)> {
        let key = key.trim_matches('\\').to_ascii_lowercase();
        let mut records: Vec<usize> = self.by_key.get(&key).cloned().unwrap_or_default();
        for (target, i) in &self.deleted_keys {
            if key == *target || key.starts_with(&format!("{target}\\")) {
                records.push(*i);
            }
        }
        records.sort_unstable();
        let mut decided: Option<(Effect, usize)> = None;
        for i in records {
            let e = &self.file.entries[i];
            let effect = match e.action() {
                Action::Set { name: n, value } if n.eq_ignore_ascii_case(name) => {
                    Some(Effect::Set(value))
                }
                Action::Soft { name: n, value } if n.eq_ignore_ascii_case(name) => {
                    Some(Effect::Soft(value))
                }
                Action::Delete { name: n } if n.eq_ignore_ascii_case(name) => Some(Effect::Deleted),
                Action::DeleteValues(names)
                    if names.iter().any(|n| n.eq_ignore_ascii_case(name)) =>
                {
                    Some(Effect::Deleted)
                }
                Action::DeleteAllValues | Action::DeleteKeys(_) => Some(Effect::Deleted),
                _ => None,
            };
            if let Some(effect) = effect {
                decided = Some((effect, i));
            }
        }
        decided.map(|(effect, i)| (effect, &self.file.entries[i]))
    }
}

#[cfg(test)]
mod tests;
