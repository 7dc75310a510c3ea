//! Postwarden's narrow view of the Windows registry.
//!
//! - [`RegValue`], [`KeyPath`] and the [`Registry`] trait: the only registry operations the agent
//!   needs, so its Outlook backend is tested on Linux against [`MemRegistry`].
//! - [`MemRegistry`]: an in-memory registry, case-insensitive like the real one, that can also
//!   refuse writes below chosen keys (Wine enforces no ACLs, so access-denied paths are tested
//!   here).
//! - [`Shared`]: one registry handed to several owners in turn (a session and its stores).
//! - [`regfile`]: `.reg` files as regedit writes and reads them (UTF-16LE with BOM).
//! - [`snapshot`]: subtree snapshots and their difference, which turns "something below this key
//!   changed" into "these keys changed".
//! - `windows` (Windows only): the real registry through the `windows-registry` crate, and the
//!   `RegNotifyChangeKeyValue` watcher.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

mod mem;
pub mod pol;
#[cfg(windows)]
#[allow(unsafe_code)]
pub mod process;
pub mod regfile;
mod shared;
pub mod snapshot;
#[cfg(windows)]
#[allow(unsafe_code)]
pub mod windows;

pub use mem::MemRegistry;
pub use shared::Shared;

/// A predefined root key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Root {
    #[serde(rename = "HKEY_CURRENT_USER")]
    CurrentUser,
    #[serde(rename = "HKEY_LOCAL_MACHINE")]
    LocalMachine,
    #[serde(rename = "HKEY_USERS")]
    Users,
}

impl Root {
    pub fn name(self) -> &'static str {
        match self {
            Root::CurrentUser => "HKEY_CURRENT_USER",
            Root::LocalMachine => "HKEY_LOCAL_MACHINE",
            Root::Users => "HKEY_USERS",
        }
    }

    /// Parses a root as regedit and reg.exe spell it (`HKEY_CURRENT_USER`, `HKCU`, ...).
    pub fn parse(s: &str) -> Option<Root> {
        match s.to_ascii_uppercase().as_str() {
            "HKEY_CURRENT_USER" | "HKCU" => Some(Root::CurrentUser),
            "HKEY_LOCAL_MACHINE" | "HKLM" => Some(Root::LocalMachine),
            "HKEY_USERS" | "HKU" => Some(Root::Users),
            _ => None,
        }
    }
}

/// A key: a root and a backslash-separated path below it (no leading or trailing backslash).
///
/// Registry names are case-insensitive: equality and order ignore ASCII case, and the spelling
/// given first is kept for display.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyPath {
    pub root: Root,
    pub path: String,
}

impl KeyPath {
    pub fn new(root: Root, path: impl Into<String>) -> KeyPath {
        let path: String = path.into();
        KeyPath {
            root,
            path: path.trim_matches('\\').to_owned(),
        }
    }

    /// Parses `HKEY_CURRENT_USER\Software\...` (or `HKCU\...`).
    pub fn parse(s: &str) -> Option<KeyPath> {
        let (root, rest) = s.split_once('\\').unwrap_or((s, ""));
        Some(KeyPath::new(Root::parse(root)?, rest))
    }

    /// A subkey: `child` may itself contain backslashes.
    pub fn join(&self, child: &str) -> KeyPath {
        let child = child.trim_matches('\\');
        if self.path.is_empty() {
            KeyPath::new(self.root, child)
        } else if child.is_empty() {
            self.clone()
        } else {
            KeyPath::new(self.root, format!("{}\\{child}", self.path))
        }
    }

    /// The key one level up; `None` for a root.
    pub fn parent(&self) -> Option<KeyPath> {
        if self.path.is_empty() {
            return None;
        }
        Some(match self.path.rsplit_once('\\') {
            Some((parent, _)) => KeyPath::new(self.root, parent),
            None => KeyPath::new(self.root, ""),
        })
    }

    /// This key and its ancestors up to (not including) the root, innermost first.
    pub fn ancestors(&self) -> impl Iterator<Item = KeyPath> {
        std::iter::successors(Some(self.clone()), KeyPath::parent).filter(|k| !k.path.is_empty())
    }

    /// Whether `self` is `other` or lies below it.
    pub fn is_within(&self, other: &KeyPath) -> bool {
        self.root == other.root
            && (other.path.is_empty()
                || self.folded() == other.folded()
                || self.folded().starts_with(&format!("{}\\", other.folded())))
    }

    /// The path folded for comparison.
    pub fn folded(&self) -> String {
        self.path.to_ascii_lowercase()
    }
}

impl PartialEq for KeyPath {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root && self.path.eq_ignore_ascii_case(&other.path)
    }
}

impl Eq for KeyPath {}

impl PartialOrd for KeyPath {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyPath {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.root, self.folded()).cmp(&(other.root, other.folded()))
    }
}

impl std::hash::Hash for KeyPath {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.root.hash(state);
        self.folded().hash(state);
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.root.name())?;
        if !self.path.is_empty() {
            write!(f, "\\{}", self.path)?;
        }
        Ok(())
    }
}

/// A value's data, typed as the registry types it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum RegValue {
    /// `REG_DWORD`
    Dword(u32),
    /// `REG_QWORD`
    Qword(u64),
    /// `REG_SZ`
    Sz(String),
    /// `REG_EXPAND_SZ`
    ExpandSz(String),
    /// `REG_MULTI_SZ`
    MultiSz(Vec<String>),
    /// `REG_BINARY`
    Binary(Vec<u8>),
    /// Any other type, as raw bytes.
    Other { ty: u32, data: Vec<u8> },
}

impl RegValue {
    /// The registry type number (`REG_SZ` = 1, ...).
    pub fn type_code(&self) -> u32 {
        match self {
            RegValue::Sz(_) => 1,
            RegValue::ExpandSz(_) => 2,
            RegValue::Binary(_) => 3,
            RegValue::Dword(_) => 4,
            RegValue::MultiSz(_) => 7,
            RegValue::Qword(_) => 11,
            RegValue::Other { ty, .. } => *ty,
        }
    }

    /// The type's name as regedit shows it.
    pub fn type_name(&self) -> String {
        match self {
            RegValue::Sz(_) => "REG_SZ".into(),
            RegValue::ExpandSz(_) => "REG_EXPAND_SZ".into(),
            RegValue::Binary(_) => "REG_BINARY".into(),
            RegValue::Dword(_) => "REG_DWORD".into(),
            RegValue::MultiSz(_) => "REG_MULTI_SZ".into(),
            RegValue::Qword(_) => "REG_QWORD".into(),
            RegValue::Other { ty, .. } => format!("type {ty}"),
        }
    }

    /// The data as the registry stores it (strings UTF-16LE with their terminating NUL).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            RegValue::Dword(v) => v.to_le_bytes().to_vec(),
            RegValue::Qword(v) => v.to_le_bytes().to_vec(),
            RegValue::Sz(s) | RegValue::ExpandSz(s) => utf16z(s),
            RegValue::MultiSz(items) => {
                let mut out = Vec::new();
                for item in items {
                    out.extend(utf16z(item));
                }
                out.extend([0, 0]);
                out
            }
            RegValue::Binary(b) | RegValue::Other { data: b, .. } => b.clone(),
        }
    }

    /// Builds a value from its type number and stored bytes, as `RegQueryValueExW` returns them.
    /// Lossless: data that the typed form would not give back byte for byte (a string without
    /// its terminating NUL, a DWORD of 3 bytes, ...) stays raw in [`RegValue::Other`], so a
    /// backup restores exactly what was there.
    pub fn from_bytes(ty: u32, data: &[u8]) -> RegValue {
        let typed = RegValue::typed_from_bytes(ty, data);
        if typed.to_bytes() == data {
            typed
        } else {
            RegValue::Other {
                ty,
                data: data.to_vec(),
            }
        }
    }

    fn typed_from_bytes(ty: u32, data: &[u8]) -> RegValue {
        match ty {
            1 => RegValue::Sz(from_utf16z(data)),
            2 => RegValue::ExpandSz(from_utf16z(data)),
            3 => RegValue::Binary(data.to_vec()),
            4 if data.len() == 4 => {
                RegValue::Dword(u32::from_le_bytes(data.try_into().expect("4 bytes")))
            }
            7 => {
                let text = decode_utf16(data);
                let mut items: Vec<String> = text.split('\0').map(str::to_owned).collect();
                // The list ends with an empty string (the double NUL); trailing empties are the
                // terminator, not items.
                while items.last().is_some_and(String::is_empty) {
                    items.pop();
                }
                RegValue::MultiSz(items)
            }
            11 if data.len() == 8 => {
                RegValue::Qword(u64::from_le_bytes(data.try_into().expect("8 bytes")))
            }
            ty => RegValue::Other {
                ty,
                data: data.to_vec(),
            },
        }
    }

    /// Text stored as `REG_SZ`/`REG_EXPAND_SZ`, or as UTF-16LE in `REG_BINARY` (how Outlook keeps
    /// account strings). `None` for other types and for binary data that is not UTF-16 text.
    pub fn as_text(&self) -> Option<String> {
        match self {
            RegValue::Sz(s) | RegValue::ExpandSz(s) => Some(s.clone()),
            RegValue::Other { ty: 1 | 2, data } => Some(from_utf16z(data)),
            RegValue::Binary(b) if b.len() % 2 == 0 => {
                let units: Vec<u16> = b
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                let units = units.strip_suffix(&[0]).unwrap_or(&units);
                String::from_utf16(units).ok().filter(|s| !s.contains('\0'))
            }
            _ => None,
        }
    }

    /// Text as Outlook writes account strings: UTF-16LE with a terminating NUL, in `REG_BINARY`.
    pub fn binary_text(s: &str) -> RegValue {
        RegValue::Binary(utf16z(s))
    }
}

impl fmt::Display for RegValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegValue::Dword(v) => write!(f, "REG_DWORD {v:#x}"),
            RegValue::Qword(v) => write!(f, "REG_QWORD {v:#x}"),
            RegValue::Sz(s) => write!(f, "REG_SZ {s:?}"),
            RegValue::ExpandSz(s) => write!(f, "REG_EXPAND_SZ {s:?}"),
            RegValue::MultiSz(items) => write!(f, "REG_MULTI_SZ {items:?}"),
            RegValue::Binary(b) => write!(f, "REG_BINARY ({} bytes)", b.len()),
            RegValue::Other { ty, data } => write!(f, "type {ty} ({} bytes)", data.len()),
        }
    }
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// UTF-16LE bytes as the registry stores strings (an odd last byte is dropped, unpaired
/// surrogates become U+FFFD).
pub fn decode_utf16(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn from_utf16z(data: &[u8]) -> String {
    let s = decode_utf16(data);
    match s.find('\0') {
        Some(end) => s[..end].to_owned(),
        None => s,
    }
}

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegError {
    /// The caller lacks the rights (on Windows, `ERROR_ACCESS_DENIED`): policy keys need an
    /// administrator or SYSTEM.
    #[error("{key}: access denied")]
    AccessDenied { key: String },
    /// Any other failure, with the system's error code and message.
    #[error("{key}: {message} (error {code})")]
    Other {
        key: String,
        code: i64,
        message: String,
    },
}

impl RegError {
    pub fn is_access_denied(&self) -> bool {
        matches!(self, RegError::AccessDenied { .. })
    }
}

/// The registry operations the agent needs. A missing key reads as empty; writes create
/// missing keys. Implementations: [`MemRegistry`] and, on Windows, `windows::WinRegistry`.
pub trait Registry {
    /// The value `name` of `key` (`""` is the default value); `None` if the key or the value
    /// does not exist.
    fn get(&self, key: &KeyPath, name: &str) -> Result<Option<RegValue>, RegError>;
    /// Sets a value, creating `key` and its missing ancestors.
    fn set(&mut self, key: &KeyPath, name: &str, value: &RegValue) -> Result<(), RegError>;
    /// Deletes a value; deleting one that does not exist succeeds.
    fn delete_value(&mut self, key: &KeyPath, name: &str) -> Result<(), RegError>;
    /// Whether the key exists.
    fn exists(&self, key: &KeyPath) -> Result<bool, RegError>;
    /// The names of the key's direct subkeys, sorted; empty if the key does not exist.
    fn subkeys(&self, key: &KeyPath) -> Result<Vec<String>, RegError>;
    /// The key's values by name, sorted; empty if the key does not exist.
    fn values(&self, key: &KeyPath) -> Result<BTreeMap<String, RegValue>, RegError>;
    /// Deletes the key if it has neither values nor subkeys; returns whether it was deleted.
    /// A key that does not exist is not deleted (`Ok(false)`).
    fn delete_key_if_empty(&mut self, key: &KeyPath) -> Result<bool, RegError>;
}

#[cfg(test)]
mod tests;
