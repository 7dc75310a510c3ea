//! CSV in and out. In: per-user variables (`user,user.email,…`), all rows or none, every error
//! located by line and column. Out: RFC 4180 (CRLF, quotes doubled), with cells that a
//! spreadsheet would run as a formula defused by a leading `'`.

use std::collections::{BTreeMap, BTreeSet};

use postwarden_wire::v1::FieldError;

use crate::names::{check, NameKind};

/// Most data rows of one upload.
pub const MAX_ROWS: usize = 100_000;
/// Most columns (the user plus 63 variables).
pub const MAX_COLUMNS: usize = 64;
/// Longest cell, in bytes.
pub const MAX_CELL: usize = 4096;
/// Errors reported at most; the rest are counted.
const MAX_ERRORS: usize = 100;

/// One user's variables.
pub type UserVariables = (String, BTreeMap<String, String>);

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, line: u64, column: u64, field: Option<&str>, message: impl Into<String>) {
        if self.0.len() < MAX_ERRORS {
            self.0.push(FieldError {
                line,
                column,
                field: field.map(str::to_owned),
                message: message.into(),
            });
        }
    }
}

/// Parses the body of `POST /api/v1/users/variables`. Line 1 is the header; the first column is
/// `user`. An empty cell leaves that variable unset for that user.
pub fn parse_user_variables(body: &[u8]) -> Result<Vec<UserVariables>, Vec<FieldError>> {
    let mut errors = Errors(Vec::new());
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
                "the CSV is empty; the first line must be the header",
            );
            return Err(errors.0);
        }
        Some(Err(e)) => return Err(vec![csv_error(&e)]),
        Some(Ok(h)) => h,
    };
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    if header.len() > MAX_COLUMNS {
        errors.push(
            1,
            1,
            None,
            format!("at most {MAX_COLUMNS} columns are allowed"),
        );
        return Err(errors.0);
    }
    let mut seen = BTreeSet::new();
    for (i, cell) in header.iter().enumerate() {
        let column = i as u64 + 1;
        let Ok(name) = std::str::from_utf8(cell) else {
            errors.push(1, column, None, "the header is not UTF-8");
            names.push(String::new());
            continue;
        };
        let name = name.trim_start_matches('\u{feff}').trim();
        if i == 0 {
            if name != "user" {
                errors.push(1, 1, Some(name), "the first column must be `user`");
            }
        } else if let Err(e) = check(NameKind::VariableName, name, name) {
            errors.push(1, column, Some(name), e.message);
        } else if !seen.insert(name.to_owned()) {
            errors.push(
                1,
                column,
                Some(name),
                "this variable appears twice in the header",
            );
        }
        names.push(name.to_owned());
    }
    let mut rows = Vec::new();
    let mut users = BTreeSet::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(e.position().map_or(0, |p| p.line()), 1, None, e.to_string());
                break;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if rows.len() >= MAX_ROWS {
            errors.push(
                line,
                1,
                None,
                format!("at most {MAX_ROWS} rows are allowed"),
            );
            break;
        }
        if record.len() != names.len() {
            errors.push(
                line,
                record.len().min(names.len()) as u64 + 1,
                None,
                format!(
                    "the row has {} cells, the header {}",
                    record.len(),
                    names.len()
                ),
            );
            continue;
        }
        let mut user = String::new();
        let mut vars = BTreeMap::new();
        for (i, cell) in record.iter().enumerate() {
            let column = i as u64 + 1;
            let field = names[i].as_str();
            let Ok(text) = std::str::from_utf8(cell) else {
                errors.push(line, column, Some(field), "the cell is not UTF-8");
                continue;
            };
            if text.len() > MAX_CELL {
                errors.push(
                    line,
                    column,
                    Some(field),
                    format!("the cell is {} bytes; at most {MAX_CELL}", text.len()),
                );
                continue;
            }
            if i == 0 {
                match check(NameKind::UserKey, "user", text) {
                    Err(e) => errors.push(line, column, Some("user"), e.message),
                    Ok(()) if !users.insert(text.to_owned()) => {
                        errors.push(line, column, Some("user"), "this user appears twice")
                    }
                    Ok(()) => user = text.to_owned(),
                }
            } else if text.chars().any(char::is_control) {
                errors.push(
                    line,
                    column,
                    Some(field),
                    "the value contains control characters",
                );
            } else if !text.is_empty() {
                vars.insert(field.to_owned(), text.to_owned());
            }
        }
        rows.push((user, vars));
    }
    if errors.0.is_empty() && rows.is_empty() {
        errors.push(2, 1, None, "the CSV has a header but no rows");
    }
    if errors.0.is_empty() {
        Ok(rows)
    } else {
        Err(errors.0)
    }
}

fn csv_error(e: &csv::Error) -> FieldError {
    FieldError {
        line: e.position().map_or(0, |p| p.line()),
        column: 1,
        field: None,
        message: e.to_string(),
    }
}

/// A table to answer as CSV.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// RFC 4180 text: CRLF line ends, fields quoted when they hold a comma, quote or line end.
    pub fn to_csv(&self) -> String {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .quote_style(csv::QuoteStyle::Necessary)
            .from_writer(Vec::new());
        let mut write = |row: &[String]| {
            let cells: Vec<String> = row.iter().map(|c| defuse(c)).collect();
            writer
                .write_record(&cells)
                .expect("writing to memory cannot fail");
        };
        write(&self.header);
        for row in &self.rows {
            write(row);
        }
        let bytes = writer.into_inner().expect("writing to memory cannot fail");
        String::from_utf8(bytes).expect("the cells are strings")
    }
}

/// A cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`, tab, CR first) gets a leading `'`.
/// Plain negative numbers stay as they are.
fn defuse(cell: &str) -> String {
    let risky = cell.starts_with(['=', '+', '@', '\t', '\r'])
        || (cell.starts_with('-') && cell[1..].parse::<f64>().is_err());
    if risky {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_good_upload_parses() {
        let rows = parse_user_variables(
            b"user,user.email,user.name\r\nalice,alice@example.org,Alice\nEXAMPLE\\bob,bob@example.org,\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "alice");
        assert_eq!(rows[0].1["user.name"], "Alice");
        assert_eq!(rows[1].0, "EXAMPLE\\bob");
        assert!(!rows[1].1.contains_key("user.name"), "empty = unset");
    }

    #[test]
    fn every_error_is_located() {
        let errs = parse_user_variables(
            b"user,user.email\nalice,a@x\nbob,b@x,extra\nalice,c@x\n../x,d@x\ncarol,\x01\n",
        )
        .unwrap_err();
        let at: Vec<(u64, u64)> = errs.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(at, [(3, 3), (4, 1), (5, 1), (6, 2)], "{errs:?}");
        assert!(errs[1].message.contains("twice"));
        assert_eq!(errs[3].field.as_deref(), Some("user.email"));
    }

    #[test]
    fn bad_headers_and_shapes() {
        for (body, needle) in [
            (&b""[..], "empty"),
            (b"name,user.email\na,b\n", "first column"),
            (b"user,User Email\na,b\n", "User Email"),
            (b"user,user.email,user.email\na,b,c\n", "twice"),
            (b"user,user.email\n", "no rows"),
            (b"user,user.email\na,\xff\xfe\n", "UTF-8"),
        ] {
            let errs = parse_user_variables(body).unwrap_err();
            let text = format!("{errs:?}");
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let big = format!("user,v\na,{}\n", "x".repeat(MAX_CELL + 1));
        assert!(parse_user_variables(big.as_bytes()).is_err());
        let wide = format!(
            "user,{}\n",
            (0..MAX_COLUMNS)
                .map(|i| format!("v{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(parse_user_variables(wide.as_bytes()).is_err());
    }

    #[test]
    fn output_is_rfc4180_and_defused() {
        let t = Table {
            header: vec!["a".into(), "b".into()],
            rows: vec![
                vec!["x,y".into(), "say \"hi\"".into()],
                vec!["=HYPERLINK(\"x\")".into(), "-3.5".into()],
                vec!["-cmd".into(), "line\nbreak".into()],
            ],
        };
        assert_eq!(
            t.to_csv(),
            "a,b\r\n\"x,y\",\"say \"\"hi\"\"\"\r\n\"'=HYPERLINK(\"\"x\"\")\",-3.5\r\n'-cmd,\"line\nbreak\"\r\n"
        );
    }

    proptest! {
        #[test]
        fn written_tables_read_back(rows in proptest::collection::vec(
            proptest::collection::vec("[a-zA-Z0-9 ,\"\n.]{0,12}", 3), 0..20))
        {
            let t = Table { header: vec!["x".into(), "y".into(), "z".into()], rows: rows.clone() };
            let text = t.to_csv();
            let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
            let back: Vec<Vec<String>> = reader
                .records()
                .map(|r| r.unwrap().iter().map(str::to_owned).collect())
                .collect();
            let expected: Vec<Vec<String>> = rows
                .iter()
                .map(|r| r.iter().map(|c| defuse(c)).collect())
                .collect();
            prop_assert_eq!(back, expected);
        }
    }
}
