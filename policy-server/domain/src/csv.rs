//! CSV in and out.
//!
//! In: the per-user variables of `POST /api/v1/users/variables` (header `user,user.email,…`),
//! all rows or none, every error located by line and column. Out: RFC 4180 (CRLF line ends,
//! quotes doubled), with cells that a spreadsheet would run as a formula defused by a leading `'`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use postwarden_wire::v1::FieldError;

use crate::names::{check, NameKind};
use crate::text::clip;

/// Most data rows of one upload.
pub const MAX_ROWS: usize = 100_000;
/// Most columns (the user and 63 variables).
pub const MAX_COLUMNS: usize = 64;
/// The longest cell, in bytes.
pub const MAX_CELL: usize = 4096;
/// The most errors one answer lists; when there are more, the last one says how many were left
/// out.
pub const MAX_ERRORS: usize = 100;

/// One user's variables: the user key, and each variable set for them.
pub type UserVariables = (String, BTreeMap<String, String>);

/// The errors found so far: at most [`MAX_ERRORS`] - 1 listed, the rest counted.
#[derive(Default)]
struct Errors {
    listed: Vec<FieldError>,
    left_out: u64,
    first_left_out: Option<u64>,
}

impl Errors {
    fn push(&mut self, line: u64, column: u64, field: Option<&str>, message: impl Into<String>) {
        if self.listed.len() + 1 < MAX_ERRORS {
            self.listed.push(FieldError {
                line,
                column,
                field: field.map(|f| clip(f, 64)),
                message: message.into(),
            });
        } else {
            self.left_out += 1;
            self.first_left_out.get_or_insert(line);
        }
    }

    fn is_empty(&self) -> bool {
        self.listed.is_empty() && self.left_out == 0
    }

    fn finish(mut self) -> Vec<FieldError> {
        if let Some(line) = self.first_left_out {
            self.listed.push(FieldError {
                line,
                column: 1,
                field: None,
                message: format!(
                    "{} more errors from line {line} on are not listed",
                    self.left_out
                ),
            });
        }
        self.listed
    }
}

fn line_of(position: Option<&csv::Position>) -> u64 {
    position.map_or(0, csv::Position::line)
}

/// Parses the body of `POST /api/v1/users/variables`.
///
/// Line 1 is the header: `user`, then variable names (`user.email`, checked with
/// [`NameKind::VariableName`]); each further line is one user (checked with
/// [`NameKind::UserKey`]) and their values. An empty cell means "variable not set for this user"
/// and is left out. All rows or none: any error fails the whole upload, and every error found
/// is returned (up to [`MAX_ERRORS`]) with its line (1-based, the header is line 1; a quoted cell
/// spanning lines counts from its row's first line), column (1-based cell index) and field (the
/// column's header name). Refused: more than [`MAX_ROWS`] rows, [`MAX_COLUMNS`] columns or
/// [`MAX_CELL`] bytes in a cell, text that is not UTF-8, duplicate users or header names, ragged
/// rows, control characters in values, and a header without rows.
pub fn parse_user_variables(body: &[u8]) -> Result<Vec<UserVariables>, Vec<FieldError>> {
    let mut errors = Errors::default();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => {
            errors.push(
                1,
                1,
                None,
                "the CSV is empty; line 1 must be the header `user,…`",
            );
            return Err(errors.finish());
        }
        Some(Err(e)) => {
            errors.push(line_of(e.position()), 1, None, e.to_string());
            return Err(errors.finish());
        }
        Some(Ok(h)) => h,
    };
    if header.len() > MAX_COLUMNS {
        errors.push(
            1,
            MAX_COLUMNS as u64 + 1,
            None,
            format!(
                "the header has {} columns; at most {MAX_COLUMNS} are allowed (the user and {} \
                 variables)",
                header.len(),
                MAX_COLUMNS - 1
            ),
        );
        return Err(errors.finish());
    }
    let names = header_names(&header, &mut errors);

    let mut rows = Vec::new();
    let mut users = BTreeSet::new();
    let mut count = 0usize;
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(line_of(e.position()), 1, None, e.to_string());
                break;
            }
        };
        let line = line_of(record.position());
        count += 1;
        if count > MAX_ROWS {
            errors.push(
                line,
                1,
                None,
                format!("more than {MAX_ROWS} rows; upload them in parts"),
            );
            break;
        }
        if record.len() != names.len() {
            // The first cell that is missing, or the first one too many.
            let column = record.len().min(names.len());
            errors.push(
                line,
                column as u64 + 1,
                names.get(column).map(String::as_str),
                format!(
                    "the row has {} cells, the header {}",
                    record.len(),
                    names.len()
                ),
            );
            continue;
        }
        if let Some(row) = row(line, &record, &names, &mut users, &mut errors) {
            rows.push(row);
        }
    }
    if errors.is_empty() && rows.is_empty() {
        errors.push(2, 1, None, "the CSV has a header but no rows");
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors.finish())
    }
}

/// The header's names, every problem with them recorded. A name that is not UTF-8 is empty.
fn header_names(header: &csv::ByteRecord, errors: &mut Errors) -> Vec<String> {
    let mut names = Vec::with_capacity(header.len());
    let mut seen = BTreeSet::new();
    for (i, cell) in header.iter().enumerate() {
        let column = i as u64 + 1;
        let Ok(name) = std::str::from_utf8(cell) else {
            errors.push(
                1,
                column,
                None,
                "the header is not UTF-8 (save the file as CSV UTF-8)",
            );
            names.push(String::new());
            continue;
        };
        let name = name.trim_start_matches('\u{feff}').trim();
        if i == 0 {
            if name != "user" {
                errors.push(1, 1, Some(name), "the first column must be `user`");
            }
        } else if name == "user" {
            errors.push(
                1,
                column,
                Some(name),
                "`user` is the first column, and only that",
            );
        } else if let Err(e) = check(NameKind::VariableName, name, name) {
            errors.push(
                1,
                column,
                Some(name),
                format!("not a variable name: {}", e.message),
            );
        } else if !seen.insert(name) {
            errors.push(
                1,
                column,
                Some(name),
                "this variable appears twice in the header",
            );
        }
        names.push(name.to_owned());
    }
    names
}

/// One data row of the right length; `None` when a cell of it is wrong (recorded in `errors`).
fn row(
    line: u64,
    record: &csv::ByteRecord,
    names: &[String],
    users: &mut BTreeSet<String>,
    errors: &mut Errors,
) -> Option<UserVariables> {
    let mut user = None;
    let mut vars = BTreeMap::new();
    let mut ok = true;
    for (i, (cell, field)) in record.iter().zip(names).enumerate() {
        let column = i as u64 + 1;
        let mut fail = |message: String| {
            errors.push(line, column, Some(field), message);
            ok = false;
        };
        if cell.len() > MAX_CELL {
            fail(format!(
                "the cell is {} bytes; at most {MAX_CELL}",
                cell.len()
            ));
            continue;
        }
        let Ok(text) = std::str::from_utf8(cell) else {
            fail("the cell is not UTF-8 (save the file as CSV UTF-8)".into());
            continue;
        };
        if i == 0 {
            match check(NameKind::UserKey, "user", text) {
                Err(e) => fail(format!("not a user name: {}", e.message)),
                Ok(()) if !users.insert(text.to_owned()) => fail("this user appears twice".into()),
                Ok(()) => user = Some(text.to_owned()),
            }
        } else if text.chars().any(char::is_control) {
            fail("the value contains control characters (a line break, tab or NUL)".into());
        } else if !text.is_empty() {
            vars.insert(field.clone(), text.to_owned());
        }
    }
    ok.then_some(())?;
    Some((user?, vars))
}

/// A table to answer as CSV (`Accept: text/csv`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// The header row.
    pub header: Vec<String>,
    /// The data rows, each as many cells as the header (not enforced).
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// RFC 4180 text: CRLF line ends, a field quoted when it holds a comma, quote, CR or LF, and
    /// quotes inside doubled. Cells starting with `=`, `+`, `-`, `@`, TAB or CR get a leading
    /// `'`, so a spreadsheet shows them instead of running them as a formula (plain negative
    /// numbers such as `-3.5` are left alone). A row of no cells, or of one empty cell, is
    /// written as `""`, so it is not read as a blank line and skipped.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        write_row(&mut out, &self.header);
        for row in &self.rows {
            write_row(&mut out, row);
        }
        out
    }
}

fn write_row(out: &mut String, row: &[String]) {
    if row.iter().all(String::is_empty) && row.len() <= 1 {
        out.push_str("\"\"\r\n");
        return;
    }
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = defuse(cell);
        if cell.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
}

/// A cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`, TAB, CR first) with a leading `'`;
/// a plain negative number (`-12`, `-3.5`) stays as it is.
fn defuse(cell: &str) -> Cow<'_, str> {
    let risky = match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'@' | b'\t' | b'\r') => true,
        Some(b'-') => !is_plain_number(&cell[1..]),
        _ => false,
    };
    if risky {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Digits, optionally a point and more digits: `12`, `3.5`.
fn is_plain_number(text: &str) -> bool {
    let (int, frac) = text.split_once('.').unwrap_or((text, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests;
