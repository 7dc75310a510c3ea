//! The real Windows registry: [`WinRegistry`] implements [`Registry`] with the
//! `windows-registry` crate, and [`Watcher`] turns `RegNotifyChangeKeyValue` into "these keys
//! changed".
//!
//! Keys are opened and created, and values written and removed, through `windows-registry`.
//! Some operations call the Win32 API directly (`windows-sys`), because the crate gets them wrong
//! for a registry that other programs change while we read it, or for unusual data:
//!
//! - reading a value: `Key::get_value` asks for the size, then reads into a buffer of that size
//!   and keeps the whole buffer, so a value that shrinks in between reads back with trailing
//!   zeros. One `RegQueryValueExW`, retried with the size it reports on `ERROR_MORE_DATA`, is
//!   byte-exact.
//! - enumerating values and subkeys: the crate's iterators stop silently on any error and, in
//!   debug builds, panic on `ERROR_MORE_DATA` (a value or name that grew during the
//!   enumeration). Ours retries with bigger buffers and reports other errors.
//! - deleting a key: the crate only offers `RegDeleteTreeW`, which deletes everything below;
//!   [`Registry::delete_key_if_empty`] must never do that. `RegDeleteKeyW` refuses a key with
//!   subkeys by itself.
//! - writing a string without its terminating NUL, or empty data (see `crate_writes_exactly`).
//! - change notification: the crate has no `RegNotifyChangeKeyValue` (see [`watch`]).
//!
//! Outlook keeps account strings as `REG_BINARY` UTF-16LE, so values are always read as type and
//! bytes ([`RegValue::from_bytes`]) and never through the crate's string getters.

use std::collections::BTreeMap;

use windows_registry::{Key, Type};
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_INVALID_PARAMETER, ERROR_MORE_DATA,
    ERROR_NO_MORE_ITEMS, WIN32_ERROR,
};
use windows_sys::Win32::System::Registry::{
    RegDeleteKeyW, RegEnumKeyExW, RegEnumValueW, RegQueryInfoKeyW, RegQueryValueExW,
    RegSetValueExW, KEY_QUERY_VALUE,
};

use crate::{KeyPath, RegError, RegValue, Registry, Root};

pub mod watch;

pub use watch::{Change, Watcher, MAX_ROOTS};

/// How often a read is retried when the data grows between two calls (`ERROR_MORE_DATA`).
const MORE_DATA_RETRIES: usize = 16;

/// The real registry of the current process's user and machine.
///
/// Stateless: every call opens the key it needs and closes it again, so a `WinRegistry` never
/// holds a key open (which would keep a deleted key alive) and is cheap to create anywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct WinRegistry;

impl WinRegistry {
    pub fn new() -> WinRegistry {
        WinRegistry
    }
}

/// The predefined key of a root.
pub fn hive(root: Root) -> &'static Key {
    match root {
        Root::CurrentUser => windows_registry::CURRENT_USER,
        Root::LocalMachine => windows_registry::LOCAL_MACHINE,
        Root::Users => windows_registry::USERS,
    }
}

/// The error for a Win32 error code: `ERROR_ACCESS_DENIED` becomes [`RegError::AccessDenied`],
/// anything else [`RegError::Other`] with the system's message. (Callers handle "not found"
/// themselves: it means `None`, empty or success depending on the operation.)
pub fn win32_error(key: &KeyPath, code: WIN32_ERROR) -> RegError {
    if code == ERROR_ACCESS_DENIED {
        return RegError::AccessDenied {
            key: key.to_string(),
        };
    }
    // std formats OS errors with FormatMessageW: "The system cannot find the file specified.
    // (os error 2)". Keep the sentence; the code has its own field.
    let message = std::io::Error::from_raw_os_error(code as i32).to_string();
    let message = match message.rfind(" (os error ") {
        Some(at) => message[..at].trim_end().to_owned(),
        None => message,
    };
    RegError::Other {
        key: key.to_string(),
        code: i64::from(code),
        message,
    }
}

/// `windows-registry`'s error type (`windows_result::Error`), which the crate does not export
/// by name.
type CrateError = <windows_registry::Result<()> as ErrorOf>::Error;

trait ErrorOf {
    type Error;
}

impl<T, E> ErrorOf for Result<T, E> {
    type Error = E;
}

/// The Win32 error code inside a `windows-registry` error (an HRESULT of facility WIN32,
/// `0x8007xxxx`); `None` for other HRESULTs.
fn crate_win32_code(error: &CrateError) -> Option<WIN32_ERROR> {
    let hresult = error.code().0 as u32;
    (hresult & 0xFFFF_0000 == 0x8007_0000).then_some(hresult & 0xFFFF)
}

/// Converts a `windows-registry` result; an HRESULT that is not a Win32 error is kept as the
/// code, with the crate's message.
fn check<T>(key: &KeyPath, result: windows_registry::Result<T>) -> Result<T, RegError> {
    result.map_err(|e| match crate_win32_code(&e) {
        Some(code) => win32_error(key, code),
        None => RegError::Other {
            key: key.to_string(),
            code: i64::from(e.code().0),
            message: e.message(),
        },
    })
}

/// Like [`check`], but "not found" is `Ok(None)`.
fn check_found<T>(
    key: &KeyPath,
    result: windows_registry::Result<T>,
) -> Result<Option<T>, RegError> {
    match result {
        Err(e) if crate_win32_code(&e) == Some(ERROR_FILE_NOT_FOUND) => Ok(None),
        result => check(key, result).map(Some),
    }
}

/// Opens `key` for reading (`KEY_READ`, which includes `KEY_NOTIFY`); `None` if it does not
/// exist.
pub(crate) fn open_read(key: &KeyPath) -> Result<Option<Key>, RegError> {
    check_found(key, hive(key.root).open(&key.path))
}

/// A NUL-terminated UTF-16 string for the Win32 API.
fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Counts and maximum sizes of a key's subkeys and values (`RegQueryInfoKeyW`).
#[derive(Debug, Clone, Copy, Default)]
struct KeyInfo {
    subkeys: u32,
    max_subkey_len: u32,
    values: u32,
    max_value_name_len: u32,
    max_value_len: u32,
}

fn key_info(path: &KeyPath, key: &Key) -> Result<KeyInfo, RegError> {
    let mut i = KeyInfo::default();
    // SAFETY: `key` is an open key handle; every out pointer is valid for the call and the
    // ones we do not need are null, which the API allows.
    let code = unsafe {
        RegQueryInfoKeyW(
            key.as_raw(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null(),
            &mut i.subkeys,
            &mut i.max_subkey_len,
            std::ptr::null_mut(),
            &mut i.values,
            &mut i.max_value_name_len,
            &mut i.max_value_len,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if code != 0 {
        return Err(win32_error(path, code));
    }
    Ok(i)
}

/// Reads one value as its type and exact bytes; `None` if it does not exist.
fn query_value(path: &KeyPath, key: &Key, name: &str) -> Result<Option<RegValue>, RegError> {
    let name = wide(name);
    let mut data = vec![0u8; 256];
    for _ in 0..MORE_DATA_RETRIES {
        let mut ty = 0u32;
        let mut len = data.len() as u32;
        // SAFETY: `name` is NUL-terminated, `data` is valid for `len` bytes, `ty` and `len`
        // are valid out pointers.
        let code = unsafe {
            RegQueryValueExW(
                key.as_raw(),
                name.as_ptr(),
                std::ptr::null(),
                &mut ty,
                data.as_mut_ptr(),
                &mut len,
            )
        };
        match code {
            0 => return Ok(Some(RegValue::from_bytes(ty, &data[..len as usize]))),
            ERROR_FILE_NOT_FOUND => return Ok(None),
            // `len` is the size needed now; the value may grow again before the next call.
            ERROR_MORE_DATA => data.resize((len as usize).max(data.len() * 2), 0),
            code => return Err(win32_error(path, code)),
        }
    }
    Err(win32_error(path, ERROR_MORE_DATA))
}

/// Every value of an open key, by name as stored.
fn enum_values(path: &KeyPath, key: &Key) -> Result<BTreeMap<String, RegValue>, RegError> {
    let info = key_info(path, key)?;
    let mut name = vec![0u16; info.max_value_name_len as usize + 1];
    let mut data = vec![0u8; info.max_value_len as usize];
    let mut out = BTreeMap::new();
    let mut index = 0u32;
    let mut retries = 0;
    loop {
        let mut name_len = name.len() as u32;
        let mut data_len = data.len() as u32;
        let mut ty = 0u32;
        // SAFETY: the buffers are valid for the lengths passed; the lengths and `ty` are valid
        // out pointers.
        let code = unsafe {
            RegEnumValueW(
                key.as_raw(),
                index,
                name.as_mut_ptr(),
                &mut name_len,
                std::ptr::null(),
                &mut ty,
                data.as_mut_ptr(),
                &mut data_len,
            )
        };
        match code {
            0 => {
                let n = String::from_utf16_lossy(&name[..name_len as usize]);
                out.insert(n, RegValue::from_bytes(ty, &data[..data_len as usize]));
                index += 1;
                retries = 0;
            }
            ERROR_NO_MORE_ITEMS => return Ok(out),
            ERROR_MORE_DATA if retries < MORE_DATA_RETRIES => {
                // A name or value grew since the sizes were read: read them again.
                retries += 1;
                let info = key_info(path, key)?;
                let name_len = (info.max_value_name_len as usize + 1).max(name.len() * 2);
                name.resize(name_len, 0);
                let data_len = (info.max_value_len as usize).max(data.len() * 2).max(16);
                data.resize(data_len, 0);
            }
            code => return Err(win32_error(path, code)),
        }
    }
}

/// The names of an open key's direct subkeys, in the order the registry returns them.
fn enum_subkeys(path: &KeyPath, key: &Key) -> Result<Vec<String>, RegError> {
    let info = key_info(path, key)?;
    let mut name = vec![0u16; info.max_subkey_len as usize + 1];
    let mut out = Vec::new();
    let mut index = 0u32;
    let mut retries = 0;
    loop {
        let mut name_len = name.len() as u32;
        // SAFETY: `name` is valid for `name_len` characters; the optional arguments are null.
        let code = unsafe {
            RegEnumKeyExW(
                key.as_raw(),
                index,
                name.as_mut_ptr(),
                &mut name_len,
                std::ptr::null(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        match code {
            0 => {
                out.push(String::from_utf16_lossy(&name[..name_len as usize]));
                index += 1;
                retries = 0;
            }
            ERROR_NO_MORE_ITEMS => return Ok(out),
            ERROR_MORE_DATA if retries < MORE_DATA_RETRIES => {
                retries += 1;
                let info = key_info(path, key)?;
                let len = (info.max_subkey_len as usize + 1).max(name.len() * 2);
                name.resize(len, 0);
            }
            code => return Err(win32_error(path, code)),
        }
    }
}

/// Whether `Key::set_bytes` writes `data` exactly as given. Two things get in the way, and
/// values that meet them go to [`set_exact`] instead:
///
/// - for string types (`REG_SZ`, `REG_EXPAND_SZ`, `REG_MULTI_SZ`), `RegSetValueExW` "adds the
///   terminating NUL the caller forgot to count" when the last UTF-16 unit is not NUL and the one
///   *after the buffer* is (Wine's comment: "yes NT does this"); and `windows-registry` asserts
///   in debug builds that string data ends with a NUL. A lossless [`RegValue::Other`] may hold a
///   string without one.
/// - empty data: the crate passes the empty slice's dangling pointer, which Wine's
///   `RegSetValueExW` refuses with `ERROR_NOACCESS` (it rejects pointers below 64 KiB).
fn crate_writes_exactly(ty: u32, data: &[u8]) -> bool {
    const REG_SZ: u32 = 1;
    const REG_EXPAND_SZ: u32 = 2;
    const REG_MULTI_SZ: u32 = 7;
    let string = matches!(ty, REG_SZ | REG_EXPAND_SZ | REG_MULTI_SZ);
    !data.is_empty() && (!string || (data.len().is_multiple_of(2) && data.ends_with(&[0, 0])))
}

/// `RegSetValueExW` with exactly `data`: a null pointer for empty data, and otherwise a copy
/// followed by a non-NUL guard unit, so the "forgotten NUL" rule never applies.
fn set_exact(path: &KeyPath, key: &Key, name: &str, ty: u32, data: &[u8]) -> Result<(), RegError> {
    let name = wide(name);
    let guarded: Vec<u8> = data.iter().copied().chain([0xFF, 0xFF]).collect();
    let ptr = if data.is_empty() {
        std::ptr::null()
    } else {
        guarded.as_ptr()
    };
    let len = u32::try_from(data.len()).map_err(|_| RegError::Other {
        key: path.to_string(),
        code: i64::from(ERROR_INVALID_PARAMETER),
        message: format!("{} bytes do not fit in a registry value", data.len()),
    })?;
    // SAFETY: `name` is NUL-terminated; `ptr` is null with a zero length or points to `guarded`,
    // which holds `len` bytes plus the two guard bytes the API may look at.
    let code = unsafe { RegSetValueExW(key.as_raw(), name.as_ptr(), 0, ty, ptr, len) };
    match code {
        0 => Ok(()),
        code => Err(win32_error(path, code)),
    }
}

impl Registry for WinRegistry {
    fn get(&self, key: &KeyPath, name: &str) -> Result<Option<RegValue>, RegError> {
        match open_read(key)? {
            Some(k) => query_value(key, &k, name),
            None => Ok(None),
        }
    }

    fn set(&mut self, key: &KeyPath, name: &str, value: &RegValue) -> Result<(), RegError> {
        let k = check(
            key,
            hive(key.root).options().write().create().open(&key.path),
        )?;
        let ty = value.type_code();
        let data = value.to_bytes();
        if crate_writes_exactly(ty, &data) {
            check(key, k.set_bytes(name, Type::from(ty), &data))
        } else {
            set_exact(key, &k, name, ty, &data)
        }
    }

    fn delete_value(&mut self, key: &KeyPath, name: &str) -> Result<(), RegError> {
        let Some(k) = check_found(key, hive(key.root).options().write().open(&key.path))? else {
            return Ok(());
        };
        check_found(key, k.remove_value(name)).map(|_| ())
    }

    fn exists(&self, key: &KeyPath) -> Result<bool, RegError> {
        let opened = hive(key.root)
            .options()
            .access(KEY_QUERY_VALUE)
            .open(&key.path);
        Ok(check_found(key, opened)?.is_some())
    }

    fn subkeys(&self, key: &KeyPath) -> Result<Vec<String>, RegError> {
        let Some(k) = open_read(key)? else {
            return Ok(Vec::new());
        };
        let mut names = enum_subkeys(key, &k)?;
        names.sort_by_key(|n| n.to_ascii_lowercase());
        Ok(names)
    }

    fn values(&self, key: &KeyPath) -> Result<BTreeMap<String, RegValue>, RegError> {
        match open_read(key)? {
            Some(k) => enum_values(key, &k),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Deletes with `RegDeleteKeyW`, which refuses a key that has subkeys. The registry has no
    /// "delete if it has no values", so a value written by another program between our check
    /// and the deletion would be deleted with the key; the window is two calls wide.
    fn delete_key_if_empty(&mut self, key: &KeyPath) -> Result<bool, RegError> {
        if key.path.is_empty() {
            return Ok(false);
        }
        let Some(k) = open_read(key)? else {
            return Ok(false);
        };
        let info = key_info(key, &k)?;
        drop(k);
        if info.subkeys > 0 || info.values > 0 {
            return Ok(false);
        }
        let path = wide(&key.path);
        // SAFETY: the hive handle is a predefined key and `path` is NUL-terminated.
        let code = unsafe { RegDeleteKeyW(hive(key.root).as_raw(), path.as_ptr()) };
        match code {
            0 => Ok(true),
            // Deleted by someone else meanwhile.
            ERROR_FILE_NOT_FOUND => Ok(false),
            // Also what RegDeleteKeyW answers for a key that gained a subkey meanwhile.
            ERROR_ACCESS_DENIED if !self.subkeys(key)?.is_empty() => Ok(false),
            code => Err(win32_error(key, code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn win32_errors_map_to_reg_errors() {
        let key = KeyPath::new(Root::LocalMachine, r"Software\Policies");
        assert_eq!(
            win32_error(&key, ERROR_ACCESS_DENIED),
            RegError::AccessDenied {
                key: r"HKEY_LOCAL_MACHINE\Software\Policies".into()
            }
        );
        match win32_error(&key, 1018) {
            RegError::Other { key, code, message } => {
                assert_eq!(key, r"HKEY_LOCAL_MACHINE\Software\Policies");
                assert_eq!(code, 1018);
                assert!(
                    !message.is_empty() && !message.contains("os error"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn crate_errors_keep_their_win32_code() {
        let key = KeyPath::new(
            Root::CurrentUser,
            r"Software\PostwardenTest\NoSuchKey\Deeper",
        );
        let opened = hive(key.root).open(&key.path).map(|_| ());
        assert_eq!(
            crate_win32_code(&opened.unwrap_err()),
            Some(ERROR_FILE_NOT_FOUND)
        );
        assert!(check_found(&key, hive(key.root).open(&key.path))
            .unwrap()
            .is_none());
    }

    #[test]
    fn only_unterminated_strings_and_empty_data_bypass_the_crate() {
        assert!(crate_writes_exactly(1, &[b'a', 0, 0, 0]));
        assert!(!crate_writes_exactly(1, &[b'a', 0]));
        assert!(!crate_writes_exactly(2, &[b'a', 0, 0]), "odd length");
        assert!(!crate_writes_exactly(7, &[]));
        assert!(!crate_writes_exactly(3, &[]));
        assert!(crate_writes_exactly(3, &[b'a', 0]));
        assert!(crate_writes_exactly(4, &[1, 2, 3, 4]));
    }
}
