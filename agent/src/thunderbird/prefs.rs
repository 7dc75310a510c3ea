//! Lossless reader/writer for Mozilla pref files (`prefs.js`, `user.js`,
//! default-pref files such as `/etc/thunderbird/pref/*.js`).
//!
//! The module does no I/O: it works on `&str` and returns `String`.
//!
//! # Grammar (as accepted by Mozilla's libpref parser)
//!
//! ```text
//! file      = statement*
//! statement = spec "(" string "," value ("," attr)* ")" ";"
//! spec      = "user_pref" | "pref" | "sticky_pref" | "lockPref" | "defaultPref"
//! value     = "true" | "false" | ("+" | "-")? [0-9]+ | string
//! attr      = "locked" | "sticky"          (not allowed on user_pref / defaultPref)
//! string    = '"' ... '"' | "'" ... "'"    escapes: \" \' \\ \n \r \xHH \uHHHH
//! ```
//!
//! `\xHH` inserts a raw byte (several may spell one UTF-8 character, e.g.
//! `\xC3\xA9`); `\uHHHH` is a UTF-16 unit, surrogate pairs combine. Other
//! escapes (`\t`, `\0`, ...) are errors, as in libpref. Non-ASCII text and
//! even raw line breaks may appear unescaped inside a string.
//!
//! Whitespace is space, tab, `\v`, `\f`, `\n`, `\r`; comments are `// ...`,
//! `# ...` (to end of line) and `/* ... */`. A line break is `\n`, `\r\n` or a
//! lone `\r`. A UTF-8 byte-order mark at the very start is accepted and kept.
//! Whitespace and comments may also sit between a sign and its digits.
//!
//! Errors carry the 1-based line and column (in characters) of the offending
//! token: the opening quote of an unterminated string, the `/*` of an
//! unterminated comment, the backslash of a bad escape, the start of an
//! out-of-range integer, or whatever stands where a `;`, `)`, value, ... was
//! expected.
//!
//! # Where this parser deliberately differs from libpref
//!
//! * libpref integers are 32-bit; this parser accepts the full `i64` range so
//!   that every [`PrefValue`] written by [`PrefsFile::set_user`] reads back.
//!   Values outside `i32` (and strings containing NUL, see below) are reported
//!   by [`PrefValue::is_libpref_compatible`]; Thunderbird would reject such a
//!   statement.
//! * libpref forbids `\x00` / `\u0000`; this parser accepts them for the same
//!   reason ([`quote`] writes a NUL as `\u0000`).
//! * libpref recovers from errors by skipping to the next `;`; this parser is
//!   strict and rejects the whole file with the position of the first error.
//! * A raw NUL character anywhere is an error (libpref silently treats it as
//!   the end of the file).
//! * libpref is told whether it reads a user or a default-pref file and
//!   allows `locked` / `sticky` only in the latter. This parser cannot know,
//!   so it accepts them on `pref`, `sticky_pref` and `lockPref` and rejects
//!   them on `user_pref` (the statement of user files) and `defaultPref`.
//!   `lockPref` is a keyword of Debian/Ubuntu builds' libpref and of
//!   AutoConfig; `defaultPref` is an AutoConfig function.
//!
//! # Writing
//!
//! [`PrefsFile`] keeps the original text; [`PrefsFile::render`] returns it
//! byte for byte, and the editing methods only touch the bytes they must.
//! New statements are written the way Thunderbird writes them:
//! `user_pref("name", value);` with strings double-quoted, only `\\`, `\"`,
//! `\n` and `\r` escaped (other control characters as `\u00XX`) and all other
//! characters raw.

use std::fmt;

const BOM: &str = "\u{FEFF}";

/// The value of a pref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefValue {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl PrefValue {
    /// Whether Thunderbird's own parser would accept this value: integers
    /// must fit in an `i32` and strings must not contain NUL.
    pub fn is_libpref_compatible(&self) -> bool {
        match self {
            PrefValue::Bool(_) => true,
            PrefValue::Int(i) => i32::try_from(*i).is_ok(),
            PrefValue::Str(s) => !s.contains('\0'),
        }
    }
}

impl fmt::Display for PrefValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefValue::Bool(b) => write!(f, "{b}"),
            PrefValue::Int(i) => write!(f, "{i}"),
            PrefValue::Str(s) => f.write_str(&quote(s)),
        }
    }
}

/// Which function a statement calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefKind {
    /// `user_pref(...)`
    User,
    /// `pref(...)`
    Default,
    /// `sticky_pref(...)`
    Sticky,
    /// `lockPref(...)`
    Lock,
    /// `defaultPref(...)`
    DefaultPref,
}

impl PrefKind {
    /// The function name as written in the file.
    pub fn keyword(self) -> &'static str {
        match self {
            PrefKind::User => "user_pref",
            PrefKind::Default => "pref",
            PrefKind::Sticky => "sticky_pref",
            PrefKind::Lock => "lockPref",
            PrefKind::DefaultPref => "defaultPref",
        }
    }

    fn from_keyword(word: &[u8]) -> Option<PrefKind> {
        Some(match word {
            b"user_pref" => PrefKind::User,
            b"pref" => PrefKind::Default,
            b"sticky_pref" => PrefKind::Sticky,
            b"lockPref" => PrefKind::Lock,
            b"defaultPref" => PrefKind::DefaultPref,
            _ => return None,
        })
    }

    /// libpref accepts `locked` / `sticky` only when it reads a default-pref
    /// file; in `prefs.js` / `user.js` it rejects them, which is where
    /// `user_pref` lives. AutoConfig's `defaultPref` takes two arguments.
    fn accepts_attributes(self) -> bool {
        matches!(self, PrefKind::Default | PrefKind::Sticky | PrefKind::Lock)
    }
}

/// One statement of a pref file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefEntry {
    pub kind: PrefKind,
    pub name: String,
    pub value: PrefValue,
    /// `lockPref`, or a `locked` attribute.
    pub locked: bool,
    /// `sticky_pref`, or a `sticky` attribute.
    pub sticky: bool,
    /// 1-based line of the first character of the statement.
    pub line: usize,
}

/// A syntax error, with the 1-based line and column (in characters, not
/// counting a leading byte-order mark) where it was detected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct PrefsError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Byte offsets of one statement in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    /// First byte of the function name.
    start: usize,
    /// One past the closing `;`.
    end: usize,
    /// First byte of the value (its sign, quote, first digit or letter).
    value_start: usize,
    /// One past the last byte of the value.
    value_end: usize,
}

/// A parsed pref file that remembers its exact text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefsFile {
    text: String,
    entries: Vec<PrefEntry>,
    /// `spans[i]` is where `entries[i]` sits in `text`.
    spans: Vec<Span>,
}

impl PrefsFile {
    /// Parses a whole file. Any syntax error rejects the file.
    pub fn parse(text: &str) -> Result<PrefsFile, PrefsError> {
        let mut parser = Parser {
            text,
            bytes: text.as_bytes(),
            pos: bom_len(text),
            line: 1,
            scratch: String::new(),
        };
        // Thunderbird writes one statement per line, of ~60 bytes on average.
        let estimate = text.len() / 64;
        let mut entries = Vec::with_capacity(estimate);
        let mut spans = Vec::with_capacity(estimate);
        let result = parser.parse_all(&mut entries, &mut spans);
        if let Err((offset, message)) = result {
            let (line, column) = line_col(text, offset);
            return Err(PrefsError {
                line,
                column,
                message,
            });
        }
        Ok(PrefsFile {
            text: text.to_owned(),
            entries,
            spans,
        })
    }

    /// All statements, in file order.
    pub fn entries(&self) -> &[PrefEntry] {
        &self.entries
    }

    /// The last statement (of any kind) for `name`.
    pub fn get(&self, name: &str) -> Option<&PrefEntry> {
        self.entries.iter().rev().find(|e| e.name == name)
    }

    /// The value of the last `user_pref` statement for `name`.
    pub fn get_user(&self, name: &str) -> Option<&PrefValue> {
        self.last_user_index(name).map(|i| &self.entries[i].value)
    }

    /// Sets a user pref. If a `user_pref` for `name` exists, only the value
    /// text of the last one is replaced (nothing is written if the value is
    /// already equal); otherwise `user_pref("name", value);` is appended on a
    /// new line, using the file's dominant line ending.
    pub fn set_user(&mut self, name: &str, value: &PrefValue) {
        match self.last_user_index(name) {
            Some(idx) => self.replace_value(idx, value),
            None => self.append_user(name, value),
        }
    }

    /// Removes every `user_pref` statement for `name`. A statement that is
    /// alone on its line(s) is removed together with that whole line;
    /// otherwise the statement and the horizontal whitespace that separated
    /// it from its neighbours are removed. Returns whether anything was
    /// removed.
    pub fn remove_user(&mut self, name: &str) -> bool {
        let targets: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].kind == PrefKind::User && self.entries[i].name == name)
            .collect();
        if targets.is_empty() {
            return false;
        }

        // Byte ranges to delete, in increasing order, merged when they touch.
        let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(targets.len());
        for &i in &targets {
            let (a, b) = self.removal_range(self.spans[i]);
            match ranges.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => ranges.push((a, b)),
            }
        }

        let mut text = String::with_capacity(self.text.len());
        let mut prev = 0;
        for &(a, b) in &ranges {
            text.push_str(&self.text[prev..a]);
            prev = b;
        }
        text.push_str(&self.text[prev..]);

        let mut entries = Vec::with_capacity(self.entries.len() - targets.len());
        let mut spans = Vec::with_capacity(entries.capacity());
        let mut removed_before = 0;
        let mut r = 0;
        let mut t = 0;
        for (i, (entry, span)) in self.entries.drain(..).zip(&self.spans).enumerate() {
            if t < targets.len() && targets[t] == i {
                t += 1;
                continue;
            }
            while r < ranges.len() && ranges[r].1 <= span.start {
                removed_before += ranges[r].1 - ranges[r].0;
                r += 1;
            }
            entries.push(entry);
            spans.push(Span {
                start: span.start - removed_before,
                end: span.end - removed_before,
                value_start: span.value_start - removed_before,
                value_end: span.value_end - removed_before,
            });
        }
        self.text = text;
        self.entries = entries;
        self.spans = spans;
        // Joining lines can turn a lone "\r" + "\n" into one "\r\n" line
        // break, so recount instead of adjusting.
        self.assign_lines();
        true
    }

    /// The file's text, including all edits.
    pub fn render(&self) -> String {
        self.text.clone()
    }

    fn last_user_index(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .rposition(|e| e.kind == PrefKind::User && e.name == name)
    }

    fn replace_value(&mut self, idx: usize, value: &PrefValue) {
        if self.entries[idx].value == *value {
            return;
        }
        let new_text = render_value(value);
        let span = self.spans[idx];
        let old_len = span.value_end - span.value_start;
        let new_len = new_text.len();
        // The old value may contain raw line breaks (in a string, or between
        // a sign and its digits); the new one never does. Neither starts or
        // ends with a line-break byte, so no "\r\n" pair can form or split.
        let lines_removed = count_line_breaks(&self.text[span.value_start..span.value_end]);
        self.text
            .replace_range(span.value_start..span.value_end, &new_text);
        let shift = |x: usize| x + new_len - old_len;
        self.spans[idx].value_end = span.value_start + new_len;
        self.spans[idx].end = shift(span.end);
        for s in &mut self.spans[idx + 1..] {
            s.start = shift(s.start);
            s.end = shift(s.end);
            s.value_start = shift(s.value_start);
            s.value_end = shift(s.value_end);
        }
        if lines_removed > 0 {
            for e in &mut self.entries[idx + 1..] {
                e.line -= lines_removed;
            }
        }
        self.entries[idx].value = value.clone();
    }

    fn append_user(&mut self, name: &str, value: &PrefValue) {
        let eol = self.dominant_line_ending();
        let body_start = bom_len(&self.text);
        if self.text.len() > body_start && !self.text.ends_with(['\n', '\r']) {
            self.text.push_str(eol);
        }
        let start = self.text.len();
        // Count only the lines after the last statement.
        let line = match (self.entries.last(), self.spans.last()) {
            (Some(entry), Some(span)) => entry.line + count_line_breaks(&self.text[span.start..]),
            _ => 1 + count_line_breaks(&self.text[body_start..]),
        };
        self.text.push_str("user_pref(");
        self.text.push_str(&quote(name));
        self.text.push_str(", ");
        let value_start = self.text.len();
        self.text.push_str(&render_value(value));
        let value_end = self.text.len();
        self.text.push_str(");");
        let end = self.text.len();
        self.text.push_str(eol);
        self.spans.push(Span {
            start,
            end,
            value_start,
            value_end,
        });
        self.entries.push(PrefEntry {
            kind: PrefKind::User,
            name: name.to_owned(),
            value: value.clone(),
            locked: false,
            sticky: false,
            line,
        });
    }

    /// The byte range that removing the statement at `span` deletes.
    fn removal_range(&self, span: Span) -> (usize, usize) {
        let bytes = self.text.as_bytes();
        let body_start = bom_len(&self.text);

        // Horizontal whitespace before the statement, and the line start.
        let mut before = span.start;
        while before > body_start && is_horizontal_space(bytes[before - 1]) {
            before -= 1;
        }
        let at_line_start = before == body_start || matches!(bytes[before - 1], b'\n' | b'\r');

        // Horizontal whitespace after the statement, and the line end.
        let mut after = span.end;
        while after < bytes.len() && is_horizontal_space(bytes[after]) {
            after += 1;
        }
        let at_line_end = after == bytes.len() || matches!(bytes[after], b'\n' | b'\r');

        match (at_line_start, at_line_end) {
            (true, true) => {
                let mut end = after;
                if end < bytes.len() {
                    end += if bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n') {
                        2
                    } else {
                        1
                    };
                }
                (before, end)
            }
            // Something precedes the statement on its line: keep the line
            // break, drop the whitespace that led up to the statement.
            (false, true) => (before, after),
            // Something follows: drop the statement and the gap after it.
            (_, false) => (span.start, after),
        }
    }

    /// "\r\n", "\n" or "\r", whichever ends most lines ("\n" on a tie or
    /// when the file has no line break).
    fn dominant_line_ending(&self) -> &'static str {
        let (lf, cr, crlf) = count_line_endings(self.text.as_bytes());
        let (lone_lf, lone_cr) = (lf - crlf, cr - crlf);
        if crlf > lone_lf && crlf >= lone_cr {
            "\r\n"
        } else if lone_cr > lone_lf && lone_cr > crlf {
            "\r"
        } else {
            "\n"
        }
    }

    /// Recomputes every entry's line number with one pass over the text.
    fn assign_lines(&mut self) {
        let bytes = self.text.as_bytes();
        let mut line = 1;
        let mut line_start = bom_len(&self.text);
        let mut next = 0; // first entry without a line yet
        while next < self.entries.len() {
            // End of the current line (its line-break byte), or of the text.
            let mut line_end = bytes.len();
            let mut from = line_start;
            while let Some(p) = find_special(&bytes[from..], b'\n', b'\n') {
                if matches!(bytes[from + p], b'\n' | b'\r') {
                    line_end = from + p;
                    break;
                }
                from += p + 1;
            }
            // A statement never starts on a line-break byte.
            while next < self.entries.len() && self.spans[next].start < line_end {
                self.entries[next].line = line;
                next += 1;
            }
            line += 1;
            line_start = line_end + 1;
            if bytes.get(line_end..line_end + 2) == Some(b"\r\n") {
                line_start += 1;
            }
        }
    }
}

/// Quotes a string the way Thunderbird writes it: double quotes, `\\`, `\"`,
/// `\n` and `\r` escaped, other control characters (including tab and DEL)
/// as `\u00XX`, everything else raw.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The source text of a value: `true`, `false`, a decimal integer or a
/// [`quote`]d string.
pub fn render_value(v: &PrefValue) -> String {
    v.to_string()
}

fn bom_len(text: &str) -> usize {
    if text.starts_with(BOM) {
        BOM.len()
    } else {
        0
    }
}

fn is_horizontal_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0B | 0x0C)
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_continue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Number of line breaks (`\n`, `\r\n`, lone `\r`) in `s`.
fn count_line_breaks(s: &str) -> usize {
    count_line_breaks_bytes(s.as_bytes())
}

fn count_line_breaks_bytes(bytes: &[u8]) -> usize {
    let (lf, cr, crlf) = count_line_endings(bytes);
    lf + cr - crlf
}

/// Numbers of `\n` bytes, `\r` bytes and `\r\n` pairs in `bytes`.
fn count_line_endings(bytes: &[u8]) -> (usize, usize, usize) {
    // Counting into u8 lanes over chunks of at most 255 bytes lets the
    // compiler vectorize these loops (several times faster than
    // `filter().count()` on the baseline x86-64 target).
    fn count(bytes: &[u8], pred: impl Fn(u8) -> bool + Copy) -> usize {
        bytes
            .chunks(255)
            .map(|c| usize::from(c.iter().fold(0u8, |n, &b| n + u8::from(pred(b)))))
            .sum()
    }
    let lf = count(bytes, |b| b == b'\n');
    let cr = count(bytes, |b| b == b'\r');
    if cr == 0 || bytes.len() < 2 {
        return (lf, cr, 0);
    }
    let (first, second) = (&bytes[..bytes.len() - 1], &bytes[1..]);
    let crlf = first
        .chunks(255)
        .zip(second.chunks(255))
        .map(|(a, b)| {
            let pairs = a.iter().zip(b);
            usize::from(pairs.fold(0u8, |n, (&x, &y)| n + u8::from(x == b'\r' && y == b'\n')))
        })
        .sum();
    (lf, cr, crlf)
}

/// Index of the first byte in `hay` that is a control character (below
/// 0x20: NUL, line breaks, tab, ...) or equal to `a` or `b`.
///
/// Checks eight bytes at a time (SWAR) before falling back to a byte loop;
/// strings and comments are most of a pref file, so this is the hot loop.
fn find_special(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Non-zero iff some byte of `x` is below `n` (exact for n <= 0x80).
    let has_less = |x: u64, n: u8| x.wrapping_sub(LO * u64::from(n)) & !x & HI;
    let (va, vb) = (LO * u64::from(a), LO * u64::from(b));
    let mut skipped = 0;
    for chunk in hay.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        if has_less(x, 0x20) | has_less(x ^ va, 1) | has_less(x ^ vb, 1) != 0 {
            break;
        }
        skipped += 8;
    }
    hay[skipped..]
        .iter()
        .position(|&x| x < 0x20 || x == a || x == b)
        .map(|p| p + skipped)
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let start = bom_len(text);
    let offset = offset.max(start);
    let before = &text.as_bytes()[start..offset];
    let line = 1 + count_line_breaks_bytes(before);
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n' || b == b'\r')
        .map_or(0, |p| p + 1);
    let column = 1 + before[line_start..]
        .iter()
        .filter(|&&b| (b & 0xC0) != 0x80)
        .count();
    (line, column)
}

/// Internal error: byte offset and message.
type PErr = (usize, String);

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// 1-based line of `pos`.
    line: usize,
    /// Reused buffer for decoding string literals that contain escapes.
    scratch: String,
}

const EXPECTED_STATEMENT: &str =
    "expected a pref statement (user_pref, pref, sticky_pref, lockPref or defaultPref)";
const EXPECTED_VALUE: &str = "expected a pref value (true, false, an integer or a quoted string)";
const NUL_MESSAGE: &str = "NUL character (libpref would treat it as the end of the file)";

impl Parser<'_> {
    fn parse_all(
        &mut self,
        entries: &mut Vec<PrefEntry>,
        spans: &mut Vec<Span>,
    ) -> Result<(), PErr> {
        loop {
            self.skip_trivia()?;
            if self.pos == self.bytes.len() {
                return Ok(());
            }
            let (entry, span) = self.statement()?;
            entries.push(entry);
            spans.push(span);
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Describes what sits at `pos`, for error messages.
    fn found_at(&self, pos: usize) -> String {
        match self.text[pos..].chars().next() {
            None => "end of file".to_owned(),
            Some(c) if c.is_ascii_graphic() => format!("`{c}`"),
            Some(c) => format!("{c:?}"),
        }
    }

    fn expected(&self, what: &str) -> PErr {
        (
            self.pos,
            format!("{what}, found {}", self.found_at(self.pos)),
        )
    }

    fn expect_byte(&mut self, b: u8, what: &str) -> Result<(), PErr> {
        self.skip_trivia()?;
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// Reads `[A-Za-z_][A-Za-z0-9_]*` if present.
    fn ident(&mut self) -> Option<&'_ [u8]> {
        let start = self.pos;
        if !self.peek().is_some_and(is_ident_start) {
            return None;
        }
        self.pos += 1;
        while self.peek().is_some_and(is_ident_continue) {
            self.pos += 1;
        }
        Some(&self.bytes[start..self.pos])
    }

    fn skip_trivia(&mut self) -> Result<(), PErr> {
        let bytes = self.bytes;
        loop {
            match bytes.get(self.pos) {
                Some(b' ' | b'\t' | 0x0B | 0x0C) => self.pos += 1,
                Some(b'\n') => self.newline(),
                Some(b'\r') => self.carriage_return(),
                Some(b'#') => self.skip_line_comment()?,
                Some(b'/') => match bytes.get(self.pos + 1) {
                    Some(b'/') => self.skip_line_comment()?,
                    Some(b'*') => self.skip_block_comment()?,
                    _ => {
                        return Err((
                            self.pos,
                            format!(
                            "expected '/' or '*' after '/' (comments are // or /* */), found {}",
                            self.found_at(self.pos + 1)
                        ),
                        ))
                    }
                },
                Some(0) => return Err((self.pos, NUL_MESSAGE.to_owned())),
                _ => return Ok(()),
            }
        }
    }

    /// Consumes a `\n` at `pos`.
    fn newline(&mut self) {
        self.pos += 1;
        self.line += 1;
    }

    /// Consumes a `\r` at `pos`; it ends a line unless a `\n` follows.
    fn carriage_return(&mut self) {
        self.pos += 1;
        if self.peek() != Some(b'\n') {
            self.line += 1;
        }
    }

    /// Skips to the line break (not consumed) or the end of the text.
    fn skip_line_comment(&mut self) -> Result<(), PErr> {
        while let Some(p) = find_special(&self.bytes[self.pos..], b'\n', b'\n') {
            self.pos += p;
            match self.bytes[self.pos] {
                b'\n' | b'\r' => return Ok(()),
                0 => return Err((self.pos, NUL_MESSAGE.to_owned())),
                _ => self.pos += 1, // tab or another control character
            }
        }
        self.pos = self.bytes.len();
        Ok(())
    }

    fn skip_block_comment(&mut self) -> Result<(), PErr> {
        let open = self.pos;
        self.pos += 2;
        while let Some(p) = find_special(&self.bytes[self.pos..], b'*', b'*') {
            self.pos += p;
            match self.bytes[self.pos] {
                b'*' if self.bytes.get(self.pos + 1) == Some(&b'/') => {
                    self.pos += 2;
                    return Ok(());
                }
                b'\n' => self.newline(),
                b'\r' => self.carriage_return(),
                0 => return Err((self.pos, NUL_MESSAGE.to_owned())),
                _ => self.pos += 1,
            }
        }
        Err((open, "unterminated /* comment (expected */)".to_owned()))
    }

    fn statement(&mut self) -> Result<(PrefEntry, Span), PErr> {
        let start = self.pos;
        let line = self.line;
        let kind = match self.ident() {
            Some(word) => match PrefKind::from_keyword(word) {
                Some(kind) => kind,
                None => {
                    return Err((
                        start,
                        format!(
                            "unknown pref function `{}`; {EXPECTED_STATEMENT}",
                            String::from_utf8_lossy(word)
                        ),
                    ))
                }
            },
            None => return Err(self.expected(EXPECTED_STATEMENT)),
        };

        self.skip_trivia()?;
        if self.peek() != Some(b'(') {
            return Err(self.expected(&format!("expected '(' after `{}`", kind.keyword())));
        }
        self.pos += 1;

        self.skip_trivia()?;
        let name = match self.peek() {
            Some(b'"' | b'\'') => self.string()?,
            _ => return Err(self.expected("expected a pref name (a quoted string) after '('")),
        };

        self.expect_byte(b',', "expected ',' after the pref name")?;

        self.skip_trivia()?;
        let value_start = self.pos;
        let value = self.value()?;
        let value_end = self.pos;

        let mut locked = kind == PrefKind::Lock;
        let mut sticky = kind == PrefKind::Sticky;
        let mut after_attr = false;
        loop {
            self.skip_trivia()?;
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    break;
                }
                Some(b',') if kind.accepts_attributes() => {
                    self.pos += 1;
                    self.skip_trivia()?;
                    let attr_pos = self.pos;
                    match self.ident() {
                        Some(b"locked") => locked = true,
                        Some(b"sticky") => sticky = true,
                        _ => {
                            self.pos = attr_pos;
                            return Err(self.expected(
                                "expected a pref attribute (`locked` or `sticky`) after ','",
                            ));
                        }
                    }
                    after_attr = true;
                }
                Some(b',') => {
                    return Err((
                        self.pos,
                        format!(
                        "expected ')' after the pref value, found `,` (`{}` takes no attributes)",
                        kind.keyword()
                    ),
                    ))
                }
                _ => {
                    let what = match (kind.accepts_attributes(), after_attr) {
                        (false, _) => "expected ')' after the pref value",
                        (true, false) => "expected ',' or ')' after the pref value",
                        (true, true) => "expected ',' or ')' after the pref attribute",
                    };
                    return Err(self.expected(what));
                }
            }
        }

        self.expect_byte(b';', "expected ';' after ')'")?;

        Ok((
            PrefEntry {
                kind,
                name,
                value,
                locked,
                sticky,
                line,
            },
            Span {
                start,
                end: self.pos,
                value_start,
                value_end,
            },
        ))
    }

    fn value(&mut self) -> Result<PrefValue, PErr> {
        let start = self.pos;
        match self.peek() {
            Some(b'"' | b'\'') => Ok(PrefValue::Str(self.string()?)),
            Some(sign @ (b'+' | b'-')) => {
                self.pos += 1;
                self.skip_trivia()?;
                if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return Err(self.expected(&format!(
                        "expected an integer literal after '{}'",
                        char::from(sign)
                    )));
                }
                self.integer(start, sign == b'-')
            }
            Some(b'0'..=b'9') => self.integer(start, false),
            Some(b) if is_ident_start(b) => match self.ident() {
                Some(b"true") => Ok(PrefValue::Bool(true)),
                Some(b"false") => Ok(PrefValue::Bool(false)),
                _ => {
                    self.pos = start;
                    Err(self.expected(EXPECTED_VALUE))
                }
            },
            _ => Err(self.expected(&format!("{EXPECTED_VALUE} after ','"))),
        }
    }

    /// Reads the digits at `pos`; `start` is where the value (its sign)
    /// began.
    fn integer(&mut self, start: usize, negative: bool) -> Result<PrefValue, PErr> {
        let mut magnitude: Option<u64> = Some(0);
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            magnitude = magnitude
                .and_then(|m| m.checked_mul(10))
                .and_then(|m| m.checked_add(u64::from(b - b'0')));
            self.pos += 1;
        }
        if self.peek().is_some_and(is_ident_start) {
            return Err((
                self.pos,
                format!(
                    "unexpected character {} in integer literal",
                    self.found_at(self.pos)
                ),
            ));
        }
        let value = magnitude.and_then(|m| {
            let m = i128::from(m);
            i64::try_from(if negative { -m } else { m }).ok()
        });
        value.map(PrefValue::Int).ok_or_else(|| {
            (
                start,
                format!(
                    "integer literal `{}` is out of range (must fit in a signed 64-bit integer)",
                    &self.text[start..self.pos]
                ),
            )
        })
    }

    /// Reads a quoted string starting at the opening quote at `pos`.
    fn string(&mut self) -> Result<String, PErr> {
        let bytes = self.bytes;
        let open = self.pos;
        let quote_char = bytes[open];
        let content_start = open + 1;
        let unterminated = || {
            (
                open,
                format!(
                    "unterminated string literal (no closing {})",
                    char::from(quote_char)
                ),
            )
        };

        // Without escapes the literal is a slice of the text. Otherwise it is
        // decoded into `out`; `copied` is where the run of ordinary bytes not
        // yet copied there starts. Runs start and end next to ASCII bytes, so
        // they are whole UTF-8 sequences.
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let mut escaped = false;
        let mut copied = content_start;
        self.pos = content_start;
        let result = loop {
            let Some(p) = find_special(&bytes[self.pos..], quote_char, b'\\') else {
                break Err(unterminated());
            };
            self.pos += p;
            match bytes[self.pos] {
                b if b == quote_char => {
                    let end = self.pos;
                    self.pos += 1;
                    let raw = &self.text[copied..end];
                    if escaped {
                        out.push_str(raw);
                        break Ok(out.as_str().to_owned());
                    }
                    break Ok(raw.to_owned());
                }
                b'\\' if self.pos + 1 == bytes.len() => break Err(unterminated()),
                b'\\' => {
                    escaped = true;
                    out.push_str(&self.text[copied..self.pos]);
                    match self.escape(self.pos, &mut out) {
                        Ok(next) => self.pos = next,
                        Err(e) => break Err(e),
                    }
                    copied = self.pos;
                }
                b'\n' => self.newline(),
                b'\r' => self.carriage_return(),
                0 => break Err((self.pos, NUL_MESSAGE.to_owned())),
                _ => self.pos += 1, // tab or another control character
            }
        };
        self.scratch = out;
        result
    }

    /// Reads the `\xHH` escape at `esc` into `out`. `\xHH` inserts a raw
    /// byte, so a byte of 0x80 or more must start a UTF-8 sequence whose
    /// remaining bytes are the `\xHH` escapes right after it. (Raw text and
    /// other escapes only ever contribute whole characters, so this is the
    /// same as checking the decoded string for UTF-8 validity.)
    fn byte_escapes(&self, esc: usize, out: &mut String) -> Result<usize, PErr> {
        let bytes = self.bytes;
        let byte_at = |at: usize| {
            hex_at(bytes, at + 2, 2)
                .and_then(|v| u8::try_from(v).ok())
                .ok_or_else(|| {
                    let msg = "malformed \\x escape (expected exactly 2 hex digits after \\x)";
                    (at, msg.to_owned())
                })
        };
        let lead = byte_at(esc)?;
        let width = match lead {
            0x00..=0x7F => {
                out.push(char::from(lead));
                return Ok(esc + 4);
            }
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 0,
        };
        let invalid = || {
            (
                esc,
                format!(
                    "\\x{lead:02X} does not start a valid UTF-8 sequence of \\x escapes \
                     (\\xHH inserts a raw byte)"
                ),
            )
        };
        let mut seq = [lead, 0, 0, 0];
        let mut end = esc + 4;
        for slot in seq.iter_mut().take(width).skip(1) {
            if bytes.get(end..end + 2) != Some(b"\\x") {
                return Err(invalid());
            }
            *slot = byte_at(end)?;
            end += 4;
        }
        match std::str::from_utf8(&seq[..width]) {
            Ok(decoded) if width > 0 => {
                out.push_str(decoded);
                Ok(end)
            }
            _ => Err(invalid()),
        }
    }

    /// Decodes the escape sequence whose backslash is at `esc` (and is not
    /// the last byte) into `out`; returns the index just past it.
    fn escape(&self, esc: usize, out: &mut String) -> Result<usize, PErr> {
        let bytes = self.bytes;
        let i = esc + 1;
        let simple = match bytes[i] {
            b'"' => Some('"'),
            b'\'' => Some('\''),
            b'\\' => Some('\\'),
            b'n' => Some('\n'),
            b'r' => Some('\r'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            return Ok(i + 1);
        }
        match bytes[i] {
            b'x' => self.byte_escapes(esc, out),
            b'u' => {
                let malformed = || {
                    let msg = "malformed \\u escape (expected exactly 4 hex digits after \\u)";
                    (esc, msg.to_owned())
                };
                let unit = hex_at(bytes, i + 1, 4).ok_or_else(malformed)?;
                let mut end = i + 5;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        let low = match bytes.get(end..end + 2) {
                            Some(b"\\u") => hex_at(bytes, end + 2, 4),
                            _ => None,
                        };
                        let Some(low @ 0xDC00..=0xDFFF) = low else {
                            return Err((
                                esc,
                                format!(
                                    "lone surrogate \\u{unit:04X} (a high surrogate must be \
                                     followed by a \\uDC00-\\uDFFF low surrogate)"
                                ),
                            ));
                        };
                        end += 6;
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err((
                            esc,
                            format!(
                                "lone surrogate \\u{unit:04X} (a low surrogate must follow a \
                                 \\uD800-\\uDBFF high surrogate)"
                            ),
                        ));
                    }
                    _ => unit,
                };
                // Surrogates are handled above, so this always succeeds.
                out.push(char::from_u32(code).ok_or_else(malformed)?);
                Ok(end)
            }
            _ => {
                let c = self.text[i..].chars().next().unwrap_or('\u{FFFD}');
                let shown = if c.is_ascii_graphic() {
                    format!("`\\{c}`")
                } else {
                    format!("'\\' followed by {c:?}")
                };
                Err((
                    esc,
                    format!(
                        "unknown escape sequence {shown} in string literal \
                         (allowed: \\\" \\' \\\\ \\n \\r \\xHH \\uHHHH)"
                    ),
                ))
            }
        }
    }
}

/// Parses exactly `n` hex digits at `bytes[at..]`.
fn hex_at(bytes: &[u8], at: usize, n: usize) -> Option<u32> {
    let digits = bytes.get(at..at + n)?;
    digits
        .iter()
        .try_fold(0u32, |acc, &b| Some(acc * 16 + char::from(b).to_digit(16)?))
}

// `#[path]` keeps the location the same whether this file is compiled as
// `thunderbird/prefs.rs` or pulled in elsewhere with `#[path]`.
#[cfg(test)]
#[path = "prefs/tests.rs"]
mod tests;
