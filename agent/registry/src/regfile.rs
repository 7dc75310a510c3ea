//! `.reg` files as regedit and reg.exe write and read them.
//!
//! [`render`] writes what `regedit /e` and `reg export` write, on Windows and in Wine alike: the
//! `Windows Registry Editor Version 5.00` header, CRLF line ends, UTF-16LE with a byte-order mark,
//! and hex data wrapped where regedit wraps it. (Wine reads an 8-bit file with that header as
//! well, but then mangles `hex(2)`/`hex(7)` data.)
//!
//! [`parse`] reads those files back, and also UTF-8 files and `REGEDIT4` files. It follows
//! regedit's import rules (comments, `\` continuation of hex data, trailing `;` comments) and
//! rejects, naming the line, whatever regedit would not import or this model cannot hold.
//!
//! Hex data becomes a typed [`RegValue`] only when the typed value encodes back to exactly those
//! bytes; anything else (a string without its terminating NUL, a DWORD of 3 bytes) stays raw in
//! [`RegValue::Other`], so nothing read is lost when it is written again.

use std::fmt::Write as _;

use crate::{KeyPath, RegValue, Root};

const HEADER_V5: &str = "Windows Registry Editor Version 5.00";
const HEADER_V4: &str = "REGEDIT4";

/// regedit ends a hex line with `\` once the line (indent included) reaches this many characters.
const HEX_WRAP: usize = 77;

/// The blanks regedit skips around a line's parts.
const WS: [char; 2] = [' ', '\t'];

/// A `.reg` file: its sections in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegFile {
    pub sections: Vec<Section>,
}

/// `[KEY]` and the entries below it, or `[-KEY]`, which deletes the key and its subtree.
///
/// regedit ignores entries below `[-KEY]`: [`render`] writes them all the same, and [`parse`]
/// rejects them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub key: KeyPath,
    /// `[-KEY]`
    pub delete: bool,
    pub entries: Vec<Entry>,
}

/// One value line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `""` is the key's default value, written `@`.
    pub name: String,
    pub op: Op,
}

/// What a value line does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Set(RegValue),
    /// `"name"=-`
    Delete,
}

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RegFileError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> RegFileError {
    RegFileError {
        line,
        message: message.into(),
    }
}

/// The file as regedit exports it: UTF-16LE with a byte-order mark, CRLF line ends.
///
/// A `REG_SZ` holding a NUL or a line break, which a quoted string cannot carry, is written as
/// `hex(1):`. Values that are not in their typed form's exact encoding (see [`parse`]) keep the
/// raw form they came in.
pub fn render(file: &RegFile) -> Vec<u8> {
    let mut text = format!("{HEADER_V5}\r\n\r\n");
    for section in &file.sections {
        let dash = if section.delete { "-" } else { "" };
        let _ = write!(text, "[{dash}{}]\r\n", section.key);
        for entry in &section.entries {
            render_entry(&mut text, entry);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
    }
    [0xff, 0xfe]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect()
}

fn render_entry(out: &mut String, entry: &Entry) {
    let start = out.len();
    if entry.name.is_empty() {
        out.push('@');
    } else {
        out.push('"');
        escape(out, &entry.name);
        out.push('"');
    }
    out.push('=');
    // regedit counts UTF-16 units when it wraps.
    let line_len = out[start..].encode_utf16().count();
    match &entry.op {
        Op::Delete => out.push('-'),
        Op::Set(RegValue::Dword(v)) => {
            let _ = write!(out, "dword:{v:08x}");
        }
        Op::Set(RegValue::Sz(s)) if !s.contains(['\0', '\r', '\n']) => {
            out.push('"');
            escape(out, s);
            out.push('"');
        }
        Op::Set(RegValue::Binary(data)) => render_hex(out, line_len, "hex:", data),
        Op::Set(value) => {
            let tag = format!("hex({:x}):", value.type_code());
            render_hex(out, line_len, &tag, &value.to_bytes());
        }
    }
}

/// Escapes for a quoted name or string. regedit escapes `\` and `"`; Wine also escapes line
/// breaks (only names reach this with one: string data with a line break goes out as hex).
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `tag` and the bytes as `xx,xx,...`, wrapped as regedit wraps: after each comma, once the line
/// is [`HEX_WRAP`] characters long, `\`, a line break and a two-space indent.
fn render_hex(out: &mut String, mut line_len: usize, tag: &str, data: &[u8]) {
    out.push_str(tag);
    line_len += tag.len();
    for (i, byte) in data.iter().enumerate() {
        let _ = write!(out, "{byte:02x}");
        if i + 1 == data.len() {
            break;
        }
        out.push(',');
        line_len += 3;
        if line_len >= HEX_WRAP {
            out.push_str("\\\r\n  ");
            line_len = 2;
        }
    }
}

/// Reads a `.reg` file: UTF-16LE with a byte-order mark, or UTF-8 with or without one; the
/// `Windows Registry Editor Version 5.00` or `REGEDIT4` header; CRLF or LF line ends.
///
/// Roots may be spelled in full or as `HKCU`, `HKLM`, `HKU`. In `REGEDIT4` files, `hex(2)` and
/// `hex(7)` data is 8-bit text in the ANSI code page: it is read as regedit reads it (widened,
/// NUL-terminated), but only when it is ASCII, since the code page is unknown here.
pub fn parse(bytes: &[u8]) -> Result<RegFile, RegFileError> {
    let text = decode(bytes)?;
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(i, line)| (i + 1, line));
    let header = lines.next().map_or("", |(_, line)| line.trim_matches(WS));
    let ansi = match header {
        HEADER_V5 => false,
        HEADER_V4 => true,
        other => {
            let found: String = other.chars().take(60).collect();
            return Err(error(
                1,
                format!("missing header: expected `{HEADER_V5}` or `{HEADER_V4}`, found {found:?}"),
            ));
        }
    };
    let mut file = RegFile::default();
    while let Some((no, line)) = lines.next() {
        let line = line.trim_matches(WS);
        if line.is_empty() || line.starts_with([';', '#']) {
            continue;
        }
        if let Some(key) = line.strip_prefix('[') {
            file.sections.push(parse_key(no, key)?);
            continue;
        }
        if !line.starts_with(['"', '@']) {
            return Err(error(
                no,
                "expected `[KEY]`, `\"name\"=...`, `@=...` or a `;` comment",
            ));
        }
        let section = match file.sections.last_mut() {
            None => return Err(error(no, "value line before any `[KEY]` line")),
            Some(section) if section.delete => {
                return Err(error(
                    no,
                    format!(
                        "value line below `[-{}]`, which deletes the key",
                        section.key
                    ),
                ))
            }
            Some(section) => section,
        };
        section
            .entries
            .push(parse_entry(no, line, ansi, &mut lines)?);
    }
    Ok(file)
}

fn decode(bytes: &[u8]) -> Result<String, RegFileError> {
    let line_of = |text: &str| text.matches('\n').count() + 1;
    if let Some(rest) = bytes.strip_prefix(&[0xff, 0xfe]) {
        let units = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        let mut text = String::with_capacity(rest.len() / 2);
        for c in char::decode_utf16(units) {
            let c = c.map_err(|_| error(line_of(&text), "invalid UTF-16: unpaired surrogate"))?;
            text.push(c);
        }
        if rest.len() % 2 == 1 {
            return Err(error(
                line_of(&text),
                "UTF-16 text ends in half a character",
            ));
        }
        return Ok(text);
    }
    if bytes.starts_with(&[0xfe, 0xff]) {
        return Err(error(
            1,
            "UTF-16BE is not supported (regedit writes UTF-16LE)",
        ));
    }
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| {
        let newlines = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n');
        error(
            newlines.count() + 1,
            "invalid UTF-8 (an 8-bit file must be UTF-8; regedit writes UTF-16LE with a BOM)",
        )
    })
}

/// `KEY]` or `-KEY]` (what follows the `[`).
fn parse_key(no: usize, rest: &str) -> Result<Section, RegFileError> {
    let inner = rest
        .strip_suffix(']')
        .ok_or_else(|| error(no, "key line does not end with `]`"))?;
    let (delete, name) = match inner.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, inner),
    };
    let mut parts = name.split('\\');
    let root = parts.next().unwrap_or_default();
    let root = Root::parse(root).ok_or_else(|| {
        error(
            no,
            format!(
                "unknown root key `{root}` (expected HKEY_CURRENT_USER, HKEY_LOCAL_MACHINE, \
                 HKEY_USERS, HKCU, HKLM or HKU)"
            ),
        )
    })?;
    let path: Vec<&str> = parts.collect();
    if path.iter().any(|part| part.is_empty()) {
        return Err(error(
            no,
            format!("empty key name in `{name}` (a doubled or trailing backslash)"),
        ));
    }
    Ok(Section {
        key: KeyPath::new(root, path.join("\\")),
        delete,
        entries: Vec::new(),
    })
}

/// `"name"=data`, `@=data` or `""=data`; `data` is `-` to delete.
fn parse_entry<'a>(
    no: usize,
    line: &'a str,
    ansi: bool,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<Entry, RegFileError> {
    let (name, rest) = match line.strip_prefix('@') {
        Some(rest) => (String::new(), rest),
        None => parse_quoted(no, &line[1..])?,
    };
    let data = rest
        .trim_start_matches(WS)
        .strip_prefix('=')
        .ok_or_else(|| error(no, "expected `=` after the value name"))?
        .trim_start_matches(WS);
    let op = match data.strip_prefix('-') {
        Some(after) => {
            expect_end(no, after)?;
            Op::Delete
        }
        None => Op::Set(parse_data(no, data, ansi, lines)?),
    };
    Ok(Entry { name, op })
}

/// A quoted string's text (`s` starts after the opening quote) and what follows the closing one.
fn parse_quoted(no: usize, s: &str) -> Result<(String, &str), RegFileError> {
    let mut text = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((text, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, c @ ('\\' | '"'))) => text.push(c),
                // Wine writes line breaks so.
                Some((_, 'n')) => text.push('\n'),
                Some((_, 'r')) => text.push('\r'),
                Some((_, c)) => {
                    return Err(error(
                        no,
                        format!("unknown escape `\\{c}` in a quoted string (use `\\\\` for `\\`)"),
                    ))
                }
                None => break,
            },
            c => text.push(c),
        }
    }
    Err(error(no, "unterminated string: no closing `\"`"))
}

/// Only blanks or a `;` comment may follow a value.
fn expect_end(no: usize, rest: &str) -> Result<(), RegFileError> {
    let rest = rest.trim_start_matches(WS);
    if rest.is_empty() || rest.starts_with(';') {
        Ok(())
    } else {
        Err(error(no, format!("unexpected `{rest}` after the value")))
    }
}

fn strip_comment(s: &str) -> &str {
    s.split_once(';').map_or(s, |(before, _)| before)
}

fn parse_data<'a>(
    no: usize,
    data: &'a str,
    ansi: bool,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<RegValue, RegFileError> {
    if let Some(s) = data.strip_prefix('"') {
        let (text, after) = parse_quoted(no, s)?;
        expect_end(no, after)?;
        return Ok(RegValue::Sz(text));
    }
    if let Some(digits) = data.strip_prefix("dword:") {
        let digits = strip_comment(digits).trim_end_matches(WS);
        return hex_number(digits, 8..=8)
            .map(RegValue::Dword)
            .ok_or_else(|| error(no, format!("dword value `{digits}` is not 8 hex digits")));
    }
    let (ty, hex) = if let Some(hex) = data.strip_prefix("hex:") {
        (3, hex)
    } else if let Some(rest) = data.strip_prefix("hex(") {
        let (ty, hex) = rest
            .split_once("):")
            .ok_or_else(|| error(no, "expected `hex(N):` with N the type in hex"))?;
        let n = hex_number(ty, 1..=8).ok_or_else(|| {
            error(
                no,
                format!("bad type `hex({ty})`: N must be 1 to 8 hex digits"),
            )
        })?;
        (n, hex)
    } else {
        return Err(error(
            no,
            format!("unknown data `{data}`: expected \"text\", dword:, hex:, hex(N): or -"),
        ));
    };
    let mut bytes = parse_hex(no, hex, lines)?;
    if ansi && (ty == 2 || ty == 7) {
        bytes = widen(no, &bytes)?;
    }
    Ok(typed_value(ty, bytes))
}

/// Comma-separated hex bytes, continued over lines ending in `\` as regedit continues them: the
/// `\` follows a comma, the next line that is neither blank nor a `;` comment goes on, and a
/// `;` comment may follow the data or the `\`.
fn parse_hex<'a>(
    mut no: usize,
    mut segment: &'a str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<Vec<u8>, RegFileError> {
    let mut bytes = Vec::new();
    loop {
        let data = strip_comment(segment).trim_matches(WS);
        let (data, more) = match data.strip_suffix('\\') {
            Some(data) => (data.trim_end_matches(WS), true),
            None => (data, false),
        };
        if !data.is_empty() {
            let list = match data.strip_suffix(',') {
                Some(list) => list,
                None if more => {
                    return Err(error(
                        no,
                        "hex data continued with `\\` must end in a comma",
                    ))
                }
                None => data,
            };
            for byte in list.split(',').map(|b| b.trim_matches(WS)) {
                let b = hex_number(byte, 2..=2).ok_or_else(|| {
                    error(
                        no,
                        format!("bad hex byte `{byte}` (expected two hex digits)"),
                    )
                })?;
                bytes.push(b as u8);
            }
        }
        if !more {
            return Ok(bytes);
        }
        (no, segment) = loop {
            let Some((next_no, line)) = lines.next() else {
                return Err(error(no, "hex data continued with `\\` but the file ends"));
            };
            let line = line.trim_matches(WS);
            if !line.is_empty() && !line.starts_with(';') {
                break (next_no, line);
            }
        };
    }
}

/// A number of `digits` hex digits, nothing else (no sign, no `0x`).
fn hex_number(s: &str, digits: std::ops::RangeInclusive<usize>) -> Option<u32> {
    let ok = digits.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| u32::from_str_radix(s, 16).ok()).flatten()
}

/// REGEDIT4 string data as regedit imports it: ANSI widened to UTF-16, NUL-terminated.
fn widen(no: usize, data: &[u8]) -> Result<Vec<u8>, RegFileError> {
    if let Some(b) = data.iter().find(|b| !b.is_ascii()) {
        return Err(error(
            no,
            format!(
                "byte {b:02x} in REGEDIT4 string data: its ANSI code page is unknown, so only \
                 ASCII is accepted"
            ),
        ));
    }
    let mut wide: Vec<u8> = data.iter().flat_map(|&b| [b, 0]).collect();
    if data.last().is_some_and(|&b| b != 0) {
        wide.extend([0, 0]);
    }
    Ok(wide)
}

/// The typed value whose encoding is exactly `data`, or the raw bytes.
fn typed_value(ty: u32, data: Vec<u8>) -> RegValue {
    let value = match ty {
        1 | 2 | 7 => decode_strings(ty, &data),
        _ => Some(RegValue::from_bytes(ty, &data)),
    };
    match value {
        Some(value) if value.to_bytes() == data => value,
        _ => RegValue::Other { ty, data },
    }
}

/// `REG_SZ`/`REG_EXPAND_SZ` text before its terminating NUL (keeping NULs inside), or
/// `REG_MULTI_SZ` items before the list's closing NUL.
fn decode_strings(ty: u32, data: &[u8]) -> Option<RegValue> {
    if !data.len().is_multiple_of(2) {
        return None;
    }
    let units = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    let text = char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()?;
    let text = text.strip_suffix('\0')?;
    Some(match ty {
        1 => RegValue::Sz(text.to_owned()),
        2 => RegValue::ExpandSz(text.to_owned()),
        _ if text.is_empty() => RegValue::MultiSz(Vec::new()),
        _ => RegValue::MultiSz(
            text.strip_suffix('\0')?
                .split('\0')
                .map(str::to_owned)
                .collect(),
        ),
    })
}

#[cfg(test)]
mod tests;
