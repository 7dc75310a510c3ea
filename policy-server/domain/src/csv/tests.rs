use super::*;
use proptest::prelude::*;

fn parse(body: &str) -> Result<Vec<UserVariables>, Vec<FieldError>> {
    parse_user_variables(body.as_bytes())
}

/// The errors of `body` as `(line, column, field, start of message)`.
fn errors(body: &[u8]) -> Vec<(u64, u64, Option<String>, String)> {
    parse_user_variables(body)
        .expect_err("the upload is refused")
        .into_iter()
        .map(|e| (e.line, e.column, e.field, e.message))
        .collect()
}

/// Exactly one error, at `line`/`column`, whose message contains `needle`.
fn one_error(body: &[u8], line: u64, column: u64, needle: &str) -> Option<String> {
    let errs = errors(body);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let (l, c, field, message) = errs.into_iter().next()?;
    assert_eq!((l, c), (line, column), "{message}");
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    field
}

#[test]
fn a_good_upload_parses() {
    let rows = parse(
        "\u{feff}user,user.email,user.name\r\nalice,alice@example.org,\"Alice, A.\"\nEXAMPLE\\bob,bob@example.org,\n",
    )
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "alice");
    assert_eq!(rows[0].1["user.email"], "alice@example.org");
    assert_eq!(rows[0].1["user.name"], "Alice, A.");
    assert_eq!(rows[1].0, "EXAMPLE\\bob");
    assert!(!rows[1].1.contains_key("user.name"), "empty = unset");
    // A user column alone is a valid upload: every listed user has no variables.
    assert_eq!(
        parse("user\nalice\n").unwrap(),
        [("alice".to_owned(), BTreeMap::new())]
    );
}

#[test]
fn every_error_is_located_and_nothing_is_returned() {
    let errs = errors(
        b"user,user.email\nalice,a@x\nbob,b@x,extra\nalice,c@x\n../x,d@x\ncarol,\x01\ndave\n",
    );
    let at: Vec<(u64, u64, Option<&str>)> = errs
        .iter()
        .map(|(l, c, f, _)| (*l, *c, f.as_deref()))
        .collect();
    assert_eq!(
        at,
        [
            (3, 3, None),
            (4, 1, Some("user")),
            (5, 1, Some("user")),
            (6, 2, Some("user.email")),
            (7, 2, Some("user.email")),
        ],
        "{errs:?}"
    );
    assert!(errs[0].3.contains("3 cells, the header 2"));
    assert!(errs[1].3.contains("twice"));
    assert!(errs[2].3.contains("'/'"), "{}", errs[2].3);
    assert!(errs[3].3.contains("control"));
    assert!(errs[4].3.contains("1 cells, the header 2"));
}

#[test]
fn a_quoted_cell_over_several_lines_counts_from_its_first_line() {
    let field = one_error(b"user,v\nalice,\"two\nlines\"\nbob,ok\n", 2, 2, "control");
    assert_eq!(field.as_deref(), Some("v"));
    // And the row after it has its own line number.
    let errs = errors(b"user,v\nalice,\"a\nb\"\n../bob,ok\n");
    assert_eq!((errs[1].0, errs[1].1), (4, 1), "{errs:?}");
}

#[test]
fn bad_headers_are_refused() {
    one_error(b"", 1, 1, "empty");
    let field = one_error(b"name,user.email\na,b\n", 1, 1, "first column");
    assert_eq!(field.as_deref(), Some("name"));
    let field = one_error(b"user,User Email\na,b\n", 1, 2, "not a variable name");
    assert_eq!(field.as_deref(), Some("User Email"));
    one_error(b"user,user.email,user.email\na,b,c\n", 1, 3, "twice");
    one_error(b"user,user.email,user\na,b,c\n", 1, 3, "first column");
    one_error(b"user,user..email\na,b\n", 1, 2, "\"..\"");
    one_error(b"user,{{user.email}}\na,b\n", 1, 2, "'{'");
    one_error(b"user,\na,b\n", 1, 2, "empty");
    one_error(b"user,user.email\n", 2, 1, "no rows");
    one_error(b"user,\xff\xfe\na,b\n", 1, 2, "UTF-8");
    let wide = format!(
        "user,{}\n",
        (0..MAX_COLUMNS)
            .map(|i| format!("v{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    one_error(wide.as_bytes(), 1, MAX_COLUMNS as u64 + 1, "at most 64");
    // 63 variables are fine.
    let widest = format!(
        "user,{}\nalice,{}\n",
        (1..MAX_COLUMNS)
            .map(|i| format!("v{i}"))
            .collect::<Vec<_>>()
            .join(","),
        vec!["x"; MAX_COLUMNS - 1].join(",")
    );
    assert_eq!(parse(&widest).unwrap()[0].1.len(), MAX_COLUMNS - 1);
}

#[test]
fn hostile_cells_are_refused_without_echo() {
    for (user, needle) in [
        ("../etc", "'/'"),
        ("a\"b", "'\"'"),
        ("\"a'b\"", "'''"),
        ("\"a\0b\"", "U+0000"),
        ("two words", "a space"),
        (".", "\".\""),
    ] {
        let body = format!("user,v\n{user},x\n");
        let field = one_error(body.as_bytes(), 2, 1, needle);
        assert_eq!(field.as_deref(), Some("user"));
    }
    // A cell over the limit: refused, and not repeated in the error.
    let big = format!("user,v\na,{}\n", "x".repeat(MAX_CELL + 1));
    let errs = errors(big.as_bytes());
    assert_eq!(errs.len(), 1);
    assert!(errs[0].3.contains("4097 bytes"), "{errs:?}");
    assert!(format!("{errs:?}").len() < 300);
    let at_limit = format!("user,v\na,{}\n", "x".repeat(MAX_CELL));
    assert_eq!(parse(&at_limit).unwrap()[0].1["v"].len(), MAX_CELL);
    // A huge header name is clipped in the error.
    let huge = format!("user,{}\na,b\n", "A".repeat(100_000));
    let errs = errors(huge.as_bytes());
    assert!(format!("{errs:?}").len() < 600, "{errs:?}");
    // A value that is not UTF-8.
    one_error(b"user,v\nalice,\xc3\x28\n", 2, 2, "UTF-8");
}

#[test]
fn too_many_rows_are_refused() {
    let mut body = String::from("user,v\n");
    for i in 0..MAX_ROWS {
        body.push_str(&format!("u{i},x\n"));
    }
    assert_eq!(parse(&body).unwrap().len(), MAX_ROWS);
    body.push_str("one-more,x\n");
    one_error(
        body.as_bytes(),
        MAX_ROWS as u64 + 2,
        1,
        "more than 100000 rows",
    );
}

#[test]
fn errors_are_capped_and_the_rest_counted() {
    let mut body = String::from("user,v\n");
    for _ in 0..500 {
        body.push_str("../x,y\n");
    }
    let errs = errors(body.as_bytes());
    assert_eq!(errs.len(), MAX_ERRORS);
    assert_eq!(
        errs[MAX_ERRORS - 2].0,
        MAX_ERRORS as u64,
        "line of the 99th bad row"
    );
    let last = &errs[MAX_ERRORS - 1];
    assert_eq!(last.0, MAX_ERRORS as u64 + 1);
    assert!(last.3.starts_with("401 more errors"), "{}", last.3);
}

#[test]
fn output_is_rfc4180_and_defused() {
    let t = Table {
        header: vec!["a".into(), "b".into()],
        rows: vec![
            vec!["x,y".into(), "say \"hi\"".into()],
            vec!["=HYPERLINK(\"x\")".into(), "-3.5".into()],
            vec!["-cmd".into(), "line\nbreak".into()],
            vec!["+1".into(), "@SUM(A1)".into()],
            vec!["\tx".into(), "\rx".into()],
            vec!["-1e5".into(), "-inf".into()],
            vec!["-12".into(), "-".into()],
            vec!["".into()],
            vec![],
            vec!["".into(), "".into()],
        ],
    };
    assert_eq!(
        t.to_csv(),
        "a,b\r\n\
         \"x,y\",\"say \"\"hi\"\"\"\r\n\
         \"'=HYPERLINK(\"\"x\"\")\",-3.5\r\n\
         '-cmd,\"line\nbreak\"\r\n\
         '+1,'@SUM(A1)\r\n\
         '\tx,\"'\rx\"\r\n\
         '-1e5,'-inf\r\n\
         -12,'-\r\n\
         \"\"\r\n\
         \"\"\r\n\
         ,\r\n"
    );
    assert_eq!(Table::default().to_csv(), "\"\"\r\n");
}

/// Reads CSV text back with the `csv` crate, every row as written (no header handling).
fn read_back(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.map(|r| r.iter().map(str::to_owned).collect()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

fn cell() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,\"\r\n.=+@\t'é€-]{0,12}"
}

proptest! {
    #[test]
    fn written_tables_read_back(
        header in proptest::collection::vec(cell(), 1..5),
        rows in proptest::collection::vec(proptest::collection::vec(cell(), 0..5), 0..20),
    ) {
        let t = Table { header: header.clone(), rows: rows.clone() };
        let text = t.to_csv();
        prop_assert!(text.matches("\r\n").count() > rows.len());
        let back = read_back(&text);
        let expected: Vec<Vec<String>> = std::iter::once(&header)
            .chain(&rows)
            .map(|r| {
                if r.is_empty() {
                    vec![String::new()]
                } else {
                    r.iter().map(|c| defuse(c).into_owned()).collect()
                }
            })
            .collect();
        prop_assert_eq!(&back, &expected);
        // No cell a spreadsheet would evaluate survives, and defusing only ever adds one `'`.
        for (read, wrote) in back.iter().flatten().zip(expected.iter().flatten()) {
            prop_assert_eq!(read, wrote);
            let first = read.chars().next();
            let numeric = read.starts_with('-') && is_plain_number(&read[1..]);
            prop_assert!(numeric || !matches!(first, Some('=' | '+' | '-' | '@' | '\t' | '\r')), "{:?}", read);
        }
        for (r, original) in back.iter().skip(1).zip(&rows) {
            for (read, cell) in r.iter().zip(original) {
                prop_assert!(read == cell || read.strip_prefix('\'') == Some(cell.as_str()));
            }
        }
    }

    /// Variables written as a table and uploaded come back as they were (defused where a
    /// spreadsheet would run them), empty cells unset.
    #[test]
    fn uploaded_tables_round_trip(
        users in proptest::collection::btree_map(
            "[a-z][a-z0-9@_-]{0,6}(\\\\[a-z]{1,5})?",
            proptest::collection::vec("[a-zA-Z0-9 ,\"@.é]{0,8}", 3),
            1..20,
        )
    ) {
        let names = ["user.email", "user.name", "mail.incoming_host"];
        let t = Table {
            header: std::iter::once("user").chain(names).map(str::to_owned).collect(),
            rows: users
                .iter()
                .map(|(u, vals)| std::iter::once(u.clone()).chain(vals.iter().cloned()).collect())
                .collect(),
        };
        let parsed = parse_user_variables(t.to_csv().as_bytes()).unwrap();
        let expected: Vec<UserVariables> = users
            .iter()
            .map(|(u, vals)| {
                let vars = names
                    .iter()
                    .zip(vals)
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(n, v)| ((*n).to_owned(), defuse(v).into_owned()))
                    .collect();
                (u.clone(), vars)
            })
            .collect();
        prop_assert_eq!(parsed, expected);
    }

    /// Any bytes: an error list or rows, never a panic; errors are bounded in number and size.
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        match parse_user_variables(&body) {
            Ok(rows) => prop_assert!(!rows.is_empty()),
            Err(errs) => {
                prop_assert!(!errs.is_empty() && errs.len() <= MAX_ERRORS);
                for e in errs {
                    prop_assert!(e.line >= 1 && e.column >= 1, "{:?}", e);
                    prop_assert!(e.field.is_none_or(|f| f.len() <= 70));
                }
            }
        }
    }
}
