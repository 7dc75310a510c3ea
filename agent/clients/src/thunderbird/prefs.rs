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
//!
//! # Lookups
//!
//! A name may have several statements. [`PrefsFile::get`] returns the last one of any kind,
//! [`PrefsFile::get_user`] the last `user_pref` (the user value libpref ends up with), and
//! [`PrefsFile::entries_named`] all of them in file order, for callers with their own rule (the
//! default-pref layers). Names are compared exactly: case-sensitive, after decoding (`'a'` and
//! `"\x61"` are one name). [`PrefsFile`] keeps an index from each name to its statements,
//! built at parse and kept up to date by the editing methods, so a lookup costs about the same
//! in a 50-line user.js and in a 30,000-line prefs.js.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, DefaultHasher, Hasher};

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

/// The indices in `entries` of the statements whose names have one hash, ascending. Almost
/// every name has a single statement and a hash of its own, which then costs no allocation.
/// Always canonical (`Many` holds two or more), so that an index kept up to date by edits
/// equals one built by a fresh parse.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slots {
    One(usize),
    Many(Vec<usize>),
}

impl Slots {
    fn as_slice(&self) -> &[usize] {
        match self {
            Slots::One(i) => std::slice::from_ref(i),
            Slots::Many(v) => v,
        }
    }

    /// Adds `i`, which must be greater than every index already held.
    fn push(&mut self, i: usize) {
        match self {
            Slots::One(first) => *self = Slots::Many(vec![*first, i]),
            Slots::Many(v) => v.push(i),
        }
    }

    fn from_vec(mut v: Vec<usize>) -> Option<Slots> {
        match v.len() {
            0 => None,
            1 => Some(Slots::One(v[0])),
            _ => {
                v.shrink_to_fit();
                Some(Slots::Many(v))
            }
        }
    }

    fn map_in_place(&mut self, f: impl Fn(usize) -> usize) {
        match self {
            Slots::One(i) => *i = f(*i),
            Slots::Many(v) => v.iter_mut().for_each(|i| *i = f(*i)),
        }
    }
}

/// [`name_hash`] of a name → the statements for it (and for the rare other names with the same
/// hash: lookups compare the names). Keying by the hash instead of a copy of the name saves an
/// allocation, a copy and a free per statement: parsing and dropping the 2,000-account prefs.js
/// of `benches/prefs.rs` took 15 ms with names as keys, 8.5 ms with hashes (7.5 ms without an
/// index).
type NameIndex = HashMap<u64, Slots, BuildHasherDefault<PassThrough>>;

/// SipHash with fixed keys: equal files get equal indices. (A user who writes names that
/// collide on purpose only slows lookups of those names down to a scan of them.)
fn name_hash(name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(name.as_bytes());
    h.finish()
}

/// The hasher of [`NameIndex`], whose keys are hashes already.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; this keeps the hasher correct for any other key anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn build_index(entries: &[PrefEntry]) -> NameIndex {
    let mut index = NameIndex::with_capacity_and_hasher(entries.len(), Default::default());
    for (i, e) in entries.iter().enumerate() {
        index
            .entry(name_hash(&e.name))
            .and_modify(|s| s.push(i))
            .or_insert(Slots::One(i));
    }
    index
}

/// How many `\n` bytes, `\r` bytes and `\r\n` pairs a text holds. Kept for the whole file
/// so that appending a statement does not rescan it for its dominant line ending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LineEndings {
    lf: usize,
    cr: usize,
    crlf: usize,
}

impl LineEndings {
    /// Number of line breaks (`\n`, `\r\n`, lone `\r`).
    fn breaks(self) -> usize {
        self.lf + self.cr - self.crlf
    }
}

/// A parsed pref file that remembers its exact text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefsFile {
    text: String,
    entries: Vec<PrefEntry>,
    /// `spans[i]` is where `entries[i]` sits in `text`.
    spans: Vec<Span>,
    /// Every name's statements. Derived from `entries`; part of the equality only because a
    /// correct index is equal whenever the entries are, which lets every test comparing an
    /// edited file with a fresh parse of its text check the index too.
    index: NameIndex,
    /// The line endings of `text` (same remark as for `index`).
    line_endings: LineEndings,
}

impl PrefsFile {
    /// Parses a whole file. Any syntax error rejects the file.
    pub fn parse(text: &str) -> Result<PrefsFile, PrefsError> {
        let mut parser = Parser {
            text,
            bytes: text.as_bytes(),
            pos: bom_len(text),
            line: 1,
            line_endings: LineEndings::default(),
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
            index: build_index(&entries),
            entries,
            spans,
            line_endings: parser.line_endings,
        })
    }

    /// All statements, in file order.
    pub fn entries(&self) -> &[PrefEntry] {
        &self.entries
    }

    /// Every statement for `name` (compared exactly, after decoding), in file order.
    pub fn entries_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl DoubleEndedIterator<Item = &'a PrefEntry> + use<'a, 'n> {
        self.indices_named(name).map(|i| &self.entries[i])
    }

    /// The last statement (of any kind) for `name`.
    pub fn get(&self, name: &str) -> Option<&PrefEntry> {
        self.entries_named(name).next_back()
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
        let hash = name_hash(name);
        let (targets, kept): (Vec<usize>, Vec<usize>) = self
            .index
            .get(&hash)
            .map_or(&[][..], Slots::as_slice)
            .iter()
            .partition(|&&i| {
                self.entries[i].kind == PrefKind::User && self.entries[i].name == name
            });
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

        // Renumber the index: every statement after a removed one moved up. `targets` is
        // ascending and all of them are under `hash`.
        let new_index = |i: usize| i - targets.partition_point(|&t| t < i);
        self.index.remove(&hash);
        for slots in self.index.values_mut() {
            slots.map_in_place(new_index);
        }
        let kept = kept.into_iter().map(new_index).collect();
        if let Some(slots) = Slots::from_vec(kept) {
            self.index.insert(hash, slots);
        }

        // Joining lines can turn a lone "\r" + "\n" into one "\r\n" line
        // break, so recount instead of adjusting.
        self.assign_lines();
        true
    }

    /// The file's text, including all edits.
    pub fn render(&self) -> String {
        self.text.clone()
    }

    /// Indices of the statements for `name`, ascending.
    fn indices_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl DoubleEndedIterator<Item = usize> + use<'a, 'n> {
        let slots = self
            .index
            .get(&name_hash(name))
            .map_or(&[][..], Slots::as_slice);
        slots
            .iter()
            .copied()
            .filter(move |&i| self.entries[i].name == name)
    }

    fn last_user_index(&self, name: &str) -> Option<usize> {
        self.indices_named(name)
            .rev()
            .find(|&i| self.entries[i].kind == PrefKind::User)
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
        let old = count_line_endings(&self.text.as_bytes()[span.value_start..span.value_end]);
        self.line_endings.lf -= old.lf;
        self.line_endings.cr -= old.cr;
        self.line_endings.crlf -= old.crlf;
        let lines_removed = old.breaks();
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
        // The text does not end with a line-break byte where one is added, and `quote` writes
        // none, so no "\r\n" pair forms across what is appended.
        if self.text.len() > body_start && !self.text.ends_with(['\n', '\r']) {
            self.push_eol(eol);
        }
        let start = self.text.len();
        // Count only the lines after the last statement.
        let line = match (self.entries.last(), self.spans.last()) {
            (Some(entry), Some(span)) => entry.line + count_line_breaks(&self.text[span.start..]),
            _ => 1 + self.line_endings.breaks(),
        };
        self.text.push_str("user_pref(");
        self.text.push_str(&quote(name));
        self.text.push_str(", ");
        let value_start = self.text.len();
        self.text.push_str(&render_value(value));
        let value_end = self.text.len();
        self.text.push_str(");");
        let end = self.text.len();
        self.push_eol(eol);
        let idx = self.entries.len();
        self.index
            .entry(name_hash(name))
            .and_modify(|s| s.push(idx))
            .or_insert(Slots::One(idx));
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

    fn push_eol(&mut self, eol: &str) {
        self.text.push_str(eol);
        let added = count_line_endings(eol.as_bytes());
        self.line_endings.lf += added.lf;
        self.line_endings.cr += added.cr;
        self.line_endings.crlf += added.crlf;
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
        let LineEndings { lf, cr, crlf } = self.line_endings;
        let (lone_lf, lone_cr) = (lf - crlf, cr - crlf);
        if crlf > lone_lf && crlf >= lone_cr {
            "\r\n"
        } else if lone_cr > lone_lf && lone_cr > crlf {
            "\r"
        } else {
            "\n"
        }
    }

    /// Recomputes every entry's line number and the line-ending counts with one pass over the
    /// text.
    fn assign_lines(&mut self) {
        let bytes = self.text.as_bytes();
        let mut counts = LineEndings::default();
        let mut line = 1;
        let mut next = 0; // first entry without a line yet
        for (i, &b) in bytes.iter().enumerate() {
            let ends_line = match b {
                b'\n' => {
                    counts.lf += 1;
                    true
                }
                b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                    counts.cr += 1;
                    counts.crlf += 1;
                    false // the "\n" ends the line
                }
                b'\r' => {
                    counts.cr += 1;
                    true
                }
                _ => false,
            };
            if ends_line {
                // A statement never starts on a line-break byte.
                while next < self.entries.len() && self.spans[next].start < i {
                    self.entries[next].line = line;
                    next += 1;
                }
                line += 1;
            }
        }
        for entry in &mut self.entries[next..] {
            entry.line = line;
        }
        self.line_endings = counts;
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
    count_line_endings(s.as_bytes()).breaks()
}

/// The line endings in `bytes`.
///
/// A plain loop, on purpose: it only counts a value, a line ending or the text after the last
/// statement, and the text before a syntax error for its message. The file's own counts are
/// kept in [`PrefsFile`] (the parser and `assign_lines` count as they go), so appending no
/// longer rescans the whole file, which is what the vectorised counting this replaced was for.
fn count_line_endings(bytes: &[u8]) -> LineEndings {
    let mut counts = LineEndings::default();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' => counts.lf += 1,
            b'\r' => {
                counts.cr += 1;
                if bytes.get(i + 1) == Some(&b'\n') {
                    counts.crlf += 1;
                }
            }
            _ => {}
        }
    }
    counts
}

/// Index of the first byte in `hay` that is a control character (below
/// 0x20: NUL, line breaks, tab, ...) or equal to `a` or `b`.
///
/// A plain loop. The SWAR version (eight bytes at a time) it replaced parsed the 1.8 MB
/// prefs.js of 2,000 accounts in `benches/prefs.rs` in 8.0 ms instead of 9.5 ms (best of
/// several runs): strings in pref files are short, and 1.5 ms at the largest size does not
/// justify the bit tricks against a 60 ms budget for the whole `check`.
fn find_special(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    hay.iter().position(|&x| x < 0x20 || x == a || x == b)
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let start = bom_len(text);
    let offset = offset.max(start);
    let before = &text.as_bytes()[start..offset];
    let line = 1 + count_line_endings(before).breaks();
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
    /// The line breaks consumed so far.
    line_endings: LineEndings,
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

    /// Consumes a `\n` at `pos`. Every line-break byte of the text is consumed by this or
    /// [`Parser::carriage_return`].
    fn newline(&mut self) {
        self.pos += 1;
        self.line += 1;
        self.line_endings.lf += 1;
    }

    /// Consumes a `\r` at `pos`; it ends a line unless a `\n` follows.
    fn carriage_return(&mut self) {
        self.pos += 1;
        self.line_endings.cr += 1;
        if self.peek() == Some(b'\n') {
            self.line_endings.crlf += 1;
        } else {
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
